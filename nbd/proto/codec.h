/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD wire codec: pure functions between bytes and structs, with no I/O,
 * no main loop and no allocation.  The server and the client share it.
 * Encoders write big-endian bytes into a caller-provided buffer and return
 * how many they wrote; every fixed-size message has a NBD_*_SIZE constant so
 * callers can size stack buffers and iovecs.  Decoders take (buf, len), never
 * read outside it, and return an NBDDecodeResult: OK (with the bytes the
 * message occupies), NEED_MORE (with the total number of bytes needed from
 * buf) or INVALID (with a static reason string).  Option payload parsers
 * validate the whole payload before returning anything, and hand back views
 * into the caller's buffer.  One table of request rules (nbd_command_rule,
 * nbd_flag_rule) drives both the server's validation (nbd_request_validate:
 * the NBD error value, an exact message and what to do with any payload) and
 * the client's check before sending (nbd_request_check: an errno and the
 * same message).
 *
 * Ownership: nothing here allocates or keeps pointers.  Every view
 * (NBDStringView, the meta-context query walker, block-status descriptors,
 * error-chunk messages, OFFSET_DATA data) points into the buffer the caller
 * passed to the decoder, and is valid only while that buffer is unchanged.
 * Reason and message strings are static and live forever.
 *
 * Threads: every function is reentrant; nothing holds state.
 */
#ifndef BERTH_NBD_CODEC_H
#define BERTH_NBD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "berth/nbd/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Decode results
 * ====================================================================== */

typedef enum NBDDecodeStatus {
    NBD_DECODE_OK = 0,
    NBD_DECODE_NEED_MORE,  /* buffer too short; size = total bytes needed */
    NBD_DECODE_INVALID,    /* malformed; reason says why */
} NBDDecodeStatus;

typedef struct NBDDecodeResult {
    NBDDecodeStatus status;
    /*
     * OK: bytes this message occupies at the start of buf (headers only;
     * payloads that follow a header are not counted unless the function
     * says so).  NEED_MORE: the total number of bytes (from buf[0]) the
     * whole message needs, as far as the bytes present tell; always > len.
     * (Magics are checked as soon as they are complete, so a wrong one is
     * INVALID even before the rest has arrived.)
     * INVALID: 0.
     */
    size_t size;
    const char *reason;    /* INVALID only: static text; NULL otherwise */
} NBDDecodeResult;

/* Constructors, for the codec and for callers layering their own decoders. */
static inline NBDDecodeResult nbd_decode_ok(size_t size)
{
    NBDDecodeResult r = { NBD_DECODE_OK, size, NULL };
    return r;
}

static inline NBDDecodeResult nbd_decode_need(size_t size)
{
    NBDDecodeResult r = { NBD_DECODE_NEED_MORE, size, NULL };
    return r;
}

static inline NBDDecodeResult nbd_decode_invalid(const char *reason)
{
    NBDDecodeResult r = { NBD_DECODE_INVALID, 0, reason };
    return r;
}

/* A non-owning view of a string inside a decoded buffer (not NUL-terminated). */
typedef struct NBDStringView {
    const char *data;
    size_t len;
} NBDStringView;


/* ======================================================================
 * Sizes of fixed-size messages
 * ====================================================================== */

#define NBD_GREETING_SIZE            18u  /* NBDMAGIC + IHAVEOPT + 16-bit flags */
#define NBD_CLIENT_FLAGS_SIZE        4u
#define NBD_OPTION_HEADER_SIZE       16u  /* IHAVEOPT + option + length */
#define NBD_OPTION_REPLY_HEADER_SIZE 20u  /* magic + option + type + length */
#define NBD_EXPORT_NAME_REPLY_SIZE   10u  /* size + flags, NO_ZEROES */
#define NBD_EXPORT_NAME_REPLY_MAX    (NBD_EXPORT_NAME_REPLY_SIZE + NBD_EXPORT_NAME_ZEROES)

#define NBD_REQUEST_SIZE             28u  /* compact request header */
#define NBD_EXTENDED_REQUEST_SIZE    32u
#define NBD_REQUEST_MAX_SIZE         NBD_EXTENDED_REQUEST_SIZE
#define NBD_SIMPLE_REPLY_SIZE        16u
#define NBD_STRUCTURED_REPLY_SIZE    20u
#define NBD_EXTENDED_REPLY_SIZE      32u
#define NBD_REPLY_HEADER_MAX_SIZE    NBD_EXTENDED_REPLY_SIZE

/* Chunk payload pieces. */
#define NBD_OFFSET_DATA_HDR_SIZE     8u   /* offset; the data follows */
#define NBD_OFFSET_HOLE_SIZE         12u  /* offset + hole size */
#define NBD_ERROR_HDR_SIZE           6u   /* error + message length */
#define NBD_ERROR_OFFSET_TAIL_SIZE   8u   /* offset after the message */
#define NBD_BLOCK_STATUS_HDR_SIZE    4u   /* context id */
#define NBD_EXTENT_SIZE              8u   /* 32-bit length + 32-bit flags */
#define NBD_BLOCK_STATUS_EXT_HDR_SIZE 8u  /* context id + descriptor count */
#define NBD_EXTENT_EXT_SIZE          16u  /* 64-bit length + pad + flags */
#define NBD_BLOCK_STATUS_PAYLOAD_HDR_SIZE 8u /* 64-bit effect length, then ids */

/* Whole option replies (header + payload) for the fixed-size INFO types. */
#define NBD_REP_INFO_EXPORT_SIZE     (NBD_OPTION_REPLY_HEADER_SIZE + 12u)
#define NBD_REP_INFO_BLOCK_SIZE_SIZE (NBD_OPTION_REPLY_HEADER_SIZE + 14u)
/* Header + info type of NAME / DESCRIPTION; the string follows. */
#define NBD_REP_INFO_STRING_HDR_SIZE (NBD_OPTION_REPLY_HEADER_SIZE + 2u)
/* Upper bounds for buffers holding whole variable replies. */
#define NBD_REP_INFO_STRING_MAX      (NBD_REP_INFO_STRING_HDR_SIZE + NBD_MAX_STRING)
#define NBD_REP_SERVER_MAX           (NBD_OPTION_REPLY_HEADER_SIZE + 4u + 2u * NBD_MAX_STRING)
#define NBD_REP_META_CONTEXT_MAX     (NBD_OPTION_REPLY_HEADER_SIZE + 4u + NBD_MAX_STRING)
#define NBD_REP_ERR_MAX              (NBD_OPTION_REPLY_HEADER_SIZE + NBD_MAX_STRING)

/* ======================================================================
 * Handshake: greeting, client flags, option headers, option replies
 * ====================================================================== */

typedef struct NBDGreeting {
    uint16_t handshake_flags;       /* NBD_FLAG_FIXED_NEWSTYLE | ... */
} NBDGreeting;

typedef struct NBDOptionHeader {
    uint32_t option;                /* NBD_OPT_* */
    uint32_t length;                /* bytes of option data that follow */
} NBDOptionHeader;

typedef struct NBDOptionReplyHeader {
    uint32_t option;                /* echoes the client's option */
    uint32_t type;                  /* NBD_REP_* */
    uint32_t length;                /* bytes of reply data that follow */
} NBDOptionReplyHeader;

typedef struct NBDExportNameReply {
    uint64_t size;
    uint16_t flags;                 /* transmission flags */
} NBDExportNameReply;

size_t nbd_encode_greeting(uint8_t *buf, uint16_t handshake_flags);
NBDDecodeResult nbd_decode_greeting(const uint8_t *buf, size_t len, NBDGreeting *out);

size_t nbd_encode_client_flags(uint8_t *buf, uint32_t client_flags);
NBDDecodeResult nbd_decode_client_flags(const uint8_t *buf, size_t len, uint32_t *out);
/*
 * Server side: may the session continue with these client flags, given the
 * handshake flags the server sent?  Unknown bits, or NO_ZEROES when the
 * server did not offer it, mean the server must drop the connection.
 * Returns NULL when acceptable, else a static reason.
 */
const char *nbd_client_flags_check(uint32_t client_flags, uint16_t handshake_flags);

size_t nbd_encode_option_header(uint8_t *buf, uint32_t option, uint32_t length);
/* A wrong magic is INVALID: the server must end the connection. */
NBDDecodeResult nbd_decode_option_header(const uint8_t *buf, size_t len, NBDOptionHeader *out);

size_t nbd_encode_option_reply_header(uint8_t *buf, uint32_t option, uint32_t type,
                                      uint32_t length);
NBDDecodeResult nbd_decode_option_reply_header(const uint8_t *buf, size_t len,
                                               NBDOptionReplyHeader *out);

/* The reply to NBD_OPT_EXPORT_NAME; appends 124 zero bytes unless no_zeroes. */
size_t nbd_encode_export_name_reply(uint8_t *buf, uint64_t size, uint16_t flags,
                                    bool no_zeroes);
NBDDecodeResult nbd_decode_export_name_reply(const uint8_t *buf, size_t len, bool no_zeroes,
                                             NBDExportNameReply *out);

/* ---- Option replies, server side (whole reply: header + payload) ---- */

size_t nbd_encode_rep_ack(uint8_t *buf, uint32_t option);
/*
 * Error reply with an optional message.  Writes into buf of capacity cap;
 * returns 0 (writing nothing) if cap is too small, type is not an error or
 * the message is longer than NBD_MAX_STRING.
 */
size_t nbd_encode_rep_err(uint8_t *buf, size_t cap, uint32_t option, uint32_t type,
                          const char *msg, size_t msg_len);
/* NBD_REP_SERVER: name, then an optional description (desc_len may be 0). */
size_t nbd_encode_rep_server(uint8_t *buf, size_t cap, uint32_t option,
                             const char *name, size_t name_len,
                             const char *desc, size_t desc_len);
size_t nbd_encode_rep_info_export(uint8_t *buf, uint32_t option, uint64_t size,
                                  uint16_t flags);
size_t nbd_encode_rep_info_block_size(uint8_t *buf, uint32_t option, uint32_t min_block,
                                      uint32_t pref_block, uint32_t max_block);
/* NBD_INFO_NAME or NBD_INFO_DESCRIPTION with its string; 0 if it does not fit. */
size_t nbd_encode_rep_info_string(uint8_t *buf, size_t cap, uint32_t option,
                                  uint16_t info_type, const char *str, size_t str_len);
/* Header + info type only, for callers that send the string from its own memory. */
size_t nbd_encode_rep_info_string_hdr(uint8_t *buf, uint32_t option, uint16_t info_type,
                                      size_t str_len);
size_t nbd_encode_rep_meta_context(uint8_t *buf, size_t cap, uint32_t option,
                                   uint32_t context_id, const char *name, size_t name_len);

/* ---- Option replies, client side (payload after the reply header) ---- */

typedef struct NBDRepServer {
    NBDStringView name;
    NBDStringView description;      /* len 0 when absent */
} NBDRepServer;

typedef struct NBDRepInfo {
    uint16_t type;                  /* NBD_INFO_*; unknown types are OK, left raw */
    union {
        struct { uint64_t size; uint16_t flags; } export_;
        NBDStringView name;         /* NAME and DESCRIPTION */
        struct { uint32_t min_block, pref_block, max_block; } block_size;
        NBDStringView raw;          /* unknown type: bytes after the type field */
    } u;
} NBDRepInfo;

typedef struct NBDRepMetaContext {
    uint32_t context_id;
    NBDStringView name;
} NBDRepMetaContext;

/* Each takes exactly the reply payload (len = header length). */
NBDDecodeResult nbd_decode_rep_server(const uint8_t *payload, size_t len, NBDRepServer *out);
NBDDecodeResult nbd_decode_rep_info(const uint8_t *payload, size_t len, NBDRepInfo *out);
NBDDecodeResult nbd_decode_rep_meta_context(const uint8_t *payload, size_t len,
                                            NBDRepMetaContext *out);
/* Error replies carry an optional human-readable message. */
NBDDecodeResult nbd_decode_rep_err(const uint8_t *payload, size_t len, NBDStringView *msg);
/*
 * Checks block-size constraints as the spec requires them to be advertised
 * (min a power of two <= 64 KiB, pref a power of two >= max(min, 512), max a
 * multiple of min or 0xffffffff and >= min(pref, export_size)).  Servers use
 * it before advertising, clients on what they receive.  NULL when valid,
 * else a static reason.
 */
const char *nbd_block_size_check(uint32_t min_block, uint32_t pref_block, uint32_t max_block,
                                 uint64_t export_size);

/* ======================================================================
 * Option payloads, server side
 * ====================================================================== */

/* What the server should do with an option header before reading its data. */
typedef enum NBDOptLengthAction {
    NBD_OPT_LENGTH_ACCEPT = 0,  /* read the data and parse it */
    NBD_OPT_LENGTH_SKIP,        /* discard the data, then send reply_error */
    NBD_OPT_LENGTH_DISCONNECT,  /* too large even to skip: hard disconnect */
} NBDOptLengthAction;

/*
 * Largest option length the server agrees to read and discard when it will
 * refuse an option anyway.  Beyond it a peer is only wasting the server's
 * bandwidth, which the spec lets a server treat as denial of service.
 */
#define NBD_OPT_MAX_SKIP              (UINT32_C(1) << 20)
/* INFO/GO: 32-bit name length + name + 16-bit count + 16-bit requests. */
#define NBD_OPT_INFO_MAX_LENGTH       (4u + NBD_MAX_STRING + 2u + 2u * 65535u)
/* LIST_/SET_META_CONTEXT: berth's own bound on the whole option data. */
#define NBD_OPT_META_CONTEXT_MAX_LENGTH (64u * 1024u)

/* ABORT carries no data, but the spec asks servers to ignore stray bytes. */
#define NBD_OPT_ABORT_MAX_LENGTH      NBD_MAX_STRING

/*
 * Largest length the given option may carry (0 for options without data
 * and for unknown options), and the verdict for a given length.  ACCEPT
 * implies length <= nbd_opt_max_length(option) (at most
 * NBD_OPT_INFO_MAX_LENGTH, about 132 KiB), so the server can buffer the data
 * whole.  On SKIP, *reply_error is the NBD_REP_ERR_* to send after
 * discarding: UNSUP for unknown options, INVALID for a known option with a
 * length its format cannot have, TOO_BIG for meta-context options over
 * berth's bound; on ACCEPT and DISCONNECT it is 0.  Beyond NBD_OPT_MAX_SKIP
 * the verdict is DISCONNECT.  EXPORT_NAME cannot be answered with an error,
 * so an oversized one is DISCONNECT; so is an ABORT with more than
 * NBD_OPT_ABORT_MAX_LENGTH bytes (the client is leaving anyway).  Data that
 * comes with an accepted ABORT is to be ignored.
 */
uint32_t nbd_opt_max_length(uint32_t option);
NBDOptLengthAction nbd_opt_check_length(uint32_t option, uint32_t length,
                                        uint32_t *reply_error);

/* Names and strings: at most NBD_MAX_STRING bytes and no NUL.  NULL if OK. */
const char *nbd_string_check(const char *data, size_t len);

/* NBD_OPT_EXPORT_NAME: the whole data is the name. */
NBDDecodeResult nbd_parse_opt_export_name(const uint8_t *data, size_t len,
                                          NBDStringView *name);

typedef struct NBDOptInfoGo {
    NBDStringView name;
    uint16_t n_requests;
    const uint8_t *requests;        /* n_requests big-endian uint16 values */
} NBDOptInfoGo;

/*
 * INFO / GO data.  The sizes must add up exactly to len.  A request type
 * listed twice breaks a client MUST but harms nobody, so it is accepted:
 * answer each type once, asking nbd_opt_info_go_has().
 */
NBDDecodeResult nbd_parse_opt_info_go(const uint8_t *data, size_t len, NBDOptInfoGo *out);
uint16_t nbd_opt_info_go_request(const NBDOptInfoGo *info, uint16_t i);
/* True when the client listed the given NBD_INFO_* type. */
bool nbd_opt_info_go_has(const NBDOptInfoGo *info, uint16_t info_type);

typedef struct NBDOptMetaContext {
    NBDStringView export_name;
    uint32_t n_queries;
    const uint8_t *queries;         /* validated: n_queries (length, string) pairs */
    size_t queries_len;
} NBDOptMetaContext;

/*
 * LIST_META_CONTEXT / SET_META_CONTEXT data: every length is checked against
 * len, every string against nbd_string_check, and the sizes must add up
 * exactly, all before the call returns OK.  Queries are then walked with
 * NBDMetaQueryIter, which cannot fail.
 */
NBDDecodeResult nbd_parse_opt_meta_context(const uint8_t *data, size_t len,
                                           NBDOptMetaContext *out);

typedef struct NBDMetaQueryIter {
    const uint8_t *pos;
    const uint8_t *end;
} NBDMetaQueryIter;

void nbd_meta_query_iter_init(NBDMetaQueryIter *it, const NBDOptMetaContext *opt);
bool nbd_meta_query_iter_next(NBDMetaQueryIter *it, NBDStringView *query);

/*
 * Splits "namespace:leaf" at the first colon.  False when there is no colon
 * or the namespace is empty (the spec requires a non-empty namespace).
 */
bool nbd_meta_context_split(NBDStringView s, NBDStringView *ns, NBDStringView *leaf);

/* ---- Client side: encoders for option data ---- */

/* INFO / GO data: name + requests; returns 0 if it does not fit in cap. */
size_t nbd_encode_opt_info_go(uint8_t *buf, size_t cap, const char *name, size_t name_len,
                              const uint16_t *requests, uint16_t n_requests);
/* LIST_/SET_META_CONTEXT data; queries as NUL-terminated C strings. */
size_t nbd_encode_opt_meta_context(uint8_t *buf, size_t cap, const char *name,
                                   size_t name_len, const char *const *queries,
                                   uint32_t n_queries);

/* ======================================================================
 * Transmission: requests
 * ====================================================================== */


/* Header size for the mode: 28 bytes, or 32 with extended headers. */
size_t nbd_request_header_size(NBDMode mode);

/*
 * Encodes the header only (the payload of a write goes separately).
 * Returns 0 on programmer error (compact mode with a length over 32 bits).
 */
size_t nbd_encode_request(uint8_t *buf, NBDMode mode, const NBDRequest *req);

/*
 * Decodes one request header.  The magic must be the one the mode uses;
 * anything else is INVALID and the server must disconnect.  On OK, size is
 * the header size; nbd_request_payload_length() says how many payload
 * bytes follow it.
 */
NBDDecodeResult nbd_decode_request(const uint8_t *buf, size_t len, NBDMode mode,
                                   NBDRequest *out);

/*
 * Bytes of payload that follow the header on the wire.  Compact: the length
 * of a WRITE, else 0.  Extended: the length when PAYLOAD_LEN is set, else 0
 * (the length is then an effect length).
 */
uint64_t nbd_request_payload_length(const NBDRequest *req, NBDMode mode);

/* ---- Request rules (nbd/proto/rules.c): one table for server and client ---- */

/* How a command's payload travels after its header. */
typedef enum NBDPayloadForm {
    NBD_PAYLOAD_FORM_NONE = 0,      /* never a payload */
    NBD_PAYLOAD_FORM_WRITE,         /* always data; PAYLOAD_LEN is required with
                                     * extended headers */
    NBD_PAYLOAD_FORM_BLOCK_STATUS,  /* optional: extended headers, PAYLOAD_LEN and the
                                     * command's payload_tx_flag */
} NBDPayloadForm;

/* What bounds a command's length besides the end of the export. */
typedef enum NBDLengthBound {
    NBD_BOUND_NO_RANGE = 0,         /* offset and length must both be 0 (FLUSH) */
    NBD_BOUND_PAYLOAD,              /* the payload limit: data moves (READ, WRITE) */
    NBD_BOUND_SERVER_MAX_BLOCK,     /* an advertised maximum block size, enforced by the
                                     * server only: the spec lets a client exceed it, and
                                     * a server refuse (CACHE, WRITE_ZEROES) */
    NBD_BOUND_EFFECT,               /* nothing else (TRIM, BLOCK_STATUS) */
} NBDLengthBound;

/*
 * One command: what it may carry and what must have been negotiated.  The
 * messages are the exact texts both sides report; they are static.
 */
typedef struct NBDCommandRule {
    const char *name;               /* "NBD_CMD_TRIM", for logs */
    bool implemented;               /* false: named only (RESIZE); refused as unknown */
    uint16_t flags;                 /* command flags it may carry */
    uint16_t tx_flag;               /* transmission flag that enables it; 0: always */
    bool served_unadvertised;       /* the server serves it without tx_flag (the spec
                                     * notes clients that send it regardless) */
    NBDMode min_mode;               /* reply mode it needs (BLOCK_STATUS: structured) */
    bool needs_context;             /* a metadata context must be selected */
    bool is_write;                  /* refused with EPERM on read-only exports */
    bool enospc_past_end;           /* past the end is ENOSPC, not EINVAL (the spec) */
    bool nonzero_length;            /* a zero length is malformed, not a no-op */
    NBDPayloadForm payload;
    uint16_t payload_tx_flag;       /* enables a BLOCK_STATUS payload */
    NBDLengthBound bound;
    const char *unadvertised;       /* "TRIM was not advertised" */
    const char *needs_mode;         /* "BLOCK_STATUS needs structured replies or ..." */
    const char *too_long_block;     /* "READ length exceeds the maximum block size" */
    const char *too_long_payload;   /* "READ length exceeds the maximum payload size" */
} NBDCommandRule;

/* One command flag: where it is valid is each command's `flags`. */
typedef struct NBDFlagRule {
    uint16_t flag;                  /* one NBD_CMD_FLAG_* bit */
    const char *name;               /* "FAST_ZERO" */
    uint16_t tx_flag;               /* transmission flag that enables it; 0: none */
    NBDMode min_mode;               /* DF: structured; PAYLOAD_LEN: extended */
    const char *misplaced;          /* "FAST_ZERO flag is only valid with WRITE_ZEROES" */
    const char *unadvertised;       /* "FAST_ZERO flag was not advertised" */
    const char *needs_mode;         /* "DF flag without structured replies" */
} NBDFlagRule;

/* The rule of a command, or NULL when the value names none. */
const NBDCommandRule *nbd_command_rule(uint16_t type);
/* The rule of one flag bit, or NULL for an unknown bit or not exactly one bit. */
const NBDFlagRule *nbd_flag_rule(uint16_t flag);

/*
 * Which kind of rule refused a request.  The kind decides the error each
 * side reports:
 *   MALFORMED        server NBD_EINVAL; client EINVAL
 *   READ_ONLY        server NBD_EPERM; client EPERM
 *   NOT_NEGOTIATED   server NBD_EINVAL; client ENOTSUP (a caller may fall back)
 *   OUT_OF_RANGE     server NBD_ENOSPC for enospc_past_end commands, else
 *                    NBD_EINVAL; client EINVAL
 *   TOO_LONG         server nbd_errno(EOVERFLOW, req): NBD_EOVERFLOW for a DF
 *                    READ, else NBD_EINVAL; client EOVERFLOW
 *   PAYLOAD_TOO_BIG  server only: NBD_EINVAL and a hard disconnect
 */
typedef enum NBDRefusal {
    NBD_REFUSAL_NONE = 0,
    NBD_REFUSAL_MALFORMED,
    NBD_REFUSAL_READ_ONLY,
    NBD_REFUSAL_NOT_NEGOTIATED,
    NBD_REFUSAL_OUT_OF_RANGE,
    NBD_REFUSAL_TOO_LONG,
    NBD_REFUSAL_PAYLOAD_TOO_BIG,
} NBDRefusal;

/* What the server must do about the request's payload. */
typedef enum NBDPayloadAction {
    NBD_PAYLOAD_NONE = 0,       /* no payload follows the header */
    NBD_PAYLOAD_READ,           /* read payload_length bytes; they belong to the request */
    NBD_PAYLOAD_DISCARD,        /* read and drop payload_length bytes, then reply with error */
    NBD_PAYLOAD_DISCONNECT,     /* payload cannot be consumed safely: hard disconnect */
} NBDPayloadAction;

/* The negotiated state against which requests are checked. */
typedef struct NBDRequestLimits {
    NBDMode mode;
    uint16_t tx_flags;              /* transmission flags of the export */
    uint64_t export_size;
    /*
     * Block-size constraints: enforced only when advertised (via
     * NBD_INFO_BLOCK_SIZE); else the defaults apply (alignment 1, and
     * reads/writes bounded only by max_payload).
     */
    bool block_size_advertised;
    uint32_t min_block;
    uint32_t max_block;
    /* Largest read or write this side buffers; 0 means NBD_MAX_PAYLOAD. */
    uint32_t max_payload;
    /* Metadata contexts selected by the final SET_META_CONTEXT. */
    uint32_t n_contexts;
} NBDRequestLimits;

typedef struct NBDRequestVerdict {
    uint32_t error;                 /* NBD_SUCCESS or NBD_E* to reply with */
    NBDRefusal refusal;             /* which kind of rule refused; NONE on success */
    const char *message;            /* static; NULL on success */
    NBDPayloadAction payload;
    uint64_t payload_length;        /* bytes following the header */
    /*
     * The request is valid and has nothing to do (zero length): reply
     * success without touching the export.
     */
    bool no_op;
    /*
     * BLOCK_STATUS with a payload: range checks wait for the payload, see
     * nbd_block_status_payload_validate().
     */
    bool needs_payload_check;
} NBDRequestVerdict;

/*
 * Checks one decoded request against the negotiated state, as the server
 * does.  Pure: it reads nothing but its arguments.  Rules, in this order
 * (the first that fails decides; each is a row of the tables above):
 *  1. (extended headers) a payload over the advertised/buffer maximum →
 *     PAYLOAD_TOO_BIG with DISCONNECT; a compact WRITE over the limit is
 *     refused by rule 10 and its payload discarded;
 *  2. DISC is always accepted (no reply; the server drains and closes);
 *  3. unknown command (including RESIZE) → MALFORMED;
 *  4. a compact header's length over 32 bits → TOO_LONG;
 *  5. form: unknown flag bits, a flag the command does not take, a flag the
 *     reply mode cannot carry (DF without structured replies, PAYLOAD_LEN
 *     without extended headers), an extended WRITE without PAYLOAD_LEN,
 *     FLUSH with an offset or length, BLOCK_STATUS of length 0 → MALFORMED;
 *  6. WRITE/TRIM/WRITE_ZEROES on a read-only export → READ_ONLY;
 *  7. negotiation: the command's transmission flag (CACHE is served even
 *     unadvertised), its reply mode (BLOCK_STATUS), each flag's transmission
 *     flag, the BLOCK_STATUS payload flag, a metadata context → NOT_NEGOTIATED;
 *  8. a BLOCK_STATUS payload whose length is not 8 + 4n
 *     (1 <= n <= n_contexts) → MALFORMED;
 *  9. offset or length not a multiple of an advertised minimum block →
 *     MALFORMED; offset + length past the export (overflow-safe) →
 *     OUT_OF_RANGE;
 * 10. READ/WRITE longer than the payload limit (max_payload narrowed by an
 *     advertised max block), CACHE and WRITE_ZEROES without FAST_ZERO longer
 *     than an advertised max block → TOO_LONG.  TRIM and BLOCK_STATUS
 *     lengths are not bounded.
 * 11. otherwise success; no_op when the length is 0.
 * When an error is returned for a request whose payload is still unread and
 * can be consumed, payload is NBD_PAYLOAD_DISCARD: read and drop
 * payload_length bytes, then send the error reply.
 */
NBDRequestVerdict nbd_request_validate(const NBDRequest *req, const NBDRequestLimits *lim);

/*
 * The same rules as a client applies them before sending: req is the
 * request as it will go on the wire (PAYLOAD_LEN set on an extended WRITE).
 * Differences, all from the tables: rule 1 and the SERVER_MAX_BLOCK bound
 * are the server's own defences and are not applied, and a command with
 * served_unadvertised still needs its transmission flag.  Returns 0, or the
 * errno of the refusal's kind with *why set to the same static message the
 * server would send.  *no_op (may be NULL) tells that a valid request has
 * nothing to do.
 */
int nbd_request_check(const NBDRequest *req, const NBDRequestLimits *lim, const char **why,
                      bool *no_op);

/*
 * BLOCK_STATUS payload (extended headers with NBD_FLAG_BLOCK_STAT_PAYLOAD):
 * a 64-bit effect length, then 32-bit context ids.
 */
typedef struct NBDBlockStatusPayload {
    uint64_t effect_length;
    uint32_t n_ids;
    const uint8_t *ids;             /* n_ids big-endian uint32 */
} NBDBlockStatusPayload;

NBDDecodeResult nbd_decode_block_status_payload(const uint8_t *buf, size_t len,
                                                NBDBlockStatusPayload *out);
uint32_t nbd_block_status_payload_id(const NBDBlockStatusPayload *p, uint32_t i);
size_t nbd_encode_block_status_payload(uint8_t *buf, size_t cap, uint64_t effect_length,
                                       const uint32_t *ids, uint32_t n_ids);
/*
 * Range and context checks that nbd_request_validate() deferred: the ids must
 * be distinct and at most n_contexts of them, and the effect length must fit
 * the export.  The caller checks each id is one it handed out.
 */
NBDRequestVerdict nbd_block_status_payload_validate(const NBDRequest *req,
                                                    const NBDBlockStatusPayload *p,
                                                    const NBDRequestLimits *lim);

/* ======================================================================
 * Transmission: replies
 * ====================================================================== */



size_t nbd_encode_simple_reply(uint8_t *buf, uint64_t cookie, uint32_t error);
/* 20-byte structured chunk header; 0 if length does not fit in 32 bits. */
size_t nbd_encode_structured_reply(uint8_t *buf, uint64_t cookie, uint16_t flags,
                                   uint16_t type, uint64_t length);
size_t nbd_encode_extended_reply(uint8_t *buf, uint64_t cookie, uint16_t flags,
                                 uint16_t type, uint64_t offset, uint64_t length);
/*
 * Chunk header in the form the mode calls for: structured (SIMPLE mode is a
 * programmer error → 0) or extended; offset is used only when extended.
 */
size_t nbd_encode_chunk_header(uint8_t *buf, NBDMode mode, uint64_t cookie, uint16_t flags,
                               uint16_t type, uint64_t offset, uint64_t length);

/*
 * Client side: decodes any reply header the mode allows (simple only;
 * simple or structured; extended only).  Reads the magic first, so with
 * 4..15 bytes NEED_MORE reports exactly the size of that kind of header.
 * Structural checks: a NONE chunk must have length 0 and DONE set; an
 * extended chunk length over 32 bits is INVALID (the spec lets a client
 * hang up on it).  Whether a length is acceptable for the request it answers
 * is the caller's decision: it knows what it asked for.
 */
NBDDecodeResult nbd_decode_reply_header(const uint8_t *buf, size_t len, NBDMode mode,
                                        NBDReplyHeader *out);

/* ---- Chunk payloads ---- */

size_t nbd_encode_offset_data_hdr(uint8_t *buf, uint64_t offset);
size_t nbd_encode_offset_hole(uint8_t *buf, uint64_t offset, uint32_t hole_size);
/* ERROR chunk payload: error + message; 0 if cap too small or message too long. */
size_t nbd_encode_error_chunk(uint8_t *buf, size_t cap, uint32_t error,
                              const char *msg, size_t msg_len);
size_t nbd_encode_error_offset_chunk(uint8_t *buf, size_t cap, uint32_t error,
                                     const char *msg, size_t msg_len, uint64_t offset);
size_t nbd_encode_block_status_hdr(uint8_t *buf, uint32_t context_id);
size_t nbd_encode_extent(uint8_t *buf, uint32_t length, uint32_t flags);
size_t nbd_encode_block_status_ext_hdr(uint8_t *buf, uint32_t context_id, uint32_t count);
size_t nbd_encode_extent_ext(uint8_t *buf, uint64_t length, uint32_t flags);

/*
 * OFFSET_DATA: needs only the 8-byte offset; chunk_length is the header's
 * length (must be >= 9).  data_length = chunk_length - 8; the data follows.
 */
NBDDecodeResult nbd_decode_offset_data_hdr(const uint8_t *buf, size_t len,
                                           uint64_t chunk_length, uint64_t *offset,
                                           uint64_t *data_length);
/* OFFSET_HOLE: chunk_length must be exactly 12 and the hole size nonzero. */
NBDDecodeResult nbd_decode_offset_hole(const uint8_t *buf, size_t len, uint64_t chunk_length,
                                       uint64_t *offset, uint32_t *hole_size);

typedef struct NBDErrorChunk {
    uint32_t error;                 /* nonzero */
    NBDStringView message;
    bool has_offset;                /* ERROR_OFFSET */
    uint64_t offset;
} NBDErrorChunk;

/*
 * Any error chunk (type with bit 15 set); buf holds the whole payload
 * (len == chunk length).  Unknown error types decode their error and
 * message only, as the spec asks clients to.
 */
NBDDecodeResult nbd_decode_error_chunk(const uint8_t *buf, size_t len, uint16_t type,
                                       NBDErrorChunk *out);


typedef struct NBDBlockStatusView {
    uint32_t context_id;
    uint32_t n_extents;
    bool extended;                  /* BLOCK_STATUS_EXT descriptors */
    const uint8_t *descriptors;
} NBDBlockStatusView;

/*
 * BLOCK_STATUS or BLOCK_STATUS_EXT; buf holds the whole payload.  Checks
 * the length formula, the descriptor count (EXT), and that every extent
 * length is nonzero, so nbd_block_status_extent() cannot fail afterwards.
 */
NBDDecodeResult nbd_decode_block_status(const uint8_t *buf, size_t len, uint16_t type,
                                        NBDBlockStatusView *out);
NBDExtent nbd_block_status_extent(const NBDBlockStatusView *v, uint32_t i);

/* ======================================================================
 * Big-endian byte helpers (unaligned-safe; compilers turn them into a
 * byte swap and a plain load or store)
 * ====================================================================== */

static inline void nbd_store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

static inline void nbd_store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static inline void nbd_store_be64(uint8_t *p, uint64_t v)
{
    nbd_store_be32(p, (uint32_t) (v >> 32));
    nbd_store_be32(p + 4, (uint32_t) v);
}

static inline uint16_t nbd_load_be16(const uint8_t *p)
{
    return (uint16_t) ((uint16_t) p[0] << 8 | p[1]);
}

static inline uint32_t nbd_load_be32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static inline uint64_t nbd_load_be64(const uint8_t *p)
{
    return (uint64_t) nbd_load_be32(p) << 32 | nbd_load_be32(p + 4);
}

/* ======================================================================
 * Names and errors
 * ====================================================================== */

/* Names for log messages ("NBD_CMD_READ" → "read"); "unknown" if unknown. */
const char *nbd_cmd_name(uint16_t cmd);
const char *nbd_opt_name(uint32_t option);
const char *nbd_rep_name(uint32_t rep_type);
const char *nbd_info_name(uint16_t info_type);
const char *nbd_reply_type_name(uint16_t type);
const char *nbd_err_name(uint32_t nbd_error);
const char *nbd_mode_name(NBDMode mode);

/*
 * errno → NBD error for the reply to req (nbd/proto/errno.c): the spec's
 * list, EDQUOT/EFBIG → ENOSPC, EROFS → EPERM, anything unknown → EIO.  The
 * spec reserves two values for one request each: ENOTSUP/EOPNOTSUPP becomes
 * NBD_ENOTSUP only for a WRITE_ZEROES with FAST_ZERO, EOVERFLOW becomes
 * NBD_EOVERFLOW only for a READ with DF; otherwise both are NBD_EINVAL.
 * req may be NULL (no request: neither exception applies).  0 → 0; negative
 * errnos are accepted.
 */
uint32_t nbd_errno(int err, const NBDRequest *req);
/* NBD error → errno for the client; unknown values → EINVAL as the spec asks. */
int nbd_error_to_errno(uint32_t nbd_error);

#ifdef __cplusplus
}
#endif

#endif /* BERTH_NBD_CODEC_H */
