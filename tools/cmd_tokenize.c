/* moecl tokenize: encode text to ids or decode ids to text with a checkpoint's tokenizer or a
 * .tiktoken rank file. tests/reference/tokenizer_check.py drives it record by record. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: moecl tokenize (-m DIR | --tiktoken FILE | --tokenizer FILE | --pieces) [options]\n"
        "\n"
        "Encodes text (default) or decodes ids (--decode). Input: --text STR, --file F, or\n"
        "standard input.\n"
        "\n"
        "  -m, --model DIR     checkpoint directory (its tokenizer.json)\n"
        "  --tiktoken FILE     an o200k_base .tiktoken rank file (o200k_harmony specials added)\n"
        "  --tokenizer FILE    a tokenizer.json file\n"
        "  --text STR          the input text\n"
        "  --file F            read the input from F\n"
        "  --lines             one record per input line (without its newline); one output\n"
        "                      line per record\n"
        "  --hex               records are hex-encoded bytes (input of encode, output of\n"
        "                      decode), so any byte string fits on a line\n"
        "  --json              print each record's ids as a JSON array (encode), or a JSON\n"
        "                      string (decode)\n"
        "  --decode            input is ids (decimal, separated by spaces or commas); prints\n"
        "                      the text as the stream decoder produces it (whole UTF-8\n"
        "                      characters, invalid sequences as U+FFFD)\n"
        "  --no-special        encode special-token text (\"<|start|>\") as ordinary text\n"
        "  --strict-utf8       fail on invalid UTF-8 instead of replacing it with U+FFFD\n"
        "  --bench N           encode the whole input N times; print MB/s per run to stderr\n"
        "  --write-json OUT    with --tiktoken: write the gpt-oss tokenizer.json to OUT\n");
}

static int read_all(FILE *f, char **data_out, size_t *n_out) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        char *grown = realloc(buf, cap + 1);
        if (!grown)
            free(buf);
        buf = grown;
    }
    if (!buf || ferror(f)) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *data_out = buf;
    *n_out = n;
    return 0;
}

static int hex_value(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In place; returns the decoded length or -1. */
static long unhex(char *s, size_t n) {
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        s[i / 2] = (char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

struct opts {
    int json, hex, decode, pieces;
    unsigned flags;
};

static int encode_record(const struct moecl_tokenizer *tok, const struct opts *o, char *text,
                         size_t n, FILE *out) {
    if (o->hex) {
        long k = unhex(text, n);
        if (k < 0) {
            fprintf(stderr, "moecl: error: --hex input is not hex: \"%.40s\"\n", text);
            return 1;
        }
        n = (size_t)k;
    }
    if (o->pieces) {
        size_t *ends = NULL, n_pieces = 0;
        enum moecl_status st = moecl_tokenizer_pretokenize(text, n, &ends, &n_pieces);
        if (st != MOECL_OK)
            return moecl_cli_fail("pretokenize", st);
        for (size_t i = 0; i < n_pieces; i++)
            fprintf(out, i ? " %zu" : "%zu", ends[i] - (i ? ends[i - 1] : 0));
        fputc('\n', out);
        free(ends);
        return 0;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    enum moecl_status st = moecl_tokenizer_encode(tok, text, n, o->flags, &ids, &n_ids);
    if (st != MOECL_OK)
        return moecl_cli_fail("encode", st);
    if (o->json)
        fputc('[', out);
    for (size_t i = 0; i < n_ids; i++)
        fprintf(out, o->json ? (i ? ", %d" : "%d") : (i ? " %d" : "%d"), (int)ids[i]);
    fputs(o->json ? "]\n" : "\n", out);
    free(ids);
    return 0;
}

static void put_text(const struct opts *o, const char *p, size_t n, FILE *out) {
    if (o->hex) {
        for (size_t i = 0; i < n; i++)
            fprintf(out, "%02x", (unsigned char)p[i]);
    } else {
        fwrite(p, 1, n, out);
    }
}

static int decode_record(const struct moecl_tokenizer *tok, const struct opts *o, char *text,
                         FILE *out) {
    struct moecl_tokenizer_stream *stream = NULL;
    enum moecl_status st = moecl_tokenizer_stream_create(tok, &stream);
    if (st != MOECL_OK)
        return moecl_cli_fail("decode", st);
    int rc = 0;
    const char *piece;
    size_t n_piece;
    /* JSON output needs the whole text first; collect it */
    char *all = NULL;
    size_t n_all = 0, cap = 0;
    for (char *p = text;;) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno) {
            fprintf(stderr, "moecl: error: --decode: not an id: \"%.20s\"\n", p);
            rc = 1;
            break;
        }
        p = end;
        st = moecl_tokenizer_stream_push(stream, (int32_t)id, &piece, &n_piece);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("decode", st);
            break;
        }
        if (n_all + n_piece + 1 > cap) {
            cap = 2 * (n_all + n_piece) + 64;
            char *grown = realloc(all, cap);
            if (!grown) {
                rc = 1;
                break;
            }
            all = grown;
        }
        memcpy(all + n_all, piece, n_piece);
        n_all += n_piece;
    }
    if (rc == 0) {
        st = moecl_tokenizer_stream_flush(stream, &piece, &n_piece);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("decode", st);
        } else {
            char *grown = realloc(all, n_all + n_piece + 1);
            if (grown) {
                all = grown;
                memcpy(all + n_all, piece, n_piece);
                n_all += n_piece;
                all[n_all] = 0;
            } else {
                rc = 1;
            }
        }
    }
    if (rc == 0) {
        if (o->json && !o->hex) {
            moecl_cli_json_str(out, all ? all : "");
        } else {
            put_text(o, all, n_all, out);
        }
        fputc('\n', out);
    }
    free(all);
    moecl_tokenizer_stream_release(stream);
    return rc;
}

static int bench(const struct moecl_tokenizer *tok, const struct opts *o, const char *text,
                 size_t n, int runs) {
    size_t n_ids_first = 0;
    for (int r = 0; r < runs; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        enum moecl_status st = moecl_tokenizer_encode(tok, text, n, o->flags, &ids, &n_ids);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        free(ids);
        if (st != MOECL_OK)
            return moecl_cli_fail("encode", st);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (r == 0)
            n_ids_first = n_ids;
        fprintf(stderr, "run %d: %zu bytes -> %zu tokens in %.4f s: %.2f MB/s\n", r + 1, n, n_ids,
                s, (double)n / s / 1e6);
    }
    printf("%zu\n", n_ids_first);
    return 0;
}

MOECL_COMMAND(tokenize, "encode text to token ids or decode ids (exactness checks, debugging)") {
    const char *model = NULL, *tiktoken = NULL, *tokenizer = NULL, *text_arg = NULL;
    const char *file = NULL, *write_json = NULL;
    int lines = 0, runs = 0;
    struct opts o = {0, 0, 0, 0, MOECL_ENCODE_ALLOW_SPECIAL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_value)
            model = argv[++i];
        else if (!strcmp(a, "--tiktoken") && has_value)
            tiktoken = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has_value)
            tokenizer = argv[++i];
        else if (!strcmp(a, "--text") && has_value)
            text_arg = argv[++i];
        else if (!strcmp(a, "--file") && has_value)
            file = argv[++i];
        else if (!strcmp(a, "--write-json") && has_value)
            write_json = argv[++i];
        else if (!strcmp(a, "--bench") && has_value)
            runs = atoi(argv[++i]);
        else if (!strcmp(a, "--lines"))
            lines = 1;
        else if (!strcmp(a, "--hex"))
            o.hex = 1;
        else if (!strcmp(a, "--json"))
            o.json = 1;
        else if (!strcmp(a, "--pieces"))
            o.pieces = 1;
        else if (!strcmp(a, "--decode"))
            o.decode = 1;
        else if (!strcmp(a, "--no-special"))
            o.flags &= ~(unsigned)MOECL_ENCODE_ALLOW_SPECIAL;
        else if (!strcmp(a, "--strict-utf8"))
            o.flags |= MOECL_ENCODE_STRICT_UTF8;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "moecl tokenize: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!!model + !!tiktoken + !!tokenizer != 1 && !o.pieces) {
        fprintf(stderr, "moecl tokenize: give exactly one of -m DIR, --tiktoken FILE, "
                        "--tokenizer FILE\n");
        usage(stderr);
        return 2;
    }
    if (write_json) {
        if (!tiktoken) {
            fprintf(stderr, "moecl tokenize: --write-json needs --tiktoken FILE\n");
            return 2;
        }
        enum moecl_status st = moecl_tokenizer_write_json(tiktoken, write_json);
        return st == MOECL_OK ? 0 : moecl_cli_fail("writing tokenizer.json", st);
    }
    struct moecl_tokenizer *tok = NULL;
    if (!o.pieces) {
        const char *source = model ? model : tiktoken ? tiktoken : tokenizer;
        enum moecl_status st = moecl_tokenizer_load(source, &tok);
        if (st != MOECL_OK)
            return moecl_cli_fail("loading the tokenizer", st);
    }
    char *input = NULL;
    size_t n_input = 0;
    int rc = 0;
    if (text_arg) {
        n_input = strlen(text_arg);
        input = malloc(n_input + 1);
        if (input)
            memcpy(input, text_arg, n_input + 1);
    } else {
        FILE *f = file ? fopen(file, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "moecl: error: %s: %s\n", file, strerror(errno));
            moecl_tokenizer_release(tok);
            return 1;
        }
        if (read_all(f, &input, &n_input) != 0)
            input = NULL;
        if (file)
            fclose(f);
    }
    if (!input) {
        fprintf(stderr, "moecl: error: reading the input failed\n");
        moecl_tokenizer_release(tok);
        return 1;
    }
    if (runs > 0) {
        rc = bench(tok, &o, input, n_input, runs);
    } else if (!lines) {
        rc = o.decode ? decode_record(tok, &o, input, stdout)
                      : encode_record(tok, &o, input, n_input, stdout);
    } else {
        size_t start = 0;
        while (rc == 0 && start < n_input) {
            char *nl = memchr(input + start, '\n', n_input - start);
            size_t end = nl ? (size_t)(nl - input) : n_input;
            input[end] = 0;
            rc = o.decode ? decode_record(tok, &o, input + start, stdout)
                          : encode_record(tok, &o, input + start, end - start, stdout);
            start = end + 1;
        }
    }
    if (fflush(stdout) != 0)
        rc = 1;
    free(input);
    moecl_tokenizer_release(tok);
    return rc;
}
