/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd's image: -f FORMAT, or no -f and the format probed from the
 * first 512 bytes, as qemu-nbd does. A raw image is the file driver's node
 * itself; a probed raw image also gets QEMU's warning and its guard on
 * block 0 (bdrv_set_probed_raw()). An image format is opened QEMU's way,
 * driver=FORMAT over a file node, when blockdev-add has a driver of that
 * name at run time (so qcow2 works as soon as its driver is in the list);
 * until then such an image is refused by name, never exported as raw
 * bytes by surprise. With --image-opts FILE is the node's options instead.
 * With -s the image becomes the read-only backing node of a temporary
 * overlay (berth-nbd-snapshot.c), which is what is exported.
 */
#include "berth-nbd.h"
#include "berth/block/block.h"
#include "berth/qapi/qapi.h"
#include "util/json.h"
#include "util/keyval.h"

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

json_object *berth_nbd_file_options(const BerthNbdOptions *o, const char *filename,
                                    bool read_only)
{
    json_object *args = json_object_new_object();
    json_object *cache = json_object_new_object();

    json_object_object_add(args, "driver", json_object_new_string("file"));
    json_object_object_add(args, "filename", json_object_new_string(filename));
    json_object_object_add(args, "read-only", json_object_new_boolean(read_only));
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

/* -f FORMAT or probing: the node's options (typed JSON), NULL with errp. */
static json_object *format_options(const BerthNbdOptions *o, bool *probed_raw,
                                   GError **errp)
{
    const char *format = o->format;
    bool probed = false;
    json_object *args;

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
        refuse_format(format, probed, errp);
        return NULL;
    }
    /* With -s the image is only read: writes go to the overlay. */
    json_object *file = berth_nbd_file_options(o, o->filename, o->read_only || o->snapshot);
    if (raw) {
        args = file;
    } else {
        args = json_object_new_object();
        json_object_object_add(args, "driver", json_object_new_string(format));
        json_object_object_add(args, "file", file);
        json_object_object_add(args, "read-only",
                               json_object_new_boolean(o->read_only || o->snapshot));
    }
    *probed_raw = raw && probed;
    return args;
}

static void set_default(json_object *obj, const char *key, const char *value)
{
    if (!json_object_object_get_ex(obj, key, NULL)) {
        json_object_object_add(obj, key, json_object_new_string(value));
    }
}

/*
 * --image-opts: FILE is keyval options (strings), as qemu-nbd takes them;
 * berth-nbd's own settings (-r, --cache, --discard, --detect-zeroes,
 * --aio) apply where the options do not say otherwise, as QEMU's flags.
 */
static json_object *image_opts_options(const BerthNbdOptions *o, GError **errp)
{
    g_autoptr(json_object) args = keyval_parse(o->filename, NULL, errp);
    json_object *cache, *file;

    if (!args) {
        return NULL;
    }
    if (!json_object_object_get_ex(args, "driver", NULL)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "--image-opts needs a driver (driver=raw or driver=qcow2, ...)");
        return NULL;
    }
    if (json_object_object_get_ex(args, "node-name", NULL)) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "--image-opts: berth-nbd names the node itself; "
                            "remove node-name");
        return NULL;
    }
    set_default(args, "read-only", o->read_only ? "on" : "off");
    if (!json_object_object_get_ex(args, "cache", &cache)) {
        cache = json_object_new_object();
        json_object_object_add(args, "cache", cache);
    }
    if (json_object_is_type(cache, json_type_object)) {
        set_default(cache, "direct", o->cache_direct ? "on" : "off");
        set_default(cache, "no-flush", o->cache_no_flush ? "on" : "off");
    }
    if (o->aio) {
        json_object *drv;
        json_object_object_get_ex(args, "driver", &drv);
        if (strcmp(json_object_get_string(drv), "file") == 0) {
            set_default(args, "aio", o->aio);
        } else if (json_object_object_get_ex(args, "file", &file) &&
                   json_object_is_type(file, json_type_object) &&
                   json_object_object_get_ex(file, "driver", &drv) &&
                   strcmp(json_object_get_string(drv), "file") == 0) {
            set_default(file, "aio", o->aio);
        } else {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "--aio needs a file node (driver=file or "
                                "file.driver=file) in --image-opts");
            return NULL;
        }
    }
    return g_steal_pointer(&args);
}

static bool blockdev_add(json_object *args, bool keyval, GError **errp)
{
    return qapi_run_command(qapi_find_command("blockdev-add"), args, keyval, NULL, errp);
}

bool berth_nbd_open_image(const BerthNbdOptions *o, GError **errp)
{
    bool probed_raw = false;
    g_autoptr(json_object) args = o->image_opts ? image_opts_options(o, errp)
                                                : format_options(o, &probed_raw, errp);
    bool keyval = o->image_opts;
    /* With -s the image is the overlay's read-only backing node. */
    const char *name = o->snapshot ? BERTH_NBD_BASE_NODE_NAME : BERTH_NBD_NODE_NAME;

    if (!args) {
        return false;
    }
    json_object_object_add(args, "node-name", json_object_new_string(name));
    if (o->snapshot) {
        json_object_object_add(args, "read-only", keyval ? json_object_new_string("on")
                                                         : json_object_new_boolean(true));
    } else {
        if (o->discard) {
            set_default(args, "discard", o->discard);
        }
        if (o->detect_zeroes) {
            set_default(args, "detect-zeroes", o->detect_zeroes);
        }
    }
    if (!blockdev_add(args, keyval, errp)) {
        return false;
    }
    if (probed_raw) {
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                o->filename);
        bdrv_set_probed_raw(bdrv_find_node(name));
    }
    return !o->snapshot || berth_nbd_add_overlay(o, name, BERTH_NBD_NODE_NAME, errp);
}
