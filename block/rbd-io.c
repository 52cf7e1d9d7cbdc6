/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rbd driver's requests. Reads, writes, flushes, discards and zero
 * writes go to librbd's asynchronous calls on the submitting thread; librbd
 * calls back on a thread of its own, where we only take the result and hand
 * the request to bdrv_request_complete(), which delivers it on the
 * submitter's context (one wake-up for a burst). A FUA write or zero write
 * is followed by a flush when librbd caches writes (rbd_cache, the default
 * unless cache.direct=on); that flush is started from a pool worker, not
 * from librbd's callback thread. Block status asks rbd_diff_iterate2() on a
 * pool worker (it waits for the object map); without a valid fast-diff
 * object map every block is reported as data.
 *
 * The node is sized as the image was at open, rounded up to a sector by the
 * block layer: the bytes past the image's end read as zeroes and writes to
 * them are dropped.
 */
#include "block/rbd-int.h"

#include <errno.h>

typedef enum { STEP_MAIN, STEP_FLUSH } RbdStep;

typedef struct RbdAio {
    BdrvRequest *req;
    RbdStep step;
    uint64_t len;               /* bytes within the image */
    int niov;
    struct iovec *iov;          /* req->iov cut to len (may be req->iov) */
} RbdAio;

static const char *op_name(BdrvOp op)
{
    switch (op) {
    case BDRV_OP_READ: return "read";
    case BDRV_OP_WRITE: return "write";
    case BDRV_OP_FLUSH: return "flush";
    case BDRV_OP_DISCARD: return "discard";
    case BDRV_OP_WRITE_ZEROES: return "write-zeroes";
    case BDRV_OP_BLOCK_STATUS: return "block-status";
    default: return "request";
    }
}

static void aio_finish(RbdAio *a, int r)
{
    BdrvRequest *req = a->req;
    RbdState *s = req->bs->opaque;

    if (a->iov != req->iov) {
        g_free(a->iov);
    }
    g_free(a);
    if (r < 0) {
        bdrv_request_fail(req, -r, "rbd %s of image '%s' in pool '%s' failed: %s",
                          op_name(req->op), s->name, s->pool, g_strerror(-r));
    } else {
        bdrv_request_complete(req, 0, NULL);
    }
}

static void aio_flush_work(BdrvRequest *req);

/* librbd's callback thread. */
static void aio_done(rbd_completion_t c, void *arg)
{
    RbdAio *a = arg;
    BdrvRequest *req = a->req;
    ssize_t r = rbd_aio_get_return_value(c);

    rbd_aio_release(c);
    if (r >= 0 && a->step == STEP_MAIN && (req->flags & BDRV_REQ_FUA) &&
        ((RbdState *) req->bs->opaque)->cache) {
        a->step = STEP_FLUSH;
        req->drv_data = a;
        bdrv_worker_submit(req, aio_flush_work);
        return;
    }
    aio_finish(a, r < 0 ? (int) r : 0);
}

static void aio_start(RbdAio *a)
{
    BdrvRequest *req = a->req;
    RbdState *s = req->bs->opaque;
    rbd_completion_t c;
    int r;

    r = rbd_aio_create_completion(a, aio_done, &c);
    if (r < 0) {
        aio_finish(a, r);
        return;
    }
    if (a->step == STEP_FLUSH) {
        r = rbd_aio_flush(s->image, c);
    } else {
        switch (req->op) {
        case BDRV_OP_READ:
            r = rbd_aio_readv(s->image, a->iov, a->niov, req->offset, c);
            break;
        case BDRV_OP_WRITE:
            r = rbd_aio_writev(s->image, a->iov, a->niov, req->offset, c);
            break;
        case BDRV_OP_FLUSH:
            r = rbd_aio_flush(s->image, c);
            break;
        case BDRV_OP_DISCARD:
            r = rbd_aio_discard(s->image, req->offset, a->len, c);
            break;
        case BDRV_OP_WRITE_ZEROES:
            /* Without MAY_UNMAP the zeroes must stay allocated. */
            r = rbd_aio_write_zeroes(s->image, req->offset, a->len, c,
                                     (req->flags & BDRV_REQ_MAY_UNMAP)
                                         ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
            break;
        default:
            r = -ENOTSUP;
            break;
        }
    }
    if (r < 0) {
        rbd_aio_release(c);
        aio_finish(a, r);
    }
}

static void aio_flush_work(BdrvRequest *req)
{
    aio_start(req->drv_data);
}

/* ---- block status (a pool worker) --------------------------------------- */

typedef struct {
    BdrvRequest *req;
    uint64_t pos;               /* reported up to here */
    uint64_t end;
    bool full;
} DiffWalk;

/* Extents come in ascending order; whole objects may reach past the range. */
static int diff_cb(uint64_t offs, size_t len, int exists, void *arg)
{
    DiffWalk *w = arg;
    uint64_t start = MAX(offs, w->pos), stop = MIN(offs + len, w->end);

    if (start >= stop) {
        return 0;
    }
    if (!bdrv_request_add_extent(w->req, start - w->pos, BDRV_BLOCK_ZERO) ||
        !bdrv_request_add_extent(w->req, stop - start, exists ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO)) {
        w->full = true;
        return -ECANCELED;
    }
    w->pos = stop;
    return 0;
}

static void block_status_work(BdrvRequest *req)
{
    RbdState *s = req->bs->opaque;
    uint64_t size = __atomic_load_n(&s->image_size, __ATOMIC_RELAXED);
    uint64_t end = MIN(req->offset + req->bytes, size);
    DiffWalk w = { .req = req, .pos = req->offset, .end = end };
    int r;

    if (req->offset >= size) {
        /* The sector padding past the image's end. */
        bdrv_request_add_extent(req, req->bytes, BDRV_BLOCK_ZERO);
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    if (!s->fast_diff) {
        bdrv_request_add_extent(req, end - req->offset, BDRV_BLOCK_DATA);
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    r = rbd_diff_iterate2(s->image, NULL, req->offset, end - req->offset, 1, 1, diff_cb, &w);
    if (r < 0 && !w.full) {
        bdrv_request_fail(req, -r, "rbd block status of image '%s' in pool '%s' failed: %s",
                          s->name, s->pool, g_strerror(-r));
        return;
    }
    if (!w.full) {
        /* What no extent covered is a hole. */
        bdrv_request_add_extent(req, end - w.pos, BDRV_BLOCK_ZERO);
    }
    bdrv_request_complete(req, 0, NULL);
}

/* ---- submit --------------------------------------------------------------- */

void rbd_submit(BdrvRequest *req)
{
    RbdState *s = req->bs->opaque;
    RbdAio *a;

    if (req->op == BDRV_OP_BLOCK_STATUS) {
        bdrv_worker_submit(req, block_status_work);
        return;
    }
    if (req->op == BDRV_OP_CACHE) {
        /* A hint; librbd has no read-ahead call for it. */
        bdrv_request_complete(req, 0, NULL);
        return;
    }

    if (req->op == BDRV_OP_WRITE_ZEROES && (req->flags & BDRV_REQ_NO_FALLBACK) &&
        !(req->flags & BDRV_REQ_MAY_UNMAP)) {
        /* Thick zeroes are written as data: not fast. */
        bdrv_request_complete(req, -ENOTSUP, NULL);
        return;
    }
    a = g_new0(RbdAio, 1);
    a->req = req;
    a->iov = req->iov;
    a->niov = req->niov;
    a->len = req->bytes;
    uint64_t size = __atomic_load_n(&s->image_size, __ATOMIC_RELAXED);
    if (req->op != BDRV_OP_FLUSH && req->offset + req->bytes > size) {
        /* The tail of the last sector, past the image's end. */
        uint64_t in = req->offset < size ? size - req->offset : 0;

        if (req->op == BDRV_OP_READ) {
            berth_iov_memset(req->iov, req->niov, in, 0, req->bytes - in);
        }
        if (in == 0) {
            g_free(a);
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        a->len = in;
        if (req->op == BDRV_OP_READ || req->op == BDRV_OP_WRITE) {
            a->iov = g_new(struct iovec, MAX(req->niov, 1));
            a->niov = berth_iov_slice(req->iov, req->niov, 0, in, a->iov, req->niov, NULL);
        }
    }
    aio_start(a);
}
