/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The read side of the qcow2 core: guest reads (data clusters read in place,
 * runs of contiguous host clusters merged into one read, zero clusters
 * filled, compressed clusters inflated with zlib, unallocated ones read from
 * the backing device or as zeroes past its end), the allocation map behind
 * block status, and the guest view as a Qcow2File for backing chains. All of
 * it runs under the shared lock.
 */
#include "block/qcow2-int.h"

#include <zlib.h>

static int read_backing(Qcow2 *s, uint64_t offset, uint8_t *buf, size_t len, GError **errp)
{
    int64_t blen;
    size_t n = 0;

    if (s->has_backing) {
        blen = s->backing.length(s->backing.opaque);
        if (blen < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-blen),
                        "qcow2: cannot get the backing file's length: %s", g_strerror(-blen));
            return blen;
        }
        if (offset < (uint64_t) blen) {
            int ret;
            n = MIN(len, (uint64_t) blen - offset);
            ret = s->backing.pread(s->backing.opaque, offset, buf, n);
            if (ret < 0) {
                g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                            "qcow2: cannot read the backing file at offset %" G_GUINT64_FORMAT
                            ": %s", offset, g_strerror(-ret));
                return ret;
            }
        }
    }
    memset(buf + n, 0, len - n);
    return 0;
}

static int inflate_cluster(Qcow2 *s, uint64_t entry, uint8_t *out, GError **errp)
{
    uint64_t coff, clen;
    g_autofree uint8_t *in = NULL;
    z_stream z = { 0 };
    int ret;

    qcow2_compressed_range(s, entry, &coff, &clen);
    in = g_malloc(clen);
    ret = qcow2_pread(s, coff, in, clen, errp);
    if (ret < 0) {
        return ret;
    }
    if (inflateInit2(&z, -12) != Z_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "qcow2: cannot start zlib");
        return -ENOMEM;
    }
    z.next_in = in;
    z.avail_in = clen;
    z.next_out = out;
    z.avail_out = s->cluster_size;
    ret = inflate(&z, Z_FINISH);
    inflateEnd(&z);
    /* The stream may carry padding after its end; a full cluster is all we need. */
    if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || z.avail_out != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "qcow2: corrupt compressed cluster at offset %" G_GUINT64_FORMAT, coff);
        return -EIO;
    }
    return 0;
}

int qcow2_read_cluster(Qcow2 *s, uint64_t guest_cluster, uint64_t entry, uint8_t *buf,
                       GError **errp)
{
    uint64_t goff = guest_cluster << s->cluster_bits;

    switch (qcow2_l2_type(s, entry)) {
    case QCOW2_CL_UNALLOCATED:
        return read_backing(s, goff, buf, s->cluster_size, errp);
    case QCOW2_CL_ZERO_PLAIN:
    case QCOW2_CL_ZERO_ALLOC:
        memset(buf, 0, s->cluster_size);
        return 0;
    case QCOW2_CL_COMPRESSED:
        return inflate_cluster(s, entry, buf, errp);
    case QCOW2_CL_NORMAL:
    default:
        return qcow2_pread(s, entry & QCOW2_OFFSET_MASK, buf, s->cluster_size, errp);
    }
}

static int read_locked(Qcow2 *s, uint64_t offset, uint8_t *buf, size_t len, GError **errp)
{
    /* A pending read of contiguous host data. */
    uint64_t p_host = 0;
    uint8_t *p_buf = NULL;
    size_t p_len = 0;
    g_autofree uint8_t *tmp = NULL;
    int ret = 0;

    while (len > 0 && ret == 0) {
        uint64_t gc = offset >> s->cluster_bits;
        size_t in = offset & (s->cluster_size - 1);
        size_t n = MIN(len, s->cluster_size - in);
        uint64_t entry;
        Qcow2ClusterType t;

        ret = qcow2_l2_lookup(s, gc, &entry, errp);
        if (ret == 0) {
            ret = qcow2_l2_check_entry(s, entry, errp);
        }
        if (ret < 0) {
            break;
        }
        t = qcow2_l2_type(s, entry);
        if (t == QCOW2_CL_NORMAL) {
            uint64_t host = (entry & QCOW2_OFFSET_MASK) + in;
            if (p_len && p_host + p_len == host && p_buf + p_len == buf) {
                p_len += n;
            } else {
                if (p_len) {
                    ret = qcow2_pread(s, p_host, p_buf, p_len, errp);
                }
                p_host = host;
                p_buf = buf;
                p_len = n;
            }
        } else if (t == QCOW2_CL_COMPRESSED) {
            if (!tmp) {
                tmp = g_malloc(s->cluster_size);
            }
            ret = inflate_cluster(s, entry, tmp, errp);
            if (ret == 0) {
                memcpy(buf, tmp + in, n);
            }
        } else if (t == QCOW2_CL_UNALLOCATED) {
            ret = read_backing(s, offset, buf, n, errp);
        } else {
            memset(buf, 0, n);
        }
        offset += n;
        buf += n;
        len -= n;
    }
    if (ret == 0 && p_len) {
        ret = qcow2_pread(s, p_host, p_buf, p_len, errp);
    }
    return ret < 0 ? ret : 0;
}

int qcow2_read(Qcow2 *s, uint64_t offset, void *buf, size_t len, GError **errp)
{
    int ret;

    qcow2_lock_shared(s);
    ret = read_locked(s, offset, buf, len, errp);
    qcow2_unlock_shared(s);
    return ret;
}

static Qcow2MapType map_type(Qcow2ClusterType t)
{
    switch (t) {
    case QCOW2_CL_ZERO_PLAIN:
    case QCOW2_CL_ZERO_ALLOC:
        return QCOW2_MAP_ZERO;
    case QCOW2_CL_NORMAL:
        return QCOW2_MAP_DATA;
    case QCOW2_CL_COMPRESSED:
        return QCOW2_MAP_COMPRESSED;
    default:
        return QCOW2_MAP_UNALLOCATED;
    }
}

int qcow2_map(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *pnum,
              Qcow2MapType *type, GError **errp)
{
    uint64_t pos = offset, end = offset + len;
    uint64_t l2_span = (uint64_t) s->l2_entries << s->cluster_bits;
    bool first = true;
    int ret = 0;

    qcow2_lock_shared(s);
    while (pos < end) {
        uint64_t gc = pos >> s->cluster_bits, entry, next;
        uint64_t l1_index = gc / s->l2_entries;
        Qcow2MapType t;

        if (l1_index >= s->l1_size || !(qcow2_be64(s->l1[l1_index]) & QCOW2_OFFSET_MASK)) {
            /* No L2 table: the whole span is unallocated. */
            t = QCOW2_MAP_UNALLOCATED;
            next = (l1_index + 1) * l2_span;
        } else {
            ret = qcow2_l2_lookup(s, gc, &entry, errp);
            if (ret < 0) {
                break;
            }
            t = map_type(qcow2_l2_type(s, entry));
            next = (gc + 1) << s->cluster_bits;
        }
        if (first) {
            *type = t;
            first = false;
        } else if (t != *type) {
            break;
        }
        pos = MIN(next, end);
    }
    qcow2_unlock_shared(s);
    *pnum = pos - offset;
    return ret < 0 ? ret : 0;
}

/* ---- direct reads and writes ------------------------------------------------------------ */

/* The entry of a cached L2 table, without waiting for anything. */
static bool peek_entry(Qcow2 *s, uint64_t gc, uint64_t *entry)
{
    uint64_t l1_index = gc / s->l2_entries, l2_off;
    const uint64_t *table;

    if (l1_index >= s->l1_size) {
        return false;
    }
    l2_off = qcow2_be64(s->l1[l1_index]) & QCOW2_OFFSET_MASK;
    if (!l2_off || (l2_off & (s->cluster_size - 1)) ||
        qcow2_overlaps_metadata(s, l2_off, s->cluster_size) ||
        !berth_mutex_trylock(&s->cache_lock)) {
        return false;
    }
    table = (const uint64_t *) qcow2_cache_peek(&s->l2_cache, l2_off);
    if (table) {
        *entry = qcow2_be64(table[gc % s->l2_entries]);
    }
    berth_mutex_unlock(&s->cache_lock);
    return table != NULL;
}

static bool direct_begin(Qcow2 *s, uint64_t offset, uint64_t len, bool write, uint64_t *host)
{
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + len - 1) >> s->cluster_bits;
    uint64_t base = 0;
    bool ok = true;

    if (len == 0 || (write && !s->writable) || g_atomic_int_get(&s->direct_disabled) ||
        g_atomic_int_get(&s->writers_waiting) || !g_rw_lock_reader_trylock(&s->lock)) {
        return false;
    }
    for (uint64_t gc = first; gc <= last && ok; gc++) {
        uint64_t entry = 0;
        ok = peek_entry(s, gc, &entry) && qcow2_l2_type(s, entry) == QCOW2_CL_NORMAL &&
             (!write || (entry & QCOW2_OFLAG_COPIED)) &&
             qcow2_l2_check_entry(s, entry, NULL) == 0;
        if (ok && gc == first) {
            base = entry & QCOW2_OFFSET_MASK;
        }
        ok = ok && (entry & QCOW2_OFFSET_MASK) == base + ((gc - first) << s->cluster_bits);
    }
    if (ok) {
        *host = base + (offset & (s->cluster_size - 1));
        g_atomic_int_inc(&s->direct_reads);
    }
    g_rw_lock_reader_unlock(&s->lock);
    return ok;
}

bool qcow2_direct_read_begin(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *host)
{
    return direct_begin(s, offset, len, false, host);
}

bool qcow2_direct_write_begin(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *host)
{
    return direct_begin(s, offset, len, true, host);
}

void qcow2_direct_read_done(Qcow2 *s)
{
    g_atomic_int_dec_and_test(&s->direct_reads);
}

/* ---- the guest view as a Qcow2File ---------------------------------------- */

static int as_pread(void *opaque, uint64_t offset, void *buf, size_t len)
{
    g_autoptr(GError) err = NULL;
    Qcow2 *s = opaque;
    uint64_t size = qcow2_virtual_size(s);
    uint64_t n = offset < size ? MIN(len, size - offset) : 0;
    int ret = n ? qcow2_read(s, offset, buf, n, &err) : 0;

    if (ret < 0) {
        g_warning("%s", err->message);
        return ret;
    }
    memset((uint8_t *) buf + n, 0, len - n);
    return 0;
}

static int as_pwrite(void *opaque, uint64_t offset, const void *buf, size_t len)
{
    g_autoptr(GError) err = NULL;
    int ret = qcow2_write(opaque, offset, buf, len, &err);

    if (ret < 0) {
        g_warning("%s", err->message);
    }
    return ret;
}

static int as_flush(void *opaque)
{
    g_autoptr(GError) err = NULL;

    return qcow2_flush(opaque, &err);
}

static int64_t as_length(void *opaque)
{
    return (int64_t) qcow2_virtual_size(opaque);
}

Qcow2File qcow2_as_file(Qcow2 *s)
{
    return (Qcow2File) {
        .opaque = s, .pread = as_pread, .pwrite = as_pwrite,
        .flush = as_flush, .length = as_length,
    };
}
