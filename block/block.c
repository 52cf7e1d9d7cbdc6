/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Nodes: the global node table, reference counting and bdrv_open(). Opening
 * decodes blockdev-add's options in one pass (the base members plus the
 * chosen driver's, via argspec), applies QEMU's checks in QEMU's order so
 * that every error text matches qemu-storage-daemon 7.2, and only then lets
 * the driver touch the outside world. The table lives on the main context's
 * thread; references are atomic because requests from I/O threads hold them.
 */
#include "block/block-int.h"
#include "berth/block/block-backend.h"
#include "util/id.h"
#include "util/named-table.h"

#include <errno.h>
#include <string.h>

/* QEMU's node names are at most 31 characters (a 32-byte buffer). */
#define NODE_NAME_MAX 31

static const char *const driver_names[] = { "file", "null-co", "memory", "nbd", NULL };

/* Parallel to driver_names; NULL marks a driver berth knows but lacks. */
static const BlockDriver *const drivers[] = { &bdrv_file, &bdrv_null_co, &bdrv_memory, &bdrv_nbd };

static const char *const discard_values[] = { "ignore", "unmap", NULL };
static const char *const detect_zeroes_values[] = { "off", "on", "unmap", NULL };

static const ArgSpec cache_members[] = {
    ARG_OPTIONAL("direct", ARG_BOOL, BdrvOptions, cache_direct, has_cache_direct),
    ARG_OPTIONAL("no-flush", ARG_BOOL, BdrvOptions, cache_no_flush, has_cache_no_flush),
    ARG_TABLE_END
};

/* BlockdevOptionsBase, in QEMU's order (errors are reported in that order). */
static const ArgSpec base_members[] = {
    { .name = "driver", .type = ARG_ENUM, .offset = offsetof(BdrvOptions, driver),
      .present_offset = ARG_NO_PRESENCE, .enum_values = driver_names },
    ARG_OPTIONAL("node-name", ARG_STR, BdrvOptions, node_name, has_node_name),
    ARG_ENUM_OPTIONAL("discard", discard_values, BdrvOptions, discard, has_discard),
    ARG_NESTED("cache", cache_members, true),
    ARG_OPTIONAL("read-only", ARG_BOOL, BdrvOptions, read_only, has_read_only),
    ARG_OPTIONAL("auto-read-only", ARG_BOOL, BdrvOptions, auto_read_only, has_auto_read_only),
    ARG_OPTIONAL("force-share", ARG_BOOL, BdrvOptions, force_share, has_force_share),
    ARG_ENUM_OPTIONAL("detect-zeroes", detect_zeroes_values, BdrvOptions, detect_zeroes,
                      has_detect_zeroes),
    ARG_TABLE_END
};

/* node-name -> bs, in creation order; the table's reference */
static BerthNamedTable node_table = BERTH_NAMED_TABLE_INIT;

static bool check_node_name(const char *name, GError **errp)
{
    if (!berth_id_wellformed(name)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid node-name: '%s'", name);
        return false;
    }
    if (blk_find(name)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "node-name=%s is conflicting with a device id", name);
        return false;
    }
    if (bdrv_find_node(name)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Duplicate nodes with node-name='%s'", name);
        return false;
    }
    if (strlen(name) > NODE_NAME_MAX) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Node name too long");
        return false;
    }
    return true;
}

/* Checks between options that QEMU makes before opening anything. */
static bool check_base_options(const BdrvOptions *opts, GError **errp)
{
    if (!opts->has_node_name) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "'node-name' must be specified for the root node");
        return false;
    }
    if (!check_node_name(opts->node_name, errp)) {
        return false;
    }
    if (opts->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP &&
        opts->discard != BDRV_DISCARD_UNMAP) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "setting detect-zeroes to unmap is not allowed without "
                            "setting discard operation to unmap");
        return false;
    }
    if (opts->force_share && !opts->read_only) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "force-share=on can only be used with read-only images");
        return false;
    }
    return true;
}

static void bdrv_free(BlockDriverState *bs)
{
    if (bs->drv && bs->drv->close) {
        bs->drv->close(bs);
    }
    g_free(bs->node_name);
    g_free(bs->filename);
    g_free(bs);
}

BlockDriverState *bdrv_open(json_object *options, bool keyval, GError **errp)
{
    BdrvOptions opts = { 0 };
    const ArgSpec *tables[3] = { base_members, NULL, NULL };
    const BlockDriver *drv;
    BlockDriverState *bs;
    int idx;

    idx = argspec_discriminator(options, "driver", driver_names, errp);
    if (idx < 0) {
        return NULL;
    }
    drv = drivers[idx];
    if (!drv) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Driver '%s' is not supported yet", driver_names[idx]);
        return NULL;
    }
    tables[1] = drv->select_options ? drv->select_options(options, errp) : drv->options;
    if (!tables[1]) {
        return NULL;
    }
    if (!argspec_decode(tables, options, keyval, &opts, errp)) {
        return NULL;
    }
    if (!check_base_options(&opts, errp)) {
        argspec_clear(tables, &opts);
        return NULL;
    }

    bs = g_new0(BlockDriverState, 1);
    bs->refcnt = 1;
    bs->node_name = g_strdup(opts.node_name);
    bs->read_only = opts.read_only;
    bs->auto_read_only = opts.auto_read_only;
    bs->force_share = opts.force_share;
    bs->discard = opts.has_discard ? opts.discard : BDRV_DISCARD_IGNORE;
    bs->detect_zeroes = opts.has_detect_zeroes ? opts.detect_zeroes : BDRV_DETECT_ZEROES_OFF;
    bs->cache_direct = opts.cache_direct;
    bs->cache_no_flush = opts.cache_no_flush;
    bs->request_alignment = 1;

    if (!drv->open(bs, &opts, errp)) {
        /* The driver cleaned up after itself; close() must not run. */
        argspec_clear(tables, &opts);
        g_free(bs->node_name);
        g_free(bs);
        return NULL;
    }
    bs->drv = drv;
    if (bs->size > (uint64_t) BDRV_MAX_LENGTH) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Could not refresh total sector count: File too large");
        argspec_clear(tables, &opts);
        bdrv_free(bs);
        return NULL;
    }
    /* Like QEMU, expose whole sectors (a partial tail reads as zeroes),
     * except for drivers that QEMU sizes to the byte. */
    if (!drv->exact_size) {
        bs->size = (bs->size + BDRV_SECTOR_SIZE - 1) & ~(uint64_t) (BDRV_SECTOR_SIZE - 1);
    }
    bs->filename = drv->describe ? drv->describe(bs, &opts) : NULL;
    argspec_clear(tables, &opts);

    /* A driver may turn the caller's loop while it opens (nbd connects on a
     * thread meanwhile): another monitor could have taken the name. */
    if (bdrv_find_node(bs->node_name)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Duplicate nodes with node-name='%s'", bs->node_name);
        bdrv_free(bs);
        return NULL;
    }
    bs->in_table = true;
    berth_named_table_add(&node_table, bs->node_name, bs);
    return bdrv_get(bs);
}

BlockDriverState *bdrv_find_node(const char *node_name)
{
    return berth_named_table_find(&node_table, node_name);
}

BlockDriverState *bdrv_get(BlockDriverState *bs)
{
    g_return_val_if_fail(bs != NULL, NULL);
    g_atomic_int_inc(&bs->refcnt);
    return bs;
}

void bdrv_put(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    if (g_atomic_int_dec_and_test(&bs->refcnt)) {
        bdrv_free(bs);
    }
}

static void node_table_remove(BlockDriverState *bs)
{
    berth_named_table_remove(&node_table, bs->node_name);
    bs->in_table = false;
    bdrv_put(bs);
}

bool bdrv_delete(const char *node_name, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(node_name);

    if (!bs) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "Failed to find node with node-name='%s'", node_name ? node_name : "");
        return false;
    }
    /* Requests still finishing keep the node alive but are not users. */
    if (g_atomic_int_get(&bs->refcnt) - g_atomic_int_get(&bs->in_flight) > 1) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "Node %s is in use", node_name);
        return false;
    }
    node_table_remove(bs);
    return true;
}

static gpointer copy_node_name(gpointer bs)
{
    return g_strdup(((BlockDriverState *) bs)->node_name);
}

void bdrv_foreach(void (*fn)(BlockDriverState *bs, gpointer opaque), gpointer opaque)
{
    /*
     * fn may open or delete nodes. Walk a copy of the names, not references:
     * a reference held here would make every node look in use to a fn that
     * deletes.
     */
    g_autoptr(GPtrArray) names = berth_named_table_snapshot(&node_table, copy_node_name,
                                                            g_free);
    for (guint i = 0; i < names->len; i++) {
        BlockDriverState *bs = bdrv_find_node(names->pdata[i]);
        if (bs) {
            fn(bs, opaque);
        }
    }
}

void bdrv_delete_all(void)
{
    BlockDriverState *bs;

    while ((bs = berth_named_table_newest(&node_table))) {
        node_table_remove(bs);
    }
}

void bdrv_get_info(BlockDriverState *bs, BdrvInfo *info)
{
    g_return_if_fail(bs != NULL && info != NULL);
    *info = (BdrvInfo) {
        .node_name = bs->node_name,
        .driver = bs->drv->name,
        .filename = bs->filename,
        .size = bs->size,
        .read_only = bs->read_only,
        .can_flush = bs->can_flush && !bs->cache_no_flush,
        .can_fua = bs->can_fua,
        .can_discard = bs->can_discard && bs->discard == BDRV_DISCARD_UNMAP,
        .can_write_zeroes_fast = bs->can_write_zeroes_fast,
        .has_block_status = bs->has_block_status,
        .coherent = bs->coherent,
        .request_alignment = bs->request_alignment ? bs->request_alignment : 1,
        .cache_direct = bs->cache_direct,
        .cache_no_flush = bs->cache_no_flush,
        .detect_zeroes = detect_zeroes_values[bs->detect_zeroes],
    };
}

const char *bdrv_get_node_name(BlockDriverState *bs)
{
    g_return_val_if_fail(bs != NULL, NULL);
    return bs->node_name;
}

uint64_t bdrv_getlength(BlockDriverState *bs)
{
    g_return_val_if_fail(bs != NULL, 0);
    return bs->size;
}

bool bdrv_is_read_only(BlockDriverState *bs)
{
    g_return_val_if_fail(bs != NULL, true);
    return bs->read_only;
}
