/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server object and the lifetime of a connection: listeners that
 * accept sockets, the list of live clients with max-connections, and
 * nbd_conn_new/close, which tie a connection to its channel, its export
 * and its close callback (run exactly once, whoever ends the connection).
 */
#include "io/tls.h"
#include "server-int.h"

#include "berth/io/tls-creds.h"
#include "berth/util/qmp-command.h"

#include <gio/gio.h>

static struct {
    bool running;
    GPtrArray *listeners;   /* BerthListener * */
    char *tls_creds;
    char *tls_authz;
    guint max_connections;
    guint handshake_max_seconds;
    GList *clients;         /* NBDConn *, one reference each */
    guint n_clients;
} server;

static uint64_t next_client_id = 1;

/* The host's notifier (nbd_server_set_client_closed_notify). */
static NBDServerClientClosedFunc client_closed_notify;
static gpointer client_closed_opaque;

void nbd_server_set_client_closed_notify(NBDServerClientClosedFunc fn, gpointer opaque)
{
    client_closed_notify = fn;
    client_closed_opaque = opaque;
}

static void update_listeners(void)
{
    if (!server.listeners) {
        return;
    }
    bool full = server.max_connections && server.n_clients >= server.max_connections;
    for (guint i = 0; i < server.listeners->len; i++) {
        berth_listener_pause(g_ptr_array_index(server.listeners, i), full);
    }
}

static void on_server_client_closed(NBDConn *client, bool negotiated)
{
    GList *link = g_list_find(server.clients, client);
    if (!link) {
        return;
    }
    server.clients = g_list_delete_link(server.clients, link);
    server.n_clients--;
    update_listeners();
    nbd_conn_put(client);
    if (client_closed_notify) {
        client_closed_notify(negotiated, server.n_clients, client_closed_opaque);
    }
}

static NBDConn *client_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                             const char *tls_authz, guint handshake_max_seconds,
                             void (*close_cb)(NBDConn *client, bool negotiated));

static void on_accept(int fd, gpointer opaque)
{
    BerthChannel *ch = berth_channel_socket_new(fd);
    NBDConn *client = client_new(NULL, ch, server.tls_creds, server.tls_authz,
                                   server.handshake_max_seconds, on_server_client_closed);
    berth_channel_unref(ch);
    /* The client may already have failed and closed inside nbd_conn_new. */
    if (client->phase != NBD_CONN_CLOSED) {
        server.clients = g_list_prepend(server.clients, client);
        server.n_clients++;
        update_listeners();
    } else {
        nbd_conn_put(client);
    }
}

static void pin_object(const char *id, bool pin)
{
    QmpObject *obj = id ? qmp_object_find(id, NULL) : NULL;
    if (!obj) {
        return; /* already gone at shutdown (qmp_object_del_all) */
    }
    if (pin) {
        qmp_object_pin(obj);
    } else {
        qmp_object_unpin(obj);
    }
}

bool nbd_server_start(const NBDServerConfig *cfg, GError **errp)
{
    if (server.running) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS, "NBD server already running");
        return false;
    }
    if (cfg->tls_authz && !cfg->tls_creds) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'tls-authz' is only supported with 'tls-creds'");
        return false;
    }
    if (cfg->tls_creds) {
        BerthTlsCreds *creds = berth_tls_creds_find(cfg->tls_creds, errp);
        if (!creds) {
            return false;
        }
        if (berth_tls_creds_get_endpoint(creds) != BERTH_TLS_ENDPOINT_SERVER) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "Expecting TLS credentials with a server endpoint");
            return false;
        }
    }
    if (cfg->tls_authz && !berth_authz_find(cfg->tls_authz, errp)) {
        return false;
    }
    BerthListener *l = berth_listener_new(cfg->addr, NULL, on_accept, NULL, errp);
    if (!l) {
        return false;
    }
    /* Clients look the objects up by id at STARTTLS: keep them from object-del. */
    pin_object(cfg->tls_creds, true);
    pin_object(cfg->tls_authz, true);
    server.listeners = g_ptr_array_new();
    g_ptr_array_add(server.listeners, l);
    server.tls_creds = g_strdup(cfg->tls_creds);
    server.tls_authz = g_strdup(cfg->tls_authz);
    server.max_connections = cfg->max_connections;
    server.handshake_max_seconds = cfg->handshake_max_seconds ? cfg->handshake_max_seconds
                                                              : NBD_HANDSHAKE_DEFAULT_SECONDS;
    server.running = true;
    nbd_export_connection_limit_changed();
    return true;
}

void nbd_server_stop(void)
{
    if (!server.running) {
        return;
    }
    for (guint i = 0; i < server.listeners->len; i++) {
        berth_listener_free(g_ptr_array_index(server.listeners, i));
    }
    g_clear_pointer(&server.listeners, g_ptr_array_unref);
    while (server.clients) {
        nbd_conn_close(server.clients->data);
    }
    pin_object(server.tls_creds, false);
    pin_object(server.tls_authz, false);
    g_clear_pointer(&server.tls_creds, g_free);
    g_clear_pointer(&server.tls_authz, g_free);
    server.running = false;
    server.max_connections = 0;
    server.handshake_max_seconds = 0;
    nbd_export_connection_limit_changed();
}

bool nbd_server_is_running(void)
{
    return server.running;
}

int nbd_server_get_port(void)
{
    if (!server.listeners || server.listeners->len == 0) {
        return 0;
    }
    return berth_listener_get_port(g_ptr_array_index(server.listeners, 0));
}

guint nbd_server_get_max_connections(void)
{
    return server.running ? server.max_connections : 0;
}

guint nbd_server_get_handshake_max_seconds(void)
{
    return server.running ? server.handshake_max_seconds : 0;
}

void nbd_server_foreach_client(void (*fn)(NBDConn *client, gpointer opaque), gpointer opaque)
{
    GList *copy = g_list_copy(server.clients);
    for (GList *it = g_list_last(copy); it; it = it->prev) {
        fn(it->data, opaque);
    }
    g_list_free(copy);
}

NBDConn *nbd_server_find_client(uint64_t id)
{
    for (GList *it = server.clients; it; it = it->next) {
        NBDConn *c = it->data;
        if (c->id == id) {
            return c;
        }
    }
    return NULL;
}

/* The single place where a client's close callback runs. */
static void nbd_conn_closed(NBDConn *client)
{
    if (client->close_cb_done) {
        return;
    }
    client->close_cb_done = true;
    if (client->negotiated) {
        g_info("NBD client %s disconnected from export '%s'", berth_channel_peer(client->ch),
               client->exp && client->exp->name ? client->exp->name : "");
    }
    if (client->close_cb) {
        client->close_cb(client, client->negotiated);
    }
}

static NBDConn *client_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                             const char *tls_authz, guint handshake_max_seconds,
                             void (*close_cb)(NBDConn *client, bool negotiated))
{
    NBDConn *client = g_new0(NBDConn, 1);
    client->refcount = 1;
    client->id = next_client_id++;
    client->ch = berth_channel_ref(channel);
    client->tls_creds = g_strdup(tls_creds);
    client->tls_authz = g_strdup(tls_authz);
    client->close_cb = close_cb;
    client->connected_since = g_get_real_time();
    client->phase = NBD_CONN_HANDSHAKE;
    client->handshake_max_seconds = handshake_max_seconds;
    if (exp) {
        client->exp = nbd_export_get(exp);
        nbd_export_attach_client(exp, client);
    }
    nbd_conn_io_start(client);
    nbd_handshake_start(client);
    return client;
}

NBDConn *nbd_conn_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                          const char *tls_authz,
                          void (*close_cb)(NBDConn *client, bool negotiated))
{
    return client_new(exp, channel, tls_creds, tls_authz, NBD_HANDSHAKE_DEFAULT_SECONDS,
                      close_cb);
}

NBDConn *nbd_conn_get(NBDConn *client)
{
    g_atomic_int_inc(&client->refcount);
    return client;
}

static void client_free(NBDConn *client)
{
    g_assert(client->phase == NBD_CONN_CLOSED);
    if (client->exp) {
        nbd_export_put(client->exp);
    }
    if (client->ctx) {
        g_main_context_unref(client->ctx);
    }
    berth_channel_unref(client->ch);
    g_free(client->inbuf);
    g_free(client->tls_creds);
    g_free(client->tls_authz);
    g_free(client);
}

/* Each g_main_context_invoke() below hands the client to another thread
 * through GLib, which TSan cannot see: released before, acquired in the
 * callback (util/tsan.h). */
static gboolean client_free_on_main(gpointer opaque)
{
    berth_tsan_acquire(opaque);
    client_free(opaque);
    return G_SOURCE_REMOVE;
}

void nbd_conn_put(NBDConn *client)
{
    if (!client || !g_atomic_int_dec_and_test(&client->refcount)) {
        return;
    }
    /* Exports and their table belong to the main context. */
    if (client->ctx && g_main_context_is_owner(client->ctx)) {
        berth_tsan_release(client);
        g_main_context_invoke(NULL, client_free_on_main, client);
        return;
    }
    client_free(client);
}

/* The client's own thread: stop its I/O. False if it was already stopped. */
static bool client_stop_here(NBDConn *client)
{
    if (client->phase == NBD_CONN_CLOSED) {
        return false;
    }
    nbd_conn_get(client);
    client->phase = NBD_CONN_CLOSED;
    nbd_conn_io_stop(client);
    berth_channel_shutdown(client->ch);
    nbd_handshake_cleanup(client);
    nbd_transmission_cleanup(client);
    nbd_conn_put(client);
    return true;
}

/* The main context: leave the export and tell the owner, once. */
static void client_closed_on_main(NBDConn *client)
{
    if (client->main_closed) {
        return;
    }
    client->main_closed = true;
    nbd_conn_get(client);
    if (client->exp) {
        nbd_export_detach_client(client->exp, client);
    }
    nbd_conn_closed(client);
    nbd_conn_put(client);
}

static gboolean client_closed_cb(gpointer opaque)
{
    berth_tsan_acquire(opaque);
    client_closed_on_main(opaque);
    return G_SOURCE_REMOVE;
}

typedef struct {
    NBDConn *client;
    GMutex lock;
    GCond cond;
    gint done;                  /* atomic, so that it orders what the stop wrote */
} StopCall;

static gboolean stop_in_client_thread(gpointer opaque)
{
    StopCall *call;

    berth_tsan_acquire(opaque);   /* before reading the call: pairs below */
    call = opaque;
    client_stop_here(call->client);
    /* Answers the node already gave (memory, null, cached file data) wait
     * in this context's completion queue, holding references to the
     * client: deliver them now, so it goes with this close. */
    bdrv_dispatch_completions();
    berth_mutex_lock(&call->lock);
    g_atomic_int_set(&call->done, 1);
    g_cond_signal(&call->cond);
    berth_mutex_unlock(&call->lock);
    return G_SOURCE_REMOVE;
}

/*
 * The main context closes a client that lives on an I/O thread: that
 * thread stops it (the main context must not touch its I/O state), and we
 * wait, so that callers see it closed on return as they always have. The
 * I/O thread never waits for the main context, so this cannot deadlock;
 * the export's context is run until the export is freed (server.h).
 */
static void client_stop_from_main(NBDConn *client)
{
    StopCall call = { .client = client };

    g_mutex_init(&call.lock);
    g_cond_init(&call.cond);
    berth_tsan_release(&call);   /* covers the call and the client */
    g_main_context_invoke(client->ctx, stop_in_client_thread, &call);
    berth_mutex_lock(&call.lock);
    while (!g_atomic_int_get(&call.done)) {
        berth_cond_wait(&call.cond, &call.lock);
    }
    berth_mutex_unlock(&call.lock);
    g_cond_clear(&call.cond);
    berth_mutex_clear(&call.lock);
}

void nbd_conn_close(NBDConn *client)
{
    if (!client->ctx) {
        /* Never handed over: everything happens here, on the main context. */
        if (client->phase == NBD_CONN_CLOSED) {
            return;
        }
        nbd_conn_get(client);
        client_stop_here(client);
        client_closed_on_main(client);
        nbd_conn_put(client);
        return;
    }
    if (g_main_context_is_owner(client->ctx)) {
        /* The I/O thread ends its own client (peer left, protocol error). */
        if (client_stop_here(client)) {
            berth_tsan_release(client);
            g_main_context_invoke_full(NULL, G_PRIORITY_DEFAULT, client_closed_cb,
                                       nbd_conn_get(client),
                                       (GDestroyNotify) nbd_conn_put);
        }
        return;
    }
    if (client->main_closed) {
        return;
    }
    nbd_conn_get(client);
    client_stop_from_main(client);
    client_closed_on_main(client);
    nbd_conn_put(client);
}

GMainContext *nbd_conn_get_context(NBDConn *client)
{
    return client->ctx;
}

void nbd_conn_get_info(NBDConn *client, NBDConnInfo *info)
{
    info->id = client->id;
    info->export_name = client->negotiated && client->exp ? client->exp->name : NULL;
    info->peer = berth_channel_peer(client->ch);
    info->connected_since = client->connected_since;
    info->in_flight = __atomic_load_n(&client->in_flight, __ATOMIC_RELAXED);
    nbd_stats_copy(&info->stats, &client->stats);
    info->tls_identity = client->tls_active ? berth_tls_peer_identity(client->ch) : NULL;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    info->has_peer_cred = berth_channel_peer_cred(client->ch, &pid, &uid, &gid, NULL);
    info->peer_pid = info->has_peer_cred ? pid : 0;
    info->peer_uid = info->has_peer_cred ? uid : 0;
}
