/* moecl_ckpt_open: config.json, shards, quantization map, module views (checkpoint.h).
 *
 * The MLX layouts are pure views into the mappings. The Hugging Face expert layouts live in
 * hf_layout.c. Every tensor of the checkpoint must be consumed by some module: like mlx-lm's
 * strict load_weights, a stray tensor is an error rather than silently ignored. */
#include "checkpoint.h"

#include "loader_internal.h"
#include "moecl_error.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_JSON_BYTES ((size_t)64 << 20)
#define MAX_SHARDS 4096

struct owned {
    void **ptrs;
    size_t n, cap;
};

/* ------------------------------------------------------------------ ownership */

void *moecl_ckpt_own(struct moecl_ckpt *c, void *p) {
    if (!p)
        return NULL;
    struct owned *o = c->owned;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        void **np = realloc(o->ptrs, cap * sizeof *np);
        if (!np) {
            free(p);
            return NULL;
        }
        o->ptrs = np;
        o->cap = cap;
    }
    o->ptrs[o->n++] = p;
    return p;
}

void *moecl_ckpt_alloc(struct moecl_ckpt *c, size_t n_bytes) {
    return moecl_ckpt_own(c, malloc(n_bytes ? n_bytes : 1));
}

char *moecl_ckpt_strf(struct moecl_ckpt *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return moecl_ckpt_own(c, s);
}

void moecl_ckpt_close(struct moecl_ckpt *c) {
    if (!c)
        return;
    for (int i = 0; i < c->n_files; i++)
        moecl_st_close(c->files[i]);
    free(c->files);
    free(c->tensors);
    struct owned *o = c->owned;
    if (o) {
        for (size_t i = 0; i < o->n; i++)
            free(o->ptrs[i]);
        free(o->ptrs);
        free(o);
    }
    moecl_config_free(&c->config);
    free(c->layers);
    free(c->dir);
    free(c);
}

/* ------------------------------------------------------------------ tensor lookup */

static int cmp_tensor_ptr(const void *a, const void *b) {
    const struct moecl_tensor *x = *(const struct moecl_tensor *const *)a;
    const struct moecl_tensor *y = *(const struct moecl_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int find_index(const struct moecl_ckpt *c, const char *name) {
    int lo = 0, hi = c->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int r = strcmp(c->tensors[mid]->name, name);
        if (r == 0)
            return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

const struct moecl_tensor *moecl_ckpt_find(const struct moecl_ckpt *c, const char *name) {
    int i = find_index(c, name);
    return i < 0 ? NULL : c->tensors[i];
}

const struct moecl_tensor *moecl_ckpt_take(struct moecl_ckpt_builder *b, const char *name) {
    int i = find_index(b->ckpt, name);
    if (i < 0)
        return NULL;
    b->used[i] = 1;
    return b->ckpt->tensors[i];
}

const char *moecl_ckpt_tensor_file(const struct moecl_ckpt *c, const struct moecl_tensor *t) {
    if (t->file_index < 0 || t->file_index >= c->n_files)
        return "?";
    return c->files[t->file_index]->path;
}

enum moecl_status moecl_ckpt_expect(const struct moecl_ckpt *c, const struct moecl_tensor *t,
                                    int want_float, enum moecl_dtype dtype, const int64_t *shape,
                                    int n_dims, const char *role) {
    int dtype_ok = want_float ? moecl_dtype_is_float(t->dtype) : t->dtype == dtype;
    int shape_ok = t->n_dims == n_dims;
    for (int i = 0; shape_ok && i < n_dims; i++)
        shape_ok = t->shape[i] == shape[i];
    if (dtype_ok && shape_ok)
        return MOECL_OK;
    char want[160], got[160];
    moecl_shape_str(shape, n_dims, want, sizeof want);
    moecl_shape_str(t->shape, t->n_dims, got, sizeof got);
    return moecl_error_set(MOECL_ERR_SHAPE, "%s: tensor '%s' (%s): expected %s %s, found %s %s",
                           moecl_ckpt_tensor_file(c, t), t->name, role,
                           want_float ? "F32/F16/BF16" : moecl_dtype_name(dtype), want,
                           moecl_dtype_name(t->dtype), got);
}

/* ------------------------------------------------------------------ files */

static enum moecl_status read_text(const char *path, char **text_out, size_t *len_out) {
    *text_out = NULL;
    *len_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return moecl_error_set(errno == ENOENT ? MOECL_ERR_NOT_FOUND : MOECL_ERR_IO,
                               "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > MAX_JSON_BYTES) {
        fclose(f);
        return moecl_error_set(MOECL_ERR_IO, "%s: not a regular file of at most %zu bytes", path,
                               MAX_JSON_BYTES);
    }
    size_t n = (size_t)sb.st_size;
    char *text = malloc(n + 1);
    if (!text) {
        fclose(f);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    size_t got = fread(text, 1, n, f);
    fclose(f);
    if (got != n) {
        free(text);
        return moecl_error_set(MOECL_ERR_IO, "%s: short read", path);
    }
    text[n] = 0;
    *text_out = text;
    *len_out = n;
    return MOECL_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int shard_name_ok(const char *name) {
    return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

/* The shard file names: the index's weight_map values, or every model*.safetensors. */
static enum moecl_status list_shards(const char *dir, cJSON **index_out, char ***names_out,
                                     int *n_out) {
    *index_out = NULL;
    *names_out = NULL;
    *n_out = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *text = NULL;
    size_t len = 0;
    enum moecl_status st = read_text(path, &text, &len);
    char **names = calloc(MAX_SHARDS, sizeof *names);
    int n = 0;
    if (!names) {
        free(text);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    }
    if (st == MOECL_OK) {
        cJSON *index = cJSON_ParseWithLength(text, len);
        free(text);
        const cJSON *wm = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) {
            cJSON_Delete(index);
            free(names);
            return moecl_error_set(MOECL_ERR_FORMAT, "%s: not JSON with a 'weight_map' object",
                                   path);
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
                st = moecl_error_set(MOECL_ERR_FORMAT,
                                     "%s: weight_map entry '%.200s' is not a shard file name in "
                                     "the folder",
                                     path, e->string ? e->string : "");
                break;
            }
            int seen = 0;
            for (int i = 0; i < n && !seen; i++)
                seen = strcmp(names[i], e->valuestring) == 0;
            if (seen)
                continue;
            if (n == MAX_SHARDS) {
                st = moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: more than %d shards", path,
                                     MAX_SHARDS);
                break;
            }
            if (!(names[n++] = strdup(e->valuestring))) {
                st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
                break;
            }
        }
        if (st == MOECL_OK && n == 0)
            st = moecl_error_set(MOECL_ERR_FORMAT, "%s: weight_map is empty", path);
        if (st != MOECL_OK) {
            for (int i = 0; i < n; i++)
                free(names[i]);
            free(names);
            cJSON_Delete(index);
            return st;
        }
        *index_out = index;
    } else if (st == MOECL_ERR_NOT_FOUND) {
        st = MOECL_OK;
        DIR *d = opendir(dir);
        if (!d) {
            free(names);
            return moecl_error_set(errno == ENOENT ? MOECL_ERR_NOT_FOUND : MOECL_ERR_IO,
                                   "%s: cannot open folder: %s", dir, strerror(errno));
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL && st == MOECL_OK) {
            size_t l = strlen(de->d_name);
            if (l < 17 || strncmp(de->d_name, "model", 5) != 0 ||
                strcmp(de->d_name + l - 12, ".safetensors") != 0)
                continue;
            if (n == MAX_SHARDS)
                st = moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: more than %d shards", dir,
                                     MAX_SHARDS);
            else if (!(names[n++] = strdup(de->d_name)))
                st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        }
        closedir(d);
        if (st == MOECL_OK && n == 0)
            st = moecl_error_set(MOECL_ERR_NOT_FOUND,
                                 "%s: no model*.safetensors file and no "
                                 "model.safetensors.index.json",
                                 dir);
        if (st != MOECL_OK) {
            for (int i = 0; i < n; i++)
                free(names[i]);
            free(names);
            return st;
        }
    } else {
        free(names);
        return st;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    *names_out = names;
    *n_out = n;
    return MOECL_OK;
}

static enum moecl_status open_shards(struct moecl_ckpt *c) {
    cJSON *index = NULL;
    char **names = NULL;
    int n = 0;
    enum moecl_status st = list_shards(c->dir, &index, &names, &n);
    if (st != MOECL_OK)
        return st;
    c->files = calloc((size_t)n, sizeof *c->files);
    if (!c->files)
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    char path[4096];
    for (int i = 0; i < n && st == MOECL_OK; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, names[i]);
        st = moecl_st_open(path, i, &c->files[i]);
        if (st == MOECL_OK)
            c->n_files++;
        else if (st == MOECL_ERR_NOT_FOUND && index)
            moecl_error_set(st,
                            "%s/model.safetensors.index.json names shard '%s', which is missing",
                            c->dir, names[i]);
    }
    /* Every tensor, sorted by name; a name in two shards is ambiguous. */
    int total = 0;
    for (int i = 0; i < c->n_files; i++)
        total += c->files[i]->n_tensors;
    if (st == MOECL_OK && !(c->tensors = malloc(((size_t)total + 1) * sizeof *c->tensors)))
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    if (st == MOECL_OK) {
        for (int i = 0; i < c->n_files; i++)
            for (int j = 0; j < c->files[i]->n_tensors; j++)
                c->tensors[c->n_tensors++] = &c->files[i]->tensors[j];
        qsort(c->tensors, (size_t)c->n_tensors, sizeof *c->tensors, cmp_tensor_ptr);
        for (int i = 1; i < c->n_tensors && st == MOECL_OK; i++)
            if (strcmp(c->tensors[i - 1]->name, c->tensors[i]->name) == 0)
                st = moecl_error_set(MOECL_ERR_FORMAT, "tensor '%s' appears in both %s and %s",
                                     c->tensors[i]->name,
                                     moecl_ckpt_tensor_file(c, c->tensors[i - 1]),
                                     moecl_ckpt_tensor_file(c, c->tensors[i]));
    }
    /* The index must agree with the shards it names. */
    if (st == MOECL_OK && index) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(index, "weight_map")) {
            const struct moecl_tensor *t = moecl_ckpt_find(c, e->string ? e->string : "");
            const char *file = t ? moecl_ckpt_tensor_file(c, t) : NULL;
            const char *base = file ? strrchr(file, '/') : NULL;
            base = base ? base + 1 : file;
            if (!t || strcmp(base, e->valuestring) != 0) {
                st = moecl_error_set(MOECL_ERR_FORMAT,
                                     "%s/model.safetensors.index.json maps tensor '%.200s' to "
                                     "'%s', which has no such tensor",
                                     c->dir, e->string ? e->string : "", e->valuestring);
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    cJSON_Delete(index);
    return st;
}

/* ------------------------------------------------------------------ modules */

static enum moecl_status missing(const struct moecl_ckpt *c, const char *name) {
    return moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: missing tensor '%s'", c->dir, name);
}

static enum moecl_status load_vec(struct moecl_ckpt_builder *b, const char *name, int64_t n,
                                  struct moecl_vec *v) {
    struct moecl_ckpt *c = b->ckpt;
    const struct moecl_tensor *t = moecl_ckpt_take(b, name);
    if (!t)
        return missing(c, name);
    enum moecl_status st = moecl_ckpt_expect(c, t, 1, MOECL_DTYPE_F32, &n, 1, "vector");
    if (st != MOECL_OK)
        return st;
    v->name = t->name;
    v->dtype = t->dtype;
    v->n = n;
    v->data = t->data;
    v->src = t;
    return MOECL_OK;
}

/* The additive bias `<path>.bias` of shape [n_experts?][rows]. */
enum moecl_status moecl_ckpt_load_bias(struct moecl_ckpt_builder *b, const char *path,
                                       struct moecl_qweight *w) {
    char name[512];
    snprintf(name, sizeof name, "%s.bias", path);
    const struct moecl_tensor *t = moecl_ckpt_take(b, name);
    if (!t)
        return missing(b->ckpt, name);
    int64_t shape[2] = {w->n_experts, w->rows};
    int lead = w->n_experts ? 1 : 0;
    enum moecl_status st =
        moecl_ckpt_expect(b->ckpt, t, 1, MOECL_DTYPE_F32, shape + 1 - lead, 1 + lead, "bias");
    if (st != MOECL_OK)
        return st;
    w->bias = t->data;
    w->bias_dtype = t->dtype;
    w->bias_expert_stride = (size_t)w->rows * moecl_dtype_size(t->dtype);
    w->src_bias = t;
    return MOECL_OK;
}

/* A linear module in MLX layout: `<path>.weight` (+ `.scales`, `.biases` when quantized)
 * and `.bias` if has_bias. n_experts = 0 for a plain linear. */
static enum moecl_status load_linear(struct moecl_ckpt_builder *b, const char *path, int n_experts,
                                     int64_t rows, int64_t cols, int has_bias,
                                     struct moecl_qweight *w) {
    struct moecl_ckpt *c = b->ckpt;
    char name[512];
    memset(w, 0, sizeof *w);
    if (!(w->name = moecl_ckpt_strf(c, "%s", path)))
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    w->n_experts = n_experts;
    w->rows = rows;
    w->cols = cols;
    snprintf(name, sizeof name, "%s.weight", path);
    const struct moecl_tensor *wt = moecl_ckpt_take(b, name);
    if (!wt)
        return missing(c, name);
    snprintf(name, sizeof name, "%s.scales", path);
    const struct moecl_tensor *st_scales = moecl_ckpt_find(c, name);
    struct moecl_qspec spec;
    enum moecl_status st = moecl_ckpt_module_spec(b, path, st_scales != NULL, &spec);
    if (st != MOECL_OK)
        return st;
    int lead = n_experts ? 1 : 0;
    int64_t shape[3] = {n_experts, rows, cols};
    int64_t *sh = shape + 1 - lead;
    int nd = 2 + lead;
    size_t n_rows = (size_t)rows * (size_t)(n_experts ? n_experts : 1);
    w->mode = spec.mode;
    if (spec.mode == MOECL_QMODE_NONE) {
        if (st_scales)
            return moecl_error_set(MOECL_ERR_FORMAT,
                                   "%s: module '%s' is float per config.json but tensor '%s' "
                                   "exists",
                                   moecl_ckpt_tensor_file(c, st_scales), path, name);
        if ((st = moecl_ckpt_expect(c, wt, 1, MOECL_DTYPE_F32, sh, nd, "float weight")))
            return st;
        w->float_dtype = wt->dtype;
        w->bits = (int)moecl_dtype_size(wt->dtype) * 8;
        w->weight = wt->data;
        w->weight_row_stride = wt->n_bytes / (n_rows ? n_rows : 1);
        w->weight_expert_stride = w->weight_row_stride * (size_t)rows;
        w->src_weight = wt;
    } else {
        if (cols % spec.group_size != 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "module '%s': group_size %d does not divide the input width "
                                   "%lld (%s, %d bits)",
                                   path, spec.group_size, (long long)cols,
                                   moecl_qmode_name(spec.mode), spec.bits);
        w->bits = spec.bits;
        w->group_size = spec.group_size;
        const struct moecl_tensor *sc = moecl_ckpt_take(b, name);
        if (!sc)
            return moecl_error_set(MOECL_ERR_NOT_FOUND,
                                   "%s: missing tensor '%s' (module '%s' is quantized %s %d-bit "
                                   "g%d per config.json)",
                                   c->dir, name, path, moecl_qmode_name(spec.mode), spec.bits,
                                   spec.group_size);
        char role[128];
        snprintf(role, sizeof role, "%s %d-bit g%d packed weight", moecl_qmode_name(spec.mode),
                 spec.bits, spec.group_size);
        sh[nd - 1] = cols * spec.bits / 32;
        if ((st = moecl_ckpt_expect(c, wt, 0, MOECL_DTYPE_U32, sh, nd, role)))
            return st;
        sh[nd - 1] = cols / spec.group_size;
        int affine = spec.mode == MOECL_QMODE_AFFINE;
        snprintf(role, sizeof role, "%s g%d scales", moecl_qmode_name(spec.mode), spec.group_size);
        if ((st = moecl_ckpt_expect(c, sc, affine, MOECL_DTYPE_U8, sh, nd, role)))
            return st;
        w->weight = wt->data;
        w->weight_row_stride = (size_t)(cols * spec.bits / 8);
        w->weight_expert_stride = w->weight_row_stride * (size_t)rows;
        w->scales = sc->data;
        w->scales_row_stride = sc->n_bytes / (n_rows ? n_rows : 1);
        w->scales_expert_stride = w->scales_row_stride * (size_t)rows;
        w->src_weight = wt;
        w->src_scales = sc;
        w->float_dtype = affine ? sc->dtype : c->act_dtype;
        if (affine) {
            snprintf(name, sizeof name, "%s.biases", path);
            const struct moecl_tensor *bi = moecl_ckpt_take(b, name);
            if (!bi)
                return missing(c, name);
            if ((st = moecl_ckpt_expect(c, bi, 0, sc->dtype, sh, nd, "affine biases (as scales)")))
                return st;
            w->biases = bi->data;
            w->biases_row_stride = w->scales_row_stride;
            w->biases_expert_stride = w->scales_expert_stride;
            w->src_biases = bi;
        }
    }
    return has_bias ? moecl_ckpt_load_bias(b, path, w) : MOECL_OK;
}

enum moecl_status moecl_ckpt_module_spec(struct moecl_ckpt_builder *b, const char *path,
                                         int has_scales, struct moecl_qspec *spec) {
    enum moecl_status st = moecl_qconfig_decide(&b->qconfig, path, has_scales, spec);
    if (st != MOECL_OK)
        return moecl_error_prefix(st, "%s/config.json: ", b->ckpt->dir);
    return MOECL_OK;
}

static enum moecl_status load_layer(struct moecl_ckpt_builder *b, int i) {
    struct moecl_ckpt *c = b->ckpt;
    const struct moecl_config *cfg = &c->config;
    struct moecl_layer *L = &c->layers[i];
    char p[256], n[300];
    int64_t H = cfg->hidden_size, q_w = (int64_t)cfg->n_heads * cfg->head_dim,
            kv_w = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    enum moecl_status st;
    snprintf(p, sizeof p, "model.layers.%d.", i);
#define PATH(s) (snprintf(n, sizeof n, "%s%s", p, s), n)
    if ((st = load_vec(b, PATH("input_layernorm.weight"), H, &L->input_norm)) ||
        (st = load_vec(b, PATH("post_attention_layernorm.weight"), H, &L->post_norm)) ||
        (st = load_vec(b, PATH("self_attn.sinks"), cfg->n_heads, &L->sinks)) ||
        (st = load_linear(b, PATH("self_attn.q_proj"), 0, q_w, H, 1, &L->q)) ||
        (st = load_linear(b, PATH("self_attn.k_proj"), 0, kv_w, H, 1, &L->k)) ||
        (st = load_linear(b, PATH("self_attn.v_proj"), 0, kv_w, H, 1, &L->v)) ||
        (st = load_linear(b, PATH("self_attn.o_proj"), 0, H, q_w, 1, &L->o)) ||
        (st = load_linear(b, PATH("mlp.router"), 0, cfg->n_experts, H, 1, &L->router)))
        return st;
    switch (c->layout) {
    case MOECL_LAYOUT_HF_MXFP4:
        return moecl_hf_mxfp4_experts(b, i);
    case MOECL_LAYOUT_HF_BF16:
        return moecl_hf_bf16_experts(b, i);
    case MOECL_LAYOUT_MLX:
        break;
    }
    int E = cfg->n_experts;
    int64_t I = cfg->intermediate_size;
    if ((st = load_linear(b, PATH("mlp.experts.gate_proj"), E, I, H, 1, &L->gate)) ||
        (st = load_linear(b, PATH("mlp.experts.up_proj"), E, I, H, 1, &L->up)) ||
        (st = load_linear(b, PATH("mlp.experts.down_proj"), E, H, I, 1, &L->down)))
        return st;
#undef PATH
    return MOECL_OK;
}

static enum moecl_ckpt_layout detect_layout(const struct moecl_ckpt *c) {
    for (int i = 0; i < c->n_tensors; i++)
        if (strstr(c->tensors[i]->name, "gate_proj.weight"))
            return MOECL_LAYOUT_MLX; /* mlx-lm's sanitize test */
    for (int i = 0; i < c->n_tensors; i++) {
        if (strstr(c->tensors[i]->name, "gate_up_proj_blocks"))
            return MOECL_LAYOUT_HF_MXFP4;
        const char *s = strstr(c->tensors[i]->name, "mlp.experts.gate_up_proj");
        if (s && strcmp(s, "mlp.experts.gate_up_proj") == 0)
            return MOECL_LAYOUT_HF_BF16;
    }
    return MOECL_LAYOUT_MLX;
}

static enum moecl_status build(struct moecl_ckpt_builder *b) {
    struct moecl_ckpt *c = b->ckpt;
    const struct moecl_config *cfg = &c->config;
    enum moecl_status st;
    c->layout = detect_layout(c);
    /* The activation dtype is the float dtype the norms are stored in. */
    if ((st = load_vec(b, "model.norm.weight", cfg->hidden_size, &c->final_norm)))
        return st;
    c->act_dtype = c->final_norm.dtype;
    if ((st = load_linear(b, "model.embed_tokens", 0, cfg->vocab_size, cfg->hidden_size, 0,
                          &c->embed)) ||
        (st = load_linear(b, "lm_head", 0, cfg->vocab_size, cfg->hidden_size, 0, &c->lm_head)))
        return st;
    c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
    if (!c->layers)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory for %d layers", cfg->n_layers);
    for (int i = 0; i < cfg->n_layers; i++)
        if ((st = load_layer(b, i)))
            return st;
    int n_unused = 0, first = -1;
    for (int i = 0; i < c->n_tensors; i++)
        if (!b->used[i] && n_unused++ == 0)
            first = i;
    if (n_unused)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: tensor '%s' is not part of a gpt-oss model with this "
                               "config (%d unexpected tensor%s; num_hidden_layers = %d)",
                               moecl_ckpt_tensor_file(c, c->tensors[first]),
                               c->tensors[first]->name, n_unused, n_unused > 1 ? "s" : "",
                               cfg->n_layers);
    return MOECL_OK;
}

enum moecl_status moecl_ckpt_open(const char *dir, struct moecl_ckpt **ckpt_out) {
    return moecl_ckpt_open_ex(dir, 0, ckpt_out);
}

enum moecl_status moecl_ckpt_open_ex(const char *dir, unsigned flags,
                                     struct moecl_ckpt **ckpt_out) {
    *ckpt_out = NULL;
    struct moecl_ckpt_builder b = {0};
    b.flags = flags;
    struct moecl_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->owned = calloc(1, sizeof(struct owned))) || !(c->dir = strdup(dir))) {
        moecl_ckpt_close(c);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    }
    b.ckpt = c;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    enum moecl_status st = read_text(path, &text, &len);
    if (st == MOECL_OK)
        st = moecl_config_parse(path, text, len, &c->config);
    if (st == MOECL_OK)
        st = moecl_qconfig_parse(path, text, len, &b.qconfig);
    free(text);
    if (st == MOECL_OK)
        st = open_shards(c);
    if (st == MOECL_OK && !(b.used = calloc((size_t)c->n_tensors + 1, 1)))
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    if (st == MOECL_OK)
        st = build(&b);
    free(b.used);
    moecl_qconfig_free(&b.qconfig);
    if (st != MOECL_OK) {
        moecl_ckpt_close(c);
        return st;
    }
    *ckpt_out = c;
    return MOECL_OK;
}
