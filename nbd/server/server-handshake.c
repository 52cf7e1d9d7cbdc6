/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server side of fixed-newstyle option haggling. A connection walks
 * through NBDHandshakeState: START (greeting sent, client flags awaited),
 * OPT_HEADER, then OPT_DATA (an option whose payload fits our bound is
 * gathered whole in the input buffer) or OPT_SKIP (a refused option's payload
 * is thrown away as it arrives, never stored). One function per option
 * answers it; EXPORT_NAME and GO hand the client to transmission. With
 * tls-creds, STARTTLS moves to TLS: its ack leaves in plaintext, then the
 * channel is swapped for a TLS one and the handshake runs (NBD_HS_TLS)
 * before haggling resumes, encrypted.
 */
#include "server-int.h"

#include "io/tls.h"

#include <gio/gio.h>
#include <string.h>

#define META_BASE_ALLOCATION "base:allocation"

static gboolean on_handshake_timeout(gpointer opaque)
{
    NBDConn *client = opaque;
    client->handshake_timer = 0;
    g_info("NBD client %s: handshake timed out", berth_channel_peer(client->ch));
    nbd_conn_close(client);
    return G_SOURCE_REMOVE;
}

bool nbd_handshake_start(NBDConn *client)
{
    uint8_t buf[NBD_GREETING_SIZE];
    size_t n = nbd_encode_greeting(buf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    client->hs = NBD_HS_START;
    if (client->handshake_max_seconds != NBD_HANDSHAKE_NO_LIMIT) {
        client->handshake_timer = g_timeout_add_seconds(client->handshake_max_seconds,
                                                        on_handshake_timeout, client);
    }
    nbd_conn_send_copy(client, buf, n);
    return client->phase != NBD_CONN_CLOSED;
}

void nbd_handshake_cleanup(NBDConn *client)
{
    if (client->handshake_timer) {
        g_source_remove(client->handshake_timer);
        client->handshake_timer = 0;
    }
    g_clear_pointer(&client->meta_exp, nbd_export_put);
    g_clear_pointer(&client->meta_bitmaps, g_free);
}

/* --- replies --- */

static void send_ack(NBDConn *client)
{
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];
    nbd_conn_send_copy(client, buf, nbd_encode_rep_ack(buf, client->opt));
}

static void G_GNUC_PRINTF(3, 4) send_err(NBDConn *client, uint32_t type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    size_t msg_len = MIN(strlen(msg), NBD_MAX_STRING);
    uint8_t buf[NBD_REP_ERR_MAX];
    size_t n = nbd_encode_rep_err(buf, sizeof(buf), client->opt, type, msg, msg_len);
    g_debug("NBD client %s: %s: %s: %s", berth_channel_peer(client->ch),
            nbd_opt_name(client->opt), nbd_rep_name(type), msg);
    nbd_conn_send_copy(client, buf, n);
}

/* --- export lookup --- */

static NBDExport *lookup_export(NBDConn *client, NBDStringView name)
{
    g_autofree char *s = g_strndup(name.data, name.len);
    if (client->exp) {
        /* A client made for one export (nbd_conn_new with exp) sees only it. */
        return client->exp;
    }
    return nbd_export_find(s);
}

static void clear_meta(NBDConn *client);

static void enter_transmission(NBDConn *client, NBDExport *exp)
{
    /* Contexts chosen for another export do not carry over. */
    if (client->meta_exp != exp) {
        clear_meta(client);
    }
    if (client->exp != exp) {
        client->exp = nbd_export_get(exp);
        nbd_export_attach_client(exp, client);
    }
    if (client->handshake_timer) {
        g_source_remove(client->handshake_timer);
        client->handshake_timer = 0;
    }
    client->negotiated = true;
    client->phase = NBD_CONN_TRANSMISSION;
    const char *identity = client->tls_active ? berth_tls_peer_identity(client->ch) : NULL;
    g_info("NBD client %s connected to export '%s' (%s replies%s%s%s)",
           berth_channel_peer(client->ch), exp->name ? exp->name : "",
           client->extended ? "extended" : client->structured ? "structured" : "simple",
           client->tls_active ? ", TLS identity '" : "",
           client->tls_active ? (identity ? identity : "(none)") : "",
           client->tls_active ? "'" : "");
    if (exp->n_ctxs) {
        /* conn-io.c moves the client once this dispatch is over; until
         * then nothing here reads or runs a request. */
        nbd_transmission_set_limits(client);
        client->handoff_pending = true;
        return;
    }
    nbd_transmission_start(client);
}

/* --- options --- */

static void opt_export_name(NBDConn *client, const uint8_t *data, size_t len)
{
    NBDStringView name;
    NBDDecodeResult r = nbd_parse_opt_export_name(data, len, &name);
    NBDExport *exp = r.status == NBD_DECODE_OK ? lookup_export(client, name) : NULL;
    if (!exp) {
        /* This option has no error reply: the spec says to hang up. */
        g_info("NBD client %s: export '%.*s' not found", berth_channel_peer(client->ch),
               (int) MIN(name.len, 256), r.status == NBD_DECODE_OK ? name.data : "");
        nbd_conn_finish(client, false);
        return;
    }
    uint8_t buf[NBD_EXPORT_NAME_REPLY_MAX];
    client->export_size = nbd_export_current_size(exp);
    size_t n = nbd_encode_export_name_reply(buf, client->export_size, exp->tx_flags,
                                            client->no_zeroes);
    nbd_conn_send_copy(client, buf, n);
    enter_transmission(client, exp);
}

static void opt_list(NBDConn *client, size_t len)
{
    if (len != 0) {
        send_err(client, NBD_REP_ERR_INVALID, "NBD_OPT_LIST must not carry data");
        return;
    }
    GList *all = nbd_export_list();
    for (GList *it = all; it; it = it->next) {
        NBDExport *exp = it->data;
        g_autofree uint8_t *buf = g_malloc(NBD_REP_SERVER_MAX);
        const char *desc = exp->description ? exp->description : "";
        size_t n = nbd_encode_rep_server(buf, NBD_REP_SERVER_MAX, client->opt, exp->name,
                                         strlen(exp->name), desc, strlen(desc));
        nbd_conn_send_copy(client, buf, n);
    }
    g_list_free(all);
    send_ack(client);
}

static void send_info_string(NBDConn *client, uint16_t type, const char *s)
{
    g_autofree uint8_t *buf = g_malloc(NBD_REP_INFO_STRING_MAX);
    size_t n = nbd_encode_rep_info_string(buf, NBD_REP_INFO_STRING_MAX, client->opt, type, s,
                                          strlen(s));
    nbd_conn_send_copy(client, buf, n);
}

static void opt_info_go(NBDConn *client, const uint8_t *data, size_t len)
{
    NBDOptInfoGo info;
    NBDDecodeResult r = nbd_parse_opt_info_go(data, len, &info);
    if (r.status != NBD_DECODE_OK) {
        send_err(client, NBD_REP_ERR_INVALID, "%s", r.reason);
        return;
    }
    NBDExport *exp = lookup_export(client, info.name);
    if (!exp) {
        send_err(client, NBD_REP_ERR_UNKNOWN, "Export '%.*s' not present",
                 (int) MIN(info.name.len, 256), info.name.data);
        return;
    }
    bool want_block_size = nbd_opt_info_go_has(&info, NBD_INFO_BLOCK_SIZE);
    uint8_t buf[NBD_REP_INFO_BLOCK_SIZE_SIZE + NBD_REP_INFO_EXPORT_SIZE];
    if (nbd_opt_info_go_has(&info, NBD_INFO_NAME)) {
        send_info_string(client, NBD_INFO_NAME, exp->name ? exp->name : "");
    }
    if (nbd_opt_info_go_has(&info, NBD_INFO_DESCRIPTION) && exp->description) {
        send_info_string(client, NBD_INFO_DESCRIPTION, exp->description);
    }
    /*
     * Sent whether asked for or not, as QEMU's server does: a client that
     * did not ask is not bound by it (the defaults apply to its requests),
     * but learns the maximum payload (NBD_MAX_PAYLOAD) before it sends more.
     */
    nbd_conn_send_copy(client, buf,
                         nbd_encode_rep_info_block_size(buf, client->opt, exp->min_block,
                                                        exp->pref_block, exp->max_block));
    client->export_size = nbd_export_current_size(exp);
    nbd_conn_send_copy(client, buf,
                         nbd_encode_rep_info_export(buf, client->opt, client->export_size,
                                                    exp->tx_flags));
    send_ack(client);
    if (client->opt == NBD_OPT_GO) {
        client->block_size_advertised = want_block_size;
        enter_transmission(client, exp);
    }
}

/* The STARTTLS ack, which must reach the peer in plaintext before the
 * channel changes: its `sent` callback is what lets the handshake begin. */
typedef struct {
    NBDOutItem item;
    struct iovec iov;
    NBDConn *client;
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];
} StartTlsAck;

static void starttls_ack_sent(NBDOutItem *item)
{
    StartTlsAck *ack = (StartTlsAck *) item;
    NBDConn *client = ack->client;
    g_free(ack);
    if (client->phase != NBD_CONN_HANDSHAKE) {
        return; /* dropped because the connection is closing */
    }
    client->tls_ack_sent = true;
    /* Resuming kicks a read, and the read runs the TLS handshake. */
    nbd_conn_pause_reading(client, false);
}

static void opt_starttls(NBDConn *client, size_t len)
{
    if (len != 0) {
        send_err(client, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS must not carry data");
        return;
    }
    if (!client->tls_creds) {
        send_err(client, NBD_REP_ERR_POLICY, "TLS not configured");
        return;
    }
    if (client->tls_active) {
        send_err(client, NBD_REP_ERR_INVALID, "TLS is already active");
        return;
    }
    if (nbd_conn_input_avail(client) > 0) {
        /* Bytes that came before our ack cannot be TLS yet, nor options. */
        g_message("NBD client %s: data sent before the reply to NBD_OPT_STARTTLS, "
                  "disconnecting", berth_channel_peer(client->ch));
        nbd_conn_finish(client, false);
        return;
    }
    StartTlsAck *ack = g_new0(StartTlsAck, 1);
    ack->client = client;
    ack->iov = (struct iovec) { ack->buf, nbd_encode_rep_ack(ack->buf, client->opt) };
    ack->item.iov = &ack->iov;
    ack->item.niov = 1;
    ack->item.sent = starttls_ack_sent;
    client->hs = NBD_HS_TLS;
    client->tls_ack_sent = false;
    nbd_conn_pause_reading(client, true);
    nbd_conn_send_item(client, &ack->item);
}

/*
 * One step of NBD_HS_TLS: once the ack is out, wrap the socket in TLS and
 * drive the handshake; then check the peer against tls-authz. Returns false
 * when the connection was closed.
 */
static bool starttls_step(NBDConn *client)
{
    g_autoptr(GError) err = NULL;
    if (!client->tls_ack_sent) {
        return true;
    }
    if (!berth_channel_is_tls(client->ch)) {
        BerthTlsCreds *creds = berth_tls_creds_find(client->tls_creds, &err);
        BerthChannel *tls = creds ? berth_tls_channel_new(client->ch, creds, NULL, &err)
                                  : NULL;
        if (!tls) {
            g_warning("NBD client %s: cannot start TLS: %s", berth_channel_peer(client->ch),
                      err->message);
            nbd_conn_close(client);
            return false;
        }
        nbd_conn_use_channel(client, tls);
    }
    switch (berth_tls_handshake(client->ch, &err)) {
    case BERTH_TLS_HANDSHAKE_AGAIN:
        return true;
    case BERTH_TLS_HANDSHAKE_ERROR:
        g_message("NBD client %s: TLS handshake failed: %s", berth_channel_peer(client->ch),
                  err->message);
        nbd_conn_close(client);
        return false;
    case BERTH_TLS_HANDSHAKE_DONE:
        break;
    }
    const char *identity = berth_tls_peer_identity(client->ch);
    if (client->tls_authz) {
        BerthAuthz *authz = berth_authz_find(client->tls_authz, &err);
        if (!authz || !berth_authz_is_allowed(authz, identity)) {
            g_message("NBD client %s: TLS identity '%s' denied by authorization '%s'%s%s",
                      berth_channel_peer(client->ch), identity ? identity : "(none)",
                      client->tls_authz, err ? ": " : "", err ? err->message : "");
            nbd_conn_close(client);
            return false;
        }
    }
    g_debug("NBD client %s: TLS established (identity '%s')", berth_channel_peer(client->ch),
            identity ? identity : "(none)");
    client->tls_active = true;
    client->hs = NBD_HS_OPT_HEADER;
    return true;
}

/* Rule 12: before TLS only STARTTLS and ABORT get anywhere. True when the
 * option was answered here (refused). */
static bool refused_before_tls(NBDConn *client)
{
    switch (client->opt) {
    case NBD_OPT_STARTTLS:
    case NBD_OPT_ABORT:
        return false;
    case NBD_OPT_EXPORT_NAME:
        /* No error reply exists for this option: hang up. */
        g_message("NBD client %s: NBD_OPT_EXPORT_NAME without TLS, disconnecting",
                  berth_channel_peer(client->ch));
        nbd_conn_finish(client, false);
        return true;
    default:
        send_err(client, NBD_REP_ERR_TLS_REQD, "Option %s not permitted before TLS",
                 nbd_opt_name(client->opt));
        return true;
    }
}

static void opt_structured_reply(NBDConn *client, size_t len)
{
    if (len != 0) {
        send_err(client, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY must not carry data");
    } else if (client->extended) {
        send_err(client, NBD_REP_ERR_INVALID, "extended headers already negotiated");
    } else if (client->structured) {
        send_err(client, NBD_REP_ERR_INVALID, "structured replies already negotiated");
    } else {
        client->structured = true;
        send_ack(client);
    }
}

static void opt_extended_headers(NBDConn *client, size_t len)
{
    if (len != 0) {
        send_err(client, NBD_REP_ERR_INVALID, "NBD_OPT_EXTENDED_HEADERS must not carry data");
    } else if (client->extended) {
        send_err(client, NBD_REP_ERR_INVALID, "extended headers already negotiated");
    } else {
        client->extended = true;
        client->structured = true;
        send_ack(client);
    }
}

static bool view_equals(NBDStringView v, const char *s)
{
    return v.len == strlen(s) && memcmp(v.data, s, v.len) == 0;
}

static void clear_meta(NBDConn *client)
{
    g_clear_pointer(&client->meta_exp, nbd_export_put);
    g_clear_pointer(&client->meta_bitmaps, g_free);
    client->meta_base_allocation = false;
    client->meta_allocation_depth = false;
    client->meta_count = 0;
}

static void send_meta_context(NBDConn *client, uint32_t id, const char *name)
{
    uint8_t buf[NBD_REP_META_CONTEXT_MAX];
    size_t n = nbd_encode_rep_meta_context(buf, sizeof(buf), client->opt, id, name,
                                           strlen(name));
    nbd_conn_send_copy(client, buf, n);
}

/* What one query asks for, as QEMU reads it: exact names select, and for
 * LIST a bare namespace ("base:", "qemu:") or "qemu:dirty-bitmap:" asks for
 * everything under it. Unknown queries select nothing. */
static void match_query(NBDExport *exp, NBDStringView q, bool list, bool *base, bool *depth,
                        bool *bitmaps)
{
    static const char bitmap_prefix[] = "qemu:dirty-bitmap:";
    NBDStringView ns, leaf;

    if (view_equals(q, META_BASE_ALLOCATION)) {
        *base = true;
        return;
    }
    if (!nbd_meta_context_split(q, &ns, &leaf)) {
        return;
    }
    if (view_equals(ns, "base")) {
        *base |= list && leaf.len == 0;
        return;
    }
    if (!view_equals(ns, "qemu")) {
        return;
    }
    if (leaf.len == 0) {
        if (list) {
            *depth |= exp->allocation_depth;
            memset(bitmaps, 1, exp->n_bitmaps * sizeof(bool));
        }
        return;
    }
    if (view_equals(q, "qemu:allocation-depth")) {
        *depth |= exp->allocation_depth;
        return;
    }
    size_t plen = strlen(bitmap_prefix);
    if (q.len < plen || memcmp(q.data, bitmap_prefix, plen) != 0) {
        return;
    }
    if (q.len == plen) {
        if (list) {
            memset(bitmaps, 1, exp->n_bitmaps * sizeof(bool));
        }
        return;
    }
    for (guint i = 0; i < exp->n_bitmaps; i++) {
        if (view_equals(q, exp->bitmap_contexts[i])) {
            bitmaps[i] = true;
        }
    }
}

static void opt_meta_context(NBDConn *client, const uint8_t *data, size_t len)
{
    bool set = client->opt == NBD_OPT_SET_META_CONTEXT;
    if (!client->structured) {
        send_err(client, NBD_REP_ERR_INVALID, "structured replies not negotiated");
        return;
    }
    NBDOptMetaContext opt;
    NBDDecodeResult r = nbd_parse_opt_meta_context(data, len, &opt);
    if (r.status != NBD_DECODE_OK) {
        send_err(client, NBD_REP_ERR_INVALID, "%s", r.reason);
        return;
    }
    NBDExport *exp = lookup_export(client, opt.export_name);
    if (!exp) {
        send_err(client, NBD_REP_ERR_UNKNOWN, "Export '%.*s' not present",
                 (int) MIN(opt.export_name.len, 256), opt.export_name.data);
        return;
    }
    bool base = false, depth = false;
    g_autofree bool *bitmaps = g_new0(bool, MAX(exp->n_bitmaps, 1));
    if (!set && opt.n_queries == 0) {
        /* LIST with no query lists all */
        base = true;
        depth = exp->allocation_depth;
        memset(bitmaps, 1, exp->n_bitmaps * sizeof(bool));
    }
    NBDMetaQueryIter it;
    NBDStringView q;
    nbd_meta_query_iter_init(&it, &opt);
    while (nbd_meta_query_iter_next(&it, &q)) {
        match_query(exp, q, !set, &base, &depth, bitmaps);
    }
    uint32_t count = 0;
    if (base) {
        send_meta_context(client, set ? NBD_META_ID_BASE_ALLOCATION : 0, META_BASE_ALLOCATION);
        count++;
    }
    if (depth) {
        send_meta_context(client, set ? NBD_META_ID_ALLOCATION_DEPTH : 0,
                          "qemu:allocation-depth");
        count++;
    }
    for (guint i = 0; i < exp->n_bitmaps; i++) {
        if (bitmaps[i]) {
            send_meta_context(client, set ? NBD_META_ID_DIRTY_BITMAP(i) : 0,
                              exp->bitmap_contexts[i]);
            count++;
        }
    }
    if (set) {
        clear_meta(client);
        client->meta_exp = nbd_export_get(exp);
        client->meta_base_allocation = base;
        client->meta_allocation_depth = depth;
        client->meta_bitmaps = g_steal_pointer(&bitmaps);
        client->meta_count = count;
    }
    send_ack(client);
}

static void handle_option(NBDConn *client, const uint8_t *data, size_t len)
{
    if (client->tls_creds && !client->tls_active && refused_before_tls(client)) {
        return;
    }
    switch (client->opt) {
    case NBD_OPT_EXPORT_NAME:
        opt_export_name(client, data, len);
        break;
    case NBD_OPT_ABORT:
        /* Data sent with ABORT is ignored, as the spec asks. */
        send_ack(client);
        nbd_conn_finish(client, true);
        break;
    case NBD_OPT_LIST:
        opt_list(client, len);
        break;
    case NBD_OPT_STARTTLS:
        opt_starttls(client, len);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(client, data, len);
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        opt_structured_reply(client, len);
        break;
    case NBD_OPT_EXTENDED_HEADERS:
        opt_extended_headers(client, len);
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta_context(client, data, len);
        break;
    default:
        send_err(client, NBD_REP_ERR_UNSUP, "Unsupported option %" G_GUINT32_FORMAT " (%s)",
                 client->opt, nbd_opt_name(client->opt));
        break;
    }
}

/* --- the state machine --- */

static void consume(NBDConn *client, size_t n)
{
    client->in_start += n;
}

/* Advance one step with what is buffered; false when more input is needed. */
static bool handshake_step(NBDConn *client)
{
    const uint8_t *p = client->inbuf + client->in_start;
    size_t avail = nbd_conn_input_avail(client);
    switch (client->hs) {
    case NBD_HS_START: {
        if (avail < NBD_CLIENT_FLAGS_SIZE) {
            return false;
        }
        nbd_decode_client_flags(p, avail, &client->client_flags);
        consume(client, NBD_CLIENT_FLAGS_SIZE);
        const char *why = nbd_client_flags_check(client->client_flags,
                                                 NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        if (why) {
            g_info("NBD client %s: %s", berth_channel_peer(client->ch), why);
            nbd_conn_finish(client, false);
            return true;
        }
        client->no_zeroes = (client->client_flags & NBD_FLAG_C_NO_ZEROES) != 0;
        client->hs = NBD_HS_OPT_HEADER;
        return true;
    }
    case NBD_HS_OPT_HEADER: {
        NBDOptionHeader h;
        NBDDecodeResult r = nbd_decode_option_header(p, avail, &h);
        if (r.status == NBD_DECODE_NEED_MORE) {
            return false;
        }
        if (r.status == NBD_DECODE_INVALID) {
            g_info("NBD client %s: %s", berth_channel_peer(client->ch), r.reason);
            nbd_conn_finish(client, false);
            return true;
        }
        consume(client, r.size);
        client->opt = h.option;
        client->opt_len = h.length;
        uint32_t reply_error = 0;
        switch (nbd_opt_check_length(h.option, h.length, &reply_error)) {
        case NBD_OPT_LENGTH_ACCEPT:
            client->hs = NBD_HS_OPT_DATA;
            break;
        case NBD_OPT_LENGTH_SKIP:
            client->skip_left = h.length;
            client->skip_reply = reply_error;
            client->hs = NBD_HS_OPT_SKIP;
            break;
        case NBD_OPT_LENGTH_DISCONNECT:
            g_info("NBD client %s: option %s with length %" G_GUINT32_FORMAT
                   " is too long, disconnecting", berth_channel_peer(client->ch),
                   nbd_opt_name(h.option), h.length);
            nbd_conn_finish(client, false);
            break;
        }
        return true;
    }
    case NBD_HS_OPT_DATA:
        if (avail < client->opt_len) {
            return false;
        }
        consume(client, client->opt_len);
        client->hs = NBD_HS_OPT_HEADER;
        handle_option(client, p, client->opt_len);
        return true;
    case NBD_HS_TLS:
        return false; /* driven by starttls_step() */
    case NBD_HS_OPT_SKIP: {
        size_t take = MIN(avail, client->skip_left);
        consume(client, take);
        client->skip_left -= take;
        if (client->skip_left > 0) {
            return false;
        }
        client->hs = NBD_HS_OPT_HEADER;
        if (client->tls_creds && !client->tls_active && client->opt != NBD_OPT_STARTTLS) {
            refused_before_tls(client);
        } else if (client->skip_reply == NBD_REP_ERR_UNSUP) {
            send_err(client, NBD_REP_ERR_UNSUP, "Unsupported option %" G_GUINT32_FORMAT " (%s)",
                     client->opt, nbd_opt_name(client->opt));
        } else {
            send_err(client, client->skip_reply, "option %s: length %" G_GUINT32_FORMAT
                     " is not acceptable", nbd_opt_name(client->opt), client->opt_len);
        }
        return true;
    }
    }
    return false;
}

bool nbd_handshake_input(NBDConn *client)
{
    /* Bounded: a client gets a fair share of the loop, then waits for poll;
     * so it does once a read came back short (the socket is empty). */
    bool drained = false;
    for (int reads = 0; reads < 16;) {
        if (client->phase != NBD_CONN_HANDSHAKE) {
            if (client->handoff_pending) {
                return true; /* its requests are the export's thread's to read */
            }
            if (client->phase == NBD_CONN_TRANSMISSION) {
                return nbd_transmission_input(client);
            }
            return client->phase != NBD_CONN_CLOSED;
        }
        if (client->hs == NBD_HS_TLS) {
            if (!starttls_step(client)) {
                return false;
            }
            if (client->hs == NBD_HS_TLS) {
                return true; /* waiting for the ack to leave or for the peer */
            }
            continue;
        }
        /* A peer that does not read our replies gets no more of them:
         * its options wait in the socket, not in our memory. */
        if (nbd_conn_output_backlogged(client)) {
            return true;
        }
        if (handshake_step(client)) {
            continue;
        }
        if (drained) {
            return true;
        }
        ssize_t got = nbd_conn_read_more(client, NULL, 0, SIZE_MAX, &drained);
        if (got == BERTH_CHANNEL_AGAIN) {
            return true;
        }
        if (got <= 0) {
            nbd_conn_close(client);
            return false;
        }
        reads++;
    }
    /* Budget spent: buffered requests must not wait for more socket input. */
    nbd_conn_kick_read(client);
    return true;
}
