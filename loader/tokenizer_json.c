/* Tokenizer files: .tiktoken rank files and gpt-oss tokenizer.json (read and write).
 *
 * Why the writer computes merges at all: moecl encodes by ranks (tiktoken's algorithm) and never
 * needs them, but a checkpoint's tokenizer.json must also load in Hugging Face tokenizers and
 * give the same ids, which needs the converter's full merge list. */
#include "tokenizer_json.h"

#include "moecl_error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char moecl_o200k_pattern[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
    "|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";

/* ------------------------------------------------------------------ small helpers */

void moecl_vocab_free(struct moecl_vocab *vocab) {
    if (!vocab)
        return;
    free(vocab->bytes);
    free(vocab->offset);
    for (int32_t i = 0; i < vocab->n_added; i++)
        free(vocab->added[i].content);
    free(vocab->added);
    memset(vocab, 0, sizeof *vocab);
}

static enum moecl_status read_whole(const char *path, char **data_out, size_t *n_out) {
    *data_out = NULL;
    *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
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
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory reading the file", path);
    if (err) {
        free(buf);
        return moecl_error_set(MOECL_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *data_out = buf;
    *n_out = n;
    return MOECL_OK;
}

static const uint8_t *bytelevel_table(uint32_t *cp_of_byte) {
    /* bytes that print as themselves keep their value; the other 68, in byte order, become
     * U+0100, U+0101, ... (GPT-2's bytes_to_unicode). */
    uint32_t next = 0x100;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        cp_of_byte[b] = printable ? (uint32_t)b : next++;
    }
    return NULL;
}

uint32_t moecl_bytelevel_char(uint8_t byte) {
    uint32_t table[256];
    (void)bytelevel_table(table);
    return table[byte];
}

size_t moecl_harmony_special_name(int32_t id, char *buf) {
    static const struct {
        int32_t id;
        const char *name;
    } named[] = {
        {199998, "<|startoftext|>"}, {199999, "<|endoftext|>"}, {200002, "<|return|>"},
        {200003, "<|constrain|>"},   {200005, "<|channel|>"},   {200006, "<|start|>"},
        {200007, "<|end|>"},         {200008, "<|message|>"},   {200012, "<|call|>"},
        {200018, "<|endofprompt|>"},
    };
    buf[0] = 0;
    if (id < MOECL_O200K_N_RANKS || id >= MOECL_O200K_HARMONY_N_VOCAB)
        return 0;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (named[i].id == id) {
            strcpy(buf, named[i].name);
            return strlen(buf);
        }
    return (size_t)snprintf(buf, 32, "<|reserved_%d|>", (int)id);
}

/* ------------------------------------------------------------------ index */

enum moecl_status moecl_vocab_index_build(const struct moecl_vocab *vocab, const char *what,
                                          struct moecl_vocab_index *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 1024;
    while (cap < (size_t)vocab->n_tokens * 2 + 2)
        cap *= 2;
    out->slots = malloc(cap * sizeof *out->slots);
    if (!out->slots)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory for the token index", what);
    out->bytes = vocab->bytes;
    out->offset = vocab->offset;
    out->mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        out->slots[i].id = -1;
    for (int32_t id = 0; id < vocab->n_tokens; id++) {
        const uint8_t *p = vocab->bytes + vocab->offset[id];
        size_t n = vocab->offset[id + 1] - vocab->offset[id];
        int32_t dup = moecl_vocab_index_find(out, p, n);
        if (dup >= 0) {
            moecl_vocab_index_free(out);
            return moecl_error_set(MOECL_ERR_FORMAT, "%s: ids %d and %d have the same bytes", what,
                                   (int)dup, (int)id);
        }
        uint64_t h = moecl_bytes_hash(p, n);
        size_t i = (size_t)h & out->mask;
        while (out->slots[i].id >= 0)
            i = (i + 1) & out->mask;
        out->slots[i].tag = (uint32_t)(h >> 32);
        out->slots[i].id = id;
    }
    return MOECL_OK;
}

void moecl_vocab_index_free(struct moecl_vocab_index *index) {
    if (!index)
        return;
    free(index->slots);
    memset(index, 0, sizeof *index);
}

/* ------------------------------------------------------------------ .tiktoken */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 with padding; returns the decoded length or -1. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4 != 0)
        return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad)
                    return -1;
                v[k] = b64_value((unsigned char)s[i + k]);
                if (v[k] < 0)
                    return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)w;
    }
    return o;
}

/* Checks what the BPE needs of any vocab: every single byte is a token. */
static enum moecl_status check_single_bytes(const struct moecl_vocab *vocab,
                                            const struct moecl_vocab_index *index,
                                            const char *path) {
    (void)vocab;
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        if (moecl_vocab_index_find(index, &byte, 1) < 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: byte 0x%02x is not a token (byte-level BPE needs all 256)",
                                   path, b);
    }
    return MOECL_OK;
}

enum moecl_status moecl_vocab_read_tiktoken(const char *path, struct moecl_vocab *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t n_text = 0;
    enum moecl_status st = read_whole(path, &text, &n_text);
    if (st != MOECL_OK)
        return st;
    size_t n_lines = 0;
    for (size_t i = 0; i < n_text; i++)
        n_lines += text[i] == '\n';
    if (n_text > 0 && text[n_text - 1] != '\n')
        n_lines++;
    struct moecl_vocab_index index = {0};
    uint32_t *len = NULL, *src = NULL;
    if (n_lines == 0 || n_lines > (1u << 24)) {
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: %zu lines; not a .tiktoken rank file", path,
                             n_lines);
        goto cleanup;
    }
    /* Decode each line in place: the decoded bytes are never longer than the base64. */
    len = calloc(n_lines, sizeof *len);
    src = malloc(n_lines * sizeof *src);
    out->offset = malloc((n_lines + 1) * sizeof *out->offset);
    out->bytes = malloc(n_text + 1);
    if (!len || !src || !out->offset || !out->bytes) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t i = 0; i < n_lines; i++)
        src[i] = UINT32_MAX;
    size_t pos = 0, line_no = 0;
    while (pos < n_text) {
        line_no++;
        char *nl = memchr(text + pos, '\n', n_text - pos);
        size_t end = nl ? (size_t)(nl - text) : n_text;
        char *sp = memchr(text + pos, ' ', end - pos);
        char *rank_end = NULL;
        errno = 0;
        long rank = sp ? strtol(sp + 1, &rank_end, 10) : -1;
        if (!sp || rank_end != text + end || errno || sp + 1 == rank_end || rank < 0 ||
            (size_t)rank >= n_lines) {
            st = moecl_error_set(MOECL_ERR_FORMAT,
                                 "%s:%zu: expected \"<base64> <rank>\" with a rank below %zu", path,
                                 line_no, n_lines);
            goto cleanup;
        }
        long n = b64_decode(text + pos, (size_t)(sp - (text + pos)), (uint8_t *)text + pos);
        if (n <= 0) {
            st = moecl_error_set(MOECL_ERR_FORMAT, "%s:%zu: bad base64 token", path, line_no);
            goto cleanup;
        }
        if (src[rank] != UINT32_MAX) {
            st = moecl_error_set(MOECL_ERR_FORMAT, "%s:%zu: rank %ld appears twice", path, line_no,
                                 rank);
            goto cleanup;
        }
        src[rank] = (uint32_t)pos;
        len[rank] = (uint32_t)n;
        pos = end + 1;
    }
    if (line_no != n_lines) {
        st = moecl_error_set(MOECL_ERR_INTERNAL, "%s: line count", path);
        goto cleanup;
    }
    size_t o = 0;
    for (size_t r = 0; r < n_lines; r++) {
        out->offset[r] = (uint32_t)o;
        memcpy(out->bytes + o, text + src[r], len[r]);
        o += len[r];
    }
    out->offset[n_lines] = (uint32_t)o;
    out->n_tokens = (int32_t)n_lines;
    st = moecl_vocab_index_build(out, path, &index);
    if (st == MOECL_OK)
        st = check_single_bytes(out, &index, path);
cleanup:
    moecl_vocab_index_free(&index);
    free(len);
    free(src);
    free(text);
    if (st != MOECL_OK)
        moecl_vocab_free(out);
    return st;
}

static enum moecl_status add_token(struct moecl_vocab *vocab, int32_t id, const char *content,
                                   const char *what) {
    size_t n = strlen(content);
    if (n == 0)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: added token %d is empty", what, (int)id);
    if (vocab->n_added > 0 && vocab->added[vocab->n_added - 1].id >= id)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: added token ids must ascend (%d after %d)", what, (int)id,
                               (int)vocab->added[vocab->n_added - 1].id);
    if (id < vocab->n_tokens)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: added token %s has id %d inside the BPE vocab (0..%d)", what,
                               content, (int)id, (int)vocab->n_tokens - 1);
    struct moecl_vocab_added *grown =
        realloc(vocab->added, (size_t)(vocab->n_added + 1) * sizeof *grown);
    char *copy = malloc(n + 1);
    if (grown)
        vocab->added = grown;
    if (!grown || !copy) {
        free(copy);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", what);
    }
    memcpy(copy, content, n + 1);
    vocab->added[vocab->n_added].id = id;
    vocab->added[vocab->n_added].content = copy;
    vocab->added[vocab->n_added].n_bytes = (uint32_t)n;
    vocab->n_added++;
    return MOECL_OK;
}

enum moecl_status moecl_vocab_add_harmony_specials(struct moecl_vocab *vocab) {
    if (vocab->n_tokens != MOECL_O200K_N_RANKS)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "o200k_harmony specials need the %d-token o200k_base vocab, not %d",
                               MOECL_O200K_N_RANKS, (int)vocab->n_tokens);
    for (int32_t id = MOECL_O200K_N_RANKS; id <= 200018; id++) {
        char name[32];
        moecl_harmony_special_name(id, name);
        enum moecl_status st = add_token(vocab, id, name, "o200k_harmony");
        if (st != MOECL_OK)
            return st;
    }
    return MOECL_OK;
}

/* ------------------------------------------------------------------ merges */

struct merge {
    int32_t left, right;
};

static int cmp_merge(const void *a, const void *b) {
    const struct merge *x = a, *y = b;
    if (x->left != y->left)
        return x->left < y->left ? -1 : 1;
    return (x->right > y->right) - (x->right < y->right);
}

/* transformers' converter: for each token in rank order, every split whose halves are tokens,
 * sorted by (rank(left), rank(right)). *n_out merges, malloc'd. */
static enum moecl_status compute_merges(const struct moecl_vocab *vocab,
                                        const struct moecl_vocab_index *index,
                                        struct merge **merges_out, size_t *n_out) {
    *merges_out = NULL;
    *n_out = 0;
    size_t cap = 1 << 20, n = 0;
    struct merge *m = malloc(cap * sizeof *m);
    if (!m)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory for merges");
    for (int32_t id = 0; id < vocab->n_tokens; id++) {
        const uint8_t *p = vocab->bytes + vocab->offset[id];
        size_t len = vocab->offset[id + 1] - vocab->offset[id];
        size_t first = n;
        for (size_t k = 1; k < len; k++) {
            int32_t l = moecl_vocab_index_find(index, p, k);
            int32_t r = l >= 0 ? moecl_vocab_index_find(index, p + k, len - k) : -1;
            if (r < 0)
                continue;
            if (n == cap) {
                cap *= 2;
                struct merge *grown = realloc(m, cap * sizeof *m);
                if (!grown) {
                    free(m);
                    return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory for merges");
                }
                m = grown;
            }
            m[n].left = l;
            m[n].right = r;
            n++;
        }
        qsort(m + first, n - first, sizeof *m, cmp_merge);
    }
    *merges_out = m;
    *n_out = n;
    return MOECL_OK;
}

/* ------------------------------------------------------------------ tokenizer.json reader */

/* Byte-level string (UTF-8 of mapped chars) -> bytes; returns length or -1. */
static long bytelevel_decode(const char *s, const int16_t *byte_of_cp, uint8_t *out) {
    long n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
            p += 2;
        } else {
            return -1; /* every mapped char is below U+0800 */
        }
        if (cp >= 0x144 || byte_of_cp[cp] < 0)
            return -1;
        out[n++] = (uint8_t)byte_of_cp[cp];
    }
    return n;
}

static const cJSON *get(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int is_false_or_absent(const cJSON *obj, const char *key) {
    const cJSON *v = get(obj, key);
    return !v || cJSON_IsFalse(v) || cJSON_IsNull(v);
}

static enum moecl_status check_pre_tokenizer(const cJSON *root, const char *path) {
    const cJSON *norm = get(root, "normalizer");
    if (norm && !cJSON_IsNull(norm))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: \"normalizer\" must be null (gpt-oss has none)", path);
    const cJSON *pre = get(root, "pre_tokenizer");
    const cJSON *type = get(pre, "type");
    const cJSON *list = get(pre, "pretokenizers");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "Sequence") != 0 ||
        cJSON_GetArraySize(list) != 2)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: \"pre_tokenizer\" must be a Sequence of Split(o200k regex) and "
                               "ByteLevel",
                               path);
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const cJSON *stype = get(split, "type"), *regex = get(get(split, "pattern"), "Regex");
    const cJSON *behavior = get(split, "behavior");
    if (!cJSON_IsString(stype) || strcmp(stype->valuestring, "Split") != 0 ||
        !cJSON_IsString(regex) || !cJSON_IsString(behavior) ||
        strcmp(behavior->valuestring, "Isolated") != 0 || !is_false_or_absent(split, "invert"))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: pre_tokenizer[0] must be Split with a Regex pattern, "
                               "behavior Isolated, invert false",
                               path);
    if (strcmp(regex->valuestring, moecl_o200k_pattern) != 0)
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: the Split regex is not the o200k pattern; moecl implements "
                               "only that one",
                               path);
    const cJSON *btype = get(bl, "type");
    if (!cJSON_IsString(btype) || strcmp(btype->valuestring, "ByteLevel") != 0 ||
        !is_false_or_absent(bl, "add_prefix_space") || !is_false_or_absent(bl, "use_regex"))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                               "%s: pre_tokenizer[1] must be ByteLevel with add_prefix_space and "
                               "use_regex false",
                               path);
    return MOECL_OK;
}

static enum moecl_status read_model_vocab(const cJSON *model, const char *path,
                                          const int16_t *byte_of_cp, struct moecl_vocab *out) {
    const cJSON *vocab = get(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: model.vocab is not an object", path);
    int n = cJSON_GetArraySize(vocab);
    if (n <= 256)
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: model.vocab has only %d entries", path, n);
    size_t n_bytes = 0;
    for (const cJSON *e = vocab->child; e; e = e->next)
        n_bytes += strlen(e->string);
    uint32_t *len = calloc((size_t)n, sizeof *len);
    uint32_t *src = calloc((size_t)n, sizeof *src);
    uint8_t *tmp = malloc(n_bytes + 1);
    out->offset = malloc(((size_t)n + 1) * sizeof *out->offset);
    out->bytes = malloc(n_bytes + 1);
    enum moecl_status st = MOECL_OK;
    if (!len || !src || !tmp || !out->offset || !out->bytes) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory for the vocab", path);
        goto cleanup;
    }
    size_t o = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < n) || v != (double)(int32_t)v) {
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                 "%s: model.vocab id of \"%s\" is not in 0..%d (ids must be "
                                 "dense)",
                                 path, e->string, n - 1);
            goto cleanup;
        }
        int32_t id = (int32_t)v;
        long k = bytelevel_decode(e->string, byte_of_cp, tmp + o);
        if (k <= 0) {
            st = moecl_error_set(MOECL_ERR_FORMAT,
                                 "%s: model.vocab key \"%s\" is not a byte-level string", path,
                                 e->string);
            goto cleanup;
        }
        if (len[id]) {
            st = moecl_error_set(MOECL_ERR_FORMAT, "%s: model.vocab id %d appears twice", path,
                                 (int)id);
            goto cleanup;
        }
        src[id] = (uint32_t)o;
        len[id] = (uint32_t)k;
        o += (size_t)k;
    }
    o = 0;
    for (int32_t id = 0; id < n; id++) {
        out->offset[id] = (uint32_t)o;
        memcpy(out->bytes + o, tmp + src[id], len[id]);
        o += len[id];
    }
    out->offset[n] = (uint32_t)o;
    out->n_tokens = n;
cleanup:
    free(len);
    free(src);
    free(tmp);
    return st;
}

/* The merges must be what the ranks imply (see the header): each merge's halves and result are
 * tokens, results come in ascending rank, and there are exactly as many as the ranks allow. */
static enum moecl_status check_merges(const cJSON *model, const char *path,
                                      const int16_t *byte_of_cp, const struct moecl_vocab *vocab,
                                      const struct moecl_vocab_index *index) {
    const cJSON *merges = get(model, "merges");
    if (!cJSON_IsArray(merges))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: model.merges is not an array", path);
    size_t max_len = 0;
    for (int32_t id = 0; id < vocab->n_tokens; id++)
        if (vocab->offset[id + 1] - vocab->offset[id] > max_len)
            max_len = vocab->offset[id + 1] - vocab->offset[id];
    uint8_t *buf = malloc(4 * max_len + 64);
    if (!buf)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    enum moecl_status st = MOECL_OK;
    size_t i = 0;
    int32_t last_rank = -1;
    char text[1024];
    for (const cJSON *m = merges->child; m; m = m->next, i++) {
        const char *a = NULL, *b = NULL;
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            size_t n_a = sp ? (size_t)(sp - m->valuestring) : 0;
            if (sp && n_a < sizeof text / 2 && strlen(sp + 1) < sizeof text / 2) {
                memcpy(text, m->valuestring, n_a);
                text[n_a] = 0;
                strcpy(text + sizeof text / 2, sp + 1);
                a = text;
                b = text + sizeof text / 2;
            }
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
        }
        long na = a && strlen(a) <= 2 * max_len ? bytelevel_decode(a, byte_of_cp, buf) : -1;
        long nb =
            na > 0 && strlen(b) <= 2 * max_len ? bytelevel_decode(b, byte_of_cp, buf + na) : -1;
        int32_t whole = nb > 0 && (size_t)(na + nb) <= max_len
                            ? moecl_vocab_index_find(index, buf, (size_t)(na + nb))
                            : -1;
        if (whole < 0 || moecl_vocab_index_find(index, buf, (size_t)na) < 0 ||
            moecl_vocab_index_find(index, buf + na, (size_t)nb) < 0) {
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                 "%s: model.merges[%zu] is not two tokens whose concatenation is "
                                 "a token",
                                 path, i);
            goto cleanup;
        }
        if (whole < last_rank) {
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                 "%s: model.merges[%zu] makes token %d after token %d: merges not "
                                 "in rank order, which moecl's rank-based BPE cannot reproduce",
                                 path, i, (int)whole, (int)last_rank);
            goto cleanup;
        }
        last_rank = whole;
    }
    struct merge *all = NULL;
    size_t n_all = 0;
    st = compute_merges(vocab, index, &all, &n_all);
    free(all);
    if (st == MOECL_OK && n_all != i)
        st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                             "%s: model.merges has %zu entries but the ranks imply %zu", path, i,
                             n_all);
cleanup:
    free(buf);
    return st;
}

static enum moecl_status read_added(const cJSON *root, const char *path, struct moecl_vocab *out) {
    const cJSON *added = get(root, "added_tokens");
    if (added && !cJSON_IsArray(added))
        return moecl_error_set(MOECL_ERR_FORMAT, "%s: added_tokens is not an array", path);
    int i = 0;
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next, i++) {
        const cJSON *id = get(t, "id"), *content = get(t, "content"), *special = get(t, "special");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content) || id->valuedouble < 0 ||
            id->valuedouble > 1e7)
            return moecl_error_set(MOECL_ERR_FORMAT,
                                   "%s: added_tokens[%d] needs a numeric id and a string content",
                                   path, i);
        if (!cJSON_IsTrue(special) || !is_false_or_absent(t, "lstrip") ||
            !is_false_or_absent(t, "rstrip") || !is_false_or_absent(t, "single_word") ||
            !is_false_or_absent(t, "normalized"))
            return moecl_error_set(MOECL_ERR_UNSUPPORTED,
                                   "%s: added_tokens[%d] (%s): only special tokens without "
                                   "lstrip/rstrip/single_word/normalized are supported",
                                   path, i, content->valuestring);
        enum moecl_status st = add_token(out, (int32_t)id->valuedouble, content->valuestring, path);
        if (st != MOECL_OK)
            return st;
    }
    return MOECL_OK;
}

enum moecl_status moecl_vocab_read_tokenizer_json(const char *path, struct moecl_vocab *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t n_text = 0;
    enum moecl_status st = read_whole(path, &text, &n_text);
    if (st != MOECL_OK)
        return st;
    struct moecl_vocab_index index = {0};
    cJSON *root = cJSON_ParseWithLength(text, n_text);
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        size_t at = where && where >= text && where <= text + n_text ? (size_t)(where - text) : 0;
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: invalid JSON near byte %zu of %zu", path, at,
                             n_text);
        goto cleanup;
    }
    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[0x144];
    (void)bytelevel_table(cp_of_byte);
    for (int c = 0; c < 0x144; c++)
        byte_of_cp[c] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of_byte[b]] = (int16_t)b;
    const cJSON *model = get(root, "model");
    const cJSON *type = get(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0) {
        st = moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: model.type must be \"BPE\"", path);
        goto cleanup;
    }
    if (!cJSON_IsTrue(get(model, "ignore_merges")) || !is_false_or_absent(model, "byte_fallback") ||
        (get(model, "dropout") && !cJSON_IsNull(get(model, "dropout")))) {
        st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                             "%s: model needs ignore_merges true, no byte_fallback, no dropout "
                             "(gpt-oss's settings; others tokenize differently)",
                             path);
        goto cleanup;
    }
    st = check_pre_tokenizer(root, path);
    if (st == MOECL_OK)
        st = read_model_vocab(model, path, byte_of_cp, out);
    if (st == MOECL_OK)
        st = moecl_vocab_index_build(out, path, &index);
    if (st == MOECL_OK)
        st = check_single_bytes(out, &index, path);
    if (st == MOECL_OK)
        st = check_merges(model, path, byte_of_cp, out, &index);
    if (st == MOECL_OK)
        st = read_added(root, path, out);
cleanup:
    moecl_vocab_index_free(&index);
    cJSON_Delete(root);
    free(text);
    if (st != MOECL_OK)
        moecl_vocab_free(out);
    return st;
}

/* ------------------------------------------------------------------ tokenizer.json writer */

/* A JSON string as serde_json writes it: UTF-8 kept, '"' '\\' and controls escaped. */
static void put_json_bytes(FILE *f, const uint8_t *s, size_t n) {
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            putc('\\', f);
            putc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\b') {
            fputs("\\b", f);
        } else if (c == '\f') {
            fputs("\\f", f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            putc(c, f);
        }
    }
    putc('"', f);
}

static void put_bytelevel(FILE *f, const uint32_t *cp_of_byte, const uint8_t *p, size_t n) {
    uint8_t buf[1024];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 <= sizeof buf; i++) {
        uint32_t c = cp_of_byte[p[i]];
        if (c < 0x80) {
            buf[o++] = (uint8_t)c;
        } else {
            buf[o++] = (uint8_t)(0xc0 | (c >> 6));
            buf[o++] = (uint8_t)(0x80 | (c & 0x3f));
        }
    }
    put_json_bytes(f, buf, o);
}

static void write_json(FILE *f, const struct moecl_vocab *v, const struct merge *merges,
                       size_t n_merges) {
    uint32_t cp_of_byte[256];
    (void)bytelevel_table(cp_of_byte);
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
          "  \"added_tokens\": [",
          f);
    for (int32_t i = 0; i < v->n_added; i++) {
        fprintf(f, "%s\n    {\n      \"id\": %d,\n      \"content\": ", i ? "," : "",
                (int)v->added[i].id);
        put_json_bytes(f, (const uint8_t *)v->added[i].content, v->added[i].n_bytes);
        fputs(",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": "
              "false,\n      \"normalized\": false,\n      \"special\": true\n    }",
              f);
    }
    fputs(v->n_added ? "\n  ],\n" : "],\n", f);
    fputs("  \"normalizer\": null,\n  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n"
          "    \"pretokenizers\": [\n      {\n        \"type\": \"Split\",\n"
          "        \"pattern\": {\n          \"Regex\": ",
          f);
    put_json_bytes(f, (const uint8_t *)moecl_o200k_pattern, strlen(moecl_o200k_pattern));
    fputs("\n        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n"
          "      },\n      {\n        \"type\": \"ByteLevel\",\n"
          "        \"add_prefix_space\": false,\n        \"trim_offsets\": true,\n"
          "        \"use_regex\": false\n      }\n    ]\n  },\n"
          "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
          "    \"trim_offsets\": false,\n    \"use_regex\": true\n  },\n"
          "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
          "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n"
          "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
          "    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n"
          "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
          "    \"byte_fallback\": false,\n    \"ignore_merges\": true,\n    \"vocab\": {",
          f);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        fputs(id ? ",\n      " : "\n      ", f);
        put_bytelevel(f, cp_of_byte, v->bytes + v->offset[id], v->offset[id + 1] - v->offset[id]);
        fprintf(f, ": %d", (int)id);
    }
    fputs(v->n_tokens ? "\n    },\n    \"merges\": [" : "},\n    \"merges\": [", f);
    for (size_t i = 0; i < n_merges; i++) {
        const struct merge *m = &merges[i];
        fputs(i ? ",\n      [\n        " : "\n      [\n        ", f);
        put_bytelevel(f, cp_of_byte, v->bytes + v->offset[m->left],
                      v->offset[m->left + 1] - v->offset[m->left]);
        fputs(",\n        ", f);
        put_bytelevel(f, cp_of_byte, v->bytes + v->offset[m->right],
                      v->offset[m->right + 1] - v->offset[m->right]);
        fputs("\n      ]", f);
    }
    fputs(n_merges ? "\n    ]\n  }\n}" : "]\n  }\n}", f);
}

enum moecl_status moecl_tokenizer_json_write(const char *tiktoken_path, const char *out_path) {
    struct moecl_vocab vocab;
    struct moecl_vocab_index index = {0};
    struct merge *merges = NULL;
    size_t n_merges = 0;
    char *tmp = NULL;
    FILE *f = NULL;
    enum moecl_status st = moecl_vocab_read_tiktoken(tiktoken_path, &vocab);
    if (st != MOECL_OK)
        return st;
    for (int32_t id = 0; id < vocab.n_tokens; id++)
        if (vocab.offset[id + 1] - vocab.offset[id] > 256) {
            st = moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: token %d is longer than 256 bytes",
                                 tiktoken_path, (int)id);
            goto cleanup;
        }
    st = moecl_vocab_add_harmony_specials(&vocab);
    if (st != MOECL_OK) {
        st = moecl_error_prefix(st, "%s: ", tiktoken_path);
        goto cleanup;
    }
    st = moecl_vocab_index_build(&vocab, tiktoken_path, &index);
    if (st == MOECL_OK)
        st = compute_merges(&vocab, &index, &merges, &n_merges);
    if (st != MOECL_OK)
        goto cleanup;
    size_t n_tmp = strlen(out_path) + 16;
    tmp = malloc(n_tmp);
    if (!tmp) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
        goto cleanup;
    }
    snprintf(tmp, n_tmp, "%s.tmp", out_path);
    f = fopen(tmp, "wb");
    if (!f) {
        st = moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto cleanup;
    }
    write_json(f, &vocab, merges, n_merges);
    int bad = ferror(f);
    if (fclose(f) != 0)
        bad = 1;
    f = NULL;
    if (bad || rename(tmp, out_path) != 0) {
        st = moecl_error_set(MOECL_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
        remove(tmp);
    }
cleanup:
    if (f) {
        fclose(f);
        remove(tmp);
    }
    free(tmp);
    free(merges);
    moecl_vocab_index_free(&index);
    moecl_vocab_free(&vocab);
    return st;
}
