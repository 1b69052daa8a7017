/* One weight format's kernels: the dequantizing matrix product (decode and prefill, dense or per
 * expert) and the embedding-row gather. Built once per format with
 *   -DQMODE=MOECL_QM_* -DBITS=b -DGROUP=g -DWDT=MOECL_DT_* -DWNAME=<suffix> -DACT=MOECL_ACT_*
 * WDT is the float weight dtype (QMODE FLOAT) or the affine scales/biases dtype. Kernel names
 * spell the format: matmul_f32_q4g64_bf16, embed_f32_mxfp4, ...
 *
 * CPU-style (PoCL): one work-item owns one output row for `tile` output vectors and walks that
 * row's bytes front to back, decoding one group into registers and reusing it for every vector
 * of the tile. No barriers, no local memory. */

#if QMODE == MOECL_QM_FLOAT
#define QGROUP 32 /* chunk length; a partial chunk at the row's end is handled */
#else
#define QGROUP GROUP
#endif

#define TILE_MAX 4

/* SEQ_ACCUM: the reference's element order (MLX's CPU quantized matmul walks each row element
 * by element: sum += x * (scale * q + bias)); SEQ_ROUND additionally rounds every one of those
 * operations to the activation dtype, as MLX's CPU kernel does when it runs in bf16/f16.
 * Contraction into fma is off so that each product rounds as the reference's does. */
#ifndef SEQ_ACCUM
#define SEQ_ACCUM 0
#endif
#ifndef SEQ_ROUND
#define SEQ_ROUND 0
#endif
#if SEQ_ROUND
#define RS(v) round_act(v)
#else
#define RS(v) (v)
#endif
#pragma OPENCL FP_CONTRACT OFF

/* Weight element load for the float format. */
inline float wload(__global const uchar *row, uint i) {
    return load_dt(row, 0, i, WDT);
}

/* Decodes elements [g*QGROUP, g*QGROUP + n) of one row into wv (n = QGROUP except for a float
 * row's partial tail). `srow`/`brow` are the row's scales and affine biases. */
inline void decode_group(__global const uchar *wrow, __global const uchar *srow,
                         __global const uchar *brow, uint g, uint n, float *wv) {
#if QMODE == MOECL_QM_AFFINE
#define GROUP_WORDS (GROUP * BITS / 32)
    __global const uint *gw = (__global const uint *)wrow + g * GROUP_WORDS;
    uint words[GROUP_WORDS];
    for (uint i = 0; i < GROUP_WORDS; i++)
        words[i] = gw[i];
    float s = load_dt(srow, 0, g, WDT), b = load_dt(brow, 0, g, WDT);
    /* One continuous LSB-first bit stream per row: element i is stream bits [i*BITS, +BITS);
     * 3/5/6-bit elements straddle words. */
    for (uint i = 0; i < GROUP; i++) {
        uint bit = i * BITS, wi = bit >> 5, sh = bit & 31u;
        uint v = words[wi] >> sh;
        if (sh + BITS > 32u)
            v |= words[wi + 1] << (32u - sh);
        v &= (1u << BITS) - 1u;
        wv[i] = s * (float)v + b;
    }
    (void)n;
#elif QMODE == MOECL_QM_MXFP4 || QMODE == MOECL_QM_NVFP4
    __global const uint *gw = (__global const uint *)wrow + g * (GROUP / 8);
#if QMODE == MOECL_QM_MXFP4
    float s = e8m0_to_f32(srow[g]);
#else
    float s = e4m3_to_f32(srow[g]);
#endif
    for (uint k = 0; k < GROUP / 8; k++) {
        uint word = gw[k];
        for (uint j = 0; j < 8; j++)
            wv[k * 8 + j] = e2m1_to_f32((word >> (4u * j)) & 15u) * s;
    }
    (void)brow;
    (void)n;
#elif QMODE == MOECL_QM_MXFP8
    __global const uchar *gb = wrow + g * GROUP;
    float s = e8m0_to_f32(srow[g]);
    for (uint i = 0; i < GROUP; i++)
        wv[i] = e4m3_to_f32(gb[i]) * s;
    (void)brow;
    (void)n;
#else
    for (uint i = 0; i < n; i++)
        wv[i] = wload(wrow, g * QGROUP + i);
    (void)srow;
    (void)brow;
#endif
}

#if SEQ_ACCUM && QMODE != MOECL_QM_FLOAT
/* The reference's element order and roundings (MLX's CPU quantized matmul in a 16-bit
 * activation dtype): affine w = round(round(s*q) + b), sum = round(sum + round(x*w)) element by
 * element; fp formats sum round(x*code) per group, then sum = round(sum + round(scale*group)).
 * wv receives the affine weights, or the fp codes' values with *scale_out the group scale. */
inline void decode_group_seq(__global const uchar *wrow, __global const uchar *srow,
                             __global const uchar *brow, uint g, float *wv, float *scale_out) {
#if QMODE == MOECL_QM_AFFINE
    __global const uint *gw = (__global const uint *)wrow + g * GROUP_WORDS;
    float s = load_dt(srow, 0, g, WDT), b = load_dt(brow, 0, g, WDT);
    for (uint i = 0; i < GROUP; i++) {
        uint bit = i * BITS, wi = bit >> 5, sh = bit & 31u;
        uint v = gw[wi] >> sh;
        if (sh + BITS > 32u)
            v |= gw[wi + 1] << (32u - sh);
        v &= (1u << BITS) - 1u;
        wv[i] = RS(RS(s * (float)v) + b);
    }
    *scale_out = 1.0f;
#elif QMODE == MOECL_QM_MXFP8
    __global const uchar *gb = wrow + g * GROUP;
    for (uint i = 0; i < GROUP; i++)
        wv[i] = e4m3_to_f32(gb[i]);
    *scale_out = RS(e8m0_to_f32(srow[g]));
    (void)brow;
#else
    __global const uint *gw = (__global const uint *)wrow + g * (GROUP / 8);
    for (uint k = 0; k < GROUP / 8; k++) {
        uint word = gw[k];
        for (uint j = 0; j < 8; j++)
            wv[k * 8 + j] = e2m1_to_f32((word >> (4u * j)) & 15u);
    }
#if QMODE == MOECL_QM_MXFP4
    *scale_out = RS(e8m0_to_f32(srow[g]));
#else
    *scale_out = RS(e4m3_to_f32(srow[g]));
#endif
    (void)brow;
#endif
}
#endif

/* y[p][r] for p in this work-item's tile; see struct moecl_qmm_args. */
__kernel void MOECL_CAT(matmul_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                           __global const uchar *bi, __global const uchar *bias,
                                           __global const float *x, __global float *y,
                                           __global const int *ids, struct moecl_qmm_args a) {
    uint r = get_global_id(0);
    uint p0 = get_global_id(1) * a.tile;
    if (r >= a.rows || p0 >= a.n_vec)
        return;
    uint np = min(a.tile, a.n_vec - p0);
    ulong e = a.use_ids ? (ulong)ids[p0] : 0;
    __global const uchar *wrow = w + a.w_offset + e * a.w_expert_stride + r * a.w_row_stride;
    __global const uchar *srow = sc + a.s_offset + e * a.s_expert_stride + r * a.s_row_stride;
    __global const uchar *brow = bi + a.b_offset + e * a.b_expert_stride + r * a.b_row_stride;
    __global const float *xv[TILE_MAX];
    float acc[TILE_MAX];
    for (uint t = 0; t < TILE_MAX; t++) {
        uint p = p0 + min(t, np - 1);
        xv[t] = x + a.x_offset + (ulong)(p / a.x_div) * a.x_stride;
        acc[t] = 0.0f;
    }
    float wv[QGROUP];
    uint n_groups = (a.cols + QGROUP - 1) / QGROUP;
    for (uint g = 0; g < n_groups; g++) {
#if SEQ_ACCUM && QMODE != MOECL_QM_FLOAT
        float gscale;
        decode_group_seq(wrow, srow, brow, g, wv, &gscale);
        for (uint t = 0; t < np; t++) {
            __global const float *xg = xv[t] + g * QGROUP;
#if QMODE == MOECL_QM_AFFINE
            float s = acc[t];
            for (uint i = 0; i < QGROUP; i++)
                s = RS(s + RS(xg[i] * wv[i]));
            acc[t] = s;
#else
            float s = 0.0f;
            for (uint i = 0; i < QGROUP; i++)
                s = RS(s + RS(xg[i] * wv[i]));
            acc[t] = RS(acc[t] + RS(gscale * s));
#endif
        }
#else
        uint n = min((uint)QGROUP, a.cols - g * QGROUP);
        decode_group(wrow, srow, brow, g, n, wv);
        for (uint t = 0; t < np; t++) {
            __global const float *xg = xv[t] + g * QGROUP;
            /* one running sum along the row, element by element, as the reference's gemm
             * accumulates (blocked partial sums drift by an ulp on long prefills) */
            float s = acc[t];
            for (uint i = 0; i < n; i++)
                s += xg[i] * wv[i];
            acc[t] = s;
        }
#endif
    }
    float bv = 0.0f;
    if (a.bias_mode != MOECL_BIAS_NONE)
        bv = load_dt(bias, a.bias_offset + e * a.bias_expert_stride, r, a.bias_dt);
    for (uint t = 0; t < np; t++) {
        float v = a.bias_mode == MOECL_BIAS_FUSED ? round_act(acc[t] + bv)
                  : a.bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(acc[t]) + bv)
                                                    : round_act(acc[t]);
        y[(ulong)(p0 + t) * a.y_stride + r] = v;
    }
}

/* Embedding rows: y[t][c] = dequant(W[tokens[t]][c]) in the activation dtype. Work-item (group
 * g, token t). a.rows = vocabulary size; a.n_vec = tokens; an out-of-range id gives zeros (the
 * host validates ids first). */
__kernel void MOECL_CAT(embed_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                          __global const uchar *bi, __global const int *tokens,
                                          __global float *y, struct moecl_qmm_args a) {
    uint g = get_global_id(0), t = get_global_id(1);
    uint n_groups = (a.cols + QGROUP - 1) / QGROUP;
    if (g >= n_groups || t >= a.n_vec)
        return;
    int tok = tokens[t];
    uint n = min((uint)QGROUP, a.cols - g * QGROUP);
    __global float *out = y + (ulong)t * a.y_stride + g * QGROUP;
    if (tok < 0 || (uint)tok >= a.rows) {
        for (uint i = 0; i < n; i++)
            out[i] = 0.0f;
        return;
    }
    ulong r = (ulong)tok;
    float wv[QGROUP];
#if QMODE == MOECL_QM_AFFINE
    /* mx.dequantize rounds scale*q, then adds the bias, in the scales' dtype. */
    __global const uint *gw =
        (__global const uint *)(w + a.w_offset + r * a.w_row_stride) + g * GROUP_WORDS;
    float s = load_dt(sc + a.s_offset + r * a.s_row_stride, 0, g, WDT);
    float b = load_dt(bi + a.b_offset + r * a.b_row_stride, 0, g, WDT);
    for (uint i = 0; i < GROUP; i++) {
        uint bit = i * BITS, wi = bit >> 5, sh = bit & 31u;
        uint v = gw[wi] >> sh;
        if (sh + BITS > 32u)
            v |= gw[wi + 1] << (32u - sh);
        v &= (1u << BITS) - 1u;
        wv[i] = round_act(round_act(s * (float)v) + b);
    }
#else
    decode_group(w + a.w_offset + r * a.w_row_stride, sc + a.s_offset + r * a.s_row_stride,
                 bi + a.b_offset + r * a.b_row_stride, g, n, wv);
#endif
    for (uint i = 0; i < n; i++)
        out[i] = round_act(wv[i]);
}
