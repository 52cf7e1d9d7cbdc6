/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server's QMP commands (nbd-server-add/remove, block-export-add/del,
 * query-block-exports, query-nbd-clients, nbd-client-disconnect; the
 * server's own start and stop are in nbd-server-qmp.c). They translate QMP into
 * the C API of nbd/server.h and keep the one piece of state QMP needs on top
 * of it: exports by id, including those whose clients are still leaving,
 * so that ids stay reserved and BLOCK_EXPORT_DELETED fires once an export
 * is really gone. Checks run in the order qemu-storage-daemon 7.2 runs
 * them, with its texts, so that the first error reported is the same.
 */
#include "nbd-qmp-int.h"
#include "berth/util/qmp-command.h"
#include "util/id.h"
#include "util/named-table.h"
#include "io/socket-address.h"

#include <string.h>

/* --- exports made over QMP, by id --- */

typedef struct {
    char *id;
    NBDExport *exp;       /* one reference, dropped when the export closes */
    NBDQmpIothreads iothreads;  /* as block-export-add named them */
} QmpExport;

static BerthNamedTable exports_by_id = BERTH_NAMED_TABLE_INIT; /* id -> QmpExport */

static QmpExport *find_export(const char *id)
{
    return berth_named_table_find(&exports_by_id, id);
}

/* close_cb of every QMP export: however it ends (del, eject, server stop). */
static void qmp_export_closed(NBDExport *exp)
{
    QmpExport *rec = nbd_export_get_owner_data(exp);

    if (!rec) {
        return;
    }
    nbd_export_set_owner_data(exp, NULL, NULL);
    berth_named_table_remove(&exports_by_id, rec->id);

    json_object *data = json_object_new_object();
    json_object_object_add(data, "id", json_object_new_string(rec->id));
    qmp_event_emit("BLOCK_EXPORT_DELETED", data);

    g_free(rec->id);
    nbd_qmp_iothreads_clear(&rec->iothreads);
    g_free(rec);
    nbd_export_put(exp);
}

typedef struct {
    const char *id;
    BlockDriverState *bs;      /* borrowed */
    BlockBackend *on_eject;    /* borrowed, may be NULL */
    const NBDQmpIothreads *iothreads; /* may be NULL */
    const char *name;
    const char *description;   /* may be NULL */
    const char *bitmap;        /* nbd-server-add's one bitmap, or NULL */
    json_object *bitmaps;      /* block-export-add's list (QMP array or keyval object) */
    bool writable, writethrough;
    bool allocation_depth;
    NBDMultiConn multi_conn;   /* berth's extension; AUTO unless asked */
} ExportRequest;

/* One bitmap an export asks for, with QEMU's checks in QEMU's order. */
static bool add_bitmap(const ExportRequest *req, BdrvDirtyBitmap *bm, GPtrArray *out,
                       GError **errp)
{
    BdrvDirtyBitmapInfo info;

    if (!bdrv_dirty_bitmap_check(bm, errp)) {
        return false;
    }
    bdrv_dirty_bitmap_get_info(bm, &info);
    if (!req->writable && !bdrv_is_read_only(req->bs) && info.recording) {
        qmp_error_setg(errp,
                       "Enabled bitmap '%s' incompatible with readonly export", info.name);
        return false;
    }
    g_ptr_array_add(out, bm);
    return true;
}

static bool add_bitmap_by_name(const ExportRequest *req, const char *name, GPtrArray *out,
                               GError **errp)
{
    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_find(req->bs, name);
    if (!bm) {
        qmp_error_setg(errp, "Bitmap '%s' is not found", name);
        return false;
    }
    return add_bitmap(req, bm, out, errp);
}

typedef struct {
    char *node, *name;
} BitmapRef;

static const ArgSpec bitmap_ref_members[] = {
    ARG_REQUIRED("node", ARG_STR, BitmapRef, node),
    ARG_REQUIRED("name", ARG_STR, BitmapRef, name),
    ARG_TABLE_END
};
static const ArgSpec *const bitmap_ref_args[] = { bitmap_ref_members, NULL };

/* A {node, name} element: a bitmap of any node. */
static bool add_bitmap_ref(const ExportRequest *req, json_object *el, const char *where,
                           GPtrArray *out, GError **errp)
{
    BitmapRef ref = { 0 };
    g_autoptr(GError) err = NULL;

    /* Both members are strings, which keyval gives as strings too. */
    if (!argspec_decode(bitmap_ref_args, el, false, &ref, &err)) {
        const char *q = strchr(err->message, '\'');
        qmp_error_setg(errp, "%.*s%s.%s",
                       q ? (int) (q - err->message + 1) : 0, err->message, where,
                       q ? q + 1 : err->message);
        return false;
    }
    bool ok = false;
    BlockDriverState *bs = bdrv_find_node(ref.node);
    BdrvDirtyBitmap *bm = bs ? bdrv_dirty_bitmap_find(bs, ref.name) : NULL;
    if (!bs) {
        qmp_error_setg(errp, "Node '%s' not found", ref.node);
    } else if (!bm) {
        qmp_error_setg(errp, "Dirty bitmap '%s' not found",
                       ref.name);
    } else {
        ok = add_bitmap(req, bm, out, errp);
    }
    argspec_clear(bitmap_ref_args, &ref);
    return ok;
}

/*
 * "bitmaps": names of the exported node's bitmaps or {node, name} objects,
 * as a JSON array from QMP or, from the command line's keyval, an object
 * {"0": ..., "1": ...}.
 */
static bool resolve_bitmaps(const ExportRequest *req, GPtrArray *out, GError **errp)
{
    if (req->bitmap) {
        return add_bitmap_by_name(req, req->bitmap, out, errp);
    }
    if (!req->bitmaps) {
        return true;
    }
    bool is_array = json_object_is_type(req->bitmaps, json_type_array);
    if (!is_array && !json_object_is_type(req->bitmaps, json_type_object)) {
        qmp_error_setg(errp, "Invalid parameter type for 'bitmaps', expected: array");
        return false;
    }
    for (size_t i = 0;; i++) {
        json_object *el = NULL;
        g_autofree char *where = is_array ? g_strdup_printf("bitmaps[%zu]", i)
                                          : g_strdup_printf("bitmaps.%zu", i);
        if (is_array) {
            if (i >= json_object_array_length(req->bitmaps)) {
                break;
            }
            el = json_object_array_get_idx(req->bitmaps, i);
        } else {
            g_autofree char *key = g_strdup_printf("%zu", i);
            if (!json_object_object_get_ex(req->bitmaps, key, &el)) {
                break;
            }
        }
        bool ok;
        if (json_object_is_type(el, json_type_string)) {
            ok = add_bitmap_by_name(req, json_object_get_string(el), out, errp);
        } else if (json_object_is_type(el, json_type_object)) {
            ok = add_bitmap_ref(req, el, where, out, errp);
        } else {
            /* QEMU 7.2 names no member here: its text says 'null'. */
            qmp_error_setg(errp,
                           "Invalid parameter type for 'null', expected: "
                           "BlockDirtyBitmapOrStr");
            ok = false;
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool export_create(const ExportRequest *req, GError **errp)
{
    g_autoptr(GPtrArray) ctxs = g_ptr_array_new();

    if (!berth_id_wellformed(req->id)) {
        qmp_error_setg(errp, "Invalid block export id");
        return false;
    }
    if (find_export(req->id)) {
        qmp_error_setg(errp, "Block export id '%s' is already in use",
                       req->id);
        return false;
    }
    if (req->iothreads && !nbd_qmp_iothreads_resolve(req->iothreads, ctxs, errp)) {
        return false;
    }
    if (req->writable && bdrv_is_read_only(req->bs)) {
        qmp_error_setg(errp, "Cannot export read-only node as writable");
        return false;
    }
    if (!nbd_server_is_running()) {
        qmp_error_setg(errp, "NBD server not running");
        return false;
    }
    if (nbd_export_find(req->name)) {
        qmp_error_setg(errp,
                       "NBD server already has export named '%s'", req->name);
        return false;
    }
    g_autoptr(GPtrArray) bitmaps = g_ptr_array_new();
    if (!resolve_bitmaps(req, bitmaps, errp)) {
        return false;
    }
    if (req->multi_conn == NBD_MULTI_CONN_ON && nbd_server_get_max_connections() == 1) {
        qmp_error_setg(errp,
                       "Cannot advertise multi-conn: the NBD server accepts only one "
                       "connection at a time (max-connections=1)");
        return false;
    }

    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = req->bs;
    cfg.read_only = !req->writable;
    cfg.writethrough = req->writethrough;
    cfg.multi_conn = req->multi_conn;
    cfg.close_cb = qmp_export_closed;
    cfg.on_eject_blk = req->on_eject;
    cfg.id = req->id;
    cfg.description = req->description;
    cfg.name = req->name;
    if (ctxs->len) {
        cfg.ctxs = (GMainContext *const *) ctxs->pdata;
        cfg.n_ctxs = ctxs->len;
        cfg.ctx_release = nbd_qmp_iothreads_unpin;
        cfg.ctx_release_data = g_strdupv(req->iothreads->ids);
    }
    cfg.bitmaps = (BdrvDirtyBitmap *const *) bitmaps->pdata;
    cfg.n_bitmaps = bitmaps->len;
    cfg.allocation_depth = req->allocation_depth;
    g_autoptr(GError) local_err = NULL;
    NBDExport *exp = nbd_export_create(&cfg, &local_err);
    if (!exp) {
        g_strfreev(cfg.ctx_release_data);
        qmp_error_setg(errp, "%s", local_err->message);
        return false;
    }
    if (ctxs->len) {
        nbd_qmp_iothreads_pin(req->iothreads);
    }

    QmpExport *rec = g_new0(QmpExport, 1);
    rec->id = g_strdup(req->id);
    rec->exp = exp;
    if (req->iothreads) {
        rec->iothreads.ids = g_strdupv(req->iothreads->ids);
        rec->iothreads.is_list = req->iothreads->is_list;
    }
    nbd_export_set_owner_data(exp, rec, NULL);
    berth_named_table_add(&exports_by_id, rec->id, rec);
    return true;
}

static const char *const remove_modes[] = { "safe", "hard", NULL };
enum { REMOVE_SAFE, REMOVE_HARD };

static gboolean close_export_later(gpointer opaque)
{
    NBDExport *exp = opaque;

    nbd_export_close(exp); /* nothing left to do if the last client has gone */
    nbd_export_put(exp);
    return G_SOURCE_REMOVE;
}

static bool export_delete(const char *id, int mode, GError **errp)
{
    QmpExport *rec = find_export(id);

    if (!rec) {
        qmp_error_setg(errp, "Export '%s' is not found", id);
        return false;
    }
    if (nbd_export_is_shutting_down(rec->exp)) {
        qmp_error_setg(errp, "Export '%s' is already shutting down",
                       id);
        return false;
    }
    /*
     * "safe" (berth's contract, and QEMU before 5.2): no new clients from
     * now on, and the export goes - with BLOCK_EXPORT_DELETED - when its
     * last client leaves. QEMU 7.2 refuses instead ("still in use"), which
     * leaves a script no way to wait for a clean drain.
     */
    if (mode == REMOVE_SAFE && nbd_export_client_count(rec->exp) > 0) {
        nbd_export_remove_when_idle(rec->exp, NULL);
        return true;
    }
    if (nbd_export_client_count(rec->exp) > 0) {
        /*
         * As in QEMU, clients are dropped after the reply, so the reply
         * comes before BLOCK_EXPORT_DELETED and query-block-exports shows
         * the export as shutting down meanwhile.
         */
        nbd_export_remove_when_idle(rec->exp, NULL);
        g_idle_add(close_export_later, nbd_export_get(rec->exp));
    } else {
        nbd_export_close(rec->exp);
    }
    return true;
}

void nbd_qmp_close_all_exports(void)
{
    QmpExport *rec;

    /* Oldest first, as QEMU reports them. Each close unlinks its record. */
    while ((rec = berth_named_table_nth(&exports_by_id, 0))) {
        nbd_export_close(rec->exp);
    }
}

/* --- nbd-server-add / nbd-server-remove (QEMU's older interface) --- */

typedef struct {
    char *device, *name, *description, *bitmap;
    bool has_name, has_description, has_bitmap;
    bool writable, has_writable;
} ServerAddArgs;

static const ArgSpec server_add_members[] = {
    ARG_REQUIRED("device", ARG_STR, ServerAddArgs, device),
    ARG_OPTIONAL("name", ARG_STR, ServerAddArgs, name, has_name),
    ARG_OPTIONAL("description", ARG_STR, ServerAddArgs, description, has_description),
    ARG_OPTIONAL("writable", ARG_BOOL, ServerAddArgs, writable, has_writable),
    ARG_OPTIONAL("bitmap", ARG_STR, ServerAddArgs, bitmap, has_bitmap),
    ARG_TABLE_END
};
static const ArgSpec *const server_add_args[] = { server_add_members, NULL };

static bool qmp_nbd_server_add(void *opaque, json_object **ret, GError **errp)
{
    ServerAddArgs *args = opaque;

    if (!nbd_server_is_running()) {
        qmp_error_setg(errp, "NBD server not running");
        return false;
    }

    /* A drive's medium is exported and the export closes on eject;
     * otherwise the device names a node. */
    BlockBackend *blk = blk_find(args->device);
    BlockDriverState *bs;
    if (blk) {
        bs = blk_get_medium(blk);
        if (!bs) {
            qmp_error_setg(errp, "Device '%s' has no medium",
                           args->device);
            return false;
        }
    } else {
        bs = bdrv_find_node(args->device);
        if (!bs) {
            qmp_error_setg(errp,
                           "Cannot find device='%s' nor node-name='%s'", args->device,
                           args->device);
            return false;
        }
    }

    const char *name = args->has_name ? args->name : args->device;
    ExportRequest req = {
        .id = name,
        .bs = bs,
        .on_eject = blk,
        .name = name,
        .description = args->has_description ? args->description : NULL,
        .bitmap = args->has_bitmap ? args->bitmap : NULL,
        /* As QEMU: a read-only node quietly gives a read-only export. */
        .writable = args->has_writable && args->writable && !bdrv_is_read_only(bs),
    };
    return export_create(&req, errp);
}

/* nbd-server-remove names the export by "name", block-export-del by "id";
 * both decode into this and share one handler. */
typedef struct {
    char *id;
    int mode;
    bool has_mode;
} ExportRemoveArgs;

static const ArgSpec server_remove_members[] = {
    ARG_REQUIRED("name", ARG_STR, ExportRemoveArgs, id),
    ARG_ENUM_OPTIONAL("mode", remove_modes, ExportRemoveArgs, mode, has_mode),
    ARG_TABLE_END
};
static const ArgSpec *const server_remove_args[] = { server_remove_members, NULL };

static bool qmp_export_remove(void *opaque, json_object **ret, GError **errp)
{
    ExportRemoveArgs *args = opaque;

    return export_delete(args->id, args->has_mode ? args->mode : REMOVE_SAFE, errp);
}

/* --- block-export-add / block-export-del / query-block-exports --- */

static const char *const export_types[] = { "nbd", NULL };
/* Indexed by NBDMultiConn. */
static const char *const multi_conn_modes[] = { "auto", "on", "off", NULL };

typedef struct {
    int type;
    char *id, *node_name, *name, *description;
    json_object *iothread;
    bool has_iothread, has_name, has_description;
    bool fixed_iothread, has_fixed_iothread;
    bool writable, has_writable, writethrough, has_writethrough;
    bool allocation_depth, has_allocation_depth;
    int multi_conn;
    bool has_multi_conn;
    json_object *bitmaps;
    bool has_bitmaps;
} ExportAddArgs;

static const ArgSpec export_add_members[] = {
    { .name = "type", .type = ARG_ENUM, .offset = offsetof(ExportAddArgs, type),
      .present_offset = ARG_NO_PRESENCE, .enum_values = export_types },
    ARG_REQUIRED("id", ARG_STR, ExportAddArgs, id),
    /* QEMU: keep the node from being moved to another thread while the
     * export is active. berth never moves a node or an export between
     * threads (a request completes on the thread that submitted it), so
     * both values hold as stated and need no action - except that a list
     * of iothreads is no one thread to fix the node to, as in QEMU. */
    ARG_OPTIONAL("fixed-iothread", ARG_BOOL, ExportAddArgs, fixed_iothread,
                 has_fixed_iothread),
    /* one id, or a list (nbd-qmp-iothreads.c) */
    ARG_OPTIONAL("iothread", ARG_ANY, ExportAddArgs, iothread, has_iothread),
    ARG_REQUIRED("node-name", ARG_STR, ExportAddArgs, node_name),
    ARG_OPTIONAL("writable", ARG_BOOL, ExportAddArgs, writable, has_writable),
    ARG_OPTIONAL("writethrough", ARG_BOOL, ExportAddArgs, writethrough, has_writethrough),
    ARG_OPTIONAL("name", ARG_STR, ExportAddArgs, name, has_name),
    ARG_OPTIONAL("description", ARG_STR, ExportAddArgs, description, has_description),
    ARG_OPTIONAL("bitmaps", ARG_ANY, ExportAddArgs, bitmaps, has_bitmaps),
    ARG_OPTIONAL("allocation-depth", ARG_BOOL, ExportAddArgs, allocation_depth,
                 has_allocation_depth),
    /* berth's extension: the name and values QEMU's multi-conn proposal gave it */
    ARG_ENUM_OPTIONAL("multi-conn", multi_conn_modes, ExportAddArgs, multi_conn,
                      has_multi_conn),
    ARG_TABLE_END
};
static const ArgSpec *const export_add_args[] = { export_add_members, NULL };

static bool qmp_block_export_add(void *opaque, json_object **ret, GError **errp)
{
    ExportAddArgs *args = opaque;
    if (!berth_id_wellformed(args->id)) {
        qmp_error_setg(errp, "Invalid block export id");
        return false;
    }
    if (find_export(args->id)) {
        qmp_error_setg(errp, "Block export id '%s' is already in use",
                       args->id);
        return false;
    }
    BlockDriverState *bs = bdrv_find_node(args->node_name);
    if (!bs) {
        qmp_error_setg(errp,
                       "Cannot find device='' nor node-name='%s'", args->node_name);
        return false;
    }
    g_auto(NBDQmpIothreads) iothreads = { 0 };
    if (!nbd_qmp_iothreads_parse(args->has_iothread ? args->iothread : NULL, &iothreads,
                                 errp)) {
        return false;
    }
    if (iothreads.is_list && args->has_fixed_iothread && args->fixed_iothread) {
        qmp_error_setg(errp, "fixed-iothread cannot be used with a list of iothreads: "
                       "the export's connections run on all of them");
        return false;
    }

    ExportRequest req = {
        .id = args->id,
        .bs = bs,
        .iothreads = iothreads.ids ? &iothreads : NULL,
        .name = args->has_name ? args->name : args->node_name,
        .description = args->has_description ? args->description : NULL,
        .bitmaps = args->has_bitmaps ? args->bitmaps : NULL,
        .writable = args->has_writable && args->writable,
        .writethrough = args->has_writethrough && args->writethrough,
        .allocation_depth = args->has_allocation_depth && args->allocation_depth,
        .multi_conn = args->has_multi_conn ? (NBDMultiConn) args->multi_conn
                                           : NBD_MULTI_CONN_AUTO,
    };
    return export_create(&req, errp);
}

static const ArgSpec export_del_members[] = {
    ARG_REQUIRED("id", ARG_STR, ExportRemoveArgs, id),
    ARG_ENUM_OPTIONAL("mode", remove_modes, ExportRemoveArgs, mode, has_mode),
    ARG_TABLE_END
};
static const ArgSpec *const export_del_args[] = { export_del_members, NULL };

static json_object *stats_to_json(const NBDStats *st);

static bool qmp_query_block_exports(void *opaque, json_object **ret, GError **errp)
{
    json_object *list = json_object_new_array();

    /* Newest first, as QEMU lists them. */
    for (guint i = berth_named_table_size(&exports_by_id); i-- > 0;) {
        QmpExport *rec = berth_named_table_nth(&exports_by_id, i);
        json_object *info = json_object_new_object();

        json_object_object_add(info, "type", json_object_new_string("nbd"));
        json_object_object_add(info, "id", json_object_new_string(rec->id));
        json_object_object_add(info, "node-name", json_object_new_string(
                                   bdrv_get_node_name(nbd_export_get_blockdev(rec->exp))));
        json_object_object_add(info, "shutting-down",
                               json_object_new_boolean(nbd_export_is_shutting_down(rec->exp)));
        /* berth's own members: where the export's traffic stands */
        NBDStats st;
        nbd_export_get_stats(rec->exp, &st);
        json_object_object_add(info, "name", json_object_new_string(
                                   nbd_export_get_name(rec->exp) ? nbd_export_get_name(rec->exp)
                                                                 : ""));
        json_object *iothread = nbd_qmp_iothreads_to_json(&rec->iothreads);
        if (iothread) {
            json_object_object_add(info, "iothread", iothread);
        }
        json_object_object_add(info, "writethrough",
                               json_object_new_boolean(nbd_export_is_writethrough(rec->exp)));
        json_object_object_add(info, "clients",
                               json_object_new_int(nbd_export_client_count(rec->exp)));
        json_object_object_add(info, "stats", stats_to_json(&st));
        json_object_array_add(list, info);
    }
    *ret = list;
    return true;
}

/* --- clients (berth's own) --- */

static json_object *stats_to_json(const NBDStats *st)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "reads", json_object_new_uint64(st->reads));
    json_object_object_add(o, "writes", json_object_new_uint64(st->writes));
    json_object_object_add(o, "flushes", json_object_new_uint64(st->flushes));
    json_object_object_add(o, "trims", json_object_new_uint64(st->trims));
    json_object_object_add(o, "zeroes", json_object_new_uint64(st->zeroes));
    json_object_object_add(o, "caches", json_object_new_uint64(st->caches));
    json_object_object_add(o, "block-status", json_object_new_uint64(st->block_status));
    json_object_object_add(o, "bytes-read", json_object_new_uint64(st->bytes_read));
    json_object_object_add(o, "bytes-written", json_object_new_uint64(st->bytes_written));
    json_object_object_add(o, "errors", json_object_new_uint64(st->errors));
    return o;
}

static void describe_client(NBDConn *client, gpointer opaque)
{
    json_object *o = json_object_new_object();
    NBDConnInfo info;

    nbd_conn_get_info(client, &info);
    json_object_object_add(o, "id", json_object_new_uint64(info.id));
    if (info.export_name) {
        json_object_object_add(o, "export", json_object_new_string(info.export_name));
    }
    json_object_object_add(o, "peer", json_object_new_string(info.peer ? info.peer : ""));
    json_object_object_add(o, "connected-since",
                           json_object_new_int64(info.connected_since / G_USEC_PER_SEC));
    json_object_object_add(o, "in-flight", json_object_new_int64(info.in_flight));
    /* berth's: the I/O thread that carries its data path, if any */
    NBDExport *exp = info.export_name ? nbd_export_find(info.export_name) : NULL;
    QmpExport *rec = exp ? nbd_export_get_owner_data(exp) : NULL;
    const char *iothread = rec ? nbd_qmp_iothreads_find(&rec->iothreads,
                                                         nbd_conn_get_context(client))
                               : NULL;
    if (iothread) {
        json_object_object_add(o, "iothread", json_object_new_string(iothread));
    }
    if (info.tls_identity) {
        json_object_object_add(o, "tls-identity", json_object_new_string(info.tls_identity));
    }
    if (info.has_peer_cred) {
        json_object_object_add(o, "peer-pid", json_object_new_int64(info.peer_pid));
        json_object_object_add(o, "peer-uid", json_object_new_int64(info.peer_uid));
    }
    json_object_object_add(o, "stats", stats_to_json(&info.stats));
    json_object_array_add(opaque, o);
}

static bool qmp_query_nbd_clients(void *opaque, json_object **ret, GError **errp)
{
    json_object *list = json_object_new_array();

    nbd_server_foreach_client(describe_client, list);
    *ret = list;
    return true;
}

typedef struct {
    uint64_t id;
} ClientDisconnectArgs;

static const ArgSpec client_disconnect_members[] = {
    ARG_REQUIRED("id", ARG_UINT, ClientDisconnectArgs, id),
    ARG_TABLE_END
};
static const ArgSpec *const client_disconnect_args[] = { client_disconnect_members, NULL };

static bool qmp_nbd_client_disconnect(void *opaque, json_object **ret, GError **errp)
{
    ClientDisconnectArgs *args = opaque;
    NBDConn *client = nbd_server_find_client(args->id);

    if (!client) {
        qmp_error_setg(errp, "NBD client %" G_GUINT64_FORMAT
                       " not found", args->id);
        return false;
    }
    nbd_conn_close(client);
    return true;
}

static const ArgSpec export_deleted_members[] = {
    { .name = "id", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};
static const ArgSpec *const export_deleted_data[] = { export_deleted_members, NULL };

const QmpEventDef nbd_qmp_events[] = {
    { .name = "BLOCK_EXPORT_DELETED", .data = export_deleted_data },
    QMP_EVENT_END
};

const QmpCommandDef nbd_qmp_commands[] = {
    { .name = "nbd-server-start", .handler = qmp_nbd_server_start, .flags = QMP_CMD_RAW_ARGS,
      .raw_schema = &nbd_qmp_server_start_schema },
    { .name = "nbd-server-stop", .handler = qmp_nbd_server_stop },
    {
        .name = "nbd-server-add", .handler = qmp_nbd_server_add,
        .args = server_add_args, .args_size = sizeof(ServerAddArgs),
    },
    {
        .name = "nbd-server-remove", .handler = qmp_export_remove,
        .args = server_remove_args, .args_size = sizeof(ExportRemoveArgs),
    },
    {
        .name = "block-export-add", .handler = qmp_block_export_add,
        .args = export_add_args, .args_size = sizeof(ExportAddArgs),
    },
    {
        .name = "block-export-del", .handler = qmp_export_remove,
        .args = export_del_args, .args_size = sizeof(ExportRemoveArgs),
    },
    { .name = "query-block-exports", .handler = qmp_query_block_exports },
    { .name = "query-nbd-clients", .handler = qmp_query_nbd_clients },
    {
        .name = "nbd-client-disconnect", .handler = qmp_nbd_client_disconnect,
        .args = client_disconnect_args, .args_size = sizeof(ClientDisconnectArgs),
    },
    QMP_COMMAND_END
};
