/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Linux kernel NBD attach through the ioctls of <linux/nbd.h>, every system
 * call going through a replaceable NBDKernelOps table (see nbd/kernel.h).
 *
 * Only <linux/nbd.h> is used here, not berth/nbd/proto.h: both define the
 * protocol constants and would clash.
 */
#include "berth/nbd/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/nbd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NBD_KERNEL_DEFAULT_BLOCK_SIZE 512u
#define NBD_KERNEL_MAX_BLOCK_SIZE 4096u

static int real_open(const char *path, int flags)
{
    return open(path, flags | O_CLOEXEC);
}

static int real_ioctl(int fd, unsigned long req, unsigned long arg)
{
    return ioctl(fd, req, arg);
}

static int real_close(int fd)
{
    return close(fd);
}

static const NBDKernelOps real_ops = {
    .open = real_open,
    .ioctl = real_ioctl,
    .close = real_close,
};

static const NBDKernelOps *current_ops = &real_ops;

void nbd_kernel_set_ops(const NBDKernelOps *ops)
{
    g_atomic_pointer_set(&current_ops, ops ? ops : &real_ops);
}

static const NBDKernelOps *get_ops(void)
{
    return g_atomic_pointer_get(&current_ops);
}

/* errno after a failed call; never 0, so callers always get a real error. */
static int saved_errno(void)
{
    int err = errno;
    return err ? err : EIO;
}

static void set_ioctl_error(GError **errp, const char *name, int err)
{
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                "ioctl %s failed: %s", name, g_strerror(err));
}

/* Runs one ioctl; returns 0, or the (non-zero) errno of its failure. */
static int do_ioctl(const NBDKernelOps *ops, int fd, unsigned long req,
                    unsigned long arg)
{
    errno = 0;
    if (ops->ioctl(fd, req, arg) < 0) {
        return saved_errno();
    }
    return 0;
}

int nbd_kernel_open(const char *dev, GError **errp)
{
    g_return_val_if_fail(dev != NULL, -1);
    g_return_val_if_fail(errp == NULL || *errp == NULL, -1);

    const NBDKernelOps *ops = get_ops();
    errno = 0;
    int fd = ops->open(dev, O_RDWR);
    if (fd < 0) {
        int err = saved_errno();
        if (err == ENOENT) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "Failed to open %s: %s (is the nbd kernel module "
                        "loaded? try 'modprobe nbd')", dev, g_strerror(err));
        } else {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                        "Failed to open %s: %s", dev, g_strerror(err));
        }
        return -1;
    }
    return fd;
}

void nbd_kernel_close(int fd)
{
    if (fd >= 0) {
        get_ops()->close(fd);
    }
}

bool nbd_kernel_configure(int fd, int sock_fd, uint64_t size, uint32_t block_size,
                          uint16_t nbd_flags, GError **errp)
{
    g_return_val_if_fail(errp == NULL || *errp == NULL, false);

    if (block_size == 0) {
        block_size = NBD_KERNEL_DEFAULT_BLOCK_SIZE;
    }
    if (block_size < NBD_KERNEL_DEFAULT_BLOCK_SIZE ||
        block_size > NBD_KERNEL_MAX_BLOCK_SIZE ||
        (block_size & (block_size - 1)) != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid NBD block size %" G_GUINT32_FORMAT
                    ": must be a power of two from %u to %u",
                    block_size, NBD_KERNEL_DEFAULT_BLOCK_SIZE,
                    NBD_KERNEL_MAX_BLOCK_SIZE);
        return false;
    }
    if (size % block_size != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "NBD export size %" G_GUINT64_FORMAT
                    " is not a multiple of the block size %" G_GUINT32_FORMAT,
                    size, block_size);
        return false;
    }
    uint64_t blocks = size / block_size;
    if (blocks > ULONG_MAX) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "NBD export size %" G_GUINT64_FORMAT
                    " is too large for this kernel", size);
        return false;
    }
    if (sock_fd < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid NBD socket fd %d", sock_fd);
        return false;
    }

    const NBDKernelOps *ops = get_ops();
    int err;

    err = do_ioctl(ops, fd, NBD_SET_BLKSIZE, block_size);
    if (err) {
        set_ioctl_error(errp, "NBD_SET_BLKSIZE", err);
        return false;
    }
    err = do_ioctl(ops, fd, NBD_SET_SIZE_BLOCKS, (unsigned long)blocks);
    if (err) {
        set_ioctl_error(errp, "NBD_SET_SIZE_BLOCKS", err);
        return false;
    }
    err = do_ioctl(ops, fd, NBD_SET_FLAGS, nbd_flags);
    if (err == ENOTTY) {
        /* Kernels before NBD_SET_FLAGS: only read-only can be conveyed. */
        if (nbd_flags & NBD_FLAG_READ_ONLY) {
            int read_only = 1;
            err = do_ioctl(ops, fd, BLKROSET, (unsigned long)&read_only);
            if (err) {
                set_ioctl_error(errp, "BLKROSET", err);
                return false;
            }
        }
    } else if (err) {
        set_ioctl_error(errp, "NBD_SET_FLAGS", err);
        return false;
    }
    err = do_ioctl(ops, fd, NBD_CLEAR_SOCK, 0);
    if (err) {
        set_ioctl_error(errp, "NBD_CLEAR_SOCK", err);
        return false;
    }
    err = do_ioctl(ops, fd, NBD_SET_SOCK, (unsigned long)sock_fd);
    if (err) {
        set_ioctl_error(errp, "NBD_SET_SOCK", err);
        return false;
    }
    return true;
}

bool nbd_kernel_serve(int fd, GError **errp)
{
    g_return_val_if_fail(errp == NULL || *errp == NULL, false);

    const NBDKernelOps *ops = get_ops();
    int err = do_ioctl(ops, fd, NBD_DO_IT, 0);
    if (err == EPIPE) {
        /* What NBD_DO_IT returns after a requested NBD_DISCONNECT. */
        err = 0;
    }
    /* Best effort: the device is going away either way. */
    do_ioctl(ops, fd, NBD_CLEAR_QUE, 0);
    do_ioctl(ops, fd, NBD_CLEAR_SOCK, 0);
    if (err) {
        set_ioctl_error(errp, "NBD_DO_IT", err);
        return false;
    }
    return true;
}

bool nbd_kernel_disconnect(int fd, GError **errp)
{
    g_return_val_if_fail(errp == NULL || *errp == NULL, false);

    static const struct {
        unsigned long req;
        const char *name;
    } steps[] = {
        { NBD_CLEAR_QUE, "NBD_CLEAR_QUE" },
        { NBD_DISCONNECT, "NBD_DISCONNECT" },
        { NBD_CLEAR_SOCK, "NBD_CLEAR_SOCK" },
    };
    const NBDKernelOps *ops = get_ops();
    bool ok = true;

    for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
        int err = do_ioctl(ops, fd, steps[i].req, 0);
        if (err && ok) {
            set_ioctl_error(errp, steps[i].name, err);
            ok = false;
        }
    }
    return ok;
}

/* The seed API's names, kept for embedders that use them. */
bool nbd_init(int fd, int sock_fd, uint64_t size, uint32_t block_size,
              uint16_t nbd_flags, GError **errp)
{
    return nbd_kernel_configure(fd, sock_fd, size, block_size, nbd_flags, errp);
}

bool nbd_client(int fd, GError **errp)
{
    return nbd_kernel_serve(fd, errp);
}

bool nbd_disconnect(int fd, GError **errp)
{
    return nbd_kernel_disconnect(fd, errp);
}
