/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qemu-storage-daemon's key=value,... option syntax, turned into a json-c
 * object so that command-line options and QMP arguments meet in one decoder
 * (argspec_decode with keyval=true). The rules follow QEMU's keyval parser so
 * that a berthd command line means what it meant to qemu-storage-daemon:
 * ",," is a literal comma, dotted keys build nested objects, purely numeric
 * key fragments turn their parent into an array, the first element may be a
 * bare value for an implied key ("file,node-name=f0" for --blockdev), and a
 * lone "help" or "?" element is a help request. Where QEMU silently lets the
 * last of two equal keys win, berth reports the repetition instead, because
 * a repeated option is nearly always a typo in a script. All scalar values
 * stay strings here; their types are known only to the decoder.
 */
#include "util/error.h"
#include "util/keyval.h"

#include <gio/gio.h>
#include <stdbool.h>
#include <string.h>

/* QEMU limits a key fragment to 127 bytes; the depth cap is berth's own and
 * keeps recursion (ours and json-c's when freeing) shallow whatever the input. */
#define KEYVAL_MAX_FRAGMENT 127
#define KEYVAL_MAX_DEPTH    32

#include "util/json.h"

static bool is_index(const char *s, size_t len)
{
    if (!len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isdigit(s[i])) {
            return false;
        }
    }
    return true;
}

/* A QAPI member name: a letter, then letters, digits, '-' or '_'. */
static bool is_name(const char *s, size_t len)
{
    if (!len || !g_ascii_isalpha(s[0])) {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        if (!g_ascii_isalnum(s[i]) && s[i] != '-' && s[i] != '_') {
            return false;
        }
    }
    return true;
}

/*
 * Split `key` (not NUL-terminated, `len` bytes) into fragments after checking
 * each; the first must be a name, later ones may also be array indexes.
 */
static GStrv split_key(const char *key, size_t len, GError **errp)
{
    g_autofree char *whole = g_strndup(key, len);
    g_auto(GStrv) parts = g_strsplit(whole, ".", -1);
    size_t n = g_strv_length(parts);

    if (n == 0) {
        berth_error_invalid(errp, "Invalid parameter ''");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t flen = strlen(parts[i]);

        if (!is_name(parts[i], flen) && (i == 0 || !is_index(parts[i], flen))) {
            berth_error_invalid(errp, "Invalid parameter '%s'", whole);
            return NULL;
        }
        if (flen > KEYVAL_MAX_FRAGMENT) {
            berth_error_invalid(errp, "Parameter%s '%s' is too long",
                                n > 1 ? " fragment" : "", parts[i]);
            return NULL;
        }
    }
    if (n > KEYVAL_MAX_DEPTH) {
        berth_error_invalid(errp, "Parameter '%s' is nested too deeply", whole);
        return NULL;
    }
    return g_steal_pointer(&parts);
}

/* "a.b" for the first `count` fragments, for messages. */
static char *join_prefix(GStrv parts, size_t count)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (size_t i = 0; i < count; i++) {
        g_string_append_printf(s, "%s%s", i ? "." : "", parts[i]);
    }
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/* Store `value` (taking ownership) at the path `parts` below `root`. */
static bool put_value(json_object *root, GStrv parts, char *value, GError **errp)
{
    g_autofree char *val = value;
    json_object *cur = root;
    size_t n = g_strv_length(parts);

    for (size_t i = 0; i + 1 < n; i++) {
        json_object *next = NULL;

        if (!json_object_object_get_ex(cur, parts[i], &next)) {
            next = json_object_new_object();
            json_object_object_add(cur, parts[i], next);
        } else if (!json_object_is_type(next, json_type_object)) {
            g_autofree char *prefix = join_prefix(parts, i + 1);
            berth_error_invalid(errp, "Parameters '%s.*' used inconsistently", prefix);
            return false;
        }
        cur = next;
    }

    json_object *old = NULL;
    if (json_object_object_get_ex(cur, parts[n - 1], &old)) {
        g_autofree char *key = join_prefix(parts, n);
        if (json_object_is_type(old, json_type_object)) {
            berth_error_invalid(errp, "Parameters '%s.*' used inconsistently", key);
        } else {
            berth_error_invalid(errp, "Parameter '%s' is specified more than once", key);
        }
        return false;
    }
    json_object_object_add(cur, parts[n - 1], json_object_new_string(val));
    return true;
}

/*
 * Read a value up to the next lone ',' (",," stands for ','). Returns the
 * unescaped value and moves *pos past the terminating comma, if any.
 */
static char *read_value(const char **pos)
{
    GString *val = g_string_new(NULL);
    const char *s = *pos;

    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                s++;
                break;
            }
            s++;
        }
        g_string_append_c(val, *s++);
    }
    *pos = s;
    return g_string_free(val, FALSE);
}

/* A lone "help" or "?" element asks for help instead of giving a value. */
static bool is_help_request(const char *s, size_t len)
{
    return (len == 4 && strncmp(s, "help", 4) == 0) || (len == 1 && s[0] == '?');
}

/*
 * The leading bare value of `s` (`len` bytes, no '=' among them) stored under
 * `implied_key`. As in QEMU the value ends at the first ',' and is taken
 * literally: ",," has no escaping role here, so a value that contains a
 * comma (or '=') must be written with its key.
 */
static const char *parse_implied(json_object *root, const char *s, size_t len,
                                 const char *implied_key, GError **errp)
{
    g_auto(GStrv) parts = split_key(implied_key, strlen(implied_key), errp);

    g_return_val_if_fail(parts != NULL, NULL); /* the caller's key is a constant */
    if (s[len] == ',' && s[len + 1] == ',') {
        berth_error_invalid(errp, "Invalid parameter '': a value given without '%s=' "
                            "cannot contain ','", implied_key);
        return NULL;
    }
    if (!put_value(root, parts, g_strndup(s, len), errp)) {
        return NULL;
    }
    s += len;
    return *s == ',' ? s + 1 : s;
}

/* Parse one key=value, the leading bare value or a help request; NULL on error. */
static const char *parse_one(json_object *root, const char *s, const char *implied_key,
                             bool *help, GError **errp)
{
    size_t len = strcspn(s, "=,");

    if (len && s[len] != '=') {
        if (is_help_request(s, len)) {
            *help = true;
            s += len;
            return *s == ',' ? s + 1 : s;
        }
        if (implied_key) {
            return parse_implied(root, s, len, implied_key, errp);
        }
    }

    g_auto(GStrv) parts = split_key(s, len, errp);
    if (!parts) {
        return NULL;
    }
    if (s[len] != '=') {
        berth_error_invalid(errp, "Expected '=' after parameter '%.*s'", (int) len, s);
        return NULL;
    }
    s += len + 1;

    char *value = read_value(&s);
    if (!put_value(root, parts, value, errp)) {
        return NULL;
    }
    return s;
}

static bool index_of(const char *key, size_t *out)
{
    guint64 v;

    if (!is_index(key, strlen(key))) {
        return false;
    }
    /* Overlong indexes cannot be present in a gap-free array anyway. */
    if (!g_ascii_string_to_unsigned(key, 10, 0, G_MAXSIZE, &v, NULL)) {
        v = G_MAXSIZE;
    }
    *out = v;
    return true;
}

/*
 * Replace every object whose keys are all indexes by an array. The array
 * never has more slots than the object has members, so a huge index in the
 * input cannot make us allocate much: it shows up as a gap instead.
 * Returns a new reference to `obj` or its replacement, NULL on error.
 */
static json_object *listify(json_object *obj, const char *path, GError **errp)
{
    size_t count = json_object_object_length(obj);
    bool has_index = false, has_name = false;

    json_object_object_foreach(obj, key, val) {
        size_t idx;

        if (index_of(key, &idx)) {
            has_index = true;
        } else {
            has_name = true;
        }
        if (json_object_is_type(val, json_type_object)) {
            g_autofree char *child_path = path ? g_strdup_printf("%s.%s", path, key)
                                               : g_strdup(key);
            json_object *repl = listify(val, child_path, errp);

            if (!repl) {
                return NULL;
            }
            if (repl != val) {
                /* Replacing the current entry's value keeps the iteration valid. */
                json_object_object_add(obj, key, repl);
            } else {
                json_object_put(repl);
            }
        }
    }

    if (has_index && has_name) {
        berth_error_invalid(errp, "Parameters '%s.*' used inconsistently", path);
        return NULL;
    }
    if (!has_index) {
        return json_object_get(obj);
    }

    g_autofree json_object **slots = g_new0(json_object *, count);
    json_object_object_foreach(obj, key2, val2) {
        size_t idx = 0;

        index_of(key2, &idx);
        if (idx < count) {
            if (slots[idx]) {
                berth_error_invalid(errp, "Parameter '%s.%zu' is specified more than once",
                                    path, idx);
                return NULL;
            }
            slots[idx] = val2;
        }
    }
    g_autoptr(json_object) array = json_object_new_array();
    for (size_t i = 0; i < count; i++) {
        if (!slots[i]) {
            berth_error_invalid(errp, "Parameter '%s.%zu' missing", path, i);
            return NULL;
        }
        json_object_array_add(array, json_object_get(slots[i]));
    }
    return g_steal_pointer(&array);
}

json_object *keyval_parse_with_help(const char *params, const char *implied_key, bool *help,
                                    GError **errp)
{
    g_autoptr(json_object) root = json_object_new_object();
    const char *s = params;
    bool wants_help = false;

    g_return_val_if_fail(params != NULL, NULL);

    while (*s) {
        s = parse_one(root, s, implied_key, &wants_help, errp);
        if (!s) {
            return NULL;
        }
        /* Only the first element may stand for the implied key. */
        implied_key = NULL;
    }
    if (help) {
        *help = wants_help;
    } else if (wants_help) {
        berth_error_invalid(errp, "Help is not available for this option");
        return NULL;
    }

    /* First fragments are never indexes, so the root comes back as itself. */
    return listify(root, NULL, errp);
}

json_object *keyval_parse(const char *params, const char *implied_key, GError **errp)
{
    return keyval_parse_with_help(params, implied_key, NULL, errp);
}
