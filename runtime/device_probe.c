/* Device probes for `moecl bench`: streaming read bandwidth and float32 FMA throughput, measured
 * with OpenCL profiling events (device time, not host time).
 *
 * Work decomposition follows spec opencl-platforms.md (addendum): on CPU devices many work-groups
 * of one work-item, each summing a contiguous range; on GPUs a grid-stride loop with 256-wide
 * work-groups. */
#include "cl_program.h"
#include "moecl.h"

#include <stdlib.h>
#include <string.h>

struct probe {
    struct moecl_cl_device dev;
    cl_context ctx;
    cl_command_queue q;
    cl_program prog;
};

static void probe_close(struct probe *p) {
    if (p->prog)
        clReleaseProgram(p->prog);
    if (p->q)
        clReleaseCommandQueue(p->q);
    if (p->ctx)
        clReleaseContext(p->ctx);
}

static enum moecl_status probe_open(struct probe *p, int device_index) {
    enum moecl_status status = MOECL_OK;
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    cl_int err;
    memset(p, 0, sizeof *p);
    MOECL_TRY(moecl_cl_devices_enumerate(&devs, &n));
    if (device_index < 0 || device_index >= n) {
        status = moecl_error_set(MOECL_ERR_NOT_FOUND, "no device with index %d (%d devices)",
                                 device_index, n);
        goto cleanup;
    }
    p->dev = devs[device_index];
    p->ctx = clCreateContext(NULL, 1, &p->dev.device, NULL, NULL, &err);
    MOECL_CL_CHECK(err, "clCreateContext");
    cl_queue_properties props[] = {CL_QUEUE_PROPERTIES, CL_QUEUE_PROFILING_ENABLE, 0};
    p->q = clCreateCommandQueueWithProperties(p->ctx, p->dev.device, props, &err);
    MOECL_CL_CHECK(err, "clCreateCommandQueueWithProperties");
    const char *files[] = {"bench.cl"};
    const char *opts = p->dev.info.type == MOECL_DEVICE_GPU ? "-DSTRIDED" : "";
    MOECL_TRY(moecl_cl_program_build(p->ctx, p->dev.device, files, 1, opts, &p->prog, NULL));
cleanup:
    free(devs);
    if (status != MOECL_OK)
        probe_close(p);
    return status;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs kernel k reps+1 times (the first is a warm-up) and returns the device seconds of each. */
static enum moecl_status time_kernel(struct probe *p, cl_kernel k, size_t global, size_t local,
                                     int reps, double *secs) {
    enum moecl_status status = MOECL_OK;
    for (int r = -1; r < reps; r++) {
        cl_event ev = NULL;
        MOECL_CL_CALL(
            clEnqueueNDRangeKernel(p->q, k, 1, NULL, &global, local ? &local : NULL, 0, NULL, &ev));
        cl_int werr = clWaitForEvents(1, &ev);
        cl_ulong t0 = 0, t1 = 0;
        if (werr == CL_SUCCESS) {
            clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
            clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        }
        clReleaseEvent(ev);
        MOECL_CL_CHECK(werr, "clWaitForEvents");
        if (r >= 0)
            secs[r] = (double)(t1 - t0) * 1e-9;
    }
cleanup:
    return status;
}

enum moecl_status moecl_device_probe_bandwidth(int device_index, uint64_t bytes, int reps,
                                               double *median_bytes_per_s_out,
                                               double *best_bytes_per_s_out) {
    enum moecl_status status = MOECL_OK;
    struct probe p;
    cl_mem src = NULL, out = NULL;
    cl_kernel k = NULL;
    double *secs = NULL;
    cl_int err;
    *median_bytes_per_s_out = 0;
    if (best_bytes_per_s_out)
        *best_bytes_per_s_out = 0;
    if (reps < 1 || reps > 1000)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "bandwidth probe: reps %d", reps);
    MOECL_TRY(probe_open(&p, device_index));
    if (bytes > p.dev.info.max_alloc_bytes)
        bytes = p.dev.info.max_alloc_bytes;
    bytes &= ~(uint64_t)63;
    cl_ulong n16 = bytes / 64;
    int gpu = p.dev.info.type == MOECL_DEVICE_GPU;
    size_t items = gpu ? (size_t)p.dev.info.compute_units * 2048 : p.dev.info.compute_units * 8u;
    size_t local = gpu ? 256 : 1;
    cl_ulong per_item = (n16 + items - 1) / items;
    src = clCreateBuffer(p.ctx, CL_MEM_READ_ONLY, (size_t)bytes, NULL, &err);
    MOECL_CL_CHECK(err, "clCreateBuffer(bandwidth source)");
    out = clCreateBuffer(p.ctx, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
    MOECL_CL_CHECK(err, "clCreateBuffer(bandwidth sums)");
    float one = 1.0f;
    MOECL_CL_CALL(clEnqueueFillBuffer(p.q, src, &one, sizeof one, 0, (size_t)bytes, 0, NULL, NULL));
    k = clCreateKernel(p.prog, "stream_read_f32", &err);
    MOECL_CL_CHECK(err, "clCreateKernel(stream_read_f32)");
    MOECL_CL_CALL(clSetKernelArg(k, 0, sizeof src, &src));
    MOECL_CL_CALL(clSetKernelArg(k, 1, sizeof n16, &n16));
    MOECL_CL_CALL(clSetKernelArg(k, 2, sizeof per_item, &per_item));
    MOECL_CL_CALL(clSetKernelArg(k, 3, sizeof out, &out));
    secs = calloc((size_t)reps, sizeof *secs);
    if (!secs) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory");
        goto cleanup;
    }
    MOECL_TRY(time_kernel(&p, k, items, local, reps, secs));
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    *median_bytes_per_s_out = (double)bytes / secs[reps / 2];
    if (best_bytes_per_s_out)
        *best_bytes_per_s_out = (double)bytes / secs[0];
cleanup:
    free(secs);
    if (k)
        clReleaseKernel(k);
    if (src)
        clReleaseMemObject(src);
    if (out)
        clReleaseMemObject(out);
    probe_close(&p);
    return status;
}

enum moecl_status moecl_device_probe_fma(int device_index, int reps, double *median_flops_out) {
    enum moecl_status status = MOECL_OK;
    struct probe p;
    cl_mem out = NULL;
    cl_kernel k = NULL;
    double *secs = NULL;
    cl_int err;
    *median_flops_out = 0;
    if (reps < 1 || reps > 1000)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "FMA probe: reps %d", reps);
    MOECL_TRY(probe_open(&p, device_index));
    int gpu = p.dev.info.type == MOECL_DEVICE_GPU;
    size_t items = gpu ? (size_t)p.dev.info.compute_units * 4096 : p.dev.info.compute_units * 8u;
    size_t local = gpu ? 256 : 1;
    /* CPU: 2^24 rounds of 256 flops per work-item, 0.15-0.3 s per run on 2 cores; 2^17 ran
     * a few milliseconds, and PoCL's launch and thread wake-up made the result bimodal (117 or
     * 233 GFLOP/s on one 2-core Zen 4 VM, run to run) */
    cl_uint n_iter = gpu ? 2048 : 1u << 24;
    float a = 0.999f, b = 0.001f;
    out = clCreateBuffer(p.ctx, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
    MOECL_CL_CHECK(err, "clCreateBuffer(fma sums)");
    k = clCreateKernel(p.prog, "fma_peak_f32", &err);
    MOECL_CL_CHECK(err, "clCreateKernel(fma_peak_f32)");
    MOECL_CL_CALL(clSetKernelArg(k, 0, sizeof out, &out));
    MOECL_CL_CALL(clSetKernelArg(k, 1, sizeof n_iter, &n_iter));
    MOECL_CL_CALL(clSetKernelArg(k, 2, sizeof a, &a));
    MOECL_CL_CALL(clSetKernelArg(k, 3, sizeof b, &b));
    secs = calloc((size_t)reps, sizeof *secs);
    if (!secs) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory");
        goto cleanup;
    }
    MOECL_TRY(time_kernel(&p, k, items, local, reps, secs));
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    double flops = (double)items * (double)n_iter * 2.0 * 16.0 * 8.0;
    *median_flops_out = flops / secs[reps / 2];
cleanup:
    free(secs);
    if (k)
        clReleaseKernel(k);
    if (out)
        clReleaseMemObject(out);
    probe_close(&p);
    return status;
}
