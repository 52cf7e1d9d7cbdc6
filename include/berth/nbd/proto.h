/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD wire protocol numbers, as fixed by the NBD specification
 * (NetworkBlockDevice/nbd doc/proto.md, including the extended-headers
 * revision): the magics, every flag field, option and reply codes, command
 * codes, chunk types, error values, metadata-context states, the limits
 * berth applies on top of the specification, and the few decoded messages
 * that the client API (berth/nbd/client.h) hands out.  Both the server and
 * the client include it; the private codec (nbd/proto/codec.h) builds on
 * it.  Every value is in host order here; on the wire everything is
 * big-endian.
 */
#ifndef BERTH_NBD_PROTO_H
#define BERTH_NBD_PROTO_H

#include <stdint.h>

/* IANA port for newstyle negotiation. */
#define NBD_DEFAULT_PORT 10809

/* ---- Magic numbers ---- */
#define NBD_MAGIC                   UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC              UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_CLISERV_MAGIC           UINT64_C(0x00420281861253)   /* oldstyle; never sent by berth */
#define NBD_REP_MAGIC               UINT64_C(0x0003e889045565a9)
#define NBD_REQUEST_MAGIC           UINT32_C(0x25609513)
#define NBD_EXTENDED_REQUEST_MAGIC  UINT32_C(0x21e41c71)
#define NBD_SIMPLE_REPLY_MAGIC      UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC  UINT32_C(0x668e33ef)
#define NBD_EXTENDED_REPLY_MAGIC    UINT32_C(0x6e8a278c)

/* ---- Handshake flags (16 bits, server -> client) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE     (1u << 0)
#define NBD_FLAG_NO_ZEROES          (1u << 1)

/* ---- Client flags (32 bits, client -> server) ---- */
#define NBD_FLAG_C_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_C_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_KNOWN            (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)

/* ---- Transmission flags (16 bits) ---- */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_RESIZE        (1u << 9)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)
#define NBD_FLAG_BLOCK_STAT_PAYLOAD (1u << 12)

/* ---- Options (NBD_OPT_*) ---- */
#define NBD_OPT_EXPORT_NAME         1u
#define NBD_OPT_ABORT               2u
#define NBD_OPT_LIST                3u
#define NBD_OPT_PEEK_EXPORT         4u  /* withdrawn; never valid */
#define NBD_OPT_STARTTLS            5u
#define NBD_OPT_INFO                6u
#define NBD_OPT_GO                  7u
#define NBD_OPT_STRUCTURED_REPLY    8u
#define NBD_OPT_LIST_META_CONTEXT   9u
#define NBD_OPT_SET_META_CONTEXT    10u
#define NBD_OPT_EXTENDED_HEADERS    11u

/* ---- Option reply types (NBD_REP_*) ---- */
#define NBD_REP_ACK                 1u
#define NBD_REP_SERVER              2u
#define NBD_REP_INFO                3u
#define NBD_REP_META_CONTEXT        4u

#define NBD_REP_FLAG_ERROR          (UINT32_C(1) << 31)
#define NBD_REP_ERR(n)              (NBD_REP_FLAG_ERROR | (uint32_t) (n))
#define NBD_REP_IS_ERR(t)           (((t) & NBD_REP_FLAG_ERROR) != 0)
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM        NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)
#define NBD_REP_ERR_EXT_HEADER_REQD NBD_REP_ERR(10)

/* ---- Information types for NBD_OPT_INFO / NBD_OPT_GO (16 bits) ---- */
#define NBD_INFO_EXPORT             0u
#define NBD_INFO_NAME               1u
#define NBD_INFO_DESCRIPTION        2u
#define NBD_INFO_BLOCK_SIZE         3u

/* ---- Commands (16-bit type field) ---- */
#define NBD_CMD_READ                0u
#define NBD_CMD_WRITE               1u
#define NBD_CMD_DISC                2u
#define NBD_CMD_FLUSH               3u
#define NBD_CMD_TRIM                4u
#define NBD_CMD_CACHE               5u
#define NBD_CMD_WRITE_ZEROES        6u
#define NBD_CMD_BLOCK_STATUS        7u
#define NBD_CMD_RESIZE              8u  /* experimental extension; berth refuses it */

/* ---- Command flags (16 bits) ---- */
#define NBD_CMD_FLAG_FUA            (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1u << 1)
#define NBD_CMD_FLAG_DF             (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN    (1u << 5)
#define NBD_CMD_FLAG_KNOWN          0x3fu

/* ---- Structured/extended reply flags and chunk types ---- */
#define NBD_REPLY_FLAG_DONE         (1u << 0)

#define NBD_REPLY_TYPE_NONE             0u
#define NBD_REPLY_TYPE_OFFSET_DATA      1u
#define NBD_REPLY_TYPE_OFFSET_HOLE      2u
#define NBD_REPLY_TYPE_BLOCK_STATUS     5u
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6u
#define NBD_REPLY_TYPE_ERROR_BIT        (1u << 15)
#define NBD_REPLY_TYPE_IS_ERR(t)        (((t) & NBD_REPLY_TYPE_ERROR_BIT) != 0)
#define NBD_REPLY_TYPE_ERROR            (NBD_REPLY_TYPE_ERROR_BIT + 1u)  /* 32769 */
#define NBD_REPLY_TYPE_ERROR_OFFSET     (NBD_REPLY_TYPE_ERROR_BIT + 2u)  /* 32770 */

/* ---- Error values carried in replies ---- */
#define NBD_SUCCESS                 0u
#define NBD_EPERM                   1u
#define NBD_EIO                     5u
#define NBD_ENOMEM                  12u
#define NBD_EINVAL                  22u
#define NBD_ENOSPC                  28u
#define NBD_EOVERFLOW               75u
#define NBD_ENOTSUP                 95u
#define NBD_ESHUTDOWN               108u

/* ---- base:allocation metadata context states ---- */
#define NBD_STATE_HOLE              (1u << 0)
#define NBD_STATE_ZERO              (1u << 1)
#define NBD_STATE_DIRTY             (1u << 0)   /* qemu:dirty-bitmap:NAME */

/* ---- Limits ---- */

/* Longest string (export name, description, query, message) the spec allows. */
#define NBD_MAX_STRING              4096u

/*
 * Largest data payload berth's server moves in one request or reply, and
 * the maximum block size it advertises: 64 MiB, the most nbdkit and
 * nbd-server accept and libnbd sends (the spec only promises 32 MiB to a
 * client that was told nothing, see NBD_DEFAULT_MAX_BLOCK).  Both the read
 * buffer and the write buffer of a request are bounded by it; the bytes a
 * connection holds at once are bounded separately by the server.
 */
#define NBD_MAX_PAYLOAD             (UINT32_C(64) * 1024 * 1024)

/* Block size defaults the spec assumes when nothing was advertised. */
#define NBD_DEFAULT_MIN_BLOCK       1u
#define NBD_DEFAULT_PREF_BLOCK      4096u
/* Largest read or write a client sends to a server that advertised no
 * maximum block size: what the spec says no server may refuse as too big. */
#define NBD_DEFAULT_MAX_BLOCK       (UINT32_C(32) * 1024 * 1024)
#define NBD_MAX_MIN_BLOCK           65536u    /* min block MUST be <= 2^16 */
#define NBD_MIN_PREF_BLOCK          512u      /* pref block MUST be >= 2^9 */
#define NBD_NO_MAX_BLOCK            UINT32_C(0xffffffff)

/* A DF read of at most this many bytes MUST be served unfragmented. */
#define NBD_DF_MIN_GUARANTEE        65536u

/* The spec asks servers not to send more extents than this in one chunk. */
#define NBD_MAX_EXTENTS_PER_CHUNK   (1u << 20)

/* Bytes of zero padding after NBD_OPT_EXPORT_NAME's reply without NO_ZEROES. */
#define NBD_EXPORT_NAME_ZEROES      124u

/* ---- Decoded messages that the client API hands out ---- */

/* Which transmission headers were negotiated. */
typedef enum NBDMode {
    NBD_MODE_SIMPLE = 0,   /* compact requests, simple replies only */
    NBD_MODE_STRUCTURED,   /* compact requests, simple or structured replies */
    NBD_MODE_EXTENDED,     /* extended requests and extended replies only */
} NBDMode;

/* One request header, either size. */
typedef struct NBDRequest {
    uint16_t flags;                 /* NBD_CMD_FLAG_* */
    uint16_t type;                  /* NBD_CMD_* */
    uint64_t cookie;                /* opaque, echoed in the reply */
    uint64_t offset;
    uint64_t length;                /* compact: 32-bit; extended: payload or effect length */
} NBDRequest;

typedef enum NBDReplyKind {
    NBD_REPLY_KIND_SIMPLE = 0,
    NBD_REPLY_KIND_STRUCTURED,
    NBD_REPLY_KIND_EXTENDED,
} NBDReplyKind;

/* One reply header of any kind. */
typedef struct NBDReplyHeader {
    NBDReplyKind kind;
    uint64_t cookie;
    uint32_t error;                 /* simple only */
    uint16_t flags;                 /* chunks only: NBD_REPLY_FLAG_* */
    uint16_t type;                  /* chunks only: NBD_REPLY_TYPE_* */
    uint64_t offset;                /* extended only: echoes the request offset */
    uint64_t length;                /* chunks only: payload bytes that follow */
} NBDReplyHeader;

/* One block-status extent, either size. */
typedef struct NBDExtent {
    uint64_t length;
    uint32_t flags;
} NBDExtent;

#endif /* BERTH_NBD_PROTO_H */
