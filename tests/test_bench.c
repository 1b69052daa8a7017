/* `moecl bench` and the speed API (moecl.h "speed"): bytes per token against the checkpoint's
 * own accounting, per-op-class profiling counts against the forward pass's structure, and the
 * command's JSON output and option errors. */
#include "test.h"

#include "moecl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *fixture(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

/* The bytes one token reads, against moecl_inspect's per-class bytes of the same checkpoint:
 * lm_head and every attention/router weight whole, one embedding row, k/E of the experts (their
 * additive biases are in the inspect's norms+biases class: E * (2I + H) per layer, bf16). */
TEST(bench_bytes_per_token_matches_inspect) {
    const char *dir = fixture("affine_b4_g64");
    struct moecl_ckpt_summary s;
    REQUIRE(moecl_inspect(dir, 0, NULL, &s) == MOECL_OK);
    struct moecl_model *m = NULL;
    REQUIRE(moecl_model_load(dir, NULL, &m) == MOECL_OK);
    struct moecl_token_bytes tb;
    REQUIRE(moecl_model_bytes_per_token(m, &tb) == MOECL_OK);
    /* the fixture: 4 layers, hidden 64, intermediate 64, 8 experts, top-4, vocab 384 */
    const uint64_t L = 4, H = 64, I = 64, E = 8, K = 4, V = 384;
    CHECK_EQ(tb.lm_head, s.class_bytes[MOECL_CLASS_LM_HEAD]);
    CHECK_EQ(tb.embed * V, s.class_bytes[MOECL_CLASS_EMBEDDING]);
    uint64_t expert_bias = L * E * (2 * I + H) * 2;
    CHECK_EQ(tb.experts * E, (s.class_bytes[MOECL_CLASS_EXPERTS] + expert_bias) * K);
    CHECK_EQ(tb.total, tb.attn + tb.router + tb.experts + tb.embed + tb.lm_head + tb.norms);
    /* multiply-adds: q,k,v,o and router per layer from the config, experts k of E */
    CHECK(tb.macs_layers > 0);
    CHECK_EQ(tb.macs_lm_head, V * H);
    /* one device reads everything */
    CHECK_EQ(tb.n_devices, 1);
    CHECK_EQ(tb.device_bytes[0], tb.total);
    moecl_model_release(m);
    /* attention on pocl:0, experts on pocl:1: the experts' bytes are read on pocl:1 */
    struct moecl_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.place = "all=pocl:0,experts=pocl:1";
    m = NULL;
    REQUIRE(moecl_model_load(dir, &mo, &m) == MOECL_OK);
    struct moecl_token_bytes ts;
    REQUIRE(moecl_model_bytes_per_token(m, &ts) == MOECL_OK);
    CHECK_EQ(ts.total, tb.total);
    CHECK_EQ(ts.n_devices, 2);
    CHECK_EQ(ts.device_index[0], 0);
    CHECK_EQ(ts.device_index[1], 1);
    CHECK_EQ(ts.device_bytes[1], tb.experts);
    CHECK_EQ(ts.device_bytes[0] + ts.device_bytes[1], tb.total);
    moecl_model_release(m);
    struct moecl_token_bytes z;
    CHECK_EQ(moecl_model_bytes_per_token(NULL, &z), MOECL_ERR_INVALID_ARG);
}

/* Profiling: off by default (INVALID_ARG naming the switch); on, one decode step launches
 * per layer 4 attention products, 2 norms, router product + top-k, 3 expert products, one
 * SwiGLU, one residual add and one combine, then the final norm and lm_head; every class with
 * launches has time. Reset zeroes the totals. */
TEST(bench_profile_counts_launches_per_class) {
    struct moecl_model *m = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), NULL, &m) == MOECL_OK);
    struct moecl_context *c = NULL;
    REQUIRE(moecl_context_create(m, 16, NULL, &c) == MOECL_OK);
    struct moecl_profile p;
    CHECK_EQ(moecl_context_profile(c, &p), MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "profil");
    REQUIRE(moecl_context_set_profile(c, 1) == MOECL_OK);
    int32_t tok[3] = {5, 17, 200};
    REQUIRE(moecl_context_eval(c, tok, 3) == MOECL_OK); /* one prefill step */
    REQUIRE(moecl_context_eval(c, tok, 1) == MOECL_OK); /* one decode step */
    REQUIRE(moecl_context_profile(c, &p) == MOECL_OK);
    const uint64_t L = 4, steps = 2;
    CHECK_EQ(p.launches[MOECL_OPC_EMBED], steps);
    CHECK_EQ(p.launches[MOECL_OPC_NORM], steps * (2 * L + 1));
    CHECK_EQ(p.launches[MOECL_OPC_ATTN_PROJ], steps * 4 * L);
    CHECK_EQ(p.launches[MOECL_OPC_ROPE], steps * L); /* queries and keys in one launch */
    CHECK_EQ(p.launches[MOECL_OPC_ATTENTION], steps * 2 * L);
    CHECK_EQ(p.launches[MOECL_OPC_ROUTER], steps * 2 * L);
    CHECK_EQ(p.launches[MOECL_OPC_EXPERTS], steps * 3 * L);
    CHECK_EQ(p.launches[MOECL_OPC_SWIGLU], steps * L);
    CHECK_EQ(p.launches[MOECL_OPC_COMBINE], steps * 2 * L);
    CHECK_EQ(p.launches[MOECL_OPC_LM_HEAD], steps);
    for (int k = 0; k < MOECL_OPC_COUNT; k++)
        CHECK(p.seconds[k] > 0);
    moecl_context_profile_reset(c);
    REQUIRE(moecl_context_profile(c, &p) == MOECL_OK);
    CHECK_EQ(p.launches[MOECL_OPC_EXPERTS], 0);
    CHECK(p.seconds[MOECL_OPC_EXPERTS] == 0);
    CHECK(strcmp(moecl_op_class_id(MOECL_OPC_EXPERTS), "experts") == 0);
    CHECK(strcmp(moecl_op_class_id(MOECL_OPC_COUNT), "?") == 0);
    REQUIRE(moecl_context_set_profile(c, 0) == MOECL_OK);
    CHECK_EQ(moecl_context_profile(c, &p), MOECL_ERR_INVALID_ARG);
    moecl_context_release(c);
    moecl_model_release(m);
}

/* The command end to end on the built-in default model (cached in test-cache next to the
 * binary, as the generate tests do): JSON with both tests, their samples, the probes, the bound
 * fraction and the profile. */
TEST(bench_command_json) {
    char cmd[8192], *out = NULL, cache[3072];
    const char *bin = moecl_test_bin();
    const char *slash = strrchr(bin, '/');
    snprintf(cache, sizeof cache, "%.*s/test-cache", slash ? (int)(slash - bin) : 1,
             slash ? bin : ".");
    snprintf(cmd, sizeof cmd,
             "XDG_CACHE_HOME='%s' '%s' bench -p 8 -n 3 -r 2 --profile --json --device 0 "
             "2>/dev/null",
             cache, bin);
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "\"test\": \"pp8\", \"n_prompt\": 8, \"n_gen\": 0");
    CHECK_STR_CONTAINS(out, "\"test\": \"tg3\", \"n_prompt\": 0, \"n_gen\": 3");
    CHECK_STR_CONTAINS(out, "\"read_bw_gbs_median\": ");
    CHECK_STR_CONTAINS(out, "\"fp32_gflops_median\": ");
    CHECK_STR_CONTAINS(out, "\"fraction_of_bandwidth_bound\": ");
    CHECK_STR_CONTAINS(out, "\"fraction_of_fma_peak\": ");
    CHECK_STR_CONTAINS(out, "\"profile_ms_per_token\": {\"embed\": ");
    CHECK_STR_CONTAINS(out, "\"bytes_per_token\": {\"attn\": ");
    CHECK_STR_CONTAINS(out, "\"numerics\": \"exact\"");
    /* two samples per test */
    const char *sm = out ? strstr(out, "\"samples_ts\": [") : NULL;
    CHECK(sm != NULL);
    if (sm) {
        const char *end = strchr(sm, ']');
        int commas = 0;
        for (const char *q = sm; end && q < end; q++)
            commas += *q == ',';
        CHECK_EQ(commas, 1);
    }
    free(out);
}

/* Bad options: a clear message naming the option, exit status 2, no crash. */
TEST(bench_command_bad_options) {
    static const char *const cases[][2] = {
        {"-p abc", "-p: expected"},
        {"-n 5,x", "-n: expected"},
        {"-p 99999999", "-p: expected"},
        {"-r 0", "-r: expected an integer in [1, 1000]"},
        {"--profile", "--profile needs a model"},
        {"--bogus", "unknown option '--bogus'"},
        {"-p", "-p needs a value"},
        {"--numerics fastest", "--numerics: expected exact or fast, got 'fastest'"},
        {"--numerics", "--numerics needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[4096], *out = NULL;
        snprintf(cmd, sizeof cmd, "'%s' bench %s", moecl_test_bin(), cases[i][0]);
        int rc = moecl_test_run(cmd, &out);
        CHECK_EQ(rc, 2);
        CHECK_STR_CONTAINS(out, cases[i][1]);
        free(out);
    }
}

/* --mlock: every mapped shard is locked (the bytes are the files' sizes); NULL is refused. */
TEST(bench_lock_weights) {
    uint64_t locked = 1;
    CHECK_EQ(moecl_model_lock_weights(NULL, &locked), MOECL_ERR_INVALID_ARG);
    CHECK_EQ(locked, 0);
    const char *dir = fixture("affine_b4_g64");
    struct moecl_model *m = NULL;
    REQUIRE(moecl_model_load(dir, NULL, &m) == MOECL_OK);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    REQUIRE(stat(path, &sb) == 0);
    CHECK_EQ(moecl_model_lock_weights(m, &locked), MOECL_OK);
    CHECK_EQ(locked, (uint64_t)sb.st_size);
    moecl_model_release(m);
}
