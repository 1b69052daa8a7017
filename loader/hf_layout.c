/* Hugging Face expert layouts mapped onto struct moecl_qweight (spec §1.5, §5).
 *
 * MXFP4 release: `gate_up_proj_blocks` [E, 2I, H/32, 16] U8 is output-major with gate on even
 * rows and up on odd rows; its bytes are exactly MLX mxfp4 packing (low nibble first, E8M0
 * scales, group 32). gate and up become views with a row stride of two rows, up starting one
 * row later, so no weight byte is copied. Only the interleaved biases ([E, 2I], a few hundred
 * KB per layer) are de-interleaved into owned buffers: the contract's bias has no element
 * stride.
 *
 * bf16 fine-tune: `gate_up_proj` [E, H(in), 2I(out)] interleaved on the last axis and
 * `down_proj` [E, I(in), H(out)] are input-major; kernels want output-major rows, so they are
 * transposed once at load into owned buffers (counted in converted_bytes). `moecl convert`
 * writes the result as an MLX checkpoint so later loads are zero-copy. */
#include "loader_internal.h"
#include "safetensors.h"
#include "moecl_error.h"

#include <stdio.h>
#include <string.h>

static enum moecl_status need(struct moecl_ckpt_builder *b, const char *prefix, const char *suffix,
                              const struct moecl_tensor **t_out) {
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    *t_out = moecl_ckpt_take(b, name);
    if (!*t_out)
        return moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: missing tensor '%s'", b->ckpt->dir, name);
    return MOECL_OK;
}

static void *alloc_or_fail(struct moecl_ckpt *c, size_t n, const char *what,
                           enum moecl_status *st) {
    void *p = moecl_ckpt_alloc(c, n);
    if (!p)
        *st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory converting %s (%zu bytes)", what,
                              n);
    else
        c->converted_bytes += n;
    return p;
}

/* bias[e][2j + parity] -> out[e][j], element size es. */
static void deinterleave_bias(const struct moecl_tensor *t, int E, int64_t n, size_t es, int parity,
                              void *out) {
    const unsigned char *src = t->data;
    unsigned char *dst = out;
    for (int e = 0; e < E; e++)
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + ((size_t)e * (size_t)n + (size_t)j) * es,
                   src + ((size_t)e * (size_t)(2 * n) + (size_t)(2 * j + parity)) * es, es);
}

/* Sets w's header fields for an expert stack [E, rows, cols]. */
static enum moecl_status init_module(struct moecl_ckpt_builder *b, const char *path, int E,
                                     int64_t rows, int64_t cols, struct moecl_qweight *w) {
    memset(w, 0, sizeof *w);
    w->name = moecl_ckpt_strf(b->ckpt, "%s", path);
    if (!w->name)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    w->n_experts = E;
    w->rows = rows;
    w->cols = cols;
    return MOECL_OK;
}

/* The config must make these experts mxfp4 g32 (HF release: via quant_method mxfp4). */
static enum moecl_status check_mxfp4(struct moecl_ckpt_builder *b, const char *path, int has_scales,
                                     int64_t cols) {
    struct moecl_qspec spec;
    enum moecl_status st = moecl_ckpt_module_spec(b, path, has_scales, &spec);
    if (st != MOECL_OK)
        return st;
    if (spec.mode != MOECL_QMODE_MXFP4)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s/config.json: module '%s' is stored as Hugging Face MXFP4 "
                               "blocks but the quantization record makes it %s",
                               b->ckpt->dir, path, moecl_qmode_name(spec.mode));
    if (cols % 32 != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "module '%s': group_size 32 does not divide the input width %lld",
                               path, (long long)cols);
    return MOECL_OK;
}

static void set_mxfp4(struct moecl_qweight *w, const struct moecl_tensor *blocks,
                      const struct moecl_tensor *scales, int interleaved, int parity,
                      enum moecl_dtype act) {
    size_t row_bytes = (size_t)w->cols / 2, row_scales = (size_t)w->cols / 32;
    size_t k = interleaved ? 2 : 1;
    w->mode = MOECL_QMODE_MXFP4;
    w->bits = 4;
    w->group_size = 32;
    w->float_dtype = act;
    w->weight = (const unsigned char *)blocks->data + (size_t)parity * row_bytes;
    w->weight_row_stride = k * row_bytes;
    w->weight_expert_stride = k * row_bytes * (size_t)w->rows;
    w->scales = (const unsigned char *)scales->data + (size_t)parity * row_scales;
    w->scales_row_stride = k * row_scales;
    w->scales_expert_stride = k * row_scales * (size_t)w->rows;
    w->src_weight = blocks;
    w->src_scales = scales;
}

enum moecl_status moecl_hf_mxfp4_experts(struct moecl_ckpt_builder *b, int layer) {
    struct moecl_ckpt *c = b->ckpt;
    const struct moecl_config *cfg = &c->config;
    struct moecl_layer *L = &c->layers[layer];
    int E = cfg->n_experts;
    int64_t H = cfg->hidden_size, I = cfg->intermediate_size;
    char prefix[128], path[160];
    snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.", layer);
    enum moecl_status st;
    const struct moecl_tensor *gu_b, *gu_s, *gu_bias, *d_b, *d_s;

    /* gate/up: the config decides from the existence of gate_up_proj_scales. */
    char sname[192];
    snprintf(sname, sizeof sname, "%sgate_up_proj_scales", prefix);
    int has_scales = moecl_ckpt_find(c, sname) != NULL;
    snprintf(path, sizeof path, "%sgate_proj", prefix);
    if ((st = check_mxfp4(b, path, has_scales, H)))
        return st;
    snprintf(path, sizeof path, "%sup_proj", prefix);
    if ((st = check_mxfp4(b, path, has_scales, H)))
        return st;
    if ((st = need(b, prefix, "gate_up_proj_blocks", &gu_b)) ||
        (st = need(b, prefix, "gate_up_proj_scales", &gu_s)) ||
        (st = need(b, prefix, "gate_up_proj_bias", &gu_bias)))
        return st;
    int64_t sb[4] = {E, 2 * I, H / 32, 16};
    if ((st = moecl_ckpt_expect(c, gu_b, 0, MOECL_DTYPE_U8, sb, 4, "MXFP4 blocks")) ||
        (st = moecl_ckpt_expect(c, gu_s, 0, MOECL_DTYPE_U8, sb, 3, "MXFP4 E8M0 scales")) ||
        (st = moecl_ckpt_expect(c, gu_bias, 1, MOECL_DTYPE_F32, sb, 2, "interleaved bias")))
        return st;
    size_t es = moecl_dtype_size(gu_bias->dtype);
    for (int parity = 0; parity < 2; parity++) {
        struct moecl_qweight *w = parity ? &L->up : &L->gate;
        snprintf(path, sizeof path, "%s%s", prefix, parity ? "up_proj" : "gate_proj");
        if ((st = init_module(b, path, E, I, H, w)))
            return st;
        set_mxfp4(w, gu_b, gu_s, 1, parity, c->act_dtype);
        void *bias = alloc_or_fail(c, (size_t)E * (size_t)I * es, "gate_up_proj_bias", &st);
        if (!bias)
            return st;
        deinterleave_bias(gu_bias, E, I, es, parity, bias);
        w->bias = bias;
        w->bias_dtype = gu_bias->dtype;
        w->bias_expert_stride = (size_t)I * es;
        w->src_bias = gu_bias;
    }

    /* down: plain [E, H, I/32, 16]. */
    snprintf(sname, sizeof sname, "%sdown_proj_scales", prefix);
    snprintf(path, sizeof path, "%sdown_proj", prefix);
    if ((st = check_mxfp4(b, path, moecl_ckpt_find(c, sname) != NULL, I)))
        return st;
    if ((st = need(b, prefix, "down_proj_blocks", &d_b)) ||
        (st = need(b, prefix, "down_proj_scales", &d_s)))
        return st;
    int64_t sd[4] = {E, H, I / 32, 16};
    if ((st = moecl_ckpt_expect(c, d_b, 0, MOECL_DTYPE_U8, sd, 4, "MXFP4 blocks")) ||
        (st = moecl_ckpt_expect(c, d_s, 0, MOECL_DTYPE_U8, sd, 3, "MXFP4 E8M0 scales")))
        return st;
    if ((st = init_module(b, path, E, H, I, &L->down)))
        return st;
    set_mxfp4(&L->down, d_b, d_s, 0, 0, c->act_dtype);
    /* down_proj_bias is [E, H], already the contract's layout; mlx-lm names it down_proj.bias. */
    const struct moecl_tensor *d_bias;
    if ((st = need(b, prefix, "down_proj_bias", &d_bias)))
        return st;
    if ((st = moecl_ckpt_expect(c, d_bias, 1, MOECL_DTYPE_F32, sd, 2, "bias")))
        return st;
    L->down.bias = d_bias->data;
    L->down.bias_dtype = d_bias->dtype;
    L->down.bias_expert_stride = (size_t)H * moecl_dtype_size(d_bias->dtype);
    L->down.src_bias = d_bias;
    return MOECL_OK;
}

/* out[e][o][i] = src[e][i][k*o + parity] for src [E, in, k*out]; blocked for the caches. */
static void transpose_experts(const void *src_v, void *dst_v, int E, int64_t in, int64_t out, int k,
                              int parity, size_t es) {
    const unsigned char *src = src_v;
    unsigned char *dst = dst_v;
    const int64_t B = 32;
    for (int e = 0; e < E; e++) {
        const unsigned char *s = src + (size_t)e * (size_t)in * (size_t)(k * out) * es;
        unsigned char *d = dst + (size_t)e * (size_t)out * (size_t)in * es;
        for (int64_t o0 = 0; o0 < out; o0 += B)
            for (int64_t i0 = 0; i0 < in; i0 += B) {
                int64_t o1 = o0 + B < out ? o0 + B : out, i1 = i0 + B < in ? i0 + B : in;
                for (int64_t o = o0; o < o1; o++)
                    for (int64_t i = i0; i < i1; i++)
                        memcpy(d + ((size_t)o * (size_t)in + (size_t)i) * es,
                               s + ((size_t)i * (size_t)(k * out) + (size_t)(k * o + parity)) * es,
                               es);
            }
    }
}

/* The config must leave these experts float (there are no scales to quantize them with). */
static enum moecl_status check_float(struct moecl_ckpt_builder *b, const char *path) {
    struct moecl_qspec spec;
    enum moecl_status st = moecl_ckpt_module_spec(b, path, 0, &spec);
    if (st != MOECL_OK)
        return st;
    if (spec.mode != MOECL_QMODE_NONE)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s/config.json: module '%s' is stored as Hugging Face float "
                               "experts but the quantization record makes it %s",
                               b->ckpt->dir, path, moecl_qmode_name(spec.mode));
    return MOECL_OK;
}

static void set_float(struct moecl_qweight *w, const void *data, enum moecl_dtype dt,
                      const struct moecl_tensor *src) {
    size_t es = moecl_dtype_size(dt);
    w->mode = MOECL_QMODE_NONE;
    w->bits = (int)es * 8;
    w->float_dtype = dt;
    w->weight = data;
    w->weight_row_stride = (size_t)w->cols * es;
    w->weight_expert_stride = w->weight_row_stride * (size_t)w->rows;
    w->src_weight = src;
}

enum moecl_status moecl_hf_bf16_experts(struct moecl_ckpt_builder *b, int layer) {
    struct moecl_ckpt *c = b->ckpt;
    const struct moecl_config *cfg = &c->config;
    struct moecl_layer *L = &c->layers[layer];
    int E = cfg->n_experts;
    int64_t H = cfg->hidden_size, I = cfg->intermediate_size;
    char prefix[128], path[160];
    snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.", layer);
    enum moecl_status st;
    const struct moecl_tensor *gu, *gu_bias, *dn, *dn_bias;
    static const char *const names[3] = {"gate_proj", "up_proj", "down_proj"};
    int lazy = (b->flags & MOECL_CKPT_LAZY_HF_BF16) != 0;
    for (int m = 0; m < 3; m++) {
        snprintf(path, sizeof path, "%s%s", prefix, names[m]);
        if ((st = check_float(b, path)))
            return st;
    }
    if ((st = need(b, prefix, "gate_up_proj", &gu)) ||
        (st = need(b, prefix, "gate_up_proj_bias", &gu_bias)) ||
        (st = need(b, prefix, "down_proj", &dn)) ||
        (st = need(b, prefix, "down_proj_bias", &dn_bias)))
        return st;
    int64_t sgu[3] = {E, H, 2 * I}, sgb[2] = {E, 2 * I}, sdn[3] = {E, I, H}, sdb[2] = {E, H};
    if ((st = moecl_ckpt_expect(c, gu, 1, MOECL_DTYPE_F32, sgu, 3,
                                "input-major interleaved gate_up weight")) ||
        (st = moecl_ckpt_expect(c, gu_bias, 1, MOECL_DTYPE_F32, sgb, 2, "interleaved bias")) ||
        (st = moecl_ckpt_expect(c, dn, 1, MOECL_DTYPE_F32, sdn, 3, "input-major down weight")) ||
        (st = moecl_ckpt_expect(c, dn_bias, 1, MOECL_DTYPE_F32, sdb, 2, "bias")))
        return st;
    size_t es = moecl_dtype_size(gu->dtype), bes = moecl_dtype_size(gu_bias->dtype);
    for (int parity = 0; parity < 2; parity++) {
        struct moecl_qweight *w = parity ? &L->up : &L->gate;
        snprintf(path, sizeof path, "%s%s", prefix, names[parity]);
        if ((st = init_module(b, path, E, I, H, w)))
            return st;
        void *data = NULL;
        if (!lazy) {
            data = alloc_or_fail(c, (size_t)E * (size_t)I * (size_t)H * es, "gate_up_proj", &st);
            if (!data)
                return st;
            transpose_experts(gu->data, data, E, H, I, 2, parity, es);
        }
        set_float(w, data, gu->dtype, gu);
        void *bias = alloc_or_fail(c, (size_t)E * (size_t)I * bes, "gate_up_proj_bias", &st);
        if (!bias)
            return st;
        deinterleave_bias(gu_bias, E, I, bes, parity, bias);
        w->bias = bias;
        w->bias_dtype = gu_bias->dtype;
        w->bias_expert_stride = (size_t)I * bes;
        w->src_bias = gu_bias;
    }
    snprintf(path, sizeof path, "%sdown_proj", prefix);
    if ((st = init_module(b, path, E, H, I, &L->down)))
        return st;
    void *data = NULL;
    if (!lazy) {
        data = alloc_or_fail(c, (size_t)E * (size_t)I * (size_t)H * moecl_dtype_size(dn->dtype),
                             "down_proj", &st);
        if (!data)
            return st;
        transpose_experts(dn->data, data, E, I, H, 1, 0, moecl_dtype_size(dn->dtype));
    }
    set_float(&L->down, data, dn->dtype, dn);
    if (!lazy) { /* the input-major sources were read once; their pages can go */
        moecl_st_release(gu->data, gu->n_bytes);
        moecl_st_release(dn->data, dn->n_bytes);
    }
    L->down.bias = dn_bias->data;
    L->down.bias_dtype = dn_bias->dtype;
    L->down.bias_expert_stride = (size_t)H * moecl_dtype_size(dn_bias->dtype);
    L->down.src_bias = dn_bias;
    return MOECL_OK;
}
