/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the block layer's accounting (block/block-stats.c) through
 * query-blockstats: each class of request moves exactly its counters,
 * refusals are "invalid" or "failed" as QEMU counts them, cache and
 * block-status move nothing, and requests completed by worker threads of
 * the file driver from many submitters add up exactly.
 */
#include "block-test-util.h"
#include "berth/qapi/qapi.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

static json_object *node_stats(const char *node)
{
    g_autoptr(GError) err = NULL;
    json_object *ret = NULL;
    json_object *args = json_object_new_object();

    json_object_object_add(args, "query-nodes", json_object_new_boolean(true));
    g_assert_true(qapi_run_command(qapi_find_command("query-blockstats"), args, false, &ret,
                                   &err));
    g_assert_no_error(err);
    json_object_put(args);
    json_object *found = NULL;
    for (size_t i = 0; i < json_object_array_length(ret); i++) {
        json_object *e = json_object_array_get_idx(ret, i);
        if (strcmp(json_object_get_string(json_object_object_get(e, "node-name")), node) == 0) {
            found = json_object_get(json_object_object_get(e, "stats"));
        }
    }
    json_object_put(ret);
    g_assert_nonnull(found);
    return found;
}

static gint64 stat_of(json_object *stats, const char *key)
{
    json_object *v = json_object_object_get(stats, key);
    g_assert_nonnull(v);
    return json_object_get_int64(v);
}

static void test_classes(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"s\",\"size\":65536,"
                                   "\"discard\":\"unmap\"}");
    uint8_t buf[4096] = { 1 };
    Result r = { 0 };

    json_object *st = node_stats("s");
    g_assert_cmpint(stat_of(st, "rd_operations"), ==, 0);
    g_assert_null(json_object_object_get(st, "idle_time_ns"));
    g_assert_true(json_object_get_boolean(json_object_object_get(st, "account_failed")));
    json_object_put(st);

    g_assert_cmpint(do_write(bs, 8192, buf, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 0, buf, 1000, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_read(bs, 100, buf, 24, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_zeroes(bs, 0, 512, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_discard(bs, 4096, 4096, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_simple(bdrv_aio_cache, bs, 0, 4096), ==, 0);
    /* Beyond the end: invalid, neither done nor failed. */
    g_assert_cmpint(do_read(bs, 65536, buf, 1, &r), ==, -EINVAL);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 65000, buf, 4096, 0, &r), ==, -EINVAL);
    result_clear(&r);
    bdrv_aio_flush(bs, on_done, &r);
    g_assert_cmpint(wait_result(&r), ==, 0);
    result_clear(&r);

    st = node_stats("s");
    g_assert_cmpint(stat_of(st, "rd_operations"), ==, 2);
    g_assert_cmpint(stat_of(st, "rd_bytes"), ==, 1024);
    g_assert_cmpint(stat_of(st, "wr_operations"), ==, 2);
    g_assert_cmpint(stat_of(st, "wr_bytes"), ==, 4096 + 512);
    g_assert_cmpint(stat_of(st, "wr_highest_offset"), ==, 12288);
    g_assert_cmpint(stat_of(st, "unmap_operations"), ==, 1);
    g_assert_cmpint(stat_of(st, "unmap_bytes"), ==, 4096);
    g_assert_cmpint(stat_of(st, "flush_operations"), ==, 1);
    g_assert_cmpint(stat_of(st, "invalid_rd_operations"), ==, 1);
    g_assert_cmpint(stat_of(st, "invalid_wr_operations"), ==, 1);
    g_assert_cmpint(stat_of(st, "failed_rd_operations"), ==, 0);
    g_assert_cmpint(stat_of(st, "failed_wr_operations"), ==, 0);
    g_assert_cmpint(stat_of(st, "idle_time_ns"), >=, 0);
    json_object_put(st);

    /* A read-only node fails writes (EPERM): failed, not invalid. */
    BlockDriverState *ro = open_ok("{\"driver\":\"null-co\",\"node-name\":\"ro\","
                                   "\"read-only\":true}");
    g_assert_cmpint(do_write(ro, 0, buf, 512, 0, &r), ==, -EPERM);
    result_clear(&r);
    st = node_stats("ro");
    g_assert_cmpint(stat_of(st, "failed_wr_operations"), ==, 1);
    g_assert_cmpint(stat_of(st, "invalid_wr_operations"), ==, 0);
    g_assert_cmpint(stat_of(st, "wr_operations"), ==, 0);
    json_object_put(st);
}

/* Many requests in flight on the file driver, whose worker threads finish
 * them concurrently: the totals are exact. */
#define N_REQS 256

static void test_concurrent_file(void)
{
    g_autofree char *dir = g_dir_make_tmp("berth-stats-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "img", NULL);
    g_autofree char *json = NULL;
    static uint8_t data[N_REQS][4096];
    Result res[N_REQS];

    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, N_REQS * 4096), ==, 0);
    json = g_strdup_printf("{\"driver\":\"file\",\"node-name\":\"f\",\"filename\":\"%s\"}",
                           path);
    BlockDriverState *bs = open_ok(json);
    memset(res, 0, sizeof(res));
    for (int i = 0; i < N_REQS; i++) {
        struct iovec iov = { data[i], (size_t) (i % 2 ? 4096 : 512) };
        if (i % 3) {
            bdrv_aio_pwritev(bs, (uint64_t) i * 4096, &iov, 1, 0, on_done, &res[i]);
        } else {
            bdrv_aio_preadv(bs, (uint64_t) i * 4096, &iov, 1, on_done, &res[i]);
        }
    }
    guint64 rd_ops = 0, rd_bytes = 0, wr_ops = 0, wr_bytes = 0;
    for (int i = 0; i < N_REQS; i++) {
        while (!res[i].done) {
            g_main_context_iteration(g_main_context_get_thread_default(), TRUE);
        }
        g_assert_cmpint(res[i].ret, ==, 0);
        result_clear(&res[i]);
        guint64 len = i % 2 ? 4096 : 512;
        if (i % 3) {
            wr_ops++;
            wr_bytes += len;
        } else {
            rd_ops++;
            rd_bytes += len;
        }
    }
    json_object *st = node_stats("f");
    g_assert_cmpint(stat_of(st, "rd_operations"), ==, (gint64) rd_ops);
    g_assert_cmpint(stat_of(st, "rd_bytes"), ==, (gint64) rd_bytes);
    g_assert_cmpint(stat_of(st, "wr_operations"), ==, (gint64) wr_ops);
    g_assert_cmpint(stat_of(st, "wr_bytes"), ==, (gint64) wr_bytes);
    g_assert_cmpint(stat_of(st, "wr_total_time_ns"), >, 0);
    json_object_put(st);
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qapi_init();

    g_test_add_func("/block/stats/classes", test_classes);
    g_test_add_func("/block/stats/concurrent-file", test_concurrent_file);
    return run_block_tests(NULL);
}
