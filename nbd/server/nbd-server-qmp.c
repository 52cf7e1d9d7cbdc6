/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbd-server-start, nbd-server-stop and berthd's --nbd-server (QSD's
 * NbdServerOptions): the listening address in QMP's legacy SocketAddress
 * form or the flat one, TLS, and the connection limits, checked in the order
 * and with the texts of qemu-storage-daemon 7.2.
 */
#include "nbd-qmp-int.h"
#include "io/socket-address.h"

#include <string.h>

/* Members of nbd-server-start and --nbd-server, decoded into one struct. */
typedef struct {
    BerthSocketAddressArgs addr;
    char *tls_creds, *tls_authz;
    bool has_tls_creds, has_tls_authz;
    /* QEMU's uint32s, range-checked by hand for its text */
    int64_t max_connections, handshake_max_seconds;
    bool has_max_connections, has_handshake_max_seconds;
} ServerArgs;

/*
 * Without max-connections, qemu-storage-daemon 7.2 (its stable releases
 * since the fix for CVE-2024-7409) serves at most 100 clients at a time,
 * for nbd-server-start and --nbd-server alike; further clients wait,
 * connected but not greeted. 0 asks for no limit.
 */
#define NBD_DEFAULT_MAX_CONNECTIONS 100

static bool check_uint32(const char *name, bool present, int64_t value, GError **errp)
{
    if (present && (value < 0 || value > UINT32_MAX)) {
        qmp_error_setg(errp, "Parameter '%s' expects uint32_t",
                       name);
        return false;
    }
    return true;
}

static bool server_start(const ServerArgs *args, GError **errp)
{
    /* Decoding errors in QEMU, so they come before every other check. */
    if (!check_uint32("handshake-max-seconds", args->has_handshake_max_seconds,
                      args->handshake_max_seconds, errp) ||
        !check_uint32("max-connections", args->has_max_connections, args->max_connections,
                      errp)) {
        return false;
    }
    if (nbd_server_is_running()) {
        qmp_error_setg(errp, "NBD server already running");
        return false;
    }
    if (args->has_tls_creds && !qmp_object_find(args->tls_creds, "tls-creds-x509") &&
        !qmp_object_find(args->tls_creds, "tls-creds-psk")) {
        qmp_error_setg(errp, "No TLS credentials with id '%s'",
                       args->tls_creds);
        return false;
    }
    if (args->has_tls_authz && !args->has_tls_creds) {
        qmp_error_setg(errp, "TLS authorization is incompatible with no TLS credentials");
        return false;
    }
    if (args->addr.un.has_abstract && args->addr.un.abstract) {
        qmp_error_setg(errp, "Abstract unix sockets are not supported");
        return false;
    }
    /* Inet options the listener does not implement: refused, not ignored. */
    const char *unsupported = berth_socket_address_args_unsupported(&args->addr);
    if (unsupported) {
        qmp_error_setg(errp,
                       "Parameter 'addr.%s' is not supported by berth's NBD server", unsupported);
        return false;
    }

    BerthSocketAddress addr = berth_socket_address_args_view(&args->addr);
    NBDServerConfig cfg = {
        .addr = &addr,
        .tls_creds = args->has_tls_creds ? args->tls_creds : NULL,
        .tls_authz = args->has_tls_authz ? args->tls_authz : NULL,
        .max_connections = args->has_max_connections ? (guint) args->max_connections
                                                     : NBD_DEFAULT_MAX_CONNECTIONS,
        /* QEMU's 0 is no limit; absent is the default (10 s). */
        .handshake_max_seconds = !args->has_handshake_max_seconds ? 0
                               : args->handshake_max_seconds == 0
                                   ? NBD_HANDSHAKE_NO_LIMIT
                                   : (guint) args->handshake_max_seconds,
    };
    return nbd_server_start(&cfg, errp);
}

/*
 * The two commands differ only in the layout of addr: nbd-server-start's is
 * SocketAddressLegacy, --nbd-server's (NbdServerOptions) the flat one.
 */
#define SERVER_COMMON_MEMBERS \
    ARG_OPTIONAL("tls-creds", ARG_STR, ServerArgs, tls_creds, has_tls_creds), \
    ARG_OPTIONAL("tls-authz", ARG_STR, ServerArgs, tls_authz, has_tls_authz), \
    ARG_OPTIONAL("max-connections", ARG_INT, ServerArgs, max_connections, \
                 has_max_connections), \
    ARG_OPTIONAL("handshake-max-seconds", ARG_INT, ServerArgs, handshake_max_seconds, \
                 has_handshake_max_seconds)

/* For query-qmp-schema: addr is a SocketAddress, shown as "any". */
static const ArgSpec server_schema_members[] = {
    { .name = "addr", .type = ARG_ANY, .present_offset = ARG_NO_PRESENCE },
    SERVER_COMMON_MEMBERS,
    ARG_TABLE_END
};
static const ArgSpec *const server_schema_tables[] = { server_schema_members, NULL };
const QmpArgsUnion nbd_qmp_server_start_schema = { .base = server_schema_tables };

static bool server_start_with(QmpRawArgs *raw, BerthAddrType type, bool legacy, GError **errp)
{
    const ArgSpec members[] = {
        ARG_NESTED_AT("addr", berth_socket_address_table(type, legacy), ServerArgs, addr),
        SERVER_COMMON_MEMBERS,
        ARG_TABLE_END
    };
    const ArgSpec *const tables[] = { members, NULL };
    ServerArgs args = { 0 };

    if (!argspec_decode(tables, raw->args, raw->keyval, &args, errp)) {
        return false;
    }
    bool ok = server_start(&args, errp);
    argspec_clear(tables, &args);
    return ok;
}

bool qmp_nbd_server_start(void *opaque, json_object **ret, GError **errp)
{
    QmpRawArgs *raw = opaque;
    json_object *addr;

    /* QEMU names the legacy union's tag plain 'type' in its errors. */
    if (!json_object_object_get_ex(raw->args, "addr", &addr)) {
        qmp_error_setg(errp, "Parameter 'addr' is missing");
        return false;
    }
    if (!json_object_is_type(addr, json_type_object)) {
        qmp_error_setg(errp, "Invalid parameter type for 'addr', expected: object");
        return false;
    }
    int type = berth_socket_address_args_type(addr, "type", errp);
    return type >= 0 && server_start_with(raw, (BerthAddrType) type, true, errp);
}

/* berthd --nbd-server: qemu-storage-daemon's NbdServerOptions. */
static bool qmp_server_options(void *opaque, json_object **ret, GError **errp)
{
    QmpRawArgs *raw = opaque;
    int type = berth_socket_address_args_type(raw->args, "addr.type", errp);

    return type >= 0 && server_start_with(raw, (BerthAddrType) type, false, errp);
}

bool qmp_nbd_server_stop(void *opaque, json_object **ret, GError **errp)
{
    if (!nbd_server_is_running()) {
        qmp_error_setg(errp, "NBD server not running");
        return false;
    }
    /* As QEMU: every NBD export goes with the server, not only
     * nbd-server-add's. */
    nbd_qmp_close_all_exports();
    nbd_server_stop();
    return true;
}

const QmpCommandDef nbd_qmp_server_options = {
    .name = "nbd-server-options",
    .handler = qmp_server_options,
    .flags = QMP_CMD_RAW_ARGS,
};
