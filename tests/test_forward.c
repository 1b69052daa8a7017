/* The model/context API on a fixture checkpoint:
 * eval/reset determinism, decode == prefill, argument errors, max_kv_size rotation. */
#include "test.h"

#include "model_internal.h"
#include "moecl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fixture(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

static float max_abs_diff(const float *a, const float *b, int n) {
    float m = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > m)
            m = fabsf(a[i] - b[i]);
    return m;
}

TEST(forward_context_api) {
    struct moecl_model *model = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), NULL, &model) == MOECL_OK);
    int V = moecl_model_vocab_size(model);
    CHECK(V > 0);
    CHECK(moecl_model_device(model) != NULL);
    struct moecl_context *c = NULL;
    struct moecl_context_options o = {4, 0, 0, MOECL_KV_F32, 0};
    REQUIRE(moecl_context_create(model, 16, &o, &c) == MOECL_OK);
    CHECK(moecl_context_logits(c) == NULL);
    int32_t toks[10] = {1, 5, 9, 100, 7, 3, 2, 8, 11, 12};
    REQUIRE(moecl_context_eval(c, toks, 10) == MOECL_OK);
    CHECK_EQ(moecl_context_n_past(c), 10);
    float *first = malloc((size_t)V * sizeof(float));
    memcpy(first, moecl_context_logits(c), (size_t)V * sizeof(float));
    /* reset + decode token by token gives the same last logits (bit-identical here) */
    moecl_context_reset(c);
    CHECK_EQ(moecl_context_n_past(c), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE(moecl_context_eval(c, toks + i, 1) == MOECL_OK);
    CHECK(max_abs_diff(first, moecl_context_logits(c), V) == 0.0f);
    /* errors leave the context usable and say why */
    int32_t bad = V;
    CHECK(moecl_context_eval(c, &bad, 1) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_context_last_error(c), "outside the vocabulary");
    CHECK_EQ(moecl_context_n_past(c), 10);
    CHECK(moecl_context_eval(c, toks, 7) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_context_last_error(c), "exceed the context length");
    float *all = malloc((size_t)V * sizeof(float));
    CHECK(moecl_context_eval_all(c, toks, 1, all) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_context_eval(c, toks, 6) == MOECL_OK);
    CHECK_EQ(moecl_context_n_past(c), 16);
    moecl_context_release(c);

    /* max_kv_size: full layers keep a ring; the context runs past n_ctx, and while the
     * sequence fits the ring the logits equal the unbounded context's */
    struct moecl_context_options r = {3, 12, 0, MOECL_KV_F32, 0};
    REQUIRE(moecl_context_create(model, 8, &r, &c) == MOECL_OK);
    REQUIRE(moecl_context_eval(c, toks, 10) == MOECL_OK);
    CHECK(max_abs_diff(first, moecl_context_logits(c), V) == 0.0f);
    REQUIRE(moecl_context_eval(c, toks, 10) == MOECL_OK);
    CHECK_EQ(moecl_context_n_past(c), 20);
    moecl_context_release(c);

    CHECK(moecl_context_create(model, 0, NULL, &c) == MOECL_ERR_INVALID_ARG);
    CHECK(c == NULL);
    free(first);
    free(all);
    moecl_model_release(model);
}

TEST(forward_model_load_errors) {
    struct moecl_model *model = NULL;
    CHECK(moecl_model_load("/nonexistent/moecl-model", NULL, &model) != MOECL_OK);
    CHECK(model == NULL);
    CHECK_STR_CONTAINS(moecl_last_error(), "/nonexistent/moecl-model");
    struct moecl_model_options o = {"no-such-device", 0, NULL, 0, MOECL_NUMERICS_DEFAULT};
    CHECK(moecl_model_load(fixture("bf16"), &o, &model) == MOECL_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(moecl_last_error(), "no-such-device");
    CHECK(model == NULL);
    /* numerics: a bad $MOECL_NUMERICS is named; the option overrides it; fast numerics and
     * MLX CPU rounding exclude each other */
    struct moecl_model_options d = {NULL, 0, NULL, 0, MOECL_NUMERICS_DEFAULT};
    setenv("MOECL_NUMERICS", "quick", 1);
    CHECK(moecl_model_load(fixture("bf16"), &d, &model) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "$MOECL_NUMERICS: expected exact or fast, got 'quick'");
    CHECK(model == NULL);
    setenv("MOECL_NUMERICS", "fast", 1);
    REQUIRE(moecl_model_load(fixture("bf16"), &d, &model) == MOECL_OK);
    CHECK(!strcmp(moecl_model_numerics(model), "fast"));
    moecl_model_release(model);
    model = NULL;
    d.numerics = MOECL_NUMERICS_EXACT;
    REQUIRE(moecl_model_load(fixture("bf16"), &d, &model) == MOECL_OK);
    CHECK(!strcmp(moecl_model_numerics(model), "exact"));
    moecl_model_release(model);
    model = NULL;
    unsetenv("MOECL_NUMERICS");
    struct moecl_model_options r = {NULL, 1, NULL, 0, MOECL_NUMERICS_FAST};
    CHECK(moecl_model_load(fixture("bf16"), &r, &model) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "exclude each other");
    CHECK(model == NULL);
}

/* moecl eval end to end: prefill and --decode print the same top-5 for the fixture. */
TEST(forward_cli_eval) {
    char cmd[8192], *out1 = NULL, *out2 = NULL;
    snprintf(cmd, sizeof cmd, "%s eval -m %s --tokens 1,5,9,100,7", moecl_test_bin(),
             fixture("affine_b4_g64"));
    CHECK_EQ(moecl_test_run(cmd, &out1), 0);
    CHECK_STR_CONTAINS(out1, "tokens/s");
    snprintf(cmd, sizeof cmd, "%s eval -m %s --tokens 1,5,9,100,7 --decode", moecl_test_bin(),
             fixture("affine_b4_g64"));
    CHECK_EQ(moecl_test_run(cmd, &out2), 0);
    /* the five "rank token logit" lines are identical */
    const char *a = out1 ? strstr(out1, "  1 ") : NULL, *b = out2 ? strstr(out2, "  1 ") : NULL;
    const char *ae = a ? strstr(a, "load ") : NULL, *be = b ? strstr(b, "load ") : NULL;
    CHECK(a && b && ae && be && ae - a == be - b && memcmp(a, b, (size_t)(ae - a)) == 0);
    free(out1);
    free(out2);
    snprintf(cmd, sizeof cmd, "%s eval -m %s --tokens 1,x", moecl_test_bin(),
             fixture("affine_b4_g64"));
    CHECK_EQ(moecl_test_run(cmd, &out1), 2);
    free(out1);
}

/* Logits after each step of a 5-token prefill, then decoding tokens[5..T) one at a time, in
 * fast numerics on a context of n_ctx T with options o, the environment variable `env` set to
 * "0" (NULL: none) and the GPU decomposition forced on CPUs ($MOECL_FAST_LANES=1); launches[]
 * the rope and attention-class (attention, KV append) launches of the decode steps; malloc'd
 * ([T - 4][V]). */
static float *decode_fast(const char *dir, const struct moecl_context_options *o, const char *env,
                          const int32_t *tokens, int T, uint64_t launches[2], int *V_out) {
    const char *lanes = getenv("MOECL_FAST_LANES");
    char *saved = lanes ? strdup(lanes) : NULL;
    setenv("MOECL_FAST_LANES", "1", 1);
    if (env)
        setenv(env, "0", 1);
    struct moecl_model *model = NULL;
    struct moecl_context *c = NULL;
    struct moecl_model_options mf = {NULL, 0, NULL, 0, MOECL_NUMERICS_FAST};
    float *out = NULL;
    struct moecl_profile p;
    if (moecl_model_load(dir, &mf, &model) == MOECL_OK &&
        moecl_context_create(model, T, o, &c) == MOECL_OK &&
        moecl_context_set_profile(c, 1) == MOECL_OK) {
        int V = moecl_model_vocab_size(model);
        *V_out = V;
        out = malloc((size_t)(T - 4) * (size_t)V * sizeof(float));
        int ok = out != NULL;
        for (int t = 4; ok && t < T; t++) {
            if (t == 5)
                moecl_context_profile_reset(c);
            ok = moecl_context_eval(c, t == 4 ? tokens : tokens + t, t == 4 ? 5 : 1) == MOECL_OK;
            if (ok)
                memcpy(out + (size_t)(t - 4) * V, moecl_context_logits(c),
                       (size_t)V * sizeof(float));
            else
                printf("  decode: %s\n", moecl_context_last_error(c));
        }
        if (!ok) {
            free(out);
            out = NULL;
        }
        if (out && moecl_context_profile(c, &p) == MOECL_OK) {
            launches[0] = p.launches[MOECL_OPC_ROPE];
            launches[1] = p.launches[MOECL_OPC_ATTENTION];
        }
    } else {
        printf("  load: %s\n", moecl_last_error());
    }
    moecl_context_release(c);
    moecl_model_release(model);
    if (env)
        unsetenv(env);
    if (saved)
        setenv("MOECL_FAST_LANES", saved, 1);
    else
        unsetenv("MOECL_FAST_LANES");
    free(saved);
    return out;
}

/* GPU decode's RoPE and KV append inside the q/k/v launch (forced on CPUs with
 * $MOECL_FAST_LANES=1) give the logits of the separate launches bit for bit, against
 * $MOECL_QKV_KV=0 (the KV append launched apart) and $MOECL_QKV_ROPE=0 (both apart): mkmodel's
 * tiny 3-layer checkpoints in mlx-4bit (affine 4-bit q/k/v with biases) and mxfp4 (affine 8-bit
 * q/k/v), YaRN, sliding layers of 8 whose rings wrap; a float cache of n_ctx, and a half one
 * with max_kv_size 12 (full layers' rings wrap too); a prefill chunk first (its KV appended
 * apart). The fused launch needs 16-byte aligned weights, which the fixtures' are not and
 * mkmodel's are in some layers, depending on the device's buffer layout (on PoCL mlx-4bit's
 * sliding layers 0 and 2 and mxfp4's full layer 1; on an H100 two layers of each).
 * The launch counts show which path ran: per layer and decoded token, fused no rope launch and
 * one attention-class one, the KV append apart two, RoPE apart one and two. */
TEST(forward_decode_rope_fused_same_bits) {
    const char *mk = getenv("MOECL_MKMODEL");
    mk = mk && *mk ? mk : "build/mkmodel";
    if (access(mk, X_OK) != 0)
        SKIP("no mkmodel binary (make build/mkmodel, or $MOECL_MKMODEL)");
    static const char *const likes[2] = {"mlx-4bit", "mxfp4"};
    enum { T = 24 };
    int32_t tokens[T];
    uint64_t st = 17;
    for (int i = 0; i < T; i++)
        tokens[i] = (int32_t)(moecl_test_rand(&st) % 512);
    for (int mi = 0; mi < 2; mi++) {
        char *dir = moecl_test_tmpdir("rope-fused");
        REQUIRE(dir);
        char cmd[8192], *log = NULL;
        snprintf(cmd, sizeof cmd,
                 "'%s' --out '%s/m' --tiny --layers 3 --vocab 512 --quiet --no-tokenizer --like %s",
                 mk, dir, likes[mi]);
        CHECK_EQ(moecl_test_run(cmd, &log), 0);
        free(log);
        char mdir[4200];
        snprintf(mdir, sizeof mdir, "%s/m", dir);
        for (int ci = 0; ci < 2 - mi; ci++) {
            struct moecl_context_options o = {0, ci ? 12 : 0, 0, ci ? MOECL_KV_F16 : MOECL_KV_F32,
                                              0};
            static const char *const envs[3] = {NULL, "MOECL_QKV_KV", "MOECL_QKV_ROPE"};
            uint64_t nl[3][2] = {{0}};
            float *lg[3];
            int V = 0;
            for (int v = 0; v < 3; v++)
                lg[v] = decode_fast(mdir, &o, envs[v], tokens, T, nl[v], &V);
            CHECK(lg[0] && lg[1] && lg[2]);
            if (lg[0] && lg[1] && lg[2]) {
                size_t bytes = (size_t)(T - 4) * (size_t)V * sizeof(float);
                /* layers x decoded tokens (a rope launch each apart), and the fused layers x
                 * decoded tokens (the rope launches the fusion saved) */
                uint64_t LT = nl[2][0], FT = nl[2][0] - nl[0][0];
                printf("  %s, %s cache: %llu of %llu layers fused; rope/attention launches "
                       "fused %llu/%llu, KV append apart %llu/%llu, RoPE apart %llu/%llu\n",
                       likes[mi], ci ? "half, max_kv_size 12," : "float",
                       (unsigned long long)(FT / (T - 5)), (unsigned long long)(LT / (T - 5)),
                       (unsigned long long)nl[0][0], (unsigned long long)nl[0][1],
                       (unsigned long long)nl[1][0], (unsigned long long)nl[1][1],
                       (unsigned long long)nl[2][0], (unsigned long long)nl[2][1]);
                CHECK(LT > 0 && LT % (T - 5) == 0);
                CHECK(FT > 0 && FT % (T - 5) == 0); /* some layers' weights are aligned */
                CHECK_EQ(nl[0][1], 2 * LT - FT);
                CHECK_EQ(nl[1][0], nl[0][0]);
                CHECK_EQ(nl[1][1], 2 * LT);
                CHECK_EQ(nl[2][1], 2 * LT);
                CHECK(memcmp(lg[0], lg[2], bytes) == 0);
                CHECK(memcmp(lg[1], lg[2], bytes) == 0);
            }
            for (int v = 0; v < 3; v++)
                free(lg[v]);
        }
        moecl_test_rmtree(dir);
        free(dir);
    }
}
