/* Speed accounting (moecl.h "speed"): per-op-class device time of a context and the weight
 * bytes one decoded token reads. */
#include "model_internal.h"
#include "safetensors.h"

#include <errno.h>
#include <sys/mman.h>

#include <stdlib.h>
#include <string.h>

const char *moecl_op_class_id(enum moecl_op_class c) {
    static const char *const ids[MOECL_OPC_COUNT] = {"embed",     "norm",   "attn_proj", "rope",
                                                     "attention", "router", "experts",   "swiglu",
                                                     "combine",   "lm_head"};
    return (int)c >= 0 && c < MOECL_OPC_COUNT ? ids[c] : "?";
}

/* One profile per context, shared by every device's kernel set (devs[0] holds it). */
static struct moecl_prof *ctx_prof(const struct moecl_context *ctx) {
    return ctx->devs[0].kernels.prof;
}

enum moecl_status moecl_context_set_profile(struct moecl_context *ctx, int on) {
    if (!ctx)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context_set_profile: context is NULL");
    struct moecl_prof *prof = ctx_prof(ctx);
    if (!on) {
        for (int i = 0; i < MOECL_UMEM_MAX_DEVICES; i++) {
            if (ctx->devs[i].queue)
                clFinish(ctx->devs[i].queue);
            ctx->devs[i].kernels.prof = NULL;
        }
        moecl_prof_free(prof);
        return MOECL_OK;
    }
    if (!prof && !(prof = calloc(1, sizeof *prof)))
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "context_set_profile: out of memory");
    for (int i = 0; i < MOECL_UMEM_MAX_DEVICES; i++)
        ctx->devs[i].kernels.prof = prof;
    return MOECL_OK;
}

enum moecl_status moecl_context_profile(const struct moecl_context *ctx,
                                        struct moecl_profile *out) {
    if (out)
        memset(out, 0, sizeof *out);
    if (!ctx || !out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context_profile: %s is NULL",
                               ctx ? "out" : "context");
    const struct moecl_prof *prof = ctx_prof(ctx);
    if (!prof)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "context_profile: profiling is off (moecl_context_set_profile)");
    memcpy(out->seconds, prof->seconds, sizeof out->seconds);
    memcpy(out->launches, prof->launches, sizeof out->launches);
    return MOECL_OK;
}

void moecl_context_profile_reset(struct moecl_context *ctx) {
    struct moecl_prof *prof = ctx ? ctx_prof(ctx) : NULL;
    if (!prof)
        return;
    memset(prof->seconds, 0, sizeof prof->seconds);
    memset(prof->launches, 0, sizeof prof->launches);
}

/* Bytes of `n_rows` rows of one expert (or of the plain module) of w, with their bias. */
static uint64_t rows_bytes(const struct moecl_qweight *w, uint64_t n_rows) {
    uint64_t per_row = w->weight_row_stride;
    if (w->scales)
        per_row += w->scales_row_stride;
    if (w->biases)
        per_row += w->biases_row_stride;
    uint64_t b = per_row * n_rows;
    if (w->bias)
        b += n_rows * moecl_dtype_size(w->bias_dtype);
    return b;
}

static uint64_t vec_bytes(const struct moecl_vec *v) {
    return v->data ? (uint64_t)v->n * moecl_dtype_size(v->dtype) : 0;
}

enum moecl_status moecl_model_bytes_per_token(const struct moecl_model *model,
                                              struct moecl_token_bytes *out) {
    if (out)
        memset(out, 0, sizeof *out);
    if (!model || !out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "model_bytes_per_token: %s is NULL",
                               model ? "out" : "model");
    const struct moecl_ckpt *ck = model->ckpt;
    const struct moecl_config *cfg = &ck->config;
    uint64_t k = (uint64_t)cfg->n_experts_per_tok;
    uint64_t slot_bytes[MOECL_UMEM_MAX_DEVICES] = {0};
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct moecl_layer *L = &ck->layers[l];
        uint64_t before_attn = out->attn + out->router + out->norms, before_exp = out->experts;
        out->attn +=
            rows_bytes(&L->q, (uint64_t)L->q.rows) + rows_bytes(&L->k, (uint64_t)L->k.rows) +
            rows_bytes(&L->v, (uint64_t)L->v.rows) + rows_bytes(&L->o, (uint64_t)L->o.rows);
        out->router += rows_bytes(&L->router, (uint64_t)L->router.rows);
        out->experts += k * (rows_bytes(&L->gate, (uint64_t)L->gate.rows) +
                             rows_bytes(&L->up, (uint64_t)L->up.rows) +
                             rows_bytes(&L->down, (uint64_t)L->down.rows));
        uint64_t H = (uint64_t)cfg->hidden_size;
        out->macs_layers += H * (uint64_t)(L->q.rows + L->k.rows + L->v.rows + L->router.rows) +
                            (uint64_t)L->o.rows * (uint64_t)L->o.cols +
                            k * (uint64_t)(L->gate.rows + L->up.rows) * H +
                            k * (uint64_t)L->down.rows * (uint64_t)L->down.cols;
        out->norms += vec_bytes(&L->input_norm) + vec_bytes(&L->post_norm) + vec_bytes(&L->sinks);
        slot_bytes[model->place.attn[l]] += out->attn + out->router + out->norms - before_attn;
        slot_bytes[model->place.experts[l]] += out->experts - before_exp;
    }
    out->norms += vec_bytes(&ck->final_norm);
    out->embed = rows_bytes(&ck->embed, 1);
    out->lm_head = rows_bytes(&ck->lm_head, (uint64_t)ck->lm_head.rows);
    out->macs_lm_head = (uint64_t)ck->lm_head.rows * (uint64_t)ck->lm_head.cols;
    out->total = out->attn + out->router + out->experts + out->embed + out->lm_head + out->norms;
    slot_bytes[model->place.embed] += out->embed;
    slot_bytes[model->place.lm_head] += out->lm_head + vec_bytes(&ck->final_norm);
    for (int i = 0; i < model->n_devs && out->n_devices < 8; i++) {
        if (!slot_bytes[i])
            continue;
        out->device_index[out->n_devices] = model->devs[i].cl.info.index;
        out->device_bytes[out->n_devices++] = slot_bytes[i];
    }
    return MOECL_OK;
}

enum moecl_status moecl_model_lock_weights(struct moecl_model *model, uint64_t *locked_bytes_out) {
    if (locked_bytes_out)
        *locked_bytes_out = 0;
    if (!model)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "model_lock_weights: model is NULL");
    const struct moecl_ckpt *ck = model->ckpt;
    for (int i = 0; i < ck->n_files; i++) {
        const struct moecl_st_file *f = ck->files[i];
        if (!f->mapped || !f->size)
            continue;
        if (mlock(f->bytes, f->size) != 0)
            return moecl_error_set(MOECL_ERR_IO, "%s: mlock of %zu bytes failed: %s", f->path,
                                   f->size, strerror(errno));
        if (locked_bytes_out)
            *locked_bytes_out += f->size;
    }
    return MOECL_OK;
}
