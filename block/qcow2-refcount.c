/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Refcounts (16 bits, the only width supported) and cluster allocation.
 * Refcounts are kept exact at all times: a cluster's count is written before
 * anything points at it, and dropped only after the last pointer is gone.
 * A missing refcount block is placed in the first cluster it describes
 * (free by definition) and counts itself; when the refcount table is full,
 * a larger one is built right after such a block, inside the range it
 * describes, written and synced before the header switches to it, and the
 * old one is freed last. Only used under the exclusive lock.
 */
#include "block/qcow2-int.h"

#define MAX_REFCOUNT 0xffff

static int corrupt(GError **errp, const char *what, uint64_t value)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "qcow2: corrupt image: %s (0x%" G_GINT64_MODIFIER "x)", what, value);
    return -EIO;
}

/* The refcount block of cluster's range (NULL *block when there is none). */
static int get_block(Qcow2 *s, uint64_t cluster, uint16_t **block, uint64_t *rb_off,
                     GError **errp)
{
    uint64_t b = cluster / s->refblock_entries;

    *block = NULL;
    *rb_off = b < s->reftable_entries ? qcow2_be64(s->reftable[b]) : 0;
    if (!*rb_off) {
        return 0;
    }
    if (qcow2_overlaps_metadata(s, *rb_off, s->cluster_size)) {
        return corrupt(errp, "refcount block overlapping metadata", *rb_off);
    }
    *block = (uint16_t *) qcow2_cache_get(s, &s->rb_cache, *rb_off, errp);
    return *block ? 0 : -EIO;
}

int qcow2_refcount_get(Qcow2 *s, uint64_t cluster, uint16_t *refcount, GError **errp)
{
    uint16_t *block;
    uint64_t rb_off;
    int ret = get_block(s, cluster, &block, &rb_off, errp);

    *refcount = block ? GUINT16_FROM_BE(block[cluster % s->refblock_entries]) : 0;
    return ret;
}

static int set_refcounts(Qcow2 *s, uint64_t cluster, uint64_t n, int delta, GError **errp)
{
    while (n > 0) {
        uint16_t *block;
        uint64_t rb_off, first = cluster % s->refblock_entries;
        uint64_t count = MIN(n, s->refblock_entries - first);
        int ret = get_block(s, cluster, &block, &rb_off, errp);

        if (ret < 0) {
            return ret;
        }
        if (!block) {
            return corrupt(errp, "freeing a cluster without a refcount block",
                           cluster << s->cluster_bits);
        }
        for (uint64_t i = 0; i < count; i++) {
            int rc = GUINT16_FROM_BE(block[first + i]) + delta;
            if (rc < 0 || rc > MAX_REFCOUNT) {
                return corrupt(errp, rc < 0 ? "refcount underflow" : "refcount overflow",
                               (cluster + i) << s->cluster_bits);
            }
            block[first + i] = GUINT16_TO_BE(rc);
            if (rc == 0 && cluster + i < s->free_hint) {
                s->free_hint = cluster + i;
            }
        }
        ret = qcow2_pwrite(s, rb_off + first * 2, block + first, count * 2, errp);
        if (ret < 0) {
            qcow2_cache_drop(&s->rb_cache, rb_off);
            return ret;
        }
        cluster += count;
        n -= count;
    }
    return 0;
}

static int write_new_block(Qcow2 *s, uint64_t rb_off, guint self_count, GError **errp)
{
    uint16_t *block = (uint16_t *) qcow2_cache_get_empty(&s->rb_cache, rb_off);
    int ret;

    memset(block, 0, s->cluster_size);
    for (guint i = 0; i < self_count; i++) {
        block[i] = GUINT16_TO_BE(1);
    }
    ret = qcow2_pwrite(s, rb_off, block, s->cluster_size, errp);
    if (ret < 0) {
        qcow2_cache_drop(&s->rb_cache, rb_off);
    }
    return ret;
}

static int grow_reftable(Qcow2 *s, uint64_t b, GError **errp)
{
    uint64_t rb_off = (b * s->refblock_entries) << s->cluster_bits;
    uint64_t need = (b + 1) * 8, clusters;
    uint64_t old_off = s->reftable_offset, old_clusters = s->reftable_clusters;
    g_autofree uint64_t *table = NULL;
    uint8_t hdr[12];
    uint64_t be_off;
    uint32_t be_clusters;
    int ret;

    clusters = MAX((need + s->cluster_size - 1) / s->cluster_size,
                   old_clusters + old_clusters / 2 + 1);
    if (clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES ||
        clusters + 1 > s->refblock_entries) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "qcow2: the refcount table cannot grow any further");
        return -ENOSPC;
    }
    if (qcow2_overlaps_metadata(s, rb_off, (clusters + 1) * s->cluster_size)) {
        return corrupt(errp, "refcount table growth would overlap metadata", rb_off);
    }
    ret = write_new_block(s, rb_off, (guint) clusters + 1, errp);
    if (ret < 0) {
        return ret;
    }
    table = g_malloc0(clusters * s->cluster_size);
    memcpy(table, s->reftable, s->reftable_entries * 8);
    table[b] = GUINT64_TO_BE(rb_off);
    ret = qcow2_pwrite(s, rb_off + s->cluster_size, table, clusters * s->cluster_size, errp);
    if (ret < 0 || (ret = qcow2_sync(s, errp)) < 0) {
        return ret;
    }
    be_off = GUINT64_TO_BE(rb_off + s->cluster_size);
    be_clusters = GUINT32_TO_BE((uint32_t) clusters);
    memcpy(hdr, &be_off, 8);
    memcpy(hdr + 8, &be_clusters, 4);
    ret = qcow2_pwrite(s, QCOW2_HDR_REFTABLE_OFFSET, hdr, sizeof(hdr), errp);
    if (ret < 0 || (ret = qcow2_sync(s, errp)) < 0) {
        return ret;
    }
    g_free(s->reftable);
    s->reftable = g_steal_pointer(&table);
    s->reftable_offset = rb_off + s->cluster_size;
    s->reftable_clusters = clusters;
    s->reftable_entries = clusters * s->cluster_size / 8;
    return set_refcounts(s, old_off >> s->cluster_bits, old_clusters, -1, errp);
}

static int create_block(Qcow2 *s, uint64_t b, GError **errp)
{
    uint64_t rb_off = (b * s->refblock_entries) << s->cluster_bits, be;
    int ret;

    if (b >= s->reftable_entries) {
        return grow_reftable(s, b, errp);
    }
    if (qcow2_overlaps_metadata(s, rb_off, s->cluster_size)) {
        return corrupt(errp, "missing refcount block for metadata", rb_off);
    }
    ret = write_new_block(s, rb_off, 1, errp);
    if (ret < 0 || (ret = qcow2_sync(s, errp)) < 0) {
        return ret;
    }
    be = GUINT64_TO_BE(rb_off);
    ret = qcow2_pwrite(s, s->reftable_offset + b * 8, &be, 8, errp);
    if (ret < 0) {
        return ret;
    }
    s->reftable[b] = be;
    return 0;
}

/* The first run of n clusters with refcount 0 from the hint. */
static int64_t find_free(Qcow2 *s, uint64_t n, GError **errp)
{
    uint64_t max = (QCOW2_OFFSET_MASK >> s->cluster_bits) + 1;
    uint64_t run = 0, start = 0;

    for (uint64_t c = MAX(s->free_hint, 1); c < max; c++) {
        uint16_t rc;
        int ret = qcow2_refcount_get(s, c, &rc, errp);

        if (ret < 0) {
            return ret;
        }
        if (rc) {
            run = 0;
            continue;
        }
        if (run++ == 0) {
            start = c;
        }
        if (run == n) {
            return start;
        }
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "qcow2: the image is full");
    return -ENOSPC;
}

/* n contiguous clusters newly counted (not yet synced). */
static int64_t reserve_clusters(Qcow2 *s, uint64_t n, GError **errp)
{
    for (;;) {
        int64_t start = find_free(s, n, errp);
        bool created = false;
        int ret;

        if (start < 0) {
            return start;
        }
        for (uint64_t b = start / s->refblock_entries;
             b <= (start + n - 1) / s->refblock_entries; b++) {
            if (b >= s->reftable_entries || !s->reftable[b]) {
                ret = create_block(s, b, errp);
                if (ret < 0) {
                    return ret;
                }
                created = true;
                break;
            }
        }
        if (created) {
            continue;   /* the new block took a cluster: look again */
        }
        ret = set_refcounts(s, start, n, +1, errp);
        if (ret < 0) {
            return ret;
        }
        s->free_hint = start + n;
        return start;
    }
}

int qcow2_release_pool(Qcow2 *s, GError **errp)
{
    uint64_t start = s->pool_start, n = s->pool_end - s->pool_start;

    s->pool_start = s->pool_end = 0;
    return n ? set_refcounts(s, start, n, -1, errp) : 0;
}

int64_t qcow2_alloc_clusters(Qcow2 *s, uint64_t n, GError **errp)
{
    uint64_t want = MAX(n, CLAMP((UINT64_C(4) << 20) >> s->cluster_bits, 8,
                                 s->refblock_entries / 2));
    int64_t start;
    int ret;

    ret = qcow2_free_deferred(s, errp);
    if (ret < 0) {
        return ret;
    }
    if (s->pool_end - s->pool_start >= n) {
        start = s->pool_start;
        s->pool_start += n;
        return (int64_t) ((uint64_t) start << s->cluster_bits);
    }
    ret = qcow2_release_pool(s, errp);
    if (ret < 0) {
        return ret;
    }
    start = reserve_clusters(s, want, errp);
    if (start < 0 && want > n) {
        g_clear_error(errp);
        want = n;
        start = reserve_clusters(s, n, errp);
    }
    if (start < 0) {
        return start;
    }
    /* One sync for the whole reserve: its counts precede every use. */
    ret = qcow2_sync(s, errp);
    if (ret < 0) {
        set_refcounts(s, start, want, -1, NULL);
        return ret;
    }
    s->pool_start = start + n;
    s->pool_end = start + want;
    return (int64_t) ((uint64_t) start << s->cluster_bits);
}

#define MAX_DEFERRED_FREES 4096

static int free_now(Qcow2 *s, uint64_t offset, uint64_t len, GError **errp)
{
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;

    return set_refcounts(s, first, last - first + 1, -1, errp);
}

int qcow2_free_deferred(Qcow2 *s, GError **errp)
{
    int ret = 0;

    if (!s->deferred || s->deferred->len == 0 || g_atomic_int_get(&s->direct_reads)) {
        return 0;
    }
    for (guint i = 0; i + 1 < s->deferred->len && ret == 0; i += 2) {
        ret = free_now(s, g_array_index(s->deferred, uint64_t, i),
                       g_array_index(s->deferred, uint64_t, i + 1), errp);
    }
    g_array_set_size(s->deferred, 0);
    g_atomic_int_set(&s->direct_disabled, 0);
    return ret;
}

int qcow2_free_range(Qcow2 *s, uint64_t offset, uint64_t len, GError **errp)
{
    int ret;

    if (len == 0) {
        return 0;
    }
    /* The exclusive lock keeps new direct reads out; older ones may run. */
    if (g_atomic_int_get(&s->direct_reads)) {
        if (!s->deferred) {
            s->deferred = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        }
        g_array_append_val(s->deferred, offset);
        g_array_append_val(s->deferred, len);
        if (s->deferred->len >= 2 * MAX_DEFERRED_FREES) {
            g_atomic_int_set(&s->direct_disabled, 1);
        }
        return 0;
    }
    ret = qcow2_free_deferred(s, errp);
    return ret < 0 ? ret : free_now(s, offset, len, errp);
}

int qcow2_free_entry(Qcow2 *s, uint64_t entry, GError **errp)
{
    uint64_t off, len;

    switch (qcow2_l2_type(s, entry)) {
    case QCOW2_CL_NORMAL:
    case QCOW2_CL_ZERO_ALLOC:
        return qcow2_free_range(s, entry & QCOW2_OFFSET_MASK, s->cluster_size, errp);
    case QCOW2_CL_COMPRESSED:
        qcow2_compressed_range(s, entry, &off, &len);
        return qcow2_free_range(s, off, len, errp);
    default:
        return 0;
    }
}
