/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A channel watch: the one GSource through which the owner of a
 * BerthChannel (an NBD server connection, an NBD client session, a QMP
 * session) learns that it may read, may write, or that the peer hung up.
 *
 * The owner says what it is interested in (reading, writing, either, both)
 * and the watch turns that into the fd condition to poll for, asking the
 * channel each time: a TLS channel may need the fd readable in order to
 * write, or writable in order to read, and may hold decrypted records
 * that poll() cannot see. The fd's condition is re-armed after every
 * dispatch and every change of interest, because what TLS waits for
 * changes with each read and write.
 *
 * Each dispatch calls the owner's function once with what is ready:
 *   G_IO_IN   readable: the fd is ready in the direction a read needs, the
 *             channel already holds input (berth_channel_pending()), or
 *             the peer hung up (a read sees the end of stream or the
 *             error); only while reading interests the owner
 *   G_IO_OUT  writable, likewise, while writing interests the owner
 *   G_IO_HUP, G_IO_ERR  as the fd reported them, whatever the interests
 * Owners serve output first, so replies leave before more requests are
 * read, and act on a hangup last, so a final read can still take what the
 * peer sent before it left. A kick adds G_IO_IN or G_IO_OUT to the next
 * dispatch whatever the fd and the interests say: for input the owner has
 * buffered itself, or for output it queued and wants to send in one batch.
 * The function may free the watch.
 *
 * A hung-up fd polls ready forever. While the owner is interested in
 * neither direction, such an fd leaves the poll set (the watch then wakes
 * for kicks only) and comes back when an interest does.
 *
 * Ownership: the watch holds a reference on its channel (dropped by
 * berth_channel_watch_free(), so a channel whose owner lets go of it too is
 * closed at once) and borrows `opaque`, which must outlive it.
 *
 * Threads: a watch is used only by the thread that runs its GMainContext.
 */
#ifndef BERTH_IO_CHANNEL_WATCH_H
#define BERTH_IO_CHANNEL_WATCH_H

#include "berth/io/channel.h"

G_BEGIN_DECLS

typedef struct BerthChannelWatch BerthChannelWatch;

/* `ready`: never 0; see above. */
typedef void (*BerthChannelWatchFunc)(void *opaque, GIOCondition ready);

/*
 * Watch `ch` on `ctx` (NULL: the global default context, as for
 * g_source_attach()). `name` names the GSource and must be a static
 * string. The watch starts interested in reading only.
 */
BerthChannelWatch *berth_channel_watch_new(BerthChannel *ch, GMainContext *ctx, const char *name,
                                           BerthChannelWatchFunc func, void *opaque);
/* Detach from the context and drop the channel; NULL is ignored. */
void berth_channel_watch_free(BerthChannelWatch *w);

/*
 * Go on with `ch`, a channel over the same fd (a TLS session started on
 * the plaintext channel the watch was given). Takes a new reference.
 */
void berth_channel_watch_set_channel(BerthChannelWatch *w, BerthChannel *ch);

/*
 * Interest in reading and in writing; pausing reading is setting it off.
 * Either call also re-arms the fd for what the channel now waits for, so
 * an owner that read or wrote outside a dispatch calls them afterwards.
 */
void berth_channel_watch_set_read(BerthChannelWatch *w, bool on);
void berth_channel_watch_set_write(BerthChannelWatch *w, bool on);

/* Make the next dispatch, due at once, report G_IO_IN / G_IO_OUT.
 * Kicking twice before it runs is kicking once. */
void berth_channel_watch_kick_read(BerthChannelWatch *w);
void berth_channel_watch_kick_write(BerthChannelWatch *w);

G_END_DECLS

#endif
