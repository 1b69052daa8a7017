/* moecl bench: device probes (read bandwidth, fp32 FMA rate), llama-bench style output. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

struct bench_opts {
    int membw, fma, json, reps;
    const char *device;
};

static int usage(FILE *f) {
    fprintf(f, "usage: moecl bench [--membw] [--fma] [--device DEV] [-r REPS] [--json]\n"
               "  --membw        streaming read bandwidth of the device (GB/s)\n"
               "  --fma          float32 FMA throughput of the device (GFLOP/s)\n"
               "  --device DEV   cpu, gpu, pocl:1, nvidia:0 or an index (default: first GPU, "
               "else CPU)\n"
               "  -r REPS        repetitions; the median is reported (default 5)\n");
    return f == stdout ? 0 : 2;
}

MOECL_COMMAND(bench, "measure a device's read bandwidth and fp32 FMA rate") {
    struct bench_opts o = {0, 0, 0, 5, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--membw") == 0)
            o.membw = 1;
        else if (strcmp(a, "--fma") == 0)
            o.fma = 1;
        else if (strcmp(a, "--json") == 0)
            o.json = 1;
        else if ((strcmp(a, "--device") == 0 || strcmp(a, "-d") == 0) && i + 1 < argc)
            o.device = argv[++i];
        else if (strcmp(a, "-r") == 0 && i + 1 < argc)
            o.reps = atoi(argv[++i]);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout);
        else {
            fprintf(stderr, "moecl bench: unknown option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!o.membw && !o.fma)
        o.membw = o.fma = 1;
    if (o.reps < 1 || o.reps > 1000) {
        fprintf(stderr, "moecl bench: -r must be 1..1000\n");
        return 2;
    }
    struct moecl_device_info *devs = NULL;
    int n = 0, dev = -1;
    enum moecl_status st = moecl_devices_list(&devs, &n);
    if (st != MOECL_OK)
        return moecl_cli_fail("listing devices", st);
    if (o.device) {
        st = moecl_device_resolve(devs, n, o.device, &dev);
        if (st != MOECL_OK) {
            moecl_devices_free(devs);
            return moecl_cli_fail("--device", st);
        }
    } else {
        dev = 0;
        for (int i = 0; i < n; i++)
            if (devs[i].type == MOECL_DEVICE_GPU) {
                dev = i;
                break;
            }
    }
    double bw = 0, bw_best = 0, flops = 0;
    if (o.membw) {
        uint64_t bytes = devs[dev].type == MOECL_DEVICE_GPU ? (1ull << 30) : (512ull << 20);
        st = moecl_device_probe_bandwidth(dev, bytes, o.reps, &bw, &bw_best);
        if (st != MOECL_OK) {
            moecl_devices_free(devs);
            return moecl_cli_fail("measuring bandwidth", st);
        }
    }
    if (o.fma) {
        st = moecl_device_probe_fma(dev, o.reps, &flops);
        if (st != MOECL_OK) {
            moecl_devices_free(devs);
            return moecl_cli_fail("measuring FMA throughput", st);
        }
    }
    if (o.json) {
        printf("{\"device\": ");
        moecl_cli_json_str(stdout, devs[dev].name);
        printf(", \"device_name\": ");
        moecl_cli_json_str(stdout, devs[dev].device_name);
        printf(", \"reps\": %d", o.reps);
        if (o.membw)
            printf(", \"read_bw_gbs_median\": %.2f, \"read_bw_gbs_best\": %.2f", bw * 1e-9,
                   bw_best * 1e-9);
        if (o.fma)
            printf(", \"fp32_gflops_median\": %.2f", flops * 1e-9);
        printf("}\n");
    } else {
        printf("| device | test | median | best |\n|---|---|---:|---:|\n");
        if (o.membw)
            printf("| %s (%s) | read bandwidth | %.1f GB/s | %.1f GB/s |\n", devs[dev].name,
                   devs[dev].device_name, bw * 1e-9, bw_best * 1e-9);
        if (o.fma)
            printf("| %s (%s) | fp32 FMA | %.1f GFLOP/s | |\n", devs[dev].name,
                   devs[dev].device_name, flops * 1e-9);
    }
    moecl_devices_free(devs);
    return 0;
}
