/* Tokenizer: the spec's test vectors, pre-tokenizer pieces, special tokens, round trips, the
 * streaming decoder, invalid UTF-8, long runs, both BPE algorithms, the Unicode table.
 * The exhaustive comparison against HF tokenizers and tiktoken is `make tokcheck`. */
#include "test.h"

#include "moecl.h"
#include "tokenizer.h"
#include "unicode_class.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Loaded once for the whole suite (reachable until exit, so leak checkers stay quiet). */
static struct moecl_tokenizer *g_tok;

static const char *tiktoken_path(void) {
    const char *p = getenv("MOECL_TIKTOKEN");
    return p && *p ? p : "data/o200k_base.tiktoken";
}

static struct moecl_tokenizer *tok(void) {
    if (!g_tok && moecl_tokenizer_load(tiktoken_path(), &g_tok) != MOECL_OK) {
        fprintf(stderr, "loading %s: %s\n", tiktoken_path(), moecl_last_error());
        g_tok = NULL;
    }
    return g_tok;
}

/* Encodes and compares; reports the first difference. */
static void check_ids_at(const char *file, int line, const char *text, size_t n, unsigned flags,
                         const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    enum moecl_status st = moecl_tokenizer_encode(tok(), text, n, flags, &ids, &n_ids);
    if (st != MOECL_OK) {
        moecl_test_fail(file, line, "encode \"%s\": %s", text, moecl_last_error());
        return;
    }
    size_t i = 0;
    while (i < n_ids && i < n_want && ids[i] == want[i])
        i++;
    if (i != n_ids || i != n_want)
        moecl_test_fail(file, line,
                        "encode \"%.60s\": %zu ids vs %zu expected; first difference at "
                        "%zu (%d vs %d)",
                        text, n_ids, n_want, i, i < n_ids ? (int)ids[i] : -1,
                        i < n_want ? (int)want[i] : -1);
    free(ids);
}

#define CHECK_IDS(text, flags, ...)                                                                \
    do {                                                                                           \
        static const int32_t want_[] = {__VA_ARGS__};                                              \
        check_ids_at(__FILE__, __LINE__, text, strlen(text), flags, want_,                         \
                     sizeof want_ / sizeof want_[0]);                                              \
    } while (0)

#define SP MOECL_ENCODE_ALLOW_SPECIAL

TEST(tokenizer_spec_vectors) {
    REQUIRE(tok());
    /* primary-source vectors (spec §7) */
    CHECK_IDS("hello world", SP, 24912, 2375);
    CHECK_IDS("Hello World", SP, 13225, 5922);
    CHECK_IDS("<|startoftext|><|start|><|message|>Hello World<|end|><|endoftext|>", SP, 199998,
              200006, 200008, 13225, 5922, 200007, 199999);
    CHECK_IDS("<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. "
              "Provide answer.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = "
              "4.<|return|>",
              SP, 200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17,
              16842, 12295, 81645, 13, 51441, 6052, 13, 200007, 200006, 173781, 200005, 17196,
              200008, 17, 659, 220, 17, 314, 220, 19, 13, 200002);
    CHECK_IDS(
        "<|start|>assistant to=lookup_weather<|channel|>analysis code<|message|>{\"location\":"
        " \"Tokyo\"}",
        SP, 200006, 173781, 316, 28, 29712, 170154, 200005, 35644, 3490, 200008, 10848, 7693, 1243,
        392, 173844, 18583);
    /* computed vectors, confirmed against HF tokenizers by make tokcheck */
    CHECK_IDS("don't", SP, 91418);
    CHECK_IDS("DON'T", SP, 134882, 51532);
    CHECK_IDS("camelCase", SP, 178067, 6187);
    CHECK_IDS("HTTPSession", SP, 129093, 1685);
    CHECK_IDS("12345678", SP, 7633, 19354, 4388);
    CHECK_IDS(" 123", SP, 220, 7633);
    CHECK_IDS("a/b", SP, 64, 7611);
    CHECK_IDS("!\n/", SP, 4175, 14);
    CHECK_IDS("x  ", SP, 87, 256);
    CHECK_IDS("  a", SP, 220, 261);
    CHECK_IDS("\n\nfoo", SP, 279, 16660);
    CHECK_IDS("中文!", SP, 10667, 0);
    CHECK_IDS("Café déjà vu", SP, 34, 103112, 21229, 12005);
    CHECK_IDS("user", SP, 1428);
    CHECK_IDS("system", SP, 17360);
    CHECK_IDS("developer", SP, 77944);
    CHECK_IDS("commentary", SP, 12606, 815);
    CHECK_IDS("json", SP, 4108);
    /* merges that reach the longest tokens (128 spaces, 96 '='), from tiktoken */
    char run[303]; /* "x" + 300 spaces + "x" */
    memset(run, ' ', sizeof run);
    run[0] = 'x';
    run[301] = 'x';
    run[302] = 0;
    CHECK_IDS(run, SP, 87, 72056, 72056, 6322, 1215);
    memset(run, '=', 300);
    run[300] = 0;
    CHECK_IDS(run, SP, 17686, 17686, 17686, 193856, 21985);
    CHECK_IDS("<|start|>developer<|message|># Instructions\n\nAnswer briefly.\n\n<|end|>", SP,
              200006, 77944, 200008, 2, 68406, 279, 17045, 51088, 364, 200007);
    CHECK_IDS("<|start|>developer<|message|># Instructions\n\nAnswer briefly.<|end|>", SP, 200006,
              77944, 200008, 2, 68406, 279, 17045, 51088, 13, 200007);
    CHECK_IDS("<|start|>system<|message|>You are ChatGPT, a large language model trained by "
              "OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: "
              "medium\n\n# Valid channels: analysis, commentary, final. Channel must be included "
              "for every message.<|end|><|start|>user<|message|>What is 2 + "
              "2?<|end|><|start|>assistant",
              SP, 200006, 17360, 200008, 3575, 553, 17554, 162016, 11, 261, 4410, 6439, 2359, 22203,
              656, 7788, 17527, 558, 87447, 100594, 25, 220, 1323, 19, 12, 3218, 198, 6576, 3521,
              25, 220, 1323, 20, 12, 3218, 12, 2029, 279, 30377, 289, 25, 14093, 279, 2, 13888,
              18403, 25, 8450, 11, 49159, 11, 1721, 13, 21030, 2804, 413, 7360, 395, 1753, 3176, 13,
              200007, 200006, 1428, 200008, 4827, 382, 220, 17, 659, 220, 17, 30, 200007, 200006,
              173781);
    int32_t *ids = NULL;
    size_t n = 99;
    CHECK_EQ(moecl_tokenizer_encode(tok(), "", 0, SP, &ids, &n), MOECL_OK);
    CHECK_EQ(n, 0);
    free(ids);
}

/* Pieces as "a|b|c" (each piece's bytes, '|' between). */
static void check_pieces_at(const char *file, int line, const char *text, const char *want) {
    size_t n = strlen(text), *ends = NULL, n_pieces = 0;
    if (moecl_tokenizer_pretokenize(text, n, &ends, &n_pieces) != MOECL_OK) {
        moecl_test_fail(file, line, "pretokenize: %s", moecl_last_error());
        return;
    }
    char got[512];
    size_t o = 0, start = 0;
    for (size_t i = 0; i < n_pieces && o + (ends[i] - start) + 2 < sizeof got; i++) {
        if (i)
            got[o++] = '|';
        memcpy(got + o, text + start, ends[i] - start);
        o += ends[i] - start;
        start = ends[i];
    }
    got[o] = 0;
    if (strcmp(got, want) != 0)
        moecl_test_fail(file, line, "pieces of \"%s\": \"%s\" vs \"%s\"", text, got, want);
    free(ends);
}

#define CHECK_PIECES(text, want) check_pieces_at(__FILE__, __LINE__, text, want)

TEST(tokenizer_pretokenize_spec_cases) {
    /* spec §7 "good extra checks" (HF-verified goldens) */
    CHECK_PIECES("HTMLParser", "HTMLParser");
    CHECK_PIECES("ABCdEF", "ABCd|EF");
    CHECK_PIECES("aǅ", "a|ǅ");
    CHECK_PIECES("Aǅb", "Aǅb");
    CHECK_PIECES("it'ſ", "it'ſ");
    CHECK_PIECES("1's", "1|'s");
    CHECK_PIECES("'llama", "'llama");
    CHECK_PIECES("\t!", "\t|!");
    CHECK_PIECES("!\n//\n/x", "!\n//\n/|x");
    CHECK_PIECES("!\n/!", "!\n/|!");
    CHECK_PIECES("A中Cd", "A中Cd");
    CHECK_PIECES("Ab中Cd", "Ab中|Cd");
    CHECK_PIECES("\xcc\x81"
                 "A!",
                 "\xcc\x81|A|!");
    CHECK_PIECES("A\xcc\x81!", "A\xcc\x81|!");
    /* spec §3.2 behaviour list */
    CHECK_PIECES("don't", "don't");
    CHECK_PIECES("DON'T", "DON'T");
    CHECK_PIECES("it'sx", "it's|x");
    CHECK_PIECES("they'r", "they|'r");
    CHECK_PIECES("camelCase", "camel|Case");
    CHECK_PIECES("a/b", "a|/b");
    CHECK_PIECES("\tword", "\tword");
    CHECK_PIECES("\nword", "\n|word");
    CHECK_PIECES(" 123", " |123");
    CHECK_PIECES("12345678", "123|456|78");
    CHECK_PIECES("2 + 2", "2| +| |2");
    CHECK_PIECES(".\n\n", ".\n\n");
    CHECK_PIECES("\n\n", "\n\n");
    CHECK_PIECES("  \n ", "  \n| ");
    CHECK_PIECES("  a", " | a");
    CHECK_PIECES("x  ", "x|  ");
    CHECK_PIECES(" 1", " |1");
    CHECK_PIECES("!!\xcc\x81", "!!\xcc\x81");
    CHECK_PIECES("中文!", "中文|!");
    CHECK_PIECES("A中B", "A中|B");
    CHECK_PIECES("中AB!", "中|AB|!");
    CHECK_PIECES("x \r\n  \r\n  y", "x| \r\n  \r\n| | y");
    CHECK_PIECES("Hello\xc2\xa0world", "Hello|\xc2\xa0world");
    CHECK_PIECES("\xe2\x80\x8bzw", "\xe2\x80\x8bzw"); /* U+200B is not \s: a prefix */
}

TEST(tokenizer_special_tokens) {
    struct moecl_tokenizer *t = tok();
    REQUIRE(t);
    CHECK_EQ(moecl_tokenizer_vocab_size(t), 201088);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|start|>"), 200006);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|return|>"), 200002);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|call|>"), 200012);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|endofprompt|>"), 200018);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|reserved_200018|>"), 200018); /* tiktoken's alias */
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|reserved_201087|>"), 201087);
    CHECK_EQ(moecl_tokenizer_special_id(t, "<|nope|>"), -1);
    CHECK(moecl_tokenizer_is_special(t, 199998));
    CHECK(!moecl_tokenizer_is_special(t, 199997));
    CHECK(!moecl_tokenizer_is_special(t, 201088));
    size_t n = 0;
    const char *s = moecl_tokenizer_token_text(t, 200018, &n);
    REQUIRE(s);
    CHECK(strcmp(s, "<|endofprompt|>") == 0 && n == 15);
    s = moecl_tokenizer_token_text(t, 200500, &n);
    REQUIRE(s);
    CHECK(strcmp(s, "<|reserved_200500|>") == 0);
    s = moecl_tokenizer_token_text(t, 220, &n);
    REQUIRE(s);
    CHECK(strcmp(s, " ") == 0 && n == 1);
    CHECK(moecl_tokenizer_token_text(t, 201088, &n) == NULL && n == 0);
    CHECK(moecl_tokenizer_token_text(t, -1, &n) == NULL);
    /* allowed: the special's id; not allowed: ordinary text */
    CHECK_IDS("<|start|>", SP, 200006);
    CHECK_IDS("<|start|>", 0, 27, 91, 5236, 91, 29);
    /* only the 21 added tokens are recognised in text (as HF): not reserved ids above 200018 */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    REQUIRE(moecl_tokenizer_encode(t, "x<|reserved_200500|>", 20, SP, &ids, &n_ids) == MOECL_OK);
    CHECK(n_ids > 2);
    for (size_t i = 0; i < n_ids; i++)
        CHECK(ids[i] < 199998);
    free(ids);
    /* a segment ends at a special: \s+(?!\S) sees the end before <|end|> */
    CHECK_IDS("a  <|end|>", SP, 64, 256, 200007);
    CHECK_IDS("<|start|><|start|>", SP, 200006, 200006);
    CHECK_IDS("<<|end|>>", SP, 27, 200007, 29);
}

/* Random text from a mix of ASCII, Latin, CJK, emoji, marks, whitespace and specials. */
static size_t random_text(uint64_t *rng, char *buf, size_t cap) {
    /* clang-format off */
    static const char *const atoms[] = {
        "a", "Z", " ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "don't", "1", "42", "!", "...",
        "/", "é", "ǅ", "中", "文", "ʰ", "\xcc\x81", "😀", "👩‍👩‍👧", "\xc2\xa0", "\xe3\x80\x80",
        "<|end|>", "<|start|>", "ſ", "½", "Ω", "ω", "ß", "\xd8\xa7",
        "\xe0\xa4\xa8\xe0\xa5\x8d", "x",
        /* rare characters that BPE splits into several tokens */
        "\xf0\xa0\x80\x80", "\xf0\x9d\x94\x98", "\xea\x99\xae", "\xe1\x9a\xa0",
        "\xf0\x9f\xa6\xa9",
    };
    /* clang-format on */
    size_t n_atoms = sizeof atoms / sizeof atoms[0], o = 0;
    size_t len = moecl_test_rand(rng) % 40;
    for (size_t i = 0; i < len; i++) {
        const char *a = atoms[moecl_test_rand(rng) % n_atoms];
        size_t k = strlen(a);
        if (o + k + 1 > cap)
            break;
        memcpy(buf + o, a, k);
        o += k;
    }
    buf[o] = 0;
    return o;
}

TEST(tokenizer_round_trip) {
    struct moecl_tokenizer *t = tok();
    REQUIRE(t);
    uint64_t rng = 12345;
    char text[1024];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = random_text(&rng, text, sizeof text);
        for (unsigned flags = 0; flags <= SP; flags += SP) {
            int32_t *ids = NULL;
            size_t n_ids = 0;
            char *back = NULL;
            size_t n_back = 0;
            REQUIRE(moecl_tokenizer_encode(t, text, n, flags, &ids, &n_ids) == MOECL_OK);
            REQUIRE(moecl_tokenizer_decode(t, ids, n_ids, &back, &n_back) == MOECL_OK);
            if (n_back != n || memcmp(back, text, n) != 0) {
                moecl_test_fail(__FILE__, __LINE__, "round trip of \"%s\" gave \"%s\"", text, back);
                iter = 2000;
            }
            free(ids);
            free(back);
        }
    }
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t bad;
        int trunc;
        size_t len = moecl_utf8_seq((const uint8_t *)s, n, i, &bad, &trunc);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

TEST(tokenizer_stream_never_splits_utf8) {
    struct moecl_tokenizer *t = tok();
    REQUIRE(t);
    struct moecl_tokenizer_stream *stream = NULL;
    REQUIRE(moecl_tokenizer_stream_create(t, &stream) == MOECL_OK);
    uint64_t rng = 777;
    char text[1024], joined[4096];
    int n_split_tokens = 0;
    for (int iter = 0; iter < 1000; iter++) {
        size_t n = random_text(&rng, text, sizeof text);
        int32_t *ids = NULL;
        size_t n_ids = 0, o = 0;
        REQUIRE(moecl_tokenizer_encode(t, text, n, SP, &ids, &n_ids) == MOECL_OK);
        for (size_t i = 0; i <= n_ids; i++) {
            const char *piece = NULL;
            size_t n_piece = 0;
            enum moecl_status st =
                i < n_ids ? moecl_tokenizer_stream_push(stream, ids[i], &piece, &n_piece)
                          : moecl_tokenizer_stream_flush(stream, &piece, &n_piece);
            REQUIRE(st == MOECL_OK && piece);
            CHECK(strlen(piece) == n_piece);
            if (!valid_utf8(piece, n_piece))
                moecl_test_fail(__FILE__, __LINE__, "stream emitted invalid UTF-8 for \"%s\"",
                                text);
            size_t tl = 0;
            const char *token = i < n_ids ? moecl_tokenizer_token_text(t, ids[i], &tl) : NULL;
            if (token && !valid_utf8(token, tl))
                n_split_tokens++;
            REQUIRE(o + n_piece < sizeof joined);
            memcpy(joined + o, piece, n_piece);
            o += n_piece;
        }
        if (o != n || memcmp(joined, text, n) != 0)
            moecl_test_fail(__FILE__, __LINE__, "stream of \"%s\" joined to \"%.*s\"", text, (int)o,
                            joined);
        free(ids);
    }
    CHECK(n_split_tokens > 50); /* the texts did exercise tokens that split characters */
    /* a lone lead byte, then flush: U+FFFD; a stray continuation byte: U+FFFD at once */
    const char *piece;
    size_t n_piece;
    uint8_t lead = 0xe4, cont = 0x80;
    int32_t id_lead = -1, id_cont = -1;
    for (int32_t id = 0; id < 256 * 4 && (id_lead < 0 || id_cont < 0); id++) {
        size_t len;
        const char *s = moecl_tokenizer_token_text(t, id, &len);
        if (len == 1 && (uint8_t)s[0] == lead)
            id_lead = id;
        if (len == 1 && (uint8_t)s[0] == cont)
            id_cont = id;
    }
    REQUIRE(id_lead >= 0 && id_cont >= 0);
    REQUIRE(moecl_tokenizer_stream_push(stream, id_lead, &piece, &n_piece) == MOECL_OK);
    CHECK_EQ(n_piece, 0);
    REQUIRE(moecl_tokenizer_stream_flush(stream, &piece, &n_piece) == MOECL_OK);
    CHECK(n_piece == 3 && memcmp(piece, "\xef\xbf\xbd", 3) == 0);
    REQUIRE(moecl_tokenizer_stream_push(stream, id_cont, &piece, &n_piece) == MOECL_OK);
    CHECK(n_piece == 3 && memcmp(piece, "\xef\xbf\xbd", 3) == 0);
    /* a lead byte followed by ASCII: U+FFFD then the ASCII */
    REQUIRE(moecl_tokenizer_stream_push(stream, id_lead, &piece, &n_piece) == MOECL_OK);
    REQUIRE(moecl_tokenizer_stream_push(stream, 64, &piece, &n_piece) == MOECL_OK);
    CHECK(n_piece == 4 && memcmp(piece,
                                 "\xef\xbf\xbd"
                                 "a",
                                 4) == 0);
    /* a bad id leaves the stream as it was */
    REQUIRE(moecl_tokenizer_stream_push(stream, id_lead, &piece, &n_piece) == MOECL_OK);
    CHECK_EQ(moecl_tokenizer_stream_push(stream, 201088, &piece, &n_piece), MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "201088");
    REQUIRE(moecl_tokenizer_stream_flush(stream, &piece, &n_piece) == MOECL_OK);
    CHECK(n_piece == 3);
    moecl_tokenizer_stream_release(stream);
    moecl_tokenizer_stream_release(NULL);
}

/* encode(bytes) must equal encode(bytes with each maximal invalid subpart -> U+FFFD) */
static void check_replaced_at(const char *file, int line, const char *bad, size_t n_bad,
                              const char *fixed) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (moecl_tokenizer_encode(tok(), bad, n_bad, SP, &a, &na) != MOECL_OK ||
        moecl_tokenizer_encode(tok(), fixed, strlen(fixed), SP, &b, &nb) != MOECL_OK) {
        moecl_test_fail(file, line, "encode failed: %s", moecl_last_error());
    } else if (na != nb || (na && memcmp(a, b, na * sizeof *a) != 0)) {
        moecl_test_fail(file, line, "invalid input %zu bytes: %zu ids vs %zu for its replacement",
                        n_bad, na, nb);
    }
    free(a);
    free(b);
}

#define CHECK_REPLACED(bad, fixed) check_replaced_at(__FILE__, __LINE__, bad, sizeof bad - 1, fixed)
#define FFFD "\xef\xbf\xbd"

TEST(tokenizer_invalid_utf8) {
    REQUIRE(tok());
    CHECK_REPLACED("abc\xff"
                   "def",
                   "abc" FFFD "def");
    CHECK_REPLACED("\x80", FFFD);
    CHECK_REPLACED("\xc0\xaf", FFFD FFFD);                   /* overlong: C0 is never valid */
    CHECK_REPLACED("\xe0\x80\x80", FFFD FFFD FFFD);          /* E0 needs A0..BF next */
    CHECK_REPLACED("\xed\xa0\x80", FFFD FFFD FFFD);          /* a surrogate */
    CHECK_REPLACED("\xf0\x9f\x98", FFFD);                    /* truncated at the end: one */
    CHECK_REPLACED("\xf0\x9f\x98x", FFFD "x");               /* truncated before ASCII: one */
    CHECK_REPLACED("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    CHECK_REPLACED("\xe4\xb8\xad\xe4", "中" FFFD);
    CHECK_REPLACED("don\x92t", "don" FFFD "t");
    CHECK_REPLACED("<|end|>\xff<|start|>", "<|end|>" FFFD "<|start|>");
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ(moecl_tokenizer_encode(tok(), "abc\xff", 4, SP | MOECL_ENCODE_STRICT_UTF8, &ids, &n),
             MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "invalid UTF-8 at byte 3");
    CHECK(ids == NULL && n == 0);
    size_t *ends = NULL;
    CHECK_EQ(moecl_tokenizer_pretokenize("\xff", 1, &ends, &n), MOECL_ERR_INVALID_ARG);
    /* decode gives the bytes back as they are */
    int32_t bytes_ids[2] = {-1, -1};
    for (int32_t id = 0; id < 1024; id++) {
        size_t len;
        const char *s = moecl_tokenizer_token_text(tok(), id, &len);
        if (len == 1 && (uint8_t)s[0] == 0xff)
            bytes_ids[0] = bytes_ids[1] = id;
    }
    char *out = NULL;
    REQUIRE(moecl_tokenizer_decode(tok(), bytes_ids, 2, &out, &n) == MOECL_OK);
    CHECK(n == 2 && (uint8_t)out[0] == 0xff);
    free(out);
    int32_t bad_id = 201088;
    CHECK_EQ(moecl_tokenizer_decode(tok(), &bad_id, 1, &out, &n), MOECL_ERR_INVALID_ARG);
    CHECK(out == NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

TEST(tokenizer_long_runs) {
    struct moecl_tokenizer *t = tok();
    REQUIRE(t);
    const size_t n = 1 << 18;
    char *text = malloc(n + 2);
    REQUIRE(text);
    const char *fills[] = {" ", "a", "\n", "7", "!", "\xe3\x80\x80", "\xcc\x81", "ab", " \n"};
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        size_t k = strlen(fills[f]), len = 0;
        while (len + k <= n) {
            memcpy(text + len, fills[f], k);
            len += k;
        }
        text[len++] = 'x'; /* a word after the run: the whitespace rules' look-ahead */
        double t0 = now_s();
        int32_t *ids = NULL;
        size_t n_ids = 0;
        char *back = NULL;
        size_t n_back = 0;
        REQUIRE(moecl_tokenizer_encode(t, text, len, SP, &ids, &n_ids) == MOECL_OK);
        double dt = now_s() - t0;
        REQUIRE(moecl_tokenizer_decode(t, ids, n_ids, &back, &n_back) == MOECL_OK);
        CHECK(n_back == len && memcmp(back, text, len) == 0);
        CHECK(n_ids < len);
        /* 256 KiB in well under a second even under ASan: nothing quadratic */
        if (dt > 5.0)
            moecl_test_fail(__FILE__, __LINE__, "256 KiB run of \"%s\" took %.2f s", fills[f], dt);
        free(ids);
        free(back);
    }
    free(text);
}

TEST(tokenizer_bpe_algorithms_agree) {
    struct moecl_tokenizer *t = tok();
    REQUIRE(t);
    static const char alphabet[] = "eeeeaaattttnnnsssrrhhll  dd..,,ioumTQ";
    uint64_t rng = 99;
    uint8_t piece[600];
    size_t n_bytes = 0, n_ids = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 2 + moecl_test_rand(&rng) % (iter < 2500 ? 60 : 590);
        for (size_t i = 0; i < n; i++)
            piece[i] = (uint8_t)alphabet[moecl_test_rand(&rng) % (sizeof alphabet - 1)];
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        REQUIRE(moecl_tokenizer_bpe_piece(t, piece, n, MOECL_BPE_SCAN, &a, &na) == MOECL_OK);
        REQUIRE(moecl_tokenizer_bpe_piece(t, piece, n, MOECL_BPE_HEAP, &b, &nb) == MOECL_OK);
        if (na != nb || memcmp(a, b, na * sizeof *a) != 0) {
            moecl_test_fail(__FILE__, __LINE__, "scan and heap BPE differ on \"%.*s\"", (int)n,
                            (const char *)piece);
            iter = 3000;
        }
        n_bytes += n;
        n_ids += na;
        free(a);
        free(b);
    }
    CHECK(n_ids < n_bytes / 2); /* the pieces did merge a lot */
}

TEST(tokenizer_unicode_table) {
    CHECK(strcmp(moecl_unicode_version, "15.0.0") == 0);
    const unsigned up = MOECL_UC_UP, lo = MOECL_UC_LO, let = MOECL_UC_LETTER, mark = MOECL_UC_MARK;
    CHECK_EQ(moecl_unicode_class('A'), up | let);
    CHECK_EQ(moecl_unicode_class('a'), lo | let);
    CHECK_EQ(moecl_unicode_class(0x01c5), up | let);      /* ǅ Lt: upper only */
    CHECK_EQ(moecl_unicode_class(0x02b0), up | lo | let); /* ʰ Lm: both */
    CHECK_EQ(moecl_unicode_class(0x4e2d), up | lo | let); /* 中 Lo */
    CHECK_EQ(moecl_unicode_class(0x9fff), up | lo | let); /* inside a First/Last range */
    CHECK_EQ(moecl_unicode_class(0x0301), up | lo | mark);
    CHECK_EQ(moecl_unicode_class(0x20dd), up | lo | mark); /* Me */
    CHECK_EQ(moecl_unicode_class('5'), MOECL_UC_NUMBER);
    CHECK_EQ(moecl_unicode_class(0x00bd), MOECL_UC_NUMBER); /* ½ No */
    CHECK_EQ(moecl_unicode_class(0x2167), MOECL_UC_NUMBER); /* Ⅷ Nl */
    CHECK_EQ(moecl_unicode_class(0x017f), lo | let);        /* ſ */
    CHECK_EQ(moecl_unicode_class('!'), 0);
    CHECK_EQ(moecl_unicode_class(0xe000), 0);   /* private use */
    CHECK_EQ(moecl_unicode_class(0x10ffff), 0); /* noncharacter */
    CHECK_EQ(moecl_unicode_class(0x110000), 0);
    int n_space = 0;
    for (uint32_t c = 0; c < 0x110000; c++)
        n_space += (moecl_unicode_class(c) & MOECL_UC_SPACE) != 0;
    CHECK_EQ(n_space, 25);
    CHECK(moecl_unicode_class(0x3000) & MOECL_UC_SPACE);
    CHECK(moecl_unicode_class(0x0085) & MOECL_UC_SPACE);
    CHECK(!(moecl_unicode_class(0x180e) & MOECL_UC_SPACE));
    CHECK(!(moecl_unicode_class(0x200b) & MOECL_UC_SPACE));
    CHECK(!(moecl_unicode_class(0xfeff) & MOECL_UC_SPACE));
}

TEST(tokenizer_null_arguments) {
    int32_t *ids = (int32_t *)&ids;
    size_t n = 5;
    CHECK_EQ(moecl_tokenizer_encode(NULL, "a", 1, 0, &ids, &n), MOECL_ERR_INVALID_ARG);
    CHECK(ids == NULL && n == 0);
    struct moecl_tokenizer *t = (struct moecl_tokenizer *)&n;
    CHECK_EQ(moecl_tokenizer_load(NULL, &t), MOECL_ERR_INVALID_ARG);
    CHECK(t == NULL);
    moecl_tokenizer_release(NULL);
    CHECK_EQ(moecl_tokenizer_vocab_size(NULL), 0);
    CHECK_EQ(moecl_tokenizer_special_id(NULL, "<|start|>"), -1);
}
