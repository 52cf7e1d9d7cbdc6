/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The invalid-argument error that option and argument decoders report
 * (G_IO_ERROR_INVALID_ARGUMENT with a printf-style message), made once.
 * Private to berth.
 */
#ifndef BERTH_UTIL_ERROR_H
#define BERTH_UTIL_ERROR_H

#include <gio/gio.h>
#include <stdbool.h>

/* Sets *errp (errp may be NULL) and returns false, for
 * `return berth_error_invalid(errp, ...);`. */
bool berth_error_invalid(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

#endif
