/* Harmony on top of the tokenizer: conversation -> token ids, and the parser's token bytes. */
#include "harmony.h"

#include "moecl_error.h"

#include <stdlib.h>
#include <string.h>

/* Ordinary encoding of one text run (special-token text is NOT recognised: see harmony.h). */
static enum moecl_status tok_encode(void *user, const char *text, size_t len, int32_t **ids,
                                    size_t *n, size_t *cap) {
    const struct moecl_tokenizer *tok = user;
    int32_t *piece = NULL;
    size_t np = 0;
    enum moecl_status st = moecl_tokenizer_encode(tok, text, len, 0, &piece, &np);
    if (st != MOECL_OK)
        return st;
    if (*n + np > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *n + np)
            c *= 2;
        int32_t *g = realloc(*ids, c * sizeof *g);
        if (!g) {
            free(piece);
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
        }
        *ids = g;
        *cap = c;
    }
    if (np)
        memcpy(*ids + *n, piece, np * sizeof *piece);
    *n += np;
    free(piece);
    return MOECL_OK;
}

enum moecl_status moecl_conversation_render(const struct moecl_conversation *conv,
                                            const struct moecl_tokenizer *tok, int flags,
                                            int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    if (!tok)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "render: NULL tokenizer");
    struct moecl_harmony_segments s;
    enum moecl_status st = moecl_harmony_segments_render(conv, flags, &s);
    if (st != MOECL_OK)
        return st;
    /* The special ids must mean what harmony means by them in this vocabulary. */
    for (int i = 0; i < s.n && st == MOECL_OK; i++) {
        if (s.seg[i].special < 0)
            continue;
        const char *name = moecl_harmony_special_str(s.seg[i].special);
        if (moecl_tokenizer_special_id(tok, name) != s.seg[i].special)
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                 "render: the tokenizer has no %s at id %d: not a gpt-oss "
                                 "(o200k_harmony) vocabulary",
                                 name, (int)s.seg[i].special);
    }
    if (st == MOECL_OK)
        st = moecl_harmony_segments_encode(&s, tok_encode, (void *)(uintptr_t)tok, ids_out, n_out);
    moecl_harmony_segments_free(&s);
    return st;
}

static const char *tok_bytes(void *user, int32_t id, size_t *len_out) {
    return moecl_tokenizer_token_text((const struct moecl_tokenizer *)user, id, len_out);
}

enum moecl_status moecl_harmony_parser_create(const struct moecl_tokenizer *tok,
                                              struct moecl_harmony_parser **parser_out) {
    *parser_out = NULL;
    if (!tok)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "harmony parser: NULL tokenizer");
    return moecl_harmony_parser_create_with(tok_bytes, (void *)(uintptr_t)tok, parser_out);
}
