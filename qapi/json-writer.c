/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Serialises json-c values the way QEMU's monitor does (see
 * qapi/json-writer.h): the monitor and berth-qmp's tests compare
 * bytes with qemu-storage-daemon, so spacing, member order, string escapes
 * and number formats all follow what QEMU 7.2 prints.
 */
#include "qapi/json-writer.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include "util/utf8.h"

/* QEMU keeps object members in 512 hash buckets. */
#define QEMU_DICT_BUCKETS 512

/* The classic TDB string hash, which QEMU's dictionaries use. */
static unsigned qemu_dict_bucket(const char *key)
{
    size_t len = strlen(key);
    uint32_t value = 0x238F13AFu * (uint32_t) len;

    for (size_t i = 0; i < len; i++) {
        value += (uint32_t) (unsigned char) key[i] << (i * 5 % 24);
    }
    return (1103515243u * value + 12345u) % QEMU_DICT_BUCKETS;
}

typedef struct {
    const char *key;
    unsigned bucket;
    unsigned seq; /* insertion position in the json-c object */
} KeyOrder;

static int key_order_cmp(const void *a, const void *b)
{
    const KeyOrder *x = a, *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    /* Within a bucket the newest entry comes first. */
    return x->seq < y->seq ? 1 : (x->seq > y->seq ? -1 : 0);
}

const char **qapi_json_object_keys(json_object *obj)
{
    size_t n = (size_t) json_object_object_length(obj);
    g_autofree KeyOrder *order = g_new(KeyOrder, n + 1);
    const char **keys = g_new0(const char *, n + 1);
    size_t i = 0;

    json_object_object_foreach(obj, key, val) {
        (void) val;
        order[i].key = key;
        order[i].bucket = qemu_dict_bucket(key);
        order[i].seq = i;
        i++;
    }
    qsort(order, i, sizeof(*order), key_order_cmp);
    for (size_t j = 0; j < i; j++) {
        keys[j] = order[j].key;
    }
    return keys;
}


static void append_string(GString *out, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0;

    g_string_append_c(out, '"');
    while (i < len) {
        /* Most text is printable ASCII that goes out as it is: in one piece. */
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x7F && s[run] != '"' && s[run] != '\\') {
            run++;
        }
        if (run > i) {
            g_string_append_len(out, str + i, (gssize) (run - i));
            i = run;
            continue;
        }
        uint32_t cp;
        size_t n = berth_utf8_decode(s + i, len - i, &cp);

        if (n == 0) {
            cp = 0xFFFD; /* what QEMU prints for bytes that are not UTF-8 */
            n = 1;
        }
        i += n;
        switch (cp) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\b':
            g_string_append(out, "\\b");
            break;
        case '\f':
            g_string_append(out, "\\f");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        default:
            if (cp >= 0x20 && cp < 0x7F) {
                g_string_append_c(out, (char) cp);
            } else if (cp > 0xFFFF) {
                cp -= 0x10000;
                g_string_append_printf(out, "\\u%04X\\u%04X",
                                       0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                g_string_append_printf(out, "\\u%04X", cp);
            }
            break;
        }
    }
    g_string_append_c(out, '"');
}

static void append_number(GString *out, json_object *obj)
{
    if (json_object_get_type(obj) == json_type_double) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        double d = json_object_get_double(obj);

        if (!isfinite(d)) {
            /* "%.17g" would print inf or nan, as QEMU does: not JSON. */
            g_string_append(out, "null");
            return;
        }
        g_string_append(out, g_ascii_formatd(buf, sizeof(buf), "%.17g", d));
        return;
    }
    int64_t i = json_object_get_int64(obj);
    if (i == INT64_MAX) {
        /* json-c saturates the signed view of values above INT64_MAX. */
        g_string_append_printf(out, "%" PRIu64, json_object_get_uint64(obj));
    } else {
        g_string_append_printf(out, "%" PRId64, i);
    }
}

static void append_indent(GString *out, bool pretty, int level)
{
    if (pretty) {
        g_string_append_c(out, '\n');
        for (int i = 0; i < level; i++) {
            g_string_append(out, "    ");
        }
    }
}

static void append_value(GString *out, json_object *obj, bool pretty, int level)
{
    switch (json_object_get_type(obj)) {
    case json_type_null:
        g_string_append(out, "null");
        break;
    case json_type_boolean:
        g_string_append(out, json_object_get_boolean(obj) ? "true" : "false");
        break;
    case json_type_int:
    case json_type_double:
        append_number(out, obj);
        break;
    case json_type_string:
        append_string(out, json_object_get_string(obj),
                      (size_t) json_object_get_string_len(obj));
        break;
    case json_type_object: {
        g_autofree const char **keys = qapi_json_object_keys(obj);

        g_string_append_c(out, '{');
        for (size_t i = 0; keys[i]; i++) {
            if (i > 0) {
                g_string_append(out, pretty ? "," : ", ");
            }
            append_indent(out, pretty, level + 1);
            append_string(out, keys[i], strlen(keys[i]));
            g_string_append(out, ": ");
            append_value(out, json_object_object_get(obj, keys[i]), pretty, level + 1);
        }
        append_indent(out, pretty, level);
        g_string_append_c(out, '}');
        break;
    }
    case json_type_array: {
        size_t n = json_object_array_length(obj);

        g_string_append_c(out, '[');
        for (size_t i = 0; i < n; i++) {
            if (i > 0) {
                g_string_append(out, pretty ? "," : ", ");
            }
            append_indent(out, pretty, level + 1);
            append_value(out, json_object_array_get_idx(obj, i), pretty, level + 1);
        }
        append_indent(out, pretty, level);
        g_string_append_c(out, ']');
        break;
    }
    }
}

void qapi_json_append(GString *out, json_object *obj, bool pretty)
{
    append_value(out, obj, pretty, 0);
}

char *qapi_json_to_string(json_object *obj, bool pretty)
{
    GString *out = g_string_new(NULL);

    qapi_json_append(out, obj, pretty);
    return g_string_free(out, FALSE);
}
