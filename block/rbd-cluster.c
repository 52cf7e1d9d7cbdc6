/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared cluster handles for the rbd driver. A rados_t costs threads,
 * sockets to every monitor and OSD, and a session on the monitor, so the
 * nodes that name the same cluster the same way (ceph.conf, client id,
 * monitors, key, auth modes, cache mode) share one, reference counted. The
 * table is keyed by a digest of those parameters, so no key sits in it in
 * the clear.
 *
 * Timeouts: Ceph's defaults let a request to a dead cluster wait forever
 * (rados_osd_op_timeout and rados_mon_op_timeout are 0) and a connection
 * attempt wait five minutes (client_mount_timeout 300). A gateway must
 * answer its clients, so where the configuration leaves them at those
 * defaults berth uses RBD_DEFAULT_TIMEOUT instead: requests to a cluster
 * that went away fail with an error within it, and blockdev-add gives up
 * connecting within it. A value set in ceph.conf (or CEPH_ARGS) wins.
 */
#include "block/rbd-int.h"

#include <errno.h>
#include <string.h>

#define RBD_DEFAULT_TIMEOUT "30"

struct RbdCluster {
    gint refcnt;                /* atomic; the table holds none */
    char *digest;
    rados_t handle;
};

static GMutex clusters_lock;
static GHashTable *clusters;    /* digest -> RbdCluster (weak) */

static char *params_digest(const RbdClusterParams *p)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    const char *parts[] = {
        p->conf, p->user, p->mon_host, p->key, p->auth_client_required,
        p->cache ? "cache" : "nocache",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(parts); i++) {
        /* NULL and "" differ; a NUL separates the parts. */
        const char *s = parts[i] ? parts[i] : "";
        g_checksum_update(sum, (const guchar *) (parts[i] ? "1" : "0"), 1);
        g_checksum_update(sum, (const guchar *) s, strlen(s) + 1);
    }
    return g_strdup(g_checksum_get_string(sum));
}

static void set_default(rados_t h, const char *key, const char *ceph_default)
{
    char buf[64];

    if (rados_conf_get(h, key, buf, sizeof(buf)) == 0 && strcmp(buf, ceph_default) == 0) {
        rados_conf_set(h, key, RBD_DEFAULT_TIMEOUT);
    }
}

static bool conf_set(rados_t h, const char *key, const char *value, GError **errp)
{
    int r = rados_conf_set(h, key, value);

    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "error setting Ceph option '%s': %s", key, g_strerror(-r));
        return false;
    }
    return true;
}

static bool cluster_connect(const RbdClusterParams *p, rados_t *out, GError **errp)
{
    rados_t h;
    int r = rados_create(&h, p->user);

    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "error initializing the Ceph client: %s", g_strerror(-r));
        return false;
    }
    if (p->conf) {
        r = rados_conf_read_file(h, p->conf);
        if (r < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                        "error reading Ceph configuration '%s': %s", p->conf, g_strerror(-r));
            goto fail;
        }
    } else {
        /* The default search path; none found is fine with server=. */
        rados_conf_read_file(h, NULL);
    }
    /* CEPH_ARGS, as the ceph tools honour it. */
    rados_conf_parse_env(h, NULL);

    set_default(h, "rados_osd_op_timeout", "0");
    set_default(h, "rados_mon_op_timeout", "0");
    set_default(h, "client_mount_timeout", "300");

    if ((p->mon_host && !conf_set(h, "mon_host", p->mon_host, errp)) ||
        (p->key && !conf_set(h, "key", p->key, errp)) ||
        (p->auth_client_required &&
         !conf_set(h, "auth_client_required", p->auth_client_required, errp)) ||
        !conf_set(h, "rbd_cache", p->cache ? "true" : "false", errp)) {
        goto fail;
    }

    r = rados_connect(h);
    if (r < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-r),
                    "error connecting to the Ceph cluster%s%s: %s",
                    p->conf ? " of " : "", p->conf ? p->conf : "", g_strerror(-r));
        goto fail;
    }
    *out = h;
    return true;

fail:
    rados_shutdown(h);
    return false;
}

RbdCluster *rbd_cluster_get(const RbdClusterParams *p, GError **errp)
{
    g_autofree char *digest = params_digest(p);
    RbdCluster *c;
    rados_t h;

    berth_mutex_lock(&clusters_lock);
    if (!clusters) {
        clusters = g_hash_table_new(g_str_hash, g_str_equal);
    }
    c = g_hash_table_lookup(clusters, digest);
    /* One that is going away (count already 0) is not reused. */
    if (c && g_atomic_int_get(&c->refcnt) > 0) {
        g_atomic_int_inc(&c->refcnt);
        berth_mutex_unlock(&clusters_lock);
        return c;
    }
    berth_mutex_unlock(&clusters_lock);

    /* Connecting blocks; do it without the lock, so that closes go on. */
    if (!cluster_connect(p, &h, errp)) {
        return NULL;
    }
    c = g_new0(RbdCluster, 1);
    c->refcnt = 1;
    c->digest = g_steal_pointer(&digest);
    c->handle = h;
    berth_mutex_lock(&clusters_lock);
    /* Replaces a dying entry; that one no longer removes itself. */
    g_hash_table_insert(clusters, c->digest, c);
    berth_mutex_unlock(&clusters_lock);
    return c;
}

rados_t rbd_cluster_handle(RbdCluster *c)
{
    return c->handle;
}

void rbd_cluster_unref(RbdCluster *c)
{
    berth_mutex_lock(&clusters_lock);
    if (!g_atomic_int_dec_and_test(&c->refcnt)) {
        berth_mutex_unlock(&clusters_lock);
        return;
    }
    if (g_hash_table_lookup(clusters, c->digest) == c) {
        g_hash_table_remove(clusters, c->digest);
    }
    berth_mutex_unlock(&clusters_lock);
    rados_shutdown(c->handle);
    g_free(c->digest);
    g_free(c);
}
