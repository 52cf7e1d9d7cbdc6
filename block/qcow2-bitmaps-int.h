/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to the bitmaps extension's two files: qcow2-bitmaps.c (parsing,
 * checking and reading the directory, tables and data) and
 * qcow2-bitmaps-store.c (writing them). The on-disk constants and QEMU's
 * limits, the directory as the core keeps it, and the helpers both use.
 * Everything here runs under the core's lock (see qcow2-bitmaps.h).
 */
#ifndef BERTH_BLOCK_QCOW2_BITMAPS_INT_H
#define BERTH_BLOCK_QCOW2_BITMAPS_INT_H

#include "block/qcow2-int.h"
#include "block/qcow2-bitmaps.h"

#define EXT_BITMAPS 0x23852875u
#define EXT_LEN 24

#define FLAG_IN_USE 1u
#define FLAG_AUTO 2u
#define TYPE_DIRTY_TRACKING 1

/* QEMU's limits. */
#define MAX_BITMAPS 65535u
#define MAX_DIR_SIZE (UINT64_C(1024) * MAX_BITMAPS)
#define MAX_NAME 1023u
#define MAX_TABLE_ENTRIES 0x8000000u
#define MAX_BITMAP_BYTES UINT64_C(0x20000000)
#define ENTRY_FIXED 24

/* Bitmap table entries: bits 9-55 are the cluster; bit 0 with no cluster
 * means all ones; the rest is reserved. */
#define TABLE_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define TABLE_ALL_ONES UINT64_C(1)
#define TABLE_RESERVED UINT64_C(0xff000000000001fe)

/* One directory entry. */
typedef struct Qcow2BmEntry {
    char *name;
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    uint32_t flags;
    uint8_t granularity_bits;
    bool stale;                 /* in use when opened */
} Qcow2BmEntry;

/* The directory the header points at (s->bitmaps). */
typedef struct Qcow2BitmapDir {
    bool ext_seen;
    uint32_t nb;
    uint64_t dir_size, dir_offset;
    GArray *entries;            /* Qcow2BmEntry, directory order; NULL: none loaded */
} Qcow2BitmapDir;

/* An errp for a malformed extension ("qcow2: bitmaps: ..."); -EINVAL. */
int qcow2_bm_fail(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* An empty array of Qcow2BmEntry that frees their names. */
GArray *qcow2_bm_entries_new(void);
/* The directory as bytes (*size of them), zero-padded to whole clusters
 * (*padded, at least one cluster). */
uint8_t *qcow2_bm_build_dir(Qcow2 *s, GArray *entries, uint64_t *size, uint64_t *padded);
/* An entry's bitmap table (big-endian, as on disk); the caller frees it. */
int qcow2_bm_read_table(Qcow2 *s, const Qcow2BmEntry *e, uint64_t **table, GError **errp);

static inline uint64_t qcow2_bm_entry_bytes(size_t name_len)
{
    return (ENTRY_FIXED + name_len + 7) & ~UINT64_C(7);
}

/* Bits of a bitmap of granularity 2^gbits over the disk. */
static inline uint64_t qcow2_bm_bits(Qcow2 *s, unsigned gbits)
{
    return MAX((s->size + (UINT64_C(1) << gbits) - 1) >> gbits, 1);
}

/* Entries of its bitmap table. */
static inline uint32_t qcow2_bm_table_entries(Qcow2 *s, unsigned gbits)
{
    uint64_t bytes = (qcow2_bm_bits(s, gbits) + 7) / 8;
    return (uint32_t) MIN((bytes + s->cluster_size - 1) / s->cluster_size, UINT32_MAX);
}

static inline void qcow2_bm_put32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, 4);
}

static inline void qcow2_bm_put64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, 8);
}

#endif
