/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A TLS session as a BerthChannel. berth_tls_channel_new() wraps an already
 * connected channel (usually a socket, after a plaintext prelude such as
 * NBD's STARTTLS); the handshake is then driven step by step with
 * berth_tls_handshake() from the owner's main loop, waiting between steps
 * for the fd condition that berth_channel_wants() names. After the
 * handshake the channel reads and writes like any other: decrypted bytes
 * that gnutls already holds are counted by berth_channel_pending(), which
 * poll() cannot see, so owners must dispatch a read when it is non-zero.
 *
 * Ownership: the TLS channel holds a reference to the wrapped channel and
 * to the credentials; its fd is the wrapped channel's (borrowed, not closed
 * by the TLS channel).
 *
 * Threads: as for every channel, one thread at a time.
 */
#ifndef BERTH_IO_TLS_H
#define BERTH_IO_TLS_H

#include "berth/io/channel.h"
#include "berth/io/tls-creds.h"

G_BEGIN_DECLS

typedef enum {
    BERTH_TLS_HANDSHAKE_DONE,
    BERTH_TLS_HANDSHAKE_AGAIN,   /* wait for berth_channel_wants(ch, G_IO_IN) */
    BERTH_TLS_HANDSHAKE_ERROR,
} BerthTlsHandshakeStatus;

/*
 * Start a session over `inner` with the credentials' endpoint role. A
 * client names the server in `hostname` (may be NULL) for SNI.
 */
BerthChannel *berth_tls_channel_new(BerthChannel *inner, BerthTlsCreds *creds,
                                    const char *hostname, GError **errp);

/* True if `ch` was made by berth_tls_channel_new(). */
bool berth_channel_is_tls(BerthChannel *ch);

/*
 * Advance the handshake. DONE also means the peer was verified as the
 * credentials ask (x509 verify-peer). Calling it again after DONE answers
 * DONE.
 */
BerthTlsHandshakeStatus berth_tls_handshake(BerthChannel *ch, GError **errp);

/*
 * Who the peer proved to be, once the handshake is done: the distinguished
 * name of an x509 client certificate in QEMU's order ("O=...,CN=..."), or
 * the PSK username.
 * NULL when the peer sent no certificate. Owned by the channel.
 */
const char *berth_tls_peer_identity(BerthChannel *ch);

G_END_DECLS

#endif
