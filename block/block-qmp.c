/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block layer's QMP commands: nodes (blockdev-add, blockdev-del,
 * query-named-block-nodes) and drives (drive-add, drive-del, query-block,
 * eject, the tray and medium commands), with QEMU's argument names, result
 * layout and error texts, and the DEVICE_TRAY_MOVED event. Handlers only
 * translate between QMP and the C API of block.h and block-backend.h (and
 * ask a node's driver for its own members of ImageInfo).
 */
#include "block/block-int.h"
#include "berth/block/block-backend.h"
#include "berth/block/dirty-bitmap.h"
#include "berth/util/qmp-command.h"

/* --- node description, shared by query-named-block-nodes and query-block --- */

/*
 * The node QEMU shows as backing-image: a filter's child (blkdebug's
 * image) or a format's backing node.
 */
static BlockDriverState *node_backing(BlockDriverState *bs)
{
    if (bs->drv->is_filter && bs->n_children > 0) {
        return bs->children[0].bs;
    }
    return bdrv_child(bs, "backing");
}

static int node_backing_depth(BlockDriverState *bs)
{
    int depth = 0;

    /* Bounded: a graph has no cycles, and no chain is longer than the table. */
    while ((bs = node_backing(bs)) != NULL && depth < 65536) {
        depth++;
    }
    return depth;
}

/* QEMU's ImageInfo; with recurse, the backing chain as backing-image. */
static json_object *node_image_info(BlockDriverState *bs, bool recurse)
{
    json_object *image = json_object_new_object();
    BlockDriverState *backing = node_backing(bs);
    BdrvInfo info;

    bdrv_get_info(bs, &info);
    json_object_object_add(image, "virtual-size", json_object_new_int64((int64_t) info.size));
    json_object_object_add(image, "filename",
                           json_object_new_string(info.filename ? info.filename : ""));
    json_object_object_add(image, "format", json_object_new_string(info.driver));
    if (bs->drv->image_info) {
        bs->drv->image_info(bs, image);
    }
    if (backing && recurse) {
        json_object_object_add(image, "backing-image", node_image_info(backing, true));
    }
    return image;
}

static void describe_bitmap(BdrvDirtyBitmap *bm, gpointer opaque)
{
    json_object *b = json_object_new_object();
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_get_info(bm, &info);
    json_object_object_add(b, "name", json_object_new_string(info.name));
    json_object_object_add(b, "recording", json_object_new_boolean(info.recording));
    json_object_object_add(b, "persistent", json_object_new_boolean(info.persistent));
    json_object_object_add(b, "busy", json_object_new_boolean(info.busy));
    json_object_object_add(b, "granularity", json_object_new_int64(info.granularity));
    json_object_object_add(b, "count", json_object_new_int64((int64_t) info.count));
    if (info.inconsistent) {
        json_object_object_add(b, "inconsistent", json_object_new_boolean(true));
    }
    json_object_array_add(opaque, b);
}

/* QEMU's BlockDeviceInfo; berth has no throttling, so those members are 0. */
static json_object *node_device_info(BlockDriverState *bs, bool flat)
{
    static const char *const zero_members[] = {
        "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr", "write_threshold",
    };
    json_object *node = json_object_new_object();
    json_object *cache = json_object_new_object();
    BdrvInfo info;

    bdrv_get_info(bs, &info);
    json_object_object_add(node, "file",
                           json_object_new_string(info.filename ? info.filename : ""));
    json_object_object_add(node, "node-name", json_object_new_string(info.node_name));
    json_object_object_add(node, "ro", json_object_new_boolean(info.read_only));
    json_object_object_add(node, "drv", json_object_new_string(info.driver));
    if (node_backing(bs) && !node_backing(bs)->drv->is_filter && !bs->drv->is_filter) {
        BlockDriverState *backing = node_backing(bs);
        json_object_object_add(node, "backing_file",
                               json_object_new_string(backing->filename
                                                      ? backing->filename : ""));
    }
    json_object_object_add(node, "backing_file_depth",
                           json_object_new_int(node_backing_depth(bs)));
    json_object_object_add(node, "encrypted", json_object_new_boolean(false));
    json_object_object_add(node, "detect_zeroes",
                           json_object_new_string(info.detect_zeroes ? info.detect_zeroes
                                                                     : "off"));
    for (size_t i = 0; i < G_N_ELEMENTS(zero_members); i++) {
        json_object_object_add(node, zero_members[i], json_object_new_int(0));
    }
    json_object *bitmaps = json_object_new_array();
    bdrv_dirty_bitmap_foreach(bs, describe_bitmap, bitmaps);
    /* QEMU leaves the member out when the node has no bitmap. */
    if (json_object_array_length(bitmaps) > 0) {
        json_object_object_add(node, "dirty-bitmaps", bitmaps);
    } else {
        json_object_put(bitmaps);
    }
    json_object_object_add(node, "image", node_image_info(bs, !flat));
    json_object_object_add(cache, "writeback", json_object_new_boolean(true));
    json_object_object_add(cache, "direct", json_object_new_boolean(info.cache_direct));
    json_object_object_add(cache, "no-flush", json_object_new_boolean(info.cache_no_flush));
    json_object_object_add(node, "cache", cache);
    return node;
}

/* --- blockdev-add / blockdev-del --- */

static bool qmp_blockdev_add(void *opaque, json_object **ret, GError **errp)
{
    QmpRawArgs *raw = opaque;
    BlockDriverState *bs = bdrv_open(raw->args, raw->keyval, errp);

    if (!bs) {
        return false;
    }
    /* The node table keeps its own reference. */
    bdrv_put(bs);
    return true;
}

typedef struct {
    char *node_name;
} NodeNameArgs;

static const ArgSpec node_name_members[] = {
    ARG_REQUIRED("node-name", ARG_STR, NodeNameArgs, node_name),
    ARG_TABLE_END
};
static const ArgSpec *const node_name_args[] = { node_name_members, NULL };

static bool qmp_blockdev_del(void *opaque, json_object **ret, GError **errp)
{
    NodeNameArgs *args = opaque;

    if (!bdrv_find_node(args->node_name)) {
        qmp_error_setg(errp,
                       "Failed to find node with node-name='%s'", args->node_name);
        return false;
    }
    return bdrv_delete(args->node_name, errp);
}

/* --- query-named-block-nodes --- */

typedef struct {
    bool flat, has_flat;
} QueryNodesArgs;

static const ArgSpec query_nodes_members[] = {
    ARG_OPTIONAL("flat", ARG_BOOL, QueryNodesArgs, flat, has_flat),
    ARG_TABLE_END
};
static const ArgSpec *const query_nodes_args[] = { query_nodes_members, NULL };

static void collect_node(BlockDriverState *bs, gpointer opaque)
{
    g_ptr_array_add(opaque, bs);
}

static bool qmp_query_named_block_nodes(void *opaque, json_object **ret, GError **errp)
{
    g_autoptr(GPtrArray) nodes = g_ptr_array_new();
    json_object *list = json_object_new_array();

    QueryNodesArgs *args = opaque;

    /* Children are nodes of the table too; "flat" leaves out the
     * backing-image chains. */
    bdrv_foreach(collect_node, nodes);
    /* QEMU lists the newest node first. */
    for (guint i = nodes->len; i-- > 0;) {
        json_object_array_add(list, node_device_info(g_ptr_array_index(nodes, i),
                                                     args->flat));
    }
    *ret = list;
    return true;
}

/* --- drives --- */

static void emit_tray_moved(BlockBackend *blk)
{
    json_object *data = json_object_new_object();

    json_object_object_add(data, "device", json_object_new_string(blk_get_id(blk)));
    json_object_object_add(data, "id", json_object_new_string(blk_get_id(blk)));
    json_object_object_add(data, "tray-open", json_object_new_boolean(blk_is_tray_open(blk)));
    qmp_event_emit("DEVICE_TRAY_MOVED", data);
}

/* Moves the tray and reports it, as a guest's drive would. */
static void set_tray(BlockBackend *blk, bool open)
{
    if (blk_is_tray_open(blk) != open) {
        blk_set_tray_open(blk, open);
        emit_tray_moved(blk);
    }
}

/* Drives are both QEMU's BlockBackend ("device") and its device ("id"). */
typedef struct {
    char *device, *id;
    bool has_device, has_id;
    bool force, has_force;
    char *node_name;
} DriveArgs;

static const ArgSpec drive_ref_members[] = {
    ARG_OPTIONAL("device", ARG_STR, DriveArgs, device, has_device),
    ARG_OPTIONAL("id", ARG_STR, DriveArgs, id, has_id),
    ARG_TABLE_END
};
static const ArgSpec drive_force_members[] = {
    ARG_OPTIONAL("force", ARG_BOOL, DriveArgs, force, has_force),
    ARG_TABLE_END
};
static const ArgSpec drive_id_members[] = {
    ARG_REQUIRED("id", ARG_STR, DriveArgs, id),
    ARG_TABLE_END
};
static const ArgSpec drive_medium_members[] = {
    ARG_REQUIRED("id", ARG_STR, DriveArgs, id),
    ARG_REQUIRED("node-name", ARG_STR, DriveArgs, node_name),
    ARG_TABLE_END
};
static const ArgSpec *const open_tray_args[] = { drive_ref_members, drive_force_members, NULL };
static const ArgSpec *const close_tray_args[] = { drive_ref_members, NULL };
static const ArgSpec *const drive_id_args[] = { drive_id_members, NULL };
static const ArgSpec *const insert_medium_args[] = { drive_medium_members, NULL };

static BlockBackend *find_drive(const char *device, const char *id, GError **errp)
{
    if (!device == !id) {
        qmp_error_setg(errp, "Need exactly one of 'device' and 'id'");
        return NULL;
    }
    const char *name = id ? id : device;
    BlockBackend *blk = blk_find(name);
    if (!blk) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found", name);
    }
    return blk;
}

static bool remove_medium(BlockBackend *blk, GError **errp)
{
    if (!blk_is_tray_open(blk)) {
        qmp_error_setg(errp, "Tray of device '%s' is not open",
                       blk_get_id(blk));
        return false;
    }
    if (!blk_get_medium(blk)) {
        return true;
    }
    return blk_remove_medium(blk, errp);
}

static bool qmp_blockdev_open_tray(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;
    BlockBackend *blk = find_drive(args->device, args->id, errp);

    /* berth's drives have no lock, so "force" has nothing to override. */
    if (!blk) {
        return false;
    }
    set_tray(blk, true);
    return true;
}

static bool qmp_blockdev_close_tray(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;
    BlockBackend *blk = find_drive(args->device, args->id, errp);

    if (!blk) {
        return false;
    }
    set_tray(blk, false);
    return true;
}

static bool qmp_eject(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;
    BlockBackend *blk = find_drive(args->device, args->id, errp);

    if (!blk) {
        return false;
    }
    set_tray(blk, true);
    return remove_medium(blk, errp);
}

static bool qmp_blockdev_remove_medium(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;
    BlockBackend *blk = find_drive(NULL, args->id, errp);

    return blk && remove_medium(blk, errp);
}

typedef struct {
    BlockDriverState *bs;
    bool found;
} MediumSearch;

static void check_medium(BlockBackend *blk, gpointer opaque)
{
    MediumSearch *search = opaque;

    if (blk_get_medium(blk) == search->bs) {
        search->found = true;
    }
}

static bool node_is_medium(BlockDriverState *bs)
{
    MediumSearch search = { .bs = bs };

    blk_foreach(check_medium, &search);
    return search.found;
}

static bool qmp_blockdev_insert_medium(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;
    BlockBackend *blk = find_drive(NULL, args->id, errp);

    if (!blk) {
        return false;
    }
    BlockDriverState *bs = bdrv_find_node(args->node_name);
    if (!bs) {
        qmp_error_setg(errp, "Node '%s' not found", args->node_name);
        return false;
    }
    if (node_is_medium(bs)) {
        qmp_error_setg(errp, "Node '%s' is already in use",
                       args->node_name);
        return false;
    }
    if (!blk_is_tray_open(blk)) {
        qmp_error_setg(errp, "Tray of the device is not open");
        return false;
    }
    if (blk_get_medium(blk)) {
        qmp_error_setg(errp, "There already is a medium in the device");
        return false;
    }
    return blk_insert_medium(blk, bs, errp);
}

/* --- drive-add / drive-del (berth's own) --- */

typedef struct {
    char *id, *node_name;
    bool has_node_name;
} DriveAddArgs;

static const ArgSpec drive_add_members[] = {
    ARG_REQUIRED("id", ARG_STR, DriveAddArgs, id),
    ARG_OPTIONAL("node-name", ARG_STR, DriveAddArgs, node_name, has_node_name),
    ARG_TABLE_END
};
static const ArgSpec *const drive_add_args[] = { drive_add_members, NULL };

static bool qmp_drive_add(void *opaque, json_object **ret, GError **errp)
{
    DriveAddArgs *args = opaque;
    BlockDriverState *bs = NULL;

    if (args->has_node_name) {
        bs = bdrv_find_node(args->node_name);
        if (!bs) {
            qmp_error_setg(errp, "Node '%s' not found",
                           args->node_name);
            return false;
        }
        if (node_is_medium(bs)) {
            qmp_error_setg(errp, "Node '%s' is already in use",
                           args->node_name);
            return false;
        }
    }
    return blk_new(args->id, bs, errp) != NULL;
}

static bool qmp_drive_del(void *opaque, json_object **ret, GError **errp)
{
    DriveArgs *args = opaque;

    if (!blk_find(args->id)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                    args->id);
        return false;
    }
    return blk_delete(args->id, errp);
}

/* --- query-block --- */

static void describe_drive(BlockBackend *blk, gpointer opaque)
{
    json_object *drive = json_object_new_object();
    BlockDriverState *medium = blk_get_medium(blk);

    json_object_object_add(drive, "device", json_object_new_string(blk_get_id(blk)));
    json_object_object_add(drive, "qdev", json_object_new_string(blk_get_id(blk)));
    json_object_object_add(drive, "type", json_object_new_string("unknown"));
    json_object_object_add(drive, "removable", json_object_new_boolean(true));
    json_object_object_add(drive, "locked", json_object_new_boolean(false));
    json_object_object_add(drive, "tray_open", json_object_new_boolean(blk_is_tray_open(blk)));
    if (medium) {
        json_object_object_add(drive, "inserted", node_device_info(medium, false));
    }
    json_object_array_add(opaque, drive);
}

static bool qmp_query_block(void *opaque, json_object **ret, GError **errp)
{
    json_object *list = json_object_new_array();

    blk_foreach(describe_drive, list);
    *ret = list;
    return true;
}

static const ArgSpec tray_moved_members[] = {
    { .name = "device", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    { .name = "id", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    { .name = "tray-open", .type = ARG_BOOL, .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};
static const ArgSpec *const tray_moved_data[] = { tray_moved_members, NULL };

const QmpEventDef block_qmp_events[] = {
    { .name = "DEVICE_TRAY_MOVED", .data = tray_moved_data },
    QMP_EVENT_END
};

const QmpCommandDef block_qmp_commands[] = {
    { .name = "blockdev-add", .handler = qmp_blockdev_add, .flags = QMP_CMD_RAW_ARGS,
      .raw_schema = &bdrv_blockdev_add_schema },
    {
        .name = "blockdev-del", .handler = qmp_blockdev_del,
        .args = node_name_args, .args_size = sizeof(NodeNameArgs),
    },
    {
        .name = "query-named-block-nodes", .handler = qmp_query_named_block_nodes,
        .args = query_nodes_args, .args_size = sizeof(QueryNodesArgs),
    },
    { .name = "query-block", .handler = qmp_query_block },
    {
        .name = "drive-add", .handler = qmp_drive_add,
        .args = drive_add_args, .args_size = sizeof(DriveAddArgs),
    },
    {
        .name = "drive-del", .handler = qmp_drive_del,
        .args = drive_id_args, .args_size = sizeof(DriveArgs),
    },
    {
        .name = "eject", .handler = qmp_eject,
        .args = open_tray_args, .args_size = sizeof(DriveArgs),
    },
    {
        .name = "blockdev-open-tray", .handler = qmp_blockdev_open_tray,
        .args = open_tray_args, .args_size = sizeof(DriveArgs),
    },
    {
        .name = "blockdev-close-tray", .handler = qmp_blockdev_close_tray,
        .args = close_tray_args, .args_size = sizeof(DriveArgs),
    },
    {
        .name = "blockdev-remove-medium", .handler = qmp_blockdev_remove_medium,
        .args = drive_id_args, .args_size = sizeof(DriveArgs),
    },
    {
        .name = "blockdev-insert-medium", .handler = qmp_blockdev_insert_medium,
        .args = insert_medium_args, .args_size = sizeof(DriveArgs),
    },
    QMP_COMMAND_END
};
