/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * JSON text exactly as QEMU's monitor writes it, so that a reply from berth
 * and one from qemu-storage-daemon are the same bytes when they carry the
 * same values: ", " and ": " separators (or QEMU's pretty layout), members
 * of an object in the order of QEMU's dictionary, every character outside
 * printable ASCII as an uppercase \uXXXX escape, doubles as "%.17g".
 * The one departure: a double that is infinite or NaN, which QEMU prints
 * as inf or nan, is written as null, so the output is always JSON (the
 * monitor's reader refuses such numbers, so none comes from a client).
 *
 * The member order is QEMU's hash-bucket order (its dictionaries are hash
 * tables with 512 buckets iterated in bucket order, newest entry first
 * within a bucket); it looks arbitrary but is what QEMU's clients see.
 *
 * Ownership: the caller owns `out` and the returned strings.
 * Threads: pure, any thread.
 */
#ifndef BERTH_QAPI_JSON_WRITER_H
#define BERTH_QAPI_JSON_WRITER_H

#include <glib.h>
#include <stdbool.h>
#include <json-c/json.h>

G_BEGIN_DECLS

/* Append `obj` (NULL writes null). No trailing newline. */
void qapi_json_append(GString *out, json_object *obj, bool pretty);
char *qapi_json_to_string(json_object *obj, bool pretty);

/*
 * The members of object `obj` in QEMU's iteration order, as a new array of
 * borrowed key strings (NULL-terminated; g_free() the array only).
 */
const char **qapi_json_object_keys(json_object *obj);

G_END_DECLS

#endif
