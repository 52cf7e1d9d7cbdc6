/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD exports: what a node looks like to NBD clients (size window, the
 * transmission flags it can honour, block-size constraints), the table of
 * named exports that the handshake searches, and an export's lifetime:
 * closing disconnects its clients, leaves the table and runs the close
 * callback once; ejecting the medium of its drive closes it; safe removal
 * waits for the last client to leave.
 */
#include "server-int.h"
#include "util/named-table.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

/* name -> NBDExport (one reference each), in creation order for LIST */
static BerthNamedTable export_table = BERTH_NAMED_TABLE_INIT;
/* Every export not yet freed, named or not (borrowed): a change of the
 * server's connection limit must reach all of them, including those that
 * serve a channel handed over by the host (nbd_conn_new with an export). */
static GList *live_exports;

/*
 * Every connection goes through the same node in this process, so a flush on
 * any of them covers writes acknowledged on all - when the node itself is
 * coherent (no per-connection caches beneath us). A server that takes one
 * connection at a time withholds the flag whatever the mode: a client that
 * opens several connections on its word (nbdcopy opens four) would wait for
 * ever on the second, which is never greeted while the first is open.
 */
static void update_multi_conn_flag(NBDExport *exp)
{
    bool advertise;

    switch (exp->multi_conn) {
    case NBD_MULTI_CONN_ON:
        advertise = true;
        break;
    case NBD_MULTI_CONN_OFF:
        advertise = false;
        break;
    default:
        advertise = exp->info.coherent;
        break;
    }
    if (nbd_server_get_max_connections() == 1) {
        advertise = false;
    }
    if (advertise) {
        exp->tx_flags |= NBD_FLAG_CAN_MULTI_CONN;
    } else {
        exp->tx_flags &= ~NBD_FLAG_CAN_MULTI_CONN;
    }
}

static void compute_flags(NBDExport *exp, bool read_only)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE;
    if (read_only) {
        f |= NBD_FLAG_READ_ONLY;
    } else {
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    }
    exp->tx_flags = f;
    update_multi_conn_flag(exp);
}

void nbd_export_connection_limit_changed(void)
{
    for (GList *it = live_exports; it; it = it->next) {
        update_multi_conn_flag(it->data);
    }
}

bool nbd_export_set_multi_conn(NBDExport *exp, NBDMultiConn mode, GError **errp)
{
    /* Read-only clients write nothing whose visibility the flag could
     * promise, so only a writable export needs a coherent node. */
    if (mode == NBD_MULTI_CONN_ON && !exp->info.coherent && !nbd_export_is_read_only(exp)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Node '%s' is not coherent across connections: a writable export "
                    "of it cannot advertise multi-conn", exp->info.node_name);
        return false;
    }
    exp->multi_conn = mode;
    update_multi_conn_flag(exp);
    return true;
}

bool nbd_export_can_multi_conn(NBDExport *exp)
{
    return (exp->tx_flags & NBD_FLAG_CAN_MULTI_CONN) != 0;
}

static void on_medium_ejected(BlockBackend *blk, gpointer opaque)
{
    NBDExport *exp = opaque;
    nbd_export_close(exp);
}

static NBDExport *export_open(const NBDExportConfig *cfg, GError **errp)
{
    BlockDriverState *bs = cfg->bs;
    uint64_t dev_offset = cfg->dev_offset;
    int64_t size = cfg->size;

    g_return_val_if_fail(bs != NULL, NULL);
    g_return_val_if_fail(!(cfg->ctx && cfg->n_ctxs), NULL);
    for (guint i = 0; i < cfg->n_ctxs; i++) {
        g_return_val_if_fail(cfg->ctxs[i] != NULL, NULL);
    }
    BdrvInfo info;
    bdrv_get_info(bs, &info);
    if (dev_offset > info.size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Export offset %" G_GUINT64_FORMAT " is beyond the end of node '%s'",
                    dev_offset, info.node_name);
        return NULL;
    }
    uint64_t avail = info.size - dev_offset;
    if (size < 0) {
        size = avail;
    } else if ((uint64_t) size > avail) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Export of %" G_GINT64_FORMAT " bytes at offset %" G_GUINT64_FORMAT
                    " does not fit in node '%s'", size, dev_offset, info.node_name);
        return NULL;
    }
    for (guint i = 0; i < cfg->n_bitmaps; i++) {
        if (!bdrv_dirty_bitmap_check(cfg->bitmaps[i], errp)) {
            return NULL;
        }
    }
    bool read_only = cfg->read_only;
    if (!read_only && info.read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "Cannot export read-only node '%s' as writable", info.node_name);
        return NULL;
    }

    /* What QEMU's exports hold: other processes may read and write the
     * image alongside (raw images are shared that way), not resize it. */
    uint32_t perm = BDRV_PERM_CONSISTENT_READ | (read_only ? 0 : BDRV_PERM_WRITE);
    if (!bdrv_perm_take(bs, perm, BDRV_PERM_RESIZE, errp)) {
        return NULL;
    }

    NBDExport *exp = g_new0(NBDExport, 1);
    exp->refcount = 1;
    exp->bs = bdrv_get(bs);
    exp->perm = perm;
    exp->unshared = BDRV_PERM_RESIZE;
    exp->info = info;
    exp->dev_offset = dev_offset;
    exp->size = size;
    exp->size_follows_node = cfg->size < 0;
    exp->writethrough = cfg->writethrough;
    exp->close_cb = cfg->close_cb;
    exp->min_block = MAX(info.request_alignment, 1);
    exp->pref_block = MAX(exp->min_block, 4096);
    exp->max_block = NBD_MAX_PAYLOAD;
    exp->multi_conn = NBD_MULTI_CONN_AUTO;
    compute_flags(exp, read_only);
    GMainContext *const *ctxs = cfg->n_ctxs ? cfg->ctxs : &cfg->ctx;
    exp->n_ctxs = cfg->n_ctxs ? cfg->n_ctxs : cfg->ctx ? 1 : 0;
    exp->ctxs = g_new0(GMainContext *, MAX(exp->n_ctxs, 1));
    for (guint i = 0; i < exp->n_ctxs; i++) {
        exp->ctxs[i] = g_main_context_ref(ctxs[i]);
    }
    exp->ctx_release = cfg->ctx_release;
    exp->ctx_release_data = cfg->ctx_release_data;
    exp->allocation_depth = cfg->allocation_depth;
    exp->bitmaps = g_new0(BdrvDirtyBitmap *, MAX(cfg->n_bitmaps, 1));
    exp->bitmap_contexts = g_new0(char *, cfg->n_bitmaps + 1);
    for (guint i = 0; i < cfg->n_bitmaps; i++) {
        BdrvDirtyBitmap *bm = cfg->bitmaps[i];
        BdrvDirtyBitmapInfo bi;
        bool dup = false;
        for (guint k = 0; k < exp->n_bitmaps; k++) {
            dup |= exp->bitmaps[k] == bm;
        }
        if (dup) {
            continue;           /* named twice: one context */
        }
        bdrv_dirty_bitmap_get_info(bm, &bi);
        bdrv_get(bdrv_dirty_bitmap_get_node(bm));
        bdrv_dirty_bitmap_set_busy(bm, true);
        exp->bitmap_contexts[exp->n_bitmaps] = g_strdup_printf("qemu:dirty-bitmap:%s", bi.name);
        exp->bitmaps[exp->n_bitmaps++] = bm;
    }
    live_exports = g_list_prepend(live_exports, exp);
    if (cfg->on_eject_blk) {
        exp->eject_blk = blk_ref(cfg->on_eject_blk);
        exp->eject_notifier = blk_add_eject_notifier(cfg->on_eject_blk, on_medium_ejected, exp);
    }
    return exp;
}

NBDExport *nbd_export_create(const NBDExportConfig *cfg, GError **errp)
{
    g_return_val_if_fail(cfg != NULL, NULL);
    NBDExport *exp = export_open(cfg, errp);
    if (!exp) {
        return NULL;
    }
    if (cfg->multi_conn != NBD_MULTI_CONN_AUTO &&
        !nbd_export_set_multi_conn(exp, cfg->multi_conn, errp)) {
        exp->ctx_release = NULL; /* nothing was made: the caller keeps its own */
        nbd_export_put(exp);
        return NULL;
    }
    if (cfg->id) {
        nbd_export_set_id(exp, cfg->id);
    }
    if (cfg->description) {
        nbd_export_set_description(exp, cfg->description);
    }
    if (cfg->name && !nbd_export_set_name(exp, cfg->name, errp)) {
        exp->ctx_release = NULL;
        nbd_export_put(exp);
        return NULL;
    }
    return exp;
}

NBDExport *nbd_export_new(BlockDriverState *bs, uint64_t dev_offset, int64_t size,
                          uint16_t nbdflags, void (*close_cb)(NBDExport *exp),
                          bool writethrough, BlockBackend *on_eject_blk, GError **errp)
{
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;

    cfg.bs = bs;
    cfg.dev_offset = dev_offset;
    cfg.size = size;
    cfg.read_only = (nbdflags & NBD_EXPORT_FLAG_READ_ONLY) != 0;
    cfg.writethrough = writethrough;
    cfg.close_cb = close_cb;
    cfg.on_eject_blk = on_eject_blk;
    return nbd_export_create(&cfg, errp);
}

NBDExport *nbd_export_get(NBDExport *exp)
{
    g_atomic_int_inc(&exp->refcount);
    return exp;
}

typedef struct {
    BlockDriverState *bs;
    uint32_t perm, unshared;
} PermRelease;

static gboolean release_perms_now(gpointer data)
{
    PermRelease *r = data;

    berth_tsan_acquire(r);
    bdrv_perm_release(r->bs, r->perm, r->unshared);
    bdrv_put(r->bs);
    g_free(r);
    return G_SOURCE_REMOVE;
}

/* Permissions live in the main thread; the last reference of an export may
 * go in another (an I/O thread's client), where this queues the release
 * for the main loop. Drops the export's node reference. */
static void release_perms(BlockDriverState *bs, uint32_t perm, uint32_t unshared)
{
    PermRelease *r = g_new(PermRelease, 1);

    *r = (PermRelease) { bs, perm, unshared };
    berth_tsan_release(r);
    g_main_context_invoke(NULL, release_perms_now, r);
}

void nbd_export_put(NBDExport *exp)
{
    if (!exp || !g_atomic_int_dec_and_test(&exp->refcount)) {
        return;
    }
    g_assert(exp->clients == NULL);
    live_exports = g_list_remove(live_exports, exp);
    if (exp->eject_blk) {
        blk_remove_eject_notifier(exp->eject_blk, exp->eject_notifier);
        blk_unref(exp->eject_blk);
    }
    if (exp->owner_destroy) {
        exp->owner_destroy(exp->owner_data);
    }
    release_perms(exp->bs, exp->perm, exp->unshared);
    /* Every client, and so every request they had in flight, is gone. */
    for (guint i = 0; i < exp->n_ctxs; i++) {
        g_main_context_unref(exp->ctxs[i]);
    }
    g_free(exp->ctxs);
    if (exp->ctx_release) {
        exp->ctx_release(exp->ctx_release_data);
    }
    for (guint i = 0; i < exp->n_bitmaps; i++) {
        BlockDriverState *node = bdrv_dirty_bitmap_get_node(exp->bitmaps[i]);
        bdrv_dirty_bitmap_set_busy(exp->bitmaps[i], false);
        bdrv_put(node);
    }
    g_free(exp->bitmaps);
    g_strfreev(exp->bitmap_contexts);
    g_free(exp->name);
    g_free(exp->description);
    g_free(exp->id);
    g_free(exp);
}

/* The name stays for queries and logs; only the table forgets it. */
static void leave_table(NBDExport *exp)
{
    if (!exp->in_table) {
        return;
    }
    berth_named_table_remove(&export_table, exp->name);
    exp->in_table = false;
    nbd_export_put(exp);
}

bool nbd_export_set_name(NBDExport *exp, const char *name, GError **errp)
{
    if (name && exp->in_table && strcmp(name, exp->name) == 0) {
        return true;
    }
    if (name) {
        if (strlen(name) > NBD_MAX_STRING) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Export name is longer than %u bytes", NBD_MAX_STRING);
            return false;
        }
        if (berth_named_table_find(&export_table, name)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "NBD server already has export named '%s'", name);
            return false;
        }
        if (exp->closed) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_CLOSED, "Export is closed");
            return false;
        }
    }
    nbd_export_get(exp);
    leave_table(exp);
    if (name) {
        g_free(exp->name);
        exp->name = g_strdup(name);
        berth_named_table_add(&export_table, exp->name, nbd_export_get(exp));
        exp->in_table = true;
    }
    nbd_export_put(exp);
    return true;
}

void nbd_export_set_description(NBDExport *exp, const char *description)
{
    g_free(exp->description);
    exp->description = g_strndup(description, description ? NBD_MAX_STRING : 0);
}

void nbd_export_set_id(NBDExport *exp, const char *id)
{
    g_free(exp->id);
    exp->id = g_strdup(id);
}

void nbd_export_set_owner_data(NBDExport *exp, gpointer data, GDestroyNotify destroy)
{
    exp->owner_data = data;
    exp->owner_destroy = destroy;
}

gpointer nbd_export_get_owner_data(NBDExport *exp)
{
    return exp->owner_data;
}

NBDExport *nbd_export_find(const char *name)
{
    return berth_named_table_find(&export_table, name);
}

GList *nbd_export_list(void)
{
    GList *list = NULL;
    for (guint i = berth_named_table_size(&export_table); i-- > 0;) {
        list = g_list_prepend(list, berth_named_table_nth(&export_table, i));
    }
    return list;
}

void nbd_export_foreach(void (*fn)(NBDExport *exp, gpointer opaque), gpointer opaque)
{
    GList *l = nbd_export_list();
    for (GList *it = l; it; it = it->next) {
        fn(it->data, opaque);
    }
    g_list_free(l);
}

void nbd_export_close(NBDExport *exp)
{
    if (exp->closed) {
        return;
    }
    nbd_export_get(exp);
    exp->closed = true;
    /* Clients detach themselves as they close. */
    while (exp->clients) {
        nbd_conn_close(exp->clients->data);
    }
    leave_table(exp);
    if (exp->eject_blk) {
        blk_remove_eject_notifier(exp->eject_blk, exp->eject_notifier);
        g_clear_pointer(&exp->eject_blk, blk_unref);
    }
    if (exp->close_cb) {
        exp->close_cb(exp);
    }
    void (*drained)(NBDExport *) = exp->drained_cb;
    exp->drained_cb = NULL;
    if (drained) {
        drained(exp);
    }
    nbd_export_put(exp);
}

void nbd_export_close_all(void)
{
    GList *l = nbd_export_list();
    for (GList *it = l; it; it = it->next) {
        nbd_export_close(it->data);
    }
    g_list_free(l);
}

void nbd_export_remove_when_idle(NBDExport *exp, void (*drained)(NBDExport *exp))
{
    exp->drained_cb = drained;
    exp->shutting_down = true;
    nbd_export_get(exp);
    leave_table(exp);
    if (!exp->clients) {
        nbd_export_close(exp);
    }
    nbd_export_put(exp);
}

bool nbd_export_is_shutting_down(NBDExport *exp)
{
    return exp->shutting_down;
}

void nbd_export_attach_client(NBDExport *exp, NBDConn *client)
{
    exp->clients = g_list_prepend(exp->clients, client);
}

void nbd_export_detach_client(NBDExport *exp, NBDConn *client)
{
    exp->clients = g_list_remove(exp->clients, client);
    if (!exp->clients && exp->shutting_down && !exp->closed) {
        nbd_export_close(exp);
    }
}

const char *nbd_export_get_name(NBDExport *exp)
{
    return exp->name;
}

const char *nbd_export_get_id(NBDExport *exp)
{
    return exp->id;
}

const char *nbd_export_get_description(NBDExport *exp)
{
    return exp->description;
}

BlockDriverState *nbd_export_get_blockdev(NBDExport *exp)
{
    return exp->bs;
}

uint64_t nbd_export_current_size(NBDExport *exp)
{
    if (!exp->size_follows_node) {
        return exp->size;
    }
    uint64_t len = bdrv_getlength(exp->bs);
    return len > exp->dev_offset ? len - exp->dev_offset : 0;
}

bool nbd_export_is_read_only(NBDExport *exp)
{
    return (exp->tx_flags & NBD_FLAG_READ_ONLY) != 0;
}

bool nbd_export_is_writethrough(NBDExport *exp)
{
    return exp->writethrough;
}

guint nbd_export_client_count(NBDExport *exp)
{
    return g_list_length(exp->clients);
}

void nbd_export_get_stats(NBDExport *exp, NBDStats *stats)
{
    nbd_stats_copy(stats, &exp->stats);
}

GMainContext *nbd_export_get_context(NBDExport *exp)
{
    return exp->n_ctxs ? exp->ctxs[0] : NULL;
}

/* Where the next client to finish its handshake runs: the export's
 * contexts in turn. */
GMainContext *nbd_export_next_context(NBDExport *exp)
{
    if (!exp->n_ctxs) {
        return NULL;
    }
    return exp->ctxs[exp->next_ctx++ % exp->n_ctxs];
}
