/* The forward pass's kernels: programs, kernel objects and one typed launcher per kernel.
 *
 * Two kinds of program:
 * - the core program (fwd_common.cl, norm_rope.cl, attention.cl, moe.cl), one per model, built
 *   with -DACT for the model's activation dtype;
 * - one format program per distinct weight format (fwd_common.cl, qmatmul.cl) built from the
 *   same source with -DQMODE/-DBITS/-DGROUP/-DWDT; its kernels are named after the format
 *   (matmul_f32_q4g64_bf16, embed_f32_mxfp4).
 *
 * Kernels are listed once below; kernel objects are created per forward context (cl_kernel
 * argument state is not shareable between threads), programs are shared through the model.
 *
 * Every launcher checks its shapes, sets the arguments and enqueues without waiting. */
#ifndef MOECL_KERNELS_H
#define MOECL_KERNELS_H

#include "checkpoint.h"
#include "cl_util.h"
#include "moecl.h"
#include "moecl_shared.h"

#include <stddef.h>
#include <stdint.h>

/* Core kernels: X(name). */
#define MOECL_CORE_KERNELS(X)                                                                      \
    X(rmsnorm_f32)                                                                                 \
    X(rmsnorm_wg_f32)                                                                              \
    X(rope_f32)                                                                                    \
    X(add_f32)                                                                                     \
    X(attn_sinks_f32)                                                                              \
    X(attn_sinks_wg_f32)                                                                           \
    X(attn_fast_f32)                                                                               \
    X(attn_fast_wg_f32)                                                                            \
    X(attn_fast_tile_f32)                                                                          \
    X(kv_append_f32)                                                                               \
    X(kv_append_f16)                                                                               \
    X(router_topk_f32)                                                                             \
    X(swiglu_f32)                                                                                  \
    X(moe_combine_f32)

/* Per-format kernels: X(field, name prefix); the kernel is <prefix><format suffix>. */
#define MOECL_FORMAT_KERNELS(X)                                                                    \
    X(matmul, "matmul_f32_")                                                                       \
    X(matmul_fast, "matmul_fast_f32_")                                                             \
    X(matmul_fm, "matmul_fm_f32_")                                                                 \
    X(matmul_fm_prep, "matmul_fm_prep_f32_")                                                       \
    X(matmul_fmb, "matmul_fmb_f32_")                                                               \
    X(matmul_fmb_prep, "matmul_fmb_prep_f32_")                                                     \
    X(matmul_fmt, "matmul_fmt_f32_")                                                               \
    X(matmul_fmt3, "matmul_fmt3_f32_")                                                             \
    X(matmul_fmv, "matmul_fmv_f32_")                                                               \
    X(matmul_fmvn, "matmul_fmvn_f32_")                                                             \
    X(matmul_fmw, "matmul_fmw_f32_")                                                               \
    X(matmul_fmw_glu, "matmul_fmw_glu_f32_")                                                       \
    X(matmul_fmw3, "matmul_fmw3_f32_")                                                             \
    X(embed, "embed_f32_")

/* MOECL_ACT_* for a dtype (F32 for anything not F16/BF16). */
int moecl_act_of_dtype(enum moecl_dtype dt);
/* MOECL_DT_* for a float dtype; -1 if not F32/F16/BF16. */
int moecl_dt_code(enum moecl_dtype dt);

/* ------------------------------------------------------------------ programs */

/* A weight format as the kernels see it. */
struct moecl_qformat {
    enum moecl_qmode mode;
    int bits, group_size;
    enum moecl_dtype wdt; /* float weight dtype, or affine scales dtype; F32 for fp formats */
};

/* The format of a module; MOECL_ERR_UNSUPPORTED for one the kernels cannot run. */
MOECL_WUR enum moecl_status moecl_qformat_of(const struct moecl_qweight *w,
                                             struct moecl_qformat *fmt_out);
int moecl_qformat_equal(const struct moecl_qformat *a, const struct moecl_qformat *b);
/* "q4g64_bf16", "mxfp4", "bf16", ... into buf. */
void moecl_qformat_suffix(const struct moecl_qformat *f, char *buf, size_t n);

struct moecl_programs {
    int seq_round;     /* built with per-operation rounding: only the reference-order kernel */
    int fast_numerics; /* built with -DFAST_NUMERICS=1: matmul_fm kernels where a format has one */
    int lanes;         /* rows per vector of the fast product (-DLANES): 8 or 16 (CPU), 1 (GPU) */
    cl_program core;
    int n_formats;
    struct moecl_qformat formats[32];
    cl_program format_programs[32];
    int no_fast[32];  /* 1: built with -DMOECL_NO_FAST (the compiler rejected the fast kernels) */
    int tensor_cores; /* 1: the tiled fast product runs on NVIDIA tensor cores (-DMOECL_TC=1) */
    int tc_vecs;      /* and its vectors per block (-DTC_BN: 128, $MOECL_TC_VECS=64) */
    int tc_rows;      /* and its rows per block (-DTC_BM: 64, $MOECL_TC_ROWS=128) */
    int fmw_rows;     /* rows per warp of the 16-byte-load decode products (-DFW_T: 4; 0 = off,
                       * 2 or 8 from $MOECL_FMW) */
};

/* Builds the core program and one program per format in `formats`; seq_round selects MLX
 * CPU's per-operation rounding in quantized products of 16-bit models (-DSEQ_ROUND);
 * fast_numerics adds the reordered, contracted products (matmul_fm, -DFAST_NUMERICS). */
MOECL_WUR enum moecl_status moecl_programs_build(cl_context ctx, cl_device_id dev, int act,
                                                 int seq_round, int fast_numerics,
                                                 const struct moecl_qformat *formats, int n_formats,
                                                 struct moecl_programs *p_out);
void moecl_programs_free(struct moecl_programs *p);

/* ------------------------------------------------------------------ kernel objects */

struct moecl_format_kernels {
#define X(field, prefix) cl_kernel field;
    MOECL_FORMAT_KERNELS(X)
#undef X
};

/* Launch events awaiting their profiling times, and the totals per op class (moecl.h). */
struct moecl_prof {
    int n, cap;
    cl_event *ev;
    unsigned char *cls;
    double seconds[MOECL_OPC_COUNT];
    uint64_t launches[MOECL_OPC_COUNT];
};

/* Waits for the pending events, adds their device times to the totals and releases them. */
MOECL_WUR enum moecl_status moecl_prof_collect(struct moecl_prof *prof);
void moecl_prof_free(struct moecl_prof *prof);

/* Scratch of the CPU fast-numerics products: the input vectors permuted by matmul_fm_prep (see
 * qmatmul_fm_cpu.cl); grown on demand, reused by every product on the kernels' (in-order) queue. */
struct moecl_fm_scratch {
    cl_mem buf;
    size_t bytes;
};

struct moecl_kernels {
#define X(name) cl_kernel name;
    MOECL_CORE_KERNELS(X)
#undef X
    int n_formats;
    struct moecl_format_kernels formats[32];
    size_t local_rows; /* local size of row-parallel kernels */
    /* Matrix products: 1 = the reference-order kernel (bit-identical to MLX's CPU kernel,
     * slow): set for programs built with seq_round, or by $MOECL_EXACT_MATMUL=1. */
    int exact_matmul;
    int lanes;             /* moecl_programs.lanes */
    int fast_numerics;     /* use matmul_fm where the format has it (moecl_programs) */
    uint32_t fmt_min;      /* GPU: vectors per column from which matmul_fmt runs ($MOECL_FMT_MIN) */
    uint32_t fmt_vecs;     /* and its vectors per block: p->tc_vecs on tensor cores, else 64 */
    uint32_t fmt_rows;     /* and its rows per work-group: p->tc_rows on tensor cores, else 64 */
    uint32_t fmw_rows;     /* GPU: rows per warp of matmul_fmw (p->fmw_rows; 0 = off) */
    uint32_t fmw_min_rows; /* GPU: rows from which a lone product takes matmul_fmw (1024; below:
                              matmul_fmv) */
    int fmw_glu;           /* GPU: gate, up and SwiGLU in one matmul_fmw_glu ($MOECL_FMW_GLU) */
    int fmw_qkv;           /* GPU: q, k and v in one matmul_fmw3 ($MOECL_FMW_QKV) */
    int qkv_norm;          /* GPU: the attention's norm inside matmul_fmw3 ($MOECL_QKV_NORM) */
    int qkv_rope;          /* GPU decode: RoPE inside matmul_fmw3 ($MOECL_QKV_ROPE) */
    int qkv_kv;            /* GPU decode: and the KV append too ($MOECL_QKV_KV) */
    int router_norm;    /* GPU: the MoE norm inside the router's matmul_fmvn ($MOECL_ROUTER_NORM) */
    int attn_tile;      /* GPU prefill chunks: attn_fast_tile_f32 ($MOECL_ATTN_TILE=0: off) */
    int fast_attention; /* attn_fast_f32 / attn_fast_wg_f32 (fast numerics, $MOECL_FAST_ATTENTION)
                         */
    uint32_t fmb_min;   /* CPU: vectors per column (per expert) from which matmul_fmb runs
                           ($MOECL_FMB_MIN; 0 = never) */
    struct moecl_fm_scratch *fm_scratch; /* CPU fast numerics: owned here */
    struct moecl_prof *prof;             /* NULL: no profiling (owned by the context) */
};

MOECL_WUR enum moecl_status moecl_kernels_create(const struct moecl_programs *p,
                                                 struct moecl_kernels *k_out);
void moecl_kernels_free(struct moecl_kernels *k);

/* ------------------------------------------------------------------ launchers */

/* A module resolved to device buffers. Absent parts (scales of a float weight, the bias) point
 * at the weight buffer so every kernel argument is a valid cl_mem. */
struct moecl_dev_qweight {
    const struct moecl_qweight *w;
    int format; /* index into moecl_programs.formats */
    cl_mem wmem, smem, bmem, biasmem;
    size_t w_offset, s_offset, b_offset, bias_offset;
};

/* y[p][r] (r < rows) = x[p / x_div] . W[e][r] (+ bias) for p < n_vec; x rows start x_offset
 * floats into x and are x_stride apart; ids (n_vec ints, expert of each output vector) or
 * NULL for a dense module. */
MOECL_WUR enum moecl_status moecl_launch_matmul(cl_command_queue q, const struct moecl_kernels *k,
                                                const struct moecl_dev_qweight *w, cl_mem x,
                                                uint32_t x_offset, uint32_t x_stride,
                                                uint32_t x_div, cl_mem ids, cl_mem y,
                                                uint32_t y_stride, uint32_t n_vec, int bias_mode);

/* Whether moecl_launch_matmul takes the CPU product with the vectors along the lanes
 * (matmul_fmb, fast numerics, 16 lanes): at least k->fmb_min vectors (per expert on average
 * with ids, and at most 256 experts). */
int moecl_matmul_fmb_fits(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                          uint32_t n_vec, int ids);

/* y[r] = round(y[r] + (w . x)[r]) for one dense input vector: the product (its bias and
 * rounding as moecl_launch_matmul) and moecl_launch_add's residual add in one launch, bit for
 * bit the two. Only where moecl_matmul_add_fusable says so (GPU fast numerics, matmul_fmw's
 * shapes and alignment); else a shape error. */
int moecl_matmul_add_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                             uint32_t x_offset, uint32_t x_stride, uint32_t n_vec);
MOECL_WUR enum moecl_status moecl_launch_matmul_add(cl_command_queue q,
                                                    const struct moecl_kernels *k,
                                                    const struct moecl_dev_qweight *dw, cl_mem x,
                                                    uint32_t x_offset, uint32_t x_stride, cl_mem y,
                                                    int bias_mode);

/* Three dense products of the same n_vec input vectors (the attention's q, k, v) in one
 * launch: y_i = w_i . x (rows of y_i w_i's rows apart) with each one's bias mode, bit for bit
 * as moecl_launch_matmul computes them: one vector as matmul_fmw (decode), from k->fmt_min
 * vectors as matmul_fmt (prefill). Only where moecl_qkv_fusable says so (GPU fast numerics,
 * one format with those kernels, their alignments; one vector: at most 4096 columns); else a
 * shape error. */
int moecl_qkv_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *const w[3],
                      uint32_t x_offset, uint32_t x_stride, uint32_t n_vec);
/* An RMSNorm a fused launch applies to its input first: weight buffer, offset, MOECL_DT_*. */
struct moecl_norm_w {
    cl_mem mem;
    size_t offset;
    int dt;
    float eps;
};
/* Whether moecl_launch_qkv can also norm its input (one vector, $MOECL_QKV_NORM not 0). */
int moecl_qkv_norm_fusable(const struct moecl_kernels *k,
                           const struct moecl_dev_qweight *const w[3], uint32_t x_offset,
                           uint32_t x_stride, uint32_t n_vec);
/* norm (not NULL; only where moecl_qkv_norm_fusable): the products read RMSNorm(x) instead of
 * x, bit for bit moecl_launch_rmsnorm's row before them. */
MOECL_WUR enum moecl_status moecl_launch_qkv(cl_command_queue q, const struct moecl_kernels *k,
                                             const struct moecl_dev_qweight *const w[3], cl_mem x,
                                             uint32_t x_offset, uint32_t x_stride, uint32_t n_vec,
                                             cl_mem const y[3], const int bias_mode[3],
                                             const struct moecl_norm_w *norm);

/* Decode's RoPE (and KV append) inside moecl_launch_qkv: q and k rotated at position pos as
 * moecl_launch_rope2 rotates them (inv_freq [head_dim / 2], mscale); with k_ring and v_ring
 * (not NULL) the token's k and v rows also go to ring slot pos % cache_cap as
 * moecl_launch_kv_append stores them (float, or half with kv_f16). */
struct moecl_qkv_rope {
    cl_mem inv_freq;
    uint32_t head_dim, pos;
    float mscale;
    cl_mem k_ring, v_ring;
    uint32_t cache_cap;
    int kv_f16;
};
/* Whether moecl_launch_qkv_rope applies: one vector where moecl_qkv_fusable, $MOECL_QKV_ROPE not
 * 0, q's and k's rows whole heads of head_dim (even), k and v of one width. */
int moecl_qkv_rope_fusable(const struct moecl_kernels *k,
                           const struct moecl_dev_qweight *const w[3], uint32_t x_offset,
                           uint32_t x_stride, uint32_t head_dim);
/* moecl_launch_qkv of one vector with decode's epilogue (rope, not NULL): bit for bit
 * moecl_launch_qkv, then moecl_launch_rope2 of y[0] and y[1], then (rope->k_ring set)
 * moecl_launch_kv_append of y[1] and y[2]. Only where moecl_qkv_rope_fusable; else a shape
 * error. */
MOECL_WUR enum moecl_status moecl_launch_qkv_rope(cl_command_queue q, const struct moecl_kernels *k,
                                                  const struct moecl_dev_qweight *const w[3],
                                                  cl_mem x, uint32_t x_offset, uint32_t x_stride,
                                                  cl_mem const y[3], const int bias_mode[3],
                                                  const struct moecl_norm_w *norm,
                                                  const struct moecl_qkv_rope *rope);

/* An expert stack's gate and up products and their clamped SwiGLU (swiglu_f32's arithmetic) in
 * one launch: y[p] = swiglu(gate . x, up . x) for the n_vec output vectors (expert ids[p], input
 * row p / x_div), bit for bit the two products and moecl_launch_swiglu. Only where
 * moecl_glu_fusable says so (GPU fast numerics, one vector per column, the same shape and
 * format, 16-byte alignment); else a shape error. */
int moecl_glu_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *gate,
                      const struct moecl_dev_qweight *up, uint32_t x_offset, uint32_t x_stride,
                      uint32_t n_vec);
MOECL_WUR enum moecl_status
moecl_launch_glu(cl_command_queue q, const struct moecl_kernels *k,
                 const struct moecl_dev_qweight *gate, const struct moecl_dev_qweight *up, cl_mem x,
                 uint32_t x_offset, uint32_t x_stride, uint32_t x_div, cl_mem ids, cl_mem y,
                 uint32_t y_stride, uint32_t n_vec, int bias_mode, float alpha, float limit);

/* One dense vector's product y = w . RMSNorm(x) (+bias) with the normed row also written to xn
 * (decode's router after the post-attention norm): bit for bit moecl_launch_rmsnorm and
 * moecl_launch_matmul (matmul_fmv). Only where moecl_matmul_norm_fusable says so (GPU fast
 * numerics, below 1024 rows and k->fmw_min_rows, at most 4096 columns); else a shape error. */
int moecl_matmul_norm_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                              uint32_t n_vec);
MOECL_WUR enum moecl_status moecl_launch_matmul_norm(cl_command_queue q,
                                                     const struct moecl_kernels *k,
                                                     const struct moecl_dev_qweight *dw, cl_mem x,
                                                     cl_mem xn, const struct moecl_norm_w *norm,
                                                     cl_mem y, int bias_mode);

/* y[t] = embedding row tokens[t], dequantized, for t < n_tokens. */
MOECL_WUR enum moecl_status moecl_launch_embed(cl_command_queue q, const struct moecl_kernels *k,
                                               const struct moecl_dev_qweight *w, cl_mem tokens,
                                               uint32_t n_tokens, cl_mem y);

MOECL_WUR enum moecl_status moecl_launch_rmsnorm(cl_command_queue q, const struct moecl_kernels *k,
                                                 cl_mem x, cl_mem y, cl_mem w, size_t w_offset,
                                                 int w_dt, uint32_t n_rows, uint32_t n, float eps);

MOECL_WUR enum moecl_status moecl_launch_rope(cl_command_queue q, const struct moecl_kernels *k,
                                              cl_mem x, cl_mem inv_freq, uint32_t n_tokens,
                                              uint32_t n_heads, uint32_t head_dim, uint32_t stride,
                                              uint32_t pos0, float mscale);
/* The same on two buffers in one launch: x [n_tokens][n_heads][head_dim] (row stride `stride`)
 * and x2 (n_heads2 heads, stride2; n_heads2 0: x only), e.g. the queries and the keys. */
MOECL_WUR enum moecl_status moecl_launch_rope2(cl_command_queue q, const struct moecl_kernels *k,
                                               cl_mem x, uint32_t n_heads, uint32_t stride,
                                               cl_mem x2, uint32_t n_heads2, uint32_t stride2,
                                               cl_mem inv_freq, uint32_t n_tokens,
                                               uint32_t head_dim, uint32_t pos0, float mscale);

MOECL_WUR enum moecl_status moecl_launch_add(cl_command_queue q, const struct moecl_kernels *k,
                                             cl_mem x, cl_mem y, uint32_t n);

MOECL_WUR enum moecl_status moecl_launch_attn(cl_command_queue q, const struct moecl_kernels *k,
                                              cl_mem qbuf, cl_mem k_new, cl_mem v_new,
                                              cl_mem k_ring, cl_mem v_ring, cl_mem sinks,
                                              const struct moecl_attn_args *a, cl_mem out);

MOECL_WUR enum moecl_status moecl_launch_kv_append(cl_command_queue q,
                                                   const struct moecl_kernels *k, cl_mem k_new,
                                                   cl_mem v_new, cl_mem k_ring, cl_mem v_ring,
                                                   uint32_t n_tokens, uint32_t pos0, uint32_t cap,
                                                   uint32_t kv_width, int kv_f16);

MOECL_WUR enum moecl_status moecl_launch_router_topk(cl_command_queue q,
                                                     const struct moecl_kernels *k, cl_mem logits,
                                                     cl_mem ids, cl_mem weights, uint32_t n_tokens,
                                                     uint32_t n_experts, uint32_t top_k);

MOECL_WUR enum moecl_status moecl_launch_swiglu(cl_command_queue q, const struct moecl_kernels *k,
                                                cl_mem gate, cl_mem up, uint32_t n, float alpha,
                                                float limit);

MOECL_WUR enum moecl_status moecl_launch_moe_combine(cl_command_queue q,
                                                     const struct moecl_kernels *k, cl_mem x,
                                                     cl_mem y, cl_mem weights, uint32_t n_tokens,
                                                     uint32_t n, uint32_t top_k);

#endif
