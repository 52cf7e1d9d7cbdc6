/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the asynchronous NBD client session (nbd/client/session.c,
 * nbd/client/reply.c) against berth's own NBD server, in-process on the same
 * main context, which the test's main thread drives with RUN_UNTIL().  The
 * blocking handshake runs in a GThread while the main loop serves it:
 * nbd_receive_negotiate() gives extended headers, and a hand-written
 * handshake gives the compact structured and the simple modes too.  Each
 * mode runs the same suite of writes, reads, holes, flush, trim,
 * write-zeroes, block status, FUA and DF, with more requests than fit on the
 * wire at once, and checks that what the export cannot take fails locally;
 * a read-only export and callbacks that chain new requests complete the
 * set.  The scripted fake servers are in test-nbd-client-fake.c and
 * test-nbd-client-death.c, the blocking primitives in test-nbd-client-sync.c.
 */
#include "nbd-session-test-util.h"

#define DISK_SIZE (128 * MiB)      /* past the 64 MiB maximum block size */
#define RO_SIZE (1 * MiB)

static char *tmp_dir;
static char *sock_path;
static NBDExport *exp_disk, *exp_ro;

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
    /* A read-only export advertises neither trim nor write-zeroes, but being
     * read-only is the reason, as the server would answer (NBD_EPERM). */
    g_assert_false(c.job.info.flags & (NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES));
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(r[i].ret, ==, -EPERM);
        g_assert_nonnull(strstr(r[i].msg, "export is read-only"));
    }
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
 * Setup
 * ====================================================================== */

#define DISCARD_UNMAP ", \"discard\": \"unmap\""

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
