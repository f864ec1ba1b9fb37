"""cmp_procs - starting, checking and stopping the processes bench/compare
runs: servers under test, backends and load generators.

Every process is started in a session (and so a process group) of its own,
so that whatever it forks (nginx workers, socat children, cosockd workers)
can be found and ended with it, and a Ctrl-C on the terminal reaches only
compare, which then stops them itself. Live processes are kept in a
registry; Procs.stop_all() ends every one of them and is called from a
finally clause and on SIGTERM.

Only 127.0.0.0/8 addresses are ever used.
"""

import base64
import errno
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

HOST = "127.0.0.1"


class Failed(Exception):
    """A run could not be completed; the message says why."""


class Ports:
    """Hands out a fresh TCP port on 127.0.0.1 per server, from base
    upwards (wrapping after span), skipping ports something else holds."""

    def __init__(self, base, span=2000, check=True):
        self.base, self.span, self.check = base, span, check
        self.next = base

    def take(self):
        for _ in range(self.span):
            p = self.next
            self.next = self.base + (self.next + 1 - self.base) % self.span
            if not self.check or port_free(p):
                return p
        raise Failed("no free port in 127.0.0.1:%d-%d" % (self.base, self.base + self.span - 1))


def port_free(port):
    """Can a listener bind 127.0.0.1:port (with SO_REUSEADDR, as servers
    do, so ports in TIME_WAIT count as free)?"""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Proc:
    """One started process (and its process group)."""

    def __init__(self, name, argv, popen, log):
        self.name, self.argv, self.popen, self.log = name, argv, popen, log

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=5):
        try:
            with open(self.log, "rb") as f:
                data = f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.strip().splitlines()[-lines:])


class Procs:
    """The registry of live processes."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.live = []
        self.count = 0

    def spawn(self, name, argv, cwd=None):
        """Start argv with stdout+stderr to a log file in the work dir."""
        self.count += 1
        log = os.path.join(self.workdir, "%03d-%s.log" % (self.count, _safe(name)))
        with open(log, "wb") as out:
            try:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=cwd,
                                     start_new_session=True)
            except OSError as e:
                raise Failed("%s: cannot start %s: %s" % (name, argv[0], e.strerror))
        proc = Proc(name, argv, p, log)
        self.live.append(proc)
        return proc

    def run(self, name, argv, timeout, cwd=None):
        """Run argv to completion (bounded by timeout seconds); returns
        (exit status, its output)."""
        proc = self.spawn(name, argv, cwd=cwd)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc, grace=2)
            raise Failed("%s did not finish within %.0f s; stopped it. Last output:\n%s"
                         % (name, timeout, proc.log_tail()))
        finally:
            self.stop(proc, grace=2)
        with open(proc.log, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        return proc.popen.returncode, out

    def stop(self, proc, grace=10.0):
        """SIGTERM to the process; after `grace` seconds SIGKILL. Then
        whatever is left of its process group gets the same treatment.
        Returns its exit status."""
        if proc is None:
            return None
        pgid = proc.pid  # start_new_session: the group is named by the pid
        if proc.alive():
            _signal(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.popen.wait()
        # Leftovers in the group (socat children, workers of a master
        # that died): TERM, a short wait, then KILL.
        if _group_alive(pgid):
            _killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + 2
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(pgid):
                _killpg(pgid, signal.SIGKILL)
                deadline = time.monotonic() + 2
                while _group_alive(pgid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        if proc in self.live:
            self.live.remove(proc)
        return proc.popen.returncode

    def stop_all(self):
        for proc in list(reversed(self.live)):
            try:
                self.stop(proc, grace=3)
            except Exception:  # keep going: nothing may be left behind
                pass


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_listening(proc, port, timeout=10.0):
    """Wait until a TCP connect to 127.0.0.1:port succeeds; Failed when the
    process exits first or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last = "nothing tried"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise Failed("%s exited (status %s) before listening on %s:%d. Last output:\n%s"
                         % (proc.name, proc.popen.returncode, HOST, port, proc.log_tail()))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect((HOST, port))
            return
        except OSError as e:
            last = e.strerror or str(e)
        finally:
            s.close()
        time.sleep(0.05)
    raise Failed("%s is not listening on %s:%d after %.0f s (last connect: %s). Last output:\n%s"
                 % (proc.name, HOST, port, timeout, last, proc.log_tail()))


# ---- warm-up requests: one tiny exchange through the server, which also
# proves it serves (through a proxy: that the proxy really forwards).

def _connect(port, timeout):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def warm_http(port, timeout=3.0, path="/", tls=False):
    """GET path (over TLS, the certificate not checked, with tls); returns
    (status line, body). Reads the body by Content-Length, or to EOF when
    there is none."""
    s = _connect(port, timeout)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1."):
            raise Failed("warm-up GET through 127.0.0.1:%d: no HTTP response (got %r)"
                         % (port, data[:80]))
        length = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while length is None or len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        if length is not None and len(body) < length:
            raise Failed("warm-up GET through 127.0.0.1:%d: body cut short (%d of %d bytes)"
                         % (port, len(body), length))
        return head.split(b"\r\n")[0].decode("latin-1"), body
    except OSError as e:  # ssl.SSLError is one
        raise Failed("warm-up GET%s through 127.0.0.1:%d: %s" % (" over TLS" if tls else "", port, e))
    finally:
        s.close()


def warm_https(port, timeout=3.0, path="/"):
    return warm_http(port, timeout, path, tls=True)


def warm_echo(port, timeout=3.0, msg=b"compare warm-up\n"):
    s = _connect(port, timeout)
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if got != msg:
            raise Failed("warm-up echo on 127.0.0.1:%d: sent %r, got back %r" % (port, msg, got))
    except OSError as e:
        raise Failed("warm-up echo on 127.0.0.1:%d: %s" % (port, e))
    finally:
        s.close()


def warm_sink(port, timeout=3.0):
    """A sink answers nothing: send a little and check the connection is
    not refused or reset."""
    s = _connect(port, timeout)
    try:
        s.sendall(b"\0" * 4096)
        time.sleep(0.05)
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                raise Failed("warm-up send to sink via 127.0.0.1:%d: closed at once" % port)
        except BlockingIOError:
            pass
    except OSError as e:
        if e.errno not in (errno.EAGAIN,):
            raise Failed("warm-up send to sink via 127.0.0.1:%d: %s" % (port, e))
    finally:
        s.close()


def warm_source(port, timeout=3.0):
    s = _connect(port, timeout)
    try:
        if not s.recv(65536):
            raise Failed("warm-up read from source via 127.0.0.1:%d: EOF, no data" % port)
    except OSError as e:
        raise Failed("warm-up read from source via 127.0.0.1:%d: %s" % (port, e))
    finally:
        s.close()


def ws_accept(key):
    """The Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455)."""
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def ws_frame(opcode, payload, mask=True):
    """One frame with FIN set; masked with a random mask, as a client's."""
    n = len(payload)
    head = bytes([0x80 | opcode])
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


def ws_read_frame(s, buf):
    """(fin, opcode, payload, rest of buf) of the next unmasked frame."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise Failed("EOF inside a WebSocket frame")
            buf += chunk
    need(2)
    fin, opcode, n, pos = buf[0] >> 7, buf[0] & 0x0F, buf[1] & 0x7F, 2
    if buf[1] & 0x80:
        raise Failed("masked frame from the server")
    if n >= 126:
        ext = 2 if n == 126 else 8
        need(2 + ext)
        n, pos = int.from_bytes(buf[2:2 + ext], "big"), 2 + ext
    need(pos + n)
    return fin, opcode, buf[pos:pos + n], buf[pos + n:]


def warm_ws(port, timeout=3.0, path="/echo", msg=b"compare warm-up"):
    """Upgrade (checking Sec-WebSocket-Accept), have one binary message
    echoed (whole, or in fragments), then close with 1000."""
    s = _connect(port, timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % (path, HOST, port, key)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise Failed("warm-up WebSocket upgrade on 127.0.0.1:%d: EOF after %r" % (port, data[:200]))
            data += chunk
        head, _, buf = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise Failed("warm-up WebSocket upgrade on 127.0.0.1:%d: %r" % (port, lines[0]))
        accept = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("sec-websocket-accept:")]
        if accept != [ws_accept(key)]:
            raise Failed("warm-up WebSocket upgrade on 127.0.0.1:%d: Sec-WebSocket-Accept %r, want %r"
                         % (port, accept, ws_accept(key)))
        s.sendall(ws_frame(0x2, msg))
        got, opcode = b"", None
        while True:
            fin, op, payload, buf = ws_read_frame(s, buf)
            if op == 0x9:
                s.sendall(ws_frame(0xA, payload))
                continue
            opcode = op if opcode is None else opcode
            got += payload
            if fin:
                break
        if opcode != 0x2 or got != msg:
            raise Failed("warm-up WebSocket echo on 127.0.0.1:%d: sent binary %r, got opcode %s %r"
                         % (port, msg, opcode, got))
        s.sendall(ws_frame(0x8, (1000).to_bytes(2, "big")))
        try:  # until the server's Close (or its EOF: the run does not hinge on that)
            op = None
            while op != 0x8:
                _, op, _, buf = ws_read_frame(s, buf)
        except Failed:
            pass
    except OSError as e:
        raise Failed("warm-up WebSocket echo on 127.0.0.1:%d: %s" % (port, e))
    finally:
        s.close()


WARMUPS = {"http": warm_http, "https": warm_https, "echo": warm_echo, "sink": warm_sink,
           "source": warm_source, "ws": warm_ws}
