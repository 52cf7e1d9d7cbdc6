/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rbd driver: a node backed by a Ceph RBD image through librbd, opened
 * with QEMU 7.2's BlockdevOptionsRbd (pool, namespace, image, conf,
 * snapshot, user, auth-client-required, key-secret, server; encrypt is
 * refused). This file decodes the options, connects (a shared cluster
 * handle, rbd-cluster.c) and opens the image once at open, so that
 * blockdev-add fails with an error naming the pool and image; rbd-io.c
 * does the requests. A snapshot is opened read-only, as in QEMU.
 *
 * Closing never waits on the caller's loop: rbd_close() writes librbd's
 * cache back and gives up the exclusive lock, which on a cluster that is
 * gone takes up to the OSD timeout, so the image, the pool context and the
 * cluster reference are released on a thread of their own; the process
 * waits for those threads at exit (bounded).
 */
#include "util/error.h"
#include "block/rbd-int.h"

#include "berth/io/secret.h"
#include "util/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* BlockdevOptionsRbd */
typedef struct {
    char *pool, *ns, *image, *conf, *snapshot, *user, *key_secret;
    bool has_ns, has_conf, has_snapshot, has_user, has_key_secret;
    json_object *encrypt, *auth, *server;
    bool has_encrypt, has_auth, has_server;
} RbdOptions;

/* In QEMU's order. encrypt, auth-client-required and server are checked
 * below (lists and a union the tables do not express). */
static const ArgSpec rbd_members[] = {
    ARG_REQUIRED("pool", ARG_STR, RbdOptions, pool),
    ARG_OPTIONAL("namespace", ARG_STR, RbdOptions, ns, has_ns),
    ARG_REQUIRED("image", ARG_STR, RbdOptions, image),
    ARG_OPTIONAL("conf", ARG_STR, RbdOptions, conf, has_conf),
    ARG_OPTIONAL("snapshot", ARG_STR, RbdOptions, snapshot, has_snapshot),
    ARG_OPTIONAL("encrypt", ARG_ANY, RbdOptions, encrypt, has_encrypt),
    ARG_OPTIONAL("user", ARG_STR, RbdOptions, user, has_user),
    ARG_OPTIONAL("auth-client-required", ARG_ANY, RbdOptions, auth, has_auth),
    ARG_OPTIONAL("key-secret", ARG_STR, RbdOptions, key_secret, has_key_secret),
    ARG_OPTIONAL("server", ARG_ANY, RbdOptions, server, has_server),
    ARG_TABLE_END
};


/* auth-client-required: a list of RbdAuthMode, joined for Ceph. */
static bool parse_auth(json_object *list, char **out, GError **errp)
{
    g_autoptr(GString) s = g_string_new(NULL);

    if (!json_object_is_type(list, json_type_array)) {
        return berth_error_invalid(errp, "Invalid parameter type for 'auth-client-required', "
                                   "expected: array");
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *mode;

        if (!json_object_is_type(e, json_type_string)) {
            return berth_error_invalid(errp, "Invalid parameter type for "
                                       "'auth-client-required[%zu]', expected: string", i);
        }
        mode = json_object_get_string(e);
        if (strcmp(mode, "cephx") != 0 && strcmp(mode, "none") != 0) {
            return berth_error_invalid(errp, "Parameter 'auth-client-required[%zu]' does not "
                                       "accept value '%s'", i, mode);
        }
        g_string_append_printf(s, "%s%s", s->len ? ";" : "", mode);
    }
    *out = s->len ? g_string_free(g_steal_pointer(&s), FALSE) : NULL;
    return true;
}

static const char *server_member(json_object *e, size_t i, const char *name, GError **errp)
{
    json_object *v;

    if (!json_object_object_get_ex(e, name, &v)) {
        berth_error_invalid(errp, "Parameter 'server[%zu].%s' is missing", i, name);
        return NULL;
    }
    if (!json_object_is_type(v, json_type_string)) {
        berth_error_invalid(errp, "Invalid parameter type for 'server[%zu].%s', expected: string",
                            i, name);
        return NULL;
    }
    return json_object_get_string(v);
}

/* server: a list of InetSocketAddressBase, as Ceph's mon_host. */
static bool parse_server(json_object *list, char **out, GError **errp)
{
    g_autoptr(GString) s = g_string_new(NULL);

    if (!json_object_is_type(list, json_type_array)) {
        return berth_error_invalid(errp, "Invalid parameter type for 'server', expected: array");
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *host, *port;

        if (!json_object_is_type(e, json_type_object)) {
            return berth_error_invalid(errp, "Invalid parameter type for 'server[%zu]', "
                                       "expected: object", i);
        }
        if (!(host = server_member(e, i, "host", errp)) ||
            !(port = server_member(e, i, "port", errp))) {
            return false;
        }
        json_object_object_foreach(e, key, val) {
            (void) val;
            if (strcmp(key, "host") != 0 && strcmp(key, "port") != 0) {
                return berth_error_invalid(errp, "Parameter 'server[%zu].%s' is unexpected", i,
                                           key);
            }
        }
        if (!*host || strpbrk(host, ",; ") || !*port || strpbrk(port, ",;: []")) {
            return berth_error_invalid(errp, "Invalid address in 'server[%zu]': '%s' port '%s'",
                                       i, host, port);
        }
        /* An IPv6 literal goes in brackets. */
        g_string_append_printf(s, strchr(host, ':') ? "%s[%s]:%s" : "%s%s:%s",
                               s->len ? "," : "", host, port);
    }
    *out = s->len ? g_string_free(g_steal_pointer(&s), FALSE) : NULL;
    return true;
}

static void state_free(RbdState *s)
{
    g_free(s->pool);
    g_free(s->ns);
    g_free(s->name);
    g_free(s->snap);
    g_free(s);
}

static const char *errno_text(int r)
{
    return g_strerror(-r);
}

static bool open_image(RbdState *s, const RbdOptions *o, bool read_only, GError **errp)
{
    rados_t h = rbd_cluster_handle(s->cluster);
    uint64_t features = 0, flags = 0;
    int r;

    r = rados_ioctx_create(h, o->pool, &s->ioctx);
    if (r < 0) {
        s->ioctx = NULL;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "error opening pool %s: %s",
                    o->pool, errno_text(r));
        return false;
    }
    if (o->has_ns && *o->ns) {
        bool exists = false;

        rados_ioctx_set_namespace(s->ioctx, o->ns);
        r = rbd_namespace_exists(s->ioctx, o->ns, &exists);
        if (r < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                        "error checking namespace '%s' in pool '%s': %s", o->ns, o->pool,
                        errno_text(r));
            return false;
        }
        if (!exists) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "namespace '%s' does not exist in pool '%s'", o->ns, o->pool);
            return false;
        }
    }
    r = read_only ? rbd_open_read_only(s->ioctx, o->image, &s->image,
                                       o->has_snapshot ? o->snapshot : NULL)
                  : rbd_open(s->ioctx, o->image, &s->image, NULL);
    if (r < 0) {
        s->image = NULL;
        if (o->has_snapshot) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                        "error opening snapshot '%s' of image '%s' in pool '%s': %s",
                        o->snapshot, o->image, o->pool, errno_text(r));
        } else {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                        "error opening image '%s' in pool '%s': %s", o->image, o->pool,
                        errno_text(r));
        }
        return false;
    }
    r = rbd_get_size(s->image, &s->image_size);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "error reading the size of image '%s' in pool '%s': %s", o->image, o->pool,
                    errno_text(r));
        return false;
    }
    /* An object map marked invalid says nothing; then every block is data. */
    if (rbd_get_features(s->image, &features) == 0 && (features & RBD_FEATURE_FAST_DIFF) &&
        rbd_get_flags(s->image, &flags) == 0 && !(flags & RBD_FLAG_FAST_DIFF_INVALID)) {
        s->fast_diff = true;
    }
    return true;
}

/*
 * Closes still running. rbd_close() writes back librbd's cache and gives
 * the image's lock up, so the process waits for them at exit (bounded: a
 * cluster that is gone cannot take the data anyway), else a clean shutdown
 * would lose acknowledged writes and leave the next opener to break the lock.
 */
#define RBD_EXIT_WAIT_US (20 * G_USEC_PER_SEC)
static GMutex releases_lock;
static GCond releases_cond;
static guint releases_pending;

static void wait_for_releases(void)
{
    gint64 deadline = g_get_monotonic_time() + RBD_EXIT_WAIT_US;

    berth_mutex_lock(&releases_lock);
    while (releases_pending > 0) {
        if (!berth_cond_wait_until(&releases_cond, &releases_lock, deadline)) {
            g_warning("rbd: %u image(s) still closing at exit; giving up on them",
                      releases_pending);
            break;
        }
    }
    berth_mutex_unlock(&releases_lock);
}

static void *release_thread(void *data)
{
    RbdState *s = data;

    if (s->image) {
        rbd_close(s->image);
    }
    if (s->ioctx) {
        rados_ioctx_destroy(s->ioctx);
    }
    if (s->cluster) {
        rbd_cluster_unref(s->cluster);
    }
    state_free(s);
    return NULL;
}

static void *release_thread_counted(void *data)
{
    release_thread(data);
    berth_mutex_lock(&releases_lock);
    releases_pending--;
    g_cond_broadcast(&releases_cond);
    berth_mutex_unlock(&releases_lock);
    return NULL;
}

/* Off the caller's thread; see the head comment. */
static void release_state(RbdState *s)
{
    GThread *t;

    if (!s->image && !s->ioctx) {
        release_thread(s);
        return;
    }
    static gsize exit_hook;

    if (g_once_init_enter(&exit_hook)) {
        atexit(wait_for_releases);
        g_once_init_leave(&exit_hook, 1);
    }
    berth_mutex_lock(&releases_lock);
    releases_pending++;
    berth_mutex_unlock(&releases_lock);
    t = g_thread_try_new("rbd-close", release_thread_counted, s, NULL);
    if (t) {
        g_thread_unref(t);
    } else {
        release_thread_counted(s);
    }
}

static bool rbd_open_node(BlockDriverState *bs, const void *options, GError **errp)
{
    const RbdOptions *o = options;
    g_autofree char *auth = NULL, *mon_host = NULL;
    char *key = NULL;
    RbdClusterParams p = { 0 };
    RbdState *s;
    bool ok;

    if (o->has_encrypt) {
        return berth_error_invalid(errp, "rbd: encrypt is not supported by this daemon "
                       "(open the image without it, or use qemu-storage-daemon)");
    }
    if ((o->has_auth && o->auth && !parse_auth(o->auth, &auth, errp)) ||
        (o->has_server && o->server && !parse_server(o->server, &mon_host, errp))) {
        return false;
    }
    if (!*o->pool || !*o->image) {
        return berth_error_invalid(errp, "rbd: pool and image must not be empty");
    }
    if (o->has_snapshot && !bs->read_only) {
        if (!bs->auto_read_only) {
            return berth_error_invalid(errp, "rbd snapshots are read-only");
        }
        bs->read_only = true;
    }
    if (o->has_key_secret) {
        key = berth_secret_lookup_as_base64(o->key_secret, errp);
        if (!key) {
            return false;
        }
    }

    p.conf = o->has_conf ? o->conf : NULL;
    p.user = o->has_user ? o->user : NULL;
    p.mon_host = mon_host;
    p.key = key;
    p.auth_client_required = auth;
    p.cache = !bs->cache_direct;

    s = g_new0(RbdState, 1);
    s->cluster = rbd_cluster_get(&p, errp);
    berth_secret_free(key, key ? strlen(key) : 0);
    if (!s->cluster) {
        g_prefix_error(errp, "pool '%s' image '%s': ", o->pool, o->image);
        state_free(s);
        return false;
    }
    ok = open_image(s, o, bs->read_only, errp);
    if (!ok) {
        release_state(s);
        return false;
    }
    s->pool = g_strdup(o->pool);
    s->ns = o->has_ns && *o->ns ? g_strdup(o->ns) : NULL;
    s->name = g_strdup(o->image);
    s->snap = o->has_snapshot ? g_strdup(o->snapshot) : NULL;
    s->cache = p.cache;

    bs->opaque = s;
    bs->size = s->image_size;
    bdrv_caps_own(bs, true);
    return true;
}

static void rbd_close_node(BlockDriverState *bs)
{
    release_state(bs->opaque);
}

/* QEMU's json:{} form of the node. */
static char *rbd_describe(BlockDriverState *bs, const void *options)
{
    const RbdOptions *o = options;
    g_autoptr(json_object) obj = json_object_new_object();

    json_object_object_add(obj, "driver", json_object_new_string("rbd"));
    json_object_object_add(obj, "pool", json_object_new_string(o->pool));
    if (o->has_ns) {
        json_object_object_add(obj, "namespace", json_object_new_string(o->ns));
    }
    json_object_object_add(obj, "image", json_object_new_string(o->image));
    if (o->has_conf) {
        json_object_object_add(obj, "conf", json_object_new_string(o->conf));
    }
    if (o->has_snapshot) {
        json_object_object_add(obj, "snapshot", json_object_new_string(o->snapshot));
    }
    if (o->has_user) {
        json_object_object_add(obj, "user", json_object_new_string(o->user));
    }
    if (o->has_server && o->server) {
        json_object_object_add(obj, "server", json_object_get(o->server));
    }
    return g_strdup_printf("json:%s", json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
}

/* block_resize: librbd resizes the image (a synchronous call, as in QEMU). */
static bool rbd_truncate_node(BlockDriverState *bs, uint64_t size, GError **errp)
{
    RbdState *s = bs->opaque;
    int r = rbd_resize(s->image, size);

    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r), "failed to resize rbd image: %s",
                    errno_text(r));
        return false;
    }
    __atomic_store_n(&s->image_size, size, __ATOMIC_RELAXED);
    return true;
}

const BlockDriver bdrv_rbd = {
    .name = "rbd",
    .options = rbd_members,
    .options_size = sizeof(RbdOptions),
    .open = rbd_open_node,
    .close = rbd_close_node,
    .submit = rbd_submit,
    .describe = rbd_describe,
    .truncate = rbd_truncate_node,
};
