/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of util/id.c: QEMU's identifier rule, at each position and
 * for every byte value.
 */
#include "util/id.h"

#include <glib.h>

static void test_examples(void)
{
    static const char *const good[] = {
        "a", "Z", "node0", "disk-1", "io.thread_2", "a-.-_", "x123456789", NULL
    };
    static const char *const bad[] = {
        "", "0node", "-a", ".a", "_a", "a b", "a/b", "a:b", "a,b", "a=b", "a\tb",
        "a\xc3\xa9", "\xc3\xa9t\xc3\xa9", "node!", NULL
    };
    for (int i = 0; good[i]; i++) {
        g_assert_true(berth_id_wellformed(good[i]));
    }
    for (int i = 0; bad[i]; i++) {
        g_assert_false(berth_id_wellformed(bad[i]));
    }
    g_assert_false(berth_id_wellformed(NULL));
}

static void test_every_byte(void)
{
    for (int c = 1; c < 256; c++) {
        char first[2] = { (char) c, 0 };
        char later[3] = { 'a', (char) c, 0 };
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        g_assert_cmpint(berth_id_wellformed(first), ==, letter);
        g_assert_cmpint(berth_id_wellformed(later), ==,
                        letter || digit || c == '-' || c == '.' || c == '_');
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/util/id/examples", test_examples);
    g_test_add_func("/util/id/every-byte", test_every_byte);
    return g_test_run();
}
