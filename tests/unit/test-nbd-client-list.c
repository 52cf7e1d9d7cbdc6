/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of export listing (nbd_list_exports(), nbd/client/list.c).
 * Against berth's own server run in-process (on the main context of the
 * test's main thread, the blocking client in a GThread) with two described
 * exports, in plaintext and over x509 TLS (skipped without certtool); and
 * against a scripted fake server on a socketpair for what a real server
 * does not do: refusing NBD_OPT_LIST, malformed or oversized replies,
 * closing in the middle of the list, partial answers and floods.
 */
#include "nbd-test-util.h"

#define DISK0_SIZE (1024 * 1024)
#define DISK1_SIZE (64 * 1024)

static char *tmp_dir;
static char *sock_path;
static char *client_pki;    /* NULL without certificates */

/* --- the in-process server --- */

typedef struct {
    BerthTlsCreds *creds;
    const char *hostname;
    NBDExportList *list;  /* result */
    GError *err;
    gint done;
} ListJob;

static gpointer list_thread(gpointer opaque)
{
    ListJob *job = opaque;
    BerthChannel *ch = connect_unix(sock_path, &job->err);

    if (ch) {
        job->list = nbd_list_exports(ch, job->creds, job->hostname, &job->err);
        berth_channel_unref(ch);
    }
    job_done(&job->done);
    return NULL;
}

/* The client in a thread while the main context serves it. */
static void run_list(ListJob *job)
{
    run_beside_server("nbd-list", list_thread, job, &job->done);
}

static void job_clear(ListJob *job)
{
    g_clear_pointer(&job->list, nbd_export_list_free);
    g_clear_error(&job->err);
}

static void check_two_exports(const NBDExportList *list)
{
    g_assert_nonnull(list);
    g_assert_true(list->structured_reply);
    g_assert_cmpuint(list->entries->len, ==, 2);

    const NBDExportListEntry *e0 = g_ptr_array_index(list->entries, 0);
    g_assert_cmpstr(e0->name, ==, "disk0");
    g_assert_cmpstr(e0->description, ==, "the first disk");
    g_assert_true(e0->has_info);
    g_assert_null(e0->info.description);
    g_assert_cmpuint(e0->info.size, ==, DISK0_SIZE);
    g_assert_true(e0->info.flags & NBD_FLAG_HAS_FLAGS);
    g_assert_false(e0->info.flags & NBD_FLAG_READ_ONLY);
    g_assert_cmpuint(e0->info.min_block, >=, 1);
    g_assert_null(nbd_block_size_check(e0->info.min_block, e0->info.pref_block,
                                       e0->info.max_block, e0->info.size));
    g_assert_nonnull(e0->meta_contexts);
    g_assert_cmpuint(g_strv_length(e0->meta_contexts), ==, 1);
    g_assert_cmpstr(e0->meta_contexts[0], ==, "base:allocation");

    const NBDExportListEntry *e1 = g_ptr_array_index(list->entries, 1);
    g_assert_cmpstr(e1->name, ==, "disk1");
    g_assert_cmpstr(e1->description, ==, "the second disk, read-only");
    g_assert_true(e1->has_info);
    g_assert_cmpuint(e1->info.size, ==, DISK1_SIZE);
    g_assert_true(e1->info.flags & NBD_FLAG_READ_ONLY);
    g_assert_cmpuint(g_strv_length(e1->meta_contexts), ==, 1);
}

static void test_plain(void)
{
    server_restart(sock_path, NULL);
    ListJob job = { 0 };
    run_list(&job);
    g_assert_no_error(job.err);
    check_two_exports(job.list);
    job_clear(&job);
}

static void test_tls(void)
{
    if (skip_without_certs(client_pki)) {
        return;
    }
    server_restart(sock_path, "tls0");
    g_autoptr(BerthTlsCreds) cc = client_creds(client_pki);

    ListJob job = { .creds = cc, .hostname = "localhost" };
    run_list(&job);
    g_assert_no_error(job.err);
    check_two_exports(job.list);
    job_clear(&job);

    /* Without credentials the server's demand for TLS is the error. */
    ListJob plain = { 0 };
    run_list(&plain);
    g_assert_null(plain.list);
    g_assert_nonnull(plain.err);
    g_test_message("error: %s", plain.err->message);
    g_assert_nonnull(strstr(plain.err->message, "server requires TLS"));
    job_clear(&plain);
    server_restart(sock_path, NULL);
}

/* --- a scripted server on a socketpair --- */

typedef enum {
    FAKE_LIST_REFUSED,    /* NBD_OPT_LIST answered with ERR_POLICY and a message */
    FAKE_MALFORMED,       /* a SERVER reply whose name overruns the reply */
    FAKE_TOO_LONG,        /* a SERVER reply longer than the client's bound */
    FAKE_CLOSE_MID_LIST,  /* one SERVER reply, then the connection closes */
    FAKE_TOO_MANY,        /* more SERVER replies than the client keeps */
    FAKE_OLD_SERVER,      /* no structured replies, INFO unsupported */
    FAKE_PARTIAL,         /* INFO/META refused for one export, answered for another */
} FakeMode;

#define FAKE_FLOOD 10001u

typedef struct {
    BerthChannel *ch;
    FakeMode mode;
} Fake;

/* Sends may fail once the client has given up; that is its business. */
static void fake_send(BerthChannel *ch, const uint8_t *buf, size_t len)
{
    berth_channel_write_all(ch, buf, len, 5000, NULL);
}

static void fake_server(BerthChannel *ch, const char *name, const char *desc)
{
    uint8_t buf[NBD_REP_SERVER_MAX];
    fake_send(ch, buf, nbd_encode_rep_server(buf, sizeof(buf), NBD_OPT_LIST, name,
                                             strlen(name), desc, desc ? strlen(desc) : 0));
}

static void fake_err(BerthChannel *ch, uint32_t option, uint32_t type, const char *msg)
{
    uint8_t buf[NBD_REP_ERR_MAX];
    fake_send(ch, buf, nbd_encode_rep_err(buf, sizeof(buf), option, type, msg,
                                          msg ? strlen(msg) : 0));
}

static void fake_ack(BerthChannel *ch, uint32_t option)
{
    uint8_t buf[NBD_OPTION_REPLY_HEADER_SIZE];
    fake_send(ch, buf, nbd_encode_rep_ack(buf, option));
}

/* The name an INFO or LIST_META_CONTEXT request is about. */
static char *option_export_name(GByteArray *data)
{
    g_assert_cmpuint(data->len, >=, 4);
    uint32_t len = nbd_load_be32(data->data);
    g_assert_cmpuint(len, <=, data->len - 4);
    return g_strndup((const char *) data->data + 4, len);
}

static void fake_partial(BerthChannel *ch, GByteArray *data)
{
    uint8_t buf[NBD_REP_META_CONTEXT_MAX];

    fake_server(ch, "gone", NULL);
    fake_server(ch, "here", NULL);
    fake_ack(ch, NBD_OPT_LIST);

    fake_read_option(ch, NBD_OPT_INFO, data);
    g_autofree char *n0 = option_export_name(data);
    g_assert_cmpstr(n0, ==, "gone");
    fake_err(ch, NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN, "export 'gone' went away");
    fake_read_option(ch, NBD_OPT_LIST_META_CONTEXT, data);
    fake_err(ch, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_UNKNOWN, NULL);

    fake_read_option(ch, NBD_OPT_INFO, data);
    g_autofree char *n1 = option_export_name(data);
    g_assert_cmpstr(n1, ==, "here");
    fake_send(ch, buf, nbd_encode_rep_info_export(buf, NBD_OPT_INFO, 12345,
                                                  NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH));
    static const char desc[] = "described by INFO";
    fake_send(ch, buf, nbd_encode_rep_info_string(buf, sizeof(buf), NBD_OPT_INFO,
                                                  NBD_INFO_DESCRIPTION, desc, strlen(desc)));
    fake_ack(ch, NBD_OPT_INFO);
    fake_read_option(ch, NBD_OPT_LIST_META_CONTEXT, data);
    g_assert_cmpuint(data->len, ==, 4 + 4 + 4);
    g_assert_cmpuint(nbd_load_be32(data->data + 8), ==, 0); /* no query: list them all */
    static const char *const contexts[] = { "base:allocation", "qemu:dirty-bitmap:b0" };
    for (size_t i = 0; i < G_N_ELEMENTS(contexts); i++) {
        fake_send(ch, buf, nbd_encode_rep_meta_context(buf, sizeof(buf),
                                                       NBD_OPT_LIST_META_CONTEXT, 0,
                                                       contexts[i], strlen(contexts[i])));
    }
    fake_ack(ch, NBD_OPT_LIST_META_CONTEXT);

    /* ABORT: no ACK, just hang up. */
    fake_read_option(ch, NBD_OPT_ABORT, data);
}

static gpointer fake_thread(gpointer opaque)
{
    Fake *f = opaque;
    BerthChannel *ch = f->ch;
    uint8_t buf[64];
    g_autoptr(GByteArray) data = g_byte_array_new();

    fake_send(ch, buf, nbd_encode_greeting(buf, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    g_assert_true(berth_channel_read_all(ch, buf, NBD_CLIENT_FLAGS_SIZE, 5000, NULL));

    fake_read_option(ch, NBD_OPT_STRUCTURED_REPLY, data);
    if (f->mode == FAKE_OLD_SERVER) {
        fake_err(ch, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_UNSUP, NULL);
    } else {
        fake_ack(ch, NBD_OPT_STRUCTURED_REPLY);
    }

    fake_read_option(ch, NBD_OPT_LIST, data);
    g_assert_cmpuint(data->len, ==, 0);
    switch (f->mode) {
    case FAKE_LIST_REFUSED:
        fake_err(ch, NBD_OPT_LIST, NBD_REP_ERR_POLICY, "listing is not allowed here");
        break;
    case FAKE_MALFORMED:
        /* name length 100 in a 10-byte payload */
        nbd_encode_option_reply_header(buf, NBD_OPT_LIST, NBD_REP_SERVER, 10);
        nbd_store_be32(buf + NBD_OPTION_REPLY_HEADER_SIZE, 100);
        memcpy(buf + NBD_OPTION_REPLY_HEADER_SIZE + 4, "abcdef", 6);
        fake_send(ch, buf, NBD_OPTION_REPLY_HEADER_SIZE + 10);
        break;
    case FAKE_TOO_LONG:
        fake_send(ch, buf, nbd_encode_option_reply_header(buf, NBD_OPT_LIST, NBD_REP_SERVER,
                                                          1u << 30));
        break;
    case FAKE_CLOSE_MID_LIST:
        fake_server(ch, "first", "the only one you will see");
        break;
    case FAKE_TOO_MANY:
        for (unsigned i = 0; i < FAKE_FLOOD; i++) {
            fake_server(ch, "x", NULL);
        }
        break;
    case FAKE_OLD_SERVER:
        fake_server(ch, "a", "the first");
        fake_server(ch, "b", NULL);
        fake_ack(ch, NBD_OPT_LIST);
        fake_read_option(ch, NBD_OPT_INFO, data);
        fake_err(ch, NBD_OPT_INFO, NBD_REP_ERR_UNSUP, NULL);
        /* Neither INFO again nor LIST_META_CONTEXT: straight to ABORT. */
        fake_read_option(ch, NBD_OPT_ABORT, data);
        fake_ack(ch, NBD_OPT_ABORT);
        break;
    case FAKE_PARTIAL:
        fake_partial(ch, data);
        break;
    }
    berth_channel_shutdown(ch);
    return NULL;
}

static NBDExportList *run_fake(FakeMode mode, GError **errp)
{
    BerthChannel *client;
    Fake f = { .mode = mode };
    channel_pair(&client, &f.ch);
    GThread *t = g_thread_new("fake-server", fake_thread, &f);
    NBDExportList *list = nbd_list_exports(client, NULL, NULL, errp);
    /* The client is done: let a flooding server see it. */
    berth_channel_shutdown(client);
    g_thread_join(t);
    berth_channel_unref(client);
    berth_channel_unref(f.ch);
    return list;
}

static void expect_failure(FakeMode mode, const char *needle, GIOErrorEnum code)
{
    g_autoptr(GError) err = NULL;
    NBDExportList *list = run_fake(mode, &err);

    g_assert_null(list);
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    g_assert_nonnull(strstr(err->message, needle));
    g_assert_true(g_error_matches(err, G_IO_ERROR, code));
}

static void test_fake_list_refused(void)
{
    expect_failure(FAKE_LIST_REFUSED, "listing is not allowed here",
                   G_IO_ERROR_PERMISSION_DENIED);
}

static void test_fake_malformed(void)
{
    expect_failure(FAKE_MALFORMED, "Malformed NBD_REP_SERVER", G_IO_ERROR_INVALID_DATA);
}

static void test_fake_too_long(void)
{
    expect_failure(FAKE_TOO_LONG, "too long", G_IO_ERROR_INVALID_DATA);
}

static void test_fake_close_mid_list(void)
{
    g_autoptr(GError) err = NULL;
    NBDExportList *list = run_fake(FAKE_CLOSE_MID_LIST, &err);

    g_assert_null(list);
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    g_assert_nonnull(strstr(err->message, "NBD_OPT_LIST"));
}

static void test_fake_too_many(void)
{
    expect_failure(FAKE_TOO_MANY, "more than 10000 exports", G_IO_ERROR_INVALID_DATA);
}

static void test_fake_old_server(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(NBDExportList) list = run_fake(FAKE_OLD_SERVER, &err);

    g_assert_no_error(err);
    g_assert_nonnull(list);
    g_assert_false(list->structured_reply);
    g_assert_cmpuint(list->entries->len, ==, 2);
    const NBDExportListEntry *a = g_ptr_array_index(list->entries, 0);
    const NBDExportListEntry *b = g_ptr_array_index(list->entries, 1);
    g_assert_cmpstr(a->name, ==, "a");
    g_assert_cmpstr(a->description, ==, "the first");
    g_assert_false(a->has_info);
    g_assert_cmpuint(a->info.size, ==, 0);
    g_assert_cmpstr(b->name, ==, "b");
    g_assert_null(b->description);
    g_assert_false(b->has_info);
    g_assert_nonnull(b->meta_contexts);
    g_assert_null(b->meta_contexts[0]);
}

static void test_fake_partial(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(NBDExportList) list = run_fake(FAKE_PARTIAL, &err);

    g_assert_no_error(err);
    g_assert_nonnull(list);
    g_assert_true(list->structured_reply);
    g_assert_cmpuint(list->entries->len, ==, 2);
    const NBDExportListEntry *gone = g_ptr_array_index(list->entries, 0);
    g_assert_cmpstr(gone->name, ==, "gone");
    g_assert_false(gone->has_info);
    g_assert_null(gone->meta_contexts[0]);

    const NBDExportListEntry *here = g_ptr_array_index(list->entries, 1);
    g_assert_cmpstr(here->name, ==, "here");
    g_assert_true(here->has_info);
    g_assert_cmpuint(here->info.size, ==, 12345);
    g_assert_cmphex(here->info.flags, ==, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
    /* No NBD_INFO_BLOCK_SIZE: left at 0, not the defaults. */
    g_assert_cmpuint(here->info.min_block, ==, 0);
    g_assert_cmpuint(here->info.pref_block, ==, 0);
    g_assert_cmpuint(here->info.max_block, ==, 0);
    g_assert_cmpstr(here->description, ==, "described by INFO");
    g_assert_cmpuint(g_strv_length(here->meta_contexts), ==, 2);
    g_assert_cmpstr(here->meta_contexts[0], ==, "base:allocation");
    g_assert_cmpstr(here->meta_contexts[1], ==, "qemu:dirty-bitmap:b0");
}

/* --- setup --- */

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    berth_tls_object_types_init();
    tmp_dir = g_dir_make_tmp("berth-nbd-list-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    sock_path = g_build_filename(tmp_dir, "nbd.sock", NULL);

    NBDExport *exp0 = make_export(make_node("n0", DISK0_SIZE, false, NULL), false, "disk0",
                                  "the first disk");
    NBDExport *exp1 = make_export(make_node("n1", DISK1_SIZE, true, NULL), true, "disk1",
                                  "the second disk, read-only");
    client_pki = make_certs(tmp_dir);

    g_test_add_func("/nbd/client-list/plain", test_plain);
    g_test_add_func("/nbd/client-list/tls-x509", test_tls);
    g_test_add_func("/nbd/client-list/fake/list-refused", test_fake_list_refused);
    g_test_add_func("/nbd/client-list/fake/malformed-server-reply", test_fake_malformed);
    g_test_add_func("/nbd/client-list/fake/too-long-reply", test_fake_too_long);
    g_test_add_func("/nbd/client-list/fake/close-mid-list", test_fake_close_mid_list);
    g_test_add_func("/nbd/client-list/fake/too-many-exports", test_fake_too_many);
    g_test_add_func("/nbd/client-list/fake/old-server", test_fake_old_server);
    g_test_add_func("/nbd/client-list/fake/partial-answers", test_fake_partial);
    int rc = g_test_run();

    server_stop();
    nbd_export_put(exp0);
    nbd_export_put(exp1);
    delete_exports_and_nodes();
    qmp_object_del_all();
    rm_rf(tmp_dir);
    g_free(sock_path);
    g_free(client_pki);
    g_free(tmp_dir);
    return rc;
}
