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
        float v = a.bias_mode == MOECL_BIAS_FUSED   ? round_act(acc[t] + bv)
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

/* ------------------------------------------------------------------ fast kernels
 *
 * matmul_fast_*: the same products in the reference's element order, fast. A sum along a row is
 * one sequential chain (that order is what makes the results the reference's bits), so the
 * parallelism is across rows: each SIMD lane owns one row (LANES consecutive rows per vector)
 * and walks it element by element exactly as the reference kernel does. A row group's weights
 * are decoded once per element column into one vector (vector shifts and masks for the
 * word-aligned formats) and applied to FAST_T input vectors.
 *
 * Work-item (row block, column): it owns a.rows_per_item consecutive rows (a multiple of
 * LANES); column = expert (use_ids: it gathers the vectors routed to its expert, so each
 * expert's rows are read once per FAST_T of its vectors, not once per vector) or a block of
 * a.tile vectors (dense). CPU devices (LANES 8 or 16): work-groups of one work-item (PoCL runs
 * one work-group per thread and keeps explicit vector code as it is), ~64 row blocks. GPUs
 * (LANES 1): one row per work-item, 64 work-items per group. */

#ifndef MOECL_NO_FAST
#ifndef LANES
#define LANES 8 /* rows per vector: 16 where the device's native float vector has 16 lanes */
#endif
#if LANES != 1 && LANES != 8 && LANES != 16
#error "LANES must be 1, 8 or 16"
#endif
#if LANES == 1
/* GPUs: one row per work-item, consecutive rows in neighbouring work-items */
#define VF float
#define VU uint
#define VLOAD(i, p) ((p)[i])
#define VSTORE(v, i, p) ((p)[i] = (v))
#define CONVF convert_float
#define CONVI convert_int
#define ASF as_float
#define ASU as_uint
#else
#define VF MOECL_CAT(float, LANES)
#define VU MOECL_CAT(uint, LANES)
#define VLOAD MOECL_CAT(vload, LANES)
#define VSTORE MOECL_CAT(vstore, LANES)
#define CONVF MOECL_CAT(convert_float, LANES)
#define CONVI MOECL_CAT(convert_int, LANES)
#define ASF MOECL_CAT(as_float, LANES)
#define ASU MOECL_CAT(as_uint, LANES)
#endif
#define FAST_T 8

/* The tiles of vectors a product walks (here and in the fast-numerics kernels). The next up
 * to tmax vectors routed to `expert`, examined from *p on (which moves past them), into tp;
 * returns how many (0: none left). Dense: the vectors [p, min(p + tmax, p1)). Either way tp's
 * entries past the count repeat the last vector. */
inline uint routed_tile(__global const int *ids, uint n_vec, uint expert, uint *p, uint *tp,
                        uint tmax) {
    uint nt = 0, q = *p;
    for (; q < n_vec && nt < tmax; q++)
        if (ids[q] == (int)expert)
            tp[nt++] = q;
    for (uint t = nt; nt && t < tmax; t++)
        tp[t] = tp[nt - 1];
    *p = q;
    return nt;
}

inline uint dense_tile(uint p, uint p1, uint *tp, uint tmax) {
    uint nt = min(tmax, p1 - p);
    for (uint t = 0; t < tmax; t++)
        tp[t] = p + min(t, nt - 1);
    return nt;
}

#if QMODE == MOECL_QM_AFFINE && (BITS == 2 || BITS == 4 || BITS == 8)
#define LANE_WORDS 1 /* element columns come from one 32-bit word per lane */
#elif QMODE == MOECL_QM_MXFP4
#define LANE_WORDS 1
#else
#define LANE_WORDS 0
#endif

#define WORD_AT(rows, l, wi) (((__global const uint *)rows[l])[wi])
#if LANES == 1
#define LANE_GATHER(rows, wi) WORD_AT(rows, 0, wi)
#elif LANES == 8
#define LANE_GATHER(rows, wi)                                                                      \
    ((uint8)(WORD_AT(rows, 0, wi), WORD_AT(rows, 1, wi), WORD_AT(rows, 2, wi),                     \
             WORD_AT(rows, 3, wi), WORD_AT(rows, 4, wi), WORD_AT(rows, 5, wi),                     \
             WORD_AT(rows, 6, wi), WORD_AT(rows, 7, wi)))
#else
#define LANE_GATHER(rows, wi)                                                                      \
    ((uint16)(WORD_AT(rows, 0, wi), WORD_AT(rows, 1, wi), WORD_AT(rows, 2, wi),                    \
              WORD_AT(rows, 3, wi), WORD_AT(rows, 4, wi), WORD_AT(rows, 5, wi),                    \
              WORD_AT(rows, 6, wi), WORD_AT(rows, 7, wi), WORD_AT(rows, 8, wi),                    \
              WORD_AT(rows, 9, wi), WORD_AT(rows, 10, wi), WORD_AT(rows, 11, wi),                  \
              WORD_AT(rows, 12, wi), WORD_AT(rows, 13, wi), WORD_AT(rows, 14, wi),                 \
              WORD_AT(rows, 15, wi)))
#endif

/* FP4 (E2M1) codes (0..15 in each lane) -> values (as e2m1_to_f32). On x86 CPUs one table
 * lookup (vpermps) where the compiler offers the builtin, else the bit construction. */
#ifndef __has_builtin
#define __has_builtin(x) 0
#endif
#if LANES == 16 && defined(__AVX512F__) && __has_builtin(__builtin_ia32_permvarsf512)
inline VF e2m1_vec(VU c) {
    const float16 t = (float16)(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f,
                                -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return __builtin_ia32_permvarsf512(t, as_int16(c));
}
#elif LANES == 8 && defined(__AVX2__) && __has_builtin(__builtin_ia32_permvarsf256)
inline VF e2m1_vec(VU c) {
    const float8 t = (float8)(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    VF v = __builtin_ia32_permvarsf256(t, as_int8(c & 7u));
    return ASF(ASU(v) | ((c & 8u) << 28));
}
#elif LANES > 1
inline VF e2m1_vec(VU c) {
    VU mag = c & 7u;
    VF v = ASF((((mag >> 1) + 126u) << 23) | ((mag & 1u) << 22));
    VF sub = CONVF(mag & 1u) * 0.5f;
    v = select(v, sub, CONVI(mag < 2u)); /* exponent 0: 0 or 0.5 */
    return ASF(ASU(v) | ((c & 8u) << 28));
}
#else
inline VF e2m1_vec(VU c) {
    return e2m1_to_f32(c);
}
#endif

/* Accumulates one element column's weights wv into the tile's sums. */
#define FAST_ACC(sum, wv)                                                                          \
    _Pragma("unroll") for (uint t = 0; t < FAST_T; t++) if (t < tt) sum[t] =                       \
        sum[t] + (VF)(xv[t][col]) * (wv);

/* Rows [r0, r0 + LANES) (clamped to the last row) of expert e against the vectors tp[0..tt)
 * (tt a constant after inlining: 1 or FAST_T; entries past nt repeat the last vector), of
 * which the first nt are written. */
__attribute__((always_inline)) inline void
fast_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
          __global const uchar *bias, __global const float *x, __global float *y,
          const struct moecl_qmm_args *a, ulong e, uint r0, const uint *tp, uint nt,
          const uint tt) {
    __global const float *xv[FAST_T];
    for (uint t = 0; t < FAST_T; t++)
        xv[t] = x + a->x_offset + (ulong)(tp[min(t, nt - 1)] / a->x_div) * a->x_stride;
    __global const uchar *wrow[LANES], *srow[LANES], *brow[LANES];
    for (uint l = 0; l < LANES; l++) {
        ulong r = min(r0 + l, a->rows - 1);
        wrow[l] = w + a->w_offset + e * a->w_expert_stride + r * a->w_row_stride;
        srow[l] = sc + a->s_offset + e * a->s_expert_stride + r * a->s_row_stride;
        brow[l] = bi + a->b_offset + e * a->b_expert_stride + r * a->b_row_stride;
    }
    VF acc[FAST_T];
    for (uint t = 0; t < FAST_T; t++)
        acc[t] = (VF)(0.0f);
    uint n_groups = (a->cols + QGROUP - 1) / QGROUP;
    for (uint g = 0; g < n_groups; g++) {
#if QMODE == MOECL_QM_AFFINE
        float st[LANES], bt[LANES];
        for (uint l = 0; l < LANES; l++) {
            st[l] = load_dt(srow[l], 0, g, WDT);
            bt[l] = load_dt(brow[l], 0, g, WDT);
        }
        VF s = VLOAD(0, st), b = VLOAD(0, bt);
#elif QMODE != MOECL_QM_FLOAT
        float st[LANES];
        for (uint l = 0; l < LANES; l++)
#if QMODE == MOECL_QM_NVFP4
            st[l] = e4m3_to_f32(srow[l][g]);
#else
            st[l] = e8m0_to_f32(srow[l][g]);
#endif
        VF s = VLOAD(0, st);
        VF gacc[FAST_T];
        for (uint t = 0; t < FAST_T; t++)
            gacc[t] = (VF)(0.0f);
#endif
#if LANE_WORDS
#define EPW (32 / BITS) /* elements per word */
        for (uint k = 0; k < QGROUP / EPW; k++) {
            /* word k of the group in every lane's row, built as one vector (no trip through
             * private memory: a vector literal of loads becomes a gather or inserts) */
            uint wi = g * (QGROUP / EPW) + k;
            VU words = LANE_GATHER(wrow, wi);
#pragma unroll
            for (uint j = 0; j < EPW; j++) {
                uint col = g * QGROUP + k * EPW + j;
#if QMODE == MOECL_QM_AFFINE && BITS == 4 && LANES == 16 && defined(__AVX512F__) &&                \
    __has_builtin(__builtin_ia32_permvarsf512)
                /* the code's float by lookup: vpermps reads only the index's low 4 bits */
                VF qf = __builtin_ia32_permvarsf512((float16)(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f,
                                                              6.0f, 7.0f, 8.0f, 9.0f, 10.0f, 11.0f,
                                                              12.0f, 13.0f, 14.0f, 15.0f),
                                                    as_int16(words >> (j * BITS)));
                VF wv = qf * s + b;
                FAST_ACC(acc, wv)
#elif QMODE == MOECL_QM_AFFINE
                VU q = (words >> (j * BITS)) & ((1u << BITS) - 1u);
                VF wv = CONVF(q) * s + b;
                FAST_ACC(acc, wv)
#else
                VU q = (words >> (j * BITS)) & ((1u << BITS) - 1u);
                VF wv = e2m1_vec(q);
                FAST_ACC(gacc, wv)
#endif
            }
        }
#else
        /* other formats: each lane's group through the scalar decoder, stored transposed */
        uint n = min((uint)QGROUP, a->cols - g * QGROUP);
        float wq[QGROUP * LANES];
        for (uint l = 0; l < LANES; l++) {
            float t1[QGROUP];
#if QMODE == MOECL_QM_FLOAT || QMODE == MOECL_QM_AFFINE
            decode_group(wrow[l], srow[l], brow[l], g, n, t1);
#else
            float gs_unused;
            decode_group_seq(wrow[l], srow[l], brow[l], g, t1, &gs_unused);
#endif
            for (uint i = 0; i < n; i++)
                wq[i * LANES + l] = t1[i];
        }
        for (uint i = 0; i < n; i++) {
            uint col = g * QGROUP + i;
            VF wv = VLOAD(i, wq);
#if QMODE == MOECL_QM_FLOAT || QMODE == MOECL_QM_AFFINE
            FAST_ACC(acc, wv)
#else
            FAST_ACC(gacc, wv)
#endif
        }
#endif
#if QMODE != MOECL_QM_FLOAT && QMODE != MOECL_QM_AFFINE
#pragma unroll
        for (uint t = 0; t < FAST_T; t++)
            if (t < tt)
                acc[t] = acc[t] + s * gacc[t];
#endif
    }
    uint nl = min((uint)LANES, a->rows - r0);
    float out[FAST_T][LANES];
#pragma unroll
    for (uint t = 0; t < FAST_T; t++)
        if (t < tt)
            VSTORE(acc[t], 0, out[t]);
    for (uint t = 0; t < nt; t++) {
        __global float *yr = y + (ulong)tp[t] * a->y_stride + r0;
        for (uint l = 0; l < nl; l++) {
            float v = out[t][l], bv = 0.0f;
            if (a->bias_mode != MOECL_BIAS_NONE)
                bv = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, r0 + l, a->bias_dt);
            yr[l] = a->bias_mode == MOECL_BIAS_FUSED   ? round_act(v + bv)
                    : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(v) + bv)
                                                       : round_act(v);
        }
    }
}

__kernel void MOECL_CAT(matmul_fast_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                                 __global const uchar *bi,
                                                 __global const uchar *bias,
                                                 __global const float *x, __global float *y,
                                                 __global const int *ids, struct moecl_qmm_args a) {
    uint rb0 = get_global_id(0) * a.rows_per_item;
    if (rb0 >= a.rows)
        return;
    uint rb1 = min(rb0 + a.rows_per_item, a.rows);
    uint column = get_global_id(1);
    uint tp[FAST_T];
    if (a.use_ids) {
        /* column = expert: gather the vectors routed to it, FAST_T at a time */
        uint p = 0;
        while (p < a.n_vec) {
            uint nt = routed_tile(ids, a.n_vec, column, &p, tp, FAST_T);
            for (uint r0 = rb0; nt == 1 && r0 < rb1; r0 += LANES)
                fast_rows(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, 1);
            for (uint r0 = rb0; nt > 1 && r0 < rb1; r0 += LANES)
                fast_rows(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, FAST_T);
        }
    } else {
        uint p0 = column * a.tile, p1 = min(p0 + a.tile, a.n_vec);
        for (uint p = p0; p < p1; p += FAST_T) {
            uint nt = dense_tile(p, p1, tp, FAST_T);
            for (uint r0 = rb0; nt == 1 && r0 < rb1; r0 += LANES)
                fast_rows(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, 1);
            for (uint r0 = rb0; nt > 1 && r0 < rb1; r0 += LANES)
                fast_rows(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, FAST_T);
        }
    }
}
#endif /* MOECL_NO_FAST */

/* Three products in one launch (the attention's q, k, v: matmul_fmw3, matmul_fmt3): their
 * parameters, and the pick of product m's arguments (am), weights and output (y). */
#define QMM3_PARAMS                                                                                \
    __global const uchar *w0, __global const uchar *sc0, __global const uchar *bi0,                \
        __global const uchar *bias0, __global const uchar *w1, __global const uchar *sc1,          \
        __global const uchar *bi1, __global const uchar *bias1, __global const uchar *w2,          \
        __global const uchar *sc2, __global const uchar *bi2, __global const uchar *bias2,         \
        __global const float *x, __global float *y0, __global float *y1, __global float *y2,       \
        struct moecl_qmm_args a0, struct moecl_qmm_args a1, struct moecl_qmm_args a2
#define QMM3_PICK(m)                                                                               \
    struct moecl_qmm_args am = (m) == 0u ? a0 : (m) == 1u ? a1 : a2;                               \
    __global const uchar *w = (m) == 0u ? w0 : (m) == 1u ? w1 : w2;                                \
    __global const uchar *sc = (m) == 0u ? sc0 : (m) == 1u ? sc1 : sc2;                            \
    __global const uchar *bi = (m) == 0u ? bi0 : (m) == 1u ? bi1 : bi2;                            \
    __global const uchar *bias = (m) == 0u ? bias0 : (m) == 1u ? bias1 : bias2;                    \
    __global float *y = (m) == 0u ? y0 : (m) == 1u ? y1 : y2
