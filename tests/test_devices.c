/* Device discovery: the library list, the `moecl devices` command, the no-platform path. */
#include "test.h"

#include "cl_util.h"
#include "moecl.h"

#include <stdlib.h>
#include <string.h>

TEST(devices_list_has_pocl_cpu) {
    struct moecl_device_info *d = NULL;
    int n = 0;
    REQUIRE(moecl_devices_list(&d, &n) == MOECL_OK);
    REQUIRE(n >= 1);
    int cpu = -1;
    REQUIRE(moecl_device_resolve(d, n, "cpu", &cpu) == MOECL_OK);
    CHECK_EQ(d[cpu].type, MOECL_DEVICE_CPU);
    CHECK(strncmp(d[cpu].name, "pocl:", 5) == 0);
    CHECK(d[cpu].compute_units >= 1);
    CHECK(d[cpu].global_mem_bytes >= d[cpu].max_alloc_bytes);
    CHECK(d[cpu].max_alloc_bytes > 0);
    CHECK(d[cpu].host_unified_memory == 1);
    CHECK(d[cpu].driver_version[0] != 0);
    for (int i = 0; i < n; i++)
        CHECK_EQ(d[i].index, i);
    moecl_devices_free(d);
}

TEST(devices_resolve_names_and_errors) {
    struct moecl_device_info d[2];
    memset(d, 0, sizeof d);
    snprintf(d[0].name, sizeof d[0].name, "pocl:0");
    d[0].type = MOECL_DEVICE_CPU;
    snprintf(d[1].name, sizeof d[1].name, "nvidia:0");
    d[1].index = 1;
    d[1].type = MOECL_DEVICE_GPU;
    int idx = -1;
    CHECK(moecl_device_resolve(d, 2, "gpu", &idx) == MOECL_OK && idx == 1);
    CHECK(moecl_device_resolve(d, 2, "cpu", &idx) == MOECL_OK && idx == 0);
    CHECK(moecl_device_resolve(d, 2, "nvidia:0", &idx) == MOECL_OK && idx == 1);
    CHECK(moecl_device_resolve(d, 2, "1", &idx) == MOECL_OK && idx == 1);
    CHECK(moecl_device_resolve(d, 2, "pocl:3", &idx) == MOECL_ERR_NOT_FOUND && idx == -1);
    CHECK_STR_CONTAINS(moecl_last_error(), "no device 'pocl:3'");
    CHECK_STR_CONTAINS(moecl_last_error(), "nvidia:0 (gpu)");
    CHECK(moecl_device_resolve(d, 2, "2", &idx) == MOECL_ERR_NOT_FOUND);
    CHECK(moecl_device_resolve(d, 2, "", &idx) == MOECL_ERR_INVALID_ARG);
    CHECK(moecl_device_resolve(d, 1, "gpu", &idx) == MOECL_ERR_NOT_FOUND);
}

TEST(devices_command_json_two_pocl_devices) {
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "POCL_DEVICES='pthread pthread' %s devices --json", moecl_test_bin());
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "\"name\": \"pocl:0\"");
    CHECK_STR_CONTAINS(out, "\"name\": \"pocl:1\"");
    CHECK_STR_CONTAINS(out, "\"host_unified_memory\": true");
    CHECK_STR_CONTAINS(out, "\"max_alloc_bytes\": ");
    free(out);
}

TEST(devices_command_table_one_device) {
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "env -u POCL_DEVICES %s devices", moecl_test_bin());
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 0);
    CHECK_STR_CONTAINS(out, "0  pocl:0");
    CHECK(!strstr(out, "pocl:1"));
    CHECK_STR_CONTAINS(out, "compute units");
    CHECK_STR_CONTAINS(out, "largest buffer");
    free(out);
}

TEST(devices_no_platform_gives_install_hint) {
    char *dir = moecl_test_tmpdir("noicd");
    REQUIRE(dir);
    /* A vendors folder whose only entry names a library that does not exist: the ICD loader
     * finds no platform (an empty folder makes some loaders fall back to /etc). */
    char icd[4200], *out = NULL;
    snprintf(icd, sizeof icd, "%s/none.icd", dir);
    REQUIRE(moecl_test_write_file(icd, "/nonexistent/libmoecl-none.so\n", 30) == 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "OCL_ICD_VENDORS=%s %s devices", dir, moecl_test_bin());
    int rc = moecl_test_run(cmd, &out);
    CHECK_EQ(rc, 1);
    CHECK_STR_CONTAINS(out, "no OpenCL platform found");
    CHECK_STR_CONTAINS(out, "pocl-opencl-icd");
    CHECK(!strstr(out, "AddressSanitizer"));
    free(out);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Two devices of one platform share a context; a kernel runs on each through its own queue. */
TEST(devices_two_pocl_devices_usable) {
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    REQUIRE(moecl_cl_devices_enumerate(&devs, &n) == MOECL_OK);
    if (n < 2 || devs[0].platform != devs[1].platform) {
        free(devs);
        SKIP("needs POCL_DEVICES='pthread pthread' (make test sets it)");
    }
    cl_int err;
    cl_device_id ids[2] = {devs[0].device, devs[1].device};
    cl_context ctx = clCreateContext(NULL, 2, ids, NULL, NULL, &err);
    REQUIRE(err == CL_SUCCESS);
    float host[2][16];
    for (int d = 0; d < 2; d++) {
        cl_command_queue q = clCreateCommandQueueWithProperties(ctx, ids[d], NULL, &err);
        CHECK(err == CL_SUCCESS);
        cl_mem buf = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof host[d], NULL, &err);
        CHECK(err == CL_SUCCESS);
        float pattern = (float)(d + 1) * 1.5f;
        err =
            clEnqueueFillBuffer(q, buf, &pattern, sizeof pattern, 0, sizeof host[d], 0, NULL, NULL);
        CHECK(err == CL_SUCCESS);
        err = clEnqueueReadBuffer(q, buf, CL_TRUE, 0, sizeof host[d], host[d], 0, NULL, NULL);
        CHECK(err == CL_SUCCESS);
        CHECK_NEAR(host[d][15], pattern, 0);
        clReleaseMemObject(buf);
        clReleaseCommandQueue(q);
    }
    clReleaseContext(ctx);
    free(devs);
}
