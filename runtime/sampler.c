/* The token sampler: mlx-lm's filter chain on untempered log-probabilities, then a seeded draw.
 *
 * Why the filters are written the way they are (mlx_lm/sample_utils.py, spec §6.1):
 * - top_p: mlx-lm sorts probabilities ascending and keeps a token iff the ascending cumulative
 *   sum up to and including it exceeds 1 - top_p. In exact arithmetic that is "the mass of the
 *   tokens ranked strictly above it (descending) is below top_p", which is what we compute, in
 *   double, walking the descending order. Equal probabilities: a stable ascending argsort puts
 *   the lower id first, i.e. the higher id is ranked higher and kept first.
 * - min_p: keep iff logprob >= max_logprob + ln(min_p); the maximum always survives.
 * - top_k: keep the k largest; ties at the boundary go to the lower id (argpartition leaves this
 *   unspecified; we pick the deterministic choice).
 * All masks are computed on the full distribution (top_p's survivors always contain the maximum,
 * so min_p's threshold is unaffected by it), hence the result is their intersection.
 * - The draw: inverse CDF over the survivors in id order with one uniform double (mlx uses a
 *   Gumbel-max draw; the distribution is the same, the stream is ours). */
#include "sampler.h"

#include "moecl_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ random numbers */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void moecl_rng_seed(struct moecl_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t moecl_rng_next(struct moecl_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double moecl_rng_uniform(struct moecl_rng *rng) {
    return (double)(moecl_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------ sampler object */

struct moecl_sampler_entry {
    float logit;
    int32_t id;
};

struct moecl_sampler {
    struct moecl_sampler_params params;
    int n_vocab;
    struct moecl_rng rng;
    int32_t *order;                     /* [n_vocab] scratch: the top_k heap */
    struct moecl_sampler_entry *sorted; /* [n_vocab] scratch: survivors sorted for top_p */
    uint8_t *keep;                      /* [n_vocab] 1 = survives every filter */
    double *weight;                     /* [n_vocab] unnormalised probability of survivors */
};

void moecl_sampler_params_init(struct moecl_sampler_params *params) {
    memset(params, 0, sizeof *params);
    params->temperature = 0.0f;
    params->top_p = 1.0f;
    params->min_p = 0.0f;
    params->top_k = 0;
    params->seed = 0;
}

enum moecl_status moecl_sampler_create(const struct moecl_sampler_params *params, int n_vocab,
                                       struct moecl_sampler **sampler_out) {
    *sampler_out = NULL;
    if (!params || n_vocab <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: n_vocab %d must be positive",
                               n_vocab);
    if (!(params->temperature >= 0.0f) || isinf(params->temperature))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "sampler: temperature %g must be a finite number >= 0",
                               (double)params->temperature);
    if (!(params->top_p >= 0.0f))
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: top_p %g must be >= 0",
                               (double)params->top_p);
    if (!(params->min_p >= 0.0f && params->min_p <= 1.0f))
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: min_p %g must be in [0, 1]",
                               (double)params->min_p);
    if (params->top_k < 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0",
                               params->top_k);
    struct moecl_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "sampler: out of memory");
    s->params = *params;
    s->n_vocab = n_vocab;
    s->order = malloc((size_t)n_vocab * sizeof *s->order);
    s->sorted = malloc((size_t)n_vocab * sizeof *s->sorted);
    s->keep = malloc((size_t)n_vocab);
    s->weight = malloc((size_t)n_vocab * sizeof *s->weight);
    if (!s->order || !s->sorted || !s->keep || !s->weight) {
        moecl_sampler_release(s);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "sampler: out of memory for %d logits",
                               n_vocab);
    }
    moecl_rng_seed(&s->rng, params->seed);
    *sampler_out = s;
    return MOECL_OK;
}

void moecl_sampler_release(struct moecl_sampler *sampler) {
    if (!sampler)
        return;
    free(sampler->order);
    free(sampler->sorted);
    free(sampler->keep);
    free(sampler->weight);
    free(sampler);
}

void moecl_sampler_reseed(struct moecl_sampler *sampler, uint64_t seed) {
    if (sampler) {
        sampler->params.seed = seed;
        moecl_rng_seed(&sampler->rng, seed);
    }
}

/* ------------------------------------------------------------------ filters */

/* Descending by logit; equal logits: higher id first (stable ascending argsort, reversed). */
static int cmp_desc_hi_first(const void *a, const void *b) {
    const struct moecl_sampler_entry *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id > y->id ? -1 : (x->id < y->id);
}

/* "a ranks below b" for top_k: smaller logit, or equal logit and higher id. */
static int ranks_below(const float *logits, int32_t a, int32_t b) {
    float x = logits[a], y = logits[b];
    if (x != y)
        return x < y;
    return a > b;
}

static void heap_sift_down(int32_t *h, int n, int i, const float *logits) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_below(logits, h[l], h[m]))
            m = l;
        if (r < n && ranks_below(logits, h[r], h[m]))
            m = r;
        if (m == i)
            return;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Marks in keep[] the top_k tokens (a min-heap of the k best so far: O(n log k)). */
static void filter_top_k(struct moecl_sampler *s, const float *logits, int n) {
    int k = s->params.top_k;
    int32_t *h = s->order;
    int m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!s->keep[i])
            continue; /* -inf after an earlier filter: cannot be among the k largest survivors
                         unless fewer than k survive, in which case it stays masked anyway */
        if (m < k) {
            h[m++] = i;
            if (m == k)
                for (int j = k / 2 - 1; j >= 0; j--)
                    heap_sift_down(h, k, j, logits);
        } else if (ranks_below(logits, h[0], i)) {
            h[0] = i;
            heap_sift_down(h, k, 0, logits);
        }
    }
    if (m < k)
        return; /* fewer survivors than k: nothing to cut */
    memset(s->keep, 0, (size_t)n);
    for (int j = 0; j < k; j++)
        s->keep[h[j]] = 1;
}

/* Fills s->keep and s->weight (unnormalised tempered probabilities of survivors); returns the
 * argmax (greedy) or -1 after setting an error. */
static enum moecl_status prepare(struct moecl_sampler *s, const float *logits, int n,
                                 int32_t *argmax_out, double *total_out) {
    *argmax_out = -1;
    *total_out = 0;
    if (!logits || n <= 0 || n > s->n_vocab)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "sampler: %d logits given, sampler was made for 1..%d", n,
                               s->n_vocab);
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++) {
        float x = logits[i];
        if (isnan(x) || (isinf(x) && x > 0))
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: logits[%d] is %s", (int)i,
                                   isnan(x) ? "NaN" : "+inf");
        if (isinf(x))
            continue;
        if (best < 0 || x > logits[best])
            best = i;
    }
    if (best < 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "sampler: all %d logits are -inf: nothing to sample", n);
    *argmax_out = best;
    const struct moecl_sampler_params *p = &s->params;
    if (p->temperature == 0.0f)
        return MOECL_OK;

    /* Unnormalised probabilities relative to the maximum: exp(logit - max). */
    double mx = logits[best];
    double total = 0;
    for (int32_t i = 0; i < n; i++) {
        double w = isinf(logits[i]) ? 0.0 : exp((double)logits[i] - mx);
        s->weight[i] = w;
        s->keep[i] = w > 0.0 || !isinf(logits[i]);
        total += w;
    }

    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        /* Only tokens above a weight threshold t whose mass already reaches the limit can be
         * kept: every token below t has at least that mass ranked above it. Lowering t by 16x
         * until the mass suffices keeps the sort to the head of a peaked distribution. */
        double limit = (double)p->top_p * total, t = 1.0;
        for (int pass = 0; pass < 80; pass++) {
            t /= 16.0;
            double mass = 0;
            for (int32_t i = 0; i < n; i++)
                if (s->weight[i] >= t)
                    mass += s->weight[i];
            if (mass >= limit)
                break;
        }
        if (!(t > 0))
            t = 0;
        int m = 0;
        for (int32_t i = 0; i < n; i++) {
            if (!s->keep[i])
                continue;
            if (s->weight[i] >= t && (t > 0 || s->weight[i] > 0))
                s->sorted[m++] = (struct moecl_sampler_entry){logits[i], i};
            else
                s->keep[i] = 0;
        }
        qsort(s->sorted, (size_t)m, sizeof *s->sorted, cmp_desc_hi_first);
        double before = 0;
        int j = 0;
        while (j < m && before < limit)
            before += s->weight[s->sorted[j++].id];
        for (; j < m; j++)
            s->keep[s->sorted[j].id] = 0;
    }
    if (p->min_p > 0.0f) {
        double thr = mx + log((double)p->min_p);
        for (int32_t i = 0; i < n; i++)
            if ((double)logits[i] < thr)
                s->keep[i] = 0;
    }
    if (p->top_k > 0 && p->top_k < n)
        filter_top_k(s, logits, n);

    /* Temperature reshapes the survivors: exp((logit - max) / T). */
    double inv_t = 1.0 / (double)p->temperature;
    total = 0;
    for (int32_t i = 0; i < n; i++) {
        double w = 0;
        if (s->keep[i])
            w = inv_t == 1.0 ? s->weight[i] : exp(((double)logits[i] - mx) * inv_t);
        s->weight[i] = w;
        total += w;
    }
    if (!(total > 0)) {
        /* Every survivor underflowed (tiny temperature): the argmax is the limit. */
        memset(s->weight, 0, (size_t)n * sizeof *s->weight);
        s->weight[best] = 1;
        total = 1;
    }
    *total_out = total;
    return MOECL_OK;
}

enum moecl_status moecl_sampler_sample(struct moecl_sampler *sampler, const float *logits, int n,
                                       int32_t *token_out) {
    *token_out = -1;
    if (!sampler)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: NULL sampler");
    int32_t best;
    double total;
    enum moecl_status st = prepare(sampler, logits, n, &best, &total);
    if (st != MOECL_OK)
        return st;
    if (sampler->params.temperature == 0.0f) {
        *token_out = best;
        return MOECL_OK;
    }
    double u = moecl_rng_uniform(&sampler->rng) * total;
    double acc = 0;
    int32_t last = best;
    for (int32_t i = 0; i < n; i++) {
        double w = sampler->weight[i];
        if (w <= 0)
            continue;
        acc += w;
        last = i;
        if (u < acc) {
            *token_out = i;
            return MOECL_OK;
        }
    }
    *token_out = last; /* rounding left u just past the sum: the last survivor */
    return MOECL_OK;
}

enum moecl_status moecl_sampler_distribution(struct moecl_sampler *sampler, const float *logits,
                                             int n, double *probs_out) {
    if (!sampler || !probs_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "sampler: NULL argument");
    int32_t best;
    double total;
    enum moecl_status st = prepare(sampler, logits, n, &best, &total);
    if (st != MOECL_OK)
        return st;
    if (sampler->params.temperature == 0.0f) {
        memset(probs_out, 0, (size_t)n * sizeof *probs_out);
        probs_out[best] = 1;
        return MOECL_OK;
    }
    for (int i = 0; i < n; i++)
        probs_out[i] = sampler->weight[i] / total;
    return MOECL_OK;
}
