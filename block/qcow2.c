/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 format driver: the BlockDriver around the qcow2 core
 * (qcow2-*.c). Its children are the image file ("file") and an optional
 * backing node ("backing": a node name, nested options, null for none, or
 * when absent the file named in the image header, opened read-only with the
 * header's format). Reads and in-place writes of data clusters whose L2
 * table is cached go straight to the file child from the submitting thread;
 * every other request runs on the worker pool, where the core does its
 * synchronous I/O on the children (bdrv_child_*_sync); the core's own locks
 * serialize metadata updates. The image file grows as clusters are
 * allocated, so the file child's size follows the highest byte written.
 * open() runs the core's open on a short-lived thread of its own, since
 * synchronous child requests may not wait on the main thread.
 */
#include "block/block-int.h"
#include "block/qcow2-core.h"
#include "block/qcow2-bitmaps-node.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct Qcow2State {
    Qcow2 *q;
    BlockDriverState *file;     /* bs->children's references */
    BlockDriverState *backing;
} Qcow2State;

/* BlockdevOptionsQcow2: the members berth implements. */
typedef struct {
    json_object *file;
    json_object *backing;
    bool has_backing;
    bool lazy_refcounts, has_lazy_refcounts;
    bool pass_discard_request, has_pass_discard_request;
    uint64_t cache_size;
    bool has_cache_size;
    uint64_t l2_cache_size;
    bool has_l2_cache_size;
} Qcow2Options;

static const ArgSpec qcow2_members[] = {
    { .name = "file", .type = ARG_ANY, .offset = offsetof(Qcow2Options, file),
      .present_offset = ARG_NO_PRESENCE },
    { .name = "backing", .type = ARG_ANY, .optional = true,
      .offset = offsetof(Qcow2Options, backing),
      .present_offset = offsetof(Qcow2Options, has_backing) },
    ARG_OPTIONAL("lazy-refcounts", ARG_BOOL, Qcow2Options, lazy_refcounts, has_lazy_refcounts),
    ARG_OPTIONAL("pass-discard-request", ARG_BOOL, Qcow2Options, pass_discard_request,
                 has_pass_discard_request),
    ARG_OPTIONAL("cache-size", ARG_SIZE, Qcow2Options, cache_size, has_cache_size),
    ARG_OPTIONAL("l2-cache-size", ARG_SIZE, Qcow2Options, l2_cache_size, has_l2_cache_size),
    ARG_TABLE_END
};

/* ---- the children as Qcow2Files (worker threads) ----------------------------- */

static int64_t child_length(void *opaque)
{
    BlockDriverState *child = opaque;

    return (int64_t) __atomic_load_n(&child->size, __ATOMIC_ACQUIRE);
}

static int child_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *child = opaque;
    uint64_t size = (uint64_t) child_length(child);
    size_t n = off < size ? MIN(len, size - off) : 0;
    int ret = n ? bdrv_child_pread_sync(child, off, buf, n, &err) : 0;

    if (ret < 0) {
        g_warning("qcow2: reading node '%s': %s", child->node_name, err->message);
        return ret;
    }
    /* Past the end of the file (the image's last compressed cluster). */
    memset((char *) buf + n, 0, len - n);
    return 0;
}

static int child_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *child = opaque;
    uint64_t end = off + len;
    int ret;

    if (end > (uint64_t) child_length(child)) {
        /* Only a file grows as it is written; others have a fixed size. */
        if (strcmp(child->drv->name, "file") != 0) {
            g_warning("qcow2: node '%s' (%s) cannot grow to %" G_GUINT64_FORMAT " bytes",
                      child->node_name, child->drv->name, end);
            return -ENOSPC;
        }
        /* Racing in-place writers only grow it; a bigger size stays. */
        uint64_t cur = __atomic_load_n(&child->size, __ATOMIC_ACQUIRE);
        while (cur < end &&
               !__atomic_compare_exchange_n(&child->size, &cur, end, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        }
    }
    ret = bdrv_child_pwrite_sync(child, off, buf, len, 0, &err);
    if (ret < 0) {
        g_warning("qcow2: writing node '%s': %s", child->node_name, err->message);
    }
    return ret;
}

static int child_flush(void *opaque)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *child = opaque;

    if (!child->can_flush) {
        return 0;
    }
    return bdrv_child_flush_sync(child, &err);
}

static Qcow2File child_file(BlockDriverState *child)
{
    return (Qcow2File) {
        .opaque = child, .pread = child_pread, .pwrite = child_pwrite,
        .flush = child_flush, .length = child_length,
    };
}

/* ---- requests (worker threads) ---------------------------------------------- */

/* A buffer for the request's data: its single iovec, or a bounce buffer. */
static void *request_buffer(BdrvRequest *req, bool *bounced)
{
    *bounced = req->niov != 1;
    if (!*bounced) {
        return req->iov[0].iov_base;
    }
    return g_try_malloc(MAX(req->bytes, 1));
}

static uint32_t map_status(BlockDriverState *bs, Qcow2MapType t, uint64_t offset,
                           uint64_t *pnum)
{
    Qcow2State *s = bs->opaque;

    switch (t) {
    case QCOW2_MAP_DATA:
    case QCOW2_MAP_COMPRESSED:
        return BDRV_BLOCK_DATA;
    case QCOW2_MAP_ZERO:
        return BDRV_BLOCK_ZERO;
    case QCOW2_MAP_UNALLOCATED:
    default:
        break;
    }
    if (!s->backing || offset >= bdrv_getlength(s->backing)) {
        return BDRV_BLOCK_ZERO;
    }
    *pnum = MIN(*pnum, bdrv_getlength(s->backing) - offset);
    /* What the backing chain holds there, as QEMU reports it. */
    if (s->backing->has_block_status) {
        g_autoptr(GError) err = NULL;
        uint64_t n;
        uint32_t status;

        if (bdrv_child_block_status_sync(s->backing, offset, *pnum, &n, &status, &err) == 0) {
            *pnum = n;
            return status;
        }
    }
    return BDRV_BLOCK_DATA;
}

static int do_block_status(BdrvRequest *req, GError **errp)
{
    Qcow2State *s = req->bs->opaque;
    /* Bounded work per answer (it may end early): 128Ki clusters. */
    uint64_t limit = (uint64_t) qcow2_cluster_size(s->q) << 17;
    uint64_t pos = req->offset, end = req->offset + MIN(req->bytes, limit);

    while (pos < end) {
        Qcow2MapType t;
        uint64_t n;
        uint32_t status;
        int ret = qcow2_map(s->q, pos, end - pos, &n, &t, errp);

        if (ret < 0) {
            return ret;
        }
        status = map_status(req->bs, t, pos, &n);
        if (!bdrv_request_add_extent(req, n, status)) {
            break;
        }
        pos += n;
    }
    return 0;
}

static bool zeroes_need_fallback(Qcow2State *s, uint64_t offset, uint64_t bytes,
                                 uint64_t size)
{
    uint64_t cs = qcow2_cluster_size(s->q);

    if (offset % cs || (bytes % cs && offset + bytes != size)) {
        return true;
    }
    return qcow2_version(s->q) < 3 && s->backing;
}

static void qcow2_work(BdrvRequest *req)
{
    BlockDriverState *bs = req->bs;
    Qcow2State *s = bs->opaque;
    g_autoptr(GError) err = NULL;
    bool bounced = false;
    void *buf = NULL;
    int ret = 0;

    switch (req->op) {
    case BDRV_OP_READ:
        buf = request_buffer(req, &bounced);
        if (!buf) {
            bdrv_request_fail(req, ENOMEM, "Out of memory for a read of node '%s'",
                              bs->node_name);
            return;
        }
        ret = qcow2_read(s->q, req->offset, buf, req->bytes, &err);
        if (ret == 0 && bounced) {
            berth_iov_from_buf(req->iov, req->niov, 0, buf, req->bytes);
        }
        break;
    case BDRV_OP_WRITE:
        buf = request_buffer(req, &bounced);
        if (!buf) {
            bdrv_request_fail(req, ENOMEM, "Out of memory for a write of node '%s'",
                              bs->node_name);
            return;
        }
        if (bounced) {
            BerthIovCursor c;
            berth_iov_cursor_init(&c, req->iov, req->niov);
            berth_iov_cursor_to_buf(&c, buf, req->bytes);
        }
        ret = qcow2_write(s->q, req->offset, buf, req->bytes, &err);
        if (ret == 0 && (req->flags & BDRV_REQ_FUA)) {
            ret = qcow2_flush(s->q, &err);
        }
        break;
    case BDRV_OP_WRITE_ZEROES:
        if ((req->flags & BDRV_REQ_NO_FALLBACK) &&
            zeroes_need_fallback(s, req->offset, req->bytes, qcow2_virtual_size(s->q))) {
            bdrv_request_fail(req, ENOTSUP, "qcow2: zeroing this range needs writing zeroes");
            return;
        }
        ret = qcow2_write_zeroes(s->q, req->offset, req->bytes,
                                 req->flags & BDRV_REQ_MAY_UNMAP, &err);
        if (ret == 0 && (req->flags & BDRV_REQ_FUA)) {
            ret = qcow2_flush(s->q, &err);
        }
        break;
    case BDRV_OP_DISCARD:
        ret = qcow2_discard(s->q, req->offset, req->bytes, &err);
        break;
    case BDRV_OP_FLUSH:
        ret = qcow2_flush(s->q, &err);
        break;
    case BDRV_OP_BLOCK_STATUS:
        ret = do_block_status(req, &err);
        break;
    case BDRV_OP_CACHE:
    default:
        break;
    }
    if (bounced) {
        g_free(buf);
    }
    bdrv_request_complete(req, ret, ret < 0 ? g_steal_pointer(&err) : NULL);
}

/* A direct request to the file finished: the clusters may be reused. */
static void direct_read_done(BdrvRequest *parent, BdrvRequest *creq)
{
    Qcow2State *s = parent->bs->opaque;

    qcow2_direct_read_done(s->q);
    bdrv_request_complete(parent, creq->ret, g_steal_pointer(&creq->err));
}

static void qcow2_submit(BdrvRequest *req)
{
    Qcow2State *s = req->bs->opaque;
    uint64_t host;

    /*
     * Reads and in-place writes of data clusters whose L2 table is cached
     * go to the file from here, without a worker; the rest runs on the pool.
     */
    if ((req->op == BDRV_OP_READ &&
         qcow2_direct_read_begin(s->q, req->offset, req->bytes, &host)) ||
        (req->op == BDRV_OP_WRITE &&
         qcow2_direct_write_begin(s->q, req->offset, req->bytes, &host))) {
        if (host + req->bytes <= (uint64_t) child_length(s->file)) {
            bdrv_child_submit(req, s->file, req->op, host, 0, req->iov, req->niov,
                              req->flags & BDRV_REQ_FUA, direct_read_done, NULL);
            return;
        }
        qcow2_direct_read_done(s->q);
    }
    bdrv_worker_submit(req, qcow2_work);
}

/* ---- open and close (main thread) -------------------------------------------- */

typedef struct {
    Qcow2File file;
    bool writable;
    uint64_t l2_cache;
    Qcow2 *q;
    GError *err;
} OpenJob;

static gpointer open_thread(gpointer data)
{
    OpenJob *job = data;

    job->q = qcow2_open(&job->file, job->writable, job->l2_cache, &job->err);
    return NULL;
}

typedef struct SnapshotJob {
    Qcow2 *q;
    const char *id, *name;
    GError *err;
    int ret;
} SnapshotJob;

static gpointer snapshot_thread(gpointer data)
{
    SnapshotJob *job = data;

    job->ret = qcow2_load_snapshot(job->q, job->id, job->name, &job->err);
    return NULL;
}

/* On a thread of its own, as open(): the core reads the file synchronously. */
static bool qcow2_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name,
                                    GError **errp)
{
    Qcow2State *s = bs->opaque;
    SnapshotJob job = { .q = s->q, .id = id, .name = name };

    g_thread_join(g_thread_new("qcow2-snapshot", snapshot_thread, &job));
    if (job.ret < 0) {
        g_propagate_error(errp, job.err);
        return false;
    }
    return true;
}

/* "qcow2" or "raw" from the first bytes of a backing file, as QEMU probes. */
static const char *probe_format(const char *path)
{
    unsigned char magic[4] = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        if (pread(fd, magic, 4, 0) != 4) {
            memset(magic, 0, 4);
        }
        close(fd);
    }
    return memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

static bool have_driver(const char *name)
{
    for (const BlockDriver *const *d = bdrv_drivers; *d; d++) {
        if (strcmp((*d)->name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* The backing file of the header, opened read-only as a nested child. */
static BlockDriverState *open_header_backing(BlockDriverState *bs, Qcow2State *s,
                                             GError **errp)
{
    const char *name = qcow2_backing_file(s->q);
    const char *fmt = qcow2_backing_format(s->q);
    g_autofree char *path = NULL;
    json_object *opts, *file;
    BlockDriverState *backing;

    if (g_path_is_absolute(name) || !s->file->filename) {
        path = g_strdup(name);
    } else {
        g_autofree char *dir = g_path_get_dirname(s->file->filename);
        path = g_build_filename(dir, name, NULL);
    }
    if (!fmt) {
        fmt = probe_format(path);
    }
    if (strcmp(fmt, "qcow2") != 0 && strcmp(fmt, "raw") != 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "qcow2: backing format '%s' of '%s' is not supported (raw and qcow2 are)",
                    fmt, name);
        return NULL;
    }
    file = json_object_new_object();
    json_object_object_add(file, "driver", json_object_new_string("file"));
    json_object_object_add(file, "filename", json_object_new_string(path));
    if (strcmp(fmt, "raw") == 0 && !have_driver("raw")) {
        /* Without a raw driver the file node itself is the raw image. */
        opts = file;
    } else {
        opts = json_object_new_object();
        json_object_object_add(opts, "driver", json_object_new_string(fmt));
        json_object_object_add(opts, "file", file);
    }
    json_object_object_add(opts, "read-only", bs->opening_keyval
                                              ? json_object_new_string("on")
                                              : json_object_new_boolean(true));
    backing = bdrv_open_child(bs, opts, "backing", errp);
    json_object_put(opts);
    return backing;
}

static bool check_options(const Qcow2Options *opts, GError **errp)
{
    if (opts->has_lazy_refcounts && opts->lazy_refcounts) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "qcow2: lazy-refcounts=on is not supported (refcounts are always exact)");
        return false;
    }
    if (opts->has_pass_discard_request && opts->pass_discard_request) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "qcow2: pass-discard-request=on is not supported");
        return false;
    }
    return true;
}

static bool qcow2_open_node(BlockDriverState *bs, const void *options, GError **errp)
{
    const Qcow2Options *opts = options;
    Qcow2State *s;
    OpenJob job = { 0 };
    GThread *t;
    uint64_t l2_cache = 0;

    if (!check_options(opts, errp)) {
        return false;
    }
    if (opts->has_l2_cache_size) {
        l2_cache = MAX(opts->l2_cache_size, 1);
    } else if (opts->has_cache_size) {
        /* The refcount cache keeps a quarter, as QEMU's split roughly does. */
        l2_cache = MAX(opts->cache_size - opts->cache_size / 4, 1);
    }
    s = g_new0(Qcow2State, 1);
    bs->opaque = s;
    s->file = bdrv_open_child(bs, opts->file, "file", errp);
    if (!s->file) {
        goto fail;
    }
    job.file = child_file(s->file);
    job.writable = !bs->read_only;
    job.l2_cache = l2_cache;
    t = g_thread_new("qcow2-open", open_thread, &job);
    g_thread_join(t);
    if (!job.q) {
        g_propagate_error(errp, job.err);
        goto fail;
    }
    s->q = job.q;

    if (opts->has_backing) {
        if (opts->backing) {     /* null: no backing */
            s->backing = bdrv_open_child(bs, opts->backing, "backing", errp);
            if (!s->backing) {
                goto fail;
            }
        }
    } else if (qcow2_backing_file(s->q)) {
        s->backing = open_header_backing(bs, s, errp);
        if (!s->backing) {
            goto fail;
        }
    }
    if (s->backing) {
        Qcow2File b = child_file(s->backing);
        b.pwrite = NULL;
        qcow2_set_backing(s->q, &b);
    }

    bs->size = qcow2_virtual_size(s->q);
    bdrv_caps_own(bs, true);
    if (!qcow2_node_load_bitmaps(bs, s->q, errp)) {
        goto fail;
    }
    return true;

fail:
    qcow2_close(s->q);
    g_free(s);
    bs->opaque = NULL;
    return false;
}

static void qcow2_close_node(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    if (s) {
        qcow2_node_close(bs, s->q);     /* stores the persistent bitmaps */
        g_free(s);
    }
}

typedef struct {
    Qcow2 *q;
    uint64_t size;
    int ret;
    GError *err;
} ResizeJob;

static gpointer resize_thread(gpointer data)
{
    ResizeJob *job = data;

    job->ret = qcow2_resize(job->q, job->size, &job->err);
    return NULL;
}

/* block_resize: done on a thread of its own, as the open is (the image's
 * metadata I/O is synchronous); requests in flight go on meanwhile. */
static bool qcow2_truncate_node(BlockDriverState *bs, uint64_t size, GError **errp)
{
    Qcow2State *s = bs->opaque;
    ResizeJob job = { .q = s->q, .size = size };

    g_thread_join(g_thread_new("qcow2-resize", resize_thread, &job));
    if (job.ret < 0) {
        g_propagate_error(errp, job.err);
        return false;
    }
    return true;
}

static bool qcow2_bitmap_can_store(BlockDriverState *bs, const char *name,
                                   uint32_t granularity, GError **errp)
{
    Qcow2State *s = bs->opaque;

    return qcow2_node_bitmap_can_store(bs, s->q, name, granularity, errp);
}

static bool qcow2_bitmap_remove(BlockDriverState *bs, const char *name, GError **errp)
{
    Qcow2State *s = bs->opaque;

    return qcow2_node_bitmap_remove(bs, s->q, name, errp);
}

static uint32_t qcow2_node_cluster_size(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    return qcow2_cluster_size(s->q);
}

static char *qcow2_describe(BlockDriverState *bs, const void *options)
{
    Qcow2State *s = bs->opaque;

    return g_strdup(s && s->file && s->file->filename ? s->file->filename : "");
}

/* ---- ImageInfo (main thread) --------------------------------------------------- */

static void add_image_members(BlockDriverState *bs, json_object *image)
{
    Qcow2State *s = bs->opaque;
    json_object *spec = json_object_new_object(), *data = json_object_new_object();
    bool v3 = qcow2_version(s->q) >= 3;

    json_object_object_add(image, "cluster-size",
                           json_object_new_int64(qcow2_cluster_size(s->q)));
    if (s->file->drv->image_info) {
        /* actual-size, as the file reports it. */
        json_object *fimage = json_object_new_object();
        json_object *actual;
        s->file->drv->image_info(s->file, fimage);
        if (json_object_object_get_ex(fimage, "actual-size", &actual)) {
            json_object_object_add(image, "actual-size", json_object_get(actual));
        }
        json_object_put(fimage);
    }
    json_object_object_add(data, "compat", json_object_new_string(v3 ? "1.1" : "0.10"));
    json_object_object_add(data, "compression-type", json_object_new_string("zlib"));
    if (v3) {
        json_object_object_add(data, "lazy-refcounts",
                               json_object_new_boolean(qcow2_has_lazy_refcounts(s->q)));
        qcow2_node_bitmaps_info(s->q, data);
    }
    json_object_object_add(data, "refcount-bits", json_object_new_int(16));
    if (v3) {
        json_object_object_add(data, "corrupt",
                               json_object_new_boolean(qcow2_is_corrupt(s->q)));
        json_object_object_add(data, "extended-l2", json_object_new_boolean(false));
    }
    json_object_object_add(spec, "type", json_object_new_string("qcow2"));
    json_object_object_add(spec, "data", data);
    json_object_object_add(image, "format-specific", spec);
    json_object_object_add(image, "dirty-flag", json_object_new_boolean(qcow2_is_dirty(s->q)));
    if (qcow2_backing_file(s->q)) {
        json_object_object_add(image, "backing-filename",
                               json_object_new_string(qcow2_backing_file(s->q)));
        if (qcow2_backing_format(s->q)) {
            json_object_object_add(image, "backing-filename-format",
                                   json_object_new_string(qcow2_backing_format(s->q)));
        }
    }
    if (s->backing) {
        json_object_object_add(image, "full-backing-filename",
                               json_object_new_string(s->backing->filename
                                                      ? s->backing->filename : ""));
    }
}

static void qcow2_image_info(BlockDriverState *bs, json_object *image)
{
    add_image_members(bs, image);
}

/*
 * QEMU's rules for a format's children. The image file holds metadata: it
 * is always read consistently, written and resized when the node is
 * writable, and no one else may write or resize it, whatever the node's
 * users share. A backing node is only read: consistently if the node's
 * users read so, and others may write it only if those users let others
 * write the node.
 */
static void qcow2_child_perm(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                             uint32_t unshared, uint32_t *nperm, uint32_t *nunshared)
{
    if (strcmp(c->role, "backing") == 0) {
        *nperm = perm & BDRV_PERM_CONSISTENT_READ;
        *nunshared = unshared & BDRV_PERM_WRITE ? BDRV_PERM_WRITE | BDRV_PERM_RESIZE : 0;
        return;
    }
    *nperm = perm | BDRV_PERM_CONSISTENT_READ;
    if (!bs->read_only) {
        *nperm |= BDRV_PERM_WRITE | BDRV_PERM_RESIZE;
    }
    if (*nperm & BDRV_PERM_WRITE_UNCHANGED) {
        *nperm |= BDRV_PERM_WRITE;
    }
    if (*nperm & BDRV_PERM_WRITE) {
        *nperm |= BDRV_PERM_RESIZE;
    }
    *nunshared = unshared | BDRV_PERM_WRITE | BDRV_PERM_RESIZE;
}

const BlockDriver bdrv_qcow2 = {
    .name = "qcow2",
    .options = qcow2_members,
    .options_size = sizeof(Qcow2Options),
    .open = qcow2_open_node,
    .close = qcow2_close_node,
    .submit = qcow2_submit,
    .describe = qcow2_describe,
    .image_info = qcow2_image_info,
    .truncate = qcow2_truncate_node,
    .child_perm = qcow2_child_perm,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .bitmap_can_store = qcow2_bitmap_can_store,
    .bitmap_remove_persistent = qcow2_bitmap_remove,
    .cluster_size = qcow2_node_cluster_size,
};
