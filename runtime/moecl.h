/* moecl — public API.
 *
 * moecl runs gpt-oss mixture-of-experts models on OpenCL devices. This header is the only one
 * tools/ may include; it names no OpenCL type.
 *
 * Conventions (see STYLE.md):
 * - Every fallible function returns enum moecl_status; outputs are trailing *_out parameters,
 *   set to NULL/0 on entry and written only on success.
 * - On failure, moecl_last_error() returns a message naming what failed, on what, and why. The
 *   message is per thread and stays valid until the next failing call on the same thread.
 * - Objects are opaque; each has a create/release (or load/release) pair; release accepts NULL.
 */
#ifndef MOECL_H
#define MOECL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOECL_WUR __attribute__((warn_unused_result))

enum moecl_status {
    MOECL_OK = 0,
    MOECL_ERR_INVALID_ARG,   /* a caller passed something impossible */
    MOECL_ERR_IO,            /* a file could not be opened, read, mapped or written */
    MOECL_ERR_FORMAT,        /* a file's content is malformed (safetensors, JSON, tiktoken) */
    MOECL_ERR_UNSUPPORTED,   /* well-formed but not something moecl handles */
    MOECL_ERR_SHAPE,         /* a tensor's dtype or shape disagrees with the config */
    MOECL_ERR_NOT_FOUND,     /* a tensor, field, device or file is missing */
    MOECL_ERR_NO_MEMORY,     /* a host allocation failed */
    MOECL_ERR_NO_DEVICE,     /* no OpenCL platform or device */
    MOECL_ERR_CL,            /* an OpenCL call failed; the message has the call and CL name */
    MOECL_ERR_BUILD,         /* an OpenCL program failed to build; the message has the log */
    MOECL_ERR_PLACEMENT,     /* a placement cannot be satisfied */
    MOECL_ERR_DEVICE_MEMORY, /* a device cannot hold what was asked of it */
    MOECL_ERR_INTERNAL,      /* a bug in moecl */
    MOECL_STATUS_COUNT
};

/* The status' symbolic name, e.g. "MOECL_ERR_FORMAT". Never NULL. */
const char *moecl_status_str(enum moecl_status status);

/* The detailed message of the last failure on this thread ("" if none). */
const char *moecl_last_error(void);

/* ------------------------------------------------------------------ devices */

enum moecl_device_type {
    MOECL_DEVICE_CPU,
    MOECL_DEVICE_GPU,
    MOECL_DEVICE_ACCELERATOR,
    MOECL_DEVICE_OTHER,
};

/* One OpenCL device as discovery sees it. `name` ("pocl:0", "nvidia:0") and `index` (position
 * in the global list, platforms in ICD order) are what placement options accept. */
struct moecl_device_info {
    int index;
    char name[64];
    int platform_index;
    int index_in_platform;
    enum moecl_device_type type;
    char device_name[256];
    char vendor[256];
    char platform_name[256];
    char platform_version[256];
    char device_version[256];
    char driver_version[256];
    char opencl_c_version[256];
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_work_group_size;
    int host_unified_memory;
    uint64_t svm_capabilities; /* CL_DEVICE_SVM_* bits: 1 coarse buffer, 2 fine buffer, 4 fine
                                  system, 8 atomics */
    int fp16;                  /* cl_khr_fp16 advertised */
    int subgroups;             /* cl_khr_subgroups or cl_intel_subgroups advertised */
};

/* Lists every device of every platform. *devices_out is malloc'd (free with
 * moecl_devices_free). With no platform or no device: MOECL_ERR_NO_DEVICE, and the message says
 * how to install PoCL. */
MOECL_WUR enum moecl_status moecl_devices_list(struct moecl_device_info **devices_out, int *n_out);
void moecl_devices_free(struct moecl_device_info *devices);

/* "cpu", "gpu", "accelerator" or "other". */
const char *moecl_device_type_str(enum moecl_device_type type);

/* Resolves a device spec as placement accepts it: "cpu" (first CPU device), "gpu" (first GPU),
 * a name ("pocl:1", "nvidia:0") or a global index ("2"). Returns the index into the list. */
MOECL_WUR enum moecl_status moecl_device_resolve(const struct moecl_device_info *devices, int n,
                                                 const char *spec, int *index_out);

/* ------------------------------------------------------------------ sampler */

/* How the next token is drawn from a row of logits, with mlx-lm's semantics (make_sampler):
 * top_p, min_p and top_k filter the UNTEMPERED distribution (their masks intersect), then the
 * survivors are drawn from softmax(logprob / temperature). */
struct moecl_sampler_params {
    float temperature; /* 0: greedy (argmax, lowest id on ties); > 0: sample */
    float top_p;       /* keep the smallest most-probable set whose mass reaches top_p; active
                          only for 0 < top_p < 1 */
    float min_p;       /* keep tokens with p >= min_p * p_max; 0: off; 1: only ties with the max */
    int top_k;         /* keep the top_k most probable; 0 (or >= vocabulary): off */
    uint64_t seed;     /* the draws are a pure function of the seed and the logits */
};

/* mlx-lm's defaults: temperature 0, top_p 1, min_p 0, top_k 0, seed 0. */
void moecl_sampler_params_init(struct moecl_sampler_params *params);

/* A sampler owns its random stream and scratch for n_vocab logits. */
struct moecl_sampler;

MOECL_WUR enum moecl_status moecl_sampler_create(const struct moecl_sampler_params *params,
                                                 int n_vocab, struct moecl_sampler **sampler_out);
void moecl_sampler_release(struct moecl_sampler *sampler);

/* Restarts the random stream as if the sampler had just been created with this seed. */
void moecl_sampler_reseed(struct moecl_sampler *sampler, uint64_t seed);

/* Draws one token from logits[0..n) (n <= n_vocab). NaN or +inf logits, or no finite logit,
 * give MOECL_ERR_INVALID_ARG. */
MOECL_WUR enum moecl_status moecl_sampler_sample(struct moecl_sampler *sampler, const float *logits,
                                                 int n, int32_t *token_out);

/* The exact distribution the next draw uses: probs_out[i] for every i < n (0 for filtered
 * tokens; at temperature 0, 1 for the argmax). Does not advance the random stream. */
MOECL_WUR enum moecl_status moecl_sampler_distribution(struct moecl_sampler *sampler,
                                                       const float *logits, int n,
                                                       double *probs_out);

/* ------------------------------------------------------------------ device probes */

/* Streaming read bandwidth of device `device_index` (discovery order) over a device buffer of
 * `bytes` (clamped to the largest buffer), timed with profiling events over `reps` runs after a
 * warm-up: median and best, in bytes per second. */
MOECL_WUR enum moecl_status moecl_device_probe_bandwidth(int device_index, uint64_t bytes, int reps,
                                                         double *median_bytes_per_s_out,
                                                         double *best_bytes_per_s_out);

/* Float32 FMA throughput (flop/s, an FMA counting 2) of a compute-bound kernel; median of reps. */
MOECL_WUR enum moecl_status moecl_device_probe_fma(int device_index, int reps,
                                                   double *median_flops_out);

#ifdef __cplusplus
}
#endif
#endif
