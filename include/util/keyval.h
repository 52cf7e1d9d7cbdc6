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
 * "--chardev socket,id=c0" (implied key "backend").
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
