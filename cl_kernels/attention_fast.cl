/* Attention for fast numerics (appended to attention.cl in the core program: its row helpers
 * and HEAD_DIM_MAX): the probabilities are rounded to the activation dtype as in the exact
 * kernels, and only the order of the float32 sums differs. attn_fast_f32 for CPUs (vectors along
 * the head dimension), attn_fast_wg_f32 for GPUs (a work-group per (head, token)). */

/* kv_row_dot_l in float4 steps (head_dim a multiple of 4; fast numerics: four partial sums). */
inline float kv_row_dot4_l(__local const float *qs, __global const float *fresh,
                           __global const uchar *ring, uint j, uint pos0, uint cap, uint kv_width,
                           uint kvh, uint head_dim, uint f16) {
    float4 z = (float4)(0.0f);
    if (j >= pos0) {
        __global const float *r = fresh + (ulong)(j - pos0) * kv_width + kvh * head_dim;
#pragma unroll 4
        for (uint d = 0; d < head_dim / 4; d++)
            z = fma(vload4(d, qs), vload4(d, r), z);
    } else if (f16) {
        __global const half *r =
            (__global const half *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;
#pragma unroll 4
        for (uint d = 0; d < head_dim / 4; d++)
            z = fma(vload4(d, qs), vload_half4(d, r), z);
    } else {
        __global const float *r =
            (__global const float *)ring + (ulong)(j % cap) * kv_width + kvh * head_dim;
#pragma unroll 4
        for (uint d = 0; d < head_dim / 4; d++)
            z = fma(vload4(d, qs), vload4(d, r), z);
    }
    return (z.x + z.y) + (z.z + z.w);
}

/* Fast numerics on CPUs (the launcher picks it for programs built with fast numerics, head_dim
 * a multiple of 16): one work-item per (head, token) as attn_sinks_f32, the head dimension in
 * float16 vectors, 16 keys at a time (their scores and exponentials in one vector). Two passes
 * over the keys: the max and the softmax sum with a running max (starting at the sink logit
 * and 1, as MLX's Metal sdpa_vector), then the probabilities rounded to the activation dtype
 * as the exact kernel and MLX round them, times the values. Only the order of the float32 sums
 * differs from the exact kernel (a one-pass form that left the probabilities unrounded moved
 * chaotic bf16 fixtures past fast numerics' bounds). Keys in time order. */
#define ATTN_FV (HEAD_DIM_MAX / 16)
inline float attn_hsum16(float16 v) {
    float8 h = v.lo + v.hi;
    float4 f = h.lo + h.hi;
    float2 d = f.lo + f.hi;
    return d.x + d.y;
}

/* Row j of k or v (fresh rows for j >= pos0, else the ring), vector i of the head's part. */
inline float16 attn_row16(__global const float *fresh, __global const uchar *ring, uint j, uint i,
                          uint pos0, uint cap, uint kv_width, uint kvh, uint hd, uint f16) {
    if (j >= pos0)
        return vload16(i, fresh + (ulong)(j - pos0) * kv_width + kvh * hd);
    if (f16)
        return vload_half16(i,
                            (__global const half *)ring + (ulong)(j % cap) * kv_width + kvh * hd);
    return vload16(i, (__global const float *)ring + (ulong)(j % cap) * kv_width + kvh * hd);
}

/* The rounded scores of keys b .. b + nb - 1 (nb <= 16; -inf past nb). */
inline float16 attn_scores16(const float16 *qv, __global const float *k_new,
                             __global const uchar *k_ring, uint b, uint nb, uint nv, uint kv_width,
                             uint kvh, const struct moecl_attn_args *a) {
    float16 z = (float16)(-INFINITY);
    for (uint l = 0; l < nb; l++) {
        float16 d = qv[0] * attn_row16(k_new, k_ring, b + l, 0, a->pos0, a->cache_cap, kv_width,
                                       kvh, a->head_dim, a->kv_f16);
        for (uint i = 1; i < nv; i++)
            d = fma(qv[i],
                    attn_row16(k_new, k_ring, b + l, i, a->pos0, a->cache_cap, kv_width, kvh,
                               a->head_dim, a->kv_f16),
                    d);
        z[l] = round_act(attn_hsum16(d));
    }
    return z;
}

__kernel void attn_fast_f32(__global const float *q, __global const float *k_new,
                            __global const float *v_new, __global const uchar *k_ring,
                            __global const uchar *v_ring, __global const uchar *sinks,
                            __global float *out, struct moecl_attn_args a) {
    uint h = get_global_id(0), t = get_global_id(1);
    if (h >= a.n_heads || t >= a.n_tokens)
        return;
    uint hd = a.head_dim, nv = hd / 16, kv_width = a.n_kv_heads * hd;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint p = a.pos0 + t;
    uint lo = attn_first_key(p, a.window);
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
    float16 qv[ATTN_FV], acc[ATTN_FV];
    for (uint i = 0; i < nv; i++) {
        float16 x = vload16(i, qr) * a.scale;
        for (uint l = 0; l < 16; l++)
            x[l] = round_act(x[l]);
        qv[i] = x;
        acc[i] = (float16)(0.0f);
    }
    /* pass 1, blocks of 16 keys: their scores in one vector, one max and one rescale of the sum
     * per block */
    float m = load_dt(sinks, a.sinks_offset, h, a.sinks_dt), sum = 1.0f;
    for (uint b = lo; b <= p; b += 16) {
        float16 z = attn_scores16(qv, k_new, k_ring, b, min(16u, p + 1 - b), nv, kv_width, kvh, &a);
        float8 m8 = fmax(z.lo, z.hi);
        float4 m4 = fmax(m8.lo, m8.hi);
        float2 m2 = fmax(m4.lo, m4.hi);
        float bm = fmax(m2.x, m2.y);
        if (bm > m) {
            sum *= exp(m - bm);
            m = bm;
        }
        sum += attn_hsum16(exp(z - m)); /* 0 for the keys past the block's end */
    }
    /* pass 2: the rounded probabilities times the values */
    float inv = 1.0f / sum;
    for (uint b = lo; b <= p; b += 16) {
        uint nb = min(16u, p + 1 - b);
        float16 w = exp(attn_scores16(qv, k_new, k_ring, b, nb, nv, kv_width, kvh, &a) - m) * inv;
        for (uint l = 0; l < nb; l++) {
            float pl = round_act(w[l]);
            for (uint i = 0; i < nv; i++)
                acc[i] = fma((float16)(pl),
                             attn_row16(v_new, v_ring, b + l, i, a.pos0, a.cache_cap, kv_width, kvh,
                                        hd, a.kv_f16),
                             acc[i]);
        }
    }
    __global float *o = out + (ulong)t * a.n_heads * hd + h * hd;
    for (uint i = 0; i < nv; i++) {
        float16 x = acc[i];
        for (uint l = 0; l < 16; l++)
            x[l] = round_act(x[l]);
        vstore16(x, i, o);
    }
}

/* Fast numerics on GPUs: a work-group of AFW work-items per (head, token) and blocks of AFW
 * keys, work-item i scoring key b0 + i (its dot product in element order). Two passes as
 * attn_fast_f32: the max and the softmax sum (tree reductions per block, a running max), then
 * the probabilities rounded to the activation dtype times the values, four dimensions per
 * work-item (head_dim a multiple of 4): dimensions 4 d4 .. 4 d4 + 3 are the sum of work-items
 * d4, d4 + hd / 4, ... each over every (AFW / (hd / 4))-th key of the block, added in the end. The
 * scores of the first AFW_ZS keys stay in local memory between the passes (the rest are computed
 * again). Keys in time order. */
#define AFW 256
#define AFW_ZS 1024
__kernel __attribute__((reqd_work_group_size(AFW, 1, 1))) void
attn_fast_wg_f32(__global const float *q, __global const float *k_new, __global const float *v_new,
                 __global const uchar *k_ring, __global const uchar *v_ring,
                 __global const uchar *sinks, __global float *out, struct moecl_attn_args a) {
    __local float qs[HEAD_DIM_MAX];
    __local float pz[AFW];
    __local float red[AFW];
    __local float zs[AFW_ZS]; /* the first AFW_ZS keys' scores, kept between the passes */
    uint lid = get_local_id(0), h = get_group_id(0), t = get_global_id(1);
    uint hd = a.head_dim, kv_width = a.n_kv_heads * hd;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint p = a.pos0 + t;
    uint lo = attn_first_key(p, a.window);
    uint n_keys = p + 1 - lo;
    /* output: dimensions 4 d4 .. 4 d4 + 3 (head_dim a multiple of 4), key slice */
    uint ns = AFW / (hd / 4), d4 = lid % (hd / 4), slice = lid / (hd / 4);
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
    for (uint i = lid; i < hd; i += AFW)
        qs[i] = round_act(qr[i] * a.scale);
    barrier(CLK_LOCAL_MEM_FENCE);
#define AFW_SCORE(b0)                                                                              \
    (lid >= min((uint)AFW, n_keys - (b0)) ? -INFINITY                                              \
     : hd % 4 == 0 ? round_act(kv_row_dot4_l(qs, k_new, k_ring, lo + (b0) + lid, a.pos0,           \
                                             a.cache_cap, kv_width, kvh, hd, a.kv_f16))            \
                   : round_act(kv_row_dot_l(qs, k_new, k_ring, lo + (b0) + lid, a.pos0,            \
                                            a.cache_cap, kv_width, kvh, hd, a.kv_f16)))
    /* pass 1: the max and the sum */
    float m = load_dt(sinks, a.sinks_offset, h, a.sinks_dt), sum = 1.0f, z = -INFINITY;
    for (uint b0 = 0; b0 < n_keys; b0 += AFW) {
        z = AFW_SCORE(b0);
        if (b0 < AFW_ZS)
            zs[b0 + lid] = z;
        red[lid] = z;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = AFW / 2; s > 0; s >>= 1) {
            if (lid < s)
                red[lid] = fmax(red[lid], red[lid + s]);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        float mn = fmax(m, red[0]);
        barrier(CLK_LOCAL_MEM_FENCE);
        red[lid] = exp(z - mn);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = AFW / 2; s > 0; s >>= 1) {
            if (lid < s)
                red[lid] += red[lid + s];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        sum = sum * exp(m - mn) + red[0];
        m = mn;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    /* pass 2: rounded probabilities times the values */
    float inv = 1.0f / sum;
    float4 acc = (float4)(0.0f);
    for (uint b0 = 0; b0 < n_keys; b0 += AFW) {
        uint nb = min((uint)AFW, n_keys - b0);
        if (n_keys > AFW)
            z = b0 < AFW_ZS ? zs[b0 + lid] : AFW_SCORE(b0);
        pz[lid] = round_act(exp(z - m) * inv);
        barrier(CLK_LOCAL_MEM_FENCE);
        /* the block's ring keys (positions < pos0), then its fresh ones: loops without a
         * branch, so that a GPU issues the loads ahead of the dependent fmas */
        uint j0 = lo + b0, n_ring = j0 < a.pos0 ? min(nb, a.pos0 - j0) : 0, i = slice;
        if (slice < ns) {
            if (a.kv_f16) {
                __global const half *vr = (__global const half *)v_ring + kvh * hd + 4 * d4;
#pragma unroll 8
                for (; i < n_ring; i += ns)
                    acc = fma(pz[i],
                              vload_half4(0, vr + (ulong)((j0 + i) % a.cache_cap) * kv_width), acc);
            } else {
                __global const float *vr = (__global const float *)v_ring + kvh * hd + 4 * d4;
#pragma unroll 8
                for (; i < n_ring; i += ns)
                    acc =
                        fma(pz[i], vload4(0, vr + (ulong)((j0 + i) % a.cache_cap) * kv_width), acc);
            }
            __global const float *vf = v_new + kvh * hd + 4 * d4;
            for (; i < nb; i += ns)
                acc = fma(pz[i], vload4(0, vf + (ulong)(j0 + i - a.pos0) * kv_width), acc);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#undef AFW_SCORE
    /* the slices' sums of dimensions 4 d4 .. 4 d4 + 3 (zs is free again) */
    if (slice < ns)
        vstore4(acc, lid, zs);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (slice == 0) {
        float4 o = acc;
        for (uint sl = 1; sl < ns; sl++)
            o += vload4(sl * (hd / 4) + d4, zs);
        __global float *op = out + (ulong)t * a.n_heads * hd + h * hd + 4 * d4;
        op[0] = round_act(o.x);
        op[1] = round_act(o.y);
        op[2] = round_act(o.z);
        op[3] = round_act(o.w);
    }
}

/* Fast numerics on GPUs, prefill chunks (more than MOECL_GPU_FAST_ATTN_TOKENS queries; head_dim
 * a multiple of 4, at most ATT_D): a work-group of 256 per (head, block of ATT_Q = 32 queries)
 * walks the block's keys in tiles of ATT_K = 32 rows of k (and v) copied into local memory, so
 * that each key row is read once per 32 queries instead of once per query. Work-item
 * (r = lid / 8, sub = lid % 8) owns query r of the block and keys sub, sub + 8, ... of a tile.
 * The same two passes and rounding points as attn_fast_wg_f32: pass 1 the max and the softmax
 * sum (each work-item a running max and sum over its keys, the 8 of a query combined with the
 * sink's term at the end), pass 2 the rounded probabilities exp(z - m) / sum times the values
 * (work-item sub adds dimensions 4 d4 .. 4 d4 + 3 for d4 = sub, sub + 8). Only the order of
 * float32 sums differs. */
#define ATT_Q 32
#define ATT_K 32
#define ATT_D 64
#define ATT_LD (ATT_D + 4)

/* Rows kb .. kb + ATT_K - 1 of k or v (fresh rows from pos0, else the ring; zeros past hi)
 * into dst[row][ATT_LD]: float4 i of the tile per work-item step. */
inline void att_tile(__local float *dst, __global const float *fresh, __global const uchar *ring,
                     uint kb, uint hi, uint kvh, const struct moecl_attn_args *a) {
    uint hd4 = a->head_dim / 4, kv_width = a->n_kv_heads * a->head_dim;
    for (uint i = get_local_id(0); i < ATT_K * hd4; i += 256u) {
        uint row = i / hd4, d4 = i % hd4, j = kb + row;
        float4 v = (float4)(0.0f);
        if (j <= hi) {
            if (j >= a->pos0)
                v = vload4(d4, fresh + (ulong)(j - a->pos0) * kv_width + kvh * a->head_dim);
            else if (a->kv_f16)
                v = vload_half4(d4, (__global const half *)ring +
                                        (ulong)(j % a->cache_cap) * kv_width + kvh * a->head_dim);
            else
                v = vload4(d4, (__global const float *)ring + (ulong)(j % a->cache_cap) * kv_width +
                                   kvh * a->head_dim);
        }
        vstore4(v, 0, dst + row * ATT_LD + 4u * d4);
    }
}

/* The rounded score of query row qv (in registers) against key row kr of the tile. */
inline float att_score(const float4 *qv, __local const float *kr, uint hd4) {
    float4 z = (float4)(0.0f);
#pragma unroll
    for (uint d4 = 0; d4 < ATT_D / 4; d4++)
        if (d4 < hd4)
            z = fma(qv[d4], vload4(d4, kr), z);
    return round_act((z.x + z.y) + (z.z + z.w));
}

__kernel __attribute__((reqd_work_group_size(256, 1, 1))) void
attn_fast_tile_f32(__global const float *q, __global const float *k_new,
                   __global const float *v_new, __global const uchar *k_ring,
                   __global const uchar *v_ring, __global const uchar *sinks, __global float *out,
                   struct moecl_attn_args a) {
    __local float ks[ATT_K * ATT_LD], vs[ATT_K * ATT_LD];
    __local float ps[ATT_Q * (ATT_K + 1)];
    __local float ms[ATT_Q * 8], ss[ATT_Q * 8];
    uint lid = get_local_id(0), h = get_group_id(0), t0 = get_group_id(1) * ATT_Q;
    uint r = lid / 8u, sub = lid % 8u, hd = a.head_dim, hd4 = hd / 4;
    uint kvh = h / (a.n_heads / a.n_kv_heads);
    uint nq = min((uint)ATT_Q, a.n_tokens - t0), t = t0 + min(r, nq - 1);
    uint p = a.pos0 + t, lo = attn_first_key(p, a.window);
    /* the block's keys: from its first query's first key to its last query */
    uint klo = attn_first_key(a.pos0 + t0, a.window), khi = a.pos0 + t0 + nq - 1;
    float4 qv[ATT_D / 4];
    __global const float *qr = q + (ulong)t * a.n_heads * hd + h * hd;
#pragma unroll
    for (uint d4 = 0; d4 < ATT_D / 4; d4++) {
        float4 x = d4 < hd4 ? vload4(d4, qr) * a.scale : (float4)(0.0f);
        qv[d4] = (float4)(round_act(x.x), round_act(x.y), round_act(x.z), round_act(x.w));
    }
    /* pass 1: per work-item running max and sum over its keys */
    float m = -INFINITY, s = 0.0f;
    for (uint kb = klo; kb <= khi; kb += ATT_K) {
        att_tile(ks, k_new, k_ring, kb, khi, kvh, &a);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = sub; kk < ATT_K; kk += 8u) {
            uint j = kb + kk;
            if (j < lo || j > p)
                continue;
            float z = att_score(qv, ks + kk * ATT_LD, hd4);
            if (z > m) {
                s = s * exp(m - z) + 1.0f;
                m = z;
            } else {
                s += exp(z - m);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    /* a query's 8 partial maxima and sums, with the sink's term (its logit, weight 1) */
    ms[lid] = m;
    ss[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    float mq = load_dt(sinks, a.sinks_offset, h, a.sinks_dt);
    for (uint i = 0; i < 8u; i++)
        mq = fmax(mq, ms[r * 8u + i]);
    float sum = exp(load_dt(sinks, a.sinks_offset, h, a.sinks_dt) - mq);
    for (uint i = 0; i < 8u; i++)
        sum += ss[r * 8u + i] * exp(ms[r * 8u + i] - mq); /* 0 where a work-item had no keys */
    float inv = 1.0f / sum;
    /* pass 2: rounded probabilities times the values */
    float4 acc0 = (float4)(0.0f), acc1 = (float4)(0.0f);
    for (uint kb = klo; kb <= khi; kb += ATT_K) {
        att_tile(ks, k_new, k_ring, kb, khi, kvh, &a);
        att_tile(vs, v_new, v_ring, kb, khi, kvh, &a);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = sub; kk < ATT_K; kk += 8u) {
            uint j = kb + kk;
            ps[r * (ATT_K + 1) + kk] =
                j < lo || j > p ? 0.0f
                                : round_act(exp(att_score(qv, ks + kk * ATT_LD, hd4) - mq) * inv);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (sub < hd4) {
#pragma unroll 8
            for (uint kk = 0; kk < ATT_K; kk++) {
                float pk = ps[r * (ATT_K + 1) + kk];
                acc0 = fma((float4)(pk), vload4(sub, vs + kk * ATT_LD), acc0);
                if (sub + 8u < hd4)
                    acc1 = fma((float4)(pk), vload4(sub + 8u, vs + kk * ATT_LD), acc1);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (r < nq && sub < hd4) {
        __global float *o = out + (ulong)t * a.n_heads * hd + h * hd;
        vstore4(
            (float4)(round_act(acc0.x), round_act(acc0.y), round_act(acc0.z), round_act(acc0.w)),
            sub, o);
        if (sub + 8u < hd4)
            vstore4((float4)(round_act(acc1.x), round_act(acc1.y), round_act(acc1.z),
                             round_act(acc1.w)),
                    sub + 8u, o);
    }
}
