/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the unit tests of the NBD client's transmission phase
 * (test-nbd-client-session.c, test-nbd-client-fake.c, test-nbd-client-death.c,
 * test-nbd-client-sync.c): the data pattern that writes and fake servers fill
 * buffers with; RUN_UNTIL(), which iterates the main context of the test's
 * main thread until a condition holds and fails after a deadline; request
 * tracking (Req, whose callback records the result and checks that it ran
 * once, on the main thread, never from inside submit) and the session's dead
 * callback; and the scripted fake server, a thread owning the server end of
 * a socketpair that does enough of the fixed newstyle handshake for
 * nbd_receive_negotiate() and then runs a script built from the chunk
 * helpers below.  Each program sets main_thread before it runs its tests.
 * Everything is static inline so that each program takes only what it uses
 * without unused-function warnings.
 */
#ifndef BERTH_TESTS_NBD_SESSION_TEST_UTIL_H
#define BERTH_TESTS_NBD_SESSION_TEST_UTIL_H

#include "nbd-test-util.h"

#include <errno.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define FAKE_SIZE (1 * MiB)
#define FAKE_CTX_ID 7u
#define FAKE_SEED 0x5eedu
#define IO_TIMEOUT_MS 5000

/* The thread the tests run on: main() sets it. */
static GThread *main_thread;

/* ======================================================================
 * Data patterns
 * ====================================================================== */

static inline uint8_t pattern_byte(uint64_t off, unsigned seed)
{
    uint64_t x = (off ^ ((uint64_t) seed << 40)) * UINT64_C(0x9E3779B97F4A7C15);
    return (uint8_t) ((x >> 56) | 1);   /* never 0: no accidental zero runs */
}

static inline void fill_pattern(uint8_t *buf, uint64_t off, uint64_t len, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++) {
        buf[i] = pattern_byte(off + i, seed);
    }
}

static inline bool all_bytes(const uint8_t *buf, uint64_t len, uint8_t value)
{
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != value) {
            return false;
        }
    }
    return true;
}

/* ======================================================================
 * Driving the main loop, tracking requests
 * ====================================================================== */

static inline gboolean tick(gpointer data)
{
    (void) data;
    return G_SOURCE_CONTINUE;
}

/* Iterate the main context until cond holds; fail after 10 s. */
#define RUN_UNTIL(cond)                                                             \
    do {                                                                            \
        gint64 deadline_ = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;            \
        guint tick_ = g_timeout_add(20, tick, NULL);                                \
        while (!(cond) && g_get_monotonic_time() < deadline_) {                     \
            g_main_context_iteration(NULL, TRUE);                                   \
        }                                                                           \
        g_source_remove(tick_);                                                     \
        if (!(cond)) {                                                              \
            g_test_message("timed out waiting for: %s", #cond);                     \
        }                                                                           \
        g_assert_true(cond);                                                        \
    } while (0)

static bool in_submit;
static int n_completed;

typedef struct Req {
    int calls;
    int ret;
    char *msg;
    NBDExtent *extents;
    uint32_t n_extents;
    bool ran_in_submit;
    bool wrong_thread;
    /* When set, the callback frees *free_session (and clears it). */
    NBDClientSession **free_session;
} Req;

static inline void req_cb(const NBDClientResult *res, void *opaque)
{
    Req *r = opaque;
    r->calls++;
    r->ran_in_submit |= in_submit;
    r->wrong_thread |= g_thread_self() != main_thread;
    r->ret = res->ret;
    g_free(r->msg);
    r->msg = res->err ? g_strdup(res->err->message) : NULL;
    if (res->ret) {
        g_assert_nonnull(res->err);
    } else {
        g_assert_null(res->err);
    }
    g_free(r->extents);
    r->extents = res->n_extents ? g_memdup2(res->extents, sizeof(NBDExtent) * res->n_extents)
                                : NULL;
    r->n_extents = res->n_extents;
    n_completed++;
    if (r->free_session && *r->free_session) {
        NBDClientSession *s = *r->free_session;
        *r->free_session = NULL;
        nbd_client_session_free(s);
    }
}

static inline void req_clear(Req *r)
{
    g_free(r->msg);
    g_free(r->extents);
    memset(r, 0, sizeof(*r));
}

static inline void reqs_clear(Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        req_clear(&r[i]);
    }
}

static inline void submitv(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
                           uint64_t len, const struct iovec *iov, int niov, Req *r)
{
    in_submit = true;
    nbd_client_session_submit(s, cmd, flags, off, len, iov, niov, req_cb, r);
    in_submit = false;
    g_assert_cmpint(r->calls, ==, 0);   /* never from inside submit */
}

static inline void submit(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
                          uint64_t len, void *buf, size_t buf_len, Req *r)
{
    struct iovec iov = { buf, buf_len };
    submitv(s, cmd, flags, off, len, buf ? &iov : NULL, buf ? 1 : 0, r);
}

static inline bool all_done(const Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        if (!r[i].calls) {
            return false;
        }
    }
    return true;
}

/* Every request called back once, on the main thread, never inside submit. */
static inline void check_calls(const Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        g_assert_cmpint(r[i].calls, ==, 1);
        g_assert_false(r[i].ran_in_submit);
        g_assert_false(r[i].wrong_thread);
    }
}

static inline void check_all_ret(const Req *r, int n, int ret)
{
    check_calls(r, n);
    for (int i = 0; i < n; i++) {
        if (r[i].ret != ret) {
            g_test_message("request %d: ret %d (%s), want %d", i, r[i].ret,
                           r[i].msg ? r[i].msg : "", ret);
        }
        g_assert_cmpint(r[i].ret, ==, ret);
    }
}

/* Run one request to completion. */
static inline int run_one(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
                          uint64_t len, void *buf, size_t buf_len, Req *r)
{
    submit(s, cmd, flags, off, len, buf, buf_len, r);
    RUN_UNTIL(r->calls);
    check_calls(r, 1);
    return r->ret;
}

typedef struct DeadInfo {
    int count;
    int completed_at_dead;          /* n_completed when the dead callback ran */
    char *why;
    NBDClientSession **free_session; /* free the session from the callback */
} DeadInfo;

static inline void dead_cb(NBDClientSession *s, const GError *why, void *opaque)
{
    DeadInfo *d = opaque;
    g_assert_true(g_thread_self() == main_thread);
    g_assert_false(in_submit);
    g_assert_true(nbd_client_session_is_dead(s));
    d->count++;
    d->completed_at_dead = n_completed;
    g_free(d->why);
    d->why = g_strdup(why ? why->message : "(null)");
    if (d->free_session && *d->free_session) {
        g_assert_true(*d->free_session == s);
        *d->free_session = NULL;
        nbd_client_session_free(s);
    }
}

/* ======================================================================
 * Scripted fake servers
 * ====================================================================== */

typedef struct Fake Fake;
typedef void (*FakeScript)(Fake *f);

struct Fake {
    BerthChannel *ch;       /* the server's end; the fake thread's only */
    bool offer_extended;
    uint16_t tx_flags;      /* transmission flags to advertise */
    NBDMode mode;           /* what the handshake ended in */
    FakeScript script;
    GByteArray *payload;    /* the last request's payload */
    gint n_recv;            /* requests read so far */
    gint got_disc;
    gint release;           /* set by the main thread when a script may go on */
};

static inline bool fake_send(Fake *f, const void *buf, size_t len)
{
    /* The client may be gone already (it hangs up on a lie): not an error. */
    return berth_channel_write_all(f->ch, buf, len, IO_TIMEOUT_MS, NULL);
}

static inline bool fake_recv_option(Fake *f, NBDOptionHeader *oh)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    if (!berth_channel_read_all(f->ch, hdr, sizeof(hdr), IO_TIMEOUT_MS, NULL)) {
        return false;
    }
    g_assert_cmpint(nbd_decode_option_header(hdr, sizeof(hdr), oh).status, ==, NBD_DECODE_OK);
    g_byte_array_set_size(f->payload, oh->length);
    return !oh->length ||
           berth_channel_read_all(f->ch, f->payload->data, oh->length, IO_TIMEOUT_MS, NULL);
}

/* Enough of fixed newstyle for nbd_receive_negotiate(): up to GO. */
static inline bool fake_handshake(Fake *f)
{
    uint8_t buf[512];
    fake_send(f, buf, nbd_encode_greeting(buf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    if (!berth_channel_read_all(f->ch, buf, NBD_CLIENT_FLAGS_SIZE, IO_TIMEOUT_MS, NULL)) {
        return false;
    }
    f->mode = NBD_MODE_SIMPLE;
    for (;;) {
        NBDOptionHeader oh;
        if (!fake_recv_option(f, &oh)) {
            return false;
        }
        switch (oh.option) {
        case NBD_OPT_EXTENDED_HEADERS:
            if (f->offer_extended) {
                fake_send(f, buf, nbd_encode_rep_ack(buf, oh.option));
                f->mode = NBD_MODE_EXTENDED;
            } else {
                fake_send(f, buf, nbd_encode_rep_err(buf, sizeof(buf), oh.option,
                                                     NBD_REP_ERR_UNSUP, NULL, 0));
            }
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            g_assert_cmpint(f->mode, ==, NBD_MODE_SIMPLE);
            fake_send(f, buf, nbd_encode_rep_ack(buf, oh.option));
            f->mode = NBD_MODE_STRUCTURED;
            break;
        case NBD_OPT_SET_META_CONTEXT: {
            static const char ctx[] = "base:allocation";
            fake_send(f, buf, nbd_encode_rep_meta_context(buf, sizeof(buf), oh.option,
                                                          FAKE_CTX_ID, ctx, strlen(ctx)));
            fake_send(f, buf, nbd_encode_rep_ack(buf, oh.option));
            break;
        }
        case NBD_OPT_GO:
            fake_send(f, buf, nbd_encode_rep_info_export(buf, oh.option, FAKE_SIZE,
                                                         f->tx_flags));
            fake_send(f, buf, nbd_encode_rep_ack(buf, oh.option));
            return true;
        default:
            fake_send(f, buf, nbd_encode_rep_err(buf, sizeof(buf), oh.option,
                                                 NBD_REP_ERR_UNSUP, NULL, 0));
            break;
        }
    }
}

/* Read one request (and its payload).  False on EOF, timeout or DISC. */
static inline bool fake_recv(Fake *f, NBDRequest *r)
{
    uint8_t hdr[NBD_REQUEST_MAX_SIZE];
    size_t n = nbd_request_header_size(f->mode);
    if (!berth_channel_read_all(f->ch, hdr, n, IO_TIMEOUT_MS, NULL)) {
        return false;
    }
    g_assert_cmpint(nbd_decode_request(hdr, n, f->mode, r).status, ==, NBD_DECODE_OK);
    uint64_t pl = nbd_request_payload_length(r, f->mode);
    g_assert_cmpuint(pl, <=, 4 * MiB);
    g_byte_array_set_size(f->payload, (guint) pl);
    if (pl && !berth_channel_read_all(f->ch, f->payload->data, pl, IO_TIMEOUT_MS, NULL)) {
        return false;
    }
    if (r->type == NBD_CMD_DISC) {
        g_atomic_int_set(&f->got_disc, 1);
        return false;
    }
    g_atomic_int_inc(&f->n_recv);
    return true;
}

static inline void fake_must_recv(Fake *f, NBDRequest *r, uint16_t type)
{
    g_assert_true(fake_recv(f, r));
    g_assert_cmpuint(r->type, ==, type);
}

static inline void fake_wait_release(Fake *f)
{
    for (int i = 0; i < 5000 && !g_atomic_int_get(&f->release); i++) {
        g_usleep(1000);
    }
    g_assert_true(g_atomic_int_get(&f->release));
}

static inline size_t fake_chunk_hdr(Fake *f, uint8_t *buf, const NBDRequest *r, uint16_t flags,
                                    uint16_t type, uint64_t length)
{
    size_t n = nbd_encode_chunk_header(buf, f->mode, r->cookie, flags, type, r->offset, length);
    g_assert_cmpuint(n, >, 0);
    return n;
}

/* OFFSET_DATA with the fake's pattern for [off, off+len). */
static inline void fake_data(Fake *f, const NBDRequest *r, uint64_t off, uint64_t len,
                             uint16_t flags)
{
    g_autofree uint8_t *buf = g_malloc(NBD_REPLY_HEADER_MAX_SIZE + 8 + len);
    size_t n = fake_chunk_hdr(f, buf, r, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + len);
    n += nbd_encode_offset_data_hdr(buf + n, off);
    fill_pattern(buf + n, off, len, FAKE_SEED);
    fake_send(f, buf, n + len);
}

static inline void fake_hole(Fake *f, const NBDRequest *r, uint64_t off, uint32_t len,
                             uint16_t flags)
{
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE + NBD_OFFSET_HOLE_SIZE];
    size_t n = fake_chunk_hdr(f, buf, r, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                              NBD_OFFSET_HOLE_SIZE);
    n += nbd_encode_offset_hole(buf + n, off, len);
    fake_send(f, buf, n);
}

static inline void fake_none(Fake *f, const NBDRequest *r)
{
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    fake_send(f, buf, fake_chunk_hdr(f, buf, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0));
}

static inline void fake_simple(Fake *f, uint64_t cookie, uint32_t error)
{
    uint8_t buf[NBD_SIMPLE_REPLY_SIZE];
    fake_send(f, buf, nbd_encode_simple_reply(buf, cookie, error));
}

/* Success without data: simple reply, or NONE in extended mode. */
static inline void fake_ok(Fake *f, const NBDRequest *r)
{
    if (f->mode == NBD_MODE_EXTENDED) {
        fake_none(f, r);
    } else {
        fake_simple(f, r->cookie, 0);
    }
}

/* An error chunk of any type; ERROR_OFFSET carries `off`. */
static inline void fake_error(Fake *f, const NBDRequest *r, uint16_t type, uint32_t error,
                              const char *msg, uint64_t off, uint16_t flags)
{
    uint8_t body[256], buf[NBD_REPLY_HEADER_MAX_SIZE + sizeof(body)];
    size_t len = type == NBD_REPLY_TYPE_ERROR_OFFSET
        ? nbd_encode_error_offset_chunk(body, sizeof(body), error, msg, strlen(msg), off)
        : nbd_encode_error_chunk(body, sizeof(body), error, msg, strlen(msg));
    g_assert_cmpuint(len, >, 0);
    size_t n = fake_chunk_hdr(f, buf, r, flags, type, len);
    memcpy(buf + n, body, len);
    fake_send(f, buf, n + len);
}

typedef struct FakeExtent {
    uint64_t length;
    uint32_t flags;
} FakeExtent;

/* BLOCK_STATUS (compact) or BLOCK_STATUS_EXT (extended), DONE. */
static inline void fake_status(Fake *f, const NBDRequest *r, uint32_t ctx_id, const FakeExtent *e,
                               uint32_t n_ext, uint16_t flags)
{
    uint8_t body[1024], buf[NBD_REPLY_HEADER_MAX_SIZE + sizeof(body)];
    bool ext = f->mode == NBD_MODE_EXTENDED;
    size_t len = ext ? nbd_encode_block_status_ext_hdr(body, ctx_id, n_ext)
                     : nbd_encode_block_status_hdr(body, ctx_id);
    for (uint32_t i = 0; i < n_ext; i++) {
        len += ext ? nbd_encode_extent_ext(body + len, e[i].length, e[i].flags)
                   : nbd_encode_extent(body + len, (uint32_t) e[i].length, e[i].flags);
    }
    size_t n = fake_chunk_hdr(f, buf, r, flags,
                              ext ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                                  : NBD_REPLY_TYPE_BLOCK_STATUS, len);
    memcpy(buf + n, body, len);
    fake_send(f, buf, n + len);
}

static inline gpointer fake_thread(gpointer opaque)
{
    Fake *f = opaque;
    if (fake_handshake(f)) {
        f->script(f);
        /* Read whatever else comes until DISC or the end of the connection. */
        NBDRequest r;
        while (fake_recv(f, &r)) {
        }
    }
    berth_channel_shutdown(f->ch);
    return NULL;
}

typedef struct FakeRun {
    Fake f;
    GThread *thread;
    NBDExportInfo info;
    NBDClientSession *s;
    DeadInfo dead;
} FakeRun;

#define FAKE_FLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |      \
                    NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF)

static inline void fake_run_start_flags(FakeRun *run, FakeScript script, bool extended,
                                        uint16_t tx_flags)
{
    memset(run, 0, sizeof(*run));
    run->f.tx_flags = tx_flags;
    BerthChannel *client;
    channel_pair(&client, &run->f.ch);
    run->f.offer_extended = extended;
    run->f.script = script;
    run->f.payload = g_byte_array_new();
    run->thread = g_thread_new("fake-nbd-server", fake_thread, &run->f);

    BerthChannel *out = NULL;
    g_autoptr(GError) err = NULL;
    g_assert_true(nbd_receive_negotiate(client, "fake", NULL, NULL, &run->info, &out, &err));
    g_assert_no_error(err);
    g_assert_true(out == client);
    g_assert_cmpint(run->info.extended_headers, ==, extended);
    g_assert_true(run->info.structured_reply);
    g_assert_true(run->info.base_allocation);
    g_assert_cmpuint(run->info.meta_context_id, ==, FAKE_CTX_ID);
    g_assert_cmpuint(run->info.size, ==, FAKE_SIZE);
    g_assert_cmpuint(run->info.flags, ==, tx_flags);
    run->s = nbd_client_session_new(out, &run->info, NULL, dead_cb, &run->dead);
    berth_channel_unref(out);
    berth_channel_unref(client);
}

static inline void fake_run_start(FakeRun *run, FakeScript script, bool extended)
{
    fake_run_start_flags(run, script, extended, FAKE_FLAGS);
}

static inline void fake_run_finish(FakeRun *run)
{
    g_atomic_int_set(&run->f.release, 1);
    if (run->s) {
        nbd_client_session_free(run->s);
        run->s = NULL;
    }
    g_thread_join(run->thread);
    berth_channel_unref(run->f.ch);
    g_byte_array_unref(run->f.payload);
    nbd_export_info_clear(&run->info);
    g_free(run->dead.why);
    drain_main_context();
}

#endif /* BERTH_TESTS_NBD_SESSION_TEST_UTIL_H */
