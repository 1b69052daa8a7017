/* Typed launchers of the forward pass (kernels.h; programs and kernel objects: kernels_build.c).
 *
 * Local sizes: PoCL runs one work-group per thread and finds its parallelism in the number of
 * work-groups, so row-parallel kernels use a small fixed local size (8) and many groups; a
 * fixed size per kernel also avoids PoCL's per-local-size re-specialisation. Global sizes are
 * rounded up to a multiple and the kernels guard the excess. */
#include "kernels.h"

#include "cl_program.h"
#include "kernels_launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ launch helpers */

/* Query tokens up to which GPUs take the fast attention kernel. */
#define MOECL_GPU_FAST_ATTN_TOKENS 16

static size_t round_up(size_t n, size_t m) {
    return (n + m - 1) / m * m;
}

/* With profiling on, the launch's event is kept with its op class until moecl_prof_collect. */
enum moecl_status moecl_kenqueue(cl_command_queue q, const struct moecl_kernels *k, cl_kernel kern,
                                 const char *name, int op_class, int dims, size_t g0, size_t g1,
                                 size_t l0) {
    enum moecl_status status = MOECL_OK;
    size_t global[2] = {round_up(g0 ? g0 : 1, l0), g1 ? g1 : 1};
    size_t local[2] = {l0, 1};
    struct moecl_prof *prof = k->prof;
    cl_event ev = NULL;
    if (prof && prof->n == prof->cap) {
        int cap = prof->cap ? prof->cap * 2 : 1024;
        cl_event *nev = realloc(prof->ev, (size_t)cap * sizeof *nev);
        if (nev)
            prof->ev = nev;
        unsigned char *ncls = realloc(prof->cls, (size_t)cap);
        if (ncls)
            prof->cls = ncls;
        if (!nev || !ncls)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "profiling: out of memory");
        prof->cap = cap;
    }
    cl_int err = clEnqueueNDRangeKernel(q, kern, (cl_uint)dims, NULL, global, local, 0, NULL,
                                        prof ? &ev : NULL);
    if (err == CL_SUCCESS && prof) {
        prof->ev[prof->n] = ev;
        prof->cls[prof->n++] = (unsigned char)op_class;
    }
    /* $MOECL_SYNC_LAUNCH: wait after every kernel, so an asynchronous fault is reported by
     * the kernel that caused it (debugging aid; slow). */
    static int sync_launch = -1; /* read once: this runs for every kernel of every token */
    if (sync_launch < 0)
        sync_launch = getenv("MOECL_SYNC_LAUNCH") != NULL;
    if (err == CL_SUCCESS && sync_launch)
        err = clFinish(q);
    if (err != CL_SUCCESS)
        status = moecl_error_set(MOECL_ERR_CL, "enqueue %s (global %zu x %zu) failed: %s", name,
                                 global[0], global[1], moecl_cl_err_name(err));
    return status;
}

/* The op class of a product, from its module. */
int moecl_matmul_class(const struct moecl_qweight *w) {
    if (w->n_experts > 0)
        return MOECL_OPC_EXPERTS;
    if (w->name && strstr(w->name, "router"))
        return MOECL_OPC_ROUTER;
    if (w->name && strstr(w->name, "lm_head"))
        return MOECL_OPC_LM_HEAD;
    return MOECL_OPC_ATTN_PROJ;
}

enum moecl_status moecl_prof_collect(struct moecl_prof *prof) {
    enum moecl_status status = MOECL_OK;
    if (!prof)
        return MOECL_OK;
    for (int i = 0; i < prof->n; i++) {
        cl_ulong t0 = 0, t1 = 0;
        cl_int e1 = clWaitForEvents(1, &prof->ev[i]);
        if (e1 == CL_SUCCESS)
            e1 = clGetEventProfilingInfo(prof->ev[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0,
                                         NULL);
        if (e1 == CL_SUCCESS)
            e1 = clGetEventProfilingInfo(prof->ev[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                         NULL);
        if (e1 == CL_SUCCESS && t1 >= t0) {
            prof->seconds[prof->cls[i]] += (double)(t1 - t0) * 1e-9;
            prof->launches[prof->cls[i]]++;
        } else if (status == MOECL_OK) {
            status =
                moecl_error_set(MOECL_ERR_CL, "profiling event %d: %s", i, moecl_cl_err_name(e1));
        }
        clReleaseEvent(prof->ev[i]);
    }
    prof->n = 0;
    return status;
}

void moecl_prof_free(struct moecl_prof *prof) {
    if (!prof)
        return;
    for (int i = 0; i < prof->n; i++)
        clReleaseEvent(prof->ev[i]);
    free(prof->ev);
    free(prof->cls);
    free(prof);
}

enum moecl_status moecl_bad_shape(const char *what) {
    return moecl_error_set(MOECL_ERR_INVALID_ARG, "kernel launch: %s", what);
}

/* ------------------------------------------------------------------ launchers */

/* The CPU decomposition of a product: ~64 blocks of whole vectors of rows (a.rows_per_item, a
 * multiple of `lanes`), every vector in one column (a.tile = a.n_vec); columns are the experts
 * (n_experts > 0, products with ids) or one. */
static void cpu_row_blocks(struct moecl_qmm_args *a, int lanes, int n_experts, size_t *g0,
                           size_t *g1) {
    uint32_t rpi = (a->rows + 63) / 64;
    a->rows_per_item = (rpi + (uint32_t)lanes - 1) / (uint32_t)lanes * (uint32_t)lanes;
    a->tile = a->n_vec;
    *g0 = (a->rows + a->rows_per_item - 1) / a->rows_per_item;
    *g1 = n_experts > 0 ? (size_t)n_experts : 1;
}

/* matmul_fmw's alignments: rows, experts and the weight offset on 16 bytes, rows of whole
 * 16-byte units, the input rows on 4 floats (float4 loads). */
int moecl_fmw_aligned(const struct moecl_dev_qweight *dw, const struct moecl_qmm_args *a) {
    const struct moecl_qweight *w = dw->w;
    return dw->w_offset % 16 == 0 && w->weight_row_stride % 16 == 0 &&
           w->weight_expert_stride % 16 == 0 && (size_t)a->cols * (size_t)w->bits % 128 == 0 &&
           a->x_offset % 4 == 0 && a->x_stride % 4 == 0;
}

/* At least `bytes` of fast-numerics scratch on q's context. A replaced buffer is released at
 * once: OpenCL keeps it until the commands already queued with it have finished. */
static enum moecl_status fm_scratch_reserve(cl_command_queue q, struct moecl_fm_scratch *s,
                                            size_t bytes) {
    enum moecl_status status = MOECL_OK;
    if (s->buf && s->bytes >= bytes)
        return MOECL_OK;
    cl_context ctx = NULL;
    MOECL_CL_CALL(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof ctx, &ctx, NULL));
    if (s->buf)
        clReleaseMemObject(s->buf);
    s->buf = NULL;
    s->bytes = 0;
    bytes = bytes < 4096 ? 4096 : bytes + bytes / 4; /* room for the next, slightly larger one */
    cl_int err;
    s->buf = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        s->buf = NULL;
        return moecl_error_set(MOECL_ERR_CL,
                               "fast numerics scratch: clCreateBuffer(%zu bytes) failed: %s", bytes,
                               moecl_cl_err_name(err));
    }
    s->bytes = bytes;
cleanup:
    return status;
}

/* A product's kernel arguments (struct moecl_qmm_args) before the launcher picks a kernel. */
enum moecl_status moecl_set_weight_args(cl_kernel kern, cl_uint first,
                                        const struct moecl_dev_qweight *dw) {
    enum moecl_status status = MOECL_OK;
    ARG(kern, first, dw->wmem);
    ARG(kern, first + 1, dw->smem);
    ARG(kern, first + 2, dw->bmem);
    ARG(kern, first + 3, dw->biasmem);
cleanup:
    return status;
}

struct moecl_qmm_args moecl_qmm_args_of(const struct moecl_dev_qweight *dw, uint32_t x_offset,
                                        uint32_t x_stride, uint32_t x_div, int ids,
                                        uint32_t y_stride, uint32_t n_vec, int bias_mode) {
    const struct moecl_qweight *w = dw->w;
    struct moecl_qmm_args a;
    memset(&a, 0, sizeof a);
    a.w_offset = dw->w_offset;
    a.w_row_stride = w->weight_row_stride;
    a.w_expert_stride = w->weight_expert_stride;
    a.s_offset = dw->s_offset;
    a.s_row_stride = w->scales_row_stride;
    a.s_expert_stride = w->scales_expert_stride;
    a.b_offset = dw->b_offset;
    a.b_row_stride = w->biases_row_stride;
    a.b_expert_stride = w->biases_expert_stride;
    a.bias_offset = dw->bias_offset;
    a.bias_expert_stride = w->bias_expert_stride;
    a.rows = (uint32_t)w->rows;
    a.cols = (uint32_t)w->cols;
    a.n_vec = n_vec;
    a.x_div = x_div;
    a.x_stride = x_stride;
    a.y_stride = y_stride;
    a.use_ids = ids ? 1u : 0u;
    a.bias_mode = (uint32_t)bias_mode;
    a.bias_dt = w->bias ? (uint32_t)moecl_dt_code(w->bias_dtype) : 0u;
    a.tile = ids ? 1u : 4u;
    a.x_offset = x_offset;
    return a;
}

/* matmul_fmb's tiles of vectors (qmatmul_fmb_cpu.cl: FB_TV, FB_R, FB_MAX_EXPERTS) */
#define FMB_TILE 32u
#define FMB_ROWS 12u
#define FMB_MAX_EXPERTS 256

int moecl_matmul_fmb_fits(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                          uint32_t n_vec, int ids) {
    const struct moecl_qweight *w = dw->w;
    if (!k->fmb_min || !k->fast_numerics || dw->format < 0 || dw->format >= k->n_formats ||
        !k->formats[dw->format].matmul_fmb)
        return 0;
    if (ids)
        return w->n_experts <= FMB_MAX_EXPERTS &&
               (size_t)n_vec >= (size_t)k->fmb_min * (size_t)w->n_experts;
    return n_vec >= k->fmb_min;
}

/* matmul_fmb: the vectors transposed into tiles of FMB_TILE (one work-item per expert or tile),
 * then (row block, expert or tile) work-items of whole passes of FMB_ROWS rows. */
static enum moecl_status launch_fmb(cl_command_queue q, const struct moecl_kernels *k,
                                    const struct moecl_dev_qweight *dw, cl_mem x, cl_mem ids,
                                    cl_mem y, struct moecl_qmm_args *a, size_t kp) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_qweight *w = dw->w;
    cl_kernel prep = k->formats[dw->format].matmul_fmb_prep;
    cl_kernel kern = k->formats[dw->format].matmul_fmb;
    if (!prep || !kern || !k->fm_scratch)
        return moecl_bad_shape("matmul: matmul_fmb without its transposition kernel or scratch");
    size_t tiles = (a->n_vec + FMB_TILE - 1) / FMB_TILE;
    size_t slots = ids ? tiles + (size_t)w->n_experts : tiles; /* a partial tile per expert */
    size_t cols = ids ? (size_t)w->n_experts : tiles;
    MOECL_TRY(fm_scratch_reserve(q, k->fm_scratch, slots * FMB_TILE * kp * sizeof(float)));
    cl_mem idm = ids ? ids : x;
    ARG(prep, 0, x);
    ARG(prep, 1, k->fm_scratch->buf);
    ARG(prep, 2, idm);
    ARG(prep, 3, *a);
    MOECL_TRY(moecl_kenqueue(q, k, prep, "matmul_fmb_prep", moecl_matmul_class(w), 1, cols, 1, 1));
    /* ~64 row blocks (fewer when there are many tiles), whole passes each */
    size_t blocks = ids || tiles < 4 ? 64 : 16;
    uint32_t rpi = (uint32_t)((a->rows + blocks - 1) / blocks);
    a->rows_per_item = (rpi + FMB_ROWS - 1) / FMB_ROWS * FMB_ROWS;
    size_t g0 = (a->rows + a->rows_per_item - 1) / a->rows_per_item;
    MOECL_TRY(moecl_set_weight_args(kern, 0, dw));
    ARG(kern, 4, k->fm_scratch->buf);
    ARG(kern, 5, y);
    ARG(kern, 6, idm);
    ARG(kern, 7, *a);
    status = moecl_kenqueue(q, k, kern, "matmul", moecl_matmul_class(w), 2, g0, cols, 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_matmul(cl_command_queue q, const struct moecl_kernels *k,
                                      const struct moecl_dev_qweight *dw, cl_mem x,
                                      uint32_t x_offset, uint32_t x_stride, uint32_t x_div,
                                      cl_mem ids, cl_mem y, uint32_t y_stride, uint32_t n_vec,
                                      int bias_mode) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_qweight *w = dw->w;
    if (dw->format < 0 || dw->format >= k->n_formats)
        return moecl_bad_shape("matmul: format index out of range");
    if (!n_vec || !x_div || x_stride < w->cols || y_stride < w->rows)
        return moecl_bad_shape("matmul: empty, or strides smaller than the module's shape");
    if (ids && w->n_experts <= 0)
        return moecl_bad_shape("matmul: expert ids given for a dense module");
    if (bias_mode != MOECL_BIAS_NONE && !w->bias)
        bias_mode = MOECL_BIAS_NONE;
    cl_kernel kern = k->formats[dw->format].matmul;
    struct moecl_qmm_args a =
        moecl_qmm_args_of(dw, x_offset, x_stride, x_div, ids != NULL, y_stride, n_vec, bias_mode);
    size_t g0 = (size_t)w->rows, g1 = (n_vec + a.tile - 1) / a.tile, l0 = k->local_rows;
    int fast = !k->exact_matmul && k->formats[dw->format].matmul_fast;
    int fm = k->fast_numerics && k->formats[dw->format].matmul_fm;
    /* bits per packed element; the CPU kernel reads rows as 32-bit words: float rows must fill
     * whole, aligned words (else the exact kernels run) */
    int wbits = w->mode == MOECL_QMODE_NONE ? (int)moecl_dtype_size(w->float_dtype) * 8 : w->bits;
    if (fm && k->lanes != 1 && w->mode == MOECL_QMODE_NONE &&
        ((size_t)w->cols * (size_t)wbits % 32 || w->weight_row_stride % 4 ||
         w->weight_expert_stride % 4 || dw->w_offset % 4))
        fm = 0;
    cl_mem xin = x; /* what the product reads as its input vectors */
    if (fm && k->lanes == 1 && w->bits > 0 && a.cols % (32u / (uint32_t)w->bits) == 0) {
        /* fast numerics on a GPU (qmatmul_fm_gpu.cl): a work-group of 8 warps per 32 rows;
         * columns are experts (ids; or the output vectors when there are no more of them
         * than experts) or blocks of 8 vectors */
        kern = k->formats[dw->format].matmul_fm;
        a.rows_per_item = 32;
        a.tile = 8;
        g0 = (size_t)(a.rows + 31) / 32 * 256;
        g1 = ids ? (size_t)w->n_experts : (n_vec + a.tile - 1) / a.tile;
        cl_kernel fmw = k->formats[dw->format].matmul_fmw;
        int one_col = (ids && n_vec <= (uint32_t)w->n_experts) || (!ids && n_vec == 1);
        if (fmw && k->fmw_rows && one_col && a.rows >= k->fmw_min_rows &&
            moecl_fmw_aligned(dw, &a)) {
            /* one vector per column: 16-byte weight loads, k->fmw_rows rows per warp */
            kern = fmw;
            a.use_ids = ids ? 1u : 0u;
            a.rows_per_item = k->fmw_rows;
            g0 = (size_t)(a.rows + 8 * a.rows_per_item - 1) / (8 * a.rows_per_item) * 256;
            g1 = n_vec;
        } else if (k->formats[dw->format].matmul_fmv && a.rows < 1024 &&
                   ((ids && n_vec <= (uint32_t)w->n_experts) || (!ids && n_vec == 1))) {
            /* one vector per column, few rows (router, k, v): rows split among warps
             * (matmul_fmv); on an H100 it was slower than matmul_fm's four rows per warp for
             * the larger products (experts 2.49 -> 2.99 ms per token, lm_head 0.45 -> 0.61) */
            kern = k->formats[dw->format].matmul_fmv;
            a.use_ids = ids ? 2u : 0u;
            a.rows_per_item = a.rows >= 256 ? 4u : a.rows >= 64 ? 2u : 1u;
            g0 = (size_t)(a.rows + a.rows_per_item - 1) / a.rows_per_item * 256;
            g1 = n_vec;
        } else if (ids && n_vec <= (uint32_t)w->n_experts) {
            a.use_ids = 2; /* a column per vector, as on CPUs */
            g1 = n_vec;
        } else if (k->formats[dw->format].matmul_fmt &&
                   n_vec >= k->fmt_min * (ids ? (uint32_t)w->n_experts : 1u)) {
            /* many vectors: blocks of k->fmt_rows rows x k->fmt_vecs vectors through local memory;
             * columns are experts (ids) or blocks of vectors */
            kern = k->formats[dw->format].matmul_fmt;
            g0 = (size_t)(a.rows + k->fmt_rows - 1) / k->fmt_rows * 256;
            g1 = ids ? (size_t)w->n_experts : (n_vec + k->fmt_vecs - 1) / k->fmt_vecs;
        }
        l0 = 256;
    } else if (fm && k->lanes > 1) {
        /* fast numerics on a CPU: see qmatmul_fm_cpu.cl. First the input vectors, permuted into
         * the scratch (one work-item each), which the product then reads as its x. */
        size_t epw = 32 / (size_t)wbits, n_in = (n_vec + x_div - 1) / x_div;
        size_t kp = round_up((size_t)w->cols, (size_t)k->lanes * epw);
        if (moecl_matmul_fmb_fits(k, dw, n_vec, ids != NULL))
            return launch_fmb(q, k, dw, x, ids, y, &a, kp);
        cl_kernel prep = k->formats[dw->format].matmul_fm_prep;
        size_t floats = n_in * kp + (w->mode == MOECL_QMODE_AFFINE ? n_in * (kp / epw) : 0);
        if (!prep || !k->fm_scratch)
            return moecl_bad_shape("matmul: fast numerics without its input permutation kernel");
        MOECL_TRY(fm_scratch_reserve(q, k->fm_scratch, floats * sizeof(float)));
        ARG(prep, 0, x);
        ARG(prep, 1, k->fm_scratch->buf);
        ARG(prep, 2, a);
        MOECL_TRY(
            moecl_kenqueue(q, k, prep, "matmul_fm_prep", moecl_matmul_class(w), 1, n_in, 1, 1));
        xin = k->fm_scratch->buf;
        kern = k->formats[dw->format].matmul_fm;
        cpu_row_blocks(&a, k->lanes, ids ? w->n_experts : 0, &g0, &g1);
        if (ids && (size_t)n_vec * 4 <= (size_t)w->n_experts) {
            /* few vectors (decode: a token's top-k): a column per vector, not per expert, so
             * that the experts nobody was routed to cost no work-groups */
            a.use_ids = 2;
            g1 = n_vec;
        }
        l0 = 1;
    } else if (fast && k->lanes == 1) {
        /* fast kernel on a GPU: a row per work-item; columns are experts (ids) or blocks of 8
         * vectors */
        kern = k->formats[dw->format].matmul_fast;
        a.rows_per_item = 1;
        a.tile = 8;
        g0 = a.rows;
        g1 = ids ? (size_t)w->n_experts : (n_vec + a.tile - 1) / a.tile;
        l0 = 64;
    } else if (fast) {
        /* fast kernel on a CPU: ~64 row blocks of whole vectors of rows; columns are experts
         * (ids) or one block of all vectors */
        kern = k->formats[dw->format].matmul_fast;
        cpu_row_blocks(&a, k->lanes, ids ? w->n_experts : 0, &g0, &g1);
        l0 = 1;
    }
    cl_mem idm = ids ? ids : x;
    MOECL_TRY(moecl_set_weight_args(kern, 0, dw));
    ARG(kern, 4, xin);
    ARG(kern, 5, y);
    ARG(kern, 6, idm);
    ARG(kern, 7, a);
    status = moecl_kenqueue(q, k, kern, "matmul", moecl_matmul_class(w), 2, g0, g1, l0);
cleanup:
    return status;
}

enum moecl_status moecl_launch_embed(cl_command_queue q, const struct moecl_kernels *k,
                                     const struct moecl_dev_qweight *dw, cl_mem tokens,
                                     uint32_t n_tokens, cl_mem y) {
    enum moecl_status status = MOECL_OK;
    const struct moecl_qweight *w = dw->w;
    if (dw->format < 0 || dw->format >= k->n_formats || !n_tokens || w->n_experts > 0)
        return moecl_bad_shape("embed: bad format, no tokens, or an expert stack");
    cl_kernel kern = k->formats[dw->format].embed;
    struct moecl_qmm_args a;
    memset(&a, 0, sizeof a);
    a.w_offset = dw->w_offset;
    a.w_row_stride = w->weight_row_stride;
    a.s_offset = dw->s_offset;
    a.s_row_stride = w->scales_row_stride;
    a.b_offset = dw->b_offset;
    a.b_row_stride = w->biases_row_stride;
    a.rows = (uint32_t)w->rows;
    a.cols = (uint32_t)w->cols;
    a.n_vec = n_tokens;
    a.y_stride = (uint32_t)w->cols;
    uint32_t group = w->group_size ? (uint32_t)w->group_size : 32u;
    ARG(kern, 0, dw->wmem);
    ARG(kern, 1, dw->smem);
    ARG(kern, 2, dw->bmem);
    ARG(kern, 3, tokens);
    ARG(kern, 4, y);
    ARG(kern, 5, a);
    status = moecl_kenqueue(q, k, kern, "embed", MOECL_OPC_EMBED, 2, (a.cols + group - 1) / group,
                            n_tokens, k->local_rows);
cleanup:
    return status;
}

enum moecl_status moecl_launch_rmsnorm(cl_command_queue q, const struct moecl_kernels *k, cl_mem x,
                                       cl_mem y, cl_mem w, size_t w_offset, int w_dt,
                                       uint32_t n_rows, uint32_t n, float eps) {
    enum moecl_status status = MOECL_OK;
    if (!n_rows || !n || w_dt < 0)
        return moecl_bad_shape("rmsnorm: empty or bad weight dtype");
    cl_ulong off = w_offset;
    cl_uint dt = (cl_uint)w_dt;
    if (k->lanes == 1 && n <= 4096) {
        /* GPUs: a work-group of 256 per row (norm_rope.cl) */
        cl_uint fast = k->fast_numerics ? 1u : 0u;
        ARG(k->rmsnorm_wg_f32, 0, x);
        ARG(k->rmsnorm_wg_f32, 1, y);
        ARG(k->rmsnorm_wg_f32, 2, w);
        ARG(k->rmsnorm_wg_f32, 3, off);
        ARG(k->rmsnorm_wg_f32, 4, dt);
        ARG(k->rmsnorm_wg_f32, 5, n);
        ARG(k->rmsnorm_wg_f32, 6, eps);
        ARG(k->rmsnorm_wg_f32, 7, fast);
        return moecl_kenqueue(q, k, k->rmsnorm_wg_f32, "rmsnorm_wg_f32", MOECL_OPC_NORM, 1,
                              (size_t)n_rows * 256, 1, 256);
    }
    ARG(k->rmsnorm_f32, 0, x);
    ARG(k->rmsnorm_f32, 1, y);
    ARG(k->rmsnorm_f32, 2, w);
    ARG(k->rmsnorm_f32, 3, off);
    ARG(k->rmsnorm_f32, 4, dt);
    ARG(k->rmsnorm_f32, 5, n_rows);
    ARG(k->rmsnorm_f32, 6, n);
    ARG(k->rmsnorm_f32, 7, eps);
    status = moecl_kenqueue(q, k, k->rmsnorm_f32, "rmsnorm_f32", MOECL_OPC_NORM, 1, n_rows, 1, 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_rope2(cl_command_queue q, const struct moecl_kernels *k, cl_mem x,
                                     uint32_t n_heads, uint32_t stride, cl_mem x2,
                                     uint32_t n_heads2, uint32_t stride2, cl_mem inv_freq,
                                     uint32_t n_tokens, uint32_t head_dim, uint32_t pos0,
                                     float mscale) {
    enum moecl_status status = MOECL_OK;
    if (!n_tokens || !n_heads || !head_dim || head_dim % 2 || stride < n_heads * head_dim ||
        (n_heads2 && stride2 < n_heads2 * head_dim))
        return moecl_bad_shape("rope: empty, odd head_dim, or stride below heads*head_dim");
    ARG(k->rope_f32, 0, x);
    ARG(k->rope_f32, 1, inv_freq);
    ARG(k->rope_f32, 2, n_tokens);
    ARG(k->rope_f32, 3, n_heads);
    ARG(k->rope_f32, 4, head_dim);
    ARG(k->rope_f32, 5, stride);
    ARG(k->rope_f32, 6, pos0);
    ARG(k->rope_f32, 7, mscale);
    /* CPUs: a work-item per (head, token); GPUs: per pair, 64 to a work-group */
    cl_uint pairs = k->lanes == 1 ? 1u : head_dim / 2;
    ARG(k->rope_f32, 8, pairs);
    cl_mem second = n_heads2 ? x2 : x;
    ARG(k->rope_f32, 9, second);
    ARG(k->rope_f32, 10, n_heads2);
    ARG(k->rope_f32, 11, stride2);
    status = moecl_kenqueue(q, k, k->rope_f32, "rope_f32", MOECL_OPC_ROPE, 2,
                            (size_t)(n_heads + n_heads2) * (head_dim / 2 / pairs), n_tokens,
                            k->lanes == 1 ? 64 : 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_rope(cl_command_queue q, const struct moecl_kernels *k, cl_mem x,
                                    cl_mem inv_freq, uint32_t n_tokens, uint32_t n_heads,
                                    uint32_t head_dim, uint32_t stride, uint32_t pos0,
                                    float mscale) {
    return moecl_launch_rope2(q, k, x, n_heads, stride, NULL, 0, 0, inv_freq, n_tokens, head_dim,
                              pos0, mscale);
}

enum moecl_status moecl_launch_add(cl_command_queue q, const struct moecl_kernels *k, cl_mem x,
                                   cl_mem y, uint32_t n) {
    enum moecl_status status = MOECL_OK;
    if (!n)
        return moecl_bad_shape("add: empty");
    ARG(k->add_f32, 0, x);
    ARG(k->add_f32, 1, y);
    cl_uint run = k->lanes == 1 ? 1u : 64u; /* elements per work-item: GPUs one */
    ARG(k->add_f32, 2, n);
    ARG(k->add_f32, 3, run);
    status = moecl_kenqueue(q, k, k->add_f32, "add_f32", MOECL_OPC_COMBINE, 1, (n + run - 1) / run,
                            1, k->lanes == 1 ? 64 : k->local_rows);
cleanup:
    return status;
}

enum moecl_status moecl_launch_attn(cl_command_queue q, const struct moecl_kernels *k, cl_mem qbuf,
                                    cl_mem k_new, cl_mem v_new, cl_mem k_ring, cl_mem v_ring,
                                    cl_mem sinks, const struct moecl_attn_args *a, cl_mem out) {
    enum moecl_status status = MOECL_OK;
    if (!a->n_tokens || !a->n_kv_heads || a->n_heads % a->n_kv_heads || !a->head_dim ||
        a->head_dim > 256 || !a->cache_cap || (a->window && a->window > a->cache_cap) ||
        (!a->window && a->pos0 > a->cache_cap))
        return moecl_bad_shape("attn: heads not a multiple of kv heads, head_dim over 256, or a "
                               "window/context the cache cannot hold");
    /* GPUs: a work-group per (head, token) (attention.cl), the same arithmetic; in fast
     * numerics on CPUs vectors along the head dimension, on GPUs a work-group of 256 per (head,
     * token) for decode-sized chunks (on an H100 it measured slower than the exact work-group
     * kernel in a 512-token prefill: 995 against 1030 tokens/s) */
    int fast = k->fast_attention &&
               (k->lanes == 1 ? a->n_tokens <= MOECL_GPU_FAST_ATTN_TOKENS && a->head_dim % 4 == 0
                              : a->head_dim % 16 == 0);
    /* GPU prefill chunks in fast numerics: a work-group per (head, 32 queries), key tiles in
     * local memory (head_dim up to 64) */
    int tile = k->fast_attention && k->attn_tile && k->lanes == 1 &&
               a->n_tokens > MOECL_GPU_FAST_ATTN_TOKENS && a->head_dim % 4 == 0 &&
               a->head_dim <= 64;
    cl_kernel kern = tile            ? k->attn_fast_tile_f32
                     : fast          ? (k->lanes == 1 ? k->attn_fast_wg_f32 : k->attn_fast_f32)
                     : k->lanes == 1 ? k->attn_sinks_wg_f32
                                     : k->attn_sinks_f32;
    ARG(kern, 0, qbuf);
    ARG(kern, 1, k_new);
    ARG(kern, 2, v_new);
    ARG(kern, 3, k_ring);
    ARG(kern, 4, v_ring);
    ARG(kern, 5, sinks);
    ARG(kern, 6, out);
    MOECL_CL_CALL(clSetKernelArg(kern, 7, sizeof *a, a));
    if (tile)
        status = moecl_kenqueue(q, k, kern, "attn_fast_tile_f32", MOECL_OPC_ATTENTION, 2,
                                (size_t)a->n_heads * 256, (a->n_tokens + 31) / 32, 256);
    else if (k->lanes == 1 && fast)
        status = moecl_kenqueue(q, k, kern, "attn_fast_wg_f32", MOECL_OPC_ATTENTION, 2,
                                (size_t)a->n_heads * 256, a->n_tokens, 256);
    else if (k->lanes == 1)
        status = moecl_kenqueue(q, k, kern, "attn_sinks_wg_f32", MOECL_OPC_ATTENTION, 2,
                                (size_t)a->n_heads * 64, a->n_tokens, 64);
    else
        status = moecl_kenqueue(q, k, kern, fast ? "attn_fast_f32" : "attn_sinks_f32",
                                MOECL_OPC_ATTENTION, 2, a->n_heads, a->n_tokens, 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_kv_append(cl_command_queue q, const struct moecl_kernels *k,
                                         cl_mem k_new, cl_mem v_new, cl_mem k_ring, cl_mem v_ring,
                                         uint32_t n_tokens, uint32_t pos0, uint32_t cap,
                                         uint32_t kv_width, int kv_f16) {
    enum moecl_status status = MOECL_OK;
    if (!n_tokens || !cap || !kv_width)
        return moecl_bad_shape("kv_append: empty");
    cl_kernel kern = kv_f16 ? k->kv_append_f16 : k->kv_append_f32;
    ARG(kern, 0, k_new);
    ARG(kern, 1, v_new);
    ARG(kern, 2, k_ring);
    ARG(kern, 3, v_ring);
    ARG(kern, 4, n_tokens);
    ARG(kern, 5, pos0);
    ARG(kern, 6, cap);
    cl_uint run = k->lanes == 1 ? 1u : kv_width; /* elements per work-item: GPUs one */
    ARG(kern, 7, kv_width);
    ARG(kern, 8, run);
    status =
        moecl_kenqueue(q, k, kern, kv_f16 ? "kv_append_f16" : "kv_append_f32", MOECL_OPC_ATTENTION,
                       2, (kv_width + run - 1) / run, n_tokens, k->lanes == 1 ? 64 : 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_router_topk(cl_command_queue q, const struct moecl_kernels *k,
                                           cl_mem logits, cl_mem ids, cl_mem weights,
                                           uint32_t n_tokens, uint32_t n_experts, uint32_t top_k) {
    enum moecl_status status = MOECL_OK;
    if (!n_tokens || !top_k || top_k > n_experts || top_k > 32)
        return moecl_bad_shape("router_topk: k must be in 1..min(experts, 32)");
    ARG(k->router_topk_f32, 0, logits);
    ARG(k->router_topk_f32, 1, ids);
    ARG(k->router_topk_f32, 2, weights);
    ARG(k->router_topk_f32, 3, n_tokens);
    ARG(k->router_topk_f32, 4, n_experts);
    ARG(k->router_topk_f32, 5, top_k);
    status = moecl_kenqueue(q, k, k->router_topk_f32, "router_topk_f32", MOECL_OPC_ROUTER, 1,
                            n_tokens, 1, 1);
cleanup:
    return status;
}

enum moecl_status moecl_launch_swiglu(cl_command_queue q, const struct moecl_kernels *k,
                                      cl_mem gate, cl_mem up, uint32_t n, float alpha,
                                      float limit) {
    enum moecl_status status = MOECL_OK;
    if (!n)
        return moecl_bad_shape("swiglu: empty");
    ARG(k->swiglu_f32, 0, gate);
    ARG(k->swiglu_f32, 1, up);
    ARG(k->swiglu_f32, 2, n);
    ARG(k->swiglu_f32, 3, alpha);
    ARG(k->swiglu_f32, 4, limit);
    cl_uint run = k->lanes == 1 ? 1u : 64u; /* elements per work-item: GPUs one */
    ARG(k->swiglu_f32, 5, run);
    status = moecl_kenqueue(q, k, k->swiglu_f32, "swiglu_f32", MOECL_OPC_SWIGLU, 1,
                            (n + run - 1) / run, 1, k->lanes == 1 ? 64 : k->local_rows);
cleanup:
    return status;
}

enum moecl_status moecl_launch_moe_combine(cl_command_queue q, const struct moecl_kernels *k,
                                           cl_mem x, cl_mem y, cl_mem weights, uint32_t n_tokens,
                                           uint32_t n, uint32_t top_k) {
    enum moecl_status status = MOECL_OK;
    if (!n_tokens || !n || !top_k)
        return moecl_bad_shape("moe_combine: empty");
    ARG(k->moe_combine_f32, 0, x);
    ARG(k->moe_combine_f32, 1, y);
    ARG(k->moe_combine_f32, 2, weights);
    ARG(k->moe_combine_f32, 3, n_tokens);
    ARG(k->moe_combine_f32, 4, n);
    ARG(k->moe_combine_f32, 5, top_k);
    cl_uint run = k->lanes == 1 ? 1u : 64u; /* columns per work-item: GPUs one */
    ARG(k->moe_combine_f32, 6, run);
    status = moecl_kenqueue(q, k, k->moe_combine_f32, "moe_combine_f32", MOECL_OPC_COMBINE, 2,
                            (n + run - 1) / run, n_tokens, k->lanes == 1 ? 64 : k->local_rows);
cleanup:
    return status;
}
