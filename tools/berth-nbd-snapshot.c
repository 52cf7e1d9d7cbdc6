/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd's snapshots. -s: the image is read through a temporary qcow2
 * overlay that takes every write, as qemu-nbd does; berth-nbd writes the
 * empty overlay itself (a qcow2 v3 header, a refcount table and block, an
 * L1 table of zeroes, 64 KiB clusters) in $TMPDIR or /var/tmp, opens it
 * over the image node and deletes it at once, so the image is never
 * written and nothing is left behind, however the process ends. -l: an
 * internal snapshot of a qcow2 image read instead of its current state.
 */
#include "berth-nbd.h"
#include "berth/block/block.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define OVERLAY_CLUSTER_BITS 16
#define OVERLAY_CLUSTER ((uint64_t) 1 << OVERLAY_CLUSTER_BITS)
#define OVERLAY_MAX_L1_BYTES (UINT64_C(32) << 20)   /* QEMU's bound */

static void put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t) v; }

static void put_be32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, 8);
}

static bool pwrite_all(int fd, const void *buf, size_t len, off_t offset)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t) n;
        offset += n;
    }
    return true;
}

/*
 * An empty image of `size` bytes in fd. Clusters: 0 the header, 1 the
 * refcount table, 2 its one refcount block (it covers the metadata), 3 on
 * the L1 table. The qcow2 driver grows everything from there.
 */
static bool write_overlay(int fd, uint64_t size, GError **errp)
{
    uint64_t l2_span = (OVERLAY_CLUSTER / 8) * OVERLAY_CLUSTER;
    uint64_t l1_entries = MAX((size + l2_span - 1) / l2_span, 1);
    uint64_t l1_clusters = (l1_entries * 8 + OVERLAY_CLUSTER - 1) / OVERLAY_CLUSTER;
    uint64_t clusters = 3 + l1_clusters;
    g_autofree uint8_t *buf = g_malloc0(OVERLAY_CLUSTER);

    if (l1_entries * 8 > OVERLAY_MAX_L1_BYTES) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "The image is too large for a snapshot overlay (%" G_GUINT64_FORMAT
                    " bytes)", size);
        return false;
    }
    if (ftruncate(fd, (off_t) (clusters * OVERLAY_CLUSTER)) < 0) {
        goto io_error;
    }
    put_be32(buf, 0x514649fb);                      /* "QFI\xfb" */
    put_be32(buf + 4, 3);                           /* version */
    put_be32(buf + 20, OVERLAY_CLUSTER_BITS);
    put_be64(buf + 24, size);
    put_be32(buf + 36, (uint32_t) l1_entries);
    put_be64(buf + 40, 3 * OVERLAY_CLUSTER);        /* L1 table */
    put_be64(buf + 48, 1 * OVERLAY_CLUSTER);        /* refcount table */
    put_be32(buf + 56, 1);                          /* its clusters */
    put_be32(buf + 96, 4);                          /* 16-bit refcounts */
    put_be32(buf + 100, 104);                       /* header length */
    /* 104..111: the end of the (empty) header extension list, zeroes */
    if (!pwrite_all(fd, buf, 112, 0)) {
        goto io_error;
    }
    memset(buf, 0, 112);
    put_be64(buf, 2 * OVERLAY_CLUSTER);
    if (!pwrite_all(fd, buf, 8, (off_t) OVERLAY_CLUSTER)) {
        goto io_error;
    }
    memset(buf, 0, 8);
    for (uint64_t i = 0; i < clusters; i++) {
        put_be16(buf + 2 * i, 1);
    }
    if (!pwrite_all(fd, buf, 2 * clusters, (off_t) (2 * OVERLAY_CLUSTER))) {
        goto io_error;
    }
    return true;

io_error:
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                "Could not write the snapshot overlay: %s", g_strerror(errno));
    return false;
}

bool berth_nbd_add_overlay(const BerthNbdOptions *o, const char *backing,
                           const char *node_name, GError **errp)
{
    const char *dir = g_getenv("TMPDIR");
    g_autofree char *path = g_build_filename(dir && *dir ? dir : "/var/tmp",
                                             "berth-nbd-snapshot.XXXXXX", NULL);
    BlockDriverState *base = bdrv_find_node(backing);
    int fd = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "Could not create a temporary overlay in '%s': %s",
                    dir && *dir ? dir : "/var/tmp", g_strerror(errno));
        return false;
    }
    bool ok = write_overlay(fd, bdrv_getlength(base), errp);
    close(fd);
    if (ok) {
        g_autoptr(json_object) args = json_object_new_object();
        json_object_object_add(args, "driver", json_object_new_string("qcow2"));
        json_object_object_add(args, "node-name", json_object_new_string(node_name));
        json_object_object_add(args, "read-only", json_object_new_boolean(o->read_only));
        json_object_object_add(args, "file", berth_nbd_file_options(o, path, o->read_only));
        json_object_object_add(args, "backing", json_object_new_string(backing));
        if (o->discard) {
            json_object_object_add(args, "discard", json_object_new_string(o->discard));
        }
        if (o->detect_zeroes) {
            json_object_object_add(args, "detect-zeroes",
                                   json_object_new_string(o->detect_zeroes));
        }
        ok = qapi_run_command(qapi_find_command("blockdev-add"), args, false, NULL, errp);
    }
    /* The open node keeps the file; its name is not needed any more. */
    g_unlink(path);
    return ok;
}

bool berth_nbd_load_snapshot(const BerthNbdOptions *o, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(BERTH_NBD_NODE_NAME);
    GError *err = NULL;

    if (!o->snapshot_id_or_name) {
        return bdrv_snapshot_load_tmp(bs, o->snapshot_id, o->snapshot_name, errp);
    }
    /* QEMU's order: an ID first, then a name. */
    if (bdrv_snapshot_load_tmp(bs, o->snapshot_id_or_name, NULL, &err)) {
        return true;
    }
    if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
        g_propagate_error(errp, err);
        return false;
    }
    g_error_free(err);
    return bdrv_snapshot_load_tmp(bs, NULL, o->snapshot_id_or_name, errp);
}
