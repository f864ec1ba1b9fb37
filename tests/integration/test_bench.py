#!/usr/bin/python3
"""cosockd-bench: a short run of every scenario against its own backends
(`serve`), straight or through cs-bare-proxy, each checked through its --json
document; TLS (`handshake`, `rr --tls`) against `openssl s_server` and a
TLS-terminating relay in Python, with a certificate made at test time;
`serve http` against bad input; `ws` against `serve ws`, against WebSocket
servers written here that ping, fragment, split and corrupt their echoes,
and against bench/ws_echo.lua in cosockd on both backends; `serve ws`
against bad handshakes and protocol errors; usage errors.

Servers are started on port 0 and the real port is read from their
"listening on ADDR:PORT" line (s_server's "ACCEPT ADDR:PORT"); nothing waits
by sleeping."""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading

from harness import (LOOPBACK, Server, Suite, TestFailure, _die_with_parent, check, check_eq,
                     connect, deadline_after, expect_closed, recv_exact, recv_until_eof, remaining)

# Our own arguments; the rest are the harness's.
_ap = argparse.ArgumentParser(add_help=False)
_ap.add_argument("--bench", required=True)
_ap.add_argument("--bare-proxy", required=True)
OPTS, _rest = _ap.parse_known_args()
sys.argv = sys.argv[:1] + _rest
BENCH = os.path.abspath(OPTS.bench)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BARE_PROXY = os.path.abspath(OPTS.bare_proxy)

suite = Suite("bench", overall_timeout=280)

RUN = ["--duration", "1.5", "--warmup", "0.3"]
RUN_TIMEOUT = 30


class Proc:
    """A server process (serve KIND, cs-bare-proxy, openssl s_server):
    started, its port read from its first stdout line starting with `ready`
    (s_server says something else first), killed when the case ends."""

    def __init__(self, argv, timeout=10, ready="listening on ", skip=0, cwd=None):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent(), cwd=cwd)
        suite.on_cleanup(self.kill)
        self.stderr = b""
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._err.start()
        self.port = self._read_port(deadline_after(timeout), ready, skip)
        # whatever it prints later must not fill the pipe and stop it
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _read_stderr(self):
        self.stderr = self.proc.stderr.read() or b""

    def _read_line(self, deadline):
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                if not sel.select(remaining(deadline, f"{self.argv[:2]}: listening line")):
                    continue
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    raise TestFailure(f"{' '.join(self.argv)} exited before listening "
                                      f"(status {self.proc.wait()})")
                line += ch
        return line.decode()

    def _read_port(self, deadline, ready, skip):
        """The port on the listening line; up to `skip` other lines may come first."""
        text = self._read_line(deadline)
        for _ in range(skip):
            if text.startswith(ready):
                break
            text = self._read_line(deadline)
        check(text.startswith(f"{ready}{LOOPBACK}:"), f"listening line: {text!r}")
        return int(text.rsplit(":", 1)[1])

    def stop(self, timeout=10):
        """SIGTERM; the exit status. A failed exit shows the server's stderr."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{' '.join(self.argv)} still running {timeout} s after SIGTERM")
        if rc != 0:
            self._err.join(5)
            print(self.stderr.decode(errors="replace")[-4000:], flush=True)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def serve(kind, *extra):
    return Proc([BENCH, "serve", kind, "--listen", f"{LOOPBACK}:0", *extra])


def bare_proxy(upstream_port):
    return Proc([BARE_PROXY, "--listen", f"{LOOPBACK}:0", "--upstream",
                 f"{LOOPBACK}:{upstream_port}"])


def bench(*args, status=0):
    """Run cosockd-bench ARGS --json F, which must exit with status; returns
    the parsed document."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        argv = [BENCH, *map(str, args), "--json", path]
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=RUN_TIMEOUT, preexec_fn=_die_with_parent())
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{' '.join(argv)}: still running after {RUN_TIMEOUT} s")
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        check(p.returncode == status, f"{' '.join(argv)}: exit {p.returncode}, want {status}\n{out}")
        with open(path) as f:
            doc = json.load(f)
    print("  " + out.splitlines()[1].strip() if len(out.splitlines()) > 1 else out, flush=True)
    return doc


NUMBER = (int, float)
LATENCY_KEYS = ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "max"]
ERROR_KINDS = ["connect", "reset", "eof", "timeout", "mismatch", "bad-response",
               "unsupported-response", "http-status", "tls", "other"]


def validate_schema(doc, mode, server_pid=False, payload=True):
    """The layout every scenario's --json shares, and a clean run's values:
    ops > 0, no errors, ordered percentiles; bytes > 0 unless not payload
    (handshakes alone carry none); the "tls" object exactly with --tls."""
    def need(obj, key, types, where):
        check(key in obj, f"{where}: no {key!r} in {sorted(obj)}")
        check(isinstance(obj[key], types) and not isinstance(obj[key], bool),
              f"{where}.{key}: {obj[key]!r} is not {types}")
        return obj[key]

    check_eq(need(doc, "mode", str, "top"), mode, "mode")
    need(doc, "command", str, "top")
    need(doc, "time", str, "top")
    env = need(doc, "env", dict, "top")
    for k in ("kernel", "cpus", "rlimit_nofile"):
        check(k in env, f"env: no {k!r}")
    params = need(doc, "params", dict, "top")
    need(params, "target", str, "params")
    res = need(doc, "results", dict, "top")
    if mode == "conns":
        held = need(res, "held", int, "results")
        check(held > 0, "no connection held")
        check_eq(need(res, "verified", int, "results"), held, "verified")
        check_eq(need(res, "dropped", int, "results"), 0, "dropped")
        return res
    for k in ("duration_s", "warmup_s", "threads", "pid"):
        need(params, k, NUMBER, "params")
    ops = need(res, "ops", int, "results")
    check(ops > 0, "ops is 0")
    check(need(res, "ops_per_s", NUMBER, "results") > 0, "ops_per_s is 0")
    check(need(res, "bytes_per_s", NUMBER, "results") > 0 or not payload, "bytes_per_s is 0")
    need(res, "load_cpu_s", NUMBER, "results")
    check_eq(need(res, "errors", int, "results"), 0, "errors")
    kinds = need(res, "errors_by_kind", dict, "results")
    check_eq(sorted(kinds), sorted(ERROR_KINDS), "error kinds")
    check(all(v == 0 for v in kinds.values()), f"errors_by_kind: {kinds}")
    if need(params, "tls", int, "params"):
        tls = need(res, "tls", dict, "results")
        check(need(tls, "handshakes", int, "tls") >= 0, "tls.handshakes")
        check(need(tls, "resumed", int, "tls") <= tls["handshakes"], f"tls: {tls}")
        check(need(tls, "negotiated", str, "tls").startswith("TLSv1."), f"tls: {tls}")
    else:
        check("tls" not in res, f"results.tls without --tls: {res.get('tls')}")
    if server_pid:
        need(res, "server_cpu_s", NUMBER, "results")
        need(res, "server_cpu_us_per_mib" if mode == "bulk" else "server_cpu_us_per_op",
             NUMBER, "results")
    if mode == "bulk":
        return res
    lat = need(res, "latency_us", dict, "results")
    for k in LATENCY_KEYS:
        need(lat, k, NUMBER, "latency_us")
    check_eq(lat["count"], ops, "latency_us.count")
    check(lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"],
          f"latency percentiles out of order: {lat}")
    return res


# ---------------------------------------------------------------------------
# Scenarios

@suite.case(timeout=60)
def echo_closed_pipelined_and_open_loop():
    s = serve("echo")
    target = f"{LOOPBACK}:{s.port}"
    validate_schema(bench("echo", "--target", target, "--conns", 8, "--size", 64,
                          "--pid", s.proc.pid, *RUN), "echo", server_pid=True)
    validate_schema(bench("echo", "--target", target, "--conns", 4, "--size", 20000,
                          "--pipeline", 4, "--threads", 2, *RUN), "echo")
    doc = bench("echo", "--target", target, "--conns", 4, "--size", 64, "--pipeline", 2,
                "--rate", 2000, *RUN)
    res = validate_schema(doc, "echo")
    check_eq(doc["params"]["loop"], "open", "params.loop")
    # Open loop at 2000/s for 1.5 s: the schedule, give or take a slot.
    check(abs(res["ops"] - 3000) <= 60, f"open loop at 2000/s made {res['ops']} ops in 1.5 s")
    check_eq(s.stop(), 0, "serve echo exit status after SIGTERM")


@suite.case(timeout=60)
def rr_direct_and_through_bare_proxy():
    s = serve("http", "--body", 300)
    doc = bench("rr", "--target", f"{LOOPBACK}:{s.port}", "--conns", 8, *RUN)
    res = validate_schema(doc, "rr")
    check_eq(round(res["bytes_per_s"] * 1.5 / res["ops"]), 300, "body bytes per response")
    p = bare_proxy(s.port)
    validate_schema(bench("rr", "--target", f"{LOOPBACK}:{p.port}", "--conns", 8,
                          "--path", "/x", "--pid", p.proc.pid, *RUN), "rr", server_pid=True)
    validate_schema(bench("rr", "--target", f"{LOOPBACK}:{p.port}", "--conns", 4,
                          "--rate", 1000, *RUN), "rr")


@suite.case(timeout=60)
def bulk_up_and_down_through_bare_proxy():
    sink, source = serve("sink"), serve("source", "--chunk", 10000)
    up, down = bare_proxy(sink.port), bare_proxy(source.port)
    validate_schema(bench("bulk", "--target", f"{LOOPBACK}:{up.port}", "--streams", 2,
                          "--direction", "up", "--pid", up.proc.pid, *RUN),
                    "bulk", server_pid=True)
    doc = bench("bulk", "--target", f"{LOOPBACK}:{down.port}", "--streams", 2,
                "--direction", "down", "--verify", "--chunk", 4096, *RUN)
    validate_schema(doc, "bulk")
    check_eq(doc["params"]["verify"], 1, "params.verify")


@suite.case(timeout=60)
def conns_hold_and_verify():
    s = serve("echo", "--threads", 2)
    doc = bench("conns", "--target", f"{LOOPBACK}:{s.port}", "--count", 200, "--hold", 0.3,
                "--pid", s.proc.pid)
    validate_schema(doc, "conns")


@suite.case(timeout=60)
def bare_proxy_passes_half_close_and_holds_back_a_slow_reader():
    s = serve("echo")
    p = bare_proxy(s.port)
    c = connect(p.port)
    data = bytes(range(256)) * 4096  # 1 MiB: more than the proxy's buffers
    c.sendall(data[:1 << 16])
    got = recv_exact(c, 1 << 16, deadline_after(10), "first echo")
    c.sendall(data[1 << 16:])
    c.shutdown(socket.SHUT_WR)
    got += recv_exact(c, len(data) - len(got), deadline_after(20), "echo after FIN")
    check(got == data, "echo through cs-bare-proxy differs")
    expect_closed(c, deadline_after(10), "after the echoed FIN")


# ---------------------------------------------------------------------------
# TLS

def make_cert(tmp, cn):
    """A self-signed ECDSA P-256 certificate for CN=cn, made now with openssl
    (installed by scripts/setup.sh): (cert, key) paths in tmp."""
    check(shutil.which("openssl"), "openssl not found (scripts/setup.sh installs it)")
    cert, key = os.path.join(tmp, cn + ".pem"), os.path.join(tmp, cn + ".key")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=" + cn], capture_output=True, timeout=30)
    check(p.returncode == 0, f"openssl req: {p.stderr.decode(errors='replace')}")
    return cert, key


def s_server(cert, key, *mode, cwd=None):
    """openssl s_server on port 0 (one connection at a time); mode is -www
    (a status page for any request) or -HTTP (files from cwd, as is)."""
    return Proc(["openssl", "s_server", "-accept", f"{LOOPBACK}:0", "-cert", cert, "-key", key,
                 *mode], ready="ACCEPT ", skip=3, cwd=cwd)


class TLSRelay:
    """A TLS-terminating relay to 127.0.0.1:upstream (Python's ssl and
    asyncio, in a thread of its own): the keep-alive HTTPS server that
    `rr --tls` with several connections needs and s_server is not."""

    def __init__(self, cert, key, upstream):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # a client gone mid-handshake
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(self._conn, LOOPBACK, 0, ssl=ctx))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        check(started.wait(10), "TLS relay did not start")
        suite.on_cleanup(lambda: self.loop.call_soon_threadsafe(self.loop.stop))

    async def _conn(self, reader, writer):
        try:
            ur, uw = await asyncio.open_connection(LOOPBACK, self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except OSError:  # ssl.SSLError too
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))


@suite.case(timeout=90)
def handshake_full_resumed_and_verified_against_s_server():
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(tmp, "localhost")
        other, _ = make_cert(tmp, "other")
        s = s_server(cert, key, "-www")
        target = f"{LOOPBACK}:{s.port}"
        res = validate_schema(bench("handshake", "--target", target, "--conns", 4,
                                    "--pid", s.proc.pid, *RUN),
                              "handshake", server_pid=True, payload=False)
        check_eq(res["tls"]["handshakes"], res["ops"], "handshakes vs ops")
        check_eq(res["tls"]["resumed"], 0, "handshakes resumed without --resume")

        doc = bench("handshake", "--target", target, "--conns", 4, "--resume", *RUN)
        res = validate_schema(doc, "handshake", payload=False)
        check_eq(doc["params"]["resume"], 1, "params.resume")
        # every loop's first handshake is a full one, and may fall in the window
        check(res["tls"]["resumed"] >= res["ops"] - 4 > 0,
              f"--resume: {res['tls']['resumed']} of {res['ops']} handshakes resumed")

        doc = bench("handshake", "--target", target, "--conns", 2, "--tls-ca", cert, *RUN)
        validate_schema(doc, "handshake", payload=False)
        check_eq(doc["params"]["tls_ca"], cert, "params.tls_ca")

        # With a CA that did not sign the server's certificate, every
        # handshake fails, and a loop ends at its first failure.
        doc = bench("handshake", "--target", target, "--conns", 2, "--tls-ca", other, *RUN,
                    status=1)
        res = doc["results"]
        check_eq((res["ops"], res["errors"], res["errors_by_kind"]["tls"]), (0, 2, 2),
                 "ops, errors, tls errors with the wrong CA")
        check("TLS handshake" in res["first_error"], f"first_error: {res['first_error']}")
        check(s.proc.poll() is None, f"s_server exited (status {s.proc.poll()})")


@suite.case(timeout=90)
def handshake_request_and_rr_reconnecting_over_tls():
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(tmp, "localhost")
        body = b"tls-bench"
        with open(os.path.join(tmp, "r.http"), "wb") as f:  # -HTTP sends it as is
            f.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body))
        s = s_server(cert, key, "-HTTP", cwd=tmp)
        target = f"{LOOPBACK}:{s.port}"
        doc = bench("handshake", "--target", target, "--conns", 2, "--path", "/r.http", *RUN)
        res = validate_schema(doc, "handshake")
        check_eq(doc["params"]["request"], 1, "params.request")
        check_eq(res["bytes"], res["ops"] * len(body), "body bytes")
        # One connection (s_server serves one at a time), closed after each
        # response: every request after the first needs a new handshake,
        # done inside the loop without blocking.
        doc = bench("rr", "--tls", "--target", target, "--conns", 1, "--path", "/r.http", *RUN)
        res = validate_schema(doc, "rr")
        check(abs(res["tls"]["handshakes"] - res["ops"]) <= 1,
              f"rr over TLS with Connection: close: {res['tls']['handshakes']} handshakes "
              f"for {res['ops']} requests")


@suite.case(timeout=60)
def rr_tls_keepalive_through_a_tls_relay():
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(tmp, "localhost")
        backend = serve("http", "--body", 300)
        relay = TLSRelay(cert, key, backend.port)
        doc = bench("rr", "--tls", "--target", f"{LOOPBACK}:{relay.port}", "--conns", 4, *RUN)
        res = validate_schema(doc, "rr")
        check_eq(round(res["bytes_per_s"] * 1.5 / res["ops"]), 300, "body bytes per response")
        check_eq(res["tls"]["handshakes"], 0, "handshakes in the window (all were before it)")


# ---------------------------------------------------------------------------
# WebSocket: `ws`, `serve ws`

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_TEXT, WS_BINARY, WS_CONT, WS_CLOSE, WS_PING, WS_PONG = 1, 2, 0, 8, 9, 10


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def pattern(n):
    """cosockd-bench's message bytes (util.c cs__fill_pattern)."""
    return bytes(33 + (i % 251) % 94 for i in range(n))


def ws_frame(opcode, payload, fin=True, mask=False, rsv=0):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_head(c, deadline, what="an HTTP head"):
    """(head lines, bytes after the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        c.settimeout(remaining(deadline, what))
        chunk = c.recv(65536)
        check(chunk, f"EOF before {what}: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), rest


def header(lines, name):
    vals = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith(name.lower() + ":")]
    return vals[0] if len(vals) == 1 else None


class WsEnd:
    """One end of a WebSocket on a blocking socket: whole frames in and out.
    split=True writes a frame in several pieces (its head cut in two)."""

    def __init__(self, sock, deadline, buf=b""):
        self.s, self.deadline, self.buf = sock, deadline, buf

    def _need(self, n):
        while len(self.buf) < n:
            self.s.settimeout(remaining(self.deadline, "a WebSocket frame"))
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(f"EOF with {len(self.buf)} of {n} bytes of a frame")
            self.buf += chunk

    def read(self):
        """(fin, opcode, payload, mask): the payload unmasked, mask None
        for an unmasked frame."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n >= 126:
            ext = 2 if n == 126 else 8
            self._need(2 + ext)
            n, pos = int.from_bytes(self.buf[2:2 + ext], "big"), 2 + ext
        mask = None
        if b1 & 0x80:
            self._need(pos + 4)
            mask, pos = self.buf[pos:pos + 4], pos + 4
        self._need(pos + n)
        payload, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b0 >> 7, b0 & 0x0F, payload, mask

    def send(self, opcode, payload, fin=True, mask=False, split=False, rsv=0):
        f = ws_frame(opcode, payload, fin, mask, rsv)
        if not split:
            self.s.sendall(f)
            return
        for piece in (f[:1], f[1:3], f[3:len(f) // 2], f[len(f) // 2:]):
            if piece:
                self.s.sendall(piece)


class WsPeer:
    """A WebSocket echo server written here, to see the client's side of the
    protocol. mode: "tricky" pings before every echo and sends the echo as a
    fragmented message in split writes; "flip", "short" and "masked" echo a
    changed byte, one byte short, or masked; "accept" answers the upgrade
    with a wrong Sec-WebSocket-Accept, "status" with a 403. It records what
    each connection sent: masks, whether payloads were the pattern, pongs,
    and its Close code."""

    def __init__(self, mode):
        self.mode = mode
        self.conns = []  # one dict per connection
        self.server = Server(suite, self._serve)
        self.port = self.server.port

    def _serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = {"masks": [], "unmasked": 0, "bad_payload": 0, "pings": [], "pongs": [], "close": None}
        self.conns.append(st)
        d = deadline_after(60)
        lines, rest = read_head(c, d, "the upgrade request")
        key = header(lines, "Sec-WebSocket-Key")
        check(lines[0].startswith("GET /ws?x=1 HTTP/1.1") and key, f"upgrade request: {lines}")
        if self.mode == "status":
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        accept = ws_accept(key + ("x" if self.mode == "accept" else ""))
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        w = WsEnd(c, d, rest)
        n = 0
        while True:
            try:
                fin, op, payload, mask = w.read()
            except (EOFError, ConnectionResetError):
                return
            if mask is None:
                st["unmasked"] += 1
            else:
                st["masks"].append(mask)
            if op in (WS_TEXT, WS_BINARY):
                n += 1
                if payload != pattern(len(payload)):
                    st["bad_payload"] += 1
                self._echo(w, st, n, op, payload)
            elif op == WS_PONG:
                st["pongs"].append(payload)
            elif op == WS_CLOSE:
                st["close"] = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                w.send(WS_CLOSE, payload[:2])
                return

    def _echo(self, w, st, n, op, payload):
        if self.mode == "tricky":
            ping = b"ping %d" % n
            st["pings"].append(ping)
            w.send(WS_PING, ping, split=True)
            third = len(payload) // 3
            w.send(op, payload[:third], fin=False, split=True)
            w.send(WS_CONT, payload[third:2 * third], fin=False)
            w.send(WS_CONT, payload[2 * third:], split=True)
        elif self.mode == "flip":
            p = bytearray(payload)
            p[len(p) // 2] ^= 1
            w.send(op, bytes(p))
        elif self.mode == "short":
            w.send(op, payload[:-1])
        elif self.mode == "masked":
            w.send(op, payload, mask=True)
        else:
            w.send(op, payload)


@suite.case(timeout=60)
def ws_echo_against_serve_ws():
    s = serve("ws")
    url = f"ws://{LOOPBACK}:{s.port}/echo"
    doc = bench("ws", "--url", url, "--conns", 8, "--pid", s.proc.pid, *RUN)
    res = validate_schema(doc, "ws", server_pid=True)
    check_eq({k: doc["params"][k] for k in ("target", "size", "opcode", "pipeline", "verify")},
             {"target": url, "size": 64, "opcode": "binary", "pipeline": 1, "verify": "bytes"},
             "params")
    check_eq(round(res["bytes_per_s"] * 1.5 / res["ops"]), 64, "payload bytes per message")
    # 70,000 bytes: the 64-bit length form, frames over many reads, two threads
    doc = bench("ws", "--url", url, "--connections", 4, "--size", 70000, "--text",
                "--pipeline", 3, "--threads", 2, *RUN)
    validate_schema(doc, "ws")
    check_eq(doc["params"]["opcode"], "text", "params.opcode")
    # Open loop at 2000/s for 1.5 s: the schedule, give or take a slot; a
    # pipeline of 4 lets a connection catch up after the machine stalls it.
    doc = bench("ws", "--url", url, "--conns", 4, "--size", 300, "--rate", 2000,
                "--pipeline", 4, *RUN)
    res = validate_schema(doc, "ws")
    check_eq(doc["params"]["loop"], "open", "params.loop")
    check(abs(res["ops"] - 3000) <= 60, f"open loop at 2000/s made {res['ops']} messages in 1.5 s")
    check_eq(s.stop(), 0, "serve ws exit status after SIGTERM")


@suite.case(timeout=60)
def ws_answers_pings_takes_fragments_masks_and_closes():
    peer = WsPeer("tricky")
    doc = bench("ws", "--url", f"ws://{LOOPBACK}:{peer.port}/ws?x=1", "--conns", 4,
                "--size", 3000, *RUN)
    res = validate_schema(doc, "ws")
    check_eq(peer.server.errors, [], "errors in the test server")
    check_eq(len(peer.conns), 4, "connections")
    for i, st in enumerate(peer.conns):
        what = f"connection {i}"
        check_eq(st["unmasked"], 0, f"{what}: unmasked frames")
        check_eq(st["bad_payload"], 0, f"{what}: messages that were not the pattern")
        masks = st["masks"]
        check(len(masks) > 10 and len(set(masks)) >= len(masks) - 2,
              f"{what}: {len(set(masks))} distinct masks in {len(masks)} frames")
        # every ping answered, in order, but maybe the last (it may come after the Close)
        pings, pongs = st["pings"], st["pongs"]
        check(pongs == pings[:len(pongs)] and len(pongs) >= len(pings) - 1,
              f"{what}: {len(pings)} pings, pongs {pongs[:3]}... ({len(pongs)})")
        check_eq(st["close"], 1000, f"{what}: Close code")
    check(sum(len(st["pings"]) for st in peer.conns) >= res["ops"], "fewer echoes than messages")


@suite.case(timeout=60)
def ws_counts_bad_echoes_and_bad_upgrades_as_errors():
    cases = [("flip", "mismatch", "echo differs"), ("short", "mismatch", "shorter"),
             ("masked", "bad-response", "masked frame from a server"),
             ("accept", "bad-response", "wrong Sec-WebSocket-Accept"),
             ("status", "http-status", "status 403")]
    for mode, kind, why in cases:
        peer = WsPeer(mode)
        doc = bench("ws", "--url", f"ws://{LOOPBACK}:{peer.port}/ws?x=1", "--conns", 2,
                    "--size", 100, "--duration", "0.5", "--warmup", "0", status=1)
        res = doc["results"]
        check_eq(res["errors_by_kind"][kind], 2, f"{mode}: {kind} errors")
        check_eq(res["errors"], 2, f"{mode}: errors")
        check(why in res.get("first_error", ""), f"{mode}: first_error {res.get('first_error')!r}")
        check_eq(res["ops"], 0, f"{mode}: messages counted")


def ws_upgrade(port, deadline, version="13"):
    """A connection to a WebSocket server, upgraded; (WsEnd, head lines)."""
    c = connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    c.sendall((f"GET /anything HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: {version}\r\n\r\n").encode())
    lines, rest = read_head(c, deadline, "the 101")
    check_eq(lines[0], "HTTP/1.1 101 Switching Protocols", "status line")
    check_eq(header(lines, "Sec-WebSocket-Accept"), ws_accept(key), "Sec-WebSocket-Accept")
    return WsEnd(c, deadline, rest), lines


def response_then_close(port, request, deadline, what):
    c = connect(port)
    c.sendall(request)
    data, _ = recv_until_eof(c, deadline, what)
    return data


@suite.case(timeout=60)
def serve_ws_echoes_frames_and_rejects_bad_input():
    s = serve("ws")
    d = deadline_after(30)
    w, _ = ws_upgrade(s.port, d)
    w.send(WS_PING, b"hi", mask=True)
    check_eq(w.read(), (1, WS_PONG, b"hi", None), "pong")
    big = pattern(70000)
    w.send(WS_BINARY, big, mask=True, split=True)
    check_eq(w.read(), (1, WS_BINARY, big, None), "70,000-byte echo")
    w.send(WS_TEXT, b"abc", fin=False, mask=True)
    w.send(WS_PING, b"", mask=True)
    w.send(WS_CONT, b"def", mask=True)
    check_eq([w.read() for _ in range(3)],
             [(0, WS_TEXT, b"abc", None), (1, WS_PONG, b"", None), (1, WS_CONT, b"def", None)],
             "a fragmented message with a ping between its fragments")
    w.send(WS_BINARY, b"", mask=True)
    check_eq(w.read(), (1, WS_BINARY, b"", None), "empty message")
    w.send(WS_CLOSE, b"\x03\xe8bye", mask=True)
    check_eq(w.read(), (1, WS_CLOSE, b"\x03\xe8", None), "the Close answer")
    expect_closed(w.s, d, "after the Close")

    bad = {
        "garbage": b"\x00\x01\x02 not http at all\r\n\r\n",
        "no upgrade": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST": (b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        "short key": (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n"),
    }
    for what, req in bad.items():
        data = response_then_close(s.port, req, d, what)
        check(data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), f"{what}: {data[:100]!r}")
    data = response_then_close(s.port, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               b"Sec-WebSocket-Version: 8\r\n\r\n", d, "version 8")
    check(data.startswith(b"HTTP/1.1 426 ") and b"\r\nSec-WebSocket-Version: 13\r\n" in data,
          f"version 8: {data[:200]!r}")
    check_eq(response_then_close(s.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 5000, d, "huge head"),
             b"", "answer to a head over 4 KiB")

    close_1002 = ws_frame(WS_CLOSE, (1002).to_bytes(2, "big"))
    errors = {
        "unmasked": ws_frame(WS_BINARY, b"x"),
        "RSV1": ws_frame(WS_BINARY, b"x", mask=True, rsv=4),
        "reserved opcode": ws_frame(3, b"x", mask=True),
        "lone continuation": ws_frame(WS_CONT, b"x", mask=True),
        "long ping": ws_frame(WS_PING, b"p" * 126, mask=True),
        "fragmented ping": ws_frame(WS_PING, b"p", fin=False, mask=True),
    }
    for what, frame in errors.items():
        w, _ = ws_upgrade(s.port, d)
        w.s.sendall(frame)
        data, _ = recv_until_eof(w.s, d, what)
        check_eq(w.buf + data, close_1002, f"{what}: answer")

    w, _ = ws_upgrade(s.port, d)  # still serving
    w.send(WS_TEXT, b"still here", mask=True)
    check_eq(w.read(), (1, WS_TEXT, b"still here", None), "echo after the bad input")
    check_eq(s.stop(), 0, "serve ws exit status after SIGTERM")


@suite.case(timeout=120)
def ws_against_cosockd_ws_echo_lua():
    script = os.path.join(ROOT, "bench", "ws_echo.lua")
    for backend in ("uring", "epoll"):
        dmn = suite.daemon("--backend=" + backend, script, 0, backend=False)
        port = dmn.wait_listening()
        url = f"ws://{LOOPBACK}:{port}/echo"
        validate_schema(bench("ws", "--url", url, "--conns", 8, "--pid", dmn.pid, *RUN), "ws",
                        server_pid=True)
        # 16 KiB text: the reassembly of read's fragment form in ws_echo.lua
        validate_schema(bench("ws", "--url", url, "--conns", 4, "--size", 16384, "--text",
                              "--pipeline", 2, *RUN), "ws")
        check_eq(dmn.errors(), [], f"{backend}: error records")
        dmn.signal(signal.SIGTERM)
        check_eq(dmn.wait_exit(15), 0, f"{backend}: exit status after SIGTERM")


# ---------------------------------------------------------------------------
# serve http against bad input

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Responses:
    """Reads responses off one connection; pipelined ones may come in one
    recv, so what is read past a response is kept for the next."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _more(self, deadline, what):
        self.sock.settimeout(remaining(deadline, what))
        chunk = self.sock.recv(65536)
        check(chunk, f"EOF in {what}: {self.buf[:200]!r}")
        self.buf += chunk

    def next(self, deadline):
        """One response's body, after checking its head."""
        while b"\r\n\r\n" not in self.buf:
            self._more(deadline, "a response head")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        check_eq(lines[0], "HTTP/1.1 200 OK", "status line")
        lengths = [l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")]
        check(len(lengths) == 1, f"Content-Length in {lines}")
        n = int(lengths[0])
        while len(self.buf) < n:
            self._more(deadline, "a response body")
        body, self.buf = self.buf[:n], self.buf[n:]
        return body


def read_response(c, deadline):
    """The only response expected on c now."""
    r = Responses(c)
    body = r.next(deadline)
    check_eq(r.buf, b"", "bytes after the response")
    return body


@suite.case(timeout=60)
def serve_http_pipelining_bodies_and_close():
    s = serve("http", "--body", 5)
    c = connect(s.port)
    post = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
    c.sendall(GET + post + GET)
    d = deadline_after(10)
    r = Responses(c)
    for _ in range(3):
        check_eq(r.next(d), b"!\"#$%", "body (the pattern)")
    check_eq(r.buf, b"", "bytes after three responses")
    c.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    read_response(c, d)
    expect_closed(c, d, "after Connection: close")


@suite.case(timeout=60)
def serve_http_survives_garbage_and_an_oversized_head():
    s = serve("http")
    good = connect(s.port)
    good.sendall(GET)
    d = deadline_after(20)
    read_response(good, d)

    garbage = connect(s.port)
    garbage.sendall(b"\x00\x01\x02 not http at all\r\n\r\n")
    expect_closed(garbage, d, "after garbage")

    huge = connect(s.port)
    huge.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    expect_closed(huge, d, "after an oversized head")

    badlen = connect(s.port)
    badlen.sendall(b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
    expect_closed(badlen, d, "after a bad Content-Length")

    # The first connection and new ones are still served.
    good.sendall(GET)
    read_response(good, d)
    fresh = connect(s.port)
    fresh.sendall(GET)
    read_response(fresh, d)
    check_eq(s.stop(), 0, "serve http exit status after SIGTERM")


@suite.case(timeout=30)
def usage_errors_are_one_line_and_exit_2():
    cases = [
        ["echo", "--conns", "x"],
        ["echo", "--target", f"{LOOPBACK}:1", "--size", "8"],
        ["rr", "--no-such-option"],
        ["bulk", "--target", f"{LOOPBACK}:1", "--streams", "1", "--direction", "sideways"],
        ["serve", "nope"],
        ["serve", "sink", "--listen", f"{LOOPBACK}:0", "--body", "3"],
        ["handshake", "--conns", "4"],
        ["handshake", "--target", f"{LOOPBACK}:1", "--path", "no-slash"],
        ["handshake", "--target", f"{LOOPBACK}:1", "--rate", "10"],
        ["rr", "--target", f"{LOOPBACK}:1", "--conns", "1", "--tls-ca", "/nonexistent/ca.pem"],
        ["rr", "--target", f"{LOOPBACK}:1", "--conns", "1", "--tls-ca", os.path.abspath(__file__)],
        ["echo", "--target", f"{LOOPBACK}:1", "--conns", "1", "--size", "8", "--tls"],
        ["ws", "--conns", "1"],
        ["ws", "--url", f"http://{LOOPBACK}:1/", "--conns", "1"],
        ["ws", "--url", "ws://localhost:1/", "--conns", "1"],
        ["ws", "--target", f"{LOOPBACK}:1", "--conns", "1"],
        ["ws", "--url", f"ws://{LOOPBACK}:1/", "--conns", "1", "--tls-ca", "/nonexistent/ca.pem"],
        ["serve", "ws", "--listen", f"{LOOPBACK}:0", "--chunk", "3"],
    ]
    for args in cases:
        p = subprocess.run([BENCH, *args], capture_output=True, timeout=10)
        check_eq(p.returncode, 2, f"exit status of {args}")
        lines = p.stderr.decode().strip().splitlines()
        check_eq(len(lines), 1, f"stderr lines of {args}: {lines}")


suite.main()
