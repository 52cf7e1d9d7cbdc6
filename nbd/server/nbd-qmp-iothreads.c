/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The iothread member of block-export-add: one iothread object's id, or a
 * list of them (the form QEMU's schema later gave the member for
 * multi-threaded exports), whose threads then share the export's
 * connections: each client that finishes its handshake moves to the next
 * thread of the list in turn (NBDExportConfig.ctxs). Parsing with the
 * schema's error texts, finding the objects, pinning them for as long as
 * the export lives, and showing the member again in queries.
 */
#include "nbd/server/nbd-qmp-int.h"

#include "berth/util/qmp-command.h"

bool nbd_qmp_iothreads_parse(json_object *value, NBDQmpIothreads *out, GError **errp)
{
    *out = (NBDQmpIothreads) { 0 };
    if (!value) {
        return true;
    }
    if (json_object_is_type(value, json_type_string)) {
        out->ids = g_new0(char *, 2);
        out->ids[0] = g_strdup(json_object_get_string(value));
        return true;
    }
    if (!json_object_is_type(value, json_type_array)) {
        qmp_error_setg(errp, "Invalid parameter type for 'iothread', expected: "
                       "a string or an array of strings");
        return false;
    }
    size_t n = json_object_array_length(value);
    if (n == 0) {
        qmp_error_setg(errp, "Parameter 'iothread' must name at least one iothread");
        return false;
    }
    out->ids = g_new0(char *, n + 1);
    out->is_list = true;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(value, i);
        if (!json_object_is_type(e, json_type_string)) {
            qmp_error_setg(errp, "Invalid parameter type for 'iothread[%zu]', expected: "
                           "string", i);
            nbd_qmp_iothreads_clear(out);
            return false;
        }
        out->ids[i] = g_strdup(json_object_get_string(e));
    }
    return true;
}

void nbd_qmp_iothreads_clear(NBDQmpIothreads *t)
{
    g_clear_pointer(&t->ids, g_strfreev);
    t->is_list = false;
}

bool nbd_qmp_iothreads_resolve(const NBDQmpIothreads *t, GPtrArray *ctxs, GError **errp)
{
    for (guint i = 0; t->ids && t->ids[i]; i++) {
        QmpObject *obj = qmp_object_find(t->ids[i], "iothread");
        if (!obj) {
            qmp_error_setg(errp, "iothread \"%s\" not found", t->ids[i]);
            return false;
        }
        g_ptr_array_add(ctxs, qmp_object_get_data(obj));
    }
    return true;
}

void nbd_qmp_iothreads_pin(const NBDQmpIothreads *t)
{
    for (guint i = 0; t->ids && t->ids[i]; i++) {
        qmp_object_pin(qmp_object_find(t->ids[i], "iothread"));
    }
}

/*
 * The iothread objects of an export stay pinned (object-del refuses them)
 * until the export is freed, not merely closed: the requests its clients
 * left in flight finish on those threads. By id, because at shutdown the
 * objects may be gone first (qmp_object_del_all ignores pins). One pin per
 * time an id is named, as nbd_qmp_iothreads_pin() took them.
 */
void nbd_qmp_iothreads_unpin(gpointer ids)
{
    g_auto(GStrv) owned = ids;

    for (guint i = 0; owned && owned[i]; i++) {
        QmpObject *obj = qmp_object_find(owned[i], "iothread");
        if (obj) {
            qmp_object_unpin(obj);
        }
    }
}

json_object *nbd_qmp_iothreads_to_json(const NBDQmpIothreads *t)
{
    if (!t->ids) {
        return NULL;
    }
    if (!t->is_list) {
        return json_object_new_string(t->ids[0]);
    }
    json_object *list = json_object_new_array();
    for (guint i = 0; t->ids[i]; i++) {
        json_object_array_add(list, json_object_new_string(t->ids[i]));
    }
    return list;
}

const char *nbd_qmp_iothreads_find(const NBDQmpIothreads *t, GMainContext *ctx)
{
    for (guint i = 0; ctx && t->ids && t->ids[i]; i++) {
        QmpObject *obj = qmp_object_find(t->ids[i], "iothread");
        if (obj && qmp_object_get_data(obj) == ctx) {
            return t->ids[i];
        }
    }
    return NULL;
}
