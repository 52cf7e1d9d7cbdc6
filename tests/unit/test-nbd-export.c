/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the NBD server's objects: export get/put and the table,
 * close callbacks that run exactly once, ejecting a drive's medium closing
 * the export made on it, safe removal waiting for clients, a client over a
 * socketpair going through a real handshake and a read/write in-process, and
 * the multi-conn flag following its mode and the server's connection limit.
 */
#include "nbd-test-util.h"

#include <errno.h>

#define NODE_SIZE (1024 * 1024)

static int export_closed;
static int client_closed;
static int drained;

static void on_export_close(NBDExport *exp)
{
    export_closed++;
}

static void on_client_close(NBDConn *client, bool negotiated)
{
    client_closed++;
}

static void on_drained(NBDExport *exp)
{
    drained++;
}

static void reset_counters(void)
{
    export_closed = client_closed = drained = 0;
}

static void test_export_table(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n0", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, on_export_close, false, NULL, &err);
    g_assert_no_error(err);
    g_assert_true(nbd_export_set_name(exp, "e0", &err));
    nbd_export_set_description(exp, "first");
    g_assert_true(nbd_export_find("e0") == exp);
    g_assert_cmpstr(nbd_export_get_description(exp), ==, "first");
    g_assert_true(nbd_export_get_blockdev(exp) == bs);

    /* A second export may not take the same name. */
    NBDExport *dup = nbd_export_new(bs, 0, 4096, NBD_EXPORT_FLAG_READ_ONLY, NULL, false,
                                    NULL, &err);
    g_assert_no_error(err);
    g_assert_false(nbd_export_set_name(dup, "e0", &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "e0"));
    g_clear_error(&err);
    g_assert_true(nbd_export_is_read_only(dup));
    nbd_export_put(dup);

    /* The node is in use while the export lives. */
    g_assert_false(bdrv_delete("n0", &err));
    g_clear_error(&err);

    nbd_export_close(exp);
    nbd_export_close(exp);
    g_assert_cmpint(export_closed, ==, 1);
    g_assert_null(nbd_export_find("e0"));
    nbd_export_put(exp);
    bdrv_put(bs);
    g_assert_true(bdrv_delete("n0", &err));
    g_assert_no_error(err);
}

static void test_export_bounds(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n1", NODE_SIZE, false, NULL);
    g_assert_null(nbd_export_new(bs, 2 * 1048576, -1, 0, NULL, false, NULL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(nbd_export_new(bs, 4096, 1048576, 0, NULL, false, NULL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    BlockDriverState *ro = make_node("n1ro", NODE_SIZE, true, NULL);
    g_assert_null(nbd_export_new(ro, 0, -1, 0, NULL, false, NULL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    bdrv_put(ro);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

static void test_export_create(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n5", NODE_SIZE, false, NULL);
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = bs;
    cfg.dev_offset = 4096;
    cfg.read_only = true;
    cfg.close_cb = on_export_close;
    cfg.name = "c0";
    cfg.id = "id-c0";
    cfg.description = "made from a config";
    cfg.multi_conn = NBD_MULTI_CONN_OFF;
    NBDExport *exp = nbd_export_create(&cfg, &err);
    g_assert_no_error(err);
    g_assert_true(nbd_export_find("c0") == exp);
    g_assert_cmpstr(nbd_export_get_id(exp), ==, "id-c0");
    g_assert_cmpstr(nbd_export_get_description(exp), ==, "made from a config");
    g_assert_true(nbd_export_is_read_only(exp));
    g_assert_false(nbd_export_can_multi_conn(exp));

    /* A taken name fails the whole creation: nothing is left in the table
     * and the node's reference is given back. */
    cfg.id = "id-c1";
    cfg.multi_conn = NBD_MULTI_CONN_AUTO;
    g_assert_null(nbd_export_create(&cfg, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "c0"));
    g_clear_error(&err);
    g_assert_true(nbd_export_find("c0") == exp);

    /* The range is checked against the node, offset included. */
    cfg.name = "c2";
    cfg.size = NODE_SIZE;
    g_assert_null(nbd_export_create(&cfg, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(nbd_export_find("c2"));

    nbd_export_close(exp);
    g_assert_cmpint(export_closed, ==, 1);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

static void test_eject_closes_export(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n2", NODE_SIZE, false, NULL);
    BlockBackend *blk = blk_new("drive0", bs, &err);
    g_assert_no_error(err);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, on_export_close, false, blk, &err);
    g_assert_no_error(err);
    g_assert_true(nbd_export_set_name(exp, "on-drive", &err));
    g_assert_true(blk_remove_medium(blk, &err));
    g_assert_no_error(err);
    g_assert_cmpint(export_closed, ==, 1);
    g_assert_null(nbd_export_find("on-drive"));
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

/* --- an in-process client on a socketpair --- */

/* Reads exactly len bytes from fd while letting the server run. */
static void recv_all(int fd, void *buf, size_t len)
{
    size_t got = 0;
    for (int tries = 0; got < len && tries < 5000; tries++) {
        drain_main_context();
        ssize_t n = recv(fd, (char *) buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += n;
        } else if (n == 0) {
            break;
        } else {
            g_usleep(1000);
        }
    }
    g_assert_cmpuint(got, ==, len);
}

static void send_all(int fd, const void *buf, size_t len)
{
    g_assert_cmpint(send(fd, buf, len, MSG_NOSIGNAL), ==, (ssize_t) len);
    drain_main_context();
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

/* Greeting, flags, GO with the default export: returns size and flags. */
static void negotiate(int fd, uint64_t *size, uint16_t *flags)
{
    uint8_t buf[512];
    recv_all(fd, buf, NBD_GREETING_SIZE);
    NBDGreeting g;
    g_assert_cmpint(nbd_decode_greeting(buf, NBD_GREETING_SIZE, &g).status, ==, NBD_DECODE_OK);
    size_t n = nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send_all(fd, buf, n);

    uint8_t data[64];
    size_t dl = nbd_encode_opt_info_go(data, sizeof(data), "", 0, NULL, 0);
    n = nbd_encode_option_header(buf, NBD_OPT_GO, dl);
    memcpy(buf + n, data, dl);
    send_all(fd, buf, n + dl);

    /* Block sizes (sent unasked, as QEMU does), then the export's size and
     * flags, then ACK. */
    NBDOptionReplyHeader h;
    NBDRepInfo info;
    recv_all(fd, buf, NBD_OPTION_REPLY_HEADER_SIZE);
    nbd_decode_option_reply_header(buf, NBD_OPTION_REPLY_HEADER_SIZE, &h);
    g_assert_cmpuint(h.type, ==, NBD_REP_INFO);
    recv_all(fd, buf, h.length);
    g_assert_cmpint(nbd_decode_rep_info(buf, h.length, &info).status, ==, NBD_DECODE_OK);
    g_assert_cmpuint(info.type, ==, NBD_INFO_BLOCK_SIZE);
    g_assert_cmpuint(info.u.block_size.max_block, ==, NBD_MAX_PAYLOAD);
    recv_all(fd, buf, NBD_OPTION_REPLY_HEADER_SIZE);
    nbd_decode_option_reply_header(buf, NBD_OPTION_REPLY_HEADER_SIZE, &h);
    g_assert_cmpuint(h.type, ==, NBD_REP_INFO);
    recv_all(fd, buf, h.length);
    g_assert_cmpint(nbd_decode_rep_info(buf, h.length, &info).status, ==, NBD_DECODE_OK);
    g_assert_cmpuint(info.type, ==, NBD_INFO_EXPORT);
    *size = info.u.export_.size;
    *flags = info.u.export_.flags;
    recv_all(fd, buf, NBD_OPTION_REPLY_HEADER_SIZE);
    nbd_decode_option_reply_header(buf, NBD_OPTION_REPLY_HEADER_SIZE, &h);
    g_assert_cmpuint(h.type, ==, NBD_REP_ACK);
}

static void test_client_roundtrip(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n3", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, on_export_close, false, NULL, &err);
    g_assert_no_error(err);
    int fd;
    NBDConn *client = start_client(exp, &fd);
    g_assert_cmpuint(nbd_export_client_count(exp), ==, 1);

    uint64_t size;
    uint16_t flags;
    negotiate(fd, &size, &flags);
    g_assert_cmpuint(size, ==, 1048576);
    g_assert_true(flags & NBD_FLAG_SEND_FLUSH);
    g_assert_false(flags & NBD_FLAG_READ_ONLY);

    /* write 4 KiB of 0xab at 8192, read it back with a simple reply */
    uint8_t buf[NBD_REQUEST_SIZE + 4096];
    NBDRequest req = { .type = NBD_CMD_WRITE, .cookie = 7, .offset = 8192, .length = 4096 };
    size_t n = nbd_encode_request(buf, NBD_MODE_SIMPLE, &req);
    memset(buf + n, 0xab, 4096);
    send_all(fd, buf, n + 4096);
    uint8_t rep[NBD_SIMPLE_REPLY_SIZE + 4096];
    NBDReplyHeader rh;
    recv_all(fd, rep, NBD_SIMPLE_REPLY_SIZE);
    nbd_decode_reply_header(rep, NBD_SIMPLE_REPLY_SIZE, NBD_MODE_SIMPLE, &rh);
    g_assert_cmpuint(rh.cookie, ==, 7);
    g_assert_cmpuint(rh.error, ==, 0);

    req = (NBDRequest) { .type = NBD_CMD_READ, .cookie = 8, .offset = 8192, .length = 4096 };
    send_all(fd, buf, nbd_encode_request(buf, NBD_MODE_SIMPLE, &req));
    recv_all(fd, rep, sizeof(rep));
    nbd_decode_reply_header(rep, NBD_SIMPLE_REPLY_SIZE, NBD_MODE_SIMPLE, &rh);
    g_assert_cmpuint(rh.cookie, ==, 8);
    g_assert_cmpuint(rh.error, ==, 0);
    for (int i = 0; i < 4096; i++) {
        g_assert_cmpuint(rep[NBD_SIMPLE_REPLY_SIZE + i], ==, 0xab);
    }

    /* out of range: EINVAL, and the connection stays */
    req = (NBDRequest) { .type = NBD_CMD_READ, .cookie = 9, .offset = 1048576, .length = 512 };
    send_all(fd, buf, nbd_encode_request(buf, NBD_MODE_SIMPLE, &req));
    recv_all(fd, rep, NBD_SIMPLE_REPLY_SIZE);
    nbd_decode_reply_header(rep, NBD_SIMPLE_REPLY_SIZE, NBD_MODE_SIMPLE, &rh);
    g_assert_cmpuint(rh.cookie, ==, 9);
    g_assert_cmpuint(rh.error, ==, NBD_EINVAL);

    NBDStats st;
    nbd_export_get_stats(exp, &st);
    g_assert_cmpuint(st.writes, ==, 1);
    g_assert_cmpuint(st.reads, ==, 1);
    g_assert_cmpuint(st.bytes_written, ==, 4096);
    g_assert_cmpuint(st.errors, ==, 1);

    /* Closing the export disconnects the client: both callbacks run once. */
    nbd_conn_get(client);
    nbd_export_close(exp);
    drain_main_context();
    g_assert_cmpint(export_closed, ==, 1);
    g_assert_cmpint(client_closed, ==, 1);
    g_assert_cmpint(recv(fd, rep, 1, MSG_DONTWAIT), ==, 0);
    nbd_conn_close(client);
    g_assert_cmpint(client_closed, ==, 1);
    nbd_conn_put(client);
    nbd_conn_put(client);
    close(fd);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

static void test_peer_hangup_and_safe_removal(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n4", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, on_export_close, false, NULL, &err);
    g_assert_true(nbd_export_set_name(exp, "safe", &err));
    int fd;
    NBDConn *client = start_client(exp, &fd);
    uint64_t size;
    uint16_t flags;
    negotiate(fd, &size, &flags);

    /* Safe removal: gone from the table at once, closed when the client leaves. */
    nbd_export_remove_when_idle(exp, on_drained);
    g_assert_null(nbd_export_find("safe"));
    g_assert_true(nbd_export_is_shutting_down(exp));
    g_assert_cmpint(export_closed, ==, 0);
    close(fd);
    for (int i = 0; i < 100 && client_closed == 0; i++) {
        g_main_context_iteration(NULL, TRUE);
    }
    g_assert_cmpint(client_closed, ==, 1);
    g_assert_cmpint(export_closed, ==, 1);
    g_assert_cmpint(drained, ==, 1);
    nbd_conn_put(client);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

static void test_garbage_closes_client(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n5", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, NULL, false, NULL, &err);
    int fd;
    NBDConn *client = start_client(exp, &fd);
    uint8_t buf[64];
    recv_all(fd, buf, NBD_GREETING_SIZE);
    send_all(fd, "\0\0\0\3", 4);
    memset(buf, 0x42, sizeof(buf)); /* not IHAVEOPT */
    send_all(fd, buf, sizeof(buf));
    for (int i = 0; i < 100 && client_closed == 0; i++) {
        g_main_context_iteration(NULL, TRUE);
    }
    g_assert_cmpint(client_closed, ==, 1);
    nbd_conn_put(client);
    close(fd);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

/* The seed API's names (nbd_client_*) act on the same connection objects. */
static void test_seed_names(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = make_node("n9", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, NULL, false, NULL, &err);
    g_assert_true(nbd_export_set_name(exp, "seed", &err));
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    BerthChannel *ch = berth_channel_socket_new(sv[0]);
    NBDClient *client = nbd_client_new(exp, ch, NULL, NULL, on_client_close);
    berth_channel_unref(ch);
    uint64_t size;
    uint16_t flags;
    negotiate(sv[1], &size, &flags);
    g_assert_cmpuint(size, ==, NODE_SIZE);

    NBDClientInfo old_info;
    NBDConnInfo info;
    nbd_client_get_info(client, &old_info);
    nbd_conn_get_info(client, &info);
    g_assert_cmpuint(old_info.id, ==, info.id);
    g_assert_cmpstr(old_info.export_name, ==, "seed");
    g_assert_cmpstr(info.export_name, ==, "seed");

    g_assert_true(nbd_client_get(client) == client);
    nbd_client_close(client);
    drain_main_context();
    g_assert_cmpint(client_closed, ==, 1);
    g_assert_cmpint(recv(sv[1], &flags, 1, MSG_DONTWAIT), ==, 0);
    nbd_client_put(client);
    nbd_client_put(client);
    close(sv[1]);
    nbd_export_close(exp);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
}

/* The transmission flags a client negotiating now is given. */
static uint16_t negotiated_flags(NBDExport *exp)
{
    int fd;
    uint64_t size;
    uint16_t flags;
    NBDConn *client = start_client(exp, &fd);

    negotiate(fd, &size, &flags);
    nbd_conn_close(client);
    nbd_conn_put(client);
    close(fd);
    drain_main_context();
    return flags;
}

static void start_server_with_limit(const char *sock, guint max_connections)
{
    g_autoptr(GError) err = NULL;
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = (char *) sock };
    NBDServerConfig cfg = { .addr = &addr, .max_connections = max_connections };

    g_assert_true(nbd_server_start(&cfg, &err));
    g_assert_no_error(err);
}

static void assert_multi_conn(NBDExport *exp, bool want)
{
    g_assert_cmpint(nbd_export_can_multi_conn(exp), ==, want);
    g_assert_cmpint((negotiated_flags(exp) & NBD_FLAG_CAN_MULTI_CONN) != 0, ==, want);
}

static void test_multi_conn(void)
{
    reset_counters();
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("berth-export-XXXXXX", &err);
    g_assert_no_error(err);
    g_autofree char *sock = g_build_filename(dir, "nbd.sock", NULL);
    BlockDriverState *bs = make_node("n6", NODE_SIZE, false, NULL);
    NBDExport *exp = nbd_export_new(bs, 0, -1, 0, NULL, false, NULL, &err);
    g_assert_no_error(err);

    /* A memory node is coherent: auto advertises it, off withholds it. */
    assert_multi_conn(exp, true);
    g_assert_true(nbd_export_set_multi_conn(exp, NBD_MULTI_CONN_OFF, &err));
    assert_multi_conn(exp, false);
    g_assert_true(nbd_export_set_multi_conn(exp, NBD_MULTI_CONN_ON, &err));
    assert_multi_conn(exp, true);

    /* One connection at a time: withheld from the exports that exist, in
     * every mode, and given back when the limit goes. */
    start_server_with_limit(sock, 1);
    assert_multi_conn(exp, false);
    NBDExport *late = nbd_export_new(bs, 0, -1, NBD_EXPORT_FLAG_READ_ONLY, NULL, false, NULL,
                                     &err);
    g_assert_no_error(err);
    assert_multi_conn(late, false);
    nbd_server_stop();
    assert_multi_conn(exp, true);
    assert_multi_conn(late, true);
    start_server_with_limit(sock, 2);
    assert_multi_conn(exp, true);
    nbd_server_stop();

    nbd_export_put(late);
    nbd_export_put(exp);
    bdrv_put(bs);
    delete_exports_and_nodes();
    rm_rf(dir);
}

/* handshake_max_seconds: 0 is the default, NO_LIMIT none; a value is kept. */
static void test_handshake_limit_config(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("berth-export-XXXXXX", &err);
    g_assert_no_error(err);
    g_autofree char *sock = g_build_filename(dir, "nbd.sock", NULL);
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = sock };
    static const guint given[] = { 0, 1, NBD_HANDSHAKE_NO_LIMIT };
    static const guint want[] = { NBD_HANDSHAKE_DEFAULT_SECONDS, 1, NBD_HANDSHAKE_NO_LIMIT };

    g_assert_cmpuint(nbd_server_get_handshake_max_seconds(), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(given); i++) {
        NBDServerConfig cfg = { .addr = &addr, .handshake_max_seconds = given[i] };
        g_assert_true(nbd_server_start(&cfg, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(nbd_server_get_handshake_max_seconds(), ==, want[i]);
        nbd_server_stop();
        g_assert_cmpuint(nbd_server_get_handshake_max_seconds(), ==, 0);
    }
    g_assert_cmpint(NBD_HANDSHAKE_DEFAULT_SECONDS, ==, 10);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/nbd/export/table", test_export_table);
    g_test_add_func("/nbd/export/bounds", test_export_bounds);
    g_test_add_func("/nbd/export/create", test_export_create);
    g_test_add_func("/nbd/export/eject", test_eject_closes_export);
    g_test_add_func("/nbd/client/roundtrip", test_client_roundtrip);
    g_test_add_func("/nbd/client/safe-removal", test_peer_hangup_and_safe_removal);
    g_test_add_func("/nbd/client/garbage", test_garbage_closes_client);
    g_test_add_func("/nbd/export/multi-conn", test_multi_conn);
    g_test_add_func("/nbd/server/handshake-limit", test_handshake_limit_config);
    g_test_add_func("/nbd/server/seed-names", test_seed_names);
    return g_test_run();
}
