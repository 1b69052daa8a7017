/* Checkpoint recipes: the model shape and the quantization decision for every module, as the
 * synthetic checkpoint writer (tools/mkmodel) writes them and as the memory planner counts them
 * without any file (`moecl footprint --like mlx-4bit`). One description for both: mkmodel
 * builds its tensor list from moecl_recipe_module_q, and moecl_recipe_plan_model classifies the
 * same modules' bytes (scheduler/memplan.h's formula).
 *
 * Presets (see tools/mkmodel.md for how each matches its model card): mlx-4bit, mlx-5bit-gs32,
 * mlx-6bit, optiq-4bit, mxfp4, hf-mxfp4, hf-bf16, mixed-L-H (2-6, 3-4, 3-6, 4-6). */
#ifndef MOECL_RECIPE_H
#define MOECL_RECIPE_H

#include "checkpoint.h"

#include <stddef.h>
#include <stdint.h>

enum moecl_recipe_layout {
    MOECL_RECIPE_LAYOUT_MLX,
    MOECL_RECIPE_LAYOUT_HF_MXFP4,
    MOECL_RECIPE_LAYOUT_HF_BF16
};

/* How one module is stored. mode NONE = float weight of the recipe's float dtype. */
struct moecl_recipe_q {
    enum moecl_qmode mode;
    int bits, group_size;
};

/* What config.json's quantization map says about one module. */
enum moecl_recipe_entry {
    MOECL_RECIPE_ENTRY_NONE,    /* no key: top-level params iff <path>.scales exists */
    MOECL_RECIPE_ENTRY_NOMODE,  /* {"group_size", "bits"} (the gpt_oss router predicate) */
    MOECL_RECIPE_ENTRY_WITHMODE /* {"group_size", "bits", "mode"} (fine-grained / mixed) */
};

enum moecl_recipe_module {
    MOECL_RMOD_EMBED,
    MOECL_RMOD_Q,
    MOECL_RMOD_K,
    MOECL_RMOD_V,
    MOECL_RMOD_O,
    MOECL_RMOD_ROUTER,
    MOECL_RMOD_GATE,
    MOECL_RMOD_UP,
    MOECL_RMOD_DOWN,
    MOECL_RMOD_LM_HEAD,
    MOECL_RMOD_COUNT
};

enum moecl_recipe_preset {
    MOECL_PRESET_NONE,
    MOECL_PRESET_MLX_4BIT,
    MOECL_PRESET_MLX_5BIT_GS32,
    MOECL_PRESET_MLX_6BIT,
    MOECL_PRESET_OPTIQ_4BIT,
    MOECL_PRESET_MXFP4,
    MOECL_PRESET_HF_MXFP4,
    MOECL_PRESET_HF_BF16,
    MOECL_PRESET_MIXED, /* mlx-lm's mixed_<low>_<high> predicates */
};

struct moecl_recipe {
    int hidden, intermediate, n_layers, n_experts, top_k, n_heads, n_kv_heads, head_dim, vocab;
    int window;
    enum moecl_dtype fdtype; /* float tensors, affine scales/biases */
    enum moecl_recipe_preset preset;
    enum moecl_recipe_layout layout;
    struct moecl_recipe_q base;   /* top-level recipe (mode NONE: unquantized) */
    int router_pred;              /* apply the gpt_oss router predicate (8-bit g64, no mode key) */
    int base_has_mode;            /* write "mode" in the top-level quantization record */
    struct moecl_recipe_q others; /* --like mxfp4: recipe of the non-expert modules */
    int mixed_low, mixed_high;    /* --like mixed-L-H */
};

/* Shapes: tiny (hidden 192, 4 layers, 8 experts, window 8) and full gpt-oss-20b (hidden 2880,
 * 24 layers, 32 experts, 64 q / 8 kv heads, window 128). Only the shape fields change. */
void moecl_recipe_shape_tiny(struct moecl_recipe *r);
void moecl_recipe_shape_full(struct moecl_recipe *r);

/* Sets the recipe fields for preset `like` (NULL: mlx-4bit unless have_mode) with the
 * writer's optional overrides: mode (have_mode), bits/group (0: the preset's), float dtype
 * (have_dtype). Errors (INVALID_ARG) name the preset or the contradicting option. */
MOECL_WUR enum moecl_status moecl_recipe_set(struct moecl_recipe *r, const char *like,
                                             int have_mode, enum moecl_qmode mode, int bits,
                                             int group, int have_dtype, enum moecl_dtype dtype);

/* The preset names, for help texts: "mlx-4bit, mlx-5bit-gs32, ...". */
const char *moecl_recipe_preset_names(void);

/* The storage decision for module `mod` of layer `layer` (-1 for embed / lm_head). */
struct moecl_recipe_q moecl_recipe_module_q(const struct moecl_recipe *r,
                                            enum moecl_recipe_module mod, int layer,
                                            enum moecl_recipe_entry *entry_out);
const char *moecl_recipe_module_path(enum moecl_recipe_module mod, int layer, char *buf, size_t n);
void moecl_recipe_module_dims(const struct moecl_recipe *r, enum moecl_recipe_module mod,
                              int64_t *rows, int64_t *cols, int *n_experts);

/* Layer l's attention type as the writer's config.json says: even layers sliding. */
int moecl_recipe_layer_sliding(int layer);

/* The config a checkpoint of this recipe has (layer_sliding malloc'd: free it). */
MOECL_WUR enum moecl_status moecl_recipe_config(const struct moecl_recipe *r,
                                                struct moecl_config *cfg_out);

#endif
