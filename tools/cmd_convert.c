/* moecl convert: rewrite a checkpoint (e.g. a Hugging Face bf16 fine-tune) in MLX layout. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

MOECL_COMMAND(convert, "rewrite a checkpoint in MLX layout (zero-copy loads afterwards)") {
    const char *dirs[2] = {NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: moecl convert SRC_DIR DST_DIR\n"
                   "Loads the checkpoint in SRC_DIR (any layout moecl reads: MLX, Hugging Face\n"
                   "MXFP4, Hugging Face bf16 fine-tune) and writes it to DST_DIR in MLX layout:\n"
                   "output-major gate_proj/up_proj/down_proj, quantization unchanged, shards of\n"
                   "at most 5 GiB, tokenizer and other side files copied. Loading DST_DIR then\n"
                   "copies no weight byte.\n");
            return 0;
        }
        if (argv[i][0] == '-' || n == 2) {
            fprintf(stderr, "moecl convert: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
        dirs[n++] = argv[i];
    }
    if (n != 2) {
        fprintf(stderr, "usage: moecl convert SRC_DIR DST_DIR\n");
        return 2;
    }
    enum moecl_status st = moecl_convert_to_mlx(dirs[0], dirs[1]);
    if (st != MOECL_OK)
        return moecl_cli_fail("converting checkpoint", st);
    printf("wrote %s (MLX layout)\n", dirs[1]);
    return 0;
}
