/* Attention with sinks, GQA, the causal mask and the sliding window, for a chunk of queries
 * against a ring-buffer KV cache plus the chunk's own fresh keys (built with -DACT).
 *
 * Numerics follow MLX's scaled_dot_product_attention as it runs for the fixtures: q is scaled in
 * the activation dtype, each score q.k is rounded to it, the sink logit joins the softmax
 * (float32 accumulation, probabilities rounded to the activation dtype) and is dropped, and
 * the output accumulates in float32. In float32 models every rounding is the identity. */

#define HEAD_DIM_MAX 256

/* Where key position j lives: the chunk's buffers for j >= pos0, else the cache ring. */
inline __global const float *attn_key_row(__global const float *fresh, __global const float *ring,
                                          uint j, uint pos0, uint cap, uint kv_width, uint kvh,
                                          uint head_dim) {
    if (j >= pos0)
        return fresh + (ulong)(j - pos0) * kv_width + kvh * head_dim;
    return ring + (ulong)(j % cap) * kv_width + kvh * head_dim;
}

/* q, out: [n_tokens][n_heads * head_dim]; k_new, v_new: [n_tokens][n_kv_heads * head_dim];
 * k_ring, v_ring: [cache_cap][n_kv_heads * head_dim] holding positions < pos0. One work-item
 * per (head, token). */
__kernel void attn_sinks_f32(__global const float *q, __global const float *k_new,
                             __global const float *v_new, __global const float *k_ring,
                             __global const float *v_ring, __global const uchar *sinks,
                             __global float *out, struct moecl_attn_args a) {
    uint h = get_global_id(0), t = get_global_id(1);
    if (h >= a.n_heads || t >= a.n_tokens)
        return;
    uint hd = a.head_dim, kv_width = a.n_kv_heads * hd;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint p = a.pos0 + t;
    uint lo = (a.window && p + 1 > a.window) ? p + 1 - a.window : 0;
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
    float qs[HEAD_DIM_MAX];
    for (uint d = 0; d < hd; d++)
        qs[d] = round_act(qr[d] * a.scale);

    float sink = load_dt(sinks, a.sinks_offset, h, a.sinks_dt);
    float m = sink;
    for (uint j = lo; j <= p; j++) {
        __global const float *kr = attn_key_row(k_new, k_ring, j, a.pos0, a.cache_cap, kv_width,
                                                kvh, hd);
        float z = 0.0f;
        for (uint d = 0; d < hd; d++)
            z += qs[d] * kr[d];
        m = fmax(m, round_act(z));
    }
    float sum = ref_exp(sink - m);
    for (uint j = lo; j <= p; j++) {
        __global const float *kr = attn_key_row(k_new, k_ring, j, a.pos0, a.cache_cap, kv_width,
                                                kvh, hd);
        float z = 0.0f;
        for (uint d = 0; d < hd; d++)
            z += qs[d] * kr[d];
        sum += ref_exp(round_act(z) - m);
    }
    float inv = 1.0f / sum;
    float acc[HEAD_DIM_MAX];
    for (uint d = 0; d < hd; d++)
        acc[d] = 0.0f;
    for (uint j = lo; j <= p; j++) {
        __global const float *kr = attn_key_row(k_new, k_ring, j, a.pos0, a.cache_cap, kv_width,
                                                kvh, hd);
        __global const float *vr = attn_key_row(v_new, v_ring, j, a.pos0, a.cache_cap, kv_width,
                                                kvh, hd);
        float z = 0.0f;
        for (uint d = 0; d < hd; d++)
            z += qs[d] * kr[d];
        float pj = round_act(ref_exp(round_act(z) - m) * inv);
        for (uint d = 0; d < hd; d++)
            acc[d] += pj * vr[d];
    }
    __global float *o = out + (ulong)t * a.n_heads * hd + h * hd;
    for (uint d = 0; d < hd; d++)
        o[d] = round_act(acc[d]);
}

/* Appends the chunk's keys and values to the ring: token t (position pos0 + t) goes to slot
 * (pos0 + t) % cap; tokens that the ring cannot hold (all but the last cap) are skipped.
 * One work-item per token. */
__kernel void kv_append_f32(__global const float *k_new, __global const float *v_new,
                            __global float *k_ring, __global float *v_ring, uint n_tokens,
                            uint pos0, uint cap, uint kv_width) {
    uint t = get_global_id(0);
    if (t >= n_tokens || (n_tokens > cap && t < n_tokens - cap))
        return;
    ulong slot = (ulong)((pos0 + t) % cap) * kv_width;
    __global const float *ks = k_new + (ulong)t * kv_width;
    __global const float *vs = v_new + (ulong)t * kv_width;
    for (uint i = 0; i < kv_width; i++) {
        k_ring[slot + i] = ks[i];
        v_ring[slot + i] = vs[i];
    }
}
