/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Seeded fuzzing of the client session's reply parser: a fake server reads a
 * batch of mixed requests (reads of several sizes, a write, a flush, block
 * status), builds a correct reply stream for them, damages it (bit flips,
 * truncation, a repeated or dropped range, random bytes spliced in), sends it
 * and hangs up.  Whatever arrives, every request must be called back exactly
 * once, on the main thread, with 0 or -errno, within the deadline; read
 * buffers must not be written outside the requested length (guard bytes);
 * and the sanitizer builds must stay clean.  Seeds are fixed, so a failure
 * reproduces with -p and the seed in the test's name.
 */
#include "nbd-session-test-util.h"

#include <errno.h>

#define ROUNDS_PER_MODE 150
#define GUARD 64
#define GUARD_BYTE 0xc5

/* The batch every round submits; the fake answers in this order (or not). */
static const struct {
    uint16_t cmd;
    uint64_t off, len;
} batch[] = {
    { NBD_CMD_READ, 0, 4096 },
    { NBD_CMD_READ, 8192, 100 },
    { NBD_CMD_READ, 65536, 70000 },     /* large enough for the direct-read path */
    { NBD_CMD_WRITE, 4096, 512 },
    { NBD_CMD_BLOCK_STATUS, 0, 65536 },
    { NBD_CMD_FLUSH, 0, 0 },
    { NBD_CMD_READ, 300000, 1 },
};
#define N_BATCH ((int) G_N_ELEMENTS(batch))

static GRand *rand_for_script;      /* the fake thread's generator, set per round */

static void put_chunk_hdr(Fake *f, GByteArray *out, const NBDRequest *r, uint16_t flags,
                          uint16_t type, uint64_t len)
{
    uint8_t hdr[NBD_REPLY_HEADER_MAX_SIZE];
    g_byte_array_append(out, hdr, (guint) fake_chunk_hdr(f, hdr, r, flags, type, len));
}

/* A correct answer to r, appended to out. */
static void put_reply(Fake *f, GByteArray *out, const NBDRequest *r, GRand *rnd)
{
    uint8_t buf[256];
    switch (r->type) {
    case NBD_CMD_READ: {
        /* Data for the first part, a hole for the rest (when there is a rest). */
        uint64_t data = r->length > 1 ? (uint64_t) g_rand_int_range(rnd, 1, (gint32) r->length)
                                      : r->length;
        bool hole = data < r->length;
        put_chunk_hdr(f, out, r, hole ? 0 : NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                      8 + data);
        g_byte_array_append(out, buf, (guint) nbd_encode_offset_data_hdr(buf, r->offset));
        guint at = out->len;
        g_byte_array_set_size(out, at + (guint) data);
        fill_pattern(out->data + at, r->offset, data, FAKE_SEED);
        if (hole) {
            put_chunk_hdr(f, out, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_HOLE,
                          NBD_OFFSET_HOLE_SIZE);
            g_byte_array_append(out, buf, (guint) nbd_encode_offset_hole(
                                    buf, r->offset + data, (uint32_t) (r->length - data)));
        }
        break;
    }
    case NBD_CMD_BLOCK_STATUS: {
        bool ext = f->mode == NBD_MODE_EXTENDED;
        size_t n = ext ? nbd_encode_block_status_ext_hdr(buf, FAKE_CTX_ID, 2)
                       : nbd_encode_block_status_hdr(buf, FAKE_CTX_ID);
        n += ext ? nbd_encode_extent_ext(buf + n, 4096, 0)
                 : nbd_encode_extent(buf + n, 4096, 0);
        n += ext ? nbd_encode_extent_ext(buf + n, r->length - 4096, NBD_STATE_HOLE)
                 : nbd_encode_extent(buf + n, (uint32_t) (r->length - 4096), NBD_STATE_HOLE);
        put_chunk_hdr(f, out, r, NBD_REPLY_FLAG_DONE,
                      ext ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS, n);
        g_byte_array_append(out, buf, (guint) n);
        break;
    }
    default:
        if (f->mode == NBD_MODE_EXTENDED) {
            put_chunk_hdr(f, out, r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
        } else {
            g_byte_array_append(out, buf, (guint) nbd_encode_simple_reply(buf, r->cookie, 0));
        }
        break;
    }
}

/* One kind of damage, chosen by the generator. */
static void damage(GByteArray *s, GRand *rnd)
{
    guint len = s->len;
    switch (g_rand_int_range(rnd, 0, 5)) {
    case 0: /* flip a few bits */
        for (int i = g_rand_int_range(rnd, 1, 5); i > 0; i--) {
            s->data[g_rand_int_range(rnd, 0, (gint32) len)] ^=
                (uint8_t) (1u << g_rand_int_range(rnd, 0, 8));
        }
        break;
    case 1: /* cut it short */
        g_byte_array_set_size(s, (guint) g_rand_int_range(rnd, 0, (gint32) len));
        break;
    case 2: { /* repeat a range */
        guint a = (guint) g_rand_int_range(rnd, 0, (gint32) len);
        guint n = (guint) g_rand_int_range(rnd, 1, (gint32) MIN(len - a, 64u) + 1);
        g_autofree uint8_t *copy = g_memdup2(s->data + a, n);
        g_byte_array_append(s, copy, n);
        break;
    }
    case 3: { /* drop a range */
        guint a = (guint) g_rand_int_range(rnd, 0, (gint32) len);
        guint n = (guint) g_rand_int_range(rnd, 1, (gint32) MIN(len - a, 64u) + 1);
        g_byte_array_remove_range(s, a, n);
        break;
    }
    default: { /* splice in random bytes */
        uint8_t junk[32];
        guint n = (guint) g_rand_int_range(rnd, 1, sizeof(junk) + 1);
        for (guint i = 0; i < n; i++) {
            junk[i] = (uint8_t) g_rand_int(rnd);
        }
        guint at = (guint) g_rand_int_range(rnd, 0, (gint32) len + 1);
        g_byte_array_set_size(s, len + n);
        memmove(s->data + at + n, s->data + at, len - at);
        memcpy(s->data + at, junk, n);
        break;
    }
    }
}

static void script_fuzz(Fake *f)
{
    GRand *rnd = rand_for_script;
    NBDRequest reqs[N_BATCH];
    g_autoptr(GByteArray) stream = g_byte_array_new();
    int n = 0;
    while (n < N_BATCH && fake_recv(f, &reqs[n])) {
        n++;
    }
    /* Answer in a shuffled order, as a server may. */
    for (int i = n - 1; i > 0; i--) {
        int j = g_rand_int_range(rnd, 0, i + 1);
        NBDRequest t = reqs[i];
        reqs[i] = reqs[j];
        reqs[j] = t;
    }
    for (int i = 0; i < n; i++) {
        put_reply(f, stream, &reqs[i], rnd);
    }
    if (stream->len) {
        damage(stream, rnd);
    }
    fake_send(f, stream->data, stream->len);
    /* Hang up: whatever the damage left unanswered must fail, not hang. */
    berth_channel_shutdown(f->ch);
}

static void test_fuzz(gconstpointer data)
{
    guint32 seed = GPOINTER_TO_UINT(data);
    bool extended = seed & 1;
    rand_for_script = g_rand_new_with_seed(seed);

    FakeRun run;
    fake_run_start(&run, script_fuzz, extended);
    Req r[N_BATCH] = { 0 };
    uint8_t *bufs[N_BATCH] = { 0 };
    for (int i = 0; i < N_BATCH; i++) {
        uint64_t len = batch[i].len;
        bool has_buf = batch[i].cmd == NBD_CMD_READ || batch[i].cmd == NBD_CMD_WRITE;
        if (has_buf) {
            bufs[i] = g_malloc(len + 2 * GUARD);
            memset(bufs[i], GUARD_BYTE, len + 2 * GUARD);
        }
        submit(run.s, batch[i].cmd, 0, batch[i].off, len, has_buf ? bufs[i] + GUARD : NULL,
               has_buf ? len : 0, &r[i]);
    }
    RUN_UNTIL(all_done(r, N_BATCH));
    check_calls(r, N_BATCH);
    for (int i = 0; i < N_BATCH; i++) {
        g_assert_cmpint(r[i].ret, <=, 0);
        if (r[i].ret < 0) {
            g_assert_nonnull(r[i].msg);
        }
        if (bufs[i]) {
            g_assert_true(all_bytes(bufs[i], GUARD, GUARD_BYTE));
            g_assert_true(all_bytes(bufs[i] + GUARD + batch[i].len, GUARD, GUARD_BYTE));
            g_free(bufs[i]);
        }
        if (batch[i].cmd == NBD_CMD_BLOCK_STATUS && r[i].ret == 0) {
            uint64_t total = 0;
            for (uint32_t e = 0; e < r[i].n_extents; e++) {
                g_assert_cmpuint(r[i].extents[e].length, >, 0);
                total += r[i].extents[e].length;
            }
            g_assert_cmpuint(total, <=, FAKE_SIZE - batch[i].off);
        }
    }
    g_assert_cmpint(run.dead.count, <=, 1);
    int ok = 0;
    for (int i = 0; i < N_BATCH; i++) {
        ok += r[i].ret == 0;
    }
    g_test_message("seed %u: %d of %d requests succeeded", seed, ok, N_BATCH);
    reqs_clear(r, N_BATCH);
    fake_run_finish(&run);
    g_rand_free(rand_for_script);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();
    for (guint32 seed = 1; seed <= 2 * ROUNDS_PER_MODE; seed++) {
        g_autofree char *path = g_strdup_printf("/nbd/session/fuzz/%s/%u",
                                                (seed & 1) ? "extended" : "structured", seed);
        g_test_add_data_func(path, GUINT_TO_POINTER(seed), test_fuzz);
    }
    return g_test_run();
}
