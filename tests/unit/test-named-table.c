/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of util/named-table.c: a static table before its first add,
 * lookup by name (NULL matches nothing), refusal of a taken name, removal
 * that keeps the order of the rest, re-adding after removal, walks and
 * snapshots in creation order (a snapshot outlives changes to the table),
 * and clearing for reuse.
 */
#include "util/named-table.h"

#include <string.h>

typedef struct {
    char name[16];
    int n;
} Thing;

static void check_order(const BerthNamedTable *t, const int *want, guint len)
{
    g_assert_cmpuint(berth_named_table_size(t), ==, len);
    for (guint i = 0; i < len; i++) {
        const Thing *th = berth_named_table_nth(t, i);
        g_assert_nonnull(th);
        g_assert_cmpint(th->n, ==, want[i]);
        g_assert_true(berth_named_table_find(t, th->name) == th);
    }
    g_assert_null(berth_named_table_nth(t, len));
    const Thing *newest = berth_named_table_newest(t);
    if (len) {
        g_assert_cmpint(newest->n, ==, want[len - 1]);
    } else {
        g_assert_null(newest);
    }
}

static void test_empty(void)
{
    static BerthNamedTable t = BERTH_NAMED_TABLE_INIT;
    g_assert_null(berth_named_table_find(&t, "a"));
    g_assert_null(berth_named_table_find(&t, NULL));
    g_assert_null(berth_named_table_remove(&t, "a"));
    g_assert_null(berth_named_table_newest(&t));
    g_assert_null(berth_named_table_nth(&t, 0));
    g_assert_cmpuint(berth_named_table_size(&t), ==, 0);
    g_autoptr(GPtrArray) snap = berth_named_table_snapshot(&t, NULL, NULL);
    g_assert_cmpuint(snap->len, ==, 0);
    berth_named_table_clear(&t);
}

static void test_add_find_remove(void)
{
    BerthNamedTable t = BERTH_NAMED_TABLE_INIT;
    Thing th[5];
    for (int i = 0; i < 5; i++) {
        g_snprintf(th[i].name, sizeof(th[i].name), "t%d", i);
        th[i].n = i;
        g_assert_true(berth_named_table_add(&t, th[i].name, &th[i]));
    }
    check_order(&t, (const int[]) { 0, 1, 2, 3, 4 }, 5);
    g_assert_null(berth_named_table_find(&t, NULL));
    g_assert_null(berth_named_table_find(&t, "t5"));
    g_assert_null(berth_named_table_find(&t, "T1"));

    /* A taken name is refused and the first entry stays. */
    Thing dup = { .name = "t2", .n = 99 };
    g_assert_false(berth_named_table_add(&t, dup.name, &dup));
    g_assert_true(berth_named_table_find(&t, "t2") == &th[2]);
    check_order(&t, (const int[]) { 0, 1, 2, 3, 4 }, 5);

    /* Removal from the middle, the front and the back. */
    g_assert_true(berth_named_table_remove(&t, "t2") == &th[2]);
    g_assert_null(berth_named_table_find(&t, "t2"));
    g_assert_null(berth_named_table_remove(&t, "t2"));
    check_order(&t, (const int[]) { 0, 1, 3, 4 }, 4);
    g_assert_true(berth_named_table_remove(&t, "t0") == &th[0]);
    g_assert_true(berth_named_table_remove(&t, "t4") == &th[4]);
    check_order(&t, (const int[]) { 1, 3 }, 2);

    /* Back again: last in order. The name may now be taken by another. */
    g_assert_true(berth_named_table_add(&t, dup.name, &dup));
    g_assert_true(berth_named_table_add(&t, th[0].name, &th[0]));
    check_order(&t, (const int[]) { 1, 3, 99, 0 }, 4);
    berth_named_table_clear(&t);
    g_assert_cmpuint(berth_named_table_size(&t), ==, 0);
    g_assert_null(berth_named_table_find(&t, "t1"));

    /* Usable after clearing. */
    g_assert_true(berth_named_table_add(&t, th[3].name, &th[3]));
    check_order(&t, (const int[]) { 3 }, 1);
    berth_named_table_clear(&t);
}

static void sum_in_order(gpointer value, gpointer opaque)
{
    GString *s = opaque;
    g_string_append_printf(s, "%d,", ((Thing *) value)->n);
}

static gpointer copy_name(gpointer value)
{
    return g_strdup(((Thing *) value)->name);
}

static void test_walks(void)
{
    BerthNamedTable t = BERTH_NAMED_TABLE_INIT;
    Thing th[1000];
    for (int i = 0; i < 1000; i++) {
        /* Names that do not sort like their order. */
        g_snprintf(th[i].name, sizeof(th[i].name), "n%d", (i * 7919) % 1000);
        th[i].n = i;
        g_assert_true(berth_named_table_add(&t, th[i].name, &th[i]));
    }
    g_autoptr(GString) seen = g_string_new(NULL);
    g_autoptr(GString) want = g_string_new(NULL);
    berth_named_table_foreach(&t, sum_in_order, seen);
    for (int i = 0; i < 1000; i++) {
        g_string_append_printf(want, "%d,", i);
    }
    g_assert_cmpstr(seen->str, ==, want->str);

    /* Snapshots: of the values, and of copies; both outlive removals. */
    g_autoptr(GPtrArray) values = berth_named_table_snapshot(&t, NULL, NULL);
    g_autoptr(GPtrArray) names = berth_named_table_snapshot(&t, copy_name, g_free);
    for (int i = 0; i < 1000; i += 2) {
        g_assert_true(berth_named_table_remove(&t, th[i].name) == &th[i]);
    }
    g_assert_cmpuint(berth_named_table_size(&t), ==, 500);
    g_assert_cmpuint(values->len, ==, 1000);
    g_assert_cmpuint(names->len, ==, 1000);
    for (guint i = 0; i < 1000; i++) {
        g_assert_true(values->pdata[i] == &th[i]);
        g_assert_cmpstr(names->pdata[i], ==, th[i].name);
        g_assert_true(names->pdata[i] != th[i].name);
    }
    for (guint i = 0; i < 500; i++) {
        g_assert_true(berth_named_table_nth(&t, i) == &th[2 * i + 1]);
    }

    /* Newest first, as the registries delete everything. */
    int expect = 999;
    Thing *newest;
    while ((newest = berth_named_table_newest(&t))) {
        g_assert_cmpint(newest->n, ==, expect);
        g_assert_true(berth_named_table_remove(&t, newest->name) == newest);
        expect -= 2;
    }
    g_assert_cmpint(expect, ==, -1);
    berth_named_table_clear(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/util/named-table/empty", test_empty);
    g_test_add_func("/util/named-table/add-find-remove", test_add_find_remove);
    g_test_add_func("/util/named-table/walks", test_walks);
    return g_test_run();
}
