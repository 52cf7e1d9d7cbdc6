/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The command tables that modules define next to their code and that
 * qapi_init() registers. Each table is defined in the module named in its
 * comment, which owns it; this header only gathers the declarations so that
 * qapi/ (and berthd, for its command-line options) can refer to them.
 *
 * Threads: the tables are constant; their handlers run on the main
 * context's thread.
 */
#ifndef BERTH_QAPI_MODULE_COMMANDS_H
#define BERTH_QAPI_MODULE_COMMANDS_H

#include "berth/util/qmp-command.h"

G_BEGIN_DECLS

/* qapi/core-commands.c: qmp_capabilities, query-version, query-commands, quit */
extern const QmpCommandDef qapi_core_commands[];
/* qapi/object-commands.c: object-add, object-del */
extern const QmpCommandDef qapi_object_commands[];
/* block/block-qmp.c: blockdev-*, query-named-block-nodes, drives */
extern const QmpCommandDef block_qmp_commands[];
/* block/block-resize-qmp.c: block_resize */
extern const QmpCommandDef block_resize_qmp_commands[];
/* block/block-stats.c: query-blockstats */
extern const QmpCommandDef block_stats_qmp_commands[];
/* block/block-qmp.c: DEVICE_TRAY_MOVED */
extern const QmpEventDef block_qmp_events[];
/* block/dirty-bitmap-qmp.c: block-dirty-bitmap-*, transaction */
extern const QmpCommandDef dirty_bitmap_qmp_commands[];
/* nbd/nbd-qmp.c: nbd-server-*, block-export-*, query-nbd-clients, ... */
extern const QmpCommandDef nbd_qmp_commands[];
/* nbd/nbd-qmp.c: BLOCK_EXPORT_DELETED */
extern const QmpEventDef nbd_qmp_events[];

/*
 * nbd/nbd-qmp.c: berthd's --nbd-server, which takes qemu-storage-daemon's
 * NbdServerOptions (addr.type=unix,addr.path=...: the flat SocketAddress,
 * not nbd-server-start's legacy {"type", "data"} form). Not registered as a
 * QMP command.
 */
extern const QmpCommandDef nbd_qmp_server_options;

/* Register the object types of qapi/object-commands.c (iothread and the
 * placeholders for TLS credentials and authz). */
void qapi_object_types_init(void);

G_END_DECLS

#endif
