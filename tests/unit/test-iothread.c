/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of util/iothread.c: the thread is named and runs its context as
 * its thread-default; work runs on it in FIFO order, never inline in an
 * asynchronous call; the synchronous call waits (and runs directly on the
 * thread itself); g_main_context_invoke() from outside is queued, not run by
 * the caller; sources of the context dispatch on the thread; stopping runs
 * everything accepted first and refuses what comes later; adaptive polling
 * opens its window under load and closes it when idle.
 */
#include "util/iothread.h"
#include "util/tsan.h"

#include <pthread.h>

typedef struct {
    BerthIOThread *iot;
    char name[16];
    bool is_default, is_owner, is_current;
    GThread *thread;
} Probe;

static void probe(gpointer opaque)
{
    Probe *p = opaque;
    pthread_getname_np(pthread_self(), p->name, sizeof(p->name));
    GMainContext *ctx = berth_iothread_get_context(p->iot);
    p->is_default = g_main_context_get_thread_default() == ctx;
    p->is_owner = g_main_context_is_owner(ctx);
    p->is_current = berth_iothread_is_current(p->iot);
    p->thread = g_thread_self();
}

static void test_start(void)
{
    g_autoptr(GError) err = NULL;
    Probe p = { 0 };
    p.iot = berth_iothread_new("iot-test", &err);
    g_assert_no_error(err);
    g_assert_nonnull(p.iot);
    g_assert_nonnull(berth_iothread_get_context(p.iot));
    g_assert_false(berth_iothread_is_current(p.iot));

    g_assert_true(berth_iothread_run_sync(p.iot, probe, &p));
    g_assert_cmpstr(p.name, ==, "iot-test");
    g_assert_true(p.is_default);
    g_assert_true(p.is_owner);
    g_assert_true(p.is_current);
    g_assert_true(p.thread != g_thread_self());
    berth_iothread_free(p.iot);
    berth_iothread_free(NULL);
}

typedef struct {
    BerthIOThread *iot;
    GArray *seen;               /* touched on the thread only */
    gint notified;              /* atomic */
    gint ran;                   /* atomic */
} Order;

typedef struct {
    Order *order;
    guint n;
} Item;

static void record(gpointer opaque)
{
    Item *it = opaque;
    g_array_append_val(it->order->seen, it->n);
    g_atomic_int_inc(&it->order->ran);
}

static void item_free(gpointer opaque)
{
    Item *it = opaque;
    g_atomic_int_inc(&it->order->notified);
    g_free(it);
}

static void queue_item(Order *o, guint n)
{
    Item *it = g_new0(Item, 1);
    it->order = o;
    it->n = n;
    g_assert_true(berth_iothread_invoke(o->iot, record, it, item_free));
}

static void check_order(gpointer opaque)
{
    Order *o = opaque;
    g_assert_cmpuint(o->seen->len, ==, 1000);
    for (guint i = 0; i < o->seen->len; i++) {
        g_assert_cmpuint(g_array_index(o->seen, guint, i), ==, i);
    }
}

static void test_fifo(void)
{
    Order o = { .seen = g_array_new(FALSE, FALSE, sizeof(guint)) };
    o.iot = berth_iothread_new("iot-fifo", NULL);
    for (guint i = 0; i < 1000; i++) {
        queue_item(&o, i);
    }
    /* Behind all of them, so it sees every one. */
    g_assert_true(berth_iothread_run_sync(o.iot, check_order, &o));
    g_assert_cmpint(g_atomic_int_get(&o.notified), ==, 1000);
    berth_iothread_free(o.iot);
    g_array_unref(o.seen);
}

typedef struct {
    BerthIOThread *iot;
    bool inner_ran;
    bool inner_ran_inline;
    bool async_ran_inline;
    bool async_ran;
} Nested;

static void set_inner(gpointer opaque)
{
    ((Nested *) opaque)->inner_ran = true;
}

static void set_async(gpointer opaque)
{
    ((Nested *) opaque)->async_ran = true;
}

static void outer(gpointer opaque)
{
    Nested *n = opaque;
    g_assert_true(berth_iothread_run_sync(n->iot, set_inner, n));
    n->inner_ran_inline = n->inner_ran;
    g_assert_true(berth_iothread_invoke(n->iot, set_async, n, NULL));
    n->async_ran_inline = n->async_ran;
}

static void nothing(gpointer opaque)
{
}

static void test_on_thread(void)
{
    Nested n = { 0 };
    n.iot = berth_iothread_new("iot-nested", NULL);
    g_assert_true(berth_iothread_run_sync(n.iot, outer, &n));
    g_assert_true(n.inner_ran_inline);
    g_assert_false(n.async_ran_inline);
    /* The asynchronous one was queued before this barrier. */
    g_assert_true(berth_iothread_run_sync(n.iot, nothing, NULL));
    g_assert_true(n.async_ran);
    berth_iothread_free(n.iot);
}

typedef struct {
    GMutex lock;
    GCond cond;
    GThread *ran_on;
    bool fired;
} Seen;

static gboolean note_thread(gpointer opaque)
{
    Seen *s = opaque;
    berth_mutex_lock(&s->lock);
    s->ran_on = g_thread_self();
    s->fired = true;
    g_cond_signal(&s->cond);
    berth_mutex_unlock(&s->lock);
    return G_SOURCE_REMOVE;
}

static GThread *wait_seen(Seen *s)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    berth_mutex_lock(&s->lock);
    while (!s->fired) {
        g_assert_true(berth_cond_wait_until(&s->cond, &s->lock, deadline));
    }
    s->fired = false;
    berth_mutex_unlock(&s->lock);
    return s->ran_on;
}

static void test_context(void)
{
    Probe p = { 0 };
    Seen s = { 0 };
    p.iot = berth_iothread_new("iot-context", NULL);
    berth_iothread_run_sync(p.iot, probe, &p);
    GMainContext *ctx = berth_iothread_get_context(p.iot);

    /* The thread owns its context, so this cannot run in the caller. */
    g_main_context_invoke(ctx, note_thread, &s);
    g_assert_true(wait_seen(&s) == p.thread);

    GSource *timer = g_timeout_source_new(1);
    g_source_set_callback(timer, note_thread, &s, NULL);
    g_source_attach(timer, ctx);
    g_source_unref(timer);
    g_assert_true(wait_seen(&s) == p.thread);
    berth_iothread_free(p.iot);
}

static void test_stop_drains(void)
{
    Order o = { .seen = g_array_new(FALSE, FALSE, sizeof(guint)) };
    o.iot = berth_iothread_new("iot-drain", NULL);
    for (guint i = 0; i < 500; i++) {
        queue_item(&o, i);
    }
    berth_iothread_free(o.iot);
    g_assert_cmpint(o.ran, ==, 500);
    g_assert_cmpint(o.notified, ==, 500);
    for (guint i = 0; i < o.seen->len; i++) {
        g_assert_cmpuint(g_array_index(o.seen, guint, i), ==, i);
    }
    g_array_unref(o.seen);
}

typedef struct {
    Order order;
    guint accepted;
    bool saw_refusal;
} Late;

static void refused_sync(gpointer opaque)
{
    g_assert_not_reached();
}

/*
 * Runs on the thread while berth_iothread_free() is being called: keeps
 * queueing until the stop is seen (the refused item is notified at once,
 * inside the call), then checks the synchronous call is refused too.
 */
static void queue_until_refused(gpointer opaque)
{
    Late *l = opaque;
    gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    for (;;) {
        Item *it = g_new0(Item, 1);
        it->order = &l->order;
        it->n = l->accepted + 1;
        gint before = g_atomic_int_get(&l->order.notified);
        if (!berth_iothread_invoke(l->order.iot, record, it, item_free)) {
            g_assert_cmpint(g_atomic_int_get(&l->order.notified), ==, before + 1);
            break;
        }
        l->accepted++;
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
    l->saw_refusal = true;
}

static gpointer try_sync_from_outside(gpointer opaque)
{
    Late *l = opaque;
    return GINT_TO_POINTER(berth_iothread_run_sync(l->order.iot, refused_sync, NULL));
}

/* Queued behind queue_until_refused, so the stop has begun when it runs. */
static void check_sync_refused(gpointer opaque)
{
    GThread *t = g_thread_new("iot-late-sync", try_sync_from_outside, opaque);
    g_assert_false(GPOINTER_TO_INT(g_thread_join(t)));
}

static void test_refused_after_stop(void)
{
    Late l = { .order.seen = g_array_new(FALSE, FALSE, sizeof(guint)) };
    l.order.iot = berth_iothread_new("iot-late", NULL);
    Item *first = g_new0(Item, 1);
    first->order = &l.order;
    g_assert_true(berth_iothread_invoke(l.order.iot, record, first, item_free));
    g_assert_true(berth_iothread_invoke(l.order.iot, queue_until_refused, &l, NULL));
    g_assert_true(berth_iothread_invoke(l.order.iot, check_sync_refused, &l, NULL));
    berth_iothread_free(l.order.iot);

    g_assert_true(l.saw_refusal);
    /* Everything accepted ran, in order, and everything was notified. */
    g_assert_cmpint(l.order.ran, ==, 1 + l.accepted);
    g_assert_cmpint(l.order.notified, ==, 1 + l.accepted + 1);
    for (guint i = 0; i < l.order.seen->len; i++) {
        g_assert_cmpuint(g_array_index(l.order.seen, guint, i), ==, i);
    }
    g_assert_cmpuint(l.order.seen->len, ==, 1 + l.accepted);
    g_array_unref(l.order.seen);
}

static void noop(gpointer opaque)
{
}

/* The highest polling window seen over `rounds` quick round trips. */
static int64_t busy_window(BerthIOThread *iot, int rounds)
{
    int64_t most = 0;
    for (int i = 0; i < rounds; i++) {
        g_assert_true(berth_iothread_run_sync(iot, noop, NULL));
        most = MAX(most, berth_iothread_get_poll_ns(iot));
    }
    return most;
}

/* Adaptive polling: the window opens while events come quickly, never
 * past its maximum, and closes once the thread has idled longer than
 * that; with a maximum of 0 it never opens. Work is served either way. */
static void test_polling(void)
{
    g_autoptr(GError) err = NULL;
    BerthIOThreadPolling on = { .max_ns = 10 * 1000 * 1000 };
    BerthIOThread *iot = berth_iothread_new_polling("iot-poll", &on, &err);
    g_assert_no_error(err);
    g_assert_cmpint(berth_iothread_get_poll_ns(iot), ==, 0);
    int64_t most = busy_window(iot, 200);
    g_assert_cmpint(most, >, 0);
    g_assert_cmpint(most, <=, on.max_ns);

    g_usleep(50 * 1000);        /* idle for 5 times the maximum */
    g_assert_true(berth_iothread_run_sync(iot, noop, NULL));
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (berth_iothread_get_poll_ns(iot) != 0 && g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    g_assert_cmpint(berth_iothread_get_poll_ns(iot), ==, 0);
    berth_iothread_free(iot);

    BerthIOThreadPolling off = { 0 };
    iot = berth_iothread_new_polling("iot-nopoll", &off, &err);
    g_assert_no_error(err);
    g_assert_cmpint(busy_window(iot, 200), ==, 0);
    berth_iothread_free(iot);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/util/iothread/start", test_start);
    g_test_add_func("/util/iothread/fifo", test_fifo);
    g_test_add_func("/util/iothread/on-thread", test_on_thread);
    g_test_add_func("/util/iothread/context", test_context);
    g_test_add_func("/util/iothread/stop-drains", test_stop_drains);
    g_test_add_func("/util/iothread/refused-after-stop", test_refused_after_stop);
    g_test_add_func("/util/iothread/polling", test_polling);
    return g_test_run();
}
