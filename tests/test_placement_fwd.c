/* Heterogeneous placement on the two PoCL devices `make test` provides (POCL_DEVICES="pthread
 * pthread"): every placement gives the single-device logits and greedy tokens, in prefill and
 * decode, through each hand-off path:
 *   - one context for both devices (same platform: event dependencies, no copies);
 *   - a context per device ($MOECL_CONTEXT_PER_DEVICE: the cross-platform path, user events
 *     completed by callbacks; zero-copy views so no bytes move);
 *   - a context per device with mirrors ($MOECL_WEIGHTS_COPY: the discrete-GPU path, copies
 *     through host memory, pinned);
 *   - a context per device with every host allocation pinned ($MOECL_PIN_HOST=1: mapped
 *     ALLOC_HOST_PTR buffers that the other context's views alias), with zero-copy weights
 *     and with mirrors.
 * Tolerances: against single-device moecl, max |d| <= 1e-5 * (max |logit| + 1) (the same kernels
 * on the same kind of device; the split sum is arithmetically identical); against the mlx-lm
 * fixture, the conformance suite's class (float32: max |d| <= 1e-3 * max |ref|). */
#include "test.h"

#include "model_internal.h"
#include "moecl.h"
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

static const char *fixture_dir(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

struct run {
    float *prefill; /* [T][V] */
    float *decode;  /* [T][V] */
    int32_t greedy[24];
    uint64_t moved_decode; /* bytes moved over the decode pass */
    int handoffs[2];
    int pipelined;              /* the context set up micro-batch pipelining */
    uint64_t handoff_bytes;     /* per split layer and token: xn, ids, wts out, the sum back */
    uint64_t host_bufs, pinned; /* host allocations of unified buffers, the pinned part */
    char placement[512];
};

static void run_free(struct run *r) {
    free(r->prefill);
    free(r->decode);
    memset(r, 0, sizeof *r);
}

/* Loads `dir` with the placement and evaluates tokens: prefill (all logits, chunk 7 so that
 * chunks cross the window), decode one by one, then 24 greedy steps after the first 8 tokens.
 * Returns 0 or -1 (failure recorded). */
static int run_placement(const char *dir, const char *device, const char *place, int n_cpu_moe,
                         const int32_t *tokens, int T, struct run *r) {
    memset(r, 0, sizeof *r);
    struct moecl_model_options mo = {device, 0, place, n_cpu_moe, MOECL_NUMERICS_DEFAULT};
    struct moecl_model *m = NULL;
    struct moecl_context *c = NULL;
    if (moecl_model_load(dir, &mo, &m) != MOECL_OK) {
        moecl_test_fail(__FILE__, __LINE__, "load %s: %s", place ? place : "", moecl_last_error());
        return -1;
    }
    snprintf(r->placement, sizeof r->placement, "%s", moecl_model_placement(m));
    int V = moecl_model_vocab_size(m);
    r->prefill = malloc((size_t)T * (size_t)V * sizeof(float));
    r->decode = malloc((size_t)T * (size_t)V * sizeof(float));
    /* chunk 7 crosses the window; with micro-batches of 4 ($MOECL_MICRO_BATCH), chunks of 16
     * hold four, the last chunk (8 of 40) two */
    const char *mbe = getenv("MOECL_MICRO_BATCH");
    struct moecl_context_options co = {mbe && atoi(mbe) > 0 ? 16 : 7, 0, 1, MOECL_KV_F32, 0};
    int rc = -1;
    if (!r->prefill || !r->decode || moecl_context_create(m, T + 32, &co, &c) != MOECL_OK ||
        moecl_context_eval_all(c, tokens, T, r->prefill) != MOECL_OK) {
        moecl_test_fail(__FILE__, __LINE__, "prefill %s: %s", r->placement, moecl_last_error());
        goto done;
    }
    r->pipelined = c->mbs != NULL;
    {
        const struct moecl_config *cfg = &m->ckpt->config;
        r->handoff_bytes = (uint64_t)(2 * cfg->hidden_size + 2 * cfg->n_experts_per_tok) * 4;
    }
    moecl_context_reset(c);
    struct moecl_memory_report rep;
    if (moecl_context_memory_report(c, &rep) != MOECL_OK)
        goto done;
    uint64_t moved0 = rep.moved_bytes;
    for (int t = 0; t < T; t++) {
        if (moecl_context_eval(c, tokens + t, 1) != MOECL_OK) {
            moecl_test_fail(__FILE__, __LINE__, "decode %s: %s", r->placement,
                            moecl_context_last_error(c));
            goto done;
        }
        memcpy(r->decode + (size_t)t * V, moecl_context_logits(c), (size_t)V * sizeof(float));
    }
    if (moecl_context_memory_report(c, &rep) != MOECL_OK)
        goto done;
    r->moved_decode = rep.moved_bytes - moved0;
    r->handoffs[0] = rep.handoffs_per_step[0];
    r->handoffs[1] = rep.handoffs_per_step[1];
    for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
        r->host_bufs += rep.host_buffer_bytes[k];
    r->pinned = rep.host_pinned_bytes;
    moecl_context_reset(c);
    if (moecl_context_eval(c, tokens, 8) != MOECL_OK)
        goto done;
    for (int s = 0; s < 24; s++) {
        const float *l = moecl_context_logits(c);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[best])
                best = v;
        r->greedy[s] = best;
        if (moecl_context_eval(c, &r->greedy[s], 1) != MOECL_OK)
            goto done;
    }
    rc = 0;
done:
    moecl_context_release(c);
    moecl_model_release(m);
    return rc;
}

static double max_abs(const float *a, int n, double *max_ref) {
    double m = 0;
    for (int i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    if (max_ref)
        *max_ref = m;
    return m;
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d != d ? INFINITY : d;
    }
    return m;
}

struct case_ {
    const char *device, *place; /* "{A}" and "{B}" stand for the two devices */
    int n_cpu_moe;              /* != 0: device is NULL, meaning the one that is not "cpu" */
    int split;                  /* some layer has attention and experts on different devices */
    int one_attn;               /* every layer's attention on one device */
};

/* tmpl with {A} and {B} replaced. */
static const char *subst(const char *tmpl, const char *a, const char *b, char *out, size_t n) {
    if (!tmpl)
        return NULL;
    size_t len = 0;
    out[0] = 0;
    for (const char *p = tmpl; *p && len + 1 < n;) {
        if (!strncmp(p, "{A}", 3) || !strncmp(p, "{B}", 3)) {
            len += (size_t)snprintf(out + len, n - len, "%s", p[1] == 'A' ? a : b);
            p += 3;
        } else {
            out[len++] = *p++;
            out[len] = 0;
        }
    }
    return out;
}

/* Every placement against single-device, in one of the three hand-off modes. The two devices
 * are pocl:0 and pocl:1, or $MOECL_PLACE_DEVICES ("nvidia:0,pocl:0" on the NVIDIA machine). */
static void check_placements(const char *mode) {
    char A[64] = "pocl:0", B[64] = "pocl:1";
    const char *env = getenv("MOECL_PLACE_DEVICES");
    if (env && strchr(env, ',')) {
        snprintf(A, sizeof A, "%.*s", (int)(strchr(env, ',') - env), env);
        snprintf(B, sizeof B, "%s", strchr(env, ',') + 1);
    }
    struct moecl_device_info *list = NULL;
    int n_list = 0, ia = -1, ib = -1, icpu = -1;
    if (moecl_devices_list(&list, &n_list) != MOECL_OK || n_list < 2) {
        moecl_devices_free(list);
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    }
    int ok = moecl_device_resolve(list, n_list, A, &ia) == MOECL_OK &&
             moecl_device_resolve(list, n_list, B, &ib) == MOECL_OK;
    if (moecl_device_resolve(list, n_list, "cpu", &icpu) != MOECL_OK)
        icpu = -1;
    int both_unified = ok && list[ia].host_unified_memory && list[ib].host_unified_memory;
    moecl_devices_free(list);
    REQUIRE(ok);
    const char *not_cpu = icpu == ia ? B : A;
    const char *fx = "affine_b4_g64";
    char ref_path[4200];
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", fixture_dir(fx));
    struct moecl_st_file *ref = NULL;
    REQUIRE(moecl_st_open(ref_path, 0, &ref) == MOECL_OK);
    const struct moecl_tensor *tt = moecl_st_find(ref, "tokens");
    const struct moecl_tensor *pre = moecl_st_find(ref, "prefill_logits");
    const struct moecl_tensor *dec = moecl_st_find(ref, "decode_logits");
    REQUIRE(tt && pre && dec && tt->dtype == MOECL_DTYPE_I32);
    int T = (int)tt->shape[0];
    const int32_t *tokens = tt->data;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", fixture_dir(fx));

    struct run base;
    if (run_placement(dir, A, NULL, 0, tokens, T, &base) != 0) {
        run_free(&base);
        moecl_st_close(ref);
        return;
    }
    int V = (int)pre->shape[1];
    size_t TV = (size_t)T * (size_t)V;
    double max_ref = 0;
    max_abs(pre->data, (int)TV, &max_ref);
    CHECK(max_diff(base.prefill, pre->data, (int)TV) <= 1e-3 * max_ref);

    /* The fixture has 4 layers. */
    static const struct case_ cases[] = {
        {"{B}", NULL, 0, 0, 1},
        {"{A}", "attn={A},experts={B}", 0, 1, 1},
        {"{A}", "attn={B},experts={A}", 0, 1, 1},
        {"{A}", "experts[1-2]={B},attn[3]={B}", 0, 1, 0},
        {"{B}", "attn[0-1]={A}", 0, 1, 0},
        {"{A}", "embed={B},lm_head={B}", 0, 0, 1},
        {NULL, "embed=cpu", 2, 1, 1}, /* --n-cpu-moe 2 */
        {NULL, NULL, -1, 1, 1},       /* --cpu-moe */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        char dev[64], place[256];
        const char *device =
            cases[i].device ? subst(cases[i].device, A, B, dev, sizeof dev) : not_cpu;
        if (run_placement(dir, device, subst(cases[i].place, A, B, place, sizeof place),
                          cases[i].n_cpu_moe, tokens, T, &r) != 0) {
            run_free(&r);
            continue;
        }
        double dp = max_diff(r.prefill, base.prefill, (int)TV);
        double dd = max_diff(r.decode, base.decode, (int)TV);
        double dref = max_diff(r.decode, dec->data, (int)TV);
        int same_greedy = memcmp(r.greedy, base.greedy, sizeof r.greedy) == 0;
        printf("  %-6s %-70s prefill %.3g decode %.3g (ref %.3g) greedy %s, moved %llu B in "
               "decode, hand-offs/step event %d host %d\n",
               mode, r.placement, dp, dd, dref, same_greedy ? "same" : "DIFFERENT",
               (unsigned long long)r.moved_decode, r.handoffs[0], r.handoffs[1]);
        if (!(dp <= 1e-5 * (max_ref + 1)) || !(dd <= 1e-5 * (max_ref + 1)))
            moecl_test_fail(__FILE__, __LINE__,
                            "%s %s: logits differ from single-device: "
                            "prefill %.3g decode %.3g",
                            mode, r.placement, dp, dd);
        if (!(dref <= 1e-3 * max_ref))
            moecl_test_fail(__FILE__, __LINE__, "%s %s: decode logits off the mlx-lm reference",
                            mode, r.placement);
        if (!same_greedy)
            moecl_test_fail(__FILE__, __LINE__, "%s %s: greedy tokens differ", mode, r.placement);
        /* A split layer has hand-offs; the copy mode moves bytes for them. */
        if (cases[i].split)
            CHECK(r.handoffs[0] + r.handoffs[1] >= 2);
        if (strstr(mode, "copy") && cases[i].split)
            CHECK(r.moved_decode > 0);
        /* attention on A, every layer's experts on B: in decode, per token and layer, the
         * hand-off and the hand-back and nothing else, each copied device -> host -> device */
        if (strstr(mode, "copy") && i == 1)
            CHECK_EQ(r.moved_decode, (uint64_t)T * 4 * 2 * r.handoff_bytes);
        /* pipelining applies where every layer's attention is on one device and some
         * experts are elsewhere */
        if (!strncmp(mode, "pipe", 4))
            CHECK_EQ(r.pipelined, cases[i].split && cases[i].one_attn);
        else
            CHECK_EQ(r.pipelined, 0);
        if (!strstr(mode, "copy") && both_unified)
            CHECK_EQ(r.moved_decode, 0); /* zero-copy views: nothing moves */
        /* pinned host memory: every host allocation with $MOECL_PIN_HOST=1, and every one of
         * a buffer a discrete device (the mirrors of the copy modes) uses; none otherwise */
        if (strstr(mode, "pin") && (!strstr(mode, "copy") || r.handoffs[1] > 0))
            CHECK(r.pinned > 0); /* mirrors alone on one device need no host allocation */
        if (strstr(mode, "pin") || strstr(mode, "copy"))
            CHECK_EQ(r.pinned, r.host_bufs);
        else if (both_unified)
            CHECK_EQ(r.pinned, 0);
        run_free(&r);
    }
    run_free(&base);
    moecl_st_close(ref);
}

TEST(placement_fwd_same_context) {
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
    unsetenv("MOECL_WEIGHTS_COPY");
    check_placements("event");
}

TEST(placement_fwd_context_per_device) {
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    unsetenv("MOECL_WEIGHTS_COPY");
    check_placements("host");
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
}

TEST(placement_fwd_mirrors_and_copies) {
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    setenv("MOECL_WEIGHTS_COPY", "1", 1);
    check_placements("copy");
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
    unsetenv("MOECL_WEIGHTS_COPY");
}

/* Every host allocation pinned memory of one context, aliased by the other's views. */
TEST(placement_fwd_pinned_host) {
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    setenv("MOECL_PIN_HOST", "1", 1);
    unsetenv("MOECL_WEIGHTS_COPY");
    check_placements("pin");
    unsetenv("MOECL_PIN_HOST");
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
}

/* Pinned host memory with mirrors, micro-batches pipelined (the discrete-GPU prefill path). */
TEST(placement_fwd_pinned_copies_pipelined) {
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    setenv("MOECL_PIN_HOST", "1", 1);
    setenv("MOECL_WEIGHTS_COPY", "1", 1);
    setenv("MOECL_MICRO_BATCH", "4", 1);
    check_placements("pipe-pin-copy");
    unsetenv("MOECL_MICRO_BATCH");
    unsetenv("MOECL_WEIGHTS_COPY");
    unsetenv("MOECL_PIN_HOST");
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
}

/* Prefill in micro-batches of 4 rows pipelined across the two devices, one context. */
TEST(placement_fwd_pipelined) {
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
    unsetenv("MOECL_WEIGHTS_COPY");
    setenv("MOECL_MICRO_BATCH", "4", 1);
    check_placements("pipe");
    unsetenv("MOECL_MICRO_BATCH");
}

/* The same through host copies (a context per device, mirrors). */
TEST(placement_fwd_pipelined_copies) {
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    setenv("MOECL_WEIGHTS_COPY", "1", 1);
    setenv("MOECL_MICRO_BATCH", "4", 1);
    check_placements("pipe-copy");
    unsetenv("MOECL_MICRO_BATCH");
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
    unsetenv("MOECL_WEIGHTS_COPY");
}
