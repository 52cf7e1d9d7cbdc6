/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file driver's io_uring path: reads, O_DIRECT writes and small
 * buffered writes (FUA as RWF_DSYNC) go to a ring owned by the submitter's
 * GMainContext instead of crossing to a worker thread and back.  Small
 * buffered writes come here when the inline path could not take them: on
 * ext4, which refuses RWF_NOWAIT for buffered writes, io_uring hands them to
 * one kernel worker per file, one at a time, as the inode lock would
 * serialise them anyway; 4k random writes at depth 32 to a file on ext4 ran
 * at 1.37x the worker pool's rate with 0.6x its CPU per request (median of
 * 5 alternating 3 s fio runs).  Buffered writes above FILE_INLINE_MAX and
 * flushes stay on the pool: that one kernel worker copying 1M writes
 * serially ran at about three quarters of the pool's parallel copies.
 * Submissions made during one loop
 * iteration enter the kernel together from the ring source's prepare(), and
 * completions are reaped when the ring's fd polls readable, on the same
 * thread, so a request costs no context switch at all when the page cache
 * can serve it.  Anything unusual - a short transfer is continued, but
 * EAGAIN, an unsupported flag, unaligned O_DIRECT, no ring - falls back to
 * the blocking implementation on the worker pool, which knows every case.
 * Without liburing at build time, or when the kernel refuses a ring, every
 * request simply takes the worker pool.
 */
#include "file-posix-int.h"

#ifdef CONFIG_LIBURING

#include "util/iov.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>

#define RING_ENTRIES 256

typedef struct {
    GSource source;
    struct io_uring ring;
    gpointer fd_tag;
    guint unsubmitted;
    bool ready;                 /* the ring was set up (finalize tears it down) */
} FileRing;

/* One request on the ring, possibly continued after a short transfer. */
typedef struct {
    BdrvRequest *req;
    FileState *s;
    uint64_t done;              /* bytes moved so far */
    struct iovec *rest;         /* after a short transfer: the remaining slice */
    int rest_n;
    int rwflags;
} UringOp;

static gint uring_broken;       /* the kernel refused a ring: stop asking */

static void ring_flush(FileRing *r)
{
    if (r->unsubmitted) {
        int ret = io_uring_submit(&r->ring);
        if (ret >= 0) {
            r->unsubmitted -= MIN((guint) ret, r->unsubmitted);
        }
    }
}

static gboolean ring_prepare(GSource *source, gint *timeout)
{
    FileRing *r = (FileRing *) source;
    *timeout = -1;
    ring_flush(r);
    return io_uring_cq_ready(&r->ring) > 0;
}

static gboolean ring_check(GSource *source)
{
    FileRing *r = (FileRing *) source;
    return io_uring_cq_ready(&r->ring) > 0 ||
           (g_source_query_unix_fd(source, r->fd_tag) & G_IO_IN);
}

static void op_free(UringOp *op)
{
    g_free(op->rest);
    g_free(op);
}

/* Hand the whole request to the blocking implementation. */
static void op_fall_back(UringOp *op)
{
    BdrvRequest *req = op->req;
    op_free(op);
    bdrv_worker_submit(req, req->op == BDRV_OP_READ ? bdrv_file_do_read : bdrv_file_do_write);
}

static bool op_queue(FileRing *r, UringOp *op);

static void op_complete(FileRing *r, UringOp *op, int res)
{
    BdrvRequest *req = op->req;
    FileState *s = op->s;
    if (res == -EAGAIN || res == -EINTR || res == -ECANCELED || res == -EOPNOTSUPP ||
        res == -EINVAL || (res == 0 && req->op == BDRV_OP_WRITE && req->bytes)) {
        op_fall_back(op);
        return;
    }
    if (res < 0) {
        uint64_t at = req->offset + op->done;
        op_free(op);
        bdrv_file_finish(s, req, res, req->op == BDRV_OP_READ ? "read from" : "write to", at);
        return;
    }
    op->done += (uint64_t) res;
    if (op->done < req->bytes && res > 0) {
        /* A short transfer: queue the rest. */
        g_free(op->rest);
        op->rest = g_new(struct iovec, MAX(req->niov, 1));
        op->rest_n = berth_iov_slice(req->iov, req->niov, op->done, req->bytes - op->done,
                                     op->rest, req->niov, NULL);
        if (!op_queue(r, op)) {
            op_fall_back(op);
        }
        return;
    }
    if (op->done < req->bytes) {
        /* A read past the end of the file: the rest reads as zeroes. */
        berth_iov_memset(req->iov, req->niov, op->done, 0, req->bytes - op->done);
    }
    op_free(op);
    bdrv_request_complete(req, 0, NULL);
}

static gboolean ring_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
    FileRing *r = (FileRing *) source;
    struct io_uring_cqe *cqe;
    /* Bounded: what a completion queues again waits for the next round. */
    for (guint n = io_uring_cq_ready(&r->ring); n > 0 && io_uring_peek_cqe(&r->ring, &cqe) == 0;
         n--) {
        UringOp *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        op_complete(r, op, res);
    }
    ring_flush(r);
    /* The requests just finished are answered now, not one more poll later. */
    bdrv_dispatch_completions();
    return G_SOURCE_CONTINUE;
}

static void ring_finalize(GSource *source)
{
    FileRing *r = (FileRing *) source;
    /* Only a dying context gets here with requests on the ring; they die with it. */
    if (r->ready) {
        io_uring_queue_exit(&r->ring);
    }
}

static GSourceFuncs ring_funcs = {
    .prepare = ring_prepare,
    .check = ring_check,
    .dispatch = ring_dispatch,
    .finalize = ring_finalize,
};

static FileRing *ring_for(BdrvCompletionQueue *q)
{
    GSource *src = bdrv_completion_queue_get_local(q);
    if (src) {
        return (FileRing *) src;
    }
    if (g_atomic_int_get(&uring_broken)) {
        return NULL;
    }
    src = g_source_new(&ring_funcs, sizeof(FileRing));
    FileRing *r = (FileRing *) src;
    int ret = io_uring_queue_init(RING_ENTRIES, &r->ring, 0);
    if (ret < 0) {
        g_message("io_uring unavailable (%s): file I/O uses worker threads",
                  g_strerror(-ret));
        g_atomic_int_set(&uring_broken, 1);
        g_source_unref(src);
        return NULL;
    }
    r->ready = true;
    r->fd_tag = g_source_add_unix_fd(src, r->ring.ring_fd, G_IO_IN);
    g_source_set_static_name(src, "berth file io_uring");
    /* Dispatches never nest (they run no callback of their own), and a
     * source that may not recurse costs two eventfd wake-ups per dispatch. */
    g_source_set_can_recurse(src, TRUE);
    g_source_attach(src, bdrv_completion_queue_context(q));
    bdrv_completion_queue_set_local(q, src);
    g_source_unref(src);
    return r;
}

static bool op_queue(FileRing *r, UringOp *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        ring_flush(r);
        sqe = io_uring_get_sqe(&r->ring);
        if (!sqe) {
            return false;
        }
    }
    BdrvRequest *req = op->req;
    const struct iovec *iov = op->rest ? op->rest : req->iov;
    unsigned n = (unsigned) (op->rest ? op->rest_n : req->niov);
    switch (req->op) {
    case BDRV_OP_READ:
        if (n == 1) {
            io_uring_prep_read(sqe, op->s->fd, iov->iov_base, (unsigned) iov->iov_len,
                               req->offset + op->done);
        } else {
            io_uring_prep_readv(sqe, op->s->fd, iov, n, req->offset + op->done);
        }
        break;
    default:    /* BDRV_OP_WRITE */
        if (n == 1) {
            io_uring_prep_write(sqe, op->s->fd, iov->iov_base, (unsigned) iov->iov_len,
                                req->offset + op->done);
            sqe->rw_flags = op->rwflags;
        } else {
            io_uring_prep_writev2(sqe, op->s->fd, iov, n, req->offset + op->done,
                                  op->rwflags);
        }
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    r->unsubmitted++;
    if (op->s->aio_max_batch && r->unsubmitted >= op->s->aio_max_batch) {
        ring_flush(r);      /* aio-max-batch: no longer batch than asked */
    }
    return true;
}

bool bdrv_file_uring_submit(FileState *s, BdrvRequest *req)
{
    if (!s->use_uring || g_atomic_int_get(&uring_broken) || req->niov > IOV_MAX ||
        !g_main_context_is_owner(bdrv_completion_queue_context(req->queue))) {
        return false;
    }
    if (req->op == BDRV_OP_FLUSH ||
        (req->op == BDRV_OP_WRITE && !s->direct && req->bytes > FILE_INLINE_MAX)) {
        return false;   /* see the top of this file */
    }
    if (s->direct && !bdrv_file_request_aligned(s, req)) {
        return false;
    }
    bool fua = req->op == BDRV_OP_WRITE && (req->flags & BDRV_REQ_FUA) && !s->no_flush;
    if (fua && !g_atomic_int_get(&s->dsync_ok)) {
        return false;   /* the worker writes, then flushes */
    }
    FileRing *r = ring_for(req->queue);
    if (!r) {
        return false;
    }
    UringOp *op = g_new0(UringOp, 1);
    op->req = req;
    op->s = s;
    op->rwflags = fua ? RWF_DSYNC : 0;
    if (!op_queue(r, op)) {
        op_free(op);
        return false;
    }
    return true;
}

#else /* !CONFIG_LIBURING */

bool bdrv_file_uring_submit(FileState *s, BdrvRequest *req)
{
    return false;
}

#endif
