#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The node graph: format nodes over file nodes, as libvirt stacks them.

A raw node names its file child by node-name or defines it nested
(file.driver=file,file.filename=X on the command line, or an object over
QMP); nested children get automatic names and are listed; blockdev-del
refuses to delete a child in use or a nested node, and deleting a parent
takes its nested children along; query-named-block-nodes has the members
qemu-storage-daemon 7.2 shows for raw over file; raw's offset and size
select a window of the file, with QEMU's errors; data, zeroes, discard and
block status pass through.  Runs against qemu-storage-daemon too."""

import os
import sys
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

DISK = 1 * MiB

# What QSD 7.2 shows for a raw node over a file node.
NODE_MEMBERS = {
    "iops_rd", "detect_zeroes", "image", "iops_wr", "ro", "node-name",
    "backing_file_depth", "drv", "iops", "bps_wr", "write_threshold", "encrypted",
    "bps", "bps_rd", "cache", "file",
}
IMAGE_MEMBERS = {"virtual-size", "filename", "format", "actual-size", "dirty-flag"}


class Graph(bh.DaemonTestCase):

    def serve(self, *blockdevs):
        self.img = bh.make_pattern_file(self.path("disk.img"), DISK, seed=3)
        sock = self.path("nbd.sock")
        args = bh.blockdev_file("f0", self.img)
        for b in blockdevs:
            args += ["--blockdev", b]
        args += bh.nbd_server_unix(sock) + bh.qmp_monitor(self.path("qmp.sock"))
        # The monitor comes last: once its socket is there, both are.
        self.start_daemon(args, wait_for=self.path("qmp.sock"))
        self.sock = sock
        return self.connect_qmp(self.path("qmp.sock"))

    def nodes(self, q, **args):
        return {n["node-name"]: n for n in q.cmd("query-named-block-nodes", args)["return"]}

    def export(self, q, node, name, writable=True):
        r = q.cmd("block-export-add", {"type": "nbd", "id": name, "node-name": node,
                                       "name": name, "writable": writable})
        self.assertEqual(r, {"return": {}})

    def test_query_shows_raw_over_file_as_qsd(self):
        q = self.serve("driver=raw,node-name=r0,file=f0")
        nodes = self.nodes(q)
        r0 = nodes["r0"]
        self.assertEqual(set(r0), NODE_MEMBERS)
        self.assertEqual(set(r0["image"]), IMAGE_MEMBERS)
        self.assertEqual(r0["drv"], "raw")
        self.assertEqual(r0["image"]["format"], "raw")
        self.assertEqual(r0["file"], self.img)
        self.assertEqual(r0["image"]["virtual-size"], DISK)
        self.assertEqual(r0["backing_file_depth"], 0)
        self.assertEqual(nodes["f0"]["drv"], "file")

    def test_nested_child_from_the_command_line(self):
        q = self.serve("driver=raw,node-name=r1,file.driver=file,file.filename=%s"
                       % bh.opt_escape(os.path.join(self.tmpdir, "disk.img")))
        nodes = self.nodes(q)
        anon = [n for n in nodes if n.startswith("#block")]
        self.assertEqual(len(anon), 1, nodes.keys())
        self.assertEqual(nodes[anon[0]]["drv"], "file")
        r = q.cmd("blockdev-del", {"node-name": anon[0]})
        self.assertEqual(r["error"]["desc"], "Node %s is not owned by the monitor" % anon[0])
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "r1"}), {"return": {}})
        self.assertEqual(set(self.nodes(q)), {"f0"})

    def test_nested_child_over_qmp_and_errors(self):
        q = self.serve()
        img = self.img
        ok = q.cmd("blockdev-add", {"driver": "raw", "node-name": "r2", "file": {
            "driver": "file", "filename": img, "node-name": "inner"}})
        self.assertEqual(ok, {"return": {}})
        cases = [
            ({"file": "nope"}, "Cannot find device='nope' nor node-name='nope'"),
            ({}, "Parameter 'file' is missing"),
            ({"file": 5}, "Invalid parameter type for 'file', expected: BlockdevRef"),
            ({"file": {"driver": "file"}}, "Parameter 'file.filename' is missing"),
            ({"file": {"driver": "bogus"}}, "Parameter 'driver' does not accept value 'bogus'"),
            ({"file": "f0", "size": 1000}, "Specified size is not multiple of 512"),
            ({"file": "f0", "offset": 2 * DISK},
             "Offset (%d) cannot be greater than size of the containing file (%d)"
             % (2 * DISK, DISK)),
            ({"file": "f0", "offset": 512, "size": DISK},
             "The sum of offset (512) and size (%d) has to be smaller or equal to the  "
             "actual size of the containing file (%d)" % (DISK, DISK)),
        ]
        for extra, text in cases:
            r = q.cmd("blockdev-add", dict({"driver": "raw", "node-name": "bad"}, **extra))
            self.assertEqual(r.get("error", {}).get("desc"), text, extra)
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "inner"})["error"]["desc"],
                         "Node inner is not owned by the monitor")
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "r2"}), {"return": {}})
        self.assertNotIn("inner", self.nodes(q))

    def test_child_in_use_cannot_be_deleted(self):
        q = self.serve("driver=raw,node-name=r0,file=f0")
        r = q.cmd("blockdev-del", {"node-name": "f0"})
        self.assertEqual(r["error"]["desc"], "Block device f0 is in use")
        self.export(q, "r0", "e0")
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "r0"})["error"]["desc"],
                         "Node r0 is in use")
        self.assertEqual(q.cmd("block-export-del", {"id": "e0"}), {"return": {}})
        deadline = 50
        while deadline and "error" in q.cmd("blockdev-del", {"node-name": "r0"}):
            deadline -= 1
            q.poll_events(0.1)
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "f0"}), {"return": {}})

    def test_data_window_and_block_status(self):
        q = self.serve("driver=raw,node-name=whole,file=f0",
                       "driver=raw,node-name=win,file=f0,offset=65536,size=131072")
        self.assertEqual(self.nodes(q)["win"]["image"]["virtual-size"], 131072)
        self.export(q, "whole", "whole")
        self.export(q, "win", "win")
        with open(self.img, "rb") as f:
            data = f.read()
        with bh.nbd_handle(nbd, self.sock, "win", meta=["base:allocation"]) as h:
            self.assertEqual(h.get_size(), 131072)
            self.assertEqual(h.pread(131072, 0), data[65536:65536 + 131072])
            h.pwrite(b"w" * 4096, 4096)
            h.zero(4096, 8192)
            h.flush()
            with self.assertRaises(nbd.Error):
                h.pread(512, 131072)
            extents = []
            h.block_status(131072, 0,
                           lambda ctx, off, ents, err: extents.extend(ents) or 0)
            self.assertEqual(sum(extents[0::2]), 131072)
        with bh.nbd_handle(nbd, self.sock, "whole") as h:
            self.assertEqual(h.pread(4096, 65536 + 4096), b"w" * 4096)
            self.assertEqual(h.pread(4096, 65536 + 8192), b"\0" * 4096)
            self.assertEqual(h.pread(4096, 0), data[:4096])

    def test_read_only_raw_over_writable_file(self):
        q = self.serve("driver=raw,node-name=ro,file=f0,read-only=on")
        self.assertTrue(self.nodes(q)["ro"]["ro"])
        r = q.cmd("block-export-add", {"type": "nbd", "id": "e", "node-name": "ro",
                                       "writable": True})
        self.assertIn("error", r)
        self.export(q, "ro", "ro", writable=False)
        with bh.nbd_handle(nbd, self.sock, "ro") as h:
            self.assertTrue(h.is_read_only())
            with self.assertRaises(nbd.Error):
                h.pwrite(b"x" * 512, 0)

    def test_filter_shows_backing_image(self):
        q = self.serve("driver=blkdebug,node-name=dbg,image=f0")
        dbg = self.nodes(q)["dbg"]
        self.assertEqual(dbg["backing_file_depth"], 1)
        self.assertEqual(dbg["image"]["backing-image"]["format"], "file")
        flat = self.nodes(q, flat=True)["dbg"]
        self.assertNotIn("backing-image", flat["image"])


if __name__ == "__main__":
    bh.main()
