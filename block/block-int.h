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

/* How many iovecs a request carries without a separate allocation. */
#define BDRV_REQ_INLINE_IOV 4
/* Upper bound on extents in one block-status answer (bounded memory). */
#define BDRV_MAX_EXTENTS 65536

typedef struct BdrvRequest BdrvRequest;
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
    BdrvCompletionFunc cb;
    BdrvBlockStatusFunc status_cb;
    gpointer opaque;

    /* Outcome, filled by the driver. */
    int ret;
    GError *err;
    BdrvExtent *extents;
    guint n_extents;
    guint extents_alloc;

    /* For drivers that hand the request to the worker pool. */
    void (*work)(BdrvRequest *req);
    /* The driver's own, for a request it passes between its threads. */
    void *drv_data;

    struct iovec iov_inline[BDRV_REQ_INLINE_IOV];
};

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
} BlockDriver;

struct BlockDriverState {
    gint refcnt;                /* atomic */
    gint in_flight;             /* atomic: requests not yet freed */
    const BlockDriver *drv;
    void *opaque;               /* the driver's state */
    char *node_name;
    char *filename;             /* from describe(); may be NULL */
    uint64_t size;              /* the driver's size rounded up to a sector */
    bool in_table;

    /* Set at open and never changed: requests read them without a lock. */
    bool read_only;
    bool auto_read_only;
    bool force_share;
    BdrvDiscardMode discard;
    BdrvDetectZeroes detect_zeroes;
    bool cache_direct;
    bool cache_no_flush;

    /* Capabilities the driver sets in open() (BdrvInfo mirrors them). */
    bool can_flush;
    bool can_fua;
    bool can_discard;
    bool can_write_zeroes_fast;
    bool has_block_status;
    bool coherent;
    bool read_leaves_buffer;    /* reads may not write the buffer (BdrvInfo) */
    uint32_t request_alignment;
};

/* --- drivers ---------------------------------------------------------- */

/* Every driver, NULL-terminated (drivers.c). */
extern const BlockDriver *const bdrv_drivers[];

/* blockdev-add's arguments as query-qmp-schema shows them (block.c). */
extern const QmpArgsUnion bdrv_blockdev_add_schema;

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

/* --- completion queues (completion.c) ----------------------------------- */

/* The queue of the calling thread's thread-default context (a new ref). */
BdrvCompletionQueue *bdrv_completion_queue_get(void);
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
