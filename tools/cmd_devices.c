/* moecl devices: every OpenCL platform and device, with the names placement accepts. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void print_json(const struct moecl_device_info *d, int n) {
    printf("[\n");
    for (int i = 0; i < n; i++) {
        const struct moecl_device_info *x = &d[i];
        printf("  {\"index\": %d, \"name\": ", x->index);
        moecl_cli_json_str(stdout, x->name);
        printf(", \"type\": \"%s\", \"device\": ", moecl_device_type_str(x->type));
        moecl_cli_json_str(stdout, x->device_name);
        printf(", \"vendor\": ");
        moecl_cli_json_str(stdout, x->vendor);
        printf(", \"platform\": ");
        moecl_cli_json_str(stdout, x->platform_name);
        printf(", \"platform_version\": ");
        moecl_cli_json_str(stdout, x->platform_version);
        printf(", \"device_version\": ");
        moecl_cli_json_str(stdout, x->device_version);
        printf(", \"driver_version\": ");
        moecl_cli_json_str(stdout, x->driver_version);
        printf(", \"opencl_c_version\": ");
        moecl_cli_json_str(stdout, x->opencl_c_version);
        printf(",\n   \"compute_units\": %u, \"global_mem_bytes\": %llu, \"max_alloc_bytes\": "
               "%llu, \"local_mem_bytes\": %llu, \"max_work_group_size\": %llu, "
               "\"host_unified_memory\": %s, \"svm_capabilities\": %llu, \"svm\": [",
               x->compute_units, (unsigned long long)x->global_mem_bytes,
               (unsigned long long)x->max_alloc_bytes, (unsigned long long)x->local_mem_bytes,
               (unsigned long long)x->max_work_group_size,
               x->host_unified_memory ? "true" : "false", (unsigned long long)x->svm_capabilities);
        const char *svm_names[] = {"coarse_grain_buffer", "fine_grain_buffer", "fine_grain_system",
                                   "atomics"};
        int first = 1;
        for (int b = 0; b < 4; b++)
            if (x->svm_capabilities & (1ull << b)) {
                printf("%s\"%s\"", first ? "" : ", ", svm_names[b]);
                first = 0;
            }
        printf("], \"fp16\": %s, \"subgroups\": %s}%s\n", x->fp16 ? "true" : "false",
               x->subgroups ? "true" : "false", i + 1 < n ? "," : "");
    }
    printf("]\n");
}

static void print_table(const struct moecl_device_info *d, int n) {
    char b1[32], b2[32], b3[32];
    for (int i = 0; i < n; i++) {
        const struct moecl_device_info *x = &d[i];
        printf("%d  %-10s %-4s %s\n", x->index, x->name, moecl_device_type_str(x->type),
               x->device_name);
        printf("     platform      %s (%s)\n", x->platform_name, x->platform_version);
        printf("     vendor        %s\n", x->vendor);
        printf("     driver        %s; %s; %s\n", x->driver_version, x->device_version,
               x->opencl_c_version);
        printf("     compute units %u\n", x->compute_units);
        printf("     memory        %s global, %s largest buffer, %s local\n",
               moecl_cli_bytes(x->global_mem_bytes, b1), moecl_cli_bytes(x->max_alloc_bytes, b2),
               moecl_cli_bytes(x->local_mem_bytes, b3));
        printf("     host-unified  %s\n", x->host_unified_memory ? "yes (zero-copy)" : "no");
        printf("     SVM           %s%s%s%s%s\n", x->svm_capabilities ? "" : "none",
               (x->svm_capabilities & 1) ? "coarse-buffer " : "",
               (x->svm_capabilities & 2) ? "fine-buffer " : "",
               (x->svm_capabilities & 4) ? "fine-system " : "",
               (x->svm_capabilities & 8) ? "atomics" : "");
        printf("     fp16          %s\n", x->fp16 ? "yes" : "no");
        printf("     subgroups     %s\n", x->subgroups ? "yes" : "no");
    }
}

MOECL_COMMAND(devices, "list OpenCL platforms and devices (names used by --place)") {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: moecl devices [--json]\n"
                   "Lists every OpenCL device with the index and name that --place accepts\n"
                   "(also 'cpu' and 'gpu' for the first device of that type).\n");
            return 0;
        } else {
            fprintf(stderr, "moecl devices: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    struct moecl_device_info *devs = NULL;
    int n = 0;
    enum moecl_status st = moecl_devices_list(&devs, &n);
    if (st != MOECL_OK)
        return moecl_cli_fail("listing OpenCL devices", st);
    if (json)
        print_json(devs, n);
    else
        print_table(devs, n);
    moecl_devices_free(devs);
    return 0;
}
