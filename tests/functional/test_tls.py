#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""TLS for the NBD server: x509 (with and without client certificates), PSK,
tls-authz, and the plaintext side of STARTTLS, through libnbd, qemu-img and
raw sockets.

Every key, certificate and PSK file is made at run time in a temporary
folder with certtool and psktool: a CA, a server certificate, two client
certificates ('client' and 'other') from that CA, and a client certificate
from a second, unrelated CA.  One daemon per configuration is started for
each test class, since a server has one set of credentials."""

import os
import ssl
import sys
import time

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import nbd_wire as w
from berth_harness import KiB, MiB

nbd = bh.import_nbd()

DISK_SIZE = 16 * MiB
CLIENT_DN_FIELDS = ("Berth Test", "client.example.com")


class TlsBase(bh.DaemonTestCase):
    """A PKI for the class, and a daemon per server configuration."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = bh.Pki(os.path.join(cls.class_dir, "pki"), psk=True)
        cls.daemons = {}
        cls.disk = bh.make_sparse_file(os.path.join(cls.class_dir, "disk.img"), DISK_SIZE)

    @classmethod
    def serve(cls, name, objects, creds="tls0", authz=None):
        sock = os.path.join(cls.class_dir, name + ".sock")
        server = "addr.type=unix,addr.path=%s,tls-creds=%s" % (bh.opt_escape(sock), creds)
        if authz:
            server += ",tls-authz=" + authz
        args = []
        for o in objects:
            args += ["--object", o]
        args += (bh.blockdev_file("disk0", cls.disk)
                 + ["--nbd-server", server]
                 + bh.nbd_export("exp0", "disk0", "disk0", writable=True))
        cls.daemons[sock] = cls.start_class_daemon(args, wait_for=sock, name=name)
        return sock

    def assert_logged(self, sock, *texts):
        """The daemon serving sock said why it dropped a connection."""
        if bh.is_qsd():
            return  # QEMU traces instead of logging
        d = self.daemons[sock]
        deadline = time.monotonic() + 5
        while True:
            log = d.stderr()
            if all(t in log for t in texts):
                return
            if time.monotonic() > deadline:
                self.fail("%r not in the daemon's log:\n%s" % (texts, log))
            time.sleep(0.05)

    def handle(self, sock, certs=None, psk=None, user=None):
        h = nbd.NBD()
        h.set_export_name("disk0")
        h.set_tls(nbd.TLS_REQUIRE)
        if certs:
            h.set_tls_certificates(certs)
        if psk:
            h.set_tls_psk_file(os.path.join(psk, "keys.psk"))
        if user:
            h.set_tls_username(user)
        h.connect_unix(sock)
        return h

    def assert_refused(self, sock, **kw):
        with self.assertRaises(nbd.Error):
            self.handle(sock, **kw)

    def move_data(self, h, offset, seed):
        data = bytes((seed + i) % 251 for i in range(256 * KiB))
        h.pwrite(data, offset)
        h.flush()
        self.assertEqual(h.pread(len(data), offset), data)
        # A large read spans many TLS records.
        big = h.pread(4 * MiB, offset)
        self.assertEqual(big[:len(data)], data)


class X509(TlsBase):
    """verify-peer=on (the default): a client certificate from our CA is needed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sock = cls.serve("x509", [bh.x509_object("tls0", cls.pki.server)])

    def test_libnbd_moves_data(self):
        h = self.handle(self.sock, certs=self.pki.client)
        self.assertTrue(h.get_tls_negotiated())
        self.assertEqual(h.get_size(), DISK_SIZE)
        self.move_data(h, 1 * MiB, 1)
        h.shutdown()

    def test_many_requests_in_flight(self):
        h = self.handle(self.sock, certs=self.pki.client)
        bufs = [nbd.Buffer(64 * KiB) for _ in range(32)]
        for i, b in enumerate(bufs):
            h.aio_pread(b, i * 64 * KiB)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        h.shutdown()

    def test_no_client_cert_refused(self):
        self.assert_refused(self.sock, certs=self.pki.nocert)
        self.handle(self.sock, certs=self.pki.client).shutdown()

    def test_cert_from_another_ca_refused(self):
        self.assert_refused(self.sock, certs=self.pki.stranger)
        # gnutls clients keep a certificate the server's CA list does not
        # name to themselves; Python sends it anyway, and it is checked.
        self.assert_logged(self.sock, "TLS handshake failed")
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            try:
                self.raw_tls(c, self.pki.stranger)
                c.wait_closed()
            except (ssl.SSLError, OSError, w.Closed):
                pass
        self.assert_logged(self.sock, "is not trusted")
        self.handle(self.sock, certs=self.pki.client).shutdown()

    def test_plaintext_client_gets_tls_reqd(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            self.assertEqual(c.final(w.OPT_LIST), w.REP_ERR_TLS_REQD)
            self.assertEqual(c.final(w.OPT_STRUCTURED_REPLY), w.REP_ERR_TLS_REQD)
            t, _ = c.go("disk0")
            self.assertEqual(t, w.REP_ERR_TLS_REQD)
            t, _ = c.go("disk0", opt=w.OPT_INFO)
            self.assertEqual(t, w.REP_ERR_TLS_REQD)
            self.assertEqual(c.final(w.OPT_STARTTLS, b"data"), w.REP_ERR_INVALID)
            if bh.is_qsd():
                c.try_send(w.pack_option(w.OPT_ABORT))  # qsd hangs up without an ack
            else:
                self.assertEqual(c.final(w.OPT_ABORT), w.REP_ACK)
            c.wait_closed()
        # libnbd without TLS is refused too.
        h = nbd.NBD()
        h.set_export_name("disk0")
        h.set_tls(nbd.TLS_DISABLE)
        with self.assertRaises(nbd.Error):
            h.connect_unix(self.sock)

    def test_plaintext_flood_is_bounded(self):
        """Before TLS, each option is refused with TLS_REQD: a peer with no
        credentials that never reads those refusals costs bounded memory."""
        daemon = self.daemons[self.sock]
        before = daemon.memory_kib("VmRSS")
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            c.sock.setblocking(False)
            block = w.pack_option(w.OPT_LIST) * 4096
            sent, progress = 0, time.monotonic()
            while sent < 64 * MiB and time.monotonic() - progress < 0.5:
                try:
                    sent += c.sock.send(block[sent % len(block):])
                    progress = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.01)
            self.assertLess(sent, 16 * MiB, "server kept reading unanswered options")
            grown = daemon.memory_kib("VmRSS") - before
            self.assertLess(grown, 16 * 1024, "RSS grew by %d KiB" % grown)
        self.handle(self.sock, certs=self.pki.client).shutdown()

    def test_export_name_without_tls_disconnects(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            c.send(w.pack_option(w.OPT_EXPORT_NAME, b"disk0"))
            c.wait_closed()  # raises if still open

    def raw_tls(self, c, certs):
        """STARTTLS on a raw client and wrap its socket in Python's TLS."""
        self.assertEqual(c.final(w.OPT_STARTTLS), w.REP_ACK)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(certs, "ca-cert.pem"))
        ctx.load_cert_chain(os.path.join(certs, "client-cert.pem"),
                            os.path.join(certs, "client-key.pem"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")

    def test_starttls_again_over_tls_is_invalid(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            self.raw_tls(c, self.pki.client)
            self.assertEqual(c.final(w.OPT_STARTTLS), w.REP_ERR_INVALID)
            self.assertIn("disk0", c.list_exports())
            t, _ = c.go("disk0")
            self.assertEqual(t, w.REP_ACK)

    def test_starttls_twice_in_a_row_drops_connection(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            c.send(w.pack_option(w.OPT_STARTTLS) + w.pack_option(w.OPT_STARTTLS))
            c.wait_closed()  # raises if still open
        self.handle(self.sock, certs=self.pki.client).shutdown()

    def test_garbage_instead_of_client_hello(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            self.assertEqual(c.final(w.OPT_STARTTLS), w.REP_ACK)
            c.try_send(b"this is not a TLS ClientHello\r\n" * 16)
            c.wait_closed()  # raises if still open
        self.assert_logged(self.sock, "TLS handshake failed")
        self.handle(self.sock, certs=self.pki.client).shutdown()

    def test_silent_after_starttls_does_not_block_others(self):
        with w.RawClient(self.sock, timeout=10) as c:
            c.start()
            self.assertEqual(c.final(w.OPT_STARTTLS), w.REP_ACK)
            h = self.handle(self.sock, certs=self.pki.client)
            self.move_data(h, 2 * MiB, 2)
            h.shutdown()

    @bh.needs_tools("qemu-img")
    def test_qemu_img(self):
        src = os.path.join(self.tmpdir, "src.raw")
        with open(src, "wb") as f:
            f.write(bytes(range(256)) * 4096)
        obj = bh.x509_object("t", self.pki.client, endpoint="client")
        opts = ("driver=nbd,server.type=unix,server.path=%s,export=disk0,tls-creds=t,"
                "tls-hostname=localhost"
                % bh.opt_escape(self.sock))
        _, out, _ = bh.run_tool(["qemu-img", "info", "--object", obj, "--image-opts", opts])
        self.assertIn(str(DISK_SIZE), out.replace(",", "").replace(" ", ""))
        bh.run_tool(["qemu-img", "convert", "-n", "--object", obj, "-f", "raw", src,
                     "--target-image-opts", opts])
        back = os.path.join(self.tmpdir, "back.raw")
        bh.run_tool(["qemu-img", "convert", "--object", obj, "--image-opts", opts,
                     "-O", "raw", back])
        with open(back, "rb") as f:
            self.assertEqual(f.read(1 * MiB), bytes(range(256)) * 4096)

    @bh.needs_tools("nbdinfo")
    def test_nbdinfo(self):
        uri = "nbds+unix:///disk0?socket=%s&tls-certificates=%s" % (self.sock, self.pki.client)
        _, out, _ = bh.run_tool(["nbdinfo", "--json", uri])
        self.assertIn('"export-size": %d' % DISK_SIZE, out)


class X509NoVerify(TlsBase):
    """verify-peer=off: clients need no certificate of their own."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sock = cls.serve("noverify", [bh.x509_object("tls0", cls.pki.server,
                                                         verify_peer=False)])

    def test_without_client_cert(self):
        h = self.handle(self.sock, certs=self.pki.nocert)
        self.move_data(h, 3 * MiB, 3)
        h.shutdown()

    def test_with_client_cert(self):
        h = self.handle(self.sock, certs=self.pki.client)
        self.move_data(h, 4 * MiB, 4)
        h.shutdown()


class Psk(TlsBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        obj = "tls-creds-psk,id=tls0,dir=%s,endpoint=server" % bh.opt_escape(cls.pki.psk_server)
        cls.sock = cls.serve("psk", [obj])

    def test_known_user(self):
        h = self.handle(self.sock, psk=self.pki.psk_alice, user="alice")
        self.assertTrue(h.get_tls_negotiated())
        self.move_data(h, 5 * MiB, 5)
        h.shutdown()

    def test_unknown_user_refused(self):
        self.assert_refused(self.sock, psk=self.pki.psk_mallory, user="mallory")
        self.handle(self.sock, psk=self.pki.psk_alice, user="alice").shutdown()

    @bh.needs_tools("qemu-img")
    def test_qemu_img_psk(self):
        obj = ("tls-creds-psk,id=t,dir=%s,endpoint=client,username=alice"
               % bh.opt_escape(self.pki.psk_alice))
        opts = ("driver=nbd,server.type=unix,server.path=%s,export=disk0,tls-creds=t,"
                "tls-hostname=localhost"
                % bh.opt_escape(self.sock))
        _, out, _ = bh.run_tool(["qemu-img", "info", "--object", obj, "--image-opts", opts])
        self.assertIn("16 MiB", out)


class Authz(TlsBase):
    """tls-authz lets exactly the client certificate's DN (or PSK user) in."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sock = cls.serve("authz", [
            bh.x509_object("tls0", cls.pki.server),
            "authz-simple,id=auth0,identity=%s" % bh.opt_escape(cls.pki.client_dn),
        ], authz="auth0")
        psk = "tls-creds-psk,id=tls1,dir=%s,endpoint=server" % bh.opt_escape(cls.pki.psk_server)
        cls.psk_sock = cls.serve("authz-psk", [psk, "authz-simple,id=auth1,identity=bob"],
                                 creds="tls1", authz="auth1")

    def test_allowed_identity(self):
        for field in CLIENT_DN_FIELDS:
            self.assertIn(field, self.pki.client_dn)
        h = self.handle(self.sock, certs=self.pki.client)
        self.move_data(h, 6 * MiB, 6)
        h.shutdown()

    def test_other_identity_refused(self):
        self.assert_refused(self.sock, certs=self.pki.other)
        self.assert_logged(self.sock, "O=Berth Test,CN=other.example.com",
                           "denied by authorization 'auth0'")
        self.handle(self.sock, certs=self.pki.client).shutdown()

    @bh.qsd_deviates("qemu-storage-daemon 7.2 does not apply tls-authz to PSK users")
    def test_psk_user_not_in_authz_refused(self):
        self.assert_refused(self.psk_sock, psk=self.pki.psk_alice, user="alice")
        self.assert_logged(self.psk_sock, "TLS identity 'alice' denied")


@bh.berth_only
class Objects(TlsBase):
    """Credential objects over QMP: file errors, endpoints, and pins."""

    def qmp_daemon(self, extra=()):
        qmp = self.path("qmp.sock")
        self.start_daemon(list(extra) + bh.qmp_monitor(qmp), wait_for=qmp)
        return self.connect_qmp(qmp)

    def test_missing_files(self):
        empty = self.path("empty")
        os.makedirs(empty)
        rc, _, err = bh.run_daemon_once(["--object", bh.x509_object("t", empty)], self.tmpdir)
        self.assertNotEqual(rc, 0)
        self.assertIn("Unable to access credentials %s/ca-cert.pem: No such file or directory"
                      % empty, err)
        rc, _, err = bh.run_daemon_once(
            ["--object", "tls-creds-psk,id=t,dir=%s,endpoint=server" % empty], self.tmpdir)
        self.assertIn("Unable to access credentials %s/keys.psk" % empty, err)
        rc, _, err = bh.run_daemon_once(
            ["--object", "tls-creds-psk,id=t,dir=%s,endpoint=client,username=zed"
             % self.pki.psk_alice], self.tmpdir)
        self.assertIn("Username zed not found in PSK file", err)

    def test_client_endpoint_refused_by_server(self):
        q = self.qmp_daemon(["--object", bh.x509_object("c", self.pki.client, endpoint="client")])
        r = q.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
            "path": self.path("n.sock")}}, "tls-creds": "c"})
        self.assertIn("server endpoint", r["error"]["desc"])
        r = q.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
            "path": self.path("n.sock")}}, "tls-creds": "nope"})
        self.assertEqual(r["error"]["desc"], "No TLS credentials with id 'nope'")

    def test_in_use_cannot_be_deleted(self):
        q = self.qmp_daemon()
        r = q.cmd("object-add", {"qom-type": "tls-creds-x509", "id": "tls0",
                                 "dir": self.pki.server, "endpoint": "server"})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
            "path": self.path("n.sock")}}, "tls-creds": "tls0"})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("object-del", {"id": "tls0"})
        self.assertIn("in use", r["error"]["desc"])
        self.assertEqual(q.cmd("nbd-server-stop"), {"return": {}})
        self.assertEqual(q.cmd("object-del", {"id": "tls0"}), {"return": {}})


if __name__ == "__main__":
    bh.require_tools("certtool", "psktool")
    bh.main()
