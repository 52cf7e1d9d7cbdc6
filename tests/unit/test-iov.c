/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of util/iov.c: slicing an iovec array at any offset and length,
 * copying/filling across entry boundaries, including empty entries and
 * ranges that run past the end; the front-to-back cursor; zero detection.
 */
#include "util/iov.h"

#include <string.h>

static void make_iov(uint8_t *buf, struct iovec *iov)
{
    /* 3 + 0 + 5 + 8 = 16 bytes in four pieces, one of them empty. */
    static const size_t lens[] = { 3, 0, 5, 8 };
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        iov[i].iov_base = buf + off;
        iov[i].iov_len = lens[i];
        off += lens[i];
    }
}

static void test_size(void)
{
    uint8_t buf[16];
    struct iovec iov[4];
    make_iov(buf, iov);
    g_assert_cmpuint(berth_iov_size(iov, 4), ==, 16);
    g_assert_cmpuint(berth_iov_size(iov, 0), ==, 0);
}

static void test_slice(void)
{
    uint8_t buf[16];
    struct iovec iov[4], out[4];
    uint64_t covered;
    make_iov(buf, iov);

    /* Across the empty entry: bytes 2..9 are 1 of piece 0, 5 of piece 2, 2 of piece 3. */
    int n = berth_iov_slice(iov, 4, 2, 8, out, 4, &covered);
    g_assert_cmpint(n, ==, 3);
    g_assert_cmpuint(covered, ==, 8);
    g_assert_true(out[0].iov_base == buf + 2 && out[0].iov_len == 1);
    g_assert_true(out[1].iov_base == buf + 3 && out[1].iov_len == 5);
    g_assert_true(out[2].iov_base == buf + 8 && out[2].iov_len == 2);

    /* Bounded by max_out, and by the end of the array. */
    n = berth_iov_slice(iov, 4, 0, 16, out, 1, &covered);
    g_assert_cmpint(n, ==, 1);
    g_assert_cmpuint(covered, ==, 3);
    n = berth_iov_slice(iov, 4, 10, 100, out, 4, &covered);
    g_assert_cmpint(n, ==, 1);
    g_assert_cmpuint(covered, ==, 6);
    n = berth_iov_slice(iov, 4, 16, 1, out, 4, NULL);
    g_assert_cmpint(n, ==, 0);
}

static void test_copy_and_fill(void)
{
    uint8_t buf[16], want[16];
    struct iovec iov[4];
    make_iov(buf, iov);
    memset(buf, 0xee, sizeof(buf));

    berth_iov_from_buf(iov, 4, 1, "abcdefghij", 10);
    memset(want, 0xee, sizeof(want));
    memcpy(want + 1, "abcdefghij", 10);
    g_assert_cmpmem(buf, 16, want, 16);

    berth_iov_memset(iov, 4, 6, 0, 100); /* past the end: stops at 16 */
    memset(want + 6, 0, 10);
    g_assert_cmpmem(buf, 16, want, 16);
}

static void test_cursor(void)
{
    uint8_t buf[16], out[16];
    struct iovec iov[4];
    make_iov(buf, iov);
    memset(buf, 0, sizeof(buf));

    BerthIovCursor c;
    berth_iov_cursor_init(&c, iov, 4);
    berth_iov_cursor_from_buf(&c, "0123456789", 10);   /* crosses the empty entry */
    berth_iov_cursor_memset(&c, 'z', 100);              /* stops at the end */
    g_assert_cmpmem(buf, 16, "0123456789zzzzzz", 16);

    berth_iov_cursor_init(&c, iov, 4);
    berth_iov_cursor_skip(&c, 2);
    berth_iov_cursor_to_buf(&c, out, 7);
    g_assert_cmpmem(out, 7, "2345678", 7);
    berth_iov_cursor_to_buf(&c, out, 7);
    g_assert_cmpmem(out, 7, "9zzzzzz", 7);
}

static void test_is_zero(void)
{
    uint8_t buf[4096] = { 0 };
    struct iovec iov[4];
    make_iov(buf, iov);
    g_assert_true(berth_buffer_is_zero(buf, sizeof(buf)));
    g_assert_true(berth_buffer_is_zero(buf, 0));
    g_assert_true(berth_iov_is_zero(iov, 4));
    for (size_t at = 0; at < sizeof(buf); at += 1021) {
        buf[at] = 1;
        g_assert_false(berth_buffer_is_zero(buf, sizeof(buf)));
        g_assert_true(at < 16 ? !berth_iov_is_zero(iov, 4) : berth_iov_is_zero(iov, 4));
        buf[at] = 0;
    }
    buf[4095] = 1;
    g_assert_false(berth_buffer_is_zero(buf, sizeof(buf)));
    g_assert_true(berth_buffer_is_zero(buf, 4095));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/util/iov/size", test_size);
    g_test_add_func("/util/iov/slice", test_slice);
    g_test_add_func("/util/iov/copy-and-fill", test_copy_and_fill);
    g_test_add_func("/util/iov/cursor", test_cursor);
    g_test_add_func("/util/iov/is-zero", test_is_zero);
    return g_test_run();
}
