/* gen_unicode: build-time generator of the pre-tokenizer's Unicode class table.
 *
 *   gen_unicode UNICODE_DIR EXPECTED_VERSION OUT.c
 *
 * Reads UNICODE_DIR/UnicodeData.txt (General_Category, including the "<..., First>"/"<...,
 * Last>" range pairs) and UNICODE_DIR/PropList.txt (White_Space), checks that the data is the
 * pinned Unicode version (from PropList.txt's first line, "# PropList-15.0.0.txt"), and writes a
 * C file defining moecl_unicode_version, moecl_unicode_stage1 and moecl_unicode_stage2 as
 * declared in runtime/unicode_class.h. Exits non-zero with a message on any problem. */
#include "unicode_class.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CP 0x110000u

static unsigned char g_class[N_CP];

static unsigned category_flags(const char *gc) {
    if (gc[0] == 'L') {
        switch (gc[1]) {
        case 'u':
        case 't':
            return MOECL_UC_LETTER | MOECL_UC_UP;
        case 'l':
            return MOECL_UC_LETTER | MOECL_UC_LO;
        case 'm':
        case 'o':
            return MOECL_UC_LETTER | MOECL_UC_UP | MOECL_UC_LO;
        default:
            return 0;
        }
    }
    if (gc[0] == 'M')
        return MOECL_UC_MARK | MOECL_UC_UP | MOECL_UC_LO;
    if (gc[0] == 'N')
        return MOECL_UC_NUMBER;
    return 0;
}

static FILE *open_in(const char *dir, const char *name, char *path, size_t n_path) {
    snprintf(path, n_path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fprintf(stderr, "gen_unicode: error: %s: %s (install Debian's unicode-data: make deps)\n",
                path, strerror(errno));
    return f;
}

/* UnicodeData.txt: "CODE;NAME;GC;..." one line per code point, or a First/Last pair. */
static int read_unicode_data(const char *dir) {
    char path[4096], line[1024];
    FILE *f = open_in(dir, "UnicodeData.txt", path, sizeof path);
    if (!f)
        return -1;
    long first = -1;
    int n_line = 0, n_assigned = 0;
    while (fgets(line, sizeof line, f)) {
        n_line++;
        char *name = strchr(line, ';');
        char *gc = name ? strchr(name + 1, ';') : NULL;
        char *end = NULL;
        long cp = strtol(line, &end, 16);
        if (!gc || end != name || cp < 0 || cp >= (long)N_CP || !gc[1] || !gc[2]) {
            fprintf(stderr, "gen_unicode: error: %s:%d: malformed line\n", path, n_line);
            fclose(f);
            return -1;
        }
        gc++;
        unsigned flags = category_flags(gc);
        if (strstr(name, ", First>")) {
            first = cp;
            continue;
        }
        long lo = cp;
        if (strstr(name, ", Last>")) {
            if (first < 0 || first > cp) {
                fprintf(stderr, "gen_unicode: error: %s:%d: Last without First\n", path, n_line);
                fclose(f);
                return -1;
            }
            lo = first;
            first = -1;
        }
        for (long c = lo; c <= cp; c++)
            g_class[c] = (unsigned char)flags;
        n_assigned += (int)(cp - lo + 1);
    }
    fclose(f);
    if (n_assigned < 100000) {
        fprintf(stderr, "gen_unicode: error: %s: only %d code points\n", path, n_assigned);
        return -1;
    }
    return 0;
}

/* PropList.txt: "0009..000D    ; White_Space # ...". Also yields the version line. */
static int read_prop_list(const char *dir, const char *expected_version) {
    char path[4096], line[1024];
    FILE *f = open_in(dir, "PropList.txt", path, sizeof path);
    if (!f)
        return -1;
    int n_line = 0, n_space = 0;
    while (fgets(line, sizeof line, f)) {
        n_line++;
        if (n_line == 1) {
            char version[64] = "";
            size_t n_version = 0;
            if (sscanf(line, "# PropList-%63[0-9.]", version) == 1)
                n_version = strlen(version);
            if (n_version > 0 && version[n_version - 1] == '.')
                version[--n_version] = '\0'; /* the '.' of ".txt" */
            if (n_version == 0 || strcmp(version, expected_version) != 0) {
                fprintf(stderr,
                        "gen_unicode: error: %s is Unicode \"%s\" but the build pins %s "
                        "(UNICODE_VERSION in the Makefile)\n",
                        path, version, expected_version);
                fclose(f);
                return -1;
            }
            continue;
        }
        if (line[0] == '#' || !strstr(line, "; White_Space "))
            continue;
        char *end = NULL;
        long lo = strtol(line, &end, 16), hi = lo;
        if (end[0] == '.' && end[1] == '.')
            hi = strtol(end + 2, &end, 16);
        if (lo < 0 || hi < lo || hi >= (long)N_CP) {
            fprintf(stderr, "gen_unicode: error: %s:%d: bad range\n", path, n_line);
            fclose(f);
            return -1;
        }
        for (long c = lo; c <= hi; c++) {
            g_class[c] |= MOECL_UC_SPACE;
            n_space++;
        }
    }
    fclose(f);
    if (n_space != 25) {
        fprintf(stderr, "gen_unicode: error: %s: %d White_Space code points, expected 25\n", path,
                n_space);
        return -1;
    }
    return 0;
}

static int write_tables(const char *out_path, const char *version) {
    static uint16_t stage1[MOECL_UNICODE_N_BLOCKS];
    static uint16_t unique[MOECL_UNICODE_N_BLOCKS]; /* first block of each distinct content */
    int n_unique = 0;
    for (unsigned b = 0; b < MOECL_UNICODE_N_BLOCKS; b++) {
        int found = -1;
        for (int u = 0; u < n_unique && found < 0; u++)
            if (memcmp(&g_class[(size_t)unique[u] << 8], &g_class[(size_t)b << 8], 256) == 0)
                found = u;
        if (found < 0) {
            found = n_unique;
            unique[n_unique++] = (uint16_t)b;
        }
        stage1[b] = (uint16_t)found;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "gen_unicode: error: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fprintf(f,
            "/* Generated by tools/gen_unicode.c from Debian unicode-data (Unicode %s). "
            "Do not edit. */\n#include \"unicode_class.h\"\n\n",
            version);
    fprintf(f, "const char moecl_unicode_version[] = \"%s\";\n\n", version);
    fprintf(f, "const uint16_t moecl_unicode_stage1[MOECL_UNICODE_N_BLOCKS] = {");
    for (unsigned b = 0; b < MOECL_UNICODE_N_BLOCKS; b++)
        fprintf(f, "%s%u,", b % 16 ? " " : "\n    ", stage1[b]);
    fprintf(f, "\n};\n\n/* %d distinct blocks of 256 */\nconst uint8_t moecl_unicode_stage2[] = {",
            n_unique);
    for (int u = 0; u < n_unique; u++)
        for (unsigned i = 0; i < 256; i++)
            fprintf(f, "%s%u,", i % 16 ? " " : "\n    ", g_class[((size_t)unique[u] << 8) | i]);
    fprintf(f, "\n};\n");
    if (fclose(f) != 0 || rename(tmp, out_path) != 0) {
        fprintf(stderr, "gen_unicode: error: writing %s: %s\n", out_path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: gen_unicode UNICODE_DIR EXPECTED_VERSION OUT.c\n");
        return 2;
    }
    if (read_unicode_data(argv[1]) != 0 || read_prop_list(argv[1], argv[2]) != 0 ||
        write_tables(argv[3], argv[2]) != 0)
        return 1;
    return 0;
}
