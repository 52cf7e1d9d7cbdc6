/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 bitmaps extension (qcow2-bitmaps.h), reading side: the
 * extension's payload and the directory it points at are checked against
 * the file and QEMU's limits before anything is sized from them; a
 * writable open then sets every bitmap's in-use flag where it is (the one
 * write in place of the extension); a bitmap's table and data clusters are
 * read into a sparse bit array. Bitmap data is little-endian within each
 * byte: bit 0 of byte 0 is the first granule of the disk. Writing is in
 * qcow2-bitmaps-store.c.
 */
#include "block/qcow2-bitmaps-int.h"

int qcow2_bm_fail(GError **errp, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "qcow2: bitmaps: %s", msg);
    return -EINVAL;
}

static void entry_clear(gpointer p)
{
    g_free(((Qcow2BmEntry *) p)->name);
}

GArray *qcow2_bm_entries_new(void)
{
    GArray *a = g_array_new(FALSE, TRUE, sizeof(Qcow2BmEntry));
    g_array_set_clear_func(a, entry_clear);
    return a;
}

static uint64_t dir_bytes(GArray *entries)
{
    uint64_t n = 0;
    for (guint i = 0; i < entries->len; i++) {
        n += qcow2_bm_entry_bytes(strlen(g_array_index(entries, Qcow2BmEntry, i).name));
    }
    return n;
}

uint8_t *qcow2_bm_build_dir(Qcow2 *s, GArray *entries, uint64_t *size, uint64_t *padded)
{
    *size = dir_bytes(entries);
    *padded = MAX((*size + s->cluster_size - 1) & ~((uint64_t) s->cluster_size - 1),
                  s->cluster_size);
    uint8_t *buf = g_malloc0(*padded), *p = buf;

    for (guint i = 0; i < entries->len; i++) {
        const Qcow2BmEntry *e = &g_array_index(entries, Qcow2BmEntry, i);
        size_t len = strlen(e->name);
        qcow2_bm_put64(p, e->table_offset);
        qcow2_bm_put32(p + 8, e->table_size);
        qcow2_bm_put32(p + 12, e->flags);
        p[16] = TYPE_DIRTY_TRACKING;
        p[17] = e->granularity_bits;
        p[18] = (uint8_t) (len >> 8);
        p[19] = (uint8_t) len;
        memcpy(p + ENTRY_FIXED, e->name, len);
        p += qcow2_bm_entry_bytes(len);
    }
    return buf;
}

int qcow2_bm_read_table(Qcow2 *s, const Qcow2BmEntry *e, uint64_t **table, GError **errp)
{
    *table = g_malloc((size_t) e->table_size * 8);
    int ret = qcow2_pread(s, e->table_offset, *table, (size_t) e->table_size * 8, errp);
    if (ret < 0) {
        g_clear_pointer(table, g_free);
    }
    return ret;
}

bool qcow2_bitmaps_parse_ext(Qcow2 *s, const uint8_t *data, uint32_t len, GError **errp)
{
    if (len != EXT_LEN) {
        qcow2_bm_fail(errp, "the extension has %u bytes, not %u", len, EXT_LEN);
        return false;
    }
    if (!s->bitmaps) {
        s->bitmaps = g_new0(Qcow2BitmapDir, 1);
    }
    s->bitmaps->ext_seen = true;
    s->bitmaps->nb = qcow2_be32_at(data);
    s->bitmaps->dir_size = qcow2_be64_at(data + 8);
    s->bitmaps->dir_offset = qcow2_be64_at(data + 16);
    if (qcow2_be32_at(data + 4) != 0) {
        qcow2_bm_fail(errp, "reserved field of the extension is not zero");
        return false;
    }
    return true;
}

static bool in_file(Qcow2 *s, uint64_t offset, uint64_t len)
{
    int64_t flen = s->file.length(s->file.opaque);
    return flen >= 0 && offset <= (uint64_t) flen && len <= (uint64_t) flen - offset;
}

static int parse_dir(Qcow2 *s, const uint8_t *buf, uint64_t size, uint32_t nb, GArray *out,
                     GError **errp)
{
    uint64_t pos = 0;

    for (uint32_t i = 0; i < nb; i++) {
        Qcow2BmEntry e = { 0 };
        if (size - pos < ENTRY_FIXED) {
            return qcow2_bm_fail(errp, "directory entry %u overruns the directory", i);
        }
        const uint8_t *p = buf + pos;
        uint32_t name_size = (uint32_t) p[18] << 8 | p[19];
        uint32_t extra = qcow2_be32_at(p + 20);
        e.table_offset = qcow2_be64_at(p);
        e.table_size = qcow2_be32_at(p + 8);
        e.flags = qcow2_be32_at(p + 12);
        e.granularity_bits = p[17];
        if (name_size == 0 || name_size > MAX_NAME) {
            return qcow2_bm_fail(errp, "directory entry %u has a name of %u bytes", i, name_size);
        }
        if (extra != 0) {
            return qcow2_bm_fail(errp, "directory entry %u has extra data, which is not supported", i);
        }
        if (qcow2_bm_entry_bytes(name_size) > size - pos) {
            return qcow2_bm_fail(errp, "directory entry %u overruns the directory", i);
        }
        if (p[16] != TYPE_DIRTY_TRACKING) {
            return qcow2_bm_fail(errp, "directory entry %u has an unknown type %u", i, p[16]);
        }
        if (e.granularity_bits < 9 || e.granularity_bits > 31) {
            return qcow2_bm_fail(errp, "directory entry %u has a granularity of 2^%u", i,
                       e.granularity_bits);
        }
        uint64_t nbits = qcow2_bm_bits(s, e.granularity_bits);
        if (nbits > BERTH_BITMAP_MAX_BITS || (nbits + 7) / 8 > MAX_BITMAP_BYTES ||
            e.table_size > MAX_TABLE_ENTRIES) {
            return qcow2_bm_fail(errp, "directory entry %u: a bitmap of %" G_GUINT64_FORMAT
                       " bits is too large", i, nbits);
        }
        if (e.table_size != qcow2_bm_table_entries(s, e.granularity_bits) ||
            (e.table_offset & (s->cluster_size - 1)) || e.table_offset == 0 ||
            !in_file(s, e.table_offset, (uint64_t) e.table_size * 8)) {
            return qcow2_bm_fail(errp, "directory entry %u has an invalid bitmap table", i);
        }
        e.name = g_strndup((const char *) p + ENTRY_FIXED, name_size);
        if (strlen(e.name) != name_size) {
            g_free(e.name);
            return qcow2_bm_fail(errp, "directory entry %u has a name with a NUL byte", i);
        }
        for (guint k = 0; k < out->len; k++) {
            if (strcmp(g_array_index(out, Qcow2BmEntry, k).name, e.name) == 0) {
                int ret = qcow2_bm_fail(errp, "two bitmaps are named '%s'", e.name);
                g_free(e.name);
                return ret;
            }
        }
        e.stale = e.flags & FLAG_IN_USE;
        g_array_append_val(out, e);
        pos += qcow2_bm_entry_bytes(name_size);
    }
    return 0;
}

bool qcow2_bitmaps_open(Qcow2 *s, GError **errp)
{
    Qcow2BitmapDir *d = s->bitmaps;

    if (!d || !d->ext_seen) {
        return true;
    }
    if (s->version < 3 || !(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* Another program changed the image since: the bitmaps are stale
         * and everyone ignores them; the next update drops the extension. */
        g_message("qcow2: the image's bitmaps were invalidated by a program without "
                  "bitmap support; they are ignored");
        return true;
    }
    if (d->nb == 0 || d->nb > MAX_BITMAPS || d->dir_size > MAX_DIR_SIZE ||
        d->dir_size < (uint64_t) d->nb * ENTRY_FIXED ||
        (d->dir_offset & (s->cluster_size - 1)) || d->dir_offset == 0 ||
        !in_file(s, d->dir_offset, d->dir_size)) {
        qcow2_bm_fail(errp, "invalid directory (%u bitmaps, %" G_GUINT64_FORMAT " bytes at %"
            G_GUINT64_FORMAT ")", d->nb, d->dir_size, d->dir_offset);
        return false;
    }
    g_autofree uint8_t *buf = g_malloc(d->dir_size);
    g_autoptr(GArray) entries = qcow2_bm_entries_new();
    if (qcow2_pread(s, d->dir_offset, buf, d->dir_size, errp) < 0 ||
        parse_dir(s, buf, d->dir_size, d->nb, entries, errp) < 0) {
        return false;
    }
    d->entries = g_steal_pointer(&entries);
    if (!s->writable) {
        return true;
    }
    /* Mark them in use where they are, as QEMU does: a crash from now on
     * leaves them marked. */
    bool change = false;
    for (guint i = 0; i < d->entries->len; i++) {
        Qcow2BmEntry *e = &g_array_index(d->entries, Qcow2BmEntry, i);
        change |= !(e->flags & FLAG_IN_USE);
        e->flags |= FLAG_IN_USE;
    }
    if (change) {
        uint64_t size, padded;
        g_autofree uint8_t *out = qcow2_bm_build_dir(s, d->entries, &size, &padded);
        /* The entries as parsed never take more room than they had. */
        g_assert(size <= d->dir_size);
        if (qcow2_pwrite(s, d->dir_offset, out, size, errp) < 0 || qcow2_sync(s, errp) < 0) {
            return false;
        }
    }
    return true;
}

uint64_t qcow2_bitmaps_autoclear(Qcow2 *s)
{
    return s->bitmaps && s->bitmaps->entries && s->bitmaps->entries->len
           ? QCOW2_AUTOCLEAR_BITMAPS : 0;
}

void qcow2_bitmaps_free(Qcow2 *s)
{
    if (s->bitmaps) {
        if (s->bitmaps->entries) {
            g_array_free(s->bitmaps->entries, TRUE);
        }
        g_free(s->bitmaps);
        s->bitmaps = NULL;
    }
}

void qcow2_bitmap_info_clear(Qcow2BitmapInfo *info)
{
    g_clear_pointer(&info->name, g_free);
}

GArray *qcow2_bitmaps_list(Qcow2 *s)
{
    GArray *out = g_array_new(FALSE, TRUE, sizeof(Qcow2BitmapInfo));

    g_array_set_clear_func(out, (GDestroyNotify) qcow2_bitmap_info_clear);
    qcow2_lock_shared(s);
    for (guint i = 0; s->bitmaps && s->bitmaps->entries && i < s->bitmaps->entries->len; i++) {
        const Qcow2BmEntry *e = &g_array_index(s->bitmaps->entries, Qcow2BmEntry, i);
        Qcow2BitmapInfo info = {
            .name = g_strdup(e->name),
            .granularity = UINT32_C(1) << e->granularity_bits,
            .in_use = e->flags & FLAG_IN_USE,
            .enabled = e->flags & FLAG_AUTO,
            .stale = e->stale,
        };
        g_array_append_val(out, info);
    }
    qcow2_unlock_shared(s);
    return out;
}

/* --- bits <-> clusters ----------------------------------------------------- */

/* Set bits of the cluster buffer's bits [first, first + n) from the image's data. */
static void bits_from_buf(BerthBitmap *b, uint64_t base, const uint8_t *buf, uint64_t nbits)
{
    for (uint64_t w = 0; w * 64 < nbits; w++) {
        uint64_t word;
        memcpy(&word, buf + w * 8, 8);
        word = GUINT64_FROM_LE(word);
        if (!word) {
            continue;
        }
        if (word == UINT64_MAX) {
            berth_bitmap_set(b, base + w * 64, MIN(64, nbits - w * 64));
            continue;
        }
        for (unsigned k = 0; k < 64 && w * 64 + k < nbits; k++) {
            if (word & (UINT64_C(1) << k)) {
                berth_bitmap_set(b, base + w * 64 + k, 1);
            }
        }
    }
}

BerthBitmap *qcow2_bitmap_load(Qcow2 *s, guint index, GError **errp)
{
    g_autofree uint64_t *table = NULL;
    g_autofree uint8_t *buf = NULL;
    BerthBitmap *b = NULL;
    uint64_t per_cluster = (uint64_t) s->cluster_size * 8;

    qcow2_lock_exclusive(s);
    const Qcow2BmEntry *e = &g_array_index(s->bitmaps->entries, Qcow2BmEntry, index);
    uint64_t nbits = qcow2_bm_bits(s, e->granularity_bits);
    if (qcow2_bm_read_table(s, e, &table, errp) < 0) {
        goto out;
    }
    b = berth_bitmap_new(nbits);
    buf = g_malloc(s->cluster_size);
    for (uint32_t i = 0; i < e->table_size; i++) {
        uint64_t te = qcow2_be64(table[i]), off = te & TABLE_OFFSET_MASK;
        uint64_t base = i * per_cluster, n = MIN(per_cluster, nbits - base);
        if ((te & TABLE_RESERVED) || (off & (s->cluster_size - 1)) ||
            (off && (qcow2_overlaps_metadata(s, off, s->cluster_size) ||
                     !in_file(s, off, s->cluster_size)))) {
            qcow2_bm_fail(errp, "bitmap '%s': invalid table entry %u (0x%" G_GINT64_MODIFIER "x)",
                e->name, i, te);
            goto fail;
        }
        if (!off) {
            if (te & TABLE_ALL_ONES) {
                berth_bitmap_set(b, base, n);
            }
            continue;
        }
        if (qcow2_pread(s, off, buf, s->cluster_size, errp) < 0) {
            goto fail;
        }
        bits_from_buf(b, base, buf, n);
    }
    goto out;
fail:
    g_clear_pointer(&b, berth_bitmap_free);
out:
    qcow2_unlock_exclusive(s);
    return b;
}

bool qcow2_bitmaps_can_add(Qcow2 *s, const char *name, uint32_t granularity,
                           const char *const *existing, guint n, GError **errp)
{
    unsigned gbits = (unsigned) __builtin_ctz(granularity);
    uint64_t bytes = ((s->size + granularity - 1) / granularity + 7) / 8;
    uint64_t dir = qcow2_bm_entry_bytes(strlen(name));

    for (guint i = 0; i < n; i++) {
        dir += qcow2_bm_entry_bytes(strlen(existing[i]));
    }
    if (s->version < 3) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot store dirty bitmaps in qcow2 v2 files");
    } else if (gbits < 9) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Granularity is under minimum (512 bytes)");
    } else if (bytes > MAX_BITMAP_BYTES ||
               bytes > (uint64_t) MAX_TABLE_ENTRIES * s->cluster_size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Too much space will be occupied by the bitmap. Use larger granularity");
    } else if (strlen(name) > MAX_NAME) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Name length exceeds maximum (%u characters)", MAX_NAME);
    } else if (n + 1 > MAX_BITMAPS) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "Maximum number of persistent bitmaps is already reached");
    } else if (dir > MAX_DIR_SIZE) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "Not enough space in the bitmap directory");
    } else {
        return true;
    }
    return false;
}

