# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD servers under test: their command lines for a given set of
exports, and starting and stopping them.

An export is described by an Export (what it serves: a file, a null device or
an upstream NBD socket; writable or not; which I/O thread, if any). server_argv()
turns a list of exports into one server's command line, or returns None when
that server cannot serve them (qemu-nbd has no null device, nbdkit and qemu-nbd
have no I/O threads nor a QMP monitor). A Server is one running process,
stopped by its pid only.
"""

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import List, Optional, Union

SERVERS = ["berthd", "nbdkit", "qsd", "qemu-nbd"]
LABELS = {"berthd": "berthd", "nbdkit": "nbdkit", "qsd": "QSD", "qemu-nbd": "qemu-nbd",
          "berthd-2iot": "berthd, iothread [io0, io1]"}
# Servers with a QSD-style command line and QMP monitor.
QMP_SERVERS = ["berthd", "qsd"]


@dataclass
class Export:
    name: str                     # NBD export name ("" for the default)
    kind: str                     # "file", "null", "nbd" or "memory" (nbdkit only)
    path: str = ""                # file: the image; nbd: the upstream socket
    size: int = 0                 # null, memory: the device size in bytes
    direct: bool = False          # file: bypass the page cache
    writable: bool = True
    # an I/O thread's id, or (berthd only) a list of them that the export's
    # connections are handed to in turn
    iothread: Union[None, str, List[str]] = None

    def iothreads(self) -> List[str]:
        if not self.iothread:
            return []
        return [self.iothread] if isinstance(self.iothread, str) else list(self.iothread)


def _qsd_style(binary: str, exports: List[Export], sock: str,
               qmp: Optional[str]) -> List[str]:
    """berthd and qemu-storage-daemon share one command line."""
    argv = [binary]
    for t in sorted({t for e in exports for t in e.iothreads()}):
        argv += ["--object", f"iothread,id={t}"]
    for i, e in enumerate(exports):
        node = f"n{i}"
        if e.kind == "file":
            opts = f"file,node-name={node},filename={e.path}"
            if e.direct:
                opts += ",cache.direct=on"
        elif e.kind == "null":
            # read-zeroes=on: the same work as nbdkit's null plugin, which
            # always fills read buffers with zeroes.
            opts = f"null-co,node-name={node},size={e.size},read-zeroes=on"
        else:
            opts = f"nbd,node-name={node},server.type=unix,server.path={e.path}"
        argv += ["--blockdev", opts]
    argv += ["--nbd-server", f"addr.type=unix,addr.path={sock}"]
    for i, e in enumerate(exports):
        opts = f"nbd,id=e{i},node-name=n{i},name={e.name}"
        opts += ",writable=on" if e.writable else ""
        if isinstance(e.iothread, str):
            opts += f",iothread={e.iothread}"
        elif e.iothread:
            opts += "".join(f",iothread.{k}={t}" for k, t in enumerate(e.iothread))
        argv += ["--export", opts]
    if qmp:
        argv += ["--chardev", f"socket,id=qmp0,path={qmp},server=on,wait=off",
                 "--monitor", "qmp0"]
    return argv


def _nbdkit(exports: List[Export], sock: str) -> Optional[List[str]]:
    if len(exports) != 1 or exports[0].iothread:
        return None
    e = exports[0]
    argv = ["nbdkit", "--foreground", "--exit-with-parent", "-U", sock]
    argv += [] if e.writable else ["--readonly"]
    if e.kind == "file":
        # cache=none is nbdkit's nearest to O_DIRECT: it evicts what it read
        # or wrote from the page cache rather than bypassing it.
        argv += ["file", e.path] + (["cache=none"] if e.direct else [])
    elif e.kind in ("null", "memory"):
        argv += [e.kind, str(e.size)]
    else:
        argv += ["nbd", f"socket={e.path}"]
    return argv


def _qemu_nbd(exports: List[Export], sock: str) -> Optional[List[str]]:
    if len(exports) != 1 or exports[0].iothread or exports[0].kind == "null":
        return None
    e = exports[0]
    # --shared: as many clients as nbdcopy opens connections.
    argv = ["qemu-nbd", "--persistent", "--shared=16", f"--socket={sock}",
            f"--export-name={e.name}"]
    argv += [] if e.writable else ["--read-only"]
    if e.kind == "file":
        argv += ["--format=raw"] + (["--cache=none"] if e.direct else [])
        argv.append(e.path)
    else:
        argv += ["--image-opts", f"driver=nbd,server.type=unix,server.path={e.path}"]
    return argv


def server_argv(server: str, berthd: str, exports: List[Export], sock: str,
                qmp: Optional[str] = None) -> Optional[List[str]]:
    """The command line serving EXPORTS on unix socket SOCK (and a QMP
    monitor on QMP), or None if SERVER cannot do it."""
    if server != "nbdkit" and any(e.kind == "memory" for e in exports):
        return None
    if server in QMP_SERVERS:
        binary = berthd if server == "berthd" else "qemu-storage-daemon"
        return _qsd_style(binary, exports, sock, qmp)
    if qmp:
        return None
    if server == "nbdkit":
        return _nbdkit(exports, sock)
    if server == "qemu-nbd":
        return _qemu_nbd(exports, sock)
    raise ValueError(f"unknown server {server}")


class ServerError(Exception):
    pass


class Server:
    """One running server process, its log in LOG."""

    def __init__(self, name: str, argv: List[str], sock: str, log: str,
                 qmp: Optional[str] = None):
        self.name, self.sock, self.qmp, self.log = name, sock, qmp, log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=f, stderr=f)
        deadline = time.monotonic() + 10
        while not all(os.path.exists(p) for p in (sock, qmp) if p):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{name} did not start: {self.log_tail()}")
            time.sleep(0.02)

    def uri(self, export: str = "") -> str:
        return f"nbd+unix:///{export}?socket={self.sock}"

    def died(self) -> Optional[str]:
        """None while running; else how it ended and its last log line."""
        rc = self.proc.poll()
        if rc is None:
            return None
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return f"{how}: {self.log_tail()}"

    def log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip()]
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in (self.sock, self.qmp):
            if p and os.path.exists(p):
                os.unlink(p)
