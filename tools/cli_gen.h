/* The text-generation engine shared by `moecl generate` and `moecl chat`: option parsing,
 * model/tokenizer/context set-up (with the built-in default model), the token loop with
 * streaming output, and the stats line. */
#ifndef MOECL_CLI_GEN_H
#define MOECL_CLI_GEN_H

#include "moecl.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct gen_opts {
    const char *model_dir; /* NULL: the built-in default model */
    const char *device;
    const char *prompt;
    const char *system; /* developer instructions (--system) */
    int chat;           /* --chat: harmony prompt and channel parsing */
    int max_tokens;
    int n_ctx; /* chat: context length; generate: 0 = prompt + max_tokens */
    struct moecl_sampler_params sampler;
    int seed_given;
    enum moecl_reasoning_effort effort;
    int show_reasoning;
    int color;                    /* 1: dim the analysis channel (stdout is a terminal) */
    enum moecl_kv_type kv_type;   /* --kv-type */
    int max_kv_size;              /* --max-kv-size (0: off) */
    const char *place;            /* --place SPEC */
    int n_cpu_moe;                /* --n-cpu-moe N (N > 0), --cpu-moe (-1) */
    int report_memory;            /* --report-memory */
    int micro_batch;              /* --micro-batch N (0: off) */
    enum moecl_numerics numerics; /* --numerics exact|fast */
};

/* Parses one of the model/device/context options that every command loading a model shares
 * (-m, --device; placement and KV-cache options belong here too). Returns 1 if consumed
 * (advancing *i past its value), 0 if not ours, -1 on a bad value (message printed). */
int gen_parse_model_option(struct gen_opts *o, int argc, char **argv, int *i);
/* Those options' help text (without -m, whose default differs per command). */
extern const char gen_model_options_help[];
/* The model and context options they describe (gen_open uses these; so do commands that load
 * a model themselves). */
void gen_model_options(const struct gen_opts *o, struct moecl_model_options *mo);
void gen_context_options(const struct gen_opts *o, struct moecl_context_options *co);

/* Parses one option at argv[*i] shared by generate and chat (the model options above too). Returns
 * 1 if consumed (advancing *i past its value), 0 if not ours, -1 on a bad value (message printed).
 */
int gen_parse_option(struct gen_opts *o, int argc, char **argv, int *i);
void gen_opts_init(struct gen_opts *o);
/* The shared options' help text. */
extern const char gen_options_help[];

struct gen_session {
    char dir[4096];
    struct moecl_tokenizer *tok;
    struct moecl_model *model;
    struct moecl_context *ctx;
    struct moecl_sampler *sampler;
    int32_t stops[16];
    int n_stops;
    int n_ctx;
    int report_memory;
};

/* Statistics of one generation. */
struct gen_stats {
    int prompt_tokens, gen_tokens;
    double prompt_s, gen_s;
    int stopped;     /* a stop token ended it */
    int interrupted; /* the interrupt flag ended it */
};

/* Opens the model (the default one, with its one-line notice, when o->model_dir is NULL) and,
 * when n_ctx > 0, a context of n_ctx tokens.
 * Returns 0 or prints an error and returns 1. */
int gen_open(struct gen_session *s, const struct gen_opts *o, int n_ctx);
void gen_close(struct gen_session *s);

/* Evaluates `prompt` from an empty context and generates up to o->max_tokens tokens, writing
 * text to stdout as it is produced (chat: the final channel, plus analysis when asked). When
 * `answer_out` is not NULL it receives the final-channel text (malloc'd) and `thinking_out` the
 * analysis text. Stops early when *interrupt becomes non-zero. Returns 0 or 1 (error printed). */
int gen_run(struct gen_session *s, const struct gen_opts *o, const int32_t *prompt, size_t n,
            volatile sig_atomic_t *interrupt, struct gen_stats *stats, char **answer_out,
            char **thinking_out);

/* Prints the memory report of a context to stderr: per device and class, planned and
 * measured; bytes moved between devices (total, per token) and hand-offs per step; host RSS
 * and the checkpoint's resident pages. Returns 0 or 1 (error printed). */
int gen_print_memory_report(const struct moecl_context *ctx);

/* Prints the stats line to stderr (and the memory report with --report-memory). */
void gen_print_stats(const struct gen_session *s, const struct gen_stats *st);

/* Builds the conversation settings from the options (date today, effort, instructions). */
int gen_conversation(const struct gen_opts *o, struct moecl_conversation **conv_out);

#endif
