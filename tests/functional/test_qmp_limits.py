#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The QMP monitor under pressure: replies larger than the output low mark,
requests pipelined in one write and read at once, slowly or only at the end,
messages over the reader's limits (size, nesting) followed by ordinary
commands on the same connection, and numbers that JSON cannot carry back.
Every reply must arrive, in order, and be strict JSON."""

import json
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

NODES = 210          # query-named-block-nodes then answers ~100 KiB
PIPELINED = 300
DEEP = 1100          # deeper than the 1024 levels both daemons allow
BIG = MiB + 4096     # larger than berth's 1 MiB per message


def strict_loads(text):
    """json.loads without Python's extensions (NaN, Infinity)."""
    def refuse(name):
        raise ValueError("not JSON: %s" % name)
    return json.loads(text, parse_constant=refuse)


class Lines:
    """Reads "\\r\\n"-terminated QMP messages from a raw socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def take(self, n, timeout=bh.REPLY_TIMEOUT, chunk=65536, pause=0.0):
        """The next n messages, parsed strictly; fails after `timeout`.
        chunk and pause make a slow reader."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            line, sep, rest = self.buf.partition(b"\r\n")
            if sep:
                self.buf = rest
                out.append(strict_loads(line.decode("utf-8")))
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d messages within %.0f s"
                                   % (len(out), n, timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(chunk)
            except socket.timeout:
                continue
            if not data:
                raise EOFError("connection closed after %d of %d messages"
                               % (len(out), n))
            self.buf += data
            if pause:
                time.sleep(pause)
        return out

    def until_id(self, ident, timeout=bh.REPLY_TIMEOUT):
        """Every message up to and including the reply with this id."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.take(1, max(0.1, deadline - time.monotonic()))[0]
            out.append(msg)
            if msg.get("id") == ident:
                return out


def request(command, ident, args=None):
    req = {"execute": command, "id": ident}
    if args is not None:
        req["arguments"] = args
    return (json.dumps(req) + "\n").encode()


class QmpLimits(bh.DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.qmp_path = self.path("qmp.sock")
        d = self.start_daemon(bh.qmp_monitor(self.qmp_path), wait_for=self.qmp_path)
        self.daemon = d

    def connect(self):
        """A raw connection in command mode."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(bh.REPLY_TIMEOUT)
        s.connect(self.qmp_path)
        lines = Lines(s)
        self.assertIn("QMP", lines.take(1)[0])
        s.sendall(request("qmp_capabilities", "caps"))
        self.assertEqual(lines.take(1)[0], {"return": {}, "id": "caps"})
        return s, lines

    def assert_still_serving(self, s, lines):
        s.sendall(request("query-version", "alive"))
        reply = lines.take(1)[0]
        self.assertEqual(reply.get("id"), "alive", reply)
        self.assertIn("qemu", reply["return"])

    def assert_in_order(self, replies, ids):
        self.assertEqual([r.get("id") for r in replies], ids)
        for r in replies:
            self.assertIsInstance(r.get("return"), list, r)

    # --- output larger than the low mark, input still buffered ---

    def test_big_reply_with_trailing_newline(self):
        s, lines = self.connect()
        s.sendall(b"".join(request("blockdev-add", i, {
            "driver": "null-co", "node-name": "n%d" % i, "size": MiB})
            for i in range(NODES)))
        self.assertEqual(lines.take(NODES), [{"return": {}, "id": i} for i in range(NODES)])
        # One request, sent as every client sends it: the newline stays
        # buffered while the large reply is queued.
        s.sendall(request("query-named-block-nodes", "q"))
        reply = lines.take(1)[0]
        self.assertEqual(reply.get("id"), "q")
        self.assertEqual(sorted(n["node-name"] for n in reply["return"]),
                         sorted("n%d" % i for i in range(NODES)))
        self.assert_still_serving(s, lines)

    def pipeline(self, n=PIPELINED):
        return b"".join(request("query-commands", i) for i in range(n))

    def test_pipelined_in_one_write(self):
        s, lines = self.connect()
        s.sendall(self.pipeline())
        self.assert_in_order(lines.take(PIPELINED), list(range(PIPELINED)))
        self.assert_still_serving(s, lines)

    def test_pipelined_read_only_at_the_end(self):
        s, lines = self.connect()
        # Nothing read until the daemon had time to fill the socket and stop.
        s.sendall(self.pipeline())
        time.sleep(0.5)
        self.assert_in_order(lines.take(PIPELINED), list(range(PIPELINED)))
        self.assert_still_serving(s, lines)

    def test_pipelined_slow_reader(self):
        s, lines = self.connect()
        s.sendall(self.pipeline())
        replies = lines.take(PIPELINED, timeout=30, chunk=4096, pause=0.001)
        self.assert_in_order(replies, list(range(PIPELINED)))
        self.assert_still_serving(s, lines)

    def test_long_pipeline_while_reading(self):
        """Far more requests than the socket buffers hold, written by one
        thread while another reads: the reader is never dropped."""
        n = 5000
        s, lines = self.connect()
        data = self.pipeline(n)
        errors = []

        def write():
            try:
                s.sendall(data)
            except OSError as e:
                errors.append(e)
        t = threading.Thread(target=write, daemon=True)
        t.start()
        replies = lines.take(n, timeout=60)
        t.join(10)
        self.assertEqual(errors, [])
        self.assert_in_order(replies, list(range(n)))
        self.assert_still_serving(s, lines)

    # --- messages over the reader's limits ---

    def test_oversized_message_then_command(self):
        s, lines = self.connect()
        big = request("query-version", "big", {"pad": "x" * BIG})
        s.sendall(big + request("query-version", "after"))
        error, after = lines.take(2, timeout=30)  # qemu-storage-daemon is slow here
        self.assertEqual(error["error"]["class"], "GenericError", error)
        if not bh.is_qsd():
            # qemu-storage-daemon's limit is 64 MiB: it reads this message
            # and refuses the unknown argument instead.
            self.assertEqual(error, {"error": {
                "class": "GenericError", "desc": "JSON token size limit exceeded"}})
        self.assertEqual(after.get("id"), "after", after)
        self.assertIn("qemu", after["return"])

    def test_oversized_message_split_across_writes(self):
        """The error comes while the client is still sending."""
        s, lines = self.connect()
        big = request("query-version", "big", {"pad": "x" * (2 * BIG)})
        for off in range(0, len(big), 65536):
            s.sendall(big[off:off + 65536])
        s.sendall(request("query-version", "after"))
        replies = lines.until_id("after", timeout=30)
        self.assertEqual(replies[0]["error"]["class"], "GenericError", replies[0])
        self.assertIn("qemu", replies[-1]["return"])

    def deep_messages(self):
        return {
            "array": b"[" * DEEP + b"]" * DEEP + b"\n",
            "object": b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"\n",
        }

    def test_deep_nesting_then_command(self):
        for kind, deep in self.deep_messages().items():
            with self.subTest(kind=kind):
                s, lines = self.connect()
                s.sendall(deep + request("query-version", "after"))
                replies = lines.until_id("after")
                s.close()  # qemu-storage-daemon serves one client at a time
                self.assertEqual(replies[0], {"error": {
                    "class": "GenericError", "desc": "JSON nesting depth limit exceeded"}})
                self.assertIn("qemu", replies[-1]["return"])

    @bh.qsd_deviates("after the limit it answers each of the message's remaining "
                     "closing brackets with an error of its own")
    def test_deep_nesting_gets_one_error(self):
        for kind, deep in self.deep_messages().items():
            with self.subTest(kind=kind):
                s, lines = self.connect()
                s.sendall(deep + request("query-version", "after"))
                replies = lines.until_id("after")
                s.close()
                self.assertEqual(len(replies), 2)

    def test_nesting_at_the_limit_is_accepted(self):
        s, lines = self.connect()
        # 1024 levels in all: the request object and 1023 arrays in its id.
        ident = b"[" * 1023 + b"]" * 1023
        # Python's decoder recurses once per level.
        self.addCleanup(sys.setrecursionlimit, sys.getrecursionlimit())
        sys.setrecursionlimit(10000)
        s.sendall(b'{"execute": "query-version", "id": ' + ident + b"}\n")
        reply = lines.take(1)[0]
        self.assertIn("qemu", reply["return"], reply)
        depth, v = 0, reply["id"]
        while isinstance(v, list) and v:
            depth, v = depth + 1, v[0]
        self.assertEqual((depth + 1, v), (1023, []))
        self.assert_still_serving(s, lines)

    # --- numbers JSON cannot carry ---

    @bh.qsd_deviates("it reads 1e999 as infinity and echoes it as inf, which is not JSON")
    def test_non_finite_number_refused(self):
        s, lines = self.connect()
        for text in (b"1e999", b"-1e999", b"1" + b"0" * 400):
            with self.subTest(number=text[:20]):
                s.sendall(b'{"execute": "query-version", "id": ' + text + b"}\n")
                reply = lines.take(1, timeout=3)[0]
                self.assertEqual(reply["error"]["class"], "GenericError", reply)
                self.assertTrue(reply["error"]["desc"].startswith("JSON parse error, "),
                                reply)
                self.assertNotIn("id", reply)
        self.assert_still_serving(s, lines)

    def test_large_finite_numbers_echoed(self):
        s, lines = self.connect()
        s.sendall(b'{"execute": "query-version", "id": [1e308, -1e308, 1e-999]}\n')
        reply = lines.take(1)[0]
        self.assertEqual(reply["id"], [1e308, -1e308, 0.0])


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
