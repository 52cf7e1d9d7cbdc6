#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The qcow2 format driver end to end, against images made by qemu-img.

Each test starts its own daemon with a file node and a qcow2 node over it
(given by name, or nested as QMP's blockdev-add takes it) and exports it:
  - reads over NBD equal `qemu-img convert` of the image itself (v2, v3,
    small and large clusters, compressed, zero clusters, backing chains);
  - writes, zeroes and discards over NBD leave `qemu-img check` clean and
    `qemu-img compare` equal to the same operations on a raw reference;
  - query-named-block-nodes and nbdinfo --map look as qemu-storage-daemon's
    do for the same image (when QSD is installed);
  - unsupported images are refused with a line naming the feature.
Runs against qemu-storage-daemon too (BERTHD=qemu-storage-daemon)."""

import json
import os
import resource
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

QSD = shutil.which("qemu-storage-daemon")

WRITE_OPS = [
    "write -P 0xa1 0 64k",
    "write -P 0xa2 100000 300000",
    "write -P 0xa3 5m 1m",
    "write -z 5m 64k",
    "write -z 5500000 70000",
    "write -P 0xa4 12m 4k",
    "write -z 15m 1m",
    "write -P 0xa5 16769024 8192",
]


class Qcow2Test(bh.DaemonTestCase):

    def img(self, name, size="16M", opts=None, backing=None):
        path = self.path(name)
        args = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if opts:
            args += ["-o", opts]
        if backing:
            args += ["-b", backing, "-F", "qcow2"]
        bh.run_tool(args + [path, size])
        return path

    def qemu_io(self, path, *cmds, fmt="qcow2"):
        args = ["qemu-io", "-f", fmt]
        for c in cmds:
            args += ["-c", c]
        bh.run_tool(args + [path])

    def raw_of(self, path, name):
        out = self.path(name)
        bh.run_tool(["qemu-img", "convert", "-O", "raw", path, out])
        with open(out, "rb") as f:
            return f.read()

    def serve(self, image, writable=False, nested=False, extra=None, exe=None,
              name="daemon", stop_check=True):
        """A daemon exporting image through a qcow2 node 'q' as export 'q'."""
        tag = "%s-%d" % (name, len(self._test_daemons))
        sock = self.path(tag + ".sock")
        qmp = self.path(tag + ".qmp")
        if nested:
            q = {"driver": "qcow2", "node-name": "q",
                 "file": {"driver": "file", "filename": image}}
            if writable is False:
                q["read-only"] = True
            q.update(extra or {})
            args = ["--blockdev", json.dumps(q)]
        else:
            args = bh.blockdev_file("f", image, read_only=not writable)
            args += ["--blockdev", "driver=qcow2,node-name=q,file=f"
                     + ("" if writable else ",read-only=on")
                     + "".join("," + k + "=" + v for k, v in (extra or {}).items())]
        # The monitor first: its socket exists once the NBD one (waited for) does.
        args = bh.qmp_monitor(qmp) + args
        args += bh.nbd_server_unix(sock) + bh.nbd_export("e", "q", "q", writable=writable)
        d = self.start_daemon(args, wait_for=sock, name=tag, exe=exe, stop_check=stop_check)
        return d, bh.nbd_uri(sock, "q"), qmp

    def nbd_raw(self, uri, name):
        out = self.path(name)
        bh.run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out])
        with open(out, "rb") as f:
            return f.read()

    def check_clean(self, path):
        rc, out, err = bh.run_tool(["qemu-img", "check", path], check=False)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("No errors were found", out)


class ReadTest(Qcow2Test):

    def check_read(self, path, **kw):
        d, uri, _ = self.serve(path, **kw)
        self.assertEqual(self.nbd_raw(uri, "got.raw"), self.raw_of(path, "want.raw"))
        d.stop()

    def filled(self, name, opts):
        path = self.img(name, opts=opts)
        self.qemu_io(path, "write -P 0x11 0 64k", "write -P 0x22 1000000 2000000",
                     "write -z 4m 1m", "discard 1m 512k", "write -P 0x33 16711680 65536")
        return path

    def test_v2(self):
        self.check_read(self.filled("v2.qcow2", "compat=0.10"))

    def test_v3_small_clusters(self):
        self.check_read(self.filled("v3-512.qcow2", "compat=1.1,cluster_size=512"))

    def test_v3_2m_clusters_nested(self):
        self.check_read(self.filled("v3-2m.qcow2", "cluster_size=2M"), nested=True)

    def test_compressed(self):
        src = self.path("src.raw")
        bh.make_pattern_file(src, 8 * MiB, seed=3, sparse_every=2 * MiB)
        with open(src, "r+b") as f:
            f.seek(3 * MiB)
            f.write(b"".join(b"line %d\n" % i for i in range(100000)))
        path = self.path("c.qcow2")
        bh.run_tool(["qemu-img", "convert", "-c", "-O", "qcow2", src, path])
        self.check_read(path)

    def test_backing_chain(self):
        base = self.filled("base.qcow2", "compat=1.1")
        top = self.img("top.qcow2", size="20M", backing=base)
        self.qemu_io(top, "write -P 0x44 32k 64k", "write -z 1000000 64k")
        self.check_read(top)

    def test_raw_backing(self):
        base = bh.make_pattern_file(self.path("base.raw"), 8 * MiB, seed=7,
                                    sparse_every=1 * MiB)
        top = self.path("top.qcow2")
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                     top, "12M"])
        self.qemu_io(top, "write -P 0x44 100k 64k")
        self.check_read(top)
        with open(base, "rb") as f:
            before = f.read()
        ref = self.path("ref.raw")
        with open(ref, "wb") as f:
            f.write(before + bytes(4 * MiB))
        self.qemu_io(ref, "write -P 0x44 100k 64k", fmt="raw")
        d, uri, _ = self.serve(top, writable=True)
        self.qemu_io(uri, "write -P 0x55 3000000 5000", "write -z 6m 64k", fmt="raw")
        d.stop()
        self.qemu_io(ref, "write -P 0x55 3000000 5000", "write -z 6m 64k", fmt="raw")
        self.check_clean(top)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", top, ref])
        with open(base, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_backing_null(self):
        base = self.filled("base.qcow2", None)
        top = self.img("top.qcow2", backing=base)
        self.qemu_io(top, "write -P 0x44 32k 64k")
        d, uri, qmp = self.serve(top, nested=True, extra={"backing": None})
        nodes = self.connect_qmp(qmp).cmd("query-named-block-nodes")["return"]
        self.assertEqual([n["backing_file_depth"] for n in nodes], [0, 0])
        got = self.nbd_raw(uri, "got.raw")
        # Cluster 0 of the top holds what qemu-io copied up from the base.
        want = bytearray(16 * MiB)
        want[0:32 * 1024] = b"\x11" * 32768
        want[32 * 1024:96 * 1024] = b"\x44" * 65536
        self.assertEqual(got, bytes(want))

    def test_backing_by_node_name(self):
        base = self.filled("base.qcow2", None)
        top = self.img("top.qcow2", backing=base)
        self.qemu_io(top, "write -P 0x44 32k 64k")
        want = self.raw_of(top, "want.raw")     # before the daemon locks it
        sock = self.path("n.sock")
        args = bh.blockdev_file("fb", base, read_only=True)
        args += ["--blockdev", "driver=qcow2,node-name=b,file=fb,read-only=on"]
        args += bh.blockdev_file("ft", top)
        args += ["--blockdev", "driver=qcow2,node-name=q,file=ft,backing=b"]
        args += bh.nbd_server_unix(sock) + bh.nbd_export("e", "q", "q")
        self.start_daemon(args, wait_for=sock)
        self.assertEqual(self.nbd_raw(bh.nbd_uri(sock, "q"), "got.raw"), want)


class WriteTest(Qcow2Test):

    def run_writes(self, image, ref, nested=False):
        d, uri, _ = self.serve(image, writable=True, nested=nested)
        self.qemu_io(uri, *WRITE_OPS, fmt="raw")
        d.stop()
        self.qemu_io(ref, *WRITE_OPS, fmt="raw")
        self.check_clean(image)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, ref])
        self.qemu_io(image, "read -P 0xa3 5570000 100000", "read -P 0 5m 64k",
                     "read -P 0xa5 16769024 8192")

    def test_v3(self):
        image = self.img("w.qcow2")
        ref = self.path("ref.raw")
        bh.make_sparse_file(ref, 16 * MiB)
        self.run_writes(image, ref)

    def test_v2_4k(self):
        image = self.img("w.qcow2", opts="compat=0.10,cluster_size=4k")
        ref = self.path("ref.raw")
        bh.make_sparse_file(ref, 16 * MiB)
        self.run_writes(image, ref, nested=True)

    def test_backing_cow(self):
        base = self.img("base.qcow2")
        self.qemu_io(base, "write -P 0x5b 0 16m")
        before = self.raw_of(base, "before.raw")
        top = self.img("top.qcow2", backing=base)
        ref = self.path("ref.raw")
        with open(ref, "wb") as f:
            f.write(before)
        self.run_writes(top, ref)
        self.assertEqual(self.raw_of(base, "after.raw"), before)
        self.check_clean(base)

    def test_compressed_overwrite(self):
        src = self.path("src.raw")
        bh.make_pattern_file(src, 16 * MiB, seed=5)
        image = self.path("c.qcow2")
        bh.run_tool(["qemu-img", "convert", "-c", "-O", "qcow2", src, image])
        self.run_writes(image, src)

    def test_many_small_writes_grow_refcount_table(self):
        image = self.img("s.qcow2", size="64M", opts="cluster_size=512")
        ref = self.path("ref.raw")
        bh.make_sparse_file(ref, 64 * MiB)
        ops = ["write -P 0x%02x %d 3000" % (i % 250 + 1, i * 997 * 512) for i in range(120)]
        d, uri, _ = self.serve(image, writable=True)
        self.qemu_io(uri, *ops, fmt="raw")
        d.stop()
        self.qemu_io(ref, *ops, fmt="raw")
        self.check_clean(image)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, ref])

    def test_discard_and_unmap(self):
        image = self.img("d.qcow2")
        self.qemu_io(image, "write -P 0x66 0 8m")
        ref = self.path("ref.raw")
        bh.make_sparse_file(ref, 16 * MiB)
        ops = ["discard 1m 1m", "write -z -u 4m 1m", "write -z 6m 64k"]
        self.qemu_io(ref, "write -P 0x66 0 8m", *ops, fmt="raw")
        d, uri, _ = self.serve(image, writable=True, extra={"discard": "unmap"})
        self.qemu_io(uri, *ops, fmt="raw")
        d.stop()
        self.check_clean(image)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, ref])
        rc, out, _ = bh.run_tool(["qemu-img", "map", "--output=json", image])
        extents = json.loads(out)
        # The discarded and unmapped clusters own no data any more.
        for start in (1 * MiB, 4 * MiB):
            e = [x for x in extents if x["start"] <= start < x["start"] + x["length"]][0]
            self.assertFalse(e["data"], e)
            self.assertTrue(e["zero"], e)
        rc, out, _ = bh.run_tool(["qemu-img", "check", image])
        self.assertIn("No errors", out)

    @bh.needs_tools("nbdcopy")
    def test_sigkill_leaves_consistent_image(self):
        # Killed in the middle of allocating writes: leaks at worst.
        src = self.path("src.raw")
        bh.make_pattern_file(src, 64 * MiB, seed=4)
        for delay in (0.05, 0.2, 0.4):
            image = self.img("k.qcow2", size="64M", opts="cluster_size=4k")
            d, uri, _ = self.serve(image, writable=True, stop_check=False)
            copy = subprocess.Popen(["nbdcopy", "--request-size=65536", src, uri],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            d.kill()
            copy.wait(timeout=30)
            rc, out, err = bh.run_tool(["qemu-img", "check", image], check=False)
            self.assertIn(rc, (0, 3), out + err)
            self.assertNotIn("ERROR", out + err)
            os.unlink(image)

    @bh.needs_tools("nbdcopy")
    def test_nbdcopy_into_image(self):
        src = self.path("src.raw")
        bh.make_pattern_file(src, 16 * MiB, seed=9, sparse_every=1 * MiB)
        image = self.img("dst.qcow2")
        d, uri, _ = self.serve(image, writable=True)
        bh.run_tool(["nbdcopy", src, uri])
        d.stop()
        self.check_clean(image)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, src])


def header_flags(path):
    """(incompatible, compatible) feature bits of a v3 image's header."""
    with open(path, "rb") as f:
        h = f.read(88)
    return int.from_bytes(h[72:80], "big"), int.from_bytes(h[80:88], "big")


def no_core_dump():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


DIRTY = 1 << 0          # incompatible: refcounts not written back
LAZY_REFCOUNTS = 1 << 0  # compatible: the image allows lazy refcounts


class LazyRefcountsTest(Qcow2Test):
    """Images made with lazy_refcounts=on.  berth keeps refcounts exact on
    them (QEMU's lazy-refcounts=off): it never sets the dirty bit, so a
    kill leaves no more than leaked clusters.  lazy-refcounts=on is
    refused, and a dirty image opens read-only only."""

    def lazy_img(self, name="lazy.qcow2"):
        image = self.img(name, opts="lazy_refcounts=on")
        self.assertEqual(header_flags(image), (0, LAZY_REFCOUNTS))
        return image

    def write_and_check(self, extra=None):
        image = self.lazy_img()
        ref = self.path("ref.raw")
        bh.make_sparse_file(ref, 16 * MiB)
        d, uri, _ = self.serve(image, writable=True, extra=extra)
        self.qemu_io(uri, *WRITE_OPS, fmt="raw")
        d.stop()
        self.qemu_io(ref, *WRITE_OPS, fmt="raw")
        # Clean after close, the feature bit left as it was.
        self.assertEqual(header_flags(image), (0, LAZY_REFCOUNTS))
        self.check_clean(image)
        bh.run_tool(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, ref])

    def test_writes_leave_image_clean(self):
        self.write_and_check()

    def test_lazy_refcounts_off(self):
        self.write_and_check(extra={"lazy-refcounts": "off"})

    @bh.berth_only
    def test_never_dirty_while_writing_nor_after_kill(self):
        image = self.lazy_img()
        d, uri, _ = self.serve(image, writable=True, stop_check=False)
        self.qemu_io(uri, *WRITE_OPS, fmt="raw")
        self.assertEqual(header_flags(image)[0] & DIRTY, 0)
        d.kill()
        self.assertEqual(header_flags(image), (0, LAZY_REFCOUNTS))
        rc, out, err = bh.run_tool(["qemu-img", "check", image], check=False)
        self.assertIn(rc, (0, 3), out + err)
        self.assertNotIn("ERROR", out + err)

    @bh.berth_only
    def test_lazy_refcounts_on_refused(self):
        image = self.lazy_img()
        args = bh.blockdev_file("f", image) + [
            "--blockdev", "driver=qcow2,node-name=q,file=f,lazy-refcounts=on"]
        rc, _, err = bh.run_daemon_once(args, self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn("lazy-refcounts=on is not supported", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

    def dirty_img(self):
        image = self.lazy_img("dirty.qcow2")
        # qemu-io dies with the dirty bit set and the refcount not written.
        p = subprocess.run(["qemu-io", "-c", "write -P 0x11 0 64k", "-c", "abort", image],
                           capture_output=True, timeout=bh.TOOL_TIMEOUT,
                           preexec_fn=no_core_dump)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(header_flags(image)[0] & DIRTY, DIRTY)
        return image

    @bh.berth_only
    def test_dirty_image_refused_writable(self):
        image = self.dirty_img()
        args = bh.blockdev_file("f", image) + ["--blockdev", "driver=qcow2,node-name=q,file=f"]
        rc, _, err = bh.run_daemon_once(args, self.tmpdir)
        self.assertEqual(rc, 1)
        self.assertIn("Image is dirty (lazy refcounts not written back)", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertEqual(header_flags(image)[0] & DIRTY, DIRTY)

    def test_dirty_image_read_only(self):
        image = self.dirty_img()
        d, uri, qmp = self.serve(image, writable=False)
        self.assertEqual(self.nbd_raw(uri, "out.raw")[:65536], b"\x11" * 65536)
        q = self.connect_qmp(qmp)
        node = [n for n in q.cmd("query-named-block-nodes")["return"]
                if n["node-name"] == "q"][0]
        self.assertTrue(node["image"]["dirty-flag"])
        self.assertTrue(node["image"]["format-specific"]["data"]["lazy-refcounts"])
        d.stop()
        self.assertEqual(header_flags(image)[0] & DIRTY, DIRTY)


def normalize_nodes(nodes):
    """query-named-block-nodes without the automatic node names."""
    out = []
    for n in nodes:
        n = dict(n)
        if n["node-name"].startswith("#block"):
            n["node-name"] = "#auto"
        out.append(n)
    return sorted(out, key=lambda n: (n["drv"], n["file"], n["node-name"]))


@bh.berth_only
class QsdCompareTest(Qcow2Test):

    def query(self, exe, image, nested):
        d, uri, qmp = self.serve(image, nested=nested, exe=exe, name=os.path.basename(exe))
        q = self.connect_qmp(qmp)
        nodes = q.cmd("query-named-block-nodes")["return"]
        rc, out, err = bh.run_tool(["nbdinfo", "--map", uri])
        d.stop()
        return normalize_nodes(nodes), out

    def compare(self, image, nested=False):
        mine = self.query(bh.DAEMON_PATH, image, nested)
        theirs = self.query(QSD, image, nested)
        self.assertEqual(mine[0], theirs[0])
        self.assertEqual(mine[1], theirs[1])

    @bh.needs_tools("qemu-storage-daemon", "nbdinfo")
    def test_lazy_refcounts_image(self):
        self.compare(self.img("lazy.qcow2", opts="lazy_refcounts=on"))

    @bh.needs_tools("qemu-storage-daemon", "nbdinfo")
    def test_plain(self):
        image = self.img("p.qcow2", opts="compat=0.10")
        self.qemu_io(image, "write -P 1 0 1m", "write -P 2 8m 64k")
        self.compare(image)

    @bh.needs_tools("qemu-storage-daemon", "nbdinfo")
    def test_backing_chain(self):
        base = self.img("base.qcow2")
        self.qemu_io(base, "write -P 1 0 2m", "write -z 4m 1m")
        mid = self.img("mid.qcow2", backing=base)
        self.qemu_io(mid, "write -P 2 1m 2m", "write -z 0 64k")
        top = self.img("top.qcow2", backing=mid)
        self.qemu_io(top, "write -P 3 10m 1m")
        self.compare(top, nested=True)

    @bh.needs_tools("qemu-storage-daemon", "nbdinfo")
    def test_raw_backing(self):
        base = bh.make_pattern_file(self.path("base.raw"), 8 * MiB, seed=2,
                                    sparse_every=1 * MiB)
        top = self.path("top.qcow2")
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
                     top, "8M"])
        self.qemu_io(top, "write -P 3 2m 64k")
        self.compare(top)


class ResizeTest(Qcow2Test):
    """block_resize of a qcow2 node (no export: QSD 7.2 refuses to resize an
    exported node), then the image checked with QEMU's own tools."""

    def resize_with(self, image, *sizes, read_only=False):
        qmp = self.path("r%d.qmp" % len(self._test_daemons))
        args = bh.qmp_monitor(qmp) + bh.blockdev_file("f", image, read_only=read_only)
        args += ["--blockdev", "driver=qcow2,node-name=q,file=f"
                 + (",read-only=on" if read_only else "")]
        d = self.start_daemon(args, wait_for=qmp)
        q = self.connect_qmp(qmp)
        replies = [q.cmd("block_resize", **{"node-name": "q", "size": n}) for n in sizes]
        d.stop()
        return replies

    def info(self, path):
        return json.loads(bh.run_tool(["qemu-img", "info", "--output=json", path])[1])

    def io_ok(self, path, *cmds):
        args = ["qemu-io", "-f", "qcow2"]
        for c in cmds:
            args += ["-c", c]
        rc, out, err = bh.run_tool(args + [path], check=False)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("Pattern verification failed", out + err)
        self.assertNotIn("failed", out + err)

    def test_grow_needs_a_bigger_l1_table(self):
        path = self.img("g.qcow2")
        self.qemu_io(path, "write -P 0xa1 0 64k", "write -P 0xa2 16773120 4096")
        self.assertEqual(self.resize_with(path, 3 * 1024 * MiB), [{"return": {}}])
        self.check_clean(path)
        self.assertEqual(self.info(path)["virtual-size"], 3 * 1024 * MiB)
        self.io_ok(path, "read -P 0xa1 0 64k", "read -P 0xa2 16773120 4096",
                   "read -P 0 16m 1m", "write -P 0xb1 2500m 64k", "read -P 0xb1 2500m 64k")
        self.check_clean(path)

    def test_shrink_frees_clusters_and_regrows_as_zeroes(self):
        path = self.img("s.qcow2")
        self.qemu_io(path, "write -P 0xc1 0 16m")
        self.assertEqual(self.resize_with(path, 8 * MiB + 512, 16 * MiB),
                         [{"return": {}}, {"return": {}}])
        self.check_clean(path)
        self.assertEqual(self.info(path)["virtual-size"], 16 * MiB)
        self.io_ok(path, "read -P 0xc1 0 8389120", "read -P 0 8454144 7929856")
        if not bh.is_qsd():
            # QEMU 7.2 shows the old bytes of the cut cluster again; berth
            # zeroes what a grow brings back.
            self.io_ok(path, "read -P 0 8389120 65024")
        # The clusters past the end were given back.
        m = json.loads(bh.run_tool(["qemu-img", "map", "--output=json", path])[1])
        data = sum(e["length"] for e in m if e["data"])
        self.assertLessEqual(data, 8 * MiB + 64 * 1024)

    def test_backing_does_not_show_through(self):
        base = self.img("base.qcow2", size="32M")
        self.qemu_io(base, "write -P 0x11 0 32m")
        top = self.img("top.qcow2", backing=base)
        self.qemu_io(top, "write -P 0x22 0 1m")
        self.assertEqual(self.resize_with(top, 32 * MiB), [{"return": {}}])
        self.check_clean(top)
        self.io_ok(top, "read -P 0x22 0 1m", "read -P 0x11 1m 15m", "read -P 0 16m 16m")

    def test_refusals(self):
        path = self.img("e.qcow2")
        r = self.resize_with(path, 1000)
        self.assertEqual(r[0]["error"]["desc"], "The new size must be a multiple of 512")
        r = self.resize_with(path, 32 * MiB, read_only=True)
        self.assertIn("error", r[0])
        self.assertEqual(self.info(path)["virtual-size"], 16 * MiB)
        self.check_clean(path)


@bh.berth_only
class RefuseTest(Qcow2Test):

    def refused(self, image, words):
        sock = self.path("r.sock")
        args = bh.blockdev_file("f", image) + ["--blockdev", "driver=qcow2,node-name=q,file=f"]
        rc, out, err = bh.run_daemon_once(args + bh.nbd_server_unix(sock), self.tmpdir)
        self.assertNotEqual(rc, 0)
        for w in words:
            self.assertIn(w, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_refcount_bits(self):
        self.refused(self.img("r8.qcow2", opts="refcount_bits=8"), ["refcount", "16"])

    def test_extended_l2(self):
        self.refused(self.img("x.qcow2", opts="extended_l2=on"), ["extended L2"])

    def test_zstd(self):
        rc, _, _ = bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                                "compression_type=zstd", self.path("z.qcow2"), "1M"],
                               check=False)
        if rc != 0:
            self.skipTest("qemu-img without zstd")
        self.refused(self.path("z.qcow2"), ["zstd"])

    def test_encryption(self):
        path = self.path("e.qcow2")
        rc, _, err = bh.run_tool(["qemu-img", "create", "-q", "--object",
                                  "secret,id=s0,data=pw", "-f", "qcow2", "-o",
                                  "encrypt.format=luks,encrypt.key-secret=s0,"
                                  "encrypt.iter-time=10", path, "1M"], check=False)
        if rc != 0:
            # qemu-img times its key derivation with the thread's CPU clock,
            # and fails where that clock is too coarse ("Unable to get
            # accurate CPU usage"). Then take a plain image and set the
            # header's crypt_method (offset 32) to 2, LUKS, as qemu-img would.
            self.assertIn("CPU usage", err)
            path = self.img("e2.qcow2")
            with open(path, "r+b") as f:
                f.seek(32)
                f.write((2).to_bytes(4, "big"))
        self.refused(path, ["encrypt"])

    def test_data_file(self):
        path = self.img("d.qcow2", opts="data_file=" + self.path("d.raw"))
        self.refused(path, ["external data file"])

    def test_not_qcow2(self):
        path = bh.make_sparse_file(self.path("raw.img"), 1 * MiB)
        self.refused(path, ["not in qcow2 format"])

    def test_corrupt_header_l1(self):
        path = self.img("l1.qcow2")
        with open(path, "r+b") as f:
            f.seek(36)
            f.write((0x7fffffff).to_bytes(4, "big"))
        self.refused(path, ["L1 table"])


if __name__ == "__main__":
    bh.require_tools("qemu-img", "qemu-io")
    bh.main()
