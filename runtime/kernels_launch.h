/* Launch helpers shared by the launchers (kernels.c) and the fused GPU decode launchers
 * (kernels_fused.c); not part of the runtime's interface. */
#ifndef MOECL_KERNELS_LAUNCH_H
#define MOECL_KERNELS_LAUNCH_H

#include "kernels.h"

/* Sets argument i of kern to v (an lvalue), or jumps to cleanup with the error. */
#define ARG(kern, i, v) MOECL_CL_CALL(clSetKernelArg((kern), (i), sizeof(v), &(v)))

/* Enqueues kern over g0 (rounded up to l0) x g1 work-items, local l0 x 1; with profiling on,
 * its event is kept with op_class until moecl_prof_collect. */
MOECL_WUR enum moecl_status moecl_kenqueue(cl_command_queue q, const struct moecl_kernels *k,
                                           cl_kernel kern, const char *name, int op_class, int dims,
                                           size_t g0, size_t g1, size_t l0);
/* The op class of a product, from its module. */
int moecl_matmul_class(const struct moecl_qweight *w);
/* A shape error naming what is wrong. */
enum moecl_status moecl_bad_shape(const char *what);
/* matmul_fmw's alignments for this weight and these arguments (see kernels.c). */
int moecl_fmw_aligned(const struct moecl_dev_qweight *dw, const struct moecl_qmm_args *a);
/* Arguments first .. first + 3 of a product kernel: the weight's packed words, scales, affine
 * biases and output bias buffers. */
MOECL_WUR enum moecl_status moecl_set_weight_args(cl_kernel kern, cl_uint first,
                                                  const struct moecl_dev_qweight *dw);
/* A product's kernel arguments before the launcher picks a kernel. */
struct moecl_qmm_args moecl_qmm_args_of(const struct moecl_dev_qweight *dw, uint32_t x_offset,
                                        uint32_t x_stride, uint32_t x_div, int ids,
                                        uint32_t y_stride, uint32_t n_vec, int bias_mode);

#endif
