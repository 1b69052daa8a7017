/* moecl_mlx_window_step (the order of mlx-lm's RotatingKVCache) against a direct model of that
 * cache: the buffer as an explicit array of the positions it holds, updated by the same steps
 * as mlx_lm/models/cache.py (grow, trim, rotate, write; temporal order, trim, append), for
 * random sequences of call sizes. After each single-token call the buffer's slot order must be
 * the window rotated by the returned shift; after a multi-token call, time order (shift 0). */
#include "test.h"

#include "model_internal.h"

#include <stdlib.h>
#include <string.h>

/* The cache: buf[0..shape) positions (-1: a zero slot not yet written), offset, idx. */
struct rot_cache {
    int64_t *buf, shape, offset, idx, max_size;
};

static void rc_set(struct rot_cache *c, const int64_t *v, int64_t n) {
    memmove(c->buf, v, (size_t)n * sizeof *v);
    c->shape = n;
}

/* _trim(trim_size, v, append): drop the first trim_size slots, then append n positions. */
static void rc_trim_append(struct rot_cache *c, int64_t trim, int64_t first, int64_t n) {
    if (trim > 0)
        rc_set(c, c->buf + trim, c->shape - trim);
    for (int64_t i = 0; i < n; i++)
        c->buf[c->shape++] = first + i;
}

static void rc_temporal_order(struct rot_cache *c, int64_t *tmp) {
    if (c->idx == c->shape)
        return;
    if (c->idx < c->offset) { /* [idx:] then [:idx] (keep 0) */
        int64_t n = 0;
        for (int64_t s = c->idx; s < c->shape; s++)
            tmp[n++] = c->buf[s];
        for (int64_t s = 0; s < c->idx; s++)
            tmp[n++] = c->buf[s];
        rc_set(c, tmp, n);
    } else {
        c->shape = c->idx;
    }
}

/* One call of n tokens; *out / *n_out: the keys it returns, in buffer order. */
static void rc_update(struct rot_cache *c, int64_t n, int64_t *tmp, const int64_t **out,
                      int64_t *n_out) {
    if (n > 1) {
        if (c->shape == 0) {
            rc_trim_append(c, 0, c->offset, n);
        } else {
            rc_temporal_order(c, tmp);
            c->idx = c->shape;
            rc_trim_append(c, c->idx - c->max_size + 1, c->offset, n);
        }
        c->offset += n;
        c->idx = c->shape;
        *out = c->buf;
        *n_out = c->shape;
        return;
    }
    int64_t prev = c->offset;
    if (c->shape == 0 || (prev >= c->shape && c->shape < c->max_size)) {
        int64_t grow = c->max_size - prev < 256 ? c->max_size - prev : 256;
        for (int64_t i = 0; i < grow; i++)
            c->buf[c->shape++] = -1;
        c->idx = prev;
    }
    int64_t trim = c->shape - c->max_size;
    if (trim > 0) {
        rc_set(c, c->buf + trim, c->shape - trim);
        c->idx = c->max_size;
    }
    if (c->idx == c->max_size)
        c->idx = 0;
    c->buf[c->idx] = c->offset;
    c->offset += 1;
    c->idx += 1;
    *out = c->buf;
    *n_out = c->offset < c->shape ? c->offset : c->shape;
}

/* Runs `calls` random call sizes at window W; returns the number of calls whose order differs
 * from the closed form, and counts the single-token calls with a nonzero shift in *rotated. */
static int run_sequence(int64_t W, int calls, uint64_t seed, int *rotated) {
    int64_t cap = 8 * W + 4096;
    struct rot_cache c = {calloc((size_t)cap, sizeof(int64_t)), 0, 0, 0, W};
    int64_t *tmp = calloc((size_t)cap, sizeof(int64_t));
    int64_t shape = 0, idx = 0;
    int bad = 0;
    uint64_t st = seed;
    for (int k = 0; k < calls && c.buf && tmp; k++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned r = (unsigned)(st >> 33);
        int64_t n = r % 5 ? 1 : 2 + (int64_t)(r / 5 % (uint64_t)(W + 40));
        uint32_t shift = moecl_mlx_window_step(&shape, &idx, c.offset, W, (int)n);
        const int64_t *keys;
        int64_t nk;
        rc_update(&c, n, tmp, &keys, &nk);
        int64_t p = c.offset - 1, lo = p + 1 > W ? p + 1 - W : 0, want = p + 1 - lo;
        if (n == 1) {
            /* in-place: the keys are exactly the window, rotated by shift */
            int ok = nk == want && shift < (uint32_t)want;
            for (int64_t i = 0; ok && i < nk; i++)
                ok = keys[i] == lo + (i + (int64_t)shift) % want;
            *rotated += shift != 0;
            bad += !ok;
        } else {
            /* concat: time order (masked keys before the window), shift 0 */
            int ok = shift == 0 && keys[nk - 1] == p;
            for (int64_t i = 1; ok && i < nk; i++)
                ok = keys[i] == keys[i - 1] + 1;
            bad += !ok;
        }
    }
    free(c.buf);
    free(tmp);
    return bad;
}

TEST(mlx_window_order_matches_rotating_cache) {
    /* many short sequences: the states of a cache's first window (growing, not yet full)
     * come only at the start */
    static const int64_t windows[] = {1, 2, 8, 128, 300};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++)
        for (uint64_t seed = 1; seed <= 200; seed++) {
            int rotated = 0;
            int bad = run_sequence(windows[w], (int)windows[w] * 2 + 40, seed * 977 + w, &rotated);
            if (bad)
                moecl_test_fail(__FILE__, __LINE__, "window %lld seed %llu: %d calls differ",
                                (long long)windows[w], (unsigned long long)seed, bad);
            /* the sequences reach rotated states (else the test proves nothing) */
            if (windows[w] > 1 && seed == 1)
                CHECK(rotated > 0);
        }
}
