"""cmp_chart - bar charts of bench/compare's medians, drawn by gnuplot
(`set terminal svg`) into one SVG file.

Panels (each only when it has data): rr requests/s and server CPU per
request by proxy; bulk GB/s and server CPU per MiB by proxy, up and down;
TLS full handshakes/s and keep-alive requests/s over TLS, each with its
server CPU, by TLS-terminating proxy; echo round trips/s and server CPU per
round trip by server; WebSocket echo messages/s and server CPU per message
by server, one bar per message size.
"""

import os
import shutil
import subprocess

from cmp_report import gbps, ws_size

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")


def _q(s):
    """A gnuplot double-quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(v):
    return "?" if v is None else "%.6g" % v


def panels(store, report):
    """[(title, ylabel, [(label, [values...])], [series names])] with data."""
    out = []
    med = store.med

    def rows(scenario, names, scale=1.0, keys=None):
        keys = keys or report.keys(scenario)
        got = []
        for k in keys:
            vals = []
            for sc, n in names:
                v = med(sc, k, n)
                vals.append(None if v is None else v * scale)
            got.append((report.label(k), vals))
        return got

    def add(title, ylabel, data, series):
        if any(v is not None for _, vals in data for v in vals):
            out.append((title, ylabel, data, series))

    add("rr: requests/s through the proxy (higher is better)", "requests/s",
        rows("rr", [("rr", "ops_per_s")]), ["requests/s"])
    add("rr: server CPU per request (lower is better)", "µs",
        rows("rr", [("rr", "cpu_us_per_op")]), ["µs/request"])
    bulk_keys = []
    for d in ("up", "down"):
        bulk_keys += [k for k in report.keys("bulk-" + d) if k not in bulk_keys]
    add("bulk: GB/s through the proxy (higher is better)", "GB/s",
        rows(None, [("bulk-up", "bytes_per_s"), ("bulk-down", "bytes_per_s")], 1e-9, bulk_keys),
        ["up", "down"])
    add("bulk: server CPU per MiB (lower is better)", "µs",
        rows(None, [("bulk-up", "cpu_us_per_mib"), ("bulk-down", "cpu_us_per_mib")], 1.0, bulk_keys),
        ["up", "down"])
    add("tls: full handshakes/s (higher is better)", "handshakes/s",
        rows("tls-hs", [("tls-hs", "ops_per_s")]), ["handshakes/s"])
    add("tls: server CPU per handshake (lower is better)", "µs",
        rows("tls-hs", [("tls-hs", "cpu_us_per_op")]), ["µs/handshake"])
    add("tls: keep-alive requests/s over TLS (higher is better)", "requests/s",
        rows("tls-rr", [("tls-rr", "ops_per_s")]), ["requests/s"])
    add("tls: server CPU per request over TLS (lower is better)", "µs",
        rows("tls-rr", [("tls-rr", "cpu_us_per_op")]), ["µs/request"])
    add("echo: round trips/s (higher is better)", "round trips/s",
        rows("echo", [("echo", "ops_per_s")]), ["round trips/s"])
    add("echo: server CPU per round trip (lower is better)", "µs",
        rows("echo", [("echo", "cpu_us_per_op")]), ["µs/round trip"])
    ws_sc = ["ws-%d" % n for n in getattr(report.cfg, "ws_size_list", []) if report.keys("ws-%d" % n)]
    ws_keys = []
    for sc in ws_sc:
        ws_keys += [k for k in report.keys(sc) if k not in ws_keys]
    ws_names = [ws_size(int(sc[3:])) for sc in ws_sc]
    add("ws: WebSocket echo messages/s (higher is better)", "messages/s",
        rows(None, [(sc, "ops_per_s") for sc in ws_sc], 1.0, ws_keys), ws_names)
    add("ws: server CPU per message (lower is better)", "µs",
        rows(None, [(sc, "cpu_us_per_op") for sc in ws_sc], 1.0, ws_keys), ws_names)
    return out


def script(panel_list, out_path, title, datadir):
    """The gnuplot program (and its data files, written into datadir)."""
    n = len(panel_list)
    cols = 1 if n == 1 else 2
    nrows = (n + cols - 1) // cols
    S = ["set encoding utf8",
         "set terminal svg size %d,%d dynamic noenhanced font 'sans,11' background rgb 'white'"
         % (560 * cols, 430 * nrows + 40),
         "set output %s" % _q(out_path),
         "set datafile missing '?'",
         "set style data histograms",
         "set style histogram clustered gap 1",
         "set style fill solid 0.85 border -1",
         "set boxwidth 0.9",
         "set grid ytics",
         "set xtics rotate by 30 right nomirror",
         "set ytics nomirror",
         "set key top right",
         "set yrange [0:*]",
         "set offsets 0, 0, graph 0.08, 0",
         "set bmargin 9",
         "set multiplot layout %d,%d title %s" % (nrows, cols, _q(title))]
    for i, (ptitle, ylabel, data, series) in enumerate(panel_list):
        path = os.path.join(datadir, "panel%d.dat" % i)
        with open(path, "w") as f:
            for label, vals in data:
                f.write(" ".join([_q(label)] + [_num(v) for v in vals]) + "\n")
        S += ["set title %s" % _q(ptitle), "set ylabel %s" % _q(ylabel)]
        parts = []
        for j, name in enumerate(series):
            src = _q(path) if j == 0 else '""'
            xt = ":xtic(1)" if j == 0 else ""
            parts.append("%s using %d%s title %s lc rgb %s" % (
                src, j + 2, xt, _q(name) if len(series) > 1 else "''", _q(COLOURS[j % len(COLOURS)])))
        if len(series) == 1:
            # the value on top of each bar
            parts.append("%s using 0:($2):($2 >= 1000 ? sprintf('%%.1fk', $2 / 1000) :"
                         " sprintf('%%.3g', $2)) with labels offset 0,0.7 notitle" % _q(path))
        S.append("plot " + ", ".join(parts))
    S.append("unset multiplot")
    return "\n".join(S) + "\n"


def draw(store, report, out_path, title, workdir):
    """Write the chart; returns (True, None) or (False, why not)."""
    gp = shutil.which("gnuplot")
    if not gp:
        return False, "gnuplot is not installed (WITH_BENCH=1 scripts/setup.sh installs gnuplot-nox)"
    pl = panels(store, report)
    if not pl:
        return False, "no figures to chart"
    datadir = os.path.join(workdir, "chart")
    os.makedirs(datadir, exist_ok=True)
    tmp_out = os.path.join(datadir, "chart.svg")
    prog = os.path.join(datadir, "chart.gp")
    with open(prog, "w") as f:
        f.write(script(pl, tmp_out, title, datadir))
    try:
        r = subprocess.run([gp, prog], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "gnuplot failed: %s" % e
    if r.returncode != 0 or not os.path.exists(tmp_out):
        return False, "gnuplot failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1]
    d = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(tmp_out, out_path)
    return True, None
