/* moecl perplexity: perplexity of a text in windows (--ctx, --stride), saving the
 * log-probabilities of a reference run and KL divergence against them. The numerics live in
 * runtime/evaluate.c; this file reads the inputs, runs the windows and prints. */
#include "cli.h"
#include "cli_gen.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: moecl perplexity -m DIR (-f TEXT | --tokens FILE) [options]\n"
    "  -m, --model DIR        checkpoint folder\n"
    "  -f, --file TEXT        text file, tokenized with DIR/tokenizer.json (no special tokens,\n"
    "                         no BOS)\n"
    "  --tokens FILE          token ids instead of text (separated by spaces, commas or\n"
    "                         newlines), e.g. for a checkpoint without a tokenizer\n"
    "  --ctx N                window in tokens (default 4096; with --kl-divergence the file's)\n"
    "  --stride N             step between windows (default: the window). Window = stride:\n"
    "                         each window scores its tokens after the first (mlx-lm's\n"
    "                         method); stride < window: each later window scores only its\n"
    "                         last N tokens (llama.cpp's --ppl-stride)\n"
    "  --batch N              tokens per forward step (default 512, at most the window); the\n"
    "                         logits of N positions are held in memory\n"
    "  --save-logits FILE     save this run's log-probabilities for --kl-divergence: per\n"
    "                         scored position the top-K tokens plus the rest's mass\n"
    "  --save-top-k K         K for --save-logits (default 32)\n"
    "  --save-logits-full     save full rows instead (vocabulary floats per position)\n"
    "  --kl-divergence FILE   compare with a saved run: KL mean/median/p99/p99.9/max,\n"
    "                         same-top-token rate, perplexity ratio (tokens from the file\n"
    "                         when neither -f nor --tokens is given)\n"
    "  --no-progress          no progress bar on stderr\n";

static void usage(void) {
    fputs(usage_text, stderr);
    fputs(gen_model_options_help, stderr);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *read_file(const char *path, size_t *n_out) {
    *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "moecl: error: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (ferror(f)) {
                fprintf(stderr, "moecl: error: %s: read failed: %s\n", path, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb)
            free(buf);
        buf = nb;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    *n_out = n;
    return buf;
}

/* Token ids separated by whitespace or commas. */
static int read_token_file(const char *path, int32_t **out, int64_t *n_out) {
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return 1;
    int64_t n = 0, cap = 1024;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    const char *p = text;
    while (ids != NULL) {
        int32_t *cur = ids;
        while (*p && (isspace((unsigned char)*p) || *p == ','))
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && !isspace((unsigned char)*end) && *end != ',')) {
            fprintf(stderr, "moecl: error: %s: byte %td: expected a token id (an integer >= 0)\n",
                    path, p - text);
            free(ids);
            free(text);
            return 1;
        }
        if (n == cap) {
            cap *= 2;
            cur = realloc(ids, (size_t)cap * sizeof *ids);
            if (!cur) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = cur;
        }
        cur[n++] = (int32_t)v;
        p = end;
    }
    free(text);
    if (!ids) {
        fprintf(stderr, "moecl: error: %s: out of memory\n", path);
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "moecl: error: %s: no token ids\n", path);
        free(ids);
        return 1;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

static int parse_int(const char *opt, const char *v, long long lo, long long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "moecl: error: %s: expected an integer in [%lld, %lld], got '%s'\n", opt,
                lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, n, "?");
    else if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%.0fs", s);
}

/* Progress on stderr: a bar redrawn in place on a terminal, else a line every 10%. */
struct progress {
    int enabled, tty, last_decile;
    double t0;
    int64_t total; /* tokens to evaluate (windows * ctx) */
};

static void progress_show(struct progress *pr, int64_t done, int64_t win, int64_t n_win,
                          double ppl) {
    if (!pr->enabled)
        return;
    int decile = (int)(10 * done / (pr->total ? pr->total : 1));
    if (!pr->tty && decile == pr->last_decile && done < pr->total)
        return;
    pr->last_decile = decile;
    double el = now_s() - pr->t0, rate = el > 0 ? (double)done / el : 0;
    char left[32];
    fmt_time(rate > 0 ? (double)(pr->total - done) / rate : -1, left, sizeof left);
    char bar[21];
    int filled = (int)(20 * done / (pr->total ? pr->total : 1));
    for (int i = 0; i < 20; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[20] = 0;
    char ppl_s[32] = "-";
    if (isfinite(ppl))
        snprintf(ppl_s, sizeof ppl_s, "%.4f", ppl);
    fprintf(stderr, "%s[%s] window %lld/%lld, %.1f tokens/s, %s left, PPL %s%s",
            pr->tty ? "\r" : "", bar, (long long)win, (long long)n_win, rate, left, ppl_s,
            pr->tty ? "  " : "\n");
    if (pr->tty && done >= pr->total)
        fputc('\n', stderr);
    fflush(stderr);
}

MOECL_COMMAND(perplexity, "perplexity of a text in windows; save logits, KL divergence") {
    struct gen_opts go;
    gen_opts_init(&go);
    const char *text_path = NULL, *tokens_path = NULL, *save_path = NULL, *kl_path = NULL;
    int ctx = 0, stride = 0, batch = 512, top_k = 32, save_full = 0, progress = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = gen_parse_model_option(&go, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--save-logits-full")) {
            save_full = 1;
            continue;
        } else if (!strcmp(a, "--no-progress")) {
            progress = 0;
            continue;
        }
        int bad = 0;
        if (!v) {
            fprintf(stderr, "moecl: error: %s needs a value\n", a);
            usage();
            return 2;
        }
        if (!strcmp(a, "-f") || !strcmp(a, "--file"))
            text_path = v;
        else if (!strcmp(a, "--tokens"))
            tokens_path = v;
        else if (!strcmp(a, "--save-logits"))
            save_path = v;
        else if (!strcmp(a, "--kl-divergence"))
            kl_path = v;
        else if (!strcmp(a, "--ctx"))
            bad = parse_int(a, v, 2, 1 << 24, &ctx);
        else if (!strcmp(a, "--stride"))
            bad = parse_int(a, v, 1, 1 << 24, &stride);
        else if (!strcmp(a, "--batch"))
            bad = parse_int(a, v, 1, 1 << 16, &batch);
        else if (!strcmp(a, "--save-top-k"))
            bad = parse_int(a, v, 1, 1 << 20, &top_k);
        else {
            fprintf(stderr, "moecl: error: unknown option %s\n", a);
            usage();
            return 2;
        }
        if (bad)
            return 2;
        i++;
    }
    if (!go.model_dir || (text_path && tokens_path) || (!text_path && !tokens_path && !kl_path)) {
        fprintf(stderr, "moecl: error: %s\n",
                !go.model_dir ? "-m DIR is required"
                : text_path   ? "give -f or --tokens, not both"
                              : "give the text with -f TEXT or --tokens FILE");
        usage();
        return 2;
    }
    if (save_full && !save_path) {
        fprintf(stderr, "moecl: error: --save-logits-full needs --save-logits FILE\n");
        return 2;
    }

    int rc = 1;
    enum moecl_status st;
    struct moecl_logits_file *ref = NULL;
    struct moecl_logits_writer *writer = NULL;
    struct moecl_tokenizer *tok = NULL;
    struct moecl_model *model = NULL;
    struct moecl_context *mctx = NULL;
    struct moecl_kl_row *kl_rows = NULL;
    int32_t *tokens = NULL;
    float *logits = NULL;
    int64_t n_tokens = 0;

    if (kl_path) {
        st = moecl_logits_file_open(kl_path, &ref);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("--kl-divergence", st);
            goto done;
        }
        const struct moecl_logits_info *in = moecl_logits_file_info(ref);
        if (!ctx)
            ctx = in->ctx;
        if (!stride)
            stride = ctx == in->ctx ? in->stride : ctx;
    }
    if (!ctx)
        ctx = 4096;
    if (!stride)
        stride = ctx;

    if (tokens_path) {
        if (read_token_file(tokens_path, &tokens, &n_tokens))
            goto done;
    } else if (text_path) {
        size_t len;
        char *text = read_file(text_path, &len);
        if (!text)
            goto done;
        st = moecl_tokenizer_load(go.model_dir, &tok);
        size_t n = 0;
        if (st == MOECL_OK)
            st = moecl_tokenizer_encode(tok, text, len, 0, &tokens, &n);
        free(text);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("tokenizing the text (a checkpoint without tokenizer.json needs "
                                "--tokens)",
                                st);
            goto done;
        }
        n_tokens = (int64_t)n;
    } else {
        const struct moecl_logits_info *in = moecl_logits_file_info(ref);
        n_tokens = in->n_tokens;
        tokens = malloc((size_t)n_tokens * sizeof *tokens);
        if (!tokens) {
            fprintf(stderr, "moecl: error: out of memory\n");
            goto done;
        }
        memcpy(tokens, in->tokens, (size_t)n_tokens * sizeof *tokens);
    }

    int64_t n_windows, n_scored;
    st = moecl_ppl_plan(n_tokens, ctx, stride, &n_windows, &n_scored);
    if (st != MOECL_OK) {
        rc = moecl_cli_fail("perplexity", st);
        goto done;
    }

    struct moecl_model_options mo;
    gen_model_options(&go, &mo);
    st = moecl_model_load(go.model_dir, &mo, &model);
    if (st != MOECL_OK) {
        rc = moecl_cli_fail(go.model_dir, st);
        goto done;
    }
    int V = moecl_model_vocab_size(model);
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] >= V) {
            fprintf(stderr,
                    "moecl: error: %s: token %d at position %lld is outside the model's "
                    "vocabulary (%d)\n",
                    tokens_path ? tokens_path
                    : text_path ? text_path
                                : kl_path,
                    tokens[i], (long long)i, V);
            goto done;
        }
    if (ref) {
        st = moecl_logits_file_check(ref, V, tokens, n_tokens, ctx, stride);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("--kl-divergence", st);
            goto done;
        }
        kl_rows = malloc((size_t)n_scored * sizeof *kl_rows);
        if (!kl_rows) {
            fprintf(stderr, "moecl: error: out of memory\n");
            goto done;
        }
    }
    if (save_path) {
        st = moecl_logits_writer_create(save_path, V, tokens, n_tokens, ctx, stride,
                                        save_full ? 0 : top_k, &writer);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("--save-logits", st);
            goto done;
        }
    }
    if (batch > ctx)
        batch = ctx;
    struct moecl_context_options co;
    gen_context_options(&go, &co);
    co.prefill_chunk = batch;
    co.all_logits = 1;
    st = moecl_context_create(model, ctx, &co, &mctx);
    logits = malloc((size_t)batch * (size_t)V * sizeof *logits);
    if (st != MOECL_OK || !logits) {
        rc = st != MOECL_OK ? moecl_cli_fail("creating the context", st)
                            : (fprintf(stderr, "moecl: error: out of memory\n"), 1);
        goto done;
    }

    const struct moecl_device_info *dev = moecl_model_device(model);
    printf("model: %s on %s\n", go.model_dir, dev ? dev->name : "?");
    printf("text: %lld tokens; window %d, stride %d: %lld windows, %lld scored positions",
           (long long)n_tokens, ctx, stride, (long long)n_windows, (long long)n_scored);
    int64_t unused = n_tokens - ((n_windows - 1) * (int64_t)stride + ctx);
    if (unused > 0)
        printf(" (the last %lld tokens fill no whole window)", (long long)unused);
    printf("\n");
    fflush(stdout);

    struct progress pr = {progress, isatty(STDERR_FILENO), -1, now_s(), n_windows * ctx};
    struct moecl_nll_stats nll = {0};
    int64_t row = 0, evaluated = 0;
    for (int64_t k = 0; k < n_windows; k++) {
        struct moecl_ppl_window w;
        moecl_ppl_window_at(ctx, stride, k, &w);
        moecl_context_reset(mctx);
        /* Positions before first_target - 1 predict nothing scored: they are evaluated without
         * the logits of every row (the lm_head of all rows is most of the work). */
        int64_t first_row = w.first_target - 1;
        for (int64_t pos = w.start; pos < w.end;) {
            int64_t limit = pos < first_row ? first_row : w.end;
            int n = (int)(limit - pos < batch ? limit - pos : batch);
            int rows = pos >= first_row;
            st = rows ? moecl_context_eval_all(mctx, tokens + pos, n, logits)
                      : moecl_context_eval(mctx, tokens + pos, n);
            if (st != MOECL_OK) {
                rc = moecl_cli_fail("evaluating", st);
                goto done;
            }
            /* row j predicts token pos + j + 1 */
            for (int j = 0; rows && j < n; j++) {
                int64_t t = pos + j + 1;
                if (t < w.first_target || t >= w.end)
                    continue;
                const float *lrow = logits + (size_t)j * (size_t)V;
                moecl_nll_stats_add(&nll, moecl_log_sum_exp(lrow, V) - (double)lrow[tokens[t]]);
                if (writer && (st = moecl_logits_writer_add(writer, lrow)) != MOECL_OK) {
                    rc = moecl_cli_fail("--save-logits", st);
                    goto done;
                }
                if (ref && (st = moecl_logits_file_compare(ref, row, lrow, V, &kl_rows[row])) !=
                               MOECL_OK) {
                    rc = moecl_cli_fail("--kl-divergence", st);
                    goto done;
                }
                row++;
            }
            evaluated += n;
            pos += n;
            progress_show(&pr, evaluated, k + 1, n_windows, nll.n ? exp(nll.mean) : NAN);
        }
    }
    if (row != n_scored) {
        fprintf(stderr, "moecl: error: internal: %lld rows scored, %lld planned\n", (long long)row,
                (long long)n_scored);
        goto done;
    }
    if (writer && (st = moecl_logits_writer_finish(writer)) != MOECL_OK) {
        rc = moecl_cli_fail("--save-logits", st);
        goto done;
    }
    double secs = now_s() - pr.t0;
    struct moecl_ppl_result res;
    moecl_nll_stats_result(&nll, &res);
    printf("perplexity: %.4f +/- %.4f (mean NLL %.6f +/- %.6f nats over %lld positions)\n", res.ppl,
           res.ppl_se, res.mean_nll, res.mean_nll_se, (long long)res.n);
    printf("time: %.2f s, %.1f tokens/s\n", secs, secs > 0 ? (double)evaluated / secs : 0.0);
    if (save_path) {
        printf("saved: %s (%s, %lld positions)\n", save_path,
               save_full ? "full rows" : "top-K rows", (long long)n_scored);
    }
    if (ref) {
        struct moecl_kl_summary s;
        st = moecl_kl_summarize(kl_rows, n_scored, &s);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("--kl-divergence", st);
            goto done;
        }
        const struct moecl_logits_info *in = moecl_logits_file_info(ref);
        char kind[64];
        if (in->top_k)
            snprintf(kind, sizeof kind, "top-%d rows: KL is a lower bound", in->top_k);
        else
            snprintf(kind, sizeof kind, "full rows: exact KL");
        printf("KL divergence against %s (%s, %lld positions):\n", kl_path, kind, (long long)s.n);
        printf("  reference PPL:  %.4f +/- %.4f\n", s.ref.ppl, s.ref.ppl_se);
        printf("  this PPL:       %.4f +/- %.4f\n", s.ppl.ppl, s.ppl.ppl_se);
        printf("  PPL ratio:      %.6f +/- %.6f (this / reference)\n", s.ppl_ratio, s.ppl_ratio_se);
        printf("  mean KL:        %.6g +/- %.3g\n", s.kl_mean, s.kl_mean_se);
        printf("  median KL:      %.6g\n", s.kl_median);
        printf("  p99 KL:         %.6g\n", s.kl_p99);
        printf("  p99.9 KL:       %.6g\n", s.kl_p999);
        printf("  max KL:         %.6g\n", s.kl_max);
        printf("  same top token: %.4f%% +/- %.4f%%\n", 100 * s.same_top, 100 * s.same_top_se);
    }
    fflush(stdout);
    if (go.report_memory && gen_print_memory_report(mctx) != 0)
        goto done;
    rc = 0;
done:
    moecl_logits_writer_release(writer);
    moecl_logits_file_release(ref);
    moecl_context_release(mctx);
    moecl_model_release(model);
    moecl_tokenizer_release(tok);
    free(kl_rows);
    free(tokens);
    free(logits);
    return rc;
}
