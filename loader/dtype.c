/* dtype and quantization-mode names and sizes (safetensors spelling). */
#include "checkpoint.h"
#include "loader_internal.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[MOECL_DTYPE_COUNT] = {
    [MOECL_DTYPE_F32] = {"F32", 4},         [MOECL_DTYPE_F16] = {"F16", 2},
    [MOECL_DTYPE_BF16] = {"BF16", 2},       [MOECL_DTYPE_F64] = {"F64", 8},
    [MOECL_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [MOECL_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [MOECL_DTYPE_BOOL] = {"BOOL", 1},       [MOECL_DTYPE_U8] = {"U8", 1},
    [MOECL_DTYPE_I8] = {"I8", 1},           [MOECL_DTYPE_U16] = {"U16", 2},
    [MOECL_DTYPE_I16] = {"I16", 2},         [MOECL_DTYPE_U32] = {"U32", 4},
    [MOECL_DTYPE_I32] = {"I32", 4},         [MOECL_DTYPE_U64] = {"U64", 8},
    [MOECL_DTYPE_I64] = {"I64", 8},
};

size_t moecl_dtype_size(enum moecl_dtype dtype) {
    if ((unsigned)dtype >= MOECL_DTYPE_COUNT)
        return 0;
    return dtype_table[dtype].size;
}

const char *moecl_dtype_name(enum moecl_dtype dtype) {
    if ((unsigned)dtype >= MOECL_DTYPE_COUNT)
        return "?";
    return dtype_table[dtype].name;
}

int moecl_dtype_parse(const char *name, enum moecl_dtype *dtype_out) {
    for (int i = 0; i < MOECL_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0) {
            *dtype_out = (enum moecl_dtype)i;
            return 1;
        }
    return 0;
}

int moecl_dtype_is_float(enum moecl_dtype dtype) {
    return dtype == MOECL_DTYPE_F32 || dtype == MOECL_DTYPE_F16 || dtype == MOECL_DTYPE_BF16;
}

const char *moecl_qmode_name(enum moecl_qmode mode) {
    switch (mode) {
    case MOECL_QMODE_NONE:
        return "float";
    case MOECL_QMODE_AFFINE:
        return "affine";
    case MOECL_QMODE_MXFP4:
        return "mxfp4";
    case MOECL_QMODE_MXFP8:
        return "mxfp8";
    case MOECL_QMODE_NVFP4:
        return "nvfp4";
    }
    return "?";
}
