#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Fake NBD servers that misbehave on purpose, for testing NBD *clients*.

A FakeServer listens on a unix socket in a thread of the test process.  Each
connection gets a correct fixed-newstyle handshake: NBD_OPT_GO and
NBD_OPT_EXPORT_NAME are answered properly, NBD_OPT_STRUCTURED_REPLY is
acknowledged only when the misbehaviour needs structured replies, and every
other option gets NBD_REP_ERR_UNSUP (which a client must tolerate).  In
transmission the server is an ordinary zero-filled disk (writes are accepted
and dropped, flush succeeds) until a READ touches the poisoned region
[POISON_OFFSET, POISON_OFFSET + POISON_LENGTH): the first such READ of each
connection gets the broken reply of the server's mode.  Reads elsewhere stay
correct, so a client that reads block 0 while opening the device is not
tripped before the test asks.

Modes:
  bad-magic        a reply header whose magic is neither simple nor structured
  unknown-cookie   a simple reply for a cookie the client never sent
  oversized-chunk  (structured replies) an OFFSET_DATA chunk whose data runs
                   past the end of the requested range
  close-mid-reply  a simple reply header and half the data, then the socket
                   is closed

Everything is bounded: sockets carry timeouts, the accept loop polls a stop
flag, and stop() joins the threads with a timeout."""

import os
import socket
import struct
import threading

import nbd_wire as w

MODES = ("bad-magic", "unknown-cookie", "oversized-chunk", "close-mid-reply")

EXPORT_SIZE = 4 * 1024 * 1024
POISON_OFFSET = 1024 * 1024
POISON_LENGTH = 1024 * 1024
SOCKET_TIMEOUT = 30.0
BAD_MAGIC = 0x0BADBEEF


class _Closed(Exception):
    pass


class FakeServer:
    """One misbehaving server on a unix socket; use as a context manager or
    call start()/stop()."""

    def __init__(self, path, mode, export_name="fake", size=EXPORT_SIZE):
        if mode not in MODES:
            raise ValueError("unknown mode %r" % mode)
        self.path = path
        self.mode = mode
        self.export_name = export_name
        self.size = size
        self.connections = 0            # accepted so far
        self.misbehaved = 0             # broken replies sent so far
        self.errors = []                # unexpected exceptions in threads
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []
        self._conns = []
        self._listener = None

    # -- life cycle ---------------------------------------------------------

    def start(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.path):
            os.unlink(self.path)
        s.bind(self.path)
        s.listen(8)
        s.settimeout(0.1)
        self._listener = s
        t = threading.Thread(target=self._accept_loop, daemon=True,
                             name="fake-nbd-accept")
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- threads ------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(SOCKET_TIMEOUT)
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="fake-nbd-conn")
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        try:
            structured = self._handshake(conn)
            if structured is not None:
                self._transmission(conn, structured)
        except (_Closed, OSError, socket.timeout):
            pass
        except Exception as e:      # a bug in the fake server: report it
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    # -- wire helpers -------------------------------------------------------

    @staticmethod
    def _recv(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise _Closed()
            buf += chunk
        return buf

    @staticmethod
    def _opt_reply(conn, opt, rtype, data=b""):
        conn.sendall(struct.pack(">QIII", w.OPT_REPLY_MAGIC, opt, rtype, len(data))
                     + data)

    def _tflags(self):
        return (w.TF_HAS_FLAGS | w.TF_SEND_FLUSH | w.TF_SEND_FUA
                | w.TF_SEND_TRIM | w.TF_SEND_WRITE_ZEROES)

    # -- handshake ----------------------------------------------------------

    def _handshake(self, conn):
        """Returns whether structured replies were negotiated, or None when
        the client left during the handshake."""
        conn.sendall(struct.pack(">QQH", w.NBDMAGIC, w.IHAVEOPT,
                                 w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES))
        (cflags,) = struct.unpack(">I", self._recv(conn, 4))
        no_zeroes = bool(cflags & w.FLAG_NO_ZEROES)
        structured = False
        want_sr = self.mode == "oversized-chunk"
        while True:
            magic, opt, length = struct.unpack(">QII", self._recv(conn, 16))
            if magic != w.IHAVEOPT or length > 65536:
                return None
            self._recv(conn, length)        # names and queries: any will do
            if opt == w.OPT_EXPORT_NAME:
                reply = struct.pack(">QH", self.size, self._tflags())
                if not no_zeroes:
                    reply += b"\0" * 124
                conn.sendall(reply)
                return structured
            if opt == w.OPT_GO:
                info = struct.pack(">HQH", w.INFO_EXPORT, self.size, self._tflags())
                self._opt_reply(conn, opt, w.REP_INFO, info)
                self._opt_reply(conn, opt, w.REP_ACK)
                return structured
            if opt == w.OPT_ABORT:
                self._opt_reply(conn, opt, w.REP_ACK)
                return None
            if opt == w.OPT_STRUCTURED_REPLY and want_sr and not structured \
                    and length == 0:
                structured = True
                self._opt_reply(conn, opt, w.REP_ACK)
                continue
            self._opt_reply(conn, opt, w.REP_ERR_UNSUP)

    # -- transmission -------------------------------------------------------

    def _transmission(self, conn, structured):
        poisoned_once = False
        while not self._stop.is_set():
            magic, flags, cmd, cookie, offset, length = struct.unpack(
                ">IHHQQI", self._recv(conn, 28))
            if magic != w.REQUEST_MAGIC:
                return
            if cmd == w.CMD_WRITE:
                self._recv(conn, length)
            if cmd == w.CMD_DISC:
                return
            if cmd == w.CMD_READ:
                hit = (offset < POISON_OFFSET + POISON_LENGTH
                       and offset + length > POISON_OFFSET)
                if hit and not poisoned_once:
                    poisoned_once = True
                    with self._lock:
                        self.misbehaved += 1
                    self._misbehave(conn, structured, cookie, offset, length)
                    continue
                self._reply_data(conn, structured, cookie, offset, length)
                continue
            if cmd in (w.CMD_WRITE, w.CMD_FLUSH, w.CMD_TRIM, w.CMD_WRITE_ZEROES):
                self._reply_status(conn, structured, cookie, 0)
            else:
                self._reply_status(conn, structured, cookie, w.EINVAL)

    def _reply_status(self, conn, structured, cookie, error):
        if not structured or error == 0:
            if structured:
                conn.sendall(struct.pack(">IHHQI", w.STRUCTURED_REPLY_MAGIC,
                                         w.REPLY_FLAG_DONE, w.REPLY_TYPE_NONE,
                                         cookie, 0))
            else:
                conn.sendall(struct.pack(">IIQ", w.SIMPLE_REPLY_MAGIC, error, cookie))
            return
        conn.sendall(struct.pack(">IHHQIIH", w.STRUCTURED_REPLY_MAGIC,
                                 w.REPLY_FLAG_DONE, w.REPLY_TYPE_ERROR,
                                 cookie, 6, error, 0))

    def _reply_data(self, conn, structured, cookie, offset, length):
        if structured:
            conn.sendall(struct.pack(">IHHQIQ", w.STRUCTURED_REPLY_MAGIC,
                                     w.REPLY_FLAG_DONE, w.REPLY_TYPE_OFFSET_DATA,
                                     cookie, 8 + length, offset) + b"\0" * length)
        else:
            conn.sendall(struct.pack(">IIQ", w.SIMPLE_REPLY_MAGIC, 0, cookie)
                         + b"\0" * length)

    def _misbehave(self, conn, structured, cookie, offset, length):
        junk = b"\xa5" * length
        if self.mode == "bad-magic":
            conn.sendall(struct.pack(">IIQ", BAD_MAGIC, 0, cookie) + junk)
        elif self.mode == "unknown-cookie":
            conn.sendall(struct.pack(">IIQ", w.SIMPLE_REPLY_MAGIC, 0,
                                     cookie ^ 0x5A5A5A5A00000001) + junk)
        elif self.mode == "oversized-chunk":
            extra = 4096
            conn.sendall(struct.pack(">IHHQIQ", w.STRUCTURED_REPLY_MAGIC,
                                     w.REPLY_FLAG_DONE, w.REPLY_TYPE_OFFSET_DATA,
                                     cookie, 8 + length + extra, offset)
                         + junk + b"\xa5" * extra)
        elif self.mode == "close-mid-reply":
            conn.sendall(struct.pack(">IIQ", w.SIMPLE_REPLY_MAGIC, 0, cookie)
                         + junk[:length // 2])
            conn.shutdown(socket.SHUT_RDWR)
            raise _Closed()
        # After a broken reply the client should hang up; keep reading so
        # that it sees our reply rather than a reset.
