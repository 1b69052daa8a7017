/* Helpers shared inside loader/ (not part of the checkpoint contract). */
#ifndef MOECL_LOADER_INTERNAL_H
#define MOECL_LOADER_INTERNAL_H

#include "checkpoint.h"

/* "F32" -> MOECL_DTYPE_F32; returns 0 if the name is unknown. */
int moecl_dtype_parse(const char *name, enum moecl_dtype *dtype_out);
/* F32, F16 or BF16. */
int moecl_dtype_is_float(enum moecl_dtype dtype);

/* "[32, 2880, 360]" into buf (at least 160 bytes). */
const char *moecl_shape_str(const int64_t *shape, int n_dims, char *buf, size_t size);

#endif

/* ------------------------------------------------------------------ checkpoint building */

#include "config.h"

#include <stdint.h>

/* State while moecl_ckpt_open() builds the module views (loader/checkpoint.c). */
struct moecl_ckpt_builder {
    struct moecl_ckpt *ckpt;
    struct moecl_qconfig qconfig;
    uint8_t *used;  /* [n_tensors]: 1 once a module consumed the tensor */
    unsigned flags; /* MOECL_CKPT_* open flags */
};

/* Open flag for moecl_ckpt_open_ex: leave Hugging Face bf16 experts unconverted. Their
 * gate/up/down get weight == NULL and src_weight = the input-major source tensor
 * (gate_up_proj interleaved, or down_proj); only `moecl convert` uses this, to stream the
 * transpose instead of holding the whole converted model in memory. */
#define MOECL_CKPT_LAZY_HF_BF16 1u

MOECL_WUR enum moecl_status moecl_ckpt_open_ex(const char *dir, unsigned flags,
                                               struct moecl_ckpt **ckpt_out);

/* Records a heap block owned by the checkpoint (freed at close); returns p, or NULL (and frees
 * p) if the bookkeeping itself fails. */
void *moecl_ckpt_own(struct moecl_ckpt *ckpt, void *p);
/* A malloc'd buffer owned by the checkpoint, or NULL. */
void *moecl_ckpt_alloc(struct moecl_ckpt *ckpt, size_t n_bytes);
/* printf into a string owned by the checkpoint, or NULL. */
char *moecl_ckpt_strf(struct moecl_ckpt *ckpt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Finds a tensor and marks it used; NULL if absent. */
const struct moecl_tensor *moecl_ckpt_take(struct moecl_ckpt_builder *b, const char *name);
/* The shard path a tensor lives in (for messages). */
const char *moecl_ckpt_tensor_file(const struct moecl_ckpt *ckpt, const struct moecl_tensor *t);

/* Checks t's dtype (any float dtype if want_float, else `dtype`) and shape; the error names
 * the tensor, its file, what was expected and what was found, and `role`. */
MOECL_WUR enum moecl_status moecl_ckpt_expect(const struct moecl_ckpt *ckpt,
                                              const struct moecl_tensor *t, int want_float,
                                              enum moecl_dtype dtype, const int64_t *shape,
                                              int n_dims, const char *role);

/* The quantization setting of module `path` (spec §4.3); errors name config.json. */
MOECL_WUR enum moecl_status moecl_ckpt_module_spec(struct moecl_ckpt_builder *b, const char *path,
                                                   int has_scales, struct moecl_qspec *spec);
/* Takes `<path>.bias` [n_experts?][rows] into w (w->n_experts, rows already set). */
MOECL_WUR enum moecl_status moecl_ckpt_load_bias(struct moecl_ckpt_builder *b, const char *path,
                                                 struct moecl_qweight *w);

/* Hugging Face expert layouts (loader/hf_layout.c): fill layer l's gate/up/down. */
MOECL_WUR enum moecl_status moecl_hf_mxfp4_experts(struct moecl_ckpt_builder *b, int layer);
MOECL_WUR enum moecl_status moecl_hf_bf16_experts(struct moecl_ckpt_builder *b, int layer);
