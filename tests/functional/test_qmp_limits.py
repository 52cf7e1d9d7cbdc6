#!/usr/bin/python3
"""The QMP monitor under pressure: replies larger than the output low mark,
requests pipelined in one write and read at once, slowly or only at the end.
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


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
