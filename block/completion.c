/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Completion delivery: one queue per GMainContext, so that a request's
 * callback runs on the thread that submitted it, after the submitting call
 * has returned. A queue is a GSource attached to its context, holding a
 * mutex-protected FIFO of finished requests and an eventfd. Worker threads
 * append and write the eventfd only when the FIFO was empty, so a burst of
 * completions costs one wake-up; the source then delivers the whole batch in
 * one dispatch. Requests finished inline on the context's own thread need no
 * wake-up at all: the source's prepare() sees the FIFO before the context
 * polls, and a submitter that wants their answers at once - in the dispatch
 * that submitted them, so that its replies leave together - takes them with
 * bdrv_dispatch_completions(). Queues are created on first use and found again through a global
 * table and a per-thread cache, so the hot path takes no global lock. When a
 * context dies, GLib destroys the source; we learn it through the callback's
 * destroy notify and drop whatever is still queued (nobody is left to call).
 */
#include "block/block-int.h"
#include "util/tsan.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct BdrvCompletionQueue {
    GSource source;
    GMutex lock;
    BdrvRequest *head;      /* pushed, not yet taken; atomic reads in prepare */
    BdrvRequest *tail;
    BdrvRequest *batch;     /* taken by a dispatch; touched by the owner only */
    GMainContext *ctx;      /* weak: valid while dead is false */
    int dead;               /* atomic */
    int efd;                /* -1: wake through g_main_context_wakeup() */
    gpointer fd_tag;
    GSource *local;         /* a driver's per-context source (a reference), or NULL */
};

static GMutex queues_lock;
static GHashTable *queues; /* GMainContext * -> queue (a reference) */

static void thread_cache_release(gpointer data)
{
    g_source_unref(data);
}

/* The last queue this thread used, with a reference. */
static GPrivate thread_queue = G_PRIVATE_INIT(thread_cache_release);

static bool queue_has_work(BdrvCompletionQueue *q)
{
    return g_atomic_pointer_get(&q->head) != NULL || q->batch != NULL;
}

static gboolean queue_prepare(GSource *source, gint *timeout)
{
    *timeout = -1;
    return queue_has_work((BdrvCompletionQueue *) source);
}

static gboolean queue_check(GSource *source)
{
    BdrvCompletionQueue *q = (BdrvCompletionQueue *) source;

    if (q->efd >= 0 && (g_source_query_unix_fd(source, q->fd_tag) & G_IO_IN)) {
        return TRUE;
    }
    return queue_has_work(q);
}

/* Take what was pushed and deliver it, with what a nested delivery left. */
static void queue_deliver(BdrvCompletionQueue *q)
{
    BdrvRequest *req, *last;

    berth_mutex_lock(&q->lock);
    req = q->head;
    q->head = q->tail = NULL;
    berth_mutex_unlock(&q->lock);

    /* Append to a batch a nested delivery may have left (can_recurse). */
    if (q->batch) {
        for (last = q->batch; last->next; last = last->next) {
        }
        last->next = req;
    } else {
        q->batch = req;
    }

    /* Requests pushed by these callbacks wait for the next round, so a
     * callback that keeps resubmitting cannot starve the context. */
    while ((req = q->batch) != NULL) {
        q->batch = req->next;
        req->next = NULL;
        bdrv_request_deliver(req);
    }
}

static gboolean queue_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    BdrvCompletionQueue *q = (BdrvCompletionQueue *) source;

    /* Drain the counter before taking the FIFO: a push that races with us
     * then either lands in this batch or writes the eventfd anew. When poll
     * did not see it written, there is nothing to drain (and a push racing
     * with us leaves it written for the next poll). */
    if (q->efd >= 0 && (g_source_query_unix_fd(source, q->fd_tag) & G_IO_IN)) {
        uint64_t count;
        while (read(q->efd, &count, sizeof(count)) < 0 && errno == EINTR) {
        }
    }
    queue_deliver(q);
    return G_SOURCE_CONTINUE;
}

static void queue_finalize(GSource *source)
{
    BdrvCompletionQueue *q = (BdrvCompletionQueue *) source;

    if (q->efd >= 0) {
        close(q->efd);
    }
    if (q->local) {
        g_source_unref(q->local);
    }
    berth_mutex_clear(&q->lock);
}

static GSourceFuncs queue_funcs = {
    .prepare = queue_prepare,
    .check = queue_check,
    .dispatch = queue_dispatch,
    .finalize = queue_finalize,
};

static gboolean queue_unused_callback(gpointer data)
{
    return G_SOURCE_CONTINUE;
}

/* Called by GLib when the context destroys the source (the context dies). */
static void queue_context_gone(gpointer data)
{
    BdrvCompletionQueue *q = data;
    BdrvRequest *list, *next;
    bool was_listed = false;

    berth_mutex_lock(&queues_lock);
    if (queues && g_hash_table_lookup(queues, q->ctx) == q) {
        g_hash_table_steal(queues, q->ctx);
        was_listed = true;
    }
    berth_mutex_unlock(&queues_lock);

    berth_mutex_lock(&q->lock);
    g_atomic_int_set(&q->dead, 1);
    list = q->head;
    q->head = q->tail = NULL;
    berth_mutex_unlock(&q->lock);

    for (; list; list = next) {
        next = list->next;
        bdrv_request_free(list);
    }
    for (list = q->batch, q->batch = NULL; list; list = next) {
        next = list->next;
        bdrv_request_free(list);
    }
    if (was_listed) {
        g_source_unref(&q->source);
    }
}

static BdrvCompletionQueue *queue_new(GMainContext *ctx)
{
    GSource *source = g_source_new(&queue_funcs, sizeof(BdrvCompletionQueue));
    BdrvCompletionQueue *q = (BdrvCompletionQueue *) source;

    g_mutex_init(&q->lock);
    q->ctx = ctx;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd >= 0) {
        q->fd_tag = g_source_add_unix_fd(source, q->efd, G_IO_IN);
    }
    g_source_set_name(source, "berth block completions");
    g_source_set_can_recurse(source, TRUE);
    g_source_set_callback(source, queue_unused_callback, q, queue_context_gone);
    g_source_attach(source, ctx);
    return q;
}

/* Returns a new reference to ctx's queue, creating it on first use. */
static BdrvCompletionQueue *queue_lookup(GMainContext *ctx)
{
    BdrvCompletionQueue *q;

    berth_mutex_lock(&queues_lock);
    if (!queues) {
        queues = g_hash_table_new(g_direct_hash, g_direct_equal);
    }
    q = g_hash_table_lookup(queues, ctx);
    if (!q || g_atomic_int_get(&q->dead)) {
        q = queue_new(ctx);
        /* The creation reference belongs to the table. */
        g_hash_table_insert(queues, ctx, q);
    }
    g_source_ref(&q->source);
    berth_mutex_unlock(&queues_lock);
    return q;
}

BdrvCompletionQueue *bdrv_completion_queue_get(void)
{
    GMainContext *ctx = g_main_context_get_thread_default();
    BdrvCompletionQueue *q;

    if (!ctx) {
        ctx = g_main_context_default();
    }
    q = g_private_get(&thread_queue);
    if (q && q->ctx == ctx && !g_atomic_int_get(&q->dead)) {
        g_source_ref(&q->source);
        return q;
    }
    q = queue_lookup(ctx);
    g_source_ref(&q->source);
    g_private_replace(&thread_queue, q);
    return q;
}

void bdrv_dispatch_completions(void)
{
    GMainContext *ctx = g_main_context_get_thread_default();
    BdrvCompletionQueue *q;

    if (!ctx) {
        ctx = g_main_context_default();
    }
    q = g_private_get(&thread_queue);
    if (!q || q->ctx != ctx || g_atomic_int_get(&q->dead) || !g_main_context_is_owner(ctx)) {
        return;     /* nothing submitted from here, or not the context's thread */
    }
    if (queue_has_work(q)) {
        queue_deliver(q);
    }
}

BdrvCompletionQueue *bdrv_completion_queue_ref(BdrvCompletionQueue *q)
{
    g_source_ref(&q->source);
    return q;
}

void bdrv_completion_queue_unref(BdrvCompletionQueue *q)
{
    g_source_unref(&q->source);
}

GMainContext *bdrv_completion_queue_context(BdrvCompletionQueue *q)
{
    return q->ctx;
}

GSource *bdrv_completion_queue_get_local(BdrvCompletionQueue *q)
{
    return g_atomic_int_get(&q->dead) ? NULL : q->local;
}

void bdrv_completion_queue_set_local(BdrvCompletionQueue *q, GSource *local)
{
    g_return_if_fail(!q->local);
    q->local = g_source_ref(local);
}

void bdrv_completion_queue_push(BdrvCompletionQueue *q, BdrvRequest *req)
{
    berth_mutex_lock(&q->lock);
    if (q->dead) {
        berth_mutex_unlock(&q->lock);
        bdrv_request_free(req);
        return;
    }
    req->next = NULL;
    if (q->tail) {
        /* Someone already woke the context (or it is about to look). */
        q->tail->next = req;
        q->tail = req;
        berth_mutex_unlock(&q->lock);
        return;
    }
    q->tail = req;
    g_atomic_pointer_set(&q->head, req);
    /*
     * The context's own thread will run prepare() before it polls again, so
     * only other threads need to wake it. This happens under the lock so
     * that neither the eventfd nor the context can go away meanwhile.
     */
    if (!g_main_context_is_owner(q->ctx)) {
        if (q->efd >= 0) {
            uint64_t one = 1;
            while (write(q->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
            }
        } else {
            g_main_context_wakeup(q->ctx);
        }
    }
    berth_mutex_unlock(&q->lock);
}
