/*
 * Client side of the NBD handshake (fixed newstyle), blocking: see
 * include/nbd/client.h. The wire format is all in the codec; this file only
 * sequences options and checks every reply against what was asked.
 */
#include "nbd/client.h"

#include "io/tls.h"
#include "nbd/codec.h"

#include <errno.h>
#include <gio/gio.h>
#include <poll.h>
#include <string.h>

#define TIMEOUT_MS NBD_CLIENT_NEGOTIATE_TIMEOUT_MS
/* Largest option reply payload we agree to buffer. */
#define REPLY_MAX_LENGTH (64u * 1024u)
/* Replies that may precede the final one for a single option. */
#define MAX_REPLIES_PER_OPTION 64
#define BASE_ALLOCATION "base:allocation"

#define DEFAULT_MIN_BLOCK 1u
#define DEFAULT_PREF_BLOCK 4096u
#define DEFAULT_MAX_BLOCK (32u * 1024u * 1024u)

typedef struct {
    BerthChannel *ch;   /* borrowed: the current channel (plain or TLS) */
    bool tls;
} Neg;

typedef struct {
    NBDOptionReplyHeader hdr;
    uint8_t *payload;   /* g_malloc'd, hdr.length bytes (NULL when 0) */
} Reply;

static void reply_clear(Reply *r)
{
    g_clear_pointer(&r->payload, g_free);
    memset(&r->hdr, 0, sizeof(r->hdr));
}

void nbd_export_info_clear(NBDExportInfo *info)
{
    g_free(info->description);
    memset(info, 0, sizeof(*info));
}

static bool send_option(Neg *n, uint32_t option, const void *data, uint32_t len, GError **errp)
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
static bool read_reply(Neg *n, uint32_t option, Reply *r, GError **errp)
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
    if (r->hdr.length > REPLY_MAX_LENGTH) {
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
            reply_clear(r);
            return false;
        }
    }
    return true;
}

/* Turn an error reply into a GError carrying the server's message. */
static void set_server_error(Neg *n, uint32_t option, const Reply *r, GError **errp)
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

static void set_unexpected(uint32_t option, const Reply *r, GError **errp)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "Unexpected reply type %s (0x%" G_GINT32_MODIFIER "x) to NBD option %s",
                nbd_rep_name(r->hdr.type), r->hdr.type, nbd_opt_name(option));
}

/* An ACK with no data, or an error; anything else is a protocol error. */
static bool expect_ack(Neg *n, uint32_t option, Reply *r, GError **errp)
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
        set_server_error(n, option, r, errp);
    } else {
        set_unexpected(option, r, errp);
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

static bool start_tls(Neg *n, BerthChannel *plain, BerthTlsCreds *creds, const char *hostname,
                      BerthChannel **tls_out, GError **errp)
{
    if (berth_tls_creds_get_endpoint(creds) != BERTH_TLS_ENDPOINT_CLIENT) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "TLS credentials for an NBD client must have endpoint=client");
        return false;
    }
    if (!send_option(n, NBD_OPT_STARTTLS, NULL, 0, errp)) {
        return false;
    }
    Reply r;
    if (!read_reply(n, NBD_OPT_STARTTLS, &r, errp)) {
        return false;
    }
    bool ok = expect_ack(n, NBD_OPT_STARTTLS, &r, errp);
    reply_clear(&r);
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
        if (!wait_fd(tls->fd, berth_channel_wants(tls, G_IO_IN), deadline, errp)) {
            berth_channel_unref(tls);
            return false;
        }
    }
}

static bool negotiate_structured(Neg *n, NBDExportInfo *info, GError **errp)
{
    if (!send_option(n, NBD_OPT_STRUCTURED_REPLY, NULL, 0, errp)) {
        return false;
    }
    Reply r;
    if (!read_reply(n, NBD_OPT_STRUCTURED_REPLY, &r, errp)) {
        return false;
    }
    bool ok = true;
    if (r.hdr.type == NBD_REP_ERR_UNSUP) {
        info->structured_reply = false;
    } else {
        ok = expect_ack(n, NBD_OPT_STRUCTURED_REPLY, &r, errp);
        info->structured_reply = ok;
    }
    reply_clear(&r);
    return ok;
}

/*
 * Ask for base:allocation. A refusal is not fatal (the export simply has no
 * block status); a malformed or unexpected reply is.
 */
static bool negotiate_meta_context(Neg *n, const char *name, size_t name_len,
                                   NBDExportInfo *info, GError **errp)
{
    static const char *const queries[] = { BASE_ALLOCATION };
    size_t cap = 4 + name_len + 4 + 4 + sizeof(BASE_ALLOCATION);
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_meta_context(data, cap, name, name_len, queries, 1);
    g_assert(len > 0);
    if (!send_option(n, NBD_OPT_SET_META_CONTEXT, data, (uint32_t) len, errp)) {
        return false;
    }
    for (int i = 0; i <= MAX_REPLIES_PER_OPTION; i++) {
        Reply r;
        if (!read_reply(n, NBD_OPT_SET_META_CONTEXT, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_META_CONTEXT) {
            NBDRepMetaContext mc;
            NBDDecodeResult res = nbd_decode_rep_meta_context(r.payload, r.hdr.length, &mc);
            if (res.status != NBD_DECODE_OK) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Malformed NBD_REP_META_CONTEXT: %s",
                            res.reason ? res.reason : "truncated");
                reply_clear(&r);
                return false;
            }
            if (mc.name.len != strlen(BASE_ALLOCATION) ||
                memcmp(mc.name.data, BASE_ALLOCATION, mc.name.len) != 0 ||
                info->base_allocation) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Server selected an unrequested metadata context '%.*s'",
                            (int) MIN(mc.name.len, NBD_MAX_STRING), mc.name.data);
                reply_clear(&r);
                return false;
            }
            info->base_allocation = true;
            info->meta_context_id = mc.context_id;
            reply_clear(&r);
            continue;
        }
        bool ok = true;
        if (NBD_REP_IS_ERR(r.hdr.type)) {
            /* Not fatal; GO will report a missing export properly. */
            info->base_allocation = false;
            info->meta_context_id = 0;
        } else if (!expect_ack(n, NBD_OPT_SET_META_CONTEXT, &r, errp)) {
            ok = false;
        }
        reply_clear(&r);
        return ok;
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "Too many replies to NBD_OPT_SET_META_CONTEXT");
    return false;
}

static bool check_export(const NBDExportInfo *info, GError **errp)
{
    if (!(info->flags & NBD_FLAG_HAS_FLAGS)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server sent transmission flags 0x%x without NBD_FLAG_HAS_FLAGS",
                    info->flags);
        return false;
    }
    if (info->size > (uint64_t) G_MAXINT64) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server sent an export size too large (%" G_GUINT64_FORMAT ")",
                    info->size);
        return false;
    }
    return true;
}

/*
 * NBD_OPT_GO. *unsup is set when the server does not know the option (the
 * caller then falls back to NBD_OPT_EXPORT_NAME).
 */
static bool negotiate_go(Neg *n, const char *name, size_t name_len, NBDExportInfo *info,
                         bool *unsup, GError **errp)
{
    static const uint16_t requests[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION };
    size_t cap = 4 + name_len + 2 + 2 * G_N_ELEMENTS(requests);
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_info_go(data, cap, name, name_len, requests,
                                        G_N_ELEMENTS(requests));
    g_assert(len > 0);
    *unsup = false;
    if (!send_option(n, NBD_OPT_GO, data, (uint32_t) len, errp)) {
        return false;
    }
    bool have_export = false, have_block_size = false, got_info = false;
    for (int i = 0; i <= MAX_REPLIES_PER_OPTION; i++) {
        Reply r;
        if (!read_reply(n, NBD_OPT_GO, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_INFO) {
            NBDRepInfo ri;
            NBDDecodeResult res = nbd_decode_rep_info(r.payload, r.hdr.length, &ri);
            if (res.status != NBD_DECODE_OK) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Malformed NBD_REP_INFO: %s", res.reason ? res.reason : "truncated");
                reply_clear(&r);
                return false;
            }
            got_info = true;
            switch (ri.type) {
            case NBD_INFO_EXPORT:
                info->size = ri.u.export_.size;
                info->flags = ri.u.export_.flags;
                have_export = true;
                break;
            case NBD_INFO_BLOCK_SIZE:
                info->min_block = ri.u.block_size.min_block;
                info->pref_block = ri.u.block_size.pref_block;
                info->max_block = ri.u.block_size.max_block;
                have_block_size = true;
                break;
            case NBD_INFO_DESCRIPTION:
                g_free(info->description);
                info->description = g_strndup(ri.u.name.data, ri.u.name.len);
                break;
            default:
                break; /* NAME and unknown types: ignored, as the spec allows */
            }
            reply_clear(&r);
            continue;
        }
        if (r.hdr.type == NBD_REP_ERR_UNSUP && !got_info) {
            *unsup = true;
            reply_clear(&r);
            return false;
        }
        bool ok = expect_ack(n, NBD_OPT_GO, &r, errp);
        reply_clear(&r);
        if (!ok) {
            return false;
        }
        if (!have_export) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                "Server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT");
            return false;
        }
        if (!check_export(info, errp)) {
            return false;
        }
        if (have_block_size) {
            const char *why = nbd_block_size_check(info->min_block, info->pref_block,
                                                   info->max_block, info->size);
            if (why) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Server sent invalid block sizes (%" G_GUINT32_FORMAT "/%"
                            G_GUINT32_FORMAT "/%" G_GUINT32_FORMAT "): %s", info->min_block,
                            info->pref_block, info->max_block, why);
                return false;
            }
        } else {
            info->min_block = DEFAULT_MIN_BLOCK;
            info->pref_block = DEFAULT_PREF_BLOCK;
            info->max_block = DEFAULT_MAX_BLOCK;
        }
        return true;
    }
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "Too many replies to NBD_OPT_GO");
    return false;
}

static bool negotiate_export_name(Neg *n, const char *name, size_t name_len, bool no_zeroes,
                                  NBDExportInfo *info, GError **errp)
{
    if (!send_option(n, NBD_OPT_EXPORT_NAME, name, (uint32_t) name_len, errp)) {
        return false;
    }
    uint8_t buf[NBD_EXPORT_NAME_REPLY_MAX];
    size_t want = no_zeroes ? NBD_EXPORT_NAME_REPLY_SIZE : NBD_EXPORT_NAME_REPLY_MAX;
    GError *err = NULL;
    if (!berth_channel_read_all(n->ch, buf, want, TIMEOUT_MS, &err)) {
        /* The server hangs up on an export it does not have. */
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "Server rejected export '%s' with NBD_OPT_EXPORT_NAME: %s", name,
                    err->message);
        g_error_free(err);
        return false;
    }
    NBDExportNameReply rep;
    NBDDecodeResult res = nbd_decode_export_name_reply(buf, want, no_zeroes, &rep);
    if (res.status != NBD_DECODE_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Malformed reply to NBD_OPT_EXPORT_NAME: %s",
                    res.reason ? res.reason : "truncated");
        return false;
    }
    info->size = rep.size;
    info->flags = rep.flags;
    info->min_block = DEFAULT_MIN_BLOCK;
    info->pref_block = DEFAULT_PREF_BLOCK;
    info->max_block = DEFAULT_MAX_BLOCK;
    return check_export(info, errp);
}

static bool negotiate(Neg *n, BerthChannel *ch, const char *export_name,
                      BerthTlsCreds *tls_creds, const char *tls_hostname, NBDExportInfo *info,
                      BerthChannel **tls_ch, GError **errp)
{
    size_t name_len = strlen(export_name);
    const char *why = nbd_string_check(export_name, name_len);
    if (why) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid export name: %s", why);
        return false;
    }

    uint8_t buf[NBD_GREETING_SIZE];
    if (!berth_channel_read_all(ch, buf, sizeof(buf), TIMEOUT_MS, errp)) {
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
    bool no_zeroes = (greeting.handshake_flags & NBD_FLAG_NO_ZEROES) != 0;
    uint32_t client_flags = NBD_FLAG_C_FIXED_NEWSTYLE | (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
    uint8_t fl[NBD_CLIENT_FLAGS_SIZE];
    nbd_encode_client_flags(fl, client_flags);
    if (!berth_channel_write_all(ch, fl, sizeof(fl), TIMEOUT_MS, errp)) {
        g_prefix_error(errp, "Failed to send NBD client flags: ");
        return false;
    }

    if (tls_creds && !start_tls(n, ch, tls_creds, tls_hostname, tls_ch, errp)) {
        return false;
    }
    if (!negotiate_structured(n, info, errp)) {
        return false;
    }
    if (info->structured_reply &&
        !negotiate_meta_context(n, export_name, name_len, info, errp)) {
        return false;
    }
    bool unsup = false;
    if (negotiate_go(n, export_name, name_len, info, &unsup, errp)) {
        return true;
    }
    if (!unsup) {
        return false;
    }
    /* Meta contexts are only honoured through GO. */
    info->base_allocation = false;
    info->meta_context_id = 0;
    return negotiate_export_name(n, export_name, name_len, no_zeroes, info, errp);
}

bool nbd_receive_negotiate(BerthChannel *ch, const char *export_name, BerthTlsCreds *tls_creds,
                           const char *tls_hostname, NBDExportInfo *info,
                           BerthChannel **out_ch, GError **errp)
{
    g_return_val_if_fail(ch && info && out_ch, false);
    memset(info, 0, sizeof(*info));
    *out_ch = NULL;
    if (!export_name) {
        export_name = "";
    }
    Neg n = { .ch = ch, .tls = false };
    BerthChannel *tls_ch = NULL;
    if (!negotiate(&n, ch, export_name, tls_creds, tls_hostname, info, &tls_ch, errp)) {
        if (tls_ch) {
            berth_channel_unref(tls_ch);
        }
        nbd_export_info_clear(info);
        return false;
    }
    *out_ch = tls_ch ? tls_ch : berth_channel_ref(ch);
    return true;
}
