/* moecl generate: one prompt in, streamed text out, then a stats line (like mlx_lm.generate
 * with --verbose). */
#include "cli.h"
#include "cli_gen.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: moecl generate [-m DIR] -p TEXT [options]\n"
            "\n"
            "Generates text from a prompt and prints it as it is produced, then a stats line on\n"
            "stderr. Stops at --max-tokens or at a stop token of the checkpoint's\n"
            "generation_config.json (<|return|>, <|call|>, <|endoftext|>; never <|end|>).\n"
            "\n"
            "  -p, --prompt TEXT      the prompt (- reads standard input); special-token text\n"
            "                         like <|start|> is recognised, as Hugging Face's encode\n"
            "                         does\n"
            "  --chat                 wrap the prompt in the harmony chat format (system message,\n"
            "                         --system as developer instructions, the user turn and\n"
            "                         <|start|>assistant) and print only the final channel\n"
            "%s"
            "\n"
            "Ctrl-C stops the generation and still prints the stats line.\n",
            gen_options_help);
}

MOECL_COMMAND(generate, "generate text from a prompt (raw or --chat harmony)") {
    struct gen_opts o;
    gen_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moecl: error: %s needs a value\n", a);
                return 2;
            }
            o.prompt = argv[++i];
            continue;
        }
        if (!strcmp(a, "--chat")) {
            o.chat = 1;
            continue;
        }
        int r = gen_parse_option(&o, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r == 0) {
            fprintf(stderr, "moecl: error: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    char *stdin_prompt = NULL;
    if (o.prompt && !strcmp(o.prompt, "-")) {
        /* -p -: the prompt is standard input, as mlx_lm.generate reads it. */
        size_t cap = 0, len = 0, got;
        char chunk[4096];
        while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
            char *nb = len + got + 1 > cap ? realloc(stdin_prompt, cap = 2 * (len + got + 1))
                                           : stdin_prompt;
            if (!nb) {
                free(stdin_prompt);
                fprintf(stderr, "moecl: error: out of memory reading the prompt\n");
                return 1;
            }
            stdin_prompt = nb;
            memcpy(stdin_prompt + len, chunk, got);
            len += got;
            stdin_prompt[len] = 0;
        }
        o.prompt = stdin_prompt ? stdin_prompt : "";
    }
    if (!o.prompt) {
        fprintf(stderr, "moecl: error: generate needs a prompt (-p TEXT)\n");
        usage(stderr);
        return 2;
    }
    if (!o.chat && (o.system || o.show_reasoning))
        fprintf(stderr, "moecl: note: --system and --show-reasoning apply with --chat only\n");

    struct gen_session s;
    /* The context is sized once the prompt is known. */
    if (gen_open(&s, &o, 0))
        return 1;
    int32_t *ids = NULL;
    size_t n = 0;
    enum moecl_status st;
    if (o.chat) {
        struct moecl_conversation *c = NULL;
        if (gen_conversation(&o, &c)) {
            gen_close(&s);
            return 1;
        }
        st = moecl_conversation_add_user(c, o.prompt);
        if (st == MOECL_OK)
            st = moecl_conversation_render(c, s.tok, MOECL_RENDER_GENERATION_PROMPT, &ids, &n);
        moecl_conversation_release(c);
    } else {
        st = moecl_tokenizer_encode(s.tok, o.prompt, strlen(o.prompt), MOECL_ENCODE_ALLOW_SPECIAL,
                                    &ids, &n);
    }
    if (st != MOECL_OK) {
        gen_close(&s);
        return moecl_cli_fail("encoding the prompt", st);
    }
    s.n_ctx = (int)n + o.max_tokens;
    struct moecl_context_options co;
    gen_context_options(&o, &co);
    st = moecl_context_create(s.model, s.n_ctx, &co, &s.ctx);
    if (st != MOECL_OK) {
        free(ids);
        gen_close(&s);
        return moecl_cli_fail("creating the context", st);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    struct gen_stats stats;
    int rc = gen_run(&s, &o, ids, n, &interrupted, &stats, NULL, NULL);
    if (rc == 0)
        gen_print_stats(&s, &stats);
    free(ids);
    free(stdin_prompt);
    gen_close(&s);
    return rc;
}
