/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the file driver on real files: round trips through scattered
 * buffers, sizes rounded to sectors with zeroes past the end of file, a file
 * truncated underneath, block status from SEEK_DATA/SEEK_HOLE with several
 * extents and the max_extents limit, discard and write-zeroes making holes,
 * NO_FALLBACK on a filesystem that cannot zero ranges (tmpfs), FUA and
 * flush, O_DIRECT with unaligned requests going through bounce buffers,
 * write errors from the kernel (EFBIG past RLIMIT_FSIZE) coming back as
 * -errno with a message, open errors with QEMU's texts, block devices (a loop
 * device, when the test may make one), and completions of worker-pool
 * requests on the submitter's context from several threads.
 */
#include "block-test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <linux/loop.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;      /* on the root filesystem (ext4 here) */
static char *shmdir;      /* on tmpfs, when /dev/shm exists */

/* Opens node "f" on path with extra key=value options. */
static BlockDriverState *open_file(const char *path, const char *extra)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = NULL;
    BlockDriverState *bs;

    g_assert_null(strchr(path, ','));
    opts = g_strdup_printf("driver=file,node-name=f,filename=%s%s%s", path,
                           extra ? "," : "", extra ? extra : "");
    bs = open_keyval(opts, &err);
    g_assert_no_error(err);
    return bs;
}

static char *make_file(const char *dir, const char *name, off_t size)
{
    char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t) (seed * 31 + i * 7 + (i >> 11));
    }
}

static uint64_t allocated_bytes(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t) st.st_blocks * 512;
}

/* ---- tests ------------------------------------------------------------- */

static void test_round_trip(void)
{
    g_autofree char *path = make_file(tmpdir, "rt.img", MiB);
    BlockDriverState *bs = open_file(path, NULL);
    g_autofree uint8_t *w = g_malloc(200 * KiB);
    g_autofree uint8_t *rd = g_malloc(300 * KiB);
    Result r = { 0 };
    BdrvInfo info;

    bdrv_get_info(bs, &info);
    g_assert_cmpstr(info.driver, ==, "file");
    g_assert_cmpstr(info.filename, ==, path);
    g_assert_cmpuint(info.size, ==, MiB);
    g_assert_true(info.can_flush);
    g_assert_true(info.can_fua);
    g_assert_false(info.can_discard);   /* discard=ignore */
    g_assert_true(info.has_block_status);
    g_assert_true(info.coherent);
    g_assert_cmpuint(info.request_alignment, ==, 1);

    /* Small (inline fast path when cached) and large (worker) requests. */
    fill_pattern(w, 200 * KiB, 1);
    g_assert_cmpint(do_write(bs, 12345, w, 200 * KiB, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 12345, rd, 200 * KiB), ==, 0);
    g_assert_cmpmem(w, 200 * KiB, rd, 200 * KiB);
    g_assert_cmpint(read_ret(bs, 12345 + 4096, rd, 512), ==, 0);
    g_assert_cmpmem(w + 4096, 512, rd, 512);

    /* Many scattered buffers (more than one preadv batch). */
    struct iovec iov[150];
    for (int i = 0; i < 150; i++) {
        iov[i].iov_base = rd + i * 1000;
        iov[i].iov_len = i % 3 == 0 ? 0 : 1000;
    }
    memset(rd, 0, 200 * KiB);
    bdrv_aio_preadv(bs, 12345, iov, 150, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    for (int i = 0, pos = 0; i < 150; i++) {
        g_assert_cmpmem(iov[i].iov_base, iov[i].iov_len, w + pos, iov[i].iov_len);
        pos += iov[i].iov_len;
    }
    bdrv_aio_pwritev(bs, 500 * KiB, iov, 150, BDRV_REQ_FUA, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 500 * KiB, rd + 150 * KiB, 100 * 1000), ==, 0);
    g_assert_cmpmem(w, 100 * 1000, rd + 150 * KiB, 100 * 1000);

    g_assert_cmpint(do_flush(bs), ==, 0);
    g_assert_cmpint(do_simple(bdrv_aio_cache, bs, 0, MiB), ==, 0);
    /* discard=ignore accepts and keeps the data. */
    g_assert_cmpint(do_simple(bdrv_aio_pdiscard, bs, 0, MiB), ==, 0);
    g_assert_cmpint(read_ret(bs, 12345, rd, 4096), ==, 0);
    g_assert_cmpmem(w, 4096, rd, 4096);

    /* Range checks. */
    g_assert_cmpint(read_ret(bs, MiB - 10, rd, 11), ==, -EINVAL);
    g_assert_cmpint(do_write(bs, MiB, w, 1, 0, &r), ==, -EINVAL);
    g_assert_nonnull(strstr(r.msg, "beyond the end of node 'f'"));
    result_clear(&r);
    close_node(bs);

    /* Read-only nodes refuse changes and still read. */
    bs = open_file(path, "read-only=on");
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(do_write(bs, 0, w, 1, 0, &r), ==, -EPERM);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 0, 1, 0, &r), ==, -EPERM);
    result_clear(&r);
    g_assert_cmpint(do_simple(bdrv_aio_pdiscard, bs, 0, 1), ==, -EPERM);
    g_assert_cmpint(read_ret(bs, 12345, rd, 4096), ==, 0);
    g_assert_cmpmem(w, 4096, rd, 4096);
    close_node(bs);
    g_unlink(path);
}

static void test_size_and_truncation(void)
{
    g_autofree char *path = make_file(tmpdir, "short.img", 0);
    uint8_t buf[64 * 1024];
    Result r = { 0 };
    BlockDriverState *bs;
    int fd;

    /* A 1000-byte file is a 1024-byte node whose tail reads as zeroes. */
    fd = open(path, O_WRONLY);
    memset(buf, 0xee, sizeof(buf));
    g_assert_cmpint(pwrite(fd, buf, 1000, 0), ==, 1000);
    close(fd);
    bs = open_file(path, NULL);
    g_assert_cmpuint(bdrv_getlength(bs), ==, 1024);
    memset(buf, 0x11, sizeof(buf));
    g_assert_cmpint(read_ret(bs, 0, buf, 1024), ==, 0);
    g_assert_cmpint(buf[999], ==, 0xee);
    g_assert_true(is_zero(buf + 1000, 24));
    g_assert_cmpint(do_status(bs, 0, 1024, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 0, 1000, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 24, BDRV_BLOCK_ZERO);
    result_clear(&r);
    close_node(bs);

    /* Truncated underneath: reads past the new end give zeroes. */
    fd = open(path, O_RDWR);
    g_assert_cmpint(ftruncate(fd, 64 * 1024), ==, 0);
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(pwrite(fd, buf, sizeof(buf), 0), ==, (ssize_t) sizeof(buf));
    bs = open_file(path, NULL);
    g_assert_cmpint(ftruncate(fd, 10000), ==, 0);
    close(fd);
    memset(buf, 0x11, sizeof(buf));
    g_assert_cmpint(read_ret(bs, 8192, buf, 8192), ==, 0);
    g_assert_cmpint(buf[10000 - 8192 - 1], ==, 0x5a);
    g_assert_true(is_zero(buf + 10000 - 8192, 8192 - (10000 - 8192)));
    g_assert_cmpint(read_ret(bs, 32768, buf, 4096), ==, 0);
    g_assert_true(is_zero(buf, 4096));
    assert_status(bs, 16384, 65536 - 16384, BDRV_BLOCK_ZERO);
    /* Writes past the new end grow the file again. */
    g_assert_cmpint(do_write(bs, 65536 - 10, "0123456789", 10, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 65536 - 10, buf, 10), ==, 0);
    g_assert_cmpmem(buf, 10, "0123456789", 10);
    /* Removing the file changes nothing for the open node (POSIX). */
    g_unlink(path);
    g_assert_cmpint(read_ret(bs, 65536 - 10, buf, 10), ==, 0);
    g_assert_cmpmem(buf, 10, "0123456789", 10);
    close_node(bs);
}

static void test_block_status(void)
{
    g_autofree char *path = make_file(tmpdir, "sparse.img", MiB);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    BlockDriverState *bs = open_file(path, "discard=unmap");
    Result r = { 0 };

    g_assert_cmpint(do_status(bs, 0, MiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    assert_extent(&r, 0, MiB, BDRV_BLOCK_ZERO);
    result_clear(&r);

    memset(buf, 0x33, 64 * KiB);
    g_assert_cmpint(do_write(bs, 0, buf, 64 * KiB, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 512 * KiB, buf, 64 * KiB, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_flush(bs), ==, 0);

    g_assert_cmpint(do_status(bs, 0, MiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 4);
    assert_extent(&r, 0, 64 * KiB, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 448 * KiB, BDRV_BLOCK_ZERO);
    assert_extent(&r, 2, 64 * KiB, BDRV_BLOCK_DATA);
    assert_extent(&r, 3, 448 * KiB, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* max_extents cuts the answer short. */
    g_assert_cmpint(do_status(bs, 0, MiB, 2, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 1, 448 * KiB, BDRV_BLOCK_ZERO);
    result_clear(&r);
    /* Starting inside an extent. */
    g_assert_cmpint(do_status(bs, 60 * KiB, 8 * KiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 0, 4 * KiB, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 4 * KiB, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* Discard punches a hole. */
    uint64_t before = allocated_bytes(path);
    g_assert_cmpint(do_simple(bdrv_aio_pdiscard, bs, 512 * KiB, 64 * KiB), ==, 0);
    g_assert_cmpuint(allocated_bytes(path), <, before);
    assert_status(bs, 64 * KiB, MiB - 64 * KiB, BDRV_BLOCK_ZERO);
    g_assert_cmpint(read_ret(bs, 512 * KiB, buf, 64 * KiB), ==, 0);
    g_assert_true(is_zero(buf, 64 * KiB));

    /* Write-zeroes: zeroed in place, or punched with MAY_UNMAP. */
    g_assert_cmpint(do_zeroes(bs, 0, 16 * KiB, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 32 * KiB, 16 * KiB, BDRV_REQ_MAY_UNMAP | BDRV_REQ_FUA, &r),
                    ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 20 * KiB, 1000, BDRV_REQ_NO_FALLBACK, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 0, buf, 64 * KiB), ==, 0);
    g_assert_true(is_zero(buf, 16 * KiB));
    g_assert_cmpint(buf[16 * KiB], ==, 0x33);
    g_assert_true(is_zero(buf + 20 * KiB, 1000));
    g_assert_cmpint(buf[20 * KiB + 1000], ==, 0x33);
    g_assert_true(is_zero(buf + 32 * KiB, 16 * KiB));
    g_assert_cmpint(buf[48 * KiB], ==, 0x33);
    assert_status(bs, 32 * KiB, 16 * KiB, BDRV_BLOCK_ZERO);
    close_node(bs);
    g_unlink(path);
}

static void test_no_fallback(void)
{
    g_autofree char *path = NULL;
    uint8_t buf[8192];
    BlockDriverState *bs;
    Result r = { 0 };

    if (!shmdir) {
        g_test_skip("no tmpfs at /dev/shm");
        return;
    }
    /* tmpfs can punch holes but not zero ranges in place. */
    path = make_file(shmdir, "nofb.img", 64 * KiB);
    bs = open_file(path, "discard=unmap");
    memset(buf, 0x44, sizeof(buf));
    g_assert_cmpint(do_write(bs, 0, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);

    g_assert_cmpint(do_zeroes(bs, 0, 4096, BDRV_REQ_NO_FALLBACK, &r), ==, -ENOTSUP);
    g_assert_nonnull(r.msg);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 0, buf, 4096), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x44);

    /* With MAY_UNMAP a punched hole is fast; without NO_FALLBACK zeroes
     * are written. */
    g_assert_cmpint(do_zeroes(bs, 0, 4096, BDRV_REQ_NO_FALLBACK | BDRV_REQ_MAY_UNMAP, &r),
                    ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 4096, 100, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 0, buf, 8192), ==, 0);
    g_assert_true(is_zero(buf, 4196));
    g_assert_cmpint(buf[4196], ==, 0x44);
    close_node(bs);

    /* discard=ignore: MAY_UNMAP is dropped, so NO_FALLBACK must fail. */
    bs = open_file(path, NULL);
    g_assert_cmpint(do_zeroes(bs, 0, 4096, BDRV_REQ_NO_FALLBACK | BDRV_REQ_MAY_UNMAP, &r),
                    ==, -ENOTSUP);
    result_clear(&r);
    close_node(bs);
    g_unlink(path);
}

static void test_direct(void)
{
    g_autofree char *path = make_file(tmpdir, "direct.img", MiB);
    g_autofree char *empty = make_file(tmpdir, "empty.img", 0);
    g_autofree uint8_t *w = g_malloc(300 * KiB);
    g_autofree uint8_t *rd = g_malloc(300 * KiB + 1);
    BlockDriverState *bs;
    Result r = { 0 };
    BdrvInfo info;

    /* Give the probe something to read. */
    int fd = open(path, O_WRONLY);
    fill_pattern(w, 300 * KiB, 5);
    g_assert_cmpint(pwrite(fd, w, 4096, 0), ==, 4096);
    close(fd);

    bs = open_file(path, "cache.direct=on,aio=native");
    bdrv_get_info(bs, &info);
    g_assert_cmpuint(info.request_alignment, >=, 1);
    g_assert_cmpuint(info.request_alignment, <=, 4096);
    g_assert_cmpuint(info.request_alignment & (info.request_alignment - 1), ==, 0);

    /* Aligned, on an aligned buffer: the direct path. */
    void *abuf = NULL;
    g_assert_cmpint(posix_memalign(&abuf, 4096, 64 * KiB), ==, 0);
    memcpy(abuf, w, 64 * KiB);
    g_assert_cmpint(do_write(bs, 64 * KiB, abuf, 64 * KiB, BDRV_REQ_FUA, &r), ==, 0);
    result_clear(&r);
    memset(abuf, 0, 64 * KiB);
    g_assert_cmpint(read_ret(bs, 64 * KiB, abuf, 64 * KiB), ==, 0);
    g_assert_cmpmem(abuf, 64 * KiB, w, 64 * KiB);

    /* Unaligned offsets, lengths and buffers, larger than one bounce
     * window: read-modify-write keeps the bytes around them. */
    g_assert_cmpint(do_write(bs, 100, w + 1, 1000, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 0, rd + 1, 4096), ==, 0);
    g_assert_cmpmem(rd + 1, 100, w, 100);
    g_assert_cmpmem(rd + 101, 1000, w + 1, 1000);
    g_assert_cmpmem(rd + 1101, 4096 - 1100, w + 1100, 4096 - 1100);

    g_assert_cmpint(do_write(bs, 200 * KiB + 7, w + 3, 300 * KiB - 3, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 200 * KiB + 7, rd + 1, 300 * KiB - 3), ==, 0);
    g_assert_cmpmem(rd + 1, 300 * KiB - 3, w + 3, 300 * KiB - 3);
    g_assert_cmpint(read_ret(bs, 64 * KiB, abuf, 64 * KiB), ==, 0);
    g_assert_cmpmem(abuf, 64 * KiB, w, 64 * KiB);

    /* Unaligned write-zeroes falls back to zero buffers when it must. */
    g_assert_cmpint(do_zeroes(bs, 64 * KiB + 10, 20, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 64 * KiB, rd, 64), ==, 0);
    g_assert_cmpmem(rd, 10, w, 10);
    g_assert_true(is_zero(rd + 10, 20));
    g_assert_cmpmem(rd + 30, 34, w + 30, 34);
    g_assert_cmpint(do_flush(bs), ==, 0);
    close_node(bs);
    free(abuf);

    /* A file that is all hole: unaligned I/O must still work, whatever the
     * alignment probe could learn from it. */
    g_autofree char *sparse = make_file(tmpdir, "sparse-direct.img", MiB);
    bs = open_file(sparse, "cache.direct=on");
    g_assert_cmpint(do_write(bs, 12345, w, 7000, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(read_ret(bs, 12340, rd, 7010), ==, 0);
    g_assert_true(is_zero(rd, 5));
    g_assert_cmpmem(rd + 5, 7000, w, 7000);
    g_assert_true(is_zero(rd + 7005, 5));
    close_node(bs);
    g_unlink(sparse);

    /* An empty file cannot be probed by reading: without statx's answer,
     * the safe default applies. */
    bs = open_file(empty, "cache.direct=on");
    bdrv_get_info(bs, &info);
    g_assert_cmpuint(info.request_alignment, >=, 512);
    g_assert_cmpuint(info.request_alignment, <=, 4096);
    g_assert_cmpuint(info.size, ==, 0);
    close_node(bs);

    /* cache.no-flush turns flush and FUA into no-ops. */
    bs = open_file(path, "cache.no-flush=on");
    bdrv_get_info(bs, &info);
    g_assert_false(info.can_flush);
    g_assert_cmpint(do_flush(bs), ==, 0);
    g_assert_cmpint(do_write(bs, 0, w, 512, BDRV_REQ_FUA, &r), ==, 0);
    result_clear(&r);
    close_node(bs);
    g_unlink(path);
    g_unlink(empty);
}

static void test_write_errors(void)
{
    g_autofree char *path = make_file(tmpdir, "limit.img", MiB);
    g_autofree char *expected = NULL;
    BlockDriverState *bs = open_file(path, NULL);
    struct rlimit old, lim;
    uint8_t buf[4096] = { 1 };
    Result r = { 0 };

    /* The kernel refuses writes beyond RLIMIT_FSIZE with EFBIG, a real I/O
     * error from deep inside a worker thread. */
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 512 * KiB;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);

    g_assert_cmpint(do_write(bs, 768 * KiB, buf, sizeof(buf), 0, &r), ==, -EFBIG);
    expected = g_strdup_printf("Could not write to '%s' at offset 786432: File too large", path);
    g_assert_cmpstr(r.msg, ==, expected);
    result_clear(&r);
    /* Below the limit all is well. */
    g_assert_cmpint(do_write(bs, 0, buf, sizeof(buf), BDRV_REQ_FUA, &r), ==, 0);
    result_clear(&r);

    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    g_assert_cmpint(do_write(bs, 768 * KiB, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);
    close_node(bs);
    g_unlink(path);
}

static void test_open_errors(void)
{
    g_autofree char *file = make_file(tmpdir, "ok.img", 4096);
    g_autofree char *o = NULL, *m = NULL;

    expect_open_error(NULL, "driver=file,node-name=x", "Parameter 'filename' is missing");
    expect_open_error(NULL, "driver=file,node-name=x,filename=",
                      "The 'file' block driver requires a file name");
    expect_open_error(NULL, "driver=file,node-name=x,filename=/nonexistent",
                      "Could not open '/nonexistent': No such file or directory");
    o = g_strdup_printf("driver=file,node-name=x,filename=%s", tmpdir);
    m = g_strdup_printf("Could not open '%s': Is a directory", tmpdir);
    expect_open_error(NULL, o, m);
    g_free(o);
    g_free(m);
    o = g_strdup_printf("driver=file,node-name=x,filename=%s,read-only=on", tmpdir);
    m = g_strdup_printf("'file' driver requires '%s' to be a regular file", tmpdir);
    expect_open_error(NULL, o, m);
    expect_open_error(NULL, "driver=file,node-name=x,filename=/dev/full",
                      "'file' driver requires '/dev/full' to be a regular file");
    g_free(o);
    o = g_strdup_printf("driver=file,node-name=x,filename=%s,aio=bogus", file);
    expect_open_error(NULL, o, "Parameter 'aio' does not accept value 'bogus'");
    g_free(o);
    o = g_strdup_printf("driver=file,node-name=x,filename=%s,aio=native", file);
    expect_open_error(NULL, o, "aio=native was specified, but it requires cache.direct=on, "
                         "which was not specified.");
    g_free(o);
    o = g_strdup_printf("driver=file,node-name=x,filename=%s,size=1", file);
    expect_open_error(NULL, o, "Parameter 'size' is unexpected");
    g_assert_null(bdrv_find_node("x"));

    /* Accepted QEMU options. */
    g_autoptr(GError) err = NULL;
    g_free(o);
    o = g_strdup_printf("driver=file,node-name=x,filename=%s,aio=io_uring,locking=off,"
                        "drop-cache=off,aio-max-batch=16,auto-read-only=on", file);
    BlockDriverState *bs = open_keyval(o, &err);
    g_assert_no_error(err);
    close_node(bs);
    g_unlink(file);
}

/* 1 if another open file description holds a lock on the byte. */
static int byte_locked(const char *path, off_t byte)
{
    int fd = open(path, O_RDONLY);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

/* Permissions become QEMU's lock bytes; two nodes on one image see each
 * other's, as two processes would. */
static void test_locks_and_resize(void)
{
    g_autofree char *path = make_file(tmpdir, "lock.img", 1 << 20);
    g_autofree char *o1 = g_strdup_printf("driver=file,node-name=l1,filename=%s,locking=on", path);
    g_autofree char *o2 = g_strdup_printf("driver=file,node-name=l2,filename=%s", path);
    g_autofree char *o3 = g_strdup_printf("driver=file,node-name=l3,filename=%s,locking=off",
                                          path);
    g_autoptr(GError) err = NULL;
    BlockDriverState *a = open_keyval(o1, &err);
    g_assert_no_error(err);
    BlockDriverState *b = open_keyval(o2, &err);
    g_assert_no_error(err);
    BlockDriverState *c = open_keyval(o3, &err);
    g_assert_no_error(err);

    /* Nothing is locked until a user takes permissions. */
    for (int i = 0; i < 4; i++) {
        g_assert_false(byte_locked(path, 100 + i));
        g_assert_false(byte_locked(path, 200 + i));
    }
    g_assert_true(bdrv_perm_take(a, BDRV_PERM_CONSISTENT_READ | BDRV_PERM_WRITE,
                                 BDRV_PERM_RESIZE, &err));
    g_assert_no_error(err);
    g_assert_true(byte_locked(path, 100));
    g_assert_true(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 103));
    g_assert_true(byte_locked(path, 203));

    /* The other node may write alongside but not resize, nor refuse to
     * share writes. */
    g_assert_true(bdrv_perm_take(b, BDRV_PERM_WRITE, 0, &err));
    g_assert_no_error(err);
    bdrv_perm_release(b, BDRV_PERM_WRITE, 0);
    g_assert_false(bdrv_truncate(b, 2 << 20, &err));
    g_assert_cmpstr(err->message, ==, "Failed to get \"resize\" lock");
    g_clear_error(&err);
    g_assert_false(bdrv_perm_take(b, 0, BDRV_PERM_WRITE, &err));
    g_assert_cmpstr(err->message, ==, "Failed to get shared \"write\" lock");
    g_clear_error(&err);
    /* A failed attempt leaves the earlier locks as they were. */
    g_assert_true(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 201));
    g_assert_cmpuint(bdrv_getlength(b), ==, 1 << 20);

    /* locking=off neither takes nor checks. */
    g_assert_true(bdrv_truncate(c, (2 << 20) + 100, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_getlength(c), ==, (2 << 20) + 512);

    /* Once a's user is gone, b may resize; the node itself may always. */
    g_assert_true(bdrv_truncate(a, 3 << 20, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_getlength(a), ==, 3 << 20);
    bdrv_perm_release(a, BDRV_PERM_CONSISTENT_READ | BDRV_PERM_WRITE, BDRV_PERM_RESIZE);
    for (int i = 0; i < 4; i++) {
        g_assert_false(byte_locked(path, 100 + i));
        g_assert_false(byte_locked(path, 200 + i));
    }
    g_assert_true(bdrv_truncate(b, 4096, &err));
    g_assert_no_error(err);
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4096);
    close_node(a);
    close_node(b);
    close_node(c);
    g_unlink(path);
}

static void test_auto_read_only(void)
{
    g_autofree char *path = NULL;
    BlockDriverState *bs;

    if (geteuid() == 0) {
        g_test_skip("root opens read-only files for writing");
        return;
    }
    path = make_file(tmpdir, "ro.img", 4096);
    g_assert_cmpint(chmod(path, 0444), ==, 0);
    bs = open_file(path, "auto-read-only=on");
    g_assert_true(bdrv_is_read_only(bs));
    close_node(bs);
    g_unlink(path);
}

/* Attaches a loop device to path; returns its fd (and name), or -1. */
static int loop_attach(const char *path, char **dev)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int n, backing, loop = -1;

    if (ctl < 0) {
        return -1;
    }
    n = ioctl(ctl, LOOP_CTL_GET_FREE);
    close(ctl);
    if (n < 0) {
        return -1;
    }
    *dev = g_strdup_printf("/dev/loop%d", n);
    backing = open(path, O_RDWR | O_CLOEXEC);
    loop = open(*dev, O_RDWR | O_CLOEXEC);
    if (backing < 0 || loop < 0 || ioctl(loop, LOOP_SET_FD, backing) < 0) {
        if (loop >= 0) {
            close(loop);
        }
        loop = -1;
        g_clear_pointer(dev, g_free);
    }
    if (backing >= 0) {
        close(backing);
    }
    return loop;
}

static void test_block_device(void)
{
    g_autofree char *path = make_file(tmpdir, "loop.img", MiB);
    g_autofree char *dev = NULL;
    uint8_t buf[16384];
    BlockDriverState *bs;
    Result r = { 0 };
    BdrvInfo info;
    int loop = loop_attach(path, &dev);

    if (loop < 0) {
        g_test_skip("cannot attach a loop device");
        g_unlink(path);
        return;
    }
    for (int direct = 0; direct < 2; direct++) {
        bs = open_file(dev, direct ? "discard=unmap,cache.direct=on" : "discard=unmap");
        bdrv_get_info(bs, &info);
        g_assert_cmpuint(info.size, ==, MiB);
        g_assert_false(info.has_block_status);
        g_assert_cmpuint(info.request_alignment, ==, direct ? 512 : 1);

        memset(buf, 0xab, sizeof(buf));
        g_assert_cmpint(do_write(bs, 0, buf, sizeof(buf), BDRV_REQ_FUA, &r), ==, 0);
        result_clear(&r);
        /* Devices zero whole blocks only: the partial ones are written. */
        g_assert_cmpint(do_zeroes(bs, 100, 1000, BDRV_REQ_NO_FALLBACK, &r), ==, 0);
        result_clear(&r);
        g_assert_cmpint(do_zeroes(bs, 4096, 4096, BDRV_REQ_MAY_UNMAP, &r), ==, 0);
        result_clear(&r);
        g_assert_cmpint(do_simple(bdrv_aio_pdiscard, bs, 8192 + 1, 4096), ==, 0);
        g_assert_cmpint(read_ret(bs, 0, buf, sizeof(buf)), ==, 0);
        g_assert_cmpint(buf[99], ==, 0xab);
        g_assert_true(is_zero(buf + 100, 1000));
        g_assert_cmpint(buf[1100], ==, 0xab);
        g_assert_true(is_zero(buf + 4096, 4096));
        g_assert_cmpint(buf[8192], ==, 0xab);  /* discard leaves partial blocks */
        assert_status(bs, 0, MiB, BDRV_BLOCK_DATA);
        g_assert_cmpint(do_flush(bs), ==, 0);
        close_node(bs);
    }
    ioctl(loop, LOOP_CLR_FD, 0);
    close(loop);
    g_unlink(path);
}

/* ---- many requests, several threads ------------------------------------ */

typedef struct {
    BlockDriverState *bs;
    GMainContext *ctx;
    uint64_t base;
    int pending;
    bool ok;
    uint8_t bufs[32][4096];
} Worker;

static void on_worker_done(gpointer opaque, int ret, const GError *err)
{
    Worker *wk = opaque;

    if (ret != 0 || !running_on_context(wk->ctx)) {
        wk->ok = false;
    }
    wk->pending--;
}

static void run_queue_depth(Worker *wk)
{
    struct iovec iov[32];

    /* 32 writes in flight, then 32 reads, then verify. */
    for (int i = 0; i < 32; i++) {
        fill_pattern(wk->bufs[i], 4096, (unsigned) (wk->base / 4096 + i));
        iov[i] = (struct iovec) { wk->bufs[i], 4096 };
        bdrv_aio_pwritev(wk->bs, wk->base + i * 4096, &iov[i], 1, 0, on_worker_done, wk);
        wk->pending++;
    }
    while (wk->pending > 0) {
        g_main_context_iteration(wk->ctx, TRUE);
    }
    memset(wk->bufs, 0, sizeof(wk->bufs));
    for (int i = 31; i >= 0; i--) {
        bdrv_aio_preadv(wk->bs, wk->base + i * 4096, &iov[i], 1, on_worker_done, wk);
        wk->pending++;
    }
    while (wk->pending > 0) {
        g_main_context_iteration(wk->ctx, TRUE);
    }
    for (int i = 0; i < 32; i++) {
        uint8_t expect[4096];
        fill_pattern(expect, 4096, (unsigned) (wk->base / 4096 + i));
        if (memcmp(expect, wk->bufs[i], 4096) != 0) {
            wk->ok = false;
        }
    }
}

static gpointer worker_thread(gpointer data)
{
    Worker *wk = data;

    wk->ctx = push_new_context();
    for (int round = 0; round < 5; round++) {
        run_queue_depth(wk);
    }
    pop_context(wk->ctx);
    return NULL;
}

static void test_threads(void)
{
    g_autofree char *path = make_file(tmpdir, "threads.img", 4 * MiB);
    BlockDriverState *bs = open_file(path, NULL);
    g_autofree Worker *wk = g_new0(Worker, 4);
    GThread *threads[3];

    for (int i = 0; i < 4; i++) {
        wk[i].bs = bs;
        wk[i].base = i * MiB;
        wk[i].ok = true;
    }
    for (int i = 0; i < 3; i++) {
        threads[i] = g_thread_new("submitter", worker_thread, &wk[i]);
    }
    /* The main thread takes part on its own context. */
    wk[3].ctx = g_main_context_get_thread_default();
    run_queue_depth(&wk[3]);
    for (int i = 0; i < 3; i++) {
        g_thread_join(threads[i]);
    }
    for (int i = 0; i < 4; i++) {
        g_assert_true(wk[i].ok);
    }
    close_node(bs);
    g_unlink(path);
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("berth-block-XXXXXX", &err);
    g_assert_no_error(err);
    if (g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)) {
        shmdir = g_build_filename("/dev/shm", "berth-block-XXXXXX", NULL);
        if (!g_mkdtemp(shmdir)) {
            g_clear_pointer(&shmdir, g_free);
        }
    }

    g_test_add_func("/block/file/round-trip", test_round_trip);
    g_test_add_func("/block/file/size-and-truncation", test_size_and_truncation);
    g_test_add_func("/block/file/block-status", test_block_status);
    g_test_add_func("/block/file/no-fallback", test_no_fallback);
    g_test_add_func("/block/file/direct", test_direct);
    g_test_add_func("/block/file/write-errors", test_write_errors);
    g_test_add_func("/block/file/open-errors", test_open_errors);
    g_test_add_func("/block/file/locks-and-resize", test_locks_and_resize);
    g_test_add_func("/block/file/auto-read-only", test_auto_read_only);
    g_test_add_func("/block/file/block-device", test_block_device);
    g_test_add_func("/block/file/threads", test_threads);
    ret = run_block_tests(NULL);
    g_rmdir(tmpdir);
    g_free(tmpdir);
    if (shmdir) {
        g_rmdir(shmdir);
        g_free(shmdir);
    }
    return ret;
}
