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
