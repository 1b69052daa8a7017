/* `moecl perplexity` end to end on the mlx-lm fixtures (tests/fixtures, or $MOECL_FIXTURES_DIR):
 * perplexity equal to mlx-lm's (the manifest's "perplexity" section, made by
 * tests/reference/mlx_perplexity.py) within 0.5%; KL of a run against its own saved logits is 0
 * with 100% same top token, against another checkpoint it is not; KL against the float32
 * checkpoint orders the affine quantizations 8 < 6 < 5 < 4 < 3 < 2 bits (the test prints the
 * table, with mlx-lm's KL beside moecl's); -f tokenizes like the tokenizer API; bad inputs get
 * clear errors. */
#include "test.h"

#include "moecl.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The manifest's "perplexity" section (NULL if missing; the caller deletes the root). */
static const cJSON *ppl_section(cJSON **root_out) {
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", moecl_test_fixtures_dir());
    char *text = moecl_test_slurp(path, NULL);
    *root_out = text ? cJSON_Parse(text) : NULL;
    free(text);
    return *root_out ? cJSON_GetObjectItemCaseSensitive(*root_out, "perplexity") : NULL;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Runs `moecl perplexity ARGS --no-progress`; output (stdout + stderr) in *out. */
static int perplexity(const char *args, char **out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' perplexity --no-progress %s", moecl_test_bin(), args);
    return moecl_test_run(cmd, out);
}

/* The number after `key` in s, NAN if absent. */
static double after(const char *s, const char *key) {
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static char *tokens_file(void) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/perplexity/tokens.txt", moecl_test_fixtures_dir());
    return path;
}

TEST(perplexity_matches_mlx_lm) {
    cJSON *root;
    const cJSON *sec = ppl_section(&root);
    const cJSON *list = sec ? cJSON_GetObjectItemCaseSensitive(sec, "ppl") : NULL;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 4) {
        moecl_test_fail(__FILE__, __LINE__,
                        "manifest.json has no perplexity section (make fixtures makes it)");
        cJSON_Delete(root);
        return;
    }
    printf("    %-14s %4s %6s %12s %12s %9s\n", "model", "ctx", "stride", "mlx-lm PPL", "moecl PPL",
           "rel diff");
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, list) {
        char args[8192], *out = NULL;
        int ctx = (int)num(e, "ctx"), stride = (int)num(e, "stride");
        snprintf(args, sizeof args, "-m '%s/%s' --tokens '%s' --ctx %d --stride %d",
                 moecl_test_fixtures_dir(), str(e, "model"), tokens_file(), ctx, stride);
        int rc = perplexity(args, &out);
        CHECK_EQ(rc, 0);
        double got = after(out, "perplexity: "), se = after(out, "perplexity: ");
        const char *pm = out ? strstr(out, "perplexity: ") : NULL;
        se = pm && strstr(pm, "+/- ") ? strtod(strstr(pm, "+/- ") + 4, NULL) : NAN;
        double want = num(e, "ppl"), want_se = num(e, "ppl_se");
        double rel = fabs(got / want - 1);
        printf("    %-14s %4d %6d %12.4f %12.4f %9.2e\n", str(e, "model"), ctx, stride, want, got,
               rel);
        if (!(rel <= 0.005))
            moecl_test_fail(__FILE__, __LINE__, "%s ctx %d stride %d: PPL %g vs mlx-lm %g",
                            str(e, "model"), ctx, stride, got, want);
        if (!(fabs(se / want_se - 1) <= 0.01))
            moecl_test_fail(__FILE__, __LINE__, "%s: standard error %g vs mlx-lm %g",
                            str(e, "model"), se, want_se);
        /* the scored count is mlx-lm's */
        CHECK_EQ((long)after(out, "windows, "), (long)num(e, "scored"));
        free(out);
        n++;
    }
    CHECK(n >= 4);
    cJSON_Delete(root);
}

TEST(perplexity_kl_self_and_other) {
    char *dir = moecl_test_tmpdir("ppl-kl");
    REQUIRE(dir);
    const char *kinds[] = {"", "--save-logits-full"};
    for (int full = 0; full < 2; full++) {
        char lp[1024], args[8192], *out = NULL;
        snprintf(lp, sizeof lp, "%s/f32%s.lp", dir, full ? "-full" : "");
        snprintf(args, sizeof args, "-m '%s/f32' --tokens '%s' --ctx 64 --save-logits '%s' %s",
                 moecl_test_fixtures_dir(), tokens_file(), lp, kinds[full]);
        CHECK_EQ(perplexity(args, &out), 0);
        CHECK_STR_CONTAINS(out, "saved: ");
        double ppl = after(out, "perplexity: ");
        free(out);
        /* the same checkpoint, tokens, window and stride taken from the file */
        snprintf(args, sizeof args, "-m '%s/f32' --kl-divergence '%s'", moecl_test_fixtures_dir(),
                 lp);
        CHECK_EQ(perplexity(args, &out), 0);
        CHECK_STR_CONTAINS(out, full ? "full rows: exact KL" : "top-32 rows");
        CHECK_NEAR(after(out, "mean KL:"), 0.0, 0);
        CHECK_NEAR(after(out, "max KL:"), 0.0, 0);
        CHECK_NEAR(after(out, "same top token:"), 100.0, 0);
        CHECK_NEAR(after(out, "PPL ratio:"), 1.0, 0);
        CHECK_NEAR(after(out, "reference PPL:"), ppl, 1e-3 * ppl);
        free(out);
        /* another checkpoint of the same weights */
        snprintf(args, sizeof args, "-m '%s/affine_b4_g64' --tokens '%s' --kl-divergence '%s'",
                 moecl_test_fixtures_dir(), tokens_file(), lp);
        CHECK_EQ(perplexity(args, &out), 0);
        CHECK(after(out, "mean KL:") > 0.1);
        CHECK(after(out, "median KL:") > 0.01);
        CHECK(after(out, "same top token:") < 90.0);
        CHECK(after(out, "PPL ratio:") > 1.5);
        free(out);
    }
    moecl_test_rmtree(dir);
    free(dir);
}

/* The comparison a user makes between placements and KV types: experts on the second device
 * and other batch sizes give the saved run's logits exactly (KL 0); token-by-token evaluation
 * adds a sliding layer's keys in mlx-lm's decode order (its rotated window), so a float32
 * model's logits move by rounding only (KL under 1e-6, same top token); an f16 KV cache, read
 * when positions come one at a time, moves them a little (0 < KL < 1e-3). */
TEST(perplexity_kl_placement_and_kv_type) {
    char *dir = moecl_test_tmpdir("ppl-place");
    REQUIRE(dir);
    char lp[1024], args[8192], *out = NULL;
    snprintf(lp, sizeof lp, "%s/ref.lp", dir);
    snprintf(args, sizeof args, "-m '%s/f32' --tokens '%s' --ctx 64 --save-logits '%s'",
             moecl_test_fixtures_dir(), tokens_file(), lp);
    REQUIRE(perplexity(args, &out) == 0);
    free(out);
    const char *same[] = {"--place experts=pocl:1", "--batch 5 --place attn=pocl:1"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        snprintf(args, sizeof args, "-m '%s/f32' --kl-divergence '%s' %s",
                 moecl_test_fixtures_dir(), lp, same[i]);
        CHECK_EQ(perplexity(args, &out), 0);
        if (!(after(out, "max KL:") == 0.0) || !(after(out, "same top token:") == 100.0))
            moecl_test_fail(__FILE__, __LINE__, "%s: max KL %g, same top %g%%", same[i],
                            after(out, "max KL:"), after(out, "same top token:"));
        free(out);
    }
    snprintf(args, sizeof args, "-m '%s/f32' --kl-divergence '%s' --batch 1",
             moecl_test_fixtures_dir(), lp);
    CHECK_EQ(perplexity(args, &out), 0);
    printf("    one token per step: max KL %g, same top %g%%\n", after(out, "max KL:"),
           after(out, "same top token:"));
    CHECK(after(out, "max KL:") < 1e-6);
    CHECK(after(out, "same top token:") == 100.0);
    free(out);
    snprintf(args, sizeof args, "-m '%s/f32' --kl-divergence '%s' --batch 1 --kv-type f16",
             moecl_test_fixtures_dir(), lp);
    CHECK_EQ(perplexity(args, &out), 0);
    double kl = after(out, "mean KL:");
    printf("    f16 KV cache, one token per step: mean KL %g, same top %g%%\n", kl,
           after(out, "same top token:"));
    CHECK(kl > 0 && kl < 1e-3);
    CHECK(after(out, "same top token:") >= 98.0);
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

/* KL(f32 || each fixture) with full rows; the table, mlx-lm's numbers beside. */
TEST(perplexity_kl_orders_quantizations) {
    cJSON *root;
    const cJSON *sec = ppl_section(&root);
    const cJSON *list = sec ? cJSON_GetObjectItemCaseSensitive(sec, "kl") : NULL;
    if (!cJSON_IsArray(list)) {
        moecl_test_fail(__FILE__, __LINE__, "manifest.json has no perplexity.kl list");
        cJSON_Delete(root);
        return;
    }
    char *dir = moecl_test_tmpdir("ppl-order");
    REQUIRE(dir);
    char lp[1024], args[8192], *out = NULL;
    snprintf(lp, sizeof lp, "%s/base.lp", dir);
    snprintf(args, sizeof args,
             "-m '%s/%s' --tokens '%s' --ctx %d --save-logits '%s' --save-logits-full",
             moecl_test_fixtures_dir(), str(sec, "kl_base"), tokens_file(), (int)num(sec, "kl_ctx"),
             lp);
    REQUIRE(perplexity(args, &out) == 0);
    free(out);
    printf("    KL(%s || recipe), window = stride = %d, full rows\n", str(sec, "kl_base"),
           (int)num(sec, "kl_ctx"));
    printf("    %-15s %10s %10s %10s %9s %8s | %10s %8s\n", "recipe", "mean KL", "median", "p99",
           "same top", "PPL", "mlx-lm KL", "same top");
    /* affine bits in decreasing order per group: their KL must increase */
    const int bits[] = {8, 6, 5, 4, 3, 2};
    double affine[2][6];
    for (int g = 0; g < 2; g++)
        for (int b = 0; b < 6; b++)
            affine[g][b] = NAN;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const char *name = str(e, "model");
        snprintf(args, sizeof args, "-m '%s/%s' --kl-divergence '%s'", moecl_test_fixtures_dir(),
                 name, lp);
        int rc = perplexity(args, &out);
        CHECK_EQ(rc, 0);
        double kl = after(out, "mean KL:"), same = after(out, "same top token:");
        printf("    %-15s %10.5g %10.4g %10.4g %8.2f%% %8.4g | %10.5g %7.2f%%\n", name, kl,
               after(out, "median KL:"), after(out, "p99 KL:"), same, after(out, "this PPL:"),
               num(e, "kl_mean"), 100 * num(e, "same_top"));
        /* the same KL as mlx-lm's logits give */
        if (!(fabs(kl - num(e, "kl_mean")) <= 0.01 * num(e, "kl_mean") + 1e-6))
            moecl_test_fail(__FILE__, __LINE__, "%s: mean KL %g vs mlx-lm's %g", name, kl,
                            num(e, "kl_mean"));
        if (!(fabs(same / 100 - num(e, "same_top")) <= 0.005))
            moecl_test_fail(__FILE__, __LINE__, "%s: same top %g%% vs mlx-lm's %g", name, same,
                            num(e, "same_top"));
        for (int g = 0; g < 2; g++)
            for (int b = 0; b < 6; b++) {
                char want[32];
                snprintf(want, sizeof want, "affine_b%d_g%d", bits[b], g ? 32 : 64);
                if (!strcmp(name, want))
                    affine[g][b] = kl;
            }
        free(out);
    }
    for (int g = 0; g < 2; g++)
        for (int b = 0; b < 6; b++) {
            if (isnan(affine[g][b]))
                moecl_test_fail(__FILE__, __LINE__, "no KL for affine_b%d_g%d", bits[b],
                                g ? 32 : 64);
            else if (b > 0 && !(affine[g][b] > affine[g][b - 1]))
                moecl_test_fail(__FILE__, __LINE__,
                                "group %d: KL of %d bits (%g) not above %d bits (%g)", g ? 32 : 64,
                                bits[b], affine[g][b], bits[b - 1], affine[g][b - 1]);
        }
    moecl_test_rmtree(dir);
    free(dir);
    cJSON_Delete(root);
}
/* -f TEXT is tokenized with the checkpoint's tokenizer.json, plain text, no BOS: the same
 * perplexity as the ids the tokenizer API gives, passed with --tokens. */
TEST(perplexity_text_file) {
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' '%s' generate -p hi --max-tokens 1",
             moecl_test_cache_dir(), moecl_test_bin());
    REQUIRE(moecl_test_run(cmd, &out) == 0);
    free(out);
    char model[3200];
    snprintf(model, sizeof model, "%s/moecl/default-model-v1", moecl_test_cache_dir());
    char *dir = moecl_test_tmpdir("ppl-text");
    REQUIRE(dir);
    char text_path[1024], ids_path[1024];
    snprintf(text_path, sizeof text_path, "%s/text.txt", dir);
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", dir);
    const char *text = "OpenCL runs kernels on many devices. <|start|> is plain text here, and "
                       "perplexity measures how surprised a model is by each next token.\n";
    REQUIRE(moecl_test_write_file(text_path, text, strlen(text)) == 0);
    struct moecl_tokenizer *tok = NULL;
    REQUIRE(moecl_tokenizer_load(model, &tok) == MOECL_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moecl_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n) == MOECL_OK);
    moecl_tokenizer_release(tok);
    REQUIRE(n >= 16);
    FILE *f = fopen(ids_path, "w");
    REQUIRE(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%d%s", ids[i], i + 1 < n ? "," : "\n");
    fclose(f);
    free(ids);
    char args[8192], *a = NULL, *b = NULL;
    snprintf(args, sizeof args, "-m '%s' -f '%s' --ctx 8 --stride 4", model, text_path);
    CHECK_EQ(perplexity(args, &a), 0);
    snprintf(args, sizeof args, "-m '%s' --tokens '%s' --ctx 8 --stride 4", model, ids_path);
    CHECK_EQ(perplexity(args, &b), 0);
    REQUIRE(a && b);
    char want[64];
    snprintf(want, sizeof want, "text: %zu tokens;", n);
    CHECK_STR_CONTAINS(a, want);
    const char *pa = strstr(a, "perplexity: "), *pb = strstr(b, "perplexity: ");
    REQUIRE(pa && pb);
    CHECK(strncmp(pa, pb, (size_t)(strchr(pa, '\n') - pa)) == 0);
    CHECK(isfinite(after(a, "perplexity: ")));
    free(a);
    free(b);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Each failure exits 1 with a message naming the file/option and the reason. */
TEST(perplexity_cli_errors) {
    char *dir = moecl_test_tmpdir("ppl-err");
    REQUIRE(dir);
    char p_tok[1024], p_lp[1024], p_bad[1024], args[8192], *out = NULL;
    snprintf(p_tok, sizeof p_tok, "%s/t.txt", dir);
    snprintf(p_lp, sizeof p_lp, "%s/ref.lp", dir);
    snprintf(p_bad, sizeof p_bad, "%s/bad.lp", dir);
    const char *m = moecl_test_fixtures_dir();

    struct {
        const char *tokens; /* written to t.txt */
        const char *extra;
        const char *msg;
    } cases[] = {
        {"1 2 3 999 4 5 6 7 8 9", "--ctx 4",
         "t.txt: token 999 at position 3 is outside the "
         "model's vocabulary (384)"},
        {"1 2 x3 4", "--ctx 2", "t.txt: byte 4: expected a token id"},
        {"1 2 3", "--ctx 4", "3 tokens, fewer than one window (--ctx 4)"},
        {"1 2 3 4 5 6", "--ctx 4 --stride 5", "--stride 5: must be between 1 and the window"},
        {"1 2 3 4 5 6", "--ctx 4 --save-logits /nonexistent-dir/x.lp",
         "/nonexistent-dir/x.lp.tmp: cannot create"},
        {"", "--ctx 4", "t.txt: no token ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        REQUIRE(moecl_test_write_file(p_tok, cases[i].tokens, strlen(cases[i].tokens)) == 0);
        snprintf(args, sizeof args, "-m '%s/f32' --tokens '%s' %s", m, p_tok, cases[i].extra);
        CHECK_EQ(perplexity(args, &out), 1);
        CHECK_STR_CONTAINS(out, cases[i].msg);
        free(out);
    }
    /* a checkpoint without tokenizer.json and -f */
    snprintf(args, sizeof args, "-m '%s/f32' -f '%s' --ctx 4", m, p_tok);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "needs --tokens");
    free(out);
    /* usage errors */
    snprintf(args, sizeof args, "-m '%s/f32'", m);
    CHECK_EQ(perplexity(args, &out), 2);
    CHECK_STR_CONTAINS(out, "give the text with -f TEXT or --tokens FILE");
    free(out);
    snprintf(args, sizeof args, "-m '%s/f32' --tokens '%s' --ctx 0", m, p_tok);
    CHECK_EQ(perplexity(args, &out), 2);
    CHECK_STR_CONTAINS(out, "--ctx: expected an integer");
    free(out);

    /* a reference saved for these tokens */
    const char *ids = "5 9 1 7 3 3 8 2 6 4 0 11 12 13 14 15";
    REQUIRE(moecl_test_write_file(p_tok, ids, strlen(ids)) == 0);
    snprintf(args, sizeof args, "-m '%s/f32' --tokens '%s' --ctx 8 --save-logits '%s'", m, p_tok,
             p_lp);
    REQUIRE(perplexity(args, &out) == 0);
    free(out);
    /* other tokens */
    const char *ids2 = "5 9 1 7 3 3 8 2 6 4 0 11 12 13 14 16";
    REQUIRE(moecl_test_write_file(p_tok, ids2, strlen(ids2)) == 0);
    snprintf(args, sizeof args, "-m '%s/bf16' --tokens '%s' --kl-divergence '%s'", m, p_tok, p_lp);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "ref.lp: saved for other tokens: position 15 is 15 there, 16 here");
    free(out);
    /* other window */
    snprintf(args, sizeof args, "-m '%s/bf16' --kl-divergence '%s' --ctx 8 --stride 4", m, p_lp);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "saved with --ctx 8 --stride 8; this run uses --ctx 8 --stride 4");
    free(out);
    /* truncated, wrong magic */
    size_t len = 0;
    char *data = moecl_test_slurp(p_lp, NULL);
    REQUIRE(data);
    FILE *f = fopen(p_lp, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fclose(f);
    REQUIRE(moecl_test_write_file(p_bad, data, len - 5) == 0);
    snprintf(args, sizeof args, "-m '%s/bf16' --kl-divergence '%s'", m, p_bad);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "bad.lp: truncated");
    free(out);
    memcpy(data, "NOTMOECL", 8);
    REQUIRE(moecl_test_write_file(p_bad, data, len) == 0);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "bad.lp: not a moecl logits file (wrong magic");
    free(out);
    free(data);
    /* another vocabulary: a file written for 100 ids */
    int32_t toks[16];
    for (int i = 0; i < 16; i++)
        toks[i] = i * 3;
    struct moecl_logits_writer *w = NULL;
    REQUIRE(moecl_logits_writer_create(p_bad, 100, toks, 16, 8, 8, 4, &w) == MOECL_OK);
    float row[100];
    for (int i = 0; i < 100; i++)
        row[i] = (float)(i % 7);
    for (int r = 0; r < 14; r++)
        REQUIRE(moecl_logits_writer_add(w, row) == MOECL_OK);
    REQUIRE(moecl_logits_writer_finish(w) == MOECL_OK);
    moecl_logits_writer_release(w);
    snprintf(args, sizeof args, "-m '%s/bf16' --kl-divergence '%s'", m, p_bad);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "bad.lp: saved with a vocabulary of 100 tokens; this model has 384");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

/* --save-top-k sets K: a top-1 file is 64 + 4 * tokens + 16 bytes per scored position, and
 * still compares a run with itself to exactly 0. */
TEST(perplexity_save_top_k) {
    char *dir = moecl_test_tmpdir("ppl-topk");
    REQUIRE(dir);
    char lp[1024], args[8192], *out = NULL;
    snprintf(lp, sizeof lp, "%s/k1.lp", dir);
    snprintf(args, sizeof args,
             "-m '%s/bf16' --tokens '%s' --ctx 64 --save-logits '%s' "
             "--save-top-k 1",
             moecl_test_fixtures_dir(), tokens_file(), lp);
    CHECK_EQ(perplexity(args, &out), 0);
    free(out);
    FILE *f = fopen(lp, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    CHECK_EQ(ftell(f), 64 + 4 * 512 + 16 * 504);
    fclose(f);
    snprintf(args, sizeof args, "-m '%s/bf16' --kl-divergence '%s'", moecl_test_fixtures_dir(), lp);
    CHECK_EQ(perplexity(args, &out), 0);
    CHECK_STR_CONTAINS(out, "top-1 rows");
    CHECK_NEAR(after(out, "max KL:"), 0.0, 0);
    free(out);
    snprintf(args, sizeof args,
             "-m '%s/bf16' --tokens '%s' --ctx 64 --save-logits '%s' "
             "--save-top-k 384",
             moecl_test_fixtures_dir(), tokens_file(), lp);
    CHECK_EQ(perplexity(args, &out), 1);
    CHECK_STR_CONTAINS(out, "top-K 384 must be between 1 and the vocabulary (384) - 1");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Without --no-progress, stderr (not a terminal here) gets a progress line every tenth of the
 * work with the rate and the time left; the last one covers every window. */
TEST(perplexity_progress) {
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s' perplexity -m '%s/f32' --tokens '%s' --ctx 64 --batch 16 2>&1 >/dev/null",
             moecl_test_bin(), moecl_test_fixtures_dir(), tokens_file());
    CHECK_EQ(moecl_test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "tokens/s, ");
    CHECK_STR_CONTAINS(out, " left, PPL ");
    CHECK_STR_CONTAINS(out, "[####################] window 8/8");
    int lines = 0;
    for (const char *p = out; p && (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    CHECK(lines >= 5 && lines <= 12);
    free(out);
}
