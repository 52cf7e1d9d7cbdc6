/*
 * Unit tests of the asynchronous NBD client session (nbd/client-session.c,
 * nbd/client-reply.c) and of the blocking transmission primitives
 * (nbd/client.c).  The session runs on the main context of the test's main
 * thread, which is driven by g_main_context_iteration() in loops bounded by a
 * deadline.  Two kinds of peers: berth's own NBD server in-process on the same
 * main context (the blocking handshake runs in a GThread while the main loop
 * serves it; a hand-written handshake gives the compact structured and the
 * simple modes too), and scripted fake servers, each a thread owning one end
 * of a socketpair, which answer requests out of order, in pieces, or wrongly.
 */
#include "nbd-test-util.h"

#include <errno.h>
#include <poll.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define DISK_SIZE (64 * MiB)
#define RO_SIZE (1 * MiB)
#define FAKE_SIZE (1 * MiB)
#define FAKE_CTX_ID 7u
#define FAKE_SEED 0x5eedu
#define IO_TIMEOUT_MS 5000
#define DEATH_REQS (NBD_CLIENT_SESSION_MAX_IN_FLIGHT + 6)

static char *tmp_dir;
static char *sock_path;
static NBDExport *exp_disk, *exp_ro;
static GThread *main_thread;

/* ======================================================================
 * Data patterns
 * ====================================================================== */

static uint8_t pattern_byte(uint64_t off, unsigned seed)
{
    uint64_t x = (off ^ ((uint64_t) seed << 40)) * UINT64_C(0x9E3779B97F4A7C15);
    return (uint8_t) ((x >> 56) | 1);   /* never 0: no accidental zero runs */
}

static void fill_pattern(uint8_t *buf, uint64_t off, uint64_t len, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++) {
        buf[i] = pattern_byte(off + i, seed);
    }
}

static bool all_bytes(const uint8_t *buf, uint64_t len, uint8_t value)
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

static gboolean tick(gpointer data)
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

static void req_cb(const NBDClientResult *res, void *opaque)
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

static void req_clear(Req *r)
{
    g_free(r->msg);
    g_free(r->extents);
    memset(r, 0, sizeof(*r));
}

static void reqs_clear(Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        req_clear(&r[i]);
    }
}

static void submitv(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
                    uint64_t len, const struct iovec *iov, int niov, Req *r)
{
    in_submit = true;
    nbd_client_session_submit(s, cmd, flags, off, len, iov, niov, req_cb, r);
    in_submit = false;
    g_assert_cmpint(r->calls, ==, 0);   /* never from inside submit */
}

static void submit(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
                   uint64_t len, void *buf, size_t buf_len, Req *r)
{
    struct iovec iov = { buf, buf_len };
    submitv(s, cmd, flags, off, len, buf ? &iov : NULL, buf ? 1 : 0, r);
}

static bool all_done(const Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        if (!r[i].calls) {
            return false;
        }
    }
    return true;
}

/* Every request called back once, on the main thread, never inside submit. */
static void check_calls(const Req *r, int n)
{
    for (int i = 0; i < n; i++) {
        g_assert_cmpint(r[i].calls, ==, 1);
        g_assert_false(r[i].ran_in_submit);
        g_assert_false(r[i].wrong_thread);
    }
}

static void check_all_ret(const Req *r, int n, int ret)
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
static int run_one(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t off,
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

static void dead_cb(NBDClientSession *s, const GError *why, void *opaque)
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
 * berth's own server, in-process
 * ====================================================================== */

typedef enum {
    NEG_LIBRARY,            /* nbd_receive_negotiate(): extended headers */
    NEG_MANUAL_STRUCTURED,  /* hand-made: structured replies + base:allocation */
    NEG_MANUAL_SIMPLE,      /* hand-made: simple replies only */
} NegMode;

typedef struct ConnectJob {
    const char *export_name;
    NegMode how;
    BerthChannel *ch;       /* result: the channel to run the session on */
    NBDExportInfo info;
    GError *err;
    gint done;
} ConnectJob;

static void opt_send(BerthChannel *ch, uint32_t option, const void *data, uint32_t len)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    nbd_encode_option_header(hdr, option, len);
    g_assert_true(berth_channel_write_all(ch, hdr, sizeof(hdr), IO_TIMEOUT_MS, NULL));
    if (len) {
        g_assert_true(berth_channel_write_all(ch, data, len, IO_TIMEOUT_MS, NULL));
    }
}

/* One option reply to `option`; its payload lands in `payload`. */
static uint32_t opt_reply(BerthChannel *ch, uint32_t option, GByteArray *payload)
{
    uint8_t hdr[NBD_OPTION_REPLY_HEADER_SIZE];
    g_assert_true(berth_channel_read_all(ch, hdr, sizeof(hdr), IO_TIMEOUT_MS, NULL));
    NBDOptionReplyHeader rh;
    g_assert_cmpint(nbd_decode_option_reply_header(hdr, sizeof(hdr), &rh).status, ==,
                    NBD_DECODE_OK);
    g_assert_cmpuint(rh.option, ==, option);
    g_assert_cmpuint(rh.length, <=, 64 * KiB);
    g_byte_array_set_size(payload, rh.length);
    if (rh.length) {
        g_assert_true(berth_channel_read_all(ch, payload->data, rh.length, IO_TIMEOUT_MS,
                                             NULL));
    }
    return rh.type;
}

/*
 * A handshake written by hand, for the modes nbd_receive_negotiate() never
 * picks with berth's server (which always grants extended headers).
 */
static void manual_negotiate(BerthChannel *ch, const char *name, bool structured,
                             NBDExportInfo *info)
{
    g_autoptr(GByteArray) payload = g_byte_array_new();
    uint8_t buf[256];
    memset(info, 0, sizeof(*info));
    info->min_block = 1;
    info->pref_block = 4096;
    info->max_block = 32 * MiB;

    g_assert_true(berth_channel_read_all(ch, buf, NBD_GREETING_SIZE, IO_TIMEOUT_MS, NULL));
    NBDGreeting greeting;
    g_assert_cmpint(nbd_decode_greeting(buf, NBD_GREETING_SIZE, &greeting).status, ==,
                    NBD_DECODE_OK);
    g_assert_true(greeting.handshake_flags & NBD_FLAG_FIXED_NEWSTYLE);
    g_assert_true(greeting.handshake_flags & NBD_FLAG_NO_ZEROES);
    size_t n = nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    g_assert_true(berth_channel_write_all(ch, buf, n, IO_TIMEOUT_MS, NULL));

    if (structured) {
        opt_send(ch, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        g_assert_cmpuint(opt_reply(ch, NBD_OPT_STRUCTURED_REPLY, payload), ==, NBD_REP_ACK);
        info->structured_reply = true;

        static const char *const queries[] = { "base:allocation" };
        n = nbd_encode_opt_meta_context(buf, sizeof(buf), name, strlen(name), queries, 1);
        g_assert_cmpuint(n, >, 0);
        opt_send(ch, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t) n);
        uint32_t type;
        while ((type = opt_reply(ch, NBD_OPT_SET_META_CONTEXT, payload)) ==
               NBD_REP_META_CONTEXT) {
            NBDRepMetaContext mc;
            g_assert_cmpint(nbd_decode_rep_meta_context(payload->data, payload->len,
                                                        &mc).status, ==, NBD_DECODE_OK);
            info->base_allocation = true;
            info->meta_context_id = mc.context_id;
        }
        g_assert_cmpuint(type, ==, NBD_REP_ACK);
        g_assert_true(info->base_allocation);
    }

    static const uint16_t requests[] = { NBD_INFO_BLOCK_SIZE };
    n = nbd_encode_opt_info_go(buf, sizeof(buf), name, strlen(name), requests, 1);
    g_assert_cmpuint(n, >, 0);
    opt_send(ch, NBD_OPT_GO, buf, (uint32_t) n);
    uint32_t type;
    bool have_export = false;
    while ((type = opt_reply(ch, NBD_OPT_GO, payload)) == NBD_REP_INFO) {
        NBDRepInfo ri;
        g_assert_cmpint(nbd_decode_rep_info(payload->data, payload->len, &ri).status, ==,
                        NBD_DECODE_OK);
        if (ri.type == NBD_INFO_EXPORT) {
            info->size = ri.u.export_.size;
            info->flags = ri.u.export_.flags;
            have_export = true;
        } else if (ri.type == NBD_INFO_BLOCK_SIZE) {
            info->min_block = ri.u.block_size.min_block;
            info->pref_block = ri.u.block_size.pref_block;
            info->max_block = ri.u.block_size.max_block;
        }
    }
    g_assert_cmpuint(type, ==, NBD_REP_ACK);
    g_assert_true(have_export);
}

static gpointer connect_thread(gpointer opaque)
{
    ConnectJob *job = opaque;
    BerthChannel *ch = connect_unix(sock_path, &job->err);
    if (ch) {
        if (job->how == NEG_LIBRARY) {
            BerthChannel *out = NULL;
            if (nbd_receive_negotiate(ch, job->export_name, NULL, NULL, &job->info, &out,
                                      &job->err)) {
                job->ch = out;
            }
            berth_channel_unref(ch);
        } else {
            manual_negotiate(ch, job->export_name, job->how == NEG_MANUAL_STRUCTURED,
                             &job->info);
            job->ch = ch;
        }
    }
    job_done(&job->done);
    return NULL;
}

/* Connect and negotiate in a thread while the main context serves. */
static void connect_job_run(ConnectJob *job)
{
    GThread *t = g_thread_new("nbd-connect", connect_thread, job);
    RUN_UNTIL(g_atomic_int_get(&job->done));
    g_thread_join(t);
    g_assert_no_error(job->err);
    g_assert_nonnull(job->ch);
}

typedef struct ServerConn {
    ConnectJob job;
    NBDClientSession *s;
    DeadInfo dead;
    NBDExport *exp;
} ServerConn;

static void server_conn_open(ServerConn *c, const char *name, NegMode how, NBDExport *exp)
{
    memset(c, 0, sizeof(*c));
    c->exp = exp;
    c->job.export_name = name;
    c->job.how = how;
    connect_job_run(&c->job);
    c->s = nbd_client_session_new(c->job.ch, &c->job.info, NULL, dead_cb, &c->dead);
    g_assert_nonnull(c->s);
    /* The session holds its own reference to the channel. */
    g_clear_pointer(&c->job.ch, berth_channel_unref);
    const NBDExportInfo *si = nbd_client_session_info(c->s);
    g_assert_cmpuint(si->size, ==, c->job.info.size);
    g_assert_cmpuint(si->flags, ==, c->job.info.flags);
    g_assert_cmpint(nbd_export_info_mode(si), ==, nbd_export_info_mode(&c->job.info));
}

static void server_conn_close(ServerConn *c)
{
    g_assert_cmpuint(nbd_client_session_pending(c->s), ==, 0);
    g_assert_false(nbd_client_session_is_dead(c->s));
    nbd_client_session_free(c->s);
    c->s = NULL;
    g_assert_cmpint(c->dead.count, ==, 0);
    g_free(c->dead.why);
    nbd_export_info_clear(&c->job.info);
    /* The server sees NBD_CMD_DISC, then the end of the connection. */
    RUN_UNTIL(nbd_export_client_count(c->exp) == 0);
    drain_main_context();
}

/* Which block-status flags the extents give offset `off` (query from `base`). */
static int64_t status_at(const Req *r, uint64_t base, uint64_t off)
{
    uint64_t pos = base;
    for (uint32_t i = 0; i < r->n_extents; i++) {
        if (off >= pos && off - pos < r->extents[i].length) {
            return r->extents[i].flags;
        }
        pos += r->extents[i].length;
    }
    return -1;
}

/* Writes, reads, holes, flush, trim, write-zeroes, block status, FUA, DF. */
static void run_data_suite(NBDClientSession *s, unsigned seed)
{
    const NBDExportInfo *info = nbd_client_session_info(s);
    NBDMode mode = nbd_export_info_mode(info);
    const uint64_t chunk = 64 * KiB, area = 8 * MiB;
    const int n = (int) (area / chunk);
    g_assert_cmpint(n, >, NBD_CLIENT_SESSION_MAX_IN_FLIGHT);

    /* More writes than fit on the wire at once: the rest wait in the queue. */
    g_autofree uint8_t *wbuf = g_malloc(area);
    fill_pattern(wbuf, 0, area, seed);
    Req *w = g_new0(Req, n);
    for (int i = 0; i < n; i++) {
        submit(s, NBD_CMD_WRITE, i % 16 == 0 ? NBD_CMD_FLAG_FUA : 0, i * chunk, chunk,
               wbuf + i * chunk, chunk, &w[i]);
    }
    g_assert_cmpuint(nbd_client_session_pending(s), ==, n);
    RUN_UNTIL(all_done(w, n));
    check_all_ret(w, n, 0);
    g_assert_cmpuint(nbd_client_session_pending(s), ==, 0);

    /* Read it all back, again with more requests than slots. */
    g_autofree uint8_t *rbuf = g_malloc(area);
    memset(rbuf, 0xee, area);
    Req *r = g_new0(Req, n);
    for (int i = 0; i < n; i++) {
        submit(s, NBD_CMD_READ, 0, i * chunk, chunk, rbuf + i * chunk, chunk, &r[i]);
    }
    RUN_UNTIL(all_done(r, n));
    check_all_ret(r, n, 0);
    g_assert_true(memcmp(rbuf, wbuf, area) == 0);
    reqs_clear(w, n);
    reqs_clear(r, n);

    /* Large reads (the direct path), one into a three-piece iovec. */
    Req big[2] = { 0 };
    memset(rbuf, 0xee, area);
    submit(s, NBD_CMD_READ, 0, MiB + 512, MiB, rbuf, MiB, &big[0]);
    uint8_t *b2 = rbuf + 2 * MiB;
    struct iovec iov3[3] = {
        { b2, 1 }, { b2 + 1, MiB + 7 }, { b2 + 1 + MiB + 7, 4 * MiB - 1 - MiB - 7 },
    };
    submitv(s, NBD_CMD_READ, 0, 2 * MiB, 4 * MiB, iov3, 3, &big[1]);
    RUN_UNTIL(all_done(big, 2));
    check_all_ret(big, 2, 0);
    g_assert_true(memcmp(rbuf, wbuf + MiB + 512, MiB) == 0);
    g_assert_true(memcmp(b2, wbuf + 2 * MiB, 4 * MiB) == 0);
    reqs_clear(big, 2);

    /* Sparse areas: never written (OFFSET_HOLE chunks in structured modes),
     * and a read that crosses from data into a hole. */
    Req sp[2] = { 0 };
    memset(rbuf, 0xaa, area);
    submit(s, NBD_CMD_READ, 0, 16 * MiB, 2 * MiB, rbuf, 2 * MiB, &sp[0]);
    submit(s, NBD_CMD_READ, 0, 7 * MiB, 2 * MiB, rbuf + 2 * MiB, 2 * MiB, &sp[1]);
    RUN_UNTIL(all_done(sp, 2));
    check_all_ret(sp, 2, 0);
    g_assert_true(all_bytes(rbuf, 2 * MiB, 0));
    g_assert_true(memcmp(rbuf + 2 * MiB, wbuf + 7 * MiB, MiB) == 0);
    g_assert_true(all_bytes(rbuf + 3 * MiB, MiB, 0));
    reqs_clear(sp, 2);

    /* Flush, trim (the node unmaps) and write-zeroes, then read around them. */
    Req m[3] = { 0 };
    submit(s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, &m[0]);
    submit(s, NBD_CMD_TRIM, 0, 2 * MiB, MiB, NULL, 0, &m[1]);
    submit(s, NBD_CMD_WRITE_ZEROES, 0, 4 * MiB, 256 * KiB, NULL, 0, &m[2]);
    RUN_UNTIL(all_done(m, 3));
    check_all_ret(m, 3, 0);
    reqs_clear(m, 3);
    memset(rbuf, 0xaa, 3 * MiB);
    g_assert_cmpint(run_one(s, NBD_CMD_READ, 0, 2 * MiB, 3 * MiB, rbuf, 3 * MiB, &m[0]), ==, 0);
    g_assert_true(all_bytes(rbuf, MiB, 0));
    g_assert_true(memcmp(rbuf + MiB, wbuf + 3 * MiB, MiB) == 0);
    g_assert_true(all_bytes(rbuf + 2 * MiB, 256 * KiB, 0));
    g_assert_true(memcmp(rbuf + 2 * MiB + 256 * KiB, wbuf + 4 * MiB + 256 * KiB,
                         MiB - 256 * KiB) == 0);
    req_clear(&m[0]);

    /* A lone FUA write, read back. */
    uint8_t small[4096], back[4096];
    fill_pattern(small, 0, sizeof(small), seed + 1);
    g_assert_cmpint(run_one(s, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 5 * MiB, sizeof(small), small,
                            sizeof(small), &m[0]), ==, 0);
    g_assert_cmpint(run_one(s, NBD_CMD_READ, 0, 5 * MiB, sizeof(back), back, sizeof(back),
                            &m[1]), ==, 0);
    g_assert_true(memcmp(small, back, sizeof(back)) == 0);
    reqs_clear(m, 2);

    /* Scattered buffers: a write from more pieces than one vectored write
     * takes, read back into more pieces than a direct read maps at once. */
    enum { W_PIECES = 150, R_PIECES = 40 };
    struct iovec wv[W_PIECES], rv[R_PIECES];
    uint64_t total = 0;
    for (int i = 0; i < W_PIECES; i++) {
        total += 500 + (uint64_t) (i * 37) % 1500;
    }
    g_autofree uint8_t *sc = g_malloc(total);
    g_autofree uint8_t *sc_back = g_malloc(total);
    fill_pattern(sc, 0, total, seed + 2);
    memset(sc_back, 0xee, total);
    uint64_t pos = 0;
    for (int i = 0; i < W_PIECES; i++) {
        size_t len = 500 + (size_t) (i * 37) % 1500;
        wv[i] = (struct iovec) { sc + pos, len };
        pos += len;
    }
    for (int i = 0; i < R_PIECES; i++) {
        uint64_t each = total / R_PIECES;
        uint64_t len = i < R_PIECES - 1 ? each : total - (R_PIECES - 1) * each;
        rv[i] = (struct iovec) { sc_back + i * each, len };
    }
    submitv(s, NBD_CMD_WRITE, 0, 5 * MiB + 8192, total, wv, W_PIECES, &m[0]);
    RUN_UNTIL(m[0].calls);
    check_all_ret(&m[0], 1, 0);
    submitv(s, NBD_CMD_READ, 0, 5 * MiB + 8192, total, rv, R_PIECES, &m[1]);
    RUN_UNTIL(m[1].calls);
    check_all_ret(&m[1], 1, 0);
    g_assert_true(memcmp(sc, sc_back, total) == 0);
    reqs_clear(m, 2);

    if (mode == NBD_MODE_SIMPLE) {
        g_assert_false(info->base_allocation);
        g_assert_cmpint(run_one(s, NBD_CMD_BLOCK_STATUS, 0, 0, MiB, NULL, 0, &m[0]), ==,
                        -ENOTSUP);
        g_assert_cmpint(run_one(s, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, back, 4096,
                                &m[1]), ==, -EINVAL);
        reqs_clear(m, 2);
        g_free(w);
        g_free(r);
        return;
    }

    /* A DF read comes back in one piece. */
    memset(rbuf, 0xee, 256 * KiB);
    g_assert_cmpint(run_one(s, NBD_CMD_READ, NBD_CMD_FLAG_DF, 6 * MiB, 256 * KiB, rbuf,
                            256 * KiB, &m[0]), ==, 0);
    g_assert_true(memcmp(rbuf, wbuf + 6 * MiB, 256 * KiB) == 0);
    req_clear(&m[0]);

    /* Block status: extents from the offset, data vs holes. */
    g_assert_true(info->base_allocation);
    Req st = { 0 };
    g_assert_cmpint(run_one(s, NBD_CMD_BLOCK_STATUS, 0, 0, 32 * MiB, NULL, 0, &st), ==, 0);
    g_assert_cmpuint(st.n_extents, >=, 4);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < st.n_extents; i++) {
        g_assert_cmpuint(st.extents[i].length, >, 0);
        sum += st.extents[i].length;
    }
    g_assert_cmpuint(sum, <=, 32 * MiB);
    g_assert_cmpuint(sum, >, 20 * MiB);
    g_assert_cmpint(status_at(&st, 0, 0) & NBD_STATE_HOLE, ==, 0);
    g_assert_cmpint(status_at(&st, 0, MiB), ==, 0);
    g_assert_cmpint(status_at(&st, 0, 2 * MiB + 4096), ==, NBD_STATE_HOLE | NBD_STATE_ZERO);
    g_assert_cmpint(status_at(&st, 0, 3 * MiB + 4096), ==, 0);
    g_assert_cmpint(status_at(&st, 0, 7 * MiB), ==, 0);
    g_assert_cmpint(status_at(&st, 0, 20 * MiB), ==, NBD_STATE_HOLE | NBD_STATE_ZERO);
    req_clear(&st);

    /* From an offset inside a hole, and with REQ_ONE. */
    g_assert_cmpint(run_one(s, NBD_CMD_BLOCK_STATUS, 0, 16 * MiB, MiB, NULL, 0, &st), ==, 0);
    g_assert_cmpuint(st.n_extents, >=, 1);
    g_assert_cmpint(st.extents[0].flags, ==, NBD_STATE_HOLE | NBD_STATE_ZERO);
    req_clear(&st);
    g_assert_cmpint(run_one(s, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 16 * MiB, NULL,
                            0, &st), ==, 0);
    g_assert_cmpuint(st.n_extents, ==, 1);
    g_assert_cmpuint(st.extents[0].length, ==, 2 * MiB);
    g_assert_cmpint(st.extents[0].flags, ==, 0);
    req_clear(&st);

    g_free(w);
    g_free(r);
}

static void export_stats_total(NBDExport *exp, NBDStats *st)
{
    memset(st, 0, sizeof(*st));
    nbd_export_get_stats(exp, st);
}

static void check_stats_equal(const NBDStats *a, const NBDStats *b)
{
    g_assert_cmpuint(a->reads, ==, b->reads);
    g_assert_cmpuint(a->writes, ==, b->writes);
    g_assert_cmpuint(a->flushes, ==, b->flushes);
    g_assert_cmpuint(a->trims, ==, b->trims);
    g_assert_cmpuint(a->zeroes, ==, b->zeroes);
    g_assert_cmpuint(a->block_status, ==, b->block_status);
    g_assert_cmpuint(a->errors, ==, b->errors);
}

/* Requests the export cannot take fail locally: never on the wire. */
static void check_local_refusals(NBDClientSession *s, NBDExport *exp)
{
    const NBDExportInfo *info = nbd_client_session_info(s);
    uint8_t buf[8192];
    NBDStats before, after;
    export_stats_total(exp, &before);

    enum { N = 9 };
    Req r[N] = { 0 };
    submit(s, NBD_CMD_READ, 0, info->size - 4096, 8192, buf, sizeof(buf), &r[0]);
    submit(s, NBD_CMD_READ, 0, info->size + 1, 0, buf, sizeof(buf), &r[1]);
    submit(s, NBD_CMD_READ, 0, 0, (uint64_t) info->max_block + 4096, buf, sizeof(buf), &r[2]);
    submit(s, NBD_CMD_WRITE, 0, 0, (uint64_t) info->max_block + 1, buf, sizeof(buf), &r[3]);
    submit(s, NBD_CMD_READ, 0, 0, 8192, buf, 4096, &r[4]);          /* buffer too small */
    submit(s, NBD_CMD_FLUSH, 0, 4096, 0, NULL, 0, &r[5]);
    submit(s, 42, 0, 0, 4096, NULL, 0, &r[6]);
    submit(s, NBD_CMD_READ, 1u << 9, 0, 4096, buf, sizeof(buf), &r[7]);
    submit(s, NBD_CMD_READ, 0, 4096, 0, buf, sizeof(buf), &r[8]);   /* zero length: no-op */
    RUN_UNTIL(all_done(r, N));
    check_calls(r, N);
    g_assert_cmpint(r[0].ret, ==, -EINVAL);
    g_assert_nonnull(strstr(r[0].msg, "outside the export"));
    g_assert_cmpint(r[1].ret, ==, -EINVAL);
    g_assert_cmpint(r[2].ret, ==, -EOVERFLOW);
    g_assert_nonnull(strstr(r[2].msg, "maximum block size"));
    g_assert_cmpint(r[3].ret, ==, -EOVERFLOW);
    g_assert_cmpint(r[4].ret, ==, -EINVAL);
    g_assert_cmpint(r[5].ret, ==, -EINVAL);
    g_assert_cmpint(r[6].ret, ==, -EINVAL);
    g_assert_cmpint(r[7].ret, ==, -EINVAL);
    g_assert_cmpint(r[8].ret, ==, 0);
    reqs_clear(r, N);
    drain_main_context();
    export_stats_total(exp, &after);
    check_stats_equal(&before, &after);
    g_assert_false(nbd_client_session_is_dead(s));
}

/* Each callback submits the next request: never called back from inside. */
typedef struct Chain {
    NBDClientSession *s;
    int left, done, failed;
    uint8_t buf[4096];
    struct iovec iov;
} Chain;

static void chain_cb(const NBDClientResult *res, void *opaque)
{
    Chain *c = opaque;
    g_assert_false(in_submit);
    c->done++;
    c->failed += res->ret != 0;
    if (c->left > 0) {
        c->left--;
        in_submit = true;
        nbd_client_session_submit(c->s, NBD_CMD_READ, 0, (uint64_t) c->left * 4096, 4096,
                                  &c->iov, 1, chain_cb, c);
        in_submit = false;
    }
}

static void test_server_chain(void)
{
    ServerConn c;
    server_conn_open(&c, "disk0", NEG_LIBRARY, exp_disk);
    Chain ch = { .s = c.s, .left = 200 };
    ch.iov = (struct iovec) { ch.buf, sizeof(ch.buf) };
    /* Four chains at once on one session. */
    for (int i = 0; i < 4; i++) {
        in_submit = true;
        nbd_client_session_submit(c.s, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0, chain_cb, &ch);
        in_submit = false;
    }
    RUN_UNTIL(ch.done == 204);
    g_assert_cmpint(ch.failed, ==, 0);
    drain_main_context();
    g_assert_cmpint(ch.done, ==, 204);
    server_conn_close(&c);
}

static void test_server_extended(void)
{
    ServerConn c;
    server_conn_open(&c, "disk0", NEG_LIBRARY, exp_disk);
    /* berth asks for extended headers first, and its own server grants them. */
    g_assert_true(c.job.info.extended_headers);
    g_assert_true(c.job.info.structured_reply);
    g_assert_true(c.job.info.base_allocation);
    g_assert_cmpuint(c.job.info.size, ==, DISK_SIZE);
    g_assert_cmpint(nbd_export_info_mode(nbd_client_session_info(c.s)), ==, NBD_MODE_EXTENDED);
    run_data_suite(c.s, 1);
    check_local_refusals(c.s, exp_disk);
    server_conn_close(&c);
}

static void test_server_structured(void)
{
    ServerConn c;
    server_conn_open(&c, "disk0", NEG_MANUAL_STRUCTURED, exp_disk);
    g_assert_false(c.job.info.extended_headers);
    g_assert_cmpint(nbd_export_info_mode(nbd_client_session_info(c.s)), ==,
                    NBD_MODE_STRUCTURED);
    run_data_suite(c.s, 2);
    check_local_refusals(c.s, exp_disk);
    server_conn_close(&c);
}

static void test_server_simple(void)
{
    ServerConn c;
    server_conn_open(&c, "disk0", NEG_MANUAL_SIMPLE, exp_disk);
    g_assert_cmpint(nbd_export_info_mode(nbd_client_session_info(c.s)), ==, NBD_MODE_SIMPLE);
    run_data_suite(c.s, 3);
    check_local_refusals(c.s, exp_disk);
    server_conn_close(&c);
}

static void test_server_read_only(void)
{
    ServerConn c;
    server_conn_open(&c, "ro", NEG_LIBRARY, exp_ro);
    g_assert_true(c.job.info.flags & NBD_FLAG_READ_ONLY);
    NBDStats before, after;
    export_stats_total(exp_ro, &before);
    uint8_t buf[4096] = { 0 };
    Req r[3] = { 0 };
    submit(c.s, NBD_CMD_WRITE, 0, 0, sizeof(buf), buf, sizeof(buf), &r[0]);
    submit(c.s, NBD_CMD_TRIM, 0, 0, 4096, NULL, 0, &r[1]);
    submit(c.s, NBD_CMD_WRITE_ZEROES, 0, 0, 4096, NULL, 0, &r[2]);
    RUN_UNTIL(all_done(r, 3));
    check_calls(r, 3);
    g_assert_cmpint(r[0].ret, ==, -EPERM);
    g_assert_nonnull(strstr(r[0].msg, "read-only"));
    /* A read-only export advertises neither trim nor write-zeroes. */
    g_assert_cmpint(r[1].ret, ==, -ENOTSUP);
    g_assert_cmpint(r[2].ret, ==, -ENOTSUP);
    reqs_clear(r, 3);
    drain_main_context();
    export_stats_total(exp_ro, &after);
    check_stats_equal(&before, &after);

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(run_one(c.s, NBD_CMD_READ, 0, RO_SIZE - 4096, 4096, buf, sizeof(buf),
                            &r[0]), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0));
    req_clear(&r[0]);
    server_conn_close(&c);
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

static bool fake_send(Fake *f, const void *buf, size_t len)
{
    /* The client may be gone already (it hangs up on a lie): not an error. */
    return berth_channel_write_all(f->ch, buf, len, IO_TIMEOUT_MS, NULL);
}

static bool fake_recv_option(Fake *f, NBDOptionHeader *oh)
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
static bool fake_handshake(Fake *f)
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
static bool fake_recv(Fake *f, NBDRequest *r)
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

static void fake_must_recv(Fake *f, NBDRequest *r, uint16_t type)
{
    g_assert_true(fake_recv(f, r));
    g_assert_cmpuint(r->type, ==, type);
}

static void fake_wait_release(Fake *f)
{
    for (int i = 0; i < 5000 && !g_atomic_int_get(&f->release); i++) {
        g_usleep(1000);
    }
    g_assert_true(g_atomic_int_get(&f->release));
}

static size_t fake_chunk_hdr(Fake *f, uint8_t *buf, const NBDRequest *r, uint16_t flags,
                             uint16_t type, uint64_t length)
{
    size_t n = nbd_encode_chunk_header(buf, f->mode, r->cookie, flags, type, r->offset, length);
    g_assert_cmpuint(n, >, 0);
    return n;
}

/* OFFSET_DATA with the fake's pattern for [off, off+len). */
static void fake_data(Fake *f, const NBDRequest *r, uint64_t off, uint64_t len, uint16_t flags)
{
    g_autofree uint8_t *buf = g_malloc(NBD_REPLY_HEADER_MAX_SIZE + 8 + len);
    size_t n = fake_chunk_hdr(f, buf, r, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + len);
    n += nbd_encode_offset_data_hdr(buf + n, off);
    fill_pattern(buf + n, off, len, FAKE_SEED);
    fake_send(f, buf, n + len);
}

static void fake_hole(Fake *f, const NBDRequest *r, uint64_t off, uint32_t len, uint16_t flags)
{
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE + NBD_OFFSET_HOLE_SIZE];
    size_t n = fake_chunk_hdr(f, buf, r, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                              NBD_OFFSET_HOLE_SIZE);
    n += nbd_encode_offset_hole(buf + n, off, len);
    fake_send(f, buf, n);
}

static void fake_none(Fake *f, const NBDRequest *r)
{
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    fake_send(f, buf, fake_chunk_hdr(f, buf, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0));
}

static void fake_simple(Fake *f, uint64_t cookie, uint32_t error)
{
    uint8_t buf[NBD_SIMPLE_REPLY_SIZE];
    fake_send(f, buf, nbd_encode_simple_reply(buf, cookie, error));
}

/* Success without data: simple reply, or NONE in extended mode. */
static void fake_ok(Fake *f, const NBDRequest *r)
{
    if (f->mode == NBD_MODE_EXTENDED) {
        fake_none(f, r);
    } else {
        fake_simple(f, r->cookie, 0);
    }
}

/* An error chunk of any type; ERROR_OFFSET carries `off`. */
static void fake_error(Fake *f, const NBDRequest *r, uint16_t type, uint32_t error,
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
static void fake_status(Fake *f, const NBDRequest *r, uint32_t ctx_id, const FakeExtent *e,
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

static gpointer fake_thread(gpointer opaque)
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

static void fake_run_start_flags(FakeRun *run, FakeScript script, bool extended,
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

static void fake_run_start(FakeRun *run, FakeScript script, bool extended)
{
    fake_run_start_flags(run, script, extended, FAKE_FLAGS);
}

static void fake_run_finish(FakeRun *run)
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
    struct pollfd pfd = { .fd = f->ch->fd, .events = POLLIN };
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

/* ======================================================================
 * Blocking primitives (nbd/client.c) over a socketpair
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

/* ======================================================================
 * Setup
 * ====================================================================== */

#define DISCARD_UNMAP ", \"discard\": \"unmap\""

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
    tmp_dir = g_dir_make_tmp("berth-nbd-session-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    sock_path = g_build_filename(tmp_dir, "nbd.sock", NULL);

    exp_disk = make_export(make_node("s0", DISK_SIZE, false, DISCARD_UNMAP), false, "disk0",
                           NULL);
    exp_ro = make_export(make_node("s1", RO_SIZE, true, DISCARD_UNMAP), true, "ro", NULL);
    server_restart(sock_path, NULL);

    g_test_add_func("/nbd/session/server/extended", test_server_extended);
    g_test_add_func("/nbd/session/server/structured", test_server_structured);
    g_test_add_func("/nbd/session/server/simple", test_server_simple);
    g_test_add_func("/nbd/session/server/read-only", test_server_read_only);
    g_test_add_func("/nbd/session/server/chain", test_server_chain);

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
    g_test_add_func("/nbd/session/fake/not-advertised", test_fake_not_advertised);
    g_test_add_func("/nbd/session/fake/dead-session-idle", test_fake_dead_session_idle);
    g_test_add_func("/nbd/session/fake/error-offset-at-end", test_fake_error_offset_at_end);

    g_test_add_func("/nbd/session/sync/send-request", test_sync_send_request);
    g_test_add_func("/nbd/session/sync/receive-reply", test_sync_receive_reply);
    g_test_add_func("/nbd/session/sync/wr-syncv", test_sync_wr_syncv);

    int rc = g_test_run();

    server_stop();
    drain_main_context();
    nbd_export_put(exp_disk);
    nbd_export_put(exp_ro);
    delete_exports_and_nodes();
    rm_rf(tmp_dir);
    g_free(sock_path);
    g_free(tmp_dir);
    return rc;
}
