/* Programs and kernel objects of the forward pass (kernels.h): the weight formats' programs
 * with their build options (fast numerics, tensor cores) and the kernels made from them. The
 * typed launchers are in kernels.c. */
#include "kernels.h"

#include "cl_program.h"

#include <CL/cl_ext.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int moecl_act_of_dtype(enum moecl_dtype dt) {
    return dt == MOECL_DTYPE_BF16  ? MOECL_ACT_BF16
           : dt == MOECL_DTYPE_F16 ? MOECL_ACT_F16
                                   : MOECL_ACT_F32;
}

int moecl_dt_code(enum moecl_dtype dt) {
    switch (dt) {
    case MOECL_DTYPE_F32:
        return MOECL_DT_F32;
    case MOECL_DTYPE_F16:
        return MOECL_DT_F16;
    case MOECL_DTYPE_BF16:
        return MOECL_DT_BF16;
    default:
        return -1;
    }
}

static const char *dt_label(enum moecl_dtype dt) {
    return dt == MOECL_DTYPE_BF16 ? "bf16" : dt == MOECL_DTYPE_F16 ? "f16" : "f32";
}

/* ------------------------------------------------------------------ formats */

enum moecl_status moecl_qformat_of(const struct moecl_qweight *w, struct moecl_qformat *f) {
    memset(f, 0, sizeof *f);
    f->mode = w->mode;
    switch (w->mode) {
    case MOECL_QMODE_NONE:
        if (moecl_dt_code(w->float_dtype) < 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: float weights of dtype %s", w->name,
                                   moecl_dtype_name(w->float_dtype));
        f->wdt = w->float_dtype;
        f->bits = (int)moecl_dtype_size(w->float_dtype) * 8;
        return MOECL_OK;
    case MOECL_QMODE_AFFINE:
        if (!(w->bits >= 2 && w->bits <= 8 && w->bits != 7) ||
            !(w->group_size == 32 || w->group_size == 64 || w->group_size == 128) ||
            moecl_dt_code(w->float_dtype) < 0)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: affine %d bits, group %d, scales %s",
                                   w->name, w->bits, w->group_size,
                                   moecl_dtype_name(w->float_dtype));
        f->bits = w->bits;
        f->group_size = w->group_size;
        f->wdt = w->float_dtype;
        return MOECL_OK;
    case MOECL_QMODE_MXFP4:
    case MOECL_QMODE_MXFP8:
    case MOECL_QMODE_NVFP4: {
        int bits = w->mode == MOECL_QMODE_MXFP8 ? 8 : 4;
        int group = w->mode == MOECL_QMODE_NVFP4 ? 16 : 32;
        if (w->bits != bits || w->group_size != group)
            return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: %s with %d bits, group %d", w->name,
                                   moecl_qmode_name(w->mode), w->bits, w->group_size);
        f->bits = bits;
        f->group_size = group;
        f->wdt = MOECL_DTYPE_F32;
        return MOECL_OK;
    }
    }
    return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%s: unknown quantization mode", w->name);
}

int moecl_qformat_equal(const struct moecl_qformat *a, const struct moecl_qformat *b) {
    return a->mode == b->mode && a->bits == b->bits && a->group_size == b->group_size &&
           a->wdt == b->wdt;
}

void moecl_qformat_suffix(const struct moecl_qformat *f, char *buf, size_t n) {
    switch (f->mode) {
    case MOECL_QMODE_NONE:
        snprintf(buf, n, "%s", dt_label(f->wdt));
        break;
    case MOECL_QMODE_AFFINE:
        snprintf(buf, n, "q%dg%d_%s", f->bits, f->group_size, dt_label(f->wdt));
        break;
    default:
        snprintf(buf, n, "%s", moecl_qmode_name(f->mode));
        break;
    }
}

static int qm_code(enum moecl_qmode m) {
    switch (m) {
    case MOECL_QMODE_AFFINE:
        return MOECL_QM_AFFINE;
    case MOECL_QMODE_MXFP4:
        return MOECL_QM_MXFP4;
    case MOECL_QMODE_MXFP8:
        return MOECL_QM_MXFP8;
    case MOECL_QMODE_NVFP4:
        return MOECL_QM_NVFP4;
    default:
        return MOECL_QM_FLOAT;
    }
}

/* ------------------------------------------------------------------ programs */

enum moecl_status moecl_programs_build(cl_context ctx, cl_device_id dev, int act, int seq_round,
                                       int fast_numerics, const struct moecl_qformat *formats,
                                       int n_formats, struct moecl_programs *p) {
    enum moecl_status status = MOECL_OK;
    memset(p, 0, sizeof *p);
    if (n_formats > (int)(sizeof p->formats / sizeof p->formats[0]))
        return moecl_error_set(MOECL_ERR_UNSUPPORTED, "%d weight formats in one model (max 32)",
                               n_formats);
    char opts[512];
    /* Correctly rounded divide and sqrt where the device offers it (NVIDIA's defaults are
     * approximate): the reference's rsqrt and softmax normalisers are IEEE. */
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(dev, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    const char *cr =
        (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) ? " -cl-fp32-correctly-rounded-divide-sqrt" : "";
    static const char *const core_files[] = {"fwd_common.cl", "norm_rope.cl", "attention.cl",
                                             "attention_fast.cl", "moe.cl"};
    static const char *const fmt_files[] = {
        "fwd_common.cl",     "qmatmul.cl",        "qmatmul_fm_cpu.cl", "qmatmul_fmb_cpu.cl",
        "qmatmul_fm_gpu.cl", "qmatmul_tc_gpu.cl", "qmatmul_fmw_gpu.cl"};
    const int n_fmt_files = fast_numerics ? 7 : 2;
    p->seq_round = seq_round && act != MOECL_ACT_F32;
    p->fast_numerics = fast_numerics && !p->seq_round;
    /* rows per vector of the fast product: one per work-item on GPUs; 16 on CPUs whose native
     * float vector has 16 lanes (AVX-512), else 8 */
    cl_uint native = 0;
    cl_device_type type = 0;
    clGetDeviceInfo(dev, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    p->lanes = (type & CL_DEVICE_TYPE_GPU) ? 1 : native >= 16 ? 16 : 8;
    /* $MOECL_FAST_LANES overrides (tests: 1 runs the GPU decomposition on a CPU; a width the
     * kernels reject, e.g. 3, exercises the fallback to the reference-order kernel) */
    const char *fl = getenv("MOECL_FAST_LANES");
    if (fl && atoi(fl) >= 1 && atoi(fl) <= 16)
        p->lanes = atoi(fl);
    /* attention keeps its scores between passes on CPUs (a private array would spill on GPUs) */
    snprintf(opts, sizeof opts, "-DACT=%d -DMLX_CPU=1 -DATTN_ZCACHE=%d%s", act,
             (type & CL_DEVICE_TYPE_GPU) ? 0 : 1024, cr);
    /* NVIDIA GPUs from compute capability 8 (tf32 mma.sync) run the tiled fast product on
     * their tensor cores; $MOECL_TC=0 keeps float32 FMAs */
    const char *tc_env = getenv("MOECL_TC");
    cl_uint cc_major = 0;
    if ((type & CL_DEVICE_TYPE_GPU) &&
        clGetDeviceInfo(dev, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, sizeof cc_major, &cc_major,
                        NULL) != CL_SUCCESS)
        cc_major = 0;
    int tc =
        p->fast_numerics && p->lanes == 1 && cc_major >= 8 && !(tc_env && strcmp(tc_env, "0") == 0);
    p->tensor_cores = tc;
    const char *tc_vecs = getenv("MOECL_TC_VECS");
    p->tc_vecs = tc_vecs && strcmp(tc_vecs, "64") == 0 ? 64 : 128;
    const char *tc_rows = getenv("MOECL_TC_ROWS");
    p->tc_rows = tc_rows && strcmp(tc_rows, "128") == 0 ? 128 : 64;
    /* GPU decode products with 16-byte loads (matmul_fmw and its fusions): rows per warp, fixed
     * when the program is built ($MOECL_FMW: 2, 4 or 8; 0 = off) */
    const char *fmw = getenv("MOECL_FMW");
    p->fmw_rows = 4;
    if (fmw && *fmw) {
        char *end = NULL;
        long r = strtol(fmw, &end, 10);
        if (*end || (r != 0 && r != 2 && r != 4 && r != 8)) {
            status =
                moecl_error_set(MOECL_ERR_INVALID_ARG,
                                "$MOECL_FMW=%s: expected 0 (off), 2, 4 or 8 rows per warp", fmw);
            goto cleanup;
        }
        p->fmw_rows = (int)r;
    }
    MOECL_TRY(moecl_cl_program_build(ctx, dev, core_files,
                                     (int)(sizeof core_files / sizeof core_files[0]), opts,
                                     &p->core, NULL));
    for (int i = 0; i < n_formats; i++) {
        const struct moecl_qformat *f = &formats[i];
        char suffix[64];
        moecl_qformat_suffix(f, suffix, sizeof suffix);
        snprintf(opts, sizeof opts,
                 "-DACT=%d -DMLX_CPU=1 -DSEQ_ACCUM=1 -DSEQ_ROUND=%d -DQMODE=%d -DBITS=%d "
                 "-DGROUP=%d -DWDT=%d -DLANES=%d -DFAST_NUMERICS=%d -DFW_T=%d "
                 "-DWNAME=%s%s",
                 act, seq_round && act != MOECL_ACT_F32 ? 1 : 0, qm_code(f->mode), f->bits,
                 f->group_size ? f->group_size : 32, moecl_dt_code(f->wdt), p->lanes,
                 p->fast_numerics, p->fmw_rows ? p->fmw_rows : 4, suffix, cr);
        p->formats[i] = *f;
        if (tc) {
            /* the tiled product on the tensor cores; a compiler that refuses the inline PTX
             * builds the float32 one, unless $MOECL_TC=1 asked for them */
            size_t len = strlen(opts);
            snprintf(opts + len, sizeof opts - len, " -DMOECL_TC=1 -DTC_BN=%d -DTC_BM=%d",
                     p->tc_vecs, p->tc_rows);
            status = moecl_cl_program_build(ctx, dev, fmt_files, n_fmt_files, opts,
                                            &p->format_programs[i], NULL);
            if (status == MOECL_OK) {
                p->n_formats = i + 1;
                continue;
            }
            if (tc_env && strcmp(tc_env, "1") == 0)
                goto cleanup;
            status = MOECL_OK;
            opts[len] = 0;
            p->tensor_cores = tc = 0;
        }
        if (moecl_cl_program_build(ctx, dev, fmt_files, n_fmt_files, opts, &p->format_programs[i],
                                   NULL) != MOECL_OK) {
            /* a compiler that rejects the fast kernels still gets the reference-order ones */
            size_t len = strlen(opts);
            snprintf(opts + len, sizeof opts - len, " -DMOECL_NO_FAST=1");
            MOECL_TRY(moecl_cl_program_build(ctx, dev, fmt_files, n_fmt_files, opts,
                                             &p->format_programs[i], NULL));
            p->no_fast[i] = 1;
        }
        p->n_formats = i + 1;
    }
cleanup:
    if (status != MOECL_OK)
        moecl_programs_free(p);
    return status;
}

void moecl_programs_free(struct moecl_programs *p) {
    if (p->core)
        clReleaseProgram(p->core);
    for (int i = 0; i < p->n_formats; i++)
        if (p->format_programs[i])
            clReleaseProgram(p->format_programs[i]);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ kernel objects */

static enum moecl_status make_kernel(cl_program prog, const char *name, cl_kernel *out) {
    enum moecl_status status = MOECL_OK;
    cl_int err;
    *out = clCreateKernel(prog, name, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        status = moecl_error_set(MOECL_ERR_CL, "clCreateKernel(%s) failed: %s", name,
                                 moecl_cl_err_name(err));
    }
    return status;
}

/* As make_kernel, for a kernel the program may lack (CL_INVALID_KERNEL_NAME: *out = NULL). */
static enum moecl_status make_optional_kernel(cl_program prog, const char *name, cl_kernel *out) {
    cl_int err;
    *out = clCreateKernel(prog, name, &err);
    if (err == CL_SUCCESS)
        return MOECL_OK;
    *out = NULL;
    if (err == CL_INVALID_KERNEL_NAME)
        return MOECL_OK;
    return moecl_error_set(MOECL_ERR_CL, "clCreateKernel(%s) failed: %s", name,
                           moecl_cl_err_name(err));
}

enum moecl_status moecl_kernels_create(const struct moecl_programs *p, struct moecl_kernels *k) {
    enum moecl_status status = MOECL_OK;
    memset(k, 0, sizeof *k);
    k->local_rows = 8;
    const char *exact = getenv("MOECL_EXACT_MATMUL");
    k->lanes = p->lanes;
    k->exact_matmul = p->seq_round || (exact && *exact && strcmp(exact, "0") != 0);
    k->fast_numerics = p->fast_numerics;
    /* GPU fast products: vectors per column (per expert) from which the tiled kernel runs */
    const char *fmt_min = getenv("MOECL_FMT_MIN");
    k->fmt_min = fmt_min && atoi(fmt_min) > 0 ? (uint32_t)atoi(fmt_min) : 16u;
    k->fmt_vecs = p->tensor_cores ? (uint32_t)p->tc_vecs : 64u;
    k->fmt_rows = p->tensor_cores ? (uint32_t)p->tc_rows : 64u;
    /* GPU decode products with 16-byte loads: rows per warp, as the programs were built */
    k->fmw_rows = (uint32_t)p->fmw_rows;
    k->fmw_min_rows = 1024u;
    /* CPU products of many vectors with the vectors along the lanes (matmul_fmb): from
     * $MOECL_FMB_MIN vectors per column (an expert's on average, routed), 0 = never */
    const char *fmb = getenv("MOECL_FMB_MIN");
    k->fmb_min = 8u;
    if (fmb && *fmb) {
        char *end = NULL;
        long v = strtol(fmb, &end, 10);
        if (*end || v < 0 || v > 1000000) {
            status = moecl_error_set(MOECL_ERR_INVALID_ARG,
                                     "$MOECL_FMB_MIN=%s: expected a whole number of vectors "
                                     "(0: off)",
                                     fmb);
            goto cleanup;
        }
        k->fmb_min = (uint32_t)v;
    }
    /* and an expert's gate, up and SwiGLU in one of them ($MOECL_FMW_GLU=0: three launches) */
    const char *glu = getenv("MOECL_FMW_GLU");
    k->fmw_glu = !(glu && strcmp(glu, "0") == 0);
    /* and the attention's q, k and v in one ($MOECL_FMW_QKV=0: three launches) */
    const char *qkv = getenv("MOECL_FMW_QKV");
    k->fmw_qkv = !(qkv && strcmp(qkv, "0") == 0);
    /* and decode's attention norm inside it ($MOECL_QKV_NORM=0: a launch of its own) */
    const char *qn = getenv("MOECL_QKV_NORM");
    k->qkv_norm = !(qn && strcmp(qn, "0") == 0);
    /* and decode's RoPE ($MOECL_QKV_ROPE=0: rope_f32 and kv_append launches of their own), with
     * the KV append ($MOECL_QKV_KV=0: kv_append's launch of its own) */
    const char *qr = getenv("MOECL_QKV_ROPE");
    k->qkv_rope = !(qr && strcmp(qr, "0") == 0);
    const char *qk = getenv("MOECL_QKV_KV");
    k->qkv_kv = !(qk && strcmp(qk, "0") == 0);
    /* and the MoE norm inside the router's product ($MOECL_ROUTER_NORM=0: a launch of its own) */
    const char *rn = getenv("MOECL_ROUTER_NORM");
    k->router_norm = !(rn && strcmp(rn, "0") == 0);
    /* fast numerics' attention kernels (attn_fast_f32, attn_fast_wg_f32); $MOECL_FAST_ATTENTION=0
     * keeps the exact ones */
    const char *fa = getenv("MOECL_FAST_ATTENTION");
    k->fast_attention = p->fast_numerics && !(fa && strcmp(fa, "0") == 0);
    const char *at = getenv("MOECL_ATTN_TILE");
    k->attn_tile = !(at && strcmp(at, "0") == 0);
#define X(name) MOECL_TRY(make_kernel(p->core, #name, &k->name));
    MOECL_CORE_KERNELS(X)
#undef X
    for (int i = 0; i < p->n_formats; i++) {
        char suffix[64], name[128];
        moecl_qformat_suffix(&p->formats[i], suffix, sizeof suffix);
        k->n_formats = i + 1;
        snprintf(name, sizeof name, "matmul_f32_%s", suffix);
        MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul));
        snprintf(name, sizeof name, "embed_f32_%s", suffix);
        MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].embed));
        snprintf(name, sizeof name, "matmul_fast_f32_%s", suffix);
        if (!p->no_fast[i]) /* NULL: the launcher uses the reference-order kernel */
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fast));
        /* a format without a fast-numerics kernel keeps the exact ones */
        snprintf(name, sizeof name, "matmul_fm_f32_%s", suffix);
        if (p->fast_numerics && !p->no_fast[i])
            MOECL_TRY(make_optional_kernel(p->format_programs[i], name, &k->formats[i].matmul_fm));
        /* the GPU fast products come with a tiled one for many vectors */
        snprintf(name, sizeof name, "matmul_fmt_f32_%s", suffix);
        if (k->formats[i].matmul_fm && p->lanes == 1)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmt));
        snprintf(name, sizeof name, "matmul_fmt3_f32_%s", suffix);
        if (k->formats[i].matmul_fmt)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmt3));
        snprintf(name, sizeof name, "matmul_fmv_f32_%s", suffix);
        if (k->formats[i].matmul_fm && p->lanes == 1)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmv));
        snprintf(name, sizeof name, "matmul_fmvn_f32_%s", suffix);
        if (k->formats[i].matmul_fmv)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmvn));
        /* and, for the formats whose groups hold whole 16-byte units, the decode product */
        snprintf(name, sizeof name, "matmul_fmw_f32_%s", suffix);
        if (k->formats[i].matmul_fm && p->lanes == 1)
            MOECL_TRY(make_optional_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmw));
        snprintf(name, sizeof name, "matmul_fmw_glu_f32_%s", suffix);
        if (k->formats[i].matmul_fmw)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmw_glu));
        snprintf(name, sizeof name, "matmul_fmw3_f32_%s", suffix);
        if (k->formats[i].matmul_fmw)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmw3));
        /* the CPU kernels' input permutation comes with them */
        snprintf(name, sizeof name, "matmul_fm_prep_f32_%s", suffix);
        if (k->formats[i].matmul_fm && p->lanes != 1)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fm_prep));
        /* and, with 16 lanes (AVX-512), the product for many vectors and its transposition */
        snprintf(name, sizeof name, "matmul_fmb_f32_%s", suffix);
        if (k->formats[i].matmul_fm && p->lanes != 1)
            MOECL_TRY(make_optional_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmb));
        snprintf(name, sizeof name, "matmul_fmb_prep_f32_%s", suffix);
        if (k->formats[i].matmul_fmb)
            MOECL_TRY(make_kernel(p->format_programs[i], name, &k->formats[i].matmul_fmb_prep));
    }
    if (k->fast_numerics && k->lanes != 1) {
        k->fm_scratch = calloc(1, sizeof *k->fm_scratch);
        if (!k->fm_scratch)
            status = moecl_error_set(MOECL_ERR_NO_MEMORY, "fast numerics scratch: out of memory");
    }
cleanup:
    if (status != MOECL_OK)
        moecl_kernels_free(k);
    return status;
}

void moecl_kernels_free(struct moecl_kernels *k) {
#define X(name)                                                                                    \
    if (k->name)                                                                                   \
        clReleaseKernel(k->name);
    MOECL_CORE_KERNELS(X)
#undef X
    for (int i = 0; i < k->n_formats; i++) {
#define X(field, prefix)                                                                           \
    if (k->formats[i].field)                                                                       \
        clReleaseKernel(k->formats[i].field);
        MOECL_FORMAT_KERNELS(X)
#undef X
    }
    if (k->fm_scratch && k->fm_scratch->buf)
        clReleaseMemObject(k->fm_scratch->buf);
    free(k->fm_scratch);
    memset(k, 0, sizeof *k);
}
