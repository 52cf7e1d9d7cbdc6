/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file driver's inline path: requests that the submitting thread carries
 * out itself, because they cannot wait for a device, so they cost neither a
 * worker-pool round trip nor a ring submission and its completion poll.
 * Two kinds qualify, learnt per node and per direction on first use:
 *
 *  - RWF_NOWAIT transfers, where the filesystem takes the flag (reads on
 *    ext4 and xfs, writes on xfs): the kernel copies to or from the page
 *    cache, or answers EAGAIN instead of waiting, and the request goes on to
 *    io_uring or the worker pool as before. A short transfer goes there
 *    whole: repeating the part already done is harmless, since the request
 *    is not answered before it is all done.
 *  - Files on a memory filesystem (tmpfs, ramfs), which refuse RWF_NOWAIT
 *    but have no device behind them: a transfer or a flush there is a copy
 *    or nothing, as in the memory driver, so the blocking implementations
 *    run inline. (A tmpfs page that was swapped out costs a swap-in on the
 *    loop, as a swapped-out page of the memory driver does.)
 *
 * Requests above FILE_INLINE_MAX are not copied inline either way: the
 * copy would hold up every other connection of the loop, while a worker
 * overlaps it with the loop's socket I/O. O_DIRECT requests never come here.
 */
#include "block/file-posix-int.h"

#include <errno.h>
#include <linux/magic.h>
#include <sys/vfs.h>

enum {
    FILE_INLINE_UNKNOWN,        /* not tried yet (the zeroed default) */
    FILE_INLINE_NOWAIT,
    FILE_INLINE_MEMORY,
    FILE_INLINE_OFF,
};

enum { MEMORY_FS_UNKNOWN, MEMORY_FS_YES, MEMORY_FS_NO };

/* A block device node under /dev sits on devtmpfs, yet its I/O goes to the
 * device: only regular files count. */
static bool file_on_memory_fs(FileState *s)
{
    int known = g_atomic_int_get(&s->memory_fs);
    struct statfs fs;

    if (known == MEMORY_FS_UNKNOWN) {
        bool yes = !s->is_block_dev && fstatfs(s->fd, &fs) == 0 &&
                   (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
        known = yes ? MEMORY_FS_YES : MEMORY_FS_NO;
        g_atomic_int_set(&s->memory_fs, known);
    }
    return known == MEMORY_FS_YES;
}

/* One RWF_NOWAIT call for the whole request: its size, or -errno. */
static ssize_t transfer_nowait(FileState *s, BdrvRequest *req, bool is_write)
{
    ssize_t r;

    do {
        r = is_write ? pwritev2(s->fd, req->iov, req->niov, req->offset, RWF_NOWAIT)
                     : preadv2(s->fd, req->iov, req->niov, req->offset, RWF_NOWAIT);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

/* The kernel does not know the flag, or the filesystem refuses it. */
static bool nowait_refused(ssize_t r)
{
    return r == -EOPNOTSUPP || r == -EINVAL;
}

/* Run the blocking implementation here: it finishes the request. */
static void run_in_memory(BdrvRequest *req)
{
    if (req->op == BDRV_OP_READ) {
        bdrv_file_do_read(req);
    } else {
        bdrv_file_do_write(req);
    }
}

static bool try_transfer(FileState *s, BdrvRequest *req, int *mode)
{
    bool is_write = req->op == BDRV_OP_WRITE;
    int m = g_atomic_int_get(mode);
    ssize_t r;

    switch (m) {
    case FILE_INLINE_MEMORY:
        run_in_memory(req);
        return true;
    case FILE_INLINE_NOWAIT:
        /* The page cache cannot make a write durable by itself. */
        if (is_write && (req->flags & BDRV_REQ_FUA) && !s->no_flush) {
            return false;
        }
        r = transfer_nowait(s, req, is_write);
        break;
    case FILE_INLINE_UNKNOWN:
        /* Learn with this request what the filesystem takes; a FUA write
         * learns it without trying (see above). */
        if (file_on_memory_fs(s)) {
            g_atomic_int_set(mode, FILE_INLINE_MEMORY);
            run_in_memory(req);
            return true;
        }
        if (is_write && (req->flags & BDRV_REQ_FUA) && !s->no_flush) {
            return false;
        }
        r = transfer_nowait(s, req, is_write);
        g_atomic_int_set(mode, nowait_refused(r) ? FILE_INLINE_OFF : FILE_INLINE_NOWAIT);
        break;
    default:
        return false;
    }
    if (r == (ssize_t) req->bytes) {
        bdrv_request_complete(req, 0, NULL);
        return true;
    }
    if (nowait_refused(r)) {
        g_atomic_int_set(mode, FILE_INLINE_OFF);
    }
    /* Not cached, partly done, at the end of the file or an error: the
     * blocking implementation does it properly. */
    return false;
}

bool bdrv_file_try_inline(FileState *s, BdrvRequest *req)
{
    if (s->direct) {
        return false;
    }
    switch (req->op) {
    case BDRV_OP_READ:
    case BDRV_OP_WRITE:
        if (req->bytes > FILE_INLINE_MAX || req->niov > FILE_IOV_BATCH) {
            return false;
        }
        return try_transfer(s, req, req->op == BDRV_OP_READ ? &s->read_inline
                                                             : &s->write_inline);
    case BDRV_OP_FLUSH:
        /* fdatasync on a memory filesystem has nothing to wait for. */
        if (!file_on_memory_fs(s)) {
            return false;
        }
        bdrv_file_finish(s, req, bdrv_file_sync(s), "flush", 0);
        return true;
    default:
        return false;
    }
}
