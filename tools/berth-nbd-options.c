/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd's command line: qemu-nbd 7.2's options, parsed into
 * BerthNbdOptions and checked against each other (list mode against export
 * settings, TLS against -c, ...) before anything is opened. Each problem is
 * one line on stderr, the texts qemu-nbd prints where scripts may look for
 * them. Options berth-nbd does not have (bitmaps, SELinux labels) are
 * named as unsupported rather than silently ignored.
 */
#include "berth-log.h"
#include "berth-config.h"
#include "berth-nbd.h"

#include "berth/nbd/proto.h"
#include "util/json.h"
#include "util/keyval.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

enum {
    OPT_OBJECT = 256,
    OPT_TLS_CREDS,
    OPT_TLS_AUTHZ,
    OPT_TLS_HOSTNAME,
    OPT_CACHE,
    OPT_AIO,
    OPT_DISCARD,
    OPT_DETECT_ZEROES,
    OPT_FORK,
    OPT_PID_FILE,
    OPT_HANDSHAKE_LIMIT,
    OPT_IMAGE_OPTS,
    /* qemu-nbd options berth-nbd does not have */
    OPT_SELINUX_LABEL,
};

static const char short_options[] = ":hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L";

static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "bind", required_argument, NULL, 'b' },
    { "port", required_argument, NULL, 'p' },
    { "socket", required_argument, NULL, 'k' },
    { "offset", required_argument, NULL, 'o' },
    { "read-only", no_argument, NULL, 'r' },
    { "allocation-depth", no_argument, NULL, 'A' },
    { "bitmap", required_argument, NULL, 'B' },
    { "connect", required_argument, NULL, 'c' },
    { "disconnect", no_argument, NULL, 'd' },
    { "list", no_argument, NULL, 'L' },
    { "snapshot", no_argument, NULL, 's' },
    { "load-snapshot", required_argument, NULL, 'l' },
    { "nocache", no_argument, NULL, 'n' },
    { "cache", required_argument, NULL, OPT_CACHE },
    { "aio", required_argument, NULL, OPT_AIO },
    { "discard", required_argument, NULL, OPT_DISCARD },
    { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
    { "shared", required_argument, NULL, 'e' },
    { "format", required_argument, NULL, 'f' },
    { "persistent", no_argument, NULL, 't' },
    { "verbose", no_argument, NULL, 'v' },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "export-name", required_argument, NULL, 'x' },
    { "description", required_argument, NULL, 'D' },
    { "tls-creds", required_argument, NULL, OPT_TLS_CREDS },
    { "tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME },
    { "tls-authz", required_argument, NULL, OPT_TLS_AUTHZ },
    { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
    { "trace", required_argument, NULL, 'T' },
    { "fork", no_argument, NULL, OPT_FORK },
    { "pid-file", required_argument, NULL, OPT_PID_FILE },
    { "handshake-limit", required_argument, NULL, OPT_HANDSHAKE_LIMIT },
    { "selinux-label", required_argument, NULL, OPT_SELINUX_LABEL },
    { NULL, 0, NULL, 0 },
};

static void usage(void)
{
    printf(
"Usage: berth-nbd [OPTIONS] FILE\n"
"   or: berth-nbd -L [OPTIONS]\n"
"   or: berth-nbd -d DEVICE\n"
"Export a disk image over NBD, with qemu-nbd's options.\n"
"\n"
"  -h, --help                show this help and exit\n"
"  -V, --version             show the version and exit\n"
"\n"
"Where to listen (or, with -L, where to connect):\n"
"  -k, --socket=PATH         a unix socket at PATH\n"
"  -b, --bind=ADDRESS        a TCP address (default 0.0.0.0)\n"
"  -p, --port=PORT           a TCP port (default %d)\n"
"\n"
"The export:\n"
"  -x, --export-name=NAME    its name (default: the empty name)\n"
"  -D, --description=TEXT    a description for clients to show\n"
"  -r, --read-only           refuse writes\n"
"  -A, --allocation-depth    serve the qemu:allocation-depth context\n"
"  -o, --offset=OFFSET       start the export OFFSET bytes into FILE\n"
"  -f, --format=FORMAT       raw, or an image format berth has a driver for;\n"
"                            without -f the format is probed, as by qemu-nbd\n"
"      --image-opts          FILE is a list of block options, as for\n"
"                            blockdev-add (driver=qcow2,file.filename=X)\n"
"  -s, --snapshot            write to a temporary qcow2 overlay over FILE,\n"
"                            dropped at exit: FILE is never written\n"
"  -l, --load-snapshot=SNAPSHOT_PARAM\n"
"                            export an internal snapshot of a qcow2 FILE,\n"
"                            read-only; 'snapshot.id=[ID],snapshot.name=[NAME]'\n"
"                            or '[ID_OR_NAME]'\n"
"      --cache=MODE          none, writeback (default), writethrough,\n"
"                            directsync or unsafe\n"
"  -n, --nocache             the same as --cache=none\n"
"      --aio=MODE            threads (default), native or io_uring\n"
"      --discard=MODE        ignore (default) or unmap client trims\n"
"      --detect-zeroes=MODE  off (default), on or unmap\n"
"\n"
"The server:\n"
"  -e, --shared=NUM          serve up to NUM clients at once (default 1,\n"
"                            0 for no limit)\n"
"  -t, --persistent          keep running after the last client leaves\n"
"      --handshake-limit=N   drop a client that has not finished its\n"
"                            handshake after N seconds (default 10,\n"
"                            0 for no limit)\n"
"      --fork                run in the background once listening\n"
"      --pid-file=PATH       write the server's process id to PATH\n"
"      --object TYPE,id=ID,...\n"
"                            create tls-creds-x509, tls-creds-psk, secret,\n"
"                            authz-simple, authz-list or authz-listfile objects\n"
"      --tls-creds=ID        require TLS with credentials object ID\n"
"                            (endpoint=client with -L)\n"
"      --tls-authz=ID        admit only identities that authz object ID allows\n"
"      --tls-hostname=NAME   with -L: the name the server certificate must show\n"
"  -v, --verbose             log clients connecting and leaving; with -c: stay in\n"
"                            the foreground and say so\n"
"  -T, --trace [enable=]PATTERN[,file=FILE]\n"
"                            info and debug lines of the log domains matching\n"
"                            PATTERN (berth-nbd-server, or nbd-*, block, ...)\n"
"\n"
"Other modes:\n"
"  -L, --list                list the exports of the server at -k or -b/-p\n"
"  -c, --connect=DEVICE      serve FILE through the kernel's NBD device DEVICE\n"
"  -d, --disconnect          disconnect DEVICE (the argument)\n",
           NBD_DEFAULT_PORT);
}

static void version(void)
{
    printf("berth-nbd version " BERTH_VERSION "\n"
           "Command line compatible with qemu-nbd 7.2\n");
}

/* --- parsing --- */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!*s || *s == '-' || g_ascii_isspace(*s)) {
        return false;
    }
    errno = 0;
    *out = g_ascii_strtoull(s, &end, 0);
    return errno == 0 && *end == '\0';
}

/* QEMU's cache modes as the file driver's options and the export's
 * write mode. */
static bool parse_cache(const char *mode, BerthNbdOptions *o)
{
    static const struct {
        const char *name;
        bool direct, no_flush, writethrough;
    } modes[] = {
        { "none", true, false, false },
        { "off", true, false, false },
        { "writeback", false, false, false },
        { "writethrough", false, false, true },
        { "directsync", true, false, true },
        { "unsafe", false, true, false },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        if (strcmp(mode, modes[i].name) == 0) {
            o->cache_direct = modes[i].direct;
            o->cache_no_flush = modes[i].no_flush;
            o->writethrough = modes[i].writethrough;
            return true;
        }
    }
    return false;
}

static const char *one_of(const char *value, const char *const *allowed)
{
    for (; *allowed; allowed++) {
        if (strcmp(value, *allowed) == 0) {
            return *allowed;
        }
    }
    return NULL;
}

static const char *unsupported_option(int c)
{
    switch (c) {
    case 'B': return "-B/--bitmap";
    case OPT_SELINUX_LABEL: return "--selinux-label";
    default: return NULL;
    }
}

/* -l snapshot.id=ID,snapshot.name=NAME, or -l ID_OR_NAME. */
static bool parse_load_snapshot(const char *arg, BerthNbdOptions *o)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) opts = NULL;
    json_object *sn;

    g_clear_pointer(&o->snapshot_id, g_free);
    g_clear_pointer(&o->snapshot_name, g_free);
    o->snapshot_id_or_name = NULL;
    if (!g_str_has_prefix(arg, "snapshot.")) {
        o->snapshot_id_or_name = arg;
        return true;
    }
    opts = keyval_parse(arg, NULL, &err);
    if (opts && json_object_object_get_ex(opts, "snapshot", &sn) &&
        json_object_is_type(sn, json_type_object) && json_object_object_length(opts) == 1) {
        json_object_object_foreach(sn, key, value) {
            char **dst = strcmp(key, "id") == 0 ? &o->snapshot_id
                         : strcmp(key, "name") == 0 ? &o->snapshot_name : NULL;
            if (!dst || !json_object_is_type(value, json_type_string)) {
                berth_nbd_error("Invalid parameter 'snapshot.%s'", key);
                goto bad;
            }
            *dst = g_strdup(json_object_get_string(value));
        }
        if (o->snapshot_id || o->snapshot_name) {
            return true;
        }
    }
    berth_nbd_error("%s", err ? err->message : "snapshot.id or snapshot.name is needed");
bad:
    berth_nbd_error("Failed in parsing snapshot param `%s'", arg);
    return false;
}

/* One option; false after printing why it is wrong. */
static bool take_option(int c, const char *arg, BerthNbdOptions *o)
{
    static const char *const aio_modes[] = { "threads", "native", "io_uring", NULL };
    static const char *const zero_modes[] = { "off", "on", "unmap", NULL };

    switch (c) {
    case 'b': o->bind = arg; break;
    case 'p': o->port = arg; break;
    case 'k': o->sockpath = arg; break;
    case 'r': o->read_only = true; break;
    case 'A': o->allocation_depth = true; break;
    case 'L': o->list = true; break;
    case 'c': o->device = arg; break;
    case 'd': o->disconnect = true; break;
    case 't': o->persistent = true; break;
    case 'v':
        o->verbose = true;
        berth_log_set_verbosity(1);
        break;
    case 'T': {
        g_autoptr(GError) err = NULL;
        if (!berth_log_add_trace(arg, &err)) {
            berth_nbd_error("--trace %s: %s", arg, err->message);
            return false;
        }
        break;
    }
    case 'f': o->format = arg; break;
    case 's': o->snapshot = true; break;
    case OPT_IMAGE_OPTS: o->image_opts = true; break;
    case 'l':
        if (!parse_load_snapshot(arg, o)) {
            return false;
        }
        o->read_only = true;    /* qemu-nbd: -l implies -r */
        break;
    case OPT_FORK: o->fork = true; break;
    case OPT_PID_FILE: o->pid_file = arg; break;
    case OPT_OBJECT: g_ptr_array_add(o->objects, (gpointer) arg); break;
    case OPT_TLS_CREDS: o->tls_creds = arg; break;
    case OPT_TLS_AUTHZ: o->tls_authz = arg; break;
    case OPT_TLS_HOSTNAME: o->tls_hostname = arg; break;
    case 'o':
        if (!parse_u64(arg, &o->offset)) {
            berth_nbd_error("Invalid offset '%s'", arg);
            return false;
        }
        break;
    case 'e': {
        uint64_t n;
        if (!parse_u64(arg, &n) || n > G_MAXINT) {
            berth_nbd_error("Invalid shared device number '%s'", arg);
            return false;
        }
        o->shared = (int) n;
        break;
    }
    case OPT_HANDSHAKE_LIMIT: {
        uint64_t n;
        if (!parse_u64(arg, &n) || n > G_MAXINT) {
            berth_nbd_error("Invalid handshake limit '%s'", arg);
            return false;
        }
        o->handshake_limit = (int) n;
        break;
    }
    case 'x':
    case 'D':
        if (strlen(arg) > NBD_MAX_STRING) {
            berth_nbd_error("export %s '%s' too long", c == 'x' ? "name" : "description",
                            arg);
            return false;
        }
        *(c == 'x' ? &o->export_name : &o->description) = arg;
        break;
    case 'n':
        arg = "none";
        /* fall through */
    case OPT_CACHE:
        if (o->seen_cache) {
            berth_nbd_error("-n and --cache can only be specified once");
            return false;
        }
        o->seen_cache = true;
        if (!parse_cache(arg, o)) {
            berth_nbd_error("Invalid cache mode '%s'", arg);
            return false;
        }
        break;
    case OPT_AIO:
        if (o->aio) {
            berth_nbd_error("--aio can only be specified once");
            return false;
        }
        if (!(o->aio = one_of(arg, aio_modes))) {
            berth_nbd_error("Invalid aio mode '%s'", arg);
            return false;
        }
        break;
    case OPT_DISCARD:
        if (o->discard) {
            berth_nbd_error("--discard can only be specified once");
            return false;
        }
        if (strcmp(arg, "ignore") == 0 || strcmp(arg, "off") == 0) {
            o->discard = "ignore";
        } else if (strcmp(arg, "unmap") == 0 || strcmp(arg, "on") == 0) {
            o->discard = "unmap";
        } else {
            berth_nbd_error("Invalid discard mode '%s'", arg);
            return false;
        }
        break;
    case OPT_DETECT_ZEROES:
        if (!(o->detect_zeroes = one_of(arg, zero_modes))) {
            berth_nbd_error("Invalid detect-zeroes mode '%s'", arg);
            return false;
        }
        break;
    default:
        berth_nbd_error("option %s is not supported", unsupported_option(c));
        return false;
    }
    return true;
}

int berth_nbd_parse_options(int argc, char **argv, BerthNbdOptions *o)
{
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 0;
        case 'V':
            version();
            return 0;
        case ':':
            berth_nbd_error("option '%s' requires an argument", argv[optind - 1]);
            goto try_help;
        case '?':
            if (optopt) {
                berth_nbd_error("invalid option -- '%c'", optopt);
            } else {
                berth_nbd_error("unrecognized option '%s'", argv[optind - 1]);
            }
            goto try_help;
        default:
            if (!take_option(c, optarg, o)) {
                return 1;
            }
            break;
        }
    }
    if (optind < argc) {
        o->filename = argv[optind];
    }
    if (o->list) {
        if (argc - optind != 0) {
            berth_nbd_error("List mode is incompatible with a file name");
            return 1;
        }
        if (o->export_name || o->description || o->offset || o->device || o->disconnect ||
            o->format || o->seen_cache || o->aio || o->discard || o->detect_zeroes) {
            berth_nbd_error("List mode is incompatible with per-device settings");
            return 1;
        }
        if (o->fork) {
            berth_nbd_error("List mode is incompatible with forking");
            return 1;
        }
    } else if (argc - optind != 1) {
        berth_nbd_error("Invalid number of arguments");
        goto try_help;
    }
    if (o->image_opts && o->format) {
        berth_nbd_error("--image-opts and -f are mutually exclusive");
        return 1;
    }
    if (o->tls_creds) {
        if (o->device) {
            berth_nbd_error("TLS is not supported with a host device");
            return 1;
        }
        if (o->tls_authz && o->list) {
            berth_nbd_error("TLS authorization is incompatible with export list");
            return 1;
        }
        if (o->tls_hostname && !o->list) {
            berth_nbd_error("TLS hostname is only supported with export list");
            return 1;
        }
    } else if (o->tls_authz || o->tls_hostname) {
        berth_nbd_error("--%s is not permitted without --tls-creds",
                        o->tls_authz ? "tls-authz" : "tls-hostname");
        return 1;
    }
    if (o->detect_zeroes && strcmp(o->detect_zeroes, "unmap") == 0 &&
        g_strcmp0(o->discard, "unmap") != 0) {
        berth_nbd_error("setting detect-zeroes to unmap is not allowed without setting "
                        "discard operation to unmap");
        return 1;
    }
    return -1;

try_help:
    fprintf(stderr, "Try '%s --help' for more information.\n", BERTH_NBD_PROG);
    return 1;
}
