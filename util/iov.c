/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iovec helpers (util/iov.h): one slicing walk by offset, on which
 * copying and filling are built; a cursor that walks an array front to back
 * (what the drivers use to copy into or fill the caller's buffers without
 * flattening them); zero detection.
 */
#include "util/iov.h"

#include <string.h>

uint64_t berth_iov_size(const struct iovec *iov, int niov)
{
    uint64_t n = 0;
    for (int i = 0; i < niov; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

int berth_iov_slice(const struct iovec *iov, int niov, uint64_t off, uint64_t len,
                    struct iovec *out, int max_out, uint64_t *covered)
{
    int n = 0;
    uint64_t got = 0;
    for (int i = 0; i < niov && got < len && n < max_out; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t take = (size_t) MIN(len - got, iov[i].iov_len - off);
        out[n].iov_base = (uint8_t *) iov[i].iov_base + off;
        out[n].iov_len = take;
        n++;
        got += take;
        off = 0;
    }
    if (covered) {
        *covered = got;
    }
    return n;
}

/* Apply fn to each piece of [off, off + len), a bounded batch at a time. */
static void for_each_piece(const struct iovec *iov, int niov, uint64_t off, uint64_t len,
                           void (*fn)(struct iovec *piece, uint64_t done, void *opaque),
                           void *opaque)
{
    struct iovec pieces[16];
    uint64_t done = 0;
    while (done < len) {
        uint64_t covered;
        int n = berth_iov_slice(iov, niov, off + done, len - done, pieces,
                                (int) G_N_ELEMENTS(pieces), &covered);
        if (n == 0) {
            return;
        }
        for (int i = 0; i < n; i++) {
            fn(&pieces[i], done, opaque);
            done += pieces[i].iov_len;
        }
    }
}

static void copy_piece(struct iovec *piece, uint64_t done, void *opaque)
{
    memcpy(piece->iov_base, (const uint8_t *) opaque + done, piece->iov_len);
}

void berth_iov_from_buf(const struct iovec *iov, int niov, uint64_t off, const void *buf,
                        size_t len)
{
    for_each_piece(iov, niov, off, len, copy_piece, (void *) buf);
}

static void fill_piece(struct iovec *piece, uint64_t done, void *opaque)
{
    memset(piece->iov_base, *(const int *) opaque, piece->iov_len);
}

void berth_iov_memset(const struct iovec *iov, int niov, uint64_t off, int c, uint64_t len)
{
    for_each_piece(iov, niov, off, len, fill_piece, &c);
}

/* ---- cursor ---------------------------------------------------------------- */

void berth_iov_cursor_init(BerthIovCursor *c, const struct iovec *iov, int niov)
{
    c->iov = iov;
    c->niov = niov;
    c->idx = 0;
    c->off = 0;
}

/*
 * Calls fn on each contiguous piece of the next `bytes` bytes and advances
 * the cursor. Running past the end of the array stops silently: the generic
 * layer has already checked that the array is as long as the request.
 */
static void cursor_walk(BerthIovCursor *c, size_t bytes,
                        void (*fn)(void *piece, size_t len, gpointer data),
                        gpointer data)
{
    while (bytes > 0 && c->idx < c->niov) {
        size_t avail = c->iov[c->idx].iov_len - c->off;
        size_t n = MIN(avail, bytes);

        if (n > 0 && fn) {
            fn((char *) c->iov[c->idx].iov_base + c->off, n, data);
        }
        bytes -= n;
        c->off += n;
        if (c->off == c->iov[c->idx].iov_len) {
            c->idx++;
            c->off = 0;
        }
    }
}

void berth_iov_cursor_skip(BerthIovCursor *c, size_t bytes)
{
    cursor_walk(c, bytes, NULL, NULL);
}

static void copy_out(void *piece, size_t len, gpointer data)
{
    char **buf = data;

    memcpy(*buf, piece, len);
    *buf += len;
}

void berth_iov_cursor_to_buf(BerthIovCursor *c, void *buf, size_t bytes)
{
    char *p = buf;

    cursor_walk(c, bytes, copy_out, &p);
}

static void copy_in(void *piece, size_t len, gpointer data)
{
    const char **buf = data;

    memcpy(piece, *buf, len);
    *buf += len;
}

void berth_iov_cursor_from_buf(BerthIovCursor *c, const void *buf, size_t bytes)
{
    const char *p = buf;

    cursor_walk(c, bytes, copy_in, &p);
}

static void fill(void *piece, size_t len, gpointer data)
{
    memset(piece, *(int *) data, len);
}

void berth_iov_cursor_memset(BerthIovCursor *c, int byte, size_t bytes)
{
    cursor_walk(c, bytes, fill, &byte);
}

bool berth_buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    /* Check a short prefix byte by byte, then compare the buffer against
     * itself shifted by that prefix: memcmp is vectorised, a loop is not. */
    size_t head = MIN(len, (size_t) 16);
    for (size_t i = 0; i < head; i++) {
        if (p[i]) {
            return false;
        }
    }
    return len <= head || memcmp(p, p + head, len - head) == 0;
}

bool berth_iov_is_zero(const struct iovec *iov, int niov)
{
    for (int i = 0; i < niov; i++) {
        if (!berth_buffer_is_zero(iov[i].iov_base, iov[i].iov_len)) {
            return false;
        }
    }
    return true;
}
