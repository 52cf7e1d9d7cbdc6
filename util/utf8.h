/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Strict UTF-8 decoding (see util/utf8.c). Pure, any thread.
 */
#ifndef BERTH_UTIL_UTF8_H
#define BERTH_UTIL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decode one sequence at s: its length and *cp, or 0 if malformed
 * (overlong, surrogate, beyond U+10FFFF, truncated). C0 80 decodes to 0. */
size_t berth_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

#endif
