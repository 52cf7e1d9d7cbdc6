#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Transcript tests for berthd's QMP monitor.

A transcript test is a short script in tests/functional/qmp/ that starts a
daemon, talks QMP to it, connects NBD clients, and prints what happened: each
request sent, each reply, each event.  Its standard output, after filtering
(temporary paths, timestamps, PIDs, ports, version strings), is compared by
run_qmp_transcripts.py with NAME.out beside the script.

Determinism: replies are logged as they come; events are queued and only
logged when the script asks (wait_event / log_events), so the interleaving
of an event with a reply never shows in the transcript.  JSON is logged with
sorted keys.

Everything is bounded: socket timeouts, a per-script watchdog, and the daemon
is killed by PID (never by name) when the script ends abnormally.
"""

import atexit
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import berth_harness as bh  # noqa: E402
from berth_harness import QMPConnection  # noqa: E402

EVENT_TIMEOUT = 10.0
SCRIPT_TIMEOUT = float(os.environ.get("BERTH_TEST_TIMEOUT", "45"))


def skip(reason):
    sys.stderr.write("SKIP: %s\n" % reason)
    sys.exit(bh.SKIP_EXIT)


def is_qsd():
    return bh.is_qsd()


def berth_only(reason="berth-only"):
    """Call at the top of a script that uses berth-only commands."""
    if is_qsd():
        skip(reason)


class Transcript:
    """One daemon plus the transcript of a conversation with it."""

    def __init__(self, args=(), monitor=True, nbd_server=False, start=True):
        self.dir = tempfile.mkdtemp(prefix="berth-qmp-")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.nbd_path = os.path.join(self.dir, "nbd.sock")
        self.args = []
        if monitor:
            self.args += bh.qmp_monitor(self.qmp_path)
        if nbd_server:
            self.args += bh.nbd_server_unix(self.nbd_path)
        self.args += list(args)
        self.daemon = None
        self.qmp = None
        self.monitors = []
        self.handles = []
        self.filters = []
        self._done = False
        atexit.register(self._cleanup)
        self._watchdog = threading.Timer(SCRIPT_TIMEOUT, self._watchdog_fire)
        self._watchdog.daemon = True
        self._watchdog.start()
        if start:
            self.start()

    # -- life cycle ---------------------------------------------------------

    def _watchdog_fire(self):
        sys.stderr.write("WATCHDOG: transcript exceeded %.0f s\n" % SCRIPT_TIMEOUT)
        if self.daemon and self.daemon.alive():
            try:
                os.kill(self.daemon.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.stdout.flush()
        os._exit(1)

    def start(self, negotiate=True):
        if bh.DAEMON_PATH is None:
            sys.stderr.write("ERROR: daemon %r not found\n" % bh.BERTHD)
            sys.exit(1)
        self.daemon = bh.Daemon(self.args, self.dir,
                                wait_for=self.qmp_path if "--monitor" in self.args else None)
        self.daemon.start()
        if "--monitor" in self.args:
            self.qmp = self.connect(negotiate=negotiate)
        return self

    def connect(self, negotiate=True, log=False):
        """Another monitor connection (the first one is self.qmp)."""
        m = QMPConnection(self.qmp_path)
        self.monitors.append(m)
        if log:
            self.log_json("<greeting>", m.greeting)
        if negotiate:
            r = m.cmd("qmp_capabilities")
            assert r == {"return": {}}, r
        return m

    def _cleanup(self):
        for h in self.handles:
            try:
                h.close() if hasattr(h, "close") else None
            except Exception:
                pass
        for m in self.monitors:
            m.close()
        if self.daemon is not None and self.daemon.alive():
            self.daemon.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        self._watchdog.cancel()

    def finish(self, expect_status=0):
        """Stop the daemon with SIGTERM (unless it already exited) and check
        the exit status."""
        for m in self.monitors:
            m.close()
        self.monitors = []
        if self.daemon is not None:
            if self.daemon.alive():
                self.daemon.send_signal(signal.SIGTERM)
            rc = self.daemon.wait_exit()
            if rc != expect_status:
                sys.stderr.write(self.daemon.describe() + "\n")
                raise AssertionError("daemon exit status %r, expected %r"
                                     % (rc, expect_status))
        self._cleanup()
        self._done = True

    # -- logging --------------------------------------------------------------

    def add_filter(self, pattern, repl):
        self.filters.append((re.compile(pattern), repl))

    def filter(self, text):
        text = text.replace(self.dir, "TEST_DIR")
        if self.daemon is not None and self.daemon.proc is not None:
            text = re.sub(r"\b%d\b" % self.daemon.pid, "PID", text)
        text = re.sub(r'"seconds": \d+, "microseconds": \d+',
                      '"seconds": SECS, "microseconds": USECS', text)
        text = re.sub(r'"microseconds": \d+, "seconds": \d+',
                      '"microseconds": USECS, "seconds": SECS', text)
        text = re.sub(r'"package": "[^"]*"', '"package": PACKAGE', text)
        text = re.sub(r'"(major|minor|micro)": \d+', r'"\1": N', text)
        text = re.sub(r'"actual-size": \d+', '"actual-size": SIZE', text)
        text = re.sub(r'127\.0\.0\.1:\d+', '127.0.0.1:PORT', text)
        text = re.sub(r'"port": "?\d+"?', '"port": PORT', text)
        text = re.sub(r'"peer-pid": \d+, "peer-uid": \d+', '"peer-pid": PID, "peer-uid": UID',
                      text)
        for rx, repl in self.filters:
            text = rx.sub(repl, text)
        return text

    def log(self, text=""):
        sys.stdout.write(self.filter(str(text)) + "\n")
        sys.stdout.flush()

    def log_json(self, prefix, obj):
        self.log("%s %s" % (prefix, json.dumps(obj, sort_keys=True)))

    # -- QMP --------------------------------------------------------------

    def cmd(self, command, args=None, /, *, mon=None, filt=None, **kw):
        """Send a command, log request and reply, return the reply."""
        mon = mon or self.qmp
        req = QMPConnection.request(command, args, **kw)
        self.log_json("->", req)
        mon.send_raw(json.dumps(req) + "\n")
        rep = mon.reply()
        self.log_json("<-", filt(rep) if filt else rep)
        return rep

    def raw(self, text, mon=None, replies=1):
        """Send raw bytes, log them and `replies` replies."""
        mon = mon or self.qmp
        self.log("-> (raw) " + json.dumps(text))
        mon.send_raw(text)
        out = []
        for _ in range(replies):
            rep = mon.reply()
            self.log_json("<-", rep)
            out.append(rep)
        return out

    def ok(self, command, args=None, /, **kw):
        rep = self.cmd(command, args, **kw)
        if "error" in rep:
            raise AssertionError("%s failed: %r" % (command, rep))
        return rep["return"]

    def wait_event(self, name, mon=None, timeout=EVENT_TIMEOUT, log=True):
        """Wait for event `name` (events before it stay queued)."""
        mon = mon or self.qmp
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(mon.events):
                if ev["event"] == name:
                    del mon.events[i]
                    if log:
                        self.log_json("<- (event)", ev)
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                self.log("!! timeout waiting for event %s" % name)
                return None
            mon.poll_events(min(left, 0.05))

    def log_events(self, mon=None, settle=0.2):
        """Log (sorted by name, then data) the events received so far, after
        waiting `settle` seconds for stragglers."""
        mon = mon or self.qmp
        mon.poll_events(settle)
        evs = sorted(mon.events, key=lambda e: (e["event"],
                                                json.dumps(e.get("data"), sort_keys=True)))
        mon.events = []
        if not evs:
            self.log("<- (no events)")
        for ev in evs:
            self.log_json("<- (event)", ev)
        return evs

    # -- NBD clients --------------------------------------------------------

    def nbd_client(self, name, sock=None, log=True):
        """A libnbd handle connected to export `name`."""
        import nbd
        h = nbd.NBD()
        h.set_handle_name("transcript")
        h.set_export_name(name)
        h.connect_unix(sock or self.nbd_path)
        self.handles.append(h)
        if log:
            self.log("nbd: connected to %r, size %d, read-only %s"
                     % (name, h.get_size(), bool(h.is_read_only())))
        return h

    def nbd_try(self, what, func):
        """Run an NBD operation, log 'ok' or the error (errno name only)."""
        import nbd
        try:
            r = func()
            self.log("nbd: %s: ok" % what)
            return r
        except nbd.Error as e:
            en = e.errno
            import errno as _errno
            self.log("nbd: %s: error %s" % (what, _errno.errorcode.get(en, en) if en else "(no errno)"))
            return None


def main_guard(func):
    """Run func(); on an exception print it to stderr and exit 1."""
    try:
        bh.import_nbd()
        func()
    except SystemExit:
        raise
    except BaseException:
        import traceback
        sys.stdout.flush()
        traceback.print_exc()
        sys.exit(1)
