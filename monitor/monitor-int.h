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
/* Close now; queued output is dropped. */
void monitor_session_close(MonitorSession *s);
/* Write queued output, blocking until `deadline` (g_get_monotonic_time()). */
void monitor_session_flush(MonitorSession *s, gint64 deadline);

/* Sessions of every chardev, for events and shutdown. */
void monitor_session_foreach(void (*fn)(MonitorSession *s, gpointer opaque), gpointer opaque);
guint monitor_session_total(void);

/* Installs the event emitter; called by monitor_init(). */
void monitor_session_init_events(void);

/* Close every chardev (chardev.c), for monitor_cleanup(). */
void monitor_chardev_remove_all(void);

#endif
