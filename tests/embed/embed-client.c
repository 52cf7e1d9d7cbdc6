/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A host program that uses berth's NBD client API (berth/nbd/client.h) with
 * nothing but `pkg-config --cflags --libs berth`.  To be self-contained it
 * also serves a memory node over a unix socket from a thread of its own
 * (the server runs on the global default context); the client connects to
 * it, negotiates, and keeps 32 writes and then 32 reads in flight on one
 * NBDClientSession driven by the main thread's own context.  Exit 0 only if
 * every byte round-trips.  docs/client.rst walks through this file.
 */
#include <berth/block/block.h>
#include <berth/nbd/client.h>
#include <berth/io/net-listener.h>
#include <berth/nbd/server.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536
#define N_REQUESTS 32

static volatile gint server_stop;

/* The server side: iterate the global default context until told to stop. */
static gpointer serve(G_GNUC_UNUSED gpointer data)
{
    GMainContext *def = g_main_context_default();
    g_main_context_acquire(def);
    while (!g_atomic_int_get(&server_stop)) {
        g_main_context_iteration(def, TRUE);
    }
    g_main_context_release(def);
    return NULL;
}

static gboolean wake(G_GNUC_UNUSED gpointer data)
{
    return G_SOURCE_REMOVE;
}

typedef struct {
    int pending;
    int failures;
} Progress;

static void one_done(const NBDClientResult *res, void *opaque)
{
    Progress *p = opaque;
    if (res->ret < 0) {
        g_printerr("embed-client: request failed: %s\n",
                   res->err ? res->err->message : g_strerror(-res->ret));
        p->failures++;
    }
    p->pending--;
}

/* Submit n requests of one kind and turn the context until all are answered. */
static bool run_batch(NBDClientSession *s, GMainContext *ctx, uint16_t cmd, uint8_t *buf)
{
    Progress p = { 0, 0 };
    for (int i = 0; i < N_REQUESTS; i++) {
        struct iovec iov = { buf + (size_t) i * CHUNK, CHUNK };
        p.pending++;
        nbd_client_session_submit(s, cmd, 0, (uint64_t) i * CHUNK, CHUNK, &iov, 1,
                                  one_done, &p);
    }
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (p.pending > 0 && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(ctx, TRUE);
    }
    return p.pending == 0 && p.failures == 0;
}

int main(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("embed-client-XXXXXX", &err);
    if (!dir) {
        g_printerr("embed-client: %s\n", err->message);
        return 1;
    }
    g_autofree char *path = g_build_filename(dir, "nbd.sock", NULL);

    /* Serve a 2 MiB memory node as export "disk". */
    json_object *opts = json_tokener_parse(
        "{\"driver\": \"memory\", \"node-name\": \"mem0\", \"size\": 2097152}");
    BlockDriverState *bs = bdrv_open(opts, false, &err);
    json_object_put(opts);
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = path };
    NBDServerConfig cfg = { .addr = &addr };
    NBDExport *exp = bs ? nbd_export_new(bs, 0, -1, 0, NULL, false, NULL, &err) : NULL;
    if (!exp || !nbd_export_set_name(exp, "disk", &err) || !nbd_server_start(&cfg, &err)) {
        g_printerr("embed-client: %s\n", err->message);
        return 1;
    }
    GThread *server = g_thread_new("server", serve, NULL);

    /* The client: connect, negotiate, then run a session on our own context. */
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    int fd = berth_socket_connect(&addr, &err);
    BerthChannel *plain = fd >= 0 ? berth_channel_socket_new(fd) : NULL;
    BerthChannel *ch = NULL;
    NBDExportInfo info;
    if (!plain || !nbd_receive_negotiate(plain, "disk", NULL, NULL, &info, &ch, &err)) {
        g_printerr("embed-client: %s\n", err->message);
        return 1;
    }
    g_print("embed-client: export 'disk': %" G_GUINT64_FORMAT " bytes, flags 0x%x, %s\n",
            info.size, info.flags,
            info.extended_headers ? "extended headers"
            : info.structured_reply ? "structured replies" : "simple replies");
    NBDClientSession *s = nbd_client_session_new(ch, &info, ctx, NULL, NULL);

    static uint8_t out[N_REQUESTS * CHUNK], in[N_REQUESTS * CHUNK];
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (uint8_t) (i * 7 + i / CHUNK);
    }
    bool ok = run_batch(s, ctx, NBD_CMD_WRITE, out) && run_batch(s, ctx, NBD_CMD_READ, in) &&
              memcmp(in, out, sizeof(in)) == 0;
    g_print("embed-client: %d writes and %d reads of %d bytes: %s\n", N_REQUESTS, N_REQUESTS,
            CHUNK, ok ? "data round-tripped" : "FAILED");

    nbd_client_session_free(s);
    berth_channel_unref(ch);
    berth_channel_unref(plain);
    nbd_export_info_clear(&info);
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);

    g_atomic_int_set(&server_stop, 1);
    g_idle_add(wake, NULL);
    g_thread_join(server);
    nbd_server_stop();
    nbd_export_close(exp);
    nbd_export_put(exp);
    bdrv_put(bs);
    bdrv_delete_all();
    unlink(path);
    rmdir(dir);
    return ok ? 0 : 1;
}
