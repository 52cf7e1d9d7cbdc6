/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of format probing (block/probe.c): the magics QEMU knows,
 * raw for everything else, drivers looked up by name, and the guard on
 * block 0 of a probed raw node: whole-sector writes only, none that would
 * probe as another format; the rest of the node is untouched by it.
 */
#include "block-test-util.h"

#include <errno.h>
#include <string.h>

static void test_probe_magics(void)
{
    uint8_t buf[512] = { 0 };

    g_assert_null(bdrv_probe_format(buf, sizeof(buf)));
    memcpy(buf, "QFI\xfb\0\0\0\3", 8);
    g_assert_cmpstr(bdrv_probe_format(buf, sizeof(buf)), ==, "qcow2");
    buf[7] = 1;
    g_assert_cmpstr(bdrv_probe_format(buf, sizeof(buf)), ==, "qcow");
    /* Too short to hold the version: not an image. */
    g_assert_null(bdrv_probe_format(buf, 4));
    memset(buf, 0, sizeof(buf));
    memcpy(buf, "vhdxfile", 8);
    g_assert_cmpstr(bdrv_probe_format(buf, sizeof(buf)), ==, "vhdx");
    memset(buf, 0, sizeof(buf));
    memcpy(buf + 64, "\x7f\x10\xda\xbe", 4);
    g_assert_cmpstr(bdrv_probe_format(buf, sizeof(buf)), ==, "vdi");
    g_assert_null(bdrv_probe_format(buf, 64));
    memset(buf, 'x', sizeof(buf));
    g_assert_null(bdrv_probe_format(buf, sizeof(buf)));
}

static void test_driver_exists(void)
{
    g_assert_true(bdrv_driver_exists("file"));
    g_assert_true(bdrv_driver_exists("null-co"));
    g_assert_false(bdrv_driver_exists("raw-ish"));
    g_assert_false(bdrv_driver_exists(""));
}

static void test_guard(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"g\",\"size\":65536}");
    uint8_t header[512] = "QFI\xfb\0\0\0\3";
    uint8_t text[512], back[512];
    BdrvInfo info;
    Result r = { 0 };

    /* Before the mark anything goes. */
    g_assert_cmpint(do_write(bs, 0, header, sizeof(header), 0, &r), ==, 0);
    result_clear(&r);
    bdrv_set_probed_raw(bs);
    bdrv_get_info(bs, &info);
    g_assert_cmpuint(info.request_alignment, ==, 512);

    g_assert_cmpint(do_write(bs, 0, header, sizeof(header), 0, &r), ==, -EPERM);
    g_assert_nonnull(strstr(r.msg, "image header"));
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 1, "abc", 3, 0, &r), ==, -EINVAL);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 0, header, 100, 0, &r), ==, -EINVAL);
    result_clear(&r);
    /* A header spread over several buffers is still seen. */
    struct iovec iov[] = { { header, 2 }, { header + 2, 510 } };
    bdrv_aio_pwritev(bs, 0, iov, 2, 0, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, -EPERM);
    result_clear(&r);

    memset(text, 't', sizeof(text));
    g_assert_cmpint(do_write(bs, 0, text, sizeof(text), 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 0, back, sizeof(back), &r), ==, 0);
    result_clear(&r);
    g_assert_cmpmem(back, sizeof(back), text, sizeof(text));
    /* Past block 0 the guard does not look. */
    g_assert_cmpint(do_write(bs, 512, header, sizeof(header), 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 1000, "abc", 3, 0, &r), ==, 0);
    result_clear(&r);
    /* Zeroing block 0 leaves a raw image. */
    g_assert_cmpint(do_zeroes(bs, 0, 512, 0, &r), ==, 0);
    result_clear(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/block/probe/magics", test_probe_magics);
    g_test_add_func("/block/probe/driver-exists", test_driver_exists);
    g_test_add_func("/block/probe/guard", test_guard);
    return run_block_tests(NULL);
}
