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

/* --- asynchronous requests (any thread with a GMainContext) --- */

void bdrv_aio_preadv(BlockDriverState *bs, uint64_t offset,
                     const struct iovec *iov, int niov,
                     BdrvCompletionFunc cb, gpointer opaque);
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
