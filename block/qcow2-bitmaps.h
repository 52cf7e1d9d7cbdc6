/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Persistent dirty bitmaps in a qcow2 image: the bitmaps extension of the
 * qcow2 specification (header extension 0x23852875, a bitmap directory,
 * one bitmap table per bitmap, bitmap data clusters), as QEMU and qemu-img
 * read and write it. The core keeps the directory it found at open; the
 * driver turns its entries into the node's dirty bitmaps and hands the
 * node's persistent bitmaps back when the node closes.
 *
 * What happens when, as QEMU does it: a writable open marks every bitmap
 * in use in the image (so a crash leaves them marked, and whoever opens the
 * image next knows their bits are stale); storing writes each bitmap's data
 * and table to new clusters, then a new directory, syncs, switches the
 * header to it, syncs, and only then frees the old clusters, so a process
 * killed at any point leaves an image that `qemu-img check` finds clean or
 * with leaked clusters only. An extension found without the autoclear bit
 * that vouches for it (a program without bitmap support wrote the image)
 * is ignored, as QEMU ignores it.
 *
 * Threads: every function does synchronous I/O through the Qcow2File, so
 * none may run on a thread that owns a GMainContext; each takes the core's
 * exclusive lock (the list functions its shared lock). Ownership: strings
 * and bitmaps returned are the caller's.
 */
#ifndef BERTH_BLOCK_QCOW2_BITMAPS_H
#define BERTH_BLOCK_QCOW2_BITMAPS_H

#include "block/qcow2-core.h"
#include "util/sparse-bitmap.h"

#define QCOW2_AUTOCLEAR_BITMAPS UINT64_C(1)

/* One bitmap of the image's directory. */
typedef struct Qcow2BitmapInfo {
    char *name;
    uint32_t granularity;
    bool in_use;            /* the flag as it is in the image now */
    bool enabled;           /* the "auto" flag: recording */
    bool stale;             /* was in use when the image was opened */
} Qcow2BitmapInfo;

void qcow2_bitmap_info_clear(Qcow2BitmapInfo *info);

/* The directory, in its order: Qcow2BitmapInfo, freed with the array. */
GArray *qcow2_bitmaps_list(Qcow2 *s);

/*
 * The bits of directory entry `index` (ceil(size / granularity) bits), or
 * NULL with errp (a corrupt table or data cluster, an I/O error).
 */
BerthBitmap *qcow2_bitmap_load(Qcow2 *s, guint index, GError **errp);

/*
 * Whether a bitmap `name` of `granularity` can be added to the n persistent
 * bitmaps named in `existing`: QEMU's constraints and texts (version 3
 * only, granularity of at least 512 bytes, the table size, the name
 * length, the directory's limits).
 */
bool qcow2_bitmaps_can_add(Qcow2 *s, const char *name, uint32_t granularity,
                           const char *const *existing, guint n, GError **errp);

/* Remove a bitmap from the image (no error if the image has none so named). */
int qcow2_bitmaps_remove(Qcow2 *s, const char *name, GError **errp);

/* A bitmap to store; bits has ceil(size / granularity) bits. */
typedef struct Qcow2BitmapStore {
    const char *name;
    uint32_t granularity;
    bool enabled;
    const BerthBitmap *bits;
} Qcow2BitmapStore;

/*
 * Write these bitmaps to the image, replacing entries of the same names
 * and clearing their in-use flag; the other entries stay as they are (the
 * stale ones keep their in-use flag).
 */
int qcow2_bitmaps_store(Qcow2 *s, const Qcow2BitmapStore *bitmaps, guint n, GError **errp);

/* --- for the core (qcow2-header.c) ---------------------------------------- */

/* The extension's payload from the header: remembered, checked at load. */
bool qcow2_bitmaps_parse_ext(Qcow2 *s, const uint8_t *data, uint32_t len, GError **errp);
/*
 * After the tables are loaded: read the directory (when the autoclear bit
 * vouches for it), and on a writable image mark every bitmap in use.
 */
bool qcow2_bitmaps_open(Qcow2 *s, GError **errp);
/* The autoclear bits the image keeps: the bitmaps bit when it has some. */
uint64_t qcow2_bitmaps_autoclear(Qcow2 *s);
void qcow2_bitmaps_free(Qcow2 *s);

#endif
