/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qemu-storage-daemon's key=value option syntax, parsed into json-c objects.
 *
 *   driver=file,node-name=d0,filename=a,,b.img,cache.direct=on
 *   -> {"driver":"file","node-name":"d0","filename":"a,b.img",
 *       "cache":{"direct":"on"}}
 *
 * Every scalar comes out as a JSON string; argspec_decode(keyval=true) turns
 * them into typed values. ",," is a literal comma inside a value. Dotted keys
 * build nested objects; a key used both as a scalar and as an object, a
 * repeated key, an empty key or a missing '=' is an error naming the key.
 * `implied_key` (may be NULL) names the key of a leading bare value, as
 * qemu-storage-daemon's options have them: --blockdev "driver"
 * ("file,node-name=f0,filename=a.img"), --object "qom-type"
 * ("iothread,id=io0"), --export "type" ("nbd,id=e0,node-name=f0"),
 * --monitor "chardev" ("qmp0"); --nbd-server has none. As in QEMU only the
 * first element can be such a value, and only when it has no '=' before its
 * first ','; it ends at that ',' and is taken literally, so a value with ','
 * or '=' in it needs its key ("a,,b,id=x": "Invalid parameter '': a value
 * given without 'qom-type=' cannot contain ','"). An empty first element is
 * not a value (",id=x": "Invalid parameter ''"), and a bare element after
 * the first is a missing '=' ("driver=file,file": "Expected '=' after
 * parameter 'file'").
 * A lone "help" or "?" element (anywhere, checked before the implied key)
 * asks for help: keyval_parse_with_help() reports it through *help and
 * leaves it out of the result; keyval_parse() fails with QEMU's "Help is not
 * available for this option" once the rest has parsed.
 * As in QEMU, a purely numeric key fragment after the first makes its parent
 * an array ("bitmaps.0=a,bitmaps.1=b" -> {"bitmaps":["a","b"]}), key
 * fragments are QAPI names ([A-Za-z][A-Za-z0-9_-]*) of at most 127 bytes,
 * and a trailing ',' is ignored. Error texts (G_IO_ERROR_INVALID_ARGUMENT),
 * QEMU's where QEMU has one:
 *   "Invalid parameter 'a..b'"            "Expected '=' after parameter 'x'"
 *   "Parameters 'cache.*' used inconsistently"
 *   "Parameter 'b.0' missing"             "Parameter 'k...' is too long"
 *   "Parameter 'node-name' is specified more than once"   (QEMU: last wins)
 *   "Parameter 'a.a...' is nested too deeply"             (more than 32 levels)
 *
 * Ownership: the returned object is new (json_object_put() it).
 * Threads: pure, any thread.
 */
#ifndef BERTH_UTIL_KEYVAL_H
#define BERTH_UTIL_KEYVAL_H

#include <glib.h>
#include <stdbool.h>
#include <json-c/json.h>

G_BEGIN_DECLS

json_object *keyval_parse(const char *params, const char *implied_key, GError **errp);
json_object *keyval_parse_with_help(const char *params, const char *implied_key, bool *help,
                                    GError **errp);

G_END_DECLS

#endif
