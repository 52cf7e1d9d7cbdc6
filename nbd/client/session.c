/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The asynchronous NBD client session (include/berth/nbd/client.h): requests are
 * checked against what the export advertised, given a slot (the cookie
 * carries the slot and a generation, so a stale or invented cookie from the
 * server is caught), and written in batches with one vectored write per
 * loop iteration; client-reply.c matches replies to slots.  One channel
 * watch (io/channel-watch.h) per session serves the socket and also
 * delivers callbacks, so a callback never runs inside
 * nbd_client_session_submit().  A session that sees an
 * I/O error or a protocol violation dies: every pending request fails with
 * EIO and the owner hears about it once.
 */
#include "session-int.h"

#include "util/iov.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

#define MAX_WRITE_IOV 64
/* Reads per dispatch before other sources get a turn. */
#define MAX_READS_PER_DISPATCH 16

static void session_unref(NBDClientSession *s);
static void update_events(NBDClientSession *s);

/* ---- request lists -------------------------------------------------------- */

static void list_push(NBDSessionReq **head, NBDSessionReq **tail, NBDSessionReq *req)
{
    req->next = NULL;
    if (*tail) {
        (*tail)->next = req;
    } else {
        *head = req;
    }
    *tail = req;
}

static NBDSessionReq *list_pop(NBDSessionReq **head, NBDSessionReq **tail)
{
    NBDSessionReq *req = *head;
    if (req) {
        *head = req->next;
        if (!*head) {
            *tail = NULL;
        }
        req->next = NULL;
    }
    return req;
}

/* Wake the write side: it puts waiting requests on the wire and delivers
 * finished ones, never inside the call that kicked. */
static void kick(NBDClientSession *s)
{
    if (s->watch) {
        berth_channel_watch_kick_write(s->watch);
    }
}

/* ---- completion ------------------------------------------------------------- */

static void release_slot(NBDSessionReq *req)
{
    NBDClientSession *s = req->s;
    if (req->slot >= 0) {
        s->slots[req->slot] = NULL;
        s->generation[req->slot]++;
        req->slot = -1;
        s->n_on_wire--;
    }
}

/* Off the wire and into the done list; the callback runs from dispatch. */
void nbd_session_finish(NBDSessionReq *req)
{
    NBDClientSession *s = req->s;
    release_slot(req);
    list_push(&s->done_head, &s->done_tail, req);
    kick(s);
}

void nbd_session_req_fail(NBDSessionReq *req, int errno_value, const char *fmt, ...)
{
    if (req->ret == 0) {
        va_list ap;
        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        req->ret = -errno_value;
        g_clear_error(&req->err);
        req->err = g_error_new_literal(G_IO_ERROR, g_io_error_from_errno(errno_value), msg);
    }
}

static void req_free(NBDSessionReq *req)
{
    if (req->extents) {
        g_array_unref(req->extents);
    }
    if (req->ranges) {
        g_array_unref(req->ranges);
    }
    g_clear_error(&req->err);
    g_free(req->iov);
    g_free(req);
}

static void run_callback(NBDSessionReq *req)
{
    NBDClientResult res = {
        .ret = req->ret,
        .err = req->ret ? req->err : NULL,
    };
    if (req->ret == 0 && req->extents) {
        res.extents = (const NBDExtent *) req->extents->data;
        res.n_extents = req->extents->len;
    }
    req->cb(&res, req->opaque);
    req_free(req);
}

static void run_done_callbacks(NBDClientSession *s)
{
    NBDSessionReq *req;
    while ((req = list_pop(&s->done_head, &s->done_tail))) {
        run_callback(req);
    }
}

/* ---- death -------------------------------------------------------------------- */

static void fail_all(NBDClientSession *s, int errno_value, const char *why)
{
    NBDSessionReq *req;
    while ((req = list_pop(&s->wait_head, &s->wait_tail))) {
        s->n_waiting--;
        nbd_session_req_fail(req, errno_value, "%s", why);
        list_push(&s->done_head, &s->done_tail, req);
    }
    s->send_head = s->send_tail = NULL;
    for (guint i = 0; i < NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i++) {
        req = s->slots[i];
        if (req) {
            release_slot(req);
            nbd_session_req_fail(req, errno_value, "%s", why);
            list_push(&s->done_head, &s->done_tail, req);
        }
    }
    s->cur = NULL;
    kick(s);
}

void nbd_session_die(NBDClientSession *s, GError *err)
{
    if (s->dead) {
        g_error_free(err);
        return;
    }
    s->dead = true;
    g_message("NBD client: connection to %s lost: %s", berth_channel_peer(s->ch), err->message);
    berth_channel_shutdown(s->ch);
    fail_all(s, EIO, err->message);
    update_events(s);
    if (s->dead_cb && !s->freed) {
        /* Pending callbacks first, so the owner sees a quiet session. */
        s->ref++;
        run_done_callbacks(s);
        if (!s->freed) {
            s->dead_cb(s, err, s->dead_opaque);
        }
        session_unref(s);
    }
    g_error_free(err);
}

void nbd_session_protocol_error(NBDClientSession *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    nbd_session_die(s, g_error_new(G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                   "NBD protocol error from server: %s", msg));
}

/* ---- sending ------------------------------------------------------------------ */

NBDSessionReq *nbd_session_lookup(NBDClientSession *s, uint64_t cookie)
{
    uint64_t slot = cookie & 0xffff;
    if (slot >= NBD_CLIENT_SESSION_MAX_IN_FLIGHT) {
        return NULL;
    }
    NBDSessionReq *req = s->slots[slot];
    return req && req->cookie == cookie ? req : NULL;
}

static void put_on_wire(NBDClientSession *s, NBDSessionReq *req)
{
    int slot = -1;
    for (int i = 0; i < NBD_CLIENT_SESSION_MAX_IN_FLIGHT; i++) {
        if (!s->slots[i]) {
            slot = i;
            break;
        }
    }
    g_assert(slot >= 0);
    req->slot = slot;
    req->cookie = ((uint64_t) s->generation[slot] << 16) | (uint64_t) slot;
    s->slots[slot] = req;
    s->n_on_wire++;

    NBDRequest r = {
        .type = req->cmd, .flags = req->flags, .cookie = req->cookie,
        .offset = req->offset, .length = req->length,
    };
    req->payload_len = req->cmd == NBD_CMD_WRITE ? req->length : 0;
    if (s->mode == NBD_MODE_EXTENDED && req->cmd == NBD_CMD_WRITE) {
        r.flags |= NBD_CMD_FLAG_PAYLOAD_LEN;
    }
    req->hdr_len = nbd_encode_request(req->hdr, s->mode, &r);
    g_assert(req->hdr_len > 0);     /* lengths were checked at submit */
    req->sent = 0;
    list_push(&s->send_head, &s->send_tail, req);
}

static void fill_slots(NBDClientSession *s)
{
    while (s->wait_head && s->n_on_wire < NBD_CLIENT_SESSION_MAX_IN_FLIGHT) {
        NBDSessionReq *req = list_pop(&s->wait_head, &s->wait_tail);
        s->n_waiting--;
        put_on_wire(s, req);
    }
}

/* Append the unsent part of [base, base+len) given `skip` bytes already sent. */
static int add_segment(struct iovec *iov, int n, const void *base, uint64_t len, uint64_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return n;
    }
    iov[n].iov_base = (uint8_t *) base + *skip;
    iov[n].iov_len = len - *skip;
    *skip = 0;
    return n + 1;
}

static void flush_output(NBDClientSession *s)
{
    while (s->send_head && !s->dead) {
        struct iovec iov[MAX_WRITE_IOV];
        int n = 0;
        for (NBDSessionReq *req = s->send_head; req && n < MAX_WRITE_IOV - 1; req = req->next) {
            uint64_t skip = req->sent;
            n = add_segment(iov, n, req->hdr, req->hdr_len, &skip);
            if (req->payload_len) {
                uint64_t left = req->payload_len;
                for (int i = 0; i < req->niov && left && n < MAX_WRITE_IOV; i++) {
                    uint64_t seg = MIN(left, req->iov[i].iov_len);
                    n = add_segment(iov, n, req->iov[i].iov_base, seg, &skip);
                    left -= seg;
                }
            }
        }
        GError *err = NULL;
        ssize_t done = berth_channel_writev(s->ch, iov, n, &err);
        if (done == BERTH_CHANNEL_AGAIN) {
            return;
        }
        if (done < 0) {
            nbd_session_die(s, err);
            return;
        }
        uint64_t moved = (uint64_t) done;
        while (moved && s->send_head) {
            NBDSessionReq *req = s->send_head;
            uint64_t left = req->hdr_len + req->payload_len - req->sent;
            if (moved < left) {
                req->sent += moved;
                break;
            }
            moved -= left;
            req->sent += left;
            list_pop(&s->send_head, &s->send_tail);
        }
    }
}

/* ---- the watch --------------------------------------------------------------- */

/*
 * Reading while alive, writing while requests are queued. Once the session
 * is dead, its shut-down socket interests nobody: the watch stops polling
 * it and wakes for kicks (callbacks) only.
 */
static void update_events(NBDClientSession *s)
{
    if (s->watch) {
        berth_channel_watch_set_read(s->watch, !s->dead);
        berth_channel_watch_set_write(s->watch, !s->dead && s->send_head);
    }
}

static void read_input(NBDClientSession *s)
{
    for (int i = 0; i < MAX_READS_PER_DISPATCH && !s->dead; i++) {
        GError *err = NULL;
        int direct = nbd_session_read_direct(s, &err);
        if (direct == BERTH_CHANNEL_AGAIN) {
            return;
        }
        if (direct == BERTH_CHANNEL_ERROR) {
            nbd_session_die(s, err);
            return;
        }
        if (direct > 0) {
            continue;
        }
        if (s->in_pos == s->in_len) {
            s->in_pos = s->in_len = 0;
        } else if (s->in_pos > 0 && s->in_len == NBD_SESSION_INBUF_SIZE) {
            memmove(s->inbuf, s->inbuf + s->in_pos, s->in_len - s->in_pos);
            s->in_len -= s->in_pos;
            s->in_pos = 0;
        }
        ssize_t n = berth_channel_read(s->ch, s->inbuf + s->in_len,
                                       NBD_SESSION_INBUF_SIZE - s->in_len, &err);
        if (n == BERTH_CHANNEL_AGAIN) {
            return;
        }
        if (n < 0) {
            nbd_session_die(s, err);
            return;
        }
        if (n == 0) {
            nbd_session_die(s, g_error_new_literal(G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                                   "server closed the connection"));
            return;
        }
        s->in_len += (size_t) n;
        if (!nbd_session_process_input(s)) {
            return;
        }
    }
}

/* Send, receive, then run the callbacks of what finished and tell the
 * watch what we wait for now. */
static void session_ready(void *opaque, GIOCondition ready)
{
    NBDClientSession *s = opaque;
    s->ref++;
    if (!s->dead && (ready & G_IO_OUT)) {
        fill_slots(s);
        if (s->send_head) {
            flush_output(s);
        }
    }
    if (!s->dead && (ready & G_IO_IN)) {
        read_input(s);
    }
    run_done_callbacks(s);
    update_events(s);
    session_unref(s);
}

/* ---- public API ---------------------------------------------------------------- */

NBDClientSession *nbd_client_session_new(BerthChannel *ch, const NBDExportInfo *info,
                                         GMainContext *ctx, NBDClientSessionDeadFunc dead_cb,
                                         void *opaque)
{
    g_return_val_if_fail(ch && info, NULL);
    NBDClientSession *s = g_new0(NBDClientSession, 1);
    s->ref = 1;
    s->ch = berth_channel_ref(ch);
    s->info = *info;
    s->info.description = g_strdup(info->description);
    s->mode = nbd_export_info_mode(info);
    s->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    s->dead_cb = dead_cb;
    s->dead_opaque = opaque;
    s->inbuf = g_malloc(NBD_SESSION_INBUF_SIZE);
    s->watch = berth_channel_watch_new(ch, s->ctx, "nbd-client-session", session_ready, s);
    return s;
}

/*
 * Why the export cannot take this request, or 0.  The rules are the wire
 * codec's, the same table the server validates with (nbd_request_check);
 * only what the session owns is checked here: DISC is sent by
 * nbd_client_session_free(), and PAYLOAD_LEN by put_on_wire().
 */
static int check_request(NBDClientSession *s, uint16_t cmd, uint16_t flags, uint64_t offset,
                         uint64_t length, const char **why, bool *no_op)
{
    const NBDExportInfo *in = &s->info;
    if (cmd == NBD_CMD_DISC) {
        *why = "DISC is sent by closing the session";
        return EINVAL;
    }
    if (flags & NBD_CMD_FLAG_PAYLOAD_LEN) {
        *why = "PAYLOAD_LEN flag is set by the session, not the caller";
        return EINVAL;
    }
    NBDRequest r = { .type = cmd, .flags = flags, .offset = offset, .length = length };
    if (s->mode == NBD_MODE_EXTENDED && cmd == NBD_CMD_WRITE) {
        r.flags |= NBD_CMD_FLAG_PAYLOAD_LEN;    /* as it goes on the wire */
    }
    /* The block sizes are the server's (validated) or the spec's defaults:
     * either way the ones to honour.  The caller's buffer is the only
     * buffer, so the maximum block size alone bounds a read or write. */
    NBDRequestLimits lim = {
        .mode = s->mode,
        .tx_flags = in->flags,
        .export_size = in->size,
        .block_size_advertised = true,
        .min_block = in->min_block,
        .max_block = in->max_block,
        .max_payload = in->max_block,
        .n_contexts = in->base_allocation ? 1 : 0,
    };
    return nbd_request_check(&r, &lim, why, no_op);
}

void nbd_client_session_submit(NBDClientSession *s, uint16_t cmd, uint16_t flags,
                               uint64_t offset, uint64_t length, const struct iovec *iov,
                               int niov, NBDClientReplyFunc cb, void *opaque)
{
    g_return_if_fail(s && cb && !s->freed);
    NBDSessionReq *req = g_new0(NBDSessionReq, 1);
    req->s = s;
    req->cmd = cmd;
    req->flags = flags;
    req->offset = offset;
    req->length = length;
    req->iov = niov > 0 ? g_memdup2(iov, sizeof(*iov) * (size_t) niov) : NULL;
    req->niov = MAX(niov, 0);
    req->cb = cb;
    req->opaque = opaque;
    req->slot = -1;

    const char *why = NULL;
    bool no_op = false;
    int e = check_request(s, cmd, flags, offset, length, &why, &no_op);
    if (!e && (cmd == NBD_CMD_READ || cmd == NBD_CMD_WRITE) &&
        berth_iov_size(req->iov, req->niov) < length) {
        e = EINVAL;
        why = "buffer smaller than the request";
    }
    if (s->dead) {
        nbd_session_req_fail(req, EIO, "NBD connection to %s is down",
                             berth_channel_peer(s->ch));
    } else if (e) {
        nbd_session_req_fail(req, e, "NBD %s: %s", nbd_cmd_name(cmd), why);
    } else if (no_op) {
        /* Nothing to ask the server; the spec leaves zero lengths vague. */
    } else {
        list_push(&s->wait_head, &s->wait_tail, req);
        s->n_waiting++;
        kick(s);
        return;
    }
    list_push(&s->done_head, &s->done_tail, req);
    kick(s);
}

guint nbd_client_session_pending(NBDClientSession *s)
{
    guint n = s->n_waiting + s->n_on_wire;
    for (NBDSessionReq *r = s->done_head; r; r = r->next) {
        n++;
    }
    return n;
}

bool nbd_client_session_is_dead(NBDClientSession *s)
{
    return s->dead;
}

const NBDExportInfo *nbd_client_session_info(NBDClientSession *s)
{
    return &s->info;
}

static void session_unref(NBDClientSession *s)
{
    if (--s->ref > 0) {
        return;
    }
    berth_channel_watch_free(s->watch);
    g_free(s->small);
    g_free(s->inbuf);
    nbd_export_info_clear(&s->info);
    berth_channel_unref(s->ch);
    g_main_context_unref(s->ctx);
    g_free(s);
}

void nbd_client_session_free(NBDClientSession *s)
{
    if (!s) {
        return;
    }
    g_return_if_fail(!s->freed);
    s->freed = true;
    if (!s->dead) {
        /* A polite goodbye when nothing is half-sent; best effort only. */
        if (!s->send_head || s->send_head->sent == 0) {
            uint8_t hdr[NBD_REQUEST_MAX_SIZE];
            NBDRequest r = { .type = NBD_CMD_DISC };
            size_t len = nbd_encode_request(hdr, s->mode, &r);
            struct iovec iov = { hdr, len };
            berth_channel_writev(s->ch, &iov, 1, NULL);
        }
        s->dead = true;
        berth_channel_shutdown(s->ch);
    }
    fail_all(s, ESHUTDOWN, "NBD client session closed");
    s->ref++;
    run_done_callbacks(s);
    g_clear_pointer(&s->watch, berth_channel_watch_free);
    session_unref(s);
    session_unref(s);
}
