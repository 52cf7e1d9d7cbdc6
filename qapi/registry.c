/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The command registry: every module's QmpCommandDef table is entered here
 * once, by name, and the dispatcher, query-commands and berthd's option
 * handling all read the same entries, so a command is declared in exactly
 * one place.
 */
#include "berth/qapi/qapi.h"
#include "qapi/module-commands.h"
#include "util/named-table.h"

static BerthNamedTable commands = BERTH_NAMED_TABLE_INIT; /* by name, in registration order */
static BerthNamedTable events = BERTH_NAMED_TABLE_INIT;   /* by name, in declaration order */

void qapi_register_commands(const QmpCommandDef *table)
{
    g_return_if_fail(table != NULL);

    for (const QmpCommandDef *cmd = table; cmd->name; cmd++) {
        if (!cmd->handler || !berth_named_table_add(&commands, cmd->name, (gpointer) cmd)) {
            g_critical("QMP command '%s' declared twice or without handler; ignored",
                       cmd->name);
        }
    }
}

const QmpCommandDef *qapi_find_command(const char *name)
{
    return berth_named_table_find(&commands, name);
}

void qapi_foreach_command(void (*fn)(const QmpCommandDef *cmd, gpointer opaque),
                          gpointer opaque)
{
    for (guint i = 0; i < berth_named_table_size(&commands); i++) {
        fn(berth_named_table_nth(&commands, i), opaque);
    }
}

void qapi_register_events(const QmpEventDef *table)
{
    g_return_if_fail(table != NULL);

    for (const QmpEventDef *ev = table; ev->name; ev++) {
        if (!berth_named_table_add(&events, ev->name, (gpointer) ev)) {
            g_critical("QMP event '%s' declared twice; ignored", ev->name);
        }
    }
}

void qapi_foreach_event(void (*fn)(const QmpEventDef *ev, gpointer opaque), gpointer opaque)
{
    for (guint i = 0; i < berth_named_table_size(&events); i++) {
        fn(berth_named_table_nth(&events, i), opaque);
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
    qapi_register_commands(block_resize_qmp_commands);
    qapi_register_commands(block_stats_qmp_commands);
    qapi_register_commands(dirty_bitmap_qmp_commands);
    qapi_register_commands(nbd_qmp_commands);
    qapi_register_events(block_qmp_events);
    qapi_register_events(nbd_qmp_events);
    qapi_object_types_init();
}
