/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the request-rule table (nbd/proto/rules.c): the rows say
 * what the spec says about each command and flag, and the server's
 * nbd_request_validate() and the client's nbd_request_check() reach the same
 * verdict, with the same message, for every command × flag × transmission
 * flag × reply mode combination; where the table lets the two ends differ,
 * they differ exactly there.  The errno each end reports follows from the
 * kind of rule that refused.
 */
#include "nbd-codec-test-util.h"

/* Transmission flags that enable something; the matrix runs over all subsets. */
static const uint16_t feature_tx_flags[] = {
    NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM,
    NBD_FLAG_SEND_WRITE_ZEROES, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_CACHE,
    NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_BLOCK_STAT_PAYLOAD,
};

static uint16_t tx_flags_of_subset(unsigned subset)
{
    uint16_t tx = NBD_FLAG_HAS_FLAGS;
    for (size_t i = 0; i < G_N_ELEMENTS(feature_tx_flags); i++) {
        if (subset & (1u << i)) {
            tx |= feature_tx_flags[i];
        }
    }
    return tx;
}

/* ---------------------------------------------------------------------
 * The table against the specification
 * --------------------------------------------------------------------- */

static void test_command_rows(void)
{
    static const struct {
        uint16_t type;
        uint16_t tx_flag;
        bool is_write;
        NBDPayloadForm payload;
    } spec[] = {
        { NBD_CMD_READ, 0, false, NBD_PAYLOAD_FORM_NONE },
        { NBD_CMD_WRITE, 0, true, NBD_PAYLOAD_FORM_WRITE },
        { NBD_CMD_FLUSH, NBD_FLAG_SEND_FLUSH, false, NBD_PAYLOAD_FORM_NONE },
        { NBD_CMD_TRIM, NBD_FLAG_SEND_TRIM, true, NBD_PAYLOAD_FORM_NONE },
        { NBD_CMD_CACHE, NBD_FLAG_SEND_CACHE, false, NBD_PAYLOAD_FORM_NONE },
        { NBD_CMD_WRITE_ZEROES, NBD_FLAG_SEND_WRITE_ZEROES, true, NBD_PAYLOAD_FORM_NONE },
        { NBD_CMD_BLOCK_STATUS, 0, false, NBD_PAYLOAD_FORM_BLOCK_STATUS },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(spec); i++) {
        const NBDCommandRule *c = nbd_command_rule(spec[i].type);
        g_assert_nonnull(c);
        g_assert_true(c->implemented);
        g_assert_cmphex(c->tx_flag, ==, spec[i].tx_flag);
        g_assert_cmpint(c->is_write, ==, spec[i].is_write);
        g_assert_cmpint(c->payload, ==, spec[i].payload);
        /* FUA is valid on every command; only known flags appear. */
        g_assert_true(c->flags & NBD_CMD_FLAG_FUA);
        g_assert_cmphex(c->flags & ~NBD_CMD_FLAG_KNOWN, ==, 0);
        /* PAYLOAD_LEN exactly where a payload can follow. */
        g_assert_cmpint(!!(c->flags & NBD_CMD_FLAG_PAYLOAD_LEN), ==,
                        c->payload != NBD_PAYLOAD_FORM_NONE);
        g_assert_cmpstr(c->name, ==, nbd_cmd_name(spec[i].type));
        g_assert_true(g_str_has_prefix(c->unadvertised, c->name + strlen("NBD_CMD_")));
    }
    const NBDCommandRule *bs = nbd_command_rule(NBD_CMD_BLOCK_STATUS);
    g_assert_cmpint(bs->min_mode, ==, NBD_MODE_STRUCTURED);
    g_assert_true(bs->needs_context);
    g_assert_cmphex(bs->payload_tx_flag, ==, NBD_FLAG_BLOCK_STAT_PAYLOAD);
    /* Writes past the end are ENOSPC; a TRIM past the end is EINVAL. */
    g_assert_true(nbd_command_rule(NBD_CMD_WRITE)->enospc_past_end);
    g_assert_true(nbd_command_rule(NBD_CMD_WRITE_ZEROES)->enospc_past_end);
    g_assert_false(nbd_command_rule(NBD_CMD_TRIM)->enospc_past_end);
    /* Named but not served; not named at all. */
    g_assert_false(nbd_command_rule(NBD_CMD_RESIZE)->implemented);
    g_assert_cmpstr(nbd_cmd_name(NBD_CMD_RESIZE), ==, "NBD_CMD_RESIZE");
    g_assert_null(nbd_command_rule(9));
    g_assert_null(nbd_command_rule(0xffff));
}

static void test_flag_rows(void)
{
    static const struct {
        uint16_t flag;
        uint16_t tx_flag;
        NBDMode min_mode;
    } spec[] = {
        { NBD_CMD_FLAG_FUA, NBD_FLAG_SEND_FUA, NBD_MODE_SIMPLE },
        { NBD_CMD_FLAG_NO_HOLE, NBD_FLAG_SEND_WRITE_ZEROES, NBD_MODE_SIMPLE },
        { NBD_CMD_FLAG_DF, NBD_FLAG_SEND_DF, NBD_MODE_STRUCTURED },
        { NBD_CMD_FLAG_REQ_ONE, 0, NBD_MODE_SIMPLE },
        { NBD_CMD_FLAG_FAST_ZERO, NBD_FLAG_SEND_FAST_ZERO, NBD_MODE_SIMPLE },
        { NBD_CMD_FLAG_PAYLOAD_LEN, 0, NBD_MODE_EXTENDED },
    };
    uint16_t seen = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(spec); i++) {
        const NBDFlagRule *f = nbd_flag_rule(spec[i].flag);
        g_assert_nonnull(f);
        g_assert_cmphex(f->tx_flag, ==, spec[i].tx_flag);
        g_assert_cmpint(f->min_mode, ==, spec[i].min_mode);
        g_assert_true(g_str_has_prefix(f->misplaced, f->name));
        g_assert_true(g_str_has_prefix(f->unadvertised, f->name));
        if (f->min_mode != NBD_MODE_SIMPLE) {
            g_assert_true(g_str_has_prefix(f->needs_mode, f->name));
        }
        seen |= f->flag;
    }
    g_assert_cmphex(seen, ==, NBD_CMD_FLAG_KNOWN);
    g_assert_null(nbd_flag_rule(1 << 6));
    g_assert_null(nbd_flag_rule(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF));
    g_assert_null(nbd_flag_rule(0));

    /* "only valid with X" names exactly the one command that takes the flag. */
    for (uint16_t bit = 1; bit & NBD_CMD_FLAG_KNOWN; bit <<= 1) {
        const NBDFlagRule *f = nbd_flag_rule(bit);
        const char *only = strstr(f->misplaced, "only valid with ");
        if (!only) {
            continue;
        }
        only += strlen("only valid with ");
        int n = 0;
        for (uint16_t t = 0; t <= NBD_CMD_RESIZE; t++) {
            const NBDCommandRule *c = nbd_command_rule(t);
            if (c && c->implemented && t != NBD_CMD_DISC && (c->flags & bit)) {
                g_assert_cmpstr(c->name + strlen("NBD_CMD_"), ==, only);
                n++;
            }
        }
        g_assert_cmpint(n, ==, 1);
    }
}

/* ---------------------------------------------------------------------
 * Server and client agree
 * --------------------------------------------------------------------- */

/* The errors the header promises for each kind of refusal. */
static int client_errno_of(NBDRefusal kind)
{
    switch (kind) {
    case NBD_REFUSAL_NONE:           return 0;
    case NBD_REFUSAL_READ_ONLY:      return EPERM;
    case NBD_REFUSAL_NOT_NEGOTIATED: return ENOTSUP;
    case NBD_REFUSAL_TOO_LONG:       return EOVERFLOW;
    default:                         return EINVAL;
    }
}

static uint32_t server_error_of(NBDRefusal kind, const NBDRequest *req)
{
    switch (kind) {
    case NBD_REFUSAL_NONE:
        return NBD_SUCCESS;
    case NBD_REFUSAL_READ_ONLY:
        return NBD_EPERM;
    case NBD_REFUSAL_OUT_OF_RANGE:
        return nbd_command_rule(req->type)->enospc_past_end ? NBD_ENOSPC : NBD_EINVAL;
    case NBD_REFUSAL_TOO_LONG:
        return req->type == NBD_CMD_READ && (req->flags & NBD_CMD_FLAG_DF)
            ? NBD_EOVERFLOW : NBD_EINVAL;
    default:
        return NBD_EINVAL;
    }
}

typedef struct Tally {
    unsigned long checked, accepted, lenient, server_only;
    unsigned long by_kind[NBD_REFUSAL_PAYLOAD_TOO_BIG + 1];
} Tally;

/*
 * One request at both ends.  The only differences allowed are the table's:
 * a served_unadvertised command is judged by the server as if advertised,
 * and the server's own bounds (rule 1, SERVER_MAX_BLOCK) may refuse what a
 * client sends.
 */
static void check_both_ends(const NBDRequest *req, const NBDRequestLimits *lim, Tally *t)
{
    NBDRequestVerdict sv = nbd_request_validate(req, lim);
    const char *why = NULL;
    bool no_op = false;
    int ce = nbd_request_check(req, lim, &why, &no_op);
    const NBDCommandRule *cmd = nbd_command_rule(req->type);

    t->checked++;
    if (cmd && cmd->served_unadvertised && !(lim->tx_flags & cmd->tx_flag)) {
        NBDRequestLimits offered = *lim;
        offered.tx_flags |= cmd->tx_flag;
        const char *why2 = NULL;
        bool no_op2 = false;
        int ce2 = nbd_request_check(req, &offered, &why2, &no_op2);
        if (ce && why == cmd->unadvertised) {
            t->lenient++;
            g_assert_cmpint(ce, ==, ENOTSUP);
        }
        ce = ce2;
        why = why2;
        no_op = no_op2;
    }
    if (sv.refusal == NBD_REFUSAL_PAYLOAD_TOO_BIG) {
        /* The server's first rule, its own defence: it decides before any
         * shared rule, so the client's verdict is the shared rules' alone. */
        t->server_only++;
        return;
    }
    if (sv.refusal == NBD_REFUSAL_TOO_LONG && cmd &&
        cmd->bound == NBD_BOUND_SERVER_MAX_BLOCK && sv.message == cmd->too_long_block) {
        /* The server's last rule: every shared rule passed, so a client
         * sends it, as the spec allows. */
        g_assert_cmpint(ce, ==, 0);
        t->server_only++;
        return;
    }
    if (sv.refusal == NBD_REFUSAL_NONE) {
        if (ce != 0) {
            g_error("cmd %u flags 0x%x tx 0x%x mode %d: server accepts, client refuses: %s",
                    req->type, req->flags, lim->tx_flags, lim->mode, why);
        }
        g_assert_null(why);
        g_assert_cmpuint(sv.error, ==, NBD_SUCCESS);
        g_assert_cmpint(sv.no_op, ==, no_op);
        t->accepted++;
        return;
    }
    if (ce == 0) {
        g_error("cmd %u flags 0x%x tx 0x%x mode %d: client sends, server refuses: %s",
                req->type, req->flags, lim->tx_flags, lim->mode, sv.message);
    }
    g_assert_cmpstr(sv.message, ==, why);
    g_assert_cmpint(ce, ==, client_errno_of(sv.refusal));
    g_assert_cmpuint(sv.error, ==, server_error_of(sv.refusal, req));
    t->by_kind[sv.refusal]++;
}

static void test_ends_agree_on_commands_and_flags(void)
{
    static const uint16_t cmds[] = {
        NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_CACHE,
        NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS, NBD_CMD_RESIZE, 9, 0xffff,
    };
    static const uint16_t extra_flags[] = { 1 << 6, 1 << 15 };
    Tally t = { 0 };

    for (NBDMode mode = NBD_MODE_SIMPLE; mode <= NBD_MODE_EXTENDED; mode++) {
        for (unsigned sub = 0; sub < 1u << G_N_ELEMENTS(feature_tx_flags); sub++) {
            for (uint32_t nctx = 0; nctx <= 1; nctx++) {
                NBDRequestLimits lim = {
                    .mode = mode, .tx_flags = tx_flags_of_subset(sub),
                    .export_size = 1 << 20, .n_contexts = nctx,
                    .block_size_advertised = true, .min_block = 512,
                    .max_block = NBD_MAX_PAYLOAD, .max_payload = NBD_MAX_PAYLOAD,
                };
                for (size_t c = 0; c < G_N_ELEMENTS(cmds); c++) {
                    for (uint32_t f = 0; f < NBD_CMD_FLAG_KNOWN + 1u + 2; f++) {
                        uint16_t flags = f <= NBD_CMD_FLAG_KNOWN
                            ? (uint16_t) f : extra_flags[f - NBD_CMD_FLAG_KNOWN - 1];
                        for (uint64_t len = 0; len <= 4096; len += 4096) {
                            NBDRequest req = {
                                .type = cmds[c], .flags = flags, .cookie = 7,
                                .offset = cmds[c] == NBD_CMD_FLUSH ? 0 : 8192,
                                .length = len,
                            };
                            check_both_ends(&req, &lim, &t);
                        }
                    }
                }
            }
        }
    }
    g_test_message("%lu requests: %lu accepted by both, %lu only by the server (CACHE)",
                   t.checked, t.accepted, t.lenient);
    /* The matrix reached every verdict it can reach at these lengths. */
    g_assert_cmpuint(t.accepted, >, 0);
    g_assert_cmpuint(t.lenient, >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_MALFORMED], >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_READ_ONLY], >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_NOT_NEGOTIATED], >, 0);
}

static void test_ends_agree_on_ranges_and_lengths(void)
{
    static const uint16_t cmds[] = {
        NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES,
        NBD_CMD_BLOCK_STATUS,
    };
    static const uint16_t flag_sets[] = { 0, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO };
    const uint64_t size = 4 << 20, max = 1 << 20;
    const uint64_t values[] = {
        0, 1, 511, 512, 4096, max - 512, max, max + 512, size - 512, size, size + 512,
        (uint64_t) NBD_MAX_PAYLOAD + 512, UINT32_MAX, UINT64_MAX - 511,
    };
    Tally t = { 0 };

    for (NBDMode mode = NBD_MODE_SIMPLE; mode <= NBD_MODE_EXTENDED; mode++) {
        for (int advertised = 0; advertised <= 1; advertised++) {
            NBDRequestLimits lim = default_limits();
            lim.mode = mode;
            lim.export_size = size;
            lim.block_size_advertised = advertised;
            lim.min_block = 512;
            lim.max_block = (uint32_t) max;
            lim.max_payload = NBD_MAX_PAYLOAD;
            for (size_t c = 0; c < G_N_ELEMENTS(cmds); c++) {
                for (size_t f = 0; f < G_N_ELEMENTS(flag_sets); f++) {
                    for (size_t o = 0; o < G_N_ELEMENTS(values); o++) {
                        for (size_t l = 0; l < G_N_ELEMENTS(values); l++) {
                            NBDRequest req = {
                                .type = cmds[c], .flags = flag_sets[f],
                                .offset = values[o], .length = values[l],
                            };
                            if (mode == NBD_MODE_EXTENDED && cmds[c] == NBD_CMD_WRITE) {
                                req.flags |= NBD_CMD_FLAG_PAYLOAD_LEN;
                            }
                            check_both_ends(&req, &lim, &t);
                        }
                    }
                }
            }
        }
    }
    g_assert_cmpuint(t.accepted, >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_MALFORMED], >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_OUT_OF_RANGE], >, 0);
    g_assert_cmpuint(t.by_kind[NBD_REFUSAL_TOO_LONG], >, 0);
    g_assert_cmpuint(t.server_only, >, 0);
}

/* ---------------------------------------------------------------------
 * Order and errnos of particular rules
 * --------------------------------------------------------------------- */

static int client_check(uint16_t type, uint16_t flags, uint64_t offset, uint64_t length,
                        const NBDRequestLimits *lim, const char **why)
{
    NBDRequest r = { .type = type, .flags = flags, .offset = offset, .length = length };
    return nbd_request_check(&r, lim, why, NULL);
}

static NBDRequestVerdict server_check(uint16_t type, uint16_t flags, uint64_t offset,
                                      uint64_t length, const NBDRequestLimits *lim)
{
    NBDRequest r = { .type = type, .flags = flags, .offset = offset, .length = length };
    return nbd_request_validate(&r, lim);
}

static void test_order(void)
{
    NBDRequestLimits l = default_limits();
    const char *why;
    NBDRequestVerdict v;

    /* Read-only wins over a command the export never advertised. */
    l.tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
    g_assert_cmpint(client_check(NBD_CMD_TRIM, 0, 0, 512, &l, &why), ==, EPERM);
    g_assert_cmpstr(why, ==, "export is read-only");
    v = server_check(NBD_CMD_TRIM, 0, 0, 512, &l);
    g_assert_cmpuint(v.error, ==, NBD_EPERM);
    g_assert_cmpstr(v.message, ==, why);
    /* A malformed request is malformed whatever was advertised. */
    g_assert_cmpint(client_check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_DF, 0, 512, &l, &why), ==,
                    EINVAL);
    g_assert_cmpstr(why, ==, "DF flag is only valid with READ");
    /* Not advertised: ENOTSUP at the client, EINVAL from the server. */
    l.tx_flags = NBD_FLAG_HAS_FLAGS;
    g_assert_cmpint(client_check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &l, &why), ==,
                    ENOTSUP);
    g_assert_cmpstr(why, ==, "FUA flag was not advertised");
    g_assert_cmpuint(server_check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &l).error, ==,
                     NBD_EINVAL);
    /* CACHE: served unadvertised, but a client does not send it. */
    g_assert_cmpint(client_check(NBD_CMD_CACHE, 0, 0, 512, &l, &why), ==, ENOTSUP);
    g_assert_cmpstr(why, ==, "CACHE was not advertised");
    g_assert_cmpuint(server_check(NBD_CMD_CACHE, 0, 0, 512, &l).error, ==, NBD_SUCCESS);

    /* Without structured replies: DF is malformed, BLOCK_STATUS unavailable. */
    l = default_limits();
    l.mode = NBD_MODE_SIMPLE;
    g_assert_cmpint(client_check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l, &why), ==, EINVAL);
    g_assert_cmpstr(why, ==, "DF flag without structured replies");
    g_assert_cmpint(client_check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l, &why), ==, ENOTSUP);
    g_assert_cmpstr(why, ==, "BLOCK_STATUS needs structured replies or extended headers");
    l.mode = NBD_MODE_STRUCTURED;
    l.n_contexts = 0;
    g_assert_cmpint(client_check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l, &why), ==, ENOTSUP);
    g_assert_cmpstr(why, ==, "no metadata context was negotiated");
}

static void test_client_lengths(void)
{
    NBDRequestLimits l = default_limits();
    const char *why;
    bool no_op;

    l.export_size = 1ull << 40;
    l.block_size_advertised = true;
    l.min_block = 1;
    l.max_block = 1 << 20;
    l.max_payload = 1 << 20;
    /* Longer than the maximum block size: EOVERFLOW, saying which limit. */
    g_assert_cmpint(client_check(NBD_CMD_READ, 0, 0, (1 << 20) + 1, &l, &why), ==, EOVERFLOW);
    g_assert_cmpstr(why, ==, "READ length exceeds the maximum block size");
    g_assert_cmpint(client_check(NBD_CMD_WRITE, 0, 0, (1 << 20) + 1, &l, &why), ==, EOVERFLOW);
    /* A server's maximum larger than 32 MiB binds the client, not 32 MiB. */
    l.max_block = l.max_payload = 64u << 20;
    g_assert_cmpint(client_check(NBD_CMD_WRITE, 0, 0, 48u << 20, &l, &why), ==, 0);
    /* The server's buffer is its own: with 64 MiB it reads that payload;
     * past it, a compact header's payload is skipped, an extended one's
     * makes it hang up. */
    g_assert_cmpint(server_check(NBD_CMD_WRITE, 0, 0, 48u << 20, &l).payload, ==,
                    NBD_PAYLOAD_READ);
    g_assert_cmpint(server_check(NBD_CMD_WRITE, 0, 0, 65u << 20, &l).payload, ==,
                    NBD_PAYLOAD_DISCARD);
    /* Effect lengths may exceed it; a compact header cannot carry 2^32. */
    g_assert_cmpint(client_check(NBD_CMD_WRITE_ZEROES, 0, 0, 128u << 20, &l, &why), ==, 0);
    g_assert_cmpint(client_check(NBD_CMD_TRIM, 0, 0, 1ull << 32, &l, &why), ==, EOVERFLOW);
    g_assert_cmpstr(why, ==, "request length does not fit in 32 bits");
    l.mode = NBD_MODE_EXTENDED;
    g_assert_cmpint(client_check(NBD_CMD_TRIM, 0, 0, 1ull << 32, &l, &why), ==, 0);
    /* Past the end is EINVAL at the client, for reads and writes alike. */
    l.mode = NBD_MODE_STRUCTURED;
    l.export_size = 1 << 20;
    g_assert_cmpint(client_check(NBD_CMD_WRITE_ZEROES, 0, 4096, 1 << 20, &l, &why), ==, EINVAL);
    g_assert_cmpstr(why, ==, "request extends outside the export");
    /* Zero lengths: nothing to send, except BLOCK_STATUS, which is malformed. */
    NBDRequest r = { .type = NBD_CMD_READ, .offset = 4096 };
    g_assert_cmpint(nbd_request_check(&r, &l, &why, &no_op), ==, 0);
    g_assert_true(no_op);
    r.type = NBD_CMD_FLUSH;
    r.offset = 0;
    g_assert_cmpint(nbd_request_check(&r, &l, &why, &no_op), ==, 0);
    g_assert_false(no_op);
    r.type = NBD_CMD_BLOCK_STATUS;
    g_assert_cmpint(nbd_request_check(&r, &l, &why, &no_op), ==, EINVAL);
    g_assert_cmpstr(why, ==, "BLOCK_STATUS length must not be zero");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/rules/commands", test_command_rows);
    g_test_add_func("/nbd/codec/rules/flags", test_flag_rows);
    g_test_add_func("/nbd/codec/rules/ends-agree/commands-and-flags",
                    test_ends_agree_on_commands_and_flags);
    g_test_add_func("/nbd/codec/rules/ends-agree/ranges-and-lengths",
                    test_ends_agree_on_ranges_and_lengths);
    g_test_add_func("/nbd/codec/rules/order", test_order);
    g_test_add_func("/nbd/codec/rules/client-lengths", test_client_lengths);

    return g_test_run();
}
