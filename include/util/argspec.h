/*
 * Declarative argument decoding: a command or an option group declares its
 * members once, as a table of ArgSpec, and argspec_decode() checks a json-c
 * object against it (unknown member, wrong type, missing member, bad enum
 * value: QEMU's error texts) and fills a C struct with typed values.
 *
 * The same tables serve QMP (real JSON types) and the command line
 * (key=value strings from keyval_parse(): pass keyval=true so that "on",
 * "512", "1G" are read as bool, integer and size).
 *
 * Ownership: strings decoded into the struct are g_strdup()ed and ARG_ANY
 * values are json_object_get()ed; argspec_clear() frees them. The spec
 * tables are static and owned by their module.
 *
 * Threads: pure functions, any thread.
 */
#ifndef BERTH_UTIL_ARGSPEC_H
#define BERTH_UTIL_ARGSPEC_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

G_BEGIN_DECLS

typedef enum {
    ARG_END = 0, /* terminates a table */
    ARG_STR,     /* char *            */
    ARG_INT,     /* int64_t           */
    ARG_UINT,    /* uint64_t (non-negative integer) */
    ARG_SIZE,    /* uint64_t; keyval accepts suffixes k, M, G, T, P, E (powers of 1024) */
    ARG_BOOL,    /* bool; keyval accepts on/off/yes/no/true/false */
    ARG_ENUM,    /* int: index into enum_values */
    ARG_OBJECT,  /* nested object; its members (spec->members) go into the same struct */
    ARG_ANY,     /* json_object * (a reference), unchecked */
} ArgType;

#define ARG_NO_PRESENCE ((size_t) -1)

typedef struct ArgSpec {
    const char *name;               /* member name as on the wire, e.g. "node-name" */
    ArgType type;
    bool optional;
    size_t offset;                  /* offsetof(struct, field) for the value */
    size_t present_offset;          /* offsetof(struct, has_field) (a bool), or ARG_NO_PRESENCE */
    const char *const *enum_values; /* ARG_ENUM: NULL-terminated */
    const struct ArgSpec *members;  /* ARG_OBJECT: the nested table */
} ArgSpec;

/* Convenience initialisers. S is the struct type, F the field. */
#define ARG_REQUIRED(NAME, TYPE, S, F) \
    { .name = (NAME), .type = (TYPE), .offset = offsetof(S, F), .present_offset = ARG_NO_PRESENCE }
#define ARG_OPTIONAL(NAME, TYPE, S, F, HAS) \
    { .name = (NAME), .type = (TYPE), .optional = true, .offset = offsetof(S, F), \
      .present_offset = offsetof(S, HAS) }
#define ARG_ENUM_OPTIONAL(NAME, VALUES, S, F, HAS) \
    { .name = (NAME), .type = ARG_ENUM, .optional = true, .offset = offsetof(S, F), \
      .present_offset = offsetof(S, HAS), .enum_values = (VALUES) }
#define ARG_NESTED(NAME, MEMBERS, OPTIONAL) \
    { .name = (NAME), .type = ARG_OBJECT, .optional = (OPTIONAL), .offset = 0, \
      .present_offset = ARG_NO_PRESENCE, .members = (MEMBERS) }
#define ARG_TABLE_END { .name = NULL, .type = ARG_END }

/*
 * Decode `args` (a JSON object, or NULL meaning {}) against the union of the
 * NULL-terminated list of tables `tables` (a base table plus, for a union
 * such as blockdev-add, the table of the chosen variant), into `out`.
 * A member that no table declares is an error. Returns false with errp set
 * to QEMU's text, e.g.:
 *   "Parameter 'node-name' is missing"
 *   "Parameter 'foo' is unexpected"
 *   "Invalid parameter type for 'size', expected: integer"
 *   "Parameter 'discard' does not accept value 'bogus'"
 * Nested names are reported dotted: 'cache.direct'.
 * On failure, whatever was decoded is cleared again.
 */
bool argspec_decode(const ArgSpec *const *tables, json_object *args, bool keyval,
                    void *out, GError **errp);

/* Free strings and json references decoded into `out` by these tables. */
void argspec_clear(const ArgSpec *const *tables, void *out);

/* Parse a size with optional suffix (k/K, M, G, T, P, E; powers of 1024;
 * an optional trailing 'B' or 'iB' is not accepted, as in QEMU). */
bool argspec_parse_size(const char *str, uint64_t *out, GError **errp);

G_END_DECLS

#endif
