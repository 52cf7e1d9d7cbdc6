/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The reconnecting NBD connection of berth/nbd/client-connection.h: a
 * client session on one context, and what happens when it dies.  Requests
 * in flight when it does are held and resent on a new connection if one
 * comes up within reconnect-delay, and fail with EIO otherwise; the
 * blocking connect + negotiate of a reconnect runs on a short-lived thread
 * of its own so that the deadline timer keeps ticking.
 */
#include "berth/nbd/client-connection.h"
#include "util/tsan.h"

#include <errno.h>
#include <gio/gio.h>

/* Between background reconnect attempts while reconnect-delay is set. */
#define RETRY_INTERVAL_MS 1000

typedef enum {
    LINK_UP,                    /* a session is running */
    LINK_WAITING,               /* down; requests wait until the reconnect deadline */
    LINK_FAILING,               /* down; requests fail at once (a reconnect may run) */
    LINK_GONE,                  /* the export changed under us: fail for good */
} LinkState;

typedef struct ConnectAttempt ConnectAttempt;

struct NBDClientConnection {
    NBDClientTarget *target;
    uint64_t reconnect_delay;   /* seconds; 0 = fail at once, reconnect on demand */
    uint64_t size;              /* what a new connection must offer */
    uint16_t flags;
    GMainContext *ctx;          /* a reference */

    NBDClientSession *session;
    LinkState link;
    NBDClientConnRequest *held_head, *held_tail;
    GSource *deadline_timer;
    GSource *retry_timer;
    ConnectAttempt *attempt;
    bool closing;
};

/*
 * A reconnect attempt outlives its connection when that is freed
 * mid-attempt: it keeps its own reference to the target, and reports to the
 * connection's context only while `ctx` is set (the connection clears it,
 * under the lock, when it goes).  It touches the connection only from
 * attempt_done(), which runs on the connection's context and finds `conn`
 * cleared (on that context) if the connection went after the report was
 * queued.
 */
struct ConnectAttempt {
    gint ref;                   /* atomic */
    NBDClientConnection *conn;
    NBDClientTarget *target;
    GMutex lock;
    GMainContext *ctx;          /* borrowed; NULL once cancelled */
    /* Result. */
    BerthChannel *ch;
    NBDExportInfo info;
    GError *err;
};

static void attempt_unref(gpointer p)
{
    ConnectAttempt *a = p;
    if (!g_atomic_int_dec_and_test(&a->ref)) {
        return;
    }
    if (a->ch) {
        berth_channel_unref(a->ch);
    }
    nbd_export_info_clear(&a->info);
    g_clear_error(&a->err);
    nbd_client_target_unref(a->target);
    berth_mutex_clear(&a->lock);
    g_free(a);
}

/* ---- the target --------------------------------------------------------------- */

NBDClientTarget *nbd_client_target_new(void)
{
    NBDClientTarget *t = g_new0(NBDClientTarget, 1);
    t->ref = 1;
    return t;
}

NBDClientTarget *nbd_client_target_ref(NBDClientTarget *t)
{
    g_atomic_int_inc(&t->ref);
    return t;
}

void nbd_client_target_unref(NBDClientTarget *t)
{
    if (!t || !g_atomic_int_dec_and_test(&t->ref)) {
        return;
    }
    berth_socket_address_free(t->addr);
    g_free(t->addr_str);
    g_free(t->export_name);
    if (t->tls_creds) {
        berth_tls_creds_unref(t->tls_creds);
    }
    g_free(t->tls_hostname);
    g_free(t->meta_context);
    g_free(t);
}

bool nbd_client_target_connect(const NBDClientTarget *t, BerthChannel **out_ch,
                               NBDExportInfo *info, GError **errp)
{
    GError *err = NULL;
    /* berth_socket_connect's errors already name the address, as QEMU's do. */
    int fd = berth_socket_connect(t->addr, errp);
    if (fd < 0) {
        return false;
    }
    g_autoptr(BerthChannel) ch = berth_channel_socket_new(fd);
    if (!nbd_receive_negotiate_context(ch, t->export_name, t->tls_creds, t->tls_hostname,
                                       NBD_NEGOTIATE_EXTENDED, t->meta_context, info,
                                       out_ch, &err)) {
        g_set_error(errp, err->domain, err->code, "Failed to connect to NBD server '%s': %s",
                    t->addr_str, err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

typedef struct {
    const NBDClientTarget *target;
    BerthChannel *ch;
    NBDExportInfo *info;
    GError *err;
    GMainContext *ctx;
    uint64_t open_timeout;      /* seconds */
    gint done;
} OpenWait;

/* Between attempts of the first connection while open-timeout runs. */
#define OPEN_RETRY_US G_USEC_PER_SEC

static gpointer open_thread(gpointer opaque)
{
    OpenWait *w = opaque;
    /* open-timeout: keep trying until it runs out (0: one attempt), as QEMU. */
    gint64 deadline = g_get_monotonic_time() + (gint64) w->open_timeout * G_USEC_PER_SEC;
    while (!nbd_client_target_connect(w->target, &w->ch, w->info, &w->err)) {
        gint64 left = deadline - g_get_monotonic_time();
        if (left <= 0) {
            break;
        }
        g_clear_error(&w->err);
        g_usleep(MIN(left, OPEN_RETRY_US));
    }
    g_atomic_int_set(&w->done, 1);
    g_main_context_wakeup(w->ctx);
    return NULL;
}

bool nbd_client_target_open(const NBDClientTarget *t, uint64_t open_timeout,
                            BerthChannel **out_ch, NBDExportInfo *info, GError **errp)
{
    OpenWait w = { .target = t, .info = info, .open_timeout = open_timeout,
                   .ctx = g_main_context_ref_thread_default() };
    GThread *thread = g_thread_new("nbd-open", open_thread, &w);
    if (g_main_context_acquire(w.ctx)) {
        while (!g_atomic_int_get(&w.done)) {
            g_main_context_iteration(w.ctx, TRUE);
        }
        g_main_context_release(w.ctx);
    }
    g_thread_join(thread);
    g_main_context_unref(w.ctx);
    if (!w.ch) {
        g_propagate_error(errp, w.err);
        return false;
    }
    *out_ch = w.ch;
    return true;
}

/* ---- sending and holding ------------------------------------------------------- */

static void req_reply(const NBDClientResult *res, void *opaque);

static void hold(NBDClientConnection *conn, NBDClientConnRequest *req)
{
    req->next = NULL;
    if (conn->held_tail) {
        conn->held_tail->next = req;
    } else {
        conn->held_head = req;
    }
    conn->held_tail = req;
}

static void fail_req(NBDClientConnRequest *req, int errno_value, const char *msg)
{
    g_autoptr(GError) err = g_error_new_literal(G_IO_ERROR, g_io_error_from_errno(errno_value),
                                                msg);
    NBDClientResult res = { .ret = -errno_value, .err = err };
    req->cb(&res, req->opaque);
}

static void start_attempt(NBDClientConnection *conn);

void nbd_client_connection_submit(NBDClientConnection *conn, NBDClientConnRequest *req)
{
    req->conn = conn;
    switch (conn->link) {
    case LINK_UP:
        nbd_client_session_submit(conn->session, req->cmd, req->flags, req->offset,
                                  req->length, req->iov, req->niov, req_reply, req);
        return;
    case LINK_WAITING:
        hold(conn, req);
        return;
    case LINK_FAILING: {
        g_autofree char *msg = g_strdup_printf("NBD server '%s' is not connected",
                                               conn->target->addr_str);
        start_attempt(conn);    /* on demand, as without reconnect-delay */
        fail_req(req, EIO, msg);
        return;
    }
    case LINK_GONE:
    default: {
        g_autofree char *msg = g_strdup_printf("NBD export on '%s' is no longer usable",
                                               conn->target->addr_str);
        fail_req(req, EIO, msg);
        return;
    }
    }
}

static void fail_held(NBDClientConnection *conn, int errno_value, const char *msg)
{
    NBDClientConnRequest *req = conn->held_head;
    conn->held_head = conn->held_tail = NULL;
    while (req) {
        NBDClientConnRequest *next = req->next;
        fail_req(req, errno_value, msg);
        req = next;
    }
}

static void resend_held(NBDClientConnection *conn)
{
    NBDClientConnRequest *req = conn->held_head;
    conn->held_head = conn->held_tail = NULL;
    while (req) {
        NBDClientConnRequest *next = req->next;
        nbd_client_connection_submit(conn, req);
        req = next;
    }
}

/*
 * A request failed because the session died: while reconnect-delay runs it
 * waits for the next connection instead (QEMU resends in-flight requests
 * the same way).
 */
static void req_reply(const NBDClientResult *res, void *opaque)
{
    NBDClientConnRequest *req = opaque;
    NBDClientConnection *conn = req->conn;
    if (res->ret == -EIO && conn->reconnect_delay && !conn->closing && conn->session &&
        nbd_client_session_is_dead(conn->session) &&
        (conn->link == LINK_UP || conn->link == LINK_WAITING)) {
        hold(conn, req);
        return;
    }
    req->cb(res, req->opaque);
}

/* ---- reconnecting ------------------------------------------------------------- */

static void clear_timer(GSource **t)
{
    if (*t) {
        g_source_destroy(*t);
        g_source_unref(*t);
        *t = NULL;
    }
}

static GSource *add_timer(NBDClientConnection *conn, guint ms, GSourceFunc fn)
{
    GSource *t = g_timeout_source_new(ms);
    g_source_set_callback(t, fn, conn, NULL);
    g_source_attach(t, conn->ctx);
    return t;
}

static gboolean deadline_expired(gpointer opaque)
{
    NBDClientConnection *conn = opaque;
    g_source_unref(conn->deadline_timer);
    conn->deadline_timer = NULL;
    if (conn->link == LINK_WAITING) {
        g_autofree char *msg = g_strdup_printf("NBD server '%s' did not come back within "
                                               "reconnect-delay (%" G_GUINT64_FORMAT " s)",
                                               conn->target->addr_str, conn->reconnect_delay);
        g_message("%s", msg);
        conn->link = LINK_FAILING;
        fail_held(conn, EIO, msg);
    }
    return G_SOURCE_REMOVE;
}

static gboolean retry_now(gpointer opaque)
{
    NBDClientConnection *conn = opaque;
    g_source_unref(conn->retry_timer);
    conn->retry_timer = NULL;
    start_attempt(conn);
    return G_SOURCE_REMOVE;
}

static void session_dead(NBDClientSession *s, const GError *why, void *opaque);

static bool adopt_connection(NBDClientConnection *conn, ConnectAttempt *a)
{
    if (a->info.size != conn->size || ((a->info.flags ^ conn->flags) & NBD_FLAG_READ_ONLY)) {
        g_message("NBD server '%s' came back with a different export (size %" G_GUINT64_FORMAT
                  ", flags 0x%x): giving up on it", conn->target->addr_str, a->info.size,
                  a->info.flags);
        return false;
    }
    if (conn->session) {
        nbd_client_session_free(conn->session);
    }
    conn->session = nbd_client_session_new(a->ch, &a->info, conn->ctx, session_dead, conn);
    conn->link = LINK_UP;
    clear_timer(&conn->deadline_timer);
    g_message("NBD client: reconnected to '%s'", conn->target->addr_str);
    resend_held(conn);
    return true;
}

static gboolean attempt_done(gpointer opaque)
{
    ConnectAttempt *a = opaque;
    /* Pairs with the release before the report's g_source_attach(). */
    berth_tsan_acquire(a);
    NBDClientConnection *conn = a->conn;
    if (!conn) {
        return G_SOURCE_REMOVE;     /* cancelled after it reported */
    }
    conn->attempt = NULL;
    if (a->ch) {
        if (!adopt_connection(conn, a)) {
            conn->link = LINK_GONE;
            clear_timer(&conn->deadline_timer);
            fail_held(conn, EIO, "NBD export changed while reconnecting");
        }
    } else if (conn->reconnect_delay && !conn->closing) {
        conn->retry_timer = add_timer(conn, RETRY_INTERVAL_MS, retry_now);
    }
    attempt_unref(a);
    return G_SOURCE_REMOVE;
}

static gpointer attempt_thread(gpointer opaque)
{
    ConnectAttempt *a = opaque;
    BerthChannel *ch = NULL;
    NBDExportInfo info = { 0 };
    GError *err = NULL;
    if (nbd_client_target_connect(a->target, &ch, &info, &err)) {
        a->ch = ch;
        a->info = info;
    } else {
        a->err = err;
    }
    GMainContext *ctx = NULL;
    GSource *report = NULL;
    berth_mutex_lock(&a->lock);
    if (a->ctx) {
        /* A source, not g_main_context_invoke(): that would run attempt_done
         * right here whenever nobody holds the context at this moment. */
        report = g_idle_source_new();
        g_atomic_int_inc(&a->ref);
        g_source_set_priority(report, G_PRIORITY_DEFAULT);
        g_source_set_callback(report, attempt_done, a, attempt_unref);
        /*
         * Our reference on the context: once attached, the report may run
         * and the node be deleted with its I/O thread and context before
         * the g_source_unref() below, which locks the source's context
         * (found by the qmp fuzzer: heap corruption in the next
         * blockdev-add). Holding the context keeps it alive until then.
         */
        ctx = g_main_context_ref(a->ctx);
        /* The context's lock, inside GLib, orders our result before
         * attempt_done(); TSan sees only this. */
        berth_tsan_release(a);
        g_source_attach(report, ctx);
    }
    berth_mutex_unlock(&a->lock);
    if (report) {
        g_source_unref(report);
        g_main_context_unref(ctx);
    }
    attempt_unref(a);
    return NULL;
}

static void start_attempt(NBDClientConnection *conn)
{
    if (conn->attempt || conn->retry_timer || conn->closing || conn->link == LINK_GONE) {
        return;
    }
    ConnectAttempt *a = g_new0(ConnectAttempt, 1);
    a->ref = 2;                 /* conn->attempt and the thread */
    a->conn = conn;
    a->target = nbd_client_target_ref(conn->target);
    g_mutex_init(&a->lock);
    a->ctx = conn->ctx;
    conn->attempt = a;
    g_thread_unref(g_thread_new("nbd-reconnect", attempt_thread, a));
}

static void session_dead(NBDClientSession *s, const GError *why, void *opaque)
{
    NBDClientConnection *conn = opaque;
    if (conn->closing) {
        return;
    }
    if (conn->reconnect_delay) {
        conn->link = LINK_WAITING;
        clear_timer(&conn->deadline_timer);
        conn->deadline_timer = add_timer(conn,
                                         (guint) MIN(conn->reconnect_delay * 1000, G_MAXUINT),
                                         deadline_expired);
    } else {
        conn->link = LINK_FAILING;
    }
    start_attempt(conn);
}

/* ---- lifecycle ------------------------------------------------------------------ */

NBDClientConnection *nbd_client_connection_new(NBDClientTarget *t, BerthChannel *ch,
                                               const NBDExportInfo *info,
                                               uint64_t reconnect_delay, GMainContext *ctx)
{
    NBDClientConnection *conn = g_new0(NBDClientConnection, 1);
    conn->target = nbd_client_target_ref(t);
    conn->reconnect_delay = reconnect_delay;
    conn->size = info->size;
    conn->flags = info->flags;
    conn->ctx = g_main_context_ref(ctx);
    conn->session = nbd_client_session_new(ch, info, ctx, session_dead, conn);
    berth_channel_unref(ch);
    conn->link = LINK_UP;
    return conn;
}

void nbd_client_connection_free(NBDClientConnection *conn)
{
    if (!conn) {
        return;
    }
    conn->closing = true;
    if (conn->attempt) {
        /* Its thread finishes on its own (bounded by the negotiation
         * timeout) and reports to nobody. */
        berth_mutex_lock(&conn->attempt->lock);
        conn->attempt->ctx = NULL;
        berth_mutex_unlock(&conn->attempt->lock);
        conn->attempt->conn = NULL; /* in case its report is already queued */
        attempt_unref(conn->attempt);
        conn->attempt = NULL;
    }
    clear_timer(&conn->deadline_timer);
    clear_timer(&conn->retry_timer);
    fail_held(conn, ESHUTDOWN, "NBD node is closing");
    if (conn->session) {
        nbd_client_session_free(conn->session);
        conn->session = NULL;
    }
    g_main_context_unref(conn->ctx);
    nbd_client_target_unref(conn->target);
    g_free(conn);
}
