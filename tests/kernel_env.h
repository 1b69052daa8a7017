/* The OpenCL environment the kernel tests share: one device (index $MOECL_TEST_DEVICE, else 0),
 * its context and queue, and the forward-pass programs and kernels built for it. */
#ifndef MOECL_TEST_KERNEL_ENV_H
#define MOECL_TEST_KERNEL_ENV_H

#include "kernels.h"
#include "model_internal.h"

struct kenv {
    cl_context ctx;
    cl_device_id dev;
    cl_command_queue q;
    struct moecl_programs progs;
    struct moecl_kernels k;
};

/* Builds the programs with activation dtype `act` and the weight formats fmts[0..n_fmts).
 * Returns 0, or -1 (printing the build error, if any); kenv_close is safe either way. */
int kenv_open(struct kenv *e, int act, const struct moecl_qformat *fmts, int n_fmts);
/* The same with the fast-numerics kernels (matmul_fm) built and in use where a format has one. */
int kenv_open_numerics(struct kenv *e, int act, int fast_numerics, const struct moecl_qformat *fmts,
                       int n_fmts);
void kenv_close(struct kenv *e);

/* $MOECL_FAST_LANES for the programs built next (the device's vector lanes; "1" forces the GPU
 * decompositions on PoCL): kenv_lanes_set sets it (NULL leaves it) and returns what was there,
 * for kenv_lanes_restore. */
struct kenv_lanes {
    int had;
    char value[32];
};
struct kenv_lanes kenv_lanes_set(const char *lanes);
void kenv_lanes_restore(const struct kenv_lanes *old);

#endif
