/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the memory driver: round trips across page boundaries and
 * scattered buffers, zeroes where nothing was written, discard and
 * write-zeroes freeing whole pages and clearing partial ones, exact block
 * status with several extents and the max_extents limit, reads that leave
 * holes unfilled for a caller that takes extents, a disk of terabytes
 * that costs nothing until written, range and read-only refusals, option
 * errors, detect-zeroes, and completion delivery: never inside the submitting
 * call, always on the submitter's context, also from other threads; and
 * threads writing the same pages at once never leave a torn page.
 */
#include "block-test-util.h"

#include <errno.h>
#include <string.h>

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t) (seed + i * 7 + (i >> 9));
    }
}

/* ---- tests ------------------------------------------------------------- */

static void test_round_trip(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":1048576}");
    g_autofree uint8_t *wbuf = g_malloc(3 * 4096 + 100);
    g_autofree uint8_t *rbuf = g_malloc0(3 * 4096 + 100);
    Result r = { 0 };
    BdrvInfo info;

    bdrv_get_info(bs, &info);
    g_assert_cmpstr(info.driver, ==, "memory");
    g_assert_cmpuint(info.size, ==, MiB);
    g_assert_true(info.coherent);
    g_assert_true(info.has_block_status);
    g_assert_cmpuint(info.request_alignment, ==, 1);

    /* Unaligned, across three page boundaries. */
    fill_pattern(wbuf, 3 * 4096 + 100, 1);
    g_assert_cmpint(do_write(bs, 4000, wbuf, 3 * 4096 + 100, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 4000, rbuf, 3 * 4096 + 100, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpmem(wbuf, 3 * 4096 + 100, rbuf, 3 * 4096 + 100);

    /* Bytes around the write were never written and read as zero. */
    g_assert_cmpint(do_read(bs, 0, rbuf, 4000, &r), ==, 0);
    result_clear(&r);
    g_assert_true(is_zero(rbuf, 4000));

    /* Scattered buffers of odd sizes, in both directions. */
    uint8_t a[10], b[5000], c[1];
    uint8_t a2[10], b2[5000], c2[1];
    fill_pattern(a, sizeof(a), 2);
    fill_pattern(b, sizeof(b), 3);
    c[0] = 0x5a;
    struct iovec wv[] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
    struct iovec rv[] = { { c2, sizeof(c2) }, { b2, sizeof(b2) }, { a2, sizeof(a2) } };
    bdrv_aio_pwritev(bs, 100000, wv, 3, 0, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_preadv(bs, 100000, rv, 3, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    uint8_t flat[5011], back[5011];
    memcpy(flat, a, 10);
    memcpy(flat + 10, b, 5000);
    flat[5010] = c[0];
    memcpy(back, c2, 1);
    memcpy(back + 1, b2, 5000);
    memcpy(back + 5001, a2, 10);
    g_assert_cmpmem(flat, sizeof(flat), back, sizeof(back));

    /* The very last byte of the disk. */
    g_assert_cmpint(do_write(bs, MiB - 1, "x", 1, BDRV_REQ_FUA, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, MiB - 1, rbuf, 1, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(rbuf[0], ==, 'x');

    /* Flush and cache succeed and do nothing. */
    bdrv_aio_flush(bs, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_cache(bs, 0, MiB, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);

    /* Zero-length requests succeed, even at the very end. */
    g_assert_cmpint(do_read(bs, MiB, rbuf, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, MiB, rbuf, 0, 0, &r), ==, 0);
    result_clear(&r);
    close_node(bs);
}

static void test_block_status(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536,"
                                   "\"discard\":\"unmap\"}");
    uint8_t page[4096];
    Result r = { 0 };

    /* Empty: one hole. */
    g_assert_cmpint(do_status(bs, 0, 65536, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    assert_extent(&r, 0, 65536, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* Pages 0, 3 and 4, and one byte in page 9. */
    memset(page, 0xaa, sizeof(page));
    g_assert_cmpint(do_write(bs, 0, page, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 3 * 4096, page, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 4 * 4096, page, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 9 * 4096 + 17, page, 1, 0, &r), ==, 0);
    result_clear(&r);

    g_assert_cmpint(do_status(bs, 0, 65536, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 6);
    assert_extent(&r, 0, 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 2 * 4096, BDRV_BLOCK_ZERO);
    assert_extent(&r, 2, 2 * 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 3, 4 * 4096, BDRV_BLOCK_ZERO);
    assert_extent(&r, 4, 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 5, 6 * 4096, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* Starting and ending mid-page. */
    g_assert_cmpint(do_status(bs, 100, 4096, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 0, 3996, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 100, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* max_extents: two extents that cover less than asked. */
    g_assert_cmpint(do_status(bs, 0, 65536, 2, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 0, 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 1, 2 * 4096, BDRV_BLOCK_ZERO);
    result_clear(&r);
    g_assert_cmpint(do_status(bs, 0, 65536, 1, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    result_clear(&r);
    close_node(bs);
}

/* bdrv_aio_preadv_extents: holes reported and left as the caller had them,
 * data copied; more runs than extents: everything filled, nothing said. */
static void test_read_extents(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536}");
    uint8_t page[4096], buf[8 * 4096];
    Result r = { 0 };

    memset(page, 0x5a, sizeof(page));
    g_assert_cmpint(do_write(bs, 2 * 4096, page, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 5 * 4096, page, 4096, 0, &r), ==, 0);
    result_clear(&r);

    /* Pages 0-7 from byte 100 of page 0: hole, data, hole, data, hole. */
    memset(buf, 0xee, sizeof(buf));
    struct iovec iov = { buf, sizeof(buf) - 100 };
    bdrv_aio_preadv_extents(bs, 100, &iov, 1, 8, on_status, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 5);
    assert_extent(&r, 0, 2 * 4096 - 100, BDRV_BLOCK_ZERO);
    assert_extent(&r, 1, 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 2, 2 * 4096, BDRV_BLOCK_ZERO);
    assert_extent(&r, 3, 4096, BDRV_BLOCK_DATA);
    assert_extent(&r, 4, 2 * 4096, BDRV_BLOCK_ZERO);
    result_clear(&r);
    for (size_t i = 0; i < sizeof(buf) - 100; i++) {
        size_t pg = (i + 100) / 4096;
        g_assert_cmpuint(buf[i], ==, pg == 2 || pg == 5 ? 0x5a : 0xee);
    }

    /* Five runs, four extents allowed: a plain read. */
    memset(buf, 0xee, sizeof(buf));
    bdrv_aio_preadv_extents(bs, 100, &iov, 1, 4, on_status, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 0);
    result_clear(&r);
    for (size_t i = 0; i < sizeof(buf) - 100; i++) {
        size_t pg = (i + 100) / 4096;
        g_assert_cmpuint(buf[i], ==, pg == 2 || pg == 5 ? 0x5a : 0);
    }
    close_node(bs);
}

static void test_discard_and_zeroes(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536,"
                                   "\"discard\":\"unmap\"}");
    g_autofree uint8_t *buf = g_malloc(65536);
    Result r = { 0 };

    memset(buf, 0xff, 65536);
    g_assert_cmpint(do_write(bs, 0, buf, 65536, 0, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 0, 65536, BDRV_BLOCK_DATA);

    /* Discard pages 1-2 whole, and half of page 3: pages 1-2 go, page 3
     * stays allocated with its first half cleared. */
    g_assert_cmpint(do_discard(bs, 4096, 2 * 4096 + 2048, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 4096, 2 * 4096, BDRV_BLOCK_ZERO);
    assert_status(bs, 3 * 4096, 4096, BDRV_BLOCK_DATA);
    g_assert_cmpint(do_read(bs, 0, buf, 65536, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(buf[4095], ==, 0xff);
    g_assert_true(is_zero(buf + 4096, 2 * 4096 + 2048));
    g_assert_cmpint(buf[3 * 4096 + 2048], ==, 0xff);

    /* Write-zeroes without MAY_UNMAP keeps pages allocated. */
    g_assert_cmpint(do_zeroes(bs, 4 * 4096, 4096, 0, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 4 * 4096, 4096, BDRV_BLOCK_DATA);
    /* ... with MAY_UNMAP it frees them. */
    g_assert_cmpint(do_zeroes(bs, 5 * 4096, 2 * 4096, BDRV_REQ_MAY_UNMAP, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 5 * 4096, 2 * 4096, BDRV_BLOCK_ZERO);
    /* NO_FALLBACK is always fine: zeroing is cheap here. */
    g_assert_cmpint(do_zeroes(bs, 8 * 4096 + 1, 100, BDRV_REQ_NO_FALLBACK | BDRV_REQ_FUA,
                              &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 4 * 4096, buf, 5 * 4096, &r), ==, 0);
    result_clear(&r);
    g_assert_true(is_zero(buf, 3 * 4096));
    g_assert_cmpint(buf[4 * 4096], ==, 0xff);
    g_assert_true(is_zero(buf + 4 * 4096 + 1, 100));
    g_assert_cmpint(buf[4 * 4096 + 101], ==, 0xff);

    /* Zeroing a hole allocates nothing. */
    g_assert_cmpint(do_zeroes(bs, 4096, 4096, 0, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 4096, 2 * 4096, BDRV_BLOCK_ZERO);
    close_node(bs);

    /* discard=ignore (the default): discard is accepted and keeps the data,
     * and MAY_UNMAP is not honoured. */
    bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536}");
    memset(buf, 0x11, 8192);
    g_assert_cmpint(do_write(bs, 0, buf, 8192, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_discard(bs, 0, 4096, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 4096, 4096, BDRV_REQ_MAY_UNMAP, &r), ==, 0);
    result_clear(&r);
    assert_status(bs, 0, 8192, BDRV_BLOCK_DATA);
    g_assert_cmpint(do_read(bs, 0, buf, 8192, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(buf[0], ==, 0x11);
    g_assert_true(is_zero(buf + 4096, 4096));
    BdrvInfo info;
    bdrv_get_info(bs, &info);
    g_assert_false(info.can_discard);
    close_node(bs);
}

static void test_huge_sparse(void)
{
    /* 4 TiB, from the command line syntax with a size suffix. */
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_keyval("driver=memory,node-name=big,size=4T,discard=unmap", &err);
    uint8_t buf[8192];
    Result r = { 0 };

    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_getlength(bs), ==, 4 * TiB);
    memset(buf, 0x42, sizeof(buf));
    g_assert_cmpint(do_write(bs, 4 * TiB - 4096, buf, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 2 * TiB + 123, buf, 10, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 4 * TiB - 8192, buf, 8192, &r), ==, 0);
    result_clear(&r);
    g_assert_true(is_zero(buf, 4096));
    g_assert_cmpint(buf[4096], ==, 0x42);

    /* Block status across terabytes of holes answers at once; the answer
     * may stop before the end of a long request. */
    g_assert_cmpint(do_status(bs, 2 * TiB, 4096, 0, &r), ==, 0);
    assert_extent(&r, 0, 4096, BDRV_BLOCK_DATA);
    result_clear(&r);
    g_assert_cmpint(do_status(bs, 4 * TiB - 3 * GiB, 3 * GiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 2);
    assert_extent(&r, 0, 3 * GiB - 4096, BDRV_BLOCK_ZERO);
    assert_extent(&r, 1, 4096, BDRV_BLOCK_DATA);
    result_clear(&r);
    g_assert_cmpint(do_status(bs, 0, 4 * TiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, >=, 1);
    assert_extent(&r, 0, g_array_index(r.extents, BdrvExtent, 0).length, BDRV_BLOCK_ZERO);
    result_clear(&r);

    /* Discarding all of it frees the pages and the tree, in no time. */
    g_assert_cmpint(do_discard(bs, 0, 4 * TiB, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_status(bs, 4 * TiB - GiB, GiB, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    assert_extent(&r, 0, GiB, BDRV_BLOCK_ZERO);
    result_clear(&r);
    close_node(bs);

    /* QEMU's largest length is accepted too. */
    bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"max\",\"size\":9223372035781033984}");
    g_assert_cmpint(do_write(bs, 9223372035781033984ULL - 1, "z", 1, 0, &r), ==, 0);
    result_clear(&r);
    close_node(bs);
}

static void test_range_and_read_only(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"ro\",\"size\":8192,"
                                   "\"read-only\":true,\"discard\":\"unmap\"}");
    uint8_t buf[4096] = { 0 };
    Result r = { 0 };

    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(do_read(bs, 4096, buf, 4096, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 4097, buf, 4096, &r), ==, -EINVAL);
    g_assert_cmpstr(r.msg, ==, "read request at offset 4097 of 4096 bytes is beyond the end "
                    "of node 'ro' (8192 bytes)");
    result_clear(&r);
    g_assert_cmpint(do_read(bs, UINT64_MAX - 10, buf, 4096, &r), ==, -EINVAL);
    result_clear(&r);
    g_assert_cmpint(do_status(bs, 8192, 1, 0, &r), ==, -EINVAL);
    g_assert_cmpuint(r.extents->len, ==, 0);
    result_clear(&r);
    bdrv_aio_cache(bs, 0, 8193, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, -EINVAL);
    result_clear(&r);

    g_assert_cmpint(do_write(bs, 0, buf, 1, 0, &r), ==, -EPERM);
    g_assert_cmpstr(r.msg, ==, "Node 'ro' is read-only");
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 0, 1, 0, &r), ==, -EPERM);
    result_clear(&r);
    g_assert_cmpint(do_discard(bs, 0, 1, &r), ==, -EPERM);
    result_clear(&r);
    /* Range is checked before permissions, as for any request. */
    g_assert_cmpint(do_write(bs, 8192, buf, 1, 0, &r), ==, -EINVAL);
    result_clear(&r);
    bdrv_aio_flush(bs, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    close_node(bs);
}

static void test_options(void)
{
    expect_open_error("{\"driver\":\"memory\",\"node-name\":\"m\"}", NULL,
                      "Parameter 'size' is missing");
    expect_open_error("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":\"1G\"}", NULL,
                      "Invalid parameter type for 'size', expected: integer");
    expect_open_error(NULL, "driver=memory,node-name=m,size=lots",
                      "Parameter 'size' expects integer");
    expect_open_error("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":1,\"read-zeroes\":true}",
                      NULL, "Parameter 'read-zeroes' is unexpected");
    expect_open_error("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":9223372036854775807}",
                      NULL, "Could not refresh total sector count: File too large");
    g_assert_null(bdrv_find_node("m"));

    /* Sizes are whole sectors, as in QEMU. */
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":1000}");
    Result r = { 0 };
    uint8_t buf[1024];
    g_assert_cmpuint(bdrv_getlength(bs), ==, 1024);
    g_assert_cmpint(do_read(bs, 0, buf, 1024, &r), ==, 0);
    result_clear(&r);
    close_node(bs);
}

static void test_detect_zeroes(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"dz\",\"size\":65536,"
                                   "\"discard\":\"unmap\",\"detect-zeroes\":\"unmap\"}");
    uint8_t buf[8192];
    Result r = { 0 };

    memset(buf, 1, sizeof(buf));
    g_assert_cmpint(do_write(bs, 0, buf, 8192, 0, &r), ==, 0);
    result_clear(&r);
    memset(buf, 0, sizeof(buf));
    g_assert_cmpint(do_write(bs, 0, buf, 8192, 0, &r), ==, 0);
    result_clear(&r);
    /* The zero write became an unmapping write-zeroes. */
    assert_status(bs, 0, 8192, BDRV_BLOCK_ZERO);
    close_node(bs);
}

/* ---- completion delivery --------------------------------------------- */

typedef struct {
    BlockDriverState *bs;
    GMainContext *ctx;
    int completed;
    bool ok;
} ThreadJob;

static void on_thread_done(gpointer opaque, int ret, const GError *err)
{
    ThreadJob *job = opaque;

    if (ret != 0 || !running_on_context(job->ctx)) {
        job->ok = false;
    }
    job->completed++;
}

/* A thread with a context of its own submits and waits on that context. */
static gpointer thread_main(gpointer data)
{
    ThreadJob *job = data;
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };

    job->ctx = push_new_context();
    memset(buf, 0x77, sizeof(buf));
    for (int i = 0; i < 100; i++) {
        bdrv_aio_pwritev(job->bs, i * 512, &iov, 1, 0, on_thread_done, job);
        bdrv_aio_preadv(job->bs, i * 512, &iov, 1, on_thread_done, job);
    }
    if (job->completed != 0) {
        job->ok = false;
    }
    while (job->completed < 200) {
        g_main_context_iteration(job->ctx, TRUE);
    }
    pop_context(job->ctx);
    return NULL;
}

static void test_completion_contexts(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"c\",\"size\":1048576}");
    ThreadJob jobs[3];
    GThread *threads[3];
    Result r = { 0 };
    uint8_t buf[16];

    for (int i = 0; i < 3; i++) {
        jobs[i] = (ThreadJob) { .bs = bs, .ok = true };
        threads[i] = g_thread_new("submitter", thread_main, &jobs[i]);
    }
    /* The main thread keeps submitting on its own context meanwhile. */
    for (int i = 0; i < 50; i++) {
        g_assert_cmpint(do_read(bs, 0, buf, sizeof(buf), &r), ==, 0);
        g_assert_true(r.ctx == g_main_context_get_thread_default());
        result_clear(&r);
    }
    for (int i = 0; i < 3; i++) {
        g_thread_join(threads[i]);
        g_assert_true(jobs[i].ok);
        g_assert_cmpint(jobs[i].completed, ==, 200);
    }

    /* A context that dies with requests queued drops them cleanly. */
    GMainContext *dying = push_new_context();
    bdrv_aio_preadv(bs, 0, &(struct iovec) { buf, sizeof(buf) }, 1, on_done, &r);
    pop_context(dying);
    g_assert_false(r.done);
    close_node(bs);
}

/* Several threads write whole pages of their own byte over the same page
 * and read it back: every read sees one write, never a mix of two. */
#define SAME_PAGE_THREADS 4
#define SAME_PAGE_ROUNDS 300

typedef struct {
    BlockDriverState *bs;
    guint8 value;
    gint *ready;
    bool ok;
} SamePageJob;

static gpointer same_page_main(gpointer data)
{
    SamePageJob *job = data;
    GMainContext *ctx = push_new_context();
    uint8_t wbuf[8192], rbuf[8192];

    memset(wbuf, job->value, sizeof(wbuf));
    g_atomic_int_inc(job->ready);
    while (g_atomic_int_get(job->ready) < SAME_PAGE_THREADS) {
        g_thread_yield();
    }
    for (int i = 0; i < SAME_PAGE_ROUNDS && job->ok; i++) {
        /* Two pages, half a page in: a write spans a page boundary. */
        if (write_ret(job->bs, 2048, wbuf, sizeof(wbuf), 0) != 0 ||
            read_ret(job->bs, 2048, rbuf, sizeof(rbuf)) != 0) {
            job->ok = false;
            break;
        }
        for (size_t k = 1; k < sizeof(rbuf); k++) {
            if (rbuf[k] != rbuf[0] || rbuf[0] == 0) {
                job->ok = false;
                break;
            }
        }
    }
    pop_context(ctx);
    return NULL;
}

static void test_same_page_threads(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"p\",\"size\":65536}");
    SamePageJob jobs[SAME_PAGE_THREADS];
    GThread *threads[SAME_PAGE_THREADS];
    gint ready = 0;

    for (int i = 0; i < SAME_PAGE_THREADS; i++) {
        jobs[i] = (SamePageJob) { .bs = bs, .value = (guint8) (0x11 * (i + 1)), .ready = &ready,
                                  .ok = true };
        threads[i] = g_thread_new("same-page", same_page_main, &jobs[i]);
    }
    for (int i = 0; i < SAME_PAGE_THREADS; i++) {
        g_thread_join(threads[i]);
        g_assert_true(jobs[i].ok);
    }
    close_node(bs);
}

/* A callback may submit again; the new completion waits for a later
 * iteration, so a chain of requests cannot starve the context. */
typedef struct {
    BlockDriverState *bs;
    int depth;
    int dispatch_rounds;
} Chain;

static void on_chain(gpointer opaque, int ret, const GError *err)
{
    Chain *c = opaque;
    static uint8_t buf[64];

    g_assert_cmpint(ret, ==, 0);
    if (++c->depth < 10) {
        bdrv_aio_preadv(c->bs, 0, &(struct iovec) { buf, sizeof(buf) }, 1, on_chain, c);
        /* Not delivered yet: we are still inside this callback. */
        g_assert_cmpint(c->depth, <, 10);
    }
}

static void test_chained_submission(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"ch\",\"size\":4096}");
    Chain c = { .bs = bs };
    uint8_t buf[64];

    bdrv_aio_preadv(bs, 0, &(struct iovec) { buf, sizeof(buf) }, 1, on_chain, &c);
    while (c.depth < 10) {
        int before = c.depth;
        g_main_context_iteration(g_main_context_get_thread_default(), TRUE);
        g_assert_cmpint(c.depth, <=, before + 1);
    }
    close_node(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/block/memory/round-trip", test_round_trip);
    g_test_add_func("/block/memory/block-status", test_block_status);
    g_test_add_func("/block/memory/read-extents", test_read_extents);
    g_test_add_func("/block/memory/discard-and-zeroes", test_discard_and_zeroes);
    g_test_add_func("/block/memory/huge-sparse", test_huge_sparse);
    g_test_add_func("/block/memory/range-and-read-only", test_range_and_read_only);
    g_test_add_func("/block/memory/options", test_options);
    g_test_add_func("/block/memory/detect-zeroes", test_detect_zeroes);
    g_test_add_func("/block/memory/completion-contexts", test_completion_contexts);
    g_test_add_func("/block/memory/chained-submission", test_chained_submission);
    g_test_add_func("/block/memory/same-page-threads", test_same_page_threads);
    return run_block_tests(NULL);
}
