#!/usr/bin/python3
"""`cosockd echo`: many concurrent connections with random messages, and one
large message, all echoed intact and in order."""

import random
import selectors
import socket
import time

from harness import (LOOPBACK, PatternSource, Suite, TestFailure, check, check_eq, connect,
                     deadline_after, exchange, remaining, stop_and_check_exit)

suite = Suite("echo", overall_timeout=400)

CONNS = 1000
MESSAGES = 100
MAX_SIZE = 4096


def start_echo():
    d = suite.daemon("echo", "--listen", f"{LOOPBACK}:0")
    return d, d.wait_listening()


class Conn:
    """One client: sends a message, waits for all of it to come back, then
    the next one."""

    def __init__(self, sock, rng, src, messages):
        self.sock, self.rng, self.src = sock, rng, src
        self.left = messages
        self.msg = self.view = None
        self.sent = self.got = 0
        self.done = False

    def next_message(self):
        self.msg = self.src.chunk(self.rng.randint(1, MAX_SIZE))
        self.view = memoryview(self.msg)
        self.sent = self.got = 0
        self.left -= 1

    def on_write(self):
        n = self.sock.send(self.view[self.sent:])
        self.sent += n
        return self.sent == len(self.msg)

    def on_read(self):
        data = self.sock.recv(65536)
        if not data:
            raise TestFailure(f"EOF with {self.left} messages left, {self.got}/{len(self.msg)} "
                              "of the current one echoed")
        end = self.got + len(data)
        if end > len(self.msg) or self.view[self.got:end] != data:
            raise TestFailure(f"wrong bytes echoed at offset {self.got} of a {len(self.msg)}-byte "
                              f"message ({len(data)} bytes read)")
        self.got = end
        return self.got == len(self.msg)


def open_many(port, n, deadline):
    socks = []
    for i in range(n):
        remaining(deadline, f"connecting ({i} of {n} open)")
        socks.append(connect(port, timeout=10))
    return socks


@suite.case(timeout=200)
def thousand_concurrent_connections():
    d, port = start_echo()
    seed = random.randrange(1 << 30)
    print(f"  seed {seed}", flush=True)
    rng = random.Random(seed)
    src = PatternSource(seed)
    deadline = deadline_after(120)
    socks = open_many(port, CONNS, deadline)
    suite.on_cleanup(lambda: [s.close() for s in socks])
    sel = selectors.DefaultSelector()
    conns = []
    for s in socks:
        s.setblocking(False)
        c = Conn(s, random.Random(rng.random()), src, MESSAGES)
        c.next_message()
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
    active, exchanged, t0 = len(conns), 0, time.monotonic()
    while active:
        events = sel.select(min(remaining(deadline, f"echo ({exchanged} messages done, "
                                                    f"{active} connections busy)"), 1.0))
        for key, ev in events:
            c = key.data
            try:
                if ev & selectors.EVENT_WRITE and c.on_write():
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                elif ev & selectors.EVENT_READ and c.on_read():
                    exchanged += 1
                    if c.left == 0:
                        sel.unregister(c.sock)
                        active -= 1
                    else:
                        c.next_message()
                        sel.modify(c.sock, selectors.EVENT_WRITE, c)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                raise TestFailure(f"connection error after {exchanged} messages: {e}")
    sel.close()
    check_eq(exchanged, CONNS * MESSAGES, "messages echoed")
    print(f"  {exchanged} messages in {time.monotonic() - t0:.1f} s", flush=True)
    check(d.alive(), "daemon died")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


@suite.case(timeout=60)
def one_mebibyte_message():
    d, port = start_echo()
    data = PatternSource(7).chunk(1 << 20)
    with connect(port) as s:
        got = exchange(s, data, deadline_after(40), "1 MiB echo")
        check(got == data, "1 MiB message came back altered")
        # the connection is still good afterwards
        got = exchange(s, b"after", deadline_after(5), "echo after 1 MiB")
        check_eq(got, b"after", "echo after the large message")
    stop_and_check_exit(d)


@suite.case(timeout=30)
def client_half_close_ends_connection():
    """After the client shuts down its sending side, the daemon echoes what
    it got and then closes its end."""
    d, port = start_echo()
    with connect(port) as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        got = b""
        deadline = deadline_after(10)
        while True:
            s.settimeout(remaining(deadline, "waiting for EOF"))
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        check_eq(got, b"last words", "echo before close")
    stop_and_check_exit(d)


if __name__ == "__main__":
    suite.main()
