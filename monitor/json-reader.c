/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Streaming JSON for the QMP monitor (see monitor/json-reader.h).
 * Two stages share one pass over the bytes: a lexer that cuts tokens out of
 * input split anywhere, and a push parser with an explicit stack that
 * builds json-c values token by token, so nesting costs no C stack and
 * every limit is checked as the bytes arrive. json-c's own tokener is not
 * used because it accepts what QEMU rejects (raw control characters in
 * strings, invalid UTF-8, NaN, duplicate keys) and cannot say where a
 * message ends in a stream that carries garbage.
 */
#include "monitor/json-reader.h"

#include <errno.h>
#include <gio/gio.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "util/utf8.h"

typedef enum {
    LEX_START,     /* between tokens */
    LEX_STRING,    /* inside quotes; `quote` says which */
    LEX_NUMBER,    /* see NumState */
    LEX_KEYWORD,   /* lowercase letters */
    LEX_RECOVERY,  /* after a lexical error: skipping to a resync point */
} LexState;

typedef enum {
    NUM_SIGN, NUM_ZERO, NUM_INT, NUM_DOT, NUM_FRAC, NUM_EXP, NUM_EXP_SIGN, NUM_EXP_DIGITS,
    NUM_INVALID, /* a digit was required */
} NumState;

typedef enum {
    TOK_LCURLY, TOK_RCURLY, TOK_LSQUARE, TOK_RSQUARE, TOK_COLON, TOK_COMMA,
    TOK_STRING, TOK_INTEGER, TOK_FLOAT, TOK_KEYWORD,
} TokenType;

typedef enum {
    EXPECT_VALUE,        /* top level, or after ':' */
    EXPECT_ARRAY_FIRST,  /* after '[' */
    EXPECT_ARRAY_VALUE,  /* after ',' in an array */
    EXPECT_ARRAY_NEXT,   /* after an element */
    EXPECT_OBJECT_FIRST, /* after '{' */
    EXPECT_OBJECT_KEY,   /* after ',' in an object */
    EXPECT_OBJECT_COLON, /* after a key */
    EXPECT_OBJECT_NEXT,  /* after a member's value */
} ParseState;

typedef struct {
    json_object *container;
    char *key; /* objects: the key whose value comes next */
} Frame;

struct JsonReader {
    size_t max_bytes, max_tokens;
    guint max_depth;

    LexState lex;
    NumState num;
    char quote;
    bool escape;          /* the previous string byte was a backslash */
    bool prev_newline;    /* the previous byte was '\n' */
    bool token_at_line_start;
    GString *tok;         /* raw text of the token being lexed */

    bool in_message;      /* a token of the current message has started */
    bool skipping;        /* after an error: until the brackets balance */
    size_t msg_bytes, msg_tokens;
    int depth;            /* bracket balance of the current message */
    ParseState state;
    GArray *stack;        /* Frame */
};

JsonReader *json_reader_new(size_t max_bytes, size_t max_tokens, guint max_depth)
{
    JsonReader *r = g_new0(JsonReader, 1);

    r->max_bytes = max_bytes ? max_bytes : JSON_READER_DEFAULT_MAX_BYTES;
    r->max_tokens = max_tokens ? max_tokens : JSON_READER_DEFAULT_MAX_TOKENS;
    r->max_depth = max_depth ? max_depth : JSON_READER_DEFAULT_MAX_DEPTH;
    r->tok = g_string_new(NULL);
    r->stack = g_array_new(FALSE, FALSE, sizeof(Frame));
    r->prev_newline = true;
    return r;
}

static void drop_message(JsonReader *r)
{
    for (guint i = 0; i < r->stack->len; i++) {
        Frame *f = &g_array_index(r->stack, Frame, i);
        json_object_put(f->container);
        g_free(f->key);
    }
    g_array_set_size(r->stack, 0);
    r->state = EXPECT_VALUE;
    r->in_message = false;
    r->skipping = false;
    r->msg_bytes = 0;
    r->msg_tokens = 0;
    r->depth = 0;
}

void json_reader_reset(JsonReader *r)
{
    drop_message(r);
    g_string_truncate(r->tok, 0);
    r->lex = LEX_START;
    r->escape = false;
    r->prev_newline = true;
}

void json_reader_free(JsonReader *r)
{
    if (!r) {
        return;
    }
    drop_message(r);
    g_string_free(r->tok, TRUE);
    g_array_free(r->stack, TRUE);
    g_free(r);
}

static void parse_error(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void parse_error(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "JSON parse error, %s", msg);
}

/* --- strings --- */


static int hex4(const char *s, size_t avail)
{
    int v = 0;

    if (avail < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(s[i]);
        if (d < 0) {
            return -1;
        }
        v = (v << 4) | d;
    }
    return v;
}

/* Append code point cp as (modified) UTF-8: U+0000 becomes C0 80, so that
 * decoded strings never hold a NUL byte, as in QEMU. */
static void append_code_point(GString *out, gunichar cp)
{
    char buf[6];

    if (cp == 0) {
        g_string_append_len(out, "\xC0\x80", 2);
        return;
    }
    g_string_append_len(out, buf, g_unichar_to_utf8(cp, buf));
}

/* raw: the token with its quotes. */
static bool decode_string(const char *raw, size_t rawlen, GString *out, GError **errp)
{
    const char *end = raw + rawlen - 1; /* the closing quote */

    for (const char *p = raw + 1; p < end;) {
        unsigned char c = (unsigned char) *p;

        if (c >= 0x80) {
            uint32_t cp;
            size_t n = berth_utf8_decode((const unsigned char *) p, (size_t) (end - p), &cp);
            if (!n) {
                parse_error(errp, "invalid UTF-8 sequence in string");
                return false;
            }
            g_string_append_len(out, p, (gssize) n);
            p += n;
            continue;
        }
        if (c != '\\') {
            g_string_append_c(out, (char) c);
            p++;
            continue;
        }
        const char *esc = p;
        p += 2; /* the lexer guarantees a byte after the backslash */
        switch (esc[1]) {
        case '"':  g_string_append_c(out, '"');  break;
        case '\'': g_string_append_c(out, '\''); break;
        case '\\': g_string_append_c(out, '\\'); break;
        case '/':  g_string_append_c(out, '/');  break;
        case 'b':  g_string_append_c(out, '\b'); break;
        case 'f':  g_string_append_c(out, '\f'); break;
        case 'n':  g_string_append_c(out, '\n'); break;
        case 'r':  g_string_append_c(out, '\r'); break;
        case 't':  g_string_append_c(out, '\t'); break;
        case 'u': {
            int cp = hex4(p, (size_t) (end - p));
            if (cp >= 0xD800 && cp <= 0xDBFF && end - (p + 4) >= 6 && p[4] == '\\' &&
                p[5] == 'u') {
                int low = hex4(p + 6, (size_t) (end - (p + 6)));
                if (low >= 0xDC00 && low <= 0xDFFF) {
                    append_code_point(out, 0x10000 + (((gunichar) cp - 0xD800) << 10) +
                                           ((gunichar) low - 0xDC00));
                    p += 10;
                    break;
                }
            }
            if (cp < 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                /* QEMU quotes up to six bytes from the backslash. */
                int shown = (int) MIN((size_t) 6, (size_t) (end + 1 - esc));
                parse_error(errp, "%.*s is not a valid Unicode character", shown, esc);
                return false;
            }
            append_code_point(out, (gunichar) cp);
            p += 4;
            break;
        }
        default:
            parse_error(errp, "invalid escape sequence in string");
            return false;
        }
    }
    return true;
}

/* --- scalar values --- */

/* NULL: the number is beyond a double's range. */
static json_object *number_value(const char *text, bool is_float)
{
    if (!is_float) {
        char *endp;

        errno = 0;
        long long ll = strtoll(text, &endp, 10);
        if (errno == 0 && *endp == '\0') {
            return json_object_new_int64(ll);
        }
        if (text[0] != '-') {
            errno = 0;
            unsigned long long ull = strtoull(text, &endp, 10);
            if (errno == 0 && *endp == '\0') {
                return json_object_new_uint64(ull);
            }
        }
    }
    /*
     * Too large for any integer type: a double, as in QEMU. Beyond a
     * double's range it would be infinity, which QEMU takes and echoes as
     * "inf" (not JSON); refuse it instead. Underflow gives 0, a fine
     * value.
     */
    double d = g_ascii_strtod(text, NULL);
    return isfinite(d) ? json_object_new_double(d) : NULL;
}

/* --- the parser --- */

/*
 * The current message failed (errp is set): forget what was built of it
 * and skip its rest, as far as its brackets balance, so that the next
 * message is read normally. mid_token: the failure came inside a token,
 * whose end must be skipped too even at the top level.
 */
static JsonReaderStatus fail_message(JsonReader *r, bool mid_token)
{
    int depth = r->depth;

    drop_message(r);
    if (depth > 0 || mid_token) {
        r->skipping = true;
        r->in_message = true;
        r->depth = depth;
    }
    return JSON_READER_ERROR;
}

/* what == NULL: errp has been set already. */
static JsonReaderStatus syntax_error(JsonReader *r, GError **errp, const char *what)
{
    if (what) {
        parse_error(errp, "%s", what);
    }
    return fail_message(r, false);
}

/*
 * A message over a limit gets QEMU's error text and is skipped like a
 * malformed one: nothing of it is kept any more (a skipped message costs
 * no memory however long it goes on), and the session goes on with the
 * next message.
 */
static JsonReaderStatus limit_exceeded(JsonReader *r, GError **errp, const char *what,
                                       bool mid_token)
{
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE, what);
    if (r->tok->allocated_len > 4096) {
        /* Do not keep a megabyte-sized buffer for the session's life. */
        g_string_free(r->tok, TRUE);
        r->tok = g_string_new(NULL);
    } else {
        g_string_truncate(r->tok, 0);
    }
    return fail_message(r, mid_token);
}

/* A complete value: the message's result, or the next member or element. */
static JsonReaderStatus value_done(JsonReader *r, json_object *v, json_object **value)
{
    if (r->stack->len == 0) {
        *value = v;
        drop_message(r);
        return JSON_READER_VALUE;
    }
    Frame *top = &g_array_index(r->stack, Frame, r->stack->len - 1);
    if (json_object_is_type(top->container, json_type_array)) {
        json_object_array_add(top->container, v);
        r->state = EXPECT_ARRAY_NEXT;
    } else {
        json_object_object_add(top->container, top->key, v);
        g_clear_pointer(&top->key, g_free);
        r->state = EXPECT_OBJECT_NEXT;
    }
    return JSON_READER_NEED_MORE;
}

static JsonReaderStatus close_container(JsonReader *r, json_object **value)
{
    Frame top = g_array_index(r->stack, Frame, r->stack->len - 1);

    g_array_set_size(r->stack, r->stack->len - 1);
    g_free(top.key);
    return value_done(r, top.container, value);
}

static void open_container(JsonReader *r, json_object *container, ParseState next)
{
    Frame f = { .container = container };

    g_array_append_val(r->stack, f);
    r->state = next;
}

static JsonReaderStatus scalar(JsonReader *r, TokenType type, json_object **value,
                               GError **errp)
{
    const char *text = r->tok->str;
    json_object *v;

    switch (type) {
    case TOK_STRING: {
        g_autoptr(GString) s = g_string_sized_new(r->tok->len);
        if (!decode_string(text, r->tok->len, s, errp)) {
            return syntax_error(r, errp, NULL);
        }
        v = json_object_new_string_len(s->str, (int) s->len);
        break;
    }
    case TOK_INTEGER:
    case TOK_FLOAT:
        v = number_value(text, type == TOK_FLOAT);
        if (!v) {
            /* Quote a bounded part: the number may be a megabyte of digits. */
            g_autofree char *msg = g_strdup_printf("number '%.32s%s' is out of range",
                                                   text, r->tok->len > 32 ? "..." : "");
            return syntax_error(r, errp, msg);
        }
        break;
    default:
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
            v = json_object_new_boolean(text[0] == 't');
        } else if (strcmp(text, "null") == 0) {
            v = NULL; /* json-c's null */
        } else {
            g_autofree char *msg = g_strdup_printf("invalid keyword '%s'", text);
            return syntax_error(r, errp, msg);
        }
        break;
    }
    return value_done(r, v, value);
}

static JsonReaderStatus parse_token(JsonReader *r, TokenType type, json_object **value,
                                    GError **errp)
{
    bool opener = type == TOK_LCURLY || type == TOK_LSQUARE;
    bool closer = type == TOK_RCURLY || type == TOK_RSQUARE;

    if (r->skipping && type == TOK_LCURLY && r->token_at_line_start) {
        /* A line that starts with '{' is taken as a fresh message. */
        drop_message(r);
    }
    if (opener && r->depth < INT_MAX) { /* a skipped "[[[..." may go on for ever */
        r->depth++;
    } else if (closer) {
        r->depth--;
    }
    if (r->skipping) {
        if (r->depth <= 0) {
            drop_message(r);
        }
        return JSON_READER_NEED_MORE;
    }
    /* The texts are QEMU's, whose limits are larger (64 MiB, 2 Mi tokens). */
    if (r->depth > (int) r->max_depth) {
        return limit_exceeded(r, errp, "JSON nesting depth limit exceeded", false);
    }
    if (++r->msg_tokens > r->max_tokens) {
        return limit_exceeded(r, errp, "JSON token count limit exceeded", false);
    }

    switch (r->state) {
    case EXPECT_ARRAY_FIRST:
        if (type == TOK_RSQUARE) {
            return close_container(r, value);
        }
        /* fall through */
    case EXPECT_VALUE:
    case EXPECT_ARRAY_VALUE:
        if (type == TOK_LCURLY) {
            open_container(r, json_object_new_object(), EXPECT_OBJECT_FIRST);
            return JSON_READER_NEED_MORE;
        }
        if (type == TOK_LSQUARE) {
            open_container(r, json_object_new_array(), EXPECT_ARRAY_FIRST);
            return JSON_READER_NEED_MORE;
        }
        if (type >= TOK_STRING) {
            return scalar(r, type, value, errp);
        }
        return syntax_error(r, errp, "expecting value");

    case EXPECT_OBJECT_FIRST:
        if (type == TOK_RCURLY) {
            return close_container(r, value);
        }
        /* fall through */
    case EXPECT_OBJECT_KEY: {
        if (type == TOK_KEYWORD && strcmp(r->tok->str, "true") != 0 &&
            strcmp(r->tok->str, "false") != 0 && strcmp(r->tok->str, "null") != 0) {
            /* QEMU reads the would-be key as a value first. */
            g_autofree char *msg = g_strdup_printf("invalid keyword '%s'", r->tok->str);
            return syntax_error(r, errp, msg);
        }
        if (type != TOK_STRING) {
            return syntax_error(r, errp, opener || type > TOK_STRING
                                         ? "key is not a string in object"
                                         : "expecting value");
        }
        g_autoptr(GString) key = g_string_sized_new(r->tok->len);
        if (!decode_string(r->tok->str, r->tok->len, key, errp)) {
            return syntax_error(r, errp, NULL);
        }
        Frame *top = &g_array_index(r->stack, Frame, r->stack->len - 1);
        if (json_object_object_get_ex(top->container, key->str, NULL)) {
            return syntax_error(r, errp, "duplicate key");
        }
        top->key = g_string_free(g_steal_pointer(&key), FALSE);
        r->state = EXPECT_OBJECT_COLON;
        return JSON_READER_NEED_MORE;
    }
    case EXPECT_OBJECT_COLON:
        if (type != TOK_COLON) {
            return syntax_error(r, errp, "missing : in object pair");
        }
        r->state = EXPECT_VALUE;
        return JSON_READER_NEED_MORE;

    case EXPECT_ARRAY_NEXT:
        if (type == TOK_COMMA) {
            r->state = EXPECT_ARRAY_VALUE;
            return JSON_READER_NEED_MORE;
        }
        if (type == TOK_RSQUARE) {
            return close_container(r, value);
        }
        return syntax_error(r, errp, "expected separator in list");

    case EXPECT_OBJECT_NEXT:
        if (type == TOK_COMMA) {
            r->state = EXPECT_OBJECT_KEY;
            return JSON_READER_NEED_MORE;
        }
        if (type == TOK_RCURLY) {
            return close_container(r, value);
        }
        return syntax_error(r, errp, "expected separator in dict");
    }
    return JSON_READER_NEED_MORE;
}

/* --- the lexer --- */

/* A lexical error: report it (unless the message already failed), then
 * skip to a point where a new message may start. */
static JsonReaderStatus lexical_error(JsonReader *r, GError **errp)
{
    bool report = !r->skipping;

    if (report) {
        parse_error(errp, "stray '%s'", r->tok->str);
    }
    g_string_truncate(r->tok, 0);
    drop_message(r);
    r->lex = LEX_RECOVERY;
    return report ? JSON_READER_ERROR : JSON_READER_NEED_MORE;
}

/* The token in r->tok is complete. */
static JsonReaderStatus end_token(JsonReader *r, TokenType type, json_object **value,
                                  GError **errp)
{
    JsonReaderStatus st = parse_token(r, type, value, errp);

    g_string_truncate(r->tok, 0);
    r->lex = LEX_START;
    return st;
}

static void keep(JsonReader *r, unsigned char c)
{
    /* A failed message is only scanned for its end; its text is not kept. */
    if (!r->skipping) {
        g_string_append_c(r->tok, (char) c);
    }
}

static JsonReaderStatus lex_start(JsonReader *r, unsigned char c, json_object **value,
                                  GError **errp)
{
    static const char structural[] = "{}[]:,";
    static const TokenType structural_type[] = {
        TOK_LCURLY, TOK_RCURLY, TOK_LSQUARE, TOK_RSQUARE, TOK_COLON, TOK_COMMA,
    };

    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        return JSON_READER_NEED_MORE;
    }
    r->in_message = true;
    r->token_at_line_start = r->prev_newline;
    const char *s = c ? strchr(structural, c) : NULL;
    if (s) {
        return end_token(r, structural_type[s - structural], value, errp);
    }
    keep(r, c);
    if (c == '"' || c == '\'') {
        r->lex = LEX_STRING;
        r->quote = (char) c;
        r->escape = false;
    } else if (c == '-' || g_ascii_isdigit(c)) {
        r->lex = LEX_NUMBER;
        r->num = c == '-' ? NUM_SIGN : c == '0' ? NUM_ZERO : NUM_INT;
    } else if (c >= 'a' && c <= 'z') {
        r->lex = LEX_KEYWORD;
    } else {
        return lexical_error(r, errp);
    }
    return JSON_READER_NEED_MORE;
}

static JsonReaderStatus lex_string(JsonReader *r, unsigned char c, json_object **value,
                                   GError **errp)
{
    keep(r, c);
    if (c < 0x20 || c == 0xFE || c == 0xFF) {
        return lexical_error(r, errp);
    }
    if (r->escape) {
        r->escape = false;
    } else if (c == '\\') {
        r->escape = true;
    } else if (c == (unsigned char) r->quote) {
        return end_token(r, TOK_STRING, value, errp);
    }
    return JSON_READER_NEED_MORE;
}

/*
 * Numbers follow JSON's grammar. A byte that cannot continue the number
 * ends it (and is looked at again: *reuse) where the number is complete,
 * and is a lexical error where a digit is required.
 */
static JsonReaderStatus lex_number(JsonReader *r, unsigned char c, bool *reuse,
                                   json_object **value, GError **errp)
{
    bool digit = g_ascii_isdigit(c);
    bool exp = c == 'e' || c == 'E';
    NumState next = NUM_INVALID;
    TokenType complete = TOK_INTEGER; /* what the number is if it ends here */
    bool may_end = false;

    switch (r->num) {
    case NUM_SIGN:
        next = c == '0' ? NUM_ZERO : digit ? NUM_INT : NUM_INVALID;
        break;
    case NUM_ZERO:
    case NUM_INT:
        /* QEMU rejects a leading zero ("01") rather than ending at it. */
        next = digit ? (r->num == NUM_INT ? NUM_INT : NUM_INVALID)
             : c == '.' ? NUM_DOT : exp ? NUM_EXP : NUM_INVALID;
        may_end = !digit && c != '.' && !exp;
        break;
    case NUM_DOT:
        next = digit ? NUM_FRAC : NUM_INVALID;
        break;
    case NUM_FRAC:
        next = digit ? NUM_FRAC : exp ? NUM_EXP : NUM_INVALID;
        may_end = !digit && !exp;
        complete = TOK_FLOAT;
        break;
    case NUM_EXP:
        next = (c == '+' || c == '-') ? NUM_EXP_SIGN : digit ? NUM_EXP_DIGITS : NUM_INVALID;
        break;
    case NUM_EXP_SIGN:
    case NUM_EXP_DIGITS:
        next = digit ? NUM_EXP_DIGITS : NUM_INVALID;
        may_end = !digit && r->num == NUM_EXP_DIGITS;
        complete = TOK_FLOAT;
        break;
    case NUM_INVALID:
        break;
    }
    if (may_end) {
        *reuse = true;
        return end_token(r, complete, value, errp);
    }
    keep(r, c);
    if (next == NUM_INVALID) {
        return lexical_error(r, errp);
    }
    r->num = next;
    return JSON_READER_NEED_MORE;
}

JsonReaderStatus json_reader_feed(JsonReader *r, const char *buf, size_t len,
                                  size_t *consumed, json_object **value, GError **errp)
{
    JsonReaderStatus st = JSON_READER_NEED_MORE;
    size_t i = 0;

    *value = NULL;
    while (i < len && st == JSON_READER_NEED_MORE) {
        unsigned char c = (unsigned char) buf[i];
        bool reuse = false;

        switch (r->lex) {
        case LEX_START:
            st = lex_start(r, c, value, errp);
            break;
        case LEX_STRING:
            st = lex_string(r, c, value, errp);
            break;
        case LEX_NUMBER:
            st = lex_number(r, c, &reuse, value, errp);
            break;
        case LEX_KEYWORD:
            if (c >= 'a' && c <= 'z') {
                keep(r, c);
            } else {
                reuse = true;
                st = end_token(r, TOK_KEYWORD, value, errp);
            }
            break;
        case LEX_RECOVERY:
            /* QEMU's resync points: a structure may start at '{' or '[';
             * control bytes and 0xFE/0xFF are there to force a reset. */
            if (c == '{' || c == '[') {
                reuse = true;
                r->lex = LEX_START;
            } else if (c < 0x20 || c == 0xFE || c == 0xFF) {
                r->lex = LEX_START;
            }
            break;
        }
        if (reuse) {
            continue;
        }
        i++;
        r->prev_newline = c == '\n';
        if (st == JSON_READER_NEED_MORE && r->in_message && !r->skipping &&
            ++r->msg_bytes > r->max_bytes) {
            st = limit_exceeded(r, errp, "JSON token size limit exceeded",
                                r->lex != LEX_START);
        }
    }
    *consumed = i;
    return st;
}
