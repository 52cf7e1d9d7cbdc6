/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Socket activation as systemd defines it (sd_listen_fds(3)): a service
 * manager that opened the listening sockets itself passes them from fd 3
 * on, and says so in LISTEN_PID (the process they are meant for) and
 * LISTEN_FDS (how many). berth-nbd and berthd's --nbd-server serve on such
 * a socket instead of binding one.
 *
 * Threads: call once at start-up, before any thread exists (it edits the
 * environment).
 */
#ifndef BERTH_IO_SOCKET_ACTIVATION_H
#define BERTH_IO_SOCKET_ACTIVATION_H

#include <glib.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* The first passed socket. */
#define BERTH_LISTEN_FDS_START 3

/*
 * How many sockets were passed to this process: 0 when it was not socket
 * activated (no LISTEN_PID, or another process's), else LISTEN_FDS; -1 with
 * errp set when the variables are malformed. The variables are removed
 * either way, so children do not inherit them, and the passed fds are made
 * close-on-exec.
 */
int berth_socket_activation_take(GError **errp);

G_END_DECLS

#endif
