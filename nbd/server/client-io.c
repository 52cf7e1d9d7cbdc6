/*
 * A connection's socket plumbing, shared by the handshake and transmission
 * phases: one long-lived GSource per client watching its fd (the events it
 * waits for are switched in place, never re-created), an input buffer that a
 * single readv fills - optionally together with a write payload that is read
 * straight into its own buffer - and an output queue flushed with one
 * vectored write for as many replies as are ready.
 */
#include "server-int.h"

#include <gio/gio.h>
#include <glib-unix.h>
#include <string.h>

#define NBD_MAX_WRITE_IOV 64

typedef struct {
    GSource base;
    NBDClient *client;
} ClientSource;

static void flush_output(NBDClient *client);

static void update_events(NBDClient *client)
{
    if (!client->source) {
        return;
    }
    GIOCondition ev = 0;
    bool reading = client->phase == NBD_CLIENT_HANDSHAKE ||
                   client->phase == NBD_CLIENT_TRANSMISSION;
    if (reading && !client->read_paused) {
        ev |= berth_channel_wants(client->ch, G_IO_IN);
    }
    if (client->out_head) {
        ev |= berth_channel_wants(client->ch, G_IO_OUT);
    }
    if (ev != client->events) {
        client->events = ev;
        g_source_modify_unix_fd(client->source, client->fd_tag, ev);
    }
}

static void read_input(NBDClient *client)
{
    switch (client->phase) {
    case NBD_CLIENT_HANDSHAKE:
        nbd_handshake_input(client);
        break;
    case NBD_CLIENT_TRANSMISSION:
        nbd_transmission_input(client);
        break;
    default:
        break;
    }
}

static gboolean client_source_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
    NBDClient *client = ((ClientSource *) source)->client;
    GIOCondition rev = g_source_query_unix_fd(source, client->fd_tag);
    bool kick_read = client->kick_read, kick_flush = client->kick_flush;
    client->kick_read = client->kick_flush = false;
    g_source_set_ready_time(source, -1);
    /* TLS may need the other direction to make progress (a read that must
     * write, a handshake step that must wait for room): serve each side on
     * the condition its channel asked for. */
    GIOCondition hangup = G_IO_ERR | G_IO_HUP;
    GIOCondition rd = client->read_paused ? hangup
                      : berth_channel_wants(client->ch, G_IO_IN) | hangup;
    GIOCondition wr = berth_channel_wants(client->ch, G_IO_OUT) | hangup;
    nbd_client_get(client);
    if (((rev & wr) || kick_flush) && client->out_head) {
        flush_output(client);
    }
    if ((rev & rd) || kick_read) {
        read_input(client);
    }
    if (client->phase != NBD_CLIENT_CLOSED) {
        /* Records already decrypted inside the TLS layer are invisible to
         * poll(): keep reading without waiting for the fd. */
        if ((client->phase == NBD_CLIENT_HANDSHAKE || client->phase == NBD_CLIENT_TRANSMISSION) &&
            !client->read_paused && berth_channel_pending(client->ch) > 0) {
            nbd_client_kick_read(client);
        }
        update_events(client);
    }
    nbd_client_put(client);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs client_source_funcs = {
    .dispatch = client_source_dispatch,
};

void nbd_client_io_start(NBDClient *client)
{
    client->inbuf = g_malloc(NBD_CLIENT_INBUF_SIZE);
    GSource *src = g_source_new(&client_source_funcs, sizeof(ClientSource));
    ((ClientSource *) src)->client = client;
    g_source_set_static_name(src, "nbd-client");
    client->events = G_IO_IN;
    client->fd_tag = g_source_add_unix_fd(src, berth_channel_fd(client->ch), G_IO_IN);
    g_source_attach(src, NULL);
    client->source = src;
}

static size_t item_length(const NBDOutItem *it)
{
    size_t total = 0;
    for (int i = 0; i < it->niov; i++) {
        total += it->iov[i].iov_len;
    }
    return total;
}

static void drop_output(NBDClient *client)
{
    client->out_bytes = 0;
    while (client->out_head) {
        NBDOutItem *item = client->out_head;
        client->out_head = item->next;
        item->sent(item);
    }
    client->out_tail = NULL;
}

void nbd_client_io_stop(NBDClient *client)
{
    if (client->source) {
        g_source_destroy(client->source);
        g_source_unref(client->source);
        client->source = NULL;
    }
    drop_output(client);
}

void nbd_client_pause_reading(NBDClient *client, bool paused)
{
    if (client->read_paused == paused) {
        return;
    }
    client->read_paused = paused;
    if (!paused && client->source) {
        /* Input may already sit in our buffer or in the TLS layer, where
         * poll() cannot see it: dispatch once without waiting for the fd. */
        nbd_client_kick_read(client);
    }
    update_events(client);
}

void nbd_client_kick_read(NBDClient *client)
{
    if (client->source && !client->kick_read) {
        client->kick_read = true;
        g_source_set_ready_time(client->source, 0);
    }
}

size_t nbd_client_input_avail(NBDClient *client)
{
    return client->in_end - client->in_start;
}

ssize_t nbd_client_read_more(NBDClient *client, void *direct, size_t direct_len)
{
    if (client->in_start == client->in_end) {
        client->in_start = client->in_end = 0;
    } else if (client->in_start > 0 && client->in_end == NBD_CLIENT_INBUF_SIZE) {
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
    size_t room = NBD_CLIENT_INBUF_SIZE - client->in_end;
    if (room) {
        iov[n++] = (struct iovec) { client->inbuf + client->in_end, room };
    }
    if (n == 0) {
        return BERTH_CHANNEL_AGAIN;
    }
    g_autoptr(GError) err = NULL;
    ssize_t got = berth_channel_readv(client->ch, iov, n, &err);
    if (got == BERTH_CHANNEL_ERROR) {
        g_debug("NBD client %s: %s", berth_channel_peer(client->ch), err->message);
        return got;
    }
    if (got > 0 && (size_t) got > direct_len) {
        client->in_end += got - direct_len;
    }
    return got;
}

static void maybe_finish_drain(NBDClient *client)
{
    if (client->phase == NBD_CLIENT_DRAINING && !client->out_head && client->in_flight == 0) {
        nbd_client_close(client);
    }
}

static void flush_output(NBDClient *client)
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
            nbd_client_close(client);
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
        nbd_client_pause_reading(client, false);
    }
    update_events(client);
    maybe_finish_drain(client);
}

bool nbd_client_output_backlogged(NBDClient *client)
{
    if (client->out_bytes < NBD_HANDSHAKE_MAX_OUTPUT) {
        return false;
    }
    if (!client->out_backlog) {
        client->out_backlog = true;
        nbd_client_pause_reading(client, true);
    }
    return true;
}

void nbd_client_send_item(NBDClient *client, NBDOutItem *item)
{
    if (client->phase == NBD_CLIENT_CLOSED) {
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
     * the write happens once, at the client's next dispatch. */
    if (client->out_head == item && client->source && !client->kick_flush) {
        client->kick_flush = true;
        g_source_set_ready_time(client->source, 0);
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

void nbd_client_send_copy(NBDClient *client, const void *buf, size_t len)
{
    CopyItem *ci = g_malloc(sizeof(CopyItem) + len);
    memcpy(ci->data, buf, len);
    ci->iov = (struct iovec) { ci->data, len };
    ci->item.iov = &ci->iov;
    ci->item.niov = 1;
    ci->item.sent = copy_item_sent;
    nbd_client_send_item(client, &ci->item);
}

void nbd_client_finish(NBDClient *client, bool flush_first)
{
    if (client->phase == NBD_CLIENT_CLOSED) {
        return;
    }
    if (!flush_first) {
        nbd_client_close(client);
        return;
    }
    client->phase = NBD_CLIENT_DRAINING;
    update_events(client);
    maybe_finish_drain(client);
}

void nbd_client_request_done(NBDClient *client)
{
    maybe_finish_drain(client);
}
