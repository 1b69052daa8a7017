/* The .cl sources embedded at build time (build/gen/cl_sources.c, from tools/embed_cl.c). */
#ifndef MOECL_CL_SOURCES_H
#define MOECL_CL_SOURCES_H

struct moecl_cl_source {
    const char *name; /* file name within cl_kernels/, e.g. "util.cl" */
    const char *text;
};

/* Terminated by an entry with name == NULL. */
extern const struct moecl_cl_source moecl_cl_sources[];

#endif
