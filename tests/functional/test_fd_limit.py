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

import os
import socket
import struct
import sys
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

nbd = bh.import_nbd()

OPT_MAGIC = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9


def negotiated(path):
    """A raw connection in the transmission phase of the default export."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    bh_recv(s, 18)
    s.sendall(struct.pack(">I", 3))
    payload = struct.pack(">IH", 0, 0)
    s.sendall(struct.pack(">QII", OPT_MAGIC, 7, len(payload)) + payload)
    while True:
        magic, _, rtype, length = struct.unpack(">QIII", bh_recv(s, 20))
        assert magic == REPLY_MAGIC
        bh_recv(s, length)
        if rtype == 1:
            return s
        assert not rtype & 0x80000000, "NBD_OPT_GO refused: %#x" % rtype


def bh_recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


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
