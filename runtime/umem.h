/* The unified-memory manager: one view of every tensor and activation on every device, the way
 * Apple Silicon's shared memory gives MLX one.
 *
 * Devices and spaces. The manager knows up to MOECL_UMEM_MAX_DEVICES devices; each lives in a
 * "space", one cl_context (devices of one platform share a space, devices of different
 * platforms cannot). A cl_mem of a space is valid on every device of that space.
 *
 * Weights. The canonical allocation is the checkpoint's mapping. moecl_umem_weights_create takes
 * the list of weight spans (host bytes, tensor name, memory class, device the placement puts it
 * on) and makes, per device, pieces no larger than the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE
 * (or the $MOECL_MAX_ALLOC_BYTES stand-in, whichever is smaller), each piece holding spans of one
 * class only, each span wholly inside one piece:
 * - host-unified device (PoCL's CPU device, integrated GPUs): a CL_MEM_USE_HOST_PTR view of the
 *   mapping (zero copy; pieces start on a page so PoCL uses the pointer as the storage);
 * - discrete device: a mirror, uploaded once at creation, of the spans placed on that device
 *   only. Weights are read-only: a mirror never goes stale.
 * moecl_umem_weight_find turns (device, host bytes) into (cl_mem, offset).
 *
 * Unified buffers (activations, hand-off buffers, KV cache, scratch) are made at context
 * creation, never in the token loop: a canonical page-aligned host allocation plus one view per
 * space that uses the buffer (a USE_HOST_PTR view of the host allocation on a host-unified
 * device, a device buffer on a discrete one). When a discrete device uses the buffer, the host
 * allocation is pinned memory of that device's context (a CL_MEM_ALLOC_HOST_PTR buffer mapped
 * once and kept mapped until the buffer is freed), so the hand-off copies to and from that
 * device are DMA from pinned pages; the other spaces' views and copies use the same mapped
 * pointer. $MOECL_PIN_HOST=1 pins on any device (the path testable on PoCL), =0 never. Pinned
 * bytes are host memory: they count in moecl_umem_host_bytes under the buffer's class, never
 * in a device's accounting. Each buffer has a version, bumped by every write;
 * each view and the host copy remember the version they hold. moecl_umem_acquire makes a view
 * current for reading on a device and queue: nothing when it is; an event dependency (a marker
 * on the writer's queue, flushed, in the reader's wait list) when the writer shares the space;
 * otherwise a copy through the host allocation signalled by a user event of the reader's
 * context that a callback on the writer's event completes (no host thread waits, no clFinish).
 * Buffers acquired together travel together: one marker per source queue, one callback and
 * one user event per hand-off, however many buffers it carries.
 * moecl_umem_release records a write. Only the bytes a write declared valid are moved.
 *
 * Accounting: every cl_mem the manager makes is registered with its device and memory class;
 * moecl_umem_device_bytes gives the sums, and the registry can be walked to compare with what
 * the devices report (CL_MEM_SIZE). Bytes moved between devices (device -> host -> device
 * copies) are counted in total; callers take differences per token.
 *
 * Ownership: the manager owns its cl_mems, host allocations and events; it borrows the
 * cl_contexts and the checkpoint mappings, which must outlive it. Not thread-safe: one thread
 * enqueues at a time. */
#ifndef MOECL_UMEM_H
#define MOECL_UMEM_H

#include "cl_util.h"
#include "moecl.h"

#include <stddef.h>
#include <stdint.h>

#define MOECL_UMEM_MAX_DEVICES 8

/* A device as the caller hands it to the manager. */
struct moecl_umem_device_desc {
    cl_context ctx; /* the device's space; devices with the same ctx share buffers */
    cl_device_id device;
    const char *name;    /* "pocl:0": names it in messages and reports */
    int zero_copy;       /* 1: views of host memory (host-unified device), 0: mirrors */
    uint64_t max_alloc;  /* the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    uint64_t global_mem; /* the device's CL_DEVICE_GLOBAL_MEM_SIZE */
};

/* One weight span: n_bytes of host memory at host, read by kernels of `device`. */
struct moecl_umem_span {
    const void *host;
    size_t n_bytes;
    const char *name; /* the tensor, for messages */
    enum moecl_mem_class cls;
    int device;
    int in_mapping;                            /* 1: inside a checkpoint mapping [map_lo, map_hi) */
    const uint8_t *map_lo, *map_hi, *map_data; /* mapping bounds and its data-section start */
};

/* Every cl_mem the manager made (for accounting and tests). */
struct moecl_umem_alloc {
    cl_mem mem;
    int device;
    enum moecl_mem_class cls;
    size_t n_bytes;
    int zero_copy;
};

struct moecl_umem;
struct moecl_ubuf;

/* A manager for n devices (<= MOECL_UMEM_MAX_DEVICES). $MOECL_MAX_ALLOC_BYTES, when set, lowers
 * every device's allocation limit to that value (a small stand-in to test the splitting). */
MOECL_WUR enum moecl_status moecl_umem_create(const struct moecl_umem_device_desc *devs, int n,
                                              struct moecl_umem **um_out);
/* NULL-safe. Waits for nothing: the caller finishes its queues first. */
void moecl_umem_release_all(struct moecl_umem *um);

/* The allocation limit in force for a device (after the stand-in). */
uint64_t moecl_umem_max_alloc(const struct moecl_umem *um, int device);

/* Checks that the spans can be placed, touching no weight byte: each span fits its device's
 * allocation limit. MOECL_ERR_DEVICE_MEMORY names the device, the tensor and the numbers.
 * (Whether the bytes fit the device is the memory plan's check, scheduler/memplan.h.) */
MOECL_WUR enum moecl_status moecl_umem_weights_check(const struct moecl_umem *um,
                                                     const struct moecl_umem_span *spans, int n);
/* Checks (as above), then makes the weight pieces for every device. */
MOECL_WUR enum moecl_status moecl_umem_weights_create(struct moecl_umem *um,
                                                      const struct moecl_umem_span *spans, int n);
/* The piece of `device` holding host bytes [ptr, ptr + n_bytes) and ptr's offset in it.
 * MOECL_ERR_NOT_FOUND (naming `what` and the device) if no single piece holds them. */
MOECL_WUR enum moecl_status moecl_umem_weight_find(const struct moecl_umem *um, int device,
                                                   const void *ptr, size_t n_bytes,
                                                   const char *what, cl_mem *mem_out,
                                                   size_t *offset_out);
/* Weight pieces made for a device (views or mirrors). */
int moecl_umem_weight_pieces(const struct moecl_umem *um, int device);

/* A unified buffer of n_bytes used by the devices in dev_mask (bit d = device d): the host
 * allocation (when `host` is 1 or a device of the mask is zero-copy) and one view per space,
 * accounted to the first device of the mask in that space under `cls`. */
MOECL_WUR enum moecl_status moecl_umem_buffer_create(struct moecl_umem *um, const char *name,
                                                     enum moecl_mem_class cls, size_t n_bytes,
                                                     unsigned dev_mask, int host,
                                                     struct moecl_ubuf **buf_out);
/* NULL-safe. */
void moecl_umem_buffer_free(struct moecl_umem *um, struct moecl_ubuf *buf);

/* The buffer's view in `device`'s space, with no coherence action (scratch whose producer and
 * consumers share one device). NULL if the device is not in the buffer's mask. */
cl_mem moecl_umem_view(const struct moecl_umem *um, const struct moecl_ubuf *buf, int device);
/* The canonical host allocation (NULL if none); valid until the buffer is freed. */
void *moecl_umem_host(const struct moecl_ubuf *buf);
/* 1: the host allocation is pinned memory (a mapped ALLOC_HOST_PTR buffer). */
int moecl_umem_pinned(const struct moecl_ubuf *buf);

enum moecl_umem_access {
    MOECL_UMEM_READ = 1,
    MOECL_UMEM_WRITE = 2, /* every valid byte will be overwritten: nothing is fetched */
    /* a hand-off across spaces waits on the host for its source (blocking the caller) instead
     * of chaining a callback into a user event: far less latency (NVIDIA's callbacks come
     * milliseconds late), no overlap of the caller's later enqueues with the wait.
     * $MOECL_HANDOFF=wait or =event overrides it either way. */
    MOECL_UMEM_HOST_WAIT = 4,
};

/* Makes bufs[0..n) current in `device`'s space for commands enqueued next on `q` (a queue of
 * that device): what must be copied is copied and what must be waited for is in a barrier on
 * q. With MOECL_UMEM_WRITE alone, nothing is fetched or waited for (the caller's data flow
 * orders writes after earlier reads). mems_out[i] (may be NULL) gets each view. */
MOECL_WUR enum moecl_status moecl_umem_acquire(struct moecl_umem *um,
                                               struct moecl_ubuf *const *bufs, int n, int device,
                                               cl_command_queue q, int access, cl_mem *mems_out);
/* Records that commands enqueued on q (device `device`) wrote the first valid_bytes of buf:
 * a new version, current only in that device's space. */
void moecl_umem_release(struct moecl_umem *um, struct moecl_ubuf *buf, int device,
                        cl_command_queue q, size_t valid_bytes);
/* Makes commands enqueued next on q_to (device `to`) wait for everything enqueued so far on
 * q_from (device `from`): a marker and a barrier in one space; across spaces a wait on the
 * host (a user event completed by a callback with $MOECL_HANDOFF=event). For write-after-read
 * orderings the data flow does not give (the next
 * step's first writes after the previous step's last reads). */
MOECL_WUR enum moecl_status moecl_umem_order(struct moecl_umem *um, int from,
                                             cl_command_queue q_from, int to,
                                             cl_command_queue q_to);
/* The buffer's version (bumped by every release). */
uint32_t moecl_umem_version(const struct moecl_ubuf *buf);

/* Accounting. */
uint64_t moecl_umem_device_bytes(const struct moecl_umem *um, int device, enum moecl_mem_class cls);
/* Host allocations of unified buffers of a class (page-rounded; pinned ones included), and
 * the pinned part of all of them. */
uint64_t moecl_umem_host_bytes(const struct moecl_umem *um, enum moecl_mem_class cls);
uint64_t moecl_umem_pinned_bytes(const struct moecl_umem *um);
uint64_t moecl_umem_moved_bytes(const struct moecl_umem *um);    /* device <-> host copies */
uint64_t moecl_umem_handoffs(const struct moecl_umem *um);       /* cross-queue dependencies */
uint64_t moecl_umem_uploaded_bytes(const struct moecl_umem *um); /* weight mirrors, once */
int moecl_umem_n_allocs(const struct moecl_umem *um);
const struct moecl_umem_alloc *moecl_umem_alloc_at(const struct moecl_umem *um, int i);

#endif
