/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Persistent dirty bitmaps of qcow2 nodes (qcow2-bitmaps-node.h): between
 * the node's BdrvDirtyBitmaps and the core's bitmaps extension. The image
 * I/O of each step runs on a thread started for it and joined at once,
 * because synchronous child requests may not wait on the main thread.
 */
#include "block/qcow2-bitmaps-node.h"
#include "block/qcow2-bitmaps.h"
#include "berth/block/dirty-bitmap.h"

#include <string.h>

static void run_off_main(GThreadFunc fn, gpointer data)
{
    g_thread_join(g_thread_new("qcow2-bitmaps", fn, data));
}

/* --- open -------------------------------------------------------------------- */

typedef struct {
    Qcow2 *q;
    GArray *list;               /* Qcow2BitmapInfo */
    BerthBitmap **bits;         /* per entry; NULL for stale ones */
    GError *err;
} LoadJob;

static gpointer load_thread(gpointer data)
{
    LoadJob *job = data;

    job->list = qcow2_bitmaps_list(job->q);
    job->bits = g_new0(BerthBitmap *, MAX(job->list->len, 1));
    for (guint i = 0; i < job->list->len && !job->err; i++) {
        if (!g_array_index(job->list, Qcow2BitmapInfo, i).stale) {
            job->bits[i] = qcow2_bitmap_load(job->q, i, &job->err);
        }
    }
    return NULL;
}

bool qcow2_node_load_bitmaps(BlockDriverState *bs, Qcow2 *q, GError **errp)
{
    LoadJob job = { .q = q };
    g_autoptr(GPtrArray) created = g_ptr_array_new();
    bool ok = true;

    run_off_main(load_thread, &job);
    if (job.err) {
        g_propagate_error(errp, job.err);
        ok = false;
    }
    for (guint i = 0; ok && i < job.list->len; i++) {
        const Qcow2BitmapInfo *info = &g_array_index(job.list, Qcow2BitmapInfo, i);
        BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_create(bs, info->name, info->granularity,
                                                       !info->enabled, errp);
        if (!bm) {
            g_prefix_error(errp, "qcow2: loading the image's bitmap '%s': ", info->name);
            ok = false;
            break;
        }
        g_ptr_array_add(created, bm);
        if (job.bits[i]) {
            bdrv_dirty_bitmap_restore(bm, g_steal_pointer(&job.bits[i]));
        }
        bdrv_dirty_bitmap_set_persistent(bm, true);
        if (info->stale) {
            /* Its bits were not stored after the last writes: unknown. */
            bdrv_dirty_bitmap_set_inconsistent(bm);
        }
        if (!qcow2_is_writable(q)) {
            bdrv_dirty_bitmap_set_readonly(bm, true);
        }
    }
    if (!ok) {
        for (guint i = 0; i < created->len; i++) {
            bdrv_dirty_bitmap_set_readonly(created->pdata[i], false);
            bdrv_dirty_bitmap_remove(created->pdata[i], NULL);
        }
    }
    for (guint i = 0; i < job.list->len; i++) {
        berth_bitmap_free(job.bits[i]);
    }
    g_free(job.bits);
    g_array_free(job.list, TRUE);
    return ok;
}

/* --- close ------------------------------------------------------------------- */

typedef struct {
    Qcow2 *q;
    GArray *store;              /* Qcow2BitmapStore; bits owned here */
    const char *node;
} CloseJob;

static void collect(BdrvDirtyBitmap *bm, gpointer opaque)
{
    CloseJob *job = opaque;
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_get_info(bm, &info);
    if (!info.persistent || info.inconsistent) {
        return;                 /* an inconsistent one stays in use in the image */
    }
    Qcow2BitmapStore v = {
        .name = info.name, .granularity = info.granularity, .enabled = info.recording,
        .bits = bdrv_dirty_bitmap_snapshot(bm),
    };
    /* Newest first, as the node lists them: new entries join the image's
     * directory in that order, after the ones it has, as QEMU adds them. */
    g_array_append_val(job->store, v);
}

static gpointer close_thread(gpointer data)
{
    CloseJob *job = data;
    g_autoptr(GError) err = NULL;

    if (job->store->len &&
        qcow2_bitmaps_store(job->q, (Qcow2BitmapStore *) (void *) job->store->data,
                            job->store->len, &err) < 0) {
        g_warning("Lost persistent bitmaps during inactivation of node '%s': %s",
                  job->node, err->message);
    }
    qcow2_close(job->q);
    return NULL;
}

void qcow2_node_close(BlockDriverState *bs, Qcow2 *q)
{
    CloseJob job = { .q = q, .node = bs->node_name };

    if (!q) {
        return;
    }
    job.store = g_array_new(FALSE, FALSE, sizeof(Qcow2BitmapStore));
    if (qcow2_is_writable(q)) {
        bdrv_dirty_bitmap_foreach(bs, collect, &job);
    }
    run_off_main(close_thread, &job);
    for (guint i = 0; i < job.store->len; i++) {
        berth_bitmap_free((BerthBitmap *) g_array_index(job.store, Qcow2BitmapStore, i).bits);
    }
    g_array_free(job.store, TRUE);
}

/* --- QMP --------------------------------------------------------------------- */

static void persistent_name(BdrvDirtyBitmap *bm, gpointer opaque)
{
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_get_info(bm, &info);
    if (info.persistent) {
        g_ptr_array_add(opaque, (gpointer) info.name);
    }
}

bool qcow2_node_bitmap_can_store(BlockDriverState *bs, Qcow2 *q, const char *name,
                                 uint32_t granularity, GError **errp)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    g_autoptr(GError) err = NULL;

    if (bdrv_dirty_bitmap_find(bs, name)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Bitmap already exists: %s", name);
        return false;
    }
    bdrv_dirty_bitmap_foreach(bs, persistent_name, names);
    if (!qcow2_is_writable(q)) {
        /* QEMU accepts it and loses the bitmap at close; berth says so now. */
        g_set_error_literal(&err, G_IO_ERROR, G_IO_ERROR_READ_ONLY, "No write access");
    } else {
        qcow2_bitmaps_can_add(q, name, granularity, (const char *const *) names->pdata,
                              names->len, &err);
    }
    if (err) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Can't make bitmap '%s' persistent "
                    "in '%s': %s", name, bs->node_name, err->message);
        return false;
    }
    return true;
}

typedef struct {
    Qcow2 *q;
    const char *name;
    GError *err;
} RemoveJob;

static gpointer remove_thread(gpointer data)
{
    RemoveJob *job = data;

    qcow2_bitmaps_remove(job->q, job->name, &job->err);
    return NULL;
}

bool qcow2_node_bitmap_remove(BlockDriverState *bs, Qcow2 *q, const char *name,
                              GError **errp)
{
    RemoveJob job = { .q = q, .name = name };

    if (!qcow2_is_writable(q)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "Bitmap '%s' is readonly and cannot be modified", name);
        return false;
    }
    run_off_main(remove_thread, &job);
    if (job.err) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC, "Failed to remove bitmap '%s' "
                    "from node '%s': %s", name, bs->node_name, job.err->message);
        g_error_free(job.err);
        return false;
    }
    return true;
}

void qcow2_node_bitmaps_info(Qcow2 *q, json_object *data)
{
    g_autoptr(GArray) list = qcow2_bitmaps_list(q);

    if (list->len == 0) {
        return;
    }
    json_object *arr = json_object_new_array();
    for (guint i = 0; i < list->len; i++) {
        const Qcow2BitmapInfo *info = &g_array_index(list, Qcow2BitmapInfo, i);
        json_object *b = json_object_new_object(), *flags = json_object_new_array();
        if (info->in_use) {
            json_object_array_add(flags, json_object_new_string("in-use"));
        }
        if (info->enabled) {
            json_object_array_add(flags, json_object_new_string("auto"));
        }
        json_object_object_add(b, "flags", flags);
        json_object_object_add(b, "name", json_object_new_string(info->name));
        json_object_object_add(b, "granularity", json_object_new_int64(info->granularity));
        json_object_array_add(arr, b);
    }
    json_object_object_add(data, "bitmaps", arr);
}
