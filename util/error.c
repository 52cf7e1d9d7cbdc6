/* SPDX-License-Identifier: GPL-2.0-or-later */
/* See util/error.h. */
#include "util/error.h"

bool berth_error_invalid(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, msg);
    return false;
}
