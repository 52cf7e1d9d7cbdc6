#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Fleecing: a point-in-time export of a disk the guest keeps writing.

The flow of libvirt's pull backup on qemu-storage-daemon 7.2, end to end:
a scratch qcow2 node, a copy-before-write filter over the disk with the
scratch as target, a snapshot-access node over the filter exported
read-only, while the "guest" writes through a writable export of the
filter from several clients at once (overlapping writes, zeroes, discards)
and nbdcopy copies the snapshot export. Checked:

* the copy equals the disk as it was before the writes (a saved copy);
* the live disk has every new write;
* the scratch holds exactly the clusters that were overwritten (qemu-img
  map of the scratch image);
* the incremental flow: a bitmap frozen in a transaction, the filter
  copying only what it marks, qemu:dirty-bitmap read from the snapshot
  export and only the dirty extents copied; the rest of the snapshot is not
  readable; the full backup with the increment applied compares equal
  (qemu-img compare) to the disk as it was when the backup began;
* QEMU's refusals: blockdev-del of nodes in use, writes to the snapshot,
  a bitmap that does not exist.

Each scenario also returns what it saw; against berthd, when
qemu-storage-daemon is installed, the Compare test runs each scenario on
both daemons and requires the records to be equal.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import berth_harness as bh  # noqa: E402

bh.require_tools("nbdinfo", "nbdcopy", "qemu-img")
nbd = bh.import_nbd()

KiB, MiB = bh.KiB, bh.MiB
DISK = 8 * MiB
CLUSTER = 64 * KiB
HOLE = (6 * MiB, 7 * MiB)       # left unwritten in the base image
QSD = shutil.which("qemu-storage-daemon")

# qemu-storage-daemon 7.2 (Debian 1:7.2+dfsg-7+deb12u18) serves a wrong
# snapshot in two ways, checked by hand: (1) a read that starts in a cluster
# already copied to the scratch and goes on into one that is not returns
# zeroes (or the new data) for the copied part; (2) base:allocation of the
# snapshot export calls such copied clusters "hole,zero". nbdcopy's default
# copy (extents, 256 KiB requests) of its snapshot is therefore not the
# point-in-time image. The scenarios compared with it read one cluster per
# request and every byte; berth's snapshot is also checked the default way.


def base_image(path):
    """Pseudo-random data everywhere but HOLE."""
    import random
    rng = random.Random(17)
    with open(path, "wb") as f:
        f.truncate(DISK)
        f.write(rng.randbytes(HOLE[0]))
        f.seek(HOLE[1])
        f.write(rng.randbytes(DISK - HOLE[1]))


def new_data():
    """What writes put at each byte: overlapping writes agree."""
    import random
    return random.Random(23).randbytes(DISK)


NEW = new_data()

# Three clients of the guest, each a list run three times over. Writes
# overlap writes (same clusters, same bytes); zeroes and discards overlap
# each other; the hole of the base image is written into too.
CLIENT_OPS = [
    [("write", 0, 4096), ("write", 100000, 70000), ("write", 2 * MiB + 512, 300000),
     ("zero", 4 * MiB, 128 * KiB)],
    [("write", 60000, 20000), ("write", 2 * MiB, 200000), ("trim", 5 * MiB, 192 * KiB),
     ("write", HOLE[0] + 4096, 8192)],
    [("write", 150000, 10000), ("zero", 4 * MiB + 64 * KiB, 128 * KiB),
     ("write", DISK - 4096, 4096), ("trim", 5 * MiB + 64 * KiB, 64 * KiB),
     ("write", HOLE[1] - 100, 200)],
]


def touched_clusters(ops):
    out = set()
    for _, off, length in ops:
        out.update(range(off // CLUSTER, (off + length - 1) // CLUSTER + 1))
    return out


def apply_ops(data, ops):
    data = bytearray(data)
    for kind, off, length in ops:
        if kind == "write":
            data[off:off + length] = NEW[off:off + length]
        else:
            data[off:off + length] = bytes(length)
    return bytes(data)


def differing_clusters(a, b):
    return [c for c in range(DISK // CLUSTER)
            if a[c * CLUSTER:(c + 1) * CLUSTER] != b[c * CLUSTER:(c + 1) * CLUSTER]]


def run_client(sock, name, ops, repeat, errors):
    try:
        with bh.nbd_handle(nbd, sock, name) as h:
            for _ in range(repeat):
                for kind, off, length in ops:
                    if kind == "write":
                        h.pwrite(NEW[off:off + length], off)
                    elif kind == "zero":
                        h.zero(length, off)
                    else:
                        h.trim(length, off)
            h.flush()
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


class Env:
    """One daemon (berthd or qemu-storage-daemon) serving disk.img as f0
    (discard=unmap), with an empty scratch.qcow2 beside it."""

    def __init__(self, tc, exe, tag):
        self.tc = tc
        self.qsd = bh.is_qsd() if exe is None else "qemu-storage-daemon" in exe
        folder = os.path.join(tc.tmpdir, tag)
        os.makedirs(folder)
        self.folder = folder
        self.sock = os.path.join(folder, "nbd.sock")
        qmp = os.path.join(folder, "qmp.sock")
        self.image = os.path.join(folder, "disk.img")
        self.scratch = os.path.join(folder, "scratch.qcow2")
        base_image(self.image)
        with open(self.image, "rb") as f:
            self.base = f.read()
        bh.run_tool(["qemu-img", "create", "-q", "-f", "qcow2", self.scratch, str(DISK)])
        args = (bh.blockdev_file("f0", self.image, discard="unmap")
                + bh.qmp_monitor(qmp) + bh.nbd_server_unix(self.sock))
        tc.start_daemon(args, wait_for=self.sock, exe=exe, name=tag, workdir=folder)
        self.qmp = tc.connect_qmp(qmp)
        self.record = []

    def cmd(self, command, args=None):
        r = self.qmp.cmd(command, args or {})
        # The record does not depend on where the daemon's folder is.
        self.record.append(json.loads(json.dumps((command, args, r)).replace(self.folder, "DIR")))
        return r

    def ok(self, command, args=None):
        r = self.cmd(command, args)
        self.tc.assertEqual(r, {"return": {}}, (command, args))

    def err(self, command, args, desc):
        r = self.cmd(command, args)
        self.tc.assertEqual(r.get("error"), {"class": "GenericError", "desc": desc},
                            (command, args, r))

    def export(self, exp_id, node, writable=False, **extra):
        args = {"type": "nbd", "id": exp_id, "node-name": node, "name": exp_id,
                "writable": writable}
        args.update(extra)
        self.ok("block-export-add", args)

    def unexport(self, exp_id):
        self.ok("block-export-del", {"id": exp_id})
        deadline = time.monotonic() + bh.REPLY_TIMEOUT
        while time.monotonic() < deadline:
            for e in self.qmp.events:
                if e["event"] == "BLOCK_EXPORT_DELETED" and e["data"]["id"] == exp_id:
                    self.qmp.events.remove(e)
                    return
            self.qmp.poll_events(0.05)
        self.tc.fail("no BLOCK_EXPORT_DELETED for " + exp_id)

    def insert_filter(self, bitmap=None):
        """The scratch node, the filter and the snapshot, as libvirt adds them."""
        self.ok("blockdev-add", {"driver": "qcow2", "node-name": "scratch",
                                 "file": {"driver": "file", "filename": self.scratch}})
        cbw = {"driver": "copy-before-write", "node-name": "cbw", "file": "f0",
               "target": "scratch", "discard": "unmap"}
        if bitmap:
            cbw["bitmap"] = {"node": "f0", "name": bitmap}
        self.ok("blockdev-add", cbw)
        self.ok("blockdev-add", {"driver": "snapshot-access", "node-name": "snap",
                                 "file": "cbw"})

    def remove_filter(self):
        """Teardown in libvirt's order; nodes in use refuse first."""
        self.err("blockdev-del", {"node-name": "cbw"}, "Node cbw is in use")
        self.err("blockdev-del", {"node-name": "scratch"}, "Block device scratch is in use")
        self.unexport("snap")
        self.err("blockdev-del", {"node-name": "cbw"}, "Node cbw is in use")
        self.ok("blockdev-del", {"node-name": "snap"})
        self.unexport("live")
        self.ok("blockdev-del", {"node-name": "cbw"})
        self.ok("blockdev-del", {"node-name": "scratch"})

    def nodes(self):
        """What query-named-block-nodes says of the two new nodes: a summary
        to check, and in the record all of it but the dirty bitmaps (QEMU
        lists its internal, unnamed ones there)."""
        out, full = {}, {}
        for n in self.qmp.cmd("query-named-block-nodes")["return"]:
            if n["node-name"] in ("cbw", "snap"):
                n.pop("dirty-bitmaps", None)
                full[n["node-name"]] = json.loads(json.dumps(n).replace(self.folder, "DIR"))
                img = n["image"]
                out[n["node-name"]] = {
                    "drv": n["drv"], "ro": n["ro"], "file": os.path.basename(n["file"]),
                    "format": img["format"], "virtual-size": img["virtual-size"],
                    "filename": os.path.basename(img["filename"]),
                    "backing_file_depth": n["backing_file_depth"],
                    "backing-image": "backing-image" in img,
                }
        self.record.append(("nodes", full))
        return out

    def nbdcopy(self, name, dest, cluster_reads=True):
        """Copy an export to a file. By default every byte is read, one
        cluster per request: what a backup of qemu-storage-daemon 7.2's
        snapshot must do (QSD_SNAPSHOT_BUGS); berth's serves either way."""
        opts = ["--no-extents", "--request-size=%d" % CLUSTER] if cluster_reads else []
        bh.run_tool(["nbdcopy"] + opts + [bh.nbd_uri(self.sock, name), dest])
        with open(dest, "rb") as f:
            return f.read()

    def map(self, name, context="base:allocation", record=True):
        rc, out, _ = bh.run_tool(["nbdinfo", "--map=" + context, bh.nbd_uri(self.sock, name)],
                                 check=False)
        rows = None
        if rc == 0:
            rows = [tuple(int(x) for x in line.split()[:3]) for line in out.splitlines()]
        if record:
            self.record.append(("map", name, context, rows))
        return rows

    def scratch_clusters(self):
        """(clusters the scratch image has anything for, clusters it holds
        data for). A copied cluster that read as zeroes may be a zero
        cluster (qemu-storage-daemon) or nothing at all (berth's qcow2
        leaves an unallocated cluster that reads as zeroes as it is): only
        the data clusters go into the record."""
        _, out, _ = bh.run_tool(["qemu-img", "map", "-U", "--output=json", self.scratch])
        present, data = set(), set()
        for r in json.loads(out):
            span = range(r["start"] // CLUSTER, (r["start"] + r["length"]) // CLUSTER)
            if r["present"]:
                present.update(span)
            if r["data"]:
                data.update(span)
        self.record.append(("scratch-data-clusters", sorted(data)))
        return present, data

    def check_scratch(self, expected, frozen):
        """The scratch holds exactly the `expected` clusters: data where the
        snapshot had data, at most a zero cluster where it read zeroes."""
        present, data = self.scratch_clusters()
        zero = {c for c in expected
                if frozen[c * CLUSTER:(c + 1) * CLUSTER] == bytes(CLUSTER)}
        self.tc.assertEqual(data, expected - zero)
        self.tc.assertTrue(present <= expected, sorted(present - expected))

    def read_fails(self, name, offset, length):
        with bh.nbd_handle(nbd, self.sock, name) as h:
            try:
                h.pread(length, offset)
            except nbd.Error:
                self.record.append(("read-fails", name, offset, length, True))
                return True
        self.record.append(("read-fails", name, offset, length, False))
        return False

    def guest_writes(self, name, clients, repeat, during=None):
        """Run the clients at once; `during` (a callable) meanwhile."""
        errors = []
        threads = [threading.Thread(target=run_client, args=(self.sock, name, ops, repeat, errors))
                   for ops in clients]
        for t in threads:
            t.start()
        result = during() if during else None
        for t in threads:
            t.join(bh.TOOL_TIMEOUT)
            self.tc.assertFalse(t.is_alive(), "a client hung")
        self.tc.assertEqual(errors, [])
        return result


def scenario_full(tc, env):
    """A full backup: snapshot copied while three clients write."""
    env.insert_filter()
    env.export("live", "cbw", writable=True)
    env.export("snap", "snap")
    tc.assertEqual(env.nodes(), {
        "cbw": {"drv": "copy-before-write", "ro": False, "file": "disk.img",
                "format": "copy-before-write", "virtual-size": DISK, "filename": "disk.img",
                "backing_file_depth": 1, "backing-image": True},
        "snap": {"drv": "snapshot-access", "ro": False, "file": "disk.img",
                 "format": "snapshot-access", "virtual-size": DISK, "filename": "disk.img",
                 "backing_file_depth": 0, "backing-image": False},
    })
    before = env.map("snap")
    tc.assertEqual(before, [(0, HOLE[0], 0), (HOLE[0], HOLE[1] - HOLE[0], 3),
                            (HOLE[1], DISK - HOLE[1], 0)])

    during = os.path.join(env.folder, "during.img")
    copied = env.guest_writes("live", CLIENT_OPS, 3, lambda: env.nbdcopy("snap", during))
    tc.assertTrue(copied == env.base, "snapshot copied during the writes differs at "
                  + str(differing_clusters(copied, env.base)))
    after = env.nbdcopy("snap", os.path.join(env.folder, "after.img"))
    tc.assertTrue(after == env.base, "snapshot copied after the writes differs")
    env.record.append(("snapshot-is-base", copied == env.base, after == env.base))

    all_ops = [op for ops in CLIENT_OPS for op in ops]
    live = env.nbdcopy("live", os.path.join(env.folder, "live.img"))
    tc.assertTrue(live == apply_ops(env.base, all_ops), "live disk lacks writes")
    env.record.append(("live-has-writes", live == apply_ops(env.base, all_ops)))
    # The snapshot's block status does not change with the copies (data
    # stays data), and a copy by extents with large requests is right too.
    # Not so on qemu-storage-daemon 7.2 (QSD_SNAPSHOT_BUGS).
    if not env.qsd:
        tc.assertEqual(env.map("snap", record=False), before)
        with_extents = env.nbdcopy("snap", os.path.join(env.folder, "extents.img"), False)
        tc.assertTrue(with_extents == env.base, "a copy by extents and large requests differs "
                      "at " + str(differing_clusters(with_extents, env.base)))

    # The snapshot is read-only in substance whatever the export says.
    env.ok("block-export-add", {"type": "nbd", "id": "snapw", "node-name": "snap",
                                "name": "snapw", "writable": True})
    with bh.nbd_handle(nbd, env.sock, "snapw") as h:
        for what, fn in (("write", lambda: h.pwrite(b"x" * 512, 0)),
                         ("zero", lambda: h.zero(4096, 0))):
            try:
                fn()
                env.record.append(("snapshot", what, "accepted"))
            except nbd.Error:
                env.record.append(("snapshot", what, "refused"))
    tc.assertEqual([r[2] for r in env.record if r[0] == "snapshot"], ["refused", "refused"])
    env.unexport("snapw")
    env.remove_filter()
    # Closed, the scratch image has its tables on disk.
    env.check_scratch(touched_clusters(all_ops), env.base)

    # Once the filter is gone, the disk is the live one and scratch is free.
    env.export("after", "f0")
    tc.assertTrue(env.nbdcopy("after", os.path.join(env.folder, "f0.img")) == live)


# Day 1 is what the bitmap b0 records; day 2 happens during the backup.
DAY1 = [("write", 0, 4096), ("write", 1 * MiB + 1000, 70000), ("zero", 3 * MiB, 256 * KiB),
        ("write", HOLE[0], 64 * KiB)]
DAY2 = [[("write", 0, 8192), ("write", 1 * MiB, 8192), ("write", 5 * MiB, 4096)],
        [("write", 1 * MiB + 64 * KiB, 4096), ("zero", 3 * MiB, 64 * KiB),
         ("write", HOLE[0] + 1000, 100)]]


def dirty_extents(rows):
    return [(off, length) for off, length, value in rows if value]


def scenario_incremental(tc, env):
    """An incremental backup: only what bitmap b0 marks is copied and
    readable; b1 records the writes made during the backup."""
    env.ok("block-dirty-bitmap-add", {"node": "f0", "name": "b0"})
    env.export("day1", "f0", writable=True)
    env.guest_writes("day1", [DAY1], 1)
    env.unexport("day1")
    with open(env.image, "rb") as f:
        frozen = f.read()

    env.ok("transaction", {"actions": [
        {"type": "block-dirty-bitmap-add", "data": {"node": "f0", "name": "b1"}},
        {"type": "block-dirty-bitmap-disable", "data": {"node": "f0", "name": "b0"}}]})
    env.err("blockdev-add", {"driver": "copy-before-write", "node-name": "cbw", "file": "f0",
                             "target": "f0", "bitmap": {"node": "f0", "name": "nope"}},
            "Dirty bitmap 'nope' not found")
    env.insert_filter(bitmap="b0")
    env.export("live", "cbw", writable=True)
    env.export("snap", "snap", bitmaps=[{"node": "f0", "name": "b0"}])

    rows = env.map("snap", "qemu:dirty-bitmap:b0")
    b0_clusters = touched_clusters([("w", o, n) for o, n in dirty_extents(rows)])
    tc.assertEqual(b0_clusters, touched_clusters(DAY1))

    def copy_dirty():
        """The dirty extents, one cluster per read (QSD_SNAPSHOT_BUGS)."""
        got = {}
        with bh.nbd_handle(nbd, env.sock, "snap") as h:
            for off, length in dirty_extents(rows):
                got[off] = b"".join(bytes(h.pread(min(CLUSTER, off + length - o), o))
                                    for o in range(off, off + length, CLUSTER))
        return got

    got = env.guest_writes("live", DAY2, 2, copy_dirty)
    for off, data in got.items():
        tc.assertTrue(data == frozen[off:off + len(data)], "dirty extent at %d differs" % off)
    env.record.append(("dirty-extents-match", sorted(
        (off, data == frozen[off:off + len(data)]) for off, data in got.items())))
    if not env.qsd:
        with bh.nbd_handle(nbd, env.sock, "snap") as h:
            for off, length in dirty_extents(rows):
                tc.assertTrue(bytes(h.pread(length, off)) == frozen[off:off + length])
    tc.assertTrue(env.read_fails("snap", 2 * MiB, 4096))
    tc.assertFalse(env.read_fails("snap", 0, 4096))

    # Restore: the full backup (the disk when b0 began: base) with the
    # increment applied is the disk as it was when the backup began.
    restored = bytearray(env.base)
    for off, data in got.items():
        restored[off:off + len(data)] = data
    paths = [os.path.join(env.folder, n) for n in ("restored.img", "frozen.img")]
    for path, data in zip(paths, (restored, frozen)):
        with open(path, "wb") as f:
            f.write(data)
    rc, _, _ = bh.run_tool(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw"] + paths,
                           check=False)
    env.record.append(("restored-equals-frozen", rc))
    tc.assertEqual(rc, 0)

    day2 = [op for ops in DAY2 for op in ops]
    live = env.nbdcopy("live", os.path.join(env.folder, "live.img"))
    tc.assertTrue(live == apply_ops(frozen, day2), "live disk lacks the writes of day 2")
    for n in env.qmp.cmd("query-named-block-nodes")["return"]:
        if n["node-name"] == "f0":
            counts = {b["name"]: b["count"] for b in n["dirty-bitmaps"] if "name" in b}
    env.record.append(("counts", counts))
    tc.assertEqual(counts["b1"], len(touched_clusters(day2)) * CLUSTER)
    env.remove_filter()
    env.check_scratch(touched_clusters(day2) & b0_clusters, frozen)


def scenario_refusals(tc, env):
    """QEMU's texts for options that cannot work."""
    small = os.path.join(env.folder, "small.img")
    bh.make_sparse_file(small, MiB)
    env.ok("blockdev-add", {"driver": "file", "node-name": "ro", "filename": small,
                            "read-only": True})
    cases = [
        ({"target": "ro"}, "Block node is read-only"),
        ({"target": "zz"}, "Cannot find device='zz' nor node-name='zz'"),
        ({"target": "f0", "bitmap": {"node": "zz", "name": "b"}}, "Node 'zz' not found"),
        ({"target": "f0", "bitmap": {"node": "f0", "name": "b"}},
         "Dirty bitmap 'b' not found"),
        ({"target": "f0", "on-cbw-error": "x"},
         "Parameter 'on-cbw-error' does not accept value 'x'"),
        ({}, "Parameter 'target' is missing"),
    ]
    for extra, desc in cases:
        args = {"driver": "copy-before-write", "node-name": "c", "file": "f0"}
        args.update(extra)
        env.err("blockdev-add", args, desc)
    # A snapshot-access node over something else reads nothing.
    env.ok("blockdev-add", {"driver": "snapshot-access", "node-name": "s", "file": "f0"})
    env.export("s", "s")
    tc.assertTrue(env.read_fails("s", 0, 4096))
    env.unexport("s")
    env.ok("blockdev-del", {"node-name": "s"})


SCENARIOS = [scenario_full, scenario_incremental, scenario_refusals]


class Fleecing(bh.DaemonTestCase):
    """The scenarios on the daemon under test."""

    maxDiff = None

    def test_full(self):
        scenario_full(self, Env(self, None, "d"))

    def test_incremental(self):
        scenario_incremental(self, Env(self, None, "d"))

    def test_refusals(self):
        scenario_refusals(self, Env(self, None, "d"))


@bh.berth_only
class BerthRefusals(bh.DaemonTestCase):
    """What berth refuses rather than do badly."""

    def test_small_target(self):
        """QEMU accepts it and fails the copies past its end; berth refuses."""
        env = Env(self, None, "d")
        bh.make_sparse_file(os.path.join(env.folder, "small.img"), MiB)
        env.ok("blockdev-add", {"driver": "file", "node-name": "sm",
                                "filename": os.path.join(env.folder, "small.img")})
        env.err("blockdev-add", {"driver": "copy-before-write", "node-name": "cbw",
                                 "file": "f0", "target": "sm"},
                "Target node 'sm' (1048576 bytes) is smaller than the filtered node 'f0' "
                "(8388608 bytes)")

    def test_cbw_timeout(self):
        env = Env(self, None, "d")
        env.ok("blockdev-add", {"driver": "qcow2", "node-name": "scratch",
                                "file": {"driver": "file", "filename": env.scratch}})
        env.err("blockdev-add", {"driver": "copy-before-write", "node-name": "cbw",
                                 "file": "f0", "target": "scratch", "cbw-timeout": 5},
                "copy-before-write option 'cbw-timeout' is not supported by berth "
                "(only 0: no timeout)")
        env.ok("blockdev-add", {"driver": "copy-before-write", "node-name": "cbw",
                                "file": "f0", "target": "scratch", "cbw-timeout": 0})


@bh.berth_only
@bh.needs_tools("qemu-storage-daemon")
class Compare(bh.DaemonTestCase):
    """Each scenario on berthd and on qemu-storage-daemon: same records."""


for _fn in SCENARIOS:
    setattr(Compare, "test_" + _fn.__name__[len("scenario_"):], bh.record_compare_test(Env, _fn, QSD))


if __name__ == "__main__":
    bh.main()
