#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The rbd row of the benchmark matrix: fio (ioengine=nbd) against berthd's
and qemu-storage-daemon's export of one RBD image, and `rbd bench` on the
same image (librbd alone: the ceiling of this path), on a one-node memstore
cluster started for the run (tests/ceph/micro-ceph.sh).

Each figure is the median of REPS runs of RUNTIME seconds; the servers take
turns in every repetition (one at a time: the image's exclusive lock moves
with the writer). A report only: the exit status says whether the tools
ran, never whether a figure was good.

Env: RUNTIME (5), REPS (3), RAMP (1), IMAGE_SIZE_MIB (512), QSD
(qemu-storage-daemon), OUT (a file for the markdown table).
Usage: bench/rbd.py [path/to/berthd]
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from measure import WORKLOADS, MeasureError, MiB, fio  # noqa: E402

RUNTIME = float(os.environ.get("RUNTIME", "5"))
REPS = int(os.environ.get("REPS", "3"))
RAMP = float(os.environ.get("RAMP", "1"))
IMAGE_MIB = int(os.environ.get("IMAGE_SIZE_MIB", "512"))
MICRO_CEPH = os.path.join(ROOT, "tests", "ceph", "micro-ceph.sh")


def run(args, timeout=120):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise MeasureError("%s failed: %s" % (" ".join(args), p.stderr.strip()[-400:]))
    return p.stdout


class Server:
    def __init__(self, binary, conf, image, folder):
        self.sock = os.path.join(folder, "nbd.sock")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.log = open(os.path.join(folder, os.path.basename(binary) + ".log"), "ab")
        self.proc = subprocess.Popen(
            [binary, "--blockdev",
             "driver=rbd,node-name=n,pool=rbd,image=%s,conf=%s" % (image, conf),
             "--nbd-server", "addr.type=unix,addr.path=" + self.sock,
             "--export", "type=nbd,id=e,node-name=n,name=img,writable=on"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MeasureError("%s did not start (see %s)" % (binary, self.log.name))
            time.sleep(0.05)
        self.uri = "nbd+unix:///img?socket=" + self.sock

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


RBD_BENCH_RE = re.compile(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)\s+"
                          r"bytes/sec:\s*([\d.]+)\s*(\S*)")
UNITS = {"B/s": 1, "KiB/s": 1 << 10, "MiB/s": 1 << 20, "GiB/s": 1 << 30}


def rbd_bench_once(conf, image, w, total):
    out = run(["rbd", "-c", conf, "bench", "--io-type", "read" if "read" in w.rw else "write",
               "--io-size", w.bs.upper(), "--io-threads", str(w.depth),
               "--io-pattern", "rand" if w.rw.startswith("rand") else "seq",
               "--io-total", str(total), image], timeout=RUNTIME * 10 + 60)
    m = RBD_BENCH_RE.search(out)
    if not m:
        raise MeasureError("unexpected rbd bench output: " + out[-200:])
    elapsed, ops_s = float(m.group(1)), float(m.group(3))
    bytes_s = float(m.group(4)) * UNITS.get(m.group(5), 1)
    return elapsed, (ops_s if w.unit == "IOPS" else bytes_s / MiB)


def rbd_bench(conf, image, w):
    """`rbd bench` has no time limit, only a total: size it from a short probe."""
    bs = 4096 if w.bs == "4k" else MiB
    probe = bs * (2000 if bs == 4096 else 200)
    elapsed, rate = rbd_bench_once(conf, image, w, probe)
    per_s = rate * (bs if w.unit == "IOPS" else MiB)
    total = max(bs, int(per_s * RUNTIME) // bs * bs)
    return rbd_bench_once(conf, image, w, total)[1]


def main():
    berthd = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "tools", "berthd")
    qsd = os.environ.get("QSD", "qemu-storage-daemon")
    for tool in ("fio", "rbd", "ceph-mon", "ceph-osd", qsd):
        if not shutil.which(tool):
            sys.exit("bench/rbd.py: %s not found" % tool)
    folder = tempfile.mkdtemp(prefix="berth-bench-rbd-")
    cdir = os.path.join(folder, "ceph")
    env = dict(os.environ, MICRO_CEPH_MEMSTORE_BYTES=str((IMAGE_MIB + 1024) * MiB))
    subprocess.run([MICRO_CEPH, "start", cdir], env=env, check=True, stdout=subprocess.DEVNULL,
                   timeout=180)
    conf = os.path.join(cdir, "ceph.conf")
    results = {}
    try:
        image = "bench"
        run(["rbd", "-c", conf, "create", "--size", "%dM" % IMAGE_MIB, image])
        # Reads must hit stored objects, not holes.
        run(["rbd", "-c", conf, "bench", "--io-type", "write", "--io-size", "4M",
             "--io-threads", "8", "--io-pattern", "seq", "--io-total", "%dM" % IMAGE_MIB,
             image], timeout=300)
        size = IMAGE_MIB * MiB
        for rep in range(REPS):
            for name, binary in (("berthd", berthd), ("qsd", qsd)):
                srv = Server(binary, conf, image, folder)
                try:
                    for w in WORKLOADS:
                        r = fio([srv.uri], w, size, RUNTIME, RAMP)[0]
                        results.setdefault((name, w.key), []).append(r)
                finally:
                    srv.stop()
            for w in WORKLOADS:
                results.setdefault(("rbd", w.key), []).append(rbd_bench(conf, image, w))
            print("rep %d/%d done" % (rep + 1, REPS), file=sys.stderr)
    finally:
        subprocess.run([MICRO_CEPH, "stop", cdir], timeout=60)
        shutil.rmtree(folder, ignore_errors=True)

    lines = ["| workload | unit | berthd | qemu-storage-daemon | rbd bench (librbd) "
             "| berthd / rbd bench | berthd / qsd |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for w in WORKLOADS:
        b, q, r = (statistics.median(results[(n, w.key)]) for n in ("berthd", "qsd", "rbd"))
        lines.append("| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f |"
                     % (w.label, w.unit, b, q, r, b / r if r else 0, b / q if q else 0))
    table = "\n".join(lines)
    print("rbd: median of %d runs of %.0f s, one-node memstore cluster, %d MiB image\n"
          % (REPS, RUNTIME, IMAGE_MIB))
    print(table)
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
