/* Weights on one OpenCL device: "give me (cl_mem, byte offset) for these host bytes".
 *
 * Every weight byte comes from the loader's mappings (plus the few buffers the loader converts,
 * e.g. Hugging Face bf16 experts). The mappings are cut into pieces no larger than the
 * device's CL_DEVICE_MAX_MEM_ALLOC_SIZE, each cut falling between tensors so that a tensor lies
 * wholly inside one piece; kernels then take a piece's cl_mem plus a byte offset.
 * - Host-unified device (PoCL's CPU device, integrated GPUs): each piece is a
 *   CL_MEM_USE_HOST_PTR buffer over the mapping itself (zero copy; pieces start on a page
 *   boundary, which satisfies PoCL's 128-byte minimum alignment so it never copies).
 * - Discrete device: each piece is copied once into a device buffer at creation.
 *
 * A unified-memory manager with per-device views will replace this module; the lookup call is
 * the interface to keep.
 *
 * Ownership: struct moecl_weights owns its cl_mem objects; it borrows the checkpoint, which must
 * outlive it (the zero-copy buffers alias its mappings). */
#ifndef MOECL_WEIGHTS_H
#define MOECL_WEIGHTS_H

#include "checkpoint.h"
#include "cl_util.h"

#include <stddef.h>
#include <stdint.h>

struct moecl_wpiece {
    const uint8_t *host; /* first byte covered (page-aligned within its mapping) */
    size_t n_bytes;
    cl_mem mem;
};

struct moecl_weights {
    int n_pieces;
    struct moecl_wpiece *pieces; /* sorted by host address */
    int zero_copy;               /* 1: USE_HOST_PTR views, 0: device copies */
    size_t device_bytes;         /* bytes copied to the device (0 when zero copy) */
    size_t covered_bytes;        /* bytes the pieces span */
};

/* Builds the pieces for every tensor of `ckpt` (and every converted buffer its modules point
 * into). `max_alloc_bytes` is the device's limit; `zero_copy` selects USE_HOST_PTR views. A
 * tensor larger than the limit is MOECL_ERR_DEVICE_MEMORY, naming it. */
MOECL_WUR enum moecl_status moecl_weights_create(cl_context ctx, const struct moecl_ckpt *ckpt,
                                                 uint64_t max_alloc_bytes, int zero_copy,
                                                 struct moecl_weights **weights_out);

/* The buffer holding host bytes [ptr, ptr + n_bytes) and the offset of ptr within it.
 * MOECL_ERR_NOT_FOUND if no single piece holds them all (`what` names them in the message). */
MOECL_WUR enum moecl_status moecl_weights_find(const struct moecl_weights *weights, const void *ptr,
                                               size_t n_bytes, const char *what, cl_mem *mem_out,
                                               size_t *offset_out);

/* NULL-safe. */
void moecl_weights_release(struct moecl_weights *weights);

#endif
