/* Device probes for `moecl bench`: achievable streaming read bandwidth and float32 FMA rate.
 *
 * stream_read_f32: each work-item sums one contiguous chunk with float16 loads (the access
 * pattern PoCL vectorises well) or, with STRIDED defined, a grid-stride float4 loop (coalesced
 * on GPUs). The sum is written so the compiler cannot drop the loads. */

__kernel void stream_read_f32(__global const float16 *src, ulong n16, ulong per_item,
                              __global float *out) {
    size_t gid = get_global_id(0);
    float16 acc = (float16)(0.0f);
#ifdef STRIDED
    size_t stride = get_global_size(0);
    for (ulong i = gid; i < n16; i += stride)
        acc += src[i];
#else
    ulong begin = (ulong)gid * per_item;
    ulong end = min(begin + per_item, n16);
    for (ulong i = begin; i < end; i++)
        acc += src[i];
#endif
    float8 a8 = acc.lo + acc.hi;
    float4 a4 = a8.lo + a8.hi;
    out[gid] = a4.x + a4.y + a4.z + a4.w;
}

/* n_iter rounds of 8 independent float16 FMA chains: 8 * 16 * 2 = 256 flops per round. Eight
 * chains of 16 lanes cover the FMA latency of a CPU with two 512-bit FMA ports (4 cycles x 2
 * ports) and give a GPU 128 independent FMAs per work-item. */
__kernel void fma_peak_f32(__global float *out, uint n_iter, float a, float b) {
    size_t gid = get_global_id(0);
    float16 x0 = (float16)((float)gid * 1e-9f), x1 = x0 + 1.0f, x2 = x0 + 2.0f, x3 = x0 + 3.0f;
    float16 x4 = x0 + 4.0f, x5 = x0 + 5.0f, x6 = x0 + 6.0f, x7 = x0 + 7.0f;
    float16 va = (float16)(a), vb = (float16)(b);
    for (uint i = 0; i < n_iter; i++) {
        x0 = fma(x0, va, vb);
        x1 = fma(x1, va, vb);
        x2 = fma(x2, va, vb);
        x3 = fma(x3, va, vb);
        x4 = fma(x4, va, vb);
        x5 = fma(x5, va, vb);
        x6 = fma(x6, va, vb);
        x7 = fma(x7, va, vb);
    }
    float16 s = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
    float8 s8 = s.lo + s.hi;
    float4 s4 = s8.lo + s8.hi;
    out[gid] = s4.x + s4.y + s4.z + s4.w;
}
