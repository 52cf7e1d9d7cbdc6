/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal snapshots, the generic side: bdrv_snapshot_load_tmp() checks
 * the node and hands over to its driver (qcow2 only). Main thread.
 */
#include "block/block-int.h"

bool bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *id, const char *name,
                            GError **errp)
{
    g_return_val_if_fail(bs != NULL && (id || name), false);

    if (!bs->read_only) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "Device is not readonly");
        return false;
    }
    if (!bs->drv->snapshot_load_tmp) {
        /* QEMU names the node's drive, which a node of berth has none of. */
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Block format '%s' used by device '' does not support temporarily "
                    "loading internal snapshots", bs->drv->name);
        return false;
    }
    return bs->drv->snapshot_load_tmp(bs, id, name, errp);
}
