/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The blkdebug filter: passes requests to its image child and fails those
 * that its inject-error rules, steered by its set-state rules, pick, for
 * tests of what a client sees when storage fails. Options are QEMU's where
 * berth has the feature; everything else QEMU's blkdebug accepts (a config
 * file, alignment and transfer limits, permission tweaks) is refused by
 * name rather than ignored. The rules and the node's state are
 * blkdebug-rules.c's (blkdebug-int.h says how they decide).
 *
 * berth's own option x-delay-ms holds every request that long (a timer on
 * the request's context, no thread) before it goes on, to make a slow
 * device; a rule with immediately=on fails its request without the delay.
 */
#include "blkdebug-int.h"

#include <errno.h>
#include <string.h>

typedef struct BlkdebugState {
    BlockDriverState *image;    /* bs->children's reference */
    BlkdebugRules rules;
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

#define BLKDEBUG_MAX_DELAY_MS 3600000

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
    blkdebug_rules_clear(&s->rules);
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
    if (!blkdebug_rules_init(&s->rules, o->has_inject_error ? o->inject_error : NULL,
                             o->has_set_state ? o->set_state : NULL, keyval, errp)) {
        g_free(s);
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
    bdrv_caps_from_child(bs, s->image);
    return true;
}

static void blkdebug_close(BlockDriverState *bs)
{
    blkdebug_free_state(bs->opaque);
}

static int request_iotype(const BdrvRequest *req)
{
    switch (req->op) {
    case BDRV_OP_READ: return BLKDEBUG_IO_READ;
    case BDRV_OP_WRITE: return BLKDEBUG_IO_WRITE;
    case BDRV_OP_WRITE_ZEROES: return BLKDEBUG_IO_WRITE_ZEROES;
    case BDRV_OP_DISCARD: return BLKDEBUG_IO_DISCARD;
    case BDRV_OP_FLUSH: return BLKDEBUG_IO_FLUSH;
    case BDRV_OP_BLOCK_STATUS: return BLKDEBUG_IO_BLOCK_STATUS;
    default: return -1;
    }
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
    BlkdebugVerdict v = blkdebug_rules_request(&s->rules, request_iotype(req), req->offset,
                                               req->bytes);

    if (v.error && (v.immediately || s->delay_ms == 0)) {
        bdrv_request_fail(req, v.error, "%s", g_strerror(v.error));
        return;
    }
    if (s->delay_ms == 0) {
        blkdebug_go(req);
        return;
    }
    req->ret = -v.error;
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
    if (o->has_set_state) {
        json_object_object_add(desc, "set-state", json_object_get(o->set_state));
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
