"""cmp_report - what bench/compare measured (Run, Store) and how it is
written up as bench/RESULTS.md.

The report only reads the Store: every figure in it is a median of the
runs recorded there, and every run that failed is listed as failed.
"""

import os

from cmp_stats import fmt, fmt_count, fmt_ratio, figure, median, ratio, verdict

MIB = 1 << 20


class Run:
    """One measured run: a subject in one scenario in one round."""

    def __init__(self, scenario, subject, rnd, status="ok", reason="", results=None,
                 commands=None, param=None, extra=None):
        self.scenario, self.subject, self.round = scenario, subject, rnd
        self.status, self.reason = status, reason   # ok / failed / skipped
        self.results = results or {}
        self.commands = commands or []
        self.param = param
        self.extra = extra or {}

    def fig(self, name):
        if self.status != "ok":
            return None
        if name in self.extra:
            return self.extra[name]
        return figure(self.results, name)


class Store:
    def __init__(self):
        self.runs = []

    def add(self, run):
        self.runs.append(run)
        return run

    def select(self, scenario, subject=None, param=None):
        return [r for r in self.runs if r.scenario == scenario
                and (subject is None or r.subject == subject)
                and (param is None or r.param == param)]

    def med(self, scenario, subject, name, param=None):
        return median(r.fig(name) for r in self.select(scenario, subject, param))

    def failures(self):
        return [r for r in self.runs if r.status == "failed"]

    def skips(self):
        seen, out = set(), []
        for r in self.runs:
            if r.status == "skipped" and (r.scenario, r.subject) not in seen:
                seen.add((r.scenario, r.subject))
                out.append(r)
        return out

    def ok_count(self, scenario, subject, param=None):
        rs = self.select(scenario, subject, param)
        return sum(r.status == "ok" for r in rs), len(rs)


def rounds(n):
    return "%d interleaved round%s" % (n, "" if n == 1 else "s")


def ws_size(n):
    """A message size for people: 64 -> '64 B', 16384 -> '16 KiB'."""
    return "%d KiB" % (n // 1024) if n >= 1024 and n % 1024 == 0 else "%d B" % n


def gbps(bytes_per_s):
    return None if bytes_per_s is None else bytes_per_s / 1e9


class Report:
    """Builds RESULTS.md from a Store and the run's settings (cfg: the
    parsed options plus plan facts, see bench/compare)."""

    def __init__(self, store, cfg, header, subjects):
        self.s, self.cfg, self.h = store, cfg, header
        self.subjects = subjects  # key -> Subject, in run order
        self.goal_lines = []

    # ---- small helpers ----

    def label(self, key):
        return self.subjects[key].label if key in self.subjects else key

    def keys(self, scenario, param=None):
        """Subject keys seen in a scenario, in run order."""
        seen = []
        for r in self.s.runs:
            if r.scenario == scenario and (param is None or r.param == param) and r.subject not in seen:
                seen.append(r.subject)
        return seen

    def runs_ok(self, scenario, key, param=None):
        ok, n = self.s.ok_count(scenario, key, param)
        skipped = [r for r in self.s.select(scenario, key, param) if r.status == "skipped"]
        if skipped and ok == 0:
            return "skipped"
        return "%d/%d" % (ok, n) if ok == n else "**%d/%d**" % (ok, n)

    def cell(self, v, spec=".0f", scenario=None, key=None, param=None):
        """A median cell: FAILED when no run of the row succeeded."""
        if v is None and scenario is not None:
            rs = self.s.select(scenario, key, param)
            if rs and all(r.status == "skipped" for r in rs):
                return "skipped"
            if rs and not any(r.status == "ok" for r in rs):
                return "FAILED"
        return fmt(v, spec)

    def per_round(self, scenario, key, name, spec=".0f", scale=1.0, param=None):
        out = []
        for r in self.s.select(scenario, key, param):
            if r.status == "failed":
                out.append("FAILED")
            elif r.status == "skipped":
                out.append("skipped")
            else:
                v = r.fig(name)
                out.append(fmt(None if v is None else v * scale, spec))
        return " ".join(out) or "n/a"

    def ref_key(self, scenario, ref):
        for k in self.keys(scenario):
            if k in self.subjects and self.subjects[k].reference == ref:
                return k
        return None

    def cosockd_keys(self, scenario):
        return [k for k in self.keys(scenario) if k in self.subjects and self.subjects[k].cosockd]

    def goal(self, text):
        self.goal_lines.append(text)
        return "- " + text

    # ---- sections ----

    def header(self):
        h = self.h
        L = ["# cosockd benchmark results", "",
             "Written by `bench/compare`; rerun it rather than editing this file.",
             "Chart: [%s](%s)." % (os.path.basename(h["chart_link"]), h["chart_link"])
             if h.get("chart_link") else "Chart: none (%s)." % h.get("chart_note", "not drawn"),
             "",
             "- Date: %s" % h["date"],
             "- Command: `%s`" % h["command"],
             "- Machine: %s" % h["machine"],
             "- RLIMIT_NOFILE: %s" % h["nofile"],
             "- Pinning: the server under test on CPU 0; load generator and backend on CPU 1 (`taskset`)",
             "- Other load: loadavg %s before the run, %s after (1/5/15 min)" % (h["load_before"], h["load_after"]),
             "- cosockd: %s" % h["cosockd"]]
        if h.get("versions"):
            L.append("- Programs: " + "; ".join(h["versions"].values()))
        return L

    def how_to_read(self):
        c = self.cfg
        return ["", "## How to read this", "",
                "Each figure is the median of %s (every round runs every"
                " peer once, in the same order), each run against a freshly started server"
                " that gets one warm-up request first; ratios are between medians from this"
                " same invocation. Runs are %g s measured after %g s of warm-up."
                % (rounds(c.rounds), c.duration, c.warmup),
                "",
                "The machine has few cores and the load generator shares CPU 1 with the"
                " backend, so the load side often caps throughput before the server under"
                " test does. Server CPU time per request (or per MiB) — user+system time of"
                " the server's whole process tree over the measured window, divided by the"
                " work done — is the steadier figure of what a server costs.",
                "",
                "A run that failed (did not start, or saw any error) is shown as FAILED and"
                " left out of the medians; the \"runs ok\" column counts them.",
                "The multi-worker cosockd variant is confined to CPU 0 like every server"
                " under test, so on this machine it shows what running several workers"
                " costs, not how cosockd scales across cores."]

    def peers_table(self):
        keys = [k for k in self.subjects]
        if not keys:
            return []
        L = ["", "## What runs", "",
             "| name | what | command (ports filled in per run; configs from bench/peers/) |",
             "|---|---|---|"]
        for k in keys:
            sub = self.subjects[k]
            cmd = self.h["shown"].get(k, "")
            L.append("| %s | %s | `%s` |" % (sub.label, sub.detail, cmd))
        return L

    def rr(self):
        sc = "rr"
        keys = self.keys(sc)
        if not keys:
            return []
        c = self.cfg
        hk, bk = self.ref_key(sc, "haproxy"), self.ref_key(sc, "bare")
        med = lambda k, n: self.s.med(sc, k, n)
        L = ["", "## Request/response through a proxy (rr)", "",
             "`%s` in front of `%s`, each run's proxy started fresh; medians of %s."
             % (self.h["cmd"].get("rr", "?"), self.h["cmd"].get("rr-backend", "?"), rounds(c.rounds)),
             "Latency is per request with all %d connections busy." % c.rr_conns, "",
             "| proxy | requests/s | vs HAProxy | vs bare C | p50 µs | p99 µs | p99.9 µs"
             " | server CPU µs/request | vs HAProxy | runs ok |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in keys:
            rps, cpu = med(k, "ops_per_s"), med(k, "cpu_us_per_op")
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                self.label(k), self.cell(rps, ".0f", sc, k),
                fmt_ratio(ratio(rps, med(hk, "ops_per_s"))),
                fmt_ratio(ratio(rps, med(bk, "ops_per_s"))),
                fmt(med(k, "p50")), fmt(med(k, "p99")), fmt(med(k, "p99_9")),
                self.cell(cpu, ".2f", sc, k), fmt_ratio(ratio(cpu, med(hk, "cpu_us_per_op"))),
                self.runs_ok(sc, k)))
        L += ["", "Goal (issue 4): requests/s at least HAProxy's and p99 no higher than HAProxy's.", ""]
        for k in self.cosockd_keys(sc):
            rr = ratio(med(k, "ops_per_s"), med(hk, "ops_per_s"))
            p99, hp99 = med(k, "p99"), med(hk, "p99")
            ok_rate = None if rr is None else rr >= 1.0
            ok_p99 = None if p99 is None or hp99 is None else p99 <= hp99
            L.append(self.goal("rr, %s: %s HAProxy's requests/s (goal ≥ 1.00x): %s; p99 %s µs vs"
                               " HAProxy %s µs (goal ≤): %s"
                               % (self.label(k), fmt_ratio(rr), verdict(ok_rate),
                                  fmt(p99), fmt(hp99), verdict(ok_p99))))
        L += ["", "Every round:", "",
              "| proxy | requests/s | p99 µs | server CPU µs/request |", "|---|---|---|---|"]
        for k in keys:
            L.append("| %s | %s | %s | %s |" % (self.label(k), self.per_round(sc, k, "ops_per_s"),
                                                self.per_round(sc, k, "p99"),
                                                self.per_round(sc, k, "cpu_us_per_op", ".2f")))
        return L

    def bulk(self):
        dirs = [d for d in ("up", "down") if self.keys("bulk-" + d)]
        if not dirs:
            return []
        c = self.cfg
        keys = []
        for d in dirs:
            keys += [k for k in self.keys("bulk-" + d) if k not in keys]
        L = ["", "## Bulk transfer through a proxy (bulk)", "",
             "`%s` (DIR = %s) in front of `%s` (up) or `%s` (down), each run's proxy"
             " started fresh; medians of %s. GB/s is 10^9 bytes per second of"
             " payload in the direction measured."
             % (self.h["cmd"].get("bulk", "?"), " and ".join(dirs),
                self.h["cmd"].get("bulk-backend-up", "?"),
                self.h["cmd"].get("bulk-backend-down", "?"), rounds(c.rounds)), ""]
        head, rule = "| proxy |", "|---|"
        for d in dirs:
            head += " %s GB/s | vs HAProxy | vs bare C | %s server CPU µs/MiB | runs ok |" % (d, d)
            rule += "---:|---:|---:|---:|---:|"
        L += [head, rule]
        for k in keys:
            row = "| %s |" % self.label(k)
            for d in dirs:
                sc = "bulk-" + d
                hk, bk = self.ref_key(sc, "haproxy"), self.ref_key(sc, "bare")
                g = gbps(self.s.med(sc, k, "bytes_per_s"))
                row += " %s | %s | %s | %s | %s |" % (
                    self.cell(g, ".2f", sc, k),
                    fmt_ratio(ratio(g, gbps(self.s.med(sc, hk, "bytes_per_s")))),
                    fmt_ratio(ratio(g, gbps(self.s.med(sc, bk, "bytes_per_s")))),
                    self.cell(self.s.med(sc, k, "cpu_us_per_mib"), ".1f", sc, k),
                    self.runs_ok(sc, k))
            L.append(row)
        L += ["", "Goal (issue 4): at least 0.9x HAProxy's GB/s.", ""]
        for d in dirs:
            sc = "bulk-" + d
            hk = self.ref_key(sc, "haproxy")
            for k in self.cosockd_keys(sc):
                r = ratio(self.s.med(sc, k, "bytes_per_s"), self.s.med(sc, hk, "bytes_per_s"))
                L.append(self.goal("bulk %s, %s: %s HAProxy's GB/s (goal ≥ 0.90x): %s"
                                   % (d, self.label(k), fmt_ratio(r),
                                      verdict(None if r is None else r >= 0.9))))
        L += ["", "Every round:", "", "| proxy |" + "".join(
            " %s GB/s | %s µs/MiB |" % (d, d) for d in dirs), "|---|" + "---|---|" * len(dirs)]
        for k in keys:
            L.append("| %s |" % self.label(k) + "".join(
                " %s | %s |" % (self.per_round("bulk-" + d, k, "bytes_per_s", ".2f", 1e-9),
                                self.per_round("bulk-" + d, k, "cpu_us_per_mib", ".1f"))
                for d in dirs))
        return L

    def negotiated(self, scenario, key):
        """What the first good run's first handshake settled on."""
        for r in self.s.select(scenario, key):
            tls = r.results.get("tls") if r.status == "ok" else None
            if isinstance(tls, dict) and tls.get("negotiated"):
                return tls["negotiated"]
        return "n/a"

    def load_cpu(self, scenario, key):
        """The load generator's median CPU use, as a share of its CPU."""
        v = self.s.med(scenario, key, "load_cpu_s")
        return "n/a" if v is None else "%.0f%%" % (100.0 * v / self.cfg.duration)

    def tls(self):
        hs, rr = "tls-hs", "tls-rr"
        hs_keys, rr_keys = self.keys(hs), self.keys(rr)
        if not hs_keys and not rr_keys:
            return []
        c = self.cfg
        L = ["", "## TLS termination (tls)", "",
             "Every TLS subject terminates TLS with the same self-signed ECDSA P-256 certificate"
             " (made with `openssl` for the run) and forwards to `%s`; the load generator is a"
             " wolfSSL client offering X25519, then P-256, without checking the certificate."
             " Each run's proxy is started fresh; medians of %s. \"load CPU\" is the load"
             " generator's use of CPU 1, which it shares with the backend: near 100%% it, not"
             " the proxy, sets the pace, and the proxy's CPU per operation is the figure to read."
             % (self.h["cmd"].get("tls-backend", "?"), rounds(c.rounds))]
        if hs_keys:
            hk = self.ref_key(hs, "haproxy")
            med = lambda k, n: self.s.med(hs, k, n)
            L += ["", "### Full handshakes", "",
                  "`%s`: %d loops, each connecting, completing a full handshake (no resumption:"
                  " a run in which any handshake resumed counts as failed), then closing in good"
                  " order (close_notify and FIN, waiting for the proxy's end) and starting over."
                  " Every connection also makes the proxy connect to the backend. Latency runs"
                  " from connect() to the end of the handshake."
                  % (self.h["cmd"].get("tls-hs", "?"), c.tls_loops), "",
                  "| proxy | handshakes/s | vs HAProxy TLS | p50 µs | p99 µs"
                  " | server CPU µs/handshake | vs HAProxy TLS | load CPU | negotiated | runs ok |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
            for k in hs_keys:
                hps, cpu = med(k, "ops_per_s"), med(k, "cpu_us_per_op")
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    self.label(k), self.cell(hps, ".0f", hs, k),
                    fmt_ratio(ratio(hps, med(hk, "ops_per_s"))),
                    fmt(med(k, "p50")), fmt(med(k, "p99")),
                    self.cell(cpu, ".1f", hs, k), fmt_ratio(ratio(cpu, med(hk, "cpu_us_per_op"))),
                    self.load_cpu(hs, k), self.negotiated(hs, k), self.runs_ok(hs, k)))
        if rr_keys:
            hk = self.ref_key(rr, "haproxy")
            med = lambda k, n: self.s.med(rr, k, n)
            L += ["", "### Keep-alive requests over TLS", "",
                  "`%s`: HTTP/1.1 keep-alive over TLS, %d connections, each shaking hands once"
                  " before the clock starts. Latency is per request with all of them busy."
                  % (self.h["cmd"].get("tls-rr", "?"), c.rr_conns), "",
                  "| proxy | requests/s | vs HAProxy TLS | p50 µs | p99 µs | p99.9 µs"
                  " | server CPU µs/request | vs HAProxy TLS | load CPU | negotiated | runs ok |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
            for k in rr_keys:
                rps, cpu = med(k, "ops_per_s"), med(k, "cpu_us_per_op")
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    self.label(k), self.cell(rps, ".0f", rr, k),
                    fmt_ratio(ratio(rps, med(hk, "ops_per_s"))),
                    fmt(med(k, "p50")), fmt(med(k, "p99")), fmt(med(k, "p99_9")),
                    self.cell(cpu, ".2f", rr, k), fmt_ratio(ratio(cpu, med(hk, "cpu_us_per_op"))),
                    self.load_cpu(rr, k), self.negotiated(rr, k), self.runs_ok(rr, k)))
        L += ["", "No goal is set for TLS (issue 5 asks for these figures).", "", "Every round:", "",
              "| proxy | handshakes/s | server CPU µs/handshake | requests/s | server CPU µs/request |",
              "|---|---|---|---|---|"]
        for k in hs_keys + [k for k in rr_keys if k not in hs_keys]:
            L.append("| %s | %s | %s | %s | %s |" % (
                self.label(k), self.per_round(hs, k, "ops_per_s"),
                self.per_round(hs, k, "cpu_us_per_op", ".1f"),
                self.per_round(rr, k, "ops_per_s"), self.per_round(rr, k, "cpu_us_per_op", ".2f")))
        return L

    def echo(self):
        sc = "echo"
        keys = self.keys(sc)
        if not keys:
            return []
        c = self.cfg
        bk = self.ref_key(sc, "bare")
        med = lambda k, n: self.s.med(sc, k, n)
        L = ["", "## Echo: %d connections, %d-byte messages, closed loop" % (c.echo_conns, c.echo_size), "",
             "`%s` against each server started fresh; medians of %s. Latency is per"
             " round trip with all %d connections in flight."
             % (self.h["cmd"].get("echo", "?"), rounds(c.rounds), c.echo_conns), "",
             "| server | round trips/s | vs bare C | p50 µs | p99 µs | p99.9 µs"
             " | server CPU µs/round trip | vs bare C | runs ok |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in keys:
            rps, cpu = med(k, "ops_per_s"), med(k, "cpu_us_per_op")
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                self.label(k), self.cell(rps, ".0f", sc, k), fmt_ratio(ratio(rps, med(bk, "ops_per_s"))),
                fmt(med(k, "p50")), fmt(med(k, "p99")), fmt(med(k, "p99_9")),
                self.cell(cpu, ".2f", sc, k), fmt_ratio(ratio(cpu, med(bk, "cpu_us_per_op"))),
                self.runs_ok(sc, k)))
        L += ["", "Goal (issue 4): at least 0.8x the bare C server's round trips/s.", ""]
        for k in self.cosockd_keys(sc):
            r = ratio(med(k, "ops_per_s"), med(bk, "ops_per_s"))
            L.append(self.goal("echo, %s: %s bare C's round trips/s (goal ≥ 0.80x): %s"
                               % (self.label(k), fmt_ratio(r), verdict(None if r is None else r >= 0.8))))
        L += ["", "Every round:", "",
              "| server | round trips/s | server CPU µs/round trip |", "|---|---|---|"]
        for k in keys:
            L.append("| %s | %s | %s |" % (self.label(k), self.per_round(sc, k, "ops_per_s"),
                                           self.per_round(sc, k, "cpu_us_per_op", ".2f")))
        return L

    def ws(self):
        sizes = [n for n in getattr(self.cfg, "ws_size_list", []) if self.keys("ws-%d" % n)]
        if not sizes:
            return []
        c = self.cfg
        L = ["", "## WebSocket echo (ws)", "",
             "`cosockd-bench ws`: %d connections, each upgrading (RFC 6455, Sec-WebSocket-Accept"
             " checked), then sending one binary message at a time, masked with a fresh mask per"
             " frame, and checking every echo byte for byte; closed loop, a Close at the end."
             " Each server is started fresh; medians of %s. Latency is per message with all"
             " %d connections in flight. No goal is set (issue 6 asks for these figures);"
             " %s is the main size." % (c.ws_conns, rounds(c.rounds), c.ws_conns, ws_size(sizes[0]))]
        for n in sizes:
            sc = "ws-%d" % n
            keys = self.keys(sc)
            bk, nk = self.ref_key(sc, "bare"), self.ref_key(sc, "node")
            # a reference with no runs here (None) has no figures, not everyone's
            med = lambda k, f: self.s.med(sc, k, f) if k else None
            L += ["", "### %s messages" % ws_size(n), "",
                  "`%s`" % self.h["cmd"].get(sc, "?"), "",
                  "| server | messages/s | vs bare C | vs Node.js ws | p50 µs | p99 µs | p99.9 µs"
                  " | server CPU µs/message | vs bare C | load CPU | runs ok |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for k in keys:
                mps, cpu = med(k, "ops_per_s"), med(k, "cpu_us_per_op")
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    self.label(k), self.cell(mps, ".0f", sc, k),
                    fmt_ratio(ratio(mps, med(bk, "ops_per_s"))),
                    fmt_ratio(ratio(mps, med(nk, "ops_per_s"))),
                    fmt(med(k, "p50")), fmt(med(k, "p99")), fmt(med(k, "p99_9")),
                    self.cell(cpu, ".2f", sc, k), fmt_ratio(ratio(cpu, med(bk, "cpu_us_per_op"))),
                    self.load_cpu(sc, k), self.runs_ok(sc, k)))
        keys = []
        for n in sizes:
            keys += [k for k in self.keys("ws-%d" % n) if k not in keys]
        L += ["", "Every round:", "", "| server |" + "".join(
            " %s messages/s | %s µs/message |" % (ws_size(n), ws_size(n)) for n in sizes),
            "|---|" + "---|---|" * len(sizes)]
        for k in keys:
            L.append("| %s |" % self.label(k) + "".join(
                " %s | %s |" % (self.per_round("ws-%d" % n, k, "ops_per_s"),
                                self.per_round("ws-%d" % n, k, "cpu_us_per_op", ".2f"))
                for n in sizes))
        return L

    def conns(self):
        sc = "conns"
        counts = sorted({r.param for r in self.s.select(sc)})
        if not counts:
            return []
        keys = self.keys(sc)
        L = ["", "## Idle connections", "",
             "`%s` against each server started fresh: N connections are opened, each does"
             " one 1-byte echo, then the growth of the server's VmRSS (summed over its"
             " processes) is divided by N. User-space memory only: kernel socket buffers"
             " are not in RSS." % self.h["cmd"].get("conns", "?"), ""]
        head, rule = "| server |", "|---|"
        for n in counts:
            head += " %s conns: RSS growth KiB | B per conn | vs bare C |" % fmt_count(n)
            rule += "---:|---:|---:|"
        L += [head, rule]
        for k in keys:
            row = "| %s |" % self.label(k)
            for n in counts:
                bk = self.ref_key(sc, "bare")
                per = self.s.med(sc, k, "rss_per_conn", n)
                before, after = self.s.med(sc, k, "rss_before", n), self.s.med(sc, k, "rss_after", n)
                growth = None if before is None or after is None else (after - before) / 1024
                row += " %s | %s | %s |" % (self.cell(growth, ".0f", sc, k, n), fmt(per),
                                            fmt_ratio(ratio(per, self.s.med(sc, bk, "rss_per_conn", n))))
            L.append(row)
        L += ["", "Goal (issue 4): at most 2 KiB (2,048 B) per idle connection.", ""]
        for k in self.cosockd_keys(sc):
            for n in counts:
                per = self.s.med(sc, k, "rss_per_conn", n)
                L.append(self.goal("conns %s, %s: %s B per connection (goal ≤ 2048): %s"
                                   % (fmt_count(n), self.label(k), fmt(per),
                                      verdict(None if per is None else per <= 2048))))
        return L

    def big(self):
        sc = "big"
        rs = self.s.select(sc)
        if not rs:
            return []
        L = ["", "## %s connections" % fmt_count(self.cfg.big_count), "",
             "`%s` held by `%s`: the daemon's workers share the listening port"
             " (SO_REUSEPORT), so each stays under the per-process fd limit (%s here)."
             % (self.h["shown"].get("big", "?"), self.h["cmd"].get("big", "?"), self.h["nofile"]), "",
             "| server | connections held | verified | server processes | RSS growth MiB | B per conn | result |",
             "|---|---:|---:|---:|---:|---:|---|"]
        for r in rs:
            before, after = r.fig("rss_before"), r.fig("rss_after")
            growth = None if before is None or after is None else (after - before) / MIB
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                self.label(r.subject), fmt_count(r.fig("held")), fmt_count(r.fig("verified")),
                fmt(r.fig("server_processes")), fmt(growth, ".1f"), fmt(r.fig("rss_per_conn")),
                {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[r.status]))
            per = r.fig("rss_per_conn")
            L += ["", self.goal("%s connections held: %s; %s B per connection (goal ≤ 2048): %s"
                                % (fmt_count(self.cfg.big_count),
                                   verdict(None if r.status == "skipped" else r.status == "ok"),
                                   fmt(per), verdict(None if per is None else per <= 2048)))]
        return L

    def pool(self):
        sc = "pool"
        keys = self.keys(sc)
        if not keys:
            return []
        n = self.cfg.pool_runs
        L = ["", "## Blocking calls on pool threads", "",
             "What a blocking socket call on a `ba.thread` job costs next to the same call"
             " in a cosocket: 20,000 sequential write+read round trips of 4 bytes to an"
             " `\"s\"` echo cosocket on loopback, first from a job, then from a cosocket, in"
             " one daemon. Each pool-thread call goes to the loop thread and back (a post,"
             " an eventfd wake-up and a condition variable), except writes the kernel takes"
             " at once. %d interleaved run%s per backend, not pinned (the job and the loop"
             " need both cores), median shown:" % (n, "" if n == 1 else "s"), "",
             "    " + self.h["cmd"].get("pool", "?"), "",
             "| backend | pool thread, µs/round trip | cosocket, µs/round trip | ratio | runs ok |",
             "|---|---:|---:|---:|---:|"]
        for k in keys:
            pt, co = self.s.med(sc, k, "pool_us"), self.s.med(sc, k, "cosocket_us")
            L.append("| %s | %s (%s) | %s (%s) | %s | %s |" % (
                self.label(k), self.cell(pt, ".1f", sc, k),
                ", ".join(fmt(r.fig("pool_us"), ".1f", "FAILED") for r in self.s.select(sc, k)),
                self.cell(co, ".1f", sc, k),
                ", ".join(fmt(r.fig("cosocket_us"), ".1f", "FAILED") for r in self.s.select(sc, k)),
                fmt_ratio(ratio(pt, co)), self.runs_ok(sc, k)))
        L += ["", "Pool threads are for code that must block (the original product's LSP"
              " pages and `ba.thread` jobs); connection-heavy work belongs in cosockets."]
        return L

    def problems(self):
        L = []
        skips = self.s.skips()
        if skips:
            L += ["", "## Not run", ""]
            for r in skips:
                L.append("- %s, %s: %s" % (r.scenario, self.label(r.subject), r.reason))
        fails = self.s.failures()
        if fails:
            L += ["", "## Failed runs", "",
                  "%d run(s) failed; their figures are not in any median above." % len(fails), ""]
            for r in fails:
                first = (r.reason or "failed").strip().splitlines() or ["failed"]
                L.append("- %s, %s, round %s: %s" % (r.scenario, self.label(r.subject), r.round,
                                                     " / ".join(x.strip() for x in first[:4])))
        return L

    def render(self):
        body = []
        for part in (self.rr, self.bulk, self.tls, self.echo, self.ws, self.conns, self.big, self.pool):
            body += part()
        goals = list(self.goal_lines)
        L = self.header() + self.how_to_read()
        if goals:
            L += ["", "## Goals at a glance", ""] + ["- " + g for g in goals]
        L += self.peers_table() + body + self.problems()
        return "\n".join(L) + "\n"
