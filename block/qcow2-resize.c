/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Changing a qcow2 image's virtual size (block_resize).
 *
 * Growing writes a bigger L1 table first when the new size needs one (a new
 * table in new clusters, synced, then the header switched to it in one
 * write, then the old table's clusters freed), then the new size in the
 * header. Whatever the process dies, the image is either at its old size
 * or its new one, leaking the new table's clusters at worst. The range that
 * appears is then zeroed where it would not read as zeroes: the tail of the
 * old last cluster, and the part a longer backing file would show through,
 * as QEMU does.
 *
 * Shrinking frees the clusters wholly past the new end first (a plain
 * discard), then writes the new size. L2 tables and the L1 table keep their
 * size: both may cover more than the disk.
 */
#include "block/qcow2-int.h"

#define QCOW2_HDR_SIZE 24
#define QCOW2_HDR_L1 36     /* l1_size (be32), then l1_table_offset (be64) */

static uint64_t round_up(uint64_t v, uint64_t align)
{
    return (v + align - 1) / align * align;
}

/* A larger L1 table for need entries; exclusive lock held. */
static int grow_l1(Qcow2 *s, uint64_t need, GError **errp)
{
    uint64_t cs = s->cluster_size;
    uint64_t bytes = round_up(need * 8, cs);
    uint64_t old_offset = s->l1_offset, old_bytes = round_up((uint64_t) s->l1_size * 8, cs);
    g_autofree uint64_t *table = g_try_malloc0(bytes);
    uint8_t hdr[12];
    int64_t offset;
    int ret;

    if (!table) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                            "qcow2: out of memory for the L1 table");
        return -ENOMEM;
    }
    memcpy(table, s->l1, (size_t) s->l1_size * 8);
    offset = qcow2_alloc_clusters(s, bytes / cs, errp);
    if (offset < 0) {
        return (int) offset;
    }
    ret = qcow2_pwrite(s, (uint64_t) offset, table, bytes, errp);
    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    if (ret == 0) {
        uint32_t n = GUINT32_TO_BE((uint32_t) need);
        uint64_t o = GUINT64_TO_BE((uint64_t) offset);
        memcpy(hdr, &n, 4);
        memcpy(hdr + 4, &o, 8);
        ret = qcow2_pwrite(s, QCOW2_HDR_L1, hdr, sizeof(hdr), errp);
    }
    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    if (ret < 0) {
        /* The header may or may not name the new table: keep its clusters. */
        return ret;
    }
    g_free(s->l1);
    s->l1 = g_steal_pointer(&table);
    s->l1_offset = (uint64_t) offset;
    s->l1_size = (uint32_t) need;
    if (old_bytes) {
        ret = qcow2_free_range(s, old_offset, old_bytes, errp);
    }
    return ret;
}

/* The header's size field and the core's copy; exclusive lock held. */
static int set_size(Qcow2 *s, uint64_t size, GError **errp)
{
    uint64_t be = GUINT64_TO_BE(size);
    int ret = qcow2_pwrite(s, QCOW2_HDR_SIZE, &be, 8, errp);

    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    if (ret == 0) {
        __atomic_store_n(&s->size, size, __ATOMIC_RELAXED);
    }
    return ret;
}

static int grow(Qcow2 *s, uint64_t size, GError **errp)
{
    uint64_t l2_span = (uint64_t) s->l2_entries << s->cluster_bits;
    uint64_t need = (size + l2_span - 1) / l2_span;
    uint64_t old = s->size, zero_end;
    int ret = 0;

    if (need * 8 > QCOW2_MAX_L1_BYTES) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "qcow2: Active L1 table too large");
        return -EFBIG;
    }
    qcow2_lock_exclusive(s);
    if (need > s->l1_size) {
        ret = grow_l1(s, need, errp);
    }
    if (ret == 0) {
        ret = set_size(s, size, errp);
    }
    qcow2_unlock_exclusive(s);
    if (ret < 0) {
        return ret;
    }

    /* What the new range would show that is not zeroes: the old last
     * cluster's tail (left by an earlier shrink), and the backing file. */
    zero_end = MIN(round_up(old, s->cluster_size), size);
    if (s->has_backing) {
        int64_t blen = s->backing.length(s->backing.opaque);
        if (blen > 0) {
            zero_end = MAX(zero_end, MIN((uint64_t) blen, size));
        }
    }
    if (zero_end > old) {
        ret = qcow2_write_zeroes(s, old, zero_end - old, false, errp);
    }
    return ret;
}

static int shrink(Qcow2 *s, uint64_t size, GError **errp)
{
    uint64_t first = round_up(size, s->cluster_size);
    int ret = 0;

    if (first < s->size) {
        ret = qcow2_discard(s, first, s->size - first, errp);
    }
    if (ret == 0) {
        qcow2_lock_exclusive(s);
        ret = set_size(s, size, errp);
        qcow2_unlock_exclusive(s);
    }
    return ret;
}

int qcow2_resize(Qcow2 *s, uint64_t size, GError **errp)
{
    if (!s->writable) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "qcow2: the image is open read-only");
        return -EROFS;
    }
    if (size % 512) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (s->nb_snapshots) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            s->version < 3 ? "Can't resize a v2 image which has snapshots"
                                           : "qcow2: berth cannot resize an image that has "
                                             "internal snapshots");
        return -ENOTSUP;
    }
    if (size > (UINT64_C(1) << 61)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "qcow2: virtual size %" G_GUINT64_FORMAT " too large", size);
        return -EFBIG;
    }
    if (size == s->size) {
        return 0;
    }
    return size > s->size ? grow(s, size, errp) : shrink(s, size, errp);
}
