/* Fast-numerics decode product for GPUs with 16-byte weight loads (matmul_fmw): built only with
 * -DFAST_NUMERICS=1 and LANES 1, after qmatmul.cl and qmatmul_fm_gpu.cl (their macros).
 *
 * One vector per column (a decode step: a dense product of one vector, or a token's top-k with a
 * column per output vector). A work-group of 8 warps owns 8 * R consecutive rows, a warp R of
 * them (R = FW_T, a build option the host passes as a.rows_per_item too; FW_T / 2 rows of each
 * matrix for the gate/up pair). In step s, work-item `lane` of a warp loads the 16
 * bytes (FW_EPV elements, inside one quantization group) at index s * 32 + lane of each of its
 * R rows and the FW_EPV input elements beside them (float4 loads, used for all R rows); the
 * warp reads 512 contiguous bytes of each row per step. The launcher checks the alignments
 * (rows, experts and offsets on 16 bytes, the input on 4 floats) and that a row is whole 16-byte
 * units; other products keep matmul_fm.
 *
 * Numerics: affine y = sum_g (s_g * sum_i x_i q_i + b_g * sum_i x_i), each lane's part of a group
 * a dot product in element order (one fma chain); mxfp4 y = sum_g s_g * sum_i x_i e2m1(q_i). A
 * row's 32 lane sums are added as a tree in local memory (the same result from run to run).
 *
 * Affine codes come out without shifts: field n of a 32-bit word lies in its low or high half
 * at bit BITS * (n % FW_FH); as_float(0x4B000000 | (half & mask)) - 2^23 is q * 2^(BITS*(n%FW_FH))
 * exactly, and the input element was multiplied by 2^-(BITS*(n%FW_FH)) beforehand (exact: a
 * power of two), so each product is x * q as a plain fma would give it. fp4 codes go through a
 * 16-entry table in local memory (a 256-entry table of both nibbles of a byte was slower on an
 * H100: its lookups collide in the memory banks). */
#if FAST_NUMERICS && LANES == 1 && !defined(MOECL_NO_FAST)
#if (QMODE == MOECL_QM_AFFINE && (BITS == 2 || BITS == 4 || BITS == 8) && GROUP * BITS >= 128) ||  \
    QMODE == MOECL_QM_MXFP4
#define FW_EPV (128 / BITS) /* elements per 16-byte load */
#define FW_FH (16 / BITS)   /* fields per half word */
/* rows of a warp (both matrices of a gate/up pair): a build option, so every loop over them has
 * a fixed trip count and the rows' chains interleave */
#ifndef FW_T
#define FW_T 4
#endif

/* The lane's FW_EPV inputs at element `base` of xr (prescaled for the affine fields) and their
 * sum; fw_inputs_l for an input row in local memory. */
#define FW_INPUTS_FN(NAME, AS)                                                                     \
    __attribute__((always_inline)) inline float NAME(AS const float *xr, uint base, float *xs) {   \
        AS const float4 *x4 = (AS const float4 *)(xr + base);                                      \
        float xsum = 0.0f;                                                                         \
        _Pragma("unroll") for (uint k = 0; k < FW_EPV / 4; k++) {                                  \
            float4 v = x4[k];                                                                      \
            xs[4 * k] = v.x;                                                                       \
            xs[4 * k + 1] = v.y;                                                                   \
            xs[4 * k + 2] = v.z;                                                                   \
            xs[4 * k + 3] = v.w;                                                                   \
        }                                                                                          \
        FW_PRESCALE(xs, xsum)                                                                      \
        return xsum;                                                                               \
    }
#if QMODE == MOECL_QM_AFFINE
/* field n = j % (32 / BITS) of its word: x * 2^-(BITS * (n % FW_FH)), and the inputs' sum */
#define FW_PRESCALE(xs, xsum)                                                                      \
    _Pragma("unroll") for (uint j = 0; j < FW_EPV; j++) {                                          \
        xsum += xs[j];                                                                             \
        xs[j] *= 1.0f / (float)(1u << (BITS * ((j % (32 / BITS)) % FW_FH)));                       \
    }
#else
#define FW_PRESCALE(xs, xsum)
#endif
FW_INPUTS_FN(fw_inputs, __global)
FW_INPUTS_FN(fw_inputs_l, __local)

/* sum_j xs[j] * code_j over one 16-byte load (xs prescaled: see above). */
__attribute__((always_inline)) inline float fw_dot(uint4 v, const float *xs,
                                                   __local const float *lut) {
    uint words[4] = {v.x, v.y, v.z, v.w};
    float dot = 0.0f;
#pragma unroll
    for (uint k = 0; k < 4; k++) {
#if QMODE == MOECL_QM_AFFINE
        uint hw[2] = {words[k], words[k] >> 16};
#pragma unroll
        for (uint n = 0; n < 32 / BITS; n++) {
            uint m = hw[n / FW_FH] & (((1u << BITS) - 1u) << (BITS * (n % FW_FH)));
            float q = as_float(0x4B000000u | m) - 8388608.0f;
            dot = fma(xs[k * (32 / BITS) + n], q, dot);
        }
#else
#pragma unroll
        for (uint n = 0; n < 8; n++)
            dot = fma(xs[k * 8 + n], lut[(words[k] >> (4u * n)) & 15u], dot);
#endif
    }
    return dot;
}

/* Unit u of a row (16 bytes) with its group's scale and bias (mxfp4: the scale, b 0). */
__attribute__((always_inline)) inline void fw_load(__global const uint4 *wr,
                                                   __global const uchar *sr,
                                                   __global const uchar *br, uint u, uint4 *v,
                                                   float *s, float *b) {
    uint g = u * FW_EPV / GROUP;
    *v = wr[u];
#if QMODE == MOECL_QM_AFFINE
    *s = load_dt(sr, 0, g, WDT);
    *b = load_dt(br, 0, g, WDT);
#else
    (void)br;
    *s = e8m0_to_f32(sr[g]);
    *b = 0.0f;
#endif
}

/* The fp4 code table in local memory (mxfp4; nothing for affine). */
inline void fw_lut(__local float *lut) {
#if QMODE == MOECL_QM_MXFP4
    uint lid = get_local_id(0);
    if (lid < 16u)
        lut[lid] = e2m1_to_f32(lid);
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    (void)lut;
#endif
}

/* A product's output from its row sum v: the bias modes and roundings of matmul_fm. */
inline float fw_out(float v, __global const uchar *bias, const struct moecl_qmm_args *a, ulong e,
                    uint ro) {
    float bv = 0.0f;
    if (a->bias_mode != MOECL_BIAS_NONE)
        bv = load_dt(bias, a->bias_offset + e * a->bias_expert_stride, ro, a->bias_dt);
    return a->bias_mode == MOECL_BIAS_FUSED   ? round_act(v + bv)
           : a->bias_mode == MOECL_BIAS_AFTER ? round_act(round_act(v) + bv)
                                              : round_act(v);
}

/* RoPE in matmul_fmw3 (decode): a matrix of whole heads is computed in slot order, slot s of head
 * h holding row fw_rope_row(s, hd): slots 2i and 2i + 1 hold rows i and i + hd / 2 of the head,
 * the pair rope_f32 rotates together. A warp's R slots start at an even slot (R even), so both
 * rows of each of its pairs are in the warp. */
inline uint fw_rope_row(uint s, uint hd) {
    uint j = s % hd;
    return s - j + (j >> 1) + (j & 1u) * (hd >> 1);
}

/* Rotated value of the slot's row (upper: the row of the pair's second half) from the row's
 * output self and its pair's other: rope_f32's arithmetic for pair i at position ra.pos. */
inline float fw_rope_one(float self, float other, uint upper, uint i,
                         __global const float *inv_freq,
                         const struct moecl_qkv_rope_args *ra) {
    float x1 = upper ? other : self, x2 = upper ? self : other;
    float ms = round_act(ra->mscale);
    if (ra->mscale != 1.0f) {
        x1 = round_act(x1 * ms);
        x2 = round_act(x2 * ms);
    }
    float theta = (float)ra->pos * inv_freq[i];
    float c = round_act(ref_sincos(theta, 0)), s = round_act(ref_sincos(theta, 1));
    return rope_rotate(x1, x2, c, s, upper);
}

/* Rows r0 + warp * R .. R - 1 of expert e against the input row xr, into y's vector `vec`: of
 * one matrix (nm 1: w, a; R = FW_T), or of two with the same shape and format (nm 2: the expert
 * gate w, a and up w2, a2, whose clamped SwiGLU goes to y; R = FW_T / 2 rows of each). The input
 * row is xl in local memory where xloc (a constant after inlining), else xr. nm 1 only: rope 1
 * takes slots r0 + ... in RoPE's order (fw_rope_row; rows whole heads of ra->head_dim) and
 * rotates each row with its pair before the store (inv_freq: [head_dim / 2]); ring_on 1 also
 * stores the output to ring at ra->kv_offset + row (float, or half with ra->kv_f16). */
__attribute__((always_inline)) inline void
fw_rows(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
        __global const uchar *bias, __global const uchar *w2, __global const uchar *sc2,
        __global const uchar *bi2, __global const uchar *bias2, __global const float *xr,
        __local const float *xl, uint xloc, __global float *y, const struct moecl_qmm_args *a,
        const struct moecl_qmm_args *a2, ulong e, uint r0, uint vec, uint nm, float alpha,
        float limit, __local const float *lut, __local float *red, uint rope, uint ring_on,
        __global const float *inv_freq, __global uchar *ring,
        const struct moecl_qkv_rope_args *ra) {
    uint lid = get_local_id(0), lane = lid & 31u, warp = lid >> 5;
    const uint R = FW_T / nm; /* rows of each matrix */
    __global const uint4 *wrow[FW_T];
    __global const uchar *srow[FW_T], *brow[FW_T];
#pragma unroll
    for (uint i = 0; i < FW_T; i++) {
        uint m = i / R; /* the matrix of slot i */
        const struct moecl_qmm_args *am = m ? a2 : a;
        uint sl = r0 + warp * R + i % R;
        ulong r = min(rope ? fw_rope_row(sl, ra->head_dim) : sl, a->rows - 1);
        wrow[i] = (__global const uint4 *)((m ? w2 : w) + am->w_offset + e * a->w_expert_stride +
                                           r * a->w_row_stride);
        srow[i] = (m ? sc2 : sc) + am->s_offset + e * a->s_expert_stride + r * a->s_row_stride;
        brow[i] = (m ? bi2 : bi) + am->b_offset + e * a->b_expert_stride + r * a->b_row_stride;
    }
    float acc[FW_T];
#pragma unroll
    for (uint i = 0; i < FW_T; i++)
        acc[i] = 0.0f;
    uint n_units = a->cols / FW_EPV;
    /* each step's weights, scales and biases are loaded a step ahead, so their latency overlaps
     * the products */
    uint4 v[FW_T];
    float sn[FW_T], bn[FW_T];
    uint u0 = min(lane, n_units - 1u);
#pragma unroll
    for (uint i = 0; i < FW_T; i++)
        fw_load(wrow[i], srow[i], brow[i], u0, &v[i], &sn[i], &bn[i]);
    for (uint u = lane; u < n_units; u += 32u) {
        uint4 cur[FW_T];
        float sc_[FW_T], bc_[FW_T];
        uint un = min(u + 32u, n_units - 1u);
#pragma unroll
        for (uint i = 0; i < FW_T; i++) {
            cur[i] = v[i];
            sc_[i] = sn[i];
            bc_[i] = bn[i];
            fw_load(wrow[i], srow[i], brow[i], un, &v[i], &sn[i], &bn[i]);
        }
        float xs[FW_EPV];
        float xsum = xloc ? fw_inputs_l(xl, u * FW_EPV, xs) : fw_inputs(xr, u * FW_EPV, xs);
#pragma unroll
        for (uint i = 0; i < FW_T; i++) {
            float dot = fw_dot(cur[i], xs, lut);
#if QMODE == MOECL_QM_AFFINE
            acc[i] = fma(sc_[i], dot, fma(bc_[i], xsum, acc[i]));
#else
            (void)xsum;
            acc[i] = fma(sc_[i], dot, acc[i]);
#endif
        }
    }
    /* each row's 32 lane sums as a tree */
    __local float *wr = red + warp * (FW_T * 32u);
#pragma unroll
    for (uint i = 0; i < FW_T; i++)
        wr[i * 32u + lane] = acc[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint st = 16u; st > 0u; st >>= 1) {
        if (lane < st)
#pragma unroll
            for (uint i = 0; i < FW_T; i++)
                wr[i * 32u + lane] += wr[i * 32u + lane + st];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    uint so = r0 + warp * R + lane; /* the lane's slot */
    if (lane < R && so < a->rows) {
        uint hd = ra->head_dim, ro = rope ? fw_rope_row(so, hd) : so;
        float v = fw_out(wr[lane * 32u], bias, a, e, ro);
        if (nm == 2u)
            v = swiglu_one(v, fw_out(wr[(R + lane) * 32u], bias2, a2, e, ro), round_act(alpha),
                           limit);
        if (rope) /* the pair's other row is in the neighbouring slot, lane ^ 1 */
            v = fw_rope_one(v, fw_out(wr[(lane ^ 1u) * 32u], bias, a, e, fw_rope_row(so ^ 1u, hd)),
                            so & 1u, (so % hd) >> 1, inv_freq, ra);
        __global float *yo = y + (ulong)vec * a->y_stride + ro;
        *yo = a->residual ? round_act(*yo + v) : v; /* (as add_f32) */
        if (ring_on) {
            if (ra->kv_f16)
                vstore_half_rte(v, ra->kv_offset + ro, (__global half *)ring);
            else
                ((__global float *)ring)[ra->kv_offset + ro] = v;
        }
    }
}

/* Work-group 256 per block of 8 * a.rows_per_item rows; column get_group_id(1) = the output
 * vector (its expert ids[vec] when a.use_ids, its input row vec / a.x_div). */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmw_f32_, WNAME)(__global const uchar *w, __global const uchar *sc,
                                  __global const uchar *bi, __global const uchar *bias,
                                  __global const float *x, __global float *y,
                                  __global const int *ids, struct moecl_qmm_args a) {
    __local float red[8 * FW_T * 32];
    __local float lut[16];
    fw_lut(lut);
    uint vec = get_group_id(1);
    uint r0 = get_group_id(0) * 8u * FW_T;
    ulong e = a.use_ids ? (ulong)ids[vec] : 0;
    __global const float *xr = x + a.x_offset + (ulong)(vec / a.x_div) * a.x_stride;
    const struct moecl_qkv_rope_args none = {0, 0, 0, 1.0f, 0, 0};
    fw_rows(w, sc, bi, bias, w, sc, bi, bias, xr, red, 0u, y, &a, &a, e, r0, vec, 1u, 0.0f, 0.0f,
            lut, red, 0u, 0u, x, (__global uchar *)y, &none);
}

/* Three dense products of one input vector in one launch (the attention's q, k and v): the
 * work-groups of a0's rows first, then a1's, then a2's; each as matmul_fmw computes it (the same
 * bits), into y0, y1, y2. All three share the format and a0.rows_per_item. norm 1: the input is
 * RMSNorm(x) with weight nw (offset nw_offset, MOECL_DT_* nw_dt), which every work-group
 * computes into local memory as rmsnorm_wg_f32 does in fast numerics (the same bits); the
 * columns are at most RMS_MAX (the launcher checks). ra.head_dim not 0 (decode's epilogue, the
 * launcher checks the shapes): q and k (whole heads) come out rotated as rope_f32 rotates them
 * at position ra.pos (inv_freq, ra.mscale), and with ra.kv_write k and v go to k_ring and
 * v_ring at ra.kv_offset too, as kv_append_f32/f16 store them. */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmw3_f32_, WNAME)(QMM3_PARAMS, __global const uchar *nw, ulong nw_offset,
                                   uint nw_dt, float eps, uint norm,
                                   __global const float *inv_freq, __global uchar *k_ring,
                                   __global uchar *v_ring, struct moecl_qkv_rope_args ra) {
    __local float red[8 * FW_T * 32];
    __local float lut[16];
    __local float4 xl4[RMS_MAX / 4];
    fw_lut(lut);
    const uint R = FW_T;
    uint blk = get_group_id(0);
    uint n0 = (a0.rows + 8u * R - 1u) / (8u * R), n1 = (a1.rows + 8u * R - 1u) / (8u * R);
    uint m = blk < n0 ? 0u : blk < n0 + n1 ? 1u : 2u;
    QMM3_PICK(m);
    uint r0 = (blk - (m == 0u ? 0u : m == 1u ? n0 : n0 + n1)) * 8u * R;
    __global const float *xr = x + am.x_offset;
    /* the input row in local memory, normed or as it is (one fw_rows call: PoCL miscompiled
     * inlined copies with their barriers behind a branch) */
    __local float *xl = (__local float *)xl4;
    uint lid = get_local_id(0), n = am.cols;
    float inv = rms_inv_fast(xr, red, n, eps); /* (also when not used: no barriers in branches) */
#pragma unroll
    for (uint j = 0; j < RMS_MAX / RMS_WG; j++) {
        uint i = lid + j * RMS_WG;
        if (i < n)
            xl[i] = norm ? round_act(round_act(xr[i] * inv) * load_dt(nw, nw_offset, i, nw_dt))
                         : xr[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint rope = ra.head_dim && m < 2u, ring_on = ra.head_dim && ra.kv_write && m > 0u;
    fw_rows(w, sc, bi, bias, w, sc, bi, bias, xr, xl, 1u, y, &am, &am, 0, r0, 0, 1u, 0.0f, 0.0f,
            lut, red, rope, ring_on, inv_freq, m == 1u ? k_ring : v_ring, &ra);
}

/* An expert's gate and up products and their clamped SwiGLU in one launch (decode: a column per
 * output vector): act[vec][r] = swiglu(gate_r . x, up_r . x) with each product's bias and
 * roundings as two matmul_fmw launches give them. a: the gate's arguments (shape, strides, the
 * output act), a2: the up's offsets (same shape and format). */
__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
MOECL_CAT(matmul_fmw_glu_f32_,
          WNAME)(__global const uchar *w, __global const uchar *sc, __global const uchar *bi,
                 __global const uchar *bias, __global const uchar *w2, __global const uchar *sc2,
                 __global const uchar *bi2, __global const uchar *bias2, __global const float *x,
                 __global float *y, __global const int *ids, struct moecl_qmm_args a,
                 struct moecl_qmm_args a2, float alpha, float limit) {
    __local float red[8 * FW_T * 32];
    __local float lut[16];
    fw_lut(lut);
    uint vec = get_group_id(1);
    uint r0 = get_group_id(0) * 8u * (FW_T / 2u);
    ulong e = a.use_ids ? (ulong)ids[vec] : 0;
    __global const float *xr = x + a.x_offset + (ulong)(vec / a.x_div) * a.x_stride;
    const struct moecl_qkv_rope_args none = {0, 0, 0, 1.0f, 0, 0};
    fw_rows(w, sc, bi, bias, w2, sc2, bi2, bias2, xr, red, 0u, y, &a, &a2, e, r0, vec, 2u, alpha,
            limit, lut, red, 0u, 0u, x, (__global uchar *)y, &none);
}
#endif
#endif
