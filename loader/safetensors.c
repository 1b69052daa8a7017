/* Bounded safetensors parsing; see safetensors.h for the checks and why. */
#include "safetensors.h"

#include "loader_internal.h"
#include "moecl_error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly, so they are
 * refused rather than silently rounded. */
#define JSON_MAX_EXACT_INT 9007199254740992.0

static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > JSON_MAX_EXACT_INT || d != (double)(uint64_t)d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

const char *moecl_shape_str(const int64_t *shape, int n_dims, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    n += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n_dims && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
    return buf;
}

void moecl_st_close(struct moecl_st_file *file) {
    if (!file)
        return;
    for (int i = 0; i < file->n_tensors; i++)
        free((void *)(uintptr_t)file->tensors[i].name);
    free(file->tensors);
    for (int i = 0; i < file->n_metadata; i++) {
        free(file->metadata_keys[i]);
        free(file->metadata_values[i]);
    }
    free(file->metadata_keys);
    free(file->metadata_values);
    if (file->mapped && file->bytes)
        munmap((void *)(uintptr_t)file->bytes, file->size);
    free(file->path);
    free(file);
}

static int cmp_name(const void *a, const void *b) {
    const struct moecl_tensor *x = *(const struct moecl_tensor *const *)a;
    const struct moecl_tensor *y = *(const struct moecl_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b) {
    const struct moecl_tensor *x = *(const struct moecl_tensor *const *)a;
    const struct moecl_tensor *y = *(const struct moecl_tensor *const *)b;
    if (x->file_offset != y->file_offset)
        return x->file_offset < y->file_offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : (x->n_bytes > y->n_bytes);
}

/* Parses one header entry into t (name already set). */
static enum moecl_status parse_entry(const char *path, const cJSON *entry, struct moecl_tensor *t,
                                     uint64_t data_size, uint64_t *begin_out) {
    const char *name = t->name;
    if (!cJSON_IsObject(entry))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: tensor '%s': header entry is not an object",
                               path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: tensor '%s': missing or non-string 'dtype'",
                               path, name);
    if (!moecl_dtype_parse(dtype->valuestring, &t->dtype))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.40s'",
                               path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: tensor '%s': missing or non-array 'shape'",
                               path, name);
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > MOECL_MAX_DIMS)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: tensor '%s': %d dimensions (at most %d supported)", path, name,
                               n_dims, MOECL_MAX_DIMS);
    uint64_t n_elems = 1;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return moecl_error_set(MOECL_ERR_FORMAT,
                                   "%s: tensor '%s': shape entry %d is not a non-negative integer",
                                   path, name, d);
        t->shape[d++] = (int64_t)v;
        if (__builtin_mul_overflow(n_elems, v, &n_elems))
            return moecl_error_set(MOECL_ERR_FORMAT,
                                   "%s: tensor '%s': element count overflows 64 bits", path, name);
    }
    t->n_dims = n_dims;
    uint64_t n_bytes;
    if (__builtin_mul_overflow(n_elems, (uint64_t)moecl_dtype_size(t->dtype), &n_bytes))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: tensor '%s': byte size overflows 64 bits",
                               path, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: tensor '%s': 'data_offsets' must be an array [begin, end]",
                               path, name);
    uint64_t begin, end;
    if (!json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &end))
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets are not non-negative integers", path,
                               name);
    if (begin > end)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets begin %llu > end %llu", path, name,
                               (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets [%llu, %llu) run past the end of "
                               "the data area (%llu bytes; file truncated?)",
                               path, name, (unsigned long long)begin, (unsigned long long)end,
                               (unsigned long long)data_size);
    if (end - begin != n_bytes) {
        char sbuf[160];
        return moecl_error_set(
            MOECL_ERR_FORMAT,
            "%s: tensor '%s': data_offsets span %llu bytes but %s %s needs "
            "%llu",
            path, name, (unsigned long long)(end - begin), moecl_dtype_name(t->dtype),
            moecl_shape_str(t->shape, n_dims, sbuf, sizeof sbuf), (unsigned long long)n_bytes);
    }
    t->n_bytes = (size_t)n_bytes;
    *begin_out = begin;
    return MOECL_OK;
}

static enum moecl_status parse_metadata(const char *path, const cJSON *meta,
                                        struct moecl_st_file *f) {
    if (!cJSON_IsObject(meta))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: '__metadata__' is not an object", path);
    int n = cJSON_GetArraySize(meta);
    f->metadata_keys = calloc((size_t)n + 1, sizeof(char *));
    f->metadata_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->metadata_keys || !f->metadata_values)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory for metadata", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            return moecl_error_set(MOECL_ERR_FORMAT,
                                   "%s: '__metadata__' value of '%.60s' is not a string", path,
                                   item->string ? item->string : "");
        char *k = strdup(item->string ? item->string : "");
        char *v = strdup(item->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory for metadata", path);
        }
        f->metadata_keys[f->n_metadata] = k;
        f->metadata_values[f->n_metadata] = v;
        f->n_metadata++;
    }
    return MOECL_OK;
}

static int json_trailing_ok(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0)
            return 0;
    return 1;
}

static enum moecl_status parse_header(const char *path, struct moecl_st_file *f, int file_index) {
    if (f->size < 8)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                               path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->bytes[i];
    if (n > MOECL_ST_MAX_HEADER)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: header length %llu is absurd (limit %llu bytes); not a "
                               "safetensors file?",
                               path, (unsigned long long)n,
                               (unsigned long long)MOECL_ST_MAX_HEADER);
    if (n > f->size - 8)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: header length %llu runs past the end of the file (%zu bytes; "
                               "truncated?)",
                               path, (unsigned long long)n, f->size);
    if (n < 2)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: header of %llu bytes cannot be JSON", path,
                               (unsigned long long)n);
    f->data_offset = 8 + (size_t)n;
    const char *text = (const char *)f->bytes + 8;
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &parse_end, 0);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        size_t at = (err && err >= text && err <= text + n) ? (size_t)(err - text) : 0;
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)",
                               path, at);
    }
    enum moecl_status st = MOECL_OK;
    if (!parse_end || parse_end < text || parse_end > text + n ||
        !json_trailing_ok(parse_end, text + n)) {
        st =
            moecl_error_set(MOECL_ERR_FORMAT, "%s: header has trailing bytes after the JSON", path);
        goto cleanup;
    }
    if (!cJSON_IsObject(root)) {
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: header is JSON but not an object", path);
        goto cleanup;
    }
    int n_items = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n_items + 1, sizeof *f->tensors);
    if (!f->tensors) {
        st =
            moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory for %d tensors", path, n_items);
        goto cleanup;
    }
    uint64_t data_size = f->size - f->data_offset;
    const cJSON *item;
    int have_meta = 0;
    cJSON_ArrayForEach(item, root) {
        const char *name = item->string ? item->string : "";
        if (strcmp(name, "__metadata__") == 0) {
            if (have_meta++) {
                st = moecl_error_set(MOECL_ERR_FORMAT, "%s: two '__metadata__' entries", path);
                goto cleanup;
            }
            st = parse_metadata(path, item, f);
            if (st != MOECL_OK)
                goto cleanup;
            continue;
        }
        struct moecl_tensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(name);
        if (!t->name) {
            st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
            goto cleanup;
        }
        f->n_tensors++;
        uint64_t begin = 0;
        st = parse_entry(path, item, t, data_size, &begin);
        if (st != MOECL_OK)
            goto cleanup;
        t->file_index = file_index;
        t->file_offset = f->data_offset + (size_t)begin;
        t->data = f->bytes + t->file_offset;
    }
    if (f->n_tensors > 0) {
        const struct moecl_tensor **order = malloc((size_t)f->n_tensors * sizeof *order);
        if (!order) {
            st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
            goto cleanup;
        }
        for (int i = 0; i < f->n_tensors; i++)
            order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_name);
        for (int i = 1; i < f->n_tensors && st == MOECL_OK; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0)
                st = moecl_error_set(MOECL_ERR_FORMAT, "%s: tensor '%s' appears twice", path,
                                     order[i]->name);
        if (st == MOECL_OK) {
            qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_offset);
            size_t prev_end = 0;
            const struct moecl_tensor *prev = NULL;
            for (int i = 0; i < f->n_tensors; i++) {
                const struct moecl_tensor *t = order[i];
                if (t->n_bytes == 0)
                    continue; /* empty tensors occupy no bytes */
                if (prev && t->file_offset < prev_end) {
                    st = moecl_error_set(MOECL_ERR_FORMAT,
                                         "%s: tensors '%s' and '%s' overlap in the data area", path,
                                         prev->name, t->name);
                    break;
                }
                prev = t;
                prev_end = t->file_offset + t->n_bytes;
            }
        }
        free(order);
    }
cleanup:
    cJSON_Delete(root);
    return st;
}

enum moecl_status moecl_st_parse(const char *path, const void *bytes, size_t size, int file_index,
                                 struct moecl_st_file **file_out) {
    *file_out = NULL;
    struct moecl_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    f->bytes = bytes;
    f->size = size;
    enum moecl_status st = parse_header(path, f, file_index);
    if (st != MOECL_OK) {
        moecl_st_close(f);
        return st;
    }
    *file_out = f;
    return MOECL_OK;
}

enum moecl_status moecl_st_open(const char *path, int file_index, struct moecl_st_file **file_out) {
    *file_out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return moecl_error_set(errno == ENOENT ? MOECL_ERR_NOT_FOUND : MOECL_ERR_IO,
                               "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return moecl_error_set(MOECL_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: truncated: %zu bytes, shorter than the 8-byte header length",
                               path, size);
    }
    /* $MOECL_MMAP_POPULATE=1 prefaults every page (MAP_POPULATE): the whole file is resident
     * from the start, as the memory plan counts it (`moecl footprint --measure --populate`);
     * otherwise pages come in as kernels first read them. */
    const char *pop = getenv("MOECL_MMAP_POPULATE");
    int flags = MAP_PRIVATE | (pop && pop[0] == '1' ? MAP_POPULATE : 0);
    void *map = mmap(NULL, size, PROT_READ, flags, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size,
                               strerror(e));
    struct moecl_st_file *f = NULL;
    enum moecl_status st = moecl_st_parse(path, map, size, file_index, &f);
    if (st != MOECL_OK) {
        munmap(map, size);
        return st;
    }
    f->mapped = 1;
    *file_out = f;
    return MOECL_OK;
}

const struct moecl_tensor *moecl_st_find(const struct moecl_st_file *file, const char *name) {
    for (int i = 0; i < file->n_tensors; i++)
        if (strcmp(file->tensors[i].name, name) == 0)
            return &file->tensors[i];
    return NULL;
}

void moecl_st_release(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !p || n == 0)
        return;
    uintptr_t a = (uintptr_t)p, b = a + n, ps = (uintptr_t)page;
    a = (a + ps - 1) / ps * ps;
    b = b / ps * ps;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

const char *moecl_st_metadata(const struct moecl_st_file *file, const char *key) {
    for (int i = 0; i < file->n_metadata; i++)
        if (strcmp(file->metadata_keys[i], key) == 0)
            return file->metadata_values[i];
    return NULL;
}
