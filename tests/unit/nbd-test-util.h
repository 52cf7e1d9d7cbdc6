/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scaffolding shared by the NBD unit tests (test-nbd-client.c,
 * test-nbd-client-list.c, test-nbd-client-{session,fake,death,sync}.c,
 * test-nbd-export.c): memory nodes and named
 * exports on them, the server on a Unix socket (restarted with or without
 * TLS), x509 certificates made at run time with certtool, a blocking client
 * run in a thread of its own while the main context serves it, scripted fake
 * servers on a socketpair, and the temporary directory all this lives in.
 *
 * Everything is static inline so that each test program takes only what it
 * uses without unused-function warnings.
 */
#ifndef BERTH_TESTS_NBD_TEST_UTIL_H
#define BERTH_TESTS_NBD_TEST_UTIL_H

#include "berth/nbd/client.h"
#include "io/tls.h"
#include "nbd/proto/codec.h"
#include "berth/nbd/server.h"
#include "berth/util/qmp-command.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- files --------------------------------------------------------------- */

/* Removes path, and below it when it is a directory (not following links). */
static inline void rm_rf(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        GDir *d = g_dir_open(path, 0, NULL);
        const char *name;
        while (d && (name = g_dir_read_name(d))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            rm_rf(child);
        }
        if (d) {
            g_dir_close(d);
        }
        g_rmdir(path);
    } else {
        g_unlink(path);
    }
}

/* ---- the main context ---------------------------------------------------- */

/* Lets pending work (the server noticing a disconnect, ...) run for a moment. */
static inline void drain_main_context(void)
{
    for (int i = 0; i < 200 && g_main_context_pending(NULL); i++) {
        g_main_context_iteration(NULL, FALSE);
    }
}

/* ---- nodes and exports --------------------------------------------------- */

/*
 * A memory node of size bytes, read-only when asked, with more members of
 * its options (say ", \"discard\": \"unmap\"") when more is not NULL.  The
 * caller gets a reference.
 */
static inline BlockDriverState *make_node(const char *name, uint64_t size, bool read_only,
                                          const char *more)
{
    g_autofree char *js = g_strdup_printf(
        "{\"driver\": \"memory\", \"node-name\": \"%s\", \"size\": %" G_GUINT64_FORMAT "%s%s}",
        name, size, more ? more : "", read_only ? ", \"read-only\": true" : "");
    json_object *opts = json_tokener_parse(js);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(opts, false, &err);

    g_assert_no_error(err);
    json_object_put(opts);
    return bs;
}

/*
 * An export of the whole of bs named name (read-only when asked), with a
 * description when it is not NULL.  Takes the caller's reference to bs.
 */
static inline NBDExport *make_export(BlockDriverState *bs, bool read_only, const char *name,
                                     const char *description)
{
    g_autoptr(GError) err = NULL;
    NBDExport *exp = nbd_export_new(bs, 0, -1, read_only ? NBD_EXPORT_FLAG_READ_ONLY : 0, NULL,
                                    false, NULL, &err);

    g_assert_no_error(err);
    bdrv_put(bs);
    nbd_export_set_description(exp, description);
    g_assert_true(nbd_export_set_name(exp, name, &err));
    g_assert_no_error(err);
    return exp;
}

/* Closes every export and deletes every drive and node left behind. */
static inline void delete_exports_and_nodes(void)
{
    nbd_export_close_all();
    blk_delete_all();
    bdrv_delete_all();
}

/* ---- the in-process server ----------------------------------------------- */

static char *running_tls_creds; /* tls-creds id of the running server, "" for none */

/* Makes the server listen on sock_path with tls_creds (NULL: plaintext),
 * unless it already does. */
static inline void server_restart(const char *sock_path, const char *tls_creds)
{
    const char *want = tls_creds ? tls_creds : "";
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = (char *) sock_path };
    NBDServerConfig cfg = { .addr = &addr, .tls_creds = tls_creds };
    g_autoptr(GError) err = NULL;

    if (running_tls_creds && strcmp(running_tls_creds, want) == 0 && nbd_server_is_running()) {
        return;
    }
    if (nbd_server_is_running()) {
        nbd_server_stop();
    }
    g_assert_true(nbd_server_start(&cfg, &err));
    g_assert_no_error(err);
    g_free(running_tls_creds);
    running_tls_creds = g_strdup(want);
}

static inline void server_stop(void)
{
    if (nbd_server_is_running()) {
        nbd_server_stop();
    }
    g_clear_pointer(&running_tls_creds, g_free);
}

/* ---- a blocking client beside the server --------------------------------- */

/* Connects to the server's Unix socket: a channel, or NULL with errp set. */
static inline BerthChannel *connect_unix(const char *sock_path, GError **errp)
{
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = (char *) sock_path };
    int fd = berth_socket_connect(&addr, errp);

    return fd >= 0 ? berth_channel_socket_new(fd) : NULL;
}

/* The last thing the thread of run_beside_server() does. */
static inline void job_done(gint *done)
{
    g_atomic_int_set(done, 1);
    g_main_context_wakeup(NULL);
}

/*
 * Runs fn(job) in a thread of its own while this thread iterates the main
 * context, which serves it, until fn has called job_done(done); fails after
 * 20 s.  Then lets the server notice the disconnect.
 */
static inline void run_beside_server(const char *name, GThreadFunc fn, gpointer job,
                                     gint *done)
{
    GThread *t = g_thread_new(name, fn, job);
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    while (!g_atomic_int_get(done)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, TRUE);
    }
    g_thread_join(t);
    drain_main_context();
}

/* ---- x509 certificates --------------------------------------------------- */

/* Runs certtool with args in dir; false (with a test message) when it fails. */
static inline bool run_certtool(const char *dir, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *out = NULL, *errout = NULL;
    g_autoptr(GError) err = NULL;
    int status = 0;

    g_ptr_array_add(argv, (gpointer) "certtool");
    for (; *args; args++) {
        g_ptr_array_add(argv, (gpointer) *args);
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(dir, (char **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      &out, &errout, &status, &err) ||
        !g_spawn_check_wait_status(status, &err)) {
        g_test_message("certtool: %s %s", err->message, errout ? errout : "");
        return false;
    }
    return true;
}

static inline void write_file(const char *dir, const char *name, const char *contents)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, contents, -1, NULL));
}

/* A link dst in to_dir to the file src in dir. */
static inline void link_into(const char *dir, const char *src, const char *to_dir,
                             const char *dst)
{
    g_autofree char *from = g_build_filename(dir, src, NULL);
    g_autofree char *to = g_build_filename(to_dir, dst, NULL);

    g_assert_cmpint(symlink(from, to), ==, 0);
}

/*
 * Makes a CA and a certificate for localhost with certtool in dir, then
 * dir/server, the server's x509 directory, whose credentials become object
 * tls0, and dir/client, with the CA certificate only.  Returns the client's
 * directory, or NULL (the TLS cases are skipped) without certtool.
 */
static inline char *make_certs(const char *dir)
{
    g_autofree char *certtool = g_find_program_in_path("certtool");
    if (!certtool) {
        return NULL;
    }
    write_file(dir, "ca.info", "cn = Berth Test CA\nca\ncert_signing_key\nexpiration_days = 2\n");
    write_file(dir, "server.info", "cn = localhost\ndns_name = localhost\ntls_www_server\n"
                                   "signing_key\nencryption_key\nexpiration_days = 2\n");
    const char *ca_key[] = { "--generate-privkey", "--key-type=ecdsa", "--outfile",
                             "ca-key.pem", NULL };
    const char *ca_cert[] = { "--generate-self-signed", "--load-privkey", "ca-key.pem",
                              "--template", "ca.info", "--outfile", "ca-cert.pem", NULL };
    const char *srv_key[] = { "--generate-privkey", "--key-type=ecdsa", "--outfile",
                              "srv-key.pem", NULL };
    const char *srv_cert[] = { "--generate-certificate", "--load-ca-certificate",
                               "ca-cert.pem", "--load-ca-privkey", "ca-key.pem",
                               "--load-privkey", "srv-key.pem", "--template", "server.info",
                               "--outfile", "srv-cert.pem", NULL };
    if (!run_certtool(dir, ca_key) || !run_certtool(dir, ca_cert) ||
        !run_certtool(dir, srv_key) || !run_certtool(dir, srv_cert)) {
        return NULL;
    }
    g_autofree char *server_pki = g_build_filename(dir, "server", NULL);
    char *client_pki = g_build_filename(dir, "client", NULL);
    g_assert_cmpint(g_mkdir(server_pki, 0700), ==, 0);
    g_assert_cmpint(g_mkdir(client_pki, 0700), ==, 0);
    link_into(dir, "ca-cert.pem", server_pki, "ca-cert.pem");
    link_into(dir, "srv-cert.pem", server_pki, "server-cert.pem");
    link_into(dir, "srv-key.pem", server_pki, "server-key.pem");
    link_into(dir, "ca-cert.pem", client_pki, "ca-cert.pem");

    g_autoptr(GError) err = NULL;
    BerthTlsCreds *sc = berth_tls_creds_new_x509(server_pki, BERTH_TLS_ENDPOINT_SERVER, false,
                                                 NULL, &err);
    g_assert_no_error(err);
    g_assert_true(qmp_object_add("tls0", qmp_object_type_find(BERTH_TYPE_TLS_CREDS_X509), sc,
                                 &err));
    g_assert_no_error(err);
    return client_pki;
}

/* Skips the test when make_certs() could not make certificates. */
static inline bool skip_without_certs(const char *client_pki)
{
    if (!client_pki) {
        g_test_skip("certtool not available");
        return true;
    }
    return false;
}

/* Client credentials that check the server against the CA of make_certs(). */
static inline BerthTlsCreds *client_creds(const char *client_pki)
{
    g_autoptr(GError) err = NULL;
    BerthTlsCreds *c = berth_tls_creds_new_x509(client_pki, BERTH_TLS_ENDPOINT_CLIENT, true,
                                                NULL, &err);
    g_assert_no_error(err);
    return c;
}

/* ---- scripted fake servers ----------------------------------------------- */

/* Both ends of a new socketpair as channels. */
static inline void channel_pair(BerthChannel **a, BerthChannel **b)
{
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    *a = berth_channel_socket_new(sv[0]);
    *b = berth_channel_socket_new(sv[1]);
}

/* Reads the client's next option, which must be want, and its data. */
static inline void fake_read_option(BerthChannel *ch, uint32_t want, GByteArray *data)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    NBDOptionHeader oh;

    g_assert_true(berth_channel_read_all(ch, hdr, sizeof(hdr), 5000, NULL));
    g_assert_cmpint(nbd_decode_option_header(hdr, sizeof(hdr), &oh).status, ==,
                    NBD_DECODE_OK);
    g_assert_cmpstr(nbd_opt_name(oh.option), ==, nbd_opt_name(want));
    g_assert_cmpuint(oh.option, ==, want);
    g_byte_array_set_size(data, oh.length);
    if (oh.length) {
        g_assert_true(berth_channel_read_all(ch, data->data, oh.length, 5000, NULL));
    }
}

#endif /* BERTH_TESTS_NBD_TEST_UTIL_H */
