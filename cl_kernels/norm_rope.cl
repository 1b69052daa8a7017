/* RMSNorm, YaRN rotary embedding and the residual add (built with -DACT=MOECL_ACT_*). */

/* y[t] = w * round(x[t] * rsqrt(mean(x[t]^2) + eps)): mx.fast.rms_norm rounds the normalized
 * value to the activation dtype before the weight multiply. One work-item per row. */
__kernel void rmsnorm_f32(__global const float *x, __global float *y, __global const uchar *w,
                          ulong w_offset, uint w_dt, uint n_rows, uint n, float eps) {
    uint t = get_global_id(0);
    if (t >= n_rows)
        return;
    __global const float *xr = x + (ulong)t * n;
    __global float *yr = y + (ulong)t * n;
    float ss = 0.0f;
    for (uint i = 0; i < n; i++)
        ss += xr[i] * xr[i];
    float inv = 1.0f / sqrt(ss / (float)n + eps);
    for (uint i = 0; i < n; i++)
        yr[i] = round_act(round_act(xr[i] * inv) * load_dt(w, w_offset, i, w_dt));
}

/* The same for GPUs: a work-group of RMS_WG work-items per row (n <= RMS_MAX). fast == 0: the
 * sum of squares in element order by one work-item over the row staged in local memory (the bits
 * of rmsnorm_f32, without its long chain of global loads); 1: rms_inv_fast's tree (fast
 * numerics). */
__kernel __attribute__((reqd_work_group_size(RMS_WG, 1, 1))) void
rmsnorm_wg_f32(__global const float *x, __global float *y, __global const uchar *w, ulong w_offset,
               uint w_dt, uint n, float eps, uint fast) {
    __local float xs[RMS_MAX];
    __local float part[RMS_WG];
    uint lid = get_local_id(0), t = get_group_id(0);
    __global const float *xr = x + (ulong)t * n;
    __global float *yr = y + (ulong)t * n;
    float inv;
    if (fast) {
        inv = rms_inv_fast(xr, part, n, eps);
    } else {
        /* whole-trip loops: the row's loads issue together instead of one latency per sweep (an
         * H100 spent ~11 us per decode norm in the sweeps' dependent round trips) */
#pragma unroll
        for (uint k = 0; k < RMS_MAX / RMS_WG; k++) {
            uint i = lid + k * RMS_WG;
            if (i < n)
                xs[i] = xr[i];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            float acc = 0.0f;
            for (uint i = 0; i < n; i++)
                acc += xs[i] * xs[i];
            part[0] = acc;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        inv = 1.0f / sqrt(part[0] / (float)n + eps);
    }
#pragma unroll
    for (uint k = 0; k < RMS_MAX / RMS_WG; k++) {
        uint i = lid + k * RMS_WG;
        if (i < n)
            yr[i] = round_act(round_act(xr[i] * inv) * load_dt(w, w_offset, i, w_dt));
    }
}

/* YaRN RoPE as mlx-lm applies it, in place on x [n_tokens][n_heads][head_dim] (row stride
 * `stride` floats) and on x2 [n_tokens][n_heads2][head_dim] (stride2; the keys beside the
 * queries, one launch for both; n_heads2 0: none): x = round(mscale * x) over all dims, then the
 * half-split rotation of pair (i, i + head_dim/2) by theta = position * inv_freq[i], position =
 * pos0 + t. The rotation follows MLX's rope arithmetic: cos and sin rounded to the activation
 * dtype, each product rounded, then the sum (exact in float32 models). Work-item (run of `pairs`
 * pairs of a head, token): one per (head, token) on CPUs, one per pair on GPUs. */
__kernel void rope_f32(__global float *x, __global const float *inv_freq, uint n_tokens,
                       uint n_heads, uint head_dim, uint stride, uint pos0, float mscale,
                       uint pairs, __global float *x2, uint n_heads2, uint stride2) {
    uint half_dim = head_dim / 2, runs = half_dim / pairs;
    uint h = get_global_id(0) / runs, i0 = get_global_id(0) % runs * pairs, t = get_global_id(1);
    if (h >= n_heads + n_heads2 || t >= n_tokens)
        return;
    __global float *v = h < n_heads ? x + (ulong)t * stride + h * head_dim
                                    : x2 + (ulong)t * stride2 + (h - n_heads) * head_dim;
    float ms = round_act(mscale);
    float pos = (float)(pos0 + t);
    for (uint i = i0; i < i0 + pairs; i++) {
        float x1 = v[i], x2 = v[i + half_dim];
        if (mscale != 1.0f) {
            x1 = round_act(x1 * ms);
            x2 = round_act(x2 * ms);
        }
        float theta = pos * inv_freq[i];
        float c = round_act(ref_sincos(theta, 0)), s = round_act(ref_sincos(theta, 1));
        v[i] = rope_rotate(x1, x2, c, s, 0u);
        v[i + half_dim] = rope_rotate(x1, x2, c, s, 1u);
    }
}

/* x[i] = round(x[i] + y[i]) for i < n; each work-item a contiguous run (64 on CPUs, 1 on GPUs). */
__kernel void add_f32(__global float *x, __global const float *y, uint n, uint run) {
    uint i0 = get_global_id(0) * run;
    uint i1 = min(i0 + run, n);
    for (uint i = i0; i < i1; i++)
        x[i] = round_act(x[i] + y[i]);
}
