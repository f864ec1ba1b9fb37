#!/usr/bin/python3
"""SIGTERM / SIGINT: every waiting cosocket is resumed with
nil,"sysshutdown", queued writes drain, the daemon exits 0 within the grace
period (5 s)."""

import selectors
import signal
import time

from harness import (LOOPBACK, Suite, TestFailure, check, check_eq, connect, deadline_after,
                     exchange, remaining)

suite = Suite("shutdown", overall_timeout=300)

GRACE = 5.0
MARGIN = 3.0


def open_and_echo(port, n, deadline):
    socks = []
    suite.on_cleanup(lambda: [s.close() for s in socks])
    for i in range(n):
        remaining(deadline, f"opening connections ({i} of {n})")
        socks.append(connect(port))
    for i, s in enumerate(socks):
        msg = b"hello from %d" % i
        check_eq(exchange(s, msg, deadline, f"conn {i}"), msg, f"echo on connection {i}")
    return socks


def read_all_until_eof(socks, deadline):
    """Reads every socket concurrently until EOF; returns {index: (bytes, how)}."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        bufs[i] = bytearray()
        sel.register(s, selectors.EVENT_READ, i)
    result = {}
    while len(result) < len(socks):
        left = remaining(deadline, f"waiting for EOF ({len(result)} of {len(socks)} closed)")
        for key, _ in sel.select(min(left, 1.0)):
            i = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk, how = b"", "reset"
            else:
                how = "eof"
            if chunk:
                bufs[i] += chunk
            else:
                result[i] = (bytes(bufs[i]), how)
                sel.unregister(key.fileobj)
    sel.close()
    return result


def stop_with(sig, d, socks, want=b"sysshutdown\n"):
    t0 = time.monotonic()
    d.signal(sig)
    got = read_all_until_eof(socks, deadline_after(GRACE + MARGIN))
    bad = {i: v for i, v in got.items() if v[0] != want}
    check(not bad, f"{len(bad)} of {len(socks)} connections got something else before EOF, e.g. "
          + ", ".join(f"conn {i}: {v[0]!r} then {v[1]}" for i, v in list(bad.items())[:5]))
    rc = d.wait_exit(max(0.1, GRACE + MARGIN - (time.monotonic() - t0)))
    took = time.monotonic() - t0
    check_eq(rc, 0, "exit status")
    check(took <= GRACE + MARGIN, f"exit took {took:.1f} s")
    d.wait_log(r"shutting down", timeout=1)
    return took


@suite.case(timeout=120)
def sigterm_with_1000_connections():
    d = suite.script("shutdown_echo.lua", 0)
    socks = open_and_echo(d.wait_listening(), 1000, deadline_after(60))
    took = stop_with(signal.SIGTERM, d, socks)
    print(f"  1000 connections closed, daemon gone {took:.2f} s after SIGTERM", flush=True)
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")


@suite.case(timeout=60)
def sigint_with_50_connections():
    d = suite.script("shutdown_echo.lua", 0)
    socks = open_and_echo(d.wait_listening(), 50, deadline_after(30))
    stop_with(signal.SIGINT, d, socks)
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")


@suite.case(timeout=60)
def echo_app_closes_idle_connections():
    d = suite.daemon("echo", "--listen", f"{LOOPBACK}:0")
    socks = open_and_echo(d.wait_listening(), 100, deadline_after(30))
    stop_with(signal.SIGTERM, d, socks, want=b"")


@suite.case(timeout=60)
def queued_writes_drain_before_close():
    """Handlers that write 16 MiB on shutdown: all of it arrives, then the
    line, then EOF, while the clients read at their own pace."""
    d = suite.script("shutdown_echo.lua", 0)
    port = d.wait_listening()
    size = 16 << 20
    socks = open_and_echo(port, 4, deadline_after(10))
    for i, s in enumerate(socks):
        check_eq(exchange(s, b"BIG %d" % size, deadline_after(5)), b"BIG %d" % size, f"conn {i}")
    pattern = (b"0123456789" * (size // 10 + 1))[:size]
    stop_with(signal.SIGTERM, d, socks, want=pattern + b"sysshutdown\n")


@suite.case(timeout=60)
def stuck_peer_does_not_hold_shutdown():
    """A client that never reads keeps the daemon's queue full; the daemon
    still exits once the grace period is over."""
    d = suite.script("shutdown_echo.lua", 0)
    port = d.wait_listening()
    stuck = connect(port)
    suite.on_cleanup(stuck.close)
    stuck.setblocking(False)
    deadline = deadline_after(20)
    sent, idle_since = 0, None
    while True:  # write until nothing more goes in for a second
        remaining(deadline, "filling the stuck connection")
        try:
            sent += stuck.send(b"z" * 65536)
            idle_since = None
        except BlockingIOError:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                break
            time.sleep(0.05)  # polling for buffer space; there is no event for "stayed full"
        if sent > (1 << 30):
            raise TestFailure("1 GiB accepted without reading: no back-pressure")
    others = open_and_echo(port, 10, deadline_after(10))
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    got = read_all_until_eof(others, deadline_after(GRACE + MARGIN))
    bad = [v for v in got.values() if v[0] != b"sysshutdown\n"]
    check(not bad, f"bystanders got {bad[:3]}")
    rc = d.wait_exit(GRACE + MARGIN)
    took = time.monotonic() - t0
    check_eq(rc, 0, "exit status")
    check(took <= GRACE + MARGIN, f"exit took {took:.1f} s with a stuck peer")
    print(f"  {sent} bytes stuck; daemon gone {took:.2f} s after SIGTERM", flush=True)


if __name__ == "__main__":
    suite.main()
