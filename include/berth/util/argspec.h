/* SPDX-License-Identifier: GPL-2.0-or-later */
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
    ARG_SIZE,    /* uint64_t; keyval accepts suffixes k, M, G, T, P, E (powers of 1024) and 1.5G */
    ARG_BOOL,    /* bool; keyval accepts on/off/yes/no/true/false */
    ARG_ENUM,    /* int: index into enum_values */
    ARG_OBJECT,  /* nested object: spec->members, decoded into the struct at offset */
    ARG_ANY,     /* json_object * (a reference), unchecked */
} ArgType;

#define ARG_NO_PRESENCE ((size_t) -1)

typedef struct ArgSpec {
    const char *name;               /* member name as on the wire, e.g. "node-name" */
    ArgType type;
    bool optional;
    /*
     * offsetof(struct, field) for the value. For ARG_OBJECT, where the
     * nested struct starts: the nested table's offsets are relative to it,
     * so one table serves in any outer struct that embeds its struct.
     * Offset 0 with a table written for the outer struct itself puts the
     * nested members into the outer struct (ARG_NESTED).
     */
    size_t offset;
    /* offsetof(struct, has_field) (a bool, in the struct that holds this
     * member, not in a nested one), or ARG_NO_PRESENCE */
    size_t present_offset;
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
/* A nested object whose table is written for the outer struct (offset 0). */
#define ARG_NESTED(NAME, MEMBERS, OPTIONAL) \
    { .name = (NAME), .type = ARG_OBJECT, .optional = (OPTIONAL), .offset = 0, \
      .present_offset = ARG_NO_PRESENCE, .members = (MEMBERS) }
/* A required nested object decoded into the sub-struct S.F by its own table. */
#define ARG_NESTED_AT(NAME, MEMBERS, S, F) \
    { .name = (NAME), .type = ARG_OBJECT, .offset = offsetof(S, F), \
      .present_offset = ARG_NO_PRESENCE, .members = (MEMBERS) }
/* The same, optional: S.HAS says whether it was given (even as {}). */
#define ARG_NESTED_OPTIONAL(NAME, MEMBERS, S, F, HAS) \
    { .name = (NAME), .type = ARG_OBJECT, .optional = true, .offset = offsetof(S, F), \
      .present_offset = offsetof(S, HAS), .members = (MEMBERS) }
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
 * Nested names are reported dotted: 'cache.direct'. The full set, as
 * qemu-storage-daemon 7.2 words them (QMP first, then keyval strings):
 *   ARG_STR, ARG_ENUM  "Invalid parameter type for 'X', expected: string"
 *   ARG_BOOL           "... expected: boolean"  / "Parameter 'X' expects 'on' or 'off'"
 *   ARG_INT            "... expected: integer"  / "Parameter 'X' expects integer"
 *   ARG_UINT           "Parameter 'X' expects uint64" (wrong type or negative)
 *                      / "Parameter 'X' expects integer" ("-1": "... expects uint64")
 *   ARG_SIZE           "... expected: integer"  / "Parameter 'X' expects integer";
 *                      negative or >= 2^64 in either mode:
 *                      "Parameter 'X' expects a non-negative number below 2^64"
 *   ARG_OBJECT         "Invalid parameter type for 'X', expected: object"
 * JSON null is a wrong type for every type but ARG_ANY, where it is stored
 * as NULL with the presence flag set. Declared members are checked in table
 * order; unknown members are reported only after all declared ones passed,
 * and when there are several, the one QEMU would name is named. GErrors are
 * in the G_IO_ERROR domain, code G_IO_ERROR_INVALID_ARGUMENT.
 * `out` must start zeroed (or hold a previous result: strings and json
 * references already there are freed when overwritten).
 * On failure, whatever was decoded is cleared again.
 */
bool argspec_decode(const ArgSpec *const *tables, json_object *args, bool keyval,
                    void *out, GError **errp);

/*
 * One table and the struct its offsets refer to, for decoding one object
 * into several structs: blockdev-add's common members into the block
 * layer's struct and the chosen driver's members into the driver's own.
 * A NULL `members` is an empty table (and `out` may then be NULL).
 */
typedef struct ArgSpecTarget {
    const ArgSpec *members;
    void *out;
} ArgSpecTarget;

/*
 * argspec_decode() with each of the `n_targets` tables filling its own
 * struct. The object is checked against the union of the tables, in their
 * order, exactly as argspec_decode() does (same errors, same order); on
 * failure every target is cleared again.
 */
bool argspec_decode_targets(const ArgSpecTarget *targets, size_t n_targets, json_object *args,
                            bool keyval, GError **errp);

/*
 * The member that selects a union's variant, such as blockdev-add's "driver"
 * or nbd-server-start's "addr.type" (`path` may be dotted to reach into
 * nested objects): returns its index in the NULL-terminated `values`, or -1
 * with errp set to QEMU's text ("Parameter 'driver' is missing", "Invalid
 * parameter type for 'addr', expected: object", "Parameter 'driver' does not
 * accept value 'x'"). Works for QMP and keyval input alike. The caller then
 * passes the base table plus that variant's table to argspec_decode(), which
 * checks the discriminator again as an ordinary ARG_ENUM member.
 */
int argspec_discriminator(json_object *args, const char *path,
                          const char *const *values, GError **errp);

/* Free strings and json references decoded into `out` by these tables,
 * set them to NULL and every presence flag to false. Fields of type ARG_STR
 * must hold NULL or g_malloc()ed memory. */
void argspec_clear(const ArgSpec *const *tables, void *out);
/* The same for what argspec_decode_targets() filled. */
void argspec_clear_targets(const ArgSpecTarget *targets, size_t n_targets);

/* Parse a size as QEMU does: a decimal (or 0x hex) number, for decimals an
 * optional fraction, then an optional suffix B, K, M, G, T, P or E in either
 * case (powers of 1024; "1.5G", "512B", "0.5k"). "1KB", "1KiB", "1.5",
 * negative numbers, 2^64 and beyond, empty strings and trailing junk are
 * rejected with a message quoting `str`. `out` is written only on success. */
bool argspec_parse_size(const char *str, uint64_t *out, GError **errp);

G_END_DECLS

#endif
