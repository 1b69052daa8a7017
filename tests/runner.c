/* The test runner: runs every TEST in build/gen/test_list.h whose name contains argv[1]. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define X(name) void test_##name(void);
#include "test_list.h"
#undef X

struct test_entry {
    const char *name;
    void (*fn)(void);
};

static const struct test_entry all_tests[] = {
#define X(name) {#name, test_##name},
#include "test_list.h"
#undef X
    {NULL, NULL},
};

static int cur_failed;
static int cur_skipped;

void moecl_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    cur_failed++;
    if (cur_failed > 20)
        return; /* one broken loop should not flood the log */
    fprintf(stdout, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void moecl_test_skip(const char *reason) {
    cur_skipped = 1;
    fprintf(stdout, "  (skip: %s)\n", reason);
}

int moecl_test_failed(void) {
    return cur_failed;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int n_passed = 0, n_failed = 0, n_skipped = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (const struct test_entry *t = all_tests; t->name; t++) {
        if (filter && !strstr(t->name, filter))
            continue;
        cur_failed = 0;
        cur_skipped = 0;
        double t0 = now_s();
        t->fn();
        double dt = now_s() - t0;
        if (cur_failed) {
            printf("FAIL %s (%d checks failed, %.2fs)\n", t->name, cur_failed, dt);
            n_failed++;
        } else if (cur_skipped) {
            printf("SKIP %s\n", t->name);
            n_skipped++;
        } else {
            printf("ok   %s (%.2fs)\n", t->name, dt);
            n_passed++;
        }
    }
    if (n_skipped)
        printf("%d passed, %d failed, %d skipped\n", n_passed, n_failed, n_skipped);
    else
        printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
