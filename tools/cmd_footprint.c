/* moecl footprint: the memory plan of a checkpoint (or a writer preset) for a placement and a
 * context, per device and class, before anything is loaded; sweeps to CSV and a gnuplot plot. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char usage[] =
    "usage: moecl footprint [DIR | --like PRESET] [options]\n"
    "Plans the memory of the checkpoint in DIR (its headers only: no weight byte is read), or\n"
    "of the full-size gpt-oss-20b a writer preset describes, per device and class: weights\n"
    "(attention, experts, embeddings, lm_head, router, norms and biases), KV cache of full and\n"
    "sliding layers, activations, scratch, program binaries; capacity and what is left; and\n"
    "whether it fits (exit status 3 and the reason when it does not).\n"
    "  -m, --model DIR        checkpoint folder (or as the first argument)\n"
    "  --like PRESET          mlx-4bit, mlx-5bit-gs32, mlx-6bit, optiq-4bit, mxfp4, hf-mxfp4,\n"
    "                         hf-bf16, mixed-L-H (tools/mkmodel.md)\n"
    "  --ctx N                context length (default 4096; 4k, 128k accepted)\n"
    "  --place SPEC           placement, e.g. attn=gpu,experts=cpu (default: first GPU, else\n"
    "                         the CPU device)\n"
    "  --cpu-moe              every layer's experts on the CPU device\n"
    "  --n-cpu-moe N          the first N layers' experts on the CPU device\n"
    "  --batch N              tokens per prefill step (default 512)\n"
    "  --micro-batch N        prefill pipelined in micro-batches of N tokens (as the\n"
    "                         runtime's --micro-batch; --ubatch is the same; default 0: off)\n"
    "  --kv-type T            f32 (default) or f16\n"
    "  --max-kv-size N        full layers keep a ring of N positions\n"
    "  --all-logits           keep logits of every position of a step (perplexity)\n"
    "  --host-memory N        host memory to check against (default: this machine's; G/M ok)\n"
    "  --virtual-gpu N        plan for a GPU this machine does not have, with N bytes of\n"
    "                         memory (8G; largest buffer a quarter): named virtual:0, ...\n"
    "                         (repeatable), or gpu when no real GPU comes first\n"
    "  --json                 one JSON object instead of the table\n"
    "  --sweep KEY=VALUES     plan for each value and write CSV: ctx=1k..128k (doubling) or\n"
    "                         ctx=1k,8k,...; kv=f32,f16; like=mlx-4bit,mxfp4,...;\n"
    "                         place='all=pocl:0;attn=pocl:0,experts=pocl:1' (';' separates).\n"
    "                         A second --sweep makes the series of the first.\n"
    "  --csv FILE             sweep CSV to FILE (default stdout)\n"
    "  --measure              also load DIR with the same placement and context, prefill\n"
    "                         --measure-tokens random tokens (default 64: every expert gets\n"
    "                         used, so every weight page is touched) and print planned beside\n"
    "                         measured per device and class, and host planned vs RSS\n"
    "  --measure-tokens N     tokens to prefill for --measure\n"
    "  --populate             with --measure: prefault the whole checkpoint mapping\n"
    "                         ($MOECL_MMAP_POPULATE=1), as if every expert had been used\n"
    "  --plot PREFIX          sweep plot PREFIX.png and PREFIX.svg (gnuplot): total bytes\n"
    "                         per device against the first sweep's values\n";

/* "4096", "4k" (x1024), "2M"; G/M/K suffixes for byte counts too. */
static int parse_size(const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    if (!s || end == s || errno)
        return -1;
    if (*end == 'k' || *end == 'K')
        x *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        x *= 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        x *= 1024.0 * 1024 * 1024, end++;
    if (*end || x < (double)lo || x > (double)hi || x != (double)(long long)x)
        return -1;
    *out = (long long)x;
    return 0;
}

#define MAX_VALUES 64

struct sweep {
    char key[16];
    int n;
    char values[MAX_VALUES][256];
};

/* Parses KEY=VALUES: ctx=A..B doubles from A to B; otherwise ',' (';' for place) separates. */
static int parse_sweep(const char *arg, struct sweep *s) {
    memset(s, 0, sizeof *s);
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof s->key) {
        fprintf(stderr, "moecl footprint: --sweep '%s': expected KEY=VALUES\n", arg);
        return -1;
    }
    memcpy(s->key, arg, (size_t)(eq - arg));
    const char *v = eq + 1;
    if (strcmp(s->key, "ctx") && strcmp(s->key, "kv") && strcmp(s->key, "like") &&
        strcmp(s->key, "place")) {
        fprintf(stderr, "moecl footprint: --sweep '%s': KEY is ctx, kv, like or place\n", arg);
        return -1;
    }
    const char *dots = strstr(v, "..");
    if (!strcmp(s->key, "ctx") && dots) {
        char a[64];
        long long lo, hi;
        size_t n = (size_t)(dots - v);
        if (n >= sizeof a)
            n = sizeof a - 1;
        memcpy(a, v, n);
        a[n] = 0;
        if (parse_size(a, 1, 1 << 30, &lo) || parse_size(dots + 2, 1, 1 << 30, &hi) || hi < lo) {
            fprintf(stderr, "moecl footprint: --sweep '%s': expected ctx=A..B with A <= B\n", arg);
            return -1;
        }
        for (long long x = lo; x <= hi && s->n < MAX_VALUES; x *= 2)
            snprintf(s->values[s->n++], sizeof s->values[0], "%lld", x);
        return 0;
    }
    char sep = !strcmp(s->key, "place") ? ';' : ',';
    while (*v && s->n < MAX_VALUES) {
        const char *e = strchr(v, sep);
        size_t n = e ? (size_t)(e - v) : strlen(v);
        if (n == 0 || n >= sizeof s->values[0]) {
            fprintf(stderr, "moecl footprint: --sweep '%s': empty or too long value\n", arg);
            return -1;
        }
        memcpy(s->values[s->n], v, n);
        s->values[s->n++][n] = 0;
        v = e ? e + 1 : v + n;
    }
    if (!s->n) {
        fprintf(stderr, "moecl footprint: --sweep '%s': no values\n", arg);
        return -1;
    }
    return 0;
}

struct fp_args {
    const char *dir, *like;
    struct moecl_footprint_options o;
    int n_vgpus;
    uint64_t vgpu_bytes[8];
};

/* Applies one sweep value; like= changes the model (reopened by the caller). */
static int apply_value(const struct sweep *s, int i, struct fp_args *a) {
    const char *v = s->values[i];
    long long x;
    if (!strcmp(s->key, "ctx")) {
        if (parse_size(v, 1, 1 << 30, &x)) {
            fprintf(stderr, "moecl footprint: --sweep ctx: bad value '%s'\n", v);
            return -1;
        }
        a->o.n_ctx = (int)x;
    } else if (!strcmp(s->key, "kv")) {
        if (moecl_kv_type_parse(v, &a->o.kv_type) != MOECL_OK)
            return moecl_cli_fail("--sweep kv", MOECL_ERR_INVALID_ARG) ? -1 : -1;
    } else if (!strcmp(s->key, "like")) {
        a->like = v;
        a->dir = NULL;
    } else {
        a->o.place = v;
    }
    return 0;
}

static void csv_header(FILE *f) {
    fprintf(f, "model,placement,series,n_ctx,kv_type,device");
    for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
        fprintf(f, ",%s", moecl_mem_class_id((enum moecl_mem_class)k));
    fprintf(f, ",total,capacity,left,fits\n");
}

static void csv_rows(FILE *f, const struct moecl_footprint *p, const char *series) {
    for (int i = 0; i < p->n_rows; i++) {
        const struct moecl_footprint_row *r = &p->rows[i];
        fprintf(f, "\"%s\",\"%s\",\"%s\",%d,%s,%s", p->model, p->placement, series, p->n_ctx,
                moecl_kv_type_name(p->kv_type), r->name);
        for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
            fprintf(f, ",%llu", (unsigned long long)r->bytes[k]);
        fprintf(f, ",%llu,%llu,%lld,%d\n", (unsigned long long)r->total,
                (unsigned long long)r->capacity, (long long)r->left, r->fits);
    }
}

static int plan_one(struct fp_args *a, struct moecl_footprint_model **model, const char **open_as,
                    struct moecl_footprint *out) {
    /* (re)open the model when the preset changed */
    if (!*model || *open_as != (a->dir ? a->dir : a->like)) {
        moecl_footprint_model_release(*model);
        *model = NULL;
        enum moecl_status st = moecl_footprint_model_open(a->dir, a->like, model);
        for (int i = 0; st == MOECL_OK && i < a->n_vgpus; i++)
            st = moecl_footprint_model_add_gpu(*model, a->vgpu_bytes[i], 0);
        if (st != MOECL_OK)
            return moecl_cli_fail(a->dir ? a->dir : a->like, st);
        *open_as = a->dir ? a->dir : a->like;
    }
    enum moecl_status st = moecl_footprint_plan(*model, &a->o, out);
    return st == MOECL_OK ? 0 : moecl_cli_fail("footprint", st);
}

/* gnuplot over a wide table: column 1 the x value, one column per series x device (totals in
 * GB). */
static int draw_plot(const char *prefix, const char *title, const struct sweep *x,
                     const struct sweep *series, const double *gb, int n_dev, char dev_names[][64],
                     int log_x) {
    char dat[4200], gp[4200];
    snprintf(dat, sizeof dat, "%s.dat", prefix);
    snprintf(gp, sizeof gp, "%s.gp", prefix);
    FILE *f = fopen(dat, "w");
    if (!f) {
        fprintf(stderr, "moecl footprint: %s: %s\n", dat, strerror(errno));
        return 1;
    }
    int n_ser = series ? series->n : 1;
    fprintf(f, "%s", x->key);
    for (int s = 0; s < n_ser; s++)
        for (int d = 0; d < n_dev; d++)
            fprintf(f, "\t\"%s%s%s\"", dev_names[d], series ? " " : "",
                    series ? series->values[s] : "");
    fputc('\n', f);
    for (int i = 0; i < x->n; i++) {
        fprintf(f, "%s", x->values[i]);
        for (int s = 0; s < n_ser; s++)
            for (int d = 0; d < n_dev; d++)
                fprintf(f, "\t%.4f", gb[((size_t)i * (size_t)n_ser + (size_t)s) * 64 + (size_t)d]);
        fputc('\n', f);
    }
    fclose(f);
    f = fopen(gp, "w");
    if (!f) {
        fprintf(stderr, "moecl footprint: %s: %s\n", gp, strerror(errno));
        return 1;
    }
    int n_cols = n_ser * n_dev;
    for (int t = 0; t < 2; t++) {
        fprintf(f, "set terminal %s size 900,560%s\n", t ? "svg" : "pngcairo", t ? " dynamic" : "");
        fprintf(f, "set output '%s.%s'\n", prefix, t ? "svg" : "png");
        fprintf(f,
                "set title \"moecl footprint, planned bytes per device\\n%s\" noenhanced\n"
                "set xlabel '%s'\nset ylabel 'GB (10^9 bytes)'\nset key left top noenhanced\n"
                "set grid\n%s",
                title, !strcmp(x->key, "ctx") ? "context length (tokens)" : x->key,
                log_x ? "set logscale x 2\n" : "");
        fprintf(f, "plot for [i=2:%d] '%s' using 1:i with linespoints title columnheader(i)\n",
                n_cols + 1, dat);
    }
    fclose(f);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gp);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr,
                "moecl footprint: gnuplot failed (status %d); is it installed (Debian package "
                "gnuplot-nox, `make deps`)?\n",
                WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
        return 1;
    }
    fprintf(stderr, "moecl footprint: wrote %s.png, %s.svg (data %s, script %s)\n", prefix, prefix,
            dat, gp);
    return 0;
}

static double pct(uint64_t measured, uint64_t planned) {
    return planned ? 100.0 * ((double)measured - (double)planned) / (double)planned : 0.0;
}

/* Resident bytes of this process's mappings of *.safetensors files (/proc/self/smaps). */
static uint64_t checkpoint_rss(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[4608];
    int in_ckpt = 0;
    uint64_t total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' ')) {
            size_t n = strlen(line);
            while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
                line[--n] = 0;
            in_ckpt = n > 12 && !strcmp(line + n - 12, ".safetensors");
        } else if (in_ckpt && sscanf(line, "Rss: %llu kB", &kb) == 1) {
            total += (uint64_t)kb * 1024u;
        }
    }
    fclose(f);
    return total;
}

/* Loads the model as planned, prefills n random tokens and prints planned vs measured. */
static int measure(const struct fp_args *a, const struct moecl_footprint *plan, int n_tokens) {
    uint64_t rss0 = moecl_host_rss_bytes();
    struct moecl_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.place = a->o.place;
    mo.n_cpu_moe = a->o.n_cpu_moe == -2 ? -1 : a->o.n_cpu_moe < 0 ? 0 : a->o.n_cpu_moe;
    struct moecl_model *model = NULL;
    struct moecl_context *ctx = NULL;
    enum moecl_status st = moecl_model_load(a->dir, &mo, &model);
    if (st != MOECL_OK)
        return moecl_cli_fail(a->dir, st);
    struct moecl_context_options co;
    memset(&co, 0, sizeof co);
    co.prefill_chunk = a->o.prefill_chunk;
    co.max_kv_size = a->o.max_kv_size;
    co.all_logits = a->o.all_logits;
    co.kv_type = a->o.kv_type;
    co.micro_batch = a->o.micro_batch;
    st = moecl_context_create(model, a->o.n_ctx, &co, &ctx);
    int32_t *toks = st == MOECL_OK ? malloc((size_t)n_tokens * sizeof *toks) : NULL;
    if (st == MOECL_OK && !toks)
        st = MOECL_ERR_NO_MEMORY;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; toks && i < n_tokens; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % (uint64_t)moecl_model_vocab_size(model));
    }
    if (st == MOECL_OK && n_tokens > 0)
        st = moecl_context_eval(ctx, toks, n_tokens);
    struct moecl_memory_report *r = calloc(1, sizeof *r);
    if (st == MOECL_OK && !r)
        st = MOECL_ERR_NO_MEMORY;
    if (st == MOECL_OK)
        st = moecl_context_memory_report(ctx, r);
    int rc = 0;
    if (st != MOECL_OK) {
        rc = moecl_cli_fail("measuring", st);
    } else {
        char b1[32], b2[32];
        printf("\nmeasured after a prefill of %d tokens (%s)\n", n_tokens, r->placement);
        printf("%-10s %-26s %14s %14s %9s\n", "device", "class", "planned", "measured", "diff");
        for (int d = 0; d < r->n_devices; d++) {
            const struct moecl_memory_device *md = &r->devices[d];
            const struct moecl_footprint_row *pr = NULL;
            for (int i = 0; i < plan->n_rows; i++)
                if (!strcmp(plan->rows[i].name, md->name))
                    pr = &plan->rows[i];
            uint64_t tp = 0, tm = 0;
            for (int c = 0; c < MOECL_MEM_N_CLASSES; c++) {
                uint64_t pc = pr ? pr->bytes[c] : 0, mc = md->measured[c];
                tp += pc;
                tm += mc;
                if (pc || mc)
                    printf("%-10s %-26s %14s %14s %8.2f%%\n", md->name,
                           moecl_mem_class_name((enum moecl_mem_class)c), moecl_cli_bytes(pc, b1),
                           moecl_cli_bytes(mc, b2), pct(mc, pc));
            }
            printf("%-10s %-26s %14s %14s %8.2f%%  (%llu / %llu bytes)\n", md->name, "total",
                   moecl_cli_bytes(tp, b1), moecl_cli_bytes(tm, b2), pct(tm, tp),
                   (unsigned long long)tp, (unsigned long long)tm);
        }
        const struct moecl_footprint_row *h = &plan->rows[plan->n_rows - 1];
        printf("%-10s %-26s %14s %14s %8.2f%%  (RSS now; %llu / %llu bytes)\n", "host",
               "total vs RSS", moecl_cli_bytes(h->total, b1),
               moecl_cli_bytes(r->host_rss_bytes, b2), pct(r->host_rss_bytes, h->total),
               (unsigned long long)h->total, (unsigned long long)r->host_rss_bytes);
        uint64_t grown = r->host_rss_bytes > rss0 ? r->host_rss_bytes - rss0 : 0;
        char b3[32];
        printf("%-10s %-26s %14s %14s %8.2f%%  (RSS less the %s before loading)\n", "host",
               "total vs RSS growth", moecl_cli_bytes(h->total, b1), moecl_cli_bytes(grown, b2),
               pct(grown, h->total), moecl_cli_bytes(rss0, b3));
        uint64_t ck_rss = checkpoint_rss();
        printf("%-10s %-26s %14s %14s %8.2f%%  (this process's Rss of the mapped files, smaps)\n",
               "host", "weights vs mapped RSS", moecl_cli_bytes(plan->stored_bytes, b1),
               moecl_cli_bytes(ck_rss, b2), pct(ck_rss, plan->stored_bytes));
        printf("%-10s %-26s %14s %14s %8.2f%%  (page cache, mincore: also other processes' "
               "reads)\n",
               "host", "weights vs cached pages", moecl_cli_bytes(plan->stored_bytes, b1),
               moecl_cli_bytes(r->checkpoint_resident_bytes, b2),
               pct(r->checkpoint_resident_bytes, plan->stored_bytes));
    }
    free(r);
    free(toks);
    moecl_context_release(ctx);
    moecl_model_release(model);
    return rc;
}

MOECL_COMMAND(footprint, "plan memory per device and class before loading (and sweeps)") {
    struct fp_args a;
    memset(&a, 0, sizeof a);
    moecl_footprint_options_init(&a.o);
    unsigned flags = 0;
    struct sweep sw[2];
    int n_sweeps = 0;
    const char *csv = NULL, *plot = NULL;
    int do_measure = 0, measure_tokens = 64;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) {                                                                                  \
            fprintf(stderr, "moecl footprint: %s needs a value\n", o);                             \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
#define INT_VALUE(lo, hi, dst)                                                                     \
    do {                                                                                           \
        NEED_VALUE();                                                                              \
        if (parse_size(v, lo, hi, &x)) {                                                           \
            fprintf(stderr,                                                                        \
                    "moecl footprint: %s: expected an integer in [%lld, %lld], got '%s'\n", o,     \
                    (long long)(lo), (long long)(hi), v);                                          \
            return 2;                                                                              \
        }                                                                                          \
        dst = x;                                                                                   \
    } while (0)
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(o, "-m") || !strcmp(o, "--model")) {
            NEED_VALUE();
            a.dir = v;
        } else if (!strcmp(o, "--like")) {
            NEED_VALUE();
            a.like = v;
        } else if (!strcmp(o, "--ctx")) {
            INT_VALUE(1, 1 << 30, a.o.n_ctx);
        } else if (!strcmp(o, "--place")) {
            NEED_VALUE();
            a.o.place = v;
        } else if (!strcmp(o, "--cpu-moe")) {
            a.o.n_cpu_moe = -2;
        } else if (!strcmp(o, "--n-cpu-moe")) {
            INT_VALUE(0, 4096, a.o.n_cpu_moe);
        } else if (!strcmp(o, "--batch")) {
            INT_VALUE(1, 1 << 20, a.o.prefill_chunk);
        } else if (!strcmp(o, "--ubatch") || !strcmp(o, "--micro-batch")) {
            INT_VALUE(1, 1 << 20, a.o.micro_batch);
        } else if (!strcmp(o, "--max-kv-size")) {
            INT_VALUE(1, 1 << 30, a.o.max_kv_size);
        } else if (!strcmp(o, "--kv-type")) {
            NEED_VALUE();
            if (moecl_kv_type_parse(v, &a.o.kv_type) != MOECL_OK) {
                fprintf(stderr, "moecl footprint: --kv-type: %s\n", moecl_last_error());
                return 2;
            }
        } else if (!strcmp(o, "--all-logits")) {
            a.o.all_logits = 1;
        } else if (!strcmp(o, "--host-memory")) {
            long long h = 0;
            INT_VALUE(1, (long long)1 << 50, h);
            a.o.host_memory_bytes = (uint64_t)h;
        } else if (!strcmp(o, "--virtual-gpu")) {
            long long g = 0;
            INT_VALUE(1, (long long)1 << 50, g);
            if (a.n_vgpus == 8) {
                fprintf(stderr, "moecl footprint: at most 8 --virtual-gpu\n");
                return 2;
            }
            a.vgpu_bytes[a.n_vgpus++] = (uint64_t)g;
        } else if (!strcmp(o, "--json")) {
            flags |= MOECL_FOOTPRINT_JSON;
        } else if (!strcmp(o, "--sweep")) {
            NEED_VALUE();
            if (n_sweeps == 2) {
                fprintf(stderr, "moecl footprint: at most two --sweep options\n");
                return 2;
            }
            if (parse_sweep(v, &sw[n_sweeps]))
                return 2;
            n_sweeps++;
        } else if (!strcmp(o, "--measure")) {
            do_measure = 1;
        } else if (!strcmp(o, "--populate")) {
            setenv("MOECL_MMAP_POPULATE", "1", 1);
        } else if (!strcmp(o, "--measure-tokens")) {
            INT_VALUE(0, 1 << 20, measure_tokens);
        } else if (!strcmp(o, "--csv")) {
            NEED_VALUE();
            csv = v;
        } else if (!strcmp(o, "--plot")) {
            NEED_VALUE();
            plot = v;
        } else if (o[0] != '-' && !a.dir) {
            a.dir = o;
        } else {
            fprintf(stderr, "moecl footprint: unexpected argument '%s' (see --help)\n", o);
            return 2;
        }
#undef INT_VALUE
#undef NEED_VALUE
    }
    if (!a.dir == !a.like) {
        fprintf(stderr, "moecl footprint: give a checkpoint folder or --like PRESET (one)\n%s",
                usage);
        return 2;
    }
    if (do_measure && (!a.dir || n_sweeps || (flags & MOECL_FOOTPRINT_JSON) || a.n_vgpus)) {
        fprintf(stderr, "moecl footprint: --measure needs a checkpoint folder, no --sweep, no "
                        "--json and no --virtual-gpu\n");
        return 2;
    }
    if ((csv || plot) && !n_sweeps) {
        fprintf(stderr, "moecl footprint: --csv and --plot go with --sweep\n");
        return 2;
    }
    struct moecl_footprint_model *model = NULL;
    const char *open_as = NULL;
    struct moecl_footprint *p = calloc(1, sizeof *p);
    if (!p)
        return moecl_cli_fail("footprint", MOECL_ERR_NO_MEMORY);
    int rc = 0;
    if (!n_sweeps) {
        rc = plan_one(&a, &model, &open_as, p);
        if (rc == 0) {
            moecl_footprint_write(p, flags, stdout);
            rc = p->fits ? 0 : 3;
        }
        if (rc == 0 && do_measure) {
            fflush(stdout);
            rc = measure(&a, p, measure_tokens);
        }
        moecl_footprint_model_release(model);
        free(p);
        return rc;
    }

    FILE *f = csv ? fopen(csv, "w") : stdout;
    if (!f) {
        fprintf(stderr, "moecl footprint: %s: %s\n", csv, strerror(errno));
        free(p);
        return 1;
    }
    csv_header(f);
    const struct sweep *xs = &sw[0], *ser = n_sweeps > 1 ? &sw[1] : NULL;
    int n_ser = ser ? ser->n : 1;
    double *gb = calloc((size_t)xs->n * (size_t)n_ser * 64, sizeof *gb);
    char dev_names[64][64];
    int n_dev = 0;
    struct fp_args base = a;
    char title[1024] = "";
    for (int i = 0; i < xs->n && rc == 0 && gb; i++) {
        for (int s = 0; s < n_ser && rc == 0; s++) {
            struct fp_args cur = base;
            if (apply_value(xs, i, &cur) || (ser && apply_value(ser, s, &cur))) {
                rc = 2;
                break;
            }
            rc = plan_one(&cur, &model, &open_as, p);
            if (rc)
                break;
            csv_rows(f, p, ser ? ser->values[s] : "");
            if (!title[0]) { /* what stays fixed over the sweep */
                int by_like = !strcmp(xs->key, "like") || (ser && !strcmp(ser->key, "like"));
                int by_place = !strcmp(xs->key, "place") || (ser && !strcmp(ser->key, "place"));
                snprintf(title, sizeof title, "%s%s%s", by_like ? "" : p->model,
                         by_like || by_place ? "" : "; ", by_place ? "" : p->placement);
            }
            for (int r = 0; r < p->n_rows; r++) {
                int d = 0;
                while (d < n_dev && strcmp(dev_names[d], p->rows[r].name))
                    d++;
                if (d == n_dev && n_dev < 64)
                    snprintf(dev_names[n_dev++], sizeof dev_names[0], "%s", p->rows[r].name);
                if (d < 64)
                    gb[((size_t)i * (size_t)n_ser + (size_t)s) * 64 + (size_t)d] =
                        (double)p->rows[r].total / 1e9;
            }
        }
    }
    if (csv)
        fclose(f);
    if (rc == 0 && plot && gb)
        rc = draw_plot(plot, title, xs, ser, gb, n_dev, dev_names, !strcmp(xs->key, "ctx"));
    free(gb);
    moecl_footprint_model_release(model);
    free(p);
    return rc;
}
