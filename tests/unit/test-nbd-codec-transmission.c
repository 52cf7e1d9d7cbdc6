/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the transmission part of the NBD wire codec (nbd/proto/codec*.c):
 * compact and extended requests, simple, structured and extended reply
 * headers, chunk payloads and block status chunks and payloads.  Every
 * structure is checked against byte vectors written out by hand from the
 * NBD specification, in both directions, and every decoder is fed each
 * truncation of a valid message, wrong magics and absurd lengths.
 */
#include "nbd-codec-test-util.h"

/* ---------------------------------------------------------------------
 * Requests and replies
 * --------------------------------------------------------------------- */

static void assert_request_eq(const NBDRequest *a, const NBDRequest *b)
{
    g_assert_cmphex(a->flags, ==, b->flags);
    g_assert_cmpuint(a->type, ==, b->type);
    g_assert_cmphex(a->cookie, ==, b->cookie);
    g_assert_cmpuint(a->offset, ==, b->offset);
    g_assert_cmpuint(a->length, ==, b->length);
}

static void test_request(void)
{
    uint8_t buf[NBD_REQUEST_MAX_SIZE];
    NBDRequest r = {
        .flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_READ,
        .cookie = 0x0102030405060708ull, .offset = 4096, .length = 512,
    };
    NBDRequest d;

    assert_bytes(buf, nbd_encode_request(buf, NBD_MODE_STRUCTURED, &r),
                 req_compact_vec, sizeof(req_compact_vec));
    ASSERT_OK(nbd_decode_request(req_compact_vec, 28, NBD_MODE_SIMPLE, &d), 28);
    assert_request_eq(&d, &r);
    g_assert_cmpuint(nbd_request_payload_length(&d, NBD_MODE_SIMPLE), ==, 0);

    NBDRequest w = {
        .flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_PAYLOAD_LEN, .type = NBD_CMD_WRITE,
        .cookie = 0xdeadbeefcafef00dull, .offset = 8ull << 30, .length = 65536,
    };
    assert_bytes(buf, nbd_encode_request(buf, NBD_MODE_EXTENDED, &w),
                 req_ext_vec, sizeof(req_ext_vec));
    ASSERT_OK(nbd_decode_request(req_ext_vec, 32, NBD_MODE_EXTENDED, &d), 32);
    assert_request_eq(&d, &w);
    g_assert_cmpuint(nbd_request_payload_length(&d, NBD_MODE_EXTENDED), ==, 65536);

    /* Compact writes carry length bytes; extended ones only with PAYLOAD_LEN. */
    NBDRequest cw = { .type = NBD_CMD_WRITE, .length = 100 };
    g_assert_cmpuint(nbd_request_payload_length(&cw, NBD_MODE_STRUCTURED), ==, 100);
    g_assert_cmpuint(nbd_request_payload_length(&cw, NBD_MODE_EXTENDED), ==, 0);
    NBDRequest bs = { .type = NBD_CMD_BLOCK_STATUS, .length = 1ull << 40 };
    g_assert_cmpuint(nbd_request_payload_length(&bs, NBD_MODE_EXTENDED), ==, 0);

    /* 64-bit lengths do not fit a compact header. */
    NBDRequest big = { .type = NBD_CMD_TRIM, .length = 1ull << 32 };
    g_assert_cmpuint(nbd_encode_request(buf, NBD_MODE_STRUCTURED, &big), ==, 0);
    g_assert_cmpuint(nbd_encode_request(buf, NBD_MODE_EXTENDED, &big), ==, 32);
    ASSERT_OK(nbd_decode_request(buf, 32, NBD_MODE_EXTENDED, &d), 32);
    g_assert_cmpuint(d.length, ==, 1ull << 32);

    for (size_t n = 0; n < 28; n++) {
        uint8_t *p = exact_copy(req_compact_vec, n);
        ASSERT_NEED(nbd_decode_request(p, n, NBD_MODE_STRUCTURED, &d), 28);
        free(p);
    }
    for (size_t n = 0; n < 32; n++) {
        uint8_t *p = exact_copy(req_ext_vec, n);
        ASSERT_NEED(nbd_decode_request(p, n, NBD_MODE_EXTENDED, &d), 32);
        free(p);
    }
    /* Wrong magic for the mode, and garbage magic, even when truncated. */
    ASSERT_INVALID(nbd_decode_request(req_compact_vec, 28, NBD_MODE_EXTENDED, &d));
    ASSERT_INVALID(nbd_decode_request(req_ext_vec, 32, NBD_MODE_STRUCTURED, &d));
    ASSERT_INVALID(nbd_decode_request(req_ext_vec, 4, NBD_MODE_SIMPLE, &d));
    static const uint8_t old_magic[] = { 0x12, 0x56, 0x09, 0x53 };
    ASSERT_INVALID(nbd_decode_request(old_magic, 4, NBD_MODE_SIMPLE, &d));

    /* Several headers read in one go decode back to back. */
    uint8_t stream[28 * 3];
    for (int i = 0; i < 3; i++) {
        memcpy(stream + 28 * i, req_compact_vec, 28);
    }
    size_t off = 0;
    int count = 0;
    for (;;) {
        NBDDecodeResult res = nbd_decode_request(stream + off, sizeof(stream) - off,
                                                 NBD_MODE_STRUCTURED, &d);
        if (res.status != NBD_DECODE_OK) {
            g_assert_cmpint(res.status, ==, NBD_DECODE_NEED_MORE);
            break;
        }
        off += res.size;
        count++;
    }
    g_assert_cmpint(count, ==, 3);
    g_assert_cmpuint(nbd_request_header_size(NBD_MODE_EXTENDED), ==, 32);
    g_assert_cmpuint(nbd_request_header_size(NBD_MODE_SIMPLE), ==, 28);
}

static void test_replies(void)
{
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    NBDReplyHeader h;

    assert_bytes(buf, nbd_encode_simple_reply(buf, 0x0102030405060708ull, NBD_EINVAL),
                 simple_reply_vec, sizeof(simple_reply_vec));
    assert_bytes(buf, nbd_encode_structured_reply(buf, 0x0102030405060708ull,
                                                  NBD_REPLY_FLAG_DONE,
                                                  NBD_REPLY_TYPE_OFFSET_DATA, 0x1008),
                 structured_reply_vec, sizeof(structured_reply_vec));
    assert_bytes(buf, nbd_encode_chunk_header(buf, NBD_MODE_STRUCTURED, 0x0102030405060708ull,
                                              NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                                              999, 0x1008),
                 structured_reply_vec, sizeof(structured_reply_vec));
    assert_bytes(buf, nbd_encode_extended_reply(buf, 0x1122334455667788ull, 0,
                                                NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 4096, 40),
                 extended_reply_vec, sizeof(extended_reply_vec));
    assert_bytes(buf, nbd_encode_chunk_header(buf, NBD_MODE_EXTENDED, 0x1122334455667788ull, 0,
                                              NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 4096, 40),
                 extended_reply_vec, sizeof(extended_reply_vec));
    g_assert_cmpuint(nbd_encode_chunk_header(buf, NBD_MODE_SIMPLE, 1, 0, 0, 0, 0), ==, 0);
    g_assert_cmpuint(nbd_encode_structured_reply(buf, 1, 0, 1, 1ull << 32), ==, 0);

    ASSERT_OK(nbd_decode_reply_header(simple_reply_vec, 16, NBD_MODE_SIMPLE, &h), 16);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_SIMPLE);
    g_assert_cmpuint(h.error, ==, NBD_EINVAL);
    g_assert_cmphex(h.cookie, ==, 0x0102030405060708ull);
    ASSERT_OK(nbd_decode_reply_header(simple_reply_vec, 16, NBD_MODE_STRUCTURED, &h), 16);
    ASSERT_INVALID(nbd_decode_reply_header(simple_reply_vec, 16, NBD_MODE_EXTENDED, &h));

    ASSERT_OK(nbd_decode_reply_header(structured_reply_vec, 20, NBD_MODE_STRUCTURED, &h), 20);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_STRUCTURED);
    g_assert_cmphex(h.flags, ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(h.type, ==, NBD_REPLY_TYPE_OFFSET_DATA);
    g_assert_cmpuint(h.length, ==, 0x1008);
    ASSERT_INVALID(nbd_decode_reply_header(structured_reply_vec, 20, NBD_MODE_SIMPLE, &h));
    ASSERT_INVALID(nbd_decode_reply_header(structured_reply_vec, 20, NBD_MODE_EXTENDED, &h));

    ASSERT_OK(nbd_decode_reply_header(extended_reply_vec, 32, NBD_MODE_EXTENDED, &h), 32);
    g_assert_cmpint(h.kind, ==, NBD_REPLY_KIND_EXTENDED);
    g_assert_cmpuint(h.type, ==, NBD_REPLY_TYPE_BLOCK_STATUS_EXT);
    g_assert_cmpuint(h.offset, ==, 4096);
    g_assert_cmpuint(h.length, ==, 40);
    ASSERT_INVALID(nbd_decode_reply_header(extended_reply_vec, 32, NBD_MODE_STRUCTURED, &h));

    /* Truncations: before the magic the smallest header; after it, its size. */
    for (size_t n = 0; n < 16; n++) {
        uint8_t *p = exact_copy(simple_reply_vec, n);
        ASSERT_NEED(nbd_decode_reply_header(p, n, NBD_MODE_STRUCTURED, &h), 16);
        free(p);
    }
    for (size_t n = 0; n < 20; n++) {
        uint8_t *p = exact_copy(structured_reply_vec, n);
        ASSERT_NEED(nbd_decode_reply_header(p, n, NBD_MODE_STRUCTURED, &h), n < 4 ? 16 : 20);
        free(p);
    }
    for (size_t n = 0; n < 32; n++) {
        uint8_t *p = exact_copy(extended_reply_vec, n);
        ASSERT_NEED(nbd_decode_reply_header(p, n, NBD_MODE_EXTENDED, &h), 32);
        free(p);
    }

    /* NONE must be empty and final; extended lengths must fit 32 bits. */
    nbd_encode_structured_reply(buf, 1, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
    ASSERT_OK(nbd_decode_reply_header(buf, 20, NBD_MODE_STRUCTURED, &h), 20);
    nbd_encode_structured_reply(buf, 1, 0, NBD_REPLY_TYPE_NONE, 0);
    ASSERT_INVALID(nbd_decode_reply_header(buf, 20, NBD_MODE_STRUCTURED, &h));
    nbd_encode_structured_reply(buf, 1, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 4);
    ASSERT_INVALID(nbd_decode_reply_header(buf, 20, NBD_MODE_STRUCTURED, &h));
    nbd_encode_extended_reply(buf, 1, 0, NBD_REPLY_TYPE_OFFSET_DATA, 0, 1ull << 32);
    ASSERT_INVALID(nbd_decode_reply_header(buf, 32, NBD_MODE_EXTENDED, &h));
    nbd_encode_extended_reply(buf, 1, 0, NBD_REPLY_TYPE_OFFSET_DATA, 0, UINT32_MAX);
    ASSERT_OK(nbd_decode_reply_header(buf, 32, NBD_MODE_EXTENDED, &h), 32);
    static const uint8_t junk[] = { 0x96, 0x74, 0x46, 0x68 };   /* historic reply magic */
    ASSERT_INVALID(nbd_decode_reply_header(junk, 4, NBD_MODE_STRUCTURED, &h));
}

static void test_chunk_payloads(void)
{
    static const uint8_t data_vec[] = { 0, 0, 0, 0, 0, 0, 0x10, 0x00 };
    static const uint8_t hole_vec[] = {
        0, 0, 0, 0, 0, 0, 0x20, 0x00,  0x00, 0x00, 0x10, 0x00,
    };
    static const uint8_t error_vec[] = { 0, 0, 0, 0x05,  0x00, 0x02,  'i', 'o' };
    static const uint8_t error_off_vec[] = {
        0, 0, 0, 0x1c,  0x00, 0x00,  0, 0, 0, 0, 0, 0, 0x30, 0x00,
    };
    uint8_t buf[64];
    uint64_t off, dlen;
    uint32_t hole;
    NBDErrorChunk e;

    assert_bytes(buf, nbd_encode_offset_data_hdr(buf, 0x1000), data_vec, sizeof(data_vec));
    ASSERT_OK(nbd_decode_offset_data_hdr(data_vec, 8, 0x1008, &off, &dlen), 8);
    g_assert_cmpuint(off, ==, 0x1000);
    g_assert_cmpuint(dlen, ==, 0x1000);
    ASSERT_NEED(nbd_decode_offset_data_hdr(data_vec, 7, 0x1008, &off, &dlen), 8);
    ASSERT_INVALID(nbd_decode_offset_data_hdr(data_vec, 8, 8, &off, &dlen));

    assert_bytes(buf, nbd_encode_offset_hole(buf, 0x2000, 0x1000), hole_vec, sizeof(hole_vec));
    ASSERT_OK(nbd_decode_offset_hole(hole_vec, 12, 12, &off, &hole), 12);
    g_assert_cmpuint(off, ==, 0x2000);
    g_assert_cmpuint(hole, ==, 0x1000);
    ASSERT_INVALID(nbd_decode_offset_hole(hole_vec, 12, 13, &off, &hole));
    for (size_t n = 0; n < 12; n++) {
        uint8_t *p = exact_copy(hole_vec, n);
        ASSERT_NEED(nbd_decode_offset_hole(p, n, 12, &off, &hole), 12);
        free(p);
    }
    static const uint8_t zero_hole[12] = { 0 };
    ASSERT_INVALID(nbd_decode_offset_hole(zero_hole, 12, 12, &off, &hole));

    assert_bytes(buf, nbd_encode_error_chunk(buf, sizeof(buf), NBD_EIO, "io", 2),
                 error_vec, sizeof(error_vec));
    g_assert_cmpuint(nbd_encode_error_chunk(buf, 7, NBD_EIO, "io", 2), ==, 0);
    ASSERT_OK(nbd_decode_error_chunk(error_vec, 8, NBD_REPLY_TYPE_ERROR, &e), 8);
    g_assert_cmpuint(e.error, ==, NBD_EIO);
    g_assert_cmpmem(e.message.data, e.message.len, "io", 2);
    g_assert_false(e.has_offset);

    assert_bytes(buf, nbd_encode_error_offset_chunk(buf, sizeof(buf), NBD_ENOSPC, "", 0, 0x3000),
                 error_off_vec, sizeof(error_off_vec));
    ASSERT_OK(nbd_decode_error_chunk(error_off_vec, 14, NBD_REPLY_TYPE_ERROR_OFFSET, &e), 14);
    g_assert_cmpuint(e.error, ==, NBD_ENOSPC);
    g_assert_true(e.has_offset);
    g_assert_cmpuint(e.offset, ==, 0x3000);
    /* Unknown error chunk types yield error and message. */
    ASSERT_OK(nbd_decode_error_chunk(error_vec, 8, 0x8010, &e), 8);
    g_assert_cmpuint(e.error, ==, NBD_EIO);

    for (size_t n = 0; n < sizeof(error_vec); n++) {
        uint8_t *p = exact_copy(error_vec, n);
        ASSERT_INVALID(nbd_decode_error_chunk(p, n, NBD_REPLY_TYPE_ERROR, &e));
        free(p);
    }
    for (size_t n = 0; n < sizeof(error_off_vec); n++) {
        uint8_t *p = exact_copy(error_off_vec, n);
        ASSERT_INVALID(nbd_decode_error_chunk(p, n, NBD_REPLY_TYPE_ERROR_OFFSET, &e));
        free(p);
    }
    static const uint8_t zero_err[] = { 0, 0, 0, 0, 0, 0 };
    ASSERT_INVALID(nbd_decode_error_chunk(zero_err, 6, NBD_REPLY_TYPE_ERROR, &e));
    static const uint8_t huge_msg[] = { 0, 0, 0, 5, 0xff, 0xff, 'x' };
    ASSERT_INVALID(nbd_decode_error_chunk(huge_msg, 7, NBD_REPLY_TYPE_ERROR, &e));
    ASSERT_INVALID(nbd_decode_error_chunk(error_vec, 8, NBD_REPLY_TYPE_OFFSET_DATA, &e));
}

static void test_block_status_chunks(void)
{
    static const uint8_t bs_vec[] = {
        0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x10, 0x00,  0x00, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x20, 0x00,  0x00, 0x00, 0x00, 0x00,
    };
    static const uint8_t bs_ext_vec[] = {
        0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  0, 0, 0, 0,  0, 0, 0, 0,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  0, 0, 0, 0,  0, 0, 0, 0x02,
    };
    uint8_t buf[64];
    size_t n;
    NBDBlockStatusView v;
    NBDExtent e;

    n = nbd_encode_block_status_hdr(buf, 1);
    n += nbd_encode_extent(buf + n, 0x1000, NBD_STATE_HOLE | NBD_STATE_ZERO);
    n += nbd_encode_extent(buf + n, 0x2000, 0);
    assert_bytes(buf, n, bs_vec, sizeof(bs_vec));
    n = nbd_encode_block_status_ext_hdr(buf, 2, 2);
    n += nbd_encode_extent_ext(buf + n, 1ull << 32, 0);
    n += nbd_encode_extent_ext(buf + n, 0x1000, NBD_STATE_ZERO);
    assert_bytes(buf, n, bs_ext_vec, sizeof(bs_ext_vec));

    ASSERT_OK(nbd_decode_block_status(bs_vec, 20, NBD_REPLY_TYPE_BLOCK_STATUS, &v), 20);
    g_assert_cmpuint(v.context_id, ==, 1);
    g_assert_cmpuint(v.n_extents, ==, 2);
    e = nbd_block_status_extent(&v, 0);
    g_assert_cmpuint(e.length, ==, 0x1000);
    g_assert_cmpuint(e.flags, ==, 3);
    e = nbd_block_status_extent(&v, 1);
    g_assert_cmpuint(e.length, ==, 0x2000);
    e = nbd_block_status_extent(&v, 2);
    g_assert_cmpuint(e.length, ==, 0);

    ASSERT_OK(nbd_decode_block_status(bs_ext_vec, 40, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, &v), 40);
    g_assert_cmpuint(v.context_id, ==, 2);
    g_assert_cmpuint(v.n_extents, ==, 2);
    e = nbd_block_status_extent(&v, 0);
    g_assert_cmpuint(e.length, ==, 1ull << 32);
    e = nbd_block_status_extent(&v, 1);
    g_assert_cmpuint(e.length, ==, 0x1000);
    g_assert_cmpuint(e.flags, ==, NBD_STATE_ZERO);

    for (size_t k = 0; k < sizeof(bs_vec); k++) {
        uint8_t *p = exact_copy(bs_vec, k);
        NBDDecodeResult r = nbd_decode_block_status(p, k, NBD_REPLY_TYPE_BLOCK_STATUS, &v);
        if (k == 12) {
            /* Header + first descriptor is itself a valid chunk. */
            ASSERT_OK(r, 12);
            g_assert_cmpuint(v.n_extents, ==, 1);
        } else {
            ASSERT_INVALID(r);
        }
        free(p);
    }
    for (size_t k = 0; k < sizeof(bs_ext_vec); k++) {
        uint8_t *p = exact_copy(bs_ext_vec, k);
        NBDDecodeResult r = nbd_decode_block_status(p, k, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, &v);
        /* 24 bytes is a valid one-descriptor chunk, but its count says 2. */
        ASSERT_INVALID(r);
        free(p);
    }
    /* Descriptor count 0 means "see the length". */
    memcpy(buf, bs_ext_vec, 40);
    buf[7] = 0;
    ASSERT_OK(nbd_decode_block_status(buf, 40, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, &v), 40);
    ASSERT_OK(nbd_decode_block_status(buf, 24, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, &v), 24);
    buf[7] = 3;
    ASSERT_INVALID(nbd_decode_block_status(buf, 40, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, &v));
    /* A zero-length extent is invalid. */
    memcpy(buf, bs_vec, 20);
    memset(buf + 12, 0, 4);
    ASSERT_INVALID(nbd_decode_block_status(buf, 20, NBD_REPLY_TYPE_BLOCK_STATUS, &v));
    ASSERT_INVALID(nbd_decode_block_status(bs_vec, 20, NBD_REPLY_TYPE_ERROR, &v));
}

static void test_block_status_payload(void)
{
    static const uint8_t vec[] = {
        0, 0, 0, 0, 0, 0x01, 0x00, 0x00,
        0, 0, 0, 1,
        0, 0, 0, 2,
    };
    static const uint32_t ids[] = { 1, 2 };
    uint8_t buf[32];
    NBDBlockStatusPayload p;

    assert_bytes(buf, nbd_encode_block_status_payload(buf, sizeof(buf), 0x10000, ids, 2),
                 vec, sizeof(vec));
    g_assert_cmpuint(nbd_encode_block_status_payload(buf, 15, 0x10000, ids, 2), ==, 0);
    ASSERT_OK(nbd_decode_block_status_payload(vec, 16, &p), 16);
    g_assert_cmpuint(p.effect_length, ==, 0x10000);
    g_assert_cmpuint(p.n_ids, ==, 2);
    g_assert_cmpuint(nbd_block_status_payload_id(&p, 1), ==, 2);
    ASSERT_OK(nbd_decode_block_status_payload(vec, 8, &p), 8);
    g_assert_cmpuint(p.n_ids, ==, 0);
    for (size_t n = 0; n < 8; n++) {
        ASSERT_INVALID(nbd_decode_block_status_payload(vec, n, &p));
    }
    ASSERT_INVALID(nbd_decode_block_status_payload(vec, 14, &p));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/transmission/request", test_request);
    g_test_add_func("/nbd/codec/transmission/replies", test_replies);
    g_test_add_func("/nbd/codec/transmission/chunk-payloads", test_chunk_payloads);
    g_test_add_func("/nbd/codec/transmission/block-status-chunks", test_block_status_chunks);
    g_test_add_func("/nbd/codec/transmission/block-status-payload", test_block_status_payload);

    return g_test_run();
}
