/* The generation engine behind `moecl generate` and `moecl chat` (see cli_gen.h). */
#include "cli_gen.h"

#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PLACE_HELP                                                                                 \
    "  --place SPEC           where each part runs, e.g. attn=gpu,experts=cpu or\n"                \
    "                         experts[0-11]=pocl:1,embed=cpu,lm_head=nvidia:0 (keys: all,\n"       \
    "                         attn, attn[A-B], experts, experts[A-B], embed, lm_head)\n"           \
    "  --cpu-moe              experts of every layer on the CPU device\n"                          \
    "  --n-cpu-moe N          experts of the first N layers on the CPU device\n"                   \
    "  --report-memory        print memory per device and class (planned and measured),\n"         \
    "                         bytes moved between devices, host RSS, resident checkpoint\n"

#define KV_OPTIONS_HELP                                                                            \
    "  --kv-type T            KV cache storage: f32 (default) or f16 (half the bytes)\n"           \
    "  --max-kv-size N        full-attention layers keep only the last N positions (a\n"           \
    "                         rotating window, as mlx-lm's --max-kv-size)\n"                       \
    "  --micro-batch N        pipeline prefill in micro-batches of N tokens across the\n"          \
    "                         attention and expert devices (attention on one device, experts\n"    \
    "                         elsewhere; default 0: off)\n"                                        \
    "  --numerics exact|fast  exact (default): matrix products bit-identical to mlx-lm; fast:\n"   \
    "                         sums reordered and fused (faster, not bit-identical; also\n"         \
    "                         $MOECL_NUMERICS)\n"

const char gen_model_options_help[] = "  --device SPEC          device as `moecl devices` names it "
                                      "(cpu, gpu, pocl:1, 2)\n" PLACE_HELP KV_OPTIONS_HELP;

const char gen_options_help[] =
    "  -m, --model DIR        checkpoint folder (default: the built-in default model, made\n"
    "                         on first use; random weights, so its output is noise)\n"
    "  --device SPEC          device as `moecl devices` names it (cpu, gpu, pocl:1, "
    "2)\n" PLACE_HELP KV_OPTIONS_HELP
    "  --max-tokens N         most tokens to generate (default 256)\n"
    "  --temp T               temperature; 0 = greedy (default 0, as mlx-lm)\n"
    "  --top-p P              nucleus filter, active for 0 < P < 1 (default 1)\n"
    "  --min-p P              keep tokens with p >= P * p_max (default 0 = off)\n"
    "  --top-k K              keep the K most probable tokens (default 0 = off)\n"
    "  --seed N               random seed for sampling (default: from the clock)\n"
    "  --reasoning-effort E   low, medium or high (harmony system message; default medium)\n"
    "  --system TEXT          developer instructions (harmony)\n"
    "  --show-reasoning       also print the analysis channel (dimmed on a terminal,\n"
    "                         else prefixed \"[analysis] \")\n";

void gen_opts_init(struct gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 256;
    moecl_sampler_params_init(&o->sampler);
    o->effort = MOECL_REASONING_MEDIUM;
    o->color = isatty(STDOUT_FILENO);
}

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, "moecl: error: %s: expected a number in [%g, %g], got '%s'\n", opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_ll(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "moecl: error: %s: expected an integer in [%lld, %lld], got '%s'\n", opt,
                lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int gen_parse_model_option(struct gen_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!v)
            goto missing;
        o->model_dir = v;
    } else if (!strcmp(a, "--device")) {
        if (!v)
            goto missing;
        o->device = v;
    } else if (!strcmp(a, "--kv-type")) {
        if (!v)
            goto missing;
        if (moecl_kv_type_parse(v, &o->kv_type) != MOECL_OK) {
            fprintf(stderr, "moecl: error: --kv-type: %s\n", moecl_last_error());
            return -1;
        }
    } else if (!strcmp(a, "--max-kv-size")) {
        long long ll;
        if (parse_ll(a, v, 1, INT32_MAX, &ll))
            return -1;
        o->max_kv_size = (int)ll;
    } else if (!strcmp(a, "--micro-batch")) {
        long long ll;
        if (parse_ll(a, v, 0, 1 << 20, &ll))
            return -1;
        o->micro_batch = (int)ll;
    } else if (!strcmp(a, "--numerics")) {
        if (!v)
            goto missing;
        if (moecl_numerics_parse(v, "--numerics", &o->numerics) != MOECL_OK) {
            fprintf(stderr, "moecl: error: %s\n", moecl_last_error());
            return -1;
        }
    } else if (!strcmp(a, "--place")) {
        if (!v)
            goto missing;
        o->place = v;
    } else if (!strcmp(a, "--n-cpu-moe")) {
        long long ll;
        if (parse_ll(a, v, 0, 4096, &ll))
            return -1;
        o->n_cpu_moe = ll == 0 ? o->n_cpu_moe : (int)ll;
    } else if (!strcmp(a, "--cpu-moe")) {
        o->n_cpu_moe = -1;
        return 1;
    } else if (!strcmp(a, "--report-memory")) {
        o->report_memory = 1;
        return 1;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
missing:
    fprintf(stderr, "moecl: error: %s needs a value\n", a);
    return -1;
}

void gen_model_options(const struct gen_opts *o, struct moecl_model_options *mo) {
    memset(mo, 0, sizeof *mo);
    mo->device = o->device;
    mo->place = o->place;
    mo->n_cpu_moe = o->n_cpu_moe;
    mo->numerics = o->numerics;
}

void gen_context_options(const struct gen_opts *o, struct moecl_context_options *co) {
    memset(co, 0, sizeof *co);
    co->kv_type = o->kv_type;
    co->max_kv_size = o->max_kv_size;
    co->micro_batch = o->micro_batch;
}

int gen_parse_option(struct gen_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    double d;
    long long ll;
    int r = gen_parse_model_option(o, argc, argv, i);
    if (r != 0)
        return r;
    if (!strcmp(a, "--max-tokens")) {
        if (parse_ll(a, v, 0, 1 << 20, &ll))
            return -1;
        o->max_tokens = (int)ll;
    } else if (!strcmp(a, "--temp")) {
        if (parse_double(a, v, 0, 1e6, &d))
            return -1;
        o->sampler.temperature = (float)d;
    } else if (!strcmp(a, "--top-p")) {
        if (parse_double(a, v, 0, 1, &d))
            return -1;
        o->sampler.top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        if (parse_double(a, v, 0, 1, &d))
            return -1;
        o->sampler.min_p = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (parse_ll(a, v, 0, INT_MAX, &ll))
            return -1;
        o->sampler.top_k = (int)ll;
    } else if (!strcmp(a, "--seed")) {
        if (parse_ll(a, v, 0, LLONG_MAX, &ll))
            return -1;
        o->sampler.seed = (uint64_t)ll;
        o->seed_given = 1;
    } else if (!strcmp(a, "--reasoning-effort")) {
        if (!v)
            goto missing;
        if (moecl_reasoning_effort_parse(v, &o->effort) != MOECL_OK) {
            fprintf(stderr, "moecl: error: --reasoning-effort: %s\n", moecl_last_error());
            return -1;
        }
    } else if (!strcmp(a, "--system")) {
        if (!v)
            goto missing;
        o->system = v;
    } else if (!strcmp(a, "--show-reasoning")) {
        o->show_reasoning = 1;
        return 1;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
missing:
    fprintf(stderr, "moecl: error: %s needs a value\n", a);
    return -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int gen_open(struct gen_session *s, const struct gen_opts *o, int n_ctx) {
    memset(s, 0, sizeof *s);
    enum moecl_status st;
    if (o->model_dir) {
        snprintf(s->dir, sizeof s->dir, "%s", o->model_dir);
    } else {
        int created = 0;
        st = moecl_default_model_path(s->dir, sizeof s->dir, &created);
        if (st != MOECL_OK)
            return moecl_cli_fail("making the built-in default model", st);
        fprintf(stderr,
                "moecl: no -m given: %s the built-in default model %s (random weights: its "
                "output is noise)\n",
                created ? "made" : "using", s->dir);
    }
    st = moecl_tokenizer_load(s->dir, &s->tok);
    if (st != MOECL_OK)
        return moecl_cli_fail("loading the tokenizer", st);
    struct moecl_model_options mo;
    gen_model_options(o, &mo);
    st = moecl_model_load(s->dir, &mo, &s->model);
    if (st != MOECL_OK) {
        gen_close(s);
        return moecl_cli_fail(s->dir, st);
    }
    s->n_ctx = n_ctx;
    s->report_memory = o->report_memory;
    struct moecl_context_options co;
    gen_context_options(o, &co);
    st = n_ctx > 0 ? moecl_context_create(s->model, n_ctx, &co, &s->ctx) : MOECL_OK;
    if (st == MOECL_OK) {
        struct moecl_sampler_params sp = o->sampler;
        if (!o->seed_given)
            sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        st = moecl_sampler_create(&sp, moecl_model_vocab_size(s->model), &s->sampler);
    }
    if (st == MOECL_OK)
        st = moecl_stop_tokens_load(s->dir, s->stops, 16, &s->n_stops);
    if (st != MOECL_OK) {
        gen_close(s);
        return moecl_cli_fail("setting up generation", st);
    }
    return 0;
}

void gen_close(struct gen_session *s) {
    moecl_sampler_release(s->sampler);
    moecl_context_release(s->ctx);
    moecl_model_release(s->model);
    moecl_tokenizer_release(s->tok);
    s->sampler = NULL;
    s->ctx = NULL;
    s->model = NULL;
    s->tok = NULL;
}

int gen_conversation(const struct gen_opts *o, struct moecl_conversation **conv_out) {
    struct moecl_conversation *c = NULL;
    enum moecl_status st = moecl_conversation_create(&c);
    if (st == MOECL_OK) {
        moecl_conversation_set_reasoning(c, o->effort);
        st = moecl_conversation_set_instructions(c, o->system);
    }
    if (st != MOECL_OK) {
        moecl_conversation_release(c);
        return moecl_cli_fail("conversation", st);
    }
    *conv_out = c;
    return 0;
}

static int is_stop(const struct gen_session *s, int32_t t) {
    for (int i = 0; i < s->n_stops; i++)
        if (s->stops[i] == t)
            return 1;
    return 0;
}

/* Chat output: which channels reach the terminal, and how analysis is marked. */
struct chat_out {
    int show_reasoning, color;
    int in_analysis; /* dim / prefix currently open */
    int printed;     /* anything written */
};

static void chat_write(struct chat_out *co, const struct moecl_harmony_event *ev) {
    if (!ev->text_len)
        return;
    int analysis = ev->channel == MOECL_CHANNEL_ANALYSIS;
    /* Tool calls (a recipient) are not text for the user; preambles (commentary without a
     * recipient) are. */
    if (ev->recipient && strcmp(ev->recipient, "assistant") != 0)
        return;
    if (analysis && !co->show_reasoning)
        return;
    if (analysis && !co->in_analysis) {
        fputs(co->color ? "\033[2m" : "[analysis] ", stdout);
        co->in_analysis = 1;
    } else if (!analysis && co->in_analysis) {
        fputs(co->color ? "\033[0m\n" : "\n", stdout);
        co->in_analysis = 0;
    }
    fwrite(ev->text, 1, ev->text_len, stdout);
    co->printed = 1;
    fflush(stdout);
}

static void chat_end_message(struct chat_out *co) {
    if (co->in_analysis) {
        fputs(co->color ? "\033[0m\n" : "\n", stdout);
        co->in_analysis = 0;
        fflush(stdout);
    }
}

static char *dup_or_empty(const char *s) {
    char *d = strdup(s ? s : "");
    return d;
}

int gen_run(struct gen_session *s, const struct gen_opts *o, const int32_t *prompt, size_t n,
            volatile sig_atomic_t *interrupt, struct gen_stats *stats, char **answer_out,
            char **thinking_out) {
    memset(stats, 0, sizeof *stats);
    if (answer_out)
        *answer_out = NULL;
    if (thinking_out)
        *thinking_out = NULL;
    if (n == 0) {
        fprintf(stderr, "moecl: error: empty prompt\n");
        return 1;
    }
    if ((long long)n + o->max_tokens > s->n_ctx) {
        fprintf(stderr,
                "moecl: error: prompt of %zu tokens + --max-tokens %d does not fit the context of "
                "%d tokens%s\n",
                n, o->max_tokens, s->n_ctx, o->chat ? " (/reset starts over)" : "");
        return 1;
    }
    struct moecl_harmony_parser *parser = NULL;
    struct moecl_tokenizer_stream *stream = NULL;
    enum moecl_status st = o->chat ? moecl_harmony_parser_create(s->tok, &parser)
                                   : moecl_tokenizer_stream_create(s->tok, &stream);
    if (st != MOECL_OK)
        return moecl_cli_fail("generation", st);
    struct chat_out co = {o->show_reasoning, o->color, 0, 0};
    int rc = 0, vocab = moecl_model_vocab_size(s->model);

    moecl_context_reset(s->ctx);
    double t0 = now_s();
    st = moecl_context_eval(s->ctx, prompt, (int)n);
    double t1 = now_s();
    stats->prompt_tokens = (int)n;
    stats->prompt_s = t1 - t0;
    if (st != MOECL_OK) {
        rc = moecl_cli_fail("prompt evaluation", st);
        goto done;
    }
    for (int i = 0; i < o->max_tokens; i++) {
        if (interrupt && *interrupt) {
            stats->interrupted = 1;
            break;
        }
        int32_t tok = -1;
        st = moecl_sampler_sample(s->sampler, moecl_context_logits(s->ctx), vocab, &tok);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("sampling", st);
            break;
        }
        stats->gen_tokens++;
        int stop = is_stop(s, tok);
        if (parser) {
            struct moecl_harmony_event ev;
            st = moecl_harmony_parser_push(parser, tok, &ev);
            if (st != MOECL_OK) {
                rc = moecl_cli_fail("parsing the output", st);
                break;
            }
            chat_write(&co, &ev);
            if (ev.message_end)
                chat_end_message(&co);
        } else if (!stop) {
            const char *text = NULL;
            size_t len = 0;
            st = moecl_tokenizer_stream_push(stream, tok, &text, &len);
            if (st != MOECL_OK) {
                rc = moecl_cli_fail("decoding", st);
                break;
            }
            fwrite(text, 1, len, stdout);
            fflush(stdout);
        }
        if (stop) {
            stats->stopped = 1;
            break;
        }
        if (i + 1 == o->max_tokens)
            break; /* the last token needs no evaluation */
        st = moecl_context_eval(s->ctx, &tok, 1);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("decoding step", st);
            break;
        }
    }
    stats->gen_s = now_s() - t1;
    if (parser) {
        struct moecl_harmony_event ev;
        moecl_harmony_parser_finish(parser, &ev);
        chat_write(&co, &ev);
        chat_end_message(&co);
        if (ev.channel == MOECL_CHANNEL_NONE && ev.text_len && !co.printed) {
            /* Output that never formed a harmony message (a noise model): show it. */
            fwrite(ev.text, 1, ev.text_len, stdout);
        }
        const char *tool = moecl_harmony_parser_tool_name(parser);
        if (tool && stats->stopped)
            printf("%s[tool call %s %s: moecl runs no tools]", co.printed ? "\n" : "", tool,
                   moecl_harmony_parser_tool_args(parser));
        if (answer_out)
            *answer_out = dup_or_empty(moecl_harmony_parser_text(parser, MOECL_CHANNEL_FINAL));
        if (thinking_out)
            *thinking_out = dup_or_empty(moecl_harmony_parser_text(parser, MOECL_CHANNEL_ANALYSIS));
    } else {
        const char *text = NULL;
        size_t len = 0;
        if (moecl_tokenizer_stream_flush(stream, &text, &len) == MOECL_OK)
            fwrite(text, 1, len, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
done:
    moecl_harmony_parser_release(parser);
    moecl_tokenizer_stream_release(stream);
    return rc;
}

void gen_print_stats(const struct gen_session *s, const struct gen_stats *st) {
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    struct moecl_memory_stats m;
    const struct moecl_device_info *dev = moecl_model_device(s->model);
    double pt = st->prompt_s > 0 ? st->prompt_tokens / st->prompt_s : 0;
    /* Generation speed counts the tokens after the first, which the prompt pass produced. */
    double gt = st->gen_s > 0 && st->gen_tokens > 1 ? (st->gen_tokens - 1) / st->gen_s : 0;
    fprintf(stderr, "==========\n");
    fprintf(stderr, "prompt: %d tokens, %.3f tokens/s | generation: %d tokens, %.3f tokens/s",
            st->prompt_tokens, pt, st->gen_tokens, gt);
    if (moecl_context_memory(s->ctx, &m) == MOECL_OK) {
        fprintf(stderr,
                " | peak memory: host RSS %s, %s buffers %s (weights %s%s, KV %s, "
                "activations %s)",
                moecl_cli_bytes(m.host_peak_rss_bytes, b1), dev ? dev->name : "device",
                moecl_cli_bytes(m.device_bytes, b2), moecl_cli_bytes(m.weight_bytes, b3),
                m.weight_zero_copy ? " zero-copy" : "", moecl_cli_bytes(m.kv_bytes, b4),
                moecl_cli_bytes(m.act_bytes, b5));
    } else {
        fprintf(stderr, " | peak memory: host RSS %s",
                moecl_cli_bytes(moecl_host_peak_rss_bytes(), b1));
    }
    fprintf(stderr, "%s\n", st->interrupted ? " (interrupted)" : "");
    if (s->report_memory)
        gen_print_memory_report(s->ctx);
}

int gen_print_memory_report(const struct moecl_context *ctx) {
    struct moecl_memory_report r;
    char b1[32], b2[32], b3[32], b4[32];
    enum moecl_status st = moecl_context_memory_report(ctx, &r);
    if (st != MOECL_OK)
        return moecl_cli_fail("memory report", st);
    fprintf(stderr, "memory report: %s\n", r.placement);
    fprintf(stderr, "  %-10s %-26s %12s %12s\n", "device", "class", "planned", "measured");
    for (int d = 0; d < r.n_devices; d++) {
        const struct moecl_memory_device *md = &r.devices[d];
        uint64_t tp = 0, tm = 0;
        for (int c = 0; c < MOECL_MEM_N_CLASSES; c++) {
            tp += md->planned[c];
            tm += md->measured[c];
            if (!md->planned[c] && !md->measured[c])
                continue;
            fprintf(stderr, "  %-10s %-26s %12s %12s\n", md->name,
                    moecl_mem_class_name((enum moecl_mem_class)c),
                    moecl_cli_bytes(md->planned[c], b1), moecl_cli_bytes(md->measured[c], b2));
        }
        fprintf(stderr, "  %-10s %-26s %12s %12s  (%s, %d weight pieces, max buffer %s)\n",
                md->name, "total", moecl_cli_bytes(tp, b1), moecl_cli_bytes(tm, b2),
                md->zero_copy ? "zero-copy views of host memory" : "device memory",
                md->weight_pieces, moecl_cli_bytes(md->max_alloc_bytes, b3));
    }
    fprintf(stderr,
            "  between devices: %d event + %d host hand-offs per step; moved %s in %llu tokens "
            "(%.0f bytes/token); weight uploads %s\n",
            r.handoffs_per_step[0], r.handoffs_per_step[1], moecl_cli_bytes(r.moved_bytes, b1),
            (unsigned long long)r.n_tokens,
            r.n_tokens ? (double)r.moved_bytes / (double)r.n_tokens : 0.0,
            moecl_cli_bytes(r.uploaded_bytes, b2));
    fprintf(
        stderr, "  host: RSS %s (peak %s); checkpoint %s mapped, %s in the page cache (%.1f%%)\n",
        moecl_cli_bytes(r.host_rss_bytes, b1), moecl_cli_bytes(r.host_peak_rss_bytes, b2),
        moecl_cli_bytes(r.checkpoint_bytes, b3), moecl_cli_bytes(r.checkpoint_resident_bytes, b4),
        r.checkpoint_bytes
            ? 100.0 * (double)r.checkpoint_resident_bytes / (double)r.checkpoint_bytes
            : 0.0);
    uint64_t hb = 0;
    for (int c = 0; c < MOECL_MEM_N_CLASSES; c++)
        hb += r.host_buffer_bytes[c];
    if (hb) {
        fprintf(stderr, "  host buffers: %s (%s of them pinned)", moecl_cli_bytes(hb, b1),
                moecl_cli_bytes(r.host_pinned_bytes, b2));
        for (int c = 0; c < MOECL_MEM_N_CLASSES; c++)
            if (r.host_buffer_bytes[c])
                fprintf(stderr, "; %s %s", moecl_mem_class_name((enum moecl_mem_class)c),
                        moecl_cli_bytes(r.host_buffer_bytes[c], b1));
        fprintf(stderr, "\n");
    }
    return 0;
}
