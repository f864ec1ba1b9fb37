#!/usr/bin/python3
"""systemd integration (issue 7), without systemd as PID 1: a NOTIFY_SOCKET
the test binds receives READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and
STOPPING=1 from the master (or single process) only; the watchdog pings stop
when a loop stalls and the master kills a stalled worker; SIGHUP reloads a
configuration (scripts re-read from disk, a broken one keeps the old
generation) without refusing or resetting a connection under load;
systemd-socket-activate hands over a socket the daemon adopts by port or by
FileDescriptorName; --check validates without binding; SIGQUIT drains."""

import os
import random
import re
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import types

from harness import (LOOPBACK, Daemon, Suite, TestFailure, check, check_eq, connect,
                     deadline_after, recv_exact, remaining, free_port)

suite = Suite("systemd", overall_timeout=300)

# The daemon must see only what a case gives it.
for _var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
             "LISTEN_FDNAMES"):
    os.environ.pop(_var, None)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
STATUS_RE = r"^STATUS=(?=.*\b(?P<workers>\d+) workers?\b)(?=.*\b(?P<conns>\d+) connections?\b)"


# ---------------------------------------------------------------------------
# The notify socket

class Notify:
    """An AF_UNIX datagram socket in a temporary directory, for NOTIFY_SOCKET.
    A reader thread keeps every line of every datagram as (monotonic time,
    sender pid, "KEY=VALUE"); the sender pid comes from SCM_CREDENTIALS."""

    def __init__(self, tmpdir):
        self.path = os.path.join(tmpdir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        suite.on_cleanup(self.close)

    def _run(self):
        space = socket.CMSG_SPACE(12)
        while not self.stopping:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65536, space)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            lines = [ln for ln in data.decode("utf-8", "replace").split("\n") if ln]
            with self.cond:
                self.msgs.extend((t, pid, ln) for ln in lines)
                self.cond.notify_all()

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()

    def env(self, **extra):
        e = {"NOTIFY_SOCKET": self.path}
        e.update(extra)
        return e

    def mark(self):
        with self.cond:
            return len(self.msgs)

    def all(self, regex=None, since=0):
        """[(time, pid, line)] after since, the lines matching regex."""
        rx = re.compile(regex) if regex else None
        with self.cond:
            msgs = self.msgs[since:]
        return [m for m in msgs if rx is None or rx.search(m[2])]

    def wait(self, regex, timeout=10.0, since=0, d=None):
        """Wait for a line after index `since` matching regex; returns
        (index, time, pid, match). With a daemon d, fails 0.3 s after it
        exited (a last datagram may still be queued), saying so."""
        rx = re.compile(regex)
        end = time.monotonic() + timeout
        pos = since
        with self.cond:
            while True:
                while pos < len(self.msgs):
                    t, pid, line = self.msgs[pos]
                    pos += 1
                    mt = rx.search(line)
                    if mt:
                        return pos - 1, t, pid, mt
                if d is not None and not d.alive() and end - time.monotonic() > 0.3:
                    end = time.monotonic() + 0.3
                    timeout = None
                left = end - time.monotonic()
                if left <= 0 and timeout is None:
                    raise TestFailure(f"daemon exited (status {d.proc.poll()}) before "
                                      f"notifying /{regex}/; got {self._lines(since)}")
                if left <= 0:
                    raise TestFailure(f"no notification /{regex}/ within {timeout:g} s; "
                                      f"got {self._lines(since)}")
                self.cond.wait(min(left, 0.1))

    def _lines(self, since):
        return [ln for _, _, ln in self.msgs[since:]][-20:]


def setup():
    """A temporary directory (removed after the case) and a Notify in it."""
    tmp = tempfile.mkdtemp(prefix="cosockd-systemd-")
    suite.on_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))
    return tmp, Notify(tmp)


def check_only_from(n, pid, what="notifications"):
    """NotifyAccess=main: every datagram came from the main process."""
    others = [(p, ln) for _, p, ln in n.all() if p != pid]
    check(not others, f"{what} from processes other than the main one ({pid}): {others[:5]}")


# ---------------------------------------------------------------------------
# Configurations and clients

def lua_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(tmp, scripts, workers=2, extra=(), name="cosockd.lua"):
    """A configuration file in tmp; scripts: paths or (path, args...) tuples.
    Returns its path."""
    entries = []
    for s in scripts:
        if isinstance(s, (tuple, list)):
            entries.append("{" + ", ".join(lua_str(x) for x in s) + "}")
        else:
            entries.append(lua_str(s))
    lines = ["-- test_systemd", f"workers = {workers}"] + list(extra)
    lines.append("scripts = {" + ", ".join(entries) + "}")
    path = os.path.join(tmp, name)
    write_file(path, "\n".join(lines) + "\n")
    return path


def write_file(path, text):
    """Replace path's contents atomically (a reload must never read half)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def app_script(tmp, prefix, name="app.lua"):
    """A script in tmp serving systemd_lib's echo with a reply prefix written
    into the file itself. ARGS: port."""
    write_file(os.path.join(tmp, name),
               "-- test_systemd: generated\n"
               "local port = ...\n"
               "if port == nil and arg then port = arg[1] end\n"
               f"require\"systemd_lib\".serve(port, {lua_str(prefix)})\n")
    return name


def round_trip(s, payload, deadline, prefix=b"", what="round trip"):
    s.settimeout(remaining(deadline, what))
    s.sendall(payload)
    got = recv_exact(s, len(prefix) + len(payload), deadline, what)
    check_eq(got, prefix + payload, what)


def new_echo(port, deadline, prefix=b"", what="new connection"):
    s = connect(port, timeout=remaining(deadline, what))
    try:
        round_trip(s, b"hello\n", deadline, prefix, what)
    finally:
        s.close()


def reply_of_new_connection(port, deadline, what="new connection", limit=5.0):
    """The reply prefix to "hello\n" on a fresh connection, which must come
    within `limit` seconds."""
    deadline = min(deadline, time.monotonic() + limit)
    s = connect(port, timeout=remaining(deadline, what))
    try:
        s.sendall(b"hello\n")
        buf = b""
        while not buf.endswith(b"hello\n"):
            s.settimeout(remaining(deadline, what))
            try:
                chunk = s.recv(64)
            except socket.timeout:
                raise TestFailure(f"{what}: no reply within {limit:g} s (got {buf!r}; "
                                  f"client port {s.getsockname()[1]})")
            if not chunk:
                raise TestFailure(f"{what}: EOF after {buf!r}")
            buf += chunk
        return buf[:-len(b"hello\n")]
    finally:
        s.close()


def refused(port):
    try:
        socket.create_connection((LOOPBACK, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def spin(port, what, deadline):
    """Send a SPIN command on its own connection; returns the socket."""
    s = connect(port, timeout=remaining(deadline, "trigger connection"))
    s.sendall(f"SPIN {what}\n".encode())
    return s


def wait_gone(pids, timeout, what):
    def gone():
        for p in pids:
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return False
            except FileNotFoundError:
                pass
        return True
    end = time.monotonic() + timeout
    while not gone():
        if time.monotonic() > end:
            raise TestFailure(f"{what}: processes {pids} still running {timeout:g} s later")
        time.sleep(0.05)


def start_config(conf, n, env, timeout=20):
    """cosockd -c conf; waits for READY=1; returns the daemon and the index of
    the READY=1 line."""
    d = suite.daemon("-c", conf, env=env)
    i, _, pid, _ = n.wait("^READY=1$", timeout, d=d)
    check_eq(pid, d.pid, "sender of READY=1")
    return d, i


def stop(d, n, timeout=15):
    """SIGTERM: STOPPING=1, then exit status 0."""
    mark = n.mark()
    d.signal(signal.SIGTERM)
    n.wait("^STOPPING=1$", timeout, since=mark)
    check_eq(d.wait_exit(timeout), 0, "exit status after SIGTERM")


def activated(args, env):
    """systemd-socket-activate ARGS cosockd --backend=B ...: the test's
    Daemon machinery with systemd-socket-activate as the program (it execs
    cosockd in its own process, so the pid is the daemon's). Only the
    variables in env (and LUA_PATH) reach cosockd."""
    runner = types.SimpleNamespace(cosockd=SOCKET_ACTIVATE, backend=suite.backend,
                                   lua_dir=suite.lua_dir, track=suite.track)
    setenv = ["-E", "LUA_PATH"] + [x for k, v in env.items() for x in ("-E", f"{k}={v}")]
    return Daemon(runner, setenv + list(args), backend=False)


# ---------------------------------------------------------------------------
# Cases

@suite.case(timeout=60)
def config_mode_notifies():
    """-c CONF with 2 workers: READY=1 when the port already echoes; STATUS=
    says 2 workers and counts the 5 connections the test holds; every
    datagram comes from the master; no WATCHDOG=1 without WATCHDOG_USEC;
    SIGTERM: STOPPING=1, exit 0."""
    tmp, n = setup()
    port = free_port()
    conf = write_config(tmp, [(suite.lua("systemd_echo.lua"), port)], workers=2)
    d, _ = start_config(conf, n, n.env())
    # at READY=1 the port accepts and echoes (no retry on refusal)
    deadline = deadline_after(10)
    new_echo(port, deadline, what="first connection after READY=1")
    check_eq(len(d.children()), 2, "worker processes")
    n.wait(r"^STATUS=.*\b2 workers\b", 5, d=d)
    held = []
    suite.on_cleanup(lambda: [s.close() for s in held])
    for i in range(5):
        s = connect(port)
        round_trip(s, b"held %d\n" % i, deadline)
        held.append(s)
    wait_status(n, d, lambda c: c >= 5, "STATUS= counting the 5 connections held")
    for s in held:
        round_trip(s, b"still\n", deadline)
    mark = n.mark()
    for s in held:
        s.close()
    wait_status(n, d, lambda c: c < 5, "STATUS= after the 5 connections closed", since=mark)
    check(not n.all("^WATCHDOG=1$"), "WATCHDOG=1 sent without WATCHDOG_USEC")
    stop(d, n)
    check_only_from(n, d.pid)


@suite.case(timeout=45)
def single_process_notifies():
    """cosockd SCRIPT: READY=1 (the port echoes then), STATUS=, SIGHUP is
    logged and ignored (no RELOADING=1, same process serves), STOPPING=1 on
    SIGTERM, exit 0."""
    tmp, n = setup()
    port = free_port()
    d = suite.script("systemd_echo.lua", port, env=n.env())
    n.wait("^READY=1$", 15, d=d)
    deadline = deadline_after(20)
    s = connect(port)
    suite.on_cleanup(s.close)
    round_trip(s, b"one\n", deadline)
    n.wait("^STATUS=.", 5, d=d)
    mark, lmark = n.mark(), d.mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"SIGHUP", 5, since=lmark)
    round_trip(s, b"after hup\n", deadline)
    new_echo(port, deadline, what="new connection after SIGHUP")
    check(d.alive(), "the daemon ended on SIGHUP")
    check(not n.all("^RELOADING=1$", since=mark), "RELOADING=1 from a process without a master")
    check_eq(d.children(), [], "child processes of a single process")
    stop(d, n)
    check_only_from(n, d.pid)


def wait_status(n, d, want, what, since=0, timeout=6):
    """Wait for a STATUS= after index since whose connection count satisfies
    want(count)."""
    mark, end, seen = since, time.monotonic() + timeout, []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TestFailure(f"{what}: not within {timeout} s; STATUS= lines: {seen[-6:]}")
        try:
            i, _, _, m = n.wait(STATUS_RE, left, since=mark, d=d)
        except TestFailure:
            raise TestFailure(f"{what}: not within {timeout} s; STATUS= lines: "
                              f"{[ln for _, _, ln in n.all('^STATUS=')][-6:]}")
        mark = i + 1
        seen.append(m.string)
        if want(int(m.group("conns"))):
            return m


def ping_times(n, since=0):
    return [t for t, _, _ in n.all("^WATCHDOG=1$", since)]


def wait_pings(n, count, timeout, d, since=0):
    for k in range(count):
        i, _, _, _ = n.wait("^WATCHDOG=1$", timeout, since=since, d=d)
        since = i + 1
    return since


@suite.case(timeout=60)
def watchdog_single_process():
    """WATCHDOG_USEC=400000: WATCHDOG=1 about every 200 ms; a Lua handler
    that spins 1.5 s stops them (the pings come from the loop), then they
    resume."""
    tmp, n = setup()
    port = free_port()
    d = suite.script("systemd_echo.lua", port, env=n.env(WATCHDOG_USEC="400000"))
    i, _, _, _ = n.wait("^READY=1$", 15, d=d)
    # the rate: at least 5 pings within 2 s of the first (every 200 ms gives 10)
    first, t0, _, _ = n.wait("^WATCHDOG=1$", 2, since=i, d=d)
    pos = first + 1
    for k in range(4):
        try:
            j, _, _, _ = n.wait("^WATCHDOG=1$", max(0.0, t0 + 2.0 - time.monotonic()),
                                since=pos, d=d)
        except TestFailure:
            raise TestFailure(f"{k + 1} WATCHDOG=1 within 2 s with WATCHDOG_USEC=400000 "
                              f"(want >= 5): at {[round(t - t0, 3) for t in ping_times(n, first)]}")
        pos = j + 1
    deadline = deadline_after(30)
    mark = n.mark()
    t_sent = time.monotonic()
    s = spin(port, "1.5", deadline)
    suite.on_cleanup(s.close)
    check_eq(recv_exact(s, 5, deadline, "reply to SPIN 1.5"), b"spun\n", "reply to SPIN 1.5")
    t_done = time.monotonic()
    check(t_done - t_sent >= 1.4, f"the spin took only {t_done - t_sent:.2f} s")
    resumed = wait_pings(n, 3, 3, d, since=n.mark())
    pings = ping_times(n, mark)
    t_last = n.all(since=resumed - 1)[0][0]
    around = [t_sent] + [t for t in pings if t <= t_last]
    gap = max(b - a for a, b in zip(around, around[1:]))
    check(gap >= 1.0, f"largest gap between pings around a 1.5 s spin: {gap:.3f} s "
          f"(pings at {[round(t - t_sent, 3) for t in pings]} s after the trigger)")
    round_trip(s, b"alive\n", deadline)
    stop(d, n)


@suite.case(timeout=60)
def watchdog_master_kills_stalled_worker():
    """Under a master (workers = 1, WATCHDOG_USEC=1 s): a worker whose loop
    spins forever is logged as stalled and killed, a new worker serves the
    same port, and the master's pings go on."""
    tmp, n = setup()
    port = free_port()
    conf = write_config(tmp, [(suite.lua("systemd_echo.lua"), port)], workers=1)
    d, i = start_config(conf, n, n.env(WATCHDOG_USEC="1000000"))
    wait_pings(n, 2, 3, d, since=i)
    kids = d.children()
    check_eq(len(kids), 1, "worker processes")
    deadline = deadline_after(40)
    new_echo(port, deadline, what="echo before the stall")
    lmark = d.mark()
    s = spin(port, "forever", deadline)
    suite.on_cleanup(s.close)
    m = d.wait_log(r"worker 1 \(pid (\d+)\) stalled: no heartbeat for (\d+) ms; killing it",
                   15, since=lmark)
    check_eq(int(m.group(1)), kids[0], "pid of the stalled worker")
    check(int(m.group(2)) >= 500, f"killed after {m.group(2)} ms without a heartbeat "
          f"(WATCHDOG_USEC/2 = 500 ms)")
    mark = n.mark()
    d.wait_log(r"worker 1 \(pid \d+\) is serving again", 10, since=lmark)
    new_echo(port, deadline, what="echo after the stalled worker was replaced")
    check(kids[0] not in d.children(), "the stalled worker still runs")
    check_eq(len(d.children()), 1, "worker processes after the replacement")
    wait_pings(n, 3, 5, d, since=mark)
    stop(d, n)


@suite.case(timeout=30)
def no_watchdog_without_watchdog_usec():
    """Without WATCHDOG_USEC no WATCHDOG=1 in 1.5 s of a running single
    process (READY=1 and STATUS= do come)."""
    tmp, n = setup()
    port = free_port()
    d = suite.script("systemd_echo.lua", port, env=n.env())
    n.wait("^READY=1$", 15, d=d)
    deadline = deadline_after(10)
    new_echo(port, deadline)
    time.sleep(1.5)  # a window in which nothing may arrive
    check(not n.all("^WATCHDOG=1$"), "WATCHDOG=1 without WATCHDOG_USEC")
    stop(d, n)


@suite.case(timeout=90)
def reload_runs_changed_scripts():
    """SIGHUP: RELOADING=1, then READY=1; the script as changed on disk
    ("v1" -> "v2") answers every new connection after READY=1, a connection
    held across the reload still gets "v1" and the old workers exit once it
    closes. A configuration with a syntax error, and a script that raises at
    start, each fail the reload: logged, READY=1, the old generation still
    answers "v2". A SIGHUP during a reload runs after it."""
    tmp, n = setup()
    port = free_port()
    app = app_script(tmp, "v1")
    conf = write_config(tmp, [(app, port)], workers=2)
    d, _ = start_config(conf, n, n.env())
    deadline = deadline_after(75)
    check_eq(reply_of_new_connection(port, deadline), b"v1", "reply prefix before the reload")
    held = connect(port)
    suite.on_cleanup(held.close)
    round_trip(held, b"held\n", deadline, b"v1", "held connection before the reload")
    old = sorted(d.children())
    check_eq(len(old), 2, "workers of the first generation")

    # 1. a good reload
    app_script(tmp, "v2")
    mark, lmark = n.mark(), d.mark()
    d.signal(signal.SIGHUP)
    i, _, pid, _ = n.wait("^RELOADING=1$", 10, since=mark, d=d)
    check_eq(pid, d.pid, "sender of RELOADING=1")
    n.wait("^READY=1$", 20, since=i + 1, d=d)
    for k in range(10):
        check_eq(reply_of_new_connection(port, deadline, f"connection {k} after READY=1"),
                 b"v2", f"reply prefix of new connection {k} after the reload")
    round_trip(held, b"held\n", deadline, b"v1", "held connection after the reload")
    new = sorted(d.children())
    check_eq(len(set(new) - set(old)), 2, f"new workers after READY=1 (all: {new}, old: {old})")
    held.close()
    wait_gone(old, 10, "old workers after their last connection closed")
    gen2 = sorted(d.children())
    check_eq(len(gen2), 2, "workers of the second generation")
    check(not set(gen2) & set(old), f"old workers {old} still among {gen2}")

    # 2. a configuration with a syntax error
    good_conf = open(conf).read()
    write_file(conf, "workers = = 2\n" + good_conf)
    mark, lmark = n.mark(), d.mark()
    d.signal(signal.SIGHUP)
    i, _, _, _ = n.wait("^RELOADING=1$", 10, since=mark, d=d)
    n.wait("^READY=1$", 20, since=i + 1, d=d)
    # stderr and the notify socket are two channels: wait for the record
    d.wait_log(rf"^cosockd: {re.escape(conf)}:1: ", 5, since=lmark)
    check(any(0 <= p <= 4 for p, msg in d.lines[lmark:] if conf in msg),
          f"the broken configuration is not logged as a warning or error: {d.log_text(last=15)}")
    check_eq(reply_of_new_connection(port, deadline), b"v2",
             "reply prefix after a failed reload (broken configuration)")
    check_eq(sorted(d.children()), gen2, "workers after a failed reload")

    # 3. a script that raises at start
    write_file(conf, good_conf)
    write_file(os.path.join(tmp, app), "error('v3 fails at start')\n")
    mark, lmark = n.mark(), d.mark()
    d.signal(signal.SIGHUP)
    i, _, _, _ = n.wait("^RELOADING=1$", 10, since=mark, d=d)
    n.wait("^READY=1$", 20, since=i + 1, d=d)
    d.wait_log(r"(?i)reload\b.*\bfail", 5, since=lmark)
    check_eq(reply_of_new_connection(port, deadline), b"v2",
             "reply prefix after a failed reload (script raised)")
    wait_until_children(d, gen2, 10, "workers after a reload whose script raised")
    check(d.alive(), "the master ended")

    # 4. a SIGHUP while a reload runs is remembered
    app_script(tmp, "v4")
    mark = n.mark()
    d.signal(signal.SIGHUP)
    i, _, _, _ = n.wait("^RELOADING=1$", 10, since=mark, d=d)
    d.signal(signal.SIGHUP)
    j, _, _, _ = n.wait("^READY=1$", 20, since=i + 1, d=d)
    j, _, _, _ = n.wait("^RELOADING=1$", 10, since=j + 1, d=d)
    n.wait("^READY=1$", 20, since=j + 1, d=d)
    check_eq(reply_of_new_connection(port, deadline), b"v4", "reply prefix after two reloads")
    check_eq(len(n.all("^RELOADING=1$", since=mark)), 2, "RELOADING=1 for two SIGHUPs")
    stop(d, n)
    check_only_from(n, d.pid)


def wait_until_children(d, want, timeout, what):
    end = time.monotonic() + timeout
    while sorted(d.children()) != sorted(want):
        if time.monotonic() > end:
            raise TestFailure(f"{what}: {sorted(d.children())}, want {sorted(want)}")
        time.sleep(0.05)


class Load:
    """Clients through the proxy: `churn` threads each looping a new
    connection with 64 random bytes echoed and closed, and `persistent`
    connections looping 64-byte round trips. Counts successes and failures
    by kind."""

    KINDS = ("refused", "reset", "short", "timeout", "other")

    def __init__(self, port, churn=2, persistent=2, until=15.0):
        self.port = port
        self.end = time.monotonic() + until
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.persistent_ok = 0
        self.failures = {k: 0 for k in self.KINDS}
        self.examples = []
        self.sighups = [time.monotonic()]  # the start, then each SIGHUP's time
        self.threads = [threading.Thread(target=self._churn, args=(i,), daemon=True)
                        for i in range(churn)]
        self.threads += [threading.Thread(target=self._persistent, args=(i,), daemon=True)
                         for i in range(persistent)]
        for t in self.threads:
            t.start()

    def _running(self):
        return not self.stopping.is_set() and time.monotonic() < self.end

    def sighup(self):
        with self.lock:
            self.sighups.append(time.monotonic())

    def _fail(self, kind, what, started):
        """A failure of an operation begun at `started`, logged with the
        SIGHUP it followed."""
        with self.lock:
            self.failures[kind] += 1
            if len(self.examples) < 10:
                k = max(i for i, t in enumerate(self.sighups) if t <= started)
                self.examples.append(f"{kind}: {what} (begun {started - self.sighups[k]:.3f} s "
                                     f"after {'SIGHUP %d' % k if k else 'the start'})")

    def _kind(self, e):
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return "reset"
        if isinstance(e, socket.timeout):
            return "timeout"
        return "other"

    @staticmethod
    def _exchange(s, payload):
        """One round trip; returns None or the kind of short answer."""
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                return f"EOF after {len(got)} of {len(payload)} bytes"
            got += chunk
        return None if got == payload else f"wrong bytes {got[:16]!r}..."

    def _churn(self, i):
        rnd = random.Random(i)
        while self._running():
            payload = rnd.randbytes(64)
            started = time.monotonic()
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=5) as s:
                    s.settimeout(5)
                    short = self._exchange(s, payload)
            except OSError as e:
                self._fail(self._kind(e), f"churn {i}: {type(e).__name__}: {e}", started)
                continue
            if short:
                self._fail("short", f"churn {i}: {short}", started)
            else:
                with self.lock:
                    self.ok += 1

    def _persistent(self, i):
        rnd = random.Random(100 + i)
        started = time.monotonic()
        try:
            s = socket.create_connection((LOOPBACK, self.port), timeout=5)
        except OSError as e:
            self._fail(self._kind(e), f"persistent {i} connect: {e}", started)
            return
        with s:
            s.settimeout(5)
            while self._running():
                started = time.monotonic()
                try:
                    short = self._exchange(s, rnd.randbytes(64))
                except OSError as e:
                    self._fail(self._kind(e), f"persistent {i}: {type(e).__name__}: {e}",
                               started)
                    return
                if short:
                    self._fail("short", f"persistent {i}: {short}", started)
                    return
                with self.lock:
                    self.persistent_ok += 1

    def counts(self):
        with self.lock:
            return self.ok, self.persistent_ok, sum(self.failures.values())

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(10)
        check(not any(t.is_alive() for t in self.threads), "load threads did not end")


@suite.case(timeout=90)
def reload_under_load():
    """The acceptance test: echo + proxy under a master with 2 workers; 2
    threads churning connections and 2 persistent connections through the
    proxy during 5 SIGHUPs (each after the previous READY=1): every reload
    completes, both kinds of client make progress after each, and not one
    connection is refused, reset, cut short or stalled."""
    tmp, n = setup()
    eport, pport = free_port(), free_port()
    conf = write_config(tmp, [(suite.lua("systemd_proxy.lua"), eport, pport)], workers=2)
    d, _ = start_config(conf, n, n.env())
    load = Load(pport, until=15.0)
    suite.on_cleanup(load.stop)
    deadline = deadline_after(15)

    def progress(what):
        """At least 0.5 s of load and 50 successes of each kind."""
        ok0, p0, _ = load.counts()
        until = time.monotonic() + 0.5
        while True:
            ok, p, failed = load.counts()
            if failed or (ok >= ok0 + 50 and p >= p0 + 50 and time.monotonic() >= until):
                return
            check(time.monotonic() < deadline,
                  f"{what}: {ok - ok0} connections and {p - p0} persistent round trips in time")
            time.sleep(0.01)

    progress("before the first reload")
    per_reload = []
    for k in range(5):
        mark = n.mark()
        before = load.counts()
        load.sighup()
        d.signal(signal.SIGHUP)
        i, _, _, _ = n.wait("^RELOADING=1$", remaining(deadline, "RELOADING=1"), since=mark, d=d)
        n.wait("^READY=1$", remaining(deadline, f"READY=1 of reload {k + 1}"), since=i + 1, d=d)
        progress(f"after reload {k + 1}")
        after = load.counts()
        per_reload.append((after[0] - before[0], after[1] - before[1]))
        if after[2]:
            break
    load.stop()
    ok, persistent_ok, failed = load.counts()
    check(failed == 0, f"failures during reloads: {load.failures}; e.g. {load.examples}")
    check_eq(len(per_reload), 5, "reloads done")
    check(all(a > 0 and b > 0 for a, b in per_reload),
          f"successes (connections, persistent round trips) per reload: {per_reload}")
    fails = d.find_log(r"(?i)reload\b.*\bfail")
    check(not fails, f"a reload failed: {[m.string for m in fails]}")
    stop(d, n)
    print(f"     reload under load: {ok} connections, {persistent_ok} persistent round trips, "
          f"per reload {per_reload}", flush=True)


def activation_case(mode, by):
    """A connection sent to a socket systemd-socket-activate holds before
    cosockd runs gets its echo from cosockd, which adopted the socket by
    port or by FileDescriptorName; READY=1 arrives."""
    tmp, n = setup()
    port = free_port()
    other = free_port() if by == "fdname" else port
    script_args = [suite.lua("systemd_echo.lua"), other, ""]
    act = ["-l", f"{LOOPBACK}:{port}"]
    if by == "fdname":
        script_args.append("web")
        act.append("--fdname=web")
    if mode == "single":
        cmd = [suite.cosockd, f"--backend={suite.backend}"] + [str(a) for a in script_args]
    else:
        conf = write_config(tmp, [tuple(script_args)], workers=2)
        cmd = [suite.cosockd, f"--backend={suite.backend}", "-c", conf]
    d = activated(act + cmd, n.env())
    d.wait_log(rf"Listening on {re.escape(LOOPBACK)}:{port} as 3\.", 10)
    deadline = deadline_after(30)
    s = connect(port)
    suite.on_cleanup(s.close)
    s.sendall(b"early bird\n")
    check_eq(recv_exact(s, 11, deadline, "echo of the first connection"), b"early bird\n",
             "echo of the connection made before cosockd ran")
    _, _, pid, _ = n.wait("^READY=1$", 15, d=d)
    check_eq(pid, d.pid, "sender of READY=1 (systemd-socket-activate execs cosockd)")
    name = "web" if by == "fdname" else r"[^)]*"
    d.wait_log(rf"systemd socket 3 \(name {name}\): 127\.0\.0\.1:{port} stream", 1)
    d.wait_log(rf"bind {other}(?: fdname {name})?: adopted systemd socket 3 \(name {name}\) "
               rf"127\.0\.0\.1:{port}", 1)
    for k in range(4):
        new_echo(port, deadline, what=f"connection {k} after READY=1")
    round_trip(s, b"again\n", deadline)
    if by == "fdname":
        check(refused(other), f"port {other} is listening: the script bound instead of adopting")
    if mode == "config":
        check_eq(len(d.children()), 2, "workers")
    stop(d, n)


@suite.case(timeout=45)
def activation_single_by_port():
    activation_case("single", "port")


@suite.case(timeout=45)
def activation_single_by_fdname():
    activation_case("single", "fdname")


@suite.case(timeout=45)
def activation_config_by_port():
    activation_case("config", "port")


@suite.case(timeout=45)
def activation_config_by_fdname():
    activation_case("config", "fdname")


@suite.case(timeout=45)
def activation_unadopted_socket_warns():
    """Two inherited sockets, the script binds one: the other is named in a
    warning once the daemon is ready."""
    tmp, n = setup()
    port, spare = free_port(), free_port()
    cmd = [suite.cosockd, f"--backend={suite.backend}", suite.lua("systemd_echo.lua"), str(port)]
    d = activated(["-l", f"{LOOPBACK}:{port}", "-l", f"{LOOPBACK}:{spare}"] + cmd, n.env())
    d.wait_log(rf"Listening on {re.escape(LOOPBACK)}:{spare} as 4\.", 10)
    deadline = deadline_after(20)
    new_echo(port, deadline, what="the activating connection")
    n.wait("^READY=1$", 15, d=d)
    d.wait_log(rf"bind {port}: adopted systemd socket 3 ", 1)
    m = d.wait_log(rf"\b127\.0\.0\.1:{spare}\b", 5, prio=4)
    check("4" in m.string, f"the warning does not name socket 4: {m.string!r}")
    check(not d.find_log(r"adopted systemd socket 4\b"), "socket 4 was adopted")
    stop(d, n)


def run_check(args, timeout=15):
    d = suite.daemon("--check", *args)
    rc = d.wait_exit(timeout)
    out = d.stdout.decode("utf-8", "replace")
    with d.cond:
        err = "\n".join(m for _, m in d.lines)
    return rc, out, err


def check_fails(args, patterns, what, problems, lines=1):
    """--check ARGS must exit 1 with `lines` lines on stderr, each pattern
    matching one of them; what differs is added to problems."""
    rc, out, err = run_check(args)
    got = [ln for ln in err.splitlines() if ln.strip()]
    why = []
    if rc != 1:
        why.append(f"exit status {rc}")
    why += [f"no /{p}/" for p in patterns if not re.search(p, err, re.M)]
    if len(got) != lines:
        why.append(f"{len(got)} lines on stderr, want {lines}")
    if "configuration ok" in out:
        why.append(f"stdout says {out!r}")
    if why:
        problems.append(f"{what}: {', '.join(why)}; stderr: {got}")


@suite.case(timeout=60)
def check_mode():
    """--check: a good configuration (and a good script) -> "configuration
    ok" on stdout, exit 0, nothing bound, scripts compiled but not run; an
    unknown setting, bad values, a configuration or script with a syntax
    error and a missing script -> exit 1 with FILE:LINE messages, one line
    per problem."""
    tmp, _ = setup()
    eport, pport = free_port(), free_port()
    write_file(os.path.join(tmp, "raises.lua"), "error('this script ran')\n")
    conf = write_config(tmp, [(suite.lua("systemd_proxy.lua"), eport, pport), "raises.lua"],
                        workers=2, extra=['backend = "epoll"', "reload_grace = 3"])
    rc, out, err = run_check(["-c", conf])
    check_eq((rc, out), (0, f"cosockd: {conf}: configuration ok\n"),
             f"--check of a good config (stderr: {err[-2000:]!r})")
    check("this script ran" not in err, "--check ran a script instead of compiling it")
    check(refused(eport) and refused(pport), "a port of the checked configuration listens")

    script = suite.lua("systemd_echo.lua")
    rc, out, err = run_check([script])
    check_eq((rc, out), (0, f"cosockd: {script}: configuration ok\n"),
             f"--check SCRIPT.lua (stderr: {err[-2000:]!r})")

    problems = []
    good = [(suite.lua("systemd_echo.lua"), eport)]
    c = write_config(tmp, good, workers=1, extra=["workrs = 2"], name="unknown.lua")
    check_fails(["-c", c], [rf"^cosockd: {re.escape(c)}:3: .*unknown setting 'workrs'"],
                "unknown setting", problems)

    c = write_config(tmp, good, workers=0, extra=['backend = "fast"'], name="values.lua")
    check_fails(["-c", c], [rf"^cosockd: {re.escape(c)}:2: .*workers",
                            rf"^cosockd: {re.escape(c)}:3: .*backend"],
                "two bad values", problems, lines=2)

    c = write_config(tmp, good, workers=1, extra=["threads = = 3"], name="syntax.lua")
    check_fails(["-c", c], [rf"^cosockd: {re.escape(c)}:3: "], "configuration syntax error",
                problems)

    bad = os.path.join(tmp, "bad.lua")
    write_file(bad, "-- a script with a syntax error on line 3\nlocal x = 1\nlocal = 2\n")
    c = write_config(tmp, ["bad.lua"], workers=1, name="badscript.lua")
    check_fails(["-c", c], [rf"^cosockd: {re.escape(bad)}:3: "], "script syntax error", problems)
    check_fails([bad], [rf"^cosockd: {re.escape(bad)}:3: "], "--check SCRIPT with a syntax error",
                problems)

    c = write_config(tmp, ["nope.lua"], workers=1, name="missing.lua")
    check_fails(["-c", c], [rf"^cosockd: {re.escape(c)}:3: .*nope\.lua"], "missing script",
                problems)
    check(not problems, "; ".join(problems))


@suite.case(timeout=45)
def sigquit_drains_single_process():
    """SIGQUIT to a single process: the established connection keeps
    working, the log says the daemon drains, and it exits 0 once the client
    closes."""
    tmp, n = setup()
    port = free_port()
    d = suite.script("systemd_echo.lua", port, env=n.env())
    n.wait("^READY=1$", 15, d=d)
    deadline = deadline_after(30)
    s = connect(port)
    suite.on_cleanup(s.close)
    round_trip(s, b"before\n", deadline)
    lmark = d.mark()
    d.signal(signal.SIGQUIT)
    d.wait_log(r"(?i)drain", 5, since=lmark)
    for k in range(5):
        round_trip(s, b"draining %d\n" % k, deadline)
    check(d.alive(), "the daemon exited while a connection was open")
    s.close()
    check_eq(d.wait_exit(10), 0, "exit status after SIGQUIT and the last close")

@suite.case(timeout=60)
def failed_reload_leaves_no_listening_socket_behind():
    """A reload that raises the workers to 3 and whose script listens on a
    second port fails when its worker 1 raises; the sockets only that reload
    asked for close with it: the new port refuses, and every connection to
    the first port is answered (a third worker slot's socket left listening
    would have queued a third of them for nobody). The other new workers'
    late READY changes nothing (under ASan: no read past the slots)."""
    tmp, n = setup()
    port, port2 = free_port(), free_port()
    app = app_script(tmp, "v1")
    conf = write_config(tmp, [(app, port)], workers=2)
    d, _ = start_config(conf, n, n.env())
    deadline = deadline_after(50)
    check_eq(reply_of_new_connection(port, deadline), b"v1", "reply prefix before the reload")
    # worker 1 fails at once; workers 2 and 3 become ready 300 ms later,
    # after the reload failed (their READY=1 must not count)
    write_file(os.path.join(tmp, "bad.lua"),
               "-- test_systemd: listens on a second port, then fails\n"
               f"require\"systemd_lib\".serve({port2}, \"v2\")\n"
               "if cosockd.worker == 1 then error('fails after listening') end\n"
               "ba.sleep(300)\n")
    write_config(tmp, [(app, port), "bad.lua"], workers=3)
    mark, lmark = n.mark(), d.mark()
    d.signal(signal.SIGHUP)
    i, _, _, _ = n.wait("^RELOADING=1$", 10, since=mark, d=d)
    n.wait("^READY=1$", 20, since=i + 1, d=d)
    d.wait_log(r"reload failed", 5, since=lmark)
    d.wait_log(r"closing the listening socket .*its reload failed", 5, since=lmark)
    # the failed generation's other workers hold their copies until they end
    d.wait_log(r"worker \d \(pid \d+\) of the abandoned generation", 10, since=lmark, count=2)
    check(refused(port2), f"port {port2}, only the failed reload's, still accepts connections")
    for k in range(30):
        check_eq(reply_of_new_connection(port, deadline, f"connection {k} after the failed reload", limit=3),
                 b"v1", f"reply prefix of connection {k} after the failed reload")
    stop(d, n)


@suite.case(timeout=45)
def sigquit_answers_a_fresh_http_connection():
    """SIGQUIT closes HTTP connections idle after an answer, but one that
    has not sent its request yet still gets its answer (Connection: close)."""
    tmp, n = setup()
    port = free_port()
    www = os.path.join(tmp, "www")
    os.mkdir(www)
    write_file(os.path.join(www, "index.html"), "drain\n")
    write_file(os.path.join(tmp, "web.lua"),
               f"cosockd.http{{intf = \"127.0.0.1\", port = {port}, root = {lua_str(www)}}}\n")
    d = suite.daemon(os.path.join(tmp, "web.lua"), env=n.env())
    n.wait("^READY=1$", 15, d=d)
    deadline = deadline_after(30)
    idle = connect(port)
    suite.on_cleanup(idle.close)
    idle.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"drain\n" not in head:
        idle.settimeout(remaining(deadline, "first answer"))
        chunk = idle.recv(4096)
        check(chunk, f"the connection ended after {head!r}")
        head += chunk
    fresh = connect(port)
    suite.on_cleanup(fresh.close)
    lmark = d.mark()
    d.signal(signal.SIGQUIT)
    d.wait_log(r"(?i)drain", 5, since=lmark)
    idle.settimeout(remaining(deadline, "idle connection"))
    check_eq(idle.recv(4096), b"", "an idle keep-alive connection after SIGQUIT")
    fresh.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while True:
        fresh.settimeout(remaining(deadline, "fresh connection"))
        chunk = fresh.recv(4096)
        if not chunk:
            break
        got += chunk
    check(got.startswith(b"HTTP/1.1 200"), f"the fresh connection's answer: {got[:80]!r}")
    check(b"connection: close" in got.lower(), f"no Connection: close in {got[:200]!r}")
    check(got.endswith(b"drain\n"), f"the fresh connection's body: {got[-40:]!r}")
    check_eq(d.wait_exit(10), 0, "exit status after the drain")


suite.main()
