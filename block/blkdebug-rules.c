/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blkdebug's rules: decoding QEMU's inject-error and set-state lists, and
 * the state machine that decides which request fails (see blkdebug-int.h
 * for the model). QEMU fires its events inside the block layer and its
 * format drivers; berth has no such events inside its drivers, so a
 * blkdebug node fires, for each request it receives, the events that stand
 * for that request (fired_events below), in that order, then checks it.
 */
#include "blkdebug-int.h"

#include <errno.h>
#include <string.h>

const char *const blkdebug_event_names[] = {
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

const char *const blkdebug_iotype_names[] = {
    "read", "write", "write-zeroes", "discard", "flush", "block-status", NULL
};

#define ALL_IOTYPES ((1u << BLKDEBUG_IO_N) - 1)

/* Which events a request of each type fires at a berth blkdebug node, in
 * the order they fire (write_aio before pwritev, as under a QEMU format
 * driver; flush_to_os before flush_to_disk). */
static const struct {
    const char *event;
    guint iotypes;
} fired_events[] = {
    { "none", ALL_IOTYPES },
    { "read_aio", 1u << BLKDEBUG_IO_READ },
    { "write_aio", 1u << BLKDEBUG_IO_WRITE },
    { "pwritev", 1u << BLKDEBUG_IO_WRITE },
    { "pwritev_zero", 1u << BLKDEBUG_IO_WRITE_ZEROES },
    { "flush_to_os", 1u << BLKDEBUG_IO_FLUSH },
    { "flush_to_disk", 1u << BLKDEBUG_IO_FLUSH },
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
    { .name = "event", .type = ARG_ENUM, .offset = offsetof(InjectOptions, event),
      .present_offset = ARG_NO_PRESENCE, .enum_values = blkdebug_event_names },
    ARG_OPTIONAL("state", ARG_INT, InjectOptions, state, has_state),
    ARG_ENUM_OPTIONAL("iotype", blkdebug_iotype_names, InjectOptions, iotype, has_iotype),
    ARG_OPTIONAL("errno", ARG_INT, InjectOptions, errno_value, has_errno),
    ARG_OPTIONAL("sector", ARG_INT, InjectOptions, sector, has_sector),
    ARG_OPTIONAL("once", ARG_BOOL, InjectOptions, once, has_once),
    ARG_OPTIONAL("immediately", ARG_BOOL, InjectOptions, immediately, has_immediately),
    ARG_TABLE_END
};

/* BlkdebugSetStateOptions */
typedef struct {
    int event;
    int64_t state;
    bool has_state;
    int64_t new_state;
} SetStateOptions;

static const ArgSpec set_state_members[] = {
    { .name = "event", .type = ARG_ENUM, .offset = offsetof(SetStateOptions, event),
      .present_offset = ARG_NO_PRESENCE, .enum_values = blkdebug_event_names },
    ARG_OPTIONAL("state", ARG_INT, SetStateOptions, state, has_state),
    ARG_REQUIRED("new_state", ARG_INT, SetStateOptions, new_state),
    ARG_TABLE_END
};

static guint event_iotypes(int event)
{
    for (size_t i = 0; i < G_N_ELEMENTS(fired_events); i++) {
        if (strcmp(fired_events[i].event, blkdebug_event_names[event]) == 0) {
            return fired_events[i].iotypes;
        }
    }
    return 0;
}

/* Decodes one list entry; QEMU names a member inside the list as
 * 'inject-error[0].foo', but for a bad enum value only the member. */
static bool decode_entry(const ArgSpec *members, const char *list, json_object *entry,
                         guint index, bool keyval, void *out, GError **errp)
{
    const ArgSpec *const tables[] = { members, NULL };
    GError *err = NULL;

    if (argspec_decode(tables, entry, keyval, out, &err)) {
        return true;
    }
    const char *q = strchr(err->message, '\'');
    if (q && !strstr(err->message, "does not accept value")) {
        char *msg = g_strdup_printf("%.*s%s[%u].%s", (int) (q - err->message + 1),
                                    err->message, list, index, q + 1);
        g_free(err->message);
        err->message = msg;
    }
    g_propagate_error(errp, err);
    return false;
}

static bool check_event_fired(int event, GError **errp)
{
    if (event_iotypes(event)) {
        return true;
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "blkdebug event '%s' is not supported by berth (berth fires none, read_aio, "
                "write_aio, pwritev, pwritev_zero, flush_to_os and flush_to_disk)",
                blkdebug_event_names[event]);
    return false;
}

static bool parse_inject(json_object *entry, guint index, bool keyval, BlkdebugInject *rule,
                         GError **errp)
{
    InjectOptions o = { 0 };

    if (!decode_entry(inject_members, "inject-error", entry, index, keyval, &o, errp) ||
        !check_event_fired(o.event, errp)) {
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
    *rule = (BlkdebugInject) {
        .event = o.event,
        .state = o.has_state ? o.state : 0,
        /* QEMU's default: every type but block-status. */
        .iotypes = o.has_iotype ? 1u << o.iotype : ALL_IOTYPES & ~(1u << BLKDEBUG_IO_BLOCK_STATUS),
        .error = o.has_errno ? (int) o.errno_value : EIO,
        .offset = o.has_sector && o.sector >= 0 ? o.sector * BDRV_SECTOR_SIZE : -1,
        .once = o.once,
        .immediately = o.immediately,
    };
    return true;
}

static bool parse_set_state(json_object *entry, guint index, bool keyval,
                            BlkdebugSetState *rule, GError **errp)
{
    SetStateOptions o = { 0 };

    if (!decode_entry(set_state_members, "set-state", entry, index, keyval, &o, errp) ||
        !check_event_fired(o.event, errp)) {
        return false;
    }
    *rule = (BlkdebugSetState) {
        .event = o.event,
        .state = o.has_state ? o.state : 0,
        .new_state = o.new_state,
    };
    return true;
}

/* The length of a list option, or -1 with errp set. */
static ssize_t list_length(json_object *list, const char *name, GError **errp)
{
    if (!json_object_is_type(list, json_type_array)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid parameter type for '%s', expected: array", name);
        return -1;
    }
    size_t n = json_object_array_length(list);
    if (n > BLKDEBUG_MAX_RULES) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "At most %d %s rules", BLKDEBUG_MAX_RULES, name);
        return -1;
    }
    return (ssize_t) n;
}

static bool parse_lists(BlkdebugRules *r, json_object *inject, json_object *set_state,
                        bool keyval, GError **errp)
{
    if (inject) {
        ssize_t n = list_length(inject, "inject-error", errp);
        if (n < 0) {
            return false;
        }
        r->inject = g_new0(BlkdebugInject, MAX(n, 1));
        r->active = g_new0(guint, MAX(n, 1));
        for (ssize_t i = 0; i < n; i++) {
            if (!parse_inject(json_object_array_get_idx(inject, i), i, keyval,
                              &r->inject[i], errp)) {
                return false;
            }
        }
        r->n_inject = n;
    }
    if (set_state) {
        ssize_t n = list_length(set_state, "set-state", errp);
        if (n < 0) {
            return false;
        }
        r->set_state = g_new0(BlkdebugSetState, MAX(n, 1));
        for (ssize_t i = 0; i < n; i++) {
            if (!parse_set_state(json_object_array_get_idx(set_state, i), i, keyval,
                                 &r->set_state[i], errp)) {
                return false;
            }
        }
        r->n_set_state = n;
    }
    return true;
}

bool blkdebug_rules_init(BlkdebugRules *r, json_object *inject, json_object *set_state,
                         bool keyval, GError **errp)
{
    memset(r, 0, sizeof(*r));
    g_mutex_init(&r->lock);
    r->state = 1;
    /* In fired_events' order, which is the order they fire in. */
    for (size_t e = 0; e < G_N_ELEMENTS(fired_events); e++) {
        int ev = 0;
        while (strcmp(blkdebug_event_names[ev], fired_events[e].event) != 0) {
            ev++;
        }
        for (int t = 0; t < BLKDEBUG_IO_N; t++) {
            if (fired_events[e].iotypes & (1u << t)) {
                g_assert(r->n_fired[t] < BLKDEBUG_MAX_FIRED);
                r->fired[t][r->n_fired[t]++] = ev;
            }
        }
    }
    if (!parse_lists(r, inject, set_state, keyval, errp)) {
        blkdebug_rules_clear(r);
        return false;
    }
    return true;
}

void blkdebug_rules_clear(BlkdebugRules *r)
{
    berth_mutex_clear(&r->lock);
    g_free(r->inject);
    g_free(r->set_state);
    g_free(r->active);
    memset(r, 0, sizeof(*r));
}

static bool acts_in(int64_t rule_state, int64_t state)
{
    return rule_state == 0 || rule_state == state;
}

/* One event: its inject-error rules that act replace the active ones (if
 * any act), and its first acting set-state rule sets the state it leaves.
 * Every rule sees the state the event found. Called with the lock held. */
static void fire_event(BlkdebugRules *r, int event)
{
    bool replaced = false;

    for (guint i = 0; i < r->n_inject; i++) {
        const BlkdebugInject *rule = &r->inject[i];
        if (rule->event != event || rule->removed || !acts_in(rule->state, r->state)) {
            continue;
        }
        if (!replaced) {
            r->n_active = 0;
            replaced = true;
        }
        r->active[r->n_active++] = i;
    }
    for (guint i = 0; i < r->n_set_state; i++) {
        const BlkdebugSetState *rule = &r->set_state[i];
        if (rule->event == event && acts_in(rule->state, r->state)) {
            r->state = rule->new_state;
            break;
        }
    }
}

static bool covers(const BlkdebugInject *rule, uint64_t offset, uint64_t bytes)
{
    return rule->offset < 0 ||
           (bytes && (uint64_t) rule->offset >= offset &&
            (uint64_t) rule->offset - offset < bytes);
}

BlkdebugVerdict blkdebug_rules_request(BlkdebugRules *r, int iotype, uint64_t offset,
                                       uint64_t bytes)
{
    BlkdebugVerdict v = { 0 };

    if (iotype < 0 || iotype >= BLKDEBUG_IO_N || (!r->n_inject && !r->n_set_state)) {
        return v;
    }
    berth_mutex_lock(&r->lock);
    for (guint e = 0; e < r->n_fired[iotype]; e++) {
        fire_event(r, r->fired[iotype][e]);
    }
    for (guint a = 0; a < r->n_active; a++) {
        BlkdebugInject *rule = &r->inject[r->active[a]];
        if (!(rule->iotypes & (1u << iotype)) || !covers(rule, offset, bytes)) {
            continue;
        }
        /* The first rule that covers the request decides, errno 0 too. */
        v.error = rule->error;
        v.immediately = rule->immediately;
        if (rule->error && rule->once) {
            rule->removed = true;
            memmove(&r->active[a], &r->active[a + 1], (r->n_active - a - 1) * sizeof(guint));
            r->n_active--;
        }
        break;
    }
    berth_mutex_unlock(&r->lock);
    return v;
}

int64_t blkdebug_rules_state(BlkdebugRules *r)
{
    berth_mutex_lock(&r->lock);
    int64_t state = r->state;
    berth_mutex_unlock(&r->lock);
    return state;
}
