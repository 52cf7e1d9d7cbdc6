#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Fault injection with the blkdebug filter, seen from an NBD client.

A blkdebug node over a file fails the requests its inject-error rules
match; the client must get the NBD error that stands for the errno (libnbd
raises with that errno), the connection must stay usable, a failing flush
must be reported, once=on must fail one request only, a request failing
inside a batch fails alone, and a slow node (berth's x-delay-ms) must not
hold up another export or the monitor.  set-state rules move the node's
state (1 at the start) so that "fail the 3rd write" can be written as QEMU
users do, and inject-error rules stay active as QEMU keeps them.

The rules use events that qemu-storage-daemon 7.2 fires for the same
stack (pwritev on the blkdebug node for a write it receives,
flush_to_disk on it when the raw node above it is flushed), so the shared
cases run against QSD too (BERTHD=qemu-storage-daemon).  berth fires
read_aio for every read its blkdebug receives, where QEMU fires it only
from inside format drivers: those cases, x-delay-ms and berth's refusals
are berth-only."""

import errno
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

DISK = 4 * MiB


class Blkdebug(bh.DaemonTestCase):

    def serve(self, rules, over_raw=False, extra=(), set_state=(), options=""):
        """An export 'e' of blkdebug(rules, set_state) over a file, or of a
        raw node over that blkdebug node; returns (daemon, handle, image)."""
        img = bh.make_pattern_file(self.path("disk.img"), DISK, seed=1)
        sock = self.path("nbd.sock")
        qmp = self.path("qmp.sock")
        bd = "driver=blkdebug,node-name=dbg,image.driver=file,image.filename=%s" % (
            bh.opt_escape(img))
        bd += options
        for i, rule in enumerate(rules):
            for k, v in rule.items():
                bd += ",inject-error.%d.%s=%s" % (i, k, v)
        for i, rule in enumerate(set_state):
            for k, v in rule.items():
                bd += ",set-state.%d.%s=%s" % (i, k, v)
        args = ["--blockdev", bd]
        node = "dbg"
        if over_raw:
            args += ["--blockdev", "driver=raw,node-name=top,file=dbg"]
            node = "top"
        args += list(extra)
        args += bh.nbd_server_unix(sock) + bh.qmp_monitor(qmp)
        args += bh.nbd_export("e", node, name="e", writable=True)
        d = self.start_daemon(args, wait_for=sock)
        h = bh.nbd_connect(nbd, sock, "e")
        self.addCleanup(h.shutdown)
        return d, h, img

    def assert_nbd_errno(self, expected, func, *args):
        with self.assertRaises(nbd.Error) as cm:
            func(*args)
        # libnbd gives the errno by name ('EIO').
        self.assertEqual(cm.exception.errno, errno.errorcode[expected], cm.exception.string)

    def test_write_errors_reach_the_client(self):
        """EIO, ENOSPC and EROFS (NBD's EPERM) for writes in three ranges;
        the connection serves on after each."""
        rules = [
            {"event": "pwritev", "iotype": "write", "errno": errno.EIO, "sector": 8},
            {"event": "pwritev", "iotype": "write", "errno": errno.ENOSPC, "sector": 16},
            {"event": "pwritev", "iotype": "write", "errno": errno.EROFS, "sector": 24},
        ]
        _, h, img = self.serve(rules)
        block = b"\xab" * 4096
        self.assert_nbd_errno(errno.EIO, h.pwrite, block, 4096)
        self.assert_nbd_errno(errno.ENOSPC, h.pwrite, block, 8192)
        self.assert_nbd_errno(errno.EPERM, h.pwrite, block, 12288)
        # Outside every range the writes go through, on the same connection.
        h.pwrite(block, 0)
        h.pwrite(block, 16384)
        h.flush()
        self.assertEqual(h.pread(4096, 0), block)
        with open(img, "rb") as f:
            f.seek(4096)
            self.assertNotEqual(f.read(4096), block)

    def test_failing_flush_is_reported(self):
        _, h, _ = self.serve([{"event": "flush_to_disk", "iotype": "flush"}], over_raw=True)
        h.pwrite(b"x" * 512, 0)
        self.assert_nbd_errno(errno.EIO, h.flush)
        # And again: the rule stays, every flush fails.
        self.assert_nbd_errno(errno.EIO, h.flush)
        self.assertEqual(h.pread(512, 0), b"x" * 512)

    def test_once_fails_one_request(self):
        _, h, _ = self.serve([{"event": "pwritev", "iotype": "write", "errno": errno.ENOSPC,
                               "once": "on"}])
        self.assert_nbd_errno(errno.ENOSPC, h.pwrite, b"a" * 512, 0)
        for i in range(5):
            h.pwrite(b"b" * 512, 512 * i)
        self.assertEqual(h.pread(512, 0), b"b" * 512)

    def test_failure_inside_a_batch_fails_alone(self):
        """Sixteen writes in flight at once, one of them on the bad sector."""
        _, h, _ = self.serve([{"event": "pwritev", "iotype": "write", "errno": errno.EIO,
                               "sector": 7 * 8}])
        bufs = [nbd.Buffer.from_bytearray(bytearray([i + 1]) * 4096) for i in range(16)]
        cookies = [h.aio_pwrite(bufs[i], 4096 * i) for i in range(16)]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        failed = []
        for i, c in enumerate(cookies):
            try:
                h.aio_command_completed(c)
            except nbd.Error as e:
                self.assertEqual(e.errno, "EIO")
                failed.append(i)
        self.assertEqual(failed, [7])
        for i in range(16):
            if i != 7:
                self.assertEqual(h.pread(4096, 4096 * i), bytes([i + 1]) * 4096)

    @bh.berth_only
    def test_read_errors_and_iotype(self):
        """berth fires read_aio for each read; iotype narrows a rule."""
        rules = [
            {"event": "read_aio", "errno": errno.EIO, "sector": 0, "once": "on"},
            {"event": "none", "iotype": "write-zeroes", "errno": errno.ENOSPC},
            {"event": "none", "iotype": "block-status", "errno": errno.EIO},
        ]
        _, h, _ = self.serve(rules, over_raw=True)
        self.assert_nbd_errno(errno.EIO, h.pread, 512, 0)
        h.pread(512, 0)
        self.assert_nbd_errno(errno.ENOSPC, h.zero, 4096, 0)
        h.pwrite(b"\0" * 4096, 0)       # a write is not write-zeroes
        h.trim(4096, 0)                 # nor is a discard

    @bh.berth_only
    def test_slow_node_does_not_block_others(self):
        """x-delay-ms=1500 on one export: another export and the monitor
        answer at once while its requests wait."""
        fast_img = bh.make_sparse_file(self.path("fast.img"), DISK)
        extra = bh.blockdev_file("fast", fast_img)
        _, h, _ = self.serve([], extra=extra)
        # x-delay-ms on a second blkdebug node added over QMP, exported.
        q = self.connect_qmp(self.path("qmp.sock"))
        r = q.cmd("blockdev-add", {"driver": "blkdebug", "node-name": "slow",
                                   "image": "fast", "x-delay-ms": 1500})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "es", "node-name": "slow",
                                       "name": "slow"})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "ef", "node-name": "fast",
                                       "name": "fast"})
        self.assertEqual(r, {"return": {}})
        sock = self.path("nbd.sock")
        slow = bh.nbd_connect(nbd, sock, "slow")
        self.addCleanup(slow.shutdown)
        fast = bh.nbd_connect(nbd, sock, "fast")
        self.addCleanup(fast.shutdown)
        buf = nbd.Buffer(4096)
        start = time.monotonic()
        cookies = [slow.aio_pread(buf, 0) for _ in range(4)]
        for _ in range(20):
            fast.pread(4096, 0)
            h.pread(4096, 0)
        self.assertIn("return", q.cmd("query-named-block-nodes"))
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 1.0, "other exports or the monitor waited for the slow node")
        while slow.aio_in_flight() > 0:
            slow.poll(-1)
        for c in cookies:
            self.assertTrue(slow.aio_command_completed(c))
        self.assertGreaterEqual(time.monotonic() - start, 1.4)

    @bh.berth_only
    def test_unsupported_options_are_refused(self):
        _, _, img = self.serve([])
        q = self.connect_qmp(self.path("qmp.sock"))
        base = {"driver": "blkdebug", "node-name": "x", "image": "dbg"}
        cases = [
            ({"config": "/dev/null"}, "blkdebug option 'config' is not supported by berth"),
            ({"set-state": [{"event": "l2_load", "new_state": 2}]},
             "blkdebug event 'l2_load' is not supported by berth"),
            ({"align": 4096}, "blkdebug option 'align' is not supported by berth"),
            ({"inject-error": [{"event": "l2_load"}]},
             "blkdebug event 'l2_load' is not supported by berth"),
            ({"inject-error": [{"event": "none", "errno": -1}]},
             "inject-error[0].errno must be between 0 and 4095"),
        ]
        for extra, text in cases:
            r = q.cmd("blockdev-add", dict(base, **extra))
            self.assertIn("error", r, extra)
            self.assertIn(text, r["error"]["desc"])
        self.assertEqual(q.cmd("blockdev-add", dict(base))["return"], {})

    def writes(self, h, n, start=0):
        """n 4 KiB writes, one after the other, at 4 KiB steps from start;
        the errno name of each that failed, or None."""
        out = []
        for i in range(start, start + n):
            try:
                h.pwrite(bytes([0x40 + i]) * 4096, 4096 * i)
                out.append(None)
            except nbd.Error as e:
                out.append(e.errno)
        return out

    # set-state chains on pwritev, the event both fire for each write the
    # blkdebug node receives: state 1 -> 2 -> 3 -> 4, one step per write.
    CHAIN = [{"event": "pwritev", "state": n, "new_state": n + 1} for n in (1, 2, 3)]

    def test_set_state_fails_the_third_write_only(self):
        rules = [{"event": "pwritev", "state": 3, "iotype": "write", "errno": errno.EIO,
                  "once": "on"}]
        _, h, img = self.serve(rules, set_state=self.CHAIN)
        self.assertEqual(self.writes(h, 6), [None, None, "EIO", None, None, None])
        # The failed write left the file alone; the others are there.
        with open(img, "rb") as f:
            data = f.read(6 * 4096)
        for i in range(6):
            block = data[4096 * i:4096 * (i + 1)]
            if i == 2:
                self.assertNotEqual(block, bytes([0x42]) * 4096)
            else:
                self.assertEqual(block, bytes([0x40 + i]) * 4096, "write %d" % (i + 1))

    def test_active_rule_outlives_its_state(self):
        """QEMU keeps an inject-error rule active until another event's
        inject-error rules replace it: without once=on, a rule for state 2
        goes on failing writes (and reads: its iotype is the default) in
        states 3 and 4, until a rule with errno=0 for state 4 replaces it."""
        rules = [{"event": "pwritev", "state": 2, "errno": errno.ENOSPC},
                 {"event": "pwritev", "state": 5, "errno": 0}]
        chain = self.CHAIN + [{"event": "pwritev", "state": 4, "new_state": 5}]
        _, h, _ = self.serve(rules, set_state=chain)
        self.assertEqual(self.writes(h, 1), [None])                 # state 1 -> 2
        h.pread(4096, 0)                                            # nothing active yet
        self.assertEqual(self.writes(h, 3, 1), ["ENOSPC"] * 3)      # states 2, 3, 4
        if not bh.is_qsd():
            # qemu-storage-daemon 7.2 fails this read too, but then drops
            # the connection ("Failed to send reply: reading from file
            # failed"), as it does after any failed structured read.
            self.assert_nbd_errno(errno.ENOSPC, h.pread, 4096, 0)
        self.assertEqual(self.writes(h, 2, 4), [None, None])        # state 5: errno 0
        self.assertEqual(h.pread(4096, 0), bytes([0x40]) * 4096)

    def test_set_state_any_state_and_first_rule_wins(self):
        """A set-state rule without state acts in every state; of two that
        act on one event, the first in the list sets the state. Every rule
        of an event sees the state the event found."""
        rules = [{"event": "pwritev", "state": 7, "iotype": "write", "errno": errno.EIO},
                 {"event": "pwritev", "state": 9, "iotype": "write", "errno": errno.ENOSPC}]
        chain = [{"event": "pwritev", "new_state": 7},
                 {"event": "pwritev", "state": 1, "new_state": 9}]
        _, h, _ = self.serve(rules, set_state=chain)
        # 1st write: state 1 -> 7 (the first rule wins); nothing acts in 1.
        # 2nd: the state-7 rule acts and fails it, and the state stays 7.
        self.assertEqual(self.writes(h, 3), [None, "EIO", "EIO"])

    @bh.berth_only
    def test_set_state_by_qmp_and_its_errors(self):
        _, h, _ = self.serve([])
        q = self.connect_qmp(self.path("qmp.sock"))
        base = {"driver": "blkdebug", "image": "dbg"}
        r = q.cmd("blockdev-add", dict(base, **{
            "node-name": "x", "set-state": [{"event": "pwritev", "new_state": 2}],
            "inject-error": [{"event": "pwritev", "state": 2, "iotype": "write",
                              "errno": errno.EROFS, "once": True}]}))
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "ex", "node-name": "x",
                                       "name": "x", "writable": True})
        self.assertEqual(r, {"return": {}})
        hx = bh.nbd_connect(nbd, self.path("nbd.sock"), "x")
        self.addCleanup(hx.shutdown)
        self.assertEqual(self.writes(hx, 3), [None, "EPERM", None])  # EROFS is NBD's EPERM
        cases = [
            ({"set-state": [{"event": "pwritev"}]},
             "Parameter 'set-state[0].new_state' is missing"),
            ({"set-state": [{"event": "pwritev", "new_state": 2, "foo": 1}]},
             "Parameter 'set-state[0].foo' is unexpected"),
            ({"set-state": {"event": "pwritev"}},
             "Invalid parameter type for 'set-state', expected: array"),
            ({"set-state": [{"event": "cluster_alloc", "new_state": 2}]},
             "blkdebug event 'cluster_alloc' is not supported by berth"),
        ]
        for extra, text in cases:
            r = q.cmd("blockdev-add", dict(base, **{"node-name": "y"}, **extra))
            self.assertIn("error", r, extra)
            self.assertIn(text, r["error"]["desc"], extra)

    @bh.berth_only
    def test_immediately_skips_the_delay(self):
        """x-delay-ms=800: a rule with immediately=on fails its write at
        once; without it the failure waits like any request."""
        rules = [{"event": "pwritev", "iotype": "write", "errno": errno.EIO, "sector": 0,
                  "immediately": "on"},
                 {"event": "pwritev", "iotype": "write", "errno": errno.EIO, "sector": 8}]
        _, h, _ = self.serve(rules, options=",x-delay-ms=800")
        start = time.monotonic()
        self.assert_nbd_errno(errno.EIO, h.pwrite, b"i" * 512, 0)
        self.assertLess(time.monotonic() - start, 0.5)
        start = time.monotonic()
        self.assert_nbd_errno(errno.EIO, h.pwrite, b"d" * 512, 4096)
        self.assertGreaterEqual(time.monotonic() - start, 0.75)

    def test_qemu_errors_for_bad_rules(self):
        """Texts that berth shares with qemu-storage-daemon."""
        _, _, _ = self.serve([])
        q = self.connect_qmp(self.path("qmp.sock"))
        base = {"driver": "blkdebug", "node-name": "x", "image": "dbg"}
        cases = [
            ({"inject-error": [{"event": "bogus"}]},
             "Parameter 'event' does not accept value 'bogus'"),
            ({"inject-error": [{"event": "none", "iotype": "bogus"}]},
             "Parameter 'iotype' does not accept value 'bogus'"),
            ({"inject-error": [{"event": "none", "foo": 1}]},
             "Parameter 'inject-error[0].foo' is unexpected"),
            ({"x-no-such": 1}, "Parameter 'x-no-such' is unexpected"),
        ]
        for extra, text in cases:
            r = q.cmd("blockdev-add", dict(base, **extra))
            self.assertEqual(r.get("error", {}).get("desc"), text, extra)


if __name__ == "__main__":
    bh.main()
