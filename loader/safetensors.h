/* A bounded safetensors reader.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header, then the data area.
 * The header maps each tensor name to {dtype, shape, data_offsets [begin, end)} relative to
 * the data area, plus an optional "__metadata__" object of string values.
 *
 * Everything is validated before any tensor is handed out: the header lies inside the file and
 * is at most MOECL_ST_MAX_HEADER bytes (checked before anything is allocated), it is a JSON
 * object, every dtype is known, every shape has at most MOECL_MAX_DIMS non-negative dims,
 * begin <= end lies inside the data area, end - begin == product(shape) * dtype size (with
 * overflow checks), names are unique and no two tensors' bytes overlap. Errors name the file,
 * the tensor and the reason.
 *
 * Ownership: struct moecl_st_file owns its mapping (when opened from a path), the tensor array
 * and the name strings; all live until moecl_st_close().
 */
#ifndef MOECL_SAFETENSORS_H
#define MOECL_SAFETENSORS_H

#include "checkpoint.h"

#include <stddef.h>
#include <stdint.h>

/* The reference implementation refuses headers above 100 MB; so do we. */
#define MOECL_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

struct moecl_st_file {
    char *path;
    const uint8_t *bytes; /* the whole file */
    size_t size;
    int mapped;         /* 1: bytes is our mmap, unmapped on close */
    size_t data_offset; /* 8 + header length */
    int n_tensors;
    struct moecl_tensor *tensors; /* in header order */
    int n_metadata;
    char **metadata_keys, **metadata_values; /* "__metadata__" entries */
};

/* Maps `path` read-only and parses it; tensors' file_index is set to file_index. */
MOECL_WUR enum moecl_status moecl_st_open(const char *path, int file_index,
                                          struct moecl_st_file **file_out);

/* Parses bytes[0..size) already in memory (not copied, not owned: they must outlive the
 * result). `path` is only used in messages. */
MOECL_WUR enum moecl_status moecl_st_parse(const char *path, const void *bytes, size_t size,
                                           int file_index, struct moecl_st_file **file_out);

void moecl_st_close(struct moecl_st_file *file);

/* A tensor of this file by name (linear search), or NULL. */
const struct moecl_tensor *moecl_st_find(const struct moecl_st_file *file, const char *name);

/* Drops the resident pages wholly inside [p, p + n) of a read-only mapping (madvise
 * DONTNEED): for bytes read once (conversion), so resident memory does not grow with the
 * source. The bytes stay valid and are read back from the page cache if touched again. */
void moecl_st_release(const void *p, size_t n);

/* A metadata value ("format" -> "mlx"), or NULL. */
const char *moecl_st_metadata(const struct moecl_st_file *file, const char *key);

#endif
