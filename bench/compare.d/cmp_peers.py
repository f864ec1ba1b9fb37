"""cmp_peers - what bench/compare runs as the system under test: the proxy
peers (rr, bulk), the TLS-terminating proxies (tls), the echo servers
(echo, conns), the WebSocket echo servers (ws) and how to start each.

A subject's argv() writes any configuration it needs into the run's
temporary directory (from the templates in bench/peers/) and returns the
command line; compare itself adds the `taskset -c CPU` in front. The TLS
subjects share one self-signed certificate, made by `openssl` in that
directory the first time one of them starts (never kept in the tree).
"""

import os
import re
import shutil
import string
import subprocess

from cmp_procs import Failed

HOST = "127.0.0.1"


class Env:
    """Paths and capabilities of the build and the machine."""

    def __init__(self, root, build, tmp):
        self.root, self.build, self.tmp = root, build, tmp
        self.cosockd = os.environ.get("COSOCKD", os.path.join(build, "cosockd"))
        self.bench = os.environ.get("COSOCKD_BENCH", os.path.join(build, "bench", "cosockd-bench"))
        self.bare_echo = os.environ.get("CS_BARE_ECHO", os.path.join(build, "bench", "cs-bare-echo"))
        self.bare_proxy = os.environ.get("CS_BARE_PROXY", os.path.join(build, "bench", "cs-bare-proxy"))
        self.templates = os.path.join(root, "bench", "peers")
        self._help = {}

    def _help_text(self, argv):
        key = tuple(argv)
        if key not in self._help:
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                self._help[key] = r.stdout + r.stderr
            except (OSError, subprocess.TimeoutExpired):
                self._help[key] = ""
        return self._help[key]

    def tls_supported(self):
        """Does this cosockd's proxy take --tls-cert? (Its help says so.)"""
        if not is_exe(self.cosockd):
            return False
        return any("--tls-cert" in self._help_text(a)
                   for a in ([self.cosockd, "--help"], [self.cosockd, "proxy", "--help"]))

    def tls_files(self):
        """(cert, key, cert+key) PEM paths of the TLS subjects' certificate:
        ECDSA P-256, self-signed, CN=localhost; made on first use."""
        d = os.path.join(self.tmp, "tls")
        cert, key, both = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "cert+key.pem"))
        if not os.path.exists(both):
            os.makedirs(d, exist_ok=True)
            argv = cert_command(cert, key)
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise Failed("openssl req: %s" % e)
            if r.returncode != 0:
                raise Failed("openssl req failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1])
            with open(both, "w") as out:
                for p in (cert, key):
                    with open(p) as f:
                        out.write(f.read())
        return cert, key, both

    def http_supported(self):
        """None when this cosockd has `cosockd.http` (a script asks it);
        else ("skip", why)."""
        if not hasattr(self, "_http"):
            probe = os.path.join(self.tmp, "http-probe.lua")
            with open(probe, "w") as f:
                f.write('io.write("cosockd.http: ", type(cosockd) == "table"'
                        ' and type(cosockd.http) or "nil", "\\n")\n')
            out = self._help_text([self.cosockd, probe])
            self._http = None if "cosockd.http: function" in out else (
                "skip", "this cosockd has no cosockd.http yet (issue 6)")
        return self._http

    def workers_supported(self):
        """Does this cosockd take --workers? (Its --help says so.)"""
        return is_exe(self.cosockd) and "--workers" in self._help_text([self.cosockd, "--help"])

    def bench_subcommands(self):
        """The subcommands `cosockd-bench --help` lists."""
        if not is_exe(self.bench):
            return set()
        text = self._help_text([self.bench, "--help"])
        return set(re.findall(r"^  ([a-z][a-z0-9-]*)\s", text, re.M))

    def stream_module(self):
        """Path of nginx's stream module, or None."""
        direct = "/usr/lib/nginx/modules/ngx_stream_module.so"
        if os.path.exists(direct):
            return direct
        avail = "/usr/share/nginx/modules-available/mod-stream.conf"
        try:
            with open(avail) as f:
                m = re.search(r"load_module\s+(\S+?);", f.read())
        except OSError:
            m = None
        if m:
            path = m.group(1)
            if not os.path.isabs(path):
                path = os.path.join("/usr/share/nginx", path)
            if os.path.exists(path):
                return path
        return None


def cert_command(cert, key):
    """The openssl command that makes the TLS subjects' certificate."""
    return ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost"]


def is_exe(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def render(env, template, out_name, **fields):
    """Fill bench/peers/<template> with fields (plus tmp) into tmp/out_name;
    returns the written path. A ${field} without a value is an error."""
    with open(os.path.join(env.templates, template)) as f:
        text = string.Template(f.read()).substitute(tmp=env.tmp, **fields)
    path = os.path.join(env.tmp, out_name)
    with open(path, "w") as f:
        f.write(text)
    return path


def nofile_hard():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


class Subject:
    """A server compare starts: a proxy peer or an echo server."""

    key = label = ""
    kind = "proxy"     # "proxy" (needs an upstream) or "echo"
    cosockd = False    # one of ours: the goals are checked against it
    reference = None   # "haproxy" / "bare": what ratios are taken against
    detail = ""        # one line for the peer table in RESULTS.md
    tls = False        # terminates TLS (the tls section's subjects)

    def check(self, env):
        """None when it can run; else (severity, reason) with severity
        "skip" (a note, e.g. a feature not in this build yet) or "missing"
        (counts as a failure)."""
        return None

    def argv(self, env, port, upstream=None):
        raise NotImplementedError


def _need(path, what):
    if not is_exe(path):
        return ("missing", "%s not found at %s" % (what, path))
    return None


class HAProxy(Subject):
    """splice: None (HAProxy's default: no splicing), "auto" (option
    splice-auto: HAProxy's heuristic decides per stream) or "forced"
    (option splice-request + splice-response: always)."""

    OPTIONS = {None: "", "auto": "\toption splice-auto",
               "forced": "\toption splice-request\n\toption splice-response"}

    def __init__(self, splice=None):
        self.splice = splice
        self.key = {None: "haproxy", "auto": "haproxy-splice", "forced": "haproxy-splice-forced"}[splice]
        self.label = {None: "HAProxy", "auto": "HAProxy (splice-auto)",
                      "forced": "HAProxy (splice forced)"}[splice]
        self.reference = "haproxy" if splice is None else None
        self.detail = {None: "mode tcp, nbthread 1, defaults (no splicing)",
                       "auto": "mode tcp, nbthread 1, `option splice-auto`: splices when HAProxy's"
                               " heuristic expects it to pay",
                       "forced": "mode tcp, nbthread 1, `option splice-request` and"
                                 " `option splice-response`: always splices"}[splice]

    def check(self, env):
        return None if shutil.which("haproxy") else ("missing", "haproxy is not installed")

    def argv(self, env, port, upstream=None, dry=False):
        name = "%s-%d.cfg" % (self.key, port)
        if dry:
            cfg = os.path.join("$TMP", name)
        else:
            cfg = render(env, "haproxy.cfg.in", name, port=port, upstream=upstream,
                         extra_defaults=self.OPTIONS[self.splice])
        return ["haproxy", "-db", "-f", cfg]


class Nginx(Subject):
    key, label = "nginx", "nginx stream"
    detail = "stream module, worker_processes 1, foreground, temp prefix"

    def check(self, env):
        if not shutil.which("nginx"):
            return ("missing", "nginx is not installed")
        if not env.stream_module():
            return ("missing", "nginx's stream module (libnginx-mod-stream) is not installed")
        return None

    def argv(self, env, port, upstream=None, dry=False):
        name = "nginx-%d.conf" % port
        if dry:
            conf = os.path.join("$TMP", name)
        else:
            nofile = nofile_hard()
            conf = render(env, "nginx.conf.in", name, port=port, upstream=upstream,
                          stream_module=env.stream_module() or "?", nofile=nofile,
                          worker_connections=max(1024, nofile - 64))
        return ["nginx", "-p", "$TMP/" if dry else env.tmp + "/", "-e", "stderr", "-c", conf]


class Socat(Subject):
    key, label = "socat", "socat"
    detail = "TCP-LISTEN with fork: one process per connection"

    def check(self, env):
        return None if shutil.which("socat") else ("missing", "socat is not installed")

    def argv(self, env, port, upstream=None, dry=False):
        return ["socat", "TCP-LISTEN:%d,bind=%s,reuseaddr,fork,backlog=4096" % (port, HOST),
                "TCP:%s:%d" % (HOST, upstream)]


class BareProxy(Subject):
    key, label, reference = "bare", "bare C (cs-bare-proxy)", "bare"
    detail = "bench/ reference proxy in plain C"

    def check(self, env):
        return _need(env.bare_proxy, "cs-bare-proxy (build it)")

    def argv(self, env, port, upstream=None, dry=False):
        return [env.bare_proxy, "--listen", "%s:%d" % (HOST, port),
                "--upstream", "%s:%d" % (HOST, upstream)]


class CosockdApp(Subject):
    """One of cosockd's bundled apps (`app` is "proxy" or "echo") on a
    backend (None: auto) with a number of workers."""

    cosockd = True
    app = ""

    def __init__(self, backend=None, workers=1):
        self.backend, self.workers = backend, workers
        self.detail = "bundled Lua %s app" % self.app

    def check(self, env):
        missing = _need(env.cosockd, "cosockd (build it)")
        if missing:
            return missing
        if self.workers != 1 and not env.workers_supported():
            return ("skip", "this cosockd has no --workers yet (`cosockd --help` does not list it)")
        return None

    def app_args(self, port, upstream):
        return ["--listen", "%s:%d" % (HOST, port)]

    def argv(self, env, port, upstream=None, dry=False):
        a = [env.cosockd]
        if self.backend:
            a.append("--backend=%s" % self.backend)
        if self.workers != 1 or env.workers_supported():
            a.append("--workers=%d" % self.workers)
        return a + [self.app] + self.app_args(port, upstream)


class CosockdProxy(CosockdApp):
    app = "proxy"

    def __init__(self, backend=None, workers=1):
        super().__init__(backend, workers)
        if workers == 1:
            self.key = "cosockd-%s" % backend
            self.label = "cosockd %s, 1 worker" % backend
        else:
            self.key = "cosockd-w%d" % workers
            self.label = "cosockd%s, %d workers" % (" " + backend if backend else "", workers)

    def app_args(self, port, upstream):
        return super().app_args(port, upstream) + ["--upstream", "%s:%d" % (HOST, upstream)]


class BareEcho(Subject):
    key, label, kind, reference = "bare-echo", "bare C (cs-bare-echo)", "echo", "bare"
    detail = "bench/ reference echo server in plain C"

    def check(self, env):
        return _need(env.bare_echo, "cs-bare-echo (build it)")

    def argv(self, env, port, upstream=None, dry=False):
        return [env.bare_echo, "--listen", "%s:%d" % (HOST, port)]


class CosockdEcho(CosockdApp):
    kind, app = "echo", "echo"

    def __init__(self, backend=None, workers=1):
        super().__init__(backend, workers)
        if workers == 1:
            self.key = "cosockd-echo-%s" % backend
            self.label = "cosockd echo %s" % backend
        else:
            self.key = "cosockd-echo-w%d" % workers
            self.label = "cosockd echo, %d workers" % workers


def _need_openssl():
    if shutil.which("openssl"):
        return None
    return ("missing", "openssl is not installed (it makes the certificate)")


class HAProxyTLS(Subject):
    key, label, reference, tls = "haproxy-tls", "HAProxy TLS", "haproxy", True
    detail = ("mode tcp, nbthread 1, `bind ... ssl crt` (OpenSSL); otherwise as the plain HAProxy"
              " subject, TLS settings HAProxy's defaults")

    def check(self, env):
        if not shutil.which("haproxy"):
            return ("missing", "haproxy is not installed")
        return _need_openssl()

    def argv(self, env, port, upstream=None, dry=False):
        name = "%s-%d.cfg" % (self.key, port)
        if dry:
            cfg = os.path.join("$TMP", name)
        else:
            cfg = render(env, "haproxy-tls.cfg.in", name, port=port, upstream=upstream,
                         pem=env.tls_files()[2])
        return ["haproxy", "-db", "-f", cfg]


class NginxTLS(Nginx):
    key, label, tls = "nginx-tls", "nginx stream TLS", True
    detail = ("stream module with `listen ... ssl` (OpenSSL), worker_processes 1; TLS settings nginx's"
              " defaults but `ssl_protocols TLSv1.2 TLSv1.3` (1.22 leaves 1.3 out)")

    def check(self, env):
        return super().check(env) or _need_openssl()

    def argv(self, env, port, upstream=None, dry=False):
        name = "%s-%d.conf" % (self.key, port)
        if dry:
            conf = os.path.join("$TMP", name)
        else:
            cert, key, _ = env.tls_files()
            nofile = nofile_hard()
            conf = render(env, "nginx-tls.conf.in", name, port=port, upstream=upstream,
                          stream_module=env.stream_module() or "?", nofile=nofile,
                          worker_connections=max(1024, nofile - 64), cert=cert, key=key)
        return ["nginx", "-p", "$TMP/" if dry else env.tmp + "/", "-e", "stderr", "-c", conf]


class CosockdTLSProxy(CosockdProxy):
    """The bundled proxy terminating TLS (wolfSSL) with --tls-cert/--tls-key."""

    tls = True

    def __init__(self, backend):
        super().__init__(backend, 1)
        self.key = "cosockd-tls-%s" % backend
        self.label = "cosockd %s TLS, 1 worker" % backend
        self.detail = "bundled Lua proxy app, `--tls-cert`/`--tls-key` (wolfSSL)"

    def check(self, env):
        problem = super().check(env) or _need_openssl()
        if problem:
            return problem
        if not env.tls_supported():
            return ("skip", "this cosockd's proxy has no --tls-cert yet (`cosockd --help` and"
                            " `cosockd proxy --help` do not list it)")
        return None

    def argv(self, env, port, upstream=None, dry=False):
        if dry:
            cert, key = os.path.join("$TMP", "tls", "cert.pem"), os.path.join("$TMP", "tls", "key.pem")
        else:
            cert, key, _ = env.tls_files()
        return super().argv(env, port, upstream, dry) + ["--tls-cert", cert, "--tls-key", key]


def tls_peers():
    """Every TLS-terminating proxy, in the order a round runs them."""
    return [HAProxyTLS(), NginxTLS(), CosockdTLSProxy("uring"), CosockdTLSProxy("epoll")]


def proxy_peers():
    """Every proxy peer, in the order a round runs them."""
    return [HAProxy(), HAProxy("auto"), HAProxy("forced"), Nginx(), Socat(), BareProxy(),
            CosockdProxy("uring"), CosockdProxy("epoll"), CosockdProxy(None, 2)]


def echo_servers():
    return [BareEcho(), CosockdEcho("uring"), CosockdEcho("epoll")]


BIG_WORKERS = 14
BIG_COUNT = 262144


class BareWsEcho(Subject):
    key, label, kind, reference = "bare-ws", "bare C (serve ws)", "ws", "bare"
    detail = "`cosockd-bench serve ws`: bench/'s reference WebSocket echo server in plain C (epoll)"

    def check(self, env):
        return _need(env.bench, "cosockd-bench (build it)")

    def argv(self, env, port, upstream=None, dry=False):
        return [env.bench, "serve", "ws", "--listen", "%s:%d" % (HOST, port)]


def node_modules_ready(env):
    """Is bench/peers/node_modules/ws there (npm ci done)?"""
    return os.path.isfile(os.path.join(env.templates, "node_modules", "ws", "package.json"))


def npm_ci_command(env):
    return ["npm", "ci", "--prefix", env.templates, "--no-audit", "--no-fund"]


def ensure_node_modules(env):
    """Install bench/peers/node_modules from package-lock.json when it is
    missing and npm is there; returns None, or why not."""
    if node_modules_ready(env):
        return None
    if not shutil.which("npm"):
        return "npm is not installed"
    argv = npm_ci_command(env)
    print("compare: installing the ws peer's npm packages: %s" % " ".join(argv), flush=True)
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "npm ci: %s" % e
    if r.returncode != 0 or not node_modules_ready(env):
        return "npm ci failed: %s" % ((r.stderr.strip().splitlines() or ["?"])[-1])
    return None


class NodeWsEcho(Subject):
    key, label, kind, reference = "node-ws", "Node.js ws", "ws", "node"
    detail = ("bench/peers/ws-echo.js: the npm `ws` package's WebSocketServer, one Node.js process,"
              " perMessageDeflate off")

    def check(self, env):
        if not shutil.which("node"):
            return ("missing", "node is not installed (WITH_BENCH=1 scripts/setup.sh installs nodejs)")
        if not node_modules_ready(env):
            return ("missing", "bench/peers/node_modules is not installed (%s)"
                    % " ".join(npm_ci_command(env)).replace(env.root + os.sep, ""))
        return None

    def argv(self, env, port, upstream=None, dry=False):
        return ["node", os.path.join(env.root, "bench", "peers", "ws-echo.js"), str(port), HOST]


PYTHON = "/usr/bin/python3"


def python_websockets():
    """The version of Debian's python3-websockets, or None."""
    try:
        r = subprocess.run([PYTHON, "-c", "import websockets; print(websockets.__version__)"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


class PyWsEcho(Subject):
    key, label, kind = "python-websockets", "python3-websockets", "ws"
    detail = ("bench/peers/ws_echo.py: Debian's python3-websockets (asyncio), one process,"
              " no compression")

    def check(self, env):
        if not python_websockets():
            return ("missing", "%s cannot import websockets (apt-get install python3-websockets)" % PYTHON)
        return None

    def argv(self, env, port, upstream=None, dry=False):
        return [PYTHON, os.path.join(env.root, "bench", "peers", "ws_echo.py"), str(port), HOST]


class CosockdWsEcho(Subject):
    """bench/ws_echo.lua: cosockd.http, req2sock and an "s" cosocket."""

    kind, cosockd = "ws", True
    detail = ("bench/ws_echo.lua: `cosockd.http` with one page that upgrades through"
              " `ba.socket.req2sock` into an \"s\" cosocket echoing every message; one process")

    def __init__(self, backend):
        self.backend = backend
        self.key = "cosockd-ws-%s" % backend
        self.label = "cosockd %s" % backend

    def check(self, env):
        return _need(env.cosockd, "cosockd (build it)") or env.http_supported()

    def argv(self, env, port, upstream=None, dry=False):
        return [env.cosockd, "--backend=%s" % self.backend,
                os.path.join(env.root, "bench", "ws_echo.lua"), str(port)]


def ws_servers():
    """Every WebSocket echo server, in the order a round runs them."""
    return [BareWsEcho(), NodeWsEcho(), PyWsEcho(), CosockdWsEcho("uring"), CosockdWsEcho("epoll")]


def big_echo():
    return CosockdEcho(None, BIG_WORKERS)


def versions(env):
    """One line per peer program: its version, as it reports it."""
    out = {}
    for name, argv in (("haproxy", ["haproxy", "-v"]), ("nginx", ["nginx", "-v"]),
                       ("socat", ["socat", "-V"]), ("gnuplot", ["gnuplot", "--version"]),
                       ("node", ["node", "--version"])):
        if not shutil.which(argv[0]):
            continue
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        if name == "socat":
            lines = [l for l in lines if "version" in l] or lines
        if lines:
            out[name] = ("Node.js " if name == "node" else "") + lines[0].strip()
    try:
        import json
        with open(os.path.join(env.templates, "node_modules", "ws", "package.json")) as f:
            out["ws"] = "npm ws %s" % json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        pass
    v = python_websockets()
    if v:
        out["websockets"] = "python3-websockets %s" % v
    return out
