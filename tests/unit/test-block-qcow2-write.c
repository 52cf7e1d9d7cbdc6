/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 core writing: random writes, zeroes and discards on images
 * qemu-img made (v2 and v3, small and large clusters, with and without a
 * backing file, compressed), compared after every step with an in-memory
 * model; then `qemu-img check` must find no errors and no leaks, `qemu-img
 * compare` must equal the model, and qemu-io must read our patterns back.
 * 512-byte clusters make the refcount table grow several times.
 */
#include "qcow2-test-util.h"

typedef struct {
    const char *name;
    const char *compat;
    uint32_t cluster;
    bool backing;
    bool compressed;
    guint steps;
} WriteCase;

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

static void save_model(const char *name, const uint8_t *model, gsize len)
{
    g_autofree char *path = qt_path(name);
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(path, (const char *) model, len, &err));
}

static void make_images(const WriteCase *c, uint8_t *model)
{
    g_autofree char *img = g_strdup_printf("%s.qcow2", c->name);
    gsize len;
    g_autofree uint8_t *raw = NULL;

    if (c->backing) {
        qt_run("qemu-img create -q -f qcow2 -o compat=%s '%s-base.qcow2' 6M", c->compat, c->name);
        qt_run("qemu-io -f qcow2 -c 'write -P 0x77 0 6m' -c 'write -z 2m 64k' '%s-base.qcow2'",
               c->name);
        qt_run("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u -b '%s-base.qcow2' "
               "-F qcow2 '%s' %u", c->compat, c->cluster, c->name, img, DISK);
    } else if (c->compressed) {
        qt_run("qemu-img create -q -f raw '%s.src' %u", c->name, DISK);
        qt_run("seq 1 900000 | dd of='%s.src' conv=notrunc status=none", c->name);
        qt_run("qemu-img convert -c -O qcow2 -o compat=%s,cluster_size=%u '%s.src' '%s'",
               c->compat, c->cluster, c->name, img);
    } else {
        qt_run("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u '%s' %u",
               c->compat, c->cluster, img, DISK);
        qt_run("qemu-io -f qcow2 -c 'write -P 0x42 100k 300k' '%s'", img);
    }
    raw = qt_convert_raw(img, &len);
    g_assert_cmpuint(len, ==, DISK);
    memcpy(model, raw, DISK);
}

static void open_case(const WriteCase *c, QtImage *top, QtImage *base, Qcow2File *fbase)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *img = g_strdup_printf("%s.qcow2", c->name);

    if (c->backing) {
        g_autofree char *b = g_strdup_printf("%s-base.qcow2", c->name);
        g_assert_nonnull(qt_open(base, b, false, &err));
        *fbase = qcow2_as_file(base->q);
    }
    g_assert_nonnull(qt_open(top, img, true, &err));
    g_assert_no_error(err);
    if (c->backing) {
        qcow2_set_backing(top->q, fbase);
    }
}

static void test_write_case(gconstpointer data)
{
    const WriteCase *c = data;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *model = g_malloc(DISK);
    g_autofree uint8_t *buf = g_malloc(DISK);
    g_autofree char *img = g_strdup_printf("%s.qcow2", c->name);
    g_autofree char *ref = g_strdup_printf("%s.ref", c->name);
    GRand *rand = g_rand_new_with_seed(c->cluster * 7 + c->steps);
    QtImage top = { -1, NULL }, base = { -1, NULL };
    Qcow2File fbase;

    if (!qt_have_tools()) {
        g_rand_free(rand);
        return;
    }
    make_images(c, model);
    open_case(c, &top, &base, &fbase);

    for (guint step = 0; step < c->steps; step++) {
        guint op = g_rand_int_range(rand, 0, 10);
        /* Mostly small requests near each other, sometimes large ones. */
        uint32_t len = g_rand_boolean(rand) ? g_rand_int_range(rand, 1, 3 * c->cluster + 2)
                                            : g_rand_int_range(rand, 1, 300000);
        uint32_t off = g_rand_int_range(rand, 0, DISK - len);

        g_test_message("step %u: op %u at %u, %u bytes", step, op, off, len);

        if (op < 5) {
            uint8_t pattern = g_rand_int_range(rand, 1, 256);
            memset(model + off, pattern, len);
            g_assert_cmpint(qcow2_write(top.q, off, model + off, len, &err), ==, 0);
        } else if (op < 7) {
            bool unmap = g_rand_boolean(rand);
            memset(model + off, 0, len);
            g_assert_cmpint(qcow2_write_zeroes(top.q, off, len, unmap, &err), ==, 0);
        } else if (op < 8) {
            /* Discarded clusters read as undefined data: take the new view. */
            g_assert_cmpint(qcow2_discard(top.q, off, len, &err), ==, 0);
            g_assert_cmpint(qcow2_read(top.q, off, model + off, len, &err), ==, 0);
        } else {
            g_assert_cmpint(qcow2_read(top.q, off, buf, len, &err), ==, 0);
            qt_assert_same(buf, model + off, len);
        }
        g_assert_no_error(err);
    }
    g_assert_cmpint(qcow2_read(top.q, 0, buf, DISK, &err), ==, 0);
    qt_assert_same(buf, model, DISK);
    g_assert_cmpint(qcow2_flush(top.q, &err), ==, 0);
    qt_close(&top);
    if (c->backing) {
        qt_close(&base);
    }

    check_clean(img);
    save_model(ref, model, DISK);
    qt_run("qemu-img compare -f qcow2 -F raw '%s' '%s'", img, ref);

    /* A pattern of ours read back by qemu-io. */
    open_case(c, &top, &base, &fbase);
    memset(buf, 0xe5, 3 * c->cluster + 100);
    g_assert_cmpint(qcow2_write(top.q, 5000, buf, 3 * c->cluster + 100, &err), ==, 0);
    qt_close(&top);
    if (c->backing) {
        qt_close(&base);
    }
    qt_run("qemu-io -f qcow2 -c 'read -P 0xe5 5000 %u' '%s'", 3 * c->cluster + 100, img);
    check_clean(img);
    g_rand_free(rand);
}

/* Two writers racing for the same clusters, and readers racing them. */
typedef struct {
    Qcow2 *q;
    guint id;
} RaceArg;

static gpointer race_thread(gpointer data)
{
    RaceArg *a = data;
    uint8_t buf[4096];

    for (guint i = 0; i < 400; i++) {
        g_autoptr(GError) err = NULL;
        uint64_t off = (uint64_t) (i % 64) * 65536 + (a->id % 2) * 32768;
        if (a->id < 2) {
            memset(buf, 0x10 + a->id, sizeof(buf));
            g_assert_cmpint(qcow2_write(a->q, off, buf, sizeof(buf), &err), ==, 0);
        } else {
            g_assert_cmpint(qcow2_read(a->q, off, buf, sizeof(buf), &err), ==, 0);
            /* Never written, or the bytes of the one writer of this range:
             * never another cluster's data. A read racing an in-place write
             * of the same bytes may see part of it (the page cache does not
             * make pread and pwrite atomic to each other, nor does NBD). */
            for (guint j = 0; j < sizeof(buf); j++) {
                g_assert_true(buf[j] == 0 || buf[j] == 0x10 + a->id % 2);
            }
        }
    }
    return NULL;
}

static void test_concurrent(void)
{
    g_autoptr(GError) err = NULL;
    QtImage img;
    GThread *threads[4];
    RaceArg args[4];

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 race.qcow2 8M");
    g_assert_nonnull(qt_open(&img, "race.qcow2", true, &err));
    for (guint i = 0; i < 4; i++) {
        args[i] = (RaceArg) { img.q, i };
        threads[i] = g_thread_new("race", race_thread, &args[i]);
    }
    for (guint i = 0; i < 4; i++) {
        g_thread_join(threads[i]);
    }
    qt_close(&img);
    check_clean("race.qcow2");
    qt_run("qemu-io -f qcow2 -c 'read -P 0x10 0 4k' -c 'read -P 0x11 32k 4k' race.qcow2");
}

/* A cluster being read directly is not handed out again until the read is done. */
static void test_direct_read_defers_free(void)
{
    g_autoptr(GError) err = NULL;
    uint8_t buf[4096];
    uint64_t host, host2, host3;
    QtImage img;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o cluster_size=4k direct.qcow2 1M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x31 0 4k' direct.qcow2");
    g_assert_nonnull(qt_open(&img, "direct.qcow2", true, &err));
    /* Not cached yet: no direct read. */
    g_assert_false(qcow2_direct_read_begin(img.q, 0, 4096, &host));
    g_assert_cmpint(qcow2_read(img.q, 0, buf, sizeof(buf), &err), ==, 0);
    g_assert_true(qcow2_direct_read_begin(img.q, 0, 4096, &host));
    g_assert_false(qcow2_direct_read_begin(img.q, 4096, 4096, &host2));  /* unallocated */

    g_assert_cmpint(qcow2_discard(img.q, 0, 4096, &err), ==, 0);
    for (guint i = 1; i < 40; i++) {
        memset(buf, i, sizeof(buf));
        g_assert_cmpint(qcow2_write(img.q, i * 4096, buf, sizeof(buf), &err), ==, 0);
        g_assert_true(qcow2_direct_read_begin(img.q, i * 4096, 4096, &host2));
        g_assert_cmpuint(host2, !=, host);
        qcow2_direct_read_done(img.q);
    }
    g_assert_cmpint(qt_pread(GINT_TO_POINTER(img.fd), host, buf, 4096), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x31);
    qcow2_direct_read_done(img.q);

    /* Once the read is over, the cluster is free for the next allocation. */
    memset(buf, 0x77, sizeof(buf));
    g_assert_cmpint(qcow2_write(img.q, 900 * 1024, buf, sizeof(buf), &err), ==, 0);
    g_assert_true(qcow2_direct_read_begin(img.q, 900 * 1024, 4096, &host3));
    qcow2_direct_read_done(img.q);
    qt_close(&img);
    check_clean("direct.qcow2");
    qt_run("qemu-io -f qcow2 -c 'read -P 0 0 4k' -c 'read -P 0x77 900k 4k' direct.qcow2");
}

static const WriteCase cases[] = {
    { "v3-64k", "1.1", 65536, false, false, 600 },
    { "v2-64k", "0.10", 65536, false, false, 600 },
    { "v3-512", "1.1", 512, false, false, 400 },
    { "v2-512", "0.10", 512, false, false, 300 },
    { "v3-2m", "1.1", 2097152, false, false, 100 },
    { "v3-4k-backing", "1.1", 4096, true, false, 500 },
    { "v2-64k-backing", "0.10", 65536, true, false, 400 },
    { "v3-64k-compressed", "1.1", 65536, false, true, 300 },
};

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_setup_dir();
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/block/qcow2/write/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_write_case);
    }
    g_test_add_func("/block/qcow2/write/concurrent", test_concurrent);
    g_test_add_func("/block/qcow2/write/direct-read-defers-free", test_direct_read_defers_free);
    ret = g_test_run();
    qt_remove_dir();
    return ret;
}
