/* Forward-pass kernels against double-precision references written here, independently of the
 * kernels (the quantized decodes follow spec §3 byte by byte), on seeded inputs.
 *
 * Kernels run with -DACT=F32 (no activation rounding) unless a test says otherwise, so the only
 * difference from the double reference is float32 arithmetic: a dot product of n terms is
 * within n * 2^-24 * sum|x_i w_i| of the exact value (standard summation bound); tests use
 * 4 * n * 2^-24 * sum|x_i w_i| + 1e-30, i.e. the bound with margin for the per-group partial sums.
 * Elementwise kernels (norm, rope, swiglu, softmax) are within a few float32 ulps: 1e-5
 * relative. Matrix-product tests cover every affine width (3, 5 and 6 bits straddle bytes),
 * every group size, the fp formats with E8M0 extremes, float weights with a partial 32-chunk,
 * one row, several tokens (partial tile of 4), and per-expert addressing from device ids. */
#include "test.h"

#include "kernel_env.h"

#include <stdlib.h>
#include <string.h>

static cl_mem buf_in(struct kenv *e, const void *p, size_t n) {
    cl_int err;
    return clCreateBuffer(e->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n ? n : 4,
                          (void *)(uintptr_t)p, &err);
}

static cl_mem buf_out(struct kenv *e, size_t n) {
    cl_int err;
    return clCreateBuffer(e->ctx, CL_MEM_READ_WRITE, n ? n : 4, NULL, &err);
}

static int read_back(struct kenv *e, cl_mem m, void *p, size_t n) {
    return clEnqueueReadBuffer(e->q, m, CL_TRUE, 0, n, p, 0, NULL, NULL) == CL_SUCCESS ? 0 : -1;
}

/* ------------------------------------------------------------------ host references */

static uint16_t f32_to_bf16_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static double bf16_val(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of an affine row, decoded from the byte stream as spec §3.2 spells it. */
static unsigned affine_code(const uint8_t *row, int bits, int i) {
    if (bits == 2 || bits == 4 || bits == 8) {
        int per = 8 / bits;
        return (row[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
    }
    if (bits == 3) {
        const uint8_t *B = row + (i / 8) * 3;
        switch (i % 8) {
        case 0:
            return B[0] & 7;
        case 1:
            return (B[0] >> 3) & 7;
        case 2:
            return (B[0] >> 6) | ((B[1] & 1) << 2);
        case 3:
            return (B[1] >> 1) & 7;
        case 4:
            return (B[1] >> 4) & 7;
        case 5:
            return (B[1] >> 7) | ((B[2] & 3) << 1);
        case 6:
            return (B[2] >> 2) & 7;
        default:
            return B[2] >> 5;
        }
    }
    if (bits == 6) {
        const uint8_t *B = row + (i / 4) * 3;
        switch (i % 4) {
        case 0:
            return B[0] & 63;
        case 1:
            return (B[0] >> 6) | ((B[1] & 15) << 2);
        case 2:
            return (B[1] >> 4) | ((B[2] & 3) << 4);
        default:
            return B[2] >> 2;
        }
    }
    /* 5 bits */
    const uint8_t *B = row + (i / 8) * 5;
    switch (i % 8) {
    case 0:
        return B[0] & 31;
    case 1:
        return (B[0] >> 5) | ((B[1] & 3) << 3);
    case 2:
        return (B[1] >> 2) & 31;
    case 3:
        return (B[1] >> 7) | ((B[2] & 15) << 1);
    case 4:
        return (B[2] >> 4) | ((B[3] & 1) << 4);
    case 5:
        return (B[3] >> 1) & 31;
    case 6:
        return (B[3] >> 6) | ((B[4] & 7) << 2);
    default:
        return B[4] >> 3;
    }
}

static double e2m1(unsigned c) {
    static const double t[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
    return (c & 8) ? -t[c & 7] : t[c & 7];
}

static double e4m3(unsigned b) {
    unsigned e = (b >> 3) & 15, m = b & 7;
    double v = e == 0                ? ldexp(m / 8.0, -6)
               : (e == 15 && m == 7) ? NAN
                                     : ldexp(1 + m / 8.0, (int)e - 7);
    return (b & 0x80) ? -v : v;
}

static double e8m0(unsigned s) {
    return ldexp(1.0, (int)s - 127);
}

/* ------------------------------------------------------------------ matmul harness */

struct qcase {
    enum moecl_qmode mode;
    int bits, group;
    enum moecl_dtype wdt; /* float weight dtype / scales dtype */
    int rows, cols, n_experts, n_vec, x_div;
    int with_ids, with_bias;
};

/* Weight element (double) of expert e, row r, column c of the case's buffers. */
struct qdata {
    uint8_t *w, *s, *b;
    uint16_t *bias;
    size_t w_row, s_row, w_exp, s_exp;
};

static double ref_weight(const struct qcase *qc, const struct qdata *d, int e, int r, int c) {
    const uint8_t *wrow = d->w + (size_t)e * d->w_exp + (size_t)r * d->w_row;
    const uint8_t *srow = d->s + (size_t)e * d->s_exp + (size_t)r * d->s_row;
    const uint8_t *brow = d->b + (size_t)e * d->s_exp + (size_t)r * d->s_row;
    int g = qc->group ? c / qc->group : 0;
    switch (qc->mode) {
    case MOECL_QMODE_AFFINE:
        return bf16_val(((const uint16_t *)srow)[g]) * affine_code(wrow, qc->bits, c) +
               bf16_val(((const uint16_t *)brow)[g]);
    case MOECL_QMODE_MXFP4:
        return e2m1((wrow[c / 2] >> ((c % 2) * 4)) & 15) * e8m0(srow[g]);
    case MOECL_QMODE_NVFP4:
        return e2m1((wrow[c / 2] >> ((c % 2) * 4)) & 15) * e4m3(srow[g]);
    case MOECL_QMODE_MXFP8:
        return e4m3(wrow[c]) * e8m0(srow[g]);
    default:
        if (qc->wdt == MOECL_DTYPE_F32) {
            float f;
            memcpy(&f, wrow + 4 * (size_t)c, 4);
            return f;
        }
        if (qc->wdt == MOECL_DTYPE_BF16)
            return bf16_val(((const uint16_t *)wrow)[c]);
        {
            /* f16 */
            uint16_t h = ((const uint16_t *)wrow)[c];
            int ex = (h >> 10) & 31, m = h & 1023;
            double v = ex == 0 ? ldexp(m, -24) : ldexp(1024 + m, ex - 25);
            return (h & 0x8000) ? -v : v;
        }
    }
}

/* When set, run_qcase also runs the reference-order kernel (exact_matmul) on the same inputs and
 * counts every output whose bits differ from the launched kernel's as bad. */
static int g_compare_exact;

/* Fast numerics (matmul_fm): when g_fm is set, run_qcase builds the programs with it and holds
 * the outputs to the reordered sum's bound (see fm_tolerance); it reports in g_fm_used whether
 * the format had a matmul_fm kernel and in g_fm_differs how many outputs differ in their bits
 * from the default kernel's on the same inputs (so a test can see the fm kernel really ran).
 * g_act: the activation dtype the programs are built for (output rounding). */
static int g_fm, g_fm_used, g_fm_differs;
/* GPU fast numerics: g_fmt_differs counts the outputs whose bits differ between the launcher's
 * choice and the 8-vector tiles forced (matmul_fm instead of the tiled matmul_fmt: different
 * sum orders, so some bits differ where the tiled kernel ran); g_fmt marks a case run through
 * the tiled kernel for the tolerance (one fma chain per output over every column). */
static int g_fmt, g_fmt_differs;
/* GPU decode with 16-byte loads (matmul_fmw): g_wide lays rows and inputs out on 16 bytes (as a
 * model's are), so that the launcher may take it; g_fmw_differs counts the outputs whose bits
 * differ from matmul_fm's on the same inputs ($MOECL_FMW=0). */
static int g_wide, g_fmw_differs;
/* glu_check's (a g_wide case with ids) or add_check's (dense) result; -2: not run */
static int g_glu_diff;
/* q/k/v launches checked with the attention's norm inside (qkv_check, one vector), and with
 * decode's RoPE and KV append inside (rope_check) */
static int g_qkv_norm_runs, g_qkv_rope_runs;
/* dense one-vector cases below 1024 rows checked with the norm inside (norm_check), and the
 * checks that found a difference or failed */
static int g_norm_runs, g_norm_bad;
/* CPU fast numerics with the vectors along the lanes (matmul_fmb): g_fmb_case marks a case the
 * launcher gave it (for the tolerance), g_fmb_runs counts them, g_fmb_differs counts the outputs
 * whose bits differ from the row-along-lanes kernel's on the same inputs ($MOECL_FMB_MIN=0). */
static int g_fmb_case, g_fmb_runs, g_fmb_differs;
static int g_fm_lanes; /* the programs' lanes: 1 = the GPU decomposition (qmatmul_fm_gpu.cl) */
static int g_act = MOECL_ACT_F32;

/* |terms| of element c in the fast-numerics sum: affine sums s*(q*x) and b*x separately (their
 * magnitudes, not |x*w|, bound the rounding error: they cancel when w is small); the fp formats
 * sum s*(e2m1(q)*x). */
static double fm_term_mag(const struct qcase *qc, const struct qdata *d, int e, int r, int c,
                          double xc) {
    if (qc->mode != MOECL_QMODE_AFFINE)
        return fabs(xc * ref_weight(qc, d, e, r, c));
    const uint8_t *wrow = d->w + (size_t)e * d->w_exp + (size_t)r * d->w_row;
    const uint8_t *srow = d->s + (size_t)e * d->s_exp + (size_t)r * d->s_row;
    const uint8_t *brow = d->b + (size_t)e * d->s_exp + (size_t)r * d->s_row;
    int g = c / qc->group;
    return fabs(bf16_val(((const uint16_t *)srow)[g]) * affine_code(wrow, qc->bits, c) * xc) +
           fabs(bf16_val(((const uint16_t *)brow)[g]) * xc);
}

/* The forward-error bound of the fast-numerics row sum: every term passes through at most d
 * roundings of relative size u = 2^-24 (any association of a sum of terms of magnitude M is
 * within d*u*M of the exact value to first order, d the tree's depth). Per lane (LANES words of
 * EPW = 32/bits fields per chunk, nch chunks; counted for 8 lanes, the longer case):
 *   one vector (dot-first): a chain over the EPW fields (EPW), then the group scale's and the
 *   affine b*sum(x) term's fma into the running sum (2 per chunk): 2*EPW + 2*nch + 5;
 *   a tile of vectors (scale-first, two rows at a time): one running sum over every field and
 *   the b term (nch*(EPW+1)), the product s*q (1) and the lane sums of the input permutation
 *   (EPW): nch*(EPW+1) + EPW + 6;
 * each plus the 8- or 16-lane horizontal sum (4) and the q*x product (1). c = 2*d covers the
 * second-order terms. Plus an absolute term for underflow (E8M0 scales down to 2^-127). */
static double fm_tolerance(const struct qcase *qc, double mag) {
    if (g_fm_lanes == 1) {
        /* GPU: each of a row's 32 work-items runs one fma chain over its words (every 32nd
         * word of EPW = 32/bits elements), the 32 chain sums are added in order; plus the
         * weight's rounding (fma(q, s, b), or code * scale with a non-power-of-two nvfp4 scale)
         * and the product's */
        int epw = 32 / qc->bits, per_lane = (qc->cols / epw + 31) / 32;
        double dg = g_fmt ? (double)qc->cols + 2 : (double)per_lane * epw + 32 + 2;
        if (g_wide) {
            /* a chain per 16-byte unit (epv elements) and its fma into the lane's sum, every
             * 32nd unit; the lane sums as a tree (5) */
            int epv = 128 / qc->bits, steps = (qc->cols / epv + 31) / 32;
            dg = (double)steps * (epv + 2) + 5 + 2;
        }
        return 2.0 * dg * ldexp(1.0, -24) * mag + (double)qc->cols * ldexp(1.0, -140);
    }
    int epw = qc->mode == MOECL_QMODE_AFFINE ? 32 / qc->bits
              : qc->mode == MOECL_QMODE_NONE ? 32 / (int)(moecl_dtype_size(qc->wdt) * 8)
                                             : 8;
    int nch = (qc->cols / epw + 7) / 8;
    double d1 = 2.0 * epw + 2.0 * nch + 5, d2 = (double)nch * (epw + 1) + epw + 6;
    double d = d1 > d2 ? d1 : d2;
    if (g_fmb_case) /* one fma chain over the row's elements of dequantized weights fma(q, s, b) */
        d = (double)qc->cols + 7;
    return 2.0 * d * ldexp(1.0, -24) * mag + (double)qc->cols * ldexp(1.0, -140);
}

/* Launches a case's product with e's kernels as they are set and reads the outputs into y;
 * 0 on success. */
static int launch_case(struct kenv *e, const struct qcase *qc, const struct moecl_dev_qweight *dw,
                       cl_mem xm, size_t xs, cl_mem idm, cl_mem ym, size_t ys, float *y) {
    if (moecl_launch_matmul(e->q, &e->k, dw, xm, 0, (uint32_t)xs,
                            qc->with_ids ? (uint32_t)qc->x_div : 1u, qc->with_ids ? idm : NULL, ym,
                            (uint32_t)ys, (uint32_t)qc->n_vec,
                            qc->with_bias ? MOECL_BIAS_FUSED : MOECL_BIAS_NONE) != MOECL_OK)
        return -1;
    return read_back(e, ym, y, (size_t)qc->n_vec * ys * 4);
}

/* Launches a case again with e's kernels as they are now set and counts the outputs whose bits
 * differ from y's (-1 when the launch fails). */
static int relaunch_differs(struct kenv *e, const struct qcase *qc,
                            const struct moecl_dev_qweight *dw, cl_mem xm, size_t xs, cl_mem idm,
                            cl_mem ym, size_t ys, const float *y) {
    float *y2 = calloc((size_t)qc->n_vec * ys, sizeof(float));
    int n = 0;
    if (launch_case(e, qc, dw, xm, xs, idm, ym, ys, y2) != 0) {
        n = -1;
    } else {
        for (int p = 0; p < qc->n_vec; p++)
            for (int r = 0; r < qc->rows; r++) {
                size_t i = (size_t)p * ys + (size_t)r;
                n += memcmp(&y[i], &y2[i], 4) != 0;
            }
    }
    free(y2);
    return n;
}

/* The o-projection's fused residual add (moecl_launch_matmul_add) on a dense one-vector case:
 * into rows of random values, bit for bit the product and moecl_launch_add. Returns the outputs
 * that differ, -1 when not fusable or a launch failed. */
static int add_check(struct kenv *e, const struct qcase *qc, const struct moecl_dev_qweight *dw,
                     cl_mem xm, size_t xs, uint64_t seed) {
    size_t n = (size_t)qc->rows;
    float *r = calloc(n, sizeof(float)), *a = calloc(n, sizeof(float));
    float *b = calloc(n, sizeof(float));
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++)
        r[i] = moecl_test_randf(&st) * 4.0f;
    cl_mem am = buf_in(e, r, n * 4), bm = buf_in(e, r, n * 4), tm = buf_out(e, n * 4);
    int bias = qc->with_bias ? MOECL_BIAS_FUSED : MOECL_BIAS_NONE, diff = -1;
    if (moecl_matmul_add_fusable(&e->k, dw, 0, (uint32_t)xs, 1) &&
        moecl_launch_matmul_add(e->q, &e->k, dw, xm, 0, (uint32_t)xs, am, bias) == MOECL_OK &&
        read_back(e, am, a, n * 4) == 0 &&
        moecl_launch_matmul(e->q, &e->k, dw, xm, 0, (uint32_t)xs, 1, NULL, tm, (uint32_t)n, 1,
                            bias) == MOECL_OK &&
        moecl_launch_add(e->q, &e->k, bm, tm, (uint32_t)n) == MOECL_OK &&
        read_back(e, bm, b, n * 4) == 0) {
        diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += memcmp(&a[i], &b[i], 4) != 0;
    }
    clReleaseMemObject(am);
    clReleaseMemObject(bm);
    clReleaseMemObject(tm);
    free(r);
    free(a);
    free(b);
    return diff;
}

/* Expert i of qw viewed as a dense product of its first `rows` rows (vq, vd: the caller's
 * storage); returns vd. */
static const struct moecl_dev_qweight *expert_as_dense(const struct moecl_qweight *qw,
                                                       const struct moecl_dev_qweight *dw, int i,
                                                       int rows, struct moecl_qweight *vq,
                                                       struct moecl_dev_qweight *vd) {
    *vq = *qw;
    vq->n_experts = 0;
    vq->rows = rows;
    *vd = *dw;
    vd->w = vq;
    vd->w_offset += (size_t)i * qw->weight_expert_stride;
    vd->s_offset += (size_t)i * qw->scales_expert_stride;
    vd->b_offset += (size_t)i * qw->biases_expert_stride;
    vd->bias_offset += (size_t)i * qw->bias_expert_stride;
    return vd;
}

/* The MoE norm inside the router's product (moecl_launch_matmul_norm) on a dense one-vector
 * case: the case's input row as the residual x, a random bf16 norm weight: the products and the
 * normed row bit for bit moecl_launch_rmsnorm and moecl_launch_matmul (matmul_fmv). Returns the
 * values that differ, -1 when not fusable or a launch failed. */
static int norm_check(struct kenv *e, const struct qcase *qc, const struct moecl_dev_qweight *dw,
                      cl_mem xm, size_t xs, uint64_t seed) {
    size_t n = (size_t)qc->cols, R = (size_t)qc->rows;
    uint16_t *nw = calloc(n, sizeof(uint16_t));
    float *a = calloc(n + R, sizeof(float)), *b = calloc(n + R, sizeof(float));
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++)
        nw[i] = f32_to_bf16_rne(1.0f + moecl_test_randf(&st) * 0.5f);
    cl_mem nwm = buf_in(e, nw, n * 2), xna = buf_out(e, xs * 4), xnb = buf_out(e, xs * 4);
    cl_mem ya = buf_out(e, R * 4), yb = buf_out(e, R * 4);
    int bias = qc->with_bias ? MOECL_BIAS_AFTER : MOECL_BIAS_NONE, diff = -1;
    const struct moecl_norm_w nrm = {nwm, 0, MOECL_DT_BF16, 1e-5f};
    if (moecl_matmul_norm_fusable(&e->k, dw, 1) &&
        moecl_launch_matmul_norm(e->q, &e->k, dw, xm, xna, &nrm, ya, bias) == MOECL_OK &&
        moecl_launch_rmsnorm(e->q, &e->k, xm, xnb, nwm, 0, MOECL_DT_BF16, 1, (uint32_t)n, 1e-5f) ==
            MOECL_OK &&
        moecl_launch_matmul(e->q, &e->k, dw, xnb, 0, (uint32_t)xs, 1, NULL, yb, (uint32_t)R, 1,
                            bias) == MOECL_OK &&
        read_back(e, xna, a, n * 4) == 0 && read_back(e, xnb, b, n * 4) == 0 &&
        read_back(e, ya, a + n, R * 4) == 0 && read_back(e, yb, b + n, R * 4) == 0) {
        diff = 0;
        for (size_t i = 0; i < n + R; i++)
            diff += memcmp(&a[i], &b[i], 4) != 0;
        if (diff)
            printf("  matmul with the norm inside: %d values differ\n", diff);
    }
    clReleaseMemObject(nwm);
    clReleaseMemObject(xna);
    clReleaseMemObject(xnb);
    clReleaseMemObject(ya);
    clReleaseMemObject(yb);
    free(nw);
    free(a);
    free(b);
    return diff;
}

/* Decode's q/k/v launch with RoPE and the KV append inside (moecl_launch_qkv_rope) on views of a
 * case's experts 0, 1 and 2 as q (whole heads), k and v (two heads each): bit for bit
 * moecl_launch_qkv, moecl_launch_rope2 and moecl_launch_kv_append launched apart, outputs and
 * both rings (filled alike beforehand, so a missed or misplaced ring store shows). Two variants:
 * head_dim 64, YaRN's mscale, a float ring of 7 slots, the attention's norm inside; head_dim 32,
 * mscale 1, a half ring of 5 slots. Returns the outputs and ring elements that differ, -1 when
 * not fusable or a launch failed. */
static int rope_check(struct kenv *e, const struct qcase *qc, const struct moecl_qweight *qw,
                      const struct moecl_dev_qweight *dw, cl_mem xm, size_t xs) {
    int diff = 0;
    for (int var = 0; var < 2 && diff >= 0; var++) {
        uint32_t hd = var ? 32 : 64, cap = var ? 5 : 7, pos = 4090 + (uint32_t)g_qkv_rope_runs;
        int f16 = var, es = f16 ? 2 : 4;
        float ms = var ? 1.0f : 1.3466f;
        struct moecl_qweight vq[3];
        struct moecl_dev_qweight vd[3];
        const struct moecl_dev_qweight *ws[3];
        cl_mem ya[3], yb[3];
        int modes[3], ok = 1;
        size_t off[4] = {0};
        for (int i = 0; i < 3; i++) {
            ws[i] = expert_as_dense(qw, dw, i, i == 0 ? qw->rows / (int)hd * (int)hd : 2 * (int)hd,
                                    &vq[i], &vd[i]);
            modes[i] = qc->with_bias && i != 1 ? MOECL_BIAS_FUSED : MOECL_BIAS_NONE;
            ya[i] = buf_out(e, (size_t)vq[i].rows * 4);
            yb[i] = buf_out(e, (size_t)vq[i].rows * 4);
            off[i + 1] = off[i] + (size_t)vq[i].rows;
        }
        uint32_t kw = (uint32_t)vq[1].rows;
        size_t ring_n = (size_t)cap * kw, n = (size_t)qw->cols;
        float inv[32];
        for (uint32_t i = 0; i < hd / 2; i++)
            inv[i] = (float)pow(150000.0, -(double)i / (double)(hd / 2)) * (i % 3 ? 1.0f : 0.25f);
        uint64_t st = 5 + pos;
        unsigned char *ring0 = malloc(ring_n * 4);
        for (size_t i = 0; i < ring_n * 4; i++)
            ring0[i] = (unsigned char)(moecl_test_randf(&st) * 100.0f + 100.0f);
        uint16_t *nw = calloc(n, sizeof(uint16_t));
        for (size_t i = 0; i < n; i++)
            nw[i] = f32_to_bf16_rne(1.0f + moecl_test_randf(&st) * 0.5f);
        cl_mem invm = buf_in(e, inv, sizeof inv), nwm = buf_in(e, nw, n * 2);
        cl_mem xnm = buf_out(e, xs * 4);
        cl_mem rings[4]; /* k, v fused; k, v apart */
        for (int i = 0; i < 4; i++)
            rings[i] = buf_in(e, ring0, ring_n * (size_t)es);
        const struct moecl_norm_w nrm = {nwm, 0, MOECL_DT_BF16, 1e-5f};
        int norm = !var && moecl_qkv_norm_fusable(&e->k, ws, 0, (uint32_t)xs, 1);
        const struct moecl_qkv_rope rp = {invm, hd, pos, ms, rings[0], rings[1], cap, f16};
        ok = moecl_qkv_rope_fusable(&e->k, ws, 0, (uint32_t)xs, hd) &&
             moecl_launch_qkv_rope(e->q, &e->k, ws, xm, 0, (uint32_t)xs, ya, modes,
                                   norm ? &nrm : NULL, &rp) == MOECL_OK &&
             (!norm || moecl_launch_rmsnorm(e->q, &e->k, xm, xnm, nwm, 0, MOECL_DT_BF16, 1,
                                            (uint32_t)n, 1e-5f) == MOECL_OK) &&
             moecl_launch_qkv(e->q, &e->k, ws, norm ? xnm : xm, 0, (uint32_t)xs, 1, yb, modes,
                              NULL) == MOECL_OK &&
             moecl_launch_rope2(e->q, &e->k, yb[0], (uint32_t)vq[0].rows / hd, (uint32_t)vq[0].rows,
                                yb[1], kw / hd, kw, invm, 1, hd, pos, ms) == MOECL_OK &&
             moecl_launch_kv_append(e->q, &e->k, yb[1], yb[2], rings[2], rings[3], 1, pos, cap, kw,
                                    f16) == MOECL_OK;
        size_t total = off[3] + 2 * ring_n * (size_t)es / 4;
        float *a = calloc(total, sizeof(float)), *b = calloc(total, sizeof(float));
        for (int i = 0; i < 3 && ok; i++)
            ok = read_back(e, ya[i], a + off[i], (size_t)vq[i].rows * 4) == 0 &&
                 read_back(e, yb[i], b + off[i], (size_t)vq[i].rows * 4) == 0;
        for (int i = 0; i < 2 && ok; i++) {
            size_t at = off[3] + (size_t)i * ring_n * (size_t)es / 4;
            ok = read_back(e, rings[i], a + at, ring_n * (size_t)es) == 0 &&
                 read_back(e, rings[2 + i], b + at, ring_n * (size_t)es) == 0;
        }
        int d = 0;
        for (size_t i = 0; ok && i < total; i++)
            d += memcmp(&a[i], &b[i], 4) != 0;
        if (d)
            printf("  q/k/v with RoPE and the KV append inside (head_dim %u%s): %d differ\n", hd,
                   f16 ? ", half ring" : "", d);
        diff = ok ? diff + d : -1;
        g_qkv_rope_runs += ok;
        for (int i = 0; i < 3; i++) {
            clReleaseMemObject(ya[i]);
            clReleaseMemObject(yb[i]);
        }
        for (int i = 0; i < 4; i++)
            clReleaseMemObject(rings[i]);
        clReleaseMemObject(invm);
        clReleaseMemObject(nwm);
        clReleaseMemObject(xnm);
        free(ring0);
        free(nw);
        free(a);
        free(b);
    }
    return diff;
}

/* The attention's q/k/v in one launch (moecl_launch_qkv) on views of a case's experts 0, 1 and
 * 2 as three dense matrices of rows, rows - 100 (at least half) and 70 (at most rows) rows
 * (other offsets, other numbers of work-groups), input vectors 0 .. nv - 1 (1: decode,
 * matmul_fmw3; more: prefill, matmul_fmt3): bit for bit three products launched apart (through
 * matmul_fmw at any row count, or matmul_fmt). Returns the outputs that differ, -1 when not
 * fusable or a launch failed. */
static int qkv_check(struct kenv *e, const struct qcase *qc, const struct moecl_qweight *qw,
                     const struct moecl_dev_qweight *dw, cl_mem xm, size_t xs, uint32_t nv) {
    struct moecl_qweight vq[3];
    struct moecl_dev_qweight vd[3];
    const struct moecl_dev_qweight *ws[3];
    cl_mem ya[3], yb[3];
    int modes[3], diff = -1, ok = 1;
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        int rows = i == 0   ? qw->rows
                   : i == 1 ? (qw->rows - 100 > qw->rows / 2 ? qw->rows - 100 : qw->rows / 2 + 1)
                            : (qw->rows < 70 ? qw->rows : 70);
        ws[i] = expert_as_dense(qw, dw, i, rows, &vq[i], &vd[i]);
        modes[i] = qc->with_bias && i != 1 ? MOECL_BIAS_FUSED : MOECL_BIAS_NONE;
        ya[i] = buf_out(e, (size_t)vq[i].rows * nv * 4);
        yb[i] = buf_out(e, (size_t)vq[i].rows * nv * 4);
        total += (size_t)vq[i].rows * nv;
    }
    float *a = calloc(total, sizeof(float)), *b = calloc(total, sizeof(float));
    if (moecl_qkv_fusable(&e->k, ws, 0, (uint32_t)xs, nv) &&
        moecl_launch_qkv(e->q, &e->k, ws, xm, 0, (uint32_t)xs, nv, ya, modes, NULL) == MOECL_OK) {
        size_t off = 0;
        uint32_t min_rows = e->k.fmw_min_rows;
        e->k.fmw_min_rows = 1;
        for (int i = 0; i < 3 && ok; i++) {
            size_t n = (size_t)vq[i].rows;
            ok = moecl_launch_matmul(e->q, &e->k, ws[i], xm, 0, (uint32_t)xs, 1, NULL, yb[i],
                                     (uint32_t)n, nv, modes[i]) == MOECL_OK &&
                 read_back(e, ya[i], a + off, n * nv * 4) == 0 &&
                 read_back(e, yb[i], b + off, n * nv * 4) == 0;
            off += n * nv;
        }
        e->k.fmw_min_rows = min_rows;
        if (ok) {
            diff = 0;
            for (size_t i = 0; i < total; i++)
                diff += memcmp(&a[i], &b[i], 4) != 0;
        }
        if (ok && !diff && moecl_qkv_norm_fusable(&e->k, ws, 0, (uint32_t)xs, nv)) {
            /* with the attention's norm inside: bit for bit the norm launched before */
            size_t n = (size_t)qw->cols;
            uint16_t *nw = calloc(n, sizeof(uint16_t));
            uint64_t st = 77 + n;
            for (size_t i = 0; i < n; i++)
                nw[i] = f32_to_bf16_rne(1.0f + moecl_test_randf(&st) * 0.5f);
            cl_mem nwm = buf_in(e, nw, n * 2), xnm = buf_out(e, xs * 4);
            const struct moecl_norm_w nrm = {nwm, 0, MOECL_DT_BF16, 1e-5f};
            ok = moecl_launch_qkv(e->q, &e->k, ws, xm, 0, (uint32_t)xs, 1, ya, modes, &nrm) ==
                     MOECL_OK &&
                 moecl_launch_rmsnorm(e->q, &e->k, xm, xnm, nwm, 0, MOECL_DT_BF16, 1, (uint32_t)n,
                                      1e-5f) == MOECL_OK &&
                 moecl_launch_qkv(e->q, &e->k, ws, xnm, 0, (uint32_t)xs, 1, yb, modes, NULL) ==
                     MOECL_OK;
            for (int i = 0, o = 0; i < 3 && ok; o += vq[i].rows, i++)
                ok = read_back(e, ya[i], a + o, (size_t)vq[i].rows * 4) == 0 &&
                     read_back(e, yb[i], b + o, (size_t)vq[i].rows * 4) == 0;
            diff = ok ? 0 : -1;
            for (size_t i = 0; ok && i < total; i++)
                diff += memcmp(&a[i], &b[i], 4) != 0;
            if (diff)
                printf("  q/k/v with the norm inside: %d outputs differ\n", diff);
            g_qkv_norm_runs++;
            clReleaseMemObject(nwm);
            clReleaseMemObject(xnm);
            free(nw);
        }
        if (ok && !diff && nv == 1) {
            diff = rope_check(e, qc, qw, dw, xm, xs);
            if (diff > 0)
                printf("  q/k/v with RoPE inside: %d outputs differ\n", diff);
        }
    }
    for (int i = 0; i < 3; i++) {
        clReleaseMemObject(ya[i]);
        clReleaseMemObject(yb[i]);
    }
    free(a);
    free(b);
    return diff;
}

/* A buffer holding the E experts (`stride` bytes each) of `p` rotated by one: expert j at j-1. */
static cl_mem buf_rotated(struct kenv *e, const void *p, size_t stride, size_t E) {
    unsigned char *r = malloc(stride * E + 1);
    memcpy(r, (const unsigned char *)p + stride, stride * (E - 1));
    memcpy(r + stride * (E - 1), p, stride);
    cl_mem m = buf_in(e, r, stride * E + 1);
    free(r);
    return m;
}

/* The fused expert gate/up/SwiGLU (moecl_launch_glu) on a case's stack: gate = experts
 * 0 .. E-2 of its buffers, up = experts 1 .. E-2 of buffers rotated by one expert (so that up
 * expert p is the case's expert p + 2 mod E: a mix-up of buffers or offsets between the two
 * gives other numbers), ids taken mod E-1. Its outputs must equal, bit for bit, the two products
 * launched apart and moecl_launch_swiglu. Returns the outputs that differ, -1 when the pair was
 * not fusable or a launch failed. */
static int glu_check(struct kenv *e, const struct qcase *qc, const struct moecl_qweight *qw,
                     const struct moecl_dev_qweight *dw, cl_mem xm, size_t xs, const int32_t *ids) {
    struct moecl_qweight gq = *qw, uq = *qw;
    gq.n_experts = uq.n_experts = qw->n_experts - 1;
    struct moecl_dev_qweight g = *dw, u = *dw;
    g.w = &gq;
    u.w = &uq;
    size_t E = (size_t)qw->n_experts;
    u.wmem = buf_rotated(e, qw->weight, qw->weight_expert_stride, E);
    u.smem = buf_rotated(e, qw->scales, qw->scales_expert_stride, E);
    u.bmem = qw->biases ? buf_rotated(e, qw->biases, qw->biases_expert_stride, E)
                        : buf_rotated(e, qw->scales, qw->scales_expert_stride, E);
    u.biasmem = qw->bias ? buf_rotated(e, qw->bias, qw->bias_expert_stride, E) : dw->biasmem;
    if (!qw->bias)
        clRetainMemObject(u.biasmem);
    u.w_offset += qw->weight_expert_stride;
    u.s_offset += qw->scales_expert_stride;
    u.b_offset += qw->biases_expert_stride;
    u.bias_offset += qw->bias_expert_stride;
    size_t n = (size_t)qc->n_vec, ys = (size_t)qc->rows;
    int32_t *id2 = calloc(n, sizeof *id2);
    float *a = calloc(n * ys, sizeof(float)), *b = calloc(n * ys, sizeof(float));
    for (size_t p = 0; p < n; p++)
        id2[p] = ids[p] % gq.n_experts;
    cl_mem idm = buf_in(e, id2, n * 4), am = buf_out(e, n * ys * 4), bm = buf_out(e, n * ys * 4);
    int bias = qc->with_bias ? MOECL_BIAS_AFTER : MOECL_BIAS_NONE, diff = -1;
    float alpha = 1.702f, limit = 7.0f;
    if (moecl_glu_fusable(&e->k, &g, &u, 0, (uint32_t)xs, (uint32_t)n) &&
        moecl_launch_glu(e->q, &e->k, &g, &u, xm, 0, (uint32_t)xs, (uint32_t)qc->x_div, idm, am,
                         (uint32_t)ys, (uint32_t)n, bias, alpha, limit) == MOECL_OK &&
        read_back(e, am, a, n * ys * 4) == 0 &&
        moecl_launch_matmul(e->q, &e->k, &g, xm, 0, (uint32_t)xs, (uint32_t)qc->x_div, idm, am,
                            (uint32_t)ys, (uint32_t)n, bias) == MOECL_OK &&
        moecl_launch_matmul(e->q, &e->k, &u, xm, 0, (uint32_t)xs, (uint32_t)qc->x_div, idm, bm,
                            (uint32_t)ys, (uint32_t)n, bias) == MOECL_OK &&
        moecl_launch_swiglu(e->q, &e->k, am, bm, (uint32_t)(n * ys), alpha, limit) == MOECL_OK &&
        read_back(e, am, b, n * ys * 4) == 0) {
        diff = 0;
        for (size_t i = 0; i < n * ys; i++)
            diff += memcmp(&a[i], &b[i], 4) != 0;
    }
    clReleaseMemObject(idm);
    clReleaseMemObject(am);
    clReleaseMemObject(bm);
    clReleaseMemObject(u.wmem);
    clReleaseMemObject(u.smem);
    clReleaseMemObject(u.bmem);
    clReleaseMemObject(u.biasmem);
    free(id2);
    free(a);
    free(b);
    return diff;
}

/* Runs one matmul case; returns the number of outputs outside tolerance (-1 on setup error). */
static int run_qcase(const struct qcase *qc, uint64_t seed, int scale_extremes) {
    struct moecl_qweight qw;
    memset(&qw, 0, sizeof qw);
    qw.name = "test";
    qw.mode = qc->mode;
    qw.bits = qc->bits;
    qw.group_size = qc->group;
    qw.float_dtype = qc->wdt;
    qw.n_experts = qc->n_experts;
    qw.rows = qc->rows;
    qw.cols = qc->cols;
    struct moecl_qformat fmt;
    if (moecl_qformat_of(&qw, &fmt) != MOECL_OK)
        return -1;
    struct kenv e;
    if (kenv_open_numerics(&e, g_act, g_fm, &fmt, 1) != 0) {
        kenv_close(&e);
        return -1;
    }
    g_fm_used = e.k.formats[0].matmul_fm != NULL;
    g_fm_lanes = e.k.lanes;
    g_fm_differs = 0;
    int E = qc->n_experts ? qc->n_experts : 1;
    size_t wbits = qc->mode == MOECL_QMODE_NONE ? moecl_dtype_size(qc->wdt) * 8 : (size_t)qc->bits;
    struct qdata d;
    /* padded rows: strides are honoured (by 16 bytes when g_wide: aligned) */
    d.w_row = (size_t)qc->cols * wbits / 8 + (g_wide ? 16 : 8);
    d.w_exp = d.w_row * (size_t)qc->rows + 16;
    size_t n_groups = qc->group ? (size_t)(qc->cols / qc->group) : 0;
    size_t sb = qc->mode == MOECL_QMODE_AFFINE ? 2 : 1;
    d.s_row = n_groups * sb + 4;
    d.s_exp = d.s_row * (size_t)qc->rows + 8;
    d.w = calloc((size_t)E * d.w_exp, 1);
    d.s = calloc((size_t)E * d.s_exp + 1, 1);
    d.b = calloc((size_t)E * d.s_exp + 1, 1);
    d.bias = calloc((size_t)E * (size_t)qc->rows, 2);
    uint64_t st = seed;
    for (size_t i = 0; i < (size_t)E * d.w_exp; i++) {
        d.w[i] = (uint8_t)moecl_test_rand(&st);
        if (qc->mode == MOECL_QMODE_MXFP8 && (d.w[i] & 0x7f) == 0x7f)
            d.w[i] ^= 1; /* E4M3 NaN codes would make the comparison meaningless */
    }
    if (qc->mode == MOECL_QMODE_NONE) {
        /* keep float weights finite and moderate: rewrite every element */
        for (int ex = 0; ex < E; ex++)
            for (int r = 0; r < qc->rows; r++) {
                uint8_t *row = d.w + (size_t)ex * d.w_exp + (size_t)r * d.w_row;
                for (int c = 0; c < qc->cols; c++) {
                    float f = moecl_test_randf(&st);
                    if (qc->wdt == MOECL_DTYPE_F32)
                        memcpy(row + 4 * (size_t)c, &f, 4);
                    else if (qc->wdt == MOECL_DTYPE_BF16)
                        ((uint16_t *)row)[c] = f32_to_bf16_rne(f);
                    else /* f16: 1.x * 2^-1 range */
                        ((uint16_t *)row)[c] = (uint16_t)((moecl_test_rand(&st) & 0x83ff) | 0x3800);
                }
            }
    }
    for (int ex = 0; ex < E; ex++)
        for (int r = 0; r < qc->rows; r++)
            for (size_t g = 0; g < n_groups; g++) {
                uint8_t *sp = d.s + (size_t)ex * d.s_exp + (size_t)r * d.s_row;
                uint8_t *bp = d.b + (size_t)ex * d.s_exp + (size_t)r * d.s_row;
                if (qc->mode == MOECL_QMODE_AFFINE) {
                    ((uint16_t *)sp)[g] = f32_to_bf16_rne(moecl_test_randf(&st) * 0.1f);
                    ((uint16_t *)bp)[g] = f32_to_bf16_rne(moecl_test_randf(&st));
                } else if (qc->mode == MOECL_QMODE_NVFP4) {
                    sp[g] = (uint8_t)(moecl_test_rand(&st) & 0x7e); /* finite E4M3 */
                } else {
                    static const uint8_t ext[] = {0, 1, 240, 127};
                    sp[g] = scale_extremes ? ext[(r + (int)g) % 4]
                                           : (uint8_t)(120 + moecl_test_rand(&st) % 14);
                }
            }
    for (size_t i = 0; i < (size_t)E * (size_t)qc->rows; i++)
        d.bias[i] = f32_to_bf16_rne(moecl_test_randf(&st));
    int n_in = qc->with_ids ? (qc->n_vec + qc->x_div - 1) / qc->x_div : qc->n_vec;
    size_t xs = (size_t)qc->cols + (g_wide ? 4 : 3); /* padded input stride */
    float *x = calloc((size_t)n_in * xs, sizeof(float));
    for (size_t i = 0; i < (size_t)n_in * xs; i++)
        x[i] = moecl_test_randf(&st);
    int32_t *ids = calloc((size_t)qc->n_vec + 1, sizeof(int32_t));
    for (int p = 0; p < qc->n_vec; p++)
        ids[p] = (int32_t)(moecl_test_rand(&st) % (uint64_t)E);
    size_t ys = (size_t)qc->rows + 2;
    float *y = calloc((size_t)qc->n_vec * ys, sizeof(float));

    qw.weight = d.w;
    qw.weight_row_stride = d.w_row;
    qw.weight_expert_stride = d.w_exp;
    qw.scales = n_groups ? d.s : NULL;
    qw.scales_row_stride = d.s_row;
    qw.scales_expert_stride = d.s_exp;
    qw.biases = qc->mode == MOECL_QMODE_AFFINE ? d.b : NULL;
    qw.biases_row_stride = d.s_row;
    qw.biases_expert_stride = d.s_exp;
    qw.bias = qc->with_bias ? d.bias : NULL;
    qw.bias_dtype = MOECL_DTYPE_BF16;
    qw.bias_expert_stride = (size_t)qc->rows * 2;
    struct moecl_dev_qweight dw = {&qw, 0, NULL, NULL, NULL, NULL, 0, 0, 0, 0};
    dw.wmem = buf_in(&e, d.w, (size_t)E * d.w_exp);
    dw.smem = buf_in(&e, d.s, (size_t)E * d.s_exp + 1);
    dw.bmem = buf_in(&e, d.b, (size_t)E * d.s_exp + 1);
    dw.biasmem = buf_in(&e, d.bias, (size_t)E * (size_t)qc->rows * 2);
    cl_mem xm = buf_in(&e, x, (size_t)n_in * xs * 4);
    cl_mem idm = buf_in(&e, ids, ((size_t)qc->n_vec + 1) * 4);
    cl_mem ym = buf_out(&e, (size_t)qc->n_vec * ys * 4);
    int bad = -1;
    g_fmb_case = g_fm && g_fm_lanes > 1 &&
                 moecl_matmul_fmb_fits(&e.k, &dw, (uint32_t)qc->n_vec, qc->with_ids);
    g_fmb_differs = 0;
    if (launch_case(&e, qc, &dw, xm, xs, idm, ym, ys, y) == 0) {
        bad = 0;
        for (int p = 0; p < qc->n_vec; p++) {
            int ex = qc->with_ids ? ids[p] : 0;
            const float *xr = x + (size_t)(qc->with_ids ? p / qc->x_div : p) * xs;
            for (int r = 0; r < qc->rows; r++) {
                double acc = 0, mag = 0, fmag = 0;
                for (int c = 0; c < qc->cols; c++) {
                    double t = (double)xr[c] * ref_weight(qc, &d, ex, r, c);
                    acc += t;
                    mag += fabs(t);
                    if (g_fm)
                        fmag += fm_term_mag(qc, &d, ex, r, c, xr[c]);
                }
                if (qc->with_bias)
                    acc += bf16_val(d.bias[(size_t)ex * (size_t)qc->rows + (size_t)r]);
                /* a format without matmul_fm runs the default kernels: their bound */
                double tol = g_fm && g_fm_used ? fm_tolerance(qc, fmag)
                                               : 4.0 * qc->cols * ldexp(1.0, -24) * mag + 1e-30;
                if (qc->with_bias)
                    tol += ldexp(fabs(acc), -23);
                if (g_act == MOECL_ACT_BF16) /* the output rounded to bf16: half an ulp */
                    tol = tol * (1 + ldexp(1.0, -8)) + ldexp(fabs(acc), -8);
                double got = y[(size_t)p * ys + (size_t)r];
                if (!(fabs(got - acc) <= tol)) {
                    if (bad < 3)
                        printf("  %s b%d g%d: y[%d][%d] = %.9g, reference %.9g (tol %.3g)\n",
                               moecl_qmode_name(qc->mode), qc->bits, qc->group, p, r, got, acc,
                               tol);
                    bad++;
                }
            }
        }
        if (g_compare_exact && bad >= 0) {
            /* the fast kernel against the reference-order kernel: the same bits */
            float *y2 = calloc((size_t)qc->n_vec * ys, sizeof(float));
            e.k.exact_matmul = !e.k.exact_matmul;
            if (launch_case(&e, qc, &dw, xm, xs, idm, ym, ys, y2) != 0) {
                bad = -1;
            } else {
                for (int p = 0; p < qc->n_vec; p++)
                    for (int r = 0; r < qc->rows; r++) {
                        size_t i = (size_t)p * ys + (size_t)r;
                        if (memcmp(&y[i], &y2[i], 4) != 0) {
                            if (bad < 3)
                                printf("  %s b%d g%d: y[%d][%d] fast %.9g, reference order %.9g\n",
                                       moecl_qmode_name(qc->mode), qc->bits, qc->group, p, r, y[i],
                                       y2[i]);
                            bad++;
                        }
                    }
            }
            e.k.exact_matmul = !e.k.exact_matmul;
            free(y2);
        }
        if (g_fm && g_fm_lanes == 1 && bad >= 0) {
            /* the same inputs through matmul_fm's 8-vector tiles (no tiled kernel) */
            uint32_t fmt_min = e.k.fmt_min;
            e.k.fmt_min = UINT32_MAX;
            g_fmt_differs = relaunch_differs(&e, qc, &dw, xm, xs, idm, ym, ys, y);
            bad = g_fmt_differs < 0 ? -1 : bad;
            e.k.fmt_min = fmt_min;
        }
        if (g_wide && g_fm_lanes == 1 && bad >= 0) {
            /* the same inputs through matmul_fm (no 16-byte loads) */
            uint32_t fmw_rows = e.k.fmw_rows;
            e.k.fmw_rows = 0;
            g_fmw_differs = relaunch_differs(&e, qc, &dw, xm, xs, idm, ym, ys, y);
            bad = g_fmw_differs < 0 ? -1 : bad;
            e.k.fmw_rows = fmw_rows;
        }
        if (g_fmt && g_fm_lanes == 1 && bad >= 0 && qc->with_ids && E >= 3) {
            /* three experts as q, k, v of the case's input vectors in one launch */
            g_glu_diff = qkv_check(&e, qc, &qw, &dw, xm, xs, (uint32_t)(qc->n_vec / qc->x_div));
            if (g_glu_diff != 0)
                bad = bad ? bad : 1;
        }
        if (g_fm_lanes == 1 && bad >= 0 && !qc->with_ids && qc->n_vec == 1 && qc->rows < 1024 &&
            moecl_matmul_norm_fusable(&e.k, &dw, 1)) {
            g_norm_runs++;
            g_norm_bad += norm_check(&e, qc, &dw, xm, xs, seed) != 0;
        }
        if (g_wide && g_fm_lanes == 1 && bad >= 0 && !qc->with_ids && qc->n_vec == 1 &&
            e.k.fmw_rows >= 1) {
            g_glu_diff = add_check(&e, qc, &dw, xm, xs, seed);
            if (g_glu_diff != 0)
                bad = bad ? bad : 1;
        }
        if (g_wide && g_fm_lanes == 1 && bad >= 0 && qc->with_ids && E >= 2 && e.k.fmw_rows >= 2) {
            g_glu_diff = glu_check(&e, qc, &qw, &dw, xm, xs, ids);
            if (g_glu_diff == 0 && E >= 3)
                g_glu_diff = qkv_check(&e, qc, &qw, &dw, xm, xs, 1);
            if (g_glu_diff != 0)
                bad = bad ? bad : 1;
        }
        if (g_fmb_case && bad >= 0) {
            /* the same inputs through the rows-along-lanes kernel (matmul_fm's tiles) */
            uint32_t fmb_min = e.k.fmb_min;
            e.k.fmb_min = 0;
            g_fmb_runs++;
            g_fmb_differs = relaunch_differs(&e, qc, &dw, xm, xs, idm, ym, ys, y);
            bad = g_fmb_differs < 0 ? -1 : bad;
            e.k.fmb_min = fmb_min;
        }
        if (g_fm && bad >= 0) {
            /* the same inputs through the default kernel: count the outputs whose bits differ */
            e.k.fast_numerics = 0;
            g_fm_differs = relaunch_differs(&e, qc, &dw, xm, xs, idm, ym, ys, y);
            bad = g_fm_differs < 0 ? -1 : bad;
            e.k.fast_numerics = 1;
        }
    } else {
        printf("  launch: %s\n", moecl_last_error());
    }
    clReleaseMemObject(dw.wmem);
    clReleaseMemObject(dw.smem);
    clReleaseMemObject(dw.bmem);
    clReleaseMemObject(dw.biasmem);
    clReleaseMemObject(xm);
    clReleaseMemObject(idm);
    clReleaseMemObject(ym);
    free(d.w);
    free(d.s);
    free(d.b);
    free(d.bias);
    free(x);
    free(ids);
    free(y);
    kenv_close(&e);
    return bad;
}

/* Every affine width x every group size; 2 groups per row at group 128; partial tile (6
 * vectors = 4 + 2); bias fused. */
TEST(kernel_matmul_affine_every_width_and_group) {
    static const int bits[] = {2, 3, 4, 5, 6, 8}, groups[] = {32, 64, 128};
    for (size_t b = 0; b < 6; b++)
        for (size_t g = 0; g < 3; g++) {
            struct qcase qc = {
                MOECL_QMODE_AFFINE, bits[b], groups[g], MOECL_DTYPE_BF16, 7, 256, 0, 6, 1, 0, 1};
            int bad = run_qcase(&qc, 1000 + b * 10 + g, 0);
            if (bad != 0)
                moecl_test_fail(__FILE__, __LINE__, "affine %d-bit g%d: %d outputs off", bits[b],
                                groups[g], bad);
        }
}

/* The fast kernel (the default) gives the reference-order kernel's bits for every format:
 * every affine width and group, the fp formats, float weights with a partial chunk, with expert
 * ids (grouped by expert, full and partial tiles of 8 vectors) and dense (1 and 11 vectors); rows
 * not a multiple of the vector width. */
TEST(kernel_matmul_fast_equals_reference_order) {
    static const int bits[] = {2, 3, 4, 5, 6, 8}, groups[] = {32, 64, 128};
    g_compare_exact = 1;
    for (size_t b = 0; b < 6; b++)
        for (size_t g = 0; g < 3; g++) {
            struct qcase qc = {
                MOECL_QMODE_AFFINE, bits[b], groups[g], MOECL_DTYPE_BF16, 21, 256, 3, 30, 3, 1, 1};
            int bad = run_qcase(&qc, 2000 + b * 10 + g, 0);
            if (bad != 0)
                moecl_test_fail(__FILE__, __LINE__, "affine %d-bit g%d: %d outputs differ", bits[b],
                                groups[g], bad);
        }
    struct qcase cases[] = {
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 19, 128, 4, 40, 4, 1, 1},
        {MOECL_QMODE_MXFP8, 8, 32, MOECL_DTYPE_F32, 19, 128, 4, 40, 4, 1, 1},
        {MOECL_QMODE_NVFP4, 4, 16, MOECL_DTYPE_F32, 19, 128, 4, 40, 4, 1, 1},
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 23, 128, 0, 1, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 23, 128, 0, 11, 1, 0, 0},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F32, 17, 70, 0, 11, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F16, 17, 70, 0, 3, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 17, 70, 0, 9, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int bad = run_qcase(&cases[i], 2100 + i, 0);
        if (bad != 0)
            moecl_test_fail(__FILE__, __LINE__, "case %zu (%s): %d outputs differ", i,
                            moecl_qmode_name(cases[i].mode), bad);
    }
    g_compare_exact = 0;
}

/* More rows than 64 row blocks of one vector: each work-item walks several row vectors. */
TEST(kernel_matmul_many_rows_per_item) {
    g_compare_exact = 1;
    struct qcase c1 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 2100, 64, 0, 2, 1, 0, 1};
    struct qcase c2 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 1100, 64, 2, 5, 1, 1, 0};
    CHECK_EQ(run_qcase(&c1, 40, 0), 0);
    CHECK_EQ(run_qcase(&c2, 41, 0), 0);
    g_compare_exact = 0;
}

/* A device compiler that rejects the fast kernels (forced here with a vector width they refuse)
 * still gets a working product: the program is rebuilt without them and the launcher uses the
 * reference-order kernel. */
TEST(kernel_matmul_fast_build_failure_falls_back) {
    struct kenv_lanes old = kenv_lanes_set("3");
    struct qcase qc = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 9, 128, 0, 3, 1, 0, 1};
    int bad = run_qcase(&qc, 50, 0);
    struct moecl_qformat f = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16};
    struct kenv e;
    int opened = kenv_open(&e, MOECL_ACT_F32, &f, 1);
    kenv_lanes_restore(&old);
    CHECK_EQ(bad, 0);
    CHECK_EQ(opened, 0);
    if (opened == 0) {
        CHECK_EQ(e.progs.no_fast[0], 1);
        CHECK(e.k.formats[0].matmul_fast == NULL);
    }
    kenv_close(&e);
}

/* One row, one token: the smallest launch. */
TEST(kernel_matmul_single_row) {
    struct qcase qc = {MOECL_QMODE_AFFINE, 5, 32, MOECL_DTYPE_BF16, 1, 64, 0, 1, 1, 0, 0};
    CHECK_EQ(run_qcase(&qc, 7, 0), 0);
}

/* Many tokens: several full tiles and a partial one. */
TEST(kernel_matmul_many_tokens) {
    struct qcase qc = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 33, 128, 0, 23, 1, 0, 1};
    CHECK_EQ(run_qcase(&qc, 8, 0), 0);
}

/* mxfp4 / mxfp8 with ordinary scales, then E8M0 extremes (0 = 2^-127 subnormal, 1 = 2^-126,
 * 127 = 1, 240 = 2^113: as large as keeps 32-term sums finite); nvfp4. */
TEST(kernel_matmul_fp_formats_and_e8m0_extremes) {
    struct qcase c1 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1};
    struct qcase c2 = {MOECL_QMODE_MXFP8, 8, 32, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1};
    struct qcase c3 = {MOECL_QMODE_NVFP4, 4, 16, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1};
    CHECK_EQ(run_qcase(&c1, 11, 0), 0);
    CHECK_EQ(run_qcase(&c2, 12, 0), 0);
    CHECK_EQ(run_qcase(&c3, 13, 0), 0);
    struct qcase c4 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 8, 128, 0, 2, 1, 0, 0};
    struct qcase c5 = {MOECL_QMODE_MXFP8, 8, 32, MOECL_DTYPE_F32, 8, 128, 0, 2, 1, 0, 0};
    CHECK_EQ(run_qcase(&c4, 14, 1), 0);
    CHECK_EQ(run_qcase(&c5, 15, 1), 0);
}

/* Float weights f32 / f16 / bf16 with a partial last 32-chunk (70 columns). */
TEST(kernel_matmul_float_weights_partial_chunk) {
    static const enum moecl_dtype dts[] = {MOECL_DTYPE_F32, MOECL_DTYPE_F16, MOECL_DTYPE_BF16};
    for (int i = 0; i < 3; i++) {
        struct qcase qc = {MOECL_QMODE_NONE, 0, 0, dts[i], 5, 70, 0, 5, 1, 0, 1};
        int bad = run_qcase(&qc, 20 + (uint64_t)i, 0);
        if (bad != 0)
            moecl_test_fail(__FILE__, __LINE__, "%s weights: %d outputs off",
                            moecl_dtype_name(dts[i]), bad);
    }
}

/* Per-expert addressing: expert ids read on the device, 2 output vectors per input (x_div). */
TEST(kernel_matmul_expert_ids) {
    struct qcase qc = {MOECL_QMODE_AFFINE, 3, 64, MOECL_DTYPE_BF16, 6, 128, 5, 8, 2, 1, 1};
    CHECK_EQ(run_qcase(&qc, 30, 0), 0);
    struct qcase q2 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 6, 64, 4, 6, 3, 1, 1};
    CHECK_EQ(run_qcase(&q2, 31, 0), 0);
}

/* The bit-compatible mode of a bf16 model (mlx_cpu_rounding): every product and partial sum of
 * an affine row rounded to bf16 in element order, as MLX's CPU kernel computes it; compared
 * bit for bit with the same recurrence on the host. */
TEST(kernel_matmul_bf16_per_op_rounding) {
    struct moecl_qformat f = {MOECL_QMODE_AFFINE, 4, 32, MOECL_DTYPE_BF16};
    struct kenv e;
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    memset(&e, 0, sizeof e);
    REQUIRE(moecl_cl_devices_enumerate(&devs, &n) == MOECL_OK && n > 0);
    cl_int err;
    e.dev = devs[0].device;
    free(devs);
    e.ctx = clCreateContext(NULL, 1, &e.dev, NULL, NULL, &err);
    e.q = clCreateCommandQueueWithProperties(e.ctx, e.dev, NULL, &err);
    REQUIRE(moecl_programs_build(e.ctx, e.dev, MOECL_ACT_BF16, 1, 0, &f, 1, &e.progs) == MOECL_OK);
    REQUIRE(moecl_kernels_create(&e.progs, &e.k) == MOECL_OK);
    enum { R = 3, C = 64, G = 2 };
    uint8_t w[R * 32];
    uint16_t s[R * G], b[R * G];
    float x[C], y[R];
    uint64_t st = 77;
    for (int i = 0; i < R * 32; i++)
        w[i] = (uint8_t)moecl_test_rand(&st);
    for (int i = 0; i < R * G; i++) {
        s[i] = f32_to_bf16_rne(moecl_test_randf(&st) * 0.2f);
        b[i] = f32_to_bf16_rne(moecl_test_randf(&st));
    }
    for (int i = 0; i < C; i++)
        x[i] = (float)bf16_val(f32_to_bf16_rne(moecl_test_randf(&st) * 3.0f));
    struct moecl_qweight qw;
    memset(&qw, 0, sizeof qw);
    qw.name = "t";
    qw.mode = MOECL_QMODE_AFFINE;
    qw.bits = 4;
    qw.group_size = 32;
    qw.float_dtype = MOECL_DTYPE_BF16;
    qw.rows = R;
    qw.cols = C;
    qw.weight_row_stride = 32;
    qw.scales_row_stride = qw.biases_row_stride = G * 2;
    struct moecl_dev_qweight dw;
    memset(&dw, 0, sizeof dw);
    dw.w = &qw;
    dw.wmem = buf_in(&e, w, sizeof w);
    dw.smem = buf_in(&e, s, sizeof s);
    dw.bmem = buf_in(&e, b, sizeof b);
    dw.biasmem = dw.wmem;
    cl_mem xm = buf_in(&e, x, sizeof x), ym = buf_out(&e, sizeof y);
    REQUIRE(moecl_launch_matmul(e.q, &e.k, &dw, xm, 0, C, 1, NULL, ym, R, 1, MOECL_BIAS_NONE) ==
            MOECL_OK);
    REQUIRE(read_back(&e, ym, y, sizeof y) == 0);
#define RB(v) ((float)bf16_val(f32_to_bf16_rne((float)(v))))
    for (int r = 0; r < R; r++) {
        float acc = 0.0f;
        for (int c = 0; c < C; c++) {
            float sc = (float)bf16_val(s[r * G + c / 32]), bi = (float)bf16_val(b[r * G + c / 32]);
            float wv = RB(RB(sc * (float)affine_code(w + r * 32, 4, c)) + bi);
            acc = RB(acc + RB(x[c] * wv));
        }
        CHECK(y[r] == acc);
    }
#undef RB
    clReleaseMemObject(dw.wmem);
    clReleaseMemObject(dw.smem);
    clReleaseMemObject(dw.bmem);
    clReleaseMemObject(xm);
    clReleaseMemObject(ym);
    kenv_close(&e);
}

/* ------------------------------------------------------------------ fast numerics */

/* The lanes of the test device's programs (1 on GPUs). */
static int fm_lanes(void) {
    struct kenv e;
    int lanes = kenv_open(&e, MOECL_ACT_F32, NULL, 0) == 0 ? e.k.lanes : 0;
    kenv_close(&e);
    return lanes;
}

/* Runs a case with fast numerics; `want_fm`: the format must have a matmul_fm kernel (and it
 * must really run: some outputs differ in their bits from the default kernel's), else it must
 * fall back to the default kernels. Returns the outputs off (or -1), printing the case. */
static int run_fm_case(const struct qcase *qc, uint64_t seed, int extremes, int want_fm) {
    g_fm = 1;
    int bad = run_qcase(qc, seed, extremes);
    g_fm = 0;
    /* (bits that differ in float32 seldom survive a bf16 output rounding: checked at f32) */
    int must_differ = want_fm && g_act == MOECL_ACT_F32;
    if (bad != 0 || g_fm_used != want_fm || (must_differ && g_fm_differs == 0)) {
        printf("  %s b%d g%d rows %d cols %d experts %d vectors %d: %d off, matmul_fm %s, %d of %d "
               "outputs differ from the default kernel's\n",
               moecl_qmode_name(qc->mode), qc->bits, qc->group, qc->rows, qc->cols, qc->n_experts,
               qc->n_vec, bad, g_fm_used ? "used" : "absent", g_fm_differs, qc->rows * qc->n_vec);
        return bad != 0 ? bad : 1;
    }
    return 0;
}

/* Fast numerics, affine 2/4/8-bit at every group it takes (8-bit g128 spans two chunks of 16
 * words and falls back on a 16-lane CPU, as 3/5/6-bit do): decode (1 vector), prefill (20 dense
 * vectors: tiles of 8, 8, 4) and per expert with ids (30 outputs, x_div 3, 3 experts); row lengths
 * with a partial last chunk of whole groups (320 = 2.5 chunks of 128 4-bit elements; 2-bit chunks
 * are 256). */
TEST(kernel_matmul_fm_affine) {
    static const int bits[] = {2, 4, 8}, groups[] = {32, 64, 128};
    for (size_t b = 0; b < 3; b++)
        for (size_t g = 0; g < 3; g++) {
            /* the GPU decomposition takes every group (kernel_matmul_fm_gpu_decomposition); a
             * CPU one the groups that fit in a chunk of `lanes` words (8 lanes: not 4-bit g128
             * nor 8-bit g64, which an AVX2 device or MOECL_FAST_LANES=8 runs exactly) */
            int lanes = fm_lanes();
            int want = lanes == 1 || bits[b] * groups[g] <= 32 * lanes;
            int cols = bits[b] == 2 ? 640 : 320;
            if (groups[g] == 128)
                cols = 384; /* a multiple of the group: 3 groups */
            struct qcase cases[] = {
                {MOECL_QMODE_AFFINE, bits[b], groups[g], MOECL_DTYPE_BF16, 13, cols, 0, 1, 1, 0, 1},
                {MOECL_QMODE_AFFINE, bits[b], groups[g], MOECL_DTYPE_BF16, 13, cols, 0, 20, 1, 0,
                 0},
                {MOECL_QMODE_AFFINE, bits[b], groups[g], MOECL_DTYPE_BF16, 21, cols, 3, 30, 3, 1,
                 1},
            };
            for (size_t i = 0; i < 3; i++)
                if (run_fm_case(&cases[i], 3000 + b * 100 + g * 10 + i, 0, want) != 0)
                    moecl_test_fail(__FILE__, __LINE__, "affine %d-bit g%d case %zu", bits[b],
                                    groups[g], i);
        }
}

/* Fast numerics, mxfp4: decode, prefill, ids; the real row length 2880 (22.5 chunks: the last
 * holds 2 of its 4 groups); E8M0 extremes (2^-127 subnormal .. 2^113). Float weights (bf16, f32).
 * Formats without a matmul_fm (mxfp8, nvfp4, affine 3-bit, f16 weights) and float rows that do not
 * fill whole 32-bit words fall back to the default kernels. */
TEST(kernel_matmul_fm_mxfp4_float_and_fallbacks) {
    struct qcase cases[] = {
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 11, 2880, 0, 1, 1, 0, 1},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 11, 256, 0, 19, 1, 0, 1},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 19, 192, 4, 40, 4, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (run_fm_case(&cases[i], 3500 + i, 0, 1) != 0)
            moecl_test_fail(__FILE__, __LINE__, "mxfp4 case %zu", i);
    struct qcase ext = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 8, 128, 0, 9, 1, 0, 0};
    CHECK_EQ(run_fm_case(&ext, 3510, 1, 1), 0);
    /* float weights: bf16 and f32 rows (a partial last chunk at 70 columns), dense and per
     * expert (CPUs; GPUs run the default kernels) */
    struct qcase fl[] = {
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 9, 70, 0, 1, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 9, 70, 0, 11, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 21, 256, 3, 30, 3, 1, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F32, 9, 70, 0, 1, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F32, 17, 130, 2, 12, 2, 1, 0},
    };
    int float_fm = fm_lanes() != 1; /* GPUs have no float-weight matmul_fm */
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        if (run_fm_case(&fl[i], 3530 + i, 0, float_fm) != 0)
            moecl_test_fail(__FILE__, __LINE__, "float weights case %zu (%s)", i,
                            moecl_dtype_name(fl[i].wdt));
    /* no matmul_fm: mxfp8, nvfp4, affine 3-bit, f16 weights; a bf16 row of odd length (not whole
     * 32-bit words) runs the exact kernels although the format has one */
    struct qcase fb[] = {
        {MOECL_QMODE_MXFP8, 8, 32, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1},
        {MOECL_QMODE_NVFP4, 4, 16, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 3, 64, MOECL_DTYPE_BF16, 9, 128, 0, 5, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F16, 9, 70, 0, 5, 1, 0, 1},
    };
    /* (the GPU decomposition has an nvfp4 kernel: kernel_matmul_fm_gpu_decomposition) */
    int gpu = fm_lanes() == 1;
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++)
        if (run_fm_case(&fb[i], 3520 + i, 0, gpu && fb[i].mode == MOECL_QMODE_NVFP4) != 0)
            moecl_test_fail(__FILE__, __LINE__, "fallback case %zu (%s)", i,
                            moecl_qmode_name(fb[i].mode));
    struct qcase odd = {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 9, 69, 0, 5, 1, 0, 1};
    g_fm = 1;
    int bad = run_qcase(&odd, 3540, 0);
    g_fm = 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(g_fm_differs, 0); /* the exact kernels' bits */
}

/* Fast numerics at gpt-oss's shapes: 2880 columns of 4-bit g64 (22.5 chunks), more rows than
 * 64 row blocks (each work-item walks several rows), decode and a prefill of 11 vectors; the
 * output rounded to bf16 (a bf16 model's activations); decode through experts (a token's few
 * vectors among many experts: a work-item column per vector). */
TEST(kernel_matmul_fm_model_shapes_and_bf16_output) {
    struct qcase c1 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 1100, 2880, 0, 1, 1, 0, 1};
    struct qcase c2 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 300, 2880, 0, 11, 1, 0, 0};
    CHECK_EQ(run_fm_case(&c1, 3600, 0, 1), 0);
    CHECK_EQ(run_fm_case(&c2, 3601, 0, 1), 0);
    g_act = MOECL_ACT_BF16;
    struct qcase c3 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 40, 2880, 0, 9, 1, 0, 1};
    struct qcase c4 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 40, 2880, 4, 12, 4, 1, 1};
    CHECK_EQ(run_fm_case(&c3, 3602, 0, 1), 0);
    CHECK_EQ(run_fm_case(&c4, 3603, 0, 1), 0);
    g_act = MOECL_ACT_F32;
    /* decode through experts: few vectors among many experts take a column per vector */
    struct qcase c5 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 70, 2880, 16, 4, 4, 1, 1};
    struct qcase c6 = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 40, 2880, 32, 3, 1, 1, 1};
    CHECK_EQ(run_fm_case(&c5, 3604, 0, 1), 0);
    CHECK_EQ(run_fm_case(&c6, 3605, 0, 1), 0);
}

/* Fast numerics on a 16-lane CPU, many vectors: matmul_fmb (the vectors along the lanes, tiles
 * of 32, passes of 12 rows; qmatmul_fmb_cpu.cl). Dense and routed; tiles full, partial above and
 * below 16 vectors (one or two input vectors per element); rows not a multiple of 12; partial
 * last chunks; affine 2/4/8-bit (slices of 1, 1 and 2 chunks), mxfp4 at 2880 columns, bf16 and
 * f32 weights; with $MOECL_FMB_MIN=1, experts routed one vector or none. Each case is held to
 * the single-chain bound and must differ in some bits from matmul_fm's tiles (so the kernel
 * really ran). A device without the kernel (8 lanes, GPUs) must never be given it. */
TEST(kernel_matmul_fm_cpu_vectors_along_lanes) {
    struct qcase cases[] = {
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 301, 2880, 0, 70, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 4, 32, MOECL_DTYPE_BF16, 37, 320, 3, 120, 4, 1, 1},
        {MOECL_QMODE_AFFINE, 2, 64, MOECL_DTYPE_BF16, 24, 640, 0, 40, 1, 0, 0},
        {MOECL_QMODE_AFFINE, 8, 32, MOECL_DTYPE_BF16, 13, 384, 2, 50, 1, 1, 0},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 26, 2880, 4, 140, 4, 1, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_BF16, 13, 70, 0, 17, 1, 0, 1},
        {MOECL_QMODE_NONE, 0, 0, MOECL_DTYPE_F32, 17, 130, 2, 36, 2, 1, 0},
    };
    int lanes = fm_lanes();
    struct kenv e;
    struct moecl_qformat f4 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16};
    int has_fmb =
        kenv_open_numerics(&e, MOECL_ACT_F32, 1, &f4, 1) == 0 && e.k.formats[0].matmul_fmb != NULL;
    kenv_close(&e);
    int runs0 = g_fmb_runs;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int want = has_fmb;
        if (run_fm_case(&cases[i], 3700 + i, 0, 1) != 0 || g_fmb_case != want ||
            (want && g_fmb_differs == 0))
            moecl_test_fail(__FILE__, __LINE__, "case %zu: matmul_fmb %s (%s), %d outputs differ",
                            i, g_fmb_case ? "ran" : "did not run", want ? "wanted" : "absent",
                            g_fmb_differs);
    }
    /* one routed vector per expert or none: 9 vectors over 8 experts (the caller's
     * $MOECL_FMB_MIN put back after) */
    const char *prev = getenv("MOECL_FMB_MIN");
    char *saved = prev ? strdup(prev) : NULL;
    setenv("MOECL_FMB_MIN", "1", 1);
    struct qcase sparse = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 25, 256, 8, 9, 1, 1, 1};
    int bad = run_fm_case(&sparse, 3790, 0, 1);
    if (saved)
        setenv("MOECL_FMB_MIN", saved, 1);
    else
        unsetenv("MOECL_FMB_MIN");
    free(saved);
    CHECK_EQ(bad, 0);
    CHECK_EQ(g_fmb_case, has_fmb);
    printf("  %d lanes, matmul_fmb %s, %d cases through it\n", lanes, has_fmb ? "built" : "absent",
           g_fmb_runs - runs0);
    CHECK(has_fmb == 0 || g_fmb_runs - runs0 == 8);
}

/* Fast numerics, the GPU tiled product for many vectors (matmul_fmt: 64 rows x 64 vectors per
 * work-group through local memory, 32 columns at a time; forced on PoCL with
 * $MOECL_FAST_LANES=1): dense blocks (full and partial; nvfp4's group 16 gives a partial last
 * block of columns: 144 = 4 * 32 + 16), and per expert (ids) with more routed vectors than one
 * block and more ids than one gathering sweep of 256 (600 ids over 4 experts); rows not a multiple
 * of 64; affine 2/4/8-bit, mxfp4, nvfp4 (group 16: two groups per block of columns); a bias. Each
 * case must be within the single-chain bound and differ in some bits from the 8-vector tiles (so
 * the tiled kernel really ran). */
TEST(kernel_matmul_fm_gpu_tiled) {
    struct kenv_lanes old = kenv_lanes_set("1");
    struct qcase cases[] = {
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 100, 2880, 0, 70, 1, 0, 0},
        {MOECL_QMODE_AFFINE, 4, 32, MOECL_DTYPE_BF16, 64, 96, 0, 16, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 8, 128, MOECL_DTYPE_BF16, 30, 384, 3, 300, 4, 1, 0},
        {MOECL_QMODE_AFFINE, 2, 64, MOECL_DTYPE_BF16, 65, 256, 0, 20, 1, 0, 0},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 33, 2880, 4, 600, 4, 1, 0},
        {MOECL_QMODE_NVFP4, 4, 16, MOECL_DTYPE_F32, 20, 144, 0, 40, 1, 0, 0},
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 70, 640, 2, 160, 2, 1, 1},
    };
    g_fmt = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int bad = run_fm_case(&cases[i], 3800 + i, 0, 1);
        if (bad != 0 || g_fmt_differs == 0)
            moecl_test_fail(__FILE__, __LINE__,
                            "case %zu (%s b%d g%d): %d off, %d outputs differ from the 8-vector "
                            "tiles'",
                            i, moecl_qmode_name(cases[i].mode), cases[i].bits, cases[i].group, bad,
                            g_fmt_differs);
    }
    g_fmt = 0;
    kenv_lanes_restore(&old);
}

/* Fast numerics, the GPU decode product with 16-byte loads (matmul_fmw; forced on PoCL with
 * $MOECL_FAST_LANES=1): one vector per column, from 1024 rows, rows and inputs aligned. Affine
 * 2/4/8-bit (the groups that hold whole 16-byte units) and mxfp4, at 2, 4 and 8 rows per warp
 * ($MOECL_FMW, a build option of the kernels); dense and per expert (a column per output vector,
 * x_div 4); rows not a multiple of a work-group's; gpt-oss's 2880 columns (90 units: a partial
 * third sweep) and 4096 (whole sweeps); a bias. Each case must be within the bound of its sum order
 * and differ in some bits from matmul_fm (so the wide kernel really ran). The cases per expert also
 * run the fused gate/up/SwiGLU (glu_check) and three of their experts as q/k/v in one launch
 * (qkv_check, also with the attention's norm inside), the dense ones the product with its residual
 * add (add_check): bit for bit the separate launches. */
TEST(kernel_matmul_fm_gpu_wide) {
    struct kenv_lanes old = kenv_lanes_set("1");
    const char *prev = getenv("MOECL_FMW");
    char *saved = prev ? strdup(prev) : NULL;
    struct qcase cases[] = {
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 1030, 2880, 0, 1, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 4, 32, MOECL_DTYPE_BF16, 1024, 4096, 0, 1, 1, 0, 0},
        {MOECL_QMODE_AFFINE, 8, 64, MOECL_DTYPE_BF16, 1100, 640, 5, 4, 4, 1, 1},
        {MOECL_QMODE_AFFINE, 2, 64, MOECL_DTYPE_BF16, 1050, 512, 0, 1, 1, 0, 0},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 1040, 2880, 8, 4, 4, 1, 1},
    };
    static const char *const rows[] = {"2", "4", "8"};
    g_wide = 1;
    for (size_t r = 0; r < 3; r++) {
        setenv("MOECL_FMW", rows[r], 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            g_glu_diff = -2;
            int bad = run_fm_case(&cases[i], 3900 + 10 * r + i, 0, 1);
            /* per expert: the fused gate/up/SwiGLU and q/k/v ran and matched; dense: the product
             * with its residual add */
            if (g_glu_diff != 0)
                moecl_test_fail(__FILE__, __LINE__, "case %zu, %s rows per warp: fused %s %d", i,
                                rows[r], cases[i].with_ids ? "glu" : "add", g_glu_diff);
            if (bad != 0 || g_fmw_differs == 0)
                moecl_test_fail(__FILE__, __LINE__,
                                "case %zu (%s b%d g%d), %s rows per warp: %d off, %d outputs "
                                "differ from matmul_fm's",
                                i, moecl_qmode_name(cases[i].mode), cases[i].bits, cases[i].group,
                                rows[r], bad, g_fmw_differs);
        }
    }
    g_wide = 0;
    CHECK(g_qkv_norm_runs >= 3); /* per expert at each rows per warp */
    CHECK(g_qkv_rope_runs >= 6); /* and with RoPE inside: both variants */
    if (saved)
        setenv("MOECL_FMW", saved, 1);
    else
        unsetenv("MOECL_FMW");
    free(saved);
    kenv_lanes_restore(&old);
}

/* Decode's q/k/v launch stages its input row in local memory (matmul_fmw3): it takes up to 4096
 * columns and leaves wider products to three launches. */
TEST(kernel_qkv_fusable_columns) {
    struct kenv_lanes old = kenv_lanes_set("1");
    struct kenv e;
    const struct moecl_qformat f4 = {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16};
    int opened = kenv_open_numerics(&e, MOECL_ACT_F32, 1, &f4, 1) == 0;
    CHECK(opened);
    if (opened) {
        struct moecl_qweight qw = {0};
        qw.mode = MOECL_QMODE_AFFINE;
        qw.bits = 4;
        qw.group_size = 64;
        qw.rows = 1024;
        qw.cols = 4096;
        qw.weight_row_stride = 2048;
        struct moecl_dev_qweight dw = {0};
        dw.w = &qw;
        const struct moecl_dev_qweight *const ws[3] = {&dw, &dw, &dw};
        CHECK(moecl_qkv_fusable(&e.k, ws, 0, 4096, 1));
        CHECK(moecl_qkv_norm_fusable(&e.k, ws, 0, 4096, 1));
        qw.cols = 4160;
        qw.weight_row_stride = 2080;
        CHECK(!moecl_qkv_fusable(&e.k, ws, 0, 4160, 1));
        CHECK(!moecl_qkv_norm_fusable(&e.k, ws, 0, 4160, 1));
        kenv_close(&e);
    }
    kenv_lanes_restore(&old);
}

/* Fast numerics, the GPU decomposition (8 warps x 4 rows per work-group, a warp's 32
 * work-items on every 32nd word of a row; forced on PoCL with $MOECL_FAST_LANES=1): affine
 * 2/4/8-bit at every group, mxfp4 and nvfp4; dense (1 and 11 vectors: a full and a partial tile
 * of 8) and per expert (ids, x_div 3 and 4; a column per expert, or per output vector when
 * there are no more of them than experts); rows not a multiple of 32 (one and two
 * work-groups); gpt-oss's 2880 columns (360 4-bit words: 11 sweeps of 32 work-items and a
 * partial one). The dense one-vector products below 1024 rows (matmul_fmv) also run with the
 * MoE norm inside (norm_check). 3-bit has no fast kernel and falls back to the exact kernels. */
TEST(kernel_matmul_fm_gpu_decomposition) {
    struct kenv_lanes old = kenv_lanes_set("1");
    struct qcase cases[] = {
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 21, 256, 0, 1, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 45, 256, 0, 11, 1, 0, 0},
        {MOECL_QMODE_AFFINE, 4, 32, MOECL_DTYPE_BF16, 9, 1024, 0, 3, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 40, 2880, 2, 8, 4, 1, 1},
        {MOECL_QMODE_AFFINE, 4, 128, MOECL_DTYPE_BF16, 17, 256, 3, 30, 3, 1, 1},
        {MOECL_QMODE_AFFINE, 8, 32, MOECL_DTYPE_BF16, 21, 256, 3, 30, 3, 1, 1},
        {MOECL_QMODE_AFFINE, 8, 128, MOECL_DTYPE_BF16, 8, 384, 0, 2, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 2, 32, MOECL_DTYPE_BF16, 9, 128, 0, 3, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 2, 64, MOECL_DTYPE_BF16, 13, 256, 0, 9, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 2, 128, MOECL_DTYPE_BF16, 13, 256, 4, 12, 2, 1, 0},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 19, 128, 4, 40, 4, 1, 1},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 70, 2880, 0, 1, 1, 0, 1},
        {MOECL_QMODE_NVFP4, 4, 16, MOECL_DTYPE_F32, 9, 128, 0, 5, 1, 0, 1},
        /* one vector: matmul_fmv below 1024 rows (4 rows per work-group here), matmul_fm's
         * four rows per warp from 1024 */
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 300, 512, 0, 1, 1, 0, 1},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 1100, 256, 0, 1, 1, 0, 0},
        /* no more output vectors than experts (a decode step's top-k): a column per vector */
        {MOECL_QMODE_AFFINE, 4, 64, MOECL_DTYPE_BF16, 40, 2880, 8, 4, 4, 1, 1},
        {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 33, 256, 32, 8, 2, 1, 0},
    };
    g_norm_runs = g_norm_bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (run_fm_case(&cases[i], 3700 + i, 0, 1) != 0)
            moecl_test_fail(__FILE__, __LINE__, "case %zu (%s b%d g%d)", i,
                            moecl_qmode_name(cases[i].mode), cases[i].bits, cases[i].group);
    /* the dense one-vector cases through matmul_fmv also ran with the norm inside, bit for bit */
    CHECK(g_norm_runs >= 3);
    CHECK_EQ(g_norm_bad, 0);
    struct qcase ext = {MOECL_QMODE_MXFP4, 4, 32, MOECL_DTYPE_F32, 8, 128, 0, 9, 1, 0, 0};
    CHECK_EQ(run_fm_case(&ext, 3710, 1, 1), 0);
    struct qcase fb[] = {
        {MOECL_QMODE_AFFINE, 3, 64, MOECL_DTYPE_BF16, 9, 128, 0, 3, 1, 0, 1},
        {MOECL_QMODE_AFFINE, 6, 32, MOECL_DTYPE_BF16, 9, 128, 0, 3, 1, 0, 1},
    };
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++)
        if (run_fm_case(&fb[i], 3720 + i, 0, 0) != 0)
            moecl_test_fail(__FILE__, __LINE__, "fallback %zu (%s b%d g%d)", i,
                            moecl_qmode_name(fb[i].mode), fb[i].bits, fb[i].group);
    kenv_lanes_restore(&old);
}
