#!/usr/bin/python3
"""UDP: ba.socket.udpcon in its three forms, blocking on pool threads and in
cosockets (tests/lua/udp_checks.lua against a Python echo), and the seed's
NTP example against a local NTP-style responder."""

import socket
import struct
import threading

from harness import LOOPBACK, Suite, check, check_lua_checks, stop_and_check_exit

suite = Suite("udp", overall_timeout=200)

EXPECTED_CHECKS = """
udp.connected udp.write_true udp.read udp.read_timeout udp.stays_open udp.read_from
udp.big_datagram udp.close udp.closed_read udp.unbound_sendto udp.unbound_reply
udp.sendto_cannotresolve udp.sendto_name udp.sendto_name_reply udp.bound_ports
udp.bound_exchange udp.option_broadcast udp.option_membership udp.option_membership_bad
udp.sendto_connected_socket udp.cosocket_in_place udp.cosocket_read udp.cosocket_read_from
udp.cosocket_timeout udp.cosocket_second_udpcon udp.read_on_dispatcher_raises
udp.sendto_tcp_raises udp.closed_by_other_thread
""".split()


class UdpPeer(threading.Thread):
    """A loopback UDP responder: reply(datagram) gives the answer (or None)."""

    def __init__(self, reply):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.received = []
        suite.on_cleanup(self.stop)
        self.start()

    def run(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except OSError:
                return
            self.received.append(data)
            out = self.reply(data)
            if out is not None:
                self.sock.sendto(out, addr)

    def stop(self):
        self.sock.close()


@suite.case(timeout=60)
def lua_udp_checks():
    echo = UdpPeer(lambda d: d)
    d = suite.script("udp_checks.lua", echo.port)
    check_lua_checks(d, EXPECTED_CHECKS)
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


NTP_SECONDS = 2208988800 + 1700000000  # 2023-11-14 22:13:20 UTC


def ntp_reply(req):
    if len(req) != 48 or req[0] != 27:
        return None
    # LI/VN/mode 4 (server), stratum 1; transmit timestamp at offset 40
    return bytes([0x1c, 1]) + bytes(38) + struct.pack(">II", NTP_SECONDS, 0)


@suite.case(timeout=30)
def seed_ntp_example_on_a_pool_thread():
    ntp = UdpPeer(ntp_reply)
    d = suite.script("seed_threads.lua", "ntp", 0, ntp.port)
    d.wait_log(r"^NTP Date and time:\t2023-11-14 22:13:20$", timeout=10)
    check(len(ntp.received) == 1 and ntp.received[0] == b"\x1b" + bytes(47),
          f"the responder got {ntp.received!r}")
    check(not d.errors(), f"errors logged: {d.errors()[:5]}")
    stop_and_check_exit(d)


suite.main()
