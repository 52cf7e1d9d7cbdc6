/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbd-client-record MODE SOCKET: what the client target does
 * (fuzz-nbd-client-act.h, MODE 0-3), against the NBD server at the unix
 * socket SOCKET. record-nbd-traces.py puts a relay between the two and
 * keeps what the server sent as a seed for the client target. Exits 0
 * whether or not the server went along: a refusal is a seed too.
 */
#include "fuzz-nbd-client-act.h"

#include "berth/io/net-listener.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODE SOCKET\n", argv[0]);
        return 2;
    }
    fuzz_glib_setup();
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = argv[2] };
    GError *err = NULL;
    int fd = berth_socket_connect(&addr, &err);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], err->message);
        g_error_free(err);
        return 1;
    }
    BerthChannel *ch = berth_channel_socket_new(fd);
    fuzz_nbd_client_act(ch, (unsigned) atoi(argv[1]) % FUZZ_NBD_CLIENT_MODES);
    berth_channel_shutdown(ch);
    berth_channel_unref(ch);
    return 0;
}
