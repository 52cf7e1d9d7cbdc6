/*
 * berthd: the berth library as a daemon, with qemu-storage-daemon's command
 * line. Options are applied in the order given, each through the same QMP
 * command a monitor client would use (--blockdev is blockdev-add with the
 * command line's keyval typing, --export is block-export-add, ...), so the
 * daemon itself adds no behaviour of its own beyond process chores: a bad
 * option is one line on stderr and exit status 1 before anything is
 * served; SIGINT, SIGTERM and the quit command shut down in order.
 */
#include "berth-config.h"
#include "berthd-os.h"
#include "berth/block/block.h"
#include "berth/block/block-backend.h"
#include "berth/monitor/monitor.h"
#include "berth/nbd/server.h"
#include "qapi/module-commands.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"
#include "util/keyval.h"

#include <getopt.h>
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_BLOCKDEV = 256,
    OPT_CHARDEV,
    OPT_DAEMONIZE,
    OPT_EXPORT,
    OPT_MONITOR,
    OPT_NBD_SERVER,
    OPT_OBJECT,
    OPT_PIDFILE,
};

static const struct option long_options[] = {
    { "blockdev", required_argument, NULL, OPT_BLOCKDEV },
    { "chardev", required_argument, NULL, OPT_CHARDEV },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "export", required_argument, NULL, OPT_EXPORT },
    { "help", no_argument, NULL, 'h' },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "nbd-server", required_argument, NULL, OPT_NBD_SERVER },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

typedef struct {
    int opt;
    const char *name; /* "blockdev", for messages */
    const char *arg;
} Option;

static GMainLoop *main_loop;

/* Every option and value named here is one berthd acts on; keep it so. */
static void usage(void)
{
    printf(
"Usage: berthd [options]\n"
"Serve block devices over NBD, managed through QMP, with qemu-storage-daemon\n"
"7.2's command line.\n"
"\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"  --blockdev [driver=]DRIVER,node-name=NAME[,read-only=on|off]\n"
"             [,auto-read-only=on|off][,force-share=on|off]\n"
"             [,discard=ignore|unmap][,detect-zeroes=off|on|unmap]\n"
"             [,cache.direct=on|off][,cache.no-flush=on|off][,DRIVER OPTIONS]\n"
"                         add a block node; the drivers and their options:\n"
"                           file     filename=PATH[,aio=threads|native|io_uring]\n"
"                                    [,locking=auto|off]\n"
"                           null-co  [size=SIZE][,read-zeroes=on|off]\n"
"                                    [,latency-ns=N]\n"
"                           memory   size=SIZE (berth's own: a disk in RAM)\n"
"                           nbd      server.type=unix,server.path=PATH |\n"
"                                    server.type=inet,server.host=HOST,\n"
"                                    server.port=PORT [,export=NAME]\n"
"                                    [,tls-creds=ID][,tls-hostname=NAME]\n"
"                                    [,reconnect-delay=SECS][,open-timeout=SECS]\n"
"\n"
"  --chardev socket,id=ID,path=PATH|host=HOST,port=PORT,server=on[,wait=off]\n"
"                         a listening socket for a QMP monitor\n"
"\n"
"  --monitor [chardev=]ID[,mode=control][,pretty=on|off]\n"
"                         serve QMP on chardev ID\n"
"\n"
"  --nbd-server addr.type=unix,addr.path=PATH[,COMMON]\n"
"  --nbd-server addr.type=inet,addr.host=HOST,addr.port=PORT[,COMMON]\n"
"  --nbd-server addr.type=fd,addr.str=FD[,COMMON]\n"
"                         start the NBD server; COMMON is any of\n"
"                         tls-creds=ID, tls-authz=ID, max-connections=N\n"
"                         (default 100; 0 means no limit),\n"
"                         handshake-max-seconds=N (default 10; 0: no limit)\n"
"\n"
"  --export [type=]nbd,id=ID,node-name=NODE[,name=NAME][,description=TEXT]\n"
"           [,writable=on|off][,writethrough=on|off][,iothread=ID]\n"
"           [,multi-conn=auto|on|off]\n"
"                         export a node over NBD (after --nbd-server)\n"
"\n"
"  --object iothread,id=ID\n"
"                         an I/O thread object; an export may name it\n"
"                         (iothread=ID) but still runs on the main loop\n"
"  --object tls-creds-x509,id=ID,dir=DIR[,endpoint=server|client]\n"
"           [,verify-peer=on|off][,priority=STRING]\n"
"  --object tls-creds-psk,id=ID,dir=DIR[,endpoint=server|client]\n"
"           [,username=NAME][,priority=STRING]\n"
"                         TLS credentials (tls-creds=ID)\n"
"  --object authz-simple,id=ID,identity=NAME\n"
"                         admit one TLS client identity (tls-authz=ID)\n"
"  --object help          list the object types\n"
"\n"
"  --pidfile FILE         write the pid to FILE, locked while running\n"
"  --daemonize            run in the background once ready\n"
"\n"
"Options are applied in order; ',,' is a literal comma in a value.\n"
"Without any option, berthd serves a 1 GiB memory disk 'disk' on\n"
"nbd://127.0.0.1:10809 (also as the default export) and QMP on\n"
"./berth-qmp.sock.\n");
}

static void version(void)
{
    printf("berthd version " BERTH_VERSION "\n"
           "Follows the command line and QMP of qemu-storage-daemon 7.2\n");
}

/* Parse an option's key=value string and run a registered command on it. */
static bool run_keyval_command(const QmpCommandDef *cmd, const char *arg,
                               const char *implied_key, GError **errp)
{
    g_autoptr(json_object) opts = keyval_parse(arg, implied_key, errp);

    if (!opts) {
        return false;
    }
    return qapi_run_command(cmd, opts, true, NULL, errp);
}

static void print_object_type(const QmpObjectType *type, gpointer opaque)
{
    printf("  %s\n", type->name);
}

/*
 * --object: object-add, or with a lone "help" the list of object types
 * (*helped is set, and berthd exits 0). Per-type property help does not
 * exist, so "TYPE,help" is refused rather than answered with the type list.
 */
static bool apply_object(const char *arg, bool *helped, GError **errp)
{
    bool help = false;
    g_autoptr(json_object) opts = keyval_parse_with_help(arg, "qom-type", &help, errp);

    if (!opts) {
        return false;
    }
    if (!help) {
        return qapi_run_command(qapi_find_command("object-add"), opts, true, NULL, errp);
    }
    if (json_object_object_get_ex(opts, "qom-type", NULL)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Help is available only as '--object help', which lists "
                            "the object types");
        return false;
    }
    printf("Object types for --object:\n");
    qmp_object_type_foreach(print_object_type, NULL);
    *helped = true;
    return true;
}

/* The implied keys are qemu-storage-daemon's; --nbd-server has none. */
static bool apply_option(const Option *o, bool *helped, GError **errp)
{
    /*
     * qemu-storage-daemon also takes these options as JSON objects; berthd
     * does not yet, and read as key=value the text would fail with a
     * baffling message about its first fragment.
     */
    if (o->opt != OPT_CHARDEV && o->arg && o->arg[0] == '{') {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "JSON syntax is not supported for --%s; write key=value,...", o->name);
        return false;
    }
    switch (o->opt) {
    case OPT_BLOCKDEV:
        return run_keyval_command(qapi_find_command("blockdev-add"), o->arg, "driver", errp);
    case OPT_OBJECT:
        return apply_object(o->arg, helped, errp);
    case OPT_CHARDEV:
        return monitor_chardev_add_str(o->arg, errp);
    case OPT_MONITOR: {
        g_autoptr(json_object) opts = keyval_parse(o->arg, "chardev", errp);
        return opts && monitor_add(opts, true, errp);
    }
    case OPT_NBD_SERVER:
        return run_keyval_command(&nbd_qmp_server_options, o->arg, NULL, errp);
    case OPT_EXPORT:
        return run_keyval_command(qapi_find_command("block-export-add"), o->arg, "type",
                                  errp);
    default:
        return true; /* handled before start-up */
    }
}

/*
 * The embedded default, as if given on the command line. The NBD part can
 * be changed here without touching anything else.
 */
static GPtrArray *default_options(void)
{
    static const Option defaults[] = {
        { OPT_BLOCKDEV, "blockdev", "driver=memory,node-name=disk,size=1G" },
        /* --- NBD: the default export on 127.0.0.1:10809 --- */
        { OPT_NBD_SERVER, "nbd-server",
          "addr.type=inet,addr.host=127.0.0.1,addr.port=10809" },
        { OPT_EXPORT, "export", "type=nbd,id=disk,node-name=disk,name=disk,writable=on" },
        { OPT_EXPORT, "export", "type=nbd,id=default,node-name=disk,name=,writable=on" },
        /* --- end of NBD part --- */
        { OPT_CHARDEV, "chardev", "socket,id=qmp0,path=berth-qmp.sock,server=on,wait=off" },
        { OPT_MONITOR, "monitor", "chardev=qmp0" },
    };
    GPtrArray *list = g_ptr_array_new();

    for (size_t i = 0; i < G_N_ELEMENTS(defaults); i++) {
        g_ptr_array_add(list, (gpointer) &defaults[i]);
    }
    fprintf(stderr, "berthd: no options given, serving the default: a 1 GiB memory disk "
                    "exported writable as 'disk' and as the default export on "
                    "nbd://127.0.0.1:10809, QMP on ./berth-qmp.sock\n");
    return list;
}

static void quit_main_loop(gpointer opaque)
{
    g_main_loop_quit(main_loop);
}

/* Monitors first (replies flushed, so `quit` is answered and no event
 * outlives its client), then exports and their clients, drives, nodes,
 * objects. */
static void shutdown_all(void)
{
    monitor_cleanup(1000);
    if (nbd_server_is_running()) {
        qapi_run_command(qapi_find_command("nbd-server-stop"), NULL, false, NULL, NULL);
    }
    nbd_export_close_all();
    blk_delete_all();
    bdrv_delete_all();
    qmp_object_del_all();
    berthd_pidfile_remove();
}

G_GNUC_NORETURN static void fail_option(const Option *o, const GError *err)
{
    fprintf(stderr, "berthd: --%s %s: %s\n", o->name, o->arg, err->message);
    shutdown_all();
    exit(1);
}

int main(int argc, char **argv)
{
    g_autoptr(GPtrArray) options = g_ptr_array_new_with_free_func(g_free);
    const char *pidfile = NULL;
    bool daemonize = false;
    int c, index;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hV", long_options, &index)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 0;
        case 'V':
            version();
            return 0;
        case OPT_PIDFILE:
            pidfile = optarg;
            break;
        case OPT_DAEMONIZE:
            daemonize = true;
            break;
        case ':':
            fprintf(stderr, "berthd: option '%s' requires an argument\n", argv[optind - 1]);
            return 1;
        case '?':
            if (optopt) {
                fprintf(stderr, "berthd: invalid option -- '%c'\n", optopt);
            } else {
                fprintf(stderr, "berthd: unrecognized option '%s'\n", argv[optind - 1]);
            }
            return 1;
        default: {
            Option *o = g_new0(Option, 1);
            o->opt = c;
            o->arg = optarg;
            for (const struct option *lo = long_options; lo->name; lo++) {
                if (lo->val == c) {
                    o->name = lo->name;
                }
            }
            g_ptr_array_add(options, o);
            break;
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "berthd: %s: Unexpected argument\n", argv[optind]);
        return 1;
    }

    /* Before any thread or socket exists. */
    if (daemonize) {
        berthd_daemonize();
    }
    if (pidfile) {
        g_autoptr(GError) err = NULL;
        if (!berthd_pidfile_create(pidfile, &err)) {
            fprintf(stderr, "berthd: cannot create PID file: %s\n", err->message);
            return 1;
        }
    }

    main_loop = g_main_loop_new(NULL, FALSE);
    qapi_init();
    monitor_init();
    qapi_set_quit_handler(quit_main_loop, NULL);
    berthd_quit_on_signals(main_loop);

    g_autoptr(GPtrArray) defaults = argc == 1 ? default_options() : NULL;
    GPtrArray *apply = defaults ? defaults : options;
    for (guint i = 0; i < apply->len; i++) {
        const Option *o = g_ptr_array_index(apply, i);
        g_autoptr(GError) err = NULL;
        bool helped = false;

        if (!apply_option(o, &helped, &err)) {
            fail_option(o, err);
        }
        if (helped) {
            /* A help request ends the run, as in qemu-storage-daemon. */
            shutdown_all();
            return 0;
        }
    }

    berthd_daemon_ready();
    g_main_loop_run(main_loop);
    shutdown_all();
    g_main_loop_unref(main_loop);
    return 0;
}
