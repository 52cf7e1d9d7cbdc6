/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An I/O thread: a named thread that runs a GMainContext of its own, pushed
 * as the thread-default context inside the thread, so that sources attached
 * to it (sockets, timers, completion queues) dispatch there and never on the
 * main loop. Other threads hand it work through a FIFO: asynchronously
 * (berth_iothread_invoke) or waiting for the result (berth_iothread_run_sync,
 * meant for setup and teardown). Used by `--object iothread` and by the nbd
 * block driver's connection.
 *
 * The thread owns its context for as long as it runs (it holds
 * g_main_context_acquire), so g_main_context_invoke() from another thread
 * always queues the call instead of running it in the caller.
 *
 * Ownership: the creator owns the BerthIOThread and ends it with
 * berth_iothread_free(). The context belongs to the thread; callers borrow
 * it (or take their own reference) and must have detached their sources, or
 * be content to have them destroyed with it, once the thread is freed.
 *
 * Threads: berth_iothread_invoke and berth_iothread_run_sync may be called
 * from any thread, including the I/O thread itself; berth_iothread_free from
 * any thread but the I/O thread.
 */
#ifndef BERTH_UTIL_IOTHREAD_H
#define BERTH_UTIL_IOTHREAD_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct BerthIOThread BerthIOThread;

typedef void (*BerthIOThreadFunc)(gpointer opaque);

/*
 * Start a thread called `name` (the OS shows its first 15 bytes) running a
 * new context. Returns once the thread owns the context, or NULL with errp
 * set when no thread can be made.
 */
BerthIOThread *berth_iothread_new(const char *name, GError **errp);

/*
 * Adaptive polling, as QEMU's iothread objects have it (poll-max-ns,
 * poll-grow, poll-shrink): before it sleeps in poll(), the thread keeps
 * looking for ready sources, without sleeping, for a window of up to
 * max_ns. An event that came within the window is served without the
 * sleep and the wake-up that would follow it - the latency of a request at
 * queue depth 1. The window starts at 0; after a sleep shorter than max_ns
 * (events come often) it grows (times `grow`, 0: twice; from 0 to 4 us),
 * after one longer than max_ns (the thread idles) it shrinks (divided by
 * `shrink`, 0: back to 0), so an idle thread does not spin. max_ns 0 turns
 * polling off. Values must be >= 0.
 */
typedef struct BerthIOThreadPolling {
    int64_t max_ns, grow, shrink;
} BerthIOThreadPolling;

/* berth_iothread_new() with polling (NULL: none, as berth_iothread_new). */
BerthIOThread *berth_iothread_new_polling(const char *name, const BerthIOThreadPolling *polling,
                                          GError **errp);

/* The polling window now, in ns (for tests and statistics; any thread). */
int64_t berth_iothread_get_poll_ns(BerthIOThread *iot);

/* The context the thread runs (borrowed; valid until berth_iothread_free). */
GMainContext *berth_iothread_get_context(BerthIOThread *iot);

/* True when called on the I/O thread itself. */
bool berth_iothread_is_current(BerthIOThread *iot);

/*
 * Queue fn(opaque) to run on the thread, after everything queued before it,
 * then notify(opaque) if notify is not NULL. Never runs fn inside this call,
 * even on the I/O thread. Once berth_iothread_free() has begun, work is
 * refused: fn does not run, notify(opaque) runs at once in the caller and
 * the result is false.
 */
bool berth_iothread_invoke(BerthIOThread *iot, BerthIOThreadFunc fn, gpointer opaque,
                           GDestroyNotify notify);

/*
 * Run fn(opaque) on the thread and wait until it has returned: directly when
 * called on the I/O thread, else queued behind earlier work. False (and fn
 * not run) once berth_iothread_free() has begun.
 */
bool berth_iothread_run_sync(BerthIOThread *iot, BerthIOThreadFunc fn, gpointer opaque);

/*
 * Stop the thread and free it: refuse new work, run everything already
 * queued, leave the loop, join the thread, then drop the thread's reference
 * to the context: sources still attached to it are never dispatched again,
 * and GLib destroys them when the last reference goes. NULL is ignored.
 */
void berth_iothread_free(BerthIOThread *iot);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BerthIOThread, berth_iothread_free)

G_END_DECLS

#endif
