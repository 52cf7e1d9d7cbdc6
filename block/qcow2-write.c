/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The write side of the qcow2 core. A write whose clusters are all data
 * clusters owned by this image is done in place under the shared lock; any
 * other write takes the lock alone and allocates: a run of new clusters is
 * counted first, filled (partial clusters copied on write from the old
 * contents: backing file, compressed or shared cluster, zeroes), then the
 * L2 entries are switched to it in one write, and only then are the old
 * clusters released. write_zeroes and discard turn whole clusters into zero
 * clusters (v3) or holes and free what they held, writing zeroes where the
 * format cannot express them (partial clusters, v2 over a backing file).
 */
#include "block/qcow2-int.h"

/* Can the cluster's data be overwritten where it is? */
static bool writable_in_place(Qcow2 *s, uint64_t entry)
{
    return qcow2_l2_type(s, entry) == QCOW2_CL_NORMAL && (entry & QCOW2_OFLAG_COPIED);
}

static int lookup_checked(Qcow2 *s, uint64_t gc, uint64_t *entry, GError **errp)
{
    int ret = qcow2_l2_lookup(s, gc, entry, errp);

    return ret < 0 ? ret : qcow2_l2_check_entry(s, *entry, errp);
}

/* The shared-lock path: 1 done, 0 when some cluster needs allocating. */
static int write_in_place(Qcow2 *s, uint64_t offset, const uint8_t *buf, size_t len,
                          GError **errp)
{
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    uint64_t entry;
    int ret;

    for (uint64_t gc = first; gc <= last; gc++) {
        ret = lookup_checked(s, gc, &entry, errp);
        if (ret < 0) {
            return ret;
        }
        if (!writable_in_place(s, entry)) {
            return 0;
        }
    }
    while (len > 0) {
        uint64_t in = offset & (s->cluster_size - 1);
        size_t n = MIN(len, s->cluster_size - in);
        uint64_t host;

        ret = qcow2_l2_lookup(s, offset >> s->cluster_bits, &entry, errp);
        if (ret < 0) {
            return ret;
        }
        host = (entry & QCOW2_OFFSET_MASK) + in;
        /* Merge the following clusters while they are contiguous on disk. */
        while (n < len) {
            uint64_t next;
            size_t m = MIN(len - n, s->cluster_size);
            ret = qcow2_l2_lookup(s, (offset + n) >> s->cluster_bits, &next, errp);
            if (ret < 0) {
                return ret;
            }
            if ((next & QCOW2_OFFSET_MASK) != host + n) {
                break;
            }
            n += m;
        }
        ret = qcow2_pwrite(s, host, buf, n, errp);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        buf += n;
        len -= n;
    }
    return 1;
}

/* One cluster's new contents: its old guest data with [in, in+n) replaced. */
static int merge_cluster(Qcow2 *s, uint64_t gc, uint64_t old, uint64_t in,
                         const uint8_t *data, size_t n, uint8_t *out, GError **errp)
{
    int ret = qcow2_read_cluster(s, gc, old, out, errp);

    if (ret == 0) {
        memcpy(out + in, data, n);
    }
    return ret;
}

static bool needs_alloc(Qcow2 *s, uint64_t entry)
{
    return !writable_in_place(s, entry) &&
           !(qcow2_l2_type(s, entry) == QCOW2_CL_ZERO_ALLOC && (entry & QCOW2_OFLAG_COPIED));
}

/*
 * Allocate and fill new clusters for the run of `k` guest clusters from gc
 * (all within one L2 table) covering [offset, offset + len).
 */
static int write_new_run(Qcow2 *s, uint64_t gc, const uint64_t *old, guint k,
                         uint64_t offset, const uint8_t *buf, size_t len, GError **errp)
{
    g_autofree uint64_t *entries = g_new(uint64_t, k);
    g_autofree uint8_t *tmp = NULL;
    uint64_t cs = s->cluster_size;
    int64_t host = qcow2_alloc_clusters(s, k, errp);
    uint64_t pos = offset;
    int ret = 0;

    if (host < 0) {
        return host;
    }
    for (guint i = 0; i < k && ret == 0;) {
        uint64_t in = pos & (cs - 1);
        size_t n = MIN(len - (pos - offset), cs - in);

        if (n < cs) {
            if (!tmp) {
                tmp = g_malloc(cs);
            }
            ret = merge_cluster(s, gc + i, old[i], in, buf + (pos - offset), n, tmp, errp);
            if (ret == 0) {
                ret = qcow2_pwrite(s, host + i * cs, tmp, cs, errp);
            }
            pos += n;
            i++;
            continue;
        }
        /* Whole clusters straight from the caller's buffer, in one write. */
        guint j = i;
        while (j < k && len - (pos - offset) - (j - i) * cs >= cs) {
            j++;
        }
        ret = qcow2_pwrite(s, host + i * cs, buf + (pos - offset), (j - i) * cs, errp);
        pos += (j - i) * cs;
        i = j;
    }
    if (ret < 0) {
        /* Nothing points at the new clusters yet: give them back. */
        g_autoptr(GError) ignored = NULL;
        qcow2_free_range(s, host, k * cs, &ignored);
        return ret;
    }
    for (guint i = 0; i < k; i++) {
        entries[i] = (host + i * cs) | QCOW2_OFLAG_COPIED;
    }
    ret = qcow2_l2_set(s, gc, entries, k, errp);
    for (guint i = 0; i < k && ret == 0; i++) {
        ret = qcow2_free_entry(s, old[i], errp);
    }
    return ret;
}

/* Exclusive lock held. */
static int write_locked(Qcow2 *s, uint64_t offset, const uint8_t *buf, size_t len,
                        GError **errp)
{
    uint64_t cs = s->cluster_size;
    g_autofree uint64_t *old = NULL;
    int ret = 0;

    while (len > 0 && ret == 0) {
        uint64_t gc = offset >> s->cluster_bits;
        uint64_t in = offset & (cs - 1);
        size_t n = MIN(len, cs - in);
        uint64_t entry;

        ret = lookup_checked(s, gc, &entry, errp);
        if (ret < 0) {
            break;
        }
        if (writable_in_place(s, entry)) {
            ret = qcow2_pwrite(s, (entry & QCOW2_OFFSET_MASK) + in, buf, n, errp);
        } else if (!needs_alloc(s, entry)) {
            /* A zero cluster that keeps its allocation: fill and unflag it. */
            uint64_t host = entry & QCOW2_OFFSET_MASK, e = host | QCOW2_OFLAG_COPIED;
            g_autofree uint8_t *tmp = g_malloc0(cs);
            memcpy(tmp + in, buf, n);
            ret = qcow2_pwrite(s, host, tmp, cs, errp);
            if (ret == 0) {
                ret = qcow2_l2_set(s, gc, &e, 1, errp);
            }
        } else {
            /* The run of clusters needing allocation, within this L2 table. */
            uint64_t limit = MIN(s->l2_entries - gc % s->l2_entries,
                                 (in + len + cs - 1) / cs);
            size_t run_len = n;
            guint k = 1;

            limit = MIN(limit, 4096);
            if (!old) {
                old = g_new(uint64_t, 4096);
            }
            old[0] = entry;
            while (k < limit) {
                ret = lookup_checked(s, gc + k, &old[k], errp);
                if (ret < 0 || !needs_alloc(s, old[k])) {
                    break;
                }
                run_len += MIN(len - run_len, cs);
                k++;
            }
            if (ret == 0) {
                ret = write_new_run(s, gc, old, k, offset, buf, run_len, errp);
            }
            n = run_len;
        }
        offset += n;
        buf += n;
        len -= n;
    }
    return ret < 0 ? ret : 0;
}

int qcow2_write(Qcow2 *s, uint64_t offset, const void *buf, size_t len, GError **errp)
{
    int ret;

    if (len == 0) {
        return 0;
    }
    qcow2_lock_shared(s);
    ret = write_in_place(s, offset, buf, len, errp);
    qcow2_unlock_shared(s);
    if (ret != 0) {
        return ret < 0 ? ret : 0;
    }
    qcow2_lock_exclusive(s);
    ret = write_locked(s, offset, buf, len, errp);
    qcow2_unlock_exclusive(s);
    return ret;
}

/* ---- zeroes and discards ---------------------------------------------------- */

typedef enum { MODE_ZERO, MODE_ZERO_UNMAP, MODE_DISCARD } ClearMode;

/* Does an unallocated cluster read as zeroes (no backing data under it)? */
static bool hole_reads_zero(Qcow2 *s, uint64_t gc)
{
    int64_t blen;

    if (!s->has_backing) {
        return true;
    }
    blen = s->backing.length(s->backing.opaque);
    return blen >= 0 && (gc << s->cluster_bits) >= (uint64_t) blen;
}

/* The new entry for a whole cluster, or `old` itself when nothing changes;
 * *write_zeroes when zeroes must be written instead (v2). */
static uint64_t cleared_entry(Qcow2 *s, uint64_t gc, uint64_t old, ClearMode mode,
                              bool *write_zeroes)
{
    Qcow2ClusterType t = qcow2_l2_type(s, old);
    bool hole_zero = hole_reads_zero(s, gc);

    *write_zeroes = false;
    if (t == QCOW2_CL_UNALLOCATED && hole_zero) {
        return old;
    }
    if (s->version < 3) {
        if (mode == MODE_DISCARD || (mode == MODE_ZERO_UNMAP && hole_zero)) {
            return 0;
        }
        *write_zeroes = true;
        return old;
    }
    if (t == QCOW2_CL_ZERO_PLAIN) {
        return old;
    }
    if (mode == MODE_ZERO && (t == QCOW2_CL_NORMAL || t == QCOW2_CL_ZERO_ALLOC) &&
        (old & QCOW2_OFLAG_COPIED)) {
        return (old & QCOW2_OFFSET_MASK) | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO;
    }
    return QCOW2_OFLAG_ZERO;
}

/* Whole clusters [gc, gc + k) within one L2 table. */
static int clear_run(Qcow2 *s, uint64_t gc, guint k, ClearMode mode, GError **errp)
{
    g_autofree uint64_t *old = g_new(uint64_t, k);
    g_autofree uint64_t *fresh = g_new(uint64_t, k);
    g_autofree uint8_t *zeroes = NULL;
    bool changed = false;
    int ret;

    for (guint i = 0; i < k; i++) {
        bool wz;
        ret = lookup_checked(s, gc + i, &old[i], errp);
        if (ret < 0) {
            return ret;
        }
        fresh[i] = cleared_entry(s, gc + i, old[i], mode, &wz);
        if (wz) {
            if (!zeroes) {
                zeroes = g_malloc0(s->cluster_size);
            }
            ret = write_locked(s, (gc + i) << s->cluster_bits, zeroes, s->cluster_size, errp);
            if (ret < 0) {
                return ret;
            }
            /* The entry may have changed: keep the new one. */
            ret = lookup_checked(s, gc + i, &old[i], errp);
            if (ret < 0) {
                return ret;
            }
            fresh[i] = old[i];
        }
        changed |= fresh[i] != old[i];
    }
    if (!changed) {
        return 0;
    }
    ret = qcow2_l2_set(s, gc, fresh, k, errp);
    for (guint i = 0; i < k && ret == 0; i++) {
        bool kept = (fresh[i] & QCOW2_OFFSET_MASK) &&
                    (fresh[i] & QCOW2_OFFSET_MASK) == (old[i] & QCOW2_OFFSET_MASK) &&
                    !(old[i] & QCOW2_OFLAG_COMPRESSED);
        if (fresh[i] != old[i] && !kept) {
            ret = qcow2_free_entry(s, old[i], errp);
        }
    }
    return ret;
}

static int clear_clusters(Qcow2 *s, uint64_t first, uint64_t end, ClearMode mode,
                          GError **errp)
{
    while (first < end) {
        guint k = MIN(end - first, s->l2_entries - first % s->l2_entries);
        int ret = clear_run(s, first, k, mode, errp);
        if (ret < 0) {
            return ret;
        }
        first += k;
    }
    return 0;
}

/* Zero part of one cluster: nothing if it reads as zeroes already. */
static int zero_partial(Qcow2 *s, uint64_t offset, size_t len, GError **errp)
{
    uint64_t gc = offset >> s->cluster_bits, entry;
    Qcow2ClusterType t;
    g_autofree uint8_t *zeroes = NULL;
    int ret = lookup_checked(s, gc, &entry, errp);

    if (ret < 0) {
        return ret;
    }
    t = qcow2_l2_type(s, entry);
    if (t == QCOW2_CL_ZERO_PLAIN || t == QCOW2_CL_ZERO_ALLOC ||
        (t == QCOW2_CL_UNALLOCATED && hole_reads_zero(s, gc))) {
        return 0;
    }
    zeroes = g_malloc0(len);
    return write_locked(s, offset, zeroes, len, errp);
}

/* The whole clusters of [offset, offset + len); the disk's last, partial
 * cluster counts as whole when the range reaches the end. */
static void whole_clusters(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *first,
                           uint64_t *end)
{
    uint64_t cs = s->cluster_size, stop = offset + len;

    *first = (offset + cs - 1) >> s->cluster_bits;
    *end = (stop >= s->size ? stop + cs - 1 : stop) >> s->cluster_bits;
    if (*end < *first) {
        *end = *first;
    }
}

int qcow2_write_zeroes(Qcow2 *s, uint64_t offset, uint64_t len, bool may_unmap,
                       GError **errp)
{
    uint64_t cs = s->cluster_size, first, end;
    int ret = 0;

    if (len == 0) {
        return 0;
    }
    whole_clusters(s, offset, len, &first, &end);
    qcow2_lock_exclusive(s);
    {
        /* Partial clusters at either end, each within one cluster. */
        uint64_t stop = offset + len;
        uint64_t head_end = MIN(first * cs, stop), tail = MAX(end * cs, head_end);
        if (offset < head_end) {
            ret = zero_partial(s, offset, head_end - offset, errp);
        }
        if (ret == 0 && first < end) {
            ret = clear_clusters(s, first, end, may_unmap ? MODE_ZERO_UNMAP : MODE_ZERO, errp);
        }
        if (ret == 0 && tail < stop) {
            ret = zero_partial(s, tail, stop - tail, errp);
        }
    }
    qcow2_unlock_exclusive(s);
    return ret;
}

int qcow2_discard(Qcow2 *s, uint64_t offset, uint64_t len, GError **errp)
{
    uint64_t first, end;
    int ret;

    if (len == 0) {
        return 0;
    }
    whole_clusters(s, offset, len, &first, &end);
    qcow2_lock_exclusive(s);
    ret = clear_clusters(s, first, end, MODE_DISCARD, errp);
    qcow2_unlock_exclusive(s);
    return ret;
}

int qcow2_flush(Qcow2 *s, GError **errp)
{
    /* Metadata is written through: syncing the file makes every finished
     * request durable, in the order it was written. */
    return qcow2_sync(s, errp);
}
