/* mkmodel: which module is stored how (the recipes and presets), and the list of tensors with
 * their names, dtypes and shapes (spec gpt-oss-mlx-format.md §1.2, §1.4, §5.1). */
#include "mkmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ modules */

static const char *const mod_suffix[MK_MOD_COUNT] = {
    [MK_MOD_EMBED] = "model.embed_tokens",   [MK_MOD_Q] = "self_attn.q_proj",
    [MK_MOD_K] = "self_attn.k_proj",         [MK_MOD_V] = "self_attn.v_proj",
    [MK_MOD_O] = "self_attn.o_proj",         [MK_MOD_ROUTER] = "mlp.router",
    [MK_MOD_GATE] = "mlp.experts.gate_proj", [MK_MOD_UP] = "mlp.experts.up_proj",
    [MK_MOD_DOWN] = "mlp.experts.down_proj", [MK_MOD_LM_HEAD] = "lm_head",
};

const char *mk_module_path(enum mk_module mod, int layer, char *buf, size_t n) {
    if (mod == MK_MOD_EMBED || mod == MK_MOD_LM_HEAD)
        snprintf(buf, n, "%s", mod_suffix[mod]);
    else
        snprintf(buf, n, "model.layers.%d.%s", layer, mod_suffix[mod]);
    return buf;
}

void mk_module_dims(const struct mk_opts *o, enum mk_module mod, int64_t *rows, int64_t *cols,
                    int *n_experts) {
    int64_t qw = (int64_t)o->n_heads * o->head_dim, kvw = (int64_t)o->n_kv_heads * o->head_dim;
    *n_experts = 0;
    switch (mod) {
    case MK_MOD_EMBED:
    case MK_MOD_LM_HEAD:
        *rows = o->vocab, *cols = o->hidden;
        break;
    case MK_MOD_Q:
        *rows = qw, *cols = o->hidden;
        break;
    case MK_MOD_K:
    case MK_MOD_V:
        *rows = kvw, *cols = o->hidden;
        break;
    case MK_MOD_O:
        *rows = o->hidden, *cols = qw;
        break;
    case MK_MOD_ROUTER:
        *rows = o->n_experts, *cols = o->hidden;
        break;
    case MK_MOD_GATE:
    case MK_MOD_UP:
        *rows = o->intermediate, *cols = o->hidden, *n_experts = o->n_experts;
        break;
    case MK_MOD_DOWN:
    default:
        *rows = o->hidden, *cols = o->intermediate, *n_experts = o->n_experts;
        break;
    }
}

static int is_expert(enum mk_module mod) {
    return mod == MK_MOD_GATE || mod == MK_MOD_UP || mod == MK_MOD_DOWN;
}

static const struct mk_q q_float = {MOECL_QMODE_NONE, 0, 0};

static struct mk_q q_affine(int bits, int gs) {
    struct mk_q q = {MOECL_QMODE_AFFINE, bits, gs};
    return q;
}

/* OptiQ-4bit (mlx-community/gpt-oss-20b-OptiQ-4bit): the card gives "33 layers @ 4-bit, 88 @
 * 8-bit" and 5.03 bits/weight, not the map. 121 = 24 x 5 + 1 counts, per layer, q/k/v/o and the
 * layer's experts as one unit, plus lm_head. No map of 4.5-bit experts reaches 5.03 bpw unless
 * some expert layers are 8-bit, and no map that keeps the experts mxfp4 gets above 4.62, so:
 * 8-bit = lm_head, k/v/o of every layer, q of 13 of 24 layers, the experts of the first and last
 * layer (88 units); 4-bit = q of the 11 middle layers and the experts of the 22 other layers (33
 * units); embedding 4-bit and routers 8-bit (not counted by the card). 5.017 bpw at full size.
 * Every module gets an explicit {"group_size", "bits", "mode"} entry, as such tools write. */
static struct mk_q optiq_q(const struct mk_opts *o, enum mk_module mod, int layer) {
    int L = o->n_layers;
    int n4 = (int)lround(11.0 * L / 24.0), first4 = (L - n4) / 2;
    switch (mod) {
    case MK_MOD_EMBED:
        return q_affine(4, 64);
    case MK_MOD_Q:
        return (layer >= first4 && layer < first4 + n4) ? q_affine(4, 64) : q_affine(8, 64);
    case MK_MOD_GATE:
    case MK_MOD_UP:
    case MK_MOD_DOWN:
        return (layer == 0 || layer == L - 1) ? q_affine(8, 64) : q_affine(4, 64);
    default:
        return q_affine(8, 64);
    }
}

/* mlx-lm's mixed_<low>_<high> predicate (spec §4.2): high bits for v_proj and down_proj of the
 * "more bits" layers and for lm_head, low bits for everything else (embedding and routers
 * included: the recipe replaces the gpt_oss router predicate). Paths without a layer index
 * (embedding, lm_head) count as layer 0. */
static struct mk_q mixed_q(const struct mk_opts *o, enum mk_module mod, int layer) {
    int L = o->n_layers, n = layer < 0 ? 0 : layer;
    int more = n < L / 8 || n >= 7 * L / 8 || (n - L / 8) % 3 == 2;
    int gs = o->base.group_size;
    if (mod == MK_MOD_LM_HEAD || (more && (mod == MK_MOD_V || mod == MK_MOD_DOWN)))
        return q_affine(o->mixed_high, gs);
    return q_affine(o->mixed_low, gs);
}

struct mk_q mk_module_q(const struct mk_opts *o, enum mk_module mod, int layer,
                        enum mk_entry *entry_out) {
    int64_t rows, cols;
    int ne;
    mk_module_dims(o, mod, &rows, &cols, &ne);
    *entry_out = MK_ENTRY_NONE;

    if (o->layout == MK_LAYOUT_HF_BF16)
        return q_float;
    if (o->layout == MK_LAYOUT_HF_MXFP4) {
        struct mk_q q = {MOECL_QMODE_MXFP4, 4, 32};
        return is_expert(mod) ? q : q_float;
    }

    struct mk_q q;
    enum mk_entry entry = MK_ENTRY_NONE;
    int run_gs = o->base.group_size; /* quantize_model skips modules with in % run_gs != 0 */
    switch (o->preset) {
    case MK_PRESET_OPTIQ_4BIT:
        q = optiq_q(o, mod, layer);
        entry = MK_ENTRY_WITHMODE;
        break;
    case MK_PRESET_MIXED:
        q = mixed_q(o, mod, layer);
        entry = MK_ENTRY_WITHMODE;
        break;
    case MK_PRESET_MXFP4:
        /* The HF release converted by current mlx-lm with -q: experts arrive mxfp4 (no entry,
         * covered by the top-level record); every module quantized in this run gets a
         * fine-grained entry; the router keeps the gpt_oss predicate's {64, 8}. */
        if (is_expert(mod))
            return o->base;
        run_gs = o->others.group_size;
        if (mod == MK_MOD_ROUTER) {
            q = q_affine(8, 64);
            entry = MK_ENTRY_NOMODE;
        } else {
            q = o->others;
            entry = MK_ENTRY_WITHMODE;
        }
        break;
    case MK_PRESET_MLX_5BIT_GS32:
        /* The card: "router stays FP16" (the 15.76 GB total requires the embedding quantized,
         * see the help text). */
        if (mod == MK_MOD_ROUTER)
            return q_float;
        q = o->base;
        break;
    default:
        if (o->base.mode == MOECL_QMODE_NONE)
            return q_float;
        q = o->base;
        if (mod == MK_MOD_ROUTER && o->router_pred) {
            q = q_affine(8, 64);
            entry = MK_ENTRY_NOMODE;
        }
        break;
    }
    if (q.mode == MOECL_QMODE_NONE)
        return q_float;
    if (cols % run_gs != 0 || cols % q.group_size != 0 || (cols * q.bits) % 32 != 0)
        return q_float; /* mlx-lm leaves such a module unquantized */
    *entry_out = entry;
    return q;
}

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
    struct mk_tensor *t = add(p, name, o->fdtype, n_dims, shape);
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
static int add_module(struct mk_plan *p, const struct mk_opts *o, enum mk_module mod, int layer) {
    char path[128], name[160];
    int64_t rows, cols;
    int ne;
    enum mk_entry entry;
    mk_module_dims(o, mod, &rows, &cols, &ne);
    struct mk_q q = mk_module_q(o, mod, layer, &entry);
    mk_module_path(mod, layer, path, sizeof path);
    uint64_t seed = mk_hash_str(o->seed, path);
    double target = 1.0 / sqrt((double)cols);
    int has_bias = mod != MK_MOD_EMBED && mod != MK_MOD_LM_HEAD;
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
        t = add(p, name, affine ? o->fdtype : MOECL_DTYPE_U8, nd, shape);
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
            t = add(p, name, o->fdtype, nd, shape);
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
        if (add_float(p, o, name, nd - 1, shape, 0.0, mod == MK_MOD_ROUTER ? 0.1 : 0.02))
            return -1;
    }
    return 0;
}

/* Hugging Face experts of one layer (spec §5.1 MXFP4 blocks, §1.5 bf16 input-major). */
static int add_hf_experts(struct mk_plan *p, const struct mk_opts *o, int layer) {
    char name[160];
    int64_t E = o->n_experts, H = o->hidden, I = o->intermediate;
    const char *pre = "model.layers";
    p->total_params += (uint64_t)(E * (2 * I * H + H * I) + E * (2 * I + H));
    if (o->layout == MK_LAYOUT_HF_MXFP4) {
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
    int hf = o->layout != MK_LAYOUT_MLX;
    if (add_module(p, o, MK_MOD_EMBED, -1))
        goto fail;
    for (int l = 0; l < o->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if (add_vec(p, o, name, o->hidden, 1.0, 0.1, 1))
            goto fail;
        for (int m = MK_MOD_Q; m <= MK_MOD_O; m++)
            if (add_module(p, o, (enum mk_module)m, l))
                goto fail;
        /* sinks is a bare array of the attention block, not a leaf module: mlx-lm's
         * total_parameters does not count it */
        snprintf(name, sizeof name, "model.layers.%d.self_attn.sinks", l);
        if (add_vec(p, o, name, o->n_heads, 0.0, 1.0, 0))
            goto fail;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (add_vec(p, o, name, o->hidden, 1.0, 0.1, 1))
            goto fail;
        if (add_module(p, o, MK_MOD_ROUTER, l))
            goto fail;
        if (hf) {
            if (add_hf_experts(p, o, l))
                goto fail;
        } else {
            for (int m = MK_MOD_GATE; m <= MK_MOD_DOWN; m++)
                if (add_module(p, o, (enum mk_module)m, l))
                    goto fail;
        }
    }
    if (add_vec(p, o, "model.norm.weight", o->hidden, 1.0, 0.1, 1))
        goto fail;
    if (add_module(p, o, MK_MOD_LM_HEAD, -1))
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
