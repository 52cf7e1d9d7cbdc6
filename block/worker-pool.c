/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The worker pool that runs blocking disk I/O off the event loops. One
 * GThreadPool serves every node, so the number of threads blocked in the
 * kernel stays bounded however many files are open; its size is a trade-off
 * between queue depth reaching the device (more threads) and scheduling
 * overhead when data comes from the page cache (fewer). The pool carries the
 * request itself, so handing work over costs no allocation.
 */
#include "block/block-int.h"
#include "util/tsan.h"

#include <errno.h>

/*
 * Requests reach the pool mostly when they will wait for the device (reads
 * the page cache could not answer inline, O_DIRECT, syncs), so the pool is
 * sized for queue depth rather than for CPUs: on a 2-CPU guest, 16 threads
 * got 4k O_DIRECT random reads at qd32 within 10% of fio with io_uring,
 * while 8 threads reached only 70% of it.
 */
#define WORKER_THREADS_PER_CPU 8
#define WORKER_THREADS_MIN 16
#define WORKER_THREADS_MAX 64

/* Set on the pool's own threads. */
static GPrivate on_worker_thread;

static void worker_run(gpointer data, gpointer user_data)
{
    BdrvRequest *req = data;

    g_private_set(&on_worker_thread, GINT_TO_POINTER(1));
    /* GThreadPool's queue is invisible to TSan: pairs with the release in
     * bdrv_worker_submit(). */
    berth_tsan_acquire(req);
    req->work(req);
}

static gpointer worker_pool_create(gpointer unused)
{
    g_autoptr(GError) err = NULL;
    int n = CLAMP((int) g_get_num_processors() * WORKER_THREADS_PER_CPU,
                  WORKER_THREADS_MIN, WORKER_THREADS_MAX);
    GThreadPool *pool;

    /* Exclusive: the threads start with the first file request and then
     * stay, so bursts never wait for a thread to be created. */
    pool = g_thread_pool_new(worker_run, NULL, n, TRUE, &err);
    if (!pool) {
        g_warning("block: cannot create the I/O worker pool: %s", err->message);
    }
    return pool;
}

void bdrv_worker_submit(BdrvRequest *req, void (*work)(BdrvRequest *req))
{
    static GOnce once = G_ONCE_INIT;
    GThreadPool *pool = g_once(&once, worker_pool_create, NULL);
    g_autoptr(GError) err = NULL;

    req->work = work;
    /*
     * A driver on a worker that waits for a child's request (qcow2 reading
     * its tables through bdrv_child_pread_sync()) would hold its worker
     * while the child's work queues behind it: with every worker doing
     * that, nothing would run. The worker does the child's work itself.
     */
    if (g_private_get(&on_worker_thread)) {
        work(req);
        return;
    }
    if (!pool) {
        bdrv_request_fail(req, EAGAIN, "No I/O worker threads available");
        return;
    }
    berth_tsan_release(req);
    /* On failure GLib still queues the item for the threads it has. */
    if (!g_thread_pool_push(pool, req, &err) && g_thread_pool_get_num_threads(pool) == 0) {
        g_warning("block: cannot start an I/O worker: %s", err->message);
    }
}
