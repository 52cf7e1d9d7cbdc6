#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared helpers for berth's end-to-end tests.

Every test here runs a real daemon process: berthd, or qemu-storage-daemon
(which takes the same command line) when $BERTHD points at it, so that the
tests can be checked against a known implementation before berthd serves.
The helpers start the daemon in a fresh temporary folder, wait (with a bound)
until its unix socket accepts, and stop it with SIGTERM, insisting on exit
status 0.  Nothing here waits without a limit: sockets carry timeouts, every
subprocess has a timeout, and a per-test watchdog kills the daemons (by PID,
SIGKILL) if a test stalls inside a blocking libnbd call, which then fails
instead of hanging the suite.

Also here: a QMP client (QMPConnection), and the x509 and PSK keys the TLS
tests share (Pki), made with certtool and psktool.
"""

import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

# meson passes BERTHD; by hand the default is the usual build folder.
# BERTH_FUNCTIONAL_DAEMON overrides both: meson lets a test's own environment
# win over a test setup's, so the 'qsd' setup (meson test --setup qsd) needs a
# variable of its own to point the suite at qemu-storage-daemon.
BERTHD = (os.environ.get("BERTH_FUNCTIONAL_DAEMON") or os.environ.get("BERTHD")
          or os.path.join(SOURCE_ROOT, "build", "tools", "berthd"))

# BERTH_VALGRIND=1 (tests/valgrind.sh --functional): the daemon under test
# runs under valgrind memcheck, and any error or definite leak makes it exit
# with status 99, which stop() reports. Other programs run as they are.
VALGRIND = os.environ.get("BERTH_VALGRIND", "") not in ("", "0")
VALGRIND_COMMAND = [
    "valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
    "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
    "--suppressions=" + os.path.join(SOURCE_ROOT, "tests", "valgrind.supp"),
]
# valgrind makes start-up and shut-down several times slower.
SLOW = 4.0 if VALGRIND else 1.0
# A sanitizer build (meson's b_sanitize) or valgrind: memory figures and
# timings are not the daemon's own.
SANITIZED = VALGRIND or os.environ.get("BERTH_SANITIZE", "none") not in ("", "none")

SKIP_EXIT = 77              # meson's "skipped" exit status
START_TIMEOUT = 10.0 * SLOW  # seconds until the daemon's socket must accept
STOP_TIMEOUT = 10.0 * SLOW  # seconds until the daemon must exit after SIGTERM
TEST_TIMEOUT = float(os.environ.get("BERTH_TEST_TIMEOUT", "45")) * SLOW
TOOL_TIMEOUT = 60.0         # any external tool (qemu-img, nbdcopy, ...)
REPLY_TIMEOUT = 10.0        # seconds until a QMP reply must have come

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


# ---------------------------------------------------------------------------
# Which daemon is under test

def _resolve_daemon():
    if os.sep in BERTHD:
        return BERTHD if os.access(BERTHD, os.X_OK) else None
    return shutil.which(BERTHD)


DAEMON_PATH = _resolve_daemon()
_flavour_cache = []


def daemon_flavour():
    """'qsd' when the daemon under test is qemu-storage-daemon, else 'berth'."""
    if not _flavour_cache:
        flavour = "berth"
        if "qemu-storage-daemon" in os.path.basename(BERTHD):
            flavour = "qsd"
        elif DAEMON_PATH:
            try:
                out = subprocess.run([DAEMON_PATH, "--version"],
                                     stdin=subprocess.DEVNULL,
                                     capture_output=True, timeout=10).stdout
                first = out.splitlines()[0] if out else b""
                if first.startswith(b"qemu-storage-daemon"):
                    flavour = "qsd"
            except (OSError, subprocess.TimeoutExpired):
                pass
        _flavour_cache.append(flavour)
    return _flavour_cache[0]


def is_qsd():
    return daemon_flavour() == "qsd"


def berth_only(func_or_class):
    """Skip a test that uses something only berthd has (driver=memory, ...)."""
    return unittest.skipIf(is_qsd(), "berth-only feature")(func_or_class)


def qsd_deviates(reason, racy=False):
    """The test asserts the NBD specification's behaviour, which
    qemu-storage-daemon 7.2 does not follow.  Against qsd the test is an
    expected failure (an unexpected pass fails the run), or skipped when the
    deviation shows only some of the time (racy); against berthd it is an
    ordinary test."""
    def deco(func):
        if is_qsd():
            if racy:
                func = unittest.skip("qemu-storage-daemon deviates: " + reason)(func)
            else:
                func = unittest.expectedFailure(func)
        func.qsd_deviation = reason
        return func
    return deco


def require_tools(*tools):
    """Exit with meson's skip status when a tool this file needs is absent;
    a missing daemon is an error, not a skip."""
    if DAEMON_PATH is None:
        sys.stderr.write("ERROR: daemon %r not found or not executable "
                         "(set $BERTHD)\n" % BERTHD)
        sys.exit(1)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.stderr.write("SKIP: missing %s\n" % ", ".join(missing))
        sys.exit(SKIP_EXIT)


def record_compare_test(env_class, fn, qsd):
    """A test method that runs scenario fn(test, env) once on berthd and once
    on qemu-storage-daemon (qsd: its path), each with a fresh
    env_class(test, exe, tag) that keeps a `record` of what it saw, and
    asserts both records are equal."""
    def test(self):
        mine = env_class(self, None, "berthd")
        fn(self, mine)
        theirs = env_class(self, qsd, "qsd")
        fn(self, theirs)
        self.assertEqual(json.dumps(mine.record, indent=1),
                         json.dumps(theirs.record, indent=1))
    return test


def needs_tools(*tools):
    """Skip one test (not the whole file) when a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    return unittest.skipIf(bool(missing), "missing " + ", ".join(missing))


def import_nbd():
    """Import python3-libnbd or skip the whole file."""
    try:
        import nbd
    except ImportError:
        sys.stderr.write("SKIP: python3-libnbd (module nbd) is not installed\n")
        sys.exit(SKIP_EXIT)
    return nbd


def main():
    """unittest.main with meson's conventions: exit 77 when all tests skip."""
    prog = unittest.main(exit=False, verbosity=2)
    result = prog.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun and len(result.skipped) == result.testsRun:
        sys.exit(SKIP_EXIT)
    sys.exit(0)


# ---------------------------------------------------------------------------
# Command-line builders (qemu-storage-daemon syntax)

def opt_escape(value):
    """A literal comma is written twice in key=value option strings."""
    return str(value).replace(",", ",,")


def _onoff(b):
    return "on" if b else "off"


def blockdev_file(node, filename, read_only=False, discard=None, direct=False):
    s = "driver=file,node-name=%s,filename=%s" % (node, opt_escape(filename))
    if read_only:
        s += ",read-only=on"
    if discard:
        s += ",discard=" + discard
    if direct:
        s += ",cache.direct=on"
    return ["--blockdev", s]


def blockdev_null(node, size, read_zeroes=True):
    return ["--blockdev", "driver=null-co,node-name=%s,size=%d,read-zeroes=%s"
            % (node, size, _onoff(read_zeroes))]


def blockdev_memory(node, size):
    """berth-only driver."""
    return ["--blockdev", "driver=memory,node-name=%s,size=%d" % (node, size)]


def nbd_server_unix(path, max_connections=None):
    s = "addr.type=unix,addr.path=%s" % opt_escape(path)
    if max_connections is not None:
        s += ",max-connections=%d" % max_connections
    return ["--nbd-server", s]


def nbd_server_inet(host, port, max_connections=None):
    s = "addr.type=inet,addr.host=%s,addr.port=%d" % (host, port)
    if max_connections is not None:
        s += ",max-connections=%d" % max_connections
    return ["--nbd-server", s]


def nbd_export(exp_id, node, name=None, writable=False, description=None):
    s = "type=nbd,id=%s,node-name=%s" % (exp_id, node)
    if name is not None:
        s += ",name=%s" % opt_escape(name)
    if description is not None:
        s += ",description=%s" % opt_escape(description)
    if writable:
        s += ",writable=on"
    return ["--export", s]


def qmp_monitor(path, chardev="qmp0"):
    """A QMP monitor on a unix socket at path."""
    return ["--chardev", "socket,id=%s,path=%s,server=on,wait=off" % (chardev, opt_escape(path)),
            "--monitor", "chardev=" + chardev]


def nbd_uri(sock, name=""):
    return "nbd+unix:///%s?socket=%s" % (urllib.parse.quote(name, safe=""),
                                         urllib.parse.quote(sock, safe="/"))


def free_tcp_port():
    """A port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Files

def make_sparse_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def make_pattern_file(path, size, seed=0, sparse_every=0):
    """A file of pseudo-random data; with sparse_every=N every other N-byte
    block is left as a hole."""
    import random
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        block = sparse_every or size
        for off in range(0, size, block):
            if sparse_every and (off // block) % 2 == 1:
                continue
            f.seek(off)
            f.write(rng.randbytes(min(block, size - off)))
    return path


def file_data_ranges(path):
    """[(offset, length)] of allocated data, through SEEK_DATA/SEEK_HOLE."""
    ranges = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            ranges.append((data, hole - data))
            off = hole
    finally:
        os.close(fd)
    return ranges


def file_is_allocated(path, offset, length):
    """True when [offset, offset+length) lies entirely in data extents."""
    end = offset + length
    for d, n in file_data_ranges(path):
        if d <= offset and offset < d + n:
            offset = d + n
            if offset >= end:
                return True
    return offset >= end


def filesystem_reports_holes(folder):
    """Whether SEEK_HOLE tells holes apart on this filesystem."""
    p = os.path.join(folder, ".holeprobe")
    try:
        with open(p, "wb") as f:
            f.truncate(4 * MiB)
            f.seek(2 * MiB)
            f.write(b"x" * 4096)
        return file_data_ranges(p) not in ([], [(0, 4 * MiB)])
    finally:
        os.unlink(p)


# ---------------------------------------------------------------------------
# The daemon process

_PR_SET_PDEATHSIG = 1
try:
    # Looked up now: the child of a fork in a threaded process (the watchdog
    # is a thread) should not have to load anything.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    # A daemon must not outlive a test runner that meson killed on timeout.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class DaemonError(AssertionError):
    pass


class Daemon:
    """One daemon process with its stdout/stderr captured to files: the
    daemon under test, or the program exe."""

    def __init__(self, args, workdir, wait_for=None, wait_tcp=None, name="daemon",
                 exe=None, nofile=None):
        self.args = [exe or DAEMON_PATH] + list(args)
        self.nofile = nofile    # (soft, hard) RLIMIT_NOFILE for the daemon, or None
        if VALGRIND and exe is None:
            self.args = VALGRIND_COMMAND + self.args
        self.workdir = workdir
        self.name = name
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self.stdout_path = os.path.join(workdir, "%s.stdout" % name)
        self.proc = None
        self.killed_by_watchdog = False
        self.wait_for = wait_for
        self.wait_tcp = wait_tcp

    # -- life cycle ---------------------------------------------------------

    def start(self):
        with open(self.stderr_path, "wb") as err, \
                open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(self.args, cwd=self.workdir,
                                         stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err,
                                         preexec_fn=self._preexec)
        if self.wait_for:
            self.wait_unix(self.wait_for)
        if self.wait_tcp:
            self.wait_inet(*self.wait_tcp)
        return self

    def _preexec(self):
        _die_with_parent()
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe(self):
        rc = self.proc.poll() if self.proc else None
        return ("%s (pid %s, %s)\n  command: %s\n  stderr:\n%s" %
                (self.name, self.proc.pid if self.proc else "-",
                 "running" if rc is None else "exit status %s" % rc,
                 " ".join(self.args),
                 "".join("    " + l + "\n" for l in self.stderr().splitlines()[-40:])))

    def _wait_until(self, probe, what, timeout):
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            if self.proc.poll() is not None:
                raise DaemonError("%s exited before %s\n%s"
                                  % (self.name, what, self.describe()))
            if probe():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise DaemonError("%s: %s not ready within %.0f s\n%s"
                                  % (self.name, what, timeout, self.describe()))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def wait_unix(self, path, timeout=START_TIMEOUT):
        def probe():
            if not os.path.exists(path):
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            try:
                s.connect(path)
                return True
            except OSError:
                return False
            finally:
                s.close()
        self._wait_until(probe, "socket %s accepting" % path, timeout)

    def wait_inet(self, host, port, timeout=START_TIMEOUT):
        def probe():
            try:
                socket.create_connection((host, port), timeout=1).close()
                return True
            except OSError:
                return False
        self._wait_until(probe, "%s:%d accepting" % (host, port), timeout)

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        """SIGKILL by PID and reap."""
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def memory_kib(self, field="VmHWM"):
        """A memory figure of /proc/PID/status in KiB (VmHWM: peak RSS)."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Exit status, or None (after SIGKILL) when it did not exit in time."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send sig, wait for the exit; raise unless the status is 0."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.send_signal(sig)
        rc = self.wait_exit(timeout)
        if rc is None:
            raise DaemonError("%s did not exit within %.0f s of signal %d; killed\n%s"
                              % (self.name, timeout, sig, self.describe()))
        if self.killed_by_watchdog:
            raise DaemonError("%s was killed by the test watchdog\n%s"
                              % (self.name, self.describe()))
        if rc != 0:
            raise DaemonError("%s exited with status %s on signal %d\n%s"
                              % (self.name, rc, sig, self.describe()))
        return rc


def pid_alive(pid):
    """Whether a process that is not ours to reap (a daemon that forked)
    runs: a zombie whose parent is gone is reaped by init soon, so it counts
    as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_pid(pid):
    """SIGKILL such a process by PID, if it still runs (a cleanup)."""
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def daemon_command():
    """The command that runs the daemon under test (under valgrind with
    BERTH_VALGRIND=1), for tests that run it themselves."""
    return (VALGRIND_COMMAND if VALGRIND else []) + [DAEMON_PATH]


def run_daemon_once(args, workdir, timeout=STOP_TIMEOUT):
    """Run the daemon to completion (for --help, bad options, ...)."""
    p = subprocess.run(daemon_command() + list(args), cwd=workdir,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, preexec_fn=_die_with_parent)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def run_tool(args, timeout=TOOL_TIMEOUT, check=True, input=None):
    """Run an external tool with a timeout; raise with its output on failure."""
    p = subprocess.run(args, stdin=subprocess.DEVNULL if input is None else None,
                       input=input, capture_output=True, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError("%s exited with %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), p.returncode, out, err))
    return p.returncode, out, err


# ---------------------------------------------------------------------------
# Test case base

class DaemonTestCase(unittest.TestCase):
    """Owns temporary folders and daemons, and a watchdog for each test.

    Class-level daemons (started in setUpClass through start_class_daemon)
    are shared by the tests of the class: they must survive every test, and
    tearDown checks that they are still running."""

    _class_daemons = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._class_daemons = []
        cls.class_dir = tempfile.mkdtemp(prefix="berth-ft-")
        cls.addClassCleanup(shutil.rmtree, cls.class_dir, True)

    @classmethod
    def start_class_daemon(cls, args, wait_for=None, name="daemon", wait_tcp=None):
        d = Daemon(args, cls.class_dir, wait_for=wait_for, wait_tcp=wait_tcp,
                   name=name)
        cls._class_daemons.append(d)
        cls.addClassCleanup(cls._stop_class_daemon, d)
        try:
            d.start()
        except BaseException:
            d.kill()
            raise
        return d

    @classmethod
    def _stop_class_daemon(cls, d):
        d.stop()

    def setUp(self):
        super().setUp()
        self._test_daemons = []
        self.tmpdir = tempfile.mkdtemp(prefix="berth-ft-")
        self.addCleanup(shutil.rmtree, self.tmpdir, True)
        self._watchdog = threading.Timer(TEST_TIMEOUT, self._watchdog_fire)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.addCleanup(self._watchdog.cancel)

    def _watchdog_fire(self):
        sys.stderr.write("\nWATCHDOG: %s exceeded %.0f s, killing its daemons\n"
                         % (self.id(), TEST_TIMEOUT))
        for d in self._test_daemons + list(type(self)._class_daemons):
            d.killed_by_watchdog = True
            if d.alive():
                try:
                    os.kill(d.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def tearDown(self):
        for d in type(self)._class_daemons:
            if not d.alive():
                self.fail("shared daemon died during the test\n" + d.describe())
        super().tearDown()

    def start_daemon(self, args, wait_for=None, name="daemon", wait_tcp=None,
                     stop_check=True, exe=None, workdir=None, stop=None, nofile=None):
        """A daemon for this test only (or the program exe), run in workdir
        (default self.tmpdir).  At cleanup: stopped with SIGTERM, insisting
        on status 0; with stop_check=False, killed; stop(daemon) when given."""
        d = Daemon(args, workdir or self.tmpdir, wait_for=wait_for, wait_tcp=wait_tcp,
                   name=name, exe=exe, nofile=nofile)
        self._test_daemons.append(d)
        if stop is not None:
            self.addCleanup(stop, d)
        elif stop_check:
            self.addCleanup(d.stop)
        else:
            self.addCleanup(d.kill)
        try:
            d.start()
        except BaseException:
            d.kill()
            raise
        return d

    def path(self, name):
        return os.path.join(self.tmpdir, name)

    def connect_qmp(self, path, timeout=REPLY_TIMEOUT):
        """A QMP connection in command mode, closed at cleanup.  Retries
        (bounded) while the socket is missing or not yet listening: a daemon
        creates its sockets in command line order, and tests often wait for
        another one."""
        deadline = time.monotonic() + 10
        while True:
            try:
                q = QMPConnection(path, timeout=timeout)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                # Not there yet, or bound and not yet listening.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.addCleanup(q.close)
        self.assertEqual(q.cmd("qmp_capabilities"), {"return": {}})
        return q


# ---------------------------------------------------------------------------
# QMP

class QMPConnection:
    """A raw QMP connection: one JSON object per line, events queued."""

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.decoder = json.JSONDecoder()
        self.events = []
        self.greeting = self.recv()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def recv(self, timeout=REPLY_TIMEOUT):
        """The next JSON object, or None on timeout; raises on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.buf.lstrip()
            if text:
                s = text.decode("utf-8", "replace")
                try:
                    obj, end = self.decoder.raw_decode(s)
                    self.buf = s[end:].encode("utf-8")
                    return obj
                except ValueError:
                    pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP connection closed by the daemon")
            self.buf += data

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def reply(self, timeout=REPLY_TIMEOUT):
        """The next non-event message; events go to the queue."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise TimeoutError("no QMP reply within %.0f s" % timeout)
            if isinstance(msg, dict) and "event" in msg:
                self.events.append(msg)
                continue
            return msg

    @staticmethod
    def request(command, args=None, /, **kw):
        """A command's request; its arguments are args, or else the keyword
        arguments (an _ in a name stands for -)."""
        req = {"execute": command}
        if args is None and kw:
            args = {k.replace("_", "-"): v for k, v in kw.items()}
        if args is not None:
            req["arguments"] = args
        return req

    def cmd(self, command, args=None, /, **kw):
        self.send_raw(json.dumps(self.request(command, args, **kw)) + "\n")
        return self.reply()

    def poll_events(self, settle=0.0):
        """Read whatever arrives within `settle` seconds into the queue."""
        deadline = time.monotonic() + settle
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return
            if isinstance(msg, dict) and "event" in msg:
                self.events.append(msg)
            else:
                raise AssertionError("unexpected message: %r" % (msg,))


# ---------------------------------------------------------------------------
# Certificates and keys, in QEMU's folder layouts

class Pki:
    """Keys and certificates in QEMU's layouts, one folder per role (each a
    path attribute): server (for localhost and 127.0.0.1), client and other
    (two clients of the same CA), stranger (a client of a second CA), nocert
    (the CA certificate only); client_dn is the client's subject as QEMU's
    authz matches it.  With psk: psk_server (keys of alice and bob),
    psk_alice and psk_mallory (a key the server does not know)."""

    def __init__(self, base, psk=False):
        self.base = base
        self.work = os.path.join(base, "work")
        os.makedirs(self.work)
        self._ca("ca")
        self._ca("ca2")
        self._cert("ca", "server", ["cn = localhost", "dns_name = localhost",
                                    "ip_address = 127.0.0.1", "tls_www_server"])
        self._cert("ca", "client", ["organization = Berth Test",
                                    "cn = client.example.com", "tls_www_client"])
        self._cert("ca", "other", ["organization = Berth Test",
                                   "cn = other.example.com", "tls_www_client"])
        self._cert("ca2", "stranger", ["organization = Elsewhere",
                                       "cn = stranger.example.com", "tls_www_client"])
        self.server = self._layout("server", "ca", "server", "server")
        self.client = self._layout("client", "ca", "client", "client")
        self.other = self._layout("other", "ca", "other", "client")
        self.stranger = self._layout("stranger", "ca", "stranger", "client")
        self.nocert = self._layout("nocert", "ca", None, None)
        self.client_dn = self._dn("client")
        if psk:
            self._psk()

    def _psk(self):
        # The server knows alice and bob; mallory has a key of her own.
        self.psk_server = os.path.join(self.base, "psk-server")
        os.makedirs(self.psk_server)
        server_keys = os.path.join(self.psk_server, "keys.psk")
        for user in ("alice", "bob"):
            run_tool(["psktool", "-u", user, "-p", server_keys])
        self.psk_alice = self._psk_client("alice", server_keys)
        self.psk_mallory = os.path.join(self.base, "psk-mallory")
        os.makedirs(self.psk_mallory)
        run_tool(["psktool", "-u", "mallory", "-p",
                  os.path.join(self.psk_mallory, "keys.psk")])

    def _p(self, name):
        return os.path.join(self.work, name)

    def _ca(self, name):
        run_tool(["certtool", "--generate-privkey", "--key-type=ecdsa",
                  "--outfile", self._p(name + "-key.pem")])
        with open(self._p(name + ".info"), "w") as f:
            f.write("cn = Berth Test %s\nca\ncert_signing_key\nexpiration_days = 2\n"
                    % name.upper())
        run_tool(["certtool", "--generate-self-signed",
                  "--load-privkey", self._p(name + "-key.pem"),
                  "--template", self._p(name + ".info"),
                  "--outfile", self._p(name + "-cert.pem")])

    def _cert(self, ca, name, lines):
        run_tool(["certtool", "--generate-privkey", "--key-type=ecdsa",
                  "--outfile", self._p(name + "-key.pem")])
        with open(self._p(name + ".info"), "w") as f:
            f.write("\n".join(lines + ["signing_key", "encryption_key",
                                       "expiration_days = 2"]) + "\n")
        run_tool(["certtool", "--generate-certificate",
                  "--load-ca-certificate", self._p(ca + "-cert.pem"),
                  "--load-ca-privkey", self._p(ca + "-key.pem"),
                  "--load-privkey", self._p(name + "-key.pem"),
                  "--template", self._p(name + ".info"),
                  "--outfile", self._p(name + "-cert.pem")])

    def _layout(self, folder, ca, cert, role):
        d = os.path.join(self.base, folder)
        os.makedirs(d)
        os.symlink(self._p(ca + "-cert.pem"), os.path.join(d, "ca-cert.pem"))
        if cert:
            os.symlink(self._p(cert + "-cert.pem"), os.path.join(d, role + "-cert.pem"))
            os.symlink(self._p(cert + "-key.pem"), os.path.join(d, role + "-key.pem"))
        return d

    def _psk_client(self, user, server_keys):
        d = os.path.join(self.base, "psk-" + user)
        os.makedirs(d)
        with open(server_keys) as f:
            line = [l for l in f if l.startswith(user + ":")][0]
        with open(os.path.join(d, "keys.psk"), "w") as f:
            f.write(line)
        return d

    def _dn(self, name):
        """The subject DN as QEMU matches it: certtool prints RFC 4514 order
        (most specific first), QEMU's identity is the reverse."""
        _, out, _ = run_tool(["certtool", "-i", "--infile", self._p(name + "-cert.pem")])
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Subject:"):
                rfc4514 = line[len("Subject:"):].strip()
                return ",".join(reversed(rfc4514.split(",")))
        raise AssertionError("no subject in certtool output")


def x509_object(oid, folder, endpoint="server", verify_peer=None):
    """The value of an --object option for x509 credentials in folder."""
    s = "tls-creds-x509,id=%s,dir=%s,endpoint=%s" % (oid, opt_escape(folder), endpoint)
    if verify_peer is not None:
        s += ",verify-peer=%s" % _onoff(verify_peer)
    return s


# ---------------------------------------------------------------------------
# libnbd conveniences

def nbd_connect(nbd, sock, name, structured=True, meta=(), strict=None,
                opt_mode=False, full_info=False):
    h = nbd.NBD()
    h.set_handle_name("berth-test")
    h.set_export_name(name)
    h.set_request_structured_replies(structured)
    for m in meta:
        h.add_meta_context(m)
    if strict is not None:
        h.set_strict_mode(strict)
    if opt_mode:
        h.set_opt_mode(True)
    if full_info:
        h.set_full_info(True)
    h.connect_unix(sock)
    return h


@contextlib.contextmanager
def nbd_handle(nbd, sock, name, **kw):
    h = nbd_connect(nbd, sock, name, **kw)
    try:
        yield h
    finally:
        with contextlib.suppress(Exception):
            if h.aio_is_ready() or h.aio_is_processing():
                h.shutdown()
        h.close() if hasattr(h, "close") else None
        del h


def assert_export_serves(nbd, sock, name, length=4096):
    """A fresh client reaches transmission and reads; returns the data."""
    with nbd_handle(nbd, sock, name) as h:
        return h.pread(min(length, h.get_size()), 0)
