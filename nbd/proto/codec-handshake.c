/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Handshake byte formats of the NBD wire codec: the newstyle greeting and
 * client flags, option headers and option reply headers, the reply to
 * NBD_OPT_EXPORT_NAME, the payloads of every option reply (SERVER, INFO,
 * META_CONTEXT, errors) in both directions, and the server-side parsers for
 * option data (EXPORT_NAME, INFO/GO, LIST_/SET_META_CONTEXT) with their
 * client-side encoders.  Parsers check every length against the bytes
 * actually present before they look at anything the length covers, and
 * return views into the caller's buffer; nothing here allocates.  How long
 * an option may be before it is read is decided in codec.c.
 */
#include <string.h>

#include "nbd/proto/codec.h"

/* ---- Greeting and client flags ---- */

size_t nbd_encode_greeting(uint8_t *buf, uint16_t handshake_flags)
{
    nbd_store_be64(buf, NBD_MAGIC);
    nbd_store_be64(buf + 8, NBD_OPTS_MAGIC);
    nbd_store_be16(buf + 16, handshake_flags);
    return NBD_GREETING_SIZE;
}

NBDDecodeResult nbd_decode_greeting(const uint8_t *buf, size_t len, NBDGreeting *out)
{
    /* Check each magic as soon as it is complete so a client talking to the
     * wrong kind of server fails at once rather than waiting for more. */
    if (len < 8) {
        return nbd_decode_need(NBD_GREETING_SIZE);
    }
    if (nbd_load_be64(buf) != NBD_MAGIC) {
        return nbd_decode_invalid("server did not send NBDMAGIC");
    }
    if (len < 16) {
        return nbd_decode_need(NBD_GREETING_SIZE);
    }
    uint64_t magic2 = nbd_load_be64(buf + 8);
    if (magic2 == NBD_CLISERV_MAGIC) {
        return nbd_decode_invalid("server uses oldstyle negotiation, which is not supported");
    }
    if (magic2 != NBD_OPTS_MAGIC) {
        return nbd_decode_invalid("server did not send IHAVEOPT");
    }
    if (len < NBD_GREETING_SIZE) {
        return nbd_decode_need(NBD_GREETING_SIZE);
    }
    out->handshake_flags = nbd_load_be16(buf + 16);
    return nbd_decode_ok(NBD_GREETING_SIZE);
}

size_t nbd_encode_client_flags(uint8_t *buf, uint32_t client_flags)
{
    nbd_store_be32(buf, client_flags);
    return NBD_CLIENT_FLAGS_SIZE;
}

NBDDecodeResult nbd_decode_client_flags(const uint8_t *buf, size_t len, uint32_t *out)
{
    if (len < NBD_CLIENT_FLAGS_SIZE) {
        return nbd_decode_need(NBD_CLIENT_FLAGS_SIZE);
    }
    *out = nbd_load_be32(buf);
    return nbd_decode_ok(NBD_CLIENT_FLAGS_SIZE);
}

const char *nbd_client_flags_check(uint32_t client_flags, uint16_t handshake_flags)
{
    if (client_flags & ~NBD_FLAG_C_KNOWN) {
        return "client set unknown client flags";
    }
    if ((client_flags & NBD_FLAG_C_NO_ZEROES) && !(handshake_flags & NBD_FLAG_NO_ZEROES)) {
        return "client set NO_ZEROES, which the server did not offer";
    }
    if ((client_flags & NBD_FLAG_C_FIXED_NEWSTYLE) &&
        !(handshake_flags & NBD_FLAG_FIXED_NEWSTYLE)) {
        return "client set FIXED_NEWSTYLE, which the server did not offer";
    }
    /* A client without FIXED_NEWSTYLE may still be served (the spec allows
     * it); what that means for TLS is the server's policy, not the codec's. */
    return NULL;
}

/* ---- Option headers and option reply headers ---- */

size_t nbd_encode_option_header(uint8_t *buf, uint32_t option, uint32_t length)
{
    nbd_store_be64(buf, NBD_OPTS_MAGIC);
    nbd_store_be32(buf + 8, option);
    nbd_store_be32(buf + 12, length);
    return NBD_OPTION_HEADER_SIZE;
}

NBDDecodeResult nbd_decode_option_header(const uint8_t *buf, size_t len, NBDOptionHeader *out)
{
    if (len < 8) {
        return nbd_decode_need(NBD_OPTION_HEADER_SIZE);
    }
    if (nbd_load_be64(buf) != NBD_OPTS_MAGIC) {
        return nbd_decode_invalid("option does not start with IHAVEOPT");
    }
    if (len < NBD_OPTION_HEADER_SIZE) {
        return nbd_decode_need(NBD_OPTION_HEADER_SIZE);
    }
    out->option = nbd_load_be32(buf + 8);
    out->length = nbd_load_be32(buf + 12);
    return nbd_decode_ok(NBD_OPTION_HEADER_SIZE);
}

size_t nbd_encode_option_reply_header(uint8_t *buf, uint32_t option, uint32_t type,
                                      uint32_t length)
{
    nbd_store_be64(buf, NBD_REP_MAGIC);
    nbd_store_be32(buf + 8, option);
    nbd_store_be32(buf + 12, type);
    nbd_store_be32(buf + 16, length);
    return NBD_OPTION_REPLY_HEADER_SIZE;
}

NBDDecodeResult nbd_decode_option_reply_header(const uint8_t *buf, size_t len,
                                               NBDOptionReplyHeader *out)
{
    if (len < 8) {
        return nbd_decode_need(NBD_OPTION_REPLY_HEADER_SIZE);
    }
    if (nbd_load_be64(buf) != NBD_REP_MAGIC) {
        return nbd_decode_invalid("option reply has a wrong magic");
    }
    if (len < NBD_OPTION_REPLY_HEADER_SIZE) {
        return nbd_decode_need(NBD_OPTION_REPLY_HEADER_SIZE);
    }
    out->option = nbd_load_be32(buf + 8);
    out->type = nbd_load_be32(buf + 12);
    out->length = nbd_load_be32(buf + 16);
    return nbd_decode_ok(NBD_OPTION_REPLY_HEADER_SIZE);
}

size_t nbd_encode_export_name_reply(uint8_t *buf, uint64_t size, uint16_t flags,
                                    bool no_zeroes)
{
    nbd_store_be64(buf, size);
    nbd_store_be16(buf + 8, flags);
    if (no_zeroes) {
        return NBD_EXPORT_NAME_REPLY_SIZE;
    }
    memset(buf + NBD_EXPORT_NAME_REPLY_SIZE, 0, NBD_EXPORT_NAME_ZEROES);
    return NBD_EXPORT_NAME_REPLY_MAX;
}

NBDDecodeResult nbd_decode_export_name_reply(const uint8_t *buf, size_t len, bool no_zeroes,
                                             NBDExportNameReply *out)
{
    size_t need = no_zeroes ? NBD_EXPORT_NAME_REPLY_SIZE : NBD_EXPORT_NAME_REPLY_MAX;

    if (len < need) {
        return nbd_decode_need(need);
    }
    out->size = nbd_load_be64(buf);
    out->flags = nbd_load_be16(buf + 8);
    /* The padding is "reserved": a client gains nothing by refusing non-zero
     * bytes there, so they are skipped unread. */
    return nbd_decode_ok(need);
}

/* ---- Option replies, server side ---- */

size_t nbd_encode_rep_ack(uint8_t *buf, uint32_t option)
{
    return nbd_encode_option_reply_header(buf, option, NBD_REP_ACK, 0);
}

size_t nbd_encode_rep_err(uint8_t *buf, size_t cap, uint32_t option, uint32_t type,
                          const char *msg, size_t msg_len)
{
    if (!NBD_REP_IS_ERR(type) || msg_len > NBD_MAX_STRING ||
        cap < NBD_OPTION_REPLY_HEADER_SIZE + msg_len) {
        return 0;
    }
    nbd_encode_option_reply_header(buf, option, type, (uint32_t) msg_len);
    if (msg_len) {
        memcpy(buf + NBD_OPTION_REPLY_HEADER_SIZE, msg, msg_len);
    }
    return NBD_OPTION_REPLY_HEADER_SIZE + msg_len;
}

size_t nbd_encode_rep_server(uint8_t *buf, size_t cap, uint32_t option,
                             const char *name, size_t name_len,
                             const char *desc, size_t desc_len)
{
    size_t payload = 4 + name_len + desc_len;

    if (name_len > NBD_MAX_STRING || desc_len > NBD_MAX_STRING ||
        cap < NBD_OPTION_REPLY_HEADER_SIZE + payload) {
        return 0;
    }
    uint8_t *p = buf + nbd_encode_option_reply_header(buf, option, NBD_REP_SERVER,
                                                      (uint32_t) payload);
    nbd_store_be32(p, (uint32_t) name_len);
    p += 4;
    if (name_len) {
        memcpy(p, name, name_len);
        p += name_len;
    }
    if (desc_len) {
        memcpy(p, desc, desc_len);
    }
    return NBD_OPTION_REPLY_HEADER_SIZE + payload;
}

size_t nbd_encode_rep_info_export(uint8_t *buf, uint32_t option, uint64_t size,
                                  uint16_t flags)
{
    uint8_t *p = buf + nbd_encode_option_reply_header(buf, option, NBD_REP_INFO, 12);
    nbd_store_be16(p, NBD_INFO_EXPORT);
    nbd_store_be64(p + 2, size);
    nbd_store_be16(p + 10, flags);
    return NBD_REP_INFO_EXPORT_SIZE;
}

size_t nbd_encode_rep_info_block_size(uint8_t *buf, uint32_t option, uint32_t min_block,
                                      uint32_t pref_block, uint32_t max_block)
{
    uint8_t *p = buf + nbd_encode_option_reply_header(buf, option, NBD_REP_INFO, 14);
    nbd_store_be16(p, NBD_INFO_BLOCK_SIZE);
    nbd_store_be32(p + 2, min_block);
    nbd_store_be32(p + 6, pref_block);
    nbd_store_be32(p + 10, max_block);
    return NBD_REP_INFO_BLOCK_SIZE_SIZE;
}

size_t nbd_encode_rep_info_string_hdr(uint8_t *buf, uint32_t option, uint16_t info_type,
                                      size_t str_len)
{
    if (str_len > NBD_MAX_STRING) {
        return 0;
    }
    nbd_encode_option_reply_header(buf, option, NBD_REP_INFO, (uint32_t) (2 + str_len));
    nbd_store_be16(buf + NBD_OPTION_REPLY_HEADER_SIZE, info_type);
    return NBD_REP_INFO_STRING_HDR_SIZE;
}

size_t nbd_encode_rep_info_string(uint8_t *buf, size_t cap, uint32_t option,
                                  uint16_t info_type, const char *str, size_t str_len)
{
    if (str_len > NBD_MAX_STRING || cap < NBD_REP_INFO_STRING_HDR_SIZE + str_len) {
        return 0;
    }
    nbd_encode_rep_info_string_hdr(buf, option, info_type, str_len);
    if (str_len) {
        memcpy(buf + NBD_REP_INFO_STRING_HDR_SIZE, str, str_len);
    }
    return NBD_REP_INFO_STRING_HDR_SIZE + str_len;
}

size_t nbd_encode_rep_meta_context(uint8_t *buf, size_t cap, uint32_t option,
                                   uint32_t context_id, const char *name, size_t name_len)
{
    if (name_len > NBD_MAX_STRING || cap < NBD_OPTION_REPLY_HEADER_SIZE + 4 + name_len) {
        return 0;
    }
    nbd_encode_option_reply_header(buf, option, NBD_REP_META_CONTEXT,
                                   (uint32_t) (4 + name_len));
    nbd_store_be32(buf + NBD_OPTION_REPLY_HEADER_SIZE, context_id);
    if (name_len) {
        memcpy(buf + NBD_OPTION_REPLY_HEADER_SIZE + 4, name, name_len);
    }
    return NBD_OPTION_REPLY_HEADER_SIZE + 4 + name_len;
}

/* ---- Option replies, client side ---- */

static NBDDecodeResult decode_string(const uint8_t *p, size_t len, NBDStringView *out)
{
    const char *why = nbd_string_check((const char *) p, len);

    if (why) {
        return nbd_decode_invalid(why);
    }
    out->data = (const char *) p;
    out->len = len;
    return nbd_decode_ok(len);
}

NBDDecodeResult nbd_decode_rep_server(const uint8_t *payload, size_t len, NBDRepServer *out)
{
    NBDDecodeResult r;

    if (len < 4) {
        return nbd_decode_invalid("SERVER reply shorter than its name length");
    }
    uint32_t name_len = nbd_load_be32(payload);
    if (name_len > len - 4) {
        return nbd_decode_invalid("SERVER reply name length exceeds the reply");
    }
    r = decode_string(payload + 4, name_len, &out->name);
    if (r.status != NBD_DECODE_OK) {
        return r;
    }
    r = decode_string(payload + 4 + name_len, len - 4 - name_len, &out->description);
    if (r.status != NBD_DECODE_OK) {
        return r;
    }
    return nbd_decode_ok(len);
}

NBDDecodeResult nbd_decode_rep_info(const uint8_t *payload, size_t len, NBDRepInfo *out)
{
    NBDDecodeResult r;

    if (len < 2) {
        return nbd_decode_invalid("INFO reply shorter than its type");
    }
    out->type = nbd_load_be16(payload);
    switch (out->type) {
    case NBD_INFO_EXPORT:
        if (len != 12) {
            return nbd_decode_invalid("INFO_EXPORT reply length is not 12");
        }
        out->u.export_.size = nbd_load_be64(payload + 2);
        out->u.export_.flags = nbd_load_be16(payload + 10);
        break;
    case NBD_INFO_NAME:
    case NBD_INFO_DESCRIPTION:
        r = decode_string(payload + 2, len - 2, &out->u.name);
        if (r.status != NBD_DECODE_OK) {
            return r;
        }
        break;
    case NBD_INFO_BLOCK_SIZE:
        if (len != 14) {
            return nbd_decode_invalid("INFO_BLOCK_SIZE reply length is not 14");
        }
        out->u.block_size.min_block = nbd_load_be32(payload + 2);
        out->u.block_size.pref_block = nbd_load_be32(payload + 6);
        out->u.block_size.max_block = nbd_load_be32(payload + 10);
        break;
    default:
        /* Clients must ignore information they do not understand. */
        out->u.raw.data = (const char *) payload + 2;
        out->u.raw.len = len - 2;
        break;
    }
    return nbd_decode_ok(len);
}

NBDDecodeResult nbd_decode_rep_meta_context(const uint8_t *payload, size_t len,
                                            NBDRepMetaContext *out)
{
    NBDDecodeResult r;

    if (len < 4) {
        return nbd_decode_invalid("META_CONTEXT reply shorter than its context id");
    }
    out->context_id = nbd_load_be32(payload);
    r = decode_string(payload + 4, len - 4, &out->name);
    if (r.status != NBD_DECODE_OK) {
        return r;
    }
    return nbd_decode_ok(len);
}

NBDDecodeResult nbd_decode_rep_err(const uint8_t *payload, size_t len, NBDStringView *msg)
{
    return decode_string(payload, len, msg);
}

/* ---- Option data, server side ---- */

NBDDecodeResult nbd_parse_opt_export_name(const uint8_t *data, size_t len,
                                          NBDStringView *name)
{
    return decode_string(data, len, name);
}

NBDDecodeResult nbd_parse_opt_info_go(const uint8_t *data, size_t len, NBDOptInfoGo *out)
{
    NBDDecodeResult r;

    if (len < 6) {
        return nbd_decode_invalid("option too short for a name length and request count");
    }
    uint32_t name_len = nbd_load_be32(data);
    if (name_len > len - 6) {
        return nbd_decode_invalid("export name length exceeds the option length");
    }
    r = decode_string(data + 4, name_len, &out->name);
    if (r.status != NBD_DECODE_OK) {
        return r;
    }
    const uint8_t *p = data + 4 + name_len;
    size_t rest = len - 6 - name_len;
    uint16_t n = nbd_load_be16(p);
    if (rest != (size_t) n * 2) {
        return nbd_decode_invalid("information request count does not match the option length");
    }
    out->n_requests = n;
    out->requests = p + 2;
    return nbd_decode_ok(len);
}

uint16_t nbd_opt_info_go_request(const NBDOptInfoGo *info, uint16_t i)
{
    if (i >= info->n_requests) {
        return UINT16_MAX;
    }
    return nbd_load_be16(info->requests + 2 * (size_t) i);
}

bool nbd_opt_info_go_has(const NBDOptInfoGo *info, uint16_t info_type)
{
    for (uint32_t i = 0; i < info->n_requests; i++) {
        if (nbd_load_be16(info->requests + 2 * (size_t) i) == info_type) {
            return true;
        }
    }
    return false;
}

NBDDecodeResult nbd_parse_opt_meta_context(const uint8_t *data, size_t len,
                                           NBDOptMetaContext *out)
{
    NBDDecodeResult r;

    if (len < 8) {
        return nbd_decode_invalid("option too short for a name length and query count");
    }
    uint32_t name_len = nbd_load_be32(data);
    if (name_len > len - 8) {
        return nbd_decode_invalid("export name length exceeds the option length");
    }
    r = decode_string(data + 4, name_len, &out->export_name);
    if (r.status != NBD_DECODE_OK) {
        return r;
    }
    const uint8_t *p = data + 4 + name_len;
    uint32_t n = nbd_load_be32(p);
    p += 4;
    size_t rest = len - 8 - name_len;

    /* Every query costs at least its 4-byte length, which bounds the walk
     * below by the bytes present whatever count the client claims. */
    if (n > rest / 4) {
        return nbd_decode_invalid("query count exceeds the option length");
    }
    out->n_queries = n;
    out->queries = p;
    out->queries_len = rest;
    for (uint32_t i = 0; i < n; i++) {
        if (rest < 4) {
            return nbd_decode_invalid("query length runs past the option length");
        }
        uint32_t qlen = nbd_load_be32(p);
        if (qlen > rest - 4) {
            return nbd_decode_invalid("query runs past the option length");
        }
        const char *why = nbd_string_check((const char *) p + 4, qlen);
        if (why) {
            return nbd_decode_invalid(why);
        }
        p += 4 + qlen;
        rest -= 4 + (size_t) qlen;
    }
    if (rest != 0) {
        return nbd_decode_invalid("trailing bytes after the last query");
    }
    return nbd_decode_ok(len);
}

void nbd_meta_query_iter_init(NBDMetaQueryIter *it, const NBDOptMetaContext *opt)
{
    it->pos = opt->queries;
    it->end = opt->queries + opt->queries_len;
}

bool nbd_meta_query_iter_next(NBDMetaQueryIter *it, NBDStringView *query)
{
    /* The parser validated the layout; the bounds checks here only keep a
     * misused iterator (e.g. on an unparsed struct) from overrunning. */
    if (it->pos == NULL || (size_t) (it->end - it->pos) < 4) {
        return false;
    }
    uint32_t qlen = nbd_load_be32(it->pos);
    if (qlen > (size_t) (it->end - it->pos) - 4) {
        return false;
    }
    query->data = (const char *) it->pos + 4;
    query->len = qlen;
    it->pos += 4 + (size_t) qlen;
    return true;
}

bool nbd_meta_context_split(NBDStringView s, NBDStringView *ns, NBDStringView *leaf)
{
    const char *colon = s.len ? memchr(s.data, ':', s.len) : NULL;

    if (colon == NULL || colon == s.data) {
        return false;
    }
    ns->data = s.data;
    ns->len = (size_t) (colon - s.data);
    leaf->data = colon + 1;
    leaf->len = s.len - ns->len - 1;
    return true;
}

/* ---- Option data, client side ---- */

size_t nbd_encode_opt_info_go(uint8_t *buf, size_t cap, const char *name, size_t name_len,
                              const uint16_t *requests, uint16_t n_requests)
{
    size_t total = 4 + name_len + 2 + 2 * (size_t) n_requests;

    if (name_len > NBD_MAX_STRING || cap < total) {
        return 0;
    }
    nbd_store_be32(buf, (uint32_t) name_len);
    if (name_len) {
        memcpy(buf + 4, name, name_len);
    }
    uint8_t *p = buf + 4 + name_len;
    nbd_store_be16(p, n_requests);
    for (uint16_t i = 0; i < n_requests; i++) {
        nbd_store_be16(p + 2 + 2 * (size_t) i, requests[i]);
    }
    return total;
}

size_t nbd_encode_opt_meta_context(uint8_t *buf, size_t cap, const char *name,
                                   size_t name_len, const char *const *queries,
                                   uint32_t n_queries)
{
    size_t total = 4 + name_len + 4;

    if (name_len > NBD_MAX_STRING) {
        return 0;
    }
    for (uint32_t i = 0; i < n_queries; i++) {
        size_t qlen = strlen(queries[i]);
        if (qlen > NBD_MAX_STRING) {
            return 0;
        }
        total += 4 + qlen;
    }
    if (cap < total || total > UINT32_MAX) {
        return 0;
    }
    nbd_store_be32(buf, (uint32_t) name_len);
    if (name_len) {
        memcpy(buf + 4, name, name_len);
    }
    uint8_t *p = buf + 4 + name_len;
    nbd_store_be32(p, n_queries);
    p += 4;
    for (uint32_t i = 0; i < n_queries; i++) {
        size_t qlen = strlen(queries[i]);
        nbd_store_be32(p, (uint32_t) qlen);
        memcpy(p + 4, queries[i], qlen);
        p += 4 + qlen;
    }
    return total;
}
