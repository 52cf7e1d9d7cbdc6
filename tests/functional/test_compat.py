#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Drop-in details that scripts written for qemu-storage-daemon 7.2 and
qemu-nbd 7.2 rely on, each checked the same way against both (run it with
BERTHD=qemu-storage-daemon to see QEMU pass the shared parts):

* --chardev stdio (QMP on standard input and output), --chardev socket,fd=N
  (an inherited listening or connected socket), --monitor pretty=on (the
  exact bytes QEMU's pretty printer writes);
* NBD requests over the advertised maximum block size (QSD: 32 MiB, berth:
  64 MiB): EINVAL, and the connection stays usable;
* berth-nbd's format probing (-f raw|qcow2, no -f) next to qemu-nbd's;
* query-blockstats: QEMU's shape, and counters that move by exactly what
  the client did.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import nbd_wire as w
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

QMP_SCRIPT = [
    {"execute": "qmp_capabilities"},
    {"execute": "bogus", "id": [1, {"a": None}]},
    {"execute": "query-block-exports"},
    {"execute": "nbd-server-start", "arguments": {}},
]


def qmp_lines(msgs):
    return "".join(json.dumps(m) + "\n" for m in msgs).encode()


def split_json(text):
    """The JSON values of a QMP output stream, in order."""
    dec = json.JSONDecoder()
    out, pos = [], 0
    text = text.decode()
    while True:
        while pos < len(text) and text[pos] in " \r\n\t":
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = dec.raw_decode(text, pos)
        out.append(obj)


# QEMU's pretty printer: four spaces a level, "key": value, every line ended
# by "\r\n", an empty object or array still broken over two lines.
def qemu_pretty(value, level=0):
    pad, inner = "    " * level, "    " * (level + 1)
    if isinstance(value, dict):
        items = [inner + json.dumps(k) + ": " + qemu_pretty(v, level + 1)
                 for k, v in value.items()]
        return "{\r\n" + ",\r\n".join(items) + ("\r\n" if items else "") + pad + "}"
    if isinstance(value, list):
        items = [inner + qemu_pretty(v, level + 1) for v in value]
        return "[\r\n" + ",\r\n".join(items) + ("\r\n" if items else "") + pad + "]"
    return json.dumps(value)


class Chardevs(bh.DaemonTestCase):

    def run_stdio(self, extra, stdin_data, settle=1.0):
        """berthd with QMP on its stdin/stdout; stdin closes after the
        script. Returns (stdout bytes, still running after EOF, stderr)."""
        p = subprocess.Popen([bh.DAEMON_PATH] + extra, cwd=self.tmpdir,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(bh.kill_pid, p.pid)
        p.stdin.write(stdin_data)
        p.stdin.close()
        p.stdin = None      # communicate() must not flush it again
        time.sleep(settle)
        running = p.poll() is None
        if running:
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=bh.STOP_TIMEOUT)
        return out, running, err.decode()

    def test_stdio_monitor(self):
        out, running, err = self.run_stdio(
            ["--chardev", "stdio,id=c0", "--monitor", "chardev=c0"], qmp_lines(QMP_SCRIPT))
        msgs = split_json(out)
        self.assertIn("QMP", msgs[0])
        self.assertEqual(msgs[1:], [
            {"return": {}},
            {"id": [1, {"a": None}],
             "error": {"class": "CommandNotFound",
                       "desc": "The command bogus has not been found"}},
            {"return": []},
            {"error": {"class": "GenericError", "desc": "Parameter 'addr' is missing"}},
        ])
        # QEMU's framing: one object per line, each ended by \r\n.
        self.assertTrue(out.endswith(b"}\r\n"))
        self.assertEqual(out.count(b"\r\n"), len(msgs))
        # The end of the monitor's input does not end the daemon (QSD's way).
        self.assertTrue(running, err)

    def test_stdio_pretty_bytes(self):
        out, _, err = self.run_stdio(
            ["--chardev", "stdio,id=c0", "--monitor", "chardev=c0,pretty=on"],
            qmp_lines(QMP_SCRIPT))
        msgs = split_json(out)
        self.assertEqual(len(msgs), 5, err)
        self.assertEqual(out.decode(), "".join(qemu_pretty(m) + "\r\n" for m in msgs))

    def test_stdio_quit(self):
        p = subprocess.run([bh.DAEMON_PATH, "--chardev", "stdio,id=c0", "--monitor", "c0"],
                           input=qmp_lines([{"execute": "qmp_capabilities"},
                                            {"execute": "quit"}]),
                           capture_output=True, timeout=bh.STOP_TIMEOUT, cwd=self.tmpdir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(split_json(p.stdout)[1:], [{"return": {}}, {"return": {}}])

    def test_stdio_errors(self):
        cases = [
            (["--chardev", "stdio,id=c0", "--chardev", "stdio,id=c1"],
             "--chardev stdio,id=c1: cannot use stdio by multiple character devices"),
            (["--chardev", "stdio"], "--chardev stdio: chardev: no id specified"),
            (["--chardev", "stdio,id=c0,foo=bar"], "Invalid parameter 'foo'"),
            (["--daemonize", "--chardev", "stdio,id=c0"],
             "--chardev stdio,id=c0: cannot use stdio with -daemonize"),
            (["--chardev", "socket,id=c0,fd=abc,server=on"], "Unable to parse FD number abc"),
        ]
        for args, text in cases:
            with self.subTest(args=args):
                p = subprocess.run([bh.DAEMON_PATH] + args, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, timeout=bh.STOP_TIMEOUT, cwd=self.tmpdir)
                self.assertEqual(p.returncode, 1)
                self.assertIn(text, p.stderr)

    def test_fd_not_a_socket(self):
        with open(self.path("f"), "w") as f:
            fd = f.fileno()
            p = subprocess.run([bh.DAEMON_PATH, "--chardev", "socket,id=c0,fd=%d" % fd],
                               pass_fds=[fd], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=bh.STOP_TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn("File descriptor '%d' is not a socket" % fd, p.stderr)

    @bh.berth_only
    def test_refused_options(self):
        # QEMU ignores what does not apply and has a mux and a log file;
        # berth says so rather than accept them without effect.
        cases = [
            ("stdio,id=c0,path=/x",
             "Parameter 'path' does not apply to chardev backend 'stdio'"),
            ("socket,id=c0,path=s,server=on,signal=off",
             "Parameter 'signal' does not apply to chardev backend 'socket'"),
            ("stdio,id=c0,mux=on", "chardev 'c0': 'mux=on' is not supported"),
            ("stdio,id=c0,logfile=x", "chardev 'c0': 'logfile' is not supported"),
            ("socket,id=c0,path=s,fd=3,server=on", "socket needs exactly one of"),
            ("pty,id=c0", "backend 'pty' is not supported, only 'socket' and 'stdio'"),
        ]
        for opt, text in cases:
            with self.subTest(opt=opt):
                p = subprocess.run([bh.DAEMON_PATH, "--chardev", opt], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=bh.STOP_TIMEOUT,
                                   cwd=self.tmpdir)
                self.assertEqual(p.returncode, 1)
                self.assertIn(text, p.stderr)

    def start_with_fd(self, sock, opt):
        fd = sock.fileno()
        p = subprocess.Popen([bh.DAEMON_PATH, "--chardev", opt % fd, "--monitor", "c0"],
                             pass_fds=[fd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=self.tmpdir)
        self.addCleanup(bh.kill_pid, p.pid)
        self.addCleanup(p.stderr.close)
        sock.close()
        return p

    def qmp_on(self, conn):
        conn.settimeout(bh.REPLY_TIMEOUT)
        with conn.makefile("rb") as f:
            greeting = json.loads(f.readline())
            conn.sendall(qmp_lines([{"execute": "qmp_capabilities"},
                                    {"execute": "query-block-exports"}]))
            return greeting, json.loads(f.readline()), json.loads(f.readline())

    def test_fd_listening(self):
        path = self.path("l.sock")
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        lsock.listen()
        p = self.start_with_fd(lsock, "socket,id=c0,fd=%d,server=on,wait=off")
        # A listener: several clients, one after the other.
        for _ in range(2):
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)
            greeting, caps, exports = self.qmp_on(c)
            self.assertIn("QMP", greeting)
            self.assertEqual((caps, exports), ({"return": {}}, {"return": []}))
            c.close()
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(bh.STOP_TIMEOUT), 0)

    def test_fd_connected(self):
        ours, theirs = socket.socketpair()
        p = self.start_with_fd(theirs, "socket,id=c0,fd=%d")
        greeting, caps, exports = self.qmp_on(ours)
        self.assertIn("QMP", greeting)
        self.assertEqual((caps, exports), ({"return": {}}, {"return": []}))
        ours.close()
        time.sleep(0.3)
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(bh.STOP_TIMEOUT), 0)

    def test_fd_connected_with_server_on(self):
        # QEMU calls listen() on a connected socket and fails: both refuse.
        ours, theirs = socket.socketpair()
        p = self.start_with_fd(theirs, "socket,id=c0,fd=%d,server=on,wait=off")
        ours.close()
        _, err = p.communicate(timeout=bh.STOP_TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Invalid argument", err.decode())



class OversizedRequests(bh.DaemonTestCase):
    """Reads and writes over the advertised maximum block size (berth:
    64 MiB, qemu-storage-daemon 7.2: 32 MiB): EINVAL, and the connection
    stays usable (qemu-storage-daemon drops it after an oversized write,
    which the spec allows; berth skips the payload, which it prefers)."""

    SIZE = 128 * MiB
    # What each server advertises as NBD_INFO_BLOCK_SIZE's maximum.
    MAXIMUM = 32 * MiB if bh.is_qsd() else 64 * MiB

    def setUp(self):
        super().setUp()
        self.sock = self.path("nbd.sock")
        self.daemon = self.start_daemon(
            bh.blockdev_null("n0", self.SIZE) + bh.nbd_server_unix(self.sock)
            + bh.nbd_export("e0", "n0", name="e0", writable=True), wait_for=self.sock)

    def raw(self, structured=True):
        c = w.RawClient(self.sock, timeout=30)
        self.addCleanup(c.close)
        return c.connect_export("e0", structured=structured)

    def test_read_over_the_maximum(self):
        for structured in (True, False):
            for length in (self.MAXIMUM + 512, 2 * self.MAXIMUM, 0xFFFFFFFF):
                with self.subTest(structured=structured, length=length):
                    c = self.raw(structured)
                    c.request(w.CMD_READ, 1, 0, length)
                    chunks = c.read_reply(1)
                    self.assertEqual(w.reply_error(chunks), w.EINVAL)
                    err, data, _ = c.command(w.CMD_READ, 2, 0, 4096)
                    self.assertEqual((err, data), (0, bytes(4096)))

    def test_read_at_the_maximum(self):
        c = self.raw()
        err, data, _ = c.command(w.CMD_READ, 1, 0, self.MAXIMUM)
        self.assertEqual(err, 0)
        self.assertEqual(data, bytes(self.MAXIMUM))

    @bh.berth_only
    def test_write_over_the_maximum_keeps_the_connection(self):
        before = self.daemon.memory_kib("VmHWM")
        c = self.raw()
        for length in (self.MAXIMUM + 512, self.MAXIMUM + 32 * MiB):
            c.request(w.CMD_WRITE, 3, 0, length, payload=b"\xee" * length)
            self.assertEqual(w.reply_error(c.read_reply(3)), w.EINVAL)
            err, data, _ = c.command(w.CMD_READ, 4, 0, 4096)
            self.assertEqual((err, data), (0, bytes(4096)))
        # The refused payloads were skipped, not stored: far less than one.
        grown = self.daemon.memory_kib("VmHWM") - before
        self.assertLess(grown, 8 * 1024, "peak RSS grew by %d KiB" % grown)

    def test_hang_up_inside_an_oversized_payload(self):
        # The peer leaves while its refused payload is being skipped: the
        # request waiting for it is freed and the server serves on.
        for _ in range(3):
            c = self.raw()
            try:
                c.request(w.CMD_WRITE, 5, 0, self.MAXIMUM + 512, payload=b"\xee" * MiB)
            except w.Closed:
                pass            # qemu-storage-daemon hangs up first
            c.close()
        c = self.raw()
        err, data, _ = c.command(w.CMD_READ, 6, 0, 4096)
        self.assertEqual((err, data), (0, bytes(4096)))
        self.assertTrue(self.daemon.alive())

    @bh.berth_only
    def test_libnbd_unchecked_write(self):
        # libnbd never sends more than 64 MiB itself, berth's maximum: what
        # lies past it is refused above (raw requests); at it, all is well.
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(self.sock, "e0"))
        h.set_strict_mode(0)
        h.pwrite(b"\1" * self.MAXIMUM, 0)      # the maximum itself is fine
        self.assertEqual(h.pread(self.MAXIMUM, 0), bytes(self.MAXIMUM))  # null-co
        h.shutdown()

    def test_block_size_sent_unasked(self):
        for ask in (True, False):
            with self.subTest(ask=ask):
                h = nbd.NBD()
                h.set_request_block_size(ask)
                h.connect_uri(bh.nbd_uri(self.sock, "e0"))
                self.assertEqual([h.get_block_size(i) for i in
                                  (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)],
                                 [1, 4096, self.MAXIMUM])
                h.shutdown()


QEMU_NBD = shutil.which("qemu-nbd")
BERTH_NBD = (os.environ.get("BERTH_NBD")
             or os.path.join(bh.SOURCE_ROOT, "build", "tools", "berth-nbd"))
NBD_TOOLS = [t for t in (("qemu-nbd", QEMU_NBD), ("berth-nbd", BERTH_NBD)) if t[1]]
PROBE_WARNING = (
    "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, write "
    "operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n")
QCOW2_HEADER = b"QFI\xfb\0\0\0\3" + bytes(504)


class FormatProbing(bh.DaemonTestCase):
    """berth-nbd without -f probes like qemu-nbd 7.2; each case runs both."""

    def setUp(self):
        super().setUp()
        self.raw = self.path("raw.img")
        bh.make_sparse_file(self.raw, MiB)
        self.qcow2 = self.path("q.qcow2")
        with open(self.qcow2, "wb") as f:      # a qcow2 header is all probing reads
            f.write(QCOW2_HEADER)
            f.truncate(MiB)

    def serve(self, exe, args, tag):
        sock = self.path(tag + ".sock")
        d = self.start_daemon(["-k", sock] + args, wait_for=sock, exe=exe, name=tag,
                              stop_check=False)
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock))
        self.addCleanup(h.shutdown)
        return d, h

    def test_probed_raw(self):
        for tool, exe in NBD_TOOLS:
            with self.subTest(tool=tool):
                bh.make_sparse_file(self.raw, MiB)
                d, h = self.serve(exe, [self.raw], tool)
                # The warning, word for word (qemu-nbd also complains about
                # the harness's probe connection), and a 512-byte minimum block.
                self.assertTrue(d.stderr().startswith(PROBE_WARNING % self.raw), d.stderr())
                self.assertEqual([h.get_block_size(i) for i in
                                  (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)],
                                 # the maximum is each server's own
                                 [512, 4096, 64 * MiB if tool == "berth-nbd" else 32 * MiB])
                # Block 0 may not become another format's header ...
                with self.assertRaises(nbd.Error) as cm:
                    h.pwrite(QCOW2_HEADER, 0)
                self.assertEqual(cm.exception.errno, "EPERM")
                # ... any other data is fine, and so is a header elsewhere.
                h.pwrite(b"hello" * 100 + bytes(12), 0)
                h.pwrite(QCOW2_HEADER, 512)
                self.assertEqual(h.pread(512, 0), b"hello" * 100 + bytes(12))
                with open(self.raw, "rb") as f:
                    self.assertEqual(f.read(1024)[:5], b"hello")

    def test_explicit_raw_has_no_guard(self):
        for tool, exe in NBD_TOOLS:
            with self.subTest(tool=tool):
                bh.make_sparse_file(self.raw, MiB)
                d, h = self.serve(exe, ["-f", "raw", self.raw], tool)
                self.assertNotIn("WARNING", d.stderr())
                self.assertEqual(h.get_block_size(nbd.SIZE_MINIMUM), 1)
                h.pwrite(QCOW2_HEADER, 0)
                self.assertEqual(h.pread(8, 0), QCOW2_HEADER[:8])

    def test_raw_bytes_of_a_qcow2_file(self):
        for tool, exe in NBD_TOOLS:
            with self.subTest(tool=tool):
                _, h = self.serve(exe, ["-f", "raw", "-r", self.qcow2], tool)
                self.assertEqual(h.get_size(), MiB)
                self.assertEqual(h.pread(8, 0), QCOW2_HEADER[:8])

    def run_refused(self, exe, args):
        p = subprocess.run([exe, "-k", self.path("x.sock")] + args, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=bh.STOP_TIMEOUT)
        return p.returncode, p.stderr

    def test_unknown_format(self):
        for tool, exe in NBD_TOOLS:
            with self.subTest(tool=tool):
                rc, err = self.run_refused(exe, ["-f", "bogus", self.raw])
                self.assertEqual(rc, 1)
                self.assertIn("Unknown driver 'bogus'", err)

    def test_qcow2_without_driver(self):
        # Only while blockdev-add has no qcow2 driver: berth-nbd looks the
        # driver up by name, and opens qcow2 images once there is one.
        probe = subprocess.run([bh.DAEMON_PATH, "--blockdev", "driver=qcow2,node-name=x"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=bh.STOP_TIMEOUT, cwd=self.tmpdir)
        if "does not accept value 'qcow2'" not in probe.stderr:
            self.skipTest("berth has a qcow2 driver")
        probed = ("qcow2 images are not supported yet (the format was probed; -f raw "
                  "exports the file's bytes as they are)")
        for args, text in (([self.qcow2], probed),
                           (["-f", "qcow2", self.raw], "qcow2 images are not supported yet")):
            with self.subTest(args=args):
                rc, err = self.run_refused(BERTH_NBD, args)
                self.assertEqual(rc, 1)
                self.assertEqual(err, "berth-nbd: Failed to open '%s': %s\n" % (args[-1], text))



# BlockDeviceStats as qemu-storage-daemon 7.2 returns it (idle_time_ns
# appears once the node has been accessed).
BLOCKSTATS_KEYS = {
    "rd_bytes", "wr_bytes", "unmap_bytes", "rd_operations", "wr_operations",
    "flush_operations", "unmap_operations", "rd_total_time_ns", "wr_total_time_ns",
    "flush_total_time_ns", "unmap_total_time_ns", "wr_highest_offset", "rd_merged",
    "wr_merged", "unmap_merged", "failed_rd_operations", "failed_wr_operations",
    "failed_flush_operations", "failed_unmap_operations", "invalid_rd_operations",
    "invalid_wr_operations", "invalid_flush_operations", "invalid_unmap_operations",
    "account_invalid", "account_failed", "timed_stats",
}


class QueryBlockstats(bh.DaemonTestCase):

    def start(self, blockdev):
        self.sock = self.path("nbd.sock")
        qmp = self.path("qmp.sock")
        self.start_daemon(blockdev + bh.nbd_server_unix(self.sock)
                          + bh.nbd_export("e0", "n0", name="e0", writable=True)
                          + bh.qmp_monitor(qmp), wait_for=qmp)
        self.qmp = self.connect_qmp(qmp)

    def node_stats(self, node="n0"):
        reply = self.qmp.cmd("query-blockstats", {"query-nodes": True})
        entries = [e for e in reply["return"] if e.get("node-name") == node]
        self.assertEqual(len(entries), 1, reply)
        return entries[0]["stats"]

    def test_shape(self):
        self.start(bh.blockdev_null("n0", MiB))
        # No drives: an empty list, as qemu-storage-daemon (which has none).
        self.assertEqual(self.qmp.cmd("query-blockstats"), {"return": []})
        self.assertEqual(set(self.node_stats()), BLOCKSTATS_KEYS)
        self.assertEqual(self.qmp.cmd("query-blockstats", {"query-nodes": 1})["error"]["desc"],
                         "Invalid parameter type for 'query-nodes', expected: boolean")
        self.assertEqual(self.qmp.cmd("query-blockstats", {"bogus": 1})["error"]["desc"],
                         "Parameter 'bogus' is unexpected")

    @bh.berth_only
    def test_counts_through_nbd(self):
        """Four connections at once, the file driver's worker threads
        completing their requests: every counter moves by exactly what the
        clients did."""
        image = self.path("disk.img")
        bh.make_sparse_file(image, 64 * MiB)
        self.start(bh.blockdev_file("n0", image, discard="unmap"))
        before = self.node_stats()
        errors = []

        def client(k):
            try:
                h = nbd.NBD()
                h.connect_uri(bh.nbd_uri(self.sock, "e0"))
                base = k * 16 * MiB
                for i in range(16):
                    h.pwrite(bytes([k + 1]) * (64 * KiB), base + i * 64 * KiB)
                for i in range(8):
                    h.pread(128 * KiB, base + i * 128 * KiB)
                h.flush()
                h.zero(4 * KiB, base + 8 * MiB)
                h.zero(4 * KiB, base + 9 * MiB)
                h.trim(64 * KiB, base + 10 * MiB)
                h.shutdown()
            except Exception as e:          # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(bh.TEST_TIMEOUT)
        self.assertEqual(errors, [])
        after = self.node_stats()
        moved = {k: after[k] - before[k] for k in after if isinstance(after[k], int)
                 and not isinstance(after[k], bool) and not k.endswith("_ns")
                 and k != "wr_highest_offset"}
        self.assertEqual(moved, {
            "rd_bytes": 4 * 8 * 128 * KiB, "rd_operations": 4 * 8,
            "wr_bytes": 4 * (16 * 64 * KiB + 2 * 4 * KiB), "wr_operations": 4 * 18,
            "flush_operations": 4, "unmap_operations": 4, "unmap_bytes": 4 * 64 * KiB,
            "rd_merged": 0, "wr_merged": 0, "unmap_merged": 0,
            "failed_rd_operations": 0, "failed_wr_operations": 0,
            "failed_flush_operations": 0, "failed_unmap_operations": 0,
            "invalid_rd_operations": 0, "invalid_wr_operations": 0,
            "invalid_flush_operations": 0, "invalid_unmap_operations": 0,
        })
        self.assertEqual(after["wr_highest_offset"], 3 * 16 * MiB + 9 * MiB + 4 * KiB)
        # The export's own counters (query-block-exports), shared by the
        # four connections, add up just as exactly.
        [exp] = self.qmp.cmd("query-block-exports")["return"]
        self.assertEqual(exp["stats"], {
            "reads": 32, "writes": 64, "flushes": 4, "trims": 4, "zeroes": 8, "caches": 0,
            "block-status": 0, "bytes-read": 32 * 128 * KiB, "bytes-written": 64 * 64 * KiB,
            "errors": 0})
        self.assertGreater(after["wr_total_time_ns"], before["wr_total_time_ns"])
        self.assertGreaterEqual(after["idle_time_ns"], 0)

    @bh.berth_only
    def test_drive_shows_its_medium(self):
        self.start(bh.blockdev_null("n0", MiB))
        self.assertEqual(self.qmp.cmd("drive-add", id="d0", node_name="n0"), {"return": {}})
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(self.sock, "e0"))
        h.pread(4096, 0)
        h.shutdown()
        [entry] = self.qmp.cmd("query-blockstats")["return"]
        self.assertEqual((entry["device"], entry["node-name"]), ("d0", "n0"))
        self.assertEqual(entry["stats"], dict(entry["stats"], rd_operations=1, rd_bytes=4096))


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
