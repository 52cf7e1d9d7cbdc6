/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The sparse bit array of sparse-bitmap.h. A page is 512 64-bit words; a
 * NULL entry in the page table is a page of clear bits. Each page keeps its
 * count of set bits beside the table, which makes freeing an emptied page
 * and skipping clean or full pages in the searches cheap.
 */
#include "util/sparse-bitmap.h"

#include <string.h>

#define WORD_BITS 64
#define PAGE_WORDS 512
#define PAGE_BITS ((uint64_t) PAGE_WORDS * WORD_BITS)

struct BerthBitmap {
    uint64_t nbits;
    uint64_t count;
    uint64_t npages;
    uint64_t **pages;
    uint32_t *page_count;   /* set bits per page */
};

BerthBitmap *berth_bitmap_new(uint64_t nbits)
{
    g_return_val_if_fail(nbits > 0 && nbits <= BERTH_BITMAP_MAX_BITS, NULL);
    BerthBitmap *b = g_new0(BerthBitmap, 1);
    b->nbits = nbits;
    b->npages = (nbits + PAGE_BITS - 1) / PAGE_BITS;
    b->pages = g_new0(uint64_t *, b->npages);
    b->page_count = g_new0(uint32_t, b->npages);
    return b;
}

void berth_bitmap_free(BerthBitmap *b)
{
    if (!b) {
        return;
    }
    for (uint64_t i = 0; i < b->npages; i++) {
        g_free(b->pages[i]);
    }
    g_free(b->pages);
    g_free(b->page_count);
    g_free(b);
}

BerthBitmap *berth_bitmap_copy(const BerthBitmap *src)
{
    BerthBitmap *b = berth_bitmap_new(src->nbits);
    for (uint64_t i = 0; i < src->npages; i++) {
        if (src->pages[i]) {
            b->pages[i] = g_memdup2(src->pages[i], PAGE_WORDS * sizeof(uint64_t));
        }
    }
    memcpy(b->page_count, src->page_count, src->npages * sizeof(uint32_t));
    b->count = src->count;
    return b;
}

uint64_t berth_bitmap_size(const BerthBitmap *b)
{
    return b->nbits;
}

uint64_t berth_bitmap_count(const BerthBitmap *b)
{
    return b->count;
}

bool berth_bitmap_get(const BerthBitmap *b, uint64_t bit)
{
    if (bit >= b->nbits) {
        return false;
    }
    const uint64_t *page = b->pages[bit / PAGE_BITS];
    uint64_t in = bit % PAGE_BITS;
    return page && (page[in / WORD_BITS] >> (in % WORD_BITS)) & 1;
}

/* Mask of bits [lo, hi) of one word, 0 <= lo < hi <= 64. */
static uint64_t word_mask(unsigned lo, unsigned hi)
{
    uint64_t m = hi == WORD_BITS ? ~UINT64_C(0) : (UINT64_C(1) << hi) - 1;
    return m & ~((UINT64_C(1) << lo) - 1);
}

/* Set or clear bits [lo, hi) of page p (hi <= PAGE_BITS). */
static void page_update(BerthBitmap *b, uint64_t p, uint64_t lo, uint64_t hi, bool set)
{
    uint64_t *page = b->pages[p];
    if (!page) {
        if (!set) {
            return;
        }
        page = b->pages[p] = g_new0(uint64_t, PAGE_WORDS);
    }
    if (set && b->page_count[p] == PAGE_BITS) {
        return;
    }
    if (!set && lo == 0 && hi == PAGE_BITS) {
        b->count -= b->page_count[p];
        b->page_count[p] = 0;
        g_clear_pointer(&b->pages[p], g_free);
        return;
    }
    int64_t delta = 0;
    while (lo < hi) {
        uint64_t w = lo / WORD_BITS;
        unsigned from = lo % WORD_BITS;
        unsigned to = (unsigned) MIN((uint64_t) WORD_BITS, hi - w * WORD_BITS);
        uint64_t mask = word_mask(from, to);
        uint64_t old = page[w];
        page[w] = set ? old | mask : old & ~mask;
        delta += (int64_t) __builtin_popcountll(page[w]) - __builtin_popcountll(old);
        lo = w * WORD_BITS + to;
    }
    b->page_count[p] = (uint32_t) ((int64_t) b->page_count[p] + delta);
    b->count = (uint64_t) ((int64_t) b->count + delta);
    if (b->page_count[p] == 0) {
        g_clear_pointer(&b->pages[p], g_free);
    }
}

static void range_update(BerthBitmap *b, uint64_t start, uint64_t n, bool set)
{
    if (start >= b->nbits || n == 0) {
        return;
    }
    uint64_t end = n > b->nbits - start ? b->nbits : start + n;
    while (start < end) {
        uint64_t p = start / PAGE_BITS;
        uint64_t page_end = MIN(end, (p + 1) * PAGE_BITS);
        page_update(b, p, start - p * PAGE_BITS, page_end - p * PAGE_BITS, set);
        start = page_end;
    }
}

void berth_bitmap_set(BerthBitmap *b, uint64_t start, uint64_t n)
{
    range_update(b, start, n, true);
}

void berth_bitmap_reset(BerthBitmap *b, uint64_t start, uint64_t n)
{
    range_update(b, start, n, false);
}

void berth_bitmap_reset_all(BerthBitmap *b)
{
    range_update(b, 0, b->nbits, false);
}

/* Bits of the last page beyond nbits are never set, so a page is full at
 * PAGE_BITS set bits only if it is not the last, partial one. */
static uint64_t page_bits(const BerthBitmap *b, uint64_t p)
{
    return p + 1 < b->npages ? PAGE_BITS : b->nbits - p * PAGE_BITS;
}

static uint64_t next_in_page(const uint64_t *page, uint64_t from, uint64_t limit, bool set)
{
    while (from < limit) {
        uint64_t w = from / WORD_BITS;
        uint64_t word = set ? page[w] : ~page[w];
        word &= ~((UINT64_C(1) << (from % WORD_BITS)) - 1);
        if (word) {
            uint64_t bit = w * WORD_BITS + (uint64_t) __builtin_ctzll(word);
            return MIN(bit, limit);
        }
        from = (w + 1) * WORD_BITS;
    }
    return limit;
}

static uint64_t next_bit(const BerthBitmap *b, uint64_t from, bool set)
{
    while (from < b->nbits) {
        uint64_t p = from / PAGE_BITS;
        uint64_t base = p * PAGE_BITS;
        uint64_t limit = page_bits(b, p);
        uint32_t cnt = b->page_count[p];
        if (set ? cnt == 0 : cnt == limit) {
            from = base + PAGE_BITS;
            continue;
        }
        if (!set && cnt == 0) {
            return from;
        }
        if (set && cnt == limit) {
            return from;
        }
        uint64_t found = next_in_page(b->pages[p], from - base, limit, set);
        if (found < limit) {
            return base + found;
        }
        from = base + PAGE_BITS;
    }
    return b->nbits;
}

uint64_t berth_bitmap_next_set(const BerthBitmap *b, uint64_t from)
{
    return next_bit(b, from, true);
}

uint64_t berth_bitmap_next_clear(const BerthBitmap *b, uint64_t from)
{
    return next_bit(b, from, false);
}

bool berth_bitmap_merge(BerthBitmap *dst, const BerthBitmap *src)
{
    if (dst->nbits != src->nbits) {
        return false;
    }
    for (uint64_t p = 0; p < src->npages; p++) {
        const uint64_t *s = src->pages[p];
        if (!s || dst->page_count[p] == page_bits(dst, p)) {
            continue;
        }
        if (!dst->pages[p]) {
            dst->pages[p] = g_memdup2(s, PAGE_WORDS * sizeof(uint64_t));
            dst->page_count[p] = src->page_count[p];
            dst->count += src->page_count[p];
            continue;
        }
        uint64_t *d = dst->pages[p];
        uint32_t cnt = 0;
        for (unsigned w = 0; w < PAGE_WORDS; w++) {
            d[w] |= s[w];
            cnt += (uint32_t) __builtin_popcountll(d[w]);
        }
        dst->count += cnt - dst->page_count[p];
        dst->page_count[p] = cnt;
    }
    return true;
}

void berth_bitmap_resize(BerthBitmap *b, uint64_t nbits)
{
    g_return_if_fail(nbits > 0 && nbits <= BERTH_BITMAP_MAX_BITS);
    if (nbits < b->nbits) {
        range_update(b, nbits, b->nbits - nbits, false);   /* frees emptied pages */
    }
    uint64_t npages = (nbits + PAGE_BITS - 1) / PAGE_BITS;
    for (uint64_t p = npages; p < b->npages; p++) {
        g_assert(b->pages[p] == NULL);
    }
    b->pages = g_renew(uint64_t *, b->pages, npages);
    b->page_count = g_renew(uint32_t, b->page_count, npages);
    for (uint64_t p = b->npages; p < npages; p++) {
        b->pages[p] = NULL;
        b->page_count[p] = 0;
    }
    b->npages = npages;
    b->nbits = nbits;
}
