/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz tests for the NBD wire codec (nbd/proto/codec*.c): a seeded loop feeds
 * random and mutated buffers to every decoder, each in a heap block of
 * exactly the tested length so valgrind or an ASan build reports any read
 * past the end, and checks that every result is well-formed.
 */
#include "nbd-codec-test-util.h"

/* ---------------------------------------------------------------------
 * Fuzzing: random and mutated inputs, exact-size buffers
 * --------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: a fixed seed keeps every run identical. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Runs every decoder on (p, n); checks the result is well-formed. */
static void check_result(NBDDecodeResult r, size_t n)
{
    switch (r.status) {
    case NBD_DECODE_OK:
        g_assert_cmpuint(r.size, <=, n);
        break;
    case NBD_DECODE_NEED_MORE:
        g_assert_cmpuint(r.size, >, n);
        break;
    case NBD_DECODE_INVALID:
        g_assert_nonnull(r.reason);
        break;
    default:
        g_assert_not_reached();
    }
}

static void touch_view(NBDStringView s)
{
    /* Reading every byte of a view makes a view pointing outside the
     * buffer visible to valgrind/ASan. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < s.len; i++) {
        sink ^= (uint8_t) s.data[i];
    }
    (void) sink;
}

static void fuzz_one(const uint8_t *p, size_t n, uint64_t aux)
{
    NBDGreeting g;
    uint32_t u32;
    NBDOptionHeader oh;
    NBDOptionReplyHeader orh;
    NBDExportNameReply enr;
    NBDRepServer srv;
    NBDRepInfo info;
    NBDRepMetaContext rmc;
    NBDStringView sv;
    NBDOptInfoGo ig;
    NBDOptMetaContext mc;
    NBDRequest req;
    NBDReplyHeader rh;
    NBDErrorChunk ec;
    NBDBlockStatusView bsv;
    NBDBlockStatusPayload bsp;
    uint64_t off, dlen;
    NBDDecodeResult r;

    check_result(nbd_decode_greeting(p, n, &g), n);
    check_result(nbd_decode_client_flags(p, n, &u32), n);
    check_result(nbd_decode_option_header(p, n, &oh), n);
    check_result(nbd_decode_option_reply_header(p, n, &orh), n);
    check_result(nbd_decode_export_name_reply(p, n, aux & 1, &enr), n);

    r = nbd_decode_rep_server(p, n, &srv);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(srv.name);
        touch_view(srv.description);
    }
    r = nbd_decode_rep_info(p, n, &info);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK &&
        (info.type == NBD_INFO_NAME || info.type == NBD_INFO_DESCRIPTION)) {
        touch_view(info.u.name);
    }
    r = nbd_decode_rep_meta_context(p, n, &rmc);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(rmc.name);
    }
    check_result(nbd_decode_rep_err(p, n, &sv), n);
    check_result(nbd_parse_opt_export_name(p, n, &sv), n);

    r = nbd_parse_opt_info_go(p, n, &ig);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        touch_view(ig.name);
        for (uint32_t i = 0; i < ig.n_requests; i++) {
            (void) nbd_opt_info_go_request(&ig, (uint16_t) i);
        }
        (void) nbd_opt_info_go_has(&ig, NBD_INFO_BLOCK_SIZE);
    }
    r = nbd_parse_opt_meta_context(p, n, &mc);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        NBDMetaQueryIter it;
        NBDStringView q, ns, leaf;
        uint32_t count = 0;
        touch_view(mc.export_name);
        nbd_meta_query_iter_init(&it, &mc);
        while (nbd_meta_query_iter_next(&it, &q)) {
            touch_view(q);
            if (nbd_meta_context_split(q, &ns, &leaf)) {
                touch_view(ns);
                touch_view(leaf);
            }
            count++;
        }
        g_assert_cmpuint(count, ==, mc.n_queries);
    }

    for (NBDMode m = NBD_MODE_SIMPLE; m <= NBD_MODE_EXTENDED; m++) {
        r = nbd_decode_request(p, n, m, &req);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            NBDRequestLimits l = default_limits();
            l.mode = m;
            l.tx_flags = (uint16_t) aux;
            l.export_size = aux >> 16;
            l.block_size_advertised = (aux >> 3) & 1;
            l.min_block = 1u << ((aux >> 4) & 7);
            l.max_block = (uint32_t) (aux >> 20);
            l.n_contexts = (aux >> 7) & 3;
            NBDRequestVerdict v = nbd_request_validate(&req, &l);
            g_assert_true((v.error == 0) == (v.message == NULL));
            g_assert_true(v.payload != NBD_PAYLOAD_READ || v.error == 0);
            /* Only a payload that is read into memory is bounded; one
             * that is discarded is skipped in the input buffer. */
            g_assert_true(v.payload != NBD_PAYLOAD_READ ||
                          v.payload_length <= NBD_MAX_PAYLOAD);
        }
        r = nbd_decode_reply_header(p, n, m, &rh);
        check_result(r, n);
    }

    check_result(nbd_decode_offset_data_hdr(p, n, aux & 0xffff, &off, &dlen), n);
    check_result(nbd_decode_offset_hole(p, n, aux & 15, &off, &u32), n);
    static const uint16_t err_types[] = {
        NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET, 0x8123, 0,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(err_types); i++) {
        r = nbd_decode_error_chunk(p, n, err_types[i], &ec);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            touch_view(ec.message);
        }
    }
    static const uint16_t bs_types[] = {
        NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bs_types); i++) {
        r = nbd_decode_block_status(p, n, bs_types[i], &bsv);
        check_result(r, n);
        if (r.status == NBD_DECODE_OK) {
            for (uint32_t k = 0; k < bsv.n_extents; k++) {
                g_assert_cmpuint(nbd_block_status_extent(&bsv, k).length, !=, 0);
            }
        }
    }
    r = nbd_decode_block_status_payload(p, n, &bsp);
    check_result(r, n);
    if (r.status == NBD_DECODE_OK) {
        NBDRequestLimits l = default_limits();
        l.n_contexts = (uint32_t) (aux & 7);
        NBDRequest breq = { .type = NBD_CMD_BLOCK_STATUS, .offset = aux >> 8 };
        (void) nbd_block_status_payload_validate(&breq, &bsp, &l);
    }
}

static void test_fuzz_random(void)
{
    uint8_t scratch[512];

    rng_state = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rng() % sizeof(scratch);
        if (iter % 4 == 0) {
            n %= 40;   /* short inputs are where the boundaries are */
        }
        for (size_t i = 0; i < n; i++) {
            scratch[i] = (uint8_t) rng();
        }
        /* Bias toward plausible prefixes so decoders get past the magic. */
        static const uint32_t magics[] = {
            NBD_REQUEST_MAGIC, NBD_EXTENDED_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC,
            NBD_STRUCTURED_REPLY_MAGIC, NBD_EXTENDED_REPLY_MAGIC,
        };
        if (n >= 4 && iter % 3 == 0) {
            nbd_store_be32(scratch, magics[rng() % G_N_ELEMENTS(magics)]);
        }
        if (n >= 4 && iter % 5 == 1) {
            /* Small length prefixes make the string walkers go deep. */
            nbd_store_be32(scratch, (uint32_t) (rng() % (n + 1)));
        }
        uint8_t *p = exact_copy(scratch, n);
        fuzz_one(p, n, rng());
        free(p);
    }
}

static void test_fuzz_mutate(void)
{
    static const struct { const uint8_t *data; size_t len; } seeds[] = {
        { greeting_vec, sizeof(greeting_vec) },
        { opt_header_vec, sizeof(opt_header_vec) },
        { opt_reply_ack_vec, sizeof(opt_reply_ack_vec) },
        { info_go_vec, sizeof(info_go_vec) },
        { meta_vec, sizeof(meta_vec) },
        { req_compact_vec, sizeof(req_compact_vec) },
        { req_ext_vec, sizeof(req_ext_vec) },
        { simple_reply_vec, sizeof(simple_reply_vec) },
        { structured_reply_vec, sizeof(structured_reply_vec) },
        { extended_reply_vec, sizeof(extended_reply_vec) },
    };
    uint8_t scratch[128];

    rng_state = 0x0123456789abcdefull;
    for (size_t s = 0; s < G_N_ELEMENTS(seeds); s++) {
        for (int iter = 0; iter < 2000; iter++) {
            size_t n = seeds[s].len;
            memcpy(scratch, seeds[s].data, n);
            int flips = 1 + (int) (rng() % 4);
            for (int f = 0; f < flips; f++) {
                scratch[rng() % n] ^= (uint8_t) (1u << (rng() % 8));
            }
            /* Sometimes cut it short or grow it with junk. */
            uint64_t shape = rng() % 4;
            if (shape == 0) {
                n = rng() % (n + 1);
            } else if (shape == 1) {
                size_t extra = rng() % (sizeof(scratch) - n);
                for (size_t i = 0; i < extra; i++) {
                    scratch[n + i] = (uint8_t) rng();
                }
                n += extra;
            }
            uint8_t *p = exact_copy(scratch, n);
            fuzz_one(p, n, rng());
            free(p);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/fuzz/random", test_fuzz_random);
    g_test_add_func("/nbd/codec/fuzz/mutate", test_fuzz_mutate);

    return g_test_run();
}
