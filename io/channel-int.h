/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Inside a channel: the operations table and the base struct that every
 * implementation (io/channel.c's sockets, io/tls.c's sessions) embeds
 * first. Only io/ includes this; everyone else holds an opaque
 * BerthChannel and goes through include/berth/io/channel.h.
 */
#ifndef BERTH_IO_CHANNEL_INT_H
#define BERTH_IO_CHANNEL_INT_H

#include "berth/io/channel.h"

G_BEGIN_DECLS

typedef struct BerthChannelOps {
    ssize_t (*readv)(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp);
    ssize_t (*writev)(BerthChannel *ch, const struct iovec *iov, int niov, GError **errp);
    /* Bytes already buffered above the fd (TLS records); 0 for sockets. */
    size_t (*pending)(BerthChannel *ch);
    /* Which fd condition the last AGAIN was waiting for (TLS may need to
     * read in order to write); sockets answer the obvious one. */
    GIOCondition (*wants)(BerthChannel *ch, GIOCondition for_op);
    void (*shutdown)(BerthChannel *ch);
    void (*finalize)(BerthChannel *ch);
} BerthChannelOps;

/* Base of every channel; implementations embed it first. */
struct BerthChannel {
    const BerthChannelOps *ops;
    gint refcount;
    int fd;                 /* the connected socket, owned */
    char *peer;             /* "unix:" or "127.0.0.1:5555", for logs and QMP */
    char *local;            /* the listening address it came in on, may be NULL */
};

G_END_DECLS

#endif
