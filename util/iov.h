/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Byte ranges of struct iovec arrays, walked in place (never flattened):
 * shared by the NBD client session, which lands reply data in the caller's
 * buffers, the nbd block driver, which cuts requests into pieces, and the
 * drivers that copy into or fill a request's buffers.
 * Pure functions; the arrays and their buffers stay the caller's.
 */
#ifndef BERTH_UTIL_IOV_H
#define BERTH_UTIL_IOV_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

G_BEGIN_DECLS

uint64_t berth_iov_size(const struct iovec *iov, int niov);

/*
 * Point out[0..max_out) at bytes [off, off + len) of iov and return how
 * many entries were used; *covered (may be NULL) gets the bytes they span,
 * less than len when max_out or the array runs out first.
 */
int berth_iov_slice(const struct iovec *iov, int niov, uint64_t off, uint64_t len,
                    struct iovec *out, int max_out, uint64_t *covered);

/* Copy len bytes of buf to offset off of iov (bytes past its end are dropped). */
void berth_iov_from_buf(const struct iovec *iov, int niov, uint64_t off, const void *buf,
                        size_t len);

/* Fill len bytes at offset off of iov with c. */
void berth_iov_memset(const struct iovec *iov, int niov, uint64_t off, int c, uint64_t len);

/*
 * A cursor over an iovec array, front to back. Walking past the end of the
 * array stops silently: callers check lengths before they walk.
 */
typedef struct BerthIovCursor {
    const struct iovec *iov;
    int niov;
    int idx;
    size_t off;                 /* within iov[idx] */
} BerthIovCursor;

void berth_iov_cursor_init(BerthIovCursor *c, const struct iovec *iov, int niov);
void berth_iov_cursor_skip(BerthIovCursor *c, size_t bytes);
void berth_iov_cursor_to_buf(BerthIovCursor *c, void *buf, size_t bytes);
void berth_iov_cursor_from_buf(BerthIovCursor *c, const void *buf, size_t bytes);
void berth_iov_cursor_memset(BerthIovCursor *c, int byte, size_t bytes);

/* True when every byte is zero. */
bool berth_buffer_is_zero(const void *buf, size_t len);
bool berth_iov_is_zero(const struct iovec *iov, int niov);

G_END_DECLS

#endif
