#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The qcow2 row of the benchmark matrix: fio (ioengine=nbd) against a fully
allocated qcow2 image (every cluster holds data, written by qemu-img) on
tmpfs, served as file -> qcow2 by berthd and by qemu-storage-daemon, and the
same data as a raw file (file -> raw) by both, so that qcow2's cost shows
against raw in one run.

Each figure is the median of REPS runs of RUNTIME seconds; the four
servers take turns in every repetition. A report only: the exit status says
whether the tools ran, never whether a figure was good.

Env: RUNTIME (5), REPS (3), RAMP (1), IMAGE_SIZE_MIB (512), QSD
(qemu-storage-daemon), WORKLOADS (comma-separated keys; default the two 4k
qd32 ones the format issue names), OUT (a file for the markdown table).
Usage: bench/qcow2.py [path/to/berthd]
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from measure import WORKLOADS, MeasureError, MiB, fio  # noqa: E402
from servers import Server  # noqa: E402

RUNTIME = float(os.environ.get("RUNTIME", "5"))
REPS = int(os.environ.get("REPS", "3"))
RAMP = float(os.environ.get("RAMP", "1"))
IMAGE_MIB = int(os.environ.get("IMAGE_SIZE_MIB", "512"))
KEYS = os.environ.get("WORKLOADS", "randread-4k-qd32,randwrite-4k-qd32").split(",")


def run(args, timeout=300):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise MeasureError("%s failed: %s" % (" ".join(args), p.stderr.strip()[-400:]))
    return p.stdout


def start(binary, fmt, image, folder):
    """berthd or QSD serving image through a file node and a fmt node, as
    export 'img' (bench/servers.py's Server: started, stopped by pid)."""
    sock = os.path.join(folder, "nbd.sock")
    argv = [binary, "--blockdev", "driver=file,node-name=f,filename=" + image,
            "--blockdev", "driver=%s,node-name=n,file=f" % fmt,
            "--nbd-server", "addr.type=unix,addr.path=" + sock,
            "--export", "type=nbd,id=e,node-name=n,name=img,writable=on"]
    return Server(os.path.basename(binary), argv, sock,
                  os.path.join(folder, os.path.basename(binary) + ".log"))


def main():
    berthd = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "tools", "berthd")
    qsd = os.environ.get("QSD", "qemu-storage-daemon")
    for tool in ("fio", "qemu-img", qsd):
        if not shutil.which(tool):
            sys.exit("bench/qcow2.py: %s not found" % tool)
    workloads = [w for w in WORKLOADS if w.key in KEYS]
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = tempfile.mkdtemp(prefix="berth-bench-qcow2-", dir=base)
    results = {}
    try:
        raw = os.path.join(folder, "disk.raw")
        qcow2 = os.path.join(folder, "disk.qcow2")
        with open("/dev/urandom", "rb") as src, open(raw, "wb") as dst:
            for _ in range(IMAGE_MIB):
                dst.write(src.read(MiB))
        # Every cluster allocated, holding the same data as the raw file.
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-S", "0", raw, qcow2])
        size = IMAGE_MIB * MiB
        servers = (("berthd qcow2", berthd, "qcow2", qcow2), ("qsd qcow2", qsd, "qcow2", qcow2),
                   ("berthd raw", berthd, "raw", raw), ("qsd raw", qsd, "raw", raw))
        for rep in range(REPS):
            for name, binary, fmt, image in servers:
                srv = start(binary, fmt, image, folder)
                try:
                    for w in workloads:
                        r = fio([srv.uri("img")], w, size, RUNTIME, RAMP)[0]
                        results.setdefault((name, w.key), []).append(r)
                finally:
                    srv.stop()
            print("rep %d/%d done" % (rep + 1, REPS), file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    lines = ["| workload | unit | berthd qcow2 | qsd qcow2 | berthd raw | qsd raw "
             "| berthd qcow2 / berthd raw | berthd qcow2 / qsd qcow2 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        bq, qq, br, qr = (statistics.median(results[(n, w.key)])
                          for n in ("berthd qcow2", "qsd qcow2", "berthd raw", "qsd raw"))
        lines.append("| %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |"
                     % (w.label, w.unit, bq, qq, br, qr, bq / br if br else 0,
                        bq / qq if qq else 0))
    table = "\n".join(lines)
    print("qcow2: median of %d runs of %.0f s, fully allocated %d MiB image on tmpfs\n"
          % (REPS, RUNTIME, IMAGE_MIB))
    print(table)
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
