/* The unified-memory manager (runtime/umem.h) on PoCL: zero-copy views alias host bytes, the
 * allocation-limit splitting with a small $MOECL_MAX_ALLOC_BYTES stand-in, a stale mirror is
 * refreshed after a write and only then, the accounting adds up to what the devices report,
 * and impossible placements are refused with the promised messages. */
#include "test.h"

#include "model_internal.h"
#include "moecl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *fixture(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

/* The first n PoCL-visible devices, each in its own context. */
static int devices(int n, cl_context *ctx, cl_device_id *dev, struct moecl_cl_device *info) {
    struct moecl_cl_device *devs = NULL;
    int have = 0;
    if (moecl_cl_devices_enumerate(&devs, &have) != MOECL_OK || have < n) {
        free(devs);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        cl_int err;
        dev[i] = devs[i].device;
        info[i] = devs[i];
        ctx[i] = clCreateContext(NULL, 1, &dev[i], NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            free(devs);
            return -1;
        }
    }
    free(devs);
    return 0;
}

static uint64_t mem_size(cl_mem m) {
    size_t n = 0;
    if (!m || clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof n, &n, NULL) != CL_SUCCESS)
        return 0;
    return n;
}

/* USE_HOST_PTR weight pieces alias the mapping (a map returns the very host pointer), under a
 * 64 KiB stand-in limit that forces many pieces; every module is found whole in one piece of
 * its device; a unified buffer's zero-copy view writes straight into its host allocation. */
TEST(umem_zero_copy_views_and_limit_splitting) {
    cl_context ctx;
    cl_device_id dev;
    struct moecl_cl_device info;
    REQUIRE(devices(1, &ctx, &dev, &info) == 0);
    if (!info.info.host_unified_memory) {
        clReleaseContext(ctx);
        SKIP("device is not host-unified");
    }
    struct moecl_ckpt *ck = NULL;
    REQUIRE(moecl_ckpt_open(fixture("affine_b4_g64"), &ck) == MOECL_OK);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, ck->config.n_layers, 0) == MOECL_OK);
    struct moecl_umem_span *spans = NULL;
    int n_spans = 0;
    REQUIRE(moecl_weight_spans(ck, &p, &spans, &n_spans) == MOECL_OK);
    struct moecl_umem_device_desc d = {
        ctx, dev, "pocl:0", 1, info.info.max_alloc_bytes, info.info.global_mem_bytes};
    setenv("MOECL_MAX_ALLOC_BYTES", "65536", 1);
    struct moecl_umem *um = NULL;
    enum moecl_status st = moecl_umem_create(&d, 1, &um);
    unsetenv("MOECL_MAX_ALLOC_BYTES");
    REQUIRE(st == MOECL_OK);
    CHECK_EQ(moecl_umem_max_alloc(um, 0), 65536);
    REQUIRE(moecl_umem_weights_create(um, spans, n_spans) == MOECL_OK);
    int n_pieces = moecl_umem_weight_pieces(um, 0);
    CHECK(n_pieces > 8); /* more than one per class: the limit split them */
    cl_int err;
    cl_command_queue q = clCreateCommandQueueWithProperties(ctx, dev, NULL, &err);
    int aliased = 0, over = 0;
    for (int i = 0; i < moecl_umem_n_allocs(um); i++) {
        const struct moecl_umem_alloc *a = moecl_umem_alloc_at(um, i);
        over += a->n_bytes > 65536;
        void *host = NULL;
        clGetMemObjectInfo(a->mem, CL_MEM_HOST_PTR, sizeof host, &host, NULL);
        void *mp =
            clEnqueueMapBuffer(q, a->mem, CL_TRUE, CL_MAP_READ, 0, a->n_bytes, 0, NULL, NULL, &err);
        aliased += mp && mp == host && ((uintptr_t)host % 4096) == 0;
        if (mp)
            clEnqueueUnmapMemObject(q, a->mem, mp, 0, NULL, NULL);
    }
    clFinish(q);
    CHECK_EQ(over, 0);
    CHECK_EQ(aliased, n_pieces);
    /* every span (module part) lies whole inside one piece */
    int found = 0;
    for (int i = 0; i < n_spans; i++) {
        cl_mem m;
        size_t off;
        found += moecl_umem_weight_find(um, 0, spans[i].host, spans[i].n_bytes, spans[i].name, &m,
                                        &off) == MOECL_OK;
    }
    CHECK_EQ(found, n_spans);
    int local;
    cl_mem m;
    size_t off;
    CHECK(moecl_umem_weight_find(um, 0, &local, 4, "stack", &m, &off) == MOECL_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(moecl_last_error(), "pocl:0");

    /* a unified buffer: the device's writes land in the host allocation itself */
    struct moecl_ubuf *b = NULL;
    REQUIRE(moecl_umem_buffer_create(um, "test", MOECL_MEM_SCRATCH, 4096, 1u, 0, &b) == MOECL_OK);
    uint32_t *host = moecl_umem_host(b);
    REQUIRE(host != NULL);
    cl_mem v;
    REQUIRE(moecl_umem_acquire(um, &b, 1, 0, q, MOECL_UMEM_WRITE, &v) == MOECL_OK);
    uint32_t pattern = 0xA5C3u;
    clEnqueueFillBuffer(q, v, &pattern, sizeof pattern, 0, 4096, 0, NULL, NULL);
    clFinish(q);
    CHECK_EQ(host[0], pattern);
    CHECK_EQ(host[1023], pattern);
    moecl_umem_buffer_free(um, b);

    /* a limit below a tensor: refused by name before any piece is made */
    moecl_umem_release_all(um);
    setenv("MOECL_MAX_ALLOC_BYTES", "4096", 1);
    REQUIRE(moecl_umem_create(&d, 1, &um) == MOECL_OK);
    unsetenv("MOECL_MAX_ALLOC_BYTES");
    CHECK(moecl_umem_weights_create(um, spans, n_spans) == MOECL_ERR_DEVICE_MEMORY);
    CHECK_STR_CONTAINS(moecl_last_error(), "device pocl:0 cannot hold tensor");
    CHECK_STR_CONTAINS(moecl_last_error(), "largest buffer is 4096 bytes");
    CHECK_EQ(moecl_umem_n_allocs(um), 0);
    moecl_umem_release_all(um);
    free(spans);
    moecl_placement_free(&p);
    clReleaseCommandQueue(q);
    clReleaseContext(ctx);
    moecl_ckpt_close(ck);
}

/* Two devices in two contexts with mirrors (the discrete-GPU path): a read on the second device
 * after a write on the first copies the valid bytes once; a second read copies nothing; a new
 * write makes it stale again. */
TEST(umem_stale_mirror_refreshed_once) {
    cl_context ctx[2];
    cl_device_id dev[2];
    struct moecl_cl_device info[2];
    if (devices(2, ctx, dev, info) != 0)
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    struct moecl_umem_device_desc d[2] = {
        {ctx[0], dev[0], "pocl:0", 0, info[0].info.max_alloc_bytes, 0},
        {ctx[1], dev[1], "pocl:1", 0, info[1].info.max_alloc_bytes, 0}};
    struct moecl_umem *um = NULL;
    REQUIRE(moecl_umem_create(d, 2, &um) == MOECL_OK);
    struct moecl_ubuf *b = NULL;
    REQUIRE(moecl_umem_buffer_create(um, "x", MOECL_MEM_ACTIVATIONS, 8192, 3u, 1, &b) == MOECL_OK);
    cl_int err;
    cl_command_queue q0 = clCreateCommandQueueWithProperties(ctx[0], dev[0], NULL, &err);
    cl_command_queue q1 = clCreateCommandQueueWithProperties(ctx[1], dev[1], NULL, &err);
    uint32_t got[2048];
    for (int round = 0; round < 2; round++) {
        cl_mem v0, v1;
        uint32_t pattern = 0x1000u + (uint32_t)round;
        REQUIRE(moecl_umem_acquire(um, &b, 1, 0, q0, MOECL_UMEM_WRITE, &v0) == MOECL_OK);
        clEnqueueFillBuffer(q0, v0, &pattern, sizeof pattern, 0, 8192, 0, NULL, NULL);
        moecl_umem_release(um, b, 0, q0, 6000); /* only the first 6000 bytes are valid */
        CHECK_EQ(moecl_umem_version(b), (uint32_t)round + 1);
        uint64_t moved0 = moecl_umem_moved_bytes(um);
        REQUIRE(moecl_umem_acquire(um, &b, 1, 1, q1, MOECL_UMEM_READ, &v1) == MOECL_OK);
        CHECK_EQ(moecl_umem_moved_bytes(um) - moved0, 2 * 6000); /* device -> host -> device */
        memset(got, 0, sizeof got);
        CHECK(clEnqueueReadBuffer(q1, v1, CL_TRUE, 0, 6000, got, 0, NULL, NULL) == CL_SUCCESS);
        CHECK_EQ(got[0], pattern);
        CHECK_EQ(got[1499], pattern);
        /* current now: no second copy */
        REQUIRE(moecl_umem_acquire(um, &b, 1, 1, q1, MOECL_UMEM_READ, &v1) == MOECL_OK);
        CHECK_EQ(moecl_umem_moved_bytes(um) - moved0, 2 * 6000);
        /* and the writer's own view needs nothing */
        REQUIRE(moecl_umem_acquire(um, &b, 1, 0, q0, MOECL_UMEM_READ, &v0) == MOECL_OK);
        CHECK_EQ(moecl_umem_moved_bytes(um) - moved0, 2 * 6000);
    }
    /* three buffers written by one queue travel as one hand-off: one marker, one callback,
     * one user event */
    struct moecl_ubuf *three[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        REQUIRE(moecl_umem_buffer_create(um, "h", MOECL_MEM_ACTIVATIONS, 1024, 3u, 1, &three[i]) ==
                MOECL_OK);
        cl_mem v0;
        uint32_t pattern = 0x77u + (uint32_t)i;
        REQUIRE(moecl_umem_acquire(um, &three[i], 1, 0, q0, MOECL_UMEM_WRITE, &v0) == MOECL_OK);
        clEnqueueFillBuffer(q0, v0, &pattern, sizeof pattern, 0, 1024, 0, NULL, NULL);
        moecl_umem_release(um, three[i], 0, q0, 1024);
    }
    uint64_t h0 = moecl_umem_handoffs(um), m0 = moecl_umem_moved_bytes(um);
    cl_mem v3[3];
    REQUIRE(moecl_umem_acquire(um, three, 3, 1, q1, MOECL_UMEM_READ, v3) == MOECL_OK);
    CHECK_EQ(moecl_umem_handoffs(um) - h0, 1);
    CHECK_EQ(moecl_umem_moved_bytes(um) - m0, 2 * 3 * 1024);
    for (int i = 0; i < 3; i++) {
        uint32_t w = 0;
        CHECK(clEnqueueReadBuffer(q1, v3[i], CL_TRUE, 1020, 4, &w, 0, NULL, NULL) == CL_SUCCESS);
        CHECK_EQ(w, 0x77u + (uint32_t)i);
    }
    clFinish(q0);
    clFinish(q1);
    for (int i = 0; i < 3; i++)
        moecl_umem_buffer_free(um, three[i]);
    moecl_umem_buffer_free(um, b);
    CHECK_EQ(moecl_umem_n_allocs(um), 0);
    moecl_umem_release_all(um);
    clReleaseCommandQueue(q0);
    clReleaseCommandQueue(q1);
    clReleaseContext(ctx[0]);
    clReleaseContext(ctx[1]);
}

/* Pinned host memory: a buffer a discrete device uses gets a mapped ALLOC_HOST_PTR buffer of
 * that device's context as its host allocation, by default (a plain aligned allocation with
 * $MOECL_PIN_HOST=0); with $MOECL_PIN_HOST=1 also on host-unified devices, where the other
 * context's zero-copy view aliases the pinned pages. Pinned bytes are host memory of the
 * buffer's class and in no device's accounting; a hand-off through them carries the bytes. */
TEST(umem_pinned_host_memory) {
    cl_context ctx[2];
    cl_device_id dev[2];
    struct moecl_cl_device info[2];
    if (devices(2, ctx, dev, info) != 0)
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    cl_int err;
    cl_command_queue q0 = clCreateCommandQueueWithProperties(ctx[0], dev[0], NULL, &err);
    cl_command_queue q1 = clCreateCommandQueueWithProperties(ctx[1], dev[1], NULL, &err);
    const size_t N = 3 * 4096 + 100, R = 4 * 4096; /* R: N rounded to pages */
    for (int mode = 0; mode < 3; mode++) {
        /* 0: discrete devices, default; 1: discrete, $MOECL_PIN_HOST=0; 2: zero-copy, =1 */
        int zc = mode == 2;
        struct moecl_umem_device_desc d[2] = {
            {ctx[0], dev[0], "pocl:0", zc, info[0].info.max_alloc_bytes, 0},
            {ctx[1], dev[1], "pocl:1", zc, info[1].info.max_alloc_bytes, 0}};
        if (mode == 1)
            setenv("MOECL_PIN_HOST", "0", 1);
        if (mode == 2)
            setenv("MOECL_PIN_HOST", "1", 1);
        struct moecl_umem *um = NULL;
        enum moecl_status st = moecl_umem_create(d, 2, &um);
        unsetenv("MOECL_PIN_HOST");
        REQUIRE(st == MOECL_OK);
        struct moecl_ubuf *b = NULL;
        REQUIRE(moecl_umem_buffer_create(um, "x", MOECL_MEM_ACTIVATIONS, N, 3u, 1, &b) == MOECL_OK);
        int pinned = mode != 1;
        CHECK_EQ(moecl_umem_pinned(b), pinned);
        CHECK_EQ(moecl_umem_host_bytes(um, MOECL_MEM_ACTIVATIONS), R);
        CHECK_EQ(moecl_umem_pinned_bytes(um), pinned ? R : 0);
        /* the devices' accounting holds the two views and nothing else */
        CHECK_EQ(moecl_umem_n_allocs(um), 2);
        uint64_t views = 0;
        for (int i = 0; i < moecl_umem_n_allocs(um); i++)
            views += mem_size(moecl_umem_alloc_at(um, i)->mem);
        CHECK_EQ(views, 2 * N);
        CHECK_EQ(moecl_umem_device_bytes(um, 0, MOECL_MEM_ACTIVATIONS) +
                     moecl_umem_device_bytes(um, 1, MOECL_MEM_ACTIVATIONS),
                 2 * N);
        uint8_t *host = moecl_umem_host(b);
        REQUIRE(host != NULL);
        CHECK_EQ(host[0], 0); /* zeroed */
        CHECK_EQ(host[R - 1], 0);
        if (zc) {
            /* pinned in context 0; context 1's view aliases the pinned pages */
            void *hp = NULL;
            clGetMemObjectInfo(moecl_umem_view(um, b, 1), CL_MEM_HOST_PTR, sizeof hp, &hp, NULL);
            CHECK(hp == (void *)host);
        }
        /* a write on device 0 read on device 1 (a hand-off through the host allocation) */
        cl_mem v0, v1;
        uint32_t pattern = 0xC0DE0000u + (uint32_t)mode;
        REQUIRE(moecl_umem_acquire(um, &b, 1, 0, q0, MOECL_UMEM_WRITE, &v0) == MOECL_OK);
        clEnqueueFillBuffer(q0, v0, &pattern, sizeof pattern, 0, N / 4 * 4, 0, NULL, NULL);
        moecl_umem_release(um, b, 0, q0, N);
        uint64_t m0 = moecl_umem_moved_bytes(um);
        REQUIRE(moecl_umem_acquire(um, &b, 1, 1, q1, MOECL_UMEM_READ, &v1) == MOECL_OK);
        CHECK_EQ(moecl_umem_moved_bytes(um) - m0, zc ? 0 : 2 * N);
        uint32_t got[2] = {0, 0};
        CHECK(clEnqueueReadBuffer(q1, v1, CL_TRUE, 0, 4, &got[0], 0, NULL, NULL) == CL_SUCCESS);
        CHECK(clEnqueueReadBuffer(q1, v1, CL_TRUE, N / 4 * 4 - 4, 4, &got[1], 0, NULL, NULL) ==
              CL_SUCCESS);
        CHECK_EQ(got[0], pattern);
        CHECK_EQ(got[1], pattern);
        clFinish(q0);
        uint32_t h = 0;
        memcpy(&h, host + N / 4 * 4 - 4, 4);
        CHECK_EQ(h, pattern); /* the bytes went through (or are) the host allocation */
        moecl_umem_buffer_free(um, b);
        CHECK_EQ(moecl_umem_host_bytes(um, MOECL_MEM_ACTIVATIONS), 0);
        CHECK_EQ(moecl_umem_pinned_bytes(um), 0);
        CHECK_EQ(moecl_umem_n_allocs(um), 0);
        moecl_umem_release_all(um);
    }
    clReleaseCommandQueue(q0);
    clReleaseCommandQueue(q1);
    clReleaseContext(ctx[0]);
    clReleaseContext(ctx[1]);
}

/* A split model with a context: per device and class, the accounting equals the sum of
 * CL_MEM_SIZE over the buffers of that device, and the memory report shows the same numbers;
 * every weight class is on the device the placement names and nowhere else. */
TEST(umem_accounting_matches_devices) {
    struct moecl_device_info *list = NULL;
    int n = 0;
    REQUIRE(moecl_devices_list(&list, &n) == MOECL_OK);
    if (n < 2) {
        moecl_devices_free(list);
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    }
    char name0[64], place[160];
    snprintf(name0, sizeof name0, "%s", list[0].name);
    snprintf(place, sizeof place, "experts=%s,lm_head=%s", list[1].name, list[1].name);
    moecl_devices_free(list);
    struct moecl_model_options mo = {name0, 0, place, 0, MOECL_NUMERICS_DEFAULT};
    struct moecl_model *m = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_OK);
    struct moecl_context *c = NULL;
    REQUIRE(moecl_context_create(m, 64, NULL, &c) == MOECL_OK);
    uint64_t sums[MOECL_UMEM_MAX_DEVICES][MOECL_MEM_N_CLASSES];
    memset(sums, 0, sizeof sums);
    for (int i = 0; i < moecl_umem_n_allocs(m->umem); i++) {
        const struct moecl_umem_alloc *a = moecl_umem_alloc_at(m->umem, i);
        sums[a->device][a->cls] += mem_size(a->mem);
    }
    struct moecl_memory_report r;
    REQUIRE(moecl_context_memory_report(c, &r) == MOECL_OK);
    REQUIRE(r.n_devices == 2);
    int mismatches = 0;
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < MOECL_MEM_N_CLASSES; k++) {
            mismatches += sums[d][k] != moecl_umem_device_bytes(m->umem, d, k);
            /* programs are not the manager's: the report takes the driver's binary sizes */
            if (k != MOECL_MEM_PROGRAMS)
                mismatches += sums[d][k] != r.devices[d].measured[k];
        }
    CHECK_EQ(mismatches, 0);
    CHECK(r.devices[0].measured[MOECL_MEM_PROGRAMS] > 0);
    CHECK(r.devices[1].measured[MOECL_MEM_PROGRAMS] > 0);
    /* slot 0 = device 0 (attention, embed), slot 1 = device 1 (experts, lm_head) */
    CHECK_STR_CONTAINS(r.devices[0].name, name0);
    CHECK(r.devices[0].measured[MOECL_MEM_ATTN_WEIGHTS] > 0);
    CHECK(r.devices[0].measured[MOECL_MEM_EMBED] > 0);
    CHECK_EQ(r.devices[0].measured[MOECL_MEM_EXPERT_WEIGHTS], 0);
    CHECK_EQ(r.devices[0].measured[MOECL_MEM_LM_HEAD], 0);
    CHECK(r.devices[1].measured[MOECL_MEM_EXPERT_WEIGHTS] > 0);
    CHECK(r.devices[1].measured[MOECL_MEM_LM_HEAD] > 0);
    CHECK_EQ(r.devices[1].measured[MOECL_MEM_ATTN_WEIGHTS], 0);
    CHECK_EQ(r.devices[1].measured[MOECL_MEM_KV_FULL] + r.devices[1].measured[MOECL_MEM_KV_SLIDING],
             0);
    /* the planned KV equals the measured one */
    CHECK_EQ(r.devices[0].measured[MOECL_MEM_KV_FULL], r.devices[0].planned[MOECL_MEM_KV_FULL]);
    CHECK_EQ(r.devices[0].measured[MOECL_MEM_KV_SLIDING],
             r.devices[0].planned[MOECL_MEM_KV_SLIDING]);
    /* every weight piece of a class is at least the plan's bytes of that class */
    for (int d = 0; d < 2; d++)
        for (int k = 0; k <= MOECL_MEM_NORMS_BIASES; k++)
            CHECK(r.devices[d].measured[k] >= r.devices[d].planned[k]);
    CHECK_EQ(r.handoffs_per_step[0], 2 * m->ckpt->config.n_layers + 1);
    CHECK(r.checkpoint_bytes > 0);
    moecl_context_release(c);
    moecl_model_release(m);
}

/* Impossible placements: an unknown device, a tensor larger than the device's largest buffer
 * (the stand-in), a context that does not fit the device. Each message names the device and
 * the numbers. */
TEST(umem_impossible_placements_refused) {
    struct moecl_model *m = NULL;
    struct moecl_model_options mo = {NULL, 0, "attn=amd:0", 0, MOECL_NUMERICS_DEFAULT};
    CHECK(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "'attn=amd:0'");
    CHECK(m == NULL);
    mo.place = "experts[7]=cpu";
    CHECK(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "layer 7 out of range");
    mo.place = NULL;
    mo.n_cpu_moe = 9;
    CHECK(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "--n-cpu-moe 9");
    mo.n_cpu_moe = 0;
    setenv("MOECL_MAX_ALLOC_BYTES", "8192", 1);
    CHECK(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_ERR_DEVICE_MEMORY);
    unsetenv("MOECL_MAX_ALLOC_BYTES");
    CHECK_STR_CONTAINS(moecl_last_error(), "does not fit: device ");
    CHECK_STR_CONTAINS(moecl_last_error(), "expert tensor of layer 0 is 16.4 kB");
    CHECK_STR_CONTAINS(moecl_last_error(), "over its largest buffer of 8.2 kB");
    CHECK(m == NULL);
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), NULL, &m) == MOECL_OK);
    struct moecl_context *c = NULL;
    /* 2^31 positions of KV on a device of a few GiB */
    CHECK(moecl_context_create(m, 1 << 30, NULL, &c) == MOECL_ERR_DEVICE_MEMORY);
    CHECK_STR_CONTAINS(moecl_last_error(), "but has");
    CHECK_STR_CONTAINS(moecl_last_error(), "KV");
    CHECK(c == NULL);
    moecl_model_release(m);
}

/* The forward pass over weights split at a 24 KiB stand-in limit gives the logits of the
 * unsplit run, bit for bit (the same bytes, other buffers). */
TEST(umem_split_weights_same_logits) {
    static const int32_t toks[] = {1, 17, 42, 99, 3, 250, 7, 64, 300, 12};
    int T = (int)(sizeof toks / sizeof toks[0]);
    float *out[2] = {NULL, NULL};
    int V = 0, pieces[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        if (run)
            setenv("MOECL_MAX_ALLOC_BYTES", "24576", 1);
        struct moecl_model *m = NULL;
        struct moecl_context *c = NULL;
        enum moecl_status st = moecl_model_load(fixture("affine_b4_g64"), NULL, &m);
        unsetenv("MOECL_MAX_ALLOC_BYTES");
        REQUIRE(st == MOECL_OK);
        V = moecl_model_vocab_size(m);
        pieces[run] = moecl_umem_weight_pieces(m->umem, 0);
        struct moecl_context_options co = {4, 0, 1, MOECL_KV_F32, 0};
        out[run] = malloc((size_t)T * (size_t)V * sizeof(float));
        REQUIRE(out[run] && moecl_context_create(m, T, &co, &c) == MOECL_OK);
        CHECK(moecl_context_eval_all(c, toks, T, out[run]) == MOECL_OK);
        moecl_context_release(c);
        moecl_model_release(m);
    }
    CHECK(pieces[1] > pieces[0]);
    CHECK(memcmp(out[0], out[1], (size_t)T * (size_t)V * sizeof(float)) == 0);
    free(out[0]);
    free(out[1]);
}

struct ctx_job {
    struct moecl_model *model;
    const int32_t *tokens;
    int n;
    float *logits; /* [vocab] out */
    enum moecl_status status;
};

static void *ctx_job_run(void *arg) {
    struct ctx_job *j = arg;
    struct moecl_context *c = NULL;
    j->status = moecl_context_create(j->model, 64, NULL, &c);
    if (j->status == MOECL_OK)
        j->status = moecl_context_eval(c, j->tokens, j->n);
    if (j->status == MOECL_OK)
        memcpy(j->logits, moecl_context_logits(c),
               (size_t)moecl_model_vocab_size(j->model) * sizeof(float));
    moecl_context_release(c);
    return NULL;
}

/* Contexts of one split model created, evaluated and released on four threads at once (the
 * manager's registry and counters are shared): every thread gets the logits of a lone run. */
TEST(umem_contexts_on_threads) {
    struct moecl_device_info *list = NULL;
    int n = 0;
    REQUIRE(moecl_devices_list(&list, &n) == MOECL_OK);
    moecl_devices_free(list);
    if (n < 2)
        SKIP("needs two OpenCL devices (make test sets POCL_DEVICES=\"pthread pthread\")");
    struct moecl_model_options mo = {NULL, 0, NULL, -1, MOECL_NUMERICS_DEFAULT}; /* --cpu-moe */
    struct moecl_model *m = NULL;
    REQUIRE(moecl_model_load(fixture("affine_b4_g64"), &mo, &m) == MOECL_OK);
    static const int32_t toks[] = {5, 6, 7, 8, 9, 10, 11, 12, 13};
    int V = moecl_model_vocab_size(m);
    struct ctx_job jobs[5];
    float *out = calloc(5 * (size_t)V, sizeof(float));
    REQUIRE(out != NULL);
    for (int i = 0; i < 5; i++)
        jobs[i] = (struct ctx_job){m, toks, 9, out + (size_t)i * V, MOECL_OK};
    ctx_job_run(&jobs[4]); /* alone */
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, ctx_job_run, &jobs[i]) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(jobs[i].status, MOECL_OK);
    for (int i = 0; i < 4; i++)
        CHECK(memcmp(out + (size_t)i * V, out + 4 * (size_t)V, (size_t)V * sizeof(float)) == 0);
    CHECK_EQ(moecl_umem_n_allocs(m->umem),
             moecl_umem_weight_pieces(m->umem, 0) + moecl_umem_weight_pieces(m->umem, 1));
    free(out);
    moecl_model_release(m);
}
