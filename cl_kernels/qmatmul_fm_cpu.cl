/* Fast-numerics quantized matrix products for CPU devices (LANES 8 or 16): built only with
 * -DFAST_NUMERICS=1, after qmatmul.cl (its macros and argument struct).
 *
 * A row's sum is reordered and contracted, as mlx's Metal qmv/qmm kernels and llama.cpp do:
 *   affine:  y_r = sum_g ( s_g * sum_{i in g} x_i q_i  +  b_g * sum_{i in g} x_i )
 *   mxfp4:   y_r = sum_g   s_g * sum_{i in g} x_i e2m1(q_i)
 * in float32 with fma and partial sums in any order; the output rounding and the bias modes are
 * the exact kernels'.
 *
 * Decomposition: the vector lanes run ALONG a row. One vector load takes LANES consecutive
 * packed words of one row (no gathering across rows); element (lane j, field n) of chunk c is
 * row element c*FM_CH + j*FM_EPW + n, and field n of every lane comes out with one shift (and,
 * for 4-bit on AVX-512, one vpermps on a 16-entry table that turns codes into floats). The input
 * vectors are permuted once per launch by matmul_fm_prep into the same order (plus, for affine,
 * each lane's sum of its FM_EPW inputs, which the b_g term needs), so a chunk costs FM_EPW fmas
 * per input vector against contiguous loads. A chunk of LANES words holds FM_GPC whole groups
 * (lanes [k*FM_WPG, (k+1)*FM_WPG) are group k), so the group scales and biases become one
 * vector each. Up to FM_T input vectors (prefill, or the tokens routed to one expert) reuse each
 * decoded chunk.
 *
 * Work-item (row block, column) as in matmul_fast: column = expert (use_ids; it gathers the
 * vectors routed to it) or a block of a.tile vectors (dense); rows walked one at a time. */

#if FAST_NUMERICS && LANES != 1 && !defined(MOECL_NO_FAST)
#if (QMODE == MOECL_QM_AFFINE && (BITS == 2 || BITS == 4 || BITS == 8) &&                         \
     GROUP * BITS <= 32 * LANES) ||                                                                \
    QMODE == MOECL_QM_MXFP4 ||                                                                     \
    (QMODE == MOECL_QM_FLOAT && (WDT == MOECL_DT_BF16 || WDT == MOECL_DT_F32))
/* (float weights: bf16 or f32 rows whose length fills whole 32-bit words; the host checks) */
#define FM_CPU 1
#endif
#endif

#ifdef FM_CPU
#define FM_EPW (32 / BITS)         /* elements per packed word */
#define FM_CH (LANES * FM_EPW)     /* elements per chunk (one vector of words) */
#if QMODE == MOECL_QM_FLOAT
#define FM_WPG LANES /* no groups: one unit scale per chunk */
#else
#define FM_WPG (GROUP * BITS / 32) /* words per group */
#endif
#define FM_GPC (LANES / FM_WPG)    /* whole groups per chunk */
#ifndef FM_T
#define FM_T 8 /* input vectors per pass over a row */
#endif
#ifndef FM_R
#define FM_R 3 /* rows per pass in prefill (fm_rows): 2, 3 or 4 */
#endif

/* Vector loads: one instruction each (the vloadn builtins may assemble a vector from pieces).
 * Weight rows are only 4-byte aligned; the scratch's vectors lie on whole vectors. */
typedef VU __attribute__((aligned(4))) fm_vu_unaligned;
#define FM_LOADW(p) (*(__global const fm_vu_unaligned *)(p))
#define FM_LOADX(p) (*(__global const VF *)(p))

#ifndef FM_PREFETCH
#define FM_PREFETCH 512 /* words ahead (2 KiB): about the bytes in flight per core */
#endif

/* Floats of one permuted input vector: the row length rounded up to whole chunks. */
inline uint fm_kp(uint cols) {
    return (cols + FM_CH - 1) / FM_CH * FM_CH;
}

/* The scratch layout (the `x` argument of matmul_fm): input vector i < n_in = ceil(n_vec /
 * x_div) at xp + i*KP, its element c*FM_CH + j*FM_EPW + n at offset c*FM_CH + n*LANES + j (zero
 * past a.cols); affine adds the lane sums: xp + n_in*KP + i*(KP/FM_EPW) + c*LANES + j. One
 * work-item per input vector. */
__kernel void MOECL_CAT(matmul_fm_prep_f32_, WNAME)(__global const float *x, __global float *xp,
                                                  struct moecl_qmm_args a) {
    uint i = get_global_id(0);
    uint n_in = (a.n_vec + a.x_div - 1) / a.x_div;
    if (i >= n_in)
        return;
    uint kp = fm_kp(a.cols);
    __global const float *xi = x + a.x_offset + (ulong)i * a.x_stride;
    __global float *o = xp + (ulong)i * kp;
#if QMODE == MOECL_QM_AFFINE
    __global float *os = xp + (ulong)n_in * kp + (ulong)i * (kp / FM_EPW);
#endif
    for (uint c = 0; c < kp / FM_CH; c++)
        for (uint j = 0; j < LANES; j++) {
            float s = 0.0f;
            for (uint n = 0; n < FM_EPW; n++) {
                uint k = c * FM_CH + j * FM_EPW + n;
                float v = k < a.cols ? xi[k] : 0.0f;
                o[c * FM_CH + n * LANES + j] = v;
                s += v;
            }
#if QMODE == MOECL_QM_AFFINE
            os[c * LANES + j] = s;
#else
            (void)s;
#endif
        }
}

/* Field values (codes in the low BITS of each lane, higher bits ignored) -> floats. FM_SCALE:
 * a field times its group scale (float weights have none). */
#if QMODE == MOECL_QM_FLOAT && WDT == MOECL_DT_BF16
#define FM_DECODE(v) ASF((v) << 16)
#elif QMODE == MOECL_QM_FLOAT
#define FM_DECODE(v) ASF(v)
#elif QMODE == MOECL_QM_AFFINE && BITS == 4 && LANES == 16 && defined(__AVX512F__) &&                \
    __has_builtin(__builtin_ia32_permvarsf512)
#define FM_DECODE(v)                                                                               \
    __builtin_ia32_permvarsf512((float16)(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f,    \
                                          9.0f, 10.0f, 11.0f, 12.0f, 13.0f, 14.0f, 15.0f),         \
                                as_int16(v))
#elif QMODE == MOECL_QM_AFFINE
#define FM_DECODE(v) CONVF(CONVI((v) & ((1u << BITS) - 1u)))
#elif LANES == 16 && defined(__AVX512F__) && __has_builtin(__builtin_ia32_permvarsf512)
#define FM_DECODE(v) e2m1_vec(v) /* vpermps reads the index's low 4 bits */
#else
#define FM_DECODE(v) e2m1_vec((v) & 15u)
#endif
#if QMODE == MOECL_QM_FLOAT
#define FM_SCALE(q, s) (q)
#define FM_ACC_SCALED(dot, s, acc) ((acc) + (dot))
#else
#define FM_SCALE(q, s) ((q) * (s))
#define FM_ACC_SCALED(dot, s, acc) fma(dot, s, acc)
#endif

/* Lane l of the result = lane l / FM_WPG of v (group k's value in lanes [k*FM_WPG,
 * (k+1)*FM_WPG)): one constant shuffle (a broadcast or a vpermps), not a trip through memory. */
#define FM_IX(l) ((l) / FM_WPG)
#if LANES == 16
#define FM_SPREAD(v)                                                                               \
    __builtin_shufflevector(v, v, FM_IX(0), FM_IX(1), FM_IX(2), FM_IX(3), FM_IX(4), FM_IX(5),      \
                            FM_IX(6), FM_IX(7), FM_IX(8), FM_IX(9), FM_IX(10), FM_IX(11),          \
                            FM_IX(12), FM_IX(13), FM_IX(14), FM_IX(15))
#else
#define FM_SPREAD(v)                                                                               \
    __builtin_shufflevector(v, v, FM_IX(0), FM_IX(1), FM_IX(2), FM_IX(3), FM_IX(4), FM_IX(5),      \
                            FM_IX(6), FM_IX(7))
#endif

inline float fm_hsum(VF v) {
#if LANES == 16
    float8 h = v.lo + v.hi;
#else
    float8 h = v;
#endif
    float4 f = h.lo + h.hi;
    float2 d = f.lo + f.hi;
    return d.x + d.y;
}

/* Group k of the chunk starting at word w0 of the row: its scale (and affine bias), or zeros
 * for a group past the row's end (a partial last chunk). */
inline float fm_scale(__global const uchar *srow, uint g) {
#if QMODE == MOECL_QM_AFFINE
    return load_dt(srow, 0, g, WDT);
#elif QMODE == MOECL_QM_FLOAT
    (void)srow;
    (void)g;
    return 1.0f;
#else
    return e8m0_to_f32(srow[g]);
#endif
}

/* Chunk c of a row (nw packed words): its words (a partial last chunk: whole groups, the rest
 * zero, no read past the row) and its group scales and affine biases spread over the lanes. */
__attribute__((always_inline)) inline VU fm_chunk(__global const uint *wr,
                                                  __global const uchar *srow,
                                                  __global const uchar *brow, uint c, uint nw,
                                                  VF *s_out, VF *b_out) {
    uint w0 = c * LANES;
    VU words;
    VF sv = (VF)(0.0f); /* group k's scale (bias) in lane k */
    VF bv = (VF)(0.0f);
    if (w0 + LANES <= nw) {
        words = FM_LOADW(wr + w0);
#pragma unroll
        for (uint k = 0; k < FM_GPC; k++) {
            sv[k] = fm_scale(srow, c * FM_GPC + k);
#if QMODE == MOECL_QM_AFFINE
            bv[k] = load_dt(brow, 0, c * FM_GPC + k, WDT);
#endif
        }
    } else {
        uint tw[LANES];
        for (uint l = 0; l < LANES; l++)
            tw[l] = w0 + l < nw ? wr[w0 + l] : 0u;
        words = VLOAD(0, tw);
#pragma unroll
        for (uint k = 0; k < FM_GPC; k++) {
            int in = w0 + k * FM_WPG < nw;
            sv[k] = in ? fm_scale(srow, c * FM_GPC + k) : 0.0f;
#if QMODE == MOECL_QM_AFFINE
            bv[k] = in ? load_dt(brow, 0, c * FM_GPC + k, WDT) : 0.0f;
#endif
        }
    }
    (void)brow;
    *s_out = FM_SPREAD(sv);
    *b_out = FM_SPREAD(bv);
    return words;
}

/* The permuted inputs (and affine lane sums) of the vectors tp[0..FM_T) (entries past nt repeat
 * the last vector), once per tile. */
inline void fm_ptrs(__global const float *xp, const struct moecl_qmm_args *a, const uint *tp,
                    uint nt, __global const float **xv, __global const float **xs) {
    uint kp = fm_kp(a->cols), n_in = (a->n_vec + a->x_div - 1) / a->x_div;
    for (uint t = 0; t < FM_T; t++) {
        ulong i = tp[min(t, nt - 1)] / a->x_div;
        xv[t] = xp + i * kp;
        xs[t] = xp + (ulong)n_in * kp + i * (kp / FM_EPW);
    }
}

/* Row r's sums for the vectors tp[0..nt), with the row's bias, rounded to the activation dtype
 * as the exact kernels round them. */
__attribute__((always_inline)) inline void fm_store(__global const uchar *bias, __global float *y,
                                                    const struct moecl_qmm_args *a, ulong e,
                                                    uint r, const VF *acc, const uint *tp,
                                                    uint nt) {
    float bvl = 0.0f;
    if (a->bias_mode != MOECL_BIAS_NONE)
        bvl = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, r, a->bias_dt);
    for (uint t = 0; t < nt; t++) {
        float v = fm_hsum(acc[t]);
        y[(ulong)tp[t] * a->y_stride + r] = a->bias_mode == MOECL_BIAS_FUSED ? round_act(v + bvl)
                                            : a->bias_mode == MOECL_BIAS_AFTER
                                                ? round_act(round_act(v) + bvl)
                                                : round_act(v);
    }
}

/* One chunk c of a row (its words and spread group scales/biases) into acc[0..tt). */
__attribute__((always_inline)) inline void
fm_row_chunk(VU words, VF s, VF b, uint c, __global const float *const *xv,
             __global const float *const *xs, VF *acc, const uint tt) {
#if QMODE != MOECL_QM_AFFINE
    (void)xs;
    (void)b;
#endif
    /* per vector the fields' products summed in one fma chain; with one vector two chains
     * (even and odd fields), so that the chain's latency does not set the pace */
    VF dot[FM_T], dot1 = (VF)(0.0f);
#pragma unroll
    for (uint n = 0; n < FM_EPW; n++) {
        VF q = FM_DECODE(words >> (n * BITS));
#pragma unroll
        for (uint t = 0; t < FM_T; t++)
            if (t < tt) {
                VF xq = FM_LOADX(xv[t] + c * FM_CH + n * LANES);
                if (tt == 1 && (n & 1))
                    dot1 = n == 1 ? q * xq : fma(q, xq, dot1);
                else
                    dot[t] = n == 0 ? q * xq : fma(q, xq, dot[t]);
            }
    }
    if (tt == 1 && FM_EPW > 1)
        dot[0] += dot1;
#pragma unroll
    for (uint t = 0; t < FM_T; t++)
        if (t < tt) {
            acc[t] = FM_ACC_SCALED(dot[t], s, acc[t]);
#if QMODE == MOECL_QM_AFFINE
            acc[t] = fma(b, FM_LOADX(xs[t] + c * LANES), acc[t]);
#endif
        }
}

/* Affine rows with 16 lanes: the scales and biases of 16 groups are loaded and converted as one
 * vector each (FM_SCH chunks' worth), and each chunk takes its groups with one vpermps, instead
 * of a scalar load and insert per group and chunk (decode streams the weights; those per-chunk
 * instructions, not the memory, set its pace). */
#if QMODE == MOECL_QM_AFFINE && LANES == 16 && defined(__AVX512F__) &&                             \
    __has_builtin(__builtin_ia32_permvarsf512) &&                                                  \
    (WDT == MOECL_DT_BF16 || WDT == MOECL_DT_F16 || WDT == MOECL_DT_F32)
#define FM_SVEC 1
#define FM_SCH (LANES / FM_GPC) /* chunks per vector of 16 groups */
inline VF fm_group_vec(__global const uchar *row, uint g0) {
#if WDT == MOECL_DT_BF16
    return as_float16(convert_uint16(vload16(0, (__global const ushort *)row + g0)) << 16);
#elif WDT == MOECL_DT_F16
    return vload_half16(0, (__global const half *)row + g0);
#else
    return vload16(0, (__global const float *)row + g0);
#endif
}
#endif

/* Row r of expert e against the vectors xv/xs[0..tt) (tt a constant after inlining: 1 or FM_T)
 * of which the first nt, tp[0..nt), are written. */
__attribute__((always_inline)) inline void
fm_row(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
       __global const uchar *bias, __global const float *const *xv,
       __global const float *const *xs, __global float *y, const struct moecl_qmm_args *a,
       ulong e, uint r, const uint *tp, uint nt, const uint tt) {
    __global const uint *wr =
        (__global const uint *)(w + a->w_offset + e * a->w_expert_stride + r * a->w_row_stride);
    __global const uchar *srow = sc + a->s_offset + e * a->s_expert_stride + r * a->s_row_stride;
    __global const uchar *brow = bi + a->b_offset + e * a->b_expert_stride + r * a->b_row_stride;
    VF acc[FM_T];
    for (uint t = 0; t < FM_T; t++)
        acc[t] = (VF)(0.0f);
    uint nw = a->cols / FM_EPW; /* packed words in the row */
    uint nch = (nw + LANES - 1) / LANES;
    uint c = 0;
#ifdef FM_SVEC
    for (; c + FM_SCH <= nw / LANES; c += FM_SCH) {
        VF s16 = fm_group_vec(srow, c * FM_GPC), b16 = fm_group_vec(brow, c * FM_GPC);
        for (uint cc = 0; cc < FM_SCH; cc++) {
#if FM_PREFETCH
            if (tt == 1)
                __builtin_prefetch((const __global void *)(wr + (c + cc) * LANES + FM_PREFETCH));
#endif
            int16 ix = (int16)(cc * FM_GPC) + (int16)(FM_IX(0), FM_IX(1), FM_IX(2), FM_IX(3),
                                                      FM_IX(4), FM_IX(5), FM_IX(6), FM_IX(7),
                                                      FM_IX(8), FM_IX(9), FM_IX(10), FM_IX(11),
                                                      FM_IX(12), FM_IX(13), FM_IX(14), FM_IX(15));
            fm_row_chunk(FM_LOADW(wr + (c + cc) * LANES), __builtin_ia32_permvarsf512(s16, ix),
                         __builtin_ia32_permvarsf512(b16, ix), c + cc, xv, xs, acc, tt);
        }
    }
#endif
    for (; c < nch; c++) {
        VF s, b;
#if FM_PREFETCH
        /* one vector: the loop keeps up with memory only if its loads are already on the way
         * (a row block is contiguous, so this runs into the following rows) */
        if (tt == 1)
            __builtin_prefetch((const __global void *)(wr + c * LANES + FM_PREFETCH));
#endif
        VU words = fm_chunk(wr, srow, brow, c, nw, &s, &b);
        fm_row_chunk(words, s, b, c, xv, xs, acc, tt);
    }
    fm_store(bias, y, a, e, r, acc, tp, nt);
}

/* Rows r .. r + FM_R - 1 of expert e against FM_T vectors (prefill, or many tokens on one
 * expert): each decoded field is multiplied by its group scale once (s*q: exact for bf16/f16
 * scales and codes of up to 8 bits) and applied to the FM_T vectors of every row, so every
 * input load serves FM_R rows (the inputs of a tile live in L2, not L1: the loads per fma, not
 * the fmas, set the pace). FM_R * FM_T accumulators, FM_R fields and an input fill the 32
 * vector registers of AVX-512. */
/* M(k) for the rows k < FM_R of fm_rows (one named array per row: the compiler keeps them in
 * registers, where it spilled a two-dimensional array) */
#if FM_R == 2
#define FM_EACH_ROW(M) M(0) M(1)
#elif FM_R == 3
#define FM_EACH_ROW(M) M(0) M(1) M(2)
#else
#define FM_EACH_ROW(M) M(0) M(1) M(2) M(3)
#endif

__attribute__((always_inline)) inline void
fm_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
        __global const uchar *bias, __global const float *const *xv,
        __global const float *const *xs, __global float *y, const struct moecl_qmm_args *a,
        ulong e, uint r, const uint *tp, uint nt) {
#define FM_ROW_SETUP(k)                                                                            \
    __global const uint *wr##k = (__global const uint *)(w + a->w_offset +                         \
                                                         e * a->w_expert_stride +                  \
                                                         (r + k) * a->w_row_stride);               \
    __global const uchar *srow##k =                                                                \
        sc + a->s_offset + e * a->s_expert_stride + (r + k) * a->s_row_stride;                     \
    __global const uchar *brow##k =                                                                \
        bi + a->b_offset + e * a->b_expert_stride + (r + k) * a->b_row_stride;                     \
    VF acc##k[FM_T];                                                                               \
    for (uint t = 0; t < FM_T; t++)                                                                \
        acc##k[t] = (VF)(0.0f);
#define FM_ROW_CHUNK(k)                                                                            \
    VF s##k, b##k;                                                                                 \
    VU words##k = fm_chunk(wr##k, srow##k, brow##k, c, nw, &s##k, &b##k);
#define FM_ROW_FIELD(k) VF q##k = FM_SCALE(FM_DECODE(words##k >> (n * BITS)), s##k);
#define FM_ROW_FMA(k) acc##k[t] = fma(q##k, xq, acc##k[t]);
#define FM_ROW_BIAS(k) acc##k[t] = fma(b##k, xsv, acc##k[t]);
#define FM_ROW_NO_BIAS(k) (void)b##k;
#define FM_ROW_STORE(k) fm_store(bias, y, a, e, r + k, acc##k, tp, nt);
    FM_EACH_ROW(FM_ROW_SETUP)
#if QMODE != MOECL_QM_AFFINE
    (void)xs;
#endif
    uint nw = a->cols / FM_EPW;
    uint nch = (nw + LANES - 1) / LANES;
    for (uint c = 0; c < nch; c++) {
        FM_EACH_ROW(FM_ROW_CHUNK)
#pragma unroll
        for (uint n = 0; n < FM_EPW; n++) {
            FM_EACH_ROW(FM_ROW_FIELD)
#pragma unroll
            for (uint t = 0; t < FM_T; t++) {
                VF xq = FM_LOADX(xv[t] + c * FM_CH + n * LANES);
                FM_EACH_ROW(FM_ROW_FMA)
            }
        }
#if QMODE == MOECL_QM_AFFINE
#pragma unroll
        for (uint t = 0; t < FM_T; t++) {
            VF xsv = FM_LOADX(xs[t] + c * LANES);
            FM_EACH_ROW(FM_ROW_BIAS)
        }
#else
        FM_EACH_ROW(FM_ROW_NO_BIAS)
#endif
    }
    FM_EACH_ROW(FM_ROW_STORE)
#undef FM_ROW_SETUP
#undef FM_ROW_CHUNK
#undef FM_ROW_FIELD
#undef FM_ROW_FMA
#undef FM_ROW_BIAS
#undef FM_ROW_NO_BIAS
#undef FM_ROW_STORE
}

/* x: the scratch matmul_fm_prep wrote (not the input vectors themselves). */
__kernel void MOECL_CAT(matmul_fm_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                             __global const uchar *bi, __global const uchar *bias,
                                             __global const float *x, __global float *y,
                                             __global const int *ids, struct moecl_qmm_args a) {
    uint rb0 = get_global_id(0) * a.rows_per_item;
    if (rb0 >= a.rows)
        return;
    uint rb1 = min(rb0 + a.rows_per_item, a.rows);
    uint column = get_global_id(1);
    uint tp[FM_T];
    __global const float *xv[FM_T], *xs[FM_T];
    if (a.use_ids == 2) {
        /* few vectors (decode): column = vector, its expert from ids; no idle columns */
        if (column >= a.n_vec)
            return;
        tp[0] = column;
        fm_ptrs(x, &a, tp, 1, xv, xs);
        for (uint r = rb0; r < rb1; r++)
            fm_row(w, sc, bi, bias, xv, xs, y, &a, (ulong)ids[column], r, tp, 1, 1);
    } else if (a.use_ids) {
        /* column = expert: gather the vectors routed to it, FM_T at a time */
        uint p = 0;
        while (p < a.n_vec) {
            uint nt = routed_tile(ids, a.n_vec, column, &p, tp, FM_T);
            if (nt)
                fm_ptrs(x, &a, tp, nt, xv, xs);
            for (uint r = rb0; nt == 1 && r < rb1; r++)
                fm_row(w, sc, bi, bias, xv, xs, y, &a, column, r, tp, nt, 1);
            uint r = rb0;
            for (; nt > 1 && r + FM_R <= rb1; r += FM_R)
                fm_rows(w, sc, bi, bias, xv, xs, y, &a, column, r, tp, nt);
            for (; nt > 1 && r < rb1; r++)
                fm_row(w, sc, bi, bias, xv, xs, y, &a, column, r, tp, nt, FM_T);
        }
    } else {
        uint p0 = column * a.tile, p1 = min(p0 + a.tile, a.n_vec);
        for (uint p = p0; p < p1; p += FM_T) {
            uint nt = dense_tile(p, p1, tp, FM_T);
            fm_ptrs(x, &a, tp, nt, xv, xs);
            for (uint r = rb0; nt == 1 && r < rb1; r++)
                fm_row(w, sc, bi, bias, xv, xs, y, &a, 0, r, tp, nt, 1);
            uint r = rb0;
            for (; nt > 1 && r + FM_R <= rb1; r += FM_R)
                fm_rows(w, sc, bi, bias, xv, xs, y, &a, 0, r, tp, nt);
            for (; nt > 1 && r < rb1; r++)
                fm_row(w, sc, bi, bias, xv, xs, y, &a, 0, r, tp, nt, FM_T);
        }
    }
}

#endif /* FM_CPU */
