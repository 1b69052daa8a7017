/* moecl chat: an interactive harmony conversation with history (like mlx_lm.chat).
 *
 * Each turn renders the whole conversation (earlier answers as final-channel messages, their
 * analysis dropped, as the chat template does) and evaluates it from an empty context. Ctrl-C
 * stops the answer being generated (what was produced stays in the history) and, at the input
 * prompt, just starts a new line; Ctrl-D or /exit ends the program. */
#include "cli.h"
#include "cli_gen.h"

#include <errno.h>
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
            "usage: moecl chat [-m DIR] [options]\n"
            "\n"
            "An interactive conversation in the harmony chat format. Type a message and press\n"
            "Enter; /reset forgets the history, /exit (or Ctrl-D) quits, Ctrl-C stops the\n"
            "current answer.\n"
            "\n"
            "  --ctx N                context length in tokens (default 4096)\n"
            "  --stats                print the stats line after every answer\n"
            "%s",
            gen_options_help);
}

/* Reads one line without its newline into *line (getline buffer). Returns 1 for a line, 0 at
 * end of input, -1 when Ctrl-C interrupted the read. */
static int read_line(char **line, size_t *cap) {
    errno = 0;
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) {
        if (errno == EINTR || interrupted) {
            clearerr(stdin);
            return -1;
        }
        return 0;
    }
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
        (*line)[--n] = 0;
    return 1;
}

MOECL_COMMAND(chat, "interactive harmony chat with history (/reset, /exit)") {
    struct gen_opts o;
    gen_opts_init(&o);
    o.chat = 1;
    o.n_ctx = 4096;
    int stats_each = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--stats")) {
            stats_each = 1;
            continue;
        }
        if (!strcmp(a, "--ctx")) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !end || *end || v < 16 || v > (1 << 20)) {
                fprintf(stderr, "moecl: error: --ctx: expected an integer in [16, %d]\n", 1 << 20);
                return 2;
            }
            o.n_ctx = (int)v;
            i++;
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
    if (o.max_tokens >= o.n_ctx) {
        fprintf(stderr, "moecl: error: --max-tokens %d leaves no room in --ctx %d\n", o.max_tokens,
                o.n_ctx);
        return 2;
    }

    struct gen_session s;
    if (gen_open(&s, &o, o.n_ctx))
        return 1;
    struct moecl_conversation *conv = NULL;
    if (gen_conversation(&o, &conv)) {
        gen_close(&s);
        return 1;
    }
    /* Ctrl-C must interrupt a blocking read, so no SA_RESTART. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    printf("moecl chat: type a message; /reset clears the history, /exit quits, Ctrl-C stops an "
           "answer.\n");
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        interrupted = 0;
        fputs(">> ", stdout);
        fflush(stdout);
        int r = read_line(&line, &cap);
        if (r < 0) {
            fputc('\n', stdout);
            continue;
        }
        if (r == 0) {
            fputc('\n', stdout);
            break;
        }
        if (!line[0])
            continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
            break;
        if (!strcmp(line, "/reset")) {
            moecl_conversation_clear(conv);
            printf("[history cleared]\n");
            continue;
        }
        enum moecl_status st = moecl_conversation_add_user(conv, line);
        int32_t *ids = NULL;
        size_t n = 0;
        if (st == MOECL_OK)
            st = moecl_conversation_render(conv, s.tok, MOECL_RENDER_GENERATION_PROMPT, &ids, &n);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("rendering the conversation", st);
            break;
        }
        struct gen_stats stats;
        char *answer = NULL, *thinking = NULL;
        if (gen_run(&s, &o, ids, n, &interrupted, &stats, &answer, &thinking) == 0) {
            if (stats.interrupted)
                printf("[interrupted]\n");
            if (stats_each)
                gen_print_stats(&s, &stats);
            st = moecl_conversation_add_assistant(conv, thinking, answer ? answer : "");
            if (st != MOECL_OK) {
                /* Text the template refuses (channel tags): keep the turn without it. */
                st = moecl_conversation_add_assistant(conv, NULL, "");
            }
        } else {
            /* The turn failed (e.g. the context is full): forget the question. */
            moecl_conversation_clear(conv);
            printf("[history cleared]\n");
        }
        free(answer);
        free(thinking);
        free(ids);
        fflush(stdout);
        if (st != MOECL_OK) {
            rc = moecl_cli_fail("conversation", st);
            break;
        }
    }
    free(line);
    moecl_conversation_release(conv);
    gen_close(&s);
    return rc;
}
