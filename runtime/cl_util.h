/* Internal OpenCL helpers: the CL-call wrapper, symbolic error names, device handles. */
#ifndef MOECL_CL_UTIL_H
#define MOECL_CL_UTIL_H

#include <CL/cl.h>

#include "moecl_error.h"

/* "CL_OUT_OF_RESOURCES" etc.; "CL_ERROR(<n>)" for unknown codes (pointer to static storage). */
const char *moecl_cl_err_name(cl_int err);

/* Wraps one CL call: on failure sets `status` to MOECL_ERR_CL, records the call text and the
 * symbolic error name as the last error, and jumps to `cleanup`. The enclosing function must
 * declare `enum moecl_status status` and a `cleanup:` label. */
#define MOECL_CL_CALL(call)                                                                        \
    do {                                                                                           \
        cl_int moecl_cl_err_ = (call);                                                             \
        if (moecl_cl_err_ != CL_SUCCESS) {                                                         \
            status = moecl_error_set(MOECL_ERR_CL, "%s failed: %s (%s:%d)", #call,                 \
                                     moecl_cl_err_name(moecl_cl_err_), __FILE__, __LINE__);        \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* For calls that return their error through a last `cl_int *` argument: write
 * `x = clCreateBuffer(..., &err); MOECL_CL_CHECK(err, "clCreateBuffer");`. */
#define MOECL_CL_CHECK(err, what)                                                                  \
    do {                                                                                           \
        if ((err) != CL_SUCCESS) {                                                                 \
            status = moecl_error_set(MOECL_ERR_CL, "%s failed: %s (%s:%d)", (what),                \
                                     moecl_cl_err_name(err), __FILE__, __LINE__);                  \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* Jumps to cleanup if a moecl call failed (its message already set). */
#define MOECL_TRY(expr)                                                                            \
    do {                                                                                           \
        status = (expr);                                                                           \
        if (status != MOECL_OK)                                                                    \
            goto cleanup;                                                                          \
    } while (0)

/* A discovered device with its CL handles; `info` is what the public API reports. */
struct moecl_cl_device {
    struct moecl_device_info info;
    cl_platform_id platform;
    cl_device_id device;
};

/* Enumerates every device of every platform (malloc'd array, free()). */
MOECL_WUR enum moecl_status moecl_cl_devices_enumerate(struct moecl_cl_device **devices_out,
                                                       int *n_out);

#endif
