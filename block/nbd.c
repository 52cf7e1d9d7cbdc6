/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The nbd block driver: a node backed by an export on any NBD server,
 * opened with QEMU's BlockdevOptionsNbd (server, export, tls-creds,
 * tls-hostname, reconnect-delay, open-timeout).  This file decodes the
 * options, connects once at open (so blockdev-add fails with an error that
 * names the address), and turns each block request into NBD requests that
 * fit the export's limits; the node's I/O thread runs them through the
 * reconnecting connection of include/berth/nbd/client-connection.h.
 */
#include "nbd-int.h"

#include "io/socket-address.h"
#include "util/iov.h"
#include "berth/util/qmp-command.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

/* Largest TRIM / WRITE_ZEROES / BLOCK_STATUS sent at once (compact headers). */
#define MAX_EFFECT_LENGTH (UINT32_C(1) << 31)
#define ZERO_BUF_MAX (1u << 20)

/* ---- options ------------------------------------------------------------------ */

/* BlockdevOptionsNbd */
typedef struct {
    BerthSocketAddressArgs server;
    char *export_name;
    bool has_export_name;
    char *tls_creds, *tls_hostname;
    bool has_tls_creds, has_tls_hostname;
    char *x_dirty_bitmap;
    bool has_x_dirty_bitmap;
    uint64_t reconnect_delay, open_timeout;
    bool has_reconnect_delay, has_open_timeout;
} NbdOptions;

/* BlockdevOptionsNbd's members after server, in QEMU's order. */
#define NBD_COMMON_MEMBERS \
    ARG_OPTIONAL("export", ARG_STR, NbdOptions, export_name, has_export_name), \
    ARG_OPTIONAL("tls-creds", ARG_STR, NbdOptions, tls_creds, has_tls_creds), \
    ARG_OPTIONAL("tls-hostname", ARG_STR, NbdOptions, tls_hostname, has_tls_hostname), \
    ARG_OPTIONAL("x-dirty-bitmap", ARG_STR, NbdOptions, x_dirty_bitmap, has_x_dirty_bitmap), \
    ARG_OPTIONAL("reconnect-delay", ARG_UINT, NbdOptions, reconnect_delay, \
                 has_reconnect_delay), \
    ARG_OPTIONAL("open-timeout", ARG_UINT, NbdOptions, open_timeout, has_open_timeout)

/* server is a flat SocketAddress: one table per address type. */
static const ArgSpec nbd_unix_members[] = {
    ARG_NESTED_AT("server", berth_socket_address_flat_unix, NbdOptions, server),
    NBD_COMMON_MEMBERS, ARG_TABLE_END
};
static const ArgSpec nbd_inet_members[] = {
    ARG_NESTED_AT("server", berth_socket_address_flat_inet, NbdOptions, server),
    NBD_COMMON_MEMBERS, ARG_TABLE_END
};
static const ArgSpec nbd_fd_members[] = {
    ARG_NESTED_AT("server", berth_socket_address_flat_fd, NbdOptions, server),
    NBD_COMMON_MEMBERS, ARG_TABLE_END
};

/* For query-qmp-schema: server is one of the three address forms above. */
static const ArgSpec nbd_schema_members[] = {
    { .name = "server", .type = ARG_ANY, .present_offset = ARG_NO_PRESENCE },
    NBD_COMMON_MEMBERS, ARG_TABLE_END
};

static const ArgSpec *nbd_select_options(json_object *options, GError **errp)
{
    json_object *server = NULL;
    if (!json_object_object_get_ex(options, "server", &server)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Parameter 'server' is missing");
        return NULL;
    }
    switch (berth_socket_address_args_type(options, "server.type", errp)) {
    case BERTH_ADDR_UNIX:
        return nbd_unix_members;
    case BERTH_ADDR_INET:
        return nbd_inet_members;
    case BERTH_ADDR_FD:
        return nbd_fd_members;
    default:
        return NULL;
    }
}

/* ---- requests ----------------------------------------------------------------- */

static struct iovec *iov_slice(const struct iovec *iov, int niov, uint64_t off, uint64_t len,
                               int *out_n)
{
    struct iovec *out = g_new(struct iovec, MAX(niov, 1));
    *out_n = berth_iov_slice(iov, niov, off, len, out, niov, NULL);
    return out;
}

static void sub_done(const NBDClientResult *res, void *opaque);

static void add_sub(NbdParent *p, GQueue *subs, uint16_t cmd, uint16_t flags, uint64_t offset,
                    uint64_t length, struct iovec *iov, int niov)
{
    NbdSub *sub = g_new0(NbdSub, 1);
    sub->parent = p;
    sub->req.cmd = cmd;
    sub->req.flags = flags;
    sub->req.offset = offset;
    sub->req.length = length;
    sub->req.iov = iov;
    sub->req.niov = niov;
    sub->req.cb = sub_done;
    sub->req.opaque = sub;
    p->pending++;
    g_queue_push_tail(subs, sub);
}

/* READ or WRITE, cut at the export's maximum block size. */
static void split_data(NbdParent *p, GQueue *subs, uint16_t cmd, uint16_t flags,
                       uint64_t offset, uint64_t bytes)
{
    const BdrvRequest *req = p->req;
    uint64_t chunk = p->st->info.max_block;
    for (uint64_t done = 0; done < bytes; done += chunk) {
        uint64_t len = MIN(chunk, bytes - done);
        int n;
        struct iovec *iov = iov_slice(req->iov, req->niov, done, len, &n);
        add_sub(p, subs, cmd, flags, offset + done, len, iov, n);
    }
}

/* TRIM / WRITE_ZEROES / CACHE, cut to what a compact header carries. */
static void split_effect(NbdParent *p, GQueue *subs, uint16_t cmd, uint16_t flags,
                         uint64_t offset, uint64_t bytes, uint64_t chunk)
{
    for (uint64_t done = 0; done < bytes; done += chunk) {
        add_sub(p, subs, cmd, flags, offset + done, MIN(chunk, bytes - done), NULL, 0);
    }
}

/* Write zeroes by writing a zero buffer, for servers without WRITE_ZEROES. */
static void split_zero_writes(NbdParent *p, GQueue *subs, uint16_t flags, uint64_t offset,
                              uint64_t bytes)
{
    NbdState *st = p->st;
    for (uint64_t done = 0; done < bytes; done += st->zero_buf_len) {
        uint64_t len = MIN(st->zero_buf_len, bytes - done);
        struct iovec *iov = g_new(struct iovec, 1);
        iov->iov_base = st->zero_buf;
        iov->iov_len = len;
        add_sub(p, subs, NBD_CMD_WRITE, flags, offset + done, len, iov, 1);
    }
}

static void parent_complete(NbdParent *p)
{
    bdrv_request_complete(p->req, p->ret, p->err);
    g_free(p);
}

/* A sub-request's outcome (frees the sub); completes its parent when last. */
static void sub_done(const NBDClientResult *res, void *opaque)
{
    NbdSub *sub = opaque;
    NbdParent *p = sub->parent;
    if (res->ret < 0 && p->ret == 0) {
        p->ret = res->ret;
        p->err = res->err ? g_error_copy(res->err) : NULL;
    }
    if (res->ret == 0 && sub->req.cmd == NBD_CMD_BLOCK_STATUS) {
        for (uint32_t i = 0; i < res->n_extents; i++) {
            uint32_t f = res->extents[i].flags;
            uint32_t status = ((f & NBD_STATE_HOLE) ? 0 : BDRV_BLOCK_DATA) |
                              ((f & NBD_STATE_ZERO) ? BDRV_BLOCK_ZERO : 0);
            if (!bdrv_request_add_extent(p->req, res->extents[i].length, status)) {
                break;
            }
        }
    }
    g_free(sub->req.iov);
    g_free(sub);
    if (--p->pending == 0) {
        parent_complete(p);
    }
}

/* I/O thread: turn one block request into sub-requests and send them. */
static void start_request(gpointer opaque)
{
    BdrvRequest *req = opaque;
    NbdState *st = req->bs->opaque;
    const NBDExportInfo *in = &st->info;
    NbdParent *p = g_new0(NbdParent, 1);
    p->req = req;
    p->st = st;
    GQueue subs = G_QUEUE_INIT;
    uint16_t fua = (req->flags & BDRV_REQ_FUA) && (in->flags & NBD_FLAG_SEND_FUA)
                   ? NBD_CMD_FLAG_FUA : 0;
    uint64_t bytes = req->bytes;

    switch (req->op) {
    case BDRV_OP_READ:
        split_data(p, &subs, NBD_CMD_READ, 0, req->offset, bytes);
        break;
    case BDRV_OP_WRITE:
        split_data(p, &subs, NBD_CMD_WRITE, fua, req->offset, bytes);
        break;
    case BDRV_OP_FLUSH:
        if (in->flags & NBD_FLAG_SEND_FLUSH) {
            add_sub(p, &subs, NBD_CMD_FLUSH, 0, 0, 0, NULL, 0);
        }
        break;
    case BDRV_OP_DISCARD:
        if (in->flags & NBD_FLAG_SEND_TRIM) {
            split_effect(p, &subs, NBD_CMD_TRIM, fua, req->offset, bytes, MAX_EFFECT_LENGTH);
        }
        break;
    case BDRV_OP_WRITE_ZEROES:
        if (in->flags & NBD_FLAG_SEND_WRITE_ZEROES) {
            uint16_t f = fua | ((req->flags & BDRV_REQ_MAY_UNMAP) ? 0 : NBD_CMD_FLAG_NO_HOLE);
            if ((req->flags & BDRV_REQ_NO_FALLBACK) && (in->flags & NBD_FLAG_SEND_FAST_ZERO)) {
                f |= NBD_CMD_FLAG_FAST_ZERO;
            }
            split_effect(p, &subs, NBD_CMD_WRITE_ZEROES, f, req->offset, bytes,
                         MAX_EFFECT_LENGTH);
        } else if (req->flags & BDRV_REQ_NO_FALLBACK) {
            g_free(p);
            bdrv_request_fail(req, ENOTSUP, "NBD server cannot write zeroes fast");
            return;
        } else {
            split_zero_writes(p, &subs, fua, req->offset, bytes);
        }
        break;
    case BDRV_OP_CACHE:
        if (in->flags & NBD_FLAG_SEND_CACHE) {
            split_effect(p, &subs, NBD_CMD_CACHE, 0, req->offset, bytes, in->max_block);
        }
        break;
    case BDRV_OP_BLOCK_STATUS:
        if (!in->base_allocation) {
            bdrv_request_add_extent(req, req->bytes, BDRV_BLOCK_DATA);
        } else if (bytes) {
            add_sub(p, &subs, NBD_CMD_BLOCK_STATUS, 0, req->offset,
                    MIN(bytes, MAX_EFFECT_LENGTH), NULL, 0);
        }
        break;
    }
    if (!p->pending) {
        parent_complete(p);
        return;
    }
    NbdSub *sub;
    while ((sub = g_queue_pop_head(&subs))) {
        nbd_client_connection_submit(st->conn, &sub->req);
    }
}

/* Any thread: hand the request to the node's I/O thread. */
static void nbd_submit(BdrvRequest *req)
{
    NbdState *st = req->bs->opaque;
    if (!berth_iothread_invoke(st->iothread, start_request, req, NULL)) {
        bdrv_request_fail(req, ESHUTDOWN, "NBD node is closing");
    }
}

/* ---- open / close ----------------------------------------------------------------- */

static NBDClientTarget *target_new(const NbdOptions *opts, GError **errp)
{
    NBDClientTarget *t = nbd_client_target_new();
    const BerthSocketAddressArgs *server = &opts->server;
    BerthSocketAddress view = berth_socket_address_args_view(server);
    switch (view.type) {
    case BERTH_ADDR_UNIX:
        t->addr_str = g_strdup(view.path);
        break;
    case BERTH_ADDR_INET:
        t->addr_str = strchr(view.host, ':')
            ? g_strdup_printf("[%s]:%s", view.host, view.port)
            : g_strdup_printf("%s:%s", view.host, view.port);
        break;
    default:
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "NBD server address type 'fd' is not supported");
        nbd_client_target_unref(t);
        return NULL;
    }
    t->addr = berth_socket_address_copy(&view);
    if (server->un.has_abstract && server->un.abstract) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Abstract unix sockets are not supported");
        nbd_client_target_unref(t);
        return NULL;
    }
    t->export_name = g_strdup(opts->has_export_name ? opts->export_name : "");
    /* QEMU's x-dirty-bitmap: block status reads this context instead of
     * base:allocation, its bit 0 (dirty) taken as NBD_STATE_HOLE - so dirty
     * ranges show as unallocated, which is how qemu-img map shows them. */
    t->meta_context = opts->has_x_dirty_bitmap ? g_strdup(opts->x_dirty_bitmap) : NULL;
    if (opts->has_tls_creds) {
        BerthTlsCreds *creds = berth_tls_creds_find(opts->tls_creds, errp);
        if (!creds) {
            nbd_client_target_unref(t);
            return NULL;
        }
        if (berth_tls_creds_get_endpoint(creds) != BERTH_TLS_ENDPOINT_CLIENT) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "Expecting TLS credentials with a client endpoint");
            nbd_client_target_unref(t);
            return NULL;
        }
        t->tls_creds = berth_tls_creds_ref(creds);
        /* As QEMU: the host name to check defaults to the host connected to. */
        t->tls_hostname = g_strdup(opts->has_tls_hostname ? opts->tls_hostname
                                   : view.type == BERTH_ADDR_INET ? view.host
                                   : NULL);
    } else if (opts->has_tls_hostname) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "tls-hostname requires tls-creds");
        nbd_client_target_unref(t);
        return NULL;
    }
    return t;
}

static void state_free(NbdState *st)
{
    if (st->tls_creds_id) {
        QmpObject *obj = qmp_object_find(st->tls_creds_id, NULL);
        if (obj) {
            qmp_object_unpin(obj);
        }
        g_free(st->tls_creds_id);
    }
    nbd_client_target_unref(st->target);
    nbd_export_info_clear(&st->info);
    g_free(st->zero_buf);
    g_free(st);
}

typedef struct {
    NbdState *st;
    BerthChannel *ch;
} ConnStart;

static void start_on_thread(gpointer opaque)
{
    ConnStart *cs = opaque;
    NbdState *st = cs->st;
    st->conn = nbd_client_connection_new(st->target, cs->ch, &st->info, st->reconnect_delay,
                                         berth_iothread_get_context(st->iothread));
}

/* Start the I/O thread with a connection on `ch` (taken over). */
static bool nbd_conn_start(NbdState *st, BerthChannel *ch, GError **errp)
{
    st->iothread = berth_iothread_new("nbd-client", errp);
    if (!st->iothread) {
        berth_channel_unref(ch);
        return false;
    }
    ConnStart cs = { .st = st, .ch = ch };
    berth_iothread_run_sync(st->iothread, start_on_thread, &cs);
    return true;
}

static void stop_on_thread(gpointer opaque)
{
    NbdState *st = opaque;
    nbd_client_connection_free(st->conn);
    st->conn = NULL;
}

/* Stop the I/O thread: DISC, cancel attempts, join.  No request may be pending. */
static void nbd_conn_stop(NbdState *st)
{
    berth_iothread_run_sync(st->iothread, stop_on_thread, st);
    berth_iothread_free(st->iothread);
    st->iothread = NULL;
}

static bool nbd_open(BlockDriverState *bs, const void *options, GError **errp)
{
    const NbdOptions *opts = options;
    NbdState *st = g_new0(NbdState, 1);
    st->target = target_new(opts, errp);
    if (!st->target) {
        state_free(st);
        return false;
    }
    st->reconnect_delay = opts->reconnect_delay;

    BerthChannel *ch = NULL;
    /* The daemon goes on serving its other clients meanwhile: it may be
     * connecting to one of its own exports, or to a slow peer. */
    if (!nbd_client_target_open(st->target, MIN(opts->open_timeout, (uint64_t) G_MAXINT32),
                                &ch, &st->info, errp)) {
        state_free(st);
        return false;
    }
    const NBDExportInfo *in = &st->info;
    if (opts->has_x_dirty_bitmap && !in->base_allocation) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "requested x-dirty-bitmap %s not found", opts->x_dirty_bitmap);
        berth_channel_unref(ch);
        state_free(st);
        return false;
    }
    if ((in->flags & NBD_FLAG_READ_ONLY) && !bs->read_only) {
        if (!bs->auto_read_only) {
            /* QEMU's words (bdrv_apply_auto_read_only). */
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                                "NBD export is read only");
            berth_channel_unref(ch);
            state_free(st);
            return false;
        }
        bs->read_only = true;
    }
    if (opts->has_tls_creds) {
        st->tls_creds_id = g_strdup(opts->tls_creds);
        QmpObject *obj = qmp_object_find(st->tls_creds_id, NULL);
        if (obj) {
            qmp_object_pin(obj);
        }
    }
    st->zero_buf_len = MIN(in->max_block, ZERO_BUF_MAX);
    st->zero_buf = g_malloc0(st->zero_buf_len);

    bs->opaque = st;
    bs->size = in->size;
    bs->can_flush = in->flags & NBD_FLAG_SEND_FLUSH;
    bs->can_fua = in->flags & NBD_FLAG_SEND_FUA;
    bs->can_discard = in->flags & NBD_FLAG_SEND_TRIM;
    bs->can_write_zeroes_fast = in->flags & NBD_FLAG_SEND_FAST_ZERO;
    bs->has_block_status = in->base_allocation;
    bs->coherent = in->flags & NBD_FLAG_CAN_MULTI_CONN;
    bs->request_alignment = in->min_block;
    if (!nbd_conn_start(st, ch, errp)) {
        bs->opaque = NULL;
        state_free(st);
        return false;
    }
    return true;
}

static void nbd_close(BlockDriverState *bs)
{
    NbdState *st = bs->opaque;
    nbd_conn_stop(st);
    state_free(st);
}

/* QEMU's pseudo-URI for the node, as query-named-block-nodes shows it. */
static char *nbd_describe(BlockDriverState *bs, const void *opts)
{
    const NBDClientTarget *t = ((NbdState *) bs->opaque)->target;
    if (t->addr->type == BERTH_ADDR_UNIX) {
        return g_strdup_printf("nbd+unix:///%s?socket=%s", t->export_name, t->addr->path);
    }
    return g_strdup_printf("nbd://%s/%s", t->addr_str, t->export_name);
}

const BlockDriver bdrv_nbd = {
    .name = "nbd",
    .options = nbd_unix_members,
    .options_size = sizeof(NbdOptions),
    .select_options = nbd_select_options,
    .schema_options = nbd_schema_members,
    .exact_size = true,
    .open = nbd_open,
    .close = nbd_close,
    .submit = nbd_submit,
    .describe = nbd_describe,
};
