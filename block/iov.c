/*
 * Scatter-gather helpers shared by the drivers. Requests carry the caller's
 * iovec array as is (the NBD server hands us its receive buffers), so drivers
 * that copy (memory, bounce buffers for O_DIRECT) or fill (null-co, zero
 * tails past the end of a file) walk that array with a cursor instead of
 * flattening it into a temporary buffer.
 */
#include "block/block-int.h"

#include <string.h>

void bdrv_iov_cursor_init(BdrvIovCursor *c, const struct iovec *iov, int niov)
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
static void cursor_walk(BdrvIovCursor *c, size_t bytes,
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

void bdrv_iov_cursor_skip(BdrvIovCursor *c, size_t bytes)
{
    cursor_walk(c, bytes, NULL, NULL);
}

static void copy_out(void *piece, size_t len, gpointer data)
{
    char **buf = data;

    memcpy(*buf, piece, len);
    *buf += len;
}

void bdrv_iov_cursor_to_buf(BdrvIovCursor *c, void *buf, size_t bytes)
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

void bdrv_iov_cursor_from_buf(BdrvIovCursor *c, const void *buf, size_t bytes)
{
    const char *p = buf;

    cursor_walk(c, bytes, copy_in, &p);
}

static void fill(void *piece, size_t len, gpointer data)
{
    memset(piece, *(int *) data, len);
}

void bdrv_iov_cursor_memset(BdrvIovCursor *c, int byte, size_t bytes)
{
    cursor_walk(c, bytes, fill, &byte);
}

bool bdrv_buffer_is_zero(const void *buf, size_t len)
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

bool bdrv_iov_is_zero(const struct iovec *iov, int niov)
{
    for (int i = 0; i < niov; i++) {
        if (!bdrv_buffer_is_zero(iov[i].iov_base, iov[i].iov_len)) {
            return false;
        }
    }
    return true;
}
