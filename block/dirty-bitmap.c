/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Named dirty bitmaps on nodes (dirty-bitmap.h): their lifecycle, QEMU's
 * checks and texts, the marking that the request path does for every
 * completed change, and the byte-level view that the NBD server's
 * qemu:dirty-bitmap:NAME context reads. The bits themselves are a
 * util/sparse-bitmap.h array of ceil(size / granularity) bits.
 *
 * Locking: a node's bitmap list and every bitmap's bits and flags are
 * guarded by the node's dirty_lock; the list only changes on the main
 * thread, and the request path skips the lock entirely while the node has
 * no bitmap (an atomic counter), so nodes without bitmaps pay nothing.
 */
#include "block/block-int.h"
#include "berth/block/dirty-bitmap.h"
#include "util/sparse-bitmap.h"

#include <stdarg.h>
#include <string.h>

struct BdrvDirtyBitmap {
    BlockDriverState *bs;       /* borrowed: the node owns us */
    char *name;
    uint32_t granularity;
    unsigned shift;             /* log2(granularity) */
    uint64_t size;              /* bytes covered */
    bool disabled;
    bool busy;
    bool persistent, inconsistent, readonly;
    BerthBitmap *bits;
};

static void set_error(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void set_error(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(errp, g_error_new_valist(G_IO_ERROR, G_IO_ERROR_FAILED, fmt, ap));
    va_end(ap);
}

static uint64_t bits_for(uint64_t size, unsigned shift)
{
    uint64_t n = (size >> shift) + ((size & ((UINT64_C(1) << shift) - 1)) != 0);
    return MAX(n, 1);
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_find(BlockDriverState *bs, const char *name)
{
    g_return_val_if_fail(bs != NULL && name != NULL, NULL);
    for (GList *l = bs->dirty_bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;
        if (strcmp(bm->name, name) == 0) {
            return bm;
        }
    }
    return NULL;
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_create(BlockDriverState *bs, const char *name,
                                          uint32_t granularity, bool disabled,
                                          GError **errp)
{
    g_return_val_if_fail(bs != NULL, NULL);
    if (!name || !*name) {
        set_error(errp, "Bitmap name cannot be empty");
        return NULL;
    }
    if (granularity == 0) {
        granularity = BDRV_DIRTY_BITMAP_DEFAULT_GRANULARITY;
    }
    if (granularity < 512 || (granularity & (granularity - 1))) {
        set_error(errp, "Granularity must be power of 2 and at least 512");
        return NULL;
    }
    if (bdrv_dirty_bitmap_find(bs, name)) {
        set_error(errp, "Bitmap already exists: %s", name);
        return NULL;
    }
    if (strlen(name) > BDRV_DIRTY_BITMAP_MAX_NAME) {
        set_error(errp, "Bitmap name too long: %s", name);
        return NULL;
    }
    unsigned shift = (unsigned) __builtin_ctz(granularity);
    uint64_t nbits = bits_for(bs->size, shift);
    if (nbits > BERTH_BITMAP_MAX_BITS) {
        set_error(errp, "Bitmap '%s' would need %" G_GUINT64_FORMAT " bits for node '%s': "
                  "choose a granularity of at least %" G_GUINT64_FORMAT " bytes", name,
                  nbits, bs->node_name,
                  (uint64_t) granularity * (nbits / BERTH_BITMAP_MAX_BITS + 1));
        return NULL;
    }

    BdrvDirtyBitmap *bm = g_new0(BdrvDirtyBitmap, 1);
    bm->bs = bs;
    bm->name = g_strdup(name);
    bm->granularity = granularity;
    bm->shift = shift;
    bm->size = bs->size;
    bm->disabled = disabled;
    bm->bits = berth_bitmap_new(nbits);

    berth_mutex_lock(&bs->dirty_lock);
    bs->dirty_bitmaps = g_list_prepend(bs->dirty_bitmaps, bm);
    g_atomic_int_inc(&bs->n_dirty_bitmaps);
    berth_mutex_unlock(&bs->dirty_lock);
    return bm;
}

static void bitmap_free(BdrvDirtyBitmap *bm)
{
    berth_bitmap_free(bm->bits);
    g_free(bm->name);
    g_free(bm);
}

bool bdrv_dirty_bitmap_check_flags(const BdrvDirtyBitmap *bm, unsigned flags, GError **errp)
{
    if ((flags & BDRV_BITMAP_BUSY) && bm->busy) {
        set_error(errp, "Bitmap '%s' is currently in use by another operation and cannot "
                  "be used", bm->name);
        return false;
    }
    if ((flags & BDRV_BITMAP_RO) && bm->readonly) {
        set_error(errp, "Bitmap '%s' is readonly and cannot be modified", bm->name);
        return false;
    }
    if ((flags & BDRV_BITMAP_INCONSISTENT) && bm->inconsistent) {
        set_error(errp, "Bitmap '%s' is inconsistent and cannot be used", bm->name);
        return false;
    }
    return true;
}

bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, GError **errp)
{
    return bdrv_dirty_bitmap_check_flags(bm, BDRV_BITMAP_ALLOW_RO, errp);
}

void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    bm->persistent = persistent;
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    bm->inconsistent = true;
    bm->disabled = true;
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    bm->readonly = readonly;
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

bool bdrv_dirty_bitmap_remove(BdrvDirtyBitmap *bm, GError **errp)
{
    BlockDriverState *bs = bm->bs;

    if (!bdrv_dirty_bitmap_check_flags(bm, BDRV_BITMAP_BUSY | BDRV_BITMAP_RO, errp)) {
        return false;
    }
    berth_mutex_lock(&bs->dirty_lock);
    bs->dirty_bitmaps = g_list_remove(bs->dirty_bitmaps, bm);
    g_atomic_int_add(&bs->n_dirty_bitmaps, -1);
    berth_mutex_unlock(&bs->dirty_lock);
    bitmap_free(bm);
    return true;
}

void bdrv_dirty_bitmaps_free_all(BlockDriverState *bs)
{
    g_list_free_full(g_steal_pointer(&bs->dirty_bitmaps), (GDestroyNotify) bitmap_free);
    g_atomic_int_set(&bs->n_dirty_bitmaps, 0);
}

bool bdrv_dirty_bitmaps_resize(BlockDriverState *bs, uint64_t size, GError **errp)
{
    for (GList *l = bs->dirty_bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;
        uint64_t nbits = bits_for(size, bm->shift);
        if (nbits > BERTH_BITMAP_MAX_BITS) {
            set_error(errp, "Bitmap '%s' of node '%s' cannot cover %" G_GUINT64_FORMAT
                      " bytes at a granularity of %" G_GUINT32_FORMAT, bm->name,
                      bs->node_name, size, bm->granularity);
            return false;
        }
    }
    berth_mutex_lock(&bs->dirty_lock);
    for (GList *l = bs->dirty_bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;
        berth_bitmap_resize(bm->bits, bits_for(size, bm->shift));
        /* The last bit may have covered a partial tail that is now whole:
         * it stays as it was, like the rest of the old range. */
        bm->size = size;
    }
    berth_mutex_unlock(&bs->dirty_lock);
    return true;
}

bool bdrv_dirty_bitmap_clear(BdrvDirtyBitmap *bm, GError **errp)
{
    if (!bdrv_dirty_bitmap_check_flags(bm, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    berth_mutex_lock(&bm->bs->dirty_lock);
    berth_bitmap_reset_all(bm->bits);
    berth_mutex_unlock(&bm->bs->dirty_lock);
    return true;
}

bool bdrv_dirty_bitmap_set_enabled(BdrvDirtyBitmap *bm, bool enabled, GError **errp)
{
    if (!bdrv_dirty_bitmap_check(bm, errp)) {
        return false;
    }
    berth_mutex_lock(&bm->bs->dirty_lock);
    bm->disabled = !enabled;
    berth_mutex_unlock(&bm->bs->dirty_lock);
    return true;
}

void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    bm->busy = busy;
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

/* Caller holds the lock of bm's node. */
static void set_bytes_locked(BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes)
{
    if (bytes == 0 || offset >= bm->size) {
        return;
    }
    uint64_t last = MIN(offset + (bytes - 1), bm->size - 1);
    uint64_t first_bit = offset >> bm->shift;
    berth_bitmap_set(bm->bits, first_bit, (last >> bm->shift) - first_bit + 1);
}

void bdrv_dirty_bitmap_set_range(BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    set_bytes_locked(bm, offset, bytes);
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    if (g_atomic_int_get(&bs->n_dirty_bitmaps) == 0 || bytes == 0) {
        return;
    }
    berth_mutex_lock(&bs->dirty_lock);
    for (GList *l = bs->dirty_bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;
        if (!bm->disabled) {
            set_bytes_locked(bm, offset, bytes);
        }
    }
    berth_mutex_unlock(&bs->dirty_lock);
}

/* Caller holds the lock; offset < bm->size. */
static bool status_locked(const BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes,
                          uint64_t *run)
{
    uint64_t bit = offset >> bm->shift;
    bool dirty = berth_bitmap_get(bm->bits, bit);
    uint64_t next = dirty ? berth_bitmap_next_clear(bm->bits, bit)
                          : berth_bitmap_next_set(bm->bits, bit);
    uint64_t end = next >= berth_bitmap_size(bm->bits) ? bm->size
                   : MIN(next << bm->shift, bm->size);
    *run = MIN(end - offset, bytes);
    return dirty;
}

bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, uint64_t offset, uint64_t bytes,
                              uint64_t *run)
{
    if (offset >= bm->size) {
        *run = bytes;
        return false;
    }
    berth_mutex_lock(&bm->bs->dirty_lock);
    bool dirty = status_locked(bm, offset, bytes, run);
    berth_mutex_unlock(&bm->bs->dirty_lock);
    return dirty;
}

/* dst |= src into `into` (dst's bits or a copy of them); lock held. */
static void merge_locked(const BdrvDirtyBitmap *dst, BerthBitmap *into,
                         const BdrvDirtyBitmap *src)
{
    if (dst->granularity == src->granularity) {
        berth_bitmap_merge(into, src->bits);
        return;
    }
    uint64_t nbits = berth_bitmap_size(src->bits);
    for (uint64_t bit = berth_bitmap_next_set(src->bits, 0); bit < nbits;) {
        uint64_t end = berth_bitmap_next_clear(src->bits, bit);
        uint64_t off = bit << src->shift;
        uint64_t last = MIN((end << src->shift) - 1, dst->size - 1);
        berth_bitmap_set(into, off >> dst->shift, (last >> dst->shift) - (off >> dst->shift) + 1);
        bit = end < nbits ? berth_bitmap_next_set(src->bits, end) : nbits;
    }
}

bool bdrv_dirty_bitmap_merge(BdrvDirtyBitmap *dst, const BdrvDirtyBitmap *src, GError **errp)
{
    BdrvDirtyBitmap *one[] = { (BdrvDirtyBitmap *) src };
    return bdrv_dirty_bitmap_merge_many(dst, one, 1, errp);
}

bool bdrv_dirty_bitmap_merge_many(BdrvDirtyBitmap *dst, BdrvDirtyBitmap *const *srcs,
                                  guint n, GError **errp)
{
    if (!bdrv_dirty_bitmap_check_flags(dst, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    for (guint i = 0; i < n; i++) {
        if (!bdrv_dirty_bitmap_check(srcs[i], errp)) {
            return false;
        }
        if (srcs[i]->size != dst->size) {
            set_error(errp, "Bitmaps are of different sizes (destination size is %"
                      G_GUINT64_FORMAT ", source size is %" G_GUINT64_FORMAT
                      ") and can't be merged", dst->size, srcs[i]->size);
            return false;
        }
    }
    /*
     * Sources may live on other nodes: take each node's lock in turn and
     * merge into a private copy, then swap it in under dst's lock, so a
     * failure or a concurrent write never sees half a merge. Writes that
     * land in dst while the copy is made are replayed by merging dst's
     * current bits again at the swap.
     */
    berth_mutex_lock(&dst->bs->dirty_lock);
    BerthBitmap *result = berth_bitmap_copy(dst->bits);
    berth_mutex_unlock(&dst->bs->dirty_lock);
    for (guint i = 0; i < n; i++) {
        berth_mutex_lock(&srcs[i]->bs->dirty_lock);
        merge_locked(dst, result, srcs[i]);
        berth_mutex_unlock(&srcs[i]->bs->dirty_lock);
    }
    berth_mutex_lock(&dst->bs->dirty_lock);
    berth_bitmap_merge(result, dst->bits);
    BerthBitmap *old = dst->bits;
    dst->bits = result;
    berth_mutex_unlock(&dst->bs->dirty_lock);
    berth_bitmap_free(old);
    return true;
}

BerthBitmap *bdrv_dirty_bitmap_snapshot(BdrvDirtyBitmap *bm)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    BerthBitmap *copy = berth_bitmap_copy(bm->bits);
    berth_mutex_unlock(&bm->bs->dirty_lock);
    return copy;
}

void bdrv_dirty_bitmap_restore(BdrvDirtyBitmap *bm, BerthBitmap *bits)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    BerthBitmap *old = bm->bits;
    bm->bits = bits;
    berth_mutex_unlock(&bm->bs->dirty_lock);
    berth_bitmap_free(old);
}

void bdrv_dirty_bitmap_get_info(BdrvDirtyBitmap *bm, BdrvDirtyBitmapInfo *info)
{
    berth_mutex_lock(&bm->bs->dirty_lock);
    *info = (BdrvDirtyBitmapInfo) {
        .name = bm->name,
        .granularity = bm->granularity,
        .recording = !bm->disabled,
        .busy = bm->busy,
        .persistent = bm->persistent,
        .inconsistent = bm->inconsistent,
        .readonly = bm->readonly,
        .count = berth_bitmap_count(bm->bits) << bm->shift,
        .size = bm->size,
    };
    berth_mutex_unlock(&bm->bs->dirty_lock);
}

BlockDriverState *bdrv_dirty_bitmap_get_node(BdrvDirtyBitmap *bm)
{
    return bm->bs;
}

void bdrv_dirty_bitmap_foreach(BlockDriverState *bs,
                               void (*fn)(BdrvDirtyBitmap *bm, gpointer opaque),
                               gpointer opaque)
{
    g_return_if_fail(bs != NULL);
    /* The list changes only on this (main) thread, so no lock while fn runs. */
    for (GList *l = bs->dirty_bitmaps; l;) {
        GList *next = l->next;
        fn(l->data, opaque);
        l = next;
    }
}
