/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to the asynchronous client session: the request and session
 * structs shared by session.c (lifecycle, queueing, sending, the channel
 * watch) and reply.c (reading and validating replies).  Everything
 * runs on the session's GMainContext thread; nothing here takes a lock.
 */
#ifndef BERTH_NBD_CLIENT_SESSION_INT_H
#define BERTH_NBD_CLIENT_SESSION_INT_H

#include "berth/nbd/client.h"
#include "nbd/proto/codec.h"
#include "io/channel-watch.h"

G_BEGIN_DECLS

/* Reply bytes buffered at once; large READ data bypasses it. */
#define NBD_SESSION_INBUF_SIZE (128u * 1024u)
/* Payloads the session reads into memory (errors, holes, block status). */
#define NBD_SESSION_SMALL_CHUNK_MAX (1u << 20)
/* Extents kept from one BLOCK_STATUS reply (bounded memory). */
#define NBD_SESSION_MAX_EXTENTS 65536u

/* Extents kept from one BLOCK_STATUS reply, and pieces of one READ (bounded). */
#define NBD_SESSION_MAX_READ_PIECES 4096u

typedef struct NBDRange {
    uint64_t start, end;            /* [start, end) relative to the request */
} NBDRange;

typedef struct NBDSessionReq NBDSessionReq;
struct NBDSessionReq {
    NBDSessionReq *next;            /* in the waiting, send or done list */
    NBDClientSession *s;
    uint16_t cmd, flags;
    uint64_t offset, length;
    struct iovec *iov;              /* a copy of the caller's array */
    int niov;
    NBDClientReplyFunc cb;
    void *opaque;

    int slot;                       /* index in s->slots while on the wire, else -1 */
    uint64_t cookie;

    /* Sending: the encoded header, and how much of header+payload left. */
    uint8_t hdr[NBD_REQUEST_MAX_SIZE];
    size_t hdr_len;
    uint64_t payload_len;
    uint64_t sent;

    /* Reply progress. */
    int ret;                        /* first error wins */
    GError *err;
    bool chunked;                   /* a structured/extended chunk arrived */
    uint64_t covered;               /* READ: data + hole bytes received */
    GArray *ranges;                 /* READ with chunks: disjoint, merged, sorted NBDRange */
    bool has_status;                /* BLOCK_STATUS: one chunk for our context */
    GArray *extents;                /* of NBDExtent */
};

typedef enum {
    NBD_SESSION_RECV_HEADER,        /* waiting for a reply header */
    NBD_SESSION_RECV_DATA,          /* read data straight into the request's iov */
    NBD_SESSION_RECV_SMALL,         /* a small chunk payload into s->small */
} NBDSessionRecvState;

struct NBDClientSession {
    gint ref;                       /* the user's, plus one per dispatch */
    BerthChannel *ch;
    NBDExportInfo info;
    NBDMode mode;
    GMainContext *ctx;
    BerthChannelWatch *watch;       /* NULL once the user let go */
    NBDClientSessionDeadFunc dead_cb;
    void *dead_opaque;
    bool dead;
    bool freed;                     /* the user let go (nbd_client_session_free) */

    /* Requests: waiting for a slot, on the wire (slots), and finished. */
    NBDSessionReq *wait_head, *wait_tail;
    NBDSessionReq *send_head, *send_tail;
    NBDSessionReq *done_head, *done_tail;
    NBDSessionReq *slots[NBD_CLIENT_SESSION_MAX_IN_FLIGHT];
    guint generation[NBD_CLIENT_SESSION_MAX_IN_FLIGHT];
    guint n_on_wire;
    guint n_waiting;

    /* Receiving. */
    uint8_t *inbuf;
    size_t in_pos, in_len;
    NBDSessionRecvState recv;
    NBDReplyHeader reply;           /* the reply being received */
    NBDSessionReq *cur;             /* the request it answers */
    uint64_t data_off;              /* RECV_DATA: where in the iov */
    uint64_t remaining;             /* RECV_DATA / RECV_SMALL: bytes still to come */
    uint8_t *small;                 /* RECV_SMALL buffer (g_malloc) */
    size_t small_len;
};

/* client-reply.c: consume what s->inbuf holds; false when the session died. */
bool nbd_session_process_input(NBDClientSession *s);
/*
 * client-reply.c: when a large READ payload is due and nothing is buffered,
 * read it straight into the request's iov.  1: bytes moved; 0: not the
 * moment (use the input buffer); BERTH_CHANNEL_AGAIN; BERTH_CHANNEL_ERROR
 * with errp set (EOF included).
 */
int nbd_session_read_direct(NBDClientSession *s, GError **errp);

/* client-session.c, for client-reply.c. */
NBDSessionReq *nbd_session_lookup(NBDClientSession *s, uint64_t cookie);
void nbd_session_finish(NBDSessionReq *req);
void nbd_session_req_fail(NBDSessionReq *req, int errno_value, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* Kill the session: protocol violation or I/O error.  Takes `err`. */
void nbd_session_die(NBDClientSession *s, GError *err);
void nbd_session_protocol_error(NBDClientSession *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

G_END_DECLS

#endif
