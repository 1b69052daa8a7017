/* Placement: which OpenCL device runs which part of the model (no OpenCL here).
 *
 * Spec grammar (comma-separated, later entries override earlier ones):
 *   all=DEV            everything
 *   attn=DEV           attention of every layer (norms, q/k/v/o, sinks, router, KV cache)
 *   attn[A-B]=DEV      attention of layers A..B (inclusive); attn[A]=DEV one layer
 *   experts=DEV        expert FFNs of every layer
 *   experts[A-B]=DEV   expert FFNs of layers A..B
 *   embed=DEV          token embedding
 *   lm_head=DEV        final norm and lm_head
 * DEV is what moecl_device_resolve accepts: cpu, gpu, pocl:1, nvidia:0, or a global index.
 * Shorthands as llama.cpp spells them: --cpu-moe (experts=cpu), --n-cpu-moe N
 * (experts[0-(N-1)]=cpu). */
#ifndef MOECL_PLACEMENT_H
#define MOECL_PLACEMENT_H

#include "moecl.h"

struct moecl_placement {
    int n_layers;
    int embed;    /* device index (into the discovery list) */
    int lm_head;  /* final norm + lm_head */
    int *attn;    /* [n_layers] */
    int *experts; /* [n_layers] */
};

/* The default device: the first GPU if one exists, else the first CPU device, else device 0. */
int moecl_placement_default_device(const struct moecl_device_info *devs, int n_devs);

/* Fills *p with every part on `device`; p->attn/experts are malloc'd (moecl_placement_free). */
MOECL_WUR enum moecl_status moecl_placement_init(struct moecl_placement *p, int n_layers,
                                                 int device);
void moecl_placement_free(struct moecl_placement *p);

/* Applies a spec (grammar above) on top of *p. On error *p is unchanged and the message names
 * the entry and the reason (unknown key, unknown device, layer out of range). */
MOECL_WUR enum moecl_status moecl_placement_apply(struct moecl_placement *p, const char *spec,
                                                  const struct moecl_device_info *devs, int n_devs);

/* --n-cpu-moe N: experts of layers 0..N-1 on the first CPU device (N < 0: all layers). */
MOECL_WUR enum moecl_status moecl_placement_cpu_moe(struct moecl_placement *p, int n_first,
                                                    const struct moecl_device_info *devs,
                                                    int n_devs);

/* Distinct devices used, in ascending index order; returns the count (<= max). */
int moecl_placement_devices(const struct moecl_placement *p, int *out, int max);

/* A compact description, e.g. "embed=pocl:0 attn=nvidia:0 experts[0-11]=pocl:0
 * experts[12-23]=nvidia:0 lm_head=nvidia:0"; writes at most n bytes. */
void moecl_placement_describe(const struct moecl_placement *p, const struct moecl_device_info *devs,
                              char *buf, size_t n);

#endif
