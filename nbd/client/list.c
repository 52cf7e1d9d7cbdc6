/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Listing a server's exports, blocking (nbd_list_exports() in
 * include/berth/nbd/client.h): the handshake a `berth-nbd -L` or `qemu-nbd -L` does.
 * After the greeting (and STARTTLS), structured replies are asked for only
 * to learn whether metadata contexts can be listed; NBD_OPT_LIST gives the
 * names, then each export is asked about with NBD_OPT_INFO and
 * NBD_OPT_LIST_META_CONTEXT, and the session ends with NBD_OPT_ABORT.
 *
 * Whatever the server sends, memory stays bounded: each reply is at most
 * NBD_CLIENT_REPLY_MAX_LENGTH bytes (client-option.c), and the list as a
 * whole holds at most LIST_MAX_EXPORTS exports, LIST_MAX_CONTEXTS contexts
 * per export and LIST_MAX_BYTES bytes of strings.
 *
 * In the entries, the block sizes of `info` stay 0 when the server did not
 * send NBD_INFO_BLOCK_SIZE, so that a listing can tell "not advertised"
 * from the spec's defaults (qemu-nbd -L prints them only when sent).
 */
#include "client-int.h"

#include <gio/gio.h>
#include <string.h>

#define LIST_MAX_EXPORTS 10000u
#define LIST_MAX_CONTEXTS 1024u
#define LIST_MAX_BYTES (64u * 1024u * 1024u)
/* The server may close instead of acknowledging NBD_OPT_ABORT; do not wait
 * the full negotiation timeout for an ACK that is only a courtesy. */
#define ABORT_ACK_TIMEOUT_MS 2000

typedef struct {
    NBDClientNeg n;
    NBDExportList *list;
    size_t bytes;           /* strings kept so far, against LIST_MAX_BYTES */
    bool info_unsupported;  /* the server answered NBD_OPT_INFO with ERR_UNSUP */
} ListState;

static void entry_free(gpointer p)
{
    NBDExportListEntry *e = p;

    g_free(e->name);
    g_free(e->description);
    nbd_export_info_clear(&e->info);
    g_strfreev(e->meta_contexts);
    g_free(e);
}

void nbd_export_list_free(NBDExportList *list)
{
    if (!list) {
        return;
    }
    g_ptr_array_unref(list->entries);
    g_free(list);
}

/* Account for a string about to be kept; false (errp set) past the budget. */
static bool take_bytes(ListState *st, size_t len, GError **errp)
{
    if (len + 1 > LIST_MAX_BYTES - st->bytes) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server's export list is too large (over %u MiB of names, descriptions "
                    "and metadata contexts)", LIST_MAX_BYTES / (1024u * 1024u));
        return false;
    }
    st->bytes += len + 1;
    return true;
}

static void set_malformed(uint32_t option, const char *what, NBDDecodeResult res, GError **errp)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "Malformed %s in reply to %s: %s", what, nbd_opt_name(option),
                res.reason ? res.reason : "truncated");
}

/* Structured replies are only needed to list metadata contexts, so a
 * refusal just means there are none to list. */
static bool negotiate_structured(ListState *st, GError **errp)
{
    NBDOptReply r;

    if (!nbd_client_send_option(&st->n, NBD_OPT_STRUCTURED_REPLY, NULL, 0, errp) ||
        !nbd_client_read_option_reply(&st->n, NBD_OPT_STRUCTURED_REPLY, &r, errp)) {
        return false;
    }
    bool ok = true;
    if (r.hdr.type == NBD_REP_ERR_TLS_REQD && !st->n.tls) {
        nbd_client_set_option_error(&st->n, NBD_OPT_STRUCTURED_REPLY, &r, errp);
        ok = false;
    } else if (NBD_REP_IS_ERR(r.hdr.type)) {
        st->list->structured_reply = false;
    } else {
        ok = nbd_client_expect_ack(&st->n, NBD_OPT_STRUCTURED_REPLY, &r, errp);
        st->list->structured_reply = ok;
    }
    nbd_opt_reply_clear(&r);
    return ok;
}

static bool add_server_reply(ListState *st, const NBDOptReply *r, GError **errp)
{
    NBDRepServer srv;
    NBDDecodeResult res = nbd_decode_rep_server(r->payload, r->hdr.length, &srv);

    if (res.status != NBD_DECODE_OK) {
        set_malformed(NBD_OPT_LIST, "NBD_REP_SERVER", res, errp);
        return false;
    }
    if (st->list->entries->len >= LIST_MAX_EXPORTS) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server lists more than %u exports", LIST_MAX_EXPORTS);
        return false;
    }
    if (!take_bytes(st, srv.name.len, errp) || !take_bytes(st, srv.description.len, errp)) {
        return false;
    }
    NBDExportListEntry *e = g_new0(NBDExportListEntry, 1);
    e->name = g_strndup(srv.name.data, srv.name.len);
    e->description = srv.description.len
                   ? g_strndup(srv.description.data, srv.description.len) : NULL;
    e->meta_contexts = g_new0(char *, 1);
    g_ptr_array_add(st->list->entries, e);
    return true;
}

/* NBD_OPT_LIST: SERVER replies until the ACK. A refusal is fatal. */
static bool list_names(ListState *st, GError **errp)
{
    if (!nbd_client_send_option(&st->n, NBD_OPT_LIST, NULL, 0, errp)) {
        return false;
    }
    for (;;) {
        NBDOptReply r;
        bool ok;

        if (!nbd_client_read_option_reply(&st->n, NBD_OPT_LIST, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_SERVER) {
            ok = add_server_reply(st, &r, errp);
            nbd_opt_reply_clear(&r);
            if (!ok) {
                return false;
            }
            continue;
        }
        ok = nbd_client_expect_ack(&st->n, NBD_OPT_LIST, &r, errp);
        nbd_opt_reply_clear(&r);
        return ok;
    }
}

static bool take_info(ListState *st, NBDExportListEntry *e, const NBDOptReply *r,
                      bool *have_export, bool *have_block_size, GError **errp)
{
    NBDRepInfo ri;
    NBDDecodeResult res = nbd_decode_rep_info(r->payload, r->hdr.length, &ri);

    if (res.status != NBD_DECODE_OK) {
        set_malformed(NBD_OPT_INFO, "NBD_REP_INFO", res, errp);
        return false;
    }
    switch (ri.type) {
    case NBD_INFO_EXPORT:
        e->info.size = ri.u.export_.size;
        e->info.flags = ri.u.export_.flags;
        *have_export = true;
        break;
    case NBD_INFO_BLOCK_SIZE:
        e->info.min_block = ri.u.block_size.min_block;
        e->info.pref_block = ri.u.block_size.pref_block;
        e->info.max_block = ri.u.block_size.max_block;
        *have_block_size = true;
        break;
    case NBD_INFO_DESCRIPTION:
        /* NBD_OPT_LIST's description wins; they should agree anyway. */
        if (!e->description && ri.u.name.len) {
            if (!take_bytes(st, ri.u.name.len, errp)) {
                return false;
            }
            e->description = g_strndup(ri.u.name.data, ri.u.name.len);
        }
        break;
    default:
        break; /* NAME and unknown types: ignored, as the spec allows */
    }
    return true;
}

static bool check_info(const NBDExportListEntry *e, bool have_export, bool have_block_size,
                       GError **errp)
{
    if (!have_export) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server acknowledged NBD_OPT_INFO for export '%s' without "
                    "NBD_INFO_EXPORT", e->name);
        return false;
    }
    if (!(e->info.flags & NBD_FLAG_HAS_FLAGS)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Server sent transmission flags 0x%x without NBD_FLAG_HAS_FLAGS for "
                    "export '%s'", e->info.flags, e->name);
        return false;
    }
    if (have_block_size) {
        const char *why = nbd_block_size_check(e->info.min_block, e->info.pref_block,
                                               e->info.max_block, e->info.size);
        if (why) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "Server sent invalid block sizes (%" G_GUINT32_FORMAT "/%"
                        G_GUINT32_FORMAT "/%" G_GUINT32_FORMAT ") for export '%s': %s",
                        e->info.min_block, e->info.pref_block, e->info.max_block, e->name,
                        why);
            return false;
        }
    }
    return true;
}

/* NBD_OPT_INFO for one export. An error reply leaves has_info false. */
static bool query_info(ListState *st, NBDExportListEntry *e, GError **errp)
{
    static const uint16_t requests[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION };
    size_t name_len = strlen(e->name);
    size_t cap = 4 + name_len + 2 + 2 * G_N_ELEMENTS(requests);
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_info_go(data, cap, e->name, name_len, requests,
                                        G_N_ELEMENTS(requests));
    bool have_export = false, have_block_size = false;

    g_assert(len > 0);
    if (!nbd_client_send_option(&st->n, NBD_OPT_INFO, data, (uint32_t) len, errp)) {
        return false;
    }
    for (unsigned i = 0; i <= NBD_CLIENT_MAX_REPLIES_PER_OPTION; i++) {
        NBDOptReply r;
        bool ok;

        if (!nbd_client_read_option_reply(&st->n, NBD_OPT_INFO, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_INFO) {
            ok = take_info(st, e, &r, &have_export, &have_block_size, errp);
            nbd_opt_reply_clear(&r);
            if (!ok) {
                return false;
            }
            continue;
        }
        if (NBD_REP_IS_ERR(r.hdr.type)) {
            /* This export cannot be queried; the rest of the list still can. */
            st->info_unsupported = r.hdr.type == NBD_REP_ERR_UNSUP;
            nbd_opt_reply_clear(&r);
            nbd_export_info_clear(&e->info);
            return true;
        }
        ok = nbd_client_expect_ack(&st->n, NBD_OPT_INFO, &r, errp);
        nbd_opt_reply_clear(&r);
        if (!ok || !check_info(e, have_export, have_block_size, errp)) {
            return false;
        }
        e->has_info = true;
        return true;
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "Too many replies to NBD_OPT_INFO for export '%s'", e->name);
    return false;
}

/* NBD_OPT_LIST_META_CONTEXT with no query: every context of the export. */
static bool query_meta_contexts(ListState *st, NBDExportListEntry *e, GError **errp)
{
    size_t name_len = strlen(e->name);
    size_t cap = 4 + name_len + 4;
    g_autofree uint8_t *data = g_malloc(cap);
    size_t len = nbd_encode_opt_meta_context(data, cap, e->name, name_len, NULL, 0);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

    g_assert(len > 0);
    if (!nbd_client_send_option(&st->n, NBD_OPT_LIST_META_CONTEXT, data, (uint32_t) len,
                                errp)) {
        return false;
    }
    for (;;) {
        NBDOptReply r;
        bool ok;

        if (!nbd_client_read_option_reply(&st->n, NBD_OPT_LIST_META_CONTEXT, &r, errp)) {
            return false;
        }
        if (r.hdr.type == NBD_REP_META_CONTEXT) {
            NBDRepMetaContext mc;
            NBDDecodeResult res = nbd_decode_rep_meta_context(r.payload, r.hdr.length, &mc);
            if (res.status != NBD_DECODE_OK) {
                set_malformed(NBD_OPT_LIST_META_CONTEXT, "NBD_REP_META_CONTEXT", res, errp);
                nbd_opt_reply_clear(&r);
                return false;
            }
            if (names->len >= LIST_MAX_CONTEXTS) {
                g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Server lists more than %u metadata contexts for export '%s'",
                            LIST_MAX_CONTEXTS, e->name);
                nbd_opt_reply_clear(&r);
                return false;
            }
            if (!take_bytes(st, mc.name.len, errp)) {
                nbd_opt_reply_clear(&r);
                return false;
            }
            g_ptr_array_add(names, g_strndup(mc.name.data, mc.name.len));
            nbd_opt_reply_clear(&r);
            continue;
        }
        if (NBD_REP_IS_ERR(r.hdr.type)) {
            nbd_opt_reply_clear(&r);
            return true; /* no contexts to show for this export */
        }
        ok = nbd_client_expect_ack(&st->n, NBD_OPT_LIST_META_CONTEXT, &r, errp);
        nbd_opt_reply_clear(&r);
        if (!ok) {
            return false;
        }
        g_ptr_array_add(names, NULL);
        g_strfreev(e->meta_contexts);
        e->meta_contexts = (char **) g_ptr_array_free(g_steal_pointer(&names), FALSE);
        return true;
    }
}

/* Polite goodbye: the ACK is read if it comes; a server that just closes,
 * or says nothing, is fine too. */
static void send_abort(ListState *st)
{
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];

    if (nbd_client_send_option(&st->n, NBD_OPT_ABORT, NULL, 0, NULL)) {
        berth_channel_read_all(st->n.ch, buf, sizeof(buf), ABORT_ACK_TIMEOUT_MS, NULL);
    }
}

static bool list_exports(ListState *st, BerthChannel *ch, BerthTlsCreds *tls_creds,
                         const char *tls_hostname, BerthChannel **tls_ch, GError **errp)
{
    bool no_zeroes;

    if (!nbd_client_greet(&st->n, &no_zeroes, errp)) {
        return false;
    }
    if (tls_creds && !nbd_client_start_tls(&st->n, ch, tls_creds, tls_hostname, tls_ch, errp)) {
        return false;
    }
    if (!negotiate_structured(st, errp) || !list_names(st, errp)) {
        return false;
    }
    for (guint i = 0; i < st->list->entries->len; i++) {
        NBDExportListEntry *e = g_ptr_array_index(st->list->entries, i);

        if (!st->info_unsupported && !query_info(st, e, errp)) {
            return false;
        }
        if (st->list->structured_reply && !query_meta_contexts(st, e, errp)) {
            return false;
        }
    }
    send_abort(st);
    return true;
}

NBDExportList *nbd_list_exports(BerthChannel *ch, BerthTlsCreds *tls_creds,
                                const char *tls_hostname, GError **errp)
{
    g_return_val_if_fail(ch != NULL, NULL);

    ListState st = { .n = { .ch = ch, .tls = false } };
    BerthChannel *tls_ch = NULL;

    st.list = g_new0(NBDExportList, 1);
    st.list->entries = g_ptr_array_new_with_free_func(entry_free);
    bool ok = list_exports(&st, ch, tls_creds, tls_hostname, &tls_ch, errp);
    if (tls_ch) {
        berth_channel_unref(tls_ch);
    }
    if (!ok) {
        g_clear_pointer(&st.list, nbd_export_list_free);
    }
    return st.list;
}
