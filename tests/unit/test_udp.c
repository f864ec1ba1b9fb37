/*
 * test_udp.c - luabind/udp.c: udpcon's argument forms, datagram reads in a
 * cosocket (with the sender's address), sendto, and misuse errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "vm_helpers.h"

TestSuite(udp, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

static int plain_udp(struct sockaddr_in *bound)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	*bound = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)bound, sizeof(*bound)), 0);
	socklen_t sl = sizeof(*bound);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)bound, &sl), 0);
	return fd;
}

Test(udp, a_cosocket_reads_datagrams_with_their_sender_and_replies_with_sendto)
{
	struct sockaddr_in me;
	int fd = plain_udp(&me);
	T_LUA("ba.socket.event(function(s)\n"
	      "  local u = ba.socket.udpcon(0, {intf = '127.0.0.1'})\n"
	      "  same = u == s\n"
	      "  _, port = u:sockname()\n"
	      "  local d, addr, from, v6 = u:read(5000, true)\n"
	      "  got = {d, addr, from, v6}\n"
	      "  sent = u:sendto('re:' .. d, addr, from)\n"
	      "end)");
	T_LUA("assert(same and port > 0)");
	/* the port the script bound, read back through its log */
	T_LUA("print(port)");
	long port = strtol(t_last_log(), NULL, 10);
	cr_assert_gt(port, 0, "%s", t_last_log());
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port)};
	cr_assert_eq(sendto(fd, "hi", 2, 0, (struct sockaddr *)&to, sizeof(to)), 2);
	cr_assert(t_vm_drive(200), "the cosocket did not finish");
	char want[128];
	snprintf(want, sizeof(want),
		 "assert(got[1] == 'hi' and got[2] == '127.0.0.1' and got[3] == %d and got[4] == false)\n"
		 "assert(sent == true)",
		 ntohs(me.sin_port));
	T_LUA(want);
	char buf[16];
	cr_assert_eq(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 5);
	cr_expect(memcmp(buf, "re:hi", 5) == 0);
	close(fd);
}

Test(udp, misuse_raises_and_io_errors_are_values)
{
	T_LUA("local u = ba.socket.udpcon()\n"
	      "assert(not pcall(u.read, u, 10), 'a blocking read on the dispatcher thread')\n"
	      "local ok, e = u:sendto('x', 'no-such-host.invalid', 9)\n"
	      "assert(ok == nil and e == 'cannotresolve', e)\n"
	      "assert(not pcall(u.sendto, u, 'x', '127.0.0.1', 0), 'port 0')\n"
	      "assert(not pcall(u.setoption, u, 'ip-membership', true, 'nonsense'))\n"
	      "assert(u:setoption('broadcast', true) == true)\n"
	      "assert(u:close() == true)\n"
	      "local l = ba.socket.bind(0, {intf = '127.0.0.1'})\n"
	      "local ok2, e2 = pcall(l.sendto, l, 'x', '127.0.0.1', 9)\n"
	      "assert(not ok2 and e2:find('Not a DGRAM socket'), e2)\n"
	      "assert(not pcall(l.setoption, l, 'broadcast', true))\n"
	      "l:close()\n"
	      "local b, be = ba.socket.udpcon('', 0, {intf = '192.0.2.1'})\n"
	      "assert(b == nil and be == 'bind', be)");
}
