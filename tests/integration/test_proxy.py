#!/usr/bin/python3
"""`cosockd proxy` in front of Python backends: bulk transfer both ways with
equal SHA-256, flow control towards a slow reader (bounded daemon RSS), and
prompt closing when the upstream cannot be reached."""

import hashlib
import socket
import threading
import time

from harness import (LISTEN_RE, LOOPBACK, PatternSource, Server, Suite, TestFailure, check, check_eq,
                     connect, deadline_after, expect_closed, recv_exact, remaining,
                     free_port, stop_and_check_exit, unused_port)

suite = Suite("proxy", overall_timeout=540)

BULK = 256 << 20
CHUNK = 256 << 10
RSS_SLACK_KIB = 64 << 10


def start_proxy(upstream, *extra):
    """`cosockd proxy` with its default workers (one per CPU), all on one
    port; returns once every worker listens."""
    port = free_port()
    d = suite.daemon("proxy", "--listen", f"{LOOPBACK}:{port}", "--upstream", upstream, *extra)
    m = d.wait_log(r"master \(pid \d+\): starting (\d+) workers")
    d.wait_log(LISTEN_RE, count=int(m.group(1)))
    return d, port


def produce(total, seed):
    """Yields total bytes in CHUNK pieces."""
    src = PatternSource(seed)
    left = total
    while left:
        n = min(CHUNK, left)
        yield src.chunk(n)
        left -= n


def expected_digest(total, seed):
    h = hashlib.sha256()
    for piece in produce(total, seed):
        h.update(piece)
    return h.hexdigest()


@suite.case(timeout=200)
def upload_256mib_to_backend():
    result = {}

    def backend(c):
        c.settimeout(120)
        n = int.from_bytes(recv_exact(c, 8, deadline_after(30), "backend header"), "big")
        h, got = hashlib.sha256(), 0
        while got < n:
            chunk = c.recv(min(1 << 20, n - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        result["got"] = got
        c.sendall(h.hexdigest().encode())

    srv = Server(suite, backend)
    d, port = start_proxy(f"{LOOPBACK}:{srv.port}")
    deadline = deadline_after(150)
    want = hashlib.sha256()
    t0 = time.monotonic()
    with connect(port) as s:
        s.sendall(BULK.to_bytes(8, "big"))
        for piece in produce(BULK, 11):
            s.settimeout(remaining(deadline, "upload"))
            s.sendall(piece)
            want.update(piece)
        digest = recv_exact(s, 64, deadline, "digest from backend").decode()
    print(f"  256 MiB upload in {time.monotonic() - t0:.1f} s", flush=True)
    check(not srv.errors, f"backend: {srv.errors}")
    check_eq(result.get("got"), BULK, "bytes the backend received")
    check_eq(digest, want.hexdigest(), "SHA-256 at the backend")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


@suite.case(timeout=240)
def download_256mib_to_slow_reader():
    def backend(c):
        c.settimeout(150)
        for piece in produce(BULK, 12):
            c.sendall(piece)

    srv = Server(suite, backend)
    d, port = start_proxy(f"{LOOPBACK}:{srv.port}")
    base_rss = d.rss_kib()
    peak = [base_rss]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            try:
                peak[0] = max(peak[0], d.rss_kib())
            except (OSError, TestFailure):
                return
            sampling.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    suite.on_cleanup(sampling.set)
    deadline = deadline_after(200)
    h, got, t0 = hashlib.sha256(), 0, time.monotonic()
    with connect(port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        # slow at first: small reads with pauses for ~3 s, so the backend
        # gets far ahead unless the proxy holds it back
        slow_until = time.monotonic() + 3
        while got < BULK:
            s.settimeout(remaining(deadline, f"download ({got} of {BULK} bytes)"))
            slow = time.monotonic() < slow_until
            chunk = s.recv(1024 if slow else 1 << 20)
            if not chunk:
                raise TestFailure(f"EOF after {got} of {BULK} bytes")
            h.update(chunk)
            got += len(chunk)
            if slow:
                time.sleep(0.01)
    sampling.set()
    sampler.join(2)
    print(f"  256 MiB download in {time.monotonic() - t0:.1f} s; daemon RSS "
          f"{base_rss} KiB at start, peak {peak[0]} KiB", flush=True)
    check_eq(h.hexdigest(), expected_digest(BULK, 12), "SHA-256 at the client")
    check(peak[0] - base_rss < RSS_SLACK_KIB,
          f"daemon RSS grew by {(peak[0] - base_rss) // 1024} MiB while the client read slowly "
          "(the proxy buffers instead of applying back-pressure)")
    check(not srv.errors, f"backend: {srv.errors}")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def many_small_sessions():
    """Short request/response sessions, several at once, each a fresh pair of
    connections."""
    def backend(c):
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d.upper())

    srv = Server(suite, backend)
    d, port = start_proxy(f"{LOOPBACK}:{srv.port}")
    deadline = deadline_after(20)
    socks = [connect(port) for _ in range(50)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"hello %d" % i)
        for i, s in enumerate(socks):
            check_eq(recv_exact(s, len(b"HELLO %d" % i), deadline, f"session {i}"),
                     b"HELLO %d" % i, f"reply on session {i}")
    finally:
        for s in socks:
            s.close()
    stop_and_check_exit(d)


def expect_prompt_close(upstream, what, limit=5.0):
    d, port = start_proxy(upstream, "--connect-timeout", "1000")
    t0 = time.monotonic()
    with connect(port) as s:
        try:
            s.sendall(b"anyone there?")
        except OSError:
            pass
        expect_closed(s, deadline_after(limit), f"client connection ({what})")
    took = time.monotonic() - t0
    check(took < limit, f"{what}: closed only after {took:.1f} s")
    d.wait_log(r"proxy: upstream .*", timeout=5)
    check(d.alive(), "daemon died")
    # and it still serves the next one the same way
    with connect(port) as s:
        expect_closed(s, deadline_after(limit), f"second client ({what})")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def upstream_refused_closes_client():
    held, port = unused_port()
    suite.on_cleanup(held.close)
    expect_prompt_close(f"{LOOPBACK}:{port}", "connection refused")


@suite.case(timeout=40)
def upstream_unresolvable_closes_client():
    expect_prompt_close("nonexistent.invalid:80", "unresolvable host", limit=15.0)


if __name__ == "__main__":
    suite.main()
