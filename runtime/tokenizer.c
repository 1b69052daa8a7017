/* The o200k_harmony tokenizer: a hand-written pre-tokenizer for the o200k regex, BPE by ranks
 * (tiktoken's algorithm), special tokens, decode and a streaming decoder.
 *
 * The pre-tokenizer is in pretokenize.c. Why ranks and not HF merges: for gpt-oss's
 * tokenizer.json (ignore_merges, merges derived from the ranks) both give the same ids, and the
 * loader refuses a file whose merges disagree with the ranks. The two orders could only differ
 * where a token T splits as x+y == y+z and HF's list prefers (y, z) while tiktoken takes the
 * leftmost pair; o200k has 3,584 such tokens, and make tokcheck encodes strings built around
 * each of them (category merge_ties) with identical ids in both. */
#include "tokenizer.h"

#include "moecl_error.h"
#include "tokenizer_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NO_RANK INT32_MAX
#define HEAP_MIN_BYTES 128 /* pieces at least this long use the heap merge */
#define MAX_TEXT_BYTES (1u << 30)

struct moecl_tokenizer {
    struct moecl_vocab vocab; /* BPE tokens (id == rank) and the added special tokens */
    struct moecl_vocab_index index;
    int32_t *pair_rank; /* [65536] rank of each 2-byte string (NO_RANK if none): the
                           merge's hottest lookups, without hashing */
    int32_t byte_rank[256];
    size_t max_token_bytes;     /* longer strings are never tokens: skip the hash */
    int32_t n_vocab;            /* all ids: BPE tokens, then specials */
    char *text;                 /* every id's bytes, each followed by a NUL */
    uint32_t *text_offset;      /* [n_vocab + 1] */
    uint8_t special_first[256]; /* 1 where some added token starts with that byte */
    int n_special_first;        /* how many distinct first bytes */
    uint8_t only_first;         /* the first byte when n_special_first == 1 */
};

/* ================================================================== BPE */

struct ids {
    int32_t *v;
    size_t n, cap;
};

static int ids_push(struct ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

struct heap_entry {
    int32_t rank;
    uint32_t pos;
};

/* Work arrays reused across pieces of one encode call. */
struct bpe_scratch {
    size_t cap;
    uint32_t *bound; /* scan: part boundaries; heap: next */
    int32_t *rank;
    uint32_t *prev;
    struct heap_entry *heap; /* [3 * cap] */
};

static void scratch_free(struct bpe_scratch *sc) {
    free(sc->bound);
    free(sc->rank);
    free(sc->prev);
    free(sc->heap);
    memset(sc, 0, sizeof *sc);
}

static int scratch_reserve(struct bpe_scratch *sc, size_t n) {
    if (n + 1 <= sc->cap)
        return 0;
    size_t cap = sc->cap ? sc->cap : 256;
    while (cap < n + 1)
        cap *= 2;
    scratch_free(sc);
    sc->bound = malloc(cap * sizeof *sc->bound);
    sc->rank = malloc(cap * sizeof *sc->rank);
    sc->prev = malloc(cap * sizeof *sc->prev);
    sc->heap = malloc(3 * cap * sizeof *sc->heap);
    if (!sc->bound || !sc->rank || !sc->prev || !sc->heap) {
        scratch_free(sc);
        return -1;
    }
    sc->cap = cap;
    return 0;
}

static inline int32_t rank_of(const struct moecl_tokenizer *t, const uint8_t *p, size_t n) {
    if (n == 2)
        return t->pair_rank[(size_t)p[0] << 8 | p[1]];
    if (n == 1)
        return t->byte_rank[p[0]];
    if (n > t->max_token_bytes)
        return NO_RANK;
    int32_t id = moecl_vocab_index_find(&t->index, p, n);
    return id < 0 ? NO_RANK : id;
}

/* tiktoken's _byte_pair_merge: rank[k] is the rank of parts k and k+1 joined; merge the lowest
 * (leftmost on ties) until none joins into a token. */
static int bpe_scan(const struct moecl_tokenizer *t, const uint8_t *p, size_t n,
                    struct bpe_scratch *sc, struct ids *out) {
    uint32_t *b = sc->bound;
    int32_t *r = sc->rank;
    size_t m = n; /* parts */
    for (size_t k = 0; k <= n; k++)
        b[k] = (uint32_t)k;
    for (size_t k = 0; k + 1 < n; k++)
        r[k] = rank_of(t, p + k, 2);
    while (m > 1) {
        int32_t best = NO_RANK;
        size_t at = 0;
        for (size_t k = 0; k + 1 < m; k++)
            if (r[k] < best) {
                best = r[k];
                at = k;
            }
        if (best == NO_RANK)
            break;
        /* remove boundary at+1 */
        memmove(b + at + 1, b + at + 2, (m - at - 1) * sizeof *b);
        if (at + 3 <= m) /* r[at+2 .. m-2] move down by one */
            memmove(r + at + 1, r + at + 2, (m - at - 3) * sizeof *r);
        m--;
        if (at + 1 < m)
            r[at] = rank_of(t, p + b[at], b[at + 2] - b[at]);
        if (at > 0)
            r[at - 1] = rank_of(t, p + b[at - 1], b[at + 1] - b[at - 1]);
    }
    for (size_t k = 0; k < m; k++)
        if (ids_push(out, rank_of(t, p + b[k], b[k + 1] - b[k])) != 0)
            return -1;
    return 0;
}

static inline int heap_less(const struct heap_entry *a, const struct heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct heap_entry *h, size_t *n, struct heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static struct heap_entry heap_pop(struct heap_entry *h, size_t *n) {
    struct heap_entry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* The same merge order with a heap of (rank, position): node k starts at byte k; a merge keeps
 * the left node. An entry is stale when its node's pair no longer has that rank (the pair
 * changed, or the node died): ranks are unique per token, so a changed pair never keeps its
 * rank. */
static int bpe_heap(const struct moecl_tokenizer *t, const uint8_t *p, size_t n,
                    struct bpe_scratch *sc, struct ids *out) {
    uint32_t *next = sc->bound, *prev = sc->prev;
    int32_t *r = sc->rank;
    struct heap_entry *h = sc->heap;
    size_t n_heap = 0;
    const uint32_t end = (uint32_t)n, none = UINT32_MAX;
    for (size_t k = 0; k < n; k++) {
        next[k] = (uint32_t)k + 1;
        prev[k] = k ? (uint32_t)k - 1 : none;
        r[k] = k + 1 < n ? rank_of(t, p + k, 2) : NO_RANK;
        if (r[k] != NO_RANK)
            heap_push(h, &n_heap, (struct heap_entry){r[k], (uint32_t)k});
    }
    while (n_heap > 0) {
        struct heap_entry e = heap_pop(h, &n_heap);
        uint32_t k = e.pos;
        if (r[k] != e.rank)
            continue;
        uint32_t j = next[k];
        next[k] = next[j];
        if (next[j] != end)
            prev[next[j]] = k;
        r[j] = NO_RANK; /* dead */
        r[k] = next[k] != end ? rank_of(t, p + k, (next[next[k]] == end ? end : next[next[k]]) - k)
                              : NO_RANK;
        if (r[k] != NO_RANK)
            heap_push(h, &n_heap, (struct heap_entry){r[k], k});
        if (prev[k] != none) {
            uint32_t q = prev[k];
            uint32_t q_end = next[k] == end ? end : next[k];
            r[q] = rank_of(t, p + q, q_end - q);
            if (r[q] != NO_RANK)
                heap_push(h, &n_heap, (struct heap_entry){r[q], q});
        }
    }
    for (uint32_t k = 0; k != end; k = next[k])
        if (ids_push(out, rank_of(t, p + k, next[k] - k)) != 0)
            return -1;
    return 0;
}

static int bpe_merge(const struct moecl_tokenizer *t, const uint8_t *p, size_t n,
                     enum moecl_bpe_algo algo, struct bpe_scratch *sc, struct ids *out) {
    if (scratch_reserve(sc, n) != 0)
        return -1;
    if (algo == MOECL_BPE_HEAP || (algo == MOECL_BPE_AUTO && n >= HEAP_MIN_BYTES))
        return bpe_heap(t, p, n, sc, out);
    return bpe_scan(t, p, n, sc, out);
}

/* One piece: the whole piece if it is a token, else the merge. */
static int encode_piece(const struct moecl_tokenizer *t, const uint8_t *p, size_t n,
                        struct bpe_scratch *sc, struct ids *out) {
    int32_t id = moecl_vocab_index_find(&t->index, p, n);
    if (id >= 0)
        return ids_push(out, id);
    return bpe_merge(t, p, n, MOECL_BPE_AUTO, sc, out);
}

static int encode_ordinary(const struct moecl_tokenizer *t, const uint8_t *s, size_t n,
                           struct bpe_scratch *sc, struct ids *out) {
    size_t i = 0;
    while (i < n) {
        size_t e = moecl_pretokenize_next(s, n, i);
        if (encode_piece(t, s + i, e - i, sc, out) != 0)
            return -1;
        i = e;
    }
    return 0;
}

enum moecl_status moecl_tokenizer_bpe_piece(const struct moecl_tokenizer *tokenizer,
                                            const uint8_t *piece, size_t n,
                                            enum moecl_bpe_algo algo, int32_t **ids_out,
                                            size_t *n_ids_out) {
    *ids_out = NULL;
    *n_ids_out = 0;
    if (!tokenizer || (!piece && n))
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "bpe_piece: NULL argument");
    struct bpe_scratch sc = {0};
    struct ids out = {0};
    if (n > 0 && bpe_merge(tokenizer, piece, n, algo, &sc, &out) != 0) {
        scratch_free(&sc);
        free(out.v);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "bpe_piece: out of memory");
    }
    scratch_free(&sc);
    *ids_out = out.v;
    *n_ids_out = out.n;
    return MOECL_OK;
}

/* ================================================================== encode */

/* The leftmost-longest added token at s[i..n), its index in vocab.added, or -1. */
static int32_t special_at(const struct moecl_tokenizer *t, const uint8_t *s, size_t n, size_t i) {
    int32_t best = -1;
    uint32_t best_len = 0;
    for (int32_t k = 0; k < t->vocab.n_added; k++) {
        const struct moecl_vocab_added *a = &t->vocab.added[k];
        if ((uint8_t)a->content[0] == s[i] && a->n_bytes > best_len && a->n_bytes <= n - i &&
            memcmp(a->content, s + i, a->n_bytes) == 0) {
            best = k;
            best_len = a->n_bytes;
        }
    }
    return best;
}

enum moecl_status moecl_tokenizer_encode(const struct moecl_tokenizer *tokenizer, const char *text,
                                         size_t n_bytes, unsigned flags, int32_t **ids_out,
                                         size_t *n_ids_out) {
    if (ids_out)
        *ids_out = NULL;
    if (n_ids_out)
        *n_ids_out = 0;
    if (!tokenizer || (!text && n_bytes) || !ids_out || !n_ids_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_encode: NULL argument");
    if (n_bytes > MAX_TEXT_BYTES) /* positions are 32-bit; replacement may triple the size */
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "tokenizer_encode: %zu bytes is over the %u-byte limit of one call",
                               n_bytes, (unsigned)MAX_TEXT_BYTES);
    const uint8_t *s = (const uint8_t *)text;
    uint8_t *fixed = NULL;
    size_t n = n_bytes;
    size_t bad_at = moecl_utf8_first_invalid(s, n);
    if (bad_at < n) {
        if (flags & MOECL_ENCODE_STRICT_UTF8)
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "tokenizer_encode: invalid UTF-8 at byte %zu of %zu (0x%02x)",
                                   bad_at, n, s[bad_at]);
        fixed = moecl_utf8_replace(s, n, &n);
        if (!fixed)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_encode: out of memory");
        s = fixed;
    }
    struct ids out = {0};
    struct bpe_scratch sc = {0};
    int fail = 0;
    if (!(flags & MOECL_ENCODE_ALLOW_SPECIAL) || tokenizer->vocab.n_added == 0) {
        fail = encode_ordinary(tokenizer, s, n, &sc, &out);
    } else {
        size_t start = 0, i = 0;
        while (!fail && i < n) {
            if (tokenizer->n_special_first == 1) {
                const uint8_t *hit = memchr(s + i, tokenizer->only_first, n - i);
                if (!hit)
                    break;
                i = (size_t)(hit - s);
            } else if (!tokenizer->special_first[s[i]]) {
                i++;
                continue;
            }
            int32_t k = special_at(tokenizer, s, n, i);
            if (k < 0) {
                i++;
                continue;
            }
            fail = encode_ordinary(tokenizer, s + start, i - start, &sc, &out) ||
                   ids_push(&out, tokenizer->vocab.added[k].id);
            i += tokenizer->vocab.added[k].n_bytes;
            start = i;
        }
        if (!fail)
            fail = encode_ordinary(tokenizer, s + start, n - start, &sc, &out);
    }
    scratch_free(&sc);
    free(fixed);
    if (fail) {
        free(out.v);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_encode: out of memory (%zu bytes)",
                               n_bytes);
    }
    *ids_out = out.v;
    *n_ids_out = out.n;
    return MOECL_OK;
}

/* ================================================================== decode */

const char *moecl_tokenizer_token_text(const struct moecl_tokenizer *tokenizer, int32_t id,
                                       size_t *n_bytes_out) {
    if (n_bytes_out)
        *n_bytes_out = 0;
    if (!tokenizer || id < 0 || id >= tokenizer->n_vocab)
        return NULL;
    if (n_bytes_out)
        *n_bytes_out = tokenizer->text_offset[id + 1] - tokenizer->text_offset[id] - 1;
    return tokenizer->text + tokenizer->text_offset[id];
}

enum moecl_status moecl_tokenizer_decode(const struct moecl_tokenizer *tokenizer,
                                         const int32_t *ids, size_t n_ids, char **text_out,
                                         size_t *n_bytes_out) {
    if (text_out)
        *text_out = NULL;
    if (n_bytes_out)
        *n_bytes_out = 0;
    if (!tokenizer || (!ids && n_ids) || !text_out || !n_bytes_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t len;
        if (!moecl_tokenizer_token_text(tokenizer, ids[i], &len))
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "tokenizer_decode: id %d (at %zu) is not in 0..%d", (int)ids[i],
                                   i, (int)tokenizer->n_vocab - 1);
        total += len;
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_decode: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t len;
        const char *p = moecl_tokenizer_token_text(tokenizer, ids[i], &len);
        memcpy(buf + o, p, len);
        o += len;
    }
    buf[o] = 0;
    *text_out = buf;
    *n_bytes_out = o;
    return MOECL_OK;
}

int32_t moecl_tokenizer_special_id(const struct moecl_tokenizer *tokenizer, const char *name) {
    if (!tokenizer || !name)
        return -1;
    for (int32_t id = tokenizer->vocab.n_tokens; id < tokenizer->n_vocab; id++)
        if (strcmp(tokenizer->text + tokenizer->text_offset[id], name) == 0)
            return id;
    /* tiktoken also names 200018 "<|reserved_200018|>" (besides "<|endofprompt|>") */
    char buf[32];
    int32_t id = 200018;
    snprintf(buf, sizeof buf, "<|reserved_%d|>", (int)id);
    if (tokenizer->n_vocab > id && tokenizer->vocab.n_tokens <= id && strcmp(name, buf) == 0)
        return id;
    return -1;
}

int moecl_tokenizer_is_special(const struct moecl_tokenizer *tokenizer, int32_t id) {
    return tokenizer && id >= tokenizer->vocab.n_tokens && id < tokenizer->n_vocab;
}

int32_t moecl_tokenizer_vocab_size(const struct moecl_tokenizer *tokenizer) {
    return tokenizer ? tokenizer->n_vocab : 0;
}

/* ================================================================== stream */

struct moecl_tokenizer_stream {
    const struct moecl_tokenizer *tokenizer;
    uint8_t pending[4]; /* an incomplete character's leading bytes */
    size_t n_pending;
    char *out;     /* [cap] what the last call returned */
    uint8_t *work; /* [cap] pending + the new token's bytes */
    size_t cap;
};

enum moecl_status moecl_tokenizer_stream_create(const struct moecl_tokenizer *tokenizer,
                                                struct moecl_tokenizer_stream **stream_out) {
    if (stream_out)
        *stream_out = NULL;
    if (!tokenizer || !stream_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_stream_create: NULL argument");
    struct moecl_tokenizer_stream *s = calloc(1, sizeof *s);
    if (!s)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_stream_create: out of memory");
    s->tokenizer = tokenizer;
    *stream_out = s;
    return MOECL_OK;
}

/* Emits the complete characters of pending + p[0..n) (invalid ones as U+FFFD) and keeps an
 * incomplete tail for the next call unless `final`. */
static enum moecl_status stream_feed(struct moecl_tokenizer_stream *s, const uint8_t *p, size_t n,
                                     int final, const char **text_out, size_t *n_bytes_out) {
    size_t total = s->n_pending + n;
    if (3 * total + 1 > s->cap) {
        size_t cap = 3 * total + 64;
        char *out = malloc(cap);
        uint8_t *work = malloc(cap);
        if (!out || !work) {
            free(out);
            free(work);
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_stream: out of memory");
        }
        free(s->out);
        free(s->work);
        s->out = out;
        s->work = work;
        s->cap = cap;
    }
    memcpy(s->work, s->pending, s->n_pending);
    if (n)
        memcpy(s->work + s->n_pending, p, n);
    s->n_pending = 0;
    size_t i = 0, o = 0;
    while (i < total) {
        size_t bad;
        int trunc;
        size_t len = moecl_utf8_seq(s->work, total, i, &bad, &trunc);
        if (len) {
            memcpy(s->out + o, s->work + i, len);
            o += len;
            i += len;
        } else if (trunc && !final) {
            memcpy(s->pending, s->work + i, total - i);
            s->n_pending = total - i;
            break;
        } else {
            memcpy(s->out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += bad;
        }
    }
    s->out[o] = 0;
    *text_out = s->out;
    *n_bytes_out = o;
    return MOECL_OK;
}

enum moecl_status moecl_tokenizer_stream_push(struct moecl_tokenizer_stream *stream, int32_t id,
                                              const char **text_out, size_t *n_bytes_out) {
    if (text_out)
        *text_out = NULL;
    if (n_bytes_out)
        *n_bytes_out = 0;
    if (!stream || !text_out || !n_bytes_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_stream_push: NULL argument");
    size_t len;
    const char *p = moecl_tokenizer_token_text(stream->tokenizer, id, &len);
    if (!p)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "tokenizer_stream_push: id %d is not in "
                               "0..%d",
                               (int)id, (int)stream->tokenizer->n_vocab - 1);
    return stream_feed(stream, (const uint8_t *)p, len, 0, text_out, n_bytes_out);
}

enum moecl_status moecl_tokenizer_stream_flush(struct moecl_tokenizer_stream *stream,
                                               const char **text_out, size_t *n_bytes_out) {
    if (text_out)
        *text_out = NULL;
    if (n_bytes_out)
        *n_bytes_out = 0;
    if (!stream || !text_out || !n_bytes_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_stream_flush: NULL argument");
    return stream_feed(stream, NULL, 0, 1, text_out, n_bytes_out);
}

void moecl_tokenizer_stream_release(struct moecl_tokenizer_stream *stream) {
    if (!stream)
        return;
    free(stream->out);
    free(stream->work);
    free(stream);
}

/* ================================================================== load */

void moecl_tokenizer_release(struct moecl_tokenizer *tokenizer) {
    if (!tokenizer)
        return;
    moecl_vocab_index_free(&tokenizer->index);
    moecl_vocab_free(&tokenizer->vocab);
    free(tokenizer->text);
    free(tokenizer->text_offset);
    free(tokenizer->pair_rank);
    free(tokenizer);
}

/* Takes the vocab (moved in, even on failure) and builds the tables. */
static enum moecl_status tokenizer_from_vocab(struct moecl_vocab *vocab, const char *path,
                                              struct moecl_tokenizer **out) {
    struct moecl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        moecl_vocab_free(vocab);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    t->vocab = *vocab;
    memset(vocab, 0, sizeof *vocab);
    const struct moecl_vocab *v = &t->vocab;
    int32_t n_vocab = MOECL_O200K_HARMONY_N_VOCAB;
    if (v->n_tokens > n_vocab)
        n_vocab = v->n_tokens;
    if (v->n_added > 0 && v->added[v->n_added - 1].id >= n_vocab)
        n_vocab = v->added[v->n_added - 1].id + 1;
    t->n_vocab = n_vocab;
    /* every id's text: BPE bytes; added tokens' content; o200k_harmony names for the rest */
    size_t n_text = v->offset[v->n_tokens] + (size_t)v->n_tokens;
    for (int32_t k = 0; k < v->n_added; k++)
        n_text += v->added[k].n_bytes + 1;
    n_text += (size_t)(n_vocab - v->n_tokens) * 32;
    t->text = malloc(n_text);
    t->text_offset = malloc(((size_t)n_vocab + 1) * sizeof *t->text_offset);
    enum moecl_status st = MOECL_OK;
    if (!t->text || !t->text_offset) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        goto cleanup;
    }
    size_t o = 0;
    int32_t k = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        t->text_offset[id] = (uint32_t)o;
        if (id < v->n_tokens) {
            size_t len = v->offset[id + 1] - v->offset[id];
            memcpy(t->text + o, v->bytes + v->offset[id], len);
            o += len;
        } else if (k < v->n_added && v->added[k].id == id) {
            memcpy(t->text + o, v->added[k].content, v->added[k].n_bytes);
            o += v->added[k].n_bytes;
            k++;
        } else {
            o += moecl_harmony_special_name(id, t->text + o);
        }
        t->text[o++] = 0;
    }
    t->text_offset[n_vocab] = (uint32_t)o;
    for (k = 0; k < v->n_added; k++) {
        uint8_t b = (uint8_t)v->added[k].content[0];
        if (!t->special_first[b]) {
            t->special_first[b] = 1;
            t->n_special_first++;
            t->only_first = b;
        }
    }
    st = moecl_vocab_index_build(v, path, &t->index);
    if (st != MOECL_OK)
        goto cleanup;
    t->pair_rank = malloc(65536 * sizeof *t->pair_rank);
    if (!t->pair_rank) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t pair = 0; pair < 65536; pair++) {
        uint8_t b[2] = {(uint8_t)(pair >> 8), (uint8_t)pair};
        int32_t id = moecl_vocab_index_find(&t->index, b, 2);
        t->pair_rank[pair] = id < 0 ? NO_RANK : id;
    }
    for (int32_t id = 0; id < v->n_tokens; id++)
        if (v->offset[id + 1] - v->offset[id] > t->max_token_bytes)
            t->max_token_bytes = v->offset[id + 1] - v->offset[id];
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        t->byte_rank[b] = moecl_vocab_index_find(&t->index, &byte, 1);
        if (t->byte_rank[b] < 0) {
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: byte 0x%02x is not a token", path, b);
            goto cleanup;
        }
    }
cleanup:
    if (st != MOECL_OK) {
        moecl_tokenizer_release(t);
        return st;
    }
    *out = t;
    return MOECL_OK;
}

enum moecl_status moecl_tokenizer_load(const char *path, struct moecl_tokenizer **tokenizer_out) {
    if (tokenizer_out)
        *tokenizer_out = NULL;
    if (!path || !tokenizer_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_load: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return moecl_error_set(errno == ENOENT ? MOECL_ERR_NOT_FOUND : MOECL_ERR_IO,
                               "%s: cannot load a tokenizer: %s", path, strerror(errno));
    char *file = NULL;
    int is_json;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + sizeof "/tokenizer.json";
        file = malloc(n);
        if (!file)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        snprintf(file, n, "%s/tokenizer.json", path);
        if (stat(file, &sb) != 0) {
            enum moecl_status st =
                moecl_error_set(MOECL_ERR_NOT_FOUND, "%s: the checkpoint has no tokenizer.json: %s",
                                file, strerror(errno));
            free(file);
            return st;
        }
        is_json = 1;
    } else {
        /* a tokenizer.json starts with '{'; a .tiktoken file with base64 */
        FILE *f = fopen(path, "rb");
        if (!f)
            return moecl_error_set(MOECL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        int c;
        do
            c = fgetc(f);
        while (c == ' ' || c == '\n' || c == '\r' || c == '\t');
        fclose(f);
        is_json = c == '{';
    }
    const char *name = file ? file : path;
    struct moecl_vocab vocab;
    enum moecl_status st = is_json ? moecl_vocab_read_tokenizer_json(name, &vocab)
                                   : moecl_vocab_read_tiktoken(name, &vocab);
    if (st == MOECL_OK && !is_json) {
        st = moecl_vocab_add_harmony_specials(&vocab);
        if (st != MOECL_OK) {
            moecl_vocab_free(&vocab);
            st = moecl_error_prefix(st, "%s: ", name);
        }
    }
    if (st == MOECL_OK)
        st = tokenizer_from_vocab(&vocab, name, tokenizer_out);
    free(file);
    return st;
}

enum moecl_status moecl_tokenizer_write_json(const char *tiktoken_path, const char *out_path) {
    if (!tiktoken_path || !out_path)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_write_json: NULL argument");
    return moecl_tokenizer_json_write(tiktoken_path, out_path);
}
