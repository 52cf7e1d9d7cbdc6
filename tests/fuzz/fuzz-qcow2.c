/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the qcow2 core given an untrusted image. The input is
 * the image file, held in memory behind a Qcow2File. It is opened
 * read-only (header, extensions, L1 and refcount tables, snapshot table,
 * bitmap directory), its allocation map walked and some of its clusters
 * read through every table (L2, compressed, zero); then a copy is opened
 * writable and written, zeroed, discarded and flushed, which walks the
 * refcounts and allocation paths, and closed (which may store bitmaps).
 * An image the core refuses must be refused with an error, never a crash,
 * a hang or an out-of-bounds access.
 *
 * The writable copy may grow up to MAX_GROW bytes past the input (a write
 * past that fails with ENOSPC, as a full disk would). Seeds (corpus/qcow2/)
 * are small images made by qemu-img: v2, v3, compressed, zero clusters,
 * backing file names, snapshots, bitmaps.
 */
#include "fuzz-util.h"

#include "block/qcow2-core.h"

#define MAX_GROW (16u << 20)
#define MAX_MAP_STEPS 256

typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool writable;
} MemFile;

static int mem_pread(void *opaque, uint64_t offset, void *buf, size_t len)
{
    MemFile *m = opaque;
    size_t n = offset < m->len ? MIN(len, m->len - (size_t) offset) : 0;

    memcpy(buf, m->data + offset, n);
    memset((uint8_t *) buf + n, 0, len - n);
    return 0;
}

static int mem_pwrite(void *opaque, uint64_t offset, const void *buf, size_t len)
{
    MemFile *m = opaque;

    if (!m->writable) {
        return -EBADF;
    }
    if (offset > m->cap || len > m->cap - offset) {
        return -ENOSPC;
    }
    if (offset + len > m->len) {
        memset(m->data + m->len, 0, (size_t) offset + len - m->len);
        m->len = (size_t) offset + len;
    }
    memcpy(m->data + offset, buf, len);
    return 0;
}

static int mem_flush(void *opaque)
{
    (void) opaque;
    return 0;
}

static int64_t mem_length(void *opaque)
{
    return (int64_t) ((MemFile *) opaque)->len;
}

static Qcow2File mem_file(MemFile *m)
{
    return (Qcow2File) { .opaque = m, .pread = mem_pread, .pwrite = mem_pwrite,
                         .flush = mem_flush, .length = mem_length };
}

/* Walk the map from the start and read the first byte range of each kind. */
static void read_side(Qcow2 *q)
{
    uint64_t size = qcow2_virtual_size(q), pos = 0;
    uint8_t buf[65536];

    for (int i = 0; i < MAX_MAP_STEPS && pos < size; i++) {
        g_autoptr(GError) err = NULL;
        uint64_t pnum = 0;
        Qcow2MapType type;
        if (qcow2_map(q, pos, size - pos, &pnum, &type, &err) < 0) {
            break;
        }
        if (pnum == 0 || pnum > size - pos) {
            fuzz_fail("qcow2_map returned %" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT,
                      pnum, pos);
        }
        g_autoptr(GError) rerr = NULL;
        (void) qcow2_read(q, pos, buf, (size_t) MIN(pnum, sizeof(buf)), &rerr);
        pos += pnum;
    }
}

static void write_side(Qcow2 *q)
{
    uint64_t size = qcow2_virtual_size(q);
    uint8_t buf[4096];
    GError *err = NULL;

    if (size < sizeof(buf)) {
        return;
    }
    memset(buf, 0x5a, sizeof(buf));
    (void) qcow2_write(q, 0, buf, sizeof(buf), &err);
    g_clear_error(&err);
    (void) qcow2_write(q, size - sizeof(buf), buf, sizeof(buf), &err);
    g_clear_error(&err);
    (void) qcow2_write_zeroes(q, size / 2 - size / 2 % 512, MIN(size / 2, 1u << 20), true,
                              &err);
    g_clear_error(&err);
    (void) qcow2_discard(q, 0, MIN(size, 2u << 20), &err);
    g_clear_error(&err);
    (void) qcow2_flush(q, &err);
    g_clear_error(&err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    fuzz_glib_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    MemFile ro = { .data = (uint8_t *) data, .len = size, .cap = size };
    Qcow2File f = mem_file(&ro);
    GError *err = NULL;
    Qcow2 *q = qcow2_open(&f, false, 1u << 20, &err);

    if (!q) {
        if (!err) {
            fuzz_fail("qcow2_open failed without an error");
        }
        g_clear_error(&err);
        return 0;
    }
    read_side(q);
    qcow2_close(q);

    MemFile rw = { .data = g_malloc(size + MAX_GROW), .len = size, .cap = size + MAX_GROW,
                   .writable = true };
    memcpy(rw.data, data, size);
    f = mem_file(&rw);
    q = qcow2_open(&f, true, 1u << 20, &err);
    if (q) {
        write_side(q);
        read_side(q);
        qcow2_close(q);
    } else if (!err) {
        fuzz_fail("writable qcow2_open failed without an error");
    }
    g_clear_error(&err);
    g_free(rw.data);
    return 0;
}
