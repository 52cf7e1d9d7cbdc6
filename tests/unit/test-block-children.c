/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the node graph (block/children.c and its parts of block.c
 * and block-io.c): opening children by name and nested, automatic names,
 * the deletion rules, requests a raw node forwards to its child, and the
 * synchronous child requests that format drivers use from worker threads.
 */
#include "block-test-util.h"
#include "block/block-int.h"

#include <errno.h>
#include <string.h>

static void test_child_by_name_and_delete_rules(void)
{
    BlockDriverState *m = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536}");
    BlockDriverState *r = open_ok("{\"driver\":\"raw\",\"node-name\":\"r\",\"file\":\"m\"}");
    g_autoptr(GError) err = NULL;

    g_assert_true(bdrv_child(r, "file") == m);
    g_assert_cmpint(m->n_parents, ==, 1);
    g_assert_cmpuint(bdrv_getlength(r), ==, 65536);
    bdrv_put(r);
    bdrv_put(m);
    g_assert_false(bdrv_delete("m", &err));
    g_assert_cmpstr(err->message, ==, "Block device m is in use");
    g_clear_error(&err);
    g_assert_true(bdrv_delete("r", &err));
    g_assert_no_error(err);
    g_assert_true(bdrv_delete("m", &err));
    g_assert_null(bdrv_find_node("m"));
}

static void count_node(BlockDriverState *bs, gpointer opaque)
{
    (*(int *) opaque)++;
}

static void test_nested_child(void)
{
    BlockDriverState *r = open_ok("{\"driver\":\"raw\",\"node-name\":\"r\",\"read-only\":true,"
                                  "\"file\":{\"driver\":\"memory\",\"size\":4096}}");
    BlockDriverState *child = bdrv_child(r, "file");
    g_autoptr(GError) err = NULL;
    int n = 0;

    g_assert_nonnull(child);
    g_assert_true(g_str_has_prefix(bdrv_get_node_name(child), "#block"));
    g_assert_true(bdrv_find_node(bdrv_get_node_name(child)) == child);
    /* Inherited from the parent. */
    g_assert_true(bdrv_is_read_only(child));
    g_assert_false(bdrv_delete(bdrv_get_node_name(child), &err));
    g_assert_true(g_str_has_suffix(err->message, " is not owned by the monitor"));
    bdrv_foreach(count_node, &n);
    g_assert_cmpint(n, ==, 2);
    bdrv_put(r);
    g_assert_true(bdrv_delete("r", NULL));
    n = 0;
    bdrv_foreach(count_node, &n);
    g_assert_cmpint(n, ==, 0);
}

static void test_nested_errors(void)
{
    expect_open_error("{\"driver\":\"raw\",\"node-name\":\"r\",\"file\":{\"driver\":\"memory\"}}",
                      NULL, "Parameter 'file.size' is missing");
    expect_open_error(NULL, "driver=raw,node-name=r,file.driver=memory,file.size=x",
                      "Parameter 'file.size' expects integer");
    expect_open_error("{\"driver\":\"raw\",\"node-name\":\"r\",\"file\":[]}", NULL,
                      "Invalid parameter type for 'file', expected: BlockdevRef");
    /* A failed parent leaves no nested child behind. */
    expect_open_error("{\"driver\":\"raw\",\"node-name\":\"r\",\"size\":1000,"
                      "\"file\":{\"driver\":\"memory\",\"size\":4096}}", NULL,
                      "Specified size is not multiple of 512");
    int n = 0;
    bdrv_foreach(count_node, &n);
    g_assert_cmpint(n, ==, 0);
}

static void test_raw_window_forwards(void)
{
    BlockDriverState *m = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536}");
    BlockDriverState *r = open_ok("{\"driver\":\"raw\",\"node-name\":\"r\",\"file\":\"m\","
                                  "\"offset\":4096,\"size\":8192}");
    uint8_t buf[4096], back[4096];
    Result res = { 0 };

    g_assert_cmpuint(bdrv_getlength(r), ==, 8192);
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(do_write(r, 4096, buf, sizeof(buf), 0, &res), ==, 0);
    result_clear(&res);
    g_assert_cmpint(do_read(m, 8192, back, sizeof(back), &res), ==, 0);
    result_clear(&res);
    g_assert_cmpmem(back, sizeof(back), buf, sizeof(buf));
    /* Past the window: refused by the generic checks of the raw node. */
    g_assert_cmpint(do_read(r, 8192, back, 512, &res), ==, -EINVAL);
    result_clear(&res);
    /* Block status comes from the child, relative to the window. */
    g_assert_cmpint(do_status(r, 0, 8192, 0, &res), ==, 0);
    g_assert_cmpuint(res.extents->len, >=, 1);
    uint64_t total = 0;
    for (guint i = 0; i < res.extents->len; i++) {
        total += g_array_index(res.extents, BdrvExtent, i).length;
    }
    g_assert_cmpuint(total, ==, 8192);
    result_clear(&res);
    close_node(r);
    close_node(m);
}

typedef struct {
    BlockDriverState *bs;
    int ret_write, ret_read, ret_zero, ret_flush, ret_discard, ret_beyond;
    char *beyond_msg;
    uint8_t data[4096];
} SyncJob;

static gpointer sync_thread(gpointer opaque)
{
    SyncJob *j = opaque;
    uint8_t buf[4096];
    GError *err = NULL;

    memset(buf, 0xa5, sizeof(buf));
    j->ret_write = bdrv_child_pwrite_sync(j->bs, 4096, buf, sizeof(buf), BDRV_REQ_FUA, NULL);
    j->ret_read = bdrv_child_pread_sync(j->bs, 4096, j->data, sizeof(j->data), NULL);
    j->ret_zero = bdrv_child_pwrite_zeroes_sync(j->bs, 0, 4096, 0, NULL);
    j->ret_flush = bdrv_child_flush_sync(j->bs, NULL);
    j->ret_discard = bdrv_child_pdiscard_sync(j->bs, 0, 4096, NULL);
    j->ret_beyond = bdrv_child_pread_sync(j->bs, 65536, buf, 512, &err);
    j->beyond_msg = err ? g_strdup(err->message) : NULL;
    g_clear_error(&err);
    return NULL;
}

static void test_sync_requests(void)
{
    BlockDriverState *m = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\",\"size\":65536}");
    SyncJob j = { .bs = m };
    g_autoptr(GError) err = NULL;
    uint8_t expect[4096];
    GThread *t = g_thread_new("sync", sync_thread, &j);

    g_thread_join(t);
    g_assert_cmpint(j.ret_write, ==, 0);
    g_assert_cmpint(j.ret_read, ==, 0);
    memset(expect, 0xa5, sizeof(expect));
    g_assert_cmpmem(j.data, sizeof(j.data), expect, sizeof(expect));
    g_assert_cmpint(j.ret_zero, ==, 0);
    g_assert_cmpint(j.ret_flush, ==, 0);
    g_assert_cmpint(j.ret_discard, ==, 0);
    g_assert_cmpint(j.ret_beyond, ==, -EINVAL);
    g_assert_nonnull(strstr(j.beyond_msg, "beyond the end of node 'm'"));
    g_free(j.beyond_msg);

    /* The test's thread runs a context: waiting here could never end. */
    g_assert_cmpint(bdrv_child_pread_sync(m, 0, expect, 512, &err), ==, -EDEADLK);
    g_assert_nonnull(err);
    close_node(m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block/children/by-name", test_child_by_name_and_delete_rules);
    g_test_add_func("/block/children/nested", test_nested_child);
    g_test_add_func("/block/children/nested-errors", test_nested_errors);
    g_test_add_func("/block/children/raw-window", test_raw_window_forwards);
    g_test_add_func("/block/children/sync", test_sync_requests);
    return run_block_tests(NULL);
}
