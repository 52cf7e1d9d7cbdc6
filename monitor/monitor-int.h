/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals shared by monitor/: one QMP session on a connected socket
 * (session.c) and the chardevs whose listeners create them (chardev.c).
 * Threads: main context's thread only.
 */
#ifndef BERTH_MONITOR_MONITOR_INT_H
#define BERTH_MONITOR_MONITOR_INT_H

#include "berth/monitor/monitor.h"

typedef struct MonitorSession MonitorSession;

/* Runs once when a session ends, whatever the reason. */
typedef void (*MonitorSessionClosed)(MonitorSession *s, gpointer opaque);

/*
 * Start a session on a connected socket fd (owned from now on, made
 * non-blocking, closed when the session closes): the greeting is queued at
 * once. Returns a borrowed pointer; the session frees itself after closing.
 */
MonitorSession *monitor_session_new(int fd, bool pretty, MonitorSessionClosed closed,
                                    gpointer opaque);
/*
 * The same with input and output on two fds (stdin and stdout of a
 * --chardev stdio), both owned from now on; out_fd -1 is
 * monitor_session_new().
 */
MonitorSession *monitor_session_new_split(int in_fd, int out_fd, bool pretty,
                                          MonitorSessionClosed closed, gpointer opaque);
/* Close now; queued output is dropped. */
void monitor_session_close(MonitorSession *s);
/* Write queued output, blocking until `deadline` (g_get_monotonic_time()). */
void monitor_session_flush(MonitorSession *s, gint64 deadline);

/* Sessions of every chardev, for events and shutdown. */
void monitor_session_foreach(void (*fn)(MonitorSession *s, gpointer opaque), gpointer opaque);
guint monitor_session_total(void);

/* Installs the event emitter; called by monitor_init(). */
void monitor_session_init_events(void);

/* --- chardev-fd.c: chardevs on fds the process has already --- */

typedef struct ChardevStdio ChardevStdio;

/* Claim stdin/stdout for one chardev (once per process, never after
 * monitor_set_daemonize(true)); signal=false stops the terminal's
 * Ctrl-C/Ctrl-Z from becoming signals. */
ChardevStdio *chardev_stdio_open(bool signal, GError **errp);
/* New duplicates of fds 0 and 1 for a session, owned by the caller. */
bool chardev_stdio_fds(ChardevStdio *st, int *in_fd, int *out_fd, GError **errp);
/* Put fds 0 and 1 and the terminal back as they were; NULL is a no-op. */
void chardev_stdio_close(ChardevStdio *st);

/* fd=N: a number naming an open socket, with QEMU's error texts. */
int chardev_parse_fd(const char *str, GError **errp);
/* fd=N without server=on: a connected stream socket, made close-on-exec. */
int chardev_connected_fd(const char *id, const char *str, GError **errp);

/* Close every chardev (chardev.c), for monitor_cleanup(). */
void monitor_chardev_remove_all(void);

#endif
