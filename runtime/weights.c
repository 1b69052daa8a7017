/* Weight pieces over the checkpoint's mappings (weights.h).
 *
 * Why pieces start on a page boundary: PoCL uses a USE_HOST_PTR pointer as the buffer's storage
 * only when it meets the device's minimum alignment (128 bytes measured) and otherwise may copy;
 * a page-aligned start is aligned for every device, and stays inside the mapping because
 * mappings start on pages. */
#include "weights.h"

#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE ((uintptr_t)4096)

struct span {
    const uint8_t *start, *end;
    const char *name;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

/* Bytes spanned by a strided view: n_experts stacks of rows rows of row_bytes. */
static size_t view_extent(int n_experts, size_t expert_stride, int64_t rows, size_t row_stride,
                          size_t row_bytes) {
    size_t n = (size_t)(rows - 1) * row_stride + row_bytes;
    if (n_experts > 0)
        n += (size_t)(n_experts - 1) * expert_stride;
    return n;
}

/* A growable span list. */
struct spans {
    struct span *v;
    int n, cap;
};

static int spans_push(struct spans *s, const void *p, size_t n, const char *name) {
    if (!p || !n)
        return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 256;
        struct span *nv = realloc(s->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n].start = p;
    s->v[s->n].end = (const uint8_t *)p + n;
    s->v[s->n].name = name;
    s->n++;
    return 0;
}

static int in_files(const struct moecl_ckpt *ck, const void *p) {
    const uint8_t *b = p;
    for (int i = 0; i < ck->n_files; i++)
        if (b >= ck->files[i]->bytes && b < ck->files[i]->bytes + ck->files[i]->size)
            return 1;
    return 0;
}

static size_t dtype_bytes(enum moecl_dtype dt) {
    return moecl_dtype_size(dt);
}

/* Spans of one module's views that are NOT inside a file mapping (converted buffers). */
static int push_converted(struct spans *s, const struct moecl_ckpt *ck,
                          const struct moecl_qweight *w) {
    if (!w->weight)
        return 0;
    size_t wrow = w->mode == MOECL_QMODE_NONE ? (size_t)w->cols * dtype_bytes(w->float_dtype)
                                              : (size_t)w->cols * (size_t)w->bits / 8;
    size_t n_groups = w->group_size ? (size_t)(w->cols / w->group_size) : 0;
    size_t sbytes = w->mode == MOECL_QMODE_AFFINE ? dtype_bytes(w->float_dtype) : 1;
    int rc = 0;
    if (!in_files(ck, w->weight))
        rc |= spans_push(
            s, w->weight,
            view_extent(w->n_experts, w->weight_expert_stride, w->rows, w->weight_row_stride, wrow),
            w->name);
    if (w->scales && !in_files(ck, w->scales))
        rc |= spans_push(s, w->scales,
                         view_extent(w->n_experts, w->scales_expert_stride, w->rows,
                                     w->scales_row_stride, n_groups * sbytes),
                         w->name);
    if (w->biases && !in_files(ck, w->biases))
        rc |= spans_push(s, w->biases,
                         view_extent(w->n_experts, w->biases_expert_stride, w->rows,
                                     w->biases_row_stride, n_groups * sbytes),
                         w->name);
    if (w->bias && !in_files(ck, w->bias)) {
        size_t row = (size_t)w->rows * dtype_bytes(w->bias_dtype);
        size_t n =
            w->n_experts > 0 ? (size_t)(w->n_experts - 1) * w->bias_expert_stride + row : row;
        rc |= spans_push(s, w->bias, n, w->name);
    }
    return rc;
}

static int push_vec(struct spans *s, const struct moecl_ckpt *ck, const struct moecl_vec *v) {
    if (!v->data || in_files(ck, v->data))
        return 0;
    return spans_push(s, v->data, (size_t)v->n * dtype_bytes(v->dtype), v->name);
}

static int collect_spans(const struct moecl_ckpt *ck, struct spans *s) {
    int rc = 0;
    for (int i = 0; i < ck->n_tensors; i++)
        rc |= spans_push(s, ck->tensors[i]->data, ck->tensors[i]->n_bytes, ck->tensors[i]->name);
    rc |= push_converted(s, ck, &ck->embed);
    rc |= push_converted(s, ck, &ck->lm_head);
    rc |= push_vec(s, ck, &ck->final_norm);
    for (int l = 0; l < ck->config.n_layers; l++) {
        const struct moecl_layer *L = &ck->layers[l];
        const struct moecl_qweight *mods[] = {&L->q,      &L->k,    &L->v,  &L->o,
                                              &L->router, &L->gate, &L->up, &L->down};
        for (size_t m = 0; m < sizeof mods / sizeof mods[0]; m++)
            rc |= push_converted(s, ck, mods[m]);
        rc |= push_vec(s, ck, &L->input_norm);
        rc |= push_vec(s, ck, &L->post_norm);
        rc |= push_vec(s, ck, &L->sinks);
    }
    return rc;
}

/* The mapping (or, for a converted buffer, nothing) that holds p: its [lo, hi) and where its
 * tensor data begins. */
static void mapping_of(const struct moecl_ckpt *ck, const uint8_t *p, const uint8_t **lo,
                       const uint8_t **hi, const uint8_t **data) {
    for (int i = 0; i < ck->n_files; i++) {
        const uint8_t *b = ck->files[i]->bytes;
        if (p >= b && p < b + ck->files[i]->size) {
            *lo = b;
            *hi = b + ck->files[i]->size;
            *data = b + ck->files[i]->data_offset;
            return;
        }
    }
    *lo = *hi = *data = NULL;
}

enum moecl_status moecl_weights_create(cl_context ctx, const struct moecl_ckpt *ck,
                                       uint64_t max_alloc, int zero_copy,
                                       struct moecl_weights **weights_out) {
    enum moecl_status status = MOECL_OK;
    struct spans s = {0};
    struct moecl_weights *w = NULL;
    *weights_out = NULL;
    if (collect_spans(ck, &s) != 0) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "weights: out of memory listing tensors");
        goto cleanup;
    }
    qsort(s.v, (size_t)s.n, sizeof *s.v, cmp_span);
    w = calloc(1, sizeof *w);
    if (!w || !(w->pieces = calloc((size_t)s.n + 1, sizeof *w->pieces))) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "weights: out of memory");
        goto cleanup;
    }
    w->zero_copy = zero_copy;
    /* Greedy cut: extend the open piece while the next span is in the same mapping and the
     * piece stays within the limit; otherwise start a new piece at that span's page. */
    const uint8_t *p_start = NULL, *p_end = NULL, *m_lo = NULL, *m_hi = NULL;
    for (int i = 0; i <= s.n; i++) {
        const uint8_t *lo = NULL, *hi = NULL, *data = NULL;
        if (i < s.n) {
            mapping_of(ck, s.v[i].start, &lo, &hi, &data);
            if ((uint64_t)(s.v[i].end - s.v[i].start) + PAGE > max_alloc) {
                status = moecl_error_set(
                    MOECL_ERR_DEVICE_MEMORY,
                    "weights: tensor %s is %zu bytes, over the device's max allocation of %llu",
                    s.v[i].name, (size_t)(s.v[i].end - s.v[i].start),
                    (unsigned long long)max_alloc);
                goto cleanup;
            }
            if (p_start && lo && lo == m_lo && s.v[i].start <= p_end + PAGE &&
                (uint64_t)((s.v[i].end > p_end ? s.v[i].end : p_end) - p_start) <= max_alloc) {
                if (s.v[i].end > p_end)
                    p_end = s.v[i].end;
                continue;
            }
            if (p_start && !lo && s.v[i].end <= p_end)
                continue; /* inside the open converted piece */
        }
        if (p_start) {
            /* Close the open piece. */
            if (m_hi && p_end > m_hi)
                p_end = m_hi;
            struct moecl_wpiece *pc = &w->pieces[w->n_pieces];
            pc->host = p_start;
            pc->n_bytes = (size_t)(p_end - p_start);
            cl_int err;
            if (zero_copy) {
                pc->mem = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, pc->n_bytes,
                                         (void *)(uintptr_t)pc->host, &err);
            } else {
                pc->mem = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, pc->n_bytes,
                                         (void *)(uintptr_t)pc->host, &err);
                w->device_bytes += pc->n_bytes;
            }
            if (err != CL_SUCCESS) {
                status = moecl_error_set(MOECL_ERR_CL,
                                         "weights: clCreateBuffer(%s, %zu bytes) failed: %s",
                                         zero_copy ? "USE_HOST_PTR" : "COPY_HOST_PTR", pc->n_bytes,
                                         moecl_cl_err_name(err));
                goto cleanup;
            }
            w->covered_bytes += pc->n_bytes;
            w->n_pieces++;
            p_start = NULL;
        }
        if (i < s.n) {
            m_lo = lo;
            m_hi = hi;
            /* Zero copy: page-align the start inside the mapping. Copy: start at a multiple
             * of 256 bytes from the file's tensor data, so that tensors keep in the device
             * buffer the alignment their offsets in the data section give them (safetensors
             * does not pad the header: mlx-written files often start their data at an odd
             * byte, and GPUs cannot load words from odd addresses). A converted buffer starts
             * where it is (its allocation may begin mid-page). */
            if (!lo)
                p_start = s.v[i].start;
            else if (zero_copy)
                p_start = (const uint8_t *)((uintptr_t)s.v[i].start & ~(PAGE - 1));
            else
                p_start = s.v[i].start >= data ? data + (size_t)(s.v[i].start - data) / 256 * 256
                                               : s.v[i].start;
            if (lo && p_start < lo)
                p_start = lo;
            p_end = s.v[i].end;
        }
    }
    *weights_out = w;
    w = NULL;
cleanup:
    free(s.v);
    moecl_weights_release(w);
    return status;
}

enum moecl_status moecl_weights_find(const struct moecl_weights *w, const void *ptr, size_t n_bytes,
                                     const char *what, cl_mem *mem_out, size_t *offset_out) {
    *mem_out = NULL;
    *offset_out = 0;
    const uint8_t *p = ptr;
    int lo = 0, hi = w->n_pieces - 1, best = -1;
    while (lo <= hi) { /* last piece starting at or before p */
        int mid = lo + (hi - lo) / 2;
        if (w->pieces[mid].host <= p) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    /* Pieces of converted buffers may nest inside one another's address range; scan back. */
    for (int i = best; i >= 0; i--) {
        const struct moecl_wpiece *pc = &w->pieces[i];
        if (p >= pc->host && p + n_bytes <= pc->host + pc->n_bytes) {
            *mem_out = pc->mem;
            *offset_out = (size_t)(p - pc->host);
            return MOECL_OK;
        }
    }
    return moecl_error_set(MOECL_ERR_NOT_FOUND,
                           "weights: %s (%zu bytes at %p) is not inside one weight piece",
                           what ? what : "tensor", n_bytes, ptr);
}

void moecl_weights_release(struct moecl_weights *w) {
    if (!w)
        return;
    for (int i = 0; i < w->n_pieces; i++)
        if (w->pieces[i].mem)
            clReleaseMemObject(w->pieces[i].mem);
    free(w->pieces);
    free(w);
}
