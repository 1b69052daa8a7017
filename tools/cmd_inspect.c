/* moecl inspect: what a checkpoint folder holds (architecture, formats, bits per weight). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

MOECL_COMMAND(inspect, "describe a checkpoint folder: architecture, formats, bits per weight") {
    const char *dir = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tensors") == 0) {
            flags |= MOECL_INSPECT_TENSORS;
        } else if (strcmp(argv[i], "--json") == 0) {
            flags |= MOECL_INSPECT_JSON;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: moecl inspect DIR [--tensors] [--json]\n"
                   "Loads the checkpoint in DIR (MLX or Hugging Face layout), validates it and\n"
                   "prints the architecture, parameters / format / size per tensor class, bits\n"
                   "per weight as model cards count them, and the quantization map.\n"
                   "  --tensors  also list every tensor (dtype, shape, bytes, file)\n"
                   "  --json     machine-readable output\n");
            return 0;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "moecl inspect: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: moecl inspect DIR [--tensors] [--json]\n");
        return 2;
    }
    enum moecl_status st = moecl_inspect(dir, flags, stdout, NULL);
    if (st != MOECL_OK)
        return moecl_cli_fail("inspecting checkpoint", st);
    return 0;
}
