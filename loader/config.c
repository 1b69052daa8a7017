/* config.json parsing: hyper-parameters and quantization records (see config.h for the
 * decisions and why). */
#include "config.h"

#include "moecl_error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ JSON helpers */

static enum moecl_status parse_root(const char *path, const char *text, size_t len,
                                    cJSON **root_out) {
    *root_out = NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: not valid JSON", path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *root_out = root;
    return MOECL_OK;
}

/* An integer field in [lo, hi]. Absent (or null): required => NOT_FOUND, else *out = def. */
static enum moecl_status get_int(const char *path, const cJSON *obj, const char *key, int required,
                                 long def, long lo, long hi, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item)) {
        if (required)
            return moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: required field '%s' is missing", path,
                                   key);
        *out = (int)def;
        return MOECL_OK;
    }
    if (!cJSON_IsNumber(item))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: field '%s' is not a number", path, key);
    double d = item->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: field '%s' = %g is impossible (expected an integer in "
                               "[%ld, %ld])",
                               path, key, d, lo, hi);
    *out = (int)d;
    return MOECL_OK;
}

/* A positive finite float field; absent/null => def (or NOT_FOUND if required). */
static enum moecl_status get_float(const char *path, const cJSON *obj, const char *prefix,
                                   const char *key, int required, double def, float *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item)) {
        if (required)
            return moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: required field '%s%s' is missing",
                                   path, prefix, key);
        *out = (float)def;
        return MOECL_OK;
    }
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble > 1e30 ||
        item->valuedouble < -1e30)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: field '%s%s' is not a finite number", path,
                               prefix, key);
    *out = (float)item->valuedouble;
    return MOECL_OK;
}

/* Integer fields in the order they are checked, with aliases. */
static enum moecl_status get_int_alias(const char *path, const cJSON *obj, const char *key,
                                       const char *alias, long lo, long hi, int *out) {
    if (!cJSON_GetObjectItemCaseSensitive(obj, key) && alias &&
        cJSON_GetObjectItemCaseSensitive(obj, alias))
        return get_int(path, obj, alias, 1, 0, lo, hi, out);
    return get_int(path, obj, key, 1, 0, lo, hi, out);
}

/* ------------------------------------------------------------------ config */

void moecl_config_free(struct moecl_config *cfg) {
    if (!cfg)
        return;
    free(cfg->layer_sliding);
    cfg->layer_sliding = NULL;
}

static enum moecl_status parse_rope(const char *path, const cJSON *root, struct moecl_config *c) {
    c->yarn = 0;
    c->rope_factor = 1.0f;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    c->original_max_pos = 4096;
    c->rope_mscale = 1.0f;
    c->rope_mscale_all_dim = 0.0f;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) {
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
        c->rope_parameters_ignored = rp && cJSON_IsObject(rp);
        return MOECL_OK;
    }
    if (!cJSON_IsObject(rs))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: field 'rope_scaling' is not an object", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!type)
        type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(type))
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: field 'rope_scaling.rope_type' is missing or not a string",
                               path);
    if (strcmp(type->valuestring, "default") == 0)
        return MOECL_OK;
    if (strcmp(type->valuestring, "yarn") != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: field 'rope_scaling.rope_type' = '%.40s' is not supported "
                               "(yarn or default)",
                               path, type->valuestring);
    c->yarn = 1;
    enum moecl_status st;
    if ((st = get_float(path, rs, "rope_scaling.", "factor", 1, 0, &c->rope_factor)) ||
        (st = get_float(path, rs, "rope_scaling.", "beta_fast", 0, 32.0, &c->beta_fast)) ||
        (st = get_float(path, rs, "rope_scaling.", "beta_slow", 0, 1.0, &c->beta_slow)) ||
        (st = get_float(path, rs, "rope_scaling.", "mscale", 0, 1.0, &c->rope_mscale)) ||
        (st = get_float(path, rs, "rope_scaling.", "mscale_all_dim", 0, 0.0,
                        &c->rope_mscale_all_dim)))
        return st;
    if ((st = get_int(path, rs, "original_max_position_embeddings", 0, 4096, 1, 1L << 30,
                      &c->original_max_pos)))
        return moecl_error_prefix(st, "rope_scaling: ");
    if (!(c->rope_factor > 0.0f) || !(c->beta_fast > 0.0f) || !(c->beta_slow > 0.0f))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: rope_scaling factor/beta_fast/beta_slow must be positive",
                               path);
    return MOECL_OK;
}

static enum moecl_status parse_layer_types(const char *path, const cJSON *root,
                                           struct moecl_config *c) {
    c->layer_sliding = calloc((size_t)c->n_layers, 1);
    if (!c->layer_sliding)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!lt || cJSON_IsNull(lt)) {
        for (int i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = (uint8_t)(i % 2 == 0);
        return MOECL_OK;
    }
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "%s: field 'layer_types' must be an array of num_hidden_layers "
                               "(%d) strings",
                               path, c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt) {
        if (cJSON_IsString(e) && strcmp(e->valuestring, "sliding_attention") == 0)
            c->layer_sliding[i] = 1;
        else if (cJSON_IsString(e) && strcmp(e->valuestring, "full_attention") == 0)
            c->layer_sliding[i] = 0;
        else
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: field 'layer_types[%d]' is not \"sliding_attention\" or "
                                   "\"full_attention\"",
                                   path, i);
        i++;
    }
    return MOECL_OK;
}

static enum moecl_status parse_config(const char *path, const cJSON *root, struct moecl_config *c) {
    enum moecl_status st;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!mt)
        return moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: required field 'model_type' is missing",
                               path);
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt_oss") != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: field 'model_type' is not \"gpt_oss\" (moecl runs gpt-oss "
                               "models only)",
                               path);
    if ((st = get_int_alias(path, root, "hidden_size", NULL, 1, MOECL_CONFIG_MAX_HIDDEN,
                            &c->hidden_size)) ||
        (st = get_int_alias(path, root, "intermediate_size", NULL, 1, MOECL_CONFIG_MAX_HIDDEN,
                            &c->intermediate_size)) ||
        (st = get_int_alias(path, root, "num_hidden_layers", NULL, 1, MOECL_CONFIG_MAX_LAYERS,
                            &c->n_layers)) ||
        (st = get_int_alias(path, root, "num_attention_heads", NULL, 1, MOECL_CONFIG_MAX_HEADS,
                            &c->n_heads)) ||
        (st = get_int_alias(path, root, "num_key_value_heads", NULL, 1, MOECL_CONFIG_MAX_HEADS,
                            &c->n_kv_heads)) ||
        (st = get_int_alias(path, root, "head_dim", NULL, 2, MOECL_CONFIG_MAX_HEAD_DIM,
                            &c->head_dim)) ||
        (st = get_int_alias(path, root, "vocab_size", NULL, 1, MOECL_CONFIG_MAX_VOCAB,
                            &c->vocab_size)) ||
        (st = get_int_alias(path, root, "num_local_experts", "num_experts", 1,
                            MOECL_CONFIG_MAX_EXPERTS, &c->n_experts)) ||
        (st = get_int_alias(path, root, "num_experts_per_tok", "experts_per_token", 1,
                            MOECL_CONFIG_MAX_EXPERTS, &c->n_experts_per_tok)))
        return st;
    if (c->n_heads % c->n_kv_heads != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: num_attention_heads (%d) is not a multiple of "
                               "num_key_value_heads (%d)",
                               path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: head_dim (%d) must be even for rotary embeddings", path,
                               c->head_dim);
    if ((long)c->n_heads * c->head_dim > MOECL_CONFIG_MAX_HIDDEN * 4L)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: num_attention_heads * head_dim (%ld) is impossible", path,
                               (long)c->n_heads * c->head_dim);
    if (c->n_experts_per_tok > c->n_experts)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: num_experts_per_tok (%d) exceeds num_local_experts (%d)", path,
                               c->n_experts_per_tok, c->n_experts);
    if ((st = get_int(path, root, "sliding_window", 0, 128, 1, 1L << 30, &c->sliding_window)) ||
        (st = get_int(path, root, "max_position_embeddings", 0, 131072, 1, 1L << 30,
                      &c->max_position_embeddings)))
        return st;
    if ((st = get_float(path, root, "", "rms_norm_eps", 0, 1e-5, &c->rms_norm_eps)) ||
        (st = get_float(path, root, "", "rope_theta", 0, 150000.0, &c->rope_theta)))
        return st;
    if (!(c->rms_norm_eps >= 0.0f) || !(c->rope_theta > 0.0f))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: rms_norm_eps must be >= 0 and rope_theta > 0", path);
    c->swiglu_alpha = 1.702f;
    c->swiglu_limit = 7.0f;
    c->eos_token_id = -1;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsArray(eos))
        eos = cJSON_GetArrayItem(eos, 0);
    if (cJSON_IsNumber(eos) && eos->valuedouble >= 0 && eos->valuedouble < c->vocab_size)
        c->eos_token_id = (int)eos->valuedouble;
    c->tie_word_embeddings =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings"));
    if ((st = parse_rope(path, root, c)))
        return st;
    return parse_layer_types(path, root, c);
}

enum moecl_status moecl_config_parse(const char *path, const char *text, size_t len,
                                     struct moecl_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = NULL;
    enum moecl_status st = parse_root(path, text, len, &root);
    if (st != MOECL_OK)
        return st;
    st = parse_config(path, root, cfg);
    cJSON_Delete(root);
    if (st != MOECL_OK)
        moecl_config_free(cfg);
    return st;
}

/* ------------------------------------------------------------------ quantization */

static int mode_defaults(enum moecl_qmode mode, int *group_size, int *bits) {
    switch (mode) {
    case MOECL_QMODE_AFFINE:
        *group_size = 64, *bits = 4;
        return 1;
    case MOECL_QMODE_MXFP4:
        *group_size = 32, *bits = 4;
        return 1;
    case MOECL_QMODE_MXFP8:
        *group_size = 32, *bits = 8;
        return 1;
    case MOECL_QMODE_NVFP4:
        *group_size = 16, *bits = 4;
        return 1;
    case MOECL_QMODE_NONE:
        break;
    }
    return 0;
}

enum moecl_status moecl_qspec_check(const struct moecl_qspec *s, const char *what) {
    switch (s->mode) {
    case MOECL_QMODE_NONE:
        return MOECL_OK;
    case MOECL_QMODE_AFFINE:
        if (s->bits != 2 && s->bits != 3 && s->bits != 4 && s->bits != 5 && s->bits != 6 &&
            s->bits != 8)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: affine bits %d not supported (2, 3, 4, 5, 6 or 8)", what,
                                   s->bits);
        if (s->group_size != 32 && s->group_size != 64 && s->group_size != 128)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: affine group_size %d not supported (32, 64 or 128)", what,
                                   s->group_size);
        return MOECL_OK;
    case MOECL_QMODE_MXFP4:
    case MOECL_QMODE_MXFP8:
    case MOECL_QMODE_NVFP4: {
        int g = 0, b = 0;
        mode_defaults(s->mode, &g, &b);
        if (s->bits != b)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: %s bits %d not supported (only %d)",
                                   what, moecl_qmode_name(s->mode), s->bits, b);
        if (s->group_size != g)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: %s group_size %d not supported (only %d)", what,
                                   moecl_qmode_name(s->mode), s->group_size, g);
        return MOECL_OK;
    }
    }
    return moecl_error_set(MOECL_ERR_INTERNAL, "%s: bad mode %d", what, (int)s->mode);
}

/* {"group_size", "bits", "mode"} with missing mode => affine and missing/null sizes => the
 * mode's defaults (mlx's to_quantized defaults). */
static enum moecl_status parse_spec(const char *path, const cJSON *obj, const char *what,
                                    struct moecl_qspec *s) {
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(obj, "mode");
    s->mode = MOECL_QMODE_AFFINE;
    if (mode && !cJSON_IsNull(mode)) {
        static const struct {
            const char *name;
            enum moecl_qmode mode;
        } modes[] = {{"affine", MOECL_QMODE_AFFINE},
                     {"mxfp4", MOECL_QMODE_MXFP4},
                     {"mxfp8", MOECL_QMODE_MXFP8},
                     {"nvfp4", MOECL_QMODE_NVFP4}};
        if (!cJSON_IsString(mode))
            return moecl_error_set(MOECL_ERR_FORMAT, "%s: quantization '%s': mode is not a string",
                                   path, what);
        size_t i;
        for (i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(mode->valuestring, modes[i].name) == 0)
                break;
        if (i == sizeof modes / sizeof modes[0])
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: quantization '%s': unknown mode '%.40s' (affine, mxfp4, "
                                   "mxfp8 or nvfp4)",
                                   path, what, mode->valuestring);
        s->mode = modes[i].mode;
    }
    int def_g = 0, def_b = 0;
    mode_defaults(s->mode, &def_g, &def_b);
    enum moecl_status st;
    if ((st = get_int(path, obj, "group_size", 0, def_g, 1, 1 << 20, &s->group_size)) ||
        (st = get_int(path, obj, "bits", 0, def_b, 1, 64, &s->bits)))
        return moecl_error_prefix(st, "quantization '%s': ", what);
    char where[600];
    snprintf(where, sizeof where, "%s: quantization '%s'", path, what);
    return moecl_qspec_check(s, where);
}

void moecl_qconfig_free(struct moecl_qconfig *q) {
    if (!q)
        return;
    for (int i = 0; i < q->n_overrides; i++)
        free(q->overrides[i].path);
    free(q->overrides);
    memset(q, 0, sizeof *q);
}

static enum moecl_status parse_quant_dict(const char *path, const cJSON *d, const char *name,
                                          struct moecl_qconfig *q) {
    enum moecl_status st = parse_spec(path, d, name, &q->top);
    if (st != MOECL_OK)
        return st;
    q->present = 1;
    int n = cJSON_GetArraySize(d);
    q->overrides = calloc((size_t)n + 1, sizeof *q->overrides);
    if (!q->overrides)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, d) {
        const char *key = item->string ? item->string : "";
        struct moecl_qoverride o = {0};
        if (cJSON_IsObject(item)) {
            o.kind = MOECL_QOVERRIDE_SPEC;
            if ((st = parse_spec(path, item, key, &o.spec)))
                return st;
        } else if (cJSON_IsTrue(item)) {
            o.kind = MOECL_QOVERRIDE_DEFAULT;
            o.spec = q->top;
        } else if (cJSON_IsFalse(item)) {
            o.kind = MOECL_QOVERRIDE_FLOAT;
        } else {
            continue; /* group_size, bits, mode, or bookkeeping keys like quant_method */
        }
        if (!(o.path = strdup(key)))
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        q->overrides[q->n_overrides++] = o;
    }
    return MOECL_OK;
}

static enum moecl_status parse_qconfig(const char *path, const cJSON *root,
                                       struct moecl_qconfig *q) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "quantization");
    if (d && !cJSON_IsNull(d)) {
        if (!cJSON_IsObject(d))
            return moecl_error_set(MOECL_ERR_FORMAT, "%s: field 'quantization' is not an object",
                                   path);
        q->source = "quantization";
        return parse_quant_dict(path, d, "quantization", q);
    }
    d = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!d || cJSON_IsNull(d))
        return MOECL_OK;
    if (!cJSON_IsObject(d))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: field 'quantization_config' is not an object",
                               path);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(d, "quant_method");
    if (!method) {
        q->source = "quantization_config";
        return parse_quant_dict(path, d, "quantization_config", q);
    }
    if (!cJSON_IsString(method) || strcmp(method->valuestring, "mxfp4") != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: field 'quantization_config.quant_method' = '%.40s' is not "
                               "supported (only mxfp4, or MLX quantization records)",
                               path, cJSON_IsString(method) ? method->valuestring : "?");
    /* mlx-lm maps the HF MXFP4 release to top-level mxfp4/32/4 and ignores
     * modules_to_not_convert: the `.scales` rule alone decides (spec §4.3). */
    q->source = "quantization_config.quant_method";
    q->present = 1;
    q->top.mode = MOECL_QMODE_MXFP4;
    q->top.group_size = 32;
    q->top.bits = 4;
    return MOECL_OK;
}

enum moecl_status moecl_qconfig_parse(const char *path, const char *text, size_t len,
                                      struct moecl_qconfig *q) {
    memset(q, 0, sizeof *q);
    cJSON *root = NULL;
    enum moecl_status st = parse_root(path, text, len, &root);
    if (st != MOECL_OK)
        return st;
    st = parse_qconfig(path, root, q);
    cJSON_Delete(root);
    if (st != MOECL_OK)
        moecl_qconfig_free(q);
    return st;
}

enum moecl_status moecl_qconfig_decide(const struct moecl_qconfig *q, const char *module_path,
                                       int has_scales, struct moecl_qspec *spec_out) {
    memset(spec_out, 0, sizeof *spec_out);
    spec_out->mode = MOECL_QMODE_NONE;
    for (int i = 0; i < q->n_overrides; i++) {
        const struct moecl_qoverride *o = &q->overrides[i];
        if (strcmp(o->path, module_path) != 0)
            continue;
        if (o->kind == MOECL_QOVERRIDE_SPEC)
            *spec_out = o->spec;
        else if (o->kind == MOECL_QOVERRIDE_DEFAULT)
            *spec_out = q->top;
        return MOECL_OK;
    }
    if (!has_scales)
        return MOECL_OK;
    if (!q->present)
        return moecl_error_set(MOECL_ERR_FORMAT,
                               "tensor '%s.scales' exists but config.json has no 'quantization' "
                               "record",
                               module_path);
    *spec_out = q->top;
    return MOECL_OK;
}
