/* The model and context objects behind the public API (model.c loads, forward.c evaluates). */
#ifndef MOECL_MODEL_INTERNAL_H
#define MOECL_MODEL_INTERNAL_H

#include "checkpoint.h"
#include "cl_util.h"
#include "kernels.h"
#include "weights.h"

/* A vector parameter (norm weight, sinks) on the device. */
struct moecl_dev_vec {
    cl_mem mem;
    size_t offset;
    int dt; /* MOECL_DT_* */
};

struct moecl_dev_layer {
    struct moecl_dev_vec input_norm, post_norm, sinks;
    struct moecl_dev_qweight q, k, v, o, router, gate, up, down;
};

struct moecl_model {
    struct moecl_ckpt *ckpt;
    struct moecl_cl_device device;
    cl_context cl_ctx;
    int act; /* MOECL_ACT_* */
    struct moecl_programs programs;
    struct moecl_weights *weights;
    struct moecl_dev_qweight embed, lm_head;
    struct moecl_dev_vec final_norm;
    struct moecl_dev_layer *layers; /* [n_layers] */
    cl_mem inv_freq;                /* [head_dim / 2] float: RoPE inverse frequencies */
    float mscale;                   /* YaRN attention factor (1 without YaRN) */
};

/* mlx-lm's rope frequencies for `cfg` (YaRN with truncated correction range, or plain):
 * inv_freq[head_dim/2] and the attention factor. */
void moecl_rope_freqs(const struct moecl_config *cfg, float *inv_freq, float *mscale_out);

#define MOECL_ERRMSG_MAX 2048

struct moecl_ctx_layer {
    uint32_t cap;    /* ring slots */
    uint32_t window; /* 0 = unbounded */
    cl_mem k, v;     /* [cap][n_kv_heads * head_dim] float */
};

struct moecl_context {
    struct moecl_model *model;
    cl_command_queue queue;
    struct moecl_kernels kernels;
    int n_ctx, chunk, max_kv_size, all_logits;
    enum moecl_kv_type kv_type;
    int n_past;
    int have_logits;
    /* Activations, [chunk] rows each. */
    cl_mem tokens;   /* [chunk] int */
    cl_mem x, xn;    /* [chunk][hidden] residual stream, normed */
    cl_mem q, k, v;  /* [chunk][heads * head_dim], [chunk][kv_heads * head_dim] x2 */
    cl_mem attn;     /* [chunk][heads * head_dim] */
    cl_mem tmp;      /* [chunk][hidden] */
    cl_mem rlogits;  /* [chunk][experts] */
    cl_mem ids;      /* [chunk][top_k] int */
    cl_mem wts;      /* [chunk][top_k] */
    cl_mem gate, up; /* [chunk * top_k][intermediate] */
    cl_mem down;     /* [chunk * top_k][hidden] */
    cl_mem logits;   /* [all_logits ? chunk : 1][vocab] */
    struct moecl_ctx_layer *layers;
    float *host_logits; /* [vocab] */
    size_t kv_bytes, act_bytes;
    char errmsg[MOECL_ERRMSG_MAX];
};

#endif
