/*
 * iovec range helpers (include/util/iov.h): one slicing walk, on which
 * copying and filling are built.
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
