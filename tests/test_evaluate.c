/* The evaluation numerics of runtime/evaluate.c, checked against independent computations in
 * the tests (long double sums, brute-force window enumeration, numpy's percentile definition),
 * and the saved-logits file: round trip, KL against exact KL, and every kind of bad file.
 * No device needed. */
#include "test.h"

#include "moecl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ windows */

/* Brute force: every plan's windows are whole, every target is scored at most once, inside its
 * window and after the window's first token; stride == ctx scores all but window starts,
 * stride < ctx every token from 1 to the last window's end; row order = moecl_ppl_row_target. */
TEST(perplexity_plan_windows) {
    static const int cases[][3] = {{10, 4, 4}, {10, 4, 2},  {10, 4, 1}, {9, 3, 3},  {64, 64, 64},
                                   {65, 8, 3}, {100, 7, 7}, {33, 2, 1}, {33, 2, 2}, {50, 10, 9}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c][0], ctx = cases[c][1], stride = cases[c][2];
        int64_t nw = -1, ns = -1;
        REQUIRE(moecl_ppl_plan(n, ctx, stride, &nw, &ns) == MOECL_OK);
        /* windows: starts 0, stride, ... while whole */
        int64_t expect_nw = 0;
        while (expect_nw * stride + ctx <= n)
            expect_nw++;
        CHECK_EQ(nw, expect_nw);
        int *seen = calloc((size_t)n, sizeof *seen);
        REQUIRE(seen);
        int64_t row = 0;
        int64_t last_end = 0;
        for (int64_t k = 0; k < nw; k++) {
            struct moecl_ppl_window w;
            moecl_ppl_window_at(ctx, stride, k, &w);
            CHECK_EQ(w.start, k * stride);
            CHECK_EQ(w.end, w.start + ctx);
            CHECK(w.first_target > w.start);
            for (int64_t t = w.first_target; t < w.end; t++) {
                seen[t]++;
                CHECK_EQ(moecl_ppl_row_target(ctx, stride, row), t);
                row++;
            }
            /* after the first window, a target has at least ctx - stride tokens of context */
            if (k > 0 && stride < ctx)
                CHECK(w.first_target - w.start >= ctx - stride);
            last_end = w.end;
        }
        CHECK_EQ(row, ns);
        for (int t = 0; t < n; t++) {
            int want;
            if (stride == ctx)
                want = t < last_end && t % ctx != 0;
            else
                want = t >= 1 && t < last_end;
            if (seen[t] != want)
                moecl_test_fail(__FILE__, __LINE__, "n %d ctx %d stride %d: target %d seen %d x", n,
                                ctx, stride, t, seen[t]);
        }
        free(seen);
    }
    int64_t nw, ns;
    CHECK(moecl_ppl_plan(10, 1, 1, &nw, &ns) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "--ctx 1");
    CHECK(moecl_ppl_plan(10, 4, 5, &nw, &ns) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "--stride 5");
    CHECK(moecl_ppl_plan(10, 4, 0, &nw, &ns) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_ppl_plan(3, 4, 4, &nw, &ns) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "3 tokens, fewer than one window (--ctx 4)");
    CHECK_EQ(nw, 0);
    CHECK_EQ(ns, 0);
}

/* ------------------------------------------------------------------ statistics */

static long double lse_ref(const float *x, int n) {
    long double m = x[0], s = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    for (int i = 0; i < n; i++)
        s += expl((long double)x[i] - m);
    /* s >= 1: the maximum itself contributes exp(0) */
    // cppcheck-suppress invalidFunctionArg
    return m + logl(s);
}

TEST(perplexity_log_sum_exp) {
    uint64_t rng = 12345;
    float row[1000];
    for (int rep = 0; rep < 20; rep++) {
        int n = 1 + (int)(moecl_test_rand(&rng) % 1000);
        float offset = rep % 2 ? 5000.0f : -200.0f; /* exp would overflow/underflow unshifted */
        for (int i = 0; i < n; i++)
            row[i] = offset + 30.0f * moecl_test_randf(&rng);
        double got = moecl_log_sum_exp(row, n);
        CHECK_NEAR(got, (double)lse_ref(row, n), 1e-9 * fabs((double)offset) + 1e-12);
    }
    row[0] = 3.5f;
    CHECK_NEAR(moecl_log_sum_exp(row, 1), 3.5, 0);
    CHECK(isinf(moecl_log_sum_exp(row, 0)));
}

TEST(perplexity_nll_stats) {
    uint64_t rng = 777;
    double x[500];
    struct moecl_nll_stats s = {0};
    for (int i = 0; i < 500; i++) {
        x[i] = 3.0 + 2.0 * moecl_test_randf(&rng);
        moecl_nll_stats_add(&s, x[i]);
    }
    /* two-pass reference */
    long double mean = 0, var = 0;
    for (int i = 0; i < 500; i++)
        mean += x[i];
    mean /= 500;
    for (int i = 0; i < 500; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= 499;
    struct moecl_ppl_result r;
    moecl_nll_stats_result(&s, &r);
    CHECK_EQ(r.n, 500);
    CHECK_NEAR(r.mean_nll, (double)mean, 1e-12);
    CHECK_NEAR(r.mean_nll_se, sqrt((double)var / 500), 1e-12);
    CHECK_NEAR(r.ppl, exp((double)mean), 1e-9);
    CHECK_NEAR(r.ppl_se, exp((double)mean) * sqrt((double)var / 500), 1e-9);
    struct moecl_nll_stats one = {0};
    moecl_nll_stats_add(&one, 2.0);
    moecl_nll_stats_result(&one, &r);
    CHECK_NEAR(r.ppl, exp(2.0), 1e-12);
    CHECK_NEAR(r.ppl_se, 0, 0);
}

/* numpy.percentile's default ("linear"): rank f*(n-1), interpolated. */
TEST(perplexity_percentile) {
    double v[10];
    for (int i = 0; i < 10; i++)
        v[i] = i + 1;
    CHECK_NEAR(moecl_percentile(v, 10, 0.5), 5.5, 1e-12);
    CHECK_NEAR(moecl_percentile(v, 10, 0.99), 9.91, 1e-12);
    CHECK_NEAR(moecl_percentile(v, 10, 0.999), 9.991, 1e-12);
    CHECK_NEAR(moecl_percentile(v, 10, 0.0), 1, 0);
    CHECK_NEAR(moecl_percentile(v, 10, 1.0), 10, 0);
    CHECK_NEAR(moecl_percentile(v, 1, 0.99), 1, 0);
    CHECK(isnan(moecl_percentile(v, 0, 0.5)));
}

TEST(perplexity_kl_summary) {
    struct moecl_kl_row rows[4] = {
        {0.0, 1.0, 1.5, 1}, {0.1, 2.0, 2.0, 1}, {0.3, 0.5, 1.5, 0}, {2.0, 1.5, 1.0, 1}};
    struct moecl_kl_summary s;
    REQUIRE(moecl_kl_summarize(rows, 4, &s) == MOECL_OK);
    CHECK_EQ(s.n, 4);
    CHECK_NEAR(s.kl_mean, 0.6, 1e-12);
    CHECK_NEAR(s.kl_median, 0.2, 1e-12);
    CHECK_NEAR(s.kl_max, 2.0, 0);
    CHECK_NEAR(s.kl_p99, 0.3 + 0.97 * 1.7, 1e-12); /* rank 2.97 */
    CHECK_NEAR(s.same_top, 0.75, 1e-12);
    CHECK_NEAR(s.same_top_se, sqrt(0.75 * 0.25 / 4), 1e-12);
    CHECK_NEAR(s.ref.ppl, exp(1.25), 1e-12);
    CHECK_NEAR(s.ppl.ppl, exp(1.5), 1e-12);
    CHECK_NEAR(s.ppl_ratio, exp(0.25), 1e-12); /* mean of 0.5, 0, 1, -0.5 */
    CHECK(moecl_kl_summarize(rows, 0, &s) == MOECL_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------------ logits files */

#define V 50
#define N_TOK 24
#define CTX 8
#define STRIDE 4

/* Seeded logits for every scored row and the tokens. */
struct sample {
    int32_t tokens[N_TOK];
    int64_t n_rows;
    float *rows; /* [n_rows][V] */
};

static int sample_make(struct sample *s, uint64_t seed, float scale) {
    uint64_t rng = seed;
    for (int i = 0; i < N_TOK; i++)
        s->tokens[i] = (int32_t)(moecl_test_rand(&rng) % V);
    int64_t nw;
    if (moecl_ppl_plan(N_TOK, CTX, STRIDE, &nw, &s->n_rows) != MOECL_OK)
        return -1;
    s->rows = malloc((size_t)s->n_rows * V * sizeof *s->rows);
    if (!s->rows)
        return -1;
    for (int64_t i = 0; i < s->n_rows * V; i++)
        s->rows[i] = scale * moecl_test_randf(&rng);
    return 0;
}

static char *tmp_path(char **dir, const char *name) {
    *dir = moecl_test_tmpdir("eval");
    if (!*dir)
        return NULL;
    size_t n = strlen(*dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", *dir, name);
    return p;
}

static int save(const char *path, const struct sample *s, int top_k) {
    struct moecl_logits_writer *w = NULL;
    if (moecl_logits_writer_create(path, V, s->tokens, N_TOK, CTX, STRIDE, top_k, &w) != MOECL_OK)
        return -1;
    for (int64_t r = 0; r < s->n_rows; r++)
        if (moecl_logits_writer_add(w, s->rows + r * V) != MOECL_OK) {
            moecl_logits_writer_release(w);
            return -1;
        }
    enum moecl_status st = moecl_logits_writer_finish(w);
    moecl_logits_writer_release(w);
    return st == MOECL_OK ? 0 : -1;
}

static void log_softmax_ref(const float *x, long double *out) {
    long double l = lse_ref(x, V);
    for (int i = 0; i < V; i++)
        out[i] = (long double)x[i] - l;
}

static int argmax_ref(const float *x) {
    int b = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* Full rows: KL equals the exact sum; nll and same-top match the direct computation. */
TEST(perplexity_kl_full_rows_exact) {
    struct sample p, q;
    REQUIRE(sample_make(&p, 1, 6.0f) == 0);
    REQUIRE(sample_make(&q, 2, 6.0f) == 0);
    memcpy(q.tokens, p.tokens, sizeof p.tokens);
    char *dir = NULL, *path = tmp_path(&dir, "full.lp");
    REQUIRE(path);
    REQUIRE(save(path, &p, 0) == 0);
    struct moecl_logits_file *f = NULL;
    REQUIRE(moecl_logits_file_open(path, &f) == MOECL_OK);
    const struct moecl_logits_info *in = moecl_logits_file_info(f);
    CHECK_EQ(in->n_vocab, V);
    CHECK_EQ(in->top_k, 0);
    CHECK_EQ(in->n_rows, p.n_rows);
    CHECK_EQ(in->n_tokens, N_TOK);
    CHECK(memcmp(in->tokens, p.tokens, sizeof p.tokens) == 0);
    CHECK(moecl_logits_file_check(f, V, p.tokens, N_TOK, CTX, STRIDE) == MOECL_OK);
    int same = 0;
    for (int64_t r = 0; r < p.n_rows; r++) {
        const float *pr = p.rows + r * V, *qr = q.rows + r * V;
        struct moecl_kl_row k;
        REQUIRE(moecl_logits_file_compare(f, r, qr, V, &k) == MOECL_OK);
        long double lp[V], lq[V], kl = 0;
        log_softmax_ref(pr, lp);
        log_softmax_ref(qr, lq);
        for (int i = 0; i < V; i++)
            kl += expl(lp[i]) * (lp[i] - lq[i]);
        int32_t tgt = p.tokens[moecl_ppl_row_target(CTX, STRIDE, r)];
        /* f32 storage of log-probabilities: ~1e-7 relative */
        CHECK_NEAR(k.kl, (double)kl, 1e-5 * (double)kl + 1e-6);
        CHECK_NEAR(k.nll_ref, -(double)lp[tgt], 1e-5);
        CHECK_NEAR(k.nll, -(double)lq[tgt], 1e-5);
        CHECK_EQ(k.same_top, argmax_ref(pr) == argmax_ref(qr));
        same += k.same_top;
        /* against itself: exactly 0 */
        REQUIRE(moecl_logits_file_compare(f, r, pr, V, &k) == MOECL_OK);
        CHECK_NEAR(k.kl, 0.0, 0);
        CHECK_EQ(k.same_top, 1);
        CHECK_NEAR(k.nll, k.nll_ref, 0);
    }
    CHECK(same < p.n_rows); /* random rows: the comparison above saw disagreements */
    moecl_logits_file_release(f);
    moecl_test_rmtree(dir);
    free(dir);
    free(path);
    free(p.rows);
    free(q.rows);
}

/* Top-K rows: KL is the K tokens + one rest bucket, computed here independently; it is a lower
 * bound of the exact KL; against itself exactly 0. */
TEST(perplexity_kl_top_k_bucket) {
    struct sample p, q;
    REQUIRE(sample_make(&p, 3, 8.0f) == 0);
    REQUIRE(sample_make(&q, 4, 8.0f) == 0);
    memcpy(q.tokens, p.tokens, sizeof p.tokens);
    const int K = 5;
    char *dir = NULL, *path = tmp_path(&dir, "topk.lp");
    REQUIRE(path);
    REQUIRE(save(path, &p, K) == 0);
    struct moecl_logits_file *f = NULL;
    REQUIRE(moecl_logits_file_open(path, &f) == MOECL_OK);
    CHECK_EQ(moecl_logits_file_info(f)->top_k, K);
    for (int64_t r = 0; r < p.n_rows; r++) {
        const float *pr = p.rows + r * V, *qr = q.rows + r * V;
        long double lp[V], lq[V], exact = 0;
        log_softmax_ref(pr, lp);
        log_softmax_ref(qr, lq);
        /* the K most likely of P by selection sort (ties: lower id) */
        int ids[V], used[V] = {0};
        for (int i = 0; i < K; i++) {
            int b = -1;
            for (int v = 0; v < V; v++)
                if (!used[v] && (b < 0 || pr[v] > pr[b]))
                    b = v;
            used[b] = 1;
            ids[i] = b;
        }
        long double bucket = 0, pin = 0, qin = 0;
        for (int i = 0; i < K; i++) {
            bucket += expl(lp[ids[i]]) * (lp[ids[i]] - lq[ids[i]]);
            pin += expl(lp[ids[i]]);
            qin += expl(lq[ids[i]]);
        }
        bucket += (1 - pin) * logl((1 - pin) / (1 - qin));
        for (int v = 0; v < V; v++)
            exact += expl(lp[v]) * (lp[v] - lq[v]);
        struct moecl_kl_row k;
        REQUIRE(moecl_logits_file_compare(f, r, qr, V, &k) == MOECL_OK);
        CHECK_NEAR(k.kl, (double)bucket, 1e-5 * (double)bucket + 1e-6);
        CHECK(k.kl <= (double)exact + 1e-6);
        CHECK_EQ(k.same_top, ids[0] == argmax_ref(qr));
        CHECK_NEAR(k.nll_ref, -(double)lp[p.tokens[moecl_ppl_row_target(CTX, STRIDE, r)]], 1e-5);
        REQUIRE(moecl_logits_file_compare(f, r, pr, V, &k) == MOECL_OK);
        CHECK_NEAR(k.kl, 0.0, 0);
        CHECK_EQ(k.same_top, 1);
    }
    moecl_logits_file_release(f);
    moecl_test_rmtree(dir);
    free(dir);
    free(path);
    free(p.rows);
    free(q.rows);
}

/* The writer publishes the file only when complete. */
TEST(perplexity_writer_misuse) {
    struct sample p;
    REQUIRE(sample_make(&p, 5, 4.0f) == 0);
    char *dir = NULL, *path = tmp_path(&dir, "w.lp");
    REQUIRE(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct moecl_logits_writer *w = NULL;
    REQUIRE(moecl_logits_writer_create(path, V, p.tokens, N_TOK, CTX, STRIDE, 4, &w) == MOECL_OK);
    REQUIRE(moecl_logits_writer_add(w, p.rows) == MOECL_OK);
    CHECK(moecl_logits_writer_finish(w) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "1 of ");
    moecl_logits_writer_release(w);
    CHECK(access(path, F_OK) != 0);
    CHECK(access(tmp, F_OK) != 0);
    /* too many rows */
    REQUIRE(moecl_logits_writer_create(path, V, p.tokens, N_TOK, CTX, STRIDE, 4, &w) == MOECL_OK);
    for (int64_t r = 0; r < p.n_rows; r++)
        REQUIRE(moecl_logits_writer_add(w, p.rows + r * V) == MOECL_OK);
    CHECK(moecl_logits_writer_add(w, p.rows) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_logits_writer_finish(w) == MOECL_OK);
    moecl_logits_writer_release(w);
    CHECK(access(path, F_OK) == 0);
    /* bad arguments */
    CHECK(moecl_logits_writer_create(path, V, p.tokens, N_TOK, CTX, STRIDE, V, &w) ==
          MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "full rows");
    int32_t bad[N_TOK];
    memcpy(bad, p.tokens, sizeof bad);
    bad[7] = V;
    CHECK(moecl_logits_writer_create(path, V, bad, N_TOK, CTX, STRIDE, 4, &w) ==
          MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "position 7 is outside the vocabulary");
    CHECK(w == NULL);
    moecl_test_rmtree(dir);
    free(dir);
    free(path);
    free(p.rows);
}

/* Writes a modified copy and opens it: returns the status; *msg gets the message. */
static enum moecl_status open_variant(const char *path, const unsigned char *data, size_t n,
                                      struct moecl_logits_file **f) {
    *f = NULL;
    if (moecl_test_write_file(path, data, n) != 0)
        return MOECL_ERR_INTERNAL;
    return moecl_logits_file_open(path, f);
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Truncated, padded, wrong magic, other version, bad header fields, tokens outside the
 * vocabulary, corrupt rows, other tokens / vocabulary / windows: each a clear error. */
TEST(perplexity_file_bad_input) {
    struct sample p;
    REQUIRE(sample_make(&p, 6, 5.0f) == 0);
    const int K = 4;
    char *dir = NULL, *path = tmp_path(&dir, "good.lp");
    REQUIRE(path);
    REQUIRE(save(path, &p, K) == 0);
    size_t n;
    unsigned char *good = (unsigned char *)moecl_test_slurp(path, &n);
    REQUIRE(good);
    CHECK_EQ(n, 64 + 4 * N_TOK + (size_t)p.n_rows * (8 + 8 * K));
    unsigned char *b = malloc(n + 16);
    REQUIRE(b);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad.lp", dir);
    struct moecl_logits_file *f = NULL;

    /* truncated anywhere: header, tokens, rows */
    size_t cuts[] = {0, 10, 63, 64, 70, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(open_variant(bad, good, cuts[i], &f) == MOECL_ERR_FORMAT);
        CHECK_STR_CONTAINS(moecl_last_error(), "bad.lp");
        CHECK_STR_CONTAINS(moecl_last_error(), "truncated");
        CHECK(f == NULL);
    }
    memcpy(b, good, n);
    memset(b + n, 0, 16);
    CHECK(open_variant(bad, b, n + 3, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "trailing bytes");

    memcpy(b, good, n);
    memcpy(b, "GGUF\0\0\0\0", 8);
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "wrong magic");

    memcpy(b, good, n);
    put32(b + 8, 2);
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_UNSUPPORTED);
    CHECK_STR_CONTAINS(moecl_last_error(), "version 2");

    memcpy(b, good, n);
    put32(b + 12, 4);
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "flags");

    memcpy(b, good, n);
    put32(b + 20, V); /* top-K = vocabulary */
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "top-K");

    memcpy(b, good, n);
    put32(b + 28, STRIDE + 1); /* other windows: row count disagrees */
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "rows do not match");

    memcpy(b, good, n);
    put32(b + 64 + 4 * 3, 0xFFFFFFFFu); /* token 3 */
    CHECK(open_variant(bad, b, n, &f) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "position 3 is outside the vocabulary");

    /* rows: the first row starts after the tokens: f32 target, K ids, K log-probs, rest */
    size_t row0 = 64 + 4 * N_TOK, row1 = row0 + 8 + 8 * K;
    struct {
        size_t off;
        uint32_t val;
        const char *msg;
    } rows[] = {
        {row1 + 4, V + 3, "row 1 is corrupt: a token id is outside"},
        {row1 + 4 + 4 * K, 0x7FC00000u /* NaN */, "row 1 is corrupt: log-probabilities"},
        {row1 + 4 + 4 * K, 0x3F800000u /* +1.0 */, "row 1 is corrupt: log-probabilities"},
        {row1 + 4 + 4 * K + 4, 0x00000000u /* second > first... = 0 */, "row 1 is corrupt"},
        {row1 + 8 + 8 * K - 4, 0x00000000u /* rest mass 1 */, "do not sum to 1"},
        {row1, 0x7F800000u /* +inf target */, "row 1 is corrupt"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        memcpy(b, good, n);
        put32(b + rows[i].off, rows[i].val);
        REQUIRE(open_variant(bad, b, n, &f) == MOECL_OK);
        struct moecl_kl_row k;
        CHECK(moecl_logits_file_compare(f, 0, p.rows, V, &k) == MOECL_OK);
        CHECK(moecl_logits_file_compare(f, 1, p.rows + V, V, &k) == MOECL_ERR_FORMAT);
        CHECK_STR_CONTAINS(moecl_last_error(), "bad.lp");
        CHECK_STR_CONTAINS(moecl_last_error(), rows[i].msg);
        moecl_logits_file_release(f);
    }
    /* a duplicated id */
    memcpy(b, good, n);
    memcpy(b + row1 + 8, b + row1 + 4, 4);
    REQUIRE(open_variant(bad, b, n, &f) == MOECL_OK);
    struct moecl_kl_row k;
    CHECK(moecl_logits_file_compare(f, 1, p.rows + V, V, &k) == MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "appears twice");
    /* the mark scratch was cleared: a good row still compares */
    CHECK(moecl_logits_file_compare(f, 0, p.rows, V, &k) == MOECL_OK);
    CHECK_NEAR(k.kl, 0.0, 0);
    moecl_logits_file_release(f);
    (void)row0;

    /* a good file, the wrong run */
    REQUIRE(moecl_logits_file_open(path, &f) == MOECL_OK);
    int32_t other[N_TOK];
    memcpy(other, p.tokens, sizeof other);
    other[11] = (other[11] + 1) % V;
    CHECK(moecl_logits_file_check(f, V, other, N_TOK, CTX, STRIDE) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "saved for other tokens: position 11");
    CHECK(moecl_logits_file_check(f, V, p.tokens, N_TOK - 1, CTX, STRIDE) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "24 tokens, this text has 23");
    CHECK(moecl_logits_file_check(f, V + 1, p.tokens, N_TOK, CTX, STRIDE) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "vocabulary of 50 tokens; this model has 51");
    CHECK(moecl_logits_file_check(f, V, p.tokens, N_TOK, CTX, CTX) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "--ctx 8 --stride 4; this run uses --ctx 8 --stride 8");
    CHECK(moecl_logits_file_compare(f, 0, p.rows, V - 1, &k) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "this model has 49");
    CHECK(moecl_logits_file_compare(f, p.n_rows, p.rows, V, &k) == MOECL_ERR_INVALID_ARG);
    moecl_logits_file_release(f);

    snprintf(bad, sizeof bad, "%s/missing.lp", dir);
    CHECK(moecl_logits_file_open(bad, &f) == MOECL_ERR_IO);
    CHECK_STR_CONTAINS(moecl_last_error(), "missing.lp: cannot open");
    CHECK(moecl_logits_file_open(dir, &f) == MOECL_ERR_IO); /* a folder */

    free(b);
    free(good);
    moecl_test_rmtree(dir);
    free(dir);
    free(path);
    free(p.rows);
}
