/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of drives (BlockBackend): the drive table and its shared
 * namespace with node names, inserting and removing media with QEMU's error
 * texts, the tray, writethrough, references that outlive deletion, and eject
 * notifiers: each fires exactly once, before the medium's reference goes,
 * also when notifiers remove each other or the drive is deleted.
 */
#include "berth/block/block-backend.h"
#include "block-test-util.h"

#include <string.h>

static BlockDriverState *open_node(const char *name)
{
    g_autofree char *js = g_strdup_printf("{\"driver\":\"null-co\",\"node-name\":\"%s\","
                                          "\"size\":1048576}", name);

    return open_ok(js);
}

static void expect_error(GError **err, const char *message)
{
    g_assert_nonnull(*err);
    g_assert_cmpstr((*err)->message, ==, message);
    g_clear_error(err);
}

static void test_drive_table(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *n0 = open_node("n0");
    BlockBackend *d0, *d1;

    d0 = blk_new("d0", n0, &err);
    g_assert_no_error(err);
    g_assert_true(blk_find("d0") == d0);
    g_assert_cmpstr(blk_get_id(d0), ==, "d0");
    g_assert_true(blk_get_medium(d0) == n0);
    g_assert_false(blk_is_tray_open(d0));
    d1 = blk_new("d1", NULL, &err);
    g_assert_no_error(err);
    g_assert_null(blk_get_medium(d1));
    g_assert_null(blk_find("d2"));
    g_assert_null(blk_find(NULL));

    g_assert_null(blk_new("d0", NULL, &err));
    expect_error(&err, "Device with id 'd0' already exists");
    g_assert_null(blk_new("n0", NULL, &err));
    expect_error(&err, "Device name 'n0' conflicts with an existing node name");
    g_assert_null(blk_new("0d", NULL, &err));
    expect_error(&err, "Invalid device name");
    g_assert_null(blk_new("", NULL, &err));
    expect_error(&err, "Invalid device name");

    /* Node names may not shadow drives either. */
    g_assert_null(open_json("{\"driver\":\"null-co\",\"node-name\":\"d1\"}", &err));
    expect_error(&err, "node-name=d1 is conflicting with a device id");

    /* The drive's reference makes the node busy. */
    bdrv_put(n0);
    g_assert_false(bdrv_delete("n0", &err));
    expect_error(&err, "Node n0 is in use");

    g_assert_false(blk_delete("d9", &err));
    expect_error(&err, "Device 'd9' not found");

    /* Writethrough is a plain flag of the drive. */
    g_assert_false(blk_get_writethrough(d0));
    blk_set_writethrough(d0, true);
    g_assert_true(blk_get_writethrough(d0));

    g_assert_true(blk_delete("d0", &err));
    g_assert_no_error(err);
    g_assert_null(blk_find("d0"));
    g_assert_true(bdrv_delete("n0", &err));
    g_assert_no_error(err);
    blk_delete_all();
    g_assert_null(blk_find("d1"));
}

static void collect_id(BlockBackend *blk, gpointer opaque)
{
    g_string_append_printf(opaque, "%s ", blk_get_id(blk));
}

static void delete_each(BlockBackend *blk, gpointer opaque)
{
    g_assert_true(blk_delete(blk_get_id(blk), NULL));
}

static void test_foreach_and_refs(void)
{
    g_autoptr(GString) ids = g_string_new("");
    BlockBackend *z, *a, *m;

    z = blk_new("z", NULL, NULL);
    a = blk_new("a", NULL, NULL);
    m = blk_new("m", NULL, NULL);
    blk_foreach(collect_id, ids);
    g_assert_cmpstr(ids->str, ==, "z a m ");

    /* A reference keeps a deleted drive usable. */
    blk_ref(a);
    blk_foreach(delete_each, NULL);
    g_assert_null(blk_find("a"));
    g_assert_cmpstr(blk_get_id(a), ==, "a");
    blk_set_tray_open(a, true);
    g_assert_true(blk_is_tray_open(a));
    blk_unref(a);
    (void) z;
    (void) m;
}

typedef struct {
    BlockBackend *blk;
    int fired;
    bool medium_present;     /* still attached while notified */
    gulong remove_other;     /* notifier id to remove when fired */
    bool try_remove_again;
} Watcher;

static void on_eject(BlockBackend *blk, gpointer opaque)
{
    Watcher *w = opaque;

    w->fired++;
    w->medium_present = blk_get_medium(blk) != NULL;
    g_assert_true(blk == w->blk);
    if (w->remove_other) {
        blk_remove_eject_notifier(blk, w->remove_other);
    }
    if (w->try_remove_again) {
        g_autoptr(GError) err = NULL;
        g_assert_false(blk_remove_medium(blk, &err));
        g_assert_nonnull(err);
    }
}

static void test_media_and_notifiers(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *n1 = open_node("n1");
    BlockDriverState *n2 = open_node("n2");
    BlockBackend *cd = blk_new("cd", n1, &err);
    Watcher w1 = { .blk = cd }, w2 = { .blk = cd }, w3 = { .blk = cd };
    gulong id1, id2, id3;

    g_assert_no_error(err);
    g_assert_false(blk_insert_medium(cd, n2, &err));
    expect_error(&err, "There already is a medium in device 'cd'");

    id1 = blk_add_eject_notifier(cd, on_eject, &w1);
    id2 = blk_add_eject_notifier(cd, on_eject, &w2);
    id3 = blk_add_eject_notifier(cd, on_eject, &w3);
    g_assert_cmpuint(id1, !=, id2);
    g_assert_cmpuint(id2, !=, id3);
    /* The first one removes the third before it would run; the second
     * tries to eject again from inside the notification. */
    w1.remove_other = id3;
    w2.try_remove_again = true;

    g_assert_true(blk_remove_medium(cd, &err));
    g_assert_no_error(err);
    g_assert_cmpint(w1.fired, ==, 1);
    g_assert_true(w1.medium_present);
    g_assert_cmpint(w2.fired, ==, 1);
    g_assert_cmpint(w3.fired, ==, 0);
    g_assert_null(blk_get_medium(cd));
    g_assert_true(blk_is_tray_open(cd));

    /* Nothing left to remove. */
    g_assert_false(blk_remove_medium(cd, &err));
    expect_error(&err, "Device 'cd' has no medium");
    g_assert_cmpint(w1.fired, ==, 1);

    /* The node is free again. */
    bdrv_put(n1);
    g_assert_true(bdrv_delete("n1", &err));
    g_assert_no_error(err);

    /* Insert another medium; notifiers still registered fire once more. */
    w1.remove_other = 0;
    w2.try_remove_again = false;
    g_assert_true(blk_insert_medium(cd, n2, &err));
    g_assert_no_error(err);
    g_assert_true(blk_get_medium(cd) == n2);
    blk_set_tray_open(cd, false);
    blk_remove_eject_notifier(cd, id2);
    blk_remove_eject_notifier(cd, 12345);   /* unknown ids are ignored */

    /* Deleting the drive ejects its medium first. */
    g_assert_true(blk_delete("cd", &err));
    g_assert_no_error(err);
    g_assert_cmpint(w1.fired, ==, 2);
    g_assert_cmpint(w2.fired, ==, 1);
    g_assert_cmpint(w3.fired, ==, 0);
    bdrv_put(n2);
    g_assert_true(bdrv_delete("n2", &err));
    g_assert_no_error(err);
}

static void test_unref_with_medium(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *n = open_node("n3");
    BlockBackend *blk = blk_new("hd", n, &err);
    Watcher w = { .blk = blk };

    g_assert_no_error(err);
    blk_add_eject_notifier(blk, on_eject, &w);
    /* delete_all removes every medium and notifies, then drops drives. */
    blk_ref(blk);
    blk_delete_all();
    g_assert_cmpint(w.fired, ==, 1);
    g_assert_null(blk_get_medium(blk));
    g_assert_true(blk_insert_medium(blk, n, &err));
    /* The last unref of a drive still holding a medium releases it quietly. */
    blk_unref(blk);
    g_assert_cmpint(w.fired, ==, 1);
    bdrv_put(n);
    g_assert_true(bdrv_delete("n3", &err));
    g_assert_no_error(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/block/backend/table", test_drive_table);
    g_test_add_func("/block/backend/foreach-and-refs", test_foreach_and_refs);
    g_test_add_func("/block/backend/media-and-notifiers", test_media_and_notifiers);
    g_test_add_func("/block/backend/unref-with-medium", test_unref_with_medium);
    return run_block_tests(blk_delete_all);
}
