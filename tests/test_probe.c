/* Device probes: plausible, positive numbers, and argument refusals. */
#include "test.h"

#include "moecl.h"

TEST(probe_bandwidth_and_fma_on_cpu) {
    double med = 0, best = 0, flops = 0;
    REQUIRE(moecl_device_probe_bandwidth(0, 64u << 20, 3, &med, &best) == MOECL_OK);
    /* Any real machine streams between 100 MB/s and 10 TB/s; best is at least the median. */
    CHECK(med > 1e8 && med < 1e13);
    CHECK(best >= med);
    REQUIRE(moecl_device_probe_fma(0, 3, &flops) == MOECL_OK);
    CHECK(flops > 1e8 && flops < 1e15);
    printf("  pocl:0 read %.1f GB/s (best %.1f), fp32 FMA %.1f GFLOP/s\n", med * 1e-9, best * 1e-9,
           flops * 1e-9);
}

TEST(probe_refuses_bad_arguments) {
    double a = 1, b = 1;
    CHECK(moecl_device_probe_bandwidth(99, 1 << 20, 3, &a, &b) == MOECL_ERR_NOT_FOUND);
    CHECK(a == 0 && b == 0);
    CHECK_STR_CONTAINS(moecl_last_error(), "no device with index 99");
    CHECK(moecl_device_probe_fma(0, 0, &a) == MOECL_ERR_INVALID_ARG);
}
