#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""secret, tls-creds-x509 passwordid=, authz-list and authz-listfile, end to
end: real certificates from certtool (test_tls.py's PKI), real TLS clients
(libnbd), and the daemon's command line and QMP.

Secrets are encrypted here as QEMU documents it, with
`openssl enc -aes-256-cbc -K <hex key> -iv <hex iv>`, and serve as the
password of a private key that `certtool --to-p8` encrypted, so a server
that starts and serves TLS proves that the secret decrypted to the right
bytes.  Run against qemu-storage-daemon 7.2 the same tests check that berth
and QEMU agree (QEMU 7.2's tools have no authz-listfile: those tests are
berth-only).  berth-nbd's --tls-authz is checked with every authz type, and
with authz-list beside qemu-nbd."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True     # keep the source tree clean
import berth_harness as bh
import test_tls

nbd = bh.import_nbd()

PASSWORD = "letmein"
# The vector of tests/unit/test-io-secret.c: PASSWORD encrypted with the
# 32 ASCII bytes KEY_DATA and the IV bytes 0..15.
KEY_DATA = "0123456789abcdef0123456789abcdef"
IV_B64 = "AAECAwQFBgcICQoLDA0ODw=="
CT_PASSWORD = "A9cv54/AQAFOV2ReiUc4Yw=="

BERTH_NBD = (os.environ.get("BERTH_NBD")
             or os.path.join(bh.SOURCE_ROOT, "build", "tools", "berth-nbd"))
QEMU_NBD = shutil.which("qemu-nbd")

RELOAD_TIMEOUT = 15


def openssl_encrypt(plain, key, iv):
    """base64 of AES-256-CBC(plain) with PKCS#7 padding, made by openssl."""
    _, out, _ = bh.run_tool(["openssl", "enc", "-aes-256-cbc", "-a", "-A",
                             "-K", key.hex(), "-iv", iv.hex()], input=plain)
    return out.strip()


def b64(data):
    import base64
    return base64.b64encode(data).decode()


class ObjectsBase(test_tls.TlsBase):
    """test_tls's PKI, plus the server's key encrypted with PASSWORD."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.enc_server = os.path.join(cls.class_dir, "server-enc")
        os.makedirs(cls.enc_server)
        for name in ("ca-cert.pem", "server-cert.pem"):
            os.symlink(os.path.realpath(os.path.join(cls.pki.server, name)),
                       os.path.join(cls.enc_server, name))
        bh.run_tool(["certtool", "--load-privkey",
                     os.path.join(cls.pki.server, "server-key.pem"), "--to-p8",
                     "--password=" + PASSWORD,
                     "--outfile", os.path.join(cls.enc_server, "server-key.pem")])

    def enc_x509(self, passwordid=None, oid="tls0"):
        obj = bh.x509_object(oid, self.enc_server)
        return obj + (",passwordid=" + passwordid if passwordid else "")

    def serve_once(self, name, objects, authz=None):
        """A daemon for this test only, serving the class's disk over TLS."""
        sock = self.path(name + ".sock")
        server = "addr.type=unix,addr.path=%s,tls-creds=tls0" % bh.opt_escape(sock)
        if authz:
            server += ",tls-authz=" + authz
        args = []
        for o in objects:
            args += ["--object", o]
        args += (bh.blockdev_file("disk0", self.disk) + ["--nbd-server", server]
                 + bh.nbd_export("exp0", "disk0", "disk0", writable=True))
        d = self.start_daemon(args, wait_for=sock, name=name)
        self.daemons[sock] = d
        return sock

    def assert_serves(self, sock, certs=None):
        h = self.handle(sock, certs=certs or self.pki.client)
        self.assertTrue(h.get_tls_negotiated())
        self.move_data(h, 0, 9)
        h.shutdown()

    def assert_start_fails(self, objects, *texts):
        args = []
        for o in objects:
            args += ["--object", o]
        rc, _, err = bh.run_daemon_once(args, self.tmpdir)
        self.assertNotEqual(rc, 0, err)
        for t in texts:
            self.assertIn(t, err)


class EncryptedKey(ObjectsBase):
    """passwordid= names the secret that opens the server's private key."""

    def test_plain_secret(self):
        sock = self.serve_once("plain", ["secret,id=pw,data=" + PASSWORD,
                                         self.enc_x509("pw")])
        self.assert_serves(sock)

    def test_secret_from_file(self):
        pwfile = self.path("pw.txt")
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        sock = self.serve_once("file", ["secret,id=pw,file=" + bh.opt_escape(pwfile),
                                        self.enc_x509("pw")])
        self.assert_serves(sock)

    def test_base64_secret(self):
        sock = self.serve_once("b64", ["secret,id=pw,format=base64,data="
                                       + b64(PASSWORD.encode()), self.enc_x509("pw")])
        self.assert_serves(sock)

    @bh.needs_tools("openssl")
    def test_secret_encrypted_by_openssl(self):
        """QEMU's recipe: a random 32-byte key in a file, a random IV, the
        password encrypted by openssl; both daemons must recover it."""
        key, iv = os.urandom(32), os.urandom(16)
        keyfile = self.path("master.key")
        with open(keyfile, "wb") as f:
            f.write(key)
        ct = openssl_encrypt(PASSWORD.encode(), key, iv)
        sock = self.serve_once("openssl", [
            "secret,id=master,file=" + bh.opt_escape(keyfile),
            "secret,id=pw,keyid=master,format=base64,iv=%s,data=%s" % (b64(iv), ct),
            self.enc_x509("pw")])
        self.assert_serves(sock)

    @bh.needs_tools("openssl")
    def test_fixed_vector(self):
        """The unit test's vector, checked here against a real peer (run
        with qemu-storage-daemon to see QEMU agree)."""
        self.assertEqual(openssl_encrypt(PASSWORD.encode(), KEY_DATA.encode(),
                                         bytes(range(16))), CT_PASSWORD)
        sock = self.serve_once("vector", [
            "secret,id=master,format=base64,data=" + b64(KEY_DATA.encode()),
            "secret,id=pw,keyid=master,format=base64,iv=%s,data=%s" % (IV_B64, CT_PASSWORD),
            self.enc_x509("pw")])
        self.assert_serves(sock)

    def test_wrong_or_missing_password(self):
        cert = os.path.join(self.enc_server, "server-cert.pem")
        key = os.path.join(self.enc_server, "server-key.pem")
        text = ("Cannot load certificate '%s' & key '%s': Decryption has failed."
                % (cert, key))
        self.assert_start_fails(["secret,id=pw,data=wrong", self.enc_x509("pw")], text)
        self.assert_start_fails([self.enc_x509()], text)

    def test_bad_secrets(self):
        self.assert_start_fails([self.enc_x509("nope")], "No secret with id 'nope'")
        self.assert_start_fails(["secret,id=bin,data=/w==,format=base64",
                                 self.enc_x509("bin")],
                                "Data from secret bin is not valid UTF-8")
        self.assert_start_fails(["secret,id=pw,data=x,file=/nonexistent"],
                                "'file' and 'data' are mutually exclusive")
        self.assert_start_fails(["secret,id=pw,keyid=pw,data=x"],
                                "Secret with id 'pw' has no data")
        self.assert_start_fails(["secret,id=pw,data=x,loaded=on"],
                                "Property 'secret.loaded' is not writable")


class AuthzList(ObjectsBase):
    """tls-authz naming an authz-list: rules in order, exact and glob."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        other_dn = cls.pki.client_dn.replace("client.example.com", "other.example.com")
        cls.other_dn = other_dn
        # Deny 'other' by name, then let the whole organization in.
        rules = ("authz-list,id=auth0,policy=deny,"
                 "rules.0.match=%s,rules.0.policy=deny,"
                 "rules.1.match=%s,rules.1.policy=allow,rules.1.format=glob"
                 % (bh.opt_escape(other_dn), bh.opt_escape("O=Berth Test,CN=*")))
        cls.sock = cls.serve("list", [bh.x509_object("tls0", cls.pki.server), rules],
                             authz="auth0")

    def test_glob_allows(self):
        self.assert_serves(self.sock)

    def test_exact_rule_denies_first(self):
        self.assert_refused(self.sock, certs=self.pki.other)
        self.assert_logged(self.sock, self.other_dn, "denied by authorization 'auth0'")
        self.assert_serves(self.sock)

    def test_default_policy(self):
        # Nobody matches a rule: the default decides.
        for policy, allowed in (("deny", False), ("allow", True)):
            with self.subTest(policy=policy):
                sock = self.serve_once("default-" + policy, [
                    bh.x509_object("tls0", self.pki.server),
                    "authz-list,id=a,policy=%s,rules.0.match=CN=nobody,rules.0.policy=allow"
                    % policy], authz="a")
                if allowed:
                    self.assert_serves(sock)
                else:
                    self.assert_refused(sock, certs=self.pki.client)

    def test_over_qmp(self):
        """object-add with JSON rules, then nbd-server-start naming it."""
        qmp = self.path("qmp.sock")
        self.start_daemon(bh.qmp_monitor(qmp) + bh.blockdev_file("disk0", self.disk),
                          wait_for=qmp)
        q = self.connect_qmp(qmp)
        self.assertEqual(q.cmd("object-add", {"qom-type": "tls-creds-x509", "id": "tls0",
                                              "dir": self.pki.server, "endpoint": "server"}),
                         {"return": {}})
        r = q.cmd("object-add", {"qom-type": "authz-list", "id": "a0", "rules": [
            {"match": "*other*", "policy": "deny", "format": "glob"},
            {"match": self.pki.client_dn, "policy": "allow"}]})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("object-add", {"qom-type": "authz-list", "id": "bad",
                                 "rules": [{"match": "x"}]})
        self.assertEqual(r["error"]["desc"], "Parameter 'rules[0].policy' is missing")
        sock = self.path("n.sock")
        r = q.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}},
                                       "tls-creds": "tls0", "tls-authz": "a0"})
        self.assertEqual(r, {"return": {}})
        r = q.cmd("block-export-add", {"type": "nbd", "id": "e0", "node-name": "disk0",
                                       "name": "disk0", "writable": True})
        self.assertEqual(r, {"return": {}})
        self.assert_serves(sock)
        self.assert_refused(sock, certs=self.pki.other)
        self.assertEqual(q.cmd("nbd-server-stop"), {"return": {}})


@bh.berth_only  # qemu-storage-daemon 7.2 has no authz-listfile
class AuthzListFile(ObjectsBase):
    """authz-listfile: QEMU's JSON format, and refresh=on."""

    def write_rules(self, path, allow_dns, policy="deny", atomic=True):
        text = json.dumps({"policy": policy, "rules": [
            {"match": dn, "policy": "allow"} for dn in allow_dns]})
        if atomic:
            with open(path + ".new", "w") as f:
                f.write(text)
            os.rename(path + ".new", path)
        else:
            with open(path, "w") as f:
                f.write(text)

    def allowed(self, sock, certs):
        try:
            self.handle(sock, certs=certs).shutdown()
            return True
        except nbd.Error:
            return False

    def wait_until(self, sock, certs, want):
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while self.allowed(sock, certs) != want:
            if time.monotonic() > deadline:
                self.fail("%s still %s" % (certs, "denied" if want else "allowed"))
            time.sleep(0.1)

    def test_refresh(self):
        rules = self.path("rules.json")
        other_dn = self.pki.client_dn.replace("client.example.com", "other.example.com")
        self.write_rules(rules, [self.pki.client_dn])
        sock = self.serve_once("listfile", [
            bh.x509_object("tls0", self.pki.server),
            "authz-listfile,id=auth0,filename=%s,refresh=on" % bh.opt_escape(rules)],
            authz="auth0")
        self.assert_serves(sock)
        self.assert_refused(sock, certs=self.pki.other)

        # Replaced by rename: 'other' in, 'client' out.
        self.write_rules(rules, [other_dn])
        self.wait_until(sock, self.pki.other, True)
        self.assertFalse(self.allowed(sock, self.pki.client))
        self.assert_logged(sock, "authz-listfile 'auth0': reloaded")

        # Broken: nobody gets in until it is fixed, and the log says why.
        with open(rules, "w") as f:
            f.write('{"policy": "allow", "rules": [')
        self.wait_until(sock, self.pki.other, False)
        self.assertFalse(self.allowed(sock, self.pki.client))
        self.assert_logged(sock, "authz-listfile 'auth0': denying everyone until")

        # Rewritten in place.
        self.write_rules(rules, [], policy="allow", atomic=False)
        self.wait_until(sock, self.pki.client, True)
        self.assertTrue(self.allowed(sock, self.pki.other))

    def test_refresh_off(self):
        rules = self.path("rules.json")
        self.write_rules(rules, [self.pki.client_dn])
        sock = self.serve_once("static", [
            bh.x509_object("tls0", self.pki.server),
            "authz-listfile,id=auth0,filename=%s,refresh=off" % bh.opt_escape(rules)],
            authz="auth0")
        self.write_rules(rules, [], policy="allow")
        time.sleep(1.5)
        self.assert_serves(sock)
        self.assert_refused(sock, certs=self.pki.other)

    def test_bad_file_at_start(self):
        rules = self.path("bad.json")
        with open(rules, "w") as f:
            f.write('{"policy": "deny", "rulez": []}')
        self.assert_start_fails(["authz-listfile,id=a,filename=" + bh.opt_escape(rules)],
                                "Property 'authz-list.rulez' not found")
        self.assert_start_fails(["authz-listfile,id=a,filename=" + bh.opt_escape(
            self.path("missing.json"))], "Unable to read '%s'" % self.path("missing.json"))


@bh.needs_tools("qemu-nbd")
class BerthNbdAuthz(ObjectsBase):
    """berth-nbd --tls-authz with authz-list (beside qemu-nbd) and
    authz-listfile, and --object secret for an encrypted key."""

    def serve_tool(self, exe, name, objects, extra=()):
        sock = self.path(name + ".sock")
        args = []
        for o in objects:
            args += ["--object", o]
        args += ["--tls-creds", "tls0"] + list(extra)
        args += ["-f", "raw", "-x", "disk0", "-t", "-k", sock, self.disk]
        d = self.start_daemon(args, wait_for=sock, exe=exe, stop_check=False,
                              name="%s-%s" % (os.path.basename(exe), name))
        self.daemons[sock] = d
        return sock

    def test_authz_list(self):
        rules = ("authz-list,id=a0,rules.0.match=%s,rules.0.policy=allow"
                 % bh.opt_escape(self.pki.client_dn))
        for exe in (QEMU_NBD, BERTH_NBD):
            with self.subTest(tool=os.path.basename(exe)):
                sock = self.serve_tool(exe, "list-" + os.path.basename(exe),
                                       [bh.x509_object("tls0", self.pki.server), rules],
                                       ["--tls-authz", "a0"])
                h = self.handle(sock, certs=self.pki.client)
                h.shutdown()
                self.assert_refused(sock, certs=self.pki.other)

    def test_authz_listfile(self):
        rules = self.path("rules.json")
        with open(rules, "w") as f:
            json.dump({"rules": [{"match": "*client*", "policy": "allow",
                                  "format": "glob"}]}, f)
        sock = self.serve_tool(BERTH_NBD, "listfile", [
            bh.x509_object("tls0", self.pki.server),
            "authz-listfile,id=a0,filename=" + bh.opt_escape(rules)], ["--tls-authz", "a0"])
        self.handle(sock, certs=self.pki.client).shutdown()
        self.assert_refused(sock, certs=self.pki.other)

    def test_encrypted_key(self):
        for exe in (QEMU_NBD, BERTH_NBD):
            with self.subTest(tool=os.path.basename(exe)):
                sock = self.serve_tool(exe, "enc-" + os.path.basename(exe), [
                    "secret,id=pw,data=" + PASSWORD, self.enc_x509("pw")])
                self.handle(sock, certs=self.pki.client).shutdown()


if __name__ == "__main__":
    bh.require_tools("certtool")
    bh.main()
