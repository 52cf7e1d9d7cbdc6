/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals shared by the files of qapi/: the session of the request being
 * dispatched (qmp_capabilities changes it) and the quit hook.
 * Threads: main context's thread only.
 */
#ifndef BERTH_QAPI_QAPI_INT_H
#define BERTH_QAPI_QAPI_INT_H

#include "berth/qapi/qapi.h"

/* The session of the request being dispatched, or NULL outside dispatch
 * (berthd calling a command directly). Borrowed. */
QmpSession *qapi_current_session(void);

/* Runs the host's quit handler; false if none is installed. */
bool qapi_call_quit_handler(void);

#endif
