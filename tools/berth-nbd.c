/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd: export one raw image over NBD with qemu-nbd's command line,
 * or list another server's exports (-L), or hand an export to the kernel's
 * /dev/nbdX (-c, -d). It is a thin host of the library, driven exactly as
 * berthd drives it: --object is object-add, the image is a blockdev-add of
 * driver=file, the listener is nbd-server-start (berthd's --nbd-server
 * form), and the export is the C API's nbd_export_new(), which alone takes
 * an offset. Process chores (daemonizing, pid file, signals) are berthd's
 * (berthd-os.c); the command line is berth-nbd-options.c. Errors are one
 * line on stderr and exit status 1; signals
 * and, without --persistent, the departure of the last client that got as
 * far as transmission end the process with status 0.
 */
#include "berth-log.h"
#include "berth-nbd.h"
#include "io/socket-activation.h"
#include "berthd-os.h"
#include "berth/block/block.h"
#include "berth/block/block-backend.h"
#include "berth/nbd/proto.h"
#include "qapi/module-commands.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"
#include "util/keyval.h"

#include <gio/gio.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


static GMainLoop *main_loop;
static const BerthNbdOptions *options;
static NBDExport *export;
static BerthNbdKernel *kernel;
static int exit_status;

void berth_nbd_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", BERTH_NBD_PROG, msg);
}

/* --- the library, as berthd drives it --- */

bool berth_nbd_create_objects(const BerthNbdOptions *o)
{
    const QmpCommandDef *object_add = qapi_find_command("object-add");

    for (guint i = 0; i < o->objects->len; i++) {
        const char *arg = g_ptr_array_index(o->objects, i);
        g_autoptr(GError) err = NULL;
        g_autoptr(json_object) opts = keyval_parse(arg, "qom-type", &err);

        if (!opts || !qapi_run_command(object_add, opts, true, NULL, &err)) {
            berth_nbd_error("--object %s: %s", arg, err->message);
            return false;
        }
    }
    return true;
}

/* nbd-server-start in berthd's --nbd-server form (a flat address). */
static bool start_server(const BerthNbdOptions *o, GError **errp)
{
    g_autoptr(json_object) args = json_object_new_object();
    json_object *addr = json_object_new_object();

    if (o->activated) {
        g_autofree char *fd = g_strdup_printf("%d", BERTH_LISTEN_FDS_START);
        json_object_object_add(addr, "type", json_object_new_string("fd"));
        json_object_object_add(addr, "str", json_object_new_string(fd));
    } else if (o->sockpath) {
        json_object_object_add(addr, "type", json_object_new_string("unix"));
        json_object_object_add(addr, "path", json_object_new_string(o->sockpath));
    } else {
        g_autofree char *port = g_strdup_printf("%d", NBD_DEFAULT_PORT);
        json_object_object_add(addr, "type", json_object_new_string("inet"));
        json_object_object_add(addr, "host",
                               json_object_new_string(o->bind ? o->bind : "0.0.0.0"));
        json_object_object_add(addr, "port", json_object_new_string(o->port ? o->port : port));
    }
    json_object_object_add(args, "addr", addr);
    if (o->tls_creds) {
        json_object_object_add(args, "tls-creds", json_object_new_string(o->tls_creds));
    }
    if (o->tls_authz) {
        json_object_object_add(args, "tls-authz", json_object_new_string(o->tls_authz));
    }
    json_object_object_add(args, "max-connections", json_object_new_int64(o->shared));
    if (o->handshake_limit >= 0) {
        json_object_object_add(args, "handshake-max-seconds",
                               json_object_new_int64(o->handshake_limit));
    }
    return qapi_run_command(&nbd_qmp_server_options, args, false, NULL, errp);
}

static bool add_export(const BerthNbdOptions *o, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(BERTH_NBD_NODE_NAME);
    uint64_t size = bdrv_getlength(bs);

    if (o->offset > size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "offset %" G_GUINT64_FORMAT " is beyond the end of the image (%"
                    G_GUINT64_FORMAT " bytes)", o->offset, size);
        return false;
    }
    NBDExportConfig cfg = NBD_EXPORT_CONFIG_INIT;
    cfg.bs = bs;
    cfg.dev_offset = o->offset;
    cfg.read_only = o->read_only;
    cfg.writethrough = o->writethrough;
    cfg.allocation_depth = o->allocation_depth;
    /* qemu-nbd's rule: multi-conn only where -e lets a client open a second
     * connection. The server's limit withholds it too, but with -c alone no
     * server runs, and the kernel must be told the same. */
    cfg.multi_conn = o->shared == 1 ? NBD_MULTI_CONN_OFF : NBD_MULTI_CONN_AUTO;
    cfg.description = o->description;
    cfg.name = o->export_name ? o->export_name : "";
    export = nbd_export_create(&cfg, errp);
    return export != NULL;
}

/* qemu-nbd's rule: the last client to leave, if it got as far as
 * transmission, ends a server that is not --persistent. */
static void on_client_closed(bool negotiated, guint remaining, gpointer opaque)
{
    const BerthNbdOptions *o = opaque;

    if (negotiated && remaining == 0 && !o->persistent) {
        g_main_loop_quit(main_loop);
    }
}

static void on_kernel_connected(void)
{
    if (options->verbose) {
        fprintf(stderr, "%s: NBD device %s is now connected to %s\n", BERTH_NBD_PROG,
                options->device, options->filename);
    }
    berthd_daemon_ready();
}

static void on_kernel_finished(int status)
{
    exit_status = status;
    g_main_loop_quit(main_loop);
}

static void shutdown_all(void)
{
    nbd_server_set_client_closed_notify(NULL, NULL);
    if (kernel) {
        exit_status |= berth_nbd_kernel_stop(g_steal_pointer(&kernel));
    }
    if (nbd_server_is_running()) {
        nbd_server_stop();
    }
    if (export) {
        nbd_export_close(export);
        g_clear_pointer(&export, nbd_export_put);
    }
    nbd_export_close_all();
    blk_delete_all();
    bdrv_delete_all();
    qmp_object_del_all();
    berthd_pidfile_remove();
}

static bool setup(const BerthNbdOptions *o)
{
    g_autoptr(GError) err = NULL;

    if (!berth_nbd_create_objects(o)) {
        return false;
    }
    if (!berth_nbd_open_image(o, &err)) {
        berth_nbd_error("Failed to open '%s': %s", o->filename, err->message);
        return false;
    }
    if ((o->snapshot_id || o->snapshot_name || o->snapshot_id_or_name) &&
        !berth_nbd_load_snapshot(o, &err)) {
        berth_nbd_error("Failed to load snapshot: %s", err->message);
        return false;
    }
    if (!add_export(o, &err)) {
        berth_nbd_error("Cannot export '%s': %s", o->filename, err->message);
        return false;
    }
    /* With -c the kernel is served through a socketpair; -k adds a socket. */
    if (!o->device || o->sockpath) {
        if (!start_server(o, &err)) {
            berth_nbd_error("%s", err->message);
            return false;
        }
        if (!o->device) {
            nbd_server_set_client_closed_notify(on_client_closed, (gpointer) o);
        }
    }
    return true;
}

static int serve(const BerthNbdOptions *o)
{
    options = o;
    if (o->device) {
        g_autoptr(GError) err = NULL;
        kernel = berth_nbd_kernel_open(o->device, &err);
        if (!kernel) {
            berth_nbd_error("%s", err->message);
            return 1;
        }
    }
    /* Before any thread or socket exists; with -c as qemu-nbd does. */
    if (o->fork || (o->device && !o->verbose)) {
        int parent_status = berthd_daemonize();
        if (parent_status >= 0) {
            return parent_status;   /* the parent, once the child is ready */
        }
    }
    if (o->pid_file) {
        g_autoptr(GError) err = NULL;
        if (!berthd_pidfile_create(o->pid_file, &err)) {
            berth_nbd_error("Cannot create pid file: %s", err->message);
            shutdown_all();
            return 1;
        }
    }

    main_loop = g_main_loop_new(NULL, FALSE);
    qapi_init();
    berthd_quit_on_signals(main_loop);
    if (!setup(o)) {
        shutdown_all();
        g_main_loop_unref(main_loop);
        return 1;
    }
    if (kernel) {
        berth_nbd_kernel_start(kernel, export, o->export_name ? o->export_name : "",
                               on_kernel_connected, on_kernel_finished);
    } else {
        berthd_daemon_ready();
    }
    g_main_loop_run(main_loop);
    shutdown_all();
    g_main_loop_unref(main_loop);
    return exit_status;
}

/*
 * Under socket activation (systemd-socket-activate, a .socket unit) serve
 * on the passed socket; like qemu-nbd, refuse the options that would name
 * another one.
 */
static bool take_activation(BerthNbdOptions *o)
{
    g_autoptr(GError) err = NULL;
    int n = berth_socket_activation_take(&err);
    if (n < 0) {
        berth_nbd_error("%s", err->message);
        return false;
    }
    if (n == 0) {
        return true;
    }
    const char *refusal = o->sockpath ? "Unix socket can't be set when using socket activation"
                        : o->port ? "TCP port number can't be set when using socket activation"
                        : o->bind ? "The interface can't be set when using socket activation"
                        : o->device ? "NBD device can't be set when using socket activation"
                        : n > 1 ? "Socket activation passed more than one socket; "
                                  "berth-nbd serves exactly one"
                        : NULL;
    if (refusal) {
        berth_nbd_error("%s", refusal);
        return false;
    }
    o->activated = true;
    return true;
}

static int run(int argc, char **argv, BerthNbdOptions *o)
{
    int rc = berth_nbd_parse_options(argc, argv, o);
    if (rc >= 0) {
        return rc;
    }
    if (o->disconnect) {
        return berth_nbd_kernel_disconnect(o->filename);
    }
    if (!o->list && !take_activation(o)) {
        return 1;
    }
    if (o->list) {
        signal(SIGPIPE, SIG_IGN);
        qapi_init();
        rc = berth_nbd_create_objects(o) ? berth_nbd_list(o) : 1;
        qmp_object_del_all();
        return rc;
    }
    return serve(o);
}

int main(int argc, char **argv)
{
    g_autoptr(GPtrArray) objects = g_ptr_array_new();
    BerthNbdOptions o = { .shared = 1, .handshake_limit = -1, .objects = objects };

    g_set_prgname(BERTH_NBD_PROG);
    berth_log_init(BERTH_NBD_PROG);
    int rc = run(argc, argv, &o);
    g_free(o.snapshot_id);
    g_free(o.snapshot_name);
    return rc;
}
