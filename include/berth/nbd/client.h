/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth's NBD client, public API: open an export on any NBD server, move
 * data with blocking primitives or through an asynchronous session on a
 * GMainContext, and list a server's exports.  The wire format is the codec's
 * (nbd/codec.h), shared with the server.
 *
 * Three layers, pick the one that fits:
 *  1. nbd_receive_negotiate(): the handshake (fixed newstyle, STARTTLS,
 *     extended headers or structured replies, base:allocation, GO with an
 *     EXPORT_NAME fallback).  Blocking.
 *  2. nbd_send_request() / nbd_receive_reply() / nbd_wr_syncv(): one request
 *     or reply header at a time, blocking with a timeout.  For tools and
 *     tests that do one thing at a time.
 *  3. NBDClientSession: many requests in flight on one socket, replies
 *     matched by cookie in any order, every reply validated; callbacks run
 *     on the session's GMainContext.  This is what block/nbd.c uses.
 *
 * Ownership: the caller keeps its reference to every channel it passes in.
 * nbd_receive_negotiate() hands back a new channel reference in *out_ch
 * (the TLS channel when TLS was negotiated, else `ch` itself).  A session
 * takes its own reference to the channel it runs on.  NBDExportInfo owns
 * its description (nbd_export_info_clear()); an NBDExportList owns its
 * entries (nbd_export_list_free()).  TLS credentials are borrowed.
 *
 * Threads: the blocking calls are reentrant, one thread at a time per
 * channel.  A session is used only from the thread that runs its context.
 */
#ifndef BERTH_BLOCK_NBD_H
#define BERTH_BLOCK_NBD_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "berth/io/channel.h"
#include "berth/io/tls-creds.h"
#include "berth/nbd/proto.h"

G_BEGIN_DECLS

/* Per wait (poll) of the blocking calls, and for the TLS handshake. */
#define NBD_CLIENT_NEGOTIATE_TIMEOUT_MS 30000
#define NBD_DEFAULT_PORT 10809

/* ======================================================================
 * Negotiation
 * ====================================================================== */

/* What the server told us about the export. */
typedef struct NBDExportInfo {
    uint64_t size;
    uint16_t flags;             /* transmission flags (NBD_FLAG_HAS_FLAGS | ...) */
    /* From NBD_INFO_BLOCK_SIZE when the server sent it (validated), else the
     * spec's defaults: 1, 4096 and 32 MiB. */
    uint32_t min_block, pref_block, max_block;
    bool structured_reply;      /* structured replies are in use ... */
    bool extended_headers;      /* ... or extended headers (which imply them) */
    bool base_allocation;       /* "base:allocation" (or the context asked for) was selected ... */
    uint32_t meta_context_id;   /* ... with this id */
    char *description;          /* NBD_INFO_DESCRIPTION, or NULL; owned (g_free) */
} NBDExportInfo;

/* Frees the description and zeroes the struct. */
void nbd_export_info_clear(NBDExportInfo *info);

/* The transmission mode the negotiation ended in. */
static inline NBDMode nbd_export_info_mode(const NBDExportInfo *info)
{
    return info->extended_headers ? NBD_MODE_EXTENDED
         : info->structured_reply ? NBD_MODE_STRUCTURED : NBD_MODE_SIMPLE;
}

/*
 * Negotiate `export_name` ("" is the default export; NULL means "") over
 * `ch`.
 *
 * With tls_creds (client endpoint), STARTTLS is sent first and the TLS
 * handshake run; the server certificate is verified as the credentials ask
 * (x509 verify-peer: against the CA) and, when tls_hostname is not NULL,
 * against that host name too (also sent as SNI).  Then extended headers are
 * requested, else structured replies, then the "base:allocation" metadata
 * context, and the export is opened with NBD_OPT_GO (asking for
 * NBD_INFO_BLOCK_SIZE and NBD_INFO_DESCRIPTION), falling back to
 * NBD_OPT_EXPORT_NAME when the server does not know GO.
 *
 * Returns false with errp set (G_IO_ERROR domain) on I/O errors, timeouts,
 * malformed replies and server refusals; a refusal carries the server's
 * message.  A server that insists on TLS when tls_creds is NULL gives
 * "server requires TLS".  On failure *out_ch is NULL and info is cleared;
 * the channel is then in an unspecified protocol state and should be closed.
 */
bool nbd_receive_negotiate(BerthChannel *ch, const char *export_name, BerthTlsCreds *tls_creds,
                           const char *tls_hostname, NBDExportInfo *info,
                           BerthChannel **out_ch, GError **errp);

/* The most a negotiation asks for. */
typedef enum NBDNegotiateLimit {
    NBD_NEGOTIATE_EXTENDED = 0,     /* extended headers, else structured, else simple */
    NBD_NEGOTIATE_STRUCTURED,       /* structured replies at most (no 64-bit headers) */
    NBD_NEGOTIATE_SIMPLE,           /* simple replies only: what the Linux kernel speaks */
} NBDNegotiateLimit;

/* nbd_receive_negotiate() asking for no more than `limit`. */
bool nbd_receive_negotiate_limited(BerthChannel *ch, const char *export_name,
                                   BerthTlsCreds *tls_creds, const char *tls_hostname,
                                   NBDNegotiateLimit limit, NBDExportInfo *info,
                                   BerthChannel **out_ch, GError **errp);

/*
 * nbd_receive_negotiate_limited() asking for the metadata context `context`
 * instead of base:allocation (NULL: base:allocation), as QEMU's nbd driver
 * does for x-dirty-bitmap; info->base_allocation and meta_context_id then
 * describe that context.
 */
bool nbd_receive_negotiate_context(BerthChannel *ch, const char *export_name,
                                   BerthTlsCreds *tls_creds, const char *tls_hostname,
                                   NBDNegotiateLimit limit, const char *context,
                                   NBDExportInfo *info, BerthChannel **out_ch, GError **errp);

/* ======================================================================
 * Listing exports (what `berth-nbd -L` and `qemu-nbd -L` print)
 * ====================================================================== */

typedef struct NBDExportListEntry {
    char *name;
    char *description;          /* NULL when the server gave none */
    /* From NBD_OPT_INFO when the server answered it (has_info). */
    bool has_info;
    /*
     * Its description is left NULL (see above), and its block sizes stay 0
     * when the server sent none (so a listing shows only what was sent).
     */
    NBDExportInfo info;
    /* From NBD_OPT_LIST_META_CONTEXT: NULL-terminated, may be empty. */
    char **meta_contexts;
} NBDExportListEntry;

typedef struct NBDExportList {
    GPtrArray *entries;         /* of NBDExportListEntry *, owned */
    bool structured_reply;      /* the server agreed to structured replies */
} NBDExportList;

/*
 * Connect-time listing on a fresh connection: greeting, optional STARTTLS
 * (as nbd_receive_negotiate()), NBD_OPT_LIST, then for each export
 * NBD_OPT_INFO and NBD_OPT_LIST_META_CONTEXT, then NBD_OPT_ABORT.
 * Returns NULL with errp set on failure.  The channel is finished with
 * afterwards.
 */
NBDExportList *nbd_list_exports(BerthChannel *ch, BerthTlsCreds *tls_creds,
                                const char *tls_hostname, GError **errp);
void nbd_export_list_free(NBDExportList *list);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(NBDExportList, nbd_export_list_free)

/* ======================================================================
 * Blocking transmission primitives
 * ====================================================================== */

/*
 * Read (do_read) or write the whole iovec, waiting with poll() for at most
 * timeout_ms per wait (-1: forever).  False with errp set on error, EOF or
 * timeout.  The iovec array is not modified.
 */
bool nbd_wr_syncv(BerthChannel *ch, const struct iovec *iov, int niov, bool do_read,
                  int timeout_ms, GError **errp);

/*
 * Send one request header in the mode's form, then `payload` (a WRITE's
 * data, or a BLOCK_STATUS payload in extended mode) when niov > 0.  In
 * extended mode NBD_CMD_FLAG_PAYLOAD_LEN is set for a WRITE.  The payload
 * must add up to the length the header announces.
 */
bool nbd_send_request(BerthChannel *ch, NBDMode mode, const NBDRequest *req,
                      const struct iovec *payload, int niov, int timeout_ms, GError **errp);

/*
 * Read and decode one reply header (simple reply, or structured/extended
 * chunk header); a chunk's payload (reply->length bytes) is left on the
 * channel for the caller, and so is a simple READ reply's data.  False with
 * errp set on I/O errors, EOF, a magic the mode does not allow or a
 * malformed header.
 */
bool nbd_receive_reply(BerthChannel *ch, NBDMode mode, NBDReplyHeader *reply,
                       int timeout_ms, GError **errp);

/* ======================================================================
 * Asynchronous session
 * ====================================================================== */

typedef struct NBDClientSession NBDClientSession;

/* How many requests a session keeps on the wire; more wait in a queue. */
#define NBD_CLIENT_SESSION_MAX_IN_FLIGHT 64

/* The outcome of one request, valid only during the callback. */
typedef struct NBDClientResult {
    int ret;                    /* 0, or -errno */
    const GError *err;          /* NULL on success; the server's message if it sent one */
    /* BLOCK_STATUS: the base:allocation extents, starting at the offset. */
    const NBDExtent *extents;
    uint32_t n_extents;
} NBDClientResult;

typedef void (*NBDClientReplyFunc)(const NBDClientResult *res, void *opaque);

/*
 * Called once, on the session's context, when the session stops working
 * (peer closed, protocol violation, I/O error) before
 * nbd_client_session_free(); every request still pending has already been
 * failed with -EIO by then.  `why` is borrowed.
 */
typedef void (*NBDClientSessionDeadFunc)(NBDClientSession *s, const GError *why, void *opaque);

/*
 * Start a session on `ch` (after nbd_receive_negotiate(); pass its out_ch
 * and info).  The session sets the channel's fd non-blocking and watches it
 * from `ctx` (NULL: the thread-default context).  `info` is copied.
 */
NBDClientSession *nbd_client_session_new(BerthChannel *ch, const NBDExportInfo *info,
                                         GMainContext *ctx, NBDClientSessionDeadFunc dead_cb,
                                         void *opaque);

/*
 * Queue one request.  `iov` is where a READ's data lands or where a
 * WRITE's data comes from; it must stay valid until the callback runs (the
 * array itself is copied).  The callback always runs exactly once, later,
 * on the session's context (never from inside this call).  Requests the
 * export cannot take (a command it does not advertise, a length over the
 * maximum block size, a range past its end) fail with -EINVAL, -ENOTSUP or
 * -EOVERFLOW without reaching the wire; requests on a dead session fail with
 * -EIO.
 */
void nbd_client_session_submit(NBDClientSession *s, uint16_t cmd, uint16_t flags,
                               uint64_t offset, uint64_t length, const struct iovec *iov,
                               int niov, NBDClientReplyFunc cb, void *opaque);

/* Requests queued or on the wire. */
guint nbd_client_session_pending(NBDClientSession *s);
bool nbd_client_session_is_dead(NBDClientSession *s);
const NBDExportInfo *nbd_client_session_info(NBDClientSession *s);

/*
 * Fail everything pending with -ESHUTDOWN (callbacks run from here), send
 * NBD_CMD_DISC when the connection is still healthy, shut the channel down
 * and free the session.  The dead callback is not called.
 */
void nbd_client_session_free(NBDClientSession *s);

G_END_DECLS

#endif
