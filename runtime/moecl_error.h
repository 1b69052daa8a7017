/* Internal error reporting shared by runtime/ and loader/ (no OpenCL here).
 *
 * moecl_error_set() formats the thread's last-error message and returns the status, so a
 * failure is reported in one statement: `return moecl_error_set(MOECL_ERR_IO, "%s: %s", path,
 * strerror(errno));`. */
#ifndef MOECL_ERROR_H
#define MOECL_ERROR_H

#include "moecl.h"

enum moecl_status moecl_error_set(enum moecl_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with more context ("loading model.safetensors: " + old). */
enum moecl_status moecl_error_prefix(enum moecl_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void moecl_error_clear(void);

#endif
