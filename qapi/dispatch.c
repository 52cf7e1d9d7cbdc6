/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One request in, one reply out. This file checks the shape of a request
 * ("execute", "arguments", "id", "exec-oob"), enforces capabilities
 * negotiation, decodes the arguments through the command's ArgSpec tables
 * and builds the reply, using QEMU's texts for every error so that clients
 * written against qemu-storage-daemon see the same messages.
 */
#include "berth/qapi/qapi.h"
#include "qapi/json-writer.h"
#include "qapi-int.h"

#include <string.h>

static QmpSession *current_session;
static void (*quit_handler)(gpointer opaque);
static gpointer quit_handler_opaque;

QmpSession *qapi_current_session(void)
{
    return current_session;
}

void qapi_set_quit_handler(void (*fn)(gpointer opaque), gpointer opaque)
{
    quit_handler = fn;
    quit_handler_opaque = opaque;
}

bool qapi_call_quit_handler(void)
{
    if (!quit_handler) {
        return false;
    }
    quit_handler(quit_handler_opaque);
    return true;
}

json_object *qapi_error_reply(const GError *err, json_object *id)
{
    json_object *reply = json_object_new_object();
    json_object *error = json_object_new_object();

    json_object_object_add(error, "class", json_object_new_string(qmp_error_class_name(err)));
    json_object_object_add(error, "desc",
                           json_object_new_string(err && err->message ? err->message : ""));
    json_object_object_add(reply, "error", error);
    if (id) {
        json_object_object_add(reply, "id", json_object_get(id));
    }
    return reply;
}

bool qapi_run_command(const QmpCommandDef *cmd, json_object *args, bool keyval,
                      json_object **ret, GError **errp)
{
    /* A command without arguments still rejects unknown members. */
    static const ArgSpec no_members[] = { ARG_TABLE_END };
    static const ArgSpec *const no_tables[] = { no_members, NULL };
    json_object *empty = NULL;
    json_object *result = NULL;
    bool ok;

    g_return_val_if_fail(cmd && cmd->handler, false);

    if (!args) {
        args = empty = json_object_new_object();
    }
    if (cmd->flags & QMP_CMD_RAW_ARGS) {
        QmpRawArgs raw = { .args = args, .keyval = keyval };
        ok = cmd->handler(&raw, &result, errp);
    } else {
        const ArgSpec *const *tables = cmd->args ? cmd->args : no_tables;
        g_autofree void *decoded = g_malloc0(MAX(cmd->args_size, 1));

        if (!argspec_decode(tables, args, keyval, decoded, errp)) {
            json_object_put(empty);
            return false;
        }
        ok = cmd->handler(decoded, &result, errp);
        argspec_clear(tables, decoded);
    }
    json_object_put(empty);
    if (!ok) {
        json_object_put(result);
        return false;
    }
    if (ret) {
        *ret = result ? result : json_object_new_object();
    } else {
        json_object_put(result);
    }
    return true;
}

/*
 * Checks the members of a request object. QEMU examines them in its own
 * dictionary order, which decides which error wins when several apply, so
 * the same order is used here.
 */
static bool check_request_members(QmpSession *session, json_object *request,
                                  const char **execute, const char **exec_oob,
                                  json_object **arguments, GError **errp)
{
    g_autofree const char **keys = qapi_json_object_keys(request);

    for (size_t i = 0; keys[i]; i++) {
        const char *key = keys[i];
        json_object *val = json_object_object_get(request, key);

        if (strcmp(key, "execute") == 0 || (strcmp(key, "exec-oob") == 0 &&
                                            session->oob_enabled)) {
            if (!json_object_is_type(val, json_type_string)) {
                qmp_error_setg(errp, "QMP input member '%s' must be a string", key);
                return false;
            }
            if (strcmp(key, "execute") == 0) {
                *execute = json_object_get_string(val);
            } else {
                *exec_oob = json_object_get_string(val);
            }
        } else if (strcmp(key, "arguments") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                qmp_error_setg(errp, "QMP input member 'arguments' must be an object");
                return false;
            }
            *arguments = val;
        } else if (strcmp(key, "id") != 0) {
            qmp_error_setg(errp, "QMP input member '%s' is unexpected", key);
            return false;
        }
    }
    if (*execute && *exec_oob) {
        qmp_error_setg(errp, "QMP input member 'execute' clashes with 'exec-oob'");
        return false;
    }
    if (!*execute && !*exec_oob) {
        qmp_error_setg(errp, "QMP input lacks member 'execute'");
        return false;
    }
    return true;
}

static bool dispatch_checked(QmpSession *session, json_object *request, json_object **ret,
                             GError **errp)
{
    const char *execute = NULL, *exec_oob = NULL;
    json_object *arguments = NULL;

    if (!json_object_is_type(request, json_type_object)) {
        qmp_error_setg(errp, "QMP input must be a JSON object");
        return false;
    }
    if (!check_request_members(session, request, &execute, &exec_oob, &arguments, errp)) {
        return false;
    }

    const char *name = execute ? execute : exec_oob;
    const QmpCommandDef *cmd = qapi_find_command(name);

    /* Before negotiation only the commands allowed then exist at all. */
    if (!session->command_mode && !(cmd && (cmd->flags & QMP_CMD_ALLOW_BEFORE_CAPS))) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                            "Expecting capabilities negotiation with 'qmp_capabilities'");
        return false;
    }
    if (!cmd) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                    "The command %s has not been found", name);
        return false;
    }
    if (exec_oob) {
        /* No berth command is safe to run out of band. */
        qmp_error_setg(errp, "The command %s does not support OOB", name);
        return false;
    }
    if (session->command_mode && strcmp(name, "qmp_capabilities") == 0) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERROR_COMMAND_NOT_FOUND,
                            "Capabilities negotiation is already complete, command ignored");
        return false;
    }
    return qapi_run_command(cmd, arguments, false, ret, errp);
}

json_object *qapi_dispatch(QmpSession *session, json_object *request)
{
    g_autoptr(GError) err = NULL;
    json_object *ret = NULL;
    json_object *id = NULL;
    bool has_id = false;

    g_return_val_if_fail(session != NULL, NULL);

    if (json_object_is_type(request, json_type_object)) {
        /* JSON null is a NULL json_object, so ask for presence separately. */
        has_id = json_object_object_get_ex(request, "id", &id);
    }

    QmpSession *outer = current_session;
    current_session = session;
    bool ok = dispatch_checked(session, request, &ret, &err);
    current_session = outer;

    json_object *reply;
    if (ok) {
        reply = json_object_new_object();
        json_object_object_add(reply, "return", ret);
    } else {
        reply = qapi_error_reply(err, NULL);
    }
    if (has_id) {
        json_object_object_add(reply, "id", json_object_get(id));
    }
    return reply;
}
