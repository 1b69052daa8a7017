/* Streaming safetensors writer (see st_write.h).
 *
 * The header is built by hand (names are JSON-escaped) rather than with cJSON so that 64-bit
 * offsets are printed as exact integers and the key order is the declaration order. The data is
 * written through one fixed buffer with plain write(2) calls, so a 12 GB checkpoint costs the
 * same memory as a tiny one. */
#include "st_write.h"

#include "moecl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_BUF_BYTES (8u << 20)

struct st_decl {
    char *name;
    enum moecl_dtype dtype;
    int n_dims;
    int64_t shape[MOECL_MAX_DIMS];
    uint64_t n_bytes;
};

struct moecl_st_writer {
    char *path;
    struct st_decl *decls;
    int n_decls, cap_decls;
    char **meta; /* key, value, key, value, ... */
    int n_meta;
    uint64_t data_bytes;

    int fd; /* -1 until begin */
    int began, finished, failed;
    int cur;           /* index of the tensor being written, -1 between tensors */
    int next;          /* index of the next tensor to begin */
    uint64_t cur_done; /* bytes of the current tensor received */

    unsigned char *buf;
    size_t buf_used;
};

/* ------------------------------------------------------------------ growing string */

struct st_str {
    char *s;
    size_t len, cap;
    int oom;
};

static void str_reserve(struct st_str *b, size_t extra) {
    if (b->oom || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = 1;
        return;
    }
    b->s = s;
    b->cap = cap;
}

static void str_printf(struct st_str *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void str_printf(struct st_str *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    str_reserve(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void str_json(struct st_str *b, const char *text) {
    str_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            str_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            str_printf(b, "\\u%04x", *p);
        else
            str_printf(b, "%c", *p);
    }
    str_printf(b, "\"");
}

/* ------------------------------------------------------------------ setup */

enum moecl_status moecl_st_writer_create(const char *path, struct moecl_st_writer **writer_out) {
    *writer_out = NULL;
    if (!path || !*path)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "safetensors writer: empty path");
    struct moecl_st_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    w->fd = -1;
    w->cur = -1;
    *writer_out = w;
    return MOECL_OK;
}

void moecl_st_writer_free(struct moecl_st_writer *w) {
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->began && !w->finished)
        unlink(w->path);
    for (int i = 0; i < w->n_decls; i++)
        free(w->decls[i].name);
    free(w->decls);
    for (int i = 0; i < w->n_meta; i++)
        free(w->meta[i]);
    free(w->meta);
    free(w->buf);
    free(w->path);
    free(w);
}

enum moecl_status moecl_st_writer_metadata(struct moecl_st_writer *w, const char *key,
                                           const char *value) {
    if (w->began)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: metadata \"%s\" added after the header",
                               w->path, key);
    char **meta = realloc(w->meta, (size_t)(w->n_meta + 2) * sizeof(*meta));
    if (!meta)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", w->path);
    w->meta = meta;
    meta[w->n_meta] = strdup(key);
    meta[w->n_meta + 1] = strdup(value);
    w->n_meta += 2;
    if (!meta[w->n_meta - 2] || !meta[w->n_meta - 1])
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", w->path);
    return MOECL_OK;
}

enum moecl_status moecl_st_writer_declare(struct moecl_st_writer *w, const char *name,
                                          enum moecl_dtype dtype, int n_dims,
                                          const int64_t *shape) {
    if (w->began)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: tensor %s declared after the header was written", w->path,
                               name);
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: invalid tensor name \"%s\"", w->path,
                               name ? name : "");
    if ((int)dtype < 0 || dtype >= MOECL_DTYPE_COUNT || moecl_dtype_size(dtype) == 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s: unknown dtype %d", w->path,
                               name, (int)dtype);
    if (n_dims < 0 || n_dims > MOECL_MAX_DIMS)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s: %d dims (max %d)", w->path,
                               name, n_dims, MOECL_MAX_DIMS);
    uint64_t n = moecl_dtype_size(dtype);
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0)
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s: negative dim %d", w->path,
                                   name, d);
        if (shape[d] && n > UINT64_MAX / 2 / (uint64_t)shape[d])
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s: size overflows", w->path,
                                   name);
        n *= (uint64_t)shape[d];
    }
    for (int i = 0; i < w->n_decls; i++)
        if (strcmp(w->decls[i].name, name) == 0)
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s declared twice", w->path,
                                   name);
    if (w->n_decls == w->cap_decls) {
        int cap = w->cap_decls ? 2 * w->cap_decls : 64;
        struct st_decl *d = realloc(w->decls, (size_t)cap * sizeof(*d));
        if (!d)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", w->path);
        w->decls = d;
        w->cap_decls = cap;
    }
    struct st_decl *d = &w->decls[w->n_decls];
    memset(d, 0, sizeof(*d));
    d->name = strdup(name);
    if (!d->name)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", w->path);
    d->dtype = dtype;
    d->n_dims = n_dims;
    for (int k = 0; k < n_dims; k++)
        d->shape[k] = shape[k];
    d->n_bytes = n;
    w->data_bytes += n;
    w->n_decls++;
    return MOECL_OK;
}

uint64_t moecl_st_writer_data_bytes(const struct moecl_st_writer *w) {
    return w->data_bytes;
}

/* ------------------------------------------------------------------ writing */

static enum moecl_status write_all(struct moecl_st_writer *w, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            w->failed = 1;
            return moecl_error_set(MOECL_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return MOECL_OK;
}

static enum moecl_status flush_buf(struct moecl_st_writer *w) {
    enum moecl_status st = write_all(w, w->buf, w->buf_used);
    w->buf_used = 0;
    return st;
}

enum moecl_status moecl_st_writer_begin(struct moecl_st_writer *w) {
    if (w->began)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: header written twice", w->path);
    struct st_str h = {0};
    str_printf(&h, "{");
    int first = 1;
    if (w->n_meta) {
        str_printf(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i += 2) {
            if (i)
                str_printf(&h, ",");
            str_json(&h, w->meta[i]);
            str_printf(&h, ":");
            str_json(&h, w->meta[i + 1]);
        }
        str_printf(&h, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n_decls; i++) {
        const struct st_decl *d = &w->decls[i];
        if (!first)
            str_printf(&h, ",");
        first = 0;
        str_json(&h, d->name);
        str_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", moecl_dtype_name(d->dtype));
        for (int k = 0; k < d->n_dims; k++)
            str_printf(&h, "%s%" PRId64, k ? "," : "", d->shape[k]);
        str_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + d->n_bytes);
        off += d->n_bytes;
    }
    str_printf(&h, "}");
    /* Pad with spaces so that 8 + header length is a multiple of 8. */
    while (!h.oom && h.len % 8 != 0)
        str_printf(&h, " ");
    if (h.oom) {
        free(h.s);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory building the header",
                               w->path);
    }

    w->buf = malloc(ST_BUF_BYTES);
    if (!w->buf) {
        free(h.s);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        free(h.s);
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", w->path, strerror(errno));
    }
    w->began = 1;
    unsigned char len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    enum moecl_status st = write_all(w, len8, 8);
    if (st == MOECL_OK)
        st = write_all(w, h.s, h.len);
    free(h.s);
    return st;
}

enum moecl_status moecl_st_writer_tensor_begin(struct moecl_st_writer *w, const char *name) {
    if (!w->began || w->failed)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s: writer not ready", w->path,
                               name);
    if (w->cur >= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s begun before %s ended",
                               w->path, name, w->decls[w->cur].name);
    if (w->next >= w->n_decls)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s was not declared", w->path,
                               name);
    if (strcmp(w->decls[w->next].name, name) != 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: tensor %s written out of order (expected %s next)", w->path,
                               name, w->decls[w->next].name);
    w->cur = w->next++;
    w->cur_done = 0;
    return MOECL_OK;
}

enum moecl_status moecl_st_writer_write(struct moecl_st_writer *w, const void *data, size_t n) {
    if (w->cur < 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: %zu bytes written outside a tensor",
                               w->path, n);
    const struct st_decl *d = &w->decls[w->cur];
    if ((uint64_t)n > d->n_bytes - w->cur_done) {
        w->failed = 1;
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: tensor %s: %" PRIu64 " bytes given, declared size is %" PRIu64,
                               w->path, d->name, w->cur_done + (uint64_t)n, d->n_bytes);
    }
    w->cur_done += n;
    const unsigned char *p = data;
    while (n > 0) {
        if (w->buf_used == 0 && n >= ST_BUF_BYTES)
            return write_all(w, p, n);
        size_t k = ST_BUF_BYTES - w->buf_used;
        if (k > n)
            k = n;
        memcpy(w->buf + w->buf_used, p, k);
        w->buf_used += k;
        p += k;
        n -= k;
        if (w->buf_used == ST_BUF_BYTES) {
            enum moecl_status st = flush_buf(w);
            if (st != MOECL_OK)
                return st;
        }
    }
    return MOECL_OK;
}

enum moecl_status moecl_st_writer_tensor_end(struct moecl_st_writer *w) {
    if (w->cur < 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor end without a tensor", w->path);
    const struct st_decl *d = &w->decls[w->cur];
    if (w->cur_done != d->n_bytes) {
        w->failed = 1;
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: tensor %s: only %" PRIu64 " of %" PRIu64 " bytes written",
                               w->path, d->name, w->cur_done, d->n_bytes);
    }
    w->cur = -1;
    return MOECL_OK;
}

enum moecl_status moecl_st_writer_finish(struct moecl_st_writer *w) {
    if (!w->began)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: finish before the header", w->path);
    if (w->failed)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: finish after an earlier error", w->path);
    if (w->cur >= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: tensor %s not ended", w->path,
                               w->decls[w->cur].name);
    if (w->next < w->n_decls)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: tensor %s (and %d more) declared but never written", w->path,
                               w->decls[w->next].name, w->n_decls - w->next - 1);
    enum moecl_status st = flush_buf(w);
    if (st != MOECL_OK)
        return st;
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0)
        return moecl_error_set(MOECL_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
    w->finished = 1;
    return MOECL_OK;
}
