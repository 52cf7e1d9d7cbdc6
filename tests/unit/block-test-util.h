/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Scaffolding shared by the block layer's unit tests: synchronous wrappers
 * around the asynchronous request API (submit, then iterate the submitter's
 * context until the completion arrives), opening and closing nodes from
 * QMP-style JSON or key=value strings, block status checks, buffer helpers,
 * and the thread-default context every test program runs its tests on.
 *
 * Everything is static inline so that each test program takes only what it
 * uses without unused-function warnings.
 */
#ifndef BERTH_TESTS_BLOCK_TEST_UTIL_H
#define BERTH_TESTS_BLOCK_TEST_UTIL_H

#include "berth/block/block.h"
#include "util/keyval.h"

#include <string.h>

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

/* ---- contexts ------------------------------------------------------------ */

/* Makes a new context the calling thread's default and returns it. */
static inline GMainContext *push_new_context(void)
{
    GMainContext *ctx = g_main_context_new();

    g_main_context_push_thread_default(ctx);
    return ctx;
}

static inline void pop_context(GMainContext *ctx)
{
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
}

/* Whether a completion runs on ctx, as the thread-default context and owned. */
static inline bool running_on_context(GMainContext *ctx)
{
    return g_main_context_get_thread_default() == ctx && g_main_context_is_owner(ctx);
}

/*
 * Runs the tests registered so far on a context of their own, then calls
 * cleanup (when given) and deletes every node left behind.
 */
static inline int run_block_tests(void (*cleanup)(void))
{
    GMainContext *ctx = push_new_context();
    int ret = g_test_run();

    if (cleanup) {
        cleanup();
    }
    bdrv_delete_all();
    pop_context(ctx);
    return ret;
}

/* ---- synchronous wrappers around the asynchronous API ------------------- */

typedef struct {
    bool done;
    int ret;
    char *msg;
    GMainContext *ctx;       /* the context the callback ran on */
    GArray *extents;
} Result;

static inline void result_clear(Result *r)
{
    g_free(r->msg);
    if (r->extents) {
        g_array_unref(r->extents);
    }
    memset(r, 0, sizeof(*r));
}

static inline void on_done(gpointer opaque, int ret, const GError *err)
{
    Result *r = opaque;

    g_assert_false(r->done);
    r->done = true;
    r->ret = ret;
    r->msg = err ? g_strdup(err->message) : NULL;
    r->ctx = g_main_context_get_thread_default();
    g_assert_true(ret >= 0 || err != NULL);
}

static inline void on_status(gpointer opaque, int ret, const BdrvExtent *extents, guint n,
                             const GError *err)
{
    Result *r = opaque;

    on_done(opaque, ret, err);
    r->extents = g_array_new(FALSE, FALSE, sizeof(BdrvExtent));
    g_array_append_vals(r->extents, extents, n);
}

static inline int wait_result(Result *r)
{
    /* Delivery never happens inside the submitting call. */
    g_assert_false(r->done);
    while (!r->done) {
        g_main_context_iteration(g_main_context_get_thread_default(), TRUE);
    }
    return r->ret;
}

static inline int do_read(BlockDriverState *bs, uint64_t off, void *buf, size_t len, Result *r)
{
    struct iovec iov = { buf, len };

    bdrv_aio_preadv(bs, off, &iov, 1, on_done, r);
    return wait_result(r);
}

static inline int do_write(BlockDriverState *bs, uint64_t off, const void *buf, size_t len,
                           BdrvRequestFlags flags, Result *r)
{
    struct iovec iov = { (void *) buf, len };

    bdrv_aio_pwritev(bs, off, &iov, 1, flags, on_done, r);
    return wait_result(r);
}

static inline int do_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len,
                            BdrvRequestFlags flags, Result *r)
{
    bdrv_aio_pwrite_zeroes(bs, off, len, flags, on_done, r);
    return wait_result(r);
}

static inline int do_discard(BlockDriverState *bs, uint64_t off, uint64_t len, Result *r)
{
    bdrv_aio_pdiscard(bs, off, len, on_done, r);
    return wait_result(r);
}

static inline int do_status(BlockDriverState *bs, uint64_t off, uint64_t len, guint max,
                            Result *r)
{
    bdrv_aio_block_status(bs, off, len, max, on_status, r);
    return wait_result(r);
}

/* The same, for callers that want only the return value. */
static inline int read_ret(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    Result r = { 0 };
    int ret = do_read(bs, off, buf, len, &r);

    result_clear(&r);
    return ret;
}

static inline int write_ret(BlockDriverState *bs, uint64_t off, const void *buf, size_t len,
                            BdrvRequestFlags flags)
{
    Result r = { 0 };
    int ret = do_write(bs, off, buf, len, flags, &r);

    result_clear(&r);
    return ret;
}

static inline int do_simple(void (*fn)(BlockDriverState *, uint64_t, uint64_t,
                                       BdrvCompletionFunc, gpointer),
                            BlockDriverState *bs, uint64_t off, uint64_t len)
{
    Result r = { 0 };
    int ret;

    fn(bs, off, len, on_done, &r);
    ret = wait_result(&r);
    result_clear(&r);
    return ret;
}

static inline int do_flush(BlockDriverState *bs)
{
    Result r = { 0 };
    int ret;

    bdrv_aio_flush(bs, on_done, &r);
    ret = wait_result(&r);
    result_clear(&r);
    return ret;
}

/* ---- block status -------------------------------------------------------- */

static inline void assert_extent(Result *r, guint i, uint64_t length, uint32_t status)
{
    g_assert_cmpuint(r->extents->len, >, i);
    g_assert_cmpuint(g_array_index(r->extents, BdrvExtent, i).length, ==, length);
    g_assert_cmpuint(g_array_index(r->extents, BdrvExtent, i).status, ==, status);
}

/* Status of [off, off+len) must be exactly one extent of this kind. */
static inline void assert_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                                 uint32_t status)
{
    Result r = { 0 };

    g_assert_cmpint(do_status(bs, off, len, 0, &r), ==, 0);
    g_assert_cmpuint(r.extents->len, ==, 1);
    assert_extent(&r, 0, len, status);
    result_clear(&r);
}

/* ---- opening and closing nodes ------------------------------------------ */

static inline BlockDriverState *open_json(const char *json, GError **errp)
{
    json_object *opts = json_tokener_parse(json);
    BlockDriverState *bs;

    g_assert_nonnull(opts);
    bs = bdrv_open(opts, false, errp);
    json_object_put(opts);
    return bs;
}

static inline BlockDriverState *open_keyval(const char *str, GError **errp)
{
    json_object *opts = keyval_parse(str, NULL, errp);
    BlockDriverState *bs;

    g_assert_nonnull(opts);
    bs = bdrv_open(opts, true, errp);
    json_object_put(opts);
    return bs;
}

/* Opens, hands back the caller's reference and drops the table's at the end. */
static inline BlockDriverState *open_ok(const char *json)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_json(json, &err);

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

/* Opening from json (or, when json is NULL, from keyval) fails with message. */
static inline void expect_open_error(const char *json, const char *keyval, const char *message)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = json ? open_json(json, &err) : open_keyval(keyval, &err);

    if (bs) {
        g_error("'%s' opened, expected \"%s\"", json ? json : keyval, message);
    }
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, message);
}

static inline void close_node(BlockDriverState *bs)
{
    g_autofree char *name = g_strdup(bdrv_get_node_name(bs));

    bdrv_put(bs);
    g_assert_true(bdrv_delete(name, NULL));
}

/* ---- buffers ------------------------------------------------------------- */

static inline bool is_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i]) {
            return false;
        }
    }
    return true;
}

#endif /* BERTH_TESTS_BLOCK_TEST_UTIL_H */
