/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading typed values out of strings, for command-line (keyval) input and
 * for argspec_parse_size(). Each reader follows what QEMU's keyval visitor
 * and size parser accept, so that an option string means the same thing to
 * berthd as to qemu-storage-daemon; they report what kind of failure they
 * met rather than a message, because the message depends on the member
 * being decoded and is chosen by argspec.c.
 */
#include "util/error.h"
#include "berth/util/argspec.h"
#include "util/argspec-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t suffix_multiplier(char c)
{
    switch (g_ascii_toupper(c)) {
    case 'B': return 1;
    case 'K': return UINT64_C(1) << 10;
    case 'M': return UINT64_C(1) << 20;
    case 'G': return UINT64_C(1) << 30;
    case 'T': return UINT64_C(1) << 40;
    case 'P': return UINT64_C(1) << 50;
    case 'E': return UINT64_C(1) << 60;
    default:  return 0;
    }
}

static int digit_value(char c, unsigned base)
{
    int v;

    if (g_ascii_isdigit(c)) {
        v = c - '0';
    } else if (g_ascii_isxdigit(c)) {
        v = g_ascii_tolower(c) - 'a' + 10;
    } else {
        return -1;
    }
    return (unsigned) v < base ? v : -1;
}

/*
 * Accepts what QEMU's size parser accepts: leading blanks, a decimal or 0x
 * hexadecimal integer, for decimals an optional fraction, then at most one
 * suffix letter. A non-zero fraction needs a multiplier ("1.5" and "1.5B" are
 * rejected, as fractional bytes mean nothing). The fraction is scaled in
 * floating point and truncated, as QEMU does, which is exact for the inputs
 * people write (1.5G, 0.25T).
 */
SizeResult argspec_scan_size(const char *str, uint64_t *out)
{
    const char *p = str;
    unsigned base = 10;
    uint64_t whole = 0, mult = 1, scaled;
    double fraction = 0;
    bool overflow = false;

    while (g_ascii_isspace(*p)) {
        p++;
    }
    if (*p == '-') {
        /* "-1" is a number out of range rather than junk, as in QEMU. */
        return g_ascii_isdigit(p[1]) ? SIZE_RANGE : SIZE_SYNTAX;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && g_ascii_isxdigit(p[2])) {
        base = 16;
        p += 2;
    }
    if (digit_value(*p, base) < 0) {
        return SIZE_SYNTAX;
    }
    for (int d; (d = digit_value(*p, base)) >= 0; p++) {
        if (whole > (UINT64_MAX - d) / base) {
            overflow = true; /* keep scanning: trailing junk still wins */
        } else {
            whole = whole * base + d;
        }
    }
    if (*p == '.') {
        const char *start = p++;

        if (base != 10) {
            return SIZE_SYNTAX;
        }
        while (g_ascii_isdigit(*p)) {
            p++;
        }
        /* At most a few digits matter; the copy is bounded by the input. */
        g_autofree char *digits = g_strndup(start, p - start);
        fraction = g_ascii_strtod(digits, NULL); /* "." alone reads as 0 */
    }
    if (*p) {
        mult = suffix_multiplier(*p++);
        if (!mult || *p) {
            return SIZE_SYNTAX;
        }
    }
    if (fraction != 0 && mult == 1) {
        return SIZE_SYNTAX;
    }
    if (overflow || whole > UINT64_MAX / mult) {
        return SIZE_RANGE;
    }
    scaled = whole * mult;
    if (fraction != 0) {
        /* fraction < 1 and mult <= 2^60, so this fits before the add. */
        uint64_t part = (uint64_t) (fraction * (double) mult);

        if (part > UINT64_MAX - scaled) {
            return SIZE_RANGE;
        }
        scaled += part;
    }
    *out = scaled;
    return SIZE_OK;
}

bool argspec_parse_size(const char *str, uint64_t *out, GError **errp)
{
    uint64_t value = 0;

    g_return_val_if_fail(str != NULL, false);

    switch (argspec_scan_size(str, &value)) {
    case SIZE_OK:
        if (out) {
            *out = value;
        }
        return true;
    case SIZE_RANGE:
        berth_error_invalid(errp, "Size '%s' is out of range: it must be a non-negative "
                            "number below 2^64", str);
        return false;
    case SIZE_SYNTAX:
    default:
        berth_error_invalid(errp, "Invalid size '%s': expected a number with an optional "
                            "suffix k, M, G, T, P or E", str);
        return false;
    }
}

/*
 * QEMU reads keyval integers with base 0, so "0x10" is 16 and "010" is 8; we
 * keep that so that option strings mean the same thing to both programs.
 */
bool argspec_scan_int(const char *str, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (!*str) {
        return false;
    }
    errno = 0;
    v = strtoll(str, &end, 0);
    if (errno || end == str || *end) {
        return false;
    }
    *out = v;
    return true;
}

UintResult argspec_scan_uint(const char *str, uint64_t *out)
{
    const char *p = str;
    char *end = NULL;
    unsigned long long v;

    while (g_ascii_isspace(*p)) {
        p++;
    }
    if (*p == '-') {
        /* strtoull would silently wrap "-1" to 2^64-1. */
        int64_t ignored;
        return argspec_scan_int(str, &ignored) ? UINT_NEGATIVE : UINT_SYNTAX;
    }
    if (!*p) {
        return UINT_SYNTAX;
    }
    errno = 0;
    v = strtoull(p, &end, 0);
    if (errno || end == p || *end) {
        return UINT_SYNTAX;
    }
    *out = v;
    return UINT_OK;
}

bool argspec_scan_bool(const char *str, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true" };
    static const char *const no[] = { "off", "no", "false" };

    for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (!strcmp(str, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcmp(str, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}
