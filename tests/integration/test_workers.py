#!/usr/bin/python3
"""`cosockd --workers N`: the master forks N workers that share one port,
replaces a worker that dies (with back-off when it keeps dying), passes
signals on, and exits when the workers have stopped."""

import os
import re
import signal
import socket
import threading
import time

from harness import (LOOPBACK, Suite, TestFailure, check, check_eq, connect, deadline_after,
                     recv_exact, remaining, stop_and_check_exit, free_port)

suite = Suite("workers", overall_timeout=400)

GREETING_RE = re.compile(rb"worker (\d+)/(\d+) pid (\d+)\n")


def start_workers(n, *script_args):
    """workers_echo.lua under a master with n workers, all listening."""
    port = free_port()
    d = suite.daemon(f"--workers={n}", suite.lua("workers_echo.lua"), port, *script_args)
    d.wait_log(r"listening on ", timeout=15, count=n)
    return d, port


def greet(port, deadline):
    """Connect; returns (socket, worker number, workers, pid)."""
    s = connect(port, timeout=remaining(deadline, "connect"))
    line = b""
    while not line.endswith(b"\n"):
        s.settimeout(remaining(deadline, "greeting"))
        chunk = s.recv(64)
        if not chunk:
            raise TestFailure(f"connection closed before the greeting (got {line!r})")
        line += chunk
    m = GREETING_RE.fullmatch(line)
    check(m is not None, f"unexpected greeting {line!r}")
    return s, int(m.group(1)), int(m.group(2)), int(m.group(3))


def round_trip(s, payload, deadline):
    s.settimeout(remaining(deadline, "echo"))
    s.sendall(payload)
    check_eq(recv_exact(s, len(payload), deadline), payload, "echo")


def alive(pid):
    """Running, not a zombie (a process may vanish while we look)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pids, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not [p for p in pids if alive(p)]:
            return
        time.sleep(0.05)
    raise TestFailure(f"processes {pids} still there {timeout:g} s later")


@suite.case(timeout=90)
def kill_one_worker_under_load():
    """SIGKILL one of 3 workers while every connection echoes: only its own
    connections end, the others keep flowing, and a new worker takes its
    place and accepts."""
    d, port = start_workers(3)
    deadline = deadline_after(60)
    conns = [greet(port, deadline) for _ in range(90)]
    workers = {w: pid for _, w, n, pid in conns}
    check_eq({n for _, _, n, _ in conns}, {3}, "cosockd.workers seen by the script")
    check(len(workers) >= 2, f"SO_REUSEPORT spread 90 connections over {len(workers)} worker(s)")
    victim = max(workers, key=lambda w: sum(1 for c in conns if c[1] == w))
    victim_pid = workers[victim]
    check(victim_pid in d.children(), f"worker pid {victim_pid} is not a child of the master")

    rounds = {id(c[0]): 0 for c in conns}
    failed = {}
    stop = threading.Event()
    killed_at_round = {}  # round trips per connection when the kill happened

    def load():
        payload = b"0123456789abcdef"
        while not stop.is_set() and time.monotonic() < deadline:
            for s, w, _, _ in conns:
                if id(s) in failed:
                    continue
                try:
                    round_trip(s, payload, time.monotonic() + 5)
                    rounds[id(s)] += 1
                except (OSError, TestFailure) as e:
                    failed[id(s)] = (w, e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    while min(rounds.values()) < 3:
        check(time.monotonic() < deadline and t.is_alive(), "load did not get going")
        time.sleep(0.01)
    mark = d.mark()
    os.kill(victim_pid, signal.SIGKILL)
    killed_at_round.update(rounds)
    d.wait_log(rf"worker {victim} \(pid {victim_pid}\) killed by signal 9 .*restarting it", since=mark)
    d.wait_log(rf"worker {victim} \(pid \d+\) is serving again", since=mark, timeout=15)
    # every survivor does 20 more round trips after the kill
    while True:
        behind = [c for c in conns if c[1] != victim and id(c[0]) not in failed
                  and rounds[id(c[0])] < killed_at_round[id(c[0])] + 20]
        if not behind:
            break
        check(time.monotonic() < deadline and t.is_alive(), f"{len(behind)} connections stalled")
        time.sleep(0.01)
    stop.set()
    t.join(10)
    lost = {w for w, _ in failed.values()}
    check(lost <= {victim}, f"connections of other workers failed: "
          f"{[(w, str(e)) for w, e in failed.values() if w != victim]}")
    on_victim = sum(1 for c in conns if c[1] == victim)
    check_eq(len(failed), on_victim, "failed connections (all and only the killed worker's)")

    # the replacement accepts: new connections reach it
    new_pid = None
    for _ in range(300):
        s, w, _, pid = greet(port, deadline)
        round_trip(s, b"x", deadline)
        s.close()
        if w == victim:
            new_pid = pid
            break
    check(new_pid is not None and new_pid != victim_pid,
          f"no connection reached the new worker {victim} in 300 tries")
    for s, *_ in conns:
        s.close()
    stop_and_check_exit(d)


@suite.case(timeout=60)
def restart_back_off():
    """A worker that keeps dying right after it starts is restarted with
    doubling delays; its siblings serve all along."""
    d, port = start_workers(2, "crash", "2")
    delays = []
    for _ in range(4):
        m = d.wait_log(r"worker 2 \(pid \d+\) exited with status 3 after \d+ ms; restarting it in (\d+) ms",
                       timeout=15, count=len(delays) + 1)
        delays.append(int(m.group(1)))
    check_eq(delays, [100, 200, 400, 800], "restart delays of worker 2")
    # While worker 2 waits for its next start (1.6 s, then 3.2 s), worker 1
    # serves every connection. Greets are only judged if worker 2 did not
    # start again meanwhile (a loaded machine can stretch them past it).
    deadline = deadline_after(20)
    for window in range(2):
        d.wait_log(r"worker 2 \(pid \d+\) exited with status 3 after \d+ ms; restarting it in",
                   timeout=15, count=len(delays) + 1 + window)
        mark = d.mark()
        served = []

        def worker2_came_back():
            try:  # the log can lag behind what the sockets already showed
                d.wait_log(r"worker 2 \(pid \d+\) is serving again", since=mark, timeout=3)
                return True
            except TestFailure:
                return False
        try:
            for _ in range(20):
                s, w, _, _ = greet(port, deadline)
                served.append(w)
                round_trip(s, b"ping", deadline)
                s.close()
        except (OSError, TestFailure):  # reset, or closed before its greeting
            if not worker2_came_back():
                raise
            continue
        if set(served) != {1} and worker2_came_back():
            continue
        check_eq(set(served), {1}, "workers serving while worker 2 is down")
        break
    else:
        check(False, "the greets never fit in a window with worker 2 down")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def startup_failure_ends_the_master():
    """A script that fails before any worker was ready: the master gives up
    with the worker's exit status instead of restarting forever."""
    d = suite.daemon("--workers=3", suite.lua("cli_error.lua"))
    rc = d.wait_exit(15)
    check_eq(rc, 1, "master exit status")
    d.wait_log(r"before it was ready; giving up", timeout=1)
    check(not d.find_log(r"restarting it"), "a worker was restarted")


@suite.case(timeout=30)
def finished_workers_end_the_master():
    """Workers whose script returns with nothing pending exit 0; then the
    master exits 0 without restarting them."""
    d = suite.daemon("--workers=2", suite.lua("cli_args.lua"), "a", "b")
    check_eq(d.wait_exit(15), 0, "master exit status")
    d.wait_log(r"\[worker 2\] .*args: a b", timeout=1)
    check(not d.find_log(r"restarting it"), "a worker was restarted")


@suite.case(timeout=30)
def cosockd_exit_ends_the_daemon():
    """cosockd.exit(code) in a worker stops every worker and the master
    exits with that code; nothing is restarted."""
    d = suite.daemon("--workers=2", suite.lua("cli_exit.lua"), "7", "timer")
    check_eq(d.wait_exit(15), 7, "master exit status")
    d.wait_log(r"called cosockd.exit\(7\): stopping the daemon", timeout=1)
    check(not d.find_log(r"restarting it"), "a worker was restarted")


@suite.case(timeout=40)
def sighup_reloads_the_workers():
    """SIGHUP starts a new generation on the same port; the old workers drain
    and exit; SIGTERM then stops the new ones with status 0."""
    d, port = start_workers(2)
    kids = d.children()
    check_eq(len(kids), 2, "worker processes")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"master: reload done: generation 2 serves with 2 workers", since=mark)
    wait_gone(kids, 10)
    d.wait_log(r"old worker \d \(pid \d+, generation 1\) drained and exited", since=mark, count=2)
    deadline = deadline_after(10)
    s, *_ = greet(port, deadline)
    round_trip(s, b"after hup", deadline)
    s.close()
    new = d.children()
    check_eq(len(new), 2, "worker processes after the reload")
    check(not set(new) & set(kids), f"old workers {kids} still among {new}")
    stop_and_check_exit(d)
    d.wait_log(r"master: every worker has stopped", timeout=1)
    wait_gone(new, 5)


@suite.case(timeout=40)
def workers_stop_when_the_master_dies():
    """PR_SET_PDEATHSIG: a master killed outright takes its workers along."""
    d, port = start_workers(2)
    kids = d.children()
    check_eq(len(kids), 2, "worker processes")
    d.signal(signal.SIGKILL)
    d.wait_exit(10)
    wait_gone(kids, 10)


@suite.case(timeout=30)
def proxy_defaults_to_one_worker_per_cpu():
    """`cosockd proxy` runs --workers auto: one worker per CPU it may use."""
    cpus = len(os.sched_getaffinity(0))
    d = suite.daemon("proxy", "--listen", f"{LOOPBACK}:{free_port()}", "--upstream", "127.0.0.1:9")
    d.wait_log(rf"master \(pid \d+\): starting {cpus} workers")
    d.wait_log(r"listening on ", count=cpus)
    stop_and_check_exit(d)
    pinned = suite.daemon("proxy", "--listen", f"{LOOPBACK}:{free_port()}", "--upstream", "127.0.0.1:9",
                          preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    pinned.wait_log(r"master \(pid \d+\): starting 1 workers")
    stop_and_check_exit(pinned)


if __name__ == "__main__":
    suite.main()
