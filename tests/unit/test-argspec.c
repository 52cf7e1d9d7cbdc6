/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/argspec: decoding of QMP arguments and keyval options
 * through ArgSpec tables into a C struct. Error texts are asserted verbatim
 * because they are part of the QMP contract: each one was taken from
 * qemu-storage-daemon 7.2's answer to the same input. The tables below mimic
 * a small blockdev-add (a base table, a per-driver variant, nested objects)
 * so that the tests exercise the shapes real commands use.
 */
#include <glib.h>
#include <string.h>

#include "berth/util/argspec.h"
#include "util/keyval.h"

#include "util/json.h"

typedef enum { DRV_FILE, DRV_NULL } Driver;
typedef enum { DISCARD_IGNORE, DISCARD_UNMAP } Discard;

static const char *const driver_names[] = { "file", "null-co", NULL };
static const char *const discard_names[] = { "ignore", "unmap", NULL };

typedef struct {
    int driver;
    char *node_name;
    bool has_read_only, read_only;
    bool has_discard;
    int discard;
    bool has_direct, direct;
    bool has_no_flush, no_flush;
    bool has_offset;
    int64_t offset;
    bool has_max_conn;
    uint64_t max_conn;
    bool has_size;
    uint64_t size;
    bool has_data;
    json_object *data;
    char *filename;
    bool has_label;
    char *label;
    char *server_type;
    char *server_path;
} Opts;

static const ArgSpec cache_members[] = {
    ARG_OPTIONAL("direct", ARG_BOOL, Opts, direct, has_direct),
    ARG_OPTIONAL("no-flush", ARG_BOOL, Opts, no_flush, has_no_flush),
    ARG_TABLE_END,
};

static const ArgSpec base_members[] = {
    { .name = "driver", .type = ARG_ENUM, .offset = offsetof(Opts, driver),
      .present_offset = ARG_NO_PRESENCE, .enum_values = driver_names },
    ARG_REQUIRED("node-name", ARG_STR, Opts, node_name),
    ARG_OPTIONAL("read-only", ARG_BOOL, Opts, read_only, has_read_only),
    ARG_ENUM_OPTIONAL("discard", discard_names, Opts, discard, has_discard),
    ARG_NESTED("cache", cache_members, true),
    ARG_OPTIONAL("offset", ARG_INT, Opts, offset, has_offset),
    ARG_OPTIONAL("max-connections", ARG_UINT, Opts, max_conn, has_max_conn),
    ARG_OPTIONAL("size", ARG_SIZE, Opts, size, has_size),
    ARG_OPTIONAL("data", ARG_ANY, Opts, data, has_data),
    ARG_OPTIONAL("label", ARG_STR, Opts, label, has_label),
    ARG_TABLE_END,
};

static const ArgSpec file_members[] = {
    ARG_REQUIRED("filename", ARG_STR, Opts, filename),
    /* Declared by the base table as well: must decode without leaking. */
    ARG_OPTIONAL("label", ARG_STR, Opts, label, has_label),
    ARG_TABLE_END,
};

static const ArgSpec server_members[] = {
    ARG_REQUIRED("type", ARG_STR, Opts, server_type),
    ARG_REQUIRED("path", ARG_STR, Opts, server_path),
    ARG_TABLE_END,
};

static const ArgSpec nbd_members[] = {
    ARG_NESTED("server", server_members, false),
    ARG_TABLE_END,
};

static const ArgSpec *const base_only[] = { base_members, NULL };
static const ArgSpec *const file_tables[] = { base_members, file_members, NULL };
static const ArgSpec *const nbd_tables[] = { base_members, nbd_members, NULL };

static json_object *parse_json(const char *text)
{
    json_object *obj = json_tokener_parse(text);

    g_assert_nonnull(obj);
    return obj;
}

static bool decode_text(const ArgSpec *const *tables, const char *json, bool keyval,
                        Opts *o, GError **errp)
{
    g_autoptr(json_object) args = parse_json(json);

    return argspec_decode(tables, args, keyval, o, errp);
}

/* A failed decode must leave nothing allocated and no flag set. */
static void assert_cleared(const Opts *o)
{
    g_assert_null(o->node_name);
    g_assert_null(o->filename);
    g_assert_null(o->label);
    g_assert_null(o->data);
    g_assert_null(o->server_type);
    g_assert_null(o->server_path);
    g_assert_false(o->has_read_only || o->has_discard || o->has_direct ||
                   o->has_no_flush || o->has_offset || o->has_max_conn ||
                   o->has_size || o->has_data || o->has_label);
}

static void check_error(const ArgSpec *const *tables, const char *json, bool keyval,
                        const char *expected)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    if (g_test_verbose()) {
        g_test_message("%s (keyval=%d)", json, keyval);
    }
    g_assert_false(decode_text(tables, json, keyval, &o, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expected);
    assert_cleared(&o);
}

static void check_qmp_error(const char *json, const char *expected)
{
    check_error(base_only, json, false, expected);
}

static void check_keyval_error(const char *json, const char *expected)
{
    check_error(base_only, json, true, expected);
}

#define BASE "\"driver\":\"null-co\",\"node-name\":\"n\""

static void test_qmp_all_types(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(base_only,
        "{" BASE ",\"read-only\":true,\"discard\":\"unmap\","
        "\"cache\":{\"direct\":true,\"no-flush\":false},\"offset\":-42,"
        "\"max-connections\":16,\"size\":1073741824,\"data\":{\"k\":[1,2]},"
        "\"label\":\"a,b\"}", false, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpint(o.driver, ==, DRV_NULL);
    g_assert_cmpstr(o.node_name, ==, "n");
    g_assert_true(o.has_read_only && o.read_only);
    g_assert_true(o.has_discard);
    g_assert_cmpint(o.discard, ==, DISCARD_UNMAP);
    g_assert_true(o.has_direct && o.direct);
    g_assert_true(o.has_no_flush && !o.no_flush);
    g_assert_true(o.has_offset);
    g_assert_cmpint(o.offset, ==, -42);
    g_assert_true(o.has_max_conn);
    g_assert_cmpuint(o.max_conn, ==, 16);
    g_assert_true(o.has_size);
    g_assert_cmpuint(o.size, ==, G_GUINT64_CONSTANT(1) << 30);
    g_assert_true(o.has_data);
    g_assert_cmpstr(json_object_to_json_string_ext(o.data, JSON_C_TO_STRING_PLAIN), ==,
                    "{\"k\":[1,2]}");
    g_assert_true(o.has_label);
    g_assert_cmpstr(o.label, ==, "a,b");

    argspec_clear(base_only, &o);
    assert_cleared(&o);
}

static void test_optional_absent_keeps_defaults(void)
{
    Opts o = { .read_only = true, .size = 512, .offset = 7 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(base_only, "{" BASE "}", false, &o, &err));
    g_assert_no_error(err);
    g_assert_false(o.has_read_only || o.has_size || o.has_offset || o.has_direct);
    /* Defaults set by the caller survive when the member is absent. */
    g_assert_true(o.read_only);
    g_assert_cmpuint(o.size, ==, 512);
    g_assert_cmpint(o.offset, ==, 7);
    argspec_clear(base_only, &o);
}

static void test_null_args_means_empty(void)
{
    static const ArgSpec optional_only[] = {
        ARG_OPTIONAL("read-only", ARG_BOOL, Opts, read_only, has_read_only),
        ARG_TABLE_END,
    };
    static const ArgSpec *const tables[] = { optional_only, NULL };
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(argspec_decode(tables, NULL, false, &o, &err));
    g_assert_no_error(err);
    g_assert_false(o.has_read_only);

    g_assert_false(argspec_decode(base_only, NULL, false, &o, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'driver' is missing");
}

static void test_non_object_args(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) arr = json_object_new_array();

    g_assert_false(argspec_decode(base_only, arr, false, &o, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type, expected: object");
    assert_cleared(&o);
}

static void test_missing(void)
{
    check_qmp_error("{\"driver\":\"null-co\"}", "Parameter 'node-name' is missing");
    check_qmp_error("{\"node-name\":\"n\"}", "Parameter 'driver' is missing");
    check_error(nbd_tables, "{" BASE "}", false, "Parameter 'server' is missing");
    check_error(nbd_tables, "{" BASE ",\"server\":{\"type\":\"unix\"}}", false,
                "Parameter 'server.path' is missing");
    check_error(file_tables, "{" BASE "}", false, "Parameter 'filename' is missing");
}

static void test_unexpected(void)
{
    check_qmp_error("{" BASE ",\"foo\":1}", "Parameter 'foo' is unexpected");
    check_qmp_error("{" BASE ",\"cache\":{\"foo\":1}}", "Parameter 'cache.foo' is unexpected");
    check_error(nbd_tables, "{" BASE ",\"server\":{\"type\":\"unix\",\"path\":\"x\",\"foo\":1}}",
                false, "Parameter 'server.foo' is unexpected");
    /* A variant member is unknown unless its table is passed. */
    check_qmp_error("{" BASE ",\"filename\":\"x\"}", "Parameter 'filename' is unexpected");
}

static void test_member_errors_before_unexpected(void)
{
    /* QEMU checks declared members first, unknown ones at the end. */
    check_qmp_error("{" BASE ",\"foo\":1,\"size\":\"x\"}",
                    "Invalid parameter type for 'size', expected: integer");
    check_qmp_error("{" BASE ",\"foo\":1,\"discard\":\"bogus\"}",
                    "Parameter 'discard' does not accept value 'bogus'");
    /* Nested unknown members are reported when that object is done. */
    check_qmp_error("{" BASE ",\"cache\":{\"x\":1},\"size\":\"x\"}",
                    "Parameter 'cache.x' is unexpected");
}

static void test_unexpected_choice_matches_qemu(void)
{
    /*
     * With several unknown members QEMU names one by its hash-table order;
     * each answer below is what qemu-storage-daemon 7.2 said to blockdev-add.
     */
    check_qmp_error("{" BASE ",\"foo\":1,\"bar\":2}", "Parameter 'bar' is unexpected");
    check_qmp_error("{" BASE ",\"zeta\":1,\"alpha\":2,\"mid\":3,\"omega\":4,\"beta\":5,"
                    "\"gamma\":6,\"delta\":7,\"eps\":8,\"eta\":9,\"theta\":10}",
                    "Parameter 'eps' is unexpected");
    check_qmp_error("{" BASE ",\"read-only\":true,\"cache\":{\"direct\":true,\"x\":1,"
                    "\"y\":2,\"z\":3}}", "Parameter 'cache.z' is unexpected");
    check_qmp_error("{" BASE ",\"discard\":\"ignore\",\"a\":1,\"b\":2,\"c\":3}",
                    "Parameter 'b' is unexpected");
    /* The same rule holds for command-line input. */
    check_keyval_error("{" BASE ",\"foo\":\"1\",\"bar\":\"2\"}",
                       "Parameter 'bar' is unexpected");
}

static void test_qmp_wrong_types(void)
{
    check_qmp_error("{\"driver\":\"null-co\",\"node-name\":1}",
                    "Invalid parameter type for 'node-name', expected: string");
    check_qmp_error("{\"driver\":\"null-co\",\"node-name\":null}",
                    "Invalid parameter type for 'node-name', expected: string");
    check_qmp_error("{\"driver\":\"null-co\",\"node-name\":[]}",
                    "Invalid parameter type for 'node-name', expected: string");
    check_qmp_error("{" BASE ",\"read-only\":\"on\"}",
                    "Invalid parameter type for 'read-only', expected: boolean");
    check_qmp_error("{" BASE ",\"read-only\":1}",
                    "Invalid parameter type for 'read-only', expected: boolean");
    check_qmp_error("{" BASE ",\"read-only\":null}",
                    "Invalid parameter type for 'read-only', expected: boolean");
    check_qmp_error("{" BASE ",\"discard\":1}",
                    "Invalid parameter type for 'discard', expected: string");
    check_qmp_error("{" BASE ",\"discard\":\"bogus\"}",
                    "Parameter 'discard' does not accept value 'bogus'");
    check_qmp_error("{\"driver\":\"bogus\",\"node-name\":\"n\"}",
                    "Parameter 'driver' does not accept value 'bogus'");
    check_qmp_error("{" BASE ",\"cache\":1}",
                    "Invalid parameter type for 'cache', expected: object");
    check_qmp_error("{" BASE ",\"cache\":null}",
                    "Invalid parameter type for 'cache', expected: object");
    check_qmp_error("{" BASE ",\"cache\":\"on\"}",
                    "Invalid parameter type for 'cache', expected: object");
    check_qmp_error("{" BASE ",\"cache\":{\"direct\":\"x\"}}",
                    "Invalid parameter type for 'cache.direct', expected: boolean");
    check_qmp_error("{" BASE ",\"cache\":{\"direct\":true,\"no-flush\":1}}",
                    "Invalid parameter type for 'cache.no-flush', expected: boolean");
}

static void test_qmp_integers(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    check_qmp_error("{" BASE ",\"offset\":\"1\"}",
                    "Invalid parameter type for 'offset', expected: integer");
    check_qmp_error("{" BASE ",\"offset\":1.5}",
                    "Invalid parameter type for 'offset', expected: integer");
    check_qmp_error("{" BASE ",\"offset\":null}",
                    "Invalid parameter type for 'offset', expected: integer");
    check_qmp_error("{" BASE ",\"offset\":9223372036854775808}",
                    "Invalid parameter type for 'offset', expected: integer");

    check_qmp_error("{" BASE ",\"max-connections\":-1}",
                    "Parameter 'max-connections' expects uint64");
    check_qmp_error("{" BASE ",\"max-connections\":\"x\"}",
                    "Parameter 'max-connections' expects uint64");
    check_qmp_error("{" BASE ",\"max-connections\":1e3}",
                    "Parameter 'max-connections' expects uint64");

    check_qmp_error("{" BASE ",\"size\":\"x\"}",
                    "Invalid parameter type for 'size', expected: integer");
    check_qmp_error("{" BASE ",\"size\":\"1G\"}",
                    "Invalid parameter type for 'size', expected: integer");
    check_qmp_error("{" BASE ",\"size\":1.5}",
                    "Invalid parameter type for 'size', expected: integer");
    check_qmp_error("{" BASE ",\"size\":-1}",
                    "Parameter 'size' expects a non-negative number below 2^64");

    /* The extremes of each type are accepted. */
    g_assert_true(decode_text(base_only,
        "{" BASE ",\"offset\":-9223372036854775808,"
        "\"max-connections\":18446744073709551615,\"size\":18446744073709551615}",
        false, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpint(o.offset, ==, G_MININT64);
    g_assert_cmpuint(o.max_conn, ==, G_MAXUINT64);
    g_assert_cmpuint(o.size, ==, G_MAXUINT64);
    argspec_clear(base_only, &o);

    g_assert_true(decode_text(base_only, "{" BASE ",\"offset\":9223372036854775807}",
                              false, &o, &err));
    g_assert_cmpint(o.offset, ==, G_MAXINT64);
    argspec_clear(base_only, &o);
}

typedef struct {
    const char *text;
    bool value;
} BoolCase;

static void test_keyval_bool(void)
{
    static const BoolCase cases[] = {
        { "on", true }, { "yes", true }, { "true", true },
        { "off", false }, { "no", false }, { "false", false },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        Opts o = { .read_only = !cases[i].value };
        g_autoptr(GError) err = NULL;
        g_autofree char *json = g_strdup_printf("{" BASE ",\"read-only\":\"%s\"}",
                                                cases[i].text);

        g_assert_true(decode_text(base_only, json, true, &o, &err));
        g_assert_no_error(err);
        g_assert_true(o.has_read_only);
        g_assert_cmpint(o.read_only, ==, cases[i].value);
        argspec_clear(base_only, &o);
    }
    check_keyval_error("{" BASE ",\"read-only\":\"maybe\"}",
                       "Parameter 'read-only' expects 'on' or 'off'");
    check_keyval_error("{" BASE ",\"read-only\":\"ON\"}",
                       "Parameter 'read-only' expects 'on' or 'off'");
    check_keyval_error("{" BASE ",\"read-only\":\"\"}",
                       "Parameter 'read-only' expects 'on' or 'off'");
    check_keyval_error("{" BASE ",\"cache\":{\"direct\":\"maybe\"}}",
                       "Parameter 'cache.direct' expects 'on' or 'off'");
}

static void test_keyval_integers(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(base_only,
        "{" BASE ",\"offset\":\"-5\",\"max-connections\":\"0x10\",\"size\":\"1.5G\"}",
        true, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpint(o.offset, ==, -5);
    g_assert_cmpuint(o.max_conn, ==, 16);
    g_assert_cmpuint(o.size, ==, 3 * (G_GUINT64_CONSTANT(1) << 29));
    argspec_clear(base_only, &o);

    check_keyval_error("{" BASE ",\"offset\":\"abc\"}", "Parameter 'offset' expects integer");
    check_keyval_error("{" BASE ",\"offset\":\"\"}", "Parameter 'offset' expects integer");
    check_keyval_error("{" BASE ",\"offset\":\"1k\"}", "Parameter 'offset' expects integer");
    check_keyval_error("{" BASE ",\"offset\":\"9223372036854775808\"}",
                       "Parameter 'offset' expects integer");
    check_keyval_error("{" BASE ",\"max-connections\":\"x\"}",
                       "Parameter 'max-connections' expects integer");
    check_keyval_error("{" BASE ",\"max-connections\":\"99999999999999999999\"}",
                       "Parameter 'max-connections' expects integer");
    check_keyval_error("{" BASE ",\"max-connections\":\"-1\"}",
                       "Parameter 'max-connections' expects uint64");
    check_keyval_error("{" BASE ",\"size\":\"abc\"}", "Parameter 'size' expects integer");
    check_keyval_error("{" BASE ",\"size\":\"1Q\"}", "Parameter 'size' expects integer");
    check_keyval_error("{" BASE ",\"size\":\"\"}", "Parameter 'size' expects integer");
    check_keyval_error("{" BASE ",\"size\":\"-1\"}",
                       "Parameter 'size' expects a non-negative number below 2^64");
    check_keyval_error("{" BASE ",\"size\":\"16E\"}",
                       "Parameter 'size' expects a non-negative number below 2^64");
    check_keyval_error("{" BASE ",\"size\":\"99999999999999999999\"}",
                       "Parameter 'size' expects a non-negative number below 2^64");
}

static void test_keyval_accepts_json_types(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(base_only,
        "{" BASE ",\"read-only\":true,\"offset\":3,\"size\":4096,\"max-connections\":2}",
        true, &o, &err));
    g_assert_no_error(err);
    g_assert_true(o.read_only);
    g_assert_cmpint(o.offset, ==, 3);
    g_assert_cmpuint(o.size, ==, 4096);
    g_assert_cmpuint(o.max_conn, ==, 2);
    argspec_clear(base_only, &o);

    /* Types that are neither the JSON type nor a string still fail. */
    check_keyval_error("{" BASE ",\"read-only\":{}}",
                       "Invalid parameter type for 'read-only', expected: boolean");
    check_keyval_error("{" BASE ",\"offset\":1.5}",
                       "Invalid parameter type for 'offset', expected: integer");
    check_keyval_error("{" BASE ",\"cache\":\"1\"}",
                       "Invalid parameter type for 'cache', expected: object");
    check_keyval_error("{\"driver\":\"null-co\",\"node-name\":{\"x\":\"1\"}}",
                       "Invalid parameter type for 'node-name', expected: string");
}

static void test_any(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;
    json_object *args = parse_json("{" BASE ",\"data\":{\"a\":\"b\"}}");
    json_object *data = json_object_object_get(args, "data");

    g_assert_true(argspec_decode(base_only, args, false, &o, &err));
    g_assert_true(o.has_data);
    g_assert_true(o.data == data);
    /* The struct holds its own reference: it outlives the arguments. */
    json_object_put(args);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(o.data, "a")), ==, "b");
    argspec_clear(base_only, &o);
    g_assert_null(o.data);
    g_assert_false(o.has_data);

    /* null is a legitimate 'any' value: present, and NULL. */
    g_assert_true(decode_text(base_only, "{" BASE ",\"data\":null}", false, &o, &err));
    g_assert_true(o.has_data);
    g_assert_null(o.data);
    argspec_clear(base_only, &o);

    g_assert_true(decode_text(base_only, "{" BASE ",\"data\":[1,\"x\"]}", true, &o, &err));
    g_assert_true(json_object_is_type(o.data, json_type_array));
    g_assert_cmpuint(json_object_array_length(o.data), ==, 2);
    argspec_clear(base_only, &o);
}

static void test_union_tables(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(file_tables,
        "{\"driver\":\"file\",\"node-name\":\"d0\",\"filename\":\"a,b.img\",\"label\":\"L\"}",
        false, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpint(o.driver, ==, DRV_FILE);
    g_assert_cmpstr(o.filename, ==, "a,b.img");
    /* Declared in both tables: decoded twice into one field, no leak. */
    g_assert_true(o.has_label);
    g_assert_cmpstr(o.label, ==, "L");
    argspec_clear(file_tables, &o);
    assert_cleared(&o);

    g_assert_true(decode_text(nbd_tables,
        "{" BASE ",\"server\":{\"type\":\"unix\",\"path\":\"/s\"}}", false, &o, &err));
    g_assert_cmpstr(o.server_type, ==, "unix");
    g_assert_cmpstr(o.server_path, ==, "/s");
    argspec_clear(nbd_tables, &o);
    assert_cleared(&o);
}

static void test_nested_presence_flag(void)
{
    typedef struct {
        bool has_cache;
        bool has_direct, direct;
    } CacheOpts;
    static const ArgSpec members[] = {
        ARG_OPTIONAL("direct", ARG_BOOL, CacheOpts, direct, has_direct),
        ARG_TABLE_END,
    };
    static const ArgSpec top[] = {
        { .name = "cache", .type = ARG_OBJECT, .optional = true,
          .present_offset = offsetof(CacheOpts, has_cache), .members = members },
        ARG_TABLE_END,
    };
    static const ArgSpec *const tables[] = { top, NULL };
    CacheOpts c = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) given = parse_json("{\"cache\":{}}");
    g_autoptr(json_object) absent = parse_json("{}");

    /* An empty object is present even though none of its members is. */
    g_assert_true(argspec_decode(tables, given, false, &c, &err));
    g_assert_true(c.has_cache);
    g_assert_false(c.has_direct);
    argspec_clear(tables, &c);
    g_assert_false(c.has_cache);

    g_assert_true(argspec_decode(tables, absent, false, &c, &err));
    g_assert_false(c.has_cache);
    g_assert_no_error(err);
}

static void test_failure_clears_partial_result(void)
{
    /* node-name and filename are decoded before the bad member is met. */
    check_error(file_tables,
                "{" BASE ",\"label\":\"x\",\"data\":{},\"filename\":\"f\",\"foo\":1}",
                false, "Parameter 'foo' is unexpected");
    check_error(nbd_tables,
                "{" BASE ",\"server\":{\"type\":\"unix\",\"path\":\"/s\",\"x\":1}}",
                false, "Parameter 'server.x' is unexpected");
}

static void test_decode_twice_and_clear_twice(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(base_only, "{" BASE ",\"label\":\"one\",\"data\":1}",
                              false, &o, &err));
    g_assert_true(decode_text(base_only,
                              "{\"driver\":\"file\",\"node-name\":\"m\",\"label\":\"two\","
                              "\"data\":2}", false, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(o.node_name, ==, "m");
    g_assert_cmpstr(o.label, ==, "two");
    g_assert_cmpint(json_object_get_int(o.data), ==, 2);
    g_assert_true(o.has_label && o.has_data);

    argspec_clear(base_only, &o);
    assert_cleared(&o);
    argspec_clear(base_only, &o);
    assert_cleared(&o);
}

static void test_discriminator(void)
{
    static const char *const types[] = { "inet", "unix", NULL };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) ok = parse_json("{\"driver\":\"null-co\"}");
    g_autoptr(json_object) nested = parse_json("{\"addr\":{\"type\":\"unix\"}}");
    g_autoptr(json_object) flat = parse_json("{\"addr\":\"x\"}");
    g_autoptr(json_object) empty = parse_json("{\"addr\":{}}");
    g_autoptr(json_object) number = parse_json("{\"driver\":1}");
    g_autoptr(json_object) bogus = parse_json("{\"driver\":\"bogus\"}");

    g_assert_cmpint(argspec_discriminator(ok, "driver", driver_names, &err), ==, DRV_NULL);
    g_assert_cmpint(argspec_discriminator(nested, "addr.type", types, &err), ==, 1);
    g_assert_no_error(err);

    g_assert_cmpint(argspec_discriminator(NULL, "driver", driver_names, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Parameter 'driver' is missing");
    g_clear_error(&err);
    g_assert_cmpint(argspec_discriminator(flat, "addr.type", types, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'addr', expected: object");
    g_clear_error(&err);
    g_assert_cmpint(argspec_discriminator(empty, "addr.type", types, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Parameter 'addr.type' is missing");
    g_clear_error(&err);
    g_assert_cmpint(argspec_discriminator(ok, "addr.type", types, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Parameter 'addr' is missing");
    g_clear_error(&err);
    g_assert_cmpint(argspec_discriminator(number, "driver", driver_names, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'driver', expected: string");
    g_clear_error(&err);
    g_assert_cmpint(argspec_discriminator(bogus, "driver", driver_names, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Parameter 'driver' does not accept value 'bogus'");
}

typedef struct {
    const char *text;
    uint64_t value;
} SizeCase;

static void test_parse_size_valid(void)
{
    static const SizeCase cases[] = {
        { "0", 0 },
        { "512", 512 },
        { "512B", 512 },
        { "512b", 512 },
        { "1k", 1024 },
        { "1K", 1024 },
        { "1m", 1 << 20 },
        { "2M", 2 << 20 },
        { "1G", G_GUINT64_CONSTANT(1) << 30 },
        { "1T", G_GUINT64_CONSTANT(1) << 40 },
        { "1P", G_GUINT64_CONSTANT(1) << 50 },
        { "1E", G_GUINT64_CONSTANT(1) << 60 },
        { "15E", G_GUINT64_CONSTANT(15) << 60 },
        { "1.5G", G_GUINT64_CONSTANT(3) << 29 },
        { "0.5k", 512 },
        { "1.1k", 1126 },        /* truncated, as QEMU does */
        { "1.k", 1024 },
        { "1.0", 1 },            /* a zero fraction needs no suffix */
        { "0x10", 16 },
        { "0x10k", 16384 },
        { " 1", 1 },
        { "18446744073709551615", G_MAXUINT64 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint64_t v = 0;
        g_autoptr(GError) err = NULL;

        if (g_test_verbose()) {
            g_test_message("size '%s'", cases[i].text);
        }
        g_assert_true(argspec_parse_size(cases[i].text, &v, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(v, ==, cases[i].value);
    }
}

static void test_parse_size_invalid(void)
{
    static const char *const syntax[] = {
        "", " ", "abc", "1Q", "1KB", "1KiB", "1 ", "1k2", ".5k", "1e3", "1.5", "1.5B",
        "0x", "0x1.8k", "k", "-", "- 1", "1,5G",
    };
    static const char *const range[] = {
        "-1", "-0", "16E", "16384P", "18446744073709551616", "99999999999999999999k",
        "15.99999999999999999999E", /* the fraction rounds up to 16E */
    };

    for (size_t i = 0; i < G_N_ELEMENTS(syntax); i++) {
        uint64_t v = 77;
        g_autoptr(GError) err = NULL;
        g_autofree char *want = g_strdup_printf(
            "Invalid size '%s': expected a number with an optional suffix k, M, G, T, P or E",
            syntax[i]);

        g_assert_false(argspec_parse_size(syntax[i], &v, &err));
        g_assert_cmpstr(err->message, ==, want);
        g_assert_cmpuint(v, ==, 77);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(range); i++) {
        uint64_t v = 77;
        g_autoptr(GError) err = NULL;
        g_autofree char *want = g_strdup_printf(
            "Size '%s' is out of range: it must be a non-negative number below 2^64",
            range[i]);

        g_assert_false(argspec_parse_size(range[i], &v, &err));
        g_assert_cmpstr(err->message, ==, want);
        g_assert_cmpuint(v, ==, 77);
    }
}

static void test_size_just_below_limit(void)
{
    uint64_t v = 0;
    g_autoptr(GError) err = NULL;

    /* 15.75E + fraction stays below 2^64; 16E does not. */
    g_assert_true(argspec_parse_size("15.75E", &v, &err));
    g_assert_cmpuint(v, ==, (G_GUINT64_CONSTANT(63) << 58));
    g_assert_true(argspec_parse_size("16777215.999T", &v, &err));
    g_assert_cmpuint(v, <, G_MAXUINT64);
    g_assert_false(argspec_parse_size("16777216T", &v, &err));
    g_assert_nonnull(err);
}

static void test_keyval_end_to_end(void)
{
    Opts o = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) args = keyval_parse(
        "file,node-name=d0,filename=a,,b.img,cache.direct=on,size=1G,read-only=off",
        "driver", &err);

    g_assert_no_error(err);
    g_assert_true(argspec_decode(file_tables, args, true, &o, &err));
    g_assert_no_error(err);
    g_assert_cmpint(o.driver, ==, DRV_FILE);
    g_assert_cmpstr(o.node_name, ==, "d0");
    g_assert_cmpstr(o.filename, ==, "a,b.img");
    g_assert_true(o.has_direct && o.direct);
    g_assert_cmpuint(o.size, ==, G_GUINT64_CONSTANT(1) << 30);
    g_assert_true(o.has_read_only && !o.read_only);
    argspec_clear(file_tables, &o);

    g_autoptr(json_object) bad = keyval_parse("driver=null-co,node-name=n,cache=1", NULL, &err);
    g_assert_false(argspec_decode(base_only, bad, true, &o, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'cache', expected: object");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/argspec/qmp/all-types", test_qmp_all_types);
    g_test_add_func("/argspec/qmp/optional-absent", test_optional_absent_keeps_defaults);
    g_test_add_func("/argspec/qmp/null-args", test_null_args_means_empty);
    g_test_add_func("/argspec/qmp/non-object-args", test_non_object_args);
    g_test_add_func("/argspec/qmp/missing", test_missing);
    g_test_add_func("/argspec/qmp/unexpected", test_unexpected);
    g_test_add_func("/argspec/qmp/error-order", test_member_errors_before_unexpected);
    g_test_add_func("/argspec/qmp/unexpected-choice", test_unexpected_choice_matches_qemu);
    g_test_add_func("/argspec/qmp/wrong-types", test_qmp_wrong_types);
    g_test_add_func("/argspec/qmp/integers", test_qmp_integers);
    g_test_add_func("/argspec/keyval/bool", test_keyval_bool);
    g_test_add_func("/argspec/keyval/integers", test_keyval_integers);
    g_test_add_func("/argspec/keyval/json-types", test_keyval_accepts_json_types);
    g_test_add_func("/argspec/keyval/end-to-end", test_keyval_end_to_end);
    g_test_add_func("/argspec/any", test_any);
    g_test_add_func("/argspec/union-tables", test_union_tables);
    g_test_add_func("/argspec/nested-presence", test_nested_presence_flag);
    g_test_add_func("/argspec/failure-clears", test_failure_clears_partial_result);
    g_test_add_func("/argspec/decode-twice", test_decode_twice_and_clear_twice);
    g_test_add_func("/argspec/discriminator", test_discriminator);
    g_test_add_func("/argspec/size/valid", test_parse_size_valid);
    g_test_add_func("/argspec/size/invalid", test_parse_size_invalid);
    g_test_add_func("/argspec/size/limit", test_size_just_below_limit);
    return g_test_run();
}
