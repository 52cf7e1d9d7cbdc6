/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Listening sockets for the NBD server and the QMP monitors: resolve a
 * BerthSocketAddress into one or more bound sockets, watch them on a
 * GMainContext, and hand every accepted fd to the owner. Also the blocking
 * connect used by clients and tests, so both sides read addresses the same way.
 */
#include "berth/io/net-listener.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

struct BerthListener {
    GPtrArray *sources; /* one fd source per listening socket */
    GArray *fds;
    char *unlink_path;
    BerthAcceptFunc accept_cb;
    gpointer opaque;
    GMainContext *context;
    bool paused;                /* berth_listener_pause() */
    /* After accept() failed for want of a resource (descriptors, memory):
     * not watched until the timer says so, the wait doubling from
     * ACCEPT_BACKOFF_MIN_MS to ACCEPT_BACKOFF_MAX_MS while it keeps failing.
     * A listening socket stays readable when accept() fails, so watching it
     * meanwhile would spin the loop on the same error (and the log with it). */
    GSource *backoff;
    guint backoff_ms;
    guint64 failures;           /* in this episode, for the message at its end */
    int port;
};

#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1600

BerthSocketAddress *berth_socket_address_copy(const BerthSocketAddress *addr)
{
    BerthSocketAddress *c = g_new0(BerthSocketAddress, 1);
    c->type = addr->type;
    c->path = g_strdup(addr->path);
    c->host = g_strdup(addr->host);
    c->port = g_strdup(addr->port);
    c->fd = g_strdup(addr->fd);
    return c;
}

void berth_socket_address_free(BerthSocketAddress *addr)
{
    if (!addr) {
        return;
    }
    g_free(addr->path);
    g_free(addr->host);
    g_free(addr->port);
    g_free(addr->fd);
    g_free(addr);
}

char *berth_socket_address_to_string(const BerthSocketAddress *addr)
{
    switch (addr->type) {
    case BERTH_ADDR_UNIX:
        return g_strdup_printf("unix:%s", addr->path);
    case BERTH_ADDR_INET:
        return g_strdup_printf("inet:%s:%s", addr->host ? addr->host : "", addr->port);
    case BERTH_ADDR_FD:
        return g_strdup_printf("fd:%s", addr->fd);
    }
    return g_strdup("?");
}

static bool fill_unix(const char *path, struct sockaddr_un *sun, GError **errp)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (!path || !*path || strlen(path) >= sizeof(sun->sun_path)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "UNIX socket path '%s' is too long or empty", path ? path : "");
        return false;
    }
    strcpy(sun->sun_path, path);
    return true;
}

static struct addrinfo *resolve(const BerthSocketAddress *addr, bool passive, GError **errp)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = passive ? AI_PASSIVE | AI_ADDRCONFIG : AI_ADDRCONFIG };
    struct addrinfo *res = NULL;
    const char *host = addr->host && *addr->host ? addr->host : NULL;
    if (!addr->port || !*addr->port) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "inet address needs a port");
        return NULL;
    }
    int r = getaddrinfo(host, addr->port, &hints, &res);
    if (r != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "address resolution failed for %s:%s: %s", host ? host : "",
                    addr->port, gai_strerror(r));
        return NULL;
    }
    return res;
}

int berth_socket_connect(const BerthSocketAddress *addr, GError **errp)
{
    g_autofree char *desc = berth_socket_address_to_string(addr);
    if (addr->type == BERTH_ADDR_UNIX) {
        struct sockaddr_un sun;
        if (!fill_unix(addr->path, &sun, errp)) {
            return -1;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
            int saved = errno;
            if (fd >= 0) {
                close(fd);
            }
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved),
                        "Failed to connect to '%s': %s", addr->path, g_strerror(saved));
            return -1;
        }
        return fd;
    }
    if (addr->type == BERTH_ADDR_FD) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "cannot connect to %s", desc);
        return -1;
    }
    struct addrinfo *res = resolve(addr, false, errp);
    if (!res) {
        return -1;
    }
    int saved = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(res);
            return fd;
        }
        saved = errno;
        close(fd);
    }
    freeaddrinfo(res);
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved),
                "Failed to connect to '%s:%s': %s", addr->host ? addr->host : "", addr->port,
                g_strerror(saved));
    return -1;
}

static void watch_fds(BerthListener *l);
static void unwatch_fds(BerthListener *l);

static gboolean backoff_over(gpointer opaque)
{
    BerthListener *l = opaque;

    g_clear_pointer(&l->backoff, g_source_unref);
    if (!l->paused) {
        watch_fds(l);
    }
    return G_SOURCE_REMOVE;
}

/* accept() failed with err, which waiting may cure: stop watching for a while. */
static void back_off(BerthListener *l, int err)
{
    if (l->failures++ == 0) {
        g_warning("accept failed: %s; connections wait in the backlog until it "
                  "succeeds again (tried every %u to %u ms)", g_strerror(err),
                  ACCEPT_BACKOFF_MIN_MS, ACCEPT_BACKOFF_MAX_MS);
        l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    } else {
        l->backoff_ms = MIN(l->backoff_ms * 2, ACCEPT_BACKOFF_MAX_MS);
    }
    unwatch_fds(l);
    l->backoff = g_timeout_source_new(l->backoff_ms);
    g_source_set_callback(l->backoff, backoff_over, l, NULL);
    g_source_attach(l->backoff, l->context);
}

static gboolean on_listen_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    BerthListener *l = opaque;
    /* Accept a bounded batch per wakeup so one listener cannot starve the loop. */
    for (int i = 0; i < 16 && !l->paused && !l->backoff; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
            int err = errno;
            if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED) {
                back_off(l, err);   /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ... */
            }
            break;
        }
        if (l->failures) {
            g_message("accepting connections again, after %" G_GUINT64_FORMAT
                      " failed attempts", l->failures);
            l->failures = 0;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        l->accept_cb(cfd, l->opaque);
    }
    return G_SOURCE_CONTINUE;
}

static bool add_fd(BerthListener *l, int fd, GError **errp)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    g_array_append_val(l->fds, fd);
    return true;
}

static bool listen_unix(BerthListener *l, const char *path, GError **errp)
{
    struct sockaddr_un sun;
    if (!fill_unix(path, &sun, errp)) {
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno), "socket: %s",
                    g_strerror(errno));
        return false;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        /* Only replace a socket nobody answers on. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *) &sun, sizeof(sun)) == 0;
        if (probe >= 0) {
            close(probe);
        }
        if (live) {
            close(fd);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                        "Failed to bind socket to %s: Address already in use", path);
            return false;
        }
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 || listen(fd, 128) < 0) {
        int saved = errno;
        close(fd);
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved),
                    "Failed to bind socket to %s: %s", path, g_strerror(saved));
        return false;
    }
    l->unlink_path = g_strdup(path);
    return add_fd(l, fd, errp);
}

static bool listen_inet(BerthListener *l, const BerthSocketAddress *addr, GError **errp)
{
    struct addrinfo *res = resolve(addr, true, errp);
    if (!res) {
        return false;
    }
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6) {
            /* v4 gets its own socket when the name resolves to both */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            saved = errno;
            close(fd);
            continue;
        }
        if (l->port == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *) &ss, &sl) == 0) {
                l->port = ntohs(ss.ss_family == AF_INET
                                    ? ((struct sockaddr_in *) &ss)->sin_port
                                    : ((struct sockaddr_in6 *) &ss)->sin6_port);
            }
        }
        add_fd(l, fd, NULL);
    }
    freeaddrinfo(res);
    if (l->fds->len == 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved ? saved : EADDRNOTAVAIL),
                    "Failed to bind socket to %s:%s: %s", addr->host ? addr->host : "",
                    addr->port, g_strerror(saved ? saved : EADDRNOTAVAIL));
        return false;
    }
    return true;
}

static bool listen_fd(BerthListener *l, const char *str, GError **errp)
{
    char *end = NULL;
    long v = str ? strtol(str, &end, 10) : -1;
    int type = 0;
    socklen_t tl = sizeof(type);
    if (!str || !*str || *end || v < 0 || v > INT_MAX ||
        getsockopt((int) v, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "File descriptor '%s' is not a listening stream socket", str ? str : "");
        return false;
    }
    int acc = 0;
    tl = sizeof(acc);
    if (getsockopt((int) v, SOL_SOCKET, SO_ACCEPTCONN, &acc, &tl) == 0 && !acc &&
        listen((int) v, 128) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "File descriptor '%s' cannot listen: %s", str, g_strerror(errno));
        return false;
    }
    return add_fd(l, (int) v, errp);
}

static void watch_fds(BerthListener *l)
{
    for (guint i = 0; i < l->fds->len; i++) {
        GSource *src = g_unix_fd_source_new(g_array_index(l->fds, int, i), G_IO_IN);
        g_source_set_callback(src, (GSourceFunc) (void (*)(void)) on_listen_ready, l, NULL);
        g_source_attach(src, l->context);
        g_ptr_array_add(l->sources, src);
    }
}

static void unwatch_fds(BerthListener *l)
{
    for (guint i = 0; i < l->sources->len; i++) {
        GSource *src = g_ptr_array_index(l->sources, i);
        g_source_destroy(src);
        g_source_unref(src);
    }
    g_ptr_array_set_size(l->sources, 0);
}

BerthListener *berth_listener_new(const BerthSocketAddress *addr, GMainContext *context,
                                  BerthAcceptFunc accept_cb, gpointer opaque, GError **errp)
{
    BerthListener *l = g_new0(BerthListener, 1);
    l->fds = g_array_new(FALSE, FALSE, sizeof(int));
    l->sources = g_ptr_array_new();
    l->accept_cb = accept_cb;
    l->opaque = opaque;
    l->context = context ? g_main_context_ref(context) : NULL;
    bool ok = false;
    switch (addr->type) {
    case BERTH_ADDR_UNIX:
        ok = listen_unix(l, addr->path, errp);
        break;
    case BERTH_ADDR_INET:
        ok = listen_inet(l, addr, errp);
        break;
    case BERTH_ADDR_FD:
        ok = listen_fd(l, addr->fd, errp);
        break;
    }
    if (!ok) {
        berth_listener_free(l);
        return NULL;
    }
    watch_fds(l);
    return l;
}

/* Pausing removes the watches: pending connections wait in the backlog
 * instead of waking the loop over and over. */
void berth_listener_pause(BerthListener *l, bool paused)
{
    if (paused == l->paused) {
        return;
    }
    l->paused = paused;
    if (paused) {
        unwatch_fds(l);
    } else if (!l->backoff) {
        watch_fds(l);
    }
}

int berth_listener_get_port(BerthListener *l)
{
    return l->port;
}

void berth_listener_free(BerthListener *l)
{
    if (!l) {
        return;
    }
    unwatch_fds(l);
    if (l->backoff) {
        g_source_destroy(l->backoff);
        g_source_unref(l->backoff);
    }
    g_ptr_array_free(l->sources, TRUE);
    for (guint i = 0; i < l->fds->len; i++) {
        close(g_array_index(l->fds, int, i));
    }
    g_array_free(l->fds, TRUE);
    if (l->unlink_path) {
        unlink(l->unlink_path);
        g_free(l->unlink_path);
    }
    if (l->context) {
        g_main_context_unref(l->context);
    }
    g_free(l);
}
