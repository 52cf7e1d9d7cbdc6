/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: berth's NBD client against a lying server. The input
 * is everything the server side sends — greeting, option replies, then
 * transmission replies — written by a thread of its own on a socketpair,
 * which then hangs up and reads what the client sends until it closes.
 * The first byte picks what the client does and is not sent:
 *   0-2  nbd_receive_negotiate_limited() (extended, structured, simple),
 *        then, if that succeeds, an NBDClientSession with a batch of
 *        reads, writes, block status, trims, zeroes and a flush in flight
 *   3    nbd_list_exports() (what berth-nbd -L does)
 * Every request's callback must run exactly once, the session must die
 * cleanly once the input is spent, read buffers must not be written past
 * their end, and nothing may leak.
 *
 * Seeds (corpus/nbd-client/) are what qemu-nbd, nbdkit and berthd answer
 * to berth's client, recorded by record-nbd-traces.py.
 */
#include "fuzz-nbd-client-act.h"

#include <poll.h>

typedef struct {
    int fd;
    const uint8_t *data;
    size_t len;
} FakeServer;

/* Send the input while draining the client, hang up, drain until EOF. */
static gpointer fake_server_thread(gpointer opaque)
{
    FakeServer *f = opaque;
    size_t sent = 0;
    bool shut = false;

    for (;;) {
        if (!shut && sent == f->len) {
            shutdown(f->fd, SHUT_WR);
            shut = true;
        }
        struct pollfd pfd = { .fd = f->fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
        if (poll(&pfd, 1, FUZZ_DEADLINE_SEC * 1000) == 0) {
            fuzz_fail("the NBD client neither read nor closed for %d s", FUZZ_DEADLINE_SEC);
        }
        if (pfd.revents & POLLOUT) {
            ssize_t n = send(f->fd, f->data + sent, f->len - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t) n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                sent = f->len;   /* the client hung up first */
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[65536];
            ssize_t n = recv(f->fd, buf, sizeof(buf), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                break;
            }
        }
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_glib_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0] % FUZZ_NBD_CLIENT_MODES;
    int sv[2];
    fuzz_socketpair(sv);
    FakeServer f = { .fd = sv[1], .data = data + 1, .len = size - 1 };
    GThread *t = g_thread_new("fake-nbd-server", fake_server_thread, &f);
    BerthChannel *ch = berth_channel_socket_new(sv[0]);
    fuzz_nbd_client_act(ch, mode);
    berth_channel_shutdown(ch);
    g_thread_join(t);
    berth_channel_unref(ch);
    close(sv[1]);
    fuzz_drain_main_context();
    return 0;
}
