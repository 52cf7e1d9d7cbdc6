/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the NBD QMP files share (nbd-qmp.c: exports and clients;
 * nbd-server-qmp.c: the server's start and stop). Private to nbd/server/.
 * Main thread.
 */
#ifndef BERTH_NBD_QMP_INT_H
#define BERTH_NBD_QMP_INT_H

#include "berth/nbd/server.h"
#include "berth/util/qmp-command.h"

/* nbd-server-qmp.c: the handlers and schema nbd_qmp_commands lists. */
extern const QmpArgsUnion nbd_qmp_server_start_schema;
bool qmp_nbd_server_start(void *opaque, json_object **ret, GError **errp);
bool qmp_nbd_server_stop(void *opaque, json_object **ret, GError **errp);

/* nbd-qmp.c: close every export made over QMP (nbd-server-stop), oldest
 * first, as QEMU reports them. */
void nbd_qmp_close_all_exports(void);

#endif
