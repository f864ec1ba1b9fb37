#!/usr/bin/python3
"""Installation and packaging: what `meson install` lays out, the systemd
units (systemd-analyze verify and security), the man pages, and the Debian
package (scripts/deb.sh builds it; lintian; it installs on this machine,
starts nothing without systemd, runs, and purges without a trace).

It builds the project twice (a fresh meson build for the install, and the
package build), so it runs once, not per backend. The .deb cases need root
(dpkg -i); they purge the package in `finally`, and a package left behind
by a run that was killed is purged first.
"""

import argparse
import atexit
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# Our own options; the rest goes to the harness's Suite.
_ap = argparse.ArgumentParser(add_help=False)
_ap.add_argument("--source-root", required=True)
_own, _rest = _ap.parse_known_args()
sys.argv = [sys.argv[0]] + _rest

from harness import Suite, TestFailure, check, check_eq  # noqa: E402

suite = Suite("packaging", overall_timeout=560)
SRC = os.path.abspath(_own.source_root)
WORK = tempfile.mkdtemp(prefix="cosockd-pkgtest-")
atexit.register(shutil.rmtree, WORK, True)

CONFIG = "/etc/cosockd/cosockd.lua"
DATADIR = "/usr/share/cosockd"
# systemd's thresholds (src/analyze/analyze-security.c, badness_table): the
# exposure is shown in tenths, 0.0-10.0, and named by the first row it
# reaches: >= 10.0 DANGEROUS, >= 9.0 UNSAFE, >= 7.5 EXPOSED, >= 5.0 MEDIUM,
# >= 1.0 OK, >= 0.1 SAFE, else PERFECT. "OK or better" is below 5.0.
EXPOSURE_BANDS = [(10.0, "DANGEROUS"), (9.0, "UNSAFE"), (7.5, "EXPOSED"), (5.0, "MEDIUM"),
                  (1.0, "OK"), (0.1, "SAFE"), (0.0, "PERFECT")]
OK_OR_BETTER = 5.0

_state = {}  # results shared between cases: the install destdir, the .deb


def run(argv, timeout, what=None, env=None, cwd=None, ok=(0,)):
    """Run argv to completion (bounded); returns the CompletedProcess (text).
    A status outside `ok` fails the case with the command's output."""
    what = what or " ".join(argv)
    e = dict(os.environ)
    e.update(env or {})
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e,
                           cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"{what}: still running after {timeout} s")
    if ok is not None and p.returncode not in ok:
        raise TestFailure(f"{what}: exit status {p.returncode}\n--- stdout\n{p.stdout[-3000:]}"
                          f"\n--- stderr\n{p.stderr[-3000:]}")
    return p


def systemd_unitdir():
    """Where the build puts units by default: systemd.pc's value, else
    PREFIX/lib/systemd/system (packaging/meson.build)."""
    p = run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"], 30, ok=None)
    d = p.stdout.strip()
    return d if p.returncode == 0 and d else "/usr/lib/systemd/system"


def once(key, what, make):
    """make()'s result, computed by the first case that needs it; a failure
    is remembered, so later cases fail at once instead of redoing the work."""
    if key not in _state:
        try:
            _state[key] = (True, make())
        except Exception as e:
            _state[key] = (False, e)
            raise
    ok, v = _state[key]
    if not ok:
        raise TestFailure(f"needs {what}, which failed in an earlier case: {str(v)[:200]}")
    return v


def installed():
    """A fresh meson build with prefix /usr installed into a destdir."""
    def make():
        build = os.path.join(WORK, "build")
        dest = os.path.join(WORK, "dest")
        meson = shutil.which("meson")
        check(meson, "meson is not on PATH")
        run([meson, "setup", build, SRC, "--prefix=/usr", "-Dtests=false"], 120)
        run(["ninja", "-C", build, "-j", "2"], 240)
        run([meson, "install", "-C", build, "--destdir", dest, "--no-rebuild"], 60)
        return dest
    return once("destdir", "the meson install", make)


def tree(root):
    """Every file (and symlink) below root, as paths relative to it."""
    out = set()
    for d, _dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def rewritten_units(dest):
    """Copies of the installed units whose paths point into dest, so
    systemd-analyze finds the binary it checks; returns their directory."""
    unitdir = dest + systemd_unitdir()
    out = os.path.join(WORK, "units")
    os.makedirs(out, exist_ok=True)
    for u in ("cosockd.service", "cosockd.socket"):
        with open(os.path.join(unitdir, u)) as f:
            text = f.read()
        text = text.replace("/usr/sbin/cosockd", dest + "/usr/sbin/cosockd")
        with open(os.path.join(out, u), "w") as f:
            f.write(text)
    return out


def analyze_env(dest):
    # Documentation=man:cosockd(8) resolves against the installed page.
    return {"MANPATH": dest + "/usr/share/man", "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0",
            "LC_ALL": "C.UTF-8"}


@suite.case(timeout=300)
def install_layout():
    dest = installed()
    unitdir = systemd_unitdir().lstrip("/")
    www = {os.path.join("usr/share/cosockd/www", f) for f in tree(os.path.join(SRC, "packaging/www"))}
    want = {
        "usr/sbin/cosockd", "usr/bin/cosockd-bench",
        "etc/cosockd/cosockd.lua",
        "usr/share/cosockd/default.lua",
        "usr/share/man/man8/cosockd.8", "usr/share/man/man1/cosockd-bench.1",
        unitdir + "/cosockd.service", unitdir + "/cosockd.socket",
    } | www
    check(len(www) >= 2, f"packaging/www has too few files: {sorted(www)}")
    got = tree(dest)
    check(not (want - got), f"missing from the install: {sorted(want - got)}")
    check(not (got - want), f"installed but not in the layout: {sorted(got - want)}")

    for rel, src in (("etc/cosockd/cosockd.lua", "packaging/cosockd.lua"),
                     ("usr/share/cosockd/default.lua", "packaging/default.lua")):
        with open(os.path.join(dest, rel), "rb") as a, open(os.path.join(SRC, src), "rb") as b:
            check(a.read() == b.read(), f"{rel} differs from {src}")
    for exe in ("usr/sbin/cosockd", "usr/bin/cosockd-bench"):
        check(os.access(os.path.join(dest, exe), os.X_OK), f"{exe} is not executable")

    # The units name the installed paths, with nothing left to substitute.
    with open(os.path.join(dest, unitdir, "cosockd.service")) as f:
        service = f.read()
    for unit in ("cosockd.service", "cosockd.socket"):
        with open(os.path.join(dest, unitdir, unit)) as f:
            left = re.findall(r"@[a-z_]+@", f.read())
        check(not left, f"{unit} has unsubstituted {left}")
    check(f"\nExecStart=/usr/sbin/cosockd -c {CONFIG}\n" in service,
          f"ExecStart does not run /usr/sbin/cosockd -c {CONFIG}")
    check(f"\nExecStartPre=/usr/sbin/cosockd --check -c {CONFIG}\n" in service,
          "ExecStartPre is not the configuration check")

    # The daemon was built with the installed paths of its configuration and
    # data directory compiled in (COSOCKD_CONFIG, COSOCKD_DATADIR).
    with open(os.path.join(dest, "usr/sbin/cosockd"), "rb") as f:
        binary = f.read()
    for s in (CONFIG, DATADIR):
        check(s.encode() + b"\0" in binary or (s + "/").encode() in binary,
              f"the installed daemon does not contain the path {s}")

    # The installed daemon runs.
    p = run([os.path.join(dest, "usr/sbin/cosockd"), "--version"], 15)
    check(p.stdout.startswith("cosockd 0.1.0 (Lua 5.4"), f"--version: {p.stdout!r}")


@suite.case(timeout=120)
def units_verify():
    dest = installed()
    units = rewritten_units(dest)
    p = run(["systemd-analyze", "verify", os.path.join(units, "cosockd.service"),
             os.path.join(units, "cosockd.socket")], 60, env=analyze_env(dest), cwd=units)
    # verify exits 0 on unknown keys and bad values too; they show on stderr.
    check(p.stderr.strip() == "" and p.stdout.strip() == "",
          f"systemd-analyze verify complained:\n{p.stdout}{p.stderr}")


@suite.case(timeout=120)
def units_security():
    dest = installed()
    units = rewritten_units(dest)
    p = run(["systemd-analyze", "security", "--offline=yes",
             os.path.join(units, "cosockd.service")], 60, env=analyze_env(dest), cwd=units)
    m = re.search(r"Overall exposure level for cosockd\.service: (\d+\.\d) (\w+)", p.stdout)
    check(m, f"no overall exposure in:\n{p.stdout[-2000:]}{p.stderr}")
    exposure, band = float(m.group(1)), m.group(2)
    want_band = next(name for floor, name in EXPOSURE_BANDS if exposure >= floor)
    check_eq(band, want_band, f"band systemd names for exposure {exposure}")
    check(exposure < OK_OR_BETTER,
          f"exposure {exposure} {band}: want the OK band or better (< {OK_OR_BETTER})\n"
          + "\n".join(l for l in p.stdout.splitlines() if l.startswith("✗")))
    print(f"     cosockd.service exposure: {exposure} {band}", flush=True)


def roff_text(path):
    """A man page's source with escapes flattened: \\- to -, fonts dropped."""
    with open(path) as f:
        s = f.read()
    s = re.sub(r"\\f[BIRP]|\\f\(..|\\&", "", s)
    return s.replace("\\-", "-")


@suite.case(timeout=60)
def man_pages():
    dest = installed()
    for page in ("usr/share/man/man8/cosockd.8", "usr/share/man/man1/cosockd-bench.1"):
        path = os.path.join(dest, page)
        # What lintian runs: any groff or man warning is a defect.
        p = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path], 30,
                env={"LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"})
        check(p.stderr.strip() == "", f"{page}: man warns:\n{p.stderr}")
    # cosockd(8) documents every option of `cosockd --help`, the
    # configuration options from the service, and every section it promises.
    text = roff_text(os.path.join(dest, "usr/share/man/man8/cosockd.8"))
    help_text = run([suite.cosockd, "--help"], 15).stdout
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", help_text))
    opts |= {"--config", "-c", "--check"}
    check(len(opts) >= 15, f"odd --help, too few options found: {sorted(opts)}")
    missing = sorted(o for o in opts if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", text))
    check(not missing, f"cosockd.8 does not document: {missing}")
    for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION", "SIGNALS",
                "SYSTEMD", "FILES", "ENVIRONMENT", '"EXIT STATUS"', '"SEE ALSO"'):
        check(re.search(r"^\.SH " + re.escape(sec) + r"$", text, re.M), f"cosockd.8 has no {sec} section")
    for word in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "fdname",
                 "SIGHUP", "SIGQUIT", "SIGTERM", "reload_grace", "shutdown_grace", "scripts"):
        check(word in text, f"cosockd.8 does not mention {word}")


# ---------------------------------------------------------------------------
# The Debian package

def deb():
    """The .deb scripts/deb.sh builds."""
    def make():
        out = os.path.join(WORK, "deb")
        p = run([os.path.join(SRC, "scripts/deb.sh"), out], 400,
                env={"DEB_BUILD_OPTIONS": "nocheck parallel=2"})
        lines = p.stdout.strip().splitlines()
        check(lines and lines[-1].endswith(".deb") and os.path.isfile(lines[-1]),
              f"scripts/deb.sh did not print a .deb path: {p.stdout!r}")
        return lines[-1]
    return once("deb", "the .deb", make)


def package_status():
    """dpkg's status of cosockd ("install ok installed", "deinstall ok
    config-files", ...), or "" when dpkg does not know it."""
    p = run(["dpkg-query", "-W", "-f=${Status}", "cosockd"], 30, ok=None)
    return p.stdout.strip() if p.returncode == 0 else ""


def dpkg(args, what):
    """dpkg ARGS, waiting (bounded) for another dpkg or apt to finish."""
    end = time.monotonic() + 120
    while True:
        p = run(["dpkg"] + args, 120, what=what, ok=None)
        locked = "lock" in p.stderr and ("dpkg frontend" in p.stderr or "database" in p.stderr)
        if p.returncode == 0 or not locked or time.monotonic() > end:
            break
        time.sleep(1)  # dpkg offers nothing to wait on for its lock
    if p.returncode != 0:
        raise TestFailure(f"{what}: exit status {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


INSTALLED_MARK = "/var/tmp/cosockd-packaging-test.installed"


def purge_if_present(what):
    if package_status():
        dpkg(["--purge", "cosockd"], what)


def processes_running(exe):
    """PIDs whose executable is exe."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/exe") == exe:
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


@suite.case(timeout=480)
def deb_lintian():
    path = deb()
    # The package's content, as dpkg-deb lists it.
    listing = run(["dpkg-deb", "-c", path], 30).stdout
    names = {l.split()[-1].lstrip(".") for l in listing.splitlines() if l and not l.startswith("d")}
    for f in ("/usr/sbin/cosockd", "/usr/bin/cosockd-bench", CONFIG, DATADIR + "/default.lua",
              "/lib/systemd/system/cosockd.service", "/lib/systemd/system/cosockd.socket",
              "/usr/share/man/man8/cosockd.8.gz", "/usr/share/man/man1/cosockd-bench.1.gz",
              "/usr/share/doc/cosockd/copyright", "/usr/share/doc/cosockd/API.md",
              "/usr/share/doc/cosockd/README.md"):
        check(f in names, f"{os.path.basename(path)} lacks {f}")
    info = run(["dpkg-deb", "-f", path, "Package", "Version", "Architecture"], 30).stdout
    check("Package: cosockd" in info and "Version: 0.1.0" in info, f"control fields: {info!r}")

    # lintian: no error or warning beyond the package's documented overrides
    # (packaging/debian/cosockd.lintian-overrides: each one follows a
    # comment that says why).
    ovr = os.path.join(SRC, "packaging/debian/cosockd.lintian-overrides")
    if os.path.exists(ovr):
        with open(ovr) as f:
            lines = [l.strip() for l in f if l.strip()]
        for i, l in enumerate(lines):
            check(l.startswith("#") or (i > 0 and lines[i - 1].startswith("#")),
                  f"lintian override without a comment saying why: {l}")
    p = run(["lintian", "--tag-display-limit", "0", path], 240, ok=(0, 1, 2))
    bad = [l for l in p.stdout.splitlines() if l.startswith(("E: ", "W: "))]
    check(not bad, "lintian:\n" + "\n".join(bad))
    check(p.returncode == 0 or not p.stderr.strip(),
          f"lintian exit status {p.returncode}:\n{p.stderr[-2000:]}")


@suite.case(timeout=480)
def deb_install_purge():
    if os.geteuid() != 0:
        print("     SKIP deb_install_purge: dpkg -i needs root", flush=True)
        return
    path = deb()
    # One packaging test at a time may own the machine's cosockd package.
    lock = open("/tmp/cosockd-packaging-test.lock", "w")
    end = time.monotonic() + 240
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            check(time.monotonic() < end, "another packaging test holds the package for 240 s")
            time.sleep(0.5)
    # A package this test installed carries a marker until its purge; any
    # other installed cosockd is the machine's own and is left alone.
    try:
        if package_status():
            if not os.path.exists(INSTALLED_MARK):
                print("     SKIP deb_install_purge: a cosockd package this test did not install is on "
                      "the machine; not touching it", flush=True)
                return
            purge_if_present("purging a cosockd package left by an earlier run")
        for f in ("/usr/sbin/cosockd", CONFIG):
            check(not os.path.exists(f), f"{f} exists but no package owns it: "
                  "a `meson install --prefix=/usr`? The test will not overwrite it")
        with open(INSTALLED_MARK, "w") as mark:
            mark.write(path + "\n")
        _install_run_purge(path)
    finally:
        try:
            if os.path.exists(INSTALLED_MARK):
                purge_if_present("purging the package after the test")
                os.unlink(INSTALLED_MARK)
        finally:
            lock.close()


def _install_run_purge(path):
    systemd_running = os.path.isdir("/run/systemd/system")
    dpkg(["-i", path], "dpkg -i")
    check_eq(package_status(), "install ok installed", "package status after dpkg -i")
    files = [l for l in run(["dpkg", "-L", "cosockd"], 30).stdout.splitlines() if l.startswith("/")]
    check("/usr/sbin/cosockd" in files, "dpkg -L does not list /usr/sbin/cosockd")

    # Without systemd as PID 1 the postinst starts nothing.
    if not systemd_running:
        check_eq(processes_running("/usr/sbin/cosockd"), [], "cosockd processes after install")

    p = run(["/usr/sbin/cosockd", "--version"], 15)
    want = run([suite.cosockd, "--version"], 15).stdout
    check_eq(p.stdout, want, "/usr/sbin/cosockd --version")

    check(os.path.isfile(CONFIG), f"{CONFIG} not installed")
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "cosockd"], 30).stdout
    check(CONFIG in conffiles, f"{CONFIG} is not a conffile: {conffiles!r}")
    check(os.path.isfile(DATADIR + "/default.lua"), "default.lua not installed")
    p = run(["/usr/sbin/cosockd", "--check", "-c", CONFIG], 30, ok=None)
    unknown = p.returncode == 2 and "check" in p.stderr
    if unknown:
        print(f"     SKIP --check of {CONFIG}: this cosockd has no --check yet "
              f"({p.stderr.strip()})", flush=True)
    else:
        check_eq((p.returncode, p.stdout), (0, f"cosockd: {CONFIG}: configuration ok\n"),
                 f"cosockd --check -c {CONFIG} (stderr {p.stderr!r})")
    # The service is enabled the Debian way (the socket is not).
    wants = "/etc/systemd/system/multi-user.target.wants/cosockd.service"
    check(os.path.islink(wants), f"{wants}: the service is not enabled")
    check(not os.path.lexists("/etc/systemd/system/sockets.target.wants/cosockd.socket"),
          "the package enabled cosockd.socket")

    dpkg(["--purge", "cosockd"], "dpkg --purge")
    check_eq(package_status(), "", "dpkg status after purge")
    left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
    check(not left, f"files left after purge: {left}")
    for d in ("/etc/cosockd", DATADIR, "/usr/share/doc/cosockd", "/usr/sbin/cosockd", wants):
        check(not os.path.lexists(d), f"{d} is still there after purge")


suite.main()
