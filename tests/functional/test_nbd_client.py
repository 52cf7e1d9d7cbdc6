#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""driver=nbd: the daemon under test as an NBD *client* (issue 7).

The scheme of every test: a peer NBD server P serves an image; the daemon
under test D (berthd, or qemu-storage-daemon with $BERTHD pointing at it)
opens P with `--blockdev driver=nbd,...` or QMP `blockdev-add`, and
re-exports that node with its own NBD server.  Real clients (libnbd, qemu-io,
qemu-img, nbdcopy, nbdinfo) read and write through D; the bytes are checked
in P's backing file or by reading P directly.

  Peers           P is nbdkit (file and memory plugins, with and without
                  structured replies), qemu-nbd, qemu-storage-daemon,
                  nbd-server and berthd: patterns at aligned and unaligned
                  offsets, flush, zero, trim, block status compared with P's
  Tls             P is qemu-nbd with x509 credentials, over a unix socket and
                  over TCP; a wrong tls-hostname is refused
  QmpReexport     blockdev-add over QMP; nbdcopy through D is byte-exact
  Unreachable     nobody listening: blockdev-add fails naming the address,
                  and D stays healthy
  PeerDeath       P is SIGKILLed under load: an error, not a hang; with
                  reconnect-delay the I/O issued while P is down waits and
                  resumes when P comes back (QEMU's documented contract),
                  or fails once the delay has passed
  BadServers      fake servers (nbd_fake_server.py) that break the protocol
                  on a READ: the client gets an error, D survives and can
                  still add nodes

Where berthd and qemu-storage-daemon legitimately differ (the wording of an
error), the tests assert what matters: the message names the address."""

import contextlib
import errno
import json
import os
import random
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
from berth_harness import KiB, MiB
import nbd_fake_server as fake

nbd = bh.import_nbd()

SANITIZED = bh.SANITIZED
SLOW = (3.0 if SANITIZED else 1.0) * bh.SLOW    # scale for every time bound
SIZE = 16 * MiB
EXPORT = "x"                        # the name of D's re-export
HANG = 20.0 * SLOW                  # an I/O slower than this is a hang
RECONNECT_DELAY = 4                 # seconds, for the reconnect tests

# (offset, length): aligned, unaligned, straddling a MiB boundary, the end
PATTERN_SPOTS = [(0, 4096), (MiB + 1, 777), (3 * MiB - 100, 300),
                 (5 * MiB + 12345, 64 * KiB + 3), (SIZE - 512, 512)]
# The image each peer starts from: data here, holes elsewhere.
IMAGE_DATA = [(2 * MiB, MiB), (12 * MiB, 512 * KiB)]


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def make_image(path, size=SIZE, data=IMAGE_DATA, seed=1):
    with open(path, "wb") as f:
        f.truncate(size)
        for i, (off, n) in enumerate(data):
            f.seek(off)
            f.write(pattern(seed * 100 + i, n))
    return path


def aligned(offset, length, align):
    """The smallest range aligned to align that covers [offset, +length)."""
    start = offset - offset % align
    end = -(-(offset + length) // align) * align
    return start, end - start


def read_file(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def find_berthd():
    """The berthd binary, for the peer role: also found when the daemon
    under test is qemu-storage-daemon ($BERTHD under meson, else the build
    folder)."""
    seen = []
    for c in (os.environ.get("BERTHD"), bh.DAEMON_PATH,
              os.path.join(bh.SOURCE_ROOT, "build", "tools", "berthd")):
        if not c:
            continue
        p = c if os.sep in c else shutil.which(c)
        if p and os.access(p, os.X_OK) and p not in seen:
            seen.append(p)
    for p in seen:
        try:
            out = subprocess.run([p, "--version"], stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.startswith(b"berthd"):
            return p
    return None


def find_qsd():
    if bh.is_qsd():
        return bh.DAEMON_PATH
    return shutil.which("qemu-storage-daemon")


BERTHD_PEER = find_berthd()
QSD_PEER = find_qsd()


def unix_listening(path):
    """Whether a socket listens on path, without connecting to it (a
    connection would use up nbd-server's only one)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == path \
                        and int(parts[3], 16) & 0x10000:   # __SO_ACCEPTCON
                    return True
    except OSError:
        pass
    return False


def nbd_blockdev(node, sock=None, host=None, port=None, export=None,
                 tls_creds=None, tls_hostname=None, reconnect_delay=None):
    """A --blockdev option for driver=nbd, in QEMU's option names."""
    s = "driver=nbd,node-name=%s" % node
    if sock is not None:
        s += ",server.type=unix,server.path=%s" % bh.opt_escape(sock)
    else:
        s += ",server.type=inet,server.host=%s,server.port=%d" % (host, port)
    if export is not None:
        s += ",export=%s" % bh.opt_escape(export)
    if tls_creds:
        s += ",tls-creds=%s" % tls_creds
    if tls_hostname:
        s += ",tls-hostname=%s" % tls_hostname
    if reconnect_delay is not None:
        s += ",reconnect-delay=%d" % reconnect_delay
    return ["--blockdev", s]


def nbd_map(uri):
    """nbdinfo --map as [(offset, length, type)], adjacent equal types merged."""
    _, out, _ = bh.run_tool(["nbdinfo", "--map", "--json", uri])
    merged = []
    for e in json.loads(out):
        o, n, t = e["offset"], e["length"], e["type"]
        if merged and merged[-1][2] == t and merged[-1][0] + merged[-1][1] == o:
            merged[-1] = (merged[-1][0], merged[-1][1] + n, t)
        else:
            merged.append((o, n, t))
    return merged


def wait_commands(h, cookies, timeout=HANG):
    """Waits for libnbd aio commands, never longer than timeout (then
    TimeoutError); returns {cookie: None, or the nbd.Error it failed with}."""
    done = {}
    deadline = time.monotonic() + timeout
    while True:
        for c in cookies:
            if c not in done:
                try:
                    if h.aio_command_completed(c):
                        done[c] = None
                except nbd.Error as e:
                    done[c] = e
        if len(done) == len(cookies):
            return done
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("%d of %d requests unanswered after %.0f s"
                               % (len(cookies) - len(done), len(cookies), timeout))
        try:
            h.poll(int(min(left, 0.5) * 1000) + 1)
        except nbd.Error as e:          # the connection is gone
            for c in cookies:
                done.setdefault(c, e)


def bounded_pread(h, length, offset, timeout=HANG):
    """pread that cannot hang: returns the data, raises nbd.Error, or
    raises TimeoutError."""
    buf = nbd.Buffer(length)
    cookie = h.aio_pread(buf, offset)
    err = wait_commands(h, [cookie], timeout)[cookie]
    if err is not None:
        raise err
    return bytes(buf.to_bytearray())


class Peer:
    """A peer NBD server: how to reach it and how to look at its data."""

    def __init__(self, daemon, sock, export=None, image=None, direct=True,
                 block_status=True, host=None, port=None):
        self.daemon = daemon
        self.sock = sock
        self.export = export            # the name D must ask for
        self.image = image              # its backing file, if any
        self.direct = direct            # may the test connect to it too?
        self.block_status = block_status
        self.host, self.port = host, port

    def uri(self):
        return bh.nbd_uri(self.sock, self.export or "")

    def blockdev(self, node, **kw):
        if self.sock:
            return nbd_blockdev(node, sock=self.sock, export=self.export, **kw)
        return nbd_blockdev(node, host=self.host, port=self.port,
                            export=self.export, **kw)

    def read(self, offset, length):
        """What P holds, from its file or over a direct connection."""
        if self.image:
            return read_file(self.image, offset, length)
        with bh.nbd_handle(nbd, self.sock, self.export or "") as h:
            return h.pread(length, offset)


class NbdClientCase(bh.DaemonTestCase):
    """Starting peers and the daemon under test; QMP; checks."""

    # -- processes ----------------------------------------------------------

    def start_peer(self, argv, name, wait_for=None, wait_tcp=None,
                   wait_listening=None):
        """Any server binary under the harness's watchdog; stopped with
        SIGTERM (status not checked: it is not what is under test)."""
        d = self.start_daemon(argv[1:], exe=argv[0], wait_for=wait_for, wait_tcp=wait_tcp,
                              name=name, stop=self._stop_peer)
        deadline = time.monotonic() + bh.START_TIMEOUT * SLOW
        while wait_listening and not unix_listening(wait_listening):
            if not d.alive() or time.monotonic() > deadline:
                d.kill()
                raise bh.DaemonError("%s is not listening on %s\n%s"
                                     % (name, wait_listening, d.describe()))
            time.sleep(0.02)
        return d

    @staticmethod
    def _stop_peer(d):
        if d.alive():
            d.send_signal(signal.SIGTERM)
            d.wait_exit(bh.STOP_TIMEOUT)      # SIGKILLs on timeout

    def nbdkit(self, plugin_args, name="nbdkit", sock=None, extra=()):
        sock = sock or self.path(name + ".sock")
        if os.path.exists(sock):
            os.unlink(sock)     # a SIGKILLed nbdkit leaves its socket behind
        d = self.start_peer(["nbdkit", "-f", "--exit-with-parent", "-U", sock]
                            + list(extra) + list(plugin_args),
                            name, wait_for=sock)
        return d, sock

    def peer_nbdkit_file(self, extra=(), name="nbdkit-file"):
        img = make_image(self.path(name + ".img"))
        d, sock = self.nbdkit(["file", img], name=name, extra=extra)
        return Peer(d, sock, image=img, block_status="--no-sr" not in extra)

    def peer_nbdkit_memory(self):
        d, sock = self.nbdkit(["memory", "size=%d" % SIZE], name="nbdkit-mem")
        # give it the same starting content as the file peers
        with bh.nbd_handle(nbd, sock, "") as h:
            for i, (off, n) in enumerate(IMAGE_DATA):
                h.pwrite(pattern(100 + i, n), off)
        return Peer(d, sock)

    def peer_qemu_nbd(self, extra=(), sock=None, tcp_port=None, name="qemu-nbd",
                      img=None):
        img = img or make_image(self.path(name + ".img"))
        args = ["qemu-nbd", "-f", "raw", "-x", "qn", "-t", "--shared=8",
                "--discard=unmap"] + list(extra)
        if tcp_port:
            args += ["-b", "127.0.0.1", "-p", str(tcp_port)]
            d = self.start_peer(args + [img], name, wait_tcp=("127.0.0.1", tcp_port))
            return Peer(d, None, export="qn", image=img, host="127.0.0.1",
                        port=tcp_port)
        sock = sock or self.path(name + ".sock")
        d = self.start_peer(args + ["-k", sock, img], name, wait_for=sock)
        return Peer(d, sock, export="qn", image=img)

    def peer_storage_daemon(self, binary, name):
        img = make_image(self.path(name + ".img"))
        sock = self.path(name + ".sock")
        d = self.start_peer([binary]
                            + bh.blockdev_file("f", img, discard="unmap")
                            + bh.nbd_server_unix(sock)
                            + bh.nbd_export("e", "f", "peer", writable=True),
                            name, wait_for=sock)
        return Peer(d, sock, export="peer", image=img)

    def peer_nbd_server(self):
        img = make_image(self.path("nbd-server.img"))
        sock = self.path("nbd-server.sock")
        cfg = self.path("nbd-server.conf")
        with open(cfg, "w") as f:
            f.write("[generic]\nunixsock = %s\n"
                    "[ns]\nexportname = %s\nfilesize = %d\n"
                    "flush = true\nfua = true\ntrim = true\n" % (sock, img, SIZE))
        # -d: stay in the foreground.  It then serves one connection and
        # exits, so the readiness check must not connect.
        d = self.start_peer(["nbd-server", "-C", cfg, "-d"], "nbd-server",
                            wait_listening=sock)
        return Peer(d, sock, export="ns", image=img, direct=False,
                    block_status=False)

    def start_d(self, blockdev=(), objects=(), export=True, writable=True,
                exports=(), name="D"):
        """The daemon under test with an NBD server, a QMP monitor, the given
        nodes, (export=True) node 'remote' exported as EXPORT and the other
        --export options given."""
        dsock = self.path(name + ".sock")
        qsock = self.path(name + "-qmp.sock")
        args = []
        for o in objects:
            args += ["--object", o]
        args += list(blockdev) + bh.nbd_server_unix(dsock)
        if export:
            args += bh.nbd_export("e", "remote", EXPORT, writable=writable)
        args += list(exports)
        args += bh.qmp_monitor(qsock)
        d = self.start_daemon(args, wait_for=dsock, name=name)
        d.wait_unix(qsock)
        d.sock, d.qmp_path = dsock, qsock
        return d

    def qmp(self, d):
        return self.connect_qmp(d.qmp_path, timeout=10 * SLOW)

    def connect(self, sock, name=EXPORT, **kw):
        h = bh.nbd_connect(nbd, sock, name, **kw)
        self.addCleanup(self._close_handle, h)
        return h

    @staticmethod
    def _close_handle(h):
        with contextlib.suppress(Exception):
            h.shutdown()
        with contextlib.suppress(Exception):
            h.close()

    def d_uri(self, d, name=EXPORT):
        return bh.nbd_uri(d.sock, name)

    # -- QMP helpers --------------------------------------------------------

    def node_names(self, q):
        r = q.cmd("query-named-block-nodes")
        self.assertIn("return", r, r)
        return {n["node-name"]: n for n in r["return"]}

    def remove_export_and_node(self, q, export_id, node):
        r = q.cmd("block-export-del", {"id": export_id})
        self.assertEqual(r, {"return": {}})
        deadline = time.monotonic() + 10 * SLOW
        while True:
            ids = [e["id"] for e in q.cmd("query-block-exports")["return"]]
            if export_id not in ids:
                break
            self.assertLess(time.monotonic(), deadline,
                            "export %s still listed" % export_id)
            time.sleep(0.05)
        self.assertEqual(q.cmd("blockdev-del", {"node-name": node}), {"return": {}})
        self.assertNotIn(node, self.node_names(q))

    # -- the data checks ----------------------------------------------------

    def check_read_write(self, d, peer, seed=7, structured=True):
        """Patterns through D land in P; zero and trim; flush."""
        h = self.connect(d.sock, structured=structured)
        self.assertEqual(h.get_size(), SIZE)
        self.assertFalse(h.is_read_only())
        # what P started with is what D reads
        for off, n in IMAGE_DATA:
            self.assertEqual(h.pread(n, off), peer.read(off, n),
                             "initial content at %d differs" % off)
        # Unaligned requests where D allows them: its minimum block size
        # (QEMU's client asks for 512 when P has no structured replies).
        align = max(1, h.get_block_size(nbd.SIZE_MINIMUM))
        spots = [aligned(off, n, align) for off, n in PATTERN_SPOTS]
        for i, (off, n) in enumerate(spots):
            h.pwrite(pattern(seed * 1000 + i, n), off)
        for i, (off, n) in enumerate(spots):
            self.assertEqual(h.pread(n, off), pattern(seed * 1000 + i, n),
                             "read back through D at %d" % off)
        # a read spanning several patterns and the gaps between them
        whole = h.pread(6 * MiB, 0)
        for i, (off, n) in enumerate(spots):
            if off + n <= 6 * MiB:
                self.assertEqual(whole[off:off + n], pattern(seed * 1000 + i, n))
        if h.can_flush():
            h.flush()
        for i, (off, n) in enumerate(spots):
            self.assertEqual(peer.read(off, n), pattern(seed * 1000 + i, n),
                             "P does not hold what was written through D at %d"
                             % off)
        # FUA write
        if h.can_fua():
            h.pwrite(pattern(seed, 4096), 6 * MiB, nbd.CMD_FLAG_FUA)
            self.assertEqual(peer.read(6 * MiB, 4096), pattern(seed, 4096))
        # write zeroes: unaligned head and tail
        if h.can_zero():
            h.pwrite(pattern(seed + 1, 256 * KiB), 8 * MiB)
            zoff, zlen = aligned(8 * MiB + 1000, 100 * KiB + 3, align)
            h.zero(zlen, zoff)
            if h.can_flush():
                h.flush()
            expect = bytearray(pattern(seed + 1, 256 * KiB))
            expect[zoff - 8 * MiB:zoff - 8 * MiB + zlen] = bytes(zlen)
            self.assertEqual(h.pread(256 * KiB, 8 * MiB), bytes(expect))
            self.assertEqual(peer.read(8 * MiB, 256 * KiB), bytes(expect))
        # trim: the content afterwards is unspecified, but D and P agree
        if h.can_trim():
            h.pwrite(pattern(seed + 2, MiB), 10 * MiB)
            if h.can_flush():
                h.flush()
            h.trim(MiB, 10 * MiB)
            if h.can_flush():
                h.flush()
            self.assertEqual(h.pread(MiB, 10 * MiB), peer.read(10 * MiB, MiB))
        return h

    def check_block_status(self, d, peer):
        """D's map is P's map; a range D calls zero reads as zeros."""
        dmap = nbd_map(self.d_uri(d))
        self.assertEqual(sum(n for _, n, _ in dmap), SIZE)
        if peer.block_status and peer.direct:
            self.assertEqual(dmap, nbd_map(peer.uri()),
                             "block status through D differs from P's")
        if peer.block_status and peer.image \
                and bh.filesystem_reports_holes(self.tmpdir):
            # the untouched tail of the image is a hole in P and in D
            self.assertTrue(any(t & 2 and o <= 14 * MiB and o + n >= 15 * MiB
                                for o, n, t in dmap), dmap)
        with bh.nbd_handle(nbd, d.sock, EXPORT) as h:
            for o, n, t in dmap:
                if t & 2:
                    for off in range(o, o + n, 4 * MiB):
                        k = min(4 * MiB, o + n - off)
                        self.assertEqual(h.pread(k, off), bytes(k),
                                         "D reports zero at %d but has data" % off)
                else:
                    self.assertTrue(peer.block_status or t == 0,
                                    "D reports a hole P cannot know: %r" % ((o, n, t),))

    def check_tools(self, d, peer):
        """qemu-io writes through D and reads through P; qemu-img sees D and
        P as identical."""
        if shutil.which("qemu-io"):
            bh.run_tool(["qemu-io", "-f", "raw", "-c", "write -P 0x5c 7M 64k",
                         "-c", "write -P 0x5d 7340033 513", "-c", "flush",
                         self.d_uri(d)])
            _, out, _ = bh.run_tool(["qemu-io", "-f", "raw", "-r",
                                     "-c", "read -P 0x5c 7M 1",
                                     "-c", "read -P 0x5d 7340033 513",
                                     "-c", "read -P 0x5c 7340546 65022",
                                     self.d_uri(d)])
            self.assertNotIn("verification failed", out)
            self.assertEqual(peer.read(7 * MiB + 1, 513), b"\x5d" * 513)
        if shutil.which("qemu-img"):
            other = peer.uri() if peer.direct else peer.image
            bh.run_tool(["qemu-img", "compare", "-f", "raw", "-F", "raw",
                         self.d_uri(d), other])


# ---------------------------------------------------------------------------
# 1, 2: every kind of peer, structured replies on and off

class Peers(NbdClientCase):

    def run_peer(self, peer, structured=True):
        d = self.start_d(peer.blockdev("remote"))
        self.check_read_write(d, peer, structured=structured)
        if shutil.which("nbdinfo"):
            self.check_block_status(d, peer)
        self.check_tools(d, peer)
        q = self.qmp(d)
        node = self.node_names(q)["remote"]
        self.assertEqual(node["drv"], "nbd")
        self.assertEqual(node["image"]["virtual-size"], SIZE)

    def test_nbdkit_file(self):
        self.run_peer(self.peer_nbdkit_file())

    def test_nbdkit_memory(self):
        self.run_peer(self.peer_nbdkit_memory())

    def test_nbdkit_without_structured_replies(self):
        peer = self.peer_nbdkit_file(extra=["--no-sr"], name="nbdkit-nosr")
        with bh.nbd_handle(nbd, peer.sock, "") as h:
            self.assertFalse(h.get_structured_replies_negotiated())
        self.run_peer(peer)

    def test_client_without_structured_replies(self):
        """libnbd without structured replies to D, D with them to P."""
        self.run_peer(self.peer_nbdkit_file(), structured=False)

    @bh.needs_tools("qemu-nbd")
    def test_qemu_nbd(self):
        self.run_peer(self.peer_qemu_nbd())

    @unittest.skipIf(QSD_PEER is None, "qemu-storage-daemon not installed")
    def test_qemu_storage_daemon(self):
        self.run_peer(self.peer_storage_daemon(QSD_PEER, "qsd-peer"))

    @unittest.skipIf(BERTHD_PEER is None, "berthd binary not found for the peer role")
    def test_berthd(self):
        self.run_peer(self.peer_storage_daemon(BERTHD_PEER, "berthd-peer"))

    @bh.needs_tools("nbd-server")
    def test_nbd_server(self):
        self.run_peer(self.peer_nbd_server())

    def test_inet_peer(self):
        port = bh.free_tcp_port()
        img = make_image(self.path("tcp.img"))
        pd = self.start_peer(["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1",
                              "-p", str(port), "file", img], "nbdkit-tcp",
                             wait_tcp=("127.0.0.1", port))
        peer = Peer(pd, None, image=img, host="127.0.0.1", port=port, direct=False)
        d = self.start_d(peer.blockdev("remote"))
        self.check_read_write(d, peer)


# ---------------------------------------------------------------------------
# 3: TLS against qemu-nbd

@bh.needs_tools("qemu-nbd", "certtool")
class Tls(NbdClientCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = bh.Pki(os.path.join(cls.class_dir, "pki"))
        cls.x509 = staticmethod(bh.x509_object)

    def tls_peer(self, tcp_port=None):
        return self.peer_qemu_nbd(
            extra=["--object", self.x509("tls0", self.pki.server, endpoint="server"),
                   "--tls-creds", "tls0"], tcp_port=tcp_port, name="qemu-nbd-tls")

    def client_object(self):
        return self.x509("tls0", self.pki.client, endpoint="client")

    def test_unix_socket(self):
        peer = self.tls_peer()
        # the peer does refuse plaintext
        h = nbd.NBD()
        h.set_export_name("qn")
        with self.assertRaises(nbd.Error):
            h.connect_unix(peer.sock)
        d = self.start_d(peer.blockdev("remote", tls_creds="tls0",
                                       tls_hostname="localhost"),
                         objects=[self.client_object()])
        peer.direct = False
        self.check_read_write(d, peer, seed=31)

    def test_tcp_hostname_from_address(self):
        """Without tls-hostname the certificate is checked against the
        host (127.0.0.1, in the server certificate's SAN)."""
        peer = self.tls_peer(tcp_port=bh.free_tcp_port())
        d = self.start_d(peer.blockdev("remote", tls_creds="tls0"),
                         objects=[self.client_object()])
        self.check_read_write(d, peer, seed=32)

    def test_wrong_hostname_and_no_creds_refused(self):
        peer = self.tls_peer()
        d = self.start_d(objects=[self.client_object()], export=False)
        q = self.qmp(d)
        base = {"driver": "nbd", "server": {"type": "unix", "path": peer.sock},
                "export": "qn"}
        r = q.cmd("blockdev-add", dict(base, **{"node-name": "bad",
                                               "tls-creds": "tls0",
                                               "tls-hostname": "wrong.example.com"}))
        self.assertIn("error", r, "a certificate for localhost accepted for "
                      "wrong.example.com: %r" % r)
        self.assertNotIn("bad", self.node_names(q))
        r = q.cmd("blockdev-add", dict(base, **{"node-name": "plain"}))
        self.assertIn("error", r, "plaintext connection to a TLS-only server: %r" % r)
        r = q.cmd("blockdev-add", dict(base, **{"node-name": "nocreds",
                                               "tls-creds": "nope"}))
        self.assertIn("error", r)
        # and the right hostname works on the same daemon
        r = q.cmd("blockdev-add", dict(base, **{"node-name": "good",
                                               "tls-creds": "tls0",
                                               "tls-hostname": "localhost"}))
        self.assertEqual(r, {"return": {}})
        self.assertEqual(self.node_names(q)["good"]["drv"], "nbd")
        self.assertEqual(q.cmd("blockdev-del", {"node-name": "good"}), {"return": {}})


# ---------------------------------------------------------------------------
# 4: blockdev-add over QMP, nbdcopy through the re-export

@bh.needs_tools("nbdcopy")
class QmpReexport(NbdClientCase):

    def add_and_export(self, q, server, writable):
        r = q.cmd("blockdev-add", {"driver": "nbd", "node-name": "remote",
                                   "server": server})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "e", "node-name": "remote",
                                       "name": EXPORT, "writable": writable})
        self.assertEqual(r, {"return": {}})
        node = self.node_names(q)["remote"]
        self.assertEqual(node["drv"], "nbd")

    def assertFilesEqual(self, a, b):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(MiB), fb.read(MiB)
                self.assertTrue(x == y, "%s and %s differ" % (a, b))
                if not x:
                    break

    def test_nbdcopy_out_and_in(self):
        src = bh.make_pattern_file(self.path("src.img"), 6 * MiB, seed=5,
                                   sparse_every=512 * KiB)
        _, psock = self.nbdkit(["file", src], name="nbdkit-src")
        d = self.start_d(export=False)
        q = self.qmp(d)
        self.add_and_export(q, {"type": "unix", "path": psock}, writable=True)
        out = self.path("out.img")
        bh.run_tool(["nbdcopy", "--requests=16", self.d_uri(d), out])
        self.assertFilesEqual(src, out)
        # and in: new data through D lands in nbdkit's file
        src2 = bh.make_pattern_file(self.path("src2.img"), 6 * MiB, seed=6,
                                    sparse_every=256 * KiB)
        bh.run_tool(["nbdcopy", "--flush", "--connections=2", src2, self.d_uri(d)])
        self.assertFilesEqual(src2, src)
        self.remove_export_and_node(q, "e", "remote")

    def test_inet_server(self):
        src = bh.make_pattern_file(self.path("src.img"), 3 * MiB + 9 * 512, seed=8,
                                   sparse_every=MiB)
        port = bh.free_tcp_port()
        self.start_peer(["nbdkit", "-f", "--exit-with-parent", "-r", "-i", "127.0.0.1",
                         "-p", str(port), "file", src], "nbdkit-tcp",
                        wait_tcp=("127.0.0.1", port))
        d = self.start_d(export=False)
        q = self.qmp(d)
        r = q.cmd("blockdev-add", {"driver": "nbd", "node-name": "remote",
                                   "read-only": True,
                                   "server": {"type": "inet", "host": "127.0.0.1",
                                              "port": str(port)}})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "e", "node-name": "remote",
                                       "name": EXPORT})
        self.assertEqual(r, {"return": {}})
        out = self.path("out.img")
        bh.run_tool(["nbdcopy", self.d_uri(d), out])
        self.assertFilesEqual(src, out)
        self.remove_export_and_node(q, "e", "remote")

    @bh.qsd_deviates("qemu-storage-daemon 7.2 rounds the size of an nbd node "
                     "up to a multiple of 512 and pads it with zeros")
    def test_size_not_a_multiple_of_512(self):
        src = bh.make_pattern_file(self.path("odd.img"), 3 * MiB + 4321, seed=9)
        _, psock = self.nbdkit(["file", src], name="nbdkit-odd")
        d = self.start_d(export=False)
        q = self.qmp(d)
        self.add_and_export(q, {"type": "unix", "path": psock}, writable=True)
        with bh.nbd_handle(nbd, d.sock, EXPORT) as h:
            self.assertEqual(h.get_size(), 3 * MiB + 4321)
            h.pwrite(b"tail", 3 * MiB + 4317)
            self.assertEqual(h.pread(4, 3 * MiB + 4317), b"tail")
            with self.assertRaises(nbd.Error):
                h.pread(512, 3 * MiB + 4096)
        self.assertEqual(read_file(src, 3 * MiB + 4317, 8), b"tail")
        out = self.path("out.img")
        bh.run_tool(["nbdcopy", self.d_uri(d), out])
        self.assertFilesEqual(src, out)


# ---------------------------------------------------------------------------
# 5: nobody listening

class Unreachable(NbdClientCase):

    def setUp(self):
        super().setUp()
        self.d = self.start_d(bh.blockdev_null("remote", MiB), writable=False)
        self.q = self.qmp(self.d)

    def assert_healthy(self, node):
        self.assertNotIn(node, self.node_names(self.q))
        self.assertEqual(bh.assert_export_serves(nbd, self.d.sock, EXPORT), bytes(4096))

    def add_fails(self, node, server):
        r = self.q.cmd("blockdev-add", {"driver": "nbd", "node-name": node,
                                        "server": server})
        self.assertIn("error", r, r)
        return r["error"]["desc"]

    def test_unix_path_missing(self):
        path = self.path("nobody.sock")
        desc = self.add_fails("n1", {"type": "unix", "path": path})
        self.assertIn(path, desc)
        self.assert_healthy("n1")

    def test_unix_stale_socket(self):
        path = self.path("stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()       # the file stays, nobody listens
        desc = self.add_fails("n2", {"type": "unix", "path": path})
        self.assertIn(path, desc)
        self.assert_healthy("n2")

    def test_tcp_closed_port(self):
        port = bh.free_tcp_port()
        desc = self.add_fails("n3", {"type": "inet", "host": "127.0.0.1",
                                     "port": str(port)})
        self.assertIn("127.0.0.1", desc)
        self.assertIn(str(port), desc)
        self.assert_healthy("n3")
        # the node name is free again: the same name to a live server works
        _, sock = self.nbdkit(["memory", "size=1M"], name="late")
        r = self.q.cmd("blockdev-add", {"driver": "nbd", "node-name": "n3",
                                        "server": {"type": "unix", "path": sock}})
        self.assertEqual(r, {"return": {}})
        self.assertEqual(self.q.cmd("blockdev-del", {"node-name": "n3"}), {"return": {}})

    def test_open_timeout_waits_for_the_server(self):
        # blockdev-add keeps trying while the peer is still starting
        path = self.path("late.sock")
        result = {}

        def add():
            t0 = time.monotonic()
            result["reply"] = self.q.cmd("blockdev-add", {
                "driver": "nbd", "node-name": "n4", "open-timeout": 20,
                "server": {"type": "unix", "path": path}})
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=add)
        t.start()
        time.sleep(1.5)
        self.nbdkit(["memory", "size=1M"], name="late", sock=path)
        t.join(30 * SLOW)
        self.assertFalse(t.is_alive())
        self.assertEqual(result["reply"], {"return": {}})
        self.assertGreater(result["elapsed"], 1.0)
        self.assertEqual(self.q.cmd("blockdev-del", {"node-name": "n4"}), {"return": {}})

    def test_open_timeout_expires(self):
        path = self.path("never.sock")
        t0 = time.monotonic()
        r = self.q.cmd("blockdev-add", {"driver": "nbd", "node-name": "n5", "open-timeout": 2,
                                        "server": {"type": "unix", "path": path}})
        elapsed = time.monotonic() - t0
        self.assertIn("error", r, r)
        self.assertIn(path, r["error"]["desc"])
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 15 * SLOW)
        self.assert_healthy("n5")

    def test_command_line(self):
        path = self.path("nobody.sock")
        rc, _, err = bh.run_daemon_once(nbd_blockdev("n", sock=path), self.tmpdir,
                                        timeout=10 * SLOW)
        self.assertEqual(rc, 1, err)
        self.assertIn(path, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)


# ---------------------------------------------------------------------------
# 6: the peer dies

class PeerDeath(NbdClientCase):

    IN_FLIGHT = 8

    def loop_io(self, h, stop, result):
        """Write IN_FLIGHT requests at once, then read them back, until an
        error or stop; result gets the iteration count, the errors and when
        they came, or 'hang' or 'wrong'."""
        datas = [pattern(k, 64 * KiB) for k in range(self.IN_FLIGHT)]
        i = 0
        try:
            while not stop.is_set():
                offs = [((i + k) * 64 * KiB) % (8 * MiB) for k in range(self.IN_FLIGHT)]
                cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), o)
                           for d, o in zip(datas, offs)]
                errs = [e for e in wait_commands(h, cookies).values() if e]
                if not errs:
                    bufs = [nbd.Buffer(64 * KiB) for _ in offs]
                    cookies = [h.aio_pread(b, o) for b, o in zip(bufs, offs)]
                    errs = [e for e in wait_commands(h, cookies).values() if e]
                if errs:
                    result["errors"] = errs
                    result["when"] = time.monotonic()
                    result["dropped"] = not h.aio_is_ready()
                    return
                for b, d, o in zip(bufs, datas, offs):
                    if bytes(b.to_bytearray()) != d:
                        result["wrong"] = o
                        return
                i += 1
                result["n"] = i
        except TimeoutError as e:
            result["hang"] = str(e)
        except nbd.Error as e:          # submitting failed
            result["errors"] = [e]
            result["when"] = time.monotonic()
            result["dropped"] = not h.aio_is_ready()

    def start_loop(self, h):
        stop, result = threading.Event(), {"n": 0}
        t = threading.Thread(target=self.loop_io, args=(h, stop, result), daemon=True)
        t.start()
        self.addCleanup(stop.set)
        deadline = time.monotonic() + 10 * SLOW
        while result["n"] < 20 and t.is_alive():
            self.assertLess(time.monotonic(), deadline, "no I/O through D")
            time.sleep(0.01)
        self.assertNotIn("errors", result)
        return t, stop, result

    def test_sigkill_without_reconnect(self):
        peer = self.peer_nbdkit_file()
        d = self.start_d(peer.blockdev("remote")
                         + bh.blockdev_null("good", MiB),
                         exports=bh.nbd_export("eg", "good", "good"))
        q = self.qmp(d)
        h = self.connect(d.sock)
        t, stop, result = self.start_loop(h)
        os.kill(peer.daemon.pid, signal.SIGKILL)
        killed = time.monotonic()
        peer.daemon.wait_exit()
        t.join(HANG)
        self.assertFalse(t.is_alive(), "the client hangs after the peer died")
        self.assertNotIn("hang", result)
        self.assertNotIn("wrong", result)
        self.assertIn("errors", result, "I/O went on without the peer")
        # EIO replies, or (qemu-storage-daemon, see the next test) a dropped
        # connection, which fails what was in flight in libnbd
        if not result["dropped"]:
            for e in result["errors"]:
                self.assertEqual(e.errnum, errno.EIO, e)
        self.assertLess(result["when"] - killed, HANG)
        # D and its monitor are fine, and so is its other export
        self.assertIn("remote", self.node_names(q))
        self.assertEqual(bh.assert_export_serves(nbd, d.sock, "good"), bytes(4096))
        # a new client of the dead export connects and gets errors, quickly
        with bh.nbd_handle(nbd, d.sock, EXPORT) as h2:
            with self.assertRaises(nbd.Error):
                bounded_pread(h2, 4096, 0)
        self._close_handle(h)
        self.remove_export_and_node(q, "e", "remote")
        self.assertEqual(bh.assert_export_serves(nbd, d.sock, "good"), bytes(4096))

    @bh.qsd_deviates("qemu-storage-daemon 7.2 sometimes closes the client's "
                     "connection when a read of the nbd node fails", racy=True)
    def test_sigkill_fails_requests_with_eio(self):
        """The failed requests get EIO replies, and the client keeps its
        connection: an I/O error of the node is no reason to drop it."""
        peer = self.peer_nbdkit_file()
        d = self.start_d(peer.blockdev("remote"))
        h = self.connect(d.sock)
        t, stop, result = self.start_loop(h)
        os.kill(peer.daemon.pid, signal.SIGKILL)
        peer.daemon.wait_exit()
        t.join(HANG)
        self.assertFalse(t.is_alive(), "the client hangs after the peer died")
        self.assertNotIn("hang", result)
        self.assertIn("errors", result, "I/O went on without the peer")
        self.assertFalse(result.get("dropped"), "D dropped the client")
        self.assertEqual([e.errnum for e in result["errors"]],
                         [errno.EIO] * len(result["errors"]), result["errors"])
        self.assertTrue(h.aio_is_ready(), "D dropped the client")
        for cmd in (lambda: bounded_pread(h, 4096, 0),
                    lambda: h.pwrite(b"z" * 4096, 0),
                    lambda: h.flush()):
            with self.assertRaises(nbd.Error) as cm:
                cmd()
            self.assertEqual(cm.exception.errnum, errno.EIO, cm.exception)
        self.assertTrue(h.aio_is_ready(), "D dropped the client")

    def test_reconnect_within_delay(self):
        """QEMU's contract for reconnect-delay: requests issued while the
        server is gone wait up to the delay and are run on reconnection."""
        peer = self.peer_nbdkit_file()
        d = self.start_d(peer.blockdev("remote", reconnect_delay=RECONNECT_DELAY))
        h = self.connect(d.sock)
        h.pwrite(pattern(1, 64 * KiB), MiB)
        h.flush()
        os.kill(peer.daemon.pid, signal.SIGKILL)
        peer.daemon.wait_exit()
        time.sleep(0.2)
        result = {}

        def io():
            try:
                start = time.monotonic()
                h.pwrite(pattern(2, 64 * KiB), 4 * MiB)
                result["read"] = h.pread(64 * KiB, MiB)
                h.flush()
                result["took"] = time.monotonic() - start
            except nbd.Error as e:
                result["error"] = e
        t = threading.Thread(target=io, daemon=True)
        t.start()
        time.sleep(0.3)
        self.assertTrue(t.is_alive() or "error" not in result,
                        "I/O failed at once although reconnect-delay=%d: %r"
                        % (RECONNECT_DELAY, result))
        # the same server comes back on the same socket
        self.nbdkit(["file", peer.image], name="nbdkit-file-again", sock=peer.sock)
        t.join(HANG + RECONNECT_DELAY)
        self.assertFalse(t.is_alive(), "I/O still waiting after the peer came back")
        self.assertNotIn("error", result)
        # the flush cannot have completed before P was back
        self.assertGreaterEqual(result["took"], 0.25)
        self.assertEqual(result["read"], pattern(1, 64 * KiB))
        self.assertEqual(read_file(peer.image, 4 * MiB, 64 * KiB), pattern(2, 64 * KiB))
        # and the connection is good for more
        h.pwrite(pattern(3, 4096), 5 * MiB)
        h.flush()
        self.assertEqual(read_file(peer.image, 5 * MiB, 4096), pattern(3, 4096))

    def test_reconnect_delay_expires(self):
        """Nobody comes back: a request waits about the delay, then fails
        with EIO; once the delay is over, requests fail at once."""
        peer = self.peer_nbdkit_file()
        d = self.start_d(peer.blockdev("remote", reconnect_delay=RECONNECT_DELAY)
                         + bh.blockdev_null("good", MiB),
                         exports=bh.nbd_export("eg", "good", "good"))
        q = self.qmp(d)
        h = self.connect(d.sock)
        h.pwrite(pattern(1, 4096), 0)
        os.kill(peer.daemon.pid, signal.SIGKILL)
        peer.daemon.wait_exit()
        killed = time.monotonic()
        with self.assertRaises(nbd.Error) as cm:
            bounded_pread(h, 4096, 0, timeout=HANG + RECONNECT_DELAY)
        waited = time.monotonic() - killed
        self.assertEqual(cm.exception.errnum, errno.EIO, cm.exception)
        self.assertGreater(waited, RECONNECT_DELAY - 1.5,
                           "the request did not wait for the reconnect delay")
        self.assertLess(waited, RECONNECT_DELAY + HANG)
        # the monitor answered all along; now the delay is over
        self.assertIn("remote", self.node_names(q))
        start = time.monotonic()
        with self.assertRaises(nbd.Error):
            bounded_pread(h, 4096, 0)
        self.assertLess(time.monotonic() - start, 3 * SLOW,
                        "requests still wait after the reconnect delay")
        self.assertEqual(bh.assert_export_serves(nbd, d.sock, "good"), bytes(4096))
        self._close_handle(h)
        self.remove_export_and_node(q, "e", "remote")


# ---------------------------------------------------------------------------
# 7: servers that break the protocol

class BadServers(NbdClientCase):

    def setUp(self):
        super().setUp()
        self.d = self.start_d(bh.blockdev_null("good", MiB), export=False,
                              exports=bh.nbd_export("eg", "good", "good"))
        self.q = self.qmp(self.d)

    def fake_server(self, mode, i):
        srv = fake.FakeServer(self.path("fake%d.sock" % i), mode)
        srv.start()
        self.addCleanup(srv.stop)
        return srv

    def run_mode(self, mode):
        for i in (1, 2):
            srv = self.fake_server(mode, i)
            node, exp = "bad%d" % i, "bad%d" % i
            r = self.q.cmd("blockdev-add", {"driver": "nbd", "node-name": node,
                                            "server": {"type": "unix", "path": srv.path},
                                            "export": "fake"})
            self.assertEqual(r, {"return": {}})
            r = self.q.cmd("block-export-add", {"type": "nbd", "id": exp,
                                                "node-name": node, "name": exp})
            self.assertEqual(r, {"return": {}})
            h = self.connect(self.d.sock, exp)
            self.assertEqual(h.get_size(), fake.EXPORT_SIZE)
            self.assertEqual(bounded_pread(h, 4096, 0), bytes(4096),
                             "the fake server's good part")
            # the poisoned read among others in flight: it fails, the others
            # succeed with the right data or fail, none hangs
            offs = [0, fake.POISON_OFFSET, 2 * MiB, 3 * MiB + 512]
            bufs = [nbd.Buffer(4096) for _ in offs]
            cookies = [h.aio_pread(b, o) for b, o in zip(bufs, offs)]
            try:
                res = wait_commands(h, cookies)
            except TimeoutError as e:
                self.fail("%s: a read through D hangs: %s" % (mode, e))
            for b, o, c in zip(bufs, offs, cookies):
                if o == fake.POISON_OFFSET:
                    self.assertIsNotNone(res[c], "%s: the read through D succeeded "
                                         "with %r..." % (mode, bytes(b.to_bytearray()[:16])))
                elif res[c] is None:
                    self.assertEqual(bytes(b.to_bytearray()), bytes(4096),
                                     "%s: wrong data at %d" % (mode, o))
            self.assertGreaterEqual(srv.misbehaved, 1)
            self.assertEqual(srv.errors, [])
            # D is fine: monitor, other exports
            self.assertIn(node, self.node_names(self.q))
            self.assertEqual(bh.assert_export_serves(nbd, self.d.sock, "good"),
                             bytes(4096))
            self.assertTrue(self.d.alive(), self.d.describe())
            self._close_handle(h)
            self.remove_export_and_node(self.q, exp, node)

    def test_bad_magic(self):
        self.run_mode("bad-magic")

    def test_unknown_cookie(self):
        self.run_mode("unknown-cookie")

    def test_oversized_chunk(self):
        self.run_mode("oversized-chunk")

    def test_close_mid_reply(self):
        self.run_mode("close-mid-reply")


if __name__ == "__main__":
    bh.require_tools("nbdkit", "qemu-nbd")
    bh.main()
