/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * query-qmp-schema: the schema as QEMU's introspection presents it, built
 * from the registered commands' and events' ArgSpec tables, so what a
 * management layer probes is exactly what the dispatcher decodes.
 *
 * Every type but the builtins gets a number for a name, as QEMU masks its
 * type names; identical types share one entry ("0" is the empty object).
 * ArgSpec does not describe what a command returns, so every command's
 * ret-type is the builtin "any".
 */
#include "berth/qapi/qapi.h"

typedef struct {
    json_object *list;          /* the reply: SchemaInfo objects */
    GHashTable *by_shape;       /* the entry without its name, as text -> its name */
    guint next_name;
} SchemaBuilder;

/* Give `entity` (taken over) a name, or find the name of the same shape. */
static const char *schema_intern(SchemaBuilder *b, json_object *entity)
{
    const char *shape = json_object_to_json_string_ext(entity, JSON_C_TO_STRING_PLAIN);
    const char *name = g_hash_table_lookup(b->by_shape, shape);
    if (name) {
        json_object_put(entity);
        return name;
    }
    char *key = g_strdup(shape);
    char *new_name = g_strdup_printf("%u", b->next_name++);
    g_hash_table_insert(b->by_shape, key, new_name);
    json_object *info = json_object_new_object();
    json_object_object_add(info, "name", json_object_new_string(new_name));
    json_object_object_foreach(entity, k, v) {
        json_object_object_add(info, k, json_object_get(v));
    }
    json_object_put(entity);
    json_object_array_add(b->list, info);
    return new_name;
}

static const char *schema_object(SchemaBuilder *b, const ArgSpec *const *tables);

static const char *schema_enum(SchemaBuilder *b, const char *const *values)
{
    json_object *e = json_object_new_object();
    json_object *members = json_object_new_array();
    json_object *names = json_object_new_array();
    for (size_t i = 0; values && values[i]; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "name", json_object_new_string(values[i]));
        json_object_array_add(members, m);
        json_object_array_add(names, json_object_new_string(values[i]));
    }
    json_object_object_add(e, "meta-type", json_object_new_string("enum"));
    json_object_object_add(e, "members", members);
    json_object_object_add(e, "values", names);
    return schema_intern(b, e);
}

/* The wire type of one member, interning the types it needs. */
static const char *schema_member_type(SchemaBuilder *b, const ArgSpec *spec)
{
    switch (spec->type) {
    case ARG_STR:
        return "str";
    case ARG_INT:
    case ARG_UINT:
    case ARG_SIZE:
        return "int";
    case ARG_BOOL:
        return "bool";
    case ARG_ENUM:
        return schema_enum(b, spec->enum_values);
    case ARG_OBJECT: {
        const ArgSpec *const nested[] = { spec->members, NULL };
        return schema_object(b, nested);
    }
    case ARG_ANY:
    case ARG_END:
        break;
    }
    return "any";
}

static void schema_add_members(SchemaBuilder *b, json_object *members,
                               const ArgSpec *const *tables)
{
    for (size_t t = 0; tables && tables[t]; t++) {
        for (const ArgSpec *spec = tables[t]; spec->type != ARG_END; spec++) {
            json_object *m = json_object_new_object();
            json_object_object_add(m, "name", json_object_new_string(spec->name));
            json_object_object_add(m, "type", json_object_new_string(schema_member_type(b, spec)));
            if (spec->optional) {
                /* QEMU marks an optional member with a null default. */
                json_object_object_add(m, "default", NULL);
            }
            json_object_array_add(members, m);
        }
    }
}

static json_object *schema_object_entity(SchemaBuilder *b, const ArgSpec *const *tables)
{
    json_object *o = json_object_new_object();
    json_object *members = json_object_new_array();
    schema_add_members(b, members, tables);
    json_object_object_add(o, "members", members);
    json_object_object_add(o, "meta-type", json_object_new_string("object"));
    return o;
}

static const char *schema_object(SchemaBuilder *b, const ArgSpec *const *tables)
{
    return schema_intern(b, schema_object_entity(b, tables));
}

typedef struct {
    SchemaBuilder *b;
    json_object *variants;
    GPtrArray *cases;           /* const char *: the tag's values, in order */
} VariantCollector;

static void add_variant(const char *value, const ArgSpec *const *tables, gpointer opaque)
{
    VariantCollector *vc = opaque;
    json_object *v = json_object_new_object();
    json_object_object_add(v, "case", json_object_new_string(value));
    json_object_object_add(v, "type", json_object_new_string(schema_object(vc->b, tables)));
    json_object_array_add(vc->variants, v);
    g_ptr_array_add(vc->cases, (gpointer) value);
}

/*
 * A union: the base's members, the tag and one variant per tag value. The
 * tag's type is the enum of the variants' cases, whatever the base table
 * declares it as. A union without a tag is just its base.
 */
static const char *schema_union(SchemaBuilder *b, const QmpArgsUnion *u)
{
    if (!u->tag) {
        return schema_object(b, u->base);
    }
    json_object *o = schema_object_entity(b, u->base);
    g_autoptr(GPtrArray) cases = g_ptr_array_new();
    VariantCollector vc = { b, json_object_new_array(), cases };
    u->foreach_variant(add_variant, &vc);
    g_ptr_array_add(cases, NULL);
    const char *tag_type = schema_enum(b, (const char *const *) cases->pdata);
    json_object *members = json_object_object_get(o, "members");
    for (size_t i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        if (g_strcmp0(json_object_get_string(json_object_object_get(m, "name")), u->tag) == 0) {
            json_object_object_add(m, "type", json_object_new_string(tag_type));
        }
    }
    json_object_object_add(o, "tag", json_object_new_string(u->tag));
    json_object_object_add(o, "variants", vc.variants);
    return schema_intern(b, o);
}

static void add_command(const QmpCommandDef *cmd, gpointer opaque)
{
    SchemaBuilder *b = opaque;
    const char *arg_type = cmd->raw_schema ? schema_union(b, cmd->raw_schema)
                                           : schema_object(b, cmd->args);
    json_object *info = json_object_new_object();
    json_object_object_add(info, "name", json_object_new_string(cmd->name));
    json_object_object_add(info, "meta-type", json_object_new_string("command"));
    json_object_object_add(info, "arg-type", json_object_new_string(arg_type));
    json_object_object_add(info, "ret-type", json_object_new_string("any"));
    json_object_array_add(b->list, info);
}

static void add_event(const QmpEventDef *ev, gpointer opaque)
{
    SchemaBuilder *b = opaque;
    json_object *info = json_object_new_object();
    json_object_object_add(info, "name", json_object_new_string(ev->name));
    json_object_object_add(info, "meta-type", json_object_new_string("event"));
    json_object_object_add(info, "arg-type", json_object_new_string(schema_object(b, ev->data)));
    json_object_array_add(b->list, info);
}

static void add_builtin(SchemaBuilder *b, const char *name, const char *json_type)
{
    json_object *info = json_object_new_object();
    json_object_object_add(info, "name", json_object_new_string(name));
    json_object_object_add(info, "json-type", json_object_new_string(json_type));
    json_object_object_add(info, "meta-type", json_object_new_string("builtin"));
    json_object_array_add(b->list, info);
}

json_object *qapi_schema_build(void)
{
    SchemaBuilder b = {
        .list = json_object_new_array(),
        .by_shape = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free),
    };
    schema_object(&b, NULL); /* "0": the empty object, as in QEMU */
    qapi_foreach_command(add_command, &b);
    qapi_foreach_event(add_event, &b);
    add_builtin(&b, "str", "string");
    add_builtin(&b, "any", "value");
    add_builtin(&b, "bool", "boolean");
    add_builtin(&b, "int", "int");
    add_builtin(&b, "null", "null");
    add_builtin(&b, "number", "number");
    g_hash_table_destroy(b.by_shape);
    return b.list;
}
