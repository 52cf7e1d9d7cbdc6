/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * json-c with GLib's automatic cleanup: include this instead of
 * <json-c/json.h> to use g_autoptr(json_object). Defined once here, because
 * GLib allows one cleanup definition per type in a translation unit.
 */
#ifndef BERTH_UTIL_JSON_H
#define BERTH_UTIL_JSON_H

#include <glib.h>
#include <json-c/json.h>

G_DEFINE_AUTOPTR_CLEANUP_FUNC(json_object, json_object_put)

#endif
