/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The channel watch (io/channel-watch.h): a GSource with one unix fd whose
 * polled condition is switched in place (never re-created), and a prepare()
 * that makes a kicked watch ready. Kicks come from the context's own thread,
 * which runs prepare() before it polls again, so a kick costs no syscall; a
 * ready time would (g_source_set_ready_time() writes the context's wake-up
 * eventfd on every change, and the next poll then reads it back). Changing
 * the fd's condition from inside a dispatch costs none either: GLib only
 * wakes a context that is polling.
 *
 * The source may recurse, because GLib takes a source that may not out of
 * the poll set for each of its dispatches and puts it back afterwards, and
 * each of those two steps writes the wake-up eventfd too: two syscalls, a
 * poll and a read per dispatch, for what only a nested main loop run by
 * the owner's own function would ever need. The watch keeps itself out of
 * such a nested loop instead (watch_park()), only when it happens.
 */
#include "io/channel-watch.h"

#include <glib-unix.h>

#define HANGUP (G_IO_HUP | G_IO_ERR)

struct BerthChannelWatch {
    GSource source;
    BerthChannel *ch;                   /* referenced; NULL once freed */
    BerthChannelWatchFunc func;
    void *opaque;
    gpointer fd_tag;                    /* NULL while the fd is out of the poll set */
    GIOCondition events;                /* what the fd is polled for */
    bool read_on, write_on;
    bool kick_read, kick_write;
    bool dispatching;                   /* inside func */
    bool parked;                        /* out of a nested loop until func returns */
};

/* The fd condition that the interests need now, as the channel says. */
static void watch_arm(BerthChannelWatch *w)
{
    GIOCondition ev = 0;
    if (w->parked) {
        return;     /* re-armed when the dispatch that parked it ends */
    }
    if (w->read_on) {
        ev |= berth_channel_wants(w->ch, G_IO_IN);
    }
    if (w->write_on) {
        ev |= berth_channel_wants(w->ch, G_IO_OUT);
    }
    if (!w->fd_tag) {
        if (ev) {
            w->fd_tag = g_source_add_unix_fd(&w->source, berth_channel_fd(w->ch), ev);
            w->events = ev;
        }
        return;
    }
    if (ev != w->events) {
        w->events = ev;
        g_source_modify_unix_fd(&w->source, w->fd_tag, ev);
    }
}

/* Records already decrypted by TLS are invisible to poll(): read them
 * without waiting for the fd. */
static void watch_check_pending(BerthChannelWatch *w)
{
    if (w->read_on && berth_channel_pending(w->ch) > 0) {
        berth_channel_watch_kick_read(w);
    }
}

/* A kicked watch is ready without polling; otherwise GLib polls the fd. */
static gboolean watch_prepare(GSource *source, gint *timeout)
{
    BerthChannelWatch *w = (BerthChannelWatch *) source;
    *timeout = -1;
    return !w->dispatching && (w->kick_read || w->kick_write);
}

/*
 * The owner's function runs a main loop on our context (a blocking open
 * inside a QMP command) and our fd became ready in it: calling the function
 * again would re-enter the owner, so leave the poll set until the outer
 * dispatch ends, as GLib does for every source that may not recurse.
 */
static void watch_park(BerthChannelWatch *w)
{
    w->parked = true;
    if (w->fd_tag) {
        g_source_remove_unix_fd(&w->source, w->fd_tag);
        w->fd_tag = NULL;
    }
}

static gboolean watch_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
    BerthChannelWatch *w = (BerthChannelWatch *) source;
    if (w->dispatching) {
        watch_park(w);
        return G_SOURCE_CONTINUE;
    }
    GIOCondition rev = w->fd_tag ? g_source_query_unix_fd(source, w->fd_tag) : 0;
    bool kick_read = w->kick_read, kick_write = w->kick_write;
    w->kick_read = w->kick_write = false;
    /* Serve each side on the condition its channel asked for: a TLS read
     * may be waiting for room to write, a write for input to read. */
    GIOCondition rd = berth_channel_wants(w->ch, G_IO_IN) | HANGUP;
    GIOCondition wr = berth_channel_wants(w->ch, G_IO_OUT) | HANGUP;

    GIOCondition ready = rev & HANGUP;
    if (kick_read || (w->read_on && (rev & rd))) {
        ready |= G_IO_IN;
    }
    if (kick_write || (w->write_on && (rev & wr))) {
        ready |= G_IO_OUT;
    }
    if (ready) {
        w->dispatching = true;
        w->func(w->opaque, ready);
        w->dispatching = false;
        if (g_source_is_destroyed(source)) {
            return G_SOURCE_REMOVE;     /* freed by its owner */
        }
        w->parked = false;
    }
    watch_check_pending(w);
    if (w->fd_tag && (rev & HANGUP) && !w->read_on && !w->write_on) {
        /* Nobody will read or write: stop polling a fd that is always ready. */
        g_source_remove_unix_fd(source, w->fd_tag);
        w->fd_tag = NULL;
    }
    watch_arm(w);
    return G_SOURCE_CONTINUE;
}

static void watch_finalize(GSource *source)
{
    BerthChannelWatch *w = (BerthChannelWatch *) source;
    berth_channel_unref(w->ch);
}

static GSourceFuncs watch_funcs = {
    .prepare = watch_prepare,
    .dispatch = watch_dispatch,
    .finalize = watch_finalize,
};

BerthChannelWatch *berth_channel_watch_new(BerthChannel *ch, GMainContext *ctx, const char *name,
                                           BerthChannelWatchFunc func, void *opaque)
{
    g_return_val_if_fail(ch && func, NULL);
    BerthChannelWatch *w = (BerthChannelWatch *) g_source_new(&watch_funcs, sizeof(*w));
    g_source_set_static_name(&w->source, name);
    g_source_set_can_recurse(&w->source, TRUE);
    w->ch = berth_channel_ref(ch);
    w->func = func;
    w->opaque = opaque;
    w->read_on = true;
    watch_arm(w);
    watch_check_pending(w);
    g_source_attach(&w->source, ctx);
    return w;
}

void berth_channel_watch_free(BerthChannelWatch *w)
{
    if (!w) {
        return;
    }
    g_source_destroy(&w->source);
    /* Now, not when GLib lets go of a source that is dispatching. */
    g_clear_pointer(&w->ch, berth_channel_unref);
    g_source_unref(&w->source);
}

void berth_channel_watch_set_channel(BerthChannelWatch *w, BerthChannel *ch)
{
    g_return_if_fail(berth_channel_fd(ch) == berth_channel_fd(w->ch));
    berth_channel_ref(ch);
    berth_channel_unref(w->ch);
    w->ch = ch;
    watch_check_pending(w);
    watch_arm(w);
}

void berth_channel_watch_set_read(BerthChannelWatch *w, bool on)
{
    bool was = w->read_on;
    w->read_on = on;
    if (on && !was) {
        watch_check_pending(w);
    }
    watch_arm(w);
}

void berth_channel_watch_set_write(BerthChannelWatch *w, bool on)
{
    w->write_on = on;
    watch_arm(w);
}

void berth_channel_watch_kick_read(BerthChannelWatch *w)
{
    w->kick_read = true;
}

void berth_channel_watch_kick_write(BerthChannelWatch *w)
{
    w->kick_write = true;
}
