/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Secret objects: what `--object secret` (or QMP object-add) creates, as
 * QEMU 7.2 has them. A secret holds bytes given inline (`data=`) or read
 * from a file (`file=`), optionally base64 encoded (`format=base64`) and
 * optionally encrypted with another secret (`keyid=` names a secret of
 * exactly 32 bytes, the AES-256-CBC key; `iv=` is the base64 of the 16-byte
 * IV; PKCS#7 padding). Everything is decoded and decrypted once, when the
 * object is created, so a bad secret is reported to whoever added it; users
 * such as tls-creds-x509 `passwordid=` look the plain bytes up by id.
 *
 * Ownership: the object table owns the secret. Every lookup returns a new
 * copy that the caller owns and should wipe once used (berth_secret_free()
 * does both); the object wipes its own copy when it is deleted.
 *
 * Threads: control plane only, like the object table.
 */
#ifndef BERTH_IO_SECRET_H
#define BERTH_IO_SECRET_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

#define BERTH_TYPE_SECRET "secret"

/*
 * The bytes of secret `id`: a copy of *len bytes followed by a NUL that
 * *len does not count (secrets may contain NULs). NULL with errp set in
 * QEMU's words: "No secret with id 'x'", "Object with id 'x' is not a
 * secret".
 */
uint8_t *berth_secret_lookup(const char *id, size_t *len, GError **errp);

/* The secret as a NUL-terminated string; it must be valid UTF-8 ("Data from
 * secret x is not valid UTF-8"). */
char *berth_secret_lookup_as_utf8(const char *id, GError **errp);

/* The secret's bytes, base64 encoded (what librbd and the like want). */
char *berth_secret_lookup_as_base64(const char *id, GError **errp);

/* Wipe the first `len` bytes of a looked-up copy and free it; NULL is
 * ignored. The strings above hold no NUL, so strlen() covers them. */
void berth_secret_free(void *data, size_t len);

/* Register the "secret" object type with the object table (idempotent). */
void berth_secret_object_type_init(void);

G_END_DECLS

#endif
