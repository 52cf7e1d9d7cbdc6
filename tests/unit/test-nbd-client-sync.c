/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the blocking transmission primitives of the NBD client
 * (nbd/client/request.c), over a socketpair with the test playing the server by
 * hand: nbd_send_request() in the compact and extended forms, with a write
 * payload from an iovec, a length a compact header cannot carry and a peer
 * that has gone; nbd_receive_reply() for simple, structured and extended
 * replies, magics the mode does not allow, a timeout and the end of the
 * stream inside a header; and nbd_wr_syncv() both ways.  The asynchronous
 * session is tested in test-nbd-client-session.c, test-nbd-client-fake.c and
 * test-nbd-client-death.c.
 */
#include "nbd-session-test-util.h"

/* ======================================================================
 * Blocking primitives (nbd/client/request.c) over a socketpair
 * ====================================================================== */

typedef struct Pair {
    BerthChannel *client, *server;
} Pair;

static void pair_open(Pair *p)
{
    channel_pair(&p->client, &p->server);
}

static void pair_close(Pair *p)
{
    berth_channel_unref(p->client);
    berth_channel_unref(p->server);
}

static void test_sync_send_request(void)
{
    Pair p;
    pair_open(&p);
    g_autoptr(GError) err = NULL;

    /* Compact READ. */
    NBDRequest req = { .type = NBD_CMD_READ, .flags = NBD_CMD_FLAG_FUA, .cookie = 0x1122334455,
                       .offset = 1 * MiB, .length = 4096 };
    g_assert_true(nbd_send_request(p.client, NBD_MODE_STRUCTURED, &req, NULL, 0, 1000, &err));
    g_assert_no_error(err);
    uint8_t hdr[NBD_REQUEST_MAX_SIZE];
    g_assert_true(berth_channel_read_all(p.server, hdr, NBD_REQUEST_SIZE, 1000, NULL));
    NBDRequest got;
    g_assert_cmpint(nbd_decode_request(hdr, NBD_REQUEST_SIZE, NBD_MODE_STRUCTURED,
                                       &got).status, ==, NBD_DECODE_OK);
    g_assert_cmpuint(got.type, ==, NBD_CMD_READ);
    g_assert_cmpuint(got.flags, ==, NBD_CMD_FLAG_FUA);
    g_assert_cmpuint(got.cookie, ==, req.cookie);
    g_assert_cmpuint(got.offset, ==, req.offset);
    g_assert_cmpuint(got.length, ==, req.length);

    /* Extended WRITE: PAYLOAD_LEN is added and the payload follows. */
    uint8_t data[3000], back[3000];
    fill_pattern(data, 0, sizeof(data), 9);
    struct iovec iov[3] = { { data, 1000 }, { data + 1000, 0 }, { data + 1000, 2000 } };
    req = (NBDRequest) { .type = NBD_CMD_WRITE, .cookie = 7, .offset = 512,
                         .length = sizeof(data) };
    g_assert_true(nbd_send_request(p.client, NBD_MODE_EXTENDED, &req, iov, 3, 1000, &err));
    g_assert_no_error(err);
    g_assert_true(berth_channel_read_all(p.server, hdr, NBD_EXTENDED_REQUEST_SIZE, 1000, NULL));
    g_assert_cmpint(nbd_decode_request(hdr, NBD_EXTENDED_REQUEST_SIZE, NBD_MODE_EXTENDED,
                                       &got).status, ==, NBD_DECODE_OK);
    g_assert_cmpuint(got.type, ==, NBD_CMD_WRITE);
    g_assert_true(got.flags & NBD_CMD_FLAG_PAYLOAD_LEN);
    g_assert_cmpuint(nbd_request_payload_length(&got, NBD_MODE_EXTENDED), ==, sizeof(data));
    g_assert_true(berth_channel_read_all(p.server, back, sizeof(back), 1000, NULL));
    g_assert_true(memcmp(back, data, sizeof(data)) == 0);

    /* A length that a compact header cannot carry. */
    req = (NBDRequest) { .type = NBD_CMD_TRIM, .cookie = 8, .length = UINT64_C(1) << 33 };
    g_assert_false(nbd_send_request(p.client, NBD_MODE_STRUCTURED, &req, NULL, 0, 1000, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);

    /* A closed peer: an error, not SIGPIPE. */
    berth_channel_shutdown(p.server);
    req = (NBDRequest) { .type = NBD_CMD_FLUSH, .cookie = 9 };
    g_assert_false(nbd_send_request(p.client, NBD_MODE_STRUCTURED, &req, NULL, 0, 1000, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    pair_close(&p);
}

static void test_sync_receive_reply(void)
{
    Pair p;
    pair_open(&p);
    g_autoptr(GError) err = NULL;
    uint8_t buf[128];
    NBDReplyHeader h;

    /* A simple reply; the read data stays on the channel for the caller. */
    size_t n = nbd_encode_simple_reply(buf, 0xabcdef, 0);
    fill_pattern(buf + n, 0, 40, 3);
    g_assert_true(berth_channel_write_all(p.server, buf, n + 40, 1000, NULL));
    g_assert_true(nbd_receive_reply(p.client, NBD_MODE_SIMPLE, &h, 1000, &err));
    g_assert_no_error(err);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_SIMPLE);
    g_assert_cmpuint(h.cookie, ==, 0xabcdef);
    g_assert_cmpuint(h.error, ==, 0);
    uint8_t data[40], want[40];
    struct iovec iov[3] = { { data, 7 }, { data + 7, 0 }, { data + 7, 33 } };
    g_assert_true(nbd_wr_syncv(p.client, iov, 3, true, 1000, &err));
    g_assert_no_error(err);
    fill_pattern(want, 0, sizeof(want), 3);
    g_assert_true(memcmp(data, want, sizeof(data)) == 0);

    /* A simple error reply. */
    n = nbd_encode_simple_reply(buf, 5, NBD_ENOSPC);
    g_assert_true(berth_channel_write_all(p.server, buf, n, 1000, NULL));
    g_assert_true(nbd_receive_reply(p.client, NBD_MODE_STRUCTURED, &h, 1000, &err));
    g_assert_cmpuint(h.error, ==, NBD_ENOSPC);

    /* A structured chunk header; its payload is left alone. */
    n = nbd_encode_structured_reply(buf, 77, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_HOLE,
                                    NBD_OFFSET_HOLE_SIZE);
    n += nbd_encode_offset_hole(buf + n, 4096, 512);
    g_assert_true(berth_channel_write_all(p.server, buf, n, 1000, NULL));
    g_assert_true(nbd_receive_reply(p.client, NBD_MODE_STRUCTURED, &h, 1000, &err));
    g_assert_no_error(err);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_STRUCTURED);
    g_assert_cmpuint(h.cookie, ==, 77);
    g_assert_cmpuint(h.flags, ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(h.type, ==, NBD_REPLY_TYPE_OFFSET_HOLE);
    g_assert_cmpuint(h.length, ==, NBD_OFFSET_HOLE_SIZE);
    uint8_t hole[NBD_OFFSET_HOLE_SIZE];
    struct iovec hiov = { hole, sizeof(hole) };
    g_assert_true(nbd_wr_syncv(p.client, &hiov, 1, true, 1000, &err));
    uint64_t off;
    uint32_t size;
    g_assert_cmpint(nbd_decode_offset_hole(hole, sizeof(hole), h.length, &off, &size).status,
                    ==, NBD_DECODE_OK);
    g_assert_cmpuint(off, ==, 4096);
    g_assert_cmpuint(size, ==, 512);

    /* An extended chunk header. */
    n = nbd_encode_extended_reply(buf, 78, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 8192, 0);
    g_assert_true(berth_channel_write_all(p.server, buf, n, 1000, NULL));
    g_assert_true(nbd_receive_reply(p.client, NBD_MODE_EXTENDED, &h, 1000, &err));
    g_assert_no_error(err);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_EXTENDED);
    g_assert_cmpuint(h.cookie, ==, 78);
    g_assert_cmpuint(h.offset, ==, 8192);
    g_assert_cmpuint(h.type, ==, NBD_REPLY_TYPE_NONE);

    /* A magic the mode does not allow. */
    n = nbd_encode_simple_reply(buf, 1, 0);
    g_assert_true(berth_channel_write_all(p.server, buf, n, 1000, NULL));
    g_assert_false(nbd_receive_reply(p.client, NBD_MODE_EXTENDED, &h, 1000, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_clear_error(&err);
    pair_close(&p);

    /* A bad magic. */
    pair_open(&p);
    memset(buf, 0, sizeof(buf));
    nbd_store_be32(buf, 0xdeadbeef);
    g_assert_true(berth_channel_write_all(p.server, buf, 32, 1000, NULL));
    g_assert_false(nbd_receive_reply(p.client, NBD_MODE_STRUCTURED, &h, 1000, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "magic"));
    g_clear_error(&err);
    pair_close(&p);

    /* A timeout, then the end of the stream inside a header. */
    pair_open(&p);
    g_assert_false(nbd_receive_reply(p.client, NBD_MODE_STRUCTURED, &h, 50, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_clear_error(&err);
    n = nbd_encode_structured_reply(buf, 1, 0, NBD_REPLY_TYPE_OFFSET_DATA, 100);
    g_assert_true(berth_channel_write_all(p.server, buf, 10, 1000, NULL));
    berth_channel_shutdown(p.server);
    g_assert_false(nbd_receive_reply(p.client, NBD_MODE_STRUCTURED, &h, 1000, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
    g_clear_error(&err);
    pair_close(&p);
}

static void test_sync_wr_syncv(void)
{
    Pair p;
    pair_open(&p);
    g_autoptr(GError) err = NULL;
    uint8_t out[5000], in[5000];
    fill_pattern(out, 0, sizeof(out), 11);
    struct iovec wv[4] = { { out, 0 }, { out, 1 }, { out + 1, 3999 }, { out + 4000, 1000 } };
    g_assert_true(nbd_wr_syncv(p.client, wv, 4, false, 1000, &err));
    g_assert_no_error(err);
    struct iovec rv[2] = { { in, 2500 }, { in + 2500, 2500 } };
    g_assert_true(nbd_wr_syncv(p.server, rv, 2, true, 1000, &err));
    g_assert_no_error(err);
    g_assert_true(memcmp(in, out, sizeof(out)) == 0);
    /* The iovec array is not modified. */
    g_assert_true(rv[0].iov_base == in && rv[0].iov_len == 2500);
    g_assert_true(wv[2].iov_base == out + 1 && wv[2].iov_len == 3999);

    /* Early EOF is an error. */
    g_assert_true(berth_channel_write_all(p.client, out, 100, 1000, NULL));
    berth_channel_shutdown(p.client);
    g_assert_false(nbd_wr_syncv(p.server, rv, 1, true, 1000, &err));
    g_assert_nonnull(err);
    pair_close(&p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();

    g_test_add_func("/nbd/session/sync/send-request", test_sync_send_request);
    g_test_add_func("/nbd/session/sync/receive-reply", test_sync_receive_reply);
    g_test_add_func("/nbd/session/sync/wr-syncv", test_sync_wr_syncv);

    return g_test_run();
}
