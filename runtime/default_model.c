/* The built-in default model: a small gpt-oss checkpoint with the real o200k_harmony tokenizer
 * and random weights, made on first use and cached under the user's cache folder.
 *
 * The weights come from the checkpoint writer (tools/mkmodel*.c), which is a program, not a
 * library function: we run the `mkmodel` binary that sits next to the running executable (or
 * $MOECL_MKMODEL). tokenizer.json is written here with loader/'s writer when mkmodel did not.
 * The folder is built under a temporary name and renamed into place, so a half-made model is
 * never used, and two processes creating it at once both end up with a complete one. */
#include "moecl.h"

#include "moecl_error.h"
#include "tokenizer_json.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bump when the recipe changes: an old cache is then simply not used. */
#define DEFAULT_MODEL_NAME "default-model-v1"

/* The recipe: the writer's --tiny shape (hidden 192, 4 q / 2 kv heads x 64, 8 experts top-4)
 * with 2 layers, MLX 4-bit; the real 201088-entry vocabulary, whose embedding and lm_head
 * dominate its ~30 MB. */
static const char *const mkmodel_args[] = {"--tiny", "--layers", "2",
                                           "--seed", "20250805", "--quiet"};

/* out = a + sep + b; 0 if it fits. */
static int join(char *out, size_t n, const char *a, const char *sep, const char *b) {
    int len = snprintf(out, n, "%s%s%s", a, sep, b);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

static int file_exists(const char *dir, const char *name) {
    char p[PATH_MAX];
    struct stat st;
    if (join(p, sizeof p, dir, "/", name))
        return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The writer that made a cached model, as "writer SIZE MTIME": a rebuilt mkmodel (whose
 * format may have changed with the loader's) makes the cache stale. */
static void writer_stamp(const char *mkmodel, char *out, size_t n) {
    struct stat st;
    if (stat(mkmodel, &st) != 0)
        snprintf(out, n, "writer unknown");
    else
        snprintf(out, n, "writer %lld %lld.%09ld", (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
}

/* Whether dir holds a finished model; with a stamp, one made by that writer. */
static int model_complete(const char *dir, const char *stamp) {
    if (!file_exists(dir, "config.json") || !file_exists(dir, "tokenizer.json"))
        return 0;
    char p[PATH_MAX], line[256] = "";
    if (join(p, sizeof p, dir, "/", ".moecl-complete"))
        return 0;
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\n")] = 0;
    return ok && (!stamp || strcmp(line, stamp) == 0);
}

static enum moecl_status mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return MOECL_OK;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The folder of the running executable, or "" if unknown. */
static void exe_dir(char *buf, size_t n) {
    buf[0] = 0;
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) {
        buf[0] = 0;
        return;
    }
    buf[len] = 0;
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = 0;
}

static int find_file(const char *env, const char *const *rel, size_t n_rel, char *out, size_t n) {
    const char *e = getenv(env);
    if (e && *e && access(e, R_OK) == 0) {
        snprintf(out, n, "%s", e);
        return 1;
    }
    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    for (size_t i = 0; dir[0] && i < n_rel; i++) {
        if (join(out, n, dir, "/", rel[i]) == 0 && access(out, R_OK) == 0)
            return 1;
    }
    /* Last, the working directory (a source tree's root). */
    for (size_t i = 0; i < n_rel; i++)
        if (strncmp(rel[i], "../", 3) != 0 && join(out, n, ".", "/", rel[i]) == 0 &&
            access(out, R_OK) == 0)
            return 1;
    return 0;
}

static enum moecl_status run_mkmodel(const char *mkmodel, const char *out_dir,
                                     const char *tiktoken) {
    const char *argv[16];
    int a = 0;
    argv[a++] = mkmodel;
    for (size_t i = 0; i < sizeof mkmodel_args / sizeof mkmodel_args[0]; i++)
        argv[a++] = mkmodel_args[i];
    argv[a++] = "--tiktoken";
    argv[a++] = tiktoken;
    argv[a++] = "--out";
    argv[a++] = out_dir;
    argv[a] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return moecl_error_set(MOECL_ERR_IO, "default model: fork: %s", strerror(errno));
    if (pid == 0) {
        execv(mkmodel, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return moecl_error_set(MOECL_ERR_IO, "default model: waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return moecl_error_set(MOECL_ERR_IO, "default model: '%s --out %s' failed (exit status %d)",
                               mkmodel, out_dir, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return MOECL_OK;
}

enum moecl_status moecl_default_model_path(char *buf, size_t n, int *created_out) {
    if (created_out)
        *created_out = 0;
    if (!buf || n == 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "default model: no buffer");
    buf[0] = 0;
    char base[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        snprintf(base, sizeof base, "%s/moecl", xdg);
    else if (home && *home)
        snprintf(base, sizeof base, "%s/.cache/moecl", home);
    else
        return moecl_error_set(MOECL_ERR_NOT_FOUND,
                               "default model: neither XDG_CACHE_HOME nor HOME is set");
    char dir[PATH_MAX];
    if (join(dir, sizeof dir, base, "/", DEFAULT_MODEL_NAME) || strlen(dir) >= n)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "default model: path longer than %zu", n);
    static const char *const mk_rel[] = {"mkmodel"};
    static const char *const tik_rel[] = {
        "../data/o200k_base.tiktoken", "../../data/o200k_base.tiktoken", "data/o200k_base.tiktoken",
        "../share/moecl/o200k_base.tiktoken"};
    char mkmodel[PATH_MAX], tiktoken[PATH_MAX];
    char stamp[128] = "writer unknown";
    int have_writer = find_file("MOECL_MKMODEL", mk_rel, 1, mkmodel, sizeof mkmodel);
    if (have_writer)
        writer_stamp(mkmodel, stamp, sizeof stamp);
    if (model_complete(dir, have_writer ? stamp : NULL)) {
        snprintf(buf, n, "%s", dir);
        return MOECL_OK;
    }
    if (!have_writer)
        return moecl_error_set(MOECL_ERR_NOT_FOUND,
                               "default model: the checkpoint writer 'mkmodel' is not next to "
                               "this program (build it with make, or set MOECL_MKMODEL)");
    if (!find_file("MOECL_TIKTOKEN", tik_rel, sizeof tik_rel / sizeof tik_rel[0], tiktoken,
                   sizeof tiktoken))
        return moecl_error_set(MOECL_ERR_NOT_FOUND,
                               "default model: o200k_base.tiktoken not found in the source "
                               "tree's data/ (set MOECL_TIKTOKEN to its path)");

    enum moecl_status st = mkdir_p(base);
    if (st != MOECL_OK)
        return st;
    char tmp[PATH_MAX];
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp.%ld", DEFAULT_MODEL_NAME, (long)getpid());
    if (join(tmp, sizeof tmp, base, "/", tmpname))
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "default model: cache path too long");
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(tmp, 0755) != 0)
        return moecl_error_set(MOECL_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    st = run_mkmodel(mkmodel, tmp, tiktoken);
    char path[PATH_MAX];
    if (st == MOECL_OK && !file_exists(tmp, "tokenizer.json")) {
        st = join(path, sizeof path, tmp, "/", "tokenizer.json")
                 ? moecl_error_set(MOECL_ERR_INVALID_ARG, "default model: path too long")
                 : moecl_tokenizer_json_write(tiktoken, path);
    }
    if (st == MOECL_OK) {
        FILE *f = join(path, sizeof path, tmp, "/", ".moecl-complete") ? NULL : fopen(path, "w");
        if (!f || fprintf(f, "%s\nmade by moecl: random weights, real o200k_harmony tokenizer\n",
                          stamp) < 0)
            st = moecl_error_set(MOECL_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        if (f && fclose(f) != 0 && st == MOECL_OK)
            st = moecl_error_set(MOECL_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (st == MOECL_OK) {
        int renamed = rename(tmp, dir) == 0;
        if (!renamed && !model_complete(dir, stamp)) {
            /* A stale model (another writer) or a partial folder: replace it. Another
             * process that finished first with the same writer is left alone. */
            nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            renamed = rename(tmp, dir) == 0;
            if (!renamed)
                st = moecl_error_set(MOECL_ERR_IO, "%s: cannot rename to %s: %s", tmp, dir,
                                     strerror(errno));
        }
        if (renamed && created_out)
            *created_out = 1;
    }
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (st != MOECL_OK)
        return st;
    snprintf(buf, n, "%s", dir);
    return MOECL_OK;
}
