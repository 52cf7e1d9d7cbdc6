/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to util/: the string readers that argspec.c uses for keyval input
 * (argspec-scan.c). They return a verdict instead of a GError so that the
 * decoder can word the message for the member at hand, as QEMU does.
 */
#ifndef BERTH_UTIL_ARGSPEC_INT_H
#define BERTH_UTIL_ARGSPEC_INT_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    SIZE_OK,
    SIZE_SYNTAX,  /* not a size at all */
    SIZE_RANGE,   /* negative, or 2^64 and beyond */
} SizeResult;

typedef enum {
    UINT_OK,
    UINT_SYNTAX,
    UINT_NEGATIVE, /* a well-formed negative number */
} UintResult;

/* `out` is written only on success. */
SizeResult argspec_scan_size(const char *str, uint64_t *out);
bool argspec_scan_int(const char *str, int64_t *out);
UintResult argspec_scan_uint(const char *str, uint64_t *out);
bool argspec_scan_bool(const char *str, bool *out);

#endif
