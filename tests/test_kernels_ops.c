/* The non-matmul forward kernels against double-precision references: embedding gather, RMSNorm,
 * YaRN RoPE (past position 4096), attention with sinks over a ring cache across the sliding-
 * window boundary, KV append, router top-k, clamped SwiGLU, expert combine, and bf16 rounding.
 *
 * Tolerances: these kernels run with -DACT=F32 and use MLX's CPU exp / sin / cos
 * approximations (a few float32 ulps, < 2e-7 relative in their ranges); every output is a short
 * float32 chain, so 1e-5 relative (+1e-6 absolute) bounds them with margin while a real error
 * (wrong pair, wrong key, wrong clamp) is orders of magnitude larger. The attention and
 * norm sums run over at most a few hundred terms: n * 2^-24 relative is below 1e-5 too. */
#include "test.h"

#include "kernel_env.h"
#include "fp.h"

#include <stdlib.h>
#include <string.h>

static cl_mem mk(struct kenv *e, const void *p, size_t n) {
    cl_int err;
    return clCreateBuffer(e->ctx, CL_MEM_READ_WRITE | (p ? CL_MEM_COPY_HOST_PTR : 0), n ? n : 4,
                          (void *)(uintptr_t)p, &err);
}

static void rd(struct kenv *e, cl_mem m, void *p, size_t n) {
    clEnqueueReadBuffer(e->q, m, CL_TRUE, 0, n, p, 0, NULL, NULL);
}

static int near(double got, double ref) {
    return fabs(got - ref) <= 1e-5 * fabs(ref) + 1e-6;
}

static float *randv(size_t n, uint64_t *st, float scale) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = moecl_test_randf(st) * scale;
    return v;
}

/* ------------------------------------------------------------------ rmsnorm */

TEST(kernel_rmsnorm_rows) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    uint64_t st = 1;
    int rows = 3, n = 300;
    float *x = randv((size_t)rows * n, &st, 4.0f), *w = randv((size_t)n, &st, 2.0f);
    float *y = calloc((size_t)rows * n, sizeof(float));
    cl_mem xm = mk(&e, x, (size_t)rows * n * 4), ym = mk(&e, NULL, (size_t)rows * n * 4),
           wm = mk(&e, w, (size_t)n * 4);
    REQUIRE(moecl_launch_rmsnorm(e.q, &e.k, xm, ym, wm, 0, MOECL_DT_F32, (uint32_t)rows,
                                 (uint32_t)n, 1e-5f) == MOECL_OK);
    rd(&e, ym, y, (size_t)rows * n * 4);
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[r * n + i] * x[r * n + i];
        double inv = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++)
            bad += !near(y[r * n + i], x[r * n + i] * inv * w[i]);
    }
    CHECK_EQ(bad, 0);
    clReleaseMemObject(xm);
    clReleaseMemObject(ym);
    clReleaseMemObject(wm);
    free(x);
    free(w);
    free(y);
    kenv_close(&e);
}

/* The GPU work-group norm (forced with $MOECL_FAST_LANES=1), rows of gpt-oss's 2880: exact
 * numerics give rmsnorm_f32's bits; fast numerics (tree sum) stay within the double bound. */
TEST(kernel_rmsnorm_work_group) {
    uint64_t st = 2;
    int rows = 3, n = 2880;
    float *x = randv((size_t)rows * n, &st, 4.0f), *w = randv((size_t)n, &st, 2.0f);
    float *y[3];
    for (int v = 0; v < 3; v++) {
        y[v] = calloc((size_t)rows * n, sizeof(float));
        /* 0: one work-item per row; 1: work-group, exact; 2: work-group, fast */
        if (v)
            setenv("MOECL_FAST_LANES", "1", 1);
        struct kenv e;
        int opened = kenv_open_numerics(&e, MOECL_ACT_F32, v == 2, NULL, 0);
        unsetenv("MOECL_FAST_LANES");
        REQUIRE(opened == 0);
        cl_mem xm = mk(&e, x, (size_t)rows * n * 4), ym = mk(&e, NULL, (size_t)rows * n * 4),
               wm = mk(&e, w, (size_t)n * 4);
        CHECK(moecl_launch_rmsnorm(e.q, &e.k, xm, ym, wm, 0, MOECL_DT_F32, (uint32_t)rows,
                                   (uint32_t)n, 1e-5f) == MOECL_OK);
        rd(&e, ym, y[v], (size_t)rows * n * 4);
        clReleaseMemObject(xm);
        clReleaseMemObject(ym);
        clReleaseMemObject(wm);
        kenv_close(&e);
    }
    CHECK(memcmp(y[0], y[1], (size_t)rows * n * 4) == 0);
    int bad = 0, differ = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += (double)x[r * n + i] * x[r * n + i];
        double inv = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) {
            bad += !near(y[2][r * n + i], x[r * n + i] * inv * w[i]);
            differ += y[2][r * n + i] != y[0][r * n + i];
        }
    }
    CHECK_EQ(bad, 0);
    printf("  fast numerics: %d of %d outputs differ from the element-order sum's\n", differ,
           rows * n);
    for (int v = 0; v < 3; v++)
        free(y[v]);
    free(x);
    free(w);
}

/* ------------------------------------------------------------------ rope */

/* The spec's float64 inverse frequencies for gpt-oss (§2.4 table, mlx-lm's truncated range). */
static const double spec_inv_freq[32] = {
    1.0,         0.6890443,   0.4747821,   0.3271459,   0.2254180,   0.1553230,   0.1070244,
    0.07374457,  0.05081327,  0.03162075,  0.01945097,  0.01179219,  7.015714e-3, 4.069555e-3,
    2.277272e-3, 1.206131e-3, 5.809475e-4, 2.279478e-4, 3.830881e-5, 2.639647e-5, 1.818834e-5,
    1.253257e-5, 8.635496e-6, 5.950239e-6, 4.099978e-6, 2.825067e-6, 1.946596e-6, 1.341291e-6,
    9.242090e-7, 6.368209e-7, 4.387978e-7, 3.023511e-7};

TEST(kernel_rope_yarn_freqs_match_spec) {
    struct moecl_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = 64;
    c.rope_theta = 150000.0f;
    c.yarn = 1;
    c.rope_factor = 32.0f;
    c.beta_fast = 32.0f;
    c.beta_slow = 1.0f;
    c.original_max_pos = 4096;
    c.rope_mscale = 1.0f;
    c.rope_mscale_all_dim = 0.0f;
    float inv[32], mscale;
    moecl_rope_freqs(&c, inv, &mscale);
    for (int i = 0; i < 32; i++)
        CHECK_NEAR(inv[i], spec_inv_freq[i], 2e-6 * spec_inv_freq[i]);
    CHECK_NEAR(mscale, 1.3465735902799727, 1e-6);
}

/* Positions 4090..4101 straddle the original context (4096): the interpolated range; and the
 * two-buffer launch. */
TEST(kernel_rope_past_4096) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    uint64_t st = 2;
    int T = 12, H = 3, D = 64, pos0 = 4090;
    float inv[32];
    for (int i = 0; i < 32; i++)
        inv[i] = (float)spec_inv_freq[i];
    float *x = randv((size_t)T * H * D, &st, 3.0f);
    float *y = malloc((size_t)T * H * D * 4);
    cl_mem xm = mk(&e, x, (size_t)T * H * D * 4), fm = mk(&e, inv, sizeof inv);
    float ms = 1.3465736f;
    REQUIRE(moecl_launch_rope(e.q, &e.k, xm, fm, (uint32_t)T, (uint32_t)H, (uint32_t)D,
                              (uint32_t)(H * D), (uint32_t)pos0, ms) == MOECL_OK);
    rd(&e, xm, y, (size_t)T * H * D * 4);
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < 32; i++) {
                const float *v = x + ((size_t)t * H + h) * D;
                double x1 = v[i] * (double)ms, x2 = v[i + 32] * (double)ms;
                double th = (double)(pos0 + t) * inv[i];
                double r1 = x1 * cos(th) - x2 * sin(th), r2 = x1 * sin(th) + x2 * cos(th);
                const float *g = y + ((size_t)t * H + h) * D;
                /* theta reaches ~4100 rad: float32 theta carries ~2.4e-4 absolute error */
                bad += fabs(g[i] - r1) > 1e-3 * (fabs(x1) + fabs(x2)) + 1e-6;
                bad += fabs(g[i + 32] - r2) > 1e-3 * (fabs(x1) + fabs(x2)) + 1e-6;
            }
    CHECK_EQ(bad, 0);
    /* two buffers in one launch (queries and keys, moecl_launch_rope2): bit for bit one launch
     * each; the second buffer has its own head count and row stride */
    int H2 = 2, S2 = H2 * D + 8;
    float *x2 = randv((size_t)T * S2, &st, 3.0f), *y2 = malloc((size_t)T * S2 * 4);
    float *z = malloc((size_t)T * H * D * 4), *z2 = malloc((size_t)T * S2 * 4);
    cl_mem am = mk(&e, x, (size_t)T * H * D * 4), bm = mk(&e, x2, (size_t)T * S2 * 4);
    cl_mem cm = mk(&e, x2, (size_t)T * S2 * 4);
    REQUIRE(moecl_launch_rope2(e.q, &e.k, am, (uint32_t)H, (uint32_t)(H * D), bm, (uint32_t)H2,
                               (uint32_t)S2, fm, (uint32_t)T, (uint32_t)D, (uint32_t)pos0,
                               ms) == MOECL_OK);
    REQUIRE(moecl_launch_rope(e.q, &e.k, cm, fm, (uint32_t)T, (uint32_t)H2, (uint32_t)D,
                              (uint32_t)S2, (uint32_t)pos0, ms) == MOECL_OK);
    rd(&e, am, z, (size_t)T * H * D * 4);
    rd(&e, bm, z2, (size_t)T * S2 * 4);
    rd(&e, cm, y2, (size_t)T * S2 * 4);
    CHECK(memcmp(z, y, (size_t)T * H * D * 4) == 0);
    CHECK(memcmp(z2, y2, (size_t)T * S2 * 4) == 0);
    clReleaseMemObject(am);
    clReleaseMemObject(bm);
    clReleaseMemObject(cm);
    free(x2);
    free(y2);
    free(z);
    free(z2);
    clReleaseMemObject(xm);
    clReleaseMemObject(fm);
    free(x);
    free(y);
    kenv_close(&e);
}

/* ------------------------------------------------------------------ attention */

/* Reference attention for query position p over keys [lo, p] of the full history. */
static void ref_attn(const float *q, const float *K, const float *V, double sink, int lo, int p,
                     int D, double scale, double *out) {
    double m = sink;
    for (int j = lo; j <= p; j++) {
        double z = 0;
        for (int d = 0; d < D; d++)
            z += (double)q[d] * K[(size_t)j * D + d];
        z *= scale;
        if (z > m)
            m = z;
    }
    double sum = exp(sink - m);
    for (int d = 0; d < D; d++)
        out[d] = 0;
    for (int j = lo; j <= p; j++) {
        double z = 0;
        for (int d = 0; d < D; d++)
            z += (double)q[d] * K[(size_t)j * D + d];
        double w = exp(z * scale - m);
        sum += w;
        for (int d = 0; d < D; d++)
            out[d] += w * V[(size_t)j * D + d];
    }
    for (int d = 0; d < D; d++)
        out[d] /= sum;
}

/* When set, attn_case copies its outputs here ([n][4 heads][16] floats). */
static float *g_attn_out;
/* attn_case's key order (struct moecl_attn_args key_shift), and a rotation it applies to the
 * history of a single query's window before the kernel sees it: key i of the window moves to
 * where key (i - g_attn_rotate) mod n_keys was, so that visiting the rotated history in time
 * order adds the same keys in the same order as key_shift = g_attn_rotate on the original. */
static uint32_t g_attn_shift, g_attn_rotate;

/* One chunk of n queries at pos0 against a ring of `cap` slots holding the previous positions,
 * window `win` (0 = causal only); GQA 4 query heads on 2 kv heads. Returns bad outputs. */
static uint32_t g_attn_f16; /* attn_case: the ring holds halves (struct moecl_attn_args.kv_f16) */
static int g_attn_d = 16;   /* attn_case: head_dim (at most 64) */

static int attn_case(struct kenv *e, int pos0, int n, int cap, int win, uint64_t seed) {
    int H = 4, KVH = 2, D = g_attn_d, total = pos0 + n;
    uint64_t st = seed;
    float *Kall = randv((size_t)total * KVH * D, &st, 1.0f);
    float *Vall = randv((size_t)total * KVH * D, &st, 1.0f);
    float *Q = randv((size_t)n * H * D, &st, 1.0f);
    float sinks[4] = {0.5f, -1.0f, 2.0f, 0.0f};
    if (g_attn_rotate && n == 1) {
        int lo = win && pos0 + 1 > win ? pos0 + 1 - win : 0, nk = pos0 + 1 - lo;
        size_t row = (size_t)KVH * D;
        float *k2 = malloc((size_t)total * row * 4), *v2 = malloc((size_t)total * row * 4);
        memcpy(k2, Kall, (size_t)total * row * 4);
        memcpy(v2, Vall, (size_t)total * row * 4);
        for (int i = 0; i < nk; i++) {
            size_t to = (size_t)(lo + i) * row;
            size_t from = (size_t)(lo + (i + (int)g_attn_rotate) % nk) * row;
            memcpy(k2 + to, Kall + from, row * 4);
            memcpy(v2 + to, Vall + from, row * 4);
        }
        free(Kall);
        free(Vall);
        Kall = k2;
        Vall = v2;
    }
    float *ring_k = calloc((size_t)cap * KVH * D, 4), *ring_v = calloc((size_t)cap * KVH * D, 4);
    uint16_t *hk = calloc((size_t)cap * KVH * D, 2), *hv = calloc((size_t)cap * KVH * D, 2);
    if (g_attn_f16) {
        /* a half ring: the history's values are halves (the reference sees the same) */
        for (size_t i = 0; i < (size_t)pos0 * KVH * D; i++) {
            Kall[i] = moecl_f16_to_f32(moecl_f32_to_f16(Kall[i]));
            Vall[i] = moecl_f16_to_f32(moecl_f32_to_f16(Vall[i]));
        }
    }
    for (int j = (pos0 > cap ? pos0 - cap : 0); j < pos0; j++) {
        size_t slot = (size_t)(j % cap) * KVH * D, from = (size_t)j * KVH * D;
        if (g_attn_f16) {
            for (size_t i = 0; i < (size_t)KVH * D; i++) {
                hk[slot + i] = moecl_f32_to_f16(Kall[from + i]);
                hv[slot + i] = moecl_f32_to_f16(Vall[from + i]);
            }
        } else {
            memcpy(ring_k + slot, Kall + from, KVH * D * 4);
            memcpy(ring_v + slot, Vall + from, KVH * D * 4);
        }
    }
    cl_mem qm = mk(e, Q, (size_t)n * H * D * 4);
    cl_mem kn = mk(e, Kall + (size_t)pos0 * KVH * D, (size_t)n * KVH * D * 4);
    cl_mem vn = mk(e, Vall + (size_t)pos0 * KVH * D, (size_t)n * KVH * D * 4);
    cl_mem kr = g_attn_f16 ? mk(e, hk, (size_t)cap * KVH * D * 2)
                           : mk(e, ring_k, (size_t)cap * KVH * D * 4);
    cl_mem vr = g_attn_f16 ? mk(e, hv, (size_t)cap * KVH * D * 2)
                           : mk(e, ring_v, (size_t)cap * KVH * D * 4);
    cl_mem sm = mk(e, sinks, sizeof sinks), om = mk(e, NULL, (size_t)n * H * D * 4);
    struct moecl_attn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = (uint32_t)n;
    a.pos0 = (uint32_t)pos0;
    a.n_heads = (uint32_t)H;
    a.n_kv_heads = (uint32_t)KVH;
    a.head_dim = (uint32_t)D;
    a.window = (uint32_t)win;
    a.cache_cap = (uint32_t)cap;
    a.sinks_dt = MOECL_DT_F32;
    a.scale = 0.25f;
    a.key_shift = g_attn_shift;
    a.kv_f16 = g_attn_f16;
    int bad = -1;
    float *out = malloc((size_t)n * H * D * 4);
    if (moecl_launch_attn(e->q, &e->k, qm, kn, vn, kr, vr, sm, &a, om) == MOECL_OK) {
        rd(e, om, out, (size_t)n * H * D * 4);
        if (g_attn_out)
            memcpy(g_attn_out, out, (size_t)n * H * D * 4);
        bad = 0;
        /* a per-head copy of the history for the reference */
        float *Kh = malloc((size_t)total * D * 4), *Vh = malloc((size_t)total * D * 4);
        for (int h = 0; h < H; h++) {
            int kvh = h / (H / KVH);
            for (int j = 0; j < total; j++) {
                memcpy(Kh + (size_t)j * D, Kall + ((size_t)j * KVH + kvh) * D, D * 4);
                memcpy(Vh + (size_t)j * D, Vall + ((size_t)j * KVH + kvh) * D, D * 4);
            }
            for (int t = 0; t < n; t++) {
                int p = pos0 + t, lo = win && p + 1 > win ? p + 1 - win : 0;
                double ref[64];
                ref_attn(Q + ((size_t)t * H + h) * D, Kh, Vh, sinks[h], lo, p, D, 0.25, ref);
                for (int d = 0; d < D; d++)
                    bad += !near(out[((size_t)t * H + h) * D + d], ref[d]);
            }
        }
        free(Kh);
        free(Vh);
    }
    cl_mem all[] = {qm, kn, vn, kr, vr, sm, om};
    for (int i = 0; i < 7; i++)
        clReleaseMemObject(all[i]);
    free(Kall);
    free(Vall);
    free(Q);
    free(ring_k);
    free(ring_v);
    free(hk);
    free(hv);
    free(out);
    return bad;
}

TEST(kernel_attention_sliding_window_boundary) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    /* window 8, ring of 8: chunk of 7 at positions 5..11 crosses the window edge (keys from
     * the ring wrap around); a chunk longer than the window; decode right at the edge */
    CHECK_EQ(attn_case(&e, 5, 7, 8, 8, 1), 0);
    CHECK_EQ(attn_case(&e, 13, 20, 8, 8, 2), 0);
    CHECK_EQ(attn_case(&e, 8, 1, 8, 8, 3), 0);
    CHECK_EQ(attn_case(&e, 0, 11, 8, 8, 4), 0);
    /* full attention: ring holds the whole context */
    CHECK_EQ(attn_case(&e, 30, 5, 64, 0, 5), 0);
    CHECK_EQ(attn_case(&e, 0, 1, 64, 0, 6), 0);
    kenv_close(&e);
}

/* The GPU work-group attention (forced with $MOECL_FAST_LANES=1) within the reference bound
 * and bit-identical to the work-item-per-head kernel: window edges, a ring that wraps, full
 * attention over more keys than one local block (1024), so the scores are recomputed per pass. */
TEST(kernel_attention_work_group_same_bits) {
    static const int cases[][4] = {{5, 7, 8, 8},       {13, 20, 8, 8},      {8, 1, 8, 8},
                                   {30, 5, 64, 0},     {0, 1, 64, 0},       {1500, 3, 2048, 0},
                                   {1020, 8, 2048, 0}, {2000, 2, 128, 128}, {1024, 1, 2048, 0},
                                   {1023, 1, 2048, 0}, {1100, 1, 2048, 0},  {1030, 1, 2048, 0},
                                   {1060, 1, 2048, 0}};
    struct kenv e1, e2;
    REQUIRE(kenv_open(&e1, MOECL_ACT_F32, NULL, 0) == 0);
    setenv("MOECL_FAST_LANES", "1", 1);
    int opened = kenv_open(&e2, MOECL_ACT_F32, NULL, 0);
    unsetenv("MOECL_FAST_LANES");
    REQUIRE(opened == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t nf = (size_t)cases[i][1] * 4 * 16;
        float *o1 = calloc(nf, 4), *o2 = calloc(nf, 4);
        g_attn_out = o1;
        int b1 = attn_case(&e1, cases[i][0], cases[i][1], cases[i][2], cases[i][3], 60 + i);
        g_attn_out = o2;
        int b2 = attn_case(&e2, cases[i][0], cases[i][1], cases[i][2], cases[i][3], 60 + i);
        g_attn_out = NULL;
        if (b1 != 0 || b2 != 0 || memcmp(o1, o2, nf * 4) != 0)
            moecl_test_fail(__FILE__, __LINE__,
                            "case %zu (pos0 %d, %d tokens): bad %d / %d, bits %s", i, cases[i][0],
                            cases[i][1], b1, b2, memcmp(o1, o2, nf * 4) ? "differ" : "same");
        free(o1);
        free(o2);
    }
    kenv_close(&e1);
    kenv_close(&e2);
}

/* key_shift (mlx-lm's rotated window in single-token decode) in both attention kernels: the
 * output with key_shift s is bit-identical to the output with time order on a history whose
 * window was rotated by s (the same keys added in the same order), it is within the reference
 * bound, and it differs in some bit from time order on the original history (the order is
 * real: float sums are not associative). Cases: a full window of 8 that wrapped the ring, a
 * window of 128, a window of 1100 (over the work-group kernel's 1024-key block). */
TEST(kernel_attention_key_shift_is_a_rotation) {
    static const int cases[][5] = {/* pos0, cap, window, shift */
                                   {13, 8, 8, 5},
                                   {8, 8, 8, 1},
                                   {300, 128, 128, 77},
                                   {1500, 2048, 1100, 1000}};
    for (int lanes1 = 0; lanes1 < 2; lanes1++) {
        struct kenv e;
        if (lanes1)
            setenv("MOECL_FAST_LANES", "1", 1);
        int opened = kenv_open(&e, MOECL_ACT_F32, NULL, 0);
        unsetenv("MOECL_FAST_LANES");
        REQUIRE(opened == 0);
        int order_matters = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            size_t nf = 4 * 16;
            float o_shift[64] = {0}, o_rot[64] = {0}, o_time[64] = {0};
            int pos0 = cases[i][0], cap = cases[i][1], win = cases[i][2];
            g_attn_shift = (uint32_t)cases[i][3];
            g_attn_out = o_shift;
            int b1 = attn_case(&e, pos0, 1, cap, win, 90 + i);
            g_attn_shift = 0;
            g_attn_rotate = (uint32_t)cases[i][3];
            g_attn_out = o_rot;
            int b2 = attn_case(&e, pos0, 1, cap, win, 90 + i);
            g_attn_rotate = 0;
            g_attn_out = o_time;
            int b3 = attn_case(&e, pos0, 1, cap, win, 90 + i);
            g_attn_out = NULL;
            if (b1 || b2 || b3 || memcmp(o_shift, o_rot, nf * 4) != 0)
                moecl_test_fail(__FILE__, __LINE__,
                                "%s kernel, case %zu: bad %d/%d/%d, shifted vs rotated bits %s",
                                lanes1 ? "work-group" : "work-item", i, b1, b2, b3,
                                memcmp(o_shift, o_rot, nf * 4) ? "differ" : "same");
            order_matters += memcmp(o_shift, o_time, nf * 4) != 0;
        }
        CHECK(order_matters > 0);
        kenv_close(&e);
    }
}

/* The fast-numerics attention, one pass with a running max, within the reference bound on the
 * window edge, wrapped-ring, decode and full-attention cases: on CPUs attn_fast_f32 (vectors
 * along the head dimension; head_dim 16 is one vector), on GPUs attn_fast_wg_f32 (a work-group
 * of 256 per (head, token), blocks of 256 keys: the 1500-position case takes several). */
static void attention_fast_cases(const char *lanes) {
    struct kenv e;
    struct kenv_lanes old = kenv_lanes_set(lanes);
    setenv("MOECL_FAST_ATTENTION", "1", 1);
    int opened = kenv_open_numerics(&e, MOECL_ACT_F32, 1, NULL, 0);
    unsetenv("MOECL_FAST_ATTENTION");
    kenv_lanes_restore(&old);
    REQUIRE(opened == 0);
    /* pos0, tokens, ring slots, window, head_dim; from 17 tokens on GPUs the key-tiled kernel
     * (attn_fast_tile_f32): blocks of 32 queries, a ring that wraps under a window, tiles
     * cut by the window and by the last query, head_dim 16 and 64 */
    static const int cases[][5] = {
        {5, 7, 8, 8, 16},    {13, 20, 8, 8, 16},    {8, 1, 8, 8, 16},       {0, 11, 8, 8, 16},
        {30, 5, 64, 0, 16},  {0, 1, 64, 0, 16},     {300, 1, 128, 128, 16}, {1500, 3, 2048, 0, 16},
        {0, 70, 128, 0, 64}, {200, 45, 64, 64, 64}, {30, 33, 128, 0, 16},   {100, 40, 64, 50, 64},
        {0, 17, 32, 0, 32}};
    int tile_differs = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g_attn_f16 = i % 2; /* every other case on a half ring */
        g_attn_d = cases[i][4];
        size_t nf = (size_t)cases[i][1] * 4 * (size_t)g_attn_d;
        float *o1 = calloc(nf, 4), *o2 = calloc(nf, 4);
        g_attn_out = o1;
        int bad = attn_case(&e, cases[i][0], cases[i][1], cases[i][2], cases[i][3], 120 + i);
        if (e.k.lanes == 1 && cases[i][1] > 16) {
            /* the same case through the per-query work-groups: some bits differ where the
             * tiled kernel ran (its sums run in another order) */
            e.k.attn_tile = 0;
            g_attn_out = o2;
            bad += attn_case(&e, cases[i][0], cases[i][1], cases[i][2], cases[i][3], 120 + i);
            e.k.attn_tile = 1;
            tile_differs += memcmp(o1, o2, nf * 4) != 0;
        }
        g_attn_out = NULL;
        g_attn_f16 = 0;
        g_attn_d = 16;
        free(o1);
        free(o2);
        if (bad)
            moecl_test_fail(__FILE__, __LINE__, "%s: case %zu (pos0 %d, %d tokens): %d bad",
                            e.k.lanes == 1 ? "work-group" : "vector", i, cases[i][0], cases[i][1],
                            bad);
    }
    if (e.k.lanes == 1)
        CHECK(tile_differs > 0);
    kenv_close(&e);
}

TEST(kernel_attention_fast) {
    attention_fast_cases(NULL); /* the test device's own */
    attention_fast_cases("1");  /* the GPU decomposition */
}

/* Work-item per token (CPUs) or per element (GPUs, forced with lanes "1"), float or half ring. */
static void kv_append_case(const char *lanes, int f16) {
    struct kenv e;
    struct kenv_lanes old = kenv_lanes_set(lanes);
    int opened = kenv_open(&e, MOECL_ACT_F32, NULL, 0);
    kenv_lanes_restore(&old);
    REQUIRE(opened == 0);
    int n = 11, cap = 4, W = 3, pos0 = 6;
    float kn[33], vn[33], kr[12], vr[12];
    uint16_t hk[12], hv[12];
    for (int i = 0; i < n * W; i++) {
        kn[i] = (float)i;
        vn[i] = -(float)i;
    }
    for (int i = 0; i < cap * W; i++) {
        kr[i] = vr[i] = 999.0f;
        hk[i] = hv[i] = moecl_f32_to_f16(999.0f);
    }
    cl_mem a = mk(&e, kn, sizeof kn), b = mk(&e, vn, sizeof vn);
    cl_mem c = f16 ? mk(&e, hk, sizeof hk) : mk(&e, kr, sizeof kr);
    cl_mem d = f16 ? mk(&e, hv, sizeof hv) : mk(&e, vr, sizeof vr);
    REQUIRE(moecl_launch_kv_append(e.q, &e.k, a, b, c, d, (uint32_t)n, (uint32_t)pos0,
                                   (uint32_t)cap, (uint32_t)W, f16) == MOECL_OK);
    if (f16) {
        rd(&e, c, hk, sizeof hk);
        rd(&e, d, hv, sizeof hv);
        for (int i = 0; i < cap * W; i++) {
            kr[i] = moecl_f16_to_f32(hk[i]);
            vr[i] = moecl_f16_to_f32(hv[i]);
        }
    } else {
        rd(&e, c, kr, sizeof kr);
        rd(&e, d, vr, sizeof vr);
    }
    /* the last 4 tokens (positions 13..16) land in slots 13%4.. */
    for (int t = n - cap; t < n; t++) {
        int slot = (pos0 + t) % cap;
        for (int i = 0; i < W; i++) {
            CHECK_EQ((int)kr[slot * W + i], t * W + i);
            CHECK_EQ((int)vr[slot * W + i], -(t * W + i));
        }
    }
    cl_mem all[] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        clReleaseMemObject(all[i]);
    kenv_close(&e);
}

TEST(kernel_kv_append_ring) {
    for (int f16 = 0; f16 < 2; f16++) {
        kv_append_case(NULL, f16);
        kv_append_case("1", f16);
    }
}

/* ------------------------------------------------------------------ moe */

TEST(kernel_router_topk_softmax_and_ties) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    float l[2][8] = {{0.1f, 3.0f, -1.0f, 2.0f, 2.5f, 0.0f, 1.0f, -2.0f},
                     {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.5f, 1.0f, 0.0f}};
    cl_mem lm = mk(&e, l, sizeof l), im = mk(&e, NULL, 32), wm = mk(&e, NULL, 32);
    REQUIRE(moecl_launch_router_topk(e.q, &e.k, lm, im, wm, 2, 8, 4) == MOECL_OK);
    int32_t ids[8];
    float w[8];
    rd(&e, im, ids, sizeof ids);
    rd(&e, wm, w, sizeof w);
    /* token 0: 1 (3.0), 4 (2.5), 3 (2.0), 6 (1.0), in the order MLX's CPU argpartition (libstdc++
     * nth_element) leaves them, which is the order the softmax sums in: 6, 3, 4, 1 */
    CHECK_EQ(ids[0], 6);
    CHECK_EQ(ids[1], 3);
    CHECK_EQ(ids[2], 4);
    CHECK_EQ(ids[3], 1);
    double z = exp(3.0) + exp(2.5) + exp(2.0) + exp(1.0);
    CHECK(near(w[3], exp(3.0) / z) && near(w[2], exp(2.5) / z));
    CHECK(near(w[1], exp(2.0) / z) && near(w[0], exp(1.0) / z));
    /* token 1: five equal logits; MLX's argpartition keeps the higher indices, as 2, 3, 6, 4 */
    CHECK_EQ(ids[4], 2);
    CHECK_EQ(ids[5], 3);
    CHECK_EQ(ids[6], 6);
    CHECK_EQ(ids[7], 4);
    CHECK(near(w[4], 0.25) && near(w[7], 0.25));
    clReleaseMemObject(lm);
    clReleaseMemObject(im);
    clReleaseMemObject(wm);
    /* The order mx.argpartition(l, -4) gives (mlx 0.32.4, CPU): 32 and 128 experts with logits
     * ((37 i) mod E) / 4 - 3; 32 experts in an order built (McIlroy's adversary) to drive
     * libstdc++'s introselect past its depth limit into __heap_select */
    static const int adv[32] = {25, 1, 17, 3, 22, 5,  19, 7,  27, 9,  26, 11, 28, 13, 24, 15,
                                0,  2, 4,  6, 8,  10, 12, 14, 16, 18, 23, 20, 21, 29, 30, 31};
    static const int n_ord[] = {32, 128, 32},
                     want[3][4] = {{12, 6, 19, 25}, {76, 121, 83, 38}, {12, 29, 30, 31}};
    for (int c = 0; c < 3; c++) {
        int E = n_ord[c];
        float lg[128];
        for (int i = 0; i < E; i++)
            lg[i] = c == 2 ? (float)adv[i] : (float)((i * 37) % E) * 0.25f - 3.0f;
        cl_mem l2 = mk(&e, lg, (size_t)E * 4), i2 = mk(&e, NULL, 16), w2 = mk(&e, NULL, 16);
        REQUIRE(moecl_launch_router_topk(e.q, &e.k, l2, i2, w2, 1, (uint32_t)E, 4) == MOECL_OK);
        int32_t got[4];
        rd(&e, i2, got, sizeof got);
        for (int s2 = 0; s2 < 4; s2++)
            CHECK_EQ(got[s2], want[c][s2]);
        clReleaseMemObject(l2);
        clReleaseMemObject(i2);
        clReleaseMemObject(w2);
    }
    /* 32, 64, 128 and 300 experts (300: past ROUTER_ORDER_MAX, largest first), logits with
     * many ties, against the same rule in C: the k largest, the higher index among equals, as a
     * set (each weight with its expert's logit) */
    static const int n_exp[] = {32, 64, 128, 300};
    for (int c = 0; c < 4; c++) {
        enum { T = 5, K = 4 };
        int E = n_exp[c];
        float lg[T * 300];
        uint64_t st = 40 + (uint64_t)c;
        for (int i = 0; i < T * E; i++)
            lg[i] = (float)(moecl_test_rand(&st) % 6) * 0.5f;
        cl_mem l2 = mk(&e, lg, (size_t)T * E * 4), i2 = mk(&e, NULL, T * K * 4),
               w2 = mk(&e, NULL, T * K * 4);
        REQUIRE(moecl_launch_router_topk(e.q, &e.k, l2, i2, w2, T, (uint32_t)E, K) == MOECL_OK);
        int32_t got[T * K];
        float gw[T * K];
        rd(&e, i2, got, sizeof got);
        rd(&e, w2, gw, sizeof gw);
        int bad = 0;
        for (int t = 0; t < T; t++) {
            int taken[300] = {0};
            double zt = 0.0, mt = -1e30;
            for (int s2 = 0; s2 < K; s2++) {
                int best = -1;
                for (int x = 0; x < E; x++)
                    if (!taken[x] && (best < 0 || lg[t * E + x] >= lg[t * E + best]))
                        best = x;
                if (best >= 0)
                    taken[best] = 1;
                if (lg[t * E + best] > mt)
                    mt = lg[t * E + best];
            }
            for (int x = 0; x < E; x++)
                if (taken[x])
                    zt += exp(lg[t * E + x] - mt);
            for (int s2 = 0; s2 < K; s2++) {
                int id = got[t * K + s2];
                bad += id < 0 || id >= E || !taken[id];
                if (id >= 0 && id < E) {
                    taken[id] = 0; /* each once */
                    bad += !near(gw[t * K + s2], exp(lg[t * E + id] - mt) / zt);
                }
            }
            if (E > 128) /* the largest-first order (ROUTER_ORDER_MAX 128) */
                for (int s2 = 1; s2 < K; s2++)
                    bad += lg[t * E + got[t * K + s2]] > lg[t * E + got[t * K + s2 - 1]];
        }
        if (bad)
            moecl_test_fail(__FILE__, __LINE__, "%d experts: %d choices differ", E, bad);
        clReleaseMemObject(l2);
        clReleaseMemObject(i2);
        clReleaseMemObject(w2);
    }
    kenv_close(&e);
}

TEST(kernel_swiglu_clamps) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    enum { N = 200 };
    float g[N], u[N], out[N];
    uint64_t st = 9;
    for (int i = 0; i < N; i++) {
        g[i] = moecl_test_randf(&st) * 12.0f; /* beyond the +-7 limit both ways */
        u[i] = moecl_test_randf(&st) * 12.0f;
    }
    cl_mem gm = mk(&e, g, sizeof g), um = mk(&e, u, sizeof u);
    REQUIRE(moecl_launch_swiglu(e.q, &e.k, gm, um, N, 1.702f, 7.0f) == MOECL_OK);
    rd(&e, gm, out, sizeof out);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double gc = g[i] < 7.0 ? g[i] : 7.0;
        double uc = u[i] < -7.0 ? -7.0 : u[i] > 7.0 ? 7.0 : u[i];
        double ref = gc / (1.0 + exp(-1.702f * gc)) * (uc + 1.0);
        bad += !near(out[i], ref);
    }
    CHECK_EQ(bad, 0);
    clReleaseMemObject(gm);
    clReleaseMemObject(um);
    kenv_close(&e);
}

TEST(kernel_moe_combine_residual) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0);
    int T = 3, K = 4, H = 130;
    uint64_t st = 10;
    float *x = randv((size_t)T * H, &st, 1.0f), *y = randv((size_t)T * K * H, &st, 1.0f);
    float *w = randv((size_t)T * K, &st, 1.0f), *out = malloc((size_t)T * H * 4);
    cl_mem xm = mk(&e, x, (size_t)T * H * 4), ym = mk(&e, y, (size_t)T * K * H * 4),
           wm = mk(&e, w, (size_t)T * K * 4);
    REQUIRE(moecl_launch_moe_combine(e.q, &e.k, xm, ym, wm, (uint32_t)T, (uint32_t)H,
                                     (uint32_t)K) == MOECL_OK);
    rd(&e, xm, out, (size_t)T * H * 4);
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < H; c++) {
            double s = x[t * H + c];
            for (int k = 0; k < K; k++)
                s += (double)w[t * K + k] * y[((size_t)t * K + k) * H + c];
            bad += !near(out[t * H + c], s);
        }
    CHECK_EQ(bad, 0);
    clReleaseMemObject(xm);
    clReleaseMemObject(ym);
    clReleaseMemObject(wm);
    free(x);
    free(y);
    free(w);
    free(out);
    kenv_close(&e);
}

/* ------------------------------------------------------------------ embedding, bf16 rounding */

/* Embedding rows of a 3-bit g32 table (straddling codes), rows 0, last, and a middle one,
 * with a bf16 activation dtype: every value is round(round(s*q) + b), exactly. */
TEST(kernel_embed_affine3_bf16) {
    struct moecl_qformat f = {MOECL_QMODE_AFFINE, 3, 32, MOECL_DTYPE_BF16};
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_BF16, &f, 1) == 0);
    int V = 5, C = 64, G = C / 32;
    size_t row = (size_t)C * 3 / 8;
    uint8_t w[5 * 24];
    uint16_t s[5 * 2], b[5 * 2];
    uint64_t st = 11;
    for (size_t i = 0; i < sizeof w; i++)
        w[i] = (uint8_t)moecl_test_rand(&st);
    for (int i = 0; i < V * G; i++) {
        float sf = moecl_test_randf(&st) * 0.3f, bf = moecl_test_randf(&st);
        uint32_t us, ub;
        memcpy(&us, &sf, 4);
        memcpy(&ub, &bf, 4);
        s[i] = (uint16_t)(us >> 16);
        b[i] = (uint16_t)(ub >> 16);
    }
    struct moecl_qweight qw;
    memset(&qw, 0, sizeof qw);
    qw.name = "embed";
    qw.mode = MOECL_QMODE_AFFINE;
    qw.bits = 3;
    qw.group_size = 32;
    qw.float_dtype = MOECL_DTYPE_BF16;
    qw.rows = V;
    qw.cols = C;
    qw.weight_row_stride = row;
    qw.scales_row_stride = qw.biases_row_stride = (size_t)G * 2;
    struct moecl_dev_qweight dw;
    memset(&dw, 0, sizeof dw);
    dw.w = &qw;
    dw.wmem = mk(&e, w, sizeof w);
    dw.smem = mk(&e, s, sizeof s);
    dw.bmem = mk(&e, b, sizeof b);
    dw.biasmem = dw.wmem;
    int32_t toks[3] = {0, 4, 2};
    cl_mem tm = mk(&e, toks, sizeof toks), ym = mk(&e, NULL, 3 * (size_t)C * 4);
    REQUIRE(moecl_launch_embed(e.q, &e.k, &dw, tm, 3, ym) == MOECL_OK);
    float y[3 * 64];
    rd(&e, ym, y, sizeof y);
    int bad = 0;
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < C; c++) {
            const uint8_t *B = w + (size_t)toks[t] * row + (size_t)(c / 8) * 3;
            unsigned v3[8] = {B[0] & 7u,        (B[0] >> 3) & 7u, (B[0] >> 6) | ((B[1] & 1u) << 2),
                              (B[1] >> 1) & 7u, (B[1] >> 4) & 7u, (B[1] >> 7) | ((B[2] & 3u) << 1),
                              (B[2] >> 2) & 7u, B[2] >> 5};
            uint32_t us = (uint32_t)s[toks[t] * G + c / 32] << 16,
                     ub = (uint32_t)b[toks[t] * G + c / 32] << 16;
            float sf, bf;
            memcpy(&sf, &us, 4);
            memcpy(&bf, &ub, 4);
            /* round-to-nearest-even to bf16, twice, as the kernel must */
            float p = sf * (float)v3[c % 8];
            uint32_t u;
            memcpy(&u, &p, 4);
            u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            memcpy(&p, &u, 4);
            float r = p + bf;
            memcpy(&u, &r, 4);
            u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            memcpy(&r, &u, 4);
            bad += y[t * C + c] != r;
        }
    CHECK_EQ(bad, 0);
    clReleaseMemObject(dw.wmem);
    clReleaseMemObject(dw.smem);
    clReleaseMemObject(dw.bmem);
    clReleaseMemObject(tm);
    clReleaseMemObject(ym);
    kenv_close(&e);
}

/* The residual add in a bf16 program: round-to-nearest-even on the float bits, ties to even. */
TEST(kernel_bf16_rounding_ties_to_even) {
    struct kenv e;
    REQUIRE(kenv_open(&e, MOECL_ACT_BF16, NULL, 0) == 0);
    /* 1 + 2^-8 is halfway between bf16 1 and 1+2^-7: ties to even -> 1.0;
     * 1 + 3*2^-8 is halfway between 1+2^-7 and 1+2^-6: ties to even -> 1+2^-6 */
    float x[4] = {1.0f, 1.0f, 1.0f, -1.0f};
    float y[4] = {0.00390625f, 0.01171875f, 0.005f, -0.005f};
    cl_mem xm = mk(&e, x, sizeof x), ym = mk(&e, y, sizeof y);
    REQUIRE(moecl_launch_add(e.q, &e.k, xm, ym, 4) == MOECL_OK);
    rd(&e, xm, x, sizeof x);
    CHECK(x[0] == 1.0f);
    CHECK(x[1] == 1.015625f);
    CHECK(x[2] == 1.0078125f);
    CHECK(x[3] == -1.0078125f);
    clReleaseMemObject(xm);
    clReleaseMemObject(ym);
    kenv_close(&e);
}

/* The GPU work decomposition of RoPE (a work-item per pair), SwiGLU, the expert combine and the
 * residual add (per element), forced on PoCL with $MOECL_FAST_LANES=1, gives the CPU
 * decomposition's bits: 3 tokens, 5 heads of 64 with YaRN's mscale, 2 experts per token over 2880
 * columns. */
TEST(kernel_elementwise_gpu_decomposition_same_bits) {
    uint64_t st = 9;
    int T = 3, H = 5, D = 64, N = 2880, K = 2;
    size_t nr = (size_t)T * H * D, ns = (size_t)T * K * N, nc = (size_t)T * N;
    float *rx = randv(nr, &st, 2.0f), *g = randv(ns, &st, 9.0f), *u = randv(ns, &st, 9.0f);
    float *cx = randv(nc, &st, 1.0f), *cw = randv((size_t)T * K, &st, 1.0f);
    float inv[32];
    for (int i = 0; i < 32; i++)
        inv[i] = (float)pow(150000.0, -(double)i / 32.0);
    float *out[2][3];
    for (int v = 0; v < 2; v++) {
        if (v)
            setenv("MOECL_FAST_LANES", "1", 1);
        struct kenv e;
        int opened = kenv_open(&e, MOECL_ACT_F32, NULL, 0);
        unsetenv("MOECL_FAST_LANES");
        REQUIRE(opened == 0);
        cl_mem xm = mk(&e, rx, nr * 4), fm = mk(&e, inv, sizeof inv), gm = mk(&e, g, ns * 4),
               um = mk(&e, u, ns * 4), cm = mk(&e, cx, nc * 4), wm = mk(&e, cw, (size_t)T * K * 4);
        CHECK(moecl_launch_rope(e.q, &e.k, xm, fm, (uint32_t)T, (uint32_t)H, (uint32_t)D,
                                (uint32_t)(H * D), 4090, 1.3466f) == MOECL_OK);
        CHECK(moecl_launch_swiglu(e.q, &e.k, gm, um, (uint32_t)ns, 1.702f, 7.0f) == MOECL_OK);
        CHECK(moecl_launch_moe_combine(e.q, &e.k, cm, gm, wm, (uint32_t)T, (uint32_t)N,
                                       (uint32_t)K) == MOECL_OK);
        CHECK(moecl_launch_add(e.q, &e.k, cm, um, (uint32_t)nc) == MOECL_OK);
        out[v][0] = malloc(nr * 4);
        out[v][1] = malloc(ns * 4);
        out[v][2] = malloc(nc * 4);
        rd(&e, xm, out[v][0], nr * 4);
        rd(&e, gm, out[v][1], ns * 4);
        rd(&e, cm, out[v][2], nc * 4);
        cl_mem all[] = {xm, fm, gm, um, cm, wm};
        for (int i = 0; i < 6; i++)
            clReleaseMemObject(all[i]);
        kenv_close(&e);
    }
    CHECK(memcmp(out[0][0], rx, nr * 4) != 0); /* the kernels ran */
    CHECK(memcmp(out[0][0], out[1][0], nr * 4) == 0);
    CHECK(memcmp(out[0][1], out[1][1], ns * 4) == 0);
    CHECK(memcmp(out[0][2], out[1][2], nc * 4) == 0);
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < 3; i++)
            free(out[v][i]);
    free(rx);
    free(g);
    free(u);
    free(cx);
    free(cw);
}
