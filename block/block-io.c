/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Request dispatch: the bdrv_aio_* entry points. Each request is checked
 * here once (iovec sanity, range against the node's size, read-only, the
 * node's discard and flush policy, detect-zeroes) with a precise message and
 * errno, so drivers receive only requests they can carry out. A request is
 * one allocation holding a private copy of the caller's iovec array, a
 * reference to its node and one to the submitter's completion queue; it is
 * freed after its callback has run on that queue's context.
 */
#include "block/block-int.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

static BdrvRequest *request_alloc(BlockDriverState *bs, BdrvOp op, BdrvCompletionQueue *queue)
{
    BdrvRequest *req = g_new0(BdrvRequest, 1);

    req->bs = bdrv_get(bs);
    g_atomic_int_inc(&bs->in_flight);
    req->queue = queue;
    req->op = op;
    req->acct = -1;
    return req;
}

BdrvRequest *bdrv_request_new(BlockDriverState *bs, BdrvOp op, BdrvCompletionFunc cb,
                              BdrvBlockStatusFunc status_cb, gpointer opaque)
{
    BdrvRequest *req = request_alloc(bs, op, bdrv_completion_queue_get());

    req->cb = cb;
    req->status_cb = status_cb;
    req->opaque = opaque;
    return req;
}

void bdrv_request_free(BdrvRequest *req)
{
    BlockDriverState *bs = req->bs;

    if (req->iov != req->iov_inline) {
        g_free(req->iov);
    }
    g_free(req->extents);
    g_clear_error(&req->err);
    bdrv_completion_queue_unref(req->queue);
    g_free(req);
    g_atomic_int_add(&bs->in_flight, -1);
    bdrv_put(bs);
}

void bdrv_request_deliver(BdrvRequest *req)
{
    if (req->op == BDRV_OP_BLOCK_STATUS || (req->op == BDRV_OP_READ && req->status_cb)) {
        if (req->status_cb) {
            req->status_cb(req->opaque, req->ret, req->ret < 0 ? NULL : req->extents,
                           req->ret < 0 ? 0 : req->n_extents, req->err);
        }
    } else if (req->cb) {
        req->cb(req->opaque, req->ret, req->err);
    }
    bdrv_request_free(req);
}

void bdrv_request_complete(BdrvRequest *req, int ret, GError *err)
{
    if (ret < 0 && !err) {
        err = g_error_new(G_IO_ERROR, g_io_error_from_errno(-ret), "%s", g_strerror(-ret));
    } else if (ret >= 0 && err) {
        g_clear_error(&err);
    }
    /* Even a failed change may have changed some of the range: mark it all,
     * before the submitter can learn that the request is done. */
    if (req->mark_dirty) {
        bdrv_dirty_bitmaps_mark(req->bs, req->offset, req->bytes);
    }
    req->ret = ret;
    req->err = err;
    bdrv_stats_request_done(req, ret);
    if (req->parent) {
        req->done(req->parent, req);
        bdrv_request_free(req);
        return;
    }
    if (req->waiter) {
        bdrv_sync_request_complete(req);
        return;
    }
    bdrv_completion_queue_push(req->queue, req);
}

void bdrv_request_fail(BdrvRequest *req, int errno_value, const char *fmt, ...)
{
    va_list ap;
    GError *err;

    va_start(ap, fmt);
    err = g_error_new_valist(G_IO_ERROR, g_io_error_from_errno(errno_value), fmt, ap);
    va_end(ap);
    bdrv_request_complete(req, -errno_value, err);
}

bool bdrv_request_add_extent(BdrvRequest *req, uint64_t length, uint32_t status)
{
    if (length == 0) {
        return true;
    }
    if (req->n_extents > 0 && req->extents[req->n_extents - 1].status == status) {
        req->extents[req->n_extents - 1].length += length;
        return true;
    }
    if (req->n_extents >= req->max_extents) {
        return false;
    }
    if (req->n_extents == req->extents_alloc) {
        /* Start small: most answers are one or two extents. */
        req->extents_alloc = MIN(MAX(req->extents_alloc * 2, 8u), req->max_extents);
        req->extents = g_renew(BdrvExtent, req->extents, req->extents_alloc);
    }
    req->extents[req->n_extents++] = (BdrvExtent) { .length = length, .status = status };
    return true;
}

bool bdrv_request_set_iov(BdrvRequest *req, const struct iovec *iov, int niov)
{
    uint64_t total = 0;

    if (niov < 0 || (niov > 0 && !iov)) {
        bdrv_request_fail(req, EINVAL, "Invalid I/O vector");
        return false;
    }
    for (int i = 0; i < niov; i++) {
        if (iov[i].iov_len > UINT64_MAX - total || (iov[i].iov_len && !iov[i].iov_base)) {
            bdrv_request_fail(req, EINVAL, "Invalid I/O vector");
            return false;
        }
        total += iov[i].iov_len;
    }
    req->iov = niov <= BDRV_REQ_INLINE_IOV ? req->iov_inline : g_new(struct iovec, niov);
    if (niov > 0) {
        memcpy(req->iov, iov, niov * sizeof(*iov));
    }
    req->niov = niov;
    req->bytes = total;
    return true;
}

static const char *op_name(BdrvOp op)
{
    static const char *const names[] = {
        [BDRV_OP_READ] = "read",
        [BDRV_OP_WRITE] = "write",
        [BDRV_OP_FLUSH] = "flush",
        [BDRV_OP_DISCARD] = "discard",
        [BDRV_OP_WRITE_ZEROES] = "write-zeroes",
        [BDRV_OP_CACHE] = "cache",
        [BDRV_OP_BLOCK_STATUS] = "block-status",
    };
    return names[op];
}

static bool op_modifies(BdrvOp op)
{
    return op == BDRV_OP_WRITE || op == BDRV_OP_DISCARD || op == BDRV_OP_WRITE_ZEROES;
}

/* The checks every driver relies on; then the driver, or an early answer. */
void bdrv_request_submit(BdrvRequest *req)
{
    BlockDriverState *bs = req->bs;
    uint64_t size = bdrv_size(bs);

    bdrv_stats_request_start(req);
    if (req->op != BDRV_OP_FLUSH &&
        (req->bytes > size || req->offset > size - req->bytes)) {
        req->invalid = true;
        bdrv_request_fail(req, EINVAL,
                          "%s request at offset %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                          " bytes is beyond the end of node '%s' (%" G_GUINT64_FORMAT " bytes)",
                          op_name(req->op), req->offset, req->bytes, bs->node_name, size);
        return;
    }
    if (op_modifies(req->op) && bs->read_only) {
        bdrv_request_fail(req, EPERM, "Node '%s' is read-only", bs->node_name);
        return;
    }

    switch (req->op) {
    case BDRV_OP_FLUSH:
        if (bs->cache_no_flush) {
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        break;
    case BDRV_OP_DISCARD:
        /* discard=ignore: the hint is accepted and dropped, as in QEMU. */
        if (bs->discard != BDRV_DISCARD_UNMAP) {
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        break;
    case BDRV_OP_WRITE_ZEROES:
        if (bs->discard != BDRV_DISCARD_UNMAP) {
            req->flags &= ~BDRV_REQ_MAY_UNMAP;
        }
        break;
    case BDRV_OP_WRITE: {
        const char *why = NULL;
        int ret = bdrv_probed_raw_check_write(bs, req->offset, req->bytes, req->iov, req->niov,
                                              &why);
        if (ret < 0) {
            req->invalid = ret == -EINVAL;
            bdrv_request_fail(req, -ret, "Node '%s': %s", bs->node_name, why);
            return;
        }
        if (bs->detect_zeroes != BDRV_DETECT_ZEROES_OFF && req->bytes > 0 &&
            berth_iov_is_zero(req->iov, req->niov)) {
            req->op = BDRV_OP_WRITE_ZEROES;
            req->flags &= BDRV_REQ_FUA;
            if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP) {
                req->flags |= BDRV_REQ_MAY_UNMAP;
            }
        }
        break;
    }
    default:
        break;
    }

    if (req->bytes == 0 && req->op != BDRV_OP_FLUSH) {
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    req->mark_dirty = op_modifies(req->op);
    bs->drv->submit(req);
}

void bdrv_aio_preadv(BlockDriverState *bs, uint64_t offset,
                     const struct iovec *iov, int niov,
                     BdrvCompletionFunc cb, gpointer opaque)
{
    bdrv_aio_preadv_flags(bs, offset, iov, niov, 0, cb, opaque);
}

void bdrv_aio_preadv_flags(BlockDriverState *bs, uint64_t offset,
                           const struct iovec *iov, int niov, BdrvRequestFlags flags,
                           BdrvCompletionFunc cb, gpointer opaque)
{
    BdrvRequest *req;

    g_return_if_fail(bs != NULL);
    req = bdrv_request_new(bs, BDRV_OP_READ, cb, NULL, opaque);
    req->offset = offset;
    req->flags = flags & BDRV_REQ_ZEROES_UNFILLED;
    if (bdrv_request_set_iov(req, iov, niov)) {
        bdrv_request_submit(req);
    }
}

void bdrv_aio_preadv_extents(BlockDriverState *bs, uint64_t offset,
                             const struct iovec *iov, int niov, guint max_extents,
                             BdrvBlockStatusFunc cb, gpointer opaque)
{
    BdrvRequest *req;

    g_return_if_fail(bs != NULL && cb != NULL && max_extents >= 1 && max_extents <= 64);
    req = bdrv_request_new(bs, BDRV_OP_READ, NULL, cb, opaque);
    req->offset = offset;
    req->max_extents = max_extents;
    req->zero_extents = true;
    if (bdrv_request_set_iov(req, iov, niov)) {
        bdrv_request_submit(req);
    }
}

void bdrv_aio_pwritev(BlockDriverState *bs, uint64_t offset,
                      const struct iovec *iov, int niov, BdrvRequestFlags flags,
                      BdrvCompletionFunc cb, gpointer opaque)
{
    BdrvRequest *req;

    g_return_if_fail(bs != NULL);
    req = bdrv_request_new(bs, BDRV_OP_WRITE, cb, NULL, opaque);
    req->offset = offset;
    req->flags = flags & BDRV_REQ_FUA;
    if (bdrv_request_set_iov(req, iov, niov)) {
        bdrv_request_submit(req);
    }
}

void bdrv_aio_flush(BlockDriverState *bs, BdrvCompletionFunc cb, gpointer opaque)
{
    g_return_if_fail(bs != NULL);
    bdrv_request_submit(bdrv_request_new(bs, BDRV_OP_FLUSH, cb, NULL, opaque));
}

static void submit_range(BlockDriverState *bs, BdrvOp op, uint64_t offset, uint64_t bytes,
                         BdrvRequestFlags flags, BdrvCompletionFunc cb, gpointer opaque)
{
    BdrvRequest *req = bdrv_request_new(bs, op, cb, NULL, opaque);

    req->offset = offset;
    req->bytes = bytes;
    req->flags = flags;
    bdrv_request_submit(req);
}

void bdrv_aio_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                       BdrvCompletionFunc cb, gpointer opaque)
{
    g_return_if_fail(bs != NULL);
    submit_range(bs, BDRV_OP_DISCARD, offset, bytes, 0, cb, opaque);
}

void bdrv_aio_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                            BdrvRequestFlags flags,
                            BdrvCompletionFunc cb, gpointer opaque)
{
    g_return_if_fail(bs != NULL);
    submit_range(bs, BDRV_OP_WRITE_ZEROES, offset, bytes,
                 flags & (BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK),
                 cb, opaque);
}

void bdrv_aio_cache(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                    BdrvCompletionFunc cb, gpointer opaque)
{
    g_return_if_fail(bs != NULL);
    submit_range(bs, BDRV_OP_CACHE, offset, bytes, 0, cb, opaque);
}

void bdrv_aio_block_status(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                           guint max_extents,
                           BdrvBlockStatusFunc cb, gpointer opaque)
{
    BdrvRequest *req;

    g_return_if_fail(bs != NULL);
    req = bdrv_request_new(bs, BDRV_OP_BLOCK_STATUS, NULL, cb, opaque);
    req->offset = offset;
    req->bytes = bytes;
    req->max_extents = max_extents == 0 ? BDRV_MAX_EXTENTS : MIN(max_extents, BDRV_MAX_EXTENTS);
    bdrv_request_submit(req);
}

/* --- requests to a child node ------------------------------------------- */

/* The default done: the parent finishes as its child did. */
static void child_done_forward(BdrvRequest *parent, BdrvRequest *creq)
{
    GError *err = creq->err;

    creq->err = NULL;
    if (creq->ret >= 0 && parent->op == BDRV_OP_BLOCK_STATUS && creq->n_extents > 0) {
        if (parent->n_extents == 0 && parent->max_extents >= creq->n_extents) {
            /* The usual case: take the answer over as it is. */
            g_free(parent->extents);
            parent->extents = g_steal_pointer(&creq->extents);
            parent->n_extents = parent->extents_alloc = creq->n_extents;
            creq->n_extents = creq->extents_alloc = 0;
        } else {
            for (guint i = 0; i < creq->n_extents; i++) {
                if (!bdrv_request_add_extent(parent, creq->extents[i].length,
                                             creq->extents[i].status)) {
                    break;
                }
            }
        }
    }
    bdrv_request_complete(parent, creq->ret, err);
}

void bdrv_child_submit(BdrvRequest *parent, BlockDriverState *child, BdrvOp op,
                       uint64_t offset, uint64_t bytes, const struct iovec *iov, int niov,
                       BdrvRequestFlags flags, BdrvChildDoneFunc done, void *opaque)
{
    BdrvRequest *creq;

    g_return_if_fail(parent != NULL && child != NULL);
    creq = request_alloc(child, op, bdrv_completion_queue_ref(parent->queue));
    creq->parent = parent;
    creq->done = done ? done : child_done_forward;
    creq->child_opaque = opaque;
    creq->offset = offset;
    creq->flags = flags;
    creq->max_extents = parent->max_extents ? parent->max_extents : BDRV_MAX_EXTENTS;
    if (op == BDRV_OP_READ || op == BDRV_OP_WRITE) {
        if (!bdrv_request_set_iov(creq, iov, niov)) {
            return;
        }
    } else {
        creq->bytes = bytes;
    }
    bdrv_request_submit(creq);
}

void bdrv_child_forward(BdrvRequest *parent, BlockDriverState *child, uint64_t offset)
{
    bdrv_child_submit(parent, child, parent->op, offset, parent->bytes, parent->iov,
                      parent->niov, parent->flags, NULL, NULL);
}

void bdrv_request_redirect(BdrvRequest *req, BlockDriverState *child, uint64_t offset)
{
    BlockDriverState *parent = req->bs;

    g_return_if_fail(req != NULL && child != NULL);
    req->bs = bdrv_get(child);
    g_atomic_int_inc(&child->in_flight);
    req->offset = offset;
    g_atomic_int_add(&parent->in_flight, -1);
    bdrv_put(parent);
    bdrv_request_submit(req);
}
