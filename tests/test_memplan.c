/* The memory plan (scheduler/memplan.h): weight bytes against the files' tensors, KV bytes
 * against the spec's formula (window on sliding layers, n_ctx or the ring on full ones, half
 * for f16), the single-device plan against the buffers a real context holds on PoCL, placement
 * splits, and the verdict's messages. */
#include "test.h"

#include "checkpoint.h"
#include "loader_internal.h"
#include "memplan.h"
#include "model_internal.h"
#include "moecl.h"
#include "placement.h"
#include "recipe.h"

#include <stdlib.h>
#include <string.h>

static const char *fixture(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

/* Two made-up devices for verdicts: a 4 GB GPU with a 1 GB buffer limit and a host-unified
 * CPU device of 64 GB. */
static void fake_devices(struct moecl_device_info *d) {
    memset(d, 0, 2 * sizeof *d);
    snprintf(d[0].name, sizeof d[0].name, "gpu:0");
    snprintf(d[0].device_name, sizeof d[0].device_name, "Small GPU");
    d[0].index = 0;
    d[0].type = MOECL_DEVICE_GPU;
    d[0].global_mem_bytes = 4ull << 30;
    d[0].max_alloc_bytes = 1ull << 30;
    snprintf(d[1].name, sizeof d[1].name, "cpu:0");
    snprintf(d[1].device_name, sizeof d[1].device_name, "Big CPU");
    d[1].index = 1;
    d[1].type = MOECL_DEVICE_CPU;
    d[1].global_mem_bytes = 64ull << 30;
    d[1].max_alloc_bytes = 16ull << 30;
    d[1].host_unified_memory = 1;
}

static uint64_t weights_of(const struct moecl_memplan_device *d) {
    return d->bytes[MOECL_MEM_ATTN_WEIGHTS] + d->bytes[MOECL_MEM_EXPERT_WEIGHTS] +
           d->bytes[MOECL_MEM_EMBED] + d->bytes[MOECL_MEM_LM_HEAD] + d->bytes[MOECL_MEM_ROUTER] +
           d->bytes[MOECL_MEM_NORMS_BIASES];
}

/* Every MLX-layout fixture: the classified weight bytes add up to the files' tensor bytes,
 * and the classes hold what their names say (expert bytes = the experts' tensors). */
TEST(memplan_weights_match_files) {
    static const char *const names[] = {
        "affine_b4_g64", "affine_b5_g32", "affine_b3_g64", "affine_b8_g32", "bf16",    "f32",
        "mixed_4_6",     "mxfp4_q8",      "permodule_4_8", "top2_b4_g64",   "hf_mxfp4"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct moecl_ckpt *ck = NULL;
        if (moecl_ckpt_open(fixture(names[i]), &ck) != MOECL_OK) {
            moecl_test_fail(__FILE__, __LINE__, "%s: %s", names[i], moecl_last_error());
            continue;
        }
        struct moecl_memplan_model m;
        REQUIRE(moecl_memplan_model_from_ckpt(ck, &m) == MOECL_OK);
        uint64_t files = 0, experts = 0, embed = 0;
        for (int t = 0; t < ck->n_tensors; t++) {
            const struct moecl_tensor *T = ck->tensors[t];
            files += T->n_bytes;
            size_t len = strlen(T->name);
            int additive_bias = len > 5 && (!strcmp(T->name + len - 5, ".bias") ||
                                            !strcmp(T->name + len - 5, "_bias"));
            if (strstr(T->name, ".mlp.experts.") && !additive_bias)
                experts += T->n_bytes;
            if (strstr(T->name, "embed_tokens"))
                embed += T->n_bytes;
        }
        uint64_t plan_experts = 0;
        for (int l = 0; l < m.cfg.n_layers; l++)
            plan_experts += m.layers[l].experts;
        if (moecl_memplan_model_weight_bytes(&m) != files || m.stored_bytes != files ||
            plan_experts != experts || m.embed != embed)
            moecl_test_fail(__FILE__, __LINE__,
                            "%s: planned %llu (experts %llu, embed %llu), files %llu (experts "
                            "%llu, embed %llu)",
                            names[i], (unsigned long long)moecl_memplan_model_weight_bytes(&m),
                            (unsigned long long)plan_experts, (unsigned long long)m.embed,
                            (unsigned long long)files, (unsigned long long)experts,
                            (unsigned long long)embed);
        moecl_memplan_model_free(&m);
        moecl_ckpt_close(ck);
    }
}

/* KV bytes by the spec's formula, written out here: 2 (K and V) x positions x kv_heads x
 * head_dim x element size, where positions = window on sliding layers and n_ctx (or the ring
 * of max_kv_size) on full layers; float16 halves it. */
TEST(memplan_kv_bytes) {
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(fixture("affine_b4_g64"), &ck) == MOECL_OK);
    struct moecl_memplan_model m;
    REQUIRE(moecl_memplan_model_from_ckpt(ck, &m) == MOECL_OK);
    struct moecl_device_info devs[2];
    fake_devices(devs);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, m.cfg.n_layers, 1) == MOECL_OK);
    const struct moecl_config *cfg = &ck->config;
    int n_sliding = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        n_sliding += cfg->layer_sliding[l] != 0;
    REQUIRE(n_sliding > 0 && n_sliding < cfg->n_layers);
    uint64_t row = (uint64_t)cfg->n_kv_heads * (uint64_t)cfg->head_dim;
    static const struct {
        int n_ctx, max_kv;
        enum moecl_kv_type t;
    } cases[] = {{4096, 0, MOECL_KV_F32},
                 {4096, 0, MOECL_KV_F16},
                 {131072, 0, MOECL_KV_F32},
                 {100000, 1000, MOECL_KV_F32},
                 {5, 0, MOECL_KV_F16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct moecl_memplan_ctx c;
        moecl_memplan_ctx_init(&c, cases[i].n_ctx);
        c.max_kv_size = cases[i].max_kv;
        c.kv_type = cases[i].t;
        struct moecl_memplan plan;
        REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
        REQUIRE(plan.n_devices == 1);
        uint64_t el = cases[i].t == MOECL_KV_F16 ? 2 : 4;
        uint64_t full_pos = cases[i].max_kv ? (uint64_t)cases[i].max_kv : (uint64_t)cases[i].n_ctx;
        uint64_t want_full = 2 * full_pos * row * el * (uint64_t)(cfg->n_layers - n_sliding);
        uint64_t want_sliding = 2 * (uint64_t)cfg->sliding_window * row * el * (uint64_t)n_sliding;
        CHECK_EQ(plan.dev[0].bytes[MOECL_MEM_KV_FULL], want_full);
        CHECK_EQ(plan.dev[0].bytes[MOECL_MEM_KV_SLIDING], want_sliding);
        /* a host-unified device's KV is host memory */
        CHECK_EQ(plan.host_bytes[MOECL_MEM_KV_FULL], want_full);
    }
    moecl_placement_free(&p);
    moecl_memplan_model_free(&m);
    moecl_ckpt_close(ck);
}

static uint64_t mem_size(cl_mem m) {
    size_t n = 0;
    if (!m || clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof n, &n, NULL) != CL_SUCCESS)
        return 0;
    return n;
}

/* The single-device plan against a real context on PoCL: the sizes the OpenCL runtime reports
 * for every KV and step buffer of the context add up to the plan's KV, activations and
 * scratch (less the model's RoPE table), class by class; weights to the pieces' payload. */
TEST(memplan_matches_context) {
    struct moecl_model *model = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), NULL, &model) == MOECL_OK);
    const struct moecl_config *cfg = &model->ckpt->config;
    struct moecl_memplan_model m;
    REQUIRE(moecl_memplan_model_from_ckpt(model->ckpt, &m) == MOECL_OK);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, cfg->n_layers, 0) == MOECL_OK);
    static const struct moecl_context_options opts[] = {
        {0, 0, 0, MOECL_KV_F32, 0}, {3, 0, 1, MOECL_KV_F32, 0}, {4, 12, 0, MOECL_KV_F16, 0}};
    static const int n_ctx[] = {40, 17, 9};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        struct moecl_context *ctx = NULL;
        REQUIRE(moecl_context_create(model, n_ctx[i], &opts[i], &ctx) == MOECL_OK);
        uint64_t kv_full = 0, kv_sliding = 0, act = 0;
        for (int l = 0; l < cfg->n_layers; l++) {
            uint64_t n = mem_size(moecl_umem_view(model->umem, ctx->layers[l].k, 0)) +
                         mem_size(moecl_umem_view(model->umem, ctx->layers[l].v, 0));
            *(cfg->layer_sliding[l] ? &kv_sliding : &kv_full) += n;
        }
        struct moecl_ubuf *bufs[] = {ctx->tokens, ctx->x,    ctx->xn,  ctx->q,       ctx->k,
                                     ctx->v,      ctx->attn, ctx->tmp, ctx->rlogits, ctx->ids,
                                     ctx->wts,    ctx->gate, ctx->up,  ctx->down};
        for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
            act += mem_size(moecl_umem_view(model->umem, bufs[b], 0));
        uint64_t logits = mem_size(moecl_umem_view(model->umem, ctx->logits, 0));

        struct moecl_memplan_ctx c;
        moecl_memplan_ctx_init(&c, n_ctx[i]);
        c.prefill_chunk = opts[i].prefill_chunk;
        c.max_kv_size = opts[i].max_kv_size;
        c.all_logits = opts[i].all_logits;
        c.kv_type = opts[i].kv_type;
        struct moecl_device_info devs[1];
        devs[0] = *moecl_model_device(model);
        devs[0].index = 0;
        struct moecl_memplan plan;
        REQUIRE(moecl_memplan_build(&m, &p, devs, 1, &c, 0, &plan) == MOECL_OK);
        const struct moecl_memplan_device *d = &plan.dev[0];
        CHECK_EQ(d->bytes[MOECL_MEM_KV_FULL], kv_full);
        CHECK_EQ(d->bytes[MOECL_MEM_KV_SLIDING], kv_sliding);
        CHECK_EQ(d->bytes[MOECL_MEM_ACTIVATIONS], act);
        CHECK_EQ(d->bytes[MOECL_MEM_SCRATCH], logits + mem_size(model->devs[0].inv_freq));
        /* the zero-copy pieces (one class each) span the weights plus page padding */
        uint64_t covered = 0;
        for (int cls = 0; cls <= MOECL_MEM_NORMS_BIASES; cls++)
            covered += moecl_umem_device_bytes(model->umem, 0, (enum moecl_mem_class)cls);
        CHECK(covered >= weights_of(d));
        CHECK(covered <=
              weights_of(d) + (uint64_t)moecl_umem_weight_pieces(model->umem, 0) * 2 * 4096);
        moecl_context_release(ctx);
    }
    moecl_placement_free(&p);
    moecl_memplan_model_free(&m);
    moecl_model_release(model);
}

/* attn/experts split: each side's weights land on its device, the expert buffers only where
 * the experts run, nothing is lost or counted twice; the host holds every weight once. */
TEST(memplan_split_placement) {
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(fixture("affine_b4_g64"), &ck) == MOECL_OK);
    struct moecl_memplan_model m;
    REQUIRE(moecl_memplan_model_from_ckpt(ck, &m) == MOECL_OK);
    struct moecl_device_info devs[2];
    fake_devices(devs);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, m.cfg.n_layers, 0) == MOECL_OK);
    REQUIRE(moecl_placement_apply(&p, "experts=cpu:0", devs, 2) == MOECL_OK);
    struct moecl_memplan_ctx c;
    moecl_memplan_ctx_init(&c, 256);
    struct moecl_memplan plan;
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    REQUIRE(plan.n_devices == 2);
    const struct moecl_memplan_device *g = moecl_memplan_find(&plan, 0);
    const struct moecl_memplan_device *u = moecl_memplan_find(&plan, 1);
    REQUIRE(g && u);
    uint64_t experts = 0;
    for (int l = 0; l < m.cfg.n_layers; l++)
        experts += m.layers[l].experts;
    CHECK_EQ(g->bytes[MOECL_MEM_EXPERT_WEIGHTS], 0);
    CHECK_EQ(u->bytes[MOECL_MEM_EXPERT_WEIGHTS], experts);
    CHECK_EQ(u->bytes[MOECL_MEM_ATTN_WEIGHTS], 0);
    CHECK_EQ(u->bytes[MOECL_MEM_KV_FULL] + u->bytes[MOECL_MEM_KV_SLIDING], 0);
    CHECK_EQ(weights_of(g) + weights_of(u), moecl_memplan_model_weight_bytes(&m));
    uint64_t host_w = plan.host_bytes[MOECL_MEM_ATTN_WEIGHTS] +
                      plan.host_bytes[MOECL_MEM_EXPERT_WEIGHTS] + plan.host_bytes[MOECL_MEM_EMBED] +
                      plan.host_bytes[MOECL_MEM_LM_HEAD] + plan.host_bytes[MOECL_MEM_ROUTER] +
                      plan.host_bytes[MOECL_MEM_NORMS_BIASES];
    CHECK_EQ(host_w, moecl_memplan_model_weight_bytes(&m));
    /* the step buffers each side holds (the contract in memplan.h) */
    static const enum moecl_memplan_buf gpu_bufs[] = {
        MOECL_BUF_TOKENS,  MOECL_BUF_X,   MOECL_BUF_XN,   MOECL_BUF_Q,
        MOECL_BUF_K,       MOECL_BUF_V,   MOECL_BUF_ATTN, MOECL_BUF_TMP,
        MOECL_BUF_RLOGITS, MOECL_BUF_IDS, MOECL_BUF_WTS};
    static const enum moecl_memplan_buf cpu_bufs[] = {MOECL_BUF_XN,  MOECL_BUF_TMP,  MOECL_BUF_IDS,
                                                      MOECL_BUF_WTS, MOECL_BUF_GATE, MOECL_BUF_UP,
                                                      MOECL_BUF_DOWN};
    uint64_t want_g = 0, want_u = 0;
    for (size_t b = 0; b < sizeof gpu_bufs / sizeof gpu_bufs[0]; b++)
        want_g += moecl_memplan_buf_bytes(&m.cfg, gpu_bufs[b], &c, NULL);
    for (size_t b = 0; b < sizeof cpu_bufs / sizeof cpu_bufs[0]; b++)
        want_u += moecl_memplan_buf_bytes(&m.cfg, cpu_bufs[b], &c, NULL);
    CHECK_EQ(g->bytes[MOECL_MEM_ACTIVATIONS], want_g);
    CHECK_EQ(u->bytes[MOECL_MEM_ACTIVATIONS], want_u);
    CHECK_EQ(u->bytes[MOECL_MEM_SCRATCH], 0); /* logits and the RoPE table stay on the GPU */
    CHECK(g->bytes[MOECL_MEM_SCRATCH] > 0);
    CHECK(plan.fits);
    moecl_placement_free(&p);
    moecl_memplan_model_free(&m);
    moecl_ckpt_close(ck);
}

/* The micro-batch option against real contexts on the two PoCL devices, one context per
 * device (so each device's buffers are its own): with attention on pocl:0 and experts on
 * pocl:1, micro_batch 4 and chunks of 16, the context pipelines and each device's planned
 * activations are what it holds (CL_MEM_SIZE summed over its buffers), the step buffers plus
 * ceil(16 / 4) sets of micro-batch buffers; where pipelining does not apply (one device, or a
 * step smaller than two micro-batches) nothing is added; a negative value is refused by name;
 * $MOECL_MICRO_BATCH overrides the option. */
TEST(memplan_micro_batch_matches_context) {
    struct moecl_device_info *list = NULL;
    int n_list = 0;
    REQUIRE(moecl_devices_list(&list, &n_list) == MOECL_OK);
    moecl_devices_free(list);
    if (n_list < 2)
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    unsetenv("MOECL_MICRO_BATCH");
    setenv("MOECL_CONTEXT_PER_DEVICE", "1", 1);
    static const struct {
        const char *place;
        int chunk, mb, env_mb, pipelined;
    } cases[] = {
        {"attn=pocl:0,experts=pocl:1", 16, 4, 0, 1},
        {"attn=pocl:0,experts=pocl:1", 16, 0, 0, 0},
        {"attn=pocl:0,experts=pocl:1", 16, 0, 8, 1},  /* the variable alone */
        {"attn=pocl:0,experts=pocl:1", 16, 4, -1, 0}, /* MOECL_MICRO_BATCH=0 turns it off */
        {"attn=pocl:0,experts=pocl:1", 7, 4, 0, 0},   /* a step of 7 holds one micro-batch */
        {"all=pocl:1", 16, 4, 0, 0},                  /* nothing to overlap with */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct moecl_model_options mo = {NULL, 0, cases[i].place, 0, MOECL_NUMERICS_DEFAULT};
        struct moecl_model *model = NULL;
        struct moecl_context *ctx = NULL;
        REQUIRE(moecl_model_load(fixture("affine_b4_g64"), &mo, &model) == MOECL_OK);
        const struct moecl_config *cfg = &model->ckpt->config;
        struct moecl_context_options co = {cases[i].chunk, 0, 1, MOECL_KV_F32, cases[i].mb};
        if (cases[i].env_mb) {
            char v[16];
            snprintf(v, sizeof v, "%d", cases[i].env_mb < 0 ? 0 : cases[i].env_mb);
            setenv("MOECL_MICRO_BATCH", v, 1);
        }
        enum moecl_status st = moecl_context_create(model, 40, &co, &ctx);
        unsetenv("MOECL_MICRO_BATCH");
        REQUIRE(st == MOECL_OK);
        CHECK_EQ(ctx->mbs != NULL, cases[i].pipelined);
        int mb = cases[i].env_mb > 0 ? cases[i].env_mb : cases[i].mb;
        uint64_t mb_bytes = moecl_memplan_micro_batch_bytes(cfg, mb, cases[i].chunk);
        CHECK_EQ(mb_bytes, (uint64_t)(cases[i].chunk + mb - 1) / (mb ? mb : 1) * mb *
                               (2 * cfg->hidden_size + 2 * cfg->n_experts_per_tok) * 4);
        struct moecl_memory_report r;
        REQUIRE(moecl_context_memory_report(ctx, &r) == MOECL_OK);
        struct moecl_memplan_ctx c;
        moecl_memplan_ctx_init(&c, 40);
        c.prefill_chunk = cases[i].chunk;
        c.all_logits = 1;
        for (int d = 0; d < model->n_devs; d++) {
            /* measured: CL_MEM_SIZE over the device's activation buffers */
            uint64_t held = 0;
            for (int k = 0; k < moecl_umem_n_allocs(model->umem); k++) {
                const struct moecl_umem_alloc *a = moecl_umem_alloc_at(model->umem, k);
                if (a->device == d && a->cls == MOECL_MEM_ACTIVATIONS)
                    held += mem_size(a->mem);
            }
            CHECK_EQ(r.devices[d].measured[MOECL_MEM_ACTIVATIONS], held);
            CHECK_EQ(r.devices[d].planned[MOECL_MEM_ACTIVATIONS], held);
            /* the step buffers alone (the plan without micro-batches), plus the sets */
            struct moecl_memplan plan0;
            REQUIRE(moecl_memplan_build(&model->plan_model, &model->gplace, model->infos,
                                        model->n_infos, &c, 0, &plan0) == MOECL_OK);
            const struct moecl_memplan_device *pd =
                moecl_memplan_find(&plan0, model->devs[d].cl.info.index);
            REQUIRE(pd != NULL);
            CHECK_EQ(held, pd->bytes[MOECL_MEM_ACTIVATIONS] + (cases[i].pipelined ? mb_bytes : 0));
        }
        moecl_context_release(ctx);
        moecl_model_release(model);
    }
    /* refused by name */
    struct moecl_model_options mo = {NULL, 0, "attn=pocl:0,experts=pocl:1", 0,
                                     MOECL_NUMERICS_DEFAULT};
    struct moecl_model *model = NULL;
    struct moecl_context *ctx = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), &mo, &model) == MOECL_OK);
    struct moecl_context_options co = {16, 0, 0, MOECL_KV_F32, -3};
    CHECK(moecl_context_create(model, 40, &co, &ctx) == MOECL_ERR_INVALID_ARG);
    CHECK(ctx == NULL);
    CHECK_STR_CONTAINS(moecl_last_error(), "micro_batch -3");
    moecl_model_release(model);
    unsetenv("MOECL_CONTEXT_PER_DEVICE");
}

/* The verdict: a context too large for the small GPU names the device, the largest classes
 * and the numbers; a buffer over the largest-allocation limit names the buffer; too little
 * host memory names the host. Bad shapes are INVALID_ARG. */
TEST(memplan_verdict_messages) {
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(fixture("affine_b4_g64"), &ck) == MOECL_OK);
    struct moecl_memplan_model m;
    REQUIRE(moecl_memplan_model_from_ckpt(ck, &m) == MOECL_OK);
    struct moecl_device_info devs[2];
    fake_devices(devs);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, m.cfg.n_layers, 0) == MOECL_OK);
    struct moecl_memplan_ctx c;
    struct moecl_memplan plan;

    /* 2 full layers x 2 x 2^22 positions x 128 x 4 bytes = 8.6 GB of KV on a 4 GB GPU */
    moecl_memplan_ctx_init(&c, 1 << 22);
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    CHECK(!plan.fits);
    CHECK(moecl_memplan_check(&plan) == MOECL_ERR_DEVICE_MEMORY);
    CHECK_STR_CONTAINS(moecl_last_error(), "device gpu:0 (Small GPU) needs");
    CHECK_STR_CONTAINS(moecl_last_error(), "KV cache (full layers)");
    CHECK_STR_CONTAINS(moecl_last_error(), "4.29 GB of global memory");

    /* 2^21 positions: 4.3 GB in total but each buffer is 2^21 x 128 x 4 = 1.07 GB > 1 GiB */
    moecl_memplan_ctx_init(&c, 1 << 21);
    c.kv_type = MOECL_KV_F16; /* 2.1 GB in total: fits the 4 GB, and each buffer 537 MB */
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    CHECK(plan.fits);
    CHECK(moecl_memplan_check(&plan) == MOECL_OK);
    c.kv_type = MOECL_KV_F32;
    devs[0].global_mem_bytes = 80ull << 30;
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    CHECK(!plan.fits);
    CHECK_STR_CONTAINS(plan.reason, "device gpu:0: the KV cache buffer of layer 1 is 1.07 GB, "
                                    "over its largest buffer of 1.07 GB");

    /* host memory: a 100 kB host cannot hold the 380 kB of mapped weights */
    moecl_memplan_ctx_init(&c, 64);
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 100000, &plan) == MOECL_OK);
    CHECK(!plan.fits);
    CHECK_STR_CONTAINS(plan.reason, "host memory: needs");

    /* bad input */
    moecl_memplan_ctx_init(&c, 0);
    CHECK(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_ERR_INVALID_ARG);
    moecl_memplan_ctx_init(&c, 64);
    c.kv_type = (enum moecl_kv_type)7;
    CHECK(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_ERR_INVALID_ARG);
    c.kv_type = MOECL_KV_F32;
    CHECK(moecl_memplan_build(&m, &p, devs, 1, &c, 0, &plan) == MOECL_OK);
    p.experts[0] = 5;
    CHECK(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "device 5 of 2");
    struct moecl_placement q;
    REQUIRE(moecl_placement_init(&q, m.cfg.n_layers + 1, 0) == MOECL_OK);
    CHECK(moecl_memplan_build(&m, &q, devs, 2, &c, 0, &plan) == MOECL_ERR_INVALID_ARG);
    moecl_placement_free(&q);
    enum moecl_kv_type t;
    CHECK(moecl_kv_type_parse("f16", &t) == MOECL_OK && t == MOECL_KV_F16);
    CHECK(moecl_kv_type_parse("bf16", &t) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "'bf16'");
    moecl_placement_free(&p);
    moecl_memplan_model_free(&m);
    moecl_ckpt_close(ck);
}

/* The recipe description (no file) equals the description of the checkpoint mkmodel writes
 * for it, field by field, for every preset: one description of the presets for both. */
TEST(memplan_recipe_equals_written_checkpoint) {
    static const char *const presets[] = {"mlx-4bit",  "mlx-5bit-gs32", "mlx-6bit", "optiq-4bit",
                                          "mixed-3-6", "mxfp4",         "hf-mxfp4", "hf-bf16"};
    const char *bin = getenv("MOECL_MKMODEL");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char *dir = moecl_test_tmpdir("memplan");
        REQUIRE(dir);
        char cmd[8192], path[4200];
        snprintf(cmd, sizeof cmd,
                 "%s --out %s/m --tiny --layers 3 --vocab 512 --quiet --no-tokenizer --like %s",
                 bin && *bin ? bin : "build/mkmodel", dir, presets[i]);
        char *out = NULL;
        int rc = moecl_test_run(cmd, &out);
        free(out);
        snprintf(path, sizeof path, "%s/m", dir);
        struct moecl_ckpt *ck = NULL;
        if (rc != 0 || moecl_ckpt_open(path, &ck) != MOECL_OK) {
            moecl_test_fail(__FILE__, __LINE__, "%s: mkmodel rc %d / %s", presets[i], rc,
                            moecl_last_error());
            moecl_test_rmtree(dir);
            free(dir);
            continue;
        }
        struct moecl_recipe r;
        memset(&r, 0, sizeof r);
        moecl_recipe_shape_tiny(&r);
        r.n_layers = 3;
        r.vocab = 512;
        REQUIRE(moecl_recipe_set(&r, presets[i], 0, MOECL_QMODE_AFFINE, 0, 0, 0,
                                 MOECL_DTYPE_BF16) == MOECL_OK);
        struct moecl_memplan_model a, b;
        REQUIRE(moecl_memplan_model_from_ckpt(ck, &a) == MOECL_OK);
        REQUIRE(moecl_memplan_model_from_recipe(&r, &b) == MOECL_OK);
        int same = a.embed == b.embed && a.lm_head == b.lm_head && a.final_norm == b.final_norm &&
                   a.embed_largest == b.embed_largest && a.lm_head_largest == b.lm_head_largest &&
                   a.n_formats == b.n_formats && a.stored_bytes == b.stored_bytes &&
                   a.converted_bytes == b.converted_bytes && a.released_bytes == b.released_bytes &&
                   a.cfg.n_layers == b.cfg.n_layers &&
                   a.cfg.sliding_window == b.cfg.sliding_window &&
                   !memcmp(a.cfg.layer_sliding, b.cfg.layer_sliding, (size_t)a.cfg.n_layers) &&
                   !memcmp(a.formats, b.formats, sizeof a.formats);
        for (int l = 0; same && l < a.cfg.n_layers; l++)
            same = !memcmp(&a.layers[l], &b.layers[l], sizeof a.layers[l]);
        if (!same)
            moecl_test_fail(
                __FILE__, __LINE__,
                "%s: checkpoint vs recipe: embed %llu/%llu lm_head %llu/%llu stored "
                "%llu/%llu converted %llu/%llu formats %d/%d layer0 attn %llu/%llu "
                "experts %llu/%llu norms %llu/%llu largest %llu/%llu",
                presets[i], (unsigned long long)a.embed, (unsigned long long)b.embed,
                (unsigned long long)a.lm_head, (unsigned long long)b.lm_head,
                (unsigned long long)a.stored_bytes, (unsigned long long)b.stored_bytes,
                (unsigned long long)a.converted_bytes, (unsigned long long)b.converted_bytes,
                a.n_formats, b.n_formats, (unsigned long long)a.layers[0].attn,
                (unsigned long long)b.layers[0].attn, (unsigned long long)a.layers[0].experts,
                (unsigned long long)b.layers[0].experts, (unsigned long long)a.layers[0].attn_norms,
                (unsigned long long)b.layers[0].attn_norms,
                (unsigned long long)a.layers[0].experts_largest,
                (unsigned long long)b.layers[0].experts_largest);
        moecl_memplan_model_free(&a);
        /* opened lazily (headers only, as `moecl footprint` does): the same description */
        struct moecl_ckpt *lz = NULL;
        REQUIRE(moecl_ckpt_open_ex(path, MOECL_CKPT_LAZY_HF_BF16, &lz) == MOECL_OK);
        REQUIRE(moecl_memplan_model_from_ckpt(lz, &a) == MOECL_OK);
        CHECK_EQ(a.converted_bytes, b.converted_bytes);
        CHECK_EQ(a.released_bytes, b.released_bytes);
        CHECK_EQ(a.stored_bytes, b.stored_bytes);
        CHECK_EQ(moecl_memplan_model_weight_bytes(&a), moecl_memplan_model_weight_bytes(&b));
        moecl_memplan_model_free(&a);
        moecl_ckpt_close(lz);
        moecl_memplan_model_free(&b);
        moecl_ckpt_close(ck);
        moecl_test_rmtree(dir);
        free(dir);
    }
}

/* A host-unified device's weights are views of the host mapping, not device allocations: the
 * full-size 4-bit model's 11.8 GB of weights fit a PoCL device reporting 3.35 GiB of global
 * memory (the H100 VM's), whose own buffers are what its capacity must hold; the same device
 * without host-unified memory must hold the weights too and is refused. */
TEST(memplan_host_unified_weights_are_views) {
    struct moecl_recipe r;
    memset(&r, 0, sizeof r);
    moecl_recipe_shape_full(&r);
    REQUIRE(moecl_recipe_set(&r, "mlx-4bit", 0, MOECL_QMODE_AFFINE, 0, 0, 0, MOECL_DTYPE_BF16) ==
            MOECL_OK);
    struct moecl_memplan_model m;
    REQUIRE(moecl_memplan_model_from_recipe(&r, &m) == MOECL_OK);
    struct moecl_device_info devs[2];
    fake_devices(devs);
    devs[1].global_mem_bytes = 3597035520ull; /* 3.35 GiB */
    devs[1].max_alloc_bytes = 1ull << 30;
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, m.cfg.n_layers, 1) == MOECL_OK);
    struct moecl_memplan_ctx c;
    moecl_memplan_ctx_init(&c, 4096);
    struct moecl_memplan plan;
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    CHECK(plan.fits);
    CHECK(plan.dev[0].total > devs[1].global_mem_bytes);
    CHECK_EQ(plan.dev[0].owned,
             plan.dev[0].bytes[MOECL_MEM_KV_FULL] + plan.dev[0].bytes[MOECL_MEM_KV_SLIDING] +
                 plan.dev[0].bytes[MOECL_MEM_ACTIVATIONS] + plan.dev[0].bytes[MOECL_MEM_SCRATCH] +
                 plan.dev[0].bytes[MOECL_MEM_PROGRAMS]);
    devs[1].host_unified_memory = 0;
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 0, &plan) == MOECL_OK);
    CHECK(!plan.fits);
    CHECK_STR_CONTAINS(plan.reason, "device cpu:0 (Big CPU) needs 12.09 GB (expert weights");
    /* the host still has to hold every weight */
    devs[1].host_unified_memory = 1;
    REQUIRE(moecl_memplan_build(&m, &p, devs, 2, &c, 8000000000ull, &plan) == MOECL_OK);
    CHECK(!plan.fits);
    CHECK_STR_CONTAINS(plan.reason, "host memory: needs 12.09 GB");
    moecl_placement_free(&p);
    moecl_memplan_model_free(&m);
}
