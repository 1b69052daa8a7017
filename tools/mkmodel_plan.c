/* mkmodel: which module is stored how (the recipes and presets), and the list of tensors with
 * their names, dtypes and shapes (spec gpt-oss-mlx-format.md §1.2, §1.4, §5.1). */
#include "mkmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ plan */

static struct mk_tensor *add(struct mk_plan *p, const char *name, enum moecl_dtype dtype,
                             int n_dims, const int64_t *shape) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 256;
        struct mk_tensor *t = realloc(p->t, (size_t)cap * sizeof(*t));
        if (!t)
            return NULL;
        p->t = t;
        p->cap = cap;
    }
    struct mk_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->n_dims = n_dims;
    uint64_t n = moecl_dtype_size(dtype);
    for (int d = 0; d < n_dims; d++) {
        t->shape[d] = shape[d];
        n *= (uint64_t)shape[d];
    }
    t->n_bytes = n;
    p->total_bytes += n;
    return t;
}

static int add_float(struct mk_plan *p, const struct mk_opts *o, const char *name, int n_dims,
                     const int64_t *shape, double center, double amp) {
    struct mk_tensor *t = add(p, name, o->r.fdtype, n_dims, shape);
    if (!t)
        return -1;
    t->gen = MK_GEN_FLOAT;
    t->seed = mk_hash_str(o->seed, name);
    t->center = center;
    t->amp = amp;
    return 0;
}

static int add_vec(struct mk_plan *p, const struct mk_opts *o, const char *name, int64_t n,
                   double center, double amp, int counted) {
    if (counted)
        p->total_params += (uint64_t)n;
    return add_float(p, o, name, 1, &n, center, amp);
}

/* weight (+ scales, biases) and the additive bias of one MLX-layout module. */
static int add_module(struct mk_plan *p, const struct mk_opts *o, enum moecl_recipe_module mod,
                      int layer) {
    char path[128], name[160];
    int64_t rows, cols;
    int ne;
    enum moecl_recipe_entry entry;
    moecl_recipe_module_dims(&o->r, mod, &rows, &cols, &ne);
    struct moecl_recipe_q q = moecl_recipe_module_q(&o->r, mod, layer, &entry);
    moecl_recipe_module_path(mod, layer, path, sizeof path);
    uint64_t seed = mk_hash_str(o->seed, path);
    double target = 1.0 / sqrt((double)cols);
    int has_bias = mod != MOECL_RMOD_EMBED && mod != MOECL_RMOD_LM_HEAD;
    int nd = ne ? 3 : 2;
    int64_t shape[3];
    int k = 0;
    if (ne)
        shape[k++] = ne;
    shape[k++] = rows;
    p->total_params += (uint64_t)(ne ? ne : 1) * (uint64_t)rows * (uint64_t)cols;

    snprintf(name, sizeof name, "%s.weight", path);
    if (q.mode == MOECL_QMODE_NONE) {
        shape[k] = cols;
        if (add_float(p, o, name, nd, shape, 0.0, target * sqrt(3.0)))
            return -1;
    } else {
        shape[k] = cols * q.bits / 32;
        struct mk_tensor *t = add(p, name, MOECL_DTYPE_U32, nd, shape);
        if (!t)
            return -1;
        t->gen = q.mode == MOECL_QMODE_MXFP8 ? MK_GEN_FP8_CODES : MK_GEN_RANDOM_WORDS;
        t->seed = seed;
        shape[k] = cols / q.group_size;
        snprintf(name, sizeof name, "%s.scales", path);
        int affine = q.mode == MOECL_QMODE_AFFINE;
        t = add(p, name, affine ? o->r.fdtype : MOECL_DTYPE_U8, nd, shape);
        if (!t)
            return -1;
        t->gen = affine                        ? MK_GEN_AFFINE_SCALES
                 : q.mode == MOECL_QMODE_NVFP4 ? MK_GEN_E4M3_SCALES
                                               : MK_GEN_E8M0_SCALES;
        t->seed = seed;
        t->target = target;
        t->bits = q.bits;
        t->group_size = q.group_size;
        if (affine) {
            snprintf(name, sizeof name, "%s.biases", path);
            t = add(p, name, o->r.fdtype, nd, shape);
            if (!t)
                return -1;
            t->gen = MK_GEN_AFFINE_BIASES;
            t->seed = seed;
            t->target = target;
            t->bits = q.bits;
            t->group_size = q.group_size;
        }
    }
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", path);
        p->total_params += (uint64_t)(ne ? ne : 1) * (uint64_t)rows;
        if (add_float(p, o, name, nd - 1, shape, 0.0, mod == MOECL_RMOD_ROUTER ? 0.1 : 0.02))
            return -1;
    }
    return 0;
}

/* Hugging Face experts of one layer (spec §5.1 MXFP4 blocks, §1.5 bf16 input-major). */
static int add_hf_experts(struct mk_plan *p, const struct mk_opts *o, int layer) {
    char name[160];
    int64_t E = o->r.n_experts, H = o->r.hidden, I = o->r.intermediate;
    const char *pre = "model.layers";
    p->total_params += (uint64_t)(E * (2 * I * H + H * I) + E * (2 * I + H));
    if (o->r.layout == MOECL_RECIPE_LAYOUT_HF_MXFP4) {
        struct {
            const char *what;
            int64_t rows, cols;
        } m[2] = {{"gate_up_proj", 2 * I, H}, {"down_proj", H, I}};
        for (int i = 0; i < 2; i++) {
            char path[128];
            snprintf(path, sizeof path, "%s.%d.mlp.experts.%s", pre, layer, m[i].what);
            uint64_t seed = mk_hash_str(o->seed, path);
            int64_t bs[4] = {E, m[i].rows, m[i].cols / 32, 16};
            snprintf(name, sizeof name, "%s_blocks", path);
            struct mk_tensor *t = add(p, name, MOECL_DTYPE_U8, 4, bs);
            if (!t)
                return -1;
            t->gen = MK_GEN_RANDOM_WORDS;
            t->seed = seed;
            snprintf(name, sizeof name, "%s_scales", path);
            t = add(p, name, MOECL_DTYPE_U8, 3, bs);
            if (!t)
                return -1;
            t->gen = MK_GEN_E8M0_SCALES;
            t->seed = seed;
            t->target = 1.0 / sqrt((double)m[i].cols);
            t->bits = 4;
            t->group_size = 32;
            int64_t b[2] = {E, m[i].rows};
            snprintf(name, sizeof name, "%s_bias", path);
            if (add_float(p, o, name, 2, b, 0.0, 0.02))
                return -1;
        }
        return 0;
    }
    /* bf16 fine-tune layout: gate_up_proj [E, H(in), 2I(out) interleaved], down_proj [E, I, H] */
    int64_t gu[3] = {E, H, 2 * I}, gub[2] = {E, 2 * I}, dn[3] = {E, I, H}, dnb[2] = {E, H};
    snprintf(name, sizeof name, "%s.%d.mlp.experts.gate_up_proj", pre, layer);
    if (add_float(p, o, name, 3, gu, 0.0, sqrt(3.0 / (double)H)))
        return -1;
    snprintf(name, sizeof name, "%s.%d.mlp.experts.gate_up_proj_bias", pre, layer);
    if (add_float(p, o, name, 2, gub, 0.0, 0.02))
        return -1;
    snprintf(name, sizeof name, "%s.%d.mlp.experts.down_proj", pre, layer);
    if (add_float(p, o, name, 3, dn, 0.0, sqrt(3.0 / (double)I)))
        return -1;
    snprintf(name, sizeof name, "%s.%d.mlp.experts.down_proj_bias", pre, layer);
    return add_float(p, o, name, 2, dnb, 0.0, 0.02);
}

int mk_plan_build(const struct mk_opts *o, struct mk_plan *p) {
    memset(p, 0, sizeof(*p));
    char name[160];
    int hf = o->r.layout != MOECL_RECIPE_LAYOUT_MLX;
    if (add_module(p, o, MOECL_RMOD_EMBED, -1))
        goto fail;
    for (int l = 0; l < o->r.n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if (add_vec(p, o, name, o->r.hidden, 1.0, 0.1, 1))
            goto fail;
        for (int m = MOECL_RMOD_Q; m <= MOECL_RMOD_O; m++)
            if (add_module(p, o, (enum moecl_recipe_module)m, l))
                goto fail;
        /* sinks is a bare array of the attention block, not a leaf module: mlx-lm's
         * total_parameters does not count it */
        snprintf(name, sizeof name, "model.layers.%d.self_attn.sinks", l);
        if (add_vec(p, o, name, o->r.n_heads, 0.0, 1.0, 0))
            goto fail;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (add_vec(p, o, name, o->r.hidden, 1.0, 0.1, 1))
            goto fail;
        if (add_module(p, o, MOECL_RMOD_ROUTER, l))
            goto fail;
        if (hf) {
            if (add_hf_experts(p, o, l))
                goto fail;
        } else {
            for (int m = MOECL_RMOD_GATE; m <= MOECL_RMOD_DOWN; m++)
                if (add_module(p, o, (enum moecl_recipe_module)m, l))
                    goto fail;
        }
    }
    if (add_vec(p, o, "model.norm.weight", o->r.hidden, 1.0, 0.1, 1))
        goto fail;
    if (add_module(p, o, MOECL_RMOD_LM_HEAD, -1))
        goto fail;

    /* Shards as mlx-lm's make_shards cuts them: in order, a new shard when the next tensor
     * would pass the limit (never an empty shard). */
    uint64_t cur = 0;
    int shard = 0, used = 0;
    for (int i = 0; i < p->n; i++) {
        if (used && cur + p->t[i].n_bytes > o->max_shard_bytes) {
            shard++;
            cur = 0;
            used = 0;
        }
        p->t[i].shard = shard;
        cur += p->t[i].n_bytes;
        used = 1;
    }
    p->n_shards = shard + 1;
    return 0;
fail:
    mk_plan_free(p);
    return -1;
}

void mk_plan_free(struct mk_plan *p) {
    free(p->t);
    memset(p, 0, sizeof(*p));
}
