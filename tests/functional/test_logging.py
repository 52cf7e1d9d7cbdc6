#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What berthd says about its clients: -v logs each client connecting to
and leaving an export, --trace selects log domains (and file= sends them to
a file), and query-nbd-clients names a unix peer's pid and uid."""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

nbd = bh.import_nbd()


@bh.berth_only
class Logging(bh.DaemonTestCase):

    def serve(self, *log_args):
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        d = self.start_daemon(list(log_args)
                              + bh.blockdev_null("n0", 4 * MiB) + bh.nbd_server_unix(sock)
                              + bh.nbd_export("e0", "n0", "disk")
                              + bh.qmp_monitor(qmp), wait_for=sock)
        return d, sock, qmp

    def wait_for_text(self, path, text, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(path) as f:
                if text in f.read():
                    return
            time.sleep(0.05)
        with open(path) as f:
            self.fail("%r not in %s:\n%s" % (text, path, f.read()))

    def test_verbose_logs_clients(self):
        d, sock, qmp = self.serve("-v")
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock, "disk"))
        self.wait_for_text(d.stderr_path, "NBD client unix connected to export 'disk'")
        q = self.connect_qmp(qmp)
        clients = q.cmd("query-nbd-clients")["return"]
        self.assertEqual(len(clients), 1)
        self.assertEqual(clients[0]["peer-pid"], os.getpid())
        self.assertEqual(clients[0]["peer-uid"], os.getuid())
        self.assertNotIn("tls-identity", clients[0])
        h.shutdown()
        del h
        self.wait_for_text(d.stderr_path, "NBD client unix disconnected from export 'disk'")

    def test_quiet_by_default(self):
        d, sock, qmp = self.serve()
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock, "disk"))
        h.shutdown()
        time.sleep(0.2)
        with open(d.stderr_path) as f:
            self.assertNotIn("connected to export", f.read())

    def test_trace_to_file(self):
        log = self.path("trace.log")
        d, sock, qmp = self.serve("--trace", "enable=nbd-*,file=%s" % log)
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock, "disk"))
        self.wait_for_text(log, "berth-nbd-server: NBD client unix connected to export 'disk'")
        with open(d.stderr_path) as f:
            self.assertNotIn("connected to export", f.read())

    def test_trace_refusals(self):
        for arg, words in (("events=/x", "Trace event files are not supported"),
                           ("enable=*,bogus=1", "Invalid parameter 'bogus'")):
            with self.subTest(arg):
                d = bh.Daemon(["--trace", arg], self.tmpdir, name="t")
                d.start()
                self.assertEqual(d.wait_exit(), 1)
                self.assertIn(words, d.stderr())


if __name__ == "__main__":
    bh.main()
