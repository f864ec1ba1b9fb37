#!/usr/bin/python3
"""TLS (wolfSSL under ba.socket): seed 003's Example 3 (HTTPS on pool
threads, with the generated default certificate and with a CA-signed one)
and Example 11's pattern (client connect with a shark object, from a
cosocket, a pool thread and top-level code) against `openssl s_server`;
what sock:trusted() says about a wrong name, an unknown CA and an expired
certificate, and verify=true refusing them; STARTTLS with sock:upgrade; a
burst of 1,000 handshakes beside plain echo traffic (its latency bounded);
bad input (garbage, stalled and truncated handshakes, a missing
close_notify) with no leaked sockets or descriptors; `cosockd proxy` with
--tls-cert/--tls-key and --upstream-tls; session resumption; and the TLS
object API checked by a script.

A test PKI is made with openssl at run time in a temporary directory (a
root CA; leaf certificates for localhost/127.0.0.1, for a wrong name, from
an unknown CA, and an expired one) and removed at the end.
"""

import atexit
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time

from harness import (LISTEN_RE, LOOPBACK, PatternSource, Server, Suite, TestFailure, _die_with_parent,
                     check, check_eq, check_lua_checks, connect, deadline_after, echo_handler,
                     fd_count, free_port, no_lua_errors, recv_until_eof, remaining,
                     stop_and_check_exit, unused_port, wait_until)

suite = Suite("tls", overall_timeout=540)

OPENSSL = shutil.which("openssl") or "openssl"
CURL = shutil.which("curl") or "curl"

# ---------------------------------------------------------------------------
# The test PKI

CA_CNF = """\
[ ca ]
default_ca = this_ca
[ this_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ leaf_localhost ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,IP:127.0.0.1
[ leaf_wrong ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:wrong.example
"""

LEAF_SUBJECT = "/C=SE/ST=Stockholm/L=Kista/O=cosockd tests/OU=tls/CN=localhost"
CA_CN = "cosockd test CA"


def openssl(*argv):
    r = subprocess.run([OPENSSL, *argv], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise TestFailure(f"openssl {' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


class CA:
    """A root CA (ECDSA P-256) with an `openssl ca` database of its own."""

    def __init__(self, root, name, cn):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(dir=self.dir))
        self.key = os.path.join(self.dir, "ca.key")
        self.pem = os.path.join(self.dir, "ca.pem")
        openssl("req", "-config", self.cnf, "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key, "-out", self.pem,
                "-subj", f"/O=cosockd tests/CN={cn}", "-days", "30", "-extensions", "v3_ca")

    def issue(self, out_dir, name, subj, ext, start=None, end=None):
        """A leaf certificate and its key (unencrypted PKCS#8) as files;
        start/end ("YYYYMMDDHHMMSSZ") give its validity, else 30 days from now."""
        key = os.path.join(out_dir, name + ".key")
        csr = os.path.join(out_dir, name + ".csr")
        pem = os.path.join(out_dir, name + ".pem")
        openssl("req", "-config", self.cnf, "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                "-subj", subj)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "30"]
        openssl("ca", "-config", self.cnf, "-batch", "-notext", "-in", csr, "-out", pem,
                "-cert", self.pem, "-keyfile", self.key, "-extensions", ext, *dates)
        os.unlink(csr)
        return pem, key


class PKI:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cosockd-tls-pki-")
        atexit.register(shutil.rmtree, self.dir, True)
        ca = CA(self.dir, "ca", CA_CN)
        other = CA(self.dir, "otherca", "cosockd unknown CA")
        self.ca = ca.pem
        self.other_ca = other.pem
        self.cert, self.key = ca.issue(self.dir, "localhost", LEAF_SUBJECT, "leaf_localhost")
        self.wrong_cert, self.wrong_key = ca.issue(self.dir, "wrongname",
                                                   "/O=cosockd tests/CN=wrong.example", "leaf_wrong")
        self.unknown_cert, self.unknown_key = other.issue(self.dir, "unknownca", LEAF_SUBJECT,
                                                          "leaf_localhost")
        self.expired_cert, self.expired_key = ca.issue(self.dir, "expired", LEAF_SUBJECT,
                                                       "leaf_localhost", "20200101000000Z",
                                                       "20210101000000Z")
        self.enc_key = os.path.join(self.dir, "localhost-enc.key")
        openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", self.key, "-out", self.enc_key,
                "-passout", "pass:sharkssl")


_pki = None


def pki():
    global _pki
    if _pki is None:
        _pki = PKI()
    return _pki


def state_dir(prefix="cosockd-tls-state-"):
    """An empty directory for the daemon's state (ba.openio("vm")), removed
    when the case ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    suite.on_cleanup(lambda: shutil.rmtree(d, True))
    return os.path.realpath(d)


def tls_script(name, *args, state=None, **kw):
    """cosockd on tests/lua/<name>; STATE_DIRECTORY is a fresh directory
    unless given, so nothing is written under $HOME."""
    env = dict(kw.pop("env", None) or {})
    env.setdefault("STATE_DIRECTORY", state or state_dir())
    return suite.script(name, *args, env=env, **kw)


def client_ctx(cafile=None):
    ctx = ssl.create_default_context(cafile=cafile or pki().ca)
    return ctx


def tls_connect(port, deadline, ctx=None, host="localhost"):
    """A Python TLS client connection (certificate and name verified)."""
    raw = connect(port, timeout=remaining(deadline, "TLS connect"))
    try:
        return (ctx or client_ctx()).wrap_socket(raw, server_hostname=host)
    except Exception:
        raw.close()
        raise


def ssl_exchange(s, data, deadline, what):
    """sendall then read len(data) bytes back over a TLS socket."""
    s.settimeout(remaining(deadline, what))
    s.sendall(data)
    buf = bytearray()
    while len(buf) < len(data):
        s.settimeout(remaining(deadline, what))
        try:
            chunk = s.recv(min(65536, len(data) - len(buf)))
        except socket.timeout:
            raise TestFailure(f"{what}: timed out with {len(buf)} of {len(data)} bytes")
        if not chunk:
            raise TestFailure(f"{what}: EOF after {len(buf)} of {len(data)} bytes")
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------------------
# Peers

class SServer:
    """`openssl s_server` on 127.0.0.1 (a port of its own) with one
    certificate; mode is its extra options (-rev: echo lines reversed;
    -www: a status page for GET /). Stopped when the case ends."""

    def __init__(self, cert, key, *mode):
        self.argv = [OPENSSL, "s_server", "-accept", f"{LOOPBACK}:0", "-cert", cert, "-key", key,
                     *mode]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent())
        self.lines = []
        self.cond = threading.Condition()
        self.port = None
        threading.Thread(target=self._read, daemon=True).start()
        suite.on_cleanup(self.stop)
        with self.cond:
            if not self.cond.wait_for(lambda: self.port or self.proc.poll() is not None, 10):
                raise TestFailure(f"openssl s_server printed no ACCEPT line: {self.output()}")
        check(self.port, f"openssl s_server failed: {self.output()}")

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                m = re.match(r"ACCEPT .*:(\d+)$", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def output(self, last=30):
        with self.cond:
            return "\n".join(self.lines[-last:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def first_flight(obj, out):
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def client_hello():
    """A ClientHello from Python's ssl, made without any connection."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return first_flight(client_ctx().wrap_bio(inc, out, server_hostname="localhost"), out)


class RawTLS:
    """A TLS client over a plain socket through memory BIOs, so a test can
    stop the handshake where it likes and close without close_notify."""

    def __init__(self, port, ctx=None):
        self.sock = connect(port)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = (ctx or client_ctx()).wrap_bio(self.inc, self.out, server_hostname="localhost")
        suite.on_cleanup(self.sock.close)

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self, deadline, what):
        self.sock.settimeout(remaining(deadline, what))
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TestFailure(f"{what}: timed out")
        if not d:
            self.inc.write_eof()
            raise TestFailure(f"{what}: EOF from the server")
        self.inc.write(d)

    def client_hello(self):
        """The first flight (ClientHello), not sent."""
        return first_flight(self.obj, self.out)

    def handshake(self, deadline):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self._feed(deadline, "TLS handshake")

    def write(self, data):
        self.obj.write(data)
        self.flush()

    def read_exact(self, n, deadline, what="TLS read"):
        buf = bytearray()
        while len(buf) < n:
            try:
                buf += self.obj.read(n - len(buf))
            except ssl.SSLWantReadError:
                self._feed(deadline, what)
        return bytes(buf)

    def send_close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # sent ours; the peer's has not been read yet
        self.flush()

    def peer_close_notify(self, deadline):
        """Read to EOF; True if the server's close_notify came before it."""
        data, _how = recv_until_eof(self.sock, deadline, "server close")
        self.inc.write(data)
        self.inc.write_eof()
        try:
            self.obj.unwrap()
            return True
        except (ssl.SSLError, ssl.SSLEOFError):
            return False


def curl_https(port, cafile, path="/", host="localhost", timeout=10):
    r = subprocess.run([CURL, "-sS", "--max-time", str(timeout), "--cacert", cafile,
                        "--resolve", f"{host}:{port}:{LOOPBACK}", f"https://{host}:{port}{path}"],
                       capture_output=True, timeout=timeout + 5)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


# ---------------------------------------------------------------------------
# 1. Seed Example 3: HTTPS "Hello World!" on pool threads

GENERATED_RE = r"(?i)(generat|creat|wrote|writ|made).*(MakoServer|\.certificate)"


def check_example3_answers(port, cafile, what):
    for i in range(5):
        rc, out, err = curl_https(port, cafile)
        check_eq(rc, 0, f"{what}: curl {i} exit status ({err.strip()})")
        check_eq(out, b"Hello World!", f"{what}: curl {i} body")
    # 20 at once: more than the 8 pool threads, so jobs queue
    results = []

    def client():
        try:
            with tls_connect(port, deadline_after(20), client_ctx(cafile)) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                data, _ = recv_until_eof(s, deadline_after(20), "HTTPS response")
                results.append(data)
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(repr(e).encode())
    ts = [threading.Thread(target=client) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    bad = [r for r in results if not (r.startswith(b"HTTP/1.0 200 OK\r\n")
                                      and r.endswith(b"\r\n\r\nHello World!"))]
    check(len(results) == 20 and not bad, f"{what}: {len(results)} answers, bad: {bad[:3]}")


@suite.case(timeout=90)
def example03_https_generated_certificate():
    sdir = state_dir()
    d = tls_script("tls_seed03.lua", 0, state=sdir)
    port = d.wait_listening()
    pem = os.path.join(sdir, ".certificate", "MakoServer.pem")
    key = os.path.join(sdir, ".certificate", "MakoServer.key")
    check(os.path.isfile(pem) and os.path.isfile(key),
          f"no .certificate/MakoServer.pem/.key in the state directory: {os.listdir(sdir)}")
    check(d.find_log(GENERATED_RE), "generating the default certificate was not logged")
    text = openssl("x509", "-in", pem, "-noout", "-subject", "-issuer", "-text")
    check(re.search(r"subject=.*CN ?= ?localhost", text), f"generated certificate's subject: {text[:300]}")
    check("prime256v1" in text or "P-256" in text, "generated certificate is not ECDSA P-256")
    mode = stat.S_IMODE(os.stat(key).st_mode)
    if mode & 0o077:
        print(f"  NOTE: the generated private key is mode {mode:o} (readable by others)", flush=True)
    check_example3_answers(port, pem, "generated certificate")
    no_lua_errors(d)
    stop_and_check_exit(d)
    # A second start keeps the certificate it made the first time.
    before = open(pem, "rb").read()
    d2 = tls_script("tls_seed03.lua", 0, state=sdir)
    port2 = d2.wait_listening()
    check_eq(open(pem, "rb").read(), before, "MakoServer.pem after a second start")
    check(not d2.find_log(GENERATED_RE), "the certificate was generated again although it existed")
    rc, out, err = curl_https(port2, pem)
    check(rc == 0 and out == b"Hello World!", f"second start: curl {rc} {out!r} {err}")
    stop_and_check_exit(d2)


@suite.case(timeout=90)
def example03_https_ca_signed_certificate():
    sdir = state_dir()
    os.makedirs(os.path.join(sdir, ".certificate"))
    shutil.copy(pki().cert, os.path.join(sdir, ".certificate", "MakoServer.pem"))
    shutil.copy(pki().key, os.path.join(sdir, ".certificate", "MakoServer.key"))
    d = tls_script("tls_seed03.lua", 0, state=sdir)
    port = d.wait_listening()
    check(not d.find_log(GENERATED_RE), "a certificate was generated although one existed")
    check_eq(open(os.path.join(sdir, ".certificate", "MakoServer.pem"), "rb").read(),
             open(pki().cert, "rb").read(), "MakoServer.pem (must be left alone)")
    check_example3_answers(port, pki().ca, "CA-signed certificate")
    # curl does not know the CA without --cacert: the server really is
    # presenting the CA-signed certificate, and verification is on.
    rc, _, err = curl_https(port, pki().other_ca)
    check(rc != 0, "curl trusted the server with the wrong CA file")
    no_lua_errors(d)
    stop_and_check_exit(d)


# ---------------------------------------------------------------------------
# 2. Example 11's pattern: connect with a shark object, sock:trusted()

def parse_records(d, tag):
    """RESULT/CONN-style records: {label: {key: value}}."""
    out = {}
    for m in d.find_log(rf"^{tag}\t(.*)$"):
        parts = m.group(1).split("\t")
        out[parts[0]] = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return out


def run_example11(mode):
    p = pki()
    certs = {
        "right": (p.cert, p.key),
        "wrong": (p.wrong_cert, p.wrong_key),
        "unknown": (p.unknown_cert, p.unknown_key),
        "expired": (p.expired_cert, p.expired_key),
    }
    # two s_servers per certificate, for the verify=false and verify=true
    # clients: s_server serves one connection at a time, and top-level code
    # connects them all before any is read from
    servers = {k: (SServer(c, k_, "-rev"), SServer(c, k_, "-rev")) for k, (c, k_) in certs.items()}
    d = tls_script("tls_client.lua", mode, p.ca,
                   *[f"{k}:{a.port}:{b.port}" for k, (a, b) in servers.items()])
    d.wait_log(r"^CLIENT DONE$", timeout=45)
    res = parse_records(d, "RESULT")
    problems = []

    def want(label, key, pred, desc):
        got = res.get(label, {}).get(key)
        if got is None or not pred(got):
            problems.append(f"{label}.{key} = {got!r}, want {desc}")

    eq = lambda v: (lambda g: g == v)  # noqa: E731
    want("store", "added", eq("1"), "1 (certs added)")
    for label in servers:
        r = res.get(label, {})
        if "error" in r:
            problems.append(f"{label}: Lua error {r['error']}")
        want(label, "connect", eq("ok"), "ok")
        want(label, "write", lambda g: g.split(",")[0] == "true", "true[, queued]")
        want(label, "data", eq("reversed"), "the line reversed by s_server -rev")
        want(label, "cipher", lambda g: re.fullmatch(r"[A-Z0-9_]+", g) and not g.startswith("TLS_"),
             "a suite name such as AES_256_GCM_SHA384")
        want(label, "close", eq("true"), "true")
        want(label, "dates", lambda g: g != "nil|nil", "tzfrom|tzto")
    want("right", "trusted", eq("true"), "true")
    want("right", "trusted_localhost", eq("true"), "true")
    want("right", "trusted_other", eq("nil,cert,name mismatch"), "nil,cert,name mismatch")
    want("right", "cert", eq("SE/Stockholm/Kista/cosockd tests/tls/localhost"),
         "the subject's C/ST/L/O/OU/CN")
    want("right", "issuer_cn", eq(CA_CN), CA_CN)
    want("right", "san", lambda g: "localhost" in g.split("|"), "a list holding localhost")
    want("right", "trustedCA", eq("true"), "true")
    want("wrong", "trusted", eq("nil,cert,name mismatch"), "nil,cert,name mismatch")
    want("wrong", "trusted_localhost", eq("nil,cert,name mismatch"), "nil,cert,name mismatch")
    want("wrong", "trustedCA", eq("true"), "true")
    want("unknown", "trusted", eq("nil,cn,unknown CA"), "nil,cn,unknown CA")
    want("unknown", "trustedCA", eq("false"), "false")
    want("expired", "trusted", eq("nil,certcn,expired"), "nil,certcn,expired")
    want("expired", "trustedCA", eq("true"), "true")
    # verify=true: the trusted one connects, the others fail the connect
    want("v-right", "connect", eq("ok"), "ok")
    want("v-right", "close", eq("true"), "true")
    want("v-right", "data", eq("reversed"), "the reversed line")
    want("v-right", "trusted", eq("true"), "true")
    for label in ("wrong", "unknown", "expired"):
        want("v-" + label, "connect", lambda g: g.startswith("nil,sslnottrusted"),
             "nil,sslnottrusted")
    check(not problems, f"[{mode}] " + "; ".join(problems))
    no_lua_errors(d)
    if d.alive():
        stop_and_check_exit(d)


@suite.case(timeout=60)
def example11_connect_from_cosocket():
    run_example11("cosocket")


@suite.case(timeout=60)
def example11_connect_from_pool_thread():
    run_example11("thread")


@suite.case(timeout=60)
def example11_connect_from_top_level():
    run_example11("toplevel")


@suite.case(timeout=60)
def tls_connect_errors():
    """A plain server answering the ClientHello with text, a TLS 1.2 server
    that wants a client certificate (it sends an alert in the handshake), a
    server that accepts and never answers, and a refused port."""
    def plain(c):
        c.settimeout(10)
        c.recv(4096)
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS\n")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki().cert, pki().key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki().ca)

    def wants_client_cert(c):
        c.settimeout(10)
        try:
            ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            pass  # expected: no client certificate

    p_srv, a_srv = Server(suite, plain), Server(suite, wants_client_cert)
    silent = socket.socket()
    silent.bind((LOOPBACK, 0))
    silent.listen(16)  # the kernel accepts; nobody reads
    suite.on_cleanup(silent.close)
    held, refused = unused_port()
    suite.on_cleanup(held.close)
    d = tls_script("tls_connect_errors.lua", f"plain:{p_srv.port}", f"alert:{a_srv.port}",
                   f"silent:{silent.getsockname()[1]}", f"refused:{refused}")
    d.wait_log(r"^ERRORS DONE$", timeout=30)
    got = {(m.group(1), m.group(2)): (m.group(3), int(m.group(4)))
           for m in d.find_log(r"^CONNERR\t(\S+)\t(\S+)\t(.*)\tms=(\d+)$")}
    problems = []
    for mode in ("cosocket", "thread"):
        def want(label, pred, desc):
            v = got.get((mode, label))
            if v is None or not pred(*v):
                problems.append(f"{mode} {label}: {v!r}, want {desc}")
        want("plain", lambda r, ms: r.startswith("nil,sslhandshake"), "nil,sslhandshake")
        want("alert", lambda r, ms: r.startswith("nil,sslalertrecv"), "nil,sslalertrecv")
        want("silent", lambda r, ms: r.split(",")[:2] in (["nil", "sslhandshake"], ["nil", "timeout"])
             and 400 <= ms <= 3000, "nil,sslhandshake|timeout after the 500 ms handshake_timeout")
        want("refused", lambda r, ms: r.startswith("nil,cannotconnect"), "nil,cannotconnect")
    print("  " + "; ".join(f"{m} {lbl}: {v[0]} ({v[1]} ms)" for (m, lbl), v in sorted(got.items())),
          flush=True)
    check(not problems, "; ".join(problems))
    no_lua_errors(d)


# ---------------------------------------------------------------------------
# 3. STARTTLS: sock:upgrade on a connection that already spoke plain text

def starttls_server():
    result = {}
    done = threading.Event()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki().cert, pki().key)

    def read_line(f, what):
        line = f.readline(1000)
        check(line.endswith(b"\n"), f"{what}: no complete line ({line!r})")
        return line

    def handler(c):
        try:
            serve(c)
        finally:
            done.set()

    def serve(c):
        c.settimeout(10)
        c.sendall(b"220 cosockd-test ready\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = c.recv(1)  # byte by byte: nothing of the TLS hello is eaten
            if not chunk:
                result["plain"] = buf
                return
            buf += chunk
        result["plain"] = buf
        if buf != b"STARTTLS\r\n":
            return
        c.sendall(b"220 go ahead\r\n")
        ss = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
        result["version"] = ss.version()
        f = ss.makefile("rb")
        result["tls_line"] = read_line(f, "line over TLS")
        ss.sendall(b"pong " + result["tls_line"])
        try:
            rest = ss.recv(100)
            result["close"] = "close_notify" if rest == b"" else f"data {rest!r}"
        except ssl.SSLEOFError:
            result["close"] = "EOF without close_notify"
        except OSError as e:
            result["close"] = f"{type(e).__name__}: {e}"
    return Server(suite, handler), result, done


def run_starttls(mode):
    srv, result, done = starttls_server()
    d = tls_script("tls_starttls.lua", srv.port, pki().ca, mode)
    d.wait_log(r"^STARTTLS DONE$", timeout=20)
    steps = {}
    for m in d.find_log(r"^STEP\t(\S+)\t(.*)$"):
        steps[m.group(1)] = m.group(2)
    want = {
        "connect": "ok,nil",
        "plain_cipher": "nil,sslnotenabled",
        "greeting": "220 cosockd-test ready\\r\\n",
        "write_starttls": "true*",
        "go_ahead": "220 go ahead\\r\\n",
        "upgrade": "true",
        "cipher_type": "string",
        "trusted_localhost": "true",
        "trusted_default": "true",
        "write_ping": "true*",
        "pong": "pong ping over tls\\n",
        "upgrade_again": "false",
        "close": "true",
        "upgrade_closed": "false",
    }
    def matches(got, v):  # "true*": true and maybe more values ("true,10": true, queued)
        return got == v or (v.endswith("*") and got is not None
                            and got.split(",")[0] == v[:-1])
    bad = [f"{k} = {steps.get(k)!r}, want {v!r}" for k, v in want.items()
           if not matches(steps.get(k), v)]
    if "error" in steps:
        bad.insert(0, f"Lua error: {steps['error']}")
    check(not bad, f"[{mode}] " + "; ".join(bad))
    check(done.wait(10), "the STARTTLS peer did not finish")
    check_eq(result.get("plain"), b"STARTTLS\r\n", "plain command the peer read")
    check_eq(result.get("tls_line"), b"ping over tls\n", "line the peer read over TLS")
    check_eq(result.get("close"), "close_notify", "how the client closed (sock:close on TLS)")
    check(not srv.errors, f"STARTTLS peer: {srv.errors}")
    no_lua_errors(d)


@suite.case(timeout=40)
def starttls_upgrade_in_cosocket():
    run_starttls("cosocket")


@suite.case(timeout=40)
def starttls_upgrade_on_pool_thread():
    run_starttls("thread")


# ---------------------------------------------------------------------------
# Server side: a write queued before the handshake; "r"-mode TLS cosockets

@suite.case(timeout=40)
def server_write_before_handshake_is_sent_after_it():
    d = tls_script("tls_echo.lua", pki().cert, pki().key, "", "greet")
    port = int(d.wait_log(r"TLS echo listening on [0-9.]+:(\d+)").group(1))
    deadline = deadline_after(20)
    for i in range(3):
        with tls_connect(port, deadline) as s:
            s.settimeout(remaining(deadline, "greeting"))
            got = b""
            while len(got) < 6:
                chunk = s.recv(6 - len(got))
                check(chunk, f"connection {i}: EOF before the greeting ({got!r})")
                got += chunk
            check_eq(got, b"hello\n", f"connection {i}: greeting written before the handshake")
            check_eq(ssl_exchange(s, b"and echo", deadline, "echo"), b"and echo", "echo after it")
    failed = [m.group(0) for m in d.find_log(r"^GREET failed.*")]
    check(not failed, f"the write before the handshake: {failed[:3]}")
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=40)
def r_mode_tls_echo():
    d = tls_script("tls_echo.lua", pki().cert, pki().key, "", "r")
    port = int(d.wait_log(r"TLS echo listening on [0-9.]+:(\d+)").group(1))
    deadline = deadline_after(30)
    src = PatternSource(4)
    conns = [tls_connect(port, deadline) for _ in range(3)]
    try:
        for rnd in range(3):
            for i, s in enumerate(conns):
                msg = src.chunk(1 + (i * 7919 + rnd * 50021) % 100000)
                check(ssl_exchange(s, msg, deadline, f"conn {i} round {rnd}") == msg,
                      f"conn {i} round {rnd}: echo altered")
    finally:
        for s in conns:
            s.close()
    d.wait_log(r"^END tls ", count=3, timeout=10)
    no_lua_errors(d)
    stop_and_check_exit(d)


# ---------------------------------------------------------------------------
# 4. 1,000 concurrent handshakes while plain echo round trips are timed

BURST = 1000
PROBE_CONNS = 10
# Bounds on a plain echo round trip while the burst runs. Measured on a
# 2-core box, both backends: p99 0.5-8 ms; max 108-212 ms on a quiet
# machine, 300-900 ms with the other backend's run (or a compiler) beside.
# The daemon spends 1.2-2 s of CPU on the 1,000 handshakes (4.2 s under
# heavy load), so a loop that ran them all without turning to its other
# sockets would stall an echo for about that long: the max may reach
# PROBE_MAX_S or PROBE_MAX_CPU of the CPU the daemon used during the burst,
# whichever is more (the largest stall seen was 36% of it), or twice the
# largest round trip before the burst, when the machine itself stalls the
# probe that much (818 ms was seen with other test runs beside). The probe is
# closed-loop: a stall delays one round of PROBE_CONNS samples, so the p99
# says little about stalls; the max does. Under ASan (CI's second pass) the
# daemon needs about 2.9 s of CPU and an echo waited up to 471 ms: the fixed
# bounds double there.
PROBE_MAX_S = 1.0
PROBE_MAX_CPU = 0.6
PROBE_P99_S = 0.1
# The server's handshake timeout for the burst: the Python client, not the
# daemon, is the slow side, and under load it finished some handshakes more
# than the default 10 s after connecting.
BURST_HS_TIMEOUT_MS = 60000


def sanitized(pid):
    """Whether the process runs with a sanitizer runtime mapped."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(re.search(r"lib[at]san", line) for line in f)
    except OSError:
        return False

BURST_CLIENT = r"""
import asyncio, json, resource, ssl, sys, time
port, cafile, n, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ctx = ssl.create_default_context(cafile=cafile)

async def one(i, go):
    await go.wait()
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost",
            ssl_handshake_timeout=limit), limit)
        t1 = time.monotonic()
        msg = b"burst-%05d-" % i + b"x" * 52
        w.write(msg)
        got = await asyncio.wait_for(r.readexactly(len(msg)), limit)
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except Exception:
            pass
        return ["ok" if got == msg else "altered", t1 - t0, time.monotonic() - t0]
    except Exception as e:
        return ["%s: %s" % (type(e).__name__, e), None, time.monotonic() - t0]

async def main():
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(one(i, go)) for i in range(n)]
    await asyncio.sleep(0)
    print("START", flush=True)
    t0 = time.monotonic()
    go.set()
    res = await asyncio.gather(*tasks)
    print("RESULT " + json.dumps({"elapsed": time.monotonic() - t0, "results": res}), flush=True)

asyncio.run(main())
"""


class Prober(threading.Thread):
    """Plain echo round trips on a few connections, one round after the
    other, until stopped: (start time, round trip) per message."""

    def __init__(self, port, deadline):
        super().__init__(daemon=True)
        self.socks = [connect(port) for _ in range(PROBE_CONNS)]
        suite.on_cleanup(lambda: [s.close() for s in self.socks])
        self.deadline = deadline
        self.samples = []
        self.error = None
        self.stopping = threading.Event()
        self.rounds = 0

    def run(self):
        import selectors
        sel = selectors.DefaultSelector()
        for s in self.socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        try:
            while not self.stopping.is_set() and self.rounds < 200000:
                self.rounds += 1
                pending, start = {}, time.monotonic()
                for i, s in enumerate(self.socks):
                    msg = b"probe-%02d-%07d" % (i, self.rounds)
                    s.send(msg)
                    pending[s] = (msg, bytearray())
                while pending:
                    events = sel.select(min(remaining(self.deadline, "probe round"), 1.0))
                    for key, _ in events:
                        s = key.fileobj
                        msg, buf = pending[s]
                        chunk = s.recv(4096)
                        if not chunk:
                            raise TestFailure("probe connection closed")
                        buf += chunk
                        if len(buf) >= len(msg):
                            if bytes(buf) != msg:
                                raise TestFailure("probe echo altered")
                            self.samples.append((start, time.monotonic() - start))
                            del pending[s]
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            sel.close()


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))]


@suite.case(timeout=150)
def handshake_burst_beside_plain_echo():
    d = tls_script("tls_echo.lua", pki().cert, pki().key, BURST_HS_TIMEOUT_MS)
    tls_port = int(d.wait_log(r"TLS echo listening on [0-9.]+:(\d+)").group(1))
    plain_port = int(d.wait_log(r"plain echo listening on [0-9.]+:(\d+)").group(1))
    base_active = int(d.wait_log(r"^BASELINE total=\d+ active=(\d+)$").group(1))
    deadline = deadline_after(110)
    probe = Prober(plain_port, deadline)
    probe.start()
    # a quiet second of baseline round trips (a measurement interval)
    time.sleep(1.0)
    errf = tempfile.TemporaryFile()  # asyncio may log a line per failed connection
    suite.on_cleanup(errf.close)

    def burst_stderr():
        errf.seek(0)
        return errf.read()[-1500:].decode(errors="replace")
    burst = subprocess.Popen(["/usr/bin/python3", "-c", BURST_CLIENT, str(tls_port), pki().ca,
                              str(BURST), "60"], stdout=subprocess.PIPE, stderr=errf,
                             preexec_fn=_die_with_parent())
    suite.on_cleanup(lambda: burst.poll() is None and burst.kill())
    line = burst.stdout.readline()
    check(line.strip() == b"START", f"burst client: {line!r} {burst_stderr()}")
    t_start, cpu_start = time.monotonic(), d.cpu_seconds()
    out = burst.stdout.readline()
    t_end, cpu_used = time.monotonic(), d.cpu_seconds() - cpu_start
    probe.stopping.set()
    probe.join(10)
    try:
        burst.wait(remaining(deadline, "burst client exit"))
    except subprocess.TimeoutExpired:
        raise TestFailure("burst client did not exit")
    check(out.startswith(b"RESULT "), f"burst client: {out[:200]!r} {burst_stderr()}")
    report = json.loads(out[7:])
    check(probe.error is None, f"plain echo probe: {probe.error}")
    results = report["results"]
    ok = [r for r in results if r[0] == "ok"]
    bad = [r[0] for r in results if r[0] != "ok"]
    hs = sorted(r[1] for r in ok)
    base = sorted(rtt for t, rtt in probe.samples if t < t_start)
    during = sorted(rtt for t, rtt in probe.samples if t_start <= t <= t_end)
    check(len(base) >= 20 and len(during) >= 20,
          f"too few probe samples (before {len(base)}, during {len(during)})")
    print(f"  {BURST} TLS handshakes+echo in {report['elapsed']:.2f} s: {len(ok)} ok"
          + (f", handshake p50/p99/max {pct(hs, .5)*1e3:.0f}/{pct(hs, .99)*1e3:.0f}/"
             f"{hs[-1]*1e3:.0f} ms" if hs else "") + f"; daemon CPU {cpu_used:.2f} s", flush=True)
    print(f"  plain echo RTT ({PROBE_CONNS} conns) before: p50/p99/max {pct(base, .5)*1e3:.2f}/"
          f"{pct(base, .99)*1e3:.2f}/{base[-1]*1e3:.2f} ms ({len(base)} samples); during the "
          f"burst: {pct(during, .5)*1e3:.2f}/{pct(during, .99)*1e3:.2f}/{during[-1]*1e3:.2f} ms "
          f"({len(during)} samples)", flush=True)
    if bad:
        ends = {}
        for m in d.find_log(r"^END tls (\S+ \S+) active"):
            ends[m.group(1)] = ends.get(m.group(1), 0) + 1
        raise TestFailure(f"{len(bad)} of {BURST} handshakes/echoes failed: {sorted(set(bad))[:5]}; "
                          f"how the server's reads ended: {ends}")
    scale = 2 if sanitized(d.pid) else 1
    max_bound = max(PROBE_MAX_S * scale, PROBE_MAX_CPU * cpu_used, 2 * base[-1])
    check(during[-1] < max_bound, f"a plain echo took {during[-1]*1e3:.0f} ms during the burst "
          f"(bound {max_bound*1e3:.0f} ms: the largest of {PROBE_MAX_S*scale*1e3:.0f} ms, "
          f"{PROBE_MAX_CPU:.0%} of the daemon's {cpu_used:.2f} s CPU and twice the "
          f"{base[-1]*1e3:.0f} ms before the burst)")
    check(pct(during, .99) < PROBE_P99_S * scale, f"plain echo p99 {pct(during, .99)*1e3:.0f} ms "
          f"during the burst (bound {PROBE_P99_S*scale*1e3:.0f} ms)")
    # every TLS connection ended on the server, and nothing is left open
    for s in probe.socks:
        s.close()
    d.wait_log(r"^END tls ", count=BURST, timeout=30)
    d.wait_log(r"^END plain ", count=PROBE_CONNS, timeout=10)
    actives = [int(m.group(1)) for m in d.find_log(r"^END \S+ .* active=(\d+)$")]
    check_eq(actives[-1], base_active, "ba.socket.stat() active after the last connection ended")
    no_lua_errors(d)
    stop_and_check_exit(d)


# ---------------------------------------------------------------------------
# 5. Bad input: clear errors for the script, nothing leaked

HS_TIMEOUT_MS = 500


class BadInputServer:
    """tls_echo.lua with a short handshake timeout; a warm-up connection
    first, then the baselines: ba.socket.stat()'s active count and the
    daemon's open descriptors."""

    def __init__(self):
        self.d = tls_script("tls_echo.lua", pki().cert, pki().key, HS_TIMEOUT_MS)
        self.port = int(self.d.wait_log(r"TLS echo listening on [0-9.]+:(\d+)").group(1))
        self.active = int(self.d.wait_log(r"^BASELINE total=\d+ active=(\d+)$").group(1))
        deadline = deadline_after(10)
        mark = self.d.mark()
        with tls_connect(self.port, deadline) as s:
            check_eq(ssl_exchange(s, b"warm-up", deadline, "warm-up echo"), b"warm-up",
                     "warm-up echo")
        self.d.wait_log(r"^END tls ", since=mark, timeout=10)
        self.fds = wait_until(lambda: fd_count(self.d.pid), 5, "daemon descriptor count")
        # settle: the count of an idle daemon does not move
        self.fds = self.settled_fds()

    def settled_fds(self):
        def same_twice():
            a = fd_count(self.d.pid)
            time.sleep(0.05)
            return a if a == fd_count(self.d.pid) else None
        return wait_until(same_twice, 5, "a steady descriptor count")

    def expect_end(self, mark, err, why, timeout=10):
        m = self.d.wait_log(r"^END tls (\S+) (\S+) active=(\d+)$", since=mark, timeout=timeout)
        check_eq((m.group(1), m.group(2)), (err, why), "the script's read error (err, reason)")
        check_eq(int(m.group(3)), self.active, "ba.socket.stat() active after the socket closed")
        wait_until(lambda: fd_count(self.d.pid) == self.fds, 5,
                   f"daemon descriptors back to {self.fds} (now {fd_count(self.d.pid)})")
        return m

    def finish(self):
        no_lua_errors(self.d)
        stop_and_check_exit(self.d)


def expect_server_closes(s, deadline, what):
    """The server ends the connection; anything it sent first is a TLS
    record (an alert or a handshake flight), not plaintext."""
    data, _how = recv_until_eof(s, deadline, what)
    check(not data or data[0] in (0x15, 0x16), f"{what}: server sent {data[:40]!r} before closing")
    return data


@suite.case(timeout=40)
def bad_input_garbage_instead_of_client_hello():
    b = BadInputServer()
    deadline = deadline_after(20)
    mark = b.d.mark()
    s = connect(b.port)
    suite.on_cleanup(s.close)
    s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" + bytes(range(256)) * 4)
    b.expect_end(mark, "sslhandshake", "nil")
    expect_server_closes(s, deadline, "after garbage")
    b.finish()


@suite.case(timeout=40)
def bad_input_partial_client_hello_times_out():
    b = BadInputServer()
    deadline = deadline_after(20)
    hello = client_hello()
    check(len(hello) > 40 and hello[0] == 0x16, f"ClientHello from Python: {hello[:10]!r}")
    mark = b.d.mark()
    time.sleep(1.0)  # idle first, as in bad_input_handshake_stops_half_way
    s = connect(b.port)
    suite.on_cleanup(s.close)
    t0 = time.monotonic()
    s.sendall(hello[:len(hello) // 2])  # half a record, then silence
    b.expect_end(mark, "sslhandshake", "timeout")
    took = time.monotonic() - t0
    check(HS_TIMEOUT_MS / 1000 * 0.9 <= took <= HS_TIMEOUT_MS / 1000 + 3,
          f"handshake timed out after {took:.2f} s, handshake_timeout {HS_TIMEOUT_MS} ms")
    expect_server_closes(s, deadline, "after the handshake timeout")
    b.finish()


@suite.case(timeout=40)
def bad_input_handshake_stops_half_way():
    b = BadInputServer()
    deadline = deadline_after(20)
    mark = b.d.mark()
    # The daemon idles first (an interval, not a synchronisation): a
    # deadline taken from a loop clock that went stale while the loop
    # waited would fire early.
    time.sleep(1.0)
    t = RawTLS(b.port)
    t0 = time.monotonic()
    t.sock.sendall(t.client_hello())  # the server answers; the client never finishes
    b.expect_end(mark, "sslhandshake", "timeout")
    took = time.monotonic() - t0
    check(HS_TIMEOUT_MS / 1000 * 0.9 <= took <= HS_TIMEOUT_MS / 1000 + 3,
          f"handshake timed out after {took:.2f} s, handshake_timeout {HS_TIMEOUT_MS} ms")
    flight = expect_server_closes(t.sock, deadline, "after the handshake timeout")
    check(flight[:1] == b"\x16", f"the server never answered the ClientHello: {flight[:20]!r}")
    b.finish()


@suite.case(timeout=40)
def bad_input_close_without_close_notify():
    b = BadInputServer()
    deadline = deadline_after(20)
    mark = b.d.mark()
    t = RawTLS(b.port)
    t.handshake(deadline)
    t.write(b"before the cut")
    check_eq(t.read_exact(14, deadline), b"before the cut", "echo over TLS")
    t.sock.close()  # TCP FIN, no close_notify
    b.expect_end(mark, "socketreadfailed", "truncated")
    b.finish()


@suite.case(timeout=40)
def close_notify_ends_read_and_is_answered():
    b = BadInputServer()
    deadline = deadline_after(20)
    mark = b.d.mark()
    t = RawTLS(b.port)
    t.handshake(deadline)
    t.write(b"then close_notify")
    check_eq(t.read_exact(17, deadline), b"then close_notify", "echo over TLS")
    t.send_close_notify()
    b.expect_end(mark, "sslclosenotify", "eof")
    check(t.peer_close_notify(deadline), "sock:close() after the peer's close_notify sent no "
          "close_notify of its own")
    b.finish()


# ---------------------------------------------------------------------------
# 6. cosockd proxy with TLS

def start_proxy(upstream, *extra):
    """`cosockd proxy` with its default workers, all on one port; returns
    once every worker listens."""
    port = free_port()
    d = suite.daemon("proxy", "--listen", f"{LOOPBACK}:{port}", "--upstream", upstream, *extra,
                     env={"STATE_DIRECTORY": state_dir()})
    m = d.wait_log(r"master \(pid \d+\): starting (\d+) workers")
    d.wait_log(LISTEN_RE, count=int(m.group(1)))
    return d, port


def http_backend():
    """A plain HTTP/1.0 backend answering every request with a fixed body."""
    body = b"hello through the TLS proxy\n"

    def handler(c):
        c.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = c.recv(4096)
            if not chunk:
                return
            buf += chunk
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
    return Server(suite, handler), body


@suite.case(timeout=90)
def proxy_terminates_tls_in_front_of_plain_backends():
    p = pki()
    web, body = http_backend()
    d, port = start_proxy(f"{LOOPBACK}:{web.port}", "--tls-cert", p.cert, "--tls-key", p.key)
    for i in range(3):
        rc, out, err = curl_https(port, p.ca)
        check_eq(rc, 0, f"curl {i} through the TLS proxy ({err.strip()})")
        check_eq(out, body, f"curl {i} body")
    check(not web.errors, f"HTTP backend: {web.errors}")
    stop_and_check_exit(d)

    echo = Server(suite, echo_handler)
    d, port = start_proxy(f"{LOOPBACK}:{echo.port}", "--tls-cert", p.cert, "--tls-key", p.key)
    deadline = deadline_after(60)
    src = PatternSource(6)
    conns = [tls_connect(port, deadline) for _ in range(4)]
    try:
        for i, s in enumerate(conns):
            for size in (1, 1000, 16384, 100000, 1 << 20):
                msg = src.chunk(size)
                got = ssl_exchange(s, msg, deadline, f"conn {i} {size} bytes")
                check(got == msg, f"conn {i}: {size} bytes altered through the TLS proxy")
    finally:
        for s in conns:
            s.close()
    check(not echo.errors, f"echo backend: {echo.errors}")
    stop_and_check_exit(d)


@suite.case(timeout=60)
def proxy_upstream_tls_to_openssl_without_verification():
    p = pki()
    # s_server presents the unknown CA's certificate: without --upstream-ca
    # nothing is verified, so the proxy connects anyway
    up = SServer(p.unknown_cert, p.unknown_key, "-www")
    d, port = start_proxy(f"localhost:{up.port}", "--tls-cert", p.cert, "--tls-key", p.key,
                          "--upstream-tls")
    rc, out, err = curl_https(port, p.ca)
    check_eq(rc, 0, f"curl through the proxy to s_server -www ({err.strip()})")
    # curl prints the body: s_server -www's status page names its command
    check(out.startswith(b"<HTML>") and b"s_server -accept" in out and out.rstrip().endswith(b"</HTML>"),
          f"s_server's status page through the proxy: {out[:200]!r}...{out[-60:]!r}")
    stop_and_check_exit(d)


@suite.case(timeout=60)
def proxy_upstream_tls_to_cosockd_verified():
    p = pki()
    up = tls_script("tls_echo.lua", p.cert, p.key)
    up_port = int(up.wait_log(r"TLS echo listening on [0-9.]+:(\d+)").group(1))
    d, port = start_proxy(f"localhost:{up_port}", "--tls-cert", p.cert, "--tls-key", p.key,
                          "--upstream-tls", "--upstream-ca", p.ca)
    deadline = deadline_after(40)
    src = PatternSource(66)
    with tls_connect(port, deadline) as s:
        for size in (5, 20000, 300000):
            msg = src.chunk(size)
            check(ssl_exchange(s, msg, deadline, f"{size} bytes") == msg,
                  f"{size} bytes altered through proxy and TLS upstream")
    # the upstream cosockd saw a TLS connection, which ended
    up.wait_log(r"^END tls ", timeout=10)
    check(not up.find_log(r"^END plain "), "the upstream connection was not TLS")
    stop_and_check_exit(d)
    no_lua_errors(up)
    stop_and_check_exit(up)


@suite.case(timeout=60)
def proxy_upstream_ca_refuses_unknown_ca():
    p = pki()
    up = SServer(p.unknown_cert, p.unknown_key, "-rev")
    d, port = start_proxy(f"localhost:{up.port}", "--tls-cert", p.cert, "--tls-key", p.key,
                          "--upstream-tls", "--upstream-ca", p.ca)
    deadline = deadline_after(30)
    try:
        s = tls_connect(port, deadline)
    except (ssl.SSLError, ConnectionError):
        s = None  # closed before the client's handshake ended: as good
    if s is not None:
        with s:
            s.settimeout(remaining(deadline, "proxy"))
            try:
                s.sendall(b"should not arrive\n")
                data = s.recv(100)
            except (ssl.SSLError, ConnectionError):
                data = b""
            except socket.timeout:
                raise TestFailure("the proxy kept the client connection open although the "
                                  "upstream's certificate is not trusted")
            check_eq(data, b"", "what came back from an upstream with an untrusted certificate")
    d.wait_log(r"sslnottrusted", timeout=10)
    stop_and_check_exit(d)


# ---------------------------------------------------------------------------
# 7. Session resumption

def check_resumption(d):
    d.wait_log(r"^RESUME DONE$", timeout=30)
    conns = parse_records(d, "CONN")
    problems = []
    for n, resumed in (("1", "false"), ("2", "true"), ("3", "false")):
        c = conns.get(n, {})
        for k, v in (("connect", "ok"), ("data", "ok"), ("trusted", "true"), ("close", "true"),
                     ("resumed", resumed)):
            if c.get(k) != v:
                problems.append(f"connection {n}: {k} = {c.get(k)!r}, want {v!r}")
        if "error" in c:
            problems.append(f"connection {n}: Lua error {c['error']}")
    if conns.get("2", {}).get("relsession") != "true":
        problems.append(f"connection 2: relsession() = {conns.get('2', {}).get('relsession')!r}, "
                        "want 'true'")
    check(not problems, "; ".join(problems))
    no_lua_errors(d)


@suite.case(timeout=40)
def session_resumption_against_cosockd_server():
    p = pki()
    d = tls_script("tls_resume.lua", p.ca, p.cert, p.key)
    check_resumption(d)
    check_eq(d.wait_exit(10), 0, "exit status")


@suite.case(timeout=40)
def session_resumption_against_openssl():
    p = pki()
    up = SServer(p.cert, p.key, "-rev")
    d = tls_script("tls_resume.lua", p.ca, p.cert, p.key, up.port)
    check_resumption(d)
    check_eq(d.wait_exit(10), 0, "exit status")


# ---------------------------------------------------------------------------
# The TLS object API, checked by the script

TLS_CHECKS = """
openio.vm openio.home openio.disk openio.unknown_nil openio.realpath openio.stat_file
openio.stat_dir openio.stat_missing openio.open openio.open_missing openio.generated_cert
sharkcert.io sharkcert.pem_text sharkcert.bad_cert sharkcert.bad_key sharkcert.mismatch
sharkcert.encrypted_key sharkcert.encrypted_key_wrong_password sharkcert.io_missing_file
certstore.addcert_bundle certstore.addcert_io certstore.addcert_bad
sharkssl.addcert sharkssl.bind_without_cert_raises sharkssl.connect_with_server_raises
sharkclient.shared
plain.connected plain.certificate plain.cipher plain.alpn
tls.connected tls.echo tls.certificate tls.certificate_san tls.certificate_dates
tls.certificate_trustedCA tls.cipher tls.trusted tls.not_resumed
alpn.client_http11 alpn.server_http11 alpn.server_preference alpn.none_offered
tls.client_ca_pem tls.client_ca_file tls.client_ca_certstore tls.client_system_store_loaded
tls.client_system_store
sharkclient.untrusted_test_ca tls.client_system_store_verify stat.back_to_baseline
""".split()


@suite.case(timeout=60)
def lua_tls_api_checks():
    p = pki()
    sdir = state_dir()
    certs = os.path.join(sdir, "certs")
    os.makedirs(certs)
    for src, name in ((p.ca, "ca.pem"), (p.cert, "localhost.pem"), (p.key, "localhost.key"),
                      (p.enc_key, "localhost-enc.key"), (p.wrong_key, "wrongname.key")):
        shutil.copy(src, os.path.join(certs, name))
    with open(os.path.join(certs, "bundle.pem"), "wb") as f:
        f.write(open(p.ca, "rb").read() + open(p.other_ca, "rb").read())
    # --state-dir wins over STATE_DIRECTORY
    decoy = state_dir("cosockd-tls-decoy-")
    d = suite.daemon("--state-dir", sdir, suite.lua("tls_checks.lua"), sdir,
                     env={"STATE_DIRECTORY": decoy})
    check_lua_checks(d, TLS_CHECKS, timeout=45)
    check(not os.listdir(decoy), f"STATE_DIRECTORY was used despite --state-dir: {os.listdir(decoy)}")
    no_lua_errors(d)
    stop_and_check_exit(d)


if __name__ == "__main__":
    suite.main()
