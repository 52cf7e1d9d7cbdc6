/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The command registry: every module's QmpCommandDef table is entered here
 * once, by name, and the dispatcher, query-commands and berthd's option
 * handling all read the same entries, so a command is declared in exactly
 * one place.
 */
#include "berth/qapi/qapi.h"
#include "qapi/module-commands.h"

static GHashTable *commands_by_name;
static GPtrArray *commands_in_order;
static GHashTable *events_by_name;
static GPtrArray *events_in_order;

void qapi_register_commands(const QmpCommandDef *table)
{
    g_return_if_fail(table != NULL);

    if (!commands_by_name) {
        commands_by_name = g_hash_table_new(g_str_hash, g_str_equal);
        commands_in_order = g_ptr_array_new();
    }
    for (const QmpCommandDef *cmd = table; cmd->name; cmd++) {
        if (!cmd->handler || g_hash_table_contains(commands_by_name, cmd->name)) {
            g_critical("QMP command '%s' declared twice or without handler; ignored",
                       cmd->name);
            continue;
        }
        g_hash_table_insert(commands_by_name, (gpointer) cmd->name, (gpointer) cmd);
        g_ptr_array_add(commands_in_order, (gpointer) cmd);
    }
}

const QmpCommandDef *qapi_find_command(const char *name)
{
    if (!commands_by_name || !name) {
        return NULL;
    }
    return g_hash_table_lookup(commands_by_name, name);
}

void qapi_foreach_command(void (*fn)(const QmpCommandDef *cmd, gpointer opaque),
                          gpointer opaque)
{
    if (!commands_in_order) {
        return;
    }
    for (guint i = 0; i < commands_in_order->len; i++) {
        fn(g_ptr_array_index(commands_in_order, i), opaque);
    }
}

void qapi_register_events(const QmpEventDef *table)
{
    g_return_if_fail(table != NULL);

    if (!events_by_name) {
        events_by_name = g_hash_table_new(g_str_hash, g_str_equal);
        events_in_order = g_ptr_array_new();
    }
    for (const QmpEventDef *ev = table; ev->name; ev++) {
        if (g_hash_table_contains(events_by_name, ev->name)) {
            g_critical("QMP event '%s' declared twice; ignored", ev->name);
            continue;
        }
        g_hash_table_insert(events_by_name, (gpointer) ev->name, (gpointer) ev);
        g_ptr_array_add(events_in_order, (gpointer) ev);
    }
}

void qapi_foreach_event(void (*fn)(const QmpEventDef *ev, gpointer opaque), gpointer opaque)
{
    for (guint i = 0; events_in_order && i < events_in_order->len; i++) {
        fn(g_ptr_array_index(events_in_order, i), opaque);
    }
}

void qapi_init(void)
{
    static bool done;

    if (done) {
        return;
    }
    done = true;
    qapi_register_commands(qapi_core_commands);
    qapi_register_commands(qapi_object_commands);
    qapi_register_commands(block_qmp_commands);
    qapi_register_commands(nbd_qmp_commands);
    qapi_object_types_init();
}
