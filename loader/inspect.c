/* moecl_inspect: what a checkpoint holds, counted the way model cards count it.
 *
 * Parameters are logical (per module rows*cols per expert, plus biases, norms and sinks);
 * bytes are the stored bytes of every tensor of every shard. For uniform 4-bit g64 with the
 * 8-bit router on gpt-oss-20b shapes this gives 4.504 bits per weight, 6-bit g64 gives 6.503,
 * matching the published cards (mlx-lm divides the same stored bytes by the same logical
 * parameter count). */
#include "checkpoint.h"
#include "loader_internal.h"
#include "moecl_error.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *moecl_param_class_str(enum moecl_param_class cls) {
    switch (cls) {
    case MOECL_CLASS_EMBEDDING:
        return "embedding";
    case MOECL_CLASS_ATTENTION:
        return "attention";
    case MOECL_CLASS_ROUTER:
        return "router";
    case MOECL_CLASS_EXPERTS:
        return "experts";
    case MOECL_CLASS_NORMS_BIASES:
        return "norms+biases+sinks";
    case MOECL_CLASS_LM_HEAD:
        return "lm_head";
    case MOECL_CLASS_COUNT:
        break;
    }
    return "?";
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static enum moecl_param_class tensor_class(const char *name) {
    if (ends_with(name, ".bias") || ends_with(name, "_bias") || strstr(name, "norm") ||
        strstr(name, "sinks"))
        return MOECL_CLASS_NORMS_BIASES;
    if (strstr(name, "embed_tokens"))
        return MOECL_CLASS_EMBEDDING;
    if (strstr(name, "lm_head"))
        return MOECL_CLASS_LM_HEAD;
    if (strstr(name, "mlp.router"))
        return MOECL_CLASS_ROUTER;
    if (strstr(name, "mlp.experts"))
        return MOECL_CLASS_EXPERTS;
    return MOECL_CLASS_ATTENTION;
}

static const char *module_format(const struct moecl_qweight *w, char *buf, size_t n) {
    if (w->mode == MOECL_QMODE_NONE)
        snprintf(buf, n, "%s", moecl_dtype_name(w->float_dtype));
    else
        snprintf(buf, n, "%s %d-bit g%d", moecl_qmode_name(w->mode), w->bits, w->group_size);
    return buf;
}

/* Distinct formats with module counts, in first-seen order. */
#define MAX_FORMATS 16
struct fmt_count {
    int n;
    struct {
        char name[48];
        int count;
    } e[MAX_FORMATS];
};

static void fmt_add(struct fmt_count *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0) {
            f->e[i].count++;
            return;
        }
    if (f->n == MAX_FORMATS)
        return;
    snprintf(f->e[f->n].name, sizeof f->e[f->n].name, "%s", name);
    f->e[f->n].count = 1;
    f->n++;
}

struct report {
    struct moecl_ckpt_summary s;
    struct fmt_count class_fmt[MOECL_CLASS_COUNT];
    struct fmt_count qmap;
};

static void add_module(struct report *r, const struct moecl_qweight *w,
                       enum moecl_param_class cls) {
    uint64_t e = w->n_experts ? (uint64_t)w->n_experts : 1;
    char f[48];
    r->s.class_params[cls] += e * (uint64_t)w->rows * (uint64_t)w->cols;
    if (w->bias)
        r->s.class_params[MOECL_CLASS_NORMS_BIASES] += e * (uint64_t)w->rows;
    module_format(w, f, sizeof f);
    fmt_add(&r->class_fmt[cls], f);
    fmt_add(&r->qmap, f);
    r->s.n_modules++;
}

static void add_vec(struct report *r, const struct moecl_vec *v) {
    r->s.class_params[MOECL_CLASS_NORMS_BIASES] += (uint64_t)v->n;
    fmt_add(&r->class_fmt[MOECL_CLASS_NORMS_BIASES], moecl_dtype_name(v->dtype));
}

static void summarize(const struct moecl_ckpt *c, struct report *r) {
    memset(r, 0, sizeof *r);
    add_module(r, &c->embed, MOECL_CLASS_EMBEDDING);
    add_module(r, &c->lm_head, MOECL_CLASS_LM_HEAD);
    add_vec(r, &c->final_norm);
    for (int i = 0; i < c->config.n_layers; i++) {
        const struct moecl_layer *L = &c->layers[i];
        add_vec(r, &L->input_norm);
        add_vec(r, &L->post_norm);
        add_vec(r, &L->sinks);
        add_module(r, &L->q, MOECL_CLASS_ATTENTION);
        add_module(r, &L->k, MOECL_CLASS_ATTENTION);
        add_module(r, &L->v, MOECL_CLASS_ATTENTION);
        add_module(r, &L->o, MOECL_CLASS_ATTENTION);
        add_module(r, &L->router, MOECL_CLASS_ROUTER);
        add_module(r, &L->gate, MOECL_CLASS_EXPERTS);
        add_module(r, &L->up, MOECL_CLASS_EXPERTS);
        add_module(r, &L->down, MOECL_CLASS_EXPERTS);
    }
    for (int i = 0; i < c->n_tensors; i++) {
        const struct moecl_tensor *t = c->tensors[i];
        r->s.class_bytes[tensor_class(t->name)] += t->n_bytes;
    }
    for (int k = 0; k < MOECL_CLASS_COUNT; k++) {
        r->s.n_params += r->s.class_params[k];
        r->s.n_bytes += r->s.class_bytes[k];
    }
    r->s.bits_per_weight = r->s.n_params ? 8.0 * (double)r->s.n_bytes / (double)r->s.n_params : 0;
    r->s.converted_bytes = c->converted_bytes;
    r->s.n_tensors = c->n_tensors;
    r->s.n_files = c->n_files;
}

static const char *layout_str(enum moecl_ckpt_layout l) {
    switch (l) {
    case MOECL_LAYOUT_MLX:
        return "mlx";
    case MOECL_LAYOUT_HF_MXFP4:
        return "hf-mxfp4";
    case MOECL_LAYOUT_HF_BF16:
        return "hf-bf16";
    }
    return "?";
}

static void fmt_join(const struct fmt_count *f, char *buf, size_t n, int with_counts) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < f->n && k < n; i++) {
        if (with_counts)
            k += (size_t)snprintf(buf + k, n - k, "%s%d module%s %s", i ? ", " : "", f->e[i].count,
                                  f->e[i].count > 1 ? "s" : "", f->e[i].name);
        else
            k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", f->e[i].name);
    }
}

static double gb(uint64_t b) {
    return (double)b / 1e9;
}

static void write_text(const struct moecl_ckpt *c, const struct report *r, unsigned flags,
                       FILE *out) {
    const struct moecl_config *g = &c->config;
    int n_sliding = 0;
    for (int i = 0; i < g->n_layers; i++)
        n_sliding += g->layer_sliding[i];
    char buf[1024];
    fprintf(out, "checkpoint   %s\n", c->dir);
    fprintf(out, "layout       %s, %d file%s, %d tensors, activations %s\n", layout_str(c->layout),
            c->n_files, c->n_files > 1 ? "s" : "", c->n_tensors, moecl_dtype_name(c->act_dtype));
    fprintf(out,
            "model        gpt_oss: hidden %d, %d layers (%d sliding window %d, %d full), "
            "vocab %d\n",
            g->hidden_size, g->n_layers, n_sliding, g->sliding_window, g->n_layers - n_sliding,
            g->vocab_size);
    fprintf(out, "attention    %d heads, %d kv heads, head_dim %d, sinks\n", g->n_heads,
            g->n_kv_heads, g->head_dim);
    fprintf(out, "experts      %d experts, top %d, intermediate %d\n", g->n_experts,
            g->n_experts_per_tok, g->intermediate_size);
    if (g->yarn)
        fprintf(out,
                "rope         yarn: theta %g, factor %g, beta_fast %g, beta_slow %g, "
                "original %d\n",
                g->rope_theta, (double)g->rope_factor, (double)g->beta_fast, (double)g->beta_slow,
                g->original_max_pos);
    else
        fprintf(out, "rope         plain: theta %g\n", g->rope_theta);
    if (g->rope_parameters_ignored)
        fprintf(out, "warning      config.json has only 'rope_parameters'; like mlx-lm, moecl "
                     "uses plain RoPE (no YaRN) for it\n");
    fprintf(out, "\n%-20s %16s %16s  %s\n", "class", "parameters", "bytes", "format");
    for (int k = 0; k < MOECL_CLASS_COUNT; k++) {
        fmt_join(&r->class_fmt[k], buf, sizeof buf, 0);
        fprintf(out, "%-20s %16llu %16llu  %s\n", moecl_param_class_str((enum moecl_param_class)k),
                (unsigned long long)r->s.class_params[k], (unsigned long long)r->s.class_bytes[k],
                buf);
    }
    fprintf(out, "%-20s %16llu %16llu  %.3f bits per weight, %.2f GB\n", "total",
            (unsigned long long)r->s.n_params, (unsigned long long)r->s.n_bytes,
            r->s.bits_per_weight, gb(r->s.n_bytes));
    fmt_join(&r->qmap, buf, sizeof buf, 1);
    fprintf(out, "\nquantization %s\n", buf);
    if (c->converted_bytes)
        fprintf(out,
                "converted    %llu bytes (%.3f GB) built at load (Hugging Face %s; 'moecl "
                "convert' makes a zero-copy MLX checkpoint)\n",
                (unsigned long long)c->converted_bytes, gb(c->converted_bytes),
                c->layout == MOECL_LAYOUT_HF_BF16 ? "bf16 experts" : "MXFP4 expert biases");
    else
        fprintf(out, "converted    0 bytes (zero-copy)\n");
    if (flags & MOECL_INSPECT_TENSORS) {
        fprintf(out, "\n%-60s %-8s %-24s %14s  %s\n", "tensor", "dtype", "shape", "bytes", "file");
        for (int i = 0; i < c->n_tensors; i++) {
            const struct moecl_tensor *t = c->tensors[i];
            const char *file = moecl_ckpt_tensor_file(c, t);
            const char *base = strrchr(file, '/');
            fprintf(out, "%-60s %-8s %-24s %14zu  %s\n", t->name, moecl_dtype_name(t->dtype),
                    moecl_shape_str(t->shape, t->n_dims, buf, sizeof buf), t->n_bytes,
                    base ? base + 1 : file);
        }
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void write_json(const struct moecl_ckpt *c, const struct report *r, unsigned flags,
                       FILE *out) {
    const struct moecl_config *g = &c->config;
    char buf[1024];
    fprintf(out, "{\n  \"dir\": ");
    json_str(out, c->dir);
    fprintf(out,
            ",\n  \"layout\": \"%s\", \"n_files\": %d, \"n_tensors\": %d, \"act_dtype\": "
            "\"%s\",\n",
            layout_str(c->layout), c->n_files, c->n_tensors, moecl_dtype_name(c->act_dtype));
    fprintf(out,
            "  \"config\": {\"hidden_size\": %d, \"intermediate_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
            "\"num_local_experts\": %d, \"num_experts_per_tok\": %d, \"sliding_window\": %d, "
            "\"rope_theta\": %g, \"yarn\": %s, \"rope_factor\": %g, "
            "\"rope_parameters_ignored\": %s, \"layer_types\": [",
            g->hidden_size, g->intermediate_size, g->n_layers, g->n_heads, g->n_kv_heads,
            g->head_dim, g->vocab_size, g->n_experts, g->n_experts_per_tok, g->sliding_window,
            g->rope_theta, g->yarn ? "true" : "false", (double)g->rope_factor,
            g->rope_parameters_ignored ? "true" : "false");
    for (int i = 0; i < g->n_layers; i++)
        fprintf(out, "%s\"%s\"", i ? ", " : "",
                g->layer_sliding[i] ? "sliding_attention" : "full_attention");
    fprintf(out, "]},\n  \"classes\": [\n");
    for (int k = 0; k < MOECL_CLASS_COUNT; k++) {
        fmt_join(&r->class_fmt[k], buf, sizeof buf, 0);
        fprintf(out, "    {\"class\": \"%s\", \"parameters\": %llu, \"bytes\": %llu, \"format\": ",
                moecl_param_class_str((enum moecl_param_class)k),
                (unsigned long long)r->s.class_params[k], (unsigned long long)r->s.class_bytes[k]);
        json_str(out, buf);
        fprintf(out, "}%s\n", k + 1 < MOECL_CLASS_COUNT ? "," : "");
    }
    fprintf(out,
            "  ],\n  \"parameters\": %llu, \"bytes\": %llu, \"bits_per_weight\": %.6f, "
            "\"converted_bytes\": %llu,\n  \"quantization\": [",
            (unsigned long long)r->s.n_params, (unsigned long long)r->s.n_bytes,
            r->s.bits_per_weight, (unsigned long long)c->converted_bytes);
    for (int i = 0; i < r->qmap.n; i++) {
        fprintf(out, "%s{\"format\": ", i ? ", " : "");
        json_str(out, r->qmap.e[i].name);
        fprintf(out, ", \"modules\": %d}", r->qmap.e[i].count);
    }
    fprintf(out, "]");
    if (flags & MOECL_INSPECT_TENSORS) {
        fprintf(out, ",\n  \"tensors\": [\n");
        for (int i = 0; i < c->n_tensors; i++) {
            const struct moecl_tensor *t = c->tensors[i];
            fprintf(out, "    {\"name\": ");
            json_str(out, t->name);
            fprintf(out, ", \"dtype\": \"%s\", \"shape\": %s, \"bytes\": %zu, \"file\": ",
                    moecl_dtype_name(t->dtype),
                    moecl_shape_str(t->shape, t->n_dims, buf, sizeof buf), t->n_bytes);
            json_str(out, moecl_ckpt_tensor_file(c, t));
            fprintf(out, "}%s\n", i + 1 < c->n_tensors ? "," : "");
        }
        fprintf(out, "  ]");
    }
    fprintf(out, "\n}\n");
}

enum moecl_status moecl_inspect(const char *dir, unsigned flags, FILE *out,
                                struct moecl_ckpt_summary *summary_out) {
    if (summary_out)
        memset(summary_out, 0, sizeof *summary_out);
    struct moecl_ckpt *c = NULL;
    enum moecl_status st = moecl_ckpt_open(dir, &c);
    if (st != MOECL_OK)
        return st;
    struct report *r = malloc(sizeof *r);
    if (!r) {
        moecl_ckpt_close(c);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of memory");
    }
    summarize(c, r);
    if (out) {
        if (flags & MOECL_INSPECT_JSON)
            write_json(c, r, flags, out);
        else
            write_text(c, r, flags, out);
    }
    if (summary_out)
        *summary_out = r->s;
    free(r);
    moecl_ckpt_close(c);
    return MOECL_OK;
}
