/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private to nbd/: the option-haggling steps the client shares between
 * opening an export (client-negotiate.c) and listing exports
 * (client-list.c). Every call blocks for at most
 * NBD_CLIENT_NEGOTIATE_TIMEOUT_MS per wait.
 */
#ifndef BERTH_NBD_CLIENT_INT_H
#define BERTH_NBD_CLIENT_INT_H

#include "berth/nbd/client.h"
#include "nbd/proto/codec.h"

G_BEGIN_DECLS

/* Largest option reply payload the client agrees to buffer. */
#define NBD_CLIENT_REPLY_MAX_LENGTH (64u * 1024u)
/* Replies that may precede the final one for a single option. */
#define NBD_CLIENT_MAX_REPLIES_PER_OPTION 64

typedef struct NBDClientNeg {
    BerthChannel *ch;   /* borrowed: the current channel (plain or TLS) */
    bool tls;
} NBDClientNeg;

typedef struct NBDOptReply {
    NBDOptionReplyHeader hdr;
    uint8_t *payload;   /* g_malloc'd, hdr.length bytes (NULL when 0) */
} NBDOptReply;


void nbd_opt_reply_clear(NBDOptReply *r);

/*
 * Read the greeting, check fixed newstyle and answer with our client flags.
 * *no_zeroes tells whether the server omits the 124 zero bytes after
 * NBD_OPT_EXPORT_NAME.
 */
bool nbd_client_greet(NBDClientNeg *n, bool *no_zeroes, GError **errp);
bool nbd_client_send_option(NBDClientNeg *n, uint32_t option, const void *data, uint32_t len,
                            GError **errp);
/* One reply to `option`: magic, echo and a bounded length are checked. */
bool nbd_client_read_option_reply(NBDClientNeg *n, uint32_t option, NBDOptReply *r,
                                  GError **errp);
/* An error reply as a GError carrying the server's message. */
void nbd_client_set_option_error(NBDClientNeg *n, uint32_t option, const NBDOptReply *r,
                                 GError **errp);
void nbd_client_set_unexpected_reply(uint32_t option, const NBDOptReply *r, GError **errp);
/* An ACK without data, or false with errp set (server error or protocol error). */
bool nbd_client_expect_ack(NBDClientNeg *n, uint32_t option, NBDOptReply *r, GError **errp);
/*
 * NBD_OPT_STARTTLS and the TLS handshake; on success *tls_out is the new
 * channel (owned by the caller) and n->ch points at it.
 */
bool nbd_client_start_tls(NBDClientNeg *n, BerthChannel *plain, BerthTlsCreds *creds,
                          const char *hostname, BerthChannel **tls_out, GError **errp);

G_END_DECLS

#endif
