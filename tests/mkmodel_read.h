/* Test-side safetensors header reader for the mkmodel suites: independent of loader/ so that the
 * writer is checked by a second implementation. Parses the header with cJSON and checks the
 * layout (length, 8-byte padding, contiguous in-bounds offsets, byte size = shape x dtype). */
#ifndef MOECL_TEST_MKMODEL_READ_H
#define MOECL_TEST_MKMODEL_READ_H

#include <stdint.h>
#include <stdio.h>

struct tst_tensor {
    char name[160];
    char dtype[16];
    int n_dims;
    int64_t shape[8];
    uint64_t begin, end; /* absolute file offsets */
};

struct tst_file {
    int n;
    struct tst_tensor *t;
    char format[32]; /* __metadata__.format, "" if absent */
    uint64_t file_bytes, header_bytes;
};

/* Returns 0 on success, else -1 with a reason in err. */
int tst_st_read(const char *path, struct tst_file *out, char *err, size_t err_n);
void tst_st_free(struct tst_file *f);
const struct tst_tensor *tst_st_find(const struct tst_file *f, const char *name);
/* Reads n bytes at an absolute offset; 0 on success. */
int tst_read_at(const char *path, uint64_t off, void *buf, size_t n);

#endif
