/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the kernel NBD attach: a fake NBDKernelOps table records
 * every ioctl (request and argument) so the exact sequences of nbd_kernel_configure()
 * (with the BLKROSET fallback for kernels without NBD_SET_FLAGS),
 * nbd_kernel_serve() and nbd_kernel_disconnect() can be checked, failures can be injected
 * per request, and argument checks are seen to happen before any ioctl.
 * Finally the real nbd_kernel_open() is run on a missing /dev/nbd0.
 */
#include "berth/nbd/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <linux/fs.h>
#include <linux/nbd.h>
#include <string.h>

#define FAKE_DEV_FD 42
#define FAKE_SOCK_FD 7
#define MAX_CALLS 32

typedef struct {
    unsigned long req;
    unsigned long arg;
} Call;

static Call calls[MAX_CALLS];
static size_t n_calls;
static unsigned long fail_req;      /* 0: no injected failure */
static int fail_errno;
static char *opened_path;
static int opened_flags;
static int open_errno;              /* 0: open succeeds */
static int closed_fd;

static int fake_open(const char *path, int flags)
{
    g_free(opened_path);
    opened_path = g_strdup(path);
    opened_flags = flags;
    if (open_errno) {
        errno = open_errno;
        return -1;
    }
    return FAKE_DEV_FD;
}

static int fake_ioctl(int fd, unsigned long req, unsigned long arg)
{
    g_assert_cmpint(fd, ==, FAKE_DEV_FD);
    g_assert_cmpuint(n_calls, <, MAX_CALLS);
    /* BLKROSET takes a pointer to an int: record the value it points at. */
    calls[n_calls].req = req;
    calls[n_calls].arg = req == BLKROSET ? (unsigned long)*(const int *)arg : arg;
    n_calls++;
    if (fail_req && req == fail_req) {
        errno = fail_errno;
        return -1;
    }
    return 0;
}

static int fake_close(int fd)
{
    closed_fd = fd;
    return 0;
}

static const NBDKernelOps fake_ops = {
    .open = fake_open,
    .ioctl = fake_ioctl,
    .close = fake_close,
};

static void reset(void)
{
    memset(calls, 0, sizeof(calls));
    n_calls = 0;
    fail_req = 0;
    fail_errno = 0;
    g_clear_pointer(&opened_path, g_free);
    opened_flags = -1;
    open_errno = 0;
    closed_fd = -1;
    nbd_kernel_set_ops(&fake_ops);
}

static void assert_calls(const Call *expected, size_t n)
{
    for (size_t i = 0; i < n && i < n_calls; i++) {
        g_assert_cmphex(calls[i].req, ==, expected[i].req);
        g_assert_cmpuint(calls[i].arg, ==, expected[i].arg);
    }
    g_assert_cmpuint(n_calls, ==, n);
}

static void assert_error_names(GError *err, const char *ioctl_name, int errnum)
{
    g_assert_nonnull(err);
    g_assert_true(err->domain == G_IO_ERROR);
    g_assert_nonnull(strstr(err->message, ioctl_name));
    g_assert_nonnull(strstr(err->message, g_strerror(errnum)));
}

static void test_init_sequence(void)
{
    GError *err = NULL;
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;

    reset();
    g_assert_true(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 1024 * 1024, 4096,
                           flags, &err));
    g_assert_no_error(err);
    const Call expected[] = {
        { NBD_SET_BLKSIZE, 4096 },
        { NBD_SET_SIZE_BLOCKS, 256 },
        { NBD_SET_FLAGS, flags },
        { NBD_CLEAR_SOCK, 0 },
        { NBD_SET_SOCK, FAKE_SOCK_FD },
    };
    assert_calls(expected, G_N_ELEMENTS(expected));
}

/* The seed API's names make the same ioctl sequences as the new ones. */
static void test_seed_names(void)
{
    GError *err = NULL;
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
    Call first[MAX_CALLS];
    size_t n_first;

    reset();
    g_assert_true(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 8192, 512, flags, &err));
    g_assert_true(nbd_kernel_serve(FAKE_DEV_FD, &err));
    g_assert_true(nbd_kernel_disconnect(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    memcpy(first, calls, sizeof(calls));
    n_first = n_calls;
    g_assert_cmpuint(n_first, >, 5);

    reset();
    g_assert_true(nbd_init(FAKE_DEV_FD, FAKE_SOCK_FD, 8192, 512, flags, &err));
    g_assert_true(nbd_client(FAKE_DEV_FD, &err));
    g_assert_true(nbd_disconnect(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    assert_calls(first, n_first);

    reset();
    g_assert_false(nbd_init(FAKE_DEV_FD, FAKE_SOCK_FD, 1000, 512, flags, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    g_assert_cmpuint(n_calls, ==, 0);
}

static void test_init_default_block_size(void)
{
    GError *err = NULL;

    reset();
    g_assert_true(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 10 * 512, 0,
                           NBD_FLAG_HAS_FLAGS, &err));
    g_assert_no_error(err);
    const Call expected[] = {
        { NBD_SET_BLKSIZE, 512 },
        { NBD_SET_SIZE_BLOCKS, 10 },
        { NBD_SET_FLAGS, NBD_FLAG_HAS_FLAGS },
        { NBD_CLEAR_SOCK, 0 },
        { NBD_SET_SOCK, FAKE_SOCK_FD },
    };
    assert_calls(expected, G_N_ELEMENTS(expected));
}

static void test_init_readonly_fallback(void)
{
    GError *err = NULL;
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;

    reset();
    fail_req = NBD_SET_FLAGS;
    fail_errno = ENOTTY;
    g_assert_true(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 8192, 1024, flags, &err));
    g_assert_no_error(err);
    const Call expected[] = {
        { NBD_SET_BLKSIZE, 1024 },
        { NBD_SET_SIZE_BLOCKS, 8 },
        { NBD_SET_FLAGS, flags },
        { BLKROSET, 1 },
        { NBD_CLEAR_SOCK, 0 },
        { NBD_SET_SOCK, FAKE_SOCK_FD },
    };
    assert_calls(expected, G_N_ELEMENTS(expected));
}

static void test_init_enotty_writable(void)
{
    GError *err = NULL;

    /* Old kernel, writable export: nothing to fall back to, no BLKROSET. */
    reset();
    fail_req = NBD_SET_FLAGS;
    fail_errno = ENOTTY;
    g_assert_true(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 8192, 512,
                           NBD_FLAG_HAS_FLAGS, &err));
    g_assert_no_error(err);
    const Call expected[] = {
        { NBD_SET_BLKSIZE, 512 },
        { NBD_SET_SIZE_BLOCKS, 16 },
        { NBD_SET_FLAGS, NBD_FLAG_HAS_FLAGS },
        { NBD_CLEAR_SOCK, 0 },
        { NBD_SET_SOCK, FAKE_SOCK_FD },
    };
    assert_calls(expected, G_N_ELEMENTS(expected));
}

static void test_init_failures(void)
{
    static const struct {
        unsigned long req;
        const char *name;
        int errnum;
        size_t calls_made;
    } cases[] = {
        { NBD_SET_BLKSIZE, "NBD_SET_BLKSIZE", EINVAL, 1 },
        { NBD_SET_SIZE_BLOCKS, "NBD_SET_SIZE_BLOCKS", EFBIG, 2 },
        { NBD_SET_FLAGS, "NBD_SET_FLAGS", EINVAL, 3 },
        { NBD_CLEAR_SOCK, "NBD_CLEAR_SOCK", EBUSY, 4 },
        { NBD_SET_SOCK, "NBD_SET_SOCK", EBUSY, 5 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *err = NULL;
        uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;

        reset();
        fail_req = cases[i].req;
        fail_errno = cases[i].errnum;
        g_assert_false(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 4096, 512, flags,
                                &err));
        assert_error_names(err, cases[i].name, cases[i].errnum);
        g_assert_cmpuint(n_calls, ==, cases[i].calls_made);
        g_assert_cmphex(calls[n_calls - 1].req, ==, cases[i].req);
        g_error_free(err);
    }
}

/* SET_FLAGS answers ENOTTY and BLKROSET fails: the error names BLKROSET. */
static int blkroset_fail_ioctl(int fd, unsigned long req, unsigned long arg)
{
    int r = fake_ioctl(fd, req, arg);
    if (req == NBD_SET_FLAGS) {
        errno = ENOTTY;
        return -1;
    }
    if (req == BLKROSET) {
        errno = EACCES;
        return -1;
    }
    return r;
}

static void test_init_blkroset_failure(void)
{
    static const NBDKernelOps ops = {
        .open = fake_open,
        .ioctl = blkroset_fail_ioctl,
        .close = fake_close,
    };
    GError *err = NULL;
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;

    reset();
    nbd_kernel_set_ops(&ops);
    g_assert_false(nbd_kernel_configure(FAKE_DEV_FD, FAKE_SOCK_FD, 4096, 512, flags, &err));
    assert_error_names(err, "BLKROSET", EACCES);
    const Call expected[] = {
        { NBD_SET_BLKSIZE, 512 },
        { NBD_SET_SIZE_BLOCKS, 8 },
        { NBD_SET_FLAGS, flags },
        { BLKROSET, 1 },
    };
    assert_calls(expected, G_N_ELEMENTS(expected));
    g_error_free(err);
}

static void test_init_invalid_args(void)
{
    static const struct {
        uint64_t size;
        uint32_t block_size;
        int sock;
    } cases[] = {
        { 4096, 256, FAKE_SOCK_FD },      /* too small */
        { 16384, 8192, FAKE_SOCK_FD },    /* too large */
        { 3 * 768, 768, FAKE_SOCK_FD },   /* not a power of two */
        { 3000, 1, FAKE_SOCK_FD },
        { 1000, 0, FAKE_SOCK_FD },        /* not a multiple of the default */
        { 4097, 4096, FAKE_SOCK_FD },     /* not a multiple */
        { 512 + 1, 512, FAKE_SOCK_FD },
        { 4096, 512, -1 },                /* no socket */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *err = NULL;

        reset();
        g_assert_false(nbd_kernel_configure(FAKE_DEV_FD, cases[i].sock, cases[i].size,
                                cases[i].block_size, NBD_FLAG_HAS_FLAGS, &err));
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_assert_cmpuint(n_calls, ==, 0);
        g_error_free(err);
    }
}

static void test_client_sequence(void)
{
    GError *err = NULL;
    const Call expected[] = {
        { NBD_DO_IT, 0 },
        { NBD_CLEAR_QUE, 0 },
        { NBD_CLEAR_SOCK, 0 },
    };

    reset();
    g_assert_true(nbd_kernel_serve(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    assert_calls(expected, G_N_ELEMENTS(expected));

    /* EPIPE is how DO_IT ends after NBD_DISCONNECT: not an error. */
    reset();
    fail_req = NBD_DO_IT;
    fail_errno = EPIPE;
    g_assert_true(nbd_kernel_serve(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    assert_calls(expected, G_N_ELEMENTS(expected));

    /* A real failure is reported, and the device is still cleaned up. */
    reset();
    fail_req = NBD_DO_IT;
    fail_errno = EIO;
    g_assert_false(nbd_kernel_serve(FAKE_DEV_FD, &err));
    assert_error_names(err, "NBD_DO_IT", EIO);
    assert_calls(expected, G_N_ELEMENTS(expected));
    g_clear_error(&err);

    /* Cleanup failures are ignored. */
    reset();
    fail_req = NBD_CLEAR_SOCK;
    fail_errno = EBUSY;
    g_assert_true(nbd_kernel_serve(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    assert_calls(expected, G_N_ELEMENTS(expected));
}

static void test_disconnect_sequence(void)
{
    GError *err = NULL;
    const Call expected[] = {
        { NBD_CLEAR_QUE, 0 },
        { NBD_DISCONNECT, 0 },
        { NBD_CLEAR_SOCK, 0 },
    };
    static const struct {
        unsigned long req;
        const char *name;
    } fails[] = {
        { NBD_CLEAR_QUE, "NBD_CLEAR_QUE" },
        { NBD_DISCONNECT, "NBD_DISCONNECT" },
        { NBD_CLEAR_SOCK, "NBD_CLEAR_SOCK" },
    };

    reset();
    g_assert_true(nbd_kernel_disconnect(FAKE_DEV_FD, &err));
    g_assert_no_error(err);
    assert_calls(expected, G_N_ELEMENTS(expected));

    for (size_t i = 0; i < G_N_ELEMENTS(fails); i++) {
        reset();
        fail_req = fails[i].req;
        fail_errno = EINVAL;
        g_assert_false(nbd_kernel_disconnect(FAKE_DEV_FD, &err));
        assert_error_names(err, fails[i].name, EINVAL);
        /* All three are still tried. */
        assert_calls(expected, G_N_ELEMENTS(expected));
        g_clear_error(&err);
    }
}

static void test_open_fake(void)
{
    GError *err = NULL;

    reset();
    int fd = nbd_kernel_open("/dev/nbd3", &err);
    g_assert_no_error(err);
    g_assert_cmpint(fd, ==, FAKE_DEV_FD);
    g_assert_cmpstr(opened_path, ==, "/dev/nbd3");
    g_assert_cmpint(opened_flags, ==, O_RDWR);
    nbd_kernel_close(fd);
    g_assert_cmpint(closed_fd, ==, FAKE_DEV_FD);

    reset();
    open_errno = ENOENT;
    g_assert_cmpint(nbd_kernel_open("/dev/nbd3", &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "modprobe nbd"));
    g_clear_error(&err);

    reset();
    open_errno = EACCES;
    g_assert_cmpint(nbd_kernel_open("/dev/nbd3", &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
    g_autofree char *want = g_strdup_printf("Failed to open /dev/nbd3: %s",
                                            g_strerror(EACCES));
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    g_clear_pointer(&opened_path, g_free);
}

static void test_open_real_missing(void)
{
    GError *err = NULL;

    nbd_kernel_set_ops(NULL);
    if (g_file_test("/dev/nbd0", G_FILE_TEST_EXISTS)) {
        g_test_skip("/dev/nbd0 exists on this machine");
        return;
    }
    g_assert_cmpint(nbd_kernel_open("/dev/nbd0", &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_autofree char *want = g_strdup_printf(
        "Failed to open /dev/nbd0: %s (is the nbd kernel module loaded? "
        "try 'modprobe nbd')", g_strerror(ENOENT));
    g_assert_cmpstr(err->message, ==, want);
    g_error_free(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/nbd/kernel/init/sequence", test_init_sequence);
    g_test_add_func("/nbd/kernel/init/default-block-size",
                    test_init_default_block_size);
    g_test_add_func("/nbd/kernel/init/readonly-fallback",
                    test_init_readonly_fallback);
    g_test_add_func("/nbd/kernel/init/enotty-writable",
                    test_init_enotty_writable);
    g_test_add_func("/nbd/kernel/init/failures", test_init_failures);
    g_test_add_func("/nbd/kernel/init/blkroset-failure",
                    test_init_blkroset_failure);
    g_test_add_func("/nbd/kernel/init/invalid-args", test_init_invalid_args);
    g_test_add_func("/nbd/kernel/client", test_client_sequence);
    g_test_add_func("/nbd/kernel/disconnect", test_disconnect_sequence);
    g_test_add_func("/nbd/kernel/seed-names", test_seed_names);
    g_test_add_func("/nbd/kernel/open/fake", test_open_fake);
    g_test_add_func("/nbd/kernel/open/real-missing", test_open_real_missing);
    int ret = g_test_run();
    nbd_kernel_set_ops(NULL);
    return ret;
}
