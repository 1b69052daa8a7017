/* moecl_model_load / release: checkpoint -> device, weight views, programs (moecl.h). */
#include "model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ rope frequencies */

void moecl_rope_freqs(const struct moecl_config *c, float *inv_freq, float *mscale_out) {
    int dims = c->head_dim, half = dims / 2;
    float base = c->rope_theta;
    *mscale_out = 1.0f;
    if (!c->yarn) {
        /* mx.fast.rope's default: exp(-i * ln(base) / half), float32. */
        float step = (float)(log((double)base) / (double)half);
        for (int i = 0; i < half; i++)
            inv_freq[i] = expf(-(float)i * step);
        return;
    }
    /* mlx-lm YarnRoPE: correction range truncated with floor/ceil (it ignores "truncate"). */
    double two_pi = 2.0 * 3.14159265358979323846;
    double lo_d = dims * log(c->original_max_pos / (c->beta_fast * two_pi)) / (2.0 * log(base));
    double hi_d = dims * log(c->original_max_pos / (c->beta_slow * two_pi)) / (2.0 * log(base));
    double low = floor(lo_d), high = ceil(hi_d);
    if (low < 0)
        low = 0;
    if (high > dims - 1)
        high = dims - 1;
    if (low == high)
        high += 0.001;
    float f = c->rope_factor;
    for (int i = 0; i < half; i++) {
        float extra = powf(base, (float)(2 * i) / (float)dims);
        float inter = f * extra;
        float ramp = ((float)i - (float)low) / (float)(high - low);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float mask = 1.0f - ramp;
        float freq = (inter * extra) / (inter * mask + extra * (1.0f - mask));
        inv_freq[i] = 1.0f / freq;
    }
    double m1 = f <= 1.0f ? 1.0 : 0.1 * c->rope_mscale * log(f) + 1.0;
    double m2 = f <= 1.0f ? 1.0 : 0.1 * c->rope_mscale_all_dim * log(f) + 1.0;
    *mscale_out = (float)(m1 / m2);
}

/* ------------------------------------------------------------------ device views */

static size_t extent(int n_experts, size_t expert_stride, int64_t rows, size_t row_stride,
                     size_t row_bytes) {
    size_t n = (size_t)(rows - 1) * row_stride + row_bytes;
    if (n_experts > 0)
        n += (size_t)(n_experts - 1) * expert_stride;
    return n;
}

static enum moecl_status add_format(struct moecl_qformat *formats, int *n,
                                    const struct moecl_qweight *w, int *index_out) {
    struct moecl_qformat f;
    enum moecl_status status = moecl_qformat_of(w, &f);
    if (status != MOECL_OK)
        return status;
    for (int i = 0; i < *n; i++)
        if (moecl_qformat_equal(&formats[i], &f)) {
            *index_out = i;
            return MOECL_OK;
        }
    if (*n >= 32)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "more than 32 weight formats");
    formats[*n] = f;
    *index_out = (*n)++;
    return MOECL_OK;
}

static enum moecl_status resolve_qweight(const struct moecl_weights *ws,
                                         const struct moecl_qweight *w, int format,
                                         struct moecl_dev_qweight *d) {
    enum moecl_status status = MOECL_OK;
    memset(d, 0, sizeof *d);
    d->w = w;
    d->format = format;
    size_t row_bytes = w->mode == MOECL_QMODE_NONE
                           ? (size_t)w->cols * moecl_dtype_size(w->float_dtype)
                           : (size_t)w->cols * (size_t)w->bits / 8;
    size_t n_groups = w->group_size ? (size_t)(w->cols / w->group_size) : 0;
    size_t sb = w->mode == MOECL_QMODE_AFFINE ? moecl_dtype_size(w->float_dtype) : 1;
    MOECL_TRY(moecl_weights_find(
        ws, w->weight,
        extent(w->n_experts, w->weight_expert_stride, w->rows, w->weight_row_stride, row_bytes),
        w->name, &d->wmem, &d->w_offset));
    d->smem = d->bmem = d->biasmem = d->wmem;
    if (w->scales)
        MOECL_TRY(moecl_weights_find(ws, w->scales,
                                     extent(w->n_experts, w->scales_expert_stride, w->rows,
                                            w->scales_row_stride, n_groups * sb),
                                     w->name, &d->smem, &d->s_offset));
    if (w->biases)
        MOECL_TRY(moecl_weights_find(ws, w->biases,
                                     extent(w->n_experts, w->biases_expert_stride, w->rows,
                                            w->biases_row_stride, n_groups * sb),
                                     w->name, &d->bmem, &d->b_offset));
    if (w->bias) {
        if (moecl_dt_code(w->bias_dtype) < 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: bias dtype %s", w->name,
                                   moecl_dtype_name(w->bias_dtype));
        size_t row = (size_t)w->rows * moecl_dtype_size(w->bias_dtype);
        size_t n =
            w->n_experts > 0 ? (size_t)(w->n_experts - 1) * w->bias_expert_stride + row : row;
        MOECL_TRY(moecl_weights_find(ws, w->bias, n, w->name, &d->biasmem, &d->bias_offset));
    }
cleanup:
    return status;
}

static enum moecl_status resolve_vec(const struct moecl_weights *ws, const struct moecl_vec *v,
                                     struct moecl_dev_vec *d) {
    d->dt = moecl_dt_code(v->dtype);
    if (d->dt < 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: dtype %s", v->name,
                               moecl_dtype_name(v->dtype));
    return moecl_weights_find(ws, v->data, (size_t)v->n * moecl_dtype_size(v->dtype), v->name,
                              &d->mem, &d->offset);
}

/* ------------------------------------------------------------------ load */

static enum moecl_status pick_device(const char *spec, struct moecl_cl_device *out) {
    enum moecl_status status = MOECL_OK;
    struct moecl_cl_device *devs = NULL;
    struct moecl_device_info *infos = NULL;
    int n = 0, idx = -1;
    MOECL_TRY(moecl_cl_devices_enumerate(&devs, &n));
    if (n == 0) {
        status = moecl_error_set(MOECL_ERR_NO_DEVICE, "no OpenCL device");
        goto cleanup;
    }
    if (spec && *spec) {
        infos = calloc((size_t)n, sizeof *infos);
        if (!infos) {
            status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
            goto cleanup;
        }
        for (int i = 0; i < n; i++)
            infos[i] = devs[i].info;
        MOECL_TRY(moecl_device_resolve(infos, n, spec, &idx));
    } else {
        for (int i = 0; i < n && idx < 0; i++)
            if (devs[i].info.type == MOECL_DEVICE_GPU)
                idx = i;
        for (int i = 0; i < n && idx < 0; i++)
            if (devs[i].info.type == MOECL_DEVICE_CPU)
                idx = i;
        if (idx < 0)
            idx = 0;
    }
    *out = devs[idx];
cleanup:
    free(infos);
    free(devs);
    return status;
}

enum moecl_status moecl_model_load(const char *dir, const struct moecl_model_options *options,
                                   struct moecl_model **model_out) {
    enum moecl_status status = MOECL_OK;
    struct moecl_model *m = NULL;
    *model_out = NULL;
    if (!dir)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "moecl_model_load: dir is NULL");
    m = calloc(1, sizeof *m);
    if (!m)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    MOECL_TRY(moecl_ckpt_open(dir, &m->ckpt));
    const struct moecl_ckpt *ck = m->ckpt;
    const struct moecl_config *cfg = &ck->config;
    if (cfg->head_dim > 256 || cfg->head_dim % 2 || cfg->n_experts_per_tok > 32 ||
        cfg->n_heads % cfg->n_kv_heads) {
        status = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                 "%s: head_dim %d (even, <= 256), top-k %d (<= 32), heads %d / "
                                 "kv heads %d (a multiple)",
                                 dir, cfg->head_dim, cfg->n_experts_per_tok, cfg->n_heads,
                                 cfg->n_kv_heads);
        goto cleanup;
    }
    MOECL_TRY(pick_device(options ? options->device : NULL, &m->device));
    cl_int err;
    m->cl_ctx = clCreateContext(NULL, 1, &m->device.device, NULL, NULL, &err);
    MOECL_CL_CHECK(err, "clCreateContext");
    m->act = moecl_act_of_dtype(ck->act_dtype);

    /* Weight formats present, one program each. */
    struct moecl_qformat formats[32];
    int n_formats = 0, fi;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!m->layers) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    /* $MOECL_WEIGHTS_COPY forces the discrete-device path (device copies) on any device, so
     * that path is testable on PoCL. */
    int zero_copy = m->device.info.host_unified_memory && !getenv("MOECL_WEIGHTS_COPY");
    MOECL_TRY(moecl_weights_create(m->cl_ctx, ck, m->device.info.max_alloc_bytes, zero_copy,
                                   &m->weights));
    MOECL_TRY(add_format(formats, &n_formats, &ck->embed, &fi));
    MOECL_TRY(resolve_qweight(m->weights, &ck->embed, fi, &m->embed));
    MOECL_TRY(add_format(formats, &n_formats, &ck->lm_head, &fi));
    MOECL_TRY(resolve_qweight(m->weights, &ck->lm_head, fi, &m->lm_head));
    MOECL_TRY(resolve_vec(m->weights, &ck->final_norm, &m->final_norm));
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct moecl_layer *L = &ck->layers[l];
        struct moecl_dev_layer *D = &m->layers[l];
#define RESOLVE(field)                                                                             \
    MOECL_TRY(add_format(formats, &n_formats, &L->field, &fi));                                    \
    MOECL_TRY(resolve_qweight(m->weights, &L->field, fi, &D->field));
        RESOLVE(q)
        RESOLVE(k)
        RESOLVE(v)
        RESOLVE(o)
        RESOLVE(router)
        RESOLVE(gate)
        RESOLVE(up)
        RESOLVE(down)
#undef RESOLVE
        MOECL_TRY(resolve_vec(m->weights, &L->input_norm, &D->input_norm));
        MOECL_TRY(resolve_vec(m->weights, &L->post_norm, &D->post_norm));
        MOECL_TRY(resolve_vec(m->weights, &L->sinks, &D->sinks));
    }
    MOECL_TRY(moecl_programs_build(m->cl_ctx, m->device.device, m->act,
                                   options && options->mlx_cpu_rounding, formats, n_formats,
                                   &m->programs));

    float inv_freq[128];
    moecl_rope_freqs(cfg, inv_freq, &m->mscale);
    m->inv_freq = clCreateBuffer(m->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 sizeof(float) * (size_t)(cfg->head_dim / 2), inv_freq, &err);
    MOECL_CL_CHECK(err, "clCreateBuffer(inv_freq)");
    *model_out = m;
    m = NULL;
cleanup:
    if (status != MOECL_OK)
        moecl_error_prefix(status, "loading %s: ", dir);
    moecl_model_release(m);
    return status;
}

void moecl_model_release(struct moecl_model *m) {
    if (!m)
        return;
    if (m->inv_freq)
        clReleaseMemObject(m->inv_freq);
    moecl_programs_free(&m->programs);
    moecl_weights_release(m->weights);
    if (m->cl_ctx)
        clReleaseContext(m->cl_ctx);
    free(m->layers);
    moecl_ckpt_close(m->ckpt);
    free(m);
}

int moecl_model_vocab_size(const struct moecl_model *m) {
    return m ? m->ckpt->config.vocab_size : 0;
}

const struct moecl_device_info *moecl_model_device(const struct moecl_model *m) {
    return m ? &m->device.info : NULL;
}
