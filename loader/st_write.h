/* Streaming safetensors writer with constant memory.
 *
 * Usage: create the writer for a path, declare every tensor (name, dtype, shape) in the order
 * its bytes will be written, optionally add string metadata (mlx-lm writes {"format": "mlx"}),
 * then moecl_st_writer_begin() writes the 8-byte length and the JSON header (space-padded so the
 * data area starts at a multiple of 8). Then, for each declared tensor in order:
 * moecl_st_writer_tensor_begin(name), any number of moecl_st_writer_write() pieces, and
 * moecl_st_writer_tensor_end(), which checks the tensor received exactly its byte size.
 * moecl_st_writer_finish() flushes and closes the file; moecl_st_writer_free() releases the
 * writer and, if finish did not succeed, removes the partial file.
 *
 * Memory: the declarations plus one write buffer (a few MiB), whatever the tensor sizes.
 * Every error message names the file and, where one is involved, the tensor.
 */
#ifndef MOECL_ST_WRITE_H
#define MOECL_ST_WRITE_H

#include "checkpoint.h"

#include <stddef.h>
#include <stdint.h>

struct moecl_st_writer;

/* Creates a writer for `path` (the file is created by moecl_st_writer_begin). */
MOECL_WUR enum moecl_status moecl_st_writer_create(const char *path,
                                                   struct moecl_st_writer **writer_out);
/* NULL-safe. Removes the file if it was created and moecl_st_writer_finish did not succeed. */
void moecl_st_writer_free(struct moecl_st_writer *writer);

/* Adds a "__metadata__" string entry (before begin). */
MOECL_WUR enum moecl_status moecl_st_writer_metadata(struct moecl_st_writer *writer,
                                                     const char *key, const char *value);

/* Declares the next tensor (before begin). Names must be unique; 0 <= n_dims <= MOECL_MAX_DIMS,
 * every dim >= 0. */
MOECL_WUR enum moecl_status moecl_st_writer_declare(struct moecl_st_writer *writer,
                                                    const char *name, enum moecl_dtype dtype,
                                                    int n_dims, const int64_t *shape);

/* Byte size of the data area as declared so far, and of the whole file once begun. */
uint64_t moecl_st_writer_data_bytes(const struct moecl_st_writer *writer);

/* Creates the file and writes the header. */
MOECL_WUR enum moecl_status moecl_st_writer_begin(struct moecl_st_writer *writer);

/* Starts the next declared tensor; `name` must be the one declared next. */
MOECL_WUR enum moecl_status moecl_st_writer_tensor_begin(struct moecl_st_writer *writer,
                                                         const char *name);
/* Appends n bytes of the current tensor; more than its declared size is an error. */
MOECL_WUR enum moecl_status moecl_st_writer_write(struct moecl_st_writer *writer, const void *data,
                                                  size_t n);
/* Ends the current tensor; fewer bytes than declared is an error. */
MOECL_WUR enum moecl_status moecl_st_writer_tensor_end(struct moecl_st_writer *writer);

/* Checks every declared tensor was written, flushes and closes the file. */
MOECL_WUR enum moecl_status moecl_st_writer_finish(struct moecl_st_writer *writer);

#endif
