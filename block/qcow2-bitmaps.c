/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 bitmaps extension (qcow2-bitmaps.h): parsing and checking the
 * directory the header points at, reading a bitmap's table and data into a
 * sparse bit array, and writing bitmaps back. Every update allocates new
 * clusters for what it writes and switches the header's extension to them
 * after a sync, freeing the old clusters last (a crash leaks at worst); the
 * one write in place is the in-use flag set at open. The header cluster is
 * rebuilt from the file each time: the other extensions and the backing
 * file name are carried over, the bitmaps extension replaced or dropped.
 * Bitmap data is little-endian within each byte: bit 0 of byte 0 is the
 * first granule of the disk.
 */
#include "block/qcow2-int.h"
#include "block/qcow2-bitmaps.h"

#define EXT_BITMAPS 0x23852875u
#define EXT_LEN 24

#define FLAG_IN_USE 1u
#define FLAG_AUTO 2u
#define TYPE_DIRTY_TRACKING 1

/* QEMU's limits. */
#define MAX_BITMAPS 65535u
#define MAX_DIR_SIZE (UINT64_C(1024) * MAX_BITMAPS)
#define MAX_NAME 1023u
#define MAX_TABLE_ENTRIES 0x8000000u
#define MAX_BITMAP_BYTES UINT64_C(0x20000000)
#define ENTRY_FIXED 24

/* Bitmap table entries: bits 9-55 are the cluster; bit 0 with no cluster
 * means all ones; the rest is reserved. */
#define TABLE_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define TABLE_ALL_ONES UINT64_C(1)
#define TABLE_RESERVED UINT64_C(0xff000000000001fe)

typedef struct Entry {
    char *name;
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    uint32_t flags;
    uint8_t granularity_bits;
    bool stale;                 /* in use when opened */
} Entry;

typedef struct Qcow2BitmapDir {
    bool ext_seen;
    uint32_t nb;
    uint64_t dir_size, dir_offset;
    GArray *entries;            /* Entry, directory order; NULL: none loaded */
} Qcow2BitmapDir;

static int bad(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int bad(GError **errp, const char *fmt, ...)
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
    g_free(((Entry *) p)->name);
}

static GArray *entries_new(void)
{
    GArray *a = g_array_new(FALSE, TRUE, sizeof(Entry));
    g_array_set_clear_func(a, entry_clear);
    return a;
}

static uint64_t entry_bytes(size_t name_len)
{
    return (ENTRY_FIXED + name_len + 7) & ~UINT64_C(7);
}

static uint64_t bitmap_bits(Qcow2 *s, unsigned gbits)
{
    return MAX((s->size + (UINT64_C(1) << gbits) - 1) >> gbits, 1);
}

static uint32_t table_entries(Qcow2 *s, unsigned gbits)
{
    uint64_t bytes = (bitmap_bits(s, gbits) + 7) / 8;
    return (uint32_t) MIN((bytes + s->cluster_size - 1) / s->cluster_size, UINT32_MAX);
}

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return GUINT32_FROM_BE(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return GUINT64_FROM_BE(v); }
static void put32(uint8_t *p, uint32_t v) { v = GUINT32_TO_BE(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }

bool qcow2_bitmaps_parse_ext(Qcow2 *s, const uint8_t *data, uint32_t len, GError **errp)
{
    if (len != EXT_LEN) {
        bad(errp, "the extension has %u bytes, not %u", len, EXT_LEN);
        return false;
    }
    if (!s->bitmaps) {
        s->bitmaps = g_new0(Qcow2BitmapDir, 1);
    }
    s->bitmaps->ext_seen = true;
    s->bitmaps->nb = get32(data);
    s->bitmaps->dir_size = get64(data + 8);
    s->bitmaps->dir_offset = get64(data + 16);
    if (get32(data + 4) != 0) {
        bad(errp, "reserved field of the extension is not zero");
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
        Entry e = { 0 };
        if (size - pos < ENTRY_FIXED) {
            return bad(errp, "directory entry %u overruns the directory", i);
        }
        const uint8_t *p = buf + pos;
        uint32_t name_size = (uint32_t) p[18] << 8 | p[19];
        uint32_t extra = get32(p + 20);
        e.table_offset = get64(p);
        e.table_size = get32(p + 8);
        e.flags = get32(p + 12);
        e.granularity_bits = p[17];
        if (name_size == 0 || name_size > MAX_NAME) {
            return bad(errp, "directory entry %u has a name of %u bytes", i, name_size);
        }
        if (extra != 0) {
            return bad(errp, "directory entry %u has extra data, which is not supported", i);
        }
        if (entry_bytes(name_size) > size - pos) {
            return bad(errp, "directory entry %u overruns the directory", i);
        }
        if (p[16] != TYPE_DIRTY_TRACKING) {
            return bad(errp, "directory entry %u has an unknown type %u", i, p[16]);
        }
        if (e.granularity_bits < 9 || e.granularity_bits > 31) {
            return bad(errp, "directory entry %u has a granularity of 2^%u", i,
                       e.granularity_bits);
        }
        uint64_t nbits = bitmap_bits(s, e.granularity_bits);
        if (nbits > BERTH_BITMAP_MAX_BITS || (nbits + 7) / 8 > MAX_BITMAP_BYTES ||
            e.table_size > MAX_TABLE_ENTRIES) {
            return bad(errp, "directory entry %u: a bitmap of %" G_GUINT64_FORMAT
                       " bits is too large", i, nbits);
        }
        if (e.table_size != table_entries(s, e.granularity_bits) ||
            (e.table_offset & (s->cluster_size - 1)) || e.table_offset == 0 ||
            !in_file(s, e.table_offset, (uint64_t) e.table_size * 8)) {
            return bad(errp, "directory entry %u has an invalid bitmap table", i);
        }
        e.name = g_strndup((const char *) p + ENTRY_FIXED, name_size);
        if (strlen(e.name) != name_size) {
            g_free(e.name);
            return bad(errp, "directory entry %u has a name with a NUL byte", i);
        }
        for (guint k = 0; k < out->len; k++) {
            if (strcmp(g_array_index(out, Entry, k).name, e.name) == 0) {
                int ret = bad(errp, "two bitmaps are named '%s'", e.name);
                g_free(e.name);
                return ret;
            }
        }
        e.stale = e.flags & FLAG_IN_USE;
        g_array_append_val(out, e);
        pos += entry_bytes(name_size);
    }
    return 0;
}

static uint64_t dir_bytes(GArray *entries)
{
    uint64_t n = 0;
    for (guint i = 0; i < entries->len; i++) {
        n += entry_bytes(strlen(g_array_index(entries, Entry, i).name));
    }
    return n;
}

/* The directory as bytes, padded with zeroes to *clusters. */
static uint8_t *build_dir(Qcow2 *s, GArray *entries, uint64_t *size, uint64_t *padded)
{
    *size = dir_bytes(entries);
    *padded = MAX((*size + s->cluster_size - 1) & ~((uint64_t) s->cluster_size - 1),
                  s->cluster_size);
    uint8_t *buf = g_malloc0(*padded), *p = buf;

    for (guint i = 0; i < entries->len; i++) {
        const Entry *e = &g_array_index(entries, Entry, i);
        size_t len = strlen(e->name);
        put64(p, e->table_offset);
        put32(p + 8, e->table_size);
        put32(p + 12, e->flags);
        p[16] = TYPE_DIRTY_TRACKING;
        p[17] = e->granularity_bits;
        p[18] = (uint8_t) (len >> 8);
        p[19] = (uint8_t) len;
        memcpy(p + ENTRY_FIXED, e->name, len);
        p += entry_bytes(len);
    }
    return buf;
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
        bad(errp, "invalid directory (%u bitmaps, %" G_GUINT64_FORMAT " bytes at %"
            G_GUINT64_FORMAT ")", d->nb, d->dir_size, d->dir_offset);
        return false;
    }
    g_autofree uint8_t *buf = g_malloc(d->dir_size);
    g_autoptr(GArray) entries = entries_new();
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
        Entry *e = &g_array_index(d->entries, Entry, i);
        change |= !(e->flags & FLAG_IN_USE);
        e->flags |= FLAG_IN_USE;
    }
    if (change) {
        uint64_t size, padded;
        g_autofree uint8_t *out = build_dir(s, d->entries, &size, &padded);
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
        const Entry *e = &g_array_index(s->bitmaps->entries, Entry, i);
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

static int read_table(Qcow2 *s, const Entry *e, uint64_t **table, GError **errp)
{
    *table = g_malloc((size_t) e->table_size * 8);
    int ret = qcow2_pread(s, e->table_offset, *table, (size_t) e->table_size * 8, errp);
    if (ret < 0) {
        g_clear_pointer(table, g_free);
    }
    return ret;
}

BerthBitmap *qcow2_bitmap_load(Qcow2 *s, guint index, GError **errp)
{
    g_autofree uint64_t *table = NULL;
    g_autofree uint8_t *buf = NULL;
    BerthBitmap *b = NULL;
    uint64_t per_cluster = (uint64_t) s->cluster_size * 8;

    qcow2_lock_exclusive(s);
    const Entry *e = &g_array_index(s->bitmaps->entries, Entry, index);
    uint64_t nbits = bitmap_bits(s, e->granularity_bits);
    if (read_table(s, e, &table, errp) < 0) {
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
            bad(errp, "bitmap '%s': invalid table entry %u (0x%" G_GINT64_MODIFIER "x)",
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
    uint64_t dir = entry_bytes(strlen(name));

    for (guint i = 0; i < n; i++) {
        dir += entry_bytes(strlen(existing[i]));
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

/* --- writing ---------------------------------------------------------------- */

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
    uint64_t backing_off = get64(in + 8), limit = backing_off && backing_off < cs ? backing_off : cs;
    uint32_t backing_len = get32(in + 16);
    uint64_t ipos = s->header_length, opos = s->header_length;

    memcpy(out, in, s->header_length);
    while (ipos + 8 <= limit) {
        uint32_t type = get32(in + ipos), len = get32(in + ipos + 4);
        uint64_t total = 8 + ((len + UINT64_C(7)) & ~UINT64_C(7));
        if (type == 0) {
            break;
        }
        if (total > limit - ipos) {
            return bad(errp, "header extension 0x%x overruns the header cluster", type);
        }
        if (type != EXT_BITMAPS) {
            memcpy(out + opos, in + ipos, total);
            opos += total;
        }
        ipos += total;
    }
    if (nb) {
        put32(out + opos, EXT_BITMAPS);
        put32(out + opos + 4, EXT_LEN);
        put32(out + opos + 8, nb);
        put64(out + opos + 16, dir_size);
        put64(out + opos + 24, dir_offset);
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
        put64(out + 8, opos);
        opos += backing_len;
    } else if (opos > cs) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "qcow2: no room in the header cluster for the bitmaps extension");
        return -ENOSPC;
    }
    uint64_t autoclear = (s->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS) |
                         (nb ? QCOW2_AUTOCLEAR_BITMAPS : 0);
    put64(out + QCOW2_HDR_AUTOCLEAR, autoclear);
    ret = qcow2_pwrite(s, 0, out, cs, errp);
    if (ret < 0) {
        return ret;
    }
    s->autoclear = autoclear;
    return 0;
}

/* Give back what an entry owns (best effort after the header switched). */
static int free_entry(Qcow2 *s, const Entry *e, GError **errp)
{
    g_autofree uint64_t *table = NULL;
    int ret = read_table(s, e, &table, errp);

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
static int write_bitmap(Qcow2 *s, const Qcow2BitmapStore *v, Entry *e, GError **errp)
{
    unsigned gbits = (unsigned) __builtin_ctz(v->granularity);
    uint64_t nbits = bitmap_bits(s, gbits), per_cluster = (uint64_t) s->cluster_size * 8;
    uint32_t n = table_entries(s, gbits);
    uint64_t tclusters = ((uint64_t) n * 8 + s->cluster_size - 1) / s->cluster_size;
    g_autofree uint64_t *table = g_malloc0(tclusters * s->cluster_size);
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int ret = 0;

    if (berth_bitmap_size(v->bits) != nbits) {
        return bad(errp, "bitmap '%s' has %" G_GUINT64_FORMAT " bits, not %" G_GUINT64_FORMAT,
                   v->name, berth_bitmap_size(v->bits), nbits);
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
 * success the old directory and the `dropped` entries are freed; on failure
 * the image is as it was.
 */
static int commit_dir(Qcow2 *s, GArray *entries, GArray *dropped, GError **errp)
{
    Qcow2BitmapDir *d = s->bitmaps;
    uint64_t size = 0, padded = 0, off = 0;
    int ret = 0;

    if (entries->len) {
        g_autofree uint8_t *buf = build_dir(s, entries, &size, &padded);
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
    if (ret == 0) {
        ret = write_header(s, entries->len, size, off, errp);
    }
    if (ret == 0) {
        ret = qcow2_sync(s, errp);
    }
    if (ret < 0) {
        if (off) {
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
        ret = free_entry(s, &g_array_index(dropped, Entry, i), errp);
    }
    if (ret == 0 && old_off) {
        ret = qcow2_free_range(s, old_off, old_size, errp);
    }
    if (ret < 0) {
        g_prefix_error(errp, "(the image leaks clusters) ");
    }
    return ret;
}

static Entry entry_copy(const Entry *e)
{
    Entry c = *e;
    c.name = g_strdup(e->name);
    return c;
}

int qcow2_bitmaps_remove(Qcow2 *s, const char *name, GError **errp)
{
    int ret = 0;

    qcow2_lock_exclusive(s);
    Qcow2BitmapDir *d = s->bitmaps;
    if (d && d->entries) {
        g_autoptr(GArray) keep = entries_new(), dropped = entries_new();
        for (guint i = 0; i < d->entries->len; i++) {
            const Entry *e = &g_array_index(d->entries, Entry, i);
            Entry c = entry_copy(e);
            g_array_append_val(strcmp(e->name, name) == 0 ? dropped : keep, c);
        }
        if (dropped->len) {
            ret = commit_dir(s, keep, dropped, errp);
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
    g_autoptr(GArray) entries = entries_new(), dropped = entries_new();
    g_autoptr(GArray) written = entries_new();

    for (guint i = 0; i < n && ret == 0; i++) {
        Entry e = { .name = g_strdup(v[i].name) };
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
            const Entry *old = &g_array_index(d->entries, Entry, i);
            guint k = 0;
            while (k < written->len && strcmp(g_array_index(written, Entry, k).name,
                                              old->name) != 0) {
                k++;
            }
            Entry c = entry_copy(old);
            if (k < written->len) {
                g_array_append_val(dropped, c);
                c = entry_copy(&g_array_index(written, Entry, k));
                placed[k] = true;
            }
            g_array_append_val(entries, c);
        }
        for (guint k = 0; k < written->len; k++) {
            if (!placed[k]) {
                Entry c = entry_copy(&g_array_index(written, Entry, k));
                g_array_append_val(entries, c);
            }
        }
        ret = commit_dir(s, entries, dropped, errp);
        if (d->entries == entries) {
            /* Switched (only freeing old clusters may have failed): the new
             * clusters are the image's now. */
            g_array_set_size(written, 0);
        }
    }
    if (ret < 0) {
        /* Not pointed at: give the new clusters back. */
        for (guint k = 0; k < written->len; k++) {
            free_entry(s, &g_array_index(written, Entry, k), NULL);
        }
    }
    qcow2_unlock_exclusive(s);
    return ret;
}
