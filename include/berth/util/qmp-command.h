/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vocabulary that modules use to take part in QMP without depending on
 * the monitor: a command declaration (QmpCommandDef) that block/, nbd/ and
 * qapi/ export as static tables, QMP's error classes as a GError domain, the
 * hook through which a module emits an event, and the table of user-created
 * objects (object-add) that a module may look up by id. The command registry
 * and dispatcher live in qapi/, the sockets in monitor/; this header only
 * fixes the shapes so that arrows keep pointing down.
 *
 * Ownership:
 *  - Command tables are static and owned by the module that defines them.
 *  - qmp_event_emit() takes ownership of `data`.
 *  - A QmpObject is owned by the object table from qmp_object_add() until
 *    qmp_object_del(); lookups return borrowed pointers.
 *
 * Threads: everything here belongs to the main context's thread (the control
 * plane). qmp_event_emit() from another thread is a programming error.
 */
#ifndef BERTH_UTIL_QMP_COMMAND_H
#define BERTH_UTIL_QMP_COMMAND_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "berth/util/argspec.h"

G_BEGIN_DECLS

/* --- error classes --- */

/*
 * QMP's error classes. A GError in the QMP_ERROR domain carries its class in
 * its code; an error from any other domain is reported as GenericError, so
 * most code never needs this domain at all.
 */
typedef enum {
    QMP_ERROR_GENERIC = 0,         /* "GenericError" */
    QMP_ERROR_COMMAND_NOT_FOUND,   /* "CommandNotFound" */
    QMP_ERROR_DEVICE_NOT_ACTIVE,   /* "DeviceNotActive" */
    QMP_ERROR_DEVICE_NOT_FOUND,    /* "DeviceNotFound" */
    QMP_ERROR_KVM_MISSING_CAP,     /* "KVMMissingCap" (never used by berth) */
} QmpErrorClass;

#define QMP_ERROR (qmp_error_quark())
GQuark qmp_error_quark(void);

/* The wire name of an error's class ("GenericError" for foreign domains). */
const char *qmp_error_class_name(const GError *err);

/*
 * The one rule for QMP errors: code that answers a command reports a
 * GenericError with qmp_error_setg() (printf-style, like g_set_error), and
 * any other class with qmp_error_set_class(). Lower layers keep their own
 * domains (G_IO_ERROR...), which QMP reports as GenericError with the same
 * text, so they never need this domain.
 */
void qmp_error_setg(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void qmp_error_set_class(GError **errp, QmpErrorClass cls, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* --- commands --- */

typedef enum {
    /* May run before qmp_capabilities has completed. */
    QMP_CMD_ALLOW_BEFORE_CAPS = 1 << 0,
    /*
     * The handler decodes its own arguments, for unions such as blockdev-add
     * whose members depend on a discriminator: `args` is a QmpRawArgs.
     */
    QMP_CMD_RAW_ARGS = 1 << 1,
} QmpCommandFlags;

/* What a QMP_CMD_RAW_ARGS handler receives. */
typedef struct QmpRawArgs {
    json_object *args; /* borrowed, never NULL ({} when the request had none) */
    bool keyval;       /* from the command line: scalars are strings (argspec.h) */
} QmpRawArgs;

/*
 * A command handler. `args` points to a zeroed struct of args_size bytes
 * that argspec_decode() has filled from the request (or to a json_object
 * for QMP_CMD_RAW_ARGS); the dispatcher clears it afterwards, so a handler
 * that keeps a decoded string must g_strdup() it.
 * On success a handler may set *ret to a new reference (the dispatcher
 * replies {"return": {}} when it leaves *ret NULL) and returns true; on
 * failure it returns false with errp set.
 */
typedef bool (*QmpCommandFunc)(void *args, json_object **ret, GError **errp);

/*
 * How a QMP_CMD_RAW_ARGS command's arguments look, for query-qmp-schema: a
 * union of `base` (which holds the discriminator member `tag`) and, for
 * each value of the tag, that variant's tables. foreach_variant() calls fn
 * once per value, in the order QEMU lists them.
 */
typedef void (*QmpVariantFunc)(const char *value, const ArgSpec *const *tables, gpointer opaque);
typedef struct QmpArgsUnion {
    const ArgSpec *const *base;
    const char *tag;
    void (*foreach_variant)(QmpVariantFunc fn, gpointer opaque);
} QmpArgsUnion;

typedef struct QmpCommandDef {
    const char *name;             /* wire name, e.g. "blockdev-del"; NULL ends a table */
    const ArgSpec *const *args;   /* NULL-terminated list of tables, or NULL: no arguments */
    size_t args_size;             /* sizeof the struct the tables decode into */
    QmpCommandFunc handler;
    unsigned flags;               /* QmpCommandFlags */
    /* QMP_CMD_RAW_ARGS: the arguments the handler decodes itself, as
     * query-qmp-schema shows them (NULL: shown as `args`). */
    const QmpArgsUnion *raw_schema;
} QmpCommandDef;

/* Terminates a command table. */
#define QMP_COMMAND_END { .name = NULL }

/* --- events --- */

/*
 * An event a module may emit, declared for query-qmp-schema: its name and
 * the members of its "data" (tables as for commands; offsets unused).
 */
typedef struct QmpEventDef {
    const char *name;             /* e.g. "BLOCK_EXPORT_DELETED"; NULL ends a table */
    const ArgSpec *const *data;   /* NULL: no members */
} QmpEventDef;

#define QMP_EVENT_END { .name = NULL }

/*
 * Installed by the monitor. It receives `data` as a borrowed object; the
 * timestamp is the emitter's business.
 */
typedef void (*QmpEventEmitter)(const char *name, json_object *data, gpointer opaque);

/* Install (or, with NULL, remove) the single emitter. */
void qmp_event_set_emitter(QmpEventEmitter emitter, gpointer opaque);

/*
 * Send event `name` with `data` (NULL means {}) to every monitor that has
 * negotiated capabilities. Takes ownership of `data`. Without a monitor it
 * only drops the reference, so library code may emit unconditionally.
 */
void qmp_event_emit(const char *name, json_object *data);

/* --- user-created objects (object-add / --object) --- */

typedef struct QmpObject QmpObject;

/*
 * An object type that object-add can create. `args` describes the members
 * besides qom-type and id. create() (or create_ex()) receives the decoded
 * struct and returns the object's private data (or NULL + errp); destroy()
 * frees it.
 */
typedef struct QmpObjectType {
    const char *name;             /* qom-type, e.g. "iothread" */
    const ArgSpec *const *args;
    size_t args_size;
    gpointer (*create)(const char *id, void *args, GError **errp);
    void (*destroy)(gpointer data);
    /*
     * Optional, called instead of create(): also told whether the members
     * came from the command line (keyval), for a type whose messages name
     * list elements, which QEMU spells 'rules[0]' in QMP and 'rules.0' on
     * the command line.
     */
    gpointer (*create_ex)(const char *id, void *args, bool keyval, GError **errp);
} QmpObjectType;

/*
 * Make `type` known to object-add. The type must outlive the program (a
 * static); registering a name twice replaces the earlier type, which lets a
 * real implementation take over from a placeholder.
 */
void qmp_object_type_register(const QmpObjectType *type);
const QmpObjectType *qmp_object_type_find(const char *name);
/* Calls fn for every registered type, sorted by name. */
void qmp_object_type_foreach(void (*fn)(const QmpObjectType *type, gpointer opaque),
                             gpointer opaque);

/*
 * Enter an object into the table (the caller created `data` with
 * type->create). Fails if the id is taken. On failure `data` is destroyed.
 */
bool qmp_object_add(const char *id, const QmpObjectType *type, gpointer data,
                    GError **errp);

/*
 * Look up by id; `type_name` NULL matches any type. Borrowed or NULL.
 * Well-known data: an "iothread" object's data is the GMainContext (owned
 * by the object) that its thread runs.
 */
QmpObject *qmp_object_find(const char *id, const char *type_name);
const char *qmp_object_get_id(QmpObject *obj);
const QmpObjectType *qmp_object_get_type(QmpObject *obj);
gpointer qmp_object_get_data(QmpObject *obj);

/*
 * Users (an export naming an iothread, a server naming tls-creds) pin an
 * object so that object-del refuses to delete it ("object 'x' is in use").
 */
void qmp_object_pin(QmpObject *obj);
void qmp_object_unpin(QmpObject *obj);

/* Remove and destroy; fails if unknown or pinned. */
bool qmp_object_del(const char *id, GError **errp);
/* Destroy every object regardless of pins (shutdown). */
void qmp_object_del_all(void);

G_END_DECLS

#endif
