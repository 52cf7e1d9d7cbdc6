/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the NBD server's handshake. The input is what a client
 * sends from the moment it is greeted: client flags, then options, and —
 * if an option gets it there — transmission requests. Its first byte picks
 * the server's configuration (bit 0: TLS required, PSK credentials) and is
 * not sent. Every input must end with the server closing the connection
 * (fuzz-nbd-server.h), with no leak, no sanitizer report and no critical.
 *
 * Seeds (corpus/nbd-handshake/) are what libnbd (nbdinfo, nbdsh), qemu-img,
 * qemu-io and the Linux kernel's client send, recorded by
 * tests/fuzz/record-nbd-traces.py.
 */
#include "fuzz-nbd-server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_nbd_server_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    bool tls = data[0] & 1;
    fuzz_nbd_serve(tls, NULL, 0, data + 1, size - 1);
    return 0;
}
