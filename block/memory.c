/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The memory driver: berth's sparse RAM disk. Data lives in 4 KiB pages
 * allocated on first write and found through a radix tree of 512-way nodes,
 * so a disk of several TiB (up to QEMU's 8 EiB limit) costs nothing until it
 * is written, empty subtrees are skipped when looking for data, and freeing
 * pages (discard, write-zeroes with MAY_UNMAP) gives the memory back. Reads
 * of pages never written see zeroes and block status is exact at page
 * granularity; a read whose caller allows it leaves holes unfilled and
 * reports them (bdrv_aio_preadv_extents). One reader-writer lock per disk makes it coherent for
 * multi-conn: reads and block status share it, anything that changes the
 * disk (write, zero, discard) holds it alone. NBD orders nothing between
 * overlapping requests in flight, but two threads copying into the same
 * bytes at once is still a data race in C (and a read could see half of a
 * write), so writes to pages that exist are exclusive too. Requests run
 * inline on the submitting thread; only the callback is deferred.
 */
#include "block/block-int.h"

#include <errno.h>
#include <string.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1u << PAGE_SHIFT)
#define FANOUT_SHIFT 9
#define FANOUT (1u << FANOUT_SHIFT)
/* How far one block-status request looks (its answer may end earlier). */
#define STATUS_SCAN_LIMIT (UINT64_C(4) << 30)

typedef struct MemNode {
    guint count;                 /* non-NULL slots */
    gpointer slot[FANOUT];       /* children, or pages at level 0 */
} MemNode;

typedef struct MemoryState {
    GRWLock lock;
    MemNode *root;
    guint levels;                /* tree height; level 0 holds pages */
    uint64_t npages;
} MemoryState;

/* berth's own driver: the disk's size is all there is to say. */
typedef struct {
    uint64_t size;
} MemoryOptions;

static const ArgSpec memory_members[] = {
    ARG_REQUIRED("size", ARG_SIZE, MemoryOptions, size),
    ARG_TABLE_END
};

static guint slot_index(uint64_t pg, guint level)
{
    return (pg >> (FANOUT_SHIFT * level)) & (FANOUT - 1);
}

static char *page_lookup(MemoryState *s, uint64_t pg)
{
    MemNode *node = s->root;

    for (guint level = s->levels - 1; node; level--) {
        gpointer child = node->slot[slot_index(pg, level)];
        if (level == 0) {
            return child;
        }
        node = child;
    }
    return NULL;
}

/* Needs the write lock. NULL when out of memory. */
static char *page_get(MemoryState *s, uint64_t pg)
{
    MemNode **link = &s->root;

    for (guint level = s->levels - 1;; level--) {
        if (!*link) {
            *link = g_try_new0(MemNode, 1);
            if (!*link) {
                return NULL;
            }
        }
        MemNode *node = *link;
        gpointer *slot = &node->slot[slot_index(pg, level)];
        if (level == 0) {
            if (!*slot) {
                *slot = g_try_malloc0(PAGE_SIZE);
                if (!*slot) {
                    return NULL;
                }
                node->count++;
            }
            return *slot;
        }
        if (!*slot) {
            MemNode *child = g_try_new0(MemNode, 1);
            if (!child) {
                return NULL;
            }
            *slot = child;
            node->count++;
        }
        link = (MemNode **) slot;
    }
}

/* Frees page pg and any node left empty; returns true if node became empty. */
static bool page_free_in(MemNode *node, guint level, uint64_t pg)
{
    guint i = slot_index(pg, level);
    gpointer child = node->slot[i];

    if (!child) {
        return false;
    }
    if (level > 0 && !page_free_in(child, level - 1, pg)) {
        return false;
    }
    g_free(child);
    node->slot[i] = NULL;
    return --node->count == 0;
}

static void page_free(MemoryState *s, uint64_t pg)
{
    if (s->root && page_free_in(s->root, s->levels - 1, pg)) {
        g_free(s->root);
        s->root = NULL;
    }
}

static void tree_free(MemNode *node, guint level)
{
    for (guint i = 0; node && i < FANOUT; i++) {
        if (node->slot[i]) {
            if (level > 0) {
                tree_free(node->slot[i], level - 1);
            } else {
                g_free(node->slot[i]);
            }
        }
    }
    g_free(node);
}

/*
 * First page in [pg, end) whose allocation is `want`, or end; node covers
 * the pages from base. Empty subtrees are skipped in one step.
 */
static uint64_t find_in(MemNode *node, guint level, uint64_t base, uint64_t pg,
                        uint64_t end, bool want)
{
    uint64_t span = UINT64_C(1) << (FANOUT_SHIFT * level);

    for (guint i = (pg - base) / span; i < FANOUT; i++) {
        uint64_t sbase = base + i * span;
        uint64_t start = MAX(pg, sbase);
        gpointer child = node->slot[i];

        if (sbase >= end) {
            break;
        }
        if (!child || level == 0) {
            if (!child != want) {
                return start;
            }
            continue;
        }
        uint64_t found = find_in(child, level - 1, sbase, start, MIN(end, sbase + span), want);
        if (found < MIN(end, sbase + span)) {
            return found;
        }
    }
    return end;
}

static uint64_t find_page(MemoryState *s, uint64_t pg, uint64_t end, bool want_allocated)
{
    if (!s->root) {
        return want_allocated ? end : pg;
    }
    return find_in(s->root, s->levels - 1, 0, pg, end, want_allocated);
}

static bool memory_open(BlockDriverState *bs, const void *opts, GError **errp)
{
    MemoryState *s = g_new0(MemoryState, 1);
    uint64_t size = ((const MemoryOptions *) opts)->size;

    g_rw_lock_init(&s->lock);
    s->npages = size / PAGE_SIZE + (size % PAGE_SIZE != 0);
    s->levels = 1;
    while (s->levels * FANOUT_SHIFT < 64 &&
           (UINT64_C(1) << (s->levels * FANOUT_SHIFT)) < s->npages) {
        s->levels++;
    }
    bs->opaque = s;
    bs->size = size;
    bdrv_caps_own(bs, false);
    return true;
}

static void memory_close(BlockDriverState *bs)
{
    MemoryState *s = bs->opaque;

    tree_free(s->root, s->levels - 1);
    g_rw_lock_clear(&s->lock);
    g_free(s);
}

/*
 * A read whose caller takes reported holes as zeroes unseen
 * (bdrv_aio_preadv_extents): with the lock held, plan the runs of written
 * and unwritten pages; if they fit in the caller's extents, copy the
 * written ones, leave the others unfilled and report each run. A large
 * read of a sparse disk then costs neither the zeroing of its buffer nor,
 * for a fresh buffer, the page faults that zeroing takes. False (nothing
 * done) when there are more runs than extents.
 */
static bool memory_read_sparse(MemoryState *s, BdrvRequest *req)
{
    BdrvExtent runs[64];
    guint n = 0, max = MIN(req->max_extents, G_N_ELEMENTS(runs));
    uint64_t pos = req->offset, end = req->offset + req->bytes;
    uint64_t end_pg = (end + PAGE_SIZE - 1) >> PAGE_SHIFT;

    while (pos < end) {
        uint64_t pg = pos >> PAGE_SHIFT;
        bool allocated = page_lookup(s, pg) != NULL;
        uint64_t next = MIN(find_page(s, pg, end_pg, !allocated) << PAGE_SHIFT, end);
        if (n == max) {
            return false;
        }
        runs[n++] = (BdrvExtent) { next - pos, allocated ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO };
        pos = next;
    }
    BerthIovCursor c;
    berth_iov_cursor_init(&c, req->iov, req->niov);
    pos = req->offset;
    for (guint i = 0; i < n; i++) {
        uint64_t run_end = pos + runs[i].length;
        if (runs[i].status == BDRV_BLOCK_ZERO) {
            berth_iov_cursor_skip(&c, runs[i].length);
            pos = run_end;
        }
        while (pos < run_end) {
            size_t in_page = pos & (PAGE_SIZE - 1);
            size_t len = MIN(PAGE_SIZE - in_page, run_end - pos);
            berth_iov_cursor_from_buf(&c, page_lookup(s, pos >> PAGE_SHIFT) + in_page, len);
            pos += len;
        }
        /* Neighbouring runs differ, and there are no more than max of them. */
        bool added = bdrv_request_add_extent(req, runs[i].length, runs[i].status);
        g_assert(added);
    }
    return true;
}

static void memory_read(MemoryState *s, BdrvRequest *req)
{
    BerthIovCursor c;
    uint64_t pos = req->offset, end = req->offset + req->bytes;

    berth_iov_cursor_init(&c, req->iov, req->niov);
    g_rw_lock_reader_lock(&s->lock);
    if (req->zero_extents && memory_read_sparse(s, req)) {
        g_rw_lock_reader_unlock(&s->lock);
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    while (pos < end) {
        uint64_t pg = pos >> PAGE_SHIFT;
        size_t in_page = pos & (PAGE_SIZE - 1);
        size_t n = MIN(PAGE_SIZE - in_page, end - pos);
        const char *page = page_lookup(s, pg);

        if (page) {
            berth_iov_cursor_from_buf(&c, page + in_page, n);
        } else {
            berth_iov_cursor_memset(&c, 0, n);
        }
        pos += n;
    }
    g_rw_lock_reader_unlock(&s->lock);
    bdrv_request_complete(req, 0, NULL);
}

static void memory_write(MemoryState *s, BdrvRequest *req)
{
    BerthIovCursor c;
    uint64_t pos = req->offset, end = req->offset + req->bytes;

    berth_iov_cursor_init(&c, req->iov, req->niov);
    g_rw_lock_writer_lock(&s->lock);
    while (pos < end) {
        size_t in_page = pos & (PAGE_SIZE - 1);
        size_t n = MIN(PAGE_SIZE - in_page, end - pos);
        char *page = page_get(s, pos >> PAGE_SHIFT);

        if (!page) {
            g_rw_lock_writer_unlock(&s->lock);
            bdrv_request_fail(req, ENOMEM,
                              "Out of memory writing at offset %" G_GUINT64_FORMAT
                              " of memory node '%s'", pos, req->bs->node_name);
            return;
        }
        berth_iov_cursor_to_buf(&c, page + in_page, n);
        pos += n;
    }
    g_rw_lock_writer_unlock(&s->lock);
    bdrv_request_complete(req, 0, NULL);
}

/* Discard and write-zeroes: whole pages go (unmap) or are cleared, partial
 * ones are cleared; pages never written stay unallocated either way. */
static void memory_zero(MemoryState *s, BdrvRequest *req, bool unmap)
{
    uint64_t pos = req->offset, end = req->offset + req->bytes;

    g_rw_lock_writer_lock(&s->lock);
    while (pos < end) {
        uint64_t pg = pos >> PAGE_SHIFT;
        size_t in_page = pos & (PAGE_SIZE - 1);
        size_t n = MIN(PAGE_SIZE - in_page, end - pos);
        char *page;

        /* Jump over holes, which can span terabytes. */
        uint64_t next = find_page(s, pg, (end + PAGE_SIZE - 1) >> PAGE_SHIFT, true);
        if (next > pg) {
            pos = MIN(next << PAGE_SHIFT, end);
            continue;
        }
        page = page_lookup(s, pg);
        if (unmap && n == PAGE_SIZE) {
            page_free(s, pg);
        } else {
            memset(page + in_page, 0, n);
        }
        pos += n;
    }
    g_rw_lock_writer_unlock(&s->lock);
    bdrv_request_complete(req, 0, NULL);
}

static void memory_block_status(MemoryState *s, BdrvRequest *req)
{
    uint64_t pos = req->offset;
    uint64_t end = req->offset + MIN(req->bytes, STATUS_SCAN_LIMIT);

    g_rw_lock_reader_lock(&s->lock);
    while (pos < end) {
        uint64_t pg = pos >> PAGE_SHIFT;
        uint64_t end_pg = (end + PAGE_SIZE - 1) >> PAGE_SHIFT;
        bool allocated = page_lookup(s, pg) != NULL;
        uint64_t next_pg = find_page(s, pg, end_pg, !allocated);
        uint64_t next = MIN(next_pg << PAGE_SHIFT, end);

        if (!bdrv_request_add_extent(req, next - pos,
                                     allocated ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO)) {
            break;
        }
        pos = next;
    }
    g_rw_lock_reader_unlock(&s->lock);
    bdrv_request_complete(req, 0, NULL);
}

static void memory_submit(BdrvRequest *req)
{
    MemoryState *s = req->bs->opaque;

    switch (req->op) {
    case BDRV_OP_READ:
        memory_read(s, req);
        break;
    case BDRV_OP_WRITE:
        memory_write(s, req);
        break;
    case BDRV_OP_DISCARD:
        memory_zero(s, req, true);
        break;
    case BDRV_OP_WRITE_ZEROES:
        memory_zero(s, req, req->flags & BDRV_REQ_MAY_UNMAP);
        break;
    case BDRV_OP_BLOCK_STATUS:
        memory_block_status(s, req);
        break;
    case BDRV_OP_FLUSH:
    case BDRV_OP_CACHE:
    default:
        /* RAM needs no flushing and is always cached. */
        bdrv_request_complete(req, 0, NULL);
        break;
    }
}

static char *memory_describe(BlockDriverState *bs, const void *opts)
{
    return g_strdup_printf("memory:%" G_GUINT64_FORMAT, ((const MemoryOptions *) opts)->size);
}

const BlockDriver bdrv_memory = {
    .name = "memory",
    .options = memory_members,
    .options_size = sizeof(MemoryOptions),
    .open = memory_open,
    .close = memory_close,
    .submit = memory_submit,
    .describe = memory_describe,
};
