/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The channel base and the plain-socket implementation. Sockets are switched
 * to non-blocking mode once, and every read or write is a single readv/writev
 * (or sendmsg with MSG_NOSIGNAL, so a vanished peer is EPIPE, not SIGPIPE).
 * The blocking helpers at the bottom are for clients and tests only; the
 * server never calls them.
 */
#include "channel-int.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static ssize_t socket_readv(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    for (;;) {
        ssize_t n = readv(ch->fd, iov, niov);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return BERTH_CHANNEL_AGAIN;
        }
        int saved = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved), "read from %s: %s",
                    ch->peer, g_strerror(saved));
        return BERTH_CHANNEL_ERROR;
    }
}

static ssize_t socket_writev(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    struct msghdr msg = { .msg_iov = (struct iovec *) iov, .msg_iovlen = niov };
    for (;;) {
        ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return BERTH_CHANNEL_AGAIN;
        }
        if (errno == ENOTSOCK) {
            /* pipes and files in tests */
            n = writev(ch->fd, iov, niov);
            if (n >= 0) {
                return n;
            }
        }
        int saved = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved), "write to %s: %s",
                    ch->peer, g_strerror(saved));
        return BERTH_CHANNEL_ERROR;
    }
}

static size_t socket_pending(BerthChannel *ch)
{
    return 0;
}

static GIOCondition socket_wants(BerthChannel *ch, GIOCondition for_op)
{
    return for_op;
}

static void socket_shutdown(BerthChannel *ch)
{
    shutdown(ch->fd, SHUT_RDWR);
}

static const BerthChannelOps socket_ops = {
    .readv = socket_readv,
    .writev = socket_writev,
    .pending = socket_pending,
    .wants = socket_wants,
    .shutdown = socket_shutdown,
};

static char *describe_peer(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *) &ss, &len) < 0) {
        return g_strdup("fd");
    }
    char host[INET6_ADDRSTRLEN] = "";
    switch (ss.ss_family) {
    case AF_UNIX:
        return g_strdup("unix");
    case AF_INET: {
        struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        return g_strdup_printf("%s:%u", host, ntohs(sin->sin_port));
    }
    case AF_INET6: {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        return g_strdup_printf("[%s]:%u", host, ntohs(sin6->sin6_port));
    }
    default:
        return g_strdup("socket");
    }
}

BerthChannel *berth_channel_socket_new(int fd)
{
    BerthChannel *ch = g_new0(BerthChannel, 1);
    ch->ops = &socket_ops;
    ch->refcount = 1;
    ch->fd = fd;
    ch->peer = describe_peer(fd);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return ch;
}

BerthChannel *berth_channel_ref(BerthChannel *ch)
{
    g_atomic_int_inc(&ch->refcount);
    return ch;
}

void berth_channel_unref(BerthChannel *ch)
{
    if (!ch || !g_atomic_int_dec_and_test(&ch->refcount)) {
        return;
    }
    if (ch->ops->finalize) {
        ch->ops->finalize(ch);
    }
    if (ch->fd >= 0) {
        close(ch->fd);
    }
    g_free(ch->peer);
    g_free(ch->local);
    g_free(ch);
}

ssize_t berth_channel_readv(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    return ch->ops->readv(ch, iov, niov, errp);
}

ssize_t berth_channel_writev(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    return ch->ops->writev(ch, iov, niov, errp);
}

ssize_t berth_channel_read(BerthChannel *ch, void *buf, size_t len, GError **errp)
{
    struct iovec iov = { buf, len };
    return ch->ops->readv(ch, &iov, 1, errp);
}

ssize_t berth_channel_write(BerthChannel *ch, const void *buf, size_t len, GError **errp)
{
    struct iovec iov = { (void *) buf, len };
    return ch->ops->writev(ch, &iov, 1, errp);
}

size_t berth_channel_pending(BerthChannel *ch)
{
    return ch->ops->pending(ch);
}

GIOCondition berth_channel_wants(BerthChannel *ch, GIOCondition for_op)
{
    return ch->ops->wants(ch, for_op);
}

void berth_channel_shutdown(BerthChannel *ch)
{
    ch->ops->shutdown(ch);
}

const char *berth_channel_peer(BerthChannel *ch)
{
    return ch->peer;
}

int berth_channel_fd(BerthChannel *ch)
{
    return ch->fd;
}

bool berth_channel_peer_cred(BerthChannel *ch, pid_t *pid, uid_t *uid, gid_t *gid,
                             GError **errp)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int fd = berth_channel_fd(ch);
    if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0 || sa.ss_family != AF_UNIX) {
        return false;
    }
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Unable to get the peer's credentials: %s", g_strerror(err));
        return false;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return true;
}

bool berth_channel_wait(BerthChannel *ch, GIOCondition for_op, int timeout_ms, GError **errp)
{
    if ((for_op & G_IO_IN) && berth_channel_pending(ch) > 0) {
        return true;
    }
    GIOCondition cond = berth_channel_wants(ch, for_op);
    struct pollfd pfd = { .fd = ch->fd, .events = (cond & G_IO_IN ? POLLIN : 0) |
                                                  (cond & G_IO_OUT ? POLLOUT : 0) };
    int r;
    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "timed out waiting for %s",
                    ch->peer);
        return false;
    }
    if (r < 0) {
        int saved = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved), "poll: %s",
                    g_strerror(saved));
        return false;
    }
    return true;
}

bool berth_channel_read_all(BerthChannel *ch, void *buf, size_t len, int timeout_ms,
                            GError **errp)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = berth_channel_read(ch, (char *) buf + done, len - done, errp);
        if (n == BERTH_CHANNEL_ERROR) {
            return false;
        }
        if (n == 0) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "%s closed the connection", ch->peer);
            return false;
        }
        if (n == BERTH_CHANNEL_AGAIN) {
            if (!berth_channel_wait(ch, G_IO_IN, timeout_ms, errp)) {
                return false;
            }
            continue;
        }
        done += n;
    }
    return true;
}

bool berth_channel_write_all(BerthChannel *ch, const void *buf, size_t len, int timeout_ms,
                             GError **errp)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = berth_channel_write(ch, (const char *) buf + done, len - done, errp);
        if (n == BERTH_CHANNEL_ERROR) {
            return false;
        }
        if (n == BERTH_CHANNEL_AGAIN) {
            if (!berth_channel_wait(ch, G_IO_OUT, timeout_ms, errp)) {
                return false;
            }
            continue;
        }
        done += n;
    }
    return true;
}
