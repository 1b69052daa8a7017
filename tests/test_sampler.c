/* Sampler tests: statistical checks of every filter against an independent reference.
 *
 * The reference below recomputes mlx-lm's filtered distribution by definition, O(n^2), with no
 * sorting or heaps: a token's rank is the number of tokens that beat it. The sampler's own draws
 * (not its distribution function) are counted and compared with a chi-square statistic.
 *
 * Why the bound is what it is: the draws are seeded, so each test is deterministic; the bound
 * only has to make a correct sampler pass for essentially every seed and a wrong one fail.
 * With N = 200000 draws over k categories (df = k - 1 <= 15), we require
 *     X2 <= df + 10 * sqrt(2 df) + 10.
 * For df = 1 that is 24.1 (P[chi2_1 > 24.1] ~ 1e-6); for larger df the margin in standard
 * deviations only grows (Wilson-Hilferty gives P < 1e-9 at df = 15), so a correct sampler fails
 * with probability < 1e-6 per test. Sensitivity: an error of d in a category of probability p
 * adds about N d^2 / p to X2; with p <= 0.5 and d = 0.015 that is >= 90, far above the bound
 * (and, e.g., a top_p that drops or keeps the crossing token moves a whole category, X2 ~ 1e4).
 * A token with reference probability 0 that is drawn even once fails outright. */
#include "test.h"

#include "moecl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_DRAWS 200000

/* "a beats b" in mlx-lm's top_p order: larger logit, or equal and higher id. */
static int beats_top_p(const float *l, int a, int b) {
    float x = l[a], y = l[b];
    return x != y ? x > y : a > b;
}
/* "a beats b" in our top_k order: larger logit, or equal and lower id. */
static int beats_top_k(const float *l, int a, int b) {
    float x = l[a], y = l[b];
    return x != y ? x > y : a < b;
}

/* The filtered, tempered distribution by definition. */
static void reference(const struct moecl_sampler_params *p, const float *l, int n, double *out) {
    double mx = -INFINITY, total = 0;
    for (int i = 0; i < n; i++)
        if (l[i] > mx)
            mx = l[i];
    double *prob = calloc((size_t)n, sizeof *prob);
    for (int i = 0; i < n; i++)
        total += prob[i] = exp(l[i] - mx);
    for (int i = 0; i < n; i++)
        prob[i] /= total;
    double z = 0;
    for (int i = 0; i < n; i++) {
        int keep = prob[i] > 0;
        if (p->top_p > 0 && p->top_p < 1) {
            double above = 0;
            for (int j = 0; j < n; j++)
                if (j != i && beats_top_p(l, j, i))
                    above += prob[j];
            keep &= above < p->top_p;
        }
        if (p->min_p > 0)
            keep &= prob[i] >= p->min_p * (1.0 / total); /* p_max = exp(0) / total */
        if (p->top_k > 0) {
            int above = 0;
            for (int j = 0; j < n; j++)
                if (j != i && beats_top_k(l, j, i))
                    above++;
            keep &= above < p->top_k;
        }
        out[i] = keep ? exp((l[i] - mx) / p->temperature) : 0;
        z += out[i];
    }
    for (int i = 0; i < n; i++)
        out[i] /= z;
    free(prob);
}

/* Draws N_DRAWS tokens and checks them against `expect` (k categories). Returns X2. */
static double chi_square_draws(const struct moecl_sampler_params *p, const float *l, int n,
                               const double *expect) {
    struct moecl_sampler *s = NULL;
    if (moecl_sampler_create(p, n, &s) != MOECL_OK) {
        CHECK(!"sampler_create");
        return INFINITY;
    }
    long *count = calloc((size_t)n, sizeof *count);
    for (int d = 0; d < N_DRAWS; d++) {
        int32_t t = -1;
        if (moecl_sampler_sample(s, l, n, &t) != MOECL_OK || t < 0 || t >= n) {
            CHECK(!"sample failed or out of range");
            break;
        }
        count[t]++;
    }
    double x2 = 0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        if (expect[i] <= 0) {
            if (count[i] != 0)
                moecl_test_fail(__FILE__, __LINE__, "token %d has p=0 but was drawn %ld times", i,
                                count[i]);
            continue;
        }
        double e = expect[i] * N_DRAWS;
        x2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    double bound = df > 0 ? df + 10.0 * sqrt(2.0 * df) + 10.0 : 0.0;
    if (!(x2 <= bound + 1e-9))
        moecl_test_fail(__FILE__, __LINE__, "chi-square %.2f over bound %.2f (df %d)", x2, bound,
                        df);
    free(count);
    moecl_sampler_release(s);
    return x2;
}

static struct moecl_sampler_params params(float t, float top_p, float min_p, int top_k) {
    struct moecl_sampler_params p;
    moecl_sampler_params_init(&p);
    p.temperature = t;
    p.top_p = top_p;
    p.min_p = min_p;
    p.top_k = top_k;
    p.seed = 1234;
    return p;
}

/* Logits whose softmax is exactly `probs` (up to rounding). */
static void logits_of(const double *probs, int n, float *l) {
    for (int i = 0; i < n; i++)
        l[i] = probs[i] > 0 ? (float)log(probs[i]) : -INFINITY;
}

/* Compares the sampler's distribution function with the reference and the draws with both. */
static void check_case(struct moecl_sampler_params p, const float *l, int n) {
    double ref[64], got[64];
    REQUIRE(n <= 64);
    reference(&p, l, n, ref);
    struct moecl_sampler *s = NULL;
    REQUIRE(moecl_sampler_create(&p, n, &s) == MOECL_OK);
    REQUIRE(moecl_sampler_distribution(s, l, n, got) == MOECL_OK);
    for (int i = 0; i < n; i++)
        CHECK_NEAR(got[i], ref[i], 1e-9);
    moecl_sampler_release(s);
    chi_square_draws(&p, l, n, ref);
}

TEST(sampler_plain_softmax) {
    float l[10];
    uint64_t st = 7;
    for (int i = 0; i < 10; i++)
        l[i] = 2.0f * moecl_test_randf(&st);
    check_case(params(1.0f, 1.0f, 0.0f, 0), l, 10);
    /* By hand: logits ln(0.5), ln(0.3), ln(0.2) draw 0.5/0.3/0.2. */
    const double pr[3] = {0.5, 0.3, 0.2};
    double expect[3] = {0.5, 0.3, 0.2};
    float l3[3];
    logits_of(pr, 3, l3);
    struct moecl_sampler_params p = params(1.0f, 1.0f, 0.0f, 0);
    chi_square_draws(&p, l3, 3, expect);
}

TEST(sampler_temperature) {
    const double pr[4] = {0.4, 0.3, 0.2, 0.1};
    float l[4];
    logits_of(pr, 4, l);
    /* By hand at T = 0.5: p_i^2 / sum p^2 = {16, 9, 4, 1} / 30. */
    double expect[4] = {16 / 30.0, 9 / 30.0, 4 / 30.0, 1 / 30.0};
    struct moecl_sampler_params p = params(0.5f, 1.0f, 0.0f, 0);
    chi_square_draws(&p, l, 4, expect);
    check_case(params(2.0f, 1.0f, 0.0f, 0), l, 4);
    check_case(params(0.05f, 1.0f, 0.0f, 0), l, 4);
}

TEST(sampler_greedy) {
    float l[6] = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f, -INFINITY};
    struct moecl_sampler_params p = params(0.0f, 0.5f, 0.3f, 3);
    struct moecl_sampler *s = NULL;
    REQUIRE(moecl_sampler_create(&p, 6, &s) == MOECL_OK);
    for (int i = 0; i < 100; i++) {
        int32_t t = -1;
        CHECK(moecl_sampler_sample(s, l, 6, &t) == MOECL_OK);
        CHECK_EQ(t, 1); /* ties: the lowest id, like argmax */
    }
    double d[6];
    CHECK(moecl_sampler_distribution(s, l, 6, d) == MOECL_OK);
    CHECK_NEAR(d[1], 1.0, 0);
    CHECK_NEAR(d[3], 0.0, 0);
    moecl_sampler_release(s);
}

TEST(sampler_top_p) {
    const double pr[5] = {0.1, 0.4, 0.05, 0.3, 0.15};
    float l[5];
    logits_of(pr, 5, l);
    /* By hand: descending 0.4, 0.3, 0.15, ... top_p 0.6: mass before 0.3 is 0.4 < 0.6 (kept),
     * before 0.15 is 0.7 (cut): keep {1, 3} renormalised 4/7, 3/7. */
    double expect[5] = {0, 4 / 7.0, 0, 3 / 7.0, 0};
    struct moecl_sampler_params p = params(1.0f, 0.6f, 0.0f, 0);
    chi_square_draws(&p, l, 5, expect);
    check_case(p, l, 5);
    check_case(params(1.0f, 0.9f, 0.0f, 0), l, 5);
    check_case(params(1.0f, 0.05f, 0.0f, 0), l, 5); /* only the top token */
    check_case(params(0.7f, 0.8f, 0.0f, 0), l, 5);
}

TEST(sampler_min_p) {
    const double pr[5] = {0.1, 0.4, 0.05, 0.3, 0.15};
    float l[5];
    logits_of(pr, 5, l);
    /* By hand: min_p 0.3 keeps p >= 0.12: {0.4, 0.3, 0.15} -> 8/17, 6/17, 3/17. */
    double expect[5] = {0, 8 / 17.0, 0, 6 / 17.0, 3 / 17.0};
    struct moecl_sampler_params p = params(1.0f, 1.0f, 0.3f, 0);
    chi_square_draws(&p, l, 5, expect);
    check_case(p, l, 5);
    check_case(params(1.5f, 1.0f, 0.2f, 0), l, 5);
}

TEST(sampler_top_k) {
    const double pr[6] = {0.1, 0.4, 0.05, 0.3, 0.1, 0.05};
    float l[6];
    logits_of(pr, 6, l);
    double expect[6] = {0, 4 / 7.0, 0, 3 / 7.0, 0, 0};
    struct moecl_sampler_params p = params(1.0f, 1.0f, 0.0f, 2);
    chi_square_draws(&p, l, 6, expect);
    /* k = 3 with a tie at the boundary (ids 0 and 4 have 0.1): the lower id wins. */
    double expect3[6] = {1 / 8.0, 4 / 8.0, 0, 3 / 8.0, 0, 0};
    p.top_k = 3;
    chi_square_draws(&p, l, 6, expect3);
    check_case(p, l, 6);
    check_case(params(1.0f, 1.0f, 0.0f, 1), l, 6);
}

TEST(sampler_combined) {
    float l[16];
    uint64_t st = 99;
    for (int i = 0; i < 16; i++)
        l[i] = 3.0f * moecl_test_randf(&st);
    check_case(params(1.0f, 0.9f, 0.05f, 8), l, 16);
    check_case(params(0.8f, 0.7f, 0.1f, 12), l, 16);
    check_case(params(1.3f, 0.95f, 0.02f, 5), l, 16);
    /* The intersection by hand: probs {0.4, 0.3, 0.15, 0.1, 0.05}; top_p 0.9 keeps 4 (mass
     * before 0.05 is 0.95), min_p 0.3 keeps >= 0.12 (3), top_k 2 keeps 2: {0.4, 0.3}. */
    const double pr[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float l5[5];
    logits_of(pr, 5, l5);
    double expect[5] = {4 / 7.0, 3 / 7.0, 0, 0, 0};
    struct moecl_sampler_params p = params(1.0f, 0.9f, 0.3f, 2);
    chi_square_draws(&p, l5, 5, expect);
    /* Same with top_k 4: min_p is the binding filter -> {0.4, 0.3, 0.15}. */
    double expect2[5] = {8 / 17.0, 6 / 17.0, 3 / 17.0, 0, 0};
    p.top_k = 4;
    chi_square_draws(&p, l5, 5, expect2);
}

TEST(sampler_edge_cases) {
    /* All mass in one token. */
    float one[4] = {-INFINITY, 5.0f, -INFINITY, -INFINITY};
    double e1[4] = {0, 1, 0, 0};
    struct moecl_sampler_params p = params(1.0f, 0.5f, 0.5f, 2);
    chi_square_draws(&p, one, 4, e1);
    /* A finite but overwhelming token. */
    float over[3] = {-200.0f, 200.0f, -200.0f};
    p = params(1.0f, 1.0f, 0.0f, 0);
    chi_square_draws(&p, over, 3, e1);
    /* Ties: four equal logits sample uniformly; top_p 0.5 keeps exactly two of them (the
     * higher ids, as a stable ascending argsort orders them); top_k 2 keeps the lower ids. */
    float tie[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    double uni[4] = {0.25, 0.25, 0.25, 0.25};
    chi_square_draws(&p, tie, 4, uni);
    double hi2[4] = {0, 0, 0.5, 0.5}, lo2[4] = {0.5, 0.5, 0, 0};
    p = params(1.0f, 0.5f, 0.0f, 0);
    chi_square_draws(&p, tie, 4, hi2);
    p = params(1.0f, 1.0f, 0.0f, 2);
    chi_square_draws(&p, tie, 4, lo2);
    /* top_k >= vocabulary and min_p 0 are no-ops. */
    const double pr[4] = {0.4, 0.3, 0.2, 0.1};
    float l[4];
    logits_of(pr, 4, l);
    double full[4] = {0.4, 0.3, 0.2, 0.1};
    p = params(1.0f, 1.0f, 0.0f, 4);
    chi_square_draws(&p, l, 4, full);
    p.top_k = 1000;
    chi_square_draws(&p, l, 4, full);
    /* min_p 1 keeps only the maximum, and every token tied with it. */
    p = params(1.0f, 1.0f, 1.0f, 0);
    double top1[4] = {1, 0, 0, 0};
    chi_square_draws(&p, l, 4, top1);
    float l2[4] = {2.0f, 1.0f, 2.0f, 0.0f};
    double two[4] = {0.5, 0, 0.5, 0};
    chi_square_draws(&p, l2, 4, two);
}

TEST(sampler_seed_reproducible) {
    float l[32];
    uint64_t st = 3;
    for (int i = 0; i < 32; i++)
        l[i] = moecl_test_randf(&st);
    struct moecl_sampler_params p = params(1.0f, 0.95f, 0.0f, 0);
    struct moecl_sampler *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(moecl_sampler_create(&p, 32, &a) == MOECL_OK);
    REQUIRE(moecl_sampler_create(&p, 32, &b) == MOECL_OK);
    p.seed = 1235;
    REQUIRE(moecl_sampler_create(&p, 32, &c) == MOECL_OK);
    int same_ab = 1, same_ac = 1;
    int32_t first[64];
    for (int i = 0; i < 64; i++) {
        int32_t x, y, z;
        REQUIRE(moecl_sampler_sample(a, l, 32, &x) == MOECL_OK);
        REQUIRE(moecl_sampler_sample(b, l, 32, &y) == MOECL_OK);
        REQUIRE(moecl_sampler_sample(c, l, 32, &z) == MOECL_OK);
        same_ab &= x == y;
        same_ac &= x == z;
        first[i] = x;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    /* Reseeding restarts the stream. */
    moecl_sampler_reseed(b, 1234);
    int same = 1;
    for (int i = 0; i < 64; i++) {
        int32_t y;
        REQUIRE(moecl_sampler_sample(b, l, 32, &y) == MOECL_OK);
        same &= y == first[i];
    }
    CHECK(same);
    moecl_sampler_release(a);
    moecl_sampler_release(b);
    moecl_sampler_release(c);
}

TEST(sampler_bad_input) {
    struct moecl_sampler_params p = params(-1.0f, 1.0f, 0.0f, 0);
    struct moecl_sampler *s = (struct moecl_sampler *)1;
    CHECK(moecl_sampler_create(&p, 10, &s) == MOECL_ERR_INVALID_ARG);
    CHECK(s == NULL);
    p = params(1.0f, 1.0f, 1.5f, 0);
    CHECK(moecl_sampler_create(&p, 10, &s) == MOECL_ERR_INVALID_ARG);
    p = params(1.0f, -0.1f, 0.0f, 0);
    CHECK(moecl_sampler_create(&p, 10, &s) == MOECL_ERR_INVALID_ARG);
    p = params(1.0f, 1.0f, 0.0f, -3);
    CHECK(moecl_sampler_create(&p, 10, &s) == MOECL_ERR_INVALID_ARG);
    p = params(1.0f, 1.0f, 0.0f, 0);
    CHECK(moecl_sampler_create(&p, 0, &s) == MOECL_ERR_INVALID_ARG);
    REQUIRE(moecl_sampler_create(&p, 4, &s) == MOECL_OK);
    float nan4[4] = {0, NAN, 0, 0};
    float ninf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    float pinf[4] = {0, 0, INFINITY, 0};
    int32_t t = 7;
    CHECK(moecl_sampler_sample(s, nan4, 4, &t) == MOECL_ERR_INVALID_ARG);
    CHECK_EQ(t, -1);
    CHECK_STR_CONTAINS(moecl_last_error(), "logits[1] is NaN");
    CHECK(moecl_sampler_sample(s, ninf, 4, &t) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_sampler_sample(s, pinf, 4, &t) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_sampler_sample(s, nan4, 5, &t) == MOECL_ERR_INVALID_ARG); /* n > n_vocab */
    moecl_sampler_release(s);
    moecl_sampler_release(NULL);
}

/* A real-size row: the sampler's distribution over 201088 logits against the definition. Every
 * case keeps at most the 40 largest tokens or cuts at a threshold above 3.9, so only tokens with
 * logit > 3.9 (about 1% of the row) can survive, and everything that beats such a token is in
 * that set too: the O(n^2) definition runs on the candidates only. */
TEST(sampler_full_vocab) {
    enum { N = 201088 };
    float *l = malloc(N * sizeof *l);
    double *d = malloc(N * sizeof *d);
    int *cand = malloc(N * sizeof *cand);
    REQUIRE(l && d && cand);
    uint64_t st = 11;
    for (int i = 0; i < N; i++)
        l[i] = 4.0f * moecl_test_randf(&st);
    l[12345] = 9.0f;
    l[200] = 8.5f;
    l[77] = 3.95f; /* a tie with l[78] */
    l[78] = 3.95f;
    int nc = 0;
    double mx = 9.0, total = 0;
    for (int i = 0; i < N; i++) {
        total += exp(l[i] - mx);
        if (l[i] > 3.9f)
            cand[nc++] = i;
    }
    const struct moecl_sampler_params cases[] = {
        params(0.9f, 0.01f, 0.0f, 40),
        params(0.9f, 0.5f, 0.0f, 40),
        params(1.0f, 1.0f, 0.2f, 0),
        params(1.1f, 0.3f, 0.001f, 30),
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct moecl_sampler_params *p = &cases[c];
        struct moecl_sampler *s = NULL;
        REQUIRE(moecl_sampler_create(p, N, &s) == MOECL_OK);
        REQUIRE(moecl_sampler_distribution(s, l, N, d) == MOECL_OK);
        moecl_sampler_release(s);
        double *w = calloc(N, sizeof *w), z = 0;
        int kept = 0;
        for (int a = 0; a < nc; a++) {
            int i = cand[a], above_k = 0;
            double above_p = 0;
            for (int b = 0; b < nc; b++) {
                int j = cand[b];
                if (j == i)
                    continue;
                above_k += beats_top_k(l, j, i);
                if (beats_top_p(l, j, i))
                    above_p += exp(l[j] - mx) / total;
            }
            int keep = 1;
            if (p->top_k > 0)
                keep &= above_k < p->top_k;
            if (p->top_p < 1)
                keep &= above_p < p->top_p;
            if (p->min_p > 0)
                keep &= l[i] >= mx + log(p->min_p);
            if (keep) {
                kept++;
                z += w[i] = exp((l[i] - mx) / p->temperature);
            }
        }
        int got_kept = 0;
        double err = 0;
        for (int i = 0; i < N; i++) {
            got_kept += d[i] > 0;
            err = fmax(err, fabs(d[i] - w[i] / z));
        }
        CHECK(kept > 1);
        CHECK_EQ(got_kept, kept);
        CHECK_NEAR(err, 0, 1e-9);
        free(w);
    }
    free(l);
    free(d);
    free(cand);
}
