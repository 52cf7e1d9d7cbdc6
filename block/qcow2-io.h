/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The synchronous byte-level I/O the qcow2 core is written against: the
 * image file (the node's "file" child) and the backing device are each one
 * Qcow2File. The core never knows whether it sits on a plain fd (unit tests),
 * a child node done synchronously on a worker thread (the driver), or another
 * qcow2 image (a backing chain). Every callback returns 0 or -errno; reads of
 * a backing device past its end are the core's business, not the callee's.
 */
#ifndef BERTH_BLOCK_QCOW2_IO_H
#define BERTH_BLOCK_QCOW2_IO_H

#include <stddef.h>
#include <stdint.h>

typedef struct Qcow2File {
    void *opaque;
    int (*pread)(void *opaque, uint64_t offset, void *buf, size_t len);
    int (*pwrite)(void *opaque, uint64_t offset, const void *buf, size_t len);
    int (*flush)(void *opaque);
    int64_t (*length)(void *opaque);                  /* bytes or -errno */
    int (*truncate)(void *opaque, uint64_t length);   /* may be NULL */
} Qcow2File;

#endif
