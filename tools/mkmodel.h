/* mkmodel internals: the model shape, the quantization recipe, the tensor plan and the data
 * generators shared by tools/mkmodel*.c. */
#ifndef MOECL_MKMODEL_H
#define MOECL_MKMODEL_H

#include "checkpoint.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ recipe */

enum mk_layout { MK_LAYOUT_MLX, MK_LAYOUT_HF_MXFP4, MK_LAYOUT_HF_BF16 };

/* How one module is stored. mode NONE = float weight of the checkpoint's float dtype. */
struct mk_q {
    enum moecl_qmode mode;
    int bits, group_size;
};

/* What config.json's quantization map says about one module. */
enum mk_entry {
    MK_ENTRY_NONE,    /* no key: top-level params iff <path>.scales exists */
    MK_ENTRY_NOMODE,  /* {"group_size", "bits"} (the gpt_oss router predicate) */
    MK_ENTRY_WITHMODE /* {"group_size", "bits", "mode"} (fine-grained / mixed recipes) */
};

enum mk_module {
    MK_MOD_EMBED,
    MK_MOD_Q,
    MK_MOD_K,
    MK_MOD_V,
    MK_MOD_O,
    MK_MOD_ROUTER,
    MK_MOD_GATE,
    MK_MOD_UP,
    MK_MOD_DOWN,
    MK_MOD_LM_HEAD,
    MK_MOD_COUNT
};

enum mk_preset {
    MK_PRESET_NONE,
    MK_PRESET_MLX_4BIT,
    MK_PRESET_MLX_5BIT_GS32,
    MK_PRESET_MLX_6BIT,
    MK_PRESET_OPTIQ_4BIT,
    MK_PRESET_MXFP4,
    MK_PRESET_HF_MXFP4,
    MK_PRESET_HF_BF16,
    MK_PRESET_MIXED, /* mlx-lm's mixed_<low>_<high> predicates */
};

struct mk_opts {
    const char *out;
    uint64_t seed;
    int hidden, intermediate, n_layers, n_experts, top_k, n_heads, n_kv_heads, head_dim, vocab;
    int window;
    enum moecl_dtype fdtype; /* float tensors, affine scales/biases */
    enum mk_preset preset;
    enum mk_layout layout;
    struct mk_q base;          /* top-level recipe (mode NONE: unquantized) */
    int router_pred;           /* apply the gpt_oss router predicate (8-bit g64, no mode key) */
    int base_has_mode;         /* write "mode" in the top-level quantization record */
    struct mk_q others;        /* --like mxfp4: recipe of the non-expert modules */
    int mixed_low, mixed_high; /* --like mixed-L-H */
    uint64_t max_shard_bytes;
    int quiet, dry_run;
    const char *tiktoken; /* for tokenizer.json; NULL: none */
    int tiktoken_explicit;
};

/* The storage decision for module `mod` of layer `layer` (-1 for embed / lm_head). */
struct mk_q mk_module_q(const struct mk_opts *o, enum mk_module mod, int layer,
                        enum mk_entry *entry_out);
const char *mk_module_path(enum mk_module mod, int layer, char *buf, size_t n);
void mk_module_dims(const struct mk_opts *o, enum mk_module mod, int64_t *rows, int64_t *cols,
                    int *n_experts);

/* ------------------------------------------------------------------ tensor plan */

enum mk_gen {
    MK_GEN_RANDOM_WORDS, /* packed codes: uniform random bits (affine, fp4 codes, HF blocks) */
    MK_GEN_FP8_CODES,    /* E4M3 codes, uniform random except NaN */
    MK_GEN_AFFINE_SCALES,
    MK_GEN_AFFINE_BIASES,
    MK_GEN_E8M0_SCALES,
    MK_GEN_E4M3_SCALES,
    MK_GEN_FLOAT, /* uniform in center +- amp */
};

struct mk_tensor {
    char name[128];
    enum moecl_dtype dtype;
    int n_dims;
    int64_t shape[4];
    uint64_t n_bytes;
    enum mk_gen gen;
    uint64_t seed;        /* per module (scales and biases of a module share it) */
    double center, amp;   /* MK_GEN_FLOAT */
    double target;        /* scales: intended weight standard deviation */
    int bits, group_size; /* scales: the module's recipe */
    int shard;
};

struct mk_plan {
    struct mk_tensor *t;
    int n, cap;
    uint64_t total_bytes;
    uint64_t total_params; /* as mlx-lm's get_total_parameters counts (leaf modules) */
    int n_shards;
};

int mk_plan_build(const struct mk_opts *o, struct mk_plan *plan);
void mk_plan_free(struct mk_plan *plan);

/* Streams the data of tensor t: calls sink(ctx, bytes, n) with consecutive pieces. */
typedef int (*mk_sink_fn)(void *ctx, const void *data, size_t n);
int mk_generate(const struct mk_opts *o, const struct mk_tensor *t, mk_sink_fn sink, void *ctx);

uint64_t mk_hash_str(uint64_t seed, const char *s);

#endif
