/* The harmony chat format: conversations, their rendering (chat-template and openai-harmony
 * flavours), the completion parser and the stop tokens.
 *
 * Rendering builds harmony messages from the turns, then writes each message as
 *   <|start|>HEADER[<|channel|>CHANNEL]<|message|>CONTENT END
 * where HEADER is the role (plus " to=recipient"), CHANNEL may carry a content type, and END is
 * <|end|>, <|return|> or <|call|>. The quirks (spec §4.4) live in conv_messages(). */
#include "harmony.h"

#include "moecl_error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ================================================================== conversation */

enum turn_kind { TURN_USER, TURN_ASSISTANT, TURN_TOOL_CALL, TURN_TOOL_RESULT };

struct turn {
    enum turn_kind kind;
    char *thinking; /* assistant / tool call: analysis text, NULL if absent */
    char *content;  /* user text, final answer, tool-call arguments, tool result */
    char *name;     /* tool call: function name */
};

struct moecl_conversation {
    char *identity;
    char date[16];
    int date_set;
    enum moecl_reasoning_effort effort;
    char *instructions;
    struct turn *turns;
    int n_turns, cap_turns;
};

static const char default_identity[] = "You are ChatGPT, a large language model trained by OpenAI.";

const char *moecl_reasoning_effort_str(enum moecl_reasoning_effort effort) {
    switch (effort) {
    case MOECL_REASONING_LOW:
        return "low";
    case MOECL_REASONING_HIGH:
        return "high";
    case MOECL_REASONING_MEDIUM:
    default:
        return "medium";
    }
}

enum moecl_status moecl_reasoning_effort_parse(const char *s,
                                               enum moecl_reasoning_effort *effort_out) {
    *effort_out = MOECL_REASONING_MEDIUM;
    if (s && strcmp(s, "low") == 0)
        *effort_out = MOECL_REASONING_LOW;
    else if (s && strcmp(s, "high") == 0)
        *effort_out = MOECL_REASONING_HIGH;
    else if (!s || strcmp(s, "medium") != 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "reasoning effort '%s': expected low, medium or high",
                               s ? s : "(null)");
    return MOECL_OK;
}

enum moecl_status moecl_conversation_create(struct moecl_conversation **conv_out) {
    *conv_out = NULL;
    struct moecl_conversation *c = calloc(1, sizeof *c);
    if (!c)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "conversation: out of memory");
    c->effort = MOECL_REASONING_MEDIUM;
    *conv_out = c;
    return MOECL_OK;
}

static void turn_free(struct turn *t) {
    free(t->thinking);
    free(t->content);
    free(t->name);
}

void moecl_conversation_clear(struct moecl_conversation *conv) {
    if (!conv)
        return;
    for (int i = 0; i < conv->n_turns; i++)
        turn_free(&conv->turns[i]);
    conv->n_turns = 0;
}

void moecl_conversation_release(struct moecl_conversation *conv) {
    if (!conv)
        return;
    moecl_conversation_clear(conv);
    free(conv->turns);
    free(conv->identity);
    free(conv->instructions);
    free(conv);
}

int moecl_conversation_n_turns(const struct moecl_conversation *conv) {
    return conv ? conv->n_turns : 0;
}

/* Replaces *dst with a copy of src (NULL stays NULL). */
static enum moecl_status set_str(char **dst, const char *src) {
    char *copy = NULL;
    if (src && !(copy = strdup(src)))
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "conversation: out of memory");
    free(*dst);
    *dst = copy;
    return MOECL_OK;
}

enum moecl_status moecl_conversation_set_identity(struct moecl_conversation *conv,
                                                  const char *identity) {
    return set_str(&conv->identity, identity);
}

enum moecl_status moecl_conversation_set_date(struct moecl_conversation *conv, const char *date) {
    if (!date) {
        conv->date_set = 0;
        return MOECL_OK;
    }
    int ok = strlen(date) == 10 && date[4] == '-' && date[7] == '-';
    for (int i = 0; ok && i < 10; i++)
        if (i != 4 && i != 7 && (date[i] < '0' || date[i] > '9'))
            ok = 0;
    if (!ok)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "date '%s': expected YYYY-MM-DD", date);
    memcpy(conv->date, date, 11);
    conv->date_set = 1;
    return MOECL_OK;
}

void moecl_conversation_set_reasoning(struct moecl_conversation *conv,
                                      enum moecl_reasoning_effort effort) {
    conv->effort = effort;
}

enum moecl_status moecl_conversation_set_instructions(struct moecl_conversation *conv,
                                                      const char *instructions) {
    return set_str(&conv->instructions, instructions && *instructions ? instructions : NULL);
}

static enum moecl_status refuse_channel_tags(const char *what, const char *s) {
    if (s &&
        (strstr(s, "<|channel|>analysis<|message|>") || strstr(s, "<|channel|>final<|message|>")))
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "assistant %s holds <|channel|> tags: pass the analysis as thinking "
                               "and the final answer as content",
                               what);
    return MOECL_OK;
}

static enum moecl_status add_turn(struct moecl_conversation *conv, enum turn_kind kind,
                                  const char *thinking, const char *content, const char *name) {
    if (!conv || !content)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "conversation: NULL content");
    if (conv->n_turns == conv->cap_turns) {
        int cap = conv->cap_turns ? 2 * conv->cap_turns : 8;
        struct turn *t = realloc(conv->turns, (size_t)cap * sizeof *t);
        if (!t)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "conversation: out of memory");
        conv->turns = t;
        conv->cap_turns = cap;
    }
    struct turn t = {kind, NULL, NULL, NULL};
    if (set_str(&t.thinking, thinking) || set_str(&t.content, content) || set_str(&t.name, name)) {
        turn_free(&t);
        return MOECL_ERR_NO_MEMORY;
    }
    conv->turns[conv->n_turns++] = t;
    return MOECL_OK;
}

enum moecl_status moecl_conversation_add_user(struct moecl_conversation *conv,
                                              const char *content) {
    return add_turn(conv, TURN_USER, NULL, content, NULL);
}

enum moecl_status moecl_conversation_add_assistant(struct moecl_conversation *conv,
                                                   const char *thinking, const char *content) {
    enum moecl_status st = refuse_channel_tags("content", content);
    if (st == MOECL_OK)
        st = refuse_channel_tags("thinking", thinking);
    return st != MOECL_OK ? st : add_turn(conv, TURN_ASSISTANT, thinking, content, NULL);
}

enum moecl_status moecl_conversation_add_tool_call(struct moecl_conversation *conv,
                                                   const char *thinking, const char *name,
                                                   const char *args_json) {
    if (!name || !*name)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "tool call: empty function name");
    enum moecl_status st = refuse_channel_tags("thinking", thinking);
    return st != MOECL_OK ? st : add_turn(conv, TURN_TOOL_CALL, thinking, args_json, name);
}

enum moecl_status moecl_conversation_add_tool_result(struct moecl_conversation *conv,
                                                     const char *content) {
    const char *name = NULL;
    for (int i = conv ? conv->n_turns - 1 : -1; i >= 0 && !name; i--)
        if (conv->turns[i].kind == TURN_TOOL_CALL)
            name = conv->turns[i].name;
    if (!name)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "tool result without an earlier assistant tool call");
    return add_turn(conv, TURN_TOOL_RESULT, NULL, content, name);
}

/* ================================================================== segments */

static enum moecl_status seg_push(struct moecl_harmony_segments *s, int32_t special,
                                  const char *text, size_t len) {
    if (special < 0 && len == 0)
        return MOECL_OK;
    /* Adjacent text runs merge: the template produces one string between specials. */
    if (special < 0 && s->n > 0 && s->seg[s->n - 1].special < 0) {
        /* fall through to append bytes to the last run */
    } else {
        if (s->n == s->cap) {
            int cap = s->cap ? 2 * s->cap : 64;
            struct moecl_harmony_segment *n = realloc(s->seg, (size_t)cap * sizeof *n);
            if (!n)
                return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
            s->seg = n;
            s->cap = cap;
        }
        s->seg[s->n++] = (struct moecl_harmony_segment){special, NULL, s->buf_len};
        s->seg[s->n - 1].len = 0;
        /* text of segment = buf + offset; offset kept in .text as an integer until finish */
        s->seg[s->n - 1].text = (const char *)(uintptr_t)s->buf_len;
        if (special >= 0)
            return MOECL_OK;
    }
    if (s->buf_len + len + 1 > s->buf_cap) {
        size_t cap = s->buf_cap ? s->buf_cap : 1024;
        while (cap < s->buf_len + len + 1)
            cap *= 2;
        char *n = realloc(s->buf, cap);
        if (!n)
            return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
        s->buf = n;
        s->buf_cap = cap;
    }
    memcpy(s->buf + s->buf_len, text, len);
    s->buf_len += len;
    s->buf[s->buf_len] = 0;
    s->seg[s->n - 1].len += len;
    return MOECL_OK;
}

static enum moecl_status seg_text(struct moecl_harmony_segments *s, const char *text) {
    return seg_push(s, -1, text, strlen(text));
}

static void seg_finish(struct moecl_harmony_segments *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->seg[i].special >= 0)
            s->seg[i].text = NULL;
        else
            s->seg[i].text = s->buf + (uintptr_t)s->seg[i].text;
    }
}

void moecl_harmony_segments_free(struct moecl_harmony_segments *s) {
    if (!s)
        return;
    free(s->seg);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

char *moecl_harmony_json_quote(const char *s) {
    size_t n = strlen(s), cap = 2 * n + 3, len = 0;
    char *out = malloc(6 * n + 3);
    if (!out)
        return NULL;
    (void)cap;
    out[len++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            memcpy(out + len, "\\\"", 2), len += 2;
            break;
        case '\\':
            memcpy(out + len, "\\\\", 2), len += 2;
            break;
        case '\n':
            memcpy(out + len, "\\n", 2), len += 2;
            break;
        case '\r':
            memcpy(out + len, "\\r", 2), len += 2;
            break;
        case '\t':
            memcpy(out + len, "\\t", 2), len += 2;
            break;
        case '\b':
            memcpy(out + len, "\\b", 2), len += 2;
            break;
        case '\f':
            memcpy(out + len, "\\f", 2), len += 2;
            break;
        default:
            if (*p < 0x20)
                len += (size_t)sprintf(out + len, "\\u%04x", *p);
            else
                out[len++] = (char)*p;
        }
    }
    out[len++] = '"';
    out[len] = 0;
    return out;
}

/* ================================================================== rendering */

/* One harmony message about to be written. */
struct hmsg {
    const char *header;  /* role part: "user", "assistant to=functions.x", ... */
    const char *channel; /* "final", "commentary json", ... or NULL */
    const char *content;
    int32_t end; /* <|end|>, <|return|>, <|call|> */
    int is_analysis, is_final, is_assistant;
    char *owned[2]; /* strings this message owns */
};

static enum moecl_status write_msg(struct moecl_harmony_segments *s, const struct hmsg *m) {
    enum moecl_status st = seg_push(s, MOECL_TOK_START, NULL, 0);
    if (!st)
        st = seg_text(s, m->header);
    if (!st && m->channel) {
        st = seg_push(s, MOECL_TOK_CHANNEL, NULL, 0);
        if (!st)
            st = seg_text(s, m->channel);
    }
    if (!st)
        st = seg_push(s, MOECL_TOK_MESSAGE, NULL, 0);
    if (!st)
        st = seg_text(s, m->content);
    if (!st)
        st = seg_push(s, m->end, NULL, 0);
    return st;
}

static void today(char out[16]) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

static enum moecl_status render_system(const struct moecl_conversation *c, int flags,
                                       struct moecl_harmony_segments *s) {
    char date[16];
    if (c->date_set)
        memcpy(date, c->date, sizeof date);
    else
        today(date);
    (void)flags;
    const char *identity = c->identity ? c->identity : default_identity;
    size_t n = strlen(identity) + 256;
    char *text = malloc(n);
    if (!text)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
    snprintf(text, n,
             "%s\nKnowledge cutoff: 2024-06\nCurrent date: %s\n\nReasoning: %s\n\n"
             "# Valid channels: analysis, commentary, final. Channel must be included for every "
             "message.",
             identity, date, moecl_reasoning_effort_str(c->effort));
    struct hmsg m = {"system", NULL, text, MOECL_TOK_END, 0, 0, 0, {NULL, NULL}};
    enum moecl_status st = write_msg(s, &m);
    free(text);
    if (st || !c->instructions)
        return st;
    const char *tail = (flags & MOECL_RENDER_HARMONY_PACKAGE) ? "" : "\n\n";
    n = strlen(c->instructions) + 32;
    text = malloc(n);
    if (!text)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
    snprintf(text, n, "# Instructions\n\n%s%s", c->instructions, tail);
    m = (struct hmsg){"developer", NULL, text, MOECL_TOK_END, 0, 0, 0, {NULL, NULL}};
    st = write_msg(s, &m);
    free(text);
    return st;
}

static void hmsgs_free(struct hmsg *m, int n) {
    for (int i = 0; i < n; i++) {
        free(m[i].owned[0]);
        free(m[i].owned[1]);
    }
    free(m);
}

/* The turns as harmony messages, after the template's (or the package's) rules. */
static enum moecl_status conv_messages(const struct moecl_conversation *c, int flags,
                                       struct hmsg **msgs_out, int *n_out) {
    *msgs_out = NULL;
    *n_out = 0;
    int package = (flags & MOECL_RENDER_HARMONY_PACKAGE) != 0;
    int gen = (flags & MOECL_RENDER_GENERATION_PROMPT) != 0;
    struct hmsg *m = calloc((size_t)(2 * c->n_turns + 1), sizeof *m);
    if (!m)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
    int n = 0;
    for (int i = 0; i < c->n_turns; i++) {
        const struct turn *t = &c->turns[i];
        int last = i == c->n_turns - 1;
        switch (t->kind) {
        case TURN_USER:
            m[n++] = (struct hmsg){"user", NULL, t->content, MOECL_TOK_END, 0, 0, 0, {0}};
            break;
        case TURN_ASSISTANT:
            /* Template: earlier turns are their final answer only; a trailing turn without
             * the generation prompt is the training form (analysis, final, <|return|>).
             * Package: both messages; its drop rule runs below. */
            if (t->thinking && (package || (last && !gen)))
                m[n++] = (struct hmsg){"assistant", "analysis", t->thinking, MOECL_TOK_END,
                                       1,           0,          1,           {0}};
            m[n++] = (struct hmsg){
                "assistant", "final", t->content, (last && !gen) ? MOECL_TOK_RETURN : MOECL_TOK_END,
                0,           1,       1,          {0}};
            break;
        case TURN_TOOL_CALL: {
            int later_final = 0;
            for (int j = i + 1; j < c->n_turns; j++)
                later_final |= c->turns[j].kind == TURN_ASSISTANT;
            if (t->thinking && (package || !later_final))
                m[n++] = (struct hmsg){"assistant", "analysis", t->thinking, MOECL_TOK_END,
                                       1,           0,          1,           {0}};
            size_t hn = strlen(t->name) + 32;
            char *header = malloc(hn);
            if (!header) {
                hmsgs_free(m, n);
                return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
            }
            snprintf(header, hn, "assistant to=functions.%s", t->name);
            m[n++] = (struct hmsg){header, "commentary json", t->content, MOECL_TOK_CALL, 0, 0,
                                   1,      {header, NULL}};
            break;
        }
        case TURN_TOOL_RESULT: {
            size_t hn = strlen(t->name) + 32;
            char *header = malloc(hn);
            char *content = package ? NULL : moecl_harmony_json_quote(t->content);
            if (!header || (!package && !content)) {
                free(header);
                free(content);
                hmsgs_free(m, n);
                return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
            }
            snprintf(header, hn, "functions.%s to=assistant", t->name);
            m[n++] = (struct hmsg){
                header, "commentary",     package ? t->content : content, MOECL_TOK_END, 0, 0,
                0,      {header, content}};
            break;
        }
        }
    }
    if (package) {
        /* openai-harmony's auto_drop_analysis: only when the last assistant message is a
         * final answer, and only analysis messages before the FIRST final message. */
        int last_is_final = 0, first_final = -1;
        for (int i = n - 1; i >= 0; i--)
            if (m[i].is_assistant) {
                last_is_final = m[i].is_final;
                break;
            }
        for (int i = 0; i < n && first_final < 0; i++)
            if (m[i].is_final)
                first_final = i;
        if (last_is_final && first_final >= 0) {
            int w = 0;
            for (int i = 0; i < n; i++) {
                if (i < first_final && m[i].is_analysis)
                    continue; /* analysis messages own nothing */
                m[w++] = m[i];
            }
            n = w;
        }
    }
    *msgs_out = m;
    *n_out = n;
    return MOECL_OK;
}

enum moecl_status moecl_harmony_segments_render(const struct moecl_conversation *conv, int flags,
                                                struct moecl_harmony_segments *out) {
    memset(out, 0, sizeof *out);
    if (!conv)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "render: NULL conversation");
    struct hmsg *m = NULL;
    int n = 0;
    enum moecl_status st = render_system(conv, flags, out);
    if (!st)
        st = conv_messages(conv, flags, &m, &n);
    for (int i = 0; !st && i < n; i++)
        st = write_msg(out, &m[i]);
    if (!st && (flags & MOECL_RENDER_GENERATION_PROMPT)) {
        st = seg_push(out, MOECL_TOK_START, NULL, 0);
        if (!st)
            st = seg_text(out, "assistant");
    }
    hmsgs_free(m, n);
    if (st) {
        moecl_harmony_segments_free(out);
        return st;
    }
    seg_finish(out);
    return MOECL_OK;
}

const char *moecl_harmony_special_str(int32_t id) {
    switch (id) {
    case MOECL_TOK_STARTOFTEXT:
        return "<|startoftext|>";
    case MOECL_TOK_ENDOFTEXT:
        return "<|endoftext|>";
    case MOECL_TOK_RETURN:
        return "<|return|>";
    case MOECL_TOK_CONSTRAIN:
        return "<|constrain|>";
    case MOECL_TOK_CHANNEL:
        return "<|channel|>";
    case MOECL_TOK_START:
        return "<|start|>";
    case MOECL_TOK_END:
        return "<|end|>";
    case MOECL_TOK_MESSAGE:
        return "<|message|>";
    case MOECL_TOK_CALL:
        return "<|call|>";
    default:
        return NULL;
    }
}

enum moecl_status moecl_conversation_render_text(const struct moecl_conversation *conv, int flags,
                                                 char **text_out, size_t *len_out) {
    *text_out = NULL;
    if (len_out)
        *len_out = 0;
    struct moecl_harmony_segments s;
    enum moecl_status st = moecl_harmony_segments_render(conv, flags, &s);
    if (st)
        return st;
    size_t total = 1;
    for (int i = 0; i < s.n; i++)
        total += s.seg[i].special >= 0 ? strlen(moecl_harmony_special_str(s.seg[i].special))
                                       : s.seg[i].len;
    char *text = malloc(total), *p = text;
    if (!text) {
        moecl_harmony_segments_free(&s);
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
    }
    for (int i = 0; i < s.n; i++) {
        const char *src =
            s.seg[i].special >= 0 ? moecl_harmony_special_str(s.seg[i].special) : s.seg[i].text;
        size_t len = s.seg[i].special >= 0 ? strlen(src) : s.seg[i].len;
        memcpy(p, src, len);
        p += len;
    }
    *p = 0;
    moecl_harmony_segments_free(&s);
    *text_out = text;
    if (len_out)
        *len_out = (size_t)(p - text);
    return MOECL_OK;
}

enum moecl_status moecl_harmony_segments_encode(const struct moecl_harmony_segments *s,
                                                moecl_harmony_encode_fn encode, void *user,
                                                int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    size_t n = 0, cap = 256;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
    for (int i = 0; i < s->n; i++) {
        if (s->seg[i].special >= 0) {
            if (n == cap) {
                int32_t *g = realloc(ids, 2 * cap * sizeof *ids);
                if (!g) {
                    free(ids);
                    return moecl_error_set(MOECL_ERR_NO_MEMORY, "render: out of memory");
                }
                ids = g;
                cap *= 2;
            }
            ids[n++] = s->seg[i].special;
            continue;
        }
        enum moecl_status st = encode(user, s->seg[i].text, s->seg[i].len, &ids, &n, &cap);
        if (st) {
            free(ids);
            return st;
        }
    }
    *ids_out = ids;
    *n_out = n;
    return MOECL_OK;
}

/* ================================================================== stop tokens */

int moecl_is_stop_token(int32_t token) {
    return token == MOECL_TOK_RETURN || token == MOECL_TOK_CALL || token == MOECL_TOK_ENDOFTEXT;
}

static void add_stop(int32_t *ids, int cap, int *n, int32_t id) {
    if (id == MOECL_TOK_END || id < 0)
        return;
    for (int i = 0; i < *n; i++)
        if (ids[i] == id)
            return;
    if (*n < cap)
        ids[(*n)++] = id;
}

/* Adds eos_token_id of dir/name (number or list); returns 1 if the file had the field. */
static int stops_from_file(const char *dir, const char *name, int32_t *ids, int cap, int *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char *buf = NULL;
    size_t len = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && len < (1u << 20)) {
        char *nb = realloc(buf, len + got + 1);
        if (!nb)
            break;
        buf = nb;
        memcpy(buf + len, chunk, got);
        len += got;
        buf[len] = 0;
    }
    fclose(f);
    if (!buf)
        return 0;
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    int found = 0;
    if (cJSON_IsNumber(eos)) {
        add_stop(ids, cap, n, (int32_t)eos->valuedouble);
        found = 1;
    } else if (cJSON_IsArray(eos)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, eos) {
            if (cJSON_IsNumber(e))
                add_stop(ids, cap, n, (int32_t)e->valuedouble);
        }
        found = 1;
    }
    cJSON_Delete(root);
    return found;
}

enum moecl_status moecl_stop_tokens_load(const char *dir, int32_t *ids, int cap, int *n_out) {
    *n_out = 0;
    if (!ids || cap <= 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "stop tokens: no room");
    int n = 0;
    if (dir && !stops_from_file(dir, "generation_config.json", ids, cap, &n))
        stops_from_file(dir, "config.json", ids, cap, &n);
    add_stop(ids, cap, &n, MOECL_TOK_RETURN);
    add_stop(ids, cap, &n, MOECL_TOK_ENDOFTEXT);
    add_stop(ids, cap, &n, MOECL_TOK_CALL);
    *n_out = n;
    return MOECL_OK;
}
