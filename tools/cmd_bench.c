/* moecl bench: llama-bench style speed tests of a checkpoint (prompt processing -p, generation
 * -n; repetitions, median and spread, markdown or JSON) with the device probes (read bandwidth,
 * fp32 FMA rate) in the same run, generation as a fraction of the bandwidth bound from the
 * checkpoint's bytes per token, and a per-op-class profile. */
#include "cli.h"
#include "cli_gen.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TESTS 16
#define MAX_REPS 1000

struct bench_opts {
    int membw, fma, json, reps, profile, mlock, no_warmup;
    int n_pp, n_tg;
    int pp[MAX_TESTS], tg[MAX_TESTS];
    struct gen_opts gen; /* model and device options (shared with generate) */
};

static int usage(FILE *f) {
    fprintf(
        f,
        "usage: moecl bench [-m DIR] [-p N[,N...]] [-n N[,N...]] [-r REPS] [--membw] [--fma]\n"
        "                   [--profile] [--json] [--device DEV] [model/device options]\n"
        "  -m, --model DIR  checkpoint to test (prompt processing and generation)\n"
        "  -p N,...         prompt processing tests of N tokens (default 512 with a model)\n"
        "  -n N,...         generation tests of N tokens, one per step (default 128)\n"
        "  -r REPS          repetitions after one warm-up; median, min and max (default 5)\n"
        "  --membw          streaming read bandwidth of the device (GB/s); with a model,\n"
        "                   generation is also given as a fraction of bandwidth / bytes per token\n"
        "  --fma            float32 FMA throughput (GFLOP/s); with a model, prompt processing is\n"
        "                   also given as a fraction of it\n"
        "  --profile        device time per op class per token (OpenCL profiling events)\n"
        "  --json           one JSON object instead of markdown tables\n"
        "  --mlock          lock the checkpoint in memory first (weights stay resident)\n"
        "With a model both probes run unless one of --membw/--fma is given; without -m, -p or\n"
        "-n only the probes run. Shared model and device options:\n%s",
        gen_options_help);
    return f == stdout ? 0 : 2;
}

/* "512" or "128,256" into out (values 0..65536); returns the count or -1. */
static int parse_list(const char *opt, const char *v, int *out) {
    int n = 0;
    const char *s = v;
    while (s && *s) {
        char *end = NULL;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > 65536 || n == MAX_TESTS || (*end && *end != ',')) {
            fprintf(stderr,
                    "moecl bench: %s: expected up to %d comma-separated token counts in "
                    "[0, 65536], got '%s'\n",
                    opt, MAX_TESTS, v);
            return -1;
        }
        if (x > 0)
            out[n++] = (int)x;
        s = *end ? end + 1 : end;
    }
    if (!v) {
        fprintf(stderr, "moecl bench: %s needs a value\n", opt);
        return -1;
    }
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One test's result. */
struct bench_result {
    char name[32];
    int n_prompt, n_gen;
    double ts[MAX_REPS]; /* tokens per second of each repetition */
    double median, min, max;
    struct moecl_profile prof; /* summed over the measured repetitions */
    uint64_t prof_tokens;
};

static void summarize(struct bench_result *r, int reps) {
    double s[MAX_REPS];
    memcpy(s, r->ts, (size_t)reps * sizeof *s);
    qsort(s, (size_t)reps, sizeof *s, cmp_double);
    r->min = s[0];
    r->max = s[reps - 1];
    r->median = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
}

/* Runs one repetition: a prompt of n_prompt tokens in one evaluation (chunked by the context),
 * or n_gen single-token evaluations from an empty context. Returns seconds, or -1. */
static double run_once(struct moecl_context *ctx, const int32_t *tokens, int n_prompt, int n_gen) {
    moecl_context_reset(ctx);
    double t0 = now_s();
    if (n_prompt > 0 && moecl_context_eval(ctx, tokens, n_prompt) != MOECL_OK)
        return -1;
    for (int i = 0; i < n_gen; i++)
        if (moecl_context_eval(ctx, tokens + i, 1) != MOECL_OK)
            return -1;
    return now_s() - t0;
}

static int run_test(struct gen_session *s, const struct bench_opts *o, const int32_t *tokens,
                    struct bench_result *r) {
    int n_tok = r->n_prompt + r->n_gen;
    for (int rep = o->no_warmup ? 0 : -1; rep < o->reps; rep++) { /* rep -1: warm-up */
        if (o->profile && rep == 0) {
            if (moecl_context_set_profile(s->ctx, 1) != MOECL_OK)
                return moecl_cli_fail("--profile", MOECL_ERR_CL);
            moecl_context_profile_reset(s->ctx);
        }
        double sec = run_once(s->ctx, tokens, r->n_prompt, r->n_gen);
        if (sec < 0) {
            fprintf(stderr, "moecl bench: %s: %s\n", r->name, moecl_context_last_error(s->ctx));
            return 1;
        }
        if (rep >= 0)
            r->ts[rep] = (double)n_tok / sec;
    }
    if (o->profile) {
        if (moecl_context_profile(s->ctx, &r->prof) != MOECL_OK ||
            moecl_context_set_profile(s->ctx, 0) != MOECL_OK)
            return moecl_cli_fail("--profile", MOECL_ERR_CL);
        r->prof_tokens = (uint64_t)n_tok * (uint64_t)o->reps;
    }
    summarize(r, o->reps);
    return 0;
}

static void json_profile(const struct bench_result *r) {
    printf(", \"profile_ms_per_token\": {");
    double total = 0;
    for (int c = 0; c < MOECL_OPC_COUNT; c++) {
        double ms = r->prof.seconds[c] * 1e3 / (double)r->prof_tokens;
        total += ms;
        printf("%s\"%s\": %.4f", c ? ", " : "", moecl_op_class_id((enum moecl_op_class)c), ms);
    }
    printf(", \"total\": %.4f}", total);
}

/* The profile as a markdown table: one row per op class, one column per test. */
static void md_profile(const struct bench_result *res, int n) {
    printf("\nDevice time per token by op class (ms; OpenCL profiling events, %s):\n\n",
           "summed over the measured repetitions");
    printf("| op class |");
    for (int i = 0; i < n; i++)
        printf(" %s |", res[i].name);
    printf("\n|---|");
    for (int i = 0; i < n; i++)
        printf("---:|");
    printf("\n");
    double tot[2 * MAX_TESTS] = {0};
    for (int c = 0; c < MOECL_OPC_COUNT; c++) {
        printf("| %s |", moecl_op_class_id((enum moecl_op_class)c));
        for (int i = 0; i < n; i++) {
            double ms = res[i].prof.seconds[c] * 1e3 / (double)res[i].prof_tokens;
            double all = 0;
            for (int d = 0; d < MOECL_OPC_COUNT; d++)
                all += res[i].prof.seconds[d];
            tot[i] += ms;
            printf(" %.3f (%.0f%%) |", ms, all > 0 ? 100.0 * res[i].prof.seconds[c] / all : 0.0);
        }
        printf("\n");
    }
    printf("| **kernels total** |");
    for (int i = 0; i < n; i++)
        printf(" %.3f |", tot[i]);
    printf("\n| wall time per token |");
    for (int i = 0; i < n; i++)
        printf(" %.3f |", 1e3 / res[i].median);
    printf("\n");
}

MOECL_COMMAND(bench, "speed of a checkpoint (llama-bench style) and of the device") {
    struct bench_opts o;
    memset(&o, 0, sizeof o);
    o.reps = 5;
    gen_opts_init(&o.gen);
    int model_given = 0, pp_given = 0, tg_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--membw") == 0) {
            o.membw = 1;
        } else if (strcmp(a, "--fma") == 0) {
            o.fma = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--profile") == 0) {
            o.profile = 1;
        } else if (strcmp(a, "--mlock") == 0) {
            o.mlock = 1;
        } else if (strcmp(a, "--no-warmup") == 0) {
            o.no_warmup = 1;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--n-prompt") == 0) {
            if ((o.n_pp = parse_list(a, v, o.pp)) < 0)
                return 2;
            pp_given = 1;
            i++;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-gen") == 0) {
            if ((o.n_tg = parse_list(a, v, o.tg)) < 0)
                return 2;
            tg_given = 1;
            i++;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--repetitions") == 0) {
            char *end = NULL;
            long x = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || x < 1 || x > MAX_REPS) {
                fprintf(stderr, "moecl bench: -r: expected an integer in [1, %d], got '%s'\n",
                        MAX_REPS, v ? v : "");
                return 2;
            }
            o.reps = (int)x;
            i++;
        } else if (strcmp(a, "-d") == 0 && v) {
            o.gen.device = v;
            i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return usage(stdout);
        } else {
            int r = gen_parse_option(&o.gen, argc, argv, &i);
            if (r < 0)
                return 2;
            if (r == 0) {
                fprintf(stderr, "moecl bench: unknown option '%s'\n", a);
                return usage(stderr);
            }
            if (!strcmp(a, "-m") || !strcmp(a, "--model"))
                model_given = 1;
        }
    }
    int with_model = model_given || pp_given || tg_given;
    if (with_model && !pp_given)
        o.pp[o.n_pp++] = 512;
    if (with_model && !tg_given)
        o.tg[o.n_tg++] = 128;
    if (!o.membw && !o.fma)
        o.membw = o.fma = 1;
    if (!with_model && o.profile) {
        fprintf(stderr, "moecl bench: --profile needs a model (-m DIR)\n");
        return 2;
    }

    /* the device: the model's, or as --device names it */
    struct moecl_device_info *devs = NULL;
    int n_dev = 0, dev = -1, rc = 1;
    struct gen_session s;
    memset(&s, 0, sizeof s);
    struct bench_result *res = NULL;
    int32_t *tokens = NULL;
    int n_res = 0;
    struct moecl_token_bytes tb;
    memset(&tb, 0, sizeof tb);
    enum moecl_status st = moecl_devices_list(&devs, &n_dev);
    if (st != MOECL_OK)
        return moecl_cli_fail("listing devices", st);
    if (with_model) {
        int max_p = 0, max_n = 0;
        for (int i = 0; i < o.n_pp; i++)
            max_p = o.pp[i] > max_p ? o.pp[i] : max_p;
        for (int i = 0; i < o.n_tg; i++)
            max_n = o.tg[i] > max_n ? o.tg[i] : max_n;
        int n_ctx = (max_p > max_n ? max_p : max_n) + 1;
        if (gen_open(&s, &o.gen, n_ctx) != 0)
            goto done;
        dev = moecl_model_device(s.model)->index;
        if (o.mlock) {
            uint64_t locked = 0;
            st = moecl_model_lock_weights(s.model, &locked);
            if (st != MOECL_OK) {
                moecl_cli_fail("--mlock", st);
                goto done;
            }
            fprintf(stderr, "moecl bench: %.2f GB locked in memory\n", (double)locked * 1e-9);
        }
        st = moecl_model_bytes_per_token(s.model, &tb);
        if (st != MOECL_OK) {
            moecl_cli_fail("bytes per token", st);
            goto done;
        }
        int vocab = moecl_model_vocab_size(s.model);
        tokens = malloc((size_t)n_ctx * sizeof *tokens);
        res = calloc((size_t)(o.n_pp + o.n_tg), sizeof *res);
        if (!tokens || !res) {
            fprintf(stderr, "moecl bench: out of memory\n");
            goto done;
        }
        uint64_t x = 0x9e3779b97f4a7c15ull; /* fixed pseudo-random token ids */
        for (int i = 0; i < n_ctx; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tokens[i] = (int32_t)(x % (uint64_t)vocab);
        }
        for (int i = 0; i < o.n_pp + o.n_tg; i++) {
            struct bench_result *r = &res[n_res];
            if (i < o.n_pp) {
                r->n_prompt = o.pp[i];
                snprintf(r->name, sizeof r->name, "pp%d", o.pp[i]);
            } else {
                r->n_gen = o.tg[i - o.n_pp];
                snprintf(r->name, sizeof r->name, "tg%d", r->n_gen);
            }
            if (run_test(&s, &o, tokens, r) != 0)
                goto done;
            n_res++;
        }
    } else if (o.gen.device) {
        st = moecl_device_resolve(devs, n_dev, o.gen.device, &dev);
        if (st != MOECL_OK) {
            moecl_cli_fail("--device", st);
            goto done;
        }
    } else {
        dev = 0;
        for (int i = 0; i < n_dev; i++)
            if (devs[i].type == MOECL_DEVICE_GPU) {
                dev = i;
                break;
            }
    }

    double bw = 0, bw_best = 0, flops = 0;
    double dev_bw[8] = {0}; /* per device of the placement (with a model) */
    if (o.membw) {
        uint64_t bytes = devs[dev].type == MOECL_DEVICE_GPU ? (1ull << 30) : (512ull << 20);
        st = moecl_device_probe_bandwidth(dev, bytes, o.reps, &bw, &bw_best);
        if (st != MOECL_OK) {
            moecl_cli_fail("measuring bandwidth", st);
            goto done;
        }
        for (int d = 0; with_model && d < tb.n_devices; d++) {
            int di = tb.device_index[d];
            if (di == dev) {
                dev_bw[d] = bw;
                continue;
            }
            uint64_t b2 = devs[di].type == MOECL_DEVICE_GPU ? (1ull << 30) : (512ull << 20);
            st = moecl_device_probe_bandwidth(di, b2, o.reps, &dev_bw[d], NULL);
            if (st != MOECL_OK) {
                moecl_cli_fail("measuring bandwidth", st);
                goto done;
            }
        }
    }
    if (o.fma) {
        st = moecl_device_probe_fma(dev, o.reps, &flops);
        if (st != MOECL_OK) {
            moecl_cli_fail("measuring FMA throughput", st);
            goto done;
        }
    }
    /* generation bound: bandwidth / bytes per token; prompt processing: flops per token */
    /* the devices of a placement take turns: the bound is 1 / sum(bytes_d / bandwidth_d) */
    double bound_ts = 0, bound_s = 0;
    for (int d = 0; d < tb.n_devices; d++)
        bound_s += dev_bw[d] > 0 ? (double)tb.device_bytes[d] / dev_bw[d] : 1e30;
    if (o.membw && tb.n_devices > 0 && bound_s < 1e29)
        bound_ts = 1.0 / bound_s;
    if (o.json) {
        printf("{\"device\": ");
        moecl_cli_json_str(stdout, devs[dev].name);
        printf(", \"device_name\": ");
        moecl_cli_json_str(stdout, devs[dev].device_name);
        printf(", \"reps\": %d", o.reps);
        if (o.membw)
            printf(", \"read_bw_gbs_median\": %.2f, \"read_bw_gbs_best\": %.2f", bw * 1e-9,
                   bw_best * 1e-9);
        if (o.fma)
            printf(", \"fp32_gflops_median\": %.2f", flops * 1e-9);
        if (with_model) {
            printf(", \"model\": ");
            moecl_cli_json_str(stdout, s.dir);
            printf(", \"numerics\": \"%s\"", moecl_model_numerics(s.model));
            printf(", \"bytes_per_token\": {\"attn\": %llu, \"router\": %llu, \"experts\": %llu, "
                   "\"embed\": %llu, \"lm_head\": %llu, \"norms\": %llu, \"total\": %llu}",
                   (unsigned long long)tb.attn, (unsigned long long)tb.router,
                   (unsigned long long)tb.experts, (unsigned long long)tb.embed,
                   (unsigned long long)tb.lm_head, (unsigned long long)tb.norms,
                   (unsigned long long)tb.total);
            printf(", \"devices\": [");
            for (int d = 0; d < tb.n_devices; d++) {
                printf("%s{\"device\": ", d ? ", " : "");
                moecl_cli_json_str(stdout, devs[tb.device_index[d]].name);
                printf(", \"bytes_per_token\": %llu", (unsigned long long)tb.device_bytes[d]);
                if (dev_bw[d] > 0)
                    printf(", \"read_bw_gbs_median\": %.2f", dev_bw[d] * 1e-9);
                printf("}");
            }
            printf("]");
            if (bound_ts > 0)
                printf(", \"bandwidth_bound_tokens_per_s\": %.3f", bound_ts);
            printf(", \"tests\": [");
            for (int i = 0; i < n_res; i++) {
                const struct bench_result *r = &res[i];
                printf(
                    "%s{\"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"t_s_median\": %.4f, "
                    "\"t_s_min\": %.4f, \"t_s_max\": %.4f, \"samples_ts\": [",
                    i ? ", " : "", r->name, r->n_prompt, r->n_gen, r->median, r->min, r->max);
                for (int k = 0; k < o.reps; k++)
                    printf("%s%.4f", k ? ", " : "", r->ts[k]);
                printf("]");
                if (r->n_gen && bound_ts > 0)
                    printf(", \"fraction_of_bandwidth_bound\": %.4f", r->median / bound_ts);
                if (r->n_prompt && flops > 0) {
                    double f = 2.0 * (double)tb.macs_layers * r->median;
                    printf(", \"gflops\": %.2f, \"fraction_of_fma_peak\": %.4f", f * 1e-9,
                           f / flops);
                }
                if (o.profile)
                    json_profile(r);
                printf("}");
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("| device | test | median | best |\n|---|---|---:|---:|\n");
        if (o.membw)
            printf("| %s (%s) | read bandwidth | %.1f GB/s | %.1f GB/s |\n", devs[dev].name,
                   devs[dev].device_name, bw * 1e-9, bw_best * 1e-9);
        if (o.fma)
            printf("| %s (%s) | fp32 FMA | %.1f GFLOP/s | |\n", devs[dev].name,
                   devs[dev].device_name, flops * 1e-9);
        if (with_model) {
            printf("\nmodel %s (%s numerics): %.3f GB read per generated token (attention %.3f, "
                   "router %.3f, experts %.3f, embedding %.4f, lm_head %.3f)",
                   s.dir, moecl_model_numerics(s.model), (double)tb.total * 1e-9,
                   (double)tb.attn * 1e-9, (double)tb.router * 1e-9, (double)tb.experts * 1e-9,
                   (double)tb.embed * 1e-9, (double)tb.lm_head * 1e-9);
            if (bound_ts > 0) {
                printf("; bandwidth bound %.2f tokens/s", bound_ts);
                if (tb.n_devices > 1) {
                    printf(" = 1 / (");
                    for (int d = 0; d < tb.n_devices; d++)
                        printf("%s%.3f GB / %.1f GB/s on %s", d ? " + " : "",
                               (double)tb.device_bytes[d] * 1e-9, dev_bw[d] * 1e-9,
                               devs[tb.device_index[d]].name);
                    printf(")");
                }
            }
            printf("\n\n| test | t/s (median of %d) | min | max | of bound |\n"
                   "|---|---:|---:|---:|---:|\n",
                   o.reps);
            for (int i = 0; i < n_res; i++) {
                const struct bench_result *r = &res[i];
                char frac[64] = "";
                if (r->n_gen && bound_ts > 0)
                    snprintf(frac, sizeof frac, "%.1f%% of bandwidth",
                             100.0 * r->median / bound_ts);
                else if (r->n_prompt && flops > 0)
                    snprintf(frac, sizeof frac, "%.1f%% of fp32 FMA",
                             100.0 * 2.0 * (double)tb.macs_layers * r->median / flops);
                printf("| %s | %.3f | %.3f | %.3f | %s |\n", r->name, r->median, r->min, r->max,
                       frac[0] ? frac : "-");
            }
            if (o.profile)
                md_profile(res, n_res);
        }
    }
    if (o.gen.report_memory && s.ctx && gen_print_memory_report(s.ctx) != 0)
        goto done;
    rc = 0;
done:
    free(tokens);
    free(res);
    gen_close(&s);
    moecl_devices_free(devs);
    return rc;
}
