/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Log selection: see berth-log.h. */
#include "berth-log.h"
#include "util/json.h"
#include "util/keyval.h"

#include <errno.h>

#include <gio/gio.h>
#include <stdio.h>
#include <string.h>

static int verbosity;
static GPtrArray *patterns;     /* char *: globs on domains */
static FILE *log_file;          /* --trace file=, else stderr */
static const char *log_prog = "berth";

void berth_log_set_verbosity(int v)
{
    verbosity = v;
}

bool berth_log_add_trace(const char *arg, GError **errp)
{
    g_autoptr(json_object) opts = keyval_parse(arg, "enable", errp);
    if (!opts) {
        return false;
    }
    const char *enable = NULL, *file = NULL;
    json_object_object_foreach(opts, key, val) {
        if (!json_object_is_type(val, json_type_string)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Invalid parameter type for '%s', expected: string", key);
            return false;
        }
        if (strcmp(key, "enable") == 0) {
            enable = json_object_get_string(val);
        } else if (strcmp(key, "file") == 0) {
            file = json_object_get_string(val);
        } else if (strcmp(key, "events") == 0) {
            g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                "Trace event files are not supported: berth traces by log "
                                "domain (--trace PATTERN, e.g. --trace 'nbd-*')");
            return false;
        } else {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "Invalid parameter '%s'", key);
            return false;
        }
    }
    if (file) {
        FILE *f = fopen(file, "a");
        if (!f) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Could not open '%s': %s", file,
                        g_strerror(errno));
            return false;
        }
        setvbuf(f, NULL, _IOLBF, 0);
        if (log_file) {
            fclose(log_file);
        }
        log_file = f;
    }
    if (enable) {
        if (!patterns) {
            patterns = g_ptr_array_new_with_free_func(g_free);
        }
        g_ptr_array_add(patterns, g_strdup(enable));
    }
    return true;
}

static bool traced(const char *domain)
{
    if (!patterns || !domain) {
        return false;
    }
    const char *shortname = g_str_has_prefix(domain, "berth-") ? domain + 6 : domain;
    for (guint i = 0; i < patterns->len; i++) {
        const char *p = g_ptr_array_index(patterns, i);
        if (g_pattern_match_simple(p, domain) || g_pattern_match_simple(p, shortname)) {
            return true;
        }
    }
    return false;
}

static GLogWriterOutput writer(GLogLevelFlags level, const GLogField *fields, gsize n,
                               gpointer opaque)
{
    const char *domain = NULL, *message = NULL;
    for (gsize i = 0; i < n; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0) {
            domain = fields[i].value;
        } else if (strcmp(fields[i].key, "MESSAGE") == 0) {
            message = fields[i].value;
        }
    }
    /* Warnings and messages look as GLib writes them. */
    if (!(level & (G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG))) {
        return g_log_writer_default(level, fields, n, opaque);
    }
    bool show = traced(domain) ||
                verbosity >= ((level & G_LOG_LEVEL_DEBUG) ? 2 : 1);
    if (!show) {
        /* G_MESSAGES_DEBUG still works as GLib documents it. */
        return g_log_writer_default(level, fields, n, opaque);
    }
    FILE *out = log_file ? log_file : stderr;
    fprintf(out, "%s: %s: %s: %s\n", log_prog, (level & G_LOG_LEVEL_INFO) ? "info" : "debug",
            domain ? domain : "berth", message ? message : "");
    fflush(out);
    return G_LOG_WRITER_HANDLED;
}

void berth_log_init(const char *prog)
{
    log_prog = prog;
    g_log_set_writer_func(writer, NULL, NULL);
}
