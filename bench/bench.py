# SPDX-License-Identifier: GPL-2.0-or-later
"""berth's benchmark matrix: berthd against nbdkit, qemu-storage-daemon and
qemu-nbd on the same backends, in one run, with warm-up and alternating
repeats. Writes results.csv, results.md, results.rst and plot.png into one
directory and prints the markdown. A report only: it never fails because of
a figure, and a server that cannot do something is left out of that row.

Usage: bench/run.sh [path/to/berthd]     (or `make bench`)
       bench/run.sh --report DIR          (tables and plot again from DIR)
Environment (defaults in brackets; QUICK=1 changes them as shown):
  RUNTIME   seconds measured per run [5; quick 1]
  RAMP      warm-up seconds before each fio run [1; quick 0.5]
  REPS      repeats of each run, servers alternating [3; quick 1]
  SIZE      image and device size, K/M/G suffixes [1G; quick 256M]
  BACKENDS  fio backends, comma-separated [tmpfs,disk,disk-direct,null,nbd;
            quick tmpfs,null]
  SERVERS   servers to run [berthd,nbdkit,qsd,qemu-nbd]
  SECTIONS  what to run [fio,scaling,nbdcopy,qmp]
  SCALING   backends for the I/O-thread scaling runs [null,tmpfs; quick null]
  DISKDIR   where the on-disk images go [/var/tmp]
  OUT       results directory [bench/results/<timestamp>]
"""

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402
import report  # noqa: E402
from measure import WORKLOADS, MeasureError  # noqa: E402
from servers import (LABELS, QMP_SERVERS, SERVERS, Export, Server,  # noqa: E402
                     ServerError, server_argv)

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = {
    "tmpfs": "file on tmpfs",
    "disk": "file on disk, buffered",
    "disk-direct": "file on disk, cache.direct=on",
    "null": "null (no storage)",
    "nbd": "re-export of an nbdkit memory disk",
}
LOAD = WORKLOADS[0]   # 4k randread qd32: the scaling and QMP runs' load


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().rstrip("B").rstrip("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def env_list(name: str, default: str, allowed) -> List[str]:
    items = [i for i in os.environ.get(name, default).split(",") if i]
    bad = [i for i in items if i not in allowed]
    if bad:
        sys.exit(f"bench: {name}: unknown {', '.join(bad)} (known: {', '.join(allowed)})")
    return items


class Bench:
    def __init__(self, berthd: str):
        quick = os.environ.get("QUICK", "") not in ("", "0")
        self.berthd = berthd
        self.runtime = float(os.environ.get("RUNTIME", 1 if quick else 5))
        self.ramp = float(os.environ.get("RAMP", 0.5 if quick else 1))
        self.reps = int(os.environ.get("REPS", 1 if quick else 3))
        self.size = parse_size(os.environ.get("SIZE", "256M" if quick else "1G"))
        self.backends = env_list("BACKENDS", "tmpfs,null" if quick else
                                 ",".join(BACKENDS), BACKENDS)
        self.servers = env_list("SERVERS", ",".join(SERVERS), SERVERS)
        self.sections = env_list("SECTIONS", "fio,scaling,nbdcopy,qmp",
                                 ["fio", "scaling", "nbdcopy", "qmp"])
        self.scaling = env_list("SCALING", "null" if quick else "null,tmpfs",
                                ["null", "tmpfs"])
        self.diskdir = os.environ.get("DISKDIR", "/var/tmp")
        self.out = os.path.abspath(os.environ.get("OUT") or os.path.join(
            HERE, "results", time.strftime("%Y%m%d-%H%M%S")))
        self.res = report.Results()
        self.running: List[Server] = []
        self.scratch: List[str] = []
        self._notes: Dict[str, List[str]] = {}

    # -- bookkeeping ---------------------------------------------------------

    def note(self, msg: str, where: str = "") -> None:
        """Remember MSG once, with every WHERE it happened."""
        if msg not in self._notes:
            print(f"bench: {msg}" + (f" ({where})" if where else ""), flush=True)
            self._notes[msg] = []
        if where and where not in self._notes[msg]:
            self._notes[msg].append(where)

    def notes(self) -> List[str]:
        return [m + (f" (in: {'; '.join(w)})" if w else "")
                for m, w in self._notes.items()]

    def tmpdir(self, base: str) -> str:
        d = tempfile.mkdtemp(prefix="berth-bench.", dir=base)
        self.scratch.append(d)
        return d

    def drop(self, d: str) -> None:
        shutil.rmtree(d, ignore_errors=True)
        self.scratch.remove(d)

    def images(self, d: str, names: List[str]) -> Dict[str, str]:
        """Files of SIZE random bytes in D, one per name, all in the same
        state: each one a copy of a source file written first and removed
        afterwards. How a file was written shows: on ext4 under Linux 6.18,
        berthd and nbdkit alike wrote 4k blocks at random at a third of the
        rate or less into the file written here in 16 MiB chunks than into
        a copy of it, so no server may get a file written differently."""
        paths = {n: os.path.join(d, f"{n}.img") for n in names}
        source = os.path.join(d, "source.img")
        with open(source, "wb") as f:
            left = self.size
            while left:
                chunk = min(left, 16 << 20)
                f.write(os.urandom(chunk))
                left -= chunk
        for n in names:
            shutil.copyfile(source, paths[n])
        os.unlink(source)
        return paths

    def start(self, server: str, d: str, exports: List[Export],
              qmp: bool = False, tag: str = "") -> Optional[Server]:
        sock = os.path.join(d, f"{server}{tag}.sock")
        qsock = os.path.join(d, f"{server}{tag}.qmp") if qmp else None
        argv = server_argv(server, self.berthd, exports, sock, qsock)
        if argv is None:
            return None
        try:
            s = Server(server, argv, sock, os.path.join(d, f"{server}{tag}.log"), qsock)
        except (ServerError, OSError) as e:
            self.note(f"{LABELS[server]}: {e}")
            return None
        self.running.append(s)
        return s

    def stop(self, s: Server) -> None:
        s.stop()
        self.running.remove(s)

    def failed(self, what: str, s: Server, e: Exception) -> None:
        died = s.died()
        self.note(f"{LABELS[s.name]}: {e}" +
                  (f"; the server ended ({died})" if died else ""), what)

    def order(self, servers: List[str], rep: int) -> List[str]:
        k = rep % len(servers) if servers else 0
        return servers[k:] + servers[:k]

    def say(self, what: str, value: float, unit: str) -> None:
        print(f"  {what}: {report.fmt(value, unit)} {unit}", flush=True)

    # -- sections ------------------------------------------------------------

    def exports_for(self, backend: str, server: str, paths, upstream) -> List[Export]:
        if backend == "null":
            return [Export("", "null", size=self.size)]
        if backend == "nbd":
            return [Export("", "nbd", path=upstream)]
        return [Export("", "file", path=paths[server], direct=backend == "disk-direct")]

    def fio_backend(self, backend: str) -> None:
        print(f"== fio: {BACKENDS[backend]}", flush=True)
        d = self.tmpdir("/dev/shm")
        disk = self.tmpdir(self.diskdir) if backend.startswith("disk") else None
        paths, upstream, servers = {}, None, {}
        try:
            if backend in ("tmpfs", "disk", "disk-direct"):
                paths = self.images(disk or d, self.servers)
            elif backend == "nbd":
                # An nbdkit memory disk filled with random data. (Not nbdkit's
                # file plugin: QSD and qemu-nbd ask the upstream for block
                # status before each read, which it answers slowly on tmpfs.)
                img = self.images(d, ["upstream"])["upstream"]
                up = self.start("nbdkit", d, [Export("", "memory", size=self.size)],
                                tag="-upstream")
                if up is None:
                    return
                subprocess.run(["nbdcopy", img, up.uri()], check=True, timeout=300)
                os.unlink(img)
                upstream = up.sock
            for s in self.servers:
                srv = self.start(s, d, self.exports_for(backend, s, paths, upstream))
                if srv:
                    servers[s] = srv
            for w in WORKLOADS:
                for rep in range(self.reps):
                    for s in self.order(list(servers), rep):
                        srv = servers[s]
                        if srv.died():
                            continue
                        try:
                            v = measure.fio([srv.uri()], w, self.size, self.runtime, self.ramp)[0]
                        except MeasureError as e:
                            self.failed(f"fio {w.label} on {BACKENDS[backend]}", srv, e)
                            continue
                        self.res.add("fio", backend, s, w.key, "", rep + 1, v, w.unit)
                        self.say(f"{w.label} {LABELS[s]} rep {rep + 1}", v, w.unit)
        finally:
            for srv in list(self.running):
                self.stop(srv)
            self.drop(d)
            if disk:
                self.drop(disk)

    def scaling_backend(self, backend: str) -> None:
        print(f"== I/O-thread scaling: {BACKENDS[backend]}", flush=True)
        d = self.tmpdir("/dev/shm")
        try:
            if backend == "null":
                exports = [Export(f"e{i}", "null", size=self.size, iothread=f"io{i}")
                           for i in range(2)]
            else:
                paths = self.images(d, ["a", "b"])
                exports = [Export(f"e{i}", "file", path=paths[n], iothread=f"io{i}")
                           for i, n in enumerate("ab")]
            servers = [s for s in self.servers if s in QMP_SERVERS]
            for rep in range(self.reps):
                for s in self.order(servers, rep):
                    for config, n in (("1 export", 1), ("2 exports", 2)):
                        # A fresh process each time: qemu-storage-daemon 7.2
                        # may abort when a client leaves an iothread export.
                        srv = self.start(s, d, exports)
                        if srv is None:
                            continue
                        try:
                            vals = measure.fio([srv.uri(e.name) for e in exports[:n]],
                                               LOAD, self.size, self.runtime, self.ramp)
                            self.res.add("scaling", backend, s, LOAD.key, config,
                                         rep + 1, sum(vals), LOAD.unit)
                            self.say(f"{LABELS[s]} {config} rep {rep + 1}", sum(vals), LOAD.unit)
                        except MeasureError as e:
                            self.failed(f"scaling, {config} on {BACKENDS[backend]}", srv, e)
                        finally:
                            self.stop(srv)
        finally:
            self.drop(d)

    def nbdcopy(self) -> Dict[str, bool]:
        print("== nbdcopy multi-conn: file on tmpfs", flush=True)
        d = self.tmpdir("/dev/shm")
        mc = {}
        try:
            paths = self.images(d, self.servers)
            servers = {}
            for s in self.servers:
                srv = self.start(s, d, [Export("", "file", path=paths[s], writable=False)])
                if srv:
                    servers[s] = srv
                    mc[s] = measure.multi_conn(srv.uri())
            if "berthd" in self.servers:
                # and the export's connections spread over two I/O threads
                srv = self.start("berthd", d, [Export("", "file", path=paths["berthd"],
                                                      writable=False,
                                                      iothread=["io0", "io1"])], tag="-2iot")
                if srv:
                    servers["berthd-2iot"] = srv
                    mc["berthd-2iot"] = measure.multi_conn(srv.uri())
            for s, srv in servers.items():  # warm-up, not recorded
                try:
                    measure.nbdcopy(srv.uri(), 1, self.size, 0)
                except MeasureError as e:
                    self.failed("nbdcopy warm-up", srv, e)
            for rep in range(self.reps):
                for s in self.order(list(servers), rep):
                    for n in (1, 4):
                        try:
                            v = measure.nbdcopy(servers[s].uri(), n, self.size, self.runtime)
                        except MeasureError as e:
                            self.failed(f"nbdcopy --connections={n}", servers[s], e)
                            continue
                        self.res.add("nbdcopy", "tmpfs", s, "copy-to-null",
                                     f"connections={n}", rep + 1, v, "MiB/s")
                        self.say(f"{LABELS[s]} connections={n} rep {rep + 1}", v, "MiB/s")
        finally:
            for srv in list(self.running):
                self.stop(srv)
            self.drop(d)
        return mc

    def qmp(self) -> None:
        print("== QMP latency under load: file on tmpfs", flush=True)
        d = self.tmpdir("/dev/shm")
        try:
            img = self.images(d, ["disk"])["disk"]
            servers = [s for s in self.servers if s in QMP_SERVERS]
            for rep in range(self.reps):
                for s in self.order(servers, rep):
                    for config, thread in (("main loop", None), ("iothread", "io0")):
                        srv = self.start(s, d, [Export("", "file", path=img, iothread=thread)],
                                         qmp=True)
                        if srv is None:
                            continue
                        try:
                            idle, loaded, iops = measure.qmp_under_load(
                                srv.qmp, srv.uri(), LOAD, self.size, self.runtime, self.ramp)
                        except (MeasureError, OSError) as e:
                            self.failed(f"QMP under load, export in the {config}", srv, e)
                            continue
                        finally:
                            self.stop(srv)
                        pct = measure.percentile
                        for name, v, unit in (("idle p50", pct(idle, 50), "ms"),
                                              ("idle p99", pct(idle, 99), "ms"),
                                              ("load p50", pct(loaded, 50), "ms"),
                                              ("load p99", pct(loaded, 99), "ms"),
                                              ("load max", max(loaded), "ms"),
                                              ("load IOPS", iops, "IOPS")):
                            self.res.add("qmp", "tmpfs", s, name, config, rep + 1, v, unit)
                        print(f"  {LABELS[s]} {config} rep {rep + 1}: p99 "
                              f"{pct(loaded, 99):.2f} ms under load", flush=True)
        finally:
            self.drop(d)

    # -- the whole run -------------------------------------------------------

    def check_tools(self) -> None:
        need = {"berthd": self.berthd, "nbdkit": "nbdkit",
                "qsd": "qemu-storage-daemon", "qemu-nbd": "qemu-nbd"}
        for s in list(self.servers):
            if not shutil.which(need[s]):
                self.note(f"{need[s]} not found: {LABELS[s]} left out")
                self.servers.remove(s)
        if not shutil.which("fio"):
            sys.exit("bench: fio is needed (scripts/install-deps.sh bench)")
        if "nbd" in self.backends and not (shutil.which("nbdkit") and shutil.which("nbdcopy")):
            self.note("the nbd backend needs nbdkit and nbdcopy: left out")
            self.backends.remove("nbd")
        for tool in ("nbdcopy", "nbdinfo"):
            if "nbdcopy" in self.sections and not shutil.which(tool):
                self.note(f"{tool} not found: no nbdcopy runs")
                self.sections.remove("nbdcopy")

    def machine(self) -> List[str]:
        def first_line(argv):
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                return (r.stdout or r.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "?"
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1 << 20)
        fs = first_line(["findmnt", "-no", "FSTYPE", "-T", self.diskdir])
        commit = first_line(["git", "-C", HERE, "describe", "--always", "--dirty"])
        return [
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; berth {commit} ({self.berthd})",
            f"- machine: {cpu}, {os.cpu_count()} CPUs, {mem} GiB RAM, "
            f"Linux {platform.release()}; disk images on {self.diskdir} ({fs}); "
            f"load average at start {os.getloadavg()[0]:.2f}",
            f"- tools: {first_line(['fio', '--version'])}, "
            f"{first_line(['nbdkit', '--version'])}, "
            f"{first_line(['qemu-storage-daemon', '--version'])}, "
            f"{first_line(['nbdcopy', '--version'])}",
            f"- settings: RUNTIME={self.runtime:g} s, RAMP={self.ramp:g} s, "
            f"REPS={self.reps} (medians), SIZE={self.size >> 20} MiB; fio "
            f"ioengine=nbd over unix sockets",
        ]

    def run(self) -> None:
        self.check_tools()
        os.makedirs(self.out, exist_ok=True)
        header = self.machine()
        mc = {}
        if "fio" in self.sections:
            for b in self.backends:
                self.fio_backend(b)
        if "scaling" in self.sections:
            for b in self.scaling:
                self.scaling_backend(b)
        if "nbdcopy" in self.sections:
            mc = self.nbdcopy()
        if "qmp" in self.sections:
            self.qmp()
        header[1] += f", at the end {os.getloadavg()[0]:.2f}"
        meta = {"header": header, "notes": self.notes(), "multi_conn": mc,
                "backends": {b: BACKENDS[b] for b in self.backends},
                "all_backends": BACKENDS, "load": LOAD.label}
        print(report.write_all(self.res, self.out, meta))
        print(f"bench: results in {self.out}")

    def cleanup(self) -> None:
        for s in list(self.running):
            self.stop(s)
        for d in list(self.scratch):
            self.drop(d)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Render the tables and the plot again from a results directory.
        print(report.rerender(sys.argv[2]))
        return
    berthd = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                             os.environ.get("BERTHD", "build/tools/berthd"))
    if not os.access(berthd, os.X_OK):
        sys.exit(f"bench: {berthd} is not an executable berthd (build first)")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bench = Bench(berthd)
    try:
        bench.run()
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
