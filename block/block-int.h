/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private contract between the generic block layer (node table, request
 * dispatch, completion delivery) and the drivers. A driver is a BlockDriver
 * vtable plus an options table and the struct of its own that the table
 * fills; the generic layer decodes and checks every option and request
 * (range, read-only, discard policy) before a driver sees it, so drivers
 * trust their input and only do I/O. A driver finishes every
 * request it is given exactly once with bdrv_request_complete(), from any
 * thread; the generic layer then delivers the callback on the submitter's
 * GMainContext. Nothing here is installed or visible outside block/.
 */
#ifndef BERTH_BLOCK_BLOCK_INT_H
#define BERTH_BLOCK_BLOCK_INT_H

#include "berth/block/block.h"
#include "berth/util/argspec.h"
#include "berth/util/qmp-command.h"
#include "util/iov.h"
#include "util/tsan.h"

#include <gio/gio.h>

G_BEGIN_DECLS

/* QEMU reports sizes in whole 512-byte sectors; so do we, for compatibility. */
#define BDRV_SECTOR_SIZE 512
/* QEMU's upper bound for a node's length (INT64_MAX rounded down to 1 GiB). */
#define BDRV_MAX_LENGTH (INT64_MAX & ~((INT64_C(1) << 30) - 1))

typedef enum {
    BDRV_DISCARD_IGNORE,
    BDRV_DISCARD_UNMAP,
} BdrvDiscardMode;

typedef enum {
    BDRV_DETECT_ZEROES_OFF,
    BDRV_DETECT_ZEROES_ON,
    BDRV_DETECT_ZEROES_UNMAP,
} BdrvDetectZeroes;

typedef enum {
    BDRV_OP_READ,
    BDRV_OP_WRITE,
    BDRV_OP_FLUSH,
    BDRV_OP_DISCARD,
    BDRV_OP_WRITE_ZEROES,
    BDRV_OP_CACHE,
    BDRV_OP_BLOCK_STATUS,
} BdrvOp;

typedef struct BdrvCompletionQueue BdrvCompletionQueue;

/* QEMU's accounting classes (block-stats.c). */
enum { BDRV_ACCT_READ, BDRV_ACCT_WRITE, BDRV_ACCT_FLUSH, BDRV_ACCT_UNMAP, BDRV_ACCT_N };

/* A node's I/O counters: atomic, added to from any thread, never reset. */
typedef struct BdrvStats {
    guint64 bytes[BDRV_ACCT_N];
    guint64 ops[BDRV_ACCT_N];
    guint64 failed_ops[BDRV_ACCT_N];
    guint64 invalid_ops[BDRV_ACCT_N];
    guint64 total_time_ns[BDRV_ACCT_N];
    guint64 wr_highest_offset;
    guint64 last_access_ns;         /* monotonic; 0: no access yet */
} BdrvStats;

/* How many iovecs a request carries without a separate allocation. */
#define BDRV_REQ_INLINE_IOV 4
/* Upper bound on extents in one block-status answer (bounded memory). */
#define BDRV_MAX_EXTENTS 65536

typedef struct BdrvRequest BdrvRequest;
typedef struct BdrvSyncWaiter BdrvSyncWaiter;

/*
 * For a request that a parent driver sent to its child with
 * bdrv_child_submit(): runs on whatever thread completes the child request,
 * with its outcome in creq->ret, creq->err and creq->extents. It must finish
 * the parent request (bdrv_request_complete(), or by submitting more work
 * that does) and must not keep creq, which is freed when it returns; it may
 * steal creq->err (set it to NULL) and creq->extents.
 */
typedef void (*BdrvChildDoneFunc)(BdrvRequest *parent, BdrvRequest *creq);

struct BdrvRequest {
    BdrvRequest *next;          /* link in a completion queue */
    BlockDriverState *bs;       /* holds a reference until freed */
    BdrvCompletionQueue *queue; /* submitter's context; holds a reference */
    BdrvOp op;
    BdrvRequestFlags flags;
    uint64_t offset;
    uint64_t bytes;
    struct iovec *iov;          /* a private copy of the caller's array */
    int niov;
    guint max_extents;
    /* A read from bdrv_aio_preadv_extents(): the driver that handles it may
     * leave unfilled what it reports as BDRV_BLOCK_ZERO, see there. Not
     * carried to child requests (bdrv_child_submit), only by redirection. */
    bool zero_extents;
    BdrvCompletionFunc cb;
    BdrvBlockStatusFunc status_cb;
    gpointer opaque;

    /* Outcome, filled by the driver. */
    int ret;
    GError *err;
    BdrvExtent *extents;
    guint n_extents;
    guint extents_alloc;

    /* A change that reached the driver: dirty bitmaps are marked at completion. */
    bool mark_dirty;

    /* For drivers that hand the request to the worker pool. */
    void (*work)(BdrvRequest *req);
    /* The driver's own, for a request it passes between its threads. */
    void *drv_data;

    /* Accounting (block-stats.c): class as submitted, -1 for none. */
    int acct;
    gint64 start_ns;
    bool invalid;               /* refused by the block layer's own checks */
    /*
     * A request to a child: parent is the request it serves (not a
     * reference: the parent cannot finish before this one calls done), and
     * done runs instead of a delivery on the queue. child_opaque is the
     * parent driver's. A synchronous request has a waiter instead.
     */
    BdrvRequest *parent;
    BdrvChildDoneFunc done;
    void *child_opaque;
    BdrvSyncWaiter *waiter;

    struct iovec iov_inline[BDRV_REQ_INLINE_IOV];
};

typedef struct BdrvChild BdrvChild;

typedef struct BlockDriver {
    const char *name;               /* as in driver=... */
    /*
     * The driver's own members of blockdev-add (its variant of QEMU's
     * BlockdevOptions), with offsets into the driver's options struct of
     * options_size bytes. The generic layer decodes the common members
     * (node-name, read-only, cache, discard, ...) into its own struct and
     * these into a zeroed struct it allocates, hands that to open() and
     * describe(), and clears and frees it after: the driver keeps nothing
     * of it but copies.
     */
    const ArgSpec *options;
    size_t options_size;
    /*
     * Optional, for a driver whose members depend on a nested union (nbd's
     * server.type): pick the table from the raw options, or NULL with errp.
     * Every table it returns fills the same options struct.
     */
    const ArgSpec *(*select_options)(json_object *options, GError **errp);
    /*
     * With select_options: one table that describes all of them for
     * query-qmp-schema (a nested union shown as its member of type "any").
     * NULL: `options` describes the driver.
     */
    const ArgSpec *schema_options;
    /*
     * Fill the driver's fields of bs (size, opaque, capabilities) from its
     * options struct. bs->read_only, discard and cache flags are already set.
     */
    bool (*open)(BlockDriverState *bs, const void *opts, GError **errp);
    void (*close)(BlockDriverState *bs);
    /* Start a checked request; finish it with bdrv_request_complete(). */
    void (*submit)(BdrvRequest *req);
    /*
     * The node's size is the driver's to the byte (QEMU's nbd driver), not
     * rounded up to whole sectors.
     */
    bool exact_size;
    /* A description for BdrvInfo.filename / query-named-block-nodes. */
    char *(*describe)(BlockDriverState *bs, const void *opts);
    /*
     * Optional: add the driver's own members of QEMU's ImageInfo to `image`
     * (query-named-block-nodes, query-block), after the common virtual-size,
     * filename and format; the file driver adds actual-size and dirty-flag.
     * Main context.
     */
    void (*image_info)(BlockDriverState *bs, json_object *image);
    /*
     * Optional: the node's combined permissions changed (bdrv_perm_*);
     * apply them (the file driver's image locks). Failing leaves the
     * previous ones in force. Main context.
     */
    bool (*set_perm)(BlockDriverState *bs, uint32_t perm, uint32_t unshared, GError **errp);
    /*
     * Optional: what the node takes on its child c (*nperm) and refuses to
     * share on it (*nunshared), given what the node's own users hold and do
     * not share (QEMU's bdrv_child_perm; block-perm.c keeps every edge in
     * step). bs->read_only is final when it is asked. Without it a child
     * gets nothing from this node. Main context.
     */
    void (*child_perm)(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                       uint32_t unshared, uint32_t *nperm, uint32_t *nunshared);
    /*
     * Optional: block_resize. Main context, with no request of its own in
     * flight guaranteed; the generic layer then sets bs->size.
     */
    bool (*truncate)(BlockDriverState *bs, uint64_t size, GError **errp);
    /*
     * Optional: bdrv_snapshot_load_tmp() on a read-only node with nothing
     * in flight. Main context.
     */
    bool (*snapshot_load_tmp)(BlockDriverState *bs, const char *id, const char *name,
                              GError **errp);
    /*
     * Optional, for a driver that keeps dirty bitmaps in its image (qcow2):
     * whether a new persistent bitmap `name` of that granularity can be
     * stored (false with QEMU's text if not), and removing a persistent
     * bitmap from the image (the in-memory one stays until the caller
     * removes it). The driver stores its persistent bitmaps itself when
     * the node closes. Main context.
     */
    bool (*bitmap_can_store)(BlockDriverState *bs, const char *name, uint32_t granularity,
                             GError **errp);
    bool (*bitmap_remove_persistent)(BlockDriverState *bs, const char *name, GError **errp);
    /* Optional: the format's cluster size (QEMU's BlockDriverInfo), which
     * sets a new dirty bitmap's default granularity. */
    uint32_t (*cluster_size)(BlockDriverState *bs);
    /*
     * A filter (QEMU's is_filter: blkdebug): its one child is shown as the
     * node's backing-image, and counts in backing_file_depth.
     */
    bool is_filter;
} BlockDriver;

/*
 * One edge of the node graph: the parent holds a reference on the child
 * from bdrv_open_child() until the parent is freed. role is static text
 * ("file", "image", "backing"), as QEMU names the child.
 */
struct BdrvChild {
    BlockDriverState *bs;
    const char *role;
    /* What this edge holds on bs (bdrv_perm_take); main thread only. */
    uint32_t perm, unshared;
};

/* A node has at most this many children (raw and blkdebug have one, qcow2
 * a file and a backing node). */
#define BDRV_MAX_CHILDREN 4

struct BlockDriverState {
    gint refcnt;                /* atomic */
    gint in_flight;             /* atomic: requests not yet freed */
    const BlockDriver *drv;
    void *opaque;               /* the driver's state */
    char *node_name;
    char *filename;             /* from describe(); may be NULL */
    /* The driver's size rounded up to a sector. block_resize changes it:
     * read it with bdrv_size() from request paths. */
    uint64_t size;
    bool in_table;
    /*
     * Ownership in the graph (main thread, except n_parents: atomic, since
     * a parent may be freed on an I/O thread):
     *  - monitor_owned: opened at the top of blockdev-add/--blockdev (or the
     *    C API); only such nodes may be deleted with bdrv_delete(). Nested
     *    children (file={...}) are not: they live in the node table under a
     *    name of their own or an automatic "#blockNNN", and leave it when
     *    their parent is deleted.
     *  - children: the parent's references, dropped when the parent is
     *    freed (bdrv_free, any thread).
     *  - n_parents: how many parents hold this node as a child; such a node
     *    cannot be deleted ("Block device %s is in use", as QEMU).
     */
    bool monitor_owned;
    BdrvChild children[BDRV_MAX_CHILDREN];
    guint n_children;
    gint n_parents;
    /* During open() only: how the options were given, for bdrv_open_child. */
    bool opening_keyval;

    /* Set at open and never changed: requests read them without a lock. */
    bool read_only;
    bool auto_read_only;
    bool force_share;
    BdrvDiscardMode discard;
    BdrvDetectZeroes detect_zeroes;
    bool cache_direct;
    bool cache_no_flush;
    BdrvStats stats;
    /* Opened as raw by probing (bdrv_set_probed_raw()): block 0 is guarded. */
    bool probed_raw;

    /* Capabilities the driver sets in open() (BdrvInfo mirrors them). */
    bool can_flush;
    bool can_fua;
    bool can_discard;
    bool can_write_zeroes_fast;
    bool has_block_status;
    bool coherent;
    bool read_leaves_buffer;    /* reads may not write the buffer (BdrvInfo) */
    bool reads_zeroes;          /* every read returns zeroes (BdrvInfo) */
    uint32_t request_alignment;

    /* Permissions (main thread only): users per bit, and their union. */
    guint perm_users[4], unshare_users[4];
    uint32_t perm, unshared;
    /* Dirty bitmaps (dirty-bitmap.c): the list changes on the main thread
     * under dirty_lock; n_dirty_bitmaps lets the request path skip the lock. */
    GMutex dirty_lock;
    GList *dirty_bitmaps;       /* BdrvDirtyBitmap *, newest first */
    gint n_dirty_bitmaps;       /* atomic */
};

/* bs->size for request paths on any thread (block_resize may change it). */
static inline uint64_t bdrv_size(const BlockDriverState *bs)
{
    return __atomic_load_n(&bs->size, __ATOMIC_RELAXED);
}

/* --- drivers ---------------------------------------------------------- */

/* Every driver, NULL-terminated (drivers.c). */
extern const BlockDriver *const bdrv_drivers[];

/* blockdev-add's arguments as query-qmp-schema shows them (block.c). */
extern const QmpArgsUnion bdrv_blockdev_add_schema;

/*
 * probe.c: the guard on block 0 of a probed raw image, for the request
 * path. 0, or -EINVAL/-EPERM with *why (static) set.
 */
int bdrv_probed_raw_check_write(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                                const struct iovec *iov, int niov, const char **why);

/* block-stats.c: accounting hooks of the request path, and the command. */
void bdrv_stats_request_start(BdrvRequest *req);
void bdrv_stats_request_done(BdrvRequest *req, int ret);

/* --- helpers for drivers ------------------------------------------------ */

/*
 * Finish a request: ret >= 0 or -errno, err (taken over; may be NULL, in
 * which case a generic message is made for failures). Any thread; never
 * runs the callback itself.
 */
void bdrv_request_complete(BdrvRequest *req, int ret, GError *err);

/* Convenience: complete with -errno and a formatted message. */
void bdrv_request_fail(BdrvRequest *req, int errno_value, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/*
 * Append an extent to a block-status answer, merging it into the previous
 * one when the status is the same. Returns false once the answer holds
 * req->max_extents extents and the new one could not be merged.
 */
bool bdrv_request_add_extent(BdrvRequest *req, uint64_t length, uint32_t status);

/* Run work(req) on the shared worker pool (a few threads for all nodes). */
void bdrv_worker_submit(BdrvRequest *req, void (*work)(BdrvRequest *req));

/* --- dirty bitmaps (dirty-bitmap.c) ------------------------------------ */

typedef struct BerthBitmap BerthBitmap;
typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

/* A change of bytes [offset, offset + bytes) completed: mark every enabled
 * bitmap of bs. Any thread; cheap when bs has no bitmap. */
void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, uint64_t offset, uint64_t bytes);
/* The node is being freed. */
void bdrv_dirty_bitmaps_free_all(BlockDriverState *bs);
/*
 * The node's size is changing to `size` (block_resize): every bitmap
 * follows, as in QEMU - bits past a smaller size go, a larger size adds
 * clean bits. Checks first that every bitmap can grow that far (false with
 * errp, nothing changed); call it before the driver truncates. Main thread.
 */
bool bdrv_dirty_bitmaps_resize(BlockDriverState *bs, uint64_t size, GError **errp);
/* For transactions: a copy of the bits, and putting a copy back (taken). */
BerthBitmap *bdrv_dirty_bitmap_snapshot(BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_restore(BdrvDirtyBitmap *bm, BerthBitmap *bits);
/* --- children (children.c, block-io.c) ---------------------------------- */

/*
 * From a driver's open(): the child named by `ref`, the value of the
 * driver's option `role` (an ARG_ANY member): a node-name string naming an
 * existing node, or an object with a driver of its own (the nested form,
 * file.driver=file,file.filename=X on the command line). A nested child
 * inherits read-only, auto-read-only, force-share, cache.* and discard from
 * the parent's options unless it sets them, gets an automatic node-name
 * ("#block" and a number) unless it has one, and is entered in the node
 * table as not owned by the monitor. Errors have QEMU's texts, nested
 * members named with the role as prefix ('file.filename'). On success the
 * child is in bs->children (the parent's reference) and returned borrowed;
 * a child opened by an open() that then fails is released by bdrv_open().
 * Main thread.
 */
BlockDriverState *bdrv_open_child(BlockDriverState *bs, json_object *ref, const char *role,
                                  GError **errp);

/*
 * block-perm.c: the permissions a node's edges hold on its children.
 * bdrv_child_perm_attach() takes what the driver's child_perm() asks for
 * on a new edge (bs->drv is set during open()), failing with the child's
 * lock error; bdrv_child_perms_refresh() brings every edge in step after
 * open() (which may have made the node read-only);
 * bdrv_child_perms_drop() gives back what every edge holds, when the node
 * leaves the graph. Main thread.
 */
bool bdrv_child_perm_attach(BlockDriverState *bs, BdrvChild *c, GError **errp);
bool bdrv_child_perms_refresh(BlockDriverState *bs, GError **errp);
void bdrv_child_perms_drop(BlockDriverState *bs);
/* child_perm() for filters (raw without a window, blkdebug): the parent's
 * permissions pass through unchanged. */
void bdrv_filter_child_perm(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                            uint32_t unshared, uint32_t *nperm, uint32_t *nunshared);

/* bdrv_open() for a nested child: no node-name needed (an automatic one
 * is made), not owned by the monitor. block.c. */
BlockDriverState *bdrv_open_nested(json_object *options, bool keyval, GError **errp);

/* The node's child with that role, or NULL (borrowed). */
BlockDriverState *bdrv_child(BlockDriverState *bs, const char *role);

/*
 * Capabilities in open(), for the two common kinds of driver. children.c.
 * bdrv_caps_from_child: a filter or format that passes requests on (raw,
 * blkdebug) can do what its child can (flush unless the child's cache
 * ignores flushes, discard only where the child unmaps). bdrv_caps_own: a
 * driver that does every request itself (memory, null, qcow2, rbd): FUA,
 * discard, fast zeroes, block status, coherent across connections, any
 * alignment; flush as given. Set what differs afterwards.
 */
void bdrv_caps_from_child(BlockDriverState *bs, const BlockDriverState *child);
void bdrv_caps_own(BlockDriverState *bs, bool can_flush);

/*
 * From a driver's submit(): send a request to a child on behalf of parent.
 * The child request shares parent's completion queue (so it runs in the
 * same context) and goes through the same checks as any request (range,
 * read-only, ...). Reads and writes carry iov/niov (copied; the buffers are
 * the parent's) and bytes is ignored; the other operations take bytes and
 * no iov. Block status asks for parent->max_extents. done (NULL: finish
 * parent with the child's outcome, extents included) runs on the thread
 * that completes the child request, without a hop through a main loop.
 * Any thread.
 */
void bdrv_child_submit(BdrvRequest *parent, BlockDriverState *child, BdrvOp op,
                       uint64_t offset, uint64_t bytes, const struct iovec *iov, int niov,
                       BdrvRequestFlags flags, BdrvChildDoneFunc done, void *opaque);

/* bdrv_child_submit() of the parent's own operation, iov and flags at
 * another offset, finishing the parent with the child's outcome. */
void bdrv_child_forward(BdrvRequest *parent, BlockDriverState *child, uint64_t offset);

/*
 * From a driver's submit(): hand the request itself over to a child at
 * another offset, for a driver that has nothing to do once the child is
 * done (raw, a filter): no second request, and the completion goes straight
 * to the submitter. The request then belongs to the child (req->bs), and
 * goes through the child's checks. Any thread.
 */
void bdrv_request_redirect(BdrvRequest *req, BlockDriverState *child, uint64_t offset);

/*
 * Synchronous requests, for a driver's code running on a worker-pool
 * thread (bdrv_worker_submit()): block the calling thread until the child
 * request finished. Return 0 (reads and writes: the whole length was
 * transferred) or -errno with errp set. They refuse (-EDEADLK) to run on a
 * thread that owns a GMainContext, whose loop could be the one that has to
 * deliver the completion. File children run their I/O on the calling worker
 * itself, so these never wait for a free worker.
 */
int bdrv_child_preadv_sync(BlockDriverState *child, uint64_t offset,
                           const struct iovec *iov, int niov, GError **errp);
int bdrv_child_pwritev_sync(BlockDriverState *child, uint64_t offset,
                            const struct iovec *iov, int niov, BdrvRequestFlags flags,
                            GError **errp);
int bdrv_child_pread_sync(BlockDriverState *child, uint64_t offset, void *buf, size_t len,
                          GError **errp);
int bdrv_child_pwrite_sync(BlockDriverState *child, uint64_t offset, const void *buf,
                           size_t len, BdrvRequestFlags flags, GError **errp);
int bdrv_child_flush_sync(BlockDriverState *child, GError **errp);
int bdrv_child_pwrite_zeroes_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                                  BdrvRequestFlags flags, GError **errp);
int bdrv_child_pdiscard_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                             GError **errp);
/* The first extent of a block-status answer: its length (<= bytes, > 0) and
 * BDRV_BLOCK_* status. */
int bdrv_child_block_status_sync(BlockDriverState *child, uint64_t offset, uint64_t bytes,
                                 uint64_t *pnum, uint32_t *status, GError **errp);

/*
 * The node as QEMU's json: filename pseudo-protocol would describe it:
 * {"driver": ..., "filename": ...} for a node with a plain filename, or
 * the parsed json: description. A new reference.
 */
json_object *bdrv_node_json(BlockDriverState *bs);

/* Request internals shared by block-io.c and children.c. */
BdrvRequest *bdrv_request_new(BlockDriverState *bs, BdrvOp op, BdrvCompletionFunc cb,
                              BdrvBlockStatusFunc status_cb, gpointer opaque);
bool bdrv_request_set_iov(BdrvRequest *req, const struct iovec *iov, int niov);
void bdrv_request_submit(BdrvRequest *req);
/* children.c: wake the thread waiting for a synchronous request. */
void bdrv_sync_request_complete(BdrvRequest *req);

/* --- completion queues (completion.c) ----------------------------------- */

/* The queue of the calling thread's thread-default context (a new ref). */
BdrvCompletionQueue *bdrv_completion_queue_get(void);
BdrvCompletionQueue *bdrv_completion_queue_ref(BdrvCompletionQueue *q);
void bdrv_completion_queue_unref(BdrvCompletionQueue *q);
GMainContext *bdrv_completion_queue_context(BdrvCompletionQueue *q);
/*
 * One source of a driver's own per context (the file driver's io_uring),
 * kept as long as the queue: set once, from the context's own thread, and
 * found again through any request's queue.  NULL once the context died.
 */
GSource *bdrv_completion_queue_get_local(BdrvCompletionQueue *q);
void bdrv_completion_queue_set_local(BdrvCompletionQueue *q, GSource *local);
/* Hand a finished request to its queue; the queue frees it after the
 * callback (or at once if the context is gone). */
void bdrv_completion_queue_push(BdrvCompletionQueue *q, BdrvRequest *req);

/* Run the callback of a finished request and free it (completion.c calls
 * this from the queue's dispatch). */
void bdrv_request_deliver(BdrvRequest *req);
/* Free a request without running its callback. */
void bdrv_request_free(BdrvRequest *req);

G_END_DECLS

#endif
