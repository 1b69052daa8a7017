/* End-to-end tests of `moecl generate`, `moecl chat` and `moecl harmony` with the built-in
 * default model (random weights, real tokenizer). The default model is cached in test-cache next
 * to the binary (`make clean` removes it; it is remade when mkmodel is rebuilt), shared by these
 * tests and later runs, except in cli_generate_default_model, which makes it in a fresh folder. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs `moecl ARGS` with the cache folder; stdout (and stderr unless stderr_too is 0). */
static int moecl(const char *args, int stderr_too, char **out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' '%s' %s%s", moecl_test_cache_dir(),
             moecl_test_bin(), args, stderr_too ? "" : " 2>/dev/null");
    return moecl_test_run(cmd, out);
}

/* The number after `key` in s (e.g. "prompt: " -> 75), or -1. */
static long number_after(const char *s, const char *key) {
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

TEST(cli_generate_default_model) {
    char *dir = moecl_test_tmpdir("cli-default");
    REQUIRE(dir);
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' '%s' generate -p Hello --max-tokens 6", dir,
             moecl_test_bin());
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    /* One line says it was made, where, and that its output is noise. */
    CHECK_STR_CONTAINS(out, "made the built-in default model");
    CHECK_STR_CONTAINS(out, "default-model");
    CHECK_STR_CONTAINS(out, "output is noise");
    /* The stats line: "Hello" is one token (13225); six generated. */
    CHECK_STR_CONTAINS(out, "prompt: 1 tokens, ");
    CHECK_STR_CONTAINS(out, "generation: 6 tokens, ");
    CHECK_STR_CONTAINS(out, "tokens/s");
    CHECK_STR_CONTAINS(out, "peak memory: host RSS ");
    CHECK_STR_CONTAINS(out, " buffers ");
    free(out);
    /* The second run finds it. */
    rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "using the built-in default model");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(cli_generate_greedy_repeatable) {
    char *a = NULL, *b = NULL;
    CHECK_EQ(moecl("generate -p 'The capital of France is' --temp 0 --max-tokens 4", 0, &a), 0);
    CHECK_EQ(moecl("generate -p 'The capital of France is' --temp 0 --max-tokens 4", 0, &b), 0);
    REQUIRE(a && b);
    CHECK(strlen(a) > 1);
    CHECK(strcmp(a, b) == 0);
    free(a);
    free(b);
}

TEST(cli_generate_seed) {
    char *a = NULL, *b = NULL, *c = NULL;
    const char *base = "generate -p 'Once upon a time' --temp 1 --top-p 0.95 --max-tokens 6";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --seed 7", base);
    CHECK_EQ(moecl(cmd, 0, &a), 0);
    CHECK_EQ(moecl(cmd, 0, &b), 0);
    snprintf(cmd, sizeof cmd, "%s --seed 8", base);
    CHECK_EQ(moecl(cmd, 0, &c), 0);
    REQUIRE(a && b && c);
    CHECK(strcmp(a, b) == 0);
    /* 6 tokens from a near-uniform 201088-way distribution: equal by chance ~never. */
    CHECK(strcmp(a, c) != 0);
    free(a);
    free(b);
    free(c);
}

/* `moecl harmony` of a JSON conversation: the ids as printed. */
static int harmony_ids(const char *json, char **out) {
    *out = NULL;
    char *dir = moecl_test_tmpdir("cli-harmony");
    if (!dir)
        return -1;
    char path[4096], args[4200];
    snprintf(path, sizeof path, "%s/conv.json", dir);
    int rc = -1;
    if (moecl_test_write_file(path, json, strlen(json)) == 0) {
        snprintf(args, sizeof args, "harmony '%s'", path);
        rc = moecl(args, 0, out);
    }
    moecl_test_rmtree(dir);
    free(dir);
    return rc;
}

/* --chat's prompt is the harmony rendering: its token count equals `moecl harmony`'s. */
TEST(cli_generate_chat_prompt) {
    char *gen = NULL, *ids = NULL;
    CHECK_EQ(moecl("generate --chat -p 'What is 2 + 2?' --max-tokens 2 --reasoning-effort high "
                   "--system 'Answer briefly.'",
                   1, &gen),
             0);
    CHECK_EQ(harmony_ids("{\"reasoning_effort\": \"high\", \"messages\": [{\"role\": "
                         "\"system\", \"content\": \"Answer briefly.\"}, {\"role\": \"user\", "
                         "\"content\": \"What is 2 + 2?\"}]}",
                         &ids),
             0);
    REQUIRE(gen && ids);
    long n = 0;
    for (const char *p = ids; *p; p++)
        n += *p == ',';
    n += 1;
    CHECK(n > 80);
    CHECK_EQ(number_after(gen, "prompt: "), n);
    CHECK_STR_CONTAINS(gen, "generation: 2 tokens");
    free(gen);
    free(ids);
    /* The spec's vector: 75 tokens for the plain question with a pinned date. */
    CHECK_EQ(harmony_ids("{\"date\": \"2025-06-28\", \"messages\": [{\"role\": \"user\", "
                         "\"content\": \"What is 2 + 2?\"}]}",
                         &ids),
             0);
    CHECK_STR_CONTAINS(ids, "[200006, 17360, 200008, 3575,");
    CHECK_STR_CONTAINS(ids, "200007, 200006, 173781]");
    free(ids);
}

TEST(cli_generate_usage_errors) {
    static const struct {
        const char *args, *msg;
    } cases[] = {
        {"generate", "needs a prompt"},
        {"generate -p x --temp abc", "--temp"},
        {"generate -p x --temp -1", "--temp"},
        {"generate -p x --top-p 1.5", "--top-p"},
        {"generate -p x --min-p 2", "--min-p"},
        {"generate -p x --top-k -1", "--top-k"},
        {"generate -p x --max-tokens many", "--max-tokens"},
        {"generate -p x --reasoning-effort extreme", "low, medium or high"},
        {"generate -p x --bogus", "unknown option"},
        {"generate -p", "needs a value"},
        {"chat --ctx 5", "--ctx"},
        {"chat --wat", "unknown option"},
        {"generate -p x --micro-batch -1", "--micro-batch"},
        {"chat --micro-batch many", "--micro-batch"},
        {"bench -p 8 --micro-batch", "--micro-batch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        int rc = moecl(cases[i].args, 1, &out);
        if (rc != 2)
            moecl_test_fail(__FILE__, __LINE__, "'%s': exit %d, want 2", cases[i].args, rc);
        CHECK_STR_CONTAINS(out, cases[i].msg);
        free(out);
    }
    /* A folder that is no checkpoint: a plain error (1) naming it. */
    char *out = NULL;
    CHECK_EQ(moecl("generate -m /nonexistent/model -p x", 1, &out), 1);
    CHECK_STR_CONTAINS(out, "/nonexistent/model");
    free(out);
    CHECK_EQ(moecl("generate --help", 1, &out), 0);
    CHECK_STR_CONTAINS(out, "--show-reasoning");
    free(out);
}

TEST(cli_chat_tmux) {
    char *out = NULL;
    if (system("command -v tmux >/dev/null 2>&1") != 0)
        SKIP("tmux is not installed (make deps installs it)");
    if (access("tests/cli/chat_tmux.sh", X_OK) != 0)
        SKIP("run from the source tree root");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' tests/cli/chat_tmux.sh '%s'",
             moecl_test_cache_dir(), moecl_test_bin());
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "chat_tmux: ok");
    if (rc != 0)
        fprintf(stderr, "%s\n", out ? out : "");
    free(out);
}

TEST(cli_generate_stdin_prompt) {
    char *out = NULL;
    /* "Hello" + "\n" is two tokens (13225, 198). */
    CHECK_EQ(moecl("generate -p - --max-tokens 1 <<'EOF'\nHello\nEOF\n", 1, &out), 0);
    CHECK_EQ(number_after(out, "prompt: "), 2);
    free(out);
}

/* Stop tokens come from the checkpoint's generation_config.json: a copy of the default model
 * whose eos list holds the token greedy decoding picks first stops after one token; <|end|> in
 * that list is ignored. */
TEST(cli_generate_stop_tokens) {
    char *out = NULL;
    /* Make sure the default model exists and find it. */
    REQUIRE(moecl("generate -p Hello --max-tokens 1", 1, &out) == 0);
    const char *p = strstr(out, "default model ");
    REQUIRE(p);
    char model[4096];
    REQUIRE(sscanf(p + strlen("default model "), "%4095s", model) == 1);
    free(out);
    /* The greedy first token after "Hello" (13225): moecl eval's top-1. */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --tokens 13225 2>/dev/null", moecl_test_bin(),
             model);
    REQUIRE(moecl_test_run(cmd, &out) == 0);
    const char *top = strstr(out, "\n  1 ");
    REQUIRE(top);
    long first = strtol(top + 5, NULL, 10);
    free(out);
    CHECK(first > 0);
    char *dir = moecl_test_tmpdir("cli-stops");
    REQUIRE(dir);
    static const char *const files[] = {"config.json", "model.safetensors",
                                        "model.safetensors.index.json", "tokenizer.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", model, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        CHECK(symlink(src, dst) == 0);
    }
    char gc[256], path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    for (int with_end = 0; with_end < 2; with_end++) {
        snprintf(gc, sizeof gc, "{\"eos_token_id\": [%s%ld]}", with_end ? "200007, " : "", first);
        REQUIRE(moecl_test_write_file(path, gc, strlen(gc)) == 0);
        snprintf(cmd, sizeof cmd, "generate -m '%s' -p Hello --temp 0 --max-tokens 5", dir);
        CHECK_EQ(moecl(cmd, 1, &out), 0);
        CHECK_STR_CONTAINS(out, "generation: 1 tokens");
        free(out);
    }
    /* Without it in the list, the same run goes on to --max-tokens. */
    snprintf(gc, sizeof gc, "{\"eos_token_id\": [200002, 200007]}");
    REQUIRE(moecl_test_write_file(path, gc, strlen(gc)) == 0);
    CHECK_EQ(moecl(cmd, 1, &out), 0);
    CHECK_STR_CONTAINS(out, "generation: 5 tokens");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

/* --place / --n-cpu-moe / --report-memory through `moecl generate` on the two PoCL devices:
 * the same greedy text as one device, the report names both devices and the hand-offs; a bad
 * spec is an error (1) naming the entry. */
TEST(cli_generate_placement) {
    char *one = NULL, *split = NULL, *report = NULL, *bad = NULL;
    const char *base = "generate -p 'The capital of France is' --temp 0 --max-tokens 5";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --device pocl:0", base);
    CHECK_EQ(moecl(cmd, 0, &one), 0);
    snprintf(cmd, sizeof cmd, "%s --place attn=pocl:0,experts=pocl:1", base);
    CHECK_EQ(moecl(cmd, 0, &split), 0);
    REQUIRE(one && split);
    CHECK(strcmp(one, split) == 0);
    snprintf(cmd, sizeof cmd, "%s --device pocl:1 --n-cpu-moe 1 --report-memory", base);
    CHECK_EQ(moecl(cmd, 1, &report), 0);
    CHECK_STR_CONTAINS(report, "memory report: embed=pocl:1 attn=pocl:1 experts[0-0]=pocl:0");
    CHECK_STR_CONTAINS(report, "pocl:0     expert weights");
    CHECK_STR_CONTAINS(report, "between devices: 2 event + 0 host hand-offs per step");
    CHECK_STR_CONTAINS(report, "checkpoint ");
    /* --micro-batch: the same text, and the plan holds the micro-batch buffers (pocl:0's
     * planned activations grow) */
    char *mb = NULL, *mb_report = NULL, *plain_report = NULL;
    snprintf(cmd, sizeof cmd, "%s --place attn=pocl:0,experts=pocl:1 --micro-batch 2", base);
    CHECK_EQ(moecl(cmd, 0, &mb), 0);
    CHECK(mb && strcmp(one, mb) == 0);
    snprintf(cmd, sizeof cmd,
             "%s --place attn=pocl:0,experts=pocl:1 --micro-batch 2 --report-memory", base);
    CHECK_EQ(moecl(cmd, 1, &mb_report), 0);
    snprintf(cmd, sizeof cmd, "%s --place attn=pocl:0,experts=pocl:1 --report-memory", base);
    CHECK_EQ(moecl(cmd, 1, &plain_report), 0);
    const char *la = mb_report ? strstr(mb_report, "pocl:0     activations") : NULL;
    const char *lb = plain_report ? strstr(plain_report, "pocl:0     activations") : NULL;
    REQUIRE(la && lb);
    CHECK(strncmp(la, lb, (size_t)(strchr(la, '\n') - la)) != 0);
    free(mb);
    free(mb_report);
    free(plain_report);
    /* generate creates its context with the shared context options: --kv-type f16 halves
     * the KV cache the memory report measures */
    char *f32 = NULL, *f16 = NULL;
    snprintf(cmd, sizeof cmd, "%s --device pocl:0 --report-memory", base);
    CHECK_EQ(moecl(cmd, 1, &f32), 0);
    snprintf(cmd, sizeof cmd, "%s --device pocl:0 --kv-type f16 --report-memory", base);
    CHECK_EQ(moecl(cmd, 1, &f16), 0);
    const char *k32 = f32 ? strstr(f32, "KV cache (full layers)") : NULL;
    const char *k16 = f16 ? strstr(f16, "KV cache (full layers)") : NULL;
    REQUIRE(k32 && k16);
    CHECK(strncmp(k32, k16, (size_t)(strchr(k32, '\n') - k32)) != 0);
    free(f32);
    free(f16);
    CHECK_EQ(moecl("generate -p x --place attn=amd:0", 1, &bad), 1);
    CHECK_STR_CONTAINS(bad, "--place entry 'attn=amd:0'");
    free(one);
    free(split);
    free(report);
    free(bad);
}
