/* The per-step plan: which device runs which part of a step, and the hand-offs between them
 * (no OpenCL here; devices are described by a small table of capabilities).
 *
 * A step (one token in decode, a chunk in prefill) is the op list
 *   EMBED, then per layer ATTN(l), EXPERTS(l), then HEAD
 * where ATTN(l) covers norm, q/k/v/o, rope, attention, KV append, the residual, the post-norm
 * and the router, and EXPERTS(l) the expert FFNs and their weighted sum. The residual stream
 * lives on the attention device: EXPERTS(l) on another device takes a hand-off (normed
 * activation, expert ids, weights) and gives one back (the weighted sum, added on the attention
 * device). A hand-off between devices of one platform (one OpenCL context) is an event
 * dependency on shared buffers; between platforms a copy through host memory signalled by a
 * user event. */
#ifndef MOECL_PLAN_H
#define MOECL_PLAN_H

#include "placement.h"

/* What the plan needs to know about a device. */
struct moecl_plan_device {
    int space; /* devices with the same space share an OpenCL context (one platform) */
};

enum moecl_plan_op_kind { MOECL_OP_EMBED, MOECL_OP_ATTN, MOECL_OP_EXPERTS, MOECL_OP_HEAD };

enum moecl_handoff_kind {
    MOECL_HANDOFF_NONE,  /* same device: in-order queue */
    MOECL_HANDOFF_EVENT, /* same context, other device: event dependency with a flush */
    MOECL_HANDOFF_HOST,  /* other context: copy through host memory + user event */
};

struct moecl_plan_op {
    enum moecl_plan_op_kind kind;
    int layer;                    /* ATTN, EXPERTS; -1 otherwise */
    int device;                   /* index into the device table */
    int from;                     /* device the op's input comes from */
    enum moecl_handoff_kind in;   /* how the input arrives */
    enum moecl_handoff_kind back; /* EXPERTS: how the sum goes back to the attention device */
};

struct moecl_plan {
    int n_ops;
    struct moecl_plan_op *ops; /* [n_ops] = 2 + 2 * n_layers */
    int n_handoffs[3];         /* per step, by kind (index: enum moecl_handoff_kind) */
};

/* The plan for a placement whose device fields index `devs` (n_devs entries). */
MOECL_WUR enum moecl_status moecl_plan_build(const struct moecl_placement *p,
                                             const struct moecl_plan_device *devs, int n_devs,
                                             struct moecl_plan *plan_out);
void moecl_plan_free(struct moecl_plan *plan);

/* "none", "event", "host". */
const char *moecl_handoff_name(enum moecl_handoff_kind k);

/* One line per op into buf (at most n bytes), e.g. "ATTN 0 @1 <- @0 (host)". */
void moecl_plan_describe(const struct moecl_plan *plan, char *buf, size_t n);

#endif
