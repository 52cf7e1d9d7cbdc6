/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth's command layer: the registry of QMP commands that modules declare
 * (util/qmp-command.h), the dispatcher that turns one request object into
 * one reply object with QEMU's exact texts, and the core commands
 * (qmp_capabilities, query-version, query-commands, quit, object-add,
 * object-del). It knows nothing of sockets: the monitor feeds it parsed
 * requests and writes back what it returns; berthd calls commands directly
 * for its command-line options.
 *
 * Ownership: registered tables are static and must outlive the program.
 * qapi_dispatch() returns a new reference. QmpSession is the caller's.
 *
 * Threads: main context's thread only.
 */
#ifndef BERTH_QAPI_QAPI_H
#define BERTH_QAPI_QAPI_H

#include <glib.h>
#include <stdbool.h>
#include <json-c/json.h>

#include "berth/util/qmp-command.h"

G_BEGIN_DECLS

/*
 * Register the core commands, every module's table and the object types
 * berth knows. Idempotent.
 */
void qapi_init(void);

/*
 * Add a table terminated by QMP_COMMAND_END. A name that is already
 * registered is a programming error: it is reported and skipped.
 */
void qapi_register_commands(const QmpCommandDef *table);

const QmpCommandDef *qapi_find_command(const char *name);
/* In registration order. */
void qapi_foreach_command(void (*fn)(const QmpCommandDef *cmd, gpointer opaque),
                          gpointer opaque);

/* Declare a table of events terminated by QMP_EVENT_END (for
 * query-qmp-schema); a name declared twice is reported and skipped. */
void qapi_register_events(const QmpEventDef *table);
/* In registration order. */
void qapi_foreach_event(void (*fn)(const QmpEventDef *ev, gpointer opaque), gpointer opaque);

/*
 * The reply of query-qmp-schema, as QEMU builds it: a list of SchemaInfo
 * objects (commands, events, and the object, enum, array and builtin types
 * their arguments use; type names other than builtins are numbers). Made
 * from the same ArgSpec tables that decode the commands. New reference.
 */
json_object *qapi_schema_build(void);

/* Per-connection protocol state, owned by the monitor. */
typedef struct QmpSession {
    bool command_mode; /* qmp_capabilities has succeeded */
    bool oob_enabled;  /* ... with "enable": ["oob"] */
} QmpSession;

/*
 * Execute one request (any JSON value as parsed from the wire) and return
 * the reply: {"return": ...} or {"error": {"class", "desc"}}, plus the
 * request's "id" if it had one.
 */
json_object *qapi_dispatch(QmpSession *session, json_object *request);

/* {"error": {"class": ..., "desc": ...}} for err, with `id` (borrowed) if
 * not NULL. For errors found before dispatch, such as JSON syntax. */
json_object *qapi_error_reply(const GError *err, json_object *id);

/*
 * Run `cmd` on `args` (borrowed; NULL means {}). keyval=true reads scalars
 * as the command line's strings (see util/argspec.h). *ret receives the
 * result (may be NULL) if ret is not NULL.
 */
bool qapi_run_command(const QmpCommandDef *cmd, json_object *args, bool keyval,
                      json_object **ret, GError **errp);

/*
 * What `quit` does: the host installs a function that starts an orderly
 * shutdown. It runs inside the command, before the reply is written, so it
 * must only schedule the shutdown (g_main_loop_quit(), an idle source); the
 * monitor flushes queued replies when it is closed. Without a handler, quit
 * fails with "quit is not supported by this host".
 */
void qapi_set_quit_handler(void (*fn)(gpointer opaque), gpointer opaque);

G_END_DECLS

#endif
