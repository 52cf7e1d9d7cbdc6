/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Log selection for berth's programs. Every module logs under its own GLib
 * domain (berth-io, berth-block, berth-nbd-server, berth-nbd-client,
 * berth-nbd-proto, berth-monitor, berth-qapi, berth-util; the programs
 * themselves under "berth"). Warnings and messages are always written;
 * -v adds the informational lines (a client connecting to or leaving an
 * export, with its peer and TLS identity), -vv debug lines too, and
 * --trace PATTERN turns on both for the domains it names.
 *
 * Threads: set up once at start, before any thread; the writer itself runs
 * on any thread.
 */
#ifndef BERTH_TOOLS_LOG_H
#define BERTH_TOOLS_LOG_H

#include <glib.h>
#include <stdbool.h>

/* Each -v raises the verbosity by one. */
void berth_log_set_verbosity(int verbosity);

/*
 * --trace as qemu-storage-daemon spells it: [enable=]PATTERN[,file=PATH].
 * PATTERN is a glob on domain names, with or without their "berth-"
 * prefix ("nbd-*", "berth-block", "*"). May be given several times.
 * events= (QEMU's trace-event files) is refused.
 */
bool berth_log_add_trace(const char *arg, GError **errp);

/* Install the writer. */
void berth_log_init(const char *prog);

#endif
