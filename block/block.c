/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Nodes: the global node table, reference counting and bdrv_open(). Opening
 * decodes blockdev-add's options in one pass (the common members into this
 * file's struct, the chosen driver's into a struct of the driver's own, via
 * argspec), applies QEMU's checks in QEMU's order so
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

/*
 * The values of the "driver" member: the names of bdrv_drivers, in its
 * order, so that an index into one is an index into the other. Made once
 * and kept for the process's life.
 */
static const char *const *driver_names(void)
{
    static const char **names;

    if (g_once_init_enter(&names)) {
        size_t n = 0;

        while (bdrv_drivers[n]) {
            n++;
        }
        const char **list = g_new0(const char *, n + 1);
        for (size_t i = 0; i < n; i++) {
            list[i] = bdrv_drivers[i]->name;
        }
        g_once_init_leave(&names, list);
    }
    return names;
}

static const char *const discard_values[] = { "ignore", "unmap", NULL };
static const char *const detect_zeroes_values[] = { "off", "on", "unmap", NULL };

/* BlockdevCacheOptions */
typedef struct {
    bool direct, has_direct;
    bool no_flush, has_no_flush;
} BdrvCacheOptions;

static const ArgSpec cache_members[] = {
    ARG_OPTIONAL("direct", ARG_BOOL, BdrvCacheOptions, direct, has_direct),
    ARG_OPTIONAL("no-flush", ARG_BOOL, BdrvCacheOptions, no_flush, has_no_flush),
    ARG_TABLE_END
};

/* BlockdevOptionsBase: the members every driver has, decoded here. */
typedef struct {
    int driver;
    char *node_name;
    bool has_node_name;
    bool read_only, has_read_only;
    bool auto_read_only, has_auto_read_only;
    bool force_share, has_force_share;
    int discard;
    bool has_discard;
    int detect_zeroes;
    bool has_detect_zeroes;
    BdrvCacheOptions cache;
    bool has_cache;
} BdrvCommonOptions;

/*
 * BlockdevOptionsBase after "driver", in QEMU's order (errors are reported
 * in that order). bdrv_open() checks "driver" first, with a table of its
 * own because its values come from bdrv_drivers at run time.
 */
static const ArgSpec common_members[] = {
    ARG_OPTIONAL("node-name", ARG_STR, BdrvCommonOptions, node_name, has_node_name),
    ARG_ENUM_OPTIONAL("discard", discard_values, BdrvCommonOptions, discard, has_discard),
    ARG_NESTED_OPTIONAL("cache", cache_members, BdrvCommonOptions, cache, has_cache),
    ARG_OPTIONAL("read-only", ARG_BOOL, BdrvCommonOptions, read_only, has_read_only),
    ARG_OPTIONAL("auto-read-only", ARG_BOOL, BdrvCommonOptions, auto_read_only,
                 has_auto_read_only),
    ARG_OPTIONAL("force-share", ARG_BOOL, BdrvCommonOptions, force_share, has_force_share),
    ARG_ENUM_OPTIONAL("detect-zeroes", detect_zeroes_values, BdrvCommonOptions, detect_zeroes,
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

/*
 * QEMU's automatic names for nodes opened nested in another: "#block", a
 * counter and two random digits. '#' cannot start a user's node-name, so
 * these never clash with one.
 */
static char *auto_node_name(void)
{
    static gint counter;

    for (;;) {
        char *name = g_strdup_printf("#block%d%02d", g_atomic_int_add(&counter, 1),
                                     g_random_int_range(0, 100));
        if (!bdrv_find_node(name)) {
            return name;
        }
        g_free(name);
    }
}

/* Checks between options that QEMU makes before opening anything. */
static bool check_common_options(BdrvCommonOptions *opts, bool nested, GError **errp)
{
    if (!opts->has_node_name && nested) {
        opts->node_name = auto_node_name();
        opts->has_node_name = true;
    } else if (!opts->has_node_name) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "'node-name' must be specified for the root node");
        return false;
    } else if (!check_node_name(opts->node_name, errp)) {
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

/* --- query-qmp-schema: blockdev-add as QEMU's union on "driver" --- */

/* The tag's type comes from the variants (qapi/schema.c). */
static const ArgSpec blockdev_add_driver_member[] = {
    { .name = "driver", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};
static const ArgSpec *const blockdev_add_base[] = {
    blockdev_add_driver_member, common_members, NULL
};

static void blockdev_add_variants(QmpVariantFunc fn, gpointer opaque)
{
    for (size_t i = 0; bdrv_drivers[i]; i++) {
        const BlockDriver *drv = bdrv_drivers[i];
        const ArgSpec *const tables[] = {
            drv->schema_options ? drv->schema_options : drv->options, NULL
        };
        fn(drv->name, tables, opaque);
    }
}

const QmpArgsUnion bdrv_blockdev_add_schema = {
    .base = blockdev_add_base, .tag = "driver", .foreach_variant = blockdev_add_variants,
};

static void node_table_remove(BlockDriverState *bs);

/* The parent's references; any thread (the last put of a parent). */
static void release_children(BlockDriverState *bs)
{
    while (bs->n_children > 0) {
        BlockDriverState *child = bs->children[--bs->n_children].bs;

        g_atomic_int_add(&child->n_parents, -1);
        bdrv_put(child);
    }
}

/*
 * Nested children leave the node table with their parent (main thread):
 * the parent's reference keeps them alive as long as it lives. A nested
 * child that another node also uses by name stays.
 */
static void detach_children(BlockDriverState *bs)
{
    for (guint i = 0; i < bs->n_children; i++) {
        BlockDriverState *child = bs->children[i].bs;

        if (!child->monitor_owned && child->in_table &&
            g_atomic_int_get(&child->n_parents) == 1) {
            detach_children(child);
            node_table_remove(child);
        }
    }
}

static void bdrv_free(BlockDriverState *bs)
{
    if (bs->drv && bs->drv->close) {
        bs->drv->close(bs);
    }
    bdrv_dirty_bitmaps_free_all(bs);
    berth_mutex_clear(&bs->dirty_lock);
    release_children(bs);
    g_free(bs->node_name);
    g_free(bs->filename);
    g_free(bs);
}

static BlockDriverState *open_node(json_object *options, bool keyval, bool nested,
                                   GError **errp)
{
    BdrvCommonOptions common = { 0 };
    const ArgSpec driver_member[] = {
        { .name = "driver", .type = ARG_ENUM, .offset = offsetof(BdrvCommonOptions, driver),
          .present_offset = ARG_NO_PRESENCE, .enum_values = driver_names() },
        ARG_TABLE_END
    };
    g_autofree void *drv_opts = NULL;
    ArgSpecTarget targets[] = {
        { driver_member, &common }, { common_members, &common }, { NULL, NULL },
    };
    const BlockDriver *drv;
    BlockDriverState *bs;
    int idx;

    idx = argspec_discriminator(options, "driver", driver_names(), errp);
    if (idx < 0) {
        return NULL;
    }
    drv = bdrv_drivers[idx];
    targets[2].members = drv->select_options ? drv->select_options(options, errp)
                                             : drv->options;
    if (!targets[2].members) {
        return NULL;
    }
    /* The driver's struct; never NULL, so that open() need not check. */
    targets[2].out = drv_opts = g_malloc0(MAX(drv->options_size, 1));
    if (!argspec_decode_targets(targets, G_N_ELEMENTS(targets), options, keyval, errp)) {
        return NULL;
    }
    if (!check_common_options(&common, nested, errp)) {
        argspec_clear_targets(targets, G_N_ELEMENTS(targets));
        return NULL;
    }

    bs = g_new0(BlockDriverState, 1);
    bs->refcnt = 1;
    bs->node_name = g_strdup(common.node_name);
    bs->read_only = common.read_only;
    bs->auto_read_only = common.auto_read_only;
    bs->force_share = common.force_share;
    bs->discard = common.has_discard ? common.discard : BDRV_DISCARD_IGNORE;
    bs->detect_zeroes = common.has_detect_zeroes ? common.detect_zeroes
                                                 : BDRV_DETECT_ZEROES_OFF;
    bs->cache_direct = common.cache.direct;
    bs->cache_no_flush = common.cache.no_flush;
    bs->request_alignment = 1;
    g_mutex_init(&bs->dirty_lock);
    bs->monitor_owned = !nested;
    bs->opening_keyval = keyval;

    /* Set for open(): bdrv_open_child() asks the driver what its
     * children's permissions are. */
    bs->drv = drv;
    if (!drv->open(bs, drv_opts, errp)) {
        /* The driver cleaned up after itself (but for the children it
         * opened, which are bs's); close() must not run. */
        argspec_clear_targets(targets, G_N_ELEMENTS(targets));
        bdrv_child_perms_drop(bs);
        detach_children(bs);
        release_children(bs);
        g_free(bs->node_name);
        g_free(bs);
        return NULL;
    }
    bs->opening_keyval = false;
    bool too_large = bs->size > (uint64_t) BDRV_MAX_LENGTH;
    if (too_large || !bdrv_child_perms_refresh(bs, errp)) {
        if (too_large) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "Could not refresh total sector count: File too large");
        }
        argspec_clear_targets(targets, G_N_ELEMENTS(targets));
        bdrv_child_perms_drop(bs);
        detach_children(bs);
        bdrv_free(bs);
        return NULL;
    }
    /* Like QEMU, expose whole sectors (a partial tail reads as zeroes),
     * except for drivers that QEMU sizes to the byte. */
    if (!drv->exact_size) {
        bs->size = (bs->size + BDRV_SECTOR_SIZE - 1) & ~(uint64_t) (BDRV_SECTOR_SIZE - 1);
    }
    bs->filename = drv->describe ? drv->describe(bs, drv_opts) : NULL;
    argspec_clear_targets(targets, G_N_ELEMENTS(targets));

    /* A driver may turn the caller's loop while it opens (nbd connects on a
     * thread meanwhile): another monitor could have taken the name. */
    if (bdrv_find_node(bs->node_name)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Duplicate nodes with node-name='%s'", bs->node_name);
        bdrv_child_perms_drop(bs);
        detach_children(bs);
        bdrv_free(bs);
        return NULL;
    }
    bs->in_table = true;
    berth_named_table_add(&node_table, bs->node_name, bs);
    return bdrv_get(bs);
}

BlockDriverState *bdrv_open(json_object *options, bool keyval, GError **errp)
{
    return open_node(options, keyval, false, errp);
}

BlockDriverState *bdrv_open_nested(json_object *options, bool keyval, GError **errp)
{
    return open_node(options, keyval, true, errp);
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
    /* Out of the graph: what it holds on its children goes now, on the
     * main thread, though its last reference may go later elsewhere. */
    bdrv_child_perms_drop(bs);
    detach_children(bs);
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
    /*
     * QEMU's checks in its order: users such as exports and drives, then
     * nested nodes, then parents. Requests still finishing keep the node
     * alive but are not users; the table and each parent hold one
     * reference.
     */
    gint parents = g_atomic_int_get(&bs->n_parents);
    if (g_atomic_int_get(&bs->refcnt) - g_atomic_int_get(&bs->in_flight) - parents > 1) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "Node %s is in use", node_name);
        return false;
    }
    if (!bs->monitor_owned) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "Node %s is not owned by the monitor",
                    node_name);
        return false;
    }
    if (parents > 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY, "Block device %s is in use", node_name);
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
        .size = bdrv_size(bs),
        .read_only = bs->read_only,
        .can_flush = bs->can_flush && !bs->cache_no_flush,
        .can_fua = bs->can_fua,
        .can_discard = bs->can_discard && bs->discard == BDRV_DISCARD_UNMAP,
        .can_write_zeroes_fast = bs->can_write_zeroes_fast,
        .has_block_status = bs->has_block_status,
        .coherent = bs->coherent,
        .read_leaves_buffer = bs->read_leaves_buffer,
        .reads_zeroes = bs->reads_zeroes,
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
    return bdrv_size(bs);
}

bool bdrv_is_read_only(BlockDriverState *bs)
{
    g_return_val_if_fail(bs != NULL, true);
    return bs->read_only;
}
