/* mkmodel: deterministic weight data.
 *
 * Packed codes are uniform random bits, so every quantized value covers the whole code range
 * (all 2^bits affine levels, all 16 FP4 codes, every finite E4M3 code). Scales are chosen so
 * that each dequantized weight has a standard deviation near 1/sqrt(fan_in), which keeps
 * activations of order one through any number of layers (logits are noise, but finite).
 *
 * Packed data comes from xoshiro256** seeded per module (sequential, so the output does not
 * depend on the chunk size); per-group values (scales, biases) come from a counter-based hash of
 * (module seed, group index), so a module's .biases can recompute the scale its .scales holds. */
#include "mkmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES ((size_t)4 << 20)

/* ------------------------------------------------------------------ random */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t mk_hash_str(uint64_t seed, const char *s) {
    uint64_t h = 0xCBF29CE484222325ull ^ splitmix64(seed);
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return splitmix64(h);
}

struct xoshiro {
    uint64_t s[4];
};

static void xo_seed(struct xoshiro *x, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        seed = splitmix64(seed);
        x->s[i] = seed;
    }
}

static inline uint64_t rotl(uint64_t v, int k) {
    return (v << k) | (v >> (64 - k));
}

static inline uint64_t xo_next(struct xoshiro *x) {
    uint64_t *s = x->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static inline double unit(uint64_t r) { /* [0, 1) */
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------ float formats */

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint16_t)(sign | 0x7E00u);
    if (a >= 0x477FF000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal, RNE on the 2^-24 grid */
        float af;
        memcpy(&af, &a, 4);
        float m = af * 16777216.0f; /* exact scaling by 2^24 */
        return (uint16_t)(sign | (uint32_t)lrintf(m));
    }
    uint32_t r = a + 0xFFFu + ((a >> 13) & 1); /* RNE to 10 mantissa bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static double e4m3_value(unsigned b) {
    unsigned e = (b >> 3) & 15, m = b & 7;
    double v = e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
    return (b & 0x80) ? -v : v;
}

static const double fp4_table[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};

/* Root mean square of a uniformly random code of the element format. */
static double code_rms(int fp8) {
    double s = 0;
    int n = 0;
    if (fp8) {
        for (unsigned b = 0; b < 256; b++) {
            if ((b & 0x7F) == 0x7F)
                continue;
            double v = e4m3_value(b);
            s += v * v;
            n++;
        }
    } else {
        for (int i = 0; i < 8; i++) {
            s += fp4_table[i] * fp4_table[i];
            n++;
        }
    }
    return sqrt(s / n);
}

/* ------------------------------------------------------------------ per-group values */

/* Affine scale of group g: std(q) * |s| ~ target, random in [0.75, 1.25] of that, random sign
 * (mx.quantize produces negative scales too). */
static double affine_scale(const struct mk_tensor *t, uint64_t g, uint64_t *r_out) {
    uint64_t r = splitmix64(t->seed ^ (g * 0xD1B54A32D192ED03ull));
    double n = (double)((1u << t->bits) - 1);
    double std_q = sqrt(((n + 1) * (n + 1) - 1) / 12.0);
    double s = t->target / std_q * (0.75 + 0.5 * unit(r));
    *r_out = splitmix64(r);
    return (r & 1) ? -s : s;
}

static double affine_bias(const struct mk_tensor *t, uint64_t g) {
    uint64_t r;
    double s = affine_scale(t, g, &r);
    double n = (double)((1u << t->bits) - 1);
    /* centre the codes on zero, with a small offset */
    return -s * n / 2.0 + t->target * 0.2 * (unit(r) - 0.5);
}

static uint8_t e8m0_scale(const struct mk_tensor *t, uint64_t g, int e0) {
    uint64_t r = splitmix64(t->seed ^ (g * 0xD1B54A32D192ED03ull));
    int e = e0 + (int)(r % 3) - 1;
    return (uint8_t)(e < 1 ? 1 : e > 254 ? 254 : e);
}

static int nearest_e4m3(double v) {
    int best = 1;
    for (int b = 1; b < 0x7F; b++)
        if (fabs(e4m3_value((unsigned)b) - v) < fabs(e4m3_value((unsigned)best) - v))
            best = b;
    return best;
}

/* ------------------------------------------------------------------ streaming */

static void store_float(enum moecl_dtype dt, unsigned char *dst, double v) {
    float f = (float)v;
    if (dt == MOECL_DTYPE_F32) {
        memcpy(dst, &f, 4);
    } else {
        uint16_t h = dt == MOECL_DTYPE_BF16 ? to_bf16(f) : to_f16(f);
        memcpy(dst, &h, 2);
    }
}

int mk_generate(const struct mk_opts *o, const struct mk_tensor *t, mk_sink_fn sink, void *ctx) {
    (void)o;
    unsigned char *buf = malloc(CHUNK_BYTES);
    if (!buf)
        return -1;
    struct xoshiro x;
    xo_seed(&x, t->seed);
    size_t esize = moecl_dtype_size(t->dtype);
    int rc = 0;
    int e0 = 0, c0 = 0;
    if (t->gen == MK_GEN_E8M0_SCALES)
        e0 = 127 + (int)lround(log2(t->target / code_rms(t->bits == 8)));
    if (t->gen == MK_GEN_E4M3_SCALES)
        c0 = nearest_e4m3(t->target / code_rms(0));

    uint64_t done = 0;
    while (done < t->n_bytes && rc == 0) {
        size_t n = t->n_bytes - done < CHUNK_BYTES ? (size_t)(t->n_bytes - done) : CHUNK_BYTES;
        switch (t->gen) {
        case MK_GEN_RANDOM_WORDS:
        case MK_GEN_FP8_CODES: {
            size_t nw = (n + 7) / 8;
            uint64_t *w = (uint64_t *)(void *)buf;
            for (size_t i = 0; i < nw; i++)
                w[i] = xo_next(&x);
            if (t->gen == MK_GEN_FP8_CODES)
                for (size_t i = 0; i < n; i++)
                    if ((buf[i] & 0x7F) == 0x7F)
                        buf[i]--; /* NaN -> +-448 */
            break;
        }
        case MK_GEN_AFFINE_SCALES:
        case MK_GEN_AFFINE_BIASES: {
            uint64_t g0 = done / esize;
            for (size_t i = 0; i < n / esize; i++) {
                uint64_t r;
                double v = t->gen == MK_GEN_AFFINE_SCALES ? affine_scale(t, g0 + i, &r)
                                                          : affine_bias(t, g0 + i);
                store_float(t->dtype, buf + i * esize, v);
            }
            break;
        }
        case MK_GEN_E8M0_SCALES:
            for (size_t i = 0; i < n; i++)
                buf[i] = e8m0_scale(t, done + i, e0);
            break;
        case MK_GEN_E4M3_SCALES:
            for (size_t i = 0; i < n; i++) {
                int c =
                    c0 + (int)(splitmix64(t->seed ^ ((done + i) * 0xD1B54A32D192ED03ull)) % 3) - 1;
                buf[i] = (uint8_t)(c < 1 ? 1 : c > 0x7E ? 0x7E : c);
            }
            break;
        case MK_GEN_FLOAT:
            for (size_t i = 0; i < n / esize; i++)
                store_float(t->dtype, buf + i * esize,
                            t->center + t->amp * (2.0 * unit(xo_next(&x)) - 1.0));
            break;
        }
        rc = sink(ctx, buf, n);
        done += n;
    }
    free(buf);
    return rc;
}
