/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Strict UTF-8 decoding shared by the QMP reader (which refuses malformed
 * input) and writer (which escapes what it emits). QEMU's modified UTF-8
 * spelling of U+0000 (C0 80) is accepted because QEMU's peers send it.
 */
#include "util/utf8.h"

/* Decode one UTF-8 sequence; returns its length, or 0 if it is malformed
 * (overlong, surrogate, beyond U+10FFFF, truncated). */
size_t berth_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t n;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        n = 2, c = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3, c = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4, c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > len) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    /* QEMU's modified UTF-8 spells U+0000 as C0 80; accept it as NUL. */
    if (n == 2 && c == 0) {
        *cp = 0;
        return 2;
    }
    if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return n;
}
