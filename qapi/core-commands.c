/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The commands that belong to the protocol itself rather than to a module:
 * capabilities negotiation, version and command introspection, and quit.
 */
#include "berth/qapi/qapi.h"
#include "qapi/module-commands.h"
#include "qapi-int.h"
#include "berth-config.h"

#include <string.h>

/* --- qmp_capabilities --- */

typedef struct {
    json_object *enable;
    bool has_enable;
} CapabilitiesArgs;

static const ArgSpec capabilities_members[] = {
    ARG_OPTIONAL("enable", ARG_ANY, CapabilitiesArgs, enable, has_enable),
    ARG_TABLE_END
};
static const ArgSpec *const capabilities_args[] = { capabilities_members, NULL };

static bool qmp_capabilities(void *opaque, json_object **ret, GError **errp)
{
    CapabilitiesArgs *args = opaque;
    bool oob = false;

    if (args->has_enable) {
        if (!json_object_is_type(args->enable, json_type_array)) {
            qmp_error_setg(errp, "Invalid parameter type for 'enable', expected: array");
            return false;
        }
        size_t n = json_object_array_length(args->enable);
        for (size_t i = 0; i < n; i++) {
            json_object *cap = json_object_array_get_idx(args->enable, i);

            if (!json_object_is_type(cap, json_type_string)) {
                qmp_error_setg(errp, "Invalid parameter type for 'enable[%zu]', expected: string",
                               i);
                return false;
            }
            if (strcmp(json_object_get_string(cap), "oob") != 0) {
                /* QEMU 7.2 names the list element 'null' here; so do we. */
                qmp_error_setg(errp, "Parameter 'null' does not accept value '%s'",
                               json_object_get_string(cap));
                return false;
            }
            oob = true;
        }
    }

    QmpSession *session = qapi_current_session();
    if (session) {
        session->command_mode = true;
        session->oob_enabled = oob;
    }
    return true;
}

/* --- query-version --- */

static bool qmp_query_version(void *opaque, json_object **ret, GError **errp)
{
    json_object *version = json_object_new_object();
    json_object *triple = json_object_new_object();

    /* Insertion order matters where QEMU's buckets collide (micro, minor). */
    json_object_object_add(triple, "major", json_object_new_int(BERTH_VERSION_MAJOR));
    json_object_object_add(triple, "minor", json_object_new_int(BERTH_VERSION_MINOR));
    json_object_object_add(triple, "micro", json_object_new_int(BERTH_VERSION_MICRO));
    json_object_object_add(version, "qemu", triple);
    json_object_object_add(version, "package", json_object_new_string("berth " BERTH_VERSION));
    *ret = version;
    return true;
}

/* --- query-commands --- */

static void add_command_name(const QmpCommandDef *cmd, gpointer opaque)
{
    json_object *entry = json_object_new_object();

    json_object_object_add(entry, "name", json_object_new_string(cmd->name));
    json_object_array_add(opaque, entry);
}

static bool qmp_query_commands(void *opaque, json_object **ret, GError **errp)
{
    json_object *list = json_object_new_array();

    qapi_foreach_command(add_command_name, list);
    *ret = list;
    return true;
}

/* --- query-qmp-schema --- */

static bool qmp_query_qmp_schema(void *opaque, json_object **ret, GError **errp)
{
    *ret = qapi_schema_build();
    return true;
}

/* --- quit --- */

static bool qmp_quit(void *opaque, json_object **ret, GError **errp)
{
    if (!qapi_call_quit_handler()) {
        qmp_error_setg(errp, "quit is not supported by this host");
        return false;
    }
    return true;
}

const QmpCommandDef qapi_core_commands[] = {
    {
        .name = "qmp_capabilities",
        .args = capabilities_args,
        .args_size = sizeof(CapabilitiesArgs),
        .handler = qmp_capabilities,
        .flags = QMP_CMD_ALLOW_BEFORE_CAPS,
    },
    { .name = "query-version", .handler = qmp_query_version },
    { .name = "query-commands", .handler = qmp_query_commands },
    { .name = "query-qmp-schema", .handler = qmp_query_qmp_schema },
    { .name = "quit", .handler = qmp_quit },
    QMP_COMMAND_END
};
