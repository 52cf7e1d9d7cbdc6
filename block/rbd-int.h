/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rbd driver's private parts: the shared cluster handles (rbd-cluster.c),
 * the per-node state, and the request path (rbd-io.c). rbd.c decodes the
 * options and opens the image.
 */
#ifndef BERTH_BLOCK_RBD_INT_H
#define BERTH_BLOCK_RBD_INT_H

#include "block/block-int.h"

#include <rados/librados.h>
#include <rbd/librbd.h>

G_BEGIN_DECLS

/* What identifies one connection to a cluster: nodes that agree on all of
 * it share one rados_t. Strings may be NULL (Ceph's defaults). */
typedef struct RbdClusterParams {
    const char *conf;           /* ceph.conf path */
    const char *user;           /* client id, "admin" by default */
    const char *mon_host;       /* from server=[...], overrides the conf */
    const char *key;            /* base64 key from key-secret */
    const char *auth_client_required;  /* "cephx;none" etc. */
    bool cache;                 /* rbd_cache (off with cache.direct=on) */
} RbdClusterParams;

typedef struct RbdCluster RbdCluster;

/*
 * A connected cluster handle for these parameters: an existing one with a
 * new reference, or a new connection (which blocks for at most the
 * configured client_mount_timeout). Control plane (main context).
 */
RbdCluster *rbd_cluster_get(const RbdClusterParams *p, GError **errp);
rados_t rbd_cluster_handle(RbdCluster *c);
/* Drop a reference; the last one shuts the connection down. Any thread. */
void rbd_cluster_unref(RbdCluster *c);

typedef struct RbdState {
    RbdCluster *cluster;
    rados_ioctx_t ioctx;
    rbd_image_t image;
    char *pool, *ns, *name, *snap;
    uint64_t image_size;        /* bytes; block_resize changes it (atomic) */
    bool fast_diff;             /* block status from the object map */
    bool cache;                 /* librbd caches writes: FUA needs a flush */
} RbdState;

/* The driver's submit(). */
void rbd_submit(BdrvRequest *req);

G_END_DECLS

#endif
