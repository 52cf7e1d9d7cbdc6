/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The monitor module's one-time setup: the command table below it, and the
 * events its sessions emit. Chardevs (chardev.c) and sessions (session.c)
 * call it before their first use, so an embedder that only creates a
 * monitor never has to.
 */
#include "monitor-int.h"
#include "berth/qapi/qapi.h"

void monitor_init(void)
{
    static bool done;

    if (!done) {
        done = true;
        qapi_init();
        monitor_session_init_events();
    }
}
