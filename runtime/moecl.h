/* moecl — public API.
 *
 * moecl runs gpt-oss mixture-of-experts models on OpenCL devices. This header is the only one
 * tools/ may include; it names no OpenCL type.
 *
 * Conventions (see STYLE.md):
 * - Every fallible function returns enum moecl_status; outputs are trailing *_out parameters,
 *   set to NULL/0 on entry and written only on success.
 * - On failure, moecl_last_error() returns a message naming what failed, on what, and why. The
 *   message is per thread and stays valid until the next failing call on the same thread.
 * - Objects are opaque; each has a create/release (or load/release) pair; release accepts NULL.
 */
#ifndef MOECL_H
#define MOECL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOECL_WUR __attribute__((warn_unused_result))

enum moecl_status {
    MOECL_OK = 0,
    MOECL_ERR_INVALID_ARG,   /* a caller passed something impossible */
    MOECL_ERR_IO,            /* a file could not be opened, read, mapped or written */
    MOECL_ERR_FORMAT,        /* a file's content is malformed (safetensors, JSON, tiktoken) */
    MOECL_ERR_UNSUPPORTED,   /* well-formed but not something moecl handles */
    MOECL_ERR_SHAPE,         /* a tensor's dtype or shape disagrees with the config */
    MOECL_ERR_NOT_FOUND,     /* a tensor, field, device or file is missing */
    MOECL_ERR_NO_MEMORY,     /* a host allocation failed */
    MOECL_ERR_NO_DEVICE,     /* no OpenCL platform or device */
    MOECL_ERR_CL,            /* an OpenCL call failed; the message has the call and CL name */
    MOECL_ERR_BUILD,         /* an OpenCL program failed to build; the message has the log */
    MOECL_ERR_PLACEMENT,     /* a placement cannot be satisfied */
    MOECL_ERR_DEVICE_MEMORY, /* a device cannot hold what was asked of it */
    MOECL_ERR_INTERNAL,      /* a bug in moecl */
    MOECL_STATUS_COUNT
};

/* The status' symbolic name, e.g. "MOECL_ERR_FORMAT". Never NULL. */
const char *moecl_status_str(enum moecl_status status);

/* The detailed message of the last failure on this thread ("" if none). */
const char *moecl_last_error(void);

/* ------------------------------------------------------------------ devices */

enum moecl_device_type {
    MOECL_DEVICE_CPU,
    MOECL_DEVICE_GPU,
    MOECL_DEVICE_ACCELERATOR,
    MOECL_DEVICE_OTHER,
};

/* One OpenCL device as discovery sees it. `name` ("pocl:0", "nvidia:0") and `index` (position
 * in the global list, platforms in ICD order) are what placement options accept. */
struct moecl_device_info {
    int index;
    char name[64];
    int platform_index;
    int index_in_platform;
    enum moecl_device_type type;
    char device_name[256];
    char vendor[256];
    char platform_name[256];
    char platform_version[256];
    char device_version[256];
    char driver_version[256];
    char opencl_c_version[256];
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_work_group_size;
    int host_unified_memory;
    uint64_t svm_capabilities; /* CL_DEVICE_SVM_* bits: 1 coarse buffer, 2 fine buffer, 4 fine
                                  system, 8 atomics */
    int fp16;                  /* cl_khr_fp16 advertised */
    int subgroups;             /* cl_khr_subgroups or cl_intel_subgroups advertised */
};

/* Lists every device of every platform. *devices_out is malloc'd (free with
 * moecl_devices_free). With no platform or no device: MOECL_ERR_NO_DEVICE, and the message says
 * how to install PoCL. */
MOECL_WUR enum moecl_status moecl_devices_list(struct moecl_device_info **devices_out, int *n_out);
void moecl_devices_free(struct moecl_device_info *devices);

/* "cpu", "gpu", "accelerator" or "other". */
const char *moecl_device_type_str(enum moecl_device_type type);

/* Resolves a device spec as placement accepts it: "cpu" (first CPU device), "gpu" (first GPU),
 * a name ("pocl:1", "nvidia:0") or a global index ("2"). Returns the index into the list. */
MOECL_WUR enum moecl_status moecl_device_resolve(const struct moecl_device_info *devices, int n,
                                                 const char *spec, int *index_out);

/* ------------------------------------------------------------------ sampler */

/* How the next token is drawn from a row of logits, with mlx-lm's semantics (make_sampler):
 * top_p, min_p and top_k filter the UNTEMPERED distribution (their masks intersect), then the
 * survivors are drawn from softmax(logprob / temperature). */
struct moecl_sampler_params {
    float temperature; /* 0: greedy (argmax, lowest id on ties); > 0: sample */
    float top_p;       /* keep the smallest most-probable set whose mass reaches top_p; active
                          only for 0 < top_p < 1 */
    float min_p;       /* keep tokens with p >= min_p * p_max; 0: off; 1: only ties with the max */
    int top_k;         /* keep the top_k most probable; 0 (or >= vocabulary): off */
    uint64_t seed;     /* the draws are a pure function of the seed and the logits */
};

/* mlx-lm's defaults: temperature 0, top_p 1, min_p 0, top_k 0, seed 0. */
void moecl_sampler_params_init(struct moecl_sampler_params *params);

/* A sampler owns its random stream and scratch for n_vocab logits. */
struct moecl_sampler;

MOECL_WUR enum moecl_status moecl_sampler_create(const struct moecl_sampler_params *params,
                                                 int n_vocab, struct moecl_sampler **sampler_out);
void moecl_sampler_release(struct moecl_sampler *sampler);

/* Restarts the random stream as if the sampler had just been created with this seed. */
void moecl_sampler_reseed(struct moecl_sampler *sampler, uint64_t seed);

/* Draws one token from logits[0..n) (n <= n_vocab). NaN or +inf logits, or no finite logit,
 * give MOECL_ERR_INVALID_ARG. */
MOECL_WUR enum moecl_status moecl_sampler_sample(struct moecl_sampler *sampler, const float *logits,
                                                 int n, int32_t *token_out);

/* The exact distribution the next draw uses: probs_out[i] for every i < n (0 for filtered
 * tokens; at temperature 0, 1 for the argmax). Does not advance the random stream. */
MOECL_WUR enum moecl_status moecl_sampler_distribution(struct moecl_sampler *sampler,
                                                       const float *logits, int n,
                                                       double *probs_out);

/* ------------------------------------------------------------------ device probes */

/* Streaming read bandwidth of device `device_index` (discovery order) over a device buffer of
 * `bytes` (clamped to the largest buffer), timed with profiling events over `reps` runs after a
 * warm-up: median and best, in bytes per second. */
MOECL_WUR enum moecl_status moecl_device_probe_bandwidth(int device_index, uint64_t bytes, int reps,
                                                         double *median_bytes_per_s_out,
                                                         double *best_bytes_per_s_out);

/* Float32 FMA throughput (flop/s, an FMA counting 2) of a compute-bound kernel; median of reps. */
MOECL_WUR enum moecl_status moecl_device_probe_fma(int device_index, int reps,
                                                   double *median_flops_out);

/* ------------------------------------------------------------------ checkpoint inspection */

/* Parameter classes as `moecl inspect` reports them. Biases of every linear module, norm
 * weights and attention sinks form one class. */
enum moecl_param_class {
    MOECL_CLASS_EMBEDDING,
    MOECL_CLASS_ATTENTION,
    MOECL_CLASS_ROUTER,
    MOECL_CLASS_EXPERTS,
    MOECL_CLASS_NORMS_BIASES, /* norm weights, additive biases, attention sinks */
    MOECL_CLASS_LM_HEAD,
    MOECL_CLASS_COUNT
};

/* "embedding", "attention", "router", "experts", "norms+biases+sinks", "lm_head". */
const char *moecl_param_class_str(enum moecl_param_class cls);

/* What a checkpoint holds, as counted by model cards: parameters are logical (a packed 4-bit
 * weight of [out, in] counts out*in), bytes are the stored bytes of every tensor, and
 * bits_per_weight = 8 * stored bytes / parameters. */
struct moecl_ckpt_summary {
    uint64_t n_params, n_bytes;
    double bits_per_weight;
    uint64_t class_params[MOECL_CLASS_COUNT], class_bytes[MOECL_CLASS_COUNT];
    uint64_t converted_bytes; /* bytes the loader builds at load (HF bf16 experts), else 0 */
    int n_tensors, n_files, n_modules;
};

#define MOECL_INSPECT_TENSORS 1u /* add the per-tensor table */
#define MOECL_INSPECT_JSON 2u    /* write JSON instead of text */

/* Loads the checkpoint folder `dir` (validating everything the loader validates), writes the
 * `moecl inspect` report to `out` unless it is NULL, and fills *summary_out unless NULL. */
MOECL_WUR enum moecl_status moecl_inspect(const char *dir, unsigned flags, FILE *out,
                                          struct moecl_ckpt_summary *summary_out);

/* Converts the checkpoint in src_dir (any layout the loader reads) to an MLX-layout
 * checkpoint in dst_dir (created if needed): config.json, model.safetensors (or shards of at
 * most 5 GiB with model.safetensors.index.json), and the tokenizer files copied. Hugging Face
 * bf16 experts are written output-major as separate gate/up/down projections, so loading the
 * result copies nothing. */
MOECL_WUR enum moecl_status moecl_convert_to_mlx(const char *src_dir, const char *dst_dir);

/* ------------------------------------------------------------------ conversation (harmony) */

struct moecl_tokenizer; /* the tokenizer section declares its API */

enum moecl_reasoning_effort {
    MOECL_REASONING_LOW,
    MOECL_REASONING_MEDIUM, /* the chat template's default */
    MOECL_REASONING_HIGH,
};

/* "low" / "medium" / "high" (case-sensitive, as the template writes them). */
const char *moecl_reasoning_effort_str(enum moecl_reasoning_effort effort);
MOECL_WUR enum moecl_status moecl_reasoning_effort_parse(const char *s,
                                                         enum moecl_reasoning_effort *effort_out);

/* A gpt-oss chat in the harmony format: the system message's settings, optional developer
 * instructions, and the turns. Rendering follows the checkpoint's chat_template.jinja (what
 * mlx-lm feeds the model; spec §4.4): every earlier assistant turn is its final answer only (its
 * analysis is dropped), a tool-call turn keeps its analysis unless a later final answer exists.
 * All strings are copied; the conversation owns them. */
struct moecl_conversation;

MOECL_WUR enum moecl_status moecl_conversation_create(struct moecl_conversation **conv_out);
void moecl_conversation_release(struct moecl_conversation *conv);

/* System message settings. identity NULL: "You are ChatGPT, a large language model trained by
 * OpenAI."; date "YYYY-MM-DD", NULL: today (local time, like the template's strftime_now). */
MOECL_WUR enum moecl_status moecl_conversation_set_identity(struct moecl_conversation *conv,
                                                            const char *identity);
MOECL_WUR enum moecl_status moecl_conversation_set_date(struct moecl_conversation *conv,
                                                        const char *date);
void moecl_conversation_set_reasoning(struct moecl_conversation *conv,
                                      enum moecl_reasoning_effort effort);
/* Developer instructions (what a leading "system" or "developer" message becomes); NULL or ""
 * for none. */
MOECL_WUR enum moecl_status moecl_conversation_set_instructions(struct moecl_conversation *conv,
                                                                const char *instructions);

MOECL_WUR enum moecl_status moecl_conversation_add_user(struct moecl_conversation *conv,
                                                        const char *content);
/* An assistant turn: its analysis (`thinking`, NULL for none) and final answer. Text that holds
 * "<|channel|>analysis<|message|>" or "<|channel|>final<|message|>" is refused, as the template
 * refuses it. */
MOECL_WUR enum moecl_status moecl_conversation_add_assistant(struct moecl_conversation *conv,
                                                             const char *thinking,
                                                             const char *content);
/* An assistant tool call to functions.<name>; args_json is the arguments' JSON text, rendered as
 * is (pass it as json.dumps writes it to match the template's tojson). */
MOECL_WUR enum moecl_status moecl_conversation_add_tool_call(struct moecl_conversation *conv,
                                                             const char *thinking, const char *name,
                                                             const char *args_json);
/* The result of the latest tool call (rendered as a JSON string, as the template does). */
MOECL_WUR enum moecl_status moecl_conversation_add_tool_result(struct moecl_conversation *conv,
                                                               const char *content);
/* Drops every turn; keeps the system settings and instructions. */
void moecl_conversation_clear(struct moecl_conversation *conv);
int moecl_conversation_n_turns(const struct moecl_conversation *conv);

enum {
    /* End with the generation prompt "<|start|>assistant". Without it a trailing assistant turn
     * is rendered in training form (its analysis, then the final answer and <|return|>). */
    MOECL_RENDER_GENERATION_PROMPT = 1,
    /* Follow the openai-harmony package where it differs from the chat template: no "\n\n"
     * after the developer instructions, tool results verbatim, and its analysis-dropping rule
     * (only analysis before the first final answer, only if the last assistant message is a
     * final answer). */
    MOECL_RENDER_HARMONY_PACKAGE = 2,
};

/* The rendered text, special tokens written as their strings. *text_out is malloc'd and
 * NUL-terminated; *len_out (may be NULL) excludes the NUL. */
MOECL_WUR enum moecl_status moecl_conversation_render_text(const struct moecl_conversation *conv,
                                                           int flags, char **text_out,
                                                           size_t *len_out);
/* The rendered token ids: special tokens by id, text by ordinary encoding. *ids_out malloc'd. */
MOECL_WUR enum moecl_status moecl_conversation_render(const struct moecl_conversation *conv,
                                                      const struct moecl_tokenizer *tok, int flags,
                                                      int32_t **ids_out, size_t *n_out);

/* ------------------------------------------------------------------ harmony parser */

enum moecl_harmony_channel {
    MOECL_CHANNEL_NONE, /* no channel in the header (or not in a message) */
    MOECL_CHANNEL_ANALYSIS,
    MOECL_CHANNEL_COMMENTARY,
    MOECL_CHANNEL_FINAL,
    MOECL_CHANNEL_OTHER,
};

/* What one token did. Pointers live until the next push or the parser's release. */
struct moecl_harmony_event {
    enum moecl_harmony_channel channel; /* of the message the token belongs to */
    const char *text; /* new content text, whole UTF-8 sequences only ("" if none) */
    size_t text_len;
    const char *recipient; /* the message's recipient ("functions.x"), NULL if none */
    int message_start;     /* this token completed a header: a message's content begins */
    int message_end;       /* this token ended a message (<|end|>, <|return|>, <|call|>) */
    int stop;              /* a stop token: generation is over (see moecl_is_stop_token) */
};

/* A streaming parser of the model's output after the "<|start|>assistant" prompt: it starts in
 * an assistant header and follows harmony's grammar. It borrows `tok` (for token bytes). */
struct moecl_harmony_parser;

MOECL_WUR enum moecl_status moecl_harmony_parser_create(const struct moecl_tokenizer *tok,
                                                        struct moecl_harmony_parser **parser_out);
void moecl_harmony_parser_release(struct moecl_harmony_parser *parser);
/* Back to the start of a completion (a new "<|start|>assistant" prompt). */
void moecl_harmony_parser_reset(struct moecl_harmony_parser *parser);
MOECL_WUR enum moecl_status moecl_harmony_parser_push(struct moecl_harmony_parser *parser,
                                                      int32_t token,
                                                      struct moecl_harmony_event *event_out);
/* Ends the completion: flushes a partial UTF-8 sequence (as U+FFFD) into event_out. */
void moecl_harmony_parser_finish(struct moecl_harmony_parser *parser,
                                 struct moecl_harmony_event *event_out);
/* All content so far on a channel (analysis, commentary or final), NUL-terminated. */
const char *moecl_harmony_parser_text(const struct moecl_harmony_parser *parser,
                                      enum moecl_harmony_channel channel);
/* The latest tool call (a commentary or analysis message with a recipient): NULL if none. */
const char *moecl_harmony_parser_tool_name(const struct moecl_harmony_parser *parser);
const char *moecl_harmony_parser_tool_args(const struct moecl_harmony_parser *parser);

/* The default stop tokens (generation_config.json of gpt-oss): <|return|> 200002,
 * <|endoftext|> 199999, <|call|> 200012. <|end|> 200007 is never a stop token. */
int moecl_is_stop_token(int32_t token);

/* The stop tokens for the checkpoint in `dir`: generation_config.json's eos_token_id (a number or
 * a list; config.json's as a fallback) united with the defaults above, minus <|end|>. Writes at
 * most `cap` ids; *n_out is the count written. A missing file gives just the defaults. */
MOECL_WUR enum moecl_status moecl_stop_tokens_load(const char *dir, int32_t *ids, int cap,
                                                   int *n_out);

/* ------------------------------------------------------------------ tokenizer */

/* gpt-oss's o200k_harmony tokenizer: byte-level BPE by ranks with the o200k pre-tokenizer,
 * giving the same ids as Hugging Face tokenizers (gpt-oss tokenizer.json) and tiktoken.
 * Immutable once loaded: one tokenizer may be used from several threads at once.
 *
 * Text is UTF-8. Invalid UTF-8 input is not an error: each maximal invalid subsequence is
 * replaced by U+FFFD first (the Unicode "maximal subpart" rule, as Python's
 * bytes.decode("utf-8", "replace") does), so encode(bytes) == reference(bytes decoded with
 * replacement). Pass MOECL_ENCODE_STRICT_UTF8 to get MOECL_ERR_INVALID_ARG instead. */
struct moecl_tokenizer;

/* Loads from `path`: a checkpoint directory (reads DIR/tokenizer.json), a tokenizer.json file,
 * or a .tiktoken rank file (o200k_base; the o200k_harmony special tokens are added). Ids cover
 * 0..vocab_size-1 (201088 for gpt-oss): 0..199997 BPE tokens, then the special tokens. */
MOECL_WUR enum moecl_status moecl_tokenizer_load(const char *path,
                                                 struct moecl_tokenizer **tokenizer_out);
void moecl_tokenizer_release(struct moecl_tokenizer *tokenizer);

enum moecl_encode_flags {
    /* Recognise the added special tokens' text (e.g. "<|start|>") anywhere in the input, as HF
     * tokenizers does by default; without it that text is encoded as ordinary text. */
    MOECL_ENCODE_ALLOW_SPECIAL = 1u << 0,
    /* Fail on invalid UTF-8 instead of replacing it with U+FFFD. */
    MOECL_ENCODE_STRICT_UTF8 = 1u << 1,
};

/* Encodes n_bytes of text (no NUL needed; adds no BOS/EOS; at most 1 GiB per call). *ids_out is
 * malloc'd (free() it; NULL when *n_ids_out is 0). */
MOECL_WUR enum moecl_status moecl_tokenizer_encode(const struct moecl_tokenizer *tokenizer,
                                                   const char *text, size_t n_bytes, unsigned flags,
                                                   int32_t **ids_out, size_t *n_ids_out);

/* The o200k pre-tokenizer alone (no special tokens, no BPE): splits n_bytes of UTF-8 text into
 * the pieces the regex would match and returns each piece's end offset in bytes.
 * *ends_out is malloc'd (free() it). Invalid UTF-8: MOECL_ERR_INVALID_ARG. For debugging and
 * the exactness checks. */
MOECL_WUR enum moecl_status moecl_tokenizer_pretokenize(const char *text, size_t n_bytes,
                                                        size_t **ends_out, size_t *n_pieces_out);

/* Concatenates the ids' bytes (special tokens as their text). The result may be invalid UTF-8
 * when the ids split a character; use the stream decoder for display. *text_out is malloc'd
 * (free() it) and NUL-terminated; *n_bytes_out excludes the NUL. Unknown ids:
 * MOECL_ERR_INVALID_ARG. */
MOECL_WUR enum moecl_status moecl_tokenizer_decode(const struct moecl_tokenizer *tokenizer,
                                                   const int32_t *ids, size_t n_ids,
                                                   char **text_out, size_t *n_bytes_out);

/* The bytes of one id (NUL-terminated; *n_bytes_out gets the length, which matters because a
 * token may contain a NUL byte). Borrowed: lives as long as the tokenizer. NULL for an id out
 * of range. */
const char *moecl_tokenizer_token_text(const struct moecl_tokenizer *tokenizer, int32_t id,
                                       size_t *n_bytes_out);

/* The id of a special token by its text ("<|return|>"), or -1. Ids 200019.. have tiktoken's
 * names ("<|reserved_200500|>"); 200018 answers to both "<|endofprompt|>" and tiktoken's
 * "<|reserved_200018|>". */
int32_t moecl_tokenizer_special_id(const struct moecl_tokenizer *tokenizer, const char *name);

/* 1 if id is a special token (id >= the BPE vocab), else 0. */
int moecl_tokenizer_is_special(const struct moecl_tokenizer *tokenizer, int32_t id);

/* Writes a gpt-oss tokenizer.json made from an o200k_base .tiktoken rank file plus the
 * o200k_harmony special tokens: byte-identical to what transformers' converter + HF tokenizers
 * save, and so to the tokenizer.json openai/gpt-oss-20b publishes (see loader/tokenizer_json.h).
 * Replaces out_path atomically (writes out_path.tmp, then renames). */
MOECL_WUR enum moecl_status moecl_tokenizer_write_json(const char *tiktoken_path,
                                                       const char *out_path);

/* Number of ids (201088 for gpt-oss). */
int32_t moecl_tokenizer_vocab_size(const struct moecl_tokenizer *tokenizer);

/* Streaming decoder: push ids one at a time and get the text that is ready to print, always
 * whole UTF-8 characters. Bytes of an incomplete character wait for the next id; invalid
 * sequences come out as U+FFFD (as HF's decode does), so the concatenated output of a whole
 * stream (with the final flush) equals HF tokenizers' decode of the ids. Borrows the tokenizer,
 * which must outlive it. One stream per thread. */
struct moecl_tokenizer_stream;

MOECL_WUR enum moecl_status
moecl_tokenizer_stream_create(const struct moecl_tokenizer *tokenizer,
                              struct moecl_tokenizer_stream **stream_out);
/* *text_out (NUL-terminated, *n_bytes_out bytes, possibly 0) is owned by the stream and valid
 * until the next push/flush/release. Unknown id: MOECL_ERR_INVALID_ARG, stream unchanged. */
MOECL_WUR enum moecl_status moecl_tokenizer_stream_push(struct moecl_tokenizer_stream *stream,
                                                        int32_t id, const char **text_out,
                                                        size_t *n_bytes_out);
/* Ends the text: an incomplete character left over comes out as U+FFFD. The stream is then
 * empty and may be reused. Same ownership as push. */
MOECL_WUR enum moecl_status moecl_tokenizer_stream_flush(struct moecl_tokenizer_stream *stream,
                                                         const char **text_out,
                                                         size_t *n_bytes_out);
void moecl_tokenizer_stream_release(struct moecl_tokenizer_stream *stream);

/* ------------------------------------------------------------------ models and contexts */

/* A loaded gpt-oss checkpoint on one OpenCL device. It owns the checkpoint's mappings, the
 * device's view of every weight (zero-copy buffers on a host-unified device such as PoCL's
 * CPU device, one upload on a discrete GPU) and the compiled programs. Contexts borrow it. */
struct moecl_model;

/* An evaluation state (KV cache, activations) on a model. */
struct moecl_context;

enum moecl_numerics { MOECL_NUMERICS_DEFAULT = 0, MOECL_NUMERICS_EXACT, MOECL_NUMERICS_FAST };

/* "exact" or "fast" into *out; MOECL_ERR_INVALID_ARG naming `what` for anything else. */
MOECL_WUR enum moecl_status moecl_numerics_parse(const char *s, const char *what,
                                                 enum moecl_numerics *out);

struct moecl_model_options {
    /* Device spec as moecl_device_resolve() accepts it ("cpu", "gpu", "pocl:1", "2"); NULL or
     * "" picks the first GPU, else the first CPU device. */
    const char *device;
    /* Numerics of quantized matrix products in bf16/f16 models. 0 (default): accumulate in
     * float32 along each row and round the result once (MLX's Metal kernels; what the
     * reference fixtures use). 1: round every product and partial sum to the activation
     * dtype, bit-compatible with mlx-lm on MLX's CPU backend (less accurate). */
    int mlx_cpu_rounding;
    /* Where each part runs, applied after `device` (which acts as "all=DEV"): a spec as
     * `moecl --place` takes it, e.g. "attn=gpu,experts=cpu", "experts[0-11]=pocl:1",
     * "embed=cpu,lm_head=nvidia:0" (keys all, attn, attn[A-B], experts, experts[A-B], embed,
     * lm_head; devices as moecl_device_resolve() accepts them). NULL or "": none. */
    const char *place;
    /* llama.cpp's shorthands, applied after `place`: N > 0 puts the experts of the first N
     * layers on the first CPU device (--n-cpu-moe N), N < 0 those of every layer (--cpu-moe),
     * 0 nothing. */
    int n_cpu_moe;
    /* Order of the sums in quantized matrix products. MOECL_NUMERICS_DEFAULT: $MOECL_NUMERICS
     * ("exact" or "fast") if set, else exact. EXACT: each output row is one float32 sum in the
     * reference's element order, without contraction: bit-identical to mlx-lm. FAST: partial
     * sums in any order, fused multiply-adds, the affine bias folded per group (as MLX's Metal
     * kernels and llama.cpp do): faster, within a few float32 ulps of the row's magnitude of
     * exact, but not bit-identical. Formats without a fast kernel stay exact. */
    enum moecl_numerics numerics;
};

/* Loads the checkpoint folder `dir` (every format the loader reads) onto a device. options
 * may be NULL (defaults). Errors: the loader's (IO, FORMAT, SHAPE, UNSUPPORTED), NO_DEVICE /
 * NOT_FOUND for the device, BUILD for a kernel build failure, DEVICE_MEMORY when a tensor
 * exceeds the device's allocation limit, CL. The model is the caller's to release. */
MOECL_WUR enum moecl_status moecl_model_load(const char *dir,
                                             const struct moecl_model_options *options,
                                             struct moecl_model **model_out);

/* Releases the model. Every context created from it must be released first. NULL-safe. */
void moecl_model_release(struct moecl_model *model);

/* Vocabulary size (the length of a logits row). */
int moecl_model_vocab_size(const struct moecl_model *model);

/* The device the model runs on, the attention device of layer 0 when it uses several (a pointer
 * into the model, valid until its release). */
const struct moecl_device_info *moecl_model_device(const struct moecl_model *model);

/* The placement in force, e.g. "embed=pocl:0 attn=pocl:0 experts[0-11]=pocl:1
 * experts[12-23]=pocl:0 lm_head=pocl:0" (the model's string, valid until its release). */
const char *moecl_model_placement(const struct moecl_model *model);

/* The numerics of the model's quantized matrix products: "exact" or "fast". */
const char *moecl_model_numerics(const struct moecl_model *model);

/* How the KV cache stores keys and values: float32, or float16 (half the bytes; stored with
 * vstore_half and read with vload_half, all arithmetic stays float32). */
enum moecl_kv_type {
    MOECL_KV_F32 = 0,
    MOECL_KV_F16 = 1,
};

/* Bytes per KV element (4 or 2); "f32" or "f16" ("?" out of range); parse "f32"/"f16"
 * (also "float32"/"float16"), INVALID_ARG naming the text otherwise. */
size_t moecl_kv_type_size(enum moecl_kv_type t);
const char *moecl_kv_type_name(enum moecl_kv_type t);
MOECL_WUR enum moecl_status moecl_kv_type_parse(const char *text, enum moecl_kv_type *type_out);

struct moecl_context_options {
    int prefill_chunk; /* tokens per prefill step; <= 0: 512 */
    /* > 0: full-attention layers keep only the last max_kv_size positions in a ring, like
     * mlx-lm's RotatingKVCache (the context may then run past n_ctx); 0: they keep n_ctx. */
    int max_kv_size;
    /* 1: keep logits of every position of a step (needed by moecl_context_eval_all; costs
     * prefill_chunk * vocab floats of device memory); 0: only the last position's. */
    int all_logits;
    /* Storage of the KV cache (default MOECL_KV_F32). */
    enum moecl_kv_type kv_type;
    /* > 0: prefill pipelined in micro-batches of this many tokens across the attention and
     * expert devices (the attention device works on micro-batch j + 1 while the expert device
     * works on j). Applies when every layer's attention is on one device, some layer's experts
     * on another and a prefill step holds two micro-batches or more; otherwise, and with 0,
     * each prefill step runs whole. Costs ceil(prefill_chunk / micro_batch) sets of
     * micro-batch buffers (about prefill_chunk * (2 * hidden + 2 * top_k) * 4 bytes) on each
     * of those devices. $MOECL_MICRO_BATCH, when set, overrides it (tests). */
    int micro_batch;
};

/* An evaluation state on a model: the KV cache (full-attention layers hold n_ctx positions,
 * sliding-window layers a ring of the window) and every activation buffer, all allocated
 * here; evaluation allocates nothing. options may be NULL. The context borrows the model
 * (which must outlive it) and is the caller's to release. One thread at a time per context;
 * contexts of one model may run on different threads. */
MOECL_WUR enum moecl_status moecl_context_create(struct moecl_model *model, int n_ctx,
                                                 const struct moecl_context_options *options,
                                                 struct moecl_context **ctx_out);

/* Appends n tokens at the current position (prefill in chunks when n > 1) and computes the
 * logits of the last one, read with moecl_context_logits(). INVALID_ARG for a token outside
 * the vocabulary or a context that would pass n_ctx (without max_kv_size); the context is
 * unchanged then. On a device error the context must be reset. */
MOECL_WUR enum moecl_status moecl_context_eval(struct moecl_context *ctx, const int32_t *tokens,
                                               int n);

/* As moecl_context_eval, and writes the logits of every one of the n positions to
 * logits_out[n][vocab] (caller-owned). Needs the all_logits option. */
MOECL_WUR enum moecl_status moecl_context_eval_all(struct moecl_context *ctx, const int32_t *tokens,
                                                   int n, float *logits_out);

/* The last position's logits [vocab] after a successful eval; NULL before any. The array is
 * the context's and is overwritten by the next eval; valid until the context's release. */
const float *moecl_context_logits(const struct moecl_context *ctx);

/* Tokens evaluated so far (the next token's position). */
int moecl_context_n_past(const struct moecl_context *ctx);

/* Forgets every token: the next eval starts at position 0. */
void moecl_context_reset(struct moecl_context *ctx);

/* The message of this context's last failure ("" if none); valid until its next call. */
const char *moecl_context_last_error(const struct moecl_context *ctx);

/* NULL-safe. */
void moecl_context_release(struct moecl_context *ctx);

/* ------------------------------------------------------------------ default model */

/* The built-in default model's folder, written to buf (n bytes): a small gpt-oss checkpoint
 * (2 layers, hidden 192, 8 experts, MLX 4-bit) with the real o200k_harmony tokenizer and random
 * weights, so its output is noise. Made on first use by the checkpoint writer (the `mkmodel`
 * program next to the running executable, or $MOECL_MKMODEL; o200k_base.tiktoken from the
 * source tree's data/ or $MOECL_TIKTOKEN) and cached under $XDG_CACHE_HOME/moecl (default
 * ~/.cache/moecl). *created_out (may be NULL) is 1 when this call made it. */
MOECL_WUR enum moecl_status moecl_default_model_path(char *buf, size_t n, int *created_out);

/* ------------------------------------------------------------------ speed */

/* What a kernel launch of the forward pass is for (`moecl bench --profile`). */
enum moecl_op_class {
    MOECL_OPC_EMBED,     /* embedding rows */
    MOECL_OPC_NORM,      /* rms norms */
    MOECL_OPC_ATTN_PROJ, /* q, k, v, o products (with their biases) */
    MOECL_OPC_ROPE,      /* rotary embedding of q and k */
    MOECL_OPC_ATTENTION, /* attention with sinks, KV cache append */
    MOECL_OPC_ROUTER,    /* router product, top-k and softmax */
    MOECL_OPC_EXPERTS,   /* expert gate, up and down products */
    MOECL_OPC_SWIGLU,    /* clamped SwiGLU */
    MOECL_OPC_COMBINE,   /* weighted expert sum + residual, residual adds */
    MOECL_OPC_LM_HEAD,   /* output projection */
    MOECL_OPC_COUNT
};

/* "embed", "norm", "attn_proj", "rope", "attention", "router", "experts", "swiglu", "combine",
 * "lm_head" ("?" out of range). */
const char *moecl_op_class_id(enum moecl_op_class c);

/* Device time per op class accumulated over the evaluations since profiling was switched on
 * or reset. */
struct moecl_profile {
    double seconds[MOECL_OPC_COUNT];
    uint64_t launches[MOECL_OPC_COUNT];
};

/* on = 1: time every kernel launch of later evaluations with OpenCL profiling events, per op
 * class (costs a little host time per launch); 0: stop and drop the totals. */
MOECL_WUR enum moecl_status moecl_context_set_profile(struct moecl_context *ctx, int on);
/* *out = the totals; INVALID_ARG when profiling is off. */
MOECL_WUR enum moecl_status moecl_context_profile(const struct moecl_context *ctx,
                                                  struct moecl_profile *out);
/* Zeroes the totals (profiling stays on). */
void moecl_context_profile_reset(struct moecl_context *ctx);

/* Weight bytes one decoded token reads: every attention and router weight, the top-k experts'
 * share of every expert stack (k / n_experts of it), one embedding row, the whole lm_head,
 * norms, sinks and the biases used. The denominator of the bandwidth bound. */
struct moecl_token_bytes {
    uint64_t attn, router, experts, embed, lm_head, norms;
    uint64_t total;
    /* Multiply-adds of one token's matrix products: in the layers (attention projections,
     * router, top-k experts) and in the lm_head (prefill computes it for the last token only). */
    uint64_t macs_layers, macs_lm_head;
    /* The same bytes split by the device that reads them under the model's placement: the
     * devices (indices as moecl_devices_list gives them) and each one's bytes per token. The
     * devices take turns within a token, so the bound is the sum of bytes / bandwidth. */
    int n_devices;
    int device_index[8];
    uint64_t device_bytes[8];
};
/* Locks the checkpoint's mapped files in memory (mlock, like llama.cpp's --mlock), so that the
 * weights stay resident however the system reclaims page cache; *locked_bytes_out (may be
 * NULL) gets the bytes locked. Reads every page first. MOECL_ERR_IO naming the file and the
 * reason when the system refuses (RLIMIT_MEMLOCK). Unlocked when the model is released. */
MOECL_WUR enum moecl_status moecl_model_lock_weights(struct moecl_model *model,
                                                     uint64_t *locked_bytes_out);
MOECL_WUR enum moecl_status moecl_model_bytes_per_token(const struct moecl_model *model,
                                                        struct moecl_token_bytes *out);

/* ------------------------------------------------------------------ memory statistics */

/* What a byte of memory is for: the classes of the memory plan (footprint) and of the unified
 * memory manager's measured accounting; both count with these and only these. */
enum moecl_mem_class {
    MOECL_MEM_ATTN_WEIGHTS,   /* q, k, v, o projections (packed weights, scales, biases) */
    MOECL_MEM_EXPERT_WEIGHTS, /* gate, up, down of every expert (packed, scales, biases) */
    MOECL_MEM_EMBED,          /* token embedding */
    MOECL_MEM_LM_HEAD,        /* output projection */
    MOECL_MEM_ROUTER,         /* router weights */
    MOECL_MEM_NORMS_BIASES,   /* rms norms, attention sinks, linear biases */
    MOECL_MEM_KV_FULL,        /* KV cache of full-attention layers */
    MOECL_MEM_KV_SLIDING,     /* KV cache of sliding-window layers */
    MOECL_MEM_ACTIVATIONS,    /* per-step activation buffers */
    MOECL_MEM_SCRATCH,        /* hand-off staging, logits, tables */
    MOECL_MEM_PROGRAMS,       /* compiled program binaries */
    MOECL_MEM_N_CLASSES
};

/* "attention weights", "expert weights", ... ("?" for a value out of range). */
const char *moecl_mem_class_name(enum moecl_mem_class c);
/* A short identifier for tables and JSON: "attn", "experts", "embed", "lm_head", "router",
 * "norms", "kv_full", "kv_sliding", "act", "scratch", "programs". */
const char *moecl_mem_class_id(enum moecl_mem_class c);

struct moecl_memory_stats {
    uint64_t host_peak_rss_bytes; /* the process's peak resident set (getrusage) */
    uint64_t device_bytes;        /* weight_bytes + kv_bytes + act_bytes */
    uint64_t weight_bytes;        /* bytes of weight buffers on the device (views or copies) */
    uint64_t weight_copied_bytes; /* of which copied to device memory (0 when zero copy) */
    int weight_zero_copy;         /* 1: the weights are views of the host mapping */
    uint64_t kv_bytes, act_bytes; /* the context's KV cache and activation buffers */
};

#define MOECL_MAX_DEVICES 8

/* One device's memory by class: measured, every buffer the unified-memory manager made for the
 * device (weight views or mirrors, KV cache, activations, scratch; weight pieces include their
 * page alignment); planned, the memory plan's count for the same placement and context. */
struct moecl_memory_device {
    char name[64];     /* "pocl:0" */
    int zero_copy;     /* 1: weights and activations are views of host memory */
    int weight_pieces; /* weight buffers (pieces cut at max_alloc_bytes) */
    uint64_t measured[MOECL_MEM_N_CLASSES];
    uint64_t planned[MOECL_MEM_N_CLASSES];      /* the memory plan's (scheduler/memplan.h) */
    uint64_t global_mem_bytes, max_alloc_bytes; /* the device's (max_alloc after any stand-in) */
};

struct moecl_memory_report {
    char placement[512];
    int n_devices;
    struct moecl_memory_device devices[MOECL_MAX_DEVICES];
    int handoffs_per_step[2];   /* planned hand-offs per step: [0] event (same platform),
                                   [1] through host memory (across platforms) */
    uint64_t moved_bytes;       /* copied between devices (device -> host -> device) so far */
    uint64_t uploaded_bytes;    /* weight mirrors uploaded to discrete devices (once) */
    uint64_t n_tokens, n_steps; /* evaluated so far: moved_bytes / n_tokens per token */
    uint64_t host_rss_bytes, host_peak_rss_bytes;
    /* The mapped checkpoint files, and how much of them is in the page cache (mincore: pages
     * any process or an earlier run brought in; this process's share is in host_rss_bytes). */
    uint64_t checkpoint_bytes, checkpoint_resident_bytes;
    /* Host allocations of the activation, hand-off, KV and scratch buffers, by class (the
     * canonical copies that zero-copy views alias and host hand-offs go through; none for a
     * buffer only discrete devices use within one context). host_pinned_bytes of them are
     * pinned memory (mapped CL_MEM_ALLOC_HOST_PTR buffers of a discrete device's context,
     * or of any device with $MOECL_PIN_HOST=1): host memory, in no device's measured bytes. */
    uint64_t host_buffer_bytes[MOECL_MEM_N_CLASSES];
    uint64_t host_pinned_bytes;
};

/* Fills *report for a context and its model. */
MOECL_WUR enum moecl_status moecl_context_memory_report(const struct moecl_context *ctx,
                                                        struct moecl_memory_report *report_out);

/* The process's peak resident set in bytes (0 if unknown). */
uint64_t moecl_host_peak_rss_bytes(void);
/* The process's current resident set (/proc/self/statm), 0 if unknown. */
uint64_t moecl_host_rss_bytes(void);

/* Memory held for a context and its model on their device, and the host peak. */
MOECL_WUR enum moecl_status moecl_context_memory(const struct moecl_context *ctx,
                                                 struct moecl_memory_stats *stats_out);

/* ------------------------------------------------------------------ evaluation: perplexity, KL */

/* Perplexity windows over a token sequence (`moecl perplexity --ctx --stride`). Window k holds
 * the tokens [k*stride, k*stride + ctx) and is evaluated from an empty context; only whole
 * windows are used (a tail shorter than one is not scored). Each window scores, as next-token
 * predictions from its own earlier tokens, the targets that no earlier window scored, never its
 * own first token (it has no context for it):
 *   stride == ctx: targets start+1 .. start+ctx-1 of every window (mlx_lm.perplexity's chunks:
 *     logits of tokens[:-1] against tokens[1:]); the window = stride = 4096 method of the cards;
 *   stride < ctx: window 0 scores 1..ctx-1, every later one its last `stride` tokens, each with
 *     at least ctx-stride tokens of context (llama.cpp's --ppl-stride, Hugging Face's sliding
 *     window), so every token but the first is scored exactly once.
 * No BOS is inserted (gpt-oss's tokenizer adds none). */
struct moecl_ppl_window {
    int64_t start;        /* first token of the window */
    int64_t first_target; /* first token it scores */
    int64_t end;          /* one past its last token: start + ctx */
};

/* Windows and scored targets of n_tokens. INVALID_ARG (naming --ctx/--stride) for ctx < 2,
 * stride < 1, stride > ctx, or fewer than ctx tokens. */
MOECL_WUR enum moecl_status moecl_ppl_plan(int64_t n_tokens, int ctx, int stride,
                                           int64_t *n_windows_out, int64_t *n_scored_out);
/* Window k (0 <= k < n_windows). */
void moecl_ppl_window_at(int ctx, int stride, int64_t k, struct moecl_ppl_window *window_out);
/* The token position that scored row `row` predicts (rows count the scored targets in order). */
int64_t moecl_ppl_row_target(int ctx, int stride, int64_t row);

/* log(sum(exp(logits[0..n)))) in double precision around the maximum (no overflow); the
 * natural-log softmax of logit l is l - this. -inf for n <= 0. */
double moecl_log_sum_exp(const float *logits, int n);

/* Running statistics of per-token negative log-likelihoods (Welford; zero-initialise). */
struct moecl_nll_stats {
    int64_t n;
    double mean, m2;
};
void moecl_nll_stats_add(struct moecl_nll_stats *stats, double nll);

/* Perplexity with its standard error, as mlx_lm.perplexity and llama.cpp report it:
 * mean_nll_se = sample standard deviation (n-1) / sqrt(n); ppl = exp(mean_nll);
 * ppl_se = ppl * mean_nll_se (delta method). Standard errors are 0 when n < 2. */
struct moecl_ppl_result {
    int64_t n;
    double mean_nll, mean_nll_se, ppl, ppl_se;
};
void moecl_nll_stats_result(const struct moecl_nll_stats *stats, struct moecl_ppl_result *out);

/* The `fraction` quantile (0..1) of n ascending values, interpolating linearly between the two
 * nearest ranks (numpy's default, llama.cpp's KL percentiles). NaN for n == 0. */
double moecl_percentile(const double *sorted, int64_t n, double fraction);

/* Saved log-probabilities (`--save-logits`), one file per reference run. Little-endian:
 *   header, 64 bytes: magic "MOECL-LP", u32 version (1), u32 flags (bit 0: full rows; others 0),
 *     u32 n_vocab, u32 top_k (0 with full rows), u32 ctx, u32 stride, u64 n_tokens, u64 n_rows
 *     (= the scored targets of moecl_ppl_plan), 16 zero bytes;
 *   i32 tokens[n_tokens]: the evaluated token ids (a comparison with other tokens is refused);
 *   n_rows rows in target order (moecl_ppl_row_target), each
 *     top-K: f32 log p(target); u32 ids[K]; f32 log p(ids[i])[K], descending (ties: lower id
 *            first); f32 log of the remaining probability mass (-inf when nothing remains);
 *     full:  f32 log p(v) for every v < n_vocab.
 * Log-probabilities are natural-log softmax values computed in double and stored as f32. */
#define MOECL_LOGITS_MAGIC "MOECL-LP"
#define MOECL_LOGITS_VERSION 1
#define MOECL_LOGITS_HEADER_BYTES 64

struct moecl_logits_info {
    int version;
    int n_vocab;
    int top_k; /* 0: full rows */
    int ctx, stride;
    int64_t n_tokens, n_rows;
    const int32_t *tokens; /* n_tokens ids; owned by the file object */
};

/* Writes a logits file: rows are added in target order; the file appears at `path` only when
 * moecl_logits_writer_finish succeeds (it is written to path.tmp and renamed). top_k 0 writes
 * full rows; top_k >= n_vocab is refused (use full rows). The tokens are copied. */
struct moecl_logits_writer;
MOECL_WUR enum moecl_status moecl_logits_writer_create(const char *path, int n_vocab,
                                                       const int32_t *tokens, int64_t n_tokens,
                                                       int ctx, int stride, int top_k,
                                                       struct moecl_logits_writer **writer_out);
/* Adds the next row from a row of raw logits [n_vocab] (its target is the next scored one). */
MOECL_WUR enum moecl_status moecl_logits_writer_add(struct moecl_logits_writer *writer,
                                                    const float *logits);
/* Checks that every row was added, flushes and renames into place. */
MOECL_WUR enum moecl_status moecl_logits_writer_finish(struct moecl_logits_writer *writer);
/* NULL-safe; an unfinished file is removed. */
void moecl_logits_writer_release(struct moecl_logits_writer *writer);

/* A saved logits file opened for comparison. Opening validates the header, the token ids and
 * the exact file size (a truncated or padded file is refused); rows are validated as they are
 * read. */
struct moecl_logits_file;
MOECL_WUR enum moecl_status moecl_logits_file_open(const char *path,
                                                   struct moecl_logits_file **file_out);
void moecl_logits_file_release(struct moecl_logits_file *file);
/* Valid until the file's release. */
const struct moecl_logits_info *moecl_logits_file_info(const struct moecl_logits_file *file);

/* Refuses (INVALID_ARG, naming the file and what differs) a comparison run whose vocabulary,
 * tokens (count, or the first differing position and both ids), ctx or stride differ. */
MOECL_WUR enum moecl_status moecl_logits_file_check(const struct moecl_logits_file *file,
                                                    int n_vocab, const int32_t *tokens,
                                                    int64_t n_tokens, int ctx, int stride);

/* One scored position compared with the saved reference P:
 * kl = KL(P || Q) in nats. Full rows: the exact sum over the vocabulary. Top-K rows: over the
 * K saved tokens plus one bucket for the rest, sum_{i in K} p_i log(p_i/q_i) + p_r log(p_r/q_r)
 * with p_r, q_r the mass outside those K tokens; merging tokens can only lower KL, so this is a
 * lower bound of the exact value, equal to it when the rest holds no mass.
 * Q's values are rounded to f32 exactly as saved ones are, so a run against its own file gives
 * exactly 0; where P and Q nearly agree, rounding can make kl a tiny negative number (~1e-7),
 * which is returned as is. same_top: P's and Q's most likely tokens agree (lowest id on ties). */
struct moecl_kl_row {
    double kl;
    double nll_ref, nll; /* -log p(target), -log q(target) */
    int same_top;
};
/* Compares row `row` with Q's raw logits [n_vocab]. FORMAT (naming the file and row) for a row
 * that is not a distribution; IO on a read failure. */
MOECL_WUR enum moecl_status moecl_logits_file_compare(struct moecl_logits_file *file, int64_t row,
                                                      const float *logits, int n_vocab,
                                                      struct moecl_kl_row *out);

/* What `moecl perplexity --kl-divergence` reports (llama.cpp's statistics): */
struct moecl_kl_summary {
    int64_t n;
    double kl_mean, kl_mean_se, kl_median, kl_p99, kl_p999, kl_max;
    double same_top, same_top_se; /* fraction, binomial standard error */
    struct moecl_ppl_result ref, ppl;
    double ppl_ratio, ppl_ratio_se; /* exp(mean(nll - nll_ref)), delta-method error from the
                                       per-token differences */
};
MOECL_WUR enum moecl_status moecl_kl_summarize(const struct moecl_kl_row *rows, int64_t n,
                                               struct moecl_kl_summary *out);

/* ------------------------------------------------------------------ memory footprint */

/* A model described for memory planning: every weight byte classified (scheduler/memplan.h),
 * from a checkpoint folder (headers only: no weight byte is read) or from a writer preset
 * without any file. Also holds this machine's device list. */
struct moecl_footprint_model;

/* Opens `dir` (a checkpoint folder) or, with dir NULL, the full-size gpt-oss-20b shape written
 * with preset `like` ("mlx-4bit", ...; see tools/mkmodel.md). Errors: the loader's for dir,
 * INVALID_ARG naming an unknown preset, NO_DEVICE without any OpenCL device. */
MOECL_WUR enum moecl_status moecl_footprint_model_open(const char *dir, const char *like,
                                                       struct moecl_footprint_model **model_out);
void moecl_footprint_model_release(struct moecl_footprint_model *model);

/* Adds a hypothetical device to plan for ("would an 8 GB GPU hold the attention?"): a GPU
 * named "virtual:N" (N counts the added ones) with global_mem_bytes of its own memory (not
 * host-unified) and a largest buffer of max_alloc_bytes (0: a quarter of its memory, as
 * NVIDIA's OpenCL reports). Placements then name it "virtual:0", or "gpu" when no real GPU
 * comes first. */
MOECL_WUR enum moecl_status moecl_footprint_model_add_gpu(struct moecl_footprint_model *model,
                                                          uint64_t global_mem_bytes,
                                                          uint64_t max_alloc_bytes);

/* What to plan for. */
struct moecl_footprint_options {
    const char *place; /* placement spec (scheduler/placement.h); NULL/"": the default device */
    int n_cpu_moe;     /* >= 0: experts of the first N layers on the CPU device (--n-cpu-moe);
                          -2: all of them (--cpu-moe); -1: off */
    int n_ctx;         /* context length (> 0) */
    int prefill_chunk; /* tokens per prefill step (<= 0: 512) */
    int micro_batch;   /* tokens per micro-batch on the expert device (<= 0: the chunk) */
    int max_kv_size;   /* rotating window of full layers (0: off) */
    int all_logits;
    enum moecl_kv_type kv_type;
    uint64_t host_memory_bytes; /* 0: this machine's physical memory */
};

/* Defaults: placement default, n_cpu_moe -1, n_ctx 4096, f32 KV. */
void moecl_footprint_options_init(struct moecl_footprint_options *o);

#define MOECL_FOOTPRINT_MAX_ROWS 17

/* One device's (or the host's) planned bytes. */
struct moecl_footprint_row {
    char name[64];         /* "pocl:0", ... or "host" */
    char device_name[256]; /* the device's own name, or "host memory" */
    int is_host, host_unified;
    uint64_t bytes[MOECL_MEM_N_CLASSES];
    uint64_t total, capacity, max_alloc; /* capacity 0: unknown */
    uint64_t owned;   /* what the device allocates itself (a host-unified device's weights are
                         views of host memory and count against the host only) */
    int64_t left;     /* capacity - owned */
    uint64_t largest; /* the largest single buffer it holds */
    char largest_what[96];
    int fits;
};

struct moecl_footprint {
    char model[256];     /* folder or "like:<preset>" */
    char placement[512]; /* as moecl_placement_describe writes it */
    int n_ctx, chunk, max_kv_size;
    enum moecl_kv_type kv_type;
    uint64_t stored_bytes; /* the checkpoint's tensor bytes (disk size) */
    int n_rows;            /* devices used, then the host row */
    struct moecl_footprint_row rows[MOECL_FOOTPRINT_MAX_ROWS];
    int fits;
    char reason[1024]; /* why not, naming device, classes and numbers */
};

/* Plans `model` for `options`. A plan that does not fit is MOECL_OK with fits 0 and the
 * reason; INVALID_ARG / PLACEMENT for bad options (the message names the option). */
MOECL_WUR enum moecl_status moecl_footprint_plan(const struct moecl_footprint_model *model,
                                                 const struct moecl_footprint_options *options,
                                                 struct moecl_footprint *plan_out);

#define MOECL_FOOTPRINT_JSON 1u

/* Writes the plan as a table (per class and device: bytes, capacity, left, verdict) or, with
 * MOECL_FOOTPRINT_JSON, as one JSON object. */
void moecl_footprint_write(const struct moecl_footprint *plan, unsigned flags, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
