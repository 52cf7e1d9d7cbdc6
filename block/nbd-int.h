/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to the nbd block driver (block/nbd.c): the node's state and the
 * NBD requests a block request becomes.  The connection itself, with its
 * reconnection, is berth/nbd/client-connection.h; it runs on the node's I/O
 * thread (util/iothread.h).  Every field below the "I/O thread" line is
 * touched only by that thread.
 */
#ifndef BERTH_BLOCK_NBD_INT_H
#define BERTH_BLOCK_NBD_INT_H

#include "block-int.h"
#include "berth/nbd/client.h"
#include "berth/nbd/client-connection.h"
#include "util/iothread.h"

G_BEGIN_DECLS

typedef struct NbdState NbdState;

/* One NBD request made from (part of) a block request. */
typedef struct NbdSub {
    NBDClientConnRequest req;   /* req.iov: an owned slice of the block request's iov */
    struct NbdParent *parent;
} NbdSub;

/* A block request and the NBD requests it became. */
typedef struct NbdParent {
    BdrvRequest *req;
    NbdState *st;
    guint pending;
    int ret;
    GError *err;
} NbdParent;

struct NbdState {
    /* Set at open, read-only afterwards. */
    NBDClientTarget *target;
    char *tls_creds_id;         /* pinned in the object table while open */
    uint64_t reconnect_delay;   /* seconds; 0 = fail at once, reconnect on demand */
    NBDExportInfo info;         /* from the first connection */
    void *zero_buf;             /* write-zeroes fallback source */
    size_t zero_buf_len;
    BerthIOThread *iothread;    /* where the connection lives */

    /* ---- I/O thread ---- */
    NBDClientConnection *conn;
};

G_END_DECLS

#endif
