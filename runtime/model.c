/* moecl_model_load / release: checkpoint -> device, weight views, programs (moecl.h). */
#include "model_internal.h"

#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ------------------------------------------------------------------ weight spans */

static size_t extent(int n_experts, size_t expert_stride, int64_t rows, size_t row_stride,
                     size_t row_bytes) {
    size_t n = (size_t)(rows - 1) * row_stride + row_bytes;
    if (n_experts > 0)
        n += (size_t)(n_experts - 1) * expert_stride;
    return n;
}

/* The byte ranges of a module: weight, scales, biases (affine), bias. */
struct qranges {
    size_t w, s, b, bias;
};

static struct qranges qranges_of(const struct moecl_qweight *w) {
    struct qranges r = {0, 0, 0, 0};
    size_t row_bytes = w->mode == MOECL_QMODE_NONE
                           ? (size_t)w->cols * moecl_dtype_size(w->float_dtype)
                           : (size_t)w->cols * (size_t)w->bits / 8;
    size_t n_groups = w->group_size ? (size_t)(w->cols / w->group_size) : 0;
    size_t sb = w->mode == MOECL_QMODE_AFFINE ? moecl_dtype_size(w->float_dtype) : 1;
    r.w = extent(w->n_experts, w->weight_expert_stride, w->rows, w->weight_row_stride, row_bytes);
    if (w->scales)
        r.s = extent(w->n_experts, w->scales_expert_stride, w->rows, w->scales_row_stride,
                     n_groups * sb);
    if (w->biases)
        r.b = extent(w->n_experts, w->biases_expert_stride, w->rows, w->biases_row_stride,
                     n_groups * sb);
    if (w->bias) {
        size_t row = (size_t)w->rows * moecl_dtype_size(w->bias_dtype);
        r.bias = w->n_experts > 0 ? (size_t)(w->n_experts - 1) * w->bias_expert_stride + row : row;
    }
    return r;
}

struct span_list {
    struct moecl_umem_span *v;
    int n, cap;
    const struct moecl_ckpt *ck;
};

static int push_span(struct span_list *l, const void *p, size_t n, const char *name,
                     enum moecl_mem_class cls, int device) {
    if (!p || !n)
        return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        struct moecl_umem_span *nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = cap;
    }
    struct moecl_umem_span *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    s->host = p;
    s->n_bytes = n;
    s->name = name;
    s->cls = cls;
    s->device = device;
    const uint8_t *b = p;
    for (int i = 0; i < l->ck->n_files; i++) {
        const uint8_t *lo = l->ck->files[i]->bytes;
        if (b >= lo && b < lo + l->ck->files[i]->size) {
            s->in_mapping = 1;
            s->map_lo = lo;
            s->map_hi = lo + l->ck->files[i]->size;
            s->map_data = lo + l->ck->files[i]->data_offset;
        }
    }
    return 0;
}

static int push_qweight(struct span_list *l, const struct moecl_qweight *w,
                        enum moecl_mem_class cls, int device) {
    struct qranges r = qranges_of(w);
    int rc = push_span(l, w->weight, r.w, w->name, cls, device);
    rc |= push_span(l, w->scales, r.s, w->name, cls, device);
    rc |= push_span(l, w->biases, r.b, w->name, cls, device);
    rc |= push_span(l, w->bias, r.bias, w->name, MOECL_MEM_NORMS_BIASES, device);
    return rc;
}

static int push_vec(struct span_list *l, const struct moecl_vec *v, int device) {
    return push_span(l, v->data, (size_t)v->n * moecl_dtype_size(v->dtype), v->name,
                     MOECL_MEM_NORMS_BIASES, device);
}

enum moecl_status moecl_weight_spans(const struct moecl_ckpt *ck, const struct moecl_placement *p,
                                     struct moecl_umem_span **spans_out, int *n_out) {
    struct span_list l = {NULL, 0, 0, ck};
    *spans_out = NULL;
    *n_out = 0;
    int rc = push_qweight(&l, &ck->embed, MOECL_MEM_EMBED, p->embed);
    rc |= push_qweight(&l, &ck->lm_head, MOECL_MEM_LM_HEAD, p->lm_head);
    rc |= push_vec(&l, &ck->final_norm, p->lm_head);
    for (int i = 0; i < ck->config.n_layers; i++) {
        const struct moecl_layer *L = &ck->layers[i];
        int a = p->attn[i], e = p->experts[i];
        rc |= push_qweight(&l, &L->q, MOECL_MEM_ATTN_WEIGHTS, a);
        rc |= push_qweight(&l, &L->k, MOECL_MEM_ATTN_WEIGHTS, a);
        rc |= push_qweight(&l, &L->v, MOECL_MEM_ATTN_WEIGHTS, a);
        rc |= push_qweight(&l, &L->o, MOECL_MEM_ATTN_WEIGHTS, a);
        rc |= push_qweight(&l, &L->router, MOECL_MEM_ROUTER, a);
        rc |= push_qweight(&l, &L->gate, MOECL_MEM_EXPERT_WEIGHTS, e);
        rc |= push_qweight(&l, &L->up, MOECL_MEM_EXPERT_WEIGHTS, e);
        rc |= push_qweight(&l, &L->down, MOECL_MEM_EXPERT_WEIGHTS, e);
        rc |= push_vec(&l, &L->input_norm, a);
        rc |= push_vec(&l, &L->post_norm, a);
        rc |= push_vec(&l, &L->sinks, a);
    }
    if (rc) {
        free(l.v);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "weights: out of host memory listing tensors");
    }
    *spans_out = l.v;
    *n_out = l.n;
    return MOECL_OK;
}

/* ------------------------------------------------------------------ device views */

static enum moecl_status add_format(struct moecl_mdev *d, const struct moecl_qweight *w,
                                    int *index_out) {
    struct moecl_qformat f;
    enum moecl_status status = moecl_qformat_of(w, &f);
    if (status != MOECL_OK)
        return status;
    for (int i = 0; i < d->n_formats; i++)
        if (moecl_qformat_equal(&d->formats[i], &f)) {
            *index_out = i;
            return MOECL_OK;
        }
    if (d->n_formats >= 32)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "more than 32 weight formats");
    d->formats[d->n_formats] = f;
    *index_out = d->n_formats++;
    return MOECL_OK;
}

/* Resolves module w on slot `dev`: its format (a program of that device) and buffers. */
static enum moecl_status resolve_qweight(struct moecl_model *m, int dev,
                                         const struct moecl_qweight *w,
                                         struct moecl_dev_qweight *d) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_umem *um = m->umem;
    memset(d, 0, sizeof *d);
    d->w = w;
    MOECL_TRY(add_format(&m->devs[dev], w, &d->format));
    struct qranges r = qranges_of(w);
    MOECL_TRY(moecl_umem_weight_find(um, dev, w->weight, r.w, w->name, &d->wmem, &d->w_offset));
    d->smem = d->bmem = d->biasmem = d->wmem;
    if (w->scales)
        MOECL_TRY(moecl_umem_weight_find(um, dev, w->scales, r.s, w->name, &d->smem, &d->s_offset));
    if (w->biases)
        MOECL_TRY(moecl_umem_weight_find(um, dev, w->biases, r.b, w->name, &d->bmem, &d->b_offset));
    if (w->bias) {
        if (moecl_dt_code(w->bias_dtype) < 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: bias dtype %s", w->name,
                                   moecl_dtype_name(w->bias_dtype));
        MOECL_TRY(moecl_umem_weight_find(um, dev, w->bias, r.bias, w->name, &d->biasmem,
                                         &d->bias_offset));
    }
cleanup:
    return status;
}

static enum moecl_status resolve_vec(const struct moecl_umem *um, int dev,
                                     const struct moecl_vec *v, struct moecl_dev_vec *d) {
    d->dt = moecl_dt_code(v->dtype);
    if (d->dt < 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: dtype %s", v->name,
                               moecl_dtype_name(v->dtype));
    return moecl_umem_weight_find(um, dev, v->data, (size_t)v->n * moecl_dtype_size(v->dtype),
                                  v->name, &d->mem, &d->offset);
}

/* ------------------------------------------------------------------ placement */

/* The placement of options (device as all=DEV, then place, then n_cpu_moe) in discovery
 * indices. */
static enum moecl_status make_placement(const struct moecl_model_options *o,
                                        const struct moecl_device_info *infos, int n, int n_layers,
                                        struct moecl_placement *p) {
    enum moecl_status status = MOECL_OK;
    int dev = moecl_placement_default_device(infos, n);
    if (o && o->device && *o->device)
        MOECL_TRY(moecl_device_resolve(infos, n, o->device, &dev));
    MOECL_TRY(moecl_placement_init(p, n_layers, dev));
    if (o && o->place && *o->place)
        MOECL_TRY(moecl_placement_apply(p, o->place, infos, n));
    if (o && o->n_cpu_moe)
        MOECL_TRY(moecl_placement_cpu_moe(p, o->n_cpu_moe < 0 ? -1 : o->n_cpu_moe, infos, n));
cleanup:
    return status;
}

enum moecl_status moecl_numerics_parse(const char *s, const char *what, enum moecl_numerics *out) {
    if (s && !strcmp(s, "exact"))
        *out = MOECL_NUMERICS_EXACT;
    else if (s && !strcmp(s, "fast"))
        *out = MOECL_NUMERICS_FAST;
    else
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: expected exact or fast, got '%s'", what,
                               s ? s : "");
    return MOECL_OK;
}

/* The numerics options ask for: the option, else $MOECL_NUMERICS, else exact. */
static enum moecl_status resolve_numerics(const struct moecl_model_options *o, int *fast_out) {
    enum moecl_status status = MOECL_OK;
    enum moecl_numerics n = o ? o->numerics : MOECL_NUMERICS_DEFAULT;
    const char *env = getenv("MOECL_NUMERICS");
    *fast_out = 0;
    if (n == MOECL_NUMERICS_DEFAULT && env && *env)
        MOECL_TRY(moecl_numerics_parse(env, "$MOECL_NUMERICS", &n));
    if (n != MOECL_NUMERICS_DEFAULT && n != MOECL_NUMERICS_EXACT && n != MOECL_NUMERICS_FAST)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "numerics: unknown value %d", (int)n);
    if (n == MOECL_NUMERICS_FAST && o && o->mlx_cpu_rounding)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "numerics: fast numerics and MLX CPU rounding exclude each other");
    *fast_out = n == MOECL_NUMERICS_FAST;
cleanup:
    return status;
}

/* ------------------------------------------------------------------ load */

enum moecl_status moecl_model_load(const char *dir, const struct moecl_model_options *options,
                                   struct moecl_model **model_out) {
    enum moecl_status status = MOECL_OK;
    struct moecl_model *m = NULL;
    struct moecl_cl_device *all = NULL;
    struct moecl_device_info *infos = NULL;
    struct moecl_placement gp = {0, 0, 0, NULL, NULL};
    struct moecl_umem_span *spans = NULL;
    int n_all = 0, n_spans = 0;
    *model_out = NULL;
    if (!dir)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "moecl_model_load: dir is NULL");
    m = calloc(1, sizeof *m);
    if (!m)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    MOECL_TRY(resolve_numerics(options, &m->fast_numerics));
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

    /* Placement over the discovered devices, then slots for the devices it uses. */
    MOECL_TRY(moecl_cl_devices_enumerate(&all, &n_all));
    if (n_all == 0) {
        status = moecl_error_set(MOECL_ERR_NO_DEVICE, "no OpenCL device");
        goto cleanup;
    }
    infos = calloc((size_t)n_all, sizeof *infos);
    if (!infos) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < n_all; i++)
        infos[i] = all[i].info;
    /* The allocation-limit stand-in applies to the plan's view of the devices too. */
    const char *stand_in = getenv("MOECL_MAX_ALLOC_BYTES");
    for (int i = 0; stand_in && *stand_in && i < n_all; i++) {
        uint64_t lim = strtoull(stand_in, NULL, 0);
        if (lim && lim < infos[i].max_alloc_bytes)
            infos[i].max_alloc_bytes = lim;
    }
    /* A host-unified device's buffers here are views of host memory (the checkpoint's mapping,
     * host arenas): what bounds them is the host's RAM, not the allocation budget the driver
     * reports (PoCL reports a fraction of what it detects, 3.4 GiB of 128 GiB measured on the
     * NVIDIA machine). The plan sees such a device with the host's memory. */
    int force_copy = getenv("MOECL_WEIGHTS_COPY") != NULL;
    uint64_t host_ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n_all; i++)
        if (infos[i].host_unified_memory && !force_copy && host_ram > infos[i].global_mem_bytes)
            infos[i].global_mem_bytes = host_ram;
    MOECL_TRY(make_placement(options, infos, n_all, cfg->n_layers, &gp));
    int used[MOECL_UMEM_MAX_DEVICES];
    m->n_devs = moecl_placement_devices(&gp, used, MOECL_UMEM_MAX_DEVICES);
    moecl_placement_describe(&gp, infos, m->place_desc, sizeof m->place_desc);
    int slot_of[1024];
    for (int i = 0; i < m->n_devs; i++) {
        slot_of[used[i]] = i;
        m->devs[i].cl = all[used[i]];
    }
    MOECL_TRY(moecl_placement_init(&m->place, cfg->n_layers, 0));
    m->place.embed = slot_of[gp.embed];
    m->place.lm_head = slot_of[gp.lm_head];
    for (int l = 0; l < cfg->n_layers; l++) {
        m->place.attn[l] = slot_of[gp.attn[l]];
        m->place.experts[l] = slot_of[gp.experts[l]];
    }

    /* One context per platform ($MOECL_CONTEXT_PER_DEVICE: one per device, so that the
     * cross-platform hand-offs can be tested with two devices of one platform). */
    int per_device = getenv("MOECL_CONTEXT_PER_DEVICE") && *getenv("MOECL_CONTEXT_PER_DEVICE") &&
                     strcmp(getenv("MOECL_CONTEXT_PER_DEVICE"), "0") != 0;
    struct moecl_plan_device pdevs[MOECL_UMEM_MAX_DEVICES];
    for (int i = 0; i < m->n_devs; i++) {
        int sp = -1;
        for (int j = 0; j < i && !per_device; j++)
            if (m->devs[j].cl.platform == m->devs[i].cl.platform)
                sp = m->devs[j].space;
        if (sp < 0)
            sp = m->n_ctxs++;
        m->devs[i].space = sp;
        pdevs[i].space = sp;
    }
    MOECL_TRY(moecl_plan_build(&m->place, pdevs, m->n_devs, &m->plan));

    struct moecl_umem_device_desc descs[MOECL_UMEM_MAX_DEVICES];
    /* $MOECL_WEIGHTS_COPY (force_copy) forces the discrete-device path (mirrors) on any
     * device, so that path is testable on PoCL. */
    for (int i = 0; i < m->n_devs; i++) {
        struct moecl_mdev *d = &m->devs[i];
        d->zero_copy = d->cl.info.host_unified_memory && !force_copy;
        memset(&descs[i], 0, sizeof descs[i]);
        descs[i].device = d->cl.device;
        descs[i].name = d->cl.info.name;
        descs[i].zero_copy = d->zero_copy;
        descs[i].max_alloc = d->cl.info.max_alloc_bytes; /* the manager applies the stand-in */
        descs[i].global_mem = d->cl.info.global_mem_bytes;
    }
    /* Impossible placements are refused here, before a weight byte is read: the memory plan
     * (weights; the context's KV and activations are checked again at context creation)... */
    MOECL_TRY(moecl_memplan_model_from_ckpt(ck, &m->plan_model));
    {
        struct moecl_memplan_ctx shape;
        struct moecl_memplan plan;
        moecl_memplan_ctx_init(&shape, 1);
        MOECL_TRY(moecl_memplan_build(&m->plan_model, &gp, infos, n_all, &shape, 0, &plan));
        MOECL_TRY(moecl_memplan_check(&plan));
    }
    /* ... and the manager's own rule: each tensor within one buffer of its device. */
    MOECL_TRY(moecl_weight_spans(ck, &m->place, &spans, &n_spans));
    {
        /* A manager without contexts yet, for the check alone. */
        struct moecl_umem *probe = NULL;
        MOECL_TRY(moecl_umem_create(descs, m->n_devs, &probe));
        status = moecl_umem_weights_check(probe, spans, n_spans);
        moecl_umem_release_all(probe);
        if (status != MOECL_OK)
            goto cleanup;
    }

    cl_int err;
    for (int s = 0; s < m->n_ctxs; s++) {
        cl_device_id ids[MOECL_UMEM_MAX_DEVICES];
        cl_uint n_ids = 0;
        for (int i = 0; i < m->n_devs; i++)
            if (m->devs[i].space == s)
                ids[n_ids++] = m->devs[i].cl.device;
        m->ctxs[s] = clCreateContext(NULL, n_ids, ids, NULL, NULL, &err);
        MOECL_CL_CHECK(err, "clCreateContext");
    }
    for (int i = 0; i < m->n_devs; i++) {
        m->devs[i].ctx = m->ctxs[m->devs[i].space];
        descs[i].ctx = m->devs[i].ctx;
    }
    MOECL_TRY(moecl_umem_create(descs, m->n_devs, &m->umem));
    MOECL_TRY(moecl_umem_weights_create(m->umem, spans, n_spans));
    m->act = moecl_act_of_dtype(ck->act_dtype);

    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!m->layers) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    const struct moecl_placement *P = &m->place;
    MOECL_TRY(resolve_qweight(m, P->embed, &ck->embed, &m->embed));
    MOECL_TRY(resolve_qweight(m, P->lm_head, &ck->lm_head, &m->lm_head));
    MOECL_TRY(resolve_vec(m->umem, P->lm_head, &ck->final_norm, &m->final_norm));
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct moecl_layer *L = &ck->layers[l];
        struct moecl_dev_layer *D = &m->layers[l];
        int a = P->attn[l], e = P->experts[l];
        MOECL_TRY(resolve_qweight(m, a, &L->q, &D->q));
        MOECL_TRY(resolve_qweight(m, a, &L->k, &D->k));
        MOECL_TRY(resolve_qweight(m, a, &L->v, &D->v));
        MOECL_TRY(resolve_qweight(m, a, &L->o, &D->o));
        MOECL_TRY(resolve_qweight(m, a, &L->router, &D->router));
        MOECL_TRY(resolve_qweight(m, e, &L->gate, &D->gate));
        MOECL_TRY(resolve_qweight(m, e, &L->up, &D->up));
        MOECL_TRY(resolve_qweight(m, e, &L->down, &D->down));
        MOECL_TRY(resolve_vec(m->umem, a, &L->input_norm, &D->input_norm));
        MOECL_TRY(resolve_vec(m->umem, a, &L->post_norm, &D->post_norm));
        MOECL_TRY(resolve_vec(m->umem, a, &L->sinks, &D->sinks));
    }
    /* Programs per device, for the formats that device runs only. */
    float inv_freq[128];
    moecl_rope_freqs(cfg, inv_freq, &m->mscale);
    for (int i = 0; i < m->n_devs; i++) {
        struct moecl_mdev *d = &m->devs[i];
        MOECL_TRY(moecl_programs_build(d->ctx, d->cl.device, m->act,
                                       options && options->mlx_cpu_rounding, m->fast_numerics,
                                       d->formats, d->n_formats, &d->programs));
        d->inv_freq = clCreateBuffer(d->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                     sizeof(float) * (size_t)(cfg->head_dim / 2), inv_freq, &err);
        MOECL_CL_CHECK(err, "clCreateBuffer(inv_freq)");
    }
    m->gplace = gp;
    memset(&gp, 0, sizeof gp);
    m->infos = infos;
    m->n_infos = n_all;
    infos = NULL;
    *model_out = m;
    m = NULL;
cleanup:
    if (status != MOECL_OK)
        moecl_error_prefix(status, "loading %s: ", dir);
    free(spans);
    moecl_placement_free(&gp);
    free(infos);
    free(all);
    moecl_model_release(m);
    return status;
}

void moecl_model_release(struct moecl_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_devs; i++) {
        if (m->devs[i].inv_freq)
            clReleaseMemObject(m->devs[i].inv_freq);
        moecl_programs_free(&m->devs[i].programs);
    }
    moecl_umem_release_all(m->umem);
    for (int s = 0; s < m->n_ctxs; s++)
        if (m->ctxs[s])
            clReleaseContext(m->ctxs[s]);
    moecl_plan_free(&m->plan);
    moecl_placement_free(&m->place);
    moecl_placement_free(&m->gplace);
    moecl_memplan_model_free(&m->plan_model);
    free(m->infos);
    free(m->layers);
    moecl_ckpt_close(m->ckpt);
    free(m);
}

int moecl_model_vocab_size(const struct moecl_model *m) {
    return m ? m->ckpt->config.vocab_size : 0;
}

const struct moecl_device_info *moecl_model_device(const struct moecl_model *m) {
    return m && m->n_devs ? &m->devs[m->place.attn[0]].cl.info : NULL;
}

const char *moecl_model_placement(const struct moecl_model *m) {
    return m ? m->place_desc : "";
}

const char *moecl_model_numerics(const struct moecl_model *m) {
    return m && m->fast_numerics ? "fast" : "exact";
}
