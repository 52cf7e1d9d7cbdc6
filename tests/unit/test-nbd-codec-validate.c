/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for nbd_request_validate() and the block status payload check
 * (nbd/proto/codec*.c): each rule on commands, flags, ranges, lengths, block
 * sizes, extended headers and read-only exports has a case.
 */
#include "nbd-codec-test-util.h"

/* ---------------------------------------------------------------------
 * Request validation
 * --------------------------------------------------------------------- */

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
    /* A compact write over the maximum: refused, and its payload skipped so
     * that the connection goes on. */
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 1, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    ASSERT_VERDICT(check(NBD_CMD_WRITE, 0, 0, UINT32_MAX, &l),
                   NBD_EINVAL, NBD_PAYLOAD_DISCARD);
    /* A smaller server buffer: above it but under the maximum is skippable. */
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/validate/basic", test_validate_basic);
    g_test_add_func("/nbd/codec/validate/commands-and-flags", test_validate_commands_and_flags);
    g_test_add_func("/nbd/codec/validate/read-only", test_validate_read_only);
    g_test_add_func("/nbd/codec/validate/range", test_validate_range);
    g_test_add_func("/nbd/codec/validate/zero-length", test_validate_zero_length);
    g_test_add_func("/nbd/codec/validate/lengths", test_validate_lengths);
    g_test_add_func("/nbd/codec/validate/block-size", test_validate_block_size);
    g_test_add_func("/nbd/codec/validate/extended", test_validate_extended);
    g_test_add_func("/nbd/codec/validate/block-status-payload", test_validate_block_status_payload);

    return g_test_run();
}
