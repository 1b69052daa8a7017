/* Device discovery: every platform's devices, with the names placement options use. */
#include "cl_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_PLATFORM_HELP                                                                           \
    "Install an OpenCL driver: on Debian or Ubuntu, 'sudo apt-get install pocl-opencl-icd "        \
    "ocl-icd-libopencl1' (or 'make deps') gives PoCL's CPU device; GPU drivers register "          \
    "themselves in /etc/OpenCL/vendors (OCL_ICD_VENDORS overrides that folder)."

/* A short lower-case label for a platform: "pocl", "nvidia", else its first word. */
static void platform_label(const char *platform_name, const char *vendor, char *out, size_t n) {
    if (strstr(platform_name, "Portable Computing Language") || strstr(platform_name, "PoCL") ||
        strstr(platform_name, "pocl")) {
        snprintf(out, n, "pocl");
        return;
    }
    if (strstr(platform_name, "NVIDIA") || strstr(vendor, "NVIDIA")) {
        snprintf(out, n, "nvidia");
        return;
    }
    size_t k = 0;
    for (const char *p = platform_name; *p && k + 1 < n && k < 16; p++) {
        if (isalnum((unsigned char)*p))
            out[k++] = (char)tolower((unsigned char)*p);
        else if (k)
            break;
    }
    if (!k)
        out[k++] = 'p';
    out[k] = 0;
}

static void get_str(cl_device_id d, cl_device_info what, char *out, size_t n) {
    out[0] = 0;
    if (clGetDeviceInfo(d, what, n, out, NULL) != CL_SUCCESS)
        out[0] = 0;
    out[n - 1] = 0;
}

static int has_ext(const char *exts, const char *name) {
    size_t len = strlen(name);
    for (const char *p = exts; (p = strstr(p, name)) != NULL; p += len) {
        if ((p == exts || p[-1] == ' ') && (p[len] == 0 || p[len] == ' '))
            return 1;
    }
    return 0;
}

static void fill_info(struct moecl_cl_device *d, const char *label, int label_index) {
    struct moecl_device_info *in = &d->info;
    cl_device_type type = 0;
    cl_uint cu = 0;
    cl_ulong gmem = 0, maxalloc = 0, lmem = 0;
    size_t maxwg = 0;
    cl_bool unified = 0;
    cl_device_svm_capabilities svm = 0;

    snprintf(in->name, sizeof in->name, "%s:%d", label, label_index);
    get_str(d->device, CL_DEVICE_NAME, in->device_name, sizeof in->device_name);
    get_str(d->device, CL_DEVICE_VENDOR, in->vendor, sizeof in->vendor);
    get_str(d->device, CL_DEVICE_VERSION, in->device_version, sizeof in->device_version);
    get_str(d->device, CL_DRIVER_VERSION, in->driver_version, sizeof in->driver_version);
    get_str(d->device, CL_DEVICE_OPENCL_C_VERSION, in->opencl_c_version,
            sizeof in->opencl_c_version);
    clGetDeviceInfo(d->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gmem, &gmem, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof maxalloc, &maxalloc, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof maxwg, &maxwg, NULL);
    clGetDeviceInfo(d->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    if (clGetDeviceInfo(d->device, CL_DEVICE_SVM_CAPABILITIES, sizeof svm, &svm, NULL) !=
        CL_SUCCESS)
        svm = 0;

    in->type = (type & CL_DEVICE_TYPE_GPU)           ? MOECL_DEVICE_GPU
               : (type & CL_DEVICE_TYPE_CPU)         ? MOECL_DEVICE_CPU
               : (type & CL_DEVICE_TYPE_ACCELERATOR) ? MOECL_DEVICE_ACCELERATOR
                                                     : MOECL_DEVICE_OTHER;
    in->compute_units = cu;
    in->global_mem_bytes = gmem;
    in->max_alloc_bytes = maxalloc;
    in->local_mem_bytes = lmem;
    in->max_work_group_size = maxwg;
    in->host_unified_memory = unified ? 1 : 0;
    in->svm_capabilities = svm;

    size_t ext_len = 0;
    if (clGetDeviceInfo(d->device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS &&
        ext_len) {
        char *exts = calloc(1, ext_len + 1);
        if (exts &&
            clGetDeviceInfo(d->device, CL_DEVICE_EXTENSIONS, ext_len, exts, NULL) == CL_SUCCESS) {
            in->fp16 = has_ext(exts, "cl_khr_fp16");
            in->subgroups =
                has_ext(exts, "cl_khr_subgroups") || has_ext(exts, "cl_intel_subgroups");
        }
        free(exts);
    }
}

enum moecl_status moecl_cl_devices_enumerate(struct moecl_cl_device **devices_out, int *n_out) {
    enum moecl_status status = MOECL_OK;
    cl_platform_id *plats = NULL;
    struct moecl_cl_device *devs = NULL;
    cl_uint n_plat = 0;
    int n = 0, cap = 0;
    *devices_out = NULL;
    *n_out = 0;

    cl_int err = clGetPlatformIDs(0, NULL, &n_plat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && n_plat == 0))
        return moecl_error_set(MOECL_ERR_NO_DEVICE, "no OpenCL platform found. %s",
                               NO_PLATFORM_HELP);
    MOECL_CL_CHECK(err, "clGetPlatformIDs");
    plats = calloc(n_plat, sizeof *plats);
    if (!plats)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory listing platforms");
    MOECL_CL_CALL(clGetPlatformIDs(n_plat, plats, NULL));

    /* Labels repeat across platforms of the same kind; count per label. */
    char labels[16][32];
    int label_counts[16] = {0};
    int n_labels = 0;

    for (cl_uint p = 0; p < n_plat; p++) {
        char pname[256] = "", pver[256] = "", pvendor[256] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VENDOR, sizeof pvendor, pvendor, NULL);
        pname[255] = pver[255] = pvendor[255] = 0;
        cl_uint nd = 0;
        err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
        if (err == CL_DEVICE_NOT_FOUND || nd == 0)
            continue;
        MOECL_CL_CHECK(err, "clGetDeviceIDs");
        cl_device_id ids[64];
        if (nd > 64)
            nd = 64;
        MOECL_CL_CALL(clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL));

        char label[32];
        platform_label(pname, pvendor, label, sizeof label);
        int li = 0;
        while (li < n_labels && strcmp(labels[li], label) != 0)
            li++;
        if (li == n_labels && n_labels < 16) {
            snprintf(labels[n_labels], sizeof labels[0], "%s", label);
            n_labels++;
        }
        for (cl_uint d = 0; d < nd; d++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                struct moecl_cl_device *nd2 = realloc(devs, (size_t)cap * sizeof *devs);
                if (!nd2) {
                    status = moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory");
                    goto cleanup;
                }
                devs = nd2;
            }
            struct moecl_cl_device *dv = &devs[n];
            memset(dv, 0, sizeof *dv);
            dv->platform = plats[p];
            dv->device = ids[d];
            dv->info.index = n;
            dv->info.platform_index = (int)p;
            dv->info.index_in_platform = (int)d;
            snprintf(dv->info.platform_name, sizeof dv->info.platform_name, "%s", pname);
            snprintf(dv->info.platform_version, sizeof dv->info.platform_version, "%s", pver);
            fill_info(dv, label, li < 16 ? label_counts[li]++ : (int)d);
            n++;
        }
    }
    if (n == 0) {
        status =
            moecl_error_set(MOECL_ERR_NO_DEVICE, "%u OpenCL platform(s) found but no device. %s",
                            n_plat, NO_PLATFORM_HELP);
        goto cleanup;
    }
    *devices_out = devs;
    *n_out = n;
    devs = NULL;
cleanup:
    free(plats);
    free(devs);
    return status;
}

enum moecl_status moecl_devices_list(struct moecl_device_info **devices_out, int *n_out) {
    struct moecl_cl_device *devs = NULL;
    int n = 0;
    *devices_out = NULL;
    *n_out = 0;
    enum moecl_status status = moecl_cl_devices_enumerate(&devs, &n);
    if (status != MOECL_OK)
        return status;
    struct moecl_device_info *infos = calloc((size_t)n, sizeof *infos);
    if (!infos) {
        free(devs);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory");
    }
    for (int i = 0; i < n; i++)
        infos[i] = devs[i].info;
    free(devs);
    *devices_out = infos;
    *n_out = n;
    return MOECL_OK;
}

void moecl_devices_free(struct moecl_device_info *devices) {
    free(devices);
}

const char *moecl_device_type_str(enum moecl_device_type type) {
    switch (type) {
    case MOECL_DEVICE_CPU:
        return "cpu";
    case MOECL_DEVICE_GPU:
        return "gpu";
    case MOECL_DEVICE_ACCELERATOR:
        return "accelerator";
    default:
        return "other";
    }
}

enum moecl_status moecl_device_resolve(const struct moecl_device_info *devices, int n,
                                       const char *spec, int *index_out) {
    *index_out = -1;
    if (!spec || !*spec)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "empty device name");
    int want_type = -1;
    if (strcmp(spec, "cpu") == 0)
        want_type = MOECL_DEVICE_CPU;
    else if (strcmp(spec, "gpu") == 0)
        want_type = MOECL_DEVICE_GPU;
    for (int i = 0; i < n; i++) {
        if ((want_type >= 0 && (int)devices[i].type == want_type) ||
            strcmp(devices[i].name, spec) == 0) {
            *index_out = i;
            return MOECL_OK;
        }
    }
    char *end = NULL;
    long v = strtol(spec, &end, 10);
    if (end && *end == 0 && end != spec && v >= 0 && v < n) {
        *index_out = (int)v;
        return MOECL_OK;
    }
    char names[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof names - 64; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s (%s)", i ? ", " : "",
                                devices[i].name, moecl_device_type_str(devices[i].type));
    return moecl_error_set(MOECL_ERR_NOT_FOUND, "no device '%s'; devices: %s", spec, names);
}
