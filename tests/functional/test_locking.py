#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Image locks and block_resize.

berth locks served images with the byte-range locks QEMU's file driver
takes, so QEMU's tools and QEMU processes see berth's locks and berth sees
theirs: the same tests pass against qemu-storage-daemon, and where a QEMU
process is needed as the other side, qemu-storage-daemon is started as that
peer whatever daemon is under test.  Format nodes forward permissions to
their children as QEMU's do: raw passes its users' on, qcow2 holds its file
for consistent read (and write and resize when writable) sharing neither
write nor resize, and reads its backing node.  block_resize is
checked against QSD's replies; berth also resizes a node that it exports
(QSD 7.2 refuses: its exports never share resize), which new clients see."""

import os
import shutil
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

nbd = bh.import_nbd()
QSD = shutil.which("qemu-storage-daemon")


def locked_bytes(path):
    """The bytes of path that some process holds OFD locks on."""
    ino = os.stat(path).st_ino
    got = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            # "1: OFDLCK ADVISORY READ -1 08:01:1234 100 101"
            if fields[1] != "OFDLCK" or fields[5].split(":")[-1] != str(ino):
                continue
            got.update(range(int(fields[6]), int(fields[7]) + 1))
    return got


class Locks(bh.DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.disk = bh.make_sparse_file(self.path("disk.img"), 64 * MiB)

    def serve(self, writable=True, extra=None, node_opts=""):
        sock = self.path("nbd.sock")
        args = (["--blockdev", "driver=file,node-name=f0,filename=%s%s"
                 % (bh.opt_escape(self.disk), node_opts)]
                + (extra or [])
                + bh.nbd_server_unix(sock)
                + bh.nbd_export("e0", "f0", "disk", writable=writable))
        return self.start_daemon(args, wait_for=sock), sock

    def test_export_locks_bytes_as_qemu_does(self):
        self.serve(writable=True)
        self.assertEqual(locked_bytes(self.disk), {100, 101, 203})

    def test_read_only_export_locks(self):
        self.serve(writable=False)
        self.assertEqual(locked_bytes(self.disk), {100, 203})

    def test_qemu_img_resize_refused_while_served(self):
        self.serve()
        rc, out, err = bh.run_tool(["qemu-img", "resize", "-f", "raw", self.disk, "128M"],
                                   check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('Failed to get "resize" lock', err)
        self.assertEqual(os.path.getsize(self.disk), 64 * MiB)

    def test_qemu_io_may_write_alongside(self):
        # Raw exports share write, as QEMU's do.
        _, sock = self.serve()
        bh.run_tool(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 4k", self.disk])
        with bh.nbd_handle(nbd, sock, "disk") as h:
            self.assertEqual(h.pread(4 * KiB, 0), b"\x5a" * (4 * KiB))

    def test_locking_off_takes_no_locks(self):
        self.serve(node_opts=",locking=off")
        self.assertEqual(locked_bytes(self.disk), set())
        bh.run_tool(["qemu-img", "resize", "-f", "raw", self.disk, "128M"])

    def test_locking_on_accepted(self):
        self.serve(node_opts=",locking=on")
        self.assertEqual(locked_bytes(self.disk), {100, 101, 203})

    def test_bad_locking_value(self):
        rc, _, err = bh.run_daemon_once(
            ["--blockdev", "driver=file,node-name=f0,filename=%s,locking=maybe"
             % bh.opt_escape(self.disk)], self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn("Parameter 'locking' does not accept value 'maybe'", err)

    def test_export_del_releases_locks(self):
        qmp = self.path("qmp.sock")
        self.serve(extra=bh.qmp_monitor(qmp))
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("block-export-del", id="e0"), {"return": {}})
        for _ in range(100):
            if not locked_bytes(self.disk):
                break
            q.poll_events(settle=0.05)
        self.assertEqual(locked_bytes(self.disk), set())
        bh.run_tool(["qemu-img", "resize", "-f", "raw", self.disk, "80M"])


class FormatNodeLocks(bh.DaemonTestCase):
    """The bytes a format stack locks on its files, as QSD 7.2 locks them."""

    def setUp(self):
        super().setUp()
        self.base = self.path("base.qcow2")
        self.image = self.path("disk.qcow2")
        self.raw = bh.make_sparse_file(self.path("disk.img"), 16 * MiB)
        self.raw_base = bh.make_sparse_file(self.path("base.img"), 16 * MiB)
        self.over_raw = self.path("over-raw.qcow2")
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", self.base, "16M"])
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.base,
                     "-F", "qcow2", self.image])
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.raw_base,
                     "-F", "raw", self.over_raw])

    def serve(self, image, fmt, writable=None, fmt_opts="", extra=None):
        """file -> fmt node "n0", writable unless writable is False; exported
        when writable is not None."""
        self.serial = getattr(self, "serial", 0) + 1
        sock = self.path("nbd%d.sock" % self.serial)
        ro = ",read-only=on" if writable is False else ""
        args = (["--blockdev", "driver=file,node-name=f0,filename=%s%s"
                 % (bh.opt_escape(image), ro),
                 "--blockdev", "driver=%s,node-name=n0,file=f0%s%s" % (fmt, ro, fmt_opts)]
                + (extra or []) + bh.nbd_server_unix(sock))
        if writable is not None:
            args += bh.nbd_export("e0", "n0", "disk", writable=writable)
        return self.start_daemon(args, wait_for=sock), sock

    def test_qcow2_writable_export(self):
        self.serve(self.image, "qcow2", writable=True)
        self.assertEqual(locked_bytes(self.image), {100, 101, 103, 201, 203})
        self.assertEqual(locked_bytes(self.base), {100, 201, 203})

    def test_qcow2_writable_without_export(self):
        # The format holds its file from open on, as QEMU's does.
        self.serve(self.image, "qcow2", writable=None)
        self.assertEqual(locked_bytes(self.image), {100, 101, 103, 201, 203})
        self.assertEqual(locked_bytes(self.base), {100, 201, 203})

    def test_qcow2_read_only_export(self):
        self.serve(self.image, "qcow2", writable=False)
        self.assertEqual(locked_bytes(self.image), {100, 201, 203})
        self.assertEqual(locked_bytes(self.base), {100, 201, 203})

    def test_qcow2_raw_backing_read_while_exported(self):
        d, _ = self.serve(self.over_raw, "qcow2", writable=None)
        self.assertEqual(locked_bytes(self.raw_base), set())
        d.stop()
        self.serve(self.over_raw, "qcow2", writable=True)
        self.assertEqual(locked_bytes(self.over_raw), {100, 101, 103, 201, 203})
        # Consistent read, everything shared: the export shares write.
        self.assertEqual(locked_bytes(self.raw_base), {100})

    def test_raw_passes_the_export_on(self):
        d, _ = self.serve(self.raw, "raw", writable=True)
        self.assertEqual(locked_bytes(self.raw), {100, 101, 203})
        d.stop()
        d, _ = self.serve(self.raw, "raw", writable=False)
        self.assertEqual(locked_bytes(self.raw), {100, 203})
        d.stop()
        self.serve(self.raw, "raw", writable=None)
        self.assertEqual(locked_bytes(self.raw), set())

    def test_raw_window_keeps_the_size(self):
        self.serve(self.raw, "raw", writable=None, fmt_opts=",offset=4096")
        self.assertEqual(locked_bytes(self.raw), {203})

    def test_second_writer_refused_on_served_qcow2(self):
        self.serve(self.image, "qcow2", writable=True)
        before = bh.run_tool(["qemu-img", "info", "-U", "--output=json", self.image])[1]
        rc, _, err = bh.run_tool(["qemu-io", "-c", "write 0 4k", self.image], check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('Failed to get "write" lock', err)
        rc, _, err = bh.run_tool(["qemu-img", "resize", self.image, "32M"], check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('Failed to get "write" lock', err)
        # A consistent reader is refused too (the export writes), a raw
        # reader of the bytes is not.
        rc, _, err = bh.run_tool(["qemu-io", "-r", "-c", "read 0 4k", self.image],
                                 check=False)
        self.assertIn('Failed to get shared "write" lock', err)
        bh.run_tool(["qemu-io", "-r", "-f", "raw", "-c", "read 0 4k", self.image])
        after = bh.run_tool(["qemu-img", "info", "-U", "--output=json", self.image])[1]
        self.assertEqual(before, after)

    def test_backing_file_write_refused(self):
        self.serve(self.image, "qcow2", writable=True)
        rc, _, err = bh.run_tool(["qemu-io", "-c", "write 0 4k", self.base], check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn('Failed to get "write" lock', err)

    def test_blockdev_del_releases_the_file(self):
        qmp = self.path("qmp.sock")
        self.serve(self.image, "qcow2", writable=None, extra=bh.qmp_monitor(qmp))
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("blockdev-del", **{"node-name": "n0"}), {"return": {}})
        self.assertEqual(locked_bytes(self.image), set())
        self.assertEqual(locked_bytes(self.base), set())
        self.assertEqual(q.cmd("blockdev-del", **{"node-name": "f0"}), {"return": {}})
        bh.run_tool(["qemu-io", "-c", "write 0 4k", self.image])


@unittest.skipIf(QSD is None, "qemu-storage-daemon is not installed")
class AgainstQemuHolder(bh.DaemonTestCase):
    """A qemu-storage-daemon serving a qcow2 image holds it as QEMU does:
    write and resize, neither shared."""

    def setUp(self):
        super().setUp()
        self.image = self.path("disk.qcow2")
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", self.image, "64M"])
        sock = self.path("holder.sock")
        self.start_daemon(["--blockdev", "driver=file,node-name=f,filename=%s"
                           % bh.opt_escape(self.image),
                           "--blockdev", "driver=qcow2,node-name=q,file=f",
                           "--nbd-server", "addr.type=unix,addr.path=%s" % sock,
                           "--export", "type=nbd,id=e,node-name=q,writable=on"],
                          wait_for=sock, exe=QSD, name="qsd-holder")

    def start_args(self, writable, node_opts=""):
        return (["--blockdev", "driver=file,node-name=f0,filename=%s%s"
                 % (bh.opt_escape(self.image), node_opts)]
                + bh.nbd_server_unix(self.path("nbd.sock"))
                + bh.nbd_export("e0", "f0", "disk", writable=writable))

    def test_writable_export_refused(self):
        rc, _, err = bh.run_daemon_once(self.start_args(True), self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn('Failed to get "write" lock', err)

    def test_read_only_export_refused(self):
        rc, _, err = bh.run_daemon_once(
            self.start_args(False, ",read-only=on"), self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn('Failed to get shared "resize" lock', err)

    def test_refused_over_qmp_and_node_still_usable(self):
        qmp = self.path("qmp.sock")
        sock = self.path("nbd.sock")
        self.start_daemon(bh.qmp_monitor(qmp) + bh.nbd_server_unix(sock), wait_for=qmp)
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("blockdev-add", driver="file", **{"node-name": "f0"},
                               filename=self.image), {"return": {}})
        r = q.cmd("block-export-add", type="nbd", id="e0", **{"node-name": "f0"},
                  writable=True)
        self.assertEqual(r["error"]["desc"], 'Failed to get "write" lock')
        # Nothing half-done: the node takes an export once the peer allows.
        self.assertEqual(q.cmd("blockdev-del", **{"node-name": "f0"}), {"return": {}})

    def qcow2_args(self, writable):
        ro = "" if writable else ",read-only=on"
        return (["--blockdev", "driver=file,node-name=f0,filename=%s%s"
                 % (bh.opt_escape(self.image), ro),
                 "--blockdev", "driver=qcow2,node-name=q0,file=f0%s" % ro]
                + bh.nbd_server_unix(self.path("nbd.sock")))

    def test_writable_qcow2_node_refused(self):
        rc, _, err = bh.run_daemon_once(self.qcow2_args(True), self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn('Failed to get "write" lock', err)

    def test_read_only_qcow2_node_refused(self):
        # It reads metadata, so it does not share write with the holder.
        rc, _, err = bh.run_daemon_once(self.qcow2_args(False), self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn('Failed to get shared "write" lock', err)

    def test_qcow2_refused_over_qmp_leaves_nothing(self):
        qmp = self.path("qmp.sock")
        self.start_daemon(bh.qmp_monitor(qmp), wait_for=qmp)
        q = self.connect_qmp(qmp)
        r = q.cmd("blockdev-add", driver="qcow2", **{"node-name": "q0"},
                  file={"driver": "file", "filename": self.image})
        self.assertEqual(r["error"]["desc"], 'Failed to get "write" lock')
        names = [n["node-name"] for n in q.cmd("query-named-block-nodes")["return"]]
        self.assertEqual(names, [])

    def test_locking_off_ignores_the_peer(self):
        sock = self.path("nbd.sock")
        self.start_daemon(self.start_args(True, ",locking=off"), wait_for=sock)


class BlockResize(bh.DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.disk = bh.make_sparse_file(self.path("disk.img"), 64 * MiB)
        self.qmp = self.path("qmp.sock")
        self.start_daemon(bh.qmp_monitor(self.qmp)
                          + bh.blockdev_file("f0", self.disk)
                          + bh.blockdev_file("ro", self.disk, read_only=True)
                          + bh.blockdev_null("n0", MiB),
                          wait_for=self.qmp)
        self.q = self.connect_qmp(self.qmp)

    def resize(self, size, **kw):
        return self.q.cmd("block_resize", size=size, **kw)

    def error(self, size, **kw):
        r = self.resize(size, **kw)
        self.assertIn("error", r)
        return r["error"]["desc"]

    def node_size(self, name):
        for n in self.q.cmd("query-named-block-nodes")["return"]:
            if n["node-name"] == name:
                return n["image"]["virtual-size"]
        raise AssertionError("no node " + name)

    def test_grow_and_shrink(self):
        self.assertEqual(self.resize(96 * MiB, **{"node-name": "f0"}), {"return": {}})
        self.assertEqual(os.path.getsize(self.disk), 96 * MiB)
        self.assertEqual(self.node_size("f0"), 96 * MiB)
        self.assertEqual(self.resize(32 * MiB, **{"node-name": "f0"}), {"return": {}})
        self.assertEqual(os.path.getsize(self.disk), 32 * MiB)
        self.assertEqual(self.node_size("f0"), 32 * MiB)
        # A size that is not whole sectors: the file takes it exactly, the
        # node shows whole sectors (as QEMU does).
        self.assertEqual(self.resize(1000, **{"node-name": "f0"}), {"return": {}})
        self.assertEqual(os.path.getsize(self.disk), 1000)
        self.assertEqual(self.node_size("f0"), 1024)
        self.assertEqual(self.resize(0, **{"node-name": "f0"}), {"return": {}})
        self.assertEqual(os.path.getsize(self.disk), 0)

    def test_errors_as_qemu(self):
        self.assertEqual(self.error(4096, **{"node-name": "zz"}),
                         "Cannot find device='' nor node-name='zz'")
        self.assertEqual(self.error(4096), "Cannot find device='' nor node-name=''")
        self.assertEqual(self.error(4096, device="f0"),
                         "Cannot find device='f0' nor node-name=''")
        self.assertEqual(self.error(-5, **{"node-name": "f0"}),
                         "Parameter 'size' expects a >0 size")
        self.assertEqual(self.error(2 ** 63 - 1, **{"node-name": "f0"}),
                         "offset(9223372036854775807) exceeds maximum(9223372035781033984)")
        self.assertEqual(self.error(MiB, **{"node-name": "ro"}), "Image is read-only")
        self.assertEqual(self.error(2 * MiB, **{"node-name": "n0"}),
                         "Image format driver does not support resize")
        r = self.q.cmd("block_resize", **{"node-name": "f0"})
        self.assertEqual(r["error"]["desc"], "Parameter 'size' is missing")
        self.assertEqual(os.path.getsize(self.disk), 64 * MiB)

    def add_raw(self, name, file, **opts):
        r = self.q.cmd("blockdev-add", driver="raw", **{"node-name": name}, file=file, **opts)
        self.assertEqual(r, {"return": {}})

    def test_raw_resizes_its_file(self):
        img = bh.make_sparse_file(self.path("r.img"), 4 * MiB)
        self.assertEqual(self.q.cmd("blockdev-add", driver="file", **{"node-name": "f1"},
                                    filename=img), {"return": {}})
        self.add_raw("r1", "f1")
        self.assertEqual(self.resize(96 * MiB, **{"node-name": "r1"}), {"return": {}})
        self.assertEqual(os.path.getsize(img), 96 * MiB)
        self.assertEqual(self.node_size("r1"), 96 * MiB)
        self.assertEqual(self.node_size("f1"), 96 * MiB)
        self.assertEqual(self.resize(MiB, **{"node-name": "r1"}), {"return": {}})
        self.assertEqual(os.path.getsize(img), MiB)
        self.assertEqual(self.node_size("r1"), MiB)

    def test_raw_window(self):
        img = bh.make_sparse_file(self.path("w.img"), 4 * MiB)
        self.assertEqual(self.q.cmd("blockdev-add", driver="file", **{"node-name": "f2"},
                                    filename=img), {"return": {}})
        # A window at an offset: the file keeps the bytes before it.
        self.add_raw("w1", "f2", offset=MiB)
        self.assertEqual(self.resize(8 * MiB, **{"node-name": "w1"}), {"return": {}})
        self.assertEqual(os.path.getsize(img), 9 * MiB)
        self.assertEqual(self.node_size("w1"), 8 * MiB)
        # A window of a fixed size cannot change.
        img3 = bh.make_sparse_file(self.path("w3.img"), 4 * MiB)
        self.assertEqual(self.q.cmd("blockdev-add", driver="file", **{"node-name": "f3"},
                                    filename=img3), {"return": {}})
        self.add_raw("w2", "f3", offset=MiB, size=MiB)
        self.assertEqual(self.error(2 * MiB, **{"node-name": "w2"}),
                         "Cannot resize fixed-size raw disks")
        self.assertEqual(os.path.getsize(img3), 4 * MiB)
        self.assertEqual(self.node_size("w2"), MiB)

    @bh.berth_only
    def test_exported_node_new_clients_see_new_size(self):
        sock = self.path("nbd.sock")
        self.assertEqual(self.q.cmd("nbd-server-start",
                                    addr={"type": "unix", "data": {"path": sock}}),
                         {"return": {}})
        self.assertEqual(self.q.cmd("block-export-add", type="nbd", id="e0",
                                    **{"node-name": "f0"}, writable=True),
                         {"return": {}})
        with bh.nbd_handle(nbd, sock, "f0") as old:
            self.assertEqual(old.get_size(), 64 * MiB)
            self.assertEqual(self.resize(128 * MiB, **{"node-name": "f0"}), {"return": {}})
            with bh.nbd_handle(nbd, sock, "f0") as new:
                self.assertEqual(new.get_size(), 128 * MiB)
                new.pwrite(b"\xa5" * 4096, 100 * MiB)
                self.assertEqual(new.pread(4096, 100 * MiB), b"\xa5" * 4096)
            # A connected client keeps the size it was told.
            self.assertEqual(old.get_size(), 64 * MiB)
            old.set_strict_mode(0)
            with self.assertRaises(nbd.Error):
                old.pread(4096, 100 * MiB)
            self.assertEqual(old.pread(4096, 0), bytes(4096))
        # Another process cannot resize what berth serves.
        rc, _, err = bh.run_tool(["qemu-img", "resize", "-f", "raw", self.disk, "1G"],
                                 check=False)
        self.assertIn('Failed to get "resize" lock', err)


if __name__ == "__main__":
    bh.require_tools("qemu-img", "qemu-io")
    bh.main()
