/* libFuzzer target: the o200k_harmony tokenizer on arbitrary bytes.
 *
 * The first byte picks the encode flags; the rest is the text. Invariants: encode never fails
 * without STRICT_UTF8; decode(encode(text)) gives the text back when it is valid UTF-8 and
 * valid UTF-8 otherwise (invalid sequences became U+FFFD); the pre-tokenizer's pieces tile valid
 * text; the stream decoder emits only valid UTF-8 and, joined, the same text as decode.
 * The rank file is data/o200k_base.tiktoken (run from the repository root) or $MOECL_TIKTOKEN. */
#include "moecl.h"
#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct moecl_tokenizer *g_tok;

static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t bad;
        int trunc;
        size_t len = moecl_utf8_seq(s, n, i, &bad, &trunc);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) {
        const char *path = getenv("MOECL_TIKTOKEN");
        if (moecl_tokenizer_load(path && *path ? path : "data/o200k_base.tiktoken", &g_tok) !=
            MOECL_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", moecl_last_error());
            abort();
        }
    }
    if (size == 0)
        return 0;
    unsigned flags = data[0] & MOECL_ENCODE_ALLOW_SPECIAL;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int valid = valid_utf8(data + 1, n);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (moecl_tokenizer_encode(g_tok, text, n, flags, &ids, &n_ids) != MOECL_OK)
        abort();
    char *back = NULL;
    size_t n_back = 0;
    if (moecl_tokenizer_decode(g_tok, ids, n_ids, &back, &n_back) != MOECL_OK)
        abort();
    if (valid ? (n_back != n || memcmp(back, text, n) != 0)
              : !valid_utf8((const uint8_t *)back, n_back))
        abort();
    if (valid) {
        size_t *ends = NULL, n_pieces = 0;
        if (moecl_tokenizer_pretokenize(text, n, &ends, &n_pieces) != MOECL_OK)
            abort();
        for (size_t i = 0; i < n_pieces; i++)
            if (ends[i] <= (i ? ends[i - 1] : 0) || ends[i] > n)
                abort();
        if (n > 0 && (n_pieces == 0 || ends[n_pieces - 1] != n))
            abort();
        free(ends);
    }
    struct moecl_tokenizer_stream *stream = NULL;
    if (moecl_tokenizer_stream_create(g_tok, &stream) != MOECL_OK)
        abort();
    size_t o = 0;
    for (size_t i = 0; i <= n_ids; i++) {
        const char *piece;
        size_t n_piece;
        enum moecl_status st = i < n_ids
                                   ? moecl_tokenizer_stream_push(stream, ids[i], &piece, &n_piece)
                                   : moecl_tokenizer_stream_flush(stream, &piece, &n_piece);
        if (st != MOECL_OK || !valid_utf8((const uint8_t *)piece, n_piece))
            abort();
        /* decode's bytes are valid UTF-8 here (encode replaced invalid input), so the stream
         * must reproduce them exactly */
        if (o + n_piece > n_back || memcmp(back + o, piece, n_piece) != 0)
            abort();
        o += n_piece;
    }
    if (o != n_back)
        abort();
    moecl_tokenizer_stream_release(stream);
    free(back);
    free(ids);
    return 0;
}
