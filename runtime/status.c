/* Status names and the per-thread last-error message. */
#include "moecl_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[4096];

const char *moecl_status_str(enum moecl_status status) {
    static const char *const names[MOECL_STATUS_COUNT] = {
        [MOECL_OK] = "MOECL_OK",
        [MOECL_ERR_INVALID_ARG] = "MOECL_ERR_INVALID_ARG",
        [MOECL_ERR_IO] = "MOECL_ERR_IO",
        [MOECL_ERR_FORMAT] = "MOECL_ERR_FORMAT",
        [MOECL_ERR_UNSUPPORTED] = "MOECL_ERR_UNSUPPORTED",
        [MOECL_ERR_SHAPE] = "MOECL_ERR_SHAPE",
        [MOECL_ERR_NOT_FOUND] = "MOECL_ERR_NOT_FOUND",
        [MOECL_ERR_NO_MEMORY] = "MOECL_ERR_NO_MEMORY",
        [MOECL_ERR_NO_DEVICE] = "MOECL_ERR_NO_DEVICE",
        [MOECL_ERR_CL] = "MOECL_ERR_CL",
        [MOECL_ERR_BUILD] = "MOECL_ERR_BUILD",
        [MOECL_ERR_PLACEMENT] = "MOECL_ERR_PLACEMENT",
        [MOECL_ERR_DEVICE_MEMORY] = "MOECL_ERR_DEVICE_MEMORY",
        [MOECL_ERR_INTERNAL] = "MOECL_ERR_INTERNAL",
    };
    if ((unsigned)status >= MOECL_STATUS_COUNT || !names[status])
        return "MOECL_ERR_UNKNOWN";
    return names[status];
}

const char *moecl_last_error(void) {
    return last_error;
}

void moecl_error_clear(void) {
    last_error[0] = 0;
}

enum moecl_status moecl_error_set(enum moecl_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

enum moecl_status moecl_error_prefix(enum moecl_status status, const char *fmt, ...) {
    char prefix[1024], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof last_error)
        n = sizeof last_error - 1;
    memcpy(last_error, prefix, n);
    size_t rest = strlen(old);
    if (rest > sizeof last_error - 1 - n)
        rest = sizeof last_error - 1 - n;
    memcpy(last_error + n, old, rest);
    last_error[n + rest] = 0;
    return status;
}
