#!/usr/bin/python3
"""cosockd-bench: a short run of every scenario against its own backends
(`serve`), straight or through cs-bare-proxy, each checked through its --json
document; TLS (`handshake`, `rr --tls`) against `openssl s_server` and a
TLS-terminating relay in Python, with a certificate made at test time;
`serve http` against bad input; usage errors.

Servers are started on port 0 and the real port is read from their
"listening on ADDR:PORT" line (s_server's "ACCEPT ADDR:PORT"); nothing waits
by sleeping."""

import argparse
import asyncio
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

from harness import (LOOPBACK, Suite, TestFailure, _die_with_parent, check, check_eq, connect,
                     deadline_after, expect_closed, recv_exact, remaining)

# Our own arguments; the rest are the harness's.
_ap = argparse.ArgumentParser(add_help=False)
_ap.add_argument("--bench", required=True)
_ap.add_argument("--bare-proxy", required=True)
OPTS, _rest = _ap.parse_known_args()
sys.argv = sys.argv[:1] + _rest
BENCH = os.path.abspath(OPTS.bench)
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
    ]
    for args in cases:
        p = subprocess.run([BENCH, *args], capture_output=True, timeout=10)
        check_eq(p.returncode, 2, f"exit status of {args}")
        lines = p.stderr.decode().strip().splitlines()
        check_eq(len(lines), 1, f"stderr lines of {args}: {lines}")


suite.main()
