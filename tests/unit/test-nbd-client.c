/*
 * Unit tests of the client half of the NBD handshake (nbd/client-negotiate.c)
 * against berth's own server run in-process: the server lives on the main
 * context of the test's main thread, the blocking client runs in a GThread.
 * x509 certificates are made at start with certtool (the TLS cases are
 * skipped without it). A scripted fake server on a socketpair covers the
 * NBD_OPT_EXPORT_NAME fallback and malformed replies.
 */
#include "io/tls.h"
#include "block/nbd.h"
#include "nbd/codec.h"
#include "nbd/server.h"
#include "util/qmp-command.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DISK_SIZE (1024 * 1024)

static char *tmp_dir;
static char *sock_path;
static char *server_pki, *client_pki;
static bool have_certs;
static char *running_creds; /* tls-creds id of the running server, "" for none */

/* --- certificates --- */

static bool run_certtool(const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer) "certtool");
    for (; *args; args++) {
        g_ptr_array_add(argv, (gpointer) *args);
    }
    g_ptr_array_add(argv, NULL);
    g_autofree char *out = NULL, *errout = NULL;
    int status = 0;
    g_autoptr(GError) err = NULL;
    if (!g_spawn_sync(tmp_dir, (char **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      &out, &errout, &status, &err)) {
        g_test_message("certtool: %s", err->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, &err)) {
        g_test_message("certtool failed: %s\n%s", err->message, errout);
        return false;
    }
    return true;
}

static char *tmp_file(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

static void write_file(const char *name, const char *contents)
{
    g_autofree char *path = tmp_file(name);
    g_assert_true(g_file_set_contents(path, contents, -1, NULL));
}

static void link_into(const char *dir, const char *src, const char *dst)
{
    g_autofree char *from = tmp_file(src);
    g_autofree char *to = g_build_filename(dir, dst, NULL);
    g_assert_cmpint(symlink(from, to), ==, 0);
}

static bool make_certs(void)
{
    g_autofree char *certtool = g_find_program_in_path("certtool");
    if (!certtool) {
        return false;
    }
    write_file("ca.info", "cn = Berth Test CA\nca\ncert_signing_key\nexpiration_days = 2\n");
    write_file("server.info", "cn = localhost\ndns_name = localhost\ntls_www_server\n"
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
    if (!run_certtool(ca_key) || !run_certtool(ca_cert) || !run_certtool(srv_key) ||
        !run_certtool(srv_cert)) {
        return false;
    }
    server_pki = tmp_file("server");
    client_pki = tmp_file("client");
    g_assert_cmpint(g_mkdir(server_pki, 0700), ==, 0);
    g_assert_cmpint(g_mkdir(client_pki, 0700), ==, 0);
    link_into(server_pki, "ca-cert.pem", "ca-cert.pem");
    link_into(server_pki, "srv-cert.pem", "server-cert.pem");
    link_into(server_pki, "srv-key.pem", "server-key.pem");
    link_into(client_pki, "ca-cert.pem", "ca-cert.pem");

    g_autoptr(GError) err = NULL;
    BerthTlsCreds *sc = berth_tls_creds_new_x509(server_pki, BERTH_TLS_ENDPOINT_SERVER, false,
                                                 NULL, &err);
    g_assert_no_error(err);
    g_assert_true(qmp_object_add("tls0", qmp_object_type_find(BERTH_TYPE_TLS_CREDS_X509), sc,
                                 &err));
    g_assert_no_error(err);
    return true;
}

static void rm_rf(const char *path)
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

/* --- the in-process server --- */

static void server_restart(const char *tls_creds)
{
    const char *want = tls_creds ? tls_creds : "";
    if (running_creds && strcmp(running_creds, want) == 0 && nbd_server_is_running()) {
        return;
    }
    if (nbd_server_is_running()) {
        nbd_server_stop();
    }
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = sock_path };
    NBDServerConfig cfg = { .addr = &addr, .tls_creds = tls_creds };
    g_autoptr(GError) err = NULL;
    g_assert_true(nbd_server_start(&cfg, &err));
    g_assert_no_error(err);
    g_free(running_creds);
    running_creds = g_strdup(want);
}

typedef struct {
    const char *export_name;
    BerthTlsCreds *creds;
    const char *hostname;
    /* results */
    bool ok;
    NBDExportInfo info;
    bool is_tls;
    GError *err;
    gint done;
} ClientJob;

static gpointer client_thread(gpointer opaque)
{
    ClientJob *job = opaque;
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = sock_path };
    int fd = berth_socket_connect(&addr, &job->err);
    if (fd >= 0) {
        BerthChannel *ch = berth_channel_socket_new(fd);
        BerthChannel *out = NULL;
        job->ok = nbd_receive_negotiate(ch, job->export_name, job->creds, job->hostname,
                                        &job->info, &out, &job->err);
        if (job->ok) {
            job->is_tls = berth_channel_is_tls(out);
            g_assert_true(job->is_tls || out == ch);
            berth_channel_unref(out);
        } else {
            g_assert_null(out);
        }
        berth_channel_unref(ch);
    }
    g_atomic_int_set(&job->done, 1);
    g_main_context_wakeup(NULL);
    return NULL;
}

/* Run the client in a thread while the main context serves it. */
static void run_client(ClientJob *job)
{
    GThread *t = g_thread_new("nbd-client", client_thread, job);
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (!g_atomic_int_get(&job->done)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, TRUE);
    }
    g_thread_join(t);
    /* Let the server notice the disconnect. */
    for (int i = 0; i < 100 && g_main_context_pending(NULL); i++) {
        g_main_context_iteration(NULL, FALSE);
    }
}

static void job_clear(ClientJob *job)
{
    nbd_export_info_clear(&job->info);
    g_clear_error(&job->err);
}

static BerthTlsCreds *client_creds(void)
{
    g_autoptr(GError) err = NULL;
    BerthTlsCreds *c = berth_tls_creds_new_x509(client_pki, BERTH_TLS_ENDPOINT_CLIENT, true,
                                                NULL, &err);
    g_assert_no_error(err);
    return c;
}

static void check_disk0(const NBDExportInfo *info)
{
    g_assert_cmpuint(info->size, ==, DISK_SIZE);
    g_assert_true(info->flags & NBD_FLAG_HAS_FLAGS);
    g_assert_false(info->flags & NBD_FLAG_READ_ONLY);
    g_assert_true(info->flags & NBD_FLAG_SEND_FLUSH);
    g_assert_true(info->structured_reply);
    g_assert_true(info->base_allocation);
    g_assert_cmpstr(info->description, ==, "the first disk");
    g_assert_null(nbd_block_size_check(info->min_block, info->pref_block, info->max_block,
                                       info->size));
}

/* --- cases --- */

static void test_plain(void)
{
    server_restart(NULL);
    ClientJob job = { .export_name = "disk0" };
    run_client(&job);
    g_assert_no_error(job.err);
    g_assert_true(job.ok);
    g_assert_false(job.is_tls);
    check_disk0(&job.info);
    job_clear(&job);

    /* The read-only export says so. */
    ClientJob ro = { .export_name = "ro" };
    run_client(&ro);
    g_assert_no_error(ro.err);
    g_assert_cmpuint(ro.info.size, ==, 4096);
    g_assert_true(ro.info.flags & NBD_FLAG_READ_ONLY);
    g_assert_null(ro.info.description);
    job_clear(&ro);
}

static void test_missing_export(void)
{
    server_restart(NULL);
    ClientJob job = { .export_name = "nosuch" };
    run_client(&job);
    g_assert_false(job.ok);
    g_assert_nonnull(job.err);
    g_test_message("error: %s", job.err->message);
    g_assert_nonnull(strstr(job.err->message, "nosuch"));
    g_assert_true(g_error_matches(job.err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND));
    g_assert_cmpuint(job.info.size, ==, 0);
    job_clear(&job);
}

static void test_tls_ok(void)
{
    if (!have_certs) {
        g_test_skip("certtool not available");
        return;
    }
    server_restart("tls0");
    g_autoptr(BerthTlsCreds) cc = client_creds();
    ClientJob job = { .export_name = "disk0", .creds = cc, .hostname = "localhost" };
    run_client(&job);
    g_assert_no_error(job.err);
    g_assert_true(job.ok);
    g_assert_true(job.is_tls);
    check_disk0(&job.info);
    job_clear(&job);
}

static void test_tls_wrong_host(void)
{
    if (!have_certs) {
        g_test_skip("certtool not available");
        return;
    }
    server_restart("tls0");
    g_autoptr(BerthTlsCreds) cc = client_creds();
    ClientJob job = { .export_name = "disk0", .creds = cc, .hostname = "evil.example" };
    run_client(&job);
    g_assert_false(job.ok);
    g_assert_nonnull(job.err);
    g_test_message("error: %s", job.err->message);
    g_assert_nonnull(strstr(job.err->message, "TLS handshake failed"));
    job_clear(&job);
}

static void test_tls_required(void)
{
    if (!have_certs) {
        g_test_skip("certtool not available");
        return;
    }
    server_restart("tls0");
    ClientJob job = { .export_name = "disk0" };
    run_client(&job);
    g_assert_false(job.ok);
    g_assert_nonnull(job.err);
    g_test_message("error: %s", job.err->message);
    g_assert_nonnull(strstr(job.err->message, "server requires TLS"));
    job_clear(&job);
}

/* --- a scripted server on a socketpair --- */

typedef enum {
    FAKE_OLD_SERVER,     /* no structured replies, no GO: EXPORT_NAME fallback */
    FAKE_HUGE_REPLY,     /* a reply length over the client's bound */
    FAKE_WRONG_ECHO,     /* a reply that answers another option */
    FAKE_GO_ERROR,       /* GO refused with a message */
} FakeMode;

typedef struct {
    BerthChannel *ch;
    FakeMode mode;
} Fake;

static void fake_read_option(BerthChannel *ch, uint32_t want, GByteArray *data)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    g_assert_true(berth_channel_read_all(ch, hdr, sizeof(hdr), 5000, NULL));
    NBDOptionHeader oh;
    g_assert_cmpint(nbd_decode_option_header(hdr, sizeof(hdr), &oh).status, ==, NBD_DECODE_OK);
    g_assert_cmpuint(oh.option, ==, want);
    g_byte_array_set_size(data, oh.length);
    if (oh.length) {
        g_assert_true(berth_channel_read_all(ch, data->data, oh.length, 5000, NULL));
    }
}

static void fake_send(BerthChannel *ch, const uint8_t *buf, size_t len)
{
    g_assert_true(berth_channel_write_all(ch, buf, len, 5000, NULL));
}

static gpointer fake_thread(gpointer opaque)
{
    Fake *f = opaque;
    BerthChannel *ch = f->ch;
    uint8_t buf[256];
    g_autoptr(GByteArray) data = g_byte_array_new();
    fake_send(ch, buf, nbd_encode_greeting(buf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    g_assert_true(berth_channel_read_all(ch, buf, NBD_CLIENT_FLAGS_SIZE, 5000, NULL));
    g_assert_cmpuint(nbd_load_be32(buf), ==, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    /* An old server: it knows neither extended headers ... */
    fake_read_option(ch, NBD_OPT_EXTENDED_HEADERS, data);
    fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_EXTENDED_HEADERS,
                                          NBD_REP_ERR_UNSUP, NULL, 0));
    /* ... nor, in some modes, structured replies. */
    fake_read_option(ch, NBD_OPT_STRUCTURED_REPLY, data);
    switch (f->mode) {
    case FAKE_HUGE_REPLY:
        fake_send(ch, buf, nbd_encode_option_reply_header(buf, NBD_OPT_STRUCTURED_REPLY,
                                                          NBD_REP_ACK, 1u << 20));
        return NULL;
    case FAKE_WRONG_ECHO:
        fake_send(ch, buf, nbd_encode_rep_ack(buf, NBD_OPT_GO));
        return NULL;
    case FAKE_OLD_SERVER:
        fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_STRUCTURED_REPLY,
                                              NBD_REP_ERR_UNSUP, NULL, 0));
        break;
    case FAKE_GO_ERROR:
        fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_STRUCTURED_REPLY,
                                              NBD_REP_ERR_UNSUP, NULL, 0));
        break;
    }

    fake_read_option(ch, NBD_OPT_GO, data);
    if (f->mode == FAKE_GO_ERROR) {
        static const char msg[] = "go away";
        fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_GO,
                                              NBD_REP_ERR_POLICY, msg, strlen(msg)));
        return NULL;
    }
    fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_GO, NBD_REP_ERR_UNSUP,
                                          NULL, 0));
    fake_read_option(ch, NBD_OPT_EXPORT_NAME, data);
    g_assert_cmpuint(data->len, ==, 3);
    g_assert_true(memcmp(data->data, "old", 3) == 0);
    fake_send(ch, buf, nbd_encode_export_name_reply(buf, 65536,
                                                    NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY,
                                                    true));
    return NULL;
}

static bool run_fake(FakeMode mode, NBDExportInfo *info, GError **errp)
{
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    BerthChannel *client = berth_channel_socket_new(sv[0]);
    Fake f = { .ch = berth_channel_socket_new(sv[1]), .mode = mode };
    GThread *t = g_thread_new("fake-server", fake_thread, &f);
    BerthChannel *out = NULL;
    bool ok = nbd_receive_negotiate(client, "old", NULL, NULL, info, &out, errp);
    g_thread_join(t);
    if (out) {
        g_assert_true(out == client);
        berth_channel_unref(out);
    }
    berth_channel_unref(client);
    berth_channel_unref(f.ch);
    return ok;
}

static void test_fake_export_name_fallback(void)
{
    NBDExportInfo info;
    g_autoptr(GError) err = NULL;
    g_assert_true(run_fake(FAKE_OLD_SERVER, &info, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(info.size, ==, 65536);
    g_assert_true(info.flags & NBD_FLAG_READ_ONLY);
    g_assert_false(info.structured_reply);
    g_assert_false(info.base_allocation);
    g_assert_cmpuint(info.min_block, ==, 1);
    nbd_export_info_clear(&info);
}

static void test_fake_bad_replies(void)
{
    NBDExportInfo info;
    g_autoptr(GError) err = NULL;
    g_assert_false(run_fake(FAKE_HUGE_REPLY, &info, &err));
    g_assert_nonnull(strstr(err->message, "too long"));
    g_clear_error(&err);

    g_assert_false(run_fake(FAKE_WRONG_ECHO, &info, &err));
    g_assert_nonnull(strstr(err->message, "Unexpected reply"));
    g_clear_error(&err);

    g_assert_false(run_fake(FAKE_GO_ERROR, &info, &err));
    g_assert_nonnull(strstr(err->message, "go away"));
    g_assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED));
}

/* --- setup --- */

static BlockDriverState *make_node(const char *name, int size, bool read_only)
{
    g_autofree char *js = g_strdup_printf(
        "{\"driver\": \"memory\", \"node-name\": \"%s\", \"size\": %d%s}", name, size,
        read_only ? ", \"read-only\": true" : "");
    json_object *opts = json_tokener_parse(js);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(opts, false, &err);
    g_assert_no_error(err);
    json_object_put(opts);
    return bs;
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    berth_tls_object_types_init();
    tmp_dir = g_dir_make_tmp("berth-nbd-client-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    sock_path = tmp_file("nbd.sock");

    g_autoptr(GError) err = NULL;
    NBDExport *exp = nbd_export_new(make_node("n0", DISK_SIZE, false), 0, -1, 0, NULL, false,
                                    NULL, &err);
    g_assert_no_error(err);
    g_assert_true(nbd_export_set_name(exp, "disk0", &err));
    nbd_export_set_description(exp, "the first disk");
    NBDExport *ro = nbd_export_new(make_node("n1", 4096, true), 0, -1,
                                   NBD_EXPORT_FLAG_READ_ONLY, NULL, false, NULL, &err);
    g_assert_no_error(err);
    g_assert_true(nbd_export_set_name(ro, "ro", &err));

    have_certs = make_certs();

    g_test_add_func("/nbd/client/plain", test_plain);
    g_test_add_func("/nbd/client/missing-export", test_missing_export);
    g_test_add_func("/nbd/client/tls-x509", test_tls_ok);
    g_test_add_func("/nbd/client/tls-wrong-hostname", test_tls_wrong_host);
    g_test_add_func("/nbd/client/tls-required", test_tls_required);
    g_test_add_func("/nbd/client/fake/export-name-fallback", test_fake_export_name_fallback);
    g_test_add_func("/nbd/client/fake/bad-replies", test_fake_bad_replies);
    int rc = g_test_run();

    if (nbd_server_is_running()) {
        nbd_server_stop();
    }
    nbd_export_put(exp);
    nbd_export_put(ro);
    nbd_export_close_all();
    blk_delete_all();
    bdrv_delete_all();
    g_free(running_creds);
    rm_rf(tmp_dir);
    g_free(sock_path);
    g_free(server_pki);
    g_free(client_pki);
    g_free(tmp_dir);
    return rc;
}
