/* moecl_convert_to_mlx: writes any checkpoint the loader reads as an MLX-layout checkpoint.
 *
 * The output is what loading produced, written module by module through the contract's views:
 * Hugging Face bf16 experts come out output-major as gate_proj/up_proj/down_proj (so the next
 * load copies nothing), Hugging Face MXFP4 gate/up rows are de-interleaved into their own
 * tensors, MLX checkpoints are rewritten unchanged. Tensors are streamed row by row through
 * loader/st_write, so memory stays small whatever the model size; shards are cut at 5 GiB as
 * mlx-lm does. */
#include "checkpoint.h"
#include "loader_internal.h"
#include "moecl_error.h"
#include "safetensors.h"
#include "st_write.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SHARD_BYTES ((uint64_t)5 << 30)

/* One output tensor: n_blocks blocks of block_bytes, block b of expert e at
 * base + e*expert_stride + r*row_stride (blocks = experts x rows). */
struct out_tensor {
    char name[256];
    enum moecl_dtype dtype;
    int n_dims;
    int64_t shape[3];
    const unsigned char *base;
    int64_t n_experts, n_rows;
    size_t row_bytes, row_stride, expert_stride;
    uint64_t n_bytes;
    int shard;
    /* Unconverted Hugging Face bf16 experts (lazy open): base is the input-major source
     * [E, n_cols][k * n_rows]; row r of expert e gathers column k*r + parity. */
    int transpose, k, parity;
    int64_t n_cols;
    size_t elem_bytes;
};

struct out_list {
    struct out_tensor *t;
    int n, cap;
};

static struct out_tensor *out_add(struct out_list *l) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 512;
        struct out_tensor *p = realloc(l->t, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        l->t = p;
        l->cap = cap;
    }
    struct out_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static enum moecl_status add_vec(struct out_list *l, const struct moecl_vec *v) {
    struct out_tensor *t = out_add(l);
    if (!t)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", v->name);
    t->dtype = v->dtype;
    t->n_dims = 1;
    t->shape[0] = v->n;
    t->base = v->data;
    t->n_experts = 1;
    t->n_rows = 1;
    t->row_bytes = (size_t)v->n * moecl_dtype_size(v->dtype);
    t->n_bytes = t->row_bytes;
    return MOECL_OK;
}

/* A [E?][rows][cols_out] part of module w. */
static enum moecl_status add_part(struct out_list *l, const struct moecl_qweight *w,
                                  const char *suffix, enum moecl_dtype dtype, int64_t cols_out,
                                  const void *base, size_t row_stride, size_t expert_stride) {
    struct out_tensor *t = out_add(l);
    if (!t)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    snprintf(t->name, sizeof t->name, "%s.%s", w->name, suffix);
    t->dtype = dtype;
    int d = 0;
    if (w->n_experts)
        t->shape[d++] = w->n_experts;
    t->shape[d++] = w->rows;
    t->shape[d++] = cols_out;
    t->n_dims = d;
    t->base = base;
    t->n_experts = w->n_experts ? w->n_experts : 1;
    t->n_rows = w->rows;
    t->row_bytes = (size_t)cols_out * moecl_dtype_size(dtype);
    t->row_stride = row_stride;
    t->expert_stride = expert_stride;
    t->n_bytes = (uint64_t)t->n_experts * (uint64_t)t->n_rows * t->row_bytes;
    return MOECL_OK;
}

static enum moecl_status add_module(struct out_list *l, const struct moecl_qweight *w) {
    enum moecl_status st;
    if (w->mode == MOECL_QMODE_NONE && !w->weight && w->src_weight) {
        const struct moecl_tensor *src = w->src_weight;
        st = add_part(l, w, "weight", w->float_dtype, w->cols, src->data, 0, 0);
        if (st == MOECL_OK) {
            struct out_tensor *t = &l->t[l->n - 1];
            t->transpose = 1;
            t->k = (int)(src->shape[src->n_dims - 1] / w->rows);
            t->parity = strstr(w->name, ".up_proj") != NULL;
            t->n_cols = w->cols;
            t->elem_bytes = moecl_dtype_size(w->float_dtype);
        }
    } else if (w->mode == MOECL_QMODE_NONE) {
        st = add_part(l, w, "weight", w->float_dtype, w->cols, w->weight, w->weight_row_stride,
                      w->weight_expert_stride);
    } else {
        int64_t groups = w->cols / w->group_size;
        int affine = w->mode == MOECL_QMODE_AFFINE;
        enum moecl_dtype sdt = affine ? w->float_dtype : MOECL_DTYPE_U8;
        if ((st = add_part(l, w, "weight", MOECL_DTYPE_U32, w->cols * w->bits / 32, w->weight,
                           w->weight_row_stride, w->weight_expert_stride)) ||
            (st = add_part(l, w, "scales", sdt, groups, w->scales, w->scales_row_stride,
                           w->scales_expert_stride)))
            return st;
        if (affine)
            st = add_part(l, w, "biases", sdt, groups, w->biases, w->biases_row_stride,
                          w->biases_expert_stride);
    }
    if (st != MOECL_OK || !w->bias)
        return st;
    /* the bias [E?][rows]: one block of rows elements per expert */
    struct out_tensor *t = out_add(l);
    if (!t)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    snprintf(t->name, sizeof t->name, "%s.bias", w->name);
    t->dtype = w->bias_dtype;
    int d = 0;
    if (w->n_experts)
        t->shape[d++] = w->n_experts;
    t->shape[d++] = w->rows;
    t->n_dims = d;
    t->base = w->bias;
    t->n_experts = w->n_experts ? w->n_experts : 1;
    t->n_rows = 1;
    t->row_bytes = (size_t)w->rows * moecl_dtype_size(w->bias_dtype);
    t->expert_stride = w->bias_expert_stride;
    t->n_bytes = (uint64_t)t->n_experts * t->row_bytes;
    return MOECL_OK;
}

static enum moecl_status collect(const struct moecl_ckpt *c, struct out_list *l) {
    enum moecl_status st;
    if ((st = add_module(l, &c->embed)) || (st = add_vec(l, &c->final_norm)) ||
        (st = add_module(l, &c->lm_head)))
        return st;
    for (int i = 0; i < c->config.n_layers; i++) {
        const struct moecl_layer *L = &c->layers[i];
        if ((st = add_vec(l, &L->input_norm)) || (st = add_vec(l, &L->post_norm)) ||
            (st = add_vec(l, &L->sinks)) || (st = add_module(l, &L->q)) ||
            (st = add_module(l, &L->k)) || (st = add_module(l, &L->v)) ||
            (st = add_module(l, &L->o)) || (st = add_module(l, &L->router)) ||
            (st = add_module(l, &L->gate)) || (st = add_module(l, &L->up)) ||
            (st = add_module(l, &L->down)))
            return st;
    }
    return MOECL_OK;
}

/* Streams an unconverted Hugging Face bf16 expert stack output-major: blocks of ROWS output
 * rows are gathered from the input-major source (each source row contributes a contiguous run
 * of k*ROWS elements), so memory stays one block and the source is read near-sequentially. */
static enum moecl_status write_transposed(struct moecl_st_writer *w, const struct out_tensor *t) {
    enum { ROWS = 64 };
    size_t es = t->elem_bytes, in = (size_t)t->n_cols, out = (size_t)t->n_rows;
    size_t k = (size_t)t->k, par = (size_t)t->parity;
    unsigned char *buf = malloc((size_t)ROWS * in * es);
    if (!buf)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory converting '%s'", t->name);
    enum moecl_status st = MOECL_OK;
    for (size_t e = 0; e < (size_t)t->n_experts && st == MOECL_OK; e++) {
        const unsigned char *src = t->base + e * in * k * out * es;
        for (size_t o0 = 0; o0 < out && st == MOECL_OK; o0 += ROWS) {
            size_t nb = out - o0 < ROWS ? out - o0 : ROWS;
            for (size_t i = 0; i < in; i++) {
                const unsigned char *row = src + (i * k * out + k * o0 + par) * es;
                for (size_t o = 0; o < nb; o++)
                    memcpy(buf + (o * in + i) * es, row + k * o * es, es);
            }
            st = moecl_st_writer_write(w, buf, nb * in * es);
        }
        moecl_st_release(src, in * k * out * es); /* read once per expert */
    }
    free(buf);
    return st;
}

static enum moecl_status write_shard(const char *path, struct out_list *l, int shard) {
    struct moecl_st_writer *w = NULL;
    enum moecl_status st = moecl_st_writer_create(path, &w);
    if (st == MOECL_OK)
        st = moecl_st_writer_metadata(w, "format", "mlx");
    for (int i = 0; i < l->n && st == MOECL_OK; i++)
        if (l->t[i].shard == shard)
            st = moecl_st_writer_declare(w, l->t[i].name, l->t[i].dtype, l->t[i].n_dims,
                                         l->t[i].shape);
    if (st == MOECL_OK)
        st = moecl_st_writer_begin(w);
    for (int i = 0; i < l->n && st == MOECL_OK; i++) {
        const struct out_tensor *t = &l->t[i];
        if (t->shard != shard)
            continue;
        st = moecl_st_writer_tensor_begin(w, t->name);
        if (st == MOECL_OK && t->transpose)
            st = write_transposed(w, t);
        for (int64_t e = 0; e < t->n_experts && st == MOECL_OK && !t->transpose; e++)
            for (int64_t r = 0; r < t->n_rows && st == MOECL_OK; r++)
                st = moecl_st_writer_write(
                    w, t->base + (size_t)e * t->expert_stride + (size_t)r * t->row_stride,
                    t->row_bytes);
        if (st == MOECL_OK)
            st = moecl_st_writer_tensor_end(w);
        /* the source bytes were read once: keep them out of resident memory */
        if (t->transpose)
            moecl_st_release(t->base, (size_t)t->n_bytes * (size_t)t->k);
        else if (t->n_experts && t->n_rows)
            moecl_st_release(t->base, (size_t)(t->n_experts - 1) * t->expert_stride +
                                          (size_t)(t->n_rows - 1) * t->row_stride + t->row_bytes);
    }
    if (st == MOECL_OK)
        st = moecl_st_writer_finish(w);
    moecl_st_writer_free(w);
    return st;
}

static enum moecl_status write_text_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    return ok ? MOECL_OK : moecl_error_set(MOECL_ERR_IO, "%s: write failed", path);
}

static enum moecl_status copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    ok = (fclose(out) == 0) && ok;
    return ok ? MOECL_OK : moecl_error_set(MOECL_ERR_IO, "copying %s to %s failed", src, dst);
}

/* config.json with an MLX quantization record where the source had HF's quant_method. */
static enum moecl_status write_config(const struct moecl_ckpt *c, const char *dst) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", c->dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0, len = 0, n;
    char buf[1 << 16];
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(text, cap);
            if (!p) {
                free(text);
                fclose(f);
                return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
            }
            text = p;
        }
        memcpy(text + len, buf, n);
        len += n;
    }
    fclose(f);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!root)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: not valid JSON", path);
    if (c->layout == MOECL_LAYOUT_HF_MXFP4 &&
        !cJSON_GetObjectItemCaseSensitive(root, "quantization")) {
        /* as mlx-lm saves a converted HF MXFP4 model: both records, the MLX form */
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "quantization_config" : "quantization";
            cJSON *q = cJSON_CreateObject();
            cJSON_AddNumberToObject(q, "group_size", 32);
            cJSON_AddNumberToObject(q, "bits", 4);
            cJSON_AddStringToObject(q, "mode", "mxfp4");
            cJSON_DeleteItemFromObjectCaseSensitive(root, key);
            cJSON_AddItemToObject(root, key, q);
        }
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!out)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    snprintf(path, sizeof path, "%s/config.json", dst);
    enum moecl_status st = write_text_file(path, out);
    free(out);
    return st;
}

/* Every other top-level file of the source folder (tokenizer, generation config, ...). */
static enum moecl_status copy_side_files(const char *src, const char *dst) {
    DIR *d = opendir(src);
    if (!d)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot open folder: %s", src, strerror(errno));
    enum moecl_status st = MOECL_OK;
    struct dirent *de;
    char a[PATH_MAX + 300], b[PATH_MAX + 300];
    while (st == MOECL_OK && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        if (n[0] == '.' || !strcmp(n, "config.json") ||
            !strcmp(n, "model.safetensors.index.json") ||
            (l > 12 && !strcmp(n + l - 12, ".safetensors")))
            continue;
        snprintf(a, sizeof a, "%s/%s", src, n);
        struct stat sb;
        if (stat(a, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        snprintf(b, sizeof b, "%s/%s", dst, n);
        st = copy_file(a, b);
    }
    closedir(d);
    return st;
}

enum moecl_status moecl_convert_to_mlx(const char *src_dir, const char *dst_dir) {
    if (mkdir(dst_dir, 0755) != 0 && errno != EEXIST)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create folder: %s", dst_dir,
                               strerror(errno));
    char rs[PATH_MAX], rd[PATH_MAX];
    if (realpath(src_dir, rs) && realpath(dst_dir, rd) && strcmp(rs, rd) == 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: source and destination are the same folder", dst_dir);
    struct moecl_ckpt *c = NULL;
    enum moecl_status st = moecl_ckpt_open_ex(src_dir, MOECL_CKPT_LAZY_HF_BF16, &c);
    if (st != MOECL_OK)
        return st;
    struct out_list l = {0};
    st = collect(c, &l);
    /* shards of at most 5 GiB, in order */
    int n_shards = 1;
    uint64_t acc = 0;
    for (int i = 0; i < l.n && st == MOECL_OK; i++) {
        if (acc > 0 && acc + l.t[i].n_bytes > SHARD_BYTES) {
            n_shards++;
            acc = 0;
        }
        l.t[i].shard = n_shards - 1;
        acc += l.t[i].n_bytes;
    }
    char path[PATH_MAX + 64];
    for (int s = 0; s < n_shards && st == MOECL_OK; s++) {
        if (n_shards == 1)
            snprintf(path, sizeof path, "%s/model.safetensors", dst_dir);
        else
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dst_dir, s + 1,
                     n_shards);
        st = write_shard(path, &l, s);
    }
    if (st == MOECL_OK && n_shards > 1) {
        cJSON *index = cJSON_CreateObject(), *meta = cJSON_CreateObject(),
              *wm = cJSON_CreateObject();
        uint64_t total = 0;
        for (int i = 0; i < l.n; i++) {
            char shard[64];
            snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", l.t[i].shard + 1,
                     n_shards);
            cJSON_AddStringToObject(wm, l.t[i].name, shard);
            total += l.t[i].n_bytes;
        }
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        cJSON_AddItemToObject(index, "metadata", meta);
        cJSON_AddItemToObject(index, "weight_map", wm);
        char *text = cJSON_Print(index);
        cJSON_Delete(index);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst_dir);
        st = text ? write_text_file(path, text)
                  : moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        free(text);
    }
    if (st == MOECL_OK)
        st = write_config(c, dst_dir);
    if (st == MOECL_OK)
        st = copy_side_files(src_dir, dst_dir);
    free(l.t);
    moecl_ckpt_close(c);
    return st;
}
