/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth's NBD client, public API: a connection that outlives its sockets.
 * NBDClientConnection runs an NBDClientSession (berth/nbd/client.h) on one
 * GMainContext and, when the session dies, connects again in the
 * background: with a reconnect delay, requests in flight or submitted
 * meanwhile are held and resent on the new session if one comes up in time,
 * and fail with EIO otherwise; without one they fail at once and the next
 * request starts a new attempt. A new connection must offer the same export
 * (size and read-only flag), or the connection gives up for good. The
 * blocking connect + negotiate of an attempt runs on a short-lived thread
 * of its own, so the context keeps turning meanwhile. This is what the nbd
 * block driver uses, on each node's I/O thread.
 *
 * Ownership: an NBDClientTarget is reference counted and immutable once
 * shared; it owns its strings, its address and its reference to the TLS
 * credentials. A connection holds a target reference and its session; the
 * caller owns each NBDClientConnRequest until its callback has run.
 *
 * Threads: an NBDClientTarget may be shared between threads. A connection
 * is made, used and freed on the thread that runs its context; its callbacks
 * run there too.
 */
#ifndef BERTH_NBD_CLIENT_CONNECTION_H
#define BERTH_NBD_CLIENT_CONNECTION_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "berth/io/channel.h"
#include "berth/io/net-listener.h"
#include "berth/io/tls-creds.h"
#include "berth/nbd/client.h"

G_BEGIN_DECLS

/* Where and how to connect. */
typedef struct NBDClientTarget {
    gint ref;                   /* atomic; use nbd_client_target_ref/unref */
    BerthSocketAddress *addr;
    char *addr_str;             /* for messages: a path, or host:port */
    char *export_name;
    BerthTlsCreds *tls_creds;   /* a reference, or NULL */
    char *tls_hostname;         /* or NULL */
    char *meta_context;         /* asked for instead of base:allocation, or NULL */
} NBDClientTarget;

/* A zeroed target with one reference, for the caller to fill in. */
NBDClientTarget *nbd_client_target_new(void);
NBDClientTarget *nbd_client_target_ref(NBDClientTarget *t);
/* Drops a reference, freeing the target with the last one. NULL is ignored. */
void nbd_client_target_unref(NBDClientTarget *t);

/*
 * Blocking: connect to the target and negotiate its export (with TLS as
 * configured). Errors name the address.
 */
bool nbd_client_target_connect(const NBDClientTarget *t, BerthChannel **out_ch,
                               NBDExportInfo *info, GError **errp);

/*
 * Blocking for the caller, not for its context: connect as above on a
 * helper thread, trying again every second until `open_timeout` seconds
 * have passed (0: once), while the caller's thread-default context keeps
 * dispatching (when the caller can acquire it), so that a program which
 * connects to one of its own exports goes on serving meanwhile. The error is
 * the last attempt's.
 */
bool nbd_client_target_open(const NBDClientTarget *t, uint64_t open_timeout,
                            BerthChannel **out_ch, NBDExportInfo *info, GError **errp);

typedef struct NBDClientConnection NBDClientConnection;

/*
 * One request as the connection carries it: the caller fills the fields
 * down to `opaque` and keeps the struct (and what `iov` points at) alive
 * until `cb` has run, exactly once, on the connection's context: later, or
 * from inside nbd_client_connection_submit() when the connection is down
 * without a reconnect delay (or has given up) and fails it at once. The rest
 * belongs to the connection.
 */
typedef struct NBDClientConnRequest NBDClientConnRequest;
struct NBDClientConnRequest {
    uint16_t cmd, flags;
    uint64_t offset, length;
    struct iovec *iov;
    int niov;
    NBDClientReplyFunc cb;
    void *opaque;

    NBDClientConnRequest *next; /* private: in the held list */
    NBDClientConnection *conn;  /* private */
};

/*
 * Start a session on `ch` (taken over) for `info` (what the first
 * nbd_client_target_connect() returned; its size and flags are what a new
 * connection must match), watched from `ctx`. `reconnect_delay` is in
 * seconds, 0 for none. Takes a reference to `t`.
 */
NBDClientConnection *nbd_client_connection_new(NBDClientTarget *t, BerthChannel *ch,
                                               const NBDExportInfo *info,
                                               uint64_t reconnect_delay, GMainContext *ctx);

/*
 * Send `req`, or hold or fail it as the connection's state allows: -EIO
 * when the server is not connected (and no reconnect delay holds it), when
 * it did not come back within the delay, or when it came back with another
 * export; otherwise what the session answers (see nbd_client_session_submit).
 */
void nbd_client_connection_submit(NBDClientConnection *conn, NBDClientConnRequest *req);

/*
 * Fail what is held with -ESHUTDOWN, cancel any attempt (its thread ends on
 * its own and reports to nobody), free the session (which fails what it
 * has pending, see nbd_client_session_free) and the connection.
 */
void nbd_client_connection_free(NBDClientConnection *conn);

G_END_DECLS

#endif
