/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the NBD wire codec's unit tests (test-nbd-codec-*.c):
 * exact-size heap copies so that a decoder reading one byte too far trips
 * valgrind or ASan, byte comparison, assertions on decode results, the
 * request limits of a plain structured-mode export, and the byte vectors
 * written out by hand from the NBD specification, which the handshake and
 * transmission tests check in both directions and the fuzz tests mutate.
 */
#ifndef BERTH_TESTS_NBD_CODEC_TEST_UTIL_H
#define BERTH_TESTS_NBD_CODEC_TEST_UTIL_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "nbd/proto/codec.h"

#define REP_MAGIC_BYTES 0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9
#define OPTS_MAGIC_BYTES 0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54

/* A copy of buf in a heap block of exactly len bytes, so that a decoder
 * reading one byte too far trips valgrind or ASan. */
static inline uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    g_assert_nonnull(p);
    if (len) {
        memcpy(p, buf, len);
    }
    return p;
}

static inline void assert_bytes(const uint8_t *got, size_t got_len, const uint8_t *want,
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

/* A structured-mode export of 1 MiB offering every optional command. */
static inline NBDRequestLimits default_limits(void)
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

/* ---------------------------------------------------------------------
 * Byte vectors from the specification
 * --------------------------------------------------------------------- */

/* Handshake */

static const uint8_t greeting_vec[] = {
    0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,   /* NBDMAGIC */
    OPTS_MAGIC_BYTES,                                 /* IHAVEOPT */
    0x00, 0x03,                                       /* FIXED_NEWSTYLE|NO_ZEROES */
};

static const uint8_t opt_header_vec[] = {
    OPTS_MAGIC_BYTES,
    0x00, 0x00, 0x00, 0x07,           /* NBD_OPT_GO */
    0x00, 0x00, 0x00, 0x1a,           /* 26 bytes of data */
};

static const uint8_t opt_reply_ack_vec[] = {
    REP_MAGIC_BYTES,
    0x00, 0x00, 0x00, 0x07,           /* NBD_OPT_GO */
    0x00, 0x00, 0x00, 0x01,           /* NBD_REP_ACK */
    0x00, 0x00, 0x00, 0x00,
};

/* Option data */

static const uint8_t info_go_vec[] = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',
    0x00, 0x02,                       /* two requests */
    0x00, 0x01,                       /* NBD_INFO_NAME */
    0x00, 0x03,                       /* NBD_INFO_BLOCK_SIZE */
};

static const uint8_t meta_vec[] = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',
    0x00, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x00, 0x0f,
    'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
    0x00, 0x00, 0x00, 0x05, 'q', 'e', 'm', 'u', ':',
};

/* Requests and replies */

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

#endif /* BERTH_TESTS_NBD_CODEC_TEST_UTIL_H */
