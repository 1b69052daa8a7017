/* `moecl footprint` end to end: the JSON plan of a fixture checkpoint against the files and
 * the KV formula, refusal with the reason (exit 3), bad options and inputs named in the
 * message, sweeps to CSV. */
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *fixture(const char *name) {
    static char path[4096];
    const char *d = getenv("MOECL_FIXTURES_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : "tests/fixtures", name);
    return path;
}

static int footprint(const char *args, int stderr_too, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' footprint %s%s", moecl_test_bin(), args,
             stderr_too ? "" : " 2>/dev/null");
    return moecl_test_run(cmd, out);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The weight bytes of the plan add up to the checkpoint's tensor bytes (summed here from the
 * safetensors header); KV of the full layers is 2 x n_ctx x kv_heads x head_dim x 4 per layer
 * (fixture: 2 full layers, 2 kv heads of 64), f16 half that. */
TEST(cli_footprint_json_plan) {
    char args[4608], *out = NULL;
    snprintf(args, sizeof args, "%s --ctx 1000 --json", fixture("affine_b4_g64"));
    REQUIRE(footprint(args, 0, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fits")));
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(j, "devices");
    REQUIRE(cJSON_GetArraySize(devs) == 2); /* the default device, then the host */
    const cJSON *d0 = cJSON_GetArrayItem(devs, 0),
                *b = cJSON_GetObjectItemCaseSensitive(d0, "bytes");
    double w = num(b, "attn") + num(b, "experts") + num(b, "embed") + num(b, "lm_head") +
               num(b, "router") + num(b, "norms");
    /* 379744 bytes: the sum of the fixture's tensor sizes (test_memplan checks the files) */
    CHECK_EQ((long long)w, 379744);
    CHECK_EQ((long long)num(j, "stored_bytes"), 379744);
    CHECK_EQ((long long)num(b, "kv_full"), 2LL * 2 * 1000 * 2 * 64 * 4);
    cJSON_Delete(j);
    free(out);

    snprintf(args, sizeof args, "%s --ctx 1000 --kv-type f16 --json", fixture("affine_b4_g64"));
    REQUIRE(footprint(args, 0, &out) == 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    b = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "devices"), 0), "bytes");
    CHECK_EQ((long long)num(b, "kv_full"), 2LL * 2 * 1000 * 2 * 64 * 2);
    cJSON_Delete(j);
    free(out);
}

/* Too little host memory: exit status 3, the verdict names the host, the classes, the numbers. */
TEST(cli_footprint_refuses_with_reason) {
    char args[4608], *out = NULL;
    snprintf(args, sizeof args, "%s --host-memory 100000", fixture("affine_b4_g64"));
    CHECK_EQ(footprint(args, 1, &out), 3);
    CHECK_STR_CONTAINS(out, "does not fit: host memory: needs");
    CHECK_STR_CONTAINS(out, "expert weights");
    CHECK_STR_CONTAINS(out, "but has 100.0 kB");
    free(out);
    /* the full-size 4-bit recipe at 128k does not fit a 12 GB host */
    CHECK_EQ(footprint("--like mlx-4bit --ctx 128k --host-memory 12G", 1, &out), 3);
    CHECK_STR_CONTAINS(out, "KV cache (full layers)");
    free(out);
}

TEST(cli_footprint_bad_input) {
    char *out = NULL;
    CHECK_EQ(footprint("--like mlx-3bit", 1, &out), 1);
    CHECK_STR_CONTAINS(out, "unknown preset \"mlx-3bit\"");
    free(out);
    CHECK_EQ(footprint("/nonexistent/moecl-ckpt", 1, &out), 1);
    CHECK_STR_CONTAINS(out, "/nonexistent/moecl-ckpt");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --ctx 0", 1, &out), 2);
    CHECK_STR_CONTAINS(out, "--ctx");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --kv-type q8", 1, &out), 2);
    CHECK_STR_CONTAINS(out, "'q8'");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --place experts=tpu:3", 1, &out), 1);
    CHECK_STR_CONTAINS(out, "experts=tpu:3");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --sweep ctx=8k..1k", 1, &out), 2);
    CHECK_STR_CONTAINS(out, "A <= B");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --sweep colour=red", 1, &out), 2);
    CHECK_STR_CONTAINS(out, "KEY is ctx, kv, like or place");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --csv x.csv", 1, &out), 2);
    free(out);
    char args[4608];
    snprintf(args, sizeof args, "%s --like mlx-4bit", fixture("affine_b4_g64"));
    CHECK_EQ(footprint(args, 1, &out), 2);
    free(out);
}

/* A ctx sweep with a kv series: one CSV row per value x series x (device + host); the full
 * layers' KV doubles with the context and halves with f16. */
TEST(cli_footprint_sweep_csv) {
    char *out = NULL;
    REQUIRE(footprint("--like mlx-4bit --place all=pocl:0 --sweep ctx=1k..8k --sweep kv=f32,f16", 0,
                      &out) == 0);
    int lines = 0;
    long long kv[4][2] = {{0}};
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        if (lines == 1) {
            CHECK_STR_CONTAINS(line, "n_ctx,kv_type,device,attn,experts");
            continue;
        }
        /* fields: model, placement, series, n_ctx, kv_type, device, 11 classes, ... */
        char *f[32];
        int n = 0;
        for (char *p = line; n < 32;) {
            f[n++] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = 0;
            p = c + 1;
        }
        if (n < 13 || strcmp(f[5], "pocl:0"))
            continue;
        long ctx = strtol(f[3], NULL, 10);
        int ci = ctx == 1024 ? 0 : ctx == 2048 ? 1 : ctx == 4096 ? 2 : ctx == 8192 ? 3 : -1;
        REQUIRE(ci >= 0);
        kv[ci][strcmp(f[4], "f16") == 0] = strtoll(f[12], NULL, 10); /* kv_full */
    }
    CHECK_EQ(lines, 1 + 4 * 2 * 2);
    for (int i = 0; i < 4; i++) {
        /* 12 full layers x 2 x ctx x 8 kv heads x 64 x 4 bytes */
        CHECK_EQ(kv[i][0], 12LL * 2 * (1024LL << i) * 8 * 64 * 4);
        CHECK_EQ(kv[i][1] * 2, kv[i][0]);
    }
    free(out);
}

/* --measure loads the fixture with the planned context and prints planned beside measured:
 * the KV cache and activation buffers the runtime allocated are exactly the planned bytes. */
TEST(cli_footprint_measure) {
    char args[4608], *out = NULL;
    snprintf(args, sizeof args, "%s --ctx 40 --batch 8 --kv-type f16 --measure --measure-tokens 8",
             fixture("affine_b4_g64"));
    REQUIRE(footprint(args, 1, &out) == 0);
    CHECK_STR_CONTAINS(out, "measured after a prefill of 8 tokens");
    /* 2 full layers x 2 x 40 positions x 128 x 2 bytes = 40 KiB; sliding 2 x 2 x 8 x 128 x 2 */
    CHECK_STR_CONTAINS(out, "KV cache (full layers)          40.00 KiB      40.00 KiB     0.00%");
    CHECK_STR_CONTAINS(out, "KV cache (sliding layers)        8.00 KiB       8.00 KiB     0.00%");
    const char *act = strstr(out ? out : "", "pocl:0     activations");
    REQUIRE(act);
    CHECK(strstr(act, " 0.00%") && strstr(act, " 0.00%") < strchr(act, '\n'));
    CHECK_STR_CONTAINS(out, "weights vs mapped RSS");
    /* program binaries are measured too (the driver's sizes), not left at 0 */
    const char *prog = strstr(out ? out : "", "pocl:0     program binaries");
    REQUIRE(prog);
    CHECK(!strstr(prog, " 0 B") || strstr(prog, " 0 B") > strchr(prog, '\n'));
    free(out);
}

/* A virtual GPU: the full-size 4-bit model does not fit 4 GiB (the message names it and the
 * expert weights); with every layer's experts on the CPU device (--cpu-moe) it does. */
TEST(cli_footprint_virtual_gpu) {
    char *out = NULL;
    CHECK_EQ(footprint("--like mlx-4bit --virtual-gpu 4G --place all=gpu", 1, &out), 3);
    CHECK_STR_CONTAINS(out, "device virtual:0 (virtual GPU of 4.29 GB) needs");
    CHECK_STR_CONTAINS(out, "expert weights 10.75 GB");
    free(out);
    CHECK_EQ(
        footprint("--like mlx-4bit --virtual-gpu 4G --place all=gpu --cpu-moe --json", 0, &out), 0);
    CHECK_STR_CONTAINS(out, "\"name\": \"virtual:0\"");
    free(out);
    CHECK_EQ(footprint("--like mlx-4bit --virtual-gpu 0", 1, &out), 2);
    free(out);
}
