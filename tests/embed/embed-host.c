/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A host program that embeds libberth using nothing but what
 * `pkg-config --cflags --libs berth` gives: it opens an in-memory node,
 * writes a pattern and reads it back with the asynchronous API on its own
 * GMainContext and loop, with a dirty bitmap recording the write, and exits
 * 0 only if the data round-trips and the bitmap shows exactly the write.
 */
#include <berth/block/block.h>
#include <berth/block/dirty-bitmap.h>

#include <string.h>

typedef struct {
    GMainLoop *loop;
    int ret;
} Wait;

static void done(gpointer opaque, int ret, const GError *err)
{
    Wait *w = opaque;
    w->ret = ret;
    if (err) {
        g_printerr("embed-host: %s\n", err->message);
    }
    g_main_loop_quit(w->loop);
}

int main(void)
{
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    Wait w = { g_main_loop_new(ctx, FALSE), -1 };

    g_autoptr(GError) err = NULL;
    json_object *opts = json_tokener_parse(
        "{\"driver\": \"memory\", \"node-name\": \"host0\", \"size\": 1048576}");
    BlockDriverState *bs = bdrv_open(opts, false, &err);
    json_object_put(opts);
    if (!bs) {
        g_printerr("embed-host: %s\n", err->message);
        return 1;
    }

    BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_create(bs, "backup", 4096, false, &err);
    if (!bm) {
        g_printerr("embed-host: %s\n", err->message);
        return 1;
    }

    static uint8_t out[65536], in[65536];
    memset(out, 0x5a, sizeof(out));
    struct iovec wv = { out, sizeof(out) }, rv = { in, sizeof(in) };
    bdrv_aio_pwritev(bs, 4096, &wv, 1, 0, done, &w);
    g_main_loop_run(w.loop);
    if (w.ret < 0) {
        return 1;
    }
    bdrv_aio_preadv(bs, 4096, &rv, 1, done, &w);
    g_main_loop_run(w.loop);
    if (w.ret < 0 || memcmp(in, out, sizeof(in)) != 0) {
        g_printerr("embed-host: data did not round-trip\n");
        return 1;
    }
    uint64_t run;
    BdrvDirtyBitmapInfo info;
    bdrv_dirty_bitmap_get_info(bm, &info);
    if (bdrv_dirty_bitmap_status(bm, 0, 1 << 20, &run) || run != 4096 ||
        !bdrv_dirty_bitmap_status(bm, 4096, 1 << 20, &run) || run != sizeof(out) ||
        info.count != sizeof(out)) {
        g_printerr("embed-host: the dirty bitmap does not show the write\n");
        return 1;
    }
    g_print("embed-host: wrote and read back %zu bytes on node %s\n", sizeof(in),
            bdrv_get_node_name(bs));
    bdrv_put(bs);
    bdrv_delete_all();
    g_main_loop_unref(w.loop);
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    return 0;
}
