/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading replies for the asynchronous client session: decode a header,
 * find the request its cookie names, check the reply against that request
 * (kind, chunk type, bounds, lengths, context id), then route its payload -
 * READ data straight into the caller's buffer, anything else into a small
 * bounded buffer.  Any violation kills the session (nbd_session_die): after a
 * lie the stream cannot be trusted, and every pending request gets EIO.
 */
#include "session-int.h"

#include "util/iov.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

/* Large READ payloads skip the input buffer when it is empty. */
#define DIRECT_READ_MIN (16u * 1024u)

static void start_header(NBDClientSession *s)
{
    s->recv = NBD_SESSION_RECV_HEADER;
    s->cur = NULL;
    s->remaining = 0;
    g_clear_pointer(&s->small, g_free);
    s->small_len = 0;
}

/* The last reply for cur: finish it with the final checks. */
static void complete_cur(NBDClientSession *s)
{
    NBDSessionReq *req = s->cur;
    if (req->ret == 0 && req->chunked && req->cmd == NBD_CMD_READ &&
        req->covered != req->length) {
        nbd_session_req_fail(req, EIO, "server answered only %" G_GUINT64_FORMAT " of %"
                             G_GUINT64_FORMAT " bytes of a read", req->covered, req->length);
    }
    if (req->ret == 0 && req->cmd == NBD_CMD_BLOCK_STATUS && !req->has_status) {
        nbd_session_req_fail(req, EIO, "server sent no block status for the request");
    }
    nbd_session_finish(req);
}

static void end_chunk(NBDClientSession *s)
{
    bool done = s->reply.kind == NBD_REPLY_KIND_SIMPLE ||
                (s->reply.flags & NBD_REPLY_FLAG_DONE);
    if (done) {
        complete_cur(s);
    }
    start_header(s);
}

/* A range [off, off+len) must lie inside the request. */
static bool in_request(const NBDSessionReq *req, uint64_t off, uint64_t len)
{
    return off >= req->offset && len <= req->length && off - req->offset <= req->length - len;
}

/*
 * Record that [off, off+len) of a READ arrived (off relative to the
 * request); chunks may come in any order but must not overlap, else a
 * lying server could leave part of the buffer unwritten and still add up.
 */
static bool add_piece(NBDClientSession *s, NBDSessionReq *req, uint64_t off, uint64_t len)
{
    if (!req->ranges) {
        req->ranges = g_array_new(FALSE, FALSE, sizeof(NBDRange));
    }
    GArray *a = req->ranges;
    NBDRange *r = (NBDRange *) a->data;
    uint64_t end = off + len;
    guint lo = 0, hi = a->len;
    while (lo < hi) {               /* first range that ends after off */
        guint mid = lo + (hi - lo) / 2;
        if (r[mid].end <= off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < a->len && r[lo].start < end) {
        nbd_session_protocol_error(s, "read chunks overlap at offset %" G_GUINT64_FORMAT,
                                   req->offset + MAX(off, r[lo].start));
        return false;
    }
    bool join_prev = lo > 0 && r[lo - 1].end == off;
    bool join_next = lo < a->len && r[lo].start == end;
    if (join_prev && join_next) {
        r[lo - 1].end = r[lo].end;
        g_array_remove_index(a, lo);
    } else if (join_prev) {
        r[lo - 1].end = end;
    } else if (join_next) {
        r[lo].start = off;
    } else if (a->len >= NBD_SESSION_MAX_READ_PIECES) {
        nbd_session_protocol_error(s, "read answered in too many scattered chunks");
        return false;
    } else {
        NBDRange n = { off, end };
        g_array_insert_val(a, lo, n);
    }
    req->covered += len;
    return true;
}

/* ---- chunk payloads read into s->small ---------------------------------------- */

static bool handle_hole(NBDClientSession *s)
{
    NBDSessionReq *req = s->cur;
    uint64_t off;
    uint32_t size;
    NBDDecodeResult res = nbd_decode_offset_hole(s->small, s->small_len, s->reply.length,
                                                 &off, &size);
    if (res.status != NBD_DECODE_OK) {
        nbd_session_protocol_error(s, "bad OFFSET_HOLE chunk: %s",
                                   res.reason ? res.reason : "truncated");
        return false;
    }
    if (!in_request(req, off, size)) {
        nbd_session_protocol_error(s, "OFFSET_HOLE chunk outside the read request");
        return false;
    }
    if (!add_piece(s, req, off - req->offset, size)) {
        return false;
    }
    berth_iov_memset(req->iov, req->niov, off - req->offset, 0, size);
    return true;
}

static bool handle_error(NBDClientSession *s)
{
    NBDSessionReq *req = s->cur;
    NBDErrorChunk ec;
    NBDDecodeResult res = nbd_decode_error_chunk(s->small, s->small_len, s->reply.type, &ec);
    if (res.status != NBD_DECODE_OK) {
        nbd_session_protocol_error(s, "bad error chunk: %s",
                                   res.reason ? res.reason : "truncated");
        return false;
    }
    if (ec.has_offset && (req->cmd != NBD_CMD_READ || !in_request(req, ec.offset, 1))) {
        nbd_session_protocol_error(s, "ERROR_OFFSET chunk outside the request");
        return false;
    }
    int e = nbd_error_to_errno(ec.error);
    if (ec.message.len) {
        nbd_session_req_fail(req, e, "%.*s", (int) MIN(ec.message.len, 4096), ec.message.data);
    } else {
        nbd_session_req_fail(req, e, "server reported %s", g_strerror(e));
    }
    return true;
}

static bool handle_block_status(NBDClientSession *s)
{
    NBDSessionReq *req = s->cur;
    NBDBlockStatusView v;
    NBDDecodeResult res = nbd_decode_block_status(s->small, s->small_len, s->reply.type, &v);
    if (res.status != NBD_DECODE_OK) {
        nbd_session_protocol_error(s, "bad BLOCK_STATUS chunk: %s",
                                   res.reason ? res.reason : "truncated");
        return false;
    }
    if (v.context_id != s->info.meta_context_id) {
        nbd_session_protocol_error(s, "BLOCK_STATUS for unknown context id %" G_GUINT32_FORMAT,
                                   v.context_id);
        return false;
    }
    if (req->has_status) {
        nbd_session_protocol_error(s, "two BLOCK_STATUS chunks for one context");
        return false;
    }
    if (v.n_extents == 0) {
        nbd_session_protocol_error(s, "BLOCK_STATUS chunk without extents");
        return false;
    }
    req->has_status = true;
    req->extents = g_array_sized_new(FALSE, FALSE, sizeof(NBDExtent),
                                     MIN(v.n_extents, NBD_SESSION_MAX_EXTENTS));
    /* Keep what covers the export from the offset; the spec lets the last
     * extent run past the request, never past the export. */
    uint64_t pos = req->offset, end = s->info.size;
    guint keep = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_SESSION_MAX_EXTENTS;
    for (uint32_t i = 0; i < v.n_extents && pos < end; i++) {
        if (req->extents->len == keep) {
            break;
        }
        NBDExtent e = nbd_block_status_extent(&v, i);
        e.length = MIN(e.length, end - pos);
        pos += e.length;
        g_array_append_val(req->extents, e);
    }
    return true;
}

static bool finish_small(NBDClientSession *s)
{
    uint16_t type = s->reply.type;
    bool ok;
    if (NBD_REPLY_TYPE_IS_ERR(type)) {
        ok = handle_error(s);
    } else if (type == NBD_REPLY_TYPE_OFFSET_HOLE) {
        ok = handle_hole(s);
    } else {
        ok = handle_block_status(s);
    }
    if (ok) {
        end_chunk(s);
    }
    return ok;
}

/* ---- headers ------------------------------------------------------------------------ */

static bool start_simple(NBDClientSession *s, NBDSessionReq *req)
{
    if (req->chunked) {
        nbd_session_protocol_error(s, "simple reply after structured chunks for one request");
        return false;
    }
    if (s->reply.error) {
        int e = nbd_error_to_errno(s->reply.error);
        nbd_session_req_fail(req, e, "server reported %s", g_strerror(e));
        end_chunk(s);
        return true;
    }
    if (req->cmd == NBD_CMD_BLOCK_STATUS) {
        nbd_session_protocol_error(s, "simple reply to a successful BLOCK_STATUS");
        return false;
    }
    if (req->cmd == NBD_CMD_READ) {
        if (s->mode != NBD_MODE_SIMPLE) {
            nbd_session_protocol_error(s, "simple reply to a successful READ "
                                       "with structured replies negotiated");
            return false;
        }
        s->recv = NBD_SESSION_RECV_DATA;
        s->data_off = 0;
        s->remaining = req->length;
        if (!s->remaining) {
            end_chunk(s);
        }
        return true;
    }
    end_chunk(s);
    return true;
}

/*
 * OFFSET_DATA: the 8-byte offset is read as a small payload first, then the
 * data goes straight to the iov.  s->small_len == 8 with a remaining data
 * length tells finish_offset() apart from other small chunks.
 */
static bool start_chunk(NBDClientSession *s, NBDSessionReq *req)
{
    const NBDReplyHeader *h = &s->reply;
    req->chunked = true;
    uint16_t type = h->type;
    if (type == NBD_REPLY_TYPE_NONE) {
        end_chunk(s);
        return true;
    }
    bool read_type = type == NBD_REPLY_TYPE_OFFSET_DATA || type == NBD_REPLY_TYPE_OFFSET_HOLE;
    bool status_type = type == (s->mode == NBD_MODE_EXTENDED ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                                                             : NBD_REPLY_TYPE_BLOCK_STATUS);
    if (read_type && req->cmd != NBD_CMD_READ) {
        nbd_session_protocol_error(s, "%s chunk for a %s request", nbd_reply_type_name(type),
                                   nbd_cmd_name(req->cmd));
        return false;
    }
    if (!read_type && !status_type && !NBD_REPLY_TYPE_IS_ERR(type)) {
        nbd_session_protocol_error(s, "unexpected chunk type %s (%u)",
                                   nbd_reply_type_name(type), type);
        return false;
    }
    if (status_type && req->cmd != NBD_CMD_BLOCK_STATUS) {
        nbd_session_protocol_error(s, "block status chunk for a %s request",
                                   nbd_cmd_name(req->cmd));
        return false;
    }
    if (type == NBD_REPLY_TYPE_OFFSET_DATA) {
        if (h->length <= 8 || h->length - 8 > req->length) {
            nbd_session_protocol_error(s, "OFFSET_DATA chunk of %" G_GUINT64_FORMAT
                                       " bytes for a %" G_GUINT64_FORMAT "-byte read",
                                       h->length, req->length);
            return false;
        }
    } else if (h->length > NBD_SESSION_SMALL_CHUNK_MAX) {
        nbd_session_protocol_error(s, "oversized %s chunk (%" G_GUINT64_FORMAT " bytes)",
                                   nbd_reply_type_name(type), h->length);
        return false;
    }
    uint64_t small = type == NBD_REPLY_TYPE_OFFSET_DATA ? 8 : h->length;
    s->recv = NBD_SESSION_RECV_SMALL;
    s->small = g_malloc(MAX(small, 1));
    s->small_len = 0;
    s->remaining = small;
    if (!small) {
        return finish_small(s);
    }
    return true;
}

static bool start_reply(NBDClientSession *s)
{
    NBDSessionReq *req = nbd_session_lookup(s, s->reply.cookie);
    if (!req || req->sent < req->hdr_len + req->payload_len) {
        nbd_session_protocol_error(s, "reply for unknown cookie %#" G_GINT64_MODIFIER "x",
                                   s->reply.cookie);
        return false;
    }
    s->cur = req;
    if (s->reply.kind == NBD_REPLY_KIND_SIMPLE) {
        return start_simple(s, req);
    }
    return start_chunk(s, req);
}

/* The OFFSET_DATA offset is in: check it and switch to the data itself. */
static bool finish_offset(NBDClientSession *s)
{
    NBDSessionReq *req = s->cur;
    uint64_t off, len;
    NBDDecodeResult res = nbd_decode_offset_data_hdr(s->small, s->small_len, s->reply.length,
                                                     &off, &len);
    if (res.status != NBD_DECODE_OK) {
        nbd_session_protocol_error(s, "bad OFFSET_DATA chunk: %s",
                                   res.reason ? res.reason : "truncated");
        return false;
    }
    if (!in_request(req, off, len)) {
        nbd_session_protocol_error(s, "OFFSET_DATA chunk outside the read request");
        return false;
    }
    if (!add_piece(s, req, off - req->offset, len)) {
        return false;
    }
    g_clear_pointer(&s->small, g_free);
    s->small_len = 0;
    s->recv = NBD_SESSION_RECV_DATA;
    s->data_off = off - req->offset;
    s->remaining = len;
    return true;
}

bool nbd_session_process_input(NBDClientSession *s)
{
    while (!s->dead) {
        size_t avail = s->in_len - s->in_pos;
        const uint8_t *p = s->inbuf + s->in_pos;
        switch (s->recv) {
        case NBD_SESSION_RECV_HEADER: {
            if (!avail) {
                return true;
            }
            NBDDecodeResult res = nbd_decode_reply_header(p, avail, s->mode, &s->reply);
            if (res.status == NBD_DECODE_NEED_MORE) {
                return true;
            }
            if (res.status == NBD_DECODE_INVALID) {
                nbd_session_protocol_error(s, "%s", res.reason);
                return false;
            }
            s->in_pos += res.size;
            if (!start_reply(s)) {
                return false;
            }
            break;
        }
        case NBD_SESSION_RECV_DATA: {
            size_t n = (size_t) MIN((uint64_t) avail, s->remaining);
            if (!n && s->remaining) {
                return true;
            }
            berth_iov_from_buf(s->cur->iov, s->cur->niov, s->data_off, p, n);
            s->in_pos += n;
            s->data_off += n;
            s->remaining -= n;
            if (!s->remaining) {
                end_chunk(s);
            }
            break;
        }
        case NBD_SESSION_RECV_SMALL: {
            size_t n = (size_t) MIN((uint64_t) avail, s->remaining);
            if (!n) {
                return true;
            }
            memcpy(s->small + s->small_len, p, n);
            s->small_len += n;
            s->in_pos += n;
            s->remaining -= n;
            if (s->remaining) {
                return true;
            }
            bool ok = s->reply.type == NBD_REPLY_TYPE_OFFSET_DATA ? finish_offset(s)
                                                                  : finish_small(s);
            if (!ok) {
                return false;
            }
            break;
        }
        }
    }
    return false;
}

int nbd_session_read_direct(NBDClientSession *s, GError **errp)
{
    if (s->recv != NBD_SESSION_RECV_DATA || s->in_pos != s->in_len ||
        s->remaining < DIRECT_READ_MIN) {
        return 0;
    }
    struct iovec iov[16];
    int n = berth_iov_slice(s->cur->iov, s->cur->niov, s->data_off, s->remaining, iov,
                            (int) G_N_ELEMENTS(iov), NULL);
    s->in_pos = s->in_len = 0;
    ssize_t got = berth_channel_readv(s->ch, iov, n, errp);
    if (got == BERTH_CHANNEL_AGAIN || got < 0) {
        return (int) got;
    }
    if (got == 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                            "server closed the connection in the middle of a reply");
        return BERTH_CHANNEL_ERROR;
    }
    s->data_off += (uint64_t) got;
    s->remaining -= (uint64_t) got;
    if (!s->remaining) {
        end_chunk(s);
    }
    return 1;
}
