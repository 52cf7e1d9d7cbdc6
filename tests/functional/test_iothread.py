#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Exports on I/O threads (--object iothread, export iothread=).

One daemon serves four file exports: 'a0' and 'a1' on iothread io0, 'b0' on
io1, 'm' on the main loop. Several libnbd clients at once, each in its own
Python thread with requests in flight (queue depth > 1), write random
patterns and read them back; others leave with requests in flight. Then
per-test daemons: block-export-del (safe and hard) while clients run,
object-del of an iothread in use, and shutdown with clients connected.

Against qemu-storage-daemon: 7.2 asserts when a client of an iothread=
export disconnects, so the tests that need that are berth-only."""

import os
import random
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

DISK = 32 * MiB
EXPORTS = {"a0": "io0", "a1": "io0", "b0": "io1", "m": None}


def export_args(exp_id, node, iothread=None, extra=""):
    s = "type=nbd,id=%s,node-name=%s,name=%s,writable=on" % (exp_id, node, exp_id)
    if iothread:
        s += ",iothread=" + iothread
    return ["--export", s + extra]


def connect(sock, name, psk=None):
    """A libnbd handle on export `name`; over TLS with the PSK file `psk`
    (user alice) when given."""
    h = nbd.NBD()
    h.set_export_name(name)
    if psk:
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_psk_file(psk)
        h.set_tls_username("alice")
    h.connect_unix(sock)
    return h


def close(h):
    """Close the handle and its socket now (python3-libnbd 1.14 has no
    close(); __del__ closes, and skips a handle without _o)."""
    h.__del__()
    del h._o


def run_pattern(sock, name, base, size, seed, depth=8, block=64 * KiB, rounds=2, psk=None):
    """Write `size` bytes of a random pattern at `base` with `depth` requests
    in flight, read them back the same way and compare. Returns the
    number of bytes checked; raises on any difference."""
    h = connect(sock, name, psk)
    try:
        rng = random.Random(seed)
        for r in range(rounds):
            data = rng.randbytes(size)
            offsets = list(range(0, size, block))
            pending = []
            for off in offsets:
                while h.aio_in_flight() >= depth:
                    h.poll(-1)
                buf = nbd.Buffer.from_bytearray(bytearray(data[off:off + block]))
                pending.append(h.aio_pwrite(buf, base + off))
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for cookie in pending:
                h.aio_command_completed(cookie)     # raises if it failed
            reads = []
            for off in offsets:
                while h.aio_in_flight() >= depth:
                    h.poll(-1)
                buf = nbd.Buffer(block)
                reads.append((off, buf, h.aio_pread(buf, base + off)))
            while h.aio_in_flight() > 0:
                h.poll(-1)
            for off, buf, cookie in reads:
                h.aio_command_completed(cookie)
                if buf.to_bytearray() != data[off:off + block]:
                    raise AssertionError("%s: data differ at %d (round %d)"
                                         % (name, base + off, r))
        h.shutdown()
        return size * rounds
    finally:
        close(h)


def in_parallel(jobs):
    """Run callables in threads; re-raise the first failure."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:      # reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise AssertionError("a client thread hangs")


def leave_mid_flight(sock, name, base, count=64, block=64 * KiB):
    """Queue writes and reads, then drop the connection without waiting."""
    h = connect(sock, name)
    payload = nbd.Buffer.from_bytearray(bytearray(os.urandom(block)))
    for i in range(count):
        if i % 2:
            h.aio_pread(nbd.Buffer(block), base + i * block)
        else:
            h.aio_pwrite(payload, base + i * block)
    h.poll(0)
    close(h)            # the socket goes with requests in flight


def thread_ticks(pid):
    """{thread name: utime + stime ticks} of a process's threads."""
    ticks = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks[comm] = ticks.get(comm, 0) + int(fields[11]) + int(fields[12])
    return ticks


QSD_ABORTS = ("qemu-storage-daemon 7.2 aborts when a client of an iothread= export "
              "disconnects (nbd_blockdev_client_closed: qemu_in_main_thread())")


@unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
class SharedDaemon(bh.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sock = os.path.join(cls.class_dir, "nbd.sock")
        cls.qmp_path = os.path.join(cls.class_dir, "qmp.sock")
        args = ["--object", "iothread,id=io0", "--object", "iothread,id=io1"]
        for i, (exp, iot) in enumerate(EXPORTS.items()):
            f = os.path.join(cls.class_dir, "disk%d.img" % i)
            bh.make_sparse_file(f, DISK)
            args += bh.blockdev_file("n%d" % i, f)
        args += bh.nbd_server_unix(cls.sock, max_connections=0)
        for i, (exp, iot) in enumerate(EXPORTS.items()):
            args += export_args(exp, "n%d" % i, iot)
        args += bh.qmp_monitor(cls.qmp_path)
        cls.daemon = cls.start_class_daemon(args, wait_for=cls.sock)

    def test_parallel_clients_verify_patterns(self):
        """Two clients on every export (six on I/O threads, two on the
        main loop), all at once at queue depth 8, each on its own region:
        every byte reads back as written."""
        jobs = []
        for n, exp in enumerate(EXPORTS):
            for c in range(2):
                base = c * 8 * MiB
                jobs.append(lambda e=exp, b=base, s=n * 10 + c:
                            run_pattern(self.sock, e, b, 4 * MiB, s))
        in_parallel(jobs)

    def test_mixed_request_sizes_and_depths(self):
        """Small and large requests, deep queues, on both I/O threads at
        once: replies are never mixed up between connections."""
        jobs = []
        for k, (exp, block, depth) in enumerate([("a0", 4 * KiB, 32), ("a1", 1 * MiB, 4),
                                                 ("b0", 4 * KiB, 32), ("b0", 256 * KiB, 8),
                                                 ("m", 16 * KiB, 16)]):
            size = 2 * MiB if block < MiB else 8 * MiB
            jobs.append(lambda e=exp, b=block, d=depth, k=k, s=size:
                        run_pattern(self.sock, e, 16 * MiB + (k % 2) * 8 * MiB, s, 100 + k,
                                    depth=d, block=b, rounds=1))
        in_parallel(jobs)

    @bh.berth_only
    def test_clients_leave_mid_flight(self):
        """Clients that hang up with requests in flight leave cleanly,
        while others on the same I/O thread keep being served."""
        jobs = [lambda: run_pattern(self.sock, "a0", 0, 4 * MiB, 7, rounds=3)]
        for exp in ("a1", "b0", "m", "a1", "b0"):
            jobs.append(lambda e=exp: [leave_mid_flight(self.sock, e, 24 * MiB)
                                       for _ in range(5)])
        in_parallel(jobs)
        q = self.connect_qmp(self.qmp_path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            clients = q.cmd("query-nbd-clients")["return"]
            if not clients:
                break
            time.sleep(0.05)
        self.assertEqual(clients, [])
        run_pattern(self.sock, "b0", 0, 1 * MiB, 8, rounds=1)

    def test_churn_while_querying(self):
        """Clients connect, read and leave (some mid-flight) on both I/O
        threads while QMP keeps asking for the clients and exports: the
        answers stay well-formed and the daemon stays up."""
        q = self.connect_qmp(self.qmp_path)
        done = threading.Event()

        def churn(name, k):
            for i in range(25):
                if i % 3 == 0:
                    leave_mid_flight(self.sock, name, 28 * MiB, count=16)
                    continue
                h = connect(self.sock, name)
                h.pread(4096, (k * 25 + i) * 4096)
                h.shutdown()
                close(h)

        failures = []

        def all_churn():
            try:
                in_parallel([lambda e=e, k=k: churn(e, k)
                             for k, e in enumerate(("a0", "a1", "b0", "b0"))])
            except BaseException as e:  # reported by the test below
                failures.append(e)
            finally:
                done.set()

        t = threading.Thread(target=all_churn)
        t.start()
        queries = 0
        while not done.is_set():
            for c in q.cmd("query-nbd-clients")["return"]:
                self.assertIn("in-flight", c)
            exports = q.cmd("query-block-exports")["return"]
            self.assertEqual(sorted(e["id"] for e in exports), sorted(EXPORTS))
            queries += 1
        t.join()
        if failures:
            raise failures[0]
        self.assertGreater(queries, 0)
        run_pattern(self.sock, "a1", 0, 1 * MiB, 12, rounds=1)

    @bh.berth_only
    def test_query_block_exports_shows_iothread(self):
        q = self.connect_qmp(self.qmp_path)
        info = {e["id"]: e for e in q.cmd("query-block-exports")["return"]}
        for exp, iot in EXPORTS.items():
            if iot:
                self.assertEqual(info[exp]["iothread"], iot)
            else:
                self.assertNotIn("iothread", info[exp])

    @bh.berth_only
    def test_data_path_runs_on_the_iothread(self):
        """The CPU time of a load on 'b0' lands on io1's thread, not on
        the main loop's (thread CPU accounting, no timing asserted)."""
        before = thread_ticks(self.daemon.pid)
        deadline = time.monotonic() + 30
        while True:
            run_pattern(self.sock, "b0", 0, 4 * MiB, 9, block=4 * KiB, depth=16, rounds=1)
            after = thread_ticks(self.daemon.pid)
            io1 = after.get("iothread-io1", 0) - before.get("iothread-io1", 0)
            if io1 >= 20 or time.monotonic() > deadline:
                break
        main = after.get("berthd", 0) - before.get("berthd", 0)
        self.assertGreaterEqual(io1, 20, after)
        self.assertLess(main, io1 / 4, (before, after))

    @bh.berth_only
    def test_object_del_in_use_refused(self):
        """berth refuses to delete an iothread that exports use. (QSD 7.2
        deletes it, and aborts at the next command that reaches the
        export's context: a deliberate deviation.)"""
        q = self.connect_qmp(self.qmp_path)
        r = q.cmd("object-del", id="io0")
        self.assertIn("error", r)
        self.assertIn("in use", r["error"]["desc"])
        run_pattern(self.sock, "a0", 0, 1 * MiB, 11, rounds=1)


class OwnDaemon(bh.DaemonTestCase):
    def start(self, n_iothreads=1):
        self.sock = self.path("nbd.sock")
        self.qmp_path = self.path("qmp.sock")
        args = []
        for i in range(n_iothreads):
            args += ["--object", "iothread,id=io%d" % i]
        f = self.path("disk.img")
        bh.make_sparse_file(f, DISK)
        args += bh.blockdev_file("n0", f)
        args += bh.nbd_server_unix(self.sock, max_connections=0)
        args += bh.qmp_monitor(self.qmp_path)
        self.daemon = self.start_daemon(args, wait_for=self.sock)
        self.qmp = self.connect_qmp(self.qmp_path)

    def add_export(self, exp_id, iothread, **extra):
        args = {"type": "nbd", "id": exp_id, "node-name": "n0", "name": exp_id,
                "writable": True, "iothread": iothread}
        args.update(extra)
        self.assertEqual(self.qmp.cmd("block-export-add", args), {"return": {}})

    def busy_clients(self, name, count):
        """Clients that keep requests in flight until their connection
        fails; returns (threads, stop event, list of errors seen)."""
        stop = threading.Event()
        seen = []
        started = threading.Barrier(count + 1)

        def client(k):
            h = connect(self.sock, name)
            buf = nbd.Buffer.from_bytearray(bytearray(os.urandom(64 * KiB)))
            started.wait()
            try:
                while not stop.is_set():
                    while h.aio_in_flight() < 8:
                        h.aio_pwrite(buf, (k * 64 + random.randrange(64)) * 64 * KiB)
                    h.poll(-1)
            except nbd.Error as e:
                seen.append(e)
            finally:
                close(h)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(count)]
        for t in threads:
            t.start()
        started.wait(30)
        return threads, stop, seen

    def wait_event(self, name, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.qmp.events:
                if e["event"] == name:
                    return e
            self.qmp.poll_events(0.1)
        self.fail("no %s event" % name)

    @unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
    def test_export_del_hard_with_clients(self):
        """block-export-del mode=hard drops busy clients of an I/O-thread
        export; then the iothread can go (object-del)."""
        self.start()
        self.assertEqual(self.qmp.cmd("object-add", {"qom-type": "iothread", "id": "iox"}),
                         {"return": {}})
        self.add_export("e", "iox", **{"fixed-iothread": True})
        threads, stop, seen = self.busy_clients("e", 4)
        time.sleep(0.3)
        self.assertEqual(self.qmp.cmd("block-export-del", id="e", mode="hard"),
                         {"return": {}})
        self.assertEqual(self.wait_event("BLOCK_EXPORT_DELETED")["data"], {"id": "e"})
        for t in threads:
            t.join(30)
        stop.set()
        self.assertEqual(len(seen), 4, "every client saw its connection end")
        # Requests the clients left in flight finish on iox before it may go.
        deadline = time.monotonic() + 10
        while True:
            r = self.qmp.cmd("object-del", id="iox")
            if "return" in r or time.monotonic() > deadline:
                break
            self.assertIn("in use", r["error"]["desc"])
            time.sleep(0.05)
        self.assertEqual(r, {"return": {}})
        self.assertEqual(self.qmp.cmd("query-block-exports"), {"return": []})

    @unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
    def test_export_del_safe_waits_for_clients(self):
        """mode=safe: the export stays (shutting down) while a client of
        its I/O thread is connected, and goes when it leaves."""
        self.start()
        self.add_export("e", "io0")
        h = connect(self.sock, "e")
        self.assertEqual(self.qmp.cmd("block-export-del", id="e"), {"return": {}})
        info = self.qmp.cmd("query-block-exports")["return"]
        self.assertEqual([(e["id"], e["shutting-down"]) for e in info], [("e", True)])
        self.assertEqual(h.pread(4096, 0), bytes(4096))
        h.shutdown()
        close(h)
        self.assertEqual(self.wait_event("BLOCK_EXPORT_DELETED")["data"], {"id": "e"})
        self.assertEqual(self.qmp.cmd("object-del", id="io0"), {"return": {}})

    @unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
    def test_nbd_client_disconnect_and_server_stop(self):
        """nbd-client-disconnect and nbd-server-stop reach clients that
        live on I/O threads."""
        self.start(n_iothreads=2)
        self.add_export("e0", "io0")
        self.add_export("e1", "io1")
        threads, stop, seen = self.busy_clients("e0", 2)
        threads1, stop1, seen1 = self.busy_clients("e1", 2)
        clients = self.qmp.cmd("query-nbd-clients")["return"]
        self.assertEqual(len(clients), 4)
        self.assertEqual(self.qmp.cmd("nbd-client-disconnect", id=clients[0]["id"]),
                         {"return": {}})
        self.assertEqual(self.qmp.cmd("nbd-server-stop"), {"return": {}})
        for t in threads + threads1:
            t.join(30)
        stop.set()
        stop1.set()
        self.assertEqual(len(seen) + len(seen1), 4)
        self.assertEqual(self.qmp.cmd("query-nbd-clients"), {"return": []})

    @unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
    def test_shutdown_with_busy_clients(self):
        """SIGTERM while clients of two I/O threads have requests in
        flight: berthd exits with status 0 (checked at cleanup)."""
        self.start(n_iothreads=2)
        self.add_export("e0", "io0")
        self.add_export("e1", "io1")
        threads, stop, _ = self.busy_clients("e0", 2)
        threads1, stop1, _ = self.busy_clients("e1", 2)
        time.sleep(0.3)
        self.daemon.stop()
        for t in threads + threads1:
            t.join(30)
        stop.set()
        stop1.set()

    @unittest.skipIf(bh.is_qsd(), QSD_ABORTS)
    @bh.needs_tools("psktool")
    def test_tls_clients_on_two_iothreads(self):
        """TLS (PSK) sessions are set up on the main loop and carried on by
        the I/O threads: parallel verified patterns on io0 and io1."""
        keys = self.path("keys.psk")
        bh.run_tool(["psktool", "-u", "alice", "-p", keys])
        self.sock = self.path("nbd.sock")
        f = self.path("disk.img")
        bh.make_sparse_file(f, DISK)
        self.start_daemon(["--object", "iothread,id=io0", "--object", "iothread,id=io1",
                           "--object", "tls-creds-psk,id=t0,dir=%s,endpoint=server"
                           % bh.opt_escape(self.tmpdir)]
                          + bh.blockdev_file("n0", f)
                          + ["--nbd-server", "addr.type=unix,addr.path=%s,tls-creds=t0"
                             % bh.opt_escape(self.sock)]
                          + export_args("e0", "n0", "io0") + export_args("e1", "n0", "io1"),
                          wait_for=self.sock)
        in_parallel([lambda k=k: run_pattern(self.sock, "e%d" % (k % 2), k * 4 * MiB, 2 * MiB,
                                             300 + k, psk=keys)
                     for k in range(4)])

    @bh.berth_only
    def test_iothread_list_spreads_connections(self):
        """iothread given as a list (the form QEMU's schema later gave the
        member, which QSD 7.2 does not have): the connections of one
        multi-conn export go to io0 and io1 in turn, each carries its data
        path on its own thread, and the data is right."""
        self.sock = self.path("nbd.sock")
        self.qmp_path = self.path("qmp.sock")
        f = self.path("disk.img")
        bh.make_sparse_file(f, DISK)
        self.daemon = self.start_daemon(
            ["--object", "iothread,id=io0", "--object", "iothread,id=io1"]
            + bh.blockdev_file("n0", f) + bh.nbd_server_unix(self.sock, max_connections=0)
            + export_args("e", "n0", extra=",iothread.0=io0,iothread.1=io1,multi-conn=on")
            + bh.qmp_monitor(self.qmp_path), wait_for=self.sock)
        self.qmp = self.connect_qmp(self.qmp_path)
        info = self.qmp.cmd("query-block-exports")["return"]
        self.assertEqual(info[0]["iothread"], ["io0", "io1"])

        handles = [connect(self.sock, "e") for _ in range(4)]
        self.assertTrue(all(h.can_multi_conn() for h in handles))
        clients = self.qmp.cmd("query-nbd-clients")["return"]
        self.assertEqual(sorted(c["iothread"] for c in clients), ["io0", "io0", "io1", "io1"])
        for h in handles:
            close(h)

        before = thread_ticks(self.daemon.pid)
        deadline = time.monotonic() + 60
        while True:
            in_parallel([lambda k=k: run_pattern(self.sock, "e", k * 8 * MiB, 4 * MiB, 500 + k,
                                                 block=4 * KiB, depth=16, rounds=1)
                         for k in range(4)])
            after = thread_ticks(self.daemon.pid)
            spent = [after.get(t, 0) - before.get(t, 0) for t in ("iothread-io0", "iothread-io1")]
            if min(spent) >= 10 or time.monotonic() > deadline:
                break
        self.assertGreaterEqual(min(spent), 10, (before, after))
        main = after.get("berthd", 0) - before.get("berthd", 0)
        self.assertLess(main, sum(spent) / 4, (before, after))

        # Both threads are in use: neither can go while the export lives.
        for iot in ("io0", "io1"):
            r = self.qmp.cmd("object-del", id=iot)
            self.assertIn("in use", r["error"]["desc"])
        self.assertEqual(self.qmp.cmd("block-export-del", id="e"), {"return": {}})
        self.wait_event("BLOCK_EXPORT_DELETED")
        for iot in ("io0", "io1"):
            self.assertEqual(self.qmp.cmd("object-del", id=iot), {"return": {}})

    @bh.berth_only
    def test_iothread_list_refusals(self):
        self.start(n_iothreads=2)
        base = {"type": "nbd", "id": "e", "node-name": "n0"}
        cases = [
            ({"iothread": []}, "at least one iothread"),
            ({"iothread": ["io0", 7]}, "'iothread[1]', expected: string"),
            ({"iothread": {"a": 1}}, "expected: a string or an array of strings"),
            ({"iothread": ["io0", "io9"]}, 'iothread "io9" not found'),
            ({"iothread": ["io0", "io1"], "fixed-iothread": True},
             "fixed-iothread cannot be used with a list"),
        ]
        for extra, text in cases:
            r = self.qmp.cmd("block-export-add", dict(base, **extra))
            self.assertIn(text, r.get("error", {}).get("desc", ""), (extra, r))
        # Nothing was left pinned by the refusals.
        self.assertEqual(self.qmp.cmd("object-del", id="io1"), {"return": {}})
        # One thread in a list is a list of one, and shown as such.
        self.add_export("e", ["io0"])
        info = self.qmp.cmd("query-block-exports")["return"]
        self.assertEqual(info[0]["iothread"], ["io0"])
        h = connect(self.sock, "e")
        h.pwrite(b"x" * 4096, 0)
        self.assertEqual(h.pread(4096, 0), b"x" * 4096)
        close(h)

    def test_iothread_must_exist(self):
        self.start()
        r = self.qmp.cmd("block-export-add", {"type": "nbd", "id": "e", "node-name": "n0",
                                              "iothread": "nope"})
        self.assertIn("error", r)
        self.assertIn("nope", r["error"]["desc"])

    def test_export_on_iothread_serves(self):
        """What QSD 7.2 survives too: a client that reads and writes over
        an iothread= export (and stays connected until the daemon stops)."""
        self.start()
        self.add_export("e", "io0", **{"fixed-iothread": True})
        h = connect(self.sock, "e")
        data = os.urandom(1 * MiB)
        h.pwrite(data, 0)
        self.assertEqual(h.pread(len(data), 0), data)
        self.daemon.stop()


if __name__ == "__main__":
    bh.require_tools()
    bh.main()
