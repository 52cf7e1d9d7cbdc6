/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth's NBD server: exports (NBDExport), connections (NBDConn) and the
 * server object (listeners, export table, limits).
 *
 * Ownership:
 *  - nbd_export_new() returns an export with one reference, owned by the
 *    caller. Giving it a name (nbd_export_set_name) puts it in the export
 *    table, which takes a reference of its own; nbd_export_close() (or a
 *    NULL name) removes it from the table and drops that reference.
 *  - An export holds a reference to its node (bdrv_get) until it is freed,
 *    and registers an eject notifier on `on_eject_blk` (if given) which
 *    closes the export when that drive's medium goes away.
 *  - Each NBDConn holds a reference to its export and to its channel; the
 *    server's client list holds one reference to each client until it closes.
 *  - close callbacks run exactly once: an export's when it is closed, a
 *    client's when its connection ends, whatever the reason.
 *  - Strings passed in are copied; strings returned are owned by the object.
 *
 * Threads: every function here runs on the main context's thread. An
 * export's data path runs on the main context, or - for an export made with
 * a context (NBDExportConfig.ctx, an I/O thread's) - on that context's
 * thread: each client negotiates on the main context, and once it enters
 * transmission its socket watch, request parsing, block submission,
 * completions and replies all move to the export's context for good.
 * Closing such a client from the main context (nbd_conn_close, export
 * close, server stop) waits for its thread to stop it; callbacks (close_cb,
 * the export's close and ctx_release) still run on the main context.
 */
#ifndef BERTH_NBD_SERVER_H
#define BERTH_NBD_SERVER_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "berth/block/block.h"
#include "berth/block/dirty-bitmap.h"
#include "berth/block/block-backend.h"
#include "berth/io/channel.h"
#include "berth/io/net-listener.h"

G_BEGIN_DECLS

typedef struct NBDExport NBDExport;
typedef struct NBDConn NBDConn;

/* nbdflags for nbd_export_new(): only READ_ONLY matters to callers; every
 * other transmission flag is derived from what the node can do. */
#define NBD_EXPORT_FLAG_READ_ONLY (1 << 1)

/*
 * Whether an export advertises NBD_FLAG_CAN_MULTI_CONN, the promise that a
 * flush on any connection covers the writes acknowledged on all of them.
 * AUTO (the default): when the node is coherent across connections. ON:
 * always (refused for a writable export of a node that is not coherent).
 * OFF: never. Whatever the mode, the flag is withheld while the server
 * accepts only one connection at a time: a client that believed it could
 * open several would wait for ever on the second.
 */
typedef enum {
    NBD_MULTI_CONN_AUTO,
    NBD_MULTI_CONN_ON,
    NBD_MULTI_CONN_OFF,
} NBDMultiConn;

/* Per-export or per-client request counters. */
typedef struct NBDStats {
    uint64_t reads, writes, flushes, trims, zeroes, caches, block_status;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;
} NBDStats;

/* --- exports --- */

/*
 * Everything an export is made from. Zero-initialise it (NBD_EXPORT_CONFIG_INIT
 * gives size -1), set what you need, pass it to nbd_export_create(); new
 * options are added here, so code written against it keeps compiling.
 * Nothing in it is taken over: the node and drive are referenced, strings
 * are copied.
 */
typedef struct NBDExportConfig {
    BlockDriverState *bs;           /* required */
    uint64_t dev_offset;            /* first byte of the node that is exported */
    int64_t size;                   /* bytes; -1: up to the end of the node */
    bool read_only;
    bool writethrough;              /* every write durable before its reply */
    NBDMultiConn multi_conn;        /* AUTO by default */
    void (*close_cb)(NBDExport *exp); /* may be NULL; runs once at close */
    BlockBackend *on_eject_blk;     /* may be NULL; see "Ownership" above */
    const char *name;               /* NULL: not in the table (yet); "" the default export */
    const char *description;        /* may be NULL */
    const char *id;                 /* may be NULL */
    /*
     * NULL: clients are served on the main context. Otherwise the context
     * (referenced) where the data path of every client runs once it has
     * negotiated; one thread, which has it as its thread-default context
     * (block completions return to the submitter's thread-default, as
     * util/iothread.c and QMP's iothread objects arrange), must run it
     * until the export is
     * freed, which ctx_release (may be NULL) then says, on the main
     * context, with ctx_release_data: requests still in flight when a
     * client closes finish there first. Not called if creation fails.
     */
    GMainContext *ctx;
    /*
     * Several contexts instead of one (ctx then NULL): each client, once it
     * has negotiated, moves to the next of them in turn, so that the
     * connections of one export (multi-conn) spread over several I/O
     * threads. The same rules as for ctx hold for every one of them; the
     * array is copied, each context referenced. ctx_release runs once.
     */
    GMainContext *const *ctxs;
    guint n_ctxs;
    void (*ctx_release)(gpointer data);
    gpointer ctx_release_data;
    /*
     * Metadata contexts besides base:allocation. Each bitmap (of any node)
     * is served as qemu:dirty-bitmap:NAME, is busy while the export lives
     * and keeps its node referenced; a busy one is refused. allocation_depth
     * serves qemu:allocation-depth (0: unallocated, 1: data in this node).
     */
    BdrvDirtyBitmap *const *bitmaps;
    guint n_bitmaps;
    bool allocation_depth;
} NBDExportConfig;

#define NBD_EXPORT_CONFIG_INIT { .size = -1, .multi_conn = NBD_MULTI_CONN_AUTO }

/*
 * Make an export from `cfg`: checks the range and the node's read-only
 * state, applies the multi-conn mode, then the id, description and (last)
 * the name, which makes it reachable. On failure nothing is left behind.
 * Returns one reference, owned by the caller.
 */
NBDExport *nbd_export_create(const NBDExportConfig *cfg, GError **errp);

/*
 * The seed's constructor, kept as it was: nbd_export_create() with the
 * given fields and no name. nbdflags: NBD_EXPORT_FLAG_READ_ONLY or 0.
 */
NBDExport *nbd_export_new(BlockDriverState *bs, uint64_t dev_offset, int64_t size,
                          uint16_t nbdflags, void (*close_cb)(NBDExport *exp),
                          bool writethrough, BlockBackend *on_eject_blk, GError **errp);
NBDExport *nbd_export_get(NBDExport *exp);
void nbd_export_put(NBDExport *exp);

/* Disconnect all clients, leave the export table, run close_cb once. */
void nbd_export_close(NBDExport *exp);

/* Name in the export table (NULL: leave it). Fails if the name is taken or
 * longer than 4096 bytes. "" is the default export. */
bool nbd_export_set_name(NBDExport *exp, const char *name, GError **errp);
void nbd_export_set_description(NBDExport *exp, const char *description);
/* The id used by QMP (block-export-add id=, BLOCK_EXPORT_DELETED). */
void nbd_export_set_id(NBDExport *exp, const char *id);
/* Opaque data for the owner (QMP layer); not touched by the server. */
void nbd_export_set_owner_data(NBDExport *exp, gpointer data, GDestroyNotify destroy);
gpointer nbd_export_get_owner_data(NBDExport *exp);

/* Set the multi-conn mode (see NBDMultiConn); fails, changing nothing, for
 * ON on a writable export of a node that is not coherent. Affects clients
 * that negotiate from now on. */
bool nbd_export_set_multi_conn(NBDExport *exp, NBDMultiConn mode, GError **errp);
/* Whether a client negotiating now is told it may use several connections. */
bool nbd_export_can_multi_conn(NBDExport *exp);

NBDExport *nbd_export_find(const char *name); /* borrowed, or NULL */
void nbd_export_foreach(void (*fn)(NBDExport *exp, gpointer opaque), gpointer opaque);
void nbd_export_close_all(void);

const char *nbd_export_get_name(NBDExport *exp);
const char *nbd_export_get_id(NBDExport *exp);
const char *nbd_export_get_description(NBDExport *exp);
BlockDriverState *nbd_export_get_blockdev(NBDExport *exp);
/* The context its clients' data path runs on (borrowed), NULL for main;
 * with several (NBDExportConfig.ctxs), the first. */
GMainContext *nbd_export_get_context(NBDExport *exp);
bool nbd_export_is_read_only(NBDExport *exp);
bool nbd_export_is_writethrough(NBDExport *exp);
guint nbd_export_client_count(NBDExport *exp);
void nbd_export_get_stats(NBDExport *exp, NBDStats *stats);

/*
 * Safe removal: leave the table (no new clients), and close once the last
 * client has gone (at once if there is none). `drained` runs then, once.
 */
void nbd_export_remove_when_idle(NBDExport *exp, void (*drained)(NBDExport *exp));
bool nbd_export_is_shutting_down(NBDExport *exp);

/* --- clients --- */

/*
 * Serve one connection on `channel` (a new reference is taken). If `exp` is
 * not NULL the client is bound to that export; otherwise the handshake picks
 * one from the table. tls_creds / tls_authz are object ids or NULL; with
 * tls_creds the client must negotiate STARTTLS before anything else, and
 * the objects are looked up by id when it does. close_cb runs once when
 * the connection ends. The handshake must finish within
 * NBD_HANDSHAKE_DEFAULT_SECONDS (clients the server accepts get its own
 * limit instead).
 */
NBDConn *nbd_conn_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                          const char *tls_authz, void (*close_cb)(NBDConn *client,
                                                                  bool negotiated));
NBDConn *nbd_conn_get(NBDConn *client);
void nbd_conn_put(NBDConn *client);
/* End the connection now (in-flight requests are abandoned cleanly). */
void nbd_conn_close(NBDConn *client);

typedef struct NBDConnInfo {
    uint64_t id;               /* unique per server run */
    const char *export_name;   /* NULL while still negotiating */
    const char *peer;          /* "unix" or "host:port" */
    gint64 connected_since;    /* g_get_real_time() at accept */
    guint in_flight;
    NBDStats stats;
    const char *tls_identity;  /* the peer's x509 DN or PSK user; NULL without TLS */
    bool has_peer_cred;        /* a unix socket: the peer process, as the kernel saw it */
    int64_t peer_pid, peer_uid;
} NBDConnInfo;

void nbd_conn_get_info(NBDConn *client, NBDConnInfo *info);
/* The context the connection's data path runs on (borrowed; valid while the
 * connection is referenced): NULL on the main context, which includes
 * every connection still negotiating. */
GMainContext *nbd_conn_get_context(NBDConn *client);

/*
 * The seed API's names for the calls above, from before the server's
 * connections were called NBDConn (the word "client" now means berth's NBD
 * client library only). The same objects and the same ownership rules; kept
 * for existing embedders. New code uses the nbd_conn_* names.
 */
typedef NBDConn NBDClient;
typedef NBDConnInfo NBDClientInfo;
NBDClient *nbd_client_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                          const char *tls_authz, void (*close_cb)(NBDClient *client,
                                                                  bool negotiated));
NBDClient *nbd_client_get(NBDClient *client);
void nbd_client_put(NBDClient *client);
void nbd_client_close(NBDClient *client);
void nbd_client_get_info(NBDClient *client, NBDClientInfo *info);

/* --- server --- */

typedef struct NBDServerConfig {
    const BerthSocketAddress *addr;
    const char *tls_creds;  /* object id or NULL */
    const char *tls_authz;  /* object id or NULL */
    guint max_connections;  /* 0: unlimited (QMP's default is 100, not 0) */
    /* A connection that has not finished its handshake (TLS included) this
     * many seconds after it was accepted is dropped. 0 picks the default,
     * NBD_HANDSHAKE_DEFAULT_SECONDS; NBD_HANDSHAKE_NO_LIMIT turns the limit
     * off (QMP's handshake-max-seconds=0). */
    guint handshake_max_seconds;
} NBDServerConfig;

/* QEMU's default; also the limit of clients made with nbd_conn_new(). */
#define NBD_HANDSHAKE_DEFAULT_SECONDS 10
#define NBD_HANDSHAKE_NO_LIMIT G_MAXUINT

bool nbd_server_start(const NBDServerConfig *cfg, GError **errp);
/* Close listeners and every client; exports made over QMP are the QMP
 * layer's to close. */
void nbd_server_stop(void);
bool nbd_server_is_running(void);
/* Port actually bound (for inet with port 0), or 0. */
int nbd_server_get_port(void);
/* The running server's max_connections (0: unlimited), or 0 when stopped. */
guint nbd_server_get_max_connections(void);
/* The running server's handshake limit in seconds (NBD_HANDSHAKE_NO_LIMIT
 * for none), or 0 when stopped. */
guint nbd_server_get_handshake_max_seconds(void);

void nbd_server_foreach_client(void (*fn)(NBDConn *client, gpointer opaque),
                               gpointer opaque);

/*
 * Tell the host each time a connection accepted by the server's listeners
 * ends (whatever ended it, including nbd_server_stop()), after it has left
 * the server's client list: `negotiated` says whether it reached
 * transmission, `remaining` how many of the server's connections are still
 * open. This is how a one-shot host (berth-nbd without --persistent) exits
 * once its last client is gone. One notifier at a time; NULL removes it.
 * It runs on the main context's thread and may stop the server or quit the
 * main loop; `opaque` is borrowed and must outlive the registration.
 */
typedef void (*NBDServerClientClosedFunc)(bool negotiated, guint remaining, gpointer opaque);
void nbd_server_set_client_closed_notify(NBDServerClientClosedFunc fn, gpointer opaque);
NBDConn *nbd_server_find_client(uint64_t id); /* borrowed, or NULL */

G_END_DECLS

#endif
