/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The handshake-side policy of the NBD wire codec, as opposed to the byte
 * formats in codec-handshake.c and codec-transmission.c: how long each
 * option may be before the server reads it, what block-size constraints may
 * be advertised, the rule every wire string obeys, and the names used in log
 * messages (command names come from the request rules in rules.c; the errno
 * mapping is errno.c).  All of it is pure: decisions depend on the arguments
 * alone, and every rule has a unit test.
 */
#include <string.h>

#include "nbd/proto/codec.h"

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
