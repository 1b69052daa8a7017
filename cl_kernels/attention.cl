/* Attention with sinks, GQA, the causal mask and the sliding window, for a chunk of queries
 * against a ring-buffer KV cache plus the chunk's own fresh keys (built with -DACT).
 *
 * Numerics follow MLX's scaled_dot_product_attention as it runs for the fixtures: q is scaled in
 * the activation dtype, each score q.k is rounded to it, the sink logit joins the softmax
 * (float32 accumulation, probabilities rounded to the activation dtype) and is dropped, and
 * the output accumulates in float32. In float32 models every rounding is the identity. The
 * softmax sum and the output add the keys in the order of mlx-lm's cache buffer: time order,
 * except that a sliding layer's RotatingKVCache holds a rotation of the window in single-token
 * decode (a.key_shift). */

#define HEAD_DIM_MAX 256

/* Scores kept between the max, sum and output passes for the first ATTN_ZCACHE keys of a query
 * (the rest are recomputed, the same float either way); 0 recomputes all (GPUs, where a
 * private array would spill). */
#ifndef ATTN_ZCACHE
#define ATTN_ZCACHE 0
#endif

/* Key/value row j: the chunk's fresh float rows for j >= pos0, else ring slot j % cap, stored
 * as float or (a.kv_f16) as half, read with vload_half; all arithmetic is float32. Defined for
 * q in private memory (kv_row_dot) and in local memory (kv_row_dot_l). */
#define KV_ROW_DOT(NAME, QSPACE)                                                                   \
    inline float NAME(QSPACE const float *qs, __global const float *fresh,                         \
                      __global const uchar *ring, uint j, uint pos0, uint cap, uint kv_width,      \
                      uint kvh, uint head_dim, uint f16) {                                         \
        float z = 0.0f;                                                                            \
        if (j >= pos0) {                                                                           \
            __global const float *r = fresh + (ulong)(j - pos0) * kv_width + kvh * head_dim;       \
            _Pragma("unroll 8") for (uint d = 0; d < head_dim; d++)                              \
                z += qs[d] * r[d];                                                                 \
        } else if (f16) {                                                                          \
            __global const half *r =                                                               \
                (__global const half *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;        \
            _Pragma("unroll 8") for (uint d = 0; d < head_dim; d++)                              \
                z += qs[d] * vload_half(d, r);                                                     \
        } else {                                                                                   \
            __global const float *r =                                                              \
                (__global const float *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;       \
            _Pragma("unroll 8") for (uint d = 0; d < head_dim; d++)                              \
                z += qs[d] * r[d];                                                                 \
        }                                                                                          \
        return z;                                                                                  \
    }
KV_ROW_DOT(kv_row_dot, )
KV_ROW_DOT(kv_row_dot_l, __local)

/* acc += p * value row j (same addressing as kv_row_dot). */
inline void kv_row_axpy(float *acc, float p, __global const float *fresh,
                        __global const uchar *ring, uint j, uint pos0, uint cap, uint kv_width,
                        uint kvh, uint head_dim, uint f16) {
    if (j >= pos0) {
        __global const float *r = fresh + (ulong)(j - pos0) * kv_width + kvh * head_dim;
        for (uint d = 0; d < head_dim; d++)
            acc[d] += p * r[d];
    } else if (f16) {
        __global const half *r =
            (__global const half *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;
        for (uint d = 0; d < head_dim; d++)
            acc[d] += p * vload_half(d, r);
    } else {
        __global const float *r =
            (__global const float *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;
        for (uint d = 0; d < head_dim; d++)
            acc[d] += p * r[d];
    }
}

/* The first key position p may attend to: the sliding window keeps p - window < j <= p. */
inline uint attn_first_key(uint p, uint window) {
    return (window && p + 1 > window) ? p + 1 - window : 0;
}

/* The i-th key a query visits: its allowed keys lo..p (n_keys of them) rotated by shift
 * (a.key_shift, 0 but in single-token decode). */
#define KEY(i) (lo + ((i) + shift < n_keys ? (i) + shift : (i) + shift - n_keys))

/* q, out: [n_tokens][n_heads * head_dim]; k_new, v_new: [n_tokens][n_kv_heads * head_dim];
 * k_ring, v_ring: [cache_cap][n_kv_heads * head_dim] float (or half with a.kv_f16) holding
 * positions < pos0. One work-item per (head, token). */
__kernel void attn_sinks_f32(__global const float *q, __global const float *k_new,
                             __global const float *v_new, __global const uchar *k_ring,
                             __global const uchar *v_ring, __global const uchar *sinks,
                             __global float *out, struct moecl_attn_args a) {
    uint h = get_global_id(0), t = get_global_id(1);
    if (h >= a.n_heads || t >= a.n_tokens)
        return;
    uint hd = a.head_dim, kv_width = a.n_kv_heads * hd;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint p = a.pos0 + t;
    uint lo = attn_first_key(p, a.window);
    uint n_keys = p + 1 - lo, shift = a.key_shift < n_keys ? a.key_shift : 0;
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
    float qs[HEAD_DIM_MAX];
    for (uint d = 0; d < hd; d++)
        qs[d] = round_act(qr[d] * a.scale);

    float sink = load_dt(sinks, a.sinks_offset, h, a.sinks_dt);
    float m = sink;
#if ATTN_ZCACHE
    float zc[ATTN_ZCACHE];
#define SCORE(i, j)                                                                                \
    ((i) < ATTN_ZCACHE ? zc[i]                                                                     \
                       : kv_row_dot(qs, k_new, k_ring, (j), a.pos0, a.cache_cap, kv_width, kvh,    \
                                    hd, a.kv_f16))
#else
#define SCORE(i, j)                                                                                \
    kv_row_dot(qs, k_new, k_ring, (j), a.pos0, a.cache_cap, kv_width, kvh, hd, a.kv_f16)
#endif
    for (uint i = 0; i < n_keys; i++) {
        float z = kv_row_dot(qs, k_new, k_ring, KEY(i), a.pos0, a.cache_cap, kv_width, kvh, hd,
                             a.kv_f16);
#if ATTN_ZCACHE
        if (i < ATTN_ZCACHE)
            zc[i] = z;
#endif
        m = fmax(m, round_act(z));
    }
    float sum = ref_exp(sink - m);
    for (uint i = 0; i < n_keys; i++) {
        float z = SCORE(i, KEY(i));
        sum += ref_exp(round_act(z) - m);
    }
    float inv = 1.0f / sum;
    float acc[HEAD_DIM_MAX];
    for (uint d = 0; d < hd; d++)
        acc[d] = 0.0f;
    for (uint i = 0; i < n_keys; i++) {
        uint j = KEY(i);
        float z = SCORE(i, j);
#undef SCORE
        float pj = round_act(ref_exp(round_act(z) - m) * inv);
        kv_row_axpy(acc, pj, v_new, v_ring, j, a.pos0, a.cache_cap, kv_width, kvh, hd, a.kv_f16);
    }
    __global float *o = out + (ulong)t * a.n_heads * hd + h * hd;
    for (uint d = 0; d < hd; d++)
        o[d] = round_act(acc[d]);
}

/* attn_sinks_f32 for GPUs, with the same arithmetic in the same order (the same bits): a
 * work-group of ATTN_WG work-items per (head, token). The scores of a block of ATTN_ZB keys are
 * computed in parallel (one key per work-item, its dot product in element order) into local
 * memory; the max is a reduction (order-free); the softmax sum runs over the block in key
 * order in one work-item; the output dimension d is work-item d's sum over keys in order.
 * Scores are recomputed per pass when the keys exceed one block. The per-key loops keep the
 * same trip count in every work-item (a key test inside): PoCL 5 computed wrong results for the
 * form with the key test in the loop condition when a block left some work-items no key
 * (kernel_attention_work_group_same_bits, 1025 keys). The serial loops are unrolled so that a
 * GPU issues their loads ahead of the dependent adds (the order of the adds is unchanged). */
#define ATTN_WG 64
#define ATTN_ZB 1024
__kernel __attribute__((reqd_work_group_size(ATTN_WG, 1, 1))) void
attn_sinks_wg_f32(__global const float *q, __global const float *k_new,
                  __global const float *v_new, __global const uchar *k_ring,
                  __global const uchar *v_ring, __global const uchar *sinks, __global float *out,
                  struct moecl_attn_args a) {
    __local float qs[HEAD_DIM_MAX];
    __local float zb[ATTN_ZB];
    __local float red[ATTN_WG];
    uint lid = get_local_id(0), h = get_group_id(0), t = get_global_id(1);
    uint hd = a.head_dim, kv_width = a.n_kv_heads * hd;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint p = a.pos0 + t;
    uint lo = attn_first_key(p, a.window);
    uint n_keys = p + 1 - lo, shift = a.key_shift < n_keys ? a.key_shift : 0;
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
    for (uint d = lid; d < hd; d += ATTN_WG)
        qs[d] = round_act(qr[d] * a.scale);
    barrier(CLK_LOCAL_MEM_FENCE);
    float sink = load_dt(sinks, a.sinks_offset, h, a.sinks_dt);
#define ATTN_SCORES(b0)                                                                            \
    for (uint i = lid; i < ATTN_ZB; i += ATTN_WG)                                                   \
        if ((b0) + i < n_keys)                                                                     \
        zb[i] = round_act(kv_row_dot_l(qs, k_new, k_ring, KEY((b0) + i), a.pos0, a.cache_cap,      \
                                       kv_width, kvh, hd, a.kv_f16));                              \
    barrier(CLK_LOCAL_MEM_FENCE)
    /* pass 1: the max (the sink included) */
    float m = sink;
    for (uint b0 = 0; b0 < n_keys; b0 += ATTN_ZB) {
        ATTN_SCORES(b0);
        for (uint i = lid; i < ATTN_ZB; i += ATTN_WG)
            if (b0 + i < n_keys)
            m = fmax(m, zb[i]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    red[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = ATTN_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    /* pass 2: the sum in key order; the scores of the last block are still in zb when there
     * is one block */
    float sum = ref_exp(sink - m);
    for (uint b0 = 0; b0 < n_keys; b0 += ATTN_ZB) {
        if (n_keys > ATTN_ZB) {
            ATTN_SCORES(b0);
        }
        for (uint i = lid; i < ATTN_ZB; i += ATTN_WG)
            if (b0 + i < n_keys)
            zb[i] = ref_exp(zb[i] - m);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0)
            for (uint i = 0; i < ATTN_ZB && b0 + i < n_keys; i++)
                sum += zb[i];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        red[0] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    float inv = 1.0f / red[0];
    /* pass 3: probabilities, then each output dimension over the keys in order */
    float acc[HEAD_DIM_MAX / ATTN_WG];
    for (uint k = 0; k < HEAD_DIM_MAX / ATTN_WG; k++)
        acc[k] = 0.0f;
    for (uint b0 = 0; b0 < n_keys; b0 += ATTN_ZB) {
        if (n_keys > ATTN_ZB) {
            ATTN_SCORES(b0);
            for (uint i = lid; i < ATTN_ZB; i += ATTN_WG)
            if (b0 + i < n_keys)
                zb[i] = ref_exp(zb[i] - m);
        }
        for (uint i = lid; i < ATTN_ZB; i += ATTN_WG)
            if (b0 + i < n_keys)
            zb[i] = round_act(zb[i] * inv);
        barrier(CLK_LOCAL_MEM_FENCE);
        uint nb = min((uint)ATTN_ZB, n_keys - b0);
        for (uint k = 0; k < HEAD_DIM_MAX / ATTN_WG; k++) {
            uint d = lid + k * ATTN_WG;
            if (d >= hd)
                break;
#pragma unroll 8
            for (uint i = 0; i < nb; i++) {
                uint j = KEY(b0 + i);
                float v;
                if (j >= a.pos0)
                    v = v_new[(ulong)(j - a.pos0) * kv_width + kvh * hd + d];
                else if (a.kv_f16)
                    v = vload_half((ulong)(j % a.cache_cap) * kv_width + kvh * hd + d,
                                   (__global const half *)v_ring);
                else
                    v = ((__global const float *)v_ring)[(ulong)(j % a.cache_cap) * kv_width +
                                                         kvh * hd + d];
                acc[k] += zb[i] * v;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#undef ATTN_SCORES
#undef KEY
    __global float *o = out + (ulong)t * a.n_heads * hd + h * hd;
    for (uint k = 0; k < HEAD_DIM_MAX / ATTN_WG; k++) {
        uint d = lid + k * ATTN_WG;
        if (d < hd)
            o[d] = round_act(acc[k]);
    }
}

/* Appends the chunk's keys and values to the ring: token t (position pos0 + t) goes to slot
 * (pos0 + t) % cap; tokens that the ring cannot hold (all but the last cap) are skipped.
 * Work-item (i, t) copies elements i * run .. i * run + run - 1 of token t (CPUs: the whole row;
 * GPUs: one element, so that a decode step's row is not one work-item's serial loop). */
#define KV_APPEND(NAME, RING_T, STORE)                                                             \
    __kernel void NAME(__global const float *k_new, __global const float *v_new,                   \
                       __global RING_T *k_ring, __global RING_T *v_ring, uint n_tokens, uint pos0, \
                       uint cap, uint kv_width, uint run) {                                        \
        uint t = get_global_id(1), i0 = get_global_id(0) * run;                                    \
        if (t >= n_tokens || (n_tokens > cap && t < n_tokens - cap))                               \
            return;                                                                                \
        ulong slot = (ulong)((pos0 + t) % cap) * kv_width;                                         \
        __global const float *ks = k_new + (ulong)t * kv_width;                                    \
        __global const float *vs = v_new + (ulong)t * kv_width;                                    \
        for (uint i = i0; i < min(i0 + run, kv_width); i++) {                                      \
            STORE(ks[i], slot + i, k_ring);                                                        \
            STORE(vs[i], slot + i, v_ring);                                                        \
        }                                                                                          \
    }
#define KV_STORE_F32(v, i, ring) ((ring)[i] = (v))
KV_APPEND(kv_append_f32, float, KV_STORE_F32)
/* kv_append_f32 for a half ring: each float is rounded to the nearest half (vstore_half_rte). */
KV_APPEND(kv_append_f16, half, vstore_half_rte)
