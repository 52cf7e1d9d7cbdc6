/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd: the parts of the one-shot export tool that live in files of
 * their own. berth-nbd-options.c parses qemu-nbd's command line into
 * BerthNbdOptions; berth-nbd.c serves the image; berth-nbd-list.c is -L
 * (list another server's exports); berth-nbd-kernel.c is -c/-d (the Linux
 * kernel's /dev/nbdX).
 *
 * Ownership: the options point into argv and live as long as the process.
 * Threads: everything here runs on the main thread, except the kernel
 * connection's own thread, which berth-nbd-kernel.c starts and joins.
 */
#ifndef BERTH_TOOLS_BERTH_NBD_H
#define BERTH_TOOLS_BERTH_NBD_H

#include "berth/nbd/server.h"

#include <json-c/json.h>

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define BERTH_NBD_PROG "berth-nbd"
/* The node that holds the image (with -s, the overlay). */
#define BERTH_NBD_NODE_NAME "berth-nbd-image"
/* With -s, the image under the overlay. */
#define BERTH_NBD_BASE_NODE_NAME "berth-nbd-base"

typedef struct BerthNbdOptions {
    /* where to listen, or (-L) where to connect */
    const char *sockpath;       /* -k */
    const char *bind;           /* -b; NULL: 0.0.0.0 */
    const char *port;           /* -p; NULL: 10809 */
    bool activated;             /* serve on the socket a service manager passed (fd 3) */
    /* the export */
    const char *filename;       /* the one argument (the device for -d) */
    const char *export_name;    /* -x; NULL: "" */
    const char *description;    /* -D */
    const char *format;         /* -f; NULL: probe (berth-nbd-format.c) */
    uint64_t offset;            /* -o */
    bool read_only;             /* -r */
    bool allocation_depth;      /* -A: serve qemu:allocation-depth */
    bool image_opts;            /* --image-opts: filename is keyval options */
    bool snapshot;              /* -s: writes go to a temporary qcow2 overlay */
    /* -l: an internal snapshot to read (implies -r); snapshot.id= and
     * snapshot.name= (allocated; either NULL), or an ID or name (argv) */
    char *snapshot_id, *snapshot_name;
    const char *snapshot_id_or_name;
    /* the file driver and the export's write mode (--cache, -n) */
    bool seen_cache, cache_direct, cache_no_flush, writethrough;
    const char *discard;        /* "ignore" or "unmap", or NULL */
    const char *aio;            /* threads, native or io_uring, or NULL */
    const char *detect_zeroes;  /* off, on or unmap, or NULL */
    /* the process */
    int shared;                 /* -e: max clients at once, 0 unlimited */
    int handshake_limit;        /* --handshake-limit: seconds, 0 none; -1 unset */
    bool persistent;            /* -t */
    bool fork;                  /* --fork */
    bool verbose;               /* -v */
    const char *pid_file;       /* --pid-file */
    /* TLS and objects */
    GPtrArray *objects;         /* --object arguments, in order (const char *) */
    const char *tls_creds;
    const char *tls_authz;
    const char *tls_hostname;
    /* modes */
    bool list;                  /* -L */
    const char *device;         /* -c */
    bool disconnect;            /* -d */
} BerthNbdOptions;

/*
 * Parse and cross-check the command line (-h and -V are answered here).
 * Returns the exit status when the process should end now, else -1.
 */
int berth_nbd_parse_options(int argc, char **argv, BerthNbdOptions *o);

/* "berth-nbd: <message>\n" on stderr. */
void berth_nbd_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/*
 * blockdev-add of the image as node BERTH_NBD_NODE_NAME: -f raw, a format
 * whose driver exists, or (no -f) what probing finds, with qemu-nbd's
 * warning for a probed raw image (berth-nbd-format.c).
 */
bool berth_nbd_open_image(const BerthNbdOptions *o, GError **errp);

/* A file node's options (typed JSON, new): filename, read-only, and
 * --cache and --aio as given. berth-nbd-format.c. */
json_object *berth_nbd_file_options(const BerthNbdOptions *o, const char *filename,
                                    bool read_only);

/*
 * -s (berth-nbd-snapshot.c): an empty qcow2 image in $TMPDIR (default
 * /var/tmp, as QEMU) as node `node_name` over the node `backing`, its file
 * deleted once open, so nothing is left behind at exit.
 */
bool berth_nbd_add_overlay(const BerthNbdOptions *o, const char *backing,
                           const char *node_name, GError **errp);

/* -l: load the internal snapshot on node BERTH_NBD_NODE_NAME, as qemu-nbd
 * does (an ID or name: the ID first). berth-nbd-snapshot.c. */
bool berth_nbd_load_snapshot(const BerthNbdOptions *o, GError **errp);

/* Create the --object objects (object-add); false after printing the error. */
bool berth_nbd_create_objects(const BerthNbdOptions *o);

/* -L: list the exports of the server at -k or -b/-p; the exit status. */
int berth_nbd_list(const BerthNbdOptions *o);

/* -d DEV: disconnect a kernel NBD device; the exit status. */
int berth_nbd_kernel_disconnect(const char *dev);

/*
 * -c DEV. berth_nbd_kernel_open() opens the device (before anything else,
 * so that a missing device is the first and only error); start() connects
 * it to `exp` through a socketpair and a thread of its own, then calls
 * `connected` on the main context once the kernel has the socket and
 * `finished` (with the exit status) when the kernel lets go. stop() asks
 * the kernel to let go, waits for the thread and frees everything.
 */
typedef struct BerthNbdKernel BerthNbdKernel;

BerthNbdKernel *berth_nbd_kernel_open(const char *dev, GError **errp);
void berth_nbd_kernel_start(BerthNbdKernel *k, NBDExport *exp, const char *export_name,
                            void (*connected)(void), void (*finished)(int status));
/* Returns the exit status of the connection (0 if it ended cleanly). */
int berth_nbd_kernel_stop(BerthNbdKernel *k);

#endif
