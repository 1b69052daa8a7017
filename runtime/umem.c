/* The unified-memory manager (umem.h).
 *
 * Why weight pieces start on a page boundary: PoCL uses a USE_HOST_PTR pointer as the buffer's
 * storage only when it meets the device's minimum alignment (128 bytes measured) and otherwise
 * may copy; a page-aligned start is aligned for every device, and stays inside the mapping
 * because mappings start on pages. Mirrors start at a multiple of 256 bytes from the file's
 * data section instead, so tensors keep the alignment their offsets give them (mlx files often
 * start their data at an odd byte, and GPUs cannot load words from odd addresses).
 *
 * Why one class per piece: the accounting per class is then exact (the sum over a device's
 * pieces is what CL_MEM_SIZE reports), at the price of a few more, smaller pieces. */
#include "umem.h"

#include "safetensors.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE ((uintptr_t)4096)

struct wpiece {
    int device;
    enum moecl_mem_class cls;
    const uint8_t *host;
    size_t n_bytes;
    cl_mem mem;
};

struct udev {
    struct moecl_umem_device_desc d;
    char name[64];
    int space;
    uint64_t bytes[MOECL_MEM_N_CLASSES];
    int n_pieces;
};

struct moecl_umem {
    int n_devices, n_spaces;
    struct udev dev[MOECL_UMEM_MAX_DEVICES];
    cl_context spaces[MOECL_UMEM_MAX_DEVICES];
    int space_zero_copy[MOECL_UMEM_MAX_DEVICES]; /* every device of the space is zero-copy */
    struct wpiece *pieces;
    int n_pieces;
    /* Contexts of one model may be created, evaluated and released on different threads: the
     * registry is under a lock, the counters are atomic. */
    pthread_mutex_t lock;
    struct moecl_umem_alloc *allocs;
    int n_allocs, cap_allocs;
    _Atomic uint64_t moved, handoffs, uploaded;
    /* Host memory of unified buffers by class (page-rounded), and the pinned part of it. */
    _Atomic uint64_t host_bytes[MOECL_MEM_N_CLASSES], pinned_bytes;
    /* Per space, the queue that maps and unmaps pinned host buffers (made when first needed,
     * under the lock). */
    cl_command_queue pin_q[MOECL_UMEM_MAX_DEVICES];
    int pin_mode; /* $MOECL_PIN_HOST: -1 unset (discrete devices), 0 never, 1 every device */
    /* $MOECL_HANDOFF: 1 wait (every hand-off across spaces waits on the host), 0 event (none
     * does), -1 unset (MOECL_UMEM_HOST_WAIT decides) */
    int handoff_mode;
};

struct uview {
    cl_mem mem;
    int zero_copy;
    uint32_t version;
    cl_command_queue writer_q; /* queue that made this view current (NULL: none yet) */
    cl_event ready;            /* marker on writer_q after that, made when first needed */
};

struct moecl_ubuf {
    char name[48];
    enum moecl_mem_class cls;
    size_t n_bytes, valid;
    uint8_t *host;
    size_t host_bytes; /* host allocation, page-rounded */
    cl_mem pinned;     /* the host allocation is this ALLOC_HOST_PTR buffer, mapped */
    int pin_space;     /* its space (its queue unmaps it) */
    uint32_t version, host_version;
    cl_event host_ready; /* event (of the writer's context) after which host holds host_version */
    int writer_space;
    unsigned dev_mask;
    struct uview view[MOECL_UMEM_MAX_DEVICES]; /* per space */
};

/* ------------------------------------------------------------------ devices and registry */

static enum moecl_status register_alloc(struct moecl_umem *um, cl_mem mem, int device,
                                        enum moecl_mem_class cls, size_t n_bytes, int zero_copy) {
    pthread_mutex_lock(&um->lock);
    if (um->n_allocs == um->cap_allocs) {
        int cap = um->cap_allocs ? um->cap_allocs * 2 : 256;
        struct moecl_umem_alloc *na = realloc(um->allocs, (size_t)cap * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&um->lock);
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "umem: out of host memory");
        }
        um->allocs = na;
        um->cap_allocs = cap;
    }
    struct moecl_umem_alloc *a = &um->allocs[um->n_allocs++];
    a->mem = mem;
    a->device = device;
    a->cls = cls;
    a->n_bytes = n_bytes;
    a->zero_copy = zero_copy;
    um->dev[device].bytes[cls] += n_bytes;
    pthread_mutex_unlock(&um->lock);
    return MOECL_OK;
}

static void unregister_alloc(struct moecl_umem *um, cl_mem mem) {
    pthread_mutex_lock(&um->lock);
    for (int i = 0; i < um->n_allocs; i++)
        if (um->allocs[i].mem == mem) {
            um->dev[um->allocs[i].device].bytes[um->allocs[i].cls] -= um->allocs[i].n_bytes;
            um->allocs[i] = um->allocs[--um->n_allocs];
            break;
        }
    pthread_mutex_unlock(&um->lock);
}

enum moecl_status moecl_umem_create(const struct moecl_umem_device_desc *devs, int n,
                                    struct moecl_umem **um_out) {
    *um_out = NULL;
    if (n <= 0 || n > MOECL_UMEM_MAX_DEVICES)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "umem: %d devices (1..%d)", n,
                               MOECL_UMEM_MAX_DEVICES);
    struct moecl_umem *um = calloc(1, sizeof *um);
    if (!um)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "umem: out of host memory");
    if (pthread_mutex_init(&um->lock, NULL) != 0) {
        free(um);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "umem: cannot make a mutex");
    }
    const char *pin = getenv("MOECL_PIN_HOST");
    um->pin_mode = pin && *pin ? strcmp(pin, "0") != 0 : -1;
    const char *ho = getenv("MOECL_HANDOFF");
    um->handoff_mode = ho && !strcmp(ho, "wait") ? 1 : ho && !strcmp(ho, "event") ? 0 : -1;
    uint64_t stand_in = 0;
    const char *env = getenv("MOECL_MAX_ALLOC_BYTES");
    if (env && *env)
        stand_in = strtoull(env, NULL, 0);
    for (int i = 0; i < n; i++) {
        struct udev *u = &um->dev[i];
        u->d = devs[i];
        snprintf(u->name, sizeof u->name, "%s", devs[i].name ? devs[i].name : "device");
        u->d.name = u->name;
        if (stand_in && (stand_in < u->d.max_alloc || !u->d.max_alloc))
            u->d.max_alloc = stand_in;
        u->space = -1;
        for (int s = 0; s < um->n_spaces; s++)
            if (um->spaces[s] == devs[i].ctx)
                u->space = s;
        if (u->space < 0) {
            u->space = um->n_spaces;
            um->spaces[um->n_spaces] = devs[i].ctx;
            um->space_zero_copy[um->n_spaces] = 1;
            um->n_spaces++;
        }
        if (!devs[i].zero_copy)
            um->space_zero_copy[u->space] = 0;
    }
    um->n_devices = n;
    *um_out = um;
    return MOECL_OK;
}

void moecl_umem_release_all(struct moecl_umem *um) {
    if (!um)
        return;
    for (int s = 0; s < MOECL_UMEM_MAX_DEVICES; s++)
        if (um->pin_q[s])
            clReleaseCommandQueue(um->pin_q[s]);
    for (int i = 0; i < um->n_pieces; i++)
        if (um->pieces[i].mem)
            clReleaseMemObject(um->pieces[i].mem);
    free(um->pieces);
    free(um->allocs);
    pthread_mutex_destroy(&um->lock);
    free(um);
}

uint64_t moecl_umem_max_alloc(const struct moecl_umem *um, int device) {
    return um->dev[device].d.max_alloc;
}

/* ------------------------------------------------------------------ weights */

static int cmp_span(const void *a, const void *b) {
    const struct moecl_umem_span *x = a, *y = b;
    if (x->device != y->device)
        return x->device - y->device;
    if (x->cls != y->cls)
        return (int)x->cls - (int)y->cls;
    const uint8_t *px = x->host, *py = y->host;
    return px < py ? -1 : px > py ? 1 : 0;
}

enum moecl_status moecl_umem_weights_check(const struct moecl_umem *um,
                                           const struct moecl_umem_span *spans, int n) {
    for (int i = 0; i < n; i++) {
        const struct moecl_umem_span *s = &spans[i];
        if (s->device < 0 || s->device >= um->n_devices)
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "umem: %s on device %d of %d", s->name,
                                   s->device, um->n_devices);
        const struct udev *u = &um->dev[s->device];
        if ((uint64_t)s->n_bytes + PAGE > u->d.max_alloc)
            return moecl_error_set(MOECL_ERR_DEVICE_MEMORY,
                                   "device %s cannot hold tensor %s (%s): %zu bytes, and its "
                                   "largest buffer is %llu bytes (a tensor is never split across "
                                   "buffers)",
                                   u->name, s->name, moecl_mem_class_name(s->cls), s->n_bytes,
                                   (unsigned long long)u->d.max_alloc);
    }
    return MOECL_OK;
}

static enum moecl_status close_piece(struct moecl_umem *um, int device, enum moecl_mem_class cls,
                                     const uint8_t *start, const uint8_t *end, int in_mapping) {
    enum moecl_status status = MOECL_OK;
    struct udev *u = &um->dev[device];
    struct wpiece *pc = &um->pieces[um->n_pieces];
    pc->device = device;
    pc->cls = cls;
    pc->host = start;
    pc->n_bytes = (size_t)(end - start);
    cl_int err;
    if (u->d.zero_copy)
        pc->mem = clCreateBuffer(u->d.ctx, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, pc->n_bytes,
                                 (void *)(uintptr_t)start, &err);
    else
        pc->mem = clCreateBuffer(u->d.ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, pc->n_bytes,
                                 (void *)(uintptr_t)start, &err);
    if (err != CL_SUCCESS) {
        pc->mem = NULL;
        return moecl_error_set(MOECL_ERR_CL,
                               "device %s: clCreateBuffer(%s, %zu bytes of %s) failed: %s", u->name,
                               u->d.zero_copy ? "USE_HOST_PTR" : "COPY_HOST_PTR", pc->n_bytes,
                               moecl_mem_class_name(cls), moecl_cl_err_name(err));
    }
    um->n_pieces++;
    u->n_pieces++;
    if (!u->d.zero_copy) {
        um->uploaded += pc->n_bytes;
        /* The mirror holds the bytes now: drop the mapping's pages from this process, so no
         * weight byte is resident twice (a read-only file mapping: a later read, e.g. by a
         * zero-copy view of another device, faults the page back in from the file). Never for
         * a converted buffer, whose anonymous pages would read back as zeros. */
        if (in_mapping)
            moecl_st_release(start, pc->n_bytes);
    }
    MOECL_TRY(register_alloc(um, pc->mem, device, cls, pc->n_bytes, u->d.zero_copy));
cleanup:
    return status;
}

enum moecl_status moecl_umem_weights_create(struct moecl_umem *um,
                                            const struct moecl_umem_span *spans_in, int n) {
    enum moecl_status status = MOECL_OK;
    struct moecl_umem_span *s = NULL;
    MOECL_TRY(moecl_umem_weights_check(um, spans_in, n));
    if (um->pieces)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "umem: weights made twice");
    s = malloc(((size_t)n + 1) * sizeof *s);
    um->pieces = calloc((size_t)n + 1, sizeof *um->pieces);
    if (!s || !um->pieces) {
        status = moecl_error_set(MOECL_ERR_NO_MEMORY, "umem: out of host memory");
        goto cleanup;
    }
    memcpy(s, spans_in, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    /* Greedy cut per (device, class): extend the open piece while the next span is in the same
     * mapping, starts within a page of its end and the piece stays within the limit. */
    const uint8_t *p_start = NULL, *p_end = NULL, *m_lo = NULL, *m_hi = NULL;
    int p_dev = -1;
    enum moecl_mem_class p_cls = MOECL_MEM_ATTN_WEIGHTS;
    for (int i = 0; i <= n; i++) {
        const struct moecl_umem_span *sp = i < n ? &s[i] : NULL;
        const uint8_t *st = sp ? sp->host : NULL, *en = sp ? st + sp->n_bytes : NULL;
        if (sp && !sp->n_bytes)
            continue;
        if (sp && p_start && sp->device == p_dev && sp->cls == p_cls) {
            uint64_t lim = um->dev[p_dev].d.max_alloc;
            if (sp->in_mapping && sp->map_lo == m_lo && st <= p_end + PAGE &&
                (uint64_t)((en > p_end ? en : p_end) - p_start) <= lim) {
                if (en > p_end)
                    p_end = en;
                continue;
            }
            if (!sp->in_mapping && !m_lo && st >= p_start && en <= p_end)
                continue; /* inside the open converted piece */
        }
        if (p_start) {
            if (m_hi && p_end > m_hi)
                p_end = m_hi;
            MOECL_TRY(close_piece(um, p_dev, p_cls, p_start, p_end, m_lo != NULL));
            p_start = NULL;
        }
        if (!sp)
            break;
        p_dev = sp->device;
        p_cls = sp->cls;
        m_lo = sp->in_mapping ? sp->map_lo : NULL;
        m_hi = sp->in_mapping ? sp->map_hi : NULL;
        if (!sp->in_mapping)
            p_start = st; /* a converted buffer starts where it is */
        else if (um->dev[p_dev].d.zero_copy)
            p_start = (const uint8_t *)((uintptr_t)st & ~(PAGE - 1));
        else
            p_start =
                st >= sp->map_data ? sp->map_data + (size_t)(st - sp->map_data) / 256 * 256 : st;
        if (m_lo && p_start < m_lo)
            p_start = m_lo;
        p_end = en;
    }
cleanup:
    free(s);
    return status;
}

enum moecl_status moecl_umem_weight_find(const struct moecl_umem *um, int device, const void *ptr,
                                         size_t n_bytes, const char *what, cl_mem *mem_out,
                                         size_t *offset_out) {
    *mem_out = NULL;
    *offset_out = 0;
    const uint8_t *p = ptr;
    for (int i = 0; i < um->n_pieces; i++) {
        const struct wpiece *pc = &um->pieces[i];
        if (pc->device == device && p >= pc->host && p + n_bytes <= pc->host + pc->n_bytes) {
            *mem_out = pc->mem;
            *offset_out = (size_t)(p - pc->host);
            return MOECL_OK;
        }
    }
    return moecl_error_set(MOECL_ERR_NOT_FOUND,
                           "umem: %s (%zu bytes) is not inside one weight piece of device %s",
                           what ? what : "tensor", n_bytes,
                           device >= 0 && device < um->n_devices ? um->dev[device].name : "?");
}

int moecl_umem_weight_pieces(const struct moecl_umem *um, int device) {
    return device >= 0 && device < um->n_devices ? um->dev[device].n_pieces : 0;
}

/* ------------------------------------------------------------------ unified buffers */

/* The device whose context pins a buffer's host allocation, or -1 for plain host memory: the
 * first discrete device (its space not host-unified) of the mask, where DMA from pinned pages
 * is what the device benefits from; $MOECL_PIN_HOST=1: the first device of the mask on any
 * device (the path made testable on PoCL); $MOECL_PIN_HOST=0: never. */
static int pin_device(const struct moecl_umem *um, unsigned mask) {
    if (um->pin_mode == 0)
        return -1;
    for (int d = 0; d < um->n_devices; d++)
        if ((mask >> d & 1) && (um->pin_mode == 1 || !um->space_zero_copy[um->dev[d].space]))
            return d;
    return -1;
}

/* Makes b's host allocation pinned memory of `device`'s context: a CL_MEM_ALLOC_HOST_PTR buffer
 * mapped once, kept mapped until the buffer is freed; the mapped pointer is b->host. */
static enum moecl_status pin_host(struct moecl_umem *um, struct moecl_ubuf *b, int device,
                                  size_t n_bytes) {
    enum moecl_status status = MOECL_OK;
    const struct udev *u = &um->dev[device];
    cl_int err = CL_SUCCESS;
    pthread_mutex_lock(&um->lock);
    if (!um->pin_q[u->space])
        um->pin_q[u->space] = clCreateCommandQueueWithProperties(u->d.ctx, u->d.device, NULL, &err);
    cl_command_queue q = um->pin_q[u->space];
    pthread_mutex_unlock(&um->lock);
    if (!q)
        return moecl_error_set(MOECL_ERR_CL, "device %s: a queue to map pinned buffer %s: %s",
                               u->name, b->name, moecl_cl_err_name(err));
    b->pinned =
        clCreateBuffer(u->d.ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, n_bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        b->pinned = NULL;
        return moecl_error_set(MOECL_ERR_CL,
                               "device %s: clCreateBuffer(ALLOC_HOST_PTR, pinned host memory for "
                               "%s, %zu bytes): %s",
                               u->name, b->name, n_bytes, moecl_cl_err_name(err));
    }
    b->pin_space = u->space;
    b->host = clEnqueueMapBuffer(q, b->pinned, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, n_bytes, 0,
                                 NULL, NULL, &err);
    if (err != CL_SUCCESS || !b->host) {
        b->host = NULL;
        status =
            moecl_error_set(MOECL_ERR_CL, "device %s: mapping pinned buffer %s (%zu bytes): %s",
                            u->name, b->name, n_bytes, moecl_cl_err_name(err));
    }
    return status;
}

enum moecl_status moecl_umem_buffer_create(struct moecl_umem *um, const char *name,
                                           enum moecl_mem_class cls, size_t n_bytes,
                                           unsigned dev_mask, int host,
                                           struct moecl_ubuf **buf_out) {
    enum moecl_status status = MOECL_OK;
    struct moecl_ubuf *b = NULL;
    *buf_out = NULL;
    if (!n_bytes)
        n_bytes = 4;
    b = calloc(1, sizeof *b);
    if (!b)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "umem: out of host memory");
    snprintf(b->name, sizeof b->name, "%s", name);
    b->cls = cls;
    b->n_bytes = n_bytes;
    b->dev_mask = dev_mask & ((1u << um->n_devices) - 1);
    b->writer_space = -1;
    for (int d = 0; d < um->n_devices; d++)
        if ((b->dev_mask >> d & 1) && um->dev[d].d.zero_copy)
            host = 1;
    if (host) {
        size_t rounded = (n_bytes + PAGE - 1) / PAGE * PAGE;
        int pin_dev = pin_device(um, b->dev_mask);
        if (pin_dev >= 0) {
            MOECL_TRY(pin_host(um, b, pin_dev, rounded));
        } else {
            b->host = aligned_alloc(PAGE, rounded);
            if (!b->host) {
                status = moecl_error_set(MOECL_ERR_NO_MEMORY,
                                         "umem: %s: out of host memory (%zu bytes)", name, n_bytes);
                goto cleanup;
            }
        }
        memset(b->host, 0, rounded);
        b->host_bytes = rounded;
        um->host_bytes[cls] += rounded;
        if (b->pinned)
            um->pinned_bytes += rounded;
    }
    for (int d = 0; d < um->n_devices; d++) {
        if (!(b->dev_mask >> d & 1))
            continue;
        struct udev *u = &um->dev[d];
        struct uview *v = &b->view[u->space];
        if (v->mem)
            continue;
        cl_int err;
        v->zero_copy = um->space_zero_copy[u->space];
        if (n_bytes > u->d.max_alloc) {
            status = moecl_error_set(MOECL_ERR_DEVICE_MEMORY,
                                     "device %s cannot hold buffer %s (%s): %zu bytes > its "
                                     "largest buffer of %llu bytes",
                                     u->name, name, moecl_mem_class_name(cls), n_bytes,
                                     (unsigned long long)u->d.max_alloc);
            goto cleanup;
        }
        if (v->zero_copy)
            v->mem = clCreateBuffer(u->d.ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, n_bytes,
                                    b->host, &err);
        else
            v->mem = clCreateBuffer(u->d.ctx, CL_MEM_READ_WRITE, n_bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            v->mem = NULL;
            status = moecl_error_set(MOECL_ERR_CL, "device %s: clCreateBuffer(%s, %zu bytes): %s",
                                     u->name, name, n_bytes, moecl_cl_err_name(err));
            goto cleanup;
        }
        MOECL_TRY(register_alloc(um, v->mem, d, cls, n_bytes, v->zero_copy));
    }
    *buf_out = b;
    b = NULL;
cleanup:
    moecl_umem_buffer_free(um, b);
    return status;
}

void moecl_umem_buffer_free(struct moecl_umem *um, struct moecl_ubuf *b) {
    if (!b)
        return;
    for (int s = 0; s < MOECL_UMEM_MAX_DEVICES; s++) {
        struct uview *v = &b->view[s];
        if (v->ready)
            clReleaseEvent(v->ready);
        if (v->mem) {
            unregister_alloc(um, v->mem);
            clReleaseMemObject(v->mem);
        }
    }
    if (b->host_ready)
        clReleaseEvent(b->host_ready);
    if (b->host) {
        um->host_bytes[b->cls] -= b->host_bytes;
        if (b->pinned)
            um->pinned_bytes -= b->host_bytes;
    }
    if (b->pinned) {
        /* the views of the pointer are released above; unmap, wait for it, release */
        cl_command_queue q = um->pin_q[b->pin_space];
        if (b->host && clEnqueueUnmapMemObject(q, b->pinned, b->host, 0, NULL, NULL) == CL_SUCCESS)
            clFinish(q);
        clReleaseMemObject(b->pinned);
    } else {
        free(b->host);
    }
    free(b);
}

cl_mem moecl_umem_view(const struct moecl_umem *um, const struct moecl_ubuf *b, int device) {
    if (!um || !b || device < 0 || device >= um->n_devices || !(b->dev_mask >> device & 1))
        return NULL;
    return b->view[um->dev[device].space].mem;
}

void *moecl_umem_host(const struct moecl_ubuf *b) {
    return b ? b->host : NULL;
}

int moecl_umem_pinned(const struct moecl_ubuf *b) {
    return b && b->pinned != NULL;
}

uint32_t moecl_umem_version(const struct moecl_ubuf *b) {
    return b ? b->version : 0;
}

/* ------------------------------------------------------------------ coherence */

struct signal {
    cl_event user; /* completed by the callback */
};

static void CL_CALLBACK signal_cb(cl_event ev, cl_int st, void *data) {
    (void)ev;
    cl_event user = data;
    clSetUserEventStatus(user, st < 0 ? st : CL_COMPLETE);
    clReleaseEvent(user);
}

/* Markers made during one acquire: one per source queue, so that every buffer a queue wrote
 * (and every read enqueued on it) shares one event, one callback and one user event. */
struct markers {
    cl_command_queue q[16];
    cl_event ev[16];
    int n;
};

static enum moecl_status marker_of(struct markers *mk, cl_command_queue q, cl_event *ev_out) {
    enum moecl_status status = MOECL_OK;
    *ev_out = NULL;
    for (int i = 0; i < mk->n; i++)
        if (mk->q[i] == q) {
            *ev_out = mk->ev[i];
            return MOECL_OK;
        }
    if (mk->n == 16)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "umem: more than 16 source queues");
    MOECL_CL_CALL(clEnqueueMarkerWithWaitList(q, 0, NULL, &mk->ev[mk->n]));
    MOECL_CL_CALL(clFlush(q));
    mk->q[mk->n] = q;
    *ev_out = mk->ev[mk->n++];
cleanup:
    return status;
}

static void set_event(cl_event *slot, cl_event ev) {
    if (ev)
        clRetainEvent(ev);
    if (*slot)
        clReleaseEvent(*slot);
    *slot = ev;
}

static int add_wait(cl_event *waits, int n, cl_event ev) {
    for (int i = 0; i < n; i++)
        if (waits[i] == ev)
            return n;
    waits[n] = ev;
    return n + 1;
}

enum moecl_status moecl_umem_acquire(struct moecl_umem *um, struct moecl_ubuf *const *bufs, int n,
                                     int device, cl_command_queue q, int access, cl_mem *mems_out) {
    enum moecl_status status = MOECL_OK;
    /* same-space writers' markers, and the host copies' (source-space) markers, kept apart so a
     * marker never precedes a read it must cover */
    struct markers mk = {{NULL}, {NULL}, 0}, mk_src = {{NULL}, {NULL}, 0};
    cl_event waits[32], sources[16], users[16];
    int n_waits = 0, n_sources = 0;
    struct moecl_ubuf *stale[16];
    int n_stale = 0, marker_for[16];
    cl_command_queue src_q[16];
    if (n > 16)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "umem: acquire of %d buffers (<= 16)", n);
    const struct udev *u = &um->dev[device];
    int sp = u->space;
    /* 1. Classify; enqueue the device -> host reads of stale buffers on their writers' queues. */
    for (int i = 0; i < n; i++) {
        struct moecl_ubuf *b = bufs[i];
        struct uview *v = &b->view[sp];
        if (mems_out)
            mems_out[i] = v->mem;
        if (!v->mem) {
            status = moecl_error_set(MOECL_ERR_INVALID_ARG,
                                     "umem: buffer %s has no view on device %s", b->name, u->name);
            goto cleanup;
        }
        if (!(access & MOECL_UMEM_READ) || b->writer_space < 0 || v->version == b->version) {
            /* Current here (or not needed): at most a same-space dependency on another queue. */
            if ((access & MOECL_UMEM_READ) && v->version == b->version && v->writer_q &&
                v->writer_q != q) {
                if (!v->ready) {
                    cl_event ev;
                    MOECL_TRY(marker_of(&mk, v->writer_q, &ev));
                    set_event(&v->ready, ev);
                }
                int before = n_waits;
                n_waits = add_wait(waits, n_waits, v->ready);
                um->handoffs += (uint64_t)(n_waits > before);
            }
            continue;
        }
        /* Stale here: the bytes come through the host allocation. */
        struct uview *src = &b->view[b->writer_space];
        if (!b->host) {
            status = moecl_error_set(MOECL_ERR_INVALID_ARG,
                                     "umem: buffer %s is stale on device %s and has no host copy",
                                     b->name, u->name);
            goto cleanup;
        }
        marker_for[n_stale] = 0;
        if (b->host_version != b->version) {
            if (!src->zero_copy) {
                MOECL_CL_CALL(clEnqueueReadBuffer(src->writer_q, src->mem, CL_FALSE, 0, b->valid,
                                                  b->host, 0, NULL, NULL));
                um->moved += b->valid;
            }
            /* Host bytes are ready after the writer's queue reaches this point (a zero-copy
             * writer's view is the host allocation itself). */
            marker_for[n_stale] = 1;
            src_q[n_stale] = src->writer_q;
            b->host_version = b->version;
        }
        stale[n_stale++] = b;
    }
    /* 2. One marker per source queue, after its reads: the host copies' ready event. */
    for (int i = 0; i < n_stale; i++) {
        if (!marker_for[i])
            continue;
        cl_event ev;
        MOECL_TRY(marker_of(&mk_src, src_q[i], &ev));
        set_event(&stale[i]->host_ready, ev);
    }
    /* 3. One user event of this space per distinct source event, completed by a callback. */
    for (int i = 0; i < n_stale; i++) {
        int seen = 0;
        for (int j = 0; j < n_sources; j++)
            seen |= sources[j] == stale[i]->host_ready;
        if (seen)
            continue;
        if (um->handoff_mode == 1 || (um->handoff_mode < 0 && (access & MOECL_UMEM_HOST_WAIT))) {
            sources[n_sources] = stale[i]->host_ready;
            users[n_sources++] = NULL;
            MOECL_CL_CALL(clWaitForEvents(1, &stale[i]->host_ready));
            um->handoffs++;
            continue;
        }
        cl_int err;
        cl_event ue = clCreateUserEvent(um->spaces[sp], &err);
        MOECL_CL_CHECK(err, "clCreateUserEvent");
        sources[n_sources] = stale[i]->host_ready;
        users[n_sources++] = ue;
        clRetainEvent(ue); /* the callback's reference */
        err = clSetEventCallback(stale[i]->host_ready, CL_COMPLETE, signal_cb, ue);
        if (err != CL_SUCCESS) {
            clReleaseEvent(ue);
            MOECL_CL_CHECK(err, "clSetEventCallback");
        }
        n_waits = add_wait(waits, n_waits, ue);
        um->handoffs++;
    }
    if (n_waits)
        MOECL_CL_CALL(clEnqueueBarrierWithWaitList(q, (cl_uint)n_waits, waits, NULL));
    /* 4. Host -> device copies into mirrors; the views are current from here on q. */
    for (int i = 0; i < n_stale; i++) {
        struct moecl_ubuf *b = stale[i];
        struct uview *v = &b->view[sp];
        if (!v->zero_copy) {
            MOECL_CL_CALL(
                clEnqueueWriteBuffer(q, v->mem, CL_FALSE, 0, b->valid, b->host, 0, NULL, NULL));
            um->moved += b->valid;
        }
        v->version = b->version;
        set_event(&v->ready, NULL);
        v->writer_q = q;
    }
    if (n_waits)
        MOECL_CL_CALL(clFlush(q));
cleanup:
    for (int i = 0; i < n_sources; i++)
        if (users[i])
            clReleaseEvent(users[i]);
    for (int i = 0; i < mk.n; i++)
        clReleaseEvent(mk.ev[i]);
    for (int i = 0; i < mk_src.n; i++)
        clReleaseEvent(mk_src.ev[i]);
    return status;
}

enum moecl_status moecl_umem_order(struct moecl_umem *um, int from, cl_command_queue q_from, int to,
                                   cl_command_queue q_to) {
    enum moecl_status status = MOECL_OK;
    cl_event ev = NULL, ue = NULL;
    if (q_from == q_to)
        return MOECL_OK;
    MOECL_CL_CALL(clEnqueueMarkerWithWaitList(q_from, 0, NULL, &ev));
    MOECL_CL_CALL(clFlush(q_from));
    if (um->dev[from].space == um->dev[to].space) {
        MOECL_CL_CALL(clEnqueueBarrierWithWaitList(q_to, 1, &ev, NULL));
    } else if (um->handoff_mode != 0) {
        MOECL_CL_CALL(clWaitForEvents(1, &ev));
    } else {
        cl_int err;
        ue = clCreateUserEvent(um->spaces[um->dev[to].space], &err);
        MOECL_CL_CHECK(err, "clCreateUserEvent");
        clRetainEvent(ue);
        err = clSetEventCallback(ev, CL_COMPLETE, signal_cb, ue);
        if (err != CL_SUCCESS) {
            clReleaseEvent(ue);
            MOECL_CL_CHECK(err, "clSetEventCallback");
        }
        MOECL_CL_CALL(clEnqueueBarrierWithWaitList(q_to, 1, &ue, NULL));
    }
cleanup:
    if (ev)
        clReleaseEvent(ev);
    if (ue)
        clReleaseEvent(ue);
    return status;
}

void moecl_umem_release(struct moecl_umem *um, struct moecl_ubuf *b, int device, cl_command_queue q,
                        size_t valid_bytes) {
    int sp = um->dev[device].space;
    struct uview *v = &b->view[sp];
    b->version++;
    b->valid = valid_bytes < b->n_bytes ? valid_bytes : b->n_bytes;
    b->writer_space = sp;
    v->version = b->version;
    v->writer_q = q;
    if (v->ready) {
        clReleaseEvent(v->ready);
        v->ready = NULL;
    }
}

/* ------------------------------------------------------------------ accounting */

uint64_t moecl_umem_device_bytes(const struct moecl_umem *um, int device,
                                 enum moecl_mem_class cls) {
    if (!um || device < 0 || device >= um->n_devices || (unsigned)cls >= MOECL_MEM_N_CLASSES)
        return 0;
    return um->dev[device].bytes[cls];
}

uint64_t moecl_umem_host_bytes(const struct moecl_umem *um, enum moecl_mem_class cls) {
    return um && (unsigned)cls < MOECL_MEM_N_CLASSES ? um->host_bytes[cls] : 0;
}

uint64_t moecl_umem_pinned_bytes(const struct moecl_umem *um) {
    return um ? um->pinned_bytes : 0;
}

uint64_t moecl_umem_moved_bytes(const struct moecl_umem *um) {
    return um ? um->moved : 0;
}

uint64_t moecl_umem_handoffs(const struct moecl_umem *um) {
    return um ? um->handoffs : 0;
}

uint64_t moecl_umem_uploaded_bytes(const struct moecl_umem *um) {
    return um ? um->uploaded : 0;
}

int moecl_umem_n_allocs(const struct moecl_umem *um) {
    return um ? um->n_allocs : 0;
}

const struct moecl_umem_alloc *moecl_umem_alloc_at(const struct moecl_umem *um, int i) {
    return um && i >= 0 && i < um->n_allocs ? &um->allocs[i] : NULL;
}
