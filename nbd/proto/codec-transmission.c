/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Transmission byte formats of the NBD wire codec: request headers (compact
 * and extended), reply headers (simple, structured, extended), the payloads
 * of reply chunks (OFFSET_DATA, OFFSET_HOLE, errors, block status in both
 * widths) and the BLOCK_STATUS request payload.  Header decoders check the
 * magic as soon as its four bytes are present, so a desynchronised stream is
 * reported at once; chunk decoders check the length formula the spec gives
 * for each type before reading any field.  Whether a well-formed request is
 * acceptable is decided in rules.c (nbd_request_validate).
 */
#include <string.h>

#include "nbd/proto/codec.h"

/* ---- Requests ---- */

size_t nbd_request_header_size(NBDMode mode)
{
    return mode == NBD_MODE_EXTENDED ? NBD_EXTENDED_REQUEST_SIZE : NBD_REQUEST_SIZE;
}

size_t nbd_encode_request(uint8_t *buf, NBDMode mode, const NBDRequest *req)
{
    bool ext = mode == NBD_MODE_EXTENDED;

    if (!ext && req->length > UINT32_MAX) {
        return 0;
    }
    nbd_store_be32(buf, ext ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC);
    nbd_store_be16(buf + 4, req->flags);
    nbd_store_be16(buf + 6, req->type);
    nbd_store_be64(buf + 8, req->cookie);
    nbd_store_be64(buf + 16, req->offset);
    if (ext) {
        nbd_store_be64(buf + 24, req->length);
        return NBD_EXTENDED_REQUEST_SIZE;
    }
    nbd_store_be32(buf + 24, (uint32_t) req->length);
    return NBD_REQUEST_SIZE;
}

NBDDecodeResult nbd_decode_request(const uint8_t *buf, size_t len, NBDMode mode,
                                   NBDRequest *out)
{
    bool ext = mode == NBD_MODE_EXTENDED;
    size_t size = ext ? NBD_EXTENDED_REQUEST_SIZE : NBD_REQUEST_SIZE;

    if (len < 4) {
        return nbd_decode_need(size);
    }
    uint32_t magic = nbd_load_be32(buf);
    if (magic != (ext ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC)) {
        if (magic == NBD_REQUEST_MAGIC) {
            return nbd_decode_invalid("compact request after extended headers were negotiated");
        }
        if (magic == NBD_EXTENDED_REQUEST_MAGIC) {
            return nbd_decode_invalid("extended request without extended headers");
        }
        return nbd_decode_invalid("wrong request magic");
    }
    if (len < size) {
        return nbd_decode_need(size);
    }
    out->flags = nbd_load_be16(buf + 4);
    out->type = nbd_load_be16(buf + 6);
    out->cookie = nbd_load_be64(buf + 8);
    out->offset = nbd_load_be64(buf + 16);
    out->length = ext ? nbd_load_be64(buf + 24) : nbd_load_be32(buf + 24);
    return nbd_decode_ok(size);
}

uint64_t nbd_request_payload_length(const NBDRequest *req, NBDMode mode)
{
    if (mode == NBD_MODE_EXTENDED) {
        return (req->flags & NBD_CMD_FLAG_PAYLOAD_LEN) ? req->length : 0;
    }
    return req->type == NBD_CMD_WRITE ? req->length : 0;
}

NBDDecodeResult nbd_decode_block_status_payload(const uint8_t *buf, size_t len,
                                                NBDBlockStatusPayload *out)
{
    if (len < NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE) {
        return nbd_decode_invalid("BLOCK_STATUS payload shorter than its effect length");
    }
    if ((len - NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE) % 4) {
        return nbd_decode_invalid("BLOCK_STATUS payload is not a whole number of ids");
    }
    size_t n = (len - NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE) / 4;
    if (n > UINT32_MAX) {
        return nbd_decode_invalid("BLOCK_STATUS payload has too many ids");
    }
    out->effect_length = nbd_load_be64(buf);
    out->n_ids = (uint32_t) n;
    out->ids = buf + NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE;
    return nbd_decode_ok(len);
}

uint32_t nbd_block_status_payload_id(const NBDBlockStatusPayload *p, uint32_t i)
{
    return i < p->n_ids ? nbd_load_be32(p->ids + 4 * (size_t) i) : 0;
}

size_t nbd_encode_block_status_payload(uint8_t *buf, size_t cap, uint64_t effect_length,
                                       const uint32_t *ids, uint32_t n_ids)
{
    size_t total = NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 * (size_t) n_ids;

    if (cap < total) {
        return 0;
    }
    nbd_store_be64(buf, effect_length);
    for (uint32_t i = 0; i < n_ids; i++) {
        nbd_store_be32(buf + NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 * (size_t) i, ids[i]);
    }
    return total;
}

/* ---- Reply headers ---- */

size_t nbd_encode_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t error)
{
    nbd_store_be32(buf, NBD_SIMPLE_REPLY_MAGIC);
    nbd_store_be32(buf + 4, error);
    nbd_store_be64(buf + 8, cookie);
    return NBD_SIMPLE_REPLY_SIZE;
}

size_t nbd_encode_structured_reply(uint8_t *buf, uint64_t cookie, uint16_t flags,
                                   uint16_t type, uint64_t length)
{
    if (length > UINT32_MAX) {
        return 0;
    }
    nbd_store_be32(buf, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_store_be16(buf + 4, flags);
    nbd_store_be16(buf + 6, type);
    nbd_store_be64(buf + 8, cookie);
    nbd_store_be32(buf + 16, (uint32_t) length);
    return NBD_STRUCTURED_REPLY_SIZE;
}

size_t nbd_encode_extended_reply(uint8_t *buf, uint64_t cookie, uint16_t flags,
                                 uint16_t type, uint64_t offset, uint64_t length)
{
    nbd_store_be32(buf, NBD_EXTENDED_REPLY_MAGIC);
    nbd_store_be16(buf + 4, flags);
    nbd_store_be16(buf + 6, type);
    nbd_store_be64(buf + 8, cookie);
    nbd_store_be64(buf + 16, offset);
    nbd_store_be64(buf + 24, length);
    return NBD_EXTENDED_REPLY_SIZE;
}

size_t nbd_encode_chunk_header(uint8_t *buf, NBDMode mode, uint64_t cookie, uint16_t flags,
                               uint16_t type, uint64_t offset, uint64_t length)
{
    switch (mode) {
    case NBD_MODE_STRUCTURED:
        return nbd_encode_structured_reply(buf, cookie, flags, type, length);
    case NBD_MODE_EXTENDED:
        return nbd_encode_extended_reply(buf, cookie, flags, type, offset, length);
    default:
        return 0;
    }
}

NBDDecodeResult nbd_decode_reply_header(const uint8_t *buf, size_t len, NBDMode mode,
                                        NBDReplyHeader *out)
{
    if (len < 4) {
        /* Until the magic is known, the smallest header the mode allows. */
        return nbd_decode_need(mode == NBD_MODE_EXTENDED ? NBD_EXTENDED_REPLY_SIZE
                                                         : NBD_SIMPLE_REPLY_SIZE);
    }
    uint32_t magic = nbd_load_be32(buf);
    size_t size;
    NBDReplyKind kind;

    switch (magic) {
    case NBD_SIMPLE_REPLY_MAGIC:
        if (mode == NBD_MODE_EXTENDED) {
            return nbd_decode_invalid("simple reply after extended headers were negotiated");
        }
        kind = NBD_REPLY_KIND_SIMPLE;
        size = NBD_SIMPLE_REPLY_SIZE;
        break;
    case NBD_STRUCTURED_REPLY_MAGIC:
        if (mode != NBD_MODE_STRUCTURED) {
            return nbd_decode_invalid(mode == NBD_MODE_SIMPLE
                                      ? "structured reply without structured replies negotiated"
                                      : "structured reply after extended headers were negotiated");
        }
        kind = NBD_REPLY_KIND_STRUCTURED;
        size = NBD_STRUCTURED_REPLY_SIZE;
        break;
    case NBD_EXTENDED_REPLY_MAGIC:
        if (mode != NBD_MODE_EXTENDED) {
            return nbd_decode_invalid("extended reply without extended headers");
        }
        kind = NBD_REPLY_KIND_EXTENDED;
        size = NBD_EXTENDED_REPLY_SIZE;
        break;
    default:
        return nbd_decode_invalid("wrong reply magic");
    }
    if (len < size) {
        return nbd_decode_need(size);
    }

    memset(out, 0, sizeof(*out));
    out->kind = kind;
    if (kind == NBD_REPLY_KIND_SIMPLE) {
        out->error = nbd_load_be32(buf + 4);
        out->cookie = nbd_load_be64(buf + 8);
        return nbd_decode_ok(size);
    }
    out->flags = nbd_load_be16(buf + 4);
    out->type = nbd_load_be16(buf + 6);
    out->cookie = nbd_load_be64(buf + 8);
    if (kind == NBD_REPLY_KIND_STRUCTURED) {
        out->length = nbd_load_be32(buf + 16);
    } else {
        out->offset = nbd_load_be64(buf + 16);
        out->length = nbd_load_be64(buf + 24);
        if (out->length > UINT32_MAX) {
            return nbd_decode_invalid("reply chunk length exceeds 32 bits");
        }
    }
    if (out->type == NBD_REPLY_TYPE_NONE) {
        if (out->length != 0) {
            return nbd_decode_invalid("NONE chunk with a payload");
        }
        if (!(out->flags & NBD_REPLY_FLAG_DONE)) {
            return nbd_decode_invalid("NONE chunk without the DONE flag");
        }
    }
    return nbd_decode_ok(size);
}

/* ---- Chunk payloads ---- */

size_t nbd_encode_offset_data_hdr(uint8_t *buf, uint64_t offset)
{
    nbd_store_be64(buf, offset);
    return NBD_OFFSET_DATA_HDR_SIZE;
}

size_t nbd_encode_offset_hole(uint8_t *buf, uint64_t offset, uint32_t hole_size)
{
    nbd_store_be64(buf, offset);
    nbd_store_be32(buf + 8, hole_size);
    return NBD_OFFSET_HOLE_SIZE;
}

size_t nbd_encode_error_chunk(uint8_t *buf, size_t cap, uint32_t error,
                              const char *msg, size_t msg_len)
{
    if (msg_len > NBD_MAX_STRING || cap < NBD_ERROR_HDR_SIZE + msg_len) {
        return 0;
    }
    nbd_store_be32(buf, error);
    nbd_store_be16(buf + 4, (uint16_t) msg_len);
    if (msg_len) {
        memcpy(buf + NBD_ERROR_HDR_SIZE, msg, msg_len);
    }
    return NBD_ERROR_HDR_SIZE + msg_len;
}

size_t nbd_encode_error_offset_chunk(uint8_t *buf, size_t cap, uint32_t error,
                                     const char *msg, size_t msg_len, uint64_t offset)
{
    size_t n;

    if (cap < NBD_ERROR_HDR_SIZE + msg_len + NBD_ERROR_OFFSET_TAIL_SIZE) {
        return 0;
    }
    n = nbd_encode_error_chunk(buf, cap, error, msg, msg_len);
    if (n == 0) {
        return 0;
    }
    nbd_store_be64(buf + n, offset);
    return n + NBD_ERROR_OFFSET_TAIL_SIZE;
}

size_t nbd_encode_block_status_hdr(uint8_t *buf, uint32_t context_id)
{
    nbd_store_be32(buf, context_id);
    return NBD_BLOCK_STATUS_HDR_SIZE;
}

size_t nbd_encode_extent(uint8_t *buf, uint32_t length, uint32_t flags)
{
    nbd_store_be32(buf, length);
    nbd_store_be32(buf + 4, flags);
    return NBD_EXTENT_SIZE;
}

size_t nbd_encode_block_status_ext_hdr(uint8_t *buf, uint32_t context_id, uint32_t count)
{
    nbd_store_be32(buf, context_id);
    nbd_store_be32(buf + 4, count);
    return NBD_BLOCK_STATUS_EXT_HDR_SIZE;
}

size_t nbd_encode_extent_ext(uint8_t *buf, uint64_t length, uint32_t flags)
{
    nbd_store_be64(buf, length);
    nbd_store_be32(buf + 8, 0);
    nbd_store_be32(buf + 12, flags);
    return NBD_EXTENT_EXT_SIZE;
}

NBDDecodeResult nbd_decode_offset_data_hdr(const uint8_t *buf, size_t len,
                                           uint64_t chunk_length, uint64_t *offset,
                                           uint64_t *data_length)
{
    if (chunk_length < NBD_OFFSET_DATA_HDR_SIZE + 1) {
        return nbd_decode_invalid("OFFSET_DATA chunk shorter than 9 bytes");
    }
    if (len < NBD_OFFSET_DATA_HDR_SIZE) {
        return nbd_decode_need(NBD_OFFSET_DATA_HDR_SIZE);
    }
    *offset = nbd_load_be64(buf);
    *data_length = chunk_length - NBD_OFFSET_DATA_HDR_SIZE;
    return nbd_decode_ok(NBD_OFFSET_DATA_HDR_SIZE);
}

NBDDecodeResult nbd_decode_offset_hole(const uint8_t *buf, size_t len, uint64_t chunk_length,
                                       uint64_t *offset, uint32_t *hole_size)
{
    if (chunk_length != NBD_OFFSET_HOLE_SIZE) {
        return nbd_decode_invalid("OFFSET_HOLE chunk length is not 12");
    }
    if (len < NBD_OFFSET_HOLE_SIZE) {
        return nbd_decode_need(NBD_OFFSET_HOLE_SIZE);
    }
    *offset = nbd_load_be64(buf);
    *hole_size = nbd_load_be32(buf + 8);
    if (*hole_size == 0) {
        return nbd_decode_invalid("OFFSET_HOLE with a zero hole size");
    }
    return nbd_decode_ok(NBD_OFFSET_HOLE_SIZE);
}

NBDDecodeResult nbd_decode_error_chunk(const uint8_t *buf, size_t len, uint16_t type,
                                       NBDErrorChunk *out)
{
    if (!NBD_REPLY_TYPE_IS_ERR(type)) {
        return nbd_decode_invalid("not an error chunk type");
    }
    if (len < NBD_ERROR_HDR_SIZE) {
        return nbd_decode_invalid("error chunk shorter than 6 bytes");
    }
    uint32_t error = nbd_load_be32(buf);
    uint16_t msg_len = nbd_load_be16(buf + 4);
    size_t rest = len - NBD_ERROR_HDR_SIZE;

    if (error == 0) {
        return nbd_decode_invalid("error chunk with a zero error value");
    }
    if (msg_len > rest) {
        return nbd_decode_invalid("error message runs past the chunk");
    }
    const char *why = nbd_string_check((const char *) buf + NBD_ERROR_HDR_SIZE, msg_len);
    if (why) {
        return nbd_decode_invalid(why);
    }
    out->error = error;
    out->message.data = (const char *) buf + NBD_ERROR_HDR_SIZE;
    out->message.len = msg_len;
    out->has_offset = false;
    out->offset = 0;
    if (type == NBD_REPLY_TYPE_ERROR_OFFSET) {
        /* The offset is the only field after the message, so the sizes must
         * meet exactly; otherwise where the offset lies is a guess. */
        if (rest - msg_len != NBD_ERROR_OFFSET_TAIL_SIZE) {
            return nbd_decode_invalid("ERROR_OFFSET chunk length does not match its message");
        }
        out->has_offset = true;
        out->offset = nbd_load_be64(buf + NBD_ERROR_HDR_SIZE + msg_len);
    }
    return nbd_decode_ok(len);
}

NBDDecodeResult nbd_decode_block_status(const uint8_t *buf, size_t len, uint16_t type,
                                        NBDBlockStatusView *out)
{
    size_t hdr, stride;

    if (type == NBD_REPLY_TYPE_BLOCK_STATUS) {
        hdr = NBD_BLOCK_STATUS_HDR_SIZE;
        stride = NBD_EXTENT_SIZE;
    } else if (type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT) {
        hdr = NBD_BLOCK_STATUS_EXT_HDR_SIZE;
        stride = NBD_EXTENT_EXT_SIZE;
    } else {
        return nbd_decode_invalid("not a block status chunk type");
    }
    if (len < hdr + stride || (len - hdr) % stride) {
        return nbd_decode_invalid("block status chunk length is not header + whole descriptors");
    }
    size_t n = (len - hdr) / stride;
    if (n > UINT32_MAX) {
        return nbd_decode_invalid("block status chunk has too many descriptors");
    }
    out->context_id = nbd_load_be32(buf);
    out->n_extents = (uint32_t) n;
    out->extended = type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
    out->descriptors = buf + hdr;
    if (out->extended) {
        uint32_t count = nbd_load_be32(buf + 4);
        if (count != 0 && count != n) {
            return nbd_decode_invalid("block status descriptor count does not match the length");
        }
    }
    for (uint32_t i = 0; i < out->n_extents; i++) {
        if (nbd_block_status_extent(out, i).length == 0) {
            return nbd_decode_invalid("block status extent with zero length");
        }
    }
    return nbd_decode_ok(len);
}

NBDExtent nbd_block_status_extent(const NBDBlockStatusView *v, uint32_t i)
{
    NBDExtent e = { 0, 0 };

    if (i >= v->n_extents) {
        return e;
    }
    if (v->extended) {
        const uint8_t *p = v->descriptors + (size_t) i * NBD_EXTENT_EXT_SIZE;
        e.length = nbd_load_be64(p);
        e.flags = nbd_load_be32(p + 12);
    } else {
        const uint8_t *p = v->descriptors + (size_t) i * NBD_EXTENT_SIZE;
        e.length = nbd_load_be32(p);
        e.flags = nbd_load_be32(p + 4);
    }
    return e;
}
