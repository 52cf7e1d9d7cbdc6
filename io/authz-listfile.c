/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * authz-listfile: an authz-list whose policy and rules come from a JSON
 * file. The file is read at creation (a bad file fails object-add); with
 * refresh=on, QEMU's default, a GFileMonitor on the control plane's
 * context reads it again each time a write to it is finished or a new file
 * takes its name. A reload that fails leaves no rules at all, so that every
 * identity is denied until the file is fixed (QEMU's documented rule: an
 * administrator who breaks the file must not find the old rules still
 * letting people in), and says why in a warning.
 */
#include "authz-int.h"
#include "util/tsan.h"

#include <gio/gio.h>
#include <string.h>

typedef struct {
    BerthAuthz parent;
    char *id;
    char *filename;
    GFileMonitor *monitor;
    GMutex lock;        /* guards set: checks may come from other threads */
    AuthzRuleSet *set;  /* NULL after a failed reload: deny everyone */
} AuthzListFile;

static AuthzRuleSet *listfile_load(const char *filename, GError **errp)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *contents = NULL;
    gsize len = 0;
    if (!g_file_get_contents(filename, &contents, &len, &local)) {
        qmp_error_setg(errp, "Unable to read '%s': %s", filename,
                       local->message);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    json_object *obj = json_tokener_parse_ex(tok, contents, (int) MIN(len, G_MAXINT));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = tok->char_offset >= 0 ? (size_t) tok->char_offset : 0;
    json_tokener_free(tok);
    if (jerr == json_tokener_continue) {
        /* Ran out of input: a value needs more, or there was none. */
        jerr = json_tokener_error_parse_eof;
    }
    if (jerr != json_tokener_success) {
        if (strspn(contents, " \t\r\n") == len) {
            qmp_error_setg(errp, "Expecting a JSON value");
        } else {
            qmp_error_setg(errp, "JSON parse error, %s",
                           json_tokener_error_desc(jerr));
        }
        json_object_put(obj);
        return NULL;
    }
    if (used > len || strspn(contents + used, " \t\r\n") != len - used) {
        qmp_error_setg(errp, "Expecting at most one JSON value");
        json_object_put(obj);
        return NULL;
    }
    AuthzRuleSet *set = NULL;
    if (!json_object_is_type(obj, json_type_object)) {
        qmp_error_setg(errp, "File '%s' must contain a JSON object",
                       filename);
    } else {
        set = authz_rule_set_from_object(obj, errp);
    }
    json_object_put(obj);
    return set;
}

static bool listfile_is_allowed(BerthAuthz *authz, const char *identity)
{
    AuthzListFile *lf = (AuthzListFile *) authz;
    berth_mutex_lock(&lf->lock);
    bool allowed = lf->set && authz_rule_set_allows(lf->set, identity);
    berth_mutex_unlock(&lf->lock);
    return allowed;
}

static void listfile_free(BerthAuthz *authz)
{
    AuthzListFile *lf = (AuthzListFile *) authz;
    if (lf->monitor) {
        g_signal_handlers_disconnect_by_data(lf->monitor, lf);
        g_file_monitor_cancel(lf->monitor);
        g_object_unref(lf->monitor);
    }
    authz_rule_set_unref(lf->set);
    berth_mutex_clear(&lf->lock);
    g_free(lf->id);
    g_free(lf->filename);
    g_free(lf);
}

static const BerthAuthzOps listfile_ops = {
    .is_allowed = listfile_is_allowed,
    .free = listfile_free,
};

static void listfile_reload(AuthzListFile *lf)
{
    g_autoptr(GError) err = NULL;
    AuthzRuleSet *set = listfile_load(lf->filename, &err);
    berth_mutex_lock(&lf->lock);
    AuthzRuleSet *old = lf->set;
    lf->set = set;
    berth_mutex_unlock(&lf->lock);
    authz_rule_set_unref(old);
    if (set) {
        g_message("authz-listfile '%s': reloaded %s", lf->id, lf->filename);
    } else {
        g_warning("authz-listfile '%s': denying everyone until %s can be loaded: %s",
                  lf->id, lf->filename, err->message);
    }
}

static void listfile_changed(GFileMonitor *monitor, GFile *file, GFile *other,
                             GFileMonitorEvent event, gpointer opaque)
{
    switch (event) {
    case G_FILE_MONITOR_EVENT_CHANGES_DONE_HINT: /* a write has finished */
    case G_FILE_MONITOR_EVENT_CREATED:           /* created, or renamed into place */
        listfile_reload(opaque);
        break;
    default:
        /* Mid-write changes wait for their hint; a deleted file keeps its rules. */
        break;
    }
}

static bool listfile_watch(AuthzListFile *lf, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(lf->filename);
    g_autofree char *base = g_path_get_basename(lf->filename);
    /* QEMU's checks, which is why "sub/x.json" passes and "x.json" does not. */
    if (g_str_equal(dir, ".")) {
        qmp_error_setg(errp, "Filename must be an absolute path");
        return false;
    }
    if (g_str_equal(base, ".")) {
        qmp_error_setg(errp, "Path has no trailing filename component");
        return false;
    }
    /* What GIO allocates here its monitor reads on GLib's worker thread,
     * after a hand-off TSan cannot see (util/tsan.h). */
    berth_tsan_ignore_begin();
    g_autoptr(GFile) file = g_file_new_for_path(lf->filename);
    g_autoptr(GError) local = NULL;
    lf->monitor = g_file_monitor_file(file, G_FILE_MONITOR_NONE, NULL, &local);
    berth_tsan_ignore_end();
    if (!lf->monitor) {
        qmp_error_setg(errp, "Unable to watch '%s': %s",
                       lf->filename, local->message);
        return false;
    }
    g_signal_connect(lf->monitor, "changed", G_CALLBACK(listfile_changed), lf);
    return true;
}

typedef struct {
    char *filename;
    bool refresh, has_refresh;
} AuthzListFileArgs;

static const ArgSpec listfile_members[] = {
    ARG_REQUIRED("filename", ARG_STR, AuthzListFileArgs, filename),
    ARG_OPTIONAL("refresh", ARG_BOOL, AuthzListFileArgs, refresh, has_refresh),
    ARG_TABLE_END
};
static const ArgSpec *const listfile_args[] = { listfile_members, NULL };

static gpointer listfile_create(const char *id, void *opaque, GError **errp)
{
    AuthzListFileArgs *a = opaque;
    AuthzRuleSet *set = listfile_load(a->filename, errp);
    if (!set) {
        return NULL;
    }
    AuthzListFile *lf = g_new0(AuthzListFile, 1);
    lf->parent.ops = &listfile_ops;
    lf->id = g_strdup(id);
    lf->filename = g_strdup(a->filename);
    g_mutex_init(&lf->lock);
    lf->set = set;
    if ((!a->has_refresh || a->refresh) && !listfile_watch(lf, errp)) {
        listfile_free(&lf->parent);
        return NULL;
    }
    return &lf->parent;
}

const QmpObjectType authz_listfile_type = {
    .name = BERTH_TYPE_AUTHZ_LIST_FILE,
    .args = listfile_args,
    .args_size = sizeof(AuthzListFileArgs),
    .create = listfile_create,
    .destroy = authz_object_destroy,
};
