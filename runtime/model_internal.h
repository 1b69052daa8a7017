/* The model and context objects behind the public API (model.c loads, forward.c evaluates). */
#ifndef MOECL_MODEL_INTERNAL_H
#define MOECL_MODEL_INTERNAL_H

#include "checkpoint.h"
#include "cl_util.h"
#include "kernels.h"
#include "memplan.h"
#include "placement.h"
#include "plan.h"
#include "umem.h"

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

/* A device the placement uses ("slot"), with its programs. */
struct moecl_mdev {
    struct moecl_cl_device cl;
    cl_context ctx; /* borrowed from moecl_model.ctxs */
    int space;      /* index into moecl_model.ctxs */
    int zero_copy;  /* weights and activations are views of host memory */
    int n_formats;
    struct moecl_qformat formats[32]; /* formats of the weights this device runs */
    struct moecl_programs programs;
    cl_mem inv_freq; /* [head_dim / 2] float, on devices that run attention */
};

struct moecl_model {
    struct moecl_ckpt *ckpt;
    int n_devs;
    struct moecl_mdev devs[MOECL_UMEM_MAX_DEVICES];
    int n_ctxs;
    cl_context ctxs[MOECL_UMEM_MAX_DEVICES]; /* one per platform (or per device when forced) */
    struct moecl_placement place;            /* device fields are slot indices into devs */
    struct moecl_placement gplace;           /* the same in discovery indices (infos) */
    struct moecl_device_info *infos;         /* [n_infos] every discovered device */
    int n_infos;
    struct moecl_memplan_model plan_model; /* the checkpoint as the memory plan sees it */
    struct moecl_plan plan;
    char place_desc[512];
    struct moecl_umem *umem;
    int act;                                 /* MOECL_ACT_* */
    struct moecl_dev_qweight embed, lm_head; /* on devs[place.embed], devs[place.lm_head] */
    struct moecl_dev_vec final_norm;
    struct moecl_dev_layer *layers; /* [n_layers]; attention parts on place.attn[l], expert
                                       parts on place.experts[l] */
    float mscale;                   /* YaRN attention factor (1 without YaRN) */
    int fast_numerics;              /* MOECL_NUMERICS_FAST in force */
};

/* The weight spans of every module of ck, with their memory class and the slot the placement
 * p (slot indices) puts them on. *spans_out is malloc'd. */
MOECL_WUR enum moecl_status moecl_weight_spans(const struct moecl_ckpt *ck,
                                               const struct moecl_placement *p,
                                               struct moecl_umem_span **spans_out, int *n_out);

/* mlx-lm's rope frequencies for `cfg` (YaRN with truncated correction range, or plain):
 * inv_freq[head_dim/2] and the attention factor. */
void moecl_rope_freqs(const struct moecl_config *cfg, float *inv_freq, float *mscale_out);

/* The order in which mlx-lm's sliding layers hold their keys, which sets the rounding of its
 * attention sums (attention.cl). mlx-lm's RotatingKVCache (keep 0, grown in steps of 256)
 * appends a multi-token call in time order (trimmed to window - 1 + n keys) and writes a
 * single token in place, over the oldest key once the buffer is full. With its buffer length
 * *shape, its write index *idx and the tokens seen before the call `off`, buffer slot s holds
 * position off - shape + ((s - idx) mod shape) in every state, and a single-token call visits
 * the slots in order: its keys start (shape - idx) mod shape after the oldest. Updates the
 * state for a call of n tokens; returns that shift (0 for n > 1: time order). */
uint32_t moecl_mlx_window_step(int64_t *shape, int64_t *idx, int64_t off, int64_t window, int n);

#define MOECL_ERRMSG_MAX 2048

struct moecl_ctx_layer {
    uint32_t cap;             /* ring slots */
    uint32_t window;          /* 0 = unbounded */
    struct moecl_ubuf *k, *v; /* [cap][n_kv_heads * head_dim] float, on the attention device */
};

/* One micro-batch of pipelined prefill: its rows of x (a sub-buffer of x's view on the
 * attention device) and hand-off buffers of its own, so that micro-batches do not wait on one
 * another's hand-offs. */
struct moecl_ctx_mb {
    cl_mem x_sub;                            /* [mb][hidden] */
    struct moecl_ubuf *xn, *ids, *wts, *tmp; /* [mb][hidden], [mb][top_k] x2, [mb][hidden] */
};

/* A device's queue and kernel objects in a context. */
struct moecl_ctx_dev {
    cl_command_queue queue;
    struct moecl_kernels kernels;
};

struct moecl_context {
    struct moecl_model *model;
    struct moecl_ctx_dev devs[MOECL_UMEM_MAX_DEVICES]; /* per model slot */
    int n_ctx, chunk, max_kv_size, all_logits;
    enum moecl_kv_type kv_type;
    int n_past;
    int have_logits;
    /* mlx-lm's RotatingKVCache of the sliding layers, reduced to what orders its buffer (its
     * length and write index; moecl_mlx_window_step), and the key order of the current eval's
     * single-token step on those layers (struct moecl_attn_args key_shift). */
    int64_t mlx_shape, mlx_idx;
    uint32_t key_shift;
    /* Activations, [chunk] rows each (unified buffers; views on the devices that use them). */
    struct moecl_ubuf *tokens;    /* [chunk] int */
    struct moecl_ubuf *x, *xn;    /* [chunk][hidden] residual stream, normed */
    struct moecl_ubuf *q, *k, *v; /* [chunk][heads * head_dim], [chunk][kv_heads * head_dim] x2 */
    struct moecl_ubuf *attn;      /* [chunk][heads * head_dim] */
    struct moecl_ubuf *tmp;       /* [chunk][hidden] o_proj out; on split layers the experts sum */
    struct moecl_ubuf *rlogits;   /* [chunk][experts] */
    struct moecl_ubuf *ids;       /* [chunk][top_k] int */
    struct moecl_ubuf *wts;       /* [chunk][top_k] */
    struct moecl_ubuf *gate, *up; /* [chunk * top_k][intermediate] */
    struct moecl_ubuf *down;      /* [chunk * top_k][hidden] */
    struct moecl_ubuf *logits;    /* [all_logits ? chunk : 1][vocab] */
    struct moecl_ctx_layer *layers;
    /* Pipelined prefill (micro_batch rows per micro-batch; NULL mbs: off). */
    int mb, n_mb, pipe_attn;
    struct moecl_ctx_mb *mbs; /* [n_mb] */
    float *host_logits;       /* [vocab] */
    size_t kv_bytes, act_bytes;
    uint64_t n_tokens, n_steps; /* evaluated so far (for bytes moved per token) */
    struct moecl_memplan plan;  /* the memory plan of this context and its model */
    const char *dump_dir;       /* $MOECL_DUMP_DIR at creation, NULL if unset (debugging aid) */
    int dump_layer;             /* $MOECL_DUMP_LAYER at creation (default 0) */
    char errmsg[MOECL_ERRMSG_MAX];
};

#endif
