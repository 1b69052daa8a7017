/* The model/context API on a fixture checkpoint:
 * eval/reset determinism, decode == prefill, argument errors, max_kv_size rotation. */
#include "test.h"

#include "model_internal.h"
#include "moecl.h"

#include <stdlib.h>
#include <string.h>

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
