/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server as the handshake and transmission targets see it: for
 * each input, fresh nodes and exports, one real NBDConn (nbd_conn_new,
 * as the server's listener makes them) on a socketpair, the input played
 * into it by a FuzzPeer, and everything taken down again once the
 * connection has closed, so that no state carries from one input to the
 * next and LeakSanitizer sees each input's memory come back.
 *
 * The exports: "disk", a writable 1 TiB memory node (sparse: memory is
 * spent only on what the input writes); "ro", a read-only 1 MiB memory
 * node with a description; and "" (the default), a 64 MiB null-co node
 * that reads zeroes. With tls, the client must STARTTLS with PSK
 * credentials "tls0" first.
 *
 * Ownership: everything made here is freed by fuzz_nbd_serve() before it
 * returns. Threads: the main context's thread.
 */
#ifndef BERTH_TESTS_FUZZ_NBD_SERVER_H
#define BERTH_TESTS_FUZZ_NBD_SERVER_H

#include "fuzz-util.h"

#include "berth/block/block-backend.h"
#include "berth/block/block.h"
#include "berth/io/tls-creds.h"
#include "berth/nbd/server.h"
#include "berth/qapi/qapi.h"
#include "berth/util/qmp-command.h"

#include <json-c/json.h>

static inline BlockDriverState *fuzz_node(const char *json)
{
    json_object *opts = json_tokener_parse(json);
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(opts, false, &err);
    json_object_put(opts);
    if (!bs) {
        fuzz_fail("node %s: %s", json, err->message);
    }
    return bs;
}

static inline NBDExport *fuzz_export(BlockDriverState *bs, bool read_only, const char *name,
                                     const char *description)
{
    GError *err = NULL;
    NBDExport *exp = nbd_export_new(bs, 0, -1, read_only ? NBD_EXPORT_FLAG_READ_ONLY : 0,
                                    NULL, false, NULL, &err);
    if (!exp || !nbd_export_set_name(exp, name, &err)) {
        fuzz_fail("export %s: %s", name, err->message);
    }
    bdrv_put(bs);
    nbd_export_set_description(exp, description);
    return exp;
}

/* Once: the object types (for tls-creds-psk) and PSK server credentials. */
static inline void fuzz_nbd_server_init(void)
{
    fuzz_glib_setup();
    qapi_init();
    g_autofree char *keys = g_build_filename(fuzz_tmpdir(), "keys.psk", NULL);
    if (!g_file_set_contents(keys, "qemu:0123456789abcdef0123456789abcdef\n", -1, NULL)) {
        fuzz_fail("cannot write %s", keys);
    }
    GError *err = NULL;
    BerthTlsCreds *creds = berth_tls_creds_new_psk(fuzz_tmpdir(), BERTH_TLS_ENDPOINT_SERVER,
                                                   NULL, NULL, &err);
    if (!creds || !qmp_object_add("tls0", qmp_object_type_find(BERTH_TYPE_TLS_CREDS_PSK),
                                  creds, &err)) {
        fuzz_fail("PSK credentials: %s", err->message);
    }
    g_unlink(keys);
}

static bool fuzz_client_closed;

static void fuzz_on_client_close(NBDConn *client, bool negotiated)
{
    fuzz_client_closed = true;
}

static inline bool fuzz_is_client_closed(gpointer opaque)
{
    return fuzz_client_closed;
}

/* Serve one connection whose peer sends prefix, then data, then hangs up. */
static inline void fuzz_nbd_serve(bool tls, const uint8_t *prefix, size_t prefix_len,
                                  const uint8_t *data, size_t size)
{
    NBDExport *exps[] = {
        fuzz_export(fuzz_node("{\"driver\": \"memory\", \"node-name\": \"disk\", "
                              "\"size\": 1099511627776}"), false, "disk", NULL),
        fuzz_export(fuzz_node("{\"driver\": \"memory\", \"node-name\": \"ro\", "
                              "\"size\": 1048576}"), true, "ro", "a read-only disk"),
        fuzz_export(fuzz_node("{\"driver\": \"null-co\", \"node-name\": \"zero\", "
                              "\"size\": 67108864, \"read-zeroes\": true}"), false, "", NULL),
    };
    /* The peer's stream: the fixed part, then the input, in one buffer. */
    g_autofree uint8_t *stream = g_malloc(prefix_len + size + 1);
    if (prefix_len) {
        memcpy(stream, prefix, prefix_len);
    }
    if (size) {
        memcpy(stream + prefix_len, data, size);
    }

    int sv[2];
    fuzz_socketpair(sv);
    BerthChannel *ch = berth_channel_socket_new(sv[0]);
    fuzz_client_closed = false;
    NBDConn *client = nbd_conn_new(NULL, ch, tls ? "tls0" : NULL, NULL,
                                       fuzz_on_client_close);
    berth_channel_unref(ch);

    FuzzPeer peer;
    fuzz_peer_init(&peer, sv[1], stream, prefix_len + size);
    fuzz_run_until(&peer, fuzz_is_client_closed, NULL, "the NBD connection");
    fuzz_peer_close(&peer);
    nbd_conn_put(client);

    for (size_t i = 0; i < G_N_ELEMENTS(exps); i++) {
        nbd_export_close(exps[i]);
        nbd_export_put(exps[i]);
    }
    fuzz_drain_main_context();
    bdrv_delete_all();
}

#endif /* BERTH_TESTS_FUZZ_NBD_SERVER_H */
