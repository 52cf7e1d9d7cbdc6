#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A deliberately small NBD client on plain sockets, for tests that must put
exact (and wrong) bytes on the wire.  Numbers follow the NBD specification
(doc/proto.md in NetworkBlockDevice/nbd); all integers are big-endian.  Every
socket operation has a timeout; nothing here retries or waits unbounded."""

import select
import socket
import struct
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# handshake / client flags
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

# options
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

# option replies
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR | 1
REP_ERR_POLICY = REP_ERR | 2
REP_ERR_INVALID = REP_ERR | 3
REP_ERR_PLATFORM = REP_ERR | 4
REP_ERR_TLS_REQD = REP_ERR | 5
REP_ERR_UNKNOWN = REP_ERR | 6
REP_ERR_SHUTDOWN = REP_ERR | 7
REP_ERR_BLOCK_SIZE_REQD = REP_ERR | 8
REP_ERR_TOO_BIG = REP_ERR | 9

# info types
INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# transmission flags
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_ROTATIONAL = 1 << 4
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7
TF_CAN_MULTI_CONN = 1 << 8
TF_SEND_RESIZE = 1 << 9
TF_SEND_CACHE = 1 << 10
TF_SEND_FAST_ZERO = 1 << 11

# commands
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

# command flags
CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

# structured reply
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

# errors
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

REP_NAMES = {
    REP_ACK: "ACK", REP_SERVER: "SERVER", REP_INFO: "INFO",
    REP_META_CONTEXT: "META_CONTEXT", REP_ERR_UNSUP: "ERR_UNSUP",
    REP_ERR_POLICY: "ERR_POLICY", REP_ERR_INVALID: "ERR_INVALID",
    REP_ERR_PLATFORM: "ERR_PLATFORM", REP_ERR_TLS_REQD: "ERR_TLS_REQD",
    REP_ERR_UNKNOWN: "ERR_UNKNOWN", REP_ERR_SHUTDOWN: "ERR_SHUTDOWN",
    REP_ERR_BLOCK_SIZE_REQD: "ERR_BLOCK_SIZE_REQD", REP_ERR_TOO_BIG: "ERR_TOO_BIG",
}


def rep_name(t):
    return REP_NAMES.get(t, "0x%08x" % t)


class Closed(Exception):
    """The server closed (or reset) the connection."""


class Timeout(Exception):
    """The server neither answered nor closed in time."""


class OptReply:
    def __init__(self, option, rtype, data):
        self.option = option
        self.type = rtype
        self.data = data

    @property
    def is_error(self):
        return bool(self.type & REP_ERR)

    def __repr__(self):
        return "OptReply(opt=%d, %s, %r)" % (self.option, rep_name(self.type),
                                              self.data[:64])


class Chunk:
    """A simple reply (type None) or one structured reply chunk."""

    def __init__(self, magic, flags, ctype, handle, error=0, payload=b""):
        self.magic = magic
        self.flags = flags
        self.type = ctype
        self.handle = handle
        self.error = error
        self.payload = payload

    @property
    def done(self):
        return self.magic == SIMPLE_REPLY_MAGIC or bool(self.flags & REPLY_FLAG_DONE)

    def error_code(self):
        """NBD error of an error chunk or a simple reply."""
        if self.magic == SIMPLE_REPLY_MAGIC:
            return self.error
        if self.type & (1 << 15):
            return struct.unpack(">I", self.payload[:4])[0]
        return 0

    def __repr__(self):
        if self.magic == SIMPLE_REPLY_MAGIC:
            return "Simple(handle=%#x, error=%d, %d bytes)" % (
                self.handle, self.error, len(self.payload))
        return "Chunk(handle=%#x, type=%d, flags=%d, %d bytes)" % (
            self.handle, self.type, self.flags, len(self.payload))


def pack_request(cmd, handle, offset, length, flags=0, magic=REQUEST_MAGIC):
    return struct.pack(">IHHQQI", magic, flags, cmd, handle, offset, length)


def pack_option(opt, data=b"", magic=IHAVEOPT, length=None):
    if length is None:
        length = len(data)
    return struct.pack(">QII", magic, opt, length) + data


def info_payload(name, infos=(), name_len=None, n_infos=None):
    """Data of NBD_OPT_INFO / NBD_OPT_GO; the counts may be forged."""
    if isinstance(name, str):
        name = name.encode()
    data = struct.pack(">I", len(name) if name_len is None else name_len) + name
    data += struct.pack(">H", len(infos) if n_infos is None else n_infos)
    data += b"".join(struct.pack(">H", i) for i in infos)
    return data


def meta_payload(name, queries):
    if isinstance(name, str):
        name = name.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        if isinstance(q, str):
            q = q.encode()
        data += struct.pack(">I", len(q)) + q
    return data


class RawClient:
    """One connection.  Methods raise Closed on EOF/reset, Timeout when the
    server stays silent past the socket timeout."""

    def __init__(self, path=None, timeout=5.0, addr=None):
        if addr is not None:
            self.sock = socket.create_connection(addr, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        self.timeout = timeout
        self.structured = False
        self.handshake_flags = None
        self.export_size = None
        self.transmission_flags = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bytes ----------------------------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed("send: %s" % e)
        except socket.timeout:
            raise Timeout("send blocked for %.1f s" % self.timeout)

    def try_send(self, data):
        """send() for when the server may legitimately close first: returns
        False instead of raising Closed."""
        try:
            self.send(data)
            return True
        except Closed:
            return False

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError as e:
                raise Closed("recv: %s after %d of %d bytes" % (e, len(buf), n))
            except socket.timeout:
                raise Timeout("no data for %.1f s (%d of %d bytes)"
                              % (self.timeout, len(buf), n))
            if not chunk:
                raise Closed("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def wait_closed(self, timeout=5.0):
        """Drain whatever the server sends until it closes.  Returns the bytes
        read; raises Timeout if the connection is still open after timeout."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("connection still open after %.1f s (%d bytes read)"
                              % (timeout, len(got)))
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(got)
            except socket.timeout:
                continue
            if not chunk:
                return bytes(got)
            got += chunk

    def is_silent(self, wait=0.3):
        """True when nothing arrives (and no EOF) within wait seconds."""
        r, _, _ = select.select([self.sock], [], [], wait)
        return not r

    # -- handshake --------------------------------------------------------------

    def read_greeting(self):
        magic, ihaveopt, flags = struct.unpack(">QQH", self.recv_exact(18))
        if magic != NBDMAGIC or ihaveopt != IHAVEOPT:
            raise AssertionError("bad greeting %#x %#x" % (magic, ihaveopt))
        self.handshake_flags = flags
        return flags

    def start(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        """Greeting plus client flags: option haggling may begin."""
        self.read_greeting()
        self.send(struct.pack(">I", client_flags))
        self.client_flags = client_flags
        return self

    def send_option(self, opt, data=b"", magic=IHAVEOPT, length=None):
        self.send(pack_option(opt, data, magic, length))

    def read_option_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        if magic != OPT_REPLY_MAGIC:
            raise AssertionError("bad option reply magic %#x" % magic)
        if length > 64 * 1024 * 1024:
            raise AssertionError("absurd option reply length %d" % length)
        return OptReply(opt, rtype, self.recv_exact(length) if length else b"")

    def option_replies(self, opt, limit=10000):
        """All replies to one option, up to and including the final one."""
        replies = []
        for _ in range(limit):
            r = self.read_option_reply()
            if r.option != opt:
                raise AssertionError("reply for option %d while %d pending"
                                     % (r.option, opt))
            replies.append(r)
            if r.type == REP_ACK or r.is_error:
                return replies
        raise AssertionError("more than %d replies to option %d" % (limit, opt))

    def option(self, opt, data=b"", **kw):
        self.send_option(opt, data, **kw)
        return self.option_replies(opt)

    def final(self, opt, data=b"", **kw):
        """Send an option, return the final reply type."""
        return self.option(opt, data, **kw)[-1].type

    def list_exports(self):
        out = {}
        replies = self.option(OPT_LIST)
        if replies[-1].type != REP_ACK:
            raise AssertionError("LIST failed: %r" % replies[-1])
        for r in replies[:-1]:
            if r.type != REP_SERVER:
                raise AssertionError("unexpected LIST reply %r" % r)
            (n,) = struct.unpack(">I", r.data[:4])
            if n > len(r.data) - 4:
                raise AssertionError("SERVER reply name length %d overruns %d"
                                     % (n, len(r.data)))
            out[r.data[4:4 + n].decode()] = r.data[4 + n:].decode()
        return out

    def negotiate_structured(self):
        t = self.final(OPT_STRUCTURED_REPLY)
        if t != REP_ACK:
            raise AssertionError("STRUCTURED_REPLY refused: %s" % rep_name(t))
        self.structured = True

    def set_meta(self, name, queries):
        """SET_META_CONTEXT; returns {context name: id} and the final type."""
        replies = self.option(OPT_SET_META_CONTEXT, meta_payload(name, queries))
        ctx = {}
        for r in replies[:-1]:
            if r.type == REP_META_CONTEXT:
                (cid,) = struct.unpack(">I", r.data[:4])
                ctx[r.data[4:].decode()] = cid
        return ctx, replies[-1].type

    @staticmethod
    def parse_infos(replies):
        infos = {}
        for r in replies:
            if r.type != REP_INFO:
                continue
            (itype,) = struct.unpack(">H", r.data[:2])
            infos[itype] = r.data
        return infos

    def go(self, name, infos=(), opt=OPT_GO):
        """INFO or GO; returns (final reply type, {info type: raw data})."""
        replies = self.option(opt, info_payload(name, infos))
        parsed = self.parse_infos(replies)
        if opt == OPT_GO and replies[-1].type == REP_ACK:
            exp = parsed.get(INFO_EXPORT)
            if exp is None or len(exp) != 12:
                raise AssertionError("GO acked without a 12-byte INFO_EXPORT")
            _, self.export_size, self.transmission_flags = struct.unpack(">HQH", exp)
        return replies[-1].type, parsed

    def connect_export(self, name, structured=True, meta=()):
        """Handshake all the way into transmission with GO."""
        self.start()
        if structured:
            self.negotiate_structured()
        if meta:
            ctx, t = self.set_meta(name, meta)
            if t != REP_ACK:
                raise AssertionError("SET_META_CONTEXT failed: %s" % rep_name(t))
            self.contexts = ctx
        t, _ = self.go(name)
        if t != REP_ACK:
            raise AssertionError("GO %r failed: %s" % (name, rep_name(t)))
        return self

    # -- transmission -------------------------------------------------------------

    def request(self, cmd, handle, offset=0, length=0, flags=0, payload=b"",
                magic=REQUEST_MAGIC):
        self.send(pack_request(cmd, handle, offset, length, flags, magic) + payload)

    def read_reply_chunk(self, read_lengths=None):
        """One simple reply or structured chunk.  A simple reply to a READ
        carries data only when its error is 0; read_lengths maps a READ's
        handle to its length so the payload can be consumed."""
        (magic,) = struct.unpack(">I", self.recv_exact(4))
        if magic == SIMPLE_REPLY_MAGIC:
            error, handle = struct.unpack(">IQ", self.recv_exact(12))
            payload = b""
            if error == 0 and read_lengths and handle in read_lengths:
                payload = self.recv_exact(read_lengths[handle])
            return Chunk(magic, 0, None, handle, error, payload)
        if magic == STRUCTURED_REPLY_MAGIC:
            flags, ctype, handle, length = struct.unpack(">HHQI", self.recv_exact(16))
            if length > 64 * 1024 * 1024 + 64:
                raise AssertionError("absurd chunk length %d" % length)
            return Chunk(magic, flags, ctype, handle, 0,
                         self.recv_exact(length) if length else b"")
        raise AssertionError("bad reply magic %#x" % magic)

    def read_reply(self, handle, read_length=None):
        """All chunks of the reply to one request (no others in flight)."""
        chunks = []
        lengths = {handle: read_length} if read_length is not None else None
        for _ in range(100000):
            c = self.read_reply_chunk(lengths)
            if c.handle != handle:
                raise AssertionError("reply for handle %#x, expected %#x"
                                     % (c.handle, handle))
            chunks.append(c)
            if c.done:
                return chunks
        raise AssertionError("reply without DONE")

    def command(self, cmd, handle, offset=0, length=0, flags=0, payload=b""):
        """Send one request and return (error, data, chunks)."""
        self.request(cmd, handle, offset, length, flags, payload)
        chunks = self.read_reply(handle, length if cmd == CMD_READ else None)
        return reply_error(chunks), reply_data(chunks, offset, length), chunks

    def disconnect(self):
        try:
            self.request(CMD_DISC, 0xD15C)
        except (Closed, Timeout):
            pass
        self.close()


def connect_when_served(path, name="", timeout=5.0):
    """A RawClient in transmission on export name, retried for a while: a
    server with a connection limit may still count a connection that just
    closed (a readiness probe's, say)."""
    deadline = time.monotonic() + timeout
    while True:
        c = RawClient(path, timeout=1)
        try:
            return c.connect_export(name)
        except (Timeout, Closed, OSError):
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def reply_error(chunks):
    for c in chunks:
        e = c.error_code()
        if e:
            return e
    return 0


def reply_data(chunks, offset, length):
    """Reassemble the data of a READ reply (None for non-READ replies)."""
    if len(chunks) == 1 and chunks[0].magic == SIMPLE_REPLY_MAGIC:
        return chunks[0].payload if chunks[0].payload else None
    buf = None
    for c in chunks:
        if c.type == REPLY_TYPE_OFFSET_DATA:
            buf = buf if buf is not None else bytearray(length)
            (off,) = struct.unpack(">Q", c.payload[:8])
            data = c.payload[8:]
            buf[off - offset:off - offset + len(data)] = data
        elif c.type == REPLY_TYPE_OFFSET_HOLE:
            buf = buf if buf is not None else bytearray(length)
    return bytes(buf) if buf is not None else None


def content_ranges(chunks):
    """[(type, offset, length)] of the content chunks of a structured READ."""
    out = []
    for c in chunks:
        if c.magic != STRUCTURED_REPLY_MAGIC:
            continue
        if c.type == REPLY_TYPE_OFFSET_DATA:
            (off,) = struct.unpack(">Q", c.payload[:8])
            out.append((c.type, off, len(c.payload) - 8))
        elif c.type == REPLY_TYPE_OFFSET_HOLE:
            off, n = struct.unpack(">QI", c.payload)
            out.append((c.type, off, n))
    return out
