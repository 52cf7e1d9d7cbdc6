/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client option haggling, blocking: the steps shared by opening an export
 * and listing exports (nbd/client-int.h). Replies are read with a bounded
 * length and checked against the option they must answer.
 */
#include "client-int.h"

#include "io/tls.h"

#include <errno.h>
#include <gio/gio.h>
#include <poll.h>
#include <string.h>

#define TIMEOUT_MS NBD_CLIENT_NEGOTIATE_TIMEOUT_MS

void nbd_opt_reply_clear(NBDOptReply *r)
{
    g_clear_pointer(&r->payload, g_free);
    memset(&r->hdr, 0, sizeof(r->hdr));
}


bool nbd_client_greet(NBDClientNeg *n, bool *no_zeroes, GError **errp)
{
    uint8_t buf[NBD_GREETING_SIZE];
    if (!berth_channel_read_all(n->ch, buf, sizeof(buf), TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to read the NBD greeting: ");
        return false;
    }
    NBDGreeting greeting;
    NBDDecodeResult res = nbd_decode_greeting(buf, sizeof(buf), &greeting);
    if (res.status != NBD_DECODE_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "Bad NBD greeting: %s",
                    res.reason ? res.reason : "truncated");
        return false;
    }
    if (!(greeting.handshake_flags & NBD_FLAG_FIXED_NEWSTYLE)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Server does not support fixed newstyle negotiation");
        return false;
    }
    *no_zeroes = (greeting.handshake_flags & NBD_FLAG_NO_ZEROES) != 0;
    uint32_t client_flags = NBD_FLAG_C_FIXED_NEWSTYLE | (*no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
    uint8_t fl[NBD_CLIENT_FLAGS_SIZE];
    nbd_encode_client_flags(fl, client_flags);
    if (!berth_channel_write_all(n->ch, fl, sizeof(fl), TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to send NBD client flags: ");
        return false;
    }

    return true;
}

bool nbd_client_send_option(NBDClientNeg *n, uint32_t option, const void *data, uint32_t len, GError **errp)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    nbd_encode_option_header(hdr, option, len);
    if (!berth_channel_write_all(n->ch, hdr, sizeof(hdr), TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to send NBD option %s: ", nbd_opt_name(option));
        return false;
    }
    if (len && !berth_channel_write_all(n->ch, data, len, TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to send NBD option %s: ", nbd_opt_name(option));
        return false;
    }
    return true;
}

/* Read one option reply to `option`: magic, echo and length are checked. */
bool nbd_client_read_option_reply(NBDClientNeg *n, uint32_t option, NBDOptReply *r, GError **errp)
{
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];
    memset(r, 0, sizeof(*r));
    if (!berth_channel_read_all(n->ch, buf, sizeof(buf), TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to read the reply to NBD option %s: ",
                       nbd_opt_name(option));
        return false;
    }
    NBDDecodeResult res = nbd_decode_option_reply_header(buf, sizeof(buf), &r->hdr);
    if (res.status != NBD_DECODE_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Malformed reply to NBD option %s: %s", nbd_opt_name(option),
                    res.reason ? res.reason : "truncated header");
        return false;
    }
    if (r->hdr.option != option) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Unexpected reply to NBD option %s: it answers option %s (%" G_GUINT32_FORMAT
                    ")", nbd_opt_name(option), nbd_opt_name(r->hdr.option), r->hdr.option);
        return false;
    }
    if (r->hdr.length > NBD_CLIENT_REPLY_MAX_LENGTH) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Reply to NBD option %s is too long (%" G_GUINT32_FORMAT " bytes)",
                    nbd_opt_name(option), r->hdr.length);
        return false;
    }
    if (r->hdr.length) {
        r->payload = g_malloc(r->hdr.length);
        if (!berth_channel_read_all(n->ch, r->payload, r->hdr.length, TIMEOUT_MS, errp)) {
            g_prefix_error(errp, "Failed to read the reply to NBD option %s: ",
                           nbd_opt_name(option));
            nbd_opt_reply_clear(r);
            return false;
        }
    }
    return true;
}

/* Turn an error reply into a GError carrying the server's message. */
void nbd_client_set_option_error(NBDClientNeg *n, uint32_t option, const NBDOptReply *r, GError **errp)
{
    NBDStringView msg = { NULL, 0 };
    NBDDecodeResult res = nbd_decode_rep_err(r->payload, r->hdr.length, &msg);
    if (res.status != NBD_DECODE_OK) {
        msg.len = 0;
    }
    if (r->hdr.type == NBD_REP_ERR_TLS_REQD && !n->tls) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "server requires TLS%s%.*s", msg.len ? ": " : "", (int) msg.len,
                    msg.len ? msg.data : "");
        return;
    }
    int code;
    switch (r->hdr.type) {
    case NBD_REP_ERR_UNKNOWN:
        code = G_IO_ERROR_NOT_FOUND;
        break;
    case NBD_REP_ERR_POLICY:
    case NBD_REP_ERR_TLS_REQD:
        code = G_IO_ERROR_PERMISSION_DENIED;
        break;
    case NBD_REP_ERR_UNSUP:
        code = G_IO_ERROR_NOT_SUPPORTED;
        break;
    default:
        code = G_IO_ERROR_FAILED;
        break;
    }
    if (msg.len) {
        g_set_error(errp, G_IO_ERROR, code, "Server refused NBD option %s (%s): %.*s",
                    nbd_opt_name(option), nbd_rep_name(r->hdr.type), (int) msg.len, msg.data);
    } else {
        g_set_error(errp, G_IO_ERROR, code, "Server refused NBD option %s (%s)",
                    nbd_opt_name(option), nbd_rep_name(r->hdr.type));
    }
}

void nbd_client_set_unexpected_reply(uint32_t option, const NBDOptReply *r, GError **errp)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "Unexpected reply type %s (0x%" G_GINT32_MODIFIER "x) to NBD option %s",
                nbd_rep_name(r->hdr.type), r->hdr.type, nbd_opt_name(option));
}

/* An ACK with no data, or an error; anything else is a protocol error. */
bool nbd_client_expect_ack(NBDClientNeg *n, uint32_t option, NBDOptReply *r, GError **errp)
{
    if (r->hdr.type == NBD_REP_ACK) {
        if (r->hdr.length != 0) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "ACK to NBD option %s carries %" G_GUINT32_FORMAT " bytes of data",
                        nbd_opt_name(option), r->hdr.length);
            return false;
        }
        return true;
    }
    if (NBD_REP_IS_ERR(r->hdr.type)) {
        nbd_client_set_option_error(n, option, r, errp);
    } else {
        nbd_client_set_unexpected_reply(option, r, errp);
    }
    return false;
}

static bool wait_fd(int fd, GIOCondition cond, gint64 deadline, GError **errp)
{
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                "Timed out during the TLS handshake");
            return false;
        }
        struct pollfd pfd = { .fd = fd, .events = 0 };
        if (cond & G_IO_IN) {
            pfd.events |= POLLIN;
        }
        if (cond & G_IO_OUT) {
            pfd.events |= POLLOUT;
        }
        if (!pfd.events) {
            pfd.events = POLLIN;
        }
        int rc = poll(&pfd, 1, (int) MIN(left, G_MAXINT));
        if (rc > 0) {
            return true;
        }
        if (rc < 0 && errno != EINTR) {
            int e = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e),
                        "poll() failed during the TLS handshake: %s", g_strerror(e));
            return false;
        }
    }
}

bool nbd_client_start_tls(NBDClientNeg *n, BerthChannel *plain, BerthTlsCreds *creds,
                          const char *hostname, BerthChannel **tls_out, GError **errp)
{
    if (berth_tls_creds_get_endpoint(creds) != BERTH_TLS_ENDPOINT_CLIENT) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "TLS credentials for an NBD client must have endpoint=client");
        return false;
    }
    if (!nbd_client_send_option(n, NBD_OPT_STARTTLS, NULL, 0, errp)) {
        return false;
    }
    NBDOptReply r;
    if (!nbd_client_read_option_reply(n, NBD_OPT_STARTTLS, &r, errp)) {
        return false;
    }
    bool ok = nbd_client_expect_ack(n, NBD_OPT_STARTTLS, &r, errp);
    nbd_opt_reply_clear(&r);
    if (!ok) {
        return false;
    }
    BerthChannel *tls = berth_tls_channel_new(plain, creds, hostname, errp);
    if (!tls) {
        return false;
    }
    gint64 deadline = g_get_monotonic_time() + (gint64) TIMEOUT_MS * 1000;
    for (;;) {
        GError *err = NULL;
        switch (berth_tls_handshake(tls, &err)) {
        case BERTH_TLS_HANDSHAKE_DONE:
            *tls_out = tls;
            n->ch = tls;
            n->tls = true;
            return true;
        case BERTH_TLS_HANDSHAKE_ERROR:
            g_propagate_prefixed_error(errp, err, "TLS handshake failed: ");
            berth_channel_unref(tls);
            return false;
        case BERTH_TLS_HANDSHAKE_AGAIN:
            break;
        }
        if (!wait_fd(berth_channel_fd(tls), berth_channel_wants(tls, G_IO_IN), deadline, errp)) {
            berth_channel_unref(tls);
            return false;
        }
    }
}

