/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the monitor's streaming JSON reader: values split across
 * reads at every byte, several values per read, whitespace, QEMU's error
 * texts for malformed input and resynchronisation after it, and the limits
 * on one message, after which the next message is read as usual. Each
 * input is fed whole, byte by byte and in odd chunks, and must give the
 * same results every time. The
 * last tests run whole QMP sessions over a socketpair: greeting, framing,
 * events after negotiation, recovery after malformed and oversized input, and
 * sessions whose output passes the low mark (pipelined requests, large
 * replies, the bound on unread events).
 */
#include "monitor/json-reader.h"
#include "berth/monitor/monitor.h"
#include "qapi/json-writer.h"
#include "berth/qapi/qapi.h"
#include "berth/util/qmp-command.h"
#include "util/json.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Feeds `input` in chunks of `chunk` bytes (0: all at once) and returns the
 * results as one string: "V <json>" / "E <message>" lines. */
static char *run_reader(JsonReader *r, const char *input, size_t len, size_t chunk)
{
    GString *out = g_string_new(NULL);
    size_t pos = 0;

    if (chunk == 0) {
        chunk = len ? len : 1;
    }
    while (pos < len) {
        size_t n = MIN(chunk, len - pos);
        const char *p = input + pos;

        while (n > 0) {
            json_object *value = NULL;
            g_autoptr(GError) err = NULL;
            size_t used = 0;
            JsonReaderStatus st = json_reader_feed(r, p, n, &used, &value, &err);

            g_assert_cmpuint(used, <=, n);
            p += used;
            n -= used;
            if (st == JSON_READER_VALUE) {
                g_autofree char *s = qapi_json_to_string(value, false);
                g_string_append_printf(out, "V %s\n", s);
                json_object_put(value);
            } else if (st == JSON_READER_ERROR) {
                g_string_append_printf(out, "E %s\n", err->message);
            } else {
                g_assert_cmpuint(n, ==, 0); /* NEED_MORE consumes everything */
            }
        }
        pos += MIN(chunk, len - pos);
    }
    return g_string_free(out, FALSE);
}

/* Same results whatever the split, with a reader of these limits. */
static void check_with(size_t max_bytes, size_t max_tokens, guint max_depth,
                       const char *input, size_t len, const char *expected)
{
    static const size_t chunks[] = { 0, 1, 2, 3, 7, 64, 4096 };

    for (size_t i = 0; i < G_N_ELEMENTS(chunks); i++) {
        g_autoptr(JsonReader) r = json_reader_new(max_bytes, max_tokens, max_depth);
        g_autofree char *got = run_reader(r, input, len, chunks[i]);

        if (strcmp(got, expected) != 0) {
            g_test_message("input %.200s, chunk %zu", input, chunks[i]);
        }
        g_assert_cmpstr(got, ==, expected);
    }
}

static void check_len(const char *input, size_t len, const char *expected)
{
    check_with(0, 0, 0, input, len, expected);
}

/* Expects `first` then `then`: an error line, then what follows it. */
static void check_limits(size_t max_bytes, size_t max_tokens, guint max_depth,
                         const GString *input, const char *first, const char *then)
{
    g_autofree char *expected = g_strconcat(first, then, NULL);

    check_with(max_bytes, max_tokens, max_depth, input->str, input->len, expected);
}

static void check(const char *input, const char *expected)
{
    check_len(input, strlen(input), expected);
}

static void test_values(void)
{
    check("{\"execute\": \"qmp_capabilities\"}\n",
          "V {\"execute\": \"qmp_capabilities\"}\n");
    check("  \r\n\t{}  ", "V {}\n");
    check("[1, -2, 0, 1.5, true, false, null, \"s\", [], {}]\n",
          "V [1, -2, 0, 1.5, true, false, null, \"s\", [], {}]\n");
    check("{\"a\": {\"b\": [{\"c\": []}]}}", "V {\"a\": {\"b\": [{\"c\": []}]}}\n");
    /* Numbers as QEMU reads them: int64, then uint64, then double. */
    check("[18446744073709551615, -9223372036854775808, 99999999999999999999, 1e3, 0.1]",
          "V [18446744073709551615, -9223372036854775808, 1e+20, 1000, "
          "0.10000000000000001]\n");
    check("[-0]\n", "V [0]\n");
    /* A scalar at the top level ends at the next delimiter. */
    check("1 \"x\" null\n", "V 1\nV \"x\"\nV null\n");
}

/* Beyond a double's range a number would be infinity, which has no JSON
 * form to echo it back in: refused, and the message skipped. */
static void test_non_finite(void)
{
    check("1e999\n", "E JSON parse error, number '1e999' is out of range\n");
    check("{\"id\": -1e999, \"x\": [1]}\n{\"ok\": 1}",
          "E JSON parse error, number '-1e999' is out of range\nV {\"ok\": 1}\n");
    g_autoptr(GString) digits = g_string_new("[");
    for (int i = 0; i < 400; i++) {
        g_string_append_c(digits, '9');
    }
    g_string_append(digits, "]");
    check(digits->str, "E JSON parse error, number "
                       "'99999999999999999999999999999999...' is out of range\n");
    /* Large but finite, and underflow to zero, are fine. */
    check("[1e308, -1.7976931348623157e308, 1e-999]\n",
          "V [1e+308, -1.7976931348623157e+308, 0]\n");
}

static void test_batched(void)
{
    check("{\"a\": 1}{\"b\": 2}\n{\"c\": 3}  {\"d\": 4}",
          "V {\"a\": 1}\nV {\"b\": 2}\nV {\"c\": 3}\nV {\"d\": 4}\n");
    check("{\"execute\":\n\"query-version\"\n}\n", "V {\"execute\": \"query-version\"}\n");
}

static void test_strings(void)
{
    check("['single', 'it\\'s', '\"']", "V [\"single\", \"it's\", \"\\\"\"]\n");
    check("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "V [\"\\\"\\\\/\\b\\f\\n\\r\\t\"]\n");
    check("[\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"]",
          "V [\"A\\u00E9\\u20AC\\uD83D\\uDE00\"]\n");
    check("[\"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]",
          "V [\"h\\u00E9\\u20AC\\uD83D\\uDE00\"]\n");
    /* U+0000, escaped or as QEMU's modified UTF-8, never a NUL byte. */
    check("[\"a\\u0000b\", \"\xc0\x80\"]", "V [\"a\\u0000b\", \"\\u0000\"]\n");
    check("[\"a\x7f" "b\"]", "V [\"a\\u007Fb\"]\n");
}

static void test_syntax_errors(void)
{
    check("}\n", "E JSON parse error, expecting value\n");
    check("]\n", "E JSON parse error, expecting value\n");
    check("{\"a\":}\n", "E JSON parse error, expecting value\n");
    check("{\"a\" 1}\n", "E JSON parse error, missing : in object pair\n");
    check("{1:2}\n", "E JSON parse error, key is not a string in object\n");
    check("{\"a\":1 \"b\":2}\n", "E JSON parse error, expected separator in dict\n");
    check("[1 2]\n", "E JSON parse error, expected separator in list\n");
    check("{\"a\":1,}\n", "E JSON parse error, expecting value\n");
    check("[1,]\n", "E JSON parse error, expecting value\n");
    check("{,}\n", "E JSON parse error, expecting value\n");
    check("{\"a\":tru}\n", "E JSON parse error, invalid keyword 'tru'\n");
    check("{\"a\":1,\"a\":2}\n", "E JSON parse error, duplicate key\n");
    check("{\"a\":\"\\x\"}\n", "E JSON parse error, invalid escape sequence in string\n");
    check("{\"a\":\"\\u12\"}\n",
          "E JSON parse error, \\u12\" is not a valid Unicode character\n");
    check("{\"a\":\"\\ud800\"}\n",
          "E JSON parse error, \\ud800 is not a valid Unicode character\n");
    check("{\"a\":\"\\udc00\"}\n",
          "E JSON parse error, \\udc00 is not a valid Unicode character\n");
    check("{\"a\":\"\xc3\"}\n", "E JSON parse error, invalid UTF-8 sequence in string\n");
    check("{\"a\":\"\xed\xa0\x80\"}\n", "E JSON parse error, invalid UTF-8 sequence in string\n");
    check("{\"a\":\"\xf0\x80\x80\x80\"}\n",
          "E JSON parse error, invalid UTF-8 sequence in string\n");
    /* One error per message, then the next message is read normally. */
    check("{\"a\" 1, \"b\": {\"c\": [2]}}\n{\"ok\": 1}\n",
          "E JSON parse error, missing : in object pair\nV {\"ok\": 1}\n");
}

static void test_lexical_errors(void)
{
    check("@@@\n{\"ok\": 1}", "E JSON parse error, stray '@'\nV {\"ok\": 1}\n");
    check("{\"a\":01}\n", "E JSON parse error, stray '01'\n");
    check("{\"a\":1.}\n", "E JSON parse error, stray '1.}'\n");
    check("{\"a\":-}\n", "E JSON parse error, stray '-}'\n");
    check("{\"a\":1e}\n", "E JSON parse error, stray '1e}'\n");
    check("{\"a\":+1}\n", "E JSON parse error, stray '+'\n");
    check("{\"a\":Infinity}\n", "E JSON parse error, stray 'I'\n");
    check("{\"a\":\"x\ty\"}\n{\"ok\": 1}\n",
          "E JSON parse error, stray '\"x\t'\nV {\"ok\": 1}\n");
    /* QEMU's documented reset: a 0xFF byte ends any recovery. */
    check("\xff{\"ok\": 1}", "E JSON parse error, stray '\xff'\nV {\"ok\": 1}\n");
    check("garbage {\"ok\": 1}", "E JSON parse error, invalid keyword 'garbage'\n"
                                 "V {\"ok\": 1}\n");
}

static void test_resync(void)
{
    /* An unbalanced message would swallow everything after it; a line
     * that starts with '{' is taken as a new message instead. */
    check("{\"a\":[}\n{\"ok\": 1}\n",
          "E JSON parse error, expecting value\nV {\"ok\": 1}\n");
    /* ... but a '{' inside the failed message's line is not. */
    check("{\"a\" 1, \"b\": {\"c\": 2}}{\"ok\": 2}",
          "E JSON parse error, missing : in object pair\nV {\"ok\": 2}\n");
    /* Embedded NUL bytes are stray, then skipped. */
    check_len("\0{\"ok\": 1}", 10, "E JSON parse error, stray ''\nV {\"ok\": 1}\n");
}

static void append_run(GString *s, char c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g_string_append_c(s, c);
    }
}

/* prefix, n times c, suffix: a new string. */
static GString *run_of(const char *prefix, char c, size_t n, const char *suffix)
{
    GString *s = g_string_new(prefix);

    append_run(s, c, n);
    g_string_append(s, suffix);
    return s;
}

/*
 * A message over a limit gets QEMU's error text when the limit is reached;
 * the rest of it is skipped, and the next message is read as usual.
 */
static void test_limits(void)
{
    static const char size_err[] = "E JSON token size limit exceeded\n";
    static const char depth_err[] = "E JSON nesting depth limit exceeded\n";
    static const char count_err[] = "E JSON token count limit exceeded\n";

    /* Bytes: inside a string, with brackets in skipped strings that must
     * not count, and the following message on the same line. */
    g_autoptr(GString) big = run_of("{\"execute\": \"", 'x', 20000,
                                    "\", \"arguments\": {\"a\": [\"]]}}\"]}}{\"ok\": 1}\n");
    check_limits(10000, 0, 0, big, size_err, "V {\"ok\": 1}\n");
    /* ... a top-level scalar, which ends at its own end ... */
    g_autoptr(GString) str = run_of("\"", 's', 20000, "\" {\"ok\": 1}");
    check_limits(10000, 0, 0, str, size_err, "V {\"ok\": 1}\n");
    g_autoptr(GString) num = run_of("", '9', 20000, " 2 ");
    check_limits(10000, 0, 0, num, size_err, "V 2\n");
    /* ... whitespace inside a message counts, between messages not. */
    g_autoptr(GString) ws = run_of("[", ' ', 20000, "1]\n{}");
    check_limits(10000, 0, 0, ws, size_err, "V {}\n");
    g_autoptr(GString) spaces = run_of("", '\n', 60000, "{}");
    check_limits(100, 0, 0, spaces, "V {}\n", "");

    /* The same message fits the default limit. */
    g_autoptr(JsonReader) dflt = json_reader_new(0, 0, 0);
    g_autofree char *ok = run_reader(dflt, big->str, big->len, 4096);
    g_assert_true(g_str_has_prefix(ok, "V {\"execute\": \"xxx"));
    /* ... and a larger one does not, then the reader goes on. */
    g_autoptr(GString) huge = run_of("{\"a\": \"", 'x', JSON_READER_DEFAULT_MAX_BYTES,
                                     "\"}\n{\"ok\": 1}\n");
    g_autoptr(JsonReader) dflt2 = json_reader_new(0, 0, 0);
    g_autofree char *h = run_reader(dflt2, huge->str, huge->len, 4096);
    g_assert_cmpstr(h, ==, "E JSON token size limit exceeded\nV {\"ok\": 1}\n");

    /* Nesting: arrays, objects, and exactly at the limit. */
    g_autoptr(GString) deep = run_of("", '[', 100, "");
    append_run(deep, ']', 100);
    g_string_append(deep, "[1]");
    check_limits(0, 0, 50, deep, depth_err, "V [1]\n");
    g_autoptr(GString) deepobj = g_string_new(NULL);
    for (int i = 0; i < 60; i++) {
        g_string_append(deepobj, "{\"a\": ");
    }
    g_string_append(deepobj, "1");
    for (int i = 0; i < 60; i++) {
        g_string_append(deepobj, "}");
    }
    g_string_append(deepobj, "\n{\"ok\": 1}");
    check_limits(0, 0, 50, deepobj, depth_err, "V {\"ok\": 1}\n");
    g_autoptr(GString) at = run_of("", '[', 50, "");
    append_run(at, ']', 50);
    g_autofree char *at_limit = g_strconcat("V ", at->str, "\n", NULL);
    g_autoptr(JsonReader) r50 = json_reader_new(0, 0, 50);
    g_autofree char *at_got = run_reader(r50, at->str, at->len, 7);
    g_assert_cmpstr(at_got, ==, at_limit);
    /* An unbalanced message is skipped up to a line that starts with '{'. */
    g_autoptr(GString) open = run_of("", '[', 100, "\n{\"ok\": 1}\n");
    check_limits(0, 0, 50, open, depth_err, "V {\"ok\": 1}\n");

    /* Tokens: every bracket, comma and colon counts. */
    g_autoptr(GString) many = g_string_new("[");
    for (int i = 0; i < 100; i++) {
        g_string_append(many, "1,");
    }
    g_string_append(many, "1]{\"ok\": 1}");
    check_limits(0, 50, 0, many, count_err, "V {\"ok\": 1}\n");
    g_autoptr(GString) nine = g_string_new("{\"a\": [1, 2]}");
    check_limits(0, 9, 0, nine, "V {\"a\": [1, 2]}\n", "");
    check_limits(0, 8, 0, nine, count_err, "");
}

static void test_reset(void)
{
    g_autoptr(JsonReader) r = json_reader_new(0, 0, 0);
    json_object *value = NULL;
    size_t used;

    g_assert_cmpint(json_reader_feed(r, "{\"a\": [1, ", 10, &used, &value, NULL), ==,
                    JSON_READER_NEED_MORE);
    json_reader_reset(r);
    g_assert_cmpint(json_reader_feed(r, "{}", 2, &used, &value, NULL), ==,
                    JSON_READER_VALUE);
    json_object_put(value);
}

/* --- a whole session over a socketpair --- */

/* Runs the main context until `n` "\r\n"-terminated lines arrived on fd. */
static char *read_lines(int fd, int n)
{
    GString *got = g_string_new(NULL);
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    int lines = 0;

    while (lines < n && g_get_monotonic_time() < deadline) {
        char buf[4096];
        ssize_t r;

        g_main_context_iteration(NULL, FALSE);
        r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0) {
            g_string_append_len(got, buf, r);
            lines = 0;
            for (const char *p = got->str; (p = strstr(p, "\r\n")); p += 2) {
                lines++;
            }
        } else if (r == 0) {
            g_string_append(got, "<EOF>");
            break;
        } else {
            g_usleep(1000);
        }
    }
    return g_string_free(got, FALSE);
}

static void test_session(void)
{
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    monitor_serve_fd(sv[0], false);
    g_assert_cmpuint(monitor_session_count(), ==, 1);

    g_autofree char *greeting = read_lines(sv[1], 1);
    g_assert_true(g_str_has_prefix(greeting, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": "));
    g_assert_true(g_str_has_suffix(greeting, "\"capabilities\": [\"oob\"]}}\r\n"));

    /* Events wait for capabilities negotiation. */
    qmp_event_emit("EARLY", NULL);

    /* A request split across writes, then two in one write. */
    const char *req = "{\"execute\": \"qmp_capabilities\"}";
    for (const char *p = req; *p; p++) {
        g_assert_cmpint(send(sv[1], p, 1, 0), ==, 1);
        g_main_context_iteration(NULL, FALSE);
    }
    const char *two = "{\"execute\": \"nope\", \"id\": 1}\n{\"execute\": 1}";
    g_assert_cmpint(send(sv[1], two, strlen(two), 0), ==, (ssize_t) strlen(two));
    g_autofree char *replies = read_lines(sv[1], 3);
    g_assert_cmpstr(replies, ==,
                    "{\"return\": {}}\r\n"
                    "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", "
                    "\"desc\": \"The command nope has not been found\"}}\r\n"
                    "{\"error\": {\"class\": \"GenericError\", "
                    "\"desc\": \"QMP input member 'execute' must be a string\"}}\r\n");

    json_object *data = json_object_new_object();
    json_object_object_add(data, "id", json_object_new_string("e0"));
    qmp_event_emit("BLOCK_EXPORT_DELETED", data);
    g_autofree char *event = read_lines(sv[1], 1);
    g_assert_true(g_str_has_prefix(event, "{\"timestamp\": {\"seconds\": "));
    g_assert_true(g_str_has_suffix(event, "\"event\": \"BLOCK_EXPORT_DELETED\", "
                                          "\"data\": {\"id\": \"e0\"}}\r\n"));

    /* Garbage gets an error reply and the session goes on. */
    const char *junk = "{\"a\" 1}\n";
    g_assert_cmpint(send(sv[1], junk, strlen(junk), 0), ==, (ssize_t) strlen(junk));
    g_autofree char *err = read_lines(sv[1], 1);
    g_assert_cmpstr(err, ==, "{\"error\": {\"class\": \"GenericError\", "
                             "\"desc\": \"JSON parse error, missing : in object pair\"}}\r\n");

    /* An oversized message is answered while the peer is still sending
     * it; the rest of it is skipped and the session goes on. */
    const char *after = "]\n{\"execute\": \"query-version\", \"id\": \"after\"}\n";
    gsize big_len = 2 * JSON_READER_DEFAULT_MAX_BYTES;
    g_autofree char *big = g_malloc(big_len);
    memset(big, ' ', big_len);
    big[0] = '[';
    for (size_t off = 0; off < big_len;) {
        ssize_t r = send(sv[1], big + off, big_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            off += (size_t) r;
        } else {
            g_assert_cmpint(errno, ==, EAGAIN);
        }
        g_main_context_iteration(NULL, FALSE);
    }
    g_assert_cmpint(send(sv[1], after, strlen(after), 0), ==, (ssize_t) strlen(after));
    g_autofree char *two_more = read_lines(sv[1], 2);
    g_assert_true(g_str_has_prefix(two_more,
                                   "{\"error\": {\"class\": \"GenericError\", "
                                   "\"desc\": \"JSON token size limit exceeded\"}}\r\n"));
    g_assert_true(g_str_has_suffix(two_more, "\"id\": \"after\"}\r\n"));
    g_assert_cmpuint(monitor_session_count(), ==, 1);
    close(sv[1]);
    monitor_cleanup(0);
}

/* --- sessions under output pressure --- */

/* Runs the main context until `n` more "\r\n"-terminated messages arrived
 * on fd (appended to got), the peer closed, or 20 s passed; returns how
 * many arrived. Counts as it goes, so megabytes stay cheap. */
static int read_messages(int fd, GString *got, int n)
{
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    gsize scanned = got->len;
    int lines = 0;

    while (lines < n && g_get_monotonic_time() < deadline) {
        char buf[65536];
        ssize_t r;

        g_main_context_iteration(NULL, FALSE);
        r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            g_usleep(1000);
            continue;
        }
        g_string_append_len(got, buf, r);
        for (; scanned + 1 < got->len && lines < n; scanned++) {
            if (got->str[scanned] == '\r' && got->str[scanned + 1] == '\n') {
                lines++;
                scanned++;
            }
        }
    }
    return lines;
}

/* A session in command mode on one end of a socketpair; returns the
 * other end. */
static int open_session(void)
{
    int sv[2];
    g_autoptr(GString) got = g_string_new(NULL);
    const char *caps = "{\"execute\": \"qmp_capabilities\"}\n";

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    monitor_serve_fd(sv[0], false);
    g_assert_cmpint(send(sv[1], caps, strlen(caps), 0), ==, (ssize_t) strlen(caps));
    g_assert_cmpint(read_messages(sv[1], got, 2), ==, 2);
    g_assert_true(g_str_has_suffix(got->str, "{\"return\": {}}\r\n"));
    return sv[1];
}

static void close_session(int fd)
{
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

    close(fd);
    while (monitor_session_count() > 0 && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_cmpuint(monitor_session_count(), ==, 0);
}

/* The id of each message in `text`, in order, as a string. */
static char *message_ids(const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text, "\r\n", -1);
    GString *ids = g_string_new(NULL);

    for (char **l = lines; *l && **l; l++) {
        g_autoptr(json_object) msg = json_tokener_parse(*l);
        json_object *id = NULL;

        g_assert_nonnull(msg);
        g_string_append(ids, json_object_object_get_ex(msg, "id", &id)
                             ? json_object_get_string(id) : "-");
        g_string_append_c(ids, ' ');
    }
    return g_string_free(ids, FALSE);
}

/* Replies larger than the output low mark, and than the bound on
 * unread events. */
static bool reply_of(gsize len, json_object **ret)
{
    g_autofree char *text = g_strnfill(len, 'r');

    *ret = json_object_new_string_len(text, (int) len);
    return true;
}

static bool reply_100k(void *args, json_object **ret, GError **errp)
{
    return reply_of(100 * 1024, ret);
}

static bool reply_huge(void *args, json_object **ret, GError **errp)
{
    return reply_of(MONITOR_MAX_OUTPUT + 1024 * 1024, ret);
}

static void register_test_commands(void)
{
    static const QmpCommandDef test_commands[] = {
        { .name = "x-test-100k-reply", .handler = reply_100k },
        { .name = "x-test-huge-reply", .handler = reply_huge },
        QMP_COMMAND_END
    };
    static bool registered;

    if (!registered) {
        registered = true;
        monitor_init();
        qapi_register_commands(test_commands);
    }
}

static void send_str(int fd, const char *text)
{
    g_assert_cmpint(send(fd, text, strlen(text), 0), ==, (ssize_t) strlen(text));
}

/*
 * Once the queued output passes the low mark, parsing stops with input
 * still buffered; it must resume when the output drains, though no new
 * input comes: pipelined requests, or one request's own trailing newline.
 */
static void test_session_pipelined(void)
{
    int fd = open_session();
    g_autoptr(GString) reqs = g_string_new(NULL);
    g_autoptr(GString) want = g_string_new(NULL);
    g_autoptr(GString) got = g_string_new(NULL);
    const int n = 300; /* small requests, about 300 KiB of replies */

    register_test_commands();
    for (int i = 0; i < n; i++) {
        g_string_append_printf(reqs, "{\"execute\": \"query-commands\", \"id\": \"%d\"}\n", i);
        g_string_append_printf(want, "%d ", i);
    }
    send_str(fd, reqs->str);
    g_assert_cmpint(read_messages(fd, got, n), ==, n);
    g_autofree char *ids = message_ids(got->str);
    g_assert_cmpstr(ids, ==, want->str);

    g_string_truncate(got, 0);
    send_str(fd, "{\"execute\": \"x-test-100k-reply\", \"id\": \"big\"}\n");
    g_assert_cmpint(read_messages(fd, got, 1), ==, 1);
    g_assert_true(g_str_has_suffix(got->str, "rrr\", \"id\": \"big\"}\r\n"));

    g_string_truncate(got, 0);
    send_str(fd, "{\"execute\": \"query-version\", \"id\": \"last\"}\n");
    g_assert_cmpint(read_messages(fd, got, 1), ==, 1);
    g_assert_true(g_str_has_suffix(got->str, "\"id\": \"last\"}\r\n"));
    close_session(fd);
}

static void emit_padded_event(gsize len)
{
    g_autofree char *text = g_strnfill(len, 'e');
    json_object *data = json_object_new_object();

    json_object_object_add(data, "pad", json_object_new_string_len(text, (int) len));
    qmp_event_emit("TEST_EVENT", data); /* takes data */
}

/*
 * The bound on unread output is for events only: a peer that has not yet
 * read a large reply is not dropped when an event comes, while a peer that
 * never reads is dropped once its events pass MONITOR_MAX_OUTPUT.
 */
static void test_session_output_bound(void)
{
    register_test_commands();
    int fd = open_session();
    send_str(fd, "{\"execute\": \"x-test-huge-reply\", \"id\": \"big\"}\n");
    for (int i = 0; i < 100; i++) {
        g_main_context_iteration(NULL, FALSE);
    }
    emit_padded_event(100);
    g_assert_cmpuint(monitor_session_count(), ==, 1);
    g_autoptr(GString) got = g_string_new(NULL);
    g_assert_cmpint(read_messages(fd, got, 2), ==, 2);
    g_assert_true(g_str_has_prefix(got->str, "{\"return\": \"rrr"));
    g_assert_nonnull(strstr(got->str, "\"}\r\n{\"timestamp\": "));
    g_assert_nonnull(strstr(got->str, "\"event\": \"TEST_EVENT\""));
    close_session(fd);

    /* A peer that reads nothing: 1 MiB events until it is dropped. */
    fd = open_session();
    for (int i = 0; i < 32 && monitor_session_count() > 0; i++) {
        emit_padded_event(1024 * 1024);
        g_main_context_iteration(NULL, FALSE);
    }
    g_assert_cmpuint(monitor_session_count(), ==, 0);
    close(fd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/monitor-json/values", test_values);
    g_test_add_func("/monitor-json/batched", test_batched);
    g_test_add_func("/monitor-json/non-finite", test_non_finite);
    g_test_add_func("/monitor-json/strings", test_strings);
    g_test_add_func("/monitor-json/syntax-errors", test_syntax_errors);
    g_test_add_func("/monitor-json/lexical-errors", test_lexical_errors);
    g_test_add_func("/monitor-json/resync", test_resync);
    g_test_add_func("/monitor-json/limits", test_limits);
    g_test_add_func("/monitor-json/reset", test_reset);
    g_test_add_func("/monitor-json/session", test_session);
    g_test_add_func("/monitor-json/session-pipelined", test_session_pipelined);
    g_test_add_func("/monitor-json/session-output-bound", test_session_output_bound);
    return g_test_run();
}
