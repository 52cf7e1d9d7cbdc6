/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the handshake part of the NBD wire codec (nbd/proto/codec*.c):
 * the greeting, client flags, option headers, option replies and their
 * payloads, and the parsing of option data (NBD_OPT_EXPORT_NAME, INFO/GO,
 * meta contexts).  Every structure is checked against byte vectors written
 * out by hand from the NBD specification, in both directions, and every
 * decoder is fed each truncation of a valid message, wrong magics and
 * absurd lengths.
 */
#include "nbd-codec-test-util.h"

/* ---------------------------------------------------------------------
 * Handshake
 * --------------------------------------------------------------------- */

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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

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

    return g_test_run();
}
