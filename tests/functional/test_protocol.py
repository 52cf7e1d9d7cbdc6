#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD wire protocol byte by byte, with plain sockets (nbd_wire.py).

A single daemon serves all tests of a class, so every nasty case also shows
that the server survives it: after each test, tearDown checks that the daemon
is still running and that a fresh, well-behaved client still reaches
transmission and reads the known data.  Expected behaviour is the NBD
specification's (doc/proto.md); where qemu-storage-daemon 7.2 differs, the
test says so with bh.qsd_deviates."""

import os
import random
import socket
import struct
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import nbd_wire as w
from berth_harness import KiB, MiB

DISK_SIZE = 128 * MiB           # larger than the 64 MiB requests below
# Over the largest maximum block size a server advertises (berth: 64 MiB,
# qemu-storage-daemon: 32 MiB): such reads and writes are refused.
OVER_MAXIMUM = 64 * MiB + 4096
DESCRIPTION = "raw protocol disk"
KNOWN = random.Random(42).randbytes(MiB)      # the first MiB of the disk


class ProtocolBase(bh.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.class_dir
        cls.sock = os.path.join(d, "nbd.sock")
        cls.disk_path = bh.make_sparse_file(os.path.join(d, "disk.img"), DISK_SIZE)
        with open(cls.disk_path, "r+b") as f:
            f.write(KNOWN)
            f.seek(4 * MiB)                # data at 4 MiB, hole from 5 MiB
            f.write(KNOWN)
        args = (bh.blockdev_file("disk0", cls.disk_path, discard="unmap")
                + bh.nbd_server_unix(cls.sock)
                + bh.nbd_export("e0", "disk0", "disk0", writable=True,
                                description=DESCRIPTION)
                + bh.nbd_export("e1", "disk0", "ro"))
        cls.daemon = cls.start_class_daemon(args, wait_for=cls.sock)

    def tearDown(self):
        self.assert_healthy()
        super().tearDown()

    # -- helpers ----------------------------------------------------------

    def client(self, timeout=5.0):
        c = w.RawClient(self.sock, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def haggling(self, flags=w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES):
        return self.client().start(flags)

    def transmission(self, name="disk0", structured=True, meta=()):
        return self.client().connect_export(name, structured=structured, meta=meta)

    def assert_healthy(self, name="disk0"):
        """The daemon runs, and a fresh client handshakes and reads."""
        self.assertTrue(self.daemon.alive(), "daemon died\n" + self.daemon.describe())
        with w.RawClient(self.sock, timeout=10) as c:
            c.connect_export(name)
            err, data, _ = c.command(w.CMD_READ, 0x4EA17, 0, 4096)
            self.assertEqual(err, 0)
            self.assertEqual(data, KNOWN[:4096], "known data changed")
            c.disconnect()

    def assert_closed(self, c, timeout=5.0, allow_data=True):
        try:
            got = c.wait_closed(timeout)
        except w.Timeout as e:
            self.fail("server kept the connection open: %s" % e)
        if not allow_data:
            self.assertEqual(got, b"", "server sent data before closing")
        return got

    def assert_option_error(self, c, opt, data=b"", expect=(w.REP_ERR_INVALID,),
                            **kw):
        replies = c.option(opt, data, **kw)
        self.assertIn(replies[-1].type, expect,
                      "option %d: got %s, expected %s" % (
                          opt, w.rep_name(replies[-1].type),
                          [w.rep_name(e) for e in expect]))
        return replies

    def assert_haggling_continues(self, c):
        self.assertEqual(c.list_exports(), {"disk0": DESCRIPTION, "ro": ""})


class Greeting(ProtocolBase):

    def test_greeting_flags(self):
        c = self.client()
        flags = c.read_greeting()
        self.assertEqual(flags, w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES,
                         "server must send FIXED_NEWSTYLE|NO_ZEROES and no other bit")

    def test_unknown_client_flags_close(self):
        for flags in (w.FLAG_FIXED_NEWSTYLE | 1 << 2,
                      w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES | 1 << 31,
                      0xFFFFFFFF):
            with self.subTest(flags=hex(flags)):
                c = self.client()
                c.start(flags)
                c.try_send(w.pack_option(w.OPT_LIST))
                self.assert_closed(c, allow_data=False)

    def test_garbage_instead_of_client_flags(self):
        c = self.client()
        c.read_greeting()
        c.try_send(random.Random(1).randbytes(4096))
        self.assert_closed(c)

    def test_client_closes_during_greeting(self):
        for n in (0, 3, 4):
            c = self.client()
            c.read_greeting()
            c.send(b"\0" * n)
            c.close()
        # a client that connects and sends nothing at all, kept open
        idle = [self.client() for _ in range(20)]
        self.assert_healthy()
        for c in idle:
            c.close()


class ExportName(ProtocolBase):

    def test_export_name_with_zeroes(self):
        c = self.haggling(w.FLAG_FIXED_NEWSTYLE)
        c.send_option(w.OPT_EXPORT_NAME, b"disk0")
        size, flags = struct.unpack(">QH", c.recv_exact(10))
        self.assertEqual(size, DISK_SIZE)
        self.assertTrue(flags & w.TF_HAS_FLAGS)
        self.assertEqual(c.recv_exact(124), bytes(124), "124 reserved zero bytes")
        err, data, _ = c.command(w.CMD_READ, 1, 0, 512)
        self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_export_name_no_zeroes(self):
        c = self.haggling()
        c.send_option(w.OPT_EXPORT_NAME, b"disk0")
        size, flags = struct.unpack(">QH", c.recv_exact(10))
        self.assertEqual(size, DISK_SIZE)
        # with NO_ZEROES the very next bytes are the reply to our request
        err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
        self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_export_name_without_fixed_newstyle(self):
        c = self.haggling(0)
        c.send_option(w.OPT_EXPORT_NAME, b"ro")
        size, flags = struct.unpack(">QH", c.recv_exact(10))
        self.assertEqual(size, DISK_SIZE)
        self.assertTrue(flags & w.TF_READ_ONLY)
        self.assertEqual(c.recv_exact(124), bytes(124))
        err, data, _ = c.command(w.CMD_READ, 3, 0, 512)
        self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_export_name_missing_export_closes(self):
        c = self.haggling()
        c.send_option(w.OPT_EXPORT_NAME, b"no-such-export")
        self.assert_closed(c, allow_data=False)

    def test_export_name_after_other_options(self):
        c = self.haggling()
        self.assert_haggling_continues(c)
        c.send_option(w.OPT_EXPORT_NAME, b"disk0")
        size, _ = struct.unpack(">QH", c.recv_exact(10))
        self.assertEqual(size, DISK_SIZE)


class OptionFraming(ProtocolBase):

    def test_wrong_option_magic_closes(self):
        c = self.haggling()
        c.try_send(w.pack_option(w.OPT_LIST, magic=0x1122334455667788))
        self.assert_closed(c, allow_data=False)

    def test_wrong_option_magic_after_good_options(self):
        c = self.haggling()
        self.assert_haggling_continues(c)
        c.send(b"IHAVEOPX" + struct.pack(">II", w.OPT_GO, 0))
        self.assert_closed(c, allow_data=False)

    def test_huge_option_lengths(self):
        """No allocation of what the peer claims: an error reply or a close,
        promptly, without the server waiting for 4 GiB; others are served
        while the offending connection is still open."""
        peak_before = self.daemon.memory_kib()
        for opt in (0x7777, w.OPT_LIST, w.OPT_INFO, w.OPT_GO,
                    w.OPT_STRUCTURED_REPLY, w.OPT_SET_META_CONTEXT,
                    w.OPT_LIST_META_CONTEXT, w.OPT_STARTTLS, w.OPT_EXPORT_NAME):
            for length in (0xFFFFFFFF, 0x80000000, 64 * MiB):
                with self.subTest(option=opt, length=length):
                    c = self.haggling()
                    c.try_send(w.pack_option(opt, b"\0" * 16, length=length))
                    outcome = None
                    try:
                        r = c.read_option_reply()
                        outcome = r
                    except w.Closed:
                        outcome = "closed"
                    except w.Timeout:
                        self.fail("no error reply and no close for option %d "
                                  "with length %#x" % (opt, length))
                    if outcome != "closed":
                        self.assertNotEqual(opt, w.OPT_EXPORT_NAME,
                                            "EXPORT_NAME has no reply: close")
                        self.assertEqual(outcome.option, opt)
                        self.assertTrue(outcome.is_error, repr(outcome))
                    self.assert_healthy()
                    c.close()
        peak_after = self.daemon.memory_kib()
        if peak_before is not None and peak_after is not None:
            self.assertLess(peak_after - peak_before, 64 * 1024,
                            "peak RSS grew by %d KiB on huge option lengths"
                            % (peak_after - peak_before))

    def test_option_cut_short_then_close(self):
        for n in (3, 12, 15):
            c = self.haggling()
            c.try_send(w.pack_option(w.OPT_INFO, w.info_payload("disk0"))[:n])
            c.close()
        c = self.haggling()
        c.try_send(w.pack_option(w.OPT_INFO, w.info_payload("disk0"), length=200))
        c.close()

    def test_unknown_options_then_haggling_continues(self):
        c = self.haggling()
        for opt, data in ((0x7777, b""), (0x7778, b"abc" * 33),
                          (4, b""),                     # withdrawn PEEK_EXPORT
                          (0xFFFFFFFF, b"x"),
                          (0x7779, random.Random(3).randbytes(MiB))):
            with self.subTest(option=opt, length=len(data)):
                replies = c.option(opt, data)
                self.assertEqual(len(replies), 1)
                self.assertEqual(replies[0].option, opt)
                self.assertEqual(replies[0].type, w.REP_ERR_UNSUP,
                                 w.rep_name(replies[0].type))
        self.assert_haggling_continues(c)
        t, _ = c.go("disk0")
        self.assertEqual(t, w.REP_ACK)
        err, data, _ = c.command(w.CMD_READ, 9, 0, 4096)
        self.assertEqual(data, KNOWN[:4096])

    def test_many_options_in_one_connection(self):
        c = self.haggling()
        for i in range(200):
            self.assertEqual(c.final(0x10000 + i), w.REP_ERR_UNSUP)
        self.assert_haggling_continues(c)

    def test_abort(self):
        c = self.haggling()
        c.send_option(w.OPT_ABORT)
        try:
            r = c.read_option_reply()
        except w.Closed:
            return                      # closing at once is allowed
        self.assertEqual((r.option, r.type), (w.OPT_ABORT, w.REP_ACK))
        self.assert_closed(c)

    def test_abort_with_data_is_still_abort(self):
        c = self.haggling()
        c.send_option(w.OPT_ABORT, b"ignored")
        try:
            r = c.read_option_reply()
        except w.Closed:
            return
        self.assertEqual(r.type, w.REP_ACK, "ABORT data SHOULD be ignored")
        self.assert_closed(c)

    def test_client_aborts_without_waiting(self):
        for _ in range(10):
            c = self.haggling()
            c.send_option(w.OPT_ABORT)
            c.close()


class ListAndInfo(ProtocolBase):

    def test_list(self):
        c = self.haggling()
        self.assertEqual(c.list_exports(), {"disk0": DESCRIPTION, "ro": ""})

    def test_list_with_data_is_invalid(self):
        c = self.haggling()
        self.assert_option_error(c, w.OPT_LIST, b"disk0")
        self.assert_haggling_continues(c)

    def test_info_replies(self):
        c = self.haggling()
        replies = c.option(w.OPT_INFO, w.info_payload(
            "disk0", [w.INFO_NAME, w.INFO_DESCRIPTION, w.INFO_BLOCK_SIZE]))
        self.assertEqual(replies[-1].type, w.REP_ACK)
        types = []
        for r in replies[:-1]:
            self.assertEqual(r.type, w.REP_INFO, repr(r))
            types.append(struct.unpack(">H", r.data[:2])[0])
        self.assertEqual(len(types), len(set(types)), "an info type sent twice")
        infos = w.RawClient.parse_infos(replies)
        exp = infos[w.INFO_EXPORT]
        self.assertEqual(len(exp), 12)
        _, size, flags = struct.unpack(">HQH", exp)
        self.assertEqual(size, DISK_SIZE)
        self.assertTrue(flags & w.TF_HAS_FLAGS)
        self.assertFalse(flags & w.TF_READ_ONLY)
        if w.INFO_NAME in infos:
            self.assertEqual(infos[w.INFO_NAME][2:], b"disk0")
        self.assertEqual(infos[w.INFO_DESCRIPTION][2:], DESCRIPTION.encode())
        if w.INFO_BLOCK_SIZE in infos:
            bs = infos[w.INFO_BLOCK_SIZE]
            self.assertEqual(len(bs), 14)
            _, mn, pref, mx = struct.unpack(">HIII", bs)
            self.assertTrue(mn & (mn - 1) == 0 and 1 <= mn <= 64 * KiB, mn)
            self.assertTrue(pref & (pref - 1) == 0 and pref >= max(mn, 512), pref)
            self.assertTrue(mx == 0xFFFFFFFF or mx % mn == 0, mx)
            self.assertGreaterEqual(mx, min(pref, DISK_SIZE))

    def test_info_read_only_export(self):
        c = self.haggling()
        t, infos = c.go("ro", opt=w.OPT_INFO)
        self.assertEqual(t, w.REP_ACK)
        _, size, flags = struct.unpack(">HQH", infos[w.INFO_EXPORT])
        self.assertTrue(flags & w.TF_READ_ONLY)

    def test_info_then_go_agree(self):
        c = self.haggling()
        c.negotiate_structured()
        t1, i1 = c.go("disk0", [w.INFO_BLOCK_SIZE], opt=w.OPT_INFO)
        t2, i2 = c.go("disk0", [w.INFO_BLOCK_SIZE], opt=w.OPT_GO)
        self.assertEqual((t1, t2), (w.REP_ACK, w.REP_ACK))
        self.assertEqual(i1.get(w.INFO_EXPORT), i2.get(w.INFO_EXPORT))
        self.assertEqual(i1.get(w.INFO_BLOCK_SIZE), i2.get(w.INFO_BLOCK_SIZE))
        err, data, _ = c.command(w.CMD_READ, 5, 0, 4096)
        self.assertEqual(data, KNOWN[:4096])

    def test_unknown_info_requests_ignored(self):
        c = self.haggling()
        t, infos = c.go("disk0", [0x7FFF, 0x1234], opt=w.OPT_INFO)
        self.assertEqual(t, w.REP_ACK)
        self.assertIn(w.INFO_EXPORT, infos)
        self.assertNotIn(0x7FFF, infos)

    def test_info_and_go_inconsistent_lengths(self):
        good = w.info_payload("disk0", [w.INFO_NAME])
        cases = {
            "name longer than option": w.info_payload("disk0", name_len=100),
            "name length 0xffffffff": w.info_payload("disk0", name_len=0xFFFFFFFF),
            "more info requests than sent": w.info_payload("disk0", [1], n_infos=3),
            "fewer info requests than sent": w.info_payload("disk0", [1, 2], n_infos=1),
            "odd trailing byte": good + b"x",
            "shorter than 6 bytes": b"\0\0\0",
            "empty": b"",
            "name only, no count": struct.pack(">I", 5) + b"disk0",
        }
        for opt in (w.OPT_INFO, w.OPT_GO):
            c = self.haggling()
            for what, data in cases.items():
                with self.subTest(option=opt, case=what):
                    replies = self.assert_option_error(c, opt, data)
                    for r in replies[:-1]:
                        self.assertNotEqual(r.type, w.REP_ACK)
            self.assert_haggling_continues(c)
            t, _ = c.go("disk0")
            self.assertEqual(t, w.REP_ACK, "a valid GO after the errors")

    def test_missing_export(self):
        c = self.haggling()
        for opt in (w.OPT_INFO, w.OPT_GO):
            replies = c.option(opt, w.info_payload("no-such-export"))
            self.assertEqual([r.type for r in replies], [w.REP_ERR_UNKNOWN],
                             "ERR_UNKNOWN, without INFO replies")
        self.assert_haggling_continues(c)

    def test_names_too_long_or_with_nul(self):
        for name in (b"d" * 4097, b"d" * 65536, b"disk0\0", b"disk0\0junk"):
            with self.subTest(name=name[:12], length=len(name)):
                # an error reply, or a hard disconnect for an overlong name
                c = self.haggling()
                if not c.try_send(w.pack_option(w.OPT_INFO, w.info_payload(name))):
                    continue
                try:
                    replies = c.option_replies(w.OPT_INFO)
                except w.Closed:
                    self.assertGreater(len(name), 4096, "closed on a NUL")
                    continue
                self.assertTrue(replies[-1].is_error,
                                "INFO %r... accepted" % name[:12])
                self.assert_haggling_continues(c)
        # exactly 4096 bytes is a legal (if unknown) name
        c = self.haggling()
        replies = c.option(w.OPT_INFO, w.info_payload(b"d" * 4096))
        self.assertEqual(replies[-1].type, w.REP_ERR_UNKNOWN)
        self.assert_haggling_continues(c)

    def test_export_name_long_closes(self):
        c = self.haggling()
        c.try_send(w.pack_option(w.OPT_EXPORT_NAME, b"d" * 70000))
        self.assert_closed(c, allow_data=False)


class Negotiation(ProtocolBase):

    def test_structured_reply_rules(self):
        c = self.haggling()
        self.assert_option_error(c, w.OPT_STRUCTURED_REPLY, b"x")
        self.assertEqual(c.final(w.OPT_STRUCTURED_REPLY), w.REP_ACK)
        # a second request: ACK again, or ERR_INVALID for the repeat
        self.assertIn(c.final(w.OPT_STRUCTURED_REPLY), (w.REP_ACK, w.REP_ERR_INVALID))
        c.structured = True
        t, _ = c.go("disk0")
        self.assertEqual(t, w.REP_ACK)
        err, data, chunks = c.command(w.CMD_READ, 1, 0, 4096)
        self.assertEqual(data, KNOWN[:4096])
        self.assertTrue(all(ch.magic == w.STRUCTURED_REPLY_MAGIC for ch in chunks))

    def test_set_meta_context_needs_structured_replies(self):
        c = self.haggling()
        self.assert_option_error(c, w.OPT_SET_META_CONTEXT,
                                 w.meta_payload("disk0", ["base:allocation"]))
        c.negotiate_structured()
        ctx, t = c.set_meta("disk0", ["base:allocation"])
        self.assertEqual(t, w.REP_ACK)
        self.assertEqual(list(ctx), ["base:allocation"])

    def test_list_meta_contexts(self):
        c = self.haggling()
        c.negotiate_structured()
        for queries, expect in (([], True), (["base:"], True),
                                (["base:allocation"], True),
                                (["x-nonesuch:foo"], False),
                                (["base:nonesuch"], False)):
            with self.subTest(queries=queries):
                replies = c.option(w.OPT_LIST_META_CONTEXT,
                                   w.meta_payload("disk0", queries))
                self.assertEqual(replies[-1].type, w.REP_ACK)
                names = [r.data[4:].decode() for r in replies[:-1]]
                for r in replies[:-1]:
                    self.assertEqual(r.type, w.REP_META_CONTEXT)
                self.assertEqual("base:allocation" in names, expect, names)

    def test_set_meta_context_selection(self):
        c = self.haggling()
        c.negotiate_structured()
        ctx, t = c.set_meta("disk0", ["x-nonesuch:foo", "base:allocation",
                                      "base:nonesuch"])
        self.assertEqual(t, w.REP_ACK)
        self.assertEqual(list(ctx), ["base:allocation"], "unknown contexts omitted")
        ctx, t = c.set_meta("disk0", ["base:"])
        self.assertEqual((ctx, t), ({}, w.REP_ACK), "'base:' selects nothing")
        ctx, t = c.set_meta("disk0", [])
        self.assertEqual((ctx, t), ({}, w.REP_ACK), "no query selects nothing")
        ctx, t = c.set_meta("no-such-export", ["base:allocation"])
        self.assertTrue(t & w.REP_ERR, "meta context of a missing export")

    def test_meta_context_inconsistent_lengths(self):
        c = self.haggling()
        c.negotiate_structured()
        good = w.meta_payload("disk0", ["base:allocation"])
        for what, data in (("query cut short", good[:-3]),
                           ("name too long", struct.pack(">I", 1000) + good[4:]),
                           ("query count too high",
                            good[:9] + struct.pack(">I", 5) + good[13:]),
                           ("short", b"\0\0")):
            for opt in (w.OPT_SET_META_CONTEXT, w.OPT_LIST_META_CONTEXT):
                with self.subTest(case=what, option=opt):
                    self.assert_option_error(c, opt, data)
        ctx, t = c.set_meta("disk0", ["base:allocation"])
        self.assertEqual(t, w.REP_ACK)

    @bh.qsd_deviates("qemu-storage-daemon 7.2 acks a meta context option with "
                     "bytes after its last query, leaves them unread and then "
                     "takes them for the next option header (Bad magic, disconnect)")
    def test_meta_context_trailing_bytes(self):
        good = w.meta_payload("disk0", ["base:allocation"])
        for opt in (w.OPT_SET_META_CONTEXT, w.OPT_LIST_META_CONTEXT):
            with self.subTest(option=opt):
                c = self.haggling()
                c.negotiate_structured()
                # the option data does not match its own counts: invalid, and
                # the server must still skip all of it to stay in step
                self.assert_option_error(c, opt, good + b"zz")
                self.assert_haggling_continues(c)

    def test_block_status_over_the_wire(self):
        c = self.transmission(meta=["base:allocation"])
        cid = c.contexts["base:allocation"]
        for flags in (0, w.CMD_FLAG_REQ_ONE):
            err, _, chunks = c.command(w.CMD_BLOCK_STATUS, 7, 0, 8 * MiB, flags)
            self.assertEqual(err, 0)
            bs = [ch for ch in chunks if ch.type == w.REPLY_TYPE_BLOCK_STATUS]
            self.assertEqual(len(bs), 1, "one BLOCK_STATUS chunk per context")
            p = bs[0].payload
            self.assertEqual((len(p) - 4) % 8, 0)
            self.assertGreater(len(p), 4)
            self.assertEqual(struct.unpack(">I", p[:4])[0], cid)
            ext = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
            if flags:
                self.assertEqual(len(ext), 1)
                self.assertLessEqual(ext[0][0], 8 * MiB)
            self.assertLess(sum(l for l, _ in ext[:-1]), 8 * MiB)
            self.assertTrue(all(l > 0 for l, _ in ext))
            self.assertEqual(ext[0][1] & 3, 0, "first MiB holds data")
            self.assertTrue(chunks[-1].done)

    def test_starttls_without_tls(self):
        c = self.haggling()
        t = c.final(w.OPT_STARTTLS)
        self.assertIn(t, (w.REP_ERR_POLICY, w.REP_ERR_UNSUP), w.rep_name(t))
        self.assertTrue(c.final(w.OPT_STARTTLS, b"data") & w.REP_ERR)
        self.assert_haggling_continues(c)
        t, _ = c.go("disk0")
        self.assertEqual(t, w.REP_ACK)

    def test_extended_headers(self):
        c = self.haggling()
        t = c.final(w.OPT_EXTENDED_HEADERS)
        if t == w.REP_ERR_UNSUP and bh.is_qsd():
            self.skipTest("qemu-storage-daemon 7.2 has no extended headers")
        self.assertEqual(t, w.REP_ACK, "berth negotiates extended headers")
        t, _ = c.go("disk0")
        self.assertEqual(t, w.REP_ACK)
        ext_req = 0x21E41C71
        ext_rep = 0x6E8A278C
        c.send(struct.pack(">IHHQQQ", ext_req, 0, w.CMD_READ, 0xE1, 0, 4096))
        data = bytearray(4096)
        for _ in range(100):
            magic, flags, ctype, cookie, off, length = struct.unpack(
                ">IHHQQQ", c.recv_exact(32))
            self.assertEqual((magic, cookie), (ext_rep, 0xE1))
            payload = c.recv_exact(length)
            if ctype == w.REPLY_TYPE_OFFSET_DATA:
                (o,) = struct.unpack(">Q", payload[:8])
                data[o:o + len(payload) - 8] = payload[8:]
            else:
                self.assertIn(ctype, (w.REPLY_TYPE_NONE, w.REPLY_TYPE_OFFSET_HOLE))
            if flags & w.REPLY_FLAG_DONE:
                break
        self.assertEqual(bytes(data), KNOWN[:4096])


class Transmission(ProtocolBase):

    def test_bad_request_magic_closes(self):
        for structured in (True, False):
            with self.subTest(structured=structured):
                c = self.transmission(structured=structured)
                c.try_send(w.pack_request(w.CMD_READ, 1, 0, 512, magic=0x25609514))
                self.assert_closed(c)

    def test_unknown_command(self):
        for structured in (True, False):
            c = self.transmission(structured=structured)
            for cmd in (9, 0x55, 0xFFFF):
                with self.subTest(structured=structured, cmd=cmd):
                    err, _, _ = c.command(cmd, 0x100 + cmd, 0, 512)
                    self.assertEqual(err, w.EINVAL)
                    err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
                    self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_flags_not_allowed(self):
        payload = b"\xab" * 512
        cases = [
            ("READ+NO_HOLE", w.CMD_READ, w.CMD_FLAG_NO_HOLE, b""),
            ("READ+REQ_ONE", w.CMD_READ, w.CMD_FLAG_REQ_ONE, b""),
            ("READ+FAST_ZERO", w.CMD_READ, w.CMD_FLAG_FAST_ZERO, b""),
            ("READ+unknown bit", w.CMD_READ, 1 << 9, b""),
            ("WRITE+REQ_ONE", w.CMD_WRITE, w.CMD_FLAG_REQ_ONE, payload),
            ("WRITE+FAST_ZERO", w.CMD_WRITE, w.CMD_FLAG_FAST_ZERO, payload),
            ("WRITE+DF", w.CMD_WRITE, w.CMD_FLAG_DF, payload),
            ("WRITE+unknown bit", w.CMD_WRITE, 1 << 15, payload),
            ("TRIM+DF", w.CMD_TRIM, w.CMD_FLAG_DF, b""),
            ("TRIM+NO_HOLE", w.CMD_TRIM, w.CMD_FLAG_NO_HOLE, b""),
            ("WRITE_ZEROES+DF", w.CMD_WRITE_ZEROES, w.CMD_FLAG_DF, b""),
            ("WRITE_ZEROES+REQ_ONE", w.CMD_WRITE_ZEROES, w.CMD_FLAG_REQ_ONE, b""),
            ("FLUSH+NO_HOLE", w.CMD_FLUSH, w.CMD_FLAG_NO_HOLE, b""),
            ("CACHE+REQ_ONE", w.CMD_CACHE, w.CMD_FLAG_REQ_ONE, b""),
            ("CACHE+unknown bit", w.CMD_CACHE, 1 << 8, b""),
        ]
        for structured in (True, False):
            c = self.transmission(structured=structured)
            extra = [] if structured else [("READ+DF without structured replies",
                                            w.CMD_READ, w.CMD_FLAG_DF, b"")]
            for what, cmd, flags, data in cases + extra:
                with self.subTest(structured=structured, case=what):
                    length = 0 if cmd == w.CMD_FLUSH else 512
                    err, _, chunks = c.command(cmd, 0x200, 0, length, flags, data)
                    self.assertEqual(err, w.EINVAL)
                    if structured and cmd == w.CMD_READ:
                        self.assertTrue(all(ch.magic == w.STRUCTURED_REPLY_MAGIC
                                            for ch in chunks),
                                        "READ errors must be structured")
                    # the payload was consumed, nothing was written
                    err, got, _ = c.command(w.CMD_READ, 3, 0, 512)
                    self.assertEqual((err, got), (0, KNOWN[:512]))

    def test_block_status_without_context(self):
        c = self.transmission()
        err, _, _ = c.command(w.CMD_BLOCK_STATUS, 1, 0, 4096)
        self.assertEqual(err, w.EINVAL)
        err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
        self.assertEqual(data, KNOWN[:512])

    def test_read_over_the_maximum(self):
        for structured in (True, False):
            with self.subTest(structured=structured):
                c = self.transmission(structured=structured)
                c.request(w.CMD_READ, 0x64, 0, OVER_MAXIMUM)
                try:
                    chunks = c.read_reply(0x64)     # no payload is expected
                except w.Closed:
                    continue                        # a hard disconnect is allowed
                self.assertIn(w.reply_error(chunks), (w.EINVAL, w.EOVERFLOW),
                              chunks)
                self.assertIsNone(w.reply_data(chunks, 0, OVER_MAXIMUM),
                                  "a refused read carries no data")
                err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
                self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_write_over_the_maximum(self):
        c = self.transmission()
        c.sock.settimeout(20)
        try:
            c.request(w.CMD_WRITE, 0x65, 0, OVER_MAXIMUM, payload=b"\xee" * OVER_MAXIMUM)
            chunks = c.read_reply(0x65)
        except w.Closed:
            pass                                    # disconnect: allowed
        else:
            self.assertEqual(w.reply_error(chunks), w.EINVAL)
            err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
            self.assertEqual((err, data), (0, KNOWN[:512]))
        # tearDown checks that the first 4 KiB were not overwritten

    def test_zero_length_requests(self):
        c = self.transmission()
        for cmd in (w.CMD_READ, w.CMD_WRITE, w.CMD_TRIM, w.CMD_WRITE_ZEROES,
                    w.CMD_CACHE):
            with self.subTest(cmd=cmd):
                c.command(cmd, 0x300 + cmd, MiB, 0)     # any answer, no close
        err, data, _ = c.command(w.CMD_READ, 2, 0, 512)
        self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_out_of_range(self):
        for structured in (True, False):
            c = self.transmission(structured=structured)
            cases = [
                (w.CMD_READ, DISK_SIZE - 512, 1024, b"", (w.EINVAL,)),
                (w.CMD_READ, DISK_SIZE, 1, b"", (w.EINVAL,)),
                (w.CMD_READ, 2**64 - 512, 1024, b"", (w.EINVAL,)),
                (w.CMD_WRITE, DISK_SIZE - 512, 1024, b"o" * 1024, (w.ENOSPC, w.EINVAL)),
                (w.CMD_WRITE, 2**64 - 512, 1024, b"o" * 1024, (w.ENOSPC, w.EINVAL)),
                (w.CMD_TRIM, DISK_SIZE, 512, b"", (w.EINVAL,)),
                (w.CMD_WRITE_ZEROES, DISK_SIZE - 512, 4096, b"", (w.ENOSPC, w.EINVAL)),
                (w.CMD_CACHE, DISK_SIZE, 4096, b"", (w.EINVAL,)),
            ]
            for cmd, off, length, data, errs in cases:
                with self.subTest(structured=structured, cmd=cmd, offset=off):
                    err, got, _ = c.command(cmd, 0x400, off, length, 0, data)
                    self.assertIn(err, errs)
                    self.assertIsNone(got if cmd == w.CMD_READ else None)
            err, data, _ = c.command(w.CMD_READ, 2, DISK_SIZE - 512, 512)
            self.assertEqual(err, 0)
            self.assertNotEqual(data, b"o" * 512)

    def test_read_only_export(self):
        c = self.transmission("ro")
        self.assertTrue(c.transmission_flags & w.TF_READ_ONLY)
        err, _, _ = c.command(w.CMD_WRITE, 1, 0, 512, payload=b"r" * 512)
        self.assertIn(err, (w.EPERM, w.EINVAL))     # EPERM: test_libnbd checks
        for cmd in (w.CMD_TRIM, w.CMD_WRITE_ZEROES):
            err, _, _ = c.command(cmd, 2, 0, 512)
            self.assertIn(err, (w.EPERM, w.EINVAL))
        err, data, _ = c.command(w.CMD_READ, 3, 0, 512)
        self.assertEqual((err, data), (0, KNOWN[:512]))

    def test_structured_read_chunks(self):
        c = self.transmission()
        # 4 MiB + 768 KiB .. 5 MiB + 256 KiB: data, then hole
        start, length = 4 * MiB + 768 * KiB, 512 * KiB
        err, data, chunks = c.command(w.CMD_READ, 0xC0FFEE, start, length)
        self.assertEqual(err, 0)
        self.assertEqual(data, KNOWN[768 * KiB:] + bytes(256 * KiB))
        self.assertTrue(chunks[-1].done)
        self.assertFalse(any(ch.done for ch in chunks[:-1]), "DONE before the end")
        for ch in chunks:
            if ch.type == w.REPLY_TYPE_NONE:
                self.assertEqual(ch.payload, b"")
            if ch.type == w.REPLY_TYPE_OFFSET_DATA:
                self.assertGreater(len(ch.payload), 8)
        spans = sorted(w.content_ranges(chunks), key=lambda s: s[1])
        pos = start
        for _, off, n in spans:
            self.assertEqual(off, pos, "gap or overlap at %d" % pos)
            self.assertGreater(n, 0)
            pos += n
        self.assertEqual(pos, start + length)
        # DF: exactly one content chunk, as data since both kinds are present
        err, data2, chunks = c.command(w.CMD_READ, 0xC0FFEF, start, 64 * KiB + 4096,
                                       w.CMD_FLAG_DF)
        spans = w.content_ranges(chunks)
        self.assertEqual(len(spans), 1)
        self.assertEqual(data2, data[:64 * KiB + 4096])

    def test_handles_are_echoed(self):
        c = self.transmission(structured=False)
        handles = [0, 1, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0xDEADBEEFCAFEF00D]
        for h in handles:
            err, data, chunks = c.command(w.CMD_READ, h, 0, 512)
            self.assertEqual(chunks[0].handle, h)
            self.assertEqual(data, KNOWN[:512])

    def test_64_pipelined_requests(self):
        for structured in (True, False):
            with self.subTest(structured=structured):
                c = self.transmission(structured=structured)
                rng = random.Random(64)
                reqs = {}
                buf = bytearray()
                for i in range(64):
                    h = rng.getrandbits(64)
                    off = (i % 16) * 64 * KiB
                    reqs[h] = off
                    buf += w.pack_request(w.CMD_READ, h, off, 64 * KiB)
                c.send(bytes(buf))
                got = {}
                lengths = {h: 64 * KiB for h in reqs}
                for _ in range(64 * 1000):
                    if len(got) == 64 and all(v[1] for v in got.values()):
                        break
                    ch = c.read_reply_chunk(lengths)
                    self.assertIn(ch.handle, reqs, "reply for an unknown handle")
                    data, done = got.get(ch.handle, (bytearray(64 * KiB), False))
                    if ch.magic == w.SIMPLE_REPLY_MAGIC:
                        data[:] = ch.payload
                    elif ch.type == w.REPLY_TYPE_OFFSET_DATA:
                        (o,) = struct.unpack(">Q", ch.payload[:8])
                        r = o - reqs[ch.handle]
                        data[r:r + len(ch.payload) - 8] = ch.payload[8:]
                    got[ch.handle] = (data, ch.done)
                for h, off in reqs.items():
                    self.assertEqual(bytes(got[h][0]), KNOWN[off:off + 64 * KiB])

    @bh.qsd_deviates("qemu-storage-daemon 7.2 shuts the socket on NBD_CMD_DISC "
                     "while replies are still being sent", racy=True)
    def test_disc_with_requests_in_flight(self):
        for structured in (False, True):
            with self.subTest(structured=structured):
                c = self.transmission(structured=structured)
                c.sock.settimeout(10)
                buf = bytearray()
                lengths = {}
                for i in range(16):
                    buf += w.pack_request(w.CMD_READ, 100 + i, (i % 4) * MiB, MiB)
                    lengths[100 + i] = MiB
                data = b"\x77" * 4096
                buf += w.pack_request(w.CMD_WRITE, 200, 2 * MiB, 4096) + data
                buf += w.pack_request(w.CMD_DISC, 300, 0, 0)
                c.send(bytes(buf))
                done = set()
                try:
                    for _ in range(100000):
                        ch = c.read_reply_chunk(lengths)
                        self.assertNotEqual(ch.handle, 300, "DISC has no reply")
                        if ch.done:
                            done.add(ch.handle)
                except w.Closed:
                    pass
                self.assertEqual(done, set(lengths) | {200},
                                 "replies lost after NBD_CMD_DISC")
                with w.RawClient(self.sock) as v:
                    v.connect_export("disk0")
                    err, got, _ = v.command(w.CMD_READ, 1, 2 * MiB, 4096)
                    self.assertEqual(got, data, "acknowledged write lost")
                    v.disconnect()

    def test_disc_alone(self):
        c = self.transmission()
        c.try_send(w.pack_request(w.CMD_DISC, 1, 0, 0))
        self.assert_closed(c, allow_data=False)

    def test_write_with_cut_off_payload(self):
        for cut in (0, 1, 100000):
            c = self.transmission()
            c.try_send(w.pack_request(w.CMD_WRITE, 1, 0, MiB) + b"\x99" * cut)
            c.close()
        # half a header, too
        c = self.transmission()
        c.try_send(w.pack_request(w.CMD_READ, 1, 0, 512)[:13])
        c.close()

    def test_garbage_after_handshake(self):
        for seed in range(4):
            with self.subTest(seed=seed):
                c = self.transmission(structured=bool(seed % 2))
                c.try_send(random.Random(seed).randbytes(64 * KiB))
                self.assert_closed(c)

    def test_client_vanishes_mid_reply(self):
        for _ in range(3):
            c = self.transmission()
            for i in range(8):
                c.request(w.CMD_READ, i, 0, 8 * MiB)
            c.recv_exact(100)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))   # RST, not FIN
            c.close()

    def test_connection_churn(self):
        for i in range(50):
            with w.RawClient(self.sock) as c:
                if i % 2:
                    c.connect_export("disk0")


class Crowd(ProtocolBase):

    def test_stalled_clients_do_not_block_others(self):
        stalled = []
        for i in range(30):
            c = self.client()
            if i % 3 == 1:
                c.start()
                c.send(w.pack_option(w.OPT_GO, b"")[:7])    # half an option header
            elif i % 3 == 2:
                c.connect_export("disk0")
                c.send(w.pack_request(w.CMD_WRITE, 1, 0, 4096) + b"x" * 100)
            stalled.append(c)
        start = time.monotonic()
        self.assert_healthy()
        self.assertLess(time.monotonic() - start, 5.0, "service slowed by stalled peers")
        for c in stalled:
            c.close()


class HandshakeFlood(ProtocolBase):
    """A peer that sends options and never reads the replies must cost the
    server a bounded amount of memory: the server stops reading while its
    replies are not taken, and every reply still arrives once they are."""

    OPT_UNKNOWN = 0x1234
    OPTION = w.pack_option(OPT_UNKNOWN)

    def flood(self, c, budget=64 * MiB, seconds=3.0):
        """Send unknown options without reading until the server stops
        taking them; returns the number of bytes it took."""
        c.sock.setblocking(False)
        block = self.OPTION * 4096
        sent, deadline = 0, time.monotonic() + seconds
        progress = time.monotonic()
        while sent < budget and time.monotonic() < deadline:
            try:
                sent += c.sock.send(block[sent % len(block):])
                progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - progress > 0.5:
                    break           # the server stopped taking them
                time.sleep(0.01)
        c.sock.setblocking(True)
        c.sock.settimeout(10)
        return sent

    def test_unread_replies_are_bounded(self):
        before = self.daemon.memory_kib("VmRSS")
        c = self.haggling()
        sent = self.flood(c)
        # What the two socket buffers and one input buffer hold, not 64 MiB.
        self.assertLess(sent, 16 * MiB, "server kept reading options nobody reads replies of")
        grown = self.daemon.memory_kib("VmRSS") - before
        self.assertLess(grown, 16 * 1024, "RSS grew by %d KiB" % grown)
        # Nothing was lost: finish the last option (while we read, as the
        # server waits for us), and each one is answered, in order.
        rest = self.OPTION[sent % len(self.OPTION):] if sent % len(self.OPTION) else b""
        writer = threading.Thread(
            target=c.try_send, args=(rest + w.pack_option(w.OPT_ABORT),), daemon=True)
        writer.start()
        options = -(-sent // len(self.OPTION))
        for i in range(options):
            r = c.read_option_reply()
            self.assertEqual((r.option, r.type), (self.OPT_UNKNOWN, w.REP_ERR_UNSUP),
                             "reply %d of %d" % (i, options))
        r = c.read_option_reply()
        self.assertEqual((r.option, r.type), (w.OPT_ABORT, w.REP_ACK))
        writer.join(10)

    @unittest.skipIf(bh.SANITIZED, "ASan's quarantine (valgrind's too) keeps freed memory resident")
    def test_memory_given_back(self):
        before = self.daemon.memory_kib("VmRSS")
        clients = [self.haggling() for _ in range(8)]
        for c in clients:
            self.flood(c, seconds=1.0)
        for c in clients:
            c.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            grown = self.daemon.memory_kib("VmRSS") - before
            if grown < 4 * 1024:
                break
            time.sleep(0.1)
        self.assertLess(grown, 4 * 1024, "RSS still %d KiB above its start" % grown)


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
