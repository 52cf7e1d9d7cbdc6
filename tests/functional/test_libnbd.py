#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""NBD commands and flags end to end, through libnbd's Python binding.

One daemon per test class serves a sparse file-backed writable export
('disk0', 64 MiB, discard=unmap), a read-only export of a pattern file ('ro')
and a null-co export ('null').  Each test works in its own 4 MiB region of
disk0 so that the tests of a class do not see each other's data."""

import errno
import os
import random
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB, GiB

nbd = bh.import_nbd()

DISK_SIZE = 64 * MiB
REGION = 4 * MiB
RO_SIZE = 8 * MiB
DISK_DESCRIPTION = "berth functional disk, writable"
RO_DESCRIPTION = "read-only pattern"

HOLE_ZERO = nbd.STATE_HOLE | nbd.STATE_ZERO


def region(n):
    assert 0 <= n < DISK_SIZE // REGION
    return n * REGION


def pattern(nbytes, seed):
    return random.Random(seed).randbytes(nbytes)


class LibnbdBase(bh.DaemonTestCase):
    """Starts the standard daemon for a class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.class_dir
        cls.sock = os.path.join(d, "nbd.sock")
        cls.disk_path = bh.make_sparse_file(os.path.join(d, "disk0.img"), DISK_SIZE)
        cls.ro_path = bh.make_pattern_file(os.path.join(d, "ro.img"), RO_SIZE,
                                           seed=7, sparse_every=MiB)
        with open(cls.ro_path, "rb") as f:
            cls.ro_data = f.read()
        args = (bh.blockdev_file("disk0", cls.disk_path, discard="unmap")
                + bh.blockdev_file("ro0", cls.ro_path)
                + bh.blockdev_null("null0", 1 * GiB)
                + bh.nbd_server_unix(cls.sock)
                + bh.nbd_export("exp-disk0", "disk0", "disk0", writable=True,
                                description=DISK_DESCRIPTION)
                + bh.nbd_export("exp-ro", "ro0", "ro", description=RO_DESCRIPTION)
                + bh.nbd_export("exp-null", "null0", "null", writable=True))
        cls.daemon = cls.start_class_daemon(args, wait_for=cls.sock)

    def connect(self, name="disk0", **kw):
        h = bh.nbd_connect(nbd, self.sock, name, **kw)
        self.addCleanup(self._close, h)
        return h

    @staticmethod
    def _close(h):
        try:
            if h.aio_is_ready():
                h.shutdown()
        except nbd.Error:
            pass

    def assertNbdErrno(self, expected, func, *args, **kw):
        """func must fail with one of the expected errno values."""
        if isinstance(expected, int):
            expected = (expected,)
        with self.assertRaises(nbd.Error) as cm:
            func(*args, **kw)
        self.assertIn(cm.exception.errnum, expected,
                      "got %s, expected one of %s" % (cm.exception,
                                                      [errno.errorcode[e] for e in expected]))
        return cm.exception

    def extents(self, h, count, offset, flags=0, context="base:allocation"):
        """[(length, flags)] of one block status reply for context."""
        got = []

        def cb(metacontext, off, entries, err):
            if metacontext == context:
                self.assertEqual(off, offset)
                got.append([(entries[i], entries[i + 1])
                            for i in range(0, len(entries), 2)])
            return 0
        h.block_status(count, offset, cb, flags)
        self.assertEqual(len(got), 1, "one chunk per negotiated context")
        return got[0]

    def check_extent_rules(self, ext, count, req_one=False):
        """The extent rules of NBD_CMD_BLOCK_STATUS."""
        self.assertGreaterEqual(len(ext), 1, "at least one extent")
        for length, _ in ext:
            self.assertGreater(length, 0, "extent lengths are nonzero")
        if req_one:
            self.assertEqual(len(ext), 1, "REQ_ONE: exactly one extent")
            self.assertLessEqual(ext[0][0], count, "REQ_ONE: within the request")
        else:
            self.assertLess(sum(l for l, _ in ext[:-1]), count,
                            "only the last extent may reach past the request")

    def flags_at(self, ext, base, pos):
        """Status flags that the extent list gives byte pos."""
        off = base
        for length, fl in ext:
            if off <= pos < off + length:
                return fl
            off += length
        return None


class TransmissionFlags(LibnbdBase):

    def test_writable_export_flags(self):
        h = self.connect(meta=[nbd.CONTEXT_BASE_ALLOCATION])
        self.assertEqual(h.get_size(), DISK_SIZE)
        self.assertFalse(h.is_read_only())
        self.assertTrue(h.get_structured_replies_negotiated())
        self.assertTrue(h.can_flush(), "file exports can flush")
        self.assertTrue(h.can_fua(), "file exports support FUA")
        self.assertTrue(h.can_trim(), "discard=unmap exports accept TRIM")
        self.assertTrue(h.can_zero(), "WRITE_ZEROES is supported")
        self.assertTrue(h.can_df(), "DF is supported with structured replies")
        self.assertTrue(h.can_cache())
        self.assertTrue(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))
        # Only consistency can be demanded of the remaining flags.
        if h.can_fast_zero():
            self.assertTrue(h.can_zero(), "FAST_ZERO requires WRITE_ZEROES")
        h.can_multi_conn()
        h.is_rotational()

    def test_read_only_export_flags(self):
        h = self.connect("ro")
        self.assertTrue(h.is_read_only())
        self.assertEqual(h.get_size(), RO_SIZE)
        if h.can_fast_zero():
            self.assertTrue(h.can_zero())

    def test_df_flag_needs_structured_replies(self):
        h = self.connect(structured=False)
        self.assertFalse(h.get_structured_replies_negotiated())
        self.assertFalse(h.can_df(), "SEND_DF must be clear without structured replies")
        self.assertFalse(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))

    def test_block_size_constraints(self):
        h = self.connect()
        mn = h.get_block_size(nbd.SIZE_MINIMUM)
        pref = h.get_block_size(nbd.SIZE_PREFERRED)
        mx = h.get_block_size(nbd.SIZE_MAXIMUM)
        if mn == 0:      # not advertised: nothing to check
            return
        self.assertTrue(mn & (mn - 1) == 0 and mn <= 64 * KiB, "minimum %d" % mn)
        self.assertTrue(pref & (pref - 1) == 0 and pref >= max(mn, 512),
                        "preferred %d" % pref)
        self.assertTrue(mx == 0xFFFFFFFF or mx % mn == 0, "maximum %d" % mx)
        self.assertGreaterEqual(mx, min(pref, DISK_SIZE))
        self.assertGreaterEqual(mx, min(MiB, DISK_SIZE), "maximum SHOULD be >= 1 MiB")

    @unittest.skipUnless(hasattr(nbd.NBD, "set_request_extended_headers"),
                         "this libnbd has no extended headers")
    def test_extended_headers(self):
        if bh.is_qsd():
            self.skipTest("qemu-storage-daemon 7.2 has no extended headers")
        h = nbd.NBD()
        h.set_request_extended_headers(True)
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.set_export_name("disk0")
        h.connect_unix(self.sock)
        self.addCleanup(self._close, h)
        self.assertTrue(h.get_extended_headers_negotiated())
        off = region(15)
        data = pattern(256 * KiB, 15)
        h.pwrite(data, off)
        self.assertEqual(h.pread(len(data), off), data)
        ext = self.extents(h, 2 * MiB, off)
        self.check_extent_rules(ext, 2 * MiB)


class Commands(LibnbdBase):

    def test_pread_pwrite_round_trip(self):
        h = self.connect()
        off = region(0)
        data = pattern(MiB, 1)
        h.pwrite(data, off)
        self.assertEqual(h.pread(MiB, off), data)
        # small and unaligned pieces, when the export allows byte granularity
        if h.get_block_size(nbd.SIZE_MINIMUM) <= 1:
            h.pwrite(b"\x5a" * 1000, off + 4097)
            got = h.pread(3000, off + 3000)
            self.assertEqual(got[:1097], data[3000:4097])
            self.assertEqual(got[1097:2097], b"\x5a" * 1000)
            self.assertEqual(got[2097:], data[5097:6000])
        # a second connection sees the data
        self.assertEqual(self.connect().pread(MiB, off), h.pread(MiB, off))

    def test_write_at_end_of_export(self):
        h = self.connect()
        data = pattern(64 * KiB, 2)
        h.pwrite(data, DISK_SIZE - len(data))
        self.assertEqual(h.pread(len(data), DISK_SIZE - len(data)), data)

    def test_fua_write_is_on_disk(self):
        h = self.connect()
        off = region(1)
        data = pattern(256 * KiB, 3)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA)
        self.assertEqual(h.pread(len(data), off), data)
        # FUA data is durable when the reply arrives: the backing file has it
        with open(self.disk_path, "rb") as f:
            f.seek(off)
            self.assertEqual(f.read(len(data)), data)
        h.zero(64 * KiB, off, nbd.CMD_FLAG_FUA)
        h.trim(64 * KiB, off + 128 * KiB, nbd.CMD_FLAG_FUA)
        self.assertEqual(h.pread(64 * KiB, off), bytes(64 * KiB))

    def test_flush(self):
        h = self.connect()
        off = region(2)
        data = pattern(128 * KiB, 4)
        h.pwrite(data, off)
        h.flush()
        with open(self.disk_path, "rb") as f:
            f.seek(off)
            self.assertEqual(f.read(len(data)), data)
        h.flush()   # an idle flush is fine too

    def test_trim(self):
        h = self.connect()
        off = region(3)
        h.pwrite(pattern(MiB, 5), off)
        h.trim(MiB, off)
        # contents are unspecified after TRIM, but the range stays usable
        data = pattern(4 * KiB, 6)
        h.pwrite(data, off)
        self.assertEqual(h.pread(len(data), off), data)

    def test_zero(self):
        h = self.connect()
        off = region(4)
        h.pwrite(pattern(MiB, 7), off)
        h.zero(512 * KiB, off + 256 * KiB)
        got = h.pread(MiB, off)
        self.assertEqual(got[256 * KiB:768 * KiB], bytes(512 * KiB))
        self.assertEqual(got[:256 * KiB], pattern(MiB, 7)[:256 * KiB])
        self.assertEqual(got[768 * KiB:], pattern(MiB, 7)[768 * KiB:])

    def test_zero_no_hole_keeps_allocation(self):
        h = self.connect()
        off = region(5)
        blocks = lambda: os.stat(self.disk_path).st_blocks * 512
        # allocated data zeroed with NO_HOLE must not be punched out
        h.pwrite(pattern(MiB, 8), off)
        h.flush()
        before = blocks()
        h.zero(MiB, off, nbd.CMD_FLAG_NO_HOLE)
        h.flush()
        self.assertEqual(h.pread(MiB, off), bytes(MiB))
        self.assertGreaterEqual(blocks(), before,
                                "NO_HOLE zeroing released storage")
        # a hole zeroed with NO_HOLE must become fully provisioned
        before = blocks()
        h.zero(MiB, off + 2 * MiB, nbd.CMD_FLAG_NO_HOLE)
        h.flush()
        self.assertEqual(h.pread(MiB, off + 2 * MiB), bytes(MiB))
        self.assertGreaterEqual(blocks() - before, MiB,
                                "NO_HOLE zeroing of a hole did not provision it")

    def test_fast_zero(self):
        h = self.connect()
        if not h.can_fast_zero():
            self.skipTest("export does not advertise SEND_FAST_ZERO")
        off = region(6)
        data = pattern(MiB, 9)
        h.pwrite(data, off)
        try:
            h.zero(MiB, off, nbd.CMD_FLAG_FAST_ZERO)
        except nbd.Error as e:
            self.assertEqual(e.errnum, errno.ENOTSUP,
                             "FAST_ZERO may only fail with ENOTSUP: %s" % e)
            self.assertEqual(h.pread(MiB, off), data,
                             "a failed fast zero SHOULD leave the data alone")
        else:
            self.assertEqual(h.pread(MiB, off), bytes(MiB))
        # with NO_HOLE as well: either ENOTSUP or zeroes
        try:
            h.zero(MiB, off, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
        except nbd.Error as e:
            self.assertEqual(e.errnum, errno.ENOTSUP, str(e))
        else:
            self.assertEqual(h.pread(MiB, off), bytes(MiB))
        # without FAST_ZERO the same request must not fail with ENOTSUP
        h.zero(MiB, off)
        self.assertEqual(h.pread(MiB, off), bytes(MiB))

    def test_cache(self):
        h = self.connect()
        off = region(7)
        data = pattern(256 * KiB, 10)
        h.pwrite(data, off)
        h.cache(MiB, off)
        self.assertEqual(h.pread(len(data), off), data)

    def test_commands_on_null_export(self):
        h = self.connect("null")
        self.assertEqual(h.get_size(), GiB)
        self.assertEqual(h.pread(64 * KiB, GiB - 64 * KiB), bytes(64 * KiB))
        h.pwrite(b"x" * 4096, 0)
        h.flush()


class BlockStatus(LibnbdBase):

    def setUp(self):
        super().setUp()
        if not bh.filesystem_reports_holes(self.class_dir):
            self.skipTest("the temporary filesystem does not report holes")

    def test_holes_and_data(self):
        h = self.connect(meta=[nbd.CONTEXT_BASE_ALLOCATION])
        self.assertTrue(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))
        off = region(8)
        h.pwrite(pattern(MiB, 11), off + MiB)
        h.flush()
        ext = self.extents(h, 4 * MiB, off)
        self.check_extent_rules(ext, 4 * MiB)
        total = sum(l for l, _ in ext)
        for pos in range(off, off + min(total, 4 * MiB), 64 * KiB):
            fl = self.flags_at(ext, off, pos)
            if off + MiB <= pos < off + 2 * MiB:
                self.assertEqual(fl & HOLE_ZERO, 0,
                                 "written data at %d reported as %d" % (pos, fl))
            else:
                self.assertEqual(fl & HOLE_ZERO, HOLE_ZERO,
                                 "sparse hole at %d reported as %d" % (pos, fl))

    def test_req_one(self):
        h = self.connect(meta=[nbd.CONTEXT_BASE_ALLOCATION])
        off = region(9)
        h.pwrite(pattern(MiB, 12), off + MiB)
        h.flush()
        for start, want in ((off, HOLE_ZERO), (off + MiB, 0)):
            ext = self.extents(h, 2 * MiB, start, nbd.CMD_FLAG_REQ_ONE)
            self.check_extent_rules(ext, 2 * MiB, req_one=True)
            self.assertLessEqual(ext[0][0], MiB, "extent crosses data/hole border")
            self.assertEqual(ext[0][1] & HOLE_ZERO, want)
        # a short request: the one extent must not exceed it
        ext = self.extents(h, 4096, off, nbd.CMD_FLAG_REQ_ONE)
        self.check_extent_rules(ext, 4096, req_one=True)

    def test_status_after_zero_and_trim(self):
        h = self.connect(meta=[nbd.CONTEXT_BASE_ALLOCATION])
        off = region(10)
        h.pwrite(pattern(2 * MiB, 13), off)
        h.zero(MiB, off)
        h.flush()
        ext = self.extents(h, 2 * MiB, off)
        self.check_extent_rules(ext, 2 * MiB)
        for pos in range(off, off + MiB, 64 * KiB):
            fl = self.flags_at(ext, off, pos)
            if fl is not None and fl & nbd.STATE_HOLE:
                self.assertTrue(fl & nbd.STATE_ZERO,
                                "zeroed range reported as undefined hole")
        for pos in range(off + MiB, off + 2 * MiB, 64 * KiB):
            fl = self.flags_at(ext, off, pos)
            if fl is not None:
                self.assertEqual(fl & nbd.STATE_ZERO, 0, "data reported as zero")

    def test_status_at_end_of_export(self):
        h = self.connect(meta=[nbd.CONTEXT_BASE_ALLOCATION])
        ext = self.extents(h, 4096, DISK_SIZE - 4096)
        self.check_extent_rules(ext, 4096)
        self.assertLessEqual(sum(l for l, _ in ext), 4096,
                             "extents reach past the end of the export")

    def test_list_meta_contexts(self):
        h = nbd.NBD()
        h.set_opt_mode(True)
        h.set_export_name("disk0")
        h.connect_unix(self.sock)
        self.addCleanup(h.opt_abort)
        seen = []
        n = h.opt_list_meta_context(lambda name: seen.append(name) or 0)
        self.assertEqual(n, len(seen))
        self.assertIn("base:allocation", seen)


class StructuredReads(LibnbdBase):

    def chunks(self, h, count, offset, flags=0):
        got = []

        def cb(buf, off, status, err):
            got.append((status, off, len(buf), bytes(buf)))
            return 0
        h.pread_structured(count, offset, cb, flags)
        return got

    def check_cover(self, chunks, offset, count):
        spans = sorted((o, n) for st, o, n, _ in chunks
                       if st in (nbd.READ_DATA, nbd.READ_HOLE))
        pos = offset
        for o, n in spans:
            self.assertGreater(n, 0, "empty content chunk")
            self.assertEqual(o, pos, "chunks overlap or leave a gap at %d" % pos)
            pos += n
        self.assertEqual(pos, offset + count, "chunks do not cover the request")

    def setUp(self):
        super().setUp()
        h = self.connect()
        self.off = region(11)
        self.data = pattern(MiB, 14)
        h.pwrite(self.data, self.off + MiB)       # hole, data, hole...
        h.flush()

    def test_fragmented_read_covers_range(self):
        h = self.connect()
        start = self.off + MiB - 256 * KiB
        ch = self.chunks(h, 2 * MiB, start)
        self.check_cover(ch, start, 2 * MiB)
        buf = bytearray(2 * MiB)
        for st, o, n, b in ch:
            if st == nbd.READ_DATA:
                buf[o - start:o - start + n] = b
        expect = bytes(256 * KiB) + self.data + bytes(768 * KiB)
        self.assertEqual(bytes(buf), expect)

    def test_zero_runs_sent_as_holes(self):
        # 256 KiB and 768 KiB of zeroes around 1 MiB of data: the zeroes
        # should travel as hole chunks, not as bytes.
        h = self.connect()
        start = self.off + MiB - 256 * KiB
        ch = self.chunks(h, 2 * MiB, start)
        self.check_cover(ch, start, 2 * MiB)
        holes = sum(n for st, o, n, _ in ch if st == nbd.READ_HOLE)
        data = sum(n for st, o, n, _ in ch if st == nbd.READ_DATA)
        self.assertGreaterEqual(holes, 768 * KiB, "zeroes were sent as data")
        self.assertLessEqual(data, MiB + 256 * KiB)

    def test_df_read_is_one_chunk(self):
        h = self.connect()
        self.assertTrue(h.can_df())
        # 64 KiB across the hole/data border: one data chunk with the zeroes
        start = self.off + MiB - 32 * KiB
        ch = self.chunks(h, 64 * KiB, start, nbd.CMD_FLAG_DF)
        content = [c for c in ch if c[0] in (nbd.READ_DATA, nbd.READ_HOLE)]
        self.assertEqual(len(content), 1, "DF: more than one content chunk")
        st, o, n, b = content[0]
        self.assertEqual((st, o, n), (nbd.READ_DATA, start, 64 * KiB),
                         "mixed data and hole must come as one OFFSET_DATA chunk")
        self.assertEqual(b, bytes(32 * KiB) + self.data[:32 * KiB])

    def test_df_large_read(self):
        h = self.connect()
        start = self.off + MiB - 512 * KiB
        try:
            ch = self.chunks(h, 2 * MiB, start, nbd.CMD_FLAG_DF)
        except nbd.Error as e:
            self.assertEqual(e.errnum, errno.EOVERFLOW, str(e))
        else:
            content = [c for c in ch if c[0] in (nbd.READ_DATA, nbd.READ_HOLE)]
            self.assertEqual(len(content), 1)
            self.check_cover(content, start, 2 * MiB)
        self.assertEqual(h.pread(4096, self.off + MiB), self.data[:4096])

    def test_df_read_of_hole(self):
        h = self.connect()
        ch = self.chunks(h, 64 * KiB, self.off, nbd.CMD_FLAG_DF)
        content = [c for c in ch if c[0] in (nbd.READ_DATA, nbd.READ_HOLE)]
        self.assertEqual(len(content), 1)
        self.check_cover(content, self.off, 64 * KiB)
        self.assertEqual(content[0][3], bytes(64 * KiB))

    def test_structured_replies_off(self):
        h = self.connect(structured=False, strict=0)
        self.assertFalse(h.get_structured_replies_negotiated())
        self.assertEqual(h.pread(MiB, self.off + MiB), self.data)
        data = pattern(64 * KiB, 15)
        h.pwrite(data, self.off + 3 * MiB)
        self.assertEqual(h.pread(64 * KiB, self.off + 3 * MiB), data)
        # pread_structured falls back to one data "chunk" over simple replies
        ch = self.chunks(h, 64 * KiB, self.off + MiB)
        self.check_cover(ch, self.off + MiB, 64 * KiB)
        # an error reply carries no payload: the stream stays in step
        self.assertNbdErrno(errno.EINVAL, h.pread, MiB, DISK_SIZE - 4096)
        self.assertEqual(h.pread(MiB, self.off + MiB), self.data)
        h.zero(4096, self.off + 3 * MiB)
        h.trim(4096, self.off + 3 * MiB + 8192)
        h.flush()


# The specification: a server SHOULD answer EPERM to a write or trim on a
# read-only export.  qemu-storage-daemon 7.2 answers EINVAL to NBD_CMD_WRITE.
RO_EINVAL = ("qemu-storage-daemon 7.2 answers EINVAL, not EPERM, to a write "
             "on a read-only export")


class ReadOnlyExport(LibnbdBase):

    @bh.qsd_deviates(RO_EINVAL)
    def test_writes_refused_with_eperm(self):
        h = self.connect("ro", strict=0)     # send what libnbd would refuse
        self.assertTrue(h.is_read_only())
        self.assertNbdErrno(errno.EPERM, h.pwrite, b"x" * 4096, 0)
        self.assertEqual(h.pread(RO_SIZE, 0), self.ro_data)

    @bh.qsd_deviates(RO_EINVAL)
    def test_fua_write_refused_with_eperm(self):
        h = self.connect("ro", strict=0)
        self.assertNbdErrno(errno.EPERM, h.pwrite, b"x" * 4096, 4096,
                            nbd.CMD_FLAG_FUA)
        self.assertEqual(h.pread(RO_SIZE, 0), self.ro_data)

    def test_trim_and_zero_refused(self):
        h = self.connect("ro", strict=0)
        # EPERM where the export advertises the command, else EINVAL is
        # also acceptable (the client should not have sent it at all)
        trim_ok = (errno.EPERM,) if h.can_trim() else (errno.EPERM, errno.EINVAL)
        zero_ok = (errno.EPERM,) if h.can_zero() else (errno.EPERM, errno.EINVAL)
        self.assertNbdErrno(trim_ok, h.trim, MiB, 0)
        self.assertNbdErrno(zero_ok, h.zero, MiB, MiB)
        self.assertNbdErrno(zero_ok, h.zero, MiB, MiB, nbd.CMD_FLAG_NO_HOLE)
        self.assertEqual(h.pread(RO_SIZE, 0), self.ro_data)
        with open(self.ro_path, "rb") as f:
            self.assertEqual(f.read(), self.ro_data)

    def test_reads_and_flush_work(self):
        h = self.connect("ro")
        self.assertEqual(h.pread(MiB, 3 * MiB), self.ro_data[3 * MiB:4 * MiB])
        if h.can_flush():
            h.flush()
        if h.can_cache():
            h.cache(MiB, 0)



class OutOfRange(LibnbdBase):
    """Requests past the end fail cleanly; the connection stays usable."""

    def test_out_of_range_requests(self):
        h = self.connect(strict=0, meta=[nbd.CONTEXT_BASE_ALLOCATION])
        good = pattern(4096, 16)
        h.pwrite(good, region(12))
        cases = [
            ("read", errno.EINVAL, lambda: h.pread(8192, DISK_SIZE - 4096)),
            ("read at end", errno.EINVAL, lambda: h.pread(512, DISK_SIZE)),
            ("write", (errno.ENOSPC, errno.EINVAL),
             lambda: h.pwrite(b"w" * 8192, DISK_SIZE - 4096)),
            ("trim", errno.EINVAL, lambda: h.trim(8192, DISK_SIZE - 4096)),
            ("zero", (errno.ENOSPC, errno.EINVAL),
             lambda: h.zero(8192, DISK_SIZE - 4096)),
            ("cache", errno.EINVAL, lambda: h.cache(8192, DISK_SIZE - 4096)),
            ("block status", errno.EINVAL,
             lambda: h.block_status(4096, DISK_SIZE, lambda *a: 0)),
            ("offset wraps", errno.EINVAL, lambda: h.pread(4096, 2**64 - 2048)),
            ("write wraps", (errno.ENOSPC, errno.EINVAL),
             lambda: h.pwrite(b"w" * 4096, 2**64 - 2048)),
        ]
        for what, err, func in cases:
            with self.subTest(what):
                self.assertNbdErrno(err, func)
                self.assertEqual(h.pread(4096, region(12)), good,
                                 "connection unusable after %s" % what)
        # nothing was written past the end, and the tail is intact
        self.assertEqual(os.path.getsize(self.disk_path), DISK_SIZE)
        self.assertNotEqual(h.pread(4096, DISK_SIZE - 4096), b"w" * 4096)


class Listing(LibnbdBase):

    def opt_handle(self):
        h = nbd.NBD()
        h.set_opt_mode(True)
        h.connect_unix(self.sock)
        self.addCleanup(self._abort, h)
        return h

    @staticmethod
    def _abort(h):
        try:
            if h.aio_is_negotiating():
                h.opt_abort()
            elif h.aio_is_ready():
                h.shutdown()
        except nbd.Error:
            pass

    def test_opt_list_names_and_descriptions(self):
        h = self.opt_handle()
        self.assertTrue(h.aio_is_negotiating())
        seen = {}
        n = h.opt_list(lambda name, desc: seen.__setitem__(name, desc) or 0)
        self.assertEqual(n, 3)
        self.assertEqual(seen, {"disk0": DISK_DESCRIPTION, "ro": RO_DESCRIPTION,
                                "null": ""})

    def test_opt_info(self):
        h = self.opt_handle()
        h.set_full_info(True)
        h.set_export_name("disk0")
        h.opt_info()
        self.assertEqual(h.get_size(), DISK_SIZE)
        self.assertFalse(h.is_read_only())
        self.assertEqual(h.get_export_description(), DISK_DESCRIPTION)
        self.assertEqual(h.get_canonical_export_name(), "disk0")
        h.set_export_name("ro")
        h.opt_info()
        self.assertTrue(h.is_read_only())
        self.assertEqual(h.get_size(), RO_SIZE)
        self.assertEqual(h.get_export_description(), RO_DESCRIPTION)

    def test_opt_info_missing_export_then_go(self):
        h = self.opt_handle()
        h.set_export_name("no-such-export")
        with self.assertRaises(nbd.Error):
            h.opt_info()
        self.assertTrue(h.aio_is_negotiating(), "an INFO failure ends haggling")
        with self.assertRaises(nbd.Error):
            h.opt_go()
        self.assertTrue(h.aio_is_negotiating(), "a GO failure ends haggling")
        h.set_export_name("ro")
        h.opt_go()
        self.assertTrue(h.aio_is_ready())
        self.assertEqual(h.pread(4096, 0), self.ro_data[:4096])

    def test_opt_abort(self):
        h = self.opt_handle()
        h.opt_abort()
        self.assertFalse(h.aio_is_negotiating())
        bh.assert_export_serves(nbd, self.sock, "disk0")

    def test_connect_to_missing_export_fails(self):
        with self.assertRaises(nbd.Error):
            bh.nbd_connect(nbd, self.sock, "no-such-export")
        bh.assert_export_serves(nbd, self.sock, "disk0")


class Concurrency(LibnbdBase):

    def run_aio(self, h, cookies, timeout=30):
        """Poll until every cookie completes; each must have succeeded."""
        deadline = time.monotonic() + timeout
        pending = set(cookies)
        while pending:
            self.assertLess(time.monotonic(), deadline,
                            "%d commands still in flight" % len(pending))
            h.poll(1000)
            for c in list(pending):
                if h.aio_command_completed(c):   # raises on a failed command
                    pending.discard(c)
        self.assertEqual(h.aio_in_flight(), 0)

    def test_64_requests_in_flight(self):
        h = self.connect()
        base = region(13)
        size = 64 * KiB
        datas = [pattern(size, 100 + i) for i in range(64)]
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)),
                                base + i * size) for i, d in enumerate(datas)]
        self.assertEqual(h.aio_in_flight(), 64)
        self.run_aio(h, cookies)
        bufs = [nbd.Buffer(size) for _ in range(64)]
        # read back in reverse order, so the server sees them out of order too
        cookies = [h.aio_pread(bufs[i], base + i * size) for i in reversed(range(64))]
        self.assertEqual(h.aio_in_flight(), 64)
        self.run_aio(h, cookies)
        for i in range(64):
            self.assertEqual(bytes(bufs[i].to_bytearray()), datas[i],
                             "request %d read back wrong data" % i)

    def test_mixed_commands_in_flight(self):
        h = self.connect()
        base = region(14)
        data = pattern(MiB, 200)
        c1 = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), base)]
        self.run_aio(h, c1)
        cookies = []
        bufs = []
        for i in range(16):
            b = nbd.Buffer(32 * KiB)
            bufs.append(b)
            cookies.append(h.aio_pread(b, base + i * 32 * KiB))
            cookies.append(h.aio_cache(32 * KiB, base + 512 * KiB + i * 32 * KiB))
        cookies.append(h.aio_zero(256 * KiB, base + 2 * MiB))
        cookies.append(h.aio_trim(256 * KiB, base + 3 * MiB))
        cookies.append(h.aio_flush())
        self.run_aio(h, cookies)
        for i, b in enumerate(bufs):
            self.assertEqual(bytes(b.to_bytearray()),
                             data[i * 32 * KiB:(i + 1) * 32 * KiB])

    def test_several_connections_disjoint_writes(self):
        n = 4
        handles = [self.connect() for _ in range(n)]
        base = region(15)
        chunk = 64 * KiB
        per = REGION // n
        errors = []

        def writer(i, h):
            try:
                for k in range(per // chunk):
                    h.pwrite(bytes([0x10 + i]) * chunk, base + i * per + k * chunk)
                if not multi_conn:
                    h.flush()
            except Exception as e:      # reported by the main thread
                errors.append((i, e))

        # With CAN_MULTI_CONN one flush, on any connection, covers the writes
        # acknowledged on all of them; without it each connection flushes.
        multi_conn = handles[0].can_multi_conn()

        threads = [threading.Thread(target=writer, args=(i, h), daemon=True)
                   for i, h in enumerate(handles)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=bh.TEST_TIMEOUT)
            self.assertFalse(t.is_alive(), "writer thread stuck")
        self.assertEqual(errors, [])
        if multi_conn:
            handles[-1].flush()
        with open(self.disk_path, "rb") as f:
            f.seek(base)
            for i in range(n):
                self.assertEqual(f.read(per), bytes([0x10 + i]) * per,
                                 "writer %d's data is not in the file" % i)
        for j, h in enumerate(handles):
            for i in range(n):
                got = h.pread(per, base + i * per)
                self.assertEqual(got, bytes([0x10 + i]) * per,
                                 "connection %d sees wrong data from writer %d"
                                 % (j, i))


class NullWithoutZeroes(bh.DaemonTestCase):
    """null-co,read-zeroes=off leaves the read buffer as it was (QEMU's
    semantics); what the server sends must still never be data that an
    earlier request, perhaps another client's, left in its buffers."""

    @bh.qsd_deviates("sends whatever its freshly allocated buffer held", racy=True)
    def test_reads_never_leak_other_clients_data(self):
        sock = self.path("nbd.sock")
        disk = bh.make_sparse_file(self.path("disk.img"), 16 * MiB)
        self.start_daemon(bh.blockdev_file("d0", disk)
                          + bh.blockdev_null("n0", 64 * MiB, read_zeroes=False)
                          + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "d0", "disk", writable=True)
                          + bh.nbd_export("e1", "n0", "null"),
                          wait_for=sock)
        secret = b"SECRET-0123456789" * (MiB // 17) + b"S" * (MiB % 17)
        with bh.nbd_handle(nbd, sock, "disk") as w, \
                bh.nbd_handle(nbd, sock, "null") as r:
            for size in (4 * KiB, 64 * KiB, MiB):
                for i in range(8):
                    w.pwrite(secret[:size], i * MiB)
                    self.assertEqual(w.pread(size, i * MiB), secret[:size])
                    got = r.pread(size, i * MiB)
                    self.assertFalse(b"SECRET" in got,
                                     "a %d-byte read of the null export sent the "
                                     "disk export's data" % size)
                    self.assertTrue(got == bytes(size), "reads as zeroes")


class NullReadsZeroes(bh.DaemonTestCase):
    """null-co,read-zeroes=on: structured reads of 64 KiB or more without
    DF come back as holes (berth sends them without filling or scanning a
    buffer), with DF as zero data; every read is all zeroes."""

    def test_structured_reads(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", 64 * MiB, read_zeroes=True)
                          + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "n0", "null"),
                          wait_for=sock)
        with bh.nbd_handle(nbd, sock, "null") as h:
            self.assertTrue(h.get_structured_replies_negotiated())
            for size in (4 * KiB, 64 * KiB, MiB, 4 * MiB):
                for flags in (0, nbd.CMD_FLAG_DF):
                    chunks = []

                    def chunk(sub, off, status, err):
                        chunks.append((status, len(sub), bytes(sub) == bytes(len(sub))))
                        return 0

                    got = h.pread_structured(size, 3 * MiB, chunk, flags)
                    self.assertEqual(bytes(got), bytes(size),
                                     "a %d-byte read is not zeroes" % size)
                    self.assertTrue(all(z for _, _, z in chunks))
                    if size >= 64 * KiB and not flags:
                        self.assertEqual({s for s, _, _ in chunks}, {nbd.READ_HOLE},
                                         "a %d-byte read is not sent as holes" % size)
                    if flags:
                        self.assertEqual([s for s, _, _ in chunks], [nbd.READ_DATA],
                                         "DF: a %d-byte read is not one data chunk" % size)


@bh.berth_only
class MemoryExport(bh.DaemonTestCase):
    """berth's own driver=memory node."""

    def test_memory_round_trip(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_memory("m0", 64 * MiB)
                          + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "m0", "mem", writable=True),
                          wait_for=sock)
        with bh.nbd_handle(nbd, sock, "mem",
                           meta=[nbd.CONTEXT_BASE_ALLOCATION]) as h:
            self.assertEqual(h.get_size(), 64 * MiB)
            self.assertEqual(h.pread(MiB, 0), bytes(MiB))
            data = pattern(MiB, 300)
            h.pwrite(data, 5 * MiB)
            h.flush()
            self.assertEqual(h.pread(MiB, 5 * MiB), data)
            h.zero(MiB, 5 * MiB)
            self.assertEqual(h.pread(MiB, 5 * MiB), bytes(MiB))
            got = []
            h.block_status(MiB, 0, lambda ctx, off, e, err: got.append(e) or 0)
            self.assertEqual(len(got), 1)
            self.assertTrue(got[0][1] & nbd.STATE_ZERO,
                            "never-written memory reads as zero")


    def test_memory_holes_sent_unfilled(self):
        """Structured reads of a memory node send its unwritten pages as
        holes without filling them - and never let a recycled buffer's
        earlier data out: a hole read right after a data read of the same
        size reads zeroes, as holes for structured clients and as zero
        bytes for simple ones. A read too fragmented to describe in a few
        chunks is filled instead; raw over memory (a redirected request)
        behaves the same."""
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_memory("m0", 64 * MiB)
                          + ["--blockdev", "raw,node-name=r0,file=m0"]
                          + bh.nbd_server_unix(sock, max_connections=0)
                          + bh.nbd_export("e0", "m0", "mem", writable=True)
                          + bh.nbd_export("e1", "r0", "raw"),
                          wait_for=sock)
        data = pattern(4 * MiB, 301)
        sparse = b"".join(pattern(4 * KiB, 400 + i) + bytes(4 * KiB) for i in range(128))
        with bh.nbd_handle(nbd, sock, "mem") as h:
            h.pwrite(data, 8 * MiB)
            h.pwrite(sparse, 16 * MiB)      # 256 runs of 4 KiB in 1 MiB
        for name in ("mem", "raw"):
            with bh.nbd_handle(nbd, sock, name) as h, \
                    bh.nbd_handle(nbd, sock, name, structured=False) as simple:
                def chunks(count, offset):
                    got = []
                    buf = h.pread_structured(
                        count, offset,
                        lambda sub, off, st, err: got.append((st, off, len(sub))) or 0)
                    return bytes(buf), got
                for size in (64 * KiB, 4 * MiB):
                    self.assertEqual(h.pread(size, 8 * MiB), data[:size])   # warm buffer
                    buf, got = chunks(size, 40 * MiB)
                    self.assertEqual(buf, bytes(size), (name, size))
                    self.assertEqual({st for st, _, _ in got}, {nbd.READ_HOLE}, (name, size))
                    self.assertEqual(simple.pread(size, 8 * MiB), data[:size])
                    self.assertEqual(simple.pread(size, 40 * MiB), bytes(size), (name, size))
                # hole, data, hole in one read: three chunks, the bytes right
                buf, got = chunks(6 * MiB, 7 * MiB)
                self.assertEqual(buf, bytes(MiB) + data + bytes(MiB))
                self.assertEqual([st for st, _, _ in got],
                                 [nbd.READ_HOLE, nbd.READ_DATA, nbd.READ_HOLE], name)
                # 256 runs: filled and scanned instead, the bytes still right
                buf, got = chunks(MiB, 16 * MiB)
                self.assertEqual(buf, sparse, name)
                # in one piece (simple replies, DF): holes sent as zero bytes
                mixed = bytes(MiB) + data + bytes(MiB)
                self.assertEqual(simple.pread(6 * MiB, 7 * MiB), mixed, name)
                got = []
                buf = h.pread_structured(
                    6 * MiB, 7 * MiB, lambda sub, off, st, err: got.append((st, len(sub))) or 0,
                    nbd.CMD_FLAG_DF)
                self.assertEqual(bytes(buf), mixed, name)
                self.assertEqual(got, [(nbd.READ_DATA, 6 * MiB)], name)
                self.assertEqual(simple.pread(MiB, 16 * MiB), sparse, name)


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
