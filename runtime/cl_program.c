/* OpenCL program build with an on-disk binary cache.
 *
 * Why a cache: PoCL compiles each program through LLVM (0.4 s cold per program on this class
 * of machine, spec opencl-platforms §0.4) and moecl builds one program per weight format. A
 * binary reload costs about 1 ms.
 *
 * Entry file layout (little-endian):
 *   "MOECLBIN" | u32 version | u32 reserved | u64 key[2] | u64 binary_bytes | u64 checksum |
 *   binary bytes
 * The key is recomputed from the inputs and compared, so a file renamed onto another key, a
 * truncated write or flipped bits all fail validation and fall back to a source build. */
#include "cl_program.h"
#include "cl_sources.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "MOECLBIN"
#define CACHE_VERSION 1u
#define CACHE_MAX_BINARY (256u << 20)

/* ------------------------------------------------------------------ sources */

struct loaded_source {
    char *name;
    char *text;
};

static struct loaded_source disk_sources[64];
static int n_disk_sources;

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[len] = 0;
    fclose(f);
    return buf;
}

const char *moecl_cl_source(const char *name) {
    const char *dir = getenv("MOECL_CL_SOURCE_DIR");
    if (dir && *dir) {
        for (int i = 0; i < n_disk_sources; i++)
            if (strcmp(disk_sources[i].name, name) == 0)
                return disk_sources[i].text;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        char *text = read_text_file(path);
        if (!text)
            return NULL;
        if (n_disk_sources < (int)(sizeof disk_sources / sizeof disk_sources[0])) {
            disk_sources[n_disk_sources].name = strdup(name);
            disk_sources[n_disk_sources].text = text;
            n_disk_sources++;
        }
        return text; /* lives until exit, as documented */
    }
    for (const struct moecl_cl_source *s = moecl_cl_sources; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s->text;
    return NULL;
}

/* ------------------------------------------------------------------ hashing */

/* Two FNV-1a-64 streams with different offsets give a 128-bit key; collisions between
 * different inputs are not a realistic concern for a local cache, and the key is re-checked. */
struct hash128 {
    uint64_t a, b;
};

static void hash_bytes(struct hash128 *h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ull;
        h->b = (h->b ^ p[i]) * 0x100000001b3ull;
        h->b ^= h->b >> 29;
    }
}

static void hash_str(struct hash128 *h, const char *s) {
    size_t n = s ? strlen(s) : 0;
    hash_bytes(h, &n, sizeof n); /* length prefix: ("ab","c") != ("a","bc") */
    if (n)
        hash_bytes(h, s, n);
}

static uint64_t checksum(const unsigned char *p, size_t n) {
    struct hash128 h = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    hash_bytes(&h, p, n);
    return h.a ^ (h.b << 1);
}

/* ------------------------------------------------------------------ cache folder */

static char cache_dir_buf[4096];
static int cache_dir_ready;

const char *moecl_cl_cache_dir(void) {
    const char *env = getenv("MOECL_CL_CACHE_DIR");
    if (env && strcmp(env, "off") == 0)
        return "";
    if (env && *env) {
        snprintf(cache_dir_buf, sizeof cache_dir_buf, "%s", env);
        return cache_dir_buf;
    }
    if (cache_dir_ready)
        return cache_dir_buf;
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(cache_dir_buf, sizeof cache_dir_buf, "%s/moecl/kernels", xdg);
    else if (home && *home)
        snprintf(cache_dir_buf, sizeof cache_dir_buf, "%s/.cache/moecl/kernels", home);
    else
        cache_dir_buf[0] = 0;
    cache_dir_ready = 1;
    return cache_dir_buf;
}

static int mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

struct cache_header {
    char magic[8];
    uint32_t version;
    uint32_t reserved;
    uint64_t key[2];
    uint64_t binary_bytes;
    uint64_t checksum;
};

/* Returns a malloc'd binary if a valid entry exists, else NULL. */
static unsigned char *cache_read(const char *path, struct hash128 key, size_t *n_out) {
    *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct cache_header h;
    unsigned char *bin = NULL;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CACHE_MAGIC, 8) != 0 ||
        h.version != CACHE_VERSION || h.key[0] != key.a || h.key[1] != key.b ||
        h.binary_bytes == 0 || h.binary_bytes > CACHE_MAX_BINARY)
        goto fail;
    bin = malloc(h.binary_bytes);
    if (!bin || fread(bin, 1, h.binary_bytes, f) != h.binary_bytes)
        goto fail;
    if (fgetc(f) != EOF) /* trailing garbage: not a file we wrote */
        goto fail;
    if (checksum(bin, h.binary_bytes) != h.checksum)
        goto fail;

    fclose(f);
    *n_out = h.binary_bytes;
    return bin;
fail:
    free(bin);
    fclose(f);
    return NULL;
}

/* Best effort: a cache that cannot be written only costs a rebuild next time. */
static void cache_write(const char *dir, const char *path, struct hash128 key,
                        const unsigned char *bin, size_t n) {
    if (mkdir_p(dir) != 0)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return;
    struct cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.version = CACHE_VERSION;
    h.key[0] = key.a;
    h.key[1] = key.b;
    h.binary_bytes = n;
    h.checksum = checksum(bin, n);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0)
        remove(tmp);
}

/* ------------------------------------------------------------------ build */

static void dev_str(cl_device_id dev, cl_device_info what, char *buf, size_t n) {
    buf[0] = 0;
    if (clGetDeviceInfo(dev, what, n, buf, NULL) != CL_SUCCESS)
        buf[0] = 0;
    buf[n - 1] = 0;
}

static enum moecl_status build_log_error(cl_program prog, cl_device_id device, cl_int err,
                                         const char *const *files, int n_files,
                                         const char *options) {
    size_t log_len = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len) ==
            CL_SUCCESS &&
        log_len) {
        log = calloc(1, log_len + 1);
        if (log && clGetProgramBuildInfo(prog, device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL) !=
                       CL_SUCCESS)
            log[0] = 0;
    }
    char names[1024] = "";
    size_t len = 0;
    for (int i = 0; i < n_files && len < sizeof names - 1; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%scl_kernels/%s", i ? ", " : "",
                                files[i]);
    enum moecl_status st = moecl_error_set(
        MOECL_ERR_BUILD, "building %s (options \"%s\") failed: %s; build log:\n%s", names,
        options ? options : "", moecl_cl_err_name(err), log && *log ? log : "(empty)");
    free(log);
    return st;
}

enum moecl_status moecl_cl_program_build(cl_context ctx, cl_device_id device,
                                         const char *const *files, int n_files, const char *options,
                                         cl_program *program_out,
                                         enum moecl_cl_program_origin *origin_out) {
    enum moecl_status status = MOECL_OK;
    cl_program prog = NULL;
    const char **texts = NULL;
    unsigned char *bin = NULL;
    cl_int err;
    *program_out = NULL;
    if (origin_out)
        *origin_out = MOECL_CL_PROGRAM_SOURCE;
    if (n_files <= 0 || n_files > 32)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "program needs 1..32 source files, got %d",
                               n_files);

    texts = calloc((size_t)n_files + 1, sizeof *texts);
    if (!texts)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "out of host memory");
    texts[0] = moecl_cl_source("moecl_shared.h");
    if (!texts[0]) {
        status = moecl_error_set(MOECL_ERR_NOT_FOUND, "kernel source cl_kernels/moecl_shared.h "
                                                      "not found (MOECL_CL_SOURCE_DIR?)");
        goto cleanup;
    }
    for (int i = 0; i < n_files; i++) {
        texts[i + 1] = moecl_cl_source(files[i]);
        if (!texts[i + 1]) {
            status = moecl_error_set(
                MOECL_ERR_NOT_FOUND, "kernel source cl_kernels/%s not found%s", files[i],
                getenv("MOECL_CL_SOURCE_DIR") ? " in MOECL_CL_SOURCE_DIR" : "");
            goto cleanup;
        }
    }

    /* Key: every source string, the options, and what identifies the compiler. */
    char dname[256], dver[256], pver[256];
    cl_platform_id plat = NULL;
    dev_str(device, CL_DEVICE_NAME, dname, sizeof dname);
    dev_str(device, CL_DRIVER_VERSION, dver, sizeof dver);
    pver[0] = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL) == CL_SUCCESS)
        clGetPlatformInfo(plat, CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
    pver[sizeof pver - 1] = 0;
    struct hash128 key = {0xcbf29ce484222325ull, 0x6c62272e07bb0142ull};
    for (int i = 0; i <= n_files; i++)
        hash_str(&key, texts[i]);
    hash_str(&key, options ? options : "");
    hash_str(&key, dname);
    hash_str(&key, dver);
    hash_str(&key, pver);

    const char *dir = moecl_cl_cache_dir();
    char path[4096] = "";
    if (*dir) {
        snprintf(path, sizeof path, "%s/%016llx%016llx.bin", dir, (unsigned long long)key.a,
                 (unsigned long long)key.b);
        size_t n = 0;
        bin = cache_read(path, key, &n);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int bin_status = CL_SUCCESS;
            prog = clCreateProgramWithBinary(ctx, 1, &device, &n, bins, &bin_status, &err);
            if (err == CL_SUCCESS && bin_status == CL_SUCCESS &&
                clBuildProgram(prog, 1, &device, options, NULL, NULL) == CL_SUCCESS) {
                *program_out = prog;
                prog = NULL;
                if (origin_out)
                    *origin_out = MOECL_CL_PROGRAM_CACHE;
                goto cleanup;
            }
            /* The driver refused the binary: rebuild from source below. */
            if (prog)
                clReleaseProgram(prog);
            prog = NULL;
        }
    }

    prog = clCreateProgramWithSource(ctx, (cl_uint)n_files + 1, texts, NULL, &err);
    MOECL_CL_CHECK(err, "clCreateProgramWithSource");
    err = clBuildProgram(prog, 1, &device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        status = build_log_error(prog, device, err, files, n_files, options);
        goto cleanup;
    }
    if (*dir) {
        /* In a context of several devices the program holds one binary per device: take this
         * device's. */
        cl_uint n_devs = 0;
        cl_device_id devs[16];
        size_t sizes[16] = {0};
        unsigned char *outs[16] = {NULL};
        int at = -1;
        if (clGetProgramInfo(prog, CL_PROGRAM_NUM_DEVICES, sizeof n_devs, &n_devs, NULL) ==
                CL_SUCCESS &&
            n_devs >= 1 && n_devs <= 16 &&
            clGetProgramInfo(prog, CL_PROGRAM_DEVICES, n_devs * sizeof devs[0], devs, NULL) ==
                CL_SUCCESS &&
            clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, n_devs * sizeof sizes[0], sizes,
                             NULL) == CL_SUCCESS) {
            for (cl_uint i = 0; i < n_devs; i++)
                if (devs[i] == device)
                    at = (int)i;
        }
        if (at >= 0 && sizes[at] > 0 && sizes[at] <= CACHE_MAX_BINARY) {
            unsigned char *out = malloc(sizes[at]);
            outs[at] = out;
            if (out && clGetProgramInfo(prog, CL_PROGRAM_BINARIES, n_devs * sizeof outs[0], outs,
                                        NULL) == CL_SUCCESS)
                cache_write(dir, path, key, out, sizes[at]);
            free(out);
        }
    }
    *program_out = prog;
    prog = NULL;
cleanup:
    if (prog)
        clReleaseProgram(prog);
    free(bin);
    free(texts);
    return status;
}
