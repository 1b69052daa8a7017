/* mkmodel internals: the model shape, the quantization recipe, the tensor plan and the data
 * generators shared by tools/mkmodel*.c. */
#ifndef MOECL_MKMODEL_H
#define MOECL_MKMODEL_H

#include "checkpoint.h"
#include "recipe.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ options */

/* The recipe (shape, quantization decision per module) lives in loader/recipe.h, shared with
 * the memory planner; these are the writer's own options around it. */
struct mk_opts {
    struct moecl_recipe r;
    const char *out;
    uint64_t seed;
    uint64_t max_shard_bytes;
    int quiet, dry_run;
    const char *tiktoken; /* for tokenizer.json; NULL: none */
    int tiktoken_explicit;
};

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
