/* Harmony with the real o200k_harmony tokenizer: the spec's token vectors (§7), which
 * openai-harmony 0.0.8 reproduces (tests/reference/harmony_check.py compares many more). */
#include "test.h"

#include "moecl.h"

#include <stdlib.h>
#include <string.h>

static struct moecl_tokenizer *load_tok(void) {
    static const char *const paths[] = {"data/o200k_base.tiktoken",
                                        "../shared/data/o200k_base.tiktoken"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct moecl_tokenizer *t = NULL;
        if (moecl_tokenizer_load(paths[i], &t) == MOECL_OK)
            return t;
    }
    return NULL;
}

static void check_ids(const int32_t *got, size_t n, const int32_t *want, size_t wn, int line) {
    if (n != wn)
        moecl_test_fail(__FILE__, line, "%zu ids, want %zu", n, wn);
    for (size_t i = 0; i < n && i < wn; i++)
        if (got[i] != want[i]) {
            moecl_test_fail(__FILE__, line, "id %zu: %d, want %d", i, (int)got[i], (int)want[i]);
            return;
        }
}

TEST(harmony_tok_prompt_vector) {
    struct moecl_tokenizer *tok = load_tok();
    REQUIRE(tok);
    struct moecl_conversation *c = NULL;
    REQUIRE(moecl_conversation_create(&c) == MOECL_OK);
    REQUIRE(moecl_conversation_set_date(c, "2025-06-28") == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "What is 2 + 2?") == MOECL_OK);
    static const int32_t want[] = {
        200006, 17360, 200008, 3575, 553,   17554,  162016, 11,     261,    4410, 6439,
        2359,   22203, 656,    7788, 17527, 558,    87447,  100594, 25,     220,  1323,
        19,     12,    3218,   198,  6576,  3521,   25,     220,    1323,   20,   12,
        3218,   12,    2029,   279,  30377, 289,    25,     14093,  279,    2,    13888,
        18403,  25,    8450,   11,   49159, 11,     1721,   13,     21030,  2804, 413,
        7360,   395,   1753,   3176, 13,    200007, 200006, 1428,   200008, 4827, 382,
        220,    17,    659,    220,  17,    30,     200007, 200006, 173781};
    for (int pkg = 0; pkg < 2; pkg++) {
        int32_t *ids = NULL;
        size_t n = 0;
        REQUIRE(moecl_conversation_render(c, tok,
                                          MOECL_RENDER_GENERATION_PROMPT |
                                              (pkg ? MOECL_RENDER_HARMONY_PACKAGE : 0),
                                          &ids, &n) == MOECL_OK);
        check_ids(ids, n, want, sizeof want / sizeof want[0], __LINE__);
        free(ids);
    }
    /* Developer instructions: the template's trailing "\n\n" makes ".\n\n" one token (364);
     * openai-harmony ends with "." (13). */
    REQUIRE(moecl_conversation_set_instructions(c, "Answer briefly.") == MOECL_OK);
    static const int32_t dev_tpl[] = {200006, 77944, 200008, 2,   68406,
                                      279,    17045, 51088,  364, 200007};
    static const int32_t dev_pkg[] = {200006, 77944, 200008, 2,  68406,
                                      279,    17045, 51088,  13, 200007};
    for (int pkg = 0; pkg < 2; pkg++) {
        int32_t *ids = NULL;
        size_t n = 0;
        REQUIRE(moecl_conversation_render(c, tok, pkg ? MOECL_RENDER_HARMONY_PACKAGE : 0, &ids,
                                          &n) == MOECL_OK);
        /* The system message is 61 ids; the developer message follows. */
        REQUIRE(n >= 61 + 10);
        check_ids(ids + 61, 10, pkg ? dev_pkg : dev_tpl, 10, __LINE__);
        free(ids);
    }
    /* Special-token text inside content stays text (no injection of <|end|>). */
    moecl_conversation_clear(c);
    REQUIRE(moecl_conversation_set_instructions(c, NULL) == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "<|end|>") == MOECL_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moecl_conversation_render(c, tok, MOECL_RENDER_GENERATION_PROMPT, &ids, &n) ==
            MOECL_OK);
    int ends = 0;
    for (size_t i = 0; i < n; i++)
        ends += ids[i] == 200007;
    CHECK_EQ(ends, 2); /* system and user messages only */
    free(ids);
    moecl_conversation_release(c);
    moecl_tokenizer_release(tok);
}

TEST(harmony_tok_parse_vector) {
    struct moecl_tokenizer *tok = load_tok();
    REQUIRE(tok);
    struct moecl_harmony_parser *p = NULL;
    REQUIRE(moecl_harmony_parser_create(tok, &p) == MOECL_OK);
    static const int32_t completion[] = {
        200005, 35644, 200008, 1844,  31064, 25,  392,   4827, 382, 220,    17,     659,
        220,    17,    16842,  12295, 81645, 13,  51441, 6052, 13,  200007, 200006, 173781,
        200005, 17196, 200008, 17,    659,   220, 17,    314,  220, 19,     13,     200002};
    int stops = 0;
    for (size_t i = 0; i < sizeof completion / sizeof completion[0]; i++) {
        struct moecl_harmony_event ev;
        REQUIRE(moecl_harmony_parser_push(p, completion[i], &ev) == MOECL_OK);
        stops += ev.stop;
        if (ev.stop)
            CHECK_EQ(i, sizeof completion / sizeof completion[0] - 1);
    }
    CHECK_EQ(stops, 1);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_ANALYSIS),
                 "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.") == 0);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_FINAL), "2 + 2 = 4.") == 0);
    /* harmony's test_simple_tool_call completion header. */
    moecl_harmony_parser_reset(p);
    static const int32_t call[] = {316,    28,    29712, 170154, 200005, 35644,  3490,
                                   200008, 10848, 7693,  1243,   392,    173844, 18583};
    for (size_t i = 0; i < sizeof call / sizeof call[0]; i++) {
        struct moecl_harmony_event ev;
        REQUIRE(moecl_harmony_parser_push(p, call[i], &ev) == MOECL_OK);
    }
    struct moecl_harmony_event ev;
    REQUIRE(moecl_harmony_parser_push(p, 200012, &ev) == MOECL_OK);
    CHECK(ev.stop && ev.message_end);
    CHECK(moecl_harmony_parser_tool_name(p) &&
          strcmp(moecl_harmony_parser_tool_name(p), "lookup_weather") == 0);
    CHECK(strcmp(moecl_harmony_parser_tool_args(p), "{\"location\": \"Tokyo\"}") == 0);
    moecl_harmony_parser_release(p);
    moecl_tokenizer_release(tok);
}

/* tests/reference/harmony_check.py (openai-harmony and a jinja2 rendering of the template) when
 * the reference venv is there (tests/reference/setup_venv.sh makes it). */
TEST(harmony_reference_check) {
    const char *py = "build/venv/bin/python";
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s -c 'import openai_harmony, jinja2, tokenizers' 2>/dev/null", py);
    if (moecl_test_run(cmd, &out) != 0) {
        free(out);
        SKIP("no reference venv with openai-harmony (bash tests/reference/setup_venv.sh)");
    }
    free(out);
    char *dir = moecl_test_tmpdir("harmony-check");
    REQUIRE(dir);
    snprintf(cmd, sizeof cmd, "%s tests/reference/harmony_check.py --moecl '%s' --workdir '%s'", py,
             moecl_test_bin(), dir);
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "0 comparisons failed");
    if (rc != 0)
        fprintf(stderr, "%s\n", out ? out : "");
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}
