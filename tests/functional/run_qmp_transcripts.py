#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the QMP transcript tests in tests/functional/qmp/.

Each script NAME (no extension) prints a transcript on standard output; it
must exit 0 and its output must equal NAME.out beside it, or a unified diff
is printed and the run fails.  A script that exits 77 is skipped.

    run_qmp_transcripts.py [NAME ...]        all scripts, or the named ones
    BERTH_REGEN=1 run_qmp_transcripts.py     rewrite the .out files

$BERTHD / $BERTH_FUNCTIONAL_DAEMON select the daemon, as for the other
functional tests.  Against qemu-storage-daemon, scripts use NAME.qsd.out
when it exists (and berth-only scripts skip themselves).
"""

import difflib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QMP_DIR = os.path.join(HERE, "qmp")
sys.path.insert(0, HERE)

import berth_harness as bh  # noqa: E402

SCRIPT_TIMEOUT = 60


def scripts(names):
    all_names = sorted(n for n in os.listdir(QMP_DIR)
                       if not n.startswith(".") and "." not in n
                       and os.path.isfile(os.path.join(QMP_DIR, n)))
    if not names:
        return all_names
    bad = [n for n in names if n not in all_names]
    if bad:
        sys.exit("unknown transcript test(s): %s" % ", ".join(bad))
    return names


def main(argv):
    regen = os.environ.get("BERTH_REGEN") == "1"
    qsd = bh.is_qsd()
    failed, skipped, passed = [], [], []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if bh.DAEMON_PATH:
        # The scripts run in qmp/: hand them an absolute path.
        daemon = bh.DAEMON_PATH if os.sep not in bh.DAEMON_PATH else os.path.abspath(bh.DAEMON_PATH)
        env["BERTHD"] = daemon
        if "BERTH_FUNCTIONAL_DAEMON" in env:
            env["BERTH_FUNCTIONAL_DAEMON"] = daemon
    for name in scripts(argv[1:]):
        path = os.path.join(QMP_DIR, name)
        if qsd and not regen and not os.path.exists(path + ".qsd.out"):
            # The .out files record berthd; a qsd reference is optional.
            print("SKIP %s: no %s.qsd.out for qemu-storage-daemon" % (name, name))
            skipped.append(name)
            continue
        t0 = time.monotonic()
        try:
            p = subprocess.run(["/usr/bin/python3", path], cwd=QMP_DIR, env=env,
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            print("FAIL %s: timed out after %d s" % (name, SCRIPT_TIMEOUT))
            failed.append(name)
            continue
        dt = time.monotonic() - t0
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode == bh.SKIP_EXIT:
            print("SKIP %s: %s" % (name, err.strip()))
            skipped.append(name)
            continue
        if p.returncode != 0:
            print("FAIL %s: exit status %d\n--- stdout:\n%s--- stderr:\n%s"
                  % (name, p.returncode, out, err))
            failed.append(name)
            continue
        ref = os.path.join(QMP_DIR, name + ".out")
        if qsd and os.path.exists(os.path.join(QMP_DIR, name + ".qsd.out")):
            ref = os.path.join(QMP_DIR, name + ".qsd.out")
        if regen:
            with open(ref, "w") as f:
                f.write(out)
            print("REGEN %s -> %s" % (name, os.path.basename(ref)))
            passed.append(name)
            continue
        try:
            with open(ref) as f:
                expected = f.read()
        except FileNotFoundError:
            expected = ""
        if out != expected:
            diff = difflib.unified_diff(expected.splitlines(True), out.splitlines(True),
                                        os.path.basename(ref), name + " (actual)")
            print("FAIL %s: output differs (%.1f s)" % (name, dt))
            sys.stdout.writelines(diff)
            if err.strip():
                print("--- stderr:\n" + err)
            failed.append(name)
        else:
            print("ok   %s (%.1f s)" % (name, dt))
            passed.append(name)
    print("%d passed, %d failed, %d skipped" % (len(passed), len(failed), len(skipped)))
    if failed:
        return 1
    if skipped and not passed:
        return bh.SKIP_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
