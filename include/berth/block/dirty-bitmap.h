/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty bitmaps: named, in-memory records of which parts of a node have
 * changed, as QEMU's block-dirty-bitmap-* commands manage them. A bitmap
 * has a granularity G (a power of two from 512 to 2^31 bytes): bit i stands
 * for bytes [i*G, (i+1)*G) of the node, and it is set once a write,
 * write-zeroes or discard touching those bytes has completed, whichever way
 * the request came (NBD, the C API, a job) - the generic request path marks
 * every enabled bitmap of the node before the request's callback runs. A
 * disabled bitmap keeps its bits but records nothing new. Memory is at most
 * size/G bits, and only the dirty parts are allocated.
 *
 * A bitmap in use (exported over NBD as qemu:dirty-bitmap:NAME) is busy:
 * removing, clearing, enabling, disabling or merging into or from it fails
 * with QEMU's text ("Bitmap 'x' is currently in use by another operation and
 * cannot be used").
 *
 * A persistent bitmap is also kept in its node's image (qcow2) and stored
 * there when the node closes. One loaded from an image that was not closed
 * cleanly is inconsistent: its bits are unknown, so it can only be removed;
 * one loaded from a read-only image is read-only: it cannot be removed,
 * cleared or merged into. Both refusals use QEMU's texts.
 *
 * Ownership: the node owns its bitmaps; pointers returned here are borrowed
 * and stay valid until the bitmap is removed (never while busy) or the node
 * is freed. Threads: create/find/remove/enable/disable/merge/clear and
 * set_busy belong to the main context's thread; the data path (marking, and
 * bdrv_dirty_bitmap_status()) may run on any thread: every access to a
 * node's bits holds that node's bitmap lock.
 */
#ifndef BERTH_BLOCK_DIRTY_BITMAP_H
#define BERTH_BLOCK_DIRTY_BITMAP_H

#include "berth/block/block.h"

G_BEGIN_DECLS

typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

/* Granularity when none is given: QEMU's for nodes without clusters. */
#define BDRV_DIRTY_BITMAP_DEFAULT_GRANULARITY 65536u
/* QEMU's longest bitmap name. */
#define BDRV_DIRTY_BITMAP_MAX_NAME 1023

typedef struct BdrvDirtyBitmapInfo {
    const char *name;           /* owned by the bitmap */
    uint32_t granularity;
    bool recording;             /* enabled */
    bool busy;
    bool persistent;            /* kept in the node's image */
    bool inconsistent;          /* loaded from an image not closed cleanly */
    bool readonly;              /* loaded from a read-only image */
    uint64_t count;             /* dirty bytes: set bits times the granularity */
    uint64_t size;              /* bytes the bitmap covers (the node's size) */
} BdrvDirtyBitmapInfo;

/*
 * Add a bitmap to bs (all clean). granularity 0 means the default. Errors
 * with QEMU's texts: "Bitmap name cannot be empty", "Bitmap name too long:
 * X", "Granularity must be power of 2 and at least 512", "Bitmap already
 * exists: X".
 */
BdrvDirtyBitmap *bdrv_dirty_bitmap_create(BlockDriverState *bs, const char *name,
                                          uint32_t granularity, bool disabled,
                                          GError **errp);
/* Borrowed, or NULL. */
BdrvDirtyBitmap *bdrv_dirty_bitmap_find(BlockDriverState *bs, const char *name);
/* Fails while busy. */
bool bdrv_dirty_bitmap_remove(BdrvDirtyBitmap *bm, GError **errp);
bool bdrv_dirty_bitmap_clear(BdrvDirtyBitmap *bm, GError **errp);
bool bdrv_dirty_bitmap_set_enabled(BdrvDirtyBitmap *bm, bool enabled, GError **errp);
/* dst |= src (any granularities; sizes must match: QEMU's text if not). */
bool bdrv_dirty_bitmap_merge(BdrvDirtyBitmap *dst, const BdrvDirtyBitmap *src,
                             GError **errp);
/* The same with several sources, all or nothing. */
bool bdrv_dirty_bitmap_merge_many(BdrvDirtyBitmap *dst, BdrvDirtyBitmap *const *srcs,
                                  guint n, GError **errp);
/* What bdrv_dirty_bitmap_check_flags() refuses, as QEMU's flags. */
enum {
    BDRV_BITMAP_BUSY = 1,
    BDRV_BITMAP_RO = 2,
    BDRV_BITMAP_INCONSISTENT = 4,
    BDRV_BITMAP_DEFAULT = 7,        /* changing the bits */
    BDRV_BITMAP_ALLOW_RO = 5,       /* reading them, enabling, disabling */
};
/* Fails (QEMU's texts, in QEMU's order) if the bitmap is in a refused state. */
bool bdrv_dirty_bitmap_check_flags(const BdrvDirtyBitmap *bm, unsigned flags, GError **errp);
/* The same with BDRV_BITMAP_ALLOW_RO: busy or inconsistent bitmaps fail. */
bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, GError **errp);
void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy);
/* For drivers that store bitmaps (main thread). Inconsistent also disables. */
void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent);
void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly);

void bdrv_dirty_bitmap_get_info(BdrvDirtyBitmap *bm, BdrvDirtyBitmapInfo *info);
BlockDriverState *bdrv_dirty_bitmap_get_node(BdrvDirtyBitmap *bm);  /* borrowed */
/* Newest first, as query-named-block-nodes lists them. */
void bdrv_dirty_bitmap_foreach(BlockDriverState *bs,
                               void (*fn)(BdrvDirtyBitmap *bm, gpointer opaque),
                               gpointer opaque);

/* Mark bytes [offset, offset + bytes) dirty in bm (even if disabled). */
void bdrv_dirty_bitmap_set_range(BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes);
/*
 * Whether byte `offset` is dirty, and in *run how many bytes from offset
 * (at most `bytes`, clipped to the bitmap's size) share that state. Any
 * thread. Bytes beyond the bitmap's size are clean.
 */
bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes,
                              uint64_t *run);

G_END_DECLS

#endif
