/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to the nbd block driver: block/nbd.c (options, open/close, turning
 * block requests into NBD requests) and block/nbd-conn.c (the driver's I/O
 * thread, its connection and reconnection).  Every field below the "I/O
 * thread" line is touched only by that thread.
 */
#ifndef BERTH_BLOCK_NBD_INT_H
#define BERTH_BLOCK_NBD_INT_H

#include "block-int.h"
#include "berth/nbd/client.h"
#include "berth/io/net-listener.h"

G_BEGIN_DECLS

typedef struct NbdState NbdState;
typedef struct NbdConnectAttempt NbdConnectAttempt;

/*
 * Where and how to connect: immutable once made, shared (refcounted) by the
 * node and any reconnect attempt still running when the node closes.
 */
typedef struct NbdTarget {
    gint ref;                   /* atomic */
    BerthSocketAddress *addr;
    char *addr_str;             /* for messages: a path, or host:port */
    char *export_name;
    BerthTlsCreds *tls_creds;   /* a reference, or NULL */
    char *tls_hostname;
} NbdTarget;

NbdTarget *nbd_target_ref(NbdTarget *t);
void nbd_target_unref(NbdTarget *t);

/* One NBD request made from (part of) a block request. */
typedef struct NbdSub NbdSub;
struct NbdSub {
    NbdSub *next;               /* in the held list while the link is down */
    struct NbdParent *parent;
    uint16_t cmd, flags;
    uint64_t offset, length;
    struct iovec *iov;          /* owned slice of the block request's iov */
    int niov;
};

/* A block request and the NBD requests it became. */
typedef struct NbdParent {
    BdrvRequest *req;
    NbdState *st;
    guint pending;
    int ret;
    GError *err;
} NbdParent;

typedef enum {
    NBD_LINK_UP,                /* a session is running */
    NBD_LINK_WAITING,           /* down; requests wait until the reconnect deadline */
    NBD_LINK_FAILING,           /* down; requests fail at once (a reconnect may run) */
    NBD_LINK_GONE,              /* the export changed under us: fail for good */
} NbdLinkState;

struct NbdState {
    /* Set at open, read-only afterwards. */
    NbdTarget *target;
    char *tls_creds_id;         /* pinned in the object table while open */
    uint64_t reconnect_delay;   /* seconds; 0 = fail at once, reconnect on demand */
    NBDExportInfo info;         /* from the first connection */
    void *zero_buf;             /* write-zeroes fallback source */
    size_t zero_buf_len;

    /* Handed from submitters (any thread) to the I/O thread. */
    GMutex lock;
    GQueue inbox;               /* of BdrvRequest* */
    GSource *inbox_source;

    GMainContext *ctx;
    GMainLoop *loop;
    GThread *thread;

    /* ---- I/O thread ---- */
    NBDClientSession *session;
    NbdLinkState link;
    NbdSub *held_head, *held_tail;
    GSource *deadline_timer;
    GSource *retry_timer;
    NbdConnectAttempt *attempt;
    bool closing;
};

/* nbd-conn.c */

/*
 * Blocking: connect to the target and negotiate its export (with TLS as
 * configured).  Used at open and by reconnect attempts.  Errors name the
 * address.
 */
bool nbd_conn_establish(const NbdTarget *t, BerthChannel **out_ch, NBDExportInfo *info,
                        GError **errp);
/* Start the I/O thread with a session on `ch` (taken over). */
void nbd_conn_start(NbdState *st, BerthChannel *ch);
/* Stop the I/O thread: DISC, cancel attempts, join.  No request may be pending. */
void nbd_conn_stop(NbdState *st);
/* Any thread: hand a block request to the I/O thread. */
void nbd_conn_queue(NbdState *st, BdrvRequest *req);
/* I/O thread: send a sub-request, or hold or fail it as the link allows. */
void nbd_conn_send(NbdState *st, NbdSub *sub);

/* nbd.c, for nbd-conn.c: turn one block request into sub-requests. */
void nbd_driver_start_request(NbdState *st, BdrvRequest *req);
/* A sub-request's outcome (frees the sub); completes its parent when last. */
void nbd_sub_done(NbdSub *sub, const NBDClientResult *res);

G_END_DECLS

#endif
