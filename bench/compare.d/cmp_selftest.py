"""cmp_selftest - `bench/compare --self-test`.

1. The arithmetic: medians, ratios, key fallbacks, and that a report made
   from made-up runs says what those runs say (medians, ratios, FAILED
   rows, goal verdicts), and that gnuplot draws the chart.
2. The peers, live: a small HTTP server from Python's standard library
   runs on 127.0.0.1 as the backend; every proxy peer that is available is
   started in front of it in turn and must return the backend's answer
   (a body naming the peer, so a stale listener cannot pass), every
   TLS-terminating peer likewise over TLS (Python's ssl); every echo
   server must echo, and every WebSocket server must upgrade and echo a
   message (the Node.js peer's npm packages are installed first when
   missing, unless --no-setup). Nothing is pinned and nothing is measured.
"""

import http.server
import os
import shutil
import tempfile
import threading
import types

import cmp_chart
import cmp_peers
import cmp_procs
from cmp_report import Report, Run, Store
from cmp_stats import dig, figure, fmt_ratio, median, ratio


class Checker:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def eq(self, what, got, want):
        if got == want or (isinstance(want, float) and got is not None and abs(got - want) < 1e-9):
            self.passed += 1
        else:
            self.failed += 1
            print("  FAIL %s: got %r, want %r" % (what, got, want))

    def true(self, what, cond):
        self.eq(what, bool(cond), True)


def check_stats(c):
    c.eq("median odd", median([3, 1, 2]), 2)
    c.eq("median even", median([4, 1, 3, 2]), 2.5)
    c.eq("median skips None", median([None, 5, None]), 5)
    c.eq("median empty", median([]), None)
    c.eq("median all None", median([None, None]), None)
    c.eq("median one", median([7.5]), 7.5)
    c.eq("ratio", ratio(3.0, 2.0), 1.5)
    c.eq("ratio by zero", ratio(1, 0), None)
    c.eq("ratio unknown", ratio(None, 2), None)
    c.eq("fmt_ratio", fmt_ratio(1.234), "1.23x")
    c.eq("fmt_ratio none", fmt_ratio(None), "n/a")
    c.eq("dig", dig({"a": {"b": 3}}, "a.b"), 3)
    c.eq("dig missing", dig({"a": {}}, "a.b"), None)
    c.eq("old echo key", figure({"round_trips_per_s": 10.0}, "ops_per_s"), 10.0)
    c.eq("new key wins", figure({"ops_per_s": 11.0, "round_trips_per_s": 10.0}, "ops_per_s"), 11.0)
    c.eq("latency", figure({"latency_us": {"p99": 120}}, "p99"), 120)
    c.eq("not a number", figure({"errors": "x"}, "errors"), None)


def fake_cfg(**kw):
    d = dict(rounds=3, duration=1.0, warmup=0.5, rr_conns=100, echo_conns=100, echo_size=64,
             pool_runs=3, big_count=262144, tls_loops=50, ws_conns=100, ws_size_list=[64, 16384])
    d.update(kw)
    return types.SimpleNamespace(**d)


def rr_result(rps, p99, cpu):
    return {"ops": rps, "ops_per_s": rps, "errors": 0, "server_cpu_us_per_op": cpu,
            "latency_us": {"p50": p99 / 2, "p99": p99, "p99_9": p99 * 2}}


def tls_result(ops, cpu, resumed=0, load_cpu=0.5):
    return {"ops": ops, "ops_per_s": ops, "errors": 0, "server_cpu_us_per_op": cpu,
            "load_cpu_s": load_cpu, "latency_us": {"p50": 800, "p99": 2000, "p99_9": 3000},
            "tls": {"handshakes": ops, "resumed": resumed, "negotiated": "TLSv1.3 TLS_X X25519"}}


def check_tls_report(c, store, subjects):
    """Adds TLS runs to store (and their subjects); checks come after the
    whole report is rendered: see tls_checks()."""
    hap, cos, ngx = cmp_peers.HAProxyTLS(), cmp_peers.CosockdTLSProxy("uring"), cmp_peers.NginxTLS()
    # handshakes: haproxy 1000, 3000, 2000 -> 2000; cosockd 1500, 2500, FAILED -> 2000
    for rnd, (h, k) in enumerate([(1000, 1500), (3000, 2500), (2000, None)], 1):
        store.add(Run("tls-hs", hap.key, rnd, results=tls_result(h, 400.0)))
        if k is None:
            store.add(Run("tls-hs", cos.key, rnd, "failed", "7 errors (tls 7)"))
        else:
            store.add(Run("tls-hs", cos.key, rnd, results=tls_result(k, 200.0)))
        store.add(Run("tls-hs", ngx.key, rnd, "skipped", "no stream module"))
        store.add(Run("tls-rr", hap.key, rnd, results=tls_result(30000, 30.0)))
        store.add(Run("tls-rr", cos.key, rnd, results=tls_result(45000, 20.0)))
    for s in (hap, cos, ngx):
        subjects[s.key] = s
    c.eq("tls store median haproxy", store.med("tls-hs", hap.key, "ops_per_s"), 2000)
    c.eq("tls resumed figure", figure(tls_result(1, 1, resumed=3), "tls_resumed"), 3)


def tls_checks(c, text, line):
    hs_h = line("| HAProxy TLS | 2000 |")
    c.true("tls haproxy row: 1.00x itself, load CPU 50%, negotiated, 3/3",
           hs_h and "| 1.00x |" in hs_h and "| 50% |" in hs_h and "TLSv1.3 TLS_X X25519" in hs_h
           and "3/3" in hs_h)
    hs_c = line("| cosockd uring TLS, 1 worker | 2000 |")
    c.true("tls cosockd row: CPU 200.0 at 0.50x, **2/3**", "| 200.0 | 0.50x |" in hs_c and "**2/3**" in hs_c)
    c.true("tls skipped row", line("| nginx stream TLS | skipped |"))
    rr_c = line("| cosockd uring TLS, 1 worker | 45000 |")
    c.true("tls rr row: 1.50x HAProxy TLS, CPU 0.67x", "| 1.50x |" in rr_c and "| 20.00 | 0.67x |" in rr_c)
    c.true("tls per-round row", "| cosockd uring TLS, 1 worker | 1500 2500 FAILED |" in text)
    c.true("tls section", "## TLS termination (tls)" in text and "### Full handshakes" in text)


def check_ws_report(c, store, subjects):
    """Adds ws runs to store (and their subjects); see ws_checks()."""
    bare, node, cos = cmp_peers.BareWsEcho(), cmp_peers.NodeWsEcho(), cmp_peers.CosockdWsEcho("uring")
    # 64 B: bare 100k, 120k, 80k -> 100k; node 50k x3; cosockd 90k, FAILED, 70k -> 80k
    for rnd, (b, k) in enumerate([(100000, 90000), (120000, None), (80000, 70000)], 1):
        store.add(Run("ws-64", bare.key, rnd, results=rr_result(b, 500, 4.0)))
        store.add(Run("ws-64", node.key, rnd, results=rr_result(50000, 900, 16.0)))
        if k is None:
            store.add(Run("ws-64", cos.key, rnd, "failed", "2 errors (mismatch 2)"))
        else:
            store.add(Run("ws-64", cos.key, rnd, results=rr_result(k, 600, 6.0)))
        store.add(Run("ws-16384", bare.key, rnd, results=rr_result(20000, 2000, 20.0)))
        store.add(Run("ws-16384", cos.key, rnd, results=rr_result(10000, 4000, 30.0)))
    for sub in (bare, node, cos):
        subjects[sub.key] = sub
    c.eq("ws store median cosockd (failed run left out)", store.med("ws-64", cos.key, "ops_per_s"), 80000)


def ws_checks(c, text, line):
    c.true("ws section and sizes", "## WebSocket echo (ws)" in text and "### 64 B messages" in text
           and "### 16 KiB messages" in text and "64 B is the main size" in text)
    b = line("| bare C (serve ws) | 100000 |")
    c.true("ws bare row: 1.00x itself, 2.00x Node.js, 3/3", "| 1.00x | 2.00x |" in b and "| 3/3 |" in b)
    k = line("| cosockd uring | 80000 |")
    c.true("ws cosockd row: 0.80x bare, 1.60x Node.js, CPU 6.00 at 1.50x, **2/3**",
           "| 0.80x | 1.60x |" in k and "| 6.00 | 1.50x |" in k and "**2/3**" in k)
    c.true("ws 16 KiB row: no Node.js runs -> n/a", "| cosockd uring | 10000 | 0.50x | n/a |" in text)
    c.true("ws per-round row", "| cosockd uring | 90000 FAILED 70000 | 6.00 FAILED 6.00 |"
           " 10000 10000 10000 | 30.00 30.00 30.00 |" in text)


def check_report(c, workdir):
    store = Store()
    hap, cos, bare = cmp_peers.HAProxy(), cmp_peers.CosockdProxy("uring"), cmp_peers.BareProxy()
    # haproxy: 100, 300, 200 -> median 200; cosockd: 250, 150, FAILED -> 200
    for rnd, (h, k) in enumerate([(100, 250), (300, 150), (200, None)], 1):
        store.add(Run("rr", hap.key, rnd, results=rr_result(h, 1000, 10.0)))
        if k is None:
            store.add(Run("rr", cos.key, rnd, "failed", "3 errors"))
        else:
            store.add(Run("rr", cos.key, rnd, results=rr_result(k, 900, 5.0)))
        store.add(Run("rr", bare.key, rnd, "failed", "cs-bare-proxy not found"))
    c.eq("store median haproxy", store.med("rr", hap.key, "ops_per_s"), 200)
    c.eq("store median cosockd (failed run left out)", store.med("rr", cos.key, "ops_per_s"), 200)
    c.eq("store median all failed", store.med("rr", bare.key, "ops_per_s"), None)
    c.eq("failures", len(store.failures()), 4)
    for rnd, (u, d) in enumerate([(1e9, 2e9), (3e9, 4e9), (2e9, 3e9)], 1):
        store.add(Run("bulk-up", hap.key, rnd, results={"bytes_per_s": u, "errors": 0,
                                                        "server_cpu_us_per_mib": 100.0}))
        store.add(Run("bulk-up", cos.key, rnd, results={"bytes_per_s": u * 0.85, "errors": 0,
                                                        "server_cpu_us_per_mib": 80.0}))
        store.add(Run("bulk-down", hap.key, rnd, results={"bytes_per_s": d, "errors": 0,
                                                          "server_cpu_us_per_mib": 90.0}))
        store.add(Run("bulk-down", cos.key, rnd, results={"bytes_per_s": d, "errors": 0,
                                                          "server_cpu_us_per_mib": 70.0}))
    be, ce = cmp_peers.BareEcho(), cmp_peers.CosockdEcho("epoll")
    store.add(Run("echo", be.key, 1, results={"round_trips_per_s": 1000.0, "errors": 0,
                                              "server_cpu_us_per_rt": 9.0, "latency_us": {"p99": 5}}))
    store.add(Run("echo", ce.key, 1, results={"round_trips_per_s": 790.0, "errors": 0,
                                              "server_cpu_us_per_rt": 8.0, "latency_us": {"p99": 6}}))
    store.add(Run("conns", ce.key, 1, param=10000, results={
        "held": 10000, "dropped": 0, "rss_before_bytes": 1 << 20,
        "rss_after_bytes": (1 << 20) + 10000 * 1500, "rss_per_conn_bytes": 1500.0}))
    store.add(Run("pool", "pool-uring", 1, extra={"pool_us": 40.0, "cosocket_us": 10.0}))
    subjects = {s.key: s for s in (hap, cos, bare, be, ce)}
    pool = types.SimpleNamespace(key="pool-uring", label="io_uring", detail="x", cosockd=False,
                                 reference=None, kind="script")
    subjects["pool-uring"] = pool
    check_tls_report(c, store, subjects)
    check_ws_report(c, store, subjects)
    header = {"date": "today", "command": "bench/compare --self-test", "machine": "m",
              "nofile": "1 soft, 2 hard", "load_before": "0 0 0", "load_after": "0 0 0",
              "cosockd": "v", "versions": {}, "cmd": {}, "shown": {}, "chart_link": "results.svg"}
    text = Report(store, fake_cfg(), header, subjects).render()
    line = lambda start: next((l for l in text.splitlines() if l.startswith(start)), "")
    rr_h = line("| HAProxy | 200 |")
    c.true("rr haproxy row: median 200, 1.00x itself, 3/3 ok", rr_h and "1.00x" in rr_h and "3/3" in rr_h)
    rr_c = line("| cosockd uring, 1 worker | 200 |")
    c.true("rr cosockd row: 2/3 ok marked", "**2/3**" in rr_c)
    c.true("rr cosockd CPU ratio 0.50x", "| 5.00 | 0.50x |" in rr_c)
    c.true("rr bare row FAILED", line("| bare C (cs-bare-proxy) | FAILED |"))
    c.true("rr goal met (1.00x, p99 900 <= 1000)",
           "rr, cosockd uring, 1 worker: 1.00x HAProxy's requests/s (goal ≥ 1.00x): met; p99 900 µs"
           " vs HAProxy 1000 µs (goal ≤): met" in text)
    c.true("bulk up goal not met at 0.85x", "bulk up, cosockd uring, 1 worker: 0.85x HAProxy's GB/s"
           " (goal ≥ 0.90x): **not met**" in text)
    c.true("bulk down goal met", "bulk down, cosockd uring, 1 worker: 1.00x" in text)
    c.true("bulk row GB/s", line("| HAProxy | 2.00 | 1.00x |"))
    c.true("echo ratio 0.79x not met", "0.79x bare C's round trips/s (goal ≥ 0.80x): **not met**" in text)
    c.true("conns 1500 B met", "1500 B per connection (goal ≤ 2048): met" in text)
    c.true("conns growth KiB", "| 14648 | 1500 |" in text)
    c.true("pool row", line("| io_uring | 40.0 (40.0) | 10.0 (10.0) | 4.00x |"))
    c.true("failed runs listed", "## Failed runs" in text and "3 errors" in text)
    c.true("per-round FAILED cell", "| cosockd uring, 1 worker | 250 150 FAILED |" in text)
    c.true("goals at a glance", "## Goals at a glance" in text)
    tls_checks(c, text, line)
    ws_checks(c, text, line)
    with open(os.path.join(workdir, "RESULTS.md"), "w") as f:
        f.write(text)
    rep = Report(store, fake_cfg(), header, subjects)
    out = os.path.join(workdir, "results.svg")
    ok, why = cmp_chart.draw(store, rep, out, "self-test", workdir)
    if shutil.which("gnuplot"):
        c.true("gnuplot chart drawn (%s)" % why, ok)
        if ok:
            with open(out) as f:
                svg = f.read()
            c.true("chart is SVG with the peers' names", "<svg" in svg and "HAProxy" in svg)
            c.true("chart has the TLS panels", "full handshakes/s" in svg and "HAProxy TLS" in svg)
            c.true("chart has the ws panels", "WebSocket echo messages/s" in svg and "16 KiB" in svg)
    else:
        print("  note: gnuplot not installed; chart not checked")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def do_GET(self):
        body = self.server.body + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def check_peers(c, root, build, workdir, no_setup=False):
    env = cmp_peers.Env(root, build, workdir)
    if not no_setup:
        why = cmp_peers.ensure_node_modules(env)
        if why:
            print("  note: %s" % why)
    procs = cmp_procs.Procs(workdir)
    ports = cmp_procs.Ports(18900 + (os.getpid() % 50) * 20, span=1000)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", ports.take()), _Handler)
    httpd.daemon_threads = True
    httpd.body = b"compare self-test backend "
    upstream = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        for sub in (cmp_peers.proxy_peers() + cmp_peers.tls_peers() + cmp_peers.echo_servers()
                    + cmp_peers.ws_servers()):
            problem = sub.check(env)
            if problem:
                print("  %-28s %s: %s" % (sub.label, "skipped" if problem[0] == "skip" else "MISSING",
                                          problem[1]))
                if problem[0] != "skip":
                    c.failed += 1
                continue
            p = None
            try:
                port = ports.take()
                argv = sub.argv(env, port, upstream if sub.kind == "proxy" else None)
                p = procs.spawn("selftest-" + sub.key, argv)
                cmp_procs.wait_listening(p, port)
                if sub.kind == "proxy":
                    for i in range(3):  # three requests: fresh connections each time
                        path = "/%s/%d" % (sub.key, i)
                        status, body = cmp_procs.warm_http(port, path=path, tls=sub.tls)
                        want = httpd.body + path.encode()
                        if not status.startswith("HTTP/1.1 200") or body != want:
                            raise cmp_procs.Failed("got %r %r, want %r" % (status, body, want))
                    what = "proxies HTTP%s to 127.0.0.1:%d" % (" over TLS" if sub.tls else "", upstream)
                elif sub.kind == "ws":
                    for _ in range(3):
                        cmp_procs.warm_ws(port)
                    what = "upgrades and echoes WebSocket messages"
                else:
                    cmp_procs.warm_echo(port)
                    what = "echoes"
                c.passed += 1
                print("  %-28s ok: %s" % (sub.label, what))
            except (cmp_procs.Failed, OSError, ValueError, KeyError) as e:
                c.failed += 1
                print("  %-28s FAILED: %s" % (sub.label, str(e).replace("\n", "\n      ")))
            finally:
                procs.stop(p)
    finally:
        procs.stop_all()
        httpd.shutdown()
        httpd.server_close()


def main(cfg, root):
    workdir = tempfile.mkdtemp(prefix="cosockd-compare-selftest.")
    c = Checker()
    try:
        print("== statistics and report")
        check_stats(c)
        check_report(c, workdir)
        print("  %d checks passed, %d failed" % (c.passed, c.failed))
        print("== peers, live, in front of a Python HTTP backend on 127.0.0.1 (not pinned, not measured)")
        check_peers(c, root, cfg.build, workdir, cfg.no_setup)
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    finally:
        if cfg.keep:
            print("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("self-test: %s (%d failed)" % ("ok" if not c.failed else "FAILED", c.failed))
    return 1 if c.failed else 0
