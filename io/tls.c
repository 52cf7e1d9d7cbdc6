/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The TLS channel: a gnutls session whose transport is another BerthChannel
 * (read and written through that channel's own non-blocking calls), so the
 * session never touches the fd itself and AGAIN travels up unchanged. gnutls
 * says which way it was blocked (gnutls_record_get_direction) and the
 * channel's `wants` hook passes that on, so owners poll for what TLS needs,
 * not for what they asked. A write interrupted by AGAIN is finished by
 * calling gnutls_record_send() with no data, as gnutls requires; callers
 * retry with the same leading bytes anyway, so its count is theirs.
 */
#include "io/tls.h"
#include "channel-int.h"
#include "tls-creds-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

/* One record's worth of small iovecs is gathered before encrypting. */
#define TLS_GATHER_SIZE 16384

typedef struct {
    BerthChannel base;
    BerthChannel *inner;
    BerthTlsCreds *creds;
    gnutls_session_t session;
    bool handshake_done;
    bool write_pending;         /* a record send returned AGAIN */
    GIOCondition hs_wants, read_wants, write_wants;
    char *identity;
    char *hostname;             /* a client checks the server's certificate against it */
    GError *transport_error;    /* first hard error of the wrapped channel */
    uint8_t gather[TLS_GATHER_SIZE];
} TlsChannel;

static const BerthChannelOps tls_ops;

bool berth_channel_is_tls(BerthChannel *ch)
{
    return ch && ch->ops == &tls_ops;
}

static GIOCondition tls_direction(TlsChannel *t)
{
    return gnutls_record_get_direction(t->session) ? G_IO_OUT : G_IO_IN;
}

static void keep_transport_error(TlsChannel *t, GError *err)
{
    if (!t->transport_error) {
        t->transport_error = err;
    } else {
        g_error_free(err);
    }
}

/* What gnutls is told of a read or write on the inner channel. */
static ssize_t transport_result(TlsChannel *t, ssize_t n, GError *err)
{
    if (n == BERTH_CHANNEL_AGAIN) {
        gnutls_transport_set_errno(t->session, EAGAIN);
        return -1;
    }
    if (n == BERTH_CHANNEL_ERROR) {
        keep_transport_error(t, err);
        gnutls_transport_set_errno(t->session, EIO);
        return -1;
    }
    return n;
}

static ssize_t tls_pull(gnutls_transport_ptr_t opaque, void *buf, size_t len)
{
    TlsChannel *t = opaque;
    GError *err = NULL;
    ssize_t n = berth_channel_read(t->inner, buf, len, &err);

    return transport_result(t, n, err);
}

static ssize_t tls_vec_push(gnutls_transport_ptr_t opaque, const giovec_t *iov, int iovcnt)
{
    TlsChannel *t = opaque;
    GError *err = NULL;
    G_STATIC_ASSERT(sizeof(giovec_t) == sizeof(struct iovec));
    ssize_t n = berth_channel_writev(t->inner, (const struct iovec *) iov, iovcnt, &err);

    return transport_result(t, n, err);
}

/* Only consulted if someone sets a record timeout; we never wait inside. */
static int tls_pull_timeout(gnutls_transport_ptr_t opaque, unsigned int ms)
{
    TlsChannel *t = opaque;
    struct pollfd pfd = { .fd = t->inner->fd, .events = POLLIN };
    return poll(&pfd, 1, 0);
}

static void tls_set_error(TlsChannel *t, int rc, const char *what, GError **errp)
{
    if (t->transport_error) {
        g_propagate_prefixed_error(errp, g_steal_pointer(&t->transport_error), "TLS %s: ",
                                   what);
        return;
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "TLS %s with %s failed: %s", what,
                t->base.peer, gnutls_strerror(rc));
}

static bool tls_check_ready(TlsChannel *t, GError **errp)
{
    if (!t->handshake_done) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                    "TLS handshake with %s is not complete", t->base.peer);
        return false;
    }
    return true;
}

static ssize_t tls_readv(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    TlsChannel *t = (TlsChannel *) ch;
    if (!tls_check_ready(t, errp)) {
        return BERTH_CHANNEL_ERROR;
    }
    size_t total = 0;
    for (int i = 0; i < niov; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            ssize_t r = gnutls_record_recv(t->session, (char *) iov[i].iov_base + off,
                                           iov[i].iov_len - off);
            if (r > 0) {
                off += r;
                total += r;
                continue;
            }
            if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION) {
                /* End of stream, with or without close_notify: either way
                 * the peer has gone, and it says so again next time. */
                return total;
            }
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                t->read_wants = tls_direction(t);
                return total ? (ssize_t) total : BERTH_CHANNEL_AGAIN;
            }
            tls_set_error(t, (int) r, "read", errp);
            return BERTH_CHANNEL_ERROR;
        }
    }
    t->read_wants = G_IO_IN;
    return total;
}

static ssize_t tls_writev(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp)
{
    TlsChannel *t = (TlsChannel *) ch;
    if (!tls_check_ready(t, errp)) {
        return BERTH_CHANNEL_ERROR;
    }
    size_t total = 0;
    if (t->write_pending) {
        ssize_t r = gnutls_record_send(t->session, NULL, 0);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            t->write_wants = tls_direction(t);
            return BERTH_CHANNEL_AGAIN;
        }
        t->write_pending = false;
        if (r < 0) {
            tls_set_error(t, (int) r, "write", errp);
            return BERTH_CHANNEL_ERROR;
        }
        total = r;
    }
    /* Position (i, off) in the caller's iovecs, past what is already sent. */
    int i = 0;
    size_t off = total;
    while (i < niov && off >= iov[i].iov_len) {
        off -= iov[i].iov_len;
        i++;
    }
    while (i < niov) {
        const uint8_t *data;
        size_t len;
        if (iov[i].iov_len - off >= TLS_GATHER_SIZE) {
            data = (const uint8_t *) iov[i].iov_base + off;
            len = TLS_GATHER_SIZE;
        } else {
            /* Gather small pieces (reply headers, short payloads) into one
             * record instead of one record each. */
            len = 0;
            for (int j = i; j < niov && len < TLS_GATHER_SIZE; j++) {
                size_t start = j == i ? off : 0;
                size_t take = MIN(iov[j].iov_len - start, TLS_GATHER_SIZE - len);
                memcpy(t->gather + len, (const uint8_t *) iov[j].iov_base + start, take);
                len += take;
            }
            data = t->gather;
        }
        ssize_t r = gnutls_record_send(t->session, data, len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            t->write_pending = true;
            t->write_wants = tls_direction(t);
            return total ? (ssize_t) total : BERTH_CHANNEL_AGAIN;
        }
        if (r < 0) {
            tls_set_error(t, (int) r, "write", errp);
            return BERTH_CHANNEL_ERROR;
        }
        total += r;
        off += r;
        while (i < niov && off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            i++;
        }
    }
    t->write_wants = G_IO_OUT;
    return total;
}

static size_t tls_pending(BerthChannel *ch)
{
    TlsChannel *t = (TlsChannel *) ch;
    return t->handshake_done ? gnutls_record_check_pending(t->session) : 0;
}

static GIOCondition tls_wants(BerthChannel *ch, GIOCondition for_op)
{
    TlsChannel *t = (TlsChannel *) ch;
    if (!t->handshake_done) {
        return t->hs_wants;
    }
    GIOCondition ev = 0;
    if (for_op & G_IO_IN) {
        ev |= t->read_wants;
    }
    if (for_op & G_IO_OUT) {
        ev |= t->write_pending ? t->write_wants : G_IO_OUT;
    }
    return ev;
}

static void tls_shutdown(BerthChannel *ch)
{
    TlsChannel *t = (TlsChannel *) ch;
    if (t->handshake_done && !t->write_pending) {
        /* One non-blocking attempt at close_notify; the peer sees EOF anyway. */
        gnutls_bye(t->session, GNUTLS_SHUT_WR);
    }
    berth_channel_shutdown(t->inner);
}

static void tls_finalize(BerthChannel *ch)
{
    TlsChannel *t = (TlsChannel *) ch;
    gnutls_deinit(t->session);
    berth_channel_unref(t->inner);
    berth_tls_creds_unref(t->creds);
    g_free(t->identity);
    g_free(t->hostname);
    g_clear_error(&t->transport_error);
    ch->fd = -1; /* the wrapped channel's */
}

static const BerthChannelOps tls_ops = {
    .readv = tls_readv,
    .writev = tls_writev,
    .pending = tls_pending,
    .wants = tls_wants,
    .shutdown = tls_shutdown,
    .finalize = tls_finalize,
};

BerthChannel *berth_tls_channel_new(BerthChannel *inner, BerthTlsCreds *creds,
                                    const char *hostname, GError **errp)
{
    g_return_val_if_fail(inner && creds, NULL);
    bool server = creds->endpoint == BERTH_TLS_ENDPOINT_SERVER;
    gnutls_session_t session;
    int rc = gnutls_init(&session, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK);
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot start a TLS session: %s",
                    gnutls_strerror(rc));
        return NULL;
    }
    rc = gnutls_priority_set(session, creds->priority);
    if (rc >= 0 && creds->kind == BERTH_TLS_CREDS_X509) {
        rc = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, creds->x509);
        if (server) {
            gnutls_certificate_server_set_request(session, creds->verify_peer
                                                  ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE);
        }
    } else if (rc >= 0) {
        rc = gnutls_credentials_set(session, GNUTLS_CRD_PSK,
                                    server ? (void *) creds->psk_server
                                           : (void *) creds->psk_client);
    }
    if (rc >= 0 && !server && hostname) {
        rc = gnutls_server_name_set(session, GNUTLS_NAME_DNS, hostname, strlen(hostname));
    }
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot set up the TLS session: %s",
                    gnutls_strerror(rc));
        gnutls_deinit(session);
        return NULL;
    }

    TlsChannel *t = g_new0(TlsChannel, 1);
    t->base.ops = &tls_ops;
    t->base.refcount = 1;
    t->base.fd = inner->fd;
    t->base.peer = g_strdup(inner->peer);
    t->base.local = g_strdup(inner->local);
    t->inner = berth_channel_ref(inner);
    t->creds = berth_tls_creds_ref(creds);
    t->session = session;
    t->hostname = server ? NULL : g_strdup(hostname);
    t->hs_wants = server ? G_IO_IN : G_IO_OUT;
    t->read_wants = G_IO_IN;
    t->write_wants = G_IO_OUT;
    gnutls_transport_set_ptr(session, t);
    gnutls_transport_set_pull_function(session, tls_pull);
    gnutls_transport_set_vec_push_function(session, tls_vec_push);
    gnutls_transport_set_pull_timeout_function(session, tls_pull_timeout);
    return &t->base;
}

/* The subject as QEMU spells it (gnutls' compatible order, least specific
 * first), so authz identities written for QEMU keep working. */
static char *peer_cert_dn(TlsChannel *t)
{
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(t->session, &n);
    if (!certs || n == 0) {
        return NULL;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0) {
        return NULL;
    }
    char *dn = NULL;
    gnutls_datum_t out = { NULL, 0 };
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
        gnutls_x509_crt_get_dn3(crt, &out, GNUTLS_X509_DN_FLAG_COMPAT) >= 0) {
        dn = g_strndup((const char *) out.data, out.size);
        gnutls_free(out.data);
    }
    gnutls_x509_crt_deinit(crt);
    return dn;
}

/* After the handshake: check what the credentials ask and learn who it is. */
static bool tls_check_peer(TlsChannel *t, GError **errp)
{
    BerthTlsCreds *creds = t->creds;
    if (creds->kind == BERTH_TLS_CREDS_PSK) {
        if (creds->endpoint == BERTH_TLS_ENDPOINT_SERVER) {
            const char *user = gnutls_psk_server_get_username(t->session);
            t->identity = g_strdup(user);
        } else {
            t->identity = g_strdup(creds->username);
        }
        return true;
    }
    if (creds->verify_peer) {
        unsigned int status = 0;
        int rc = t->hostname
                 ? gnutls_certificate_verify_peers3(t->session, t->hostname, &status)
                 : gnutls_certificate_verify_peers2(t->session, &status);
        if (rc < 0) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                        "Cannot verify the certificate of %s: %s", t->base.peer,
                        gnutls_strerror(rc));
            return false;
        }
        if (status) {
            gnutls_datum_t out = { NULL, 0 };
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                        "The certificate of %s is not trusted: %s", t->base.peer,
                        out.data ? (const char *) out.data : "unknown reason");
            gnutls_free(out.data);
            return false;
        }
    }
    t->identity = peer_cert_dn(t);
    return true;
}

BerthTlsHandshakeStatus berth_tls_handshake(BerthChannel *ch, GError **errp)
{
    g_return_val_if_fail(berth_channel_is_tls(ch), BERTH_TLS_HANDSHAKE_ERROR);
    TlsChannel *t = (TlsChannel *) ch;
    if (t->handshake_done) {
        return BERTH_TLS_HANDSHAKE_DONE;
    }
    for (;;) {
        int rc = gnutls_handshake(t->session);
        if (rc == 0) {
            break;
        }
        if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
            t->hs_wants = tls_direction(t);
            return BERTH_TLS_HANDSHAKE_AGAIN;
        }
        if (!gnutls_error_is_fatal(rc)) {
            continue; /* a warning alert: the handshake goes on */
        }
        tls_set_error(t, rc, "handshake", errp);
        return BERTH_TLS_HANDSHAKE_ERROR;
    }
    if (!tls_check_peer(t, errp)) {
        return BERTH_TLS_HANDSHAKE_ERROR;
    }
    t->handshake_done = true;
    return BERTH_TLS_HANDSHAKE_DONE;
}

const char *berth_tls_peer_identity(BerthChannel *ch)
{
    g_return_val_if_fail(berth_channel_is_tls(ch), NULL);
    return ((TlsChannel *) ch)->identity;
}
