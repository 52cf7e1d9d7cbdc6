/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writing the qcow2 bitmaps extension (qcow2-bitmaps.h): a bitmap's data
 * clusters (all-clear ones are left out, as the format allows) and its
 * table go to newly allocated clusters, then a new directory; after a sync
 * the header cluster is rebuilt to point at it (the other extensions and
 * the backing file name carried over, the bitmaps extension replaced, or
 * dropped with its autoclear bit when no bitmap is left), synced again,
 * and only then are the replaced clusters freed, so a crash at any write
 * leaves the old bitmaps or the new ones and leaked clusters at worst.
 */
#include "block/qcow2-bitmaps-int.h"

/* The bits [base, base + nbits) as bytes; false if they are all clear. */
static bool bits_to_buf(const BerthBitmap *b, uint64_t base, uint8_t *buf, uint64_t nbits)
{
    uint64_t end = base + nbits, bit = berth_bitmap_next_set(b, base);

    if (bit >= end) {
        return false;
    }
    while (bit < end) {
        uint64_t stop = MIN(berth_bitmap_next_clear(b, bit), end);
        for (uint64_t i = bit - base; i < stop - base; i++) {
            buf[i / 8] |= (uint8_t) (1u << (i % 8));
        }
        bit = stop < end ? berth_bitmap_next_set(b, stop) : end;
    }
    return true;
}

/*
 * Point the header at a directory (nb 0: no extension, autoclear bit off):
 * cluster 0 is rebuilt with the other extensions and the backing file name
 * carried over, and written whole.
 */
static int write_header(Qcow2 *s, uint32_t nb, uint64_t dir_size, uint64_t dir_offset,
                        GError **errp)
{
    g_autofree uint8_t *in = g_malloc(s->cluster_size);
    g_autofree uint8_t *out = g_malloc0(s->cluster_size);
    uint64_t cs = s->cluster_size;
    int ret = qcow2_pread(s, 0, in, cs, errp);

    if (ret < 0) {
        return ret;
    }
    uint64_t backing_off = qcow2_be64_at(in + 8), limit = backing_off && backing_off < cs ? backing_off : cs;
    uint32_t backing_len = qcow2_be32_at(in + 16);
    uint64_t ipos = s->header_length, opos = s->header_length;

    memcpy(out, in, s->header_length);
    while (ipos + 8 <= limit) {
        uint32_t type = qcow2_be32_at(in + ipos), len = qcow2_be32_at(in + ipos + 4);
        uint64_t total = 8 + ((len + UINT64_C(7)) & ~UINT64_C(7));
        if (type == 0) {
            break;
        }
        if (total > limit - ipos) {
            return qcow2_bm_fail(errp, "header extension 0x%x overruns the header cluster", type);
        }
        if (type != EXT_BITMAPS) {
            memcpy(out + opos, in + ipos, total);
            opos += total;
        }
        ipos += total;
    }
    if (nb) {
        qcow2_bm_put32(out + opos, EXT_BITMAPS);
        qcow2_bm_put32(out + opos + 4, EXT_LEN);
        qcow2_bm_put32(out + opos + 8, nb);
        qcow2_bm_put64(out + opos + 16, dir_size);
        qcow2_bm_put64(out + opos + 24, dir_offset);
        opos += 8 + EXT_LEN;
    }
    opos += 8;                              /* the end marker, zeroes */
    if (backing_off) {
        if (backing_off >= cs || backing_len > cs - backing_off || backing_len > cs - opos) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                        "qcow2: no room in the header cluster for the bitmaps extension");
            return -ENOSPC;
        }
        memcpy(out + opos, in + backing_off, backing_len);
        qcow2_bm_put64(out + 8, opos);
        opos += backing_len;
    } else if (opos > cs) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "qcow2: no room in the header cluster for the bitmaps extension");
        return -ENOSPC;
    }
    uint64_t autoclear = (s->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS) |
                         (nb ? QCOW2_AUTOCLEAR_BITMAPS : 0);
    qcow2_bm_put64(out + QCOW2_HDR_AUTOCLEAR, autoclear);
    ret = qcow2_pwrite(s, 0, out, cs, errp);
    if (ret < 0) {
        return ret;
    }
    s->autoclear = autoclear;
    return 0;
}

/* Give back what an entry owns (best effort after the header switched). */
static int free_entry(Qcow2 *s, const Qcow2BmEntry *e, GError **errp)
{
    g_autofree uint64_t *table = NULL;
    int ret = qcow2_bm_read_table(s, e, &table, errp);

    for (uint32_t i = 0; ret == 0 && i < e->table_size; i++) {
        uint64_t off = qcow2_be64(table[i]) & TABLE_OFFSET_MASK;
        if (off) {
            ret = qcow2_free_range(s, off, s->cluster_size, errp);
        }
    }
    return ret < 0 ? ret : qcow2_free_range(s, e->table_offset, (uint64_t) e->table_size * 8,
                                            errp);
}

/* Data clusters and the table of one bitmap, in new clusters. */
static int write_bitmap(Qcow2 *s, const Qcow2BitmapStore *v, Qcow2BmEntry *e, GError **errp)
{
    unsigned gbits = (unsigned) __builtin_ctz(v->granularity);
    uint64_t nbits = qcow2_bm_bits(s, gbits), per_cluster = (uint64_t) s->cluster_size * 8;
    uint32_t n = qcow2_bm_table_entries(s, gbits);
    uint64_t tclusters = ((uint64_t) n * 8 + s->cluster_size - 1) / s->cluster_size;
    g_autofree uint64_t *table = g_malloc0(tclusters * s->cluster_size);
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int ret = 0;

    if (berth_bitmap_size(v->bits) != nbits) {
        return qcow2_bm_fail(errp, "bitmap '%s' has %" G_GUINT64_FORMAT " bits, not %"
                             G_GUINT64_FORMAT, v->name, berth_bitmap_size(v->bits), nbits);
    }
    e->table_offset = 0;
    for (uint32_t i = 0; i < n && ret == 0; i++) {
        uint64_t base = i * per_cluster;
        memset(buf, 0, s->cluster_size);
        if (!bits_to_buf(v->bits, base, buf, MIN(per_cluster, nbits - base))) {
            continue;
        }
        int64_t off = qcow2_alloc_clusters(s, 1, errp);
        if (off < 0) {
            ret = (int) off;
            break;
        }
        table[i] = GUINT64_TO_BE((uint64_t) off);
        ret = qcow2_pwrite(s, (uint64_t) off, buf, s->cluster_size, errp);
    }
    if (ret == 0) {
        int64_t off = qcow2_alloc_clusters(s, tclusters, errp);
        ret = off < 0 ? (int) off
              : qcow2_pwrite(s, (uint64_t) off, table, tclusters * s->cluster_size, errp);
        if (off >= 0) {
            e->table_offset = (uint64_t) off;
        }
    }
    if (ret < 0) {
        for (uint32_t i = 0; i < n; i++) {
            if (table[i]) {
                qcow2_free_range(s, qcow2_be64(table[i]), s->cluster_size, NULL);
            }
        }
        if (e->table_offset) {
            qcow2_free_range(s, e->table_offset, tclusters * s->cluster_size, NULL);
        }
        return ret;
    }
    e->table_size = n;
    e->granularity_bits = (uint8_t) gbits;
    e->flags = v->enabled ? FLAG_AUTO : 0;
    e->stale = false;
    return 0;
}

/*
 * Switch the image to `entries` (new: written, not yet pointed at). On
 * success the old directory and the `dropped` entries are freed. On a
 * failure before the header was written the image is as it was; once its
 * write was tried (*tried), the header may point at either directory, so
 * nothing of either is freed (they leak).
 */
static int commit_dir(Qcow2 *s, GArray *entries, GArray *dropped, bool *tried,
                      GError **errp)
{
    Qcow2BitmapDir *d = s->bitmaps;
    uint64_t size = 0, padded = 0, off = 0;
    int ret = 0;

    if (entries->len) {
        g_autofree uint8_t *buf = qcow2_bm_build_dir(s, entries, &size, &padded);
        int64_t o = qcow2_alloc_clusters(s, padded / s->cluster_size, errp);
        if (o < 0) {
            return (int) o;
        }
        off = (uint64_t) o;
        ret = qcow2_pwrite(s, off, buf, padded, errp);
    }
    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    *tried = false;
    if (ret == 0) {
        *tried = true;
        ret = write_header(s, entries->len, size, off, errp);
    }
    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    if (ret < 0) {
        if (off && !*tried) {
            qcow2_free_range(s, off, padded, NULL);
        }
        return ret;
    }
    /* The header points at the new directory: the old clusters can go. */
    uint64_t old_off = d->entries && d->entries->len ? d->dir_offset : 0;
    uint64_t old_size = d->dir_size;
    d->dir_offset = off;
    d->dir_size = size;
    d->nb = entries->len;
    d->ext_seen = entries->len > 0;
    if (d->entries) {
        g_array_free(d->entries, TRUE);
    }
    d->entries = g_array_ref(entries);
    for (guint i = 0; dropped && i < dropped->len && ret == 0; i++) {
        ret = free_entry(s, &g_array_index(dropped, Qcow2BmEntry, i), errp);
    }
    if (ret == 0 && old_off) {
        ret = qcow2_free_range(s, old_off, old_size, errp);
    }
    if (ret < 0) {
        g_prefix_error(errp, "(the image leaks clusters) ");
    }
    return ret;
}

static Qcow2BmEntry entry_copy(const Qcow2BmEntry *e)
{
    Qcow2BmEntry c = *e;
    c.name = g_strdup(e->name);
    return c;
}

int qcow2_bitmaps_remove(Qcow2 *s, const char *name, GError **errp)
{
    int ret = 0;

    qcow2_lock_exclusive(s);
    Qcow2BitmapDir *d = s->bitmaps;
    if (d && d->entries) {
        g_autoptr(GArray) keep = qcow2_bm_entries_new(), dropped = qcow2_bm_entries_new();
        for (guint i = 0; i < d->entries->len; i++) {
            const Qcow2BmEntry *e = &g_array_index(d->entries, Qcow2BmEntry, i);
            Qcow2BmEntry c = entry_copy(e);
            g_array_append_val(strcmp(e->name, name) == 0 ? dropped : keep, c);
        }
        bool tried = false;
        if (dropped->len) {
            ret = commit_dir(s, keep, dropped, &tried, errp);
        }
    }
    qcow2_unlock_exclusive(s);
    return ret;
}

int qcow2_bitmaps_store(Qcow2 *s, const Qcow2BitmapStore *v, guint n, GError **errp)
{
    int ret = 0;

    if (n == 0) {
        return 0;
    }
    qcow2_lock_exclusive(s);
    if (!s->bitmaps) {
        s->bitmaps = g_new0(Qcow2BitmapDir, 1);
    }
    Qcow2BitmapDir *d = s->bitmaps;
    g_autoptr(GArray) entries = qcow2_bm_entries_new(), dropped = qcow2_bm_entries_new();
    g_autoptr(GArray) written = qcow2_bm_entries_new();

    for (guint i = 0; i < n && ret == 0; i++) {
        Qcow2BmEntry e = { .name = g_strdup(v[i].name) };
        ret = write_bitmap(s, &v[i], &e, errp);
        if (ret < 0) {
            g_free(e.name);
            break;
        }
        g_array_append_val(written, e);
    }
    if (ret == 0) {
        /* The image's entries keep their places, replaced where stored
         * again; the other new ones follow, as QEMU orders them. */
        g_autofree bool *placed = g_new0(bool, written->len);
        for (guint i = 0; d->entries && i < d->entries->len; i++) {
            const Qcow2BmEntry *old = &g_array_index(d->entries, Qcow2BmEntry, i);
            guint k = 0;
            while (k < written->len && strcmp(g_array_index(written, Qcow2BmEntry, k).name,
                                              old->name) != 0) {
                k++;
            }
            Qcow2BmEntry c = entry_copy(old);
            if (k < written->len) {
                g_array_append_val(dropped, c);
                c = entry_copy(&g_array_index(written, Qcow2BmEntry, k));
                placed[k] = true;
            }
            g_array_append_val(entries, c);
        }
        for (guint k = 0; k < written->len; k++) {
            if (!placed[k]) {
                Qcow2BmEntry c = entry_copy(&g_array_index(written, Qcow2BmEntry, k));
                g_array_append_val(entries, c);
            }
        }
        bool tried = false;
        ret = commit_dir(s, entries, dropped, &tried, errp);
        if (tried) {
            /* The header may point at the new clusters: never free them. */
            g_array_set_size(written, 0);
        }
    }
    if (ret < 0) {
        /* Not pointed at: give the new clusters back. */
        for (guint k = 0; k < written->len; k++) {
            free_entry(s, &g_array_index(written, Qcow2BmEntry, k), NULL);
        }
    }
    qcow2_unlock_exclusive(s);
    return ret;
}
