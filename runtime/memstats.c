/* Memory statistics for the generate/chat stats line: the process's peak resident set and the
 * bytes a context's device holds (weight buffers, KV cache, activations). Reads the model and
 * context internals (runtime/model_internal.h) without changing them. */
#include "model_internal.h"
#include "weights.h"

#include "moecl_error.h"

#include <string.h>
#include <sys/resource.h>

uint64_t moecl_host_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

enum moecl_status moecl_context_memory(const struct moecl_context *ctx,
                                       struct moecl_memory_stats *stats_out) {
    if (!stats_out)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context memory: NULL output");
    memset(stats_out, 0, sizeof *stats_out);
    if (!ctx || !ctx->model)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "context memory: NULL context");
    const struct moecl_weights *w = ctx->model->weights;
    stats_out->host_peak_rss_bytes = moecl_host_peak_rss_bytes();
    if (w) {
        stats_out->weight_bytes = w->covered_bytes;
        stats_out->weight_copied_bytes = w->device_bytes;
        stats_out->weight_zero_copy = w->zero_copy;
    }
    stats_out->kv_bytes = ctx->kv_bytes;
    stats_out->act_bytes = ctx->act_bytes;
    stats_out->device_bytes = stats_out->weight_bytes + ctx->kv_bytes + ctx->act_bytes;
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
