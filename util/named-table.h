/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A registry of named things that also remembers the order they were added
 * in: the node, drive, export, object, chardev and command tables. Lookup
 * is by name through a hash table; walks, snapshots and "delete everything,
 * newest first" go by creation order.
 *
 * A table is a plain struct, usable as a static with BERTH_NAMED_TABLE_INIT;
 * it allocates on the first add. Names are borrowed: each must stay valid
 * and unchanged while its entry is in the table (usually it is a member of
 * the value). Values are borrowed too: whatever reference the registry
 * holds is the caller's business. A value is in a table at most once, and
 * is never NULL.
 *
 * Threads: none of its own; a table belongs to the thread that uses it (the
 * control plane's, for all of berth's registries).
 */
#ifndef BERTH_UTIL_NAMED_TABLE_H
#define BERTH_UTIL_NAMED_TABLE_H

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

typedef struct BerthNamedTable {
    GHashTable *by_name;        /* name -> value */
    GPtrArray *order;           /* the values, oldest first */
} BerthNamedTable;

#define BERTH_NAMED_TABLE_INIT { NULL, NULL }

/* The value named `name` (NULL matches nothing), or NULL. */
gpointer berth_named_table_find(const BerthNamedTable *t, const char *name);

/* Add `value` as `name`, last in order; false (and nothing done) if taken. */
bool berth_named_table_add(BerthNamedTable *t, const char *name, gpointer value);

/* Remove the entry named `name`: its value, or NULL if there was none. */
gpointer berth_named_table_remove(BerthNamedTable *t, const char *name);

guint berth_named_table_size(const BerthNamedTable *t);

/* The i-th value in creation order (0: oldest), or NULL past the end. */
gpointer berth_named_table_nth(const BerthNamedTable *t, guint i);

/* The newest value, or NULL when the table is empty. */
gpointer berth_named_table_newest(const BerthNamedTable *t);

/* fn(value, opaque) for each value, oldest first; fn must not change t. */
void berth_named_table_foreach(const BerthNamedTable *t, GFunc fn, gpointer opaque);

typedef gpointer (*BerthNamedTableCopyFunc)(gpointer value);

/*
 * A new array of copy(value) (or the values themselves when copy is NULL),
 * oldest first, that frees its elements with `free_fn` (may be NULL): for
 * walks whose callbacks may add or remove entries.
 */
GPtrArray *berth_named_table_snapshot(const BerthNamedTable *t, BerthNamedTableCopyFunc copy,
                                      GDestroyNotify free_fn);

/* Forget every entry (the values are left alone) and free the table's memory. */
void berth_named_table_clear(BerthNamedTable *t);

G_END_DECLS

#endif
