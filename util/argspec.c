/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Table-driven argument decoding. A command or option group describes its
 * members once as ArgSpec tables; this file walks a json-c object against
 * them, reports the first problem with the text qemu-storage-daemon 7.2 gives
 * for the same input (so scripts and libvirt-style clients that match on
 * error strings keep working), and stores typed values into the caller's
 * struct. Members are checked in table order and unknown members last, level
 * by level, because that is the order in which QEMU's visitor reports them.
 * The same walk serves QMP (real JSON types) and the command line, where
 * keyval_parse() hands over every scalar as a string to be converted here.
 */
#include "util/error.h"
#include "berth/util/argspec.h"
#include "util/argspec-int.h"

#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static void *field_at(void *out, size_t offset)
{
    return (char *) out + offset;
}

static void set_present(const ArgSpec *spec, void *out, bool present)
{
    if (spec->present_offset != ARG_NO_PRESENCE) {
        *(bool *) field_at(out, spec->present_offset) = present;
    }
}

/* Dotted name for messages; owned by the caller. */
static char *full_name(const char *prefix, const char *name)
{
    return prefix ? g_strdup_printf("%s.%s", prefix, name) : g_strdup(name);
}

static void type_error(GError **errp, const char *name, const char *expected)
{
    berth_error_invalid(errp, "Invalid parameter type for '%s', expected: %s", name, expected);
}

/* ---- one scalar member ----------------------------------------------------- */

/*
 * json-c keeps integers above INT64_MAX as uint64, so the signed view
 * saturates; compare both views to know which one is exact.
 */
static bool json_int_fits_int64(json_object *v)
{
    int64_t s = json_object_get_int64(v);

    return s != INT64_MAX || json_object_get_uint64(v) == (uint64_t) INT64_MAX;
}

static bool decode_int(const char *name, json_object *v, bool keyval,
                       int64_t *out, GError **errp)
{
    if (keyval && json_object_is_type(v, json_type_string)) {
        if (!argspec_scan_int(json_object_get_string(v), out)) {
            berth_error_invalid(errp, "Parameter '%s' expects integer", name);
            return false;
        }
        return true;
    }
    if (!json_object_is_type(v, json_type_int) || !json_int_fits_int64(v)) {
        type_error(errp, name, "integer");
        return false;
    }
    *out = json_object_get_int64(v);
    return true;
}

static bool decode_uint(const char *name, json_object *v, bool keyval,
                        uint64_t *out, GError **errp)
{
    if (keyval && json_object_is_type(v, json_type_string)) {
        switch (argspec_scan_uint(json_object_get_string(v), out)) {
        case UINT_OK:
            return true;
        case UINT_NEGATIVE:
            berth_error_invalid(errp, "Parameter '%s' expects uint64", name);
            return false;
        case UINT_SYNTAX:
        default:
            berth_error_invalid(errp, "Parameter '%s' expects integer", name);
            return false;
        }
    }
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
        berth_error_invalid(errp, "Parameter '%s' expects uint64", name);
        return false;
    }
    *out = json_object_get_uint64(v);
    return true;
}

static bool decode_size(const char *name, json_object *v, bool keyval,
                        uint64_t *out, GError **errp)
{
    if (keyval && json_object_is_type(v, json_type_string)) {
        switch (argspec_scan_size(json_object_get_string(v), out)) {
        case SIZE_OK:
            return true;
        case SIZE_RANGE:
            berth_error_invalid(errp, "Parameter '%s' expects a non-negative number below 2^64",
                                name);
            return false;
        case SIZE_SYNTAX:
        default:
            berth_error_invalid(errp, "Parameter '%s' expects integer", name);
            return false;
        }
    }
    if (!json_object_is_type(v, json_type_int)) {
        type_error(errp, name, "integer");
        return false;
    }
    if (json_object_get_int64(v) < 0) {
        berth_error_invalid(errp, "Parameter '%s' expects a non-negative number below 2^64", name);
        return false;
    }
    *out = json_object_get_uint64(v);
    return true;
}

static bool decode_bool(const char *name, json_object *v, bool keyval,
                        bool *out, GError **errp)
{
    if (keyval && json_object_is_type(v, json_type_string)) {
        if (!argspec_scan_bool(json_object_get_string(v), out)) {
            berth_error_invalid(errp, "Parameter '%s' expects 'on' or 'off'", name);
            return false;
        }
        return true;
    }
    if (!json_object_is_type(v, json_type_boolean)) {
        type_error(errp, name, "boolean");
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

static bool lookup_enum(const char *name, const char *const *values, json_object *v,
                        int *out, GError **errp)
{
    const char *str;

    if (!json_object_is_type(v, json_type_string)) {
        type_error(errp, name, "string");
        return false;
    }
    str = json_object_get_string(v);
    for (int i = 0; values && values[i]; i++) {
        if (!strcmp(values[i], str)) {
            *out = i;
            return true;
        }
    }
    berth_error_invalid(errp, "Parameter '%s' does not accept value '%s'", name, str);
    return false;
}

/* ---- tables -------------------------------------------------------------- */

/*
 * The tables that one JSON object is checked against, each with the struct
 * it fills: either `tables` all into `out`, or `targets`, each its own.
 */
typedef struct {
    const ArgSpec *const *tables; /* not NULL-terminated: see n */
    void *out;
    const ArgSpecTarget *targets;
    size_t n;
} TableSet;

static const ArgSpec *tableset_table(const TableSet *set, size_t t)
{
    return set->targets ? set->targets[t].members : set->tables[t];
}

static void *tableset_out(const TableSet *set, size_t t)
{
    return set->targets ? set->targets[t].out : set->out;
}

static bool tableset_declares(const TableSet *set, const char *name)
{
    for (size_t t = 0; t < set->n; t++) {
        for (const ArgSpec *spec = tableset_table(set, t); spec && spec->type != ARG_END;
             spec++) {
            if (!strcmp(spec->name, name)) {
                return true;
            }
        }
    }
    return false;
}

static bool decode_set(const TableSet *set, json_object *obj, const char *prefix,
                       bool keyval, GError **errp);

static bool decode_member(const ArgSpec *spec, json_object *obj, const char *prefix,
                          bool keyval, void *out, GError **errp)
{
    g_autofree char *name = full_name(prefix, spec->name);
    json_object *v = NULL;
    void *field = field_at(out, spec->offset);

    if (!json_object_object_get_ex(obj, spec->name, &v)) {
        if (!spec->optional) {
            berth_error_invalid(errp, "Parameter '%s' is missing", name);
            return false;
        }
        return true;
    }

    switch (spec->type) {
    case ARG_STR:
        if (!json_object_is_type(v, json_type_string)) {
            type_error(errp, name, "string");
            return false;
        }
        /* A member declared twice (base and variant) must not leak. */
        g_free(*(char **) field);
        *(char **) field = g_strdup(json_object_get_string(v));
        break;
    case ARG_INT:
        if (!decode_int(name, v, keyval, field, errp)) {
            return false;
        }
        break;
    case ARG_UINT:
        if (!decode_uint(name, v, keyval, field, errp)) {
            return false;
        }
        break;
    case ARG_SIZE:
        if (!decode_size(name, v, keyval, field, errp)) {
            return false;
        }
        break;
    case ARG_BOOL:
        if (!decode_bool(name, v, keyval, field, errp)) {
            return false;
        }
        break;
    case ARG_ENUM:
        if (!lookup_enum(name, spec->enum_values, v, field, errp)) {
            return false;
        }
        break;
    case ARG_OBJECT: {
        TableSet nested = { .tables = &spec->members, .out = field, .n = 1 };

        /* QEMU rejects null here too: an absent object is written by omission. */
        if (!json_object_is_type(v, json_type_object)) {
            type_error(errp, name, "object");
            return false;
        }
        if (!decode_set(&nested, v, name, keyval, errp)) {
            return false;
        }
        break;
    }
    case ARG_ANY:
        /* JSON null is a value like any other here and arrives as NULL. */
        json_object_put(*(json_object **) field);
        *(json_object **) field = json_object_get(v);
        break;
    case ARG_END:
    default:
        g_return_val_if_reached(false);
    }
    set_present(spec, out, true);
    return true;
}

/*
 * QEMU keeps a QMP object in a QDict: 512 buckets chosen by the tdb string
 * hash, each bucket listing its newest member first.
 */
static unsigned qdict_bucket(const char *key)
{
    unsigned h = 0x238F13AFu * (unsigned) strlen(key);

    for (unsigned i = 0; key[i]; i++) {
        h += (unsigned) (unsigned char) key[i] << (i * 5 % 24);
    }
    return (1103515243u * h + 12345u) % 512;
}

typedef struct {
    const char *key;
    unsigned bucket;
    size_t position;
} QdictSlot;

static int compare_qdict_order(gconstpointer a, gconstpointer b)
{
    const QdictSlot *x = a, *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    return x->position < y->position ? 1 : x->position > y->position ? -1 : 0;
}

/*
 * When several members are unknown, QEMU names the first that a GHashTable
 * yields after it was filled in QDict order and emptied of each declared
 * member as it was visited. Replaying exactly those steps on a GHashTable of
 * the same GLib names the same member, so clients see the same message.
 */
static const char *qemu_first_unexpected(const TableSet *set, json_object *obj)
{
    size_t n = json_object_object_length(obj), i = 0;
    g_autofree QdictSlot *slots = g_new(QdictSlot, n);
    g_autoptr(GHashTable) pending = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter iter;
    gpointer first = NULL;

    json_object_object_foreach(obj, key, val) {
        (void) val;
        slots[i] = (QdictSlot) { .key = key, .bucket = qdict_bucket(key), .position = i };
        i++;
    }
    qsort(slots, n, sizeof(*slots), compare_qdict_order);
    for (i = 0; i < n; i++) {
        g_hash_table_insert(pending, (gpointer) slots[i].key, NULL);
    }
    for (size_t t = 0; t < set->n; t++) {
        for (const ArgSpec *spec = tableset_table(set, t); spec && spec->type != ARG_END;
             spec++) {
            g_hash_table_remove(pending, spec->name);
        }
    }
    g_hash_table_iter_init(&iter, pending);
    return g_hash_table_iter_next(&iter, &first, NULL) ? first : NULL;
}

static bool decode_set(const TableSet *set, json_object *obj, const char *prefix,
                       bool keyval, GError **errp)
{
    for (size_t t = 0; t < set->n; t++) {
        for (const ArgSpec *spec = tableset_table(set, t); spec && spec->type != ARG_END;
             spec++) {
            if (!decode_member(spec, obj, prefix, keyval, tableset_out(set, t), errp)) {
                return false;
            }
        }
    }

    /* Unknown members are reported only once every declared one is good. */
    json_object_object_foreach(obj, key, val) {
        (void) val;
        if (!tableset_declares(set, key)) {
            const char *culprit = qemu_first_unexpected(set, obj);
            g_autofree char *name = full_name(prefix, culprit ? culprit : key);

            berth_error_invalid(errp, "Parameter '%s' is unexpected", name);
            return false;
        }
    }
    return true;
}

static size_t count_tables(const ArgSpec *const *tables)
{
    size_t n = 0;

    while (tables && tables[n]) {
        n++;
    }
    return n;
}

static void clear_table(const ArgSpec *table, void *out);

static void clear_set(const TableSet *set)
{
    for (size_t t = 0; t < set->n; t++) {
        clear_table(tableset_table(set, t), tableset_out(set, t));
    }
}

static bool decode_top(const TableSet *set, json_object *args, bool keyval, GError **errp)
{
    g_autoptr(json_object) empty = NULL;

    if (!args) {
        args = empty = json_object_new_object();
    }
    if (!json_object_is_type(args, json_type_object)) {
        berth_error_invalid(errp, "Invalid parameter type, expected: object");
        return false;
    }
    if (!decode_set(set, args, NULL, keyval, errp)) {
        clear_set(set);
        return false;
    }
    return true;
}

bool argspec_decode(const ArgSpec *const *tables, json_object *args, bool keyval,
                    void *out, GError **errp)
{
    TableSet set = { .tables = tables, .out = out, .n = count_tables(tables) };

    g_return_val_if_fail(out != NULL, false);
    return decode_top(&set, args, keyval, errp);
}

bool argspec_decode_targets(const ArgSpecTarget *targets, size_t n_targets, json_object *args,
                            bool keyval, GError **errp)
{
    TableSet set = { .targets = targets, .n = n_targets };

    g_return_val_if_fail(targets != NULL || n_targets == 0, false);
    for (size_t t = 0; t < n_targets; t++) {
        g_return_val_if_fail(targets[t].out != NULL || !targets[t].members, false);
    }
    return decode_top(&set, args, keyval, errp);
}

static void clear_table(const ArgSpec *table, void *out)
{
    for (const ArgSpec *spec = table; spec && spec->type != ARG_END; spec++) {
        void *field = field_at(out, spec->offset);

        switch (spec->type) {
        case ARG_STR:
            g_clear_pointer((char **) field, g_free);
            break;
        case ARG_ANY:
            g_clear_pointer((json_object **) field, json_object_put);
            break;
        case ARG_OBJECT:
            clear_table(spec->members, field);
            break;
        default:
            break;
        }
        set_present(spec, out, false);
    }
}

void argspec_clear(const ArgSpec *const *tables, void *out)
{
    TableSet set = { .tables = tables, .out = out, .n = count_tables(tables) };

    g_return_if_fail(out != NULL);
    clear_set(&set);
}

void argspec_clear_targets(const ArgSpecTarget *targets, size_t n_targets)
{
    TableSet set = { .targets = targets, .n = n_targets };

    g_return_if_fail(targets != NULL || n_targets == 0);
    clear_set(&set);
}

/* ---- union discriminators ---------------------------------------------- */

int argspec_discriminator(json_object *args, const char *path,
                          const char *const *values, GError **errp)
{
    g_auto(GStrv) parts = NULL;
    g_autoptr(GString) name = g_string_new(NULL);
    json_object *cur = args;
    int index = -1;

    g_return_val_if_fail(path != NULL, -1);

    parts = g_strsplit(path, ".", -1);
    for (size_t i = 0; parts[i]; i++) {
        json_object *next = NULL;

        if (i) {
            g_string_append_c(name, '.');
        }
        g_string_append(name, parts[i]);
        if (!cur || !json_object_object_get_ex(cur, parts[i], &next)) {
            berth_error_invalid(errp, "Parameter '%s' is missing", name->str);
            return -1;
        }
        if (parts[i + 1] && !json_object_is_type(next, json_type_object)) {
            type_error(errp, name->str, "object");
            return -1;
        }
        cur = next;
    }
    if (!lookup_enum(name->str, values, cur, &index, errp)) {
        return -1;
    }
    return index;
}
