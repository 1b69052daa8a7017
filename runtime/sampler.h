/* Token sampler internals (the public API is in moecl.h, section "sampler").
 *
 * Semantics follow mlx-lm's make_sampler (spec tokenizer-harmony.md §6.1): the filters act on
 * the untempered log-probabilities and each rejects tokens by setting them to -inf, in the
 * order top-p, min-p, top-k; the survivors are then drawn from softmax(logprob / temperature).
 * Temperature 0 is argmax. The three masks are computed on the full distribution, so the result
 * is their intersection. */
#ifndef MOECL_SAMPLER_H
#define MOECL_SAMPLER_H

#include "moecl.h"

#include <stdint.h>

/* The seeded generator: xoshiro256** seeded through splitmix64 (one 64-bit seed gives the same
 * stream on every platform). */
struct moecl_rng {
    uint64_t s[4];
};

void moecl_rng_seed(struct moecl_rng *rng, uint64_t seed);
uint64_t moecl_rng_next(struct moecl_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double moecl_rng_uniform(struct moecl_rng *rng);

#endif
