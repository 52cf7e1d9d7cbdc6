/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The low half of QMP that every module may use: the error domain and its
 * class names, the event hook that the monitor fills in, and the table of
 * user-created objects. It is kept here, below block/ and nbd/, so that
 * those modules can declare commands, emit events and find objects without
 * knowing that a monitor exists.
 */
#include "berth/util/qmp-command.h"
#include "util/named-table.h"

#include <stdarg.h>
#include <string.h>

G_DEFINE_QUARK(berth-qmp-error-quark, qmp_error)

const char *qmp_error_class_name(const GError *err)
{
    if (!err || err->domain != QMP_ERROR) {
        return "GenericError";
    }
    switch ((QmpErrorClass) err->code) {
    case QMP_ERROR_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case QMP_ERROR_DEVICE_NOT_ACTIVE:
        return "DeviceNotActive";
    case QMP_ERROR_DEVICE_NOT_FOUND:
        return "DeviceNotFound";
    case QMP_ERROR_KVM_MISSING_CAP:
        return "KVMMissingCap";
    case QMP_ERROR_GENERIC:
        break;
    }
    return "GenericError";
}

void qmp_error_setg(GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_GENERIC, msg);
}

void qmp_error_set_class(GError **errp, QmpErrorClass cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, QMP_ERROR, cls, msg);
}

/* --- events --- */

static QmpEventEmitter event_emitter;
static gpointer event_emitter_opaque;

void qmp_event_set_emitter(QmpEventEmitter emitter, gpointer opaque)
{
    event_emitter = emitter;
    event_emitter_opaque = opaque;
}

void qmp_event_emit(const char *name, json_object *data)
{
    g_return_if_fail(name != NULL);

    if (event_emitter) {
        if (!data) {
            data = json_object_new_object();
        }
        event_emitter(name, data, event_emitter_opaque);
    }
    json_object_put(data);
}

/* --- objects --- */

struct QmpObject {
    char *id;
    const QmpObjectType *type;
    gpointer data;
    guint pins;
};

/* Types by name; objects by id, in creation order (for shutdown). */
static GHashTable *object_types;
static BerthNamedTable objects = BERTH_NAMED_TABLE_INIT;

void qmp_object_type_register(const QmpObjectType *type)
{
    g_return_if_fail(type && type->name && (type->create || type->create_ex));

    if (!object_types) {
        object_types = g_hash_table_new(g_str_hash, g_str_equal);
    }
    g_hash_table_insert(object_types, (gpointer) type->name, (gpointer) type);
}

const QmpObjectType *qmp_object_type_find(const char *name)
{
    return object_types && name ? g_hash_table_lookup(object_types, name) : NULL;
}

void qmp_object_type_foreach(void (*fn)(const QmpObjectType *type, gpointer opaque),
                             gpointer opaque)
{
    if (!object_types) {
        return;
    }
    g_autoptr(GList) names = g_hash_table_get_keys(object_types);
    names = g_list_sort(names, (GCompareFunc) strcmp);
    for (GList *l = names; l; l = l->next) {
        fn(g_hash_table_lookup(object_types, l->data), opaque);
    }
}

static void qmp_object_destroy(QmpObject *obj)
{
    if (obj->type->destroy && obj->data) {
        obj->type->destroy(obj->data);
    }
    g_free(obj->id);
    g_free(obj);
}

bool qmp_object_add(const char *id, const QmpObjectType *type, gpointer data,
                    GError **errp)
{
    g_return_val_if_fail(id && type, false);

    if (berth_named_table_find(&objects, id)) {
        /* QEMU's text: objects are QOM children of one container. */
        qmp_error_setg(errp, "attempt to add duplicate property '%s' to object (type 'container')",
                       id);
        if (type->destroy && data) {
            type->destroy(data);
        }
        return false;
    }
    QmpObject *obj = g_new0(QmpObject, 1);
    obj->id = g_strdup(id);
    obj->type = type;
    obj->data = data;
    berth_named_table_add(&objects, obj->id, obj);
    return true;
}

QmpObject *qmp_object_find(const char *id, const char *type_name)
{
    QmpObject *obj = berth_named_table_find(&objects, id);

    if (obj && type_name && strcmp(obj->type->name, type_name) != 0) {
        return NULL;
    }
    return obj;
}

const char *qmp_object_get_id(QmpObject *obj)
{
    return obj->id;
}

const QmpObjectType *qmp_object_get_type(QmpObject *obj)
{
    return obj->type;
}

gpointer qmp_object_get_data(QmpObject *obj)
{
    return obj->data;
}

void qmp_object_pin(QmpObject *obj)
{
    obj->pins++;
}

void qmp_object_unpin(QmpObject *obj)
{
    g_return_if_fail(obj->pins > 0);
    obj->pins--;
}

bool qmp_object_del(const char *id, GError **errp)
{
    QmpObject *obj = qmp_object_find(id, NULL);

    if (!obj) {
        qmp_error_setg(errp, "object '%s' not found", id);
        return false;
    }
    if (obj->pins) {
        qmp_error_setg(errp, "object '%s' is in use, can not be deleted",
                       id);
        return false;
    }
    berth_named_table_remove(&objects, obj->id);
    qmp_object_destroy(obj);
    return true;
}

void qmp_object_del_all(void)
{
    QmpObject *obj;

    /* Newest first: a later object may refer to an earlier one. */
    while ((obj = berth_named_table_newest(&objects))) {
        berth_named_table_remove(&objects, obj->id);
        qmp_object_destroy(obj);
    }
}
