/* Tokenizer files: the o200k `.tiktoken` rank file and the gpt-oss `tokenizer.json`.
 *
 * Both are read into a struct moecl_vocab (ordinary byte-level BPE tokens, id == rank, plus the
 * added special tokens); runtime/tokenizer.c builds the tokenizer from it. No OpenCL here.
 *
 * moecl_tokenizer_json_write() makes a gpt-oss tokenizer.json from a .tiktoken rank file and the
 * o200k_harmony special tokens. The result is byte-identical to what Hugging Face `tokenizers`
 * saves for the tokenizer that transformers' TikTokenConverter/GptOssConverter builds (vocab =
 * GPT-2 byte-level strings -> rank; merges = every split of every token whose two halves are
 * tokens, ordered by (rank of token, rank of left, rank of right); ignore_merges; the o200k Split
 * regex + ByteLevel pre-tokenizer; ByteLevel decoder and post-processor; the 21 added tokens
 * 199998..200018). Its sha256 is 0614fe83cadab421296e664e1f48f4261fa8fef6e03e63bb75c20f38e37d07d3,
 * the same bytes as the tokenizer.json that openai/gpt-oss-20b publishes. `make tokcheck`
 * verifies both. */
#ifndef MOECL_TOKENIZER_JSON_H
#define MOECL_TOKENIZER_JSON_H

#include "moecl.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The o200k pre-tokenizer regex (tiktoken's pat_str for o200k_base/o200k_harmony; also the
 * Split pattern of gpt-oss's tokenizer.json). runtime/tokenizer.c implements exactly this. */
extern const char moecl_o200k_pattern[];

/* The ids of o200k_harmony's first special token and of its whole id space. */
#define MOECL_O200K_N_RANKS 199998
#define MOECL_O200K_HARMONY_N_VOCAB 201088

struct moecl_vocab_added {
    int32_t id;
    char *content; /* NUL-terminated UTF-8 */
    uint32_t n_bytes;
};

/* An ordinary vocabulary (ids 0..n_tokens-1, id == BPE rank) and its added special tokens.
 * Owns every array; free with moecl_vocab_free. */
struct moecl_vocab {
    int32_t n_tokens;
    uint8_t *bytes;   /* [offset[n_tokens]] token bytes, concatenated in id order */
    uint32_t *offset; /* [n_tokens + 1] token id's bytes are bytes[offset[id] .. offset[id+1]) */
    int32_t n_added;
    struct moecl_vocab_added *added; /* [n_added], ascending id */
};

void moecl_vocab_free(struct moecl_vocab *vocab);

/* Reads a .tiktoken rank file ("base64 SP rank" per line, ranks 0..n-1 each once, every single
 * byte a token). Adds no special token. */
MOECL_WUR enum moecl_status moecl_vocab_read_tiktoken(const char *path, struct moecl_vocab *out);

/* Adds o200k_harmony's added tokens as gpt-oss's tokenizer.json has them: the 21 special tokens
 * 199998..200018 (names in runtime/tokenizer.h's table). The vocab must have 199,998 tokens. */
MOECL_WUR enum moecl_status moecl_vocab_add_harmony_specials(struct moecl_vocab *vocab);

/* Reads a gpt-oss style tokenizer.json. Accepts what moecl can reproduce exactly and says why
 * otherwise (MOECL_ERR_UNSUPPORTED): model BPE with ignore_merges, no normalizer, the o200k
 * Split regex + ByteLevel pre-tokenizer, vocab ids 0..n-1, merges (either serialization) whose
 * order agrees with the ranks, added tokens that are special and not stripped/normalized. */
MOECL_WUR enum moecl_status moecl_vocab_read_tokenizer_json(const char *path,
                                                            struct moecl_vocab *out);

/* Writes the gpt-oss tokenizer.json for a .tiktoken rank file (see the top of this file). */
MOECL_WUR enum moecl_status moecl_tokenizer_json_write(const char *tiktoken_path,
                                                       const char *out_path);

/* GPT-2 byte-level mapping: byte -> code point (U+0021.. / U+0100..U+0143). */
uint32_t moecl_bytelevel_char(uint8_t byte);

/* o200k_harmony's name of a special id in 199998..201087 (tiktoken's names, except that 200018
 * is "<|endofprompt|>" as in gpt-oss's tokenizer.json). Writes it NUL-terminated into buf
 * (at least 32 bytes) and returns its length, or returns 0 for any other id. */
size_t moecl_harmony_special_name(int32_t id, char *buf);

/* ------------------------------------------------------------------ bytes -> id index */

/* An open-addressing hash index over a vocab's token bytes. Borrows the vocab's arrays (they
 * must outlive it); owns its slots (moecl_vocab_index_free). */
struct moecl_vocab_index_slot {
    uint32_t tag; /* high half of the hash */
    int32_t id;   /* -1: empty */
};
struct moecl_vocab_index {
    const uint8_t *bytes;
    const uint32_t *offset;
    size_t mask;
    struct moecl_vocab_index_slot *slots; /* [mask + 1] */
};

/* Fails with MOECL_ERR_FORMAT (naming `what`) if two ids have the same bytes. */
MOECL_WUR enum moecl_status moecl_vocab_index_build(const struct moecl_vocab *vocab,
                                                    const char *what,
                                                    struct moecl_vocab_index *out);
void moecl_vocab_index_free(struct moecl_vocab_index *index);

static inline uint64_t moecl_bytes_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

/* The id whose bytes are p[0..n), or -1. */
static inline int32_t moecl_vocab_index_find(const struct moecl_vocab_index *index,
                                             const uint8_t *p, size_t n) {
    uint64_t h = moecl_bytes_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & index->mask;; i = (i + 1) & index->mask) {
        const struct moecl_vocab_index_slot *s = &index->slots[i];
        if (s->id < 0)
            return -1;
        if (s->tag == tag) {
            uint32_t o = index->offset[s->id];
            if (index->offset[s->id + 1] - o == n && memcmp(index->bytes + o, p, n) == 0)
                return s->id;
        }
    }
}

#endif
