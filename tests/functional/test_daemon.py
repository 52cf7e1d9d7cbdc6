#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon as a program: command line, errors, signals, pid file,
daemonizing, listeners (unix and TCP), connection limits and shutdown."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import nbd_wire as w
from berth_harness import MiB, GiB

try:
    import nbd
except ImportError:
    nbd = None

needs_libnbd = unittest.skipIf(nbd is None, "python3-libnbd is not installed")


def project_version():
    """The version meson.build gives the project."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "meson.build")
    with open(src) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def stderr_lines(text):
    """The lines of an error output; a final newline makes no extra line."""
    return text.splitlines()


class CommandLine(bh.DaemonTestCase):

    def run_once(self, *args):
        return bh.run_daemon_once(list(args), self.tmpdir)

    def test_help(self):
        for opt in ("--help", "-h"):
            with self.subTest(opt):
                rc, out, err = self.run_once(opt)
                self.assertEqual(rc, 0, err)
                for word in ("--blockdev", "--nbd-server", "--export", "--pidfile"):
                    self.assertIn(word, out, "%s does not mention %s" % (opt, word))
                self.assertEqual(err, "")

    @bh.berth_only
    def test_help_is_current(self):
        """--help names what berthd has today, and only that."""
        rc, out, err = self.run_once("--help")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("once TLS lands", out)
        # the implied keys are documented
        for form in ("--blockdev [driver=]", "--export [type=]", "--monitor [chardev=]",
                     "--chardev socket,"):
            self.assertIn(form, out)
        # the object types: those --object help lists, each one in --help
        rc, types_out, err = self.run_once("--object", "help")
        self.assertEqual(rc, 0, err)
        types = set(types_out.split()[4:])     # after "Object types for --object:"
        self.assertEqual(types, {"iothread", "tls-creds-x509", "tls-creds-psk", "secret",
                                 "authz-simple", "authz-list", "authz-listfile"})
        documented = set(re.findall(r"^  --object ([a-z][a-z0-9-]*),", out, re.M))
        self.assertEqual(documented, types)
        # the drivers: the table lists exactly those --blockdev accepts
        # (the table's rows are a driver name, two spaces, its options)
        table = set(re.findall(r"^ {27}([a-z][a-z0-9_-]*)  ", out, re.M))
        for drv in ("file", "null-co", "memory", "nbd", "raw", "qcow2", "host_device",
                    "null-aio", "blkdebug", "throttle"):
            # an unknown member makes even a known driver fail, after the
            # driver itself was checked
            rc, _, err = self.run_once("--blockdev", "driver=%s,node-name=x,probe=1" % drv)
            self.assertEqual(rc, 1, err)
            known = "does not accept value" not in err and "not supported" not in err
            with self.subTest(drv):
                self.assertEqual(drv in table, known, err)
        # every long option named is one getopt knows
        named = set(re.findall(r"^  (?:-[a-zA-Z], )?(--[a-z][a-z-]*)", out, re.M))
        self.assertEqual(named, {"--help", "--version", "--blockdev", "--chardev",
                                 "--monitor", "--nbd-server", "--export", "--object",
                                 "--pidfile", "--daemonize", "--trace", "--verbose"})
        for opt in named - {"--help", "--version", "--daemonize", "--verbose"}:
            rc, _, err = self.run_once(opt)
            with self.subTest(opt):
                self.assertEqual(rc, 1)
                self.assertIn("requires an argument", err)

    def test_version(self):
        for opt in ("--version", "-V"):
            with self.subTest(opt):
                rc, out, err = self.run_once(opt)
                self.assertEqual(rc, 0, err)
                first = out.splitlines()[0] if out else ""
                self.assertRegex(first, r"\d+\.\d+\.\d+", "no version number")
                if not bh.is_qsd():
                    self.assertRegex(first, r"^berthd version %s$" % re.escape(project_version()))
                    self.assertIn("qemu-storage-daemon 7.2", out)
                    # berthd has a subset of qsd's options: it follows qsd,
                    # it does not claim to be a drop-in replacement
                    self.assertNotIn("compatible", out)

    def test_bogus_driver(self):
        rc, out, err = self.run_once("--blockdev", "driver=bogus,node-name=x")
        self.assertEqual(rc, 1)
        lines = stderr_lines(err)
        self.assertEqual(len(lines), 1, "exactly one line on stderr:\n" + err)
        self.assertIn("bogus", lines[0])
        self.assertIn("driver", lines[0])
        self.assertEqual(out, "")

    def test_bad_options(self):
        img = bh.make_sparse_file(self.path("f.img"), MiB)
        sock = self.path("s")
        server = ["--nbd-server", "addr.type=unix,addr.path=" + sock]
        null = ["--blockdev", "driver=null-co,node-name=n0"]
        cases = [
            ("unknown option", ["--bogus-option"], ["bogus-option"]),
            ("missing argument", ["--blockdev"], ["blockdev"]),
            ("missing filename", ["--blockdev", "driver=file,node-name=f0"],
             ["blockdev", "filename"]),
            ("file does not exist",
             ["--blockdev", "driver=file,node-name=f0,filename=/nonexistent/x"],
             ["blockdev", "/nonexistent/x"]),
            ("bad size", ["--blockdev", "driver=null-co,node-name=n0,size=abc"],
             ["blockdev", "size"]),
            ("duplicate node-name", null + null, ["blockdev", "n0"]),
            ("unknown export node", server + ["--export",
                                               "type=nbd,id=e0,node-name=nope,name=x"],
             ["export", "nope"]),
            ("export before server", null + ["--export", "type=nbd,id=e0,node-name=n0"],
             ["export"]),
            ("unknown export parameter",
             null + server + ["--export", "type=nbd,id=e0,node-name=n0,bogus=1"],
             ["export", "bogus"]),
            ("unknown export type",
             null + server + ["--export", "type=bogus,id=e0,node-name=n0"],
             ["export", "bogus"]),
            ("duplicate export id",
             null + server + ["--export", "type=nbd,id=e0,node-name=n0"] * 2,
             ["export", "e0"]),
            ("server without path", ["--nbd-server", "addr.type=unix"],
             ["nbd-server", "path"]),
            ("bad max-connections",
             ["--nbd-server", "addr.type=unix,addr.path=%s,max-connections=abc" % sock],
             ["nbd-server", "max-connections"]),
            ("second server", null + server + server, ["nbd-server"]),
            ("socket folder missing",
             ["--nbd-server", "addr.type=unix,addr.path=/nonexistent/dir/s"],
             ["nbd-server", "/nonexistent/dir/s"]),
            ("pid file folder missing", ["--pidfile", "/nonexistent/dir/pid"],
             ["pid", "/nonexistent/dir/pid"]),
            ("read-only node exported writable",
             ["--blockdev", "driver=file,node-name=f0,filename=%s,read-only=on" % img]
             + server + ["--export", "type=nbd,id=e0,node-name=f0,writable=on"],
             ["export"]),
        ]
        self.assert_one_line_errors(cases, sock, quiet_stdout=True)

    def assert_one_line_errors(self, cases, sock, quiet_stdout=False):
        """Each (what, args, words) case exits 1 with one stderr line that
        names every word; the socket it may have left is removed."""
        for what, args, words in cases:
            with self.subTest(what):
                rc, out, err = self.run_once(*args)
                self.assertEqual(rc, 1, "exit status for %s\n%s" % (what, err))
                lines = stderr_lines(err)
                self.assertEqual(len(lines), 1, "want one stderr line:\n" + err)
                for word in words:
                    self.assertIn(word.lower(), lines[0].lower())
                if quiet_stdout:
                    self.assertEqual(out, "")
                if os.path.exists(sock):
                    os.unlink(sock)

    @bh.berth_only
    def test_export_options_berth_refuses(self):
        """Options qemu-storage-daemon accepts (or, for multi-conn, berth's
        own) that berth cannot honour as asked: one line, and no start."""
        null = ["--blockdev", "driver=null-co,node-name=n0"]
        sock = self.path("s")
        server = ["--nbd-server", "addr.type=unix,addr.path=" + sock]
        cases = [
            ("multi-conn with one connection",
             null + server[:1] + [server[1] + ",max-connections=1"]
             + ["--export", "type=nbd,id=e0,node-name=n0,multi-conn=on"],
             ["multi-conn", "max-connections=1"]),
            ("bad multi-conn",
             null + server + ["--export", "type=nbd,id=e0,node-name=n0,multi-conn=maybe"],
             ["multi-conn", "maybe"]),
        ]
        inet = "addr.type=inet,addr.host=127.0.0.1,addr.port=%d" % bh.free_tcp_port()
        for opt in ("to=65000", "ipv4=on", "ipv6=off", "numeric=on", "keep-alive=on"):
            cases.append(("--nbd-server " + opt, ["--nbd-server", inet + ",addr." + opt],
                          ["addr." + opt.split("=")[0], "not supported"]))
        chardev = "socket,id=m0,path=%s,server=on" % self.path("qmp")
        for opt in ("wait=on", "nodelay=on", "ipv4=on", "to=9"):
            key = opt if opt in ("wait=on", "nodelay=on") else opt.split("=")[0]
            cases.append(("--chardev " + opt, ["--chardev", chardev + "," + opt,
                                                "--monitor", "m0"], [key, "not supported"]))
        self.assert_one_line_errors(cases, sock)

    def test_allocation_depth_accepted(self):
        for value in ("off", "on"):
            with self.subTest(value):
                sock = self.path("nbd-%s.sock" % value)
                d = self.start_daemon(bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                                      + ["--export", "type=nbd,id=e0,node-name=n0,name=null,"
                                         "allocation-depth=" + value], wait_for=sock)
                w.connect_when_served(sock, "null").disconnect()
                d.stop()

    def test_iothread_option(self):
        """iothread= must name an iothread; exports on it serve their
        clients without a word of warning (tests/functional/test_iothread.py
        covers the data path)."""
        sock = self.path("nbd.sock")
        rc, _, err = self.run_once(*(bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                                     + ["--export", "type=nbd,id=e0,node-name=n0,"
                                        "iothread=io0"]))
        self.assertEqual(rc, 1)
        self.assertIn('iothread "io0" not found', err)
        if os.path.exists(sock):
            os.unlink(sock)
        d = self.start_daemon(["--object", "iothread,id=io0"] + bh.blockdev_null("n0", MiB)
                              + bh.nbd_server_unix(sock)
                              + ["--export", "type=nbd,id=e0,node-name=n0,name=a,iothread=io0",
                                 "--export", "type=nbd,id=e1,node-name=n0,name=b,iothread=io0,"
                                 "fixed-iothread=on"],
                              wait_for=sock)
        for name in ("a", "b"):
            w.connect_when_served(sock, name).disconnect()
        if not bh.is_qsd():
            self.assertNotIn("WARNING", d.stderr())


class ConnectionLimits(bh.DaemonTestCase):
    """max-connections: qemu-storage-daemon 7.2 serves at most 100 clients
    at a time when none is given, on --nbd-server and nbd-server-start alike;
    the others wait, connected but not greeted, until a slot is free."""

    QUIET = 0.5

    def assert_greets_exactly(self, sock, limit):
        clients = []
        try:
            for i in range(limit):
                c = w.RawClient(sock, timeout=5)
                clients.append(c)
                # a readiness probe may hold a slot for a moment: wait for it
                c.read_greeting()
            extra = w.RawClient(sock, timeout=5)
            clients.append(extra)
            self.assertTrue(extra.is_silent(self.QUIET),
                            "client %d was greeted with a limit of %d" % (limit + 1, limit))
            clients[0].close()
            extra.read_greeting()   # served once a slot is free
        finally:
            for c in clients:
                c.close()

    def test_nbd_server_option_default_is_100(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "n0", "null"), wait_for=sock)
        self.assert_greets_exactly(sock, 100)

    def test_nbd_server_start_default_is_100(self):
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        d = self.start_daemon(bh.blockdev_null("n0", MiB) + bh.qmp_monitor(qmp),
                              wait_for=qmp)
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("nbd-server-start",
                               addr={"type": "unix", "data": {"path": sock}}),
                         {"return": {}})
        d.wait_unix(sock)
        self.assert_greets_exactly(sock, 100)

    def test_zero_is_no_limit(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", MiB)
                          + bh.nbd_server_unix(sock, max_connections=0)
                          + bh.nbd_export("e0", "n0", "null"), wait_for=sock)
        clients = []
        try:
            for _ in range(101):
                c = w.RawClient(sock, timeout=5)
                clients.append(c)
                c.read_greeting()
        finally:
            for c in clients:
                c.close()


class HandshakeLimit(bh.DaemonTestCase):
    """A client must finish its handshake within handshake-max-seconds
    (QEMU 10.0's name; 10 s by default, as in QEMU since the fix for
    CVE-2024-7409; 0 for no limit), so that silent peers cannot hold the
    server's connection slots; a client that got through is unaffected."""

    def silent_peer(self, sock):
        """Connected and greeted, then says nothing."""
        c = w.RawClient(sock, timeout=30)
        self.addCleanup(c.close)
        c.read_greeting()
        return c, time.monotonic()

    def assert_dropped_after(self, peer, since, limit, slack=2.5):
        peer.wait_closed(timeout=limit + slack + 5)
        took = time.monotonic() - since
        self.assertGreater(took, limit - 0.5, "dropped before the limit")
        self.assertLess(took, limit + slack, "dropped long after the limit")

    def test_default_is_10_seconds(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "n0", "null"), wait_for=sock)
        unlimited = None
        if not bh.is_qsd():
            # the same wait against a server without a limit
            free = self.path("free.sock")
            self.start_daemon(bh.blockdev_null("n0", MiB)
                              + ["--nbd-server", "addr.type=unix,addr.path=%s,"
                                 "handshake-max-seconds=0" % free]
                              + bh.nbd_export("e0", "n0", "null"), wait_for=free, name="free")
            unlimited, _ = self.silent_peer(free)
        peer, since = self.silent_peer(sock)
        self.assert_dropped_after(peer, since, 10)
        if unlimited:
            self.assertTrue(unlimited.is_silent(0.5), "dropped with no limit")
            unlimited.send(struct.pack(">I", w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES))
            t, _ = unlimited.go("null")
            self.assertEqual(t, w.REP_ACK)

    @bh.berth_only
    def test_short_limit(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", MiB)
                          + ["--nbd-server", "addr.type=unix,addr.path=%s,max-connections=3,"
                             "handshake-max-seconds=1" % sock]
                          + bh.nbd_export("e0", "n0", "null"), wait_for=sock)
        normal = w.connect_when_served(sock, "null")
        self.addCleanup(normal.close)
        silent, since = self.silent_peer(sock)
        # one that trickles an option: the limit is on the whole handshake
        slow = w.RawClient(sock, timeout=30)
        self.addCleanup(slow.close)
        slow.start()
        slow_since = time.monotonic()
        slow.send(w.pack_option(w.OPT_GO, w.info_payload("null"))[:10])
        # both slots held by stalled peers: a fourth client waits
        waiting = w.RawClient(sock, timeout=30)
        self.addCleanup(waiting.close)
        self.assert_dropped_after(silent, since, 1)
        self.assert_dropped_after(slow, slow_since, 1)
        # their slots are free again: the waiting client is served
        waiting.read_greeting()
        # the client that finished its handshake long ago is still served
        time.sleep(0.5)
        err, data, _ = normal.command(w.CMD_READ, 1, 0, 4096)
        self.assertEqual((err, data), (0, bytes(4096)))

    @bh.berth_only
    def test_nbd_server_start(self):
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        d = self.start_daemon(bh.blockdev_null("n0", MiB) + bh.qmp_monitor(qmp),
                              wait_for=qmp)
        q = self.connect_qmp(qmp)
        addr = {"type": "unix", "data": {"path": sock}}
        for bad in (-1, 1 << 32):
            r = q.cmd("nbd-server-start", addr=addr, **{"handshake-max-seconds": bad})
            self.assertEqual(r["error"]["desc"],
                             "Parameter 'handshake-max-seconds' expects uint32_t")
        self.assertEqual(q.cmd("nbd-server-start", addr=addr,
                               **{"handshake-max-seconds": 1}), {"return": {}})
        d.wait_unix(sock)
        peer, since = self.silent_peer(sock)
        self.assert_dropped_after(peer, since, 1)

    @bh.berth_only
    def test_bad_values(self):
        sock = self.path("s")
        server = "addr.type=unix,addr.path=%s,handshake-max-seconds=" % sock
        for value in ("abc", "-1", "4294967296"):
            with self.subTest(value):
                rc, out, err = bh.run_daemon_once(["--nbd-server", server + value],
                                                  self.tmpdir)
                self.assertEqual(rc, 1, err)
                lines = stderr_lines(err)
                self.assertEqual(len(lines), 1, err)
                self.assertIn("handshake-max-seconds", lines[0])
                if os.path.exists(sock):
                    os.unlink(sock)


class ImpliedKeys(bh.DaemonTestCase):
    """qemu-storage-daemon's implied keys: the first element of --blockdev,
    --object, --export and --monitor may be a bare value for driver,
    qom-type, type and chardev (--chardev's is backend; --nbd-server has
    none)."""

    def run_once(self, *args):
        return bh.run_daemon_once(list(args), self.tmpdir)

    def assert_one_line_error(self, args, words):
        rc, out, err = self.run_once(*args)
        self.assertEqual(rc, 1, "exit status\n" + err)
        lines = stderr_lines(err)
        self.assertEqual(len(lines), 1, "want one stderr line:\n" + err)
        for word in words:
            self.assertIn(word.lower(), lines[0].lower())
        self.assertEqual(out, "")

    def test_implied_keys_serve(self):
        size = 4 * MiB
        img = bh.make_pattern_file(self.path("d.img"), size, seed=6)
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        d = self.start_daemon([
            "--object", "iothread,id=io0",
            "--blockdev", "file,node-name=f0,filename=" + bh.opt_escape(img),
            "--nbd-server", "addr.type=unix,addr.path=" + bh.opt_escape(sock),
            "--export", "nbd,id=e0,node-name=f0,name=disk",
            "--chardev", "socket,id=c0,path=%s,server=on,wait=off" % bh.opt_escape(qmp),
            "--monitor", "c0",
        ], wait_for=sock)
        d.wait_unix(qmp)
        with open(img, "rb") as f:
            f.seek(MiB)
            want = f.read(64 * 1024)
        c = w.RawClient(sock).connect_export("disk")
        error, data, _ = c.command(w.CMD_READ, 1, MiB, len(want))
        self.assertEqual(error, 0)
        self.assertEqual(data, want)
        c.disconnect()
        q = self.connect_qmp(qmp, timeout=5)
        nodes = q.cmd("query-named-block-nodes")["return"]
        self.assertIn(("f0", "file"), [(n["node-name"], n["drv"]) for n in nodes])
        exports = q.cmd("query-block-exports")["return"]
        self.assertEqual([(e["id"], e["type"], e["node-name"]) for e in exports],
                         [("e0", "nbd", "f0")])
        # the iothread exists under its id (deleting it is the portable probe)
        self.assertEqual(q.cmd("object-del", id="io0"), {"return": {}})

    def test_explicit_keys_in_any_order(self):
        """With the key written out, the first element is an ordinary one."""
        img = bh.make_sparse_file(self.path("d.img"), MiB)
        sock = self.path("nbd.sock")
        self.start_daemon([
            "--blockdev", "node-name=f0,driver=file,filename=" + bh.opt_escape(img),
            "--nbd-server", "addr.type=unix,addr.path=" + bh.opt_escape(sock),
            "--export", "id=e0,node-name=f0,type=nbd",
        ], wait_for=sock)
        c = w.RawClient(sock).connect_export("f0")
        self.assertEqual(c.command(w.CMD_READ, 1, 0, 512)[:2], (0, bytes(512)))
        c.disconnect()

    def test_implied_key_errors(self):
        img = bh.make_sparse_file(self.path("f.img"), MiB)
        sock, qmp = self.path("s"), self.path("q")
        server = ["--nbd-server", "addr.type=unix,addr.path=" + sock]
        null = ["--blockdev", "null-co,node-name=n0"]
        chardev = ["--chardev", "socket,id=c0,path=%s,server=on,wait=off" % qmp]
        cases = [
            ("bare value after the first",
             ["--blockdev", "driver=file,file,node-name=f0,filename=" + img],
             ["blockdev", "Expected '=' after parameter 'file'"]),
            ("bare value not first",
             ["--blockdev", "node-name=f0,file,filename=" + img],
             ["blockdev", "Expected '=' after parameter 'file'"]),
            ("empty first element", ["--blockdev", ",node-name=f0"],
             ["blockdev", "Invalid parameter ''"]),
            ("comma in a bare value",
             ["--blockdev", "fi,,le,node-name=f0,filename=" + img],
             ["blockdev", "Invalid parameter ''"]),
            ("unknown driver", ["--blockdev", "bogus,node-name=x"],
             ["blockdev", "driver", "bogus"]),
            ("implied driver, no filename", ["--blockdev", "file,node-name=f0"],
             ["blockdev", "filename"]),
            ("unknown object type", ["--object", "bogus,id=b0"],
             ["object", "qom-type", "bogus"]),
            ("object without id", ["--object", "iothread"], ["object", "id"]),
            ("unknown export type",
             null + server + ["--export", "bogus,id=e0,node-name=n0"],
             ["export", "type", "bogus"]),
            ("bare export type not first",
             null + server + ["--export", "id=e0,nbd,node-name=n0"],
             ["export", "Expected '=' after parameter 'nbd'"]),
            ("unknown monitor chardev", ["--monitor", "nope"], ["monitor", "nope"]),
            ("bare monitor chardev not first",
             chardev + ["--monitor", "mode=control,c0"],
             ["monitor", "Expected '=' after parameter 'c0'"]),
            ("--nbd-server has no implied key",
             ["--nbd-server", "unix,addr.path=" + sock],
             ["nbd-server", "Expected '=' after parameter 'unix'"]),
            ("help for --blockdev", ["--blockdev", "help"],
             ["blockdev", "Help is not available for this option"]),
            ("help for --export", null + server + ["--export", "nbd,help"],
             ["export", "Help is not available for this option"]),
            ("help for --monitor", ["--monitor", "?"],
             ["monitor", "Help is not available for this option"]),
            ("help for --nbd-server", ["--nbd-server", "help"],
             ["nbd-server", "Help is not available for this option"]),
        ]
        for what, args, words in cases:
            with self.subTest(what):
                self.assert_one_line_error(args, words)
                for leftover in (sock, qmp):
                    if os.path.exists(leftover):
                        os.unlink(leftover)

    def test_object_help(self):
        for arg in ("help", "?"):
            with self.subTest(arg):
                rc, out, err = self.run_once("--object", arg)
                self.assertEqual(rc, 0, err)
                listed = out.split()
                for name in ("iothread", "tls-creds-x509", "tls-creds-psk", "authz-simple"):
                    self.assertIn(name, listed)
                self.assertEqual(err, "")

    @bh.berth_only
    def test_help_requests_berth_cannot_answer(self):
        """qemu-storage-daemon lists a type's properties and the chardev
        backends; berthd has no such lists and says so."""
        self.assert_one_line_error(["--object", "iothread,help"],
                                   ["object", "--object help"])
        self.assert_one_line_error(["--chardev", "help"],
                                   ["chardev", "Help is not available", "socket"])
        self.assert_one_line_error(["--chardev", "socket,id=c0,help"],
                                   ["chardev", "Help is not available"])


class Signals(bh.DaemonTestCase):

    def basic_args(self, sock, size=16 * MiB):
        img = bh.make_sparse_file(self.path("disk.img"), size)
        return (bh.blockdev_file("disk0", img) + bh.nbd_server_unix(sock)
                + bh.nbd_export("e0", "disk0", "disk0", writable=True))

    def test_sigterm_idle(self):
        sock = self.path("nbd.sock")
        d = self.start_daemon(self.basic_args(sock), wait_for=sock)
        d.stop(signal.SIGTERM)

    def test_sigint_idle(self):
        sock = self.path("nbd.sock")
        d = self.start_daemon(self.basic_args(sock), wait_for=sock)
        d.stop(signal.SIGINT)

    @needs_libnbd
    def test_sigterm_with_clients(self):
        sock = self.path("nbd.sock")
        d = self.start_daemon(self.basic_args(sock), wait_for=sock)
        handles = [bh.nbd_connect(nbd, sock, "disk0") for _ in range(8)]
        for i, h in enumerate(handles):
            h.pwrite(bytes([i]) * 4096, i * 4096)
        raw_haggling = w.RawClient(sock).start()
        raw_stalled = w.RawClient(sock).connect_export("disk0")
        raw_stalled.request(w.CMD_WRITE, 1, MiB, 4096, payload=b"x" * 10)
        start = time.monotonic()
        d.stop(signal.SIGTERM)
        self.assertLess(time.monotonic() - start, bh.STOP_TIMEOUT)
        for c in (raw_haggling, raw_stalled):
            try:
                c.wait_closed(5)
            except w.Timeout:
                self.fail("a client connection outlived the daemon")
            c.close()
        with self.assertRaises(nbd.Error):
            handles[0].pread(4096, 0)

    @needs_libnbd
    def test_written_data_survives_shutdown(self):
        sock = self.path("nbd.sock")
        d = self.start_daemon(self.basic_args(sock), wait_for=sock)
        data = os.urandom(MiB)
        h = bh.nbd_connect(nbd, sock, "disk0")
        h.pwrite(data, 3 * MiB)          # no flush
        h.shutdown()
        d.stop(signal.SIGTERM)
        with open(self.path("disk.img"), "rb") as f:
            f.seek(3 * MiB)
            self.assertEqual(f.read(MiB), data)

    @needs_libnbd
    def test_sigterm_during_io(self):
        sock = self.path("nbd.sock")
        d = self.start_daemon(self.basic_args(sock, 64 * MiB), wait_for=sock)
        h = bh.nbd_connect(nbd, sock, "disk0")
        buf = nbd.Buffer.from_bytearray(bytearray(os.urandom(MiB)))
        for i in range(64):
            h.aio_pwrite(buf, i * MiB)
        d.stop(signal.SIGTERM)


class PidFile(bh.DaemonTestCase):

    def args(self, sock):
        return (bh.blockdev_null("n0", 16 * MiB) + bh.nbd_server_unix(sock)
                + bh.nbd_export("e0", "n0", "null"))

    def read_pid(self, path):
        with open(path) as f:
            text = f.read()
        self.assertRegex(text, r"^\d+\n?$", "pid file content %r" % text)
        return int(text)

    def test_pidfile(self):
        sock, pidfile = self.path("nbd.sock"), self.path("berthd.pid")
        d = self.start_daemon(self.args(sock) + ["--pidfile", pidfile], wait_for=sock)
        self.assertEqual(self.read_pid(pidfile), d.pid)
        d.stop()
        self.assertFalse(os.path.exists(pidfile), "pid file left behind")

    def test_pidfile_in_use(self):
        sock, pidfile = self.path("nbd.sock"), self.path("berthd.pid")
        d = self.start_daemon(self.args(sock) + ["--pidfile", pidfile], wait_for=sock)
        rc, out, err = bh.run_daemon_once(self.args(self.path("other.sock"))
                                          + ["--pidfile", pidfile], self.tmpdir)
        self.assertEqual(rc, 1, "a second daemon took a pid file in use")
        self.assertEqual(len(stderr_lines(err)), 1, err)
        self.assertTrue(d.alive())
        self.assertEqual(self.read_pid(pidfile), d.pid)
        w.RawClient(sock).connect_export("null").disconnect()

    def test_daemonize(self):
        sock, pidfile = self.path("nbd.sock"), self.path("berthd.pid")
        p = subprocess.run([bh.DAEMON_PATH] + self.args(sock)
                           + ["--pidfile", pidfile, "--daemonize"],
                           cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=bh.START_TIMEOUT)
        pid = None
        if os.path.exists(pidfile):
            pid = self.read_pid(pidfile)
            self.addCleanup(bh.kill_pid, pid)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIsNotNone(pid, "no pid file after --daemonize")
        # ready when the parent returns: the socket accepts at once
        c = w.RawClient(sock)
        c.connect_export("null")
        c.disconnect()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + bh.STOP_TIMEOUT
        while bh.pid_alive(pid):
            self.assertLess(time.monotonic(), deadline,
                            "daemonized process ignores SIGTERM")
            time.sleep(0.05)
        self.assertFalse(os.path.exists(pidfile), "pid file left behind")


class Listeners(bh.DaemonTestCase):

    @needs_libnbd
    def test_tcp(self):
        port = bh.free_tcp_port()
        self.start_daemon(bh.blockdev_null("n0", GiB)
                          + bh.nbd_server_inet("127.0.0.1", port)
                          + bh.nbd_export("e0", "n0", "null", description="tcp"),
                          wait_tcp=("127.0.0.1", port))
        h = nbd.NBD()
        h.set_export_name("null")
        h.connect_tcp("127.0.0.1", str(port))
        self.assertEqual(h.get_size(), GiB)
        self.assertEqual(h.pread(4096, 0), bytes(4096))
        h.shutdown()
        c = w.RawClient(addr=("127.0.0.1", port))
        c.start()
        self.assertEqual(c.list_exports(), {"null": "tcp"})
        c.close()
        if shutil.which("nbdinfo"):
            _, out, _ = bh.run_tool(["nbdinfo", "--size",
                                     "nbd://127.0.0.1:%d/null" % port])
            self.assertEqual(int(out), GiB)

    def test_unix_socket_removed_or_reusable(self):
        """After a clean stop, the same socket path serves again."""
        sock = self.path("nbd.sock")
        args = (bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                + bh.nbd_export("e0", "n0", "null"))
        d = self.start_daemon(args, wait_for=sock, name="first")
        d.stop()
        self.start_daemon(args, wait_for=sock, name="second")
        w.RawClient(sock).connect_export("null").disconnect()

    def test_max_connections(self):
        sock = self.path("nbd.sock")
        self.start_daemon(bh.blockdev_null("n0", MiB)
                          + bh.nbd_server_unix(sock, max_connections=2)
                          + bh.nbd_export("e0", "n0", "null"), wait_for=sock)
        # the readiness probe's connection may still hold a slot for a moment
        a = w.connect_when_served(sock, "null")
        b = w.connect_when_served(sock, "null")
        # a third client is not served while two are connected: no greeting
        # (left waiting) or an immediate close are both fine
        third = w.RawClient(sock, timeout=2)
        try:
            third.read_greeting()
            self.fail("a third client was served with max-connections=2")
        except (w.Timeout, w.Closed):
            pass
        third.close()
        a.disconnect()
        # a slot is free again
        c = w.connect_when_served(sock, "null")
        c.disconnect()
        b.disconnect()

    def test_two_exports_of_one_node(self):
        sock = self.path("nbd.sock")
        img = bh.make_sparse_file(self.path("d.img"), 4 * MiB)
        self.start_daemon(bh.blockdev_file("d0", img) + bh.nbd_server_unix(sock)
                          + bh.nbd_export("rw", "d0", "rw", writable=True)
                          + bh.nbd_export("ro", "d0", "ro"), wait_for=sock)
        data = b"abcd" * 128
        c = w.RawClient(sock).connect_export("rw")
        self.assertEqual(c.command(w.CMD_WRITE, 1, 0, 512, payload=data)[0], 0)
        c.disconnect()
        c = w.RawClient(sock).connect_export("ro")
        self.assertTrue(c.transmission_flags & w.TF_READ_ONLY)
        self.assertEqual(c.command(w.CMD_READ, 1, 0, 512)[1], data)
        c.disconnect()


class Monitor(bh.DaemonTestCase):
    """The command-line side of QMP: --chardev/--monitor, and quit."""

    def test_monitor_and_quit(self):
        sock, qmp = self.path("nbd.sock"), self.path("qmp.sock")
        d = self.start_daemon(bh.blockdev_null("n0", MiB) + bh.nbd_server_unix(sock)
                              + bh.nbd_export("e0", "n0", "null")
                              + bh.qmp_monitor(qmp), wait_for=sock)
        d.wait_unix(qmp)
        q = self.connect_qmp(qmp, timeout=5)
        self.assertIn("QMP", q.greeting)
        exports = q.cmd("query-block-exports")["return"]
        self.assertEqual([(e["id"], e["node-name"]) for e in exports], [("e0", "n0")])
        self.assertEqual(q.cmd("quit"), {"return": {}})
        rc = d.wait_exit()
        self.assertEqual(rc, 0, d.describe())


@bh.berth_only
class DefaultConfiguration(bh.DaemonTestCase):
    """berthd without options: a 1 GiB memory disk 'disk' (also the default
    export) on 127.0.0.1:10809, and a monitor on ./berth-qmp.sock."""

    @needs_libnbd
    def test_no_options(self):
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 10809))
        except OSError:
            self.skipTest("port 10809 is in use")
        d = self.start_daemon([], wait_tcp=("127.0.0.1", 10809))
        d.wait_unix(self.path("berth-qmp.sock"))
        self.assertNotEqual(d.stderr().strip(), "", "berthd says what it serves")
        for name in ("", "disk"):
            h = nbd.NBD()
            h.set_export_name(name)
            h.connect_tcp("127.0.0.1", "10809")
            self.assertEqual(h.get_size(), GiB)
            self.assertFalse(h.is_read_only())
            h.pwrite(b"default!", 0)
            self.assertEqual(h.pread(8, 0), b"default!")
            h.shutdown()


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
