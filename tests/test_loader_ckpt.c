/* Loader tests on whole checkpoints written byte by byte: MLX layouts, shards, Hugging Face
 * layouts, bad checkpoints, bits per weight on full-size (sparse) gpt-oss-20b shapes. */
#include "checkpoint.h"
#include "fp.h"
#include "loader_build.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define Q4_CFG                                                                                     \
    ", \"quantization\": {\"group_size\": 32, \"bits\": 4, "                                       \
    "\"model.layers.0.mlp.router\": {\"group_size\": 64, \"bits\": 8}, "                           \
    "\"model.layers.1.mlp.router\": {\"group_size\": 64, \"bits\": 8}}"

/* Writes c with config extra into a fresh folder; returns the folder (caller frees). */
static char *write_ckpt(struct tb_ckpt *c, const struct tb_model *m, const char *extra,
                        int n_shards, int with_index) {
    char *dir = moecl_test_tmpdir("loader_ckpt");
    char *cfg = tb_config(m, extra);
    int rc = tb_write_dir(c, dir, cfg, n_shards, with_index);
    free(cfg);
    if (rc != 0) {
        moecl_test_rmtree(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

static void done(char *dir) {
    moecl_test_rmtree(dir);
    free(dir);
}

/* Opening must fail with `want` and a message containing both needles. */
static void expect_open_error(const char *dir, enum moecl_status want, const char *n1,
                              const char *n2) {
    struct moecl_ckpt *ck = (struct moecl_ckpt *)1;
    enum moecl_status st = moecl_ckpt_open(dir, &ck);
    CHECK_EQ(st, want);
    CHECK(ck == NULL);
    if (n1)
        CHECK_STR_CONTAINS(moecl_last_error(), n1);
    if (n2)
        CHECK_STR_CONTAINS(moecl_last_error(), n2);
}

static int in_tensor(const struct moecl_tensor *t, const void *p) {
    const unsigned char *b = t->data, *q = p;
    return q >= b && q < b + t->n_bytes;
}

TEST(loader_ckpt_mlx_affine) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 4, 32, "affine", 8);
    char *dir = write_ckpt(&c, &tb_tiny, Q4_CFG, 1, 0);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->layout, MOECL_LAYOUT_MLX);
    CHECK_EQ(ck->act_dtype, MOECL_DTYPE_BF16);
    CHECK_EQ(ck->converted_bytes, 0);
    CHECK_EQ(ck->n_files, 1);
    CHECK_EQ(ck->n_tensors, c.n);
    CHECK_EQ(ck->config.n_layers, 2);
    const struct moecl_layer *L = &ck->layers[1];
    CHECK_EQ(L->q.mode, MOECL_QMODE_AFFINE);
    CHECK_EQ(L->q.bits, 4);
    CHECK_EQ(L->q.group_size, 32);
    CHECK_EQ(L->q.rows, 64);
    CHECK_EQ(L->q.cols, 64);
    CHECK_EQ(L->q.weight_row_stride, 64 * 4 / 8);
    CHECK_EQ(L->q.scales_row_stride, 2 * 2);
    CHECK_EQ(L->q.float_dtype, MOECL_DTYPE_BF16);
    CHECK(L->q.bias && L->q.biases && L->q.scales);
    CHECK(!strcmp(L->q.name, "model.layers.1.self_attn.q_proj"));
    CHECK_EQ(L->k.rows, 32);
    CHECK_EQ(L->o.cols, 64);
    CHECK_EQ(L->router.bits, 8);
    CHECK_EQ(L->router.group_size, 64);
    CHECK_EQ(L->router.rows, 4);
    CHECK_EQ(L->gate.n_experts, 4);
    CHECK_EQ(L->gate.weight_expert_stride, 64 * 64 / 2);
    CHECK_EQ(L->gate.bias_expert_stride, 64 * 2);
    CHECK_EQ(L->down.rows, 64);
    CHECK_EQ(L->sinks.n, 4);
    /* zero copy: every view points into the mapped tensor it came from */
    const struct moecl_tensor *w = moecl_ckpt_find(ck, "model.layers.1.mlp.experts.up_proj.weight");
    REQUIRE(w);
    CHECK(L->up.weight == w->data);
    CHECK(L->up.src_weight == w);
    CHECK(in_tensor(L->up.src_scales, L->up.scales));
    /* the bytes are the file's */
    const struct tb_tensor *src = tb_find(&c, "model.layers.1.mlp.experts.up_proj.weight");
    CHECK(memcmp(w->data, src->data, src->n_bytes) == 0);
    CHECK(moecl_ckpt_find(ck, "nope") == NULL);
    CHECK_EQ(ck->embed.mode, MOECL_QMODE_AFFINE);
    CHECK(ck->embed.bias == NULL);
    CHECK(ck->config.yarn);
    moecl_ckpt_close(ck);
    done(dir);
    tb_free(&c);
}

TEST(loader_ckpt_float_and_fp_modes) {
    /* all float (bf16) */
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 0, 0, NULL, 0);
    char *dir = write_ckpt(&c, &tb_tiny, NULL, 1, 0);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->layers[0].gate.mode, MOECL_QMODE_NONE);
    CHECK_EQ(ck->layers[0].gate.bits, 16);
    CHECK_EQ(ck->layers[0].gate.weight_row_stride, 64 * 2);
    CHECK_EQ(ck->lm_head.float_dtype, MOECL_DTYPE_BF16);
    moecl_ckpt_close(ck);
    done(dir);
    tb_free(&c);
    /* mxfp4 experts + affine rest as current mlx-lm writes from the HF release, and nvfp4 /
     * mxfp8 as uniform modes */
    const char *modes[3] = {"mxfp4", "mxfp8", "nvfp4"};
    const int bits[3] = {4, 8, 4}, groups[3] = {32, 32, 16};
    for (int k = 0; k < 3; k++) {
        tb_init(&c, 0);
        tb_build_mlx(&c, &tb_tiny, bits[k], groups[k], modes[k], 8);
        char extra[512];
        snprintf(extra, sizeof extra,
                 ", \"quantization\": {\"group_size\": %d, \"bits\": %d, \"mode\": \"%s\", "
                 "\"model.layers.0.mlp.router\": {\"group_size\": 64, \"bits\": 8}, "
                 "\"model.layers.1.mlp.router\": {\"group_size\": 64, \"bits\": 8}}",
                 groups[k], bits[k], modes[k]);
        dir = write_ckpt(&c, &tb_tiny, extra, 1, 0);
        REQUIRE(dir);
        REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
        CHECK_EQ(ck->layers[1].down.mode, (enum moecl_qmode)(MOECL_QMODE_MXFP4 + k));
        CHECK_EQ(ck->layers[1].down.group_size, groups[k]);
        CHECK(ck->layers[1].down.biases == NULL);
        CHECK_EQ(ck->layers[1].router.mode, MOECL_QMODE_AFFINE);
        CHECK_EQ(ck->layers[1].down.scales_row_stride, (size_t)(64 / groups[k]));
        moecl_ckpt_close(ck);
        done(dir);
        tb_free(&c);
    }
}

TEST(loader_ckpt_mixed_map) {
    /* v_proj and down_proj 8-bit, the rest 4-bit, lm_head float via `false`. */
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 4, 64, "affine", 0);
    for (int l = 0; l < 2; l++) {
        char p[128], n[160];
        snprintf(p, sizeof p, "model.layers.%d.self_attn.v_proj", l);
        snprintf(n, sizeof n, "%s.weight", p);
        tb_remove(&c, n);
        snprintf(n, sizeof n, "%s.scales", p);
        tb_remove(&c, n);
        snprintf(n, sizeof n, "%s.biases", p);
        tb_remove(&c, n);
        snprintf(n, sizeof n, "%s.bias", p);
        tb_remove(&c, n);
        tb_linear(&c, p, 0, 32, 64, 8, 64, "affine", 1);
    }
    tb_remove(&c, "lm_head.weight");
    tb_remove(&c, "lm_head.scales");
    tb_remove(&c, "lm_head.biases");
    tb_linear(&c, "lm_head", 0, 128, 64, 0, 0, NULL, 0);
    char *dir = write_ckpt(&c, &tb_tiny,
                           ", \"quantization\": {\"group_size\": 64, \"bits\": 4, "
                           "\"model.layers.0.self_attn.v_proj\": {\"group_size\": 64, \"bits\": "
                           "8, \"mode\": \"affine\"}, \"model.layers.1.self_attn.v_proj\": "
                           "{\"group_size\": null, \"bits\": 8}, \"lm_head\": false}",
                           1, 0);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->layers[0].v.bits, 8);
    CHECK_EQ(ck->layers[1].v.bits, 8);
    CHECK_EQ(ck->layers[1].v.group_size, 64);
    CHECK_EQ(ck->layers[1].k.bits, 4);
    CHECK_EQ(ck->lm_head.mode, MOECL_QMODE_NONE);
    struct moecl_ckpt_summary s;
    REQUIRE(moecl_inspect(dir, 0, NULL, &s) == MOECL_OK);
    CHECK_EQ(s.n_modules, 2 + 2 * 8);
    moecl_ckpt_close(ck);
    done(dir);
    tb_free(&c);
}

TEST(loader_ckpt_bad_tensors) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 4, 32, "affine", 0);
    const char *q4 = ", \"quantization\": {\"group_size\": 32, \"bits\": 4}";
    /* missing tensor */
    tb_remove(&c, "model.layers.1.self_attn.k_proj.bias");
    char *dir = write_ckpt(&c, &tb_tiny, q4, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_NOT_FOUND,
                      "missing tensor 'model.layers.1.self_attn.k_proj.bias'", dir);
    done(dir);
    tb_add(&c, "model.layers.1.self_attn.k_proj.bias", "BF16", 1, 32, 0, 0, 0);
    /* hidden size in config disagrees with the tensors */
    struct tb_model m = tb_tiny;
    m.hidden = 128;
    dir = write_ckpt(&c, &m, q4, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_SHAPE, "model.norm.weight", "expected F32/F16/BF16 [128]");
    done(dir);
    /* dtype disagreeing: packed weight stored as F32 */
    tb_find(&c, "model.layers.0.self_attn.o_proj.weight")->dtype[0] = 'F';
    dir = write_ckpt(&c, &tb_tiny, q4, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_SHAPE, "'model.layers.0.self_attn.o_proj.weight'",
                      "expected U32 [64, 8], found F32 [64, 8]");
    done(dir);
    tb_find(&c, "model.layers.0.self_attn.o_proj.weight")->dtype[0] = 'U';
    /* config says 8 bits but the tensors are 4-bit */
    dir = write_ckpt(&c, &tb_tiny, ", \"quantization\": {\"group_size\": 32, \"bits\": 8}", 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_SHAPE, "affine 8-bit g32 packed weight", "found U32");
    done(dir);
    /* group size that does not divide the input width */
    dir = write_ckpt(&c, &tb_tiny, ", \"quantization\": {\"group_size\": 128, \"bits\": 4}", 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_UNSUPPORTED,
                      "group_size 128 does not divide the input width 64", "module '");
    done(dir);
    /* unsupported bits, unknown mode (config errors reach the open call with the file name) */
    dir = write_ckpt(&c, &tb_tiny, ", \"quantization\": {\"group_size\": 32, \"bits\": 7}", 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_UNSUPPORTED, "config.json", "affine bits 7");
    done(dir);
    dir = write_ckpt(&c, &tb_tiny,
                     ", \"quantization\": {\"group_size\": 32, \"bits\": 4, \"mode\": \"q4_k\"}", 1,
                     0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_UNSUPPORTED, "config.json", "unknown mode 'q4_k'");
    done(dir);
    /* scales without any quantization record */
    dir = write_ckpt(&c, &tb_tiny, NULL, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_FORMAT, "config.json", "no 'quantization' record");
    done(dir);
    /* a stray tensor */
    tb_add(&c, "model.layers.5.mlp.router.bias", "BF16", 1, 4, 0, 0, 0);
    dir = write_ckpt(&c, &tb_tiny, q4, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_FORMAT, "'model.layers.5.mlp.router.bias'", "not part of");
    done(dir);
    tb_remove(&c, "model.layers.5.mlp.router.bias");
    /* impossible config sizes through the whole open */
    m = tb_tiny;
    m.kv = 3;
    dir = write_ckpt(&c, &m, q4, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_UNSUPPORTED, "config.json", "not a multiple");
    done(dir);
    /* no config, no weights */
    dir = moecl_test_tmpdir("loader_empty");
    expect_open_error(dir, MOECL_ERR_NOT_FOUND, "config.json", "cannot open");
    char *cfg = tb_config(&tb_tiny, NULL), path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    REQUIRE(moecl_test_write_file(path, cfg, strlen(cfg)) == 0);
    free(cfg);
    expect_open_error(dir, MOECL_ERR_NOT_FOUND, "no model*.safetensors", NULL);
    /* a truncated shard */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    REQUIRE(moecl_test_write_file(path, "\x08\0\0\0\0\0\0\0{}", 10) == 0);
    expect_open_error(dir, MOECL_ERR_FORMAT, "model.safetensors", "header length 8 runs past");
    done(dir);
    tb_free(&c);
}

TEST(loader_ckpt_shards) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 4, 32, "affine", 8);
    /* index + 3 shards */
    char *dir = write_ckpt(&c, &tb_tiny, Q4_CFG, 3, 1);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->n_files, 3);
    CHECK_EQ(ck->n_tensors, c.n);
    CHECK(ck->layers[1].gate.weight != NULL);
    moecl_ckpt_close(ck);
    /* the index names a shard that is missing */
    char path[4096];
    snprintf(path, sizeof path, "%s/model-00002-of-00003.safetensors", dir);
    REQUIRE(remove(path) == 0);
    expect_open_error(dir, MOECL_ERR_NOT_FOUND, "model.safetensors.index.json names shard",
                      "'model-00002-of-00003.safetensors', which is missing");
    done(dir);
    /* no index: every model*.safetensors is read */
    dir = write_ckpt(&c, &tb_tiny, Q4_CFG, 2, 0);
    REQUIRE(dir);
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->n_files, 2);
    moecl_ckpt_close(ck);
    /* the same tensor in two shards is ambiguous */
    for (int i = 0; i < c.n; i++)
        c.t[i].shard = 0;
    snprintf(path, sizeof path, "%s/model-00003-of-00003.safetensors", dir);
    REQUIRE(tb_write(&c, path, 0) == 0);
    expect_open_error(dir, MOECL_ERR_FORMAT, "appears in both", NULL);
    done(dir);
    tb_free(&c);
}

static float mxfp4_at(const unsigned char *blocks, const unsigned char *scales, size_t row_bytes,
                      size_t row_groups, size_t row, size_t col) {
    unsigned char byte = blocks[row * row_bytes + col / 2];
    unsigned nib = (col & 1) ? byte >> 4 : byte & 15;
    return moecl_fp4_to_f32(nib) * ldexpf(1.0f, (int)scales[row * row_groups + col / 32] - 127);
}

TEST(loader_ckpt_hf_mxfp4) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    struct tb_model m = tb_tiny;
    tb_build_hf(&c, &m, 1);
    char *dir = write_ckpt(&c, &m,
                           ", \"quantization_config\": {\"quant_method\": \"mxfp4\", "
                           "\"modules_to_not_convert\": [\"model.layers.*.self_attn\"]}",
                           1, 0);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->layout, MOECL_LAYOUT_HF_MXFP4);
    CHECK_EQ(ck->layers[0].q.mode, MOECL_QMODE_NONE);
    const struct moecl_qweight *g = &ck->layers[1].gate, *u = &ck->layers[1].up,
                               *d = &ck->layers[1].down;
    CHECK_EQ(g->mode, MOECL_QMODE_MXFP4);
    CHECK_EQ(g->weight_row_stride, 2 * 32); /* two rows of H/2 bytes */
    CHECK_EQ(g->scales_row_stride, 2 * 2);  /* two rows of H/32 scales */
    CHECK_EQ(g->weight_expert_stride, 128 * 32);
    CHECK_EQ((const unsigned char *)u->weight - (const unsigned char *)g->weight, 32);
    CHECK_EQ(d->weight_row_stride, 32);
    const struct tb_tensor *blk = tb_find(&c, "model.layers.1.mlp.experts.gate_up_proj_blocks");
    const struct tb_tensor *sc = tb_find(&c, "model.layers.1.mlp.experts.gate_up_proj_scales");
    const struct tb_tensor *bias = tb_find(&c, "model.layers.1.mlp.experts.gate_up_proj_bias");
    /* zero copy for the weights */
    const struct moecl_tensor *mt =
        moecl_ckpt_find(ck, "model.layers.1.mlp.experts.gate_up_proj_blocks");
    CHECK(g->weight == mt->data);
    /* element (expert 2, gate row 5, input col 37) and the up element of the same j, through
     * the views, against the raw HF tensor: rows 2j (gate) and 2j+1 (up) of expert 2 */
    int e = 2, j = 5, col = 37;
    for (int parity = 0; parity < 2; parity++) {
        const struct moecl_qweight *w = parity ? u : g;
        const unsigned char *wb = (const unsigned char *)w->weight + e * w->weight_expert_stride +
                                  j * w->weight_row_stride;
        const unsigned char *sb = (const unsigned char *)w->scales + e * w->scales_expert_stride +
                                  j * w->scales_row_stride;
        unsigned char byte = wb[col / 2];
        float got =
            moecl_fp4_to_f32((col & 1) ? byte >> 4 : byte & 15) * moecl_e8m0_to_f32(sb[col / 32]);
        size_t row = (size_t)e * 128 + (size_t)(2 * j + parity);
        float want = mxfp4_at(blk->data, sc->data, 32, 2, row, (size_t)col);
        CHECK_EQ(got, want);
        /* the raw nibble, hand-decoded from the HF block layout [E, 2I, H/32, 16] */
        unsigned char hb =
            blk->data[(((size_t)e * 128 + (size_t)(2 * j + parity)) * 2 + 1) * 16 + (37 - 32) / 2];
        CHECK_EQ((col & 1) ? hb >> 4 : hb & 15, (col & 1) ? byte >> 4 : byte & 15);
        /* bias: de-interleaved */
        uint16_t bv, wantb;
        memcpy(&bv, (const unsigned char *)w->bias + e * w->bias_expert_stride + 2 * j, 2);
        memcpy(&wantb, bias->data + ((size_t)e * 128 + (size_t)(2 * j + parity)) * 2, 2);
        CHECK_EQ(bv, wantb);
    }
    CHECK_EQ(ck->converted_bytes, 2u * 2 * 4 * 64 * 2); /* only the two biases, 2 layers */
    moecl_ckpt_close(ck);
    /* without the quant_method the blocks' scales have no record */
    done(dir);
    dir = write_ckpt(&c, &m, NULL, 1, 0);
    REQUIRE(dir);
    expect_open_error(dir, MOECL_ERR_FORMAT, "gate_proj.scales", "no 'quantization' record");
    done(dir);
    tb_free(&c);
}

TEST(loader_ckpt_hf_bf16) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    struct tb_model m = tb_tiny;
    m.inter = 32; /* not square, so a wrong orientation cannot pass */
    tb_build_hf(&c, &m, 0);
    char *dir = write_ckpt(&c, &m, NULL, 1, 0);
    REQUIRE(dir);
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(dir, &ck) == MOECL_OK);
    CHECK_EQ(ck->layout, MOECL_LAYOUT_HF_BF16);
    const struct tb_tensor *gu = tb_find(&c, "model.layers.1.mlp.experts.gate_up_proj");
    const struct tb_tensor *dn = tb_find(&c, "model.layers.1.mlp.experts.down_proj");
    const struct tb_tensor *gb = tb_find(&c, "model.layers.1.mlp.experts.gate_up_proj_bias");
    const struct moecl_layer *L = &ck->layers[1];
    const int E = 4, H = 64, I = 32;
    CHECK_EQ(L->gate.rows, I);
    CHECK_EQ(L->gate.cols, H);
    CHECK_EQ(L->down.rows, H);
    CHECK_EQ(L->down.cols, I);
    int bad = 0;
    for (int e = 0; e < E; e++)
        for (int o = 0; o < I; o++)
            for (int i = 0; i < H; i++)
                for (int parity = 0; parity < 2; parity++) {
                    const struct moecl_qweight *w = parity ? &L->up : &L->gate;
                    uint16_t got, want;
                    memcpy(&got,
                           (const unsigned char *)w->weight + e * w->weight_expert_stride +
                               o * w->weight_row_stride + 2 * (size_t)i,
                           2);
                    memcpy(&want, gu->data + (((size_t)e * H + i) * (2 * I) + 2 * o + parity) * 2,
                           2);
                    bad += got != want;
                }
    for (int e = 0; e < E; e++)
        for (int o = 0; o < H; o++)
            for (int i = 0; i < I; i++) {
                uint16_t got, want;
                memcpy(&got,
                       (const unsigned char *)L->down.weight + e * L->down.weight_expert_stride +
                           o * L->down.weight_row_stride + 2 * (size_t)i,
                       2);
                memcpy(&want, dn->data + (((size_t)e * I + i) * H + o) * 2, 2);
                bad += got != want;
            }
    CHECK_EQ(bad, 0);
    uint16_t b0, b1;
    memcpy(&b0, (const unsigned char *)L->up.bias + 3 * L->up.bias_expert_stride + 2 * 7, 2);
    memcpy(&b1, gb->data + ((size_t)3 * 2 * I + 2 * 7 + 1) * 2, 2);
    CHECK_EQ(b0, b1);
    size_t per_layer = 3u * E * H * I * 2 + 2u * E * I * 2;
    CHECK_EQ(ck->converted_bytes, 2 * per_layer);
    struct moecl_ckpt_summary s;
    REQUIRE(moecl_inspect(dir, 0, NULL, &s) == MOECL_OK);
    CHECK_EQ(s.converted_bytes, 2 * per_layer);
    CHECK_NEAR(s.bits_per_weight, 16.0, 1e-9);
    moecl_ckpt_close(ck);
    done(dir);
    tb_free(&c);
}

/* Full-size gpt-oss-20b shapes with the cards' recipes, as sparse files. */
static double bpw_20b(int bits, int gs, uint64_t *bytes_out) {
    struct tb_ckpt c;
    tb_init(&c, 1);
    tb_build_mlx(&c, &tb_20b, bits, gs, "affine", 8);
    /* every router gets the 8-bit entry as mlx-lm writes it */
    char *big = malloc(8192), *p = big;
    p += sprintf(p, ", \"quantization\": {\"group_size\": %d, \"bits\": %d", gs, bits);
    for (int l = 0; l < 24; l++)
        p += sprintf(p, ", \"model.layers.%d.mlp.router\": {\"group_size\": 64, \"bits\": 8}", l);
    sprintf(p, "}");
    char *dir = write_ckpt(&c, &tb_20b, big, 3, 1);
    free(big);
    tb_free(&c);
    if (!dir)
        return -1;
    struct moecl_ckpt_summary s;
    double r = moecl_inspect(dir, 0, NULL, &s) == MOECL_OK ? s.bits_per_weight : -2;
    *bytes_out = s.n_bytes;
    done(dir);
    return r;
}

TEST(loader_inspect_bpw_20b) {
    uint64_t bytes = 0;
    double b4 = bpw_20b(4, 64, &bytes);
    CHECK_NEAR(b4, 4.504, 0.0005); /* gpt-oss-20b-MLX-4bit card */
    double b6 = bpw_20b(6, 64, &bytes);
    CHECK_NEAR(b6, 6.503, 0.0005); /* GPT-OSS-Swallow 6-bit card */
    double b5 = bpw_20b(5, 32, &bytes);
    CHECK(b5 > 0);
    CHECK_NEAR((double)bytes / 1e9, 15.76, 15.76 * 0.02); /* 5-bit g32 card: 15.76 GB */
}

TEST(loader_inspect_cli) {
    struct tb_ckpt c;
    tb_init(&c, 0);
    tb_build_mlx(&c, &tb_tiny, 4, 32, "affine", 8);
    char *dir = write_ckpt(&c, &tb_tiny, Q4_CFG, 1, 0);
    REQUIRE(dir);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect %s --tensors", moecl_test_bin(), dir);
    CHECK_EQ(moecl_test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "16 modules affine 4-bit g32, 2 modules affine 8-bit g64");
    CHECK_STR_CONTAINS(out, "bits per weight");
    CHECK_STR_CONTAINS(out, "model.layers.1.mlp.experts.down_proj.scales");
    CHECK_STR_CONTAINS(out, "zero-copy");
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect %s --json", moecl_test_bin(), dir);
    CHECK_EQ(moecl_test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "\"bits_per_weight\": ");
    CHECK_STR_CONTAINS(out, "\"layout\": \"mlx\"");
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect %s/nonexistent", moecl_test_bin(), dir);
    CHECK_EQ(moecl_test_run(cmd, &out), 1);
    CHECK_STR_CONTAINS(out, "nonexistent/config.json");
    free(out);
    done(dir);
    tb_free(&c);
}

/* Every checkpoint folder under tests/fixtures loads (made by mlx-lm; see tests/reference). */
TEST(loader_fixtures_load) {
    DIR *d = opendir("tests/fixtures");
    if (!d)
        SKIP("no tests/fixtures folder");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[1024], cfg[1100];
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "tests/fixtures/%s", de->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        struct stat sb;
        if (stat(cfg, &sb) != 0)
            continue;
        struct moecl_ckpt *ck = NULL;
        enum moecl_status st = moecl_ckpt_open(path, &ck);
        if (st != MOECL_OK)
            moecl_test_fail(__FILE__, __LINE__, "fixture %s: %s", path, moecl_last_error());
        moecl_ckpt_close(ck);
        n++;
    }
    closedir(d);
    if (n == 0)
        SKIP("no checkpoint folders in tests/fixtures");
}

/* Bytes of row r of expert e of module w (row_bytes long). */
static const unsigned char *qrow(const struct moecl_qweight *w, int e, int64_t r) {
    return (const unsigned char *)w->weight + (size_t)e * w->weight_expert_stride +
           (size_t)r * w->weight_row_stride;
}

static int same_module(const struct moecl_qweight *a, const struct moecl_qweight *b,
                       size_t row_bytes) {
    if (a->mode != b->mode || a->rows != b->rows || a->cols != b->cols ||
        a->n_experts != b->n_experts)
        return 0;
    int E = a->n_experts ? a->n_experts : 1;
    for (int e = 0; e < E; e++)
        for (int64_t r = 0; r < a->rows; r++)
            if (memcmp(qrow(a, e, r), qrow(b, e, r), row_bytes) != 0)
                return 0;
    return 1;
}

TEST(loader_convert_hf) {
    for (int mx = 0; mx < 2; mx++) {
        struct tb_ckpt c;
        tb_init(&c, 0);
        struct tb_model m = tb_tiny;
        m.inter = 160; /* 2.5 blocks of the streaming transpose */
        m.hidden = 128;
        tb_build_hf(&c, &m, mx);
        char *src = write_ckpt(
            &c, &m, mx ? ", \"quantization_config\": {\"quant_method\": \"mxfp4\"}" : NULL, 1, 0);
        REQUIRE(src);
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", src);
        REQUIRE(moecl_test_write_file(path, "{}", 2) == 0);
        char *dst = moecl_test_tmpdir("loader_conv");
        char cmd[8192], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s convert %s %s", moecl_test_bin(), src, dst);
        CHECK_EQ(moecl_test_run(cmd, &out), 0);
        free(out);
        struct moecl_ckpt *a = NULL, *b = NULL;
        REQUIRE(moecl_ckpt_open(src, &a) == MOECL_OK);
        if (moecl_ckpt_open(dst, &b) != MOECL_OK) {
            moecl_test_fail(__FILE__, __LINE__, "converted: %s", moecl_last_error());
            moecl_ckpt_close(a);
            return;
        }
        CHECK_EQ(b->layout, MOECL_LAYOUT_MLX);
        CHECK_EQ(b->converted_bytes, 0);
        size_t rb = mx ? 128 / 2 : 128 * 2, rbd = mx ? 160 / 2 : 160 * 2;
        for (int l = 0; l < 2; l++) {
            CHECK(same_module(&a->layers[l].gate, &b->layers[l].gate, rb));
            CHECK(same_module(&a->layers[l].up, &b->layers[l].up, rb));
            CHECK(same_module(&a->layers[l].down, &b->layers[l].down, rbd));
            CHECK(memcmp(a->layers[l].up.bias, b->layers[l].up.bias, 4 * 160 * 2) == 0);
            CHECK(same_module(&a->layers[l].q, &b->layers[l].q, 128 * 2));
        }
        if (mx)
            CHECK(memcmp(a->layers[1].up.scales, b->layers[1].up.scales, 2) == 0);
        snprintf(path, sizeof path, "%s/tokenizer.json", dst);
        struct stat sb;
        CHECK(stat(path, &sb) == 0);
        moecl_ckpt_close(a);
        moecl_ckpt_close(b);
        done(src);
        done(dst);
        tb_free(&c);
    }
}
