/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The I/O thread of util/iothread.h. Work from other threads goes through a
 * mutex-protected FIFO that one GSource of the thread's context drains: a
 * producer appends and makes the source ready, the dispatch takes items one
 * at a time and runs each with the lock dropped. Stopping is an item of the
 * same FIFO, queued last under the lock that also refuses later work, so
 * everything accepted before berth_iothread_free() runs before the thread
 * leaves its loop.
 */
#include "util/iothread.h"
#include "util/tsan.h"

typedef struct {
    BerthIOThreadFunc fn;       /* NULL: the stop marker */
    gpointer opaque;
    GDestroyNotify notify;
    bool sync;                  /* a caller waits on `done` (the item is on its stack) */
    bool done;
} Work;

struct BerthIOThread {
    GMainContext *ctx;
    GThread *thread;

    GMutex lock;
    GCond cond;                 /* `started`, and sync items' `done` */
    GQueue work;                /* of Work * */
    bool started;
    bool stopping;              /* no more work accepted */
    GSource *work_source;

    bool quit;                  /* the thread only */
    BerthIOThreadPolling polling;   /* set before the thread starts */
    int64_t poll_ns;            /* the window; written by the thread only */
};

/* QEMU starts a growing window at 4 us too. */
#define POLL_FIRST_NS 4000

/*
 * After each wait (the polling window and the sleep that may follow, in ns)
 * move the window: within the window, it was right; longer than the
 * maximum, the thread idles and the window shrinks; shorter than the
 * maximum but past the window, a longer window would have caught it.
 */
static void polling_adjust(BerthIOThread *iot, int64_t waited_ns)
{
    const BerthIOThreadPolling *p = &iot->polling;
    int64_t ns = iot->poll_ns;

    if (waited_ns <= ns) {
        return;
    }
    if (waited_ns > p->max_ns) {
        ns = p->shrink ? ns / p->shrink : 0;
    } else if (ns < p->max_ns) {
        int64_t grow = p->grow ? p->grow : 2;
        ns = ns == 0 ? POLL_FIRST_NS : ns > p->max_ns / grow ? p->max_ns : ns * grow;
        ns = MIN(ns, p->max_ns);
    }
    __atomic_store_n(&iot->poll_ns, ns, __ATOMIC_RELAXED);
}

/* One turn of the loop: look without sleeping for the window, then sleep. */
static void iothread_wait(BerthIOThread *iot)
{
    if (iot->polling.max_ns <= 0) {
        g_main_context_iteration(iot->ctx, TRUE);
        return;
    }
    gint64 start = g_get_monotonic_time();
    if (iot->poll_ns > 0) {
        gint64 end = start + iot->poll_ns / 1000;
        do {
            if (g_main_context_iteration(iot->ctx, FALSE)) {
                polling_adjust(iot, (g_get_monotonic_time() - start) * 1000);
                return;
            }
        } while (!iot->quit && g_get_monotonic_time() < end);
    }
    g_main_context_iteration(iot->ctx, TRUE);
    polling_adjust(iot, (g_get_monotonic_time() - start) * 1000);
}

static void work_finish(BerthIOThread *iot, Work *w)
{
    if (w->sync) {
        berth_mutex_lock(&iot->lock);
        w->done = true;
        g_cond_broadcast(&iot->cond);
        berth_mutex_unlock(&iot->lock);
        return;
    }
    if (w->notify) {
        w->notify(w->opaque);
    }
    g_free(w);
}

static gboolean work_dispatch(GSource *source, GSourceFunc cb, gpointer data)
{
    BerthIOThread *iot = data;

    /* Unready before looking, so a producer that appends after the last
     * look makes the source ready again. */
    g_source_set_ready_time(source, -1);
    for (;;) {
        berth_mutex_lock(&iot->lock);
        Work *w = g_queue_pop_head(&iot->work);
        berth_mutex_unlock(&iot->lock);
        if (!w) {
            break;
        }
        if (!w->fn) {
            g_free(w);
            iot->quit = true;   /* nothing can follow the marker */
            break;
        }
        w->fn(w->opaque);
        work_finish(iot, w);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs work_funcs = {
    .dispatch = work_dispatch,
};

static gpointer iothread_run(gpointer opaque)
{
    BerthIOThread *iot = opaque;

    /* Held for the whole run, as g_main_loop_run() would. */
    g_main_context_acquire(iot->ctx);
    g_main_context_push_thread_default(iot->ctx);
    berth_mutex_lock(&iot->lock);
    iot->started = true;
    g_cond_broadcast(&iot->cond);
    berth_mutex_unlock(&iot->lock);

    while (!iot->quit) {
        iothread_wait(iot);
    }
    g_main_context_pop_thread_default(iot->ctx);
    g_main_context_release(iot->ctx);
    return NULL;
}

/* What berth_iothread_new() made, once no thread runs the context. */
static void iothread_release(BerthIOThread *iot)
{
    g_source_destroy(iot->work_source);
    g_source_unref(iot->work_source);
    g_main_context_unref(iot->ctx);
    g_cond_clear(&iot->cond);
    berth_mutex_clear(&iot->lock);
    g_free(iot);
}

BerthIOThread *berth_iothread_new(const char *name, GError **errp)
{
    return berth_iothread_new_polling(name, NULL, errp);
}

int64_t berth_iothread_get_poll_ns(BerthIOThread *iot)
{
    return __atomic_load_n(&iot->poll_ns, __ATOMIC_RELAXED);
}

BerthIOThread *berth_iothread_new_polling(const char *name, const BerthIOThreadPolling *polling,
                                          GError **errp)
{
    g_return_val_if_fail(name != NULL, NULL);
    g_return_val_if_fail(!polling || (polling->max_ns >= 0 && polling->grow >= 0 &&
                                      polling->shrink >= 0), NULL);

    BerthIOThread *iot = g_new0(BerthIOThread, 1);
    if (polling) {
        iot->polling = *polling;
    }
    g_mutex_init(&iot->lock);
    g_cond_init(&iot->cond);
    g_queue_init(&iot->work);
    iot->ctx = g_main_context_new();
    iot->work_source = g_source_new(&work_funcs, sizeof(GSource));
    g_source_set_callback(iot->work_source, NULL, iot, NULL);
    g_source_set_static_name(iot->work_source, "iothread-work");
    g_source_attach(iot->work_source, iot->ctx);

    iot->thread = g_thread_try_new(name, iothread_run, iot, errp);
    if (!iot->thread) {
        iothread_release(iot);
        return NULL;
    }
    berth_mutex_lock(&iot->lock);
    while (!iot->started) {
        berth_cond_wait(&iot->cond, &iot->lock);
    }
    berth_mutex_unlock(&iot->lock);
    return iot;
}

GMainContext *berth_iothread_get_context(BerthIOThread *iot)
{
    return iot->ctx;
}

bool berth_iothread_is_current(BerthIOThread *iot)
{
    return g_thread_self() == iot->thread;
}

/* Append unless stopping; `stop` appends the marker and starts stopping. */
static bool enqueue(BerthIOThread *iot, Work *w, bool stop)
{
    berth_mutex_lock(&iot->lock);
    bool accepted = !iot->stopping;
    if (accepted) {
        g_queue_push_tail(&iot->work, w);
        iot->stopping = stop;
    }
    berth_mutex_unlock(&iot->lock);
    if (accepted) {
        g_source_set_ready_time(iot->work_source, 0);
    }
    return accepted;
}

bool berth_iothread_invoke(BerthIOThread *iot, BerthIOThreadFunc fn, gpointer opaque,
                           GDestroyNotify notify)
{
    g_return_val_if_fail(iot != NULL && fn != NULL, false);

    Work *w = g_new0(Work, 1);
    w->fn = fn;
    w->opaque = opaque;
    w->notify = notify;
    if (!enqueue(iot, w, false)) {
        g_free(w);
        if (notify) {
            notify(opaque);
        }
        return false;
    }
    return true;
}

bool berth_iothread_run_sync(BerthIOThread *iot, BerthIOThreadFunc fn, gpointer opaque)
{
    g_return_val_if_fail(iot != NULL && fn != NULL, false);

    if (berth_iothread_is_current(iot)) {
        fn(opaque);
        return true;
    }
    Work w = { .fn = fn, .opaque = opaque, .sync = true };
    if (!enqueue(iot, &w, false)) {
        return false;
    }
    berth_mutex_lock(&iot->lock);
    while (!w.done) {
        berth_cond_wait(&iot->cond, &iot->lock);
    }
    berth_mutex_unlock(&iot->lock);
    return true;
}

void berth_iothread_free(BerthIOThread *iot)
{
    if (!iot) {
        return;
    }
    g_return_if_fail(!berth_iothread_is_current(iot));

    /* Only this function sets `stopping`, so the marker is always taken. */
    enqueue(iot, g_new0(Work, 1), true);
    g_thread_join(iot->thread);
    g_assert(g_queue_is_empty(&iot->work));
    iothread_release(iot);
}
