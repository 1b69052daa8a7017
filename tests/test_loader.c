/* Loader unit tests: the safetensors parser, config.json, the quantization map. */
#include "config.h"
#include "fp.h"
#include "safetensors.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* 8-byte length + header + data_len bytes of data (0..255 pattern). */
static unsigned char *st_bytes(const char *header, size_t data_len, size_t *size_out) {
    size_t h = strlen(header);
    unsigned char *b = malloc(8 + h + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)i;
    *size_out = 8 + h + data_len;
    return b;
}

/* Parses and expects failure with status `want` and a message containing needle(s). */
static void expect_st_error(const char *header, size_t data_len, enum moecl_status want,
                            const char *needle1, const char *needle2) {
    size_t n;
    unsigned char *b = st_bytes(header, data_len, &n);
    struct moecl_st_file *f = (struct moecl_st_file *)1;
    enum moecl_status st = moecl_st_parse("mem.safetensors", b, n, 0, &f);
    CHECK_EQ(st, want);
    CHECK(f == NULL);
    CHECK_STR_CONTAINS(moecl_last_error(), "mem.safetensors");
    if (needle1)
        CHECK_STR_CONTAINS(moecl_last_error(), needle1);
    if (needle2)
        CHECK_STR_CONTAINS(moecl_last_error(), needle2);
    free(b);
}

TEST(loader_st_valid) {
    const char *h = "{\"__metadata__\": {\"format\": \"mlx\"}, "
                    "\"b\": {\"dtype\": \"U8\", \"shape\": [2, 3], \"data_offsets\": [8, 14]}, "
                    "\"a\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [0, 8]}, "
                    "\"e\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [14, 14]}, "
                    "\"s\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [16, 24]}}   ";
    size_t n;
    unsigned char *b = st_bytes(h, 24, &n);
    struct moecl_st_file *f = NULL;
    REQUIRE(moecl_st_parse("mem.safetensors", b, n, 3, &f) == MOECL_OK);
    CHECK_EQ(f->n_tensors, 4);
    const struct moecl_tensor *a = moecl_st_find(f, "a"), *bb = moecl_st_find(f, "b");
    REQUIRE(a && bb);
    CHECK_EQ(a->dtype, MOECL_DTYPE_BF16);
    CHECK_EQ(a->n_dims, 1);
    CHECK_EQ(a->shape[0], 4);
    CHECK_EQ(a->n_bytes, 8);
    CHECK_EQ(a->file_index, 3);
    CHECK(a->data == b + 8 + strlen(h));
    CHECK_EQ(bb->dtype, MOECL_DTYPE_U8);
    CHECK_EQ(bb->shape[1], 3);
    CHECK_EQ(((const unsigned char *)bb->data)[0], 8);
    CHECK_EQ(bb->file_offset, 8 + strlen(h) + 8);
    CHECK_EQ(moecl_st_find(f, "s")->n_dims, 0);
    CHECK_EQ(moecl_st_find(f, "e")->n_bytes, 0);
    CHECK(moecl_st_metadata(f, "format") && !strcmp(moecl_st_metadata(f, "format"), "mlx"));
    moecl_st_close(f);
    free(b);
}

TEST(loader_st_truncated) {
    unsigned char b[5] = {1, 0, 0, 0, 0};
    struct moecl_st_file *f = NULL;
    CHECK_EQ(moecl_st_parse("t.safetensors", b, sizeof b, 0, &f), MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "t.safetensors: truncated");
    /* A file cut inside the data area: the offsets run past the end. */
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 10,
                    MOECL_ERR_FORMAT, "'w'", "past the end of the data area");
    /* And from disk, through mmap. */
    char *dir = moecl_test_tmpdir("loader_trunc");
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    REQUIRE(moecl_test_write_file(path, "\x10\0\0", 3) == 0);
    CHECK_EQ(moecl_st_open(path, 0, &f), MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "model.safetensors: truncated");
    REQUIRE(moecl_test_write_file(path, "", 0) == 0);
    CHECK_EQ(moecl_st_open(path, 0, &f), MOECL_ERR_FORMAT);
    snprintf(path, sizeof path, "%s/absent.safetensors", dir);
    CHECK_EQ(moecl_st_open(path, 0, &f), MOECL_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(moecl_last_error(), "absent.safetensors");
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(loader_st_header_past_end) {
    unsigned char b[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    struct moecl_st_file *f = NULL;
    CHECK_EQ(moecl_st_parse("h.safetensors", b, sizeof b, 0, &f), MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "header length 200 runs past the end");
    /* An absurd length is refused before anything is allocated. */
    unsigned char c[16] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    CHECK_EQ(moecl_st_parse("h.safetensors", c, sizeof c, 0, &f), MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "absurd");
    CHECK(f == NULL);
}

TEST(loader_st_not_json) {
    expect_st_error("{\"w\": {\"dtype\": ", 0, MOECL_ERR_FORMAT, "not valid JSON", NULL);
    expect_st_error("[1, 2, 3]", 0, MOECL_ERR_FORMAT, "not an object", NULL);
    expect_st_error("{} trailing", 0, MOECL_ERR_FORMAT, "trailing", NULL);
    expect_st_error("{\"w\": 5}", 0, MOECL_ERR_FORMAT, "'w'", "not an object");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
                    MOECL_ERR_FORMAT, "'w'", "shape entry 0");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
                    MOECL_ERR_FORMAT, "'w'", "shape");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, MOECL_ERR_FORMAT, "'w'",
                    "data_offsets");
    expect_st_error("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, MOECL_ERR_FORMAT,
                    "'w'", "dtype");
    expect_st_error("{\"__metadata__\": {\"format\": 1}}", 0, MOECL_ERR_FORMAT, "__metadata__",
                    NULL);
}

TEST(loader_st_offsets) {
    expect_st_error("{\"w\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [6, 10]}}", 8,
                    MOECL_ERR_FORMAT, "'w'", "[6, 10)");
    expect_st_error("{\"w\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [5, 4]}}", 8,
                    MOECL_ERR_FORMAT, "'w'", "begin 5 > end 4");
    expect_st_error("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}, "
                    "\"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]}}",
                    8, MOECL_ERR_FORMAT, "'a' and 'b' overlap", NULL);
    expect_st_error("{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}, "
                    "\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
                    8, MOECL_ERR_FORMAT, "'a' appears twice", NULL);
    expect_st_error("{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1e300]}}", 8,
                    MOECL_ERR_FORMAT, "'w'", "data_offsets");
}

TEST(loader_st_dtype_shape) {
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
                    MOECL_ERR_FORMAT, "'w'", "span 8 bytes but F32 [3] needs 12");
    expect_st_error("{\"w\": {\"dtype\": \"Q4_K\", \"shape\": [3], \"data_offsets\": [0, 3]}}", 8,
                    MOECL_ERR_UNSUPPORTED, "'w'", "unknown dtype 'Q4_K'");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
                    "\"data_offsets\": [0, 8]}}",
                    8, MOECL_ERR_FORMAT, "'w'", "overflows");
    expect_st_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
                    "\"data_offsets\": [0, 4]}}",
                    8, MOECL_ERR_UNSUPPORTED, "'w'", "9 dimensions");
}

TEST(loader_dtype_names) {
    for (int i = 0; i < MOECL_DTYPE_COUNT; i++)
        CHECK(moecl_dtype_size((enum moecl_dtype)i) > 0);
    CHECK_EQ(moecl_dtype_size(MOECL_DTYPE_BF16), 2);
    CHECK_EQ(moecl_dtype_size(MOECL_DTYPE_I64), 8);
    CHECK(!strcmp(moecl_dtype_name(MOECL_DTYPE_F8_E4M3), "F8_E4M3"));
    CHECK(!strcmp(moecl_qmode_name(MOECL_QMODE_NVFP4), "nvfp4"));
}

TEST(loader_fp_conversions) {
    CHECK_EQ(moecl_bf16_to_f32(0x3f80), 1.0);
    CHECK_EQ(moecl_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(moecl_f32_to_bf16(1.00390625f), 0x3f80); /* tie -> even */
    CHECK_EQ(moecl_f32_to_bf16(1.01171875f), 0x3f82); /* tie -> even (up) */
    CHECK_EQ(moecl_f16_to_f32(0x3c00), 1.0);
    CHECK_EQ(moecl_f16_to_f32(0x0001) * 16777216.0f, 1.0); /* smallest subnormal 2^-24 */
    CHECK_EQ(moecl_f16_to_f32(0xc000), -2.0);
    CHECK_EQ(moecl_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ(moecl_f32_to_f16(1e6f), 0x7c00);
    CHECK_EQ(moecl_f32_to_f16(5.9604644775390625e-8f), 0x0001);
    for (uint32_t h = 0; h < 0x7c00; h += 7) /* round trip of every 7th finite half */
        CHECK_EQ(moecl_f32_to_f16(moecl_f16_to_f32((uint16_t)h)), h);
    CHECK_EQ(moecl_e8m0_to_f32(127), 1.0);
    CHECK_EQ(moecl_e8m0_to_f32(130), 8.0);
    CHECK_EQ(moecl_e4m3_to_f32(0x7e), 448.0);
    CHECK_EQ(moecl_e4m3_to_f32(0x01), 1.0 / 512);
    CHECK_EQ(moecl_e4m3_to_f32(0x38), 1.0);
    CHECK_EQ(moecl_fp4_to_f32(7), 6.0);
    CHECK_EQ(moecl_fp4_to_f32(0xd), -3.0);
}

/* ------------------------------------------------------------------ config.json */

#define BASE_CFG                                                                                   \
    "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 64, "               \
    "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "           \
    "\"head_dim\": 16, \"vocab_size\": 128, \"num_local_experts\": 4, \"num_experts_per_tok\": "   \
    "2%s}"

static enum moecl_status parse_cfg(const char *extra, struct moecl_config *cfg) {
    char buf[2048];
    snprintf(buf, sizeof buf, BASE_CFG, extra);
    return moecl_config_parse("cfg/config.json", buf, strlen(buf), cfg);
}

TEST(loader_config_defaults) {
    struct moecl_config c;
    REQUIRE(parse_cfg("", &c) == MOECL_OK);
    CHECK_EQ(c.hidden_size, 64);
    CHECK_EQ(c.n_layers, 4);
    CHECK_EQ(c.sliding_window, 128);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
    CHECK_NEAR(c.rope_theta, 150000, 0);
    CHECK_EQ(c.yarn, 0);
    CHECK_EQ(c.eos_token_id, -1);
    CHECK_NEAR(c.swiglu_limit, 7.0, 0);
    CHECK_NEAR(c.swiglu_alpha, 1.702, 1e-6);
    /* layer_types default: sliding on even layers */
    CHECK(c.layer_sliding[0] == 1 && c.layer_sliding[1] == 0 && c.layer_sliding[2] == 1 &&
          c.layer_sliding[3] == 0);
    moecl_config_free(&c);

    REQUIRE(parse_cfg(", \"layer_types\": [\"full_attention\", \"full_attention\", "
                      "\"sliding_attention\", \"full_attention\"], \"eos_token_id\": [7, 9], "
                      "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 32.0, "
                      "\"beta_fast\": 16, \"original_max_position_embeddings\": 2048, "
                      "\"truncate\": false}, \"swiglu_limit\": 3.0",
                      &c) == MOECL_OK);
    CHECK(c.layer_sliding[0] == 0 && c.layer_sliding[2] == 1);
    CHECK_EQ(c.eos_token_id, 7);
    CHECK_EQ(c.yarn, 1);
    CHECK_NEAR(c.rope_factor, 32, 0);
    CHECK_NEAR(c.beta_fast, 16, 0);
    CHECK_NEAR(c.beta_slow, 1, 0);
    CHECK_EQ(c.original_max_pos, 2048);
    CHECK_NEAR(c.swiglu_limit, 7.0, 0); /* mlx-lm hard-codes it */
    moecl_config_free(&c);

    /* rope_parameters only: plain RoPE, as mlx-lm's gpt_oss computes it, flagged */
    REQUIRE(parse_cfg(", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 32.0, "
                      "\"rope_theta\": 150000}",
                      &c) == MOECL_OK);
    CHECK_EQ(c.yarn, 0);
    CHECK_EQ(c.rope_parameters_ignored, 1);
    moecl_config_free(&c);
    /* num_experts / experts_per_token aliases */
    const char *alias = "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, "
                        "\"intermediate_size\": 64, \"num_hidden_layers\": 1, "
                        "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": "
                        "16, \"vocab_size\": 128, \"num_experts\": 8, \"experts_per_token\": 3}";
    REQUIRE(moecl_config_parse("c", alias, strlen(alias), &c) == MOECL_OK);
    CHECK_EQ(c.n_experts, 8);
    CHECK_EQ(c.n_experts_per_tok, 3);
    moecl_config_free(&c);
}

static void expect_cfg_error(const char *json, enum moecl_status want, const char *needle) {
    struct moecl_config c;
    CHECK_EQ(moecl_config_parse("cfg/config.json", json, strlen(json), &c), want);
    CHECK_STR_CONTAINS(moecl_last_error(), "cfg/config.json");
    CHECK_STR_CONTAINS(moecl_last_error(), needle);
    CHECK(c.layer_sliding == NULL);
}

TEST(loader_config_bad) {
    char buf[2048];
    expect_cfg_error("{\"model_type\": ", MOECL_ERR_FORMAT, "not valid JSON");
    expect_cfg_error("{\"hidden_size\": 64}", MOECL_ERR_NOT_FOUND, "'model_type'");
    expect_cfg_error("{\"model_type\": \"llama\"}", MOECL_ERR_UNSUPPORTED, "gpt_oss");
    const char *missing = "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, "
                          "\"intermediate_size\": 64, \"num_hidden_layers\": 1, "
                          "\"num_attention_heads\": 4, \"head_dim\": 16}";
    expect_cfg_error(missing, MOECL_ERR_NOT_FOUND, "'num_key_value_heads' is missing");
    /* impossible sizes */
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 0, \"num_key_value_heads\": 2, "
             "\"head_dim\": 16, \"vocab_size\": 128, \"num_local_experts\": 4, "
             "\"num_experts_per_tok\": 2}");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "'num_attention_heads' = 0");
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 6, \"num_key_value_heads\": 4, "
             "\"head_dim\": 16, \"vocab_size\": 128, \"num_local_experts\": 4, "
             "\"num_experts_per_tok\": 2}");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "num_attention_heads (6) is not a multiple");
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
             "\"head_dim\": 16, \"vocab_size\": 1e12, \"num_local_experts\": 4, "
             "\"num_experts_per_tok\": 2}");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "'vocab_size'");
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"gpt_oss\", \"hidden_size\": 64, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
             "\"head_dim\": 16, \"vocab_size\": 128, \"num_local_experts\": 4, "
             "\"num_experts_per_tok\": 5}");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "num_experts_per_tok (5) exceeds");
    snprintf(buf, sizeof buf, BASE_CFG, ", \"layer_types\": [\"full_attention\"]");
    expect_cfg_error(buf, MOECL_ERR_FORMAT, "'layer_types'");
    snprintf(buf, sizeof buf, BASE_CFG,
             ", \"layer_types\": [\"full_attention\", \"local\", \"full_attention\", "
             "\"full_attention\"]");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "'layer_types[1]'");
    snprintf(buf, sizeof buf, BASE_CFG, ", \"rope_scaling\": {\"rope_type\": \"yarn\"}");
    expect_cfg_error(buf, MOECL_ERR_NOT_FOUND, "'rope_scaling.factor'");
    snprintf(buf, sizeof buf, BASE_CFG, ", \"rope_scaling\": {\"rope_type\": \"llama3\"}");
    expect_cfg_error(buf, MOECL_ERR_UNSUPPORTED, "'rope_scaling.rope_type'");
    expect_cfg_error("{\"model_type\": \"gpt_oss\", \"hidden_size\": \"64\"}", MOECL_ERR_FORMAT,
                     "'hidden_size' is not a number");
}

/* ------------------------------------------------------------------ quantization map */

static enum moecl_status parse_q(const char *json, struct moecl_qconfig *q) {
    return moecl_qconfig_parse("q/config.json", json, strlen(json), q);
}

TEST(loader_quant_decisions) {
    struct moecl_qconfig q;
    struct moecl_qspec s;
    /* top-level mxfp4; override without mode => affine; null group => the mode default */
    REQUIRE(parse_q("{\"quantization\": {\"group_size\": 32, \"bits\": 4, \"mode\": \"mxfp4\", "
                    "\"model.layers.0.mlp.router\": {\"group_size\": 64, \"bits\": 8}, "
                    "\"model.layers.0.self_attn.v_proj\": {\"group_size\": null, \"bits\": 6, "
                    "\"mode\": \"affine\"}, "
                    "\"model.layers.1.mlp.router\": {\"bits\": null, \"group_size\": null}, "
                    "\"lm_head\": false, \"model.embed_tokens\": true}}",
                    &q) == MOECL_OK);
    CHECK_EQ(q.top.mode, MOECL_QMODE_MXFP4);
    REQUIRE(moecl_qconfig_decide(&q, "model.layers.0.mlp.router", 0, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_AFFINE);
    CHECK_EQ(s.bits, 8);
    CHECK_EQ(s.group_size, 64);
    REQUIRE(moecl_qconfig_decide(&q, "model.layers.0.self_attn.v_proj", 1, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_AFFINE);
    CHECK_EQ(s.bits, 6);
    CHECK_EQ(s.group_size, 64);
    REQUIRE(moecl_qconfig_decide(&q, "model.layers.1.mlp.router", 1, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_AFFINE);
    CHECK_EQ(s.bits, 4);
    CHECK_EQ(s.group_size, 64);
    /* false => float even when scales exist (the loader then rejects the stray scales) */
    REQUIRE(moecl_qconfig_decide(&q, "lm_head", 1, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_NONE);
    /* true => top-level settings even without scales */
    REQUIRE(moecl_qconfig_decide(&q, "model.embed_tokens", 0, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_MXFP4);
    CHECK_EQ(s.group_size, 32);
    /* no entry: top-level iff <path>.scales exists */
    REQUIRE(moecl_qconfig_decide(&q, "model.layers.0.mlp.experts.gate_proj", 1, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_MXFP4);
    REQUIRE(moecl_qconfig_decide(&q, "model.layers.0.mlp.experts.gate_proj", 0, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_NONE);
    moecl_qconfig_free(&q);

    /* quantization without mode (mlx-lm <= 0.26) => affine; quantization_config copy */
    REQUIRE(parse_q("{\"quantization_config\": {\"group_size\": 64, \"bits\": 4}}", &q) ==
            MOECL_OK);
    CHECK_EQ(q.top.mode, MOECL_QMODE_AFFINE);
    CHECK_EQ(q.top.bits, 4);
    moecl_qconfig_free(&q);
    /* "quantization" wins over "quantization_config" */
    REQUIRE(parse_q("{\"quantization\": {\"group_size\": 32, \"bits\": 5}, "
                    "\"quantization_config\": {\"quant_method\": \"mxfp4\"}}",
                    &q) == MOECL_OK);
    CHECK_EQ(q.top.bits, 5);
    moecl_qconfig_free(&q);
    /* HF quant_method mxfp4 => mxfp4 g32 b4, modules_to_not_convert ignored */
    REQUIRE(parse_q("{\"quantization_config\": {\"quant_method\": \"mxfp4\", "
                    "\"modules_to_not_convert\": [\"lm_head\"]}}",
                    &q) == MOECL_OK);
    CHECK(q.present);
    CHECK_EQ(q.top.mode, MOECL_QMODE_MXFP4);
    CHECK_EQ(q.top.group_size, 32);
    CHECK_EQ(q.top.bits, 4);
    moecl_qconfig_free(&q);
    /* no record: scales without a record is an error naming the tensor */
    REQUIRE(parse_q("{}", &q) == MOECL_OK);
    CHECK(!q.present);
    REQUIRE(moecl_qconfig_decide(&q, "lm_head", 0, &s) == MOECL_OK);
    CHECK_EQ(s.mode, MOECL_QMODE_NONE);
    CHECK_EQ(moecl_qconfig_decide(&q, "lm_head", 1, &s), MOECL_ERR_FORMAT);
    CHECK_STR_CONTAINS(moecl_last_error(), "lm_head.scales");
    moecl_qconfig_free(&q);
    /* every supported (mode, group, bits) */
    const int bits[] = {2, 3, 4, 5, 6, 8}, groups[] = {32, 64, 128};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++) {
            char buf[256];
            snprintf(buf, sizeof buf, "{\"quantization\": {\"group_size\": %d, \"bits\": %d}}",
                     groups[j], bits[i]);
            CHECK_EQ(parse_q(buf, &q), MOECL_OK);
            moecl_qconfig_free(&q);
        }
    const char *fp[] = {"{\"quantization\": {\"mode\": \"mxfp8\"}}",
                        "{\"quantization\": {\"mode\": \"nvfp4\", \"group_size\": 16}}"};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(parse_q(fp[i], &q), MOECL_OK);
        moecl_qconfig_free(&q);
    }
}

static void expect_q_error(const char *json, enum moecl_status want, const char *needle) {
    struct moecl_qconfig q;
    CHECK_EQ(parse_q(json, &q), want);
    CHECK_STR_CONTAINS(moecl_last_error(), "q/config.json");
    CHECK_STR_CONTAINS(moecl_last_error(), needle);
}

TEST(loader_quant_bad) {
    expect_q_error("{\"quantization\": {\"group_size\": 64, \"bits\": 4, \"mode\": \"int4\"}}",
                   MOECL_ERR_UNSUPPORTED, "unknown mode 'int4'");
    expect_q_error("{\"quantization\": {\"group_size\": 64, \"bits\": 7}}", MOECL_ERR_UNSUPPORTED,
                   "affine bits 7 not supported");
    expect_q_error("{\"quantization\": {\"group_size\": 48, \"bits\": 4}}", MOECL_ERR_UNSUPPORTED,
                   "affine group_size 48");
    expect_q_error("{\"quantization\": {\"group_size\": 64, \"bits\": 4, "
                   "\"model.layers.3.mlp.router\": {\"bits\": 1}}}",
                   MOECL_ERR_UNSUPPORTED, "'model.layers.3.mlp.router': affine bits 1");
    expect_q_error("{\"quantization\": {\"group_size\": 64, \"bits\": 4, \"mode\": \"mxfp4\"}}",
                   MOECL_ERR_UNSUPPORTED, "mxfp4 group_size 64 not supported");
    expect_q_error("{\"quantization\": {\"mode\": \"nvfp4\", \"group_size\": 16, \"bits\": 8}}",
                   MOECL_ERR_UNSUPPORTED, "nvfp4 bits 8");
    expect_q_error("{\"quantization_config\": {\"quant_method\": \"awq\"}}", MOECL_ERR_UNSUPPORTED,
                   "'awq'");
    expect_q_error("{\"quantization\": 4}", MOECL_ERR_FORMAT, "'quantization'");
    expect_q_error("{\"quantization\": {\"bits\": \"4\"}}", MOECL_ERR_FORMAT, "'bits'");
}
