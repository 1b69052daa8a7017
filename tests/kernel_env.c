/* The kernel tests' shared OpenCL environment (see kernel_env.h). */
#include "kernel_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kenv_open(struct kenv *e, int act, const struct moecl_qformat *fmts, int n_fmts) {
    return kenv_open_numerics(e, act, 0, fmts, n_fmts);
}

int kenv_open_numerics(struct kenv *e, int act, int fast_numerics, const struct moecl_qformat *fmts,
                       int n_fmts) {
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    memset(e, 0, sizeof *e);
    if (moecl_cl_devices_enumerate(&devs, &n) != MOECL_OK || n == 0)
        return -1;
    cl_int err;
    /* $MOECL_TEST_DEVICE picks another device by index (e.g. a GPU) */
    const char *want = getenv("MOECL_TEST_DEVICE");
    int di = want ? atoi(want) : 0;
    e->dev = devs[di >= 0 && di < n ? di : 0].device;
    free(devs);
    e->ctx = clCreateContext(NULL, 1, &e->dev, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return -1;
    e->q = clCreateCommandQueueWithProperties(e->ctx, e->dev, NULL, &err);
    if (err != CL_SUCCESS)
        return -1;
    if (moecl_programs_build(e->ctx, e->dev, act, 0, fast_numerics, fmts, n_fmts, &e->progs) !=
            MOECL_OK ||
        moecl_kernels_create(&e->progs, &e->k) != MOECL_OK) {
        printf("  build: %s\n", moecl_last_error());
        return -1;
    }
    return 0;
}

void kenv_close(struct kenv *e) {
    moecl_kernels_free(&e->k);
    moecl_programs_free(&e->progs);
    if (e->q)
        clReleaseCommandQueue(e->q);
    if (e->ctx)
        clReleaseContext(e->ctx);
}

struct kenv_lanes kenv_lanes_set(const char *lanes) {
    struct kenv_lanes old = {0, ""};
    const char *v = getenv("MOECL_FAST_LANES");
    if (v) {
        old.had = 1;
        snprintf(old.value, sizeof old.value, "%s", v);
    }
    if (lanes)
        setenv("MOECL_FAST_LANES", lanes, 1);
    return old;
}

void kenv_lanes_restore(const struct kenv_lanes *old) {
    if (old->had)
        setenv("MOECL_FAST_LANES", old->value, 1);
    else
        unsetenv("MOECL_FAST_LANES");
}
