"""cmp_stats - the arithmetic of bench/compare: medians, ratios, number
formatting and reading figures out of cosockd-bench JSON results.

Everything here is pure (no I/O) so that --self-test can check it.
"""

import math


def median(values):
    """Median of the numbers in values, ignoring None; the mean of the two
    middle ones for an even count; None when there is nothing."""
    xs = sorted(v for v in values if v is not None and not _nan(v))
    n = len(xs)
    if n == 0:
        return None
    if n % 2:
        return xs[n // 2]
    return (xs[n // 2 - 1] + xs[n // 2]) / 2


def ratio(a, b):
    """a / b, or None when either is unknown or b is 0."""
    if a is None or b is None or _nan(a) or _nan(b) or b == 0:
        return None
    return a / b


def _nan(v):
    return isinstance(v, float) and math.isnan(v)


def fmt(v, spec=".0f", none="n/a"):
    """v formatted with spec, or `none` when v is unknown."""
    if v is None or _nan(v):
        return none
    return format(v, spec)


def fmt_ratio(r):
    """A ratio as '1.23x' (n/a when unknown)."""
    return fmt(r, ".2f") + "x" if r is not None else "n/a"


def fmt_count(v):
    """A large count with thin grouping: 262144 -> '262,144'."""
    return "n/a" if v is None else "{:,}".format(int(v))


def dig(d, path):
    """d[a][b]... for path 'a.b...', or None when any step is missing."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def first_of(d, *paths):
    """The first of the dotted paths present in d (cosockd-bench renamed
    some keys as it grew, e.g. round_trips_per_s -> ops_per_s)."""
    for p in paths:
        v = dig(d, p)
        if v is not None:
            return v
    return None


# Figures compare reads from the "results" object of each load run, with
# the older names cosockd-bench used first for the same figure.
FIGURES = {
    "ops_per_s": ("ops_per_s", "round_trips_per_s"),
    "bytes_per_s": ("bytes_per_s",),
    "errors": ("errors",),
    "cpu_us_per_op": ("server_cpu_us_per_op", "server_cpu_us_per_rt"),
    "cpu_us_per_mib": ("server_cpu_us_per_mib",),
    "server_cpu_s": ("server_cpu_s",),
    "load_cpu_s": ("load_cpu_s",),
    "p50": ("latency_us.p50",),
    "p90": ("latency_us.p90",),
    "p99": ("latency_us.p99",),
    "p99_9": ("latency_us.p99_9",),
    "held": ("held",),
    "dropped": ("dropped",),
    "verified": ("verified",),
    "rss_before": ("rss_before_bytes",),
    "rss_after": ("rss_after_bytes",),
    "rss_per_conn": ("rss_per_conn_bytes",),
    "server_processes": ("server_processes",),
    "tls_handshakes": ("tls.handshakes",),
    "tls_resumed": ("tls.resumed",),
}


def figure(results, name):
    """Figure `name` (a FIGURES key) from a results object, or None."""
    v = first_of(results or {}, *FIGURES[name])
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    return None


def verdict(ok):
    """'met' / 'not met' / 'unknown' for True / False / None."""
    return {True: "met", False: "**not met**", None: "unknown (no data)"}[ok]
