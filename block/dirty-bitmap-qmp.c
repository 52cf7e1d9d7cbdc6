/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP for dirty bitmaps: block-dirty-bitmap-add, -remove, -clear, -enable,
 * -disable, -merge and `transaction` with those actions, with QEMU 7.2's
 * argument names, checks (in QEMU's order) and texts. Every command is one
 * action run through the same prepare / commit / abort steps as a
 * transaction, so a lone command and an action inside a transaction behave
 * alike; a transaction prepares its actions in order and, when one fails,
 * undoes the prepared ones in reverse, leaving every bitmap as it was.
 */
#include "block/block-int.h"
#include "berth/block/dirty-bitmap.h"
#include "berth/util/qmp-command.h"
#include "util/sparse-bitmap.h"

#include <string.h>

typedef enum {
    TX_ABORT,
    TX_ADD,
    TX_CLEAR,
    TX_DISABLE,
    TX_ENABLE,
    TX_MERGE,
    TX_REMOVE,
    TX_UNSUPPORTED,             /* QEMU's other actions: refused with a clear text */
} TxKind;

/* QEMU 7.2's TransactionAction types, in QEMU's order. */
static const char *const tx_type_names[] = {
    "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-remove",
    "block-dirty-bitmap-clear", "block-dirty-bitmap-enable", "block-dirty-bitmap-disable",
    "block-dirty-bitmap-merge", "blockdev-backup", "blockdev-snapshot",
    "blockdev-snapshot-internal-sync", "blockdev-snapshot-sync", "drive-backup", NULL,
};
static const TxKind tx_type_kinds[] = {
    TX_ABORT, TX_ADD, TX_REMOVE, TX_CLEAR, TX_ENABLE, TX_DISABLE, TX_MERGE,
    TX_UNSUPPORTED, TX_UNSUPPORTED, TX_UNSUPPORTED, TX_UNSUPPORTED, TX_UNSUPPORTED,
};

/* --- arguments --- */

typedef struct {
    char *node, *name;
    uint64_t granularity;
    bool has_granularity;
    bool persistent, has_persistent;
    bool disabled, has_disabled;
} BitmapAddArgs;

static const ArgSpec bitmap_add_members[] = {
    ARG_REQUIRED("node", ARG_STR, BitmapAddArgs, node),
    ARG_REQUIRED("name", ARG_STR, BitmapAddArgs, name),
    ARG_OPTIONAL("granularity", ARG_UINT, BitmapAddArgs, granularity, has_granularity),
    ARG_OPTIONAL("persistent", ARG_BOOL, BitmapAddArgs, persistent, has_persistent),
    ARG_OPTIONAL("disabled", ARG_BOOL, BitmapAddArgs, disabled, has_disabled),
    ARG_TABLE_END
};
static const ArgSpec *const bitmap_add_args[] = { bitmap_add_members, NULL };

typedef struct {
    char *node, *name;
} BitmapArgs;

static const ArgSpec bitmap_members[] = {
    ARG_REQUIRED("node", ARG_STR, BitmapArgs, node),
    ARG_REQUIRED("name", ARG_STR, BitmapArgs, name),
    ARG_TABLE_END
};
static const ArgSpec *const bitmap_args[] = { bitmap_members, NULL };

typedef struct {
    char *node, *target;
    json_object *bitmaps;
} BitmapMergeArgs;

static const ArgSpec bitmap_merge_members[] = {
    ARG_REQUIRED("node", ARG_STR, BitmapMergeArgs, node),
    ARG_REQUIRED("target", ARG_STR, BitmapMergeArgs, target),
    ARG_REQUIRED("bitmaps", ARG_ANY, BitmapMergeArgs, bitmaps),
    ARG_TABLE_END
};
static const ArgSpec *const bitmap_merge_args[] = { bitmap_merge_members, NULL };

/* --- one action --- */

typedef struct {
    TxKind kind;
    const char *type_name;
    BdrvDirtyBitmap *bm;
    bool was_enabled;
    BerthBitmap *backup;        /* clear, merge: the bits before */
} TxAction;

/* QEMU's block_dirty_bitmap_lookup(). */
static BdrvDirtyBitmap *lookup(const char *node, const char *name, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(node);
    if (!bs) {
        qmp_error_setg(errp, "Node '%s' not found", node);
        return NULL;
    }
    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_find(bs, name);
    if (!bm) {
        qmp_error_setg(errp, "Dirty bitmap '%s' not found", name);
    }
    return bm;
}

static bool prepare_add(TxAction *a, const BitmapAddArgs *args, GError **errp)
{
    if (!*args->name) {
        qmp_error_setg(errp, "Bitmap name cannot be empty");
        return false;
    }
    BlockDriverState *bs = bdrv_find_node(args->node);
    if (!bs) {
        qmp_error_setg(errp, "Cannot find device='%s' nor node-name='%s'", args->node, args->node);
        return false;
    }
    /* QEMU's default: the cluster size within [4 KiB, 64 KiB], else 64 KiB. */
    uint32_t cluster = bs->drv->cluster_size ? bs->drv->cluster_size(bs) : 0;
    uint64_t g = args->has_granularity ? args->granularity
                 : cluster ? CLAMP(cluster, 4096, BDRV_DIRTY_BITMAP_DEFAULT_GRANULARITY)
                 : BDRV_DIRTY_BITMAP_DEFAULT_GRANULARITY;
    if (g < 512 || (g & (g - 1))) {
        qmp_error_setg(errp, "Granularity must be power of 2 and at least 512");
        return false;
    }
    bool persistent = args->has_persistent && args->persistent;
    if (persistent) {
        if (!bs->drv->bitmap_can_store) {
            qmp_error_setg(errp, "Can't store persistent bitmaps to %s: Operation not supported",
                           args->node);
            return false;
        }
        if (!bs->drv->bitmap_can_store(bs, args->name, (uint32_t) g, errp)) {
            return false;
        }
    }
    a->bm = bdrv_dirty_bitmap_create(bs, args->name, (uint32_t) g,
                                     args->has_disabled && args->disabled, errp);
    if (a->bm && persistent) {
        bdrv_dirty_bitmap_set_persistent(a->bm, true);
    }
    return a->bm != NULL;
}

/* Merge's sources: names on the target's node, or {node, name} anywhere. */
static GPtrArray *merge_sources(const BitmapMergeArgs *args, BlockDriverState *bs,
                                GError **errp)
{
    if (!json_object_is_type(args->bitmaps, json_type_array)) {
        qmp_error_setg(errp, "Invalid parameter type for 'bitmaps', expected: array");
        return NULL;
    }
    g_autoptr(GPtrArray) srcs = g_ptr_array_new();
    size_t n = json_object_array_length(args->bitmaps);
    for (size_t i = 0; i < n; i++) {
        json_object *el = json_object_array_get_idx(args->bitmaps, i);
        BdrvDirtyBitmap *src;
        if (json_object_is_type(el, json_type_string)) {
            src = bdrv_dirty_bitmap_find(bs, json_object_get_string(el));
            if (!src) {
                qmp_error_setg(errp, "Dirty bitmap '%s' not found", json_object_get_string(el));
                return NULL;
            }
        } else if (json_object_is_type(el, json_type_object)) {
            BitmapArgs ext = { 0 };
            g_autoptr(GError) err = NULL;
            if (!argspec_decode(bitmap_args, el, false, &ext, &err)) {
                /* "Parameter 'node' ..." becomes "Parameter 'bitmaps[0].node' ..." */
                const char *q = strchr(err->message, '\'');
                if (q) {
                    qmp_error_setg(errp, "%.*sbitmaps[%zu].%s", (int) (q - err->message + 1),
                                   err->message, i, q + 1);
                } else {
                    qmp_error_setg(errp, "%s", err->message);
                }
                return NULL;
            }
            src = lookup(ext.node, ext.name, errp);
            argspec_clear(bitmap_args, &ext);
            if (!src) {
                return NULL;
            }
        } else {
            /* QEMU 7.2 names no member here: its text says 'null'. */
            qmp_error_setg(errp, "Invalid parameter type for 'null', expected: "
                           "BlockDirtyBitmapOrStr");
            return NULL;
        }
        g_ptr_array_add(srcs, src);
    }
    return g_steal_pointer(&srcs);
}

static bool prepare_merge(TxAction *a, const BitmapMergeArgs *args, GError **errp)
{
    a->bm = lookup(args->node, args->target, errp);
    if (!a->bm || !bdrv_dirty_bitmap_check_flags(a->bm, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    g_autoptr(GPtrArray) srcs = merge_sources(args, bdrv_dirty_bitmap_get_node(a->bm), errp);
    if (!srcs) {
        return false;
    }
    BerthBitmap *backup = bdrv_dirty_bitmap_snapshot(a->bm);
    if (!bdrv_dirty_bitmap_merge_many(a->bm, (BdrvDirtyBitmap *const *) srcs->pdata,
                                      srcs->len, errp)) {
        berth_bitmap_free(backup);
        return false;
    }
    a->backup = backup;
    return true;
}

static bool prepare_simple(TxAction *a, const BitmapArgs *args, GError **errp)
{
    BdrvDirtyBitmapInfo info;

    /* QEMU's checks: remove takes inconsistent bitmaps, enable and disable
     * read-only ones, clear neither. */
    unsigned flags = a->kind == TX_REMOVE ? BDRV_BITMAP_BUSY | BDRV_BITMAP_RO
                     : a->kind == TX_CLEAR ? BDRV_BITMAP_DEFAULT : BDRV_BITMAP_ALLOW_RO;

    a->bm = lookup(args->node, args->name, errp);
    if (!a->bm || !bdrv_dirty_bitmap_check_flags(a->bm, flags, errp)) {
        return false;
    }
    bdrv_dirty_bitmap_get_info(a->bm, &info);
    a->was_enabled = info.recording;
    switch (a->kind) {
    case TX_CLEAR:
        a->backup = bdrv_dirty_bitmap_snapshot(a->bm);
        return bdrv_dirty_bitmap_clear(a->bm, errp);
    case TX_ENABLE:
    case TX_DISABLE:
        return bdrv_dirty_bitmap_set_enabled(a->bm, a->kind == TX_ENABLE, errp);
    case TX_REMOVE:
        /*
         * A persistent bitmap leaves the image now, as in QEMU; if the
         * transaction fails after all, the bitmap stays in memory, still
         * persistent, and is stored again when the node closes.
         */
        if (info.persistent) {
            BlockDriverState *bs = bdrv_dirty_bitmap_get_node(a->bm);
            if (bs->drv->bitmap_remove_persistent &&
                !bs->drv->bitmap_remove_persistent(bs, info.name, errp)) {
                return false;
            }
        }
        /* Hidden until commit: later actions find it busy, as in QEMU. */
        bdrv_dirty_bitmap_set_enabled(a->bm, false, NULL);
        bdrv_dirty_bitmap_set_busy(a->bm, true);
        return true;
    default:
        g_assert_not_reached();
    }
}

static void action_commit(TxAction *a)
{
    if (a->kind == TX_REMOVE && a->bm) {
        bdrv_dirty_bitmap_set_busy(a->bm, false);
        bdrv_dirty_bitmap_remove(a->bm, NULL);
    }
    g_clear_pointer(&a->backup, berth_bitmap_free);
}

static void action_abort(TxAction *a)
{
    if (!a->bm) {
        return;
    }
    switch (a->kind) {
    case TX_ADD:
        bdrv_dirty_bitmap_remove(a->bm, NULL);
        break;
    case TX_CLEAR:
    case TX_MERGE:
        if (a->backup) {
            bdrv_dirty_bitmap_restore(a->bm, g_steal_pointer(&a->backup));
        }
        break;
    case TX_ENABLE:
    case TX_DISABLE:
        bdrv_dirty_bitmap_set_enabled(a->bm, a->was_enabled, NULL);
        break;
    case TX_REMOVE:
        bdrv_dirty_bitmap_set_busy(a->bm, false);
        bdrv_dirty_bitmap_set_enabled(a->bm, a->was_enabled, NULL);
        break;
    default:
        break;
    }
}

/* Decode an action's arguments (done before anything is prepared), with
 * member names prefixed as QEMU names them inside a transaction. */
static const ArgSpec *const *action_tables(TxKind kind, size_t *size)
{
    switch (kind) {
    case TX_ADD:
        *size = sizeof(BitmapAddArgs);
        return bitmap_add_args;
    case TX_MERGE:
        *size = sizeof(BitmapMergeArgs);
        return bitmap_merge_args;
    case TX_CLEAR:
    case TX_DISABLE:
    case TX_ENABLE:
    case TX_REMOVE:
        *size = sizeof(BitmapArgs);
        return bitmap_args;
    default:
        *size = 0;
        return NULL;
    }
}

static bool check_granularity(const BitmapAddArgs *args, const char *prefix, GError **errp)
{
    if (args->has_granularity && args->granularity > UINT32_MAX) {
        qmp_error_setg(errp, "Parameter '%sgranularity' expects uint32_t", prefix);
        return false;
    }
    return true;
}

/* Either prepares the action (undo with action_abort()) or fails having
 * changed nothing. */
static bool action_prepare(TxAction *a, void *args, GError **errp)
{
    switch (a->kind) {
    case TX_ABORT:
        qmp_error_setg(errp, "Transaction aborted using Abort action");
        return false;
    case TX_ADD:
        return prepare_add(a, args, errp);
    case TX_MERGE:
        return prepare_merge(a, args, errp);
    case TX_CLEAR:
    case TX_DISABLE:
    case TX_ENABLE:
    case TX_REMOVE:
        return prepare_simple(a, args, errp);
    default:
        qmp_error_setg(errp, "Transaction action '%s' is not supported by berth (it has only "
                       "the abort and block-dirty-bitmap-* actions)", a->type_name);
        return false;
    }
}

/* --- the single commands --- */

static bool run_one(TxKind kind, void *args, GError **errp)
{
    TxAction a = { .kind = kind };

    if (kind == TX_ADD && !check_granularity(args, "", errp)) {
        return false;
    }
    if (!action_prepare(&a, args, errp)) {
        return false;           /* a failed prepare leaves nothing behind */
    }
    action_commit(&a);
    return true;
}

static bool qmp_bitmap_add(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_ADD, args, errp);
}

static bool qmp_bitmap_remove(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_REMOVE, args, errp);
}

static bool qmp_bitmap_clear(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_CLEAR, args, errp);
}

static bool qmp_bitmap_enable(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_ENABLE, args, errp);
}

static bool qmp_bitmap_disable(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_DISABLE, args, errp);
}

static bool qmp_bitmap_merge(void *args, json_object **ret, GError **errp)
{
    return run_one(TX_MERGE, args, errp);
}

/* --- transaction --- */

typedef struct {
    json_object *actions;
    json_object *properties;
    bool has_properties;
} TransactionArgs;

static const ArgSpec transaction_members[] = {
    ARG_REQUIRED("actions", ARG_ANY, TransactionArgs, actions),
    ARG_OPTIONAL("properties", ARG_ANY, TransactionArgs, properties, has_properties),
    ARG_TABLE_END
};
static const ArgSpec *const transaction_args[] = { transaction_members, NULL };

static const char *const completion_modes[] = { "individual", "grouped", NULL };

typedef struct {
    int completion_mode;
    bool has_completion_mode;
} TxProperties;

static const ArgSpec tx_properties_members[] = {
    { .name = "completion-mode", .type = ARG_ENUM, .optional = true,
      .offset = offsetof(TxProperties, completion_mode),
      .present_offset = offsetof(TxProperties, has_completion_mode),
      .enum_values = completion_modes },
    ARG_TABLE_END
};
static const ArgSpec *const tx_properties_args[] = { tx_properties_members, NULL };

/* A decoding error of a member of actions[i].data, named as QEMU names it. */
static void prefixed_error(GError **errp, const GError *err, const char *prefix)
{
    const char *q = strchr(err->message, '\'');
    if (q) {
        qmp_error_setg(errp, "%.*s%s%s", (int) (q - err->message + 1), err->message, prefix, q + 1);
    } else {
        qmp_error_setg(errp, "%s", err->message);
    }
}

typedef struct {
    TxAction action;
    const ArgSpec *const *tables;
    void *args;
} TxEntry;

static void tx_entry_clear(TxEntry *e)
{
    if (e->args) {
        argspec_clear(e->tables, e->args);
        g_free(e->args);
    }
    g_clear_pointer(&e->action.backup, berth_bitmap_free);
}

/* Check the shape of actions[i] and decode its data. */
static bool decode_action(json_object *el, size_t i, TxEntry *e, GError **errp)
{
    g_autofree char *prefix = g_strdup_printf("actions[%zu].", i);
    json_object *type = NULL, *data = NULL;

    if (!json_object_is_type(el, json_type_object)) {
        qmp_error_setg(errp, "Invalid parameter type for 'actions[%zu]', expected: object", i);
        return false;
    }
    if (!json_object_object_get_ex(el, "type", &type)) {
        qmp_error_setg(errp, "Parameter '%stype' is missing", prefix);
        return false;
    }
    if (!json_object_is_type(type, json_type_string)) {
        qmp_error_setg(errp, "Invalid parameter type for '%stype', expected: string", prefix);
        return false;
    }
    const char *tname = json_object_get_string(type);
    int idx = -1;
    for (int k = 0; tx_type_names[k]; k++) {
        if (strcmp(tx_type_names[k], tname) == 0) {
            idx = k;
        }
    }
    if (idx < 0) {
        qmp_error_setg(errp, "Parameter 'type' does not accept value '%s'", tname);
        return false;
    }
    e->action.kind = tx_type_kinds[idx];
    e->action.type_name = tx_type_names[idx];
    json_object_object_foreach(el, key, val) {
        (void) val;
        if (strcmp(key, "type") != 0 && strcmp(key, "data") != 0) {
            qmp_error_setg(errp, "Parameter '%s%s' is unexpected", prefix, key);
            return false;
        }
    }
    if (!json_object_object_get_ex(el, "data", &data)) {
        qmp_error_setg(errp, "Parameter '%sdata' is missing", prefix);
        return false;
    }
    if (!json_object_is_type(data, json_type_object)) {
        qmp_error_setg(errp, "Invalid parameter type for '%sdata', expected: object", prefix);
        return false;
    }
    size_t size;
    e->tables = action_tables(e->action.kind, &size);
    if (!e->tables) {
        return true;            /* abort (no members) or refused at prepare */
    }
    g_autofree char *data_prefix = g_strdup_printf("%sdata.", prefix);
    g_autoptr(GError) err = NULL;
    e->args = g_malloc0(size);
    if (!argspec_decode(e->tables, data, false, e->args, &err)) {
        prefixed_error(errp, err, data_prefix);
        return false;
    }
    if (e->action.kind == TX_ADD && !check_granularity(e->args, data_prefix, errp)) {
        return false;
    }
    return true;
}

static bool qmp_transaction(void *opaque, json_object **ret, GError **errp)
{
    TransactionArgs *args = opaque;
    TxProperties props = { 0 };

    if (!json_object_is_type(args->actions, json_type_array)) {
        qmp_error_setg(errp, "Invalid parameter type for 'actions', expected: array");
        return false;
    }
    if (args->has_properties) {
        g_autoptr(GError) err = NULL;
        if (!argspec_decode(tx_properties_args, args->properties, false, &props, &err)) {
            prefixed_error(errp, err, "properties.");
            return false;
        }
    }

    size_t n = json_object_array_length(args->actions);
    g_autofree TxEntry *entries = g_new0(TxEntry, MAX(n, 1));
    bool ok = true;
    size_t decoded = 0, prepared = 0;

    for (; decoded < n && ok; decoded++) {
        ok = decode_action(json_object_array_get_idx(args->actions, decoded), decoded,
                           &entries[decoded], errp);
    }
    for (; ok && prepared < n; prepared++) {
        TxEntry *e = &entries[prepared];
        if (props.has_completion_mode && props.completion_mode == 1 &&
            e->action.kind != TX_ABORT) {
            qmp_error_setg(errp, "Action '%s' does not support Transaction property "
                           "completion-mode = grouped", e->action.type_name);
            ok = false;
            break;
        }
        ok = action_prepare(&e->action, e->args, errp);
        if (!ok) {
            break;              /* a failed prepare leaves nothing behind */
        }
    }
    if (ok) {
        for (size_t i = 0; i < n; i++) {
            action_commit(&entries[i].action);
        }
    } else {
        for (size_t i = prepared; i-- > 0;) {
            action_abort(&entries[i].action);
        }
    }
    for (size_t i = 0; i < decoded; i++) {
        tx_entry_clear(&entries[i]);
    }
    return ok;
}

const QmpCommandDef dirty_bitmap_qmp_commands[] = {
    { .name = "block-dirty-bitmap-add", .handler = qmp_bitmap_add,
      .args = bitmap_add_args, .args_size = sizeof(BitmapAddArgs) },
    { .name = "block-dirty-bitmap-remove", .handler = qmp_bitmap_remove,
      .args = bitmap_args, .args_size = sizeof(BitmapArgs) },
    { .name = "block-dirty-bitmap-clear", .handler = qmp_bitmap_clear,
      .args = bitmap_args, .args_size = sizeof(BitmapArgs) },
    { .name = "block-dirty-bitmap-enable", .handler = qmp_bitmap_enable,
      .args = bitmap_args, .args_size = sizeof(BitmapArgs) },
    { .name = "block-dirty-bitmap-disable", .handler = qmp_bitmap_disable,
      .args = bitmap_args, .args_size = sizeof(BitmapArgs) },
    { .name = "block-dirty-bitmap-merge", .handler = qmp_bitmap_merge,
      .args = bitmap_merge_args, .args_size = sizeof(BitmapMergeArgs) },
    { .name = "transaction", .handler = qmp_transaction,
      .args = transaction_args, .args_size = sizeof(TransactionArgs) },
    QMP_COMMAND_END
};
