/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the reconnecting NBD connection (nbd/client/connection.c)
 * against berth's own NBD server, in-process on the main context that the
 * test's main thread drives with RUN_UNTIL(): the first connection while
 * the context keeps serving, and its error; data through the connection;
 * with a reconnect delay, a request made while the server is away waits and
 * succeeds once it is back; without one, requests fail at once until a
 * reconnection succeeds; a server that comes back with another export is
 * given up for good; freeing the connection fails what it holds.
 */
#include "nbd-session-test-util.h"
#include "berth/nbd/client-connection.h"

#define DISK_SIZE (4 * MiB)

static char *tmp_dir;
static char *sock_path;
static NBDExport *exp_disk;

static NBDClientTarget *make_target(const char *path)
{
    NBDClientTarget *t = nbd_client_target_new();
    t->addr = g_new0(BerthSocketAddress, 1);
    t->addr->type = BERTH_ADDR_UNIX;
    t->addr->path = g_strdup(path);
    t->addr_str = g_strdup(path);
    t->export_name = g_strdup("disk0");
    return t;
}

typedef struct {
    NBDClientTarget *target;
    NBDExportInfo info;
    NBDClientConnection *conn;
} Conn;

static void conn_open(Conn *c, uint64_t reconnect_delay)
{
    g_autoptr(GError) err = NULL;
    BerthChannel *ch = NULL;
    memset(c, 0, sizeof(*c));
    c->target = make_target(sock_path);
    /* The server answers on this thread's context meanwhile. */
    g_assert_true(nbd_client_target_open(c->target, 0, &ch, &c->info, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(c->info.size, ==, DISK_SIZE);
    c->conn = nbd_client_connection_new(c->target, ch, &c->info, reconnect_delay,
                                        g_main_context_default());
}

static void conn_close(Conn *c)
{
    nbd_client_connection_free(c->conn);
    nbd_client_target_unref(c->target);
    nbd_export_info_clear(&c->info);
    drain_main_context();
}

typedef struct {
    NBDClientConnRequest req;
    struct iovec iov;
    Req r;
} ConnReq;

static void conn_submit(Conn *c, ConnReq *cr, uint16_t cmd, uint64_t off, void *buf,
                        uint64_t len)
{
    memset(cr, 0, sizeof(*cr));
    cr->iov.iov_base = buf;
    cr->iov.iov_len = len;
    cr->req.cmd = cmd;
    cr->req.offset = off;
    cr->req.length = len;
    cr->req.iov = buf ? &cr->iov : NULL;
    cr->req.niov = buf ? 1 : 0;
    cr->req.cb = req_cb;
    cr->req.opaque = &cr->r;
    nbd_client_connection_submit(c->conn, &cr->req);
}

static int conn_run(Conn *c, uint16_t cmd, uint64_t off, void *buf, uint64_t len,
                    char **msg)
{
    ConnReq cr;
    conn_submit(c, &cr, cmd, off, buf, len);
    RUN_UNTIL(cr.r.calls);
    g_assert_cmpint(cr.r.calls, ==, 1);
    g_assert_false(cr.r.wrong_thread);
    int ret = cr.r.ret;
    if (msg) {
        *msg = g_steal_pointer(&cr.r.msg);
    }
    req_clear(&cr.r);
    return ret;
}

static void write_and_check(Conn *c, uint64_t off, unsigned seed)
{
    uint8_t wbuf[4096], rbuf[4096];
    fill_pattern(wbuf, off, sizeof(wbuf), seed);
    g_assert_cmpint(conn_run(c, NBD_CMD_WRITE, off, wbuf, sizeof(wbuf), NULL), ==, 0);
    memset(rbuf, 0, sizeof(rbuf));
    g_assert_cmpint(conn_run(c, NBD_CMD_READ, off, rbuf, sizeof(rbuf), NULL), ==, 0);
    g_assert_true(memcmp(wbuf, rbuf, sizeof(wbuf)) == 0);
}

/* Serve and wait for about `ms` milliseconds, whatever happens meanwhile. */
static void turn_for_ms(int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(10 * 1000);
    }
}

/* Until the session has noticed that the server hung up. */
static void server_away(void)
{
    server_stop();
    drain_main_context();
}

static void test_open_error(void)
{
    g_autofree char *missing = g_build_filename(tmp_dir, "missing.sock", NULL);
    NBDClientTarget *t = make_target(missing);
    g_autoptr(GError) err = NULL;
    BerthChannel *ch = NULL;
    NBDExportInfo info = { 0 };
    g_assert_false(nbd_client_target_open(t, 0, &ch, &info, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, missing));
    g_assert_null(ch);
    nbd_client_target_unref(t);
}

static void test_data(void)
{
    Conn c;
    conn_open(&c, 0);
    for (unsigned i = 0; i < 4; i++) {
        write_and_check(&c, i * 64 * KiB, 1 + i);
    }
    conn_close(&c);
}

static void test_reconnect_delay(void)
{
    Conn c;
    conn_open(&c, 10);
    write_and_check(&c, 0, 11);
    server_away();

    /* Held while the server is away, sent when it is back. */
    uint8_t wbuf[4096];
    fill_pattern(wbuf, 8192, sizeof(wbuf), 12);
    ConnReq cr;
    conn_submit(&c, &cr, NBD_CMD_WRITE, 8192, wbuf, sizeof(wbuf));
    turn_for_ms(200);
    g_assert_cmpint(cr.r.calls, ==, 0);
    server_restart(sock_path, NULL);
    RUN_UNTIL(cr.r.calls);
    g_assert_cmpint(cr.r.ret, ==, 0);
    req_clear(&cr.r);

    uint8_t rbuf[4096];
    g_assert_cmpint(conn_run(&c, NBD_CMD_READ, 8192, rbuf, sizeof(rbuf), NULL), ==, 0);
    g_assert_true(memcmp(wbuf, rbuf, sizeof(wbuf)) == 0);
    conn_close(&c);
}

static void test_no_delay(void)
{
    Conn c;
    conn_open(&c, 0);
    write_and_check(&c, 0, 21);
    server_away();

    uint8_t buf[4096];
    g_autofree char *msg = NULL;
    g_assert_cmpint(conn_run(&c, NBD_CMD_READ, 0, buf, sizeof(buf), &msg), ==, -EIO);
    server_restart(sock_path, NULL);

    /* Each failing request starts an attempt; one of them gets through. */
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (conn_run(&c, NBD_CMD_READ, 0, buf, sizeof(buf), NULL) != 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        turn_for_ms(50);
    }
    write_and_check(&c, 4096, 22);
    conn_close(&c);
}

static void replace_export(uint64_t size)
{
    nbd_export_close(exp_disk);
    nbd_export_put(exp_disk);
    drain_main_context();
    bdrv_delete_all();
    exp_disk = make_export(make_node("c0", size, false, NULL), false, "disk0", NULL);
}

static void test_export_changed(void)
{
    Conn c;
    conn_open(&c, 10);
    server_away();
    replace_export(DISK_SIZE * 2);

    uint8_t buf[4096];
    ConnReq cr;
    conn_submit(&c, &cr, NBD_CMD_READ, 0, buf, sizeof(buf));
    server_restart(sock_path, NULL);
    RUN_UNTIL(cr.r.calls);
    g_assert_cmpint(cr.r.ret, ==, -EIO);
    g_assert_cmpstr(cr.r.msg, ==, "NBD export changed while reconnecting");
    req_clear(&cr.r);

    g_autofree char *msg = NULL;
    g_assert_cmpint(conn_run(&c, NBD_CMD_READ, 0, buf, sizeof(buf), &msg), ==, -EIO);
    g_autofree char *want = g_strdup_printf("NBD export on '%s' is no longer usable",
                                            sock_path);
    g_assert_cmpstr(msg, ==, want);
    conn_close(&c);
    replace_export(DISK_SIZE);
}

static void test_free_while_held(void)
{
    Conn c;
    conn_open(&c, 10);
    server_away();

    uint8_t buf[4096];
    ConnReq cr;
    conn_submit(&c, &cr, NBD_CMD_READ, 0, buf, sizeof(buf));
    drain_main_context();
    g_assert_cmpint(cr.r.calls, ==, 0);
    nbd_client_connection_free(c.conn);
    g_assert_cmpint(cr.r.calls, ==, 1);
    g_assert_cmpint(cr.r.ret, ==, -ESHUTDOWN);
    req_clear(&cr.r);
    nbd_client_target_unref(c.target);
    nbd_export_info_clear(&c.info);
    /* A reconnect attempt may still be running: it reports to nobody. */
    turn_for_ms(200);
    server_restart(sock_path, NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();
    tmp_dir = g_dir_make_tmp("berth-nbd-conn-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    sock_path = g_build_filename(tmp_dir, "nbd.sock", NULL);

    exp_disk = make_export(make_node("c0", DISK_SIZE, false, NULL), false, "disk0", NULL);
    server_restart(sock_path, NULL);

    g_test_add_func("/nbd/connection/open-error", test_open_error);
    g_test_add_func("/nbd/connection/data", test_data);
    g_test_add_func("/nbd/connection/reconnect-delay", test_reconnect_delay);
    g_test_add_func("/nbd/connection/no-delay", test_no_delay);
    g_test_add_func("/nbd/connection/export-changed", test_export_changed);
    g_test_add_func("/nbd/connection/free-while-held", test_free_while_held);

    int rc = g_test_run();

    server_stop();
    drain_main_context();
    nbd_export_put(exp_disk);
    delete_exports_and_nodes();
    rm_rf(tmp_dir);
    g_free(sock_path);
    g_free(tmp_dir);
    return rc;
}
