/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A request of the transmission phase, shared by the files that run it
 * (server-transmission.c: parsing, payloads, submission to the node) and
 * answer it (server-reply.c: simple replies, structured read chunks and
 * holes, block status, errors). Private to nbd/server/. A request lives
 * from its header's arrival until its reply has been sent; everything here
 * runs on the thread of the connection's context.
 */
#ifndef BERTH_NBD_SERVER_REQUEST_H
#define BERTH_NBD_SERVER_REQUEST_H

#include "server-int.h"

/* Most extents sent for one BLOCK_STATUS request, and the most pieces a
 * structured READ is split into (holes and data). */
#define NBD_MAX_STATUS_EXTENTS 1024
#define NBD_READ_MAX_CHUNKS 32
/* Structured reads at least this large are scanned for zero runs, which go
 * out as OFFSET_HOLE chunks; runs shorter than that are not worth a chunk. */
#define NBD_SPARSE_READ_MIN (64 * 1024)
#define NBD_ZERO_GRANULE 4096
/* Space for one chunk header plus its fixed payload head (offset, hole). */
#define CHUNK_HDR_ROOM (NBD_REPLY_HEADER_MAX_SIZE + NBD_OFFSET_HOLE_SIZE)

struct NBDRequestCtx {
    NBDConn *client;
    NBDRequest req;
    NBDOutItem out;
    uint8_t *buf;               /* READ data / WRITE payload, from the buffer pool */
    uint64_t buf_len;
    size_t buf_cap;
    int pending;                /* block-layer operations still running */
    int ret;                    /* first failure, negative errno */
    char *errmsg;
    bool fua_flush;             /* run a flush after the operation (FUA on TRIM) */
    bool zeroes_unread;         /* READ of a reads_zeroes node: buffer left unfilled */
    bool holes_unread;          /* READ whose node left the ZERO extents unfilled */
    BdrvExtent *extents;        /* block status answer */
    guint n_extents;
    struct iovec *iov;          /* reply pieces; points at small_iov or heap */
    uint8_t *hdrs;              /* reply header bytes; small_hdrs or heap */
    struct iovec small_iov[3];
    uint8_t small_hdrs[CHUNK_HDR_ROOM + NBD_ERROR_HDR_SIZE + 256];
};

static inline NBDMode client_mode(NBDConn *client)
{
    return client->extended ? NBD_MODE_EXTENDED
           : client->structured ? NBD_MODE_STRUCTURED : NBD_MODE_SIMPLE;
}

/* server-reply.c. Each queues the request's one reply (and counts it). */
void nbd_reply_error(NBDRequestCtx *ctx, uint32_t nbd_err, const char *msg);
void nbd_reply_ok_empty(NBDRequestCtx *ctx);
/* The reply for a finished request: its error, its data, its extents. */
void nbd_request_complete(NBDRequestCtx *ctx);
/* A structured READ that may go out as holes where the data is zero. */
bool nbd_reply_sparse_allowed(NBDRequestCtx *ctx);

#endif
