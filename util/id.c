/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The identifier rule of util/id.h, in ASCII: locale letters and digits
 * beyond it are not identifiers.
 */
#include "util/id.h"

#include <glib.h>

bool berth_id_wellformed(const char *id)
{
    if (!id || !g_ascii_isalpha(id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}
