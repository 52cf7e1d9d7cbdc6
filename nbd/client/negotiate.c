/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client side of the NBD handshake (fixed newstyle), blocking: see
 * include/berth/nbd/client.h. The wire format is all in the codec; this file only
 * sequences options and checks every reply against what was asked.
 */
#include "client-int.h"

#include "io/tls.h"
#include "nbd/proto/codec.h"

#include <errno.h>
#include <gio/gio.h>
#include <poll.h>
#include <string.h>

#define TIMEOUT_MS NBD_CLIENT_NEGOTIATE_TIMEOUT_MS
#define BASE_ALLOCATION "base:allocation"

/* Without NBD_INFO_BLOCK_SIZE the spec's defaults bind us; with it, the
 * server's maximum does, larger than 32 MiB or not. */
#define DEFAULT_MIN_BLOCK NBD_DEFAULT_MIN_BLOCK
#define DEFAULT_PREF_BLOCK NBD_DEFAULT_PREF_BLOCK
#define DEFAULT_MAX_BLOCK NBD_DEFAULT_MAX_BLOCK

void nbd_export_info_clear(NBDExportInfo *info)
{
    g_free(info->description);
    memset(info, 0, sizeof(*info));
}

/*
 * Ask for a reply option and report whether the server took it: true with
 * *acked set, or false on a protocol error.  Any refusal just means "no".
 */
static bool negotiate_flag_option(NBDClientNeg *n, uint32_t option, bool *acked, GError **errp)
{
    *acked = false;
    if (!nbd_client_send_option(n, option, NULL, 0, errp)) {
        return false;
    }
    NBDOptReply r;
    if (!nbd_client_read_option_reply(n, option, &r, errp)) {
        return false;
    }
    bool ok = true;
    if (!NBD_REP_IS_ERR(r.hdr.type)) {
        ok = nbd_client_expect_ack(n, option, &r, errp);
        *acked = ok;
    }
    nbd_opt_reply_clear(&r);
    return ok;
}

/* Extended headers when the server has them (they imply structured replies). */
static bool negotiate_reply_mode(NBDClientNeg *n, NBDNegotiateLimit limit, NBDExportInfo *info,
                                 GError **errp)
{
    if (limit == NBD_NEGOTIATE_SIMPLE) {
        return true;
    }
    if (limit == NBD_NEGOTIATE_EXTENDED &&
        !negotiate_flag_option(n, NBD_OPT_EXTENDED_HEADERS, &info->extended_headers, errp)) {
        return false;
    }
    if (info->extended_headers) {
        info->structured_reply = true;
        return true;
    }
    return negotiate_flag_option(n, NBD_OPT_STRUCTURED_REPLY, &info->structured_reply, errp);
}

/*
 * Ask for `context` (base:allocation, or the one the caller named). A
 * refusal is not fatal (the export simply has no block status); a malformed
 * or unexpected reply is.
 */
static bool negotiate_meta_context(NBDClientNeg *n, const char *name, size_t name_len,
                                   const char *context, NBDExportInfo *info, GError **errp)
{
    const char *const queries[] = { context };
    size_t cap = 4 + name_len + 4 + 4 + strlen(context) + 1;
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_meta_context(data, cap, name, name_len, queries, 1);
    g_assert(len > 0);
    if (!nbd_client_send_option(n, NBD_OPT_SET_META_CONTEXT, data, (uint32_t) len, errp)) {
        return false;
    }
    for (int i = 0; i <= NBD_CLIENT_MAX_REPLIES_PER_OPTION; i++) {
        NBDOptReply r;
        if (!nbd_client_read_option_reply(n, NBD_OPT_SET_META_CONTEXT, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_META_CONTEXT) {
            NBDRepMetaContext mc;
            NBDDecodeResult res = nbd_decode_rep_meta_context(r.payload, r.hdr.length, &mc);
            if (res.status != NBD_DECODE_OK) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Malformed NBD_REP_META_CONTEXT: %s",
                            res.reason ? res.reason : "truncated");
                nbd_opt_reply_clear(&r);
                return false;
            }
            if (mc.name.len != strlen(context) ||
                memcmp(mc.name.data, context, mc.name.len) != 0 ||
                info->base_allocation) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Server selected an unrequested metadata context '%.*s'",
                            (int) MIN(mc.name.len, NBD_MAX_STRING), mc.name.data);
                nbd_opt_reply_clear(&r);
                return false;
            }
            info->base_allocation = true;
            info->meta_context_id = mc.context_id;
            nbd_opt_reply_clear(&r);
            continue;
        }
        bool ok = true;
        if (NBD_REP_IS_ERR(r.hdr.type)) {
            /* Not fatal; GO will report a missing export properly. */
            info->base_allocation = false;
            info->meta_context_id = 0;
        } else if (!nbd_client_expect_ack(n, NBD_OPT_SET_META_CONTEXT, &r, errp)) {
            ok = false;
        }
        nbd_opt_reply_clear(&r);
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
static bool negotiate_go(NBDClientNeg *n, const char *name, size_t name_len, NBDExportInfo *info,
                         bool *unsup, GError **errp)
{
    static const uint16_t requests[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION };
    size_t cap = 4 + name_len + 2 + 2 * G_N_ELEMENTS(requests);
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_info_go(data, cap, name, name_len, requests,
                                        G_N_ELEMENTS(requests));
    g_assert(len > 0);
    *unsup = false;
    if (!nbd_client_send_option(n, NBD_OPT_GO, data, (uint32_t) len, errp)) {
        return false;
    }
    bool have_export = false, have_block_size = false, got_info = false;
    for (int i = 0; i <= NBD_CLIENT_MAX_REPLIES_PER_OPTION; i++) {
        NBDOptReply r;
        if (!nbd_client_read_option_reply(n, NBD_OPT_GO, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_INFO) {
            NBDRepInfo ri;
            NBDDecodeResult res = nbd_decode_rep_info(r.payload, r.hdr.length, &ri);
            if (res.status != NBD_DECODE_OK) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Malformed NBD_REP_INFO: %s", res.reason ? res.reason : "truncated");
                nbd_opt_reply_clear(&r);
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
            nbd_opt_reply_clear(&r);
            continue;
        }
        if (r.hdr.type == NBD_REP_ERR_UNSUP && !got_info) {
            *unsup = true;
            nbd_opt_reply_clear(&r);
            return false;
        }
        bool ok = nbd_client_expect_ack(n, NBD_OPT_GO, &r, errp);
        nbd_opt_reply_clear(&r);
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

static bool negotiate_export_name(NBDClientNeg *n, const char *name, size_t name_len, bool no_zeroes,
                                  NBDExportInfo *info, GError **errp)
{
    if (!nbd_client_send_option(n, NBD_OPT_EXPORT_NAME, name, (uint32_t) name_len, errp)) {
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

static bool negotiate(NBDClientNeg *n, BerthChannel *ch, const char *export_name,
                      BerthTlsCreds *tls_creds, const char *tls_hostname,
                      NBDNegotiateLimit limit, const char *context, NBDExportInfo *info,
                      BerthChannel **tls_ch, GError **errp)
{
    size_t name_len = strlen(export_name);
    const char *why = nbd_string_check(export_name, name_len);
    if (why) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid export name: %s", why);
        return false;
    }

    bool no_zeroes = false;
    if (!nbd_client_greet(n, &no_zeroes, errp)) {
        return false;
    }
    if (tls_creds && !nbd_client_start_tls(n, ch, tls_creds, tls_hostname, tls_ch, errp)) {
        return false;
    }
    if (!negotiate_reply_mode(n, limit, info, errp)) {
        return false;
    }
    if (info->structured_reply &&
        !negotiate_meta_context(n, export_name, name_len, context, info, errp)) {
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
    return nbd_receive_negotiate_limited(ch, export_name, tls_creds, tls_hostname,
                                         NBD_NEGOTIATE_EXTENDED, info, out_ch, errp);
}

bool nbd_receive_negotiate_limited(BerthChannel *ch, const char *export_name,
                                   BerthTlsCreds *tls_creds, const char *tls_hostname,
                                   NBDNegotiateLimit limit, NBDExportInfo *info,
                                   BerthChannel **out_ch, GError **errp)
{
    return nbd_receive_negotiate_context(ch, export_name, tls_creds, tls_hostname, limit,
                                         NULL, info, out_ch, errp);
}

bool nbd_receive_negotiate_context(BerthChannel *ch, const char *export_name,
                                   BerthTlsCreds *tls_creds, const char *tls_hostname,
                                   NBDNegotiateLimit limit, const char *context,
                                   NBDExportInfo *info, BerthChannel **out_ch, GError **errp)
{
    g_return_val_if_fail(ch && info && out_ch, false);
    if (!context) {
        context = BASE_ALLOCATION;
    }
    const char *why = nbd_string_check(context, strlen(context));
    if (why) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid metadata context name: %s", why);
        return false;
    }
    memset(info, 0, sizeof(*info));
    *out_ch = NULL;
    if (!export_name) {
        export_name = "";
    }
    NBDClientNeg n = { .ch = ch, .tls = false };
    BerthChannel *tls_ch = NULL;
    if (!negotiate(&n, ch, export_name, tls_creds, tls_hostname, limit, context, info,
                   &tls_ch, errp)) {
        if (tls_ch) {
            berth_channel_unref(tls_ch);
        }
        nbd_export_info_clear(info);
        return false;
    }
    *out_ch = tls_ch ? tls_ch : berth_channel_ref(ch);
    return true;
}
