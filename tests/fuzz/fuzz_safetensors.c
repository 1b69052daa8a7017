/* libFuzzer target: the safetensors header parser on arbitrary bytes.
 *
 * Whatever parses must describe tensors that lie inside the input: every byte of every tensor
 * is read (AddressSanitizer catches a view past the end), and byte sizes must match shapes. */
#include "safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct moecl_st_file *f = NULL;
    if (moecl_st_parse("fuzz.safetensors", data, size, 0, &f) != MOECL_OK)
        return 0;
    volatile unsigned sum = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const struct moecl_tensor *t = &f->tensors[i];
        uint64_t n = moecl_dtype_size(t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->shape[d];
        if (n != t->n_bytes || t->file_offset + t->n_bytes > size)
            abort();
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->n_bytes; k++)
            sum += p[k];
        (void)moecl_st_find(f, t->name);
    }
    (void)moecl_st_metadata(f, "format");
    moecl_st_close(f);
    return 0;
}
