/* Test helper: builds gpt-oss checkpoints byte by byte (safetensors header written here, not
 * with the library's writer) in the MLX and Hugging Face layouts, tiny or full-size (sparse
 * files: the data area is a hole, so a 12 GB checkpoint costs no disk and no time). */
#ifndef MOECL_LOADER_BUILD_H
#define MOECL_LOADER_BUILD_H

#include <stddef.h>
#include <stdint.h>

struct tb_tensor {
    char name[160];
    char dtype[12];
    int n_dims;
    int64_t shape[4];
    size_t n_bytes;
    unsigned char *data; /* NULL in sparse mode */
    int shard;           /* which file tb_write_dir puts it in */
};

struct tb_ckpt {
    int n, cap;
    struct tb_tensor *t;
    int sparse; /* 1: no data buffers; files get a hole */
    uint64_t seed;
};

struct tb_model {
    int hidden, inter, layers, heads, kv, head_dim, vocab, experts, topk;
};

extern const struct tb_model tb_tiny; /* 64/64, 2 layers, 4 heads, 2 kv, hd 16, vocab 128, 4x2 */
extern const struct tb_model tb_20b;  /* gpt-oss-20b shapes */

void tb_init(struct tb_ckpt *c, int sparse);
void tb_free(struct tb_ckpt *c);
/* Adds a tensor with pseudo-random content (valid small floats for float dtypes). */
struct tb_tensor *tb_add(struct tb_ckpt *c, const char *name, const char *dtype, int n_dims,
                         int64_t d0, int64_t d1, int64_t d2, int64_t d3);
struct tb_tensor *tb_find(struct tb_ckpt *c, const char *name);
void tb_remove(struct tb_ckpt *c, const char *name);

/* One linear module in MLX layout: bits 0 = float BF16; mode "affine"/"mxfp4"/... */
void tb_linear(struct tb_ckpt *c, const char *path, int n_experts, int64_t rows, int64_t cols,
               int bits, int group_size, const char *mode, int bias);
/* A whole MLX-layout model: every module `bits`/`group_size`/`mode` (bits 0: float), the
 * router with router_bits (affine g64) if nonzero. */
void tb_build_mlx(struct tb_ckpt *c, const struct tb_model *m, int bits, int group_size,
                  const char *mode, int router_bits);
/* Hugging Face layouts: MXFP4 experts (blocks/scales/bias) or bf16 input-major experts. */
void tb_build_hf(struct tb_ckpt *c, const struct tb_model *m, int mxfp4);

/* config.json text for m (malloc'd); `extra` is inserted as more members (", \"k\": v") or
 * NULL. */
char *tb_config(const struct tb_model *m, const char *extra);

/* Writes tensors of shard `shard` (-1: all) as a safetensors file. Returns 0 on success. */
int tb_write(const struct tb_ckpt *c, const char *path, int shard);
/* Writes config.json and model.safetensors (n_shards 1) or model-0000k-of-0000N.safetensors
 * with tensors spread round-robin (with_index: also model.safetensors.index.json). */
int tb_write_dir(struct tb_ckpt *c, const char *dir, const char *config, int n_shards,
                 int with_index);

#endif
