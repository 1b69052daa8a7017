/* The reference-order product for GPUs and few vectors (decode), built with LANES 1 after
 * qmatmul.cl (its macros and argument struct).
 *
 * matmul_fast_f32_ on a GPU keeps each row's sum in one work-item, a chain of `cols` dependent
 * adds each waiting on its own weight load: latency-bound. Here a work-group of XG_THREADS owns
 * XG_ROWS rows of one output vector and walks the columns in chunks of XG_CHUNK: first every
 * work-item forms products x[c] * w[r][c] (in parallel, each rounded as the exact kernels round
 * it) into local memory; then one work-item per row adds its row's products in column order,
 * exactly as matmul_fast_f32_ does (affine and float weights: sum += x * w; fp formats: a group
 * sum of x * code, then sum += scale * group sum). The same bits, without the latency chain on
 * global memory. */
#if LANES == 1 && !defined(MOECL_NO_FAST)
#pragma OPENCL FP_CONTRACT OFF

#define XG_THREADS 256
#define XG_ROWS 32
#define XG_CHUNK 256 /* a multiple of every group size (16 .. 128) */

/* The multiplier of element c of a row: the affine weight s*q + b (rounded twice, as the
 * exact kernels compute it), the fp code's value (the scale applies to the group sum), or the
 * float weight. */
inline float xg_weight(__global const uchar *wrow, __global const uchar *srow,
                       __global const uchar *brow, uint c) {
#if QMODE == MOECL_QM_AFFINE
    __global const uint *wd = (__global const uint *)wrow;
    uint bit = c * BITS, wi = bit >> 5, sh = bit & 31u;
    uint v = wd[wi] >> sh;
    if (sh + BITS > 32u)
        v |= wd[wi + 1] << (32u - sh);
    v &= (1u << BITS) - 1u;
    uint g = c / GROUP;
    float s = load_dt(srow, 0, g, WDT), b = load_dt(brow, 0, g, WDT);
    return (float)v * s + b;
#elif QMODE == MOECL_QM_MXFP4 || QMODE == MOECL_QM_NVFP4
    (void)srow;
    (void)brow;
    return e2m1_to_f32((((__global const uint *)wrow)[c / 8] >> (4u * (c % 8))) & 15u);
#elif QMODE == MOECL_QM_MXFP8
    (void)srow;
    (void)brow;
    return e4m3_to_f32(wrow[c]);
#else
    (void)srow;
    (void)brow;
    return wload(wrow, c);
#endif
}

/* Work-group XG_THREADS per XG_ROWS rows; column get_group_id(1) = output vector p (expert
 * ids[p] with ids). */
__kernel __attribute__((reqd_work_group_size(XG_THREADS, 1, 1))) void
MOECL_CAT(matmul_xg_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                 __global const uchar *bi, __global const uchar *bias,
                                 __global const float *x, __global float *y,
                                 __global const int *ids, struct moecl_qmm_args a) {
    __local float prod[XG_ROWS * (XG_CHUNK + 1)];
    uint lid = get_local_id(0), r0 = get_group_id(0) * XG_ROWS, p = get_global_id(1);
    if (p >= a.n_vec)
        return;
    ulong e = a.use_ids ? (ulong)ids[p] : 0;
    __global const float *xr = x + a.x_offset + (ulong)(p / a.x_div) * a.x_stride;
    /* the row this work-item sums (lid < XG_ROWS) */
    uint rs = min(r0 + lid, a.rows - 1);
    __global const uchar *srow_s =
        sc + a.s_offset + e * a.s_expert_stride + (ulong)rs * a.s_row_stride;
    float acc = 0.0f;
    for (uint c0 = 0; c0 < a.cols; c0 += XG_CHUNK) {
        uint nc = min((uint)XG_CHUNK, a.cols - c0);
        for (uint i = lid; i < XG_ROWS * XG_CHUNK; i += XG_THREADS) {
            uint rr = i / XG_CHUNK, cc = i % XG_CHUNK;
            ulong r = min(r0 + rr, a.rows - 1);
            if (cc < nc) {
                __global const uchar *wrow =
                    w + a.w_offset + e * a.w_expert_stride + r * a.w_row_stride;
                __global const uchar *srow =
                    sc + a.s_offset + e * a.s_expert_stride + r * a.s_row_stride;
                __global const uchar *brow =
                    bi + a.b_offset + e * a.b_expert_stride + r * a.b_row_stride;
                prod[rr * (XG_CHUNK + 1) + cc] = xr[c0 + cc] * xg_weight(wrow, srow, brow, c0 + cc);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < XG_ROWS) {
            __local const float *pr = prod + lid * (XG_CHUNK + 1);
#if QMODE == MOECL_QM_FLOAT || QMODE == MOECL_QM_AFFINE
#pragma unroll 8
            for (uint cc = 0; cc < nc; cc++)
                acc = acc + pr[cc];
#else
            for (uint g0 = 0; g0 < nc; g0 += GROUP) {
                float gacc = 0.0f;
#pragma unroll 8
                for (uint cc = g0; cc < g0 + GROUP; cc++)
                    gacc = gacc + pr[cc];
                uint g = (c0 + g0) / GROUP;
#if QMODE == MOECL_QM_NVFP4
                float s = e4m3_to_f32(srow_s[g]);
#else
                float s = e8m0_to_f32(srow_s[g]);
#endif
                acc = acc + s * gacc;
            }
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    uint ro = r0 + lid;
    if (lid < XG_ROWS && ro < a.rows) {
        float bv = 0.0f;
        if (a.bias_mode != MOECL_BIAS_NONE)
            bv = load_dt(bias, a.bias_offset + e * a.bias_expert_stride, ro, a.bias_dt);
        y[(ulong)p * a.y_stride + ro] = a.bias_mode == MOECL_BIAS_FUSED ? round_act(acc + bv)
                                        : a.bias_mode == MOECL_BIAS_AFTER
                                            ? round_act(round_act(acc) + bv)
                                            : round_act(acc);
    }
    (void)srow_s;
}
#endif
