/* moecl test runner: plain C, no framework.
 *
 * A test is a function defined with TEST(name) in any tests/test_X.c file; the Makefile collects
 * the names into build/gen/test_list.h. Name tests <suite>_<what>, e.g. loader_truncated_header.
 * The runner takes an optional substring filter: `build/moecl_tests loader_`.
 *
 * CHECK* macros record a failure and continue; REQUIRE* record and return from the test.
 * SKIP(reason) ends the test as skipped (only for an environment that truly lacks something,
 * never to hide a failure).
 */
#ifndef MOECL_TEST_H
#define MOECL_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TEST(name)                                                                                 \
    void test_##name(void);                                                                        \
    void test_##name(void)

void moecl_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void moecl_test_skip(const char *reason);
int moecl_test_failed(void);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            moecl_test_fail(__FILE__, __LINE__, "%s", #cond);                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_)                                                                  \
            moecl_test_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, check_a_,       \
                            check_b_);                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double check_a_ = (double)(a), check_b_ = (double)(b), check_t_ = (double)(tol);           \
        if (!(fabs(check_a_ - check_b_) <= check_t_))                                              \
            moecl_test_fail(__FILE__, __LINE__, "%s ~= %s (%.9g vs %.9g, tol %.3g)", #a, #b,       \
                            check_a_, check_b_, check_t_);                                         \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                            \
    do {                                                                                           \
        const char *check_h_ = (hay), *check_n_ = (needle);                                        \
        if (!check_h_ || !strstr(check_h_, check_n_))                                              \
            moecl_test_fail(__FILE__, __LINE__, "%s contains \"%s\" (got \"%s\")", #hay, check_n_, \
                            check_h_ ? check_h_ : "(null)");                                       \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            moecl_test_fail(__FILE__, __LINE__, "%s", #cond);                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define SKIP(reason)                                                                               \
    do {                                                                                           \
        moecl_test_skip(reason);                                                                   \
        return;                                                                                    \
    } while (0)

/* Helpers shared by suites (tests/test_util.c). */

/* A fresh empty directory under $TMPDIR (or /tmp); the caller frees the string and may remove
 * the tree with moecl_test_rmtree. */
char *moecl_test_tmpdir(const char *tag);
void moecl_test_rmtree(const char *path);
/* Writes n bytes to path; returns 0 on success. */
int moecl_test_write_file(const char *path, const void *data, size_t n);
/* Runs a shell command, captures stdout+stderr (malloc'd, NUL-terminated) and returns the exit
 * status (or -1). */
int moecl_test_run(const char *cmd, char **output_out);
/* The moecl command binary to drive end to end ($MOECL_BIN, default build/moecl). */
const char *moecl_test_bin(void);
/* The mlx-lm fixture folder ($MOECL_FIXTURES_DIR, default tests/fixtures). */
const char *moecl_test_fixtures_dir(void);
/* A whole file, malloc'd with a NUL after its n bytes (*n_out, may be NULL); NULL if unreadable. */
char *moecl_test_slurp(const char *path, size_t *n_out);
/* The cache folder for end-to-end runs (XDG_CACHE_HOME): test-cache next to the moecl binary,
 * so `make clean` removes it and the default model is made once for every suite. */
const char *moecl_test_cache_dir(void);
/* Seeded xorshift generator for test inputs. */
uint64_t moecl_test_rand(uint64_t *state);
float moecl_test_randf(uint64_t *state); /* uniform in [-1, 1) */

#endif
