/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berthd: the berth library as a daemon, with qemu-storage-daemon's command
 * line. Options are applied in the order given, each through the same QMP
 * command a monitor client would use (--blockdev is blockdev-add with the
 * command line's keyval typing, --export is block-export-add, ...), so the
 * daemon itself adds no behaviour of its own beyond process chores: a bad
 * option is one line on stderr and exit status 1 before anything is
 * served; SIGINT, SIGTERM and the quit command shut down in order.
 */
#include "berth-log.h"
#include "monitor/json-reader.h"
#include "io/socket-activation.h"
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
    { "trace", required_argument, NULL, 'T' },
    { "verbose", no_argument, NULL, 'v' },
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
"  -v, --verbose          log clients connecting and leaving; twice: debug too\n"
"  -T, --trace [enable=]PATTERN[,file=FILE]\n"
"                         info and debug lines of the log domains matching\n"
"                         PATTERN (berth-nbd-server, or nbd-*, block, ...)\n"
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
"                           raw      file=NODE|file.driver=DRIVER,file.OPTION=...\n"
"                                    [,offset=BYTES][,size=BYTES]\n"
"                           blkdebug  image=NODE|image.driver=DRIVER,...\n"
"                                    [,inject-error.N.event=EVENT,\n"
"                                    inject-error.N.errno=ERRNO,...][,x-delay-ms=MS]\n"
"                           qcow2    file=NODE|file.driver=DRIVER,file.OPTION=...\n"
"                                    [,backing=NODE|null][,l2-cache-size=BYTES]\n"
"                                    [,cache-size=BYTES]\n"
"                           copy-before-write  file=NODE,target=NODE\n"
"                                    [,bitmap.node=NODE,bitmap.name=NAME]\n"
"                                    [,on-cbw-error=break-guest-write|\n"
"                                    break-snapshot]\n"
"                           snapshot-access  file=NODE (a copy-before-write node)\n"
#ifdef CONFIG_RBD
"                           rbd      pool=POOL,image=IMAGE[,namespace=NS]\n"
"                                    [,snapshot=SNAP][,conf=PATH][,user=ID]\n"
"                                    [,key-secret=ID][,auth-client-required.0=cephx|none]\n"
"                                    [,server.0.host=HOST,server.0.port=PORT]\n"
#endif
"\n"
"  --chardev socket,id=ID,path=PATH|host=HOST,port=PORT,server=on[,wait=off]\n"
"                         a listening socket for a QMP monitor\n"
"  --chardev socket,id=ID,fd=N[,server=on]\n"
"                         an inherited socket: listening with server=on,\n"
"                         else one connected peer\n"
"  --chardev stdio,id=ID[,signal=on|off]\n"
"                         QMP on standard input and output\n"
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
"           [,fixed-iothread=on|off][,multi-conn=auto|on|off]\n"
"                         export a node over NBD (after --nbd-server);\n"
"                         iothread.0=ID0,iothread.1=ID1,... hands its clients\n"
"                         to those I/O threads in turn\n"
"\n"
"  --object iothread,id=ID\n"
"                         an I/O thread; an export naming it (iothread=ID)\n"
"                         serves its clients' requests on that thread\n"
"  --object tls-creds-x509,id=ID,dir=DIR[,endpoint=server|client]\n"
"           [,verify-peer=on|off][,priority=STRING][,passwordid=SECRET]\n"
"  --object tls-creds-psk,id=ID,dir=DIR[,endpoint=server|client]\n"
"           [,username=NAME][,priority=STRING]\n"
"                         TLS credentials (tls-creds=ID)\n"
"  --object secret,id=ID,data=STRING|file=FILE[,format=raw|base64]\n"
"           [,keyid=SECRET,iv=BASE64]\n"
"                         a secret, e.g. a key's password (passwordid=ID)\n"
"  --object authz-simple,id=ID,identity=NAME\n"
"                         admit one TLS client identity (tls-authz=ID)\n"
"  --object authz-list,id=ID[,policy=allow|deny][,rules.N.match=NAME,\n"
"           rules.N.policy=allow|deny[,rules.N.format=exact|glob]...]\n"
"  --object authz-listfile,id=ID,filename=FILE[,refresh=on|off]\n"
"                         TLS client identities by rules (tls-authz=ID)\n"
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

/* Sockets a service manager passed (LISTEN_FDS), taken at start-up. */
static int activated_fds;

/*
 * --nbd-server: nbd-server-start. Under socket activation an option
 * without addr serves on the passed socket (as addr.type=fd,addr.str=3).
 */
static bool start_nbd_server(json_object *opts, bool keyval, GError **errp)
{
    if (activated_fds > 0 && !json_object_object_get_ex(opts, "addr", NULL)) {
        json_object *addr = json_object_new_object();
        json_object_object_add(addr, "type", json_object_new_string("fd"));
        json_object_object_add(addr, "str",
                               json_object_new_string(G_STRINGIFY(BERTH_LISTEN_FDS_START)));
        json_object_object_add(opts, "addr", addr);
    }
    return qapi_run_command(&nbd_qmp_server_options, opts, keyval, NULL, errp);
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

/*
 * An option's value in qemu-storage-daemon's JSON form (it starts with
 * '{'): exactly one JSON object, with QEMU's parse-error texts.
 */
static json_object *parse_json_option(const char *arg, GError **errp)
{
    g_autoptr(JsonReader) reader = json_reader_new(0, 0, 0);
    json_object *value = NULL;
    size_t len = strlen(arg), used = 0;

    switch (json_reader_feed(reader, arg, len, &used, &value, errp)) {
    case JSON_READER_ERROR:
        return NULL;
    case JSON_READER_NEED_MORE:
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "JSON parse error, premature EOI");
        return NULL;
    case JSON_READER_VALUE:
        break;
    }
    if (strspn(arg + used, " \t\r\n") != len - used) {
        json_object_put(value);
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "Expecting at most one JSON value");
        return NULL;
    }
    return value;
}

/* Run an option once parsed: keyval tells the commands whether scalars
 * are key=value strings or real JSON types. */
static bool apply_parsed(int opt, json_object *opts, bool keyval, GError **errp)
{
    switch (opt) {
    case OPT_BLOCKDEV:
        return qapi_run_command(qapi_find_command("blockdev-add"), opts, keyval, NULL, errp);
    case OPT_OBJECT:
        return qapi_run_command(qapi_find_command("object-add"), opts, keyval, NULL, errp);
    case OPT_MONITOR:
        return monitor_add(opts, keyval, errp);
    case OPT_NBD_SERVER:
        return start_nbd_server(opts, keyval, errp);
    case OPT_EXPORT:
        return qapi_run_command(qapi_find_command("block-export-add"), opts, keyval, NULL,
                                errp);
    default:
        g_assert_not_reached();
    }
}

/*
 * The implied keys are qemu-storage-daemon's; --nbd-server has none. As in
 * qemu-storage-daemon, a value starting with '{' is JSON, except for
 * --chardev, which is always key=value.
 */
static bool apply_option(const Option *o, bool *helped, GError **errp)
{
    const char *implied = NULL;

    switch (o->opt) {
    case OPT_CHARDEV:
        return monitor_chardev_add_str(o->arg, errp);
    case OPT_BLOCKDEV:
        implied = "driver";
        break;
    case OPT_OBJECT:
        if (o->arg[0] != '{') {
            return apply_object(o->arg, helped, errp);
        }
        break;
    case OPT_MONITOR:
        implied = "chardev";
        break;
    case OPT_EXPORT:
        implied = "type";
        break;
    case OPT_NBD_SERVER:
        break;
    default:
        return true; /* handled before start-up */
    }
    bool json = o->arg[0] == '{';
    g_autoptr(json_object) opts = json ? parse_json_option(o->arg, errp)
                                       : keyval_parse(o->arg, implied, errp);
    return opts && apply_parsed(o->opt, opts, !json, errp);
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
        /* Under socket activation: the passed socket instead. */
        { OPT_NBD_SERVER, "nbd-server", "" },
        { OPT_EXPORT, "export", "type=nbd,id=disk,node-name=disk,name=disk,writable=on" },
        { OPT_EXPORT, "export", "type=nbd,id=default,node-name=disk,name=,writable=on" },
        /* --- end of NBD part --- */
        { OPT_CHARDEV, "chardev", "socket,id=qmp0,path=berth-qmp.sock,server=on,wait=off" },
        { OPT_MONITOR, "monitor", "chardev=qmp0" },
    };
    GPtrArray *list = g_ptr_array_new();

    for (size_t i = 0; i < G_N_ELEMENTS(defaults); i++) {
        bool activation_only = defaults[i].opt == OPT_NBD_SERVER && !defaults[i].arg[0];
        if (defaults[i].opt == OPT_NBD_SERVER && activation_only != (activated_fds > 0)) {
            continue;
        }
        g_ptr_array_add(list, (gpointer) &defaults[i]);
    }
    fprintf(stderr, "berthd: no options given, serving the default: a 1 GiB memory disk "
                    "exported writable as 'disk' and as the default export on %s, "
                    "QMP on ./berth-qmp.sock\n",
            activated_fds > 0 ? "the socket passed by socket activation"
                              : "nbd://127.0.0.1:10809");
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
    int verbosity = 0;
    berth_log_init("berthd");
    berthd_raise_fd_limit();
    while ((c = getopt_long(argc, argv, ":hVvT:", long_options, &index)) != -1) {
        switch (c) {
        case 'v':
            berth_log_set_verbosity(++verbosity);
            break;
        case 'T': {
            g_autoptr(GError) err = NULL;
            if (!berth_log_add_trace(optarg, &err)) {
                fprintf(stderr, "berthd: --trace %s: %s\n", optarg, err->message);
                return 1;
            }
            break;
        }
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

    /* Before daemonizing changes our pid, which LISTEN_PID names. */
    {
        g_autoptr(GError) err = NULL;
        activated_fds = berth_socket_activation_take(&err);
        if (activated_fds < 0) {
            fprintf(stderr, "berthd: %s\n", err->message);
            return 1;
        }
    }
    /* Before any thread or socket exists. */
    if (daemonize) {
        int parent_status = berthd_daemonize();
        if (parent_status >= 0) {
            return parent_status;
        }
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
    monitor_set_daemonize(daemonize);
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
