/*
 * The client half of the NBD handshake: given a connected channel, talk
 * fixed-newstyle negotiation up to the transmission phase (optionally after
 * STARTTLS) and report what the server said about the export.
 *
 * The negotiation is blocking: every read and write waits with poll() for at
 * most NBD_CLIENT_NEGOTIATE_TIMEOUT_MS, so call it from a thread that may
 * block (a client tool, a test's worker thread), never from a main loop that
 * also serves the other end.
 *
 * Ownership: the caller keeps its reference to `ch`. On success *out_ch
 * receives a new reference the caller must drop: a TLS channel wrapping `ch`
 * when TLS was negotiated (the channel to use for transmission), else `ch`
 * itself. `tls_creds` is borrowed (a TLS channel takes its own reference).
 * NBDExportInfo owns its description; free it with nbd_export_info_clear().
 *
 * Threads: reentrant; one thread at a time per channel, as for every channel.
 */
#ifndef BERTH_NBD_CLIENT_H
#define BERTH_NBD_CLIENT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/channel.h"
#include "io/tls-creds.h"

G_BEGIN_DECLS

/* Per wait (poll) of the blocking negotiation, and for the TLS handshake. */
#define NBD_CLIENT_NEGOTIATE_TIMEOUT_MS 30000

/* What the server told us about the export. */
typedef struct NBDExportInfo {
    uint64_t size;
    uint16_t flags;             /* transmission flags (NBD_FLAG_HAS_FLAGS | ...) */
    /* From NBD_INFO_BLOCK_SIZE when the server sent it (validated), else the
     * spec's defaults: 1, 4096 and 32 MiB. */
    uint32_t min_block, pref_block, max_block;
    bool structured_reply;      /* NBD_OPT_STRUCTURED_REPLY was acknowledged */
    bool base_allocation;       /* "base:allocation" was selected ... */
    uint32_t meta_context_id;   /* ... with this id */
    char *description;          /* NBD_INFO_DESCRIPTION, or NULL; owned (g_free) */
} NBDExportInfo;

/* Frees the description and zeroes the struct. */
void nbd_export_info_clear(NBDExportInfo *info);

/*
 * Negotiate `export_name` ("" is the default export) over `ch`.
 *
 * With tls_creds (client endpoint), STARTTLS is sent first and the TLS
 * handshake run; the server certificate is verified as the credentials ask
 * (x509 verify-peer: against the CA) and, when tls_hostname is not NULL,
 * against that host name too (also sent as SNI). Then structured replies
 * and the "base:allocation" metadata context are requested, and the export
 * is opened with NBD_OPT_GO (asking for NBD_INFO_BLOCK_SIZE and
 * NBD_INFO_DESCRIPTION), falling back to NBD_OPT_EXPORT_NAME when the
 * server does not know GO.
 *
 * Returns false with errp set (G_IO_ERROR domain) on I/O errors, timeouts,
 * malformed replies and server refusals; a refusal carries the server's
 * message. A server that insists on TLS when tls_creds is NULL gives
 * "server requires TLS". On failure *out_ch is NULL and info is cleared; the
 * channel is then in an unspecified protocol state and should be closed.
 */
bool nbd_receive_negotiate(BerthChannel *ch, const char *export_name, BerthTlsCreds *tls_creds,
                           const char *tls_hostname, NBDExportInfo *info,
                           BerthChannel **out_ch, GError **errp);

G_END_DECLS

#endif
