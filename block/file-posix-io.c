/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Data movement for the file driver, on worker threads: vectored transfers
 * that finish what the kernel leaves short, aligned bounce buffers for
 * O_DIRECT requests that do not meet the device's alignment (with
 * read-modify-write for partial blocks), and writing zeroes from a shared
 * zero region where the filesystem cannot zero ranges itself. Everything
 * here returns -errno and says where it failed; the caller words the error,
 * except the blocking read and write paths at the end, which finish their
 * request themselves (the pool runs them, and io_uring falls back to them).
 */
#include "block/file-posix-int.h"
#include "util/tsan.h"

#include <errno.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A read-only region of zero pages, shared by every zero-writing fallback:
 * anonymous memory that is never written costs no RAM. */
static const char *zero_region(void)
{
    static gsize once;
    static const char *region;

    if (g_once_init_enter(&once)) {
        void *p = mmap(NULL, FILE_WINDOW, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        region = p == MAP_FAILED ? NULL : p;
        g_once_init_leave(&once, 1);
    }
    return region;
}

int bdrv_file_transfer(int fd, bool is_write, const struct iovec *iov, int niov,
                       uint64_t offset, uint64_t bytes, int rwflags, uint64_t *failed_at)
{
    BerthIovCursor c;

    berth_iov_cursor_init(&c, iov, niov);
    while (bytes > 0) {
        struct iovec vec[FILE_IOV_BATCH];
        int n = 0;
        uint64_t len = 0;
        ssize_t r;

        /* Collect the next pieces from the cursor without consuming them. */
        for (int i = c.idx; i < c.niov && n < FILE_IOV_BATCH && len < bytes; i++) {
            size_t skip = i == c.idx ? c.off : 0;
            size_t l = MIN(c.iov[i].iov_len - skip, bytes - len);

            if (l == 0) {
                continue;
            }
            vec[n].iov_base = (char *) c.iov[i].iov_base + skip;
            vec[n].iov_len = l;
            len += l;
            n++;
        }
        if (n == 0) {
            break;
        }
        r = is_write ? pwritev2(fd, vec, n, offset, rwflags)
                     : preadv2(fd, vec, n, offset, rwflags);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            *failed_at = offset;
            return -errno;
        }
        if (r == 0) {
            if (is_write) {
                /* No progress and no error: the device is full. */
                *failed_at = offset;
                return -ENOSPC;
            }
            berth_iov_cursor_memset(&c, 0, bytes);
            return 0;
        }
        berth_iov_cursor_skip(&c, r);
        offset += r;
        bytes -= r;
    }
    return 0;
}

static int file_transfer_buf(int fd, bool is_write, void *buf, uint64_t offset,
                             uint64_t bytes, uint64_t *failed_at)
{
    struct iovec v = { .iov_base = buf, .iov_len = bytes };

    return bdrv_file_transfer(fd, is_write, &v, 1, offset, bytes, 0, failed_at);
}

bool bdrv_file_request_aligned(FileState *s, BdrvRequest *req)
{
    if (!s->direct) {
        return true;
    }
    if ((req->offset | req->bytes) & (s->req_align - 1)) {
        return false;
    }
    for (int i = 0; i < req->niov; i++) {
        if (((uintptr_t) req->iov[i].iov_base & (s->mem_align - 1)) ||
            (req->iov[i].iov_len & (s->req_align - 1))) {
            return false;
        }
    }
    return true;
}

/*
 * Bounce buffers and their windows are page-aligned whatever the probe said
 * (see file_probe_alignment()): a few more bytes read back for partial blocks
 * buy safety against a probe that guessed too small.
 */
static uint64_t bounce_align(FileState *s)
{
    return MAX(s->req_align, FILE_DEFAULT_ALIGN);
}

static void *bounce_alloc(FileState *s, size_t size)
{
    void *p = NULL;

    if (posix_memalign(&p, bounce_align(s), size) != 0) {
        return NULL;
    }
    return p;
}

/* O_DIRECT read of an unaligned request through an aligned window. */
int bdrv_file_read_bounce(FileState *s, BdrvRequest *req, uint64_t *failed_at)
{
    uint64_t align = bounce_align(s);
    uint64_t end = req->offset + req->bytes;
    uint64_t pos = req->offset & ~(align - 1);
    uint64_t aligned_end = (end + align - 1) & ~(align - 1);
    g_autofree char *buf = NULL;
    BerthIovCursor c;

    buf = bounce_alloc(s, FILE_WINDOW);
    if (!buf) {
        *failed_at = req->offset;
        return -ENOMEM;
    }
    berth_iov_cursor_init(&c, req->iov, req->niov);
    while (pos < aligned_end) {
        uint64_t n = MIN((uint64_t) FILE_WINDOW, aligned_end - pos);
        uint64_t from = MAX(pos, req->offset), to = MIN(pos + n, end);
        int ret = file_transfer_buf(s->fd, false, buf, pos, n, failed_at);

        if (ret < 0) {
            return ret;
        }
        berth_iov_cursor_from_buf(&c, buf + (from - pos), to - from);
        pos += n;
    }
    return 0;
}

/*
 * O_DIRECT write of an unaligned request: each aligned window gets its
 * partial first and last blocks read back, the new bytes copied in (from iov,
 * or zeroes when iov is NULL) and the whole window written.
 */
int bdrv_file_write_bounce(FileState *s, const struct iovec *iov, int niov,
                           uint64_t offset, uint64_t bytes, uint64_t *failed_at)
{
    uint64_t align = bounce_align(s);
    uint64_t end = offset + bytes;
    uint64_t pos = offset & ~(align - 1);
    uint64_t aligned_end = (end + align - 1) & ~(align - 1);
    g_autofree char *buf = NULL;
    BerthIovCursor c;
    int ret = 0;

    buf = bounce_alloc(s, FILE_WINDOW);
    if (!buf) {
        *failed_at = offset;
        return -ENOMEM;
    }
    berth_iov_cursor_init(&c, iov, niov);
    berth_mutex_lock(&s->rmw_lock);
    while (pos < aligned_end && ret == 0) {
        uint64_t n = MIN((uint64_t) FILE_WINDOW, aligned_end - pos);
        uint64_t from = MAX(pos, offset), to = MIN(pos + n, end);

        bool need_head = from > pos, need_tail = to < pos + n;

        if (need_head) {
            ret = file_transfer_buf(s->fd, false, buf, pos, align, failed_at);
        }
        /* A one-block window has its tail read already as its head. */
        if (ret == 0 && need_tail && !(need_head && n == align)) {
            ret = file_transfer_buf(s->fd, false, buf + n - align, pos + n - align, align,
                                    failed_at);
        }
        if (ret < 0) {
            break;
        }
        if (iov) {
            berth_iov_cursor_to_buf(&c, buf + (from - pos), to - from);
        } else {
            memset(buf + (from - pos), 0, to - from);
        }
        ret = file_transfer_buf(s->fd, true, buf, pos, n, failed_at);
        pos += n;
    }
    berth_mutex_unlock(&s->rmw_lock);
    return ret;
}

/* Writes zeroes from the shared zero region, one window at a time. */
int bdrv_file_write_zero_buffers(FileState *s, uint64_t offset, uint64_t bytes,
                                 uint64_t *at)
{
    const char *zeroes = zero_region();
    uint64_t end = offset + bytes;

    if (bytes == 0) {
        return 0;
    }
    if (s->direct && ((offset | bytes) & (s->req_align - 1))) {
        return bdrv_file_write_bounce(s, NULL, 0, offset, bytes, at);
    }
    if (!zeroes) {
        *at = offset;
        return -ENOMEM;
    }
    while (offset < end) {
        struct iovec v = { .iov_base = (void *) zeroes,
                           .iov_len = MIN((uint64_t) FILE_WINDOW, end - offset) };
        int ret = bdrv_file_transfer(s->fd, true, &v, 1, offset, v.iov_len, 0, at);

        if (ret == -EINVAL && s->direct) {
            return bdrv_file_write_bounce(s, NULL, 0, offset, end - offset, at);
        }
        if (ret < 0) {
            return ret;
        }
        offset += v.iov_len;
    }
    return 0;
}

/* ---- blocking reads and writes: complete the request -------------------- */

static GError *file_error(FileState *s, int err, const char *what, uint64_t offset)
{
    return g_error_new(G_IO_ERROR, g_io_error_from_errno(err),
                       "Could not %s '%s' at offset %" G_GUINT64_FORMAT ": %s",
                       what, s->filename, offset, g_strerror(err));
}

void bdrv_file_finish(FileState *s, BdrvRequest *req, int ret, const char *what,
                      uint64_t at)
{
    bdrv_request_complete(req, ret, ret < 0 ? file_error(s, -ret, what, at) : NULL);
}

int bdrv_file_sync(FileState *s)
{
    if (s->no_flush) {
        return 0;
    }
    while (fdatasync(s->fd) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

void bdrv_file_do_read(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;
    uint64_t at = req->offset;
    int ret = -EINVAL;

    if (bdrv_file_request_aligned(s, req)) {
        ret = bdrv_file_transfer(s->fd, false, req->iov, req->niov, req->offset, req->bytes,
                                 0, &at);
    }
    /* Unaligned, or O_DIRECT rules the probe could not see: bounce. */
    if (ret == -EINVAL && s->direct) {
        ret = bdrv_file_read_bounce(s, req, &at);
    }
    bdrv_file_finish(s, req, ret, "read from", at);
}

void bdrv_file_do_write(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;
    bool fua = (req->flags & BDRV_REQ_FUA) && !s->no_flush;
    bool synced = false;
    uint64_t at = req->offset;
    int ret = -EINVAL;

    if (bdrv_file_request_aligned(s, req)) {
        bool try_dsync = fua && g_atomic_int_get(&s->dsync_ok);

        if (try_dsync) {
            ret = bdrv_file_transfer(s->fd, true, req->iov, req->niov, req->offset,
                                     req->bytes, RWF_DSYNC, &at);
            synced = ret == 0;
        }
        if (!try_dsync || ret == -EOPNOTSUPP || ret == -EINVAL) {
            ret = bdrv_file_transfer(s->fd, true, req->iov, req->niov, req->offset,
                                     req->bytes, 0, &at);
            /* Then the kernel does not know RWF_DSYNC: fdatasync from now on. */
            if (try_dsync && ret == 0) {
                g_atomic_int_set(&s->dsync_ok, 0);
            }
        }
    }
    if (ret == -EINVAL && s->direct) {
        ret = bdrv_file_write_bounce(s, req->iov, req->niov, req->offset, req->bytes, &at);
    }
    if (ret == 0 && fua && !synced) {
        ret = bdrv_file_sync(s);
        if (ret < 0) {
            bdrv_file_finish(s, req, ret, "flush", req->offset);
            return;
        }
    }
    bdrv_file_finish(s, req, ret, "write to", at);
}
