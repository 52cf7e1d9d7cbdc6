/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drives (BlockBackend): named attachment points that hold at most one node
 * as their medium, like the virtual disks and CD-ROM drives of a host. Drive
 * ids share QEMU's namespace rules with node names (neither may shadow the
 * other), and errors use QEMU's texts. The one subtle duty here is ejection:
 * whoever depends on the medium (an NBD export made with on_eject) registers
 * a notifier, and every notifier fires exactly once, while the medium is
 * still attached, even if notifiers add or remove each other meanwhile.
 * Everything runs on the main context's thread, so there are no locks.
 */
#include "berth/block/block-backend.h"
#include "block/block-int.h"
#include "util/id.h"
#include "util/named-table.h"

typedef struct EjectNotifier {
    gulong id;
    BlkEjectNotify fn;
    gpointer opaque;
} EjectNotifier;

struct BlockBackend {
    int refcnt;
    char *id;
    BlockDriverState *medium;   /* a reference, or NULL */
    bool tray_open;
    bool writethrough;
    bool ejecting;              /* notifiers are running */
    GArray *notifiers;          /* EjectNotifier, in order of addition */
    gulong last_notifier_id;
};

/* id -> drive, in creation order; the table's reference */
static BerthNamedTable drive_table = BERTH_NAMED_TABLE_INIT;

static BlockBackend *blk_new_unlisted(const char *id, BlockDriverState *medium)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);

    blk->refcnt = 1;
    blk->id = g_strdup(id);
    blk->medium = medium ? bdrv_get(medium) : NULL;
    blk->notifiers = g_array_new(FALSE, FALSE, sizeof(EjectNotifier));
    return blk;
}

BlockBackend *blk_new(const char *id, BlockDriverState *medium, GError **errp)
{
    BlockBackend *blk;

    if (!berth_id_wellformed(id)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Invalid device name");
        return NULL;
    }
    if (blk_find(id)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Device with id '%s' already exists", id);
        return NULL;
    }
    if (bdrv_find_node(id)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Device name '%s' conflicts with an existing node name", id);
        return NULL;
    }
    blk = blk_new_unlisted(id, medium);
    berth_named_table_add(&drive_table, blk->id, blk);
    return blk;
}

BlockBackend *blk_find(const char *id)
{
    return berth_named_table_find(&drive_table, id);
}

BlockBackend *blk_ref(BlockBackend *blk)
{
    g_return_val_if_fail(blk != NULL, NULL);
    blk->refcnt++;
    return blk;
}

void blk_unref(BlockBackend *blk)
{
    if (!blk || --blk->refcnt > 0) {
        return;
    }
    /* Nobody can be notified any more: the medium just goes. */
    bdrv_put(blk->medium);
    g_array_free(blk->notifiers, TRUE);
    g_free(blk->id);
    g_free(blk);
}

/* Fires every notifier registered when ejection starts, each once. */
static void fire_eject_notifiers(BlockBackend *blk)
{
    guint n = blk->notifiers->len;
    g_autofree gulong *ids = g_new(gulong, n + 1);

    for (guint i = 0; i < n; i++) {
        ids[i] = g_array_index(blk->notifiers, EjectNotifier, i).id;
    }
    blk->ejecting = true;
    for (guint i = 0; i < n; i++) {
        /* A notifier may have removed a later one: look each up again. */
        for (guint j = 0; j < blk->notifiers->len; j++) {
            EjectNotifier en = g_array_index(blk->notifiers, EjectNotifier, j);
            if (en.id == ids[i]) {
                en.fn(blk, en.opaque);
                break;
            }
        }
    }
    blk->ejecting = false;
}

bool blk_remove_medium(BlockBackend *blk, GError **errp)
{
    BlockDriverState *bs;

    g_return_val_if_fail(blk != NULL, false);
    if (!blk->medium || blk->ejecting) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "Device '%s' has no medium", blk->id);
        return false;
    }
    blk_ref(blk);
    fire_eject_notifiers(blk);
    bs = g_steal_pointer(&blk->medium);
    blk->tray_open = true;
    bdrv_put(bs);
    blk_unref(blk);
    return true;
}

bool blk_insert_medium(BlockBackend *blk, BlockDriverState *bs, GError **errp)
{
    g_return_val_if_fail(blk != NULL && bs != NULL, false);
    if (blk->medium || blk->ejecting) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "There already is a medium in device '%s'", blk->id);
        return false;
    }
    blk->medium = bdrv_get(bs);
    return true;
}

bool blk_delete(const char *id, GError **errp)
{
    BlockBackend *blk = blk_find(id);

    if (!blk) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "Device '%s' not found", id ? id : "");
        return false;
    }
    /* Those that depend on the medium learn that it is going away. */
    if (blk->medium && !blk->ejecting) {
        blk_remove_medium(blk, NULL);
    }
    berth_named_table_remove(&drive_table, blk->id);
    blk_unref(blk);
    return true;
}

void blk_delete_all(void)
{
    BlockBackend *blk;

    while ((blk = berth_named_table_newest(&drive_table))) {
        blk_delete(blk->id, NULL);
    }
}

void blk_foreach(void (*fn)(BlockBackend *blk, gpointer opaque), gpointer opaque)
{
    g_autoptr(GPtrArray) snapshot = berth_named_table_snapshot(
        &drive_table, (BerthNamedTableCopyFunc) blk_ref, (GDestroyNotify) blk_unref);

    for (guint i = 0; i < snapshot->len; i++) {
        fn(snapshot->pdata[i], opaque);
    }
}

const char *blk_get_id(BlockBackend *blk)
{
    g_return_val_if_fail(blk != NULL, NULL);
    return blk->id;
}

BlockDriverState *blk_get_medium(BlockBackend *blk)
{
    g_return_val_if_fail(blk != NULL, NULL);
    return blk->medium;
}

bool blk_is_tray_open(BlockBackend *blk)
{
    g_return_val_if_fail(blk != NULL, false);
    return blk->tray_open;
}

void blk_set_tray_open(BlockBackend *blk, bool open)
{
    g_return_if_fail(blk != NULL);
    blk->tray_open = open;
}

bool blk_get_writethrough(BlockBackend *blk)
{
    g_return_val_if_fail(blk != NULL, false);
    return blk->writethrough;
}

void blk_set_writethrough(BlockBackend *blk, bool writethrough)
{
    g_return_if_fail(blk != NULL);
    blk->writethrough = writethrough;
}

gulong blk_add_eject_notifier(BlockBackend *blk, BlkEjectNotify fn, gpointer opaque)
{
    EjectNotifier en;

    g_return_val_if_fail(blk != NULL && fn != NULL, 0);
    en = (EjectNotifier) { .id = ++blk->last_notifier_id, .fn = fn, .opaque = opaque };
    g_array_append_val(blk->notifiers, en);
    return en.id;
}

void blk_remove_eject_notifier(BlockBackend *blk, gulong id)
{
    g_return_if_fail(blk != NULL);
    for (guint i = 0; i < blk->notifiers->len; i++) {
        if (g_array_index(blk->notifiers, EjectNotifier, i).id == id) {
            g_array_remove_index(blk->notifiers, i);
            return;
        }
    }
}
