/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Malformed and unsupported qcow2 images: each refused at open with a clear
 * message, or failing reads with -EIO, never a crash or an out-of-bounds
 * access. The last test mutates a valid image at random (header, L1 and L2
 * tables, refcounts) in memory, thousands of times, then opens, reads and
 * writes it: whatever happens must be an error or success (run it under
 * ASan to see out-of-bounds accesses).
 */
#include "qcow2-test-util.h"

/* A growable image in memory, capped so a bad image cannot eat the RAM. */
typedef struct {
    uint8_t *data;
    size_t len;
} MemFile;

#define MEM_CAP (64u << 20)

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    MemFile *m = opaque;
    size_t n = off < m->len ? MIN(len, m->len - off) : 0;

    memcpy(buf, m->data + off * (n > 0), n);
    memset((uint8_t *) buf + n, 0, len - n);
    return 0;
}

static int mem_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    MemFile *m = opaque;

    if (off > MEM_CAP || len > MEM_CAP - off) {
        return -ENOSPC;
    }
    if (off + len > m->len) {
        m->data = g_realloc(m->data, off + len);
        memset(m->data + m->len, 0, off + len - m->len);
        m->len = off + len;
    }
    memcpy(m->data + off, buf, len);
    return 0;
}

static int mem_flush(void *opaque)
{
    return 0;
}

static int64_t mem_length(void *opaque)
{
    return ((MemFile *) opaque)->len;
}

static Qcow2File mem_file(MemFile *m)
{
    return (Qcow2File) { m, mem_pread, mem_pwrite, mem_flush, mem_length, NULL };
}

static MemFile load(const char *name)
{
    g_autofree char *path = qt_path(name);
    g_autoptr(GError) err = NULL;
    MemFile m = { 0 };
    gsize len;

    g_assert_true(g_file_get_contents(path, (char **) &m.data, &len, &err));
    m.len = len;
    return m;
}

static void put_be32(MemFile *m, size_t off, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(m->data + off, &v, 4);
}

static void put_be64(MemFile *m, size_t off, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(m->data + off, &v, 8);
}

static uint64_t get_be64(MemFile *m, size_t off)
{
    uint64_t v;
    memcpy(&v, m->data + off, 8);
    return GUINT64_FROM_BE(v);
}

/* Open must fail with a message containing `words`. */
static void assert_refused(MemFile *m, bool writable, const char *words)
{
    g_autoptr(GError) err = NULL;
    Qcow2File f = mem_file(m);
    Qcow2 *q = qcow2_open(&f, writable, 0, &err);

    g_assert_null(q);
    g_assert_nonnull(err);
    if (!strstr(err->message, words)) {
        g_error("expected '%s' in '%s'", words, err->message);
    }
    g_assert_null(strchr(err->message, '\n'));
}

static bool make_base(void)
{
    if (!qt_have_tools()) {
        return false;
    }
    qt_run("qemu-img create -q -f qcow2 -o compat=1.1 h.qcow2 4M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x61 0 1m' h.qcow2");
    return true;
}

typedef void (*Mutate)(MemFile *m);

static void refuse_case(Mutate mutate, bool writable, const char *words)
{
    MemFile m;

    if (!make_base()) {
        return;
    }
    m = load("h.qcow2");
    mutate(&m);
    assert_refused(&m, writable, words);
    g_free(m.data);
}

static void m_magic(MemFile *m) { m->data[0] = 'X'; }
static void m_version(MemFile *m) { put_be32(m, 4, 4); }
static void m_cluster_bits(MemFile *m) { put_be32(m, 20, 30); }
static void m_l1_huge(MemFile *m) { put_be32(m, 36, 0x7fffffff); }
static void m_l1_small(MemFile *m) { put_be64(m, 24, UINT64_C(1) << 40); }
static void m_l1_past_eof(MemFile *m) { put_be64(m, 40, UINT64_C(1) << 40); }
static void m_l1_unaligned(MemFile *m) { put_be64(m, 40, get_be64(m, 40) + 512); }
static void m_rt_huge(MemFile *m) { put_be32(m, 56, 0x10000000); }
static void m_rt_zero(MemFile *m) { put_be64(m, 48, 0); }
static void m_crypt(MemFile *m) { put_be32(m, 32, 1); }
static void m_unknown_incompat(MemFile *m) { put_be64(m, 72, get_be64(m, 72) | (1u << 9)); }
static void m_dirty(MemFile *m) { put_be64(m, 72, get_be64(m, 72) | 1); }
static void m_corrupt(MemFile *m) { put_be64(m, 72, get_be64(m, 72) | 2); }
static void m_snapshots(MemFile *m) { put_be32(m, 60, 1); }
static void m_header_len(MemFile *m) { put_be32(m, 100, 7); }
static void m_backing_long(MemFile *m) { put_be64(m, 8, 512); put_be32(m, 16, 4000); }
static void m_ext_overrun(MemFile *m)
{
    /* The first extension (the feature table) claims to run past cluster 0. */
    uint32_t hl;
    memcpy(&hl, m->data + 100, 4);
    put_be32(m, GUINT32_FROM_BE(hl) + 4, 0x7fffffff);
}

static void test_refusals(void)
{
    refuse_case(m_magic, false, "not in qcow2 format");
    refuse_case(m_version, false, "version 4");
    refuse_case(m_cluster_bits, false, "cluster size");
    refuse_case(m_l1_huge, false, "L1 table too large");
    refuse_case(m_l1_small, false, "L1 table is too small");
    refuse_case(m_l1_past_eof, false, "L1 table offset");
    refuse_case(m_l1_unaligned, false, "L1 table offset");
    refuse_case(m_rt_huge, false, "Reference count table too large");
    refuse_case(m_rt_zero, false, "refcount table offset");
    refuse_case(m_crypt, false, "encrypted");
    refuse_case(m_unknown_incompat, false, "Unsupported qcow2 feature");
    refuse_case(m_dirty, true, "dirty");
    refuse_case(m_corrupt, true, "corrupt");
    refuse_case(m_snapshots, true, "internal snapshots");
    refuse_case(m_header_len, false, "header length");
    refuse_case(m_backing_long, false, "backing file name");
    refuse_case(m_ext_overrun, false, "extension");
}

/* Dirty and corrupt images still open read-only, as with QEMU. */
static void test_read_only_allowed(void)
{
    Mutate ms[] = { m_dirty, m_corrupt, m_snapshots };

    if (!make_base()) {
        return;
    }
    for (guint i = 0; i < G_N_ELEMENTS(ms); i++) {
        g_autoptr(GError) err = NULL;
        MemFile m = load("h.qcow2");
        Qcow2File f = mem_file(&m);
        Qcow2 *q;
        uint8_t buf[512];

        ms[i](&m);
        q = qcow2_open(&f, false, 0, &err);
        g_assert_no_error(err);
        g_assert_cmpint(qcow2_read(q, 0, buf, sizeof(buf), &err), ==, 0);
        g_assert_cmpint(buf[0], ==, 0x61);
        qcow2_close(q);
        g_free(m.data);
    }
}

/* An L2 entry pointing into the header or the L1 table: -EIO, no access. */
static void test_bad_l2_entries(void)
{
    static const uint64_t bad[] = {
        UINT64_C(0x8000000000000000),            /* COPIED, offset 0: unallocated */
        UINT64_C(0x8000000000000200),            /* unaligned cluster */
        UINT64_C(0x8000000000030000),            /* the L1 table (cluster 3) */
        UINT64_C(0x8000000000010000) | 0x2,      /* reserved bit */
    };
    static const int want[] = { 0, -EIO, -EIO, -EIO };

    if (!make_base()) {
        return;
    }
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        MemFile m = load("h.qcow2");
        Qcow2File f = mem_file(&m);
        uint64_t l1 = get_be64(&m, 40);
        uint64_t l2 = get_be64(&m, l1) & UINT64_C(0x00fffffffffffe00);
        Qcow2 *q;
        uint8_t buf[512];

        g_assert_cmpuint(l1, ==, 0x30000);
        put_be64(&m, l2, bad[i]);
        q = qcow2_open(&f, true, 0, &err);
        g_assert_no_error(err);
        g_assert_cmpint(qcow2_read(q, 0, buf, sizeof(buf), &err), ==, want[i]);
        g_assert_true((want[i] == 0) == (err == NULL));
        g_clear_error(&err);
        g_assert_cmpint(qcow2_write(q, 0, buf, sizeof(buf), &err), ==, want[i]);
        qcow2_close(q);
        g_free(m.data);
    }
}

static void test_fuzz(void)
{
    GRand *rand = g_rand_new_with_seed(1234);
    MemFile orig;
    guint opened = 0;

    if (!qt_have_tools()) {
        g_rand_free(rand);
        return;
    }
    qt_run("qemu-img create -q -f qcow2 -o cluster_size=4k fz.qcow2 2M");
    qt_run("qemu-io -f qcow2 -c 'write -P 0x61 0 200k' -c 'write -z 1m 64k' fz.qcow2");
    orig = load("fz.qcow2");

    for (guint iter = 0; iter < 3000; iter++) {
        g_autoptr(GError) err = NULL;
        MemFile m = { g_malloc(orig.len), orig.len };
        Qcow2File f = mem_file(&m);
        guint flips = g_rand_int_range(rand, 1, 6);
        Qcow2 *q;

        memcpy(m.data, orig.data, orig.len);

        for (guint i = 0; i < flips; i++) {
            /* Mostly the header cluster and the tables right after it. */
            size_t at = g_rand_int_range(rand, 0, MIN(m.len, 8 * 4096));
            if (g_rand_boolean(rand)) {
                m.data[at] ^= 1u << g_rand_int_range(rand, 0, 8);
            } else {
                m.data[at] = g_rand_int_range(rand, 0, 256);
            }
        }
        q = qcow2_open(&f, g_rand_boolean(rand), 0, &err);
        if (q) {
            g_autofree uint8_t *buf = g_malloc(MIN(qcow2_virtual_size(q), 4u << 20));
            uint64_t size = qcow2_virtual_size(q);
            uint64_t n = MIN(size, 4u << 20);
            opened++;
            g_clear_error(&err);
            qcow2_read(q, 0, buf, n, &err);
            g_clear_error(&err);
            if (qcow2_is_writable(q) && n >= 8192) {
                memset(buf, 0x7e, 8192);
                qcow2_write(q, 4000, buf, 8192, &err);
                g_clear_error(&err);
                qcow2_write_zeroes(q, 0, n, true, &err);
                g_clear_error(&err);
                qcow2_read(q, 0, buf, n, &err);
            }
            qcow2_close(q);
        } else {
            g_assert_nonnull(err);
        }
        g_free(m.data);
    }
    g_test_message("%u of 3000 mutated images opened", opened);
    g_assert_cmpuint(opened, >, 0);
    g_free(orig.data);
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    qt_setup_dir();
    g_test_add_func("/block/qcow2/header/refusals", test_refusals);
    g_test_add_func("/block/qcow2/header/read-only-allowed", test_read_only_allowed);
    g_test_add_func("/block/qcow2/header/bad-l2-entries", test_bad_l2_entries);
    g_test_add_func("/block/qcow2/header/fuzz", test_fuzz);
    ret = g_test_run();
    qt_remove_dir();
    return ret;
}
