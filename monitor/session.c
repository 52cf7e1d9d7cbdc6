/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One QMP session on a BerthChannel watched by io/channel-watch: the
 * greeting, then a loop of read → JSON reader → qapi_dispatch() → queued
 * reply, with events
 * queued to every session past capabilities negotiation. Requests are
 * parsed only while the queued output is below a low mark, so a peer that
 * sends requests but never reads replies stops being read instead of
 * growing our buffers; once its output drains, the input it has already
 * sent is parsed again before anything more is read.
 */
#include "monitor-int.h"
#include "monitor/json-reader.h"
#include "qapi/json-writer.h"
#include "berth/qapi/qapi.h"
#include "io/channel-watch.h"

#include <string.h>

/* Bytes read per wakeup; also the most unparsed input a session holds. */
#define READ_CHUNK 4096
/* Requests wait while this much output is queued. */
#define OUTPUT_LOW_MARK (64 * 1024)

struct MonitorSession {
    gint refs;
    BerthChannel *ch;       /* NULL once closed; input, and output too ... */
    BerthChannel *out_ch;   /* ... unless this is set (stdio: fds 0 and 1) */
    bool pretty;
    bool eof;        /* the peer will send nothing more */
    bool closed;
    QmpSession qmp;
    JsonReader *reader;
    GByteArray *in;  /* read, not yet parsed */
    GString *out;    /* queued output ... */
    gsize out_sent;  /* ... of which this much is written */
    gsize reply_end; /* ... and the last reply ends here: all after it are events */
    BerthChannelWatch *watch;
    BerthChannelWatch *out_watch; /* with out_ch */
    MonitorSessionClosed closed_cb;
    gpointer closed_opaque;
};

static GList *sessions;

static MonitorSession *session_ref(MonitorSession *s)
{
    s->refs++;
    return s;
}

static void session_unref(MonitorSession *s)
{
    if (--s->refs > 0) {
        return;
    }
    json_reader_free(s->reader);
    g_byte_array_free(s->in, TRUE);
    g_string_free(s->out, TRUE);
    g_free(s);
}

static BerthChannel *output_channel(MonitorSession *s)
{
    return s->out_ch ? s->out_ch : s->ch;
}

static BerthChannelWatch *output_watch(MonitorSession *s)
{
    return s->out_watch ? s->out_watch : s->watch;
}

static gsize output_pending(MonitorSession *s)
{
    return s->out->len - s->out_sent;
}

/* Queue one message in QEMU's framing: JSON, then "\r\n" (also for the
 * line breaks of pretty output). */
static void session_queue(MonitorSession *s, json_object *msg)
{
    g_autoptr(GString) text = g_string_new(NULL);

    if (s->closed) {
        return;
    }
    qapi_json_append(text, msg, s->pretty);
    /* Lines end in CRLF on the wire, as QEMU's do (pretty output has many). */
    const char *p = text->str, *end = text->str + text->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        if (!nl) {
            g_string_append_len(s->out, p, end - p);
            break;
        }
        g_string_append_len(s->out, p, nl - p);
        g_string_append_len(s->out, "\r\n", 2);
        p = nl + 1;
    }
    g_string_append(s->out, "\r\n");
}

/* Write what the channel takes now. False if the connection is gone. */
static bool session_write(MonitorSession *s)
{
    while (output_pending(s) > 0) {
        ssize_t n = berth_channel_write(output_channel(s), s->out->str + s->out_sent, output_pending(s),
                                        NULL);
        if (n == BERTH_CHANNEL_AGAIN) {
            return true;
        }
        if (n < 0) {
            return false;
        }
        s->out_sent += (gsize) n;
    }
    /* Everything went out: reuse the buffer from its start. */
    g_string_truncate(s->out, 0);
    s->out_sent = 0;
    s->reply_end = 0;
    return true;
}

/*
 * Output the peer left unread behind its last reply: events only. What
 * lies before that reply is bounded already (a request is parsed only
 * while less than OUTPUT_LOW_MARK is queued), so these bytes are what
 * grows without bound for a peer that never reads.
 */
static gsize unread_events(MonitorSession *s)
{
    return s->out->len - MAX(s->reply_end, s->out_sent);
}

static void session_update_watch(MonitorSession *s)
{
    bool may_parse = output_pending(s) < OUTPUT_LOW_MARK;

    berth_channel_watch_set_read(s->watch, !s->eof && s->in->len == 0 && may_parse);
    berth_channel_watch_set_write(output_watch(s), output_pending(s) > 0);
    /*
     * Input left over when the output went above the low mark waits for no
     * socket event: the peer sent it already. Once the output is below the
     * mark again (written here, or by an event's write), dispatch at once.
     */
    if (s->in->len > 0 && may_parse) {
        berth_channel_watch_kick_read(s->watch);
    }
}

static void session_queue_reply(MonitorSession *s, json_object *reply)
{
    session_queue(s, reply);
    s->reply_end = s->out->len;
}

static void session_handle_value(MonitorSession *s, json_object *request)
{
    json_object *reply = qapi_dispatch(&s->qmp, request);

    session_queue_reply(s, reply);
    json_object_put(reply);
}

/* Parse and dispatch buffered input while the output has room. */
static void session_process_input(MonitorSession *s)
{
    while (!s->closed && s->in->len > 0 && output_pending(s) < OUTPUT_LOW_MARK) {
        json_object *value = NULL;
        g_autoptr(GError) err = NULL;
        size_t used = 0;
        JsonReaderStatus st = json_reader_feed(s->reader, (const char *) s->in->data,
                                               s->in->len, &used, &value, &err);

        g_byte_array_remove_range(s->in, 0, (guint) used);
        switch (st) {
        case JSON_READER_NEED_MORE:
            break;
        case JSON_READER_VALUE:
            session_handle_value(s, value);
            json_object_put(value);
            break;
        case JSON_READER_ERROR: {
            /* Malformed or over a limit: the reader skips that message and
             * the session goes on, as QEMU's does. */
            json_object *reply = qapi_error_reply(err, NULL);
            session_queue_reply(s, reply);
            json_object_put(reply);
            break;
        }
        }
    }
}

static bool session_read(MonitorSession *s)
{
    guint8 buf[READ_CHUNK];
    ssize_t n = berth_channel_read(s->ch, buf, sizeof(buf), NULL);

    if (n > 0) {
        g_byte_array_append(s->in, buf, (guint) n);
    } else if (n == 0) {
        s->eof = true;
    } else if (n == BERTH_CHANNEL_ERROR) {
        return false;
    }
    return true;
}

/*
 * One turn of the session: write what is queued (when the channel can
 * take it), read one chunk (when it has some and nothing unparsed waits),
 * answer what was read, and after the peer's EOF hang up once all is
 * answered. A socket error ends the session after the turn.
 */
static void session_ready(void *opaque, GIOCondition ready)
{
    MonitorSession *s = session_ref(opaque);
    bool alive = true;

    if (ready & G_IO_OUT) {
        alive = session_write(s);
    }
    if (alive && (ready & G_IO_IN) && !s->eof && s->in->len == 0) {
        alive = session_read(s);
    }
    if (alive) {
        session_process_input(s);
        alive = !s->closed && session_write(s);
    }
    if (alive && s->eof && s->in->len == 0 && output_pending(s) == 0) {
        alive = false;
    }
    if (!alive || (ready & G_IO_ERR)) {
        monitor_session_close(s);
    } else if (!s->closed) {
        session_update_watch(s);
    }
    session_unref(s);
}


static json_object *greeting(void)
{
    const QmpCommandDef *qv = qapi_find_command("query-version");
    json_object *version = NULL;
    json_object *body = json_object_new_object();
    json_object *msg = json_object_new_object();
    json_object *caps = json_object_new_array();

    if (!qv || !qapi_run_command(qv, NULL, false, &version, NULL)) {
        version = json_object_new_object();
    }
    json_object_array_add(caps, json_object_new_string("oob"));
    json_object_object_add(body, "version", version);
    json_object_object_add(body, "capabilities", caps);
    json_object_object_add(msg, "QMP", body);
    return msg;
}

MonitorSession *monitor_session_new_split(int in_fd, int out_fd, bool pretty,
                                          MonitorSessionClosed closed, gpointer opaque)
{
    MonitorSession *s = g_new0(MonitorSession, 1);

    monitor_init();
    s->refs = 1;
    s->ch = berth_channel_socket_new(in_fd);
    if (out_fd >= 0) {
        s->out_ch = berth_channel_socket_new(out_fd);
    }
    s->pretty = pretty;
    s->reader = json_reader_new(0, 0, 0);
    s->in = g_byte_array_new();
    s->out = g_string_new(NULL);
    s->closed_cb = closed;
    s->closed_opaque = opaque;
    s->watch = berth_channel_watch_new(s->ch, g_main_context_get_thread_default(),
                                       "berth-qmp-session", session_ready, s);
    if (s->out_ch) {
        s->out_watch = berth_channel_watch_new(s->out_ch, g_main_context_get_thread_default(),
                                               "berth-qmp-session-out", session_ready, s);
    }
    sessions = g_list_append(sessions, s);

    json_object *hello = greeting();
    session_queue_reply(s, hello);
    json_object_put(hello);
    if (!session_write(s)) {
        monitor_session_close(s);
        return NULL;
    }
    session_update_watch(s);
    return s;
}

MonitorSession *monitor_session_new(int fd, bool pretty, MonitorSessionClosed closed,
                                    gpointer opaque)
{
    return monitor_session_new_split(fd, -1, pretty, closed, opaque);
}

void monitor_session_close(MonitorSession *s)
{
    if (s->closed) {
        return;
    }
    s->closed = true;
    sessions = g_list_remove(sessions, s);
    /* The last references: the socket closes here. */
    g_clear_pointer(&s->watch, berth_channel_watch_free);
    g_clear_pointer(&s->out_watch, berth_channel_watch_free);
    g_clear_pointer(&s->ch, berth_channel_unref);
    g_clear_pointer(&s->out_ch, berth_channel_unref);
    if (s->closed_cb) {
        s->closed_cb(s, s->closed_opaque);
    }
    session_unref(s);
}

void monitor_session_flush(MonitorSession *s, gint64 deadline)
{
    while (!s->closed && output_pending(s) > 0) {
        gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;

        if (left_ms <= 0 || !berth_channel_wait(output_channel(s), G_IO_OUT, (int) MIN(left_ms, 1000), NULL) ||
            !session_write(s)) {
            return;
        }
    }
    /*
     * Closing a socket with unread input makes the kernel reset the
     * connection, and the peer may then lose the reply it has not read yet
     * (the "quit" answer). Drop what little is pending first.
     */
    for (int i = 0; !s->closed && i < 16; i++) {
        char buf[READ_CHUNK];
        if (berth_channel_read(s->ch, buf, sizeof(buf), NULL) <= 0) {
            break;
        }
    }
}

void monitor_session_foreach(void (*fn)(MonitorSession *s, gpointer opaque), gpointer opaque)
{
    /* fn may close sessions: walk a copy, holding references. */
    GList *copy = g_list_copy(sessions);

    for (GList *l = copy; l; l = l->next) {
        session_ref(l->data);
    }
    for (GList *l = copy; l; l = l->next) {
        MonitorSession *s = l->data;
        if (!s->closed) {
            fn(s, opaque);
        }
        session_unref(s);
    }
    g_list_free(copy);
}

guint monitor_session_total(void)
{
    return g_list_length(sessions);
}

/* --- events --- */

static void queue_event(MonitorSession *s, gpointer opaque)
{
    if (!s->qmp.command_mode) {
        return;
    }
    session_queue(s, opaque);
    if (unread_events(s) > MONITOR_MAX_OUTPUT) {
        /* A peer that never reads would make us hold its events forever. */
        g_message("QMP session dropped: more than %d bytes of unread events",
                  MONITOR_MAX_OUTPUT);
        monitor_session_close(s);
        return;
    }
    /* Events may come from anywhere, so start writing them here. */
    if (!session_write(s)) {
        monitor_session_close(s);
    } else {
        session_update_watch(s);
    }
}

static void emit_event(const char *name, json_object *data, gpointer opaque)
{
    gint64 now = g_get_real_time();
    json_object *msg = json_object_new_object();
    json_object *ts = json_object_new_object();

    json_object_object_add(ts, "seconds", json_object_new_int64(now / G_USEC_PER_SEC));
    json_object_object_add(ts, "microseconds", json_object_new_int64(now % G_USEC_PER_SEC));
    json_object_object_add(msg, "event", json_object_new_string(name));
    json_object_object_add(msg, "data", json_object_get(data));
    json_object_object_add(msg, "timestamp", ts);
    monitor_session_foreach(queue_event, msg);
    json_object_put(msg);
}

void monitor_session_init_events(void)
{
    qmp_event_set_emitter(emit_event, NULL);
}
