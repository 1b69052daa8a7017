/* Contexts and the forward pass (moecl.h): KV cache, activations, chunked prefill, decode.
 *
 * One step evaluates up to `chunk` tokens: everything is enqueued on the context's in-order
 * queue and only the final logits read waits. Sliding-window layers keep a ring of `window`
 * positions; attention reads positions before the chunk from the ring and the chunk's own
 * keys from the fresh k/v buffers, and only then are the chunk's keys appended, so the ring
 * never needs to hold more than the window. */
#include "model_internal.h"

#include "memplan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ctx_record_error(struct moecl_context *c) {
    snprintf(c->errmsg, sizeof c->errmsg, "%s", moecl_last_error());
}

/* Device masks (bit = model slot) of the parts of the placement. */
struct masks {
    unsigned embed, attn, experts, head, split;
};

static struct masks masks_of(const struct moecl_model *m) {
    struct masks k = {1u << m->place.embed, 0, 0, 1u << m->place.lm_head, 0};
    for (int l = 0; l < m->place.n_layers; l++) {
        k.attn |= 1u << m->place.attn[l];
        k.experts |= 1u << m->place.experts[l];
        if (m->place.attn[l] != m->place.experts[l])
            k.split = 1;
    }
    return k;
}

/* Pipelined prefill applies when the memory plan says so (moecl_memplan_micro_batch: every
 * layer's attention on one device, some layer's experts elsewhere, a chunk holds at least two
 * micro-batches of mb rows; mb from the context options or $MOECL_MICRO_BATCH) and a
 * micro-batch of x starts on the device's base-address alignment. */
static enum moecl_status pipe_setup(struct moecl_context *c, unsigned split_mask, int host,
                                    int mb) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    struct moecl_umem *um = m->umem;
    int a = m->place.attn[0];
    if (mb <= 0 || !split_mask)
        return MOECL_OK;
    size_t H = (size_t)cfg->hidden_size, K = (size_t)cfg->n_experts_per_tok;
    size_t rows_bytes = (size_t)mb * H * sizeof(float);
    cl_uint align_bits = 0;
    if (clGetDeviceInfo(m->devs[a].cl.device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                        &align_bits, NULL) != CL_SUCCESS ||
        !align_bits || rows_bytes % (align_bits / 8))
        return MOECL_OK;
    int n_mb = (c->chunk + mb - 1) / mb;
    c->mbs = calloc((size_t)n_mb, sizeof *c->mbs);
    if (!c->mbs)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    c->n_mb = n_mb;
    c->mb = mb;
    c->pipe_attn = a;
    unsigned mask = (1u << a) | split_mask;
    cl_mem x = moecl_umem_view(um, c->x, a);
    for (int j = 0; j < n_mb; j++) {
        struct moecl_ctx_mb *B = &c->mbs[j];
        size_t rows = (size_t)(c->chunk - j * mb < mb ? c->chunk - j * mb : mb);
        cl_buffer_region region = {(size_t)j * rows_bytes, rows * H * sizeof(float)};
        cl_int err;
        B->x_sub =
            clCreateSubBuffer(x, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
        MOECL_CL_CHECK(err, "clCreateSubBuffer(x micro-batch)");
        MOECL_TRY(moecl_umem_buffer_create(um, "xn mb", MOECL_MEM_ACTIVATIONS, rows_bytes, mask,
                                           host, &B->xn));
        MOECL_TRY(moecl_umem_buffer_create(um, "ids mb", MOECL_MEM_ACTIVATIONS,
                                           (size_t)mb * K * sizeof(int32_t), mask, host, &B->ids));
        MOECL_TRY(moecl_umem_buffer_create(um, "wts mb", MOECL_MEM_ACTIVATIONS,
                                           (size_t)mb * K * sizeof(float), mask, host, &B->wts));
        MOECL_TRY(moecl_umem_buffer_create(um, "tmp mb", MOECL_MEM_ACTIVATIONS, rows_bytes, mask,
                                           host, &B->tmp));
        c->act_bytes += 2 * rows_bytes + 2 * (size_t)mb * K * 4;
    }
cleanup:
    return status;
}

enum moecl_status moecl_context_create(struct moecl_model *model, int n_ctx,
                                       const struct moecl_context_options *options,
                                       struct moecl_context **ctx_out) {
    enum moecl_status status = MOECL_OK;
    struct moecl_context *c = NULL;
    *ctx_out = NULL;
    if (!model || n_ctx <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "moecl_context_create: %s",
                               model ? "n_ctx must be positive" : "model is NULL");
    const struct moecl_config *cfg = &model->ckpt->config;
    c = calloc(1, sizeof *c);
    if (!c)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    c->model = model;
    {
        const char *dd = getenv("MOECL_DUMP_DIR"), *dl = getenv("MOECL_DUMP_LAYER");
        c->dump_dir = dd && *dd ? dd : NULL;
        c->dump_layer = dl ? atoi(dl) : 0;
    }
    c->n_ctx = n_ctx;
    /* Every size below comes from the memory plan (scheduler/memplan.h), so `moecl footprint`
     * and the unified-memory manager count exactly what is allocated here. */
    struct moecl_memplan_ctx shape;
    moecl_memplan_ctx_init(&shape, n_ctx);
    if (options) {
        shape.prefill_chunk = options->prefill_chunk;
        shape.max_kv_size = options->max_kv_size > 0 ? options->max_kv_size : 0;
        shape.all_logits = options->all_logits != 0;
        shape.kv_type = options->kv_type;
        shape.micro_batch = options->micro_batch;
    }
    const char *mbe = getenv("MOECL_MICRO_BATCH"); /* the override tests use */
    if (mbe && *mbe)
        shape.micro_batch = atoi(mbe);
    if (shape.micro_batch < 0) {
        status = moecl_error_set(MOECL_ERR_INVALID_ARG,
                                 "moecl_context_create: micro_batch %d (expected 0 for off, or "
                                 "tokens per micro-batch)%s",
                                 shape.micro_batch, mbe && *mbe ? " from $MOECL_MICRO_BATCH" : "");
        goto cleanup;
    }
    if (shape.kv_type != MOECL_KV_F32 && shape.kv_type != MOECL_KV_F16) {
        status = moecl_error_set(MOECL_ERR_INVALID_ARG,
                                 "moecl_context_create: KV type %d (expected f32 or f16)",
                                 (int)shape.kv_type);
        goto cleanup;
    }
    c->chunk = moecl_memplan_chunk(&shape);
    c->max_kv_size = shape.max_kv_size;
    c->all_logits = shape.all_logits;
    c->kv_type = shape.kv_type;
    /* Refused before allocating when the plan does not fit its devices. */
    MOECL_TRY(moecl_memplan_build(&model->plan_model, &model->gplace, model->infos, model->n_infos,
                                  &shape, 0, &c->plan));
    MOECL_TRY(moecl_memplan_check(&c->plan));
    cl_int err;
    /* queues are profiling-enabled, so that moecl_context_set_profile can time launches */
    cl_queue_properties qprops[] = {CL_QUEUE_PROPERTIES, CL_QUEUE_PROFILING_ENABLE, 0};
    for (int i = 0; i < model->n_devs; i++) {
        const struct moecl_mdev *d = &model->devs[i];
        c->devs[i].queue = clCreateCommandQueueWithProperties(d->ctx, d->cl.device, qprops, &err);
        MOECL_CL_CHECK(err, "clCreateCommandQueueWithProperties");
        MOECL_TRY(moecl_kernels_create(&d->programs, &c->devs[i].kernels));
    }

    struct moecl_umem *um = model->umem;
    struct masks mk = masks_of(model);
    /* Hand-off buffers need a host copy when a hand-off crosses contexts. */
    int host = model->plan.n_handoffs[MOECL_HANDOFF_HOST] > 0;
    unsigned split_mask = mk.split ? mk.experts : 0; /* tmp carries the experts' sum back */
    static const char *const names[MOECL_BUF_COUNT] = {
        "tokens",  "x",   "xn",  "q",    "k",  "v",    "attn",  "tmp",
        "rlogits", "ids", "wts", "gate", "up", "down", "logits"};
    struct {
        struct moecl_ubuf **field;
        unsigned mask;
        int host;
    } step_bufs[MOECL_BUF_COUNT] = {
        [MOECL_BUF_TOKENS] = {&c->tokens, mk.embed, 0},
        [MOECL_BUF_X] = {&c->x, mk.embed | mk.attn | mk.head, host},
        [MOECL_BUF_XN] = {&c->xn, mk.attn | mk.experts | mk.head, host},
        [MOECL_BUF_Q] = {&c->q, mk.attn, 0},
        [MOECL_BUF_K] = {&c->k, mk.attn, 0},
        [MOECL_BUF_V] = {&c->v, mk.attn, 0},
        [MOECL_BUF_ATTN] = {&c->attn, mk.attn, 0},
        [MOECL_BUF_TMP] = {&c->tmp, mk.attn | split_mask, host},
        [MOECL_BUF_RLOGITS] = {&c->rlogits, mk.attn, 0},
        [MOECL_BUF_IDS] = {&c->ids, mk.attn | mk.experts, host},
        [MOECL_BUF_WTS] = {&c->wts, mk.attn | mk.experts, host},
        [MOECL_BUF_GATE] = {&c->gate, mk.experts, 0},
        [MOECL_BUF_UP] = {&c->up, mk.experts, 0},
        [MOECL_BUF_DOWN] = {&c->down, mk.experts, 0},
        [MOECL_BUF_LOGITS] = {&c->logits, mk.head, 0},
    };
    for (int b = 0; b < MOECL_BUF_COUNT; b++) {
        enum moecl_mem_class cls;
        uint64_t n_bytes = moecl_memplan_buf_bytes(cfg, (enum moecl_memplan_buf)b, &shape, &cls);
        MOECL_TRY(moecl_umem_buffer_create(um, names[b], cls, n_bytes, step_bufs[b].mask,
                                           step_bufs[b].host, step_bufs[b].field));
        c->act_bytes += n_bytes;
    }
    MOECL_TRY(pipe_setup(c, split_mask, host, moecl_memplan_micro_batch(&model->gplace, &shape)));
    c->host_logits = malloc((size_t)cfg->vocab_size * sizeof(float));
    c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
    if (!c->host_logits || !c->layers) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        struct moecl_ctx_layer *L = &c->layers[l];
        L->window =
            cfg->layer_sliding[l] ? (uint32_t)cfg->sliding_window : (uint32_t)c->max_kv_size;
        L->cap = moecl_memplan_kv_cap(cfg, l, &shape);
        uint64_t kv = moecl_memplan_kv_buffer_bytes(cfg, l, &shape);
        enum moecl_mem_class cls = cfg->layer_sliding[l] ? MOECL_MEM_KV_SLIDING : MOECL_MEM_KV_FULL;
        unsigned mask = 1u << model->place.attn[l];
        MOECL_TRY(moecl_umem_buffer_create(um, "k cache", cls, kv, mask, 0, &L->k));
        MOECL_TRY(moecl_umem_buffer_create(um, "v cache", cls, kv, mask, 0, &L->v));
        c->kv_bytes += 2 * kv;
    }
    *ctx_out = c;
    c = NULL;
cleanup:
    moecl_context_release(c);
    return status;
}

static void finish_all(struct moecl_context *c) {
    for (int i = 0; i < MOECL_UMEM_MAX_DEVICES; i++)
        if (c->devs[i].queue)
            clFinish(c->devs[i].queue);
}

void moecl_context_release(struct moecl_context *c) {
    if (!c)
        return;
    finish_all(c);
    struct moecl_umem *um = c->model ? c->model->umem : NULL;
    struct moecl_ubuf **bufs[] = {&c->tokens, &c->x,    &c->xn,  &c->q,       &c->k,
                                  &c->v,      &c->attn, &c->tmp, &c->rlogits, &c->ids,
                                  &c->wts,    &c->gate, &c->up,  &c->down,    &c->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        moecl_umem_buffer_free(um, *bufs[i]);
    if (c->layers && c->model) {
        for (int l = 0; l < c->model->ckpt->config.n_layers; l++) {
            moecl_umem_buffer_free(um, c->layers[l].k);
            moecl_umem_buffer_free(um, c->layers[l].v);
        }
    }
    for (int j = 0; c->mbs && j < c->n_mb; j++) {
        if (c->mbs[j].x_sub)
            clReleaseMemObject(c->mbs[j].x_sub);
        moecl_umem_buffer_free(um, c->mbs[j].xn);
        moecl_umem_buffer_free(um, c->mbs[j].ids);
        moecl_umem_buffer_free(um, c->mbs[j].wts);
        moecl_umem_buffer_free(um, c->mbs[j].tmp);
    }
    free(c->mbs);
    free(c->layers);
    free(c->host_logits);
    moecl_prof_free(c->devs[0].kernels.prof); /* one, shared by every device's kernels */
    for (int i = 0; i < MOECL_UMEM_MAX_DEVICES; i++) {
        moecl_kernels_free(&c->devs[i].kernels);
        if (c->devs[i].queue)
            clReleaseCommandQueue(c->devs[i].queue);
    }
    free(c);
}

/* Debugging aid: with $MOECL_DUMP_DIR set, step buffers are written there as raw float32
 * (<name>.bin) after the step; for comparing intermediates with a reference. */
static void dump_buffer(struct moecl_context *c, int dev, const char *name, cl_mem m,
                        size_t n_floats) {
    const char *dir = c->dump_dir;
    if (!dir || !m)
        return;
    float *h = malloc(n_floats * sizeof(float));
    if (!h)
        return;
    if (clEnqueueReadBuffer(c->devs[dev].queue, m, CL_TRUE, 0, n_floats * sizeof(float), h, 0, NULL,
                            NULL) == CL_SUCCESS) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.bin", dir, name);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(h, sizeof(float), n_floats, f);
            fclose(f);
        }
    }
    free(h);
}

/* Bias joins a plain float Linear inside its matmul (mlx addmm, one rounding); quantized and
 * expert layers round the product first. */
static int bias_mode_of(const struct moecl_dev_qweight *w) {
    if (!w->w->bias)
        return MOECL_BIAS_NONE;
    return (w->w->mode == MOECL_QMODE_NONE && w->w->n_experts == 0) ? MOECL_BIAS_FUSED
                                                                    : MOECL_BIAS_AFTER;
}

/* The attention half of layer l on its device for n rows of X at positions pos0..: norm,
 * q/k/v (+bias), rope, attention with sinks, KV append, o_proj (+bias), residual, post-norm,
 * router, top-k; the normed rows go to XN, the choices to IDS and WTS. */
static enum moecl_status enqueue_attention(struct moecl_context *c, int l, uint32_t n,
                                           uint32_t pos0, cl_mem X, cl_mem XN, cl_mem IDS,
                                           cl_mem WTS, int dump) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    struct moecl_umem *um = m->umem;
    const struct moecl_dev_layer *D = &m->layers[l];
    const struct moecl_ctx_layer *L = &c->layers[l];
    int a = m->place.attn[l];
    cl_command_queue q = c->devs[a].queue;
    const struct moecl_kernels *k = &c->devs[a].kernels;
    uint32_t H = (uint32_t)cfg->hidden_size, hd = (uint32_t)cfg->head_dim;
    uint32_t QW = (uint32_t)cfg->n_heads * hd, KW = (uint32_t)cfg->n_kv_heads * hd;
    uint32_t E = (uint32_t)cfg->n_experts, K = (uint32_t)cfg->n_experts_per_tok;
    cl_mem Q = moecl_umem_view(um, c->q, a), Kc = moecl_umem_view(um, c->k, a);
    cl_mem Vc = moecl_umem_view(um, c->v, a), ATT = moecl_umem_view(um, c->attn, a);
    cl_mem TMP = moecl_umem_view(um, c->tmp, a), RL = moecl_umem_view(um, c->rlogits, a);
    cl_mem KR = moecl_umem_view(um, L->k, a), VR = moecl_umem_view(um, L->v, a);
    cl_mem inv_freq = m->devs[a].inv_freq;
    /* attention: norm -> q, k, v (+bias) -> rope -> attend with sinks -> append kv */
    const struct moecl_dev_qweight *const qkv[3] = {&D->q, &D->k, &D->v};
    const struct moecl_norm_w in_norm = {D->input_norm.mem, D->input_norm.offset, D->input_norm.dt,
                                         cfg->rms_norm_eps};
    /* decode on a GPU: the norm inside the q/k/v launch */
    int norm_fused = !dump && moecl_qkv_norm_fusable(k, qkv, 0, H, n);
    /* and RoPE; and the KV append where the token's ring slot holds no key the attention reads
     * (it reads the token's own k and v from Kc and Vc): its keys pos0 - n_keys + 1 .. pos0 - 1
     * take n_keys - 1 slots other than pos0's when n_keys <= cap */
    int rope_fused = !dump && n == 1 && moecl_qkv_rope_fusable(k, qkv, 0, H, hd);
    uint32_t n_keys = L->window && pos0 + 1 > L->window ? L->window : pos0 + 1;
    int kv_fused = rope_fused && k->qkv_kv && n_keys <= L->cap;
    if (!norm_fused)
        MOECL_TRY(moecl_launch_rmsnorm(q, k, X, XN, D->input_norm.mem, D->input_norm.offset,
                                       D->input_norm.dt, n, H, cfg->rms_norm_eps));
    if (rope_fused) {
        cl_mem const outs[3] = {Q, Kc, Vc};
        const int modes[3] = {bias_mode_of(&D->q), bias_mode_of(&D->k), bias_mode_of(&D->v)};
        struct moecl_qkv_rope rp = {inv_freq, hd,   pos0,   m->mscale,
                                    NULL,     NULL, L->cap, c->kv_type == MOECL_KV_F16};
        if (kv_fused) {
            rp.k_ring = KR;
            rp.v_ring = VR;
        }
        MOECL_TRY(moecl_launch_qkv_rope(q, k, qkv, norm_fused ? X : XN, 0, H, outs, modes,
                                        norm_fused ? &in_norm : NULL, &rp));
    } else if (moecl_qkv_fusable(k, qkv, 0, H, n)) {
        /* GPU fast numerics (decode, or a prefill chunk): the three products in one launch */
        cl_mem const outs[3] = {Q, Kc, Vc};
        const int modes[3] = {bias_mode_of(&D->q), bias_mode_of(&D->k), bias_mode_of(&D->v)};
        MOECL_TRY(moecl_launch_qkv(q, k, qkv, norm_fused ? X : XN, 0, H, n, outs, modes,
                                   norm_fused ? &in_norm : NULL));
    } else {
        MOECL_TRY(
            moecl_launch_matmul(q, k, &D->q, XN, 0, H, 1, NULL, Q, QW, n, bias_mode_of(&D->q)));
        MOECL_TRY(
            moecl_launch_matmul(q, k, &D->k, XN, 0, H, 1, NULL, Kc, KW, n, bias_mode_of(&D->k)));
        MOECL_TRY(
            moecl_launch_matmul(q, k, &D->v, XN, 0, H, 1, NULL, Vc, KW, n, bias_mode_of(&D->v)));
    }
    if (!rope_fused)
        MOECL_TRY(moecl_launch_rope2(q, k, Q, (uint32_t)cfg->n_heads, QW, Kc,
                                     (uint32_t)cfg->n_kv_heads, KW, inv_freq, n, hd, pos0,
                                     m->mscale));
    struct moecl_attn_args aa;
    memset(&aa, 0, sizeof aa);
    aa.sinks_offset = D->sinks.offset;
    aa.n_tokens = n;
    aa.pos0 = pos0;
    aa.n_heads = (uint32_t)cfg->n_heads;
    aa.n_kv_heads = (uint32_t)cfg->n_kv_heads;
    aa.head_dim = hd;
    aa.window = L->window;
    aa.cache_cap = L->cap;
    aa.sinks_dt = (uint32_t)D->sinks.dt;
    aa.scale = 1.0f / sqrtf((float)hd);
    aa.kv_f16 = c->kv_type == MOECL_KV_F16;
    aa.key_shift = n == 1 && cfg->layer_sliding[l] ? c->key_shift : 0;
    MOECL_TRY(moecl_launch_attn(q, k, Q, Kc, Vc, KR, VR, D->sinks.mem, &aa, ATT));
    if (!kv_fused)
        MOECL_TRY(moecl_launch_kv_append(q, k, Kc, Vc, KR, VR, n, pos0, L->cap, KW,
                                         c->kv_type == MOECL_KV_F16));
    if (dump) {
        dump_buffer(c, a, "l0_xn", XN, (size_t)n * H);
        dump_buffer(c, a, "l0_q", Q, (size_t)n * QW);
        dump_buffer(c, a, "l0_k", Kc, (size_t)n * KW);
        dump_buffer(c, a, "l0_v", Vc, (size_t)n * KW);
        dump_buffer(c, a, "l0_attn", ATT, (size_t)n * QW);
        if (c->kv_type == MOECL_KV_F32) {
            dump_buffer(c, a, "l0_kring", KR, (size_t)L->cap * KW);
            dump_buffer(c, a, "l0_vring", VR, (size_t)L->cap * KW);
        }
    }
    /* o_proj (+bias) -> residual */
    if (moecl_matmul_add_fusable(k, &D->o, 0, QW, n)) {
        /* decode on a GPU: the o-projection adds itself into the residual rows */
        MOECL_TRY(moecl_launch_matmul_add(q, k, &D->o, ATT, 0, QW, X, bias_mode_of(&D->o)));
    } else {
        MOECL_TRY(
            moecl_launch_matmul(q, k, &D->o, ATT, 0, QW, 1, NULL, TMP, H, n, bias_mode_of(&D->o)));
        MOECL_TRY(moecl_launch_add(q, k, X, TMP, n * H));
    }
    /* MoE: norm -> router -> top-k softmax [attention device] */
    if (!dump && moecl_matmul_norm_fusable(k, &D->router, n)) {
        /* decode on a GPU: the norm inside the router's launch */
        const struct moecl_norm_w post = {D->post_norm.mem, D->post_norm.offset, D->post_norm.dt,
                                          cfg->rms_norm_eps};
        MOECL_TRY(
            moecl_launch_matmul_norm(q, k, &D->router, X, XN, &post, RL, bias_mode_of(&D->router)));
    } else {
        MOECL_TRY(moecl_launch_rmsnorm(q, k, X, XN, D->post_norm.mem, D->post_norm.offset,
                                       D->post_norm.dt, n, H, cfg->rms_norm_eps));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->router, XN, 0, H, 1, NULL, RL, E, n,
                                      bias_mode_of(&D->router)));
    }
    MOECL_TRY(moecl_launch_router_topk(q, k, RL, IDS, WTS, n, E, K));
    if (dump) {
        dump_buffer(c, a, "l0_h1", X, (size_t)n * H);
        dump_buffer(c, a, "l0_router", RL, (size_t)n * E);
    }
cleanup:
    return status;
}

/* The expert half of layer l on device e for n rows: gate, up (+bias), clamped SwiGLU, down
 * (+bias) of each row's top-k experts, and the weighted sum added into SUM (the residual rows
 * on the same device; zeros to be handed back otherwise: round(0 + s) == round(s), and the
 * attention device's add then rounds round(x + round(s)) as the combine kernel does). */
static enum moecl_status enqueue_experts(struct moecl_context *c, int l, int e, uint32_t n,
                                         cl_mem XN, cl_mem IDS, cl_mem WTS, cl_mem SUM, int dump) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    struct moecl_umem *um = m->umem;
    const struct moecl_dev_layer *D = &m->layers[l];
    cl_command_queue q = c->devs[e].queue;
    const struct moecl_kernels *k = &c->devs[e].kernels;
    uint32_t H = (uint32_t)cfg->hidden_size, K = (uint32_t)cfg->n_experts_per_tok;
    uint32_t I = (uint32_t)cfg->intermediate_size;
    cl_mem G = moecl_umem_view(um, c->gate, e), U = moecl_umem_view(um, c->up, e);
    cl_mem DN = moecl_umem_view(um, c->down, e);
    if (bias_mode_of(&D->gate) == bias_mode_of(&D->up) && !dump &&
        moecl_glu_fusable(k, &D->gate, &D->up, 0, H, n * K)) {
        /* decode on a GPU: gate, up and SwiGLU in one launch */
        MOECL_TRY(moecl_launch_glu(q, k, &D->gate, &D->up, XN, 0, H, K, IDS, G, I, n * K,
                                   bias_mode_of(&D->gate), cfg->swiglu_alpha, cfg->swiglu_limit));
    } else {
        MOECL_TRY(moecl_launch_matmul(q, k, &D->gate, XN, 0, H, K, IDS, G, I, n * K,
                                      bias_mode_of(&D->gate)));
        MOECL_TRY(
            moecl_launch_matmul(q, k, &D->up, XN, 0, H, K, IDS, U, I, n * K, bias_mode_of(&D->up)));
        MOECL_TRY(moecl_launch_swiglu(q, k, G, U, n * K * I, cfg->swiglu_alpha, cfg->swiglu_limit));
    }
    MOECL_TRY(
        moecl_launch_matmul(q, k, &D->down, G, 0, I, 1, IDS, DN, H, n * K, bias_mode_of(&D->down)));
    if (dump) {
        dump_buffer(c, e, "l0_xn2", XN, (size_t)n * H);
        dump_buffer(c, e, "l0_wts", WTS, (size_t)n * K);
        dump_buffer(c, e, "l0_ids", IDS, (size_t)n * K);
        dump_buffer(c, e, "l0_act", G, (size_t)n * K * I);
        dump_buffer(c, e, "l0_down", DN, (size_t)n * K * H);
    }
    MOECL_TRY(moecl_launch_moe_combine(q, k, SUM, DN, WTS, n, H, K));
cleanup:
    return status;
}

/* Prefill micro-batches pipelined across the attention and expert devices (every layer's
 * attention on device a; see pipe_setup for when it applies). Micro-batch j of layer l
 * (A(l,j) on a, E(l,j) on its expert device) is ordered only by its data: A(l,j) after
 * A(l,j-1) (the KV ring) and after E(l-1,j) (its residual rows); E(l,j) after A(l,j). So
 * queue a runs A(l,j+1) while the expert device runs E(l,j), and A(l+1,0) starts as soon as
 * E(l,0) is back. Rows are the same arithmetic as a prefill chunk of mb tokens. */
static enum moecl_status enqueue_layers_pipelined(struct moecl_context *c, uint32_t n) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    struct moecl_umem *um = m->umem;
    int a = c->pipe_attn;
    cl_command_queue q = c->devs[a].queue;
    const struct moecl_kernels *k = &c->devs[a].kernels;
    uint32_t H = (uint32_t)cfg->hidden_size, K = (uint32_t)cfg->n_experts_per_tok;
    uint32_t mb = (uint32_t)c->mb, n_mb = (n + mb - 1) / mb;
    uint32_t pos0 = (uint32_t)c->n_past;
    cl_mem X, mems[3], S;
    MOECL_TRY(moecl_umem_acquire(um, &c->x, 1, a, q, MOECL_UMEM_READ, &X));
    int back = 0; /* the previous layer's sums wait on the expert device */
    for (int l = 0; l < cfg->n_layers; l++) {
        int e = m->place.experts[l];
        for (uint32_t j = 0; j < n_mb; j++) {
            struct moecl_ctx_mb *B = &c->mbs[j];
            uint32_t rows = n - j * mb < mb ? n - j * mb : mb;
            if (back) {
                MOECL_TRY(moecl_umem_acquire(um, &B->tmp, 1, a, q, MOECL_UMEM_READ, &S));
                MOECL_TRY(moecl_launch_add(q, k, B->x_sub, S, rows * H));
            }
            struct moecl_ubuf *outs[3] = {B->xn, B->ids, B->wts};
            MOECL_TRY(moecl_umem_acquire(um, outs, 3, a, q, MOECL_UMEM_WRITE, mems));
            MOECL_TRY(enqueue_attention(c, l, rows, pos0 + j * mb, B->x_sub, mems[0], mems[1],
                                        mems[2], 0));
            if (e == a) {
                MOECL_TRY(enqueue_experts(c, l, a, rows, mems[0], mems[1], mems[2], B->x_sub, 0));
            } else {
                moecl_umem_release(um, B->xn, a, q, (size_t)rows * H * sizeof(float));
                moecl_umem_release(um, B->ids, a, q, (size_t)rows * K * sizeof(int32_t));
                moecl_umem_release(um, B->wts, a, q, (size_t)rows * K * sizeof(float));
            }
        }
        back = e != a;
        if (!back)
            continue;
        cl_command_queue qe = c->devs[e].queue;
        for (uint32_t j = 0; j < n_mb; j++) {
            struct moecl_ctx_mb *B = &c->mbs[j];
            uint32_t rows = n - j * mb < mb ? n - j * mb : mb;
            struct moecl_ubuf *ins[3] = {B->xn, B->ids, B->wts};
            MOECL_TRY(moecl_umem_acquire(um, ins, 3, e, qe, MOECL_UMEM_READ, mems));
            MOECL_TRY(moecl_umem_acquire(um, &B->tmp, 1, e, qe, MOECL_UMEM_WRITE, &S));
            float zero = 0.0f;
            MOECL_CL_CALL(clEnqueueFillBuffer(qe, S, &zero, sizeof zero, 0,
                                              (size_t)rows * H * sizeof(float), 0, NULL, NULL));
            MOECL_TRY(enqueue_experts(c, l, e, rows, mems[0], mems[1], mems[2], S, 0));
            moecl_umem_release(um, B->tmp, e, qe, (size_t)rows * H * sizeof(float));
        }
    }
    for (uint32_t j = 0; back && j < n_mb; j++) {
        struct moecl_ctx_mb *B = &c->mbs[j];
        uint32_t rows = n - j * mb < mb ? n - j * mb : mb;
        MOECL_TRY(moecl_umem_acquire(um, &B->tmp, 1, a, q, MOECL_UMEM_READ, &S));
        MOECL_TRY(moecl_launch_add(q, k, B->x_sub, S, rows * H));
    }
    moecl_umem_release(um, c->x, a, q, (size_t)n * H * sizeof(float));
cleanup:
    return status;
}

/* Enqueues one step of n tokens (already in c->tokens) at position c->n_past, through the
 * final norm and lm_head (rows: all n if all_rows, else the last). The step follows the
 * model's plan: each part on its device's queue, the hand-offs through the unified-memory
 * manager (umem.h), waiting on the host where they cross contexts (one step's parts run one
 * after another anyway; the pipelined prefill keeps event hand-offs, which let its micro-batches
 * overlap). */
static enum moecl_status enqueue_step(struct moecl_context *c, uint32_t n, int all_rows) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    struct moecl_umem *um = m->umem;
    uint32_t H = (uint32_t)cfg->hidden_size, K = (uint32_t)cfg->n_experts_per_tok;
    uint32_t V = (uint32_t)cfg->vocab_size;
    size_t xb = (size_t)n * H * sizeof(float), kb = (size_t)n * K * sizeof(float);
    cl_mem X, XN, T, mems[3];

    /* the layer whose buffers go to $MOECL_DUMP_DIR (unfused there); none without the folder */
    int dump_layer = c->dump_dir ? c->dump_layer : -1;
    /* h = embed_tokens[ids] */
    {
        int d = m->place.embed;
        cl_command_queue q = c->devs[d].queue;
        MOECL_TRY(moecl_umem_acquire(um, &c->tokens, 1, d, q,
                                     MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, &T));
        MOECL_TRY(moecl_umem_acquire(um, &c->x, 1, d, q, MOECL_UMEM_WRITE, &X));
        MOECL_TRY(moecl_launch_embed(q, &c->devs[d].kernels, &m->embed, T, n, X));
        moecl_umem_release(um, c->x, d, q, xb);
        dump_buffer(c, d, "embed", X, (size_t)n * H);
    }
    if (c->mbs && n >= 2 * (uint32_t)c->mb) {
        MOECL_TRY(enqueue_layers_pipelined(c, n));
    } else {
        for (int l = 0; l < cfg->n_layers; l++) {
            int a = m->place.attn[l], e = m->place.experts[l];
            cl_command_queue q = c->devs[a].queue;
            struct moecl_ubuf *outs[3] = {c->xn, c->ids, c->wts};
            MOECL_TRY(
                moecl_umem_acquire(um, &c->x, 1, a, q, MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, &X));
            MOECL_TRY(moecl_umem_acquire(um, outs, 3, a, q, MOECL_UMEM_WRITE, mems));
            MOECL_TRY(enqueue_attention(c, l, n, (uint32_t)c->n_past, X, mems[0], mems[1], mems[2],
                                        l == dump_layer));
            if (e == a) {
                MOECL_TRY(
                    enqueue_experts(c, l, a, n, mems[0], mems[1], mems[2], X, l == dump_layer));
            } else {
                /* hand-off: normed activation, expert ids, weights; hand-back: the sum */
                cl_command_queue qe = c->devs[e].queue;
                cl_mem SUM;
                for (int i = 0; i < 3; i++)
                    moecl_umem_release(um, outs[i], a, q, i == 0 ? xb : kb);
                MOECL_TRY(moecl_umem_acquire(um, outs, 3, e, qe,
                                             MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, mems));
                MOECL_TRY(moecl_umem_acquire(um, &c->tmp, 1, e, qe, MOECL_UMEM_WRITE, &SUM));
                float zero = 0.0f;
                MOECL_CL_CALL(
                    clEnqueueFillBuffer(qe, SUM, &zero, sizeof zero, 0, xb, 0, NULL, NULL));
                MOECL_TRY(
                    enqueue_experts(c, l, e, n, mems[0], mems[1], mems[2], SUM, l == dump_layer));
                moecl_umem_release(um, c->tmp, e, qe, xb);
                MOECL_TRY(moecl_umem_acquire(um, &c->tmp, 1, a, q,
                                             MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, &SUM));
                MOECL_TRY(moecl_launch_add(q, &c->devs[a].kernels, X, SUM, n * H));
            }
            moecl_umem_release(um, c->x, a, q, xb);
            char nm[32];
            snprintf(nm, sizeof nm, "layer%d", l);
            dump_buffer(c, a, nm, X, (size_t)n * H);
        }
    }
    /* final norm -> lm_head */
    {
        int h = m->place.lm_head;
        cl_command_queue q = c->devs[h].queue;
        const struct moecl_kernels *k = &c->devs[h].kernels;
        cl_mem LG;
        MOECL_TRY(
            moecl_umem_acquire(um, &c->x, 1, h, q, MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, &X));
        MOECL_TRY(moecl_umem_acquire(um, &c->xn, 1, h, q, MOECL_UMEM_WRITE, &XN));
        MOECL_TRY(moecl_umem_acquire(um, &c->logits, 1, h, q, MOECL_UMEM_WRITE, &LG));
        MOECL_TRY(moecl_launch_rmsnorm(q, k, X, XN, m->final_norm.mem, m->final_norm.offset,
                                       m->final_norm.dt, n, H, cfg->rms_norm_eps));
        if (all_rows)
            MOECL_TRY(moecl_launch_matmul(q, k, &m->lm_head, XN, 0, H, 1, NULL, LG, V, n,
                                          MOECL_BIAS_NONE));
        else
            MOECL_TRY(moecl_launch_matmul(q, k, &m->lm_head, XN, (n - 1) * H, H, 1, NULL, LG, V, 1,
                                          MOECL_BIAS_NONE));
        moecl_umem_release(um, c->xn, h, q, xb);
        moecl_umem_release(um, c->logits, h, q, (size_t)(all_rows ? n : 1) * V * sizeof(float));
    }
cleanup:
    return status;
}

uint32_t moecl_mlx_window_step(int64_t *shape, int64_t *idx, int64_t off, int64_t window, int n) {
    int64_t W = window;
    if (W <= 0 || n <= 0)
        return 0;
    if (n > 1) {
        if (*shape) {
            if (*idx != *shape && *idx >= off)
                *shape = *idx; /* grown, not yet full: the written part */
            int64_t trim = *shape - (W - 1);
            if (trim > 0)
                *shape -= trim;
        }
        *shape += n;
        *idx = *shape;
        return 0;
    }
    if (*shape == 0 || (off >= *shape && *shape < W)) {
        *shape += W - off < 256 ? W - off : 256;
        *idx = off;
    }
    if (*shape > W) { /* after a multi-token call: keep the last W */
        *shape = W;
        *idx = W;
    }
    if (*idx == W)
        *idx = 0;
    *idx += 1;
    off += 1;
    return off < *shape ? 0 : (uint32_t)((*shape - *idx) % *shape);
}

static enum moecl_status eval_impl(struct moecl_context *c, const int32_t *tokens, int n,
                                   float *all_out) {
    enum moecl_status status = MOECL_OK;
    if (!c || !tokens || n <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "eval: %s",
                               !c ? "context is NULL" : "no tokens");
    const struct moecl_config *cfg = &c->model->ckpt->config;
    if (all_out && !c->all_logits)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "eval_all: the context was created without all_logits");
    if (!c->max_kv_size && (int64_t)c->n_past + n > c->n_ctx)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "eval: %d + %d tokens exceed the context length %d", c->n_past, n,
                               c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "eval: token %d at index %d is outside the vocabulary (%d)",
                                   tokens[i], i, cfg->vocab_size);
    size_t V = (size_t)cfg->vocab_size;
    const struct moecl_model *m = c->model;
    int e = m->place.embed, h = m->place.lm_head;
    c->key_shift =
        moecl_mlx_window_step(&c->mlx_shape, &c->mlx_idx, c->n_past, cfg->sliding_window, n);
    cl_command_queue qe = c->devs[e].queue, qh = c->devs[h].queue;
    for (int done = 0; done < n;) {
        uint32_t step = (uint32_t)(n - done < c->chunk ? n - done : c->chunk);
        int last = done + (int)step == n;
        cl_mem T, LG;
        /* The step's first writes (tokens, x) come after the previous step's last reads:
         * every part of a step feeds its logits, so waiting for the lm_head queue suffices. */
        MOECL_TRY(moecl_umem_order(m->umem, h, qh, e, qe));
        MOECL_TRY(moecl_umem_acquire(m->umem, &c->tokens, 1, e, qe, MOECL_UMEM_WRITE, &T));
        MOECL_CL_CALL(clEnqueueWriteBuffer(qe, T, CL_FALSE, 0, step * sizeof(int32_t),
                                           tokens + done, 0, NULL, NULL));
        moecl_umem_release(m->umem, c->tokens, e, qe, step * sizeof(int32_t));
        MOECL_TRY(enqueue_step(c, step, all_out != NULL));
        MOECL_TRY(moecl_umem_acquire(m->umem, &c->logits, 1, h, qh,
                                     MOECL_UMEM_READ | MOECL_UMEM_HOST_WAIT, &LG));
        if (all_out)
            MOECL_CL_CALL(clEnqueueReadBuffer(qh, LG, CL_TRUE, 0, step * V * sizeof(float),
                                              all_out + (size_t)done * V, 0, NULL, NULL));
        if (last) {
            size_t off = all_out ? (size_t)(step - 1) * V * sizeof(float) : 0;
            MOECL_CL_CALL(clEnqueueReadBuffer(qh, LG, CL_TRUE, off, V * sizeof(float),
                                              c->host_logits, 0, NULL, NULL));
        }
        c->n_past += (int)step;
        c->n_tokens += step;
        c->n_steps++;
        done += (int)step;
    }
    c->have_logits = 1;
    MOECL_TRY(moecl_prof_collect(c->devs[0].kernels.prof)); /* shared by the devices */
cleanup:
    if (status != MOECL_OK)
        finish_all(c); /* no pending command may still read the caller's tokens */
    return status;
}

enum moecl_status moecl_context_eval(struct moecl_context *c, const int32_t *tokens, int n) {
    enum moecl_status status = eval_impl(c, tokens, n, NULL);
    if (status != MOECL_OK && c)
        ctx_record_error(c);
    return status;
}

enum moecl_status moecl_context_eval_all(struct moecl_context *c, const int32_t *tokens, int n,
                                         float *logits_out) {
    if (!logits_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "eval_all: logits_out is NULL");
    enum moecl_status status = eval_impl(c, tokens, n, logits_out);
    if (status != MOECL_OK && c)
        ctx_record_error(c);
    return status;
}

const float *moecl_context_logits(const struct moecl_context *c) {
    return c && c->have_logits ? c->host_logits : NULL;
}

int moecl_context_n_past(const struct moecl_context *c) {
    return c ? c->n_past : 0;
}

void moecl_context_reset(struct moecl_context *c) {
    if (!c)
        return;
    c->n_past = 0;
    c->have_logits = 0;
    c->mlx_shape = c->mlx_idx = 0;
}

const char *moecl_context_last_error(const struct moecl_context *c) {
    return c ? c->errmsg : "";
}
