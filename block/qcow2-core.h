/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 format core: opens an image through a Qcow2File, answers reads,
 * writes, zeroing, discards and allocation maps in guest offsets, and keeps
 * the image consistent for `qemu-img check` after every call. Every function
 * is synchronous and thread-safe: calls that only look at metadata share a
 * lock, calls that change it take it alone. The caller owns the Qcow2File
 * callbacks (and what they point at) for the life of the Qcow2.
 */
#ifndef BERTH_BLOCK_QCOW2_CORE_H
#define BERTH_BLOCK_QCOW2_CORE_H

#include "block/qcow2-io.h"

#include <gio/gio.h>
#include <stdbool.h>

typedef struct Qcow2 Qcow2;

typedef enum {
    QCOW2_MAP_UNALLOCATED,  /* falls through to the backing file (or zeroes) */
    QCOW2_MAP_ZERO,         /* a zero cluster: reads as zeroes */
    QCOW2_MAP_DATA,         /* a data cluster in this image */
    QCOW2_MAP_COMPRESSED,   /* a compressed data cluster */
} Qcow2MapType;

/*
 * Open the image in `file` (the callbacks are copied). l2_cache_bytes 0 picks
 * the default: enough for the whole disk, at most 32 MiB, as QEMU does.
 * Unsupported or corrupt images are refused with a one-line reason.
 */
Qcow2 *qcow2_open(const Qcow2File *file, bool writable, uint64_t l2_cache_bytes,
                  GError **errp);
void qcow2_close(Qcow2 *s);

/* The backing device reads fall through to (NULL: none). Before any I/O. */
void qcow2_set_backing(Qcow2 *s, const Qcow2File *backing);

uint64_t qcow2_virtual_size(Qcow2 *s);
uint32_t qcow2_cluster_size(Qcow2 *s);
int qcow2_version(Qcow2 *s);
bool qcow2_is_writable(Qcow2 *s);
/* Header flags as the image has them: the dirty and corrupt bits, and the
 * lazy refcounts feature (allowed by the image; berth never uses it, so it
 * never sets the dirty bit). */
bool qcow2_is_dirty(Qcow2 *s);
bool qcow2_is_corrupt(Qcow2 *s);
bool qcow2_has_lazy_refcounts(Qcow2 *s);

/*
 * Read an internal snapshot instead of the image's current state, as
 * QEMU's snapshot_load_tmp: the snapshot's L1 table replaces the active one
 * in memory only (nothing is written; the virtual size stays the image's).
 * The snapshot is the one whose ID is `id` and whose name is `name`; either
 * may be NULL (not both). Only on a read-only image, before any other I/O
 * is in flight. 0, or -errno with errp ("Can't find snapshot" as QEMU, or
 * what is wrong with the snapshot table). qcow2-snapshot.c.
 */
int qcow2_load_snapshot(Qcow2 *s, const char *id, const char *name, GError **errp);
/* From the header, or NULL. */
const char *qcow2_backing_file(Qcow2 *s);
const char *qcow2_backing_format(Qcow2 *s);

/* Ranges are checked by the caller: offset + len <= the virtual size. */
int qcow2_read(Qcow2 *s, uint64_t offset, void *buf, size_t len, GError **errp);
int qcow2_write(Qcow2 *s, uint64_t offset, const void *buf, size_t len, GError **errp);
int qcow2_write_zeroes(Qcow2 *s, uint64_t offset, uint64_t len, bool may_unmap,
                       GError **errp);
/* Whole clusters only; the unaligned head and tail are left alone. */
int qcow2_discard(Qcow2 *s, uint64_t offset, uint64_t len, GError **errp);
int qcow2_flush(Qcow2 *s, GError **errp);
/* A new virtual size, a multiple of 512 (block_resize): see qcow2-resize.c. */
int qcow2_resize(Qcow2 *s, uint64_t size, GError **errp);

/* The type of [offset, offset + *pnum), *pnum <= len and > 0. */
int qcow2_map(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *pnum,
              Qcow2MapType *type, GError **errp);

/*
 * A read the caller can send to the image file itself, without blocking
 * (for an event loop's thread): true when [offset, offset + len) lies in
 * data clusters contiguous in the file whose L2 tables are cached, with
 * *host where it starts; the caller reads len bytes there and then calls
 * qcow2_direct_read_done(). Until then those clusters are not reused.
 * false: use qcow2_read().
 */
bool qcow2_direct_read_begin(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *host);
/* The same for a write in place: the clusters are this image's own data
 * clusters (no copy-on-write, no metadata to change). Ends with
 * qcow2_direct_read_done() too. */
bool qcow2_direct_write_begin(Qcow2 *s, uint64_t offset, uint64_t len, uint64_t *host);
void qcow2_direct_read_done(Qcow2 *s);

/* A Qcow2File reading and writing the guest view (for backing chains). */
Qcow2File qcow2_as_file(Qcow2 *s);

#endif
