/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the asynchronous NBD client session (nbd/client/session.c,
 * nbd/client/reply.c) against scripted fake servers that answer correctly
 * but awkwardly: replies out of order, a queue of more requests than may be
 * in flight, reads in pieces and holes in random order across odd iovec
 * boundaries, error chunks that fail one request and leave the session
 * alive, reads that end without covering their range or cover half of it
 * twice, block status with extents past the end of the export, and
 * commands the export did not advertise, which must fail locally.  Each
 * fake is a thread owning one end of a socketpair (nbd-session-test-util.h);
 * the session runs on the main context of the test's main thread.  Protocol
 * violations and freeing are in test-nbd-client-death.c.
 */
#include "nbd-session-test-util.h"

#include <poll.h>

/* ---- 1. replies out of order ---------------------------------------------- */

static void script_out_of_order(Fake *f)
{
    NBDRequest a, b, c;
    fake_must_recv(f, &a, NBD_CMD_READ);
    fake_must_recv(f, &b, NBD_CMD_WRITE);
    g_assert_cmpuint(f->payload->len, ==, b.length);
    g_autofree uint8_t *want = g_malloc(b.length);
    fill_pattern(want, b.offset, b.length, FAKE_SEED + 1);
    g_assert_true(memcmp(want, f->payload->data, b.length) == 0);
    fake_must_recv(f, &c, NBD_CMD_READ);
    g_assert_true(a.cookie != b.cookie && b.cookie != c.cookie && a.cookie != c.cookie);
    fake_data(f, &c, c.offset, c.length, NBD_REPLY_FLAG_DONE);
    fake_ok(f, &b);
    fake_data(f, &a, a.offset, a.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_out_of_order(gconstpointer data)
{
    FakeRun run;
    fake_run_start(&run, script_out_of_order, GPOINTER_TO_INT(data));
    uint8_t a[4096], wr[8192], c[4096], want[8192];
    memset(a, 0, sizeof(a));
    memset(c, 0, sizeof(c));
    fill_pattern(wr, 8192, sizeof(wr), FAKE_SEED + 1);
    Req r[3] = { 0 };
    submit(run.s, NBD_CMD_READ, 0, 0, sizeof(a), a, sizeof(a), &r[0]);
    submit(run.s, NBD_CMD_WRITE, 0, 8192, sizeof(wr), wr, sizeof(wr), &r[1]);
    submit(run.s, NBD_CMD_READ, 0, 65536, sizeof(c), c, sizeof(c), &r[2]);
    RUN_UNTIL(all_done(r, 3));
    check_all_ret(r, 3, 0);
    fill_pattern(want, 0, sizeof(a), FAKE_SEED);
    g_assert_true(memcmp(a, want, sizeof(a)) == 0);
    fill_pattern(want, 65536, sizeof(c), FAKE_SEED);
    g_assert_true(memcmp(c, want, sizeof(c)) == 0);
    reqs_clear(r, 3);
    g_assert_cmpint(run.dead.count, ==, 0);
    fake_run_finish(&run);
}

/* ---- the queue: never more than MAX_IN_FLIGHT on the wire ------------------ */

#define QUEUE_REQS (NBD_CLIENT_SESSION_MAX_IN_FLIGHT + 36)

static void script_queue(Fake *f)
{
    NBDRequest r[QUEUE_REQS];
    for (int i = 0; i < NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i++) {
        fake_must_recv(f, &r[i], NBD_CMD_READ);
        for (int j = 0; j < i; j++) {
            g_assert_true(r[i].cookie != r[j].cookie);
        }
    }
    /* Nothing more may come until a reply frees a slot. */
    struct pollfd pfd = { .fd = berth_channel_fd(f->ch), .events = POLLIN };
    g_assert_cmpint(poll(&pfd, 1, 200), ==, 0);
    for (int i = NBD_CLIENT_SESSION_MAX_IN_FLIGHT - 1; i >= 0; i--) {
        fake_data(f, &r[i], r[i].offset, r[i].length, NBD_REPLY_FLAG_DONE);
    }
    for (int i = NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i < QUEUE_REQS; i++) {
        fake_must_recv(f, &r[i], NBD_CMD_READ);
    }
    for (int i = NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i < QUEUE_REQS; i++) {
        fake_data(f, &r[i], r[i].offset, r[i].length, NBD_REPLY_FLAG_DONE);
    }
}

static void test_fake_queue(void)
{
    FakeRun run;
    fake_run_start(&run, script_queue, false);
    const uint64_t len = 512;
    g_autofree uint8_t *buf = g_malloc0(QUEUE_REQS * len);
    g_autofree uint8_t *want = g_malloc(QUEUE_REQS * len);
    fill_pattern(want, 0, QUEUE_REQS * len, FAKE_SEED);
    Req *r = g_new0(Req, QUEUE_REQS);
    for (int i = 0; i < QUEUE_REQS; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * len, len, buf + i * len, len, &r[i]);
    }
    RUN_UNTIL(g_atomic_int_get(&run.f.n_recv) == NBD_CLIENT_SESSION_MAX_IN_FLIGHT);
    g_assert_cmpuint(nbd_client_session_pending(run.s), ==, QUEUE_REQS);
    RUN_UNTIL(all_done(r, QUEUE_REQS));
    check_all_ret(r, QUEUE_REQS, 0);
    g_assert_true(memcmp(buf, want, QUEUE_REQS * len) == 0);
    g_assert_cmpint(g_atomic_int_get(&run.f.n_recv), ==, QUEUE_REQS);
    reqs_clear(r, QUEUE_REQS);
    g_free(r);
    fake_run_finish(&run);
}

/* ---- 2. a read in pieces, in random order ------------------------------- */

typedef struct Piece {
    uint64_t off, len;
    bool hole;
} Piece;

static const Piece read_pieces[] = {
    { 0, 4 * KiB, false },
    { 4 * KiB, 8 * KiB, true },
    { 12 * KiB, 48 * KiB, false },
    { 60 * KiB, 4 * KiB, true },
    { 64 * KiB, 136 * KiB, false },     /* more than the input buffer */
    { 200 * KiB, 1000, false },
    { 200 * KiB + 1000, 56 * KiB - 1000, true },
};
#define PIECES_LEN (256 * KiB)
#define PIECES_OFF (128 * KiB)

static void script_pieces(Fake *f)
{
    NBDRequest r;
    fake_must_recv(f, &r, NBD_CMD_READ);
    g_assert_cmpuint(r.offset, ==, PIECES_OFF);
    g_assert_cmpuint(r.length, ==, PIECES_LEN);
    guint n = G_N_ELEMENTS(read_pieces);
    guint order[G_N_ELEMENTS(read_pieces)];
    for (guint i = 0; i < n; i++) {
        order[i] = i;
    }
    GRand *rand = g_rand_new_with_seed(12345);
    for (guint i = n - 1; i > 0; i--) {
        guint j = (guint) g_rand_int_range(rand, 0, (gint32) i + 1);
        guint t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    g_rand_free(rand);
    for (guint i = 0; i < n; i++) {
        const Piece *p = &read_pieces[order[i]];
        uint16_t flags = i == n - 1 ? NBD_REPLY_FLAG_DONE : 0;
        if (p->hole) {
            fake_hole(f, &r, r.offset + p->off, (uint32_t) p->len, flags);
        } else {
            fake_data(f, &r, r.offset + p->off, p->len, flags);
        }
    }
}

static void test_fake_pieces(gconstpointer data)
{
    FakeRun run;
    fake_run_start(&run, script_pieces, GPOINTER_TO_INT(data));
    g_autofree uint8_t *buf = g_malloc(PIECES_LEN);
    g_autofree uint8_t *want = g_malloc(PIECES_LEN);
    memset(buf, 0xaa, PIECES_LEN);
    for (guint i = 0; i < G_N_ELEMENTS(read_pieces); i++) {
        const Piece *p = &read_pieces[i];
        if (p->hole) {
            memset(want + p->off, 0, p->len);
        } else {
            fill_pattern(want + p->off, PIECES_OFF + p->off, p->len, FAKE_SEED);
        }
    }
    /* Odd iovec boundaries, so pieces straddle them. */
    struct iovec iov[3] = {
        { buf, 1000 },
        { buf + 1000, 100000 },
        { buf + 101000, PIECES_LEN - 101000 },
    };
    Req r = { 0 };
    submitv(run.s, NBD_CMD_READ, 0, PIECES_OFF, PIECES_LEN, iov, 3, &r);
    RUN_UNTIL(r.calls);
    check_all_ret(&r, 1, 0);
    g_assert_true(memcmp(buf, want, PIECES_LEN) == 0);
    req_clear(&r);
    g_assert_cmpint(run.dead.count, ==, 0);
    fake_run_finish(&run);
}

/* ---- 3. error chunks: the request fails, the session lives --------------- */

static void script_errors(Fake *f)
{
    NBDRequest r;
    /* A read: some data, an ERROR_OFFSET, then NONE with DONE. */
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_data(f, &r, r.offset, 4096, 0);
    fake_error(f, &r, NBD_REPLY_TYPE_ERROR_OFFSET, NBD_EPERM, "bad sector at 4096",
               r.offset + 4096, 0);
    fake_none(f, &r);
    /* A write: a plain ERROR chunk with DONE. */
    fake_must_recv(f, &r, NBD_CMD_WRITE);
    fake_error(f, &r, NBD_REPLY_TYPE_ERROR, NBD_ENOSPC, "disk full", 0, NBD_REPLY_FLAG_DONE);
    /* An unknown error type: only this request fails. */
    fake_must_recv(f, &r, NBD_CMD_FLUSH);
    fake_error(f, &r, NBD_REPLY_TYPE_ERROR_BIT | 77, NBD_EINVAL, "odd error", 0,
               NBD_REPLY_FLAG_DONE);
    if (f->mode == NBD_MODE_STRUCTURED) {
        /* A simple error reply to a read is fine in structured mode. */
        fake_must_recv(f, &r, NBD_CMD_READ);
        fake_simple(f, r.cookie, NBD_EOVERFLOW);
    }
    /* And the session still works. */
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_data(f, &r, r.offset, r.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_errors(gconstpointer data)
{
    bool extended = GPOINTER_TO_INT(data);
    FakeRun run;
    fake_run_start(&run, script_errors, extended);
    uint8_t buf[8192], want[8192];
    Req r = { 0 };

    g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 0, 8192, buf, sizeof(buf), &r), ==,
                    -EPERM);
    g_assert_cmpstr(r.msg, ==, "bad sector at 4096");
    req_clear(&r);

    g_assert_cmpint(run_one(run.s, NBD_CMD_WRITE, 0, 0, 4096, buf, sizeof(buf), &r), ==,
                    -ENOSPC);
    g_assert_cmpstr(r.msg, ==, "disk full");
    req_clear(&r);

    g_assert_cmpint(run_one(run.s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, &r), ==, -EINVAL);
    g_assert_cmpstr(r.msg, ==, "odd error");
    req_clear(&r);

    if (!extended) {
        g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 0, 4096, buf, sizeof(buf), &r), ==,
                        -EOVERFLOW);
        req_clear(&r);
    }

    g_assert_false(nbd_client_session_is_dead(run.s));
    g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 4096, 4096, buf, 4096, &r), ==, 0);
    fill_pattern(want, 4096, 4096, FAKE_SEED);
    g_assert_true(memcmp(buf, want, 4096) == 0);
    req_clear(&r);
    g_assert_cmpint(run.dead.count, ==, 0);
    fake_run_finish(&run);
}

/* ---- 8. a read that ends without covering its range ---------------------- */

static void script_short_read(Fake *f)
{
    NBDRequest r;
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_data(f, &r, r.offset, 4096, NBD_REPLY_FLAG_DONE);
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_none(f, &r);       /* DONE with nothing at all */
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_hole(f, &r, r.offset, (uint32_t) r.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_short_read(void)
{
    FakeRun run;
    fake_run_start(&run, script_short_read, false);
    uint8_t buf[8192];
    Req r = { 0 };
    g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 0, 8192, buf, sizeof(buf), &r), ==, -EIO);
    g_assert_nonnull(strstr(r.msg, "4096 of 8192"));
    req_clear(&r);
    g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 0, 8192, buf, sizeof(buf), &r), ==, -EIO);
    req_clear(&r);
    /* The session is still alive. */
    g_assert_false(nbd_client_session_is_dead(run.s));
    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(run_one(run.s, NBD_CMD_READ, 0, 0, 8192, buf, sizeof(buf), &r), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0));
    req_clear(&r);
    g_assert_cmpint(run.dead.count, ==, 0);
    fake_run_finish(&run);
}

/*
 * Chunks that overlap: twice the first half, never the second.  The byte
 * count matches the request, but half the buffer was never written; the
 * spec forbids overlapping content chunks and a read must not succeed
 * unless its whole range was covered.
 */
static void script_overlap(Fake *f)
{
    NBDRequest r;
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_data(f, &r, r.offset, 4096, 0);
    fake_data(f, &r, r.offset, 4096, NBD_REPLY_FLAG_DONE);
}

static void test_fake_overlapping_chunks(void)
{
    FakeRun run;
    fake_run_start(&run, script_overlap, false);
    uint8_t buf[8192];
    memset(buf, 0xaa, sizeof(buf));
    Req r = { 0 };
    submit(run.s, NBD_CMD_READ, 0, 0, sizeof(buf), buf, sizeof(buf), &r);
    RUN_UNTIL(r.calls);
    check_calls(&r, 1);
    g_assert_cmpint(r.ret, ==, -EIO);
    req_clear(&r);
    fake_run_finish(&run);
}

/* ---- block status success (extents past the end are trimmed) ------------ */

static void script_status(Fake *f)
{
    NBDRequest r;
    fake_must_recv(f, &r, NBD_CMD_BLOCK_STATUS);
    FakeExtent e[] = {
        { 16 * KiB, 0 },
        { 16 * KiB, NBD_STATE_HOLE | NBD_STATE_ZERO },
        { MiB, NBD_STATE_HOLE },       /* runs past the end of the export */
    };
    fake_status(f, &r, FAKE_CTX_ID, e, G_N_ELEMENTS(e), NBD_REPLY_FLAG_DONE);
}

static void test_fake_block_status(gconstpointer data)
{
    FakeRun run;
    fake_run_start(&run, script_status, GPOINTER_TO_INT(data));
    Req r = { 0 };
    g_assert_cmpint(run_one(run.s, NBD_CMD_BLOCK_STATUS, 0, FAKE_SIZE - 64 * KiB, 64 * KiB,
                            NULL, 0, &r), ==, 0);
    g_assert_cmpuint(r.n_extents, ==, 3);
    g_assert_cmpuint(r.extents[0].length, ==, 16 * KiB);
    g_assert_cmpuint(r.extents[0].flags, ==, 0);
    g_assert_cmpuint(r.extents[1].length, ==, 16 * KiB);
    g_assert_cmpuint(r.extents[1].flags, ==, NBD_STATE_HOLE | NBD_STATE_ZERO);
    g_assert_cmpuint(r.extents[2].length, ==, 32 * KiB);
    g_assert_cmpuint(r.extents[2].flags, ==, NBD_STATE_HOLE);
    req_clear(&r);
    g_assert_cmpint(run.dead.count, ==, 0);
    fake_run_finish(&run);
}

/* Refuse whatever comes, as a strict server would, until DISC. */
static void script_refuse_all(Fake *f)
{
    NBDRequest r;
    while (fake_recv(f, &r)) {
        fake_error(f, &r, NBD_REPLY_TYPE_ERROR, NBD_EINVAL, "not advertised", 0,
                   NBD_REPLY_FLAG_DONE);
    }
}

/*
 * Commands and flags the export did not advertise fail locally: the fake
 * advertises nothing but HAS_FLAGS, and must never see a request.
 */
static void test_fake_not_advertised(void)
{
    FakeRun run;
    fake_run_start_flags(&run, script_refuse_all, false, NBD_FLAG_HAS_FLAGS);
    uint8_t buf[4096] = { 0 };
    enum { N = 8 };
    Req r[N] = { 0 };
    submit(run.s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, &r[0]);
    submit(run.s, NBD_CMD_TRIM, 0, 0, 4096, NULL, 0, &r[1]);
    submit(run.s, NBD_CMD_WRITE_ZEROES, 0, 0, 4096, NULL, 0, &r[2]);
    submit(run.s, NBD_CMD_CACHE, 0, 0, 4096, NULL, 0, &r[3]);
    submit(run.s, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 4096, buf, sizeof(buf), &r[4]);
    submit(run.s, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 4096, NULL, 0, &r[5]);
    submit(run.s, NBD_CMD_RESIZE, 0, 0, 4096, NULL, 0, &r[6]);
    submit(run.s, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, buf, sizeof(buf), &r[7]);
    RUN_UNTIL(all_done(r, N));
    check_calls(r, N);
    for (int i = 0; i < 6; i++) {
        g_assert_cmpint(r[i].ret, ==, -ENOTSUP);
    }
    g_assert_cmpint(r[6].ret, ==, -EINVAL);
    g_assert_cmpint(r[7].ret, ==, -ENOTSUP);
    reqs_clear(r, N);
    fake_run_finish(&run);
    g_assert_cmpint(g_atomic_int_get(&run.f.n_recv), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();

    g_test_add_data_func("/nbd/session/fake/out-of-order", GINT_TO_POINTER(0),
                         test_fake_out_of_order);
    g_test_add_data_func("/nbd/session/fake/out-of-order-extended", GINT_TO_POINTER(1),
                         test_fake_out_of_order);
    g_test_add_func("/nbd/session/fake/queue", test_fake_queue);
    g_test_add_data_func("/nbd/session/fake/pieces", GINT_TO_POINTER(0), test_fake_pieces);
    g_test_add_data_func("/nbd/session/fake/pieces-extended", GINT_TO_POINTER(1),
                         test_fake_pieces);
    g_test_add_data_func("/nbd/session/fake/errors", GINT_TO_POINTER(0), test_fake_errors);
    g_test_add_data_func("/nbd/session/fake/errors-extended", GINT_TO_POINTER(1),
                         test_fake_errors);
    g_test_add_func("/nbd/session/fake/short-read", test_fake_short_read);
    g_test_add_func("/nbd/session/fake/overlapping-chunks", test_fake_overlapping_chunks);
    g_test_add_data_func("/nbd/session/fake/block-status", GINT_TO_POINTER(0),
                         test_fake_block_status);
    g_test_add_data_func("/nbd/session/fake/block-status-extended", GINT_TO_POINTER(1),
                         test_fake_block_status);
    g_test_add_func("/nbd/session/fake/not-advertised", test_fake_not_advertised);

    return g_test_run();
}
