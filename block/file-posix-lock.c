/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Image locks the way QEMU's file driver takes them, so that QEMU's tools,
 * QEMU processes and other berth processes see one another: open file
 * description (OFD) read locks on single bytes of the image, byte 100 + i
 * while the node holds permission bit i and byte 200 + i while it does not
 * share bit i. Another process may take a permission only if no one locks
 * the matching "unshared" byte, and may refuse to share one only if no one
 * locks the matching "held" byte; a lock test (F_OFD_GETLK) for a write
 * lock on the byte tells. OFD locks of one open file description never
 * conflict with each other, so two nodes of one berth process on the same
 * image do see each other, as two QEMU processes would.
 */
#include "block/file-posix-int.h"

#include <errno.h>
#include <fcntl.h>

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define LOCK_BITS 4

static const char *const perm_names[LOCK_BITS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, off_t byte, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 if another open file description locks the byte, 0 if not, or -errno. */
static int byte_locked_elsewhere(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

static int apply_bytes(int fd, uint32_t perm, uint32_t unshared)
{
    for (int i = 0; i < LOCK_BITS; i++) {
        int r = lock_byte(fd, LOCK_PERM_BASE + i, perm & (1u << i) ? F_RDLCK : F_UNLCK);
        if (r == 0) {
            r = lock_byte(fd, LOCK_SHARED_BASE + i,
                          unshared & (1u << i) ? F_RDLCK : F_UNLCK);
        }
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static bool check_bytes(FileState *s, uint32_t perm, uint32_t unshared, GError **errp)
{
    for (int i = 0; i < LOCK_BITS; i++) {
        if (perm & (1u << i)) {
            int r = byte_locked_elsewhere(s->fd, LOCK_SHARED_BASE + i);
            if (r != 0) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                            r > 0 ? "Failed to get \"%s\" lock" : "Failed to check \"%s\" lock",
                            perm_names[i]);
                return false;
            }
        }
        if (unshared & (1u << i)) {
            int r = byte_locked_elsewhere(s->fd, LOCK_PERM_BASE + i);
            if (r != 0) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                            r > 0 ? "Failed to get shared \"%s\" lock"
                                  : "Failed to check shared \"%s\" lock",
                            perm_names[i]);
                return false;
            }
        }
    }
    return true;
}

bool bdrv_file_lock_probe(FileState *s, bool required, GError **errp)
{
    /* Unlocking a byte we never locked is how we ask whether OFD locks work. */
    int r = lock_byte(s->fd, LOCK_PERM_BASE, F_UNLCK);

    if (r == 0) {
        s->locking = true;
        return true;
    }
    s->locking = false;
    if (required) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot use locking=on on '%s': OFD locks are not supported: %s",
                    s->filename, g_strerror(-r));
        return false;
    }
    return true;
}

bool bdrv_file_lock_set(FileState *s, uint32_t perm, uint32_t unshared, GError **errp)
{
    int r;

    if (!s->locking) {
        return true;
    }
    /* Take the union of old and new first, then check, then settle on the
     * new set: two processes racing for the same bytes both fail rather
     * than both succeed. */
    r = apply_bytes(s->fd, perm | s->lock_perm, unshared | s->lock_unshared);
    if (r == 0 && check_bytes(s, perm, unshared, errp)) {
        r = apply_bytes(s->fd, perm, unshared);
        if (r == 0) {
            s->lock_perm = perm;
            s->lock_unshared = unshared;
            return true;
        }
    }
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "Failed to lock byte %d of '%s': %s", LOCK_PERM_BASE, s->filename,
                    g_strerror(-r));
    }
    apply_bytes(s->fd, s->lock_perm, s->lock_unshared);
    return false;
}
