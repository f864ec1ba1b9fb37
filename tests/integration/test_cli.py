#!/usr/bin/python3
"""cosockd command line: help, version, usage errors, exit codes, backend
selection and the connection-capacity notice."""

import resource
import subprocess

from harness import Suite, check, check_eq

suite = Suite("cli", overall_timeout=120)


def run(args, backend=True, timeout=15, preexec_fn=None):
    """Run cosockd to completion; returns (status, stdout, stderr lines)."""
    argv = [suite.cosockd] + (["--backend=" + suite.backend] if backend else []) + args
    p = subprocess.run(argv, capture_output=True, timeout=timeout, preexec_fn=preexec_fn,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode().splitlines()


def expect_usage_error(args, backend=True):
    rc, out, err = run(args, backend=backend)
    what = "cosockd " + " ".join(args)
    check_eq(rc, 2, f"{what}: exit status")
    check(len(err) == 1, f"{what}: want exactly one stderr line, got {err!r}")
    check(err[0].startswith("cosockd:"), f"{what}: stderr line {err[0]!r} should name cosockd")
    check(out == "", f"{what}: nothing on stdout expected, got {out!r}")


@suite.case(timeout=10)
def no_script_runs_the_default_configuration():
    """Without a script, cosockd runs the installed configuration file; the
    build tree's binary names where it looked when there is none."""
    rc, out, err = run([], backend=True)
    conf = [l for l in err if "cosockd.lua" in l]
    if rc == 1:
        check(conf and "cannot open" in conf[0], f"want the default configuration named, got {err!r}")
    else:
        check(False, f"cosockd without arguments: exit {rc}, stderr {err!r}")


@suite.case(timeout=10)
def help_option():
    for opt in ("--help", "-h"):
        rc, out, err = run([opt], backend=False)
        check_eq(rc, 0, f"{opt}: exit status")
        check("usage" in out.lower(), f"{opt}: stdout does not mention usage: {out!r}")
        check("--backend" in out and "--listen" in out, f"{opt}: options missing from {out!r}")


@suite.case(timeout=10)
def version_option():
    for opt in ("--version", "-V"):
        rc, out, err = run([opt], backend=False)
        check_eq(rc, 0, f"{opt}: exit status")
        check(out.startswith("cosockd ") and "Lua 5.4" in out, f"{opt}: odd version text {out!r}")


@suite.case(timeout=20)
def usage_errors():
    expect_usage_error(["--no-such-option"])
    expect_usage_error(["-c", "a.lua", "b.lua"])  # --config takes no script
    expect_usage_error(["echo"])  # missing --listen
    expect_usage_error(["proxy", "--listen", "127.0.0.1:0"])  # missing --upstream
    expect_usage_error(["echo", "--listen", "127.0.0.1:99999"])  # bad port
    expect_usage_error(["echo", "--listen", "127.0.0.1:port"])
    expect_usage_error(["echo", "--listen", "-1"])
    expect_usage_error(["proxy", "--listen", "0", "--upstream", "127.0.0.1:0"])
    expect_usage_error(["proxy", "--listen", "0", "--upstream", "127.0.0.1:80",
                        "--connect-timeout", "soon"])
    expect_usage_error(["echo", "--listen", "0", "--upstream", "127.0.0.1:80"])
    expect_usage_error(["echo", "--listen", "0", "extra"])
    expect_usage_error(["--backend=kqueue", "echo", "--listen", "0"], backend=False)
    expect_usage_error(["--max-connections=0", "echo", "--listen", "0"])
    expect_usage_error(["--threads=0", "echo", "--listen", "0"])
    expect_usage_error(["--threads=2000", "echo", "--listen", "0"])


@suite.case(timeout=15)
def script_top_level_error():
    rc, _, err = run([suite.lua("cli_error.lua")])
    check_eq(rc, 1, "exit status of a script that fails at top level")
    hits = [l for l in err if l.startswith("<3>") and "deliberate top-level failure" in l]
    check(hits, f"the error is not logged at <3>: {err!r}")
    check("stack traceback" in hits[0], f"no traceback with the error: {hits[0]!r}")


@suite.case(timeout=15)
def script_syntax_error():
    rc, _, err = run([suite.lua("cli_syntax_error.lua")])
    check_eq(rc, 1, "exit status of a script that does not compile")
    check(any(l.startswith("<3>") and "cli_syntax_error.lua" in l for l in err),
          f"the syntax error is not logged: {err!r}")


@suite.case(timeout=15)
def script_missing():
    rc, _, err = run(["/nonexistent/script.lua"])
    check_eq(rc, 1, "exit status for a missing script")
    check(any("/nonexistent/script.lua" in l for l in err), f"missing file not named: {err!r}")


@suite.case(timeout=15)
def script_returns_at_once():
    rc, _, err = run([suite.lua("cli_args.lua"), "one", "two"])
    check_eq(rc, 0, "exit status of a script with nothing pending")
    joined = "\n".join(err)
    check("args: one two" in joined, f"`...` not passed to the script: {err!r}")
    check("arg[0]: " in joined and "cli_args.lua" in joined and "arg[1]: one" in joined,
          f"global arg table wrong: {err!r}")


@suite.case(timeout=15)
def exit_code():
    rc, _, err = run([suite.lua("cli_exit.lua"), "3"])
    check_eq(rc, 3, "exit status after cosockd.exit(3) at top level")
    rc, _, err = run([suite.lua("cli_exit.lua"), "4", "timer"])
    check_eq(rc, 4, "exit status after cosockd.exit(4) from a timer (with a listener open)")


@suite.case(timeout=15)
def backend_logged():
    rc, _, err = run([suite.lua("cli_args.lua")])
    check_eq(rc, 0, "exit status")
    want = {"uring": "dispatcher backend io_uring", "epoll": "dispatcher backend epoll"}
    if suite.backend in want:
        check(any(want[suite.backend] in l for l in err),
              f"no '{want[suite.backend]}' line: {err!r}")


@suite.case(timeout=15)
def capacity_notice():
    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))

    rc, _, err = run(["--max-connections=5000", suite.lua("cli_args.lua")], preexec_fn=low_nofile)
    check_eq(rc, 0, "exit status")
    notes = [l for l in err if "capacity" in l]
    check(notes, f"no capacity notice with RLIMIT_NOFILE 1000 < --max-connections 5000: {err!r}")
    check("5000" in notes[0] and "1000" in notes[0], f"notice lacks the numbers: {notes[0]!r}")
    cap = [l for l in err if "connection slots" in l]
    check(cap and "5000 connection slots" not in cap[0], f"slots not reduced: {cap!r}")

    rc, _, err = run(["--max-connections=100", suite.lua("cli_args.lua")])
    check_eq(rc, 0, "exit status")
    check(not any("capacity" in l for l in err), f"capacity notice without need: {err!r}")
    check(any("100 connection slots" in l for l in err), f"slots not as asked: {err!r}")


if __name__ == "__main__":
    suite.main()
