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

static enum moecl_status make_buffer(cl_context cl, size_t n_bytes, cl_mem *out, size_t *total) {
    enum moecl_status status = MOECL_OK;
    cl_int err;
    *out = clCreateBuffer(cl, CL_MEM_READ_WRITE, n_bytes ? n_bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        status = moecl_error_set(MOECL_ERR_CL, "clCreateBuffer(%zu bytes) failed: %s", n_bytes,
                                 moecl_cl_err_name(err));
    }
    *total += n_bytes;
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
    }
    if (shape.kv_type != MOECL_KV_F32) {
        status = moecl_error_set(
            shape.kv_type == MOECL_KV_F16 ? MOECL_ERR_UNSUPPORTED : MOECL_ERR_INVALID_ARG,
            "moecl_context_create: KV type %d (%s)", (int)shape.kv_type,
            shape.kv_type == MOECL_KV_F16 ? "f16 is not implemented yet" : "expected f32 or f16");
        goto cleanup;
    }
    c->chunk = moecl_memplan_chunk(&shape);
    c->max_kv_size = shape.max_kv_size;
    c->all_logits = shape.all_logits;
    c->kv_type = shape.kv_type;
    cl_int err;
    c->queue = clCreateCommandQueueWithProperties(model->cl_ctx, model->device.device, NULL, &err);
    MOECL_CL_CHECK(err, "clCreateCommandQueueWithProperties");
    MOECL_TRY(moecl_kernels_create(&model->programs, &c->kernels));

    cl_context cl = model->cl_ctx;
    cl_mem *step_bufs[MOECL_BUF_COUNT] = {
        [MOECL_BUF_TOKENS] = &c->tokens,
        [MOECL_BUF_X] = &c->x,
        [MOECL_BUF_XN] = &c->xn,
        [MOECL_BUF_Q] = &c->q,
        [MOECL_BUF_K] = &c->k,
        [MOECL_BUF_V] = &c->v,
        [MOECL_BUF_ATTN] = &c->attn,
        [MOECL_BUF_TMP] = &c->tmp,
        [MOECL_BUF_RLOGITS] = &c->rlogits,
        [MOECL_BUF_IDS] = &c->ids,
        [MOECL_BUF_WTS] = &c->wts,
        [MOECL_BUF_GATE] = &c->gate,
        [MOECL_BUF_UP] = &c->up,
        [MOECL_BUF_DOWN] = &c->down,
        [MOECL_BUF_LOGITS] = &c->logits,
    };
    for (int b = 0; b < MOECL_BUF_COUNT; b++)
        MOECL_TRY(make_buffer(cl,
                              moecl_memplan_buf_bytes(cfg, (enum moecl_memplan_buf)b, &shape, NULL),
                              step_bufs[b], &c->act_bytes));
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
        MOECL_TRY(make_buffer(cl, kv, &L->k, &c->kv_bytes));
        MOECL_TRY(make_buffer(cl, kv, &L->v, &c->kv_bytes));
    }
    *ctx_out = c;
    c = NULL;
cleanup:
    moecl_context_release(c);
    return status;
}

void moecl_context_release(struct moecl_context *c) {
    if (!c)
        return;
    if (c->queue)
        clFinish(c->queue);
    cl_mem *bufs[] = {&c->tokens,  &c->x,   &c->xn,  &c->q,    &c->k,  &c->v,    &c->attn,  &c->tmp,
                      &c->rlogits, &c->ids, &c->wts, &c->gate, &c->up, &c->down, &c->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (*bufs[i])
            clReleaseMemObject(*bufs[i]);
    if (c->layers && c->model) {
        for (int l = 0; l < c->model->ckpt->config.n_layers; l++) {
            if (c->layers[l].k)
                clReleaseMemObject(c->layers[l].k);
            if (c->layers[l].v)
                clReleaseMemObject(c->layers[l].v);
        }
    }
    free(c->layers);
    free(c->host_logits);
    moecl_kernels_free(&c->kernels);
    if (c->queue)
        clReleaseCommandQueue(c->queue);
    free(c);
}

/* Debugging aid: with $MOECL_DUMP_DIR set, step buffers are written there as raw float32
 * (<name>.bin) after the step; for comparing intermediates with a reference. */
static void dump_buffer(struct moecl_context *c, const char *name, cl_mem m, size_t n_floats) {
    const char *dir = getenv("MOECL_DUMP_DIR");
    if (!dir || !*dir)
        return;
    float *h = malloc(n_floats * sizeof(float));
    if (!h)
        return;
    if (clEnqueueReadBuffer(c->queue, m, CL_TRUE, 0, n_floats * sizeof(float), h, 0, NULL, NULL) ==
        CL_SUCCESS) {
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

/* Enqueues one step of n tokens (already in c->tokens) at position c->n_past, through the
 * final norm and lm_head (rows: all n if all_rows, else the last). */
static enum moecl_status enqueue_step(struct moecl_context *c, uint32_t n, int all_rows) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_model *m = c->model;
    const struct moecl_config *cfg = &m->ckpt->config;
    const struct moecl_kernels *k = &c->kernels;
    cl_command_queue q = c->queue;
    uint32_t H = (uint32_t)cfg->hidden_size, hd = (uint32_t)cfg->head_dim;
    uint32_t QW = (uint32_t)cfg->n_heads * hd, KW = (uint32_t)cfg->n_kv_heads * hd;
    uint32_t E = (uint32_t)cfg->n_experts, K = (uint32_t)cfg->n_experts_per_tok;
    uint32_t I = (uint32_t)cfg->intermediate_size, V = (uint32_t)cfg->vocab_size;
    uint32_t pos0 = (uint32_t)c->n_past;

    const char *dl = getenv("MOECL_DUMP_LAYER");
    int dump_layer = dl ? atoi(dl) : 0;
    /* h = embed_tokens[ids] */
    MOECL_TRY(moecl_launch_embed(q, k, &m->embed, c->tokens, n, c->x));
    dump_buffer(c, "embed", c->x, (size_t)n * H);
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct moecl_dev_layer *D = &m->layers[l];
        const struct moecl_ctx_layer *L = &c->layers[l];
        /* attention: norm -> q, k, v (+bias) -> rope -> attend with sinks -> append kv */
        MOECL_TRY(moecl_launch_rmsnorm(q, k, c->x, c->xn, D->input_norm.mem, D->input_norm.offset,
                                       D->input_norm.dt, n, H, cfg->rms_norm_eps));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->q, c->xn, 0, H, 1, NULL, c->q, QW, n,
                                      bias_mode_of(&D->q)));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->k, c->xn, 0, H, 1, NULL, c->k, KW, n,
                                      bias_mode_of(&D->k)));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->v, c->xn, 0, H, 1, NULL, c->v, KW, n,
                                      bias_mode_of(&D->v)));
        MOECL_TRY(moecl_launch_rope(q, k, c->q, m->inv_freq, n, (uint32_t)cfg->n_heads, hd, QW,
                                    pos0, m->mscale));
        MOECL_TRY(moecl_launch_rope(q, k, c->k, m->inv_freq, n, (uint32_t)cfg->n_kv_heads, hd, KW,
                                    pos0, m->mscale));
        struct moecl_attn_args a;
        memset(&a, 0, sizeof a);
        a.sinks_offset = D->sinks.offset;
        a.n_tokens = n;
        a.pos0 = pos0;
        a.n_heads = (uint32_t)cfg->n_heads;
        a.n_kv_heads = (uint32_t)cfg->n_kv_heads;
        a.head_dim = hd;
        a.window = L->window;
        a.cache_cap = L->cap;
        a.sinks_dt = (uint32_t)D->sinks.dt;
        a.scale = 1.0f / sqrtf((float)hd);
        MOECL_TRY(moecl_launch_attn(q, k, c->q, c->k, c->v, L->k, L->v, D->sinks.mem, &a, c->attn));
        MOECL_TRY(moecl_launch_kv_append(q, k, c->k, c->v, L->k, L->v, n, pos0, L->cap, KW));
        if (l == dump_layer) {
            dump_buffer(c, "l0_xn", c->xn, (size_t)n * H);
            dump_buffer(c, "l0_q", c->q, (size_t)n * QW);
            dump_buffer(c, "l0_k", c->k, (size_t)n * KW);
            dump_buffer(c, "l0_v", c->v, (size_t)n * KW);
            dump_buffer(c, "l0_attn", c->attn, (size_t)n * QW);
            dump_buffer(c, "l0_kring", L->k, (size_t)L->cap * KW);
            dump_buffer(c, "l0_vring", L->v, (size_t)L->cap * KW);
        }
        /* o_proj (+bias) -> residual */
        MOECL_TRY(moecl_launch_matmul(q, k, &D->o, c->attn, 0, QW, 1, NULL, c->tmp, H, n,
                                      bias_mode_of(&D->o)));
        MOECL_TRY(moecl_launch_add(q, k, c->x, c->tmp, n * H));
        /* MoE: norm -> router -> top-k softmax -> experts (gate, up, swiglu, down) -> sum */
        MOECL_TRY(moecl_launch_rmsnorm(q, k, c->x, c->xn, D->post_norm.mem, D->post_norm.offset,
                                       D->post_norm.dt, n, H, cfg->rms_norm_eps));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->router, c->xn, 0, H, 1, NULL, c->rlogits, E, n,
                                      bias_mode_of(&D->router)));
        MOECL_TRY(moecl_launch_router_topk(q, k, c->rlogits, c->ids, c->wts, n, E, K));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->gate, c->xn, 0, H, K, c->ids, c->gate, I, n * K,
                                      bias_mode_of(&D->gate)));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->up, c->xn, 0, H, K, c->ids, c->up, I, n * K,
                                      bias_mode_of(&D->up)));
        MOECL_TRY(moecl_launch_swiglu(q, k, c->gate, c->up, n * K * I, cfg->swiglu_alpha,
                                      cfg->swiglu_limit));
        MOECL_TRY(moecl_launch_matmul(q, k, &D->down, c->gate, 0, I, 1, c->ids, c->down, H, n * K,
                                      bias_mode_of(&D->down)));
        if (l == dump_layer) {
            dump_buffer(c, "l0_h1", c->x, (size_t)n * H);
            dump_buffer(c, "l0_xn2", c->xn, (size_t)n * H);
            dump_buffer(c, "l0_router", c->rlogits, (size_t)n * E);
            dump_buffer(c, "l0_wts", c->wts, (size_t)n * K);
            dump_buffer(c, "l0_ids", c->ids, (size_t)n * K);
            dump_buffer(c, "l0_act", c->gate, (size_t)n * K * I);
            dump_buffer(c, "l0_down", c->down, (size_t)n * K * H);
        }
        MOECL_TRY(moecl_launch_moe_combine(q, k, c->x, c->down, c->wts, n, H, K));
        {
            char nm[32];
            snprintf(nm, sizeof nm, "layer%d", l);
            dump_buffer(c, nm, c->x, (size_t)n * H);
        }
    }
    /* final norm -> lm_head */
    MOECL_TRY(moecl_launch_rmsnorm(q, k, c->x, c->xn, m->final_norm.mem, m->final_norm.offset,
                                   m->final_norm.dt, n, H, cfg->rms_norm_eps));
    if (all_rows)
        MOECL_TRY(moecl_launch_matmul(q, k, &m->lm_head, c->xn, 0, H, 1, NULL, c->logits, V, n,
                                      MOECL_BIAS_NONE));
    else
        MOECL_TRY(moecl_launch_matmul(q, k, &m->lm_head, c->xn, (n - 1) * H, H, 1, NULL, c->logits,
                                      V, 1, MOECL_BIAS_NONE));
cleanup:
    return status;
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
    for (int done = 0; done < n;) {
        uint32_t step = (uint32_t)(n - done < c->chunk ? n - done : c->chunk);
        int last = done + (int)step == n;
        MOECL_CL_CALL(clEnqueueWriteBuffer(c->queue, c->tokens, CL_FALSE, 0, step * sizeof(int32_t),
                                           tokens + done, 0, NULL, NULL));
        MOECL_TRY(enqueue_step(c, step, all_out != NULL));
        if (all_out)
            MOECL_CL_CALL(clEnqueueReadBuffer(c->queue, c->logits, CL_TRUE, 0,
                                              step * V * sizeof(float), all_out + (size_t)done * V,
                                              0, NULL, NULL));
        if (last) {
            size_t off = all_out ? (size_t)(step - 1) * V * sizeof(float) : 0;
            MOECL_CL_CALL(clEnqueueReadBuffer(c->queue, c->logits, CL_TRUE, off, V * sizeof(float),
                                              c->host_logits, 0, NULL, NULL));
        }
        c->n_past += (int)step;
        done += (int)step;
    }
    c->have_logits = 1;
cleanup:
    if (status != MOECL_OK)
        clFinish(c->queue); /* no pending command may still read the caller's tokens */
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
}

const char *moecl_context_last_error(const struct moecl_context *c) {
    return c ? c->errmsg : "";
}
