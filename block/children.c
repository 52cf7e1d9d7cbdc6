/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The node graph's edges: how a driver opens its children (a reference to
 * an existing node, or a nested definition opened here, as QEMU's
 * BlockdevRef), and the synchronous requests a driver running on a worker
 * thread sends to a child. Asynchronous requests to a child are in
 * block-io.c with the rest of the request path; the node table and the
 * deletion rules (who may delete a child) are in block.c.
 */
#include "block/block-int.h"
#include "util/json.h"

#include <errno.h>
#include <string.h>

/* --- opening a child ------------------------------------------------------ */

/* QEMU's parameter errors name the member; a nested one is named with its
 * parent's member as prefix, which the nested open does not know. */
static void prefix_parameter_error(GError *err, const char *role)
{
    static const char *const starts[] = {
        "Parameter '", "Invalid parameter type for '",
    };

    /* QEMU names a nested child's bad driver without the prefix. */
    if (g_str_has_prefix(err->message, "Parameter 'driver' does not accept value")) {
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(starts); i++) {
        size_t n = strlen(starts[i]);
        if (strncmp(err->message, starts[i], n) == 0) {
            char *msg = g_strdup_printf("%.*s%s.%s", (int) n, err->message, role,
                                        err->message + n);
            g_free(err->message);
            err->message = msg;
            return;
        }
    }
}

static json_object *option_bool(bool value, bool keyval)
{
    return keyval ? json_object_new_string(value ? "on" : "off")
                  : json_object_new_boolean(value);
}

static void inherit(json_object *obj, const char *key, json_object *value)
{
    if (json_object_object_get_ex(obj, key, NULL)) {
        json_object_put(value);
    } else {
        json_object_object_add(obj, key, value);
    }
}

/* A copy of the nested options with what a child takes from its parent. */
static json_object *child_options(BlockDriverState *parent, json_object *ref)
{
    bool keyval = parent->opening_keyval;
    json_object *opts = NULL;
    json_object *cache;

    if (json_object_deep_copy(ref, &opts, NULL) != 0) {
        return NULL;
    }
    inherit(opts, "read-only", option_bool(parent->read_only, keyval));
    if (parent->auto_read_only) {
        inherit(opts, "auto-read-only", option_bool(true, keyval));
    }
    if (parent->force_share) {
        inherit(opts, "force-share", option_bool(true, keyval));
    }
    if (parent->discard == BDRV_DISCARD_UNMAP) {
        inherit(opts, "discard", json_object_new_string("unmap"));
    }
    if (!json_object_object_get_ex(opts, "cache", &cache)) {
        cache = json_object_new_object();
        json_object_object_add(opts, "cache", cache);
    }
    if (json_object_is_type(cache, json_type_object)) {
        inherit(cache, "direct", option_bool(parent->cache_direct, keyval));
        inherit(cache, "no-flush", option_bool(parent->cache_no_flush, keyval));
    }
    return opts;
}

BlockDriverState *bdrv_open_child(BlockDriverState *bs, json_object *ref, const char *role,
                                  GError **errp)
{
    BlockDriverState *child;

    g_return_val_if_fail(bs != NULL && role != NULL, NULL);
    if (bs->n_children >= BDRV_MAX_CHILDREN) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Too many children for node '%s'",
                    bs->node_name);
        return NULL;
    }
    if (json_object_is_type(ref, json_type_string)) {
        const char *name = json_object_get_string(ref);

        child = bdrv_find_node(name);
        if (!child) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "Cannot find device='%s' nor node-name='%s'", name, name);
            return NULL;
        }
        bdrv_get(child);
    } else if (json_object_is_type(ref, json_type_object)) {
        g_autoptr(json_object) opts = child_options(bs, ref);
        GError *err = NULL;

        if (!opts) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Out of memory");
            return NULL;
        }
        child = bdrv_open_nested(opts, bs->opening_keyval, &err);
        if (!child) {
            prefix_parameter_error(err, role);
            g_propagate_error(errp, err);
            return NULL;
        }
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid parameter type for '%s', expected: BlockdevRef", role);
        return NULL;
    }

    /* A read-only child makes its parent read-only: nothing could write.
     * Not a backing child: a format writes only to its own file. */
    if (child->read_only && strcmp(role, "backing") != 0) {
        bs->read_only = true;
    }
    g_atomic_int_inc(&child->n_parents);
    bs->children[bs->n_children++] = (BdrvChild) { .bs = child, .role = role };
    /* Attached even when its permissions are refused: the failing open()
     * leaves the edge to bdrv_open()'s cleanup, as any other child. */
    if (!bdrv_child_perm_attach(bs, &bs->children[bs->n_children - 1], errp)) {
        return NULL;
    }
    return child;
}

BlockDriverState *bdrv_child(BlockDriverState *bs, const char *role)
{
    for (guint i = 0; i < bs->n_children; i++) {
        if (strcmp(bs->children[i].role, role) == 0) {
            return bs->children[i].bs;
        }
    }
    return NULL;
}

json_object *bdrv_node_json(BlockDriverState *bs)
{
    json_object *obj;

    if (bs->filename && g_str_has_prefix(bs->filename, "json:")) {
        obj = json_tokener_parse(bs->filename + 5);
        if (obj) {
            return obj;
        }
    }
    obj = json_object_new_object();
    json_object_object_add(obj, "driver", json_object_new_string(bs->drv->name));
    if (bs->filename) {
        json_object_object_add(obj, "filename", json_object_new_string(bs->filename));
    }
    return obj;
}

/* --- synchronous requests ------------------------------------------------ */

struct BdrvSyncWaiter {
    GMutex lock;
    GCond cond;
    bool done;
};

void bdrv_sync_request_complete(BdrvRequest *req)
{
    BdrvSyncWaiter *w = req->waiter;

    berth_mutex_lock(&w->lock);
    w->done = true;
    g_cond_signal(&w->cond);
    berth_mutex_unlock(&w->lock);
}

static bool may_wait(GError **errp)
{
    GMainContext *ctx = g_main_context_get_thread_default();

    if (g_main_context_is_owner(ctx ? ctx : g_main_context_default())) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                            "A synchronous block request must not run on an event loop's "
                            "thread");
        return false;
    }
    return true;
}

/* first: for block status, the answer's first extent (zero length: none). */
static int sync_request_full(BlockDriverState *child, BdrvOp op, uint64_t offset,
                             uint64_t bytes, const struct iovec *iov, int niov,
                             BdrvRequestFlags flags, BdrvExtent *first, GError **errp)
{
    BdrvSyncWaiter w = { .done = false };
    BdrvRequest *req;
    int ret;

    g_return_val_if_fail(child != NULL, -EINVAL);
    if (!may_wait(errp)) {
        return -EDEADLK;
    }
    g_mutex_init(&w.lock);
    g_cond_init(&w.cond);
    req = bdrv_request_new(child, op, NULL, NULL, NULL);
    req->waiter = &w;
    req->offset = offset;
    req->flags = flags;
    if (op == BDRV_OP_BLOCK_STATUS) {
        req->max_extents = 1;
    }
    if (op == BDRV_OP_READ || op == BDRV_OP_WRITE) {
        if (bdrv_request_set_iov(req, iov, niov)) {
            bdrv_request_submit(req);
        }
    } else {
        req->bytes = bytes;
        bdrv_request_submit(req);
    }

    berth_mutex_lock(&w.lock);
    while (!w.done) {
        berth_cond_wait(&w.cond, &w.lock);
    }
    berth_mutex_unlock(&w.lock);

    ret = req->ret < 0 ? req->ret : 0;
    if (ret < 0 && errp) {
        *errp = g_steal_pointer(&req->err);
    }
    if (first) {
        *first = ret == 0 && req->n_extents ? req->extents[0] : (BdrvExtent) { 0 };
    }
    bdrv_request_free(req);
    berth_mutex_clear(&w.lock);
    g_cond_clear(&w.cond);
    return ret;
}

static int sync_request(BlockDriverState *child, BdrvOp op, uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int niov, BdrvRequestFlags flags,
                        GError **errp)
{
    return sync_request_full(child, op, offset, bytes, iov, niov, flags, NULL, errp);
}

int bdrv_child_block_status_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                                 uint64_t *pnum, uint32_t *status, GError **errp)
{
    BdrvExtent first;
    int ret = sync_request_full(child, BDRV_OP_BLOCK_STATUS, offset, bytes, NULL, 0, 0,
                                &first, errp);

    if (ret == 0 && first.length == 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "Block status answer without an extent");
        ret = -EIO;
    }
    *pnum = ret == 0 ? MIN(first.length, bytes) : 0;
    *status = ret == 0 ? first.status : 0;
    return ret;
}

int bdrv_child_preadv_sync(BlockDriverState *child, uint64_t offset,
                           const struct iovec *iov, int niov, GError **errp)
{
    return sync_request(child, BDRV_OP_READ, offset, 0, iov, niov, 0, errp);
}

int bdrv_child_pwritev_sync(BlockDriverState *child, uint64_t offset,
                            const struct iovec *iov, int niov, BdrvRequestFlags flags,
                            GError **errp)
{
    return sync_request(child, BDRV_OP_WRITE, offset, 0, iov, niov, flags & BDRV_REQ_FUA,
                        errp);
}

int bdrv_child_pread_sync(BlockDriverState *child, uint64_t offset, void *buf, size_t len,
                          GError **errp)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };

    return bdrv_child_preadv_sync(child, offset, &iov, 1, errp);
}

int bdrv_child_pwrite_sync(BlockDriverState *child, uint64_t offset, const void *buf,
                           size_t len, BdrvRequestFlags flags, GError **errp)
{
    struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };

    return bdrv_child_pwritev_sync(child, offset, &iov, 1, flags, errp);
}

int bdrv_child_flush_sync(BlockDriverState *child, GError **errp)
{
    return sync_request(child, BDRV_OP_FLUSH, 0, 0, NULL, 0, 0, errp);
}

int bdrv_child_pwrite_zeroes_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                                  BdrvRequestFlags flags, GError **errp)
{
    return sync_request(child, BDRV_OP_WRITE_ZEROES, offset, bytes, NULL, 0,
                        flags & (BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK),
                        errp);
}

int bdrv_child_pdiscard_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                             GError **errp)
{
    return sync_request(child, BDRV_OP_DISCARD, offset, bytes, NULL, 0, 0, errp);
}

void bdrv_caps_from_child(BlockDriverState *bs, const BlockDriverState *child)
{
    bs->can_flush = child->can_flush && !child->cache_no_flush;
    bs->can_fua = child->can_fua;
    bs->can_discard = child->can_discard && child->discard == BDRV_DISCARD_UNMAP;
    bs->can_write_zeroes_fast = child->can_write_zeroes_fast;
    bs->has_block_status = child->has_block_status;
    bs->coherent = child->coherent;
    bs->request_alignment = child->request_alignment;
}

void bdrv_caps_own(BlockDriverState *bs, bool can_flush)
{
    bs->can_flush = can_flush;
    bs->can_fua = true;
    bs->can_discard = true;
    bs->can_write_zeroes_fast = true;
    bs->has_block_status = true;
    bs->coherent = true;
    bs->request_alignment = 1;
}
