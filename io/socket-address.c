/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SocketAddress's members, declared once (see socket-address.h). Each
 * type's members are listed in QEMU's order, because argspec reports the
 * first bad member in table order and so does QEMU's visitor. Every table
 * here has offsets into BerthSocketAddressArgs; the legacy layout nests the
 * same members under "data" at offset 0, that is into the same struct.
 */
#include "io/socket-address.h"

G_STATIC_ASSERT(BERTH_ADDR_UNIX == 0 && BERTH_ADDR_INET == 1 && BERTH_ADDR_FD == 2);

const char *const berth_socket_address_types[] = { "unix", "inet", "fd", NULL };

#define S BerthSocketAddressArgs

#define TYPE_MEMBER \
    { .name = "type", .type = ARG_ENUM, .offset = offsetof(S, type), \
      .present_offset = ARG_NO_PRESENCE, .enum_values = berth_socket_address_types }

/* UnixSocketAddress */
#define UNIX_MEMBERS \
    ARG_REQUIRED("path", ARG_STR, S, un.path), \
    ARG_OPTIONAL("abstract", ARG_BOOL, S, un.abstract, un.has_abstract), \
    ARG_OPTIONAL("tight", ARG_BOOL, S, un.tight, un.has_tight)

/* InetSocketAddress */
#define INET_MEMBERS \
    ARG_REQUIRED("host", ARG_STR, S, inet.host), \
    ARG_REQUIRED("port", ARG_STR, S, inet.port), \
    ARG_OPTIONAL("numeric", ARG_BOOL, S, inet.numeric, inet.has_numeric), \
    ARG_OPTIONAL("to", ARG_STR, S, inet.to, inet.has_to), \
    ARG_OPTIONAL("ipv4", ARG_BOOL, S, inet.ipv4, inet.has_ipv4), \
    ARG_OPTIONAL("ipv6", ARG_BOOL, S, inet.ipv6, inet.has_ipv6), \
    ARG_OPTIONAL("keep-alive", ARG_BOOL, S, inet.keep_alive, inet.has_keep_alive)

/* String: an fd number inherited from the parent */
#define FD_MEMBERS \
    ARG_REQUIRED("str", ARG_STR, S, fd.str)

static const ArgSpec unix_data[] = { UNIX_MEMBERS, ARG_TABLE_END };
static const ArgSpec inet_data[] = { INET_MEMBERS, ARG_TABLE_END };
static const ArgSpec fd_data[] = { FD_MEMBERS, ARG_TABLE_END };

const ArgSpec berth_socket_address_flat_unix[] = { TYPE_MEMBER, UNIX_MEMBERS, ARG_TABLE_END };
const ArgSpec berth_socket_address_flat_inet[] = { TYPE_MEMBER, INET_MEMBERS, ARG_TABLE_END };
const ArgSpec berth_socket_address_flat_fd[] = { TYPE_MEMBER, FD_MEMBERS, ARG_TABLE_END };

const ArgSpec berth_socket_address_legacy_unix[] = {
    TYPE_MEMBER, ARG_NESTED("data", unix_data, false), ARG_TABLE_END
};
const ArgSpec berth_socket_address_legacy_inet[] = {
    TYPE_MEMBER, ARG_NESTED("data", inet_data, false), ARG_TABLE_END
};
const ArgSpec berth_socket_address_legacy_fd[] = {
    TYPE_MEMBER, ARG_NESTED("data", fd_data, false), ARG_TABLE_END
};

#undef S

const ArgSpec *berth_socket_address_table(BerthAddrType type, bool legacy)
{
    switch (type) {
    case BERTH_ADDR_UNIX:
        return legacy ? berth_socket_address_legacy_unix : berth_socket_address_flat_unix;
    case BERTH_ADDR_INET:
        return legacy ? berth_socket_address_legacy_inet : berth_socket_address_flat_inet;
    case BERTH_ADDR_FD:
        return legacy ? berth_socket_address_legacy_fd : berth_socket_address_flat_fd;
    }
    g_return_val_if_reached(NULL);
}

int berth_socket_address_args_type(json_object *args, const char *path, GError **errp)
{
    return argspec_discriminator(args, path, berth_socket_address_types, errp);
}

BerthSocketAddress berth_socket_address_args_view(const BerthSocketAddressArgs *a)
{
    BerthSocketAddress addr = { .type = (BerthAddrType) a->type };

    switch (addr.type) {
    case BERTH_ADDR_UNIX:
        addr.path = a->un.path;
        break;
    case BERTH_ADDR_INET:
        addr.host = a->inet.host;
        addr.port = a->inet.port;
        break;
    case BERTH_ADDR_FD:
        addr.fd = a->fd.str;
        break;
    }
    return addr;
}

const char *berth_socket_address_args_unsupported(const BerthSocketAddressArgs *a)
{
    return a->inet.has_to ? "to"
         : a->inet.has_ipv4 ? "ipv4"
         : a->inet.has_ipv6 ? "ipv6"
         : a->inet.has_numeric && a->inet.numeric ? "numeric"
         : a->inet.has_keep_alive && a->inet.keep_alive ? "keep-alive" : NULL;
}
