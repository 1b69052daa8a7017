/* Placement spec parsing and description. */
#include "placement.h"

#include "moecl_error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int moecl_placement_default_device(const struct moecl_device_info *devs, int n_devs) {
    for (int i = 0; i < n_devs; i++)
        if (devs[i].type == MOECL_DEVICE_GPU)
            return i;
    for (int i = 0; i < n_devs; i++)
        if (devs[i].type == MOECL_DEVICE_CPU)
            return i;
    return 0;
}

enum moecl_status moecl_placement_init(struct moecl_placement *p, int n_layers, int device) {
    memset(p, 0, sizeof *p);
    if (n_layers <= 0 || n_layers > 4096)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "placement: %d layers", n_layers);
    p->attn = malloc((size_t)n_layers * sizeof *p->attn);
    p->experts = malloc((size_t)n_layers * sizeof *p->experts);
    if (!p->attn || !p->experts) {
        moecl_placement_free(p);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "placement: out of host memory");
    }
    p->n_layers = n_layers;
    p->embed = p->lm_head = device;
    for (int i = 0; i < n_layers; i++)
        p->attn[i] = p->experts[i] = device;
    return MOECL_OK;
}

void moecl_placement_free(struct moecl_placement *p) {
    if (!p)
        return;
    free(p->attn);
    free(p->experts);
    p->attn = p->experts = NULL;
}

/* Parses "[A-B]" or "[A]" at *s (after the key); sets *lo and *hi. */
static int parse_range(const char *s, const char *end, int *lo, int *hi) {
    if (s == end) {
        *lo = -1;
        *hi = -1;
        return 0;
    }
    if (*s != '[' || end[-1] != ']')
        return -1;
    char buf[64];
    size_t len = (size_t)(end - s - 2);
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s + 1, len);
    buf[len] = 0;
    char *e1 = NULL;
    long a = strtol(buf, &e1, 10);
    if (e1 == buf || a < 0)
        return -1;
    long b = a;
    if (*e1 == '-') {
        char *e2 = NULL;
        b = strtol(e1 + 1, &e2, 10);
        if (e2 == e1 + 1 || *e2 != 0)
            return -1;
    } else if (*e1 != 0) {
        return -1;
    }
    if (b < a)
        return -1;
    *lo = (int)a;
    *hi = (int)b;
    return 0;
}

enum moecl_status moecl_placement_apply(struct moecl_placement *p, const char *spec,
                                        const struct moecl_device_info *devs, int n_devs) {
    if (!spec)
        return MOECL_OK;
    struct moecl_placement t;
    enum moecl_status st = moecl_placement_init(&t, p->n_layers, 0);
    if (st != MOECL_OK)
        return st;
    t.embed = p->embed;
    t.lm_head = p->lm_head;
    memcpy(t.attn, p->attn, (size_t)p->n_layers * sizeof *t.attn);
    memcpy(t.experts, p->experts, (size_t)p->n_layers * sizeof *t.experts);

    const char *s = spec;
    while (*s) {
        while (*s == ',' || isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        int elen = (int)(end - s);
        if (!eq || eq == s || eq + 1 == end) {
            st = moecl_error_set(MOECL_ERR_PLACEMENT,
                                 "--place entry '%.*s': expected KEY=DEVICE (keys: all, attn, "
                                 "attn[A-B], experts, experts[A-B], embed, lm_head)",
                                 elen, s);
            goto fail;
        }
        char dev_spec[64];
        int dlen = (int)(end - eq - 1);
        if (dlen >= (int)sizeof dev_spec) {
            st = moecl_error_set(MOECL_ERR_PLACEMENT, "--place entry '%.*s': device name too long",
                                 elen, s);
            goto fail;
        }
        memcpy(dev_spec, eq + 1, (size_t)dlen);
        dev_spec[dlen] = 0;
        int dev = -1;
        st = moecl_device_resolve(devs, n_devs, dev_spec, &dev);
        if (st != MOECL_OK) {
            st = moecl_error_prefix(MOECL_ERR_PLACEMENT, "--place entry '%.*s': ", elen, s);
            goto fail;
        }
        const char *key_end = eq;
        const char *br = memchr(s, '[', (size_t)(eq - s));
        const char *name_end = br ? br : key_end;
        size_t klen = (size_t)(name_end - s);
        int lo = -1, hi = -1;
        if (parse_range(name_end, key_end, &lo, &hi) != 0) {
            st = moecl_error_set(MOECL_ERR_PLACEMENT,
                                 "--place entry '%.*s': bad layer range (use [A] or [A-B])", elen,
                                 s);
            goto fail;
        }
        if (lo >= 0 && hi >= t.n_layers) {
            st = moecl_error_set(MOECL_ERR_PLACEMENT,
                                 "--place entry '%.*s': layer %d out of range (the model has %d "
                                 "layers, 0-%d)",
                                 elen, s, hi, t.n_layers, t.n_layers - 1);
            goto fail;
        }
        int from = lo >= 0 ? lo : 0, to = lo >= 0 ? hi : t.n_layers - 1;
#define KEY(k) (klen == strlen(k) && strncmp(s, k, klen) == 0)
        if (KEY("attn") || KEY("experts")) {
            int *arr = KEY("attn") ? t.attn : t.experts;
            for (int i = from; i <= to; i++)
                arr[i] = dev;
        } else if (lo < 0 && KEY("all")) {
            t.embed = t.lm_head = dev;
            for (int i = 0; i < t.n_layers; i++)
                t.attn[i] = t.experts[i] = dev;
        } else if (lo < 0 && (KEY("embed") || KEY("embeddings"))) {
            t.embed = dev;
        } else if (lo < 0 && (KEY("lm_head") || KEY("output"))) {
            t.lm_head = dev;
        } else {
            st = moecl_error_set(MOECL_ERR_PLACEMENT,
                                 "--place entry '%.*s': unknown key '%.*s' (keys: all, attn, "
                                 "attn[A-B], experts, experts[A-B], embed, lm_head)",
                                 elen, s, (int)(key_end - s), s);
            goto fail;
        }
#undef KEY
        s = end;
    }
    moecl_placement_free(p);
    *p = t;
    return MOECL_OK;
fail:
    moecl_placement_free(&t);
    return st;
}

enum moecl_status moecl_placement_cpu_moe(struct moecl_placement *p, int n_first,
                                          const struct moecl_device_info *devs, int n_devs) {
    int cpu = -1;
    enum moecl_status st = moecl_device_resolve(devs, n_devs, "cpu", &cpu);
    if (st != MOECL_OK)
        return moecl_error_prefix(MOECL_ERR_PLACEMENT, "--cpu-moe/--n-cpu-moe: ");
    if (n_first > p->n_layers)
        return moecl_error_set(MOECL_ERR_PLACEMENT, "--n-cpu-moe %d: the model has only %d layers",
                               n_first, p->n_layers);
    int n = n_first < 0 ? p->n_layers : n_first;
    for (int i = 0; i < n; i++)
        p->experts[i] = cpu;
    return MOECL_OK;
}

int moecl_placement_devices(const struct moecl_placement *p, int *out, int max) {
    int n = 0;
    for (int d = 0; d < 1024 && n < max; d++) {
        int used = p->embed == d || p->lm_head == d;
        for (int i = 0; !used && i < p->n_layers; i++)
            used = p->attn[i] == d || p->experts[i] == d;
        if (used)
            out[n++] = d;
    }
    return n;
}

static size_t describe_runs(char *buf, size_t n, size_t len, const char *key, const int *arr,
                            int n_layers, const struct moecl_device_info *devs) {
    int same = 1;
    for (int i = 1; i < n_layers; i++)
        same = same && arr[i] == arr[0];
    if (same) {
        if (len < n)
            len += (size_t)snprintf(buf + len, n - len, " %s=%s", key, devs[arr[0]].name);
        return len;
    }
    for (int i = 0; i < n_layers;) {
        int j = i;
        while (j + 1 < n_layers && arr[j + 1] == arr[i])
            j++;
        if (len < n)
            len +=
                (size_t)snprintf(buf + len, n - len, " %s[%d-%d]=%s", key, i, j, devs[arr[i]].name);
        i = j + 1;
    }
    return len;
}

void moecl_placement_describe(const struct moecl_placement *p, const struct moecl_device_info *devs,
                              char *buf, size_t n) {
    if (!n)
        return;
    size_t len = (size_t)snprintf(buf, n, "embed=%s", devs[p->embed].name);
    len = describe_runs(buf, n, len, "attn", p->attn, p->n_layers, devs);
    len = describe_runs(buf, n, len, "experts", p->experts, p->n_layers, devs);
    if (len < n)
        snprintf(buf + len, n - len, " lm_head=%s", devs[p->lm_head].name);
}
