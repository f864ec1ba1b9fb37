#!/usr/bin/python3
"""WebSockets on the server side: cosockd.http{} pages that turn requests
into sockets with ba.socket.req2sock (tests/lua/ws_server.lua and the pages
in tests/lua/www/ws/), driven by python3-websockets (10.4, its asyncio
client), by a raw-socket client where a library would refuse to send a bad
frame, and by a real browser (headless Chromium).

Covered: seed Example 5 (an LSP page morphing the request into an "s"
cosocket) with Example 15's frame assembly echoing whole messages and the
text/binary flag; frames of 0, 125, 126, 65535 and 65536 bytes (refused
with 1009 by default, accepted once sock:maxframe or ws_max_frame raises
the limit; a larger frame read in fragment form with exact
bytesRead/frameLen); the frame
headers the server writes; a 1 MiB message streamed, then 32 and 64 MiB
ones with the daemon's RSS watched (it must not grow with the message);
fragmented client messages with control frames
between fragments; automatic pong, sock:ping, the close handshake in both
directions; protocol errors (1002, 1007, 1009) seen by both ends; the
three socket modes (blocking on the page's pool thread, "r", "s");
writes from another cosocket and from a timer (queue semantics); the
page's response void after req2sock; raw req2sock with the bytes read
ahead, and sock2req handing the connection back to HTTP; wss:// with a
shark object; Basic and cookie authentication of a protected entry page;
Chromium exchanging 1,000 messages with cosockd.
"""

import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import websockets
import websockets.exceptions
from websockets.frames import Opcode
from websockets.legacy.client import WebSocketClientProtocol

from harness import (LOOPBACK, Suite, TestFailure, _die_with_parent, check, check_eq, connect,
                     deadline_after, fd_count, no_lua_errors, remaining, stop_and_check_exit,
                     wait_until)

suite = Suite("ws", overall_timeout=540)

WWW = os.path.join(suite.lua_dir, "www", "ws")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------------------
# The daemon and its records

def start(*args):
    """cosockd on ws_server.lua with the web root and KEY=VALUE args; returns
    the daemon and the HTTP server's port."""
    d = suite.script("ws_server.lua", f"root={WWW}", *args)
    return d, d.wait_listening()


_FIELD_RE = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def fields(text):
    return dict(_FIELD_RE.findall(text))


def records(d, event, ident):
    """The WS<event> records of connection `ident`, as dicts, in order."""
    out = []
    for m in d.find_log(rf"^WS{event} (id={re.escape(ident)}(?: .*)?)$"):
        out.append(fields(m.group(1)))
    return out


def wait_record(d, event, ident, timeout=10.0, count=1):
    m = d.wait_log(rf"^WS{event} (id={re.escape(ident)}(?: .*)?)$", timeout=timeout, count=count)
    return fields(m.group(1))


def check_end(d, ident, err, code, what, timeout=10.0):
    """The script's read for connection ident returned nil, err, code."""
    r = wait_record(d, "END", ident, timeout)
    check_eq((r.get("err"), r.get("code")), (err, str(code)), f"{what}: read's nil, err, code")
    return r


def msgs(d, ident):
    return records(d, "MSG", ident)


def frags_of(d, ident):
    return [(int(r["len"]), int(r["read"]), int(r["flen"])) for r in records(d, "FRAG", ident)]


def check_frags(frags, total, what, single_frame):
    """bytesRead/frameLen of one message's fragment-form reads: bytesRead is
    the running total; only the last piece has bytesRead == frameLen ==
    total. For a single frame frameLen is its length throughout; for a
    fragmented message it is larger than bytesRead until the end."""
    check(frags, f"{what}: no fragment-form read")
    run = 0
    for i, (n, read, flen) in enumerate(frags):
        run += n
        check_eq(read, run, f"{what}: bytesRead of piece {i} (the running total)")
        last = i == len(frags) - 1
        if single_frame:
            check_eq(flen, total, f"{what}: frameLen of piece {i}")
        if not last:
            check(flen > read, f"{what}: piece {i} of {len(frags)} has frameLen {flen} <= bytesRead {read}")
    check_eq(frags[-1][1:], (total, total), f"{what}: (bytesRead, frameLen) of the last piece")


def split_frags(d, ident):
    """The FRAG records of ident split per message: a message ends with the
    piece whose bytesRead == frameLen."""
    out, cur = [], []
    for f in frags_of(d, ident):
        cur.append(f)
        if f[1] == f[2]:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------------------
# python3-websockets (10.4: the asyncio client)

class Recording(WebSocketClientProtocol):
    """The library's client, also remembering the pings the server sent
    (it answers them itself)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.pings_seen = []

    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        if frame.opcode == Opcode.PING:
            self.pings_seen.append(bytes(frame.data))
        return frame


def ws_open(port, path, scheme="ws", host=LOOPBACK, userinfo="", **kw):
    kw.setdefault("ping_interval", None)
    kw.setdefault("compression", None)
    kw.setdefault("max_size", None)
    kw.setdefault("create_protocol", Recording)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return websockets.connect(f"{scheme}://{userinfo}{host}:{port}{path}", **kw)


async def echo(ws, msg, what, timeout=10.0):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), timeout)
    check_eq(type(got), type(msg), f"{what}: type of the echo (isText round trip)")
    check(got == msg, f"{what}: echo differs ({len(got)} vs {len(msg)} bytes)")


async def expect_closed_by_server(ws, code, what, timeout=10.0):
    """The server closes the connection with `code` (its Close frame)."""
    try:
        got = await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        check(e.rcvd is not None, f"{what}: the connection ended without a Close frame ({e})")
        check_eq(e.rcvd.code, code, f"{what}: the server's close code")
        return e
    raise TestFailure(f"{what}: got a message instead of a close: {str(got)[:80]!r}")


def run(body, timeout=45):
    async def main():
        return await asyncio.wait_for(body(), timeout)
    return asyncio.run(main())


def pattern(n, seed=0):
    block = hashlib.sha256(f"ws{seed}".encode()).digest() * 8  # 256 bytes
    reps = n // len(block) + 1
    return (block * reps)[:n]


# ---------------------------------------------------------------------------
# A raw client: frames exactly as the test writes them

def mask_bytes(data, key):
    if not data:
        return b""
    n = len(data)
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")


class Frame:
    def __init__(self, fin, rsv, opcode, masked, lencode, payload):
        self.fin, self.rsv, self.opcode, self.masked = fin, rsv, opcode, masked
        self.lencode, self.payload = lencode, payload

    def close_code(self):
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else None

    def __repr__(self):
        return (f"Frame(fin={self.fin} rsv={self.rsv} op={self.opcode:#x} masked={self.masked} "
                f"len={len(self.payload)} {bytes(self.payload[:40])!r})")


class Conn:
    """A TCP connection with a receive buffer: HTTP heads and WebSocket
    frames read exactly."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        suite.on_cleanup(sock.close)

    def _more(self, deadline, what):
        self.sock.settimeout(remaining(deadline, what))
        try:
            d = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TestFailure(f"{what}: timed out ({len(self.buf)} bytes buffered: "
                              f"{bytes(self.buf[:80])!r})")
        except ConnectionResetError:
            raise TestFailure(f"{what}: connection reset ({len(self.buf)} bytes buffered)")
        if not d:
            raise TestFailure(f"{what}: EOF ({len(self.buf)} bytes buffered: {bytes(self.buf[:80])!r})")
        self.buf += d

    def take(self, n, deadline, what):
        while len(self.buf) < n:
            self._more(deadline, what)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def until(self, sep, deadline, what):
        while sep not in self.buf:
            check(len(self.buf) < 1 << 20, f"{what}: no {sep!r} in 1 MiB")
            self._more(deadline, what)
        i = self.buf.index(sep) + len(sep)
        return self.take(i, deadline, what)

    def expect_eof(self, deadline, what):
        """Nothing more arrives, then the server closes."""
        while True:
            self.sock.settimeout(remaining(deadline, what))
            try:
                d = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TestFailure(f"{what}: the server did not close the connection")
            except ConnectionResetError:
                d = b""
            if not d:
                break
            self.buf += d
        check(not self.buf, f"{what}: unexpected bytes before EOF: {bytes(self.buf[:80])!r}")

    # -- HTTP --------------------------------------------------------------
    def head(self, deadline, what):
        """(status, {lowercase name: value}) of a response head."""
        raw = self.until(b"\r\n\r\n", deadline, what).decode("latin-1")
        lines = raw.split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        check(m, f"{what}: bad status line {lines[0]!r}")
        hdrs = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
        return int(m.group(1)), hdrs

    def response(self, deadline, what):
        """(status, headers, body); the body by Content-Length or chunked."""
        status, hdrs = self.head(deadline, what)
        if "content-length" in hdrs:
            body = self.take(int(hdrs["content-length"]), deadline, what)
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.until(b"\r\n", deadline, what).split(b";")[0], 16)
                body += self.take(size, deadline, what)
                self.take(2, deadline, what)
                if size == 0:
                    break
        else:
            body = b""
        return status, hdrs, body

    # -- WebSocket frames -------------------------------------------------
    def frame(self, deadline, what="frame"):
        h = self.take(2, deadline, what)
        fin, rsv, op = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 15
        masked, n = h[1] >> 7, h[1] & 127
        lencode = n
        if n == 126:
            n = int.from_bytes(self.take(2, deadline, what), "big")
        elif n == 127:
            n = int.from_bytes(self.take(8, deadline, what), "big")
        key = self.take(4, deadline, what) if masked else None
        payload = self.take(n, deadline, what)
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(fin, rsv, op, masked, lencode, payload)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = bytes([b0, mbit | n])
        elif n < 65536:
            hdr = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
        else:
            hdr = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
        if mask:
            key = os.urandom(4)
            hdr += key
            payload = mask_bytes(payload, key)
        self.sock.sendall(hdr + payload)

    def send_close(self, code=None, reason=b""):
        self.send_frame(0x8, b"" if code is None else code.to_bytes(2, "big") + reason)


def ws_handshake_request(port, path, extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           f"{extra}\r\n")
    return req.encode(), key


def raw_ws(port, path, deadline, extra=""):
    """A raw WebSocket connection after a checked 101 handshake."""
    c = Conn(connect(port))
    req, key = ws_handshake_request(port, path, extra)
    c.sock.sendall(req)
    status, hdrs = c.head(deadline, f"handshake {path}")
    check_eq(status, 101, f"handshake {path}: status")
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    check_eq(hdrs.get("sec-websocket-accept"), want, f"handshake {path}: Sec-WebSocket-Accept")
    check_eq(hdrs.get("upgrade", "").lower(), "websocket", f"handshake {path}: Upgrade header")
    check("upgrade" in hdrs.get("connection", "").lower(), f"handshake {path}: Connection header "
          f"{hdrs.get('connection')!r}")
    return c


def expect_close_frame(c, code, deadline, what):
    f = c.frame(deadline, what)
    check_eq(f.opcode, 0x8, f"{what}: the first frame from the server ({f!r}) is a Close")
    check(not f.masked, f"{what}: the server's Close is masked")
    check_eq(f.close_code(), code, f"{what}: the server's close code")
    return f


# ---------------------------------------------------------------------------
# 1. Seed Example 5 + Example 15: the echo, text and binary

@suite.case(timeout=60)
def example05_echo_text_and_binary():
    d, port = start()

    async def body():
        async with ws_open(port, "/echo.lsp?id=ex5") as ws:
            await echo(ws, "hello", "text")
            await echo(ws, b"\x00\x01binary\xff", "binary")
            await echo(ws, "h\u00e9llo \u2713 \U0001F600", "UTF-8 text")
            await echo(ws, b"text-looking bytes", "binary that looks like text")
            for i in range(40):
                m = f"msg {i}" if i % 2 else pattern(i * 31 + 1, i)
                await echo(ws, m, f"message {i}")
            await ws.close(4000)
            check_eq(ws.close_code, 1000, "the server's answer to our Close 4000 (BA-API 6.4)")
    run(body)
    opened = wait_record(d, "OPEN", "ex5")
    check_eq((opened["mode"], opened["websocket"]), ("s", "true"), "WSOPEN mode and sock:websocket()")
    check_end(d, "ex5", "socketclosed", 4000, "client Close 4000")
    got = [(r["len"], r["text"]) for r in msgs(d, "ex5")]
    want = [("5", "true"), ("9", "false"), (str(len("h\u00e9llo \u2713 \U0001F600".encode())), "true"),
            ("18", "false")]
    want += [(str(len(f"msg {i}")), "true") if i % 2 else (str(i * 31 + 1), "false") for i in range(40)]
    check_eq(got, want, "messages the script read (length, isText)")
    no_lua_errors(d)
    stop_and_check_exit(d)


# ---------------------------------------------------------------------------
# 2. Frame sizes and the frame limit

@suite.case(timeout=60)
def frame_sizes_125_126_65535():
    d, port = start()

    async def body():
        async with ws_open(port, "/echo.lsp?id=small") as ws:
            for n in (1, 125, 126):
                await echo(ws, "a" * n, f"text {n}")
                await echo(ws, pattern(n, n), f"binary {n}")
        async with ws_open(port, "/echo.lsp?id=max") as ws:
            await echo(ws, "\u00e9" * (65535 // 2) + "a", "text 65535")
            await echo(ws, pattern(65535, 1), "binary 65535")
    run(body)
    # the echo can come back before the page's record reaches the log
    wait_record(d, "MSG", "small", count=6)
    wait_record(d, "MSG", "max", count=2)
    small = [(r["len"], r["text"], r["form"]) for r in msgs(d, "small")]
    want = []
    for n in (1, 125, 126):
        want += [(str(n), "true", "whole"), (str(n), "false", "whole")]
    check_eq(small, want, "1/125/126-byte frames (length, isText, read form: data, isText)")
    check_eq([(r["len"], r["text"]) for r in msgs(d, "max")], [("65535", "true"), ("65535", "false")],
             "65535-byte frames read")
    for i, fr in enumerate(split_frags(d, "max")):
        check_frags(fr, 65535, f"65535-byte frame {i} in fragment form", single_frame=True)
    no_lua_errors(d)


@suite.case(timeout=60)
def frame_size_0():
    """Empty text and binary frames: read whole as "", isText, and an empty
    message written back is an empty frame of that type."""
    d, port = start()
    dl = deadline_after(10)
    c = raw_ws(port, "/echo.lsp?id=empty", dl)
    for op in (0x1, 0x2, 0x1):
        c.send_frame(op, b"")
        f = c.frame(dl, f"echo of an empty frame (opcode {op})")
        check_eq((f.fin, f.opcode, f.masked, f.lencode, f.payload), (1, op, 0, 0, b""),
                 f"the echo of an empty opcode-{op} frame")
    c.send_frame(0x1, b"!big:0")
    f = c.frame(dl, "!big:0")
    check_eq((f.fin, f.opcode, f.lencode, f.payload), (1, 0x2, 0, b""), "sock:write('') (binary)")
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "close")
    check_eq([(r["len"], r["text"], r["form"]) for r in msgs(d, "empty")],
             [("0", "true", "whole"), ("0", "false", "whole"), ("0", "true", "whole"),
              ("6", "true", "whole")],
             "empty frames read (length, isText, form)")
    check_eq(records(d, "WRITEERR", "empty"), [], "failed writes")
    no_lua_errors(d)


@suite.case(timeout=60)
def frame_65536_refused_by_default():
    d, port = start()

    async def body():
        async with ws_open(port, "/echo.lsp?id=big") as ws:
            await echo(ws, "before", "a small message first")
            await ws.send(pattern(65536))
            await expect_closed_by_server(ws, 1009, "65536-byte frame")
        # the server stays up and takes new connections
        async with ws_open(port, "/echo.lsp?id=after") as ws:
            await echo(ws, pattern(65535), "65535 on a new connection")
            # a write above 0xFFFF raises "Max len 0xFFFF" in the script
            await ws.send("!big:65536")
            err = await asyncio.wait_for(ws.recv(), 10)
            check(isinstance(err, str) and err.startswith("err:") and "Max len 0xFFFF" in err,
                  f"writing 65536 bytes with the default limit: {err[:100]!r}")
    run(body)
    check_end(d, "big", "socketclosed", 1009, "a frame over the limit")
    check_eq([r["len"] for r in msgs(d, "big")], ["6"], "messages read before the big frame")
    no_lua_errors(d)


@suite.case(timeout=60)
def frame_limit_raised_by_sock_maxframe():
    d, port = start()

    async def body():
        async with ws_open(port, "/echo.lsp?id=raised&maxframe=65536") as ws:
            await ws.send("!maxframe")
            check_eq(await asyncio.wait_for(ws.recv(), 10), "maxframe=65536", "sock:maxframe() after raising")
            await echo(ws, pattern(65536, 2), "65536-byte binary frame")
            await echo(ws, "x" * 65536, "65536-byte text frame")
            await ws.send(pattern(65537))
            await expect_closed_by_server(ws, 1009, "65537 bytes over a 65536 limit")
    run(body)
    check_eq(wait_record(d, "MAXFRAME", "raised")["prev"], "65535", "sock:maxframe(65536)'s result "
             "(the previous, default limit)")
    check_end(d, "raised", "socketclosed", 1009, "over the raised limit")
    ms = msgs(d, "raised")
    check_eq([(r["len"], r["text"]) for r in ms[1:]], [("65536", "false"), ("65536", "true")],
             "the 65536-byte messages")
    # a frame that arrived whole may be read whole (cosockd waits for frames
    # up to 64 KiB); one read in pieces reports consistent bytesRead/frameLen
    for i, fr in enumerate(split_frags(d, "raised")):
        check_frags(fr, 65536, f"65536-byte frame {i}", single_frame=True)

    # The fragment form for certain: half of a frame too large to wait for
    # (200,000 bytes: more than 64 KiB, the most a read waits to return
    # whole, plus the 64 KiB read ahead) is sent, the script's read of a
    # piece is awaited (its WSFRAG record), then the rest follows.
    dl = deadline_after(30)
    size, half = 200000, 100000
    c = raw_ws(port, f"/echo.lsp?id=halves&maxframe={size}", dl)
    data = pattern(size, 9)
    key = os.urandom(4)
    masked = mask_bytes(data, key)
    c.sock.sendall(bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big") + key + masked[:half])
    wait_record(d, "FRAG", "halves")
    c.sock.sendall(masked[half:])
    f = c.frame(dl, f"the echo of the {size}-byte frame")
    check_eq((f.fin, f.opcode, f.lencode, len(f.payload)), (1, 0x2, 127, size),
             "the echo (64-bit length form)")
    check(f.payload == data, f"the echo of the {size}-byte frame differs")
    fr = frags_of(d, "halves")
    check(fr[0][1] <= half and fr[0][2] == size,
          f"the first piece (len, bytesRead, frameLen) {fr[0]}: more than was sent, or a wrong frameLen")
    check_frags(fr, size, f"the {size}-byte frame sent in two halves", single_frame=True)
    check_eq([(r["len"], r["form"]) for r in msgs(d, "halves")], [(str(size), "frag")],
             "the message assembled by Example 15's loop")
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "close")
    no_lua_errors(d)


@suite.case(timeout=60)
def frame_limit_raised_by_server_option():
    d, port = start("maxframe=131072")

    async def body():
        async with ws_open(port, "/echo.lsp?id=opt") as ws:
            await ws.send("!maxframe")
            check_eq(await asyncio.wait_for(ws.recv(), 10), "maxframe=131072",
                     "sock:maxframe() with ws_max_frame=131072")
            await echo(ws, pattern(131072, 3), "131072-byte frame")
            await ws.send("!big:131072")
            got = await asyncio.wait_for(ws.recv(), 10)
            check(got == b"b" * 131072, f"a 131072-byte write: {type(got).__name__} of {len(got)}")
            await ws.send(pattern(131073))
            await expect_closed_by_server(ws, 1009, "131073 bytes over ws_max_frame")
    run(body)
    check_end(d, "opt", "socketclosed", 1009, "over ws_max_frame")
    no_lua_errors(d)


@suite.case(timeout=60)
def server_frame_headers():
    """What the server writes: FIN, RSV 0, unmasked, the shortest length
    form (7-bit, 16-bit, 64-bit above 0xFFFF once the limit is raised)."""
    d, port = start()
    dl = deadline_after(40)
    c = raw_ws(port, "/echo.lsp?id=hdr&maxframe=200000", dl)
    for n, lencode in ((1, 1), (125, 125), (126, 126), (65535, 126), (65536, 127), (70000, 127)):
        c.send_frame(0x1, f"!big:{n}".encode())
        f = c.frame(dl, f"!big:{n}")
        check_eq((f.fin, f.rsv, f.opcode, f.masked, f.lencode, len(f.payload)),
                 (1, 0, 0x2, 0, lencode, n), f"frame of {n} bytes (fin, rsv, opcode, masked, "
                 f"length code, length)")
        check(f.payload == b"b" * n, f"frame of {n} bytes: payload")
    c.send_frame(0x1, "h\u00e9".encode())
    f = c.frame(dl, "text echo")
    check_eq((f.fin, f.opcode, f.payload), (1, 0x1, "h\u00e9".encode()), "a text echo")
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "close")
    c.expect_eof(dl, "after the close handshake")
    check_end(d, "hdr", "socketclosed", 1000, "close 1000")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 3. Large messages: streamed, not held whole

@suite.case(timeout=120)
def large_message_streamed():
    d, port = start()
    limit = 64 << 20

    async def stream(ws, data, what):
        pieces = []

        async def reader():
            while True:
                m = await ws.recv()
                if isinstance(m, str) and m.startswith("END "):
                    return m, pieces
                pieces.append(m)
        task = asyncio.create_task(reader())
        await ws.send(data)
        end, got = await asyncio.wait_for(task, 60)
        joined = b"".join(got)
        check_eq(len(joined), len(data), f"{what}: bytes streamed back")
        check(joined == data, f"{what}: the streamed echo differs")
        return end, len(got)

    async def peak_rss(ws, size, seed):
        """Stream a size-byte message; the daemon's peak RSS meanwhile."""
        peak = [d.rss_kib()]
        done = threading.Event()

        def sampler():
            while not done.is_set():
                peak[0] = max(peak[0], d.rss_kib())
                time.sleep(0.01)
        t = threading.Thread(target=sampler, daemon=True)
        t.start()
        try:
            await stream(ws, pattern(size, seed), f"{size >> 20} MiB")
        finally:
            done.set()
            t.join(5)
        return peak[0]

    async def body():
        async with ws_open(port, f"/stream.lsp?id=stream&maxframe={limit}") as ws:
            end, n = await stream(ws, pattern(1 << 20, 5), "1 MiB")
            check_eq(end, f"END {1 << 20} {n}", "the script's END line for 1 MiB")
            # Memory must not grow with the message: the first big message
            # may touch buffers the daemon keeps (its receive buffer pool),
            # a second one twice as big must need no more.
            base = d.rss_kib()
            p32 = await peak_rss(ws, 32 << 20, 6)
            p64 = await peak_rss(ws, 64 << 20, 7)
            print(f"  daemon RSS: {base} KiB, peak {p32} KiB streaming 32 MiB, {p64} KiB "
                  f"streaming 64 MiB", flush=True)
            # (the first bound is loose: ASan's quarantine and the io_uring
            # buffer pool show up here; the second check is the real one.
            # Under ThreadSanitizer (CI sets TSAN_OPTIONS) its shadow
            # memory and allocator defeat both, and only races are checked.)
            if "TSAN_OPTIONS" not in os.environ:
                check(p32 - base < 40 << 10, f"RSS grew by {p32 - base} KiB while 32 MiB streamed")
                check(p64 - p32 < 4 << 10, f"RSS grew by {p64 - p32} KiB more for 64 MiB than for "
                      "32 MiB: the message is buffered")
        # the same 1 MiB message assembled whole (Example 15) and echoed as
        # one frame (the 64-bit length form) once the limit allows it
        async with ws_open(port, "/echo.lsp?id=whole1m&maxframe=2097152") as ws:
            await echo(ws, pattern(1 << 20, 7), "1 MiB assembled and echoed whole", timeout=30)
    run(body, 110)
    st = records(d, "STREAM", "stream")
    check_eq(len(st), 3, "messages streamed")
    for r, total in zip(st, (1 << 20, 32 << 20, 64 << 20)):
        check_eq((r["total"], r["flen_first"], r["flen_last"], r["cum"]),
                 (str(total), str(total), str(total), "true"),
                 f"{total}-byte message: total, frameLen of the first and last piece, "
                 "bytesRead always the running total")
        check(int(r["chunks"]) >= 2, f"{total}-byte message read in {r['chunks']} pieces")
    print("  pieces: " + ", ".join(f"{int(r['total']) >> 20} MiB in {r['chunks']} (largest {r['maxchunk']})"
                                   for r in st), flush=True)
    check_eq([(r["len"], r["form"]) for r in msgs(d, "whole1m")], [(str(1 << 20), "frag")],
             "the 1 MiB message assembled by Example 15's loop")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 4. Fragmented messages and control frames between fragments

@suite.case(timeout=60)
def fragmented_messages():
    d, port = start()
    bparts = [pattern(1000, 1), pattern(3000, 2), b"", pattern(20000, 3)]

    async def body():
        async with ws_open(port, "/echo.lsp?id=frag") as ws:
            await ws.send(["Hel", "lo ", "wor", "ld"])
            check_eq(await asyncio.wait_for(ws.recv(), 10), "Hello world", "a fragmented text message")
            await ws.send(bparts)
            got = await asyncio.wait_for(ws.recv(), 10)
            check(got == b"".join(bparts), "a fragmented binary message: echo differs")

            # a ping between two fragments (an async iterable: the library
            # sends each fragment as it is produced)
            async def with_ping():
                yield "first "
                pong = await ws.ping(b"between")
                yield "second"
                await asyncio.wait_for(pong, 10)
            await ws.send(with_ping())
            check_eq(await asyncio.wait_for(ws.recv(), 10), "first second",
                     "a fragmented message with a ping between its fragments")

            # every frame under the limit, the message over it: accepted;
            # echoing it whole raises "Max len 0xFFFF" in the script
            await ws.send([pattern(40000, 4), pattern(40000, 5)])
            await echo(ws, "after", "the message after an 80,000-byte fragmented one")
    run(body)
    ms = msgs(d, "frag")
    check_eq([(r["len"], r["text"], r["form"]) for r in ms],
             [("11", "true", "frag"), (str(24000), "false", "frag"), ("12", "true", "frag"),
              ("80000", "false", "frag"), ("5", "true", "whole")], "messages assembled by the script")
    pieces = split_frags(d, "frag")
    check_eq(len(pieces), 4, "fragmented messages in fragment form")
    for fr, total in zip(pieces, (11, 24000, 12, 80000)):
        check_frags(fr, total, f"fragmented {total}-byte message", single_frame=False)
    werr = records(d, "WRITEERR", "frag")
    check(len(werr) == 1 and werr[0]["n"] == "4" and "Max len 0xFFFF" in werr[0]["err"],
          f"writing the 80,000-byte message back: {werr}")
    no_lua_errors(d)


@suite.case(timeout=60)
def control_frames_between_fragments_raw():
    d, port = start()
    dl = deadline_after(40)
    c = raw_ws(port, "/echo.lsp?id=ctl", dl)
    c.send_frame(0x1, b"Hel", fin=False)
    c.send_frame(0x9, b"between")
    c.send_frame(0x0, b"lo", fin=False)
    c.send_frame(0xA, b"unsolicited pong")  # ignored
    c.send_frame(0x9, b"")
    c.send_frame(0x0, b" \xc3", fin=False)  # "é" split across two fragments
    c.send_frame(0x0, b"\xa9", fin=True)
    want = [(0xA, b"between"), (0xA, b""), (0x1, "Hello é".encode())]
    for i, (op, payload) in enumerate(want):
        f = c.frame(dl, f"frame {i}")
        check_eq((f.fin, f.opcode, f.masked, f.payload), (1, op, 0, payload), f"server frame {i}")
    c.send_close(4000, b"bye")
    expect_close_frame(c, 1000, dl, "close")
    c.expect_eof(dl, "after the close handshake")
    check_end(d, "ctl", "socketclosed", 4000, "close 4000 with a reason")
    check_eq([(r["len"], r["text"]) for r in msgs(d, "ctl")], [("8", "true")], "the message read")
    check_frags(frags_of(d, "ctl"), 8, "the fragmented message", single_frame=False)
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 5. Ping, pong, close

@suite.case(timeout=60)
def ping_and_pong():
    d, port = start()

    async def body():
        async with ws_open(port, "/echo.lsp?id=ping") as ws:
            for payload in (b"abc", b"", b"p" * 125):
                pong = await ws.ping(payload)
                await asyncio.wait_for(pong, 10)  # resolves on the matching pong only
            await echo(ws, "!ping", "sock:ping() command")
            await echo(ws, "!ping:xyz", "sock:ping('xyz') command")
            check_eq(ws.pings_seen, [b"BAS", b"xyz"], "pings from the server (default payload 'BAS')")
    run(body)
    dl = deadline_after(20)
    c = raw_ws(port, "/echo.lsp?id=rawping", dl)
    c.send_frame(0x9, b"abc")
    f = c.frame(dl, "pong")
    check_eq((f.fin, f.opcode, f.masked, f.payload), (1, 0xA, 0, b"abc"), "the pong to ping 'abc'")
    c.send_frame(0x1, b"!ping")
    f = c.frame(dl, "server ping")
    check_eq((f.fin, f.opcode, f.masked, f.payload), (1, 0x9, 0, b"BAS"), "sock:ping() on the wire")
    f = c.frame(dl, "echo after ping")
    check_eq((f.opcode, f.payload), (0x1, b"!ping"), "the echo after the ping")
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "close")
    no_lua_errors(d)


@suite.case(timeout=60)
def close_handshake():
    d, port = start()

    async def body():
        # the script closes: sock:close() sends Close 1000
        async with ws_open(port, "/echo.lsp?id=sclose") as ws:
            await echo(ws, "one", "before the close")
            await ws.send("!close")
            e = await expect_closed_by_server(ws, 1000, "sock:close()")
            check(isinstance(e, websockets.exceptions.ConnectionClosedOK),
                  f"sock:close() ended the connection abnormally: {e!r}")
    run(body)
    check_eq(wait_record(d, "CLOSED", "sclose")["ret"], "true", "sock:close()'s result")
    dl = deadline_after(20)
    # the peer's Close without a code: the script sees 1000
    c = raw_ws(port, "/echo.lsp?id=nocode", dl)
    c.send_close()
    expect_close_frame(c, 1000, dl, "the answer to a Close without a code")
    c.expect_eof(dl, "after the close handshake")
    check_end(d, "nocode", "socketclosed", 1000, "Close without a code")
    # the peer's Close with a code and reason
    c = raw_ws(port, "/echo.lsp?id=code4001", dl)
    c.send_frame(0x2, b"x")
    check_eq(c.frame(dl, "echo").payload, b"x", "echo before closing")
    c.send_close(4001, "raison d'\u00eatre".encode())
    expect_close_frame(c, 1000, dl, "the answer to Close 4001")
    c.expect_eof(dl, "after the close handshake")
    check_end(d, "code4001", "socketclosed", 4001, "Close 4001")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 6. Protocol errors: the close code on the wire and in the script

PROTOCOL_ERRORS = [
    # name, frames to send [(opcode, payload, kwargs)], close code
    ("unmasked", [(0x2, b"abc", {"mask": False})], 1002),
    ("rsv1", [(0x2, b"abc", {"rsv": 4})], 1002),
    ("rsv3", [(0x1, b"abc", {"rsv": 1})], 1002),
    ("opcode3", [(0x3, b"abc", {})], 1002),
    ("opcode11", [(0xB, b"", {})], 1002),
    ("continuation-first", [(0x0, b"abc", {})], 1002),
    ("fragmented-ping", [(0x9, b"abc", {"fin": False})], 1002),
    ("long-ping", [(0x9, b"p" * 126, {})], 1002),
    ("utf8", [(0x1, b"ok \xff\xfe", {})], 1007),
    ("utf8-fragments", [(0x1, b"ok \xe2\x82", {"fin": False}), (0x0, b"A", {})], 1007),
    ("len64", [(0x2, b"", {"length": 70000})], 1009),
]


@suite.case(timeout=90)
def protocol_errors():
    d, port = start()
    dl = deadline_after(80)
    # warm up (first page run, pool thread), then count descriptors
    c = raw_ws(port, "/echo.lsp?id=warm", dl)
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "warm-up close")
    check_end(d, "warm", "socketclosed", 1000, "warm-up")
    c.sock.close()
    fds = fd_count(d.pid)
    for name, frames, code in PROTOCOL_ERRORS:
        ident = "perr-" + name
        c = raw_ws(port, f"/echo.lsp?id={ident}", dl)
        c.send_frame(0x1, b"fine")
        check_eq(c.frame(dl, f"{name}: echo").payload, b"fine", f"{name}: a good frame first")
        for op, payload, kw in frames:
            c.send_frame(op, payload, **kw)
        expect_close_frame(c, code, dl, name)
        try:
            c.send_close(code)
        except OSError:
            pass  # the server may already have closed the connection
        c.expect_eof(dl, f"{name}: after the close")
        check_end(d, ident, "socketclosed", code, name)
        check_eq([r["len"] for r in msgs(d, ident)], ["4"], f"{name}: messages the script read")
        c.sock.close()
    # the sockets are gone
    wait_until(lambda: fd_count(d.pid) <= fds, 10,
               f"descriptors back to {fds} (now {fd_count(d.pid)})")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 7. The three socket modes

@suite.case(timeout=60)
def socket_modes_blocking_r_s():
    d, port = start()

    async def body():
        async with ws_open(port, "/rpc.lsp?id=blocking") as rpc, \
                ws_open(port, "/fn/echo?id=rmode") as rws, \
                ws_open(port, "/echo.lsp?id=smode") as sws:
            for i in range(30):
                for ws, prefix, label in ((rpc, "rpc:", "blocking"), (rws, "", "r"), (sws, "", "s")):
                    m = f"m{i}" if i % 2 else f"b{i}".encode() * (i + 1)
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 10)
                    want = (prefix + m) if isinstance(m, str) else prefix.encode() + m
                    check_eq(got, want, f"{label} mode, message {i}")
            await asyncio.wait_for(asyncio.gather(rpc.close(4000), rws.close(4001), sws.close(4002)), 10)
    run(body)
    for ident, mode, code in (("blocking", "blocking", 4000), ("rmode", "r", 4001), ("smode", "s", 4002)):
        r = wait_record(d, "OPEN", ident)
        check_eq((r["mode"], r["websocket"]), (mode, "true"), f"{ident}: mode and sock:websocket()")
        check_end(d, ident, "socketclosed", code, f"{mode} mode")
    check_eq(wait_record(d, "OPEN", "blocking")["getsock"], "nil",
             "ba.socket.getsock() on the page's pool thread")
    check_eq(wait_record(d, "END", "blocking")["msgs"], "30", "messages the blocking page read")
    no_lua_errors(d)


@suite.case(timeout=90)
def queue_writers_cosocket_and_timer():
    d, port = start()
    nco = 1000

    async def body():
        # max_queue=1: the client stops reading at once, so the queues fill
        async with ws_open(port, f"/queue.lsp?id=q&n={nco}", max_queue=1) as ws:
            m = await asyncio.to_thread(d.wait_log, r"^WSQ(FULL|DONE) (id=q src=timer .*)$", 30)
            check_eq(m.group(1), "FULL", f"the timer's writes ({m.group(2)}): the queue never filled")
            full = fields(m.group(2))
            check_eq(full["qtype"], "integer", "write's second value when the queue is full")
            check_eq(full["limit"], "16384", "sock:queuelen()")
            check(int(full["queued"]) >= 16384, f"queued bytes at the limit: {full}")
            writes = int(full["writes"])
            check(writes >= 1, "the timer wrote nothing before the queue was full")
            co, tm = [], []
            while len(co) < nco or len(tm) < writes:
                m = await asyncio.wait_for(ws.recv(), 20)
                kind, i, rest = (m.decode() if isinstance(m, bytes) else m).split(":", 2)
                if kind == "co":
                    check(isinstance(m, str) and rest == "c" * 4000, f"co message {i}: type or body")
                    co.append(int(i))
                else:
                    check(isinstance(m, bytes) and rest == "t" * 8000, f"timer message {i}: type or body")
                    tm.append(int(i))
            check_eq(co, list(range(1, nco + 1)), "the cosocket writer's messages, in order")
            check_eq(tm, list(range(1, writes + 1)), "the timer's messages, in order (none lost)")
            await asyncio.to_thread(d.wait_log, r"^WSQDONE id=q src=co ", 10)
            await ws.close(4000)
            return writes
    writes = run(body, 80)
    print(f"  the timer queued {writes} messages before write returned nil, queued", flush=True)
    check_eq(records(d, "QERR", "q"), [], "failed writes")
    check_eq([r["writes"] for r in records(d, "QDONE", "q") if r["src"] == "co"], [str(nco)],
             "the cosocket writer's count")
    check_eq(wait_record(d, "OPEN", "q")["websocket"], "true", "sock:websocket()")
    check_end(d, "q", "socketclosed", 4000, "the client's close")
    no_lua_errors(d)


@suite.case(timeout=60)
def page_response_void_after_req2sock():
    d, port = start()
    dl = deadline_after(30)
    c = raw_ws(port, "/void.lsp?id=void", dl)
    for m in (b"one", b"two"):
        c.send_frame(0x1, m)
        f = c.frame(dl, f"echo {m!r}")
        check_eq((f.fin, f.rsv, f.opcode, f.payload), (1, 0, 0x1, m),
                 "the echo (no page output may come before it)")
    c.send_close(1000)
    expect_close_frame(c, 1000, dl, "close")
    c.expect_eof(dl, "after the close handshake")
    check_end(d, "void", "socketclosed", 1000, "close")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 8. Raw req2sock and sock2req

HELLO = b"hello from cosockd\n"


@suite.case(timeout=60)
def req2sock_raw_and_sock2req():
    d, port = start()
    dl = deadline_after(40)
    host = f"Host: {LOOPBACK}:{port}\r\n"
    # extra bytes in the same send come back as req2sock's second value;
    # after sock2req the next request on the connection is HTTP again
    c = Conn(connect(port))
    c.sock.sendall(f"GET /raw.lsp?mode=reply HTTP/1.1\r\n{host}\r\nEXTRA bytes".encode())
    status, hdrs, body = c.response(dl, "raw page")
    check_eq((status, body), (200, b"raw:EXTRA bytes"), "the raw page's own response")
    check_eq(hdrs.get("content-type"), "text/plain", "its Content-Type (written by the page)")
    r = wait_record(d, "RAW", "raw")
    check_eq((r["mode"], base64.b64decode(r["b64"]), r["websocket"]), ("reply", b"EXTRA bytes", "false"),
             "req2sock(request, true): buffered bytes and sock:websocket()")
    c.sock.sendall(f"GET /hello.txt HTTP/1.1\r\n{host}\r\n".encode())
    status, hdrs, body = c.response(dl, "HTTP after sock2req")
    check_eq((status, body), (200, HELLO), "a static file on the connection sock2req gave back")
    c.sock.sendall(f"GET /hello.txt HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode())
    check_eq(c.response(dl, "second request")[::2], (200, HELLO), "keep-alive goes on")
    c.expect_eof(dl, "Connection: close")

    # sock2req(sock, pushback): a pipelined request read ahead is given back
    c = Conn(connect(port))
    nxt = f"GET /hello.txt HTTP/1.1\r\n{host}\r\n".encode()
    c.sock.sendall(f"GET /raw.lsp?mode=pushback HTTP/1.1\r\n{host}\r\n".encode() + nxt)
    status, _, body = c.response(dl, "raw page (pushback)")
    check_eq((status, body), (200, f"pushback:{len(nxt)}".encode()), "the raw page's response")
    status, _, body = c.response(dl, "the pushed-back request")
    check_eq((status, body), (200, HELLO), "the request handed back with sock2req's pushback")
    # the page's record can reach the log after its response reached us
    r = wait_record(d, "RAW", "raw", count=2)
    check_eq(base64.b64decode(r["b64"]), nxt, "the bytes read ahead (the pipelined request)")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 9. wss:// with a shark object

def make_pki():
    tmp = tempfile.mkdtemp(prefix="cosockd-ws-pki-")
    suite.on_cleanup(lambda: shutil.rmtree(tmp, True))
    p = lambda n: os.path.join(tmp, n)  # noqa: E731

    def ossl(*argv):
        r = subprocess.run(["openssl", *argv], capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise TestFailure(f"openssl {' '.join(argv)}: {r.stderr.strip()}")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "30",
         "-subj", "/O=cosockd tests/CN=cosockd ws test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-new", *ec, "-keyout", p("leaf.key"), "-out", p("leaf.csr"),
         "-subj", "/O=cosockd tests/CN=localhost")
    with open(p("leaf.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("leaf.pem"), "-days", "30", "-extfile", p("leaf.ext"))
    return p("ca.pem"), p("leaf.pem"), p("leaf.key")


@suite.case(timeout=60)
def wss_with_shark():
    ca, cert, key = make_pki()
    d, port = start(f"cert={cert}", f"key={key}")
    ctx = ssl.create_default_context(cafile=ca)

    async def body():
        async with ws_open(port, "/echo.lsp?id=wss", scheme="wss", ssl=ctx) as ws:
            await echo(ws, "over TLS \u2713", "text")
            await echo(ws, pattern(65535, 8), "65535-byte binary")
            await ws.send(["frag", "mented"])
            check_eq(await asyncio.wait_for(ws.recv(), 10), "fragmented", "a fragmented message")
            pong = await ws.ping(b"tls")
            await asyncio.wait_for(pong, 10)
            await echo(ws, "!ping:over-tls", "sock:ping over TLS")
            check_eq(ws.pings_seen, [b"over-tls"], "the server's ping")
            await ws.close(4000)
            check_eq(ws.close_code, 1000, "the server's answer to Close 4000")
        # a plain connection to the TLS port is not a WebSocket
        try:
            async with ws_open(port, "/echo.lsp?id=plain", open_timeout=5):
                raise TestFailure("a plain ws:// handshake succeeded on the wss port")
        except (websockets.exceptions.InvalidHandshake, websockets.exceptions.InvalidMessage,
                ConnectionError, asyncio.TimeoutError, EOFError, OSError):
            pass
    run(body)
    check_end(d, "wss", "socketclosed", 4000, "client Close 4000 over TLS")
    check_eq(records(d, "OPEN", "plain"), [], "a plain connection reached the page")
    check_eq([r["len"] for r in msgs(d, "wss")],
             [str(len(m.encode())) for m in ("over TLS \u2713", "x" * 65535, "fragmented", "!ping:over-tls")],
             "messages read over TLS")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 10. Authentication of the WebSocket entry page

@suite.case(timeout=60)
def auth_protected_entry_page():
    d, port = start("auth=1")
    dl = deadline_after(40)
    # without credentials: 401 and a Basic challenge, no upgrade
    c = Conn(connect(port))
    req, _ = ws_handshake_request(port, "/private/echo.lsp?id=anon")
    c.sock.sendall(req)
    status, hdrs, _ = c.response(dl, "unauthenticated upgrade")
    check_eq(status, 401, "status without credentials")
    check_eq(hdrs.get("www-authenticate"), 'Basic realm="cosockd"', "WWW-Authenticate")
    check("sec-websocket-accept" not in hdrs, "a 401 carries Sec-WebSocket-Accept")

    async def refused(what, **kw):
        try:
            async with ws_open(port, "/private/echo.lsp?id=refused", **kw):
                raise TestFailure(f"{what}: the upgrade was accepted")
        except websockets.exceptions.InvalidStatusCode as e:
            check_eq(e.status_code, 401, f"{what}: status")

    async def body():
        await refused("no credentials")
        await refused("wrong password", userinfo="alice:wrong@")
        await refused("unknown user", userinfo="mallory:secret@")
        await refused("bad session cookie", extra_headers={"Cookie": "session=tok-eve"})
        async with ws_open(port, "/private/echo.lsp?id=basic", userinfo="alice:secret@") as ws:
            await echo(ws, "as alice", "Basic credentials")
        async with ws_open(port, "/private/echo.lsp?id=cookie",
                           extra_headers={"Cookie": "theme=dark; session=tok-bob"}) as ws:
            await echo(ws, "as bob", "session cookie")
        async with ws_open(port, "/echo.lsp?id=open") as ws:
            await echo(ws, "anyone", "an unprotected page")
    run(body)
    check_eq(records(d, "OPEN", "anon") + records(d, "OPEN", "refused"), [],
             "a refused request reached the page")
    for ident, user in (("basic", "alice"), ("cookie", "bob"), ("open", "nil")):
        check_eq(wait_record(d, "OPEN", ident)["user"], user, f"{ident}: request:user()")
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 11. A real browser

def chromium_argv(user_dir, url):
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={user_dir}",
            "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-domain-reliability",
            "--disable-client-side-phishing-detection", "--disable-breakpad", "--no-pings",
            "--metrics-recording-only", "--disable-dev-shm-usage",
            # loopback only: every name but 127.0.0.1 fails to resolve, and
            # anything not on loopback goes to a proxy that is not there
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9", url]


class Chromium:
    """Headless Chromium in a session of its own, killed (its process group)
    when the case ends."""

    def __init__(self, url):
        self.dir = tempfile.mkdtemp(prefix="cosockd-ws-chromium-")
        self.log = open(os.path.join(self.dir, "chromium.log"), "w+b")
        self.proc = subprocess.Popen(chromium_argv(os.path.join(self.dir, "profile"), url),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True, preexec_fn=_die_with_parent())
        suite.on_cleanup(self.stop)

    def output(self, n=2000):
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers left in its group
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, True)


def chromium_starts():
    """None when headless Chromium runs here (it renders a data: URL), else
    why not."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (package chromium; scripts/setup.sh installs it)"
    tmp = tempfile.mkdtemp(prefix="cosockd-ws-chromium-probe-")
    argv = chromium_argv(os.path.join(tmp, "profile"),
                         "data:text/html,<title>x</title><script>document.title='probe-ok'</script>")
    argv.remove("--remote-debugging-port=0")
    argv.insert(-1, "--dump-dom")
    proc = None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_die_with_parent())
        out, err = proc.communicate(timeout=60)
        if b"probe-ok" not in out:
            return (f"chromium --dump-dom failed (exit {proc.returncode}): "
                    f"{err.decode(errors='replace')[-500:]}")
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"chromium did not run: {e}"
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in its group
            except ProcessLookupError:
                pass
            proc.wait(5)
        shutil.rmtree(tmp, True)


@suite.case(timeout=120)
def browser_chromium_1000_messages():
    why = chromium_starts()
    if why:
        print(f"SKIP {suite.name}/browser_chromium_1000_messages [{suite.backend}]: {why}", flush=True)
        return
    d, port = start()
    br = Chromium(f"http://{LOOPBACK}:{port}/browser.html")
    try:
        m = d.wait_log(r"^BROWSER (.*)$", timeout=90)
    except TestFailure as e:
        raise TestFailure(f"{e}; chromium said: {br.output()}")
    got = fields(m.group(1))
    check_eq(m.group(1).split(" ")[0], "RESULT", "the browser's report")
    check_eq((got.get("ok"), got.get("bad"), got.get("n"), got.get("end")), ("1000", "0", "1000", "done"),
             f"the browser's exchange ({m.group(1)})")
    ms = msgs(d, "browser")
    check_eq(len(ms), 1000, "messages the script read from the browser")
    check_eq((ms[500]["len"], ms[500]["text"]), ("65535", "false"), "message 500 (65535 bytes, binary)")
    check_eq((ms[501]["len"], ms[501]["text"]), (str(5 + 2 * 9997 + 4), "true"), "message 501 (text)")
    check_end(d, "browser", "socketclosed", 1000, "the browser's ws.close(1000)")
    no_lua_errors(d)


suite.main()
