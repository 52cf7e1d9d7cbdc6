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
 * `implied_key` (may be NULL) names the key of a leading bare value, as in
 * "--object tls-creds-x509,id=t0" (implied key "qom-type") or
 * "--chardev socket,id=c0" (implied key "backend"); qemu-storage-daemon's
 * --blockdev implies "driver" ("null-co,node-name=n0").
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
#include <json-c/json.h>

G_BEGIN_DECLS

json_object *keyval_parse(const char *params, const char *implied_key, GError **errp);

G_END_DECLS

#endif
