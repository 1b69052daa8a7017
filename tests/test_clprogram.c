/* Program build and the on-disk binary cache. */
#include "test.h"

#include "cl_program.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cl_env {
    cl_context ctx;
    cl_device_id dev;
    cl_command_queue q;
};

static int env_open(struct cl_env *e) {
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    memset(e, 0, sizeof *e);
    if (moecl_cl_devices_enumerate(&devs, &n) != MOECL_OK)
        return -1;
    cl_int err;
    e->dev = devs[0].device;
    free(devs);
    e->ctx = clCreateContext(NULL, 1, &e->dev, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return -1;
    e->q = clCreateCommandQueueWithProperties(e->ctx, e->dev, NULL, &err);
    return err == CL_SUCCESS ? 0 : -1;
}

static void env_close(struct cl_env *e) {
    if (e->q)
        clReleaseCommandQueue(e->q);
    if (e->ctx)
        clReleaseContext(e->ctx);
}

/* Runs fill_f32 from `prog` and checks the result: proves a cached binary is a working one. */
static int run_fill(struct cl_env *e, cl_program prog, float value) {
    cl_int err;
    cl_kernel k = clCreateKernel(prog, "fill_f32", &err);
    if (err != CL_SUCCESS)
        return -1;
    float host[37];
    cl_mem buf = clCreateBuffer(e->ctx, CL_MEM_READ_WRITE, sizeof host, NULL, &err);
    cl_uint n = 37;
    size_t gws = 64;
    int ok = err == CL_SUCCESS;
    ok = ok && clSetKernelArg(k, 0, sizeof buf, &buf) == CL_SUCCESS;
    ok = ok && clSetKernelArg(k, 1, sizeof value, &value) == CL_SUCCESS;
    ok = ok && clSetKernelArg(k, 2, sizeof n, &n) == CL_SUCCESS;
    ok = ok && clEnqueueNDRangeKernel(e->q, k, 1, NULL, &gws, NULL, 0, NULL, NULL) == CL_SUCCESS;
    ok = ok &&
         clEnqueueReadBuffer(e->q, buf, CL_TRUE, 0, sizeof host, host, 0, NULL, NULL) == CL_SUCCESS;
    for (int i = 0; ok && i < 37; i++)
        ok = host[i] == value;
    clReleaseMemObject(buf);
    clReleaseKernel(k);
    return ok ? 0 : -1;
}

static char *only_cache_file(const char *dir) {
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls %s/*.bin", dir);
    if (moecl_test_run(cmd, &out) != 0) {
        free(out);
        return NULL;
    }
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
    return out;
}

TEST(clprogram_cache_roundtrip_and_corruption) {
    struct cl_env e;
    REQUIRE(env_open(&e) == 0);
    char *dir = moecl_test_tmpdir("clcache");
    REQUIRE(dir);
    setenv("MOECL_CL_CACHE_DIR", dir, 1);
    const char *files[] = {"util.cl"};
    cl_program p = NULL;
    enum moecl_cl_program_origin origin;

    /* 1: cold, from source, and written to the cache. */
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    CHECK(run_fill(&e, p, 2.5f) == 0);
    clReleaseProgram(p);
    char *file = only_cache_file(dir);
    REQUIRE(file);

    /* 2: the same inputs come from the cache and run correctly. */
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_CACHE);
    CHECK(run_fill(&e, p, -7.0f) == 0);
    clReleaseProgram(p);

    /* 3: other options are another key: a source build. */
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=2", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    clReleaseProgram(p);

    /* 4: flipped bytes in the binary: checksum fails, rebuilt from source, still correct. */
    struct stat st;
    REQUIRE(stat(file, &st) == 0 && st.st_size > 200);
    FILE *f = fopen(file, "r+b");
    REQUIRE(f);
    fseek(f, st.st_size / 2, SEEK_SET);
    fputc(0x5a, f);
    fputc(0xa5, f);
    fclose(f);
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    CHECK(run_fill(&e, p, 1.0f) == 0);
    clReleaseProgram(p);

    /* 5: the rebuild rewrote the entry; truncating it also falls back to source. */
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_CACHE);
    clReleaseProgram(p);
    REQUIRE(truncate(file, st.st_size - 100) == 0);
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    CHECK(run_fill(&e, p, 3.0f) == 0);
    clReleaseProgram(p);

    /* 6: garbage of the right size under the key's name. */
    REQUIRE(stat(file, &st) == 0);
    char *junk = calloc(1, (size_t)st.st_size);
    REQUIRE(junk);
    memset(junk, 'x', (size_t)st.st_size);
    REQUIRE(moecl_test_write_file(file, junk, (size_t)st.st_size) == 0);
    free(junk);
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    clReleaseProgram(p);

    /* 7: cache off: always source. */
    setenv("MOECL_CL_CACHE_DIR", "off", 1);
    CHECK(moecl_cl_cache_dir()[0] == 0);
    REQUIRE(moecl_cl_program_build(e.ctx, e.dev, files, 1, "-DMOECL_TEST_A=1", &p, &origin) ==
            MOECL_OK);
    CHECK_EQ(origin, MOECL_CL_PROGRAM_SOURCE);
    clReleaseProgram(p);

    unsetenv("MOECL_CL_CACHE_DIR");
    free(file);
    moecl_test_rmtree(dir);
    free(dir);
    env_close(&e);
}

TEST(clprogram_build_error_has_log_and_file) {
    struct cl_env e;
    REQUIRE(env_open(&e) == 0);
    char *dir = moecl_test_tmpdir("clsrc");
    REQUIRE(dir);
    char path[4200];
    const char *shared = moecl_cl_source("moecl_shared.h");
    REQUIRE(shared);
    snprintf(path, sizeof path, "%s/moecl_shared.h", dir);
    REQUIRE(moecl_test_write_file(path, shared, strlen(shared)) == 0);
    const char *bad = "__kernel void broken(__global float *x) { x[0] = undeclared_thing; }\n";
    snprintf(path, sizeof path, "%s/broken.cl", dir);
    REQUIRE(moecl_test_write_file(path, bad, strlen(bad)) == 0);
    setenv("MOECL_CL_SOURCE_DIR", dir, 1);
    setenv("MOECL_CL_CACHE_DIR", "off", 1);
    const char *files[] = {"broken.cl"};
    cl_program p = NULL;
    CHECK(moecl_cl_program_build(e.ctx, e.dev, files, 1, NULL, &p, NULL) == MOECL_ERR_BUILD);
    CHECK(p == NULL);
    CHECK_STR_CONTAINS(moecl_last_error(), "cl_kernels/broken.cl");
    CHECK_STR_CONTAINS(moecl_last_error(), "CL_BUILD_PROGRAM_FAILURE");
    CHECK_STR_CONTAINS(moecl_last_error(), "undeclared_thing");

    const char *missing[] = {"no_such_file.cl"};
    CHECK(moecl_cl_program_build(e.ctx, e.dev, missing, 1, NULL, &p, NULL) == MOECL_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(moecl_last_error(), "no_such_file.cl");
    unsetenv("MOECL_CL_SOURCE_DIR");
    unsetenv("MOECL_CL_CACHE_DIR");
    moecl_test_rmtree(dir);
    free(dir);
    env_close(&e);
}

TEST(clprogram_embedded_sources_present) {
    CHECK(moecl_cl_source("moecl_shared.h") != NULL);
    CHECK(moecl_cl_source("util.cl") != NULL);
    CHECK_STR_CONTAINS(moecl_cl_source("util.cl"), "__kernel void fill_f32");
    CHECK(moecl_cl_source("nope.cl") == NULL);
}
