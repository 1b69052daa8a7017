/* Evaluation numerics behind `moecl perplexity`: the window plan, log-softmax, NLL statistics,
 * percentiles, the saved log-probability file (writer and validating reader) and KL
 * divergence. Pure C, no OpenCL: the command feeds it rows of logits. */
#include "moecl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ windows */

enum moecl_status moecl_ppl_plan(int64_t n_tokens, int ctx, int stride, int64_t *n_windows_out,
                                 int64_t *n_scored_out) {
    *n_windows_out = 0;
    *n_scored_out = 0;
    if (ctx < 2)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "--ctx %d: a window needs at least 2 tokens",
                               ctx);
    if (stride < 1 || stride > ctx)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "--stride %d: must be between 1 and the window (--ctx %d)", stride,
                               ctx);
    if (n_tokens < ctx)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "the text has %lld tokens, fewer than one window (--ctx %d)",
                               (long long)n_tokens, ctx);
    int64_t nw = (n_tokens - ctx) / stride + 1;
    int64_t per = stride == ctx ? ctx - 1 : stride;
    *n_windows_out = nw;
    *n_scored_out = (ctx - 1) + (nw - 1) * per;
    return MOECL_OK;
}

void moecl_ppl_window_at(int ctx, int stride, int64_t k, struct moecl_ppl_window *w) {
    w->start = k * stride;
    w->end = w->start + ctx;
    /* The targets no earlier window scored, never the window's own first token. */
    int64_t prev_end = k > 0 ? w->start - stride + ctx : 0;
    w->first_target = prev_end > w->start + 1 ? prev_end : w->start + 1;
}

int64_t moecl_ppl_row_target(int ctx, int stride, int64_t row) {
    if (row < ctx - 1)
        return row + 1;
    int64_t per = stride == ctx ? ctx - 1 : stride;
    int64_t r = row - (ctx - 1);
    struct moecl_ppl_window w;
    moecl_ppl_window_at(ctx, stride, 1 + r / per, &w);
    return w.first_target + r % per;
}

/* ------------------------------------------------------------------ statistics */

double moecl_log_sum_exp(const float *logits, int n) {
    if (n <= 0)
        return -INFINITY;
    float m = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > m)
            m = logits[i];
    if (isinf(m))
        return (double)m;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)logits[i] - (double)m);
    /* s >= 1: the maximum itself contributes exp(0) */
    // cppcheck-suppress invalidFunctionArg
    return (double)m + log(s);
}

void moecl_nll_stats_add(struct moecl_nll_stats *s, double nll) {
    s->n++;
    double d = nll - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (nll - s->mean);
}

void moecl_nll_stats_result(const struct moecl_nll_stats *s, struct moecl_ppl_result *out) {
    memset(out, 0, sizeof *out);
    out->n = s->n;
    if (s->n == 0) {
        out->mean_nll = out->ppl = NAN;
        return;
    }
    out->mean_nll = s->mean;
    out->ppl = exp(s->mean);
    if (s->n > 1) {
        double var = s->m2 / (double)(s->n - 1);
        out->mean_nll_se = sqrt((var > 0 ? var : 0) / (double)s->n);
        out->ppl_se = out->ppl * out->mean_nll_se;
    }
}

double moecl_percentile(const double *sorted, int64_t n, double fraction) {
    if (n <= 0)
        return NAN;
    if (!(fraction > 0))
        return sorted[0];
    if (fraction >= 1)
        return sorted[n - 1];
    double p = fraction * (double)(n - 1);
    int64_t i = (int64_t)p;
    if (i >= n - 1)
        return sorted[n - 1];
    double f = p - (double)i;
    return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum moecl_status moecl_kl_summarize(const struct moecl_kl_row *rows, int64_t n,
                                     struct moecl_kl_summary *out) {
    memset(out, 0, sizeof *out);
    if (!rows || n <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "KL summary: no scored positions");
    double *kl = malloc((size_t)n * sizeof *kl);
    if (!kl)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "KL summary: out of memory");
    struct moecl_nll_stats skl = {0}, sref = {0}, sq = {0}, sdiff = {0};
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) {
        kl[i] = rows[i].kl;
        moecl_nll_stats_add(&skl, rows[i].kl);
        moecl_nll_stats_add(&sref, rows[i].nll_ref);
        moecl_nll_stats_add(&sq, rows[i].nll);
        moecl_nll_stats_add(&sdiff, rows[i].nll - rows[i].nll_ref);
        same += rows[i].same_top != 0;
    }
    qsort(kl, (size_t)n, sizeof *kl, cmp_double);
    struct moecl_ppl_result r;
    moecl_nll_stats_result(&skl, &r);
    out->n = n;
    out->kl_mean = r.mean_nll;
    out->kl_mean_se = r.mean_nll_se;
    out->kl_median = moecl_percentile(kl, n, 0.5);
    out->kl_p99 = moecl_percentile(kl, n, 0.99);
    out->kl_p999 = moecl_percentile(kl, n, 0.999);
    out->kl_max = kl[n - 1];
    out->same_top = (double)same / (double)n;
    out->same_top_se = sqrt(out->same_top * (1 - out->same_top) / (double)n);
    moecl_nll_stats_result(&sref, &out->ref);
    moecl_nll_stats_result(&sq, &out->ppl);
    moecl_nll_stats_result(&sdiff, &r);
    out->ppl_ratio = exp(r.mean_nll);
    out->ppl_ratio_se = out->ppl_ratio * r.mean_nll_se;
    free(kl);
    return MOECL_OK;
}

/* ------------------------------------------------------------------ log-probability rows */

/* Top-K selection order: larger logit first, the lower id on ties. */
static int before(float a, int32_t ia, float b, int32_t ib) {
    return a > b || (a == b && ia < ib);
}

/* Selects the K best ids of logits[0..V) into ids[0..K), best first (a min-heap of K, then
 * sorted). */
static void top_k_ids(const float *logits, int V, int K, int32_t *ids) {
    int n = 0;
    for (int32_t v = 0; v < V; v++) {
        if (n == K && !before(logits[v], v, logits[ids[0]], ids[0]))
            continue;
        int i;
        if (n < K) {
            /* sift up: the heap root is the worst kept entry */
            i = n++;
            while (i > 0) {
                int p = (i - 1) / 2;
                if (!before(logits[ids[p]], ids[p], logits[v], v))
                    break;
                ids[i] = ids[p];
                i = p;
            }
            ids[i] = v;
            continue;
        }
        /* replace the root, sift down */
        i = 0;
        for (;;) {
            int c = 2 * i + 1;
            if (c >= K)
                break;
            if (c + 1 < K && before(logits[ids[c]], ids[c], logits[ids[c + 1]], ids[c + 1]))
                c++;
            if (!before(logits[v], v, logits[ids[c]], ids[c]))
                break;
            ids[i] = ids[c];
            i = c;
        }
        ids[i] = v;
    }
    /* heap order -> best first (insertion sort; K is small) */
    for (int i = 1; i < n; i++) {
        int32_t x = ids[i];
        int j = i;
        while (j > 0 && before(logits[x], x, logits[ids[j - 1]], ids[j - 1])) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = x;
    }
}

/* Log-probabilities of the ids in S and the log of the mass outside S, rounded to f32 (the
 * stored precision). mark[V] is zeroed scratch, left zeroed. */
static void logprobs_of(const float *logits, int V, double lse, const int32_t *ids, int K,
                        unsigned char *mark, float *lp, float *lrest) {
    double m = -INFINITY;
    for (int v = 0; v < V; v++)
        if (logits[v] > m)
            m = logits[v];
    for (int i = 0; i < K; i++) {
        lp[i] = (float)((double)logits[ids[i]] - lse);
        mark[ids[i]] = 1;
    }
    double rest = 0;
    for (int v = 0; v < V; v++)
        if (!mark[v])
            rest += exp((double)logits[v] - m);
    for (int i = 0; i < K; i++)
        mark[ids[i]] = 0;
    *lrest = rest > 0 ? (float)(log(rest) + m - lse) : -INFINITY;
}

static int32_t argmax_lowest(const float *x, int n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* ------------------------------------------------------------------ little-endian encoding */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_f32(unsigned char *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static float get_f32(const unsigned char *p) {
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static size_t row_bytes(int n_vocab, int top_k) {
    return top_k ? 8 + 8 * (size_t)top_k : 4 * (size_t)n_vocab;
}

/* ------------------------------------------------------------------ writer */

struct moecl_logits_writer {
    char *path, *tmp_path;
    FILE *f;
    int n_vocab, top_k, ctx, stride;
    int32_t *tokens;
    int64_t n_tokens, n_rows, rows_done;
    int32_t *ids;
    float *lp;
    unsigned char *mark, *buf;
};

void moecl_logits_writer_release(struct moecl_logits_writer *w) {
    if (!w)
        return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp_path);
    }
    free(w->path);
    free(w->tmp_path);
    free(w->tokens);
    free(w->ids);
    free(w->lp);
    free(w->mark);
    free(w->buf);
    free(w);
}

static enum moecl_status write_all(struct moecl_logits_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return moecl_error_set(MOECL_ERR_IO, "%s: write failed: %s", w->tmp_path, strerror(errno));
    return MOECL_OK;
}

enum moecl_status moecl_logits_writer_create(const char *path, int n_vocab, const int32_t *tokens,
                                             int64_t n_tokens, int ctx, int stride, int top_k,
                                             struct moecl_logits_writer **writer_out) {
    enum moecl_status st = MOECL_OK;
    *writer_out = NULL;
    if (!path || !*path || !tokens || n_vocab <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "logits writer: %s",
                               !path || !*path ? "empty path"
                               : !tokens       ? "no tokens"
                                               : "vocabulary size must be positive");
    if (top_k < 0 || top_k >= n_vocab)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: top-K %d must be between 1 and the vocabulary (%d) - 1; save "
                               "full rows instead",
                               path, top_k, n_vocab);
    int64_t nw, ns;
    if ((st = moecl_ppl_plan(n_tokens, ctx, stride, &nw, &ns)) != MOECL_OK)
        return st;
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "%s: token %d at position %lld is outside the vocabulary (%d)",
                                   path, tokens[i], (long long)i, n_vocab);
    struct moecl_logits_writer *w = calloc(1, sizeof *w);
    if (!w)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    w->n_vocab = n_vocab;
    w->top_k = top_k;
    w->ctx = ctx;
    w->stride = stride;
    w->n_tokens = n_tokens;
    w->n_rows = ns;
    size_t plen = strlen(path);
    w->path = strdup(path);
    w->tmp_path = malloc(plen + 5);
    w->tokens = malloc((size_t)n_tokens * sizeof *tokens);
    w->buf = malloc(row_bytes(n_vocab, top_k));
    if (top_k) {
        w->ids = malloc((size_t)top_k * sizeof *w->ids);
        w->lp = malloc((size_t)top_k * sizeof *w->lp);
        w->mark = calloc((size_t)n_vocab, 1);
    }
    if (!w->path || !w->tmp_path || !w->tokens || !w->buf ||
        (top_k && (!w->ids || !w->lp || !w->mark))) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(w->tmp_path, path, plen);
    memcpy(w->tmp_path + plen, ".tmp", 5);
    memcpy(w->tokens, tokens, (size_t)n_tokens * sizeof *tokens);
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        st = moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        goto cleanup;
    }
    unsigned char h[MOECL_LOGITS_HEADER_BYTES];
    memset(h, 0, sizeof h);
    memcpy(h, MOECL_LOGITS_MAGIC, 8);
    put_u32(h + 8, MOECL_LOGITS_VERSION);
    put_u32(h + 12, top_k ? 0u : 1u);
    put_u32(h + 16, (uint32_t)n_vocab);
    put_u32(h + 20, (uint32_t)top_k);
    put_u32(h + 24, (uint32_t)ctx);
    put_u32(h + 28, (uint32_t)stride);
    put_u64(h + 32, (uint64_t)n_tokens);
    put_u64(h + 40, (uint64_t)ns);
    if ((st = write_all(w, h, sizeof h)) != MOECL_OK)
        goto cleanup;
    for (int64_t i = 0; i < n_tokens; i++) {
        unsigned char b[4];
        put_u32(b, (uint32_t)tokens[i]);
        if ((st = write_all(w, b, 4)) != MOECL_OK)
            goto cleanup;
    }
    *writer_out = w;
    w = NULL;
cleanup:
    moecl_logits_writer_release(w);
    return st;
}

enum moecl_status moecl_logits_writer_add(struct moecl_logits_writer *w, const float *logits) {
    if (!w || !logits || !w->f)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "logits writer: %s",
                               !w || !w->f ? "not open" : "logits is NULL");
    if (w->rows_done >= w->n_rows)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: all %lld rows were already added",
                               w->path, (long long)w->n_rows);
    int V = w->n_vocab;
    double lse = moecl_log_sum_exp(logits, V);
    if (!isfinite(lse))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: row %lld: the logits are not finite (log-sum-exp %g)", w->path,
                               (long long)w->rows_done, lse);
    int64_t target = moecl_ppl_row_target(w->ctx, w->stride, w->rows_done);
    unsigned char *p = w->buf;
    if (w->top_k) {
        int K = w->top_k;
        float lrest;
        top_k_ids(logits, V, K, w->ids);
        logprobs_of(logits, V, lse, w->ids, K, w->mark, w->lp, &lrest);
        put_f32(p, (float)((double)logits[w->tokens[target]] - lse));
        for (int i = 0; i < K; i++) {
            put_u32(p + 4 + 4 * (size_t)i, (uint32_t)w->ids[i]);
            put_f32(p + 4 + 4 * (size_t)K + 4 * (size_t)i, w->lp[i]);
        }
        put_f32(p + 4 + 8 * (size_t)K, lrest);
    } else {
        for (int v = 0; v < V; v++)
            put_f32(p + 4 * (size_t)v, (float)((double)logits[v] - lse));
    }
    enum moecl_status st = write_all(w, p, row_bytes(V, w->top_k));
    if (st == MOECL_OK)
        w->rows_done++;
    return st;
}

enum moecl_status moecl_logits_writer_finish(struct moecl_logits_writer *w) {
    if (!w || !w->f)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "logits writer: not open");
    if (w->rows_done != w->n_rows)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: %lld of %lld rows were added", w->path,
                               (long long)w->rows_done, (long long)w->n_rows);
    int bad = fflush(w->f) != 0 || ferror(w->f);
    int err = errno;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad) {
        unlink(w->tmp_path);
        return moecl_error_set(MOECL_ERR_IO, "%s: write failed: %s", w->tmp_path, strerror(err));
    }
    if (rename(w->tmp_path, w->path) != 0) {
        err = errno;
        unlink(w->tmp_path);
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot rename from %s: %s", w->path, w->tmp_path,
                               strerror(err));
    }
    return MOECL_OK;
}

/* ------------------------------------------------------------------ reader */

struct moecl_logits_file {
    char *path;
    int fd;
    struct moecl_logits_info info;
    int32_t *tokens;
    uint64_t rows_offset;
    size_t row_size;
    unsigned char *buf, *mark;
    int32_t *ids;
    float *lp, *lq;
};

void moecl_logits_file_release(struct moecl_logits_file *f) {
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f->tokens);
    free(f->buf);
    free(f->mark);
    free(f->ids);
    free(f->lp);
    free(f->lq);
    free(f);
}

const struct moecl_logits_info *moecl_logits_file_info(const struct moecl_logits_file *f) {
    return f ? &f->info : NULL;
}

static enum moecl_status read_at(const struct moecl_logits_file *f, void *buf, size_t n,
                                 uint64_t off, const char *what) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return moecl_error_set(MOECL_ERR_IO, "%s: reading %s: %s", f->path, what,
                                   strerror(errno));
        if (r == 0)
            return moecl_error_set(MOECL_ERR_FORMAT, "%s: truncated while reading %s", f->path,
                                   what);
        done += (size_t)r;
    }
    return MOECL_OK;
}

enum moecl_status moecl_logits_file_open(const char *path, struct moecl_logits_file **file_out) {
    enum moecl_status st = MOECL_OK;
    *file_out = NULL;
    if (!path || !*path)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "logits file: empty path");
    struct moecl_logits_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        st = moecl_error_set(MOECL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = moecl_error_set(MOECL_ERR_IO, "%s: not a regular file", path);
        goto cleanup;
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char h[MOECL_LOGITS_HEADER_BYTES];
    if (size < sizeof h) {
        st = moecl_error_set(MOECL_ERR_FORMAT,
                             "%s: truncated: %llu bytes, shorter than the %d-byte header of a "
                             "moecl logits file",
                             path, (unsigned long long)size, MOECL_LOGITS_HEADER_BYTES);
        goto cleanup;
    }
    if ((st = read_at(f, h, sizeof h, 0, "the header")) != MOECL_OK)
        goto cleanup;
    if (memcmp(h, MOECL_LOGITS_MAGIC, 8) != 0) {
        st = moecl_error_set(MOECL_ERR_FORMAT,
                             "%s: not a moecl logits file (wrong magic; expected \"%s\", as "
                             "written by moecl perplexity --save-logits)",
                             path, MOECL_LOGITS_MAGIC);
        goto cleanup;
    }
    struct moecl_logits_info *in = &f->info;
    uint32_t version = get_u32(h + 8), flags = get_u32(h + 12);
    uint32_t vocab = get_u32(h + 16), top_k = get_u32(h + 20);
    uint32_t ctx = get_u32(h + 24), stride = get_u32(h + 28);
    uint64_t n_tokens = get_u64(h + 32), n_rows = get_u64(h + 40);
    if (version != MOECL_LOGITS_VERSION) {
        st = moecl_error_set(MOECL_ERR_UNSUPPORTED,
                             "%s: logits file version %u; this moecl reads version %d", path,
                             version, MOECL_LOGITS_VERSION);
        goto cleanup;
    }
    int full = (flags & 1u) != 0;
    int reserved_zero = 1;
    for (int i = 48; i < MOECL_LOGITS_HEADER_BYTES; i++)
        reserved_zero &= h[i] == 0;
    if ((flags & ~1u) || !reserved_zero) {
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: unknown header flags 0x%x or reserved bytes",
                             path, flags);
        goto cleanup;
    }
    if (vocab == 0 || vocab > (1u << 30) || (full ? top_k != 0 : (top_k == 0 || top_k >= vocab))) {
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: bad header: vocabulary %u, top-K %u (%s rows)",
                             path, vocab, top_k, full ? "full" : "top-K");
        goto cleanup;
    }
    if (ctx > (1u << 30) || stride > (1u << 30) || n_tokens > ((uint64_t)1 << 40)) {
        st = moecl_error_set(MOECL_ERR_FORMAT, "%s: bad header: ctx %u, stride %u, %llu tokens",
                             path, ctx, stride, (unsigned long long)n_tokens);
        goto cleanup;
    }
    int64_t nw, ns;
    if (moecl_ppl_plan((int64_t)n_tokens, (int)ctx, (int)stride, &nw, &ns) != MOECL_OK ||
        (uint64_t)ns != n_rows) {
        st = moecl_error_set(MOECL_ERR_FORMAT,
                             "%s: bad header: %llu rows do not match %llu tokens in windows of "
                             "ctx %u, stride %u",
                             path, (unsigned long long)n_rows, (unsigned long long)n_tokens, ctx,
                             stride);
        goto cleanup;
    }
    in->version = (int)version;
    in->n_vocab = (int)vocab;
    in->top_k = (int)top_k;
    in->ctx = (int)ctx;
    in->stride = (int)stride;
    in->n_tokens = (int64_t)n_tokens;
    in->n_rows = (int64_t)n_rows;
    f->row_size = row_bytes(in->n_vocab, in->top_k);
    f->rows_offset = MOECL_LOGITS_HEADER_BYTES + 4 * n_tokens;
    /* n_rows <= n_tokens < 2^40 and row_size < 2^33: no overflow */
    uint64_t expect = f->rows_offset + n_rows * (uint64_t)f->row_size;
    if (size != expect) {
        st = moecl_error_set(MOECL_ERR_FORMAT,
                             "%s: %s: %llu bytes, but its header (%llu tokens, %llu rows of %zu "
                             "bytes) needs %llu",
                             path, size < expect ? "truncated" : "trailing bytes",
                             (unsigned long long)size, (unsigned long long)n_tokens,
                             (unsigned long long)n_rows, f->row_size, (unsigned long long)expect);
        goto cleanup;
    }
    f->tokens = malloc((size_t)n_tokens * 4);
    f->buf = malloc(f->row_size > 4 * (size_t)n_tokens ? f->row_size : 4 * (size_t)n_tokens);
    f->mark = calloc(vocab, 1);
    size_t nk = full ? 1 : top_k;
    f->ids = malloc(nk * sizeof *f->ids);
    f->lp = malloc(nk * sizeof *f->lp);
    f->lq = malloc(nk * sizeof *f->lq);
    if (!f->tokens || !f->buf || !f->mark || !f->ids || !f->lp || !f->lq) {
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "%s: out of memory", path);
        goto cleanup;
    }
    if ((st = read_at(f, f->buf, 4 * (size_t)n_tokens, MOECL_LOGITS_HEADER_BYTES, "the tokens")) !=
        MOECL_OK)
        goto cleanup;
    for (uint64_t i = 0; i < n_tokens; i++) {
        uint32_t t = get_u32(f->buf + 4 * i);
        if (t >= vocab) {
            st = moecl_error_set(MOECL_ERR_FORMAT,
                                 "%s: token %u at position %llu is outside the vocabulary (%u)",
                                 path, t, (unsigned long long)i, vocab);
            goto cleanup;
        }
        f->tokens[i] = (int32_t)t;
    }
    in->tokens = f->tokens;
    *file_out = f;
    f = NULL;
cleanup:
    moecl_logits_file_release(f);
    return st;
}

enum moecl_status moecl_logits_file_check(const struct moecl_logits_file *f, int n_vocab,
                                          const int32_t *tokens, int64_t n_tokens, int ctx,
                                          int stride) {
    const struct moecl_logits_info *in = &f->info;
    if (n_vocab != in->n_vocab)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: saved with a vocabulary of %d tokens; this model has %d",
                               f->path, in->n_vocab, n_vocab);
    if (n_tokens != in->n_tokens)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: saved for other tokens: %lld tokens, this text has %lld",
                               f->path, (long long)in->n_tokens, (long long)n_tokens);
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] != in->tokens[i])
            return moecl_error_set(MOECL_ERR_INVALID_ARG,
                                   "%s: saved for other tokens: position %lld is %d there, %d here",
                                   f->path, (long long)i, in->tokens[i], tokens[i]);
    if (ctx != in->ctx || stride != in->stride)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: saved with --ctx %d --stride %d; this run uses --ctx %d "
                               "--stride %d",
                               f->path, in->ctx, in->stride, ctx, stride);
    return MOECL_OK;
}

static enum moecl_status bad_row(const struct moecl_logits_file *f, int64_t row, const char *why) {
    return moecl_error_set(MOECL_ERR_FORMAT, "%s: row %lld is corrupt: %s", f->path, (long long)row,
                           why);
}

enum moecl_status moecl_logits_file_compare(struct moecl_logits_file *f, int64_t row,
                                            const float *logits, int n_vocab,
                                            struct moecl_kl_row *out) {
    memset(out, 0, sizeof *out);
    const struct moecl_logits_info *in = &f->info;
    if (!logits || row < 0 || row >= in->n_rows)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "%s: row %lld of %lld%s", f->path,
                               (long long)row, (long long)in->n_rows,
                               logits ? "" : " (logits NULL)");
    if (n_vocab != in->n_vocab)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "%s: saved with a vocabulary of %d tokens; this model has %d",
                               f->path, in->n_vocab, n_vocab);
    enum moecl_status st =
        read_at(f, f->buf, f->row_size, f->rows_offset + (uint64_t)row * f->row_size, "a row");
    if (st != MOECL_OK)
        return st;
    int V = in->n_vocab;
    double lse = moecl_log_sum_exp(logits, V);
    if (!isfinite(lse))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "row %lld: the logits are not finite (log-sum-exp %g)",
                               (long long)row, lse);
    int32_t target = in->tokens[moecl_ppl_row_target(in->ctx, in->stride, row)];
    /* -log q(target), rounded to f32 like the saved value so that a run against itself gives
     * a perplexity ratio of exactly 1 */
    out->nll = -(double)(float)((double)logits[target] - lse);
    int32_t q_top = argmax_lowest(logits, V);
    const unsigned char *p = f->buf;
    double kl = 0, mass = 0;
    if (in->top_k) {
        int K = in->top_k;
        float lpt = get_f32(p);
        for (int i = 0; i < K; i++) {
            uint32_t id = get_u32(p + 4 + 4 * (size_t)i);
            float lp = get_f32(p + 4 + 4 * (size_t)K + 4 * (size_t)i);
            if (id >= (uint32_t)V)
                return bad_row(f, row, "a token id is outside the vocabulary");
            if (!(lp <= 0) || (i > 0 && lp > f->lp[i - 1]))
                return bad_row(f, row, "log-probabilities are not descending values <= 0");
            if (f->mark[id]) {
                for (int j = 0; j < i; j++)
                    f->mark[f->ids[j]] = 0;
                return bad_row(f, row, "a token id appears twice");
            }
            f->mark[id] = 1;
            f->ids[i] = (int32_t)id;
            f->lp[i] = lp;
        }
        for (int i = 0; i < K; i++)
            f->mark[f->ids[i]] = 0;
        float lr = get_f32(p + 4 + 8 * (size_t)K);
        if (!(lpt <= 0) || !(lr <= 0))
            return bad_row(f, row, "the target's or the rest's log-probability is not <= 0");
        float lqr;
        logprobs_of(logits, V, lse, f->ids, K, f->mark, f->lq, &lqr);
        for (int i = 0; i < K; i++) {
            double pi = exp((double)f->lp[i]);
            mass += pi;
            if (pi > 0)
                kl += pi * ((double)f->lp[i] - (double)f->lq[i]);
        }
        double pr = exp((double)lr);
        mass += pr;
        if (pr > 0)
            kl += pr * ((double)lr - (double)lqr);
        out->nll_ref = -(double)lpt;
        out->same_top = f->ids[0] == q_top;
    } else {
        int32_t p_top = 0;
        float best = -INFINITY;
        for (int v = 0; v < V; v++) {
            float lp = get_f32(p + 4 * (size_t)v);
            if (!(lp <= 0))
                return bad_row(f, row, "a log-probability is not <= 0");
            if (lp > best) {
                best = lp;
                p_top = v;
            }
            double pv = exp((double)lp);
            mass += pv;
            if (pv > 0)
                kl += pv * ((double)lp - (double)(float)((double)logits[v] - lse));
        }
        out->nll_ref = -(double)get_f32(p + 4 * (size_t)target);
        out->same_top = p_top == q_top;
    }
    if (!(fabs(mass - 1) <= 1e-3))
        return bad_row(f, row, "its probabilities do not sum to 1");
    /* Not clamped at 0: where the distributions nearly agree, f32 rounding of the saved values
     * can leave a tiny negative sum (|kl| ~ 1e-7), and a clamp would also hide a real error. */
    out->kl = kl;
    return MOECL_OK;
}
