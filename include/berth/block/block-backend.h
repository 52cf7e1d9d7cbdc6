/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth drives (BlockBackend): a named attachment point, like a virtual disk
 * or CD-ROM of the host, that holds at most one node as its medium.
 *
 * Ownership:
 *  - blk_new() registers the drive in a global table by id and returns a
 *    borrowed pointer; the table owns the drive until blk_delete().
 *    Users that keep a drive beyond the current main-loop iteration take a
 *    reference with blk_ref() and drop it with blk_unref().
 *  - A drive holds one reference to its medium node (bdrv_get()) while it is
 *    inserted; blk_remove_medium() drops it.
 *  - Eject notifiers are owned by whoever added them and must be removed with
 *    blk_remove_eject_notifier() before their opaque dies.
 *
 * Threads: main context only.
 */
#ifndef BERTH_BLOCK_BLOCK_BACKEND_H
#define BERTH_BLOCK_BLOCK_BACKEND_H

#include "berth/block/block.h"

G_BEGIN_DECLS

typedef struct BlockBackend BlockBackend;

/* Called when the drive's medium goes away (eject / remove-medium), before
 * the medium's reference is dropped. */
typedef void (*BlkEjectNotify)(BlockBackend *blk, gpointer opaque);

/* Create drive `id` (unique among drives and distinct from node names), with
 * `medium` inserted if not NULL. Returns a borrowed pointer or NULL + errp
 * (QEMU's texts: "Invalid device name", "Device with id '%s' already exists",
 * "Device name '%s' conflicts with an existing node name"). */
BlockBackend *blk_new(const char *id, BlockDriverState *medium, GError **errp);
BlockBackend *blk_find(const char *id); /* borrowed, or NULL */
/* Removes the medium first, if any (eject notifiers fire), then drops the
 * table's reference. "Device '%s' not found" if there is no such drive. */
bool blk_delete(const char *id, GError **errp);
void blk_delete_all(void);
void blk_foreach(void (*fn)(BlockBackend *blk, gpointer opaque), gpointer opaque);

BlockBackend *blk_ref(BlockBackend *blk);
void blk_unref(BlockBackend *blk);

const char *blk_get_id(BlockBackend *blk);
BlockDriverState *blk_get_medium(BlockBackend *blk); /* borrowed, or NULL */
bool blk_is_tray_open(BlockBackend *blk);
bool blk_get_writethrough(BlockBackend *blk);
void blk_set_writethrough(BlockBackend *blk, bool writethrough);

/* Insert a medium into an empty drive (takes its own reference); the tray is
 * left as it is. "There already is a medium in device '%s'" otherwise. */
bool blk_insert_medium(BlockBackend *blk, BlockDriverState *bs, GError **errp);
/* Remove the medium: fires eject notifiers, then drops the reference.
 * Fails if there is none ("Device '%s' has no medium"), also when called
 * from an eject notifier. Opens the tray. */
bool blk_remove_medium(BlockBackend *blk, GError **errp);
void blk_set_tray_open(BlockBackend *blk, bool open);

gulong blk_add_eject_notifier(BlockBackend *blk, BlkEjectNotify fn, gpointer opaque);
void blk_remove_eject_notifier(BlockBackend *blk, gulong id);

G_END_DECLS

#endif
