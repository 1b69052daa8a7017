/* config.json: the gpt-oss hyper-parameters and the quantization records.
 *
 * moecl_config_parse() fills struct moecl_config (checkpoint.h) from the JSON text, following
 * what mlx-lm's gpt_oss ModelArgs reads (spec §1.1), with these decisions:
 * - The architectural sizes are required (hidden_size, intermediate_size, num_hidden_layers,
 *   num_attention_heads, num_key_value_heads, head_dim, vocab_size, num_local_experts (alias
 *   num_experts), num_experts_per_tok (alias experts_per_token)). mlx-lm would silently fall
 *   back to gpt-oss-120b defaults; every published config has them, so a missing one is an error
 *   naming it. rms_norm_eps (1e-5), sliding_window (128), rope_theta (150000) default as in
 *   mlx-lm.
 * - RoPE: only `rope_scaling` selects YaRN, exactly as mlx-lm's gpt_oss does. A config that has
 *   only `rope_parameters` (newer transformers) runs with plain RoPE, because that is what
 *   mlx-lm computes for it and mlx-lm's logits are the reference; `rope_parameters_ignored` is
 *   set so `moecl inspect` can warn. (`truncate` is ignored as in mlx-lm: low/high are always
 *   floored/ceiled.)
 * - swiglu_alpha/limit are mlx-lm's hard-coded 1.702 / 7.0 whatever the config says.
 * - layer_types defaults to sliding on even layers, full on odd ones.
 *
 * moecl_qconfig_parse() reads the quantization records of spec §4: `quantization`, else
 * `quantization_config` (an mlx-lm copy, or HF `quant_method: "mxfp4"` => mxfp4 g32 b4); the
 * top-level group_size/bits/mode and every per-module override (dict / true / false).
 * moecl_qconfig_decide() applies the per-module rule of spec §4.3.
 */
#ifndef MOECL_CONFIG_H
#define MOECL_CONFIG_H

#include "checkpoint.h"

#include <stddef.h>

struct cJSON;

/* Upper bounds beyond which a size is treated as impossible rather than large. */
#define MOECL_CONFIG_MAX_HIDDEN (1 << 16)
#define MOECL_CONFIG_MAX_LAYERS 1024
#define MOECL_CONFIG_MAX_HEADS 4096
#define MOECL_CONFIG_MAX_HEAD_DIM 1024
#define MOECL_CONFIG_MAX_VOCAB (1 << 24)
#define MOECL_CONFIG_MAX_EXPERTS 4096

/* Parses config.json text (len bytes, need not be NUL-terminated). `path` names the file in
 * messages. On success cfg->layer_sliding is malloc'd (free with moecl_config_free). */
MOECL_WUR enum moecl_status moecl_config_parse(const char *path, const char *text, size_t len,
                                               struct moecl_config *cfg);
void moecl_config_free(struct moecl_config *cfg);

/* One quantization setting. */
struct moecl_qspec {
    enum moecl_qmode mode; /* MOECL_QMODE_NONE = keep float */
    int group_size;
    int bits;
};

enum moecl_qoverride_kind {
    MOECL_QOVERRIDE_FLOAT,   /* "path": false */
    MOECL_QOVERRIDE_DEFAULT, /* "path": true  => top-level settings */
    MOECL_QOVERRIDE_SPEC,    /* "path": {...} */
};

struct moecl_qoverride {
    char *path;
    enum moecl_qoverride_kind kind;
    struct moecl_qspec spec; /* for MOECL_QOVERRIDE_SPEC */
};

struct moecl_qconfig {
    int present;            /* a top-level quantization record exists */
    const char *source;     /* "quantization", "quantization_config" or
                               "quantization_config.quant_method" */
    struct moecl_qspec top; /* top-level settings (if present) */
    int n_overrides;
    struct moecl_qoverride *overrides;
};

/* Reads the quantization records from config.json text. */
MOECL_WUR enum moecl_status moecl_qconfig_parse(const char *path, const char *text, size_t len,
                                                struct moecl_qconfig *q);
void moecl_qconfig_free(struct moecl_qconfig *q);

/* The setting of module `module_path` (spec §4.3): its override if any, else the top-level
 * settings iff `has_scales` (a tensor `<path>.scales` exists), else float. Fails when the
 * module must use top-level settings and there are none. */
MOECL_WUR enum moecl_status moecl_qconfig_decide(const struct moecl_qconfig *q,
                                                 const char *module_path, int has_scales,
                                                 struct moecl_qspec *spec_out);

/* Checks a (mode, group, bits) triple is one MLX supports; `what` names it in the message. */
MOECL_WUR enum moecl_status moecl_qspec_check(const struct moecl_qspec *spec, const char *what);

#endif
