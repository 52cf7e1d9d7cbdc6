/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of how the asynchronous NBD client session
 * (nbd/client/session.c, nbd/client/reply.c) dies and is freed, against
 * scripted fake servers.  A server that breaks the protocol (a bad magic, an
 * unknown or stale cookie, chunks outside or beyond the request, the wrong
 * chunk for the command, a bad error chunk, the connection closed in the
 * middle of a reply) kills the session: every pending request fails with EIO
 * before the owner hears, once, through the dead callback, and later
 * requests fail too.  Freeing the session with requests pending, before they
 * are sent, half-way through sending one, or from a request's or the dead
 * callback, fails what is left with ESHUTDOWN and says goodbye only when
 * that is safe; and a dead session left alive keeps the main loop idle.
 * Correct but awkward replies are in test-nbd-client-fake.c.
 */
#include "nbd-session-test-util.h"

#define DEATH_REQS (NBD_CLIENT_SESSION_MAX_IN_FLIGHT + 6)

/* ---- protocol errors: every pending request fails, the owner hears once --- */

typedef enum {
    TRIGGER_READ,           /* request 0: READ 4096 at 0 */
    TRIGGER_BIG_READ,       /* request 0: READ 64 KiB at 0 */
    TRIGGER_STATUS,         /* request 0: BLOCK_STATUS 64 KiB at 0 */
} Trigger;

/*
 * The fake reads every request the session may have on the wire (so the
 * session has nothing left to write), then lies about the first.
 */
static void fake_recv_wire(Fake *f, NBDRequest *first)
{
    NBDRequest other;
    g_assert_true(fake_recv(f, first));
    for (int i = 1; i < NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i++) {
        g_assert_true(fake_recv(f, &other));
    }
}

static void script_bad_magic(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE] = { 0 };
    nbd_store_be32(buf, 0xdeadbeef);
    fake_send(f, buf, sizeof(buf));
}

static void script_unknown_cookie(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    r.cookie ^= UINT64_C(0x5a5a) << 32;
    fake_ok(f, &r);
}

static void script_invented_slot(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    r.cookie = 0xdeadbeef;
    fake_ok(f, &r);
}

static void script_data_too_long(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_data(f, &r, r.offset, r.length * 2, NBD_REPLY_FLAG_DONE);
}

static void script_data_outside(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_data(f, &r, r.offset + 2048, r.length, NBD_REPLY_FLAG_DONE);
}

static void script_hole_outside(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_hole(f, &r, r.offset + r.length, 4096, NBD_REPLY_FLAG_DONE);
}

static void script_close_mid_data(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE + 8 + 1000];
    size_t n = fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                              8 + r.length);
    n += nbd_encode_offset_data_hdr(buf + n, r.offset);
    fill_pattern(buf + n, r.offset, 1000, FAKE_SEED);
    fake_send(f, buf, n + 1000);
    berth_channel_shutdown(f->ch);
}

/* Most of a big read (the direct path), then the end of the connection. */
static void script_close_mid_big_data(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    g_assert_cmpuint(r.length, ==, 64 * KiB);
    g_autofree uint8_t *buf = g_malloc(NBD_REPLY_HEADER_MAX_SIZE + 8 + r.length);
    size_t n = fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                              8 + r.length);
    n += nbd_encode_offset_data_hdr(buf + n, r.offset);
    /* Header first, so the data arrives on its own and can be read in place. */
    fake_send(f, buf, n);
    g_usleep(20000);
    fill_pattern(buf + n, r.offset, 40 * KiB, FAKE_SEED);
    fake_send(f, buf + n, 40 * KiB);
    g_usleep(20000);
    berth_channel_shutdown(f->ch);
}

static void script_close_mid_header(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
    fake_send(f, buf, 10);
    berth_channel_shutdown(f->ch);
}

static void script_simple_read_ok(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_simple(f, r.cookie, 0);
}

static void script_status_wrong_ctx(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    FakeExtent e = { r.length, 0 };
    fake_status(f, &r, FAKE_CTX_ID + 1, &e, 1, NBD_REPLY_FLAG_DONE);
}

static void script_status_no_extents(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_status(f, &r, FAKE_CTX_ID, NULL, 0, NBD_REPLY_FLAG_DONE);
}

static void script_status_for_read(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    FakeExtent e = { r.length, 0 };
    fake_status(f, &r, FAKE_CTX_ID, &e, 1, NBD_REPLY_FLAG_DONE);
}

static void script_unknown_chunk_type(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE + 4] = { 0 };
    size_t n = fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, 42, 4);
    fake_send(f, buf, n + 4);
}

static void script_status_twice(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    FakeExtent e = { r.length, 0 };
    fake_status(f, &r, FAKE_CTX_ID, &e, 1, 0);
    fake_status(f, &r, FAKE_CTX_ID, &e, 1, NBD_REPLY_FLAG_DONE);
}

static void script_data_for_status(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_data(f, &r, r.offset, 4096, NBD_REPLY_FLAG_DONE);
}

static void script_simple_after_chunk(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    fake_data(f, &r, r.offset, 1024, 0);
    fake_simple(f, r.cookie, 0);
}

static void script_error_zero(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE + NBD_ERROR_HDR_SIZE] = { 0 };
    size_t n = fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                              NBD_ERROR_HDR_SIZE);
    fake_send(f, buf, n + NBD_ERROR_HDR_SIZE);   /* error value 0, no message */
}

static void script_error_oversized(Fake *f)
{
    NBDRequest r;
    fake_recv_wire(f, &r);
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    fake_send(f, buf, fake_chunk_hdr(f, buf, &r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                                     2 * MiB));
}

typedef struct DeathCase {
    const char *name;
    FakeScript script;
    Trigger trigger;
    bool extended;
    bool free_in_dead_cb;
    const char *why;        /* expected in the dead callback's error */
} DeathCase;

static void submit_trigger(NBDClientSession *s, Trigger t, uint8_t *buf, Req *r)
{
    switch (t) {
    case TRIGGER_READ:
        submit(s, NBD_CMD_READ, 0, 0, 4096, buf, 4096, r);
        break;
    case TRIGGER_BIG_READ:
        submit(s, NBD_CMD_READ, 0, 0, 64 * KiB, buf, 64 * KiB, r);
        break;
    case TRIGGER_STATUS:
        submit(s, NBD_CMD_BLOCK_STATUS, 0, 0, 64 * KiB, NULL, 0, r);
        break;
    }
}

static void test_fake_death(gconstpointer data)
{
    const DeathCase *dc = data;
    FakeRun run;
    fake_run_start(&run, dc->script, dc->extended);
    if (dc->free_in_dead_cb) {
        run.dead.free_session = &run.s;
    }
    g_autofree uint8_t *big = g_malloc(64 * KiB);
    g_autofree uint8_t *bufs = g_malloc(DEATH_REQS * 4096);
    Req *r = g_new0(Req, DEATH_REQS);
    submit_trigger(run.s, dc->trigger, big, &r[0]);
    for (int i = 1; i < DEATH_REQS; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * 4096, 4096, bufs + i * 4096, 4096, &r[i]);
    }
    g_assert_cmpuint(nbd_client_session_pending(run.s), ==, DEATH_REQS);
    int before = n_completed;
    RUN_UNTIL(all_done(r, DEATH_REQS));
    check_all_ret(r, DEATH_REQS, -EIO);
    RUN_UNTIL(run.dead.count > 0);
    drain_main_context();
    g_assert_cmpint(run.dead.count, ==, 1);
    /* The pending requests were failed before the owner heard. */
    g_assert_cmpint(run.dead.completed_at_dead - before, ==, DEATH_REQS);
    g_test_message("died: %s", run.dead.why);
    g_assert_nonnull(strstr(run.dead.why, dc->why));
    reqs_clear(r, DEATH_REQS);

    if (!dc->free_in_dead_cb) {
        g_assert_true(nbd_client_session_is_dead(run.s));
        g_assert_cmpuint(nbd_client_session_pending(run.s), ==, 0);
        /* Later requests fail too, still never from inside submit. */
        submit(run.s, NBD_CMD_READ, 0, 0, 4096, bufs, 4096, &r[0]);
        submit(run.s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, &r[1]);
        RUN_UNTIL(all_done(r, 2));
        check_all_ret(r, 2, -EIO);
        reqs_clear(r, 2);
        drain_main_context();
        g_assert_cmpint(run.dead.count, ==, 1);
    } else {
        g_assert_null(run.s);
    }
    g_free(r);
    fake_run_finish(&run);
}

/* A reply to a request that was already answered. */
static void script_stale_cookie(Fake *f)
{
    NBDRequest a, b;
    fake_must_recv(f, &a, NBD_CMD_READ);
    fake_must_recv(f, &b, NBD_CMD_READ);
    fake_data(f, &a, a.offset, a.length, NBD_REPLY_FLAG_DONE);
    fake_data(f, &a, a.offset, a.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_stale_cookie(void)
{
    FakeRun run;
    fake_run_start(&run, script_stale_cookie, false);
    uint8_t buf[2][4096];
    Req r[2] = { 0 };
    submit(run.s, NBD_CMD_READ, 0, 0, 4096, buf[0], 4096, &r[0]);
    submit(run.s, NBD_CMD_READ, 0, 4096, 4096, buf[1], 4096, &r[1]);
    RUN_UNTIL(all_done(r, 2) && run.dead.count);
    check_calls(r, 2);
    g_assert_cmpint(r[0].ret, ==, 0);
    g_assert_cmpint(r[1].ret, ==, -EIO);
    g_assert_cmpint(run.dead.count, ==, 1);
    g_assert_nonnull(strstr(run.dead.why, "unknown cookie"));
    reqs_clear(r, 2);
    fake_run_finish(&run);
}

/* ---- 12. freeing with requests pending ----------------------------------- */

static void script_hold(Fake *f)
{
    /* Read requests, never answer; the drain loop reads until DISC/EOF. */
    (void) f;
}

static void test_fake_free_pending(void)
{
    FakeRun run;
    fake_run_start(&run, script_hold, false);
    g_autofree uint8_t *bufs = g_malloc(DEATH_REQS * 4096);
    Req *r = g_new0(Req, DEATH_REQS);
    for (int i = 0; i < DEATH_REQS; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * 4096, 4096, bufs + i * 4096, 4096, &r[i]);
    }
    RUN_UNTIL(g_atomic_int_get(&run.f.n_recv) == NBD_CLIENT_SESSION_MAX_IN_FLIGHT);
    g_assert_cmpuint(nbd_client_session_pending(run.s), ==, DEATH_REQS);
    /* Callbacks run from inside free, with ESHUTDOWN. */
    nbd_client_session_free(run.s);
    run.s = NULL;
    check_all_ret(r, DEATH_REQS, -ESHUTDOWN);
    reqs_clear(r, DEATH_REQS);
    g_free(r);
    fake_run_finish(&run);
    /* Everything was on the wire whole, so the goodbye went out. */
    g_assert_true(g_atomic_int_get(&run.f.got_disc));
    g_assert_cmpint(run.dead.count, ==, 0);
}

static void test_fake_free_before_dispatch(void)
{
    FakeRun run;
    fake_run_start(&run, script_hold, false);
    uint8_t buf[4096];
    Req r[3] = { 0 };
    submit(run.s, NBD_CMD_READ, 0, 0, 4096, buf, 4096, &r[0]);
    submit(run.s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, &r[1]);
    submit(run.s, NBD_CMD_READ, 0, FAKE_SIZE, 4096, buf, 4096, &r[2]);  /* refused locally */
    nbd_client_session_free(run.s);
    run.s = NULL;
    check_calls(r, 3);
    g_assert_cmpint(r[0].ret, ==, -ESHUTDOWN);
    g_assert_cmpint(r[1].ret, ==, -ESHUTDOWN);
    g_assert_cmpint(r[2].ret, ==, -EINVAL);
    reqs_clear(r, 3);
    fake_run_finish(&run);
    g_assert_true(g_atomic_int_get(&run.f.got_disc));
    g_assert_cmpint(g_atomic_int_get(&run.f.n_recv), ==, 0);
    g_assert_cmpint(run.dead.count, ==, 0);
}

static void script_answer_first(Fake *f)
{
    NBDRequest a, b, c;
    fake_must_recv(f, &a, NBD_CMD_READ);
    fake_must_recv(f, &b, NBD_CMD_READ);
    fake_must_recv(f, &c, NBD_CMD_READ);
    fake_data(f, &a, a.offset, a.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_free_in_callback(void)
{
    FakeRun run;
    fake_run_start(&run, script_answer_first, false);
    uint8_t buf[3][4096];
    Req r[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * 4096, 4096, buf[i], 4096, &r[i]);
    }
    r[0].free_session = &run.s;
    RUN_UNTIL(all_done(r, 3));
    check_calls(r, 3);
    g_assert_null(run.s);
    g_assert_cmpint(r[0].ret, ==, 0);
    g_assert_cmpint(r[1].ret, ==, -ESHUTDOWN);
    g_assert_cmpint(r[2].ret, ==, -ESHUTDOWN);
    reqs_clear(r, 3);
    fake_run_finish(&run);
    g_assert_cmpint(run.dead.count, ==, 0);
}

/* A request callback frees the session while it dies: no dead callback. */
static void test_fake_free_in_callback_on_death(void)
{
    FakeRun run;
    fake_run_start(&run, script_bad_magic, false);
    g_autofree uint8_t *bufs = g_malloc(DEATH_REQS * 4096);
    Req *r = g_new0(Req, DEATH_REQS);
    for (int i = 0; i < DEATH_REQS; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * 4096, 4096, bufs + i * 4096, 4096, &r[i]);
    }
    r[5].free_session = &run.s;
    RUN_UNTIL(all_done(r, DEATH_REQS));
    check_all_ret(r, DEATH_REQS, -EIO);
    g_assert_null(run.s);
    drain_main_context();
    g_assert_cmpint(run.dead.count, ==, 0);
    reqs_clear(r, DEATH_REQS);
    g_free(r);
    fake_run_finish(&run);
}

static void script_wait_release(Fake *f)
{
    fake_wait_release(f);
}

/* Freed in the middle of sending a write: no goodbye after half a request. */
static void test_fake_free_half_sent(void)
{
    FakeRun run;
    fake_run_start(&run, script_wait_release, false);
    g_autofree uint8_t *buf = g_malloc0(FAKE_SIZE);
    Req r = { 0 };
    submit(run.s, NBD_CMD_WRITE, 0, 0, FAKE_SIZE, buf, FAKE_SIZE, &r);
    /* The socket takes what it can; the fake reads nothing yet. */
    gint64 until = g_get_monotonic_time() + 50 * 1000;
    guint t = g_timeout_add(10, tick, NULL);
    while (g_get_monotonic_time() < until) {
        g_main_context_iteration(NULL, TRUE);
    }
    g_source_remove(t);
    g_assert_cmpint(r.calls, ==, 0);
    g_assert_cmpuint(nbd_client_session_pending(run.s), ==, 1);
    nbd_client_session_free(run.s);
    run.s = NULL;
    check_all_ret(&r, 1, -ESHUTDOWN);
    req_clear(&r);
    fake_run_finish(&run);
    g_assert_false(g_atomic_int_get(&run.f.got_disc));
    g_assert_cmpint(run.dead.count, ==, 0);
}

static gboolean set_flag(gpointer opaque)
{
    *(bool *) opaque = true;
    return G_SOURCE_REMOVE;
}

/*
 * A dead session that its owner keeps (to fail later submits with EIO, as the
 * API allows) must leave the main loop idle.
 */
static void test_fake_dead_session_idle(void)
{
    FakeRun run;
    fake_run_start(&run, script_bad_magic, false);
    g_autofree uint8_t *bufs = g_malloc(DEATH_REQS * 4096);
    Req *r = g_new0(Req, DEATH_REQS);
    for (int i = 0; i < DEATH_REQS; i++) {
        submit(run.s, NBD_CMD_READ, 0, i * 4096, 4096, bufs + i * 4096, 4096, &r[i]);
    }
    RUN_UNTIL(all_done(r, DEATH_REQS) && run.dead.count);
    check_all_ret(r, DEATH_REQS, -EIO);
    reqs_clear(r, DEATH_REQS);
    g_free(r);

    bool expired = false;
    guint id = g_timeout_add(200, set_flag, &expired);
    int iterations = 0;
    while (!expired && iterations < 1000000) {
        g_main_context_iteration(NULL, TRUE);
        iterations++;
    }
    if (!expired) {
        g_source_remove(id);
    }
    g_test_message("%d main loop iterations in 200 ms with a dead session", iterations);
    g_assert_cmpint(iterations, <=, 50);
    fake_run_finish(&run);
}

/* ERROR_OFFSET must point inside the request; its end is outside. */
static void script_error_offset_at_end(Fake *f)
{
    NBDRequest r;
    fake_must_recv(f, &r, NBD_CMD_READ);
    fake_error(f, &r, NBD_REPLY_TYPE_ERROR_OFFSET, NBD_EPERM, "past the end",
               r.offset + r.length, NBD_REPLY_FLAG_DONE);
}

static void test_fake_error_offset_at_end(void)
{
    FakeRun run;
    fake_run_start(&run, script_error_offset_at_end, false);
    uint8_t buf[4096];
    Req r = { 0 };
    submit(run.s, NBD_CMD_READ, 0, 8192, sizeof(buf), buf, sizeof(buf), &r);
    RUN_UNTIL(r.calls);
    check_calls(&r, 1);
    drain_main_context();
    g_assert_cmpint(r.ret, ==, -EIO);
    g_assert_cmpint(run.dead.count, ==, 1);
    req_clear(&r);
    fake_run_finish(&run);
}

/* ---- the protocol violations, each with what the dead callback must say --- */

#define PROTO "NBD protocol error from server: "
static const DeathCase death_cases[] = {
    { "bad-magic", script_bad_magic, TRIGGER_READ, false, false, PROTO "wrong reply magic" },
    { "bad-magic-extended", script_bad_magic, TRIGGER_READ, true, false,
      PROTO "wrong reply magic" },
    { "unknown-cookie", script_unknown_cookie, TRIGGER_READ, false, false,
      PROTO "reply for unknown cookie" },
    { "invented-slot-extended", script_invented_slot, TRIGGER_READ, true, false,
      PROTO "reply for unknown cookie" },
    { "data-too-long", script_data_too_long, TRIGGER_READ, false, false,
      PROTO "OFFSET_DATA chunk of 8200 bytes for a 4096-byte read" },
    { "data-outside", script_data_outside, TRIGGER_READ, false, false,
      PROTO "OFFSET_DATA chunk outside the read request" },
    { "data-outside-extended", script_data_outside, TRIGGER_READ, true, false,
      PROTO "OFFSET_DATA chunk outside the read request" },
    { "hole-outside", script_hole_outside, TRIGGER_READ, false, false,
      PROTO "OFFSET_HOLE chunk outside the read request" },
    { "close-mid-data", script_close_mid_data, TRIGGER_BIG_READ, false, false,
      "closed the connection" },
    { "close-mid-direct-data", script_close_mid_big_data, TRIGGER_BIG_READ, false, false,
      "closed the connection in the middle of a reply" },
    { "close-mid-direct-data-extended", script_close_mid_big_data, TRIGGER_BIG_READ, true,
      false, "closed the connection in the middle of a reply" },
    { "close-mid-header", script_close_mid_header, TRIGGER_READ, false, false,
      "server closed the connection" },
    { "simple-reply-to-read", script_simple_read_ok, TRIGGER_READ, false, false,
      PROTO "simple reply to a successful READ" },
    { "status-wrong-context", script_status_wrong_ctx, TRIGGER_STATUS, false, false,
      PROTO "BLOCK_STATUS for unknown context id 8" },
    { "status-wrong-context-extended", script_status_wrong_ctx, TRIGGER_STATUS, true, false,
      PROTO "BLOCK_STATUS for unknown context id 8" },
    { "status-no-extents", script_status_no_extents, TRIGGER_STATUS, false, false,
      PROTO "bad BLOCK_STATUS chunk" },
    { "status-for-read", script_status_for_read, TRIGGER_READ, false, false,
      PROTO "block status chunk for a" },
    { "unknown-chunk-type", script_unknown_chunk_type, TRIGGER_READ, false, false,
      PROTO "unexpected chunk type" },
    { "status-twice", script_status_twice, TRIGGER_STATUS, false, false,
      PROTO "two BLOCK_STATUS chunks for one context" },
    { "data-for-status", script_data_for_status, TRIGGER_STATUS, false, false,
      PROTO "NBD_REPLY_TYPE_OFFSET_DATA chunk for a NBD_CMD_BLOCK_STATUS request" },
    { "simple-after-chunk", script_simple_after_chunk, TRIGGER_READ, false, false,
      PROTO "simple reply after structured chunks" },
    { "error-zero", script_error_zero, TRIGGER_READ, false, false,
      PROTO "bad error chunk" },
    { "error-oversized", script_error_oversized, TRIGGER_READ, true, false,
      PROTO "oversized" },
    { "free-in-dead-callback", script_bad_magic, TRIGGER_READ, false, true,
      PROTO "wrong reply magic" },
    { "free-in-dead-callback-eof", script_close_mid_data, TRIGGER_BIG_READ, false, true,
      "closed the connection" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();

    for (guint i = 0; i < G_N_ELEMENTS(death_cases); i++) {
        g_autofree char *path = g_strdup_printf("/nbd/session/fake/death/%s",
                                                death_cases[i].name);
        g_test_add_data_func(path, &death_cases[i], test_fake_death);
    }
    g_test_add_func("/nbd/session/fake/stale-cookie", test_fake_stale_cookie);
    g_test_add_func("/nbd/session/fake/free-pending", test_fake_free_pending);
    g_test_add_func("/nbd/session/fake/free-before-dispatch", test_fake_free_before_dispatch);
    g_test_add_func("/nbd/session/fake/free-in-callback", test_fake_free_in_callback);
    g_test_add_func("/nbd/session/fake/free-in-callback-on-death",
                    test_fake_free_in_callback_on_death);
    g_test_add_func("/nbd/session/fake/free-half-sent", test_fake_free_half_sent);
    g_test_add_func("/nbd/session/fake/dead-session-idle", test_fake_dead_session_idle);
    g_test_add_func("/nbd/session/fake/error-offset-at-end", test_fake_error_offset_at_end);

    return g_test_run();
}
