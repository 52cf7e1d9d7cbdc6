#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What an idle NBD connection costs each server in memory.

Each server exports a null device (qemu-nbd: an empty sparse file) on a unix
socket, with no connection limit. This script opens N connections that
negotiate (fixed newstyle, NBD_OPT_GO with no info requests) and then sit
in the transmission phase sending nothing, and reports the growth of the
server's resident set (VmRSS of /proc/PID/status) per connection, measured
from a baseline taken after a warm-up of 20 such connections, as the median
of REPS rounds (a fresh server each round, servers alternating). Report
only: nothing here decides pass or fail.

    bench/idle-connections.py [path/to/berthd]
    env: N (1000), REPS (3), SERVERS (berthd,nbdkit,qsd,qemu-nbd)
"""

import os
import resource
import socket
import statistics
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

from servers import LABELS, Export, Server, ServerError, server_argv  # noqa: E402

NBD_OPT_GO = 7
NBD_REP_ACK = 1
OPT_MAGIC = 0x49484156454F5054          # "IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return buf


def negotiate(path: str) -> socket.socket:
    """A connection in the transmission phase of the default export."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    greeting = recv_exact(s, 18)
    if greeting[:8] != b"NBDMAGIC" or greeting[8:16] != b"IHAVEOPT":
        raise ConnectionError("not a fixed-newstyle server")
    s.sendall(struct.pack(">I", 3))     # FIXED_NEWSTYLE | NO_ZEROES
    payload = struct.pack(">I", 0) + struct.pack(">H", 0)   # name "", no infos
    s.sendall(struct.pack(">QII", OPT_MAGIC, NBD_OPT_GO, len(payload)) + payload)
    while True:
        magic, _opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
        if magic != REPLY_MAGIC:
            raise ConnectionError("bad option reply")
        recv_exact(s, length)
        if rtype == NBD_REP_ACK:
            return s
        if rtype & 0x80000000:
            raise ConnectionError(f"NBD_OPT_GO refused (reply type {rtype:#x})")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def argv_for(server: str, berthd: str, d: str, sock: str):
    if server == "qemu-nbd":
        img = os.path.join(d, "empty.img")
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        argv = server_argv(server, berthd, [Export("", "file", path=img)], sock)
        return argv + ["--shared=0"] if argv else None
    argv = server_argv(server, berthd, [Export("", "null", size=64 << 20)], sock)
    if argv and server in ("berthd", "qsd"):
        i = argv.index("--nbd-server") + 1
        argv[i] += ",max-connections=0"
    return argv


def one_round(server: str, berthd: str, n: int) -> float:
    d = tempfile.mkdtemp(prefix="berth-idle.")
    sock = os.path.join(d, "nbd.sock")
    argv = argv_for(server, berthd, d, sock)
    if argv is None:
        raise ServerError(f"{LABELS[server]} cannot serve this")
    srv = Server(server, argv, sock, os.path.join(d, "server.log"))
    conns = []
    try:
        for _ in range(20):
            conns.append(negotiate(sock))
        time.sleep(0.5)
        base = rss_kib(srv.proc.pid)
        for _ in range(n):
            conns.append(negotiate(sock))
        time.sleep(1.0)     # let the server settle
        grown = rss_kib(srv.proc.pid) - base
        return grown / n
    finally:
        for c in conns:
            c.close()
        srv.stop()
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


def main() -> int:
    berthd = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build", "tools", "berthd")
    n = int(os.environ.get("N", "1000"))
    reps = int(os.environ.get("REPS", "3"))
    servers = os.environ.get("SERVERS", "berthd,nbdkit,qsd,qemu-nbd").split(",")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4 * n + 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    results = {s: [] for s in servers}
    for rep in range(reps):
        k = rep % len(servers)
        for s in servers[k:] + servers[:k]:
            try:
                v = one_round(s, berthd, n)
            except (ServerError, OSError, ConnectionError) as e:
                print(f"{LABELS.get(s, s)}: {e}", flush=True)
                continue
            results[s].append(v)
            print(f"  {LABELS.get(s, s)} rep {rep + 1}: {v:.1f} KiB per connection", flush=True)
    print(f"\n{n} idle negotiated connections, resident memory per connection (KiB), "
          f"median of {reps}:")
    for s, vals in results.items():
        if vals:
            print(f"  {LABELS.get(s, s):10s} {statistics.median(vals):7.1f}   "
                  f"({', '.join(f'{v:.1f}' for v in vals)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
