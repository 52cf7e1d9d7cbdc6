/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the channel watch: one end of a socketpair watched on a
 * private GMainContext, the other end driven by the test, and the context
 * run without blocking until it has nothing left to dispatch. The owner
 * below counts what it is told is ready and reads when it may; the TLS case
 * runs a PSK handshake through the watch and then reads one byte per
 * G_IO_IN, so all but the first come from records poll() cannot see.
 */
#include "io/channel-watch.h"
#include "io/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define KEY "9e32cf7786321a828ef7668f09fb35db"

typedef struct {
    BerthChannelWatch *w;
    BerthChannel *ch;
    int calls, readable, writable, hangups;
    GIOCondition hup_cond;
    GString *got;
    bool eof;
    size_t read_size;           /* bytes per read */
    bool write_once;            /* G_IO_OUT drops the write interest */
    bool free_in_writable;
    GMainContext *nested;       /* G_IO_IN runs this context a while first */
    int depth, max_depth, nested_iterations;
} Owner;

static void owner_read(Owner *o)
{
    char buf[4096];
    o->readable++;
    if (berth_channel_is_tls(o->ch) &&
        berth_tls_handshake(o->ch, NULL) != BERTH_TLS_HANDSHAKE_DONE) {
        return;
    }
    ssize_t n = berth_channel_read(o->ch, buf, MIN(o->read_size, sizeof(buf)), NULL);
    if (n > 0) {
        g_string_append_len(o->got, buf, n);
    } else if (n == 0) {
        o->eof = true;
        berth_channel_watch_set_read(o->w, false);
    } else {
        g_assert_cmpint(n, ==, BERTH_CHANNEL_AGAIN);
    }
}

static void on_ready(void *opaque, GIOCondition ready)
{
    Owner *o = opaque;
    g_assert_cmpint(ready, !=, 0);
    o->calls++;
    if (ready & G_IO_OUT) {
        o->writable++;
        if (o->write_once) {
            berth_channel_watch_set_write(o->w, false);
        }
        if (o->free_in_writable) {
            berth_channel_watch_free(o->w);
            o->w = NULL;
            return;
        }
    }
    if ((ready & G_IO_IN) && o->nested) {
        /* As a blocking open inside a QMP command does: the fd stays
         * readable, and the nested loop must neither re-enter us nor spin. */
        GMainContext *ctx = g_steal_pointer(&o->nested);
        o->depth++;
        o->max_depth = MAX(o->max_depth, o->depth);
        while (o->nested_iterations < 50 && g_main_context_iteration(ctx, FALSE)) {
            o->nested_iterations++;
        }
        o->depth--;
    }
    if (ready & G_IO_IN) {
        owner_read(o);
    }
    if (ready & (G_IO_HUP | G_IO_ERR)) {
        o->hangups++;
        o->hup_cond |= ready & (G_IO_HUP | G_IO_ERR);
    }
}

typedef struct {
    GMainContext *ctx;
    Owner o;
    int peer;                   /* the test's end of the socketpair */
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    int fds[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
    f->ctx = g_main_context_new();
    f->peer = fds[1];
    f->o.ch = berth_channel_socket_new(fds[0]);
    f->o.got = g_string_new(NULL);
    f->o.read_size = 4096;
    f->o.write_once = true;
    f->o.w = berth_channel_watch_new(f->o.ch, f->ctx, "test-watch", on_ready, &f->o);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    berth_channel_watch_free(f->o.w);
    berth_channel_unref(f->o.ch);
    if (f->peer >= 0) {
        close(f->peer);
    }
    g_string_free(f->o.got, TRUE);
    g_main_context_unref(f->ctx);
}

/* Dispatch until idle; the count shows a watch that would spin. */
static int run(Fixture *f)
{
    int n = 0;
    while (n < 1000 && g_main_context_iteration(f->ctx, FALSE)) {
        n++;
    }
    return n;
}

static void peer_send(Fixture *f, const char *s)
{
    g_assert_cmpint(write(f->peer, s, strlen(s)), ==, (ssize_t) strlen(s));
}

static void test_read_interest(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f), ==, 0);
    g_assert_cmpint(f->o.readable, ==, 0);
    peer_send(f, "abc");
    run(f);
    g_assert_cmpstr(f->o.got->str, ==, "abc");
    int before = f->o.readable;

    /* Paused: the input waits in the socket. */
    berth_channel_watch_set_read(f->o.w, false);
    peer_send(f, "de");
    g_assert_cmpint(run(f), ==, 0);
    g_assert_cmpint(f->o.readable, ==, before);
    berth_channel_watch_set_read(f->o.w, true);
    run(f);
    g_assert_cmpstr(f->o.got->str, ==, "abcde");
    g_assert_cmpint(f->o.writable, ==, 0);
    g_assert_cmpint(f->o.hangups, ==, 0);
}

static void test_write_interest(Fixture *f, gconstpointer data)
{
    berth_channel_watch_set_read(f->o.w, false);
    berth_channel_watch_set_write(f->o.w, true);
    run(f);
    g_assert_cmpint(f->o.writable, ==, 1);
    /* A kick reports G_IO_OUT once without any interest, however often. */
    berth_channel_watch_kick_write(f->o.w);
    berth_channel_watch_kick_write(f->o.w);
    g_assert_cmpint(run(f), ==, 1);
    g_assert_cmpint(f->o.writable, ==, 2);
    g_assert_cmpint(f->o.readable, ==, 0);
}

static void test_kick_read(Fixture *f, gconstpointer data)
{
    berth_channel_watch_set_read(f->o.w, false);
    berth_channel_watch_kick_read(f->o.w);
    berth_channel_watch_kick_read(f->o.w);
    g_assert_cmpint(run(f), ==, 1);
    g_assert_cmpint(f->o.readable, ==, 1);
    g_assert_cmpstr(f->o.got->str, ==, "");
}

static void test_hangup(Fixture *f, gconstpointer data)
{
    peer_send(f, "xyz");
    close(f->peer);
    f->peer = -1;
    /* Read to the end; then, interested in nothing, the fd stops waking us. */
    g_assert_cmpint(run(f), <, 5);
    g_assert_cmpstr(f->o.got->str, ==, "xyz");
    g_assert_true(f->o.eof);
    g_assert_cmpint(f->o.hangups, >=, 1);
    g_assert_true(f->o.hup_cond & G_IO_HUP);
    int readable = f->o.readable, hangups = f->o.hangups;
    g_assert_cmpint(run(f), ==, 0);

    /* Kicks still arrive; an interest brings the fd back. */
    berth_channel_watch_kick_read(f->o.w);
    g_assert_cmpint(run(f), ==, 1);
    g_assert_cmpint(f->o.readable, ==, readable + 1);
    g_assert_cmpint(f->o.hangups, ==, hangups);
    berth_channel_watch_set_read(f->o.w, true);
    g_assert_cmpint(run(f), ==, 1);
    g_assert_cmpint(f->o.readable, ==, readable + 2);
    g_assert_cmpint(f->o.hangups, ==, hangups + 1);
    g_assert_cmpint(run(f), ==, 0);
}

static void test_free_in_callback(Fixture *f, gconstpointer data)
{
    int fd = berth_channel_fd(f->o.ch);
    f->o.free_in_writable = true;
    berth_channel_watch_set_write(f->o.w, true);
    peer_send(f, "late");
    g_assert_cmpint(run(f), ==, 1);
    g_assert_cmpint(f->o.calls, ==, 1);
    g_assert_cmpint(f->o.writable, ==, 1);
    g_assert_cmpint(f->o.readable, ==, 0);
    g_assert_null(f->o.w);
    /* The watch let go of the channel at once: the owner's unref closes it. */
    g_clear_pointer(&f->o.ch, berth_channel_unref);
    g_assert_cmpint(fcntl(fd, F_GETFD), ==, -1);
    g_assert_cmpint(errno, ==, EBADF);
}

static void test_nested_loop(Fixture *f, gconstpointer data)
{
    peer_send(f, "abc");
    f->o.nested = f->ctx;
    f->o.read_size = 1;
    run(f);
    g_assert_cmpint(f->o.max_depth, ==, 1);
    /* One dispatch that found us busy, then the fd was out of the poll set. */
    g_assert_cmpint(f->o.nested_iterations, <=, 1);
    /* Back in the poll set afterwards: the rest is read, a byte at a time. */
    g_assert_cmpstr(f->o.got->str, ==, "abc");
    peer_send(f, "d");
    run(f);
    g_assert_cmpstr(f->o.got->str, ==, "abcd");
}

static BerthTlsCreds *psk_creds(const char *dir, BerthTlsEndpoint endpoint)
{
    g_autoptr(GError) err = NULL;
    const char *user = endpoint == BERTH_TLS_ENDPOINT_CLIENT ? "alice" : NULL;
    BerthTlsCreds *c = berth_tls_creds_new_psk(dir, endpoint, user, NULL, &err);
    g_assert_no_error(err);
    return c;
}

static void test_tls_pending(Fixture *f, gconstpointer data)
{
    g_autofree char *dir = g_dir_make_tmp("berth-watch-XXXXXX", NULL);
    g_autofree char *keys = g_build_filename(dir, "keys.psk", NULL);
    g_assert_true(g_file_set_contents(keys, "alice:" KEY "\n", -1, NULL));
    g_autoptr(BerthTlsCreds) sc = psk_creds(dir, BERTH_TLS_ENDPOINT_SERVER);
    g_autoptr(BerthTlsCreds) cc = psk_creds(dir, BERTH_TLS_ENDPOINT_CLIENT);

    g_autoptr(GError) err = NULL;
    g_autoptr(BerthChannel) peer = berth_channel_socket_new(f->peer);
    f->peer = -1;
    g_autoptr(BerthChannel) client = berth_tls_channel_new(peer, cc, NULL, &err);
    g_assert_no_error(err);
    BerthChannel *server = berth_tls_channel_new(f->o.ch, sc, NULL, &err);
    g_assert_no_error(err);
    berth_channel_unref(f->o.ch);
    f->o.ch = server;
    berth_channel_watch_set_channel(f->o.w, server);

    /* The server's handshake runs on G_IO_IN, as the channel asks
     * (and reads the key file: it goes at the end). */
    BerthTlsHandshakeStatus st = BERTH_TLS_HANDSHAKE_AGAIN;
    for (int i = 0; i < 100; i++) {
        if (st == BERTH_TLS_HANDSHAKE_AGAIN) {
            st = berth_tls_handshake(client, &err);
            g_assert_no_error(err);
        }
        run(f);
        if (st == BERTH_TLS_HANDSHAKE_DONE &&
            berth_tls_handshake(server, NULL) == BERTH_TLS_HANDSHAKE_DONE) {
            break;
        }
    }
    g_assert_cmpint(st, ==, BERTH_TLS_HANDSHAKE_DONE);
    g_assert_cmpstr(berth_tls_peer_identity(server), ==, "alice");

    /* One record, read a byte at a time: the fd is drained by the first
     * read, the rest is pending inside TLS. */
    int before = f->o.readable;
    f->o.read_size = 1;
    g_assert_cmpint(berth_channel_write(client, "hello world", 11, NULL), ==, 11);
    run(f);
    g_assert_cmpstr(f->o.got->str, ==, "hello world");
    g_assert_cmpint(f->o.readable - before, >=, 11);
    g_assert_cmpuint(berth_channel_pending(server), ==, 0);
    g_unlink(keys);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/io/watch/read-interest", test_read_interest);
    ADD("/io/watch/write-interest", test_write_interest);
    ADD("/io/watch/kick-read", test_kick_read);
    ADD("/io/watch/hangup", test_hangup);
    ADD("/io/watch/free-in-callback", test_free_in_callback);
    ADD("/io/watch/nested-loop", test_nested_loop);
    ADD("/io/watch/tls-pending", test_tls_pending);
    return g_test_run();
}
