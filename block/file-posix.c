/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file driver: a regular file (or a block device) accessed with
 * preadv/pwritev on the shared worker pool, so that a slow disk never stalls
 * an event loop. Small buffered requests that cannot wait for a device
 * (RWF_NOWAIT, or a file on tmpfs) are done on the submitting thread
 * instead (file-posix-inline.c), without a thread hop.
 * With cache.direct=on the file is opened O_DIRECT; requests whose offset,
 * length or buffers do not meet the probed alignment go through aligned
 * bounce buffers, and unaligned writes read-modify-write under a per-node
 * lock (only that rare path takes it). Unmapping, zeroing and block status
 * use fallocate() and SEEK_DATA/SEEK_HOLE. Whatever happens to the file
 * underneath (truncated, full disk), requests fail with -errno and a message,
 * and reads past the end of a shrunken file return zeroes.
 */
#include "block/file-posix-int.h"
#include "util/tsan.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* BlockdevOptionsFile (pr-manager and x- options omitted). */
typedef struct {
    char *filename;
    int aio;                    /* FileAio */
    bool has_aio;
    int64_t aio_max_batch;
    bool has_aio_max_batch;
    int locking;                /* FileLocking */
    bool has_locking;
    bool drop_cache, has_drop_cache;
} FileOptions;

typedef enum { FILE_AIO_THREADS, FILE_AIO_NATIVE, FILE_AIO_IO_URING } FileAio;
static const char *const aio_values[] = { "threads", "native", "io_uring", NULL };
typedef enum { FILE_LOCKING_AUTO, FILE_LOCKING_ON, FILE_LOCKING_OFF } FileLocking;
static const char *const locking_values[] = { "auto", "on", "off", NULL };

/* In QEMU's order. */
static const ArgSpec file_members[] = {
    ARG_REQUIRED("filename", ARG_STR, FileOptions, filename),
    ARG_ENUM_OPTIONAL("locking", locking_values, FileOptions, locking, has_locking),
    ARG_ENUM_OPTIONAL("aio", aio_values, FileOptions, aio, has_aio),
    ARG_OPTIONAL("aio-max-batch", ARG_INT, FileOptions, aio_max_batch, has_aio_max_batch),
    ARG_OPTIONAL("drop-cache", ARG_BOOL, FileOptions, drop_cache, has_drop_cache),
    ARG_TABLE_END
};

/* ---- operations (on a worker unless noted) -------------------------------- */

static void file_do_flush(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;

    bdrv_file_finish(s, req, bdrv_file_sync(s), "flush", 0);
}

static bool fallocate_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOSYS || err == ENOTTY;
}

/* Returns 1 if done, 0 if the filesystem cannot, -errno on failure. */
static int file_fallocate(FileState *s, int *supported, int mode, uint64_t offset,
                          uint64_t bytes)
{
    if (!g_atomic_int_get(supported)) {
        return 0;
    }
    while (fallocate(s->fd, mode, offset, bytes) < 0) {
        if (errno == EINTR) {
            continue;
        }
        if (fallocate_unsupported(errno)) {
            g_atomic_int_set(supported, 0);
            return 0;
        }
        return -errno;
    }
    return 1;
}

/*
 * The part of [offset, offset + bytes) that fallocate() can take: block
 * devices zero and discard whole logical blocks only (EINVAL otherwise),
 * files any byte range. Empty (*start == *end) when nothing is aligned.
 */
static void file_fallocate_range(FileState *s, uint64_t offset, uint64_t bytes,
                                 uint64_t *start, uint64_t *end)
{
    uint64_t align = s->is_block_dev ? s->dev_align : 1;

    *start = (offset + align - 1) & ~(align - 1);
    *end = (offset + bytes) & ~(align - 1);
    if (*start >= *end) {
        *start = *end = offset;
    }
}

static void file_do_discard(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;
    uint64_t start, end;
    int ret = 0;

    /* Discard is a hint: partial blocks, or a filesystem that cannot punch
     * holes, keep their data. */
    file_fallocate_range(s, req->offset, req->bytes, &start, &end);
    if (end > start) {
        ret = file_fallocate(s, &s->punch_ok, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             start, end - start);
    }
    bdrv_file_finish(s, req, MIN(ret, 0), "discard", start);
}

/* Zeroes [start, end) with fallocate(): 1 if done, 0 if it cannot, -errno. */
static int file_zero_range(FileState *s, uint64_t start, uint64_t end, bool may_unmap)
{
    int ret = 0;

    if (end <= start) {
        return 1;
    }
    if (may_unmap) {
        ret = file_fallocate(s, &s->punch_ok, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             start, end - start);
    }
    if (ret == 0) {
        /* Block devices only zero within their size; files may grow as a
         * write there would make them. */
        ret = file_fallocate(s, &s->zero_range_ok,
                             FALLOC_FL_ZERO_RANGE | (s->is_block_dev ? FALLOC_FL_KEEP_SIZE : 0),
                             start, end - start);
    }
    return ret;
}

static void file_do_write_zeroes(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;
    uint64_t end = req->offset + req->bytes;
    uint64_t start_fast, end_fast, at = req->offset;
    int ret;

    file_fallocate_range(s, req->offset, req->bytes, &start_fast, &end_fast);
    ret = file_zero_range(s, start_fast, end_fast, req->flags & BDRV_REQ_MAY_UNMAP);
    if (ret == 0) {
        if (req->flags & BDRV_REQ_NO_FALLBACK) {
            bdrv_request_fail(req, ENOTSUP,
                              "Cannot zero '%s' efficiently at offset %" G_GUINT64_FORMAT,
                              s->filename, req->offset);
            return;
        }
        ret = bdrv_file_write_zero_buffers(s, start_fast, end_fast - start_fast, &at);
    }
    /* Partial blocks of a device at either end: at most two blocks written,
     * which is no slow fallback even under NO_FALLBACK. */
    if (ret >= 0 && req->offset < start_fast) {
        ret = bdrv_file_write_zero_buffers(s, req->offset, start_fast - req->offset, &at);
    }
    if (ret >= 0 && end_fast < end) {
        ret = bdrv_file_write_zero_buffers(s, end_fast, end - end_fast, &at);
    }
    if (ret >= 0 && (req->flags & BDRV_REQ_FUA)) {
        ret = bdrv_file_sync(s);
    }
    bdrv_file_finish(s, req, MIN(ret, 0), "write zeroes to", at);
}

static void file_do_cache(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;

    /* Only a hint: with O_DIRECT there is no cache to fill. */
    if (!s->direct) {
        posix_fadvise(s->fd, req->offset, req->bytes, POSIX_FADV_WILLNEED);
    }
    bdrv_request_complete(req, 0, NULL);
}

static void file_do_block_status(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;
    uint64_t pos = req->offset, end = req->offset + req->bytes;

    while (pos < end) {
        off_t data = lseek(s->fd, pos, SEEK_DATA);
        off_t hole;

        if (data < 0) {
            /* ENXIO: no data from here on, including past the end of file.
             * Anything else: holes cannot be found, so call it all data. */
            bdrv_request_add_extent(req, end - pos,
                                    errno == ENXIO ? BDRV_BLOCK_ZERO : BDRV_BLOCK_DATA);
            break;
        }
        if ((uint64_t) data > pos) {
            uint64_t next = MIN((uint64_t) data, end);
            if (!bdrv_request_add_extent(req, next - pos, BDRV_BLOCK_ZERO)) {
                break;
            }
            pos = next;
            continue;
        }
        hole = lseek(s->fd, pos, SEEK_HOLE);
        if (hole < 0 && errno == ENXIO) {
            /* The file shrank between the two calls. */
            continue;
        }
        /* A hole at pos means the file changed under us; take it as data. */
        if (hole <= (off_t) pos) {
            hole = end;
        }
        uint64_t next = MIN((uint64_t) hole, end);
        if (!bdrv_request_add_extent(req, next - pos, BDRV_BLOCK_DATA)) {
            break;
        }
        pos = next;
    }
    bdrv_request_complete(req, 0, NULL);
}

static void file_submit(BdrvRequest *req)
{
    FileState *s = req->bs->opaque;

    switch (req->op) {
    case BDRV_OP_READ:
        if (!bdrv_file_try_inline(s, req) && !bdrv_file_uring_submit(s, req)) {
            bdrv_worker_submit(req, bdrv_file_do_read);
        }
        break;
    case BDRV_OP_WRITE:
        if (!bdrv_file_try_inline(s, req) && !bdrv_file_uring_submit(s, req)) {
            bdrv_worker_submit(req, bdrv_file_do_write);
        }
        break;
    case BDRV_OP_FLUSH:
        if (!bdrv_file_try_inline(s, req)) {
            bdrv_worker_submit(req, file_do_flush);
        }
        break;
    case BDRV_OP_DISCARD:
        bdrv_worker_submit(req, file_do_discard);
        break;
    case BDRV_OP_WRITE_ZEROES:
        bdrv_worker_submit(req, file_do_write_zeroes);
        break;
    case BDRV_OP_CACHE:
        bdrv_worker_submit(req, file_do_cache);
        break;
    case BDRV_OP_BLOCK_STATUS:
        bdrv_worker_submit(req, file_do_block_status);
        break;
    }
}

/* ---- open and close ---------------------------------------------------- */

/*
 * O_DIRECT needs the offset, length and buffer address of each request
 * aligned. Kernels since 6.1 say to what (statx STATX_DIOALIGN); otherwise
 * try reads of growing size and buffer offsets, as QEMU does, where the file
 * has data: holes and the end of file accept anything, so a file without
 * data gets the safe default. Should a guess still be too small, the
 * requests that fail with EINVAL go through page-aligned bounce buffers.
 */
static void file_probe_alignment(FileState *s)
{
    static const uint32_t steps[] = { 1, 512, 1024, 2048, 4096 };
    g_autofree char *buf = NULL;
    bool found = false;
    off_t at;

    s->req_align = s->mem_align = FILE_DEFAULT_ALIGN;
    if (s->is_block_dev) {
        s->req_align = s->mem_align = s->dev_align;
        return;
    }
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(s->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0 &&
        stx.stx_dio_mem_align > 0) {
        s->req_align = stx.stx_dio_offset_align;
        s->mem_align = stx.stx_dio_mem_align;
        return;
    }
#endif
    at = lseek(s->fd, 0, SEEK_DATA);
    if (at < 0 || posix_memalign((void **) &buf, FILE_DEFAULT_ALIGN, 3 * FILE_DEFAULT_ALIGN)) {
        return;
    }
    at &= ~(off_t) (FILE_DEFAULT_ALIGN - 1);
    for (guint i = 0; i < G_N_ELEMENTS(steps) && !found; i++) {
        if (pread(s->fd, buf, steps[i], at) > 0) {
            s->req_align = steps[i];
            found = true;
        }
    }
    if (!found) {
        return;
    }
    /* A whole page's worth, so that the buffer crosses a page boundary:
     * the kernel accepts a misaligned buffer within one page. */
    for (guint i = 0; i < G_N_ELEMENTS(steps); i++) {
        if (pread(s->fd, buf + steps[i], MAX(s->req_align, FILE_DEFAULT_ALIGN), at) > 0) {
            s->mem_align = steps[i];
            break;
        }
    }
}

static int file_open_fd(const char *filename, bool read_only, bool direct)
{
    int flags = O_CLOEXEC | (read_only ? O_RDONLY : O_RDWR) | (direct ? O_DIRECT : 0);
    int fd;

    do {
        fd = open(filename, flags);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static bool file_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const FileOptions *opts = options;
    const char *filename = opts->filename;
    g_autofree FileState *s = NULL;
    uint64_t size;
    struct stat st;
    int sector;
    int fd;

    if (!filename[0]) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "The 'file' block driver requires a file name");
        return false;
    }
    if (opts->has_aio && opts->aio == FILE_AIO_NATIVE && !bs->cache_direct) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "aio=native was specified, but it requires cache.direct=on, "
                            "which was not specified.");
        return false;
    }
    if (opts->has_aio_max_batch && (opts->aio_max_batch < 0 ||
                                    opts->aio_max_batch > G_MAXINT32)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "aio-max-batch must be in range [0, %d]", G_MAXINT32);
        return false;
    }
    fd = file_open_fd(filename, bs->read_only, bs->cache_direct);
    if (fd < 0 && !bs->read_only && bs->auto_read_only &&
        (errno == EACCES || errno == EPERM || errno == EROFS)) {
        fd = file_open_fd(filename, true, bs->cache_direct);
        if (fd >= 0) {
            bs->read_only = true;
        }
    }
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "Could not open '%s': %s", filename, g_strerror(errno));
        return false;
    }
    if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'file' driver requires '%s' to be a regular file", filename);
        close(fd);
        return false;
    }
    size = st.st_size;
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Could not get the size of '%s': %s", filename, g_strerror(err));
        close(fd);
        return false;
    }

    s = g_new0(FileState, 1);
    s->fd = fd;
    s->filename = g_strdup(filename);
    s->is_block_dev = S_ISBLK(st.st_mode);
    s->direct = bs->cache_direct;
    /* Default, aio=io_uring and aio=native: the ring (for reads, O_DIRECT
     * writes and small buffered writes, see file-posix-uring.c) when the
     * kernel lets us have one. berth has no Linux AIO
     * (io_submit) path; io_uring is the kernel's asynchronous interface
     * that replaced it, and aio=native keeps QEMU's rule that it goes with
     * cache.direct=on. Only aio=threads asks for the worker pool. */
    s->use_uring = !opts->has_aio || opts->aio != FILE_AIO_THREADS;
    s->aio_max_batch = opts->has_aio_max_batch ? (guint) opts->aio_max_batch : 0;
    s->no_flush = bs->cache_no_flush;
    s->req_align = s->mem_align = 1;
    s->dsync_ok = s->zero_range_ok = s->punch_ok = 1;
    s->dev_align = BDRV_SECTOR_SIZE;
    if (s->is_block_dev && ioctl(fd, BLKSSZGET, &sector) == 0 && sector > 0 &&
        (sector & (sector - 1)) == 0) {
        s->dev_align = sector;
    }
    if ((!opts->has_locking || opts->locking != FILE_LOCKING_OFF) &&
        !bdrv_file_lock_probe(s, opts->has_locking && opts->locking == FILE_LOCKING_ON, errp)) {
        close(fd);
        g_free(s->filename);
        return false;
    }
    g_mutex_init(&s->rmw_lock);
    if (s->direct) {
        file_probe_alignment(s);
    }

    bs->size = size;
    bs->can_flush = true;
    bs->can_fua = true;
    bs->can_discard = true;
    bs->can_write_zeroes_fast = true;
    bs->has_block_status = !s->is_block_dev;
    bs->coherent = true;
    bs->request_alignment = s->req_align;
    bs->opaque = g_steal_pointer(&s);
    return true;
}

static void file_close(BlockDriverState *bs)
{
    FileState *s = bs->opaque;

    close(s->fd);
    berth_mutex_clear(&s->rmw_lock);
    g_free(s->filename);
    g_free(s);
}

static char *file_describe(BlockDriverState *bs, const void *opts)
{
    return g_strdup(((const FileOptions *) opts)->filename);
}

/* ImageInfo: the space the file takes, and QEMU's dirty-flag (never set). */
static void file_image_info(BlockDriverState *bs, json_object *image)
{
    FileState *s = bs->opaque;
    struct stat st;

    if (stat(s->filename, &st) == 0) {
        json_object_object_add(image, "actual-size",
                               json_object_new_int64((int64_t) st.st_blocks * 512));
    }
    json_object_object_add(image, "dirty-flag", json_object_new_boolean(false));
}

static bool file_set_perm(BlockDriverState *bs, uint32_t perm, uint32_t unshared,
                          GError **errp)
{
    return bdrv_file_lock_set(bs->opaque, perm, unshared, errp);
}

/* block_resize: a file takes the new length; a device cannot grow. */
static bool file_truncate(BlockDriverState *bs, uint64_t size, GError **errp)
{
    FileState *s = bs->opaque;

    if (s->is_block_dev) {
        uint64_t dev_size = 0;
        if (ioctl(s->fd, BLKGETSIZE64, &dev_size) == 0 && size > dev_size) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                "Cannot grow device files");
            return false;
        }
        return true;
    }
    if (ftruncate(s->fd, (off_t) size) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Failed to resize file '%s': %s", s->filename, g_strerror(err));
        return false;
    }
    return true;
}

const BlockDriver bdrv_file = {
    .name = "file",
    .options = file_members,
    .options_size = sizeof(FileOptions),
    .open = file_open,
    .close = file_close,
    .submit = file_submit,
    .describe = file_describe,
    .image_info = file_image_info,
    .set_perm = file_set_perm,
    .truncate = file_truncate,
};
