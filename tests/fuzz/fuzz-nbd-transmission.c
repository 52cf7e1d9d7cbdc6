/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the NBD server's transmission phase. A fixed, valid
 * handshake is sent first; the input is the request stream that follows
 * (headers, write payloads, block-status payloads, disconnects). Its first
 * byte picks the handshake and is not sent:
 *   bits 0-1  0: extended headers, 1: structured replies, 2: simple
 *             replies through GO, 3: NBD_OPT_EXPORT_NAME (simple replies)
 *   bit 2     the read-only export "ro" instead of the writable "disk"
 *   bit 3     also negotiate base:allocation (with modes 0 and 1)
 * The server must end the connection after the input is spent, having
 * answered or dropped every request, with memory bounded by its own limits
 * (run with -rss_limit_mb) and no leak.
 *
 * Seeds (corpus/nbd-transmission/) are the requests libnbd, qemu-img and
 * qemu-io send after their handshake, recorded by record-nbd-traces.py.
 */
#include "fuzz-nbd-server.h"

#include "nbd/proto/codec.h"

static size_t add_option(uint8_t *buf, uint32_t opt, const uint8_t *payload, size_t len)
{
    size_t n = nbd_encode_option_header(buf, opt, (uint32_t) len);
    if (len) {
        memcpy(buf + n, payload, len);
    }
    return n + len;
}

/* The client side of the handshake the first byte asks for. */
static size_t handshake_prefix(uint8_t mode_byte, uint8_t *buf, size_t cap)
{
    unsigned mode = mode_byte & 3;
    const char *name = mode_byte & 4 ? "ro" : "disk";
    bool meta = (mode_byte & 8) && mode < 2;
    uint8_t payload[256];
    size_t n = nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    if (mode == 3) {
        return n + add_option(buf + n, NBD_OPT_EXPORT_NAME, (const uint8_t *) name,
                              strlen(name));
    }
    if (mode < 2) {
        n += add_option(buf + n, mode == 0 ? NBD_OPT_EXTENDED_HEADERS
                                           : NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    }
    if (meta) {
        const char *const queries[] = { "base:allocation" };
        size_t len = nbd_encode_opt_meta_context(payload, sizeof(payload), name, strlen(name),
                                                 queries, 1);
        n += add_option(buf + n, NBD_OPT_SET_META_CONTEXT, payload, len);
    }
    const uint16_t infos[] = { NBD_INFO_BLOCK_SIZE };
    size_t len = nbd_encode_opt_info_go(payload, sizeof(payload), name, strlen(name), infos, 1);
    n += add_option(buf + n, NBD_OPT_GO, payload, len);
    g_assert(n <= cap);
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_nbd_server_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t prefix[1024];

    if (size < 1) {
        return 0;
    }
    size_t n = handshake_prefix(data[0], prefix, sizeof(prefix));
    fuzz_nbd_serve(false, prefix, n, data + 1, size - 1);
    return 0;
}
