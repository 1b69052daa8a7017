/* The o200k pre-tokenizer: UTF-8 handling and a hand-written scanner for the o200k regex.
 *
 * Why no regex engine: the o200k pattern only needs forward scans with one character of
 * look-ahead once its backtracking is worked out (spec tokenizer-harmony.md §3.3), which is
 * linear and far faster than a general engine (and cannot overflow a stack on long runs, as
 * tiktoken's fancy-regex does on a megabyte of spaces). */
#include "tokenizer.h"

#include "moecl_error.h"
#include "unicode_class.h"

#include <stdlib.h>
#include <string.h>

#define NO_POS SIZE_MAX

/* ================================================================== UTF-8 */

size_t moecl_utf8_seq(const uint8_t *s, size_t n, size_t i, size_t *bad_out, int *truncated_out) {
    uint8_t b = s[i];
    *bad_out = 1;
    *truncated_out = 0;
    if (b < 0x80)
        return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
        need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
        need = 2;
        lo = b == 0xe0 ? 0xa0 : 0x80;
        hi = b == 0xed ? 0x9f : 0xbf;
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3;
        lo = b == 0xf0 ? 0x90 : 0x80;
        hi = b == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0; /* continuation byte, C0, C1, F5..FF */
    }
    for (size_t k = 1; k <= need; k++) {
        if (i + k >= n) {
            *bad_out = k;
            *truncated_out = 1;
            return 0;
        }
        uint8_t c = s[i + k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) {
            *bad_out = k;
            return 0;
        }
    }
    return need + 1;
}

/* Offset of the first invalid sequence, or n. */
size_t moecl_utf8_first_invalid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad;
        int trunc;
        size_t len = moecl_utf8_seq(s, n, i, &bad, &trunc);
        if (len == 0)
            return i;
        i += len;
    }
    return n;
}

/* A copy of s with every maximal invalid subpart replaced by U+FFFD (malloc'd). */
uint8_t *moecl_utf8_replace(const uint8_t *s, size_t n, size_t *n_out) {
    uint8_t *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t bad;
        int trunc;
        size_t len = moecl_utf8_seq(s, n, i, &bad, &trunc);
        if (len) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += bad;
        }
    }
    *n_out = o;
    return out;
}

/* ================================================================== pre-tokenizer */

#define UC_NL 0x40u /* CR or LF (an extra flag beside unicode_class.h's) */

/* Class flags and byte length of the (valid) character at s[i], i < n. */
static inline unsigned char_at(const uint8_t *s, size_t i, size_t *len) {
    uint8_t b = s[i];
    uint32_t cp;
    if (b < 0x80) {
        *len = 1;
        if (b == '\r' || b == '\n')
            return MOECL_UC_SPACE | UC_NL;
        return moecl_unicode_class(b);
    }
    if (b < 0xe0) {
        *len = 2;
        cp = (uint32_t)(b & 0x1f) << 6 | (s[i + 1] & 0x3fu);
    } else if (b < 0xf0) {
        *len = 3;
        cp = (uint32_t)(b & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 | (s[i + 2] & 0x3fu);
    } else {
        *len = 4;
        cp = (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3f) << 12 |
             (uint32_t)(s[i + 2] & 0x3f) << 6 | (s[i + 3] & 0x3fu);
    }
    return moecl_unicode_class(cp);
}

#define PUN(f) (((f) & (MOECL_UC_SPACE | MOECL_UC_LETTER | MOECL_UC_NUMBER)) == 0)

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at e: its length in bytes, or 0. U+017F (long s) folds to s. */
static inline size_t contraction(const uint8_t *s, size_t n, size_t e) {
    if (e + 1 >= n || s[e] != '\'')
        return 0;
    uint8_t c = s[e + 1] | 0x20;
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
        return 2;
    if (s[e + 1] == 0xc5 && e + 2 < n && s[e + 2] == 0xbf)
        return 3;
    if (e + 2 >= n)
        return 0;
    uint8_t d = s[e + 2] | 0x20;
    if (((c == 'r' || c == 'v') && d == 'e') || (c == 'l' && d == 'l'))
        return 3;
    return 0;
}

/* End of the maximal run of chars having any of `flags`, from i. */
static inline size_t run_end(const uint8_t *s, size_t n, size_t i, unsigned flags) {
    size_t len;
    while (i < n && (char_at(s, i, &len) & flags))
        i += len;
    return i;
}

/* Alternative 1 without its prefix, from st: [UP]*[LO]+K? (greedy with backtracking: if no
 * LO char follows the UP run, the LO part is the run's last LO char). NO_POS if no match. */
static size_t alt1(const uint8_t *s, size_t n, size_t st) {
    size_t u = st, last_lo = NO_POS, len = 0;
    unsigned f = 0;
    while (u < n) {
        f = char_at(s, u, &len);
        if (!(f & MOECL_UC_UP))
            break;
        u += len;
        if (f & MOECL_UC_LO)
            last_lo = u;
    }
    size_t e;
    if (u < n && (f & MOECL_UC_LO))
        e = run_end(s, n, u, MOECL_UC_LO);
    else if (last_lo != NO_POS)
        e = last_lo;
    else
        return NO_POS;
    return e + contraction(s, n, e);
}

/* Alternative 2 without its prefix, from st: [UP]+[LO]*K?. NO_POS if no match. */
static size_t alt2(const uint8_t *s, size_t n, size_t st) {
    size_t len;
    if (st >= n || !(char_at(s, st, &len) & MOECL_UC_UP))
        return NO_POS;
    size_t e = run_end(s, n, run_end(s, n, st, MOECL_UC_UP), MOECL_UC_LO);
    return e + contraction(s, n, e);
}

size_t moecl_pretokenize_next(const uint8_t *s, size_t n, size_t i) {
    size_t l0, len, e;
    unsigned f = char_at(s, i, &l0);
    /* 1-2: letter runs (alternative 1, then 2), optional one-char prefix */
    if (f & MOECL_UC_LETTER) {
        e = alt1(s, n, i);
        return e != NO_POS ? e : alt2(s, n, i);
    }
    if (!(f & (UC_NL | MOECL_UC_NUMBER))) {
        if ((e = alt1(s, n, i + l0)) != NO_POS)
            return e;
        if ((f & MOECL_UC_MARK) && (e = alt1(s, n, i)) != NO_POS)
            return e;
        if ((e = alt2(s, n, i + l0)) != NO_POS)
            return e;
    }
    /* 3: \p{N}{1,3} */
    if (f & MOECL_UC_NUMBER) {
        e = i + l0;
        for (int k = 1; k < 3 && e < n && (char_at(s, e, &len) & MOECL_UC_NUMBER); k++)
            e += len;
        return e;
    }
    /* 4: " ?[^\s\p{L}\p{N}]+[\r\n/]*" */
    size_t j = NO_POS;
    if (PUN(f))
        j = i;
    else if (s[i] == ' ' && i + 1 < n && PUN(char_at(s, i + 1, &len)))
        j = i + 1;
    if (j != NO_POS) {
        e = j;
        while (e < n && PUN(char_at(s, e, &len)))
            e += len;
        while (e < n && (s[e] == '\r' || s[e] == '\n' || s[e] == '/'))
            e++;
        return e;
    }
    /* 5-7: whitespace run R from i (s[i] is \s here) */
    size_t last_nl_end = NO_POS, last_start = i;
    e = i;
    while (e < n) {
        unsigned g = char_at(s, e, &len);
        if (!(g & MOECL_UC_SPACE))
            break;
        last_start = e;
        e += len;
        if (g & UC_NL)
            last_nl_end = e;
    }
    if (last_nl_end != NO_POS) /* \s*[\r\n]+ ends after R's last CR/LF */
        return last_nl_end;
    if (e >= n) /* \s+(?!\S) at the end of the text: all of R */
        return e;
    if (last_start > i) /* \s+(?!\S): R but its last char, which joins the next piece */
        return last_start;
    return e; /* \s+: one char */
}

enum moecl_status moecl_tokenizer_pretokenize(const char *text, size_t n_bytes, size_t **ends_out,
                                              size_t *n_pieces_out) {
    if (ends_out)
        *ends_out = NULL;
    if (n_pieces_out)
        *n_pieces_out = 0;
    if ((!text && n_bytes) || !ends_out || !n_pieces_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tokenizer_pretokenize: NULL argument");
    const uint8_t *s = (const uint8_t *)text;
    size_t bad_at = moecl_utf8_first_invalid(s, n_bytes);
    if (bad_at < n_bytes)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "tokenizer_pretokenize: invalid UTF-8 at byte %zu", bad_at);
    size_t n = 0, cap = 0, *ends = NULL;
    for (size_t i = 0; i < n_bytes;) {
        i = moecl_pretokenize_next(s, n_bytes, i);
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            size_t *grown = realloc(ends, cap * sizeof *ends);
            if (!grown) {
                free(ends);
                return moecl_error_set(MOECL_ERR_NO_MEMORY, "tokenizer_pretokenize: out of memory");
            }
            ends = grown;
        }
        ends[n++] = i;
    }
    *ends_out = ends;
    *n_pieces_out = n;
    return MOECL_OK;
}
