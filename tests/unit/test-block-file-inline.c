/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the file driver's inline path (block/file-posix-inline.c)
 * on tmpfs, where a file has no device behind it: small reads, writes (FUA
 * too) and flushes finish on the submitting thread, which
 * bdrv_dispatch_completions() shows by delivering them straight after the
 * submission, and give the same results as the worker pool: data round
 * trips, scattered buffers, zeroes past the end of a file shrunk underneath,
 * errors with a message. Requests the path leaves alone (large, O_DIRECT)
 * still work beside it.
 */
#include "block-test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char *shmdir;      /* on tmpfs */

static BlockDriverState *open_file(const char *path, const char *extra)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=f,filename=%s%s%s", path,
                                            extra ? "," : "", extra ? extra : "");
    BlockDriverState *bs = open_keyval(opts, &err);

    g_assert_no_error(err);
    return bs;
}

static char *make_file(const char *name, off_t size)
{
    char *path = g_build_filename(shmdir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

/* Submitted, then finished before the context ran: done inline. */
static void assert_inline(Result *r, int ret)
{
    g_assert_false(r->done);
    bdrv_dispatch_completions();
    g_assert_true(r->done);
    g_assert_cmpint(r->ret, ==, ret);
    result_clear(r);
}

static void test_inline_round_trip(void)
{
    g_autofree char *path = make_file("rt.img", MiB);
    BlockDriverState *bs = open_file(path, NULL);
    g_autofree uint8_t *w = g_malloc(MiB), *rd = g_malloc0(MiB);
    struct iovec iov[3];
    Result r = { 0 };

    for (size_t i = 0; i < MiB; i++) {
        w[i] = (uint8_t) (i * 13 + (i >> 9));
    }
    iov[0] = (struct iovec) { w, 4096 };
    bdrv_aio_pwritev(bs, 8192, iov, 1, 0, on_done, &r);
    assert_inline(&r, 0);
    /* FUA is a data sync, which tmpfs has nothing to wait for. */
    iov[0] = (struct iovec) { w + 4096, 1000 };
    iov[1] = (struct iovec) { w + 5096, 0 };
    iov[2] = (struct iovec) { w + 5096, 3096 };
    bdrv_aio_pwritev(bs, 12288, iov, 3, BDRV_REQ_FUA, on_done, &r);
    assert_inline(&r, 0);
    bdrv_aio_flush(bs, on_done, &r);
    assert_inline(&r, 0);

    iov[0] = (struct iovec) { rd, 5000 };
    iov[1] = (struct iovec) { rd + 5000, 3192 };
    bdrv_aio_preadv(bs, 8192, iov, 2, on_done, &r);
    assert_inline(&r, 0);
    g_assert_cmpmem(rd, 8192, w, 8192);

    /* Large requests take the other paths, with the same result. */
    g_assert_cmpint(do_write(bs, 0, w, MiB, 0, &r), ==, 0);
    result_clear(&r);
    memset(rd, 0, MiB);
    g_assert_cmpint(read_ret(bs, 0, rd, MiB), ==, 0);
    g_assert_cmpmem(rd, MiB, w, MiB);
    close_node(bs);
    g_unlink(path);
}

static void test_inline_shrunk(void)
{
    g_autofree char *path = make_file("shrunk.img", 64 * KiB);
    BlockDriverState *bs = open_file(path, NULL);
    uint8_t buf[8192];
    struct iovec iov = { buf, sizeof(buf) };
    Result r = { 0 };

    memset(buf, 0x5a, sizeof(buf));
    bdrv_aio_pwritev(bs, 32 * KiB, &iov, 1, 0, on_done, &r);
    assert_inline(&r, 0);
    /* Cut the file in the middle of the data: the rest reads as zeroes. */
    g_assert_cmpint(truncate(path, 36 * KiB), ==, 0);
    memset(buf, 0xff, sizeof(buf));
    bdrv_aio_preadv(bs, 32 * KiB, &iov, 1, on_done, &r);
    assert_inline(&r, 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmpint(buf[i], ==, i < 4 * KiB ? 0x5a : 0);
    }
    close_node(bs);
    g_unlink(path);
}

/* A write the kernel refuses (EFBIG past RLIMIT_FSIZE) comes back as
 * -errno with the worker pool's message. */
static void test_inline_error(void)
{
    g_autofree char *path = make_file("big.img", MiB);
    g_autofree char *expected = NULL;
    BlockDriverState *bs = open_file(path, NULL);
    uint8_t buf[4096] = { 1 };
    struct iovec iov = { buf, sizeof(buf) };
    struct rlimit old, lim;
    Result r = { 0 };

    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 512 * KiB;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    bdrv_aio_pwritev(bs, 768 * KiB, &iov, 1, 0, on_done, &r);
    g_assert_false(r.done);
    bdrv_dispatch_completions();
    g_assert_true(r.done);
    g_assert_cmpint(r.ret, ==, -EFBIG);
    expected = g_strdup_printf("Could not write to '%s' at offset 786432: File too large", path);
    g_assert_cmpstr(r.msg, ==, expected);
    result_clear(&r);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    close_node(bs);
    g_unlink(path);
}

/* O_DIRECT requests are not the inline path's (tmpfs takes O_DIRECT only
 * on newer kernels: skip where it does not). */
static void test_direct_not_inline(void)
{
    g_autofree char *path = make_file("direct.img", 64 * KiB);
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=d,filename=%s,"
                                            "cache.direct=on", path);
    BlockDriverState *bs = open_keyval(opts, &err);
    void *buf = NULL;
    Result r = { 0 };

    if (!bs) {
        g_test_skip("no O_DIRECT on this tmpfs");
        g_unlink(path);
        return;
    }
    g_assert_cmpint(posix_memalign(&buf, 4096, 4096), ==, 0);
    memset(buf, 0x77, 4096);
    g_assert_cmpint(do_write(bs, 4096, buf, 4096, 0, &r), ==, 0);
    result_clear(&r);
    memset(buf, 0, 4096);
    g_assert_cmpint(read_ret(bs, 4096, buf, 4096), ==, 0);
    g_assert_cmpint(((uint8_t *) buf)[4095], ==, 0x77);
    free(buf);
    close_node(bs);
    g_unlink(path);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    shmdir = g_build_filename("/dev/shm", "berth-inline-XXXXXX", NULL);
    if (!g_mkdtemp(shmdir)) {
        g_printerr("no tmpfs at /dev/shm: skipping\n");
        return 77;
    }
    g_test_add_func("/block/file-inline/round-trip", test_inline_round_trip);
    g_test_add_func("/block/file-inline/shrunk", test_inline_shrunk);
    g_test_add_func("/block/file-inline/error", test_inline_error);
    g_test_add_func("/block/file-inline/direct", test_direct_not_inline);
    ret = run_block_tests(NULL);
    g_rmdir(shmdir);
    g_free(shmdir);
    return ret;
}
