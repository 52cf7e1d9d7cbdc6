/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small write-through cache of cluster-sized metadata tables (L2 tables,
 * refcount blocks): a fixed number of slots, least-recently-used eviction,
 * a hash from file offset to slot. Tables are allocated when a slot is first
 * used, so memory follows what the image touches, never what the header
 * claims. Writers update a cached table and write the changed bytes at once,
 * so evicting never writes. The caller holds whatever lock guards the cache.
 */
#include "block/qcow2-int.h"

void qcow2_cache_init(Qcow2Cache *c, size_t table_size, guint nslots)
{
    c->table_size = table_size;
    c->nslots = nslots;
    c->slots = g_new0(Qcow2CacheSlot, nslots);
    c->index = g_hash_table_new(g_int64_hash, g_int64_equal);
    c->tick = 0;
}

void qcow2_cache_clear(Qcow2Cache *c)
{
    for (guint i = 0; i < c->nslots; i++) {
        g_free(c->slots[i].table);
    }
    g_free(c->slots);
    g_hash_table_destroy(c->index);
    c->slots = NULL;
}

static Qcow2CacheSlot *find(Qcow2Cache *c, uint64_t offset)
{
    gpointer v = g_hash_table_lookup(c->index, &offset);

    return v ? &c->slots[GPOINTER_TO_UINT(v) - 1] : NULL;
}

/* The slot to reuse: an empty one, else the least recently used. */
static Qcow2CacheSlot *victim(Qcow2Cache *c)
{
    Qcow2CacheSlot *best = &c->slots[0];

    for (guint i = 0; i < c->nslots; i++) {
        if (!c->slots[i].offset) {
            best = &c->slots[i];
            break;
        }
        if (c->slots[i].last_used < best->last_used) {
            best = &c->slots[i];
        }
    }
    if (best->offset) {
        g_hash_table_remove(c->index, &best->offset);
        best->offset = 0;
    }
    if (!best->table) {
        best->table = g_malloc(c->table_size);
    }
    return best;
}

static void install(Qcow2Cache *c, Qcow2CacheSlot *slot, uint64_t offset)
{
    slot->offset = offset;
    slot->last_used = ++c->tick;
    /* The key lives in the slot, so it stays valid as long as the entry. */
    g_hash_table_insert(c->index, &slot->offset,
                        GUINT_TO_POINTER((guint) (slot - c->slots) + 1));
}

uint8_t *qcow2_cache_get(Qcow2 *s, Qcow2Cache *c, uint64_t offset, GError **errp)
{
    Qcow2CacheSlot *slot = find(c, offset);

    if (slot) {
        slot->last_used = ++c->tick;
        return slot->table;
    }
    slot = victim(c);
    if (qcow2_pread(s, offset, slot->table, c->table_size, errp) < 0) {
        return NULL;
    }
    install(c, slot, offset);
    return slot->table;
}

uint8_t *qcow2_cache_get_empty(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheSlot *slot = find(c, offset);

    if (!slot) {
        slot = victim(c);
        install(c, slot, offset);
    }
    slot->last_used = ++c->tick;
    return slot->table;
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheSlot *slot = find(c, offset);

    if (slot) {
        g_hash_table_remove(c->index, &slot->offset);
        slot->offset = 0;
        slot->last_used = 0;
    }
}

uint8_t *qcow2_cache_peek(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheSlot *slot = find(c, offset);

    if (!slot) {
        return NULL;
    }
    slot->last_used = ++c->tick;
    return slot->table;
}
