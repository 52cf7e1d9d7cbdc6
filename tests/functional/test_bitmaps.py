#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Dirty bitmaps and the NBD contexts built on them, end to end.

Each scenario drives a daemon through QMP and NBD clients (libnbd, nbdinfo)
and asserts what qemu-storage-daemon 7.2 does (the expected values below were
taken from it; run this file with BERTHD=qemu-storage-daemon to check them):

* pull-mode incremental backup: add bitmaps, write over NBD at known
  offsets, freeze the bitmaps in a transaction, export them read-only and
  read ``qemu:dirty-bitmap:NAME`` with ``nbdinfo --map`` and libnbd's
  block_status: exactly the written ranges, rounded out to the granularity;
* merge, clear, disable and enable;
* transactions are all or nothing: a failing action leaves every bitmap as
  it was, whatever the earlier actions did;
* a bitmap in use by an export is busy: QEMU's refusals, until the export
  is gone;
* ``qemu:allocation-depth`` for a raw file and null-co nodes, and what
  NBD_OPT_LIST_META_CONTEXT lists for ``qemu:`` queries.

Every scenario also returns what it saw; against berthd, when
qemu-storage-daemon is installed, the Compare test runs each scenario on both
daemons and requires the two records to be equal.
"""

import os
import shutil
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import berth_harness as bh  # noqa: E402
import nbd_wire as w  # noqa: E402

bh.require_tools("nbdinfo", "qemu-img")
nbd = bh.import_nbd()

KiB, MiB = bh.KiB, bh.MiB
DISK = 8 * MiB
QSD = shutil.which("qemu-storage-daemon")
BUSY = "Bitmap '%s' is currently in use by another operation and cannot be used"


class Env:
    """One daemon (berthd or qemu-storage-daemon) serving a raw file f0
    (discard=unmap) and null-co nodes n0 (read-zeroes off) and nz (on)."""

    def __init__(self, tc, exe, tag, nodes=True):
        self.tc = tc
        self.exe = exe
        self.tag = tag
        self.qsd = bh.is_qsd() if exe is None else "qemu-storage-daemon" in exe
        folder = os.path.join(tc.tmpdir, tag)
        os.makedirs(folder)
        self.sock = os.path.join(folder, "nbd.sock")
        qmp = os.path.join(folder, "qmp.sock")
        image = os.path.join(folder, "disk.img")
        with open(image, "wb") as f:
            f.truncate(DISK)
        # The monitor before the NBD server, and wait for the latter: a probe
        # of the monitor's socket could take qemu-storage-daemon's only
        # monitor connection just when the test's own arrives.
        args = bh.qmp_monitor(qmp) + bh.nbd_server_unix(self.sock)
        if nodes:
            args = (bh.blockdev_file("f0", image, discard="unmap")
                    + bh.blockdev_null("n0", MiB, read_zeroes=False)
                    + bh.blockdev_null("nz", MiB, read_zeroes=True) + args)
        tc.start_daemon(args, wait_for=self.sock, exe=exe, name=tag, workdir=folder)
        self.qmp = tc.connect_qmp(qmp)
        self.record = []

    def peer(self):
        """A second daemon of the same kind, with no nodes, recording into
        this one's record."""
        other = Env(self.tc, self.exe, self.tag + "-peer", nodes=False)
        other.record = self.record
        return other

    def cmd(self, command, **kw):
        r = self.qmp.cmd(command, **kw)
        self.record.append((command, kw, r))
        return r

    def ok(self, command, **kw):
        r = self.cmd(command, **kw)
        self.tc.assertEqual(r, {"return": {}}, (command, kw))

    def err(self, command, desc, **kw):
        r = self.cmd(command, **kw)
        self.tc.assertEqual(r.get("error"), {"class": "GenericError", "desc": desc},
                            (command, kw, r))

    def bitmaps(self, node="f0"):
        """query-named-block-nodes' dirty-bitmaps of node ([] if none)."""
        for n in self.qmp.cmd("query-named-block-nodes")["return"]:
            if n["node-name"] == node:
                got = n.get("dirty-bitmaps", [])
                self.record.append(("bitmaps", node, got))
                return got
        self.tc.fail("no node " + node)

    def bitmap(self, name, node="f0"):
        for b in self.bitmaps(node):
            if b["name"] == name:
                return b
        return None

    def export(self, exp_id, node="f0", **kw):
        args = {"type": "nbd", "id": exp_id, "node-name": node, "name": exp_id}
        args.update({k.replace("_", "-"): v for k, v in kw.items()})
        return self.cmd("block-export-add", **args)

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

    def write(self, name, ops):
        """Run (kind, offset, length) writes through export `name`."""
        with bh.nbd_handle(nbd, self.sock, name) as h:
            for kind, off, length in ops:
                if kind == "write":
                    h.pwrite(b"\x5a" * length, off)
                elif kind == "zero":
                    h.zero(length, off)
                elif kind == "trim":
                    h.trim(length, off)
                elif kind == "read":
                    h.pread(length, off)
            h.flush()

    def map(self, name, context):
        """nbdinfo --map's lines as (offset, length, value) triples."""
        rc, out, err = bh.run_tool(["nbdinfo", "--map=" + context,
                                    bh.nbd_uri(self.sock, name)], check=False)
        if rc != 0:
            self.record.append(("map", name, context, "failed"))
            return None
        rows = [tuple(int(x) for x in line.split()[:3]) for line in out.splitlines()]
        self.record.append(("map", name, context, rows))
        return rows

    def block_status(self, name, contexts, length, offset=0, req_one=False):
        """libnbd's block_status: {context: [(length, flags), ...]}."""
        seen = {}

        def cb(meta, off, entries, err):
            seen[meta] = list(zip(entries[::2], entries[1::2]))
            return 0

        with bh.nbd_handle(nbd, self.sock, name, meta=contexts) as h:
            for c in contexts:
                self.tc.assertTrue(h.can_meta_context(c), c)
            h.block_status(length, offset, cb, flags=nbd.CMD_FLAG_REQ_ONE if req_one else 0)
        self.record.append(("block-status", name, contexts, offset, length, req_one, seen))
        return seen

    def list_contexts(self, name, queries):
        got = []
        with bh.nbd_handle(nbd, self.sock, name, opt_mode=True) as h:
            for q in queries:
                h.add_meta_context(q)
            h.opt_list_meta_context(lambda ctx: got.append(ctx) or 0)
            h.opt_abort()
        self.record.append(("list", name, queries, got))
        return got


def dirty_rows(spans, granularity, size=DISK):
    """nbdinfo rows for bitmaps dirtied by byte spans, rounded out to the
    granularity: [(offset, length, 1 or 0)] covering [0, size)."""
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


# The guest's writes of the backup scenario, and what each one changes.
WRITES_1 = [("write", 0, 4096), ("write", 200000, 100), ("zero", 3 * MiB, MiB),
            ("trim", 5 * MiB, 128 * KiB), ("read", 6 * MiB, 65536),
            ("write", DISK - 512, 512)]
WRITES_2 = [("write", 1 * MiB + 1000, 70000), ("zero", 7 * MiB, 4096)]


def spans(ops):
    return [(off, length) for kind, off, length in ops if kind != "read"]


# --- scenarios: each asserts QEMU's behaviour and leaves a record ----------

def scenario_backup(tc, env):
    """Full, then incremental: b0 (64 KiB default) and b1 (512) record the
    first writes; a transaction freezes them and starts b2; the frozen ones
    are exported read-only and read back as exactly the written ranges."""
    env.ok("block-dirty-bitmap-add", node="f0", name="b0")
    env.ok("block-dirty-bitmap-add", node="f0", name="b1", granularity=512)
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", WRITES_1)
    b0, b1 = env.bitmap("b0"), env.bitmap("b1")
    tc.assertEqual(b0, {"name": "b0", "recording": True, "persistent": False,
                        "busy": False, "granularity": 65536,
                        "count": sum(r[1] for r in dirty_rows(spans(WRITES_1), 65536)
                                     if r[2])})
    tc.assertEqual(b1["count"], sum(r[1] for r in dirty_rows(spans(WRITES_1), 512) if r[2]))

    env.ok("transaction", actions=[
        {"type": "block-dirty-bitmap-disable", "data": {"node": "f0", "name": "b0"}},
        {"type": "block-dirty-bitmap-disable", "data": {"node": "f0", "name": "b1"}},
        {"type": "block-dirty-bitmap-add", "data": {"node": "f0", "name": "b2"}}])
    env.write("w", WRITES_2)
    tc.assertEqual(env.export("r", bitmaps=["b0", {"node": "f0", "name": "b1"}]),
                   {"return": {}})
    tc.assertEqual(env.map("r", "qemu:dirty-bitmap:b0"), dirty_rows(spans(WRITES_1), 65536))
    tc.assertEqual(env.map("r", "qemu:dirty-bitmap:b1"), dirty_rows(spans(WRITES_1), 512))
    # b2 is not exported
    tc.assertIsNone(env.map("r", "qemu:dirty-bitmap:b2"))
    tc.assertEqual(env.bitmap("b0")["busy"], True)
    tc.assertEqual(env.bitmap("b2")["count"],
                   sum(r[1] for r in dirty_rows(spans(WRITES_2), 65536) if r[2]))

    # libnbd, several contexts in one reply; REQ_ONE gives one extent each.
    seen = env.block_status("r", ["qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1"], DISK)
    tc.assertEqual(seen["qemu:dirty-bitmap:b0"],
                   [(r[1], r[2]) for r in dirty_rows(spans(WRITES_1), 65536)])
    seen = env.block_status("r", ["qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1"], 1 * MiB,
                            offset=199000, req_one=True)
    tc.assertEqual(seen, {"qemu:dirty-bitmap:b0": [(262144 - 199000, 1)],
                          "qemu:dirty-bitmap:b1": [(199680 - 199000, 0)]})
    # a range that starts and ends inside bits
    seen = env.block_status("r", ["qemu:dirty-bitmap:b1"], 1000, offset=150000)
    tc.assertEqual(seen, {"qemu:dirty-bitmap:b1": [(1000, 0)]})
    env.unexport("r")
    env.unexport("w")
    tc.assertFalse(env.bitmap("b0")["busy"])


def scenario_merge_clear_disable(tc, env):
    env.ok("block-dirty-bitmap-add", node="f0", name="a", granularity=65536)
    env.ok("block-dirty-bitmap-add", node="f0", name="b", granularity=4096, disabled=True)
    env.ok("block-dirty-bitmap-add", node="nz", name="other", granularity=65536)
    tc.assertFalse(env.bitmap("b")["recording"])
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", [("write", 0, 512)])
    tc.assertEqual(env.bitmap("a")["count"], 65536)
    tc.assertEqual(env.bitmap("b")["count"], 0)          # disabled: records nothing
    env.ok("block-dirty-bitmap-enable", node="f0", name="b")
    env.write("w", [("write", 2 * MiB, 100)])
    tc.assertEqual(env.bitmap("b")["count"], 4096)
    # merge b (4 KiB) into a (64 KiB): a's bits cover b's
    env.ok("block-dirty-bitmap-merge", node="f0", target="a", bitmaps=["b"])
    tc.assertEqual(env.bitmap("a")["count"], 2 * 65536)
    tc.assertEqual(env.bitmap("b")["count"], 4096)      # the source is unchanged
    # merge a (64 KiB) into b (4 KiB): b gets every byte of a's bits
    env.ok("block-dirty-bitmap-merge", node="f0", target="b",
           bitmaps=[{"node": "f0", "name": "a"}])
    tc.assertEqual(env.bitmap("b")["count"], 2 * 65536)
    env.err("block-dirty-bitmap-merge", "Bitmaps are of different sizes (destination size "
            "is 8388608, source size is 1048576) and can't be merged",
            node="f0", target="a", bitmaps=[{"node": "nz", "name": "other"}])
    env.err("block-dirty-bitmap-merge", "Dirty bitmap 'zz' not found",
            node="f0", target="a", bitmaps=["b", "zz"])
    env.err("block-dirty-bitmap-merge", "Node 'nope' not found",
            node="f0", target="a", bitmaps=[{"node": "nope", "name": "b"}])
    env.err("block-dirty-bitmap-merge",
            "Invalid parameter type for 'null', expected: BlockDirtyBitmapOrStr",
            node="f0", target="a", bitmaps=[3])
    env.ok("block-dirty-bitmap-clear", node="f0", name="a")
    tc.assertEqual(env.bitmap("a")["count"], 0)
    tc.assertEqual(env.bitmap("a")["recording"], True)
    env.ok("block-dirty-bitmap-disable", node="f0", name="a")
    env.ok("block-dirty-bitmap-disable", node="f0", name="a")   # idempotent
    env.write("w", [("write", 4 * MiB, 1)])
    tc.assertEqual(env.bitmap("a")["count"], 0)
    env.ok("block-dirty-bitmap-remove", node="f0", name="b")
    tc.assertIsNone(env.bitmap("b"))
    # order: newest first
    tc.assertEqual([b["name"] for b in env.bitmaps()], ["a"])
    env.unexport("w")


def scenario_errors(tc, env):
    env.ok("block-dirty-bitmap-add", node="f0", name="b0")
    env.err("block-dirty-bitmap-add", "Bitmap already exists: b0", node="f0", name="b0")
    env.err("block-dirty-bitmap-add", "Cannot find device='nope' nor node-name='nope'",
            node="nope", name="b0")
    env.err("block-dirty-bitmap-add", "Bitmap name cannot be empty", node="f0", name="")
    for g in (1000, 256, 0):
        env.err("block-dirty-bitmap-add", "Granularity must be power of 2 and at least 512",
                node="f0", name="g", granularity=g)
    env.err("block-dirty-bitmap-add", "Parameter 'granularity' expects uint32_t",
            node="f0", name="g", granularity=1 << 32)
    env.ok("block-dirty-bitmap-add", node="f0", name="huge", granularity=1 << 31)
    env.err("block-dirty-bitmap-add", "Can't store persistent bitmaps to f0: Operation not "
            "supported", node="f0", name="p", persistent=True)
    env.ok("block-dirty-bitmap-add", node="f0", name="np", persistent=False)
    env.err("block-dirty-bitmap-add", "Bitmap name too long: " + "x" * 1024,
            node="f0", name="x" * 1024)
    env.ok("block-dirty-bitmap-add", node="f0", name="x" * 1023)
    for command in ("remove", "clear", "enable", "disable"):
        env.err("block-dirty-bitmap-" + command, "Dirty bitmap 'zz' not found",
                node="f0", name="zz")
        env.err("block-dirty-bitmap-" + command, "Node 'nope' not found",
                node="nope", name="b0")
    env.err("block-dirty-bitmap-merge", "Dirty bitmap 'zz' not found",
            node="f0", target="zz", bitmaps=["b0"])
    tc.assertEqual(env.bitmap("huge")["granularity"], 1 << 31)
    tc.assertEqual(env.export("e", bitmaps=["zz"])["error"]["desc"], "Bitmap 'zz' is not found")


def scenario_transaction(tc, env):
    env.ok("block-dirty-bitmap-add", node="f0", name="b0", granularity=65536)
    env.ok("block-dirty-bitmap-add", node="f0", name="b1", granularity=65536)
    env.ok("block-dirty-bitmap-add", node="f0", name="b2", granularity=65536, disabled=True)
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", [("write", 0, 1), ("write", MiB, 1)])
    env.ok("block-dirty-bitmap-clear", node="f0", name="b1")
    env.write("w", [("write", 2 * MiB, 1)])
    before = env.bitmaps()

    def bm(kind, **data):
        return {"type": "block-dirty-bitmap-" + kind, "data": dict(node="f0", **data)}

    # Each earlier action changes something; the last fails: nothing stays.
    env.err("transaction", "Bitmap already exists: b0", actions=[
        bm("add", name="t1"), bm("clear", name="b0"), bm("disable", name="b1"),
        bm("enable", name="b2"), bm("merge", target="b2", bitmaps=["b0"]),
        bm("remove", name="b1"), bm("add", name="b0")])
    tc.assertEqual(env.bitmaps(), before)
    env.err("transaction", "Transaction aborted using Abort action", actions=[
        bm("clear", name="b0"), bm("remove", name="b2"), {"type": "abort", "data": {}}])
    tc.assertEqual(env.bitmaps(), before)
    # a bitmap removed earlier in a transaction is busy for later actions
    env.err("transaction", BUSY % "b1", actions=[
        bm("remove", name="b1"), bm("clear", name="b1")])
    tc.assertEqual(env.bitmaps(), before)
    # refusals
    env.err("transaction", "Parameter 'type' does not accept value 'bogus'",
            actions=[{"type": "bogus", "data": {}}])
    env.err("transaction", "Parameter 'actions[0].data.bogus' is unexpected",
            actions=[bm("add", name="q", bogus=1)])
    env.err("transaction", "Parameter 'actions[1].data' is missing",
            actions=[bm("add", name="q"), {"type": "block-dirty-bitmap-add"}])
    env.err("transaction", "Parameter 'actions' is missing")
    env.err("transaction", "Action 'block-dirty-bitmap-add' does not support Transaction "
            "property completion-mode = grouped",
            actions=[bm("add", name="q")], properties={"completion-mode": "grouped"})
    tc.assertEqual(env.bitmaps(), before)
    # success: all of it
    env.ok("transaction", actions=[], properties={"completion-mode": "individual"})
    env.ok("transaction", actions=[
        bm("add", name="t1"), bm("remove", name="t1"), bm("add", name="t2", granularity=512),
        bm("merge", target="b2", bitmaps=["b0", "b1"]), bm("clear", name="b0"),
        bm("enable", name="b2"), bm("remove", name="b1")])
    got = {b["name"]: (b["count"], b["recording"]) for b in env.bitmaps()}
    tc.assertEqual(got, {"t2": (0, True), "b2": (3 * 65536, True), "b0": (0, True)})
    env.unexport("w")


def scenario_busy(tc, env):
    env.ok("block-dirty-bitmap-add", node="f0", name="b0")
    env.ok("block-dirty-bitmap-add", node="f0", name="b1")
    env.ok("block-dirty-bitmap-add", node="n0", name="far", disabled=True, granularity=512)
    tc.assertEqual(env.export("e0", bitmaps=["b0"])["error"]["desc"],
                   "Enabled bitmap 'b0' incompatible with readonly export")
    env.ok("block-dirty-bitmap-disable", node="f0", name="b0")
    tc.assertEqual(env.export("e0", bitmaps=["b0"]), {"return": {}})
    tc.assertEqual(env.bitmap("b0")["busy"], True)
    for command in ("remove", "clear", "enable", "disable"):
        env.err("block-dirty-bitmap-" + command, BUSY % "b0", node="f0", name="b0")
    env.err("block-dirty-bitmap-merge", BUSY % "b0", node="f0", target="b0", bitmaps=["b1"])
    env.err("block-dirty-bitmap-merge", BUSY % "b0", node="f0", target="b1", bitmaps=["b0"])
    env.err("transaction", BUSY % "b0", actions=[
        {"type": "block-dirty-bitmap-clear", "data": {"node": "f0", "name": "b0"}}])
    tc.assertEqual(env.export("e1", bitmaps=["b0"])["error"]["desc"], BUSY % "b0")
    tc.assertEqual(env.cmd("nbd-server-add", device="f0", name="e2",
                           bitmap="b0")["error"]["desc"], BUSY % "b0")
    # a writable export may carry an enabled bitmap, and a bitmap of another node
    tc.assertEqual(env.export("e3", writable=True,
                              bitmaps=["b1", {"node": "n0", "name": "far"}]),
                   {"return": {}})
    tc.assertEqual(env.bitmap("far", node="n0")["busy"], True)
    env.err("block-dirty-bitmap-enable", BUSY % "b1", node="f0", name="b1")
    env.unexport("e3")
    env.unexport("e0")
    tc.assertEqual([b["busy"] for b in env.bitmaps()], [False, False])
    env.ok("block-dirty-bitmap-remove", node="f0", name="b0")
    env.ok("block-dirty-bitmap-remove", node="n0", name="far")


def scenario_allocation_depth(tc, env):
    for exp_id, node in (("f", "f0"), ("n", "n0"), ("z", "nz")):
        tc.assertEqual(env.export(exp_id, node=node, allocation_depth=True), {"return": {}})
    tc.assertEqual(env.export("plain", node="f0", allocation_depth=False), {"return": {}})
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", [("write", MiB, 4096), ("zero", 2 * MiB, MiB), ("trim", 4 * MiB, MiB)])
    # a raw file has no backing chain: all of it is at depth 1, holes too
    tc.assertEqual(env.map("f", "qemu:allocation-depth"), [(0, DISK, 1)])
    tc.assertEqual(env.map("n", "qemu:allocation-depth"), [(0, MiB, 0)])
    tc.assertEqual(env.map("z", "qemu:allocation-depth"), [(0, MiB, 1)])
    tc.assertIsNone(env.map("plain", "qemu:allocation-depth"))
    seen = env.block_status("f", ["base:allocation", "qemu:allocation-depth"], DISK,
                            req_one=True)
    tc.assertEqual(seen["qemu:allocation-depth"], [(DISK, 1)])
    tc.assertEqual(len(seen["base:allocation"]), 1)


def scenario_list_contexts(tc, env):
    env.ok("block-dirty-bitmap-add", node="f0", name="b0", disabled=True)
    env.ok("block-dirty-bitmap-add", node="f0", name="b1", disabled=True)
    tc.assertEqual(env.export("r", bitmaps=["b0", "b1"], allocation_depth=True),
                   {"return": {}})
    tc.assertEqual(env.export("plain"), {"return": {}})
    all_r = ["base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b0",
             "qemu:dirty-bitmap:b1"]
    cases = [
        ([], all_r),
        (["qemu:"], all_r[1:]),
        (["qemu:dirty-bitmap:"], all_r[2:]),
        (["base:"], all_r[:1]),
        (["qemu:dirty-bitmap:b1", "qemu:allocation-depth"], [all_r[1], all_r[3]]),
        (["qemu:dirty-bitmap:b9", "other:", "qemu:nothing"], []),
    ]
    for queries, want in cases:
        tc.assertEqual(env.list_contexts("r", queries), want, queries)
    tc.assertEqual(env.list_contexts("plain", ["qemu:"]), [])
    tc.assertEqual(env.list_contexts("plain", []), ["base:allocation"])


def wire_extents(payload, extended=False):
    """(context id, [(length, flags)]) of one BLOCK_STATUS(_EXT) chunk."""
    if extended:
        cid, count = struct.unpack(">II", payload[:8])
        ext = [struct.unpack(">QII", payload[i:i + 16]) for i in range(8, len(payload), 16)]
        assert len(ext) == count, (count, ext)
        return cid, [(length, flags) for length, _, flags in ext]
    (cid,) = struct.unpack(">I", payload[:4])
    return cid, [struct.unpack(">II", payload[i:i + 8]) for i in range(4, len(payload), 8)]


def scenario_wire(tc, env):
    """Raw protocol: SET_META_CONTEXT answers in QEMU's order (base,
    allocation depth, bitmaps) whatever the query order; BLOCK_STATUS sends
    one chunk per context in that order, DONE on the last."""
    env.ok("block-dirty-bitmap-add", node="f0", name="b0", granularity=65536)
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", [("write", 65536, 1), ("write", 3 * 65536, 70000)])
    env.ok("block-dirty-bitmap-disable", node="f0", name="b0")
    tc.assertEqual(env.export("r", bitmaps=["b0"], allocation_depth=True), {"return": {}})
    # SET: a bare namespace selects nothing (only LIST expands it); names
    # are case-sensitive; a context asked for twice is selected once
    for queries, want in ((["qemu:"], []), (["qemu:dirty-bitmap:"], []), (["base:"], []),
                          (["QEMU:allocation-depth"], []),
                          (["qemu:dirty-bitmap:b0"] * 2, ["qemu:dirty-bitmap:b0"])):
        c = w.RawClient(env.sock)
        try:
            c.start()
            c.negotiate_structured()
            replies = c.option(w.OPT_SET_META_CONTEXT, w.meta_payload("r", queries))
            tc.assertEqual(replies[-1].type, w.REP_ACK)
            got = [r.data[4:].decode() for r in replies[:-1]]
            tc.assertEqual(got, want, queries)
            env.record.append(("set", queries, got))
            c.send(w.pack_option(w.OPT_ABORT))
        finally:
            c.close()
    c = w.RawClient(env.sock)
    try:
        c.start()
        c.negotiate_structured()
        replies = c.option(w.OPT_SET_META_CONTEXT, w.meta_payload(
            "r", ["qemu:dirty-bitmap:b0", "nope:x", "base:allocation",
                  "qemu:allocation-depth"]))
        names = [r.data[4:].decode() for r in replies[:-1]]
        ids = {r.data[4:].decode(): struct.unpack(">I", r.data[:4])[0] for r in replies[:-1]}
        tc.assertEqual(replies[-1].type, w.REP_ACK)
        tc.assertEqual(names, ["base:allocation", "qemu:allocation-depth",
                               "qemu:dirty-bitmap:b0"])
        tc.assertEqual(len(set(ids.values())), 3)
        t, _ = c.go("r")
        tc.assertEqual(t, w.REP_ACK)
        by_id = {v: k for k, v in ids.items()}
        seen = []
        for flags in (0, w.CMD_FLAG_REQ_ONE):
            err, _, chunks = c.command(w.CMD_BLOCK_STATUS, 9, 1000, 6 * 65536, flags)
            tc.assertEqual(err, 0)
            tc.assertEqual([ch.done for ch in chunks], [False, False, True])
            got = []
            for ch in chunks:
                tc.assertEqual(ch.type, w.REPLY_TYPE_BLOCK_STATUS)
                cid, ext = wire_extents(ch.payload)
                got.append((by_id[cid], ext))
            seen.append(got)
        tc.assertEqual([name for name, _ in seen[0]], names)
        tc.assertEqual(dict(seen[0])["qemu:dirty-bitmap:b0"],
                       [(65536 - 1000, 0), (65536, 1), (65536, 0), (2 * 65536, 1),
                        (6 * 65536 + 1000 - 5 * 65536, 0)])
        tc.assertEqual(dict(seen[0])["qemu:allocation-depth"], [(6 * 65536, 1)])
        tc.assertEqual(dict(seen[1])["qemu:dirty-bitmap:b0"], [(65536 - 1000, 0)])
        tc.assertTrue(all(len(ext) == 1 for _, ext in seen[1]))
        env.record.append(("wire", names, seen))
        c.disconnect()
    finally:
        c.close()


def scenario_x_dirty_bitmap(tc, env):
    """A second daemon's nbd node with x-dirty-bitmap reads the first one's
    qemu:dirty-bitmap:b0 as its block status, dirty as unallocated (QEMU's
    convention), so the second daemon's base:allocation map shows the
    dirty ranges as holes: backups chained through an nbd node."""
    env.ok("block-dirty-bitmap-add", node="f0", name="b0", granularity=65536)
    tc.assertEqual(env.export("w", writable=True), {"return": {}})
    env.write("w", WRITES_1)
    env.ok("block-dirty-bitmap-disable", node="f0", name="b0")
    tc.assertEqual(env.export("r", bitmaps=["b0"]), {"return": {}})
    peer = env.peer()
    server = {"type": "unix", "path": env.sock}
    # QEMU 7.2 loses its own message here; berth keeps it (not recorded)
    r = peer.qmp.cmd("blockdev-add", driver="nbd", **{"node-name": "bad"}, server=server,
                     export="r", **{"x-dirty-bitmap": "qemu:dirty-bitmap:zz",
                                    "read-only": True})
    tc.assertEqual(r["error"]["desc"], "Could not open image: Invalid argument" if peer.qsd
                   else "requested x-dirty-bitmap qemu:dirty-bitmap:zz not found")
    tc.assertEqual(peer.qmp.cmd("blockdev-add", driver="nbd", **{"node-name": "c0"},
                                server=server, export="r",
                                **{"x-dirty-bitmap": "qemu:dirty-bitmap:b0",
                                   "read-only": True}), {"return": {}})
    tc.assertEqual(peer.export("c", node="c0"), {"return": {}})
    rows = peer.map("c", "base:allocation")
    # dirty: a hole (1, not zero); clean: data (0)
    tc.assertEqual(rows, [(off, length, 1 if dirty else 0)
                          for off, length, dirty in dirty_rows(spans(WRITES_1), 65536)])
    peer.unexport("c")
    peer.ok("blockdev-del", **{"node-name": "c0"})


def dirty_extents(env, name, context):
    """(offset, length) of the dirty extents of `context` on export `name`,
    asking block status again from wherever an answer stopped."""
    out = []
    with bh.nbd_handle(nbd, env.sock, name, meta=[context]) as h:
        size, pos = h.get_size(), 0
        while pos < size:
            seen = []

            def cb(meta, off, entries, err):
                if meta == context:
                    seen.extend(zip(entries[::2], entries[1::2]))
                return 0

            h.block_status(size - pos, pos, cb)
            for length, flags in seen:
                length = min(length, size - pos)
                if flags & 1:
                    out.append((pos, length))
                pos += length
                if pos >= size:
                    break
    return out


def apply_increment(env, name, context, target):
    """Copy the dirty extents of export `name` into the file `target`."""
    copied = 0
    extents = dirty_extents(env, name, context)
    with bh.nbd_handle(nbd, env.sock, name) as h, open(target, "r+b") as f:
        for off, length in extents:
            for pos in range(off, off + length, MiB):
                n = min(MiB, off + length - pos)
                f.seek(pos)
                f.write(h.pread(n, pos))
                copied += n
    return extents, copied


def scenario_pull_backup(tc, env):
    """libvirt's pull-mode backup: a full copy when the bitmap starts, then
    two increments, each read through a frozen bitmap's context and applied
    to the copy; the copy then equals the live disk (qemu-img compare), and
    only the dirty clusters were read."""
    bm = env.tc.path(env.tag + "-full.img")

    def tx(*actions):
        env.ok("transaction", actions=[{"type": "block-dirty-bitmap-" + kind,
                                        "data": dict(node="f0", **data)}
                                       for kind, data in actions])

    tc.assertEqual(env.export("live", writable=True), {"return": {}})
    env.write("live", [("write", 512 * KiB, 300 * KiB)])   # data before the backup
    # full backup: start the bitmap and copy everything, atomically as far
    # as this test's writer is concerned (it is idle meanwhile)
    tx(("add", {"name": "inc0", "granularity": 65536}))
    with bh.nbd_handle(nbd, env.sock, "live") as h, open(bm, "wb") as f:
        f.write(h.pread(DISK, 0))
    steps = []
    for n, writes in ((0, WRITES_1), (1, WRITES_2)):
        env.write("live", writes)
        # freeze inc<n>, start inc<n+1> in one step
        tx(("add", {"name": "inc%d" % (n + 1), "granularity": 65536}),
           ("disable", {"name": "inc%d" % n}))
        tc.assertEqual(env.export("backup", bitmaps=["inc%d" % n]), {"return": {}})
        extents, copied = apply_increment(env, "backup", "qemu:dirty-bitmap:inc%d" % n, bm)
        tc.assertEqual(copied, sum(r[1] for r in dirty_rows(spans(writes), 65536) if r[2]))
        steps.append((n, extents, copied))
        env.unexport("backup")
        env.ok("block-dirty-bitmap-remove", node="f0", name="inc%d" % n)
        rc, out, err = bh.run_tool(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", bm,
                                    bh.nbd_uri(env.sock, "live")], check=False)
        tc.assertEqual(rc, 0, "increment %d: %s%s" % (n, out, err))
    env.record.append(("pull-backup", steps))
    tc.assertEqual([b["name"] for b in env.bitmaps()], ["inc2"])
    env.unexport("live")


SCENARIOS = [scenario_backup, scenario_merge_clear_disable, scenario_errors,
             scenario_transaction, scenario_busy, scenario_allocation_depth,
             scenario_list_contexts, scenario_wire, scenario_x_dirty_bitmap,
             scenario_pull_backup]


class Bitmaps(bh.DaemonTestCase):
    """Each scenario against the daemon under test."""


def _scenario_test(fn):
    def test(self):
        fn(self, Env(self, None, "daemon"))
    test.__doc__ = fn.__doc__
    return test


for _fn in SCENARIOS:
    setattr(Bitmaps, "test_" + _fn.__name__[len("scenario_"):], _scenario_test(_fn))


class CommandLine(bh.DaemonTestCase):
    """--export bitmaps.N=NAME and bitmaps.N.node/.name: no bitmap exists
    before the monitor runs, so both forms fail as QEMU fails, in one line."""

    def test_export_bitmaps_not_found(self):
        base = (bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(self.path("s")))
        for opts, want in (("bitmaps.0=b0", "Bitmap 'b0' is not found"),
                           ("bitmaps.0.node=n0,bitmaps.0.name=zz",
                            "Dirty bitmap 'zz' not found"),
                           ("bitmaps.0.node=nope,bitmaps.0.name=zz", "Node 'nope' not found")):
            with self.subTest(opts):
                rc, out, err = bh.run_daemon_once(
                    base + ["--export", "type=nbd,id=e0,node-name=n0," + opts], self.tmpdir)
                self.assertEqual(rc, 1, err)
                lines = err.strip().splitlines()
                self.assertEqual(len(lines), 1, err)
                self.assertTrue(lines[0].endswith(": " + want), lines[0])


@bh.berth_only
class BerthOnly(bh.DaemonTestCase):

    def test_node_of_exported_bitmap_in_use(self):
        """An export keeps the node of each bitmap it serves: that node
        cannot be deleted while the export lives (QEMU would let it go)."""
        env = Env(self, None, "daemon")
        env.ok("block-dirty-bitmap-add", node="n0", name="far", disabled=True)
        self.assertEqual(env.export("e", node="f0", bitmaps=[{"node": "n0", "name": "far"}]),
                         {"return": {}})
        env.err("blockdev-del", "Node n0 is in use", **{"node-name": "n0"})
        env.unexport("e")
        env.ok("blockdev-del", **{"node-name": "n0"})

    def test_extended_headers(self):
        """With extended headers the contexts come as BLOCK_STATUS_EXT
        chunks of 64-bit extents (qemu-storage-daemon 7.2 has none)."""
        env = Env(self, None, "daemon")
        env.ok("block-dirty-bitmap-add", node="f0", name="b0", granularity=65536)
        self.assertEqual(env.export("w", writable=True), {"return": {}})
        env.write("w", [("write", 2 * 65536, 1)])
        env.ok("block-dirty-bitmap-disable", node="f0", name="b0")
        self.assertEqual(env.export("r", bitmaps=["b0"], allocation_depth=True),
                         {"return": {}})
        c = w.RawClient(env.sock)
        try:
            c.start()
            self.assertEqual(c.final(w.OPT_EXTENDED_HEADERS), w.REP_ACK)
            replies = c.option(w.OPT_SET_META_CONTEXT, w.meta_payload(
                "r", ["qemu:allocation-depth", "qemu:dirty-bitmap:b0"]))
            ids = {struct.unpack(">I", r.data[:4])[0]: r.data[4:].decode()
                   for r in replies[:-1]}
            self.assertEqual(c.go("r")[0], w.REP_ACK)
            for req_one in (False, True):
                c.send(struct.pack(">IHHQQQ", 0x21E41C71, w.CMD_FLAG_REQ_ONE if req_one else 0,
                                   w.CMD_BLOCK_STATUS, 0xB5, 0, DISK))
                got = {}
                for _ in range(3):
                    magic, flags, ctype, cookie, off, length = struct.unpack(
                        ">IHHQQQ", c.recv_exact(32))
                    self.assertEqual((magic, cookie, ctype), (0x6E8A278C, 0xB5, 6))
                    cid, ext = wire_extents(c.recv_exact(length), extended=True)
                    got[ids[cid]] = ext
                    if flags & w.REPLY_FLAG_DONE:
                        break
                self.assertEqual(got["qemu:allocation-depth"], [(DISK, 1)])
                want = [(2 * 65536, 0), (65536, 1), (DISK - 3 * 65536, 0)]
                self.assertEqual(got["qemu:dirty-bitmap:b0"], want[:1] if req_one else want)
            c.disconnect()
        finally:
            c.close()

    def test_memory_node_many_writes(self):
        """Several NBD connections writing at once to a memory node: every
        written 4 KiB bit, and only those, is dirty."""
        folder = self.tmpdir
        sock, qmp = os.path.join(folder, "nbd.sock"), os.path.join(folder, "qmp.sock")
        self.start_daemon(bh.blockdev_memory("m0", 64 * MiB) + bh.qmp_monitor(qmp)
                          + bh.nbd_server_unix(sock), wait_for=sock)
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("block-dirty-bitmap-add", node="m0", name="b", granularity=4096),
                         {"return": {}})
        self.assertEqual(q.cmd("block-export-add", type="nbd", id="w", node_name="m0",
                               name="w", writable=True), {"return": {}})
        handles = [bh.nbd_connect(nbd, sock, "w") for _ in range(4)]
        written = set()
        cookies = []
        for i in range(400):
            h = handles[i % 4]
            bit = (i * 7919) % (64 * MiB // 4096)
            written.add(bit)
            cookies.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"w" * 512)),
                                            bit * 4096 + 100)))
        for h, c in cookies:
            while not h.aio_command_completed(c):
                h.poll(-1)
        for h in handles:
            h.shutdown()
        nodes = q.cmd("query-named-block-nodes")["return"]
        self.assertEqual(nodes[0]["dirty-bitmaps"][0]["count"], len(written) * 4096)
        self.assertEqual(q.cmd("block-dirty-bitmap-disable", node="m0", name="b"),
                         {"return": {}})
        self.assertEqual(q.cmd("block-export-add", type="nbd", id="r", node_name="m0",
                               name="r", bitmaps=["b"]), {"return": {}})
        _, out, _ = bh.run_tool(["nbdinfo", "--map=qemu:dirty-bitmap:b", bh.nbd_uri(sock, "r")])
        dirty = set()
        for line in out.splitlines():
            off, length, value = (int(x) for x in line.split()[:3])
            if value:
                dirty.update(range(off // 4096, (off + length) // 4096))
        self.assertEqual(dirty, written)


@bh.berth_only
@bh.needs_tools("qemu-storage-daemon")
class Compare(bh.DaemonTestCase):
    """Each scenario on berthd and on qemu-storage-daemon: same records."""


for _fn in SCENARIOS:
    setattr(Compare, "test_" + _fn.__name__[len("scenario_"):], bh.record_compare_test(Env, _fn, QSD))


if __name__ == "__main__":
    bh.main()
