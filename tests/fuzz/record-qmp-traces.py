#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Record the seed corpus of the QMP fuzz target (corpus/qmp/) from real
sessions: every QMP transcript test in tests/functional/qmp/ is run
against berthd with the harness's QMP client wrapped so that each
connection's bytes, as sent, are kept. Absolute paths under the system's
temporary folder become relative ones, which the target (run in a folder
of its own) can use.

    BERTHD=build/tools/berthd /usr/bin/python3 tests/fuzz/record-qmp-traces.py

The daemon's command line (--blockdev, --nbd-server) made the nodes and
the server those sessions use; the target starts from nothing, so each
seed gets the equivalent blockdev-add and nbd-server-start requests right
after its qmp_capabilities.

It rewrites corpus/qmp/.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTIONAL = os.path.join(HERE, "..", "functional")
QMP_DIR = os.path.join(FUNCTIONAL, "qmp")
MAX_SEED = 64 * 1024

# Run inside the child: the transcript script with QMPConnection recording.
CHILD = r"""
import os, runpy, sys
sys.path.insert(0, sys.argv[2])
import berth_harness as bh
out_dir, script = sys.argv[3], sys.argv[1]
count = [0]
orig_init, orig_send = bh.QMPConnection.__init__, bh.QMPConnection.send_raw

def init(self, *a, **kw):
    count[0] += 1
    self._record = open(os.path.join(out_dir, "%s-%d" % (os.path.basename(script), count[0])),
                        "wb")
    orig_init(self, *a, **kw)

def send_raw(self, data):
    b = data.encode("utf-8") if isinstance(data, str) else data
    self._record.write(b)
    self._record.flush()
    orig_send(self, data)

bh.QMPConnection.__init__, bh.QMPConnection.send_raw = init, send_raw
import qmp_transcript as qt
orig_t_init = qt.Transcript.__init__

def t_init(self, *a, **kw):
    start = kw.pop("start", True)
    orig_t_init(self, *a, start=False, **kw)
    with open(os.path.join(out_dir, os.path.basename(script) + ".args"), "w") as f:
        json.dump(self.args, f)
    if start:
        self.start()

import json
qt.Transcript.__init__ = t_init
sys.argv = [script]
os.chdir(os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


SIZE_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def keyval_to_qmp(optstr):
    """A simple --blockdev string (no ',,', no nesting) as QMP arguments."""
    args = {}
    for item in optstr.split(","):
        key, _, value = item.partition("=")
        if value in ("on", "off"):
            args[key] = value == "on"
        elif key == "size" and value[-1:] in SIZE_SUFFIX:
            args[key] = int(value[:-1]) * SIZE_SUFFIX[value[-1]]
        elif key == "size":
            args[key] = int(value)
        else:
            args[key] = value
    return args


def preamble(cmdline):
    """What the daemon's command line did, as QMP requests."""
    reqs = []
    for opt, value in zip(cmdline, cmdline[1:]):
        if opt == "--blockdev":
            reqs.append({"execute": "blockdev-add", "arguments": keyval_to_qmp(value)})
        elif opt == "--nbd-server":
            reqs.append({"execute": "nbd-server-start", "arguments": {
                "addr": {"type": "unix", "data": {"path": "nbd.sock"}}}})
    return "".join(json.dumps(r) + "\n" for r in reqs).encode()


def with_preamble(data, cmdline):
    first, nl, rest = data.partition(b"\n")
    if b"qmp_capabilities" not in first or not nl:
        return data
    return first + nl + preamble(cmdline) + rest


def main():
    out = os.path.join(HERE, "corpus", "qmp")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    raw = tempfile.mkdtemp(prefix="berth-qmp-record-")
    tmp_prefix = re.compile(rb"(?:%s|/tmp|/var/tmp)/[A-Za-z0-9_.-]+/"
                            % re.escape(tempfile.gettempdir().encode()))
    try:
        for name in sorted(os.listdir(QMP_DIR)):
            path = os.path.join(QMP_DIR, name)
            if "." in name or not os.path.isfile(path):
                continue
            p = subprocess.run(["/usr/bin/python3", "-c", CHILD, path, FUNCTIONAL, raw],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
            if p.returncode not in (0, 77):
                print("%s: exit %d\n%s" % (name, p.returncode, p.stderr.decode()[-2000:]),
                      file=sys.stderr)
        seen = set()
        for name in sorted(os.listdir(raw)):
            if name.endswith(".args"):
                continue
            with open(os.path.join(raw, name), "rb") as f:
                data = f.read()
            args_file = os.path.join(raw, name.rsplit("-", 1)[0] + ".args")
            if os.path.exists(args_file):
                with open(args_file) as f:
                    data = with_preamble(data, json.load(f))
            data = tmp_prefix.sub(b"", data)
            if not data or len(data) > MAX_SEED or data in seen:
                continue
            seen.add(data)
            digest = hashlib.sha1(data).hexdigest()[:12]
            with open(os.path.join(out, "%s-%s" % (name, digest)), "wb") as f:
                f.write(data)
        print("corpus/qmp: %d seeds" % len(os.listdir(out)))
    finally:
        shutil.rmtree(raw, ignore_errors=True)


if __name__ == "__main__":
    main()
