/* moecl harmony: render a conversation (JSON, Hugging Face message style) in the harmony format,
 * as text or token ids. tests/reference/harmony_check.py compares it with openai-harmony and
 * a jinja2 rendering of the chat template. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: moecl harmony [--tokenizer PATH] [--text] [--package] [FILE]\n"
        "\n"
        "Renders the conversation in FILE (or stdin) and prints its token ids as a JSON\n"
        "array (or the text with --text). The conversation is a JSON object:\n"
        "  {\"messages\": [{\"role\": \"system\"|\"developer\"|\"user\"|\"assistant\"|\"tool\",\n"
        "                 \"content\": \"...\", \"thinking\": \"...\",\n"
        "                 \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": "
        "\"{...}\"}}]}],\n"
        "   \"reasoning_effort\": \"medium\", \"model_identity\": \"...\",\n"
        "   \"date\": \"YYYY-MM-DD\", \"add_generation_prompt\": true}\n"
        "A leading system or developer message becomes the developer instructions; tool-call\n"
        "arguments are JSON text, rendered as given.\n"
        "\n"
        "  --tokenizer PATH   checkpoint folder, tokenizer.json or .tiktoken (default\n"
        "                     data/o200k_base.tiktoken)\n"
        "  --text             print the rendered text instead of ids\n"
        "  --package          follow openai-harmony where it differs from the chat template\n");
}

static char *read_all(FILE *f) {
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 1024) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = 0;
    return buf;
}

static const char *str_field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fills the conversation from the JSON document; returns a status (message set by the API or
 * printed here as INVALID_ARG). */
static int build(const cJSON *root, struct moecl_conversation *c, int *flags) {
    enum moecl_status st = MOECL_OK;
    const char *s;
    if ((s = str_field(root, "reasoning_effort"))) {
        enum moecl_reasoning_effort e;
        if ((st = moecl_reasoning_effort_parse(s, &e)) != MOECL_OK)
            return moecl_cli_fail("reasoning_effort", st);
        moecl_conversation_set_reasoning(c, e);
    }
    if ((s = str_field(root, "model_identity")) &&
        (st = moecl_conversation_set_identity(c, s)) != MOECL_OK)
        return moecl_cli_fail("model_identity", st);
    if ((s = str_field(root, "date")) && (st = moecl_conversation_set_date(c, s)) != MOECL_OK)
        return moecl_cli_fail("date", st);
    const cJSON *agp = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
    if (!agp || cJSON_IsTrue(agp))
        *flags |= MOECL_RENDER_GENERATION_PROMPT;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(msgs)) {
        fprintf(stderr, "moecl: error: the conversation has no \"messages\" array\n");
        return 1;
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const char *role = str_field(m, "role"), *content = str_field(m, "content");
        const char *thinking = str_field(m, "thinking");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (!role) {
            fprintf(stderr, "moecl: error: message %d has no role\n", i);
            return 1;
        }
        if (i == 0 && (!strcmp(role, "system") || !strcmp(role, "developer"))) {
            st = moecl_conversation_set_instructions(c, content);
        } else if (!strcmp(role, "user")) {
            st = moecl_conversation_add_user(c, content ? content : "");
        } else if (!strcmp(role, "assistant") && cJSON_IsArray(calls) &&
                   cJSON_GetArraySize(calls) > 0) {
            const cJSON *call = cJSON_GetArrayItem(calls, 0);
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            if (fn)
                call = fn;
            const char *name = str_field(call, "name"), *args = str_field(call, "arguments");
            st = moecl_conversation_add_tool_call(c, thinking ? thinking : content, name,
                                                  args ? args : "{}");
        } else if (!strcmp(role, "assistant")) {
            st = moecl_conversation_add_assistant(c, thinking, content ? content : "");
        } else if (!strcmp(role, "tool")) {
            st = moecl_conversation_add_tool_result(c, content ? content : "");
        } else {
            fprintf(stderr, "moecl: error: message %d: unknown role '%s'\n", i, role);
            return 1;
        }
        if (st != MOECL_OK)
            return moecl_cli_fail("conversation", st);
        i++;
    }
    return 0;
}

MOECL_COMMAND(harmony, "render a JSON conversation in the harmony format (ids or text)") {
    const char *tok_path = "data/o200k_base.tiktoken", *file = NULL;
    int text = 0, flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--text")) {
            text = 1;
        } else if (!strcmp(a, "--package")) {
            flags |= MOECL_RENDER_HARMONY_PACKAGE;
        } else if (!strcmp(a, "--tokenizer") && i + 1 < argc) {
            tok_path = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "moecl: error: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (!file) {
            file = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    FILE *f = file && strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "moecl: error: %s: cannot open\n", file);
        return 1;
    }
    char *doc = read_all(f);
    if (f != stdin)
        fclose(f);
    cJSON *root = doc ? cJSON_Parse(doc) : NULL;
    free(doc);
    if (!cJSON_IsObject(root)) {
        fprintf(stderr, "moecl: error: %s: not a JSON object\n", file ? file : "stdin");
        cJSON_Delete(root);
        return 1;
    }
    struct moecl_conversation *c = NULL;
    enum moecl_status st = moecl_conversation_create(&c);
    if (st != MOECL_OK) {
        cJSON_Delete(root);
        return moecl_cli_fail("conversation", st);
    }
    int rc = build(root, c, &flags);
    cJSON_Delete(root);
    if (rc == 0 && text) {
        char *out = NULL;
        size_t len = 0;
        st = moecl_conversation_render_text(c, flags, &out, &len);
        if (st == MOECL_OK)
            fwrite(out, 1, len, stdout);
        else
            rc = moecl_cli_fail("render", st);
        free(out);
    } else if (rc == 0) {
        struct moecl_tokenizer *tok = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        st = moecl_tokenizer_load(tok_path, &tok);
        if (st == MOECL_OK)
            st = moecl_conversation_render(c, tok, flags, &ids, &n);
        if (st == MOECL_OK) {
            fputc('[', stdout);
            for (size_t i = 0; i < n; i++)
                printf(i ? ", %d" : "%d", (int)ids[i]);
            fputs("]\n", stdout);
        } else {
            rc = moecl_cli_fail(tok_path, st);
        }
        free(ids);
        moecl_tokenizer_release(tok);
    }
    moecl_conversation_release(c);
    return rc;
}
