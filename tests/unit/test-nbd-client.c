/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the client half of the NBD handshake (nbd/client/negotiate.c)
 * against berth's own server run in-process: the server lives on the main
 * context of the test's main thread, the blocking client runs in a GThread.
 * x509 certificates are made at start with certtool (the TLS cases are
 * skipped without it). A scripted fake server on a socketpair covers the
 * NBD_OPT_EXPORT_NAME fallback and malformed replies.
 */
#include "nbd-test-util.h"

#define DISK_SIZE (1024 * 1024)

static char *tmp_dir;
static char *sock_path;
static char *client_pki;    /* NULL without certificates */

/* --- the in-process server --- */

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
    BerthChannel *ch = connect_unix(sock_path, &job->err);
    if (ch) {
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
    job_done(&job->done);
    return NULL;
}

/* Run the client in a thread while the main context serves it. */
static void run_client(ClientJob *job)
{
    run_beside_server("nbd-client", client_thread, job, &job->done);
}

static void job_clear(ClientJob *job)
{
    nbd_export_info_clear(&job->info);
    g_clear_error(&job->err);
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
    server_restart(sock_path, NULL);
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
    server_restart(sock_path, NULL);
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
    if (skip_without_certs(client_pki)) {
        return;
    }
    server_restart(sock_path, "tls0");
    g_autoptr(BerthTlsCreds) cc = client_creds(client_pki);
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
    if (skip_without_certs(client_pki)) {
        return;
    }
    server_restart(sock_path, "tls0");
    g_autoptr(BerthTlsCreds) cc = client_creds(client_pki);
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
    if (skip_without_certs(client_pki)) {
        return;
    }
    server_restart(sock_path, "tls0");
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
    BerthChannel *client;
    Fake f = { .mode = mode };
    channel_pair(&client, &f.ch);
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    berth_tls_object_types_init();
    tmp_dir = g_dir_make_tmp("berth-nbd-client-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    sock_path = g_build_filename(tmp_dir, "nbd.sock", NULL);

    NBDExport *exp = make_export(make_node("n0", DISK_SIZE, false, NULL), false, "disk0",
                                 "the first disk");
    NBDExport *ro = make_export(make_node("n1", 4096, true, NULL), true, "ro", NULL);
    client_pki = make_certs(tmp_dir);

    g_test_add_func("/nbd/client/plain", test_plain);
    g_test_add_func("/nbd/client/missing-export", test_missing_export);
    g_test_add_func("/nbd/client/tls-x509", test_tls_ok);
    g_test_add_func("/nbd/client/tls-wrong-hostname", test_tls_wrong_host);
    g_test_add_func("/nbd/client/tls-required", test_tls_required);
    g_test_add_func("/nbd/client/fake/export-name-fallback", test_fake_export_name_fallback);
    g_test_add_func("/nbd/client/fake/bad-replies", test_fake_bad_replies);
    int rc = g_test_run();

    server_stop();
    nbd_export_put(exp);
    nbd_export_put(ro);
    delete_exports_and_nodes();
    rm_rf(tmp_dir);
    g_free(sock_path);
    g_free(client_pki);
    g_free(tmp_dir);
    return rc;
}
