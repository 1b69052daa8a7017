/* Test helper implementation; see loader_build.h. */
#include "loader_build.h"

#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct tb_model tb_tiny = {64, 64, 2, 4, 2, 16, 128, 4, 2};
const struct tb_model tb_20b = {2880, 2880, 24, 64, 8, 64, 201088, 32, 4};

static size_t dtype_bytes(const char *d) {
    if (!strcmp(d, "F32") || !strcmp(d, "U32") || !strcmp(d, "I32"))
        return 4;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "U16") || !strcmp(d, "I16"))
        return 2;
    if (!strcmp(d, "F64") || !strcmp(d, "U64") || !strcmp(d, "I64"))
        return 8;
    return 1;
}

void tb_init(struct tb_ckpt *c, int sparse) {
    memset(c, 0, sizeof *c);
    c->sparse = sparse;
    c->seed = 0x1234567u;
}

void tb_free(struct tb_ckpt *c) {
    for (int i = 0; i < c->n; i++)
        free(c->t[i].data);
    free(c->t);
    memset(c, 0, sizeof *c);
}

struct tb_tensor *tb_add(struct tb_ckpt *c, const char *name, const char *dtype, int n_dims,
                         int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->t = realloc(c->t, (size_t)c->cap * sizeof *c->t);
    }
    struct tb_tensor *t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->n_dims = n_dims;
    int64_t d[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        t->shape[i] = d[i];
        n *= (size_t)d[i];
    }
    size_t es = dtype_bytes(dtype);
    t->n_bytes = n * es;
    if (!c->sparse) {
        t->data = malloc(t->n_bytes ? t->n_bytes : 1);
        for (size_t i = 0; i < n; i++) {
            uint64_t r = moecl_test_rand(&c->seed);
            if (!strcmp(dtype, "BF16")) {
                float f = (float)((double)(r >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
                uint32_t u;
                memcpy(&u, &f, 4);
                uint16_t h = (uint16_t)(u >> 16);
                memcpy(t->data + 2 * i, &h, 2);
            } else if (!strcmp(dtype, "F32")) {
                float f = (float)((double)(r >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
                memcpy(t->data + 4 * i, &f, 4);
            } else {
                memcpy(t->data + es * i, &r, es);
            }
        }
    }
    return t;
}

struct tb_tensor *tb_find(struct tb_ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name))
            return &c->t[i];
    return NULL;
}

void tb_remove(struct tb_ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) {
            free(c->t[i].data);
            memmove(&c->t[i], &c->t[i + 1], (size_t)(c->n - i - 1) * sizeof *c->t);
            c->n--;
            return;
        }
}

void tb_linear(struct tb_ckpt *c, const char *path, int E, int64_t rows, int64_t cols, int bits,
               int gs, const char *mode, int bias) {
    char n[200];
    int nd = E ? 3 : 2;
    int64_t s[4] = {E, 0, 0, 0};
    s[nd - 2] = rows;
    snprintf(n, sizeof n, "%s.weight", path);
    if (!bits) {
        s[nd - 1] = cols;
        tb_add(c, n, "BF16", nd, s[0], s[1], s[2], 0);
    } else {
        int affine = !strcmp(mode, "affine");
        s[nd - 1] = cols * bits / 32;
        tb_add(c, n, "U32", nd, s[0], s[1], s[2], 0);
        s[nd - 1] = cols / gs;
        snprintf(n, sizeof n, "%s.scales", path);
        tb_add(c, n, affine ? "BF16" : "U8", nd, s[0], s[1], s[2], 0);
        if (affine) {
            snprintf(n, sizeof n, "%s.biases", path);
            tb_add(c, n, "BF16", nd, s[0], s[1], s[2], 0);
        }
    }
    if (bias) {
        snprintf(n, sizeof n, "%s.bias", path);
        if (E)
            tb_add(c, n, "BF16", 2, E, rows, 0, 0);
        else
            tb_add(c, n, "BF16", 1, rows, 0, 0, 0);
    }
}

static void common(struct tb_ckpt *c, const struct tb_model *m, int bits, int gs, const char *mode,
                   int router_bits) {
    char p[200];
    int64_t H = m->hidden, qw = (int64_t)m->heads * m->head_dim, kvw = (int64_t)m->kv * m->head_dim;
    tb_linear(c, "model.embed_tokens", 0, m->vocab, H, bits, gs, mode, 0);
    tb_linear(c, "lm_head", 0, m->vocab, H, bits, gs, mode, 0);
    tb_add(c, "model.norm.weight", "BF16", 1, H, 0, 0, 0);
    for (int l = 0; l < m->layers; l++) {
        snprintf(p, sizeof p, "model.layers.%d.input_layernorm.weight", l);
        tb_add(c, p, "BF16", 1, H, 0, 0, 0);
        snprintf(p, sizeof p, "model.layers.%d.post_attention_layernorm.weight", l);
        tb_add(c, p, "BF16", 1, H, 0, 0, 0);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.sinks", l);
        tb_add(c, p, "BF16", 1, m->heads, 0, 0, 0);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.q_proj", l);
        tb_linear(c, p, 0, qw, H, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.k_proj", l);
        tb_linear(c, p, 0, kvw, H, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.v_proj", l);
        tb_linear(c, p, 0, kvw, H, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.o_proj", l);
        tb_linear(c, p, 0, H, qw, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.mlp.router", l);
        if (router_bits)
            tb_linear(c, p, 0, m->experts, H, router_bits, 64, "affine", 1);
        else
            tb_linear(c, p, 0, m->experts, H, bits, gs, mode, 1);
    }
}

void tb_build_mlx(struct tb_ckpt *c, const struct tb_model *m, int bits, int gs, const char *mode,
                  int router_bits) {
    char p[200];
    common(c, m, bits, gs, mode, router_bits);
    for (int l = 0; l < m->layers; l++) {
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.gate_proj", l);
        tb_linear(c, p, m->experts, m->inter, m->hidden, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.up_proj", l);
        tb_linear(c, p, m->experts, m->inter, m->hidden, bits, gs, mode, 1);
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.down_proj", l);
        tb_linear(c, p, m->experts, m->hidden, m->inter, bits, gs, mode, 1);
    }
}

void tb_build_hf(struct tb_ckpt *c, const struct tb_model *m, int mxfp4) {
    char p[200];
    common(c, m, 0, 0, NULL, 0);
    int64_t E = m->experts, H = m->hidden, I = m->inter;
    for (int l = 0; l < m->layers; l++) {
        if (mxfp4) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.gate_up_proj_blocks", l);
            tb_add(c, p, "U8", 4, E, 2 * I, H / 32, 16);
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.gate_up_proj_scales", l);
            struct tb_tensor *s = tb_add(c, p, "U8", 3, E, 2 * I, H / 32, 0);
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.down_proj_blocks", l);
            tb_add(c, p, "U8", 4, E, H, I / 32, 16);
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.down_proj_scales", l);
            struct tb_tensor *s2 = tb_add(c, p, "U8", 3, E, H, I / 32, 0);
            for (size_t i = 0; s->data && i < s->n_bytes; i++)
                s->data[i] = (unsigned char)(120 + s->data[i] % 15);
            for (size_t i = 0; s2->data && i < s2->n_bytes; i++)
                s2->data[i] = (unsigned char)(120 + s2->data[i] % 15);
        } else {
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.gate_up_proj", l);
            tb_add(c, p, "BF16", 3, E, H, 2 * I, 0);
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.down_proj", l);
            tb_add(c, p, "BF16", 3, E, I, H, 0);
        }
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.gate_up_proj_bias", l);
        tb_add(c, p, "BF16", 2, E, 2 * I, 0, 0);
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.down_proj_bias", l);
        tb_add(c, p, "BF16", 2, E, H, 0, 0);
    }
}

char *tb_config(const struct tb_model *m, const char *extra) {
    char *s = NULL;
    if (asprintf(&s,
                 "{\"model_type\": \"gpt_oss\", \"hidden_size\": %d, \"intermediate_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
                 "\"num_local_experts\": %d, \"num_experts_per_tok\": %d, \"rms_norm_eps\": "
                 "1e-05, \"sliding_window\": 128, \"rope_theta\": 150000, \"rope_scaling\": "
                 "{\"beta_fast\": 32.0, \"beta_slow\": 1.0, \"factor\": 32.0, "
                 "\"original_max_position_embeddings\": 4096, \"rope_type\": \"yarn\", "
                 "\"truncate\": false}%s}",
                 m->hidden, m->inter, m->layers, m->heads, m->kv, m->head_dim, m->vocab, m->experts,
                 m->topk, extra ? extra : "") < 0)
        return NULL;
    return s;
}

int tb_write(const struct tb_ckpt *c, const char *path, int shard) {
    size_t cap = 4096 + (size_t)c->n * 256, len = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\": {\"format\": \"mlx\"}");
    for (int i = 0; i < c->n; i++) {
        const struct tb_tensor *t = &c->t[i];
        if (shard >= 0 && t->shard != shard)
            continue;
        len += (size_t)snprintf(h + len, cap - len, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [",
                                t->name, t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? ", " : "",
                                    (long long)t->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "], \"data_offsets\": [%llu, %llu]}",
                                (unsigned long long)off, (unsigned long long)(off + t->n_bytes));
        off += t->n_bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    unsigned char n8[8];
    for (int i = 0; i < 8; i++)
        n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    free(h);
    for (int i = 0; ok && i < c->n; i++) {
        const struct tb_tensor *t = &c->t[i];
        if ((shard >= 0 && t->shard != shard) || !t->data)
            continue;
        ok = fwrite(t->data, 1, t->n_bytes, f) == t->n_bytes;
    }
    if (ok && c->sparse)
        ok = ftruncate(fileno(f), (off_t)(8 + len + off)) == 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int tb_write_dir(struct tb_ckpt *c, const char *dir, const char *config, int n_shards,
                 int with_index) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (config && moecl_test_write_file(path, config, strlen(config)) != 0)
        return -1;
    if (n_shards <= 1) {
        for (int i = 0; i < c->n; i++)
            c->t[i].shard = 0;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        return tb_write(c, path, 0);
    }
    for (int i = 0; i < c->n; i++)
        c->t[i].shard = i % n_shards;
    for (int s = 0; s < n_shards; s++) {
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
        if (tb_write(c, path, s) != 0)
            return -1;
    }
    if (!with_index)
        return 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < c->n; i++)
        fprintf(f, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"", i ? ", " : "", c->t[i].name,
                c->t[i].shard + 1, n_shards);
    fprintf(f, "}}");
    return fclose(f) == 0 ? 0 : -1;
}
