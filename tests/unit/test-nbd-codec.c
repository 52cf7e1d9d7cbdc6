/*
 * Unit tests for the NBD wire codec (nbd/codec*.c).  Every structure is
 * checked against byte vectors written out by hand from the NBD
 * specification, in both directions; every decoder is fed each truncation
 * of a valid message, wrong magics and absurd lengths; a seeded fuzz loop
 * feeds random and mutated buffers to every decoder, each in a heap block
 * of exactly the tested length so valgrind or an ASan build reports any
 * read past the end; and each rule of nbd_request_validate() has a case.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "nbd/codec.h"

#define REP_MAGIC_BYTES 0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9
#define OPTS_MAGIC_BYTES 0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54

/* A copy of buf in a heap block of exactly len bytes, so that a decoder
 * reading one byte too far trips valgrind or ASan. */
static uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    g_assert_nonnull(p);
    if (len) {
        memcpy(p, buf, len);
    }
    return p;
}

static void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want,
                         size_t want_len)
{
    g_assert_cmpuint(got_len, ==, want_len);
    g_assert_cmpmem(got, got_len, want, want_len);
}

#define ASSERT_OK(r, n) do { \
        NBDDecodeResult r_ = (r); \
        if (r_.status != NBD_DECODE_OK) { \
            g_error("expected OK, got status %d (%s)", r_.status, \
                    r_.reason ? r_.reason : "-"); \
        } \
        g_assert_cmpuint(r_.size, ==, (n)); \
    } while (0)

#define ASSERT_NEED(r, n) do { \
        NBDDecodeResult r_ = (r); \
        g_assert_cmpint(r_.status, ==, NBD_DECODE_NEED_MORE); \
        g_assert_cmpuint(r_.size, ==, (n)); \
    } while (0)

#define ASSERT_INVALID(r) do { \
        NBDDecodeResult r_ = (r); \
        g_assert_cmpint(r_.status, ==, NBD_DECODE_INVALID); \
        g_assert_nonnull(r_.reason); \
    } while (0)

/* ---------------------------------------------------------------------
 * Constants against the specification
 * --------------------------------------------------------------------- */

static void test_constants(void)
{
    g_assert_cmphex(NBD_MAGIC, ==, 0x4e42444d41474943ull);
    g_assert_cmphex(NBD_OPTS_MAGIC, ==, 0x49484156454f5054ull);
    g_assert_cmphex(NBD_REP_MAGIC, ==, 0x3e889045565a9ull);
    g_assert_cmphex(NBD_REQUEST_MAGIC, ==, 0x25609513);
    g_assert_cmphex(NBD_EXTENDED_REQUEST_MAGIC, ==, 0x21e41c71);
    g_assert_cmphex(NBD_SIMPLE_REPLY_MAGIC, ==, 0x67446698);
    g_assert_cmphex(NBD_STRUCTURED_REPLY_MAGIC, ==, 0x668e33ef);
    g_assert_cmphex(NBD_EXTENDED_REPLY_MAGIC, ==, 0x6e8a278c);
    g_assert_cmpuint(NBD_OPT_EXTENDED_HEADERS, ==, 11);
    g_assert_cmphex(NBD_REP_ERR_UNSUP, ==, 0x80000001u);
    g_assert_cmphex(NBD_REP_ERR_EXT_HEADER_REQD, ==, 0x8000000au);
    g_assert_cmphex(NBD_FLAG_BLOCK_STAT_PAYLOAD, ==, 0x1000);
    g_assert_cmphex(NBD_CMD_FLAG_PAYLOAD_LEN, ==, 0x20);
    g_assert_cmpuint(NBD_REPLY_TYPE_ERROR, ==, 32769);
    g_assert_cmpuint(NBD_REPLY_TYPE_ERROR_OFFSET, ==, 32770);
    g_assert_cmpuint(NBD_ESHUTDOWN, ==, 108);
    g_assert_cmpuint(NBD_MAX_PAYLOAD, ==, 33554432);
    g_assert_cmpuint(NBD_MAX_STRING, ==, 4096);
}

/* ---------------------------------------------------------------------
 * Handshake
 * --------------------------------------------------------------------- */

static const uint8_t greeting_vec[] = {
    0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,   /* NBDMAGIC */
    OPTS_MAGIC_BYTES,                                 /* IHAVEOPT */
    0x00, 0x03,                                       /* FIXED_NEWSTYLE|NO_ZEROES */
};

static void test_greeting(void)
{
    uint8_t buf[NBD_GREETING_SIZE];
    NBDGreeting g;

    assert_bytes(buf, nbd_encode_greeting(buf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
                 greeting_vec, sizeof(greeting_vec));
    ASSERT_OK(nbd_decode_greeting(greeting_vec, sizeof(greeting_vec), &g), 18);
    g_assert_cmphex(g.handshake_flags, ==, 3);

    for (size_t n = 0; n < sizeof(greeting_vec); n++) {
        uint8_t *p = exact_copy(greeting_vec, n);
        ASSERT_NEED(nbd_decode_greeting(p, n, &g), 18);
        free(p);
    }

    uint8_t bad[sizeof(greeting_vec)];
    memcpy(bad, greeting_vec, sizeof(bad));
    bad[0] ^= 1;
    ASSERT_INVALID(nbd_decode_greeting(bad, 8, &g));    /* fails before the rest arrives */
    memcpy(bad, greeting_vec, sizeof(bad));
    bad[15] ^= 1;
    ASSERT_INVALID(nbd_decode_greeting(bad, sizeof(bad), &g));
    /* Oldstyle servers send cliserv_magic second. */
    static const uint8_t oldstyle[] = {
        0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,
        0x00, 0x00, 0x42, 0x02, 0x81, 0x86, 0x12, 0x53, 0, 0,
    };
    ASSERT_INVALID(nbd_decode_greeting(oldstyle, sizeof(oldstyle), &g));
}

static void test_client_flags(void)
{
    static const uint8_t vec[] = { 0x00, 0x00, 0x00, 0x03 };
    uint8_t buf[4];
    uint32_t f;

    assert_bytes(buf, nbd_encode_client_flags(buf, 3), vec, sizeof(vec));
    ASSERT_OK(nbd_decode_client_flags(vec, 4, &f), 4);
    g_assert_cmphex(f, ==, 3);
    ASSERT_NEED(nbd_decode_client_flags(vec, 3, &f), 4);

    uint16_t both = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
    g_assert_null(nbd_client_flags_check(0, both));
    g_assert_null(nbd_client_flags_check(3, both));
    g_assert_nonnull(nbd_client_flags_check(4, both));
    g_assert_nonnull(nbd_client_flags_check(0x80000001u, both));
    g_assert_nonnull(nbd_client_flags_check(NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE));
}

static const uint8_t opt_header_vec[] = {
    OPTS_MAGIC_BYTES,
    0x00, 0x00, 0x00, 0x07,           /* NBD_OPT_GO */
    0x00, 0x00, 0x00, 0x1a,           /* 26 bytes of data */
};

static void test_option_header(void)
{
    uint8_t buf[NBD_OPTION_HEADER_SIZE];
    NBDOptionHeader h;

    assert_bytes(buf, nbd_encode_option_header(buf, NBD_OPT_GO, 26),
                 opt_header_vec, sizeof(opt_header_vec));
    ASSERT_OK(nbd_decode_option_header(opt_header_vec, sizeof(opt_header_vec), &h), 16);
    g_assert_cmpuint(h.option, ==, NBD_OPT_GO);
    g_assert_cmpuint(h.length, ==, 26);
    for (size_t n = 0; n < sizeof(opt_header_vec); n++) {
        uint8_t *p = exact_copy(opt_header_vec, n);
        ASSERT_NEED(nbd_decode_option_header(p, n, &h), 16);
        free(p);
    }
    uint8_t bad[16];
    memcpy(bad, opt_header_vec, 16);
    bad[7] = 0;
    ASSERT_INVALID(nbd_decode_option_header(bad, 8, &h));
    ASSERT_INVALID(nbd_decode_option_header(bad, 16, &h));

    /* Huge lengths decode; refusing them is nbd_opt_check_length's job. */
    memcpy(bad, opt_header_vec, 16);
    memset(bad + 12, 0xff, 4);
    ASSERT_OK(nbd_decode_option_header(bad, 16, &h), 16);
    g_assert_cmphex(h.length, ==, 0xffffffffu);
}

static const uint8_t opt_reply_ack_vec[] = {
    REP_MAGIC_BYTES,
    0x00, 0x00, 0x00, 0x07,           /* NBD_OPT_GO */
    0x00, 0x00, 0x00, 0x01,           /* NBD_REP_ACK */
    0x00, 0x00, 0x00, 0x00,
};

static void test_option_reply_header(void)
{
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];
    NBDOptionReplyHeader h;

    assert_bytes(buf, nbd_encode_rep_ack(buf, NBD_OPT_GO),
                 opt_reply_ack_vec, sizeof(opt_reply_ack_vec));
    assert_bytes(buf, nbd_encode_option_reply_header(buf, NBD_OPT_GO, NBD_REP_ACK, 0),
                 opt_reply_ack_vec, sizeof(opt_reply_ack_vec));
    ASSERT_OK(nbd_decode_option_reply_header(opt_reply_ack_vec, 20, &h), 20);
    g_assert_cmpuint(h.option, ==, NBD_OPT_GO);
    g_assert_cmpuint(h.type, ==, NBD_REP_ACK);
    g_assert_cmpuint(h.length, ==, 0);
    for (size_t n = 0; n < 20; n++) {
        uint8_t *p = exact_copy(opt_reply_ack_vec, n);
        ASSERT_NEED(nbd_decode_option_reply_header(p, n, &h), 20);
        free(p);
    }
    uint8_t bad[20];
    memcpy(bad, opt_reply_ack_vec, 20);
    bad[0] = 0xff;
    ASSERT_INVALID(nbd_decode_option_reply_header(bad, 20, &h));
    ASSERT_INVALID(nbd_decode_option_reply_header(bad, 9, &h));
}

static void test_export_name_reply(void)
{
    static const uint8_t vec[] = {
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,   /* 4 GiB */
        0x00, 0x43,                                       /* HAS_FLAGS|SEND_TRIM|SEND_WRITE_ZEROES */
    };
    uint8_t buf[NBD_EXPORT_NAME_REPLY_MAX];
    uint8_t want[NBD_EXPORT_NAME_REPLY_MAX] = { 0 };
    NBDExportNameReply r;

    assert_bytes(buf, nbd_encode_export_name_reply(buf, 1ull << 32, 0x43, true),
                 vec, sizeof(vec));
    memset(buf, 0xaa, sizeof(buf));
    memcpy(want, vec, sizeof(vec));
    assert_bytes(buf, nbd_encode_export_name_reply(buf, 1ull << 32, 0x43, false),
                 want, sizeof(want));

    ASSERT_OK(nbd_decode_export_name_reply(vec, sizeof(vec), true, &r), 10);
    g_assert_cmpuint(r.size, ==, 1ull << 32);
    g_assert_cmphex(r.flags, ==, 0x43);
    ASSERT_NEED(nbd_decode_export_name_reply(vec, sizeof(vec), false, &r), 134);
    ASSERT_OK(nbd_decode_export_name_reply(want, sizeof(want), false, &r), 134);
    for (size_t n = 0; n < sizeof(vec); n++) {
        uint8_t *p = exact_copy(vec, n);
        ASSERT_NEED(nbd_decode_export_name_reply(p, n, true, &r), 10);
        free(p);
    }
}

static void test_rep_err(void)
{
    static const uint8_t vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x09,           /* LIST_META_CONTEXT */
        0x80, 0x00, 0x00, 0x03,           /* ERR_INVALID */
        0x00, 0x00, 0x00, 0x03,
        'b', 'a', 'd',
    };
    uint8_t buf[NBD_REP_ERR_MAX];
    NBDStringView msg;

    assert_bytes(buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_LIST_META_CONTEXT,
                                         NBD_REP_ERR_INVALID, "bad", 3),
                 vec, sizeof(vec));
    g_assert_cmpuint(nbd_encode_rep_err(buf, sizeof(vec) - 1, 9, NBD_REP_ERR_INVALID,
                                        "bad", 3), ==, 0);
    g_assert_cmpuint(nbd_encode_rep_err(buf, sizeof(buf), 9, NBD_REP_ACK, "bad", 3), ==, 0);
    g_assert_cmpuint(nbd_encode_rep_err(buf, 100000, 9, NBD_REP_ERR_INVALID, "bad",
                                        NBD_MAX_STRING + 1), ==, 0);
    ASSERT_OK(nbd_decode_rep_err(vec + 20, 3, &msg), 3);
    g_assert_cmpmem(msg.data, msg.len, "bad", 3);
    ASSERT_OK(nbd_decode_rep_err(vec + 20, 0, &msg), 0);
    ASSERT_INVALID(nbd_decode_rep_err((const uint8_t *) "a\0b", 3, &msg));
}

static void test_rep_server(void)
{
    static const uint8_t vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x03,           /* NBD_OPT_LIST */
        0x00, 0x00, 0x00, 0x02,           /* NBD_REP_SERVER */
        0x00, 0x00, 0x00, 0x09,
        0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',
        'a',
    };
    uint8_t buf[NBD_REP_SERVER_MAX];
    NBDRepServer s;

    assert_bytes(buf, nbd_encode_rep_server(buf, sizeof(buf), NBD_OPT_LIST, "disk", 4, "a", 1),
                 vec, sizeof(vec));
    g_assert_cmpuint(nbd_encode_rep_server(buf, sizeof(vec) - 1, 3, "disk", 4, "a", 1), ==, 0);
    ASSERT_OK(nbd_decode_rep_server(vec + 20, 9, &s), 9);
    g_assert_cmpmem(s.name.data, s.name.len, "disk", 4);
    g_assert_cmpmem(s.description.data, s.description.len, "a", 1);
    ASSERT_OK(nbd_decode_rep_server(vec + 20, 8, &s), 8);
    g_assert_cmpuint(s.description.len, ==, 0);
    for (size_t n = 0; n < 8; n++) {
        uint8_t *p = exact_copy(vec + 20, n);
        ASSERT_INVALID(nbd_decode_rep_server(p, n, &s));
        free(p);
    }
}

static void test_rep_info(void)
{
    static const uint8_t export_vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0c,
        0x00, 0x00,                                       /* NBD_INFO_EXPORT */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,   /* 1 MiB */
        0x00, 0x0d,                                       /* HAS_FLAGS|SEND_FLUSH|SEND_FUA */
    };
    static const uint8_t bs_vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0e,
        0x00, 0x03,                                       /* NBD_INFO_BLOCK_SIZE */
        0x00, 0x00, 0x02, 0x00,
        0x00, 0x00, 0x10, 0x00,
        0x02, 0x00, 0x00, 0x00,
    };
    static const uint8_t name_vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03,
        0x00, 0x01, 'x',
    };
    uint8_t buf[NBD_REP_INFO_STRING_MAX];
    NBDRepInfo info;

    assert_bytes(buf, nbd_encode_rep_info_export(buf, NBD_OPT_GO, 1 << 20, 0x0d),
                 export_vec, sizeof(export_vec));
    assert_bytes(buf, nbd_encode_rep_info_block_size(buf, NBD_OPT_INFO, 512, 4096, 32 << 20),
                 bs_vec, sizeof(bs_vec));
    assert_bytes(buf, nbd_encode_rep_info_string(buf, sizeof(buf), NBD_OPT_GO, NBD_INFO_NAME,
                                                 "x", 1),
                 name_vec, sizeof(name_vec));
    assert_bytes(buf, nbd_encode_rep_info_string_hdr(buf, NBD_OPT_GO, NBD_INFO_NAME, 1),
                 name_vec, sizeof(name_vec) - 1);
    g_assert_cmpuint(nbd_encode_rep_info_string(buf, 22, 7, 1, "x", 1), ==, 0);

    ASSERT_OK(nbd_decode_rep_info(export_vec + 20, 12, &info), 12);
    g_assert_cmpuint(info.type, ==, NBD_INFO_EXPORT);
    g_assert_cmpuint(info.u.export_.size, ==, 1 << 20);
    g_assert_cmphex(info.u.export_.flags, ==, 0x0d);
    ASSERT_OK(nbd_decode_rep_info(bs_vec + 20, 14, &info), 14);
    g_assert_cmpuint(info.u.block_size.min_block, ==, 512);
    g_assert_cmpuint(info.u.block_size.pref_block, ==, 4096);
    g_assert_cmpuint(info.u.block_size.max_block, ==, 32 << 20);
    ASSERT_OK(nbd_decode_rep_info(name_vec + 20, 3, &info), 3);
    g_assert_cmpmem(info.u.name.data, info.u.name.len, "x", 1);

    /* Wrong lengths for fixed-size types, and a too-short payload. */
    ASSERT_INVALID(nbd_decode_rep_info(export_vec + 20, 11, &info));
    ASSERT_INVALID(nbd_decode_rep_info(bs_vec + 20, 13, &info));
    ASSERT_INVALID(nbd_decode_rep_info(export_vec + 20, 1, &info));
    /* Unknown info types are handed back raw. */
    static const uint8_t unknown[] = { 0x12, 0x34, 0xaa, 0xbb };
    ASSERT_OK(nbd_decode_rep_info(unknown, sizeof(unknown), &info), 4);
    g_assert_cmpuint(info.type, ==, 0x1234);
    g_assert_cmpuint(info.u.raw.len, ==, 2);
}

static void test_rep_meta_context(void)
{
    static const uint8_t vec[] = {
        REP_MAGIC_BYTES,
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x13,
        0x00, 0x00, 0x00, 0x01,
        'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
    };
    uint8_t buf[NBD_REP_META_CONTEXT_MAX];
    NBDRepMetaContext mc;

    assert_bytes(buf, nbd_encode_rep_meta_context(buf, sizeof(buf), NBD_OPT_SET_META_CONTEXT, 1,
                                                  "base:allocation", 15),
                 vec, sizeof(vec));
    ASSERT_OK(nbd_decode_rep_meta_context(vec + 20, 19, &mc), 19);
    g_assert_cmpuint(mc.context_id, ==, 1);
    g_assert_cmpmem(mc.name.data, mc.name.len, "base:allocation", 15);
    for (size_t n = 0; n < 4; n++) {
        ASSERT_INVALID(nbd_decode_rep_meta_context(vec + 20, n, &mc));
    }
}

static void test_block_size_check(void)
{
    g_assert_null(nbd_block_size_check(1, 4096, 0xffffffffu, 1 << 20));
    g_assert_null(nbd_block_size_check(512, 4096, 32 << 20, 1 << 30));
    g_assert_null(nbd_block_size_check(4096, 4096, 4096, 1 << 30));
    g_assert_null(nbd_block_size_check(512, 4096, 1024, 1024));  /* export smaller than pref */
    g_assert_nonnull(nbd_block_size_check(0, 4096, 4096, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(3, 4096, 4096, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(1 << 17, 1 << 17, 1 << 17, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(1, 256, 4096, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(1, 3000, 4096, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(4096, 2048, 8192, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(512, 4096, 1000, 1 << 20));
    g_assert_nonnull(nbd_block_size_check(512, 4096, 2048, 1 << 20));
}

/* ---------------------------------------------------------------------
 * Option data parsing
 * --------------------------------------------------------------------- */

static void test_opt_lengths(void)
{
    uint32_t err;

    g_assert_cmpuint(nbd_opt_max_length(NBD_OPT_STARTTLS), ==, 0);
    g_assert_cmpuint(nbd_opt_max_length(NBD_OPT_EXPORT_NAME), ==, 4096);
    g_assert_cmpuint(nbd_opt_max_length(NBD_OPT_GO), ==, NBD_OPT_INFO_MAX_LENGTH);

    static const uint32_t zero_only[] = {
        NBD_OPT_LIST, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_EXTENDED_HEADERS,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(zero_only); i++) {
        g_assert_cmpint(nbd_opt_check_length(zero_only[i], 0, &err), ==, NBD_OPT_LENGTH_ACCEPT);
        g_assert_cmpint(nbd_opt_check_length(zero_only[i], 1, &err), ==, NBD_OPT_LENGTH_SKIP);
        g_assert_cmphex(err, ==, NBD_REP_ERR_INVALID);
        g_assert_cmpint(nbd_opt_check_length(zero_only[i], 0xffffffffu, &err), ==,
                        NBD_OPT_LENGTH_DISCONNECT);
    }
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_ABORT, 5, &err), ==, NBD_OPT_LENGTH_ACCEPT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_ABORT, NBD_OPT_ABORT_MAX_LENGTH + 1, &err), ==,
                    NBD_OPT_LENGTH_DISCONNECT);
    /* ACCEPT never exceeds the option's maximum, so servers may buffer it. */
    for (uint32_t opt = 0; opt < 20; opt++) {
        static const uint32_t lens[] = { 0, 1, 6, 4096, 4097, 65536, 65537, 135172, 135173,
                                         1 << 20, (1 << 20) + 1, 0xffffffffu };
        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
            NBDOptLengthAction a = nbd_opt_check_length(opt, lens[i], &err);
            if (a == NBD_OPT_LENGTH_ACCEPT) {
                g_assert_cmpuint(lens[i], <=, nbd_opt_max_length(opt));
                g_assert_cmpuint(err, ==, 0);
            } else if (a == NBD_OPT_LENGTH_SKIP) {
                g_assert_cmpuint(lens[i], <=, NBD_OPT_MAX_SKIP);
                g_assert_true(NBD_REP_IS_ERR(err));
            } else {
                g_assert_cmpuint(err, ==, 0);
            }
        }
    }
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_ABORT, 0xffffffffu, &err), ==,
                    NBD_OPT_LENGTH_DISCONNECT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_EXPORT_NAME, 4096, &err), ==,
                    NBD_OPT_LENGTH_ACCEPT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_EXPORT_NAME, 4097, &err), ==,
                    NBD_OPT_LENGTH_DISCONNECT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_GO, NBD_OPT_INFO_MAX_LENGTH, &err), ==,
                    NBD_OPT_LENGTH_ACCEPT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_GO, NBD_OPT_INFO_MAX_LENGTH + 1, &err), ==,
                    NBD_OPT_LENGTH_SKIP);
    g_assert_cmphex(err, ==, NBD_REP_ERR_INVALID);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_SET_META_CONTEXT, 65536, &err), ==,
                    NBD_OPT_LENGTH_ACCEPT);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_SET_META_CONTEXT, 65537, &err), ==,
                    NBD_OPT_LENGTH_SKIP);
    g_assert_cmphex(err, ==, NBD_REP_ERR_TOO_BIG);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_LIST_META_CONTEXT, 0x7fffffffu, &err), ==,
                    NBD_OPT_LENGTH_DISCONNECT);
    /* Unknown options: UNSUP after skipping, and haggling goes on. */
    g_assert_cmpint(nbd_opt_check_length(4242, 100, &err), ==, NBD_OPT_LENGTH_SKIP);
    g_assert_cmphex(err, ==, NBD_REP_ERR_UNSUP);
    g_assert_cmpint(nbd_opt_check_length(NBD_OPT_PEEK_EXPORT, 0, &err), ==, NBD_OPT_LENGTH_SKIP);
    g_assert_cmpint(nbd_opt_check_length(4242, NBD_OPT_MAX_SKIP + 1, &err), ==,
                    NBD_OPT_LENGTH_DISCONNECT);
}

static void test_opt_export_name(void)
{
    NBDStringView name;
    ASSERT_OK(nbd_parse_opt_export_name((const uint8_t *) "disk", 4, &name), 4);
    g_assert_cmpmem(name.data, name.len, "disk", 4);
    ASSERT_OK(nbd_parse_opt_export_name((const uint8_t *) "", 0, &name), 0);
    ASSERT_INVALID(nbd_parse_opt_export_name((const uint8_t *) "di\0k", 4, &name));
    uint8_t *big = g_malloc0(4097);
    memset(big, 'a', 4097);
    ASSERT_INVALID(nbd_parse_opt_export_name(big, 4097, &name));
    ASSERT_OK(nbd_parse_opt_export_name(big, 4096, &name), 4096);
    g_free(big);
}

static const uint8_t info_go_vec[] = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',
    0x00, 0x02,                       /* two requests */
    0x00, 0x01,                       /* NBD_INFO_NAME */
    0x00, 0x03,                       /* NBD_INFO_BLOCK_SIZE */
};

static void test_opt_info_go(void)
{
    static const uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE };
    uint8_t buf[64];
    NBDOptInfoGo info;

    assert_bytes(buf, nbd_encode_opt_info_go(buf, sizeof(buf), "disk", 4, reqs, 2),
                 info_go_vec, sizeof(info_go_vec));
    g_assert_cmpuint(nbd_encode_opt_info_go(buf, 13, "disk", 4, reqs, 2), ==, 0);

    ASSERT_OK(nbd_parse_opt_info_go(info_go_vec, sizeof(info_go_vec), &info), 14);
    g_assert_cmpmem(info.name.data, info.name.len, "disk", 4);
    g_assert_cmpuint(info.n_requests, ==, 2);
    g_assert_cmpuint(nbd_opt_info_go_request(&info, 0), ==, NBD_INFO_NAME);
    g_assert_cmpuint(nbd_opt_info_go_request(&info, 1), ==, NBD_INFO_BLOCK_SIZE);
    g_assert_cmpuint(nbd_opt_info_go_request(&info, 2), ==, UINT16_MAX);
    g_assert_true(nbd_opt_info_go_has(&info, NBD_INFO_BLOCK_SIZE));
    g_assert_false(nbd_opt_info_go_has(&info, NBD_INFO_DESCRIPTION));

    /* Every truncation fails: the lengths inside no longer add up. */
    for (size_t n = 0; n < sizeof(info_go_vec); n++) {
        uint8_t *p = exact_copy(info_go_vec, n);
        ASSERT_INVALID(nbd_parse_opt_info_go(p, n, &info));
        free(p);
    }
    /* Trailing garbage. */
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[sizeof(info_go_vec)] = 0;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec) + 1, &info));
    /* Name length larger than the option, and the classic len - 6 boundary. */
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[0] = 0xff;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[3] = 9;   /* 14 - 6 = 8 is the largest legal name length here */
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    /* Count too large / too small for the option length. */
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[9] = 3;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    buf[8] = 0xff;
    buf[9] = 0xff;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[9] = 1;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    /* NUL in the name. */
    memcpy(buf, info_go_vec, sizeof(info_go_vec));
    buf[5] = 0;
    ASSERT_INVALID(nbd_parse_opt_info_go(buf, sizeof(info_go_vec), &info));
    /* Empty name (the default export), no requests. */
    static const uint8_t empty[] = { 0, 0, 0, 0, 0, 0 };
    ASSERT_OK(nbd_parse_opt_info_go(empty, 6, &info), 6);
    g_assert_cmpuint(info.name.len, ==, 0);
    g_assert_cmpuint(info.n_requests, ==, 0);
    /* A name over 4096 bytes, consistent lengths otherwise. */
    size_t biglen = 4 + 4097 + 2;
    uint8_t *big = g_malloc0(biglen);
    nbd_store_be32(big, 4097);
    memset(big + 4, 'a', 4097);
    ASSERT_INVALID(nbd_parse_opt_info_go(big, biglen, &info));
    g_free(big);
}

static const uint8_t meta_vec[] = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',
    0x00, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x00, 0x0f,
    'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
    0x00, 0x00, 0x00, 0x05, 'q', 'e', 'm', 'u', ':',
};

static void test_opt_meta_context(void)
{
    static const char *const queries[] = { "base:allocation", "qemu:" };
    uint8_t buf[128];
    NBDOptMetaContext mc;
    NBDMetaQueryIter it;
    NBDStringView q, ns, leaf;

    assert_bytes(buf, nbd_encode_opt_meta_context(buf, sizeof(buf), "disk", 4, queries, 2),
                 meta_vec, sizeof(meta_vec));
    g_assert_cmpuint(nbd_encode_opt_meta_context(buf, sizeof(meta_vec) - 1, "disk", 4,
                                                 queries, 2), ==, 0);

    ASSERT_OK(nbd_parse_opt_meta_context(meta_vec, sizeof(meta_vec), &mc), sizeof(meta_vec));
    g_assert_cmpmem(mc.export_name.data, mc.export_name.len, "disk", 4);
    g_assert_cmpuint(mc.n_queries, ==, 2);
    nbd_meta_query_iter_init(&it, &mc);
    g_assert_true(nbd_meta_query_iter_next(&it, &q));
    g_assert_cmpmem(q.data, q.len, "base:allocation", 15);
    g_assert_true(nbd_meta_context_split(q, &ns, &leaf));
    g_assert_cmpmem(ns.data, ns.len, "base", 4);
    g_assert_cmpmem(leaf.data, leaf.len, "allocation", 10);
    g_assert_true(nbd_meta_query_iter_next(&it, &q));
    g_assert_cmpmem(q.data, q.len, "qemu:", 5);
    g_assert_true(nbd_meta_context_split(q, &ns, &leaf));
    g_assert_cmpuint(leaf.len, ==, 0);
    g_assert_false(nbd_meta_query_iter_next(&it, &q));

    NBDStringView nocolon = { "base", 4 }, empty_ns = { ":x", 2 };
    g_assert_false(nbd_meta_context_split(nocolon, &ns, &leaf));
    g_assert_false(nbd_meta_context_split(empty_ns, &ns, &leaf));

    for (size_t n = 0; n < sizeof(meta_vec); n++) {
        uint8_t *p = exact_copy(meta_vec, n);
        ASSERT_INVALID(nbd_parse_opt_meta_context(p, n, &mc));
        free(p);
    }
    /* Zero queries: LIST lists everything, SET selects nothing. */
    static const uint8_t none[] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    ASSERT_OK(nbd_parse_opt_meta_context(none, 8, &mc), 8);
    g_assert_cmpuint(mc.n_queries, ==, 0);
    nbd_meta_query_iter_init(&it, &mc);
    g_assert_false(nbd_meta_query_iter_next(&it, &q));
    /* A query count claiming billions is refused without walking them. */
    memcpy(buf, meta_vec, sizeof(meta_vec));
    memset(buf + 8, 0xff, 4);
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
    /* One query too few for the bytes present: trailing bytes. */
    memcpy(buf, meta_vec, sizeof(meta_vec));
    buf[11] = 1;
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
    /* A query length that overruns. */
    memcpy(buf, meta_vec, sizeof(meta_vec));
    buf[15] = 0x20;
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
    memcpy(buf, meta_vec, sizeof(meta_vec));
    memset(buf + 12, 0xff, 4);
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
    /* Export name length overruns. */
    memcpy(buf, meta_vec, sizeof(meta_vec));
    buf[0] = 0x80;
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
    /* NUL inside a query. */
    memcpy(buf, meta_vec, sizeof(meta_vec));
    buf[20] = 0;
    ASSERT_INVALID(nbd_parse_opt_meta_context(buf, sizeof(meta_vec), &mc));
}

/* ---------------------------------------------------------------------
 * Requests and replies
 * --------------------------------------------------------------------- */

static const uint8_t req_compact_vec[] = {
    0x25, 0x60, 0x95, 0x13,
    0x00, 0x01,                                       /* FUA */
    0x00, 0x00,                                       /* READ */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,   /* cookie */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,   /* offset 4096 */
    0x00, 0x00, 0x02, 0x00,                           /* length 512 */
};

static const uint8_t req_ext_vec[] = {
    0x21, 0xe4, 0x1c, 0x71,
    0x00, 0x21,                                       /* FUA|PAYLOAD_LEN */
    0x00, 0x01,                                       /* WRITE */
    0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,   /* offset 8 GiB */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,   /* 64 KiB payload */
};

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

static const uint8_t simple_reply_vec[] = {
    0x67, 0x44, 0x66, 0x98,
    0x00, 0x00, 0x00, 0x16,                           /* EINVAL */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
};

static const uint8_t structured_reply_vec[] = {
    0x66, 0x8e, 0x33, 0xef,
    0x00, 0x01,                                       /* DONE */
    0x00, 0x01,                                       /* OFFSET_DATA */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x00, 0x00, 0x10, 0x08,
};

static const uint8_t extended_reply_vec[] = {
    0x6e, 0x8a, 0x27, 0x8c,
    0x00, 0x00,
    0x00, 0x06,                                       /* BLOCK_STATUS_EXT */
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,   /* request offset */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28,
};

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

/* ---------------------------------------------------------------------
 * Request validation
 * --------------------------------------------------------------------- */

static NBDRequestLimits default_limits(void)
{
    NBDRequestLimits l = {
        .mode = NBD_MODE_STRUCTURED,
        .tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                    NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF |
                    NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO,
        .export_size = 1 << 20,
        .n_contexts = 1,
    };
    return l;
}

static NBDRequestVerdict check(uint16_t type, uint16_t flags, uint64_t offset,
                               uint64_t length, const NBDRequestLimits *l)
{
    NBDRequest r = {
        .type = type, .flags = flags, .cookie = 42, .offset = offset, .length = length,
    };
    return nbd_request_validate(&r, l);
}

#define ASSERT_VERDICT(v, err, action) do { \
        NBDRequestVerdict v_ = (v); \
        g_assert_cmpuint(v_.error, ==, (err)); \
        g_assert_cmpint(v_.payload, ==, (action)); \
        if (v_.error) { \
            g_assert_nonnull(v_.message); \
        } else { \
            g_assert_null(v_.message); \
        } \
    } while (0)

static void test_validate_basic(void)
{
    NBDRequestLimits l = default_limits();
    NBDRequestVerdict v;

    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, 4096, &l), 0, NBD_PAYLOAD_NONE);
    v = check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 4096, &l);
    ASSERT_VERDICT(v, 0, NBD_PAYLOAD_READ);
    g_assert_cmpuint(v.payload_length, ==, 4096);
    ASSERT_VERDICT(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 1 << 20, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_CACHE, 0, 0, 1 << 20, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
                         0, 1 << 20, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 4096, &l),
                   0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 4096, &l), 0, NBD_PAYLOAD_NONE);
    /* FUA is valid on every command once advertised. */
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 4096, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, &l), 0, NBD_PAYLOAD_NONE);
    /* DISC never gets a reply; it is always "accepted". */
    ASSERT_VERDICT(check(NBD_CMD_DISC, 0xffff, 5, 5, &l), 0, NBD_PAYLOAD_NONE);
    /* Up to the very end of the export. */
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, (1 << 20) - 1, 1, &l), 0, NBD_PAYLOAD_NONE);
}

static void test_validate_commands_and_flags(void)
{
    NBDRequestLimits l = default_limits();

    ASSERT_VERDICT(check(9, 0, 0, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_RESIZE, 0, 0, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(0xffff, 0, 0, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* Unknown flag bits; a flag on a command it does not belong to. */
    ASSERT_VERDICT(check(NBD_CMD_READ, 1 << 6, 0, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 1 << 15, 0, 512, &l), NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* PAYLOAD_LEN has no meaning in compact mode. */
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);

    /* Features that were not advertised. */
    NBDRequestLimits bare = l;
    bare.tx_flags = NBD_FLAG_HAS_FLAGS;
    ASSERT_VERDICT(check(NBD_CMD_FLUSH, 0, 0, 0, &bare), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 512, &bare), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &bare), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &bare),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &bare),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* CACHE is served even unadvertised (clients exist that send it). */
    ASSERT_VERDICT(check(NBD_CMD_CACHE, 0, 0, 512, &bare), 0, NBD_PAYLOAD_NONE);
    bare.tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_WRITE_ZEROES;
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &bare),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, &bare),
                   0, NBD_PAYLOAD_NONE);

    /* DF without structured replies. */
    NBDRequestLimits simple = l;
    simple.mode = NBD_MODE_SIMPLE;
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &simple),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* BLOCK_STATUS needs structured replies and a context. */
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &simple),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    NBDRequestLimits noctx = l;
    noctx.n_contexts = 0;
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &noctx),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* FLUSH carries no range. */
    ASSERT_VERDICT(check(NBD_CMD_FLUSH, 0, 512, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_FLUSH, 0, 0, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
}

static void test_validate_read_only(void)
{
    NBDRequestLimits l = default_limits();
    l.tx_flags |= NBD_FLAG_READ_ONLY;

    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, 512, &l), NBD_EPERM, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EPERM, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EPERM, NBD_PAYLOAD_NONE);
    /* EPERM even where the export never advertised TRIM or WRITE_ZEROES. */
    l.tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EPERM, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EPERM, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, 512, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_CACHE, 0, 0, 512, &l), 0, NBD_PAYLOAD_NONE);
}

static void test_validate_range(void)
{
    NBDRequestLimits l = default_limits();
    uint64_t size = l.export_size;

    ASSERT_VERDICT(check(NBD_CMD_READ, 0, size, 1, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, size - 511, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, size, 512, &l), NBD_ENOSPC, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, size - 1, 2, &l),
                   NBD_ENOSPC, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, size - 1, 2, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_CACHE, 0, size + 1, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, size, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* offset + length wrapping around 2^64 must not pass. */
    NBDRequestLimits ext = l;
    ext.mode = NBD_MODE_EXTENDED;
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 4096, UINT64_MAX - 100, &ext),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, UINT64_MAX, 2, &ext),
                   NBD_ENOSPC, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, UINT64_MAX - 511, 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
}

static void test_validate_zero_length(void)
{
    NBDRequestLimits l = default_limits();
    NBDRequestVerdict v;

    static const uint16_t cmds[] = {
        NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_CACHE,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
        v = check(cmds[i], 0, 4096, 0, &l);
        ASSERT_VERDICT(v, 0, NBD_PAYLOAD_NONE);
        g_assert_true(v.no_op);
        /* Even at the very end of the export. */
        v = check(cmds[i], 0, l.export_size, 0, &l);
        ASSERT_VERDICT(v, 0, NBD_PAYLOAD_NONE);
        g_assert_true(v.no_op);
    }
    v = check(NBD_CMD_READ, 0, 0, 1, &l);
    g_assert_false(v.no_op);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, 0, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
}

static void test_validate_lengths(void)
{
    NBDRequestLimits l = default_limits();
    l.export_size = 1ull << 40;

    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 1, &l),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, NBD_MAX_PAYLOAD + 1, &l),
                   NBD_EOVERFLOW, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD, &l), 0, NBD_PAYLOAD_READ);
    /* A compact write over 32 MiB cannot be consumed: disconnect. */
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 1, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCONNECT);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, UINT32_MAX, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCONNECT);
    /* A smaller server buffer: above it but under 32 MiB is skippable. */
    l.max_payload = 1 << 20;
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, (1 << 20) + 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, (1 << 20) + 512, &l),
                   NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* Effect-length commands are not bounded by the payload limit. */
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, UINT32_MAX, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, 0, UINT32_MAX, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, UINT32_MAX, &l), 0, NBD_PAYLOAD_NONE);
}

static void test_validate_block_size(void)
{
    NBDRequestLimits l = default_limits();
    l.block_size_advertised = true;
    l.min_block = 512;
    l.max_block = 1 << 20;
    l.export_size = 1ull << 30;

    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 512, 1024, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 1, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 512, 511, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 512, 100, &l), NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 100, 512, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, 100, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* Over the advertised maximum: reads and writes, CACHE, plain WRITE_ZEROES. */
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, 2 << 20, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, 2 << 20, &l), NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_CACHE, 0, 0, 2 << 20, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, 0, 0, 2 << 20, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 2 << 20, &l),
                   0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 2 << 20, &l), 0, NBD_PAYLOAD_NONE);
    /* Not advertised: no alignment is enforced. */
    l.block_size_advertised = false;
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 1, 3, &l), 0, NBD_PAYLOAD_NONE);
}

static void test_validate_extended(void)
{
    NBDRequestLimits l = default_limits();
    NBDRequestVerdict v;
    l.mode = NBD_MODE_EXTENDED;
    l.export_size = 1ull << 40;

    v = check(NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 4096, &l);
    ASSERT_VERDICT(v, 0, NBD_PAYLOAD_READ);
    g_assert_cmpuint(v.payload_length, ==, 4096);
    /* WRITE must say PAYLOAD_LEN; without it there is no payload at all. */
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, 4096, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    /* Payload on a command that takes none: consume it, then EINVAL. */
    v = check(NBD_CMD_READ, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 100, &l);
    ASSERT_VERDICT(v, NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    g_assert_cmpuint(v.payload_length, ==, 100);
    ASSERT_VERDICT(check(NBD_CMD_TRIM, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 100, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    /* Payload over the maximum: hang up, as the spec asks. */
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, NBD_MAX_PAYLOAD + 1, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCONNECT);
    ASSERT_VERDICT(check(NBD_CMD_READ, NBD_CMD_FLAG_PAYLOAD_LEN, 0, UINT64_MAX, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCONNECT);
    l.block_size_advertised = true;
    l.min_block = 1;
    l.max_block = 1 << 20;
    ASSERT_VERDICT(check(NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, (1 << 20) + 1, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCONNECT);
    l.block_size_advertised = false;
    /* 64-bit effect lengths. */
    ASSERT_VERDICT(check(NBD_CMD_TRIM, 0, 0, 1ull << 36, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, 0, 0, 1ull << 36, &l), 0, NBD_PAYLOAD_NONE);
    ASSERT_VERDICT(check(NBD_CMD_READ, 0, 0, 1ull << 36, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
}

static void test_validate_block_status_payload(void)
{
    NBDRequestLimits l = default_limits();
    NBDRequestVerdict v;
    NBDBlockStatusPayload p;
    uint8_t buf[64];
    l.mode = NBD_MODE_EXTENDED;
    l.n_contexts = 2;

    /* Not advertised: consume and refuse. */
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 12, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    l.tx_flags |= NBD_FLAG_BLOCK_STAT_PAYLOAD;
    v = check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 16, &l);
    ASSERT_VERDICT(v, 0, NBD_PAYLOAD_READ);
    g_assert_true(v.needs_payload_check);
    /* Lengths that cannot be 8 + 4n with 1 <= n <= contexts. */
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 8, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 14, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 20, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);

    NBDRequest req = {
        .type = NBD_CMD_BLOCK_STATUS, .flags = NBD_CMD_FLAG_PAYLOAD_LEN, .offset = 0,
        .length = 16,
    };
    uint32_t ids[] = { 1, 2 };
    size_t n = nbd_encode_block_status_payload(buf, sizeof(buf), 4096, ids, 2);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), 0, NBD_PAYLOAD_NONE);
    ids[1] = 1;
    n = nbd_encode_block_status_payload(buf, sizeof(buf), 4096, ids, 2);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    n = nbd_encode_block_status_payload(buf, sizeof(buf), 0, ids, 1);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    n = nbd_encode_block_status_payload(buf, sizeof(buf), l.export_size + 1, ids, 1);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    n = nbd_encode_block_status_payload(buf, sizeof(buf), 4096, ids, 0);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
    uint32_t three[] = { 1, 2, 3 };
    n = nbd_encode_block_status_payload(buf, sizeof(buf), 4096, three, 3);
    ASSERT_OK(nbd_decode_block_status_payload(buf, n, &p), n);
    ASSERT_VERDICT(nbd_block_status_payload_validate(&req, &p, &l), NBD_EINVAL, NBD_PAYLOAD_NONE);
}

/* ---------------------------------------------------------------------
 * Names and errno mapping
 * --------------------------------------------------------------------- */

static void test_names(void)
{
    g_assert_cmpstr(nbd_cmd_name(NBD_CMD_WRITE_ZEROES), ==, "NBD_CMD_WRITE_ZEROES");
    g_assert_cmpstr(nbd_cmd_name(77), ==, "unknown command");
    g_assert_cmpstr(nbd_opt_name(NBD_OPT_EXTENDED_HEADERS), ==, "NBD_OPT_EXTENDED_HEADERS");
    g_assert_cmpstr(nbd_opt_name(99), ==, "unknown option");
    g_assert_cmpstr(nbd_rep_name(NBD_REP_ERR_TLS_REQD), ==, "NBD_REP_ERR_TLS_REQD");
    g_assert_cmpstr(nbd_rep_name(NBD_REP_ERR(99)), ==, "unknown error reply");
    g_assert_cmpstr(nbd_info_name(NBD_INFO_BLOCK_SIZE), ==, "NBD_INFO_BLOCK_SIZE");
    g_assert_cmpstr(nbd_reply_type_name(NBD_REPLY_TYPE_ERROR_OFFSET), ==,
                    "NBD_REPLY_TYPE_ERROR_OFFSET");
    g_assert_cmpstr(nbd_err_name(NBD_ESHUTDOWN), ==, "NBD_ESHUTDOWN");
    g_assert_cmpstr(nbd_mode_name(NBD_MODE_EXTENDED), ==, "extended");
    for (uint32_t i = 0; i < 16; i++) {
        g_assert_nonnull(nbd_cmd_name((uint16_t) i));
        g_assert_nonnull(nbd_opt_name(i));
        g_assert_nonnull(nbd_rep_name(i));
        g_assert_nonnull(nbd_rep_name(NBD_REP_ERR(i)));
    }
}

static void test_errno_mapping(void)
{
    g_assert_cmpuint(nbd_errno_to_nbd(0), ==, 0);
    g_assert_cmpuint(nbd_errno_to_nbd(EPERM), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EROFS), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(EIO), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOMEM), ==, NBD_ENOMEM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EINVAL), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOSPC), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EDQUOT), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EFBIG), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EOVERFLOW), ==, NBD_EOVERFLOW);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOTSUP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(EOPNOTSUPP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(ESHUTDOWN), ==, NBD_ESHUTDOWN);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOENT), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(ETIMEDOUT), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(12345), ==, NBD_EIO);

    g_assert_cmpint(nbd_error_to_errno(0), ==, 0);
    g_assert_cmpint(nbd_error_to_errno(NBD_EPERM), ==, EPERM);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOSPC), ==, ENOSPC);
    g_assert_cmpint(nbd_error_to_errno(NBD_ESHUTDOWN), ==, ESHUTDOWN);
    g_assert_cmpint(nbd_error_to_errno(NBD_EOVERFLOW), ==, EOVERFLOW);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOTSUP), ==, ENOTSUP);
    g_assert_cmpint(nbd_error_to_errno(9999), ==, EINVAL);
    g_assert_cmpint(nbd_error_to_errno(2), ==, EINVAL);   /* ENOENT is not an NBD value */
}

/* ---------------------------------------------------------------------
 * Fuzzing: random and mutated inputs, exact-size buffers
 * --------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: a fixed seed keeps every run identical. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Runs every decoder on (p, n); checks the result is well-formed. */
static void check_result(NBDDecodeResult r, size_t n)
{
    switch (r.status) {
    case NBD_DECODE_OK:
        g_assert_cmpuint(r.size, <=, n);
        break;
    case NBD_DECODE_NEED_MORE:
        g_assert_cmpuint(r.size, >, n);
        break;
    case NBD_DECODE_INVALID:
        g_assert_nonnull(r.reason);
        break;
    default:
        g_assert_not_reached();
    }
}

static void touch_view(NBDStringView s)
{
    /* Reading every byte of a view makes a view pointing outside the
     * buffer visible to valgrind/ASan. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < s.len; i++) {
        sink ^= (uint8_t) s.data[i];
    }
    (void) sink;
}

static void fuzz_one(const uint8_t *p, size_t n, uint64_t aux)
{
    NBDGreeting g;
    uint32_t u32;
    NBDOptionHeader oh;
    NBDOptionReplyHeader orh;
    NBDExportNameReply enr;
    NBDRepServer srv;
    NBDRepInfo info;
    NBDRepMetaContext rmc;
    NBDStringView sv;
    NBDOptInfoGo ig;
    NBDOptMetaContext mc;
    NBDRequest req;
    NBDReplyHeader rh;
    NBDErrorChunk ec;
    NBDBlockStatusView bsv;
    NBDBlockStatusPayload bsp;
    uint64_t off, dlen;
    NBDDecodeResult r;

    check_result(nbd_decode_greeting(p, n, &g), n);
    check_result(nbd_decode_client_flags(p, n, &u32), n);
    check_result(nbd_decode_option_header(p, n, &oh), n);
    check_result(nbd_decode_option_reply_header(p, n, &orh), n);
    check_result(nbd_decode_export_name_reply(p, n, aux & 1, &enr), n);

    r = nbd_decode_rep_server(p, n, &srv);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(srv.name);
        touch_view(srv.description);
    }
    r = nbd_decode_rep_info(p, n, &info);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK &&
        (info.type == NBD_INFO_NAME || info.type == NBD_INFO_DESCRIPTION)) {
        touch_view(info.u.name);
    }
    r = nbd_decode_rep_meta_context(p, n, &rmc);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(rmc.name);
    }
    check_result(nbd_decode_rep_err(p, n, &sv), n);
    check_result(nbd_parse_opt_export_name(p, n, &sv), n);

    r = nbd_parse_opt_info_go(p, n, &ig);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(ig.name);
        for (uint32_t i = 0; i < ig.n_requests; i++) {
            (void) nbd_opt_info_go_request(&ig, (uint16_t) i);
        }
        (void) nbd_opt_info_go_has(&ig, NBD_INFO_BLOCK_SIZE);
    }
    r = nbd_parse_opt_meta_context(p, n, &mc);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        NBDMetaQueryIter it;
        NBDStringView q, ns, leaf;
        uint32_t count = 0;
        touch_view(mc.export_name);
        nbd_meta_query_iter_init(&it, &mc);
        while (nbd_meta_query_iter_next(&it, &q)) {
            touch_view(q);
            if (nbd_meta_context_split(q, &ns, &leaf)) {
                touch_view(ns);
                touch_view(leaf);
            }
            count++;
        }
        g_assert_cmpuint(count, ==, mc.n_queries);
    }

    for (NBDMode m = NBD_MODE_SIMPLE; m <= NBD_MODE_EXTENDED; m++) {
        r = nbd_decode_request(p, n, m, &req);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            NBDRequestLimits l = default_limits();
            l.mode = m;
            l.tx_flags = (uint16_t) aux;
            l.export_size = aux >> 16;
            l.block_size_advertised = (aux >> 3) & 1;
            l.min_block = 1u << ((aux >> 4) & 7);
            l.max_block = (uint32_t) (aux >> 20);
            l.n_contexts = (aux >> 7) & 3;
            NBDRequestVerdict v = nbd_request_validate(&req, &l);
            g_assert_true((v.error == 0) == (v.message == NULL));
            g_assert_true(v.payload != NBD_PAYLOAD_READ || v.error == 0);
            g_assert_true(v.payload == NBD_PAYLOAD_NONE ||
                          v.payload == NBD_PAYLOAD_DISCONNECT ||
                          v.payload_length <= NBD_MAX_PAYLOAD);
        }
        r = nbd_decode_reply_header(p, n, m, &rh);
        check_result(r, n);
    }

    check_result(nbd_decode_offset_data_hdr(p, n, aux & 0xffff, &off, &dlen), n);
    check_result(nbd_decode_offset_hole(p, n, aux & 15, &off, &u32), n);
    static const uint16_t err_types[] = {
        NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET, 0x8123, 0,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(err_types); i++) {
        r = nbd_decode_error_chunk(p, n, err_types[i], &ec);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            touch_view(ec.message);
        }
    }
    static const uint16_t bs_types[] = {
        NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bs_types); i++) {
        r = nbd_decode_block_status(p, n, bs_types[i], &bsv);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            for (uint32_t k = 0; k < bsv.n_extents; k++) {
                g_assert_cmpuint(nbd_block_status_extent(&bsv, k).length, !=, 0);
            }
        }
    }
    r = nbd_decode_block_status_payload(p, n, &bsp);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        NBDRequestLimits l = default_limits();
        l.n_contexts = (uint32_t) (aux & 7);
        NBDRequest breq = { .type = NBD_CMD_BLOCK_STATUS, .offset = aux >> 8 };
        (void) nbd_block_status_payload_validate(&breq, &bsp, &l);
    }
}

static void test_fuzz_random(void)
{
    uint8_t scratch[512];

    rng_state = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rng() % sizeof(scratch);
        if (iter % 4 == 0) {
            n %= 40;   /* short inputs are where the boundaries are */
        }
        for (size_t i = 0; i < n; i++) {
            scratch[i] = (uint8_t) rng();
        }
        /* Bias toward plausible prefixes so decoders get past the magic. */
        static const uint32_t magics[] = {
            NBD_REQUEST_MAGIC, NBD_EXTENDED_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC,
            NBD_STRUCTURED_REPLY_MAGIC, NBD_EXTENDED_REPLY_MAGIC,
        };
        if (n >= 4 && iter % 3 == 0) {
            nbd_store_be32(scratch, magics[rng() % G_N_ELEMENTS(magics)]);
        }
        if (n >= 4 && iter % 5 == 1) {
            /* Small length prefixes make the string walkers go deep. */
            nbd_store_be32(scratch, (uint32_t) (rng() % (n + 1)));
        }
        uint8_t *p = exact_copy(scratch, n);
        fuzz_one(p, n, rng());
        free(p);
    }
}

static void test_fuzz_mutate(void)
{
    static const struct { const uint8_t *data; size_t len; } seeds[] = {
        { greeting_vec, sizeof(greeting_vec) },
        { opt_header_vec, sizeof(opt_header_vec) },
        { opt_reply_ack_vec, sizeof(opt_reply_ack_vec) },
        { info_go_vec, sizeof(info_go_vec) },
        { meta_vec, sizeof(meta_vec) },
        { req_compact_vec, sizeof(req_compact_vec) },
        { req_ext_vec, sizeof(req_ext_vec) },
        { simple_reply_vec, sizeof(simple_reply_vec) },
        { structured_reply_vec, sizeof(structured_reply_vec) },
        { extended_reply_vec, sizeof(extended_reply_vec) },
    };
    uint8_t scratch[128];

    rng_state = 0x0123456789abcdefull;
    for (size_t s = 0; s < G_N_ELEMENTS(seeds); s++) {
        for (int iter = 0; iter < 2000; iter++) {
            size_t n = seeds[s].len;
            memcpy(scratch, seeds[s].data, n);
            int flips = 1 + (int) (rng() % 4);
            for (int f = 0; f < flips; f++) {
                scratch[rng() % n] ^= (uint8_t) (1u << (rng() % 8));
            }
            /* Sometimes cut it short or grow it with junk. */
            uint64_t shape = rng() % 4;
            if (shape == 0) {
                n = rng() % (n + 1);
            } else if (shape == 1) {
                size_t extra = rng() % (sizeof(scratch) - n);
                for (size_t i = 0; i < extra; i++) {
                    scratch[n + i] = (uint8_t) rng();
                }
                n += extra;
            }
            uint8_t *p = exact_copy(scratch, n);
            fuzz_one(p, n, rng());
            free(p);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/constants", test_constants);
    g_test_add_func("/nbd/codec/handshake/greeting", test_greeting);
    g_test_add_func("/nbd/codec/handshake/client-flags", test_client_flags);
    g_test_add_func("/nbd/codec/handshake/option-header", test_option_header);
    g_test_add_func("/nbd/codec/handshake/option-reply-header", test_option_reply_header);
    g_test_add_func("/nbd/codec/handshake/export-name-reply", test_export_name_reply);
    g_test_add_func("/nbd/codec/handshake/rep-err", test_rep_err);
    g_test_add_func("/nbd/codec/handshake/rep-server", test_rep_server);
    g_test_add_func("/nbd/codec/handshake/rep-info", test_rep_info);
    g_test_add_func("/nbd/codec/handshake/rep-meta-context", test_rep_meta_context);
    g_test_add_func("/nbd/codec/handshake/block-size-check", test_block_size_check);
    g_test_add_func("/nbd/codec/options/lengths", test_opt_lengths);
    g_test_add_func("/nbd/codec/options/export-name", test_opt_export_name);
    g_test_add_func("/nbd/codec/options/info-go", test_opt_info_go);
    g_test_add_func("/nbd/codec/options/meta-context", test_opt_meta_context);
    g_test_add_func("/nbd/codec/transmission/request", test_request);
    g_test_add_func("/nbd/codec/transmission/replies", test_replies);
    g_test_add_func("/nbd/codec/transmission/chunk-payloads", test_chunk_payloads);
    g_test_add_func("/nbd/codec/transmission/block-status-chunks", test_block_status_chunks);
    g_test_add_func("/nbd/codec/transmission/block-status-payload", test_block_status_payload);
    g_test_add_func("/nbd/codec/validate/basic", test_validate_basic);
    g_test_add_func("/nbd/codec/validate/commands-and-flags", test_validate_commands_and_flags);
    g_test_add_func("/nbd/codec/validate/read-only", test_validate_read_only);
    g_test_add_func("/nbd/codec/validate/range", test_validate_range);
    g_test_add_func("/nbd/codec/validate/zero-length", test_validate_zero_length);
    g_test_add_func("/nbd/codec/validate/lengths", test_validate_lengths);
    g_test_add_func("/nbd/codec/validate/block-size", test_validate_block_size);
    g_test_add_func("/nbd/codec/validate/extended", test_validate_extended);
    g_test_add_func("/nbd/codec/validate/block-status-payload",
                    test_validate_block_status_payload);
    g_test_add_func("/nbd/codec/names", test_names);
    g_test_add_func("/nbd/codec/errno", test_errno_mapping);
    g_test_add_func("/nbd/codec/fuzz/random", test_fuzz_random);
    g_test_add_func("/nbd/codec/fuzz/mutate", test_fuzz_mutate);

    return g_test_run();
}
