/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * State shared by the parts of the file driver: file-posix.c (options,
 * opening, request dispatch, fallocate and block status), file-posix-io.c
 * (transfers and bounce buffers), file-posix-inline.c (requests the
 * submitting thread does itself) and file-posix-uring.c. Private to block/.
 */
#ifndef BERTH_BLOCK_FILE_POSIX_INT_H
#define BERTH_BLOCK_FILE_POSIX_INT_H

#include "block/block-int.h"

/* iovecs passed to one preadv/pwritev call (the stack holds them). */
#define FILE_IOV_BATCH 64
/* Bounce buffers and zero-writing fallbacks work in windows of this size. */
#define FILE_WINDOW (1024 * 1024)
#define FILE_DEFAULT_ALIGN 4096
/* Largest read or write the submitting thread copies itself. */
#define FILE_INLINE_MAX (64 * 1024)

typedef struct FileState {
    int fd;
    char *filename;
    bool is_block_dev;
    bool direct;
    bool no_flush;
    uint32_t req_align;        /* 1 unless O_DIRECT */
    uint32_t mem_align;
    uint32_t dev_align;        /* logical block size of a block device */
    /* Probed as we go; atomics because workers update them. */
    int read_inline, write_inline;  /* file-posix-inline.c's modes; 0: unknown */
    int memory_fs;             /* on tmpfs or ramfs; 0: unknown */
    int dsync_ok;              /* pwritev2(RWF_DSYNC) works */
    int zero_range_ok;
    int punch_ok;
    GMutex rmw_lock;           /* serialises O_DIRECT read-modify-write */
    bool use_uring;            /* reads and O_DIRECT writes through io_uring when possible */
    guint aio_max_batch;       /* io_uring: submit once this many wait (0: per dispatch) */
    /* Image locks (file-posix-lock.c; main thread). */
    bool locking;              /* locking=on, or auto where OFD locks work */
    uint32_t lock_perm, lock_unshared;  /* what the locked bytes say now */
} FileState;

/*
 * file-posix-lock.c: QEMU's image locks. probe() decides s->locking (an
 * error only when `required`, locking=on, and OFD locks do not work);
 * set() makes the locked bytes say perm/unshared, failing with QEMU's
 * texts when another process's locks forbid it (and keeping the previous
 * locks). Main context.
 */
bool bdrv_file_lock_probe(FileState *s, bool required, GError **errp);
bool bdrv_file_lock_set(FileState *s, uint32_t perm, uint32_t unshared, GError **errp);

/* file-posix-io.c: fdatasync unless flushes are off; -errno on failure. */
int bdrv_file_sync(FileState *s);
/* file-posix-io.c: finish a request with a message naming the file. */
void bdrv_file_finish(FileState *s, BdrvRequest *req, int ret, const char *what, uint64_t at);
/* file-posix-io.c: the blocking implementations, run on the worker pool
 * (and by io_uring's fallback); they finish the request. */
void bdrv_file_do_read(BdrvRequest *req);
void bdrv_file_do_write(BdrvRequest *req);

/*
 * file-posix-uring.c: start a READ (or an O_DIRECT WRITE) on the io_uring of
 * the submitter's context, on that context's own thread.  False when the
 * ring does not take it (buffered writes, flushes, no io_uring, another
 * thread, unaligned O_DIRECT): the caller then uses the worker pool.
 */
bool bdrv_file_uring_submit(FileState *s, BdrvRequest *req);

/*
 * file-posix-inline.c: carry out a READ, WRITE or FLUSH on the calling
 * thread when it cannot wait for a device (RWF_NOWAIT, or a file on a
 * memory filesystem), and finish it. False when the request must go on to
 * io_uring or the worker pool, untouched.
 */
bool bdrv_file_try_inline(FileState *s, BdrvRequest *req);

bool bdrv_file_request_aligned(FileState *s, BdrvRequest *req);
/*
 * Moves all of [offset, offset + bytes) between the file and iov, retrying
 * short transfers and EINTR. A read that reaches the end of the file fills
 * the rest with zeroes. Returns 0 or -errno; *failed_at says where.
 */
int bdrv_file_transfer(int fd, bool is_write, const struct iovec *iov, int niov,
                       uint64_t offset, uint64_t bytes, int rwflags, uint64_t *failed_at);
int bdrv_file_read_bounce(FileState *s, BdrvRequest *req, uint64_t *failed_at);
/* iov NULL writes zeroes. */
int bdrv_file_write_bounce(FileState *s, const struct iovec *iov, int niov,
                           uint64_t offset, uint64_t bytes, uint64_t *failed_at);
int bdrv_file_write_zero_buffers(FileState *s, uint64_t offset, uint64_t bytes,
                                 uint64_t *failed_at);

#endif
