/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of dirty bitmaps: the sparse bit array (ranges across word and
 * page boundaries, searches, counts, pages freed when emptied, merge, a
 * 2^36-bit array that costs nothing until set) against a plain reference
 * array; and bitmaps on nodes: granularity rounding of marked ranges, the
 * byte-level status runs the NBD server reads, QEMU's texts for bad names
 * and granularities, busy refusals, disabled bitmaps that record nothing,
 * merges across granularities and sizes, and marking by every kind of
 * change that reaches a node (and none by reads or ignored discards), also
 * from several threads at once.
 */
#include "block-test-util.h"
#include "berth/block/dirty-bitmap.h"
#include "util/sparse-bitmap.h"
/* For bdrv_dirty_bitmaps_resize(), the block layer's hook for block_resize. */
#include "block/block-int.h"

#include <string.h>

/* ---- the bit array ------------------------------------------------------- */

static void check_against(const BerthBitmap *b, const uint8_t *ref, uint64_t n)
{
    uint64_t count = 0;
    for (uint64_t i = 0; i < n; i++) {
        g_assert_cmpint(berth_bitmap_get(b, i), ==, ref[i]);
        count += ref[i];
    }
    g_assert_cmpuint(berth_bitmap_count(b), ==, count);
    /* Searches from every position agree with the reference. */
    for (uint64_t i = 0; i < n; i += 37) {
        uint64_t s = i, c = i;
        while (s < n && !ref[s]) {
            s++;
        }
        while (c < n && ref[c]) {
            c++;
        }
        g_assert_cmpuint(berth_bitmap_next_set(b, i), ==, s);
        g_assert_cmpuint(berth_bitmap_next_clear(b, i), ==, c);
    }
}

static void test_ranges_random(void)
{
    const uint64_t n = 3 * 32768 + 777;   /* a partial last page */
    g_autofree uint8_t *ref = g_malloc0(n);
    BerthBitmap *b = berth_bitmap_new(n);
    GRand *rnd = g_rand_new_with_seed(42);

    for (int round = 0; round < 400; round++) {
        uint64_t start = g_rand_int_range(rnd, 0, (gint32) n);
        uint64_t len = g_rand_int_range(rnd, 0, round % 10 == 0 ? 70000 : 300);
        bool set = g_rand_boolean(rnd);
        if (set) {
            berth_bitmap_set(b, start, len);
        } else {
            berth_bitmap_reset(b, start, len);
        }
        for (uint64_t i = start; i < MIN(start + len, n); i++) {
            ref[i] = set;
        }
        if (round % 50 == 0) {
            check_against(b, ref, n);
        }
    }
    check_against(b, ref, n);
    BerthBitmap *copy = berth_bitmap_copy(b);
    check_against(copy, ref, n);
    berth_bitmap_reset_all(b);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 0);
    g_assert_cmpuint(berth_bitmap_next_set(b, 0), ==, n);
    g_assert_cmpuint(berth_bitmap_next_clear(b, 0), ==, 0);
    check_against(copy, ref, n);    /* copies are independent */
    berth_bitmap_free(copy);
    berth_bitmap_free(b);
    g_rand_free(rnd);
}

static void test_edges(void)
{
    BerthBitmap *b = berth_bitmap_new(130);

    /* Word boundaries, clipping at the end, zero-length ranges. */
    berth_bitmap_set(b, 63, 2);
    g_assert_true(berth_bitmap_get(b, 63) && berth_bitmap_get(b, 64));
    g_assert_false(berth_bitmap_get(b, 62) || berth_bitmap_get(b, 65));
    berth_bitmap_set(b, 120, 1000);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 2 + 10);
    g_assert_cmpuint(berth_bitmap_next_clear(b, 120), ==, 130);
    berth_bitmap_set(b, 500, 5);
    berth_bitmap_set(b, 0, 0);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 12);
    g_assert_false(berth_bitmap_get(b, 130));
    g_assert_cmpuint(berth_bitmap_next_set(b, 65), ==, 120);
    g_assert_cmpuint(berth_bitmap_next_set(b, 200), ==, 130);
    berth_bitmap_reset(b, 0, UINT64_MAX);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 0);
    berth_bitmap_free(b);
}

static void test_merge(void)
{
    BerthBitmap *a = berth_bitmap_new(100000), *b = berth_bitmap_new(100000);
    BerthBitmap *other = berth_bitmap_new(99999);

    berth_bitmap_set(a, 10, 10);
    berth_bitmap_set(b, 15, 10);
    berth_bitmap_set(b, 70000, 3);
    g_assert_true(berth_bitmap_merge(a, b));
    g_assert_cmpuint(berth_bitmap_count(a), ==, 15 + 3);
    g_assert_cmpuint(berth_bitmap_next_clear(a, 10), ==, 25);
    g_assert_cmpuint(berth_bitmap_next_set(a, 25), ==, 70000);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 13);
    g_assert_false(berth_bitmap_merge(a, other));
    g_assert_cmpuint(berth_bitmap_count(a), ==, 18);
    berth_bitmap_free(a);
    berth_bitmap_free(b);
    berth_bitmap_free(other);
}

static void test_big(void)
{
    /* 2^36 bits: only the page table is allocated until bits are set. */
    BerthBitmap *b = berth_bitmap_new(BERTH_BITMAP_MAX_BITS);
    uint64_t last = BERTH_BITMAP_MAX_BITS - 1;

    g_assert_cmpuint(berth_bitmap_next_set(b, 0), ==, BERTH_BITMAP_MAX_BITS);
    berth_bitmap_set(b, last, 1);
    berth_bitmap_set(b, UINT64_C(1) << 35, 100000);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 100001);
    g_assert_cmpuint(berth_bitmap_next_set(b, 0), ==, UINT64_C(1) << 35);
    g_assert_cmpuint(berth_bitmap_next_set(b, (UINT64_C(1) << 35) + 100000), ==, last);
    g_assert_cmpuint(berth_bitmap_next_clear(b, last), ==, BERTH_BITMAP_MAX_BITS);
    berth_bitmap_reset(b, 0, BERTH_BITMAP_MAX_BITS);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 0);
    berth_bitmap_free(b);
}

static void test_resize(void)
{
    BerthBitmap *b = berth_bitmap_new(100000);

    berth_bitmap_set(b, 10, 5);
    berth_bitmap_set(b, 40000, 60000);
    berth_bitmap_resize(b, 40005);          /* drops whole pages and a part */
    g_assert_cmpuint(berth_bitmap_size(b), ==, 40005);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 10);
    g_assert_cmpuint(berth_bitmap_next_clear(b, 40000), ==, 40005);
    berth_bitmap_resize(b, 200000);         /* new bits are clear */
    g_assert_cmpuint(berth_bitmap_count(b), ==, 10);
    g_assert_cmpuint(berth_bitmap_next_set(b, 40000), ==, 40000);
    g_assert_cmpuint(berth_bitmap_next_set(b, 40005), ==, 200000);
    berth_bitmap_set(b, 199999, 10);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 11);
    berth_bitmap_resize(b, 1);
    g_assert_cmpuint(berth_bitmap_count(b), ==, 0);
    berth_bitmap_free(b);
}

/* ---- bitmaps on nodes --------------------------------------------------- */

static BdrvDirtyBitmap *add_ok(BlockDriverState *bs, const char *name, uint32_t g)
{
    g_autoptr(GError) err = NULL;
    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_create(bs, name, g, false, &err);

    g_assert_no_error(err);
    g_assert_nonnull(bm);
    return bm;
}

static uint64_t count_of(BdrvDirtyBitmap *bm)
{
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_get_info(bm, &info);
    return info.count;
}

/* The runs of [off, off+len) as "D:len C:len ...". */
static char *runs(BdrvDirtyBitmap *bm, uint64_t off, uint64_t len)
{
    GString *s = g_string_new(NULL);
    while (len > 0) {
        uint64_t run;
        bool dirty = bdrv_dirty_bitmap_status(bm, off, len, &run);
        g_assert_cmpuint(run, >, 0);
        g_string_append_printf(s, "%s%c:%" G_GUINT64_FORMAT, s->len ? " " : "",
                               dirty ? 'D' : 'C', run);
        off += run;
        len -= run;
    }
    return g_string_free(s, FALSE);
}

static void assert_runs(BdrvDirtyBitmap *bm, uint64_t off, uint64_t len, const char *want)
{
    g_autofree char *got = runs(bm, off, len);
    g_assert_cmpstr(got, ==, want);
}

static void test_granularity_rounding(void)
{
    /* 1 MiB + 1 KiB: the last 64 KiB bit covers a partial tail. */
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\","
                                   "\"size\":1049600}");
    BdrvDirtyBitmap *bm = add_ok(bs, "b0", 0), *fine = add_ok(bs, "fine", 512);
    uint64_t size = bdrv_getlength(bs);
    Result r = { 0 };
    uint8_t buf[100] = { 1 };
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_get_info(bm, &info);
    g_assert_cmpuint(info.granularity, ==, 65536);
    g_assert_true(info.recording);
    g_assert_false(info.busy || info.persistent);
    g_assert_cmpuint(info.count, ==, 0);

    /* 100 bytes straddling a 64 KiB boundary dirty two bits. */
    g_assert_cmpint(do_write(bs, 65536 - 50, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpuint(count_of(bm), ==, 2 * 65536);
    g_assert_cmpuint(count_of(fine), ==, 2 * 512);
    assert_runs(bm, 0, size, "D:131072 C:918528");
    assert_runs(fine, 65000, 2000, "C:24 D:1024 C:952");
    /* Status starts where asked, mid-bit, and stops where asked. */
    assert_runs(bm, 1000, 200000, "D:130072 C:69928");
    /* The partial tail: a write there dirties up to the node's end. */
    g_assert_cmpint(do_write(bs, size - 10, buf, 10, 0, &r), ==, 0);
    result_clear(&r);
    assert_runs(bm, 1048576 - 65536, size - (1048576 - 65536), "C:65536 D:1024");
    assert_runs(bm, size, 4096, "C:4096");
    close_node(bs);
}

static void test_changes_mark(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\","
                                   "\"size\":4194304,\"discard\":\"unmap\"}");
    BlockDriverState *ign = open_ok("{\"driver\":\"memory\",\"node-name\":\"i\","
                                    "\"size\":4194304}");
    BdrvDirtyBitmap *bm = add_ok(bs, "b", 4096), *bi = add_ok(ign, "b", 4096);
    Result r = { 0 };
    uint8_t buf[4096] = { 0 };

    g_assert_cmpint(do_read(bs, 0, buf, sizeof(buf), &r), ==, 0);
    result_clear(&r);
    g_assert_cmpuint(count_of(bm), ==, 0);
    g_assert_cmpint(do_zeroes(bs, 8192, 4096, 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_discard(bs, 65536, 8192, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpint(do_write(bs, 1 << 20, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);
    assert_runs(bm, 0, 2 << 20, "C:8192 D:4096 C:53248 D:8192 C:974848 D:4096 C:1044480");
    /* A refused request changes nothing. */
    g_assert_cmpint(do_write(bs, 4194304 - 100, buf, sizeof(buf), 0, &r), ==, -EINVAL);
    result_clear(&r);
    g_assert_cmpuint(count_of(bm), ==, 4 * 4096);
    /* discard=ignore drops the hint: nothing changed, nothing marked. */
    g_assert_cmpint(do_discard(ign, 0, 65536, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpuint(count_of(bi), ==, 0);

    /* Disabled: keeps its bits, records nothing new; enabled again: records. */
    g_assert_true(bdrv_dirty_bitmap_set_enabled(bm, false, NULL));
    g_assert_cmpint(do_write(bs, 0, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpuint(count_of(bm), ==, 4 * 4096);
    g_assert_true(bdrv_dirty_bitmap_set_enabled(bm, true, NULL));
    g_assert_cmpint(do_write(bs, 0, buf, sizeof(buf), 0, &r), ==, 0);
    result_clear(&r);
    g_assert_cmpuint(count_of(bm), ==, 5 * 4096);
    g_assert_true(bdrv_dirty_bitmap_clear(bm, NULL));
    g_assert_cmpuint(count_of(bm), ==, 0);
    close_node(bs);
    close_node(ign);
}

static void test_errors_and_busy(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\","
                                   "\"size\":1048576}");
    static const struct {
        const char *name;
        uint32_t g;
        const char *message;
    } bad[] = {
        { "", 0, "Bitmap name cannot be empty" },
        { "x", 1000, "Granularity must be power of 2 and at least 512" },
        { "x", 256, "Granularity must be power of 2 and at least 512" },
        { "b", 0, "Bitmap already exists: b" },
    };
    BdrvDirtyBitmap *bm = add_ok(bs, "b", 0);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        g_assert_null(bdrv_dirty_bitmap_create(bs, bad[i].name, bad[i].g, false, &err));
        g_assert_cmpstr(err->message, ==, bad[i].message);
    }
    g_autofree char *long_name = g_strnfill(BDRV_DIRTY_BITMAP_MAX_NAME + 1, 'a');
    g_autoptr(GError) lerr = NULL;
    g_assert_null(bdrv_dirty_bitmap_create(bs, long_name, 0, false, &lerr));
    g_assert_true(g_str_has_prefix(lerr->message, "Bitmap name too long: aaa"));
    long_name[BDRV_DIRTY_BITMAP_MAX_NAME] = '\0';
    add_ok(bs, long_name, 1u << 31);

    /* Busy: every change is refused with QEMU's text. */
    BdrvDirtyBitmap *other = add_ok(bs, "o", 512);
    bdrv_dirty_bitmap_set_busy(bm, true);
    const char *busy = "Bitmap 'b' is currently in use by another operation and cannot be used";
    GError *err = NULL;
    g_assert_false(bdrv_dirty_bitmap_remove(bm, &err));
    g_assert_cmpstr(err->message, ==, busy);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_clear(bm, &err));
    g_assert_cmpstr(err->message, ==, busy);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_set_enabled(bm, false, &err));
    g_assert_cmpstr(err->message, ==, busy);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_merge(bm, other, &err));
    g_assert_cmpstr(err->message, ==, busy);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_merge(other, bm, &err));
    g_assert_cmpstr(err->message, ==, busy);
    g_clear_error(&err);
    bdrv_dirty_bitmap_set_busy(bm, false);
    g_assert_true(bdrv_dirty_bitmap_remove(bm, NULL));
    g_assert_null(bdrv_dirty_bitmap_find(bs, "b"));
    g_assert_true(bdrv_dirty_bitmap_find(bs, "o") == other);
    /* The node frees the bitmaps left on it. */
    close_node(bs);
}

/* Inconsistent and read-only bitmaps (loaded from images): QEMU's checks. */
static void test_inconsistent_and_readonly(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\","
                                   "\"size\":1048576}");
    BdrvDirtyBitmap *bad = add_ok(bs, "bad", 65536);
    BdrvDirtyBitmap *ro = add_ok(bs, "ro", 65536);
    BdrvDirtyBitmap *other = add_ok(bs, "o", 65536);
    BdrvDirtyBitmapInfo info;
    GError *err = NULL;

    bdrv_dirty_bitmap_set_persistent(bad, true);
    bdrv_dirty_bitmap_set_inconsistent(bad);
    bdrv_dirty_bitmap_get_info(bad, &info);
    g_assert_true(info.inconsistent && info.persistent);
    g_assert_false(info.recording);
    const char *inc = "Bitmap 'bad' is inconsistent and cannot be used";
    g_assert_false(bdrv_dirty_bitmap_check(bad, &err));
    g_assert_cmpstr(err->message, ==, inc);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_clear(bad, &err));
    g_assert_cmpstr(err->message, ==, inc);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_set_enabled(bad, true, &err));
    g_assert_cmpstr(err->message, ==, inc);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_merge(other, bad, &err));
    g_assert_cmpstr(err->message, ==, inc);
    g_clear_error(&err);

    bdrv_dirty_bitmap_set_readonly(ro, true);
    const char *rot = "Bitmap 'ro' is readonly and cannot be modified";
    g_assert_false(bdrv_dirty_bitmap_clear(ro, &err));
    g_assert_cmpstr(err->message, ==, rot);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_merge(ro, other, &err));
    g_assert_cmpstr(err->message, ==, rot);
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_remove(ro, &err));
    g_assert_cmpstr(err->message, ==, rot);
    g_clear_error(&err);
    /* Reading it, enabling and disabling it are allowed. */
    g_assert_true(bdrv_dirty_bitmap_check(ro, NULL));
    g_assert_true(bdrv_dirty_bitmap_set_enabled(ro, false, NULL));
    g_assert_true(bdrv_dirty_bitmap_merge(other, ro, NULL));

    /* An inconsistent bitmap can be removed. */
    g_assert_true(bdrv_dirty_bitmap_remove(bad, NULL));
    g_assert_null(bdrv_dirty_bitmap_find(bs, "bad"));
    close_node(bs);
}

static void test_merge_granularities(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\","
                                   "\"size\":1048576}");
    BlockDriverState *small = open_ok("{\"driver\":\"null-co\",\"node-name\":\"s\","
                                      "\"size\":524288}");
    BdrvDirtyBitmap *coarse = add_ok(bs, "c", 65536), *fine = add_ok(bs, "f", 512);
    BdrvDirtyBitmap *fine2 = add_ok(bs, "f2", 512), *s = add_ok(small, "s", 512);

    bdrv_dirty_bitmap_set_range(fine, 1000, 10);
    bdrv_dirty_bitmap_set_range(fine2, 200000, 1);
    BdrvDirtyBitmap *both[] = { fine, fine2 };
    g_assert_true(bdrv_dirty_bitmap_merge_many(coarse, both, 2, NULL));
    assert_runs(coarse, 0, 1048576, "D:65536 C:131072 D:65536 C:786432");
    /* Coarse into fine: every byte of the coarse bits. */
    g_assert_true(bdrv_dirty_bitmap_merge(fine, coarse, NULL));
    g_assert_cmpuint(count_of(fine), ==, 2 * 65536);
    /* Different sizes: QEMU's text, and nothing merged from the good one. */
    BdrvDirtyBitmap *mixed[] = { fine2, s };
    g_autoptr(GError) err = NULL;
    bdrv_dirty_bitmap_set_range(s, 0, 1);
    g_assert_false(bdrv_dirty_bitmap_merge_many(fine, mixed, 2, &err));
    g_assert_cmpstr(err->message, ==, "Bitmaps are of different sizes (destination size is "
                    "1048576, source size is 524288) and can't be merged");
    g_assert_cmpuint(count_of(fine), ==, 2 * 65536);
    g_assert_true(bdrv_dirty_bitmap_get_node(s) == small);
    close_node(bs);
    close_node(small);
}

static void test_too_many_bits(void)
{
    /* 8 PiB at 512 bytes a bit is 2^44 bits: refused with a usable hint. */
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\","
                                   "\"size\":9007199254740992}");
    g_autoptr(GError) err = NULL;
    g_assert_null(bdrv_dirty_bitmap_create(bs, "b", 512, false, &err));
    g_assert_nonnull(strstr(err->message, "choose a granularity of at least"));
    /* 1 MiB bits: 2^33 of them fit. */
    g_clear_error(&err);
    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_create(bs, "b", 1u << 20, false, &err);
    g_assert_no_error(err);
    bdrv_dirty_bitmap_set_range(bm, (UINT64_C(1) << 53) - 1, 1);
    g_assert_cmpuint(count_of(bm), ==, 1u << 20);
    close_node(bs);
}

static void test_node_resize(void)
{
    /* What block_resize does to bitmaps, as qemu-storage-daemon 7.2 does it:
     * a larger node adds clean bits, a smaller one drops the bits past it. */
    BlockDriverState *bs = open_ok("{\"driver\":\"null-co\",\"node-name\":\"n\","
                                   "\"size\":4194304}");
    BdrvDirtyBitmap *bm = add_ok(bs, "b", 65536), *fine = add_ok(bs, "f", 512);
    BdrvDirtyBitmapInfo info;

    bdrv_dirty_bitmap_set_range(bm, 4194304 - 1, 1);
    bdrv_dirty_bitmap_set_range(fine, 1 << 20, 1);
    g_assert_true(bdrv_dirty_bitmaps_resize(bs, 8388608, NULL));
    bdrv_dirty_bitmap_get_info(bm, &info);
    g_assert_cmpuint(info.size, ==, 8388608);
    g_assert_cmpuint(info.count, ==, 65536);
    assert_runs(bm, 4194304 - 65536, 2 * 65536, "D:65536 C:65536");
    g_assert_true(bdrv_dirty_bitmaps_resize(bs, 1 << 20, NULL));
    g_assert_cmpuint(count_of(bm), ==, 0);
    g_assert_cmpuint(count_of(fine), ==, 0);
    bdrv_dirty_bitmap_set_range(fine, (1 << 20) - 1, 100);
    g_assert_cmpuint(count_of(fine), ==, 512);
    /* A size a bitmap cannot cover: refused, nothing changed. */
    g_autoptr(GError) err = NULL;
    g_assert_false(bdrv_dirty_bitmaps_resize(bs, UINT64_C(1) << 50, &err));
    g_assert_nonnull(strstr(err->message, "Bitmap 'f' of node 'n' cannot cover"));
    bdrv_dirty_bitmap_get_info(bm, &info);
    g_assert_cmpuint(info.size, ==, 1 << 20);
    close_node(bs);
}

typedef struct {
    BlockDriverState *bs;
    unsigned index;
} Writer;

static gpointer writer_thread(gpointer opaque)
{
    Writer *w = opaque;
    GMainContext *ctx = push_new_context();
    uint8_t buf[512];

    memset(buf, 0xaa, sizeof(buf));
    for (unsigned i = 0; i < 200; i++) {
        Result r = { 0 };
        /* Thread k writes bit k of every group of 8: disjoint 4 KiB bits. */
        uint64_t off = ((uint64_t) i * 8 + w->index) * 4096;
        g_assert_cmpint(do_write(w->bs, off, buf, sizeof(buf), 0, &r), ==, 0);
        result_clear(&r);
    }
    pop_context(ctx);
    return NULL;
}

static void test_threads(void)
{
    BlockDriverState *bs = open_ok("{\"driver\":\"memory\",\"node-name\":\"m\","
                                   "\"size\":8388608}");
    BdrvDirtyBitmap *bm = add_ok(bs, "b", 4096);
    Writer w[4];
    GThread *t[4];

    for (unsigned i = 0; i < 4; i++) {
        w[i] = (Writer) { bs, i };
        t[i] = g_thread_new("writer", writer_thread, &w[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        g_thread_join(t[i]);
    }
    g_assert_cmpuint(count_of(bm), ==, 4 * 200 * 4096);
    for (unsigned i = 0; i < 200; i++) {
        uint64_t run;
        g_assert_true(bdrv_dirty_bitmap_status(bm, (uint64_t) i * 8 * 4096, 8 * 4096, &run));
        g_assert_cmpuint(run, ==, 4 * 4096);
    }
    close_node(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sparse-bitmap/ranges-random", test_ranges_random);
    g_test_add_func("/sparse-bitmap/edges", test_edges);
    g_test_add_func("/sparse-bitmap/merge", test_merge);
    g_test_add_func("/sparse-bitmap/big", test_big);
    g_test_add_func("/sparse-bitmap/resize", test_resize);
    g_test_add_func("/dirty-bitmap/granularity-rounding", test_granularity_rounding);
    g_test_add_func("/dirty-bitmap/inconsistent-and-readonly", test_inconsistent_and_readonly);
    g_test_add_func("/dirty-bitmap/changes-mark", test_changes_mark);
    g_test_add_func("/dirty-bitmap/errors-and-busy", test_errors_and_busy);
    g_test_add_func("/dirty-bitmap/merge-granularities", test_merge_granularities);
    g_test_add_func("/dirty-bitmap/too-many-bits", test_too_many_bits);
    g_test_add_func("/dirty-bitmap/node-resize", test_node_resize);
    g_test_add_func("/dirty-bitmap/threads", test_threads);
    return run_block_tests(NULL);
}
