/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private state of the qcow2 core, shared by its files (header, cache, L2,
 * refcounts, read, write). On-disk tables are kept big-endian in the caches
 * exactly as read; metadata is written through at once, in an order that
 * leaves the image consistent whenever the process dies: refcounts before
 * the tables that use them, data before the L2 entry that points at it, an
 * L2 table before the L1 entry, and entries cleared before the clusters they
 * pointed at are freed (a crash leaks clusters at worst). Clusters are
 * counted a few MiB ahead and synced once for the lot, so a refcount is on
 * disk before any table that uses it even if the host loses power; new
 * refcount blocks and L2 tables are synced before what points at them.
 *
 * Locking: `lock` is shared by reads and by writes that touch no metadata,
 * and taken alone by anything that changes metadata. The L2 cache is also
 * used under the shared lock, so it has its own mutex; the refcount cache
 * is only used under the exclusive lock.
 */
#ifndef BERTH_BLOCK_QCOW2_INT_H
#define BERTH_BLOCK_QCOW2_INT_H

#include "block/qcow2-core.h"
#include "util/tsan.h"

#include <errno.h>
#include <string.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (UINT64_C(32) << 20)         /* as QEMU */
#define QCOW2_MAX_REFTABLE_BYTES (UINT64_C(8) << 20)    /* as QEMU */
#define QCOW2_MAX_L2_CACHE_DEFAULT (UINT64_C(32) << 20)
#define QCOW2_MAX_L2_CACHE (UINT64_C(1) << 30)

#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO UINT64_C(1)
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1E_RESERVED UINT64_C(0x7f000000000001ff)
#define QCOW2_L2E_RESERVED UINT64_C(0x3f000000000001fe)

#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)

/* Header offsets of the fields the core rewrites. */
#define QCOW2_HDR_REFTABLE_OFFSET 48
#define QCOW2_HDR_AUTOCLEAR 88

typedef struct Qcow2CacheSlot {
    uint64_t offset;        /* of the table in the file; 0: empty */
    uint64_t last_used;
    uint8_t *table;
} Qcow2CacheSlot;

typedef struct Qcow2Cache {
    size_t table_size;
    guint nslots;
    Qcow2CacheSlot *slots;
    GHashTable *index;      /* offset -> slot index + 1 */
    uint64_t tick;
} Qcow2Cache;

typedef enum {
    QCOW2_CL_UNALLOCATED,
    QCOW2_CL_ZERO_PLAIN,    /* zero flag, no cluster */
    QCOW2_CL_ZERO_ALLOC,    /* zero flag on an allocated cluster */
    QCOW2_CL_NORMAL,
    QCOW2_CL_COMPRESSED,
} Qcow2ClusterType;

struct Qcow2 {
    Qcow2File file;
    Qcow2File backing;
    bool has_backing;
    bool writable;

    int version;
    uint32_t cluster_bits;
    uint32_t cluster_size;
    uint64_t size;
    uint32_t l2_entries;            /* per L2 table */
    uint32_t refblock_entries;      /* per refcount block (16-bit refcounts) */
    uint32_t header_length;
    uint64_t incompatible, compatible, autoclear;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;      /* the snapshot table (qcow2-snapshot.c) */
    char *backing_file;
    char *backing_format;

    /* Compressed cluster descriptors. */
    uint32_t csize_shift;
    uint64_t csize_mask;
    uint64_t coffset_mask;

    uint64_t l1_offset;
    uint32_t l1_size;
    uint64_t *l1;                   /* big-endian, as on disk */

    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t reftable_entries;
    uint64_t *reftable;             /* big-endian */

    GRWLock lock;
    GMutex gate;                    /* see qcow2_lock_shared() */
    gint writers_waiting;           /* atomic */
    GMutex cache_lock;
    Qcow2Cache l2_cache;
    Qcow2Cache rb_cache;
    uint64_t free_hint;             /* cluster index where a free search starts */
    /* Clusters counted (refcount 1, synced) but not yet handed out. */
    uint64_t pool_start, pool_end;

    /*
     * Direct reads and writes (qcow2_direct_*_begin) run without the lock,
     * so a cluster they may be using is not freed while any is in flight: its
     * refcount drop waits in `deferred` (pairs of offset, length) until
     * none is, and past a bound new direct reads are turned away.
     */
    gint direct_reads;              /* atomic */
    gint direct_disabled;           /* atomic */
    GArray *deferred;               /* uint64_t; exclusive lock */

    struct Qcow2BitmapDir *bitmaps; /* qcow2-bitmaps.c; NULL: no extension */
};

/* refcount.c: frees put off while direct reads ran (exclusive lock). */
int qcow2_free_deferred(Qcow2 *s, GError **errp);

/* cache.c */
void qcow2_cache_init(Qcow2Cache *c, size_t table_size, guint nslots);
void qcow2_cache_clear(Qcow2Cache *c);
/* The cached table at offset, read on a miss; NULL with errp on failure. */
uint8_t *qcow2_cache_get(Qcow2 *s, Qcow2Cache *c, uint64_t offset, GError **errp);
/* A slot for a table the caller fills entirely (a new table). */
uint8_t *qcow2_cache_get_empty(Qcow2Cache *c, uint64_t offset);
void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset);
/* The cached table at offset, or NULL: never reads. */
uint8_t *qcow2_cache_peek(Qcow2Cache *c, uint64_t offset);

/* l2.c: guest cluster -> L2 entry; the lock (either mode) is held. */
int qcow2_l2_lookup(Qcow2 *s, uint64_t guest_cluster, uint64_t *entry, GError **errp);
Qcow2ClusterType qcow2_l2_type(Qcow2 *s, uint64_t entry);
/* Checks a data/compressed entry against the file; -EIO with errp if bad. */
int qcow2_l2_check_entry(Qcow2 *s, uint64_t entry, GError **errp);
/* Exclusive lock: set `n` entries of one L2 table from guest_cluster,
 * allocating (or copying, when shared) the table first. */
int qcow2_l2_set(Qcow2 *s, uint64_t guest_cluster, const uint64_t *entries, guint n,
                 GError **errp);
/* Compressed entry -> host offset and byte length. */
void qcow2_compressed_range(Qcow2 *s, uint64_t entry, uint64_t *offset, uint64_t *len);

/* refcount.c: exclusive lock held. */
int qcow2_refcount_get(Qcow2 *s, uint64_t cluster, uint16_t *refcount, GError **errp);
/* n contiguous free clusters with refcount 1; the host offset or -errno. */
int64_t qcow2_alloc_clusters(Qcow2 *s, uint64_t n, GError **errp);
/* Give back the clusters reserved but not used (at close). */
int qcow2_release_pool(Qcow2 *s, GError **errp);
/* Drop one reference from every cluster in [offset, offset + len). */
int qcow2_free_range(Qcow2 *s, uint64_t offset, uint64_t len, GError **errp);
/* Free what an L2 entry owned (normal or compressed). */
int qcow2_free_entry(Qcow2 *s, uint64_t entry, GError **errp);

/* header.c */
/* Does [offset, offset+len) hit the header, the L1 table or the refcount table? */
bool qcow2_overlaps_metadata(Qcow2 *s, uint64_t offset, uint64_t len);

/* read.c: the guest data of one cluster (for copy-on-write), lock held. */
int qcow2_read_cluster(Qcow2 *s, uint64_t guest_cluster, uint64_t entry, uint8_t *buf,
                       GError **errp);

/* I/O helpers with messages. */
int qcow2_pread(Qcow2 *s, uint64_t offset, void *buf, size_t len, GError **errp);
int qcow2_pwrite(Qcow2 *s, uint64_t offset, const void *buf, size_t len, GError **errp);
int qcow2_sync(Qcow2 *s, GError **errp);

/*
 * The metadata lock. GRWLock lets readers in while a writer waits, so a
 * steady stream of reads could keep an allocating write out for ever: a
 * writer holds the gate while it waits, and readers that come after it
 * queue at the gate (readers take no mutex while no writer waits).
 */
static inline void qcow2_lock_shared(Qcow2 *s)
{
    if (g_atomic_int_get(&s->writers_waiting)) {
        berth_mutex_lock(&s->gate);
        berth_mutex_unlock(&s->gate);
    }
    g_rw_lock_reader_lock(&s->lock);
}

static inline void qcow2_unlock_shared(Qcow2 *s)
{
    g_rw_lock_reader_unlock(&s->lock);
}

static inline void qcow2_lock_exclusive(Qcow2 *s)
{
    g_atomic_int_inc(&s->writers_waiting);
    berth_mutex_lock(&s->gate);
    g_rw_lock_writer_lock(&s->lock);
    berth_mutex_unlock(&s->gate);
    g_atomic_int_dec_and_test(&s->writers_waiting);
}

static inline void qcow2_unlock_exclusive(Qcow2 *s)
{
    g_rw_lock_writer_unlock(&s->lock);
}

static inline uint64_t qcow2_be64(uint64_t v) { return GUINT64_FROM_BE(v); }

/* Big-endian fields of on-disk structures (headers, snapshot table). */
static inline uint16_t qcow2_be16_at(const uint8_t *p) { return (uint16_t) (p[0] << 8 | p[1]); }

static inline uint32_t qcow2_be32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_BE(v);
}

static inline uint64_t qcow2_be64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_BE(v);
}

#endif
