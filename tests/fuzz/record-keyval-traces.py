#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Record the seed corpus of the keyval fuzz target (corpus/keyval/): the
option strings berthd is really given. Functional tests run against a
wrapper that logs berthd's command line and then runs it; every
--blockdev, --object, --export, --nbd-server, --monitor and --chardev
value becomes a seed, behind the byte that makes the target parse it with
that option's implied key (fuzz-keyval.c).

    BERTHD=build/tools/berthd /usr/bin/python3 tests/fuzz/record-keyval-traces.py

It rewrites corpus/keyval/ (at most MAX_SEEDS seeds, the most varied).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTIONAL = os.path.join(HERE, "..", "functional")
# The implied-key byte of each option (fuzz-keyval.c's implied_keys).
OPTIONS = {"--nbd-server": 0, "--blockdev": 1, "--object": 2, "--export": 3,
           "--monitor": 4, "--chardev": 5}
TESTS = ["test_daemon.py", "test_tls.py", "run_qmp_transcripts.py"]
MAX_SEEDS = 40


def main():
    berthd = os.path.abspath(os.environ.get("BERTHD", "build/tools/berthd"))
    tmp = tempfile.mkdtemp(prefix="berth-keyval-record-")
    log = os.path.join(tmp, "argv.log")
    wrapper = os.path.join(tmp, "berthd")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\0' \"$a\" >> %s; done\n"
                "printf '\\n\\0' >> %s\nexec %s \"$@\"\n" % (log, log, berthd))
    os.chmod(wrapper, 0o755)
    try:
        for t in TESTS:
            subprocess.run(["/usr/bin/python3", t], cwd=FUNCTIONAL, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=900,
                           env=dict(os.environ, BERTHD=wrapper, PYTHONDONTWRITEBYTECODE="1"))
        with open(log, "rb") as f:
            words = f.read().split(b"\0")
        seeds = {}
        for opt, value in zip(words, words[1:]):
            key = OPTIONS.get(opt.decode("utf-8", "replace"))
            if key is None or not value or value == b"\n":
                continue
            # temporary paths differ per run: keep the shape, not the folder
            value = re.sub(rb"(?:/tmp|/var/tmp)/[A-Za-z0-9_.-]+/", b"", value)
            data = bytes([key]) + value
            # one seed per option and set of keys: the most varied few
            shape = (key, tuple(sorted(k.split(b"=")[0] for k in value.split(b","))))
            seeds.setdefault(shape, data)
        out = os.path.join(HERE, "corpus", "keyval")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        chosen = sorted(seeds.values(), key=lambda d: (-len(set(d)), d))[:MAX_SEEDS]
        for data in chosen:
            name = [k for k, v in OPTIONS.items() if v == data[0]][0].lstrip("-")
            digest = hashlib.sha1(data).hexdigest()[:12]
            with open(os.path.join(out, "%s-%s" % (name, digest)), "wb") as f:
                f.write(data)
        print("corpus/keyval: %d seeds (of %d shapes)" % (len(chosen), len(seeds)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
