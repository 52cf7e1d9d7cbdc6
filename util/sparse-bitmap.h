/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A bit array of a fixed number of bits whose memory follows its contents:
 * bits live in 4 KiB pages (32768 bits each) that are allocated when a bit
 * in them is first set and freed again when the last one is cleared, so a
 * clean bitmap of a large disk costs only its page table (8 bytes per 32768
 * bits) and a fully dirty one at most nbits / 8 bytes. Range operations work
 * a 64-bit word at a time; the number of set bits is kept up to date.
 *
 * Ownership: the caller owns a BerthBitmap and frees it with
 * berth_bitmap_free(). Threads: none of its own; callers serialise access
 * (block/dirty-bitmap.c holds its node's bitmap lock).
 */
#ifndef BERTH_UTIL_SPARSE_BITMAP_H
#define BERTH_UTIL_SPARSE_BITMAP_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The most bits a bitmap may have: its page table stays below 16 MiB. */
#define BERTH_BITMAP_MAX_BITS (UINT64_C(1) << 36)

typedef struct BerthBitmap BerthBitmap;

/* A bitmap of nbits clear bits (0 < nbits <= BERTH_BITMAP_MAX_BITS). */
BerthBitmap *berth_bitmap_new(uint64_t nbits);
void berth_bitmap_free(BerthBitmap *b);
BerthBitmap *berth_bitmap_copy(const BerthBitmap *b);

uint64_t berth_bitmap_size(const BerthBitmap *b);
uint64_t berth_bitmap_count(const BerthBitmap *b);
bool berth_bitmap_get(const BerthBitmap *b, uint64_t bit);

/* Set or clear bits [start, start + n), clipped to the bitmap's size. */
void berth_bitmap_set(BerthBitmap *b, uint64_t start, uint64_t n);
void berth_bitmap_reset(BerthBitmap *b, uint64_t start, uint64_t n);
void berth_bitmap_reset_all(BerthBitmap *b);

/* The first set (clear) bit at or after `from`, or the size if none. */
uint64_t berth_bitmap_next_set(const BerthBitmap *b, uint64_t from);
uint64_t berth_bitmap_next_clear(const BerthBitmap *b, uint64_t from);

/* Change the size (0 < nbits <= BERTH_BITMAP_MAX_BITS): bits past a
 * smaller size are dropped, bits a larger one adds are clear. */
void berth_bitmap_resize(BerthBitmap *b, uint64_t nbits);

/* dst |= src; both must have the same size (false, nothing done, if not). */
bool berth_bitmap_merge(BerthBitmap *dst, const BerthBitmap *src);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BerthBitmap, berth_bitmap_free)

G_END_DECLS

#endif
