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
#include "fuzz-util.h"

#include "berth/nbd/client.h"

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

/* The batch a session puts in flight (block/nbd.c sends the like). */
static const struct {
    uint16_t cmd, flags;
    uint64_t offset, length;
} batch[] = {
    { NBD_CMD_READ, 0, 0, 4096 },
    { NBD_CMD_READ, 0, 512, 1 },
    { NBD_CMD_READ, 0, 65536, 131072 },
    { NBD_CMD_WRITE, 0, 4096, 512 },
    { NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 8192, 4096 },
    { NBD_CMD_BLOCK_STATUS, 0, 0, 1048576 },
    { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 4096, 65536 },
    { NBD_CMD_TRIM, 0, 0, 65536 },
    { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 65536, 4096 },
    { NBD_CMD_CACHE, 0, 0, 4096 },
    { NBD_CMD_FLUSH, 0, 0, 0 },
    { NBD_CMD_READ, 0, 1048576, 65536 },
};
#define N_BATCH G_N_ELEMENTS(batch)

typedef struct {
    guint calls[N_BATCH];
    guint outstanding;
} BatchState;

typedef struct {
    BatchState *st;
    guint index;
} BatchSlot;

static void on_reply(const NBDClientResult *res, void *opaque)
{
    BatchSlot *slot = opaque;

    if (res->ret > 0 || (res->ret == 0 && res->err)) {
        fuzz_fail("request %u: ret %d%s", slot->index, res->ret,
                  res->err ? " with an error" : "");
    }
    if (++slot->st->calls[slot->index] != 1) {
        fuzz_fail("request %u called back %u times", slot->index,
                  slot->st->calls[slot->index]);
    }
    slot->st->outstanding--;
}

static bool batch_done(gpointer opaque)
{
    return ((BatchState *) opaque)->outstanding == 0;
}

static void run_session(BerthChannel *ch, const NBDExportInfo *info)
{
    BatchState st = { .outstanding = N_BATCH };
    BatchSlot slots[N_BATCH];
    uint8_t *bufs[N_BATCH];
    struct iovec iov[N_BATCH];
    NBDClientSession *s = nbd_client_session_new(ch, info, NULL, NULL, NULL);

    for (guint i = 0; i < N_BATCH; i++) {
        /* Exactly the length asked for: ASan reports a byte past it. */
        bufs[i] = g_malloc(batch[i].length ? batch[i].length : 1);
        memset(bufs[i], 0xa5, batch[i].length ? batch[i].length : 1);
        iov[i] = (struct iovec) { bufs[i], batch[i].length };
        slots[i] = (BatchSlot) { &st, i };
        bool has_data = batch[i].cmd == NBD_CMD_READ || batch[i].cmd == NBD_CMD_WRITE;
        nbd_client_session_submit(s, batch[i].cmd, batch[i].flags, batch[i].offset,
                                  batch[i].length, has_data ? &iov[i] : NULL, has_data ? 1 : 0,
                                  on_reply, &slots[i]);
    }
    fuzz_run_until(NULL, batch_done, &st, "the NBD client session");
    nbd_client_session_free(s);
    for (guint i = 0; i < N_BATCH; i++) {
        g_free(bufs[i]);
    }
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
    unsigned mode = data[0] % 4;
    int sv[2];
    fuzz_socketpair(sv);
    FakeServer f = { .fd = sv[1], .data = data + 1, .len = size - 1 };
    GThread *t = g_thread_new("fake-nbd-server", fake_server_thread, &f);
    BerthChannel *ch = berth_channel_socket_new(sv[0]);
    GError *err = NULL;

    if (mode == 3) {
        NBDExportList *list = nbd_list_exports(ch, NULL, NULL, &err);
        if (list) {
            nbd_export_list_free(list);
        }
    } else {
        static const NBDNegotiateLimit limits[] = {
            NBD_NEGOTIATE_EXTENDED, NBD_NEGOTIATE_STRUCTURED, NBD_NEGOTIATE_SIMPLE,
        };
        NBDExportInfo info = { 0 };
        BerthChannel *out = NULL;
        if (nbd_receive_negotiate_limited(ch, "disk", NULL, NULL, limits[mode], &info, &out,
                                          &err)) {
            run_session(out, &info);
            berth_channel_unref(out);
        }
        nbd_export_info_clear(&info);
    }
    g_clear_error(&err);
    berth_channel_shutdown(ch);
    g_thread_join(t);
    berth_channel_unref(ch);
    close(sv[1]);
    fuzz_drain_main_context();
    return 0;
}
