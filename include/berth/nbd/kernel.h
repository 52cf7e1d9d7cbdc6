/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Attaching an NBD connection to the Linux kernel's NBD driver (/dev/nbdX),
 * using the classic ioctl interface of <linux/nbd.h>:
 *
 *   fd = nbd_kernel_open("/dev/nbd0", &err);        open the device
 *   nbd_kernel_configure(fd, sock, size, 0, flags, &err);  hand it the socket
 *   nbd_kernel_serve(fd, &err);                     serve until disconnect
 *
 * and, from elsewhere (another thread, usually on its own fd of the same
 * device), nbd_kernel_disconnect() to make nbd_kernel_serve() return.
 * nbd_init(), nbd_client() and nbd_disconnect(), the seed API's names, are
 * the same three calls under their old names.  The socket must be
 * connected and already past the NBD handshake (transmission phase); size and
 * transmission flags are what the handshake reported.
 *
 * Ownership: nothing here takes ownership of a file descriptor.  The caller
 * keeps `fd` and `sock_fd`; the fd returned by nbd_kernel_open() belongs to
 * the caller, who closes it with nbd_kernel_close() (which goes through the
 * seam below).  The kernel holds its own reference to the socket from
 * NBD_SET_SOCK until NBD_CLEAR_SOCK, so the caller may close its copy after
 * nbd_kernel_configure() succeeds.  Errors are G_IO_ERROR GErrors the caller frees.
 *
 * Threads: every function is reentrant.  nbd_kernel_serve() blocks in NBD_DO_IT
 * for the life of the connection, so call it from a thread dedicated to it,
 * never from a main loop.  nbd_kernel_disconnect() is meant to be called
 * concurrently with it, from another thread.
 *
 * Seam: all system calls go through an NBDKernelOps table so that tests can
 * record the ioctl sequence without a kernel.  nbd_kernel_set_ops() swaps the
 * table atomically; the table is borrowed and must stay valid (and unchanged)
 * until it is replaced.  Set it before starting any operation: an operation
 * already running may keep using the previous table until it returns.
 */
#ifndef BERTH_NBD_KERNEL_H
#define BERTH_NBD_KERNEL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The system calls used by this module.  Each behaves like its syscall:
 * returns -1 (open) or a negative value (ioctl, close) with errno set on
 * failure.  `ioctl`'s `arg` is the value or the pointer the request takes. */
typedef struct NBDKernelOps {
    int (*open)(const char *path, int flags);
    int (*ioctl)(int fd, unsigned long req, unsigned long arg);
    int (*close)(int fd);
} NBDKernelOps;

/* Use `ops` (borrowed) for every later call; NULL restores the real
 * open(2)/ioctl(2)/close(2). */
void nbd_kernel_set_ops(const NBDKernelOps *ops);

/* Opens `dev` (e.g. "/dev/nbd0") with O_RDWR.  Returns the fd, or -1 with
 * *errp set; a missing device adds a hint to load the nbd module. */
int nbd_kernel_open(const char *dev, GError **errp);

/* Closes an fd from nbd_kernel_open() through the seam; errors are
 * ignored (like close(2), the fd is gone either way). */
void nbd_kernel_close(int fd);

/* Configures device `fd` for an export of `size` bytes served over the
 * connected socket `sock_fd`: NBD_SET_BLKSIZE, NBD_SET_SIZE_BLOCKS,
 * NBD_SET_FLAGS (on kernels without it, ENOTTY, read-only is set with
 * BLKROSET instead when NBD_FLAG_READ_ONLY is in `nbd_flags`),
 * NBD_CLEAR_SOCK, NBD_SET_SOCK.  `block_size` 0 means 512; otherwise it must
 * be a power of two from 512 to 4096, and `size` a multiple of it; both are
 * checked before any ioctl.  On failure *errp names the failing ioctl; the
 * device is then left unconfigured (no socket attached). */
bool nbd_kernel_configure(int fd, int sock_fd, uint64_t size, uint32_t block_size,
                          uint16_t nbd_flags, GError **errp);

/* Runs the connection: NBD_DO_IT, which blocks until a disconnect or a
 * socket error, then NBD_CLEAR_QUE and NBD_CLEAR_SOCK (best effort, their
 * failures are ignored).  DO_IT returning EPIPE is how the kernel reports a
 * requested disconnect, so it counts as success; any other failure sets
 * *errp. */
bool nbd_kernel_serve(int fd, GError **errp);

/* Asks the kernel to end the connection on device `fd`: NBD_CLEAR_QUE,
 * NBD_DISCONNECT, NBD_CLEAR_SOCK.  All three are always tried; the first
 * failure, if any, is reported in *errp. */
bool nbd_kernel_disconnect(int fd, GError **errp);

/* The seed API's names for nbd_kernel_configure(), nbd_kernel_serve() and
 * nbd_kernel_disconnect(): the same calls, kept for existing embedders. */
bool nbd_init(int fd, int sock_fd, uint64_t size, uint32_t block_size,
              uint16_t nbd_flags, GError **errp);
bool nbd_client(int fd, GError **errp);
bool nbd_disconnect(int fd, GError **errp);

G_END_DECLS

#endif /* BERTH_NBD_KERNEL_H */
