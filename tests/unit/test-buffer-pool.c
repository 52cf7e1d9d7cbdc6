/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the per-thread buffer pool (util/buffer-pool.h): large
 * buffers come back page-aligned and are reused on a thread that runs its
 * context, never for a much smaller size, up to the pool's byte limit; the
 * timer frees what nobody took; small sizes and threads without a running
 * context are plain malloc and free.
 */
#include "util/buffer-pool.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define KiB 1024u
#define MiB (1024 * KiB)

static void test_reuse(void)
{
    size_t cap, cap2, cap3;
    void *a = berth_buffer_take(MiB, &cap);

    g_assert_nonnull(a);
    g_assert_cmpuint(cap, ==, MiB);
    g_assert_cmpuint((uintptr_t) a % 4096, ==, 0);
    memset(a, 1, MiB);
    berth_buffer_give(a, cap);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, MiB);

    /* The same buffer for a size it suits; rounded capacity for others. */
    void *b = berth_buffer_take(MiB - 100, &cap2);
    g_assert_true(b == a);
    g_assert_cmpuint(cap2, ==, MiB);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, 0);
    void *c = berth_buffer_take(100 * KiB + 1, &cap);
    g_assert_cmpuint(cap, ==, 104 * KiB);
    g_assert_cmpuint((uintptr_t) c % 4096, ==, 0);
    berth_buffer_give(b, cap2);
    /* Not for a size less than half of it. */
    void *d = berth_buffer_take(256 * KiB, &cap3);
    g_assert_true(d != a);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, MiB);
    berth_buffer_give(c, cap);
    berth_buffer_give(d, cap3);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, MiB + 104 * KiB + 256 * KiB);

    /* Small sizes are malloc's own and never kept. */
    void *s = berth_buffer_take(4096, &cap);
    g_assert_cmpuint(cap, ==, 4096);
    berth_buffer_give(s, cap);
    berth_buffer_give(NULL, 0);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, MiB + 104 * KiB + 256 * KiB);
}

static void test_byte_limit(void)
{
    size_t held = berth_buffer_pool_held(), cap[3];
    void *big[3];

    for (int i = 0; i < 3; i++) {
        big[i] = berth_buffer_take(BERTH_BUFFER_POOL_MAX_BYTES / 2, &cap[i]);
        g_assert_nonnull(big[i]);
    }
    for (int i = 0; i < 3; i++) {
        berth_buffer_give(big[i], cap[i]);
        g_assert_cmpuint(berth_buffer_pool_held(), <=, BERTH_BUFFER_POOL_MAX_BYTES);
    }
    /* What the earlier test left, and one half: the rest was freed. */
    g_assert_cmpuint(berth_buffer_pool_held(), ==, held + BERTH_BUFFER_POOL_MAX_BYTES / 2);
}

static gboolean set_flag(gpointer data)
{
    *(bool *) data = true;
    return G_SOURCE_REMOVE;
}

/* Run ctx for ms milliseconds. */
static void run_for(GMainContext *ctx, guint ms)
{
    GSource *t = g_timeout_source_new(ms);
    bool done = false;

    g_source_set_callback(t, set_flag, &done, NULL);
    g_source_attach(t, ctx);
    while (!done) {
        g_main_context_iteration(ctx, TRUE);
    }
    g_source_unref(t);
}

static void test_trim(void)
{
    GMainContext *ctx = g_main_context_get_thread_default();
    size_t cap;

    g_assert_cmpuint(berth_buffer_pool_held(), >, 0);
    /* Unused for a whole period (one to two seconds): freed; the timer
     * goes with the last buffer, and nothing is left to dispatch. */
    run_for(ctx, 2500);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, 0);
    g_assert_false(g_main_context_pending(ctx));

    /* A buffer in use at each tick stays. */
    void *a = berth_buffer_take(MiB, &cap);
    berth_buffer_give(a, cap);
    for (int i = 0; i < 3; i++) {
        run_for(ctx, 700);
        a = berth_buffer_take(MiB, &cap);
        berth_buffer_give(a, cap);
        g_assert_cmpuint(berth_buffer_pool_held(), ==, MiB);
    }
}

static gpointer no_context_thread(gpointer data)
{
    size_t cap;
    void *a = berth_buffer_take(MiB, &cap);

    /* No loop runs here: give frees. */
    g_assert_nonnull(a);
    berth_buffer_give(a, cap);
    g_assert_cmpuint(berth_buffer_pool_held(), ==, 0);
    return NULL;
}

static void test_other_thread(void)
{
    g_thread_join(g_thread_new("no-context", no_context_thread, NULL));
}

int main(int argc, char **argv)
{
    GMainContext *ctx = g_main_context_new();
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_main_context_push_thread_default(ctx);   /* pushing acquires it */
    g_test_add_func("/util/buffer-pool/reuse", test_reuse);
    g_test_add_func("/util/buffer-pool/byte-limit", test_byte_limit);
    g_test_add_func("/util/buffer-pool/trim", test_trim);
    g_test_add_func("/util/buffer-pool/other-thread", test_other_thread);
    ret = g_test_run();
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    return ret;
}
