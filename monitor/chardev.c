/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Chardevs and monitors: --chardev socket,... makes a listening socket (a
 * unix path, a TCP host and port, or an inherited fd with server=on) and
 * --monitor chardev=ID attaches QMP to it. The listener stays paused until a
 * monitor is attached, so a client never connects to a chardev that nobody
 * answers on. `stdio` and `socket,fd=N` of a connected socket carry one
 * session each (chardev-fd.c), started by --monitor. Option texts follow
 * QEMU's QemuOpts messages for chardevs ("Invalid parameter 'x'", "chardev:
 * no id specified") because that is what its users have seen.
 */
#include "monitor-int.h"
#include "berth/io/net-listener.h"
#include "berth/qapi/qapi.h"
#include "berth/util/argspec.h"
#include "io/socket-address.h"
#include "util/json.h"
#include "util/named-table.h"

#include <gio/gio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *id;
    BerthListener *listener;    /* NULL for stdio and connected fds */
    int conn_fd;                /* socket,fd=N: until --monitor takes it, else -1 */
    ChardevStdio *stdio;
    bool has_monitor;
    bool pretty;
    GList *sessions; /* MonitorSession * */
} Chardev;

static BerthNamedTable chardevs = BERTH_NAMED_TABLE_INIT; /* id -> Chardev */

static Chardev *chardev_find(const char *id)
{
    return berth_named_table_find(&chardevs, id);
}

/* --- --chardev --- */

/*
 * QemuOpts, not QAPI: a flat list without a type, the address members of
 * both kinds mixed with the socket's own. The address lands in the shared
 * BerthSocketAddressArgs (its type is set once path or host is known), so
 * the checks and the conversion are io/socket-address's.
 */
typedef struct {
    char *backend, *id;
    bool has_id, has_path, has_host, has_port, has_fd;
    BerthSocketAddressArgs addr;
    bool server, has_server, wait, has_wait;
    bool nodelay, has_nodelay;
    bool signal, has_signal, mux, has_mux, logappend, has_logappend;
    char *logfile;
    bool has_logfile;
} ChardevArgs;

static const ArgSpec chardev_members[] = {
    ARG_REQUIRED("backend", ARG_STR, ChardevArgs, backend),
    ARG_OPTIONAL("id", ARG_STR, ChardevArgs, id, has_id),
    ARG_OPTIONAL("path", ARG_STR, ChardevArgs, addr.un.path, has_path),
    ARG_OPTIONAL("host", ARG_STR, ChardevArgs, addr.inet.host, has_host),
    ARG_OPTIONAL("port", ARG_STR, ChardevArgs, addr.inet.port, has_port),
    ARG_OPTIONAL("to", ARG_STR, ChardevArgs, addr.inet.to, addr.inet.has_to),
    ARG_OPTIONAL("server", ARG_BOOL, ChardevArgs, server, has_server),
    ARG_OPTIONAL("wait", ARG_BOOL, ChardevArgs, wait, has_wait),
    ARG_OPTIONAL("ipv4", ARG_BOOL, ChardevArgs, addr.inet.ipv4, addr.inet.has_ipv4),
    ARG_OPTIONAL("ipv6", ARG_BOOL, ChardevArgs, addr.inet.ipv6, addr.inet.has_ipv6),
    ARG_OPTIONAL("nodelay", ARG_BOOL, ChardevArgs, nodelay, has_nodelay),
    ARG_OPTIONAL("fd", ARG_STR, ChardevArgs, addr.fd.str, has_fd),
    ARG_OPTIONAL("signal", ARG_BOOL, ChardevArgs, signal, has_signal),
    ARG_OPTIONAL("mux", ARG_BOOL, ChardevArgs, mux, has_mux),
    ARG_OPTIONAL("logfile", ARG_STR, ChardevArgs, logfile, has_logfile),
    ARG_OPTIONAL("logappend", ARG_BOOL, ChardevArgs, logappend, has_logappend),
    ARG_TABLE_END
};
static const ArgSpec *const chardev_args[] = { chardev_members, NULL };

/* QEMU's character backends, so that a valid but unsupported one gets a
 * clearer message than an unknown one. */
static const char *const qemu_chardev_backends[] = {
    "file", "serial", "parallel", "pipe", "socket", "udp", "pty", "null", "mux",
    "msmouse", "wctablet", "braille", "testdev", "stdio", "console", "spicevmc",
    "spiceport", "qemu-vdagent", "vc", "ringbuf", "memory", NULL,
};

static void chardev_session_closed(MonitorSession *s, gpointer opaque)
{
    Chardev *chr = opaque;

    chr->sessions = g_list_remove(chr->sessions, s);
}

static void chardev_accept(int fd, gpointer opaque)
{
    Chardev *chr = opaque;

    if (g_list_length(chr->sessions) >= MONITOR_MAX_SESSIONS_PER_CHARDEV) {
        g_message("chardev '%s': too many QMP sessions, connection refused", chr->id);
        close(fd);
        return;
    }
    MonitorSession *s = monitor_session_new(fd, chr->pretty, chardev_session_closed, chr);
    if (s) {
        chr->sessions = g_list_prepend(chr->sessions, s);
    }
}

/* The members each backend has besides id and the common ones; QEMU
 * ignores the others, berth names them. */
static const char *const common_members[] = {
    "backend", "id", "mux", "logfile", "logappend", NULL,
};
static const char *const stdio_members[] = { "signal", NULL };
static const char *const socket_members[] = {
    "path", "host", "port", "to", "server", "wait", "ipv4", "ipv6", "nodelay", "fd", NULL,
};

static bool chardev_check_members(json_object *opts, GError **errp)
{
    json_object *b = json_object_object_get(opts, "backend");
    const char *backend = json_object_is_type(b, json_type_string)
                          ? json_object_get_string(b) : NULL;
    const char *const *own = !backend ? NULL
                           : strcmp(backend, "stdio") == 0 ? stdio_members
                           : strcmp(backend, "socket") == 0 ? socket_members : NULL;

    json_object_object_foreach(opts, key, val) {
        bool known = false;

        (void) val;
        for (const ArgSpec *m = chardev_members; m->name; m++) {
            known = known || strcmp(m->name, key) == 0;
        }
        if (!known) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Invalid parameter '%s'", key);
            return false;
        }
        if (own && !g_strv_contains(common_members, key) && !g_strv_contains(own, key)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Parameter '%s' does not apply to chardev backend '%s'", key,
                        backend);
            return false;
        }
    }
    return true;
}

static Chardev *chardev_new(const char *id)
{
    Chardev *chr = g_new0(Chardev, 1);

    chr->id = g_strdup(id);
    chr->conn_fd = -1;
    return chr;
}

static void chardev_free(Chardev *chr);

/* What every backend may be given but berth does not implement. */
static bool chardev_check_common(ChardevArgs *a, GError **errp)
{
    const char *unsupported = a->has_mux && a->mux ? "mux=on"
                            : a->has_logfile ? "logfile"
                            : a->has_logappend && a->logappend ? "logappend=on" : NULL;

    if (unsupported) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "chardev '%s': '%s' is not supported", a->id, unsupported);
        return false;
    }
    return true;
}

static bool chardev_create_stdio(ChardevArgs *a, GError **errp)
{
    ChardevStdio *st = chardev_stdio_open(!a->has_signal || a->signal, errp);

    if (!st) {
        return false;
    }
    Chardev *chr = chardev_new(a->id);
    chr->stdio = st;
    berth_named_table_add(&chardevs, chr->id, chr);
    return true;
}

/* socket,fd=N without server=on: one connection, served from --monitor on. */
static bool chardev_create_connected(ChardevArgs *a, GError **errp)
{
    int fd = chardev_connected_fd(a->id, a->addr.fd.str, errp);

    if (fd < 0) {
        return false;
    }
    Chardev *chr = chardev_new(a->id);
    chr->conn_fd = fd;
    berth_named_table_add(&chardevs, chr->id, chr);
    return true;
}

static bool chardev_create(ChardevArgs *a, GError **errp)
{
    if (!a->has_id) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "chardev: no id specified");
        return false;
    }
    bool stdio = strcmp(a->backend, "stdio") == 0;
    if (!stdio && strcmp(a->backend, "socket") != 0) {
        if (g_strv_contains(qemu_chardev_backends, a->backend)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        "chardev '%s': backend '%s' is not supported, only 'socket' "
                        "and 'stdio'", a->id, a->backend);
        } else {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "'%s' is not a valid char driver name", a->backend);
        }
        return false;
    }
    if (chardev_find(a->id)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS, "Duplicate ID '%s' for chardev",
                    a->id);
        return false;
    }
    if (!chardev_check_common(a, errp)) {
        return false;
    }
    if (stdio) {
        return chardev_create_stdio(a, errp);
    }
    if ((int) a->has_path + (int) (a->has_host || a->has_port) + (int) a->has_fd != 1) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "chardev '%s': socket needs exactly one of 'path', 'host' and 'port', "
                    "or 'fd'", a->id);
        return false;
    }
    if (a->has_fd && (!a->has_server || !a->server)) {
        return chardev_create_connected(a, errp);
    }
    if (!a->has_server || !a->server) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "chardev '%s': only server=on sockets (or fd= of a connected socket) "
                    "are supported", a->id);
        return false;
    }
    /* Socket options the monitor's listener does not implement: refused
     * rather than ignored. wait=on would hold start-up until a client
     * connects; berth's monitors never wait. */
    const char *unsupported = berth_socket_address_args_unsupported(&a->addr);
    if (!unsupported) {
        unsupported = a->has_wait && a->wait ? "wait=on"
                    : a->has_nodelay && a->nodelay ? "nodelay=on" : NULL;
    }
    if (unsupported) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "chardev '%s': '%s' is not supported", a->id, unsupported);
        return false;
    }
    if (a->has_host != a->has_port) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "chardev '%s': socket needs both 'host' and 'port'", a->id);
        return false;
    }

    if (a->has_port) {
        char *end;
        guint64 port = g_ascii_strtoull(a->addr.inet.port, &end, 10);
        if (*end == '\0' && port > 65535) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "chardev '%s': port '%s' is out of range", a->id, a->addr.inet.port);
            return false;
        }
    }

    if (a->has_fd && chardev_parse_fd(a->addr.fd.str, errp) < 0) {
        return false;
    }
    a->addr.type = a->has_path ? BERTH_ADDR_UNIX : a->has_fd ? BERTH_ADDR_FD : BERTH_ADDR_INET;
    BerthSocketAddress addr = berth_socket_address_args_view(&a->addr);
    Chardev *chr = chardev_new(a->id);
    chr->listener = berth_listener_new(&addr, g_main_context_get_thread_default(),
                                       chardev_accept, chr, errp);
    if (!chr->listener) {
        chardev_free(chr);
        return false;
    }
    /* Nobody answers until --monitor attaches QMP. */
    berth_listener_pause(chr->listener, true);
    berth_named_table_add(&chardevs, chr->id, chr);
    return true;
}

bool monitor_chardev_add(json_object *opts, bool keyval, GError **errp)
{
    ChardevArgs a = { 0 };

    monitor_init();
    if (!json_object_is_type(opts, json_type_object)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "chardev options must be an object");
        return false;
    }
    if (!chardev_check_members(opts, errp) ||
        !argspec_decode(chardev_args, opts, keyval, &a, errp)) {
        return false;
    }
    bool ok = chardev_create(&a, errp);
    argspec_clear(chardev_args, &a);
    return ok;
}

/*
 * QemuOpts syntax: "backend,key=value,...", ",," for a comma inside a
 * value, and the legacy bare "key" (on) / "noKEY" (off) booleans. A bare
 * "help" or "?" is a help request, which berth refuses.
 */
bool monitor_chardev_add_str(const char *optstr, GError **errp)
{
    static const char *const flags[] = {
        "server", "wait", "ipv4", "ipv6", "nodelay", "signal", "mux", "logappend", NULL,
    };
    g_autoptr(json_object) opts = json_object_new_object();
    const char *p = optstr;
    bool first = true;

    while (*p) {
        g_autoptr(GString) item = g_string_new(NULL);

        /* One comma-separated item, ",," standing for ','. */
        for (; *p; p++) {
            if (*p == ',') {
                if (p[1] != ',') {
                    break;
                }
                p++;
            }
            g_string_append_c(item, *p);
        }
        if (*p == ',') {
            p++;
        }
        const char *eq = strchr(item->str, '=');
        g_autofree char *key = NULL;
        const char *value;
        /* QEMU answers these with lists; taken as the backend's name or a
         * flag they would only produce a misleading error. */
        if (!eq && (strcmp(item->str, "help") == 0 || strcmp(item->str, "?") == 0)) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "Help is not available for this option "
                                "(the chardev backends are 'socket' and 'stdio')");
            return false;
        }
        if (eq) {
            key = g_strndup(item->str, (gsize) (eq - item->str));
            value = eq + 1;
        } else if (first) {
            key = g_strdup("backend");
            value = item->str;
        } else if (g_strv_contains(flags, item->str)) {
            key = g_strdup(item->str);
            value = "on";
        } else if (g_str_has_prefix(item->str, "no") && g_strv_contains(flags, item->str + 2)) {
            key = g_strdup(item->str + 2);
            value = "off";
        } else {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Invalid parameter '%s'", item->str);
            return false;
        }
        first = false;
        if (json_object_object_get_ex(opts, key, NULL)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Parameter '%s' is specified more than once", key);
            return false;
        }
        json_object_object_add(opts, key, json_object_new_string(value));
    }
    return monitor_chardev_add(opts, true, errp);
}

static void chardev_free(Chardev *chr)
{
    /* Closing a session calls back into chr->sessions. */
    while (chr->sessions) {
        monitor_session_close(chr->sessions->data);
    }
    berth_listener_free(chr->listener);
    if (chr->conn_fd >= 0) {
        close(chr->conn_fd);
    }
    chardev_stdio_close(chr->stdio);
    g_free(chr->id);
    g_free(chr);
}

bool monitor_chardev_remove(const char *id, GError **errp)
{
    Chardev *chr = chardev_find(id);

    if (!chr) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Chardev '%s' not found", id);
        return false;
    }
    berth_named_table_remove(&chardevs, chr->id);
    chardev_free(chr);
    return true;
}

void monitor_chardev_remove_all(void)
{
    Chardev *chr;

    while ((chr = berth_named_table_newest(&chardevs))) {
        berth_named_table_remove(&chardevs, chr->id);
        chardev_free(chr);
    }
}

/* --- --monitor --- */

typedef struct {
    char *chardev, *id;
    bool has_id;
    int mode;
    bool has_mode;
    bool pretty, has_pretty;
} MonitorArgs;

static const char *const monitor_modes[] = { "readline", "control", NULL };

static const ArgSpec monitor_members[] = {
    ARG_OPTIONAL("id", ARG_STR, MonitorArgs, id, has_id),
    ARG_ENUM_OPTIONAL("mode", monitor_modes, MonitorArgs, mode, has_mode),
    ARG_OPTIONAL("pretty", ARG_BOOL, MonitorArgs, pretty, has_pretty),
    ARG_REQUIRED("chardev", ARG_STR, MonitorArgs, chardev),
    ARG_TABLE_END
};
static const ArgSpec *const monitor_args[] = { monitor_members, NULL };

/* Accept clients from now, or serve the one connection the chardev has. */
static bool chardev_start(Chardev *chr, GError **errp)
{
    int in_fd = -1, out_fd = -1;

    if (chr->listener) {
        berth_listener_pause(chr->listener, false);
        return true;
    }
    if (chr->stdio) {
        if (!chardev_stdio_fds(chr->stdio, &in_fd, &out_fd, errp)) {
            return false;
        }
    } else {
        in_fd = chr->conn_fd;
        chr->conn_fd = -1;
    }
    MonitorSession *s = monitor_session_new_split(in_fd, out_fd, chr->pretty,
                                                  chardev_session_closed, chr);
    if (s) {
        chr->sessions = g_list_prepend(chr->sessions, s);
    }
    return true;
}

bool monitor_add(json_object *opts, bool keyval, GError **errp)
{
    MonitorArgs a = { 0 };
    bool ok = false;

    monitor_init();
    if (!argspec_decode(monitor_args, opts, keyval, &a, errp)) {
        return false;
    }
    Chardev *chr = chardev_find(a.chardev);
    if (a.has_mode && a.mode == 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Only QMP is supported");
    } else if (!chr) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "chardev \"%s\" not found",
                    a.chardev);
    } else if (chr->has_monitor) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "chardev \"%s\" already has a monitor", a.chardev);
    } else {
        chr->has_monitor = true;
        chr->pretty = a.has_pretty && a.pretty;
        ok = chardev_start(chr, errp);
    }
    argspec_clear(monitor_args, &a);
    return ok;
}

/* --- sessions without a chardev, and shutdown --- */

void monitor_serve_fd(int fd, bool pretty)
{
    monitor_session_new(fd, pretty, NULL, NULL);
}

guint monitor_session_count(void)
{
    return monitor_session_total();
}

static void flush_session(MonitorSession *s, gpointer opaque)
{
    monitor_session_flush(s, *(gint64 *) opaque);
}

static void close_session(MonitorSession *s, gpointer opaque)
{
    monitor_session_close(s);
}

void monitor_cleanup(int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64) MAX(timeout_ms, 0) * 1000;

    monitor_session_foreach(flush_session, &deadline);
    monitor_chardev_remove_all();
    monitor_session_foreach(close_session, NULL);
}
