/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The named table of util/named-table.h: a hash table from name to value
 * beside an array of the values in creation order. Removal keeps the order
 * of the rest; it walks the array, which is fine for registries of tens or
 * hundreds of entries that change at the pace of monitor commands.
 */
#include "util/named-table.h"

gpointer berth_named_table_find(const BerthNamedTable *t, const char *name)
{
    return t->by_name && name ? g_hash_table_lookup(t->by_name, name) : NULL;
}

bool berth_named_table_add(BerthNamedTable *t, const char *name, gpointer value)
{
    g_return_val_if_fail(name != NULL && value != NULL, false);

    if (!t->by_name) {
        t->by_name = g_hash_table_new(g_str_hash, g_str_equal);
        t->order = g_ptr_array_new();
    }
    if (g_hash_table_contains(t->by_name, name)) {
        return false;
    }
    g_hash_table_insert(t->by_name, (gpointer) name, value);
    g_ptr_array_add(t->order, value);
    return true;
}

gpointer berth_named_table_remove(BerthNamedTable *t, const char *name)
{
    gpointer value = berth_named_table_find(t, name);

    if (value) {
        g_hash_table_remove(t->by_name, name);
        g_ptr_array_remove(t->order, value);
    }
    return value;
}

guint berth_named_table_size(const BerthNamedTable *t)
{
    return t->order ? t->order->len : 0;
}

gpointer berth_named_table_nth(const BerthNamedTable *t, guint i)
{
    return i < berth_named_table_size(t) ? g_ptr_array_index(t->order, i) : NULL;
}

gpointer berth_named_table_newest(const BerthNamedTable *t)
{
    guint n = berth_named_table_size(t);

    return n ? g_ptr_array_index(t->order, n - 1) : NULL;
}

void berth_named_table_foreach(const BerthNamedTable *t, GFunc fn, gpointer opaque)
{
    for (guint i = 0; i < berth_named_table_size(t); i++) {
        fn(g_ptr_array_index(t->order, i), opaque);
    }
}

GPtrArray *berth_named_table_snapshot(const BerthNamedTable *t, BerthNamedTableCopyFunc copy,
                                      GDestroyNotify free_fn)
{
    guint n = berth_named_table_size(t);
    GPtrArray *snap = g_ptr_array_new_full(n, free_fn);

    for (guint i = 0; i < n; i++) {
        gpointer value = g_ptr_array_index(t->order, i);
        g_ptr_array_add(snap, copy ? copy(value) : value);
    }
    return snap;
}

void berth_named_table_clear(BerthNamedTable *t)
{
    g_clear_pointer(&t->by_name, g_hash_table_unref);
    g_clear_pointer(&t->order, g_ptr_array_unref);
}
