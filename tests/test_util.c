/* Helpers shared by the suites: temporary folders, files, child processes, seeded inputs. */
#include "test.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

char *moecl_test_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/moecl-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void moecl_test_rmtree(const char *path) {
    if (path)
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int moecl_test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int rc = fclose(f);
    return (w == n && rc == 0) ? 0 : -1;
}

int moecl_test_run(const char *cmd, char **output_out) {
    char full[8192];
    *output_out = NULL;
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        pclose(p);
        return -1;
    }
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 1024) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    buf[len] = 0;
    int st = pclose(p);
    *output_out = buf;
    if (st == -1)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

const char *moecl_test_bin(void) {
    const char *b = getenv("MOECL_BIN");
    return b && *b ? b : "build/moecl";
}

uint64_t moecl_test_rand(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float moecl_test_randf(uint64_t *state) {
    return (float)((double)(moecl_test_rand(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

const char *moecl_test_fixtures_dir(void) {
    const char *d = getenv("MOECL_FIXTURES_DIR");
    return d && *d ? d : "tests/fixtures";
}

char *moecl_test_slurp(const char *path, size_t *n_out) {
    if (n_out)
        *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *buf = n >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    if (n_out)
        *n_out = (size_t)n;
    return buf;
}

const char *moecl_test_cache_dir(void) {
    static char dir[3072];
    if (!dir[0]) {
        const char *bin = moecl_test_bin();
        const char *slash = strrchr(bin, '/');
        int n = slash ? (int)(slash - bin) : 1;
        char cwd[2048] = ".";
        if (bin[0] != '/' && !getcwd(cwd, sizeof cwd))
            snprintf(cwd, sizeof cwd, ".");
        snprintf(dir, sizeof dir, "%s%s%.*s/test-cache", bin[0] == '/' ? "" : cwd,
                 bin[0] == '/' ? "" : "/", n, slash ? bin : ".");
    }
    return dir;
}
