/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * I/O accounting per node and query-blockstats. Every request is counted
 * once, where it completes (bdrv_request_complete(), in whatever thread the
 * driver finishes it), with relaxed atomic adds, so no lock is taken on the
 * data path and counters from several threads add up exactly. The rules
 * are QEMU's block accounting: successful operations add to *_operations,
 * *_bytes and *_total_time_ns; failed ones to failed_*_operations (and,
 * as account_failed says, to the time and the last access); requests the
 * block layer refused before the driver saw them (beyond the end, a bad
 * I/O vector, a partial write of a guarded block 0) to invalid_*. Write
 * zeroes counts as a write of its length, discard as unmap; cache and
 * block-status requests are not counted, as QEMU has no class for them.
 *
 * query-blockstats answers in QEMU's shape (BlockStats/BlockDeviceStats):
 * with query-nodes, one entry per node; without, one per drive, showing
 * its medium's counters (berth counts where the I/O happens, the node).
 */
#include "block/block-int.h"
#include "berth/block/block-backend.h"
#include "berth/util/qmp-command.h"

static int acct_class(BdrvOp op)
{
    switch (op) {
    case BDRV_OP_READ:
        return BDRV_ACCT_READ;
    case BDRV_OP_WRITE:
    case BDRV_OP_WRITE_ZEROES:
        return BDRV_ACCT_WRITE;
    case BDRV_OP_FLUSH:
        return BDRV_ACCT_FLUSH;
    case BDRV_OP_DISCARD:
        return BDRV_ACCT_UNMAP;
    default:
        return -1;
    }
}

static void add(guint64 *counter, guint64 value)
{
    __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}

static void raise_to(guint64 *counter, guint64 value)
{
    guint64 old = __atomic_load_n(counter, __ATOMIC_RELAXED);

    while (old < value &&
           !__atomic_compare_exchange_n(counter, &old, value, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
}

void bdrv_stats_request_start(BdrvRequest *req)
{
    req->acct = acct_class(req->op);
    if (req->acct >= 0) {
        req->start_ns = g_get_monotonic_time() * 1000;
    }
}

void bdrv_stats_request_done(BdrvRequest *req, int ret)
{
    BdrvStats *st = &req->bs->stats;
    int c = req->acct;

    if (c < 0) {
        return;
    }
    gint64 now = g_get_monotonic_time() * 1000;
    if (req->invalid) {
        add(&st->invalid_ops[c], 1);
    } else if (ret < 0) {
        add(&st->failed_ops[c], 1);
        add(&st->total_time_ns[c], (guint64) (now - req->start_ns));
    } else {
        add(&st->ops[c], 1);
        add(&st->bytes[c], req->bytes);
        add(&st->total_time_ns[c], (guint64) (now - req->start_ns));
        if (c == BDRV_ACCT_WRITE) {
            raise_to(&st->wr_highest_offset, req->offset + req->bytes);
        }
    }
    raise_to(&st->last_access_ns, (guint64) now);
}

static guint64 get(const guint64 *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* BlockDeviceStats, members in QEMU's schema order. */
static json_object *stats_to_json(BlockDriverState *bs)
{
    static const char *const prefix[BDRV_ACCT_N] = { "rd", "wr", "flush", "unmap" };
    static const BdrvStats zero;
    const BdrvStats *st = bs ? &bs->stats : &zero;
    json_object *o = json_object_new_object();
    char key[64];

#define PUT(name, value) json_object_object_add(o, name, json_object_new_int64((int64_t) (value)))
    PUT("rd_bytes", get(&st->bytes[BDRV_ACCT_READ]));
    PUT("wr_bytes", get(&st->bytes[BDRV_ACCT_WRITE]));
    PUT("unmap_bytes", get(&st->bytes[BDRV_ACCT_UNMAP]));
    for (int c = 0; c < BDRV_ACCT_N; c++) {
        g_snprintf(key, sizeof(key), "%s_operations", prefix[c]);
        PUT(key, get(&st->ops[c]));
    }
    for (int c = 0; c < BDRV_ACCT_N; c++) {
        g_snprintf(key, sizeof(key), "%s_total_time_ns", prefix[c]);
        PUT(key, get(&st->total_time_ns[c]));
    }
    PUT("wr_highest_offset", get(&st->wr_highest_offset));
    /* berth never merges requests. */
    PUT("rd_merged", 0);
    PUT("wr_merged", 0);
    PUT("unmap_merged", 0);
    guint64 last = get(&st->last_access_ns);
    if (last) {
        PUT("idle_time_ns", (guint64) (g_get_monotonic_time() * 1000) - last);
    }
    for (int c = 0; c < BDRV_ACCT_N; c++) {
        g_snprintf(key, sizeof(key), "failed_%s_operations", prefix[c]);
        PUT(key, get(&st->failed_ops[c]));
    }
    for (int c = 0; c < BDRV_ACCT_N; c++) {
        g_snprintf(key, sizeof(key), "invalid_%s_operations", prefix[c]);
        PUT(key, get(&st->invalid_ops[c]));
    }
#undef PUT
    json_object_object_add(o, "account_invalid", json_object_new_boolean(true));
    json_object_object_add(o, "account_failed", json_object_new_boolean(true));
    json_object_object_add(o, "timed_stats", json_object_new_array());
    return o;
}

static void node_entry(BlockDriverState *bs, gpointer opaque)
{
    json_object *entry = json_object_new_object();

    json_object_object_add(entry, "node-name", json_object_new_string(bs->node_name));
    json_object_object_add(entry, "stats", stats_to_json(bs));
    json_object_array_add(opaque, entry);
}

static void drive_entry(BlockBackend *blk, gpointer opaque)
{
    json_object *entry = json_object_new_object();
    BlockDriverState *bs = blk_get_medium(blk);

    json_object_object_add(entry, "device", json_object_new_string(blk_get_id(blk)));
    if (bs) {
        json_object_object_add(entry, "node-name", json_object_new_string(bs->node_name));
    }
    json_object_object_add(entry, "stats", stats_to_json(bs));
    json_object_array_add(opaque, entry);
}

typedef struct {
    bool query_nodes, has_query_nodes;
} QueryBlockstatsArgs;

static const ArgSpec query_blockstats_members[] = {
    ARG_OPTIONAL("query-nodes", ARG_BOOL, QueryBlockstatsArgs, query_nodes, has_query_nodes),
    ARG_TABLE_END
};
static const ArgSpec *const query_blockstats_args[] = { query_blockstats_members, NULL };

static bool qmp_query_blockstats(void *opaque, json_object **ret, GError **errp)
{
    const QueryBlockstatsArgs *args = opaque;
    json_object *list = json_object_new_array();

    if (args->has_query_nodes && args->query_nodes) {
        bdrv_foreach(node_entry, list);
    } else {
        blk_foreach(drive_entry, list);
    }
    *ret = list;
    return true;
}

const QmpCommandDef block_stats_qmp_commands[] = {
    {
        .name = "query-blockstats", .handler = qmp_query_blockstats,
        .args = query_blockstats_args, .args_size = sizeof(QueryBlockstatsArgs),
    },
    QMP_COMMAND_END
};
