/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the TLS channel and its credentials: two channels over a
 * socketpair, driven by hand (both ends non-blocking, stepped in turn, so
 * every AGAIN path runs), with PSK credentials written by the test. x509
 * and the NBD side are covered end to end by tests/functional/test_tls.py.
 */
#include "io/tls.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define KEY_ALICE "9e32cf7786321a828ef7668f09fb35db"
#define KEY_OTHER "00112233445566778899aabbccddeeff"

typedef struct {
    char *dir;
    char *server_dir, *alice_dir, *wrong_dir;
} Fixture;

static char *make_psk_dir(const char *base, const char *name, const char *contents)
{
    char *dir = g_build_filename(base, name, NULL);
    g_mkdir(dir, 0700);
    g_autofree char *path = g_build_filename(dir, "keys.psk", NULL);
    g_assert_true(g_file_set_contents(path, contents, -1, NULL));
    return dir;
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("berth-tls-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->server_dir = make_psk_dir(f->dir, "server", "bob:" KEY_OTHER "\nalice:" KEY_ALICE "\n");
    f->alice_dir = make_psk_dir(f->dir, "alice", "alice:" KEY_ALICE "\n");
    f->wrong_dir = make_psk_dir(f->dir, "wrong", "alice:" KEY_OTHER "\n");
}

static void rm_dir(const char *dir)
{
    g_autofree char *path = g_build_filename(dir, "keys.psk", NULL);
    g_unlink(path);
    g_rmdir(dir);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    rm_dir(f->server_dir);
    rm_dir(f->alice_dir);
    rm_dir(f->wrong_dir);
    g_rmdir(f->dir);
    g_free(f->server_dir);
    g_free(f->alice_dir);
    g_free(f->wrong_dir);
    g_free(f->dir);
}

typedef struct {
    BerthChannel *server, *client;
} Pair;

static Pair make_pair(BerthTlsCreds *server_creds, BerthTlsCreds *client_creds)
{
    int fds[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
    /* Small buffers so that large transfers hit AGAIN in the middle. */
    int sz = 16384;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    g_autoptr(BerthChannel) a = berth_channel_socket_new(fds[0]);
    g_autoptr(BerthChannel) b = berth_channel_socket_new(fds[1]);
    g_autoptr(GError) err = NULL;
    Pair p;
    p.server = berth_tls_channel_new(a, server_creds, NULL, &err);
    g_assert_no_error(err);
    p.client = berth_tls_channel_new(b, client_creds, "localhost", &err);
    g_assert_no_error(err);
    g_assert_true(berth_channel_is_tls(p.server));
    g_assert_false(berth_channel_is_tls(a));
    return p;
}

static void pair_free(Pair *p)
{
    berth_channel_unref(p->server);
    berth_channel_unref(p->client);
}

/* Step both handshakes until neither can move; true when both are done. */
static bool handshake_both(Pair *p, GError **server_err, GError **client_err)
{
    BerthTlsHandshakeStatus s = BERTH_TLS_HANDSHAKE_AGAIN, c = BERTH_TLS_HANDSHAKE_AGAIN;
    for (int i = 0; i < 100; i++) {
        if (c == BERTH_TLS_HANDSHAKE_AGAIN) {
            c = berth_tls_handshake(p->client, client_err);
        }
        if (s == BERTH_TLS_HANDSHAKE_AGAIN) {
            s = berth_tls_handshake(p->server, server_err);
        }
        if (s != BERTH_TLS_HANDSHAKE_AGAIN && c != BERTH_TLS_HANDSHAKE_AGAIN) {
            break;
        }
        if (s == BERTH_TLS_HANDSHAKE_ERROR || c == BERTH_TLS_HANDSHAKE_ERROR) {
            /* The other side learns of it from EOF. */
            berth_channel_shutdown(s == BERTH_TLS_HANDSHAKE_ERROR ? p->server : p->client);
        }
    }
    return s == BERTH_TLS_HANDSHAKE_DONE && c == BERTH_TLS_HANDSHAKE_DONE;
}

static BerthTlsCreds *server_creds(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    BerthTlsCreds *c = berth_tls_creds_new_psk(f->server_dir, BERTH_TLS_ENDPOINT_SERVER, NULL,
                                               NULL, &err);
    g_assert_no_error(err);
    return c;
}

static BerthTlsCreds *client_creds(const char *dir)
{
    g_autoptr(GError) err = NULL;
    BerthTlsCreds *c = berth_tls_creds_new_psk(dir, BERTH_TLS_ENDPOINT_CLIENT, "alice", NULL,
                                               &err);
    g_assert_no_error(err);
    return c;
}

static void test_psk_transfer(Fixture *f, gconstpointer data)
{
    g_autoptr(BerthTlsCreds) sc = server_creds(f);
    g_autoptr(BerthTlsCreds) cc = client_creds(f->alice_dir);
    Pair p = make_pair(sc, cc);

    /* Before the handshake the channel refuses data. */
    g_autoptr(GError) early = NULL;
    char byte = 0;
    g_assert_cmpint(berth_channel_write(p.client, &byte, 1, &early), ==, BERTH_CHANNEL_ERROR);
    g_assert_nonnull(early);

    g_autoptr(GError) se = NULL, ce = NULL;
    g_assert_true(handshake_both(&p, &se, &ce));
    g_assert_no_error(se);
    g_assert_no_error(ce);
    g_assert_cmpstr(berth_tls_peer_identity(p.server), ==, "alice");
    g_assert_cmpint(berth_tls_handshake(p.server, NULL), ==, BERTH_TLS_HANDSHAKE_DONE);

    /* 1 MiB each way, written as three iovecs of odd sizes, read into two. */
    size_t len = 1024 * 1024 + 7;
    g_autofree uint8_t *out = g_malloc(len), *in = g_malloc0(len);
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t) (i * 31 + 7);
    }
    size_t sent = 0, got = 0;
    int agains = 0; /* writes cut short by AGAIN */
    while (got < len) {
        if (sent < len) {
            size_t left = len - sent, a = MIN(left, 13), b = MIN(left - a, 40000);
            struct iovec iov[3] = {
                { out + sent, a }, { out + sent + a, b }, { out + sent + a + b, left - a - b },
            };
            g_autoptr(GError) err = NULL;
            ssize_t n = berth_channel_writev(p.client, iov, 3, &err);
            g_assert_no_error(err);
            if (n == BERTH_CHANNEL_AGAIN) {
                agains++;
                g_assert_cmpint(berth_channel_wants(p.client, G_IO_OUT), ==, G_IO_OUT);
            } else {
                g_assert_cmpint(n, >, 0);
                agains += (size_t) n < left; /* stopped by a full socket */
                sent += n;
            }
        }
        size_t room = len - got, half = room / 2;
        struct iovec iov[2] = { { in + got, half }, { in + got + half, room - half } };
        g_autoptr(GError) err = NULL;
        ssize_t n = berth_channel_readv(p.server, iov, 2, &err);
        g_assert_no_error(err);
        if (n > 0) {
            got += n;
        } else {
            g_assert_cmpint(n, ==, BERTH_CHANNEL_AGAIN);
        }
    }
    g_assert_cmpint(agains, >, 0);
    g_assert_true(memcmp(in, out, len) == 0);
    g_assert_cmpuint(berth_channel_pending(p.server), ==, 0);

    /* A short message leaves bytes pending inside TLS when read in part. */
    g_assert_cmpint(berth_channel_write(p.server, "hello", 5, NULL), ==, 5);
    char buf[8] = "";
    ssize_t n;
    while ((n = berth_channel_read(p.client, buf, 2, NULL)) == BERTH_CHANNEL_AGAIN) {
    }
    g_assert_cmpint(n, ==, 2);
    g_assert_cmpuint(berth_channel_pending(p.client), ==, 3);
    g_assert_cmpint(berth_channel_read(p.client, buf + 2, 3, NULL), ==, 3);
    g_assert_cmpstr(buf, ==, "hello");

    /* Shutdown is end of stream for the peer. */
    berth_channel_shutdown(p.client);
    while ((n = berth_channel_read(p.server, buf, sizeof(buf), NULL)) == BERTH_CHANNEL_AGAIN) {
    }
    g_assert_cmpint(n, ==, 0);
    pair_free(&p);
}

static void test_psk_wrong_key(Fixture *f, gconstpointer data)
{
    g_autoptr(BerthTlsCreds) sc = server_creds(f);
    g_autoptr(BerthTlsCreds) cc = client_creds(f->wrong_dir);
    Pair p = make_pair(sc, cc);
    g_autoptr(GError) se = NULL, ce = NULL;
    g_assert_false(handshake_both(&p, &se, &ce));
    g_assert_true(se || ce);
    pair_free(&p);
}

static void test_creds_errors(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *empty = g_build_filename(f->dir, "nothing-here", NULL);
    g_assert_null(berth_tls_creds_new_x509(empty, BERTH_TLS_ENDPOINT_SERVER, true, NULL, &err));
    g_autofree char *want = g_strdup_printf("Unable to access credentials %s/ca-cert.pem: "
                                            "No such file or directory", empty);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);

    g_assert_null(berth_tls_creds_new_psk(f->alice_dir, BERTH_TLS_ENDPOINT_CLIENT, "zed", NULL,
                                          &err));
    g_assert_nonnull(strstr(err->message, "Username zed not found in PSK file"));
    g_clear_error(&err);

    g_assert_null(berth_tls_creds_new_psk(f->server_dir, BERTH_TLS_ENDPOINT_SERVER, NULL,
                                          "NOT-A-PRIORITY", &err));
    g_assert_nonnull(strstr(err->message, "NOT-A-PRIORITY"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/io/tls/psk-transfer", Fixture, NULL, fixture_setup, test_psk_transfer,
               fixture_teardown);
    g_test_add("/io/tls/psk-wrong-key", Fixture, NULL, fixture_setup, test_psk_wrong_key,
               fixture_teardown);
    g_test_add("/io/tls/creds-errors", Fixture, NULL, fixture_setup, test_creds_errors,
               fixture_teardown);
    return g_test_run();
}
