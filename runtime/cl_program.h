/* OpenCL programs: sources embedded at build time (or read from MOECL_CL_SOURCE_DIR), built once
 * per device and cached on disk.
 *
 * Cache key: a hash of every source string, the build options, the device name, the driver
 * version and the platform version. Cache folder: $MOECL_CL_CACHE_DIR, else
 * $XDG_CACHE_HOME/moecl/kernels, else ~/.cache/moecl/kernels; MOECL_CL_CACHE_DIR=off disables it.
 * A missing, truncated or corrupt entry (checked by magic, key, length and checksum) falls back to
 * a source build; a build failure reports the full build log with the file names. */
#ifndef MOECL_CL_PROGRAM_H
#define MOECL_CL_PROGRAM_H

#include "cl_util.h"

#include <stddef.h>

/* The text of cl_kernels/<name> (embedded copy, or the file under $MOECL_CL_SOURCE_DIR). The
 * returned string is owned by the library and lives until exit. NULL if there is no such file. */
const char *moecl_cl_source(const char *name);

/* Where the program came from. */
enum moecl_cl_program_origin {
    MOECL_CL_PROGRAM_SOURCE = 0, /* compiled from source (and stored in the cache if enabled) */
    MOECL_CL_PROGRAM_CACHE = 1,  /* loaded from a cached binary */
};

/* Builds a program for `device` in `ctx` from cl_kernels files (moecl_shared.h is prepended,
 * then each file in order), with `options` (may be NULL). *program_out is the caller's to
 * release; *origin_out (may be NULL) says whether it came from the cache. */
MOECL_WUR enum moecl_status moecl_cl_program_build(cl_context ctx, cl_device_id device,
                                                   const char *const *files, int n_files,
                                                   const char *options, cl_program *program_out,
                                                   enum moecl_cl_program_origin *origin_out);

/* The cache folder in use ("" when disabled); static storage. */
const char *moecl_cl_cache_dir(void);

#endif
