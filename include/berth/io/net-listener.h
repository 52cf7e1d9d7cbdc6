/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Socket addresses (QEMU's SocketAddress: unix path, inet host+port, an
 * inherited fd) and a listener that accepts connections on a GMainContext.
 *
 * Ownership: BerthSocketAddress owns its strings (berth_socket_address_free).
 * A BerthListener owns its listening fds and, for unix sockets it created,
 * unlinks the path when freed. Accepted fds are handed to the callback, which
 * owns them from then on.
 *
 * Threads: a listener lives on the GMainContext it was created for.
 */
#ifndef BERTH_IO_NET_LISTENER_H
#define BERTH_IO_NET_LISTENER_H

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

typedef enum {
    BERTH_ADDR_UNIX,
    BERTH_ADDR_INET,
    BERTH_ADDR_FD,
} BerthAddrType;

typedef struct BerthSocketAddress {
    BerthAddrType type;
    char *path; /* unix */
    char *host; /* inet: name or numeric; "" or NULL means all addresses */
    char *port; /* inet: number or service name */
    char *fd;   /* fd: a decimal fd number inherited from the parent */
} BerthSocketAddress;

BerthSocketAddress *berth_socket_address_copy(const BerthSocketAddress *addr);
void berth_socket_address_free(BerthSocketAddress *addr);
/* "unix:/path", "inet:127.0.0.1:10809", "fd:3" */
char *berth_socket_address_to_string(const BerthSocketAddress *addr);

/* Connect (blocking, for clients and tests). Returns an fd or -1 + errp. */
int berth_socket_connect(const BerthSocketAddress *addr, GError **errp);

typedef struct BerthListener BerthListener;

/* Called on the listener's context for each accepted connection. */
typedef void (*BerthAcceptFunc)(int fd, gpointer opaque);

/*
 * Listen on addr (inet: every address the host name resolves to, IPv4 and
 * IPv6, with SO_REUSEADDR; unix: fails if the path exists and is in use,
 * removes a stale socket file first). context NULL means the global default.
 */
BerthListener *berth_listener_new(const BerthSocketAddress *addr, GMainContext *context,
                                  BerthAcceptFunc accept_cb, gpointer opaque, GError **errp);
/* Stop accepting (no more callbacks) while keeping the sockets open. */
void berth_listener_pause(BerthListener *l, bool paused);
void berth_listener_free(BerthListener *l);
/* The bound port of the first inet socket (useful with port "0"), or 0. */
int berth_listener_get_port(BerthListener *l);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BerthSocketAddress, berth_socket_address_free)

G_END_DECLS

#endif
