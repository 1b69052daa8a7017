/* The GPU tiled product's kernel, matmul_fmt (fast numerics, after qmatmul_fm_gpu.cl: its
 * macros and fmt_block), and its tensor-core block for NVIDIA GPUs (-DMOECL_TC=1). */
#if FAST_NUMERICS && LANES == 1 && !defined(MOECL_NO_FAST)
#if FM_OK
#if MOECL_TC
/* The tiled product on NVIDIA's tensor cores (-DMOECL_TC=1: the host sets it for NVIDIA GPUs of
 * compute capability 8 or more and builds again without it if the compiler refuses): tf32
 * mma.sync m16n8k8 through inline PTX, float32 accumulators. A tf32 operand keeps 10 of float's
 * 23 fraction bits, so every weight and input is split in two tf32 parts, v = hi + lo (each
 * rounded to nearest), and a product is hi*hi + hi*lo + lo*hi: within about 2^-21 of the float
 * product instead of 2^-11. Code times scale in mxfp4 and nvfp4 is exact in tf32 (no lo part),
 * so those take two products, not three.
 *
 * A work-group of 8 warps computes TC_BM (-DTC_BM: 64 or 128) rows x TC_BN (-DTC_BN: 64 or
 * 128) vectors,
 * TC_BK = 32 columns at a time: weights (dequantized) and inputs sit row-major in local memory
 * with 4 floats of padding per row (a fragment's 32 loads hit 32 banks) and are split per
 * fragment; a work-item loads the next block's words and inputs into registers while the warps
 * multiply the current one. Warp w computes rows TC_BM / 2 (w & 1) .. + TC_BM / 2 and vectors
 * TC_BN / 4 (w >> 1) .. + TC_BN / 4: TC_MT x TC_NT tiles of 16 x 8, skipping the warps past the
 * last vector.
 * Measured on an H100 (pp512, 4-bit): the prefetch 2,270 -> 2,406 tokens/s; (hi, lo) pairs
 * split once when stored instead of per fragment 1,909 (float2 loads); 128 x 64 blocks of 16
 * columns 1,745. */
#ifndef TC_BN
#define TC_BN 64
#endif
#ifndef TC_SPLIT
#define TC_SPLIT 3 /* 1: hi parts only (tf32 products; measurement) */
#endif
#ifndef TC_BM
#define TC_BM 64
#endif
#define TC_MT (TC_BM / 32) /* m tiles per warp */
#ifndef TC_BK
#define TC_BK 32
#endif
#define TC_LD (TC_BK + 4)
#define TC_NT (TC_BN / 32)                                    /* n tiles per warp */
#define TC_XR (1024u / TC_BK)                                 /* vectors per staging sweep */
#define TC_NX (TC_BN / TC_XR)                                 /* float4 of inputs per work-item */
#define TC_WPR (TC_BK / FM_EPW)                               /* words per row and block */
#define TC_NW ((TC_WPR + 256u / TC_BM - 1u) / (256u / TC_BM)) /* words per work-item */
#if QMODE == MOECL_QM_AFFINE
#define TC_WLO 1 /* the weights need a lo part */
#else
#define TC_WLO 0
#endif

/* v rounded to tf32 (10 fraction bits, ties away from zero) */
inline float tc_round(float v) {
    return as_float((as_uint(v) + 0x1000u) & 0xFFFFE000u);
}

/* d += a * b for one 16 x 8 x 8 tile (fragments as the PTX ISA lays them out) */
#define TC_MMA(d, a, b)                                                                            \
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "                       \
        "{%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"                                               \
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                           \
        : "r"(as_uint(a[0])), "r"(as_uint(a[1])), "r"(as_uint(a[2])), "r"(as_uint(a[3])),          \
          "r"(as_uint(b[0])), "r"(as_uint(b[1])), "f"(d[0]), "f"(d[1]), "f"(d[2]), "f"(d[3]))

/* the registers of a block of columns: words, their groups' scales, the inputs */
struct tc_regs {
    uint word[TC_NW];
    float s[TC_NW], b[TC_NW];
    float4 x[TC_NX];
};

__attribute__((always_inline)) inline void tc_fetch(struct tc_regs *r, __global const uint *wrow,
                                                    __global const uchar *srow,
                                                    __global const uchar *brow,
                                                    __global const float *const *xr, uint cols,
                                                    uint k0, uint lw, uint lc) {
#pragma unroll
    for (uint n = 0; n < TC_NW; n++) {
        uint wi = lw + n * (256u / TC_BM), c = k0 + wi * FM_EPW, gi = c / GROUP;
        int in = wi < TC_WPR && c < cols;
        r->word[n] = in ? wrow[c / FM_EPW] : 0u;
#if QMODE == MOECL_QM_AFFINE
        r->s[n] = in ? load_dt(srow, 0, gi, WDT) : 0.0f;
        r->b[n] = in ? load_dt(brow, 0, gi, WDT) : 0.0f;
#elif QMODE == MOECL_QM_MXFP4
        r->s[n] = in ? e8m0_to_f32(srow[gi]) : 0.0f;
        r->b[n] = 0.0f;
#else
        r->s[n] = in ? e4m3_to_f32(srow[gi]) : 0.0f;
        r->b[n] = 0.0f;
#endif
    }
    uint c = k0 + 4u * lc;
#pragma unroll
    for (uint n = 0; n < TC_NX; n++)
        r->x[n] = c < cols ? vload4(0, xr[n] + c) : (float4)(0.0f);
}

__attribute__((always_inline)) inline void
fmt_block_tc(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
             __global const uchar *bias, __global const float *x, __global float *y,
             const struct moecl_qmm_args *a, ulong e, uint r0, __local const uint *tp, uint nt,
             __local const float *lut, __local float *ws, __local float *xs) {
    uint lid = get_local_id(0), lane = lid & 31u, warp = lid >> 5;
    uint g = lane >> 2, t = lane & 3u, wm = (warp & 1u) * (TC_BM / 2u),
         wn = (warp >> 1) * (TC_BN / 4u);
    float acc[TC_MT][TC_NT][4];
    for (uint i = 0; i < TC_MT; i++)
        for (uint j = 0; j < TC_NT; j++)
            for (uint k = 0; k < 4; k++)
                acc[i][j][k] = 0.0f;
    /* staging: a work-item dequantizes words lw, lw + 4, ... of row lr and copies columns
     * 4 lc .. 4 lc + 3 of vectors lv, lv + TC_XR, ... */
    uint lr = lid % TC_BM, lw = lid / TC_BM, lc = lid % (TC_BK / 4u), lv = lid / (TC_BK / 4u);
    ulong ro = min(r0 + lr, a->rows - 1);
    __global const uint *wrow =
        (__global const uint *)(w + a->w_offset + e * a->w_expert_stride + ro * a->w_row_stride);
    __global const uchar *srow = sc + a->s_offset + e * a->s_expert_stride + ro * a->s_row_stride;
    __global const uchar *brow = bi + a->b_offset + e * a->b_expert_stride + ro * a->b_row_stride;
    __global const float *xr[TC_NX];
#pragma unroll
    for (uint n = 0; n < TC_NX; n++)
        xr[n] = x + a->x_offset + (ulong)(tp[min(lv + TC_XR * n, nt - 1)] / a->x_div) * a->x_stride;
    struct tc_regs r;
    tc_fetch(&r, wrow, srow, brow, xr, a->cols, 0u, lw, lc);
    for (uint k0 = 0; k0 < a->cols; k0 += TC_BK) {
#pragma unroll
        for (uint n = 0; n < TC_NW; n++) {
            uint wi = lw + n * (256u / TC_BM);
            if (wi < TC_WPR)
#pragma unroll
                for (uint j = 0; j < FM_EPW; j++)
#if QMODE == MOECL_QM_AFFINE
                    ws[lr * TC_LD + wi * FM_EPW + j] = fma(FM_CODE(r.word[n], j), r.s[n], r.b[n]);
#else
                    ws[lr * TC_LD + wi * FM_EPW + j] = FM_CODE(r.word[n], j) * r.s[n];
#endif
        }
#pragma unroll
        for (uint n = 0; n < TC_NX; n++)
            vstore4(r.x[n], 0, xs + (lv + TC_XR * n) * TC_LD + 4u * lc);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k0 + TC_BK < a->cols)
            tc_fetch(&r, wrow, srow, brow, xr, a->cols, k0 + TC_BK, lw, lc);
        if (wn < nt) {
#pragma unroll
            for (uint kk = 0; kk < TC_BK; kk += 8u) {
                float ah[TC_MT][4], al[TC_MT][4], bh[TC_NT][2], bl[TC_NT][2];
#pragma unroll
                for (uint i = 0; i < TC_MT; i++) {
                    __local const float *p = ws + (wm + 16u * i + g) * TC_LD + kk + t;
                    float v[4] = {p[0], p[8u * TC_LD], p[4], p[8u * TC_LD + 4u]};
#pragma unroll
                    for (uint k = 0; k < 4; k++) {
                        ah[i][k] = tc_round(v[k]);
                        al[i][k] = tc_round(v[k] - ah[i][k]);
                    }
                }
#pragma unroll
                for (uint j = 0; j < TC_NT; j++) {
                    __local const float *p = xs + (wn + 8u * j + g) * TC_LD + kk + t;
                    float v[2] = {p[0], p[4]};
#pragma unroll
                    for (uint k = 0; k < 2; k++) {
                        bh[j][k] = tc_round(v[k]);
                        bl[j][k] = tc_round(v[k] - bh[j][k]);
                    }
                }
                /* the small products first, each pass over every tile (independent chains) */
#if TC_WLO && TC_SPLIT > 1
#pragma unroll
                for (uint i = 0; i < TC_MT; i++)
#pragma unroll
                    for (uint j = 0; j < TC_NT; j++)
                        TC_MMA(acc[i][j], al[i], bh[j]);
#endif
#if TC_SPLIT > 1
#pragma unroll
                for (uint i = 0; i < TC_MT; i++)
#pragma unroll
                    for (uint j = 0; j < TC_NT; j++)
                        TC_MMA(acc[i][j], ah[i], bl[j]);
#endif
#pragma unroll
                for (uint i = 0; i < TC_MT; i++)
#pragma unroll
                    for (uint j = 0; j < TC_NT; j++)
                        TC_MMA(acc[i][j], ah[i], bh[j]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    /* accumulator k of tile (i, j): row wm + 16 i + g + 8 (k >> 1), vector wn + 8 j + 2 t +
     * (k & 1) */
#pragma unroll
    for (uint i = 0; i < TC_MT; i++)
#pragma unroll
        for (uint k = 0; k < 4; k++) {
            uint ro = r0 + wm + 16u * i + g + 8u * (k >> 1);
            if (ro >= a->rows)
                continue;
            float bb = 0.0f;
            if (a->bias_mode != MOECL_BIAS_NONE)
                bb = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, ro, a->bias_dt);
#pragma unroll
            for (uint j = 0; j < TC_NT; j++) {
                uint v = wn + 8u * j + 2u * t + (k & 1u);
                if (v >= nt)
                    continue;
                float sum = acc[i][j][k];
                y[(ulong)tp[v] * a->y_stride + ro] =
                    a->bias_mode == MOECL_BIAS_FUSED   ? round_act(sum + bb)
                    : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(sum) + bb)
                                                       : round_act(sum);
            }
        }
}
#define FMT_BLOCK fmt_block_tc
#define FMT_ROWS TC_BM
#define FMT_COLS TC_BN
#define FMT_WS_N (TC_BM * TC_LD)
#define FMT_XS_N (TC_BN * TC_LD)
#else
#define FMT_BLOCK fmt_block
#define FMT_ROWS FMT_BM
#define FMT_COLS FMT_BN
#define FMT_WS_N (FMT_BK * FMT_BM)
#define FMT_XS_N (FMT_BK * FMT_BN)
#endif

/* Work-group 256 per block of FMT_BM rows; column get_group_id(1): the expert (use_ids 1) or
 * a block of FMT_COLS vectors. Needs cols a multiple of FM_EPW (the launcher checks). */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmt_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                  __global const uchar *bi, __global const uchar *bias,
                                  __global const float *x, __global float *y,
                                  __global const int *ids, struct moecl_qmm_args a) {
    __local float ws[FMT_WS_N];
    __local float xs[FMT_XS_N];
    __local float lut[16];
    __local uint tp[FMT_COLS + 256];
    __local uint count;
    uint lid = get_local_id(0);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    uint r0 = get_group_id(0) * FMT_ROWS, column = get_group_id(1);
    if (!a.use_ids) {
        uint p0 = column * FMT_COLS, nt = min((uint)FMT_COLS, a.n_vec - p0);
        if (lid < FMT_COLS)
            tp[lid] = p0 + min(lid, nt - 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        FMT_BLOCK(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, lut, ws, xs);
        return;
    }
    /* the vectors routed to expert `column`, gathered 256 ids at a time; a block runs whenever
     * FMT_COLS are waiting, and once more for the rest */
    if (lid == 0)
        count = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint q0 = 0; q0 < a.n_vec; q0 += 256u) {
        uint q = q0 + lid;
        if (q < a.n_vec && ids[q] == (int)column)
            tp[atomic_inc(&count)] = q;
        barrier(CLK_LOCAL_MEM_FENCE);
        uint n = count;
        barrier(CLK_LOCAL_MEM_FENCE); /* every work-item has read count before it grows */
        while (n >= FMT_COLS || (n > 0 && q0 + 256u >= a.n_vec)) {
            uint nt = min(n, (uint)FMT_COLS);
            FMT_BLOCK(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, lut, ws, xs);
            /* the waiting rest moves to the front */
            uint rest = n - nt, mv = lid < rest ? tp[nt + lid] : 0;
            barrier(CLK_LOCAL_MEM_FENCE);
            if (lid < rest)
                tp[lid] = mv;
            if (lid == 0)
                count = rest;
            barrier(CLK_LOCAL_MEM_FENCE);
            n = rest;
        }
    }
}
/* Three dense products of the same vectors in one launch (prefill's q, k and v; fast
 * numerics' moecl_launch_qkv): the row blocks of product 0, then 1, then 2 along dimension 0,
 * blocks of FMT_COLS vectors along dimension 1. Each block is computed as matmul_fmt computes
 * it, so the outputs are bit for bit those of three launches. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void MOECL_CAT(matmul_fmt3_f32_,
                                                                         WNAME)(QMM3_PARAMS) {
    __local float ws[FMT_WS_N];
    __local float xs[FMT_XS_N];
    __local float lut[16];
    __local uint tp[FMT_COLS];
    uint lid = get_local_id(0), blk = get_group_id(0);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    uint n0 = (a0.rows + FMT_ROWS - 1u) / FMT_ROWS, n1 = (a1.rows + FMT_ROWS - 1u) / FMT_ROWS;
    uint m = blk < n0 ? 0u : blk < n0 + n1 ? 1u : 2u;
    QMM3_PICK(m);
    uint r0 = (blk - (m == 0u ? 0u : m == 1u ? n0 : n0 + n1)) * FMT_ROWS;
    uint p0 = get_group_id(1) * FMT_COLS, nt = min((uint)FMT_COLS, am.n_vec - p0);
    if (lid < FMT_COLS)
        tp[lid] = p0 + min(lid, nt - 1);
    barrier(CLK_LOCAL_MEM_FENCE);
    FMT_BLOCK(w, sc, bi, bias, x, y, &am, 0, r0, tp, nt, lut, ws, xs);
}
#endif /* FM_OK */
#endif
