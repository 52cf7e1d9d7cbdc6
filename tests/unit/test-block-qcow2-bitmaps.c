/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 core's bitmaps extension against qemu-img: random bitmaps
 * stored by the core (small clusters, so a bitmap spans several data
 * clusters and its table several clusters) read back bit for bit after a
 * reopen, and read by qemu-img too (it merges them into a bitmap of its own,
 * which the core then reads back equal); `qemu-img check` stays clean after
 * every store and remove; the backing file name and the other header
 * extensions survive the header rewrites; in-use flags at a writable open;
 * a malformed extension refuses the open; an extension another program
 * invalidated is ignored; a crash after any number of writes of a store
 * leaves either the old bitmaps or the new, and leaked clusters at worst.
 */
#include "qcow2-test-util.h"
#include "block/qcow2-bitmaps.h"

#define DISK (8u << 20)

static void check_clean(const char *name)
{
    g_autofree char *out = NULL;
    int status = qt_sh(&out, "qemu-img check '%s'", name);

    if (status != 0) {
        g_error("qemu-img check %s exited %d:\n%s", name, status, out);
    }
    g_assert_nonnull(strstr(out, "No errors were found"));
}

static BerthBitmap *random_bits(uint64_t nbits, guint32 seed)
{
    BerthBitmap *b = berth_bitmap_new(nbits);
    GRand *r = g_rand_new_with_seed(seed);

    for (guint i = 0; i < 200; i++) {
        uint64_t start = g_rand_int_range(r, 0, (gint32) nbits);
        uint64_t len = g_rand_int_range(r, 1, i % 10 == 0 ? 5000 : 40);
        berth_bitmap_set(b, start, len);
    }
    berth_bitmap_set(b, nbits - 1, 1);          /* the last bit too */
    g_rand_free(r);
    return b;
}

static void assert_bits_equal(const BerthBitmap *a, const BerthBitmap *b)
{
    g_assert_cmpuint(berth_bitmap_size(a), ==, berth_bitmap_size(b));
    g_assert_cmpuint(berth_bitmap_count(a), ==, berth_bitmap_count(b));
    for (uint64_t i = berth_bitmap_next_set(a, 0); i < berth_bitmap_size(a);
         i = berth_bitmap_next_set(a, i + 1)) {
        g_assert_true(berth_bitmap_get(b, i));
    }
}

/* The index of the directory entry `name`, or -1. */
static int find(Qcow2 *q, const char *name, Qcow2BitmapInfo *out)
{
    g_autoptr(GArray) list = qcow2_bitmaps_list(q);

    for (guint i = 0; i < list->len; i++) {
        Qcow2BitmapInfo *info = &g_array_index(list, Qcow2BitmapInfo, i);
        if (strcmp(info->name, name) == 0) {
            if (out) {
                *out = *info;
                out->name = g_strdup(info->name);
            }
            return (int) i;
        }
    }
    return -1;
}

static BerthBitmap *load(Qcow2 *q, const char *name)
{
    g_autoptr(GError) err = NULL;
    int i = find(q, name, NULL);

    g_assert_cmpint(i, >=, 0);
    BerthBitmap *b = qcow2_bitmap_load(q, (guint) i, &err);
    g_assert_no_error(err);
    return b;
}

static void store(Qcow2 *q, const Qcow2BitmapStore *v, guint n)
{
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(qcow2_bitmaps_store(q, v, n, &err), ==, 0);
    g_assert_no_error(err);
}

static void test_round_trip(gconstpointer data)
{
    uint32_t cluster = GPOINTER_TO_UINT(data);
    g_autofree char *name = g_strdup_printf("rt-%u.qcow2", cluster);
    g_autoptr(GError) err = NULL;
    QtImage img;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o cluster_size=%u '%s' %u", cluster, name, DISK);
    g_assert_nonnull(qt_open(&img, name, true, &err));
    /* 512-byte granules of 8 MiB: 2 KiB of bits, four 512-byte clusters. */
    g_autoptr(BerthBitmap) fine = random_bits(DISK / 512, 1);
    g_autoptr(BerthBitmap) coarse = random_bits(DISK / 65536, 2);
    Qcow2BitmapStore v[] = {
        { .name = "fine", .granularity = 512, .enabled = true, .bits = fine },
        { .name = "coarse", .granularity = 65536, .enabled = false, .bits = coarse },
    };
    store(img.q, v, 2);
    qt_close(&img);
    check_clean(name);

    g_assert_nonnull(qt_open(&img, name, false, &err));
    g_autoptr(BerthBitmap) f2 = load(img.q, "fine");
    g_autoptr(BerthBitmap) c2 = load(img.q, "coarse");
    assert_bits_equal(fine, f2);
    assert_bits_equal(f2, fine);
    assert_bits_equal(coarse, c2);
    assert_bits_equal(c2, coarse);
    Qcow2BitmapInfo info;
    g_assert_cmpint(find(img.q, "coarse", &info), ==, 1);
    g_assert_false(info.enabled);
    g_assert_false(info.in_use);
    g_assert_cmpuint(info.granularity, ==, 65536);
    qcow2_bitmap_info_clear(&info);
    qt_close(&img);

    /* qemu-img decodes what we wrote: its merge of "fine" equals ours. */
    qt_run("qemu-img bitmap --add -g 512 '%s' copy", name);
    qt_run("qemu-img bitmap --merge fine '%s' copy", name);
    check_clean(name);
    g_assert_nonnull(qt_open(&img, name, true, &err));
    g_autoptr(BerthBitmap) copy = load(img.q, "copy");
    assert_bits_equal(fine, copy);
    assert_bits_equal(copy, fine);
    /* A writable open marked them all in use, in the image. */
    g_assert_cmpint(find(img.q, "copy", &info), ==, 2);
    g_assert_true(info.in_use);
    g_assert_false(info.stale);
    qcow2_bitmap_info_clear(&info);
    g_autofree char *out = NULL;
    g_assert_cmpint(qt_sh(&out, "qemu-img info -U '%s'", name), ==, 0);
    g_assert_nonnull(strstr(out, "in-use"));

    /* Remove one; store the others again (in use cleared). */
    g_assert_cmpint(qcow2_bitmaps_remove(img.q, "fine", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(find(img.q, "fine", NULL), ==, -1);
    Qcow2BitmapStore again[] = {
        { .name = "copy", .granularity = 512, .enabled = true, .bits = copy },
        { .name = "coarse", .granularity = 65536, .enabled = true, .bits = coarse },
    };
    store(img.q, again, 2);
    qt_close(&img);
    check_clean(name);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qt_sh(&out, "qemu-img info '%s'", name), ==, 0);
    g_assert_null(strstr(out, "in-use"));
    g_assert_null(strstr(out, "name: fine"));
    g_assert_nonnull(strstr(out, "name: copy"));

    /* Removing the last ones drops the extension. */
    g_assert_nonnull(qt_open(&img, name, true, &err));
    g_assert_cmpint(qcow2_bitmaps_remove(img.q, "copy", &err), ==, 0);
    g_assert_cmpint(qcow2_bitmaps_remove(img.q, "coarse", &err), ==, 0);
    g_assert_no_error(err);
    qt_close(&img);
    check_clean(name);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qt_sh(&out, "qemu-img info '%s'", name), ==, 0);
    g_assert_null(strstr(out, "bitmaps:"));
}

static void test_backing_name_kept(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    QtImage img;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 base.qcow2 8M");
    qt_run("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
    g_assert_nonnull(qt_open(&img, "top.qcow2", true, &err));
    g_autoptr(BerthBitmap) bits = random_bits(DISK / 65536, 3);
    Qcow2BitmapStore v = { .name = "b", .granularity = 65536, .enabled = true, .bits = bits };
    store(img.q, &v, 1);
    qt_close(&img);
    check_clean("top.qcow2");
    g_assert_cmpint(qt_sh(&out, "qemu-img info --output=json top.qcow2"), ==, 0);
    g_assert_nonnull(strstr(out, "\"backing-filename\": \"base.qcow2\""));
    g_assert_nonnull(strstr(out, "\"backing-filename-format\": \"qcow2\""));
    g_assert_nonnull(strstr(out, "\"name\": \"b\""));
    g_assert_nonnull(qt_open(&img, "top.qcow2", false, &err));
    g_assert_cmpstr(qcow2_backing_file(img.q), ==, "base.qcow2");
    g_autoptr(BerthBitmap) back = load(img.q, "b");
    assert_bits_equal(bits, back);
    qt_close(&img);
}

/* Overwrite 8 bytes of a file. */
static void poke64(const char *name, uint64_t offset, uint64_t value)
{
    g_autofree char *path = qt_path(name);
    int fd = open(path, O_WRONLY);
    uint64_t be = GUINT64_TO_BE(value);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, &be, 8, (off_t) offset), ==, 8);
    close(fd);
}

/* Offset of the bitmaps extension's payload in the header. */
static uint64_t ext_offset(const char *name)
{
    g_autofree char *path = qt_path(name);
    g_autofree char *data = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    for (gsize i = 104; i + 8 < MIN(len, 65536); i += 8) {
        if (memcmp(data + i, "\x23\x85\x28\x75\x00\x00\x00\x18", 8) == 0) {
            return i + 8;
        }
    }
    g_error("no bitmaps extension in %s", name);
}

static void test_bad_and_stale(void)
{
    g_autoptr(GError) err = NULL;
    QtImage img;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 bad.qcow2 8M");
    qt_run("qemu-img bitmap --add bad.qcow2 b");
    /* The directory pointed at an unaligned offset. */
    poke64("bad.qcow2", ext_offset("bad.qcow2") + 16, 12345);
    g_assert_null(qt_open(&img, "bad.qcow2", false, &err));
    g_assert_nonnull(strstr(err->message, "invalid directory"));
    g_clear_error(&err);

    qt_run("qemu-img create -q -f qcow2 stale.qcow2 8M");
    qt_run("qemu-img bitmap --add stale.qcow2 b");
    poke64("stale.qcow2", 88, 0);           /* autoclear: bitmaps no longer vouched for */
    g_assert_nonnull(qt_open(&img, "stale.qcow2", true, &err));
    g_assert_cmpint(find(img.q, "b", NULL), ==, -1);
    g_autoptr(BerthBitmap) bits = random_bits(DISK / 65536, 4);
    Qcow2BitmapStore v = { .name = "n", .granularity = 65536, .enabled = true, .bits = bits };
    store(img.q, &v, 1);
    qt_close(&img);
    /* The stale directory's clusters leak (as with QEMU); nothing else. */
    g_autofree char *out = NULL;
    int status = qt_sh(&out, "qemu-img check stale.qcow2");
    g_assert_true(status == 0 || status == 3);
    g_assert_null(strstr(out, "ERROR"));
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qt_sh(&out, "qemu-img info stale.qcow2"), ==, 0);
    g_assert_nonnull(strstr(out, "name: n"));
    g_assert_null(strstr(out, "name: b\n"));
}

static void test_can_add(void)
{
    g_autoptr(GError) err = NULL;
    QtImage img;
    const char *names[] = { "a" };

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 8M");
    g_assert_nonnull(qt_open(&img, "v2.qcow2", true, &err));
    g_assert_false(qcow2_bitmaps_can_add(img.q, "b", 65536, names, 1, &err));
    g_assert_cmpstr(err->message, ==, "Cannot store dirty bitmaps in qcow2 v2 files");
    g_clear_error(&err);
    qt_close(&img);
    qt_run("qemu-img create -q -f qcow2 big.qcow2 64T");
    g_assert_nonnull(qt_open(&img, "big.qcow2", true, &err));
    g_assert_false(qcow2_bitmaps_can_add(img.q, "b", 512, names, 1, &err));
    g_assert_cmpstr(err->message, ==,
                    "Too much space will be occupied by the bitmap. Use larger granularity");
    g_clear_error(&err);
    g_assert_true(qcow2_bitmaps_can_add(img.q, "b", 65536, names, 1, &err));
    g_assert_no_error(err);
    qt_close(&img);
}

/* A file whose writes stop (fail, and every one after) once `left` ran out:
 * the image as a crash at that point would leave it. */
typedef struct {
    int fd;
    int left;
} CrashFile;

static int crash_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    CrashFile *c = opaque;

    if (c->left <= 0) {
        return -EIO;
    }
    c->left--;
    return qt_pwrite(GINT_TO_POINTER(c->fd), off, buf, len);
}

static int crash_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return qt_pread(GINT_TO_POINTER(((CrashFile *) opaque)->fd), off, buf, len);
}

static int crash_flush(void *opaque)
{
    return ((CrashFile *) opaque)->left > 0 ? 0 : -EIO;
}

static int64_t crash_length(void *opaque)
{
    return qt_length(GINT_TO_POINTER(((CrashFile *) opaque)->fd));
}

static void test_crash_at_every_write(void)
{
    g_autoptr(BerthBitmap) bits = random_bits(DISK / 4096, 5);
    g_autoptr(BerthBitmap) more = random_bits(DISK / 65536, 6);
    bool done = false;

    if (!qt_have_tools()) {
        return;
    }
    /* Closing a "crashed" image warns that it leaks: expected here. */
    GLogLevelFlags fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    qt_run("qemu-img create -q -f qcow2 -o cluster_size=4k pristine.qcow2 8M");
    qt_run("qemu-img bitmap --add -g 64k pristine.qcow2 old");
    qt_run("qemu-io -f qcow2 -c 'write 0 1m' pristine.qcow2 >/dev/null");
    for (int k = 0; k < 400 && !done; k++) {
        g_autoptr(GError) err = NULL;
        g_autofree char *out = NULL;
        g_autofree char *path = qt_path("crash.qcow2");

        qt_run("cp pristine.qcow2 crash.qcow2");
        CrashFile c = { .fd = open(path, O_RDWR), .left = k };
        Qcow2File f = {
            .opaque = &c, .pread = crash_pread, .pwrite = crash_pwrite,
            .flush = crash_flush, .length = crash_length,
        };
        g_assert_cmpint(c.fd, >=, 0);
        Qcow2 *q = qcow2_open(&f, true, 0, &err);
        if (q) {
            Qcow2BitmapStore v[] = {
                { .name = "new", .granularity = 4096, .enabled = true, .bits = bits },
                { .name = "old", .granularity = 65536, .enabled = false, .bits = more },
            };
            done = qcow2_bitmaps_store(q, v, 2, &err) == 0 && c.left > 0;
            qcow2_close(q);
            done = done && c.left > 0;
        }
        close(c.fd);
        /* Whatever the point: no errors (leaks at most), and either the
         * image's bitmaps as they were (maybe in use) or all the new ones. */
        int status = qt_sh(&out, "qemu-img check crash.qcow2");
        if ((status != 0 && status != 3) || strstr(out, "ERROR")) {
            g_error("crash after %d writes: qemu-img check exited %d:\n%s", k, status, out);
        }
        g_clear_pointer(&out, g_free);
        g_assert_cmpint(qt_sh(&out, "qemu-img info crash.qcow2"), ==, 0);
        g_assert_nonnull(strstr(out, "name: old"));
        if (strstr(out, "name: new")) {
            g_assert_null(strstr(out, "in-use"));
        }
        if (done) {
            g_test_message("the store took %d writes", k);
            g_assert_cmpint(status, ==, 0);
            g_assert_nonnull(strstr(out, "name: new"));
        }
    }
    g_assert_true(done);
    g_log_set_always_fatal(fatal);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_setup_dir();
    g_test_add_data_func("/block/qcow2/bitmaps/round-trip-512", GUINT_TO_POINTER(512),
                         test_round_trip);
    g_test_add_data_func("/block/qcow2/bitmaps/round-trip-64k", GUINT_TO_POINTER(65536),
                         test_round_trip);
    g_test_add_func("/block/qcow2/bitmaps/backing-name-kept", test_backing_name_kept);
    g_test_add_func("/block/qcow2/bitmaps/bad-and-stale", test_bad_and_stale);
    g_test_add_func("/block/qcow2/bitmaps/can-add", test_can_add);
    g_test_add_func("/block/qcow2/bitmaps/crash-at-every-write", test_crash_at_every_write);
    ret = g_test_run();
    qt_remove_dir();
    return ret;
}
