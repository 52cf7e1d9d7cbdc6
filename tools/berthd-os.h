/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The process-level chores that berthd and berth-nbd share and that have
 * nothing to do with block devices: turning into a daemon without losing
 * start-up errors, a locked pid file, and quitting the main loop on the
 * usual signals, the open-file limit. Kept apart from option handling so each stays short.
 * Messages name the program by g_get_prgname() ("berthd" when unset).
 * Threads: call before any thread exists (daemonize) or from the main
 * thread.
 */
#ifndef BERTHD_OS_H
#define BERTHD_OS_H

#include <glib.h>
#include <stdbool.h>

/*
 * Fork. The parent waits until the child calls berthd_daemon_ready() and
 * then returns 0, or, if the child exits first, returns its status, so
 * start-up errors (which the child still prints on the caller's stderr)
 * decide the exit status: the parent exits with what this returns, through
 * main() so that what it allocated is freed. Returns -1 in the child.
 */
int berthd_daemonize(void);

/* Tell the waiting parent that start-up succeeded, detach from the
 * terminal. No-op when not daemonized. */
void berthd_daemon_ready(void);

/* Create `path`, hold an exclusive lock on it and write our pid. */
bool berthd_pidfile_create(const char *path, GError **errp);
/* Remove the pid file made above, if any. */
void berthd_pidfile_remove(void);

/*
 * Ignore SIGPIPE (a peer that hangs up is an I/O error, not a reason to
 * die) and quit `loop` on SIGINT, SIGTERM and SIGHUP; the loop is borrowed
 * and must outlive the main context's sources.
 */
void berthd_quit_on_signals(GMainLoop *loop);

/*
 * Raise the soft limit on open files to the hard one, as QEMU does: every
 * NBD connection and monitor session is a descriptor, and the usual soft
 * limit of 1024 would cap a server long before its max-connections.
 * Silent when it cannot (the hard limit then still holds).
 */
void berthd_raise_fd_limit(void);

#endif
