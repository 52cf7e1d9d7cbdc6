/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the secret object and its lookups: inline and file data,
 * base64, AES-256-CBC decryption against vectors made with
 * `openssl enc -aes-256-cbc -a -K <hex key> -iv <hex iv>` (the recipe in
 * QEMU's documentation; tests/functional/test_objects.py makes fresh ones
 * at run time and checks that qemu-storage-daemon agrees), and every error
 * in QEMU 7.2's words.
 */
#include "berth/io/secret.h"
#include "io-object-test-util.h"

#include <glib/gstdio.h>
#include <string.h>

/* The AES key is these 32 ASCII bytes; the IV is the bytes 0..15. */
#define KEY_DATA "0123456789abcdef0123456789abcdef"
#define IV_B64 "AAECAwQFBgcICQoLDA0ODw=="
/* "letmein" (one block), "0123456789abcdef" (a whole block of padding
 * follows) and "" (padding only), encrypted with that key and IV. */
#define CT_LETMEIN "A9cv54/AQAFOV2ReiUc4Yw=="
#define CT_ONE_BLOCK "oChxUuEMxdC3iAHYNh2h5VWkxZsYc9rhqBe0rGMnrHc="
#define CT_EMPTY "b7GfSdrqnR1cMmy4e2fc6A=="

typedef struct {
    char *dir;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    berth_secret_object_type_init();
    f->dir = g_dir_make_tmp("berth-secret-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    test_object_add_ok("secret", "key", "{\"data\": \"" KEY_DATA "\"}", false);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    qmp_object_del_all();
    test_tmpdir_remove(f->dir);
}

static char *write_file(Fixture *f, const char *name, const void *data, size_t len)
{
    char *path = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, data, (gssize) len, NULL));
    return path;
}

/* Secret `id` holds exactly these bytes. */
static void assert_secret(const char *id, const void *want, size_t want_len)
{
    GError *err = NULL;
    size_t len = 12345;
    uint8_t *data = berth_secret_lookup(id, &len, &err);
    g_assert_no_error(err);
    g_assert_nonnull(data);
    g_assert_cmpmem(data, len, want, want_len);
    g_assert_cmpint(data[len], ==, 0);
    berth_secret_free(data, len);
}

static void test_inline_data(Fixture *f, gconstpointer unused)
{
    test_object_add_ok("secret", "s0", "{\"data\": \"hunter2\"}", false);
    assert_secret("s0", "hunter2", 7);
    GError *err = NULL;
    char *s = berth_secret_lookup_as_utf8("s0", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(s, ==, "hunter2");
    berth_secret_free(s, strlen(s));
    s = berth_secret_lookup_as_base64("s0", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(s, ==, "aHVudGVyMg==");
    berth_secret_free(s, strlen(s));

    /* The command-line form, with the format spelled out. */
    test_object_add_ok("secret", "s1", "data=pa,,ss,format=raw", true);
    assert_secret("s1", "pa,ss", 5);
    /* An empty secret is a secret. */
    test_object_add_ok("secret", "s2", "{\"data\": \"\"}", false);
    assert_secret("s2", "", 0);
}

static void test_file_data(Fixture *f, gconstpointer unused)
{
    static const uint8_t bin[] = { 0xff, 0x00, 'a', 0x00, 0x80 };
    g_autofree char *path = write_file(f, "bin", bin, sizeof(bin));
    g_autofree char *members = g_strdup_printf("{\"file\": \"%s\"}", path);
    test_object_add_ok("secret", "bin", members, false);
    assert_secret("bin", bin, sizeof(bin));

    GError *err = NULL;
    g_assert_null(berth_secret_lookup_as_utf8("bin", &err));
    g_assert_error(err, QMP_ERROR, QMP_ERROR_GENERIC);
    g_assert_cmpstr(err->message, ==, "Data from secret bin is not valid UTF-8");
    g_clear_error(&err);
    char *b64 = berth_secret_lookup_as_base64("bin", &err);
    g_assert_cmpstr(b64, ==, "/wBhAIA=");
    g_free(b64);

    /* A file is read as it is: a trailing newline is part of the secret. */
    g_autofree char *nl = write_file(f, "nl", "pw\n", 3);
    g_autofree char *nl_members = g_strdup_printf("file=%s", nl);
    test_object_add_ok("secret", "nl", nl_members, true);
    assert_secret("nl", "pw\n", 3);
}

static void test_base64(Fixture *f, gconstpointer unused)
{
    test_object_add_ok("secret", "b0", "{\"data\": \"aHVu\\ndGVyMg==\", \"format\": \"base64\"}",
                       false);
    assert_secret("b0", "hunter2", 7);
    /* GLib decodes whole groups only, as in QEMU: "YWJ" is nothing. */
    test_object_add_ok("secret", "b1", "data=YWJ,format=base64", true);
    assert_secret("b1", "", 0);

    test_object_add_fails("secret", "{\"data\": \"YWJj!\", \"format\": \"base64\"}", false,
                          "Base64 data contains invalid characters");
    /* From a file, a NUL inside the data is its own error. */
    g_autofree char *path = write_file(f, "nul", "YW\0Jj", 5);
    g_autofree char *members = g_strdup_printf("file=%s,format=base64", path);
    test_object_add_fails("secret", members, true,
                          "Base64 data contains embedded NUL characters");
    test_object_add_fails("secret", "data=x,format=hex", true,
                          "Parameter 'format' does not accept value 'hex'");
}

static void test_data_errors(Fixture *f, gconstpointer unused)
{
    test_object_add_fails("secret", "{}", false, "Either 'file' or 'data' must be provided");
    test_object_add_fails("secret", "{\"data\": \"x\", \"file\": \"/nonexistent\"}", false,
                          "'file' and 'data' are mutually exclusive");
    g_autofree char *missing = g_build_filename(f->dir, "missing", NULL);
    g_autofree char *members = g_strdup_printf("file=%s", missing);
    g_autofree char *msg = g_strdup_printf(
        "Unable to read %s: Failed to open file \xe2\x80\x9c%s\xe2\x80\x9d: "
        "No such file or directory", missing, missing);
    test_object_add_fails("secret", members, true, msg);
    /* QEMU 7.2 lists 'loaded' but will not let it be set, either way. */
    test_object_add_fails("secret", "data=x,loaded=on", true,
                          "Property 'secret.loaded' is not writable");
    test_object_add_fails("secret", "{\"data\": \"x\", \"loaded\": false}", false,
                          "Property 'secret.loaded' is not writable");
    test_object_add_fails("secret", "{\"data\": 1}", false,
                          "Invalid parameter type for 'data', expected: string");
}

static void test_decrypt(Fixture *f, gconstpointer unused)
{
    test_object_add_ok("secret", "e0",
                       "{\"data\": \"" CT_LETMEIN "\", \"format\": \"base64\", "
                       "\"keyid\": \"key\", \"iv\": \"" IV_B64 "\"}", false);
    assert_secret("e0", "letmein", 7);
    test_object_add_ok("secret", "e1", "data=" CT_ONE_BLOCK ",format=base64,keyid=key,iv="
                       IV_B64, true);
    assert_secret("e1", "0123456789abcdef", 16);
    test_object_add_ok("secret", "e2", "data=" CT_EMPTY ",format=base64,keyid=key,iv="
                       IV_B64, true);
    assert_secret("e2", "", 0);

    /* Raw ciphertext from a file; the key may itself come base64 encoded. */
    gsize ct_len = 0;
    g_autofree guchar *ct = g_base64_decode(CT_LETMEIN, &ct_len);
    g_autofree char *path = write_file(f, "ct", ct, ct_len);
    g_autofree char *key_b64 = g_base64_encode((const guchar *) KEY_DATA, 32);
    g_autofree char *key_members = g_strdup_printf("data=%s,format=base64", key_b64);
    test_object_add_ok("secret", "key64", key_members, true);
    g_autofree char *members = g_strdup_printf("file=%s,keyid=key64,iv=" IV_B64, path);
    test_object_add_ok("secret", "e3", members, true);
    assert_secret("e3", "letmein", 7);

    /* The key secret may go; the decrypted one stays. */
    g_assert_true(qmp_object_del("key64", NULL));
    assert_secret("e3", "letmein", 7);
}

static void test_decrypt_errors(Fixture *f, gconstpointer unused)
{
    test_object_add_ok("secret", "short", "data=0123456789", true);
    test_object_add_fails("secret", "data=abc,keyid=nope", true, "No secret with id 'nope'");
    test_object_add_fails("secret", "data=abc,keyid=short", true,
                          "Key should be 32 bytes in length");
    test_object_add_fails("secret", "data=abc,keyid=key", true,
                          "IV is required to decrypt secret");
    test_object_add_fails("secret", "data=abc,keyid=key,iv=AAA", true,
                          "IV should be 16 bytes in length not 0");
    test_object_add_fails("secret", "data=abc,keyid=key,iv=!!", true,
                          "Base64 data contains invalid characters");
    test_object_add_fails("secret", "data=abc,keyid=key,iv=" IV_B64, true,
                          "Length 3 must be a multiple of block size 16");
    test_object_add_fails("secret", "data=abcdabcdabcdabcd,keyid=key,iv=AAAAAAAAAAAAAAAAAAAAAA==",
                          true, "Incorrect number of padding bytes (37) found on decrypted data");
    test_object_add_fails("secret", "data=a!,format=base64,keyid=key,iv=" IV_B64, true,
                          "Base64 data contains invalid characters");
    /* QEMU finds the secret being created, which has no data yet. */
    test_object_add_fails("secret", "data=abc,keyid=x-failed,iv=" IV_B64, true,
                          "Secret with id 'x-failed' has no data");
}

static void test_lookup_errors(Fixture *f, gconstpointer unused)
{
    GError *err = NULL;
    size_t len = 0;
    g_assert_null(berth_secret_lookup("nope", &len, &err));
    g_assert_error(err, QMP_ERROR, QMP_ERROR_GENERIC);
    g_assert_cmpstr(err->message, ==, "No secret with id 'nope'");
    g_clear_error(&err);

    /* Another type's object of that id. */
    static const QmpObjectType other = { .name = "x-other", .create = NULL };
    g_assert_true(qmp_object_add("other0", &other, NULL, NULL));
    g_assert_null(berth_secret_lookup_as_utf8("other0", &err));
    g_assert_cmpstr(err->message, ==, "Object with id 'other0' is not a secret");
    g_clear_error(&err);
    g_assert_null(berth_secret_lookup_as_base64("other0", &err));
    g_assert_cmpstr(err->message, ==, "Object with id 'other0' is not a secret");
    g_clear_error(&err);
    test_object_add_fails("secret", "data=abc,keyid=other0,iv=" IV_B64, true,
                          "Object with id 'other0' is not a secret");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) \
    g_test_add("/io/secret/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("inline-data", test_inline_data);
    ADD("file-data", test_file_data);
    ADD("base64", test_base64);
    ADD("data-errors", test_data_errors);
    ADD("decrypt", test_decrypt);
    ADD("decrypt-errors", test_decrypt_errors);
    ADD("lookup-errors", test_lookup_errors);
#undef ADD
    return g_test_run();
}
