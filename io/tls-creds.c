/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Loading TLS credentials and the object types that hold them. Each
 * credential object reads its directory once, when it is created, and
 * reports a missing or unreadable file with QEMU's wording; the gnutls
 * credentials and the compiled priority string then live, reference
 * counted, as long as any session made from them. An encrypted private
 * key is opened with the password that a secret object holds (passwordid=,
 * io/secret.c). Authorization objects are in io/authz*.c.
 */
#include "tls-creds-int.h"

#include "berth/io/secret.h"
#include "berth/util/qmp-command.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PRIORITY_X509 "NORMAL"
#define DEFAULT_PRIORITY_PSK "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"
#define DEFAULT_PSK_USERNAME "qemu"

static void set_gnutls_error(GError **errp, int rc, const char *what, const char *path)
{
    qmp_error_setg(errp, "Cannot load %s %s: %s", what, path,
                   gnutls_strerror(rc));
}

/*
 * The path of `name` in `dir`, or NULL: with errp set when the file is
 * required and cannot be accessed, quietly when it is optional and absent.
 */
static char *creds_file(const char *dir, const char *name, bool required, GError **errp)
{
    char *path = g_build_filename(dir, name, NULL);
    if (access(path, R_OK) == 0) {
        return path;
    }
    int saved = errno;
    if (required || saved != ENOENT) {
        qmp_error_setg(errp, "Unable to access credentials %s: %s",
                       path, g_strerror(saved));
    }
    g_free(path);
    return NULL;
}

static BerthTlsCreds *creds_alloc(BerthTlsCredsKind kind, BerthTlsEndpoint endpoint,
                                  const char *dir)
{
    BerthTlsCreds *creds = g_new0(BerthTlsCreds, 1);
    creds->refcount = 1;
    creds->kind = kind;
    creds->endpoint = endpoint;
    creds->dir = g_strdup(dir);
    return creds;
}

static bool creds_set_priority(BerthTlsCreds *creds, const char *priority, GError **errp)
{
    const char *prio = priority ? priority
                       : creds->kind == BERTH_TLS_CREDS_PSK ? DEFAULT_PRIORITY_PSK
                       : DEFAULT_PRIORITY_X509;
    const char *where = NULL;
    int rc = gnutls_priority_init(&creds->priority, prio, &where);
    if (rc < 0) {
        creds->priority = NULL;
        qmp_error_setg(errp, "Unable to set TLS session priority %s: %s", prio,
                       gnutls_strerror(rc));
        return false;
    }
    return true;
}

/* dh-params.pem if present, else gnutls' well-known parameters. */
static bool load_dh_params(BerthTlsCreds *creds, GError **errp)
{
    GError *local = NULL;
    g_autofree char *path = creds_file(creds->dir, "dh-params.pem", false, &local);
    if (!path) {
        if (local) {
            g_propagate_error(errp, local);
            return false;
        }
        return true;
    }
    g_autofree char *contents = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &contents, &len, errp)) {
        return false;
    }
    gnutls_datum_t datum = { (unsigned char *) contents, (unsigned int) len };
    int rc = gnutls_dh_params_init(&creds->dh);
    if (rc >= 0) {
        rc = gnutls_dh_params_import_pkcs3(creds->dh, &datum, GNUTLS_X509_FMT_PEM);
    }
    if (rc < 0) {
        set_gnutls_error(errp, rc, "DH parameters", path);
        return false;
    }
    return true;
}

/* passwordid: the id of the secret that decrypts the private key, or NULL. */
static BerthTlsCreds *creds_new_x509(const char *dir, BerthTlsEndpoint endpoint,
                                     bool verify_peer, const char *priority,
                                     const char *passwordid, GError **errp)
{
    g_return_val_if_fail(dir != NULL, NULL);
    bool server = endpoint == BERTH_TLS_ENDPOINT_SERVER;
    g_autoptr(BerthTlsCreds) creds = creds_alloc(BERTH_TLS_CREDS_X509, endpoint, dir);
    creds->verify_peer = verify_peer;

    /* Checked in QEMU's order so the first complaint is the same one. */
    g_autofree char *ca = creds_file(dir, "ca-cert.pem", true, errp);
    if (!ca) {
        return NULL;
    }
    g_autofree char *crl = NULL, *cert = NULL, *key = NULL;
    GError *local = NULL;
    if (server) {
        crl = creds_file(dir, "ca-crl.pem", false, &local);
        if (!local) {
            cert = creds_file(dir, "server-cert.pem", true, &local);
        }
        if (!local) {
            key = creds_file(dir, "server-key.pem", true, &local);
        }
    } else {
        cert = creds_file(dir, "client-cert.pem", false, &local);
        if (!local) {
            key = creds_file(dir, "client-key.pem", false, &local);
        }
        if (!local && (!cert) != (!key)) {
            qmp_error_setg(&local, "Unable to access credentials %s/%s: %s", dir,
                           cert ? "client-key.pem" : "client-cert.pem", g_strerror(ENOENT));
        }
    }
    if (local) {
        g_propagate_error(errp, local);
        return NULL;
    }

    int rc = gnutls_certificate_allocate_credentials(&creds->x509);
    if (rc < 0) {
        creds->x509 = NULL;
        set_gnutls_error(errp, rc, "x509 credentials from", dir);
        return NULL;
    }
    rc = gnutls_certificate_set_x509_trust_file(creds->x509, ca, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        set_gnutls_error(errp, rc, "CA certificate", ca);
        return NULL;
    }
    if (cert) {
        char *password = NULL;
        if (passwordid) {
            password = berth_secret_lookup_as_utf8(passwordid, errp);
            if (!password) {
                return NULL;
            }
        }
        rc = gnutls_certificate_set_x509_key_file2(creds->x509, cert, key, GNUTLS_X509_FMT_PEM,
                                                   password, 0);
        berth_secret_free(password, password ? strlen(password) : 0);
        if (rc < 0) {
            qmp_error_setg(errp, "Cannot load certificate '%s' & key '%s': %s", cert, key,
                           gnutls_strerror(rc));
            return NULL;
        }
    }
    if (crl) {
        rc = gnutls_certificate_set_x509_crl_file(creds->x509, crl, GNUTLS_X509_FMT_PEM);
        if (rc < 0) {
            set_gnutls_error(errp, rc, "CRL", crl);
            return NULL;
        }
    }
    if (server) {
        if (!load_dh_params(creds, errp)) {
            return NULL;
        }
        if (creds->dh) {
            gnutls_certificate_set_dh_params(creds->x509, creds->dh);
        } else {
            gnutls_certificate_set_known_dh_params(creds->x509, GNUTLS_SEC_PARAM_MEDIUM);
        }
    }
    if (!creds_set_priority(creds, priority, errp)) {
        return NULL;
    }
    return g_steal_pointer(&creds);
}

BerthTlsCreds *berth_tls_creds_new_x509(const char *dir, BerthTlsEndpoint endpoint,
                                        bool verify_peer, const char *priority,
                                        GError **errp)
{
    return creds_new_x509(dir, endpoint, verify_peer, priority, NULL, errp);
}

/* The hex key of `username` in a psktool file, or NULL with errp set. */
static char *psk_lookup_key(const char *path, const char *username, GError **errp)
{
    g_autofree char *contents = NULL;
    if (!g_file_get_contents(path, &contents, NULL, errp)) {
        return NULL;
    }
    g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
    size_t ulen = strlen(username);
    for (char **l = lines; *l; l++) {
        g_strchomp(*l);
        if (strncmp(*l, username, ulen) == 0 && (*l)[ulen] == ':') {
            return g_strdup(*l + ulen + 1);
        }
    }
    qmp_error_setg(errp, "Username %s not found in PSK file %s",
                   username, path);
    return NULL;
}

BerthTlsCreds *berth_tls_creds_new_psk(const char *dir, BerthTlsEndpoint endpoint,
                                       const char *username, const char *priority,
                                       GError **errp)
{
    g_return_val_if_fail(dir != NULL, NULL);
    g_autoptr(BerthTlsCreds) creds = creds_alloc(BERTH_TLS_CREDS_PSK, endpoint, dir);
    g_autofree char *path = creds_file(dir, "keys.psk", true, errp);
    if (!path) {
        return NULL;
    }
    int rc;
    if (endpoint == BERTH_TLS_ENDPOINT_SERVER) {
        rc = gnutls_psk_allocate_server_credentials(&creds->psk_server);
        if (rc < 0) {
            creds->psk_server = NULL;
            set_gnutls_error(errp, rc, "PSK credentials from", path);
            return NULL;
        }
        rc = gnutls_psk_set_server_credentials_file(creds->psk_server, path);
        if (rc < 0) {
            set_gnutls_error(errp, rc, "PSK file", path);
            return NULL;
        }
        if (!load_dh_params(creds, errp)) {
            return NULL;
        }
        if (creds->dh) {
            gnutls_psk_set_server_dh_params(creds->psk_server, creds->dh);
        } else {
            gnutls_psk_set_server_known_dh_params(creds->psk_server, GNUTLS_SEC_PARAM_MEDIUM);
        }
    } else {
        creds->username = g_strdup(username ? username : DEFAULT_PSK_USERNAME);
        g_autofree char *key = psk_lookup_key(path, creds->username, errp);
        if (!key) {
            return NULL;
        }
        rc = gnutls_psk_allocate_client_credentials(&creds->psk_client);
        if (rc < 0) {
            creds->psk_client = NULL;
            set_gnutls_error(errp, rc, "PSK credentials from", path);
            return NULL;
        }
        gnutls_datum_t datum = { (unsigned char *) key, (unsigned int) strlen(key) };
        rc = gnutls_psk_set_client_credentials(creds->psk_client, creds->username, &datum,
                                               GNUTLS_PSK_KEY_HEX);
        if (rc < 0) {
            set_gnutls_error(errp, rc, "PSK key from", path);
            return NULL;
        }
    }
    if (!creds_set_priority(creds, priority, errp)) {
        return NULL;
    }
    return g_steal_pointer(&creds);
}

BerthTlsCreds *berth_tls_creds_ref(BerthTlsCreds *creds)
{
    g_atomic_int_inc(&creds->refcount);
    return creds;
}

void berth_tls_creds_unref(BerthTlsCreds *creds)
{
    if (!creds || !g_atomic_int_dec_and_test(&creds->refcount)) {
        return;
    }
    if (creds->x509) {
        gnutls_certificate_free_credentials(creds->x509);
    }
    if (creds->psk_server) {
        gnutls_psk_free_server_credentials(creds->psk_server);
    }
    if (creds->psk_client) {
        gnutls_psk_free_client_credentials(creds->psk_client);
    }
    if (creds->dh) {
        gnutls_dh_params_deinit(creds->dh);
    }
    if (creds->priority) {
        gnutls_priority_deinit(creds->priority);
    }
    g_free(creds->dir);
    g_free(creds->username);
    g_free(creds);
}

BerthTlsEndpoint berth_tls_creds_get_endpoint(BerthTlsCreds *creds)
{
    return creds->endpoint;
}

BerthTlsCredsKind berth_tls_creds_get_kind(BerthTlsCreds *creds)
{
    return creds->kind;
}

BerthTlsCreds *berth_tls_creds_find(const char *id, GError **errp)
{
    QmpObject *obj = qmp_object_find(id, BERTH_TYPE_TLS_CREDS_X509);
    if (!obj) {
        obj = qmp_object_find(id, BERTH_TYPE_TLS_CREDS_PSK);
    }
    if (!obj) {
        qmp_error_setg(errp, "No TLS credentials with id '%s'", id);
        return NULL;
    }
    return qmp_object_get_data(obj);
}

/* --- object types --- */

typedef struct {
    char *dir, *priority, *passwordid, *username;
    int endpoint;
    bool verify_peer, sanity_check, loaded;
    bool has_dir, has_endpoint, has_priority, has_passwordid, has_username;
    bool has_verify_peer, has_sanity_check, has_loaded;
} TlsCredsArgs;

/* Indexed by BerthTlsEndpoint. */
static const char *const tls_endpoints[] = { "client", "server", NULL };

#define TLS_CREDS_COMMON_MEMBERS \
    ARG_OPTIONAL("dir", ARG_STR, TlsCredsArgs, dir, has_dir), \
    ARG_ENUM_OPTIONAL("endpoint", tls_endpoints, TlsCredsArgs, endpoint, has_endpoint), \
    ARG_OPTIONAL("verify-peer", ARG_BOOL, TlsCredsArgs, verify_peer, has_verify_peer), \
    ARG_OPTIONAL("priority", ARG_STR, TlsCredsArgs, priority, has_priority), \
    ARG_OPTIONAL("loaded", ARG_BOOL, TlsCredsArgs, loaded, has_loaded)

static const ArgSpec tls_x509_members[] = {
    TLS_CREDS_COMMON_MEMBERS,
    ARG_OPTIONAL("sanity-check", ARG_BOOL, TlsCredsArgs, sanity_check, has_sanity_check),
    ARG_OPTIONAL("passwordid", ARG_STR, TlsCredsArgs, passwordid, has_passwordid),
    ARG_TABLE_END
};
static const ArgSpec *const tls_x509_args[] = { tls_x509_members, NULL };

static const ArgSpec tls_psk_members[] = {
    TLS_CREDS_COMMON_MEMBERS,
    ARG_OPTIONAL("username", ARG_STR, TlsCredsArgs, username, has_username),
    ARG_TABLE_END
};
static const ArgSpec *const tls_psk_args[] = { tls_psk_members, NULL };

/* QEMU's defaults: a client endpoint, and peers verified. */
static bool creds_args_check(const TlsCredsArgs *a, BerthTlsEndpoint *endpoint, GError **errp)
{
    *endpoint = a->has_endpoint ? (BerthTlsEndpoint) a->endpoint : BERTH_TLS_ENDPOINT_CLIENT;
    if (!a->has_dir) {
        qmp_error_setg(errp, "Missing 'dir' property value");
        return false;
    }
    return true;
}

static gpointer tls_x509_create(const char *id, void *opaque, GError **errp)
{
    TlsCredsArgs *a = opaque;
    BerthTlsEndpoint endpoint;
    if (!creds_args_check(a, &endpoint, errp)) {
        return NULL;
    }
    bool verify = a->has_verify_peer ? a->verify_peer : true;
    return creds_new_x509(a->dir, endpoint, verify, a->has_priority ? a->priority : NULL,
                          a->has_passwordid ? a->passwordid : NULL, errp);
}

static gpointer tls_psk_create(const char *id, void *opaque, GError **errp)
{
    TlsCredsArgs *a = opaque;
    BerthTlsEndpoint endpoint;
    if (!creds_args_check(a, &endpoint, errp)) {
        return NULL;
    }
    return berth_tls_creds_new_psk(a->dir, endpoint, a->has_username ? a->username : NULL,
                                   a->has_priority ? a->priority : NULL, errp);
}

static void tls_creds_destroy(gpointer data)
{
    berth_tls_creds_unref(data);
}

static const QmpObjectType tls_x509_type = {
    .name = BERTH_TYPE_TLS_CREDS_X509,
    .args = tls_x509_args,
    .args_size = sizeof(TlsCredsArgs),
    .create = tls_x509_create,
    .destroy = tls_creds_destroy,
};

static const QmpObjectType tls_psk_type = {
    .name = BERTH_TYPE_TLS_CREDS_PSK,
    .args = tls_psk_args,
    .args_size = sizeof(TlsCredsArgs),
    .create = tls_psk_create,
    .destroy = tls_creds_destroy,
};

void berth_tls_object_types_init(void)
{
    qmp_object_type_register(&tls_x509_type);
    qmp_object_type_register(&tls_psk_type);
    /* What the credentials work with: passwordid= and tls-authz=. */
    berth_secret_object_type_init();
    berth_authz_object_types_init();
}
