/* Shared by host C and OpenCL C: argument structs and constants of moecl's kernels.
 * The program builder prepends this file to every .cl source; host code includes it directly.
 * Keep it to fixed-width types that mean the same on both sides. */
#ifndef MOECL_SHARED_H
#define MOECL_SHARED_H

#ifdef __OPENCL_VERSION__
typedef uint moecl_u32;
typedef int moecl_i32;
typedef ulong moecl_u64;
#else
#include <stdint.h>
typedef uint32_t moecl_u32;
typedef int32_t moecl_i32;
typedef uint64_t moecl_u64;
#endif

#endif
