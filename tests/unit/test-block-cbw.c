/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the copy-before-write filter and the snapshot-access node
 * (block/copy-before-write.c, block/snapshot-access.c) over memory nodes:
 * the snapshot keeps the old bytes while writes, zeroes and discards go
 * through the filter, each touched cluster is copied to the target exactly
 * once however many writers race for it (from several threads, with
 * snapshot reads in flight), a bitmap limits what is copied and readable,
 * a discard of the snapshot drops clusters from it, and both copy-error
 * policies.
 */
#include "block-test-util.h"
#include "block/block-int.h"
#include "berth/block/dirty-bitmap.h"

#include <errno.h>
#include <string.h>

#define DISK (4 * MiB)
#define CL (64 * KiB)
#define N_CL (DISK / CL)

static uint8_t old_byte(uint64_t pos)
{
    return (uint8_t) (pos * 7 + pos / 4093 + 1) | 1;
}

static uint8_t new_byte(uint64_t pos)
{
    return (uint8_t) ~old_byte(pos);
}

static void fill(BlockDriverState *bs, uint8_t (*fn)(uint64_t), uint64_t off, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);

    for (uint64_t i = 0; i < len; i++) {
        buf[i] = fn(off + i);
    }
    g_assert_cmpint(write_ret(bs, off, buf, len, 0), ==, 0);
}

/* Bytes written to a node so far (its accounting). */
static uint64_t bytes_written(BlockDriverState *bs)
{
    return __atomic_load_n(&bs->stats.bytes[BDRV_ACCT_WRITE], __ATOMIC_RELAXED);
}

typedef struct {
    BlockDriverState *disk, *target, *cbw, *snap;
} Stack;

static void stack_open(Stack *st, const char *cbw_extra, const char *snap_extra)
{
    g_autofree char *cbw = NULL, *snap = NULL;

    st->disk = open_ok("{\"driver\":\"memory\",\"node-name\":\"disk\",\"size\":4194304,"
                       "\"discard\":\"unmap\"}");
    fill(st->disk, old_byte, 0, DISK);
    st->target = open_ok("{\"driver\":\"memory\",\"node-name\":\"target\",\"size\":4194304,"
                         "\"discard\":\"unmap\"}");
    cbw = g_strdup_printf("{\"driver\":\"copy-before-write\",\"node-name\":\"cbw\","
                          "\"file\":\"disk\",\"target\":\"target\",\"discard\":\"unmap\"%s}",
                          cbw_extra ? cbw_extra : "");
    st->cbw = open_ok(cbw);
    snap = g_strdup_printf("{\"driver\":\"snapshot-access\",\"node-name\":\"snap\","
                           "\"file\":\"cbw\"%s}", snap_extra ? snap_extra : "");
    st->snap = open_ok(snap);
}

static void stack_close(Stack *st)
{
    close_node(st->snap);
    close_node(st->cbw);
    close_node(st->target);
    close_node(st->disk);
}

/* The snapshot reads as the old bytes over [off, off + len). */
static void assert_snapshot_old(Stack *st, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);

    g_assert_cmpint(read_ret(st->snap, off, buf, len), ==, 0);
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != old_byte(off + i)) {
            g_error("snapshot byte %" G_GUINT64_FORMAT " is %u, not %u", off + i, buf[i],
                    old_byte(off + i));
        }
    }
}

static void test_write_zero_discard(void)
{
    Stack st;
    uint8_t buf[4096];

    stack_open(&st, NULL, NULL);
    g_assert_cmpuint(bdrv_getlength(st.snap), ==, DISK);
    fill(st.cbw, new_byte, 100, 5000);                  /* cluster 0 */
    Result r = { 0 };
    g_assert_cmpint(do_zeroes(st.cbw, 3 * CL, CL, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_simple(bdrv_aio_pdiscard, st.cbw, 5 * CL + 512, CL), ==, 0);
    fill(st.cbw, new_byte, 100, 5000);                  /* copied already */

    assert_snapshot_old(&st, 0, DISK);
    /* A read that starts in a copied cluster and ends in one that is not. */
    assert_snapshot_old(&st, CL - 100, 2 * CL);
    g_assert_cmpint(read_ret(st.cbw, 3 * CL, buf, sizeof(buf)), ==, 0);
    g_assert_true(is_zero(buf, sizeof(buf)));
    g_assert_cmpint(read_ret(st.cbw, 100, buf, 1), ==, 0);
    g_assert_cmpuint(buf[0], ==, new_byte(100));
    /* Clusters 0, 3, 5 and 6, once each. */
    g_assert_cmpuint(bytes_written(st.target), ==, 4 * CL);

    /* Writes fail, flush succeeds, as QEMU's snapshot-access. */
    g_assert_cmpint(write_ret(st.snap, 0, buf, 512, 0), ==, -ENOTSUP);
    g_assert_cmpint(do_flush(st.snap), ==, 0);
    stack_close(&st);
}

/* --- racing writers -------------------------------------------------------- */

typedef struct {
    BlockDriverState *cbw;
    guint seed;
} Writer;

static void wrote(gpointer opaque, int ret, const GError *err)
{
    g_assert_cmpint(ret, ==, 0);
    (*(int *) opaque)--;
}

/* Many writes in flight at once, on this thread's own context. */
static gpointer writer_thread(gpointer data)
{
    Writer *w = data;
    GMainContext *ctx = push_new_context();
    GRand *rand = g_rand_new_with_seed(w->seed);
    enum { N = 64, MAXLEN = 3 * CL };
    g_autofree uint8_t *bufs = g_malloc((size_t) N * MAXLEN);
    int pending = 0;

    for (int i = 0; i < N; i++) {
        uint64_t off = g_rand_int_range(rand, 0, DISK - MAXLEN);
        uint64_t len = g_rand_int_range(rand, 1, MAXLEN);
        uint8_t *buf = bufs + (size_t) i * MAXLEN;
        struct iovec iov = { buf, len };

        for (uint64_t j = 0; j < len; j++) {
            buf[j] = new_byte(off + j);
        }
        pending++;
        if (i % 5 == 4) {
            bdrv_aio_pwrite_zeroes(w->cbw, off, len, 0, wrote, &pending);
        } else {
            bdrv_aio_pwritev(w->cbw, off, &iov, 1, 0, wrote, &pending);
        }
    }
    while (pending > 0) {
        g_main_context_iteration(ctx, TRUE);
    }
    g_rand_free(rand);
    pop_context(ctx);
    return NULL;
}

static void test_racing_writers(void)
{
    Stack st;
    Writer w[4];
    GThread *t[4];
    g_autofree uint8_t *disk = g_malloc(DISK), *target = g_malloc(DISK);
    guint copied = 0;

    stack_open(&st, NULL, NULL);
    for (int i = 0; i < 4; i++) {
        w[i] = (Writer) { .cbw = st.cbw, .seed = 1000 + i };
        t[i] = g_thread_new("writer", writer_thread, &w[i]);
    }
    /* Snapshot reads while they write. */
    for (int i = 0; i < 8; i++) {
        assert_snapshot_old(&st, (uint64_t) i * (DISK / 8), DISK / 8);
    }
    for (int i = 0; i < 4; i++) {
        g_thread_join(t[i]);
    }
    assert_snapshot_old(&st, 0, DISK);

    /* Every cluster that changed was copied, once: the target's bytes. */
    g_assert_cmpint(read_ret(st.disk, 0, disk, DISK), ==, 0);
    g_assert_cmpint(read_ret(st.target, 0, target, DISK), ==, 0);
    for (guint c = 0; c < N_CL; c++) {
        bool changed = false, in_target = !is_zero(target + c * CL, CL);

        for (uint64_t i = c * CL; i < (c + 1) * CL && !changed; i++) {
            changed = disk[i] != old_byte(i);
        }
        if (changed) {
            g_assert_true(in_target);
        }
        if (in_target) {
            for (uint64_t i = c * CL; i < (c + 1) * CL; i++) {
                g_assert_cmpuint(target[i], ==, old_byte(i));
            }
            copied++;
        }
    }
    g_assert_cmpuint(copied, >, 0);
    g_assert_cmpuint(bytes_written(st.target), ==, (uint64_t) copied * CL);
    stack_close(&st);
}

/* --- bitmap, snapshot discard, errors -------------------------------------- */

static void test_bitmap(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *disk = open_ok("{\"driver\":\"memory\",\"node-name\":\"disk\","
                                     "\"size\":4194304}");
    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_create(disk, "b0", 0, false, &err);
    BlockDriverState *target, *cbw, *snap;
    uint8_t buf[512];

    g_assert_no_error(err);
    fill(disk, old_byte, 0, DISK);                       /* all dirty */
    g_assert_true(bdrv_dirty_bitmap_clear(bm, NULL));
    fill(disk, old_byte, 2 * CL + 10, 10);               /* cluster 2 dirty */
    g_assert_true(bdrv_dirty_bitmap_set_enabled(bm, false, NULL));

    expect_open_error("{\"driver\":\"copy-before-write\",\"node-name\":\"cbw\","
                      "\"file\":\"disk\",\"target\":\"disk\","
                      "\"bitmap\":{\"node\":\"disk\",\"name\":\"b9\"}}", NULL,
                      "Dirty bitmap 'b9' not found");
    target = open_ok("{\"driver\":\"memory\",\"node-name\":\"target\",\"size\":4194304}");
    cbw = open_ok("{\"driver\":\"copy-before-write\",\"node-name\":\"cbw\",\"file\":\"disk\","
                  "\"target\":\"target\",\"bitmap\":{\"node\":\"disk\",\"name\":\"b0\"}}");
    snap = open_ok("{\"driver\":\"snapshot-access\",\"node-name\":\"snap\",\"file\":\"cbw\"}");

    fill(cbw, new_byte, 0, 4 * CL);
    g_assert_cmpuint(bytes_written(target), ==, CL);
    g_assert_cmpint(read_ret(snap, 2 * CL, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(buf[0], ==, old_byte(2 * CL));
    g_assert_cmpint(read_ret(snap, 0, buf, sizeof(buf)), ==, -EACCES);
    g_assert_cmpint(read_ret(snap, 2 * CL - 512, buf, 1024), ==, -EACCES);
    close_node(snap);
    close_node(cbw);
    close_node(target);
    close_node(disk);
}

static void test_snapshot_discard(void)
{
    Stack st;
    uint8_t buf[512];

    stack_open(&st, NULL, ",\"discard\":\"unmap\"");
    /* Only whole clusters leave the snapshot. */
    g_assert_cmpint(do_simple(bdrv_aio_pdiscard, st.snap, CL / 2, 3 * CL), ==, 0);
    g_assert_cmpint(read_ret(st.snap, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpint(read_ret(st.snap, CL, buf, sizeof(buf)), ==, -EACCES);
    g_assert_cmpint(read_ret(st.snap, 2 * CL, buf, sizeof(buf)), ==, -EACCES);
    g_assert_cmpint(read_ret(st.snap, 3 * CL, buf, sizeof(buf)), ==, 0);
    /* A write there copies nothing any more. */
    fill(st.cbw, new_byte, CL, 2 * CL);
    g_assert_cmpuint(bytes_written(st.target), ==, 0);
    stack_close(&st);
}

static void test_copy_errors(void)
{
    const char *dbg = "{\"driver\":\"blkdebug\",\"node-name\":\"bad\",\"image\":\"target\","
                      "\"inject-error\":[{\"event\":\"pwritev\",\"errno\":28}]}";
    BlockDriverState *disk, *target, *bad, *cbw, *snap;
    uint8_t buf[512] = { 0 };

    for (int policy = 0; policy < 2; policy++) {
        disk = open_ok("{\"driver\":\"memory\",\"node-name\":\"disk\",\"size\":4194304}");
        fill(disk, old_byte, 0, DISK);
        target = open_ok("{\"driver\":\"memory\",\"node-name\":\"target\",\"size\":4194304}");
        bad = open_ok(dbg);
        cbw = open_ok(policy ? "{\"driver\":\"copy-before-write\",\"node-name\":\"cbw\","
                               "\"file\":\"disk\",\"target\":\"bad\","
                               "\"on-cbw-error\":\"break-snapshot\"}"
                             : "{\"driver\":\"copy-before-write\",\"node-name\":\"cbw\","
                               "\"file\":\"disk\",\"target\":\"bad\"}");
        snap = open_ok("{\"driver\":\"snapshot-access\",\"node-name\":\"snap\","
                       "\"file\":\"cbw\"}");
        if (policy == 0) {
            /* break-guest-write: the guest's write fails, the snapshot stays. */
            g_assert_cmpint(write_ret(cbw, 0, buf, sizeof(buf), 0), ==, -ENOSPC);
            g_assert_cmpint(read_ret(disk, 0, buf, 1), ==, 0);
            g_assert_cmpuint(buf[0], ==, old_byte(0));
            assert_snapshot_old(&(Stack) { .snap = snap }, 0, CL);
        } else {
            /* break-snapshot: the write goes on, the snapshot is gone. */
            g_assert_cmpint(write_ret(cbw, 0, buf, sizeof(buf), 0), ==, 0);
            g_assert_cmpint(read_ret(snap, CL, buf, sizeof(buf)), ==, -EACCES);
            g_assert_cmpint(write_ret(cbw, CL, buf, sizeof(buf), 0), ==, 0);
        }
        close_node(snap);
        close_node(cbw);
        close_node(bad);
        close_node(target);
        close_node(disk);
    }
}

static void test_open_errors(void)
{
    BlockDriverState *disk = open_ok("{\"driver\":\"memory\",\"node-name\":\"disk\","
                                     "\"size\":4194304}");
    BlockDriverState *small = open_ok("{\"driver\":\"memory\",\"node-name\":\"small\","
                                      "\"size\":65536}");
    BlockDriverState *ro = open_ok("{\"driver\":\"memory\",\"node-name\":\"ro\","
                                   "\"size\":4194304,\"read-only\":true}");
    BlockDriverState *other;
    uint8_t buf[512];

    expect_open_error("{\"driver\":\"copy-before-write\",\"node-name\":\"c\",\"file\":\"disk\"}",
                      NULL, "Parameter 'target' is missing");
    expect_open_error("{\"driver\":\"copy-before-write\",\"node-name\":\"c\",\"file\":\"disk\","
                      "\"target\":\"ro\"}", NULL, "Block node is read-only");
    expect_open_error("{\"driver\":\"copy-before-write\",\"node-name\":\"c\",\"file\":\"disk\","
                      "\"target\":\"small\"}", NULL,
                      "Target node 'small' (65536 bytes) is smaller than the filtered node "
                      "'disk' (4194304 bytes)");
    expect_open_error(NULL, "driver=copy-before-write,node-name=c,file=disk,target=disk,"
                      "cbw-timeout=3",
                      "copy-before-write option 'cbw-timeout' is not supported by berth "
                      "(only 0: no timeout)");
    /* snapshot-access over a node that is not a filter: nothing to read. */
    other = open_ok("{\"driver\":\"snapshot-access\",\"node-name\":\"s\",\"file\":\"disk\"}");
    g_assert_cmpint(read_ret(other, 0, buf, sizeof(buf)), ==, -ENOTSUP);
    close_node(other);
    close_node(ro);
    close_node(small);
    close_node(disk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block/cbw/write-zero-discard", test_write_zero_discard);
    g_test_add_func("/block/cbw/racing-writers", test_racing_writers);
    g_test_add_func("/block/cbw/bitmap", test_bitmap);
    g_test_add_func("/block/cbw/snapshot-discard", test_snapshot_discard);
    g_test_add_func("/block/cbw/copy-errors", test_copy_errors);
    g_test_add_func("/block/cbw/open-errors", test_open_errors);
    return run_block_tests(NULL);
}
