/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the authorization objects behind tls-authz: authz-simple,
 * authz-list (rule order, exact and glob matches, default policy, QEMU's
 * messages in the JSON and command-line spellings) and authz-listfile
 * (its file format and errors, and refresh=on picking up a rewritten,
 * broken, replaced or deleted file through the main context). The TLS side,
 * with real certificates, is in tests/functional/test_objects.py.
 */
#include "berth/io/authz.h"
#include "io-object-test-util.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

#define DN_ALICE "O=Berth Test,CN=alice.example.com"
#define DN_BOB "O=Berth Test,CN=bob.example.com"

typedef struct {
    char *dir;
} Fixture;

/* What the objects logged: reloads are messages, failed reloads warnings,
 * which are expected here; any other warning fails the test. */
static GString *logged;

static void record_log(const char *domain, GLogLevelFlags level, const char *message,
                       gpointer unused)
{
    if ((level & G_LOG_LEVEL_WARNING) && !g_str_has_prefix(message, "authz-listfile ")) {
        g_error("unexpected warning: %s", message);
    }
    g_string_append_printf(logged, "%s\n", message);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    berth_authz_object_types_init();
    f->dir = g_dir_make_tmp("berth-authz-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    qmp_object_del_all();
    test_tmpdir_remove(f->dir);
    /* Let cancelled file monitors finish with the context. */
    while (g_main_context_iteration(NULL, FALSE)) {
    }
}

static bool allowed(const char *id, const char *identity)
{
    GError *err = NULL;
    BerthAuthz *authz = berth_authz_find(id, &err);
    g_assert_no_error(err);
    g_assert_nonnull(authz);
    return berth_authz_is_allowed(authz, identity);
}

static void test_simple(Fixture *f, gconstpointer unused)
{
    test_object_add_ok("authz-simple", "a0", "identity=O=Berth Test,,CN=alice.example.com",
                       true);
    g_assert_true(allowed("a0", DN_ALICE));
    g_assert_false(allowed("a0", DN_BOB));
    g_assert_false(allowed("a0", ""));
    g_assert_false(berth_authz_is_allowed(berth_authz_find("a0", NULL), NULL));
    g_assert_false(berth_authz_is_allowed(NULL, DN_ALICE));
}

static void test_find(Fixture *f, gconstpointer unused)
{
    GError *err = NULL;
    g_assert_null(berth_authz_find("nope", &err));
    g_assert_error(err, QMP_ERROR, QMP_ERROR_GENERIC);
    g_assert_cmpstr(err->message, ==, "No authorization object with id 'nope'");
    g_clear_error(&err);

    static const QmpObjectType other = { .name = "x-other" };
    g_assert_true(qmp_object_add("other0", &other, NULL, NULL));
    g_assert_null(berth_authz_find("other0", &err));
    g_assert_cmpstr(err->message, ==, "No authorization object with id 'other0'");
    g_clear_error(&err);

    test_object_add_ok("authz-simple", "s", "identity=x", true);
    test_object_add_ok("authz-list", "l", "{}", false);
    g_autofree char *path = g_build_filename(f->dir, "l.json", NULL);
    g_assert_true(g_file_set_contents(path, "{}", -1, NULL));
    g_autofree char *members = g_strdup_printf("filename=%s,refresh=off", path);
    test_object_add_ok("authz-listfile", "lf", members, true);
    g_assert_nonnull(berth_authz_find("s", NULL));
    g_assert_nonnull(berth_authz_find("l", NULL));
    g_assert_nonnull(berth_authz_find("lf", NULL));
}

static void test_list_rules(Fixture *f, gconstpointer unused)
{
    /* No rules: the default policy, which is deny unless given. */
    test_object_add_ok("authz-list", "none", "{}", false);
    g_assert_false(allowed("none", DN_ALICE));
    test_object_add_ok("authz-list", "open", "policy=allow", true);
    g_assert_true(allowed("open", DN_ALICE));
    test_object_add_ok("authz-list", "empty", "{\"rules\": []}", false);
    g_assert_false(allowed("empty", DN_ALICE));

    /* The first match decides. */
    test_object_add_ok("authz-list", "l0",
                       "{\"policy\": \"deny\", \"rules\": ["
                       "{\"match\": \"" DN_BOB "\", \"policy\": \"deny\"},"
                       "{\"match\": \"O=Berth Test,CN=*\", \"policy\": \"allow\","
                       " \"format\": \"glob\"},"
                       "{\"match\": \"" DN_ALICE "\", \"policy\": \"deny\"}]}", false);
    g_assert_true(allowed("l0", DN_ALICE));
    g_assert_false(allowed("l0", DN_BOB));
    g_assert_true(allowed("l0", "O=Berth Test,CN="));
    g_assert_false(allowed("l0", "O=Elsewhere,CN=x"));

    /* The same from the command line; exact is the default format. */
    test_object_add_ok("authz-list", "l1",
                       "policy=allow,rules.0.match=O=Berth Test*,rules.0.policy=deny,"
                       "rules.1.match=?=x,rules.1.policy=deny,rules.1.format=glob", true);
    g_assert_true(allowed("l1", DN_ALICE));   /* "*" is no wildcard in an exact rule */
    g_assert_false(allowed("l1", "O=Berth Test*"));
    g_assert_false(allowed("l1", "C=x"));
    g_assert_true(allowed("l1", "CN=x"));
}

static void test_glob(Fixture *f, gconstpointer unused)
{
    /* QEMU matches with GLib's simple patterns: '*' and '?' only. */
    test_object_add_ok("authz-list", "g",
                       "rules.0.match=CN=[ab]*,rules.0.policy=allow,rules.0.format=glob,"
                       "rules.1.match=*.example.??,rules.1.policy=allow,rules.1.format=glob",
                       true);
    g_assert_true(allowed("g", "CN=[ab]cd"));
    g_assert_false(allowed("g", "CN=acd"));
    g_assert_true(allowed("g", "CN=x.example.io"));
    g_assert_false(allowed("g", "CN=x.example.com"));
    g_assert_true(allowed("g", ".example.de"));
}

static void test_list_errors(Fixture *f, gconstpointer unused)
{
    /* Each with QEMU 7.2's message (checked against qemu-storage-daemon). */
    static const struct {
        const char *members;
        bool keyval;
        const char *message;
    } cases[] = {
        { "{\"policy\": \"maybe\"}", false, "Parameter 'policy' does not accept value 'maybe'" },
        { "{\"policy\": 5}", false, "Invalid parameter type for 'policy', expected: string" },
        { "{\"rules\": {\"match\": \"x\"}}", false,
          "Invalid parameter type for 'rules', expected: array" },
        { "{\"rules\": null}", false, "Invalid parameter type for 'rules', expected: array" },
        { "{\"rules\": [1]}", false, "Invalid parameter type for 'rules[0]', expected: object" },
        { "{\"rules\": [{\"match\": \"x\"}]}", false, "Parameter 'rules[0].policy' is missing" },
        { "{\"rules\": [{\"policy\": \"allow\"}]}", false,
          "Parameter 'rules[0].match' is missing" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"maybe\"}]}", false,
          "Parameter 'policy' does not accept value 'maybe'" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": 1}]}", false,
          "Invalid parameter type for 'rules[0].policy', expected: string" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\", \"format\": \"regex\"}]}",
          false, "Parameter 'format' does not accept value 'regex'" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\", \"format\": 1}]}", false,
          "Invalid parameter type for 'rules[0].format', expected: string" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\", \"extra\": 1}]}", false,
          "Parameter 'rules[0].extra' is unexpected" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\"}, {\"match\": 1}]}", false,
          "Invalid parameter type for 'rules[1].match', expected: string" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\"}, 5]}", false,
          "Invalid parameter type for 'rules[1]', expected: object" },
        { "{\"bogus\": 1}", false, "Parameter 'bogus' is unexpected" },
        { "rules.0.match=x", true, "Parameter 'rules.0.policy' is missing" },
        { "rules.0.policy=allow", true, "Parameter 'rules.0.match' is missing" },
        { "rules.0.match=x,rules.0.policy=maybe", true,
          "Parameter 'policy' does not accept value 'maybe'" },
        { "rules.0.match=x,rules.0.policy=allow,rules.0.x=1", true,
          "Parameter 'rules.0.x' is unexpected" },
        { "rules.0.match=x,rules.0.policy=allow,rules.0.format=x", true,
          "Parameter 'format' does not accept value 'x'" },
        { "rules.1.match=x,rules.1.policy=allow", true, "Parameter 'rules.0' missing" },
        { "rules=x", true, "Invalid parameter type for 'rules', expected: array" },
        { "rules.0=x", true, "Invalid parameter type for 'rules.0', expected: object" },
        { "rules.0.match.a=x,rules.0.policy=allow", true,
          "Invalid parameter type for 'rules.0.match', expected: string" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        test_object_add_fails("authz-list", cases[i].members, cases[i].keyval,
                              cases[i].message);
    }
}

static char *write_rules(Fixture *f, const char *name, const char *json)
{
    char *path = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, json, -1, NULL));
    return path;
}

static void test_listfile(Fixture *f, gconstpointer unused)
{
    g_autofree char *path = write_rules(f, "rules.json",
        "{\"policy\": \"deny\", \"rules\": [{\"match\": \"" DN_ALICE "\", \"policy\": \"allow\"},"
        " {\"match\": \"*bob*\", \"policy\": \"allow\", \"format\": \"glob\"}]}\n");
    g_assert_nonnull(path);
    g_autofree char *members = g_strdup_printf("{\"filename\": \"%s\", \"refresh\": false}",
                                               path);
    test_object_add_ok("authz-listfile", "f0", members, false);
    g_assert_true(allowed("f0", DN_ALICE));
    g_assert_true(allowed("f0", DN_BOB));
    g_assert_false(allowed("f0", "CN=mallory"));

    /* Without refresh a change is not seen. */
    g_autofree char *again = write_rules(f, "rules.json", "{\"policy\": \"allow\"}");
    g_assert_nonnull(again);
    for (int i = 0; i < 50; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_false(allowed("f0", "CN=mallory"));
}

static void test_listfile_errors(Fixture *f, gconstpointer unused)
{
    static const struct {
        const char *contents; /* NULL: the file does not exist */
        const char *message;  /* PATH: the file's path */
    } cases[] = {
        { NULL, "Unable to read 'PATH': Failed to open file \xe2\x80\x9cPATH\xe2\x80\x9d: "
                "No such file or directory" },
        { "{\"policy\":", "JSON parse error, unexpected end of data" },
        { "", "Expecting a JSON value" },
        { " \n", "Expecting a JSON value" },
        { "{\"policy\": \"deny\"} {\"a\": 1}", "Expecting at most one JSON value" },
        { "[1]", "File 'PATH' must contain a JSON object" },
        { "\"x\"", "File 'PATH' must contain a JSON object" },
        { "{\"policy\": \"deny\", \"bogus\": 1}", "Property 'authz-list.bogus' not found" },
        { "{\"policy\": 1}", "Invalid parameter type for 'policy', expected: string" },
        { "{\"policy\": \"maybe\"}", "Parameter 'policy' does not accept value 'maybe'" },
        { "{\"rules\": [{\"match\": \"x\"}]}", "Parameter 'rules[0].policy' is missing" },
        { "{\"rules\": {\"match\": \"x\"}}",
          "Invalid parameter type for 'rules', expected: array" },
        { "{\"rules\": [{\"match\": \"x\", \"policy\": \"allow\", \"format\": \"regex\"}]}",
          "Parameter 'format' does not accept value 'regex'" },
    };
    g_autofree char *path = g_build_filename(f->dir, "bad.json", NULL);
    g_autofree char *members = g_strdup_printf("filename=%s", path);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_unlink(path);
        if (cases[i].contents) {
            g_assert_true(g_file_set_contents(path, cases[i].contents, -1, NULL));
        }
        g_auto(GStrv) parts = g_strsplit(cases[i].message, "PATH", -1);
        g_autofree char *msg = g_strjoinv(path, parts);
        test_object_add_fails("authz-listfile", members, true, msg);
    }
    test_object_add_fails("authz-listfile", "{}", false, "Parameter 'filename' is missing");
    test_object_add_fails("authz-listfile", "filename=/x,refresh=maybe", true,
                          "Parameter 'refresh' expects 'on' or 'off'");
}

static void test_listfile_relative(Fixture *f, gconstpointer unused)
{
    g_autofree char *path = write_rules(f, "rel.json", "{\"policy\": \"allow\"}");
    g_assert_nonnull(path);
    g_autofree char *cwd = g_get_current_dir();
    g_assert_cmpint(g_chdir(f->dir), ==, 0);
    /* QEMU refuses to watch a name without a folder, and only that. */
    test_object_add_fails("authz-listfile", "filename=rel.json", true,
                          "Filename must be an absolute path");
    test_object_add_ok("authz-listfile", "rel", "filename=rel.json,refresh=off", true);
    g_assert_true(allowed("rel", "anyone"));
    g_assert_cmpint(g_chdir(cwd), ==, 0);
}

static void write_in_place(const char *path, const char *json)
{
    FILE *fp = fopen(path, "w");
    g_assert_nonnull(fp);
    g_assert_cmpint(fputs(json, fp), >=, 0);
    g_assert_cmpint(fclose(fp), ==, 0);
}

/* Run the main context until `id` answers `want` for `identity`. */
static void wait_for(const char *id, const char *identity, bool want)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (allowed(id, identity) != want) {
        if (g_get_monotonic_time() > deadline) {
            g_error("%s did not become %s for %s", id, want ? "allowed" : "denied", identity);
        }
        g_main_context_iteration(NULL, FALSE);
        g_usleep(5000);
    }
}

static void test_listfile_refresh(Fixture *f, gconstpointer unused)
{
    g_autofree char *path = write_rules(f, "live.json",
        "{\"rules\": [{\"match\": \"" DN_ALICE "\", \"policy\": \"allow\"}]}");
    g_assert_nonnull(path);
    g_autofree char *members = g_strdup_printf("filename=%s", path);
    test_object_add_ok("authz-listfile", "live", members, true);
    g_assert_true(allowed("live", DN_ALICE));
    g_assert_false(allowed("live", DN_BOB));

    /* Rewritten in place. */
    write_in_place(path, "{\"rules\": [{\"match\": \"" DN_BOB "\", \"policy\": \"allow\"}]}");
    wait_for("live", DN_BOB, true);
    g_assert_false(allowed("live", DN_ALICE));
    g_assert_nonnull(strstr(logged->str, "authz-listfile 'live': reloaded"));

    /* Broken: nobody gets in, and the log says why. */
    write_in_place(path, "{\"rules\": [");
    wait_for("live", DN_BOB, false);
    g_assert_false(allowed("live", DN_ALICE));
    g_assert_nonnull(strstr(logged->str, "authz-listfile 'live': denying everyone until"));
    g_assert_nonnull(strstr(logged->str, "JSON parse error"));

    /* Replaced by rename (g_file_set_contents() writes a new file and
     * renames it), as editors and configuration tools do. */
    g_autofree char *p1 = write_rules(f, "live.json",
        "{\"policy\": \"allow\", \"rules\": [{\"match\": \"" DN_BOB "\", \"policy\": \"deny\"}]}");
    g_assert_nonnull(p1);
    wait_for("live", DN_ALICE, true);
    g_assert_false(allowed("live", DN_BOB));

    /* Deleted: the rules last loaded stay. */
    g_assert_cmpint(g_unlink(path), ==, 0);
    for (int i = 0; i < 100; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_assert_true(allowed("live", DN_ALICE));
    /* Created again. */
    g_autofree char *p2 = write_rules(f, "live.json", "{\"policy\": \"deny\"}");
    g_assert_nonnull(p2);
    wait_for("live", DN_ALICE, false);

    /* Deleting the object stops the watch. */
    g_assert_true(qmp_object_del("live", NULL));
    g_autofree char *p3 = write_rules(f, "live.json", "{\"policy\": \"allow\"}");
    g_assert_nonnull(p3);
    for (int i = 0; i < 100; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    logged = g_string_new(NULL);
    g_log_set_handler("berth-io", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, record_log, NULL);
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
#define ADD(path, fn) \
    g_test_add("/io/authz/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("simple", test_simple);
    ADD("find", test_find);
    ADD("list-rules", test_list_rules);
    ADD("glob", test_glob);
    ADD("list-errors", test_list_errors);
    ADD("listfile", test_listfile);
    ADD("listfile-errors", test_listfile_errors);
    ADD("listfile-relative", test_listfile_relative);
    ADD("listfile-refresh", test_listfile_refresh);
#undef ADD
    int rc = g_test_run();
    g_string_free(logged, TRUE);
    return rc;
}
