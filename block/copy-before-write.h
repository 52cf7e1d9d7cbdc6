/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the copy-before-write filter offers the snapshot-access driver: the
 * point-in-time view of the filtered node, as QEMU's
 * bdrv_snapshot_*() interface between the two. The snapshot-access node
 * hands its own request over; the filter answers it from its target (for
 * clusters already copied there) or from the filtered node (for the others,
 * holding off writes to those clusters until the read has finished).
 *
 * Ownership: the snapshot-access node holds the filter node as its file
 * child; nothing here takes references. Threads: any (the filter's state
 * has a lock of its own). Private to block/.
 */
#ifndef BERTH_BLOCK_COPY_BEFORE_WRITE_H
#define BERTH_BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-int.h"

G_BEGIN_DECLS

extern const BlockDriver bdrv_copy_before_write;

/*
 * Answer `req` (a read, block-status or discard of a snapshot-access node
 * of the same size) from the snapshot of filter node `cbw`:
 *  - read: the bytes as they were when the filter was opened; -EACCES if
 *    part of the range is no longer accessible (discarded from the snapshot,
 *    outside the filter's bitmap, or the snapshot broke on a copy error);
 *  - block status: the status of where the first run of the range lives
 *    (target or filtered node), -EACCES as for reads;
 *  - discard: the whole clusters inside the range leave the snapshot: they
 *    are not copied any more, read as -EACCES, and are discarded in target.
 * Completes req (possibly before returning).
 */
void cbw_snapshot_submit(BlockDriverState *cbw, BdrvRequest *req);

G_END_DECLS

#endif
