/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The transmission phase: parse every request header the input buffer holds,
 * check each one in one place (nbd_request_validate), run it against the node
 * asynchronously, and queue its reply; the output queue sends replies in
 * batches with one vectored write. Write payloads are read straight into the
 * request's own buffer and read replies are sent from it, so data is never
 * copied twice. In-flight requests and bytes are bounded per connection.
 */
#include "server-int.h"
#include "server-request.h"
#include "util/buffer-pool.h"
#include "util/iov.h"

#include <errno.h>
#include <string.h>

/* A WRITE this large makes the next read take no more than a header. */
#define NBD_LARGE_WRITE (64 * 1024)

void nbd_transmission_set_limits(NBDConn *client)
{
    NBDExport *exp = client->exp;
    client->limits = (NBDRequestLimits) {
        .mode = client_mode(client),
        .tx_flags = exp->tx_flags,
        .export_size = client->export_size,
        .block_size_advertised = client->block_size_advertised,
        .min_block = exp->min_block,
        .max_block = exp->max_block,
        .max_payload = NBD_MAX_PAYLOAD,
        .n_contexts = client->meta_count,
    };
}

void nbd_transmission_begin(NBDConn *client)
{
    nbd_conn_enlarge_send_buffer(client);
    /* Requests may already be waiting behind the last option. */
    if (nbd_conn_input_avail(client)) {
        nbd_conn_pause_reading(client, true);
        nbd_conn_pause_reading(client, false);
    }
}

void nbd_transmission_start(NBDConn *client)
{
    nbd_transmission_set_limits(client);
    nbd_transmission_begin(client);
}

void nbd_transmission_cleanup(NBDConn *client)
{
    /* A request still collecting its payload has not reached the node:
     * nobody else will free it. */
    NBDRequestCtx *ctx = client->cur_write;
    if (ctx) {
        client->cur_write = NULL;
        ctx->out.sent(&ctx->out);
    }
    /* Nor one whose error waits for its payload to be skipped. */
    ctx = client->discard_ctx;
    if (ctx) {
        client->discard_ctx = NULL;
        ctx->out.sent(&ctx->out);
    }
}

/* --- request lifetime --- */

static void request_free(NBDOutItem *item)
{
    NBDRequestCtx *ctx = G_STRUCT_MEMBER_P(item, -G_STRUCT_OFFSET(NBDRequestCtx, out));
    NBDConn *client = ctx->client;
    nbd_counter_set(&client->in_flight, client->in_flight - 1);
    client->in_flight_bytes -= ctx->buf_len;
    if (ctx->iov != ctx->small_iov) {
        g_free(ctx->iov);
    }
    if (ctx->hdrs != ctx->small_hdrs) {
        g_free(ctx->hdrs);
    }
    berth_buffer_give(ctx->buf, ctx->buf_cap);
    g_free(ctx->errmsg);
    g_free(ctx->extents);
    g_free(ctx);
    if (client->phase == NBD_CONN_TRANSMISSION && client->read_paused &&
        client->in_flight < NBD_CONN_MAX_IN_FLIGHT &&
        client->in_flight_bytes < NBD_CONN_MAX_IN_FLIGHT_BYTES) {
        nbd_conn_pause_reading(client, false);
    }
    nbd_conn_request_done(client);
    nbd_conn_put(client);
}

static NBDRequestCtx *request_new(NBDConn *client, const NBDRequest *req, uint64_t buf_len)
{
    NBDRequestCtx *ctx = g_new0(NBDRequestCtx, 1);
    ctx->client = nbd_conn_get(client);
    ctx->req = *req;
    ctx->out.sent = request_free;
    ctx->iov = ctx->small_iov;
    ctx->hdrs = ctx->small_hdrs;
    if (buf_len) {
        ctx->buf = berth_buffer_take(buf_len, &ctx->buf_cap);
        ctx->buf_len = ctx->buf ? buf_len : 0;
    }
    nbd_counter_set(&client->in_flight, client->in_flight + 1);
    client->in_flight_bytes += ctx->buf_len;
    return ctx;
}

/* --- running requests against the node --- */

static void note_result(NBDRequestCtx *ctx, int ret, const GError *err)
{
    if (ret < 0 && ctx->ret >= 0) {
        ctx->ret = ret;
        ctx->errmsg = g_strdup(err ? err->message : g_strerror(-ret));
    }
}

static void on_flush_after(gpointer opaque, int ret, const GError *err)
{
    NBDRequestCtx *ctx = opaque;
    note_result(ctx, ret, err);
    nbd_request_complete(ctx);
}

static void on_op_done(gpointer opaque, int ret, const GError *err)
{
    NBDRequestCtx *ctx = opaque;
    note_result(ctx, ret, err);
    if (--ctx->pending > 0) {
        return;
    }
    if (ctx->fua_flush && ctx->ret >= 0) {
        bdrv_aio_flush(ctx->client->exp->bs, on_flush_after, ctx);
        return;
    }
    nbd_request_complete(ctx);
}

/* Merge neighbours with the same status so clients get few, long extents. */
static void store_extents(NBDRequestCtx *ctx, const BdrvExtent *ext, guint n)
{
    ctx->extents = g_new(BdrvExtent, MAX(n, 1));
    guint k = 0;
    uint64_t total = 0;
    for (guint i = 0; i < n && total < ctx->req.length; i++) {
        uint64_t len = MIN(ext[i].length, ctx->req.length - total);
        if (len == 0) {
            continue;
        }
        if (k > 0 && ctx->extents[k - 1].status == ext[i].status &&
            ctx->extents[k - 1].length + len <= UINT32_MAX) {
            ctx->extents[k - 1].length += len;
        } else if (k < NBD_MAX_STATUS_EXTENTS) {
            ctx->extents[k++] = (BdrvExtent) { len, ext[i].status };
        } else {
            break;
        }
        total += len;
    }
    ctx->n_extents = k;
}

/*
 * A READ's extents, as bdrv_aio_preadv_extents() reported them:
 * kept when they name a hole, which the node then left unfilled, made to
 * cover the request exactly (what they leave out was filled: data).
 */
static void on_read_done(gpointer opaque, int ret, const BdrvExtent *ext, guint n,
                         const GError *err)
{
    NBDRequestCtx *ctx = opaque;
    bool holes = false;
    for (guint i = 0; ret >= 0 && i < n; i++) {
        holes |= (ext[i].status & BDRV_BLOCK_ZERO) != 0;
    }
    if (holes) {
        store_extents(ctx, ext, n);
        uint64_t total = 0;
        for (guint i = 0; i < ctx->n_extents; i++) {
            total += ctx->extents[i].length;
        }
        if (total < ctx->req.length) {
            ctx->extents = g_renew(BdrvExtent, ctx->extents, ctx->n_extents + 1);
            ctx->extents[ctx->n_extents++] =
                (BdrvExtent) { ctx->req.length - total, BDRV_BLOCK_DATA };
        }
        ctx->holes_unread = true;
    }
    on_op_done(opaque, ret, err);
}

static void on_status_done(gpointer opaque, int ret, const BdrvExtent *ext, guint n,
                           const GError *err)
{
    NBDRequestCtx *ctx = opaque;
    if (ret >= 0) {
        store_extents(ctx, ext, n);
        if (ctx->n_extents == 0) {
            ret = -EIO;
            err = NULL;
        }
    }
    on_op_done(opaque, ret, err);
}

static void submit(NBDRequestCtx *ctx)
{
    NBDConn *client = ctx->client;
    NBDExport *exp = client->exp;
    BlockDriverState *bs = exp->bs;
    const NBDRequest *req = &ctx->req;
    uint64_t off = exp->dev_offset + req->offset;
    bool fua = (req->flags & NBD_CMD_FLAG_FUA) || exp->writethrough;
    struct iovec iov = { ctx->buf, req->length };

    ctx->pending = 1;
    switch (req->type) {
    case NBD_CMD_READ:
        if (!ctx->buf) {
            note_result(ctx, -ENOMEM, NULL);
            ctx->pending = 0;
            nbd_request_complete(ctx);
            return;
        }
        if (exp->info.read_leaves_buffer) {
            /* Pooled buffers hold earlier requests' data, maybe another
             * client's: never send that. */
            memset(ctx->buf, 0, req->length);
        }
        /* A node that reads as zeroes need not fill what would be sent
         * as a hole anyway (a null-co read of 1 MiB spent 76 % of its CPU
         * in memset and the zero scan). */
        ctx->zeroes_unread = exp->info.reads_zeroes && nbd_reply_sparse_allowed(ctx);
        if (!ctx->zeroes_unread) {
            /* Holes the node knows of (memory) stay unfilled and go out as
             * holes, or as bytes from a shared area of zeroes: a large read
             * of a sparse disk spent 70 % of its CPU zeroing them (and
             * scanning them after). */
            bdrv_aio_preadv_extents(bs, off, &iov, 1, NBD_READ_MAX_CHUNKS - 1,
                                    on_read_done, ctx);
            break;
        }
        bdrv_aio_preadv_flags(bs, off, &iov, 1,
                              ctx->zeroes_unread ? BDRV_REQ_ZEROES_UNFILLED : 0,
                              on_op_done, ctx);
        break;
    case NBD_CMD_WRITE:
        bdrv_aio_pwritev(bs, off, &iov, 1, fua ? BDRV_REQ_FUA : 0, on_op_done, ctx);
        break;
    case NBD_CMD_FLUSH:
        bdrv_aio_flush(bs, on_op_done, ctx);
        break;
    case NBD_CMD_TRIM:
        ctx->fua_flush = fua;
        bdrv_aio_pdiscard(bs, off, req->length, on_op_done, ctx);
        break;
    case NBD_CMD_WRITE_ZEROES: {
        BdrvRequestFlags f = fua ? BDRV_REQ_FUA : 0;
        if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
            f |= BDRV_REQ_MAY_UNMAP;
        }
        if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
            f |= BDRV_REQ_NO_FALLBACK;
        }
        bdrv_aio_pwrite_zeroes(bs, off, req->length, f, on_op_done, ctx);
        break;
    }
    case NBD_CMD_CACHE:
        bdrv_aio_cache(bs, off, req->length, on_op_done, ctx);
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!client->meta_base_allocation && !client->meta_allocation_depth) {
            /* Only dirty bitmaps: answered from memory, no node request. */
            ctx->pending = 0;
            nbd_request_complete(ctx);
            return;
        }
        /* qemu:allocation-depth's one extent under REQ_ONE may span several
         * of base:allocation's: ask for all, each context keeps what it may. */
        bdrv_aio_block_status(bs, off, req->length,
                              (req->flags & NBD_CMD_FLAG_REQ_ONE) &&
                              !client->meta_allocation_depth ? 1 : NBD_MAX_STATUS_EXTENTS,
                              on_status_done, ctx);
        break;
    default:
        /* validation let through only known commands */
        note_result(ctx, -EINVAL, NULL);
        ctx->pending = 0;
        nbd_request_complete(ctx);
        break;
    }
}

/* --- reading requests --- */

static bool over_limits(NBDConn *client)
{
    return client->in_flight >= NBD_CONN_MAX_IN_FLIGHT ||
           client->in_flight_bytes >= NBD_CONN_MAX_IN_FLIGHT_BYTES;
}

/* Move buffered input into the payload being collected; true when complete. */
static bool fill_payload(NBDConn *client)
{
    NBDRequestCtx *ctx = client->cur_write;
    size_t need = ctx->buf_len - client->cur_write_have;
    size_t take = MIN(need, nbd_conn_input_avail(client));
    memcpy(ctx->buf + client->cur_write_have, client->inbuf + client->in_start, take);
    client->in_start += take;
    client->cur_write_have += take;
    return client->cur_write_have == ctx->buf_len;
}

/*
 * Refuse a request whose payload is still on the wire. The error goes out
 * once the payload is skipped, not before: a client may still be writing
 * it and not yet expect a reply (libnbd drops the connection on a reply to
 * a request it has not finished sending).
 */
static void reply_error_after_payload(NBDRequestCtx *ctx, uint64_t payload_length,
                                      uint32_t nbd_err, const char *msg)
{
    NBDConn *client = ctx->client;

    if (!payload_length) {
        nbd_reply_error(ctx, nbd_err, msg);
        return;
    }
    client->discard_left = payload_length;
    client->discard_ctx = ctx;
    client->discard_err = nbd_err;
    client->discard_msg = msg;
}

static void drop_payload(NBDConn *client)
{
    size_t take = MIN(client->discard_left, nbd_conn_input_avail(client));
    client->in_start += take;
    client->discard_left -= take;
    if (!client->discard_left && client->discard_ctx) {
        NBDRequestCtx *ctx = client->discard_ctx;
        client->discard_ctx = NULL;
        nbd_reply_error(ctx, client->discard_err, client->discard_msg);
    }
}

G_STATIC_ASSERT(NBD_CONN_MAX_IN_FLIGHT_BYTES >= NBD_MAX_PAYLOAD);

/*
 * Would a request needing a buffer of buf_len bytes keep the connection
 * within its byte limit? Alone it always does (buf_len is at most
 * NBD_MAX_PAYLOAD), so a wait ends when earlier requests are freed.
 */
static bool request_fits(NBDConn *client, uint64_t buf_len)
{
    return !buf_len || !client->in_flight ||
           client->in_flight_bytes + buf_len <= NBD_CONN_MAX_IN_FLIGHT_BYTES;
}

typedef enum {
    PARSE_DONE,                 /* one request handled (or the connection ends) */
    PARSE_NEED_MORE,            /* the header is not all in the buffer yet */
    PARSE_NO_ROOM,              /* it waits for in-flight bytes to drain */
} ParseResult;

/* Handle one request header from the buffer. */
static ParseResult parse_request(NBDConn *client)
{
    NBDRequest req;
    const uint8_t *p = client->inbuf + client->in_start;
    NBDDecodeResult r = nbd_decode_request(p, nbd_conn_input_avail(client),
                                           client->limits.mode, &req);
    if (r.status == NBD_DECODE_NEED_MORE) {
        return PARSE_NEED_MORE;
    }
    if (r.status == NBD_DECODE_INVALID) {
        g_info("NBD client %s: %s, disconnecting", berth_channel_peer(client->ch), r.reason);
        nbd_conn_finish(client, false);
        return PARSE_DONE;
    }
    NBDRequestVerdict v = nbd_request_validate(&req, &client->limits);
    if (v.payload == NBD_PAYLOAD_DISCONNECT) {
        g_info("NBD client %s: %s, disconnecting", berth_channel_peer(client->ch),
               v.message ? v.message : "request payload cannot be consumed");
        nbd_conn_finish(client, false);
        return PARSE_DONE;
    }
    if (req.type == NBD_CMD_DISC && v.error == NBD_SUCCESS) {
        /* No reply; the replies of earlier requests still go out. */
        client->in_start += r.size;
        nbd_conn_finish(client, true);
        return PARSE_DONE;
    }
    bool has_payload = v.payload == NBD_PAYLOAD_READ;
    uint64_t buf_len = (v.error == NBD_SUCCESS && !v.no_op &&
                        (req.type == NBD_CMD_READ || has_payload)) ? req.length : 0;
    if (has_payload) {
        buf_len = v.payload_length;
    }
    if (!request_fits(client, buf_len)) {
        /* Leave the header where it is: decoding and validating are pure,
         * so doing them again once there is room costs nothing else. */
        nbd_conn_pause_reading(client, true);
        return PARSE_NO_ROOM;
    }
    client->in_start += r.size;
    client->large_writes = has_payload && v.payload_length >= NBD_LARGE_WRITE;
    NBDRequestCtx *ctx = request_new(client, &req, buf_len);
    if (v.error != NBD_SUCCESS) {
        reply_error_after_payload(ctx, v.payload == NBD_PAYLOAD_DISCARD ? v.payload_length : 0,
                                  v.error, v.message);
    } else if (v.no_op) {
        nbd_reply_ok_empty(ctx);
    } else if (has_payload) {
        if (!ctx->buf) {
            /* Out of memory for the payload: throw it away and say so. */
            reply_error_after_payload(ctx, v.payload_length, NBD_ENOMEM,
                                      "out of memory for the write payload");
        } else {
            client->cur_write = ctx;
            client->cur_write_have = 0;
            if (fill_payload(client)) {
                client->cur_write = NULL;
                submit(ctx);
            }
        }
    } else {
        submit(ctx);
    }
    return PARSE_DONE;
}

/*
 * After a large WRITE the next request is likely another one: take no more
 * than its header into the input buffer, so that its payload is read
 * straight into its own buffer instead of into ours and then copied (a
 * readv of up to 256 KiB would bring the first 200 KiB or so of it).
 */
static size_t input_limit(NBDConn *client)
{
    size_t header = client->limits.mode == NBD_MODE_EXTENDED ? NBD_EXTENDED_REQUEST_SIZE
                                                             : NBD_REQUEST_SIZE;
    size_t have = nbd_conn_input_avail(client);

    if (!client->large_writes) {
        return SIZE_MAX;
    }
    return header > have ? header - have : SIZE_MAX;
}

bool nbd_transmission_input(NBDConn *client)
{
    /* Once a read comes back short, the socket is empty: wait for poll. */
    bool drained = false;
    /* Bounded work per wakeup keeps one busy client from starving others. */
    for (int reads = 0; reads < 8;) {
        if (client->phase != NBD_CONN_TRANSMISSION) {
            return client->phase != NBD_CONN_CLOSED;
        }
        void *direct = NULL;
        size_t direct_len = 0;
        if (client->cur_write) {
            if (fill_payload(client)) {
                NBDRequestCtx *ctx = client->cur_write;
                client->cur_write = NULL;
                submit(ctx);
                continue;
            }
            /* Read the rest of a payload straight into its buffer. */
            direct = client->cur_write->buf + client->cur_write_have;
            direct_len = client->cur_write->buf_len - client->cur_write_have;
        } else if (client->discard_left || client->discard_ctx) {
            drop_payload(client);
            if (client->discard_left) {
                /* fall through to read more */
            } else {
                continue;
            }
        } else if (over_limits(client)) {
            nbd_conn_pause_reading(client, true);
            return true;
        } else {
            ParseResult pr = parse_request(client);
            if (pr == PARSE_NO_ROOM) {
                return true;
            }
            if (pr == PARSE_DONE) {
                continue;
            }
        }
        if (drained) {
            return true;
        }
        ssize_t got = nbd_conn_read_more(client, direct, direct_len, input_limit(client),
                                           &drained);
        if (got == BERTH_CHANNEL_AGAIN) {
            return true;
        }
        if (got <= 0) {
            nbd_conn_close(client);
            return false;
        }
        if (direct_len) {
            client->cur_write_have += MIN((size_t) got, direct_len);
        }
        reads++;
    }
    /* Budget spent: buffered requests must not wait for more socket input. */
    nbd_conn_kick_read(client);
    return true;
}
