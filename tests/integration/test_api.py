#!/usr/bin/python3
"""The ba.* API as scripts see it: the self-contained checks of
tests/lua/api_checks.lua, FIFO writes from several cosockets, and failures
(peer reset, Lua errors, explicit yields, reading a dead socket) that must
stay confined to one connection."""

import socket
import struct
import time

from harness import (LOOPBACK, Server, Suite, TestFailure, check, check_eq, check_lua_checks,
                     connect, deadline_after, exchange, expect_closed, full_backlog_port,
                     recv_exact, stop_and_check_exit, unused_port)

suite = Suite("api", overall_timeout=400)

# Every check api_checks.lua must report as ok.
EXPECTED_CHECKS = """
codec.roundtrip codec.bigendian codec.offset codec.invalid_size codec.invalid_offset codec.float
getsock.toplevel_nil getsock.cosocket getsock.timer_nil
clock.integer clock.monotonic
sleep.timeout sleep.duration sleep.state_exec sleep.needs_timeout
timer.set_returns_true timer.rearm_count timer.cancel_armed timer.cancelled_silent
timer.cancel_idle timer.reset_returns_true timer.reset timer.yield_true timer.yield_pauses
timer.runnow_false timer.runnow_true timer.keepref timer.gc_cancels timer.error_sticks
connect.refused connect.cannotresolve connect.timeout connect.state_connect
connect.returns_own_socket connect.incorrectuse connect.blocking_refused
toip.localhost toip.cannotresolve
read_timeout.result read_timeout.duration read_timeout.stays_open read_timeout.usable_after
read_timeout.reply
sockinfo.peername sockinfo.sockname sockinfo.state_exec sockinfo.tostring sockinfo.state_read
sockinfo.owner_outside sockinfo.listener_accept sockinfo.close_true sockinfo.close_false
sockinfo.closed_wakes sockinfo.state_terminated sockinfo.tostring_terminated
sockinfo.write_closed sockinfo.stat
misuse.read_listener misuse.write_listener misuse.event_again misuse.read_other_cosocket
write.true_queued write.i_gt_j_false write.number
write.timer_not_queued_when_kernel_has_room write.timer_data_arrives write.timer_fresh_socket_not_queued
disable.state enable.passes_args enable.false_when_ended enable.not_disabled_no_values
enable.handover disable.outside_true disable.outside_state disable.outside_holds_data
enable.outside_resumes
""".split()


@suite.case(timeout=60)
def lua_api_checks():
    held, refused = unused_port()
    suite.on_cleanup(held.close)
    d = suite.script("api_checks.lua", refused, full_backlog_port(suite))
    check_lua_checks(d, EXPECTED_CHECKS)
    d.wait_log(r"Timer callback failed: .*deliberate timer failure.*stack traceback", timeout=1)
    check_eq(d.wait_exit(10), 0, "exit status when the checks are done")


# ---- FIFO: three writers, one socket -----------------------------------------

RECORDS = 2000
WRITERS = 3


def payload_len(wid, seq):
    return 1 + (seq * 1103 + wid * 331) % 3072


@suite.case(timeout=120)
def fifo_three_writers():
    report = {}

    def peer(c):
        deadline = deadline_after(90)
        nxt = {w: 1 for w in range(1, WRITERS + 1)}
        total, order = 0, []
        time.sleep(0.3)  # let the writers fill the queue and wait on it first
        while total < WRITERS * RECORDS:
            wid, seq, n = struct.unpack(">BII", recv_exact(c, 9, deadline, "record header"))
            if wid not in nxt:
                raise TestFailure(f"record {total}: bad writer id {wid} (interleaved data?)")
            if seq != nxt[wid]:
                raise TestFailure(f"writer {wid}: record {seq} arrived, expected {nxt[wid]}")
            if n != payload_len(wid, seq):
                raise TestFailure(f"writer {wid} record {seq}: length {n}, expected "
                                  f"{payload_len(wid, seq)} (interleaved data?)")
            body = recv_exact(c, n, deadline, "record body")
            letter = 65 + (wid * 7 + seq) % 26
            if body.count(letter) != n:
                raise TestFailure(f"writer {wid} record {seq}: payload mixed with other data")
            nxt[wid] += 1
            order.append(wid)
            total += 1
        switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
        report.update(total=total, switches=switches)
        c.sendall(b"got %d records" % total)

    srv = Server(suite, peer)
    d = suite.script("api_fifo.lua", LOOPBACK, srv.port, RECORDS)
    d.wait_log(r"peer says: got \d+ records$", timeout=100)
    check(not srv.errors, f"peer: {srv.errors}")
    check_eq(report.get("total"), WRITERS * RECORDS, "records received")
    check(report["switches"] > 2, f"the writers never took turns ({report['switches']} switches)")
    done = d.find_log(r"writer (\d) done, waited (\d+) times")
    check_eq(len(done), WRITERS, "writers that finished")
    check(any(int(m.group(2)) > 0 for m in done), "no writer ever waited on the full queue")
    d.wait_log(r"reader: socketreadfailed$", timeout=10)
    check_eq(d.wait_exit(10), 0, "exit status")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")


# ---- failures confined to one connection --------------------------------------

def start_server(fail_at=-1):
    d = suite.script("api_server.lua", 0, fail_at)
    return d, d.wait_listening()


def assert_still_serving(d, port, what):
    check(d.alive(), f"daemon died {what}")
    with connect(port) as s:
        check_eq(exchange(s, b"still there?", deadline_after(5)), b"still there?",
                 f"echo on a new connection {what}")


@suite.case(timeout=60)
def lua_error_in_one_of_100():
    d, port = start_server(fail_at=37)
    deadline = deadline_after(40)
    socks = []
    for i in range(100):
        socks.append(connect(port))
        if i == 0:  # accept order is connect order: number 1 is this one
            check_eq(exchange(socks[0], b"first", deadline), b"first", "echo on connection 1")
    suite.on_cleanup(lambda: [s.close() for s in socks])
    for rnd in range(3):
        for i, s in enumerate(socks):
            if i == 36:
                if rnd == 0:
                    s.sendall(b"boom")
                    expect_closed(s, deadline, "connection 37 after its handler failed")
                continue
            msg = b"round %d conn %d" % (rnd, i + 1)
            check_eq(exchange(s, msg, deadline, f"conn {i + 1}"), msg,
                     f"echo on connection {i + 1}, round {rnd}")
    d.wait_log(r"^Cosocket: .*deliberate failure in connection 37.*stack traceback", prio=3)
    check(len(d.find_log(r"^Cosocket: ")) == 1, f"more than one cosocket error: {d.errors()}")
    assert_still_serving(d, port, "after a Lua error")
    stop_and_check_exit(d)


@suite.case(timeout=60)
def peer_reset_mid_transfer():
    d, port = start_server()
    deadline = deadline_after(30)
    s = connect(port)
    check_eq(exchange(s, b"hello", deadline), b"hello", "echo before the reset")
    # Send a lot without reading, so the echo side is mid-transfer (its
    # writes are queued or waiting), then reset the connection.
    s.setblocking(False)
    sent = 0
    try:
        while sent < (8 << 20):
            sent += s.send(b"y" * 65536)
    except BlockingIOError:
        pass
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    m = d.wait_log(r": conn 1 (read|write) failed: (\S+)$", timeout=10)
    want = {"read": "socketreadfailed", "write": ("socketwritefailed", "socketclosed")}
    check(m.group(2) in want[m.group(1)],
          f"after a reset the cosocket got {m.group(1)} error {m.group(2)!r}")
    assert_still_serving(d, port, "after a peer reset")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def second_read_of_dead_socket_raises():
    d, port = start_server()
    with connect(port) as s:
        check_eq(exchange(s, b"DEADREAD", deadline_after(5)), b"DEADREAD", "echo")
    d.wait_log(r": conn 1 read failed: socketreadfailed$", timeout=10)
    d.wait_log(r"^Cosocket: .*Invalid op.*stack traceback", prio=3, timeout=5)
    check(not d.find_log(r"conn 1 second read returned"), "the second read returned instead of raising")
    assert_still_serving(d, port, "after the Invalid op error")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def explicit_yield_closes_socket():
    d, port = start_server()
    with connect(port) as s, connect(port) as other:
        check_eq(exchange(other, b"before", deadline_after(5)), b"before", "echo on the bystander")
        s.sendall(b"YIELD")
        expect_closed(s, deadline_after(10), "connection whose handler yielded")
        d.wait_log(r"Invalid yield", prio=3, timeout=5)
        check_eq(exchange(other, b"after", deadline_after(5)), b"after",
                 "echo on the bystander after the yield")
    assert_still_serving(d, port, "after an explicit yield")
    stop_and_check_exit(d)


if __name__ == "__main__":
    suite.main()
