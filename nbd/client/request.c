/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Blocking transmission primitives of the NBD client (include/berth/nbd/client.h):
 * send a request header (plus its payload), read one reply header, move a
 * whole iovec.  They wait with poll() through the channel's blocking helpers
 * and never interpret more than one header, so tools and tests can drive the
 * protocol step by step; the asynchronous session does the real work.
 */
#include "berth/nbd/client.h"
#include "nbd/proto/codec.h"

#include <gio/gio.h>
#include <string.h>

bool nbd_wr_syncv(BerthChannel *ch, const struct iovec *iov, int niov, bool do_read,
                  int timeout_ms, GError **errp)
{
    for (int i = 0; i < niov; i++) {
        if (!iov[i].iov_len) {
            continue;
        }
        bool ok = do_read
            ? berth_channel_read_all(ch, iov[i].iov_base, iov[i].iov_len, timeout_ms, errp)
            : berth_channel_write_all(ch, iov[i].iov_base, iov[i].iov_len, timeout_ms, errp);
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool nbd_send_request(BerthChannel *ch, NBDMode mode, const NBDRequest *req,
                      const struct iovec *payload, int niov, int timeout_ms, GError **errp)
{
    NBDRequest r = *req;
    if (mode == NBD_MODE_EXTENDED && r.type == NBD_CMD_WRITE) {
        r.flags |= NBD_CMD_FLAG_PAYLOAD_LEN;
    }
    uint8_t hdr[NBD_REQUEST_MAX_SIZE];
    size_t len = nbd_encode_request(hdr, mode, &r);
    if (!len) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "NBD %s request length %" G_GUINT64_FORMAT " does not fit the header",
                    nbd_cmd_name(r.type), r.length);
        return false;
    }
    if (!berth_channel_write_all(ch, hdr, len, timeout_ms, errp) ||
        !nbd_wr_syncv(ch, payload, niov, false, timeout_ms, errp)) {
        g_prefix_error(errp, "Failed to send NBD %s request: ", nbd_cmd_name(r.type));
        return false;
    }
    return true;
}

bool nbd_receive_reply(BerthChannel *ch, NBDMode mode, NBDReplyHeader *reply,
                       int timeout_ms, GError **errp)
{
    /* The magic tells the header's size: read it first, then the rest. */
    uint8_t buf[NBD_REPLY_HEADER_MAX_SIZE];
    size_t have = 4;
    if (!berth_channel_read_all(ch, buf, have, timeout_ms, errp)) {
        g_prefix_error(errp, "Failed to read an NBD reply: ");
        return false;
    }
    for (;;) {
        NBDDecodeResult res = nbd_decode_reply_header(buf, have, mode, reply);
        if (res.status == NBD_DECODE_OK) {
            return true;
        }
        if (res.status != NBD_DECODE_NEED_MORE || res.size <= have ||
            res.size > sizeof(buf)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "Malformed NBD reply: %s", res.reason ? res.reason : "bad header");
            return false;
        }
        if (!berth_channel_read_all(ch, buf + have, res.size - have, timeout_ms, errp)) {
            g_prefix_error(errp, "Failed to read an NBD reply: ");
            return false;
        }
        have = res.size;
    }
}
