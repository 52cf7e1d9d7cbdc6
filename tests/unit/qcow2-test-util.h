/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scaffolding for the qcow2 core's unit tests: a Qcow2File over a plain fd,
 * running qemu-img and qemu-io (tests skip when they are not installed),
 * a scratch folder per program, and comparing a guest view with the raw
 * image qemu-img converts the same file to. Static inline, so each test
 * program takes only what it uses.
 */
#ifndef BERTH_TESTS_QCOW2_TEST_UTIL_H
#define BERTH_TESTS_QCOW2_TEST_UTIL_H

#include "block/qcow2-core.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static char *qt_dir;

static inline int qt_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    int fd = GPOINTER_TO_INT(opaque);
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *) buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            memset((char *) buf + done, 0, len - done);   /* past the end */
            break;
        }
        done += n;
    }
    return 0;
}

static inline int qt_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    int fd = GPOINTER_TO_INT(opaque);
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const char *) buf + done, len - done, off + done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        done += n;
    }
    return 0;
}

static inline int qt_flush(void *opaque)
{
    return fdatasync(GPOINTER_TO_INT(opaque)) < 0 ? -errno : 0;
}

static inline int64_t qt_length(void *opaque)
{
    off_t end = lseek(GPOINTER_TO_INT(opaque), 0, SEEK_END);

    return end < 0 ? -errno : end;
}

static inline Qcow2File qt_file(int fd)
{
    return (Qcow2File) {
        .opaque = GINT_TO_POINTER(fd), .pread = qt_pread, .pwrite = qt_pwrite,
        .flush = qt_flush, .length = qt_length,
    };
}

static inline bool qt_have_tools(void)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *io = g_find_program_in_path("qemu-io");

    if (!img || !io) {
        g_test_skip("qemu-img or qemu-io not installed");
        return false;
    }
    return true;
}

static inline char *qt_path(const char *name)
{
    return g_build_filename(qt_dir, name, NULL);
}

/* Run a shell command line; returns its exit status, output in *out. */
static inline int qt_sh(char **out, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static inline int qt_sh(char **out, const char *fmt, ...)
{
    g_autofree char *cmd = NULL;
    g_autofree char *o = NULL, *e = NULL;
    g_autoptr(GError) err = NULL;
    const char *argv[] = { "/bin/sh", "-c", NULL, NULL };
    int status = -1;
    va_list ap;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    argv[2] = cmd;
    if (!g_spawn_sync(qt_dir, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &o, &e,
                      &status, &err)) {
        g_error("cannot run %s: %s", cmd, err->message);
    }
    if (out) {
        *out = g_strconcat(o, e, NULL);
    }
    if (!WIFEXITED(status)) {
        return -1;
    }
    if (WEXITSTATUS(status) != 0 && !out) {
        g_test_message("'%s' exited %d: %s%s", cmd, WEXITSTATUS(status), o, e);
    }
    return WEXITSTATUS(status);
}

/* Like qt_sh but the command must succeed. */
#define qt_run(...) g_assert_cmpint(qt_sh(NULL, __VA_ARGS__), ==, 0)

typedef struct QtImage {
    int fd;
    Qcow2 *q;
} QtImage;

static inline Qcow2 *qt_open(QtImage *img, const char *name, bool writable, GError **errp)
{
    g_autofree char *path = qt_path(name);
    Qcow2File f;

    img->fd = open(path, writable ? O_RDWR : O_RDONLY);
    g_assert_cmpint(img->fd, >=, 0);
    f = qt_file(img->fd);
    img->q = qcow2_open(&f, writable, 0, errp);
    if (!img->q) {
        close(img->fd);
        img->fd = -1;
    }
    return img->q;
}

static inline void qt_close(QtImage *img)
{
    qcow2_close(img->q);
    if (img->fd >= 0) {
        close(img->fd);
    }
    img->q = NULL;
    img->fd = -1;
}

/* Read the whole guest view through the core. */
static inline uint8_t *qt_read_all(Qcow2 *q)
{
    g_autoptr(GError) err = NULL;
    uint64_t size = qcow2_virtual_size(q);
    uint8_t *buf = g_malloc(size);

    g_assert_cmpint(qcow2_read(q, 0, buf, size, &err), ==, 0);
    g_assert_no_error(err);
    return buf;
}

/* The guest view qemu-img converts the image to. */
static inline uint8_t *qt_convert_raw(const char *name, gsize *len)
{
    g_autofree char *raw = g_strdup_printf("%s.raw", name);
    g_autofree char *raw_path = qt_path(raw);
    g_autoptr(GError) err = NULL;
    char *data = NULL;

    qt_run("qemu-img convert -O raw '%s' '%s'", name, raw);
    g_assert_true(g_file_get_contents(raw_path, &data, len, &err));
    g_unlink(raw_path);
    return (uint8_t *) data;
}

/* Byte-identical to qemu-img's view, reporting the first difference. */
static inline void qt_assert_same(const uint8_t *a, const uint8_t *b, gsize len)
{
    for (gsize i = 0; i < len; i++) {
        if (a[i] != b[i]) {
            g_error("first difference at byte %" G_GSIZE_FORMAT ": 0x%02x vs 0x%02x",
                    i, a[i], b[i]);
        }
    }
}

static inline void qt_setup_dir(void)
{
    g_autoptr(GError) err = NULL;

    qt_dir = g_dir_make_tmp("berth-qcow2-XXXXXX", &err);
    g_assert_no_error(err);
}

static inline void qt_remove_dir(void)
{
    qt_sh(NULL, "rm -rf '%s'", qt_dir);
    g_free(qt_dir);
}

#endif
