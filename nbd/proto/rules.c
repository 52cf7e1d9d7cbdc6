/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The request rules of the NBD protocol, written once for both ends: a
 * table row per command (the flags it may carry, the transmission flag that
 * enables it, the reply mode and metadata context it needs, whether it
 * writes, its payload form and what bounds its length) and per command flag
 * (the transmission flag and reply mode it needs), each with the exact
 * message a refusal carries.  One walker applies them in a fixed order; the
 * server's nbd_request_validate() turns its verdict into an NBD error and a
 * payload action, the client's nbd_request_check() into an errno.  Where the
 * spec lets the two ends differ (a server may serve CACHE unadvertised, or
 * refuse long CACHE and WRITE_ZEROES requests and oversized payloads to
 * protect itself) the table says so and the walker asks which end it runs
 * for.  Pure: decisions depend on the arguments alone.
 */
#include <errno.h>

#include "nbd/proto/codec.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Which end the rules are applied for. */
typedef enum RulesRole {
    ROLE_SERVER,
    ROLE_CLIENT,
} RulesRole;

/* The command's name and the messages derived from it, as literals. */
#define CMD_TEXTS(nm) \
    .name = "NBD_CMD_" #nm, \
    .unadvertised = #nm " was not advertised", \
    .needs_mode = #nm " needs structured replies or extended headers", \
    .too_long_block = #nm " length exceeds the maximum block size", \
    .too_long_payload = #nm " length exceeds the maximum payload size"

static const NBDCommandRule command_rules[] = {
    [NBD_CMD_READ] = {
        CMD_TEXTS(READ), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
        .bound = NBD_BOUND_PAYLOAD,
    },
    [NBD_CMD_WRITE] = {
        CMD_TEXTS(WRITE), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_PAYLOAD_LEN,
        .is_write = true, .enospc_past_end = true,
        .payload = NBD_PAYLOAD_FORM_WRITE, .bound = NBD_BOUND_PAYLOAD,
    },
    /* DISC is never refused: the walker accepts it before any row is read. */
    [NBD_CMD_DISC] = { CMD_TEXTS(DISC), .implemented = true },
    [NBD_CMD_FLUSH] = {
        CMD_TEXTS(FLUSH), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA, .tx_flag = NBD_FLAG_SEND_FLUSH,
        .bound = NBD_BOUND_NO_RANGE,
    },
    [NBD_CMD_TRIM] = {
        CMD_TEXTS(TRIM), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA, .tx_flag = NBD_FLAG_SEND_TRIM,
        .is_write = true, .bound = NBD_BOUND_EFFECT,
    },
    [NBD_CMD_CACHE] = {
        CMD_TEXTS(CACHE), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA, .tx_flag = NBD_FLAG_SEND_CACHE,
        .served_unadvertised = true, .bound = NBD_BOUND_SERVER_MAX_BLOCK,
    },
    [NBD_CMD_WRITE_ZEROES] = {
        CMD_TEXTS(WRITE_ZEROES), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
        .tx_flag = NBD_FLAG_SEND_WRITE_ZEROES,
        .is_write = true, .enospc_past_end = true, .bound = NBD_BOUND_SERVER_MAX_BLOCK,
    },
    [NBD_CMD_BLOCK_STATUS] = {
        CMD_TEXTS(BLOCK_STATUS), .implemented = true,
        .flags = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_PAYLOAD_LEN,
        .min_mode = NBD_MODE_STRUCTURED, .needs_context = true, .nonzero_length = true,
        .payload = NBD_PAYLOAD_FORM_BLOCK_STATUS,
        .payload_tx_flag = NBD_FLAG_BLOCK_STAT_PAYLOAD, .bound = NBD_BOUND_EFFECT,
    },
    /* An experimental extension berth does not implement. */
    [NBD_CMD_RESIZE] = { CMD_TEXTS(RESIZE) },
};

#define FLAG_TEXTS(nm) \
    .name = #nm, \
    .unadvertised = #nm " flag was not advertised"

/* In bit order; the walker checks set flags in this order. */
static const NBDFlagRule flag_rules[] = {
    {
        FLAG_TEXTS(FUA), .flag = NBD_CMD_FLAG_FUA, .tx_flag = NBD_FLAG_SEND_FUA,
        /* The spec makes FUA valid on every command once advertised. */
        .misplaced = "FUA flag is not valid with this command",
    },
    {
        FLAG_TEXTS(NO_HOLE), .flag = NBD_CMD_FLAG_NO_HOLE,
        /* SEND_WRITE_ZEROES exposes WRITE_ZEROES and NO_HOLE together. */
        .tx_flag = NBD_FLAG_SEND_WRITE_ZEROES,
        .misplaced = "NO_HOLE flag is only valid with WRITE_ZEROES",
    },
    {
        FLAG_TEXTS(DF), .flag = NBD_CMD_FLAG_DF, .tx_flag = NBD_FLAG_SEND_DF,
        .min_mode = NBD_MODE_STRUCTURED,
        .misplaced = "DF flag is only valid with READ",
        .needs_mode = "DF flag without structured replies",
    },
    {
        FLAG_TEXTS(REQ_ONE), .flag = NBD_CMD_FLAG_REQ_ONE,
        .misplaced = "REQ_ONE flag is only valid with BLOCK_STATUS",
    },
    {
        FLAG_TEXTS(FAST_ZERO), .flag = NBD_CMD_FLAG_FAST_ZERO,
        .tx_flag = NBD_FLAG_SEND_FAST_ZERO,
        .misplaced = "FAST_ZERO flag is only valid with WRITE_ZEROES",
    },
    {
        FLAG_TEXTS(PAYLOAD_LEN), .flag = NBD_CMD_FLAG_PAYLOAD_LEN,
        .min_mode = NBD_MODE_EXTENDED,
        .misplaced = "PAYLOAD_LEN flag on a command without a payload",
        .needs_mode = "PAYLOAD_LEN flag without extended headers",
    },
};

const NBDCommandRule *nbd_command_rule(uint16_t type)
{
    if (type >= ARRAY_LEN(command_rules) || !command_rules[type].name) {
        return NULL;
    }
    return &command_rules[type];
}

const NBDFlagRule *nbd_flag_rule(uint16_t flag)
{
    for (size_t i = 0; i < ARRAY_LEN(flag_rules); i++) {
        if (flag_rules[i].flag == flag) {
            return &flag_rules[i];
        }
    }
    return NULL;
}

const char *nbd_cmd_name(uint16_t cmd)
{
    const NBDCommandRule *rule = nbd_command_rule(cmd);
    return rule ? rule->name : "unknown command";
}

/* ---- The walker ---- */

static NBDRequestVerdict refuse(NBDRequestVerdict v, NBDRefusal kind, const char *message)
{
    v.refusal = kind;
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

/* The advertised maximum block size narrows this side's buffer. */
static bool limit_is_max_block(const NBDRequestLimits *lim)
{
    uint32_t buffer = lim->max_payload ? lim->max_payload : NBD_MAX_PAYLOAD;
    return lim->block_size_advertised && lim->max_block && lim->max_block <= buffer;
}

/* The most a read or write may move. */
static uint64_t payload_limit(const NBDRequestLimits *lim)
{
    if (limit_is_max_block(lim)) {
        return lim->max_block;
    }
    return lim->max_payload ? lim->max_payload : NBD_MAX_PAYLOAD;
}

/* Rule 5: is the request well formed, whatever was negotiated? */
static NBDRequestVerdict check_form(NBDRequestVerdict v, const NBDCommandRule *cmd,
                                    const NBDRequest *req, const NBDRequestLimits *lim)
{
    if (req->flags & ~NBD_CMD_FLAG_KNOWN) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "unknown command flags");
    }
    for (size_t i = 0; i < ARRAY_LEN(flag_rules); i++) {
        const NBDFlagRule *f = &flag_rules[i];
        if (!(req->flags & f->flag)) {
            continue;
        }
        if (!(cmd->flags & f->flag)) {
            return refuse(v, NBD_REFUSAL_MALFORMED, f->misplaced);
        }
        if (lim->mode < f->min_mode) {
            return refuse(v, NBD_REFUSAL_MALFORMED, f->needs_mode);
        }
    }
    if (cmd->payload == NBD_PAYLOAD_FORM_WRITE && lim->mode == NBD_MODE_EXTENDED &&
        !(req->flags & NBD_CMD_FLAG_PAYLOAD_LEN)) {
        return refuse(v, NBD_REFUSAL_MALFORMED,
                      "WRITE without PAYLOAD_LEN flag under extended headers");
    }
    if (cmd->bound == NBD_BOUND_NO_RANGE && (req->offset || req->length)) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "FLUSH offset and length must be zero");
    }
    /* At least one nonzero extent must come back; none can describe an
     * empty range.  With a payload, the length is the payload's. */
    if (cmd->nonzero_length && req->length == 0) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "BLOCK_STATUS length must not be zero");
    }
    return v;
}

/* Rule 7: did the export offer what the request uses? */
static NBDRequestVerdict check_negotiated(NBDRequestVerdict v, const NBDCommandRule *cmd,
                                          const NBDRequest *req, const NBDRequestLimits *lim,
                                          RulesRole role)
{
    if (cmd->tx_flag && !(lim->tx_flags & cmd->tx_flag) &&
        !(role == ROLE_SERVER && cmd->served_unadvertised)) {
        return refuse(v, NBD_REFUSAL_NOT_NEGOTIATED, cmd->unadvertised);
    }
    if (lim->mode < cmd->min_mode) {
        return refuse(v, NBD_REFUSAL_NOT_NEGOTIATED, cmd->needs_mode);
    }
    for (size_t i = 0; i < ARRAY_LEN(flag_rules); i++) {
        const NBDFlagRule *f = &flag_rules[i];
        if ((req->flags & f->flag) && f->tx_flag && !(lim->tx_flags & f->tx_flag)) {
            return refuse(v, NBD_REFUSAL_NOT_NEGOTIATED, f->unadvertised);
        }
    }
    if ((req->flags & NBD_CMD_FLAG_PAYLOAD_LEN) && cmd->payload_tx_flag &&
        !(lim->tx_flags & cmd->payload_tx_flag)) {
        return refuse(v, NBD_REFUSAL_NOT_NEGOTIATED, "BLOCK_STATUS payload was not advertised");
    }
    if (cmd->needs_context && lim->n_contexts == 0) {
        return refuse(v, NBD_REFUSAL_NOT_NEGOTIATED, "no metadata context was negotiated");
    }
    return v;
}

static bool misaligned(uint64_t value, const NBDRequestLimits *lim)
{
    return lim->block_size_advertised && lim->min_block > 1 && value % lim->min_block;
}

/* Rule 9, shared by headers and BLOCK_STATUS payloads. */
static NBDRequestVerdict check_range(NBDRequestVerdict v, uint64_t offset, uint64_t length,
                                     const NBDRequestLimits *lim)
{
    if (misaligned(offset, lim) || misaligned(length, lim)) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "request is not aligned to the minimum block size");
    }
    if (offset > lim->export_size || length > lim->export_size - offset) {
        return refuse(v, NBD_REFUSAL_OUT_OF_RANGE, "request extends outside the export");
    }
    return v;
}

/* Rule 10. */
static NBDRequestVerdict check_length(NBDRequestVerdict v, const NBDCommandRule *cmd,
                                      const NBDRequest *req, const NBDRequestLimits *lim,
                                      RulesRole role)
{
    switch (cmd->bound) {
    case NBD_BOUND_PAYLOAD:
        if (req->length > payload_limit(lim)) {
            return refuse(v, NBD_REFUSAL_TOO_LONG, limit_is_max_block(lim)
                          ? cmd->too_long_block : cmd->too_long_payload);
        }
        break;
    case NBD_BOUND_SERVER_MAX_BLOCK:
        /* The server's own limit on work it does in one go; a FAST_ZERO
         * request can always fail fast instead, so it is not bounded. */
        if (role == ROLE_SERVER && lim->block_size_advertised &&
            lim->max_block && lim->max_block != NBD_NO_MAX_BLOCK &&
            req->length > lim->max_block && !(req->flags & NBD_CMD_FLAG_FAST_ZERO)) {
            return refuse(v, NBD_REFUSAL_TOO_LONG, cmd->too_long_block);
        }
        break;
    default:
        break;
    }
    return v;
}

/* Rule 8: a BLOCK_STATUS payload is checked for shape before it is read. */
static NBDRequestVerdict check_status_payload_header(NBDRequestVerdict v, const NBDRequest *req,
                                                     const NBDRequestLimits *lim)
{
    uint64_t plen = v.payload_length;

    /* 8-byte effect length, then one distinct id per selected context. */
    if (plen < NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 || plen % 4 ||
        plen > NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE + 4 * (uint64_t) lim->n_contexts) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "BLOCK_STATUS payload has a wrong length");
    }
    /* The effect length is in the payload: only the offset can be checked. */
    v = check_range(v, req->offset, 0, lim);
    v.needs_payload_check = !v.refusal;
    return v;
}

static NBDRequestVerdict apply_rules(const NBDRequest *req, const NBDRequestLimits *lim,
                                     RulesRole role)
{
    NBDRequestVerdict v = { 0 };
    bool ext = lim->mode == NBD_MODE_EXTENDED;
    uint64_t plen = nbd_request_payload_length(req, lim->mode);
    const NBDCommandRule *cmd = nbd_command_rule(req->type);

    v.payload_length = plen;
    v.payload = plen ? NBD_PAYLOAD_READ : NBD_PAYLOAD_NONE;

    /* Rule 1, the server's: nothing else matters if it cannot find the next
     * request header.  With extended headers the spec asks servers to hang
     * up on any payload beyond the advertised maximum.  A compact WRITE's
     * payload is its length, at most 4 GiB - 1: the server answers EINVAL
     * (rule 10) and skips it in bounded memory, which keeps the connection,
     * as the spec's "SHOULD report NBD_EINVAL" asks, rather than use the
     * hard disconnect it allows for denial-of-service sizes.  A client only
     * sends what its length rules allow. */
    if (role == ROLE_SERVER && ext && plen > payload_limit(lim)) {
        v = refuse(v, NBD_REFUSAL_PAYLOAD_TOO_BIG, "payload exceeds the maximum payload size");
        v.payload = NBD_PAYLOAD_DISCONNECT;
        return v;
    }
    if (req->type == NBD_CMD_DISC) {
        /* No reply; the server finishes in-flight requests and closes. */
        v.payload = NBD_PAYLOAD_NONE;
        v.payload_length = 0;
        return v;
    }
    if (!cmd || !cmd->implemented) {
        return refuse(v, NBD_REFUSAL_MALFORMED, "unknown command");
    }
    if (!ext && req->length > UINT32_MAX) {
        return refuse(v, NBD_REFUSAL_TOO_LONG, "request length does not fit in 32 bits");
    }
    v = check_form(v, cmd, req, lim);
    if (v.refusal) {
        return v;
    }
    if (cmd->is_write && (lim->tx_flags & NBD_FLAG_READ_ONLY)) {
        return refuse(v, NBD_REFUSAL_READ_ONLY, "export is read-only");
    }
    v = check_negotiated(v, cmd, req, lim, role);
    if (v.refusal || cmd->bound == NBD_BOUND_NO_RANGE) {
        return v;
    }
    if (cmd->payload == NBD_PAYLOAD_FORM_BLOCK_STATUS && plen) {
        return check_status_payload_header(v, req, lim);
    }
    v = check_range(v, req->offset, req->length, lim);
    if (v.refusal) {
        return v;
    }
    v = check_length(v, cmd, req, lim, role);
    if (v.refusal) {
        return v;
    }
    if (req->length == 0) {
        /* Unspecified by the spec beyond "do not disconnect": succeed
         * without touching the export. */
        v.no_op = true;
    }
    return v;
}

/* ---- The two ends ---- */

/* The NBD error the server replies with for a refusal of req. */
static uint32_t server_error(NBDRefusal kind, const NBDRequest *req)
{
    const NBDCommandRule *cmd = nbd_command_rule(req->type);

    switch (kind) {
    case NBD_REFUSAL_NONE:
        return NBD_SUCCESS;
    case NBD_REFUSAL_READ_ONLY:
        return nbd_errno(EPERM, req);
    case NBD_REFUSAL_OUT_OF_RANGE:
        return nbd_errno(cmd && cmd->enospc_past_end ? ENOSPC : EINVAL, req);
    case NBD_REFUSAL_TOO_LONG:
        /* EOVERFLOW tells a DF reader the size, not the request, is the
         * problem; nbd_errno() keeps it for that case alone. */
        return nbd_errno(EOVERFLOW, req);
    default:
        return nbd_errno(EINVAL, req);
    }
}

/* The errno a client reports for a refusal. */
static int client_errno(NBDRefusal kind)
{
    switch (kind) {
    case NBD_REFUSAL_NONE:
        return 0;
    case NBD_REFUSAL_READ_ONLY:
        return EPERM;
    case NBD_REFUSAL_NOT_NEGOTIATED:
        /* The server lacks the feature: callers may fall back. */
        return ENOTSUP;
    case NBD_REFUSAL_TOO_LONG:
    case NBD_REFUSAL_PAYLOAD_TOO_BIG:
        return EOVERFLOW;
    default:
        return EINVAL;
    }
}

NBDRequestVerdict nbd_request_validate(const NBDRequest *req, const NBDRequestLimits *lim)
{
    NBDRequestVerdict v = apply_rules(req, lim, ROLE_SERVER);
    v.error = server_error(v.refusal, req);
    return v;
}

int nbd_request_check(const NBDRequest *req, const NBDRequestLimits *lim, const char **why,
                      bool *no_op)
{
    NBDRequestVerdict v = apply_rules(req, lim, ROLE_CLIENT);

    *why = v.message;
    if (no_op) {
        *no_op = v.no_op;
    }
    return client_errno(v.refusal);
}

NBDRequestVerdict nbd_block_status_payload_validate(const NBDRequest *req,
                                                    const NBDBlockStatusPayload *p,
                                                    const NBDRequestLimits *lim)
{
    NBDRequestVerdict v = { 0 };

    /* The payload has been read by now; nothing is left to discard. */
    if (p->n_ids == 0) {
        v = refuse(v, NBD_REFUSAL_MALFORMED, "BLOCK_STATUS payload lists no context");
    } else if (p->n_ids > lim->n_contexts) {
        v = refuse(v, NBD_REFUSAL_MALFORMED,
                   "BLOCK_STATUS payload lists more contexts than negotiated");
    } else if (p->effect_length == 0) {
        v = refuse(v, NBD_REFUSAL_MALFORMED, "BLOCK_STATUS length must not be zero");
    } else {
        /* n_ids <= n_contexts, a handful, so a quadratic scan is cheapest. */
        for (uint32_t i = 1; i < p->n_ids && !v.refusal; i++) {
            uint32_t id = nbd_block_status_payload_id(p, i);
            for (uint32_t j = 0; j < i; j++) {
                if (nbd_block_status_payload_id(p, j) == id) {
                    v = refuse(v, NBD_REFUSAL_MALFORMED,
                               "BLOCK_STATUS payload repeats a context id");
                    break;
                }
            }
        }
        if (!v.refusal) {
            v = check_range(v, req->offset, p->effect_length, lim);
        }
    }
    v.error = server_error(v.refusal, req);
    return v;
}
