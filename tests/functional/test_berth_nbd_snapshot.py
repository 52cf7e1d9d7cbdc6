#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""berth-nbd's snapshot options and --image-opts against qemu-nbd 7.2.

Each test runs the same command line with qemu-nbd and with $BERTH_NBD:
  - -l/--load-snapshot in each of its forms (ID, name, snapshot.id=,
    snapshot.name=) serves the internal snapshot that `qemu-img snapshot -c`
    made, read-only, byte for byte what qemu-nbd serves and what `qemu-img
    convert -l` extracts; a missing snapshot, a raw image and a bad
    parameter fail with qemu-nbd's texts;
  - -s/--snapshot lets clients write and read back their writes while the
    image stays unchanged (`qemu-img compare`), the overlay in $TMPDIR is
    deleted at once, and the image's locks are those qemu-nbd takes;
  - --image-opts takes block options for the image (a qcow2 stack), and
    refuses -f as qemu-nbd does.
Exits 77 (skipped) when qemu-nbd or qemu-img is missing."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

bh.require_tools("qemu-nbd", "qemu-img", "qemu-io")
nbd = bh.import_nbd()

QEMU_NBD = shutil.which("qemu-nbd")
BERTH_NBD = (os.environ.get("BERTH_NBD")
             or os.path.join(bh.SOURCE_ROOT, "build", "tools", "berth-nbd"))
TOOLS = (("qemu-nbd", QEMU_NBD), ("berth-nbd", BERTH_NBD))
SIZE = 16 * MiB


def run(args, timeout=bh.TOOL_TIMEOUT):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def without_prefix(tool, err):
    """stderr lines with the program's name taken off."""
    return [l[len(tool) + 2:] if l.startswith(tool + ": ") else l
            for l in err.splitlines() if l.strip()]


def locked_bytes(path):
    ino = os.stat(path).st_ino
    got = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1] != "OFDLCK" or fields[5].split(":")[-1] != str(ino):
                continue
            got.update(range(int(fields[6]), int(fields[7]) + 1))
    return got


class SnapshotTestCase(bh.DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.path("tmp")
        os.mkdir(self.tmp)
        old = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = self.tmp
        self.addCleanup(lambda: os.environ.pop("TMPDIR") if old is None
                        else os.environ.__setitem__("TMPDIR", old))
        self.serial = 0

    def qcow2(self, name):
        path = self.path(name)
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", path, str(SIZE)])
        return path

    def qemu_io(self, path, *cmds, fmt="qcow2"):
        args = ["qemu-io", "-f", fmt]
        for c in cmds:
            args += ["-c", c]
        bh.run_tool(args + [path])

    def serve(self, exe, args):
        self.serial += 1
        sock = self.path("s%d.sock" % self.serial)
        d = self.start_daemon(["-t", "-k", sock] + list(args), wait_for=sock, exe=exe,
                              stop_check=False,
                              name="%s-%d" % (os.path.basename(exe), self.serial))
        return d, sock

    def stop(self, d):
        # Only once a client got in: qemu-nbd may miss a SIGTERM sent while
        # it still opens the image.
        d.send_signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(bh.STOP_TIMEOUT), 0, d.describe())

    @contextlib.contextmanager
    def handle(self, sock):
        h = nbd.NBD()
        h.connect_unix(sock)
        try:
            yield h
        finally:
            with contextlib.suppress(nbd.Error):
                h.shutdown()
            del h

    def read_all(self, sock):
        out = self.path("read%d.raw" % self.serial)
        bh.run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw",
                     bh.nbd_uri(sock), out])
        with open(out, "rb") as f:
            return f.read()


class LoadSnapshot(SnapshotTestCase):

    def setUp(self):
        super().setUp()
        self.image = self.qcow2("snap.qcow2")
        self.qemu_io(self.image, "write -P 0x11 0 1m", "write -P 0x12 8m 64k")
        bh.run_tool(["qemu-img", "snapshot", "-c", "first", self.image])
        self.qemu_io(self.image, "write -P 0x22 0 512k", "write -z 8m 64k")
        bh.run_tool(["qemu-img", "snapshot", "-c", "second", self.image])
        self.qemu_io(self.image, "write -P 0x33 64k 64k", "write -P 0x34 12m 4k")
        self.ref = {}
        for sn in ("first", "second"):
            out = self.path(sn + ".raw")
            bh.run_tool(["qemu-img", "convert", "-l", "snapshot.name=" + sn,
                         "-O", "raw", self.image, out])
            with open(out, "rb") as f:
                self.ref[sn] = f.read()
        with open(self.image, "rb") as f:
            self.before = f.read()

    def test_each_form_serves_the_snapshot_read_only(self):
        forms = (("first", "first"), ("1", "first"), ("2", "second"),
                 ("snapshot.id=1", "first"), ("snapshot.name=second", "second"),
                 ("snapshot.id=2,snapshot.name=second", "second"))
        for tool, exe in TOOLS:
            for form, sn in forms:
                with self.subTest(tool=tool, form=form):
                    d, sock = self.serve(exe, ["-l", form, self.image])
                    self.assertEqual(self.read_all(sock), self.ref[sn])
                    with self.handle(sock) as h:
                        self.assertTrue(h.is_read_only())
                        self.assertEqual(h.get_size(), SIZE)
                        with self.assertRaises(nbd.Error):
                            h.pwrite(b"x" * 512, 0)
                    self.stop(d)
        with open(self.image, "rb") as f:
            self.assertEqual(f.read(), self.before)
        rc, out, _ = bh.run_tool(["qemu-img", "check", self.image])
        self.assertIn("No errors", out)

    def test_same_bytes_as_qemu_nbd(self):
        got = {}
        for tool, exe in TOOLS:
            d, sock = self.serve(exe, ["--load-snapshot=second", self.image])
            got[tool] = self.read_all(sock)
            self.stop(d)
        self.assertEqual(got["berth-nbd"], got["qemu-nbd"])

    def test_errors_as_qemu_nbd(self):
        raw = bh.make_sparse_file(self.path("r.img"), MiB)
        cases = (
            (["-l", "third", self.image], ["Failed to load snapshot: Can't find snapshot"]),
            (["-l", "snapshot.id=1,snapshot.name=second", self.image],
             ["Failed to load snapshot: Can't find snapshot"]),
            (["-l", "snapshot.foo=1", self.image],
             ["Invalid parameter 'snapshot.foo'",
              "Failed in parsing snapshot param `snapshot.foo=1'"]),
            # -s writes to an overlay, which has no snapshots.
            (["-s", "-l", "first", self.image],
             ["Failed to load snapshot: Can't find snapshot"]),
        )
        for args, lines in cases:
            for tool, exe in TOOLS:
                with self.subTest(tool=tool, args=args):
                    rc, err = run([exe, "-k", self.path("x.sock")] + args)
                    self.assertEqual(rc, 1, err)
                    self.assertEqual(without_prefix(tool, err), lines)
        for tool, exe in TOOLS:
            with self.subTest(tool=tool, image="raw"):
                rc, err = run([exe, "-k", self.path("x.sock"), "-f", "raw", "-l", "1", raw])
                self.assertEqual(rc, 1, err)
                lines = without_prefix(tool, err)
                self.assertEqual(len(lines), 1, err)
                self.assertIn("does not support temporarily loading internal snapshots",
                              lines[0])


    def test_malformed_snapshot_table_refused(self):
        # berth-nbd only: a clear line, never a crash or a read out of bounds.
        def patched(offset, value, width):
            path = self.path("bad%d-%d.qcow2" % (offset, value))
            shutil.copyfile(self.image, path)
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(value.to_bytes(width, "big"))
            return path

        with open(self.image, "rb") as f:
            header = f.read(72)
        table = int.from_bytes(header[64:72], "big")
        # "nosuch": no entry has it, so the whole table is walked; "1": the
        # first entry, whose L1 table is then checked.
        cases = (
            (patched(60, 70000, 4), "nosuch", ("too many snapshots",)),
            # What follows the two real entries is no snapshot table.
            (patched(60, 60000, 4), "nosuch",
             ("snapshot table truncated", "snapshot extra data too large")),
            (patched(64, table + 8, 8), "1", ("snapshot table offset invalid",)),
            (patched(64, 1 << 50, 8), "1", ("snapshot table offset invalid",)),
            (patched(table, 12345, 8), "1", ("Snapshot L1 table offset invalid",)),
            (patched(table, 1 << 50, 8), "1", ("Snapshot L1 table offset invalid",)),
            (patched(table + 8, 1 << 30, 4), "1", ("Snapshot L1 table too large",)),
            (patched(table + 36, 5000, 4), "1", ("snapshot extra data too large",)),
        )
        for path, which, words in cases:
            with self.subTest(path=os.path.basename(path)):
                rc, err = run([BERTH_NBD, "-k", self.path("x.sock"), "-l", which, path],
                              timeout=10)
                self.assertEqual(rc, 1, err)
                lines = without_prefix("berth-nbd", err)
                self.assertEqual(len(lines), 1, err)
                self.assertTrue(any(w in lines[0] for w in words), lines[0])


class Snapshot(SnapshotTestCase):

    def writes_discarded(self, args, image, fmt):
        before = self.path("before.img")
        shutil.copyfile(image, before)
        for tool, exe in TOOLS:
            with self.subTest(tool=tool):
                d, sock = self.serve(exe, ["-s"] + args)
                with self.handle(sock) as h:
                    # The overlay's file is gone from $TMPDIR while it
                    # serves (qemu-nbd listens before it opens the image).
                    self.assertEqual(os.listdir(self.tmp), [])
                    self.assertFalse(h.is_read_only())
                    self.assertEqual(h.get_size(), SIZE)
                    h.pwrite(b"\x5a" * (64 * KiB), 0)          # block 0 too
                    h.pwrite(b"\xa5" * 4096, 5 * MiB + 512)
                    h.zero(MiB, 2 * MiB)
                    h.flush()
                    self.assertEqual(h.pread(64 * KiB, 0), b"\x5a" * (64 * KiB))
                    self.assertEqual(h.pread(4096, 5 * MiB + 512), b"\xa5" * 4096)
                    self.assertEqual(h.pread(4096, 2 * MiB), b"\0" * 4096)
                    with open(before, "rb") as f:
                        f.seek(3 * MiB)
                        self.assertEqual(h.pread(MiB, 3 * MiB), f.read(MiB))
                self.stop(d)
                bh.run_tool(["qemu-img", "compare", "-f", fmt, "-F", fmt, image, before])
                with open(image, "rb") as a, open(before, "rb") as b:
                    self.assertEqual(a.read(), b.read())
                self.assertEqual(os.listdir(self.tmp), [])

    def test_raw_image_unchanged(self):
        image = bh.make_pattern_file(self.path("disk.img"), SIZE, seed=3)
        self.writes_discarded(["-f", "raw", image], image, "raw")

    def test_qcow2_image_unchanged(self):
        image = self.qcow2("disk.qcow2")
        self.qemu_io(image, "write -P 0x42 0 4m", "write -P 0x43 6m 1m")
        self.writes_discarded([image], image, "qcow2")

    def test_with_image_opts(self):
        image = self.qcow2("disk.qcow2")
        self.qemu_io(image, "write -P 0x44 0 8m")
        self.writes_discarded(["--image-opts", "driver=qcow2,file.driver=file,file.filename="
                               + bh.opt_escape(image)], image, "qcow2")

    def test_locks_as_qemu_nbd(self):
        raw = bh.make_pattern_file(self.path("disk.img"), SIZE, seed=4)
        image = self.qcow2("disk.qcow2")
        for args, path in ((["-f", "raw", raw], raw), ([image], image)):
            got = {}
            for tool, exe in TOOLS:
                d, sock = self.serve(exe, ["-s"] + args)
                with self.handle(sock):     # qemu-nbd: the image is open
                    got[tool] = locked_bytes(path)
                self.stop(d)
            self.assertEqual(got["berth-nbd"], got["qemu-nbd"], args)
            self.assertIn(100, got["berth-nbd"])


class ImageOpts(SnapshotTestCase):

    def test_qcow2_stack_read_and_written(self):
        image = self.qcow2("disk.qcow2")
        self.qemu_io(image, "write -P 0x61 0 2m")
        opts = "driver=qcow2,file.driver=file,file.filename=" + bh.opt_escape(image)
        for tool, exe in TOOLS:
            with self.subTest(tool=tool):
                d, sock = self.serve(exe, ["--image-opts", opts])
                with self.handle(sock) as h:
                    self.assertEqual(h.get_size(), SIZE)
                    self.assertEqual(h.pread(4096, 0), b"\x61" * 4096)
                    h.pwrite(b"\x62" * 4096, 3 * MiB)
                self.stop(d)
                self.qemu_io(image, "read -P 0x62 3m 4k", "read -P 0x61 0 2m")
                rc, out, _ = bh.run_tool(["qemu-img", "check", image])
                self.assertIn("No errors", out)
                self.qemu_io(image, "write -P 0 3m 4k")

    def test_read_only_and_nested_raw(self):
        raw = bh.make_pattern_file(self.path("disk.img"), SIZE, seed=5)
        with open(raw, "rb") as f:
            data = f.read()
        opts = "driver=raw,file.driver=file,file.filename=" + bh.opt_escape(raw)
        for tool, exe in TOOLS:
            with self.subTest(tool=tool):
                d, sock = self.serve(exe, ["-r", "--image-opts", opts])
                with self.handle(sock) as h:
                    self.assertTrue(h.is_read_only())
                self.assertEqual(self.read_all(sock), data)
                self.stop(d)

    def test_refusals(self):
        raw = bh.make_sparse_file(self.path("r.img"), MiB)
        for tool, exe in TOOLS:
            with self.subTest(tool=tool):
                rc, err = run([exe, "-k", self.path("x.sock"), "--image-opts", "-f", "raw",
                               "driver=file,filename=" + raw])
                self.assertEqual(rc, 1, err)
                self.assertEqual(without_prefix(tool, err),
                                 ["--image-opts and -f are mutually exclusive"])
                rc, err = run([exe, "-k", self.path("x.sock"), "--image-opts",
                               "driver=raw,file.filename=%s,bogus=1" % raw])
                self.assertEqual(rc, 1, err)
                lines = without_prefix(tool, err)
                self.assertEqual(len(lines), 1, err)
                self.assertIn("bogus", lines[0])


if __name__ == "__main__":
    if not os.access(BERTH_NBD, os.X_OK):
        sys.stderr.write("ERROR: berth-nbd %r not found (set $BERTH_NBD)\n" % BERTH_NBD)
        sys.exit(1)
    bh.main()
