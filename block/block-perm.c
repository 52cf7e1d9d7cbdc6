/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Node permissions and block_resize. A node counts its users per
 * permission bit; when the union of what they hold, or of what they do not
 * share, changes, the driver's set_perm() hook applies it (the file driver
 * turns it into image locks), and every edge to a child is brought in step
 * with what the driver's child_perm() asks for on that child, as QEMU
 * forwards permissions down its graph: a raw node passes its users' on, a
 * qcow2 node always reads its file and, when writable, writes and resizes
 * it without sharing either. A node with force-share shares everything.
 * Main thread only, like the node table.
 */
#include "block/block-int.h"

#define PERM_BITS 4

static void perm_union(const BlockDriverState *bs, uint32_t *perm, uint32_t *unshared)
{
    *perm = *unshared = 0;
    for (int i = 0; i < PERM_BITS; i++) {
        if (bs->perm_users[i]) {
            *perm |= 1u << i;
        }
        if (bs->unshare_users[i]) {
            *unshared |= 1u << i;
        }
    }
}

static void perm_count(BlockDriverState *bs, uint32_t perm, uint32_t unshared, int delta)
{
    for (int i = 0; i < PERM_BITS; i++) {
        if (perm & (1u << i)) {
            g_assert(delta > 0 || bs->perm_users[i] > 0);
            bs->perm_users[i] += delta;
        }
        if (unshared & (1u << i)) {
            g_assert(delta > 0 || bs->unshare_users[i] > 0);
            bs->unshare_users[i] += delta;
        }
    }
}

static bool children_update(BlockDriverState *bs, uint32_t perm, uint32_t unshared,
                            GError **errp);

bool bdrv_perm_take(BlockDriverState *bs, uint32_t perm, uint32_t unshared, GError **errp)
{
    g_return_val_if_fail(bs != NULL, false);
    g_return_val_if_fail(!(perm & ~BDRV_PERM_ALL) && !(unshared & ~BDRV_PERM_ALL), false);

    if ((perm & (BDRV_PERM_WRITE | BDRV_PERM_RESIZE)) && bs->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "Block node '%s' is read-only", bs->node_name);
        return false;
    }
    if (bs->force_share) {
        unshared = 0;
    }
    uint32_t new_perm = bs->perm | perm, new_unshared = bs->unshared | unshared;
    if (new_perm != bs->perm || new_unshared != bs->unshared) {
        if (!children_update(bs, new_perm, new_unshared, errp)) {
            return false;
        }
        if (bs->drv->set_perm && !bs->drv->set_perm(bs, new_perm, new_unshared, errp)) {
            g_autoptr(GError) err = NULL;
            if (!children_update(bs, bs->perm, bs->unshared, &err)) {
                g_warning("%s: %s", bs->node_name, err->message);
            }
            return false;
        }
    }
    perm_count(bs, perm, unshared, 1);
    bs->perm = new_perm;
    bs->unshared = new_unshared;
    return true;
}

void bdrv_perm_release(BlockDriverState *bs, uint32_t perm, uint32_t unshared)
{
    uint32_t new_perm, new_unshared;

    g_return_if_fail(bs != NULL);
    if (bs->force_share) {
        unshared = 0;
    }
    perm_count(bs, perm, unshared, -1);
    perm_union(bs, &new_perm, &new_unshared);
    if (new_perm != bs->perm || new_unshared != bs->unshared) {
        /* Giving locks back only unlocks bytes: it cannot conflict. */
        g_autoptr(GError) err = NULL;
        if (bs->drv->set_perm && !bs->drv->set_perm(bs, new_perm, new_unshared, &err)) {
            g_warning("%s: %s", bs->node_name, err->message);
            g_clear_error(&err);
        }
        if (!children_update(bs, new_perm, new_unshared, &err)) {
            g_warning("%s: %s", bs->node_name, err->message);
        }
    }
    bs->perm = new_perm;
    bs->unshared = new_unshared;
}

/* --- edges ---------------------------------------------------------------- */

static void child_wants(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                        uint32_t unshared, uint32_t *nperm, uint32_t *nunshared)
{
    *nperm = *nunshared = 0;
    if (bs->drv && bs->drv->child_perm) {
        bs->drv->child_perm(bs, c, perm, unshared, nperm, nunshared);
    }
    *nperm &= BDRV_PERM_ALL;
    *nunshared &= BDRV_PERM_ALL;
}

/* Move one edge to a new set: take the new one, then give the old back, so
 * that bits in both stay held throughout. */
static bool edge_set(BdrvChild *c, uint32_t perm, uint32_t unshared, GError **errp)
{
    if (perm == c->perm && unshared == c->unshared) {
        return true;
    }
    if (!bdrv_perm_take(c->bs, perm, unshared, errp)) {
        return false;
    }
    bdrv_perm_release(c->bs, c->perm, c->unshared);
    c->perm = perm;
    c->unshared = unshared;
    return true;
}

/* Every edge of bs as its driver wants it for (perm, unshared); on failure
 * the edges are back where they were. */
static bool children_update(BlockDriverState *bs, uint32_t perm, uint32_t unshared,
                            GError **errp)
{
    uint32_t old_perm[BDRV_MAX_CHILDREN], old_unshared[BDRV_MAX_CHILDREN];

    for (guint i = 0; i < bs->n_children; i++) {
        BdrvChild *c = &bs->children[i];
        uint32_t nperm, nunshared;

        old_perm[i] = c->perm;
        old_unshared[i] = c->unshared;
        child_wants(bs, c, perm, unshared, &nperm, &nunshared);
        if (!edge_set(c, nperm, nunshared, errp)) {
            while (i-- > 0) {
                g_autoptr(GError) err = NULL;
                if (!edge_set(&bs->children[i], old_perm[i], old_unshared[i], &err)) {
                    g_warning("%s: %s", bs->node_name, err->message);
                }
            }
            return false;
        }
    }
    return true;
}

bool bdrv_child_perm_attach(BlockDriverState *bs, BdrvChild *c, GError **errp)
{
    uint32_t nperm, nunshared;

    c->perm = c->unshared = 0;
    child_wants(bs, c, bs->perm, bs->unshared, &nperm, &nunshared);
    return edge_set(c, nperm, nunshared, errp);
}

bool bdrv_child_perms_refresh(BlockDriverState *bs, GError **errp)
{
    return children_update(bs, bs->perm, bs->unshared, errp);
}

void bdrv_child_perms_drop(BlockDriverState *bs)
{
    for (guint i = 0; i < bs->n_children; i++) {
        BdrvChild *c = &bs->children[i];

        bdrv_perm_release(c->bs, c->perm, c->unshared);
        c->perm = c->unshared = 0;
    }
}

void bdrv_filter_child_perm(BlockDriverState *bs, const BdrvChild *c, uint32_t perm,
                            uint32_t unshared, uint32_t *nperm, uint32_t *nunshared)
{
    (void) bs;
    (void) c;
    *nperm = perm;
    *nunshared = unshared;
}

bool bdrv_truncate(BlockDriverState *bs, uint64_t size, GError **errp)
{
    g_return_val_if_fail(bs != NULL, false);

    if (bs->read_only) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "Image is read-only");
        return false;
    }
    if (!bs->drv->truncate) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "Image format driver does not support resize");
        return false;
    }
    if (size > (uint64_t) BDRV_MAX_LENGTH) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Image size too large");
        return false;
    }
    if (!bdrv_perm_take(bs, BDRV_PERM_RESIZE, 0, errp)) {
        return false;
    }
    /* Growing: bitmaps first, as they may refuse and must cover the new
     * range before a write can reach it; undoing that drops only clean
     * bits. Shrinking: bitmaps after, so a failed resize loses no bits. */
    uint64_t old_size = bdrv_size(bs);
    bool grow = size > old_size;
    if (grow && !bdrv_dirty_bitmaps_resize(bs, size, errp)) {
        bdrv_perm_release(bs, BDRV_PERM_RESIZE, 0);
        return false;
    }
    bool ok = bs->drv->truncate(bs, size, errp);
    if (ok != grow) {
        bdrv_dirty_bitmaps_resize(bs, ok ? size : old_size, NULL);
    }
    if (ok) {
        uint64_t len = size;
        if (!bs->drv->exact_size) {
            len = (len + BDRV_SECTOR_SIZE - 1) & ~(uint64_t) (BDRV_SECTOR_SIZE - 1);
        }
        __atomic_store_n(&bs->size, len, __ATOMIC_RELAXED);
    }
    bdrv_perm_release(bs, BDRV_PERM_RESIZE, 0);
    return ok;
}
