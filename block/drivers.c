/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block drivers berth has: one pointer each, in the order blockdev-add's
 * "driver" enum lists them (query output and error texts do not depend on
 * it). Everything else about a driver, the name included, is in its own
 * file; block.c derives the enum and the lookup from this array. Adding a
 * driver: see "Adding a block driver" in docs/architecture.rst.
 */
#include "block/block-int.h"

extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_memory;
extern const BlockDriver bdrv_nbd;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_blkdebug;
extern const BlockDriver bdrv_qcow2;
extern const BlockDriver bdrv_copy_before_write;
extern const BlockDriver bdrv_snapshot_access;
#ifdef CONFIG_RBD
extern const BlockDriver bdrv_rbd;
#endif

const BlockDriver *const bdrv_drivers[] = {
    &bdrv_file,
    &bdrv_null_co,
    &bdrv_memory,
    &bdrv_nbd,
    &bdrv_raw,
    &bdrv_blkdebug,
    &bdrv_qcow2,
    &bdrv_copy_before_write,
    &bdrv_snapshot_access,
#ifdef CONFIG_RBD
    &bdrv_rbd,
#endif
    NULL
};
