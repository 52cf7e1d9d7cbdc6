/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the file driver's io_uring path (block/file-posix-uring.c):
 * reads submitted from the thread that owns the context (as the NBD server
 * submits from its dispatch) go through the context's ring, and so do
 * O_DIRECT writes and buffered writes up to 64 KiB that the inline path
 * did not take; larger buffered writes and flushes take the worker pool
 * beside them.  Many requests in flight, scattered buffers, FUA and flush, a read
 * that runs past the end of the file (short transfer, then zeroes), O_DIRECT
 * aligned (ring) and unaligned (falls back to the bounce path), aio=threads.  The ring's existence is checked in /proc/self/fd; where the
 * kernel refuses io_uring the same data checks run through the fallback.
 */
#include "block-test-util.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#ifdef CONFIG_LIBURING
#include <liburing.h>
#endif
#include <string.h>
#include <unistd.h>

#define N_REQ 32
#define CHUNK 4096

static char *tmpdir;

static char *make_file(const char *name, off_t size)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

static BlockDriverState *open_file(const char *path, const char *extra)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=u,filename=%s%s%s", path,
                                            extra ? "," : "", extra ? extra : "");
    BlockDriverState *bs = open_keyval(opts, &err);
    g_assert_no_error(err);
    return bs;
}

static int count_io_uring_fds(void)
{
    g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;
    int n = 0;
    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *link = g_build_filename("/proc/self/fd", name, NULL);
        g_autofree char *target = g_file_read_link(link, NULL);
        if (target && strstr(target, "io_uring")) {
            n++;
        }
    }
    return n;
}

static bool have_io_uring_fd(void)
{
    return count_io_uring_fds() > 0;
}

/* Whether this kernel (and its seccomp policy) gives us a ring at all. */
static bool kernel_has_io_uring(void)
{
#ifdef CONFIG_LIBURING
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) == 0) {
        io_uring_queue_exit(&ring);
        return true;
    }
#endif
    return false;
}

static void wait_all(Result *r, int n)
{
    for (int i = 0; i < n; i++) {
        while (!r[i].done) {
            g_main_context_iteration(g_main_context_get_thread_default(), TRUE);
        }
    }
}

/* Submit as the owner of the context, as a dispatching server does. */
static void owned(void (*fn)(void *), void *arg)
{
    GMainContext *ctx = g_main_context_get_thread_default();
    g_assert_true(g_main_context_acquire(ctx));
    fn(arg);
    g_main_context_release(ctx);
}

typedef struct {
    BlockDriverState *bs;
    uint8_t *buf;
    struct iovec iov[N_REQ];
    Result r[N_REQ];
    bool write;
    BdrvRequestFlags flags;
} Batch;

static void submit_batch(void *opaque)
{
    Batch *b = opaque;
    for (int i = 0; i < N_REQ; i++) {
        /* Scattered offsets, in reverse, one page apart. */
        uint64_t off = (uint64_t) (N_REQ - 1 - i) * 2 * CHUNK + 512;
        b->iov[i].iov_base = b->buf + (size_t) i * CHUNK;
        b->iov[i].iov_len = CHUNK;
        if (b->write) {
            bdrv_aio_pwritev(b->bs, off, &b->iov[i], 1, b->flags, on_done, &b->r[i]);
        } else {
            bdrv_aio_preadv(b->bs, off, &b->iov[i], 1, on_done, &b->r[i]);
        }
    }
}

static void run_batch(BlockDriverState *bs, uint8_t *buf, bool write, BdrvRequestFlags flags)
{
    Batch b = { .bs = bs, .buf = buf, .write = write, .flags = flags };
    owned(submit_batch, &b);
    wait_all(b.r, N_REQ);
    for (int i = 0; i < N_REQ; i++) {
        g_assert_cmpint(b.r[i].ret, ==, 0);
        result_clear(&b.r[i]);
    }
}

static void round_trip(BlockDriverState *bs, BdrvRequestFlags flags)
{
    g_autofree uint8_t *out = g_malloc(N_REQ * CHUNK);
    g_autofree uint8_t *in = g_malloc0(N_REQ * CHUNK);
    for (size_t i = 0; i < N_REQ * CHUNK; i++) {
        out[i] = (uint8_t) (i * 13 + i / 4093 + flags);
    }
    run_batch(bs, out, true, flags);
    run_batch(bs, in, false, 0);
    g_assert_cmpmem(in, N_REQ * CHUNK, out, N_REQ * CHUNK);
}

typedef struct {
    BlockDriverState *bs;
    Result r;
} One;

static void submit_flush(void *opaque)
{
    One *o = opaque;
    bdrv_aio_flush(o->bs, on_done, &o->r);
}

static int run_vec(BlockDriverState *bs, bool write, uint64_t off, struct iovec *iov, int niov);

static void test_buffered(void)
{
    g_autofree char *path = make_file("buffered.img", 4 * MiB);
    BlockDriverState *bs = open_file(path, "aio=io_uring");
    round_trip(bs, 0);
    round_trip(bs, BDRV_REQ_FUA);
    One o = { .bs = bs };
    owned(submit_flush, &o);
    wait_all(&o.r, 1);
    g_assert_cmpint(o.r.ret, ==, 0);
    result_clear(&o.r);
    /* Past the inline page-cache limit (64 KiB), reads take the ring. */
    g_autofree uint8_t *big = g_malloc(256 * KiB);
    struct iovec bv = { big, 256 * KiB };
    g_assert_cmpint(run_vec(bs, false, 0, &bv, 1), ==, 0);
    for (int i = 0; i < N_REQ; i++) {
        uint64_t off = (uint64_t) (N_REQ - 1 - i) * 2 * CHUNK + 512;
        if (off + CHUNK <= 256 * KiB) {
            g_assert_cmpuint(big[off], ==, (uint8_t) ((i * CHUNK) * 13 + (i * CHUNK) / 4093 +
                                                      BDRV_REQ_FUA));
        }
    }
    if (kernel_has_io_uring()) {
        g_assert_true(have_io_uring_fd());
    } else {
        g_test_message("no io_uring here: the checks ran through the worker pool");
    }
    close_node(bs);
    g_unlink(path);
}

typedef struct {
    BlockDriverState *bs;
    struct iovec *iov;
    int niov;
    uint64_t off;
    Result r;
    bool write;
} Vec;

static void submit_vec(void *opaque)
{
    Vec *v = opaque;
    if (v->write) {
        bdrv_aio_pwritev(v->bs, v->off, v->iov, v->niov, 0, on_done, &v->r);
    } else {
        bdrv_aio_preadv(v->bs, v->off, v->iov, v->niov, on_done, &v->r);
    }
}

static int run_vec(BlockDriverState *bs, bool write, uint64_t off, struct iovec *iov, int niov)
{
    Vec v = { .bs = bs, .iov = iov, .niov = niov, .off = off, .write = write };
    owned(submit_vec, &v);
    wait_all(&v.r, 1);
    int ret = v.r.ret;
    result_clear(&v.r);
    return ret;
}

/* 150 pieces, a third of them empty: the ring takes the whole vector. */
static void test_scattered(void)
{
    g_autofree char *path = make_file("scattered.img", MiB);
    BlockDriverState *bs = open_file(path, NULL);   /* the default uses the ring too */
    g_autofree uint8_t *w = g_malloc(150 * 1000), *rd = g_malloc0(150 * 1000);
    struct iovec wi[150], ri[150];
    size_t total = 0;
    for (int i = 0; i < 150; i++) {
        size_t len = i % 3 == 0 ? 0 : 1000;
        wi[i] = (struct iovec) { w + i * 1000, len };
        ri[i] = (struct iovec) { rd + i * 1000, len };
        memset(w + i * 1000, i + 1, 1000);
        total += len;
    }
    g_assert_cmpint(run_vec(bs, true, 7777, wi, 150), ==, 0);
    g_assert_cmpint(run_vec(bs, false, 7777, ri, 150), ==, 0);
    for (int i = 0; i < 150; i++) {
        g_assert_cmpmem(ri[i].iov_base, ri[i].iov_len, wi[i].iov_base, wi[i].iov_len);
    }
    g_assert_cmpuint(total, ==, 100 * 1000);
    close_node(bs);
    g_unlink(path);
}

/* A 10000-byte file is a 10240-byte node: the ring's read comes back short. */
static void test_tail_past_eof(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "tail.img", NULL);
    g_autofree uint8_t *data = g_malloc(10000);
    memset(data, 0x5c, 10000);
    g_assert_true(g_file_set_contents(path, (const char *) data, 10000, NULL));
    BlockDriverState *bs = open_file(path, "aio=io_uring");
    g_assert_cmpuint(bdrv_getlength(bs), ==, 10240);
    uint8_t buf[10240];
    memset(buf, 0xff, sizeof(buf));
    struct iovec iov[2] = { { buf, 6000 }, { buf + 6000, 4240 } };
    g_assert_cmpint(run_vec(bs, false, 0, iov, 2), ==, 0);
    g_assert_cmpmem(buf, 10000, data, 10000);
    g_assert_true(is_zero(buf + 10000, 240));
    close_node(bs);
    g_unlink(path);
}

/* O_DIRECT: aligned requests take the ring, unaligned ones the bounce path. */
static void test_direct(void)
{
    g_autofree char *path = make_file("direct.img", 2 * MiB);
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=u,filename=%s,"
                                            "cache.direct=on,aio=io_uring", path);
    BlockDriverState *bs = open_keyval(opts, &err);
    if (!bs) {
        g_test_skip("O_DIRECT is not supported here");
        return;
    }
    void *abuf = NULL;
    g_assert_cmpint(posix_memalign(&abuf, 4096, 64 * KiB), ==, 0);
    memset(abuf, 0x3a, 64 * KiB);
    struct iovec a = { abuf, 64 * KiB };
    g_assert_cmpint(run_vec(bs, true, 128 * KiB, &a, 1), ==, 0);
    uint8_t odd[1000];
    memset(odd, 0x4b, sizeof(odd));
    struct iovec u = { odd, sizeof(odd) };
    g_assert_cmpint(run_vec(bs, true, 128 * KiB + 3, &u, 1), ==, 0);
    memset(abuf, 0, 64 * KiB);
    g_assert_cmpint(run_vec(bs, false, 128 * KiB, &a, 1), ==, 0);
    uint8_t *p = abuf;
    g_assert_cmpint(p[0], ==, 0x3a);
    g_assert_true(p[3] == 0x4b && p[1002] == 0x4b && p[1003] == 0x3a);
    free(abuf);
    close_node(bs);
    g_unlink(path);
}

/* aio-max-batch=3: 32 O_DIRECT writes in flight (the ring's path) go to
 * the kernel three at a time, and read back right; a negative batch is
 * refused. */
static void submit_direct_batch(void *opaque)
{
    Batch *b = opaque;
    for (int i = 0; i < N_REQ; i++) {
        b->iov[i] = (struct iovec) { b->buf + (size_t) i * 4096, 4096 };
        if (b->write) {
            bdrv_aio_pwritev(b->bs, (uint64_t) i * 4096, &b->iov[i], 1, 0, on_done, &b->r[i]);
        } else {
            bdrv_aio_preadv(b->bs, (uint64_t) i * 4096, &b->iov[i], 1, on_done, &b->r[i]);
        }
    }
}

/* N_REQ page-sized requests at pages 0.., all in flight at once; all succeed. */
static void run_page_batch(BlockDriverState *bs, uint8_t *buf, bool write)
{
    Batch b = { .bs = bs, .buf = buf, .write = write };
    owned(submit_direct_batch, &b);
    wait_all(b.r, N_REQ);
    for (int i = 0; i < N_REQ; i++) {
        g_assert_cmpint(b.r[i].ret, ==, 0);
        result_clear(&b.r[i]);
    }
}

static void test_aio_max_batch(void)
{
    g_autofree char *path = make_file("batch.img", MiB);
    g_autofree char *bad = g_strdup_printf("driver=file,node-name=x,filename=%s,"
                                           "aio-max-batch=-1", path);
    g_autoptr(GError) err = NULL;
    g_assert_null(open_keyval(bad, &err));
    g_assert_nonnull(strstr(err->message, "aio-max-batch must be in range [0, 2147483647]"));
    g_clear_error(&err);
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=u,filename=%s,"
                                            "cache.direct=on,aio=io_uring,aio-max-batch=3", path);
    BlockDriverState *bs = open_keyval(opts, &err);
    if (!bs) {
        g_test_skip("O_DIRECT is not supported here");
        return;
    }
    uint8_t *buf = NULL, *back = NULL;
    g_assert_cmpint(posix_memalign((void **) &buf, 4096, N_REQ * 4096), ==, 0);
    g_assert_cmpint(posix_memalign((void **) &back, 4096, N_REQ * 4096), ==, 0);
    for (size_t i = 0; i < N_REQ * 4096; i++) {
        buf[i] = (uint8_t) (i * 7 + i / 4096);
    }
    memset(back, 0, N_REQ * 4096);
    run_page_batch(bs, buf, true);
    run_page_batch(bs, back, false);
    g_assert_cmpmem(back, N_REQ * 4096, buf, N_REQ * 4096);
    free(buf);
    free(back);
    close_node(bs);
    g_unlink(path);
}

/* aio=threads keeps the worker pool; the data is the same. */
static void test_threads_option(void)
{
    g_autofree char *path = make_file("threads.img", 4 * MiB);
    BlockDriverState *bs = open_file(path, "aio=threads");
    round_trip(bs, BDRV_REQ_FUA);
    close_node(bs);
    g_unlink(path);
}

/*
 * Which path an aio= mode takes, seen from a thread of its own: a context
 * that has never submitted has no ring, so a new io_uring fd after its
 * first batch of aligned O_DIRECT writes and reads means the ring carried
 * them.
 */
typedef struct AioPath {
    BlockDriverState *bs;
    void (*work)(struct AioPath *a);    /* the requests, on the fresh context */
    int rings_before, rings_after;
} AioPath;

/* Run a->work on a thread whose context has never submitted anything,
 * counting the process's rings before and after it. */
static gpointer fresh_context_thread(gpointer opaque)
{
    AioPath *a = opaque;
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    a->rings_before = count_io_uring_fds();
    a->work(a);
    a->rings_after = count_io_uring_fds();
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    return NULL;
}

static void run_on_fresh_context(AioPath *a)
{
    g_thread_join(g_thread_new("aio-path", fresh_context_thread, a));
}

static void direct_write_read(AioPath *a)
{
    uint8_t *buf = NULL;
    g_assert_cmpint(posix_memalign((void **) &buf, 4096, N_REQ * 4096), ==, 0);
    memset(buf, 0x5c, N_REQ * 4096);
    run_page_batch(a->bs, buf, true);
    memset(buf, 0, N_REQ * 4096);
    run_page_batch(a->bs, buf, false);
    for (size_t i = 0; i < N_REQ * 4096; i++) {
        g_assert_cmpint(buf[i], ==, 0x5c);
    }
    free(buf);
}

static void check_aio_path(const char *aio, bool want_ring)
{
    g_autofree char *path = make_file("aio-path.img", 4 * MiB);
    g_autoptr(GError) err = NULL;
    g_autofree char *opts = g_strdup_printf("driver=file,node-name=u,filename=%s,"
                                            "cache.direct=on,aio=%s", path, aio);
    BlockDriverState *bs = open_keyval(opts, &err);
    if (!bs) {
        g_test_skip("O_DIRECT is not supported here");
        return;
    }
    AioPath a = { .bs = bs, .work = direct_write_read };
    run_on_fresh_context(&a);
    if (want_ring && kernel_has_io_uring()) {
        g_assert_cmpint(a.rings_after, >, a.rings_before);
    } else {
        g_assert_cmpint(a.rings_after, ==, a.rings_before);
    }
    close_node(bs);
    g_unlink(path);
}

/*
 * Small buffered writes that the inline path cannot take (the filesystem
 * refuses RWF_NOWAIT for them, as ext4 does) take the ring, not the pool.
 * On tmpfs (copied inline) or a filesystem that takes the flag (xfs) the
 * writes never reach the ring, and there is nothing to check.
 */
static void buffered_write(AioPath *a)
{
    g_autofree uint8_t *buf = g_malloc(N_REQ * 4096);
    memset(buf, 0x6d, N_REQ * 4096);
    run_page_batch(a->bs, buf, true);
}

static void test_buffered_writes_ring(void)
{
    g_autofree char *path = make_file("buffered-writes.img", MiB);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    char page[4096] = { 0 };
    struct iovec v = { page, sizeof(page) };
    bool refused = pwritev2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP;
    close(fd);
    if (!refused || !kernel_has_io_uring()) {
        g_test_skip("this filesystem takes RWF_NOWAIT writes (or is tmpfs), or no io_uring");
        g_unlink(path);
        return;
    }
    AioPath a = { .bs = open_file(path, "aio=io_uring"), .work = buffered_write };
    run_on_fresh_context(&a);
    g_assert_cmpint(a.rings_after, >, a.rings_before);
    g_autofree uint8_t *back = g_malloc0(N_REQ * 4096);
    struct iovec bv = { back, N_REQ * 4096 };
    g_assert_cmpint(run_vec(a.bs, false, 0, &bv, 1), ==, 0);
    for (size_t i = 0; i < N_REQ * 4096; i++) {
        g_assert_cmpint(back[i], ==, 0x6d);
    }
    close_node(a.bs);
    g_unlink(path);
}

/* aio=native (QEMU's Linux AIO) is carried by the ring, as io_uring is;
 * aio=threads never makes one. */
static void test_aio_native_uses_ring(void)
{
    check_aio_path("native", true);
    check_aio_path("io_uring", true);
    check_aio_path("threads", false);
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("berth-uring-XXXXXX", &err);
    g_assert_no_error(err);
    g_test_add_func("/block/file-uring/buffered", test_buffered);
    g_test_add_func("/block/file-uring/scattered", test_scattered);
    g_test_add_func("/block/file-uring/tail-past-eof", test_tail_past_eof);
    g_test_add_func("/block/file-uring/direct", test_direct);
    g_test_add_func("/block/file-uring/threads-option", test_threads_option);
    g_test_add_func("/block/file-uring/aio-max-batch", test_aio_max_batch);
    g_test_add_func("/block/file-uring/aio-native", test_aio_native_uses_ring);
    g_test_add_func("/block/file-uring/buffered-writes", test_buffered_writes_ring);
    int ret = run_block_tests(NULL);
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
