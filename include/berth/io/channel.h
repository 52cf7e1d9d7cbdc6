/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth byte channels: one non-blocking interface over plain sockets and TLS
 * sessions, so protocol code (NBD, QMP) never cares which one it holds.
 *
 * A channel wraps one connected file descriptor. Reads and writes never
 * block: they return the number of bytes moved, 0 at end of stream (reads),
 * BERTH_CHANNEL_AGAIN when the kernel (or the TLS layer) has nothing to give
 * or take right now, or BERTH_CHANNEL_ERROR with errp set.
 *
 * Ownership: berth_channel_socket_new() takes ownership of the fd and returns
 * one reference; berth_channel_ref/unref count references and the last unref
 * closes the fd. A TLS channel (io/tls.h) holds a reference to the channel it
 * wraps. Strings returned by getters belong to the channel.
 *
 * Threads: a channel is used by one thread at a time (the owner of the
 * GMainContext watching it); reference counting is atomic.
 */
#ifndef BERTH_IO_CHANNEL_H
#define BERTH_IO_CHANNEL_H

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

G_BEGIN_DECLS

#define BERTH_CHANNEL_AGAIN ((ssize_t) -2)
#define BERTH_CHANNEL_ERROR ((ssize_t) -1)

/* Opaque; implementations (io/) see io/channel-int.h. */
typedef struct BerthChannel BerthChannel;

/* Wraps a connected socket; makes it non-blocking and close-on-exec. */
BerthChannel *berth_channel_socket_new(int fd);

BerthChannel *berth_channel_ref(BerthChannel *ch);
void berth_channel_unref(BerthChannel *ch);

ssize_t berth_channel_readv(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp);
ssize_t berth_channel_writev(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp);
ssize_t berth_channel_read(BerthChannel *ch, void *buf, size_t len, GError **errp);
ssize_t berth_channel_write(BerthChannel *ch, const void *buf, size_t len, GError **errp);
size_t berth_channel_pending(BerthChannel *ch);
GIOCondition berth_channel_wants(BerthChannel *ch, GIOCondition for_op);
/* Stop both directions now (peers see EOF); the fd stays until the last unref. */
void berth_channel_shutdown(BerthChannel *ch);
/* Who is on the other end ("unix", "127.0.0.1:5555"), for logs and QMP. */
const char *berth_channel_peer(BerthChannel *ch);
/*
 * The connected socket, for polling it and for handing it to the kernel
 * (NBD_SET_SOCK). Borrowed: the channel keeps it open until its last unref.
 * A TLS channel answers the fd of the channel it wraps; reading or writing
 * it directly bypasses the TLS session.
 */
int berth_channel_fd(BerthChannel *ch);

/*
 * The credentials of the process on the other end of a unix socket
 * (SO_PEERCRED, as the kernel recorded them at connect time). False for
 * other sockets, or with errp set if the kernel would not say.
 */
bool berth_channel_peer_cred(BerthChannel *ch, pid_t *pid, uid_t *uid, gid_t *gid,
                             GError **errp);

/*
 * Block until a read (for_op G_IO_IN) or a write (G_IO_OUT) can make
 * progress: the fd is ready for what the channel waits for, or input is
 * buffered already. At most timeout_ms (-1: forever); false with errp set
 * on timeout or poll() error. For blocking code only; event-driven owners
 * let a GMainContext wait.
 */
bool berth_channel_wait(BerthChannel *ch, GIOCondition for_op, int timeout_ms, GError **errp);

/*
 * Blocking helpers for clients and tests: move exactly len bytes, waiting
 * with poll() for at most timeout_ms per wait (-1: forever). Return false
 * with errp set on error, timeout or early EOF.
 */
bool berth_channel_read_all(BerthChannel *ch, void *buf, size_t len, int timeout_ms,
                            GError **errp);
bool berth_channel_write_all(BerthChannel *ch, const void *buf, size_t len, int timeout_ms,
                             GError **errp);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BerthChannel, berth_channel_unref)

G_END_DECLS

#endif
