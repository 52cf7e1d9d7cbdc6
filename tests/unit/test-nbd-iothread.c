/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of exports on an I/O thread (NBDExportConfig.ctx): a client
 * negotiates on the main context and is then served by the I/O thread alone
 * (the test stops iterating the main context, and requests are still
 * answered); closing the export from the main context closes the client
 * before it returns; a peer that hangs up is closed by the I/O thread and
 * its close callback still runs on the main context; ctx_release runs once,
 * on the main context, when the export is freed, and never when creation
 * fails; an export whose context is the main context itself works too.
 */
#include "nbd-test-util.h"
#include "util/iothread.h"

#include <poll.h>

#define NODE_SIZE (4 * 1024 * 1024)

static GThread *main_thread;
static int client_closed;
static bool client_closed_on_main;
static int released;
static bool released_on_main;

static void on_client_close(NBDConn *client, bool negotiated)
{
    client_closed++;
    client_closed_on_main = g_thread_self() == main_thread;
}

static void on_release(gpointer data)
{
    g_assert_cmpstr(data, ==, "io-test");
    released++;
    released_on_main = g_thread_self() == main_thread;
}

static void reset(void)
{
    client_closed = released = 0;
    client_closed_on_main = released_on_main = false;
}

static void send_all(int fd, const void *buf, size_t len)
{
    g_assert_cmpint(send(fd, buf, len, MSG_NOSIGNAL), ==, (ssize_t) len);
}

/* Exactly len bytes, serving the main context meanwhile when asked to. */
static void recv_all(int fd, void *buf, size_t len, bool serve_main)
{
    size_t got = 0;
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (got < len && g_get_monotonic_time() < deadline) {
        if (serve_main) {
            drain_main_context();
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, serve_main ? 1 : 100) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, (char *) buf + got, len - got, MSG_DONTWAIT);
        if (n <= 0) {
            break;
        }
        got += n;
    }
    g_assert_cmpuint(got, ==, len);
}

/* Greeting, flags, GO for the bound export, on the main context. */
static void negotiate(int fd)
{
    uint8_t buf[512];
    recv_all(fd, buf, NBD_GREETING_SIZE, true);
    send_all(fd, buf, nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE |
                                                   NBD_FLAG_C_NO_ZEROES));
    uint8_t data[64];
    size_t dl = nbd_encode_opt_info_go(data, sizeof(data), "", 0, NULL, 0);
    size_t n = nbd_encode_option_header(buf, NBD_OPT_GO, dl);
    memcpy(buf + n, data, dl);
    send_all(fd, buf, n + dl);
    for (;;) {
        NBDOptionReplyHeader h;
        recv_all(fd, buf, NBD_OPTION_REPLY_HEADER_SIZE, true);
        nbd_decode_option_reply_header(buf, NBD_OPTION_REPLY_HEADER_SIZE, &h);
        if (h.type == NBD_REP_ACK) {
            break;
        }
        g_assert_cmpuint(h.type, ==, NBD_REP_INFO);
        recv_all(fd, buf, h.length, true);
    }
}

/* A simple-reply request; returns the reply's error, data into `out`. */
static bool serve_main_in_requests;

static uint32_t request(int fd, uint16_t type, uint64_t cookie, uint64_t offset, uint32_t len,
                        const void *payload, void *out)
{
    g_autofree uint8_t *buf = g_malloc(NBD_REQUEST_SIZE + len);
    NBDRequest req = { .type = type, .cookie = cookie, .offset = offset, .length = len };
    size_t n = nbd_encode_request(buf, NBD_MODE_SIMPLE, &req);
    if (payload) {
        memcpy(buf + n, payload, len);
        n += len;
    }
    send_all(fd, buf, n);
    uint8_t rep[NBD_SIMPLE_REPLY_SIZE];
    NBDReplyHeader rh;
    recv_all(fd, rep, sizeof(rep), serve_main_in_requests);
    nbd_decode_reply_header(rep, sizeof(rep), NBD_MODE_SIMPLE, &rh);
    g_assert_cmpuint(rh.cookie, ==, cookie);
    if (out && rh.error == 0) {
        recv_all(fd, out, len, serve_main_in_requests);
    }
    return rh.error;
}

static NBDExport *make_iothread_export(BerthIOThread *iot, const char *name)
{
    g_autoptr(GError) err = NULL;
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = make_node(name, NODE_SIZE, false, NULL);
    cfg.ctx = berth_iothread_get_context(iot);
    cfg.ctx_release = on_release;
    cfg.ctx_release_data = (gpointer) "io-test";
    NBDExport *exp = nbd_export_create(&cfg, &err);
    g_assert_no_error(err);
    bdrv_put(cfg.bs);
    g_assert_true(nbd_export_get_context(exp) == cfg.ctx);
    return exp;
}

static NBDConn *start_client(NBDExport *exp, int *peer_fd)
{
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    BerthChannel *ch = berth_channel_socket_new(sv[0]);
    NBDConn *client = nbd_conn_new(exp, ch, NULL, NULL, on_client_close);
    berth_channel_unref(ch);
    *peer_fd = sv[1];
    return client;
}

static void test_served_by_iothread_and_closed_from_main(void)
{
    reset();
    g_autoptr(GError) err = NULL;
    BerthIOThread *iot = berth_iothread_new("nbd-iot-test", &err);
    g_assert_no_error(err);
    NBDExport *exp = make_iothread_export(iot, "iot0");
    int fd;
    NBDConn *client = start_client(exp, &fd);
    negotiate(fd);

    /* From here the main context is never iterated until the close. */
    uint8_t pattern[8192], back[8192];
    for (size_t i = 0; i < sizeof(pattern); i++) {
        pattern[i] = (uint8_t) (i * 7 + 3);
    }
    for (uint64_t k = 0; k < 16; k++) {
        g_assert_cmpuint(request(fd, NBD_CMD_WRITE, 100 + k, k * 8192, 8192, pattern, NULL),
                         ==, 0);
    }
    for (uint64_t k = 0; k < 16; k++) {
        memset(back, 0, sizeof(back));
        g_assert_cmpuint(request(fd, NBD_CMD_READ, 200 + k, k * 8192, 8192, NULL, back), ==, 0);
        g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));
    }
    g_assert_cmpuint(request(fd, NBD_CMD_FLUSH, 300, 0, 0, NULL, NULL), ==, 0);
    NBDStats st;
    nbd_export_get_stats(exp, &st);
    g_assert_cmpuint(st.writes, ==, 16);
    g_assert_cmpuint(st.reads, ==, 16);
    g_assert_cmpuint(st.bytes_read, ==, 16 * 8192);

    /* Closed, callback run, socket shut down - all before close returns. */
    nbd_conn_get(client);
    nbd_export_close(exp);
    g_assert_cmpint(client_closed, ==, 1);
    g_assert_true(client_closed_on_main);
    g_assert_cmpuint(nbd_export_client_count(exp), ==, 0);
    uint8_t c;
    g_assert_cmpint(recv(fd, &c, 1, 0), ==, 0);
    nbd_conn_close(client);   /* again: nothing more happens */
    g_assert_cmpint(client_closed, ==, 1);
    nbd_conn_put(client);
    nbd_conn_put(client);     /* nbd_conn_new's */
    drain_main_context();

    g_assert_cmpint(released, ==, 0);
    nbd_export_put(exp);
    g_assert_cmpint(released, ==, 1);
    g_assert_true(released_on_main);
    close(fd);
    berth_iothread_free(iot);
    delete_exports_and_nodes();
}

static void test_peer_hangup_on_iothread(void)
{
    reset();
    g_autoptr(GError) err = NULL;
    BerthIOThread *iot = berth_iothread_new("nbd-iot-test", &err);
    g_assert_no_error(err);
    NBDExport *exp = make_iothread_export(iot, "iot1");
    int fd;
    NBDConn *client = start_client(exp, &fd);
    negotiate(fd);
    uint8_t buf[4096];
    g_assert_cmpuint(request(fd, NBD_CMD_READ, 1, 0, sizeof(buf), NULL, buf), ==, 0);

    /* Requests in flight, then the peer goes: the I/O thread closes the
     * client and hands the rest to the main context. */
    NBDRequest req = { .type = NBD_CMD_READ, .length = 65536 };
    uint8_t hdr[NBD_REQUEST_SIZE];
    for (int k = 0; k < 32; k++) {
        req.cookie = 10 + k;
        req.offset = (uint64_t) k * 65536;
        send_all(fd, hdr, nbd_encode_request(hdr, NBD_MODE_SIMPLE, &req));
    }
    close(fd);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (client_closed == 0 && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_cmpint(client_closed, ==, 1);
    g_assert_true(client_closed_on_main);
    g_assert_cmpuint(nbd_export_client_count(exp), ==, 0);
    nbd_conn_put(client);     /* nbd_conn_new's */

    nbd_export_close(exp);
    nbd_export_put(exp);
    /* The client's last reference may have gone on the I/O thread: it is
     * then freed on the main context, and the export with it. */
    deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (released == 0 && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_cmpint(released, ==, 1);
    g_assert_true(released_on_main);
    berth_iothread_free(iot);
    delete_exports_and_nodes();
}

static void test_failed_create_keeps_release(void)
{
    reset();
    g_autoptr(GError) err = NULL;
    BerthIOThread *iot = berth_iothread_new("nbd-iot-test", &err);
    NBDExport *first = make_iothread_export(iot, "iot2");
    g_assert_true(nbd_export_set_name(first, "taken", &err));

    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = make_node("iot3", NODE_SIZE, false, NULL);
    cfg.name = "taken";
    cfg.ctx = berth_iothread_get_context(iot);
    cfg.ctx_release = on_release;
    cfg.ctx_release_data = (gpointer) "io-test";
    g_assert_null(nbd_export_create(&cfg, &err));
    g_assert_nonnull(err);
    bdrv_put(cfg.bs);
    g_assert_cmpint(released, ==, 0);

    nbd_export_close(first);
    nbd_export_put(first);
    g_assert_cmpint(released, ==, 1);
    berth_iothread_free(iot);
    delete_exports_and_nodes();
}

/* An embedder may name the main context itself: the hand-off and the
 * closes then run inline, on the one thread, without waiting on anyone. */
static void test_context_is_main(void)
{
    reset();
    g_autoptr(GError) err = NULL;
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = make_node("iot4", NODE_SIZE, false, NULL);
    cfg.ctx = g_main_context_default();
    cfg.ctx_release = on_release;
    cfg.ctx_release_data = (gpointer) "io-test";
    NBDExport *exp = nbd_export_create(&cfg, &err);
    g_assert_no_error(err);
    bdrv_put(cfg.bs);
    int fd;
    NBDConn *client = start_client(exp, &fd);
    negotiate(fd);
    serve_main_in_requests = true;
    uint8_t data[4096], back[4096];
    memset(data, 0x5a, sizeof(data));
    g_assert_cmpuint(request(fd, NBD_CMD_WRITE, 1, 4096, sizeof(data), data, NULL), ==, 0);
    g_assert_cmpuint(request(fd, NBD_CMD_READ, 2, 4096, sizeof(back), NULL, back), ==, 0);
    g_assert_cmpmem(back, sizeof(back), data, sizeof(data));
    serve_main_in_requests = false;

    nbd_export_close(exp);
    drain_main_context();
    g_assert_cmpint(client_closed, ==, 1);
    nbd_conn_put(client);
    nbd_export_put(exp);
    drain_main_context();
    g_assert_cmpint(released, ==, 1);
    close(fd);
    delete_exports_and_nodes();
}

/* Two contexts: clients go to them in turn, each is served where it went,
 * and ctx_release runs once, after the last client and the export. */
static void test_clients_spread_over_contexts(void)
{
    reset();
    g_autoptr(GError) err = NULL;
    BerthIOThread *iots[2] = { berth_iothread_new("nbd-iot-a", &err),
                               berth_iothread_new("nbd-iot-b", &err) };
    g_assert_no_error(err);
    GMainContext *ctxs[2] = { berth_iothread_get_context(iots[0]),
                              berth_iothread_get_context(iots[1]) };
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = make_node("iot5", NODE_SIZE, false, NULL);
    cfg.ctxs = ctxs;
    cfg.n_ctxs = 2;
    cfg.ctx_release = on_release;
    cfg.ctx_release_data = (gpointer) "io-test";
    NBDExport *exp = nbd_export_create(&cfg, &err);
    g_assert_no_error(err);
    bdrv_put(cfg.bs);
    g_assert_true(nbd_export_get_context(exp) == ctxs[0]);

    NBDConn *clients[3];
    int fds[3];
    for (int i = 0; i < 3; i++) {
        clients[i] = start_client(exp, &fds[i]);
        g_assert_null(nbd_conn_get_context(clients[i]));   /* negotiating on main */
        negotiate(fds[i]);
        uint8_t data[4096], back[4096];
        memset(data, 0x30 + i, sizeof(data));
        g_assert_cmpuint(request(fds[i], NBD_CMD_WRITE, 1, i * 4096, sizeof(data), data, NULL),
                         ==, 0);
        g_assert_cmpuint(request(fds[i], NBD_CMD_READ, 2, i * 4096, sizeof(back), NULL, back),
                         ==, 0);
        g_assert_cmpmem(back, sizeof(back), data, sizeof(data));
        g_assert_true(nbd_conn_get_context(clients[i]) == ctxs[i % 2]);
    }

    nbd_export_close(exp);
    g_assert_cmpint(client_closed, ==, 3);
    for (int i = 0; i < 3; i++) {
        nbd_conn_put(clients[i]);
        close(fds[i]);
    }
    drain_main_context();
    g_assert_cmpint(released, ==, 0);
    nbd_export_put(exp);
    drain_main_context();
    g_assert_cmpint(released, ==, 1);
    berth_iothread_free(iots[0]);
    berth_iothread_free(iots[1]);
    delete_exports_and_nodes();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();
    g_test_add_func("/nbd/iothread/served-and-closed-from-main",
                    test_served_by_iothread_and_closed_from_main);
    g_test_add_func("/nbd/iothread/peer-hangup", test_peer_hangup_on_iothread);
    g_test_add_func("/nbd/iothread/failed-create", test_failed_create_keeps_release);
    g_test_add_func("/nbd/iothread/context-is-main", test_context_is_main);
    g_test_add_func("/nbd/iothread/spread-over-contexts", test_clients_spread_over_contexts);
    return g_test_run();
}
