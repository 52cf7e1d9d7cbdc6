/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A connection's socket plumbing, shared by the handshake and transmission
 * phases: one channel watch per client (io/channel-watch.h: it polls for
 * what the channel - plain or TLS - needs, and serves input TLS already
 * holds), an input buffer that a single readv fills - optionally together
 * with a write payload that is read straight into its own buffer - and an
 * output queue flushed with one vectored write for as many replies as are
 * ready. A client of an export with a context of its own moves there, watch
 * and all, at the end of the dispatch in which it negotiated (hand_off).
 */
#include "server-int.h"

#include <gio/gio.h>
#include <string.h>
#include <sys/socket.h>

#define NBD_MAX_WRITE_IOV 64

static void flush_output(NBDConn *client);
static void hand_off(NBDConn *client);

static void update_events(NBDConn *client)
{
    if (!client->watch) {
        return;
    }
    bool reading = client->phase == NBD_CONN_HANDSHAKE ||
                   client->phase == NBD_CONN_TRANSMISSION;
    berth_channel_watch_set_read(client->watch, reading && !client->read_paused);
    berth_channel_watch_set_write(client->watch, client->out_head != NULL);
}

static void read_input(NBDConn *client)
{
    switch (client->phase) {
    case NBD_CONN_HANDSHAKE:
        nbd_handshake_input(client);
        break;
    case NBD_CONN_TRANSMISSION:
        nbd_transmission_input(client);
        break;
    default:
        break;
    }
}

/*
 * Replies go out before more requests come in. Requests that the node
 * finished inline (memory, null, file data in the page cache) are answered
 * in the same dispatch, and whatever was queued meanwhile leaves with one
 * write at its end: a request then costs a poll, a read and a write.
 */
static void client_ready(void *opaque, GIOCondition ready)
{
    NBDConn *client = nbd_conn_get(opaque);
    client->in_dispatch = true;
    if ((ready & G_IO_OUT) && client->out_head) {
        flush_output(client);
    }
    if (ready & G_IO_IN) {
        read_input(client);
        bdrv_dispatch_completions();
    }
    client->in_dispatch = false;
    if (client->flush_at_end) {
        client->flush_at_end = false;
        if (client->out_head) {
            flush_output(client);
        }
    }
    if (client->handoff_pending) {
        client->handoff_pending = false;
        if (client->phase == NBD_CONN_TRANSMISSION) {
            hand_off(client); /* not ours any more */
        }
    }
    nbd_conn_put(client);
}

/* On the export's context: the client's watch from now on lives here. */
static gboolean client_adopt(gpointer opaque)
{
    NBDConn *client = opaque;

    berth_tsan_acquire(client);   /* pairs with hand_off() */
    if (client->phase != NBD_CONN_TRANSMISSION) {
        return G_SOURCE_REMOVE; /* closed from the main context meanwhile */
    }
    /* Block completions come back to the thread-default context. */
    GMainContext *here = g_main_context_get_thread_default();
    g_warn_if_fail((here ? here : g_main_context_default()) == client->ctx);
    client->watch = berth_channel_watch_new(client->ch, client->ctx, "nbd-client",
                                            client_ready, client);
    nbd_transmission_begin(client);
    update_events(client);
    if (client->out_head) {
        berth_channel_watch_kick_write(client->watch);
    }
    return G_SOURCE_REMOVE;
}

/*
 * The handshake ran here, on the main context, because the export is known
 * only once the client names it; everything after moves to the export's
 * context. The watch goes first, so no dispatch can follow on this side;
 * the queued output and buffered input travel with the client. The
 * invoke's lock orders everything written here before the I/O thread's
 * first look.
 */
static void hand_off(NBDConn *client)
{
    g_clear_pointer(&client->watch, berth_channel_watch_free);
    client->ctx = g_main_context_ref(nbd_export_next_context(client->exp));
    berth_tsan_release(client);   /* GLib's invoke is invisible to TSan */
    g_main_context_invoke_full(client->ctx, G_PRIORITY_DEFAULT, client_adopt,
                               nbd_conn_get(client), (GDestroyNotify) nbd_conn_put);
}

/*
 * A unix socket queues only what fits its sender's buffer (about 200 KiB
 * by default), so a 1 MiB read reply left in several writes, each waiting
 * for the peer to take the last. A larger buffer lets a batch of replies
 * leave in one; the kernel takes the memory only while data is queued, and
 * caps the request at net.core.wmem_max. Only for the transmission phase,
 * whose in-flight limits bound what a peer that does not read can make us
 * queue anyway; a handshaking peer keeps the small default. TCP sockets
 * keep the kernel's own tuning, which a fixed size would turn off.
 */
void nbd_conn_enlarge_send_buffer(NBDConn *client)
{
    int fd = berth_channel_fd(client->ch);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int size = NBD_CONN_UNIX_SNDBUF;

    if (getsockname(fd, (struct sockaddr *) &ss, &len) == 0 && ss.ss_family == AF_UNIX) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
}

void nbd_conn_io_start(NBDConn *client)
{
    client->inbuf = g_malloc(NBD_CONN_INBUF_SIZE);
    client->watch = berth_channel_watch_new(client->ch, NULL, "nbd-client", client_ready, client);
}

void nbd_conn_use_channel(NBDConn *client, BerthChannel *ch)
{
    berth_channel_unref(client->ch);
    client->ch = ch;
    if (client->watch) {
        berth_channel_watch_set_channel(client->watch, ch);
    }
}

static size_t item_length(const NBDOutItem *it)
{
    size_t total = 0;
    for (int i = 0; i < it->niov; i++) {
        total += it->iov[i].iov_len;
    }
    return total;
}

static void drop_output(NBDConn *client)
{
    client->out_bytes = 0;
    while (client->out_head) {
        NBDOutItem *item = client->out_head;
        client->out_head = item->next;
        item->sent(item);
    }
    client->out_tail = NULL;
}

void nbd_conn_io_stop(NBDConn *client)
{
    g_clear_pointer(&client->watch, berth_channel_watch_free);
    drop_output(client);
}

void nbd_conn_pause_reading(NBDConn *client, bool paused)
{
    if (client->read_paused == paused) {
        return;
    }
    client->read_paused = paused;
    if (!paused) {
        /* Input may already sit in our buffer, where poll() cannot see it:
         * dispatch once without waiting for the fd. */
        nbd_conn_kick_read(client);
    }
    update_events(client);
}

void nbd_conn_kick_read(NBDConn *client)
{
    if (client->watch) {
        berth_channel_watch_kick_read(client->watch);
    }
}

size_t nbd_conn_input_avail(NBDConn *client)
{
    return client->in_end - client->in_start;
}

ssize_t nbd_conn_read_more(NBDConn *client, void *direct, size_t direct_len,
                             size_t in_max, bool *drained)
{
    if (client->in_start == client->in_end) {
        client->in_start = client->in_end = 0;
    } else if (client->in_start > 0 && client->in_end == NBD_CONN_INBUF_SIZE) {
        memmove(client->inbuf, client->inbuf + client->in_start,
                client->in_end - client->in_start);
        client->in_end -= client->in_start;
        client->in_start = 0;
    }
    struct iovec iov[2];
    int n = 0;
    if (direct_len) {
        iov[n++] = (struct iovec) { direct, direct_len };
    }
    size_t room = MIN(NBD_CONN_INBUF_SIZE - client->in_end, in_max);
    if (room) {
        iov[n++] = (struct iovec) { client->inbuf + client->in_end, room };
    }
    if (n == 0) {
        *drained = false;
        return BERTH_CHANNEL_AGAIN;
    }
    g_autoptr(GError) err = NULL;
    ssize_t got = berth_channel_readv(client->ch, iov, n, &err);
    *drained = got == BERTH_CHANNEL_AGAIN || (got > 0 && (size_t) got < direct_len + room);
    if (got == BERTH_CHANNEL_ERROR) {
        g_debug("NBD client %s: %s", berth_channel_peer(client->ch), err->message);
        return got;
    }
    if (got > 0 && (size_t) got > direct_len) {
        client->in_end += got - direct_len;
    }
    return got;
}

static void maybe_finish_drain(NBDConn *client)
{
    if (client->phase == NBD_CONN_DRAINING && !client->out_head && client->in_flight == 0) {
        nbd_conn_close(client);
    }
}

static void flush_output(NBDConn *client)
{
    while (client->out_head) {
        struct iovec iov[NBD_MAX_WRITE_IOV];
        int n = 0;
        for (NBDOutItem *it = client->out_head; it && n < NBD_MAX_WRITE_IOV; it = it->next) {
            size_t skip = it->skip;
            for (int i = 0; i < it->niov && n < NBD_MAX_WRITE_IOV; i++) {
                if (skip >= it->iov[i].iov_len) {
                    skip -= it->iov[i].iov_len;
                    continue;
                }
                iov[n].iov_base = (char *) it->iov[i].iov_base + skip;
                iov[n].iov_len = it->iov[i].iov_len - skip;
                skip = 0;
                n++;
            }
        }
        g_autoptr(GError) err = NULL;
        ssize_t wrote = berth_channel_writev(client->ch, iov, n, &err);
        if (wrote == BERTH_CHANNEL_AGAIN) {
            break;
        }
        if (wrote == BERTH_CHANNEL_ERROR) {
            g_debug("NBD client %s: %s", berth_channel_peer(client->ch), err->message);
            nbd_conn_close(client);
            return;
        }
        /* Retire fully written items, remember how far into the next we got. */
        size_t left = wrote;
        client->out_bytes -= wrote;
        while (client->out_head) {
            NBDOutItem *it = client->out_head;
            size_t rest = item_length(it) - it->skip;
            if (left < rest) {
                it->skip += left;
                break;
            }
            left -= rest;
            client->out_head = it->next;
            if (!client->out_head) {
                client->out_tail = NULL;
            }
            it->sent(it);
        }
    }
    if (client->out_backlog && client->out_bytes < NBD_HANDSHAKE_MAX_OUTPUT) {
        client->out_backlog = false;
        nbd_conn_pause_reading(client, false);
    }
    update_events(client);
    maybe_finish_drain(client);
}

bool nbd_conn_output_backlogged(NBDConn *client)
{
    if (client->out_bytes < NBD_HANDSHAKE_MAX_OUTPUT) {
        return false;
    }
    if (!client->out_backlog) {
        client->out_backlog = true;
        nbd_conn_pause_reading(client, true);
    }
    return true;
}

void nbd_conn_send_item(NBDConn *client, NBDOutItem *item)
{
    if (client->phase == NBD_CONN_CLOSED) {
        item->sent(item);
        return;
    }
    item->next = NULL;
    item->skip = 0;
    client->out_bytes += item_length(item);
    if (client->out_tail) {
        client->out_tail->next = item;
    } else {
        client->out_head = item;
    }
    client->out_tail = item;
    /* Replies that complete in the same main-loop iteration leave together:
     * the write happens once, at the end of this client's dispatch or at its
     * next one. */
    if (client->out_head == item && client->watch) {
        if (client->in_dispatch) {
            client->flush_at_end = true;
        } else {
            berth_channel_watch_kick_write(client->watch);
        }
    }
}

typedef struct {
    NBDOutItem item;
    struct iovec iov;
    uint8_t data[];
} CopyItem;

static void copy_item_sent(NBDOutItem *item)
{
    g_free(item);
}

void nbd_conn_send_copy(NBDConn *client, const void *buf, size_t len)
{
    CopyItem *ci = g_malloc(sizeof(CopyItem) + len);
    memcpy(ci->data, buf, len);
    ci->iov = (struct iovec) { ci->data, len };
    ci->item.iov = &ci->iov;
    ci->item.niov = 1;
    ci->item.sent = copy_item_sent;
    nbd_conn_send_item(client, &ci->item);
}

void nbd_conn_finish(NBDConn *client, bool flush_first)
{
    if (client->phase == NBD_CONN_CLOSED) {
        return;
    }
    if (!flush_first) {
        nbd_conn_close(client);
        return;
    }
    client->phase = NBD_CONN_DRAINING;
    update_events(client);
    maybe_finish_drain(client);
}

void nbd_conn_request_done(NBDConn *client)
{
    maybe_finish_drain(client);
}
