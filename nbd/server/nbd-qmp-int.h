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

/* nbd-qmp-iothreads.c: block-export-add's iothread member, one id or a
 * list; ids NULL-terminated and owned, NULL when the member is absent. */
typedef struct NBDQmpIothreads {
    char **ids;
    bool is_list;   /* given as a list, and shown as one */
} NBDQmpIothreads;

/* value: the member as given (NULL: absent), a string or an array. */
bool nbd_qmp_iothreads_parse(json_object *value, NBDQmpIothreads *out, GError **errp);
void nbd_qmp_iothreads_clear(NBDQmpIothreads *t);
/* Append each object's context (borrowed) to ctxs; fail naming a missing id. */
bool nbd_qmp_iothreads_resolve(const NBDQmpIothreads *t, GPtrArray *ctxs, GError **errp);
/* Pin every object (resolved before); nbd_qmp_iothreads_unpin() takes a
 * copy of the ids (g_strdupv) and frees it: an NBDExportConfig.ctx_release. */
void nbd_qmp_iothreads_pin(const NBDQmpIothreads *t);
void nbd_qmp_iothreads_unpin(gpointer ids);
/* The member as it was given (new), or NULL when absent. */
json_object *nbd_qmp_iothreads_to_json(const NBDQmpIothreads *t);
/* The id among t's whose thread runs ctx (borrowed), or NULL. */
const char *nbd_qmp_iothreads_find(const NBDQmpIothreads *t, GMainContext *ctx);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(NBDQmpIothreads, nbd_qmp_iothreads_clear)

#endif
