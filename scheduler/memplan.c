/* The memory plan (memplan.h): weight bytes classified from the model description, context
 * buffers sized exactly as runtime/forward.c allocates them (it calls these functions), placed
 * on devices by the placement's roles, checked against capacity and the largest buffer. */
#include "memplan.h"

#include "moecl_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Jumps to cleanup if a call failed (its message already set); cl_util.h's MOECL_TRY without
 * OpenCL. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        status = (expr);                                                                           \
        if (status != MOECL_OK)                                                                    \
            goto cleanup;                                                                          \
    } while (0)

/* ------------------------------------------------------------------ KV types */

size_t moecl_kv_type_size(enum moecl_kv_type t) {
    return t == MOECL_KV_F16 ? 2 : 4;
}

const char *moecl_kv_type_name(enum moecl_kv_type t) {
    return t == MOECL_KV_F32 ? "f32" : t == MOECL_KV_F16 ? "f16" : "?";
}

enum moecl_status moecl_kv_type_parse(const char *text, enum moecl_kv_type *type_out) {
    *type_out = MOECL_KV_F32;
    if (text && (!strcmp(text, "f32") || !strcmp(text, "float32")))
        return MOECL_OK;
    if (text && (!strcmp(text, "f16") || !strcmp(text, "float16"))) {
        *type_out = MOECL_KV_F16;
        return MOECL_OK;
    }
    return moecl_error_set(MOECL_ERR_INVALID_ARG, "KV type '%s': expected f32 or f16",
                           text ? text : "(null)");
}

/* ------------------------------------------------------------------ model description */

uint64_t moecl_memplan_module_bytes(enum moecl_qmode mode, int bits, int group_size,
                                    enum moecl_dtype fdtype, int n_experts, int64_t rows,
                                    int64_t cols, int has_bias, enum moecl_dtype bias_dtype,
                                    uint64_t *bias_out, uint64_t *largest_out) {
    uint64_t E = n_experts > 0 ? (uint64_t)n_experts : 1, R = (uint64_t)rows, C = (uint64_t)cols;
    uint64_t weight = 0, scales = 0, qbiases = 0, bias = 0;
    if (mode == MOECL_QMODE_NONE) {
        weight = E * R * C * moecl_dtype_size(fdtype);
    } else {
        /* packed uint32 words along the input axis; one scale (and affine bias) per group */
        weight = E * R * (C * (uint64_t)bits / 32) * 4;
        uint64_t groups = group_size > 0 ? C / (uint64_t)group_size : 0;
        if (mode == MOECL_QMODE_AFFINE) {
            scales = E * R * groups * moecl_dtype_size(fdtype);
            qbiases = scales;
        } else {
            scales = E * R * groups; /* uint8 E8M0 / E4M3 */
        }
    }
    if (has_bias)
        bias = E * R * moecl_dtype_size(bias_dtype);
    if (bias_out)
        *bias_out = bias;
    if (largest_out) {
        uint64_t l = weight;
        l = scales > l ? scales : l;
        l = bias > l ? bias : l;
        *largest_out = l;
    }
    return weight + scales + qbiases;
}

enum moecl_status moecl_memplan_model_init(struct moecl_memplan_model *m,
                                           const struct moecl_config *cfg) {
    memset(m, 0, sizeof *m);
    if (!cfg || cfg->n_layers <= 0 || cfg->n_layers > 4096 || !cfg->layer_sliding)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "memory plan: a config with %d layers",
                               cfg ? cfg->n_layers : 0);
    m->cfg = *cfg;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->cfg.layer_sliding = malloc((size_t)cfg->n_layers);
    if (!m->layers || !m->cfg.layer_sliding) {
        moecl_memplan_model_free(m);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "memory plan: out of host memory");
    }
    memcpy(m->cfg.layer_sliding, cfg->layer_sliding, (size_t)cfg->n_layers);
    return MOECL_OK;
}

void moecl_memplan_model_free(struct moecl_memplan_model *m) {
    if (!m)
        return;
    free(m->layers);
    free(m->cfg.layer_sliding);
    memset(m, 0, sizeof *m);
}

enum moecl_status moecl_memplan_model_add_format(struct moecl_memplan_model *m,
                                                 enum moecl_qmode mode, int bits, int group_size,
                                                 enum moecl_dtype fdtype, uint32_t *bit_out) {
    /* normalised as the kernels' moecl_qformat_of does */
    struct moecl_memplan_format f = {mode, bits, group_size, fdtype};
    if (mode == MOECL_QMODE_NONE) {
        f.bits = (int)moecl_dtype_size(fdtype) * 8;
        f.group_size = 0;
    } else if (mode != MOECL_QMODE_AFFINE) {
        f.wdt = MOECL_DTYPE_F32;
    }
    *bit_out = 0;
    for (int i = 0; i < m->n_formats; i++) {
        const struct moecl_memplan_format *g = &m->formats[i];
        if (g->mode == f.mode && g->bits == f.bits && g->group_size == f.group_size &&
            g->wdt == f.wdt) {
            *bit_out = 1u << i;
            return MOECL_OK;
        }
    }
    if (m->n_formats >= MOECL_MEMPLAN_MAX_FORMATS)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "memory plan: more than %d weight formats",
                               MOECL_MEMPLAN_MAX_FORMATS);
    m->formats[m->n_formats] = f;
    *bit_out = 1u << m->n_formats++;
    return MOECL_OK;
}

/* One checkpoint module: bytes, bias bytes, largest stored tensor, format bit. */
static enum moecl_status ckpt_module(struct moecl_memplan_model *m, const struct moecl_qweight *w,
                                     uint64_t *bytes, uint64_t *bias, uint64_t *largest,
                                     uint32_t *formats) {
    uint64_t b = 0, l = 0;
    uint32_t bit = 0;
    *bytes +=
        moecl_memplan_module_bytes(w->mode, w->bits, w->group_size, w->float_dtype, w->n_experts,
                                   w->rows, w->cols, w->bias != NULL, w->bias_dtype, &b, &l);
    *bias += b;
    /* the stored tensors may be larger than one module's view (Hugging Face gate_up_proj
     * holds gate and up): the largest buffer is the source tensor */
    const struct moecl_tensor *src[] = {w->src_weight, w->src_scales, w->src_biases, w->src_bias};
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        if (src[i] && src[i]->n_bytes > l)
            l = src[i]->n_bytes;
    if (l > *largest)
        *largest = l;
    enum moecl_status st =
        moecl_memplan_model_add_format(m, w->mode, w->bits, w->group_size, w->float_dtype, &bit);
    *formats |= bit;
    return st;
}

static uint64_t vec_bytes(const struct moecl_vec *v) {
    return (uint64_t)v->n * moecl_dtype_size(v->dtype);
}

enum moecl_status moecl_memplan_model_from_ckpt(const struct moecl_ckpt *ck,
                                                struct moecl_memplan_model *m) {
    enum moecl_status status = MOECL_OK;
    if (!ck) {
        memset(m, 0, sizeof *m);
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "memory plan: NULL checkpoint");
    }
    TRY(moecl_memplan_model_init(m, &ck->config));
    uint64_t unused = 0;
    TRY(ckpt_module(m, &ck->embed, &m->embed, &unused, &m->embed_largest, &m->embed_formats));
    TRY(ckpt_module(m, &ck->lm_head, &m->lm_head, &unused, &m->lm_head_largest,
                    &m->lm_head_formats));
    m->final_norm = vec_bytes(&ck->final_norm);
    for (int l = 0; l < ck->config.n_layers; l++) {
        const struct moecl_layer *L = &ck->layers[l];
        struct moecl_memplan_layer *D = &m->layers[l];
        const struct moecl_qweight *attn[] = {&L->q, &L->k, &L->v, &L->o};
        for (int i = 0; i < 4; i++)
            TRY(ckpt_module(m, attn[i], &D->attn, &D->attn_norms, &D->attn_largest,
                            &D->attn_formats));
        TRY(ckpt_module(m, &L->router, &D->router, &D->attn_norms, &D->attn_largest,
                        &D->attn_formats));
        D->attn_norms +=
            vec_bytes(&L->input_norm) + vec_bytes(&L->post_norm) + vec_bytes(&L->sinks);
        const struct moecl_qweight *ex[] = {&L->gate, &L->up, &L->down};
        for (int i = 0; i < 3; i++)
            TRY(ckpt_module(m, ex[i], &D->experts, &D->expert_biases, &D->experts_largest,
                            &D->expert_formats));
    }
    m->converted_bytes = ck->converted_bytes;
    if (ck->layout == MOECL_LAYOUT_HF_BF16) /* hf_layout.c transposes them at load */
        for (int l = 0; l < ck->config.n_layers; l++) {
            m->released_bytes += m->layers[l].experts;
            if (!ck->layers[l].gate.weight) /* opened lazily: not converted yet */
                m->converted_bytes += m->layers[l].experts;
        }
    for (int i = 0; i < ck->n_tensors; i++)
        m->stored_bytes += ck->tensors[i]->n_bytes;
cleanup:
    if (status != MOECL_OK)
        moecl_memplan_model_free(m);
    return status;
}

/* One recipe module: bytes (+ additive bias for every module but embed/lm_head, as mkmodel
 * writes them), largest tensor, format bit. */
static enum moecl_status recipe_module(struct moecl_memplan_model *m, const struct moecl_recipe *r,
                                       enum moecl_recipe_module mod, int layer, uint64_t *bytes,
                                       uint64_t *bias, uint64_t *largest, uint32_t *formats) {
    enum moecl_recipe_entry entry;
    struct moecl_recipe_q q = moecl_recipe_module_q(r, mod, layer, &entry);
    int64_t rows, cols;
    int ne;
    moecl_recipe_module_dims(r, mod, &rows, &cols, &ne);
    int has_bias = mod != MOECL_RMOD_EMBED && mod != MOECL_RMOD_LM_HEAD;
    uint64_t b = 0, l = 0;
    uint32_t bit = 0;
    *bytes += moecl_memplan_module_bytes(q.mode, q.bits, q.group_size, r->fdtype, ne, rows, cols,
                                         has_bias, r->fdtype, &b, &l);
    *bias += b;
    if (r->layout != MOECL_RECIPE_LAYOUT_MLX &&
        (mod == MOECL_RMOD_GATE || mod == MOECL_RMOD_UP)) /* one gate_up tensor holds both */
        l *= 2;
    if (l > *largest)
        *largest = l;
    enum moecl_status st =
        moecl_memplan_model_add_format(m, q.mode, q.bits, q.group_size, r->fdtype, &bit);
    *formats |= bit;
    return st;
}

enum moecl_status moecl_memplan_model_from_recipe(const struct moecl_recipe *r,
                                                  struct moecl_memplan_model *m) {
    enum moecl_status status = MOECL_OK;
    struct moecl_config cfg;
    memset(m, 0, sizeof *m);
    TRY(moecl_recipe_config(r, &cfg));
    status = moecl_memplan_model_init(m, &cfg);
    free(cfg.layer_sliding);
    if (status != MOECL_OK)
        return status;
    uint64_t es = moecl_dtype_size(r->fdtype), unused = 0;
    TRY(recipe_module(m, r, MOECL_RMOD_EMBED, -1, &m->embed, &unused, &m->embed_largest,
                      &m->embed_formats));
    TRY(recipe_module(m, r, MOECL_RMOD_LM_HEAD, -1, &m->lm_head, &unused, &m->lm_head_largest,
                      &m->lm_head_formats));
    m->final_norm = (uint64_t)r->hidden * es;
    for (int l = 0; l < r->n_layers; l++) {
        struct moecl_memplan_layer *D = &m->layers[l];
        for (int mod = MOECL_RMOD_Q; mod <= MOECL_RMOD_O; mod++)
            TRY(recipe_module(m, r, (enum moecl_recipe_module)mod, l, &D->attn, &D->attn_norms,
                              &D->attn_largest, &D->attn_formats));
        TRY(recipe_module(m, r, MOECL_RMOD_ROUTER, l, &D->router, &D->attn_norms, &D->attn_largest,
                          &D->attn_formats));
        D->attn_norms += (2 * (uint64_t)r->hidden + (uint64_t)r->n_heads) * es;
        for (int mod = MOECL_RMOD_GATE; mod <= MOECL_RMOD_DOWN; mod++)
            TRY(recipe_module(m, r, (enum moecl_recipe_module)mod, l, &D->experts,
                              &D->expert_biases, &D->experts_largest, &D->expert_formats));
        /* Hugging Face layouts: hf_layout.c de-interleaves the gate/up biases into owned
         * buffers, and transposes bf16 experts into owned buffers, releasing the sources */
        uint64_t gu_bias = 2 * (uint64_t)r->n_experts * (uint64_t)r->intermediate * es;
        if (r->layout == MOECL_RECIPE_LAYOUT_HF_MXFP4) {
            m->converted_bytes += gu_bias;
        } else if (r->layout == MOECL_RECIPE_LAYOUT_HF_BF16) {
            m->converted_bytes += gu_bias + D->experts;
            m->released_bytes += D->experts;
        }
    }
    m->stored_bytes = moecl_memplan_model_weight_bytes(m);
cleanup:
    if (status != MOECL_OK)
        moecl_memplan_model_free(m);
    return status;
}

uint64_t moecl_memplan_model_weight_bytes(const struct moecl_memplan_model *m) {
    uint64_t n = m->embed + m->lm_head + m->final_norm;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const struct moecl_memplan_layer *D = &m->layers[l];
        n += D->attn + D->router + D->attn_norms + D->experts + D->expert_biases;
    }
    return n;
}

/* ------------------------------------------------------------------ context buffers */

void moecl_memplan_ctx_init(struct moecl_memplan_ctx *c, int n_ctx) {
    memset(c, 0, sizeof *c);
    c->n_ctx = n_ctx;
    c->kv_type = MOECL_KV_F32;
}

int moecl_memplan_chunk(const struct moecl_memplan_ctx *c) {
    int chunk = c->prefill_chunk > 0 ? c->prefill_chunk : 512;
    if (chunk > c->n_ctx && c->max_kv_size <= 0)
        chunk = c->n_ctx;
    return chunk;
}

uint32_t moecl_memplan_kv_cap(const struct moecl_config *cfg, int layer,
                              const struct moecl_memplan_ctx *c) {
    if (cfg->layer_sliding[layer])
        return (uint32_t)cfg->sliding_window;
    return c->max_kv_size > 0 ? (uint32_t)c->max_kv_size : (uint32_t)c->n_ctx;
}

uint64_t moecl_memplan_kv_buffer_bytes(const struct moecl_config *cfg, int layer,
                                       const struct moecl_memplan_ctx *c) {
    uint64_t kw = (uint64_t)cfg->n_kv_heads * (uint64_t)cfg->head_dim;
    return (uint64_t)moecl_memplan_kv_cap(cfg, layer, c) * kw * moecl_kv_type_size(c->kv_type);
}

static const char *const buf_names[MOECL_BUF_COUNT] = {
    "tokens",  "x",   "xn",  "q",    "k",  "v",    "attn",   "tmp",
    "rlogits", "ids", "wts", "gate", "up", "down", "logits",
};

const char *moecl_memplan_buf_name(enum moecl_memplan_buf b) {
    return (unsigned)b < MOECL_BUF_COUNT ? buf_names[b] : "?";
}

uint64_t moecl_memplan_buf_bytes(const struct moecl_config *cfg, enum moecl_memplan_buf b,
                                 const struct moecl_memplan_ctx *c,
                                 enum moecl_mem_class *class_out) {
    uint64_t C = (uint64_t)moecl_memplan_chunk(c), H = (uint64_t)cfg->hidden_size;
    uint64_t QW = (uint64_t)cfg->n_heads * (uint64_t)cfg->head_dim;
    uint64_t KW = (uint64_t)cfg->n_kv_heads * (uint64_t)cfg->head_dim;
    uint64_t K = (uint64_t)cfg->n_experts_per_tok, I = (uint64_t)cfg->intermediate_size;
    uint64_t rows = C, width = 0;
    if (class_out)
        *class_out = b == MOECL_BUF_LOGITS ? MOECL_MEM_SCRATCH : MOECL_MEM_ACTIVATIONS;
    switch (b) {
    case MOECL_BUF_TOKENS:
        width = 1;
        break;
    case MOECL_BUF_X:
    case MOECL_BUF_XN:
    case MOECL_BUF_TMP:
        width = H;
        break;
    case MOECL_BUF_Q:
    case MOECL_BUF_ATTN:
        width = QW;
        break;
    case MOECL_BUF_K:
    case MOECL_BUF_V:
        width = KW;
        break;
    case MOECL_BUF_RLOGITS:
        width = (uint64_t)cfg->n_experts;
        break;
    case MOECL_BUF_IDS:
    case MOECL_BUF_WTS:
        width = K;
        break;
    case MOECL_BUF_GATE:
    case MOECL_BUF_UP:
        rows = C * K, width = I;
        break;
    case MOECL_BUF_DOWN:
        rows = C * K, width = H;
        break;
    case MOECL_BUF_LOGITS:
        rows = c->all_logits ? C : 1, width = (uint64_t)cfg->vocab_size;
        break;
    default:
        return 0;
    }
    return rows * width * 4; /* float32 and int32 elements */
}

int moecl_memplan_micro_batch(const struct moecl_placement *p, const struct moecl_memplan_ctx *c) {
    int mb = c->micro_batch;
    if (mb <= 0 || moecl_memplan_chunk(c) < 2 * mb || !p || p->n_layers <= 0)
        return 0;
    int split = 0;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->attn[l] != p->attn[0])
            return 0;
        split |= p->experts[l] != p->attn[l];
    }
    return split ? mb : 0;
}

uint64_t moecl_memplan_micro_batch_bytes(const struct moecl_config *cfg, int mb, int chunk) {
    if (mb <= 0)
        return 0;
    uint64_t n_mb = ((uint64_t)chunk + (uint64_t)mb - 1) / (uint64_t)mb;
    uint64_t H = (uint64_t)cfg->hidden_size, K = (uint64_t)cfg->n_experts_per_tok;
    return n_mb * (uint64_t)mb * (2 * H + 2 * K) * 4;
}

uint64_t moecl_memplan_program_bytes(int n_formats) {
    /* measured on PoCL 5 (CL_PROGRAM_BINARY_SIZES, `moecl footprint --measure`): the core
     * program 366 KiB, each format program 122 KiB */
    return 366u * 1024u + (uint64_t)n_formats * 122u * 1024u;
}

/* ------------------------------------------------------------------ the plan */

/* The weight classes: on a host-unified device they are views of the host mapping. */
static const enum moecl_mem_class weight_classes[] = {
    MOECL_MEM_ATTN_WEIGHTS, MOECL_MEM_EXPERT_WEIGHTS, MOECL_MEM_EMBED,
    MOECL_MEM_LM_HEAD,      MOECL_MEM_ROUTER,         MOECL_MEM_NORMS_BIASES};

enum { ROLE_EMBED = 1, ROLE_ATTN = 2, ROLE_EXPERTS = 4, ROLE_LM_HEAD = 8 };

/* Which roles need each step buffer (a device holds a buffer once if any of its roles does):
 * the attention side runs norms, q/k/v/o, rope, attention, router and top-k; the expert side
 * takes the normed activation and the picked ids/weights and hands back one vector (tmp); the
 * embedding writes x from tokens; lm_head reads the normed x and writes logits. */
static const unsigned buf_roles[MOECL_BUF_COUNT] = {
    [MOECL_BUF_TOKENS] = ROLE_EMBED,
    [MOECL_BUF_X] = ROLE_EMBED | ROLE_ATTN | ROLE_LM_HEAD,
    [MOECL_BUF_XN] = ROLE_ATTN | ROLE_EXPERTS | ROLE_LM_HEAD,
    [MOECL_BUF_Q] = ROLE_ATTN,
    [MOECL_BUF_K] = ROLE_ATTN,
    [MOECL_BUF_V] = ROLE_ATTN,
    [MOECL_BUF_ATTN] = ROLE_ATTN,
    [MOECL_BUF_TMP] = ROLE_ATTN | ROLE_EXPERTS,
    [MOECL_BUF_RLOGITS] = ROLE_ATTN,
    [MOECL_BUF_IDS] = ROLE_ATTN | ROLE_EXPERTS,
    [MOECL_BUF_WTS] = ROLE_ATTN | ROLE_EXPERTS,
    [MOECL_BUF_GATE] = ROLE_EXPERTS,
    [MOECL_BUF_UP] = ROLE_EXPERTS,
    [MOECL_BUF_DOWN] = ROLE_EXPERTS,
    [MOECL_BUF_LOGITS] = ROLE_LM_HEAD,
};

static int popcount32(uint32_t x) {
    int n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

static void note_largest(struct moecl_memplan_device *d, uint64_t bytes, const char *what,
                         int layer) {
    if (bytes <= d->largest)
        return;
    d->largest = bytes;
    if (layer >= 0)
        snprintf(d->largest_what, sizeof d->largest_what, "%s of layer %d", what, layer);
    else
        snprintf(d->largest_what, sizeof d->largest_what, "%s", what);
}

/* "13.12 GB" (decimal, as model cards count) into buf. */
static const char *fmt_bytes(uint64_t n, char *buf, size_t size) {
    if (n >= 1000000000ull)
        snprintf(buf, size, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, size, "%.1f MB", (double)n / 1e6);
    else
        snprintf(buf, size, "%.1f kB", (double)n / 1e3);
    return buf;
}

/* The three largest classes of a row, "expert weights 11.2 GB, ..." */
static void top_classes(const uint64_t *bytes, char *buf, size_t size) {
    int used[MOECL_MEM_N_CLASSES] = {0};
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < 3; k++) {
        int best = -1;
        for (int c = 0; c < MOECL_MEM_N_CLASSES; c++)
            if (!used[c] && bytes[c] && (best < 0 || bytes[c] > bytes[best]))
                best = c;
        if (best < 0)
            break;
        used[best] = 1;
        char b[32];
        if (len < size)
            len += (size_t)snprintf(buf + len, size - len, "%s%s %s", k ? ", " : "",
                                    moecl_mem_class_name((enum moecl_mem_class)best),
                                    fmt_bytes(bytes[best], b, sizeof b));
    }
}

static void add_reason(struct moecl_memplan *plan, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_reason(struct moecl_memplan *plan, const char *fmt, ...) {
    size_t len = strlen(plan->reason);
    if (len + 3 >= sizeof plan->reason)
        return;
    if (len) {
        memcpy(plan->reason + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(plan->reason + len, sizeof plan->reason - len, fmt, ap);
    va_end(ap);
}

enum moecl_status moecl_memplan_build(const struct moecl_memplan_model *m,
                                      const struct moecl_placement *p,
                                      const struct moecl_device_info *devs, int n_devs,
                                      const struct moecl_memplan_ctx *c, uint64_t host_capacity,
                                      struct moecl_memplan *plan) {
    memset(plan, 0, sizeof *plan);
    const struct moecl_config *cfg = &m->cfg;
    if (!p || p->n_layers != cfg->n_layers)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "memory plan: the placement has %d layers, the model %d",
                               p ? p->n_layers : 0, cfg->n_layers);
    if (!c || c->n_ctx <= 0 || c->max_kv_size < 0 ||
        (c->kv_type != MOECL_KV_F32 && c->kv_type != MOECL_KV_F16))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "memory plan: context length %d, max_kv_size %d, KV type %d",
                               c ? c->n_ctx : 0, c ? c->max_kv_size : 0, c ? (int)c->kv_type : 0);
    int used[MOECL_MEMPLAN_MAX_DEVICES];
    int n_used = moecl_placement_devices(p, used, MOECL_MEMPLAN_MAX_DEVICES);
    for (int i = 0; i < n_used; i++)
        if (used[i] >= n_devs)
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "memory plan: the placement names device %d of %d", used[i],
                                   n_devs);
    plan->n_devices = n_used;
    unsigned roles[MOECL_MEMPLAN_MAX_DEVICES] = {0};
    uint32_t formats[MOECL_MEMPLAN_MAX_DEVICES] = {0};
    int slot_of[1024];
    for (int i = 0; i < 1024; i++)
        slot_of[i] = -1;
    for (int i = 0; i < n_used; i++) {
        struct moecl_memplan_device *d = &plan->dev[i];
        const struct moecl_device_info *info = &devs[used[i]];
        slot_of[used[i]] = i;
        d->device = used[i];
        d->capacity = info->global_mem_bytes;
        d->max_alloc = info->max_alloc_bytes;
        d->host_unified = info->host_unified_memory;
    }
#define DEV(idx) (&plan->dev[slot_of[(idx)]])
#define SLOT(idx) (slot_of[(idx)])
    /* weights and KV cache */
    {
        struct moecl_memplan_device *d = DEV(p->embed);
        d->bytes[MOECL_MEM_EMBED] += m->embed;
        roles[SLOT(p->embed)] |= ROLE_EMBED;
        formats[SLOT(p->embed)] |= m->embed_formats;
        note_largest(d, m->embed_largest, "embedding tensor", -1);
        d = DEV(p->lm_head);
        d->bytes[MOECL_MEM_LM_HEAD] += m->lm_head;
        d->bytes[MOECL_MEM_NORMS_BIASES] += m->final_norm;
        roles[SLOT(p->lm_head)] |= ROLE_LM_HEAD;
        formats[SLOT(p->lm_head)] |= m->lm_head_formats;
        note_largest(d, m->lm_head_largest, "lm_head tensor", -1);
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct moecl_memplan_layer *L = &m->layers[l];
        struct moecl_memplan_device *a = DEV(p->attn[l]), *e = DEV(p->experts[l]);
        a->bytes[MOECL_MEM_ATTN_WEIGHTS] += L->attn;
        a->bytes[MOECL_MEM_ROUTER] += L->router;
        a->bytes[MOECL_MEM_NORMS_BIASES] += L->attn_norms;
        uint64_t kv = moecl_memplan_kv_buffer_bytes(cfg, l, c);
        a->bytes[cfg->layer_sliding[l] ? MOECL_MEM_KV_SLIDING : MOECL_MEM_KV_FULL] += 2 * kv;
        roles[SLOT(p->attn[l])] |= ROLE_ATTN;
        formats[SLOT(p->attn[l])] |= L->attn_formats;
        note_largest(a, L->attn_largest, "attention tensor", l);
        note_largest(a, kv, "KV cache buffer", l);
        e->bytes[MOECL_MEM_EXPERT_WEIGHTS] += L->experts;
        e->bytes[MOECL_MEM_NORMS_BIASES] += L->expert_biases;
        roles[SLOT(p->experts[l])] |= ROLE_EXPERTS;
        formats[SLOT(p->experts[l])] |= L->expert_formats;
        note_largest(e, L->experts_largest, "expert tensor", l);
    }
    /* step buffers, micro-batch buffers, scratch, programs */
    int mb = moecl_memplan_micro_batch(p, c);
    uint64_t mb_bytes = moecl_memplan_micro_batch_bytes(cfg, mb, moecl_memplan_chunk(c));
    for (int i = 0; i < n_used; i++) {
        struct moecl_memplan_device *d = &plan->dev[i];
        for (int b = 0; b < MOECL_BUF_COUNT; b++) {
            if (!(roles[i] & buf_roles[b]))
                continue;
            enum moecl_mem_class cls;
            uint64_t n = moecl_memplan_buf_bytes(cfg, (enum moecl_memplan_buf)b, c, &cls);
            d->bytes[cls] += n;
            note_largest(d, n, moecl_memplan_buf_name((enum moecl_memplan_buf)b), -1);
        }
        if (mb && (roles[i] & (ROLE_ATTN | ROLE_EXPERTS)))
            d->bytes[MOECL_MEM_ACTIVATIONS] += mb_bytes;
        if (roles[i] & ROLE_ATTN) /* RoPE inverse frequencies, [head_dim / 2] float */
            d->bytes[MOECL_MEM_SCRATCH] += (uint64_t)cfg->head_dim / 2 * 4;
        d->n_formats = popcount32(formats[i]);
        d->bytes[MOECL_MEM_PROGRAMS] += moecl_memplan_program_bytes(d->n_formats);
        for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
            d->total += d->bytes[k];
        d->owned = d->total;
        if (d->host_unified) /* weights are views of the mapping (runtime/umem.c) */
            for (size_t w = 0; w < sizeof weight_classes / sizeof weight_classes[0]; w++)
                d->owned -= d->bytes[weight_classes[w]];
        d->left = (int64_t)d->capacity - (int64_t)d->owned;
    }
    /* host: every weight's canonical allocation (the mapping, plus what the loader converted),
     * the logits row, and everything a host-unified device holds besides weights */
    for (int i = 0; i < n_used; i++) {
        const struct moecl_memplan_device *d = &plan->dev[i];
        for (int k = 0; k < MOECL_MEM_N_CLASSES; k++) {
            int is_weight = 0;
            for (size_t w = 0; w < sizeof weight_classes / sizeof weight_classes[0]; w++)
                is_weight |= weight_classes[w] == (enum moecl_mem_class)k;
            if (is_weight || d->host_unified)
                plan->host_bytes[k] += d->bytes[k];
        }
    }
    plan->host_bytes[MOECL_MEM_EXPERT_WEIGHTS] += m->converted_bytes - m->released_bytes;
    plan->host_bytes[MOECL_MEM_SCRATCH] += (uint64_t)cfg->vocab_size * 4;
    for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
        plan->host_total += plan->host_bytes[k];
    plan->host_capacity = host_capacity;
    plan->host_left = (int64_t)host_capacity - (int64_t)plan->host_total;

    /* verdict */
    plan->fits = 1;
    char b1[32], b2[32], b3[32], top[256];
    for (int i = 0; i < n_used; i++) {
        struct moecl_memplan_device *d = &plan->dev[i];
        const struct moecl_device_info *info = &devs[d->device];
        d->fits = 1;
        if (d->owned > d->capacity) {
            d->fits = 0;
            uint64_t own[MOECL_MEM_N_CLASSES];
            memcpy(own, d->bytes, sizeof own);
            if (d->host_unified)
                for (size_t w = 0; w < sizeof weight_classes / sizeof weight_classes[0]; w++)
                    own[weight_classes[w]] = 0;
            top_classes(own, top, sizeof top);
            add_reason(plan, "device %s (%s) needs %s (%s) but has %s of global memory, %s short",
                       info->name, info->device_name, fmt_bytes(d->owned, b1, sizeof b1), top,
                       fmt_bytes(d->capacity, b2, sizeof b2),
                       fmt_bytes(d->owned - d->capacity, b3, sizeof b3));
        }
        /* a weight piece also carries up to a page of alignment (runtime/weights.c) */
        if (d->largest + 4096 > d->max_alloc) {
            d->fits = 0;
            add_reason(plan, "device %s: the %s is %s, over its largest buffer of %s", info->name,
                       d->largest_what, fmt_bytes(d->largest, b1, sizeof b1),
                       fmt_bytes(d->max_alloc, b2, sizeof b2));
        }
        plan->fits &= d->fits;
    }
    if (host_capacity && plan->host_total > host_capacity) {
        plan->fits = 0;
        top_classes(plan->host_bytes, top, sizeof top);
        add_reason(plan, "host memory: needs %s (%s) but has %s, %s short",
                   fmt_bytes(plan->host_total, b1, sizeof b1), top,
                   fmt_bytes(host_capacity, b2, sizeof b2),
                   fmt_bytes(plan->host_total - host_capacity, b3, sizeof b3));
    }
#undef DEV
#undef SLOT
    return MOECL_OK;
}

enum moecl_status moecl_memplan_check(const struct moecl_memplan *plan) {
    if (plan->fits)
        return MOECL_OK;
    return moecl_error_set(MOECL_ERR_DEVICE_MEMORY, "does not fit: %s", plan->reason);
}

const struct moecl_memplan_device *moecl_memplan_find(const struct moecl_memplan *plan,
                                                      int device) {
    for (int i = 0; i < plan->n_devices; i++)
        if (plan->dev[i].device == device)
            return &plan->dev[i];
    return NULL;
}
