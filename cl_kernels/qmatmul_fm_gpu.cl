/* Fast-numerics quantized matrix products for GPUs (LANES 1): built only with
 * -DFAST_NUMERICS=1, after qmatmul.cl (its macros and argument struct).
 *
 * Decomposition: a work-group of 8 warps of 32 work-items owns FM_WG_ROWS consecutive rows, a
 * warp FM_R of them. Work-item `lane` of a warp takes the rows' 32-bit words lane, lane + 32,
 * ... (a warp reads 128 contiguous bytes of each row per step), loads the word's input elements
 * once per vector and applies them to its FM_R rows and up to FM_T vectors from registers. The
 * 32 partial sums of a (row, vector) are added in local memory in lane order (the same result
 * from run to run).
 *
 * Numerics (not the reference's): a weight is fma(q, scale, bias) (affine) or code * scale (fp4)
 * in float32, and sum = fma(x, w, sum). Output rounding and bias modes as the exact kernels. */
#if FAST_NUMERICS && LANES == 1 && !defined(MOECL_NO_FAST)
#pragma OPENCL FP_CONTRACT ON

#define FM_WARPS 8
#define FM_R 4
#define FM_T 8
#define FM_WG_ROWS (FM_WARPS * FM_R)
#if QMODE == MOECL_QM_AFFINE && (BITS == 2 || BITS == 4 || BITS == 8)
#define FM_OK 1
#elif QMODE == MOECL_QM_MXFP4 || QMODE == MOECL_QM_NVFP4
#define FM_OK 1
#else
#define FM_OK 0
#endif

#if FM_OK
#define FM_EPW (32 / BITS) /* elements per 32-bit word (a group holds whole words) */

/* Field j of a word as float. Affine: 2^23 + q carries q in its low mantissa bits, so q needs
 * no int-to-float conversion; fp4: the E2M1 value from the table in local memory. */
#if QMODE == MOECL_QM_AFFINE
#define FM_CODE(word, j)                                                                           \
    (as_float(0x4B000000u | (((word) >> ((j)*BITS)) & ((1u << BITS) - 1u))) - 8388608.0f)
#else
#define FM_CODE(word, j) lut[((word) >> ((j)*4u)) & 15u]
#endif

/* Rows [r0, r0 + FM_WG_ROWS) of expert e against the vectors tp[0..nt) (tt = 1 or FM_T, a
 * constant after inlining; entries past nt repeat the last vector). */
__attribute__((always_inline)) inline void
fm_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
        __global const uchar *bias, __global const float *x, __global float *y,
        const struct moecl_qmm_args *a, ulong e, uint r0, const uint *tp, uint nt, const uint tt,
        __local const float *lut, __local float *red) {
    uint lid = get_local_id(0), lane = lid & 31u, warp = lid >> 5;
    __global const uint *wrow[FM_R];
    __global const uchar *srow[FM_R], *brow[FM_R];
    for (uint i = 0; i < FM_R; i++) {
        ulong r = min(r0 + warp * FM_R + i, a->rows - 1);
        wrow[i] =
            (__global const uint *)(w + a->w_offset + e * a->w_expert_stride + r * a->w_row_stride);
        srow[i] = sc + a->s_offset + e * a->s_expert_stride + r * a->s_row_stride;
        brow[i] = bi + a->b_offset + e * a->b_expert_stride + r * a->b_row_stride;
    }
    __global const float *xv[FM_T];
    for (uint t = 0; t < FM_T; t++)
        xv[t] = x + a->x_offset + (ulong)(tp[min(t, nt - 1)] / a->x_div) * a->x_stride;
    float acc[FM_R][FM_T];
    for (uint i = 0; i < FM_R; i++)
        for (uint t = 0; t < FM_T; t++)
            acc[i][t] = 0.0f;
    uint n_words = a->cols / FM_EPW;
    /* two sweeps per iteration: their loads issue together (H100, decode tg64: 156.7 -> 163.9
     * tokens/s; four: 154.1) */
#pragma unroll 2
    for (uint wi = lane; wi < n_words; wi += 32u) {
        uint g = wi * FM_EPW / GROUP;
        uint word[FM_R];
        float s[FM_R], b[FM_R];
#pragma unroll
        for (uint i = 0; i < FM_R; i++) {
            word[i] = wrow[i][wi];
#if QMODE == MOECL_QM_AFFINE
            s[i] = load_dt(srow[i], 0, g, WDT);
            b[i] = load_dt(brow[i], 0, g, WDT);
#elif QMODE == MOECL_QM_MXFP4
            s[i] = e8m0_to_f32(srow[i][g]);
            b[i] = 0.0f;
#else
            s[i] = e4m3_to_f32(srow[i][g]);
            b[i] = 0.0f;
#endif
        }
#pragma unroll
        for (uint j = 0; j < FM_EPW; j++) {
            float xj[FM_T];
#pragma unroll
            for (uint t = 0; t < FM_T; t++)
                if (t < tt)
                    xj[t] = xv[t][wi * FM_EPW + j];
#pragma unroll
            for (uint i = 0; i < FM_R; i++) {
#if QMODE == MOECL_QM_AFFINE
                float wv = fma(FM_CODE(word[i], j), s[i], b[i]);
#else
                float wv = FM_CODE(word[i], j) * s[i];
#endif
#pragma unroll
                for (uint t = 0; t < FM_T; t++)
                    if (t < tt)
                        acc[i][t] = fma(xj[t], wv, acc[i][t]);
            }
        }
    }
    /* each (row, vector) sum: its 32 lanes' partial sums in lane order */
    __local float *wr = red + warp * (FM_R * FM_T * 33u);
#pragma unroll
    for (uint i = 0; i < FM_R; i++)
#pragma unroll
        for (uint t = 0; t < FM_T; t++)
            if (t < tt)
                wr[(i * FM_T + t) * 33u + lane] = acc[i][t];
    barrier(CLK_LOCAL_MEM_FENCE);
    {
        uint i = lane / FM_T, t = lane % FM_T, ro = r0 + warp * FM_R + i;
        if (i < FM_R && t < nt && ro < a->rows) {
            float v = 0.0f;
            for (uint l = 0; l < 32u; l++)
                v += wr[lane * 33u + l];
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

/* Work-group FM_WARPS * 32 per block of FM_WG_ROWS rows; column get_group_id(1) is the expert
 * (ids) or an output vector (use_ids 2: no work-groups for the experts nobody chose) or a block of
 * a.tile vectors. Needs cols a multiple of FM_EPW (the launcher checks). */
__kernel __attribute__((reqd_work_group_size(FM_WARPS * 32, 1, 1))) void
MOECL_CAT(matmul_fm_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                 __global const uchar *bi, __global const uchar *bias,
                                 __global const float *x, __global float *y,
                                 __global const int *ids, struct moecl_qmm_args a) {
    __local float red[FM_WARPS * FM_R * FM_T * 33];
    __local float lut[16];
    uint lid = get_local_id(0);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint r0 = get_group_id(0) * FM_WG_ROWS;
    uint column = get_global_id(1);
    uint tp[FM_T];
    if (a.use_ids == 2) {
        /* column = output vector (few vectors, e.g. a decode step's top-k): its expert */
        tp[0] = column;
        if (column < a.n_vec)
            fm_rows(w, sc, bi, bias, x, y, &a, (ulong)ids[column], r0, tp, 1, 1, lut, red);
    } else if (a.use_ids) {
        /* column = expert: the vectors routed to it, FM_T at a time (the same in every
         * work-item, so the barriers inside are uniform) */
        uint p = 0;
        while (p < a.n_vec) {
            uint nt = routed_tile(ids, a.n_vec, column, &p, tp, FM_T);
            if (nt == 1)
                fm_rows(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, 1, lut, red);
            else if (nt > 1)
                fm_rows(w, sc, bi, bias, x, y, &a, column, r0, tp, nt, FM_T, lut, red);
        }
    } else {
        uint p0 = column * a.tile, p1 = min(p0 + a.tile, a.n_vec);
        for (uint p = p0; p < p1; p += FM_T) {
            uint nt = dense_tile(p, p1, tp, FM_T);
            if (nt == 1)
                fm_rows(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, 1, lut, red);
            else
                fm_rows(w, sc, bi, bias, x, y, &a, 0, r0, tp, nt, FM_T, lut, red);
        }
    }
}

/* One vector per column (decode: a dense product of one vector, or a token's top-k with a
 * column per output vector; the launcher takes it below 1024 rows): a work-group of 8 warps
 * owns a.rows_per_item rows (1, 2, 4 or 8),
 * each row split among 8 / rows_per_item warps (so that small products such as the router's
 * still spread over many work-groups); a work-item runs one fma chain over every (32 * warps
 * per row)-th word of its row, the chains of a row are added as a tree in local memory. */
/* matmul_fmv's work-group on its input row xr (instantiated for a row in global and in local
 * memory); red: 256 floats of local memory. */
#if QMODE == MOECL_QM_AFFINE
#define FMV_TERM(xv, word, j) fma((xv), fma(FM_CODE(word, j), s, b), acc)
#else
#define FMV_TERM(xv, word, j) fma((xv), FM_CODE(word, j) * s, acc)
#endif
#if QMODE == MOECL_QM_AFFINE
#define FMV_SCALES float s = load_dt(srow, 0, g, WDT), b = load_dt(brow, 0, g, WDT);
#elif QMODE == MOECL_QM_MXFP4
#define FMV_SCALES float s = e8m0_to_f32(srow[g]);
#else
#define FMV_SCALES float s = e4m3_to_f32(srow[g]);
#endif
#define MOECL_FMV_FN(NAME, AS)                                                                     \
    __attribute__((always_inline)) inline void NAME(                                               \
        __global const uchar *w, __global const uchar *sc, __global const uchar *bi,               \
        __global const uchar *bias, AS const float *xr, __global float *y, ulong e, uint vec,      \
        const struct moecl_qmm_args *a, __local const float *lut, __local float *red) {            \
        uint lid = get_local_id(0);                                                                \
        uint wpr = 8u / a->rows_per_item, span = 32u * wpr; /* warps, work-items per row */        \
        uint ri = lid / span, part = lid % span;                                                   \
        uint row = get_group_id(0) * a->rows_per_item + ri;                                        \
        ulong ro = min(row, a->rows - 1);                                                          \
        __global const uint *wrow = (__global const uint *)(w + a->w_offset +                      \
                                                           e * a->w_expert_stride +                \
                                                           ro * a->w_row_stride);                  \
        __global const uchar *srow =                                                               \
            sc + a->s_offset + e * a->s_expert_stride + ro * a->s_row_stride;                      \
        __global const uchar *brow =                                                               \
            bi + a->b_offset + e * a->b_expert_stride + ro * a->b_row_stride;                      \
        float acc = 0.0f;                                                                          \
        uint n_words = a->cols / FM_EPW;                                                           \
        _Pragma("unroll 4") for (uint wi = part; wi < n_words; wi += span) {                       \
            uint word = wrow[wi], g = wi * FM_EPW / GROUP;                                         \
            FMV_SCALES                                                                             \
            _Pragma("unroll") for (uint j = 0; j < FM_EPW; j++) acc =                              \
                FMV_TERM(xr[wi * FM_EPW + j], word, j);                                            \
        }                                                                                          \
        red[lid] = acc;                                                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        for (uint st = span / 2; st > 0; st >>= 1) {                                               \
            if (part < st)                                                                         \
                red[lid] += red[lid + st];                                                         \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        }                                                                                          \
        if (part == 0 && row < a->rows) {                                                          \
            float v = red[lid], bv = 0.0f;                                                         \
            if (a->bias_mode != MOECL_BIAS_NONE)                                                   \
                bv = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, row, a->bias_dt);   \
            y[(ulong)vec * a->y_stride + row] =                                                    \
                a->bias_mode == MOECL_BIAS_FUSED   ? round_act(v + bv)                             \
                : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(v) + bv)                  \
                                                   : round_act(v);                                 \
        }                                                                                          \
    }
MOECL_FMV_FN(fmv_rows_g, __global)
MOECL_FMV_FN(fmv_rows_l, __local)

__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmv_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                  __global const uchar *bi, __global const uchar *bias,
                                  __global const float *x, __global float *y,
                                  __global const int *ids, struct moecl_qmm_args a) {
    __local float red[256];
    __local float lut[16];
    uint lid = get_local_id(0), vec = get_group_id(1);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    ulong e = a.use_ids ? (ulong)ids[vec] : 0;
    fmv_rows_g(w, sc, bi, bias, x + a.x_offset + (ulong)(vec / a.x_div) * a.x_stride, y, e, vec,
               &a, lut, red);
}

/* matmul_fmv of one dense vector with RMSNorm(x) as its input (decode's router after the
 * post-attention norm): every work-group computes the normed row into local memory as
 * rmsnorm_wg_f32 does in fast numerics (weight nw at nw_offset, MOECL_DT_* nw_dt; a.cols <=
 * RMS_MAX), the first also writes it to xn; then the rows as matmul_fmv computes them (the same
 * bits as the norm and matmul_fmv launched apart). */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmvn_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                   __global const uchar *bi, __global const uchar *bias,
                                   __global const float *x, __global float *y,
                                   __global float *xn, struct moecl_qmm_args a,
                                   __global const uchar *nw, ulong nw_offset, uint nw_dt,
                                   float eps) {
    __local float red[256];
    __local float lut[16];
    __local float xl[RMS_MAX];
    uint lid = get_local_id(0), n = a.cols;
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    __global const float *xr = x + a.x_offset;
    float inv = rms_inv_fast(xr, red, n, eps);
    int first = get_group_id(0) == 0;
#pragma unroll
    for (uint j = 0; j < RMS_MAX / RMS_WG; j++) {
        uint i = lid + j * RMS_WG;
        if (i < n) {
            float v = round_act(round_act(xr[i] * inv) * load_dt(nw, nw_offset, i, nw_dt));
            xl[i] = v;
            if (first)
                xn[i] = v;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    fmv_rows_l(w, sc, bi, bias, xl, y, 0, 0, &a, lut, red);
}

/* Tiled product for many vectors (prefill, and the tokens routed to one expert): a work-group
 * of 256 work-items computes a block of FMT_BM rows x FMT_BN vectors, FMT_BK columns at a
 * time: the rows' words are dequantized into local memory (one float per weight), the vectors'
 * columns copied beside them (both column-major, so that a work-item reads 4 rows and 4
 * vectors as two float4), and work-item (tx, ty) accumulates rows 4 ty .. 4 ty + 3 and vectors
 * 4 tx .. 4 tx + 3 over the block's columns in order. Each weight is read from global memory
 * once per block of FMT_BN vectors instead of once per FM_T. Column get_group_id(1) is the
 * expert (ids; its routed vectors are gathered FMT_BN at a time, in any order: each output is
 * computed the same wherever it sits in a block) or a block of FMT_BN vectors. */
#define FMT_BM 64
#define FMT_BN 64
#define FMT_BK 32                 /* 64: pp512 1049 against 1068 tokens/s on an H100 */
#define FMT_WPR (FMT_BK / FM_EPW) /* words per row in a block of columns */

__attribute__((always_inline)) inline void
fmt_block(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
          __global const uchar *bias, __global const float *x, __global float *y,
          const struct moecl_qmm_args *a, ulong e, uint r0, __local const uint *tp, uint nt,
          __local const float *lut, __local float *ws, __local float *xs) {
    uint lid = get_local_id(0), tx = lid & 15u, ty = lid >> 4;
    float acc[4][4];
    for (uint i = 0; i < 4; i++)
        for (uint j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    /* a work-item loads the words of one row (lid % FMT_BM: 256 is a multiple of FMT_BM) and
     * the columns of one vector (lid % FMT_BN), so their addresses are set up once */
    uint lr = lid % FMT_BM, lw = lid / FMT_BM, lv = lid % FMT_BN, lc = lid / FMT_BN;
    ulong ro = min(r0 + lr, a->rows - 1);
    __global const uint *wrow =
        (__global const uint *)(w + a->w_offset + e * a->w_expert_stride + ro * a->w_row_stride);
    __global const uchar *srow = sc + a->s_offset + e * a->s_expert_stride + ro * a->s_row_stride;
    __global const uchar *brow = bi + a->b_offset + e * a->b_expert_stride + ro * a->b_row_stride;
    __global const float *xrow =
        x + a->x_offset + (ulong)(tp[min(lv, nt - 1)] / a->x_div) * a->x_stride;
    for (uint k0 = 0; k0 < a->cols; k0 += FMT_BK) {
        /* the rows' weights: word wi of row lr -> ws[column][lr] */
        for (uint wi = lw; wi < FMT_WPR; wi += 256u / FMT_BM) {
            uint c = k0 + wi * FM_EPW, word = 0;
            float s = 0.0f, b = 0.0f;
            if (c < a->cols) {
                word = wrow[c / FM_EPW];
                uint g = c / GROUP;
#if QMODE == MOECL_QM_AFFINE
                s = load_dt(srow, 0, g, WDT);
                b = load_dt(brow, 0, g, WDT);
#elif QMODE == MOECL_QM_MXFP4
                s = e8m0_to_f32(srow[g]);
#else
                s = e4m3_to_f32(srow[g]);
#endif
            }
#pragma unroll
            for (uint j = 0; j < FM_EPW; j++)
#if QMODE == MOECL_QM_AFFINE
                ws[(wi * FM_EPW + j) * FMT_BM + lr] = fma(FM_CODE(word, j), s, b);
#else
                ws[(wi * FM_EPW + j) * FMT_BM + lr] = FM_CODE(word, j) * s;
#endif
        }
        /* the vectors' columns: column c of vector lv -> xs[c][lv] (zeros past cols) */
#pragma unroll 4
        for (uint c = lc; c < FMT_BK; c += 256u / FMT_BN)
            xs[c * FMT_BN + lv] = k0 + c < a->cols ? xrow[k0 + c] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 8
        for (uint c = 0; c < FMT_BK; c++) {
            float4 xq = vload4(0, xs + c * FMT_BN + 4u * tx);
            float4 wq = vload4(0, ws + c * FMT_BM + 4u * ty);
            float wv[4] = {wq.x, wq.y, wq.z, wq.w};
#pragma unroll
            for (uint i = 0; i < 4; i++) {
                acc[i][0] = fma(xq.x, wv[i], acc[i][0]);
                acc[i][1] = fma(xq.y, wv[i], acc[i][1]);
                acc[i][2] = fma(xq.z, wv[i], acc[i][2]);
                acc[i][3] = fma(xq.w, wv[i], acc[i][3]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#pragma unroll
    for (uint i = 0; i < 4; i++) {
        uint ro = r0 + 4u * ty + i;
        if (ro >= a->rows)
            continue;
        float bv = 0.0f;
        if (a->bias_mode != MOECL_BIAS_NONE)
            bv = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, ro, a->bias_dt);
#pragma unroll
        for (uint j = 0; j < 4; j++) {
            uint v = 4u * tx + j;
            if (v >= nt)
                continue;
            float s = acc[i][j];
            y[(ulong)tp[v] * a->y_stride + ro] =
                a->bias_mode == MOECL_BIAS_FUSED   ? round_act(s + bv)
                : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(s) + bv)
                                                   : round_act(s);
        }
    }
}

#endif /* FM_OK */
#endif
