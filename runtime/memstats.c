/* Memory statistics for the generate/chat stats line: the process's peak resident set and the
 * bytes a context's device holds (weight buffers, KV cache, activations). Reads the model and
 * context internals (runtime/model_internal.h) without changing them. */
#include "model_internal.h"
#include "safetensors.h"
#include "umem.h"

#include "moecl_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t moecl_host_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

static int is_weight_class(int c) {
    return c <= MOECL_MEM_NORMS_BIASES;
}

enum moecl_status moecl_context_memory(const struct moecl_context *ctx,
                                       struct moecl_memory_stats *stats_out) {
    if (!stats_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context memory: NULL output");
    memset(stats_out, 0, sizeof *stats_out);
    if (!ctx || !ctx->model)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context memory: NULL context");
    const struct moecl_model *m = ctx->model;
    stats_out->host_peak_rss_bytes = moecl_host_peak_rss_bytes();
    stats_out->weight_zero_copy = 1;
    for (int d = 0; d < m->n_devs; d++) {
        uint64_t w = 0;
        for (int c = 0; c < MOECL_MEM_N_CLASSES; c++)
            if (is_weight_class(c))
                w += moecl_umem_device_bytes(m->umem, d, (enum moecl_mem_class)c);
        stats_out->weight_bytes += w;
        if (!m->devs[d].zero_copy) {
            stats_out->weight_copied_bytes += w;
            stats_out->weight_zero_copy = 0;
        }
    }
    stats_out->kv_bytes = ctx->kv_bytes;
    stats_out->act_bytes = ctx->act_bytes;
    stats_out->device_bytes = stats_out->weight_bytes + ctx->kv_bytes + ctx->act_bytes;
    return MOECL_OK;
}

uint64_t moecl_host_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Resident bytes of a mapping (mincore). */
static uint64_t resident_bytes(const void *addr, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    if (!addr || !n || page <= 0)
        return 0;
    uintptr_t a = (uintptr_t)addr & ~((uintptr_t)page - 1);
    size_t len = n + ((uintptr_t)addr - a);
    size_t n_pages = (len + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = malloc(n_pages);
    uint64_t r = 0;
    if (vec && mincore((void *)a, len, vec) == 0)
        for (size_t i = 0; i < n_pages; i++)
            r += vec[i] & 1;
    free(vec);
    return r * (uint64_t)page;
}

/* Bytes of one built program's binary for its device (CL_PROGRAM_BINARY_SIZES), 0 if none. */
static uint64_t program_binary_bytes(cl_program prog) {
    size_t sizes[4] = {0};
    cl_uint n_devs = 0;
    if (!prog ||
        clGetProgramInfo(prog, CL_PROGRAM_NUM_DEVICES, sizeof n_devs, &n_devs, NULL) !=
            CL_SUCCESS ||
        n_devs == 0 || n_devs > 4 ||
        clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, n_devs * sizeof sizes[0], sizes, NULL) !=
            CL_SUCCESS)
        return 0;
    uint64_t n = 0;
    for (cl_uint i = 0; i < n_devs; i++)
        n += sizes[i];
    return n;
}

enum moecl_status moecl_context_memory_report(const struct moecl_context *ctx,
                                              struct moecl_memory_report *r) {
    if (!r)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "memory report: NULL output");
    memset(r, 0, sizeof *r);
    if (!ctx || !ctx->model)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "memory report: NULL context");
    const struct moecl_model *m = ctx->model;
    snprintf(r->placement, sizeof r->placement, "%s", m->place_desc);
    r->n_devices = m->n_devs;
    for (int d = 0; d < m->n_devs && d < MOECL_MAX_DEVICES; d++) {
        struct moecl_memory_device *o = &r->devices[d];
        const struct moecl_mdev *md = &m->devs[d];
        snprintf(o->name, sizeof o->name, "%s", md->cl.info.name);
        o->zero_copy = md->zero_copy;
        o->weight_pieces = moecl_umem_weight_pieces(m->umem, d);
        o->global_mem_bytes = md->cl.info.global_mem_bytes;
        o->max_alloc_bytes = moecl_umem_max_alloc(m->umem, d);
        const struct moecl_memplan_device *pd = moecl_memplan_find(&ctx->plan, md->cl.info.index);
        for (int c = 0; c < MOECL_MEM_N_CLASSES; c++) {
            o->measured[c] = moecl_umem_device_bytes(m->umem, d, (enum moecl_mem_class)c);
            o->planned[c] = pd ? pd->bytes[c] : 0;
        }
        /* the manager does not hold programs: their binaries' sizes as the driver reports */
        if (!o->measured[MOECL_MEM_PROGRAMS]) {
            uint64_t pb = program_binary_bytes(md->programs.core);
            for (int f = 0; f < md->programs.n_formats; f++)
                pb += program_binary_bytes(md->programs.format_programs[f]);
            o->measured[MOECL_MEM_PROGRAMS] = pb;
        }
    }
    r->handoffs_per_step[0] = m->plan.n_handoffs[MOECL_HANDOFF_EVENT];
    r->handoffs_per_step[1] = m->plan.n_handoffs[MOECL_HANDOFF_HOST];
    for (int c = 0; c < MOECL_MEM_N_CLASSES; c++)
        r->host_buffer_bytes[c] = moecl_umem_host_bytes(m->umem, (enum moecl_mem_class)c);
    r->host_pinned_bytes = moecl_umem_pinned_bytes(m->umem);
    r->moved_bytes = moecl_umem_moved_bytes(m->umem);
    r->uploaded_bytes = moecl_umem_uploaded_bytes(m->umem);
    r->n_tokens = ctx->n_tokens;
    r->n_steps = ctx->n_steps;
    r->host_rss_bytes = moecl_host_rss_bytes();
    r->host_peak_rss_bytes = moecl_host_peak_rss_bytes();
    for (int i = 0; i < m->ckpt->n_files; i++) {
        r->checkpoint_bytes += m->ckpt->files[i]->size;
        r->checkpoint_resident_bytes +=
            resident_bytes(m->ckpt->files[i]->bytes, m->ckpt->files[i]->size);
    }
    return MOECL_OK;
}

static const char *const mem_class_names[MOECL_MEM_N_CLASSES][2] = {
    [MOECL_MEM_ATTN_WEIGHTS] = {"attention weights", "attn"},
    [MOECL_MEM_EXPERT_WEIGHTS] = {"expert weights", "experts"},
    [MOECL_MEM_EMBED] = {"embeddings", "embed"},
    [MOECL_MEM_LM_HEAD] = {"lm_head", "lm_head"},
    [MOECL_MEM_ROUTER] = {"router", "router"},
    [MOECL_MEM_NORMS_BIASES] = {"norms and biases", "norms"},
    [MOECL_MEM_KV_FULL] = {"KV cache (full layers)", "kv_full"},
    [MOECL_MEM_KV_SLIDING] = {"KV cache (sliding layers)", "kv_sliding"},
    [MOECL_MEM_ACTIVATIONS] = {"activations", "act"},
    [MOECL_MEM_SCRATCH] = {"scratch", "scratch"},
    [MOECL_MEM_PROGRAMS] = {"program binaries", "programs"},
};

const char *moecl_mem_class_name(enum moecl_mem_class c) {
    return (unsigned)c < MOECL_MEM_N_CLASSES ? mem_class_names[c][0] : "?";
}

const char *moecl_mem_class_id(enum moecl_mem_class c) {
    return (unsigned)c < MOECL_MEM_N_CLASSES ? mem_class_names[c][1] : "?";
}
