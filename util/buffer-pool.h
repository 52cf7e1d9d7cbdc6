/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Large data buffers recycled per thread: the NBD server's request payloads
 * and read buffers. Allocating a fresh megabyte for every request costs a
 * page fault and a zeroed page per 4 KiB (the allocator gives large blocks
 * back to the kernel on free); a buffer taken from the pool is warm.
 *
 * Buffers of at least BERTH_BUFFER_POOL_MIN bytes are page-aligned (so
 * O_DIRECT can use them as they are) and, when given back on a thread that
 * runs its GMainContext, kept for reuse: at most BERTH_BUFFER_POOL_MAX_BYTES
 * per thread, and a buffer nobody took for a second or two is freed by a
 * timer on that context (which exists only while the pool holds any). On
 * other threads, and for smaller sizes, take and give are plain malloc and
 * free.
 *
 * Ownership: a taken buffer is the caller's until it gives it back, with the
 * capacity take reported; any thread may give it back.
 */
#ifndef BERTH_UTIL_BUFFER_POOL_H
#define BERTH_UTIL_BUFFER_POOL_H

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

#define BERTH_BUFFER_POOL_MIN (64 * 1024)
#define BERTH_BUFFER_POOL_MAX_BYTES (32u * 1024 * 1024)

/* At least size (> 0) bytes, uninitialised, and their capacity in *cap;
 * NULL when memory runs out. */
void *berth_buffer_take(size_t size, size_t *cap);
/* Give back a buffer from berth_buffer_take() with its capacity; NULL is
 * ignored. */
void berth_buffer_give(void *buf, size_t cap);
/* Bytes the calling thread's pool keeps for reuse now. */
size_t berth_buffer_pool_held(void);

G_END_DECLS

#endif
