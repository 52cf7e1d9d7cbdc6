/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the QMP monitor, from bytes to replies. The input is
 * what a QMP client sends on one connection (monitor_serve_fd() on a
 * socketpair): the JSON reader splits and parses it, the dispatcher checks
 * and decodes each request and runs the command for real — nodes, drives,
 * exports, objects, the NBD server — and the replies are read and thrown
 * away. After the peer hangs up the session must close, and everything the
 * input made is taken down (as berthd does at exit) before the next input,
 * with no leak.
 *
 * Commands do what they say, so the target keeps them in a sandbox of
 * sorts: it runs in a network namespace of its own (no address but an
 * unconfigured loopback, so nbd-server-start and driver=nbd cannot reach
 * or open anything outside the process) and in a temporary directory. It
 * can still open files named by absolute paths: run it as an unprivileged
 * user for long runs (docs/security.rst).
 *
 * Seeds (corpus/qmp/) are QMP sessions recorded from the functional
 * tests' clients by tests/fuzz/record-qmp-traces.py.
 */
#include "fuzz-util.h"

#include "berth/block/block-backend.h"
#include "berth/block/block.h"
#include "berth/monitor/monitor.h"
#include "berth/nbd/server.h"
#include "berth/qapi/qapi.h"
#include "berth/util/qmp-command.h"

#include <sched.h>

static void enter_sandbox(void)
{
    if (unshare(CLONE_NEWNET) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0 &&
        !g_getenv("BERTH_FUZZ_QMP_ALLOW_NETWORK")) {
        fuzz_fail("cannot enter a network namespace of its own (%s); set "
                  "BERTH_FUZZ_QMP_ALLOW_NETWORK=1 to fuzz with the host's network",
                  g_strerror(errno));
    }
    if (chdir(fuzz_tmpdir()) < 0) {
        fuzz_fail("chdir %s: %s", fuzz_tmpdir(), g_strerror(errno));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_glib_setup();
    enter_sandbox();
    monitor_init();
    return 0;
}

static bool sessions_closed(gpointer opaque)
{
    return monitor_session_count() == 0;
}

/* Threads of this process whose name starts with `prefix`. */
static int threads_named(const char *prefix)
{
    g_autoptr(GDir) dir = g_dir_open("/proc/self/task", 0, NULL);
    const char *tid;
    int n = 0;
    while (dir && (tid = g_dir_read_name(dir))) {
        g_autofree char *path = g_strdup_printf("/proc/self/task/%s/comm", tid);
        g_autofree char *comm = NULL;
        if (g_file_get_contents(path, &comm, NULL, NULL) && g_str_has_prefix(comm, prefix)) {
            n++;
        }
    }
    return n;
}

/*
 * An NBD node's reconnect attempt runs on a thread of its own that the
 * node does not wait for when it goes (it finishes within the negotiation
 * timeout and reports to nobody, as QEMU's does). Before the next input,
 * and before libFuzzer counts what this one leaked, those threads must
 * have ended: their sockets and buffers are this input's. One that is
 * still there after FUZZ_DEADLINE_SEC is a finding.
 */
static bool reconnect_threads_gone(gpointer opaque)
{
    return threads_named("nbd-reconnect") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    fuzz_socketpair(sv);
    monitor_serve_fd(sv[0], false);

    FuzzPeer peer;
    fuzz_peer_init(&peer, sv[1], data, size);
    fuzz_run_until(&peer, sessions_closed, NULL, "the QMP session");
    fuzz_peer_close(&peer);

    /* What the input made goes, in berthd's order (tools/berthd.c). */
    if (nbd_server_is_running()) {
        qapi_run_command(qapi_find_command("nbd-server-stop"), NULL, false, NULL, NULL);
    }
    nbd_export_close_all();
    blk_delete_all();
    bdrv_delete_all();
    qmp_object_del_all();
    fuzz_drain_main_context();
    fuzz_run_until(NULL, reconnect_threads_gone, NULL, "an NBD reconnect attempt");
    return 0;
}
