/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * block_resize, as qemu-storage-daemon 7.2 takes it: the node by
 * node-name, or the medium of a drive by device, and a size in bytes.
 * Unlike QEMU 7.2, whose exports never share the resize permission, an
 * export of the node does not stop berth's own block_resize: exports
 * whose size was not fixed show the new size to the clients that connect
 * after it. Another process's export of the same image still does stop
 * it, through the image locks.
 */
#include "block/block-int.h"
#include "berth/block/block-backend.h"
#include "qapi/module-commands.h"

typedef struct {
    char *device;
    bool has_device;
    char *node_name;
    bool has_node_name;
    int64_t size;
} ResizeArgs;

static const ArgSpec resize_members[] = {
    ARG_OPTIONAL("device", ARG_STR, ResizeArgs, device, has_device),
    ARG_OPTIONAL("node-name", ARG_STR, ResizeArgs, node_name, has_node_name),
    ARG_REQUIRED("size", ARG_INT, ResizeArgs, size),
    ARG_TABLE_END
};
static const ArgSpec *const resize_args[] = { resize_members, NULL };

static bool qmp_block_resize(void *opaque, json_object **ret, GError **errp)
{
    ResizeArgs *args = opaque;
    BlockDriverState *bs = NULL;

    if (args->has_device) {
        BlockBackend *blk = blk_find(args->device);
        bs = blk ? blk_get_medium(blk) : NULL;
    }
    if (!bs && args->has_node_name) {
        bs = bdrv_find_node(args->node_name);
    }
    if (!bs) {
        qmp_error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                       args->has_device ? args->device : "",
                       args->has_node_name ? args->node_name : "");
        return false;
    }
    if (args->size < 0) {
        qmp_error_setg(errp, "Parameter 'size' expects a >0 size");
        return false;
    }
    if ((uint64_t) args->size > (uint64_t) BDRV_MAX_LENGTH) {
        qmp_error_setg(errp, "offset(%" G_GINT64_FORMAT ") exceeds maximum(%" G_GINT64_FORMAT ")",
                       args->size, (int64_t) BDRV_MAX_LENGTH);
        return false;
    }
    return bdrv_truncate(bs, (uint64_t) args->size, errp);
}

const QmpCommandDef block_resize_qmp_commands[] = {
    {
        .name = "block_resize", .handler = qmp_block_resize,
        .args = resize_args, .args_size = sizeof(ResizeArgs),
    },
    QMP_COMMAND_END
};
