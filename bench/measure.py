# SPDX-License-Identifier: GPL-2.0-or-later
"""The measurements: fio runs (alone or several at once), nbdcopy
throughput, and QMP round trips. Each returns numbers or raises
MeasureError with the reason; none of them judges the numbers."""

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

MiB = 1 << 20


@dataclass(frozen=True)
class Workload:
    key: str        # CSV name
    label: str      # table name
    rw: str
    bs: str
    depth: int
    unit: str       # "IOPS" or "MiB/s"


WORKLOADS = [
    Workload("randread-4k-qd32", "4k randread qd32", "randread", "4k", 32, "IOPS"),
    Workload("randwrite-4k-qd32", "4k randwrite qd32", "randwrite", "4k", 32, "IOPS"),
    Workload("read-1M-qd8", "1M read qd8", "read", "1M", 8, "MiB/s"),
    Workload("write-1M-qd8", "1M write qd8", "write", "1M", 8, "MiB/s"),
    Workload("randread-4k-qd1", "4k randread qd1", "randread", "4k", 1, "IOPS"),
]


class MeasureError(Exception):
    pass


def fio_argv(uri: str, w: Workload, size: int, runtime: float,
             ramp: float) -> List[str]:
    return ["fio", "--output-format=json", "--name=job", "--ioengine=nbd",
            f"--uri={uri}", f"--rw={w.rw}", f"--bs={w.bs}",
            f"--iodepth={w.depth}", f"--size={size}", "--time_based",
            f"--runtime={int(runtime * 1000)}ms",
            f"--ramp_time={int(ramp * 1000)}ms"]


def fio_start(uri: str, w: Workload, size: int, runtime: float,
              ramp: float) -> subprocess.Popen:
    return subprocess.Popen(fio_argv(uri, w, size, runtime, ramp),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def fio_result(proc: subprocess.Popen, w: Workload, timeout: float) -> float:
    """Wait for a fio started by fio_start(); its IOPS or MiB/s."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MeasureError("fio did not finish in time")
    # fio may print a line before the JSON; errors come on stderr.
    start = out.find("{")
    if proc.returncode != 0 or start < 0:
        lines = [ln for ln in (err or out).splitlines() if ln.strip()]
        raise MeasureError("fio failed: " + (lines[0] if lines else
                                             f"exit status {proc.returncode}"))
    job = json.loads(out[start:])["jobs"][0]
    if job.get("error"):
        raise MeasureError(f"fio job error {job['error']}")
    if w.unit == "IOPS":
        return job["read"]["iops"] + job["write"]["iops"]
    return (job["read"]["bw_bytes"] + job["write"]["bw_bytes"]) / MiB


def fio(uris: List[str], w: Workload, size: int, runtime: float,
        ramp: float) -> List[float]:
    """Run one fio per URI, all at the same time; each one's result."""
    procs = [fio_start(u, w, size, runtime, ramp) for u in uris]
    timeout = runtime + ramp + 30
    results, first_error = [], None
    for p in procs:
        try:
            results.append(fio_result(p, w, timeout))
        except MeasureError as e:
            first_error = first_error or e
    if first_error:
        raise first_error
    return results


def nbdcopy(uri: str, connections: int, size: int, runtime: float) -> float:
    """MiB/s copying URI to null: with CONNECTIONS connections, copied
    again and again for at least RUNTIME seconds. nbdcopy caps its
    connections at its threads (by default the number of cores), so both
    are set."""
    argv = ["nbdcopy", f"--threads={connections}",
            f"--connections={connections}", uri, "null:"]
    copied, start = 0, time.monotonic()
    while True:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=runtime + 120)
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            raise MeasureError("nbdcopy failed: " + (lines[0] if lines else
                                                     f"exit status {r.returncode}"))
        copied += size
        elapsed = time.monotonic() - start
        if elapsed >= runtime:
            return copied / MiB / elapsed


def multi_conn(uri: str) -> bool:
    """Whether the export at URI advertises multi-conn."""
    r = subprocess.run(["nbdinfo", "--can", "multi-conn", uri],
                       capture_output=True, timeout=30)
    return r.returncode == 0


class Qmp:
    """A minimal QMP client on a unix socket: greeting, capabilities, then
    one command at a time, skipping events."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._message()
        if "QMP" not in greeting:
            raise MeasureError(f"no QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    def _message(self) -> dict:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise MeasureError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name: str) -> dict:
        self.sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
        while True:
            msg = self._message()
            if "event" in msg:
                continue
            if "error" in msg:
                raise MeasureError(f"QMP {name}: {msg['error']}")
            return msg

    def round_trip(self, name: str) -> float:
        """Milliseconds from sending NAME to its answer."""
        t = time.perf_counter()
        self.command(name)
        return (time.perf_counter() - t) * 1000

    def close(self) -> None:
        self.sock.close()


def percentile(values: List[float], p: float) -> float:
    """The P-th percentile (nearest rank) of VALUES."""
    s = sorted(values)
    rank = max(1, -(-len(s) * p // 100))  # ceil
    return s[int(rank) - 1]


def qmp_latency(qmp: Qmp, interval: float, until, count: Optional[int] = None
                ) -> List[float]:
    """query-block-exports round trips, one every INTERVAL seconds, while
    until() is false (or COUNT of them)."""
    samples = []
    while (count is None or len(samples) < count) and not until():
        samples.append(qmp.round_trip("query-block-exports"))
        time.sleep(interval)
    return samples


def qmp_under_load(qmp_path: str, uri: str, w: Workload, size: int,
                   runtime: float, ramp: float, interval: float = 0.005
                   ) -> Tuple[List[float], List[float], float]:
    """Round trips with nothing running, then while fio runs W on URI (after
    its ramp time): (idle ms, loaded ms, fio's result)."""
    qmp = Qmp(qmp_path)
    try:
        idle = qmp_latency(qmp, interval, lambda: False, count=100)
        proc = fio_start(uri, w, size, runtime, ramp)
        try:
            time.sleep(ramp)
            loaded = qmp_latency(qmp, interval, lambda: proc.poll() is not None)
        except (MeasureError, OSError):
            proc.kill()
            proc.communicate()
            raise
        result = fio_result(proc, w, runtime + ramp + 30)
    finally:
        qmp.close()
    if not loaded:
        raise MeasureError("fio ended before any QMP round trip")
    return idle, loaded, result
