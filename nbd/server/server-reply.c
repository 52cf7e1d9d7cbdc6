/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Replies of the transmission phase: simple replies, structured and
 * extended chunks, reads split into data and holes, block status from the
 * node's extents and dirty bitmaps, error chunks with a message. Each
 * request gets exactly one reply, queued on its connection's output.
 */
#include "server-request.h"
#include "util/iov.h"

#include <errno.h>
#include <string.h>

/* Export counters are shared by all of the export's clients, which may run
 * in different threads: relaxed atomic adds (read by nbd_stats_copy()). */
static void count_request(NBDRequestCtx *ctx, bool ok)
{
    NBDStats *both[2] = { &ctx->client->stats, &ctx->client->exp->stats };
    for (int i = 0; i < 2; i++) {
        NBDStats *s = both[i];
        if (!ok) {
            nbd_stats_add(&s->errors, 1);
            continue;
        }
        switch (ctx->req.type) {
        case NBD_CMD_READ:
            nbd_stats_add(&s->reads, 1);
            nbd_stats_add(&s->bytes_read, ctx->req.length);
            break;
        case NBD_CMD_WRITE:
            nbd_stats_add(&s->writes, 1);
            nbd_stats_add(&s->bytes_written, ctx->req.length);
            break;
        case NBD_CMD_FLUSH:
            nbd_stats_add(&s->flushes, 1);
            break;
        case NBD_CMD_TRIM:
            nbd_stats_add(&s->trims, 1);
            break;
        case NBD_CMD_WRITE_ZEROES:
            nbd_stats_add(&s->zeroes, 1);
            break;
        case NBD_CMD_CACHE:
            nbd_stats_add(&s->caches, 1);
            break;
        case NBD_CMD_BLOCK_STATUS:
            nbd_stats_add(&s->block_status, 1);
            break;
        }
    }
}

static size_t chunk_header(NBDRequestCtx *ctx, uint8_t *buf, uint16_t flags, uint16_t type,
                           uint64_t length)
{
    return nbd_encode_chunk_header(buf, client_mode(ctx->client), ctx->req.cookie, flags, type,
                                   ctx->req.offset, length);
}

static void send_reply(NBDRequestCtx *ctx, int niov)
{
    ctx->out.iov = ctx->iov;
    ctx->out.niov = niov;
    nbd_conn_send_item(ctx->client, &ctx->out);
}

void nbd_reply_error(NBDRequestCtx *ctx, uint32_t nbd_err, const char *msg)
{
    count_request(ctx, false);
    uint8_t *h = ctx->hdrs;
    NBDMode mode = client_mode(ctx->client);
    bool chunked = mode == NBD_MODE_EXTENDED ||
                   (mode == NBD_MODE_STRUCTURED && (ctx->req.type == NBD_CMD_READ ||
                                                    ctx->req.type == NBD_CMD_BLOCK_STATUS));
    if (!chunked) {
        ctx->iov[0] = (struct iovec) { h, nbd_encode_simple_reply(h, ctx->req.cookie, nbd_err) };
        send_reply(ctx, 1);
        return;
    }
    size_t msg_len = msg ? MIN(strlen(msg), 200) : 0;
    size_t body_len = NBD_ERROR_HDR_SIZE + msg_len;
    size_t n = chunk_header(ctx, h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, body_len);
    n += nbd_encode_error_chunk(h + n, sizeof(ctx->small_hdrs) - n, nbd_err, msg, msg_len);
    ctx->iov[0] = (struct iovec) { h, n };
    send_reply(ctx, 1);
}

void nbd_reply_ok_empty(NBDRequestCtx *ctx)
{
    count_request(ctx, true);
    uint8_t *h = ctx->hdrs;
    size_t n;
    if (client_mode(ctx->client) == NBD_MODE_EXTENDED) {
        n = chunk_header(ctx, h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
    } else {
        n = nbd_encode_simple_reply(h, ctx->req.cookie, 0);
    }
    ctx->iov[0] = (struct iovec) { h, n };
    send_reply(ctx, 1);
}

/* A structured READ: OFFSET_HOLE for extents known to read as zeroes,
 * OFFSET_DATA (sent from the request's buffer) for the rest. */
static void reply_read_chunks(NBDRequestCtx *ctx)
{
    guint n = ctx->n_extents ? ctx->n_extents : 1;
    if (n > 1) {
        ctx->iov = g_new(struct iovec, n * 2);
        ctx->hdrs = g_malloc(n * CHUNK_HDR_ROOM);
    }
    uint64_t pos = 0, len = ctx->req.length;
    int niov = 0;
    for (guint i = 0; i < n && pos < len; i++) {
        uint64_t ext = ctx->n_extents ? MIN(ctx->extents[i].length, len - pos) : len;
        bool hole = ctx->n_extents && (ctx->extents[i].status & BDRV_BLOCK_ZERO);
        if (i == n - 1 || pos + ext >= len) {
            ext = len - pos; /* the last piece covers whatever status left out */
            hole = hole && ctx->extents[i].length >= ext;
        }
        bool last = pos + ext >= len;
        uint16_t flags = last ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t *h = ctx->hdrs + i * CHUNK_HDR_ROOM;
        uint64_t off = ctx->req.offset + pos;
        size_t hl;
        if (hole) {
            hl = chunk_header(ctx, h, flags, NBD_REPLY_TYPE_OFFSET_HOLE, NBD_OFFSET_HOLE_SIZE);
            hl += nbd_encode_offset_hole(h + hl, off, (uint32_t) ext);
            ctx->iov[niov++] = (struct iovec) { h, hl };
        } else {
            hl = chunk_header(ctx, h, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                              NBD_OFFSET_DATA_HDR_SIZE + ext);
            hl += nbd_encode_offset_data_hdr(h + hl, off);
            ctx->iov[niov++] = (struct iovec) { h, hl };
            ctx->iov[niov++] = (struct iovec) { ctx->buf + pos, ext };
        }
        pos += ext;
    }
    send_reply(ctx, niov);
}

/*
 * Where the bytes of holes that go out as data come from: zeroes that
 * nothing ever writes (in .bss: untouched, they cost no memory of their
 * own), so a node's unfilled holes need no zeroing even when the reply
 * must carry them as bytes.
 */
#define ZERO_AREA_SIZE (1024 * 1024)
static uint8_t zero_area[ZERO_AREA_SIZE];

/* A READ that goes out as one piece of data (simple replies, or DF) after
 * the node left its holes unfilled: the holes are sent from zero_area. */
static void reply_read_contiguous(NBDRequestCtx *ctx)
{
    size_t pieces = 1;
    for (guint i = 0; i < ctx->n_extents; i++) {
        pieces += (ctx->extents[i].status & BDRV_BLOCK_ZERO)
                  ? (ctx->extents[i].length + ZERO_AREA_SIZE - 1) / ZERO_AREA_SIZE : 1;
    }
    struct iovec *iov = g_new(struct iovec, pieces);
    uint8_t *h = ctx->hdrs;
    size_t hl;
    if (client_mode(ctx->client) == NBD_MODE_SIMPLE) {
        hl = nbd_encode_simple_reply(h, ctx->req.cookie, 0);
    } else {
        hl = chunk_header(ctx, h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                          NBD_OFFSET_DATA_HDR_SIZE + ctx->req.length);
        hl += nbd_encode_offset_data_hdr(h + hl, ctx->req.offset);
    }
    int n = 0;
    iov[n++] = (struct iovec) { h, hl };
    uint64_t pos = 0;
    for (guint i = 0; i < ctx->n_extents; i++) {
        uint64_t len = ctx->extents[i].length;
        if (ctx->extents[i].status & BDRV_BLOCK_ZERO) {
            for (uint64_t done = 0; done < len;) {
                size_t piece = MIN(len - done, ZERO_AREA_SIZE);
                iov[n++] = (struct iovec) { zero_area, piece };
                done += piece;
            }
        } else {
            iov[n++] = (struct iovec) { ctx->buf + pos, len };
        }
        pos += len;
    }
    ctx->iov = iov;     /* freed with the request, as reply_read_chunks' */
    send_reply(ctx, n);
}

/*
 * Find runs of zero granules in the data just read, as extents for
 * reply_read_chunks(). Real data fails the check on its first bytes, so this
 * costs next to nothing unless there are zeroes - which then need not be sent.
 */
static void find_zero_runs(NBDRequestCtx *ctx)
{
    uint64_t len = ctx->req.length;
    BdrvExtent ext[NBD_READ_MAX_CHUNKS];
    guint n = 0;
    uint64_t pos = 0;
    while (pos < len && n < NBD_READ_MAX_CHUNKS - 1) {
        uint64_t run = 0;
        while (pos + run < len &&
               berth_buffer_is_zero(ctx->buf + pos + run,
                                   MIN(NBD_ZERO_GRANULE, len - pos - run))) {
            run += MIN(NBD_ZERO_GRANULE, len - pos - run);
        }
        if (run >= NBD_SPARSE_READ_MIN) {
            ext[n++] = (BdrvExtent) { run, BDRV_BLOCK_ZERO };
            pos += run;
            continue;
        }
        /* data up to the next granule that starts a long enough zero run */
        uint64_t start = pos;
        pos += MAX(run, NBD_ZERO_GRANULE);
        while (pos < len) {
            if (berth_buffer_is_zero(ctx->buf + pos, MIN(NBD_ZERO_GRANULE, len - pos))) {
                break;
            }
            pos += NBD_ZERO_GRANULE;
        }
        pos = MIN(pos, len);
        if (n > 0 && ext[n - 1].status == BDRV_BLOCK_DATA) {
            ext[n - 1].length += pos - start;
        } else {
            ext[n++] = (BdrvExtent) { pos - start, BDRV_BLOCK_DATA };
        }
    }
    if (pos < len) {
        ext[n++] = (BdrvExtent) { len - pos, BDRV_BLOCK_DATA };
    }
    if (n == 1 && ext[0].status == BDRV_BLOCK_DATA) {
        return; /* plain data: one chunk, no extents needed */
    }
    ctx->extents = g_memdup2(ext, n * sizeof(ext[0]));
    ctx->n_extents = n;
}

/* A structured READ that may go out as holes where the data is zero. */
bool nbd_reply_sparse_allowed(NBDRequestCtx *ctx)
{
    return client_mode(ctx->client) != NBD_MODE_SIMPLE &&
           !(ctx->req.flags & NBD_CMD_FLAG_DF) && ctx->req.length >= NBD_SPARSE_READ_MIN;
}

static void reply_read(NBDRequestCtx *ctx)
{
    count_request(ctx, true);
    if (ctx->zeroes_unread) {
        /* The node reads as zeroes: one hole, nothing filled or scanned. */
        BdrvExtent hole = { ctx->req.length, BDRV_BLOCK_ZERO };
        ctx->extents = g_memdup2(&hole, sizeof(hole));
        ctx->n_extents = 1;
        reply_read_chunks(ctx);
        return;
    }
    if (ctx->holes_unread) {
        /* The node's extents cover the request; its holes were not filled,
         * so their bytes are never sent from the buffer (nor scanned). */
        if (nbd_reply_sparse_allowed(ctx)) {
            reply_read_chunks(ctx);
        } else {
            reply_read_contiguous(ctx);
        }
        return;
    }
    if (client_mode(ctx->client) == NBD_MODE_SIMPLE) {
        uint8_t *h = ctx->hdrs;
        ctx->iov[0] = (struct iovec) { h, nbd_encode_simple_reply(h, ctx->req.cookie, 0) };
        ctx->iov[1] = (struct iovec) { ctx->buf, ctx->req.length };
        send_reply(ctx, 2);
        return;
    }
    if (nbd_reply_sparse_allowed(ctx)) {
        find_zero_runs(ctx);
    }
    reply_read_chunks(ctx);
}

/* One context's answer to a BLOCK_STATUS request: extents whose status is
 * the context's wire flags. */
typedef struct {
    uint32_t id;
    guint n;
    BdrvExtent *ext;
} StatusChunk;

/* Longest extent a reply may carry: 32 bits without extended headers, kept
 * a multiple of the export's minimum block. */
static uint64_t extent_cap(NBDRequestCtx *ctx)
{
    uint64_t min = MAX(ctx->client->exp->min_block, 1);
    if (client_mode(ctx->client) == NBD_MODE_EXTENDED) {
        return UINT64_MAX - (UINT64_MAX % min);
    }
    return UINT32_MAX - (UINT32_MAX % min);
}

static guint max_extents(NBDRequestCtx *ctx)
{
    return (ctx->req.flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_STATUS_EXTENTS;
}

/* Append len bytes of status `flags` to c (room for max extents), merging
 * with the last extent; returns the bytes taken, fewer once c is full. */
static uint64_t chunk_add(StatusChunk *c, guint max, uint64_t cap, uint64_t len, uint32_t flags)
{
    uint64_t taken = 0;
    while (taken < len) {
        BdrvExtent *last = c->n ? &c->ext[c->n - 1] : NULL;
        if (last && last->status == flags && last->length < cap) {
            uint64_t t = MIN(len - taken, cap - last->length);
            last->length += t;
            taken += t;
        } else if (c->n < max) {
            c->ext[c->n++] = (BdrvExtent) { 0, flags };
        } else {
            break;
        }
    }
    return taken;
}

/* base:allocation (depth false) or qemu:allocation-depth from the node's
 * block status: a node without a backing chain holds all its data itself,
 * so depth is 1 where the node reports data or zeroes, 0 where neither. */
static void status_chunk(NBDRequestCtx *ctx, StatusChunk *c, bool depth)
{
    guint max = max_extents(ctx);
    uint64_t cap = extent_cap(ctx);
    c->ext = g_new(BdrvExtent, max);
    for (guint i = 0; i < ctx->n_extents; i++) {
        uint32_t st = ctx->extents[i].status, flags;
        if (depth) {
            flags = (st & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) ? 1 : 0;
        } else {
            flags = (st & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
                    (st & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
        }
        if (chunk_add(c, max, cap, ctx->extents[i].length, flags) < ctx->extents[i].length) {
            break;
        }
    }
}

/* qemu:dirty-bitmap:NAME: bit 0 set where the bitmap is dirty. */
static void bitmap_chunk(NBDRequestCtx *ctx, BdrvDirtyBitmap *bm, StatusChunk *c)
{
    guint max = max_extents(ctx);
    uint64_t cap = extent_cap(ctx);
    uint64_t off = ctx->client->exp->dev_offset + ctx->req.offset, pos = 0;
    uint64_t len = ctx->req.length;
    c->ext = g_new(BdrvExtent, max);
    while (pos < len) {
        uint64_t run;
        uint32_t flags = bdrv_dirty_bitmap_status(bm, off + pos, len - pos, &run)
                         ? NBD_STATE_DIRTY : 0;
        if (chunk_add(c, max, cap, run, flags) < run) {
            break;              /* full: the client asks again from there */
        }
        pos += run;
    }
}

static void reply_block_status(NBDRequestCtx *ctx)
{
    count_request(ctx, true);
    NBDConn *client = ctx->client;
    NBDExport *exp = client->exp;
    bool ext = client_mode(client) == NBD_MODE_EXTENDED;
    size_t desc = ext ? NBD_EXTENT_EXT_SIZE : NBD_EXTENT_SIZE;
    size_t hdr = ext ? NBD_BLOCK_STATUS_EXT_HDR_SIZE : NBD_BLOCK_STATUS_HDR_SIZE;
    g_autofree StatusChunk *chunks = g_new0(StatusChunk, MAX(client->meta_count, 1));
    guint nc = 0;

    if (client->meta_base_allocation) {
        chunks[nc].id = NBD_META_ID_BASE_ALLOCATION;
        status_chunk(ctx, &chunks[nc++], false);
    }
    if (client->meta_allocation_depth) {
        chunks[nc].id = NBD_META_ID_ALLOCATION_DEPTH;
        status_chunk(ctx, &chunks[nc++], true);
    }
    for (guint i = 0; client->meta_bitmaps && i < exp->n_bitmaps; i++) {
        if (client->meta_bitmaps[i]) {
            chunks[nc].id = NBD_META_ID_DIRTY_BITMAP(i);
            bitmap_chunk(ctx, exp->bitmaps[i], &chunks[nc++]);
        }
    }

    size_t total = 0;
    for (guint c = 0; c < nc; c++) {
        total += NBD_REPLY_HEADER_MAX_SIZE + hdr + chunks[c].n * desc;
    }
    ctx->hdrs = g_malloc(MAX(total, 1));
    uint8_t *h = ctx->hdrs;
    size_t off = 0;
    for (guint c = 0; c < nc; c++) {
        StatusChunk *k = &chunks[c];
        size_t body = hdr + k->n * desc;
        off += chunk_header(ctx, h + off, c + 1 == nc ? NBD_REPLY_FLAG_DONE : 0,
                            ext ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS,
                            body);
        off += ext ? nbd_encode_block_status_ext_hdr(h + off, k->id, k->n)
                   : nbd_encode_block_status_hdr(h + off, k->id);
        for (guint i = 0; i < k->n; i++) {
            off += ext ? nbd_encode_extent_ext(h + off, k->ext[i].length, k->ext[i].status)
                       : nbd_encode_extent(h + off, (uint32_t) k->ext[i].length,
                                           k->ext[i].status);
        }
        g_free(k->ext);
    }
    ctx->iov[0] = (struct iovec) { h, off };
    send_reply(ctx, 1);
}

void nbd_request_complete(NBDRequestCtx *ctx)
{
    if (ctx->ret < 0) {
        nbd_reply_error(ctx, nbd_errno(ctx->ret, &ctx->req), ctx->errmsg);
        return;
    }
    switch (ctx->req.type) {
    case NBD_CMD_READ:
        reply_read(ctx);
        break;
    case NBD_CMD_BLOCK_STATUS:
        reply_block_status(ctx);
        break;
    default:
        nbd_reply_ok_empty(ctx);
        break;
    }
}
