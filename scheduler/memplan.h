/* The memory plan: bytes per device and per class (enum moecl_mem_class) for a model, a
 * placement and a context shape, before anything is loaded. No OpenCL here.
 *
 * This is the one formula for moecl's memory: runtime/forward.c sizes every context buffer with
 * the moecl_memplan_*_bytes functions below, the unified-memory manager sizes its arenas and
 * refuses impossible placements with moecl_memplan_build + moecl_memplan_check, and
 * `moecl footprint` prints the plan. A measured report (--report-memory) counts with the same
 * classes, so the two can be compared line by line.
 *
 * Three steps:
 *   1. a model description (struct moecl_memplan_model): every weight byte classified per
 *      layer, from a loaded checkpoint (moecl_memplan_model_from_ckpt) or from a writer recipe
 *      without any file (loader/recipe.h);
 *   2. a context shape (struct moecl_memplan_ctx): n_ctx, prefill chunk, rotating window,
 *      all_logits, KV type;
 *   3. moecl_memplan_build: placement + devices -> per-device class bytes, capacity, what is
 *      left, the largest single buffer, and a verdict; moecl_memplan_check turns a "does not
 *      fit" into MOECL_ERR_DEVICE_MEMORY with a message naming device, classes and numbers.
 *
 * What lives where (the contract with the runtime):
 * - weights: on the device its placement names (attn[l]: q/k/v/o, input/post norms, sinks,
 *   router, q/k/v/o/router biases; experts[l]: gate/up/down with their biases; embed: the
 *   embedding; lm_head: final norm + lm_head). Bytes are logical stored bytes (packed words,
 *   scales, affine biases), the same for a view and a copy.
 * - KV cache: on attn[l]'s device; a sliding layer holds min(window, ...) = window positions,
 *   a full layer n_ctx positions, or max_kv_size with a rotating window.
 * - activations and scratch: the context buffers of enum moecl_memplan_buf, on every device
 *   that has a role needing them (memplan.c: buf_roles); a device with several roles holds
 *   each buffer once.
 * - host: the weights' canonical host allocation (the checkpoint's mapping; the loader's
 *   converted buffers), the host logits row, and every byte of host-unified devices (PoCL's
 *   CPU device allocates its buffers in host memory).
 */
#ifndef MOECL_MEMPLAN_H
#define MOECL_MEMPLAN_H

#include "checkpoint.h"
#include "moecl.h"
#include "placement.h"
#include "recipe.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ model description */

#define MOECL_MEMPLAN_MAX_FORMATS 32

/* A weight format as the kernels see it (one program per format per device). */
struct moecl_memplan_format {
    enum moecl_qmode mode;
    int bits, group_size;
    enum moecl_dtype wdt; /* float weight dtype, or affine scales dtype; F32 for fp formats */
};

/* Stored bytes of one layer's weights, by where they are placed and what class they are. */
struct moecl_memplan_layer {
    uint64_t attn;          /* q, k, v, o: packed weights, scales, affine biases */
    uint64_t router;        /* router weight (+ scales, affine biases) */
    uint64_t attn_norms;    /* input/post norm, sinks, q/k/v/o and router additive biases */
    uint64_t experts;       /* gate, up, down of every expert */
    uint64_t expert_biases; /* gate/up/down additive biases */
    uint64_t attn_largest, experts_largest; /* largest single tensor of each side */
    uint32_t attn_formats, expert_formats;  /* bit i: formats[i] used */
};

/* Everything the planner needs of a model; owns `layers` and `layer_sliding`. */
struct moecl_memplan_model {
    struct moecl_config cfg; /* cfg.layer_sliding points at this description's own copy */
    uint64_t embed, lm_head, final_norm;
    uint64_t embed_largest, lm_head_largest;
    uint32_t embed_formats, lm_head_formats;
    struct moecl_memplan_layer *layers; /* [cfg.n_layers] */
    int n_formats;
    struct moecl_memplan_format formats[MOECL_MEMPLAN_MAX_FORMATS];
    uint64_t converted_bytes; /* weights the loader builds in host memory at load */
    uint64_t released_bytes;  /* mapped source bytes the loader releases after converting */
    uint64_t stored_bytes;    /* sum of every tensor's bytes as stored (the disk size) */
};

/* Bytes of one linear module (or stack of experts) as stored: weight, scales, affine biases;
 * the additive bias separately in *bias_out (may be NULL). The single formula both the
 * checkpoint and the recipe descriptions use. */
uint64_t moecl_memplan_module_bytes(enum moecl_qmode mode, int bits, int group_size,
                                    enum moecl_dtype fdtype, int n_experts, int64_t rows,
                                    int64_t cols, int has_bias, enum moecl_dtype bias_dtype,
                                    uint64_t *bias_out, uint64_t *largest_out);

/* Starts a description for `cfg` (copied, layer_sliding included); weights all zero. */
MOECL_WUR enum moecl_status moecl_memplan_model_init(struct moecl_memplan_model *m,
                                                     const struct moecl_config *cfg);

/* Adds a module's format to the table; *bit_out is its bit (1u << index). */
MOECL_WUR enum moecl_status moecl_memplan_model_add_format(struct moecl_memplan_model *m,
                                                           enum moecl_qmode mode, int bits,
                                                           int group_size, enum moecl_dtype fdtype,
                                                           uint32_t *bit_out);

/* Classifies every weight byte of a loaded checkpoint. */
MOECL_WUR enum moecl_status moecl_memplan_model_from_ckpt(const struct moecl_ckpt *ckpt,
                                                          struct moecl_memplan_model *m_out);

/* Classifies every weight byte of a checkpoint that recipe `r` would write (loader/recipe.h),
 * without any file: the same numbers moecl_memplan_model_from_ckpt gives for the written
 * checkpoint (tests/test_memplan.c checks every preset). */
MOECL_WUR enum moecl_status moecl_memplan_model_from_recipe(const struct moecl_recipe *r,
                                                            struct moecl_memplan_model *m_out);

/* NULL-safe; leaves *m zeroed. */
void moecl_memplan_model_free(struct moecl_memplan_model *m);

/* Sum of the description's weight bytes (every class, every layer). */
uint64_t moecl_memplan_model_weight_bytes(const struct moecl_memplan_model *m);

/* ------------------------------------------------------------------ context buffers */

/* The shape of a context: what moecl_context_create receives. */
struct moecl_memplan_ctx {
    int n_ctx;
    int prefill_chunk; /* <= 0: 512 */
    int max_kv_size;   /* > 0: full layers keep a ring of this many positions */
    int all_logits;
    enum moecl_kv_type kv_type;
    /* Pipelined prefill (runtime/forward.c): tokens per micro-batch, <= 0 off. It applies to
     * a placement with every layer's attention on one device and some layer's experts on
     * another, when a chunk holds two micro-batches or more (moecl_memplan_micro_batch); the
     * context then holds, besides the step buffers, ceil(chunk / micro_batch) sets of
     * micro-batch buffers (normed rows, ids, weights, the experts' sums) on the attention
     * device and every expert device (moecl_memplan_micro_batch_bytes). */
    int micro_batch;
};

/* Fills the defaults of moecl_context_create for n_ctx (f32 KV, chunk 512). */
void moecl_memplan_ctx_init(struct moecl_memplan_ctx *c, int n_ctx);

/* Tokens per prefill step as moecl_context_create picks it: prefill_chunk (512 if <= 0),
 * capped at n_ctx unless the KV is a rotating window. */
int moecl_memplan_chunk(const struct moecl_memplan_ctx *c);

/* The micro-batch pipelined prefill uses for placement p and shape c (rows), 0 when it does
 * not apply (see struct moecl_memplan_ctx). */
int moecl_memplan_micro_batch(const struct moecl_placement *p, const struct moecl_memplan_ctx *c);

/* Bytes of the micro-batch buffers (one device's view of them) for a micro-batch of mb rows
 * and chunk rows per step: ceil(chunk / mb) sets of [mb][hidden] normed rows, [mb][top_k] ids
 * and weights, [mb][hidden] sums. 0 when mb is 0. */
uint64_t moecl_memplan_micro_batch_bytes(const struct moecl_config *cfg, int mb, int chunk);

/* Ring slots of layer l: the window for a sliding layer, else max_kv_size or n_ctx. */
uint32_t moecl_memplan_kv_cap(const struct moecl_config *cfg, int layer,
                              const struct moecl_memplan_ctx *c);
/* Bytes of ONE of layer l's K or V buffers ([cap][n_kv_heads * head_dim] of the KV type). */
uint64_t moecl_memplan_kv_buffer_bytes(const struct moecl_config *cfg, int layer,
                                       const struct moecl_memplan_ctx *c);

/* The context's step buffers (runtime/forward.c), each [rows][width] of 4-byte elements. */
enum moecl_memplan_buf {
    MOECL_BUF_TOKENS,  /* [chunk] int32 */
    MOECL_BUF_X,       /* [chunk][hidden] residual stream */
    MOECL_BUF_XN,      /* [chunk][hidden] normed */
    MOECL_BUF_Q,       /* [chunk][heads * head_dim] */
    MOECL_BUF_K,       /* [chunk][kv_heads * head_dim] */
    MOECL_BUF_V,       /* [chunk][kv_heads * head_dim] */
    MOECL_BUF_ATTN,    /* [chunk][heads * head_dim] */
    MOECL_BUF_TMP,     /* [chunk][hidden] o_proj out / experts' hand-back */
    MOECL_BUF_RLOGITS, /* [chunk][experts] */
    MOECL_BUF_IDS,     /* [chunk][top_k] int32 */
    MOECL_BUF_WTS,     /* [chunk][top_k] */
    MOECL_BUF_GATE,    /* [micro * top_k][intermediate] */
    MOECL_BUF_UP,      /* [micro * top_k][intermediate] */
    MOECL_BUF_DOWN,    /* [micro * top_k][hidden] */
    MOECL_BUF_LOGITS,  /* [all_logits ? chunk : 1][vocab] (scratch class) */
    MOECL_BUF_COUNT
};

/* Bytes of one step buffer; its class (activations or scratch) in *class_out if not NULL. */
uint64_t moecl_memplan_buf_bytes(const struct moecl_config *cfg, enum moecl_memplan_buf b,
                                 const struct moecl_memplan_ctx *c,
                                 enum moecl_mem_class *class_out);
/* "tokens", "x", ... */
const char *moecl_memplan_buf_name(enum moecl_memplan_buf b);

/* Estimated bytes of compiled program binaries on one device: the core program plus one per
 * weight format, as PoCL 5 reports them for this codebase's kernels (366 KiB + 122 KiB per
 * format, measured with `moecl footprint --measure`); GPU drivers' binaries differ. */
uint64_t moecl_memplan_program_bytes(int n_formats);

/* ------------------------------------------------------------------ the plan */

#define MOECL_MEMPLAN_MAX_DEVICES 16

struct moecl_memplan_device {
    int device; /* index into the discovery list */
    uint64_t bytes[MOECL_MEM_N_CLASSES];
    uint64_t total; /* sum of bytes[] */
    /* What the device allocates itself and its global memory must hold: total, less the
     * weights on a host-unified device (zero-copy views of the host mapping, which PoCL does
     * not allocate: they count against host memory only). */
    uint64_t owned;
    uint64_t capacity;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
    uint64_t max_alloc;    /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    int host_unified;      /* its buffers are host memory */
    int64_t left;          /* capacity - owned (negative: over) */
    uint64_t largest;      /* the largest single buffer it must hold */
    char largest_what[96]; /* which one */
    int n_formats;         /* weight formats it runs (programs) */
    int fits;
};

struct moecl_memplan {
    int n_devices;
    struct moecl_memplan_device dev[MOECL_MEMPLAN_MAX_DEVICES];
    /* Host memory: weights' canonical allocation (mapping + converted), the logits row, and
     * every byte of host-unified devices. */
    uint64_t host_bytes[MOECL_MEM_N_CLASSES];
    uint64_t host_total, host_capacity; /* capacity 0: unknown, not checked */
    int64_t host_left;
    int fits;
    char reason[1024]; /* empty when it fits */
};

/* Plans model `m` placed by `p` (device indices into devs[0..n_devs)) for context shape `c`.
 * host_capacity: physical host memory in bytes (0: unknown). A plan that does not fit is
 * still MOECL_OK: look at plan->fits / plan->reason, or call moecl_memplan_check. Errors:
 * INVALID_ARG for a placement naming a device out of range or a bad context shape. */
MOECL_WUR enum moecl_status moecl_memplan_build(const struct moecl_memplan_model *m,
                                                const struct moecl_placement *p,
                                                const struct moecl_device_info *devs, int n_devs,
                                                const struct moecl_memplan_ctx *c,
                                                uint64_t host_capacity,
                                                struct moecl_memplan *plan_out);

/* MOECL_OK if the plan fits, else MOECL_ERR_DEVICE_MEMORY with plan->reason as the message. */
MOECL_WUR enum moecl_status moecl_memplan_check(const struct moecl_memplan *plan);

/* The plan's row for device index `device`, or NULL if the placement does not use it. */
const struct moecl_memplan_device *moecl_memplan_find(const struct moecl_memplan *plan, int device);

#endif
