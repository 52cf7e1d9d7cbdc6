/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth block layer: nodes (BlockDriverState) and their asynchronous requests.
 *
 * A node is one driver instance (file, null-co, memory, nbd, raw, blkdebug)
 * with a unique node-name, kept in a global table from bdrv_open() until
 * bdrv_delete(). Format and filter nodes (raw, blkdebug) have children: other
 * nodes of the table, named by node-name or defined nested in their options
 * (then listed under an automatic "#block..." name and deleted with their
 * parent).
 *
 * Ownership:
 *  - bdrv_open() returns a new node holding two references: one owned by the
 *    node table (dropped by bdrv_delete()) and one returned to the caller.
 *    Anything that keeps a node (an export, a drive) takes its own reference
 *    with bdrv_get() and drops it with bdrv_put(); the last put frees it.
 *  - bdrv_delete() fails with "Node X is in use" while anyone but the table
 *    and its parents holds a reference (see bdrv_delete()); requests still in
 *    flight keep the node alive but do not count as users. A parent holds a
 *    reference on each child until it is freed.
 *  - Strings returned by getters are owned by the node and live as long as it.
 *
 * Threads:
 *  - The node table (open, find, delete) belongs to the main context's thread.
 *  - Requests may be submitted from any thread that runs a GMainContext; the
 *    completion callback runs on the thread-default GMainContext of the
 *    submitting thread (g_main_context_ref_thread_default() at submit time),
 *    and never inside the submitting call itself. Callers therefore never see
 *    re-entrancy.
 *  - Buffers passed to a request belong to the caller and must stay valid and
 *    untouched until the completion callback has run. The iovec array itself
 *    is copied at submission and may live on the caller's stack.
 *
 * Errors: every request completes with ret >= 0 on success or a negative
 * errno (-EIO, -EINVAL, -ENOSPC, -EPERM, -ENOTSUP, ...) and, on failure, a
 * GError describing it (domain G_IO_ERROR is fine); the GError is owned by the
 * block layer and only valid during the callback.
 */
#ifndef BERTH_BLOCK_BLOCK_H
#define BERTH_BLOCK_BLOCK_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <json-c/json.h>

G_BEGIN_DECLS

typedef struct BlockDriverState BlockDriverState;

/* Flags for writes and write-zeroes. */
typedef enum {
    BDRV_REQ_FUA = 1 << 0,         /* data durable before completion */
    BDRV_REQ_MAY_UNMAP = 1 << 1,   /* write-zeroes may deallocate (punch) */
    BDRV_REQ_NO_FALLBACK = 1 << 2, /* write-zeroes: -ENOTSUP if it would be slow */
    /* Reads (bdrv_aio_preadv_flags): the caller takes the range as zeroes
     * without looking at the buffer when the node's BdrvInfo.reads_zeroes
     * is set, so such a node need not fill it. Ignored by other nodes. */
    BDRV_REQ_ZEROES_UNFILLED = 1 << 3,
} BdrvRequestFlags;

/* Status of one extent in a block-status answer. */
typedef enum {
    BDRV_BLOCK_DATA = 1 << 0, /* allocated (not a hole) */
    BDRV_BLOCK_ZERO = 1 << 1, /* known to read as zeroes */
} BdrvBlockStatus;

typedef struct BdrvExtent {
    uint64_t length;
    uint32_t status; /* BdrvBlockStatus bits */
} BdrvExtent;

/* What a node can do; the NBD server advertises flags from this. */
typedef struct BdrvInfo {
    const char *node_name;
    const char *driver;        /* "file", "null-co", "memory", "nbd", "raw", ... */
    const char *filename;      /* file path, or a description; may be NULL */
    uint64_t size;             /* virtual size in bytes */
    bool read_only;
    bool can_flush;            /* flush does something useful */
    bool can_fua;              /* native FUA (else emulated by flush) */
    bool can_discard;          /* discard may free space (discard=unmap) */
    bool can_write_zeroes_fast;/* write-zeroes is efficient (no data writes) */
    bool has_block_status;     /* block status reports real holes */
    bool coherent;             /* all users see one consistent image (multi-conn) */
    uint32_t request_alignment;/* minimum I/O granularity (1, or 512/4096 for O_DIRECT) */
    /*
     * Reads may leave the caller's buffer as it was (null-co with
     * read-zeroes=off, as in QEMU): a caller that sends what it read to a
     * peer must clear the buffer first, or it leaks whatever it held.
     */
    bool read_leaves_buffer;
    /* Every read returns zeroes, whatever was written (null-co with
     * read-zeroes=on): a reader may skip the data, see
     * BDRV_REQ_ZEROES_UNFILLED. */
    bool reads_zeroes;
    /* Options as opened, for query-named-block-nodes. */
    bool cache_direct;
    bool cache_no_flush;
    const char *detect_zeroes; /* "off", "on" or "unmap" */
} BdrvInfo;

typedef void (*BdrvCompletionFunc)(gpointer opaque, int ret, const GError *err);

/* extents: up to the requested number of extents, starting at the requested
 * offset, covering at most the requested length (possibly less, but at least
 * one byte when ret >= 0 and the length was not 0). Adjacent extents differ
 * in status. NULL and 0 on failure. */
typedef void (*BdrvBlockStatusFunc)(gpointer opaque, int ret,
                                    const BdrvExtent *extents, guint n_extents,
                                    const GError *err);

/* --- node table (main thread) --- */

/*
 * Open a node from blockdev-add style options (a json-c object, as QMP gives
 * it, or from the command line's key=value parser where every scalar is a
 * string: pass keyval=true so "1G", "on", "512" are accepted as size, bool and
 * integer). Common members: driver, node-name, read-only, discard
 * (ignore|unmap), cache.direct, cache.no-flush, and QEMU's auto-read-only,
 * force-share and detect-zeroes. Unknown members, wrong types and missing
 * ones are errors with QEMU's texts. Like QEMU, the node's size is the
 * driver's rounded up to a multiple of 512 (a partial tail reads as zeroes).
 * Returns a new reference.
 */
BlockDriverState *bdrv_open(json_object *options, bool keyval, GError **errp);

BlockDriverState *bdrv_find_node(const char *node_name); /* borrowed, or NULL */

/*
 * Format probing (block/probe.c), for tools that open an image without
 * being told its format, as qemu-nbd does without -f: the name QEMU gives
 * the format whose magic starts buf (the image's first 512 bytes), e.g.
 * "qcow2", or NULL for raw. Pure.
 */
const char *bdrv_probe_format(const uint8_t *buf, size_t len);
/* Whether blockdev-add has a driver of that name. */
bool bdrv_driver_exists(const char *name);
/*
 * Mark a node as a raw image whose format was probed, before it is
 * exported: its minimum request size becomes 512 and a write to its first
 * 512 bytes must cover all of them and must not look like another format's
 * header (-EPERM), so that what is written cannot change how the image
 * probes next time. Main context, before the node has requests.
 */
void bdrv_set_probed_raw(BlockDriverState *bs);
BlockDriverState *bdrv_get(BlockDriverState *bs);        /* returns bs */
void bdrv_put(BlockDriverState *bs);

/* Remove a node from the table (blockdev-del), with its nested children.
 * Fails with QEMU's texts: "Node %s is in use" if references other than
 * the table's and its parents' exist, "Node %s is not owned by the
 * monitor" for a nested child, "Block device %s is in use" for a child of
 * another node, "Failed to find node with node-name='%s'" if there is no
 * such node. */
bool bdrv_delete(const char *node_name, GError **errp);

/* Calls fn for every node in the table, in creation order. */
void bdrv_foreach(void (*fn)(BlockDriverState *bs, gpointer opaque), gpointer opaque);

/* Drop every table reference (shutdown). */
void bdrv_delete_all(void);

void bdrv_get_info(BlockDriverState *bs, BdrvInfo *info);
const char *bdrv_get_node_name(BlockDriverState *bs);
uint64_t bdrv_getlength(BlockDriverState *bs);
bool bdrv_is_read_only(BlockDriverState *bs);

/* --- permissions and image locks (main thread) --- */

/*
 * What a user of a node does with it (perm) and what it does not let
 * others do (unshared), QEMU's permission bits. Every user that takes some
 * gives them back with the same values. The file driver mirrors the
 * node's combined permissions as QEMU's OFD byte-range locks on the image,
 * so that QEMU's tools and other berth processes see them, and refuses a
 * permission another process's locks forbid, with QEMU's texts ('Failed
 * to get "write" lock', 'Failed to get shared "resize" lock'). An NBD
 * export takes consistent-read (and write, if writable) and does not
 * share resize, as QEMU's exports do.
 */
typedef enum {
    BDRV_PERM_CONSISTENT_READ = 1 << 0,
    BDRV_PERM_WRITE = 1 << 1,
    BDRV_PERM_WRITE_UNCHANGED = 1 << 2,
    BDRV_PERM_RESIZE = 1 << 3,
} BdrvPerm;
#define BDRV_PERM_ALL 0xfu

bool bdrv_perm_take(BlockDriverState *bs, uint32_t perm, uint32_t unshared, GError **errp);
void bdrv_perm_release(BlockDriverState *bs, uint32_t perm, uint32_t unshared);

/*
 * block_resize: make the node `size` bytes long (QEMU's texts for a
 * read-only node and a driver that cannot). Takes the resize permission
 * for the duration, so another process's export of the same image makes
 * it fail. The node's length becomes size rounded up to a sector.
 */
bool bdrv_truncate(BlockDriverState *bs, uint64_t size, GError **errp);

/*
 * Read an internal snapshot instead of the node's current contents, as
 * QEMU's bdrv_snapshot_load_tmp (qemu-nbd -l): the snapshot whose ID is
 * `id` and whose name is `name`, either NULL for any (not both). Nothing
 * is written; the node keeps its size. Only on a read-only node that has
 * no request in flight (before it is exported). QEMU's texts: "Device is
 * not readonly", "Can't find snapshot" (G_IO_ERROR_NOT_FOUND), "Block
 * format 'raw' used by device '' does not support temporarily loading
 * internal snapshots". Main thread.
 */
bool bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name,
                            GError **errp);

/* --- asynchronous requests (any thread with a GMainContext) --- */

void bdrv_aio_preadv(BlockDriverState *bs, uint64_t offset,
                     const struct iovec *iov, int niov,
                     BdrvCompletionFunc cb, gpointer opaque);
/* The same with flags: BDRV_REQ_ZEROES_UNFILLED or 0. */
void bdrv_aio_preadv_flags(BlockDriverState *bs, uint64_t offset,
                           const struct iovec *iov, int niov, BdrvRequestFlags flags,
                           BdrvCompletionFunc cb, gpointer opaque);
/*
 * A read whose callback also gets the extents the node reported for what
 * it read, from offset on: at most max_extents (1..64), covering the range
 * or a first part of it; none when the node reports nothing. A node may
 * leave unfilled exactly the parts it reports as BDRV_BLOCK_ZERO (the
 * memory driver does for its holes): the caller must treat them as zeroes
 * without looking at the buffer there. Everything else is filled.
 */
void bdrv_aio_preadv_extents(BlockDriverState *bs, uint64_t offset,
                             const struct iovec *iov, int niov, guint max_extents,
                             BdrvBlockStatusFunc cb, gpointer opaque);
void bdrv_aio_pwritev(BlockDriverState *bs, uint64_t offset,
                      const struct iovec *iov, int niov, BdrvRequestFlags flags,
                      BdrvCompletionFunc cb, gpointer opaque);
void bdrv_aio_flush(BlockDriverState *bs, BdrvCompletionFunc cb, gpointer opaque);
void bdrv_aio_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                       BdrvCompletionFunc cb, gpointer opaque);
void bdrv_aio_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                            BdrvRequestFlags flags,
                            BdrvCompletionFunc cb, gpointer opaque);
/* Hint that a range will be read soon (NBD_CMD_CACHE); may do nothing. */
void bdrv_aio_cache(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                    BdrvCompletionFunc cb, gpointer opaque);
/* max_extents 0 means no limit; either way at most 65536 extents come back. */
void bdrv_aio_block_status(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                           guint max_extents,
                           BdrvBlockStatusFunc cb, gpointer opaque);

/*
 * Run now, on the calling thread, the callbacks of requests it submitted that
 * have already finished and would otherwise wait for the next iteration of
 * its GMainContext (those that finished inline: memory and null nodes, file
 * reads served from the page cache). For a caller that submits a batch from
 * one dispatch and wants to answer it in that same dispatch; the callbacks
 * still never run inside the submitting calls. Does nothing unless the
 * caller owns its thread-default context (runs it).
 */
void bdrv_dispatch_completions(void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockDriverState, bdrv_put)

G_END_DECLS

#endif
