"""Shared code for the cosockd integration tests (standard library only).

Each test file builds a Suite, registers cases with @suite.case(timeout=...)
and calls suite.main(). Every case runs under a watchdog: when a case (or the
whole file) overruns its deadline, the watchdog reports it, prints the logs
of the daemons the case started, kills them and exits non-zero, so a hung
daemon or peer can never hang the test run.

The daemon is started with Daemon(...); its stderr ("<N>message" records) is
collected by a reader thread, and wait_log() waits for a record matching a
regular expression, with a deadline. Nothing here synchronises by sleeping
where a signal exists: servers are started on port 0 and the real port is
read from their "listening on ADDR:PORT" record.
"""

import argparse
import hashlib
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

LOOPBACK = "127.0.0.1"
LISTEN_RE = r"listening on (?P<addr>[0-9.]+):(?P<port>\d+)"


class TestFailure(Exception):
    """A check failed; the message says what and why."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure(f"{what}: got {_short(got)}, want {_short(want)}")


def _short(v, n=200):
    s = repr(v)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def _die_with_parent(extra=None):
    """preexec_fn: the daemon gets SIGKILL if the test process dies (so a
    killed test run leaves no daemon behind), then runs `extra`."""
    def fn():
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if extra:
            extra()
    return fn


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def deadline_after(seconds):
    return time.monotonic() + seconds


def remaining(deadline, what="operation"):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TestFailure(f"{what}: deadline passed")
    return left


# ---------------------------------------------------------------------------
# The daemon

def _parse_record(raw):
    """b"<6>text" -> (6, "text"); a line not in that form -> (-1, line)."""
    text = raw.decode("utf-8", "replace")
    if len(text) >= 3 and text[0] == "<" and text[2] == ">" and text[1].isdigit():
        return int(text[1]), text[3:]
    return -1, text


class Daemon:
    """cosockd as a subprocess; stderr records are collected as they come."""

    def __init__(self, suite, args, backend=True, cwd=None, env=None, preexec_fn=None,
                 stdin=subprocess.DEVNULL):
        self.suite = suite
        argv = [suite.cosockd]
        if backend:
            argv.append("--backend=" + suite.backend)
        argv += [str(a) for a in args]
        self.argv = argv
        e = dict(os.environ)
        # let scripts `require` the helpers in tests/lua/
        e["LUA_PATH"] = os.path.join(suite.lua_dir, "?.lua") + ";;"
        if env:
            e.update(env)
        self.lines = []  # (prio, message)
        self.cond = threading.Condition()
        self.eof = False
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd, env=e,
                                     preexec_fn=_die_with_parent(preexec_fn))
        self.pid = self.proc.pid
        self.stdout = b""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        suite.track(self)

    def _read_stderr(self):
        # Read in large blocks and append whole batches: a script may log
        # hundreds of thousands of lines (seed 12b traces every write).
        fd = self.proc.stderr.fileno()
        pending = b""
        while True:
            block = os.read(fd, 1 << 16)
            if not block:
                break
            *complete, pending = (pending + block).split(b"\n")
            if complete:
                recs = [_parse_record(raw) for raw in complete]
                with self.cond:
                    self.lines.extend(recs)
                    self.cond.notify_all()
        with self.cond:
            if pending:
                self.lines.append(_parse_record(pending))
            self.eof = True
            self.cond.notify_all()

    def _read_stdout(self):
        data = self.proc.stdout.read()
        self.stdout = data or b""

    # -- log access -------------------------------------------------------
    def log_text(self, last=None):
        with self.cond:
            lines = list(self.lines)
        dropped = 0
        if last is not None and len(lines) > last:
            dropped = len(lines) - last
            lines = lines[-last:]
        out = [f"<{p}>{m}" if p >= 0 else m for p, m in lines]
        if dropped:
            out.insert(0, f"... ({dropped} earlier lines not shown)")
        return "\n".join(out)

    def mark(self):
        """A position in the log; wait_log(..., since=mark) looks after it."""
        with self.cond:
            return len(self.lines)

    def find_log(self, regex, since=0, prio=None, limit=None):
        """Matches of regex in the records so far (at most `limit`)."""
        rx = re.compile(regex)
        with self.cond:
            lines = self.lines[since:]
        out = []
        for p, m in lines:
            if prio is None or p == prio:
                mt = rx.search(m)
                if mt:
                    out.append(mt)
                    if limit is not None and len(out) >= limit:
                        break
        return out

    def wait_log(self, regex, timeout=10.0, since=0, prio=None, count=1):
        """Wait until `count` records after `since` match; returns the last match."""
        rx = re.compile(regex)
        end = time.monotonic() + timeout
        pos, found = since, 0
        with self.cond:
            while True:
                while pos < len(self.lines):
                    p, m = self.lines[pos]
                    pos += 1
                    mt = rx.search(m)
                    if mt and (prio is None or p == prio):
                        found += 1
                        if found >= count:
                            return mt
                if self.eof:
                    raise TestFailure(
                        f"daemon exited (status {self.proc.poll()}) before logging "
                        f"{count} x /{regex}/ (saw {found})")
                left = end - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"no log line matching /{regex}/ within {timeout:g} s "
                                      f"(saw {found} of {count})")
                self.cond.wait(min(left, 0.5))

    def wait_listening(self, timeout=10.0):
        m = self.wait_log(LISTEN_RE, timeout)
        return int(m.group("port"))

    def errors(self, since=0):
        """Records at priority err (3) or more urgent."""
        with self.cond:
            return [(p, m) for p, m in self.lines[since:] if 0 <= p <= 3]

    # -- process ----------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"daemon still running {timeout:g} s later")
        self._reader.join(5)
        self._out_reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._reader.join(2)

    def pids(self):
        """The daemon and every process below it (a master and its workers)."""
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass
        return out

    def children(self):
        """The daemon's own child processes (a master's workers), not
        their descendants (LeakSanitizer's tracer under ASan, say)."""
        out = []
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
        return out

    def rss_kib(self):
        """VmRSS summed over the daemon's processes."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (FileNotFoundError, StopIteration):
                pass
        return total

    def cpu_seconds(self):
        """User + system CPU time summed over the daemon's processes."""
        ticks, total = os.sysconf("SC_CLK_TCK"), 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except FileNotFoundError:
                pass
        return total / ticks


# ---------------------------------------------------------------------------
# The suite: cases, deadlines, reporting

class Suite:
    def __init__(self, name, overall_timeout=540):
        ap = argparse.ArgumentParser(description=f"cosockd integration test: {name}")
        ap.add_argument("--cosockd", required=True)
        ap.add_argument("--backend", required=True, choices=["uring", "epoll", "auto"])
        ap.add_argument("--lua-dir", required=True)
        ap.add_argument("-k", dest="only", action="append", default=[],
                        help="run only cases whose name contains this (repeatable)")
        self.opts = ap.parse_args()
        self.name = name
        self.cosockd = os.path.abspath(self.opts.cosockd)
        self.backend = self.opts.backend
        self.lua_dir = os.path.abspath(self.opts.lua_dir)
        self.overall_deadline = time.monotonic() + overall_timeout
        self.cases = []
        self.daemons = []
        self.cleanups = []
        self.lock = threading.Lock()
        self.current = None
        self.case_deadline = None
        raise_nofile()

    def lua(self, name):
        return os.path.join(self.lua_dir, name)

    def daemon(self, *args, **kw):
        return Daemon(self, list(args), **kw)

    def script(self, name, *args, **kw):
        """Start cosockd on tests/lua/<name> with ARGS."""
        return Daemon(self, [self.lua(name)] + list(args), **kw)

    def track(self, d):
        with self.lock:
            self.daemons.append(d)

    def on_cleanup(self, fn):
        """fn() runs when the current case ends (servers, sockets, ...)."""
        with self.lock:
            self.cleanups.append(fn)
        return fn

    def case(self, timeout=60):
        def reg(fn):
            self.cases.append((fn.__name__, fn, timeout))
            return fn
        return reg

    def _watchdog(self):
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self.lock:
                cur, dl = self.current, self.case_deadline
            if now > self.overall_deadline or (dl is not None and now > dl):
                what = cur or "(between cases)"
                print(f"FAIL {self.name}/{what} [{self.backend}]: deadline exceeded "
                      f"({'file' if now > self.overall_deadline else 'case'} timeout)",
                      flush=True)
                self._dump_and_kill()
                sys.stdout.flush()
                os._exit(1)

    def _dump_and_kill(self):
        with self.lock:
            daemons, self.daemons = self.daemons, []
        for d in daemons:
            d.kill()
            print(f"--- daemon log: {' '.join(d.argv)} (exit {d.proc.poll()})")
            print(d.log_text(last=150) or "(empty)")
            print("--- end of daemon log")

    def _cleanup(self):
        with self.lock:
            cleanups, self.cleanups = self.cleanups, []
            daemons, self.daemons = self.daemons, []
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception:
                pass
        for d in daemons:
            d.kill()

    def main(self):
        threading.Thread(target=self._watchdog, daemon=True).start()
        failed, passed = [], 0
        t0 = time.monotonic()
        for name, fn, timeout in self.cases:
            if self.opts.only and not any(k in name for k in self.opts.only):
                continue
            with self.lock:
                self.current = name
                self.case_deadline = time.monotonic() + timeout
            start = time.monotonic()
            try:
                fn()
            except Exception as e:
                failed.append(name)
                kind = "" if isinstance(e, TestFailure) else f"{type(e).__name__}: "
                print(f"FAIL {self.name}/{name} [{self.backend}]: {kind}{e}", flush=True)
                if not isinstance(e, TestFailure):
                    traceback.print_exc(file=sys.stdout)
                with self.lock:
                    self.case_deadline = None
                self._dump_and_kill()
            else:
                passed += 1
                print(f"ok   {self.name}/{name} [{self.backend}] "
                      f"({time.monotonic() - start:.1f} s)", flush=True)
            finally:
                with self.lock:
                    self.case_deadline = None
                self._cleanup()
        with self.lock:
            self.current = None
        total = time.monotonic() - t0
        print(f"{self.name} [{self.backend}]: {passed} passed, {len(failed)} failed "
              f"in {total:.1f} s" + (f" ({', '.join(failed)})" if failed else ""), flush=True)
        sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------
# Sockets

def connect(port, host=LOOPBACK, timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def listener(backlog=128):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, 0))
    s.listen(backlog)
    return s


def unused_port():
    """A port nothing listens on, kept bound so it stays that way: connecting
    to it is refused. Close the returned socket when done."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    return s, s.getsockname()[1]


def free_port():
    """A port free right now, for a daemon that must be told its port in
    advance (every worker of a master binds the same one). Another program
    could take it before the daemon does; on loopback in a test run that
    has not been seen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def recv_exact(s, n, deadline, what="recv"):
    buf = bytearray()
    while len(buf) < n:
        s.settimeout(remaining(deadline, what))
        try:
            chunk = s.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise TestFailure(f"{what}: timed out with {len(buf)} of {n} bytes")
        if not chunk:
            raise TestFailure(f"{what}: EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_until_eof(s, deadline, what="recv", limit=1 << 30):
    """All bytes up to EOF; a reset counts as EOF. Returns (data, how)."""
    buf = bytearray()
    while len(buf) < limit:
        s.settimeout(remaining(deadline, what))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            raise TestFailure(f"{what}: no EOF in time ({len(buf)} bytes so far: {_short(bytes(buf[:80]))})")
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    raise TestFailure(f"{what}: more than {limit} bytes")


def expect_closed(s, deadline, what="connection"):
    """The peer closes s (EOF or reset) without sending anything more."""
    data, how = recv_until_eof(s, deadline, what)
    check(data == b"", f"{what}: expected close, got {_short(data)}")
    return how


def exchange(s, data, deadline, what="exchange"):
    """Send data while reading the same number of bytes back (so a peer with
    flow control cannot deadlock us); returns what came back."""
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    view, sent, got = memoryview(data), 0, bytearray()
    try:
        while len(got) < len(data):
            events = sel.select(min(remaining(deadline, what), 1.0))
            for _key, ev in events:
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(1 << 20)
                    except BlockingIOError:
                        chunk = None
                    if chunk == b"":
                        raise TestFailure(f"{what}: EOF after {len(got)} of {len(data)} bytes")
                    if chunk:
                        got += chunk
                if ev & selectors.EVENT_WRITE and sent < len(data):
                    try:
                        sent += s.send(view[sent:sent + (1 << 20)])
                    except BlockingIOError:
                        pass
                    if sent == len(data):
                        sel.modify(s, selectors.EVENT_READ)
    finally:
        sel.close()
        s.setblocking(True)
    return bytes(got)


class Server(threading.Thread):
    """A loopback TCP server for the daemon to talk to: handler(conn) runs on
    its own thread per connection. Errors in handlers are kept in .errors."""

    def __init__(self, suite, handler, backlog=128):
        super().__init__(daemon=True)
        self.sock = listener(backlog)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.conns = []
        self.accepted = threading.Semaphore(0)
        self.stopping = False
        suite.on_cleanup(self.stop)
        self.start()

    def run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.release()
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        except Exception as e:  # reported by the test through .errors
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            try:
                c.close()
            except OSError:
                pass

    def wait_accepted(self, timeout=10.0):
        check(self.accepted.acquire(timeout=timeout), "server: no connection arrived in time")

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def echo_handler(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(d)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class PatternSource:
    """Deterministic pseudo-random bytes, cheap to produce in large amounts:
    slices of one random block, each prefixed by a running counter."""

    def __init__(self, seed=1, block=1 << 20):
        import random
        self.block = random.Random(seed).randbytes(block)
        self.n = 0

    def chunk(self, size):
        self.n += 1
        head = self.n.to_bytes(8, "big")
        off = (self.n * 7919) % (len(self.block) - size) if size < len(self.block) else 0
        return (head + self.block[off:off + size])[:size]


def no_lua_errors(d, since=0):
    errs = d.errors(since)
    check(not errs, f"errors logged: {errs[:5]}")


def wait_seed12b_queue_full(d, timeout=120):
    """Seed Example 12b's writer stops at "Socket queue full <queued> <limit>"
    (not "Socket error"); returns (queued, limit) after checking that the
    queue reached the default limit of 16 KiB."""
    m = d.wait_log(r"^Socket (queue full|error)\t(\S+)(?:\t(\S+))?$", timeout=timeout)
    check(m.group(1) == "queue full", f"12b's write failed: {m.group(0)!r}")
    queued, limit = int(m.group(2)), int(m.group(3))
    check_eq(limit, 16384, "sock:queuelen() (the default limit)")
    check(queued >= limit, f"write returned nil,{queued}: below the queue limit {limit}")
    return queued, limit


def check_lua_checks(d, expected, timeout=45.0):
    """Wait for a check script's "CHECKS DONE"; every name in expected must
    have been reported, and none may have failed."""
    d.wait_log(r"CHECKS DONE$", timeout=timeout)
    results = {}
    for m in d.find_log(r"CHECK (\S+) (ok|FAIL.*)$"):
        results.setdefault(m.group(1), []).append(m.group(2))
    failed = sorted(f"{k}: {v[-1]}" for k, v in results.items() if any(r != "ok" for r in v))
    missing = [c for c in expected if c not in results]
    check(not failed and not missing,
          "; ".join(failed + [f"{c}: not reported" for c in missing]))


def full_backlog_port(suite):
    """A listener with backlog 0 and its queue filled: a further SYN gets no
    answer, so connecting to it times out (loopback only)."""
    ls = listener(backlog=0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((LOOPBACK, port))
        except BlockingIOError:
            pass
        fillers.append(c)
    suite.on_cleanup(lambda: [s.close() for s in fillers + [ls]])
    return port


def stop_and_check_exit(d, sig=signal.SIGTERM, timeout=10.0, want=0):
    d.signal(sig)
    rc = d.wait_exit(timeout)
    check_eq(rc, want, "daemon exit status")


# ---------------------------------------------------------------------------
# Resources (leak checks)

def fd_count(pid):
    """Open file descriptors of process pid (/proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a true value, for state that has no
    signal to wait on (a descriptor count, a file appearing); returns that
    value, or fails after timeout seconds saying what was awaited."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            raise TestFailure(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
