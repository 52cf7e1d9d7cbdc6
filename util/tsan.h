/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ThreadSanitizer annotations for the hand-offs TSan cannot see.
 *
 * GLib is not built with TSan. Its GMutex and GCond are futexes and atomics
 * inside libglib, and GAsyncQueue, GThreadPool and g_main_context wake-ups
 * are built on them, so a request handed from one thread to another through
 * GLib arrives, as far as TSan can tell, with no synchronisation at all, and
 * every access to it looks like a race. (GRWLock is a pthread rwlock: TSan
 * intercepts it and needs no help.)
 *
 * The remedy is to tell TSan what GLib does, at berth's own hand-off points:
 * berth_mutex_lock() and friends wrap GMutex/GCond with TSan's mutex
 * annotations (which also feed its lock-order checks), and
 * berth_tsan_release(obj) before handing obj over through GLib, paired with
 * berth_tsan_acquire(obj) where the other thread receives it, say that
 * everything the sender did before the hand-off happens before everything
 * the receiver does after. Without TSan all of it compiles to the plain
 * GLib calls. docs/testing.rst explains the TSan build.
 *
 * Rule for berth's code: lock a GMutex through these wrappers, and annotate
 * any new cross-thread hand-off that goes through GLib.
 */
#ifndef BERTH_UTIL_TSAN_H
#define BERTH_UTIL_TSAN_H

#include <glib.h>

#if defined(__SANITIZE_THREAD__)
#define BERTH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BERTH_TSAN 1
#endif
#endif

#ifdef BERTH_TSAN
#include <sanitizer/tsan_interface.h>

/* In the TSan runtime of GCC and clang, not in their headers. */
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);

/*
 * Between these two, this thread's memory accesses (allocations included)
 * are not checked; its synchronisation still is. For a third-party call
 * that sets up memory its own threads then use behind its own locks, never
 * around berth's code.
 */
static inline void berth_tsan_ignore_begin(void)
{
    __tsan_ignore_thread_begin();
}

static inline void berth_tsan_ignore_end(void)
{
    __tsan_ignore_thread_end();
}

static inline void berth_tsan_release(const void *obj)
{
    __tsan_release((void *) obj);
}

static inline void berth_tsan_acquire(const void *obj)
{
    __tsan_acquire((void *) obj);
}

static inline void berth_mutex_lock(GMutex *m)
{
    __tsan_mutex_pre_lock(m, 0);
    g_mutex_lock(m);
    __tsan_mutex_post_lock(m, 0, 0);
}

/* __tsan_mutex_try_lock (0x10) and __tsan_mutex_try_lock_failed (0x20). */
static inline gboolean berth_mutex_trylock(GMutex *m)
{
    __tsan_mutex_pre_lock(m, 0x10);
    gboolean got = g_mutex_trylock(m);
    __tsan_mutex_post_lock(m, got ? 0x10 : 0x30, 0);
    return got;
}

static inline void berth_mutex_unlock(GMutex *m)
{
    __tsan_mutex_pre_unlock(m, 0);
    g_mutex_unlock(m);
    __tsan_mutex_post_unlock(m, 0);
}

static inline void berth_mutex_clear(GMutex *m)
{
    __tsan_mutex_destroy(m, 0);
    g_mutex_clear(m);
}

/* g_cond_wait() drops the mutex and takes it again before returning. */
static inline void berth_cond_wait(GCond *c, GMutex *m)
{
    __tsan_mutex_pre_unlock(m, 0);
    __tsan_mutex_post_unlock(m, 0);
    g_cond_wait(c, m);
    __tsan_mutex_pre_lock(m, 0);
    __tsan_mutex_post_lock(m, 0, 0);
}

static inline gboolean berth_cond_wait_until(GCond *c, GMutex *m, gint64 end_time)
{
    __tsan_mutex_pre_unlock(m, 0);
    __tsan_mutex_post_unlock(m, 0);
    gboolean signalled = g_cond_wait_until(c, m, end_time);
    __tsan_mutex_pre_lock(m, 0);
    __tsan_mutex_post_lock(m, 0, 0);
    return signalled;
}

#else

static inline void berth_tsan_ignore_begin(void)
{
}

static inline void berth_tsan_ignore_end(void)
{
}

static inline void berth_tsan_release(const void *obj)
{
    (void) obj;
}

static inline void berth_tsan_acquire(const void *obj)
{
    (void) obj;
}

static inline void berth_mutex_lock(GMutex *m)
{
    g_mutex_lock(m);
}

static inline gboolean berth_mutex_trylock(GMutex *m)
{
    return g_mutex_trylock(m);
}

static inline void berth_mutex_unlock(GMutex *m)
{
    g_mutex_unlock(m);
}

static inline void berth_mutex_clear(GMutex *m)
{
    g_mutex_clear(m);
}

static inline void berth_cond_wait(GCond *c, GMutex *m)
{
    g_cond_wait(c, m);
}

static inline gboolean berth_cond_wait_until(GCond *c, GMutex *m, gint64 end_time)
{
    return g_cond_wait_until(c, m, end_time);
}

#endif

#endif
