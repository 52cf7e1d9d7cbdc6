/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What berth's NBD client does in the client target, and in
 * nbd-client-record, which does the same against a real server so that
 * record-nbd-traces.py can keep that server's answers as seeds: negotiate
 * (extended headers, structured replies or simple replies at most) and run
 * a fixed batch of requests through an NBDClientSession, or list the
 * server's exports. The same requests in the same order give the same
 * cookies, so a recorded answer replays.
 *
 * Ownership: the channel is the caller's. Threads: the main context's.
 */
#ifndef BERTH_TESTS_FUZZ_NBD_CLIENT_ACT_H
#define BERTH_TESTS_FUZZ_NBD_CLIENT_ACT_H

#include "fuzz-util.h"

#include "berth/nbd/client.h"

#define FUZZ_NBD_CLIENT_MODES 4

/* The batch a session puts in flight (block/nbd.c sends the like). */
static const struct {
    uint16_t cmd, flags;
    uint64_t offset, length;
} batch[] = {
    { NBD_CMD_READ, 0, 0, 4096 },
    { NBD_CMD_READ, 0, 512, 1 },
    { NBD_CMD_READ, 0, 65536, 20000 },     /* over the direct-read threshold */
    { NBD_CMD_WRITE, 0, 4096, 512 },
    { NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 8192, 4096 },
    { NBD_CMD_BLOCK_STATUS, 0, 0, 1048576 },
    { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 4096, 65536 },
    { NBD_CMD_TRIM, 0, 0, 65536 },
    { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 65536, 4096 },
    { NBD_CMD_CACHE, 0, 0, 4096 },
    { NBD_CMD_FLUSH, 0, 0, 0 },
    { NBD_CMD_READ, 0, 1048576, 512 },
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

static inline void on_reply(const NBDClientResult *res, void *opaque)
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

static inline bool batch_done(gpointer opaque)
{
    return ((BatchState *) opaque)->outstanding == 0;
}

static inline void run_session(BerthChannel *ch, const NBDExportInfo *info)
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

/* Mode 0-2: negotiate (at most extended, structured, simple) and run the
 * batch; 3: list the exports. */
static inline void fuzz_nbd_client_act(BerthChannel *ch, unsigned mode)
{
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
        if (nbd_receive_negotiate_limited(ch, "disk", NULL, NULL, limits[mode % 3], &info,
                                          &out, &err)) {
            run_session(out, &info);
            berth_channel_unref(out);
        }
        nbd_export_info_clear(&info);
    }
    g_clear_error(&err);
}

#endif /* BERTH_TESTS_FUZZ_NBD_CLIENT_ACT_H */
