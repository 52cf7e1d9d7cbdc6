/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The raw format driver: the image is its file child's bytes, optionally a
 * window of them (offset, size), as QEMU's raw driver. Every request is
 * handed over to the child itself, at the window's offset
 * (bdrv_request_redirect()), so a raw node costs no allocation, no thread
 * and no loop hop: only the checks, once more. Block status,
 * zeroes, discard and FUA pass through; the child's capabilities are the
 * node's. A window that ends inside a sector of the child (an offset that
 * is not a multiple of 512, without size) reads zeroes in that last partial
 * sector, as QEMU's does.
 */
#include "block/block-int.h"
#include "util/json.h"

#include <errno.h>

typedef struct RawState {
    BlockDriverState *file;     /* bs->children's reference */
    uint64_t offset;
    uint64_t limit;             /* bytes of the child inside the window;
                                 * block_resize changes it (atomic) */
    bool fixed_size;            /* size= given: the window cannot change */
    bool window;                /* offset or size given */
} RawState;

/* BlockdevOptionsRaw: BlockdevOptionsGenericFormat, then offset and size. */
typedef struct {
    json_object *file;
    uint64_t offset;
    bool has_offset;
    uint64_t size;
    bool has_size;
} RawOptions;

static const ArgSpec raw_members[] = {
    { .name = "file", .type = ARG_ANY, .offset = offsetof(RawOptions, file),
      .present_offset = ARG_NO_PRESENCE },
    ARG_OPTIONAL("offset", ARG_SIZE, RawOptions, offset, has_offset),
    ARG_OPTIONAL("size", ARG_SIZE, RawOptions, size, has_size),
    ARG_TABLE_END
};

static bool raw_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const RawOptions *opts = options;
    BlockDriverState *file = bdrv_open_child(bs, opts->file, "file", errp);
    RawState *s;

    if (!file) {
        return false;
    }
    /* QEMU's checks, in its order and words (the double space is QEMU's). */
    uint64_t real_size = bdrv_getlength(file);
    if (opts->offset > real_size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Offset (%" G_GUINT64_FORMAT ") cannot be greater than size of the "
                    "containing file (%" G_GUINT64_FORMAT ")", opts->offset, real_size);
        return false;
    }
    if (opts->has_size && real_size - opts->offset < opts->size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "The sum of offset (%" G_GUINT64_FORMAT ") and size (%" G_GUINT64_FORMAT
                    ") has to be smaller or equal to the  actual size of the containing "
                    "file (%" G_GUINT64_FORMAT ")", opts->offset, opts->size, real_size);
        return false;
    }
    if (opts->has_size && opts->size % BDRV_SECTOR_SIZE) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Specified size is not multiple of %d", BDRV_SECTOR_SIZE);
        return false;
    }

    s = g_new0(RawState, 1);
    s->file = file;
    s->offset = opts->offset;
    s->limit = opts->has_size ? opts->size : real_size - opts->offset;
    s->fixed_size = opts->has_size;
    s->window = opts->has_offset || opts->has_size;
    bs->opaque = s;
    bs->size = s->limit;
    bdrv_caps_from_child(bs, file);
    return true;
}

static void raw_close(BlockDriverState *bs)
{
    g_free(bs->opaque);
}

/* A request that reaches into the zeroes past the child's last byte. */
static void raw_submit_tail(RawState *s, BdrvRequest *req)
{
    uint64_t limit = __atomic_load_n(&s->limit, __ATOMIC_RELAXED);
    uint64_t inside = req->offset < limit ? limit - req->offset : 0;

    switch (req->op) {
    case BDRV_OP_READ: {
        struct iovec part[BDRV_REQ_INLINE_IOV * 4];
        uint64_t covered = 0;
        int n;

        berth_iov_memset(req->iov, req->niov, inside, 0, req->bytes - inside);
        if (inside == 0) {
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        n = berth_iov_slice(req->iov, req->niov, 0, inside, part, G_N_ELEMENTS(part),
                            &covered);
        if (covered != inside) {
            bdrv_request_fail(req, EINVAL, "Too many I/O vectors for the end of node '%s'",
                              req->bs->node_name);
            return;
        }
        bdrv_child_submit(req, s->file, BDRV_OP_READ, s->offset + req->offset, 0, part, n,
                          0, NULL, NULL);
        return;
    }
    case BDRV_OP_BLOCK_STATUS:
        if (inside == 0) {
            bdrv_request_add_extent(req, req->bytes, BDRV_BLOCK_ZERO);
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        /* An answer may cover less than was asked. */
        bdrv_child_submit(req, s->file, req->op, s->offset + req->offset, inside, NULL, 0,
                          0, NULL, NULL);
        return;
    case BDRV_OP_DISCARD:
    case BDRV_OP_WRITE_ZEROES:
    case BDRV_OP_CACHE:
        if (inside == 0) {
            bdrv_request_complete(req, 0, NULL);
            return;
        }
        bdrv_child_submit(req, s->file, req->op, s->offset + req->offset, inside, NULL, 0,
                          req->flags, NULL, NULL);
        return;
    default:
        bdrv_request_fail(req, EINVAL, "Cannot write past the end of the file of node '%s'",
                          req->bs->node_name);
        return;
    }
}

static void raw_submit(BdrvRequest *req)
{
    RawState *s = req->bs->opaque;

    if (G_UNLIKELY(req->op != BDRV_OP_FLUSH &&
                   req->offset + req->bytes > __atomic_load_n(&s->limit, __ATOMIC_RELAXED))) {
        raw_submit_tail(s, req);
        return;
    }
    bdrv_request_redirect(req, s->file, s->offset + req->offset);
}

/* block_resize: the file grows or shrinks with the node, as in QEMU, unless
 * size= fixed the window. */
static bool raw_truncate(BlockDriverState *bs, uint64_t size, GError **errp)
{
    RawState *s = bs->opaque;

    if (s->fixed_size) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Cannot resize fixed-size raw disks");
        return false;
    }
    if (size > (uint64_t) BDRV_MAX_LENGTH - s->offset) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Disk size too large for the chosen offset");
        return false;
    }
    if (!bdrv_truncate(s->file, s->offset + size, errp)) {
        return false;
    }
    __atomic_store_n(&s->limit, size, __ATOMIC_RELAXED);
    return true;
}

/* QEMU names a window by its options, and a plain raw node by its file. */
static char *raw_describe(BlockDriverState *bs, const void *options)
{
    const RawOptions *opts = options;
    RawState *s = bs->opaque;
    g_autoptr(json_object) desc = NULL;

    if (!opts->has_offset && !opts->has_size) {
        return g_strdup(s->file->filename);
    }
    desc = json_object_new_object();
    json_object_object_add(desc, "driver", json_object_new_string("raw"));
    if (opts->has_offset) {
        json_object_object_add(desc, "offset", json_object_new_int64((int64_t) opts->offset));
    }
    if (opts->has_size) {
        json_object_object_add(desc, "size", json_object_new_int64((int64_t) opts->size));
    }
    json_object_object_add(desc, "file", bdrv_node_json(s->file));
    return g_strconcat("json:", json_object_to_json_string_ext(desc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                       NULL);
}

/* ImageInfo: the space the image takes is its file's. */
static void raw_image_info(BlockDriverState *bs, json_object *image)
{
    RawState *s = bs->opaque;

    if (s->file->drv->image_info) {
        s->file->drv->image_info(s->file, image);
    }
}

/* A plain raw node is a filter; a window also keeps others from resizing
 * the file under it, as QEMU's raw does for a data child. */
static void raw_child_perm(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                           uint32_t unshared, uint32_t *nperm, uint32_t *nunshared)
{
    RawState *s = bs->opaque;

    (void) c;
    *nperm = perm;
    *nunshared = unshared;
    if (s && s->window) {
        *nunshared |= BDRV_PERM_RESIZE;
    }
}

const BlockDriver bdrv_raw = {
    .name = "raw",
    .options = raw_members,
    .options_size = sizeof(RawOptions),
    .open = raw_open,
    .close = raw_close,
    .submit = raw_submit,
    .describe = raw_describe,
    .image_info = raw_image_info,
    .truncate = raw_truncate,
    .child_perm = raw_child_perm,
};
