/* Fused GPU decode launchers (kernels.h): on matmul_fmw's arithmetic (qmatmul_fmw_gpu.cl) the
 * o-projection with its residual add, the attention's norm, q/k/v, RoPE and KV append in one
 * launch, an expert's
 * gate/up/SwiGLU in one launch; on matmul_fmv's (qmatmul_fm_gpu.cl) the MoE norm and the router.
 * Each gives the bits of the launches it replaces and comes with a predicate saying where it
 * applies. */
#include "kernels_launch.h"

#include <string.h>

int moecl_matmul_add_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                             uint32_t x_offset, uint32_t x_stride, uint32_t n_vec) {
    if (!k->fmw_rows || !k->fast_numerics || k->lanes != 1 || dw->format < 0 ||
        dw->format >= k->n_formats || !k->formats[dw->format].matmul_fmw || n_vec != 1 ||
        dw->w->n_experts > 0)
        return 0;
    struct moecl_qmm_args a = moecl_qmm_args_of(dw, x_offset, x_stride, 1, 0, 0, n_vec, 0);
    return a.rows >= 1024 && moecl_fmw_aligned(dw, &a);
}

enum moecl_status moecl_launch_matmul_add(cl_command_queue q, const struct moecl_kernels *k,
                                          const struct moecl_dev_qweight *dw, cl_mem x,
                                          uint32_t x_offset, uint32_t x_stride, cl_mem y,
                                          int bias_mode) {
    enum moecl_status status = MOECL_OK;
    if (!moecl_matmul_add_fusable(k, dw, x_offset, x_stride, 1))
        return moecl_bad_shape("matmul_add: not fusable here (moecl_matmul_add_fusable)");
    if (bias_mode != MOECL_BIAS_NONE && !dw->w->bias)
        bias_mode = MOECL_BIAS_NONE;
    struct moecl_qmm_args a =
        moecl_qmm_args_of(dw, x_offset, x_stride, 1, 0, (uint32_t)dw->w->rows, 1, bias_mode);
    a.rows_per_item = k->fmw_rows;
    a.residual = 1;
    cl_kernel kern = k->formats[dw->format].matmul_fmw;
    MOECL_TRY(moecl_set_weight_args(kern, 0, dw));
    ARG(kern, 4, x);
    ARG(kern, 5, y);
    ARG(kern, 6, x);
    ARG(kern, 7, a);
    status = moecl_kenqueue(
        q, k, kern, "matmul_add", moecl_matmul_class(dw->w), 2,
        (size_t)(a.rows + 8 * a.rows_per_item - 1) / (8 * a.rows_per_item) * 256, 1, 256);
cleanup:
    return status;
}

int moecl_qkv_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *const w[3],
                      uint32_t x_offset, uint32_t x_stride, uint32_t n_vec) {
    if (!k->fmw_qkv || !k->fast_numerics || k->lanes != 1 || w[0]->format < 0 ||
        w[0]->format >= k->n_formats)
        return 0;
    const struct moecl_format_kernels *f = &k->formats[w[0]->format];
    /* (matmul_fmw3 stages its input row in local memory: at most 4096 columns) */
    if (n_vec == 1 ? !k->fmw_rows || !f->matmul_fmw3 || w[0]->w->cols > 4096
                   : !f->matmul_fm || !f->matmul_fmt3 || n_vec < k->fmt_min)
        return 0;
    for (int i = 0; i < 3; i++) {
        const struct moecl_qweight *wi = w[i]->w;
        struct moecl_qmm_args a = moecl_qmm_args_of(w[i], x_offset, x_stride, 1, 0, 0, n_vec, 0);
        if (w[i]->format != w[0]->format || wi->n_experts > 0 || wi->cols != w[0]->w->cols ||
            x_stride < wi->cols)
            return 0;
        /* the conditions under which moecl_launch_matmul takes matmul_fmw / matmul_fmt */
        if (n_vec == 1 ? !moecl_fmw_aligned(w[i], &a)
                       : wi->bits <= 0 || wi->cols % (32 / wi->bits) != 0)
            return 0;
    }
    return 1;
}

int moecl_qkv_norm_fusable(const struct moecl_kernels *k,
                           const struct moecl_dev_qweight *const w[3], uint32_t x_offset,
                           uint32_t x_stride, uint32_t n_vec) {
    return k->qkv_norm && n_vec == 1 && moecl_qkv_fusable(k, w, x_offset, x_stride, n_vec);
}

int moecl_qkv_rope_fusable(const struct moecl_kernels *k,
                           const struct moecl_dev_qweight *const w[3], uint32_t x_offset,
                           uint32_t x_stride, uint32_t head_dim) {
    /* (a warp's slots start even: fmw_rows is 2, 4 or 8) */
    return k->qkv_rope && k->fmw_rows % 2 == 0 && head_dim > 0 && head_dim % 2 == 0 &&
           moecl_qkv_fusable(k, w, x_offset, x_stride, 1) && w[0]->w->rows % head_dim == 0 &&
           w[1]->w->rows % head_dim == 0 && w[2]->w->rows == w[1]->w->rows;
}

/* moecl_launch_qkv and moecl_launch_qkv_rope (rope: NULL or checked by the caller). */
static enum moecl_status qkv_launch(cl_command_queue q, const struct moecl_kernels *k,
                                    const struct moecl_dev_qweight *const w[3], cl_mem x,
                                    uint32_t x_offset, uint32_t x_stride, uint32_t n_vec,
                                    cl_mem const y[3], const int bias_mode[3],
                                    const struct moecl_norm_w *norm,
                                    const struct moecl_qkv_rope *rope) {
    enum moecl_status status = MOECL_OK;
    if (!moecl_qkv_fusable(k, w, x_offset, x_stride, n_vec))
        return moecl_bad_shape("qkv: not fusable here (moecl_qkv_fusable)");
    if (norm && (!moecl_qkv_norm_fusable(k, w, x_offset, x_stride, n_vec) || norm->dt < 0))
        return moecl_bad_shape("qkv: the norm not fusable here (moecl_qkv_norm_fusable)");
    cl_kernel kern =
        n_vec == 1 ? k->formats[w[0]->format].matmul_fmw3 : k->formats[w[0]->format].matmul_fmt3;
    size_t blocks = 0;
    for (int i = 0; i < 3; i++) {
        int bm = bias_mode[i] != MOECL_BIAS_NONE && !w[i]->w->bias ? MOECL_BIAS_NONE : bias_mode[i];
        struct moecl_qmm_args a =
            moecl_qmm_args_of(w[i], x_offset, x_stride, 1, 0, (uint32_t)w[i]->w->rows, n_vec, bm);
        if (n_vec == 1) {
            a.rows_per_item = k->fmw_rows;
            blocks += (a.rows + 8 * a.rows_per_item - 1) / (8 * a.rows_per_item);
        } else {
            a.rows_per_item = 32; /* as moecl_launch_matmul sets them for matmul_fmt */
            a.tile = 8;
            blocks += (a.rows + k->fmt_rows - 1) / k->fmt_rows;
        }
        MOECL_TRY(moecl_set_weight_args(kern, (cl_uint)(4 * i), w[i]));
        ARG(kern, (cl_uint)(13 + i), y[i]);
        ARG(kern, (cl_uint)(16 + i), a);
    }
    ARG(kern, 12, x);
    if (n_vec == 1) {
        /* matmul_fmw3's norm arguments (a weight buffer is set even when unused) */
        cl_mem nw = norm ? norm->mem : x;
        cl_ulong off = norm ? norm->offset : 0;
        cl_uint dt = norm ? (cl_uint)norm->dt : 0u, on = norm ? 1u : 0u;
        float eps = norm ? norm->eps : 0.0f;
        ARG(kern, 19, nw);
        ARG(kern, 20, off);
        ARG(kern, 21, dt);
        ARG(kern, 22, eps);
        ARG(kern, 23, on);
        /* decode's epilogue (buffers set even when unused) */
        struct moecl_qkv_rope_args ra;
        memset(&ra, 0, sizeof ra);
        ra.mscale = 1.0f;
        cl_mem inv = x, kr = y[1], vr = y[2];
        if (rope) {
            ra.head_dim = rope->head_dim;
            ra.pos = rope->pos;
            ra.mscale = rope->mscale;
            inv = rope->inv_freq;
            if (rope->k_ring && rope->v_ring) {
                ra.kv_write = 1;
                ra.kv_f16 = rope->kv_f16 ? 1u : 0u;
                ra.kv_offset = (cl_ulong)(rope->pos % rope->cache_cap) * w[1]->w->rows;
                kr = rope->k_ring;
                vr = rope->v_ring;
            }
        }
        ARG(kern, 24, inv);
        ARG(kern, 25, kr);
        ARG(kern, 26, vr);
        ARG(kern, 27, ra);
    }
    status = moecl_kenqueue(q, k, kern, "matmul_qkv", MOECL_OPC_ATTN_PROJ, 2, blocks * 256,
                            n_vec == 1 ? 1 : (n_vec + k->fmt_vecs - 1) / k->fmt_vecs, 256);
cleanup:
    return status;
}

enum moecl_status moecl_launch_qkv(cl_command_queue q, const struct moecl_kernels *k,
                                   const struct moecl_dev_qweight *const w[3], cl_mem x,
                                   uint32_t x_offset, uint32_t x_stride, uint32_t n_vec,
                                   cl_mem const y[3], const int bias_mode[3],
                                   const struct moecl_norm_w *norm) {
    return qkv_launch(q, k, w, x, x_offset, x_stride, n_vec, y, bias_mode, norm, NULL);
}

enum moecl_status moecl_launch_qkv_rope(cl_command_queue q, const struct moecl_kernels *k,
                                        const struct moecl_dev_qweight *const w[3], cl_mem x,
                                        uint32_t x_offset, uint32_t x_stride, cl_mem const y[3],
                                        const int bias_mode[3], const struct moecl_norm_w *norm,
                                        const struct moecl_qkv_rope *rope) {
    if (!rope || !moecl_qkv_rope_fusable(k, w, x_offset, x_stride, rope->head_dim) ||
        !rope->inv_freq || (rope->k_ring && (!rope->v_ring || !rope->cache_cap)))
        return moecl_bad_shape("qkv: rope not fusable here (moecl_qkv_rope_fusable), or a ring "
                               "without its pair or slots");
    return qkv_launch(q, k, w, x, x_offset, x_stride, 1, y, bias_mode, norm, rope);
}

int moecl_glu_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *gate,
                      const struct moecl_dev_qweight *up, uint32_t x_offset, uint32_t x_stride,
                      uint32_t n_vec) {
    const struct moecl_qweight *g = gate->w, *u = up->w;
    if (!k->fmw_glu || k->fmw_rows < 2 || !k->fast_numerics || k->lanes != 1 ||
        gate->format != up->format || gate->format < 0 || gate->format >= k->n_formats)
        return 0;
    const struct moecl_format_kernels *f = &k->formats[gate->format];
    if (!f->matmul_fmw_glu || g->n_experts <= 0 || n_vec > (uint32_t)g->n_experts)
        return 0;
    struct moecl_qmm_args a = moecl_qmm_args_of(gate, x_offset, x_stride, 1, 1, 0, n_vec, 0);
    /* the same shape, strides and bias dtype: the kernel takes them from the gate's */
    return u->rows == g->rows && u->cols == g->cols && u->n_experts == g->n_experts &&
           u->weight_row_stride == g->weight_row_stride &&
           u->weight_expert_stride == g->weight_expert_stride &&
           u->scales_row_stride == g->scales_row_stride &&
           u->scales_expert_stride == g->scales_expert_stride &&
           u->biases_row_stride == g->biases_row_stride &&
           u->biases_expert_stride == g->biases_expert_stride && !u->bias == !g->bias &&
           (!g->bias ||
            (u->bias_dtype == g->bias_dtype && u->bias_expert_stride == g->bias_expert_stride)) &&
           a.rows >= 1024 && moecl_fmw_aligned(gate, &a) && moecl_fmw_aligned(up, &a);
}

enum moecl_status moecl_launch_glu(cl_command_queue q, const struct moecl_kernels *k,
                                   const struct moecl_dev_qweight *gate,
                                   const struct moecl_dev_qweight *up, cl_mem x, uint32_t x_offset,
                                   uint32_t x_stride, uint32_t x_div, cl_mem ids, cl_mem y,
                                   uint32_t y_stride, uint32_t n_vec, int bias_mode, float alpha,
                                   float limit) {
    enum moecl_status status = MOECL_OK;
    if (!moecl_glu_fusable(k, gate, up, x_offset, x_stride, n_vec) || !x_div ||
        y_stride < gate->w->rows)
        return moecl_bad_shape("glu: gate and up not fusable here (moecl_glu_fusable)");
    if (bias_mode != MOECL_BIAS_NONE && !gate->w->bias)
        bias_mode = MOECL_BIAS_NONE;
    struct moecl_qmm_args a =
        moecl_qmm_args_of(gate, x_offset, x_stride, x_div, 1, y_stride, n_vec, bias_mode);
    struct moecl_qmm_args a2 =
        moecl_qmm_args_of(up, x_offset, x_stride, x_div, 1, y_stride, n_vec, bias_mode);
    /* a warp's slots hold rows of both matrices: half of matmul_fmw's rows per warp each */
    a.rows_per_item = k->fmw_rows / 2;
    cl_kernel kern = k->formats[gate->format].matmul_fmw_glu;
    MOECL_TRY(moecl_set_weight_args(kern, 0, gate));
    MOECL_TRY(moecl_set_weight_args(kern, 4, up));
    ARG(kern, 8, x);
    ARG(kern, 9, y);
    ARG(kern, 10, ids);
    ARG(kern, 11, a);
    ARG(kern, 12, a2);
    ARG(kern, 13, alpha);
    ARG(kern, 14, limit);
    status = moecl_kenqueue(
        q, k, kern, "matmul_glu", MOECL_OPC_EXPERTS, 2,
        (size_t)(a.rows + 8 * a.rows_per_item - 1) / (8 * a.rows_per_item) * 256, n_vec, 256);
cleanup:
    return status;
}

int moecl_matmul_norm_fusable(const struct moecl_kernels *k, const struct moecl_dev_qweight *dw,
                              uint32_t n_vec) {
    const struct moecl_qweight *w = dw->w;
    if (!k->router_norm || !k->fast_numerics || k->lanes != 1 || dw->format < 0 ||
        dw->format >= k->n_formats || !k->formats[dw->format].matmul_fm ||
        !k->formats[dw->format].matmul_fmvn || n_vec != 1 || w->n_experts > 0 || w->bits <= 0)
        return 0;
    /* where moecl_launch_matmul takes matmul_fmv; the normed row fits the kernel's local array */
    return w->cols % (32 / w->bits) == 0 && w->rows < 1024 &&
           (!k->fmw_rows || (uint32_t)w->rows < k->fmw_min_rows) && w->cols <= 4096;
}

enum moecl_status moecl_launch_matmul_norm(cl_command_queue q, const struct moecl_kernels *k,
                                           const struct moecl_dev_qweight *dw, cl_mem x, cl_mem xn,
                                           const struct moecl_norm_w *norm, cl_mem y,
                                           int bias_mode) {
    enum moecl_status status = MOECL_OK;
    if (!moecl_matmul_norm_fusable(k, dw, 1) || norm->dt < 0)
        return moecl_bad_shape("matmul_norm: not fusable here (moecl_matmul_norm_fusable)");
    if (bias_mode != MOECL_BIAS_NONE && !dw->w->bias)
        bias_mode = MOECL_BIAS_NONE;
    uint32_t H = (uint32_t)dw->w->cols, R = (uint32_t)dw->w->rows;
    struct moecl_qmm_args a = moecl_qmm_args_of(dw, 0, H, 1, 0, R, 1, bias_mode);
    a.rows_per_item = R >= 256 ? 4u : R >= 64 ? 2u : 1u; /* as moecl_launch_matmul's matmul_fmv */
    cl_ulong off = norm->offset;
    cl_uint dt = (cl_uint)norm->dt;
    float eps = norm->eps;
    cl_kernel kern = k->formats[dw->format].matmul_fmvn;
    MOECL_TRY(moecl_set_weight_args(kern, 0, dw));
    ARG(kern, 4, x);
    ARG(kern, 5, y);
    ARG(kern, 6, xn);
    ARG(kern, 7, a);
    ARG(kern, 8, norm->mem);
    ARG(kern, 9, off);
    ARG(kern, 10, dt);
    ARG(kern, 11, eps);
    status = moecl_kenqueue(q, k, kern, "matmul_norm", moecl_matmul_class(dw->w), 1,
                            (size_t)(R + a.rows_per_item - 1) / a.rows_per_item * 256, 1, 256);
cleanup:
    return status;
}
