/* The mixture-of-experts pieces around the expert products (built with -DACT): router top-k
 * with softmax over the selected logits, the clamped SwiGLU, and the weighted expert sum fused
 * with the residual add. */

#define TOPK_MAX 32
/* Experts up to which router_topk_f32 orders its choices as MLX's CPU argpartition does (a
 * private index array of this many entries: gpt-oss-120b has 128); larger routers keep the
 * largest-first order. */
#define ROUTER_ORDER_MAX 128

/* The comparator of MLX's CPU argpartition: (value, index) pairs, NaN above everything. */
inline int argp_less(__global const float *l, int a, int b) {
    float va = l[a], vb = l[b];
    if (isnan(va))
        return 0;
    if (isnan(vb))
        return 1;
    return va < vb || (va == vb && a < b);
}

/* libstdc++'s __adjust_heap (with its __push_heap) on idx[0..len), a max-heap under argp_less:
 * the hole at `hole` sinks to a leaf, then `value` rises from there. */
inline void argp_adjust_heap(__global const float *l, int *idx, int hole, int len, int value) {
    int top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (argp_less(l, idx[child], idx[child - 1]))
            child--;
        idx[hole] = idx[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        idx[hole] = idx[child - 1];
        hole = child - 1;
    }
    int parent = (hole - 1) / 2;
    while (hole > top && argp_less(l, idx[parent], value)) {
        idx[hole] = idx[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    idx[hole] = value;
}

/* idx[0..n) = 0..n-1 rearranged as std::nth_element(idx, idx + nth, idx + n, argp_less) of
 * libstdc++ rearranges them (__introselect: median-of-three partitions down to 3 elements
 * or fewer, then an insertion sort; __heap_select past a depth of 2 floor(log2 n)). MLX's CPU
 * argpartition is that call, and the order it leaves in the top k is the order in which
 * mlx-lm sums the k experts' softmax terms and outputs (both in float32: a different order
 * rounds differently now and then). */
inline void argp_nth_element(__global const float *l, int *idx, int n, int nth) {
    for (int i = 0; i < n; i++)
        idx[i] = i;
    int first = 0, last = n;
    if (nth >= n)
        return;
    int depth = 2 * (31 - (int)clz((uint)n));
    while (last - first > 3) {
        if (depth == 0) {
            /* __heap_select(first, nth + 1, last), then the nth element to the front */
            int *h = idx + first, len = nth + 1 - first;
            for (int p = (len - 2) / 2; len >= 2 && p >= 0; p--)
                argp_adjust_heap(l, h, p, len, h[p]);
            for (int i = nth + 1; i < last; i++)
                if (argp_less(l, idx[i], h[0])) {
                    int v = idx[i];
                    idx[i] = h[0];
                    argp_adjust_heap(l, h, 0, len, v);
                }
            int t = idx[first];
            idx[first] = idx[nth];
            idx[nth] = t;
            return;
        }
        depth--;
        /* __move_median_to_first(first, first + 1, mid, last - 1) */
        int a = first + 1, b = first + (last - first) / 2, c = last - 1, s;
        if (argp_less(l, idx[a], idx[b]))
            s = argp_less(l, idx[b], idx[c]) ? b : argp_less(l, idx[a], idx[c]) ? c : a;
        else
            s = argp_less(l, idx[a], idx[c]) ? a : argp_less(l, idx[b], idx[c]) ? c : b;
        int t = idx[first];
        idx[first] = idx[s];
        idx[s] = t;
        /* __unguarded_partition(first + 1, last, pivot = first) */
        int f = first + 1, e = last, pv = idx[first];
        for (;;) {
            while (argp_less(l, idx[f], pv))
                f++;
            e--;
            while (argp_less(l, pv, idx[e]))
                e--;
            if (f >= e)
                break;
            t = idx[f];
            idx[f] = idx[e];
            idx[e] = t;
            f++;
        }
        if (f <= nth)
            first = f;
        else
            last = f;
    }
    /* __insertion_sort(first, last) */
    for (int i = first + 1; i < last; i++) {
        int v = idx[i], j = i;
        while (j > first && argp_less(l, v, idx[j - 1])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* logits [n_tokens][n_experts] -> ids [n_tokens][k], weights [n_tokens][k] = softmax over the k
 * selected logits (float32 accumulation, rounded to the activation dtype), as mlx-lm's gpt-oss
 * router on MLX's CPU: the k of argpartition(logits, -k) in the order argp_nth_element leaves
 * them (among equal logits the higher expert index wins), the softmax's sum and the later
 * weighted sum of the experts (moe_combine_f32) in that order. Past ROUTER_ORDER_MAX experts:
 * the same k, largest first. One work-item per token. */
__kernel void router_topk_f32(__global const float *logits, __global int *ids,
                              __global float *weights, uint n_tokens, uint n_experts, uint k) {
    uint t = get_global_id(0);
    if (t >= n_tokens)
        return;
    __global const float *l = logits + (ulong)t * n_experts;
    int sel[TOPK_MAX];
    float val[TOPK_MAX];
    if (n_experts <= ROUTER_ORDER_MAX) {
        int idx[ROUTER_ORDER_MAX];
        argp_nth_element(l, idx, (int)n_experts, (int)(n_experts - k));
        for (uint s = 0; s < k; s++) {
            sel[s] = idx[n_experts - k + s];
            val[s] = l[sel[s]];
        }
    } else {
        /* largest first: each pass takes the largest logit not yet taken */
        for (uint s = 0; s < k; s++) {
            int best = -1;
            float bv = 0.0f;
            for (uint e = 0; e < n_experts; e++) {
                int taken = 0;
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
        }
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
