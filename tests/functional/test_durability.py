#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What a server acknowledged is in the file, even if it dies at once.

Each test writes through libnbd, waits for the replies that promise
durability (a FLUSH, FUA writes, or any write on a writethrough export),
SIGKILLs the daemon the moment the last reply is in, then reopens the image
file and compares it with what was written. Both file I/O paths are covered
(aio=threads and aio=io_uring), buffered and with cache.direct=on where the
test folder's filesystem takes O_DIRECT. A kill cannot lose what the
kernel's page cache holds, so these tests check the part a server controls:
nothing acknowledged is still waiting in the server's own queues or buffers.
Runs against qemu-storage-daemon too."""

import os
import random
import sys
import unittest

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

DISK = 16 * MiB
BLOCK = 64 * KiB


def o_direct_works(folder):
    probe = os.path.join(folder, "odirect.probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def uring_works():
    """io_uring may be disabled (kernel.io_uring_disabled, seccomp)."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True


class Durability(bh.DaemonTestCase):

    def serve(self, aio="threads", direct=False, writethrough=False):
        folder = self.tmpdir
        if direct:
            # tmpfs refuses O_DIRECT: use a disk-backed folder for the image.
            folder = self.disk_dir()
        img = bh.make_sparse_file(os.path.join(folder, "disk-%s.img" % aio), DISK)
        sock = self.path("nbd-%s.sock" % aio)
        blockdev = "driver=file,node-name=f0,filename=%s,aio=%s" % (bh.opt_escape(img), aio)
        if direct:
            blockdev += ",cache.direct=on"
        export = "type=nbd,id=e0,node-name=f0,name=,writable=on"
        if writethrough:
            export += ",writethrough=on"
        # Not a test daemon of the harness, whose clean-up wants a clean exit.
        d = bh.Daemon(["--blockdev", blockdev] + bh.nbd_server_unix(sock)
                      + ["--export", export], self.tmpdir, name="daemon-" + aio)
        self.addCleanup(d.kill)
        d.start()
        d.wait_unix(sock)
        h = nbd.NBD()
        h.connect_uri(bh.nbd_uri(sock))
        return d, h, img

    def disk_dir(self):
        for base in ("/var/tmp", os.path.expanduser("~")):
            if os.path.isdir(base) and o_direct_works(base):
                path = os.path.join(base, "berth-durability-%d" % os.getpid())
                os.makedirs(path, exist_ok=True)
                self.addCleanup(lambda p=path: __import__("shutil").rmtree(p, True))
                return path
        self.skipTest("no folder here takes O_DIRECT")

    def write_pattern(self, h, seed, flags=0, count=64):
        """Pipelined writes of BLOCK bytes at distinct random block offsets,
        all waited for; returns {offset: data}."""
        rnd = random.Random(seed)
        model = {}
        cookies = []
        # Distinct offsets: NBD does not order writes that are in flight
        # together, so two to one place would leave either.
        for off in (b * BLOCK for b in rnd.sample(range(DISK // BLOCK), count)):
            data = rnd.randbytes(BLOCK)
            model[off] = data
            cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off,
                                        flags=flags))
        for c in cookies:
            while not h.aio_command_completed(c):
                h.poll(-1)
        return model

    def kill_and_check(self, d, h, img, model):
        d.kill()
        self.assertFalse(d.alive())
        del h
        with open(img, "rb") as f:
            for off, data in sorted(model.items()):
                f.seek(off)
                got = f.read(len(data))
                self.assertTrue(got == data, "data at %d lost after SIGKILL" % off)

    def each_aio(self, body):
        """Run body(aio) for both file I/O paths, each as a subtest."""
        for aio in ("threads", "io_uring"):
            if aio == "io_uring" and not uring_works():
                continue
            with self.subTest(aio=aio):
                body(aio)

    def test_flush(self):
        def body(aio):
            d, h, img = self.serve(aio=aio)
            model = self.write_pattern(h, seed=1)
            h.flush()
            self.kill_and_check(d, h, img, model)
        self.each_aio(body)

    def test_fua(self):
        def body(aio):
            d, h, img = self.serve(aio=aio)
            model = self.write_pattern(h, seed=2, flags=nbd.CMD_FLAG_FUA)
            self.kill_and_check(d, h, img, model)
        self.each_aio(body)

    def test_writethrough_export(self):
        def body(aio):
            d, h, img = self.serve(aio=aio, writethrough=True)
            model = self.write_pattern(h, seed=3)
            self.kill_and_check(d, h, img, model)
        self.each_aio(body)

    def test_direct_flush_and_fua(self):
        def body(aio):
            d, h, img = self.serve(aio=aio, direct=True)
            model = self.write_pattern(h, seed=4)
            h.flush()
            model.update(self.write_pattern(h, seed=5, flags=nbd.CMD_FLAG_FUA, count=16))
            self.kill_and_check(d, h, img, model)
        self.each_aio(body)

    def test_zeroes_after_flush(self):
        """Zeroing is durable like data: what reads back after the reply
        reads back from the file after the kill."""
        def body(aio):
            d, h, img = self.serve(aio=aio)
            model = self.write_pattern(h, seed=6, count=16)
            for off in sorted(model)[:4]:
                h.zero(BLOCK, off)
                model[off] = bytes(BLOCK)
            h.flush()
            self.kill_and_check(d, h, img, model)
        self.each_aio(body)


if __name__ == "__main__":
    bh.main()
