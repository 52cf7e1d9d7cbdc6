/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private state of the NBD server, shared by its files: export.c (exports
 * and their table), server.c (listeners, client list, client lifetime),
 * conn-io.c (a connection's socket: input buffer, output queue, watch),
 * server-handshake.c (option haggling) and server-transmission.c
 * (requests and replies). Nothing outside nbd/ includes this.
 */
#ifndef BERTH_NBD_SERVER_INT_H
#define BERTH_NBD_SERVER_INT_H

#include "util/tsan.h"
#include "berth/nbd/server.h"
#include "berth/nbd/proto.h"
#include "nbd/proto/codec.h"
#include "io/channel-watch.h"
#include "berth/block/dirty-bitmap.h"

/* Bytes of socket input read per wakeup; request headers are parsed from it
 * in one go. Small write payloads are copied out of it, large ones are read
 * straight into their own buffer (all of it, after a large write: see
 * server-transmission.c's input_limit()). */
#define NBD_CONN_INBUF_SIZE (256 * 1024)
/* Send buffer asked for on unix sockets (conn-io.c): room for a few
 * 1 MiB replies at once; the kernel doubles it for its bookkeeping. */
#define NBD_CONN_UNIX_SNDBUF (2 * 1024 * 1024)
/* Bounded concurrency per connection: at either limit we stop reading
 * the socket until replies drain, so memory per client stays bounded. The
 * byte limit is exact: a request whose buffer (READ data, WRITE payload)
 * would take the connection past it waits, header unread, until enough
 * replies went out (server-transmission.c: request_fits()). Two requests
 * of the largest size fit at once. */
#define NBD_CONN_MAX_IN_FLIGHT 128
#define NBD_CONN_MAX_IN_FLIGHT_BYTES (2u * NBD_MAX_PAYLOAD)
/* Option lengths are judged by nbd_opt_check_length() before any byte of
 * the payload is read: accepted ones fit the input buffer whole. */
/* A handshaking peer that does not read our replies: we stop reading its
 * options while this much output is queued, so its memory stays bounded
 * whatever it sends (one option's replies may go past it once). */
#define NBD_HANDSHAKE_MAX_OUTPUT (64 * 1024)

struct NBDExport {
    gint refcount;
    BlockDriverState *bs;
    uint32_t perm, unshared;    /* taken on bs while the export lives */
    BdrvInfo info;
    uint64_t dev_offset;
    uint64_t size;              /* as created; see nbd_export_current_size() */
    bool size_follows_node;     /* no size given: the node's, after block_resize too */
    uint16_t tx_flags;          /* transmission flags advertised */
    NBDMultiConn multi_conn;    /* CAN_MULTI_CONN in tx_flags follows it and the limit */
    uint32_t min_block, pref_block, max_block;
    char *name;                 /* last name given; NULL if never named */
    bool in_table;              /* reachable by name from the handshake */
    char *description;
    char *id;
    bool writethrough;
    bool closed;
    bool shutting_down;
    BlockBackend *eject_blk;
    gulong eject_notifier;
    void (*close_cb)(NBDExport *exp);
    void (*drained_cb)(NBDExport *exp);
    GList *clients;             /* NBDConn *, borrowed (each holds a ref on us) */
    NBDStats stats;             /* added to with nbd_stats_add() */
    gpointer owner_data;
    GDestroyNotify owner_destroy;
    GMainContext **ctxs;        /* n_ctxs, each referenced; none: the main context */
    guint n_ctxs;
    guint next_ctx;             /* where the next client goes (main context only) */
    void (*ctx_release)(gpointer data);
    gpointer ctx_release_data;
    /* Metadata contexts besides base:allocation (set at creation). */
    bool allocation_depth;      /* qemu:allocation-depth */
    guint n_bitmaps;
    BdrvDirtyBitmap **bitmaps;  /* busy while exported; their nodes referenced */
    char **bitmap_contexts;     /* "qemu:dirty-bitmap:NAME", one per bitmap */
};

typedef enum {
    NBD_HS_START,               /* greeting queued, waiting for client flags */
    NBD_HS_OPT_HEADER,          /* waiting for an option header */
    NBD_HS_OPT_DATA,            /* collecting an option's payload */
    NBD_HS_OPT_SKIP,            /* discarding an oversized option's payload */
    NBD_HS_TLS,                 /* STARTTLS acked: flushing the ack, then the TLS handshake */
} NBDHandshakeState;

typedef enum {
    NBD_CONN_HANDSHAKE,
    NBD_CONN_TRANSMISSION,
    NBD_CONN_DRAINING,        /* DISC or fatal error: finish replies, then close */
    NBD_CONN_CLOSED,
} NBDConnPhase;

typedef struct NBDOutItem NBDOutItem;
struct NBDOutItem {
    NBDOutItem *next;
    struct iovec *iov;
    int niov;
    size_t skip;                /* bytes of iov already written */
    void (*sent)(NBDOutItem *item); /* called once fully written or dropped */
};

typedef struct NBDRequestCtx NBDRequestCtx;

/*
 * Threads. A client starts on the main context. If its export has a
 * context of its own, the main context hands the client over once it
 * enters transmission (conn-io.c: hand_off() at the end of the
 * dispatch that negotiated, never inside the handshake code); from then
 * on only that context's thread touches the fields below "socket
 * plumbing", the phase and the transmission state, and the main context
 * keeps to what it wrote before the hand-off plus `main_closed`. Counters
 * that queries read from the main context (stats, in_flight) are written
 * with relaxed atomics by their one writer. The refcount is atomic; the
 * last reference dropped on an I/O thread frees the client on the main
 * context, since freeing drops an export reference.
 */
struct NBDConn {
    gint refcount;              /* atomic */
    uint64_t id;
    BerthChannel *ch;
    NBDExport *exp;             /* referenced; NULL until the handshake picks one */
    char *tls_creds;
    char *tls_authz;
    void (*close_cb)(NBDConn *client, bool negotiated);
    NBDConnPhase phase;
    bool negotiated;
    bool close_cb_done;
    gint64 connected_since;
    GMainContext *ctx;          /* referenced once handed over; NULL: main */
    bool handoff_pending;       /* main only: hand over at the end of this dispatch */
    bool main_closed;           /* main only: detached and close_cb run */

    /* socket plumbing (conn-io.c) */
    BerthChannelWatch *watch;   /* NULL once closed */
    guint handshake_timer;
    guint handshake_max_seconds; /* NBD_HANDSHAKE_NO_LIMIT: no timer */
    uint8_t *inbuf;
    size_t in_start, in_end;
    NBDOutItem *out_head, *out_tail;
    size_t out_bytes;           /* queued and not yet written */
    bool read_paused;
    bool out_backlog;           /* handshake reading stopped until output drains */
    bool in_dispatch;           /* inside the watch's dispatch: it flushes at its end */
    bool flush_at_end;          /* output was queued during that dispatch */

    /* handshake (server-handshake.c) */
    NBDHandshakeState hs;
    uint32_t client_flags;
    uint32_t opt;
    uint32_t opt_len;
    uint8_t *opt_buf;
    size_t opt_have;
    uint64_t skip_left;
    uint32_t skip_reply;        /* error to send once the skip ends */
    bool structured;
    bool extended;
    /* contexts chosen by the last SET_META_CONTEXT, for meta_exp only */
    NBDExport *meta_exp;        /* referenced; NULL: none chosen */
    bool meta_base_allocation;  /* base:allocation (id NBD_META_ID_BASE_ALLOCATION) */
    bool meta_allocation_depth; /* qemu:allocation-depth (NBD_META_ID_ALLOCATION_DEPTH) */
    bool *meta_bitmaps;         /* meta_exp->n_bitmaps: qemu:dirty-bitmap:NAME */
    uint32_t meta_count;        /* contexts chosen */
    bool no_zeroes;
    bool block_size_advertised; /* client asked for NBD_INFO_BLOCK_SIZE in GO */
    uint64_t export_size;       /* the size the handshake told the client */
    bool tls_ack_sent;          /* STARTTLS's ack left in plaintext: start TLS */
    bool tls_active;            /* ch is a TLS channel whose handshake is done */

    /* transmission (server-transmission.c) */
    NBDRequestLimits limits;    /* what requests are checked against */
    NBDRequestCtx *cur_write;   /* request whose payload is still arriving */
    bool large_writes;          /* the last request was a large WRITE */
    size_t cur_write_have;
    uint64_t discard_left;      /* payload bytes to throw away ... */
    NBDRequestCtx *discard_ctx; /* ... before this refused request's error reply */
    uint32_t discard_err;
    const char *discard_msg;    /* static */
    guint in_flight;
    uint64_t in_flight_bytes;
    NBDStats stats;
};

static inline void nbd_counter_set(guint *counter, guint value)
{
    __atomic_store_n(counter, value, __ATOMIC_RELAXED);
}
/* Context ids: fixed ones, then one per exported bitmap. */
#define NBD_META_ID_BASE_ALLOCATION 1
#define NBD_META_ID_ALLOCATION_DEPTH 2
#define NBD_META_ID_DIRTY_BITMAP(i) (3 + (uint32_t) (i))

/* export.c */
/* The size to tell a client that connects now. */
uint64_t nbd_export_current_size(NBDExport *exp);
void nbd_export_attach_client(NBDExport *exp, NBDConn *client);
void nbd_export_detach_client(NBDExport *exp, NBDConn *client);
/* The context the next client to negotiate moves to (borrowed), NULL for
 * the main context. Main context. */
GMainContext *nbd_export_next_context(NBDExport *exp);
GList *nbd_export_list(void);  /* table order; borrowed pointers, free the list */
/* The server's connection limit changed: recompute what every export
 * advertises (CAN_MULTI_CONN) to clients that negotiate from now on. */
void nbd_export_connection_limit_changed(void);

/* conn-io.c */
void nbd_conn_io_start(NBDConn *client);
void nbd_conn_io_stop(NBDConn *client);
/* Go on over `ch` (same fd: a TLS session on the plaintext channel);
 * takes the caller's reference and drops the old channel's. */
void nbd_conn_use_channel(NBDConn *client, BerthChannel *ch);
/* Queue bytes (copied) or an item (kept until sent) and try writing now. */
void nbd_conn_send_copy(NBDConn *client, const void *buf, size_t len);
void nbd_conn_send_item(NBDConn *client, NBDOutItem *item);
/* Transmission: a send buffer of NBD_CONN_UNIX_SNDBUF on unix sockets. */
void nbd_conn_enlarge_send_buffer(NBDConn *client);
void nbd_conn_pause_reading(NBDConn *client, bool paused);
/* Drop connection state and close after the output queue drains (or now). */
void nbd_conn_finish(NBDConn *client, bool flush_first);
size_t nbd_conn_input_avail(NBDConn *client);
/* Handshake only: true (and reading stops until the queue drains below
 * NBD_HANDSHAKE_MAX_OUTPUT) when the peer has not read enough of our
 * replies to be given more. */
bool nbd_conn_output_backlogged(NBDConn *client);
/* Dispatch the input handler again soon even if the fd stays quiet: used
 * when a handler stops early with input still buffered. */
void nbd_conn_kick_read(NBDConn *client);
/* One readv into `direct` (if direct_len) and then the input buffer, at
 * most in_max bytes of it. Returns
 * bytes read (direct first), 0 at EOF, BERTH_CHANNEL_AGAIN or _ERROR.
 * *drained says the socket had less than we asked for (or nothing): reading
 * again before poll says readable would only fail with EAGAIN. */
ssize_t nbd_conn_read_more(NBDConn *client, void *direct, size_t direct_len,
                             size_t in_max, bool *drained);
/* A request finished (in_flight dropped): close if draining and idle. */
void nbd_conn_request_done(NBDConn *client);

/* server-handshake.c: consume input; returns false when the client closed */
bool nbd_handshake_start(NBDConn *client);
bool nbd_handshake_input(NBDConn *client);
void nbd_handshake_cleanup(NBDConn *client);

/* server-transmission.c */
void nbd_transmission_start(NBDConn *client);
/* The two halves of nbd_transmission_start: the request limits, taken from
 * the export on the main context, and the socket side, on the client's
 * own context (after a hand-off, there). */
void nbd_transmission_set_limits(NBDConn *client);
void nbd_transmission_begin(NBDConn *client);
bool nbd_transmission_input(NBDConn *client);
void nbd_transmission_cleanup(NBDConn *client);

/*
 * Traffic counters: added to by the thread serving a client, read by QMP
 * on the main thread; an export's are shared by all its clients.
 */
static inline void nbd_stats_add(uint64_t *counter, uint64_t value)
{
    __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}

static inline void nbd_stats_copy(NBDStats *dst, const NBDStats *src)
{
    const uint64_t *from = (const uint64_t *) src;
    uint64_t *to = (uint64_t *) dst;

    G_STATIC_ASSERT(sizeof(NBDStats) % sizeof(uint64_t) == 0);
    for (size_t i = 0; i < sizeof(NBDStats) / sizeof(uint64_t); i++) {
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
    }
}

#endif
