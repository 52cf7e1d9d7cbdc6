/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal snapshots of a qcow2 image, read-only: the snapshot table is
 * parsed and checked (bounded in count and size, entries inside the table,
 * L1 tables aligned and inside the file, as QEMU checks them), and a
 * snapshot's L1 table can stand in for the active one so that reads see the
 * image as it was (berth-nbd -l). The L2 and refcount caches are keyed by
 * the tables' file offsets, so they stay valid across the switch.
 */
#include "block/qcow2-int.h"

#define SNAPSHOT_MAX_COUNT 65536u                   /* as QEMU */
#define SNAPSHOT_MAX_TABLE_BYTES (UINT64_C(64) << 20)
#define SNAPSHOT_MAX_EXTRA_DATA 1024u               /* as QEMU */
#define SNAPSHOT_ENTRY_FIXED 40u

static bool fail(GError **errp, int *ret, const char *msg)
{
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, msg);
    *ret = -EINVAL;
    return false;
}

static bool matches(const uint8_t *str, uint16_t len, const char *want)
{
    return !want || (strlen(want) == len && memcmp(str, want, len) == 0);
}

/*
 * Walk the table for the snapshot matching id and name: true with its L1
 * table's place, false with *ret -ENOENT (not there) or another -errno.
 */
static bool find_snapshot(Qcow2 *s, int64_t file_len, const char *id, const char *name,
                          uint64_t *l1_offset, uint32_t *l1_size, int *ret, GError **errp)
{
    g_autofree uint8_t *table = NULL;
    uint64_t bytes, pos = 0;

    if (s->nb_snapshots > SNAPSHOT_MAX_COUNT) {
        return fail(errp, ret, "qcow2: too many snapshots in the snapshot table");
    }
    if (s->snapshots_offset & (s->cluster_size - 1) || s->snapshots_offset == 0 ||
        s->snapshots_offset >= (uint64_t) file_len) {
        return fail(errp, ret, "qcow2: snapshot table offset invalid (unaligned or past "
                    "the end of the file)");
    }
    /* Read what the table can hold at most, bounded by the file's end. */
    bytes = MIN((uint64_t) file_len - s->snapshots_offset, SNAPSHOT_MAX_TABLE_BYTES);
    bytes = MIN(bytes, (uint64_t) s->nb_snapshots *
                           (SNAPSHOT_ENTRY_FIXED + SNAPSHOT_MAX_EXTRA_DATA + 2 * 65535 + 7));
    table = g_try_malloc(MAX(bytes, 1));
    if (!table) {
        return fail(errp, ret, "qcow2: out of memory for the snapshot table");
    }
    *ret = qcow2_pread(s, s->snapshots_offset, table, bytes, errp);
    if (*ret < 0) {
        return false;
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const uint8_t *e = table + pos;
        uint64_t len;

        if (bytes - pos < SNAPSHOT_ENTRY_FIXED) {
            return fail(errp, ret, "qcow2: snapshot table truncated or too large");
        }
        uint16_t id_len = qcow2_be16_at(e + 12), name_len = qcow2_be16_at(e + 14);
        uint32_t extra = qcow2_be32_at(e + 36);
        if (extra > SNAPSHOT_MAX_EXTRA_DATA) {
            return fail(errp, ret, "qcow2: snapshot extra data too large");
        }
        len = SNAPSHOT_ENTRY_FIXED + extra + id_len + name_len;
        if (bytes - pos < len) {
            return fail(errp, ret, "qcow2: snapshot table truncated or too large");
        }
        const uint8_t *id_str = e + SNAPSHOT_ENTRY_FIXED + extra;
        if (matches(id_str, id_len, id) && matches(id_str + id_len, name_len, name)) {
            *l1_offset = qcow2_be64_at(e);
            *l1_size = qcow2_be32_at(e + 8);
            return true;
        }
        pos += (len + 7) & ~UINT64_C(7);
        if (pos > bytes) {
            pos = bytes;
        }
    }
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Can't find snapshot");
    *ret = -ENOENT;
    return false;
}

int qcow2_load_snapshot(Qcow2 *s, const char *id, const char *name, GError **errp)
{
    uint64_t l1_offset = 0;
    uint32_t l1_size = 0;
    uint64_t *l1;
    int64_t file_len;
    int ret = 0;

    g_return_val_if_fail(id || name, -EINVAL);
    if (s->writable) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Device is not readonly");
        return -EINVAL;
    }
    if (s->nb_snapshots == 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Can't find snapshot");
        return -ENOENT;
    }
    file_len = s->file.length(s->file.opaque);
    if (file_len < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno((int) -file_len),
                    "qcow2: cannot get the image file length: %s",
                    g_strerror((int) -file_len));
        return (int) file_len;
    }
    qcow2_lock_exclusive(s);
    if (!find_snapshot(s, file_len, id, name, &l1_offset, &l1_size, &ret, errp)) {
        goto out;
    }
    if ((uint64_t) l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        fail(errp, &ret, "qcow2: Snapshot L1 table too large");
        goto out;
    }
    if (l1_size && ((l1_offset & (s->cluster_size - 1)) || l1_offset > (uint64_t) file_len ||
                    (uint64_t) l1_size * 8 > (uint64_t) file_len - l1_offset)) {
        fail(errp, &ret, "qcow2: Snapshot L1 table offset invalid (unaligned or past the "
             "end of the file)");
        goto out;
    }
    l1 = g_try_malloc0(MAX((size_t) l1_size * 8, 8));
    if (!l1) {
        fail(errp, &ret, "qcow2: out of memory for the snapshot's L1 table");
        goto out;
    }
    if (l1_size) {
        ret = qcow2_pread(s, l1_offset, l1, (size_t) l1_size * 8, errp);
        if (ret < 0) {
            g_free(l1);
            goto out;
        }
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        if (qcow2_be64(l1[i]) & QCOW2_L1E_RESERVED) {
            g_free(l1);
            fail(errp, &ret, "qcow2: snapshot L1 entry has reserved bits set (corrupt image)");
            goto out;
        }
    }
    g_free(s->l1);
    s->l1 = l1;
    s->l1_size = l1_size;
    s->l1_offset = l1_offset;
    ret = 0;
out:
    qcow2_unlock_exclusive(s);
    return ret;
}
