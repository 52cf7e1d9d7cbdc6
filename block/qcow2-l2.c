/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The two-level map from guest clusters to host clusters: the L1 table is
 * kept in memory, L2 tables go through the L2 cache. Entries are checked
 * before use (reserved bits, alignment, pointing into the header or the top
 * tables), so a corrupt image gives -EIO and a message, never a read or a
 * write in the wrong place. Updates allocate a missing L2 table, write it
 * before the L1 entry that points at it, and write changed entries at once.
 */
#include "block/qcow2-int.h"

static int corrupt(GError **errp, const char *what, uint64_t value)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "qcow2: corrupt image: %s (0x%" G_GINT64_MODIFIER "x)", what, value);
    return -EIO;
}

static int l2_table_offset(Qcow2 *s, uint64_t l1_index, uint64_t *l2_off, GError **errp)
{
    uint64_t e = l1_index < s->l1_size ? qcow2_be64(s->l1[l1_index]) : 0;

    *l2_off = e & QCOW2_OFFSET_MASK;
    if (*l2_off && ((*l2_off & (s->cluster_size - 1)) ||
                    qcow2_overlaps_metadata(s, *l2_off, s->cluster_size))) {
        return corrupt(errp, "L2 table offset unaligned or overlapping metadata", *l2_off);
    }
    return 0;
}

int qcow2_l2_lookup(Qcow2 *s, uint64_t guest_cluster, uint64_t *entry, GError **errp)
{
    uint64_t l2_off;
    const uint64_t *table;
    int ret = l2_table_offset(s, guest_cluster / s->l2_entries, &l2_off, errp);

    *entry = 0;
    if (ret < 0 || !l2_off) {
        return ret;
    }
    berth_mutex_lock(&s->cache_lock);
    table = (const uint64_t *) qcow2_cache_get(s, &s->l2_cache, l2_off, errp);
    if (table) {
        *entry = qcow2_be64(table[guest_cluster % s->l2_entries]);
    }
    berth_mutex_unlock(&s->cache_lock);
    return table ? 0 : -EIO;
}

Qcow2ClusterType qcow2_l2_type(Qcow2 *s, uint64_t entry)
{
    uint64_t off = entry & QCOW2_OFFSET_MASK;

    if (entry & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_CL_COMPRESSED;
    }
    if ((entry & QCOW2_OFLAG_ZERO) && s->version >= 3) {
        return off ? QCOW2_CL_ZERO_ALLOC : QCOW2_CL_ZERO_PLAIN;
    }
    return off ? QCOW2_CL_NORMAL : QCOW2_CL_UNALLOCATED;
}

void qcow2_compressed_range(Qcow2 *s, uint64_t entry, uint64_t *offset, uint64_t *len)
{
    uint64_t sectors = ((entry >> s->csize_shift) & s->csize_mask) + 1;

    *offset = entry & s->coffset_mask;
    *len = sectors * 512 - (*offset & 511);
}

int qcow2_l2_check_entry(Qcow2 *s, uint64_t entry, GError **errp)
{
    uint64_t off, len;

    switch (qcow2_l2_type(s, entry)) {
    case QCOW2_CL_COMPRESSED:
        qcow2_compressed_range(s, entry, &off, &len);
        if (off < s->cluster_size) {
            return corrupt(errp, "compressed cluster inside the header", off);
        }
        return 0;
    case QCOW2_CL_NORMAL:
    case QCOW2_CL_ZERO_ALLOC:
        off = entry & QCOW2_OFFSET_MASK;
        if (entry & (QCOW2_L2E_RESERVED & ~(s->version >= 3 ? QCOW2_OFLAG_ZERO : 0))) {
            return corrupt(errp, "L2 entry with reserved bits set", entry);
        }
        if ((off & (s->cluster_size - 1)) || qcow2_overlaps_metadata(s, off, s->cluster_size)) {
            return corrupt(errp, "data cluster unaligned or overlapping metadata", off);
        }
        return 0;
    default:
        return 0;
    }
}

/* Make sure the L2 table for l1_index exists and is ours alone. */
static int l2_prepare(Qcow2 *s, uint64_t l1_index, uint64_t *l2_off, GError **errp)
{
    uint64_t l1e = qcow2_be64(s->l1[l1_index]), be;
    int64_t fresh;
    uint8_t *table;
    int ret = l2_table_offset(s, l1_index, l2_off, errp);

    if (ret < 0) {
        return ret;
    }
    if (*l2_off && (l1e & QCOW2_OFLAG_COPIED)) {
        return 0;
    }
    if (*l2_off) {
        uint16_t rc;
        /* Without snapshots a table is never shared: only the flag is stale. */
        ret = qcow2_refcount_get(s, *l2_off >> s->cluster_bits, &rc, errp);
        if (ret < 0) {
            return ret;
        }
        if (rc != 1) {
            return corrupt(errp, "shared L2 table (internal snapshots are read-only)", *l2_off);
        }
        be = GUINT64_TO_BE(*l2_off | QCOW2_OFLAG_COPIED);
    } else {
        fresh = qcow2_alloc_clusters(s, 1, errp);
        if (fresh < 0) {
            return fresh;
        }
        berth_mutex_lock(&s->cache_lock);
        table = qcow2_cache_get_empty(&s->l2_cache, fresh);
        memset(table, 0, s->cluster_size);
        ret = qcow2_pwrite(s, fresh, table, s->cluster_size, errp);
        if (ret < 0) {
            qcow2_cache_drop(&s->l2_cache, fresh);
        }
        berth_mutex_unlock(&s->cache_lock);
        if (ret == 0) {
            /* The table is on disk before the L1 entry that points at it. */
            ret = qcow2_sync(s, errp);
        }
        if (ret < 0) {
            return ret;
        }
        *l2_off = fresh;
        be = GUINT64_TO_BE((uint64_t) fresh | QCOW2_OFLAG_COPIED);
    }
    ret = qcow2_pwrite(s, s->l1_offset + l1_index * 8, &be, 8, errp);
    if (ret < 0) {
        return ret;
    }
    s->l1[l1_index] = be;
    return 0;
}

int qcow2_l2_set(Qcow2 *s, uint64_t guest_cluster, const uint64_t *entries, guint n,
                 GError **errp)
{
    uint64_t l1_index = guest_cluster / s->l2_entries;
    uint64_t first = guest_cluster % s->l2_entries;
    uint64_t l2_off;
    uint64_t *table;
    int ret;

    g_return_val_if_fail(first + n <= s->l2_entries, -EINVAL);
    ret = l2_prepare(s, l1_index, &l2_off, errp);
    if (ret < 0) {
        return ret;
    }
    berth_mutex_lock(&s->cache_lock);
    table = (uint64_t *) qcow2_cache_get(s, &s->l2_cache, l2_off, errp);
    if (!table) {
        berth_mutex_unlock(&s->cache_lock);
        return -EIO;
    }
    for (guint i = 0; i < n; i++) {
        table[first + i] = GUINT64_TO_BE(entries[i]);
    }
    ret = qcow2_pwrite(s, l2_off + first * 8, table + first, (size_t) n * 8, errp);
    if (ret < 0) {
        /* The disk may hold either version: forget ours. */
        qcow2_cache_drop(&s->l2_cache, l2_off);
    }
    berth_mutex_unlock(&s->cache_lock);
    return ret < 0 ? ret : 0;
}
