/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The null-co driver: a device of a given size that stores nothing, for
 * benchmarks and tests. As in QEMU 7.2, writes are dropped, reads leave the
 * caller's buffer untouched unless read-zeroes=on (BdrvInfo says so, and
 * the NBD server clears its buffer for such a node, so that a peer never
 * reads what the buffer held before), and block status reports
 * no data (a hole, known to read as zeroes only with read-zeroes=on). Every
 * request finishes inline; latency-ns delays only the completion, with a
 * timer on the submitter's context, so it costs no thread.
 */
#include "block/block-int.h"

#define NULL_DEFAULT_SIZE (UINT64_C(1) << 30)

typedef struct NullState {
    bool read_zeroes;
    uint64_t latency_ns;
} NullState;

/* BlockdevOptionsNull */
typedef struct {
    uint64_t size;
    bool has_size;
    bool read_zeroes, has_read_zeroes;
    uint64_t latency_ns;
    bool has_latency_ns;
} NullOptions;

/* In QEMU's order. */
static const ArgSpec null_members[] = {
    ARG_OPTIONAL("size", ARG_SIZE, NullOptions, size, has_size),
    ARG_OPTIONAL("latency-ns", ARG_UINT, NullOptions, latency_ns, has_latency_ns),
    ARG_OPTIONAL("read-zeroes", ARG_BOOL, NullOptions, read_zeroes, has_read_zeroes),
    ARG_TABLE_END
};

static bool null_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const NullOptions *opts = options;
    NullState *s = g_new0(NullState, 1);

    s->read_zeroes = opts->read_zeroes;
    s->latency_ns = opts->latency_ns;
    bs->opaque = s;
    bs->size = opts->has_size ? opts->size : NULL_DEFAULT_SIZE;
    bdrv_caps_own(bs, false);
    bs->can_discard = false;
    bs->read_leaves_buffer = !s->read_zeroes;
    bs->reads_zeroes = s->read_zeroes;
    return true;
}

static void null_close(BlockDriverState *bs)
{
    g_free(bs->opaque);
}

static gboolean null_latency_expired(gpointer data)
{
    BdrvRequest *req = data;

    bdrv_request_complete(req, 0, NULL);
    return G_SOURCE_REMOVE;
}

static gboolean null_timer_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    return callback(data);
}

static GSourceFuncs null_timer_funcs = { .dispatch = null_timer_dispatch };

static void null_finish(NullState *s, BdrvRequest *req)
{
    GSource *timer;

    if (s->latency_ns == 0) {
        bdrv_request_complete(req, 0, NULL);
        return;
    }
    /* A ready-time source: microsecond resolution, unlike g_timeout_*. */
    timer = g_source_new(&null_timer_funcs, sizeof(GSource));
    g_source_set_ready_time(timer, g_get_monotonic_time() +
                            (gint64) MIN(s->latency_ns / 1000, (uint64_t) G_MAXINT32));
    g_source_set_callback(timer, null_latency_expired, req, NULL);
    g_source_attach(timer, bdrv_completion_queue_context(req->queue));
    g_source_unref(timer);
}

static void null_submit(BdrvRequest *req)
{
    NullState *s = req->bs->opaque;

    switch (req->op) {
    case BDRV_OP_READ:
        /* A caller that takes the range as zeroes unseen saves the memset
         * (BDRV_REQ_ZEROES_UNFILLED): 40 % of the CPU of 1 MiB reads. */
        if (s->read_zeroes && !(req->flags & BDRV_REQ_ZEROES_UNFILLED)) {
            BerthIovCursor c;

            berth_iov_cursor_init(&c, req->iov, req->niov);
            berth_iov_cursor_memset(&c, 0, req->bytes);
        }
        break;
    case BDRV_OP_BLOCK_STATUS:
        bdrv_request_add_extent(req, req->bytes, s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
        break;
    default:
        break;
    }
    null_finish(s, req);
}

static char *null_describe(BlockDriverState *bs, const void *opts)
{
    return g_strdup("null-co://");
}

/* ImageInfo: a null device takes no space. */
static void null_image_info(BlockDriverState *bs, json_object *image)
{
    json_object_object_add(image, "actual-size", json_object_new_int64(0));
}

const BlockDriver bdrv_null_co = {
    .name = "null-co",
    .options = null_members,
    .options_size = sizeof(NullOptions),
    .open = null_open,
    .close = null_close,
    .submit = null_submit,
    .describe = null_describe,
    .image_info = null_image_info,
};
