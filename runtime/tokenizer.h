/* Internal parts of the tokenizer (runtime/tokenizer.c) exposed for tests. The public API is
 * the tokenizer section of moecl.h. */
#ifndef MOECL_TOKENIZER_H
#define MOECL_TOKENIZER_H

#include "moecl.h"

#include <stddef.h>
#include <stdint.h>

/* The end (byte offset) of the o200k pre-tokenizer piece that starts at byte i of the valid
 * UTF-8 text s[0..n) (i < n). Pieces tile the text: calling it again from the result walks
 * the regex's matches. Linear in the piece length. */
size_t moecl_pretokenize_next(const uint8_t *s, size_t n, size_t i);

enum moecl_bpe_algo {
    MOECL_BPE_AUTO, /* by piece length, as encode does */
    MOECL_BPE_SCAN, /* tiktoken's _byte_pair_merge: linear scan for the lowest rank */
    MOECL_BPE_HEAP, /* a min-heap of (rank, position): O(n log n) for long pieces */
};

/* Byte-pair merge of one piece by ranks, with the chosen algorithm (they must agree; the
 * whole-piece lookup is skipped so the merge itself is exercised). *ids_out is malloc'd. */
MOECL_WUR enum moecl_status moecl_tokenizer_bpe_piece(const struct moecl_tokenizer *tokenizer,
                                                      const uint8_t *piece, size_t n,
                                                      enum moecl_bpe_algo algo, int32_t **ids_out,
                                                      size_t *n_ids_out);

/* The length of a valid UTF-8 sequence at s[i] (1..4), or 0 if none starts there; then
 * *bad_out is the length of the maximal subpart to replace with one U+FFFD and *truncated_out
 * says whether that subpart ran into the end of the text (it might still complete). */
size_t moecl_utf8_seq(const uint8_t *s, size_t n, size_t i, size_t *bad_out, int *truncated_out);

/* The offset of the first invalid UTF-8 sequence in s[0..n), or n. */
size_t moecl_utf8_first_invalid(const uint8_t *s, size_t n);

/* A malloc'd copy of s[0..n) with every maximal invalid subpart replaced by U+FFFD (the
 * Unicode "maximal subpart" practice, as Python's errors="replace"); NULL if out of memory. */
uint8_t *moecl_utf8_replace(const uint8_t *s, size_t n, size_t *n_out);

#endif
