# SPDX-License-Identifier: GPL-2.0-or-later
"""Stable per-request costs of a server, for a machine too busy for
wall-clock figures: system calls per request (strace -c -f on the running
server) and user-space instructions per request (the server under
valgrind --tool=callgrind), and, less stable but including the kernel's
share, the server's CPU time per request (/proc/PID/stat), each from a fio run of a fixed number of
requests (fio ioengine=nbd, io_size=N requests' bytes, unix socket).

Instructions per request come from two runs, of N and 2N requests, so that
start-up, the handshake and shut-down cancel out: (I(2N) - I(N)) / N.
Syscalls per request are counted from just before fio connects to just
after it leaves; the handshake's few dozen calls are included, which is
noise below 1 % at the default N.

Usage: bench/per-request.py [--berthd PATH] [--servers berthd,nbdkit,qsd]
           [--backends tmpfs,null] [--workloads KEY,...] [-n N]
           [--what syscalls,instructions,cpu]
Workload keys: see bench/measure.py (randread-4k-qd32, randwrite-4k-qd32,
read-1M-qd8, write-1M-qd8, randread-4k-qd1). Prints one line per
measurement; a report, never a test.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import WORKLOADS  # noqa: E402
from servers import Export, Server, server_argv  # noqa: E402

SIZE = 256 << 20
TMPFS_IMAGE = f"/dev/shm/berth-per-request-{os.getpid()}.img"


def parse_size(text):
    return int(text[:-1]) << {"k": 10, "M": 20}[text[-1]]


def fio_count(uri, w, n):
    argv = ["fio", "--output-format=terse", "--name=job", "--ioengine=nbd",
            f"--uri={uri}", f"--rw={w.rw}", f"--bs={w.bs}",
            f"--iodepth={w.depth}", f"--size={SIZE}",
            f"--io_size={n * parse_size(w.bs)}"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=600)


def export_for(backend, tmp, writable=True):
    if backend == "null":
        return Export(name="", kind="null", path="", size=SIZE,
                      writable=writable)
    path = (TMPFS_IMAGE if backend == "tmpfs" else os.path.join(tmp, "img"))
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
    return Export(name="", kind="file", path=path, size=SIZE,
                  writable=writable)


def start(server, berthd, exp, tmp, prefix=()):
    sock = os.path.join(tmp, f"{server}.sock")
    argv = server_argv(server, berthd, [exp], sock)
    if argv is None:
        return None
    return Server(server, list(prefix) + argv, sock,
                  os.path.join(tmp, f"{server}.log"))


def count_syscalls(server, berthd, exp, w, n, tmp):
    srv = start(server, berthd, exp, tmp)
    if not srv:
        return None
    out = os.path.join(tmp, "strace.out")
    try:
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p",
                               str(srv.proc.pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        fio_count(srv.uri(), w, n)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
    finally:
        srv.stop()
    calls, errors = {}, {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$",
                         line)
            if m and m.group(3) != "total":
                calls[m.group(3)] = int(m.group(1))
                errors[m.group(3)] = int(m.group(2) or 0)
    total = sum(calls.values())
    top = sorted(calls, key=calls.get, reverse=True)[:8]
    detail = " ".join(f"{k}={calls[k] / n:.2f}"
                      + (f"({errors[k] / n:.2f} fail)" if errors[k] else "")
                      for k in top)
    return total / n, detail


def cpu_seconds(pid):
    """User and system CPU time of all of PID's threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_cpu(server, berthd, exp, w, n, tmp):
    """Server CPU time (user + system) per request, in microseconds."""
    srv = start(server, berthd, exp, tmp)
    if not srv:
        return None
    try:
        fio_count(srv.uri(), w, 1)
        before = cpu_seconds(srv.proc.pid)
        fio_count(srv.uri(), w, n)
        after = cpu_seconds(srv.proc.pid)
    finally:
        srv.stop()
    return (after - before) * 1e6 / n


def callgrind_total(server, berthd, exp, w, n, tmp):
    cg = os.path.join(tmp, "cg.out.%p")
    prefix = ["valgrind", "--tool=callgrind", "--trace-children=no",
              f"--callgrind-out-file={cg}", "--dump-instr=no"]
    srv = start(server, berthd, exp, tmp, prefix)
    if not srv:
        return None
    deadline = time.monotonic() + 60
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            fio_count(srv.uri(), w, 1)
            ok = True
        except subprocess.CalledProcessError:
            time.sleep(0.5)
    fio_count(srv.uri(), w, n)
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=120)
    srv.stop()
    total = 0
    for name in os.listdir(tmp):
        if name.startswith("cg.out."):
            with open(os.path.join(tmp, name)) as f:
                for line in f:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        total = max(total, int(line.split()[1]))
            os.unlink(os.path.join(tmp, name))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berthd", default="build/tools/berthd")
    ap.add_argument("--servers", default="berthd,nbdkit,qsd")
    ap.add_argument("--backends", default="tmpfs,null")
    ap.add_argument("--workloads", default=",".join(w.key for w in WORKLOADS))
    ap.add_argument("--what", default="syscalls,instructions")
    ap.add_argument("-n", type=int, default=20000)
    a = ap.parse_args()
    berthd = os.path.abspath(a.berthd)
    wl = {w.key: w for w in WORKLOADS}
    with tempfile.TemporaryDirectory(prefix="berth-perreq-") as tmp:
        for backend in a.backends.split(","):
            exp = export_for(backend, tmp)
            for key in a.workloads.split(","):
                w = wl[key]
                n = a.n if w.bs == "4k" else max(a.n // 10, 200)
                for server in a.servers.split(","):
                    if "syscalls" in a.what:
                        r = count_syscalls(server, berthd, exp, w, n, tmp)
                        if r:
                            print(f"{backend:6} {key:18} {server:7} syscalls/req "
                                  f"{r[0]:6.2f}  {r[1]}", flush=True)
                    if "cpu" in a.what:
                        r = count_cpu(server, berthd, exp, w, n * 5, tmp)
                        if r:
                            print(f"{backend:6} {key:18} {server:7} cpu us/req "
                                  f"{r:9.1f}", flush=True)
                    if "instructions" in a.what:
                        m = max(n // 10, 100)
                        i1 = callgrind_total(server, berthd, exp, w, m, tmp)
                        i2 = callgrind_total(server, berthd, exp, w, 2 * m, tmp)
                        if i1 is not None:
                            print(f"{backend:6} {key:18} {server:7} instr/req "
                                  f"{(i2 - i1) / m:9.0f}", flush=True)
    if os.path.exists(TMPFS_IMAGE):
        os.unlink(TMPFS_IMAGE)


if __name__ == "__main__":
    main()
