/* tools/mkmodel end to end: runs the binary ($MOECL_MKMODEL, default build/mkmodel) for tiny
 * configurations of every preset and checks the written files against the spec (names, dtypes,
 * shapes of gpt-oss-mlx-format.md §1.2, §1.4, §5.1; config records of §4.1), the shard limit,
 * determinism, and the bits-per-weight arithmetic of the seed cards at full size. */
#include "test.h"

#include "checkpoint.h"
#include "mkmodel_read.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tiny: hidden 192, intermediate 192, 4 q heads / 2 kv heads x 64, 8 experts, vocab 512 */
#define TINY "--tiny --layers 2 --vocab 512 --quiet --no-tokenizer"

static const char *mkmodel_bin(void) {
    const char *b = getenv("MOECL_MKMODEL");
    return b && *b ? b : "build/mkmodel";
}

/* Runs mkmodel with `args` into a fresh folder; returns the folder (free + rmtree) or NULL. */
static char *run_mkmodel(const char *args, int *rc_out, char **output_out) {
    char *dir = moecl_test_tmpdir("mkmodel");
    if (!dir)
        return NULL;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s --out %s/m %s", mkmodel_bin(), dir, args);
    char *out = NULL;
    int rc = moecl_test_run(cmd, &out);
    if (rc_out)
        *rc_out = rc;
    if (output_out)
        *output_out = out;
    else {
        if (rc != 0)
            fprintf(stderr, "%s\n%s\n", cmd, out ? out : "");
        free(out);
    }
    return dir;
}

static char *file_in(const char *dir, const char *name) {
    static char p[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/m/%s", dir, name);
    return p[k];
}

static cJSON *load_json(const char *dir, const char *name) {
    char *s = moecl_test_slurp(file_in(dir, name), NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Checks one tensor's dtype and shape; dims terminated by -1. */
static void expect(const struct tst_file *f, const char *name, const char *dtype, ...) {
    const struct tst_tensor *t = tst_st_find(f, name);
    if (!t) {
        moecl_test_fail(__FILE__, __LINE__, "tensor %s missing", name);
        return;
    }
    if (strcmp(t->dtype, dtype) != 0)
        moecl_test_fail(__FILE__, __LINE__, "%s: dtype %s, expected %s", name, t->dtype, dtype);
    va_list ap;
    va_start(ap, dtype);
    int d = 0;
    for (;; d++) {
        int v = va_arg(ap, int);
        if (v < 0)
            break;
        if (d >= t->n_dims || t->shape[d] != v) {
            moecl_test_fail(__FILE__, __LINE__, "%s: dim %d is %lld, expected %d", name, d,
                            d < t->n_dims ? (long long)t->shape[d] : -1LL, v);
            break;
        }
    }
    va_end(ap);
    if (d != t->n_dims && !moecl_test_failed())
        moecl_test_fail(__FILE__, __LINE__, "%s: %d dims, expected %d", name, t->n_dims, d);
}

static int read_single(const char *dir, struct tst_file *f) {
    char err[512];
    if (tst_st_read(file_in(dir, "model.safetensors"), f, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int qint(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static const char *qstr(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ------------------------------------------------------------------ layouts */

TEST(mkmodel_mlx4bit_layout) {
    int rc;
    char *dir = run_mkmodel(TINY " --like mlx-4bit", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    CHECK(strcmp(f.format, "mlx") == 0);
    CHECK_EQ(f.n, 2 * 3 + 1 + 2 * (2 + 4 * 4 + 1 + 4 + 3 * 4)); /* 847 at full size */
    expect(&f, "model.embed_tokens.weight", "U32", 512, 24, -1);
    expect(&f, "model.embed_tokens.scales", "BF16", 512, 3, -1);
    expect(&f, "model.embed_tokens.biases", "BF16", 512, 3, -1);
    CHECK(tst_st_find(&f, "model.embed_tokens.bias") == NULL);
    expect(&f, "model.layers.1.input_layernorm.weight", "BF16", 192, -1);
    expect(&f, "model.layers.1.post_attention_layernorm.weight", "BF16", 192, -1);
    expect(&f, "model.layers.0.self_attn.q_proj.weight", "U32", 256, 24, -1);
    expect(&f, "model.layers.0.self_attn.q_proj.scales", "BF16", 256, 3, -1);
    expect(&f, "model.layers.0.self_attn.q_proj.bias", "BF16", 256, -1);
    expect(&f, "model.layers.0.self_attn.k_proj.weight", "U32", 128, 24, -1);
    expect(&f, "model.layers.0.self_attn.v_proj.biases", "BF16", 128, 3, -1);
    expect(&f, "model.layers.0.self_attn.o_proj.weight", "U32", 192, 32, -1);
    expect(&f, "model.layers.0.self_attn.o_proj.scales", "BF16", 192, 4, -1);
    expect(&f, "model.layers.0.self_attn.sinks", "BF16", 4, -1);
    expect(&f, "model.layers.1.mlp.router.weight", "U32", 8, 48, -1); /* 8-bit */
    expect(&f, "model.layers.1.mlp.router.scales", "BF16", 8, 3, -1);
    expect(&f, "model.layers.1.mlp.router.bias", "BF16", 8, -1);
    expect(&f, "model.layers.1.mlp.experts.gate_proj.weight", "U32", 8, 192, 24, -1);
    expect(&f, "model.layers.1.mlp.experts.up_proj.biases", "BF16", 8, 192, 3, -1);
    expect(&f, "model.layers.1.mlp.experts.down_proj.bias", "BF16", 8, 192, -1);
    expect(&f, "model.norm.weight", "BF16", 192, -1);
    expect(&f, "lm_head.weight", "U32", 512, 24, -1);
    expect(&f, "lm_head.scales", "BF16", 512, 3, -1);
    CHECK(tst_st_find(&f, "lm_head.bias") == NULL);

    /* config: quantization as mlx-lm writes it, quantization_config an identical copy */
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    CHECK(strcmp(qstr(c, "model_type"), "gpt_oss") == 0);
    CHECK_EQ(qint(c, "hidden_size"), 192);
    CHECK_EQ(qint(c, "num_hidden_layers"), 2);
    CHECK_EQ(qint(c, "num_local_experts"), 8);
    CHECK_EQ(qint(c, "num_experts_per_tok"), 4);
    CHECK_EQ(qint(c, "vocab_size"), 512);
    CHECK_EQ(qint(c, "sliding_window"), 8);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    cJSON *qc = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
    REQUIRE(q && qc);
    CHECK(cJSON_Compare(q, qc, 1));
    CHECK_EQ(qint(q, "group_size"), 64);
    CHECK_EQ(qint(q, "bits"), 4);
    CHECK(strcmp(qstr(q, "mode"), "affine") == 0);
    cJSON *r = cJSON_GetObjectItemCaseSensitive(q, "model.layers.1.mlp.router");
    REQUIRE(r);
    CHECK_EQ(qint(r, "bits"), 8);
    CHECK_EQ(qint(r, "group_size"), 64);
    CHECK(cJSON_GetObjectItemCaseSensitive(r, "mode") == NULL); /* predicate dict: no mode */
    CHECK_EQ(cJSON_GetArraySize(q), 3 + 2);
    cJSON *rsc = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    CHECK(rsc && strcmp(qstr(rsc, "rope_type"), "yarn") == 0);
    cJSON *lt = cJSON_GetObjectItemCaseSensitive(c, "layer_types");
    CHECK(lt && cJSON_GetArraySize(lt) == 2 &&
          !strcmp(cJSON_GetArrayItem(lt, 0)->valuestring, "sliding_attention"));
    cJSON_Delete(c);

    /* index: every tensor, sorted, total_size = data bytes */
    cJSON *ix = load_json(dir, "model.safetensors.index.json");
    REQUIRE(ix);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(ix, "metadata");
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(ix, "weight_map");
    REQUIRE(md && wm);
    uint64_t data = 0;
    for (int i = 0; i < f.n; i++)
        data += f.t[i].end - f.t[i].begin;
    CHECK_EQ((uint64_t)cJSON_GetObjectItemCaseSensitive(md, "total_size")->valuedouble, data);
    CHECK(cJSON_GetObjectItemCaseSensitive(md, "total_parameters") != NULL);
    CHECK_EQ(cJSON_GetArraySize(wm), f.n);
    const char *prev = "";
    for (cJSON *e = wm->child; e; e = e->next) {
        CHECK(strcmp(prev, e->string) < 0);
        CHECK(strcmp(e->valuestring, "model.safetensors") == 0);
        CHECK(tst_st_find(&f, e->string) != NULL);
        prev = e->string;
    }
    cJSON_Delete(ix);

    cJSON *g = load_json(dir, "generation_config.json");
    REQUIRE(g);
    cJSON *eos = cJSON_GetObjectItemCaseSensitive(g, "eos_token_id");
    REQUIRE(cJSON_IsArray(eos) && cJSON_GetArraySize(eos) == 3);
    CHECK_EQ(cJSON_GetArrayItem(eos, 0)->valueint, 200002);
    CHECK_EQ(cJSON_GetArrayItem(eos, 1)->valueint, 199999);
    CHECK_EQ(cJSON_GetArrayItem(eos, 2)->valueint, 200012);
    CHECK_EQ(qint(g, "bos_token_id"), 199998);
    CHECK_EQ(qint(g, "pad_token_id"), 199999);
    cJSON_Delete(g);

    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_5bit_gs32_layout) {
    int rc;
    char *dir = run_mkmodel(TINY " --like mlx-5bit-gs32", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    expect(&f, "model.embed_tokens.weight", "U32", 512, 30, -1);
    expect(&f, "model.embed_tokens.scales", "F16", 512, 6, -1);
    expect(&f, "model.layers.0.self_attn.o_proj.weight", "U32", 192, 40, -1);
    expect(&f, "model.layers.0.self_attn.o_proj.biases", "F16", 192, 8, -1);
    expect(&f, "model.layers.0.mlp.experts.down_proj.weight", "U32", 8, 192, 30, -1);
    /* the router stays FP16 (card), with no scales and no config entry */
    expect(&f, "model.layers.0.mlp.router.weight", "F16", 8, 192, -1);
    CHECK(tst_st_find(&f, "model.layers.0.mlp.router.scales") == NULL);
    expect(&f, "model.layers.0.input_layernorm.weight", "F16", 192, -1);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    REQUIRE(q);
    CHECK_EQ(qint(q, "bits"), 5);
    CHECK_EQ(qint(q, "group_size"), 32);
    CHECK_EQ(cJSON_GetArraySize(q), 3);
    cJSON_Delete(c);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_6bit_and_uniform_modes) {
    static const struct {
        const char *args;
        const char *w_dtype, *s_dtype;
        int w_cols, s_cols, has_biases;
    } cases[] = {
        {"--like mlx-6bit", "U32", "BF16", 36, 3, 1},
        {"--mode affine --bits 3 --group 32", "U32", "BF16", 18, 6, 1},
        {"--mode affine --bits 2 --group 64 --dtype f32", "U32", "F32", 12, 3, 1},
        {"--mode mxfp8", "U32", "U8", 48, 6, 0},
        {"--mode nvfp4", "U32", "U8", 24, 12, 0},
        {"--mode mxfp4", "U32", "U8", 24, 6, 0},
        {"--mode none", "BF16", NULL, 192, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, TINY " %s", cases[i].args);
        int rc;
        char *dir = run_mkmodel(args, &rc, NULL);
        REQUIRE(dir);
        CHECK_EQ(rc, 0);
        struct tst_file f;
        if (rc == 0 && read_single(dir, &f) == 0) {
            expect(&f, "model.layers.1.mlp.experts.gate_proj.weight", cases[i].w_dtype, 8, 192,
                   cases[i].w_cols, -1);
            if (cases[i].s_dtype)
                expect(&f, "model.layers.1.mlp.experts.gate_proj.scales", cases[i].s_dtype, 8, 192,
                       cases[i].s_cols, -1);
            else
                CHECK(tst_st_find(&f, "model.layers.1.mlp.experts.gate_proj.scales") == NULL);
            CHECK((tst_st_find(&f, "model.layers.1.mlp.experts.gate_proj.biases") != NULL) ==
                  cases[i].has_biases);
            cJSON *c = load_json(dir, "config.json");
            CHECK(c && (cJSON_GetObjectItemCaseSensitive(c, "quantization") != NULL) ==
                           (cases[i].s_dtype != NULL));
            cJSON_Delete(c);
            tst_st_free(&f);
        }
        moecl_test_rmtree(dir);
        free(dir);
    }
}

/* Group 128 does not divide hidden 192: those modules stay float, as mlx-lm leaves them. */
TEST(mkmodel_group128_leaves_float) {
    int rc;
    char *dir =
        run_mkmodel(TINY " --hidden 256 --intermediate 192 --mode affine --group 128", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    expect(&f, "model.layers.0.self_attn.q_proj.weight", "U32", 256, 32, -1);
    expect(&f, "model.layers.0.self_attn.q_proj.scales", "BF16", 256, 2, -1);
    expect(&f, "model.layers.0.mlp.experts.down_proj.weight", "BF16", 8, 256, 192, -1);
    CHECK(tst_st_find(&f, "model.layers.0.mlp.experts.down_proj.scales") == NULL);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_optiq_layout) {
    int rc;
    char *dir = run_mkmodel("--tiny --layers 24 --hidden 64 --intermediate 64 --heads 2 "
                            "--kv-heads 1 --experts 4 --vocab 256 --quiet --like optiq-4bit",
                            &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    REQUIRE(q);
    /* every quantized module has an explicit entry with a mode: 2 + 24 x 8 */
    CHECK_EQ(cJSON_GetArraySize(q), 3 + 2 + 24 * 8);
    int n4 = 0, n8 = 0; /* units the card counts: q/k/v/o, experts per layer, lm_head */
    for (cJSON *e = q->child; e; e = e->next) {
        if (!cJSON_IsObject(e))
            continue;
        CHECK(qstr(e, "mode") && !strcmp(qstr(e, "mode"), "affine"));
        int b = qint(e, "bits");
        CHECK(b == 4 || b == 8);
        const char *k = e->string;
        if (strstr(k, "router") || strstr(k, "embed") || strstr(k, "up_proj") ||
            strstr(k, "down_proj"))
            continue;
        if (b == 4)
            n4++;
        else
            n8++;
    }
    CHECK_EQ(n4, 33);
    CHECK_EQ(n8, 88);
    cJSON_Delete(c);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    expect(&f, "model.layers.12.self_attn.q_proj.weight", "U32", 128, 8, -1); /* 4-bit */
    expect(&f, "model.layers.0.self_attn.q_proj.weight", "U32", 128, 16, -1); /* 8-bit */
    expect(&f, "model.layers.23.mlp.experts.up_proj.weight", "U32", 4, 64, 16, -1);
    expect(&f, "model.layers.5.mlp.experts.up_proj.weight", "U32", 4, 64, 8, -1);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

/* mlx-lm's mixed_4_6 (spec §4.2): 6 bits for v_proj and down_proj of layers
 * {0,1,2,5,8,11,14,17,20,21,22,23} of 24 and for lm_head, 4 bits elsewhere, all with entries. */
TEST(mkmodel_mixed_layout) {
    int rc;
    char *dir = run_mkmodel("--tiny --layers 24 --hidden 64 --intermediate 64 --heads 2 "
                            "--kv-heads 1 --experts 4 --vocab 256 --quiet --no-tokenizer "
                            "--like mixed-4-6",
                            &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    REQUIRE(q);
    CHECK_EQ(cJSON_GetArraySize(q), 3 + 2 + 24 * 8);
    static const int more[24] = {1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1,
                                 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1};
    for (int l = 0; l < 24; l++) {
        char k[96];
        snprintf(k, sizeof k, "model.layers.%d.self_attn.v_proj", l);
        CHECK_EQ(qint(cJSON_GetObjectItemCaseSensitive(q, k), "bits"), more[l] ? 6 : 4);
        snprintf(k, sizeof k, "model.layers.%d.mlp.experts.down_proj", l);
        CHECK_EQ(qint(cJSON_GetObjectItemCaseSensitive(q, k), "bits"), more[l] ? 6 : 4);
        snprintf(k, sizeof k, "model.layers.%d.mlp.experts.up_proj", l);
        CHECK_EQ(qint(cJSON_GetObjectItemCaseSensitive(q, k), "bits"), 4);
        snprintf(k, sizeof k, "model.layers.%d.mlp.router", l);
        cJSON *r = cJSON_GetObjectItemCaseSensitive(q, k);
        CHECK(r && qint(r, "bits") == 4 && qstr(r, "mode") && !strcmp(qstr(r, "mode"), "affine"));
    }
    CHECK_EQ(qint(cJSON_GetObjectItemCaseSensitive(q, "lm_head"), "bits"), 6);
    CHECK_EQ(qint(cJSON_GetObjectItemCaseSensitive(q, "model.embed_tokens"), "bits"), 4);
    cJSON_Delete(c);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    expect(&f, "model.layers.5.mlp.experts.down_proj.weight", "U32", 4, 64, 12, -1);
    expect(&f, "model.layers.6.mlp.experts.down_proj.weight", "U32", 4, 64, 8, -1);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_mxfp4_layout) {
    int rc;
    char *dir = run_mkmodel(TINY " --like mxfp4", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    expect(&f, "model.layers.0.mlp.experts.gate_proj.weight", "U32", 8, 192, 24, -1);
    expect(&f, "model.layers.0.mlp.experts.gate_proj.scales", "U8", 8, 192, 6, -1);
    expect(&f, "model.layers.0.mlp.experts.gate_proj.bias", "BF16", 8, 192, -1);
    CHECK(tst_st_find(&f, "model.layers.0.mlp.experts.gate_proj.biases") == NULL);
    expect(&f, "model.layers.0.self_attn.q_proj.weight", "U32", 256, 48, -1); /* 8-bit */
    expect(&f, "model.layers.0.self_attn.q_proj.biases", "BF16", 256, 3, -1);
    expect(&f, "model.embed_tokens.weight", "U32", 512, 48, -1);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
    REQUIRE(q);
    CHECK(!strcmp(qstr(q, "mode"), "mxfp4"));
    CHECK_EQ(qint(q, "group_size"), 32);
    CHECK_EQ(qint(q, "bits"), 4);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(q, "model.layers.0.self_attn.q_proj");
    CHECK(e && qint(e, "bits") == 8 && qint(e, "group_size") == 64 &&
          !strcmp(qstr(e, "mode"), "affine"));
    CHECK(cJSON_GetObjectItemCaseSensitive(q, "lm_head") != NULL);
    CHECK(cJSON_GetObjectItemCaseSensitive(q, "model.embed_tokens") != NULL);
    CHECK(cJSON_GetObjectItemCaseSensitive(q, "model.layers.0.mlp.experts.gate_proj") == NULL);
    e = cJSON_GetObjectItemCaseSensitive(q, "model.layers.1.mlp.router");
    CHECK(e && qint(e, "bits") == 8 && !cJSON_GetObjectItemCaseSensitive(e, "mode"));
    cJSON_Delete(c);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_hf_mxfp4_layout) {
    int rc;
    char *dir = run_mkmodel(TINY " --like hf-mxfp4", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    CHECK(strcmp(f.format, "pt") == 0);
    CHECK_EQ(f.n, 3 + 2 * 19); /* 459 at full size */
    expect(&f, "model.layers.1.mlp.experts.gate_up_proj_blocks", "U8", 8, 384, 6, 16, -1);
    expect(&f, "model.layers.1.mlp.experts.gate_up_proj_scales", "U8", 8, 384, 6, -1);
    expect(&f, "model.layers.1.mlp.experts.gate_up_proj_bias", "BF16", 8, 384, -1);
    expect(&f, "model.layers.1.mlp.experts.down_proj_blocks", "U8", 8, 192, 6, 16, -1);
    expect(&f, "model.layers.1.mlp.experts.down_proj_scales", "U8", 8, 192, 6, -1);
    expect(&f, "model.layers.1.mlp.experts.down_proj_bias", "BF16", 8, 192, -1);
    expect(&f, "model.layers.1.mlp.router.weight", "BF16", 8, 192, -1);
    expect(&f, "model.layers.1.self_attn.q_proj.weight", "BF16", 256, 192, -1);
    expect(&f, "model.embed_tokens.weight", "BF16", 512, 192, -1);
    expect(&f, "lm_head.weight", "BF16", 512, 192, -1);
    CHECK(tst_st_find(&f, "model.layers.1.mlp.experts.gate_proj.weight") == NULL);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    CHECK(cJSON_GetObjectItemCaseSensitive(c, "quantization") == NULL);
    cJSON *qc = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
    REQUIRE(qc);
    CHECK(!strcmp(qstr(qc, "quant_method"), "mxfp4"));
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(qc, "modules_to_not_convert")), 4);
    cJSON_Delete(c);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_hf_bf16_layout) {
    int rc;
    char *dir = run_mkmodel(TINY " --intermediate 128 --like hf-bf16", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    /* input-major, gate/up interleaved on the last axis */
    expect(&f, "model.layers.0.mlp.experts.gate_up_proj", "BF16", 8, 192, 256, -1);
    expect(&f, "model.layers.0.mlp.experts.gate_up_proj_bias", "BF16", 8, 256, -1);
    expect(&f, "model.layers.0.mlp.experts.down_proj", "BF16", 8, 128, 192, -1);
    expect(&f, "model.layers.0.mlp.experts.down_proj_bias", "BF16", 8, 192, -1);
    CHECK(tst_st_find(&f, "model.layers.0.mlp.experts.gate_up_proj_blocks") == NULL);
    cJSON *c = load_json(dir, "config.json");
    REQUIRE(c);
    CHECK(cJSON_GetObjectItemCaseSensitive(c, "quantization") == NULL);
    CHECK(cJSON_GetObjectItemCaseSensitive(c, "quantization_config") == NULL);
    CHECK_EQ(qint(c, "intermediate_size"), 128);
    cJSON_Delete(c);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ values */

static double bf16_to_double(const unsigned char *p) {
    uint32_t u = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Every 4-bit code occurs, scales/biases are finite and non-zero, dequantized weights have a
 * standard deviation near 1/sqrt(fan_in) and a mean near zero. */
TEST(mkmodel_codes_cover_range) {
    int rc;
    char *dir = run_mkmodel(TINY " --like mlx-4bit", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    struct tst_file f;
    REQUIRE(read_single(dir, &f) == 0);
    const char *path = file_in(dir, "model.safetensors");
    const struct tst_tensor *w = tst_st_find(&f, "model.layers.0.mlp.experts.down_proj.weight");
    const struct tst_tensor *s = tst_st_find(&f, "model.layers.0.mlp.experts.down_proj.scales");
    const struct tst_tensor *b = tst_st_find(&f, "model.layers.0.mlp.experts.down_proj.biases");
    REQUIRE(w && s && b);
    size_t nw = w->end - w->begin, ns = s->end - s->begin;
    unsigned char *wd = malloc(nw), *sd = malloc(ns), *bd = malloc(ns);
    REQUIRE(wd && sd && bd);
    REQUIRE(tst_read_at(path, w->begin, wd, nw) == 0);
    REQUIRE(tst_read_at(path, s->begin, sd, ns) == 0);
    REQUIRE(tst_read_at(path, b->begin, bd, ns) == 0);
    long hist[16] = {0};
    double sum = 0, sum2 = 0;
    size_t n = nw * 2, n_neg = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned q = (wd[i / 2] >> (4 * (i % 2))) & 15; /* LSB first */
        hist[q]++;
        size_t g = i / 64;
        double sc = bf16_to_double(sd + 2 * g), bi = bf16_to_double(bd + 2 * g);
        if (i % 64 == 0) {
            CHECK(isfinite(sc) && isfinite(bi) && sc != 0);
            n_neg += sc < 0;
        }
        double v = sc * q + bi;
        sum += v;
        sum2 += v * v;
    }
    for (int q = 0; q < 16; q++)
        CHECK(hist[q] > (long)(n / 16 * 0.9));
    double mean = sum / n, sd2 = sqrt(sum2 / n - mean * mean), target = 1.0 / sqrt(192.0);
    CHECK_NEAR(mean, 0.0, 0.1 * target);
    CHECK_NEAR(sd2, target, 0.2 * target);
    CHECK(n_neg > 0 && n_neg < n / 64); /* both signs of scale occur */
    free(wd);
    free(sd);
    free(bd);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ shards, determinism */

TEST(mkmodel_shard_limit) {
    int rc;
    const uint64_t limit = 300000;
    char *dir = run_mkmodel(TINY " --max-shard-bytes 300000", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    CHECK(access(file_in(dir, "model.safetensors"), F_OK) != 0);
    cJSON *ix = load_json(dir, "model.safetensors.index.json");
    REQUIRE(ix);
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(ix, "weight_map");
    REQUIRE(wm);
    /* how many shards: read the name of the first one */
    const char *first = wm->child->valuestring;
    int n_shards = atoi(strstr(first, "-of-") + 4);
    CHECK(n_shards > 2);
    int n_tensors = 0;
    for (int s = 1; s <= n_shards; s++) {
        char name[64], err[512];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s, n_shards);
        struct tst_file f;
        int r = tst_st_read(file_in(dir, name), &f, err, sizeof err);
        if (r != 0)
            fprintf(stderr, "%s\n", err);
        REQUIRE(r == 0);
        uint64_t data = f.file_bytes - 8 - f.header_bytes;
        /* within the limit, unless one tensor alone is larger */
        CHECK(data <= limit || f.n == 1);
        for (int i = 0; i < f.n; i++) {
            cJSON *e = cJSON_GetObjectItemCaseSensitive(wm, f.t[i].name);
            CHECK(e && !strcmp(e->valuestring, name));
        }
        n_tensors += f.n;
        tst_st_free(&f);
    }
    CHECK_EQ(n_tensors, cJSON_GetArraySize(wm));
    char name[64];
    snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", n_shards + 1, n_shards);
    CHECK(access(file_in(dir, name), F_OK) != 0);
    cJSON_Delete(ix);
    moecl_test_rmtree(dir);
    free(dir);
}

static int files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = moecl_test_slurp(a, &na), *y = moecl_test_slurp(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

TEST(mkmodel_deterministic) {
    static const char *presets[] = {"mlx-4bit", "mlx-5bit-gs32", "optiq-4bit",
                                    "mxfp4",    "hf-mxfp4",      "hf-bf16"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char a[256], b[256];
        snprintf(a, sizeof a, TINY " --like %s --seed 7", presets[i]);
        snprintf(b, sizeof b, TINY " --like %s --seed 8", presets[i]);
        char *d1 = run_mkmodel(a, NULL, NULL), *d2 = run_mkmodel(a, NULL, NULL);
        char *d3 = run_mkmodel(b, NULL, NULL);
        REQUIRE(d1 && d2 && d3);
        const char *files[] = {"model.safetensors", "config.json", "model.safetensors.index.json",
                               "generation_config.json"};
        for (int k = 0; k < 4; k++) {
            char p1[4096], p2[4096], p3[4096];
            snprintf(p1, sizeof p1, "%s", file_in(d1, files[k]));
            snprintf(p2, sizeof p2, "%s", file_in(d2, files[k]));
            snprintf(p3, sizeof p3, "%s", file_in(d3, files[k]));
            CHECK(files_equal(p1, p2));
            /* a different seed changes the weights only */
            CHECK(files_equal(p1, p3) == (k != 0));
        }
        moecl_test_rmtree(d1);
        moecl_test_rmtree(d2);
        moecl_test_rmtree(d3);
        free(d1);
        free(d2);
        free(d3);
    }
}

/* ------------------------------------------------------------------ arithmetic, errors */

static double dry_value(const char *args, const char *key) {
    int rc;
    char *out = NULL;
    char *dir = run_mkmodel(args, &rc, &out);
    double v = -1;
    if (dir && rc == 0 && out) {
        const char *p = strstr(out, key);
        if (p)
            v = atof(p + strlen(key));
    }
    free(out);
    if (dir) {
        moecl_test_rmtree(dir);
        free(dir);
    }
    return v;
}

/* The seed cards' numbers at full size (no data written). */
TEST(mkmodel_full_size_card_numbers) {
    double b4 = dry_value("--full --like mlx-4bit --dry-run", "bits_per_weight ");
    CHECK_NEAR(b4, 4.504, 0.0005);
    double b6 = dry_value("--full --like mlx-6bit --dry-run", "bits_per_weight ");
    CHECK_NEAR(b6, 6.503, 0.0005);
    double t5 = dry_value("--full --like mlx-5bit-gs32 --dry-run", "total_bytes ");
    CHECK_NEAR(t5 / 15.76e9, 1.0, 0.02);
    double bq = dry_value("--full --like optiq-4bit --dry-run", "bits_per_weight ");
    CHECK_NEAR(bq, 5.03, 0.03);
    CHECK_EQ(dry_value("--full --like hf-mxfp4 --dry-run", "tensors "), 459);
    CHECK_EQ(dry_value("--full --like mlx-4bit --dry-run", "shards "), 3);
}

TEST(mkmodel_bad_arguments) {
    int rc;
    char *out = NULL;
    char *dir = run_mkmodel("--like mlx-7bit", &rc, &out);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(out, "mlx-7bit");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
    dir = run_mkmodel("--mode affine --bits 7", &rc, &out);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(out, "7 bits");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
    dir = run_mkmodel("--like mixed-5-6", &rc, &out);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(out, "mixed-5-6");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
    dir = run_mkmodel("--heads 3 --kv-heads 2", &rc, &out);
    CHECK(rc != 0);
    free(out);
    moecl_test_rmtree(dir);
    free(dir);

    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --tiny --vocab 64 --quiet --out /nonexistent-moecl/a/b",
             mkmodel_bin());
    rc = moecl_test_run(cmd, &out);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(out, "/nonexistent-moecl/a/b");
    free(out);
}

/* ------------------------------------------------------------------ through the loader */

/* Every preset's output opens with loader/ (moecl_ckpt_open) with the modes mkmodel meant. */
TEST(mkmodel_loader_opens_every_preset) {
    static const struct {
        const char *args;
        enum moecl_ckpt_layout layout;
        enum moecl_qmode expert_mode, q_mode, router_mode;
        int expert_bits, q_bits;
        enum moecl_dtype act;
    } cases[] = {
        {"--like mlx-4bit", MOECL_LAYOUT_MLX, MOECL_QMODE_AFFINE, MOECL_QMODE_AFFINE,
         MOECL_QMODE_AFFINE, 4, 4, MOECL_DTYPE_BF16},
        {"--like mlx-5bit-gs32", MOECL_LAYOUT_MLX, MOECL_QMODE_AFFINE, MOECL_QMODE_AFFINE,
         MOECL_QMODE_NONE, 5, 5, MOECL_DTYPE_F16},
        {"--like mlx-6bit", MOECL_LAYOUT_MLX, MOECL_QMODE_AFFINE, MOECL_QMODE_AFFINE,
         MOECL_QMODE_AFFINE, 6, 6, MOECL_DTYPE_BF16},
        {"--like optiq-4bit", MOECL_LAYOUT_MLX, MOECL_QMODE_AFFINE, MOECL_QMODE_AFFINE,
         MOECL_QMODE_AFFINE, 8, 4, MOECL_DTYPE_BF16}, /* 2 layers: layer 0 has 8-bit experts
                                                       * and is the one 4-bit q layer */
        {"--like mxfp4", MOECL_LAYOUT_MLX, MOECL_QMODE_MXFP4, MOECL_QMODE_AFFINE,
         MOECL_QMODE_AFFINE, 4, 8, MOECL_DTYPE_BF16},
        {"--like hf-mxfp4", MOECL_LAYOUT_HF_MXFP4, MOECL_QMODE_MXFP4, MOECL_QMODE_NONE,
         MOECL_QMODE_NONE, 4, 16, MOECL_DTYPE_BF16},
        {"--like hf-bf16", MOECL_LAYOUT_HF_BF16, MOECL_QMODE_NONE, MOECL_QMODE_NONE,
         MOECL_QMODE_NONE, 16, 16, MOECL_DTYPE_BF16},
        {"--mode nvfp4", MOECL_LAYOUT_MLX, MOECL_QMODE_NVFP4, MOECL_QMODE_NVFP4, MOECL_QMODE_AFFINE,
         4, 4, MOECL_DTYPE_BF16},
        {"--mode mxfp8", MOECL_LAYOUT_MLX, MOECL_QMODE_MXFP8, MOECL_QMODE_MXFP8, MOECL_QMODE_AFFINE,
         8, 8, MOECL_DTYPE_BF16},
        {"--mode none --dtype f32", MOECL_LAYOUT_MLX, MOECL_QMODE_NONE, MOECL_QMODE_NONE,
         MOECL_QMODE_NONE, 32, 32, MOECL_DTYPE_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[256];
        snprintf(args, sizeof args, TINY " %s", cases[i].args);
        int rc;
        char *dir = run_mkmodel(args, &rc, NULL);
        REQUIRE(dir);
        CHECK_EQ(rc, 0);
        char path[4096];
        snprintf(path, sizeof path, "%s/m", dir);
        struct moecl_ckpt *c = NULL;
        enum moecl_status st = moecl_ckpt_open(path, &c);
        if (st != MOECL_OK)
            fprintf(stderr, "%s: %s\n", cases[i].args, moecl_last_error());
        CHECK_EQ(st, MOECL_OK);
        if (c) {
            CHECK_EQ(c->layout, cases[i].layout);
            CHECK_EQ(c->config.hidden_size, 192);
            CHECK_EQ(c->config.n_layers, 2);
            CHECK_EQ(c->config.n_experts, 8);
            CHECK_EQ(c->config.vocab_size, 512);
            CHECK_EQ(c->config.sliding_window, 8);
            CHECK_EQ(c->act_dtype, cases[i].act);
            const struct moecl_layer *l = &c->layers[0];
            CHECK_EQ(l->gate.mode, cases[i].expert_mode);
            CHECK_EQ(l->down.mode, cases[i].expert_mode);
            CHECK_EQ(l->gate.bits, cases[i].expert_bits);
            CHECK_EQ(l->q.mode, cases[i].q_mode);
            CHECK_EQ(l->q.bits, cases[i].q_bits);
            CHECK_EQ(l->router.mode, cases[i].router_mode);
            CHECK_EQ(l->gate.n_experts, 8);
            CHECK_EQ(l->gate.rows, 192);
            CHECK_EQ(l->gate.cols, 192);
            CHECK(l->gate.bias != NULL && l->q.bias != NULL && l->router.bias != NULL);
            moecl_ckpt_close(c);
        }
        moecl_test_rmtree(dir);
        free(dir);
    }
}

/* tokenizer.json comes from the o200k rank file through loader/tokenizer_json.c. */
TEST(mkmodel_writes_tokenizer) {
    if (access("data/o200k_base.tiktoken", R_OK) != 0)
        SKIP("data/o200k_base.tiktoken not found (run from the repository root)");
    int rc;
    char *dir = run_mkmodel("--tiny --layers 1 --vocab 256 --quiet", &rc, NULL);
    REQUIRE(dir);
    REQUIRE(rc == 0);
    cJSON *t = load_json(dir, "tokenizer.json");
    REQUIRE(t);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(t, "model");
    CHECK(model && !strcmp(qstr(model, "type"), "BPE"));
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "vocab")), 199998);
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "added_tokens")), 21);
    cJSON_Delete(t);
    cJSON *tc = load_json(dir, "tokenizer_config.json");
    REQUIRE(tc);
    CHECK(!strcmp(qstr(tc, "eos_token"), "<|return|>"));
    CHECK(!strcmp(qstr(tc, "tokenizer_class"), "PreTrainedTokenizerFast"));
    cJSON_Delete(tc);
    moecl_test_rmtree(dir);
    free(dir);
    /* an explicit rank file that does not exist is an error */
    char *out = NULL;
    dir = run_mkmodel("--tiny --layers 1 --vocab 256 --quiet --tiktoken /nonexistent.tiktoken", &rc,
                      &out);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(out, "/nonexistent.tiktoken");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}
