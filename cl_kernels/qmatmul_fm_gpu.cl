/* Fast-numerics quantized matrix products for GPUs (LANES 1): built only with
 * -DFAST_NUMERICS=1, after qmatmul.cl (its macros and argument struct).
 *
 * Decomposition: a work-group of FM_ROWS x 32 work-items owns FM_ROWS consecutive output rows;
 * the 32 work-items of a row read it in 16-byte pieces (one uint4 each, neighbours adjacent, so
 * a row's bytes are read in coalesced 512-byte sweeps), decode every weight once in registers
 * and apply it to up to FM_T input vectors. The 32 partial sums of a row are added in local
 * memory in a fixed order (deterministic from run to run).
 *
 * Numerics (not the reference's): affine weights are fma(q, scale, bias) in float32, then
 * sum += x * w with fma; fp4 formats sum x * code per 16-byte piece and scale the piece's sum.
 * Output rounding and bias modes as the exact kernels. */
#if FAST_NUMERICS && LANES == 1 && !defined(MOECL_NO_FAST)
#pragma OPENCL FP_CONTRACT ON

#define FM_ROWS 8
#define FM_T 8
/* formats whose 16-byte pieces hold whole elements of one group */
#if QMODE == MOECL_QM_AFFINE && (BITS == 2 || BITS == 4 || BITS == 8) && GROUP % (128 / BITS) == 0
#define FM_OK 1
#elif (QMODE == MOECL_QM_MXFP4 || QMODE == MOECL_QM_NVFP4) && GROUP % 32 == 0
#define FM_OK 1
#else
#define FM_OK 0
#endif

#if FM_OK
#define FM_EPW (32 / BITS)  /* elements per 32-bit word */
#define FM_EPP (4 * FM_EPW) /* elements per 16-byte piece */

/* q as float without an int-to-float conversion: 2^23 + q has q in its low mantissa bits. */
inline float fm_code(uint word, uint j) {
    return as_float(0x4B000000u | ((word >> (j * BITS)) & ((1u << BITS) - 1u))) - 8388608.0f;
}

/* acc[t] += the piece's weights . x_t[col0 .. col0 + FM_EPP) for t < tt. */
inline void fm_piece(uint4 q, float s, float b, __local const float *lut,
                     __global const float *const *xv, uint col0, uint tt, float *acc) {
    uint words[4] = {q.s0, q.s1, q.s2, q.s3};
#if QMODE == MOECL_QM_AFFINE
    for (uint k = 0; k < 4; k++) {
#pragma unroll
        for (uint j = 0; j < FM_EPW; j++) {
            float w = fma(fm_code(words[k], j), s, b);
            uint col = col0 + k * FM_EPW + j;
#pragma unroll
            for (uint t = 0; t < FM_T; t++)
                if (t < tt)
                    acc[t] = fma(xv[t][col], w, acc[t]);
        }
    }
    (void)lut;
#else
    float part[FM_T];
#pragma unroll
    for (uint t = 0; t < FM_T; t++)
        part[t] = 0.0f;
    for (uint k = 0; k < 4; k++) {
#pragma unroll
        for (uint j = 0; j < 8; j++) {
            float w = lut[(words[k] >> (4u * j)) & 15u];
            uint col = col0 + k * 8 + j;
#pragma unroll
            for (uint t = 0; t < FM_T; t++)
                if (t < tt)
                    part[t] = fma(xv[t][col], w, part[t]);
        }
    }
#pragma unroll
    for (uint t = 0; t < FM_T; t++)
        if (t < tt)
            acc[t] = fma(part[t], s, acc[t]);
    (void)b;
#endif
}

/* Rows [r0, r0 + FM_ROWS) of expert e against the vectors tp[0..nt): this work-item's share
 * of row r0 + get_local_id(0) / 32, then the work-group's sums and the outputs. */
inline void fm_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
                    __global const uchar *bias, __global const float *x, __global float *y,
                    const struct moecl_qmm_args *a, ulong e, uint r0, const uint *tp, uint nt,
                    __local const float *lut, __local float *red) {
    uint lid = get_local_id(0), lane = lid & 31u, sub = lid >> 5;
    uint r = min(r0 + sub, a->rows - 1);
    __global const float *xv[FM_T];
    for (uint t = 0; t < FM_T; t++)
        xv[t] = x + a->x_offset + (ulong)(tp[min(t, nt - 1)] / a->x_div) * a->x_stride;
    __global const uint *wrow =
        (__global const uint *)(w + a->w_offset + e * a->w_expert_stride + r * a->w_row_stride);
    __global const uchar *srow = sc + a->s_offset + e * a->s_expert_stride + r * a->s_row_stride;
    __global const uchar *brow = bi + a->b_offset + e * a->b_expert_stride + r * a->b_row_stride;
    float acc[FM_T];
    for (uint t = 0; t < FM_T; t++)
        acc[t] = 0.0f;
    uint n_pieces = a->cols / FM_EPP;
    for (uint c = lane; c < n_pieces; c += 32u) {
        uint4 q = vload4(c, wrow);
        uint g = c * FM_EPP / GROUP;
#if QMODE == MOECL_QM_AFFINE
        float s = load_dt(srow, 0, g, WDT), b = load_dt(brow, 0, g, WDT);
#elif QMODE == MOECL_QM_MXFP4
        float s = e8m0_to_f32(srow[g]), b = 0.0f;
#else
        float s = e4m3_to_f32(srow[g]), b = 0.0f;
#endif
        if (nt == 1)
            fm_piece(q, s, b, lut, xv, c * FM_EPP, 1, acc);
        else
            fm_piece(q, s, b, lut, xv, c * FM_EPP, FM_T, acc);
    }
    /* the row's 32 partial sums, per vector, added by one work-item in lane order */
    for (uint t = 0; t < FM_T; t++)
        red[(sub * FM_T + t) * 33u + lane] = acc[t];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid < FM_ROWS * FM_T) {
        uint rs = lid / FM_T, t = lid % FM_T, ro = r0 + rs;
        float v = 0.0f;
        for (uint l = 0; l < 32u; l++)
            v += red[lid * 33u + l];
        if (t < nt && ro < a->rows) {
            float bv = 0.0f;
            if (a->bias_mode != MOECL_BIAS_NONE)
                bv = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, ro, a->bias_dt);
            y[(ulong)tp[t] * a->y_stride + ro] =
                a->bias_mode == MOECL_BIAS_FUSED   ? round_act(v + bv)
                : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(v) + bv)
                                                   : round_act(v);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Work-group (FM_ROWS * 32) x 1 per block of FM_ROWS rows; column get_group_id(1) is the
 * expert (ids) or a block of a.tile vectors. Needs cols a multiple of FM_EPP and a group size
 * that is a multiple of FM_EPP (the launcher checks). */
__kernel __attribute__((reqd_work_group_size(FM_ROWS * 32, 1, 1))) void
MOECL_CAT(matmul_fm_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                 __global const uchar *bi, __global const uchar *bias,
                                 __global const float *x, __global float *y,
                                 __global const int *ids, struct moecl_qmm_args a) {
    __local float red[FM_ROWS * FM_T * 33];
    __local float lut[16];
    uint lid = get_local_id(0);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint r0 = get_group_id(0) * FM_ROWS;
    uint column = get_global_id(1);
    uint tp[FM_T];
    if (a.use_ids) {
        /* column = expert: the vectors routed to it, FM_T at a time (the same in every
         * work-item, so the barriers inside are uniform) */
        uint p = 0;
        while (p < a.n_vec) {
            uint nt = 0;
            for (; p < a.n_vec && nt < FM_T; p++)
                if (ids[p] == (int)column)
                    tp[nt++] = p;
            for (uint t = nt; nt && t < FM_T; t++)
                tp[t] = tp[nt - 1];
            if (nt)
                fm_rows(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, lut, red);
        }
    } else {
        uint p0 = column * a.tile, p1 = min(p0 + a.tile, a.n_vec);
        for (uint p = p0; p < p1; p += FM_T) {
            uint nt = min((uint)FM_T, p1 - p);
            for (uint t = 0; t < FM_T; t++)
                tp[t] = p + min(t, nt - 1);
            fm_rows(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, lut, red);
        }
    }
}
#endif /* FM_OK */
#endif
