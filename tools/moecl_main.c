/* moecl: the command-line entry point; dispatches to tools/cmd_*.c. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define X(name)                                                                                    \
    extern const char moecl_cmd_##name##_summary[];                                                \
    int moecl_cmd_##name(int argc, char **argv);
#include "command_list.h"
#undef X

struct command {
    const char *name;
    const char *summary;
    int (*fn)(int, char **);
};

static const struct command commands[] = {
#define X(name) {#name, moecl_cmd_##name##_summary, moecl_cmd_##name},
#include "command_list.h"
#undef X
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moecl <command> [options]\n\ncommands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\n'moecl <command> --help' describes a command's options.\n");
}

int moecl_cli_fail(const char *what, enum moecl_status status) {
    fprintf(stderr, "moecl: error: %s: %s [%s]\n", what, moecl_last_error(),
            moecl_status_str(status));
    return 1;
}

const char *moecl_cli_bytes(uint64_t bytes, char *buf) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, 32, u ? "%.2f %s" : "%.0f %s", v, units[u]);
    return buf;
}

void moecl_cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, argv[1]) == 0)
            return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "moecl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
