#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Soak test of the QMP monitor: add and remove an export 1,000 times while a
libnbd client keeps reading and writing another export.  No command may fail,
the client's data must stay intact, and berthd's resident memory after cycle
1000 must be within a small bound of its resident memory after cycle 100."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import berth_harness as bh  # noqa: E402

nbd = bh.import_nbd()

CYCLES = int(os.environ.get("BERTH_SOAK_CYCLES", "1000"))
RSS_CHECK_AT = 100
RSS_SLACK_KIB = 2 * 1024
# AddressSanitizer keeps freed memory in quarantine (256 MiB by default), so
# RSS climbs for a while in a sanitizer build whatever the daemon does; the
# leak check there is LeakSanitizer's at exit, and this bound only catches
# gross growth.
if bh.SANITIZED:
    RSS_SLACK_KIB = 64 * 1024
DISK_SIZE = 4 * bh.MiB
BLOCK = 4096


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Soak(bh.DaemonTestCase):

    def test_export_churn(self):
        qmp_path = self.path("qmp.sock")
        nbd_path = self.path("nbd.sock")
        args = (bh.qmp_monitor(qmp_path)
                + bh.nbd_server_unix(nbd_path)
                + bh.blockdev_file("disk", bh.make_sparse_file(self.path("disk.img"), DISK_SIZE))
                + bh.blockdev_null("churn", bh.MiB)
                + bh.nbd_export("data", "disk", name="data", writable=True))
        d = self.start_daemon(args, wait_for=qmp_path)
        mon = self.connect_qmp(qmp_path)

        stop = threading.Event()
        errors = []
        rounds = [0]

        def client():
            # Writes block i with a pattern that names the round, reads it
            # back, and checks an earlier block too.
            try:
                h = bh.nbd_connect(nbd, nbd_path, "data")
                nblocks = DISK_SIZE // BLOCK
                shadow = {}
                r = 0
                while not stop.is_set() and r < 10 ** 6:
                    i = r % nblocks
                    buf = (b"%08d:%08d;" % (r, i)) * (BLOCK // 18) 
                    buf = buf.ljust(BLOCK, b".")
                    h.pwrite(buf, i * BLOCK)
                    shadow[i] = buf
                    if h.pread(BLOCK, i * BLOCK) != buf:
                        raise AssertionError("block %d read back wrong in round %d" % (i, r))
                    j = (i * 7919) % nblocks
                    if j in shadow and h.pread(BLOCK, j * BLOCK) != shadow[j]:
                        raise AssertionError("block %d lost its data in round %d" % (j, r))
                    r += 1
                    rounds[0] = r
                # A final full check.
                for i, buf in shadow.items():
                    if h.pread(BLOCK, i * BLOCK) != buf:
                        raise AssertionError("block %d wrong at the end" % i)
                h.shutdown()
            except Exception as e:  # reported by the main thread
                errors.append(e)

        th = threading.Thread(target=client, daemon=True)
        th.start()

        rss_100 = None
        t0 = time.monotonic()
        for cycle in range(1, CYCLES + 1):
            r = mon.cmd("block-export-add", {"type": "nbd", "id": "churn",
                                             "node-name": "churn", "name": "churn"})
            self.assertEqual(r, {"return": {}}, "cycle %d: %r" % (cycle, r))
            if cycle % 100 == 0:
                # Now and then a client on the churned export, too.
                h = bh.nbd_connect(nbd, nbd_path, "churn")
                self.assertEqual(h.pread(512, 0), bytes(512))
                h.shutdown()
            r = mon.cmd("block-export-del", {"id": "churn"})
            if "error" in r and cycle % 100 == 0:
                # The client just left; the server may not have noticed yet.
                for _ in range(100):
                    time.sleep(0.01)
                    r = mon.cmd("block-export-del", {"id": "churn"})
                    if "error" not in r:
                        break
            self.assertEqual(r, {"return": {}}, "cycle %d: %r" % (cycle, r))
            deadline = time.monotonic() + 5
            while not any(e["event"] == "BLOCK_EXPORT_DELETED" for e in mon.events):
                self.assertLess(time.monotonic(), deadline,
                                "cycle %d: no BLOCK_EXPORT_DELETED" % cycle)
                mon.poll_events(0.01)
            mon.events = [e for e in mon.events if e["event"] != "BLOCK_EXPORT_DELETED"]
            self.assertFalse(errors, errors)
            if cycle == RSS_CHECK_AT:
                rss_100 = vm_rss_kib(d.pid)
        rss_end = vm_rss_kib(d.pid)
        elapsed = time.monotonic() - t0

        stop.set()
        th.join(timeout=20)
        self.assertFalse(th.is_alive(), "the NBD client did not finish")
        self.assertFalse(errors, errors)
        self.assertGreater(rounds[0], 0)
        r = mon.cmd("query-block-exports")
        self.assertEqual([e["id"] for e in r["return"]], ["data"])
        sys.stderr.write("%d cycles in %.1f s, %d client rounds, VmRSS %d KiB at "
                         "cycle %d, %d KiB at cycle %d\n"
                         % (CYCLES, elapsed, rounds[0], rss_100, RSS_CHECK_AT,
                            rss_end, CYCLES))
        if CYCLES >= RSS_CHECK_AT:
            self.assertLessEqual(rss_end, rss_100 + RSS_SLACK_KIB,
                                 "VmRSS grew from %d KiB to %d KiB" % (rss_100, rss_end))


if __name__ == "__main__":
    bh.TEST_TIMEOUT = max(bh.TEST_TIMEOUT, 90)
    bh.main()
