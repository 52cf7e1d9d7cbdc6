#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""driver=rbd on a real one-node Ceph cluster (tests/ceph/micro-ceph.sh).

Images are made with the rbd tool, exported by the daemon under test and
checked through libnbd and `rbd export`: written data is byte-identical in
Ceph, nodes come and go through QMP, two images are served at once, a
snapshot is served read-only, a missing image or pool is a clear error, and
a cluster that stops under load fails requests with EIO within the client
timeout while the daemon and its monitor keep answering.

Runs against qemu-storage-daemon too (BERTHD=qemu-storage-daemon), for the
option names and behaviour. Skips when the Ceph packages (ceph-mon,
ceph-osd, ceph-common) are not installed.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time

from berth_harness import (DaemonTestCase, berth_only, MiB, SOURCE_ROOT, TOOL_TIMEOUT, import_nbd,
                           is_qsd, main, nbd_export, nbd_server_unix, nbd_uri, opt_escape,
                           qmp_monitor, qsd_deviates, require_tools, run_tool)

require_tools("ceph-mon", "ceph-osd", "ceph", "rbd", "monmaptool")
nbd = import_nbd()

MICRO_CEPH = os.path.join(SOURCE_ROOT, "tests", "ceph", "micro-ceph.sh")
CLIENT_TIMEOUT = 5          # the test cluster's rados_osd_op_timeout & co.
IMAGE_SIZE = 16 * MiB


class CephCluster:
    def __init__(self, folder, auth="none"):
        self.dir = folder
        self.conf = os.path.join(folder, "ceph.conf")
        self.auth = auth

    def start(self):
        env = dict(os.environ, MICRO_CEPH_CLIENT_TIMEOUT=str(CLIENT_TIMEOUT),
                   MICRO_CEPH_MEMSTORE_BYTES=str(1024 * MiB), MICRO_CEPH_AUTH=self.auth)
        p = subprocess.run([MICRO_CEPH, "start", self.dir], env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        if p.returncode != 0:
            raise AssertionError("micro-ceph start failed:\n" + p.stderr.decode())

    def stop(self):
        subprocess.run([MICRO_CEPH, "stop", self.dir], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)

    def rbd(self, *args, input=None):
        return run_tool(["rbd", "-c", self.conf] + list(args), input=input)[1]

    def create(self, name, size=IMAGE_SIZE):
        self.rbd("create", "--size", "%dB" % size, name)

    def export(self, spec):
        p = subprocess.run(["rbd", "-c", self.conf, "export", spec, "-"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=TOOL_TIMEOUT)
        if p.returncode != 0:
            raise AssertionError("rbd export failed: " + p.stderr.decode())
        return p.stdout

    def import_data(self, name, data, folder):
        path = os.path.join(folder, name + ".img")
        with open(path, "wb") as f:
            f.write(data)
        self.rbd("import", path, name)


def blockdev_rbd(node, cluster, image, extra=""):
    s = "driver=rbd,node-name=%s,pool=rbd,image=%s,conf=%s" % (node, image,
                                                              opt_escape(cluster.conf))
    return ["--blockdev", s + extra]


class RbdClusterTestCase(DaemonTestCase):
    AUTH = "none"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ceph = CephCluster(os.path.join(cls.class_dir, "ceph"), cls.AUTH)
        cls.addClassCleanup(cls.ceph.stop)
        cls.ceph.start()
        cls.serial = 0

    def image(self, size=IMAGE_SIZE):
        type(self).serial += 1
        name = "%s-%d" % (self._testMethodName.replace("_", "-"), self.serial)
        self.ceph.create(name, size)
        return name

    def serve(self, blockdevs, exports, stop_check=True):
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        args = list(blockdevs) + nbd_server_unix(sock) + list(exports) + qmp_monitor(qmp)
        d = self.start_daemon(args, wait_for=qmp, stop_check=stop_check)
        return d, sock, self.connect_qmp(qmp)

    @staticmethod
    def close_client(h):
        try:
            if h.aio_is_ready():
                h.shutdown()
        except nbd.Error:
            pass

    def client(self, sock, name, meta=False):
        h = nbd.NBD()
        self.addCleanup(self.close_client, h)
        if meta:
            h.add_meta_context("base:allocation")
        h.connect_uri(nbd_uri(sock, name))
        return h


class RbdTest(RbdClusterTestCase):

    def test_write_then_rbd_export_identical(self):
        img = self.image()
        d, sock, _ = self.serve(blockdev_rbd("n", self.ceph, img),
                                nbd_export("e", "n", name=img, writable=True))
        h = self.client(sock, img)
        self.assertEqual(h.get_size(), IMAGE_SIZE)
        expect = bytearray(IMAGE_SIZE)
        rng = random.Random(18)
        for off, length in [(0, 4096), (5000, 70000), (4 * MiB - 512, 1024),
                            (IMAGE_SIZE - MiB, MiB)]:
            data = rng.randbytes(length)
            h.pwrite(data, off)
            expect[off:off + length] = data
        data = rng.randbytes(65536)
        h.pwrite(data, 2 * MiB, nbd.CMD_FLAG_FUA)
        expect[2 * MiB:2 * MiB + 65536] = data
        h.zero(8192, 8 * MiB)
        expect[8 * MiB:8 * MiB + 8192] = bytes(8192)
        h.flush()
        self.assertEqual(h.pread(IMAGE_SIZE, 0), bytes(expect))
        self.assertEqual(self.ceph.export(img), bytes(expect))

    def test_block_status_from_object_map(self):
        img = self.image()
        d, sock, _ = self.serve(blockdev_rbd("n", self.ceph, img),
                                nbd_export("e", "n", name=img, writable=True))
        h = self.client(sock, img, meta=True)
        h.pwrite(b"x" * 4096, 4 * MiB + 100)
        h.flush()
        seen = []

        def cb(metacontext, offset, entries, err):
            seen.extend(zip(entries[0::2], entries[1::2]))
        h.block_status(IMAGE_SIZE, 0, cb)
        # Objects of 4 MiB: only the second one holds data.
        pos, data = 0, []
        for length, flags in seen:
            if not flags & nbd.STATE_HOLE:
                data.append((pos, length))
            pos += length
        self.assertEqual(data, [(4 * MiB, 4 * MiB)])

    def test_blockdev_add_del_at_run_time(self):
        img = self.image()
        self.ceph.import_data(img + "-src", b"\x5a" * MiB, self.tmpdir)
        d, sock, q = self.serve([], [])
        r = q.cmd("blockdev-add", driver="rbd", node_name="n1", pool="rbd",
                  image=img + "-src", conf=self.ceph.conf)
        self.assertEqual(r, {"return": {}})
        nodes = q.cmd("query-named-block-nodes")["return"]
        self.assertIn("n1", [n["node-name"] for n in nodes])
        self.assertEqual(q.cmd("block-export-add", type="nbd", id="e1", node_name="n1",
                               name="src"), {"return": {}})
        h = self.client(sock, "src")
        self.assertEqual(h.pread(MiB, 0), b"\x5a" * MiB)
        h.shutdown()
        self.assertEqual(q.cmd("block-export-del", id="e1"), {"return": {}})
        deadline = time.monotonic() + 10
        while True:
            r = q.cmd("blockdev-del", node_name="n1")
            if r == {"return": {}} or time.monotonic() > deadline:
                break
            time.sleep(0.1)     # the export lets go of the node asynchronously
        self.assertEqual(r, {"return": {}})
        nodes = q.cmd("query-named-block-nodes")["return"]
        self.assertNotIn("n1", [n["node-name"] for n in nodes])
        # The same image again, through the same (shared) cluster connection.
        self.assertEqual(q.cmd("blockdev-add", driver="rbd", node_name="n2", pool="rbd",
                               image=img, conf=self.ceph.conf,
                               server=[{"host": "127.0.0.1", "port": self.mon_port()}]),
                         {"return": {}})
        self.assertEqual(q.cmd("blockdev-del", node_name="n2"), {"return": {}})

    def test_block_resize(self):
        img = self.image()
        d, sock, q = self.serve(blockdev_rbd("n", self.ceph, img), [])

        def sizes():
            nodes = q.cmd("query-named-block-nodes")["return"]
            node = [n for n in nodes if n["node-name"] == "n"][0]
            info = run_tool(["rbd", "-c", self.ceph.conf, "info", "--format", "json", img])[1]
            return node["image"]["virtual-size"], json.loads(info)["size"]
        # (QSD 7.2 refuses to resize a node while an NBD export uses it.)
        self.assertEqual(q.cmd("block_resize", node_name="n", size=2 * IMAGE_SIZE),
                         {"return": {}})
        self.assertEqual(sizes(), (2 * IMAGE_SIZE, 2 * IMAGE_SIZE))
        self.assertEqual(q.cmd("block-export-add", type="nbd", id="e", node_name="n",
                               name=img, writable=True), {"return": {}})
        h = self.client(sock, img)
        self.assertEqual(h.get_size(), 2 * IMAGE_SIZE)
        h.pwrite(b"\x42" * 4096, 0)
        h.pwrite(b"\x17" * 4096, 2 * IMAGE_SIZE - 4096)
        h.flush()
        h.shutdown()
        data = self.ceph.export(img)
        self.assertEqual(len(data), 2 * IMAGE_SIZE)
        self.assertEqual(data[-4096:], b"\x17" * 4096)
        self.assertEqual(q.cmd("block-export-del", id="e"), {"return": {}})
        deadline = time.monotonic() + 10
        while True:     # the export lets go of the node asynchronously
            r = q.cmd("block_resize", node_name="n", size=MiB)
            if r == {"return": {}} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r, {"return": {}})
        self.assertEqual(sizes(), (MiB, MiB))
        self.assertEqual(self.ceph.export(img)[:4096], b"\x42" * 4096)

    @berth_only
    def test_one_cluster_connection_shared(self):
        """Nodes that name the cluster the same way share one rados_t (a
        dozen threads each): a second node adds far fewer threads than a
        node with another identity (another client id)."""
        imgs = [self.image() for _ in range(3)]
        d, sock, q = self.serve([], [])

        def threads():
            return len(os.listdir("/proc/%d/task" % d.pid))

        def add(node, img, **kw):
            self.assertEqual(q.cmd("blockdev-add", driver="rbd", node_name=node, pool="rbd",
                                   image=img, conf=self.ceph.conf, **kw), {"return": {}})
        add("n0", imgs[0])
        t0 = threads()
        add("n1", imgs[1])
        t1 = threads()
        add("n2", imgs[2], user="admin")
        t2 = threads()
        self.assertLess(t1 - t0, 4, (t0, t1, t2))
        self.assertGreater(t2 - t1, 8, (t0, t1, t2))

    def mon_port(self):
        with open(self.ceph.conf) as f:
            for line in f:
                if line.startswith("mon_host"):
                    return line.rsplit(":", 1)[1].strip()
        raise AssertionError("no mon_host in ceph.conf")

    def test_two_images_at_once(self):
        a, b = self.image(), self.image()
        # The second names the monitor itself, in the dotted list form.
        d, sock, _ = self.serve(blockdev_rbd("na", self.ceph, a) +
                                blockdev_rbd("nb", self.ceph, b,
                                             ",server.0.host=127.0.0.1,server.0.port=%s"
                                             % self.mon_port()),
                                nbd_export("ea", "na", name=a, writable=True) +
                                nbd_export("eb", "nb", name=b, writable=True))
        ha, hb = self.client(sock, a), self.client(sock, b)
        ha.pwrite(b"A" * MiB, 0)
        hb.pwrite(b"B" * MiB, 0)
        ha.flush()
        hb.flush()
        self.assertEqual(hb.pread(MiB, 0), b"B" * MiB)
        self.assertEqual(ha.pread(MiB, 0), b"A" * MiB)
        self.assertEqual(self.ceph.export(a)[:MiB], b"A" * MiB)
        self.assertEqual(self.ceph.export(b)[:MiB], b"B" * MiB)

    @qsd_deviates("a write to a read-only export fails with EINVAL, not EPERM")
    def test_snapshot_read_only(self):
        img = self.image()
        src = img + "-s"
        self.ceph.import_data(src, b"\x11" * (2 * MiB), self.tmpdir)
        self.ceph.rbd("snap", "create", src + "@one")
        d, sock, q = self.serve(
            blockdev_rbd("live", self.ceph, src) +
            blockdev_rbd("snap", self.ceph, src, ",snapshot=one,read-only=on"),
            nbd_export("el", "live", name="live", writable=True) +
            nbd_export("es", "snap", name="snap"))
        live, snap = self.client(sock, "live"), self.client(sock, "snap")
        live.pwrite(b"\x22" * MiB, 0)
        live.flush()
        self.assertTrue(snap.is_read_only())
        self.assertEqual(snap.pread(MiB, 0), b"\x11" * MiB)
        # Past libnbd's own check, so that the server refuses the write.
        snap.set_strict_mode(0)
        with self.assertRaises(nbd.Error) as cm:
            snap.pwrite(b"x" * 512, 0)
        self.assertEqual(cm.exception.errno, "EPERM")
        self.assertEqual(self.ceph.export(src + "@one"), b"\x11" * (2 * MiB))
        # A snapshot without read-only=on is refused, as QEMU does.
        r = q.cmd("blockdev-add", driver="rbd", node_name="bad", pool="rbd", image=src,
                  snapshot="one", conf=self.ceph.conf)
        self.assertEqual(r["error"]["desc"], "rbd snapshots are read-only")

    def test_missing_image_and_pool(self):
        d, sock, q = self.serve([], [])
        r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image="no-such",
                  conf=self.ceph.conf)
        self.assertEqual(r["error"]["class"], "GenericError")
        self.assertIn("no-such", r["error"]["desc"])
        self.assertIn("No such file or directory", r["error"]["desc"])
        if not is_qsd():
            self.assertEqual(r["error"]["desc"], "error opening image 'no-such' in pool 'rbd': "
                             "No such file or directory")
        r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="nopool", image="x",
                  conf=self.ceph.conf)
        self.assertEqual(r["error"]["desc"], "error opening pool nopool: No such file or directory")
        self.assertEqual(q.cmd("query-named-block-nodes"), {"return": []})

    def test_bad_options(self):
        d, sock, q = self.serve([], [])
        r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image="x",
                  key_secret="nokey", conf=self.ceph.conf)
        self.assertEqual(r["error"]["desc"], "No secret with id 'nokey'")
        if not is_qsd():
            r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image="x",
                      conf=self.ceph.conf, encrypt={"format": "luks", "key-secret": "s"})
            self.assertIn("encrypt is not supported", r["error"]["desc"])
            r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image="x",
                      conf=self.ceph.conf, auth_client_required=["bogus"])
            self.assertEqual(r["error"]["desc"], "Parameter 'auth-client-required[0]' does not "
                             "accept value 'bogus'")
            r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image="x",
                      conf=self.ceph.conf, server=[{"host": "127.0.0.1"}])
            self.assertEqual(r["error"]["desc"], "Parameter 'server[0].port' is missing")
        img = self.image()
        r = q.cmd("blockdev-add", driver="rbd", node_name="n", pool="rbd", image=img,
                  conf=self.ceph.conf, auth_client_required=["none"])
        self.assertEqual(r, {"return": {}})


class RbdCephxTest(RbdClusterTestCase):
    """A cluster with cephx: the key of a user of its own (client.berth, rbd
    profile on the pool) given as a secret object, as libvirt does."""
    AUTH = "cephx"

    def key(self):
        with open(os.path.join(self.ceph.dir, "client.berth.key")) as f:
            return f.read().strip()

    def add(self, q, node, img, **kw):
        return q.cmd("blockdev-add", driver="rbd", node_name=node, pool="rbd", image=img,
                     conf=self.ceph.conf, **kw)

    def test_key_secret(self):
        img = self.image()
        blockdev = blockdev_rbd("n", self.ceph, img, ",user=berth,key-secret=k")
        d, sock, q = self.serve(["--object", "secret,id=k,format=base64,data=" + self.key()]
                                + blockdev, nbd_export("e", "n", name=img, writable=True))
        h = self.client(sock, img)
        h.pwrite(b"\x3c" * 65536, MiB)
        h.flush()
        h.shutdown()
        self.assertEqual(self.ceph.export(img)[MiB:MiB + 65536], b"\x3c" * 65536)
        # The same key from a file (QEMU's file= form); without format=base64
        # the text itself would be the secret, and Ceph refuses it.
        path = self.path("key.txt")
        with open(path, "w") as f:
            f.write(self.key())
        self.assertEqual(q.cmd("object-add", qom_type="secret", id="k2", file=path,
                               format="base64"), {"return": {}})
        self.assertEqual(self.add(q, "n2", img, user="berth", key_secret="k2",
                                  read_only=True), {"return": {}})
        self.assertEqual(q.cmd("object-add", qom_type="secret", id="k3", file=path),
                         {"return": {}})
        r = self.add(q, "n3", img, user="berth", key_secret="k3", read_only=True)
        self.assertIn("Invalid argument", r["error"]["desc"])

    def test_wrong_or_missing_key_refused(self):
        img = self.image()
        d, sock, q = self.serve([], [])
        bad = "AQCXchFrEI3CIxAAOM+Vc8bDwDhFloZFOYDK0X=="
        self.assertEqual(q.cmd("object-add", qom_type="secret", id="bad", format="base64",
                               data=bad), {"return": {}})
        for kw in ({"user": "berth", "key_secret": "bad"},
                   {"auth_client_required": ["none"]}):
            r = self.add(q, "n", img, **kw)
            self.assertEqual(r["error"]["class"], "GenericError", kw)
            self.assertIn("Permission denied" if "key_secret" in kw else "error connecting",
                          r["error"]["desc"], kw)
        self.assertEqual(q.cmd("query-named-block-nodes"), {"return": []})


class RbdClusterLossTest(RbdClusterTestCase):
    """Its own cluster, which the test stops."""

    @qsd_deviates("a timed-out request fails with EINVAL, not EIO; and qemu-storage-daemon "
                  "does not exit on SIGTERM once the cluster is gone (it is killed here)")
    def test_cluster_stopped_under_load(self):
        img = self.image()
        d, sock, q = self.serve(blockdev_rbd("n", self.ceph, img, ",cache.direct=on"),
                                nbd_export("e", "n", name=img, writable=True),
                                stop_check=not is_qsd())
        h = self.client(sock, img)
        h.pwrite(b"\x01" * MiB, 0)
        errors, stop = [], threading.Event()

        def load():
            buf = b"\x02" * 65536
            while not stop.is_set():
                try:
                    h.pwrite(buf, random.randrange(0, IMAGE_SIZE // 65536) * 65536)
                except nbd.Error as e:
                    errors.append(e.errno)
                    return

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(0.5)
        self.assertFalse(errors)
        t0 = time.monotonic()
        self.ceph.stop()
        t.join(CLIENT_TIMEOUT * 4 + 10)
        stop.set()
        took = time.monotonic() - t0
        self.assertFalse(t.is_alive(), "no error within %.0f s" % took)
        self.assertEqual(errors, ["EIO"])
        sys.stderr.write("(EIO %.1f s after the cluster stopped) " % took)
        self.assertTrue(d.alive())
        # The monitor answers at once, and the node can go.
        t1 = time.monotonic()
        self.assertIn("return", q.cmd("query-block-exports"))
        self.assertLess(time.monotonic() - t1, 2)
        self.close_client(h)
        self.assertEqual(q.cmd("block-export-del", id="e"), {"return": {}})
        deadline = time.monotonic() + CLIENT_TIMEOUT * 2 + 5
        while True:
            r = q.cmd("blockdev-del", node_name="n")
            if r == {"return": {}} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r, {"return": {}})
        self.assertIn("return", q.cmd("query-named-block-nodes"))
        if not is_qsd():
            # SIGTERM: berthd waits for the image's close (which writes the
            # cache back and gives the lock up), at most 20 s; on a dead
            # cluster that takes a few op timeouts.
            t2 = time.monotonic()
            self.assertEqual(d.stop(timeout=40), 0)
            sys.stderr.write("(exit %.1f s after SIGTERM) " % (time.monotonic() - t2))


if __name__ == "__main__":
    main()
