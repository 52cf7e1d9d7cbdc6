/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshot-access driver (QEMU 7.2's): a node over a copy-before-write
 * filter (its `file`) that shows the filtered disk as it was when the
 * filter was opened. Reads, block status and discard are the filter's
 * snapshot interface (copy-before-write.h); discard tells the filter that a
 * region of the snapshot is no longer needed (a backup that has copied it),
 * as in QEMU, and needs discard=unmap on this node like any discard. Writes
 * and write-zeroes fail with ENOTSUP, flush succeeds, and a file that is
 * not a copy-before-write node gives ENOTSUP for reads and block status -
 * all as qemu-storage-daemon 7.2 answers.
 */
#include "block/copy-before-write.h"
#include "util/json.h"

#include <errno.h>

typedef struct {
    json_object *file;
} SnapshotAccessOptions;

static const ArgSpec snapshot_access_members[] = {
    { .name = "file", .type = ARG_ANY, .offset = offsetof(SnapshotAccessOptions, file),
      .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};

static bool snapshot_access_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const SnapshotAccessOptions *o = options;
    BlockDriverState *file = bdrv_open_child(bs, o->file, "file", errp);

    if (!file) {
        return false;
    }
    bs->opaque = file;
    bs->size = file->size;
    bs->can_flush = true;
    bs->can_discard = true;
    bs->has_block_status = true;
    /* The snapshot never changes under a reader. */
    bs->coherent = true;
    bs->request_alignment = file->request_alignment;
    return true;
}

static void snapshot_access_submit(BdrvRequest *req)
{
    BlockDriverState *file = req->bs->opaque;

    switch (req->op) {
    case BDRV_OP_FLUSH:
    case BDRV_OP_CACHE:
        bdrv_request_complete(req, 0, NULL);
        return;
    case BDRV_OP_WRITE:
    case BDRV_OP_WRITE_ZEROES:
        bdrv_request_fail(req, ENOTSUP, "Node '%s' is a snapshot: it cannot be written",
                          req->bs->node_name);
        return;
    default:
        break;
    }
    if (file->drv != &bdrv_copy_before_write) {
        bdrv_request_fail(req, ENOTSUP, "The file of snapshot-access node '%s' is not a "
                          "copy-before-write node", req->bs->node_name);
        return;
    }
    cbw_snapshot_submit(file, req);
}

static char *snapshot_access_describe(BlockDriverState *bs, const void *options)
{
    BlockDriverState *file = bs->opaque;

    return g_strdup(file->filename);
}

/* ImageInfo: the space the disk's file takes, as QEMU shows it. */
static void snapshot_access_image_info(BlockDriverState *bs, json_object *image)
{
    BlockDriverState *file = bs->opaque;
    g_autoptr(json_object) info = json_object_new_object();
    json_object *size;

    if (!file->drv->image_info) {
        return;
    }
    file->drv->image_info(file, info);
    if (json_object_object_get_ex(info, "actual-size", &size)) {
        json_object_object_add(image, "actual-size", json_object_get(size));
    }
}

const BlockDriver bdrv_snapshot_access = {
    .name = "snapshot-access",
    .options = snapshot_access_members,
    .options_size = sizeof(SnapshotAccessOptions),
    .open = snapshot_access_open,
    .submit = snapshot_access_submit,
    .describe = snapshot_access_describe,
    .image_info = snapshot_access_image_info,
};
