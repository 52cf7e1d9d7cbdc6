#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Socket activation (LISTEN_PID/LISTEN_FDS), driven by systemd-socket-activate.

berth-nbd serves on the passed socket, and refuses -k, -b and -p with
qemu-nbd's words (checked against qemu-nbd side by side); berthd's
--nbd-server without addr, and berthd with no options at all, serve on it;
variables meant for another process are ignored; the example units in
contrib/systemd run as written (paths replaced) under the same activator."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import MiB

bh.require_tools("systemd-socket-activate", "nbdinfo", "qemu-nbd")

BERTH_NBD = (os.environ.get("BERTH_NBD")
             or os.path.join(bh.SOURCE_ROOT, "build", "tools", "berth-nbd"))
UNITS = os.path.join(bh.SOURCE_ROOT, "contrib", "systemd")


def nbdinfo_size(sock, name=""):
    out = subprocess.run(["nbdinfo", "--size", bh.nbd_uri(sock, name)], capture_output=True,
                         text=True, timeout=bh.TOOL_TIMEOUT)
    return out.returncode, out.stdout.strip(), out.stderr


class Activation(bh.DaemonTestCase):

    def activate(self, argv, name="activated", cwd=None):
        """Run argv under systemd-socket-activate on a fresh unix socket;
        returns (daemon, socket path). The activator listens at once and
        starts argv at the first connection."""
        sock = self.path(name + ".sock")
        d = bh.Daemon(["-l", sock] + list(argv), cwd or self.tmpdir, name=name,
                      exe=shutil.which("systemd-socket-activate"))
        self.addCleanup(d.kill)
        d.start()
        d.wait_unix(sock)
        return d, sock

    def image(self, size=4 * MiB):
        return bh.make_sparse_file(self.path("disk.img"), size)

    @bh.berth_only
    def test_berth_nbd_serves_passed_socket(self):
        img = self.image()
        d, sock = self.activate([BERTH_NBD, "--persistent", "-f", "raw", "-x", "disk", img])
        for _ in range(2):
            rc, size, err = nbdinfo_size(sock, "disk")
            self.assertEqual(rc, 0, err)
            self.assertEqual(int(size), 4 * MiB)
        self.assertFalse(os.path.exists(self.path("berth-nbd.sock")))

    @bh.berth_only
    def test_berth_nbd_refusals_match_qemu_nbd(self):
        img = self.image()
        for opt in (["-k", self.path("other.sock")], ["-p", "10899"], ["-b", "127.0.0.1"]):
            msgs = []
            for i, tool in enumerate((BERTH_NBD, shutil.which("qemu-nbd"))):
                name = "refuse%d-%s" % (i, opt[0][1:])
                d, sock = self.activate([tool, "-f", "raw"] + opt + [img], name=name)
                nbdinfo_size(sock)          # the first connection starts the tool
                d.wait_exit()
                with open(d.stderr_path) as f:
                    err = f.read()
                m = re.search(r"^(?:berth-nbd|qemu-nbd): (.*)$", err, re.M)
                self.assertIsNotNone(m, err)
                msgs.append(m.group(1))
            with self.subTest(opt=opt[0]):
                self.assertEqual(msgs[0], msgs[1])

    @bh.berth_only
    def test_berthd_nbd_server_without_addr(self):
        d, sock = self.activate([bh.DAEMON_PATH, "--blockdev",
                                 "driver=null-co,node-name=n0,size=%d" % (8 * MiB),
                                 "--nbd-server", "max-connections=4",
                                 "--export", "type=nbd,id=e0,node-name=n0,name=n0"])
        for _ in range(3):
            rc, size, err = nbdinfo_size(sock, "n0")
            self.assertEqual(rc, 0, err)
            self.assertEqual(int(size), 8 * MiB)

    @bh.berth_only
    def test_berthd_default_on_passed_socket(self):
        d, sock = self.activate([bh.DAEMON_PATH], name="default")
        rc, size, err = nbdinfo_size(sock, "disk")
        self.assertEqual(rc, 0, err)
        self.assertEqual(int(size), 1024 * MiB)
        with open(d.stderr_path) as f:
            self.assertIn("socket activation", f.read())

    @bh.berth_only
    def test_berthd_without_addr_or_activation(self):
        out = subprocess.run([bh.DAEMON_PATH, "--nbd-server", "max-connections=4"],
                             capture_output=True, text=True, timeout=bh.TOOL_TIMEOUT)
        self.assertEqual(out.returncode, 1)
        self.assertIn("Parameter 'addr' is missing", out.stderr)

    @bh.berth_only
    def test_variables_for_another_process_are_ignored(self):
        img = self.image()
        sock = self.path("own.sock")
        os.environ["LISTEN_PID"], os.environ["LISTEN_FDS"] = "1", "1"
        try:
            d = bh.Daemon(["-f", "raw", "-k", sock, img], self.tmpdir, name="own",
                          exe=BERTH_NBD)
            self.addCleanup(d.kill)
            d.start()
        finally:
            del os.environ["LISTEN_PID"], os.environ["LISTEN_FDS"]
        d.wait_unix(sock)
        rc, size, err = nbdinfo_size(sock)
        self.assertEqual(rc, 0, err)

    @bh.berth_only
    def test_malformed_variables(self):
        env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="x")
        # The child's pid differs from ours, so name the child: use a shell.
        out = subprocess.run(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', BERTH_NBD,
                              "-f", "raw", self.image()],
                             env=env, capture_output=True, text=True, timeout=bh.TOOL_TIMEOUT)
        self.assertEqual(out.returncode, 1)
        self.assertIn("Invalid LISTEN_FDS 'x'", out.stderr)

    @bh.berth_only
    def test_example_units_run(self):
        img = self.image()
        for unit, exe in (("berth-nbd.service", BERTH_NBD), ("berthd.service", bh.DAEMON_PATH)):
            with open(os.path.join(UNITS, unit)) as f:
                line = next(l for l in f if l.startswith("ExecStart="))
            argv = shlex.split(line[len("ExecStart="):])
            argv[0] = exe
            argv = [a.replace("/var/lib/berth/disk.img", img)
                     .replace("/run/", self.tmpdir + "/") for a in argv]
            name = unit.split(".")[0]
            d, sock = self.activate(argv, name=name)
            with self.subTest(unit=unit):
                rc, size, err = nbdinfo_size(sock, "disk" if "berth-nbd" in unit else "disk0")
                self.assertEqual(rc, 0, err)
                self.assertEqual(int(size), 4 * MiB)
            with open(os.path.join(UNITS, unit.replace(".service", ".socket"))) as f:
                self.assertIn("ListenStream=", f.read())


if __name__ == "__main__":
    bh.main()
