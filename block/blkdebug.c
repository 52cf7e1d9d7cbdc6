/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The blkdebug filter: passes requests to its image child and fails those
 * that match an inject-error rule with the rule's errno, for tests of
 * what a client sees when storage fails. Options are QEMU's where berth
 * has the feature; everything else QEMU's blkdebug accepts (a config file,
 * set-state, alignment and transfer limits, permission tweaks) is refused
 * by name rather than ignored.
 *
 * QEMU activates a rule when its event fires inside the block layer or a
 * format driver, and the rule then stays active until another event's
 * rules replace it. berth has no such events inside its drivers: blkdebug
 * itself fires, for each request it receives, the events that stand for
 * that request (read_aio for a read; write_aio and pwritev for a write;
 * pwritev_zero for write-zeroes; flush_to_os and flush_to_disk for a flush;
 * "none" for every request), and a rule applies to exactly the requests
 * that fire its event and pass its iotype, sector and state filters.
 *
 * berth's own option x-delay-ms holds every request that long (a timer on
 * the request's context, no thread) before it goes on, to make a slow
 * device; a rule with immediately=on fails its request without the delay.
 */
#include "block/block-int.h"
#include "util/json.h"

#include <errno.h>
#include <string.h>

/* QEMU 7.2's BlkdebugEvent, for its error texts; berth fires a few. */
static const char *const event_values[] = {
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load",
    "reftable_grow", "reftable_update", "refblock_load", "refblock_update",
    "refblock_update_part", "refblock_alloc", "refblock_alloc_hookup",
    "refblock_alloc_write", "refblock_alloc_write_blocks", "refblock_alloc_write_table",
    "refblock_alloc_switch_table", "cluster_alloc", "cluster_alloc_bytes", "cluster_free",
    "flush_to_os", "flush_to_disk", "pwritev_rmw_head", "pwritev_rmw_after_head",
    "pwritev_rmw_tail", "pwritev_rmw_after_tail", "pwritev", "pwritev_zero", "pwritev_done",
    "empty_image_prepare", "l1_shrink_write_table", "l1_shrink_free_l2_clusters",
    "cor_write", "cluster_alloc_space", "none", NULL
};

/* BlkdebugIOType, in QEMU's order; bit i of a mask is value i. */
static const char *const iotype_values[] = {
    "read", "write", "write-zeroes", "discard", "flush", "block-status", NULL
};
enum { IO_READ, IO_WRITE, IO_WRITE_ZEROES, IO_DISCARD, IO_FLUSH, IO_BLOCK_STATUS };

/* Which events a request of each type fires at a berth blkdebug node. */
static const struct {
    const char *event;
    guint iotypes;
} fired_events[] = {
    { "none", 0x3f },
    { "read_aio", 1u << IO_READ },
    { "write_aio", 1u << IO_WRITE },
    { "pwritev", 1u << IO_WRITE },
    { "pwritev_zero", 1u << IO_WRITE_ZEROES },
    { "flush_to_os", 1u << IO_FLUSH },
    { "flush_to_disk", 1u << IO_FLUSH },
};

/* BlkdebugInjectErrorOptions */
typedef struct {
    int event;
    int64_t state;
    bool has_state;
    int iotype;
    bool has_iotype;
    int64_t errno_value;
    bool has_errno;
    int64_t sector;
    bool has_sector;
    bool once, has_once;
    bool immediately, has_immediately;
} InjectOptions;

static const ArgSpec inject_members[] = {
    ARG_REQUIRED("event", ARG_ENUM, InjectOptions, event),
    ARG_OPTIONAL("state", ARG_INT, InjectOptions, state, has_state),
    ARG_ENUM_OPTIONAL("iotype", iotype_values, InjectOptions, iotype, has_iotype),
    ARG_OPTIONAL("errno", ARG_INT, InjectOptions, errno_value, has_errno),
    ARG_OPTIONAL("sector", ARG_INT, InjectOptions, sector, has_sector),
    ARG_OPTIONAL("once", ARG_BOOL, InjectOptions, once, has_once),
    ARG_OPTIONAL("immediately", ARG_BOOL, InjectOptions, immediately, has_immediately),
    ARG_TABLE_END
};

typedef struct BlkdebugRule {
    guint iotypes;          /* mask of the request types it applies to */
    int error;              /* positive errno; 0 lets the request through */
    int64_t offset;         /* a byte the request must cover, or -1 */
    bool once;
    bool immediately;
    bool removed;           /* a once rule that fired */
} BlkdebugRule;

typedef struct BlkdebugState {
    BlockDriverState *image;    /* bs->children's reference */
    GMutex lock;                /* rules fire from any thread */
    BlkdebugRule *rules;
    guint n_rules;
    guint delay_ms;
} BlkdebugState;

/* BlockdevOptionsBlkdebug, and berth's x-delay-ms. */
typedef struct {
    json_object *image;
    char *config;
    bool has_config;
    json_object *align, *max_transfer, *opt_write_zero, *max_write_zero;
    json_object *opt_discard, *max_discard;
    bool has_align, has_max_transfer, has_opt_write_zero, has_max_write_zero;
    bool has_opt_discard, has_max_discard;
    json_object *inject_error;
    bool has_inject_error;
    json_object *set_state;
    bool has_set_state;
    json_object *take_child_perms, *unshare_child_perms;
    bool has_take_child_perms, has_unshare_child_perms;
    uint64_t delay_ms;
    bool has_delay_ms;
} BlkdebugOptions;

#define ANY_OPTIONAL(NAME, F) ARG_OPTIONAL(NAME, ARG_ANY, BlkdebugOptions, F, has_##F)

static const ArgSpec blkdebug_members[] = {
    { .name = "image", .type = ARG_ANY, .offset = offsetof(BlkdebugOptions, image),
      .present_offset = ARG_NO_PRESENCE },
    ARG_OPTIONAL("config", ARG_STR, BlkdebugOptions, config, has_config),
    ANY_OPTIONAL("align", align),
    ANY_OPTIONAL("max-transfer", max_transfer),
    ANY_OPTIONAL("opt-write-zero", opt_write_zero),
    ANY_OPTIONAL("max-write-zero", max_write_zero),
    ANY_OPTIONAL("opt-discard", opt_discard),
    ANY_OPTIONAL("max-discard", max_discard),
    ANY_OPTIONAL("inject-error", inject_error),
    ANY_OPTIONAL("set-state", set_state),
    ANY_OPTIONAL("take-child-perms", take_child_perms),
    ANY_OPTIONAL("unshare-child-perms", unshare_child_perms),
    ARG_OPTIONAL("x-delay-ms", ARG_UINT, BlkdebugOptions, delay_ms, has_delay_ms),
    ARG_TABLE_END
};

#define BLKDEBUG_MAX_RULES 1024
#define BLKDEBUG_MAX_DELAY_MS 3600000

static guint event_iotypes(int event)
{
    for (size_t i = 0; i < G_N_ELEMENTS(fired_events); i++) {
        if (strcmp(fired_events[i].event, event_values[event]) == 0) {
            return fired_events[i].iotypes;
        }
    }
    return 0;
}

/* One inject-error entry, checked as QEMU does, then what berth can do. */
static bool parse_rule(json_object *entry, guint index, bool keyval, BlkdebugRule *rule,
                       GError **errp)
{
    const ArgSpec spec_event = {
        .name = "event", .type = ARG_ENUM, .offset = offsetof(InjectOptions, event),
        .present_offset = ARG_NO_PRESENCE, .enum_values = event_values,
    };
    ArgSpec members[G_N_ELEMENTS(inject_members)];
    const ArgSpec *const tables[] = { members, NULL };
    InjectOptions o = { 0 };
    GError *err = NULL;

    memcpy(members, inject_members, sizeof(members));
    members[0] = spec_event;
    if (!argspec_decode(tables, entry, keyval, &o, &err)) {
        /* QEMU names the member inside the list: 'inject-error[0].foo',
         * but for a bad enum value, only the member. */
        const char *q = strchr(err->message, '\'');
        if (q && !strstr(err->message, "does not accept value")) {
            char *msg = g_strdup_printf("%.*sinject-error[%u].%s", (int) (q - err->message + 1),
                                        err->message, index, q + 1);
            g_free(err->message);
            err->message = msg;
        }
        g_propagate_error(errp, err);
        return false;
    }
    guint fired = event_iotypes(o.event);
    if (!fired) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "blkdebug event '%s' is not supported by berth (berth fires none, read_aio, "
                    "write_aio, pwritev, pwritev_zero, flush_to_os and flush_to_disk)",
                    event_values[o.event]);
        return false;
    }
    if (o.has_errno && (o.errno_value < 0 || o.errno_value > 4095)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "inject-error[%u].errno must be between 0 and 4095", index);
        return false;
    }
    if (o.has_sector && (o.sector < -1 || o.sector > INT64_MAX / BDRV_SECTOR_SIZE)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "inject-error[%u].sector must be -1 or a sector number", index);
        return false;
    }
    /* QEMU's default: every type but block-status. */
    guint mask = o.has_iotype ? 1u << o.iotype : 0x3fu & ~(1u << IO_BLOCK_STATUS);
    /* Without set-state the state stays 1; a rule for another never fires. */
    if (o.has_state && o.state != 0 && o.state != 1) {
        mask = 0;
    }
    *rule = (BlkdebugRule) {
        .iotypes = mask & fired,
        .error = o.has_errno ? (int) o.errno_value : EIO,
        .offset = o.has_sector && o.sector >= 0 ? o.sector * BDRV_SECTOR_SIZE : -1,
        .once = o.once,
        .immediately = o.immediately,
    };
    return true;
}

static bool parse_rules(BlkdebugState *s, json_object *list, bool keyval, GError **errp)
{
    if (!json_object_is_type(list, json_type_array)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Invalid parameter type for 'inject-error', expected: array");
        return false;
    }
    size_t n = json_object_array_length(list);
    if (n > BLKDEBUG_MAX_RULES) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "At most %d inject-error rules", BLKDEBUG_MAX_RULES);
        return false;
    }
    s->rules = g_new0(BlkdebugRule, MAX(n, 1));
    for (size_t i = 0; i < n; i++) {
        if (!parse_rule(json_object_array_get_idx(list, i), i, keyval, &s->rules[i], errp)) {
            return false;
        }
    }
    s->n_rules = n;
    return true;
}

/* What berth's blkdebug does not have: refused by name. */
static bool refuse_unsupported(const BlkdebugOptions *o, GError **errp)
{
    const struct { bool given; const char *name; } unsupported[] = {
        { o->has_config, "config" },
        { o->has_align, "align" },
        { o->has_max_transfer, "max-transfer" },
        { o->has_opt_write_zero, "opt-write-zero" },
        { o->has_max_write_zero, "max-write-zero" },
        { o->has_opt_discard, "opt-discard" },
        { o->has_max_discard, "max-discard" },
        { o->has_set_state && !(json_object_is_type(o->set_state, json_type_array) &&
                                json_object_array_length(o->set_state) == 0), "set-state" },
        { o->has_take_child_perms, "take-child-perms" },
        { o->has_unshare_child_perms, "unshare-child-perms" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(unsupported); i++) {
        if (unsupported[i].given) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        "blkdebug option '%s' is not supported by berth", unsupported[i].name);
            return false;
        }
    }
    return true;
}

static void blkdebug_free_state(BlkdebugState *s)
{
    berth_mutex_clear(&s->lock);
    g_free(s->rules);
    g_free(s);
}

static bool blkdebug_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const BlkdebugOptions *o = options;
    BlkdebugState *s;
    bool keyval = bs->opening_keyval;

    if (!refuse_unsupported(o, errp)) {
        return false;
    }
    if (o->has_delay_ms && o->delay_ms > BLKDEBUG_MAX_DELAY_MS) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "x-delay-ms must be at most %d", BLKDEBUG_MAX_DELAY_MS);
        return false;
    }
    s = g_new0(BlkdebugState, 1);
    g_mutex_init(&s->lock);
    if (o->has_inject_error && !parse_rules(s, o->inject_error, keyval, errp)) {
        blkdebug_free_state(s);
        return false;
    }
    s->delay_ms = o->delay_ms;
    s->image = bdrv_open_child(bs, o->image, "image", errp);
    if (!s->image) {
        blkdebug_free_state(s);
        return false;
    }
    bs->opaque = s;
    bs->size = s->image->size;
    bs->can_flush = s->image->can_flush && !s->image->cache_no_flush;
    bs->can_fua = s->image->can_fua;
    bs->can_discard = s->image->can_discard && s->image->discard == BDRV_DISCARD_UNMAP;
    bs->can_write_zeroes_fast = s->image->can_write_zeroes_fast;
    bs->has_block_status = s->image->has_block_status;
    bs->coherent = s->image->coherent;
    bs->request_alignment = s->image->request_alignment;
    return true;
}

static void blkdebug_close(BlockDriverState *bs)
{
    blkdebug_free_state(bs->opaque);
}

static int request_iotype(const BdrvRequest *req)
{
    switch (req->op) {
    case BDRV_OP_READ: return IO_READ;
    case BDRV_OP_WRITE: return IO_WRITE;
    case BDRV_OP_WRITE_ZEROES: return IO_WRITE_ZEROES;
    case BDRV_OP_DISCARD: return IO_DISCARD;
    case BDRV_OP_FLUSH: return IO_FLUSH;
    case BDRV_OP_BLOCK_STATUS: return IO_BLOCK_STATUS;
    default: return -1;
    }
}

/* The first rule that applies (copied), firing a once rule away. */
static bool match_rule(BlkdebugState *s, const BdrvRequest *req, BlkdebugRule *out)
{
    int type = request_iotype(req);
    bool found = false;

    if (type < 0 || s->n_rules == 0) {
        return false;
    }
    berth_mutex_lock(&s->lock);
    for (guint i = 0; i < s->n_rules; i++) {
        BlkdebugRule *r = &s->rules[i];
        if (r->removed || !(r->iotypes & (1u << type))) {
            continue;
        }
        if (r->offset >= 0 &&
            (req->bytes == 0 || (uint64_t) r->offset < req->offset ||
             (uint64_t) r->offset >= req->offset + req->bytes)) {
            continue;
        }
        *out = *r;
        if (r->once) {
            r->removed = true;
        }
        found = true;
        break;
    }
    berth_mutex_unlock(&s->lock);
    return found && out->error != 0;
}

static void blkdebug_go(BdrvRequest *req)
{
    BlkdebugState *s = req->bs->opaque;

    bdrv_request_redirect(req, s->image, req->offset);
}

/* req->ret holds, until the request completes, the error to inject. */
static gboolean blkdebug_delay_expired(gpointer data)
{
    BdrvRequest *req = data;

    if (req->ret < 0) {
        bdrv_request_fail(req, -req->ret, "%s", g_strerror(-req->ret));
    } else {
        blkdebug_go(req);
    }
    return G_SOURCE_REMOVE;
}

static void blkdebug_submit(BdrvRequest *req)
{
    BlkdebugState *s = req->bs->opaque;
    BlkdebugRule rule;
    bool fail = match_rule(s, req, &rule);

    if (fail && (rule.immediately || s->delay_ms == 0)) {
        bdrv_request_fail(req, rule.error, "%s", g_strerror(rule.error));
        return;
    }
    if (s->delay_ms == 0) {
        blkdebug_go(req);
        return;
    }
    req->ret = fail ? -rule.error : 0;
    GSource *timer = g_timeout_source_new(s->delay_ms);
    g_source_set_callback(timer, blkdebug_delay_expired, req, NULL);
    g_source_attach(timer, bdrv_completion_queue_context(req->queue));
    g_source_unref(timer);
}

static char *blkdebug_describe(BlockDriverState *bs, const void *options)
{
    const BlkdebugOptions *o = options;
    BlkdebugState *s = bs->opaque;
    g_autoptr(json_object) desc = json_object_new_object();

    json_object_object_add(desc, "driver", json_object_new_string("blkdebug"));
    json_object_object_add(desc, "image", bdrv_node_json(s->image));
    if (o->has_inject_error) {
        json_object_object_add(desc, "inject-error", json_object_get(o->inject_error));
    }
    if (o->has_delay_ms) {
        json_object_object_add(desc, "x-delay-ms", json_object_new_int64((int64_t) o->delay_ms));
    }
    return g_strconcat("json:", json_object_to_json_string_ext(desc, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE),
                       NULL);
}

static void blkdebug_image_info(BlockDriverState *bs, json_object *image)
{
    json_object_object_add(image, "dirty-flag", json_object_new_boolean(false));
}

const BlockDriver bdrv_blkdebug = {
    .name = "blkdebug",
    .options = blkdebug_members,
    .options_size = sizeof(BlkdebugOptions),
    .open = blkdebug_open,
    .close = blkdebug_close,
    .submit = blkdebug_submit,
    .describe = blkdebug_describe,
    .image_info = blkdebug_image_info,
    .child_perm = bdrv_filter_child_perm,
    .is_filter = true,
};
