/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copy-before-write filter's snapshot side (copy-before-write.h): what
 * a snapshot-access node over the filter reads, its block status and its
 * discards. A read decides under the filter's lock, cluster by cluster,
 * whether the bytes live in target (copied) or still in file, and registers
 * itself as a frozen read of its clusters: a write to them waits until the
 * read has finished, so the reads of file see the old bytes. The write path
 * and the state it shares with this file are in copy-before-write.c and
 * copy-before-write-int.h.
 */
#include "block/copy-before-write-int.h"

#include <errno.h>

typedef struct SnapshotRead {
    BdrvRequest *req;
    CbwState *s;
    CbwFrozen frozen;
    gint pending;               /* atomic: child reads, plus one while issuing */
    int ret;                    /* first failure, under s->lock */
    GError *err;
} SnapshotRead;

static void snapshot_read_put(SnapshotRead *r)
{
    CbwState *s = r->s;
    CbwWrite *waiters;

    if (!g_atomic_int_dec_and_test(&r->pending)) {
        return;
    }
    berth_mutex_lock(&s->lock);
    if (r->frozen.prev) {
        r->frozen.prev->next = r->frozen.next;
    } else {
        s->frozen = r->frozen.next;
    }
    if (r->frozen.next) {
        r->frozen.next->prev = r->frozen.prev;
    }
    waiters = cbw_take_waiters_locked(s);
    berth_mutex_unlock(&s->lock);

    cbw_wake_waiters(waiters);
    bdrv_request_complete(r->req, r->ret, r->err);
    g_free(r);
}

static void snapshot_read_done(BdrvRequest *parent, BdrvRequest *creq)
{
    SnapshotRead *r = creq->child_opaque;

    if (creq->ret < 0) {
        berth_mutex_lock(&r->s->lock);
        if (r->ret == 0) {
            r->ret = creq->ret;
            r->err = g_steal_pointer(&creq->err);
        }
        berth_mutex_unlock(&r->s->lock);
    }
    snapshot_read_put(r);
}

/* Whether every cluster of [first, end) is readable; lock held. */
static bool accessible_locked(CbwState *s, uint64_t first, uint64_t end)
{
    if (s->snapshot_error) {
        return false;
    }
    for (uint64_t c = first; c < end; c++) {
        if (!(s->state[c] & CL_ACCESS)) {
            return false;
        }
    }
    return true;
}

static void snapshot_inaccessible(BdrvRequest *req)
{
    bdrv_request_fail(req, EACCES, "Part of the snapshot of node '%s' is not accessible",
                      req->bs->node_name);
}

static void snapshot_read(CbwState *s, BdrvRequest *req)
{
    uint64_t first = req->offset >> s->shift;
    uint64_t end = (req->offset + req->bytes + s->cluster - 1) >> s->shift;
    uint64_t req_end = req->offset + req->bytes;
    SnapshotRead *r;

    berth_mutex_lock(&s->lock);
    if (!accessible_locked(s, first, end)) {
        berth_mutex_unlock(&s->lock);
        snapshot_inaccessible(req);
        return;
    }
    r = g_new0(SnapshotRead, 1);
    r->req = req;
    r->s = s;
    r->pending = 1;
    /* Writes to these clusters wait until the reads below have finished. */
    r->frozen = (CbwFrozen) { .first = first, .end = end, .next = s->frozen };
    if (s->frozen) {
        s->frozen->prev = &r->frozen;
    }
    s->frozen = &r->frozen;
    /* Where each run lives is decided now: a copy finishing later changes
     * nothing for this read, since its writer waits for us. */
    uint8_t *where = g_malloc(end - first);
    for (uint64_t c = first; c < end; c++) {
        where[c - first] = s->state[c] & CL_DONE;
    }
    berth_mutex_unlock(&s->lock);

    for (uint64_t c = first; c < end;) {
        uint64_t e = c + 1;
        while (e < end && where[e - first] == where[c - first]) {
            e++;
        }
        uint64_t off = MAX(c << s->shift, req->offset);
        uint64_t len = MIN(e << s->shift, req_end) - off;
        struct iovec part[BDRV_REQ_INLINE_IOV * 16];
        uint64_t covered = 0;
        int n = berth_iov_slice(req->iov, req->niov, off - req->offset, len, part,
                                G_N_ELEMENTS(part), &covered);

        if (covered != len) {
            berth_mutex_lock(&s->lock);
            if (r->ret == 0) {
                r->ret = -EINVAL;
                r->err = g_error_new(G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     "Too many I/O vectors for a snapshot read of node '%s'",
                                     req->bs->node_name);
            }
            berth_mutex_unlock(&s->lock);
            break;
        }
        g_atomic_int_inc(&r->pending);
        bdrv_child_submit(req, where[c - first] ? s->target : s->file, BDRV_OP_READ, off, 0,
                          part, n, 0, snapshot_read_done, r);
        c = e;
    }
    g_free(where);
    snapshot_read_put(r);
}

static void snapshot_block_status(CbwState *s, BdrvRequest *req)
{
    uint64_t first = req->offset >> s->shift;
    uint64_t end = (req->offset + req->bytes + s->cluster - 1) >> s->shift;
    uint64_t c = first + 1;
    bool done;

    berth_mutex_lock(&s->lock);
    if (!accessible_locked(s, first, end)) {
        berth_mutex_unlock(&s->lock);
        snapshot_inaccessible(req);
        return;
    }
    done = s->state[first] & CL_DONE;
    while (c < end && !!(s->state[c] & CL_DONE) == done) {
        c++;
    }
    berth_mutex_unlock(&s->lock);

    uint64_t run_end = MIN(c << s->shift, req->offset + req->bytes);
    bdrv_child_submit(req, done ? s->target : s->file, BDRV_OP_BLOCK_STATUS, req->offset,
                      run_end - req->offset, NULL, 0, 0, NULL, NULL);
}

static void snapshot_discard(CbwState *s, BdrvRequest *req)
{
    uint64_t first = (req->offset + s->cluster - 1) >> s->shift;
    uint64_t req_end = req->offset + req->bytes;
    /* The snapshot's last cluster may be partial: its end counts as whole. */
    uint64_t end = req_end >= s->size ? s->n_clusters : req_end >> s->shift;

    if (end <= first) {
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    berth_mutex_lock(&s->lock);
    for (uint64_t c = first; c < end; c++) {
        s->state[c] &= ~(CL_ACCESS | CL_COPY);
    }
    berth_mutex_unlock(&s->lock);

    uint64_t off = first << s->shift;
    uint64_t len = MIN(end << s->shift, s->size) - off;
    bdrv_child_submit(req, s->target, BDRV_OP_DISCARD, off, len, NULL, 0, 0, NULL, NULL);
}

void cbw_snapshot_submit(BlockDriverState *cbw, BdrvRequest *req)
{
    CbwState *s = cbw->opaque;

    g_return_if_fail(cbw->drv == &bdrv_copy_before_write);
    if (req->offset + req->bytes > s->size) {
        bdrv_request_fail(req, EINVAL, "Request beyond the end of the snapshot of node '%s'",
                          cbw->node_name);
        return;
    }
    switch (req->op) {
    case BDRV_OP_READ:
        snapshot_read(s, req);
        return;
    case BDRV_OP_BLOCK_STATUS:
        snapshot_block_status(s, req);
        return;
    case BDRV_OP_DISCARD:
        snapshot_discard(s, req);
        return;
    default:
        bdrv_request_fail(req, ENOTSUP, "Operation not supported by a snapshot");
        return;
    }
}
