#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The command line's JSON forms, as qemu-storage-daemon 7.2 takes them.

--blockdev, --object, --monitor, --nbd-server and --export accept a JSON
object when the value starts with '{' (libvirt writes them so), decoded by
the same tables as QMP: real JSON types, so "read-only": "on" is a type
error. --chardev stays key=value, as in qemu-storage-daemon. Every error
text here is the one qemu-storage-daemon 7.2 prints; the file also runs
against it (BERTHD=qemu-storage-daemon)."""

import json
import os
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

nbd = bh.import_nbd()


def j(obj):
    return json.dumps(obj, separators=(",", ":"))


NULL = {"driver": "null-co", "node-name": "n0"}

ERRORS = [
    (["--blockdev", j(dict(NULL, **{"read-only": "on"}))],
     "Invalid parameter type for 'read-only', expected: boolean"),
    (["--blockdev", j(dict(NULL, size="1M"))],
     "Invalid parameter type for 'size', expected: integer"),
    (["--blockdev", j(dict(NULL, cache={"direct": "on"}))],
     "Invalid parameter type for 'cache.direct', expected: boolean"),
    (["--blockdev", j(dict(NULL, x=1))], "Parameter 'x' is unexpected"),
    (["--blockdev", '{"driver":"null-co","node-name":"n0"'], "JSON parse error, premature EOI"),
    (["--blockdev", j(NULL) + " x"], "Expecting at most one JSON value"),
    # Not starting with '{': key=value, whatever it looks like.
    (["--blockdev", "[1]"], "Parameter 'driver' does not accept value '[1]'"),
    (["--object", j({"qom-type": "iothread", "id": "io0", "poll-max-ns": "x"})],
     "Invalid parameter type for 'poll-max-ns', expected: integer"),
    (["--monitor", j({"chardev": "c0"})], 'chardev "c0" not found'),
    (["--export", j({"type": "nbd", "id": "e0", "node-name": "zz"})],
     "Cannot find device='' nor node-name='zz'"),
]


class JsonOptions(bh.DaemonTestCase):

    def run_once(self, args):
        out = subprocess.run(bh.daemon_command() + args, capture_output=True, text=True,
                             timeout=bh.TOOL_TIMEOUT, cwd=self.tmpdir)
        return out.returncode, out.stderr

    def test_error_texts(self):
        for args, text in ERRORS:
            with self.subTest(args[1][:40]):
                rc, err = self.run_once(args)
                self.assertEqual(rc, 1, err)
                lines = [l for l in err.splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, err)
                # "PROG: --OPT VALUE: TEXT", as qemu-storage-daemon words it
                self.assertTrue(lines[0].endswith("%s %s: %s" % (args[0], args[1], text)),
                                lines[0])

    def test_json_command_line_serves(self):
        size = 4 * MiB
        img = bh.make_pattern_file(self.path("d.img"), size, seed=3)
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        args = [
            "--blockdev", j({"driver": "file", "node-name": "f0", "filename": img,
                             "cache": {"direct": False}, "read-only": False}),
            "--object", j({"qom-type": "iothread", "id": "io0"}),
            "--nbd-server", j({"addr": {"type": "unix", "path": sock}, "max-connections": 8}),
            "--export", j({"type": "nbd", "id": "e0", "node-name": "f0", "name": "disk",
                           "writable": True, "description": "json, with a comma"}),
            # --chardev has no JSON form in qemu-storage-daemon 7.2
            "--chardev", "socket,id=qmp0,path=%s,server=on,wait=off" % bh.opt_escape(qmp),
            "--monitor", j({"chardev": "qmp0"}),
        ]
        self.start_daemon(args, wait_for=sock)
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock, "disk"))
        self.assertEqual(h.get_size(), size)
        self.assertFalse(h.is_read_only())
        h.pwrite(b"\x5a" * 4096, 0)
        self.assertEqual(h.pread(4096, 0), b"\x5a" * 4096)
        h.shutdown()
        q = self.connect_qmp(qmp)
        exports = q.cmd("query-block-exports")["return"]
        self.assertEqual([e["id"] for e in exports], ["e0"])
        names = [n["node-name"] for n in q.cmd("query-named-block-nodes")["return"]]
        self.assertIn("f0", names)
        q.close()


if __name__ == "__main__":
    bh.main()
