/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/keyval: qemu-storage-daemon's key=value,... syntax into
 * json-c objects. Results are compared as compact JSON text, which pins down
 * nesting, member order and the exact string values at once; error texts are
 * asserted verbatim because berthd prints them to users, and where QEMU has
 * a text for the same mistake it is QEMU's (checked against
 * qemu-storage-daemon 7.2's --blockdev and --nbd-server).
 */
#include <gio/gio.h>
#include <string.h>

#include "util/keyval.h"

#include "util/json.h"

static void check_parse(const char *params, const char *implied, const char *expected)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) obj = NULL;

    if (g_test_verbose()) {
        g_test_message("'%s' (implied %s)", params, implied ? implied : "none");
    }
    obj = keyval_parse(params, implied, &err);
    g_assert_no_error(err);
    g_assert_nonnull(obj);
    g_assert_cmpstr(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE),
                    ==, expected);
}

static void check_error(const char *params, const char *implied, const char *expected)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) obj = NULL;

    if (g_test_verbose()) {
        g_test_message("'%s' (implied %s)", params, implied ? implied : "none");
    }
    obj = keyval_parse(params, implied, &err);
    g_assert_null(obj);
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expected);
}

static void test_empty(void)
{
    check_parse("", NULL, "{}");
    check_parse("", "driver", "{}");
}

static void test_flat(void)
{
    check_parse("driver=file,node-name=d0", NULL,
                "{\"driver\":\"file\",\"node-name\":\"d0\"}");
    /* Members keep the order the user wrote them in. */
    check_parse("z=1,a=2,m=3", NULL, "{\"z\":\"1\",\"a\":\"2\",\"m\":\"3\"}");
    /* Every scalar stays a string: typing is the decoder's job. */
    check_parse("size=1G,read-only=on,count=42", NULL,
                "{\"size\":\"1G\",\"read-only\":\"on\",\"count\":\"42\"}");
    check_parse("x-debug_level-2=1,A=b", NULL, "{\"x-debug_level-2\":\"1\",\"A\":\"b\"}");
}

static void test_values(void)
{
    check_parse("a=", NULL, "{\"a\":\"\"}");
    check_parse("a=1,", NULL, "{\"a\":\"1\"}");
    check_parse("a=b=c", NULL, "{\"a\":\"b=c\"}");
    check_parse("path=/run/berth.sock", NULL, "{\"path\":\"/run/berth.sock\"}");
    check_parse("a= spaced value ", NULL, "{\"a\":\" spaced value \"}");
    check_parse("a=x.y", NULL, "{\"a\":\"x.y\"}");
}

static void test_comma_escape(void)
{
    check_parse("filename=a,,b.img", NULL, "{\"filename\":\"a,b.img\"}");
    check_parse("a=,,", NULL, "{\"a\":\",\"}");
    check_parse("a=,,,b=2", NULL, "{\"a\":\",\",\"b\":\"2\"}");
    check_parse("a=x,,,,y", NULL, "{\"a\":\"x,,y\"}");
    check_parse("a=1,,,,", NULL, "{\"a\":\"1,,\"}");
    check_parse("a=,,x,,,b=,,", NULL, "{\"a\":\",x,\",\"b\":\",\"}");
}

static void test_nested(void)
{
    check_parse("driver=file,cache.direct=on,cache.no-flush=off", NULL,
                "{\"driver\":\"file\",\"cache\":{\"direct\":\"on\",\"no-flush\":\"off\"}}");
    check_parse("addr.type=unix,addr.path=/s,addr.x.y.z=1", NULL,
                "{\"addr\":{\"type\":\"unix\",\"path\":\"/s\",\"x\":{\"y\":{\"z\":\"1\"}}}}");
    /* Members of one object may be spread over the string. */
    check_parse("a.b=1,c=2,a.d=3", NULL, "{\"a\":{\"b\":\"1\",\"d\":\"3\"},\"c\":\"2\"}");
}

static void test_implied_key(void)
{
    check_parse("socket,id=c0,path=/q", "backend",
                "{\"backend\":\"socket\",\"id\":\"c0\",\"path\":\"/q\"}");
    check_parse("tls-creds-x509,id=t0", "qom-type",
                "{\"qom-type\":\"tls-creds-x509\",\"id\":\"t0\"}");
    check_parse("null-co", "driver", "{\"driver\":\"null-co\"}");
    /* qemu-storage-daemon's four implied keys, as its --help writes them. */
    check_parse("file,node-name=f0,filename=a,,b.img", "driver",
                "{\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"a,b.img\"}");
    check_parse("iothread,id=io0", "qom-type", "{\"qom-type\":\"iothread\",\"id\":\"io0\"}");
    check_parse("nbd,id=e0,node-name=f0", "type",
                "{\"type\":\"nbd\",\"id\":\"e0\",\"node-name\":\"f0\"}");
    check_parse("qmp0,pretty=on", "chardev", "{\"chardev\":\"qmp0\",\"pretty\":\"on\"}");
    /* An explicit first key makes the implied one unused. */
    check_parse("id=c0,backend=socket", "backend", "{\"id\":\"c0\",\"backend\":\"socket\"}");
    check_parse("node-name=f0,driver=file", "driver",
                "{\"node-name\":\"f0\",\"driver\":\"file\"}");
    /* The bare value is everything up to the first ',', dots and spaces too. */
    check_parse("a.b c,x=1", "driver", "{\"driver\":\"a.b c\",\"x\":\"1\"}");
    check_parse("file,", "driver", "{\"driver\":\"file\"}");
    /* "help" as a key or a value is not a help request. */
    check_parse("helpful,help=1,x=help", "driver",
                "{\"driver\":\"helpful\",\"help\":\"1\",\"x\":\"help\"}");
    /* A nested implied key is allowed too. */
    check_parse("unix,path=/s", "addr.type", "{\"addr\":{\"type\":\"unix\"},\"path\":\"/s\"}");
}

static void test_implied_key_errors(void)
{
    /* Only the first value may omit its key. */
    check_error("socket,id=c0,server", "backend", "Expected '=' after parameter 'server'");
    check_error("socket,id=c0", NULL, "Expected '=' after parameter 'socket'");
    check_error("driver=file,file,node-name=f0", "driver",
                "Expected '=' after parameter 'file'");
    check_error("node-name=f0,file", "driver", "Expected '=' after parameter 'file'");
    /* An empty leading value is not a value for the implied key. */
    check_error(",driver=null-co", "driver", "Invalid parameter ''");
    check_error(",,a", "driver", "Invalid parameter ''");
    /* The implied key counts as given: naming it again repeats it. */
    check_error("null-co,driver=file", "driver",
                "Parameter 'driver' is specified more than once");
    /*
     * ",," does not escape in the bare value (qemu-storage-daemon refuses
     * "fi,,le,..." too); the message says how to write such a value.
     */
    check_error("a,,b,id=1", "qom-type",
                "Invalid parameter '': a value given without 'qom-type=' cannot contain ','");
    check_error("a,,,b=1", "driver",
                "Invalid parameter '': a value given without 'driver=' cannot contain ','");
}

/* Parse expecting a help request besides the members in `expected`. */
static void check_help(const char *params, const char *implied, const char *expected)
{
    g_autoptr(GError) err = NULL;
    bool help = false;
    g_autoptr(json_object) obj = keyval_parse_with_help(params, implied, &help, &err);

    g_assert_no_error(err);
    g_assert_nonnull(obj);
    g_assert_true(help);
    g_assert_cmpstr(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN), ==, expected);
}

static void test_help(void)
{
    /* A lone "help" or "?" is a help request, before any implied key. */
    check_help("help", "qom-type", "{}");
    check_help("?", "qom-type", "{}");
    check_help("iothread,help", "qom-type", "{\"qom-type\":\"iothread\"}");
    check_help("help,id=x", "qom-type", "{\"id\":\"x\"}");
    check_help("addr.type=unix,?,", NULL, "{\"addr\":{\"type\":\"unix\"}}");

    /* Without a request, *help is cleared. */
    g_autoptr(GError) err = NULL;
    bool help = true;
    g_autoptr(json_object) obj = keyval_parse_with_help("help=1", "driver", &help, &err);
    g_assert_no_error(err);
    g_assert_nonnull(obj);
    g_assert_false(help);

    /* Callers that offer no help get QEMU's error, after any syntax error. */
    check_error("help", "driver", "Help is not available for this option");
    check_error("file,help", "driver", "Help is not available for this option");
    check_error("addr.type=unix,?", NULL, "Help is not available for this option");
    /* "help" used the implied key up, so "file" needs its '='. */
    check_error("help,file", "driver", "Expected '=' after parameter 'file'");
}

static void test_syntax_errors(void)
{
    check_error("driver=null-co,node-name", NULL, "Expected '=' after parameter 'node-name'");
    check_error("node-name", NULL, "Expected '=' after parameter 'node-name'");
    check_error("cache.direct", NULL, "Expected '=' after parameter 'cache.direct'");
    check_error("driver=null-co,=x", NULL, "Invalid parameter ''");
    check_error(",", NULL, "Invalid parameter ''");
    check_error("a=1,,,=2", NULL, "Invalid parameter ''");
    check_error("a..b=1", NULL, "Invalid parameter 'a..b'");
    check_error("a.=1", NULL, "Invalid parameter 'a.'");
    check_error(".a=1", NULL, "Invalid parameter '.a'");
    check_error("a@b=1", NULL, "Invalid parameter 'a@b'");
    check_error("1a=1", NULL, "Invalid parameter '1a'");
    check_error("a b=1", NULL, "Invalid parameter 'a b'");
    check_error("-a=1", NULL, "Invalid parameter '-a'");
    /* An index cannot be the first fragment: the root is always an object. */
    check_error("0=x", NULL, "Invalid parameter '0'");
    /* Key checks come before the missing '=' check, as in QEMU. */
    check_error("a@b", NULL, "Invalid parameter 'a@b'");
}

static void test_inconsistent(void)
{
    check_error("cache=1,cache.direct=on", NULL, "Parameters 'cache.*' used inconsistently");
    check_error("cache.direct=on,cache=1", NULL, "Parameters 'cache.*' used inconsistently");
    check_error("addr.type=unix,addr=1", NULL, "Parameters 'addr.*' used inconsistently");
    check_error("a.b=1,a.b.c=2", NULL, "Parameters 'a.b.*' used inconsistently");
    check_error("a.b.c=2,a.b=1", NULL, "Parameters 'a.b.*' used inconsistently");
}

static void test_repeated(void)
{
    check_error("node-name=a,node-name=b", NULL,
                "Parameter 'node-name' is specified more than once");
    check_error("cache.direct=on,cache.direct=off", NULL,
                "Parameter 'cache.direct' is specified more than once");
    check_error("a=1,b=2,a=1", NULL, "Parameter 'a' is specified more than once");
}

static void test_key_length(void)
{
    g_autofree char *k127 = g_strnfill(127, 'k');
    g_autofree char *k128 = g_strnfill(128, 'k');
    g_autofree char *ok = g_strdup_printf("%s=1", k127);
    g_autofree char *ok_json = g_strdup_printf("{\"%s\":\"1\"}", k127);
    g_autofree char *long_key = g_strdup_printf("%s=1", k128);
    g_autofree char *long_frag = g_strdup_printf("a.%s=1", k128);
    g_autofree char *msg_key = g_strdup_printf("Parameter '%s' is too long", k128);
    g_autofree char *msg_frag = g_strdup_printf("Parameter fragment '%s' is too long", k128);

    check_parse(ok, NULL, ok_json);
    check_error(long_key, NULL, msg_key);
    check_error(long_frag, NULL, msg_frag);
}

static void test_depth_limit(void)
{
    g_autoptr(GString) key = g_string_new("a");

    for (int i = 1; i < 32; i++) {
        g_string_append(key, ".a");
    }
    g_autofree char *ok = g_strdup_printf("%s=1", key->str);
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) obj = keyval_parse(ok, NULL, &err);
    g_assert_no_error(err);

    /* 32 levels are kept; walk them to be sure the value sits at the bottom. */
    json_object *cur = obj;
    for (int i = 0; i < 32; i++) {
        g_assert_true(json_object_is_type(cur, json_type_object));
        cur = json_object_object_get(cur, "a");
    }
    g_assert_cmpstr(json_object_get_string(cur), ==, "1");

    g_string_append(key, ".a");
    g_autofree char *deep = g_strdup_printf("%s=1", key->str);
    g_autofree char *msg = g_strdup_printf("Parameter '%s' is nested too deeply", key->str);
    check_error(deep, NULL, msg);
}

static void test_lists(void)
{
    check_parse("bitmaps.0=a,bitmaps.1=b", NULL, "{\"bitmaps\":[\"a\",\"b\"]}");
    check_parse("b.1=x,b.0=y", NULL, "{\"b\":[\"y\",\"x\"]}");
    check_parse("s.0.type=unix,s.0.path=p,s.1.type=inet", NULL,
                "{\"s\":[{\"type\":\"unix\",\"path\":\"p\"},{\"type\":\"inet\"}]}");
    check_parse("a.b.0=x,a.c=y", NULL, "{\"a\":{\"b\":[\"x\"],\"c\":\"y\"}}");
    check_parse("m.0.0=x,m.0.1=y,m.1.0=z", NULL, "{\"m\":[[\"x\",\"y\"],[\"z\"]]}");
}

static void test_list_errors(void)
{
    check_error("b.1=x", NULL, "Parameter 'b.0' missing");
    check_error("b.0=x,b.2=y", NULL, "Parameter 'b.1' missing");
    /* A huge index is a gap, never an allocation. */
    check_error("b.99999999999999999999999=x", NULL, "Parameter 'b.0' missing");
    check_error("b.4294967296=x,b.0=y", NULL, "Parameter 'b.1' missing");
    check_error("b.0=x,b.n=y", NULL, "Parameters 'b.*' used inconsistently");
    check_error("a.b.0=x,a.b.n=y", NULL, "Parameters 'a.b.*' used inconsistently");
    check_error("b.0=x,b.0.c=y", NULL, "Parameters 'b.0.*' used inconsistently");
    /* "01" and "1" are both index 1. */
    check_error("b.0=x,b.1=y,b.01=z", NULL, "Parameter 'b.1' is specified more than once");
}

static void test_error_is_invalid_argument(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) obj = keyval_parse("x", NULL, &err);

    g_assert_null(obj);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
}

static void test_binary_safe_values(void)
{
    /* Non-ASCII bytes and JSON specials pass through unchanged. */
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) obj = keyval_parse("d=\"qu\\ote\" \xc3\xa9\t", NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(obj, "d")), ==,
                    "\"qu\\ote\" \xc3\xa9\t");
}

/*
 * Random strings over the characters that matter to the grammar: every one
 * must give either an object or an error, never both, never a crash.
 */
static void test_random_input(void)
{
    static const char alphabet[] = "ab0.=,,-_ ";
    GRand *rand = g_rand_new_with_seed(20240601);
    unsigned parsed = 0, rejected = 0;

    for (int i = 0; i < 5000; i++) {
        char buf[48];
        int len = g_rand_int_range(rand, 0, sizeof(buf));
        g_autoptr(GError) err = NULL;

        for (int j = 0; j < len; j++) {
            buf[j] = alphabet[g_rand_int_range(rand, 0, sizeof(alphabet) - 1)];
        }
        buf[len] = '\0';
        g_autoptr(json_object) obj = keyval_parse(buf, i % 2 ? "driver" : NULL, &err);
        g_assert_true((obj == NULL) != (err == NULL));
        if (obj) {
            g_assert_true(json_object_is_type(obj, json_type_object));
            parsed++;
        } else {
            g_assert_nonnull(err->message);
            rejected++;
        }
    }
    /* Both outcomes must actually have been exercised. */
    g_assert_cmpuint(parsed, >, 100);
    g_assert_cmpuint(rejected, >, 100);
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/keyval/empty", test_empty);
    g_test_add_func("/keyval/flat", test_flat);
    g_test_add_func("/keyval/values", test_values);
    g_test_add_func("/keyval/comma-escape", test_comma_escape);
    g_test_add_func("/keyval/nested", test_nested);
    g_test_add_func("/keyval/implied-key", test_implied_key);
    g_test_add_func("/keyval/implied-key-errors", test_implied_key_errors);
    g_test_add_func("/keyval/help", test_help);
    g_test_add_func("/keyval/syntax-errors", test_syntax_errors);
    g_test_add_func("/keyval/inconsistent", test_inconsistent);
    g_test_add_func("/keyval/repeated", test_repeated);
    g_test_add_func("/keyval/key-length", test_key_length);
    g_test_add_func("/keyval/depth-limit", test_depth_limit);
    g_test_add_func("/keyval/lists", test_lists);
    g_test_add_func("/keyval/list-errors", test_list_errors);
    g_test_add_func("/keyval/error-domain", test_error_is_invalid_argument);
    g_test_add_func("/keyval/binary-safe", test_binary_safe_values);
    g_test_add_func("/keyval/random-input", test_random_input);
    return g_test_run();
}
