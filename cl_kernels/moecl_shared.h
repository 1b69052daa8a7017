/* Shared by host C and OpenCL C: argument structs and constants of moecl's kernels.
 * The program builder prepends this file to every .cl source; host code includes it directly.
 * Keep it to fixed-width types that mean the same on both sides. */
#ifndef MOECL_SHARED_H
#define MOECL_SHARED_H

#ifdef __OPENCL_VERSION__
typedef uint moecl_u32;
typedef int moecl_i32;
typedef ulong moecl_u64;
#else
#include <stdint.h>
typedef uint32_t moecl_u32;
typedef int32_t moecl_i32;
typedef uint64_t moecl_u64;
#endif

/* ------------------------------------------------------------------ forward-pass kernels */

/* Element types a kernel reads at run time (norm weights, biases, sinks): moecl_dt_load(). */
#define MOECL_DT_F32 0
#define MOECL_DT_F16 1
#define MOECL_DT_BF16 2

/* Weight formats of the qmatmul family (-DQMODE=...). */
#define MOECL_QM_FLOAT 0
#define MOECL_QM_AFFINE 1
#define MOECL_QM_MXFP4 2
#define MOECL_QM_MXFP8 3
#define MOECL_QM_NVFP4 4

/* Activation dtype (-DACT=...): activations are float32 buffers holding values rounded to it. */
#define MOECL_ACT_F32 0
#define MOECL_ACT_BF16 1
#define MOECL_ACT_F16 2

/* How the additive bias joins the product (mlx-lm: Linear uses a fused addmm, rounded once;
 * quantized and expert layers round the product to the activation dtype, then add). */
#define MOECL_BIAS_NONE 0
#define MOECL_BIAS_FUSED 1
#define MOECL_BIAS_AFTER 2

/* qmatmul_* and qgather_*: y[p][r] = bias[e][r] + sum_c x[p / x_div][c] * W[e][r][c] for each
 * output vector p in [0, n_vec), e = ids ? ids[p] : 0. Byte offsets and strides address the
 * weight views inside their buffers (struct moecl_qweight semantics). */
struct moecl_qmm_args {
    moecl_u64 w_offset, w_row_stride, w_expert_stride;
    moecl_u64 s_offset, s_row_stride, s_expert_stride;
    moecl_u64 b_offset, b_row_stride, b_expert_stride;
    moecl_u64 bias_offset, bias_expert_stride;
    moecl_u32 rows, cols; /* output features, input features */
    moecl_u32 n_vec;      /* output vectors */
    moecl_u32 x_div;      /* input vector of output p is p / x_div */
    moecl_u32 x_stride;   /* floats between input vectors */
    moecl_u32 y_stride;   /* floats between output vectors */
    moecl_u32 use_ids;    /* 1: expert e = ids[p] (2: the same, a work-item column per vector) */
    moecl_u32 bias_mode;  /* MOECL_BIAS_* */
    moecl_u32 bias_dt;    /* MOECL_DT_* */
    moecl_u32 tile;       /* output vectors per work-item (reference kernel; 1 when use_ids) or per
                             column of a dense fast product */
    moecl_u32 x_offset;   /* floats before the first input vector */
    moecl_u32 rows_per_item; /* fast kernels: consecutive rows per work-item (or work-group) */
    moecl_u32 residual;      /* matmul_fmw: 1 = y = round(y + output), the residual add fused */
};

/* matmul_fmw3's epilogue in decode (one token): RoPE of the q and k rows and the token's k and v
 * rows stored into their ring slots as well, the arithmetic of rope_f32 and kv_append_*. */
struct moecl_qkv_rope_args {
    moecl_u64 kv_offset; /* elements before the token's ring slot: (pos % cache_cap) * kv_width */
    moecl_u32 head_dim;  /* 0: no RoPE (and no ring stores) */
    moecl_u32 pos;       /* the token's position */
    float mscale;        /* YaRN's attention scale (rope_f32's mscale) */
    moecl_u32 kv_write;  /* 1: k and v rows also into k_ring and v_ring at kv_offset */
    moecl_u32 kv_f16;    /* 1: the rings hold half (vstore_half_rte, as kv_append_f16) */
};

/* attn_*: causal attention with sinks over a ring-buffer cache plus the chunk's fresh keys. */
struct moecl_attn_args {
    moecl_u64 sinks_offset;
    moecl_u32 n_tokens; /* queries in this chunk */
    moecl_u32 pos0;     /* absolute position of the chunk's first token */
    moecl_u32 n_heads, n_kv_heads, head_dim;
    moecl_u32 window;    /* keys j allowed iff p - window < j <= p; 0 = unbounded */
    moecl_u32 cache_cap; /* ring slots; position j lives in slot j % cache_cap */
    moecl_u32 sinks_dt;  /* MOECL_DT_* */
    float scale;         /* 1/sqrt(head_dim) */
    moecl_u32 kv_f16;    /* 1: the rings hold half (enum moecl_kv_type MOECL_KV_F16) */
    /* Order of the sums over keys (n_tokens == 1 only; 0 otherwise): the i-th key visited is
     * lo + (i + key_shift) % n_keys for the query's allowed keys lo..p (n_keys of them). The
     * order of mlx-lm's RotatingKVCache buffer in single-token decode, a rotation of the
     * window; it changes the rounding of the softmax sum and the output, not the math. */
    moecl_u32 key_shift;
};

#endif
