/* A loaded gpt-oss checkpoint: config, quantization map and every weight as a view.
 *
 * This is the contract between loader/ (which fills it, knowing no OpenCL) and runtime/ (which
 * runs it). Every format the loader accepts (MLX affine / mxfp4 / mxfp8 / nvfp4 / float, mixed
 * per-module maps, Hugging Face MXFP4 blocks, Hugging Face bf16 input-major experts) is
 * normalised onto the same description: a `struct moecl_qweight` per linear module, whose rows
 * are OUTPUT features and whose packed columns run along the INPUT (reduction) axis, exactly as
 * MLX stores them.
 *
 * Ownership: struct moecl_ckpt owns the mmap'd safetensors files and any buffer the loader had
 * to build (the converted Hugging Face bf16 experts). Every pointer inside (tensor data, names,
 * config arrays) lives until moecl_ckpt_close(). Nothing is copied for the MLX formats: data
 * pointers point into the read-only mappings.
 */
#ifndef MOECL_CHECKPOINT_H
#define MOECL_CHECKPOINT_H

#include "moecl.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ dtypes */

enum moecl_dtype {
    MOECL_DTYPE_F32,
    MOECL_DTYPE_F16,
    MOECL_DTYPE_BF16,
    MOECL_DTYPE_F64,
    MOECL_DTYPE_F8_E4M3,
    MOECL_DTYPE_F8_E5M2,
    MOECL_DTYPE_BOOL,
    MOECL_DTYPE_U8,
    MOECL_DTYPE_I8,
    MOECL_DTYPE_U16,
    MOECL_DTYPE_I16,
    MOECL_DTYPE_U32,
    MOECL_DTYPE_I32,
    MOECL_DTYPE_U64,
    MOECL_DTYPE_I64,
    MOECL_DTYPE_COUNT
};

/* Bytes per element; "F32" etc. as safetensors spells it. */
size_t moecl_dtype_size(enum moecl_dtype dtype);
const char *moecl_dtype_name(enum moecl_dtype dtype);

#define MOECL_MAX_DIMS 8

/* One safetensors tensor: a view into a mapped file. */
struct moecl_tensor {
    const char *name;
    enum moecl_dtype dtype;
    int n_dims;
    int64_t shape[MOECL_MAX_DIMS];
    const void *data; /* into the mapping; 8-byte alignment is NOT guaranteed by the format */
    size_t n_bytes;
    int file_index;     /* which shard (index into moecl_ckpt.files) */
    size_t file_offset; /* byte offset of data within that file */
};

/* ------------------------------------------------------------------ config */

struct moecl_config {
    int hidden_size;             /* 2880 */
    int intermediate_size;       /* 2880: per-expert hidden width */
    int n_layers;                /* 24 */
    int n_heads;                 /* 64 */
    int n_kv_heads;              /* 8 */
    int head_dim;                /* 64 */
    int vocab_size;              /* 201088 */
    int n_experts;               /* 32: num_local_experts */
    int n_experts_per_tok;       /* 4 */
    int sliding_window;          /* 128 */
    float rms_norm_eps;          /* 1e-5 */
    float rope_theta;            /* 150000 */
    int yarn;                    /* 1 if rope_scaling says yarn, else plain RoPE (see config.h) */
    float rope_factor;           /* 32 */
    float beta_fast;             /* 32 */
    float beta_slow;             /* 1 */
    int original_max_pos;        /* 4096 */
    int max_position_embeddings; /* 131072 (informational) */
    float swiglu_alpha;          /* 1.702 (mlx-lm hard-codes it) */
    float swiglu_limit;          /* 7.0 (mlx-lm hard-codes it) */
    uint8_t *layer_sliding;      /* [n_layers]: 1 = sliding_attention, 0 = full_attention */
    int eos_token_id;            /* -1 if absent */
    /* Added by the loader (additive): */
    float rope_mscale;           /* yarn mscale, default 1 (mlx-lm YarnRoPE) */
    float rope_mscale_all_dim;   /* yarn mscale_all_dim, default 0 */
    int rope_parameters_ignored; /* 1: config has only `rope_parameters` (no rope_scaling); like
                                    mlx-lm we run plain RoPE (see loader/config.h) */
    int tie_word_embeddings;     /* informational; mlx-lm always reads a separate lm_head */
};

/* ------------------------------------------------------------------ quantized modules */

enum moecl_qmode {
    MOECL_QMODE_NONE,   /* float weight of dtype `float_dtype` */
    MOECL_QMODE_AFFINE, /* packed U32, scales+biases of dtype `float_dtype`, bits 2..8 */
    MOECL_QMODE_MXFP4,  /* packed U32 E2M1, U8 E8M0 scales, group 32, no biases */
    MOECL_QMODE_MXFP8,  /* packed U32 E4M3, U8 E8M0 scales, group 32 */
    MOECL_QMODE_NVFP4,  /* packed U32 E2M1, U8 E4M3 scales, group 16 */
};

const char *moecl_qmode_name(enum moecl_qmode mode);

/* A linear module (or a stack of per-expert linear modules) as the kernels see it.
 *
 * Logical weight: [n_experts?][rows = out][cols = in]. The bytes of row r of expert e start at
 * weight + e*weight_expert_stride + r*weight_row_stride (bytes); a row holds cols*bits/8 bytes
 * (float: cols*dtype size). Same for scales/biases with their own strides (cols/group_size
 * entries per row). Strides let the Hugging Face MXFP4 gate/up (even/odd rows of one tensor) be
 * expressed without copying. `bias` is the module's additive bias ([n_experts?][rows]), NULL if
 * the module has none. For an unquantized module, `weight` holds float elements of float_dtype
 * and scales/biases are NULL. */
struct moecl_qweight {
    const char *name; /* module path, e.g. "model.layers.3.mlp.experts.gate_proj" */
    enum moecl_qmode mode;
    int bits;       /* 2,3,4,5,6,8 (affine), 4 (mxfp4/nvfp4), 8 (mxfp8); 16/32 for float */
    int group_size; /* 32/64/128 affine, 32 mx*, 16 nvfp4; 0 for float */
    enum moecl_dtype float_dtype; /* float weight dtype, or affine scales/biases dtype */
    int n_experts;                /* 0 for a plain linear, else the expert count */
    int64_t rows, cols;

    const void *weight;
    size_t weight_row_stride, weight_expert_stride;
    const void *scales;
    size_t scales_row_stride, scales_expert_stride;
    const void *biases; /* affine only */
    size_t biases_row_stride, biases_expert_stride;

    const void *bias;
    enum moecl_dtype bias_dtype;
    size_t bias_expert_stride; /* bytes between experts' bias rows */

    /* Which source tensors the views come from (for accounting and messages). */
    const struct moecl_tensor *src_weight, *src_scales, *src_biases, *src_bias;
};

/* A vector parameter (norm weight, sinks): n elements of dtype. */
struct moecl_vec {
    const char *name;
    enum moecl_dtype dtype;
    int64_t n;
    const void *data;
    const struct moecl_tensor *src;
};

struct moecl_layer {
    struct moecl_vec input_norm;     /* [hidden] */
    struct moecl_qweight q, k, v, o; /* q [n_heads*head_dim, hidden] ... o [hidden, n_heads*hd] */
    struct moecl_vec sinks;          /* [n_heads] */
    struct moecl_vec post_norm;      /* [hidden] */
    struct moecl_qweight router;     /* [n_experts, hidden] with bias */
    struct moecl_qweight gate, up;   /* n_experts x [intermediate, hidden] with bias */
    struct moecl_qweight down;       /* n_experts x [hidden, intermediate] with bias */
};

/* The checkpoint's source layout, as detected. */
enum moecl_ckpt_layout {
    MOECL_LAYOUT_MLX,      /* mlx-lm keys (gate_proj/up_proj/down_proj .weight) */
    MOECL_LAYOUT_HF_MXFP4, /* gate_up_proj_blocks/_scales, down_proj_blocks/_scales */
    MOECL_LAYOUT_HF_BF16,  /* gate_up_proj [E, in, 2*out] interleaved, down_proj [E, in, out] */
};

struct moecl_st_file; /* one mapped safetensors file (loader/safetensors.h) */

struct moecl_ckpt {
    char *dir;
    enum moecl_ckpt_layout layout;
    struct moecl_config config;
    /* The float dtype of activations as mlx-lm would run this checkpoint: the dtype of the
     * unquantized float tensors (norm weights), i.e. BF16 for the published checkpoints. */
    enum moecl_dtype act_dtype;

    struct moecl_qweight embed;   /* [vocab, hidden], no bias */
    struct moecl_layer *layers;   /* [n_layers] */
    struct moecl_vec final_norm;  /* [hidden] */
    struct moecl_qweight lm_head; /* [vocab, hidden], no bias */

    int n_files;
    struct moecl_st_file **files;
    int n_tensors;
    const struct moecl_tensor **tensors; /* every tensor of every shard, sorted by name */

    /* Bytes the loader allocated (converted HF bf16 experts); 0 for zero-copy formats. */
    size_t converted_bytes;
    void *owned; /* internal: buffers to free */
};

/* Opens the checkpoint folder `dir`: config.json, the shards (index or model*.safetensors),
 * the quantization map; validates every shape against the config. */
MOECL_WUR enum moecl_status moecl_ckpt_open(const char *dir, struct moecl_ckpt **ckpt_out);
void moecl_ckpt_close(struct moecl_ckpt *ckpt);

/* A tensor by name, or NULL. */
const struct moecl_tensor *moecl_ckpt_find(const struct moecl_ckpt *ckpt, const char *name);

#endif
