/* The mixture-of-experts pieces around the expert products (built with -DACT): router top-k
 * with softmax over the selected logits, the clamped SwiGLU, and the weighted expert sum fused
 * with the residual add. */

#define TOPK_MAX 32

/* logits [n_tokens][n_experts] -> ids [n_tokens][k] (largest first; among equal logits the
 * higher expert index wins, as MLX's argpartition orders (value, index) pairs) and weights [n_tokens][k] = softmax over the k selected logits (float32 accumulation,
 * rounded to the activation dtype). One work-item per token. */
__kernel void router_topk_f32(__global const float *logits, __global int *ids,
                              __global float *weights, uint n_tokens, uint n_experts, uint k) {
    uint t = get_global_id(0);
    if (t >= n_tokens)
        return;
    __global const float *l = logits + (ulong)t * n_experts;
    int sel[TOPK_MAX];
    float val[TOPK_MAX];
    ulong chosen = 0; /* the experts taken so far, as bits (up to 64 experts; else a search) */
    for (uint s = 0; s < k; s++) {
        int best = -1;
        float bv = 0.0f;
        for (uint e = 0; e < n_experts; e++) {
            int taken = 0;
            if (n_experts <= 64)
                taken = (int)((chosen >> e) & 1ul);
            else
                for (uint u = 0; u < s; u++)
                    taken |= sel[u] == (int)e;
            if (taken)
                continue;
            if (best < 0 || l[e] >= bv) {
                best = (int)e;
                bv = l[e];
            }
        }
        sel[s] = best;
        val[s] = bv;
        if (best >= 0 && best < 64)
            chosen |= 1ul << best;
    }
    float m = val[0], sum = 0.0f;
    for (uint s = 1; s < k; s++)
        m = fmax(m, val[s]);
    for (uint s = 0; s < k; s++)
        sum += ref_exp(val[s] - m);
    float inv = 1.0f / sum; /* the reference multiplies by the reciprocal */
    for (uint s = 0; s < k; s++) {
        ids[(ulong)t * k + s] = sel[s];
        weights[(ulong)t * k + s] = round_act(ref_exp(val[s] - m) * inv);
    }
}

/* gate[i] = swiglu(gate[i], up[i]) in place, mlx-lm's gpt-oss variant:
 *   g = min(gate, limit); u = clip(up, -limit, limit); g * sigmoid(alpha * g) * (u + 1),
 * every intermediate in the activation dtype (alpha too, as MLX casts the Python scalar).
 * Each work-item a contiguous run of `run` elements (64 on CPUs, 1 on GPUs). */
__kernel void swiglu_f32(__global float *gate, __global const float *up, uint n, float alpha,
                         float limit, uint run) {
    uint i0 = get_global_id(0) * run;
    uint i1 = min(i0 + run, n);
    float al = round_act(alpha);
    for (uint i = i0; i < i1; i++)
        gate[i] = swiglu_one(gate[i], up[i], al, limit);
}

/* x[t][c] = round(x[t][c] + round(sum_s round(weights[t][s] * y[t*k + s][c]))): the router-
 * weighted sum of the k expert outputs, then the residual add. Work-item (column run of
 * `run`: 64 on CPUs, 1 on GPUs, token). */
__kernel void moe_combine_f32(__global float *x, __global const float *y,
                              __global const float *weights, uint n_tokens, uint n, uint k,
                              uint run) {
    uint c0 = get_global_id(0) * run, t = get_global_id(1);
    if (t >= n_tokens || c0 >= n)
        return;
    uint c1 = min(c0 + run, n);
    for (uint c = c0; c < c1; c++) {
        float s = 0.0f;
        for (uint j = 0; j < k; j++)
            s += round_act(weights[(ulong)t * k + j] * y[((ulong)t * k + j) * n + c]);
        x[(ulong)t * n + c] = round_act(x[(ulong)t * n + c] + round_act(s));
    }
}
