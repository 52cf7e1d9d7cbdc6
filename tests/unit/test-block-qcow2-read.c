/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 core reading images that qemu-img and qemu-io made: v2 and v3,
 * every cluster size from 512 bytes to 2 MiB, zero clusters, discarded
 * ranges, compressed images (qemu-img convert -c) and backing chains; every
 * read must equal what `qemu-img convert -O raw` makes of the same image.
 */
#include "qcow2-test-util.h"

typedef struct {
    const char *compat;
    uint32_t cluster;
} ReadCase;

/* Data, a pattern across cluster boundaries, zeroes and a discard. */
static void fill_image(const char *name)
{
    qt_run("qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 0xcd 1050000 300000' "
           "-c 'write -P 0x11 3m 4k' -c 'write -z 20480 8k' -c 'write -P 0x22 5m 1m' "
           "-c 'discard 5m 512k' -c 'write -z 7m 1m' '%s'", name);
}

static void test_read_case(gconstpointer data)
{
    const ReadCase *c = data;
    g_autoptr(GError) err = NULL;
    g_autofree char *name = g_strdup_printf("r-%s-%u.qcow2", c->compat, c->cluster);
    g_autofree uint8_t *got = NULL, *want = NULL;
    QtImage img;
    gsize len;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u '%s' 9M",
           c->compat, c->cluster, name);
    fill_image(name);
    g_assert_nonnull(qt_open(&img, name, false, &err));
    g_assert_no_error(err);
    g_assert_cmpint(qcow2_version(img.q), ==, g_str_equal(c->compat, "1.1") ? 3 : 2);
    g_assert_cmpuint(qcow2_cluster_size(img.q), ==, c->cluster);
    got = qt_read_all(img.q);
    want = qt_convert_raw(name, &len);
    g_assert_cmpuint(len, ==, qcow2_virtual_size(img.q));
    qt_assert_same(got, want, len);

    /* Unaligned reads straddling clusters. */
    for (uint64_t off = 1; off + 70001 < len; off += 1234567) {
        g_autofree uint8_t *part = g_malloc(70001);
        g_assert_cmpint(qcow2_read(img.q, off, part, 70001, &err), ==, 0);
        qt_assert_same(part, want + off, 70001);
    }
    qt_close(&img);
}

static void test_map(void)
{
    g_autoptr(GError) err = NULL;
    QtImage img;
    uint64_t pnum;
    Qcow2MapType t;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 map.qcow2 4M");
    qt_run("qemu-io -f qcow2 -c 'write -P 1 64k 128k' -c 'write -z 1m 64k' map.qcow2");
    g_assert_nonnull(qt_open(&img, "map.qcow2", false, &err));
    g_assert_cmpint(qcow2_map(img.q, 0, 4 << 20, &pnum, &t, &err), ==, 0);
    g_assert_cmpint(t, ==, QCOW2_MAP_UNALLOCATED);
    g_assert_cmpuint(pnum, ==, 64 << 10);
    g_assert_cmpint(qcow2_map(img.q, 64 << 10, 4 << 20, &pnum, &t, &err), ==, 0);
    g_assert_cmpint(t, ==, QCOW2_MAP_DATA);
    g_assert_cmpuint(pnum, ==, 128 << 10);
    g_assert_cmpint(qcow2_map(img.q, 1 << 20, 64 << 10, &pnum, &t, &err), ==, 0);
    g_assert_cmpint(t, ==, QCOW2_MAP_ZERO);
    g_assert_cmpuint(pnum, ==, 64 << 10);
    qt_close(&img);
}

static void test_compressed(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *got = NULL, *want = NULL;
    QtImage img;
    uint64_t pnum;
    Qcow2MapType t;
    gsize len;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f raw c.raw 3M");
    qt_run("qemu-io -f raw -c 'write -P 0x5a 0 1m' -c 'write -P 0x33 1500000 70000' c.raw");
    /* Text-like data compresses well; random data is stored as is. */
    qt_run("seq 1 60000 | dd of=c.raw bs=64k seek=32 conv=notrunc status=none");
    qt_run("head -c 200000 /dev/urandom | dd of=c.raw bs=1k seek=2500 conv=notrunc status=none");
    qt_run("qemu-img convert -c -O qcow2 c.raw c.qcow2");
    g_assert_nonnull(qt_open(&img, "c.qcow2", false, &err));
    g_assert_cmpint(qcow2_map(img.q, 0, 1 << 20, &pnum, &t, &err), ==, 0);
    g_assert_cmpint(t, ==, QCOW2_MAP_COMPRESSED);
    got = qt_read_all(img.q);
    want = qt_convert_raw("c.qcow2", &len);
    qt_assert_same(got, want, len);
    qt_close(&img);
}

static void test_backing_chain(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *got = NULL, *want = NULL;
    QtImage base, mid, top;
    Qcow2File fbase, fmid;
    gsize len;

    if (!qt_have_tools()) {
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o compat=0.10 b0.qcow2 6M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x01 0 6m' b0.qcow2");
    qt_run("qemu-img create -q -f qcow2 -b b0.qcow2 -F qcow2 -o cluster_size=4k b1.qcow2 6M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x02 1m 1m' -c 'write -z 3m 4k' b1.qcow2");
    /* The top is larger than its backing: the tail reads as zeroes. */
    qt_run("qemu-img create -q -f qcow2 -b b1.qcow2 -F qcow2 b2.qcow2 8M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x03 1536k 100k' -c 'write -P 0x04 7m 4k' b2.qcow2");

    g_assert_nonnull(qt_open(&base, "b0.qcow2", false, &err));
    g_assert_nonnull(qt_open(&mid, "b1.qcow2", false, &err));
    g_assert_nonnull(qt_open(&top, "b2.qcow2", false, &err));
    g_assert_cmpstr(qcow2_backing_file(top.q), ==, "b1.qcow2");
    g_assert_cmpstr(qcow2_backing_format(top.q), ==, "qcow2");
    fbase = qcow2_as_file(base.q);
    fmid = qcow2_as_file(mid.q);
    qcow2_set_backing(mid.q, &fbase);
    qcow2_set_backing(top.q, &fmid);
    got = qt_read_all(top.q);
    want = qt_convert_raw("b2.qcow2", &len);
    g_assert_cmpuint(len, ==, 8 << 20);
    qt_assert_same(got, want, len);
    qt_close(&top);
    qt_close(&mid);
    qt_close(&base);
}

static const ReadCase cases[] = {
    { "0.10", 512 }, { "0.10", 65536 }, { "1.1", 512 }, { "1.1", 4096 },
    { "1.1", 65536 }, { "1.1", 2097152 }, { "0.10", 2097152 },
};

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_setup_dir();
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/block/qcow2/read/compat-%s/cluster-%u",
                                                cases[i].compat, cases[i].cluster);
        g_test_add_data_func(path, &cases[i], test_read_case);
    }
    g_test_add_func("/block/qcow2/read/map", test_map);
    g_test_add_func("/block/qcow2/read/compressed", test_compressed);
    g_test_add_func("/block/qcow2/read/backing-chain", test_backing_chain);
    ret = g_test_run();
    qt_remove_dir();
    return ret;
}
