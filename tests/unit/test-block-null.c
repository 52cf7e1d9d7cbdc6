/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the null-co driver and of what every node shares: the node
 * table (names, creation order, references, deletion while in use, requests
 * that outlive deletion) and blockdev-add's option checking, whose error
 * texts must be exactly qemu-storage-daemon 7.2's, for QMP-style JSON and
 * for the command line's key=value strings alike.
 */
#include "block-test-util.h"

#include <errno.h>
#include <string.h>

/* ---- null-co ------------------------------------------------------------ */

static void test_null_defaults(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\"}");
    uint8_t buf[4096];
    struct iovec iov = { buf, sizeof(buf) };
    Result r = { 0 };
    BdrvInfo info;

    bdrv_get_info(bs, &info);
    g_assert_cmpstr(info.driver, ==, "null-co");
    g_assert_cmpstr(info.node_name, ==, "n");
    g_assert_cmpstr(info.filename, ==, "null-co://");
    g_assert_cmpuint(info.size, ==, 1 << 30);
    g_assert_false(info.read_only);
    g_assert_true(info.coherent);
    g_assert_true(info.read_leaves_buffer);
    g_assert_false(info.reads_zeroes);

    /* read-zeroes=off (QEMU 7.2's default): the buffer is left alone. */
    memset(buf, 0xcc, sizeof(buf));
    bdrv_aio_preadv(bs, 0, &iov, 1, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(buf[0], ==, 0xcc);
    g_assert_cmpint(buf[4095], ==, 0xcc);

    /* Writes and everything else succeed and store nothing. */
    bdrv_aio_pwritev(bs, (1 << 30) - 4096, &iov, 1, BDRV_REQ_FUA, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_flush(bs, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_pwrite_zeroes(bs, 0, 1 << 20, BDRV_REQ_NO_FALLBACK, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_pdiscard(bs, 0, 1 << 20, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    bdrv_aio_cache(bs, 0, 1 << 20, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);

    /* Block status: neither data nor known zeroes, as QEMU reports. */
    bdrv_aio_block_status(bs, 4096, 1 << 20, 0, on_status, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    g_assert_cmpuint(g_array_index(r.extents, BdrvExtent, 0).length, ==, 1 << 20);
    g_assert_cmpuint(g_array_index(r.extents, BdrvExtent, 0).status, ==, 0);
    result_clear(&r);

    /* Out of range. */
    bdrv_aio_preadv(bs, 1 << 30, &iov, 1, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, -EINVAL);
    g_assert_nonnull(r.msg);
    result_clear(&r);
    bdrv_aio_pwrite_zeroes(bs, (1 << 30) - 1, 2, 0, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, -EINVAL);
    result_clear(&r);
    close_node(bs);
}

static void test_null_read_zeroes(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_keyval("driver=null-co,node-name=z,size=1M,read-zeroes=on,"
                                       "read-only=on", &err);
    uint8_t buf[1000];
    struct iovec iov[2] = { { buf, 10 }, { buf + 10, 990 } };
    Result r = { 0 };

    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_getlength(bs), ==, 1 << 20);
    g_assert_true(bdrv_is_read_only(bs));
    {
        BdrvInfo info;

        bdrv_get_info(bs, &info);
        g_assert_false(info.read_leaves_buffer);
        g_assert_true(info.reads_zeroes);
    }
    /* A caller that takes the range as zeroes unseen: nothing is filled. */
    memset(buf, 0xcc, sizeof(buf));
    bdrv_aio_preadv_flags(bs, 12345, iov, 2, BDRV_REQ_ZEROES_UNFILLED, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(buf[0], ==, 0xcc);
    g_assert_cmpint(buf[999], ==, 0xcc);
    /* Other flags of writes mean nothing to a read: it fills the buffer. */
    bdrv_aio_preadv_flags(bs, 12345, iov, 2, BDRV_REQ_FUA, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(buf[0], ==, 0);
    memset(buf, 0xcc, sizeof(buf));
    memset(buf, 0xcc, sizeof(buf));
    bdrv_aio_preadv(bs, 12345, iov, 2, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmpint(buf[i], ==, 0);
    }

    bdrv_aio_block_status(bs, 0, 1 << 20, 1, on_status, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    g_assert_cmpuint(g_array_index(r.extents, BdrvExtent, 0).status, ==, BDRV_BLOCK_ZERO);
    result_clear(&r);

    bdrv_aio_pwritev(bs, 0, iov, 2, 0, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, -EPERM);
    g_assert_cmpstr(r.msg, ==, "Node 'z' is read-only");
    result_clear(&r);
    close_node(bs);

    /* Size 1 is one sector, as QEMU rounds. */
    bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"one\",\"size\":1}");
    g_assert_cmpuint(bdrv_getlength(bs), ==, 512);
    close_node(bs);
    bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"zero\",\"size\":0}");
    g_assert_cmpuint(bdrv_getlength(bs), ==, 0);
    close_node(bs);
}

static void test_null_latency(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"slow\","
                                   "\"latency-ns\":20000000}");
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    Result r = { 0 };
    gint64 start = g_get_monotonic_time();

    bdrv_aio_preadv(bs, 0, &iov, 1, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 20000);
    result_clear(&r);

    /* A request in flight keeps the node alive after it is deleted. */
    bdrv_aio_preadv(bs, 0, &iov, 1, on_done, &r);
    bdrv_put(bs);
    g_assert_true(bdrv_delete("slow", NULL));
    g_assert_null(bdrv_find_node("slow"));
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);
}

/* Requests that finished inline are delivered on demand, never inside the
 * submitting call (the test thread owns its context: it pushed it). */
static void test_dispatch_completions(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"now\"}");
    GMainContext *ctx = g_main_context_get_thread_default();
    uint8_t buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    Result r[3] = { 0 };

    bdrv_aio_preadv(bs, 0, &iov, 1, on_done, &r[0]);
    bdrv_aio_pwritev(bs, 0, &iov, 1, 0, on_done, &r[1]);
    bdrv_aio_flush(bs, on_done, &r[2]);
    g_assert_false(r[0].done || r[1].done || r[2].done);
    bdrv_dispatch_completions();
    for (int i = 0; i < 3; i++) {
        g_assert_true(r[i].done);
        g_assert_cmpint(r[i].ret, ==, 0);
        g_assert_true(r[i].ctx == ctx);
        result_clear(&r[i]);
    }
    /* Nothing is left for the context's own dispatch. */
    g_assert_false(g_main_context_iteration(ctx, FALSE));

    /* A request still running (latency) is not waited for. */
    BlockDriverState *slow = open_ok("{\"driver\":\"null-co\",\"node-name\":\"later\","
                                     "\"latency-ns\":1000000}");
    bdrv_aio_preadv(slow, 0, &iov, 1, on_done, &r[0]);
    bdrv_dispatch_completions();
    g_assert_false(r[0].done);
    g_assert_cmpint(wait_result(&r[0]), ==, 0);
    result_clear(&r[0]);
    close_node(slow);
    close_node(bs);
}

/* ---- options --------------------------------------------------------- */

static void test_option_errors(void)
{
    expect_open_error("{\"node-name\":\"x\"}", NULL, "Parameter 'driver' is missing");
    expect_open_error(NULL, "node-name=x", "Parameter 'driver' is missing");
    expect_open_error("{\"driver\":\"bogus\",\"node-name\":\"x\"}", NULL,
                 "Parameter 'driver' does not accept value 'bogus'");
    expect_open_error(NULL, "driver=bogus,node-name=x",
                 "Parameter 'driver' does not accept value 'bogus'");
    expect_open_error("{\"driver\":1,\"node-name\":\"x\"}", NULL,
                 "Invalid parameter type for 'driver', expected: string");
    expect_open_error("{\"driver\":\"nbd\",\"node-name\":\"x\"}", NULL,
                 "Parameter 'server' is missing");
    expect_open_error("{\"driver\":\"null-co\"}", NULL,
                 "'node-name' must be specified for the root node");
    expect_open_error(NULL, "driver=null-co,node-name=1x", "Invalid node-name: '1x'");
    expect_open_error(NULL, "driver=null-co,node-name=_a", "Invalid node-name: '_a'");
    expect_open_error(NULL, "driver=null-co,node-name=#a", "Invalid node-name: '#a'");
    expect_open_error(NULL, "driver=null-co,node-name=a:b", "Invalid node-name: 'a:b'");
    expect_open_error(NULL, "driver=null-co,node-name=", "Invalid node-name: ''");
    expect_open_error(NULL, "driver=null-co,node-name=abcdefghijklmnopqrstuvwxyz012345",
                 "Node name too long");
    expect_open_error(NULL, "driver=null-co,node-name=x,size=foo", "Parameter 'size' expects integer");
    expect_open_error("{\"driver\":\"null-co\",\"node-name\":\"x\",\"size\":-1}", NULL,
                 "Parameter 'size' expects a non-negative number below 2^64");
    expect_open_error(NULL, "driver=null-co,node-name=x,read-zeroes=maybe",
                 "Parameter 'read-zeroes' expects 'on' or 'off'");
    expect_open_error("{\"driver\":\"null-co\",\"node-name\":\"x\",\"read-zeroes\":\"on\"}", NULL,
                 "Invalid parameter type for 'read-zeroes', expected: boolean");
    expect_open_error(NULL, "driver=null-co,node-name=x,foo=1", "Parameter 'foo' is unexpected");
    expect_open_error(NULL, "driver=null-co,node-name=x,discard=bogus",
                 "Parameter 'discard' does not accept value 'bogus'");
    expect_open_error(NULL, "driver=null-co,node-name=x,cache.direct=maybe",
                 "Parameter 'cache.direct' expects 'on' or 'off'");
    expect_open_error("{\"driver\":\"null-co\",\"node-name\":\"x\",\"cache\":{\"direct\":1}}", NULL,
                 "Invalid parameter type for 'cache.direct', expected: boolean");
    expect_open_error("{\"driver\":\"null-co\",\"node-name\":\"x\",\"cache\":{\"bogus\":1}}", NULL,
                 "Parameter 'cache.bogus' is unexpected");
    expect_open_error(NULL, "driver=null-co,node-name=x,detect-zeroes=bogus",
                 "Parameter 'detect-zeroes' does not accept value 'bogus'");
    expect_open_error(NULL, "driver=null-co,node-name=x,detect-zeroes=unmap",
                 "setting detect-zeroes to unmap is not allowed without setting discard "
                 "operation to unmap");
    expect_open_error(NULL, "driver=null-co,node-name=x,force-share=on",
                 "force-share=on can only be used with read-only images");
    expect_open_error(NULL, "driver=null-co,node-name=x,filename=/tmp/x",
                 "Parameter 'filename' is unexpected");
    g_assert_null(bdrv_find_node("x"));
}

static void test_options_accepted(void)
{
    static const char *const good[] = {
        "driver=null-co,node-name=abcdefghijklmnopqrstuvwxyz01234",
        "driver=null-co,node-name=a-b_c.d",
        "driver=null-co,node-name=x,auto-read-only=on,detect-zeroes=on",
        ("driver=null-co,node-name=x,read-only=on,force-share=on,discard=unmap,"
         "detect-zeroes=unmap"),
        "driver=null-co,node-name=x,cache.direct=on,cache.no-flush=on,size=0x1000",
    };

    for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
        g_autoptr(GError) err = NULL;
        BlockDriverState *bs = open_keyval(good[i], &err);

        g_assert_no_error(err);
        close_node(bs);
    }
}

/* ---- node table ------------------------------------------------------- */

static void collect_name(BlockDriverState *bs, gpointer opaque)
{
    g_string_append_printf(opaque, "%s ", bdrv_get_node_name(bs));
}

static void delete_in_foreach(BlockDriverState *bs, gpointer opaque)
{
    bdrv_delete(bdrv_get_node_name(bs), NULL);
}

static void test_node_table(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) names = g_string_new("");
    BlockDriverState *a = open_ok("{\"driver\":\"null-co\",\"node-name\":\"a\"}");
    BlockDriverState *c = open_ok("{\"driver\":\"null-co\",\"node-name\":\"c\"}");
    BlockDriverState *b = open_ok("{\"driver\":\"null-co\",\"node-name\":\"b\"}");

    g_assert_true(bdrv_find_node("a") == a);
    g_assert_true(bdrv_find_node("b") == b);
    g_assert_null(bdrv_find_node("d"));
    g_assert_null(bdrv_find_node(NULL));

    bdrv_foreach(collect_name, names);
    g_assert_cmpstr(names->str, ==, "a c b ");

    expect_open_error("{\"driver\":\"null-co\",\"node-name\":\"a\"}", NULL,
                 "Duplicate nodes with node-name='a'");

    /* Our own reference makes the node busy. */
    g_assert_false(bdrv_delete("a", &err));
    g_assert_cmpstr(err->message, ==, "Node a is in use");
    g_clear_error(&err);
    g_assert_false(bdrv_delete("zz", &err));
    g_assert_cmpstr(err->message, ==, "Failed to find node with node-name='zz'");
    g_clear_error(&err);

    /* A user that stays keeps the node alive after deletion... */
    bdrv_get(a);
    bdrv_put(a);
    bdrv_put(a);
    g_assert_true(bdrv_delete("a", &err));
    g_assert_no_error(err);
    g_assert_null(bdrv_find_node("a"));
    /* ...and the name is free again. */
    BlockDriverState *a2 = open_ok("{\"driver\":\"null-co\",\"node-name\":\"a\"}");
    g_assert_true(bdrv_find_node("a") == a2);
    bdrv_put(a2);

    /* Deleting from foreach is allowed; nodes we still use are refused. */
    bdrv_put(b);
    bdrv_foreach(delete_in_foreach, NULL);
    g_assert_null(bdrv_find_node("b"));
    g_assert_null(bdrv_find_node("a"));
    g_assert_true(bdrv_find_node("c") == c);
    bdrv_put(c);
    bdrv_foreach(delete_in_foreach, NULL);
    g_assert_null(bdrv_find_node("c"));

    /* bdrv_delete_all() drops the table's references whatever the users. */
    BlockDriverState *d = open_ok("{\"driver\":\"null-co\",\"node-name\":\"d\"}");
    BlockDriverState *e = open_ok("{\"driver\":\"null-co\",\"node-name\":\"e\"}");
    bdrv_put(e);
    bdrv_delete_all();
    g_assert_null(bdrv_find_node("d"));
    g_assert_null(bdrv_find_node("e"));
    g_assert_cmpuint(bdrv_getlength(d), ==, 1 << 30);
    bdrv_put(d);

    /* g_autoptr works for nodes. */
    {
        g_autoptr(BlockDriverState) f = open_ok("{\"driver\":\"null-co\",\"node-name\":\"f\"}");
        g_assert_nonnull(f);
    }
    g_assert_true(bdrv_delete("f", NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/block/null/defaults", test_null_defaults);
    g_test_add_func("/block/null/read-zeroes", test_null_read_zeroes);
    g_test_add_func("/block/null/latency", test_null_latency);
    g_test_add_func("/block/null/dispatch-completions", test_dispatch_completions);
    g_test_add_func("/block/options/errors", test_option_errors);
    g_test_add_func("/block/options/accepted", test_options_accepted);
    g_test_add_func("/block/node-table", test_node_table);
    return run_block_tests(NULL);
}
