/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blkdebug's rule engine (block/blkdebug-rules.c) on its own: set-state
 * chains, the state each rule sees, active rules that outlive their state,
 * once and errno=0, sectors and iotypes, and the decoding errors.
 */
#include "block/blkdebug-int.h"

#include <errno.h>
#include <string.h>

/* Rules from two JSON lists (either may be NULL); asserts they decode. */
static void rules_from(BlkdebugRules *r, const char *inject, const char *set_state)
{
    g_autoptr(GError) err = NULL;
    json_object *ij = inject ? json_tokener_parse(inject) : NULL;
    json_object *sj = set_state ? json_tokener_parse(set_state) : NULL;

    g_assert_true(!inject || ij);
    g_assert_true(!set_state || sj);
    g_assert_true(blkdebug_rules_init(r, ij, sj, false, &err));
    g_assert_no_error(err);
    json_object_put(ij);
    json_object_put(sj);
}

static int write_at(BlkdebugRules *r, uint64_t offset)
{
    return blkdebug_rules_request(r, BLKDEBUG_IO_WRITE, offset, 4096).error;
}

static int read_at(BlkdebugRules *r, uint64_t offset)
{
    return blkdebug_rules_request(r, BLKDEBUG_IO_READ, offset, 4096).error;
}

#define CHAIN "[{\"event\": \"pwritev\", \"state\": 1, \"new_state\": 2}," \
              " {\"event\": \"pwritev\", \"state\": 2, \"new_state\": 3}," \
              " {\"event\": \"pwritev\", \"state\": 3, \"new_state\": 4}]"

static void test_third_write_fails_once(void)
{
    BlkdebugRules r;
    rules_from(&r, "[{\"event\": \"pwritev\", \"state\": 3, \"iotype\": \"write\","
                   " \"once\": true}]", CHAIN);
    g_assert_cmpint(blkdebug_rules_state(&r), ==, 1);
    int want[] = { 0, 0, EIO, 0, 0, 0 };
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        g_assert_cmpint(write_at(&r, 4096 * i), ==, want[i]);
    }
    g_assert_cmpint(blkdebug_rules_state(&r), ==, 4);
    /* Reads fire no pwritev: they neither move the state nor fail. */
    g_assert_cmpint(read_at(&r, 0), ==, 0);
    g_assert_cmpint(blkdebug_rules_state(&r), ==, 4);
    blkdebug_rules_clear(&r);
}

static void test_active_rule_outlives_its_state(void)
{
    BlkdebugRules r;
    rules_from(&r, "[{\"event\": \"pwritev\", \"state\": 2, \"errno\": 28},"
                   " {\"event\": \"pwritev\", \"state\": 5, \"errno\": 0}]",
               "[{\"event\": \"pwritev\", \"state\": 1, \"new_state\": 2},"
               " {\"event\": \"pwritev\", \"state\": 2, \"new_state\": 3},"
               " {\"event\": \"pwritev\", \"state\": 3, \"new_state\": 4},"
               " {\"event\": \"pwritev\", \"state\": 4, \"new_state\": 5}]");
    g_assert_cmpint(write_at(&r, 0), ==, 0);
    g_assert_cmpint(read_at(&r, 0), ==, 0);
    g_assert_cmpint(write_at(&r, 0), ==, ENOSPC);      /* state 2: the rule acts */
    g_assert_cmpint(read_at(&r, 0), ==, ENOSPC);       /* default iotype: reads too */
    g_assert_cmpint(write_at(&r, 0), ==, ENOSPC);      /* state 3: still active */
    g_assert_cmpint(write_at(&r, 0), ==, ENOSPC);      /* state 4 */
    g_assert_cmpint(write_at(&r, 0), ==, 0);           /* state 5: errno 0 replaces it */
    g_assert_cmpint(read_at(&r, 0), ==, 0);
    /* Block status is not among the default iotypes. */
    g_assert_cmpint(blkdebug_rules_request(&r, BLKDEBUG_IO_BLOCK_STATUS, 0, 4096).error, ==, 0);
    blkdebug_rules_clear(&r);
}

static void test_state_seen_and_first_set_state_wins(void)
{
    BlkdebugRules r;
    rules_from(&r, "[{\"event\": \"pwritev\", \"state\": 7, \"errno\": 5},"
                   " {\"event\": \"pwritev\", \"state\": 9, \"errno\": 28}]",
               "[{\"event\": \"pwritev\", \"new_state\": 7},"
               " {\"event\": \"pwritev\", \"state\": 1, \"new_state\": 9}]");
    g_assert_cmpint(write_at(&r, 0), ==, 0);           /* saw state 1 */
    g_assert_cmpint(blkdebug_rules_state(&r), ==, 7);
    g_assert_cmpint(write_at(&r, 0), ==, EIO);
    g_assert_cmpint(blkdebug_rules_state(&r), ==, 7);
    blkdebug_rules_clear(&r);
}

static void test_events_in_order_and_sectors(void)
{
    BlkdebugRules r;
    /* 'none' fires first, then the type's own events: read_aio's rule
     * replaces none's for a read; a write keeps none's. */
    rules_from(&r, "[{\"event\": \"none\", \"iotype\": \"write\", \"errno\": 30,"
                   "  \"sector\": 8},"
                   " {\"event\": \"read_aio\", \"errno\": 5, \"sector\": 0, \"once\": true},"
                   " {\"event\": \"flush_to_disk\", \"iotype\": \"flush\", \"sector\": 0}]",
               NULL);
    g_assert_cmpint(write_at(&r, 0), ==, 0);           /* sector 8 not covered */
    g_assert_cmpint(write_at(&r, 4096), ==, EROFS);
    g_assert_cmpint(read_at(&r, 4096), ==, 0);
    g_assert_cmpint(read_at(&r, 0), ==, EIO);
    g_assert_cmpint(read_at(&r, 0), ==, 0);            /* once: gone */
    /* A rule with a sector never matches a flush. */
    g_assert_cmpint(blkdebug_rules_request(&r, BLKDEBUG_IO_FLUSH, 0, 0).error, ==, 0);
    blkdebug_rules_clear(&r);
}

static void test_immediately_reported(void)
{
    BlkdebugRules r;
    rules_from(&r, "[{\"event\": \"pwritev\", \"immediately\": true}]", NULL);
    BlkdebugVerdict v = blkdebug_rules_request(&r, BLKDEBUG_IO_WRITE, 0, 512);
    g_assert_cmpint(v.error, ==, EIO);
    g_assert_true(v.immediately);
    blkdebug_rules_clear(&r);
}

static void test_decoding_errors(void)
{
    static const struct {
        const char *inject, *set_state, *message;
    } cases[] = {
        { NULL, "[{\"event\": \"pwritev\"}]", "'set-state[0].new_state' is missing" },
        { NULL, "[{\"event\": \"pwritev\", \"new_state\": 2, \"x\": 1}]",
          "'set-state[0].x' is unexpected" },
        { NULL, "{}", "Invalid parameter type for 'set-state', expected: array" },
        { NULL, "[{\"event\": \"l2_load\", \"new_state\": 2}]",
          "blkdebug event 'l2_load' is not supported by berth" },
        { "[{\"event\": \"none\", \"errno\": 4096}]", NULL,
          "inject-error[0].errno must be between 0 and 4095" },
        { "[{\"event\": \"pwritev\"}, {\"event\": \"none\", \"y\": 1}]", NULL,
          "'inject-error[1].y' is unexpected" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        BlkdebugRules r;
        g_autoptr(GError) err = NULL;
        json_object *ij = cases[i].inject ? json_tokener_parse(cases[i].inject) : NULL;
        json_object *sj = cases[i].set_state ? json_tokener_parse(cases[i].set_state) : NULL;
        g_assert_false(blkdebug_rules_init(&r, ij, sj, false, &err));
        g_assert_nonnull(err);
        if (!strstr(err->message, cases[i].message)) {
            g_error("case %zu: '%s' lacks '%s'", i, err->message, cases[i].message);
        }
        json_object_put(ij);
        json_object_put(sj);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/blkdebug/third-write-fails-once", test_third_write_fails_once);
    g_test_add_func("/blkdebug/active-rule-outlives-its-state",
                    test_active_rule_outlives_its_state);
    g_test_add_func("/blkdebug/state-seen-and-first-set-state-wins",
                    test_state_seen_and_first_set_state_wins);
    g_test_add_func("/blkdebug/events-in-order-and-sectors", test_events_in_order_and_sectors);
    g_test_add_func("/blkdebug/immediately", test_immediately_reported);
    g_test_add_func("/blkdebug/decoding-errors", test_decoding_errors);
    return g_test_run();
}
