/* Fast-numerics products of many vectors for 16-lane CPUs (AVX-512): built after
 * qmatmul_fm_cpu.cl (its decoding, fm_chunk and fm_kp) where that file's FM_CPU holds.
 *
 * Many vectors on AVX-512 (prefill; the tokens routed to one expert): the VECTORS run along the
 * lanes, so that no horizontal sums are needed and an input load serves FB_R rows. A tile of up
 * to FB_TV vectors is stored transposed once per launch by matmul_fmb_prep (element k' of the
 * tile's vectors l < LANES as one vector, then those of vectors LANES..FB_TV). The product
 * decodes a slice of FB_K elements of FB_R rows into dequantized floats in private memory
 * (s*q + b: the affine bias inside the weight, so no lane sums), then for each element takes one
 * or two input vectors and FB_R fmas each with the row's weight broadcast from memory
 * (vfmadd231ps with an embedded broadcast: the fmas, not shifts, shuffles or input loads, fill
 * the two vector ports). Elements follow matmul_fm_prep's permuted order; a row's sum for a
 * vector is one fma chain over the row in that order, whatever tile the vector sits in.
 *
 * Scratch: slot s (FB_TV vectors) at xb + s*FB_TV*KP. Dense: tile j of vectors
 * [j*FB_TV, (j+1)*FB_TV) in slot j. Routed (ids): expert e's tiles, its vectors in the order of
 * ids taken FB_TV at a time, in slots fb_slot_base(e), fb_slot_base(e) + 1, ... */
#if defined(FM_CPU) && LANES == 16 && defined(__AVX512F__)
#define FM_FB 1
#ifndef FB_R
#define FB_R 12 /* rows per pass (8, 12 or 14): 2*FB_R accumulators, 2 inputs: 26 registers */
#endif
#define FB_TV (2 * LANES)      /* vectors per tile */
#define FB_MAX_EXPERTS 256     /* the slot count keeps a private counter per expert */
#define FB_CH (FM_CH >= 128 ? 1 : 128 / FM_CH) /* chunks decoded per slice */
#define FB_K (FB_CH * FM_CH)   /* elements per slice */

/* Slots taken by the experts before e: each its routed vectors' count over FB_TV, rounded up. */
inline uint fb_slot_base(__global const int *ids, uint n_vec, uint e) {
    uint cnt[FB_MAX_EXPERTS];
    for (uint f = 0; f < e; f++)
        cnt[f] = 0;
    for (uint p = 0; p < n_vec; p++) {
        uint f = (uint)ids[p];
        if (f < e)
            cnt[f]++;
    }
    uint base = 0;
    for (uint f = 0; f < e; f++)
        base += (cnt[f] + FB_TV - 1) / FB_TV;
    return base;
}

/* One level of a 16 x 16 block's transposition: for every i with i & S == 0 (S = 8, 4, 2,
 * 1), rows i and i + S with their S x S off-diagonal sub-blocks swapped; the four levels in
 * turn transpose the block. */
#define FB_LEVEL(r, S, LO, HI)                                                                     \
    _Pragma("unroll") for (uint i_ = 0; i_ < 16; i_++) if (!(i_ & (S))) {                         \
        VF a_ = r[i_], b_ = r[i_ + (S)];                                                           \
        r[i_] = __builtin_shufflevector(a_, b_, LO);                                               \
        r[i_ + (S)] = __builtin_shufflevector(a_, b_, HI);                                         \
    }
#define FB_LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define FB_HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define FB_LO4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define FB_HI4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define FB_LO2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define FB_HI2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define FB_LO1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define FB_HI1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

/* The slot position (in permuted order) of a row's element k. */
inline uint fb_perm(uint k) {
    uint c = k / FM_CH, rem = k % FM_CH;
    return c * FM_CH + (rem % FM_EPW) * LANES + rem / FM_EPW;
}

typedef VF __attribute__((aligned(4))) fb_vf_unaligned;

/* The input vectors of outputs tp[0..nt) transposed into one slot (zeros past nt and past the
 * row's end): per half of LANES vectors, blocks of 16 elements x 16 vectors loaded as rows,
 * transposed in registers, each element's vector stored at its permuted position. */
inline void fb_put(__global const float *x, __global float *slot, const struct moecl_qmm_args *a,
                   const uint *tp, uint nt) {
    uint kp = fm_kp(a->cols);
    for (uint h = 0; h < FB_TV / LANES; h++) {
        __global float *o = slot + (ulong)h * kp * LANES;
        __global const float *xr[LANES];
        for (uint l = 0; l < LANES; l++)
            xr[l] = x + a->x_offset + (ulong)(tp[h * LANES + l] / a->x_div) * a->x_stride;
        uint k0 = 0;
        for (; k0 + 16 <= a->cols; k0 += 16) {
            VF r[16];
#pragma unroll
            for (uint l = 0; l < 16; l++)
                r[l] = h * LANES + l < nt ? *(__global const fb_vf_unaligned *)(xr[l] + k0)
                                          : (VF)(0.0f);
            FB_LEVEL(r, 8, FB_LO8, FB_HI8)
            FB_LEVEL(r, 4, FB_LO4, FB_HI4)
            FB_LEVEL(r, 2, FB_LO2, FB_HI2)
            FB_LEVEL(r, 1, FB_LO1, FB_HI1)
#pragma unroll
            for (uint i = 0; i < 16; i++)
                *(__global VF *)(o + (ulong)fb_perm(k0 + i) * LANES) = r[i];
        }
        for (; k0 < kp; k0++) {
            VF v;
            for (uint l = 0; l < LANES; l++)
                v[l] = h * LANES + l < nt && k0 < a->cols ? xr[l][k0] : 0.0f;
            *(__global VF *)(o + (ulong)fb_perm(k0) * LANES) = v;
        }
    }
}

/* One work-item per expert (ids) or per tile of vectors (dense). */
__kernel void MOECL_CAT(matmul_fmb_prep_f32_, WNAME)(__global const float *x, __global float *xb,
                                                   __global const int *ids,
                                                   struct moecl_qmm_args a) {
    uint col = get_global_id(0);
    ulong slot_floats = (ulong)FB_TV * fm_kp(a.cols);
    uint tp[FB_TV];
    if (a.use_ids) {
        uint slot = fb_slot_base(ids, a.n_vec, col), p = 0, nt;
        while ((nt = routed_tile(ids, a.n_vec, col, &p, tp, FB_TV)))
            fb_put(x, xb + slot++ * slot_floats, &a, tp, nt);
    } else if (col * FB_TV < a.n_vec) {
        uint nt = dense_tile(col * FB_TV, a.n_vec, tp, FB_TV);
        fb_put(x, xb + col * slot_floats, &a, tp, nt);
    }
}

/* A decoded field times its scale, plus the affine bias: the dequantized weight. */
#if QMODE == MOECL_QM_AFFINE
#define FB_DEQUANT(q, s, b) fma(q, s, b)
#else
#define FB_DEQUANT(q, s, b) FM_SCALE(q, s)
#endif

/* M(k) for the rows k < FB_R of a pass */
#define FB_EACH_ROW8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#if FB_R == 8
#define FB_EACH_ROW(M) FB_EACH_ROW8(M)
#elif FB_R == 12
#define FB_EACH_ROW(M) FB_EACH_ROW8(M) M(8) M(9) M(10) M(11)
#elif FB_R == 14
#define FB_EACH_ROW(M) FB_EACH_ROW8(M) M(8) M(9) M(10) M(11) M(12) M(13)
#endif

/* Row r's sums for the vectors tp[0..nt) (v[t]), with the row's bias, rounded as fm_store. */
inline void fb_store(__global const uchar *bias, __global float *y, const struct moecl_qmm_args *a,
                     ulong e, uint r, const float *v, const uint *tp, uint nt) {
    float bvl = 0.0f;
    if (a->bias_mode != MOECL_BIAS_NONE)
        bvl = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, r, a->bias_dt);
    for (uint t = 0; t < nt; t++)
        y[(ulong)tp[t] * a->y_stride + r] = a->bias_mode == MOECL_BIAS_FUSED ? round_act(v[t] + bvl)
                                            : a->bias_mode == MOECL_BIAS_AFTER
                                                ? round_act(round_act(v[t]) + bvl)
                                                : round_act(v[t]);
}

/* Rows r .. r + nr - 1 (nr <= FB_R; the missing rows repeat the last and are not stored) of
 * expert e against the nt vectors of slot xt, tv = 1 or 2 input vectors of LANES. */
__attribute__((always_inline)) inline void
fb_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
        __global const uchar *bias, __global const float *xt, __global float *y,
        const struct moecl_qmm_args *a, ulong e, uint r, uint nr, const uint *tp, uint nt,
        float *dec, const uint tv) {
#define FB_ROW_SETUP(k)                                                                            \
    uint row##k = r + min((uint)(k), nr - 1);                                                      \
    __global const uint *wr##k = (__global const uint *)(w + a->w_offset +                         \
                                                         e * a->w_expert_stride +                  \
                                                         row##k * a->w_row_stride);                \
    __global const uchar *srow##k =                                                                \
        sc + a->s_offset + e * a->s_expert_stride + row##k * a->s_row_stride;                      \
    __global const uchar *brow##k =                                                                \
        bi + a->b_offset + e * a->b_expert_stride + row##k * a->b_row_stride;                      \
    VF acc0_##k = (VF)(0.0f), acc1_##k = (VF)(0.0f);
#define FB_ROW_DECODE(k)                                                                           \
    for (uint cc = 0; cc < FB_CH; cc++) {                                                          \
        float *d = dec + (k) * FB_K + cc * FM_CH;                                                  \
        if (c0 + cc < nch) {                                                                       \
            VF s, b;                                                                               \
            VU words = fm_chunk(wr##k, srow##k, brow##k, c0 + cc, nw, &s, &b);                     \
            _Pragma("unroll") for (uint n = 0; n < FM_EPW; n++) *(VF *)(d + n * LANES) =           \
                FB_DEQUANT(FM_DECODE(words >> (n * BITS)), s, b);                                  \
        } else {                                                                                   \
            for (uint n = 0; n < FM_EPW; n++)                                                      \
                *(VF *)(d + n * LANES) = (VF)(0.0f);                                               \
        }                                                                                          \
    }
#define FB_ROW_FMA(k)                                                                              \
    {                                                                                              \
        VF wk = (VF)(dec[(k) * FB_K + p]);                                                         \
        acc0_##k = fma(wk, x0, acc0_##k);                                                          \
        if (tv == 2)                                                                               \
            acc1_##k = fma(wk, x1, acc1_##k);                                                      \
    }
#define FB_ROW_STORE(k)                                                                            \
    if ((k) < nr) {                                                                                \
        float v[FB_TV] __attribute__((aligned(64)));                                               \
        *(VF *)v = acc0_##k;                                                                       \
        *(VF *)(v + LANES) = acc1_##k;                                                             \
        fb_store(bias, y, a, e, r + (k), v, tp, nt);                                               \
    }
    FB_EACH_ROW(FB_ROW_SETUP)
    uint kp = fm_kp(a->cols);
    uint nw = a->cols / FM_EPW;
    uint nch = (nw + LANES - 1) / LANES;
    for (uint c0 = 0; c0 < nch; c0 += FB_CH) {
        FB_EACH_ROW(FB_ROW_DECODE)
        __global const float *x0p = xt + (ulong)c0 * FM_CH * LANES;
        __global const float *x1p = x0p + (ulong)kp * LANES;
        uint np = min((uint)FB_K, kp - c0 * FM_CH);
        for (uint p = 0; p < np; p++) {
            VF x0 = FM_LOADX(x0p + p * LANES);
            VF x1 = tv == 2 ? FM_LOADX(x1p + p * LANES) : (VF)(0.0f);
            FB_EACH_ROW(FB_ROW_FMA)
        }
    }
    FB_EACH_ROW(FB_ROW_STORE)
#undef FB_ROW_SETUP
#undef FB_ROW_DECODE
#undef FB_ROW_FMA
#undef FB_ROW_STORE
}

/* The rows [rb0, rb1) against the nt vectors of one slot. */
inline void fb_tile(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
                    __global const uchar *bias, __global const float *xt, __global float *y,
                    const struct moecl_qmm_args *a, ulong e, uint rb0, uint rb1, const uint *tp,
                    uint nt, float *dec) {
    for (uint r = rb0; r < rb1; r += FB_R) {
        uint nr = min((uint)FB_R, rb1 - r);
        if (nt > LANES)
            fb_rows(w, sc, bi, bias, xt, y, a, e, r, nr, tp, nt, dec, 2);
        else
            fb_rows(w, sc, bi, bias, xt, y, a, e, r, nr, tp, nt, dec, 1);
    }
}

/* Work-item (row block, column): column = expert (ids; all its tiles) or tile of vectors.
 * a.rows_per_item is a multiple of FB_R. xb: the scratch matmul_fmb_prep wrote. */
__kernel void MOECL_CAT(matmul_fmb_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                              __global const uchar *bi, __global const uchar *bias,
                                              __global const float *xb, __global float *y,
                                              __global const int *ids, struct moecl_qmm_args a) {
    uint rb0 = get_global_id(0) * a.rows_per_item;
    if (rb0 >= a.rows)
        return;
    uint rb1 = min(rb0 + a.rows_per_item, a.rows);
    uint col = get_global_id(1);
    ulong slot_floats = (ulong)FB_TV * fm_kp(a.cols);
    float dec[FB_R * FB_K] __attribute__((aligned(64)));
    uint tp[FB_TV];
    if (a.use_ids) {
        uint slot = fb_slot_base(ids, a.n_vec, col), p = 0, nt;
        while ((nt = routed_tile(ids, a.n_vec, col, &p, tp, FB_TV)))
            fb_tile(w, sc, bi, bias, xb + slot++ * slot_floats, y, &a, col, rb0, rb1, tp, nt,
                    dec);
    } else if (col * FB_TV < a.n_vec) {
        uint nt = dense_tile(col * FB_TV, a.n_vec, tp, FB_TV);
        fb_tile(w, sc, bi, bias, xb + col * slot_floats, y, &a, 0, rb0, rb1, tp, nt, dec);
    }
}
#endif /* FM_CPU && LANES == 16 && __AVX512F__ */
