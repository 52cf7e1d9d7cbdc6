/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What object-add does, for unit tests of io/'s object types that link
 * nothing above io/: decode the members with the type's own tables (from
 * JSON, or from a keyval string as on the command line), create the object
 * and enter it into the object table.
 */
#ifndef BERTH_TEST_IO_OBJECT_UTIL_H
#define BERTH_TEST_IO_OBJECT_UTIL_H

#include "berth/util/qmp-command.h"
#include "util/keyval.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <json-c/json.h>

/* members: JSON text, or with keyval a key=value string. */
static inline bool test_object_add(const char *qom_type, const char *id, const char *members,
                                   bool keyval, GError **errp)
{
    const QmpObjectType *type = qmp_object_type_find(qom_type);
    g_assert_nonnull(type);
    json_object *args = keyval ? keyval_parse(members, NULL, errp)
                               : json_tokener_parse(members);
    if (!args) {
        g_assert_true(keyval);
        return false;
    }
    g_autofree char *decoded = g_malloc0(type->args_size);
    bool ok = argspec_decode(type->args, args, keyval, decoded, errp);
    if (ok) {
        gpointer data = type->create_ex ? type->create_ex(id, decoded, keyval, errp)
                                        : type->create(id, decoded, errp);
        ok = data && qmp_object_add(id, type, data, errp);
        argspec_clear(type->args, decoded);
    }
    json_object_put(args);
    return ok;
}

/* The object must not be created, for this reason. */
static inline void test_object_add_fails(const char *qom_type, const char *members,
                                         bool keyval, const char *message)
{
    GError *err = NULL;
    if (test_object_add(qom_type, "x-failed", members, keyval, &err)) {
        g_error("%s %s was accepted", qom_type, members);
    }
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, message);
    g_error_free(err);
    g_assert_null(qmp_object_find("x-failed", NULL));
}

static inline void test_object_add_ok(const char *qom_type, const char *id, const char *members,
                                      bool keyval)
{
    GError *err = NULL;
    if (!test_object_add(qom_type, id, members, keyval, &err)) {
        g_error("%s %s: %s", qom_type, members, err->message);
    }
}

/* Remove a flat scratch folder made with g_dir_make_tmp(), and free its name. */
static inline void test_tmpdir_remove(char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    for (const char *name; d && (name = g_dir_read_name(d));) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_unlink(path);
    }
    if (d) {
        g_dir_close(d);
    }
    g_rmdir(dir);
    g_free(dir);
}

#endif
