/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of query-qmp-schema (qapi/schema.c): a command's arguments
 * with their types and optionality, enums and nested objects as types of
 * their own, identical types shared, unions with their tag and variants,
 * events, the builtins; and every command berth registers is listed with
 * every member its tables decode.
 */
#include "berth/qapi/qapi.h"
#include "qapi/module-commands.h"

#include <string.h>

typedef struct {
    char *name;
    int64_t count;
    bool has_count;
    int mode;
    bool has_mode;
    bool direct, has_direct;
    bool flag;
} SchemaTestArgs;

static const char *const schema_modes[] = { "fast", "slow", NULL };

static const ArgSpec cache_members[] = {
    ARG_OPTIONAL("direct", ARG_BOOL, SchemaTestArgs, direct, has_direct),
    ARG_TABLE_END
};

static const ArgSpec schema_members[] = {
    ARG_REQUIRED("name", ARG_STR, SchemaTestArgs, name),
    ARG_OPTIONAL("count", ARG_INT, SchemaTestArgs, count, has_count),
    ARG_ENUM_OPTIONAL("mode", schema_modes, SchemaTestArgs, mode, has_mode),
    ARG_NESTED("cache", cache_members, true),
    ARG_TABLE_END
};
static const ArgSpec *const schema_args[] = { schema_members, NULL };

/* The same members again: the schema must not list the type twice. */
static const ArgSpec *const schema_args_again[] = { schema_members, NULL };

static const ArgSpec flag_members[] = {
    ARG_REQUIRED("flag", ARG_BOOL, SchemaTestArgs, flag),
    ARG_TABLE_END
};
static const ArgSpec *const flag_args[] = { flag_members, NULL };

static const char *const kinds[] = { "a", "b", NULL };
static const ArgSpec kind_members[] = {
    { .name = "kind", .type = ARG_ENUM, .enum_values = kinds, .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};
static const ArgSpec *const kind_args[] = { kind_members, NULL };

static void union_variants(QmpVariantFunc fn, gpointer opaque)
{
    fn("a", flag_args, opaque);
    fn("b", schema_args, opaque);
}

static const QmpArgsUnion union_desc = {
    .base = kind_args, .tag = "kind", .foreach_variant = union_variants,
};

static bool schema_noop(void *args, json_object **ret, GError **errp)
{
    return true;
}

static const QmpCommandDef schema_commands[] = {
    { .name = "x-schema", .args = schema_args, .args_size = sizeof(SchemaTestArgs),
      .handler = schema_noop },
    { .name = "x-schema-again", .args = schema_args_again, .args_size = sizeof(SchemaTestArgs),
      .handler = schema_noop },
    { .name = "x-union", .handler = schema_noop, .flags = QMP_CMD_RAW_ARGS,
      .raw_schema = &union_desc },
    QMP_COMMAND_END
};

static const QmpEventDef schema_events[] = {
    { .name = "X_EVENT", .data = flag_args },
    QMP_EVENT_END
};

/* --- looking things up in the reply --- */

static json_object *schema;

static json_object *entity(const char *name)
{
    for (size_t i = 0; i < json_object_array_length(schema); i++) {
        json_object *e = json_object_array_get_idx(schema, i);
        if (strcmp(json_object_get_string(json_object_object_get(e, "name")), name) == 0) {
            return e;
        }
    }
    return NULL;
}

static const char *str_member(json_object *o, const char *key)
{
    json_object *v = json_object_object_get(o, key);
    return v ? json_object_get_string(v) : NULL;
}

static json_object *member(json_object *object_type, const char *name)
{
    json_object *members = json_object_object_get(object_type, "members");
    g_assert_nonnull(members);
    for (size_t i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        if (g_strcmp0(str_member(m, "name"), name) == 0) {
            return m;
        }
    }
    return NULL;
}

static json_object *arg_type(const char *command)
{
    json_object *cmd = entity(command);
    g_assert_nonnull(cmd);
    g_assert_cmpstr(str_member(cmd, "meta-type"), ==, "command");
    json_object *t = entity(str_member(cmd, "arg-type"));
    g_assert_nonnull(t);
    g_assert_cmpstr(str_member(t, "meta-type"), ==, "object");
    return t;
}

static void assert_member(json_object *type, const char *name, const char *wire_type,
                          bool optional)
{
    json_object *m = member(type, name);
    g_assert_nonnull(m);
    if (wire_type) {
        g_assert_cmpstr(str_member(m, "type"), ==, wire_type);
    }
    json_object *def = NULL;
    g_assert_true(json_object_object_get_ex(m, "default", &def) == optional);
    g_assert_null(def);
}

/* --- tests --- */

static void test_members(void)
{
    json_object *t = arg_type("x-schema");
    assert_member(t, "name", "str", false);
    assert_member(t, "count", "int", true);

    json_object *mode = entity(str_member(member(t, "mode"), "type"));
    g_assert_cmpstr(str_member(mode, "meta-type"), ==, "enum");
    g_assert_cmpstr(json_object_to_json_string(json_object_object_get(mode, "values")), ==,
                    "[ \"fast\", \"slow\" ]");
    assert_member(t, "mode", NULL, true);

    json_object *cache = entity(str_member(member(t, "cache"), "type"));
    g_assert_cmpstr(str_member(cache, "meta-type"), ==, "object");
    assert_member(cache, "direct", "bool", true);
    assert_member(t, "cache", NULL, true);

    /* Same shape, same entry. */
    g_assert_cmpstr(str_member(entity("x-schema"), "arg-type"), ==,
                    str_member(entity("x-schema-again"), "arg-type"));
    /* No arguments: the empty object "0", as QEMU names it. */
    g_assert_cmpstr(str_member(entity("query-version"), "arg-type"), ==, "0");
    g_assert_cmpint(json_object_array_length(json_object_object_get(entity("0"), "members")),
                    ==, 0);
}

static void test_union(void)
{
    json_object *t = arg_type("x-union");
    g_assert_cmpstr(str_member(t, "tag"), ==, "kind");
    assert_member(t, "kind", NULL, false);
    json_object *variants = json_object_object_get(t, "variants");
    g_assert_cmpint(json_object_array_length(variants), ==, 2);
    json_object *va = json_object_array_get_idx(variants, 0);
    g_assert_cmpstr(str_member(va, "case"), ==, "a");
    assert_member(entity(str_member(va, "type")), "flag", "bool", false);
    json_object *vb = json_object_array_get_idx(variants, 1);
    g_assert_cmpstr(str_member(vb, "case"), ==, "b");
    g_assert_cmpstr(str_member(vb, "type"), ==, str_member(entity("x-schema"), "arg-type"));
}

static void test_events_and_builtins(void)
{
    json_object *ev = entity("X_EVENT");
    g_assert_nonnull(ev);
    g_assert_cmpstr(str_member(ev, "meta-type"), ==, "event");
    assert_member(entity(str_member(ev, "arg-type")), "flag", "bool", false);
    const char *builtins[][2] = {
        { "str", "string" }, { "int", "int" }, { "bool", "boolean" },
        { "any", "value" }, { "null", "null" }, { "number", "number" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(builtins); i++) {
        json_object *b = entity(builtins[i][0]);
        g_assert_nonnull(b);
        g_assert_cmpstr(str_member(b, "meta-type"), ==, "builtin");
        g_assert_cmpstr(str_member(b, "json-type"), ==, builtins[i][1]);
    }
    /* Every type a member names is in the list. */
    for (size_t i = 0; i < json_object_array_length(schema); i++) {
        json_object *e = json_object_array_get_idx(schema, i);
        json_object *members = json_object_object_get(e, "members");
        const char *meta = str_member(e, "meta-type");
        if (g_strcmp0(meta, "object") != 0 || !members) {
            continue;
        }
        for (size_t j = 0; j < json_object_array_length(members); j++) {
            const char *type = str_member(json_object_array_get_idx(members, j), "type");
            g_assert_nonnull(entity(type));
        }
    }
}

typedef struct {
    guint commands;
} Walk;

/* Every member a command's tables decode is listed, with its optionality. */
static void check_tables(json_object *type, const ArgSpec *const *tables)
{
    for (size_t t = 0; tables && tables[t]; t++) {
        for (const ArgSpec *spec = tables[t]; spec->type != ARG_END; spec++) {
            assert_member(type, spec->name, NULL, spec->optional);
        }
    }
}

typedef struct {
    json_object *variants;
    guint seen;
} VariantCheck;

static void check_variant(const char *value, const ArgSpec *const *tables, gpointer opaque)
{
    VariantCheck *vc = opaque;
    json_object *v = json_object_array_get_idx(vc->variants, vc->seen++);
    g_assert_nonnull(v);
    g_assert_cmpstr(str_member(v, "case"), ==, value);
    check_tables(entity(str_member(v, "type")), tables);
}

static void check_command(const QmpCommandDef *cmd, gpointer opaque)
{
    Walk *w = opaque;
    json_object *t = arg_type(cmd->name);
    w->commands++;
    if (cmd->flags & QMP_CMD_RAW_ARGS) {
        if (!cmd->raw_schema) {
            /* A raw command must say what it decodes, or the schema lies. */
            g_assert_cmpstr(cmd->name, ==, "command with a raw_schema");
        }
        check_tables(t, cmd->raw_schema->base);
        if (!cmd->raw_schema->tag) {
            g_assert_null(json_object_object_get(t, "variants"));
            return;
        }
        VariantCheck vc = { json_object_object_get(t, "variants"), 0 };
        cmd->raw_schema->foreach_variant(check_variant, &vc);
        g_assert_cmpint(vc.seen, ==, json_object_array_length(vc.variants));
        g_assert_cmpint(vc.seen, >, 0);
    } else {
        check_tables(t, cmd->args);
    }
}

static void test_every_command(void)
{
    Walk w = { 0 };
    qapi_foreach_command(check_command, &w);
    g_assert_cmpint(w.commands, >, 20);
    g_assert_nonnull(entity("query-qmp-schema"));
    /* The events berth emits are declared, with their data. */
    assert_member(entity(str_member(entity("BLOCK_EXPORT_DELETED"), "arg-type")), "id", "str",
                  false);
    assert_member(entity(str_member(entity("DEVICE_TRAY_MOVED"), "arg-type")), "tray-open",
                  "bool", false);
    /* blockdev-add's tag is the enum of its drivers. */
    json_object *driver = entity(str_member(member(arg_type("blockdev-add"), "driver"), "type"));
    g_assert_cmpstr(str_member(driver, "meta-type"), ==, "enum");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qapi_init();
    qapi_register_commands(schema_commands);
    qapi_register_events(schema_events);
    schema = qapi_schema_build();

    g_test_add_func("/qapi/schema/members", test_members);
    g_test_add_func("/qapi/schema/union", test_union);
    g_test_add_func("/qapi/schema/events-builtins", test_events_and_builtins);
    g_test_add_func("/qapi/schema/every-command", test_every_command);
    int rc = g_test_run();
    json_object_put(schema);
    return rc;
}
