/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 driver's side of persistent dirty bitmaps: the image's bitmaps
 * become the node's dirty bitmaps at open (persistent; inconsistent when the
 * image was not closed cleanly; read-only on a read-only node), new
 * persistent bitmaps are checked against the format's limits, removing one
 * removes it from the image, and the node's persistent bitmaps are stored
 * when it closes, as QEMU stores them (not on flush). Everything here runs
 * on the main thread; the image I/O runs on a short-lived thread of its own
 * while the main thread waits, as open does.
 */
#ifndef BERTH_BLOCK_QCOW2_BITMAPS_NODE_H
#define BERTH_BLOCK_QCOW2_BITMAPS_NODE_H

#include "block/block-int.h"
#include "block/qcow2-core.h"

/* After the core's open, with bs->size set: false with errp if a bitmap
 * cannot be read (the node then fails to open, as in QEMU). */
bool qcow2_node_load_bitmaps(BlockDriverState *bs, Qcow2 *q, GError **errp);
/* Store the persistent bitmaps (writable images) and close the core. */
void qcow2_node_close(BlockDriverState *bs, Qcow2 *q);
/* BlockDriver.bitmap_can_store and .bitmap_remove_persistent. */
bool qcow2_node_bitmap_can_store(BlockDriverState *bs, Qcow2 *q, const char *name,
                                 uint32_t granularity, GError **errp);
bool qcow2_node_bitmap_remove(BlockDriverState *bs, Qcow2 *q, const char *name,
                              GError **errp);
/* The "bitmaps" member of ImageInfoSpecificQCow2, when the image has some. */
void qcow2_node_bitmaps_info(Qcow2 *q, json_object *data);

#endif
