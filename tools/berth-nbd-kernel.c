/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd -c/-d: the Linux kernel's NBD device (nbd/kernel.h). For -c
 * the export is served over one end of a socketpair, as an ordinary
 * NBDConn of the in-process server, and the other end is handed to the
 * kernel. The kernel's NBD driver speaks only simple replies, so the
 * handshake on the kernel's end is the oldest one a fixed-newstyle server
 * takes (NBD_OPT_EXPORT_NAME, nothing else), written here with the codec;
 * it runs in the connection's own thread, as does NBD_DO_IT, which blocks
 * until the device is disconnected, while the main context serves.
 */
#include "berth-nbd.h"

#include "berth/nbd/client.h"
#include "berth/io/channel.h"
#include "berth/nbd/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


struct BerthNbdKernel {
    char *dev;
    int fd;                     /* the device, owned */
    NBDConn *client;          /* the server's end, one reference */
    BerthChannel *ch;           /* the kernel's end */
    char *export_name;
    GThread *thread;
    GThread *scan_thread;       /* re-reads the partition table */
    void (*connected)(void);
    void (*finished)(int status);
};

int berth_nbd_kernel_disconnect(const char *dev)
{
    g_autoptr(GError) err = NULL;
    int fd = nbd_kernel_open(dev, &err);

    if (fd < 0) {
        berth_nbd_error("%s", err->message);
        return 1;
    }
    bool ok = nbd_kernel_disconnect(fd, &err);
    nbd_kernel_close(fd);
    if (!ok) {
        berth_nbd_error("Cannot disconnect %s: %s", dev, err->message);
        return 1;
    }
    printf("%s disconnected\n", dev);
    return 0;
}

BerthNbdKernel *berth_nbd_kernel_open(const char *dev, GError **errp)
{
    int fd = nbd_kernel_open(dev, errp);

    if (fd < 0) {
        return NULL;
    }
    BerthNbdKernel *k = g_new0(BerthNbdKernel, 1);
    k->dev = g_strdup(dev);
    k->fd = fd;
    return k;
}

/* Opening the device once the kernel serves it makes it read the
 * partition table (nbd0p1, ...). */
static gpointer scan_partitions(gpointer opaque)
{
    BerthNbdKernel *k = opaque;
    int fd = open(k->dev, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static gboolean report_connected(gpointer opaque)
{
    BerthNbdKernel *k = opaque;

    k->connected();
    return G_SOURCE_REMOVE;
}

static gboolean report_finished(gpointer opaque)
{
    BerthNbdKernel *k = opaque;

    k->finished(GPOINTER_TO_INT(g_thread_join(g_steal_pointer(&k->thread))));
    return G_SOURCE_REMOVE;
}

static gpointer kernel_thread(gpointer opaque)
{
    BerthNbdKernel *k = opaque;
    g_autoptr(GError) err = NULL;
    NBDExportInfo info;
    BerthChannel *ch = NULL;
    int status = 1;

    /* Simple replies only: that is all the kernel understands. */
    if (!nbd_receive_negotiate_limited(k->ch, k->export_name, NULL, NULL,
                                       NBD_NEGOTIATE_SIMPLE, &info, &ch, &err)) {
        berth_nbd_error("Cannot negotiate with the export: %s", err->message);
        goto out;
    }
    berth_channel_unref(ch);    /* no TLS: it is k->ch itself */
    uint64_t size = info.size;
    uint16_t flags = info.flags;
    nbd_export_info_clear(&info);
    /* The kernel does blocking I/O on the socket. */
    int sock = berth_channel_fd(k->ch);
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0) {
        fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
    }
    if (!nbd_kernel_configure(k->fd, sock, size, 0, flags, &err)) {
        berth_nbd_error("%s: %s", k->dev, err->message);
        goto out;
    }
    g_idle_add(report_connected, k);
    k->scan_thread = g_thread_new("nbd-scan", scan_partitions, k);
    if (!nbd_kernel_serve(k->fd, &err)) {
        berth_nbd_error("%s: %s", k->dev, err->message);
        goto out;
    }
    status = 0;
out:
    g_idle_add(report_finished, k);
    return GINT_TO_POINTER(status);
}

void berth_nbd_kernel_start(BerthNbdKernel *k, NBDExport *exp, const char *export_name,
                            void (*connected)(void), void (*finished)(int status))
{
    int sv[2];

    k->connected = connected;
    k->finished = finished;
    k->export_name = g_strdup(export_name);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        berth_nbd_error("socketpair: %s", g_strerror(errno));
        g_idle_add(report_finished, k);
        return;
    }
    BerthChannel *server_end = berth_channel_socket_new(sv[0]);
    k->client = nbd_conn_new(exp, server_end, NULL, NULL, NULL);
    berth_channel_unref(server_end);
    k->ch = berth_channel_socket_new(sv[1]);
    k->thread = g_thread_new("nbd-kernel", kernel_thread, k);
}

int berth_nbd_kernel_stop(BerthNbdKernel *k)
{
    int status = 0;

    if (k->thread) {
        /* Ask the kernel to let go, and take the socket from under it in
         * case it does not listen (the main loop no longer serves it). */
        g_autoptr(GError) err = NULL;
        nbd_kernel_disconnect(k->fd, &err);
        if (k->client) {
            nbd_conn_close(k->client);
        }
        status = GPOINTER_TO_INT(g_thread_join(g_steal_pointer(&k->thread)));
    }
    if (k->scan_thread) {
        g_thread_join(k->scan_thread);
    }
    /* A report_* idle may still name k: drop it before freeing. */
    while (g_source_remove_by_user_data(k)) {
    }
    if (k->client) {
        nbd_conn_close(k->client);
        nbd_conn_put(k->client);
    }
    if (k->ch) {
        berth_channel_unref(k->ch);
    }
    nbd_kernel_close(k->fd);
    g_free(k->export_name);
    g_free(k->dev);
    g_free(k);
    return status;
}
