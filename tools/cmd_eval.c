/* moecl eval: run token ids through a model and print the last position's top-5 logits. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(void) {
    fprintf(stderr, "usage: moecl eval -m DIR --tokens 1,2,3 [--device SPEC] [--ctx N] "
                    "[--chunk N] [--decode]\n"
                    "  --decode  feed the tokens one at a time (decode path) instead of one "
                    "prefill\n");
}

static int parse_tokens(const char *s, int32_t **out, int *n_out) {
    int cap = 16, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return -1;
    while (*s) {
        char *end;
        long t = strtol(s, &end, 10);
        if (end == s || t < 0 || t > 0x7fffffff) {
            free(v);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (int32_t)t;
        s = end;
        if (*s == ',')
            s++;
        else if (*s) {
            free(v);
            return -1;
        }
    }
    *out = v;
    *n_out = n;
    return n > 0 ? 0 : -1;
}

MOECL_COMMAND(eval, "evaluate token ids on a model, print the top-5 next-token logits") {
    const char *dir = NULL, *toks = NULL, *device = NULL;
    int n_ctx = 0, chunk = 0, decode = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            toks = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc)
            n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode"))
            decode = 1;
        else {
            usage();
            return 2;
        }
    }
    int32_t *tokens = NULL;
    int n = 0;
    if (!dir || !toks || parse_tokens(toks, &tokens, &n) != 0) {
        usage();
        return 2;
    }
    struct moecl_model *model = NULL;
    struct moecl_context *ctx = NULL;
    int rc = 1;
    struct moecl_model_options mo = {device, 0, NULL, 0, MOECL_NUMERICS_DEFAULT};
    double t0 = now_s();
    enum moecl_status st = moecl_model_load(dir, &mo, &model);
    if (st != MOECL_OK) {
        rc = moecl_cli_fail("loading the model", st);
        goto done;
    }
    double t1 = now_s();
    struct moecl_context_options co = {chunk, 0, 0, MOECL_KV_F32, 0};
    st = moecl_context_create(model, n_ctx > 0 ? n_ctx : (n > 4096 ? n : 4096), &co, &ctx);
    if (st != MOECL_OK) {
        rc = moecl_cli_fail("creating the context", st);
        goto done;
    }
    double t2 = now_s();
    for (int i = 0; i < (decode ? n : 1); i++) {
        st = decode ? moecl_context_eval(ctx, tokens + i, 1) : moecl_context_eval(ctx, tokens, n);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("evaluating", st);
            goto done;
        }
    }
    double t3 = now_s();
    const float *logits = moecl_context_logits(ctx);
    int V = moecl_model_vocab_size(model);
    int best[5] = {-1, -1, -1, -1, -1};
    for (int v = 0; v < V; v++) {
        for (int s = 0; s < 5; s++) {
            if (best[s] < 0 || logits[v] > logits[best[s]]) {
                for (int u = 4; u > s; u--)
                    best[u] = best[u - 1];
                best[s] = v;
                break;
            }
        }
    }
    printf("device: %s (%s)\n", moecl_model_device(model)->name,
           moecl_model_device(model)->device_name);
    for (int s = 0; s < 5 && best[s] >= 0; s++)
        printf("  %d  %10d  %.6f\n", s + 1, best[s], (double)logits[best[s]]);
    printf("load %.2f s, context %.2f s, %d tokens (%s) in %.3f s: %.2f tokens/s\n", t1 - t0,
           t2 - t1, n, decode ? "decode" : "prefill", t3 - t2, (double)n / (t3 - t2));
    rc = 0;
done:
    moecl_context_release(ctx);
    moecl_model_release(model);
    free(tokens);
    return rc;
}
