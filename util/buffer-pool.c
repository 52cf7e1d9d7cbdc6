/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The per-thread buffer pool (util/buffer-pool.h): a few free buffers in a
 * small array, first fit among those no more than twice the size asked for
 * (so a small request does not pin a huge buffer), and a one-second timer
 * that frees what stayed unused for a whole period. The pool belongs to its
 * thread; the timer runs on the context that thread was running when the
 * pool was made, and touches the pool only from that thread.
 */
#include "util/buffer-pool.h"

#include <stdbool.h>
#include <stdlib.h>

#define POOL_ALIGN 4096
#define POOL_MAX_BUFFERS 16
#define POOL_TRIM_MS 1000

typedef struct {
    void *buf;
    size_t cap;
    bool used;                  /* given back since the last trim */
} PoolEntry;

typedef struct {
    PoolEntry e[POOL_MAX_BUFFERS];
    guint n;
    size_t bytes;
    GMainContext *ctx;          /* referenced: where the trim timer runs */
    GSource *trim;              /* referenced, while n > 0 */
} BufferPool;

static void pool_drop_timer(BufferPool *p)
{
    if (p->trim) {
        g_source_destroy(p->trim);
        g_clear_pointer(&p->trim, g_source_unref);
    }
}

static void pool_release(gpointer data)
{
    BufferPool *p = data;

    for (guint i = 0; i < p->n; i++) {
        free(p->e[i].buf);
    }
    pool_drop_timer(p);
    g_main_context_unref(p->ctx);
    g_free(p);
}

static GPrivate pool_key = G_PRIVATE_INIT(pool_release);

static void pool_remove(BufferPool *p, guint i)
{
    p->bytes -= p->e[i].cap;
    p->e[i] = p->e[--p->n];
}

static gboolean pool_trim(gpointer data)
{
    BufferPool *p = data;

    if (g_private_get(&pool_key) != p) {
        return G_SOURCE_CONTINUE;   /* another thread runs the context now */
    }
    for (guint i = 0; i < p->n;) {
        if (p->e[i].used) {
            p->e[i++].used = false;
            continue;
        }
        free(p->e[i].buf);
        pool_remove(p, i);
    }
    if (p->n == 0) {
        g_clear_pointer(&p->trim, g_source_unref);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* This thread's pool if it runs its context; NULL otherwise. */
static BufferPool *pool_here(void)
{
    BufferPool *p = g_private_get(&pool_key);

    if (!p) {
        GMainContext *ctx = g_main_context_get_thread_default();
        ctx = ctx ? ctx : g_main_context_default();
        if (!g_main_context_is_owner(ctx)) {
            return NULL;
        }
        p = g_new0(BufferPool, 1);
        p->ctx = g_main_context_ref(ctx);
        g_private_set(&pool_key, p);
    }
    return g_main_context_is_owner(p->ctx) ? p : NULL;
}

void *berth_buffer_take(size_t size, size_t *cap)
{
    BufferPool *p;
    void *buf = NULL;

    g_return_val_if_fail(size > 0, NULL);
    if (size < BERTH_BUFFER_POOL_MIN) {
        *cap = size;
        return g_try_malloc(size);
    }
    p = g_private_get(&pool_key);
    for (guint i = 0; p && i < p->n; i++) {
        if (p->e[i].cap >= size && p->e[i].cap / 2 <= size) {
            buf = p->e[i].buf;
            *cap = p->e[i].cap;
            pool_remove(p, i);
            return buf;
        }
    }
    if (size > G_MAXSIZE - POOL_ALIGN) {
        return NULL;
    }
    *cap = (size + POOL_ALIGN - 1) & ~(size_t) (POOL_ALIGN - 1);
    return posix_memalign(&buf, POOL_ALIGN, *cap) == 0 ? buf : NULL;
}

void berth_buffer_give(void *buf, size_t cap)
{
    BufferPool *p;

    if (!buf) {
        return;
    }
    if (cap < BERTH_BUFFER_POOL_MIN) {
        g_free(buf);
        return;
    }
    p = pool_here();
    if (!p || p->n == POOL_MAX_BUFFERS || cap > BERTH_BUFFER_POOL_MAX_BYTES - p->bytes) {
        free(buf);
        return;
    }
    p->e[p->n++] = (PoolEntry) { .buf = buf, .cap = cap, .used = true };
    p->bytes += cap;
    if (!p->trim) {
        p->trim = g_timeout_source_new(POOL_TRIM_MS);
        g_source_set_static_name(p->trim, "berth buffer pool trim");
        g_source_set_callback(p->trim, pool_trim, p, NULL);
        g_source_attach(p->trim, p->ctx);
    }
}

size_t berth_buffer_pool_held(void)
{
    BufferPool *p = g_private_get(&pool_key);

    return p ? p->bytes : 0;
}
