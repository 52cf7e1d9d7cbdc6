/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Authorization objects, as QEMU 7.2 has them: what a TLS server's
 * `tls-authz=ID` names to decide whether a peer's identity (the x509
 * distinguished name of its certificate, or its PSK username) may in.
 *
 *   authz-simple    identity=NAME: that one identity is allowed
 *   authz-list      policy=allow|deny (the default when no rule matches;
 *                   deny unless given) and rules, checked in order, each
 *                   {match, policy, format=exact|glob}; a glob has the
 *                   shell wildcards '*' and '?' (GLib's pattern match, as
 *                   QEMU uses, so '[' is an ordinary character)
 *   authz-listfile  filename=FILE holding an authz-list as JSON
 *                   ({"policy": "deny", "rules": [...]}); with refresh=on
 *                   (the default) the file is read again whenever it
 *                   changes, and while it cannot be read or parsed every
 *                   identity is denied
 *
 * All three are one interface: berth_authz_find() returns any of them and
 * berth_authz_is_allowed() asks it.
 *
 * Ownership: a BerthAuthz belongs to its object in the object table; the
 * pointers returned here are borrowed. Pin the object (qmp_object_pin())
 * to keep it alive.
 *
 * Threads: objects are created, found and deleted on the control plane (a
 * file's reloads run there too); berth_authz_is_allowed() may be called
 * from any thread while the object is alive.
 */
#ifndef BERTH_IO_AUTHZ_H
#define BERTH_IO_AUTHZ_H

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

typedef struct BerthAuthz BerthAuthz;

/* Object type names, as QEMU spells them. */
#define BERTH_TYPE_AUTHZ_SIMPLE "authz-simple"
#define BERTH_TYPE_AUTHZ_LIST "authz-list"
#define BERTH_TYPE_AUTHZ_LIST_FILE "authz-listfile"

/* The authorization object with this id, of any of the types above.
 * Borrowed, or NULL with errp set ("No authorization object with id 'x'"). */
BerthAuthz *berth_authz_find(const char *id, GError **errp);

/* May `identity` in? A NULL authz or identity is never allowed. */
bool berth_authz_is_allowed(BerthAuthz *authz, const char *identity);

/* Register the three object types with the object table (idempotent). */
void berth_authz_object_types_init(void);

G_END_DECLS

#endif
