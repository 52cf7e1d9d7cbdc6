/*
 * The rules half of the NBD wire codec, as opposed to the byte formats in
 * codec-handshake.c and codec-transmission.c: which requests a server must
 * refuse and with which NBD error (nbd_request_validate and the deferred
 * BLOCK_STATUS payload check), how long each option may be before the
 * server reads it, what block-size constraints may be advertised, the rule
 * every wire string obeys, and the names used in log messages (the errno
 * mapping is errno.c).  All of it is pure: decisions depend on the
 * arguments alone, so the server's request path can trust what passes and
 * every rule has a unit test.
 */
#include <errno.h>
#include <string.h>

#include "nbd/codec.h"

const char *nbd_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ:         return "NBD_CMD_READ";
    case NBD_CMD_WRITE:        return "NBD_CMD_WRITE";
    case NBD_CMD_DISC:         return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH:        return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM:         return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE:        return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES: return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "NBD_CMD_BLOCK_STATUS";
    case NBD_CMD_RESIZE:       return "NBD_CMD_RESIZE";
    default:                   return "unknown command";
    }
}

const char *nbd_opt_name(uint32_t option)
{
    switch (option) {
    case NBD_OPT_EXPORT_NAME:       return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT:             return "NBD_OPT_ABORT";
    case NBD_OPT_LIST:              return "NBD_OPT_LIST";
    case NBD_OPT_PEEK_EXPORT:       return "NBD_OPT_PEEK_EXPORT";
    case NBD_OPT_STARTTLS:          return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO:              return "NBD_OPT_INFO";
    case NBD_OPT_GO:                return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY:  return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:  return "NBD_OPT_SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS:  return "NBD_OPT_EXTENDED_HEADERS";
    default:                        return "unknown option";
    }
}

const char *nbd_rep_name(uint32_t rep_type)
{
    switch (rep_type) {
    case NBD_REP_ACK:                 return "NBD_REP_ACK";
    case NBD_REP_SERVER:              return "NBD_REP_SERVER";
    case NBD_REP_INFO:                return "NBD_REP_INFO";
    case NBD_REP_META_CONTEXT:        return "NBD_REP_META_CONTEXT";
    case NBD_REP_ERR_UNSUP:           return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY:          return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID:         return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM:        return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD:        return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN:         return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN:        return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG:         return "NBD_REP_ERR_TOO_BIG";
    case NBD_REP_ERR_EXT_HEADER_REQD: return "NBD_REP_ERR_EXT_HEADER_REQD";
    default:
        return NBD_REP_IS_ERR(rep_type) ? "unknown error reply" : "unknown reply";
    }
}

const char *nbd_info_name(uint16_t info_type)
{
    switch (info_type) {
    case NBD_INFO_EXPORT:      return "NBD_INFO_EXPORT";
    case NBD_INFO_NAME:        return "NBD_INFO_NAME";
    case NBD_INFO_DESCRIPTION: return "NBD_INFO_DESCRIPTION";
    case NBD_INFO_BLOCK_SIZE:  return "NBD_INFO_BLOCK_SIZE";
    default:                   return "unknown info";
    }
}

const char *nbd_reply_type_name(uint16_t type)
{
    switch (type) {
    case NBD_REPLY_TYPE_NONE:             return "NBD_REPLY_TYPE_NONE";
    case NBD_REPLY_TYPE_OFFSET_DATA:      return "NBD_REPLY_TYPE_OFFSET_DATA";
    case NBD_REPLY_TYPE_OFFSET_HOLE:      return "NBD_REPLY_TYPE_OFFSET_HOLE";
    case NBD_REPLY_TYPE_BLOCK_STATUS:     return "NBD_REPLY_TYPE_BLOCK_STATUS";
    case NBD_REPLY_TYPE_BLOCK_STATUS_EXT: return "NBD_REPLY_TYPE_BLOCK_STATUS_EXT";
    case NBD_REPLY_TYPE_ERROR:            return "NBD_REPLY_TYPE_ERROR";
    case NBD_REPLY_TYPE_ERROR_OFFSET:     return "NBD_REPLY_TYPE_ERROR_OFFSET";
    default:
        return NBD_REPLY_TYPE_IS_ERR(type) ? "unknown error chunk" : "unknown chunk";
    }
}

const char *nbd_err_name(uint32_t nbd_error)
{
    switch (nbd_error) {
    case NBD_SUCCESS:   return "success";
    case NBD_EPERM:     return "NBD_EPERM";
    case NBD_EIO:       return "NBD_EIO";
    case NBD_ENOMEM:    return "NBD_ENOMEM";
    case NBD_EINVAL:    return "NBD_EINVAL";
    case NBD_ENOSPC:    return "NBD_ENOSPC";
    case NBD_EOVERFLOW: return "NBD_EOVERFLOW";
    case NBD_ENOTSUP:   return "NBD_ENOTSUP";
    case NBD_ESHUTDOWN: return "NBD_ESHUTDOWN";
    default:            return "unknown error";
    }
}

const char *nbd_mode_name(NBDMode mode)
{
    switch (mode) {
    case NBD_MODE_SIMPLE:     return "simple";
    case NBD_MODE_STRUCTURED: return "structured";
    case NBD_MODE_EXTENDED:   return "extended";
    default:                  return "unknown mode";
    }
}

const char *nbd_string_check(const char *data, size_t len)
{
    if (len > NBD_MAX_STRING) {
        return "string longer than 4096 bytes";
    }
    if (len > 0 && memchr(data, '\0', len) != NULL) {
        return "string contains a NUL byte";
    }
    return NULL;
}

/* ---- Block-size constraints ---- */

static bool is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

const char *nbd_block_size_check(uint32_t min_block, uint32_t pref_block, uint32_t max_block,
                                 uint64_t export_size)
{
    if (!is_pow2(min_block)) {
        return "minimum block size is not a power of 2";
    }
    if (min_block > NBD_MAX_MIN_BLOCK) {
        return "minimum block size is larger than 64 KiB";
    }
    if (!is_pow2(pref_block)) {
        return "preferred block size is not a power of 2";
    }
    if (pref_block < min_block || pref_block < NBD_MIN_PREF_BLOCK) {
        return "preferred block size is smaller than the minimum block size or 512";
    }
    if (max_block != NBD_NO_MAX_BLOCK && max_block % min_block != 0) {
        return "maximum block size is not a multiple of the minimum block size";
    }
    uint64_t floor = pref_block < export_size ? pref_block : export_size;
    if (max_block < floor) {
        return "maximum block size is smaller than the preferred block size and the export";
    }
    return NULL;
}

/* ---- Option length policy ---- */

uint32_t nbd_opt_max_length(uint32_t option)
{
    switch (option) {
    case NBD_OPT_EXPORT_NAME:
        return NBD_MAX_STRING;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return NBD_OPT_INFO_MAX_LENGTH;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return NBD_OPT_META_CONTEXT_MAX_LENGTH;
    case NBD_OPT_ABORT:
        /* The spec asks servers to ignore stray data on ABORT rather than
         * refuse it; a little is tolerated, buffered like any option. */
        return NBD_OPT_ABORT_MAX_LENGTH;
    default:
        /* LIST, STARTTLS, STRUCTURED_REPLY, EXTENDED_HEADERS carry no data;
         * unknown options are skipped, never parsed. */
        return 0;
    }
}

static bool opt_is_known(uint32_t option)
{
    switch (option) {
    case NBD_OPT_EXPORT_NAME:
    case NBD_OPT_ABORT:
    case NBD_OPT_LIST:
    case NBD_OPT_STARTTLS:
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
    case NBD_OPT_STRUCTURED_REPLY:
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
    case NBD_OPT_EXTENDED_HEADERS:
        return true;
    default:
        return false;
    }
}

NBDOptLengthAction nbd_opt_check_length(uint32_t option, uint32_t length,
                                        uint32_t *reply_error)
{
    uint32_t max = nbd_opt_max_length(option);

    *reply_error = 0;
    if (!opt_is_known(option)) {
        if (length > NBD_OPT_MAX_SKIP) {
            return NBD_OPT_LENGTH_DISCONNECT;
        }
        *reply_error = NBD_REP_ERR_UNSUP;
        return NBD_OPT_LENGTH_SKIP;
    }
    if (length <= max) {
        return NBD_OPT_LENGTH_ACCEPT;
    }
    if (option == NBD_OPT_EXPORT_NAME) {
        /* No error reply exists for EXPORT_NAME: the session must end. */
        return NBD_OPT_LENGTH_DISCONNECT;
    }
    if (option == NBD_OPT_ABORT) {
        /* Refusing an ABORT would only delay a client that is leaving
         * anyway; hanging up ends the session it asked to end. */
        return NBD_OPT_LENGTH_DISCONNECT;
    }
    if (length > NBD_OPT_MAX_SKIP) {
        return NBD_OPT_LENGTH_DISCONNECT;
    }
    /* Meta-context options have no structural maximum: one that is merely
     * larger than berth handles is "too big", anything else is malformed. */
    *reply_error = (option == NBD_OPT_LIST_META_CONTEXT ||
                    option == NBD_OPT_SET_META_CONTEXT)
        ? NBD_REP_ERR_TOO_BIG : NBD_REP_ERR_INVALID;
    return NBD_OPT_LENGTH_SKIP;
}

/* ---- Request validation ---- */

static NBDRequestVerdict refuse(NBDRequestVerdict v, uint32_t error, const char *message)
{
    v.error = error;
    v.message = message;
    v.no_op = false;
    v.needs_payload_check = false;
    /* A refused request's payload still sits on the wire in front of the
     * next request: the server must consume it to stay in sync. */
    if (v.payload == NBD_PAYLOAD_READ) {
        v.payload = NBD_PAYLOAD_DISCARD;
    }
    return v;
}

/* The most a read or write may move: the server's buffer, narrowed by an
 * advertised maximum block size. */
static uint64_t payload_limit(const NBDRequestLimits *lim)
{
    uint64_t limit = lim->max_payload && lim->max_payload < NBD_MAX_PAYLOAD
        ? lim->max_payload : NBD_MAX_PAYLOAD;

    if (lim->block_size_advertised && lim->max_block && lim->max_block < limit) {
        limit = lim->max_block;
    }
    return limit;
}

static bool is_write_type(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

/* Flags each command may carry, before negotiation narrows them further. */
static uint16_t flags_allowed_for(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:         return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF;
    case NBD_CMD_WRITE:        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_PAYLOAD_LEN;
    case NBD_CMD_WRITE_ZEROES: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                                      NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE |
                                      NBD_CMD_FLAG_PAYLOAD_LEN;
    default:                   return NBD_CMD_FLAG_FUA;
    }
}

/* Offset/length checks shared by headers and BLOCK_STATUS payloads. */
static NBDRequestVerdict check_range(NBDRequestVerdict v, uint16_t type, uint64_t offset,
                                     uint64_t length, const NBDRequestLimits *lim)
{
    if (lim->block_size_advertised && lim->min_block > 1 &&
        (offset % lim->min_block || length % lim->min_block)) {
        return refuse(v, NBD_EINVAL, "request is not aligned to the minimum block size");
    }
    if (offset > lim->export_size || length > lim->export_size - offset) {
        /* The spec wants ENOSPC for writes past the end, EINVAL otherwise. */
        if (type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES) {
            return refuse(v, NBD_ENOSPC, "request extends beyond the end of the export");
        }
        return refuse(v, NBD_EINVAL, "request extends beyond the end of the export");
    }
    return v;
}

NBDRequestVerdict nbd_request_validate(const NBDRequest *req, const NBDRequestLimits *lim)
{
    NBDRequestVerdict v = { 0 };
    bool ext = lim->mode == NBD_MODE_EXTENDED;
    uint64_t limit = payload_limit(lim);
    uint64_t plen = nbd_request_payload_length(req, lim->mode);
    uint16_t type = req->type;
    uint16_t flags = req->flags;

    v.payload_length = plen;
    v.payload = plen ? NBD_PAYLOAD_READ : NBD_PAYLOAD_NONE;

    /* Payload size first: nothing else matters if the server cannot find the
     * next request header.  Past 32 MiB the spec lets a server call it a
     * denial of service; with extended headers it asks servers to hang up
     * on any payload beyond the advertised maximum. */
    if (plen > NBD_MAX_PAYLOAD || (ext && plen > limit)) {
        v = refuse(v, NBD_EINVAL, "payload exceeds the maximum payload size");
        v.payload = NBD_PAYLOAD_DISCONNECT;
        return v;
    }

    if (type == NBD_CMD_DISC) {
        /* No reply; the server finishes in-flight requests and closes. */
        v.payload = NBD_PAYLOAD_NONE;
        v.payload_length = 0;
        return v;
    }

    switch (type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
    case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        return refuse(v, NBD_EINVAL, "unknown command");
    }

    if (is_write_type(type) && (lim->tx_flags & NBD_FLAG_READ_ONLY)) {
        return refuse(v, NBD_EPERM, "export is read-only");
    }

    /* CACHE is accepted even when not advertised: the spec notes clients
     * that send it regardless, and it never changes data. */
    if (type == NBD_CMD_FLUSH && !(lim->tx_flags & NBD_FLAG_SEND_FLUSH)) {
        return refuse(v, NBD_EINVAL, "FLUSH was not advertised");
    }
    if (type == NBD_CMD_TRIM && !(lim->tx_flags & NBD_FLAG_SEND_TRIM)) {
        return refuse(v, NBD_EINVAL, "TRIM was not advertised");
    }
    if (type == NBD_CMD_WRITE_ZEROES && !(lim->tx_flags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        return refuse(v, NBD_EINVAL, "WRITE_ZEROES was not advertised");
    }
    if (type == NBD_CMD_BLOCK_STATUS && lim->mode == NBD_MODE_SIMPLE) {
        return refuse(v, NBD_EINVAL, "BLOCK_STATUS needs structured replies or extended headers");
    }

    if (flags & ~NBD_CMD_FLAG_KNOWN) {
        return refuse(v, NBD_EINVAL, "unknown command flags");
    }
    if (flags & NBD_CMD_FLAG_PAYLOAD_LEN) {
        if (!ext) {
            return refuse(v, NBD_EINVAL, "PAYLOAD_LEN flag without extended headers");
        }
        if (type == NBD_CMD_BLOCK_STATUS && !(lim->tx_flags & NBD_FLAG_BLOCK_STAT_PAYLOAD)) {
            return refuse(v, NBD_EINVAL, "BLOCK_STATUS payload was not advertised");
        }
        if (!(flags_allowed_for(type) & NBD_CMD_FLAG_PAYLOAD_LEN)) {
            return refuse(v, NBD_EINVAL, "PAYLOAD_LEN flag on a command without a payload");
        }
    } else if (ext && type == NBD_CMD_WRITE) {
        return refuse(v, NBD_EINVAL, "WRITE without PAYLOAD_LEN flag under extended headers");
    }
    if ((flags & NBD_CMD_FLAG_FUA) && !(lim->tx_flags & NBD_FLAG_SEND_FUA)) {
        return refuse(v, NBD_EINVAL, "FUA flag was not advertised");
    }
    if (flags & NBD_CMD_FLAG_NO_HOLE && type != NBD_CMD_WRITE_ZEROES) {
        return refuse(v, NBD_EINVAL, "NO_HOLE flag is only valid with WRITE_ZEROES");
    }
    if (flags & NBD_CMD_FLAG_FAST_ZERO) {
        if (type != NBD_CMD_WRITE_ZEROES) {
            return refuse(v, NBD_EINVAL, "FAST_ZERO flag is only valid with WRITE_ZEROES");
        }
        if (!(lim->tx_flags & NBD_FLAG_SEND_FAST_ZERO)) {
            return refuse(v, NBD_EINVAL, "FAST_ZERO flag was not advertised");
        }
    }
    if (flags & NBD_CMD_FLAG_DF) {
        if (type != NBD_CMD_READ) {
            return refuse(v, NBD_EINVAL, "DF flag is only valid with READ");
        }
        if (lim->mode == NBD_MODE_SIMPLE) {
            return refuse(v, NBD_EINVAL, "DF flag without structured replies");
        }
        if (!(lim->tx_flags & NBD_FLAG_SEND_DF)) {
            return refuse(v, NBD_EINVAL, "DF flag was not advertised");
        }
    }
    if (flags & NBD_CMD_FLAG_REQ_ONE && type != NBD_CMD_BLOCK_STATUS) {
        return refuse(v, NBD_EINVAL, "REQ_ONE flag is only valid with BLOCK_STATUS");
    }

    if (type == NBD_CMD_FLUSH) {
        if (req->offset || req->length) {
            return refuse(v, NBD_EINVAL, "FLUSH offset and length must be zero");
        }
        return v;
    }

    if (type == NBD_CMD_BLOCK_STATUS) {
        if (lim->n_contexts == 0) {
            return refuse(v, NBD_EINVAL, "no metadata context was negotiated");
        }
        if (plen) {
            /* 8-byte effect length, then one distinct id per selected context:
             * anything else is malformed, and is refused before reading. */
            if (plen < NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 || plen % 4 ||
                plen > NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 * (uint64_t) lim->n_contexts) {
                return refuse(v, NBD_EINVAL, "BLOCK_STATUS payload has a wrong length");
            }
            if (lim->block_size_advertised && lim->min_block > 1 &&
                req->offset % lim->min_block) {
                return refuse(v, NBD_EINVAL, "request is not aligned to the minimum block size");
            }
            if (req->offset > lim->export_size) {
                return refuse(v, NBD_EINVAL, "request extends beyond the end of the export");
            }
            v.needs_payload_check = true;
            return v;
        }
        if (req->length == 0) {
            /* At least one nonzero extent must come back; none can describe
             * an empty range. */
            return refuse(v, NBD_EINVAL, "BLOCK_STATUS length must not be zero");
        }
    }

    v = check_range(v, type, req->offset, req->length, lim);
    if (v.error) {
        return v;
    }

    switch (type) {
    case NBD_CMD_READ:
        if (req->length > limit) {
            /* EOVERFLOW tells a DF reader the size, not the request, is the
             * problem; the spec reserves it for that case. */
            return refuse(v, (flags & NBD_CMD_FLAG_DF) ? NBD_EOVERFLOW : NBD_EINVAL,
                          "read length exceeds the maximum payload size");
        }
        break;
    case NBD_CMD_WRITE:
        if (req->length > limit) {
            return refuse(v, NBD_EINVAL, "write length exceeds the maximum payload size");
        }
        break;
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
        /* The spec bounds these by an advertised maximum block size (except
         * a FAST_ZERO request, which can always fail fast). */
        if (lim->block_size_advertised && lim->max_block != NBD_NO_MAX_BLOCK &&
            lim->max_block && req->length > lim->max_block &&
            !(flags & NBD_CMD_FLAG_FAST_ZERO)) {
            return refuse(v, NBD_EINVAL, "length exceeds the maximum block size");
        }
        break;
    default:
        break;
    }

    if (req->length == 0) {
        /* Unspecified by the spec beyond "do not disconnect": succeed
         * without touching the export. */
        v.no_op = true;
    }
    return v;
}

NBDRequestVerdict nbd_block_status_payload_validate(const NBDRequest *req,
                                                    const NBDBlockStatusPayload *p,
                                                    const NBDRequestLimits *lim)
{
    NBDRequestVerdict v = { 0 };

    /* The payload has been read by now; nothing is left to discard. */
    if (p->n_ids == 0) {
        return refuse(v, NBD_EINVAL, "BLOCK_STATUS payload lists no context");
    }
    if (p->n_ids > lim->n_contexts) {
        return refuse(v, NBD_EINVAL, "BLOCK_STATUS payload lists more contexts than negotiated");
    }
    /* n_ids <= n_contexts, a handful, so a quadratic scan is cheapest. */
    for (uint32_t i = 1; i < p->n_ids; i++) {
        uint32_t id = nbd_block_status_payload_id(p, i);
        for (uint32_t j = 0; j < i; j++) {
            if (nbd_block_status_payload_id(p, j) == id) {
                return refuse(v, NBD_EINVAL, "BLOCK_STATUS payload repeats a context id");
            }
        }
    }
    if (p->effect_length == 0) {
        return refuse(v, NBD_EINVAL, "BLOCK_STATUS length must not be zero");
    }
    return check_range(v, NBD_CMD_BLOCK_STATUS, req->offset, p->effect_length, lim);
}
