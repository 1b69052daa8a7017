/* Helpers shared by the forward-pass kernels: activation rounding, run-time dtype loads and the
 * element decoders of the quantized formats.
 *
 * Activations live in float32 buffers but hold values rounded to the model's activation dtype
 * (-DACT=MOECL_ACT_*), wherever mlx-lm materialises an array of that dtype; round_act() is that
 * rounding. Every kernel accumulates in float32. */
#ifndef ACT
#define ACT MOECL_ACT_F32
#endif

/* No fused multiply-add contraction: the reference (MLX's CPU backend built for generic x86-64)
 * rounds every product before the add, and long dot products (attention over thousands of
 * keys) drift apart otherwise. Explicit fma() calls stay fused. */
#pragma OPENCL FP_CONTRACT OFF

#define MOECL_CAT_(a, b) a##b
#define MOECL_CAT(a, b) MOECL_CAT_(a, b)

/* bf16 bits -> float: exact. */
inline float bf16_to_f32(uint bits) {
    return as_float(bits << 16);
}

/* float -> activation dtype -> float. bf16: round to nearest even on the float bits, as MLX's
 * bfloat16 conversion does; f16: the correctly rounded vstore_half_rte. */
inline float round_act(float x) {
#if ACT == MOECL_ACT_BF16
    uint u = as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return x;
    u += 0x7fffu + ((u >> 16) & 1u);
    return as_float(u & 0xffff0000u);
#elif ACT == MOECL_ACT_F16
    ushort h;
    vstore_half_rte(x, 0, (__private half *)&h);
    return vload_half(0, (__private const half *)&h);
#else
    return x;
#endif
}

/* Element i of a float vector of run-time dtype `dt` (MOECL_DT_*) at byte `offset` of `base`. */
inline float load_dt(__global const uchar *base, ulong offset, uint i, uint dt) {
    __global const uchar *p = base + offset;
    if (dt == MOECL_DT_BF16)
        return bf16_to_f32(((__global const ushort *)p)[i]);
    if (dt == MOECL_DT_F16)
        return vload_half(i, (__global const half *)p);
    return ((__global const float *)p)[i];
}

/* E8M0 scale (mx formats): 2^(e - 127); e = 0 is 2^-127 (a float32 subnormal), 255 is +inf
 * (MLX decodes it so). */
inline float e8m0_to_f32(uint e) {
    return e == 0 ? as_float(0x00400000u) : as_float(e << 23);
}

/* E4M3 (fn: bias 7, subnormals, no infinities, S.1111.111 is NaN). */
inline float e4m3_to_f32(uint b) {
    uint e = (b >> 3) & 15u, m = b & 7u;
    float v;
    if (e == 0)
        v = (float)m * 0.001953125f; /* m/8 * 2^-6 */
    else if (e == 15 && m == 7)
        v = as_float(0x7fc00000u);
    else
        v = as_float(((e + 120u) << 23) | (m << 20));
    return (b & 0x80u) ? -v : v;
}

/* E2M1 code -> value (bit 3 sign, bits 0-2 magnitude). */
inline float e2m1_to_f32(uint code) {
    uint mag = code & 7u;
    /* 0, 0.5, 1, 1.5, 2, 3, 4, 6 */
    float v = mag < 4u ? (float)mag * 0.5f : (float)(1u << ((mag >> 1) - 1u)) * (1.0f + 0.5f * (float)(mag & 1u));
    return (code & 8u) ? -v : v;
}

/* exp as MLX's CPU backend computes it (a Cephes polynomial for 2^frac and the exponent
 * written into the bits), so softmax and sigmoid round to the same activation values as the
 * reference. Within a few ulp of exp(). -DMLX_CPU=0 uses the library exp instead. */
#ifndef MLX_CPU
#define MLX_CPU 1
#endif

inline float ref_exp(float xin) {
#if MLX_CPU
    if (isnan(xin))
        return xin;
    if (xin > 88.0f)
        return INFINITY;
    if (xin < -88.0f)
        return 0.0f;
    float x = xin * 1.442695f;
    /* floor(x + 0.5) exactly, as MLX computes it in double: undo a round-up of x + 0.5f */
    float ip = floor(x + 0.5f);
    if (ip - 0.5f > x)
        ip -= 1.0f;
    float fp = x - ip;
    float y = 1.535336188319500e-4f;
    y = fma(y, fp, 1.339887440266574e-3f);
    y = fma(y, fp, 9.618437357674640e-3f);
    y = fma(y, fp, 5.550332471162809e-2f);
    y = fma(y, fp, 2.402264791363012e-1f);
    y = fma(y, fp, 6.931472028550421e-1f);
    y = fma(y, fp, 1.0f);
    return as_float(((int)ip + 127) << 23) * y;
#else
    return exp(xin);
#endif
}

/* sigmoid of an activation-dtype value, as the reference computes it: e = exp(|x|) rounded to
 * the activation dtype, y = 1 / (1 + e), result round(x < 0 ? y : 1 - y). */
inline float ref_sigmoid(float x) {
    float e = round_act(ref_exp(fabs(x)));
    float y = 1.0f / (1.0f + e);
    return round_act(x < 0.0f ? y : 1.0f - y);
}

/* One element of mlx-lm's gpt-oss clamped SwiGLU (see swiglu_f32 in moe.cl); `al` is alpha
 * rounded to the activation dtype. (Always inlined, al hoisted by the caller: PoCL ran
 * swiglu_f32 12 times slower with a plain inline function rounding alpha per element.) */
__attribute__((always_inline)) inline float swiglu_one(float gate, float up, float al,
                                                       float limit) {
    float g = fmin(gate, limit);
    float u = fmin(fmax(up, -limit), limit);
    float sg = ref_sigmoid(round_act(al * g));
    float glu = round_act(g * sg);
    return round_act(glu * round_act(u + 1.0f));
}

/* sin (sine = 1) or cos as MLX's CPU backend computes them (Cephes: reduction by pi/4 in three
 * float parts, then one of two polynomials); the library functions otherwise. */
inline float ref_sincos(float in, int sine) {
#if MLX_CPU
    int sign_sin = in < 0.0f;
    float x = fabs(in);
    float y = x * 1.27323954473516f;
    uint emm2 = (uint)y;
    emm2 = (emm2 + 1u) & ~1u;
    y = (float)emm2;
    int poly = (emm2 & 2u) != 0;
    x = fma(y, -0.78515625f, x);
    x = fma(y, -2.4187564849853515625e-4f, x);
    x = fma(y, -3.77489497744594108e-8f, x);
    sign_sin ^= (emm2 & 4u) != 0;
    int sign_cos = ((emm2 - 2u) & 4u) != 0;
    float z = x * x;
    float y1 = fma(z, 2.443315711809948e-5f, -1.388731625493765e-3f);
    float y2 = fma(z, -1.9515295891e-4f, 8.3321608736e-3f);
    y1 = fma(y1, z, 4.166664568298827e-2f);
    y2 = fma(y2, z, -1.6666654611e-1f);
    y1 = y1 * z;
    y2 = y2 * z;
    y1 = y1 * z;
    y2 = fma(x, y2, x);
    y1 = fma(z, -0.5f, y1);
    y1 = y1 + 1.0f;
    if (sine) {
        float ys = poly ? y1 : y2;
        return sign_sin ? -ys : ys;
    }
    float yc = poly ? y2 : y1;
    return sign_cos ? yc : -yc;
#else
    return sine ? sin(in) : cos(in);
#endif
}

/* ------------------------------------------------------------------ pieces shared by kernels */

/* RoPE's rotation of the pair (x1, x2) by cos c and sin s: the pair's first element (upper 0,
 * round(round(x1 c) - round(x2 s))) or its second (upper 1, round(round(x1 s) + round(x2 c))).
 * Each product is rounded on its own through a volatile variable: NVIDIA's compiler ignores
 * FP_CONTRACT OFF, and at float32 activations it fused these products into multiply-adds
 * differently in rope_f32 and in matmul_fmw3's epilogue (a few percent of their outputs
 * differed on an H100). */
inline float rope_rotate(float x1, float x2, float c, float s, uint upper) {
    volatile float p1 = round_act(x1 * (upper ? s : c));
    volatile float p2 = round_act(x2 * (upper ? c : s));
    return upper ? round_act(p1 + p2) : round_act(p1 - p2);
}

/* RMSNorm on GPUs: a work-group of RMS_WG work-items per row of n <= RMS_MAX elements. */
#define RMS_WG 256
#define RMS_MAX 4096

/* 1 / sqrt(mean(x^2) + eps) of the row xr in fast numerics' order: work-item lid sums the
 * squares of elements lid, lid + RMS_WG, ..., and the RMS_WG sums are added as a tree in
 * part[RMS_WG]. Every work-item of the group gets the result. */
inline float rms_inv_fast(__global const float *xr, __local float *part, uint n, float eps) {
    uint lid = get_local_id(0);
    float ss = 0.0f;
    /* whole-trip loop: the row's loads issue together */
#pragma unroll
    for (uint k = 0; k < RMS_MAX / RMS_WG; k++) {
        uint i = lid + k * RMS_WG;
        if (i < n) {
            float v = xr[i];
            ss += v * v;
        }
    }
    part[lid] = ss;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = RMS_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            part[lid] += part[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return 1.0f / sqrt(part[0] / (float)n + eps);
}
