#!/usr/bin/python3
"""Pool threads, blocking sockets and "r"-mode cosockets: the script's own
checks (tests/lua/thread_checks.lua), the seed's Examples 1, 3, 4, 6, 7 and 8
against real peers (curl, wrk, Python), and the promise that pool threads
sitting in blocking reads never hold up the cosockets."""

import re
import shutil
import socket
import struct
import subprocess
import threading
import time

from harness import (LOOPBACK, PatternSource, Server, Suite, TestFailure, check, check_eq,
                     check_lua_checks, connect, deadline_after, exchange, full_backlog_port,
                     recv_exact, remaining,
                     no_lua_errors, stop_and_check_exit, unused_port,
                     wait_seed12b_queue_full)

suite = Suite("threads", overall_timeout=500)

EXPECTED_CHECKS = """
thread.getsock_nil thread.in_coroutine thread.run_returns_pending thread.create_in_order
thread.survives_error thread.configure thread.configure_range
sleep.toplevel_raises sleep.pool_duration sleep.pool_no_values sleep.cosocket_duration
sleep.cosocket_no_values sleep.cosocket_loop_runs sleep.timer_raises
connect.blocking_refused connect.blocking_cannotresolve connect.blocking_timeout
connect.blocking_timeout_duration
blocking.connect blocking.not_cosocket blocking.write_true blocking.read_echo
blocking.write_bytearray blocking.write_big
blocking.closed_read blocking.read_timeout blocking.read_timeout_duration
blocking.timeout_keeps_open blocking.closed_by_other_thread blocking.closed_promptly
blocking.closed_by_timer blocking.peer_close blocking.second_dead_read_raises
blocking.read_on_dispatcher_raises
pool.read_cosocket_raises pool.write_s_socket pool.write_s_socket_arrives pool.write_limit
pool.started_cosocket_connects pool.started_cosocket_reads pool.after_starting_cosocket
rmode.write_one_value rmode.read rmode.write_big rmode.write_big_echoed pool.after_error
""".split()


@suite.case(timeout=90)
def lua_thread_checks():
    held, refused = unused_port()
    suite.on_cleanup(held.close)
    d = suite.script("thread_checks.lua", refused, full_backlog_port(suite))
    check_lua_checks(d, EXPECTED_CHECKS, timeout=60)
    # The deliberate job errors were reported with a traceback, and only they.
    errs = [m for _, m in d.errors()]
    check(any("Thread:" in e and "boom in job" in e and "stack traceback" in e for e in errs),
          f"the failing job's error was not reported: {errs}")
    unexpected = [e for e in errs if "boom in job" not in e and "failed on purpose" not in e]
    check(not unexpected, f"unexpected errors: {unexpected[:5]}")
    stop_and_check_exit(d)


# ---- seed examples ---------------------------------------------------------

TIME_VALUE = 2208988800 + 1700000000  # 2023-11-14 22:13:20 UTC, RFC 868 epoch


def time_server_handler(c):
    c.sendall(struct.pack(">I", TIME_VALUE))


def run_time_client(example):
    srv = Server(suite, time_server_handler)
    d = suite.script("seed_threads.lua", example, 0, srv.port)
    d.wait_log(r"^NTP Date and time:\t2023-11-14 22:13:20$", timeout=10)
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=30)
def example01_blocking_client_on_pool_thread():
    run_time_client("1")


def http_get(port, deadline):
    s = connect(port)
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            s.settimeout(remaining(deadline, "HTTP response"))
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


@suite.case(timeout=90)
def example03_http_server_on_pool_threads():
    d = suite.script("seed_threads.lua", "3", 0)
    port = d.wait_listening()
    url = f"http://{LOOPBACK}:{port}/"
    for i in range(20):
        r = subprocess.run(["curl", "-sS", "--max-time", "5", "-D", "-", url],
                           capture_output=True, timeout=10)
        check_eq(r.returncode, 0, f"curl {i} exit status ({r.stderr.decode(errors='replace')})")
        check(r.stdout.startswith(b"HTTP/1.0 200 OK\r\n"), f"curl {i}: {r.stdout[:80]!r}")
        check(r.stdout.endswith(b"\r\n\r\nHello World!"), f"curl {i}: {r.stdout[-80:]!r}")
    # 50 clients at once: more than the 8 pool threads, so jobs queue.
    results = []

    def client():
        try:
            results.append(http_get(port, deadline_after(20)))
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(repr(e).encode())
    ts = [threading.Thread(target=client) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    bad = [r for r in results if not r.endswith(b"Hello World!")]
    check(len(results) == 50 and not bad, f"{len(results)} answers, bad: {bad[:3]}")
    wrk = shutil.which("wrk")
    check(wrk is not None, "wrk is not installed (scripts/setup.sh installs it)")
    r = subprocess.run([wrk, "-t1", "-c8", "-d2s", "-H", "Connection: close", url],
                       capture_output=True, timeout=30, text=True)
    check_eq(r.returncode, 0, f"wrk exit status ({r.stderr})")
    m = re.search(r"(\d+) requests in", r.stdout)
    check(m and int(m.group(1)) >= 100, f"wrk made too few requests:\n{r.stdout}")
    check("Non-2xx" not in r.stdout, f"wrk saw errors:\n{r.stdout}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    print(f"  wrk -c8 -d2s (one connection per request): {rps.group(1) if rps else '?'} req/s",
          flush=True)
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=30)
def example04_r_mode_client_reads():
    msgs = [b"first", b"second", b"third"]

    def peer(c):
        for m in msgs:
            c.sendall(m)
            time.sleep(0.05)  # separate reads, so each arrives on its own
    srv = Server(suite, peer)
    d = suite.script("seed_threads.lua", "4", 0, srv.port)
    d.wait_log(r"sockCoroutine done$", timeout=10)
    got = b"".join(m.group(1).encode() for m in d.find_log(r"received\t(.*)$"))
    check_eq(got, b"".join(msgs), "data the r-mode cosocket read")
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=30)
def example06_connect_on_pool_thread_then_r_cosocket():
    run_time_client("6")


def run_echo_example(example, rounds, max_len, conns):
    d = suite.script("seed_threads.lua", example, 0)
    port = d.wait_listening()
    deadline = deadline_after(60)
    src = PatternSource(int(example))
    socks = [connect(port) for _ in range(conns)]
    try:
        for rnd in range(rounds):
            for i, s in enumerate(socks):
                msg = src.chunk(1 + (i * 7919 + rnd * 104729) % max_len)
                check(exchange(s, msg, deadline, f"conn {i} round {rnd}") == msg,
                      f"conn {i} round {rnd}: echo altered")
    finally:
        for s in socks:
            s.close()
    return d


@suite.case(timeout=90)
def example07_r_mode_echo_writes_without_freezing():
    d = run_echo_example("7", rounds=3, max_len=300000, conns=10)
    # A client that never reads fills the kernel's buffers; the echo
    # coroutine then waits in write. Other connections must go on.
    port = int(d.find_log(r"listening on [0-9.]+:(\d+)")[0].group(1))
    stuck = connect(port)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.setblocking(False)
    blob = b"x" * (1 << 20)
    sent, deadline = 0, deadline_after(10)
    while sent < 16 << 20 and time.monotonic() < deadline:
        try:
            sent += stuck.send(blob)
        except BlockingIOError:
            break
    check(sent >= 1 << 20, f"only {sent} bytes went out to the stuck connection's echo")
    live = connect(port)
    t0 = time.monotonic()
    got = exchange(live, b"still alive?", deadline_after(5), "echo beside a stuck writer")
    dt = time.monotonic() - t0
    check_eq(got, b"still alive?", "echo beside a stuck writer")
    check(dt < 2.0, f"echo took {dt:.2f} s while another cosocket waited in write")
    live.close()
    stuck.close()
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=60)
def example08_deferred_writes_on_pool_threads():
    # One message in flight per connection: concurrent pool jobs may write
    # in any order, as in the original product.
    d = run_echo_example("8", rounds=20, max_len=20000, conns=8)
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=150)
def example12b_page_on_pool_thread_gets_queue_full():
    d = suite.script("seed12c_server.lua", 0, "12b-thread")
    d.wait_listening()
    queued, limit = wait_seed12b_queue_full(d)
    d.wait_log(r"received first message; now stop$", timeout=10)
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=30)
def blocking_read_sees_a_peer_reset():
    def peer(c):
        c.sendall(b"x" * 1000)
        time.sleep(0.2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
    srv = Server(suite, peer)
    d = suite.script("thread_client.lua", srv.port)
    m = d.wait_log(r"ended\t(.*)$", timeout=10)
    got = sum(int(g.group(1)) for g in d.find_log(r": got (\d+)$"))
    check_eq(got, 1000, "bytes read before the reset")
    check_eq(m.group(1), "socketreadfailed", "values of the read that saw the reset")
    m = d.wait_log(r"state\t(\S+)\t(\S+)$", timeout=5)
    check_eq(m.group(2), "false", "the socket is closed after the reset")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


# ---- blocked pool threads do not hold up cosockets ---------------------------

ECHO_CONNS = 1000
BLOCKERS = 8
BLOCK_MS = 5000


def rtt_round(socks, deadline, tag):
    """One 32-byte message on every connection at once; per-connection
    round-trip times in seconds."""
    import selectors
    sel = selectors.DefaultSelector()
    start, rtts, pending = {}, [], {}
    for i, s in enumerate(socks):
        msg = b"%s-%05d-%s" % (tag, i, b"." * 16)
        s.setblocking(False)
        start[s] = time.monotonic()
        s.send(msg)
        pending[s] = (msg, bytearray())
        sel.register(s, selectors.EVENT_READ)
    try:
        while pending:
            events = sel.select(min(remaining(deadline, "echo round"), 1.0))
            for key, _ in events:
                s = key.fileobj
                msg, buf = pending[s]
                chunk = s.recv(4096)
                if not chunk:
                    raise TestFailure("echo connection closed")
                buf += chunk
                if len(buf) >= len(msg):
                    check(bytes(buf) == msg, "echo altered")
                    rtts.append(time.monotonic() - start[s])
                    sel.unregister(s)
                    del pending[s]
    finally:
        sel.close()
    return sorted(rtts)


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))]


@suite.case(timeout=120)
def blocked_pool_threads_do_not_delay_cosockets():
    silent = socket.socket()
    silent.bind((LOOPBACK, 0))
    silent.listen(64)  # accepts (in the kernel) and never answers
    suite.on_cleanup(silent.close)
    d = suite.script("thread_latency.lua", 0, silent.getsockname()[1])
    port = d.wait_listening()
    socks = [connect(port) for _ in range(ECHO_CONNS)]
    suite.on_cleanup(lambda: [s.close() for s in socks])
    deadline = deadline_after(60)
    base = []
    for r in range(3):
        base += rtt_round(socks, deadline, b"base%d" % r)
    base.sort()

    ctl = connect(port)
    suite.on_cleanup(ctl.close)
    ctl.sendall(b"START-BLOCKERS %d %d" % (BLOCKERS, BLOCK_MS))
    check_eq(recv_exact(ctl, 7, deadline, "control"), b"started", "control reply")
    t_start = time.monotonic()
    d.wait_log(r"blocker \d+ reading$", timeout=10, count=BLOCKERS)
    during = []
    for r in range(3):
        during += rtt_round(socks, deadline, b"busy%d" % r)
    during.sort()
    measured_by = time.monotonic() - t_start
    check(not d.find_log(r"blocker \d+ read done"),
          "a blocked read ended before the measurement did")
    check(measured_by < BLOCK_MS / 1000, f"measurement took {measured_by:.1f} s")
    print(f"  {ECHO_CONNS} conns: p50/p99/max before {pct(base, .5)*1e3:.1f}/"
          f"{pct(base, .99)*1e3:.1f}/{base[-1]*1e3:.1f} ms, with {BLOCKERS} pool threads in "
          f"blocking reads {pct(during, .5)*1e3:.1f}/{pct(during, .99)*1e3:.1f}/"
          f"{during[-1]*1e3:.1f} ms", flush=True)
    # A held VM lock would stall every echo for the full 5 s.
    check(during[-1] < 1.0, f"an echo took {during[-1]:.2f} s while pool threads blocked")
    check(pct(during, .99) < max(5 * pct(base, .99), 0.2),
          f"p99 {pct(during, .99)*1e3:.1f} ms with blocked threads vs {pct(base, .99)*1e3:.1f} ms")
    # The reads then time out after 5 s, as asked.
    for m in [d.wait_log(r"blocker \d+ read done (\S+) (\d+)$", timeout=15, count=i + 1)
              for i in range(BLOCKERS)]:
        check(m.group(1) == "timeout" and int(m.group(2)) >= BLOCK_MS - 50,
              f"blocked read ended with {m.group(0)!r}")
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=40)
def sigterm_ends_blocked_and_busy_jobs():
    silent = socket.socket()
    silent.bind((LOOPBACK, 0))
    silent.listen(8)
    suite.on_cleanup(silent.close)
    d = suite.script("thread_latency.lua", 0, silent.getsockname()[1])
    port = d.wait_listening()
    ctl = connect(port)
    suite.on_cleanup(ctl.close)
    ctl.sendall(b"START-BLOCKERS 4 0")  # no timeout: they would wait for ever
    check_eq(recv_exact(ctl, 7, deadline_after(5), "control"), b"started", "control reply")
    d.wait_log(r"blocker \d+ reading$", timeout=10, count=4)
    d.signal(15)
    d.wait_log(r"blocker \d+ read done sysshutdown \d+$", timeout=5, count=4)
    check_eq(d.wait_exit(10), 0, "exit status")


suite.main()
