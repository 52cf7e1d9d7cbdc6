#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""berthd at its open-file limit.

With no connection limit (max-connections=0), peers can open connections
until accept() fails with EMFILE. The listening socket stays readable
meanwhile, so a server that keeps watching it spins on the failure (and
logs it thousands of times a second: qemu-storage-daemon 7.2 does both,
at a full core). berthd stops watching and tries again after a wait that
doubles to 1.6 s, says so once, keeps serving the connections and monitor
sessions it has, and accepts again once descriptors are free. berthd also
raises its soft open-file limit to the hard one at start, as QEMU does.

Raw sockets: the connections over the limit only wait in the backlog."""

import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import nbd_wire as w
from berth_harness import MiB

nbd = bh.import_nbd()

def negotiated(path):
    """A raw connection in the transmission phase of the default export."""
    return w.RawClient(path, timeout=30).connect_export("", structured=False)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@bh.berth_only
@unittest.skipIf(bh.VALGRIND, "valgrind needs descriptors of its own above the limit")
class FdLimit(bh.DaemonTestCase):
    def start(self, nofile):
        self.sock = self.path("nbd.sock")
        self.qmp_path = self.path("qmp.sock")
        args = (["--blockdev", "null-co,node-name=n0,size=%d" % (64 * MiB)]
                + ["--nbd-server", "addr.type=unix,addr.path=%s,max-connections=0"
                   % bh.opt_escape(self.sock)]
                + ["--export", "nbd,id=e0,node-name=n0,name="]
                + bh.qmp_monitor(self.qmp_path))
        self.daemon = self.start_daemon(args, wait_for=self.sock, nofile=nofile)
        self.qmp = self.connect_qmp(self.qmp_path)

    def stderr(self):
        with open(self.daemon.stderr_path, errors="replace") as f:
            return f.read()

    def test_emfile_backs_off_and_recovers(self):
        self.start((48, 48))
        conns = []
        for _ in range(80):            # more than 48 descriptors; the rest wait
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            conns.append(s)
        deadline = time.monotonic() + 10
        while "Too many open files" not in self.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        before = cpu_ticks(self.daemon.pid)
        time.sleep(2)
        spent = cpu_ticks(self.daemon.pid) - before
        # The monitor session it had still answers.
        r = self.qmp.cmd("query-block-exports")
        self.assertEqual(r["return"][0]["id"], "e0")
        # Said once, not once per wake-up; and not spinning (a spinning
        # loop takes about 200 ticks in these 2 s).
        self.assertEqual(self.stderr().count("accept failed: Too many open files"), 1,
                         self.stderr()[-2000:])
        self.assertLess(spent, 50, "CPU ticks in 2 s at the limit")
        for s in conns:
            s.close()
        # Free again: a new client negotiates, and the end of the episode is told.
        h = nbd.NBD()
        h.connect_unix(self.sock)
        self.assertEqual(h.get_size(), 64 * MiB)
        h.shutdown()
        deadline = time.monotonic() + 10
        while "accepting connections again" not in self.stderr() and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("accepting connections again", self.stderr())

    def test_soft_limit_raised_to_hard(self):
        """A soft limit of 64 under a hard one of 1024: berthd serves 200
        negotiated connections at once."""
        self.start((64, 1024))
        conns = [negotiated(self.sock) for _ in range(200)]
        self.assertEqual(len(self.qmp.cmd("query-nbd-clients")["return"]), 200)
        for s in conns:
            s.close()
        self.assertNotIn("accept failed", self.stderr())


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
