/* Test-side safetensors header reader (see mkmodel_read.h). */
#include "mkmodel_read.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static size_t dtype_bytes(const char *d) {
    if (!strcmp(d, "F32") || !strcmp(d, "U32") || !strcmp(d, "I32"))
        return 4;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "U16") || !strcmp(d, "I16"))
        return 2;
    if (!strcmp(d, "U8") || !strcmp(d, "I8") || !strcmp(d, "BOOL") || !strcmp(d, "F8_E4M3"))
        return 1;
    if (!strcmp(d, "F64") || !strcmp(d, "U64") || !strcmp(d, "I64"))
        return 8;
    return 0;
}

int tst_read_at(const char *path, uint64_t off, void *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int ok = fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n;
    fclose(f);
    return ok ? 0 : -1;
}

static int cmp_begin(const void *a, const void *b) {
    const struct tst_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

int tst_st_read(const char *path, struct tst_file *out, char *err, size_t err_n) {
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_n, "%s: cannot open", path);
        return -1;
    }
    unsigned char len8[8];
    fseeko(f, 0, SEEK_END);
    uint64_t fsize = (uint64_t)ftello(f);
    fseeko(f, 0, SEEK_SET);
    if (fread(len8, 1, 8, f) != 8) {
        fclose(f);
        snprintf(err, err_n, "%s: short file", path);
        return -1;
    }
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++)
        hl |= (uint64_t)len8[k] << (8 * k);
    if (hl > fsize - 8 || hl > (64u << 20)) {
        fclose(f);
        snprintf(err, err_n, "%s: header length %llu past the end", path, (unsigned long long)hl);
        return -1;
    }
    if ((8 + hl) % 8 != 0) {
        fclose(f);
        snprintf(err, err_n, "%s: data area not 8-aligned (header %llu)", path,
                 (unsigned long long)hl);
        return -1;
    }
    char *h = malloc(hl + 1);
    size_t got = h ? fread(h, 1, hl, f) : 0;
    fclose(f);
    if (!h || got != hl) {
        free(h);
        snprintf(err, err_n, "%s: short header", path);
        return -1;
    }
    h[hl] = 0;
    cJSON *j = cJSON_Parse(h);
    free(h);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, err_n, "%s: header is not a JSON object", path);
        return -1;
    }
    int n = cJSON_GetArraySize(j);
    out->t = calloc((size_t)n + 1, sizeof(*out->t));
    out->file_bytes = fsize;
    out->header_bytes = hl;
    int rc = 0;
    for (cJSON *e = j->child; e && rc == 0; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            cJSON *fm = cJSON_GetObjectItemCaseSensitive(e, "format");
            if (cJSON_IsString(fm))
                snprintf(out->format, sizeof out->format, "%s", fm->valuestring);
            continue;
        }
        struct tst_tensor *t = &out->t[out->n++];
        snprintf(t->name, sizeof t->name, "%s", e->string);
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
            cJSON_GetArraySize(of) != 2 || cJSON_GetArraySize(sh) > 8) {
            snprintf(err, err_n, "%s: tensor %s: bad entry", path, t->name);
            rc = -1;
            break;
        }
        snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
        uint64_t elems = 1;
        for (cJSON *s = sh->child; s; s = s->next) {
            t->shape[t->n_dims++] = (int64_t)s->valuedouble;
            elems *= (uint64_t)s->valuedouble;
        }
        t->begin = 8 + hl + (uint64_t)cJSON_GetArrayItem(of, 0)->valuedouble;
        t->end = 8 + hl + (uint64_t)cJSON_GetArrayItem(of, 1)->valuedouble;
        if (dtype_bytes(t->dtype) == 0 || t->end - t->begin != elems * dtype_bytes(t->dtype) ||
            t->end > fsize || t->end < t->begin) {
            snprintf(err, err_n, "%s: tensor %s: size/offsets disagree", path, t->name);
            rc = -1;
        }
    }
    cJSON_Delete(j);
    if (rc == 0) {
        qsort(out->t, (size_t)out->n, sizeof(*out->t), cmp_begin);
        uint64_t pos = 8 + hl;
        for (int i = 0; i < out->n; i++) {
            if (out->t[i].begin != pos) {
                snprintf(err, err_n, "%s: tensor %s: gap or overlap", path, out->t[i].name);
                rc = -1;
                break;
            }
            pos = out->t[i].end;
        }
        if (rc == 0 && pos != fsize) {
            snprintf(err, err_n, "%s: %llu trailing bytes", path,
                     (unsigned long long)(fsize - pos));
            rc = -1;
        }
    }
    if (rc != 0)
        tst_st_free(out);
    return rc;
}

void tst_st_free(struct tst_file *f) {
    free(f->t);
    f->t = NULL;
    f->n = 0;
}

const struct tst_tensor *tst_st_find(const struct tst_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}
