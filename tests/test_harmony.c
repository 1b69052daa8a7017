/* Harmony tests: rendering (template and openai-harmony flavours), the streaming parser, stop
 * tokens. Token-level checks against the real tokenizer are in test_harmony_tok.c; the
 * comparison with openai-harmony and a jinja2 template is tests/reference/harmony_check.py.
 *
 * Expected texts below were written from the spec (§4.4) and checked against openai-harmony
 * 0.0.8's render_conversation_for_completion where the two agree. */
#include "test.h"

#include "harmony.h"

#include <stdlib.h>
#include <string.h>

#define SYS_2025_06_28_MEDIUM                                                                      \
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"       \
    "Knowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: medium\n\n"                 \
    "# Valid channels: analysis, commentary, final. Channel must be included for every "           \
    "message.<|end|>"

static char *render(const struct moecl_conversation *c, int flags) {
    char *text = NULL;
    size_t len = 0;
    enum moecl_status st = moecl_conversation_render_text(c, flags, &text, &len);
    if (st != MOECL_OK) {
        moecl_test_fail(__FILE__, __LINE__, "render: %s", moecl_last_error());
        return strdup("");
    }
    if (strlen(text) != len)
        moecl_test_fail(__FILE__, __LINE__, "length %zu vs %zu", strlen(text), len);
    return text;
}

static void check_text(const char *got, const char *want, int line) {
    if (strcmp(got, want) != 0) {
        size_t i = 0;
        while (got[i] && got[i] == want[i])
            i++;
        moecl_test_fail(__FILE__, line, "render differs at byte %zu:\n got: %.80s\nwant: %.80s", i,
                        got + i, want + i);
    }
}

static struct moecl_conversation *new_conv(void) {
    struct moecl_conversation *c = NULL;
    if (moecl_conversation_create(&c) != MOECL_OK)
        return NULL;
    if (moecl_conversation_set_date(c, "2025-06-28") != MOECL_OK)
        return NULL;
    return c;
}

TEST(harmony_render_single_turn) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    REQUIRE(moecl_conversation_add_user(c, "What is 2 + 2?") == MOECL_OK);
    const char *want =
        SYS_2025_06_28_MEDIUM "<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant";
    for (int pkg = 0; pkg < 2; pkg++) {
        char *t =
            render(c, MOECL_RENDER_GENERATION_PROMPT | (pkg ? MOECL_RENDER_HARMONY_PACKAGE : 0));
        check_text(t, want, __LINE__);
        free(t);
    }
    moecl_conversation_set_reasoning(c, MOECL_REASONING_HIGH);
    REQUIRE(moecl_conversation_set_identity(c, "You are a test.") == MOECL_OK);
    char *t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    CHECK_STR_CONTAINS(t, "<|start|>system<|message|>You are a test.\nKnowledge cutoff");
    CHECK_STR_CONTAINS(t, "\n\nReasoning: high\n\n#");
    free(t);
    moecl_conversation_release(c);
}

TEST(harmony_render_developer) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    REQUIRE(moecl_conversation_set_instructions(c, "Answer briefly.") == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "Hi") == MOECL_OK);
    /* The template leaves "\n\n" after the instructions; openai-harmony does not. */
    char *t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    check_text(t,
               SYS_2025_06_28_MEDIUM "<|start|>developer<|message|># Instructions\n\nAnswer "
                                     "briefly.\n\n<|end|><|start|>user<|message|>Hi<|end|><|start|>"
                                     "assistant",
               __LINE__);
    free(t);
    t = render(c, MOECL_RENDER_GENERATION_PROMPT | MOECL_RENDER_HARMONY_PACKAGE);
    CHECK_STR_CONTAINS(t, "# Instructions\n\nAnswer briefly.<|end|><|start|>user");
    free(t);
    /* Empty instructions: no developer message at all. */
    REQUIRE(moecl_conversation_set_instructions(c, "") == MOECL_OK);
    t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    CHECK(strstr(t, "developer") == NULL);
    free(t);
    moecl_conversation_release(c);
}

TEST(harmony_render_history) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    REQUIRE(moecl_conversation_add_user(c, "a") == MOECL_OK);
    REQUIRE(moecl_conversation_add_assistant(c, "t1", "f1") == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "b") == MOECL_OK);
    REQUIRE(moecl_conversation_add_assistant(c, "t2", "f2") == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "c") == MOECL_OK);
    CHECK_EQ(moecl_conversation_n_turns(c), 5);
    /* Template: every earlier turn is its final answer only. */
    char *t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    check_text(t,
               SYS_2025_06_28_MEDIUM
               "<|start|>user<|message|>a<|end|><|start|>assistant<|channel|>final<|message|>f1<|"
               "end|><|start|>user<|message|>b<|end|><|start|>assistant<|channel|>final<|message|>"
               "f2<|end|><|start|>user<|message|>c<|end|><|start|>assistant",
               __LINE__);
    free(t);
    /* openai-harmony drops only the analysis before the first final: t2 stays. */
    t = render(c, MOECL_RENDER_GENERATION_PROMPT | MOECL_RENDER_HARMONY_PACKAGE);
    CHECK(strstr(t, "t1") == NULL);
    CHECK_STR_CONTAINS(t,
                       "<|start|>user<|message|>b<|end|><|start|>assistant<|channel|>analysis<|"
                       "message|>t2<|end|><|start|>assistant<|channel|>final<|message|>f2<|end|>");
    free(t);
    /* Training form: a trailing assistant turn keeps its analysis and ends with <|return|>. */
    moecl_conversation_clear(c);
    CHECK_EQ(moecl_conversation_n_turns(c), 0);
    REQUIRE(moecl_conversation_add_user(c, "a") == MOECL_OK);
    REQUIRE(moecl_conversation_add_assistant(c, "think", "answer") == MOECL_OK);
    t = render(c, 0);
    check_text(t,
               SYS_2025_06_28_MEDIUM
               "<|start|>user<|message|>a<|end|><|start|>assistant<|channel|>analysis<|message|>"
               "think<|end|><|start|>assistant<|channel|>final<|message|>answer<|return|>",
               __LINE__);
    free(t);
    /* Channel tags inside the content are refused, as the template refuses them. */
    CHECK(moecl_conversation_add_assistant(c, NULL, "x<|channel|>final<|message|>y") ==
          MOECL_ERR_INVALID_ARG);
    CHECK(moecl_conversation_add_assistant(c, "<|channel|>analysis<|message|>", "y") ==
          MOECL_ERR_INVALID_ARG);
    moecl_conversation_release(c);
}

TEST(harmony_render_tools) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    CHECK(moecl_conversation_add_tool_result(c, "x") == MOECL_ERR_INVALID_ARG);
    REQUIRE(moecl_conversation_add_user(c, "Weather?") == MOECL_OK);
    REQUIRE(moecl_conversation_add_tool_call(c, "need tool", "get_weather",
                                             "{\"location\": \"SF\"}") == MOECL_OK);
    REQUIRE(moecl_conversation_add_tool_result(c, "{\"temp\": 20}\n") == MOECL_OK);
    char *t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    /* No later final answer: the tool call keeps its analysis; the result is JSON-quoted. */
    check_text(t,
               SYS_2025_06_28_MEDIUM
               "<|start|>user<|message|>Weather?<|end|><|start|>assistant<|channel|>analysis<|"
               "message|>need tool<|end|><|start|>assistant to=functions.get_weather<|channel|>"
               "commentary json<|message|>{\"location\": \"SF\"}<|call|><|start|>functions.get_"
               "weather to=assistant<|channel|>commentary<|message|>\"{\\\"temp\\\": 20}\\n\"<|end|"
               "><|start|>assistant",
               __LINE__);
    free(t);
    t = render(c, MOECL_RENDER_GENERATION_PROMPT | MOECL_RENDER_HARMONY_PACKAGE);
    CHECK_STR_CONTAINS(t, "commentary<|message|>{\"temp\": 20}\n<|end|>");
    free(t);
    /* A later final answer drops the tool call's analysis (template). */
    REQUIRE(moecl_conversation_add_assistant(c, "done", "It is 20.") == MOECL_OK);
    REQUIRE(moecl_conversation_add_user(c, "Thanks") == MOECL_OK);
    t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    CHECK(strstr(t, "need tool") == NULL);
    CHECK(strstr(t, "done") == NULL);
    CHECK_STR_CONTAINS(t, "<|channel|>final<|message|>It is 20.<|end|>");
    free(t);
    moecl_conversation_release(c);
}

TEST(harmony_json_quote) {
    char *q = moecl_harmony_json_quote("a\"b\\c\n\t\x01\x7f é");
    CHECK(q && strcmp(q, "\"a\\\"b\\\\c\\n\\t\\u0001\x7f é\"") == 0);
    free(q);
}

TEST(harmony_bad_args) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    CHECK(moecl_conversation_set_date(c, "2025-6-28") == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_conversation_set_date(c, "2025-06-2x") == MOECL_ERR_INVALID_ARG);
    enum moecl_reasoning_effort e;
    CHECK(moecl_reasoning_effort_parse("HIGH", &e) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_reasoning_effort_parse("low", &e) == MOECL_OK && e == MOECL_REASONING_LOW);
    CHECK(moecl_conversation_add_user(c, NULL) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_conversation_add_tool_call(c, NULL, "", "{}") == MOECL_ERR_INVALID_ARG);
    /* Today's date when none is pinned. */
    REQUIRE(moecl_conversation_set_date(c, NULL) == MOECL_OK);
    char *t = render(c, MOECL_RENDER_GENERATION_PROMPT);
    CHECK_STR_CONTAINS(t, "Current date: 20");
    free(t);
    moecl_conversation_release(c);
    moecl_conversation_release(NULL);
}

/* ------------------------------------------------------------------ segments and ids */

/* Stub ordinary encoder: one id per byte (id = byte value). */
static enum moecl_status byte_encode(void *user, const char *text, size_t len, int32_t **ids,
                                     size_t *n, size_t *cap) {
    (void)user;
    for (size_t i = 0; i < len; i++) {
        if (*n == *cap) {
            int32_t *g = realloc(*ids, 2 * *cap * sizeof **ids);
            if (!g)
                return MOECL_ERR_NO_MEMORY;
            *ids = g;
            *cap *= 2;
        }
        (*ids)[(*n)++] = (unsigned char)text[i];
    }
    return MOECL_OK;
}

TEST(harmony_segments_ids) {
    struct moecl_conversation *c = new_conv();
    REQUIRE(c);
    REQUIRE(moecl_conversation_add_user(c, "Hi") == MOECL_OK);
    struct moecl_harmony_segments s;
    REQUIRE(moecl_harmony_segments_render(c, MOECL_RENDER_GENERATION_PROMPT, &s) == MOECL_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moecl_harmony_segments_encode(&s, byte_encode, NULL, &ids, &n) == MOECL_OK);
    /* Ends with <|end|> <|start|> a s s i s t a n t; the user turn is <|start|> u s e r
     * <|message|> H i <|end|>. */
    REQUIRE(n > 20);
    CHECK_EQ(ids[0], MOECL_TOK_START);
    CHECK_EQ(ids[n - 10], MOECL_TOK_START);
    CHECK_EQ(ids[n - 9], 'a');
    CHECK_EQ(ids[n - 1], 't');
    CHECK_EQ(ids[n - 11], MOECL_TOK_END);
    CHECK_EQ(ids[n - 12], 'i');
    CHECK_EQ(ids[n - 13], 'H');
    CHECK_EQ(ids[n - 14], MOECL_TOK_MESSAGE);
    int specials = 0;
    for (size_t i = 0; i < n; i++)
        specials += ids[i] >= 199998;
    CHECK_EQ(specials, 3 + 3 + 1); /* system, user: start/message/end; prompt: start */
    free(ids);
    moecl_harmony_segments_free(&s);
    moecl_conversation_release(c);
}

/* ------------------------------------------------------------------ parser */

static const char *byte_bytes(void *user, int32_t id, size_t *len) {
    static char b[256];
    (void)user;
    const char *sp = moecl_harmony_special_str(id);
    if (sp) {
        *len = strlen(sp);
        return sp;
    }
    if (id < 0 || id > 255)
        return NULL;
    for (int i = 0; i < 256; i++)
        b[i] = (char)i;
    *len = 1;
    return b + id;
}

struct strbuf_out {
    char text[4][512]; /* per channel: none, analysis, commentary, final */
    int stops, ends, starts;
};

/* Feeds text as byte tokens, "<|x|>" as the special's id, collecting the events in *o. */
static void feed(struct moecl_harmony_parser *p, const char *s, struct strbuf_out *o) {
    static const int32_t specials[] = {200002, 200003, 200005, 200006,
                                       200007, 200008, 200012, 199999};
    while (*s) {
        int32_t tok = (unsigned char)*s;
        size_t adv = 1;
        for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
            const char *str = moecl_harmony_special_str(specials[k]);
            if (strncmp(s, str, strlen(str)) == 0) {
                tok = specials[k];
                adv = strlen(str);
            }
        }
        struct moecl_harmony_event ev;
        if (moecl_harmony_parser_push(p, tok, &ev) != MOECL_OK) {
            moecl_test_fail(__FILE__, __LINE__, "push: %s", moecl_last_error());
            return;
        }
        if (ev.text_len && ev.channel <= MOECL_CHANNEL_FINAL)
            strncat(o->text[ev.channel], ev.text, 511 - strlen(o->text[ev.channel]));
        if (strlen(ev.text) != ev.text_len)
            moecl_test_fail(__FILE__, __LINE__, "event text length");
        o->stops += ev.stop;
        o->ends += ev.message_end;
        o->starts += ev.message_start;
        s += adv;
    }
}

TEST(harmony_parse_completion) {
    struct moecl_harmony_parser *p = NULL;
    REQUIRE(moecl_harmony_parser_create_with(byte_bytes, NULL, &p) == MOECL_OK);
    struct strbuf_out o;
    memset(&o, 0, sizeof o);
    /* The spec's harmony docs example (after the "<|start|>assistant" prompt). */
    feed(p,
         "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide "
         "answer.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
         &o);
    CHECK(strcmp(o.text[MOECL_CHANNEL_ANALYSIS],
                 "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.") == 0);
    CHECK(strcmp(o.text[MOECL_CHANNEL_FINAL], "2 + 2 = 4.") == 0);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_FINAL), "2 + 2 = 4.") == 0);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_ANALYSIS),
                 o.text[MOECL_CHANNEL_ANALYSIS]) == 0);
    CHECK_EQ(o.stops, 1); /* only <|return|>; <|end|> is not a stop */
    CHECK_EQ(o.ends, 2);
    CHECK_EQ(o.starts, 2);
    CHECK(moecl_harmony_parser_tool_name(p) == NULL);
    moecl_harmony_parser_release(p);
}

TEST(harmony_parse_tool_call) {
    struct moecl_harmony_parser *p = NULL;
    REQUIRE(moecl_harmony_parser_create_with(byte_bytes, NULL, &p) == MOECL_OK);
    struct strbuf_out o;
    memset(&o, 0, sizeof o);
    /* The model's own form: recipient after the channel, <|constrain|>json. */
    feed(p,
         "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>"
         "commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"San "
         "Francisco\"}<|call|>",
         &o);
    CHECK_EQ(o.stops, 1);
    CHECK(moecl_harmony_parser_tool_name(p) &&
          strcmp(moecl_harmony_parser_tool_name(p), "functions.get_weather") == 0);
    CHECK(strcmp(moecl_harmony_parser_tool_args(p), "{\"location\":\"San Francisco\"}") == 0);
    /* The template's form: recipient in the role part, plain content type. */
    moecl_harmony_parser_reset(p);
    memset(&o, 0, sizeof o);
    feed(p, " to=functions.f<|channel|>commentary json<|message|>{}<|call|>", &o);
    CHECK(moecl_harmony_parser_tool_name(p) &&
          strcmp(moecl_harmony_parser_tool_name(p), "functions.f") == 0);
    /* A preamble (commentary without recipient) is user-visible text, not a tool call. */
    moecl_harmony_parser_reset(p);
    memset(&o, 0, sizeof o);
    feed(p, "<|channel|>commentary<|message|>Checking.<|end|>", &o);
    CHECK(moecl_harmony_parser_tool_name(p) == NULL);
    CHECK(strcmp(o.text[MOECL_CHANNEL_COMMENTARY], "Checking.") == 0);
    moecl_harmony_parser_release(p);
}

TEST(harmony_parse_utf8_and_lenient) {
    struct moecl_harmony_parser *p = NULL;
    REQUIRE(moecl_harmony_parser_create_with(byte_bytes, NULL, &p) == MOECL_OK);
    struct moecl_harmony_event ev;
    const int32_t head[] = {MOECL_TOK_CHANNEL, 'f', 'i', 'n', 'a', 'l', MOECL_TOK_MESSAGE};
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        REQUIRE(moecl_harmony_parser_push(p, head[i], &ev) == MOECL_OK);
    CHECK(ev.message_start && ev.channel == MOECL_CHANNEL_FINAL);
    /* "é€" split byte by byte: nothing is released before a sequence is whole. */
    const unsigned char bytes[] = {0xC3, 0xA9, 0xE2, 0x82, 0xAC};
    const size_t want_len[] = {0, 2, 0, 0, 3};
    for (int i = 0; i < 5; i++) {
        REQUIRE(moecl_harmony_parser_push(p, bytes[i], &ev) == MOECL_OK);
        CHECK_EQ(ev.text_len, want_len[i]);
    }
    /* An invalid byte is U+FFFD; a sequence cut by the end of the message too. */
    REQUIRE(moecl_harmony_parser_push(p, 0xFF, &ev) == MOECL_OK);
    CHECK(strcmp(ev.text, "\xEF\xBF\xBD") == 0);
    REQUIRE(moecl_harmony_parser_push(p, 0xE2, &ev) == MOECL_OK);
    CHECK_EQ(ev.text_len, 0);
    REQUIRE(moecl_harmony_parser_push(p, MOECL_TOK_END, &ev) == MOECL_OK);
    CHECK(ev.message_end && !ev.stop);
    CHECK(strcmp(ev.text, "\xEF\xBF\xBD") == 0);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_FINAL), "é€\xEF\xBF\xBD\xEF\xBF\xBD") ==
          0);
    /* A header that never reaches <|message|> becomes content (non-strict mode). */
    moecl_harmony_parser_reset(p);
    struct strbuf_out o;
    memset(&o, 0, sizeof o);
    feed(p, "Hello<|return|>", &o);
    CHECK_EQ(o.stops, 1);
    CHECK(strcmp(o.text[MOECL_CHANNEL_NONE], "Hello") == 0);
    /* Cut off inside a header: finish turns the header text into content. */
    moecl_harmony_parser_reset(p);
    memset(&o, 0, sizeof o);
    feed(p, "noise", &o);
    CHECK(o.text[MOECL_CHANNEL_NONE][0] == 0);
    moecl_harmony_parser_finish(p, &ev);
    CHECK(ev.channel == MOECL_CHANNEL_NONE && strcmp(ev.text, "noise") == 0);
    CHECK(strcmp(moecl_harmony_parser_text(p, MOECL_CHANNEL_NONE), "noise") == 0);
    /* <|endoftext|> stops too; an unknown token id is an error. */
    moecl_harmony_parser_reset(p);
    REQUIRE(moecl_harmony_parser_push(p, MOECL_TOK_ENDOFTEXT, &ev) == MOECL_OK);
    CHECK(ev.stop);
    moecl_harmony_parser_reset(p);
    CHECK(moecl_harmony_parser_push(p, 5000, &ev) == MOECL_ERR_INVALID_ARG);
    moecl_harmony_parser_release(p);
}

TEST(harmony_stop_tokens) {
    CHECK(moecl_is_stop_token(200002));
    CHECK(moecl_is_stop_token(199999));
    CHECK(moecl_is_stop_token(200012));
    CHECK(!moecl_is_stop_token(200007));
    CHECK(!moecl_is_stop_token(200006));
    char *dir = moecl_test_tmpdir("stops");
    REQUIRE(dir);
    int32_t ids[8];
    int n = -1;
    REQUIRE(moecl_stop_tokens_load(dir, ids, 8, &n) == MOECL_OK); /* no files: defaults */
    CHECK_EQ(n, 3);
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    const char *gc = "{\"bos_token_id\": 199998, \"eos_token_id\": [200002, 199999, 200007, 5]}";
    REQUIRE(moecl_test_write_file(path, gc, strlen(gc)) == 0);
    REQUIRE(moecl_stop_tokens_load(dir, ids, 8, &n) == MOECL_OK);
    CHECK_EQ(n, 4); /* 200002 199999 5, then the default 200012; never 200007 */
    CHECK_EQ(ids[0], 200002);
    CHECK_EQ(ids[2], 5);
    CHECK_EQ(ids[3], 200012);
    for (int i = 0; i < n; i++)
        CHECK(ids[i] != 200007);
    /* No generation_config.json: config.json's eos_token_id (a number). */
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"eos_token_id\": 7}";
    REQUIRE(moecl_test_write_file(path, cfg, strlen(cfg)) == 0);
    REQUIRE(moecl_stop_tokens_load(dir, ids, 8, &n) == MOECL_OK);
    CHECK_EQ(n, 4);
    CHECK_EQ(ids[0], 7);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80                 ? 1
                   : c >= 0xC2 && c <= 0xDF ? 2
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
            return 0;
        i += k;
    }
    return 1;
}

/* Random token streams (bytes of every kind and every special): the parser never fails on a
 * known id, every event's text is whole valid UTF-8, and the per-channel texts are the
 * concatenation of the events'. */
TEST(harmony_parse_random) {
    static const int32_t specials[] = {200002, 200003, 200005, 200006,
                                       200007, 200008, 200012, 199999};
    static const char *const words[] = {"analysis",        "final", "commentary",
                                        " to=functions.f", "json",  "assistant"};
    uint64_t st = 42;
    struct moecl_harmony_parser *p = NULL;
    REQUIRE(moecl_harmony_parser_create_with(byte_bytes, NULL, &p) == MOECL_OK);
    for (int round = 0; round < 200; round++) {
        moecl_harmony_parser_reset(p);
        static char got[4][8192];
        size_t got_n[4] = {0, 0, 0, 0};
        int bad = 0;
        for (int t = 0; t < 300 && !bad; t++) {
            uint64_t r = moecl_test_rand(&st);
            int32_t seq[16];
            int n = 0;
            if (r % 10 == 0) {
                seq[n++] = specials[(r >> 8) % 8];
            } else if (r % 10 == 1) {
                const char *w = words[(r >> 8) % 6];
                for (; *w && n < 16; w++)
                    seq[n++] = (unsigned char)*w;
            } else {
                seq[n++] = (int32_t)(1 + (r >> 8) % 255); /* any byte but NUL (the channel texts
                                                             are C strings) */
            }
            for (int k = 0; k < n; k++) {
                struct moecl_harmony_event ev;
                if (moecl_harmony_parser_push(p, seq[k], &ev) != MOECL_OK) {
                    moecl_test_fail(__FILE__, __LINE__, "push failed: %s", moecl_last_error());
                    bad = 1;
                    break;
                }
                if (!valid_utf8((const unsigned char *)ev.text, ev.text_len)) {
                    moecl_test_fail(__FILE__, __LINE__, "invalid UTF-8 in an event (round %d)",
                                    round);
                    bad = 1;
                }
                if (ev.channel <= MOECL_CHANNEL_FINAL && got_n[ev.channel] + ev.text_len < 8192) {
                    memcpy(got[ev.channel] + got_n[ev.channel], ev.text, ev.text_len);
                    got_n[ev.channel] += ev.text_len;
                }
            }
        }
        struct moecl_harmony_event ev;
        moecl_harmony_parser_finish(p, &ev);
        if (ev.channel <= MOECL_CHANNEL_FINAL && got_n[ev.channel] + ev.text_len < 8192) {
            memcpy(got[ev.channel] + got_n[ev.channel], ev.text, ev.text_len);
            got_n[ev.channel] += ev.text_len;
        }
        for (int c = 0; c < 4 && !bad; c++) {
            const char *all = moecl_harmony_parser_text(p, (enum moecl_harmony_channel)c);
            if (strlen(all) < 8000 && (strlen(all) != got_n[c] || memcmp(all, got[c], got_n[c])))
                moecl_test_fail(__FILE__, __LINE__, "channel %d text differs from its events", c);
            CHECK(valid_utf8((const unsigned char *)all, strlen(all)));
        }
    }
    moecl_harmony_parser_release(p);
}
