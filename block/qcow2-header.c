/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Opening a qcow2 image: the header and its extensions are parsed and every
 * field that sizes an allocation or points into the file is checked against
 * the file's length and fixed limits before it is used, so a hostile header
 * costs bounded memory and never an out-of-bounds read. What the core does
 * not implement is refused with one line naming the feature, as QEMU names
 * it. Also the small helpers every other file uses (I/O with messages, the
 * metadata overlap check) and the accessors of the public header.
 */
#include "block/qcow2-int.h"
#include "block/qcow2-bitmaps.h"

#define EXT_END 0
#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_FEATURE_TABLE 0x6803f857u
#define EXT_CRYPTO 0x0537be77u
#define EXT_DATA_FILE 0x44415441u
#define EXT_BITMAPS 0x23852875u

#define QCOW2_KNOWN_INCOMPAT (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION | \
                              QCOW2_INCOMPAT_EXTL2)

int qcow2_pread(Qcow2 *s, uint64_t offset, void *buf, size_t len, GError **errp)
{
    int ret = s->file.pread(s->file.opaque, offset, buf, len);

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "qcow2: cannot read %zu bytes at offset %" G_GUINT64_FORMAT ": %s",
                    len, offset, g_strerror(-ret));
    }
    return ret;
}

int qcow2_pwrite(Qcow2 *s, uint64_t offset, const void *buf, size_t len, GError **errp)
{
    int ret = s->file.pwrite(s->file.opaque, offset, buf, len);

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "qcow2: cannot write %zu bytes at offset %" G_GUINT64_FORMAT ": %s",
                    len, offset, g_strerror(-ret));
    }
    return ret;
}

int qcow2_sync(Qcow2 *s, GError **errp)
{
    int ret = s->file.flush ? s->file.flush(s->file.opaque) : 0;

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "qcow2: cannot flush the image file: %s", g_strerror(-ret));
    }
    return ret;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

bool qcow2_overlaps_metadata(Qcow2 *s, uint64_t offset, uint64_t len)
{
    return ranges_overlap(offset, len, 0, s->cluster_size) ||
           ranges_overlap(offset, len, s->l1_offset, (uint64_t) s->l1_size * 8) ||
           ranges_overlap(offset, len, s->reftable_offset,
                          (uint64_t) s->reftable_clusters * s->cluster_size);
}

static bool fail(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool fail(GError **errp, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, msg);
    return false;
}

/* Names of unknown incompatible bits, from the feature table when present. */
static char *unknown_features(const uint8_t *table, uint32_t table_len, uint64_t bits)
{
    GString *out = g_string_new(NULL);

    for (int bit = 0; bit < 64; bit++) {
        const char *name = NULL;
        if (!(bits & (UINT64_C(1) << bit))) {
            continue;
        }
        for (uint32_t i = 0; table && i + 48 <= table_len; i += 48) {
            if (table[i] == 0 && table[i + 1] == bit) {
                name = (const char *) table + i + 2;
                break;
            }
        }
        if (out->len) {
            g_string_append(out, ", ");
        }
        if (name) {
            g_string_append_printf(out, "%.46s", name);
        } else {
            g_string_append_printf(out, "Unknown incompatible feature: %d", bit);
        }
    }
    return g_string_free(out, FALSE);
}

/* Header extensions live between the header and the end of cluster 0. */
static bool parse_extensions(Qcow2 *s, const uint8_t *hdr, uint64_t end,
                             const uint8_t **feature_table, uint32_t *feature_len,
                             GError **errp)
{
    uint64_t pos = s->header_length;

    while (pos + 8 <= end) {
        uint32_t type = qcow2_be32_at(hdr + pos), len = qcow2_be32_at(hdr + pos + 4);

        pos += 8;
        if (type == EXT_END) {
            return true;
        }
        if (len > end - pos) {
            return fail(errp, "qcow2: header extension 0x%x overruns the header cluster", type);
        }
        switch (type) {
        case EXT_BACKING_FORMAT:
            if (len > 1023) {
                return fail(errp, "qcow2: backing format name too long");
            }
            g_free(s->backing_format);
            s->backing_format = g_strndup((const char *) hdr + pos, len);
            break;
        case EXT_FEATURE_TABLE:
            *feature_table = hdr + pos;
            *feature_len = len;
            break;
        case EXT_CRYPTO:
            return fail(errp, "qcow2: encrypted images are not supported");
        case EXT_DATA_FILE:
            return fail(errp, "qcow2: images with an external data file are not supported");
        case EXT_BITMAPS:
            if (s->version >= 3 && !qcow2_bitmaps_parse_ext(s, hdr + pos, len, errp)) {
                return false;
            }
            break;
        default:
            break;  /* unknown extensions need no action */
        }
        pos += (len + 7) & ~UINT64_C(7);
    }
    return true;
}

static bool check_features(Qcow2 *s, const uint8_t *ftable, uint32_t flen, GError **errp)
{
    uint64_t unknown = s->incompatible & ~QCOW2_KNOWN_INCOMPAT;

    if (unknown) {
        g_autofree char *names = unknown_features(ftable, flen, unknown);
        return fail(errp, "qcow2: Unsupported qcow2 feature(s): %s", names);
    }
    if (s->incompatible & QCOW2_INCOMPAT_DATA_FILE) {
        return fail(errp, "qcow2: images with an external data file are not supported");
    }
    if (s->incompatible & QCOW2_INCOMPAT_EXTL2) {
        return fail(errp, "qcow2: images with extended L2 entries (subclusters) are not supported");
    }
    if ((s->incompatible & QCOW2_INCOMPAT_CORRUPT) && s->writable) {
        return fail(errp, "qcow2: Image is corrupt; cannot be opened read/write");
    }
    if ((s->incompatible & QCOW2_INCOMPAT_DIRTY) && s->writable) {
        return fail(errp, "qcow2: Image is dirty (lazy refcounts not written back); "
                    "repair it with 'qemu-img check -r all' or open it read-only");
    }
    if (s->nb_snapshots && s->writable) {
        return fail(errp, "qcow2: writing to images with internal snapshots is not supported; "
                    "open it read-only");
    }
    return true;
}

static bool parse_header(Qcow2 *s, const uint8_t *h, size_t hlen, uint64_t file_len,
                         GError **errp)
{
    const uint8_t *ftable = NULL;
    uint32_t flen = 0;
    uint64_t backing_off, l2_span, need_l1;
    uint32_t backing_len, crypt;

    if (qcow2_be32_at(h) != QCOW2_MAGIC) {
        return fail(errp, "qcow2: Image is not in qcow2 format");
    }
    s->version = qcow2_be32_at(h + 4);
    if (s->version != 2 && s->version != 3) {
        return fail(errp, "qcow2: Unsupported qcow2 version %d", s->version);
    }
    s->cluster_bits = qcow2_be32_at(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        return fail(errp, "qcow2: Unsupported cluster size: 2^%u", s->cluster_bits);
    }
    s->cluster_size = UINT32_C(1) << s->cluster_bits;
    s->l2_entries = s->cluster_size / 8;
    s->refblock_entries = s->cluster_size / 2;
    s->size = qcow2_be64_at(h + 24);
    crypt = qcow2_be32_at(h + 32);
    s->l1_size = qcow2_be32_at(h + 36);
    s->l1_offset = qcow2_be64_at(h + 40);
    s->reftable_offset = qcow2_be64_at(h + 48);
    s->reftable_clusters = qcow2_be32_at(h + 56);
    s->nb_snapshots = qcow2_be32_at(h + 60);
    s->snapshots_offset = qcow2_be64_at(h + 64);
    backing_off = qcow2_be64_at(h + 8);
    backing_len = qcow2_be32_at(h + 16);

    if (s->version == 3) {
        uint32_t refcount_order = qcow2_be32_at(h + 96);
        s->incompatible = qcow2_be64_at(h + 72);
        s->compatible = qcow2_be64_at(h + 80);
        s->autoclear = qcow2_be64_at(h + 88);
        s->header_length = qcow2_be32_at(h + 100);
        if (s->header_length < 104 || s->header_length > s->cluster_size ||
            s->header_length > hlen || s->header_length % 8) {
            return fail(errp, "qcow2: invalid header length %u", s->header_length);
        }
        if (refcount_order != 4) {
            return fail(errp, "qcow2: refcount width of %u bits is not supported (only 16)",
                        refcount_order < 32 ? 1u << refcount_order : 0);
        }
        if (s->incompatible & QCOW2_INCOMPAT_COMPRESSION) {
            if (s->header_length < 105 || h[104] != 0) {
                return fail(errp, "qcow2: zstd compression is not supported");
            }
        }
    } else {
        s->header_length = 72;
    }
    if (crypt != 0) {
        return fail(errp, "qcow2: encrypted images are not supported");
    }
    if (!parse_extensions(s, h, backing_off ? MIN(backing_off, hlen) : hlen,
                          &ftable, &flen, errp) ||
        !check_features(s, ftable, flen, errp)) {
        return false;
    }

    if (backing_off) {
        if (backing_len > 1023 || backing_off > hlen || backing_len > hlen - backing_off) {
            return fail(errp, "qcow2: backing file name out of the header cluster or too long");
        }
        s->backing_file = g_strndup((const char *) h + backing_off, backing_len);
    }

    /* Tables: aligned, inside the file, of bounded size. */
    if (s->size > (UINT64_C(1) << 61)) {
        return fail(errp, "qcow2: virtual size %" G_GUINT64_FORMAT " too large", s->size);
    }
    l2_span = (uint64_t) s->l2_entries << s->cluster_bits;
    need_l1 = (s->size + l2_span - 1) / l2_span;
    if ((uint64_t) s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        return fail(errp, "qcow2: Active L1 table too large");
    }
    if (s->l1_size < need_l1) {
        return fail(errp, "qcow2: L1 table is too small for the virtual size");
    }
    if (s->l1_size && ((s->l1_offset & (s->cluster_size - 1)) ||
                       s->l1_offset > file_len || (uint64_t) s->l1_size * 8 > file_len - s->l1_offset)) {
        return fail(errp, "qcow2: L1 table offset invalid (unaligned or past the end of the file)");
    }
    if ((s->reftable_offset & (s->cluster_size - 1)) || s->reftable_offset == 0) {
        return fail(errp, "qcow2: refcount table offset invalid");
    }
    if (s->reftable_clusters == 0 ||
        (uint64_t) s->reftable_clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
        return fail(errp, "qcow2: Reference count table too large");
    }
    if (s->reftable_offset > file_len ||
        (uint64_t) s->reftable_clusters * s->cluster_size > file_len - s->reftable_offset) {
        return fail(errp, "qcow2: refcount table past the end of the file");
    }
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (UINT64_C(1) << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (UINT64_C(1) << s->csize_shift) - 1;
    return true;
}

static bool load_tables(Qcow2 *s, GError **errp)
{
    size_t rt_bytes = (size_t) s->reftable_clusters * s->cluster_size;

    s->l1 = g_try_malloc0(MAX((size_t) s->l1_size * 8, 8));
    s->reftable = g_try_malloc(rt_bytes);
    if (!s->l1 || !s->reftable) {
        return fail(errp, "qcow2: out of memory for the image tables");
    }
    if ((s->l1_size && qcow2_pread(s, s->l1_offset, s->l1, (size_t) s->l1_size * 8, errp) < 0) ||
        qcow2_pread(s, s->reftable_offset, s->reftable, rt_bytes, errp) < 0) {
        return false;
    }
    s->reftable_entries = rt_bytes / 8;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = qcow2_be64(s->l1[i]);
        if (e & QCOW2_L1E_RESERVED) {
            return fail(errp, "qcow2: L1 entry %u has reserved bits set (corrupt image)", i);
        }
    }
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t e = qcow2_be64(s->reftable[i]);
        if (e & (s->cluster_size - 1)) {
            return fail(errp, "qcow2: refcount block %" G_GUINT64_FORMAT
                        " offset unaligned (corrupt image)", i);
        }
    }
    return true;
}

static guint l2_cache_slots(Qcow2 *s, uint64_t bytes)
{
    uint64_t l2_span = (uint64_t) s->l2_entries << s->cluster_bits;
    uint64_t tables = (s->size + l2_span - 1) / l2_span;

    if (bytes == 0) {
        bytes = MIN(tables * s->cluster_size, QCOW2_MAX_L2_CACHE_DEFAULT);
    }
    bytes = MIN(bytes, QCOW2_MAX_L2_CACHE);
    return (guint) MAX(bytes / s->cluster_size, 4);
}

Qcow2 *qcow2_open(const Qcow2File *file, bool writable, uint64_t l2_cache_bytes,
                  GError **errp)
{
    Qcow2 *s = g_new0(Qcow2, 1);
    g_autofree uint8_t *hdr = NULL;
    int64_t file_len;
    size_t hlen;

    s->file = *file;
    s->writable = writable;
    g_rw_lock_init(&s->lock);
    g_mutex_init(&s->gate);
    g_mutex_init(&s->cache_lock);

    file_len = s->file.length(s->file.opaque);
    if (file_len < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-file_len),
                    "qcow2: cannot get the image file length: %s", g_strerror(-file_len));
        goto fail;
    }
    if (file_len < 104) {
        fail(errp, "qcow2: Image is not in qcow2 format (file too short)");
        goto fail;
    }
    /* Read up to one maximal cluster; the header lives in cluster 0. */
    hlen = MIN((uint64_t) file_len, UINT64_C(1) << QCOW2_MAX_CLUSTER_BITS);
    hdr = g_malloc0(hlen);
    if (qcow2_pread(s, 0, hdr, hlen, errp) < 0) {
        goto fail;
    }
    {
        uint32_t cb = qcow2_be32_at(hdr + 20);
        if (cb >= QCOW2_MIN_CLUSTER_BITS && cb <= QCOW2_MAX_CLUSTER_BITS) {
            hlen = MIN(hlen, (size_t) 1 << cb);
        }
    }
    if (!parse_header(s, hdr, hlen, file_len, errp) || !load_tables(s, errp)) {
        goto fail;
    }
    qcow2_cache_init(&s->l2_cache, s->cluster_size, l2_cache_slots(s, l2_cache_bytes));
    qcow2_cache_init(&s->rb_cache, s->cluster_size,
                     MAX(4, s->l2_cache.nslots / 4));
    s->free_hint = 1;

    if (!qcow2_bitmaps_open(s, errp)) {
        goto fail;
    }
    if (writable && s->autoclear != qcow2_bitmaps_autoclear(s)) {
        /* Of the autoclear bits, only the bitmaps' is maintained. */
        uint64_t keep = GUINT64_TO_BE(qcow2_bitmaps_autoclear(s));
        if (qcow2_pwrite(s, QCOW2_HDR_AUTOCLEAR, &keep, 8, errp) < 0 || qcow2_sync(s, errp) < 0) {
            goto fail;
        }
        s->autoclear = qcow2_bitmaps_autoclear(s);
    }
    return s;

fail:
    qcow2_close(s);
    return NULL;
}

void qcow2_close(Qcow2 *s)
{
    if (!s) {
        return;
    }
    if (s->writable) {
        g_autoptr(GError) err = NULL;
        /* No direct read is left at close. */
        if (qcow2_free_deferred(s, &err) < 0 || qcow2_release_pool(s, &err) < 0) {
            g_warning("%s (the image leaks clusters)", err->message);
        }
    }
    if (s->deferred) {
        g_array_free(s->deferred, TRUE);
    }
    qcow2_bitmaps_free(s);
    if (s->l2_cache.slots) {
        qcow2_cache_clear(&s->l2_cache);
        qcow2_cache_clear(&s->rb_cache);
    }
    g_free(s->l1);
    g_free(s->reftable);
    g_free(s->backing_file);
    g_free(s->backing_format);
    g_rw_lock_clear(&s->lock);
    berth_mutex_clear(&s->gate);
    berth_mutex_clear(&s->cache_lock);
    g_free(s);
}

void qcow2_set_backing(Qcow2 *s, const Qcow2File *backing)
{
    s->has_backing = backing != NULL;
    if (backing) {
        s->backing = *backing;
    }
}

uint64_t qcow2_virtual_size(Qcow2 *s) { return __atomic_load_n(&s->size, __ATOMIC_RELAXED); }
uint32_t qcow2_cluster_size(Qcow2 *s) { return s->cluster_size; }
int qcow2_version(Qcow2 *s) { return s->version; }
bool qcow2_is_writable(Qcow2 *s) { return s->writable; }
bool qcow2_is_dirty(Qcow2 *s) { return s->incompatible & QCOW2_INCOMPAT_DIRTY; }
bool qcow2_is_corrupt(Qcow2 *s) { return s->incompatible & QCOW2_INCOMPAT_CORRUPT; }
bool qcow2_has_lazy_refcounts(Qcow2 *s) { return s->compatible & QCOW2_COMPAT_LAZY_REFCOUNTS; }
const char *qcow2_backing_file(Qcow2 *s) { return s->backing_file; }
const char *qcow2_backing_format(Qcow2 *s) { return s->backing_format; }
