/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the command line's option syntax. The input (after its
 * first byte, which picks the implied key: none as for --nbd-server,
 * "driver" as --blockdev, "qom-type" as --object, "type" as --export,
 * "chardev" as --monitor, "backend" as --chardev) is one option string for keyval_parse_with_help().
 * What it yields is then decoded, keyval=true, against the argument tables
 * of every QMP command that has them (what berthd does with an option, for
 * every table at once), and, where that stays inside the process, run: a
 * --blockdev of driver null-co or memory and an --object iothread or
 * authz-simple. Each input's nodes and objects are deleted again.
 *
 * Seeds (corpus/keyval/) are the option strings of the functional tests and
 * the documentation.
 */
#include "fuzz-util.h"

#include "berth/block/block.h"
#include "berth/qapi/qapi.h"
#include "berth/util/argspec.h"
#include "berth/util/qmp-command.h"
#include "util/keyval.h"

static const char *const implied_keys[] = { NULL, "driver", "qom-type", "type", "chardev",
                                             "backend" };

static void decode_with(const QmpCommandDef *cmd, gpointer opaque)
{
    json_object *args = opaque;
    if (!cmd->args) {
        return;
    }
    void *out = g_malloc0(cmd->args_size ? cmd->args_size : 1);
    GError *err = NULL;
    if (argspec_decode(cmd->args, args, true, out, &err)) {
        argspec_clear(cmd->args, out);
    } else if (!err) {
        fuzz_fail("%s: decoding failed without an error", cmd->name);
    }
    g_clear_error(&err);
    g_free(out);
}

static const char *member_string(json_object *obj, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_string)
           ? json_object_get_string(v) : NULL;
}

static bool one_of(const char *s, const char *const *set)
{
    for (; s && *set; set++) {
        if (strcmp(s, *set) == 0) {
            return true;
        }
    }
    return false;
}

/* Run the option when it stays inside this process. */
static void run_option(const char *implied, json_object *args)
{
    static const char *const drivers[] = { "null-co", "memory", NULL };
    static const char *const objects[] = { "iothread", "authz-simple", NULL };
    const char *cmd = NULL;

    if (g_strcmp0(implied, "driver") == 0 && one_of(member_string(args, "driver"), drivers)) {
        cmd = "blockdev-add";
    } else if (g_strcmp0(implied, "qom-type") == 0 &&
               one_of(member_string(args, "qom-type"), objects)) {
        cmd = "object-add";
    }
    if (cmd) {
        GError *err = NULL;
        if (!qapi_run_command(qapi_find_command(cmd), args, true, NULL, &err) && !err) {
            fuzz_fail("%s failed without an error", cmd);
        }
        g_clear_error(&err);
        bdrv_delete_all();
        qmp_object_del_all();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_glib_setup();
    qapi_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const char *implied = implied_keys[data[0] % G_N_ELEMENTS(implied_keys)];
    /* A C string: the command line cannot carry a NUL. */
    g_autofree char *str = g_strndup((const char *) data + 1, size - 1);
    GError *err = NULL;
    bool help = false;
    json_object *args = keyval_parse_with_help(str, implied, &help, &err);

    if (!args) {
        if (!err) {
            fuzz_fail("keyval_parse failed without an error");
        }
        g_clear_error(&err);
        return 0;
    }
    if (!json_object_is_type(args, json_type_object)) {
        fuzz_fail("keyval_parse returned a non-object");
    }
    qapi_foreach_command(decode_with, args);
    if (!help) {
        run_option(implied, args);
    }
    json_object_put(args);
    return 0;
}
