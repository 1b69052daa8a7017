/* The moecl command line: each subcommand lives in tools/cmd_<name>.c and is defined with
 * MOECL_COMMAND(name, "one-line summary"); the Makefile collects them into the dispatch table.
 * A command returns the process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef MOECL_CLI_H
#define MOECL_CLI_H

#include "moecl.h"

#include <stdint.h>
#include <stdio.h>

#define MOECL_COMMAND(name, summary)                                                               \
    const char moecl_cmd_##name##_summary[] = summary;                                             \
    int moecl_cmd_##name(int argc, char **argv);                                                   \
    int moecl_cmd_##name(int argc, char **argv)

/* Prints "moecl: error: <what>: <moecl_last_error()>" to stderr; returns 1. */
int moecl_cli_fail(const char *what, enum moecl_status status);

/* "1.50 GiB" style; buf must hold 32 bytes. */
const char *moecl_cli_bytes(uint64_t bytes, char *buf);

/* Writes s as a JSON string literal (with quotes) to f. */
void moecl_cli_json_str(FILE *f, const char *s);

#endif
