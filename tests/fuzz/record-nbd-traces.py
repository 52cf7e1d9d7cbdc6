#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Record the seed corpora of the NBD fuzz targets from real traffic.

A relay on a unix socket sits between real NBD clients and real servers
and keeps each connection's bytes, both ways. Then:

  corpus/nbd-handshake/     what libnbd (nbdinfo, nbdsh, nbdcopy), qemu-img
                            and qemu-io send to berthd, from the greeting on,
                            behind the target's configuration byte (0: no
                            TLS; 1: TLS-PSK, for the STARTTLS seeds);
  corpus/nbd-transmission/  the same streams cut where the handshake ends,
                            behind the byte that makes the target replay an
                            equivalent handshake (fuzz-nbd-transmission.c);
  corpus/nbd-client/        what berthd, qemu-nbd and nbdkit answer to
                            berth's own client doing what the client target
                            does (nbd-client-record MODE), behind MODE.

Run from the source tree after building with -Dfuzzing=true:

    /usr/bin/python3 tests/fuzz/record-nbd-traces.py build-fuzz

It rewrites the three folders. Tools that are missing are skipped.
"""

import hashlib
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IHAVEOPT = 0x49484156454F5054
OPT_EXPORT_NAME, OPT_GO, OPT_STRUCTURED, OPT_SET_META, OPT_EXTENDED = 1, 7, 8, 10, 11
MAX_SEED = 256 * 1024
PSK_KEY = "0123456789abcdef0123456789abcdef"   # the handshake target's (fuzz-nbd-server.h)


class Relay:
    """Accepts on `path`, connects each client to `upstream`, records."""

    def __init__(self, path, upstream):
        self.path, self.upstream = path, upstream
        self.conns = []          # (client->server bytes, server->client bytes)
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.threads = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self.pump, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def pump(self, c):
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.connect(self.upstream)
        up, down = bytearray(), bytearray()
        open_ends = {c: u, u: c}
        while open_ends:
            r, _, _ = select.select(list(open_ends), [], [], 30)
            if not r:
                break
            for s in r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                peer = open_ends[s]
                if not data:
                    del open_ends[s]
                    try:
                        peer.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                (up if s is c else down).extend(data)
                try:
                    peer.sendall(data)
                except OSError:
                    pass
        c.close()
        u.close()
        with self.lock:
            self.conns.append((bytes(up), bytes(down)))

    def take(self, settle=0.3):
        """The connections that have ended so far (waiting for stragglers)."""
        deadline = time.monotonic() + 10
        time.sleep(settle)
        while any(t.is_alive() for t in self.threads) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            out, self.conns = self.conns, []
        return out

    def close(self):
        self.sock.close()


def run(args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60, **kw)


def wait_for(path, proc):
    for _ in range(500):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit("server exited early: %s" % proc.args)
        time.sleep(0.02)
    sys.exit("no socket at %s" % path)


def handshake_end(stream):
    """(offset where transmission starts, transmission target's mode byte)
    for a client stream, or None when it never left the handshake."""
    pos, extended, structured, meta, name = 4, False, False, False, None
    while pos + 16 <= len(stream):
        magic, opt, length = struct.unpack(">QII", stream[pos:pos + 16])
        if magic != IHAVEOPT:
            break
        data = stream[pos + 16:pos + 16 + length]
        pos += 16 + length
        if opt == OPT_EXTENDED:
            extended = True
        elif opt == OPT_STRUCTURED:
            structured = True
        elif opt == OPT_SET_META and b"base:allocation" in data:
            meta = True
        elif opt == OPT_GO and len(data) >= 4:
            (n,) = struct.unpack(">I", data[:4])
            name = data[4:4 + n].decode("utf-8", "replace")
        elif opt == OPT_EXPORT_NAME:
            mode = 3 | (4 if data == b"ro" else 0)
            return pos, mode
    if name is None:
        return None
    mode = 0 if extended else 1 if structured else 2
    mode |= (4 if name == "ro" else 0) | (8 if meta and mode < 2 else 0)
    return pos, mode


class Corpus:
    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.seen = set()

    def add(self, label, data):
        if len(data) > MAX_SEED or data in self.seen:
            return
        self.seen.add(data)
        digest = hashlib.sha1(data).hexdigest()[:12]
        with open(os.path.join(self.dir, "%s-%s" % (label, digest)), "wb") as f:
            f.write(data)


def client_runs(uri, img, nbd):
    """(label, function) pairs, each one or more client connections."""
    def nbdsh_session(h_setup, body):
        def go(sock):
            h = nbd.NBD()
            h_setup(h)
            h.connect_unix(sock)
            body(h)
            h.shutdown()
        return go

    def io(h):
        h.pwrite(b"\x55" * 4096, 0)
        h.pwrite(b"\xaa" * 512, 8192, nbd.CMD_FLAG_FUA)
        h.pread(4096, 0)
        h.zero(4096, 16384)
        h.zero(4096, 20480, nbd.CMD_FLAG_NO_HOLE)
        h.trim(4096, 24576)
        if h.can_cache():
            h.cache(65536, 0)
        h.flush()
        if h.can_meta_context("base:allocation"):
            h.block_status(65536, 0, lambda *a: 0)
        h.pread(1, 1048575)

    def opt_mode(h):
        h.opt_list(lambda *a: 0)
        h.opt_info()
        h.opt_list_meta_context(lambda *a: 0)
        h.opt_go()
        h.pread(512, 0)

    def no_structured(h):
        h.set_request_structured_replies(False)

    def meta(h):
        h.add_meta_context("base:allocation")

    def opt(h):
        h.set_opt_mode(True)
        h.add_meta_context("base:allocation")

    def named(name, setup=lambda h: None):
        def f(h):
            h.set_export_name(name)
            setup(h)
        return f

    sock = uri
    runs = [
        ("nbdinfo", lambda: run(["nbdinfo", "nbd+unix:///disk?socket=" + sock])),
        ("nbdinfo-list", lambda: run(["nbdinfo", "--list", "nbd+unix:///?socket=" + sock])),
        ("nbdinfo-map", lambda: run(["nbdinfo", "--map", "nbd+unix:///disk?socket=" + sock])),
        ("nbdinfo-ro", lambda: run(["nbdinfo", "--json", "nbd+unix:///ro?socket=" + sock])),
        ("qemu-img-info", lambda: run(["qemu-img", "info", "nbd+unix:///disk?socket=" + sock])),
        ("qemu-img-map", lambda: run(["qemu-img", "map", "-f", "raw", "--output=json",
                                      "nbd+unix:///disk?socket=" + sock])),
        ("qemu-img-convert", lambda: run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw",
                                          img, "nbd+unix:///disk?socket=" + sock])),
        ("qemu-img-compare", lambda: run(["qemu-img", "compare", "-f", "raw", "-F", "raw", img,
                                          "nbd+unix:///ro?socket=" + sock])),
        ("qemu-io", lambda: run(["qemu-io", "-f", "raw",
                                 "-c", "write -P 0x55 0 4k", "-c", "read -P 0x55 0 4k",
                                 "-c", "write -z 8k 4k", "-c", "write -z -u 12k 4k",
                                 "-c", "discard 16k 4k", "-c", "write -f 20k 512",
                                 "-c", "flush", "-c", "aio_write -P 0x11 32k 4k",
                                 "-c", "aio_read 0 64k", "-c", "aio_flush",
                                 "nbd+unix:///disk?socket=" + sock])),
        ("qemu-io-ro", lambda: run(["qemu-io", "-f", "raw", "-r", "-c", "read 0 64k",
                                    "-c", "readv 4k 1k 2k", "-c", "map",
                                    "nbd+unix:///ro?socket=" + sock])),
        ("nbdcopy", lambda: run(["nbdcopy", "nbd+unix:///ro?socket=" + sock, "null:"])),
    ]
    if nbd:
        runs += [
            ("libnbd-io", lambda: nbdsh_session(named("disk", meta), io)(sock)),
            ("libnbd-simple", lambda: nbdsh_session(named("disk", no_structured), io)(sock)),
            ("libnbd-opt", lambda: nbdsh_session(named("disk", opt), opt_mode)(sock)),
            ("libnbd-ro", lambda: nbdsh_session(named("ro", meta), lambda h: h.pread(4096, 0))(sock)),
        ]
    return runs


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: %s BUILD_DIR (built with -Dfuzzing=true)" % argv[0])
    build = os.path.abspath(argv[1])
    berthd = os.path.join(build, "tools", "berthd")
    recorder = os.path.join(build, "tests", "fuzz", "nbd-client-record")
    try:
        import nbd
    except ImportError:
        nbd = None
    tmp = tempfile.mkdtemp(prefix="berth-record-")
    procs = []
    try:
        img = os.path.join(tmp, "small.img")
        with open(img, "wb") as f:
            f.write(bytes(range(256)) * 256)          # 64 KiB
        psk_dir = os.path.join(tmp, "psk")
        os.mkdir(psk_dir)
        with open(os.path.join(psk_dir, "keys.psk"), "w") as f:
            f.write("qemu:%s\n" % PSK_KEY)
        root = os.path.join(HERE, "corpus")
        hs, tx, cl = (Corpus(root, "nbd-handshake"), Corpus(root, "nbd-transmission"),
                      Corpus(root, "nbd-client"))

        def berthd_server(tag, extra=()):
            sock = os.path.join(tmp, tag + ".sock")
            args = [berthd,
                    "--blockdev", "driver=memory,node-name=disk,size=64M",
                    "--blockdev", "driver=memory,node-name=ro,size=1M",
                    "--blockdev", "driver=null-co,node-name=zero,size=64M,read-zeroes=on",
                    *extra,
                    "--nbd-server", "addr.type=unix,addr.path=%s%s"
                    % (sock, ",tls-creds=tls0" if extra else ""),
                    "--export", "type=nbd,id=e0,node-name=disk,name=disk,writable=on",
                    "--export", "type=nbd,id=e1,node-name=ro,name=ro,description=a read-only disk",
                    "--export", "type=nbd,id=e2,node-name=zero,name="]
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_for(sock, p)
            return sock

        # --- what clients send: handshake and transmission seeds
        upstream = berthd_server("berthd")
        relay = Relay(os.path.join(tmp, "relay.sock"), upstream)
        for label, fn in client_runs(relay.path, img, nbd):
            tool = "-".join(label.split("-")[:2]) if label.startswith("qemu") else \
                label.split("-")[0]
            if tool != "libnbd" and not shutil.which(tool):
                continue
            try:
                fn()
            except Exception as e:          # a client refusing is still a trace
                print("%s: %s" % (label, e), file=sys.stderr)
            for up, down in relay.take():
                hs.add(label, b"\x00" + up)
                cut = handshake_end(up)
                if cut and cut[0] < len(up):
                    tx.add(label, bytes([cut[1]]) + up[cut[0]:])
        relay.close()

        # TLS (PSK): the handshake target's bit 0; replays up to the TLS
        # handshake's first round trip
        if nbd:
            tls_up = berthd_server("berthd-tls", ["--object", "tls-creds-psk,id=tls0,dir=%s,"
                                                  "endpoint=server" % psk_dir])
            relay = Relay(os.path.join(tmp, "relay-tls.sock"), tls_up)
            try:
                h = nbd.NBD()
                h.set_tls(nbd.TLS_REQUIRE)
                h.set_tls_username("qemu")
                h.set_tls_psk_file(os.path.join(psk_dir, "keys.psk"))
                h.set_export_name("disk")
                h.connect_unix(relay.path)
                h.pread(512, 0)
                h.shutdown()
            except Exception as e:
                print("tls: %s" % e, file=sys.stderr)
            for up, down in relay.take():
                hs.add("libnbd-tls", b"\x01" + up)
            relay.close()

        # --- what servers answer berth's client: client seeds
        servers = [("berthd", upstream)]
        if shutil.which("qemu-nbd"):
            sock = os.path.join(tmp, "qemu-nbd.sock")
            p = subprocess.Popen(["qemu-nbd", "-t", "-e", "0", "-f", "raw", "-x", "disk",
                                  "-k", sock, img], stdin=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_for(sock, p)
            servers.append(("qemu-nbd", sock))
        if shutil.which("nbdkit"):
            sock = os.path.join(tmp, "nbdkit.sock")
            p = subprocess.Popen(["nbdkit", "-f", "-U", sock, "memory", "2M"],
                                 stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_for(sock, p)
            servers.append(("nbdkit", sock))
        for name, sock in servers:
            relay = Relay(os.path.join(tmp, "relay-%s.sock" % name), sock)
            for mode in range(4):
                run([recorder, str(mode), relay.path])
                for up, down in relay.take(settle=0.1):
                    cl.add("%s-mode%d" % (name, mode), bytes([mode]) + down)
            relay.close()
        for c in (hs, tx, cl):
            print("%s: %d seeds" % (os.path.relpath(c.dir, HERE), len(os.listdir(c.dir))))
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
