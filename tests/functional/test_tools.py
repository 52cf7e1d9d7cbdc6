#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Real NBD clients against the daemon: qemu-img, qemu-io, nbdcopy, nbdinfo.

One daemon serves a separate file-backed export per concern, so that the
tests do not see each other's writes:
  disk0  writable, qemu-io pattern tests
  conv   writable, qemu-img convert/compare target
  copy   writable, nbdcopy target
  map    writable, discard=unmap, nbdinfo --map tests
  src    read-only export of a pattern file (source for copies)"""

import json
import os
import sys

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

SIZE = 32 * MiB
DESCRIPTIONS = {
    "disk0": "qemu-io target",
    "conv": "qemu-img target, with a comma",
    "copy": "nbdcopy target",
    "map": "",
    "src": "read-only source",
}


class ToolsBase(bh.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.class_dir
        cls.sock = os.path.join(d, "nbd.sock")
        cls.files = {}
        args = []
        for name in ("disk0", "conv", "copy", "map"):
            path = bh.make_sparse_file(os.path.join(d, name + ".img"), SIZE)
            cls.files[name] = path
            args += bh.blockdev_file("n-" + name, path,
                                     discard="unmap" if name == "map" else None)
        src = bh.make_pattern_file(os.path.join(d, "src.img"), SIZE, seed=11,
                                   sparse_every=2 * MiB)
        cls.files["src"] = src
        args += bh.blockdev_file("n-src", src, read_only=True)
        args += bh.nbd_server_unix(cls.sock)
        for name in ("disk0", "conv", "copy", "map", "src"):
            args += bh.nbd_export("e-" + name, "n-" + name, name,
                                  writable=(name != "src"),
                                  description=DESCRIPTIONS[name] or None)
        cls.daemon = cls.start_class_daemon(args, wait_for=cls.sock)

    def uri(self, name):
        return bh.nbd_uri(self.sock, name)

    def tool(self, *args, check=True):
        return bh.run_tool(list(args), check=check)

    def assertFilesEqual(self, a, b):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x = fa.read(MiB)
                y = fb.read(MiB)
                self.assertEqual(x, y, "%s and %s differ" % (a, b))
                if not x:
                    break

    def qemu_io(self, name, *cmds, read_only=False, check=True):
        args = ["qemu-io", "-f", "raw"]
        if read_only:
            args.append("-r")
        for c in cmds:
            args += ["-c", c]
        return self.tool(*args, self.uri(name), check=check)


class QemuImg(ToolsBase):

    @bh.needs_tools("qemu-img")
    def test_info(self):
        _, out, _ = self.tool("qemu-img", "info", "--output=json", self.uri("src"))
        info = json.loads(out)
        self.assertEqual(info["virtual-size"], SIZE)

    @bh.needs_tools("qemu-img", "qemu-io")
    def test_convert_in_compare_convert_out(self):
        src = self.files["src"]
        self.tool("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw",
                  src, self.uri("conv"))
        self.tool("qemu-img", "compare", "-f", "raw", "-F", "raw",
                  src, self.uri("conv"))
        out = self.path("out.img")
        self.tool("qemu-img", "convert", "-f", "raw", "-O", "raw",
                  self.uri("conv"), out)
        self.assertFilesEqual(src, out)
        # a one-byte difference is found
        self.qemu_io("conv", "write -P 0x01 %d 1" % (SIZE - 1000))
        rc, out, _ = self.tool("qemu-img", "compare", "-f", "raw", "-F", "raw",
                               src, self.uri("conv"), check=False)
        self.assertEqual(rc, 1, "qemu-img compare missed a difference:\n" + out)

    @bh.needs_tools("qemu-img")
    def test_convert_between_exports(self):
        self.tool("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw",
                  "-W", "-m", "8", self.uri("src"), self.uri("conv"))
        self.tool("qemu-img", "compare", "-f", "raw", "-F", "raw",
                  self.uri("src"), self.uri("conv"))

    @bh.needs_tools("qemu-img")
    def test_map_of_read_only_export(self):
        _, out, _ = self.tool("qemu-img", "map", "--output=json", "-f", "raw",
                              self.uri("src"))
        extents = json.loads(out)
        self.assertEqual(sum(e["length"] for e in extents), SIZE)
        # the pattern file alternates 2 MiB of data and 2 MiB of hole
        for e in extents:
            if e["start"] % (4 * MiB) < 2 * MiB:
                self.assertTrue(e["data"], e)
            else:
                self.assertTrue(e["zero"], e)


class QemuIo(ToolsBase):

    @bh.needs_tools("qemu-io")
    def test_pattern_write_then_read(self):
        self.qemu_io("disk0", "write -P 0xab 0 1M", "write -P 0xcd 1M 1M",
                     "write -P 0x5a 3M 4k", "flush")
        _, out, _ = self.qemu_io("disk0", "read -P 0xab 0 1M",
                                 "read -P 0xcd 1M 1M", "read -P 0x00 2M 1M",
                                 "read -P 0x5a 3M 4k", read_only=True)
        self.assertNotIn("verification failed", out)
        self.assertIn("read 1048576/1048576 bytes at offset 0", out)
        self.assertIn("read 1048576/1048576 bytes at offset 1048576", out)
        with open(self.files["disk0"], "rb") as f:
            self.assertEqual(f.read(MiB), b"\xab" * MiB)

    @bh.needs_tools("qemu-io")
    def test_wrong_pattern_is_detected(self):
        self.qemu_io("disk0", "write -P 0x33 8M 64k")
        rc, out, _ = self.qemu_io("disk0", "read -P 0x34 8M 64k", check=False)
        self.assertIn("Pattern verification failed", out)

    @bh.needs_tools("qemu-io")
    def test_zero_discard_and_fua(self):
        self.qemu_io("disk0", "write -P 0x77 12M 1M", "write -z 12M 512k",
                     "write -f -P 0x78 14M 64k", "discard 13M 256k")
        _, out, _ = self.qemu_io("disk0", "read -P 0 12M 512k",
                                 "read -P 0x77 12800k 256k",
                                 "read -P 0x78 14M 64k", read_only=True)
        self.assertNotIn("verification failed", out)

    @bh.needs_tools("qemu-io")
    def test_aio_requests(self):
        cmds = ["aio_write -P 0x%02x %dk 64k" % (0x40 + i, 16 * 1024 + 64 * i)
                for i in range(32)]
        self.qemu_io("disk0", *cmds, "aio_flush")
        reads = ["aio_read -P 0x%02x %dk 64k" % (0x40 + i, 16 * 1024 + 64 * i)
                 for i in range(32)]
        _, out, _ = self.qemu_io("disk0", *reads, "aio_flush", read_only=True)
        self.assertNotIn("verification failed", out)
        self.assertEqual(out.count("read 65536/65536 bytes"), 32, out)

    @bh.needs_tools("qemu-io")
    def test_read_only_export_refuses_writes(self):
        rc, out, err = self.qemu_io("src", "write -P 0x11 0 4k", check=False)
        self.assertNotEqual(rc, 0, "write to a read-only export succeeded")
        with open(self.files["src"], "rb") as f:
            self.assertNotEqual(f.read(4096), b"\x11" * 4096)


class NbdCopy(ToolsBase):

    @bh.needs_tools("nbdcopy")
    def test_copy_in_and_out(self):
        src = self.files["src"]
        self.tool("nbdcopy", "--flush", src, self.uri("copy"))
        out = self.path("out.img")
        self.tool("nbdcopy", self.uri("copy"), out)
        self.assertFilesEqual(src, out)

    @bh.needs_tools("nbdcopy")
    def test_copy_many_connections_and_requests(self):
        self.tool("nbdcopy", "--connections=4", "--requests=64",
                  "--request-size=262144", self.uri("src"), self.uri("copy"))
        out = self.path("out2.img")
        self.tool("nbdcopy", "--connections=2", self.uri("copy"), out)
        self.assertFilesEqual(self.files["src"], out)

    @bh.needs_tools("nbdcopy")
    def test_copy_from_zero_source_clears_data(self):
        self.tool("nbdcopy", self.files["src"], self.uri("copy"))
        zero = bh.make_sparse_file(self.path("zero.img"), SIZE)
        self.tool("nbdcopy", zero, self.uri("copy"))
        out = self.path("out3.img")
        self.tool("nbdcopy", self.uri("copy"), out)
        self.assertFilesEqual(zero, out)


class NbdInfo(ToolsBase):

    @bh.needs_tools("nbdinfo")
    def test_list_json(self):
        _, out, _ = self.tool("nbdinfo", "--list", "--json", self.uri(""))
        doc = json.loads(out)
        got = {e["export-name"]: e.get("description", "") for e in doc["exports"]}
        self.assertEqual(got, DESCRIPTIONS)
        for e in doc["exports"]:
            self.assertEqual(e["export-size"], SIZE)
            self.assertEqual(e["is_read_only"], e["export-name"] == "src")
            self.assertIn("base:allocation", e.get("contexts", []))

    @bh.needs_tools("nbdinfo")
    def test_list_text(self):
        _, out, _ = self.tool("nbdinfo", "--list", self.uri(""))
        for name, desc in DESCRIPTIONS.items():
            self.assertIn('export="%s":' % name, out)
            if desc:
                self.assertIn("description: %s" % desc, out)

    @bh.needs_tools("nbdinfo")
    def test_size_can_is(self):
        _, out, _ = self.tool("nbdinfo", "--size", self.uri("disk0"))
        self.assertEqual(int(out.strip()), SIZE)
        for what in ("flush", "fua", "trim", "zero"):
            rc, _, _ = self.tool("nbdinfo", "--can", what, self.uri("disk0"),
                                 check=False)
            self.assertEqual(rc, 0, "disk0 cannot %s" % what)
        rc, _, _ = self.tool("nbdinfo", "--is", "read-only", self.uri("src"),
                             check=False)
        self.assertEqual(rc, 0)
        rc, _, _ = self.tool("nbdinfo", "--is", "read-only", self.uri("disk0"),
                             check=False)
        self.assertEqual(rc, 2)

    @bh.needs_tools("nbdinfo")
    def test_missing_export(self):
        rc, _, _ = self.tool("nbdinfo", self.uri("no-such-export"), check=False)
        self.assertNotEqual(rc, 0)

    def map(self, name):
        _, out, _ = self.tool("nbdinfo", "--map", "--json", self.uri(name))
        entries = json.loads(out)
        pos = 0
        for e in entries:
            self.assertEqual(e["offset"], pos, "map has a gap or an overlap")
            pos += e["length"]
        self.assertEqual(pos, SIZE)
        return [(e["offset"], e["length"], e["type"]) for e in entries]

    def types_of(self, entries, start, end):
        return {t for o, n, t in entries if o < end and o + n > start}

    @bh.needs_tools("nbdinfo", "qemu-io")
    def test_map_holes_after_trim(self):
        if not bh.filesystem_reports_holes(self.tmpdir):
            self.skipTest("the temporary filesystem does not report holes")
        self.assertEqual(self.map("map"), [(0, SIZE, 3)], "fresh sparse file")
        self.qemu_io("map", "write -P 0x42 4M 2M", "flush")
        m = self.map("map")
        self.assertEqual(self.types_of(m, 0, 4 * MiB), {3})
        self.assertEqual(self.types_of(m, 4 * MiB, 6 * MiB), {0})
        self.assertEqual(self.types_of(m, 6 * MiB, SIZE), {3})
        self.qemu_io("map", "discard 4M 2M", "flush")
        self.assertEqual(self.map("map"), [(0, SIZE, 3)],
                         "a trimmed range of a discard=unmap file is a hole again")
        self.assertEqual(bh.file_data_ranges(self.files["map"]), [],
                         "TRIM did not punch a hole in the backing file")

    @bh.needs_tools("nbdinfo", "qemu-io")
    def test_map_after_write_zeroes(self):
        if not bh.filesystem_reports_holes(self.tmpdir):
            self.skipTest("the temporary filesystem does not report holes")
        self.qemu_io("map", "write -P 0x43 16M 1M", "write -z 16M 1M", "flush")
        m = self.map("map")
        for t in self.types_of(m, 16 * MiB, 17 * MiB):
            self.assertTrue(t & 2, "zeroed range not reported as zero")
        self.qemu_io("map", "discard 16M 1M")

    @bh.needs_tools("nbdinfo")
    def test_map_totals_of_source(self):
        _, out, _ = self.tool("nbdinfo", "--map", "--totals", "--json",
                              self.uri("src"))
        totals = {e["type"]: e["size"] for e in json.loads(out)}
        self.assertEqual(sum(totals.values()), SIZE)
        self.assertEqual(totals.get(0, 0), SIZE // 2, "half of src is data")


class MultiConn(bh.DaemonTestCase):
    """NBD_FLAG_CAN_MULTI_CONN as nbdinfo and nbdcopy see it.  A server that
    takes one connection at a time must not advertise it: nbdcopy then opens
    one connection, not four of which three are never greeted.  berth's
    multi-conn=on|off|auto export option (an extension; qemu-storage-daemon
    7.2 has no such parameter) never promises it for writes to a node that is
    not coherent across connections."""

    COPY_TIMEOUT = 20       # a hang fails the test instead of wedging it

    def setUp(self):
        super().setUp()
        self.sock = self.path("nbd.sock")
        self.src = bh.make_pattern_file(self.path("src.img"), 8 * MiB, seed=5,
                                        sparse_every=MiB)

    def serve(self, exports, max_connections=None, extra=(), sock=None, name="daemon"):
        """exports: (id, node, name, writable, extra options) over one file
        node 'n0' (a copy of src) and whatever `extra` adds."""
        sock = sock or self.sock
        disk = self.path(name + "-disk.img")
        with open(self.src, "rb") as f, open(disk, "wb") as g:
            g.write(f.read())
        args = bh.blockdev_file("n0", disk) + list(extra)
        args += bh.nbd_server_unix(sock, max_connections=max_connections)
        for exp_id, node, exp_name, writable, more in exports:
            args += ["--export", "type=nbd,id=%s,node-name=%s,name=%s,writable=%s%s"
                     % (exp_id, node, exp_name, "on" if writable else "off", more)]
        self.start_daemon(args, wait_for=sock, name=name)
        return disk

    def can_multi_conn(self, name, sock=None):
        _, out, _ = bh.run_tool(["nbdinfo", "--json", bh.nbd_uri(sock or self.sock, name)])
        return json.loads(out)["exports"][0]["can_multi_conn"]

    def nbdcopy(self, *args):
        bh.run_tool(["nbdcopy"] + list(args), timeout=self.COPY_TIMEOUT)

    def assertSameBytes(self, a, b):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            self.assertTrue(fa.read() == fb.read(), "%s and %s differ" % (a, b))

    @bh.needs_tools("nbdinfo", "nbdcopy")
    def test_one_connection_no_multi_conn_and_nbdcopy_completes(self):
        disk = self.serve([("rw", "n0", "rw", True, ""), ("ro", "n0", "ro", False, "")],
                          max_connections=1)
        self.assertFalse(self.can_multi_conn("rw"))
        self.assertFalse(self.can_multi_conn("ro"))
        out = self.path("out.img")
        self.nbdcopy(bh.nbd_uri(self.sock, "ro"), out)
        self.assertSameBytes(self.src, out)
        other = bh.make_pattern_file(self.path("other.img"), 8 * MiB, seed=6)
        self.nbdcopy(other, bh.nbd_uri(self.sock, "rw"))
        self.assertSameBytes(other, disk)

    @bh.needs_tools("nbdinfo", "nbdcopy")
    def test_default_limit_advertises_multi_conn(self):
        disk = self.serve([("rw", "n0", "rw", True, ""), ("ro", "n0", "ro", False, "")])
        self.assertTrue(self.can_multi_conn("rw"))
        self.assertTrue(self.can_multi_conn("ro"))
        out = self.path("out.img")
        self.nbdcopy("--connections=4", bh.nbd_uri(self.sock, "ro"), out)
        self.assertSameBytes(self.src, out)
        other = bh.make_pattern_file(self.path("other.img"), 8 * MiB, seed=6)
        self.nbdcopy("--connections=4", other, bh.nbd_uri(self.sock, "rw"))
        self.assertSameBytes(other, disk)

    @bh.berth_only
    @bh.needs_tools("nbdinfo")
    def test_multi_conn_option(self):
        self.serve([("on", "n0", "on", True, ",multi-conn=on"),
                    ("off", "n0", "off", True, ",multi-conn=off"),
                    ("auto", "n0", "auto", True, ",multi-conn=auto"),
                    ("ro-off", "n0", "ro-off", False, ",multi-conn=off")])
        self.assertTrue(self.can_multi_conn("on"))
        self.assertFalse(self.can_multi_conn("off"))
        self.assertTrue(self.can_multi_conn("auto"), "a file node is coherent")
        self.assertFalse(self.can_multi_conn("ro-off"))

    @bh.berth_only
    @bh.needs_tools("nbdinfo")
    def test_multi_conn_option_over_qmp(self):
        qmp = self.path("qmp.sock")
        self.serve([], extra=bh.qmp_monitor(qmp))
        q = self.connect_qmp(qmp)
        for mode, want in (("on", True), ("off", False), ("auto", True)):
            self.assertEqual(q.cmd("block-export-add", {"type": "nbd", "id": mode,
                                                        "node-name": "n0", "name": mode,
                                                        "writable": True,
                                                        "multi-conn": mode}),
                             {"return": {}})
            self.assertEqual(self.can_multi_conn(mode), want, mode)
        r = q.cmd("block-export-add", {"type": "nbd", "id": "bad", "node-name": "n0",
                                       "multi-conn": True})
        self.assertIn("multi-conn", r["error"]["desc"])
        r = q.cmd("block-export-add", {"type": "nbd", "id": "ad", "node-name": "n0",
                                       "name": "ad", "allocation-depth": True})
        self.assertEqual(r, {"return": {}})
        self.assertEqual(len(q.cmd("query-block-exports")["return"]), 4)

    @bh.berth_only
    @bh.needs_tools("nbdinfo")
    def test_node_not_coherent(self):
        """An nbd node whose server does not advertise multi-conn: no
        promise for writes, and multi-conn=on on a writable export of it is
        refused; a read-only export may still be given it."""
        up = self.path("up.sock")
        self.serve([("up", "n0", "up", True, ",multi-conn=off")], sock=up, name="upstream")
        self.assertFalse(self.can_multi_conn("up", sock=up))
        node = ["--blockdev", "driver=nbd,node-name=remote,server.type=unix,"
                "server.path=%s,export=up" % bh.opt_escape(up)]
        args = node + bh.nbd_server_unix(self.sock)
        rc, _, err = bh.run_daemon_once(args + ["--export", "type=nbd,id=w,node-name=remote,"
                                                "writable=on,multi-conn=on"], self.tmpdir)
        self.assertEqual(rc, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("not coherent", err)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.start_daemon(args + [
            "--export", "type=nbd,id=w,node-name=remote,name=w,writable=on",
            "--export", "type=nbd,id=r,node-name=remote,name=r,multi-conn=on",
            "--export", "type=nbd,id=ra,node-name=remote,name=ra"], wait_for=self.sock)
        self.assertFalse(self.can_multi_conn("w"))
        self.assertTrue(self.can_multi_conn("r"))
        self.assertFalse(self.can_multi_conn("ra"))


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
