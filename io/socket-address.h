/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QEMU's SocketAddress (qapi/sockets.json) as argspec tables, defined once
 * for every command that takes an address: the members of each address type
 * that berth knows (unix, inet, fd; not vsock), decoded into
 * BerthSocketAddressArgs, in the two layouts QEMU's schema has:
 *
 *   flat    {"type": "unix", "path": "/s"}              SocketAddress:
 *           --nbd-server's addr, the nbd block driver's server
 *   legacy  {"type": "unix", "data": {"path": "/s"}}    SocketAddressLegacy:
 *           nbd-server-start's addr
 *
 * A command embeds a BerthSocketAddressArgs in its own struct, finds the
 * type first (berth_socket_address_args_type()) and points an
 * ARG_NESTED_AT member at that type's table; errors then carry the dotted
 * name of where the address sits ('addr.data.path', 'server.port').
 * Accepting a member is not honouring it: callers refuse what their sockets
 * do not implement (berth_socket_address_args_unsupported()).
 *
 * Ownership: as for every argspec struct, strings are owned by the struct
 * and freed by argspec_clear(); the tables are static.
 *
 * Private to berth (not installed). Threads: pure, any thread.
 */
#ifndef BERTH_IO_SOCKET_ADDRESS_H
#define BERTH_IO_SOCKET_ADDRESS_H

#include "berth/io/net-listener.h"
#include "berth/util/argspec.h"

G_BEGIN_DECLS

typedef struct BerthSocketAddressArgs {
    int type;               /* a BerthAddrType, its index in berth_socket_address_types */
    struct {                /* (not "unix": GNU C predefines that) */
        char *path;
        bool abstract, has_abstract;
        bool tight, has_tight;
    } un;
    struct {
        char *host;
        char *port;
        bool numeric, has_numeric;
        char *to;
        bool has_to;
        bool ipv4, has_ipv4;
        bool ipv6, has_ipv6;
        bool keep_alive, has_keep_alive;
    } inet;
    struct {
        char *str;
    } fd;
} BerthSocketAddressArgs;

/* "unix", "inet", "fd", NULL: indexed by BerthAddrType. */
extern const char *const berth_socket_address_types[];

/* Flat tables: "type" and the type's members, in QEMU's order. */
extern const ArgSpec berth_socket_address_flat_unix[];
extern const ArgSpec berth_socket_address_flat_inet[];
extern const ArgSpec berth_socket_address_flat_fd[];
/* Legacy tables: "type" and "data", an object of the type's members. */
extern const ArgSpec berth_socket_address_legacy_unix[];
extern const ArgSpec berth_socket_address_legacy_inet[];
extern const ArgSpec berth_socket_address_legacy_fd[];

/* One of the six tables above, by type and layout. */
const ArgSpec *berth_socket_address_table(BerthAddrType type, bool legacy);

/*
 * The address type at `path` ("addr.type", "server.type", or "type" inside
 * the address itself), with argspec_discriminator()'s errors: -1 + errp for
 * a missing or unknown type ("Parameter 'addr.type' does not accept value
 * 'vsock'").
 */
int berth_socket_address_args_type(json_object *args, const char *path, GError **errp);

/* `a` as a BerthSocketAddress; the strings are borrowed from `a`. */
BerthSocketAddress berth_socket_address_args_view(const BerthSocketAddressArgs *a);

/*
 * The first member given that berth's sockets do not implement, whatever
 * the type: "to", "ipv4", "ipv6" (given at all), "numeric", "keep-alive"
 * (given as on); NULL if none. abstract=on is each caller's to refuse.
 */
const char *berth_socket_address_args_unsupported(const BerthSocketAddressArgs *a);

G_END_DECLS

#endif
