/* Harmony chat format internals (public API: moecl.h, sections "conversation" and "harmony
 * parser").
 *
 * A conversation renders to a list of segments: a special token (by id) or a run of ordinary
 * text. The text form concatenates the specials' literal strings and the text; the token form
 * keeps the specials as ids and encodes each text run with ordinary (non-special) encoding.
 * Because Hugging Face's tokenizer splits its input at special tokens before the pre-tokenizer
 * runs, that is exactly how mlx-lm's `tokenizer.encode(apply_chat_template(...))` tokenizes the
 * template's text, provided the contents themselves contain no special-token strings (we never
 * turn content text into special tokens: harmony's behaviour, and no prompt injection). */
#ifndef MOECL_HARMONY_H
#define MOECL_HARMONY_H

#include "moecl.h"

#include <stddef.h>
#include <stdint.h>

/* The o200k_harmony special tokens harmony uses (spec §1.3). */
enum {
    MOECL_TOK_STARTOFTEXT = 199998,
    MOECL_TOK_ENDOFTEXT = 199999,
    MOECL_TOK_RETURN = 200002,
    MOECL_TOK_CONSTRAIN = 200003,
    MOECL_TOK_CHANNEL = 200005,
    MOECL_TOK_START = 200006,
    MOECL_TOK_END = 200007,
    MOECL_TOK_MESSAGE = 200008,
    MOECL_TOK_CALL = 200012,
};

/* The literal string of a harmony special token, or NULL for an id that is not one. */
const char *moecl_harmony_special_str(int32_t id);

/* One rendered piece: a special token (special >= 0, text NULL) or ordinary text. */
struct moecl_harmony_segment {
    int32_t special;
    const char *text; /* points into the segment list's own storage */
    size_t len;
};

struct moecl_harmony_segments {
    struct moecl_harmony_segment *seg;
    int n, cap;
    char *buf; /* text storage; seg[i].text points into it after finish */
    size_t buf_len, buf_cap;
};

/* Renders the conversation into segments (freed with moecl_harmony_segments_free). */
MOECL_WUR enum moecl_status moecl_harmony_segments_render(const struct moecl_conversation *conv,
                                                          int flags,
                                                          struct moecl_harmony_segments *out);
void moecl_harmony_segments_free(struct moecl_harmony_segments *s);

/* Encodes ordinary text (no special-token recognition), appending to *ids / *n (capacity *cap,
 * realloc'd as needed). */
typedef enum moecl_status (*moecl_harmony_encode_fn)(void *user, const char *text, size_t len,
                                                     int32_t **ids, size_t *n, size_t *cap);

/* The token form of the segments through any ordinary encoder (the tokenizer in production, a
 * stub in tests). */
MOECL_WUR enum moecl_status moecl_harmony_segments_encode(const struct moecl_harmony_segments *s,
                                                          moecl_harmony_encode_fn encode,
                                                          void *user, int32_t **ids_out,
                                                          size_t *n_out);

/* A token's bytes for the parser: specials give their literal string. NULL for an unknown id. */
typedef const char *(*moecl_harmony_bytes_fn)(void *user, int32_t id, size_t *len_out);

/* Creates a parser that gets token bytes from `bytes` (moecl_harmony_parser_create uses the
 * tokenizer). */
MOECL_WUR enum moecl_status moecl_harmony_parser_create_with(moecl_harmony_bytes_fn bytes,
                                                             void *user,
                                                             struct moecl_harmony_parser **out);

/* JSON string literal of s as Python's json.dumps(s, ensure_ascii=False) writes it (what the
 * chat template's tojson filter does to a tool result). malloc'd. */
char *moecl_harmony_json_quote(const char *s);

#endif
