/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd's image: -f FORMAT, or no -f and the format probed from the
 * first 512 bytes, as qemu-nbd does. A raw image is the file driver's node
 * itself; a probed raw image also gets QEMU's warning and its guard on
 * block 0 (bdrv_set_probed_raw()). An image format is opened QEMU's way,
 * driver=FORMAT over a file node, when blockdev-add has a driver of that
 * name at run time (so qcow2 works as soon as its driver is in the list);
 * until then such an image is refused by name, never exported as raw
 * bytes by surprise.
 */
#include "berth-nbd.h"
#include "berth/block/block.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* QEMU's image formats, for telling "not supported yet" from "unknown". */
static const char *const qemu_formats[] = {
    "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "luks", "parallels", "bochs",
    "cloop", "dmg", NULL,
};

/* The file node's members: the file and how it is accessed. */
static json_object *file_options(const BerthNbdOptions *o)
{
    json_object *args = json_object_new_object();
    json_object *cache = json_object_new_object();

    json_object_object_add(args, "driver", json_object_new_string("file"));
    json_object_object_add(args, "filename", json_object_new_string(o->filename));
    json_object_object_add(args, "read-only", json_object_new_boolean(o->read_only));
    json_object_object_add(cache, "direct", json_object_new_boolean(o->cache_direct));
    json_object_object_add(cache, "no-flush", json_object_new_boolean(o->cache_no_flush));
    json_object_object_add(args, "cache", cache);
    if (o->aio) {
        json_object_object_add(args, "aio", json_object_new_string(o->aio));
    }
    return args;
}

/* The first sector, or false when the file cannot be read (then the
 * file driver reports why, as for -f raw). */
static bool read_first_sector(const char *filename, uint8_t *buf, size_t *len)
{
    int fd = open(filename, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = pread(fd, buf, *len, 0);
    close(fd);
    if (n < 0) {
        return false;
    }
    *len = (size_t) n;
    return true;
}

static bool refuse_format(const char *format, bool probed, GError **errp)
{
    if (g_strv_contains(qemu_formats, format)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s images are not supported yet%s", format,
                    probed ? " (the format was probed; -f raw exports the file's bytes "
                             "as they are)" : "");
    } else {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Unknown driver '%s'",
                    format);
    }
    return false;
}

bool berth_nbd_open_image(const BerthNbdOptions *o, GError **errp)
{
    const char *format = o->format;
    bool probed = false;

    if (!format) {
        uint8_t sector[512];
        size_t len = sizeof(sector);
        if (read_first_sector(o->filename, sector, &len)) {
            format = bdrv_probe_format(sector, len);
            probed = true;
        }
        if (!format) {
            format = "raw";
        }
    }
    bool raw = strcmp(format, "raw") == 0;
    if (!raw && (!g_strv_contains(qemu_formats, format) || !bdrv_driver_exists(format))) {
        return refuse_format(format, probed, errp);
    }

    g_autoptr(json_object) args = NULL;
    if (raw) {
        args = file_options(o);
    } else {
        args = json_object_new_object();
        json_object_object_add(args, "driver", json_object_new_string(format));
        json_object_object_add(args, "file", file_options(o));
        json_object_object_add(args, "read-only", json_object_new_boolean(o->read_only));
    }
    json_object_object_add(args, "node-name", json_object_new_string(BERTH_NBD_NODE_NAME));
    if (o->discard) {
        json_object_object_add(args, "discard", json_object_new_string(o->discard));
    }
    if (o->detect_zeroes) {
        json_object_object_add(args, "detect-zeroes", json_object_new_string(o->detect_zeroes));
    }
    if (!qapi_run_command(qapi_find_command("blockdev-add"), args, false, NULL, errp)) {
        return false;
    }
    if (raw && probed) {
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                o->filename);
        bdrv_set_probed_raw(bdrv_find_node(BERTH_NBD_NODE_NAME));
    }
    return true;
}
