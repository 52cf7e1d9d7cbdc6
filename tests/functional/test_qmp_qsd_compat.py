#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The same qemu-storage-daemon command line and QMP script, run unchanged
against berthd and against qemu-storage-daemon 7.2: the replies and events
must be the same after filtering (temporary paths, timestamps).

Skipped when qemu-storage-daemon is not installed, or when the daemon under
test is qemu-storage-daemon itself."""

import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import berth_harness as bh  # noqa: E402

nbd = bh.import_nbd()
QSD = shutil.which("qemu-storage-daemon")


def script(d):
    """(command, arguments) pairs; d is the daemon's temporary folder."""
    img2 = os.path.join(d, "two.img")
    return [
        ("query-block-exports", None),
        ("blockdev-add", {"driver": "file", "node-name": "disk1", "filename": img2}),
        ("blockdev-add", {"driver": "file", "node-name": "disk1", "filename": img2}),
        ("blockdev-add", {"driver": "null-co", "node-name": "null0", "size": 1048576,
                          "read-zeroes": True}),
        ("blockdev-add", {"driver": "file", "node-name": "ro0", "filename": img2,
                          "read-only": True}),
        ("nbd-server-add", {"device": "disk1", "name": "two", "writable": True}),
        ("nbd-server-add", {"device": "disk1", "name": "two"}),
        ("nbd-server-add", {"device": "nope"}),
        ("block-export-add", {"type": "nbd", "id": "exp-null", "node-name": "null0",
                              "name": "null", "description": "zeroes"}),
        ("block-export-add", {"type": "nbd", "id": "exp-null", "node-name": "null0"}),
        ("block-export-add", {"type": "nbd", "id": "exp-x", "node-name": "null0",
                              "name": "null"}),
        ("block-export-add", {"type": "nbd", "id": "exp-ro", "node-name": "ro0",
                              "writable": True}),
        ("block-export-add", {"type": "nbd", "node-name": "null0"}),
        ("query-block-exports", None),
        ("@client", "two"),
        # (safe removal with a client connected differs on purpose: QEMU 7.2
        # refuses, berth drains; see qmp/block-export.py)
        ("nbd-server-remove", {"name": "two", "mode": "hard"}),
        ("@event", "BLOCK_EXPORT_DELETED"),
        ("block-export-del", {"id": "exp-null"}),
        ("@event", "BLOCK_EXPORT_DELETED"),
        ("block-export-del", {"id": "exp-null"}),
        ("block-export-del", {"id": "exp0", "mode": "soon"}),
        ("query-block-exports", None),
        ("blockdev-del", {"node-name": "disk0"}),
        ("blockdev-del", {"node-name": "null0"}),
        ("blockdev-del", {"node-name": "null0"}),
        ("blockdev-del", {"node-name": "ro0"}),
        ("nbd-server-start", {"addr": {"type": "unix",
                                       "data": {"path": os.path.join(d, "other.sock")}}}),
        ("nbd-server-stop", None),
        ("@event", "BLOCK_EXPORT_DELETED"),
        ("nbd-server-stop", None),
        ("query-block-exports", None),
        ("nbd-server-start", {"addr": {"type": "unix",
                                       "data": {"path": os.path.join(d, "other.sock")}}}),
        ("block-export-add", {"type": "nbd", "id": "again", "node-name": "disk1"}),
        ("query-block-exports", None),
        ("no-such-command", None),
        ("query-version", {"bogus": 1}),
        ("blockdev-del", None),
        ("quit", None),
    ]


class Compat(bh.DaemonTestCase):

    def run_once(self, daemon_path, tag):
        d = os.path.join(self.tmpdir, tag)
        os.mkdir(d)
        img = bh.make_sparse_file(os.path.join(d, "disk.img"), bh.MiB)
        bh.make_sparse_file(os.path.join(d, "two.img"), 2 * bh.MiB)
        qmp_path = os.path.join(d, "qmp.sock")
        nbd_path = os.path.join(d, "nbd.sock")
        args = (["--blockdev", "driver=file,node-name=disk0,filename=%s" % img,
                 "--nbd-server", "addr.type=unix,addr.path=%s" % nbd_path,
                 "--export", "type=nbd,id=exp0,node-name=disk0,name=disk0,writable=on"]
                + bh.qmp_monitor(qmp_path))
        daemon = self.start_daemon(args, wait_for=qmp_path, name=tag, exe=daemon_path,
                                   workdir=d, stop_check=False)
        log = []

        def norm(obj):
            # berth's own members of query-block-exports are documented
            # additions, not part of the shared contract
            if isinstance(obj, dict) and isinstance(obj.get("return"), list):
                for item in obj["return"]:
                    if isinstance(item, dict) and item.get("type") == "nbd":
                        for extra in ("name", "writethrough", "clients", "stats"):
                            item.pop(extra, None)
            s = json.dumps(obj, sort_keys=True).replace(d, "DIR")
            return re.sub(r'"timestamp": \{[^}]*\}', '"timestamp": T', s)

        mon = bh.QMPConnection(qmp_path)
        self.addCleanup(mon.close)
        log.append("greeting capabilities %s" % mon.greeting["QMP"]["capabilities"])
        log.append(norm(mon.cmd("qmp_capabilities")))
        handles = []
        for command, arg in script(d):
            if command == "@client":
                h = bh.nbd_connect(nbd, nbd_path, arg)
                handles.append(h)
                log.append("client on %s: size %d" % (arg, h.get_size()))
                continue
            if command == "@event":
                deadline = time.monotonic() + 5
                while not mon.events and time.monotonic() < deadline:
                    mon.poll_events(0.02)
                mon.poll_events(0.1)
                evs = sorted(norm(e) for e in mon.events)
                mon.events = []
                log.append("events: %s" % evs)
                continue
            log.append("-> %s %s" % (command, norm(arg)))
            log.append("<- " + norm(mon.cmd(command, arg)))
        self.assertEqual(daemon.wait_exit(), 0, daemon.describe())
        return log

    def test_same_replies(self):
        if QSD is None:
            self.skipTest("qemu-storage-daemon is not installed")
        if bh.is_qsd():
            self.skipTest("the daemon under test is qemu-storage-daemon")
        ref = self.run_once(QSD, "qsd")
        got = self.run_once(bh.DAEMON_PATH, "berthd")
        if ref != got:
            import difflib
            self.fail("berthd differs from qemu-storage-daemon:\n" + "\n".join(
                difflib.unified_diff(ref, got, "qemu-storage-daemon", "berthd",
                                     lineterm="")))


if __name__ == "__main__":
    bh.main()
