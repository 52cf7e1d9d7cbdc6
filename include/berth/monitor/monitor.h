/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth's QMP server. A chardev is a listening socket (unix path, or TCP
 * host and port) made from qemu-storage-daemon's --chardev options; a
 * monitor attaches QMP to a chardev (--monitor). Every connection accepted
 * on it becomes an independent QMP session: greeting, capabilities
 * negotiation, requests dispatched through qapi/, replies and events each
 * written as one JSON object plus "\r\n", byte for byte as QEMU writes them.
 * Unlike QEMU's socket chardev, which serves one client at a time, a berth
 * chardev serves up to MONITOR_MAX_SESSIONS_PER_CHARDEV clients at once.
 *
 * Memory per session is bounded: input is read in small pieces and parsed
 * as it arrives (a message over 1 MiB or nested deeper than 1024 levels
 * gets an error and is skipped to its end, unkept; the session goes on);
 * requests are not parsed while queued output is above a low mark, so
 * replies never hold more than that mark plus one reply, and a peer that
 * leaves more than MONITOR_MAX_OUTPUT of events unread behind its last
 * reply is disconnected. A peer that reads is never dropped, however much
 * it pipelines.
 *
 * Ownership: chardevs and sessions are owned by this module, from creation
 * until monitor_chardev_remove() or monitor_cleanup(); callers hold only
 * ids. Options passed in are borrowed.
 *
 * Threads: main context's thread only (the GMainContext that is the
 * thread-default when a chardev is created).
 */
#ifndef BERTH_MONITOR_MONITOR_H
#define BERTH_MONITOR_MONITOR_H

#include <glib.h>
#include <stdbool.h>
#include <json-c/json.h>

G_BEGIN_DECLS

#define MONITOR_MAX_SESSIONS_PER_CHARDEV 64
#define MONITOR_MAX_OUTPUT (16 * 1024 * 1024)

/*
 * Install the QMP event emitter (util/qmp-command.h) and the command table
 * (qapi_init()). Called by the functions below; idempotent.
 */
void monitor_init(void);

/*
 * --chardev: `opts` as keyval_parse(str, "backend", ...) returns it, e.g.
 * {"backend": "socket", "id": "c0", "path": "/run/qmp.sock", "server": "on",
 * "wait": "off"}; keyval=true takes "on"/"off" for booleans, false expects
 * JSON booleans. Only server-mode sockets exist; wait=on is accepted and
 * behaves like wait=off (nothing is held back until a client connects).
 */
bool monitor_chardev_add(json_object *opts, bool keyval, GError **errp);

/*
 * The same from the option string itself, with QEMU's legacy short forms
 * ("server", "nowait": a bare key is on, "noKEY" is off), which the QAPI
 * keyval syntax does not allow but old scripts use.
 */
bool monitor_chardev_add_str(const char *optstr, GError **errp);

/*
 * The process is going to daemonize, so standard input and output will be
 * /dev/null: --chardev stdio is refused from now on, as QEMU does.
 */
void monitor_set_daemonize(bool daemonize);

/* Close a chardev's listener and its sessions. */
bool monitor_chardev_remove(const char *id, GError **errp);

/*
 * --monitor: {"chardev": ID, "mode"?: "control", "pretty"?: bool, "id"?: str}
 * (implied key "chardev"). The chardev starts accepting clients from now.
 */
bool monitor_add(json_object *opts, bool keyval, GError **errp);

/*
 * Serve one QMP session on an already connected socket (the module takes
 * ownership of fd), for hosts with transports of their own and for tests.
 */
void monitor_serve_fd(int fd, bool pretty);

/* Number of open sessions (all chardevs and monitor_serve_fd). */
guint monitor_session_count(void);

/*
 * Shutdown: write what is queued to each session (waiting at most
 * timeout_ms in all), then close every session and chardev; unix socket
 * files that berth created are removed.
 */
void monitor_cleanup(int timeout_ms);

G_END_DECLS

#endif
