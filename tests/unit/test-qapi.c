/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of qapi/: request checking and dispatch with every error text
 * QEMU gives, capabilities negotiation, the core commands, argument
 * decoding through a command's ArgSpec tables (QMP and keyval typing), raw
 * commands, error classes, object-add/object-del, events, and the JSON
 * writer's QEMU byte format. Replies are compared as the exact bytes the
 * monitor would send.
 */
#include "berth-config.h"
#include "qapi/json-writer.h"
#include "qapi/module-commands.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"

#include <gio/gio.h>
#include <math.h>
#include <string.h>

/* --- helpers --- */

/* Dispatch `request` (JSON text) and return the reply as QEMU's bytes. */
static char *dispatch_text(QmpSession *s, const char *request)
{
    g_autoptr(json_object) req = json_tokener_parse(request);
    g_autoptr(json_object) reply = NULL;

    g_assert_true(req != NULL || strcmp(request, "null") == 0);
    reply = qapi_dispatch(s, req);
    g_assert_nonnull(reply);
    return qapi_json_to_string(reply, false);
}

static void check_reply(QmpSession *s, const char *request, const char *expected)
{
    g_autofree char *got = dispatch_text(s, request);

    g_assert_cmpstr(got, ==, expected);
}

static void check_error(QmpSession *s, const char *request, const char *cls,
                        const char *desc)
{
    g_autofree char *expected =
        g_strdup_printf("{\"error\": {\"class\": \"%s\", \"desc\": \"%s\"}}", cls, desc);
    check_reply(s, request, expected);
}

/* An error of class cls whose text starts with desc_prefix. */
static void check_error_prefix(QmpSession *s, const char *request, const char *cls,
                               const char *desc_prefix)
{
    g_autofree char *got = dispatch_text(s, request);
    g_autofree char *start =
        g_strdup_printf("{\"error\": {\"class\": \"%s\", \"desc\": \"%s", cls, desc_prefix);
    if (!g_str_has_prefix(got, start)) {
        g_error("%s: got %s, expected %s...", request, got, start);
    }
}

static QmpSession negotiated(void)
{
    QmpSession s = { 0 };
    g_autofree char *r = dispatch_text(&s, "{\"execute\": \"qmp_capabilities\"}");

    g_assert_cmpstr(r, ==, "{\"return\": {}}");
    g_assert_true(s.command_mode);
    return s;
}

/* --- a test command with every kind of argument --- */

typedef struct {
    char *name;
    int64_t count;
    bool has_count;
    uint64_t size;
    bool has_size;
    bool flag, has_flag;
    int mode;
    bool has_mode;
    bool direct, has_direct;
} TestArgs;

static const char *const test_modes[] = { "safe", "hard", NULL };

static const ArgSpec test_cache_members[] = {
    ARG_OPTIONAL("direct", ARG_BOOL, TestArgs, direct, has_direct),
    ARG_TABLE_END
};

static const ArgSpec test_members[] = {
    ARG_REQUIRED("name", ARG_STR, TestArgs, name),
    ARG_OPTIONAL("count", ARG_INT, TestArgs, count, has_count),
    ARG_OPTIONAL("size", ARG_SIZE, TestArgs, size, has_size),
    ARG_OPTIONAL("flag", ARG_BOOL, TestArgs, flag, has_flag),
    ARG_ENUM_OPTIONAL("mode", test_modes, TestArgs, mode, has_mode),
    ARG_NESTED("cache", test_cache_members, true),
    ARG_TABLE_END
};
static const ArgSpec *const test_args[] = { test_members, NULL };

/* Echoes what it decoded, so tests see the typed values. */
static bool qmp_x_test(void *opaque, json_object **ret, GError **errp)
{
    TestArgs *a = opaque;
    json_object *o = json_object_new_object();

    if (strcmp(a->name, "fail") == 0) {
        json_object_put(o);
        g_set_error(errp, QMP_ERROR, QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                    a->name);
        return false;
    }
    json_object_object_add(o, "name", json_object_new_string(a->name));
    if (a->has_count) {
        json_object_object_add(o, "count", json_object_new_int64(a->count));
    }
    if (a->has_size) {
        json_object_object_add(o, "size", json_object_new_uint64(a->size));
    }
    if (a->has_flag) {
        json_object_object_add(o, "flag", json_object_new_boolean(a->flag));
    }
    if (a->has_mode) {
        json_object_object_add(o, "mode", json_object_new_string(test_modes[a->mode]));
    }
    if (a->has_direct) {
        json_object_object_add(o, "direct", json_object_new_boolean(a->direct));
    }
    *ret = o;
    return true;
}

static bool raw_saw_keyval;

static bool qmp_x_raw(void *opaque, json_object **ret, GError **errp)
{
    QmpRawArgs *raw = opaque;

    raw_saw_keyval = raw->keyval;
    *ret = json_object_get(raw->args);
    return true;
}

static const QmpCommandDef test_commands[] = {
    { .name = "x-test", .args = test_args, .args_size = sizeof(TestArgs),
      .handler = qmp_x_test },
    { .name = "x-raw", .handler = qmp_x_raw, .flags = QMP_CMD_RAW_ARGS },
    QMP_COMMAND_END
};

/* --- tests --- */

static void test_request_shape(void)
{
    QmpSession s = negotiated();
    const char *ge = "GenericError";

    check_error(&s, "[1]", ge, "QMP input must be a JSON object");
    check_error(&s, "\"str\"", ge, "QMP input must be a JSON object");
    check_error(&s, "3", ge, "QMP input must be a JSON object");
    check_error(&s, "null", ge, "QMP input must be a JSON object");
    check_error(&s, "{}", ge, "QMP input lacks member 'execute'");
    check_error(&s, "{\"foo\": 1}", ge, "QMP input member 'foo' is unexpected");
    check_error(&s, "{\"execute\": 1}", ge, "QMP input member 'execute' must be a string");
    check_error(&s, "{\"execute\": \"query-version\", \"arguments\": []}", ge,
                "QMP input member 'arguments' must be an object");
    check_error(&s, "{\"execute\": \"query-version\", \"arguments\": null}", ge,
                "QMP input member 'arguments' must be an object");
    /* Without the oob capability, exec-oob is just an unknown member. */
    check_error(&s, "{\"exec-oob\": \"query-version\"}", ge,
                "QMP input member 'exec-oob' is unexpected");
    /* The id comes back whatever went wrong, and whatever its type. */
    check_reply(&s, "{\"id\": 1}",
                "{\"id\": 1, \"error\": {\"class\": \"GenericError\", "
                "\"desc\": \"QMP input lacks member 'execute'\"}}");
    check_reply(&s, "{\"execute\": \"query-version\", \"id\": \"x\", \"control\": {}}",
                "{\"id\": \"x\", \"error\": {\"class\": \"GenericError\", "
                "\"desc\": \"QMP input member 'control' is unexpected\"}}");
    check_reply(&s, "{\"execute\": \"x-raw\", \"id\": null}", "{\"return\": {}, \"id\": null}");
    check_reply(&s, "{\"execute\": \"x-raw\", \"id\": [1, {\"a\": 1.5}]}",
                "{\"return\": {}, \"id\": [1, {\"a\": 1.5}]}");
}

static void test_negotiation(void)
{
    QmpSession s = { 0 };

    check_error(&s, "{\"execute\": \"query-version\"}", "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'");
    check_error(&s, "{\"execute\": \"nope\"}", "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'");
    check_error(&s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"x\": 1}}",
                "GenericError", "Parameter 'x' is unexpected");
    check_error(&s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": \"oob\"}}",
                "GenericError", "Invalid parameter type for 'enable', expected: array");
    check_error(&s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [1]}}",
                "GenericError", "Invalid parameter type for 'enable[0]', expected: string");
    check_error(&s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"x\"]}}",
                "GenericError", "Parameter 'null' does not accept value 'x'");
    g_assert_false(s.command_mode);

    check_reply(&s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
                "{\"return\": {}}");
    g_assert_true(s.command_mode);
    g_assert_true(s.oob_enabled);
    check_reply(&s, "{\"execute\": \"qmp_capabilities\", \"id\": \"a\"}",
                "{\"id\": \"a\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                "\"Capabilities negotiation is already complete, command ignored\"}}");

    /* With oob enabled, exec-oob is understood but no command allows it. */
    check_error(&s, "{\"exec-oob\": \"query-version\"}", "GenericError",
                "The command query-version does not support OOB");
    check_error(&s, "{\"exec-oob\": \"nope\"}", "CommandNotFound",
                "The command nope has not been found");
    check_error(&s, "{\"exec-oob\": 5}", "GenericError",
                "QMP input member 'exec-oob' must be a string");
    check_error(&s, "{\"exec-oob\": \"query-version\", \"execute\": \"query-version\"}",
                "GenericError", "QMP input member 'execute' clashes with 'exec-oob'");
}

static void test_core_commands(void)
{
    QmpSession s = negotiated();

    check_error(&s, "{\"execute\": \"nope\"}", "CommandNotFound",
                "The command nope has not been found");
    check_error(&s, "{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}",
                "GenericError", "Parameter 'x' is unexpected");

    /* QEMU's member order: micro, minor, major. */
    g_autofree char *version = dispatch_text(&s, "{\"execute\": \"query-version\"}");
    g_autofree char *expected = g_strdup_printf(
        "{\"return\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
        "\"package\": \"berth " BERTH_VERSION "\"}}",
        BERTH_VERSION_MICRO, BERTH_VERSION_MINOR, BERTH_VERSION_MAJOR);
    g_assert_cmpstr(version, ==, expected);

    /* query-commands lists exactly the registry, once each. */
    g_autoptr(json_object) req = json_tokener_parse("{\"execute\": \"query-commands\"}");
    g_autoptr(json_object) reply = qapi_dispatch(&s, req);
    json_object *list = json_object_object_get(reply, "return");
    g_assert_true(json_object_is_type(list, json_type_array));
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        const char *name =
            json_object_get_string(json_object_object_get(json_object_array_get_idx(list, i),
                                                          "name"));
        g_assert_nonnull(qapi_find_command(name));
        g_assert_true(g_hash_table_add(seen, (gpointer) name));
    }
    static const char *const required[] = {
        "qmp_capabilities", "query-version", "query-commands", "quit", "blockdev-add",
        "blockdev-del", "query-named-block-nodes", "nbd-server-start", "nbd-server-stop",
        "nbd-server-add", "nbd-server-remove", "block-export-add", "block-export-del",
        "query-block-exports", "object-add", "object-del", "drive-add", "query-block",
        "eject", "blockdev-remove-medium", "blockdev-insert-medium", "x-test", "x-raw",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(required); i++) {
        g_assert_true(g_hash_table_contains(seen, required[i]));
    }
}

static int quit_calls;

static void count_quit(gpointer opaque)
{
    quit_calls++;
}

static void test_quit(void)
{
    QmpSession s = negotiated();

    qapi_set_quit_handler(NULL, NULL);
    check_error(&s, "{\"execute\": \"quit\"}", "GenericError",
                "quit is not supported by this host");
    qapi_set_quit_handler(count_quit, NULL);
    check_reply(&s, "{\"execute\": \"quit\"}", "{\"return\": {}}");
    g_assert_cmpint(quit_calls, ==, 1);
    qapi_set_quit_handler(NULL, NULL);
}

static void test_arguments(void)
{
    QmpSession s = negotiated();
    const char *ge = "GenericError";

    check_reply(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\"}}",
                "{\"return\": {\"name\": \"a\"}}");
    check_reply(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", \"count\": -5, "
                    "\"size\": 4096, \"flag\": true, \"mode\": \"hard\", "
                    "\"cache\": {\"direct\": false}}}",
                "{\"return\": {\"name\": \"a\", \"direct\": false, \"count\": -5, "
                "\"mode\": \"hard\", \"size\": 4096, \"flag\": true}}");
    check_error(&s, "{\"execute\": \"x-test\"}", ge, "Parameter 'name' is missing");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": 1}}", ge,
                "Invalid parameter type for 'name', expected: string");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", \"count\": \"1\"}}",
                ge, "Invalid parameter type for 'count', expected: integer");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", \"flag\": 1}}",
                ge, "Invalid parameter type for 'flag', expected: boolean");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", \"mode\": \"x\"}}",
                ge, "Parameter 'mode' does not accept value 'x'");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", "
                    "\"cache\": {\"direct\": 1}}}",
                ge, "Invalid parameter type for 'cache.direct', expected: boolean");
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"a\", \"foo\": 1}}",
                ge, "Parameter 'foo' is unexpected");
    /* A handler's error keeps its class. */
    check_error(&s, "{\"execute\": \"x-test\", \"arguments\": {\"name\": \"fail\"}}",
                "DeviceNotFound", "Device 'fail' not found");

    /* The command line's typing: strings become sizes, booleans, enums. */
    g_autoptr(json_object) kv = json_tokener_parse(
        "{\"name\": \"k\", \"size\": \"1G\", \"flag\": \"on\", \"count\": \"512\"}");
    g_autoptr(json_object) ret = NULL;
    g_autoptr(GError) err = NULL;
    g_assert_true(qapi_run_command(qapi_find_command("x-test"), kv, true, &ret, &err));
    g_autofree char *kvs = qapi_json_to_string(ret, false);
    g_assert_cmpstr(kvs, ==, "{\"name\": \"k\", \"count\": 512, \"size\": 1073741824, "
                             "\"flag\": true}");
    g_assert_false(qapi_run_command(qapi_find_command("x-test"), kv, false, NULL, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'count', expected: integer");

    /* Raw commands see the arguments and how to type them. */
    check_reply(&s, "{\"execute\": \"x-raw\", \"arguments\": {\"any\": [1]}}",
                "{\"return\": {\"any\": [1]}}");
    g_assert_false(raw_saw_keyval);
    g_autoptr(json_object) raw_ret = NULL;
    g_assert_true(qapi_run_command(qapi_find_command("x-raw"), NULL, true, &raw_ret, NULL));
    g_assert_true(raw_saw_keyval);
    g_assert_cmpint(json_object_object_length(raw_ret), ==, 0);
}

static void test_error_classes(void)
{
    g_autoptr(GError) generic = g_error_new(G_IO_ERROR, G_IO_ERROR_FAILED, "x");
    g_autoptr(GError) notfound = g_error_new(QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND, "x");
    g_autoptr(GError) device = g_error_new(QMP_ERROR, QMP_ERROR_DEVICE_NOT_FOUND, "x");

    g_assert_cmpstr(qmp_error_class_name(generic), ==, "GenericError");
    g_assert_cmpstr(qmp_error_class_name(notfound), ==, "CommandNotFound");
    g_assert_cmpstr(qmp_error_class_name(device), ==, "DeviceNotFound");
    g_assert_cmpstr(qmp_error_class_name(NULL), ==, "GenericError");

    g_autoptr(GError) setg = NULL;
    qmp_error_setg(&setg, "Node '%s' is %d%% busy", "n0", 100);
    g_assert_error(setg, QMP_ERROR, QMP_ERROR_GENERIC);
    g_assert_cmpstr(setg->message, ==, "Node 'n0' is 100% busy");
    g_autoptr(GError) cls = NULL;
    qmp_error_set_class(&cls, QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found", "d0");
    g_assert_cmpstr(qmp_error_class_name(cls), ==, "DeviceNotFound");
    g_assert_cmpstr(cls->message, ==, "Device 'd0' not found");
    qmp_error_setg(NULL, "ignored %s", "quietly");

    g_autoptr(json_object) id = json_object_new_int(7);
    g_autoptr(json_object) reply = qapi_error_reply(device, id);
    g_autofree char *text = qapi_json_to_string(reply, false);
    g_assert_cmpstr(text, ==, "{\"id\": 7, \"error\": {\"class\": \"DeviceNotFound\", "
                              "\"desc\": \"x\"}}");
}

static void test_objects(void)
{
    QmpSession s = negotiated();
    const char *ge = "GenericError";

    check_reply(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", "
                    "\"id\": \"io0\", \"poll-max-ns\": 0}}", "{\"return\": {}}");
    QmpObject *obj = qmp_object_find("io0", "iothread");
    g_assert_nonnull(obj);
    g_assert_nonnull(qmp_object_get_data(obj)); /* its GMainContext */
    g_assert_null(qmp_object_find("io0", "tls-creds-x509"));
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", "
                    "\"id\": \"io0\"}}",
                ge, "attempt to add duplicate property 'io0' to object (type 'container')");
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"bogus\", "
                    "\"id\": \"b0\"}}", ge, "Parameter 'qom-type' does not accept value 'bogus'");
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\"}}",
                ge, "Parameter 'id' is missing");
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"id\": \"x\"}}", ge,
                "Parameter 'qom-type' is missing");
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", "
                    "\"id\": \"io1\", \"foo\": 1}}", ge, "Parameter 'foo' is unexpected");
    check_error(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": "
                    "\"tls-creds-x509\", \"id\": \"t0\", \"endpoint\": \"server\"}}",
                ge, "Missing 'dir' property value");
    g_assert_null(qmp_object_find("t0", NULL));

    qmp_object_pin(obj);
    check_error(&s, "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"io0\"}}", ge,
                "object 'io0' is in use, can not be deleted");
    qmp_object_unpin(obj);
    check_reply(&s, "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"io0\"}}",
                "{\"return\": {}}");
    check_error(&s, "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"io0\"}}", ge,
                "object 'io0' not found");

    /* QEMU's range checks and texts; berth's refusals of what it lacks. */
    const char *const bad_iothreads[][2] = {
        { "\"poll-max-ns\": -1", "poll-max-ns value must be in range [0, 9223372036854775807]" },
        { "\"poll-grow\": -2", "poll-grow value must be in range [0, 9223372036854775807]" },
        { "\"poll-shrink\": -3", "poll-shrink value must be in range [0, 9223372036854775807]" },
        { "\"aio-max-batch\": -1",
          "aio-max-batch value must be in range [0, 9223372036854775807]" },
        { "\"aio-max-batch\": 8", "aio-max-batch=8 is not supported" },
        { "\"thread-pool-min\": 5, \"thread-pool-max\": 2",
          "bad thread-pool-min/thread-pool-max values" },
        { "\"thread-pool-max\": 16", "thread-pool-min=0 thread-pool-max=16 is not supported" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad_iothreads); i++) {
        g_autofree char *cmd = g_strdup_printf(
            "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", "
            "\"id\": \"bad%zu\", %s}}", i, bad_iothreads[i][0]);
        check_error_prefix(&s, cmd, ge, bad_iothreads[i][1]);
        g_autofree char *id = g_strdup_printf("bad%zu", i);
        g_assert_null(qmp_object_find(id, NULL));
    }
    check_reply(&s, "{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", "
                    "\"id\": \"io9\", \"poll-max-ns\": 100000, \"poll-grow\": 4, "
                    "\"poll-shrink\": 2, \"aio-max-batch\": 0, \"thread-pool-min\": 0, "
                    "\"thread-pool-max\": 64}}", "{\"return\": {}}");

    /* The command line form: implied qom-type, keyval typing. */
    g_autoptr(json_object) kv = json_tokener_parse(
        "{\"qom-type\": \"iothread\", \"id\": \"io2\", \"poll-max-ns\": \"100\"}");
    g_assert_true(qapi_run_command(qapi_find_command("object-add"), kv, true, NULL, NULL));
    qmp_object_del_all();
    g_assert_null(qmp_object_find("io2", NULL));
}

typedef struct {
    char *name;
    char *data;
    int calls;
} SeenEvent;

static void record_event(const char *name, json_object *data, gpointer opaque)
{
    SeenEvent *seen = opaque;

    g_free(seen->name);
    g_free(seen->data);
    seen->name = g_strdup(name);
    seen->data = qapi_json_to_string(data, false);
    seen->calls++;
}

static void test_events(void)
{
    SeenEvent seen = { 0 };

    /* Without a monitor, emitting only drops the data. */
    qmp_event_set_emitter(NULL, NULL);
    qmp_event_emit("NOBODY_LISTENS", json_object_new_object());

    qmp_event_set_emitter(record_event, &seen);
    json_object *data = json_object_new_object();
    json_object_object_add(data, "id", json_object_new_string("e0"));
    qmp_event_emit("BLOCK_EXPORT_DELETED", data);
    g_assert_cmpint(seen.calls, ==, 1);
    g_assert_cmpstr(seen.name, ==, "BLOCK_EXPORT_DELETED");
    g_assert_cmpstr(seen.data, ==, "{\"id\": \"e0\"}");
    qmp_event_emit("NO_DATA", NULL);
    g_assert_cmpstr(seen.data, ==, "{}");
    qmp_event_set_emitter(NULL, NULL);
    g_free(seen.name);
    g_free(seen.data);
}

static void check_json(const char *in, bool pretty, const char *expected)
{
    g_autoptr(json_object) obj = json_tokener_parse(in);
    g_autofree char *out = qapi_json_to_string(obj, pretty);

    g_assert_cmpstr(out, ==, expected);
}

static void test_writer(void)
{
    /* QEMU's member order: its hash buckets, newest first on collisions. */
    check_json("{\"major\": 7, \"minor\": 2, \"micro\": 22}", false,
               "{\"micro\": 22, \"minor\": 2, \"major\": 7}");
    check_json("{\"id\": 1, \"return\": {}}", false, "{\"return\": {}, \"id\": 1}");
    check_json("{\"event\": \"E\", \"data\": {}, \"timestamp\": {\"seconds\": 1, "
               "\"microseconds\": 2}}", false,
               "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"E\", "
               "\"data\": {}}");
    check_json("[\"\\u00e9\\u20ac\\ud83d\\ude00\\u007f/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\"]", false,
               "[\"\\u00E9\\u20AC\\uD83D\\uDE00\\u007F/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\"]");
    check_json("[1.5, 0.1, 1e20, -3, 18446744073709551615, true, null]", false,
               "[1.5, 0.10000000000000001, 1e+20, -3, 18446744073709551615, true, null]");
    check_json("{\"return\": {}}", true, "{\n    \"return\": {\n    }\n}");
    check_json("{\"a\": [1, []]}", true,
               "{\n    \"a\": [\n        1,\n        [\n        ]\n    ]\n}");

    /* No JSON for infinity and NaN (QEMU writes inf and nan): null. */
    g_autoptr(json_object) nonfinite = json_object_new_array();
    json_object_array_add(nonfinite, json_object_new_double(INFINITY));
    json_object_array_add(nonfinite, json_object_new_double(-INFINITY));
    json_object_array_add(nonfinite, json_object_new_double(NAN));
    json_object_array_add(nonfinite, json_object_new_double(-0.5));
    g_autofree char *nf = qapi_json_to_string(nonfinite, false);
    g_assert_cmpstr(nf, ==, "[null, null, null, -0.5]");

    /* Bytes that are not UTF-8 come out as U+FFFD, as in QEMU. */
    g_autoptr(json_object) bad = json_object_new_string("a\xff" "b");
    g_autofree char *out = qapi_json_to_string(bad, false);
    g_assert_cmpstr(out, ==, "\"a\\uFFFDb\"");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qapi_init();
    qapi_register_commands(test_commands);

    g_test_add_func("/qapi/request-shape", test_request_shape);
    g_test_add_func("/qapi/negotiation", test_negotiation);
    g_test_add_func("/qapi/core-commands", test_core_commands);
    g_test_add_func("/qapi/quit", test_quit);
    g_test_add_func("/qapi/arguments", test_arguments);
    g_test_add_func("/qapi/error-classes", test_error_classes);
    g_test_add_func("/qapi/objects", test_objects);
    g_test_add_func("/qapi/events", test_events);
    g_test_add_func("/qapi/writer", test_writer);
    return g_test_run();
}
