/* The streaming harmony parser: token ids in, channel text out (spec §4.5).
 *
 * States follow openai-harmony's StreamableParser: a completion starts inside an assistant
 * header (the prompt ended with "<|start|>assistant"); <|message|> ends a header; <|end|> ends a
 * message and waits for <|start|>; <|return|>, <|call|> (and <|endoftext|>) end the message and
 * the generation. It is lenient where the model may stray: an end token inside a header turns the
 * header text into content, a <|start|> inside content ends the message, text between messages
 * is ignored. Content is released only in whole UTF-8 sequences; an invalid byte becomes U+FFFD,
 * as harmony's decoder does. */
#include "harmony.h"

#include "moecl_error.h"

#include <stdlib.h>
#include <string.h>

struct strbuf {
    char *p;
    size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static void sb_clear(struct strbuf *b) {
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

enum pstate { P_HEADER, P_CONTENT, P_EXPECT_START };

struct moecl_harmony_parser {
    moecl_harmony_bytes_fn bytes;
    void *user;
    enum pstate state;
    struct strbuf header;    /* header text of the message being read */
    struct strbuf pending;   /* a partial UTF-8 sequence (< 4 bytes) */
    struct strbuf delta;     /* the text of the current event */
    struct strbuf content;   /* the current message's content */
    struct strbuf chan[5];   /* all content per channel */
    struct strbuf recipient; /* current message's recipient ("" if none) */
    struct strbuf tool_name, tool_args;
    enum moecl_harmony_channel channel;
    int oom;
};

static enum moecl_harmony_channel channel_of(const char *name, size_t n) {
    if (n == 8 && memcmp(name, "analysis", 8) == 0)
        return MOECL_CHANNEL_ANALYSIS;
    if (n == 10 && memcmp(name, "commentary", 10) == 0)
        return MOECL_CHANNEL_COMMENTARY;
    if (n == 5 && memcmp(name, "final", 5) == 0)
        return MOECL_CHANNEL_FINAL;
    return n ? MOECL_CHANNEL_OTHER : MOECL_CHANNEL_NONE;
}

enum moecl_status moecl_harmony_parser_create_with(moecl_harmony_bytes_fn bytes, void *user,
                                                   struct moecl_harmony_parser **out) {
    *out = NULL;
    if (!bytes)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "harmony parser: no token decoder");
    struct moecl_harmony_parser *p = calloc(1, sizeof *p);
    if (!p)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "harmony parser: out of memory");
    p->bytes = bytes;
    p->user = user;
    moecl_harmony_parser_reset(p);
    *out = p;
    return MOECL_OK;
}

void moecl_harmony_parser_release(struct moecl_harmony_parser *parser) {
    if (!parser)
        return;
    struct strbuf *all[] = {&parser->header,    &parser->pending,   &parser->delta,
                            &parser->content,   &parser->recipient, &parser->tool_name,
                            &parser->tool_args, &parser->chan[0],   &parser->chan[1],
                            &parser->chan[2],   &parser->chan[3],   &parser->chan[4]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]->p);
    free(parser);
}

void moecl_harmony_parser_reset(struct moecl_harmony_parser *p) {
    if (!p)
        return;
    p->state = P_HEADER;
    p->channel = MOECL_CHANNEL_NONE;
    sb_clear(&p->header);
    sb_clear(&p->pending);
    sb_clear(&p->delta);
    sb_clear(&p->content);
    sb_clear(&p->recipient);
    sb_clear(&p->tool_name);
    sb_clear(&p->tool_args);
    for (int i = 0; i < 5; i++)
        sb_clear(&p->chan[i]);
    p->oom = 0;
}

/* Length of the UTF-8 sequence led by byte c; 0 for a byte that cannot lead. */
static int utf8_len(unsigned char c) {
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Whether s[1..n) are valid continuation bytes for lead s[0] (overlongs and surrogates out). */
static int utf8_valid(const unsigned char *s, int n) {
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && s[0] == 0xE0 && s[1] < 0xA0)
        return 0;
    if (n == 3 && s[0] == 0xED && s[1] >= 0xA0)
        return 0;
    if (n == 4 && s[0] == 0xF0 && s[1] < 0x90)
        return 0;
    if (n == 4 && s[0] == 0xF4 && s[1] >= 0x90)
        return 0;
    return 1;
}

static const char replacement[] = "\xEF\xBF\xBD";

/* Moves the whole sequences of pending bytes to the event and the channel; `flush` turns a
 * trailing partial sequence into U+FFFD. */
static void emit_text(struct moecl_harmony_parser *p, const char *s, size_t n, int flush) {
    if (sb_add(&p->pending, s, n))
        p->oom = 1;
    const unsigned char *b = (const unsigned char *)p->pending.p;
    size_t len = p->pending.len, i = 0;
    struct strbuf *ch = &p->chan[p->channel];
    while (i < len) {
        int k = utf8_len(b[i]);
        const char *out = (const char *)b + i;
        size_t out_n = (size_t)k;
        if (k == 0) {
            out = replacement, out_n = 3, k = 1;
        } else if (i + (size_t)k > len) {
            /* Incomplete: wait for more unless the prefix is already invalid. */
            int bad = 0;
            for (size_t j = i + 1; j < len; j++)
                bad |= (b[j] & 0xC0) != 0x80;
            if (!bad && !flush)
                break;
            out = replacement, out_n = 3, k = bad ? 1 : (int)(len - i);
        } else if (!utf8_valid(b + i, k)) {
            out = replacement, out_n = 3, k = 1;
        }
        if (sb_add(&p->delta, out, out_n) || sb_add(ch, out, out_n) ||
            sb_add(&p->content, out, out_n))
            p->oom = 1;
        i += (size_t)k;
    }
    memmove(p->pending.p, p->pending.p + i, len - i);
    p->pending.len = len - i;
    p->pending.p[p->pending.len] = 0;
}

/* Splits the header (spec §4.5): channel after <|channel|>, recipient from to=..., the rest
 * content type. The role word, when present, is dropped. */
static void parse_header(struct moecl_harmony_parser *p) {
    char *h = p->header.p ? p->header.p : (char *)"";
    p->channel = MOECL_CHANNEL_NONE;
    sb_clear(&p->recipient);
    char *c = strstr(h, "<|channel|>");
    if (c) {
        char *name = c + strlen("<|channel|>");
        size_t n = strcspn(name, " \t\r\n<");
        p->channel = channel_of(name, n);
        memmove(c, name + n, strlen(name + n) + 1); /* remove "<|channel|>name" */
    }
    /* Whitespace-separated words; a <|constrain|> starts a word of its own. */
    char *words[16] = {NULL};
    int nw = 0;
    char *s = h;
    while (*s && nw < 16) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (!*s)
            break;
        char *start = s;
        s++;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' &&
               strncmp(s, "<|constrain|>", 13) != 0)
            s++;
        char save = *s;
        *s = 0;
        words[nw++] = strdup(start);
        *s = save;
    }
    int first = 0;
    if (nw > 0 && strcmp(words[0], "assistant") == 0)
        first = 1;
    const char *rcpt = NULL;
    if (nw - first >= 1 && strncmp(words[nw - 1], "to=", 3) == 0)
        rcpt = words[nw - 1] + 3;
    else if (nw - first >= 2)
        rcpt = strncmp(words[nw - 2], "to=", 3) == 0 ? words[nw - 2] + 3 : words[nw - 2];
    else if (nw - first == 1 && strcmp(words[first], "json") != 0 &&
             strncmp(words[first], "<|constrain|>", 13) != 0)
        rcpt = words[first];
    if (rcpt && sb_add(&p->recipient, rcpt, strlen(rcpt)))
        p->oom = 1;
    for (int i = 0; i < nw; i++)
        free(words[i]);
    sb_clear(&p->header);
    sb_clear(&p->content);
}

static void end_message(struct moecl_harmony_parser *p, struct moecl_harmony_event *ev) {
    emit_text(p, "", 0, 1);
    ev->message_end = 1;
    if (p->recipient.len && strcmp(p->recipient.p, "assistant") != 0 &&
        (p->channel == MOECL_CHANNEL_COMMENTARY || p->channel == MOECL_CHANNEL_ANALYSIS)) {
        sb_clear(&p->tool_name);
        sb_clear(&p->tool_args);
        if (sb_add(&p->tool_name, p->recipient.p, p->recipient.len) ||
            sb_add(&p->tool_args, p->content.p ? p->content.p : "", p->content.len))
            p->oom = 1;
    }
    p->state = P_EXPECT_START;
}

enum moecl_status moecl_harmony_parser_push(struct moecl_harmony_parser *p, int32_t token,
                                            struct moecl_harmony_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->text = "";
    if (!p)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "harmony parser: NULL parser");
    sb_clear(&p->delta);
    int is_end = token == MOECL_TOK_END;
    int is_stop =
        token == MOECL_TOK_RETURN || token == MOECL_TOK_CALL || token == MOECL_TOK_ENDOFTEXT;
    switch (p->state) {
    case P_HEADER:
        if (token == MOECL_TOK_MESSAGE) {
            parse_header(p);
            ev->message_start = 1;
            p->state = P_CONTENT;
        } else if (is_end || is_stop) {
            /* Lenient: a header that never reached <|message|> is content. */
            char *h = p->header.p ? strdup(p->header.p) : NULL;
            size_t hn = p->header.len;
            parse_header(p);
            p->channel = MOECL_CHANNEL_NONE;
            if (h)
                emit_text(p, h, hn, 1);
            free(h);
            end_message(p, ev);
        } else {
            size_t n = 0;
            const char *b = p->bytes(p->user, token, &n);
            if (!b)
                return moecl_error_set(MOECL_ERR_INVALID_ARG, "harmony parser: unknown token %d",
                                       (int)token);
            if (sb_add(&p->header, b, n))
                p->oom = 1;
        }
        break;
    case P_CONTENT:
        if (is_end || is_stop) {
            end_message(p, ev);
        } else if (token == MOECL_TOK_START) {
            end_message(p, ev);
            p->state = P_HEADER;
        } else if (moecl_harmony_special_str(token)) {
            /* other formatting tokens inside content carry no text */
        } else {
            size_t n = 0;
            const char *b = p->bytes(p->user, token, &n);
            if (!b)
                return moecl_error_set(MOECL_ERR_INVALID_ARG, "harmony parser: unknown token %d",
                                       (int)token);
            emit_text(p, b, n, 0);
        }
        break;
    case P_EXPECT_START:
        if (token == MOECL_TOK_START)
            p->state = P_HEADER;
        break;
    }
    ev->stop = is_stop;
    ev->channel = p->channel;
    ev->text = p->delta.p ? p->delta.p : "";
    ev->text_len = p->delta.len;
    ev->recipient = p->recipient.len ? p->recipient.p : NULL;
    if (p->oom)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "harmony parser: out of memory");
    return MOECL_OK;
}

void moecl_harmony_parser_finish(struct moecl_harmony_parser *p, struct moecl_harmony_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->text = "";
    if (!p)
        return;
    sb_clear(&p->delta);
    if (p->state == P_HEADER && p->header.len) {
        /* Cut off inside a header (max tokens): like the lenient end-token case, its text is
         * content without a channel, so a caller can still show what was produced. */
        char *h = strdup(p->header.p);
        size_t hn = p->header.len;
        parse_header(p);
        p->channel = MOECL_CHANNEL_NONE;
        if (h)
            emit_text(p, h, hn, 1);
        else
            p->oom = 1;
        free(h);
        p->state = P_EXPECT_START;
    } else if (p->state == P_CONTENT) {
        emit_text(p, "", 0, 1);
    }
    ev->channel = p->channel;
    ev->text = p->delta.p ? p->delta.p : "";
    ev->text_len = p->delta.len;
}

const char *moecl_harmony_parser_text(const struct moecl_harmony_parser *p,
                                      enum moecl_harmony_channel channel) {
    if (!p || (unsigned)channel > MOECL_CHANNEL_OTHER || !p->chan[channel].p)
        return "";
    return p->chan[channel].p;
}

const char *moecl_harmony_parser_tool_name(const struct moecl_harmony_parser *p) {
    return p && p->tool_name.len ? p->tool_name.p : NULL;
}

const char *moecl_harmony_parser_tool_args(const struct moecl_harmony_parser *p) {
    return p && p->tool_name.len ? (p->tool_args.p ? p->tool_args.p : "") : NULL;
}
