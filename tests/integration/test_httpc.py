#!/usr/bin/python3
"""The HTTP client: require"httpc" and ba.socket.http2sock.

checks_in_every_context (tests/lua/httpc_checks.lua) runs the same checks
in a ba.thread job, in a socket-less cosocket (its own socket becomes the
connection), in a cosocket that has a connection already (calls run as
jobs while it waits) and partly from a timer (request only; a job reads
the response), against servers this test starts on loopback:
- a raw-socket HTTP/1.1 server whose routes give exact bytes:
  Content-Length, chunked (extensions, trailers), close-delimited and
  300 kB bodies, keep-alive with connection ids, a kept-alive connection
  the server drops, HEAD, 100 Continue, a redirect (not followed), Basic
  authentication, an echo of the request as received (query encoding,
  headers, Host, bodies sized or chunked), cookies and repeated headers,
  malformed heads and chunk sizes, a cut-short body, a server that never
  answers (read timeout), WebSocket handshakes with a wrong accept key and
  with a frame sent in the same packet as the 101 (read from the bytes
  after the head; our reply must come masked), a raw stream after a 200
  (http2sock's raw form);
- the same server over TLS, with a self-signed certificate made by openssl
  at run time and trusted through a certstore (the default client object
  must not trust it: sslnottrusted);
- python3-websockets echo servers for ws:// and wss:// (text and binary
  messages, client frames masked: websockets refuses unmasked ones), used
  as seed Example 14 (a job, http2sock, sock:event) and Example 2
  (blocking reads on the job);
- an HTTP proxy (absolute-form requests, CONNECT tunnels, 407, 502) and a
  SOCKS5 proxy (user/password, refused target), proxycon tunnels;
- connection refused, a connect that times out (full backlog), bad URLs;
and no descriptor may stay open once every client is closed.

pages_block_on_httpc: seed 003's Example 2 as an .lsp page (a WebSocket
round trip per request on the page's pool thread) and a function page
fetching http:// and https:// URLs with a client kept across requests.

shutdown_ends_every_wait: SIGTERM while a response is awaited in a job, a
socket-less cosocket and a busy cosocket: each gets nil, "sysshutdown" and
the daemon exits 0.
"""

import asyncio
import base64
import hashlib
import itertools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request

import websockets

from harness import (Server, Suite, check, check_lua_checks, connect, echo_handler, fd_count,
                     full_backlog_port, no_lua_errors, stop_and_check_exit, unused_port, wait_until)

suite = Suite("httpc", overall_timeout=540)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG = b"0123456789" * 30000

# ---------------------------------------------------------------------------
# A certificate for localhost (self-signed: it is its own CA)


def make_cert():
    d = tempfile.mkdtemp(prefix="cosockd-httpc-")
    suite.on_cleanup(lambda: shutil.rmtree(d, True))
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/O=cosockd tests/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:TRUE"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"openssl: {r.stderr.strip()}")
    return cert, key


# ---------------------------------------------------------------------------
# The HTTP server: exact bytes per route

class Conn:
    """Buffered reads on a (possibly TLS) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def until(self, sep):
        while sep not in self.buf:
            self.fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_request(c):
    """(method, target, [(name, value)], body) or None at EOF."""
    try:
        head = c.until(b"\r\n\r\n").decode("latin-1")
    except EOFError:
        return None
    lines = head.split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            n, v = line.split(":", 1)
            headers.append((n, v.strip()))
    low = {n.lower(): v for n, v in headers}
    body = b""
    if low.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(c.until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                while c.until(b"\r\n") != b"\r\n":
                    pass
                break
            body += c.exact(size)
            c.exact(2)
    elif "content-length" in low:
        body = c.exact(int(low["content-length"]))
    return method, target, headers, body


def response(status, headers, body=b"", reason="OK"):
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def ws_frame(payload, opcode=1):
    n = len(payload)
    if n < 126:
        hdr = bytes([0x80 | opcode, n])
    else:
        hdr = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    return hdr + payload


def read_client_frame(c):
    """(opcode, payload, masked) of one client frame."""
    b0, b1 = c.exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(c.exact(2), "big")
    elif n == 127:
        n = int.from_bytes(c.exact(8), "big")
    masked = bool(b1 & 0x80)
    key = c.exact(4) if masked else b"\0\0\0\0"
    data = bytes(x ^ key[i % 4] for i, x in enumerate(c.exact(n)))
    return b0 & 0x0F, data, masked


class HttpServer:
    def __init__(self, tls_ctx=None):
        self.tls_ctx = tls_ctx
        self.ids = itertools.count(1)
        self.silent = threading.Semaphore(0)  # a request to /silent arrived
        self.server = Server(suite, self.serve)
        self.port = self.server.port

    def serve(self, raw):
        raw.settimeout(30)
        sock = self.tls_ctx.wrap_socket(raw, server_side=True) if self.tls_ctx else raw
        try:
            c = Conn(sock)
            cid = next(self.ids)
            while True:
                req = read_request(c)
                if req is None or not self.route(c, cid, *req):
                    return
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    def route(self, c, cid, method, target, headers, body):
        """Answer one request; False closes the connection."""
        s = c.sock
        path = target.split("?", 1)[0]
        conn = ("X-Conn", str(cid))
        low = {n.lower(): v for n, v in headers}
        if path == "/len":
            data = b"hello, length"
            s.sendall(response(200, [("Content-Type", "text/plain"), ("Content-Length", len(data)), conn],
                               b"" if method == "HEAD" else data))
        elif path == "/chunked":
            s.sendall(response(200, [("Transfer-Encoding", "chunked"), conn],
                               b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                               b"0\r\nX-Trailer: t\r\n\r\n"))
        elif path == "/close":
            s.sendall(response(200, [("Connection", "close"), conn], b"until the connection closes"))
            return False
        elif path == "/big":
            s.sendall(response(200, [("Content-Length", len(BIG)), conn], BIG))
        elif path == "/bigchunked":
            out, i, n = [], 0, 1
            while i < len(BIG):
                piece = BIG[i:i + n]
                out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                i += n
                n = n * 3 % 9001 + 1
            out.append(b"0\r\n\r\n")
            s.sendall(response(200, [("Transfer-Encoding", "chunked"), conn], b"".join(out)))
        elif path == "/redirect":
            s.sendall(response(302, [("Location", "/len"), ("Content-Length", 0), conn], reason="Found"))
        elif path == "/auth":
            want = "Basic " + base64.b64encode(b"alice:secret").decode()
            if low.get("authorization") == want:
                data = b"welcome alice"
                s.sendall(response(200, [("Content-Length", len(data)), conn], data))
            else:
                s.sendall(response(401, [("WWW-Authenticate", 'Basic realm="test"'),
                                         ("Content-Length", 0), conn], reason="Unauthorized"))
        elif path == "/echo" or path == "/":
            data = (f"{method} {target} HTTP/1.1\n" + "\n".join(f"{n}: {v}" for n, v in headers)
                    + "\n\n").encode("latin-1") + body
            s.sendall(response(200, [("Content-Length", len(data)), conn], data))
        elif path == "/continue":
            data = b"after continue"
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                      + response(200, [("Content-Length", len(data)), conn], data))
        elif path == "/cookies":
            s.sendall(response(200, [("Set-Cookie", "a=1; Path=/; HttpOnly"),
                                     ("Set-Cookie", "b=two words; Max-Age=60"),
                                     ("X-Dup", "1"), ("X-Dup", "2"), ("Content-Length", 0), conn]))
        elif path == "/stale":
            # claims keep-alive, then drops the connection (an idle timeout)
            s.sendall(response(200, [("Content-Length", 2), ("Connection", "keep-alive"), conn], b"ok"))
            return False
        elif path == "/garbage":
            s.sendall(b"HELLO WORLD\r\n\r\n")
            return False
        elif path == "/truncated":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
            return False
        elif path == "/badchunk":
            s.sendall(response(200, [("Transfer-Encoding", "chunked"), conn], b"zz\r\nxx\r\n"))
            return False
        elif path == "/shortbody":
            s.sendall(response(200, [("Content-Length", 100), conn], b"0123456789"))
            return False
        elif path == "/silent":
            self.silent.release()
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
            return False
        elif path in ("/ws-bad-accept", "/ws-greet"):
            key = low.get("sec-websocket-key", "").encode()
            good = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            accept = good if path == "/ws-greet" else "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
            head = response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                  ("Sec-WebSocket-Accept", accept)], reason="Switching Protocols")
            if path == "/ws-bad-accept":
                s.sendall(head)
                return False
            s.sendall(head + ws_frame(b"greeting"))  # one send: the frame rides with the head
            op, data, masked = read_client_frame(c)
            s.sendall(ws_frame(data + (b" ok" if masked and op == 1 else b" NOT MASKED")))
            try:
                read_client_frame(c)  # the client's close
            except (EOFError, OSError):
                pass
            return False
        elif path == "/rawconnect":
            s.sendall(response(200, [("Content-Length", 0)], b"RAW-HELLO"))
            while True:
                d = s.recv(65536)
                if not d:
                    return False
                s.sendall(d)
        else:
            s.sendall(response(404, [("Content-Length", 0), conn], reason="Not Found"))
        return low.get("connection", "").lower() != "close"


# ---------------------------------------------------------------------------
# Proxies: HTTP (CONNECT tunnels; other requests answered by the proxy
# itself with what it received) and SOCKS5. Both only connect to loopback.

def pipe(c, up):
    """Copy both ways between Conn c (its buffered bytes first) and up."""
    def one(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    if c.buf:
        up.sendall(c.buf)
    t = threading.Thread(target=one, args=(up, c.sock), daemon=True)
    t.start()
    one(c.sock, up)
    t.join(30)


def dial(host, port):
    check(host in ("127.0.0.1", "localhost"), f"proxy asked for {host}: loopback only")
    return socket.create_connection(("127.0.0.1", port), timeout=30)


class HttpProxy:
    AUTH = "Basic " + base64.b64encode(b"pu:pp").decode()

    def __init__(self):
        self.server = Server(suite, self.serve)
        self.port = self.server.port

    def serve(self, sock):
        sock.settimeout(30)
        c = Conn(sock)
        while True:
            req = read_request(c)
            if req is None:
                return
            method, target, headers, _ = req
            low = {n.lower(): v for n, v in headers}
            if low.get("proxy-authorization") != self.AUTH:
                sock.sendall(response(407, [("Proxy-Authenticate", 'Basic realm="proxy"'),
                                            ("Content-Length", 0)], reason="Proxy Authentication Required"))
                continue
            if method != "CONNECT":
                data = (f"PROXIED {method} {target} HTTP/1.1\n"
                        + "\n".join(f"{n}: {v}" for n, v in headers)).encode("latin-1")
                sock.sendall(response(200, [("Content-Length", len(data))], data))
                continue
            host, port = target.rsplit(":", 1)
            try:
                up = dial(host, int(port))
            except OSError:
                sock.sendall(response(502, [("Content-Length", 0)], reason="Bad Gateway"))
                return
            with up:
                sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pipe(c, up)
            return


class Socks5Proxy:
    def __init__(self):
        self.server = Server(suite, self.serve)
        self.port = self.server.port

    def serve(self, sock):
        sock.settimeout(30)
        c = Conn(sock)
        ver, n = c.exact(2)
        methods = c.exact(n)
        if ver != 5 or 2 not in methods:
            sock.sendall(b"\5\xff")
            return
        sock.sendall(b"\5\2")
        _, ulen = c.exact(2)
        user = c.exact(ulen)
        plen = c.exact(1)[0]
        password = c.exact(plen)
        if (user, password) != (b"su", b"sp"):
            sock.sendall(b"\1\1")
            return
        sock.sendall(b"\1\0")
        ver, cmd, _, atyp = c.exact(4)
        if atyp == 1:
            host = socket.inet_ntoa(c.exact(4))
        elif atyp == 3:
            host = c.exact(c.exact(1)[0]).decode()
        else:
            sock.sendall(b"\5\x08\0\1\0\0\0\0\0\0")
            return
        port = int.from_bytes(c.exact(2), "big")
        try:
            up = dial(host, port)
        except OSError:
            sock.sendall(b"\5\5\0\1\0\0\0\0\0\0")  # connection refused
            return
        with up:
            sock.sendall(b"\5\0\0\1\x7f\0\0\1" + up.getsockname()[1].to_bytes(2, "big"))
            pipe(c, up)


# ---------------------------------------------------------------------------
# python3-websockets echo servers (10.4: asyncio)

class WsEcho(threading.Thread):
    def __init__(self, ssl_ctx=None):
        super().__init__(daemon=True)
        self.ssl_ctx = ssl_ctx
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.port = None
        self.error = None
        self.start()
        check(self.ready.wait(10), "websockets server did not start")
        check(self.port, f"websockets server: {self.error}")
        suite.on_cleanup(self.stop)

    def run(self):
        asyncio.set_event_loop(self.loop)

        async def echo(ws, path=None):
            async for m in ws:
                await ws.send(m)

        async def main():
            self.stopping = asyncio.Event()
            async with websockets.serve(echo, "127.0.0.1", 0, ssl=self.ssl_ctx, max_size=1 << 20) as srv:
                self.port = srv.sockets[0].getsockname()[1]
                self.ready.set()
                await self.stopping.wait()

        try:
            self.loop.run_until_complete(main())
        except Exception as e:  # reported through .port being None
            self.error = e
            self.ready.set()

    def stop(self):
        if self.port:
            self.loop.call_soon_threadsafe(self.stopping.set)
            self.join(5)


# ---------------------------------------------------------------------------
# The cases

CONTEXT_CHECKS = [
    "get_length", "chunked", "close_delimited", "big_bodies", "keepalive_reuse", "reuse_after_read",
    "redirect_not_followed", "basic_auth", "query_and_headers", "head", "post_bodies", "interim_100",
    "cookies_and_pairs", "stale_keepalive", "bad_responses", "timeouts", "connect_errors", "queries",
    "socket_queries_close", "https", "ws_rejected", "proxy_http", "proxy_socks",
]
EXPECTED = ([f"{ctx}.{name}" for ctx in ("thread", "cosocket", "busy") for name in CONTEXT_CHECKS]
            + ["thread.ws_blocking", "thread.wss_blocking", "thread.ws_leftover", "thread.ws_event",
               "cosocket.ws_event", "cosocket.wss_event", "busy.ws_event", "busy.own_socket_intact",
               "main.request", "main.status_refused", "main.status_on_thread"])


@suite.case(timeout=240)
def checks_in_every_context():
    cert, key = make_cert()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    http = HttpServer()
    https = HttpServer(tls)
    ws = WsEcho()
    wss = WsEcho(tls)
    refused, refused_port = unused_port()
    suite.on_cleanup(refused.close)
    backlog_port = full_backlog_port(suite)
    proxy, socks, echo = HttpProxy(), Socks5Proxy(), Server(suite, echo_handler)
    d = suite.script("httpc_checks.lua", http.port, https.port, ws.port, wss.port, refused_port,
                     backlog_port, cert, proxy.port, socks.port, echo.port)
    port = d.wait_listening()
    d.wait_log(r"HTTPC READY$")
    base = fd_count(d.pid)
    connect(port).close()  # go
    check_lua_checks(d, EXPECTED, timeout=200)
    # every client was closed (or collected): no descriptor stays behind
    d.wait_log(r"HTTPC IDLE$")
    wait_until(lambda: fd_count(d.pid) <= base + 1, 10,
               f"descriptors back to {base} (+1 for a lazily opened file)")
    errors = http.server.errors + https.server.errors + proxy.server.errors + socks.server.errors
    check(not errors, f"server errors: {errors}")
    no_lua_errors(d)
    stop_and_check_exit(d)


# Seed 003's Example 2 (LSP-Examples' wsecho.lsp), the echo server's URL
# taken from the app table instead of echo.websocket.org.
WSECHO_LSP = """<html><body>
<form><p>Echo message: <input type="text" name="msg"> <input type="submit" value="Submit"></p></form>
<?lsp
local msg=request:data"msg"
if msg then
   local h = require"httpc".create()
   h:request{url=app.wsurl}
   if h:status() == 101 then -- 101 switching protocol
      local s = ba.socket.http2sock(h)
      if s then
         s:write(msg,true)
         print'<h3>'
         print('Echo response:',s:read(5000))
         print'</h3>'
         s:close()
      end
   end
end
?>
</body></html>
"""


def get_page(port, path, timeout=20):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        check(r.status == 200, f"{path}: status {r.status}")
        return r.read().decode("utf-8")


@suite.case(timeout=120)
def pages_block_on_httpc():
    cert, key = make_cert()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    http = HttpServer()
    https = HttpServer(tls)
    ws = WsEcho()
    root = tempfile.mkdtemp(prefix="cosockd-httpc-www-")
    suite.on_cleanup(lambda: shutil.rmtree(root, True))
    with open(os.path.join(root, "wsecho.lsp"), "w") as f:
        f.write(WSECHO_LSP)
    d = suite.script("httpc_page.lua", root, f"ws://127.0.0.1:{ws.port}/", cert)
    port = d.wait_listening()
    d.wait_log(r"PAGES READY$")
    # Example 2: one WebSocket round trip per request, on the page's thread
    for msg in ("hello there", "second \u00e9cho"):
        body = get_page(port, "/wsecho.lsp?" + urllib.parse.urlencode({"msg": msg}))
        check(f"Echo response:\t{msg}\ttrue\n" in body, f"wsecho.lsp: {body!r}")
    # fetches from a function page, the client kept across requests
    conns = []
    for u in (f"http://127.0.0.1:{http.port}/len", f"http://127.0.0.1:{http.port}/len",
              f"https://localhost:{https.port}/len"):
        body = get_page(port, "/fetch?" + urllib.parse.urlencode({"url": u}))
        check(body.startswith("hello, length conn="), f"/fetch {u}: {body!r}")
        conns.append(body.split("conn=")[1])
    check(conns[0] == conns[1], f"the kept client did not reuse its connection: {conns}")
    body = get_page(port, "/fetch?" + urllib.parse.urlencode({"url": "http://127.0.0.1:1/"}))
    check(body == "ERROR cannotconnect", f"/fetch to a closed port: {body!r}")
    no_lua_errors(d)
    stop_and_check_exit(d)


@suite.case(timeout=60)
def shutdown_ends_every_wait():
    http = HttpServer()
    d = suite.script("httpc_shutdown.lua", http.port)
    for i in range(3):
        check(http.silent.acquire(timeout=10), f"only {i} of 3 requests reached the server")
    stop_and_check_exit(d)
    got = {m.group(1): m.group(2) for m in d.find_log(r"RESULT (\S+) (.*)$")}
    want = {ctx: "nil sysshutdown" for ctx in ("thread", "cosocket", "busy")}
    check(got == want, f"results: got {got}, want {want}")


if __name__ == "__main__":
    suite.main()
