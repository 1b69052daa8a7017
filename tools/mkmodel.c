/* mkmodel: writes a synthetic gpt-oss checkpoint (MLX or Hugging Face layout) of any size, from
 * tiny to the full gpt-oss-20b, with any recipe, deterministically from a seed.
 *
 * Output folder: config.json (+ quantization map as mlx-lm writes it), model*.safetensors shards
 * (at most 5 GiB each, named as mlx-lm names them), model.safetensors.index.json,
 * generation_config.json. Memory use does not depend on the model size: shards are written one
 * at a time, tensor by tensor, in fixed-size chunks. */
#include "mkmodel.h"
#include "moecl_error.h"
#include "st_write.h"
#include "tokenizer_json.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: mkmodel --out DIR [options]\n"
    "\n"
    "Writes a synthetic gpt-oss checkpoint: random weights whose quantized codes cover the whole\n"
    "code range, deterministic from --seed. Logits are noise but stay finite.\n"
    "\n"
    "size:\n"
    "  --tiny               hidden 192, 4 layers, 8 experts top-4, 4 q / 2 kv heads x 64,\n"
    "                       vocab 201088, window 8 (the default)\n"
    "  --full               gpt-oss-20b: hidden 2880, 24 layers, 32 experts top-4,\n"
    "                       64 q / 8 kv heads x 64, vocab 201088, window 128\n"
    "  --hidden N  --intermediate N  --layers N  --experts N  --top-k N  --heads N\n"
    "  --kv-heads N  --head-dim N  --vocab N  --window N   override one dimension\n"
    "\n"
    "recipe (default --like mlx-4bit):\n"
    "  --like mlx-4bit      affine 4-bit g64, routers 8-bit g64 (gpt_oss predicate), bf16:\n"
    "                       4.504 bits/weight at full size\n"
    "  --like mlx-5bit-gs32 affine 5-bit g32, FP16 scales and float tensors, routers FP16.\n"
    "                       The card says embeddings stay FP16 too, but its 15.76 GB total only\n"
    "                       fits a quantized embedding (15.70 GB; an FP16 embedding makes 16.42\n"
    "                       GB, 4%% over), so the embedding is quantized here\n"
    "  --like mlx-6bit      affine 6-bit g64, routers 8-bit g64: 6.503 bits/weight\n"
    "  --like optiq-4bit    per-module 4/8-bit affine g64 map (card: 33 units at 4-bit, 88 at\n"
    "                       8-bit, 5.03 bpw): 8-bit lm_head, k/v/o, q of 13 of 24 layers,\n"
    "                       experts of the first and last layer; 4-bit the rest (5.017 bpw)\n"
    "  --like mxfp4         mxfp4 experts (top-level record), other modules affine --bits\n"
    "                       (default 8) --group (default 64) with per-module entries, as\n"
    "                       current mlx-lm writes a -q conversion of the HF release\n"
    "  --like hf-mxfp4      original Hugging Face layout: *_blocks/*_scales/*_bias experts,\n"
    "                       bf16 elsewhere, quantization_config quant_method mxfp4\n"
    "  --like hf-bf16       Hugging Face bf16 fine-tune layout: input-major gate_up_proj\n"
    "                       [E, hidden, 2*inter] interleaved on the last axis, down_proj\n"
    "                       [E, inter, hidden]\n"
    "  --like mixed-L-H     mlx-lm's mixed_L_H recipe (2-6, 3-4, 3-6, 4-6): H bits for v_proj\n"
    "                       and down_proj in the layers it favours and lm_head, L bits\n"
    "                       elsewhere, group --group (default 64), an entry per module\n"
    "  --mode affine|mxfp4|mxfp8|nvfp4|none  --bits B  --group G  uniform recipe (routers\n"
    "                       8-bit g64 as mlx-lm's gpt_oss predicate); none = unquantized\n"
    "  --dtype bf16|f16|f32 float tensors and affine scales/biases (default bf16)\n"
    "\n"
    "other:\n"
    "  --out DIR            output folder (created; old model*.safetensors in it are removed)\n"
    "  --seed N             random seed (default 0)\n"
    "  --max-shard-bytes N  shard size limit (default 5 GiB, as mlx-lm)\n"
    "  --tiktoken PATH      rank file for tokenizer.json (default data/o200k_base.tiktoken;\n"
    "                       skipped with a note if the default is missing)\n"
    "  --no-tokenizer       write no tokenizer.json / tokenizer_config.json\n"
    "  --quiet              no progress output\n"
    "  --dry-run            print the plan (tensors, bytes, bits/weight) and write nothing\n";

/* ------------------------------------------------------------------ options */

static int parse_int(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v ? v : "", &end, 0);
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "mkmodel: %s: expected an integer in [%lld, %lld], got \"%s\"\n", opt, lo,
                hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

struct dims_opt {
    const char *name;
    size_t offset;
    long long lo, hi;
};

static const struct dims_opt dims_opts[] = {
    {"--hidden", offsetof(struct mk_opts, r.hidden), 1, 1 << 16},
    {"--intermediate", offsetof(struct mk_opts, r.intermediate), 1, 1 << 17},
    {"--layers", offsetof(struct mk_opts, r.n_layers), 1, 1024},
    {"--experts", offsetof(struct mk_opts, r.n_experts), 1, 4096},
    {"--top-k", offsetof(struct mk_opts, r.top_k), 1, 4096},
    {"--heads", offsetof(struct mk_opts, r.n_heads), 1, 1024},
    {"--kv-heads", offsetof(struct mk_opts, r.n_kv_heads), 1, 1024},
    {"--head-dim", offsetof(struct mk_opts, r.head_dim), 2, 1024},
    {"--vocab", offsetof(struct mk_opts, r.vocab), 1, 1 << 22},
    {"--window", offsetof(struct mk_opts, r.window), 1, 1 << 24},
};
#define N_DIMS_OPTS (int)(sizeof dims_opts / sizeof dims_opts[0])

static int parse_mode(const char *v, enum moecl_qmode *m) {
    static const struct {
        const char *n;
        enum moecl_qmode m;
    } t[] = {{"affine", MOECL_QMODE_AFFINE},
             {"mxfp4", MOECL_QMODE_MXFP4},
             {"mxfp8", MOECL_QMODE_MXFP8},
             {"nvfp4", MOECL_QMODE_NVFP4},
             {"none", MOECL_QMODE_NONE}};
    for (size_t i = 0; v && i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(v, t[i].n)) {
            *m = t[i].m;
            return 0;
        }
    fprintf(stderr, "mkmodel: --mode: expected affine, mxfp4, mxfp8, nvfp4 or none, got \"%s\"\n",
            v ? v : "");
    return -1;
}

static int parse_args(int argc, char **argv, struct mk_opts *o) {
    memset(o, 0, sizeof(*o));
    moecl_recipe_shape_tiny(&o->r);
    o->r.fdtype = MOECL_DTYPE_BF16;
    o->max_shard_bytes = (uint64_t)5 << 30;
    o->tiktoken = "data/o200k_base.tiktoken";
    int dims_set[N_DIMS_OPTS] = {0};
    long long dims_val[N_DIMS_OPTS] = {0};
    int bits = 0, group = 0, have_mode = 0, have_dtype = 0;
    enum moecl_qmode mode = MOECL_QMODE_AFFINE;
    enum moecl_dtype dtype = MOECL_DTYPE_BF16;
    const char *like = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        int handled = 0;
        for (int k = 0; k < N_DIMS_OPTS; k++)
            if (!strcmp(a, dims_opts[k].name)) {
                if (parse_int(a, v, dims_opts[k].lo, dims_opts[k].hi, &x))
                    return -1;
                dims_set[k] = 1;
                dims_val[k] = x;
                handled = 1;
                i++;
            }
        if (handled)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--tiny")) {
            moecl_recipe_shape_tiny(&o->r);
        } else if (!strcmp(a, "--full")) {
            moecl_recipe_shape_full(&o->r);
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--dry-run")) {
            o->dry_run = 1;
        } else if (!strcmp(a, "--out") && v) {
            o->out = v, i++;
        } else if (!strcmp(a, "--tiktoken") && v) {
            o->tiktoken = v, o->tiktoken_explicit = 1, i++;
        } else if (!strcmp(a, "--no-tokenizer")) {
            o->tiktoken = NULL;
        } else if (!strcmp(a, "--like") && v) {
            like = v, i++;
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(a, v, 0, INT64_MAX, &x))
                return -1;
            o->seed = (uint64_t)x, i++;
        } else if (!strcmp(a, "--max-shard-bytes")) {
            if (parse_int(a, v, 1, INT64_MAX, &x))
                return -1;
            o->max_shard_bytes = (uint64_t)x, i++;
        } else if (!strcmp(a, "--bits")) {
            if (parse_int(a, v, 1, 16, &x))
                return -1;
            bits = (int)x, i++;
        } else if (!strcmp(a, "--group")) {
            if (parse_int(a, v, 1, 1024, &x))
                return -1;
            group = (int)x, i++;
        } else if (!strcmp(a, "--mode")) {
            if (parse_mode(v, &mode))
                return -1;
            have_mode = 1, i++;
        } else if (!strcmp(a, "--dtype")) {
            if (v && !strcmp(v, "bf16"))
                dtype = MOECL_DTYPE_BF16;
            else if (v && !strcmp(v, "f16"))
                dtype = MOECL_DTYPE_F16;
            else if (v && !strcmp(v, "f32"))
                dtype = MOECL_DTYPE_F32;
            else {
                fprintf(stderr, "mkmodel: --dtype: expected bf16, f16 or f32\n");
                return -1;
            }
            have_dtype = 1, i++;
        } else {
            fprintf(stderr, "mkmodel: unknown option or missing value: %s\n%s", a, usage);
            return -1;
        }
    }
    for (int k = 0; k < N_DIMS_OPTS; k++)
        if (dims_set[k])
            *(int *)(void *)((char *)o + dims_opts[k].offset) = (int)dims_val[k];
    if (!o->out) {
        fprintf(stderr, "mkmodel: --out DIR is required\n%s", usage);
        return -1;
    }

    if (moecl_recipe_set(&o->r, like, have_mode, mode, bits, group, have_dtype, dtype) !=
        MOECL_OK) {
        fprintf(stderr, "mkmodel: %s\n", moecl_last_error());
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ json files */

static int write_json(const char *dir, const char *file, cJSON *j) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *s = cJSON_Print(j);
    if (!s) {
        fprintf(stderr, "mkmodel: %s: out of memory\n", path);
        return -1;
    }
    FILE *f = fopen(path, "w");
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "mkmodel: %s: cannot write: %s\n", path, strerror(errno));
    free(s);
    return ok ? 0 : -1;
}

static cJSON *q_record(struct moecl_recipe_q q, int with_mode) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "group_size", q.group_size);
    cJSON_AddNumberToObject(r, "bits", q.bits);
    if (with_mode)
        cJSON_AddStringToObject(r, "mode", moecl_qmode_name(q.mode));
    return r;
}

static void add_entry(cJSON *quant, const struct mk_opts *o, enum moecl_recipe_module mod,
                      int layer) {
    enum moecl_recipe_entry e;
    struct moecl_recipe_q q = moecl_recipe_module_q(&o->r, mod, layer, &e);
    if (e == MOECL_RECIPE_ENTRY_NONE)
        return;
    char path[128];
    cJSON_AddItemToObject(quant, moecl_recipe_module_path(mod, layer, path, sizeof path),
                          q_record(q, e == MOECL_RECIPE_ENTRY_WITHMODE));
}

static cJSON *quantization_map(const struct mk_opts *o) {
    cJSON *q = q_record(o->r.base, o->r.base_has_mode);
    add_entry(q, o, MOECL_RMOD_EMBED, -1);
    for (int l = 0; l < o->r.n_layers; l++)
        for (int m = MOECL_RMOD_Q; m <= MOECL_RMOD_DOWN; m++)
            add_entry(q, o, (enum moecl_recipe_module)m, l);
    add_entry(q, o, MOECL_RMOD_LM_HEAD, -1);
    return q;
}

/* Float-valued fields are written with a decimal point ("7.0", not cJSON's "7"): transformers'
 * config validation rejects an int where the gpt-oss config has a float. */
static int write_config(const struct mk_opts *o) {
    cJSON *c = cJSON_CreateObject();
    const char *arch = "GptOssForCausalLM";
    cJSON_AddItemToObject(c, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON_AddBoolToObject(c, "attention_bias", 1);
    cJSON_AddRawToObject(c, "attention_dropout", "0.0");
    cJSON_AddNumberToObject(c, "eos_token_id", 200002);
    cJSON_AddNumberToObject(c, "experts_per_token", o->r.top_k);
    cJSON_AddNumberToObject(c, "head_dim", o->r.head_dim);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", o->r.hidden);
    cJSON_AddNumberToObject(c, "initial_context_length", 4096);
    cJSON_AddNumberToObject(c, "initializer_range", 0.02);
    cJSON_AddNumberToObject(c, "intermediate_size", o->r.intermediate);
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    for (int l = 0; l < o->r.n_layers; l++)
        cJSON_AddItemToArray(lt,
                             cJSON_CreateString(moecl_recipe_layer_sliding(l) ? "sliding_attention"
                                                                              : "full_attention"));
    cJSON_AddNumberToObject(c, "max_position_embeddings", 131072);
    cJSON_AddStringToObject(c, "model_type", "gpt_oss");
    cJSON_AddNumberToObject(c, "num_attention_heads", o->r.n_heads);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", o->r.top_k);
    cJSON_AddNumberToObject(c, "num_hidden_layers", o->r.n_layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", o->r.n_kv_heads);
    cJSON_AddNumberToObject(c, "num_local_experts", o->r.n_experts);
    cJSON_AddBoolToObject(c, "output_router_logits", 0);
    cJSON_AddNumberToObject(c, "pad_token_id", 199999);
    if (o->r.layout == MOECL_RECIPE_LAYOUT_MLX && o->r.base.mode != MOECL_QMODE_NONE) {
        cJSON_AddItemToObject(c, "quantization", quantization_map(o));
        cJSON_AddItemToObject(c, "quantization_config", quantization_map(o));
    } else if (o->r.layout == MOECL_RECIPE_LAYOUT_HF_MXFP4) {
        cJSON *qc = cJSON_AddObjectToObject(c, "quantization_config");
        const char *keep[] = {"model.layers.*.self_attn", "model.layers.*.mlp.router",
                              "model.embed_tokens", "lm_head"};
        cJSON_AddItemToObject(qc, "modules_to_not_convert", cJSON_CreateStringArray(keep, 4));
        cJSON_AddStringToObject(qc, "quant_method", "mxfp4");
    }
    cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-05);
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddRawToObject(rs, "beta_fast", "32.0");
    cJSON_AddRawToObject(rs, "beta_slow", "1.0");
    cJSON_AddRawToObject(rs, "factor", "32.0");
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 4096);
    cJSON_AddStringToObject(rs, "rope_type", "yarn");
    cJSON_AddBoolToObject(rs, "truncate", 0);
    cJSON_AddNumberToObject(c, "rope_theta", 150000);
    cJSON_AddNumberToObject(c, "router_aux_loss_coef", 0.9);
    cJSON_AddNumberToObject(c, "sliding_window", o->r.window);
    cJSON_AddRawToObject(c, "swiglu_limit", "7.0");
    cJSON_AddBoolToObject(c, "tie_word_embeddings", 0);
    if (o->r.layout == MOECL_RECIPE_LAYOUT_HF_BF16)
        cJSON_AddStringToObject(c, "torch_dtype", "bfloat16");
    cJSON_AddStringToObject(c, "transformers_version", "4.55.0.dev0");
    cJSON_AddBoolToObject(c, "use_cache", 1);
    cJSON_AddNumberToObject(c, "vocab_size", o->r.vocab);
    int rc = write_json(o->out, "config.json", c);
    cJSON_Delete(c);
    return rc;
}

static int write_generation_config(const struct mk_opts *o) {
    cJSON *g = cJSON_CreateObject();
    const int eos[3] = {200002, 199999, 200012};
    cJSON_AddNumberToObject(g, "bos_token_id", 199998);
    cJSON_AddBoolToObject(g, "do_sample", 1);
    cJSON_AddItemToObject(g, "eos_token_id", cJSON_CreateIntArray(eos, 3));
    cJSON_AddNumberToObject(g, "pad_token_id", 199999);
    cJSON_AddStringToObject(g, "transformers_version", "4.55.0.dev0");
    int rc = write_json(o->out, "generation_config.json", g);
    cJSON_Delete(g);
    return rc;
}

/* tokenizer.json (loader/tokenizer_json.c: what transformers' GptOssConverter builds from the
 * o200k rank file) and the tokenizer_config.json of gpt-oss (spec tokenizer-harmony.md §5). */
static int write_tokenizer(const struct mk_opts *o) {
    if (!o->tiktoken)
        return 0;
    if (!o->tiktoken_explicit && access(o->tiktoken, R_OK) != 0) {
        if (!o->quiet)
            fprintf(stderr, "mkmodel: %s not found: no tokenizer.json written\n", o->tiktoken);
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->out);
    if (moecl_tokenizer_json_write(o->tiktoken, path) != MOECL_OK) {
        fprintf(stderr, "mkmodel: %s\n", moecl_last_error());
        return -1;
    }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "bos_token", "<|startoftext|>");
    cJSON_AddBoolToObject(t, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(t, "eos_token", "<|return|>");
    cJSON_AddObjectToObject(t, "extra_special_tokens");
    const char *names[2] = {"input_ids", "attention_mask"};
    cJSON_AddItemToObject(t, "model_input_names", cJSON_CreateStringArray(names, 2));
    cJSON_AddNumberToObject(t, "model_max_length", 1e30);
    cJSON_AddStringToObject(t, "pad_token", "<|endoftext|>");
    cJSON_AddStringToObject(t, "tokenizer_class", "PreTrainedTokenizerFast");
    int rc = write_json(o->out, "tokenizer_config.json", t);
    cJSON_Delete(t);
    return rc;
}

static void shard_name(const struct mk_plan *p, int s, char *buf, size_t n) {
    if (p->n_shards == 1)
        snprintf(buf, n, "model.safetensors");
    else
        snprintf(buf, n, "model-%05d-of-%05d.safetensors", s + 1, p->n_shards);
}

static int cmp_name(const void *a, const void *b) {
    const struct mk_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int write_index(const struct mk_opts *o, const struct mk_plan *p) {
    const struct mk_tensor **sorted = malloc((size_t)p->n * sizeof(*sorted));
    if (!sorted)
        return -1;
    for (int i = 0; i < p->n; i++)
        sorted[i] = &p->t[i];
    qsort(sorted, (size_t)p->n, sizeof(*sorted), cmp_name);
    cJSON *j = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddNumberToObject(md, "total_size", (double)p->total_bytes);
    if (o->r.layout == MOECL_RECIPE_LAYOUT_MLX)
        cJSON_AddNumberToObject(md, "total_parameters", (double)p->total_params);
    cJSON *wm = cJSON_AddObjectToObject(j, "weight_map");
    for (int i = 0; i < p->n; i++) {
        char sn[64];
        shard_name(p, sorted[i]->shard, sn, sizeof sn);
        cJSON_AddStringToObject(wm, sorted[i]->name, sn);
    }
    free(sorted);
    int rc = write_json(o->out, "model.safetensors.index.json", j);
    cJSON_Delete(j);
    return rc;
}

/* ------------------------------------------------------------------ shards */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int sink_write(void *ctx, const void *data, size_t n) {
    return moecl_st_writer_write(ctx, data, n) == MOECL_OK ? 0 : -1;
}

static int write_shard(const struct mk_opts *o, const struct mk_plan *p, int s) {
    char name[64], path[4096];
    shard_name(p, s, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", o->out, name);
    struct moecl_st_writer *w = NULL;
    enum moecl_status st = moecl_st_writer_create(path, &w);
    if (st == MOECL_OK)
        st = moecl_st_writer_metadata(w, "format",
                                      o->r.layout == MOECL_RECIPE_LAYOUT_MLX ? "mlx" : "pt");
    for (int i = 0; i < p->n && st == MOECL_OK; i++)
        if (p->t[i].shard == s)
            st = moecl_st_writer_declare(w, p->t[i].name, p->t[i].dtype, p->t[i].n_dims,
                                         p->t[i].shape);
    if (st == MOECL_OK)
        st = moecl_st_writer_begin(w);
    for (int i = 0; i < p->n && st == MOECL_OK; i++) {
        if (p->t[i].shard != s)
            continue;
        st = moecl_st_writer_tensor_begin(w, p->t[i].name);
        if (st == MOECL_OK && mk_generate(o, &p->t[i], sink_write, w) != 0)
            st = MOECL_ERR_IO;
        if (st == MOECL_OK)
            st = moecl_st_writer_tensor_end(w);
    }
    if (st == MOECL_OK)
        st = moecl_st_writer_finish(w);
    moecl_st_writer_free(w);
    if (st != MOECL_OK) {
        fprintf(stderr, "mkmodel: %s\n", moecl_last_error());
        return -1;
    }
    return 0;
}

/* Removes model*.safetensors left by an earlier run (mlx-lm globs them all). */
static void remove_old_shards(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (!strncmp(e->d_name, "model", 5) && n > 12 &&
            !strcmp(e->d_name + n - 12, ".safetensors")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

int main(int argc, char **argv) {
    struct mk_opts o;
    if (parse_args(argc, argv, &o))
        return 2;
    if (!o.dry_run && mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkmodel: %s: cannot create: %s\n", o.out, strerror(errno));
        return 1;
    }
    struct mk_plan plan;
    if (mk_plan_build(&o, &plan)) {
        fprintf(stderr, "mkmodel: out of memory planning tensors\n");
        return 1;
    }
    if (!o.quiet)
        fprintf(stderr,
                "mkmodel: %d tensors, %.3f GB in %d shard(s), %" PRIu64
                " parameters, %.3f bits/weight\n",
                plan.n, plan.total_bytes / 1e9, plan.n_shards, plan.total_params,
                plan.total_bytes * 8.0 / (double)plan.total_params);
    if (o.dry_run) {
        printf("tensors %d\nshards %d\ntotal_bytes %" PRIu64 "\ntotal_parameters %" PRIu64
               "\nbits_per_weight %.4f\n",
               plan.n, plan.n_shards, plan.total_bytes, plan.total_params,
               plan.total_bytes * 8.0 / (double)plan.total_params);
        mk_plan_free(&plan);
        return 0;
    }
    remove_old_shards(o.out);
    double t0 = now_s();
    int rc = 0;
    for (int s = 0; s < plan.n_shards && rc == 0; s++) {
        rc = write_shard(&o, &plan, s);
        if (rc == 0 && !o.quiet)
            fprintf(stderr, "mkmodel: shard %d/%d written (%.1f s)\n", s + 1, plan.n_shards,
                    now_s() - t0);
    }
    if (rc == 0)
        rc = write_index(&o, &plan);
    if (rc == 0)
        rc = write_config(&o);
    if (rc == 0)
        rc = write_generation_config(&o);
    if (rc == 0)
        rc = write_tokenizer(&o);
    mk_plan_free(&plan);
    return rc ? 1 : 0;
}
