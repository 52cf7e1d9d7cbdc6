#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Persistent dirty bitmaps in qcow2 images, end to end.

A daemon serves a qcow2 image (a file node f, a qcow2 node q over it, an NBD
server on a unix socket); the scenarios check, with the expected values taken
from qemu-storage-daemon 7.2 (run this file with BERTHD=qemu-storage-daemon to
check them):

* block-dirty-bitmap-add persistent=true, writes over NBD, a clean stop:
  `qemu-img info --output=json` lists the bitmap, `qemu-img check` is clean,
  and after a restart ``nbdinfo --map=qemu:dirty-bitmap:b0`` shows exactly
  the written ranges rounded out to the granularity;
* bitmaps made by `qemu-img bitmap --add/--merge` (enabled and disabled)
  and written to by qemu-io are loaded with their bits;
* a daemon killed with SIGKILL leaves its bitmaps marked in-use, and the
  next open reports them inconsistent, refuses to export or merge them with
  QEMU's texts, and lets block-dirty-bitmap-remove delete them from the image;
* a node deleted with blockdev-del stores its bitmaps (default granularity:
  the cluster size);
* block-dirty-bitmap-remove of a persistent bitmap removes it from the image;
  the refusals (a raw node, a v2 image) have QEMU's texts.

Every scenario records what it saw; against berthd, when qemu-storage-daemon
is installed, the Compare tests run each scenario on both daemons with the
same images and writes and require equal records.
"""

import json
import os
import shutil
import signal
import sys
import time

sys.dont_write_bytecode = True     # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import berth_harness as bh  # noqa: E402

bh.require_tools("nbdinfo", "qemu-img", "qemu-io")
nbd = bh.import_nbd()

KiB, MiB = bh.KiB, bh.MiB
DISK = 8 * MiB
QSD = shutil.which("qemu-storage-daemon")

WRITES = [(0, 4096), (1 * MiB + 100, 200000), (5 * MiB, 64 * KiB), (DISK - 512, 512)]
MORE_WRITES = [(3 * MiB, 1), (6 * MiB + 70000, 140000)]


def dirty_rows(spans, granularity, size=DISK):
    """nbdinfo --map rows of a bitmap dirtied by byte spans."""
    bits = set()
    for off, length in spans:
        bits.update(range(off // granularity, (off + length - 1) // granularity + 1))
    rows, pos = [], 0
    while pos < size:
        dirty = (pos // granularity) in bits
        end = pos
        while end < size and ((end // granularity) in bits) == dirty:
            end = min(size, (end // granularity + 1) * granularity)
        rows.append((pos, end - pos, 1 if dirty else 0))
        pos = end
    return rows


def dirty_count(spans, granularity):
    return sum(r[1] for r in dirty_rows(spans, granularity) if r[2])


class Env:
    """One kind of daemon (exe None: the one under test) in its own folder,
    started and stopped on one image."""

    def __init__(self, tc, exe, tag):
        self.tc = tc
        self.exe = exe
        self.tag = tag
        self.folder = os.path.join(tc.tmpdir, tag)
        os.makedirs(self.folder)
        self.image = os.path.join(self.folder, "disk.qcow2")
        self.record = []
        self.daemon = None
        self.runs = 0

    def qemu_img(self, *args, check=True):
        return bh.run_tool(["qemu-img"] + list(args), check=check)

    def create(self, *opts):
        self.qemu_img("create", "-q", "-f", "qcow2", *opts, self.image, str(DISK))

    def qemu_io(self, *cmds):
        args = ["qemu-io", "-f", "qcow2"]
        for c in cmds:
            args += ["-c", c]
        bh.run_tool(args + [self.image])

    def start(self, read_only=False, image=None):
        self.runs += 1
        run = "%s-%d" % (self.tag, self.runs)
        self.sock = os.path.join(self.folder, run + ".sock")
        qmp = os.path.join(self.folder, run + ".qmp")
        args = bh.qmp_monitor(qmp)
        args += bh.blockdev_file("f", image or self.image, read_only=read_only)
        args += ["--blockdev", "driver=qcow2,node-name=q,file=f"
                 + (",read-only=on" if read_only else "")]
        args += bh.nbd_server_unix(self.sock)
        self.daemon = self.tc.start_daemon(args, wait_for=self.sock, exe=self.exe, name=run,
                                           workdir=self.folder, stop_check=False)
        self.qmp = self.tc.connect_qmp(qmp)

    def stop(self):
        self.qmp.close()
        self.daemon.stop()
        self.daemon = None

    def kill(self):
        self.qmp.close()
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait_exit()
        self.daemon = None

    def cmd(self, command, **kw):
        r = self.qmp.cmd(command, **kw)
        self.record.append((command, kw, r))
        return r

    def ok(self, command, **kw):
        self.tc.assertEqual(self.cmd(command, **kw), {"return": {}}, (command, kw))

    def err(self, command, desc, **kw):
        r = self.cmd(command, **kw)
        self.tc.assertEqual(r.get("error"), {"class": "GenericError", "desc": desc},
                            (command, kw, r))

    def bitmaps(self, node="q"):
        for n in self.qmp.cmd("query-named-block-nodes")["return"]:
            if n["node-name"] == node:
                got = sorted(n.get("dirty-bitmaps", []), key=lambda b: b["name"])
                self.record.append(("bitmaps", node, got))
                return got
        self.tc.fail("no node " + node)

    def image_bitmaps(self, node="q"):
        """query-named-block-nodes' format-specific bitmaps of node."""
        for n in self.qmp.cmd("query-named-block-nodes")["return"]:
            if n["node-name"] == node:
                got = n["image"]["format-specific"]["data"].get("bitmaps", [])
                self.record.append(("format-specific bitmaps", node, got))
                return got
        self.tc.fail("no node " + node)

    def bitmap(self, name):
        for b in self.bitmaps():
            if b["name"] == name:
                return b
        return None

    def export(self, bitmaps, writable=True):
        self.ok("block-export-add", type="nbd", id="e", name="e", **{"node-name": "q"},
                writable=writable, bitmaps=bitmaps)

    def unexport(self, exp_id):
        self.ok("block-export-del", id=exp_id)
        deadline = time.monotonic() + bh.REPLY_TIMEOUT
        while time.monotonic() < deadline:
            for e in self.qmp.events:
                if e["event"] == "BLOCK_EXPORT_DELETED" and e["data"]["id"] == exp_id:
                    self.qmp.events.remove(e)
                    return
            self.qmp.poll_events(0.05)
        self.tc.fail("no BLOCK_EXPORT_DELETED for " + exp_id)

    def write(self, spans, byte=0x5a):
        with bh.nbd_handle(nbd, self.sock, "e") as h:
            for off, length in spans:
                h.pwrite(bytes([byte]) * length, off)
            h.flush()

    def map(self, bitmap):
        rc, out, err = bh.run_tool(["nbdinfo", "--map=qemu:dirty-bitmap:" + bitmap,
                                    bh.nbd_uri(self.sock, "e")])
        rows = [tuple(int(x) for x in line.split()[:3]) for line in out.splitlines()]
        self.record.append(("map", bitmap, rows))
        return rows

    def info(self, live=False):
        """qemu-img info's format-specific bitmaps ([] if none); live: while
        a daemon has the image open."""
        _, out, _ = self.qemu_img("info", *(["-U"] if live else []), "--output=json",
                                  self.image)
        got = json.loads(out)["format-specific"]["data"].get("bitmaps", [])
        self.record.append(("qemu-img info", got))
        return got

    def check(self, leaks_ok=False):
        rc, out, err = self.qemu_img("check", self.image, check=False)
        self.tc.assertNotIn("ERROR", out + err)
        self.tc.assertIn(rc, (0, 3) if leaks_ok else (0,), out + err)
        self.record.append(("check", "clean" if rc == 0 else "leaks"))


def expect_bitmap(name, granularity=65536, recording=True, count=0, busy=False,
                  inconsistent=False):
    b = {"name": name, "recording": recording, "persistent": True, "busy": busy,
         "granularity": granularity, "count": count}
    if inconsistent:
        b["inconsistent"] = True
    return b


def scenario_add_store_reload(tc, env):
    env.create()
    env.start()
    env.ok("block-dirty-bitmap-add", node="q", name="b0", persistent=True)
    env.ok("block-dirty-bitmap-add", node="q", name="b1", persistent=True,
           granularity=128 * KiB, disabled=True)
    env.ok("block-dirty-bitmap-add", node="q", name="t0")          # not persistent
    env.export(["b0"])
    env.write(WRITES)
    # Marked in use only from the next open: bitmaps added now are not in
    # the image until it closes.
    env.stop()
    # New bitmaps join the directory newest first, as QEMU writes them.
    tc.assertEqual(env.info(), [
        {"flags": [], "name": "b1", "granularity": 131072},
        {"flags": ["auto"], "name": "b0", "granularity": 65536}])
    env.check()

    env.start()
    tc.assertEqual(env.bitmaps(), [
        expect_bitmap("b0", count=dirty_count(WRITES, 65536)),
        expect_bitmap("b1", granularity=131072, recording=False)])
    rc, out, _ = env.qemu_img("info", "-U", "--output=json", env.image)
    live = json.loads(out)["format-specific"]["data"]["bitmaps"]
    tc.assertEqual([b["flags"] for b in live], [["in-use"], ["in-use", "auto"]])
    env.export(["b0"])
    tc.assertEqual(env.map("b0"), dirty_rows(WRITES, 65536))
    env.write(MORE_WRITES)
    tc.assertEqual(env.map("b0"), dirty_rows(WRITES + MORE_WRITES, 65536))
    env.unexport("e")
    env.stop()
    env.check()

    env.start(read_only=True)
    tc.assertEqual(env.bitmaps(), [
        expect_bitmap("b0", count=dirty_count(WRITES + MORE_WRITES, 65536)),
        expect_bitmap("b1", granularity=131072, recording=False)])
    env.err("block-dirty-bitmap-remove", "Bitmap 'b0' is readonly and cannot be modified",
            node="q", name="b0")
    env.err("block-dirty-bitmap-clear", "Bitmap 'b0' is readonly and cannot be modified",
            node="q", name="b0")
    env.export(["b0"], writable=False)
    tc.assertEqual(env.map("b0"), dirty_rows(WRITES + MORE_WRITES, 65536))
    env.stop()
    tc.assertEqual([b["flags"] for b in env.info()], [[], ["auto"]])
    env.check()


def scenario_qemu_img_bitmaps(tc, env):
    env.create()
    env.qemu_img("bitmap", "--add", env.image, "a0")
    env.qemu_img("bitmap", "--add", "-g", "256k", env.image, "a1")
    env.qemu_io(*["write -P 0x33 %d %d" % span for span in WRITES])
    env.qemu_img("bitmap", "--add", "--disable", env.image, "a2")
    env.qemu_img("bitmap", "--merge", "a1", env.image, "a2")
    env.qemu_io(*["write -P 0x44 %d %d" % span for span in MORE_WRITES])
    env.check()
    all_spans = WRITES + MORE_WRITES

    env.start()
    tc.assertEqual(env.bitmaps(), [
        expect_bitmap("a0", count=dirty_count(all_spans, 65536)),
        expect_bitmap("a1", granularity=256 * KiB, count=dirty_count(all_spans, 256 * KiB)),
        expect_bitmap("a2", granularity=65536, recording=False,
                      count=dirty_count(WRITES, 256 * KiB))])
    tc.assertEqual(env.image_bitmaps(), [
        {"flags": ["in-use", "auto"], "name": "a0", "granularity": 65536},
        {"flags": ["in-use", "auto"], "name": "a1", "granularity": 256 * KiB},
        {"flags": ["in-use"], "name": "a2", "granularity": 65536}])
    env.export(["a0", "a1", "a2"])
    tc.assertEqual(env.map("a0"), dirty_rows(all_spans, 65536))
    tc.assertEqual(env.map("a1"), dirty_rows(all_spans, 256 * KiB))
    tc.assertEqual(env.map("a2"), dirty_rows(WRITES, 256 * KiB))
    env.unexport("e")
    # A bitmap of the image removed through QMP is gone from the image.
    env.ok("block-dirty-bitmap-remove", node="q", name="a1")
    env.stop()
    tc.assertEqual(env.info(), [
        {"flags": ["auto"], "name": "a0", "granularity": 65536},
        {"flags": [], "name": "a2", "granularity": 65536}])
    env.check()
    # qemu-img reads what the daemon stored.
    env.qemu_img("bitmap", "--remove", env.image, "a0")
    env.qemu_img("bitmap", "--remove", env.image, "a2")
    tc.assertEqual(env.info(), [])
    env.check()


def scenario_sigkill(tc, env):
    env.create()
    env.start()
    env.ok("block-dirty-bitmap-add", node="q", name="b0", persistent=True)
    env.export(["b0"])
    env.write(WRITES)
    env.stop()

    env.start()
    env.export(["b0"])
    env.write(MORE_WRITES)
    env.kill()
    tc.assertEqual(env.info(), [{"flags": ["in-use", "auto"], "name": "b0",
                                 "granularity": 65536}])
    env.check(leaks_ok=True)

    env.start()
    tc.assertEqual(env.bitmaps(), [expect_bitmap("b0", recording=False, inconsistent=True)])
    bad = "Bitmap 'b0' is inconsistent and cannot be used"
    env.err("block-export-add", bad, type="nbd", id="e", **{"node-name": "q"}, bitmaps=["b0"])
    env.ok("block-dirty-bitmap-add", node="q", name="t")
    env.err("block-dirty-bitmap-merge", bad, node="q", target="t", bitmaps=["b0"])
    env.err("block-dirty-bitmap-merge", bad, node="q", target="b0", bitmaps=["t"])
    env.err("block-dirty-bitmap-enable", bad, node="q", name="b0")
    env.err("block-dirty-bitmap-clear", bad, node="q", name="b0")
    env.stop()
    # Stored as it was: still in use.
    tc.assertEqual(env.info(), [{"flags": ["in-use", "auto"], "name": "b0",
                                 "granularity": 65536}])
    env.start()
    env.ok("block-dirty-bitmap-remove", node="q", name="b0")
    env.stop()
    tc.assertEqual(env.info(), [])
    env.check(leaks_ok=True)


def scenario_refusals(tc, env):
    env.create("-o", "compat=0.10")
    raw = os.path.join(env.folder, "raw.img")
    with open(raw, "wb") as f:
        f.truncate(DISK)
    env.start()
    env.err("block-dirty-bitmap-add", "Can't make bitmap 'b0' persistent in 'q': Cannot "
            "store dirty bitmaps in qcow2 v2 files", node="q", name="b0", persistent=True)
    env.err("block-dirty-bitmap-add", "Can't store persistent bitmaps to f: Operation "
            "not supported", node="f", name="b0", persistent=True)
    env.stop()
    env.create()
    env.start()
    env.ok("block-dirty-bitmap-add", node="q", name="b0", persistent=True)
    env.err("block-dirty-bitmap-add", "Bitmap already exists: b0",
            node="q", name="b0", persistent=True)
    env.err("block-dirty-bitmap-add", "Can't make bitmap '%s' persistent in 'q': Name "
            "length exceeds maximum (1023 characters)" % ("n" * 1024),
            node="q", name="n" * 1024, persistent=True)
    # In a transaction that fails, an added persistent bitmap is not stored.
    r = env.cmd("transaction", actions=[
        {"type": "block-dirty-bitmap-add",
         "data": {"node": "q", "name": "b1", "persistent": True}},
        {"type": "abort", "data": {}}])
    tc.assertIn("error", r)
    env.stop()
    tc.assertEqual(env.info(), [{"flags": ["auto"], "name": "b0", "granularity": 65536}])
    env.check()
    # A remove in a failed transaction: gone from the image at once, but the
    # bitmap stays and is stored again at close.
    env.start()
    r = env.cmd("transaction", actions=[
        {"type": "block-dirty-bitmap-remove", "data": {"node": "q", "name": "b0"}},
        {"type": "abort", "data": {}}])
    tc.assertIn("error", r)
    tc.assertEqual(env.info(live=True), [])
    tc.assertEqual(env.bitmaps(), [expect_bitmap("b0")])
    env.stop()
    tc.assertEqual(env.info(), [{"flags": ["auto"], "name": "b0", "granularity": 65536}])
    env.check()


def scenario_blockdev_del(tc, env):
    # A node added and deleted at run time stores its bitmaps at blockdev-del;
    # the default granularity is the cluster size (16 KiB here), as in QEMU.
    env.create()
    other = os.path.join(env.folder, "other.qcow2")
    env.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", other, str(DISK))
    env.start()
    env.ok("blockdev-add", driver="qcow2", **{"node-name": "q2"},
           file={"driver": "file", "filename": "other.qcow2"})
    env.ok("block-dirty-bitmap-add", node="q2", name="c0", persistent=True)
    env.ok("block-export-add", type="nbd", id="e", name="e", **{"node-name": "q2"},
           writable=True)
    env.write(WRITES)
    env.unexport("e")
    env.ok("blockdev-del", **{"node-name": "q2"})
    saved, env.image = env.image, other
    tc.assertEqual(env.info(), [{"flags": ["auto"], "name": "c0", "granularity": 16384}])
    env.check()
    env.ok("blockdev-add", driver="qcow2", **{"node-name": "q2"},
           file={"driver": "file", "filename": "other.qcow2"})
    tc.assertEqual(env.bitmaps("q2"), [expect_bitmap("c0", granularity=16384,
                                                     count=dirty_count(WRITES, 16384))])
    env.ok("block-export-add", type="nbd", id="e", name="e", **{"node-name": "q2"},
           bitmaps=["c0"], writable=True)
    tc.assertEqual(env.map("c0"), dirty_rows(WRITES, 16384))
    env.unexport("e")
    env.ok("block-dirty-bitmap-remove", node="q2", name="c0")
    env.ok("blockdev-del", **{"node-name": "q2"})
    tc.assertEqual(env.info(), [])
    env.check()
    env.image = saved
    env.stop()


SCENARIOS = [scenario_add_store_reload, scenario_blockdev_del, scenario_qemu_img_bitmaps, scenario_sigkill,
             scenario_refusals]


class PersistentBitmaps(bh.DaemonTestCase):
    """Each scenario on the daemon under test."""

    @bh.qsd_deviates("accepts persistent=true on a read-only node and loses the bitmap "
                     "at exit ('Lost persistent bitmaps during inactivation')")
    def test_read_only_node_refuses(self):
        env = Env(self, None, "ro")
        env.create()
        env.start(read_only=True)
        env.err("block-dirty-bitmap-add", "Can't make bitmap 'b0' persistent in 'q': "
                "No write access", node="q", name="b0", persistent=True)
        env.ok("block-dirty-bitmap-add", node="q", name="b0")
        env.stop()


def _scenario_test(fn):
    def test(self):
        fn(self, Env(self, None, "daemon"))
    return test


class Compare(bh.DaemonTestCase):
    """Each scenario on berthd and on qemu-storage-daemon: same records."""


for _fn in SCENARIOS:
    _name = "test_" + _fn.__name__[len("scenario_"):]
    setattr(PersistentBitmaps, _name, _scenario_test(_fn))
    if QSD and not bh.is_qsd():
        setattr(Compare, _name, bh.record_compare_test(Env, _fn, QSD))


if __name__ == "__main__":
    bh.main()
