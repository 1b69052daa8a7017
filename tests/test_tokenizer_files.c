/* Tokenizer files: the tokenizer.json writer and reader, and clear errors for truncated or
 * corrupt .tiktoken and tokenizer.json files. */
#include "test.h"

#include "moecl.h"
#include "tokenizer_json.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *tiktoken_path(void) {
    const char *p = getenv("MOECL_TIKTOKEN");
    return p && *p ? p : "data/o200k_base.tiktoken";
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Encodes the same texts with two tokenizers; returns the number of differing texts. */
static int n_differ(const struct moecl_tokenizer *a, const struct moecl_tokenizer *b) {
    static const char *const texts[] = {
        "hello world",       "<|start|>user<|message|>What is 2 + 2?<|end|>",
        "DON'T stop",        "中文! Café déjà vu\r\n\t  x  ",
        "12345678 a/b !\n/", "😀👩‍👩‍👧 ſ'S",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        if (moecl_tokenizer_encode(a, texts[i], strlen(texts[i]), MOECL_ENCODE_ALLOW_SPECIAL, &x,
                                   &nx) != MOECL_OK ||
            moecl_tokenizer_encode(b, texts[i], strlen(texts[i]), MOECL_ENCODE_ALLOW_SPECIAL, &y,
                                   &ny) != MOECL_OK ||
            nx != ny || memcmp(x, y, nx * sizeof *x) != 0)
            bad++;
        free(x);
        free(y);
    }
    return bad;
}

/* FNV-1a 64 of a file's bytes (0 if unreadable). */
static uint64_t file_fnv1a(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    int c;
    while ((c = getc(f)) != EOF)
        h = (h ^ (uint64_t)c) * 0x100000001b3ull;
    fclose(f);
    return h;
}

TEST(tokenizer_json_write_and_load) {
    char *dir = moecl_test_tmpdir("tokjson");
    REQUIRE(dir);
    char *json = path_in(dir, "tokenizer.json");
    REQUIRE(json);
    REQUIRE(moecl_tokenizer_json_write(tiktoken_path(), json) == MOECL_OK);
    struct stat sb;
    REQUIRE(stat(json, &sb) == 0);
    /* the bytes HF tokenizers 0.23 saves for transformers' converter rules on these ranks, which
     * are also openai/gpt-oss-20b's published tokenizer.json (sha256 0614fe83...07d3; make
     * tokcheck checks the sha256 and rebuilds the HF file to compare byte for byte) */
    CHECK_EQ(sb.st_size, 27868174);
    CHECK(file_fnv1a(json) == 0xd71ba5e2760c1f71ull);
    struct moecl_tokenizer *from_tt = NULL, *from_dir = NULL, *from_file = NULL;
    REQUIRE(moecl_tokenizer_load(tiktoken_path(), &from_tt) == MOECL_OK);
    CHECK(moecl_tokenizer_load(dir, &from_dir) == MOECL_OK);
    CHECK(moecl_tokenizer_load(json, &from_file) == MOECL_OK);
    if (from_dir && from_file) {
        CHECK_EQ(n_differ(from_tt, from_dir), 0);
        CHECK_EQ(n_differ(from_tt, from_file), 0);
        CHECK_EQ(moecl_tokenizer_vocab_size(from_dir), 201088);
        CHECK_EQ(moecl_tokenizer_special_id(from_dir, "<|endofprompt|>"), 200018);
        CHECK_EQ(moecl_tokenizer_special_id(from_dir, "<|call|>"), 200012);
    }
    /* the public wrapper writes the same file */
    char *again = path_in(dir, "again.json");
    REQUIRE(again);
    CHECK(moecl_tokenizer_write_json(tiktoken_path(), again) == MOECL_OK);
    CHECK(stat(again, &sb) == 0 && sb.st_size == 27868174);
    moecl_tokenizer_release(from_tt);
    moecl_tokenizer_release(from_dir);
    moecl_tokenizer_release(from_file);
    free(again);
    free(json);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Writes `text` to dir/name and expects loading it to fail with `status` and a message that
 * contains `needle`. */
static void expect_load_error_at(const char *file, int line, const char *dir, const char *name,
                                 const char *text, size_t n, enum moecl_status status,
                                 const char *needle) {
    char *path = path_in(dir, name);
    if (!path || moecl_test_write_file(path, text, n) != 0) {
        moecl_test_fail(file, line, "cannot write %s", name);
        free(path);
        return;
    }
    struct moecl_tokenizer *t = (struct moecl_tokenizer *)&t;
    enum moecl_status st = moecl_tokenizer_load(path, &t);
    if (st != status || t != NULL || !strstr(moecl_last_error(), needle))
        moecl_test_fail(file, line, "%s: got %s \"%s\", expected %s containing \"%s\"", name,
                        moecl_status_str(st), moecl_last_error(), moecl_status_str(status), needle);
    if (st == MOECL_OK)
        moecl_tokenizer_release(t);
    free(path);
}

#define EXPECT_LOAD_ERROR(dir, name, text, status, needle)                                         \
    expect_load_error_at(__FILE__, __LINE__, dir, name, text, strlen(text), status, needle)

TEST(tokenizer_bad_tiktoken_files) {
    char *dir = moecl_test_tmpdir("badtt");
    REQUIRE(dir);
    EXPECT_LOAD_ERROR(dir, "empty.tiktoken", "", MOECL_ERR_FORMAT, "not a .tiktoken");
    EXPECT_LOAD_ERROR(dir, "nospace.tiktoken", "IQ==0\n", MOECL_ERR_FORMAT, ":1: expected");
    EXPECT_LOAD_ERROR(dir, "badb64.tiktoken", "IQ== 0\n!!!! 1\n", MOECL_ERR_FORMAT,
                      ":2: bad base64");
    EXPECT_LOAD_ERROR(dir, "badrank.tiktoken", "IQ== 0\nIg== x\n", MOECL_ERR_FORMAT, ":2:");
    EXPECT_LOAD_ERROR(dir, "bigrank.tiktoken", "IQ== 0\nIg== 7\n", MOECL_ERR_FORMAT,
                      "rank below 2");
    EXPECT_LOAD_ERROR(dir, "duprank.tiktoken", "IQ== 0\nIg== 0\n", MOECL_ERR_FORMAT,
                      "rank 0 appears twice");
    EXPECT_LOAD_ERROR(dir, "dupbytes.tiktoken", "IQ== 0\nIQ== 1\n", MOECL_ERR_FORMAT, "same bytes");
    EXPECT_LOAD_ERROR(dir, "fewbytes.tiktoken", "IQ== 0\nIg== 1\n", MOECL_ERR_UNSUPPORTED,
                      "is not a token");
    /* a truncated copy of the real file: its last line is cut in the middle */
    FILE *f = fopen(tiktoken_path(), "rb");
    REQUIRE(f);
    char *buf = malloc(1 << 20);
    REQUIRE(buf);
    size_t n = fread(buf, 1, (1 << 20) - 3, f);
    fclose(f);
    REQUIRE(n > 1000);
    expect_load_error_at(__FILE__, __LINE__, dir, "cut.tiktoken", buf, n, MOECL_ERR_FORMAT,
                         "cut.tiktoken:");
    /* whole lines but not all ranks: no o200k specials can be added (the ids would overlap) */
    while (n > 0 && buf[n - 1] != '\n')
        n--;
    expect_load_error_at(__FILE__, __LINE__, dir, "short.tiktoken", buf, n, MOECL_ERR_UNSUPPORTED,
                         "199998-token");
    free(buf);
    struct moecl_tokenizer *t = NULL;
    char *missing = path_in(dir, "missing.tiktoken");
    REQUIRE(missing);
    CHECK_EQ(moecl_tokenizer_load(missing, &t), MOECL_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(moecl_last_error(), "missing.tiktoken");
    CHECK_EQ(moecl_tokenizer_load(dir, &t), MOECL_ERR_NOT_FOUND); /* a dir without the json */
    CHECK_STR_CONTAINS(moecl_last_error(), "no tokenizer.json");
    CHECK(t == NULL);
    free(missing);
    moecl_test_rmtree(dir);
    free(dir);
}

/* A small but complete gpt-oss style tokenizer.json: the 256 byte tokens, "ab" and "abc". The
 * parts in `edit` replace the defaults to break one thing at a time. */
struct json_edit {
    const char *model_type;    /* "BPE" */
    const char *ignore_merges; /* "true" */
    const char *regex;         /* o200k */
    const char *merges;        /* [["a","b"],["ab","c"]] */
    const char *added;         /* one special token */
    int ab_id;                 /* 256 */
};

static char *small_json(const struct json_edit *e) {
    size_t cap = 1 << 16, o = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    o += (size_t)snprintf(s + o, cap - o,
                          "{\"version\": \"1.0\", \"added_tokens\": [%s], \"normalizer\": null,"
                          "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                          "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"",
                          e->added ? e->added
                                   : "{\"id\": 258, \"content\": \"<|x|>\", \"special\": true, "
                                     "\"lstrip\": false, \"rstrip\": false, \"normalized\": "
                                     "false, \"single_word\": false}");
    const char *rx = e->regex ? e->regex : moecl_o200k_pattern;
    for (const char *p = rx; *p && o + 4 < cap; p++) {
        if (*p == '\\' || *p == '"')
            s[o++] = '\\';
        s[o++] = *p;
    }
    o += (size_t)snprintf(s + o, cap - o,
                          "\"}, \"behavior\": \"Isolated\", \"invert\": false},"
                          "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": "
                          "false}]}, \"model\": {\"type\": \"%s\", \"ignore_merges\": %s, "
                          "\"vocab\": {",
                          e->model_type ? e->model_type : "BPE",
                          e->ignore_merges ? e->ignore_merges : "true");
    for (int b = 0; b < 256; b++) {
        uint32_t c = moecl_bytelevel_char((uint8_t)b);
        char u[8];
        if (c == '"' || c == '\\')
            snprintf(u, sizeof u, "\\%c", (char)c);
        else if (c < 0x80)
            snprintf(u, sizeof u, "%c", (char)c);
        else
            snprintf(u, sizeof u, "%c%c", (char)(0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f)));
        o += (size_t)snprintf(s + o, cap - o, "\"%s\": %d, ", u, b);
    }
    o += (size_t)snprintf(s + o, cap - o, "\"ab\": %d, \"abc\": 257}, \"merges\": %s}}",
                          e->ab_id ? e->ab_id : 256,
                          e->merges ? e->merges : "[[\"a\", \"b\"], [\"ab\", \"c\"]]");
    return s;
}

static void expect_json_at(const char *file, int line, const char *dir, const struct json_edit *e,
                           enum moecl_status status, const char *needle) {
    char *text = small_json(e);
    if (!text) {
        moecl_test_fail(file, line, "out of memory");
        return;
    }
    expect_load_error_at(file, line, dir, "tokenizer.json", text, strlen(text), status, needle);
    free(text);
}

TEST(tokenizer_bad_json_files) {
    char *dir = moecl_test_tmpdir("badjson");
    REQUIRE(dir);
    /* the small file itself loads, and "abc" is one token; "<|x|>" is special */
    struct json_edit ok = {0};
    char *text = small_json(&ok);
    REQUIRE(text);
    char *path = path_in(dir, "tokenizer.json");
    REQUIRE(path && moecl_test_write_file(path, text, strlen(text)) == 0);
    struct moecl_tokenizer *t = NULL;
    if (moecl_tokenizer_load(dir, &t) != MOECL_OK) {
        moecl_test_fail(__FILE__, __LINE__, "small tokenizer.json: %s", moecl_last_error());
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(moecl_tokenizer_encode(t, "abc<|x|>ab", 10, MOECL_ENCODE_ALLOW_SPECIAL, &ids, &n) ==
              MOECL_OK);
        CHECK(n == 3 && ids[0] == 257 && ids[1] == 258 && ids[2] == 256);
        free(ids);
        moecl_tokenizer_release(t);
    }
    /* truncated JSON: every cut point near the start, middle and end */
    size_t len = strlen(text);
    size_t cuts[] = {0, 1, 10, len / 2, len - 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        expect_load_error_at(__FILE__, __LINE__, dir, "tokenizer.json", text, cuts[i],
                             MOECL_ERR_FORMAT, cuts[i] ? "invalid JSON near byte" : "");
    free(text);
    EXPECT_LOAD_ERROR(dir, "tokenizer.json", "{\"model\": 3}", MOECL_ERR_UNSUPPORTED, "model.type");
    struct json_edit e;
    e = ok;
    e.model_type = "WordPiece";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "model.type");
    e = ok;
    e.ignore_merges = "false";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "ignore_merges");
    e = ok;
    e.regex = "\\s+";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "not the o200k pattern");
    e = ok;
    e.merges = "[[\"ab\", \"c\"], [\"a\", \"b\"]]";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "not in rank order");
    e = ok;
    e.merges = "[\"a b\", \"ab c\"]"; /* the older string form is accepted */
    text = small_json(&e);
    REQUIRE(text);
    REQUIRE(moecl_test_write_file(path, text, strlen(text)) == 0);
    CHECK(moecl_tokenizer_load(path, &t) == MOECL_OK);
    moecl_tokenizer_release(t);
    free(text);
    e = ok;
    e.merges = "[[\"a\", \"b\"]]";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "ranks imply 2");
    e = ok;
    e.merges = "[[\"a\", \"b\"], [\"a\", \"bc\"]]";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "model.merges[1]");
    e = ok;
    e.ab_id = 300;
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "dense");
    e = ok;
    e.added = "{\"id\": 258, \"content\": \"<|x|>\", \"special\": true, \"lstrip\": true}";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "lstrip");
    e = ok;
    e.added = "{\"id\": 5, \"content\": \"<|x|>\", \"special\": true}";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_UNSUPPORTED, "inside the BPE vocab");
    e = ok;
    e.added = "{\"content\": \"<|x|>\"}";
    expect_json_at(__FILE__, __LINE__, dir, &e, MOECL_ERR_FORMAT, "added_tokens[0]");
    free(path);
    moecl_test_rmtree(dir);
    free(dir);
}

/* `moecl tokenize`, as the exactness script drives it. */
static void expect_cli_at(const char *file, int line, const char *args, int want_rc,
                          const char *want_out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tokenize %s", moecl_test_bin(), args);
    char *out = NULL;
    int rc = moecl_test_run(cmd, &out);
    if (rc != want_rc || !out || !strstr(out, want_out))
        moecl_test_fail(file, line, "%s: exit %d \"%s\", expected exit %d with \"%s\"", cmd, rc,
                        out ? out : "", want_rc, want_out);
    free(out);
}

#define EXPECT_CLI(args, rc, out) expect_cli_at(__FILE__, __LINE__, args, rc, out)

TEST(tokenizer_cli) {
    char tt[512];
    snprintf(tt, sizeof tt, "--tiktoken %s", tiktoken_path());
    char args[1024];
    snprintf(args, sizeof args, "%s --text 'hello world'", tt);
    EXPECT_CLI(args, 0, "24912 2375\n");
    snprintf(args, sizeof args, "%s --json --text '<|start|>hi'", tt);
    EXPECT_CLI(args, 0, "[200006, 3686]\n");
    snprintf(args, sizeof args, "%s --no-special --text '<|end|>'", tt);
    EXPECT_CLI(args, 0, "27 91 419 91 29\n");
    snprintf(args, sizeof args, "%s --decode --text '24912 2375 200007'", tt);
    EXPECT_CLI(args, 0, "hello world<|end|>\n");
    /* records: hex in, one line of ids out per record (0xff is encoded as U+FFFD); a lone lead
     * byte decodes to U+FFFD */
    snprintf(args, sizeof args, "%s --lines --hex --text \"$(printf '6869\\n\\nff\\n')\"", tt);
    EXPECT_CLI(args, 0, "3686\n\n3251\n");
    snprintf(args, sizeof args, "%s --decode --hex --text 172", tt);
    EXPECT_CLI(args, 0, "efbfbd\n");
    EXPECT_CLI("--pieces --text 'ABCdEF  a'", 0, "4 2 1 2\n");
    snprintf(args, sizeof args, "%s --strict-utf8 --text \"$(printf 'a\\377')\"", tt);
    EXPECT_CLI(args, 1, "invalid UTF-8 at byte 1");
    EXPECT_CLI("--tiktoken /nonexistent/o200k.tiktoken --text x", 1, "/nonexistent/o200k.tiktoken");
    EXPECT_CLI("--text x", 2, "exactly one of");
}
