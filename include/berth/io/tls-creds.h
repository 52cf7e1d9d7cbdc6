/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * TLS credentials objects: what `--object tls-creds-x509` and
 * `tls-creds-psk` (or QMP object-add) create. Credentials load their files
 * once, at creation, from a directory laid out as QEMU expects (ca-cert.pem,
 * server-cert.pem, server-key.pem, optional ca-crl.pem and dh-params.pem;
 * client-cert.pem and client-key.pem for a client; keys.psk in psktool's
 * `username:hexkey` format), so a bad file is reported to whoever added the
 * object, not to the first peer. An
 * x509 private key may be encrypted (PKCS#8): `passwordid=ID` names the
 * secret object (berth/io/secret.h) that holds its password. The
 * authorization objects that `tls-authz=` names are in berth/io/authz.h.
 *
 * Ownership: BerthTlsCreds is reference counted; the object table holds one
 * reference and every TLS channel made from the credentials holds another,
 * so deleting the object never pulls credentials from under a live session.
 *
 * Threads: created and destroyed on the control plane; a reference may be
 * used from any thread (gnutls credentials are read-only once loaded).
 */
#ifndef BERTH_IO_TLS_CREDS_H
#define BERTH_IO_TLS_CREDS_H

#include <glib.h>
#include <stdbool.h>

#include "berth/io/authz.h"

G_BEGIN_DECLS

typedef enum {
    BERTH_TLS_ENDPOINT_CLIENT,
    BERTH_TLS_ENDPOINT_SERVER,
} BerthTlsEndpoint;

typedef enum {
    BERTH_TLS_CREDS_X509,
    BERTH_TLS_CREDS_PSK,
} BerthTlsCredsKind;

typedef struct BerthTlsCreds BerthTlsCreds;

/* Object type names, as QEMU spells them. */
#define BERTH_TYPE_TLS_CREDS_X509 "tls-creds-x509"
#define BERTH_TYPE_TLS_CREDS_PSK "tls-creds-psk"

/*
 * Load x509 credentials from `dir`. verify_peer: a server requires and
 * checks a client certificate; a client checks the server's. priority is a
 * gnutls priority string or NULL for the default.
 */
BerthTlsCreds *berth_tls_creds_new_x509(const char *dir, BerthTlsEndpoint endpoint,
                                        bool verify_peer, const char *priority,
                                        GError **errp);
/* Load PSK credentials from dir/keys.psk; a client uses `username` (NULL:
 * "qemu", as QEMU does) and must find its key there. */
BerthTlsCreds *berth_tls_creds_new_psk(const char *dir, BerthTlsEndpoint endpoint,
                                       const char *username, const char *priority,
                                       GError **errp);
BerthTlsCreds *berth_tls_creds_ref(BerthTlsCreds *creds);
void berth_tls_creds_unref(BerthTlsCreds *creds);
BerthTlsEndpoint berth_tls_creds_get_endpoint(BerthTlsCreds *creds);
BerthTlsCredsKind berth_tls_creds_get_kind(BerthTlsCreds *creds);

/*
 * Find credentials by object id (either type). Borrowed, or NULL with errp
 * set in QEMU's words.
 */
BerthTlsCreds *berth_tls_creds_find(const char *id, GError **errp);

/* Register the two credential types with the object table, and the secret
 * and authz types that they work with (idempotent). */
void berth_tls_object_types_init(void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BerthTlsCreds, berth_tls_creds_unref)

G_END_DECLS

#endif
