#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Reads and writes larger than 32 MiB (issue 15): berth advertises a
maximum block size of 64 MiB, as much as nbdkit and nbd-server accept and
libnbd sends, so the NBD reference server's integrity-huge trace (requests
of up to ~48 MiB) passes.

* 48 MiB writes and reads through libnbd, several pipelined on one
  connection, read back intact;
* the in-flight byte limit of a connection holds: a peer that pipelines
  20 writes of 60 MiB to a slow node without reading a reply, or 20 reads
  of 60 MiB without reading the data, costs berthd at most about two such
  buffers (NBD_CONN_MAX_IN_FLIGHT_BYTES, 128 MiB), and every request is
  answered;
* a request over the maximum is still refused (EINVAL, EOVERFLOW for a DF
  read) and the connection goes on;
* berth's NBD client (driver=nbd) sends requests as large as the server
  advertises: one 48 MiB write reaches the upstream server as one request.

qemu-storage-daemon 7.2 advertises 32 MiB and refuses larger requests, so
only the refusal case runs against it (BERTHD=qemu-storage-daemon)."""

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
from berth_harness import MiB

nbd = bh.import_nbd()

MAXIMUM = 32 * MiB if bh.is_qsd() else 64 * MiB
HUGE = 48 * MiB                     # the integrity-huge trace's largest
DISK = 256 * MiB
# NBD_CONN_MAX_IN_FLIGHT_BYTES, and what else a connection holds at most
# (input buffer, socket buffers, allocator slack).
IN_FLIGHT_BYTES = 2 * 64 * MiB
SLACK = 24 * MiB


def pattern(n, seed):
    # randbytes of 48 MiB takes a while; a repeated random MiB is enough to
    # tell one request's data from another's and from zeroes.
    block = random.Random(seed).randbytes(MiB)
    return block * (n // MiB) + block[:n % MiB]


class LargeRequests(bh.DaemonTestCase):

    def serve(self, node_args, node="n0"):
        sock = self.path("nbd.sock")
        d = self.start_daemon(node_args + bh.nbd_server_unix(sock)
                              + bh.nbd_export("e0", node, name="e0", writable=True),
                              wait_for=sock)
        return d, sock

    def file_export(self):
        img = bh.make_sparse_file(self.path("disk.img"), DISK)
        return self.serve(bh.blockdev_file("n0", img)) + (img,)

    def test_advertised_maximum(self):
        _, sock, _ = self.file_export()
        h = bh.nbd_connect(nbd, sock, "e0")
        self.addCleanup(h.shutdown)
        self.assertEqual(h.get_block_size(nbd.SIZE_MAXIMUM), MAXIMUM)

    @bh.berth_only
    def test_48_mib_write_and_read_back(self):
        _, sock, img = self.file_export()
        h = bh.nbd_connect(nbd, sock, "e0")
        self.addCleanup(h.shutdown)
        data = pattern(HUGE, 1)
        h.pwrite(data, 3 * MiB)
        self.assertEqual(h.pread(HUGE, 3 * MiB), data)
        with open(img, "rb") as f:
            f.seek(3 * MiB)
            self.assertEqual(f.read(HUGE), data, "the file holds what was written")

    @bh.berth_only
    def test_pipelined_48_mib_requests(self):
        _, sock, _ = self.file_export()
        h = bh.nbd_connect(nbd, sock, "e0")
        self.addCleanup(h.shutdown)
        n = 4
        datas = [pattern(HUGE, 10 + i) for i in range(n)]
        # All four writes in flight at once on one connection (192 MiB:
        # more than the server holds at once, so some wait for room).
        bufs = [nbd.Buffer.from_bytearray(bytearray(d)) for d in datas]
        cookies = [h.aio_pwrite(bufs[i], i * HUGE) for i in range(n)]
        self.assertGreater(h.aio_in_flight(), 1)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            self.assertTrue(h.aio_command_completed(c))
        # Then all four reads, also pipelined, each checked.
        rbufs = [nbd.Buffer(HUGE) for _ in range(n)]
        cookies = [h.aio_pread(rbufs[i], i * HUGE) for i in range(n)]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for i, c in enumerate(cookies):
            self.assertTrue(h.aio_command_completed(c))
            self.assertEqual(rbufs[i].to_bytearray(), datas[i], "request %d" % i)

    def test_over_the_maximum_refused_connection_stays(self):
        _, sock, _ = self.file_export()
        c = w.RawClient(sock, timeout=30)
        self.addCleanup(c.close)
        c.connect_export("e0")
        over = MAXIMUM + 4096
        c.request(w.CMD_READ, 1, 0, over)
        self.assertEqual(w.reply_error(c.read_reply(1)), w.EINVAL)
        c.request(w.CMD_READ, 2, 0, over, flags=w.CMD_FLAG_DF)
        self.assertIn(w.reply_error(c.read_reply(2)), (w.EOVERFLOW, w.EINVAL))
        err, data, _ = c.command(w.CMD_READ, 3, 0, 4096)
        self.assertEqual((err, data), (0, bytes(4096)))
        if bh.is_qsd():
            return          # QSD drops the connection after an oversized write
        c.request(w.CMD_WRITE, 4, 0, over, payload=b"\xee" * over)
        self.assertEqual(w.reply_error(c.read_reply(4)), w.EINVAL)
        err, data, _ = c.command(w.CMD_READ, 5, 0, 4096)
        self.assertEqual((err, data), (0, bytes(4096)), "the refused write wrote nothing")
        # The maximum itself is served.
        err, _, _ = c.command(w.CMD_WRITE, 6, 0, MAXIMUM, payload=b"\x01" * MAXIMUM)
        self.assertEqual(err, 0)


@bh.berth_only
@unittest.skipIf(bh.SANITIZED, "ASan's quarantine (valgrind's too) keeps freed memory resident")
class MemoryBound(bh.DaemonTestCase):
    """A peer that pipelines huge requests and reads no reply: berthd's
    peak RSS grows by no more than the connection's in-flight byte limit."""

    COUNT = 20
    LENGTH = 60 * MiB

    def start(self, delay_ms):
        sock = self.path("nbd.sock")
        args = bh.blockdev_null("n0", 2 * 1024 * MiB)
        node = "n0"
        if delay_ms:
            args += ["--blockdev", "driver=blkdebug,node-name=slow,image=n0,"
                     "x-delay-ms=%d" % delay_ms]
            node = "slow"
        self.daemon = self.start_daemon(
            args + bh.nbd_server_unix(sock)
            + bh.nbd_export("e0", node, name="e0", writable=True), wait_for=sock)
        c = w.RawClient(sock, timeout=60)
        self.addCleanup(c.close)
        return c.connect_export("e0", structured=False)

    def flood(self, c, cmd):
        """Send COUNT requests (with their payloads) from a thread, reading
        nothing meanwhile; returns the thread."""
        payload = memoryview(b"\xa5" * self.LENGTH)

        def send_all():
            for i in range(self.COUNT):
                off = i * self.LENGTH
                if cmd == w.CMD_WRITE:
                    c.sock.sendall(w.pack_request(cmd, 100 + i, off, self.LENGTH))
                    c.sock.sendall(payload)
                else:
                    c.sock.sendall(w.pack_request(cmd, 100 + i, off, self.LENGTH))

        t = threading.Thread(target=send_all, daemon=True)
        t.start()
        return t

    def peak_growth(self, before):
        grown = self.daemon.memory_kib("VmHWM") - before
        sys.stderr.write("[peak RSS +%d MiB] " % (grown // 1024))
        return grown

    def test_pipelined_writes_to_a_slow_node(self):
        c = self.start(delay_ms=100)
        before = self.daemon.memory_kib("VmHWM")
        t = self.flood(c, w.CMD_WRITE)
        # Replies are not read until every write is sent: the server takes
        # in two payloads at a time, as its node completes them.
        t.join(60)
        self.assertFalse(t.is_alive(), "the server stopped taking writes")
        for i in range(self.COUNT):
            chunk = c.read_reply_chunk()
            self.assertEqual(chunk.error, 0)
        grown = self.peak_growth(before)
        self.assertLess(grown * 1024, IN_FLIGHT_BYTES + SLACK,
                        "peak RSS grew by %d KiB for %d pipelined %d MiB writes"
                        % (grown, self.COUNT, self.LENGTH // MiB))

    def test_pipelined_reads_whose_data_nobody_reads(self):
        c = self.start(delay_ms=0)
        before = self.daemon.memory_kib("VmHWM")
        t = self.flood(c, w.CMD_READ)
        t.join(10)
        # Give the server time to take in what it will while we read nothing.
        time.sleep(1.5)
        grown = self.peak_growth(before)
        self.assertLess(grown * 1024, IN_FLIGHT_BYTES + SLACK,
                        "peak RSS grew by %d KiB with %d unread %d MiB reads"
                        % (grown, self.COUNT, self.LENGTH // MiB))
        # Every read is answered with its data once we read.
        handles = {100 + i: self.LENGTH for i in range(self.COUNT)}
        seen = set()
        for _ in range(self.COUNT):
            chunk = c.read_reply_chunk(handles)
            self.assertEqual(chunk.error, 0)
            self.assertEqual(len(chunk.payload), self.LENGTH)
            seen.add(chunk.handle)
        self.assertEqual(seen, set(handles))


@bh.berth_only
class ClientDriver(bh.DaemonTestCase):
    """driver=nbd over a berthd export that advertises 64 MiB: a 48 MiB
    write is one request upstream, not two of 32 MiB."""

    def test_client_uses_the_advertised_maximum(self):
        up_sock = self.path("up.sock")
        up_qmp = self.path("up-qmp.sock")
        self.start_daemon(bh.blockdev_memory("m0", 128 * MiB) + bh.nbd_server_unix(up_sock)
                          + bh.qmp_monitor(up_qmp)
                          + bh.nbd_export("up", "m0", name="up", writable=True),
                          wait_for=up_sock, name="upstream")
        sock = self.path("nbd.sock")
        self.start_daemon(["--blockdev", "driver=nbd,node-name=r0,server.type=unix,"
                           "server.path=%s,export=up" % bh.opt_escape(up_sock)]
                          + bh.nbd_server_unix(sock)
                          + bh.nbd_export("e0", "r0", name="e0", writable=True),
                          wait_for=sock, name="front")
        h = bh.nbd_connect(nbd, sock, "e0")
        self.addCleanup(h.shutdown)
        data = pattern(HUGE, 7)
        h.pwrite(data, 0)
        self.assertEqual(h.pread(HUGE, 0), data)
        q = self.connect_qmp(up_qmp)
        stats = q.cmd("query-block-exports")["return"][0]["stats"]
        self.assertEqual((stats["writes"], stats["bytes-written"]), (1, HUGE))
        self.assertEqual((stats["reads"], stats["bytes-read"]), (1, HUGE))


if __name__ == "__main__":
    bh.main()
