/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copy-before-write filter (QEMU 7.2's driver and options): it sits on
 * a node (`file`) and, before a write, write-zeroes or discard through it
 * changes clusters that still belong to the point-in-time snapshot, copies
 * their old content to a scratch node (`target`). Together with a
 * snapshot-access node on top of it (copy-before-write.h; the filter's side
 * of it is copy-before-write-snapshot.c) this is the
 * fleecing of libvirt's pull backup: the snapshot shows the disk as it was
 * when the filter was opened while the guest keeps writing.
 *
 * The unit is the cluster: the target's cluster size, at least 64 KiB, as
 * QEMU's block-copy. Each cluster has a state byte: still to copy, being
 * copied, copied (lives in target), and readable through the snapshot.
 * With `bitmap`, only the clusters dirty in it are to copy and readable.
 *
 * Everything is asynchronous, on whatever thread completes a child request:
 * a write claims the clusters of its range that are to copy (one run at a
 * time), copies them (block status of file, then write-zeroes, or read and
 * write, into target), and waits - as a queued continuation, never a
 * blocked thread - for clusters another write is copying and for snapshot
 * reads of file still in flight over its range. Only then does it go on to
 * file. A writer never waits while it holds a claim it has not finished, so
 * two writers cannot wait for each other.
 *
 * Copy errors: on-cbw-error=break-guest-write (the default) fails the
 * guest's write; break-snapshot lets it through and breaks the snapshot
 * (its reads fail with EACCES from then on). cbw-timeout is refused unless
 * 0: a copy in flight cannot be abandoned here.
 */
#include "block/copy-before-write-int.h"
#include "berth/block/dirty-bitmap.h"
#include "util/json.h"

#include <errno.h>
#include <string.h>

#define CBW_DEFAULT_CLUSTER (64 * 1024)
/* The most a write claims and copies in one go (bounded buffers). */
#define CBW_MAX_CLAIM_BYTES (1024 * 1024)

static const char *const on_cbw_error_values[] = { "break-guest-write", "break-snapshot", NULL };

struct CbwWrite {
    BdrvRequest *req;
    CbwState *s;
    uint64_t first, end;        /* the request's clusters */
    uint64_t pos;               /* next cluster to look at */
    uint64_t claim_first, claim_end;
    uint64_t copy_pos, copy_end, chunk;     /* bytes of the claim */
    void *buf;
    CbwWrite *next_waiter;
};

/* BlockdevOptionsCbw. */
typedef struct {
    char *node;
    char *name;
} CbwBitmapRef;

typedef struct {
    json_object *file;
    json_object *target;
    CbwBitmapRef bitmap;
    bool has_bitmap;
    int on_cbw_error;
    bool has_on_cbw_error;
    uint64_t cbw_timeout;
    bool has_cbw_timeout;
} CbwOptions;

static const ArgSpec bitmap_ref_members[] = {
    ARG_REQUIRED("node", ARG_STR, CbwBitmapRef, node),
    ARG_REQUIRED("name", ARG_STR, CbwBitmapRef, name),
    ARG_TABLE_END
};

static const ArgSpec cbw_members[] = {
    { .name = "file", .type = ARG_ANY, .offset = offsetof(CbwOptions, file),
      .present_offset = ARG_NO_PRESENCE },
    { .name = "target", .type = ARG_ANY, .offset = offsetof(CbwOptions, target),
      .present_offset = ARG_NO_PRESENCE },
    ARG_NESTED_OPTIONAL("bitmap", bitmap_ref_members, CbwOptions, bitmap, has_bitmap),
    ARG_ENUM_OPTIONAL("on-cbw-error", on_cbw_error_values, CbwOptions, on_cbw_error,
                      has_on_cbw_error),
    ARG_OPTIONAL("cbw-timeout", ARG_UINT, CbwOptions, cbw_timeout, has_cbw_timeout),
    ARG_TABLE_END
};

/* --- opening ---------------------------------------------------------- */

/* The target's cluster size as its ImageInfo shows it, or 0. */
static uint64_t target_cluster_size(BlockDriverState *target)
{
    g_autoptr(json_object) info = json_object_new_object();
    json_object *cs;

    if (!target->drv->image_info) {
        return 0;
    }
    target->drv->image_info(target, info);
    if (!json_object_object_get_ex(info, "cluster-size", &cs)) {
        return 0;
    }
    return (uint64_t) json_object_get_int64(cs);
}

/* The clusters a bitmap marks dirty are the ones to copy. */
static bool apply_bitmap(CbwState *s, const CbwBitmapRef *ref, GError **errp)
{
    BlockDriverState *node = bdrv_find_node(ref->node);
    BdrvDirtyBitmap *bm;

    if (!node) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Node '%s' not found", ref->node);
        return false;
    }
    bm = bdrv_dirty_bitmap_find(node, ref->name);
    if (!bm) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "Dirty bitmap '%s' not found",
                    ref->name);
        return false;
    }
    for (uint64_t c = 0; c < s->n_clusters; c++) {
        uint64_t off = c << s->shift, run = 0;
        uint64_t len = MIN(s->cluster, s->size - off);

        /* Dirty anywhere in the cluster: the first run, or what follows it. */
        bool dirty = bdrv_dirty_bitmap_status(bm, off, len, &run);
        if (!dirty && run < len) {
            dirty = true;
        }
        s->state[c] = dirty ? CL_COPY | CL_ACCESS : 0;
    }
    return true;
}

static bool cbw_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const CbwOptions *o = options;
    CbwState *s;
    BlockDriverState *file, *target;
    uint64_t cluster;

    if (o->has_cbw_timeout && o->cbw_timeout != 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "copy-before-write option 'cbw-timeout' is not supported by berth "
                            "(only 0: no timeout)");
        return false;
    }
    if (o->has_cbw_timeout && o->cbw_timeout > UINT32_MAX) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Parameter 'cbw-timeout' expects uint32_t");
        return false;
    }
    file = bdrv_open_child(bs, o->file, "file", errp);
    if (!file) {
        return false;
    }
    target = bdrv_open_child(bs, o->target, "target", errp);
    if (!target) {
        return false;
    }
    if (target->read_only) {
        /* QEMU's text, without the node's name. */
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "Block node is read-only");
        return false;
    }
    /* QEMU accepts a smaller target and fails the copies past its end. */
    if (bdrv_getlength(target) < bdrv_getlength(file)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Target node '%s' (%" G_GUINT64_FORMAT " bytes) is smaller than the "
                    "filtered node '%s' (%" G_GUINT64_FORMAT " bytes)", target->node_name,
                    bdrv_getlength(target), file->node_name, bdrv_getlength(file));
        return false;
    }
    /* The child made us read-only only if file is: target was checked. */
    bs->read_only = file->read_only;

    cluster = MAX(target_cluster_size(target), (uint64_t) CBW_DEFAULT_CLUSTER);
    s = g_new0(CbwState, 1);
    s->file = file;
    s->target = target;
    s->cluster = cluster;
    s->shift = (unsigned) g_bit_nth_lsf(cluster, -1);
    s->size = bdrv_getlength(file);
    s->n_clusters = MAX((s->size + cluster - 1) >> s->shift, 1);
    s->on_error = o->has_on_cbw_error ? (OnCbwError) o->on_cbw_error
                                      : ON_CBW_ERROR_BREAK_GUEST_WRITE;
    s->state = g_malloc(s->n_clusters);
    memset(s->state, CL_COPY | CL_ACCESS, s->n_clusters);
    g_mutex_init(&s->lock);
    if (o->has_bitmap && !apply_bitmap(s, &o->bitmap, errp)) {
        berth_mutex_clear(&s->lock);
        g_free(s->state);
        g_free(s);
        return false;
    }

    bs->opaque = s;
    bs->size = file->size;
    bdrv_caps_from_child(bs, file);
    return true;
}

static void cbw_close(BlockDriverState *bs)
{
    CbwState *s = bs->opaque;

    berth_mutex_clear(&s->lock);
    g_free(s->state);
    g_free(s);
}

/* --- waiting ------------------------------------------------------------ */

static bool frozen_overlaps(CbwState *s, uint64_t first, uint64_t end)
{
    for (CbwFrozen *f = s->frozen; f; f = f->next) {
        if (f->first < end && first < f->end) {
            return true;
        }
    }
    return false;
}

static void cbw_write_step(CbwWrite *w);

/* Run every waiting write again (they re-check, and may queue again). The
 * caller holds no lock; the list was taken under it. */
void cbw_wake_waiters(CbwWrite *list)
{
    while (list) {
        CbwWrite *w = list;

        list = w->next_waiter;
        w->next_waiter = NULL;
        cbw_write_step(w);
    }
}

CbwWrite *cbw_take_waiters_locked(CbwState *s)
{
    CbwWrite *list = s->waiters;

    s->waiters = NULL;
    return list;
}

/* --- the write path ----------------------------------------------------- */

static void cbw_write_finish(CbwWrite *w, int ret, GError *err)
{
    BdrvRequest *req = w->req;
    CbwState *s = w->s;

    g_free(w->buf);
    g_free(w);
    if (ret < 0) {
        bdrv_request_complete(req, ret, err);
        return;
    }
    bdrv_request_redirect(req, s->file, req->offset);
}

/* The claim [claim_first, claim_end) is copied (ret 0) or failed. */
static void claim_done(CbwWrite *w, int ret, GError *err)
{
    CbwState *s = w->s;
    CbwWrite *waiters;
    bool fail_guest = false;

    berth_mutex_lock(&s->lock);
    for (uint64_t c = w->claim_first; c < w->claim_end; c++) {
        s->state[c] &= ~CL_BUSY;
        if (ret == 0) {
            s->state[c] = (s->state[c] & ~CL_COPY) | CL_DONE;
        }
    }
    if (ret < 0) {
        if (s->on_error == ON_CBW_ERROR_BREAK_SNAPSHOT) {
            if (!s->snapshot_error) {
                s->snapshot_error = ret;
            }
        } else {
            fail_guest = true;
        }
    }
    waiters = cbw_take_waiters_locked(s);
    berth_mutex_unlock(&s->lock);

    cbw_wake_waiters(waiters);
    if (fail_guest) {
        g_prefix_error(&err, "Copy before write to node '%s' failed: ",
                       w->req->bs->node_name);
        cbw_write_finish(w, ret, err);
        return;
    }
    g_clear_error(&err);
    w->pos = w->claim_end;
    cbw_write_step(w);
}

static void copy_next(CbwWrite *w);

static void copy_chunk_written(BdrvRequest *parent, BdrvRequest *creq)
{
    CbwWrite *w = creq->child_opaque;

    if (creq->ret < 0) {
        claim_done(w, creq->ret, g_steal_pointer(&creq->err));
        return;
    }
    w->copy_pos += w->chunk;
    copy_next(w);
}

static void copy_chunk_read(BdrvRequest *parent, BdrvRequest *creq)
{
    CbwWrite *w = creq->child_opaque;
    struct iovec iov = { .iov_base = w->buf, .iov_len = w->chunk };

    if (creq->ret < 0) {
        claim_done(w, creq->ret, g_steal_pointer(&creq->err));
        return;
    }
    bdrv_child_submit(parent, w->s->target, BDRV_OP_WRITE, w->copy_pos, 0, &iov, 1, 0,
                      copy_chunk_written, w);
}

/* Copy what the file's status says starts at copy_pos: zeroes as zeroes,
 * anything else as data, in whole clusters. */
static void copy_status_known(BdrvRequest *parent, BdrvRequest *creq)
{
    CbwWrite *w = creq->child_opaque;
    CbwState *s = w->s;
    uint64_t len, end;

    if (creq->ret < 0) {
        claim_done(w, creq->ret, g_steal_pointer(&creq->err));
        return;
    }
    len = creq->n_extents ? MIN(creq->extents[0].length, w->copy_end - w->copy_pos) : 0;
    if (len > 0 && (creq->extents[0].status & BDRV_BLOCK_ZERO)) {
        end = w->copy_pos + len;
        if (end < w->copy_end) {
            end &= ~(s->cluster - 1);
        }
        if (end > w->copy_pos) {
            w->chunk = end - w->copy_pos;
            bdrv_child_submit(parent, s->target, BDRV_OP_WRITE_ZEROES, w->copy_pos, w->chunk,
                              NULL, 0, 0, copy_chunk_written, w);
            return;
        }
    }
    end = len > 0 ? w->copy_pos + len : w->copy_end;
    end = MIN((end + s->cluster - 1) & ~(s->cluster - 1), w->copy_end);
    w->chunk = end - w->copy_pos;
    struct iovec iov = { .iov_base = w->buf, .iov_len = w->chunk };
    bdrv_child_submit(parent, s->file, BDRV_OP_READ, w->copy_pos, 0, &iov, 1, 0,
                      copy_chunk_read, w);
}

static void copy_next(CbwWrite *w)
{
    if (w->copy_pos >= w->copy_end) {
        claim_done(w, 0, NULL);
        return;
    }
    bdrv_child_submit(w->req, w->s->file, BDRV_OP_BLOCK_STATUS, w->copy_pos,
                      w->copy_end - w->copy_pos, NULL, 0, 0, copy_status_known, w);
}

/*
 * Where the write stands: copy the next run of its clusters that is still
 * to copy, wait for one being copied or for a snapshot read of its range,
 * or go on to file.
 */
static void cbw_write_step(CbwWrite *w)
{
    CbwState *s = w->s;
    uint64_t c;

    berth_mutex_lock(&s->lock);
    if (s->snapshot_error) {
        w->pos = w->end;
    }
    while (w->pos < w->end && !(s->state[w->pos] & (CL_COPY | CL_BUSY))) {
        w->pos++;
    }
    if (w->pos < w->end) {
        if (s->state[w->pos] & CL_BUSY) {
            w->next_waiter = s->waiters;
            s->waiters = w;
            berth_mutex_unlock(&s->lock);
            return;
        }
        for (c = w->pos; c < w->end && (s->state[c] & (CL_COPY | CL_BUSY)) == CL_COPY &&
                         ((c - w->pos) << s->shift) < CBW_MAX_CLAIM_BYTES; c++) {
            s->state[c] |= CL_BUSY;
        }
        w->claim_first = w->pos;
        w->claim_end = c;
        berth_mutex_unlock(&s->lock);

        w->copy_pos = w->claim_first << s->shift;
        w->copy_end = MIN(w->claim_end << s->shift, s->size);
        /* At most CBW_MAX_CLAIM_BYTES, or one cluster if they are larger. */
        g_free(w->buf);
        w->buf = g_malloc(w->copy_end - w->copy_pos);
        copy_next(w);
        return;
    }
    if (frozen_overlaps(s, w->first, w->end)) {
        w->next_waiter = s->waiters;
        s->waiters = w;
        berth_mutex_unlock(&s->lock);
        return;
    }
    berth_mutex_unlock(&s->lock);
    cbw_write_finish(w, 0, NULL);
}

static void cbw_write(BdrvRequest *req)
{
    CbwState *s = req->bs->opaque;
    uint64_t first = req->offset >> s->shift;
    uint64_t end = MIN((req->offset + req->bytes + s->cluster - 1) >> s->shift, s->n_clusters);
    bool nothing_to_do = true;
    CbwWrite *w;

    /* The common case once the snapshot is old: nothing left to copy. */
    berth_mutex_lock(&s->lock);
    if (!s->snapshot_error) {
        for (uint64_t c = first; c < end && nothing_to_do; c++) {
            nothing_to_do = !(s->state[c] & (CL_COPY | CL_BUSY));
        }
    }
    nothing_to_do = nothing_to_do && !frozen_overlaps(s, first, end);
    berth_mutex_unlock(&s->lock);
    if (nothing_to_do) {
        bdrv_request_redirect(req, s->file, req->offset);
        return;
    }
    w = g_new0(CbwWrite, 1);
    w->req = req;
    w->s = s;
    w->first = w->pos = first;
    w->end = end;
    cbw_write_step(w);
}

static void cbw_submit(BdrvRequest *req)
{
    CbwState *s = req->bs->opaque;

    switch (req->op) {
    case BDRV_OP_WRITE:
    case BDRV_OP_WRITE_ZEROES:
    case BDRV_OP_DISCARD:
        if (req->offset >= s->size) {
            bdrv_request_redirect(req, s->file, req->offset);
            return;
        }
        cbw_write(req);
        return;
    default:
        bdrv_request_redirect(req, s->file, req->offset);
        return;
    }
}

/* --- query ----------------------------------------------------------------- */

/* QEMU names the filter by its file. */
static char *cbw_describe(BlockDriverState *bs, const void *options)
{
    CbwState *s = bs->opaque;

    return g_strdup(s->file->filename);
}

static void cbw_image_info(BlockDriverState *bs, json_object *image)
{
    CbwState *s = bs->opaque;

    if (s->file->drv->image_info) {
        s->file->drv->image_info(s->file, image);
    }
    if (!json_object_object_get_ex(image, "dirty-flag", NULL)) {
        json_object_object_add(image, "dirty-flag", json_object_new_boolean(false));
    }
}

const BlockDriver bdrv_copy_before_write = {
    .name = "copy-before-write",
    .options = cbw_members,
    .options_size = sizeof(CbwOptions),
    .open = cbw_open,
    .close = cbw_close,
    .submit = cbw_submit,
    .describe = cbw_describe,
    .image_info = cbw_image_info,
    /* QEMU shows file as the filter's backing-image. */
    .is_filter = true,
};
