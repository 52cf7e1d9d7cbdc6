/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The nbd block driver's connection: each node runs one I/O thread with its
 * own GMainContext, where the NBD client session lives, so neither a slow
 * server nor a reconnect ever blocks the main loop or the monitor.
 * Submitters hand requests over through a locked inbox.  When the session
 * dies, requests in flight are held and retried on a new connection if one
 * comes up within reconnect-delay, and fail with EIO otherwise; the blocking
 * connect + negotiate of a reconnect runs on a short-lived thread of its own
 * so that the deadline timer keeps ticking.
 */
#include "nbd-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <sys/socket.h>

/* Between background reconnect attempts while reconnect-delay is set. */
#define RETRY_INTERVAL_MS 1000

/*
 * A reconnect attempt outlives its node when the node closes mid-attempt:
 * it keeps its own reference to the target, and reports to the node's
 * context only while `ctx` is set (the node clears it, under the lock, when
 * it stops).  It touches the node only from attempt_done(), which runs on
 * the node's I/O thread and never after that thread has stopped.
 */
struct NbdConnectAttempt {
    gint ref;                   /* atomic */
    NbdState *st;
    NbdTarget *target;
    GMutex lock;
    GMainContext *ctx;          /* borrowed; NULL once cancelled */
    /* Result. */
    BerthChannel *ch;
    NBDExportInfo info;
    GError *err;
};

static void attempt_unref(gpointer p)
{
    NbdConnectAttempt *a = p;
    if (!g_atomic_int_dec_and_test(&a->ref)) {
        return;
    }
    if (a->ch) {
        berth_channel_unref(a->ch);
    }
    nbd_export_info_clear(&a->info);
    g_clear_error(&a->err);
    nbd_target_unref(a->target);
    g_mutex_clear(&a->lock);
    g_free(a);
}

NbdTarget *nbd_target_ref(NbdTarget *t)
{
    g_atomic_int_inc(&t->ref);
    return t;
}

void nbd_target_unref(NbdTarget *t)
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
    g_free(t);
}

bool nbd_conn_establish(const NbdTarget *t, BerthChannel **out_ch, NBDExportInfo *info,
                        GError **errp)
{
    GError *err = NULL;
    /* berth_socket_connect's errors already name the address, as QEMU's do. */
    int fd = berth_socket_connect(t->addr, errp);
    if (fd < 0) {
        return false;
    }
    g_autoptr(BerthChannel) ch = berth_channel_socket_new(fd);
    if (!nbd_receive_negotiate(ch, t->export_name, t->tls_creds, t->tls_hostname, info,
                               out_ch, &err)) {
        g_set_error(errp, err->domain, err->code, "Failed to connect to NBD server '%s': %s",
                    t->addr_str, err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

/* ---- the inbox --------------------------------------------------------------- */

static gboolean inbox_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
    NbdState *st = data;
    g_source_set_ready_time(source, -1);
    g_mutex_lock(&st->lock);
    GQueue batch = st->inbox;
    g_queue_init(&st->inbox);
    g_mutex_unlock(&st->lock);
    BdrvRequest *req;
    while ((req = g_queue_pop_head(&batch))) {
        nbd_driver_start_request(st, req);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs inbox_funcs = {
    .dispatch = inbox_dispatch,
};

/* ---- sending and holding ------------------------------------------------------- */

static void sub_reply(const NBDClientResult *res, void *opaque);

static void hold(NbdState *st, NbdSub *sub)
{
    sub->next = NULL;
    if (st->held_tail) {
        st->held_tail->next = sub;
    } else {
        st->held_head = sub;
    }
    st->held_tail = sub;
}

static void fail_sub(NbdSub *sub, int errno_value, const char *msg)
{
    g_autoptr(GError) err = g_error_new_literal(G_IO_ERROR, g_io_error_from_errno(errno_value),
                                                msg);
    NBDClientResult res = { .ret = -errno_value, .err = err };
    nbd_sub_done(sub, &res);
}

static void start_attempt(NbdState *st);

void nbd_conn_send(NbdState *st, NbdSub *sub)
{
    switch (st->link) {
    case NBD_LINK_UP:
        nbd_client_session_submit(st->session, sub->cmd, sub->flags, sub->offset, sub->length,
                                  sub->iov, sub->niov, sub_reply, sub);
        return;
    case NBD_LINK_WAITING:
        hold(st, sub);
        return;
    case NBD_LINK_FAILING: {
        g_autofree char *msg = g_strdup_printf("NBD server '%s' is not connected",
                                               st->target->addr_str);
        start_attempt(st);      /* on demand, as without reconnect-delay */
        fail_sub(sub, EIO, msg);
        return;
    }
    case NBD_LINK_GONE:
    default: {
        g_autofree char *msg = g_strdup_printf("NBD export on '%s' is no longer usable",
                                               st->target->addr_str);
        fail_sub(sub, EIO, msg);
        return;
    }
    }
}

static void fail_held(NbdState *st, int errno_value, const char *msg)
{
    NbdSub *sub = st->held_head;
    st->held_head = st->held_tail = NULL;
    while (sub) {
        NbdSub *next = sub->next;
        fail_sub(sub, errno_value, msg);
        sub = next;
    }
}

static void resend_held(NbdState *st)
{
    NbdSub *sub = st->held_head;
    st->held_head = st->held_tail = NULL;
    while (sub) {
        NbdSub *next = sub->next;
        nbd_conn_send(st, sub);
        sub = next;
    }
}

/*
 * A request failed because the session died: while reconnect-delay runs it
 * waits for the next connection instead (QEMU resends in-flight requests
 * the same way).
 */
static void sub_reply(const NBDClientResult *res, void *opaque)
{
    NbdSub *sub = opaque;
    NbdState *st = sub->parent->st;
    if (res->ret == -EIO && st->reconnect_delay && !st->closing && st->session &&
        nbd_client_session_is_dead(st->session) &&
        (st->link == NBD_LINK_UP || st->link == NBD_LINK_WAITING)) {
        hold(st, sub);
        return;
    }
    nbd_sub_done(sub, res);
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

static GSource *add_timer(NbdState *st, guint ms, GSourceFunc fn)
{
    GSource *t = g_timeout_source_new(ms);
    g_source_set_callback(t, fn, st, NULL);
    g_source_attach(t, st->ctx);
    return t;
}

static gboolean deadline_expired(gpointer opaque)
{
    NbdState *st = opaque;
    g_source_unref(st->deadline_timer);
    st->deadline_timer = NULL;
    if (st->link == NBD_LINK_WAITING) {
        g_autofree char *msg = g_strdup_printf("NBD server '%s' did not come back within "
                                               "reconnect-delay (%" G_GUINT64_FORMAT " s)",
                                               st->target->addr_str, st->reconnect_delay);
        g_message("%s", msg);
        st->link = NBD_LINK_FAILING;
        fail_held(st, EIO, msg);
    }
    return G_SOURCE_REMOVE;
}

static gboolean retry_now(gpointer opaque)
{
    NbdState *st = opaque;
    g_source_unref(st->retry_timer);
    st->retry_timer = NULL;
    start_attempt(st);
    return G_SOURCE_REMOVE;
}

static void session_dead(NBDClientSession *s, const GError *why, void *opaque);

static bool adopt_connection(NbdState *st, NbdConnectAttempt *a)
{
    if (a->info.size != st->info.size ||
        ((a->info.flags ^ st->info.flags) & NBD_FLAG_READ_ONLY)) {
        g_message("NBD server '%s' came back with a different export (size %" G_GUINT64_FORMAT
                  ", flags 0x%x): giving up on it", st->target->addr_str, a->info.size, a->info.flags);
        return false;
    }
    if (st->session) {
        nbd_client_session_free(st->session);
    }
    st->session = nbd_client_session_new(a->ch, &a->info, st->ctx, session_dead, st);
    st->link = NBD_LINK_UP;
    clear_timer(&st->deadline_timer);
    g_message("NBD client: reconnected to '%s'", st->target->addr_str);
    resend_held(st);
    return true;
}

static gboolean attempt_done(gpointer opaque)
{
    NbdConnectAttempt *a = opaque;
    NbdState *st = a->st;
    if (st->attempt != a) {
        return G_SOURCE_REMOVE;     /* cancelled */
    }
    st->attempt = NULL;
    if (a->ch) {
        if (!adopt_connection(st, a)) {
            st->link = NBD_LINK_GONE;
            clear_timer(&st->deadline_timer);
            fail_held(st, EIO, "NBD export changed while reconnecting");
        }
    } else if (st->reconnect_delay && !st->closing) {
        st->retry_timer = add_timer(st, RETRY_INTERVAL_MS, retry_now);
    }
    attempt_unref(a);
    return G_SOURCE_REMOVE;
}

static gpointer attempt_thread(gpointer opaque)
{
    NbdConnectAttempt *a = opaque;
    BerthChannel *ch = NULL;
    NBDExportInfo info = { 0 };
    GError *err = NULL;
    if (nbd_conn_establish(a->target, &ch, &info, &err)) {
        a->ch = ch;
        a->info = info;
    } else {
        a->err = err;
    }
    g_mutex_lock(&a->lock);
    if (a->ctx) {
        g_atomic_int_inc(&a->ref);
        g_main_context_invoke_full(a->ctx, G_PRIORITY_DEFAULT, attempt_done, a, attempt_unref);
    }
    g_mutex_unlock(&a->lock);
    attempt_unref(a);
    return NULL;
}

static void start_attempt(NbdState *st)
{
    if (st->attempt || st->retry_timer || st->closing || st->link == NBD_LINK_GONE) {
        return;
    }
    NbdConnectAttempt *a = g_new0(NbdConnectAttempt, 1);
    a->ref = 2;                 /* st->attempt and the thread */
    a->st = st;
    a->target = nbd_target_ref(st->target);
    g_mutex_init(&a->lock);
    a->ctx = st->ctx;
    st->attempt = a;
    g_thread_unref(g_thread_new("nbd-reconnect", attempt_thread, a));
}

static void session_dead(NBDClientSession *s, const GError *why, void *opaque)
{
    NbdState *st = opaque;
    if (st->closing) {
        return;
    }
    if (st->reconnect_delay) {
        st->link = NBD_LINK_WAITING;
        clear_timer(&st->deadline_timer);
        st->deadline_timer = add_timer(st, (guint) MIN(st->reconnect_delay * 1000, G_MAXUINT),
                                       deadline_expired);
    } else {
        st->link = NBD_LINK_FAILING;
    }
    start_attempt(st);
}

/* ---- thread lifecycle ---------------------------------------------------------- */

static gpointer io_thread(gpointer opaque)
{
    NbdState *st = opaque;
    g_main_context_push_thread_default(st->ctx);
    g_main_loop_run(st->loop);
    g_main_context_pop_thread_default(st->ctx);
    return NULL;
}

void nbd_conn_start(NbdState *st, BerthChannel *ch)
{
    st->ctx = g_main_context_new();
    st->loop = g_main_loop_new(st->ctx, FALSE);
    st->inbox_source = g_source_new(&inbox_funcs, sizeof(GSource));
    g_source_set_callback(st->inbox_source, NULL, st, NULL);
    g_source_set_static_name(st->inbox_source, "nbd-driver-inbox");
    g_source_attach(st->inbox_source, st->ctx);
    st->session = nbd_client_session_new(ch, &st->info, st->ctx, session_dead, st);
    berth_channel_unref(ch);
    st->link = NBD_LINK_UP;
    st->thread = g_thread_new("nbd-client", io_thread, st);
}

static gboolean stop_on_thread(gpointer opaque)
{
    NbdState *st = opaque;
    st->closing = true;
    if (st->attempt) {
        /* Its thread finishes on its own (bounded by the negotiation
         * timeout) and reports to nobody. */
        g_mutex_lock(&st->attempt->lock);
        st->attempt->ctx = NULL;
        g_mutex_unlock(&st->attempt->lock);
        attempt_unref(st->attempt);
        st->attempt = NULL;
    }
    clear_timer(&st->deadline_timer);
    clear_timer(&st->retry_timer);
    fail_held(st, ESHUTDOWN, "NBD node is closing");
    if (st->session) {
        nbd_client_session_free(st->session);
        st->session = NULL;
    }
    g_main_loop_quit(st->loop);
    return G_SOURCE_REMOVE;
}

void nbd_conn_stop(NbdState *st)
{
    if (!st->thread) {
        return;
    }
    g_main_context_invoke(st->ctx, stop_on_thread, st);
    g_thread_join(st->thread);
    st->thread = NULL;
    g_source_destroy(st->inbox_source);
    g_source_unref(st->inbox_source);
    g_main_loop_unref(st->loop);
    g_main_context_unref(st->ctx);
}

/* Submitters, any thread. */
void nbd_conn_queue(NbdState *st, BdrvRequest *req)
{
    g_mutex_lock(&st->lock);
    g_queue_push_tail(&st->inbox, req);
    g_mutex_unlock(&st->lock);
    g_source_set_ready_time(st->inbox_source, 0);
}
