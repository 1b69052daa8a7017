/* Checkpoint recipes (recipe.h): shapes, presets and the per-module storage decision, moved
 * here from the checkpoint writer so that the memory planner counts exactly what it writes. */
#include "recipe.h"

#include "moecl_error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void moecl_recipe_shape_tiny(struct moecl_recipe *r) {
    r->hidden = 192, r->intermediate = 192, r->n_layers = 4, r->n_experts = 8, r->top_k = 4;
    r->n_heads = 4, r->n_kv_heads = 2, r->head_dim = 64, r->vocab = 201088, r->window = 8;
}

void moecl_recipe_shape_full(struct moecl_recipe *r) {
    r->hidden = 2880, r->intermediate = 2880, r->n_layers = 24, r->n_experts = 32, r->top_k = 4;
    r->n_heads = 64, r->n_kv_heads = 8, r->head_dim = 64, r->vocab = 201088, r->window = 128;
}

/* ------------------------------------------------------------------ modules */

static const char *const mod_suffix[MOECL_RMOD_COUNT] = {
    [MOECL_RMOD_EMBED] = "model.embed_tokens",   [MOECL_RMOD_Q] = "self_attn.q_proj",
    [MOECL_RMOD_K] = "self_attn.k_proj",         [MOECL_RMOD_V] = "self_attn.v_proj",
    [MOECL_RMOD_O] = "self_attn.o_proj",         [MOECL_RMOD_ROUTER] = "mlp.router",
    [MOECL_RMOD_GATE] = "mlp.experts.gate_proj", [MOECL_RMOD_UP] = "mlp.experts.up_proj",
    [MOECL_RMOD_DOWN] = "mlp.experts.down_proj", [MOECL_RMOD_LM_HEAD] = "lm_head",
};

const char *moecl_recipe_module_path(enum moecl_recipe_module mod, int layer, char *buf, size_t n) {
    if (mod == MOECL_RMOD_EMBED || mod == MOECL_RMOD_LM_HEAD)
        snprintf(buf, n, "%s", mod_suffix[mod]);
    else
        snprintf(buf, n, "model.layers.%d.%s", layer, mod_suffix[mod]);
    return buf;
}

void moecl_recipe_module_dims(const struct moecl_recipe *r, enum moecl_recipe_module mod,
                              int64_t *rows, int64_t *cols, int *n_experts) {
    int64_t qw = (int64_t)r->n_heads * r->head_dim, kvw = (int64_t)r->n_kv_heads * r->head_dim;
    *n_experts = 0;
    switch (mod) {
    case MOECL_RMOD_EMBED:
    case MOECL_RMOD_LM_HEAD:
        *rows = r->vocab, *cols = r->hidden;
        break;
    case MOECL_RMOD_Q:
        *rows = qw, *cols = r->hidden;
        break;
    case MOECL_RMOD_K:
    case MOECL_RMOD_V:
        *rows = kvw, *cols = r->hidden;
        break;
    case MOECL_RMOD_O:
        *rows = r->hidden, *cols = qw;
        break;
    case MOECL_RMOD_ROUTER:
        *rows = r->n_experts, *cols = r->hidden;
        break;
    case MOECL_RMOD_GATE:
    case MOECL_RMOD_UP:
        *rows = r->intermediate, *cols = r->hidden, *n_experts = r->n_experts;
        break;
    case MOECL_RMOD_DOWN:
    default:
        *rows = r->hidden, *cols = r->intermediate, *n_experts = r->n_experts;
        break;
    }
}

static int is_expert(enum moecl_recipe_module mod) {
    return mod == MOECL_RMOD_GATE || mod == MOECL_RMOD_UP || mod == MOECL_RMOD_DOWN;
}

static const struct moecl_recipe_q q_float = {MOECL_QMODE_NONE, 0, 0};

static struct moecl_recipe_q q_affine(int bits, int gs) {
    struct moecl_recipe_q q = {MOECL_QMODE_AFFINE, bits, gs};
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
static struct moecl_recipe_q optiq_q(const struct moecl_recipe *r, enum moecl_recipe_module mod,
                                     int layer) {
    int L = r->n_layers;
    int n4 = (int)lround(11.0 * L / 24.0), first4 = (L - n4) / 2;
    switch (mod) {
    case MOECL_RMOD_EMBED:
        return q_affine(4, 64);
    case MOECL_RMOD_Q:
        return (layer >= first4 && layer < first4 + n4) ? q_affine(4, 64) : q_affine(8, 64);
    case MOECL_RMOD_GATE:
    case MOECL_RMOD_UP:
    case MOECL_RMOD_DOWN:
        return (layer == 0 || layer == L - 1) ? q_affine(8, 64) : q_affine(4, 64);
    default:
        return q_affine(8, 64);
    }
}

/* mlx-lm's mixed_<low>_<high> predicate (spec §4.2): high bits for v_proj and down_proj of the
 * "more bits" layers and for lm_head, low bits for everything else (embedding and routers
 * included: the recipe replaces the gpt_oss router predicate). Paths without a layer index
 * (embedding, lm_head) count as layer 0. */
static struct moecl_recipe_q mixed_q(const struct moecl_recipe *r, enum moecl_recipe_module mod,
                                     int layer) {
    int L = r->n_layers, n = layer < 0 ? 0 : layer;
    int more = n < L / 8 || n >= 7 * L / 8 || (n - L / 8) % 3 == 2;
    int gs = r->base.group_size;
    if (mod == MOECL_RMOD_LM_HEAD || (more && (mod == MOECL_RMOD_V || mod == MOECL_RMOD_DOWN)))
        return q_affine(r->mixed_high, gs);
    return q_affine(r->mixed_low, gs);
}

struct moecl_recipe_q moecl_recipe_module_q(const struct moecl_recipe *r,
                                            enum moecl_recipe_module mod, int layer,
                                            enum moecl_recipe_entry *entry_out) {
    int64_t rows, cols;
    int ne;
    moecl_recipe_module_dims(r, mod, &rows, &cols, &ne);
    *entry_out = MOECL_RECIPE_ENTRY_NONE;

    if (r->layout == MOECL_RECIPE_LAYOUT_HF_BF16)
        return q_float;
    if (r->layout == MOECL_RECIPE_LAYOUT_HF_MXFP4) {
        struct moecl_recipe_q q = {MOECL_QMODE_MXFP4, 4, 32};
        return is_expert(mod) ? q : q_float;
    }

    struct moecl_recipe_q q;
    enum moecl_recipe_entry entry = MOECL_RECIPE_ENTRY_NONE;
    int run_gs = r->base.group_size; /* quantize_model skips modules with in % run_gs != 0 */
    switch (r->preset) {
    case MOECL_PRESET_OPTIQ_4BIT:
        q = optiq_q(r, mod, layer);
        entry = MOECL_RECIPE_ENTRY_WITHMODE;
        break;
    case MOECL_PRESET_MIXED:
        q = mixed_q(r, mod, layer);
        entry = MOECL_RECIPE_ENTRY_WITHMODE;
        break;
    case MOECL_PRESET_MXFP4:
        /* The HF release converted by current mlx-lm with -q: experts arrive mxfp4 (no entry,
         * covered by the top-level record); every module quantized in this run gets a
         * fine-grained entry; the router keeps the gpt_oss predicate's {64, 8}. */
        if (is_expert(mod))
            return r->base;
        run_gs = r->others.group_size;
        if (mod == MOECL_RMOD_ROUTER) {
            q = q_affine(8, 64);
            entry = MOECL_RECIPE_ENTRY_NOMODE;
        } else {
            q = r->others;
            entry = MOECL_RECIPE_ENTRY_WITHMODE;
        }
        break;
    case MOECL_PRESET_MLX_5BIT_GS32:
        /* The card: "router stays FP16" (the 15.76 GB total requires the embedding quantized,
         * see the help text). */
        if (mod == MOECL_RMOD_ROUTER)
            return q_float;
        q = r->base;
        break;
    default:
        if (r->base.mode == MOECL_QMODE_NONE)
            return q_float;
        q = r->base;
        if (mod == MOECL_RMOD_ROUTER && r->router_pred) {
            q = q_affine(8, 64);
            entry = MOECL_RECIPE_ENTRY_NOMODE;
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

/* ------------------------------------------------------------------ presets */

static const struct {
    const char *name;
    enum moecl_recipe_preset preset;
} presets[] = {
    {"mlx-4bit", MOECL_PRESET_MLX_4BIT}, {"mlx-5bit-gs32", MOECL_PRESET_MLX_5BIT_GS32},
    {"mlx-6bit", MOECL_PRESET_MLX_6BIT}, {"optiq-4bit", MOECL_PRESET_OPTIQ_4BIT},
    {"mxfp4", MOECL_PRESET_MXFP4},       {"hf-mxfp4", MOECL_PRESET_HF_MXFP4},
    {"hf-bf16", MOECL_PRESET_HF_BF16},
};

const char *moecl_recipe_preset_names(void) {
    return "mlx-4bit, mlx-5bit-gs32, mlx-6bit, optiq-4bit, mxfp4, hf-mxfp4, hf-bf16, mixed-2-6, "
           "mixed-3-4, mixed-3-6, mixed-4-6";
}

/* Checks (bits, group) for a mode as mx.quantize accepts them (spec §3.1). */
static enum moecl_status check_q(const char *what, struct moecl_recipe_q q) {
    int ok = 1;
    switch (q.mode) {
    case MOECL_QMODE_AFFINE:
        ok = (q.bits >= 2 && q.bits <= 8 && q.bits != 7) &&
             (q.group_size == 32 || q.group_size == 64 || q.group_size == 128);
        break;
    case MOECL_QMODE_MXFP4:
        ok = q.bits == 4 && q.group_size == 32;
        break;
    case MOECL_QMODE_MXFP8:
        ok = q.bits == 8 && q.group_size == 32;
        break;
    case MOECL_QMODE_NVFP4:
        ok = q.bits == 4 && q.group_size == 16;
        break;
    case MOECL_QMODE_NONE:
        break;
    }
    if (!ok)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: %s with %d bits and group %d is not a valid MLX recipe", what,
                               moecl_qmode_name(q.mode), q.bits, q.group_size);
    return MOECL_OK;
}

enum moecl_status moecl_recipe_set(struct moecl_recipe *r, const char *like, int have_mode,
                                   enum moecl_qmode mode, int bits, int group, int have_dtype,
                                   enum moecl_dtype dtype) {
    r->fdtype = MOECL_DTYPE_BF16;
    r->mixed_low = r->mixed_high = 0;
    r->others = (struct moecl_recipe_q){MOECL_QMODE_NONE, 0, 0};
    /* preset first, then explicit options */
    r->preset = MOECL_PRESET_NONE;
    if (like) {
        size_t k;
        for (k = 0; k < sizeof presets / sizeof presets[0]; k++)
            if (!strcmp(like, presets[k].name))
                break;
        int lo, hi;
        char tail;
        if (k == sizeof presets / sizeof presets[0] &&
            (sscanf(like, "mixed-%d-%d%c", &lo, &hi, &tail) == 2 ||
             sscanf(like, "mixed_%d_%d%c", &lo, &hi, &tail) == 2) &&
            ((lo == 2 && hi == 6) || (lo == 3 && hi == 4) || (lo == 3 && hi == 6) ||
             (lo == 4 && hi == 6))) {
            r->mixed_low = lo;
            r->mixed_high = hi;
            r->preset = MOECL_PRESET_MIXED;
        } else if (k == sizeof presets / sizeof presets[0]) {
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "--like: unknown preset \"%s\" (%s)",
                                   like, moecl_recipe_preset_names());
        } else {
            r->preset = presets[k].preset;
        }
    } else if (!have_mode) {
        r->preset = MOECL_PRESET_MLX_4BIT;
    }
    r->layout = MOECL_RECIPE_LAYOUT_MLX;
    r->base_has_mode = 1;
    r->router_pred = 1;
    switch (r->preset) {
    case MOECL_PRESET_MLX_4BIT:
    case MOECL_PRESET_OPTIQ_4BIT:
    case MOECL_PRESET_MIXED:
        r->base = (struct moecl_recipe_q){MOECL_QMODE_AFFINE, 4, 64};
        break;
    case MOECL_PRESET_MLX_5BIT_GS32:
        r->base = (struct moecl_recipe_q){MOECL_QMODE_AFFINE, 5, 32};
        r->fdtype = MOECL_DTYPE_F16;
        r->router_pred = 0;
        break;
    case MOECL_PRESET_MLX_6BIT:
        r->base = (struct moecl_recipe_q){MOECL_QMODE_AFFINE, 6, 64};
        break;
    case MOECL_PRESET_MXFP4:
        r->base = (struct moecl_recipe_q){MOECL_QMODE_MXFP4, 4, 32};
        r->others =
            (struct moecl_recipe_q){MOECL_QMODE_AFFINE, bits ? bits : 8, group ? group : 64};
        bits = group = 0;
        if (check_q("--like mxfp4 non-expert modules", r->others) != MOECL_OK)
            return MOECL_ERR_INVALID_ARG;
        break;
    case MOECL_PRESET_HF_MXFP4:
        r->layout = MOECL_RECIPE_LAYOUT_HF_MXFP4;
        r->base = (struct moecl_recipe_q){MOECL_QMODE_MXFP4, 4, 32};
        break;
    case MOECL_PRESET_HF_BF16:
        r->layout = MOECL_RECIPE_LAYOUT_HF_BF16;
        r->base = (struct moecl_recipe_q){MOECL_QMODE_NONE, 0, 0};
        break;
    case MOECL_PRESET_NONE: {
        static const int def_bits[] = {[MOECL_QMODE_NONE] = 0,
                                       [MOECL_QMODE_AFFINE] = 4,
                                       [MOECL_QMODE_MXFP4] = 4,
                                       [MOECL_QMODE_MXFP8] = 8,
                                       [MOECL_QMODE_NVFP4] = 4};
        static const int def_group[] = {[MOECL_QMODE_NONE] = 0,
                                        [MOECL_QMODE_AFFINE] = 64,
                                        [MOECL_QMODE_MXFP4] = 32,
                                        [MOECL_QMODE_MXFP8] = 32,
                                        [MOECL_QMODE_NVFP4] = 16};
        r->base = (struct moecl_recipe_q){mode, def_bits[mode], def_group[mode]};
        break;
    }
    }
    if (have_mode && r->preset != MOECL_PRESET_NONE && mode != r->base.mode)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "--mode %s contradicts --like %s",
                               moecl_qmode_name(mode), like);
    if (r->layout != MOECL_RECIPE_LAYOUT_MLX && (bits || group))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "--bits/--group do not apply to the Hugging Face layouts");
    if (bits)
        r->base.bits = bits;
    if (group)
        r->base.group_size = group;
    if (have_dtype)
        r->fdtype = dtype;
    if (check_q("recipe", r->base) != MOECL_OK)
        return MOECL_ERR_INVALID_ARG;
    if (r->n_heads % r->n_kv_heads || r->top_k > r->n_experts)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "heads must be a multiple of kv heads and top-k <= experts");
    if (r->layout == MOECL_RECIPE_LAYOUT_HF_MXFP4 && (r->hidden % 32 || r->intermediate % 32))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "hf-mxfp4 needs hidden and intermediate multiples of 32");
    return MOECL_OK;
}

/* ------------------------------------------------------------------ config */

int moecl_recipe_layer_sliding(int layer) {
    return layer % 2 == 0;
}

enum moecl_status moecl_recipe_config(const struct moecl_recipe *r, struct moecl_config *c) {
    memset(c, 0, sizeof *c);
    c->layer_sliding = malloc((size_t)(r->n_layers > 0 ? r->n_layers : 1));
    if (!c->layer_sliding)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "recipe config: out of host memory");
    c->hidden_size = r->hidden;
    c->intermediate_size = r->intermediate;
    c->n_layers = r->n_layers;
    c->n_heads = r->n_heads;
    c->n_kv_heads = r->n_kv_heads;
    c->head_dim = r->head_dim;
    c->vocab_size = r->vocab;
    c->n_experts = r->n_experts;
    c->n_experts_per_tok = r->top_k;
    c->sliding_window = r->window;
    c->rms_norm_eps = 1e-5f;
    c->rope_theta = 150000.0f;
    c->yarn = 1;
    c->rope_factor = 32.0f;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    c->original_max_pos = 4096;
    c->max_position_embeddings = 131072;
    c->swiglu_alpha = 1.702f;
    c->swiglu_limit = 7.0f;
    c->eos_token_id = 200002;
    c->rope_mscale = 1.0f;
    for (int l = 0; l < r->n_layers; l++)
        c->layer_sliding[l] = (uint8_t)moecl_recipe_layer_sliding(l);
    return MOECL_OK;
}
