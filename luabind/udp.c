/*
 * udp.c - UDP sockets: ba.socket.udpcon, and read, write, sendto and the
 * datagram options of the socket object (BA-API.md §2.3, §3.3, §3.10, §7).
 *
 * A datagram socket is a conn the loop only watches for readability
 * (cs_conn_poll_readable); sending is one non-blocking syscall per
 * datagram, made by whichever thread holds the VM lock. A read waits like
 * a TCP read: the cosocket yields, a pool thread parks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define DATAGRAM_MAX 65536

/* Resolve host:port; numeric addresses never block. A pool thread resolves
 * names with the VM lock released; elsewhere the name is resolved on the
 * spot (docs/API.md: UDP). 0 or an EAI_* code. */
static int resolve(const char *host, int port, bool ipv6, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
				 .ai_family = ipv6 ? AF_INET6 : AF_UNSPEC,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(host, portstr, &hints, res) == 0)
		return 0;
	cs_lthread *t = cs__self;
	if (t)
		pthread_mutex_unlock(&t->vm->lock);
	int r = cs__resolve_now(host, port, ipv6, false, res);
	if (t)
		pthread_mutex_lock(&t->vm->lock);
	return r;
}

/* One datagram from s onto W: data, or data, addr, port, isIPv6 when from.
 * Returns the value count, 0 when nothing is waiting, or -errno. */
static int take_datagram(cs_sock *s, lua_State *W, bool from)
{
	cs_vm *vm = s->vm;
	if (!vm->dgram_buf && !(vm->dgram_buf = malloc(DATAGRAM_MAX)))
		return -ENOMEM;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	ssize_t n;
	do
		n = recvfrom(cs_conn_fd(s->conn), vm->dgram_buf, DATAGRAM_MAX, MSG_DONTWAIT,
			     (struct sockaddr *)&ss, &sl);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	lua_pushlstring(W, vm->dgram_buf, (size_t)n);
	if (!from)
		return 1;
	char addr[INET6_ADDRSTRLEN];
	bool v6;
	int port = cs__addr_string((struct sockaddr *)&ss, addr, sizeof(addr), &v6);
	lua_pushstring(W, addr);
	lua_pushinteger(W, port);
	lua_pushboolean(W, v6);
	return 4;
}

/* An error from a datagram read; the socket stays open (UDP has no
 * connection to lose: an ICMP error concerns one datagram). */
static int push_read_error(lua_State *W, int err)
{
	return cs__fail_why(W, "socketreadfailed", strerror(-err));
}

void cs__udp_readable(cs_sock *s)
{
	if (s->wait != CS_WAIT_READ)
		return;
	lua_State *W = cs__waiter(s);
	int n = take_datagram(s, W, s->dgram_from);
	if (n == 0) {
		if (cs_conn_poll_readable(s->conn) == 0)
			return;
		n = push_read_error(W, -EIO);
	} else if (n < 0) {
		n = push_read_error(W, n);
	}
	cs_timer_stop(s->vm->loop, &s->timer);
	cs__wake(s, n);
}

/* sock:read([ms] [, recvfrom]) on a UDP socket; args at 2 and 3. */
int cs__udp_read(lua_State *L, cs_sock *s)
{
	lua_Integer ms = -1;
	bool from = false;
	if (lua_type(L, 2) == LUA_TBOOLEAN) {
		from = lua_toboolean(L, 2);
	} else {
		if (lua_type(L, 2) == LUA_TNUMBER)
			ms = lua_tointeger(L, 2);
		from = lua_toboolean(L, 3);
	}
	cs_vm *vm = s->vm;
	cs_sock *cur = cs__current(L);
	if (s->co && cur != s)
		return luaL_error(L, "Invalid op: read when socket is in cosocket mode");
	if (!s->co && !cs__caller(L, vm))
		return luaL_error(L, "Invalid op: read: a blocking read would stop the dispatcher; "
				     "read in a cosocket (sock:event) or on a ba.thread job");
	if (!s->co && s->blocker)
		return luaL_error(L, "Invalid op: read: another thread is reading this socket");
	if (vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (!s->conn) {
		if (ms < 0 && s->dead_read)
			return luaL_error(L, "Invalid op: read: Socket closed");
		s->dead_read = true;
		return cs__fail(L, "socketclosed");
	}
	int n = take_datagram(s, L, from);
	if (n > 0)
		return n;
	if (n < 0)
		return push_read_error(L, n);
	int r = cs_conn_poll_readable(s->conn);
	if (r < 0)
		return push_read_error(L, r);
	s->dgram_from = from;
	if (ms > 0 || (ms == 0 && s->co))
		cs_timer_start(vm->loop, &s->timer, (uint64_t)ms);
	if (s->co)
		return cs__wait(L, s, CS_WAIT_READ);
	return cs__park(L, s, CS_WAIT_READ);
}

/* One datagram, to `to` or (NULL) to the connected peer: true, or nil,
 * "socketwritefailed", reason. */
static int send_datagram(lua_State *L, cs_sock *s, const char *data, size_t len, const struct sockaddr *to,
			 socklen_t tolen)
{
	ssize_t n;
	do
		n = sendto(cs_conn_fd(s->conn), data, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, tolen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return cs__fail_why(L, "socketwritefailed", strerror(errno));
	lua_pushboolean(L, 1);
	return 1;
}

int cs__udp_write(lua_State *L, cs_sock *s, const char *data, size_t len)
{
	if (!s->conn)
		return cs__fail(L, "socketclosed");
	return send_datagram(L, s, data, len, NULL, 0);
}

/* sock:sendto(data, host, port) */
int cs__udp_sendto(lua_State *L)
{
	cs_sock *s = luaL_checkudata(L, 1, CS_SOCK_MT);
	if (s->kind != CS_SOCK_UDP)
		return luaL_error(L, "Not a DGRAM socket");
	size_t len;
	const char *data = luaL_tolstring(L, 2, &len);
	const char *host = luaL_checkstring(L, 3);
	lua_Integer port = luaL_checkinteger(L, 4);
	luaL_argcheck(L, port > 0 && port < 65536, 4, "port out of range");
	if (!s->conn)
		return cs__fail(L, "socketclosed");
	struct addrinfo *res;
	int gai = resolve(host, (int)port, s->ipv6, &res);
	if (gai)
		return cs__fail_why(L, "cannotresolve", gai_strerror(gai));
	int nvals = s->conn ? send_datagram(L, s, data, len, res->ai_addr, res->ai_addrlen)
			    : cs__fail(L, "socketclosed"); /* closed while a pool thread resolved */
	freeaddrinfo(res);
	return nvals;
}

/* setoption() names that only datagram sockets have. 1: handled (result
 * in *r, errno set on failure); 0: not a datagram option. */
int cs__udp_setoption(lua_State *L, cs_sock *s, const char *name, int *r)
{
	bool dgram_only =
	    !strcmp(name, "broadcast") || !strcmp(name, "ip-membership") || !strcmp(name, "dontroute");
	if (!dgram_only)
		return 0;
	if (s->kind != CS_SOCK_UDP)
		return luaL_error(L, "Not a DGRAM socket");
	int fd = cs_conn_fd(s->conn), on = lua_toboolean(L, 3);
	if (!strcmp(name, "broadcast")) {
		*r = setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on));
	} else if (!strcmp(name, "dontroute")) {
		*r = setsockopt(fd, SOL_SOCKET, SO_DONTROUTE, &on, sizeof(on));
	} else {
		/* ("ip-membership", join, group [, interface address]) */
		struct ip_mreq m = {0};
		const char *group = luaL_checkstring(L, 4);
		const char *intf = luaL_optstring(L, 5, "0.0.0.0");
		if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 ||
		    inet_pton(AF_INET, intf, &m.imr_interface) != 1)
			return luaL_error(L, "ip-membership: IPv4 group and interface addresses expected");
		*r = setsockopt(fd, IPPROTO_IP, on ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m, sizeof(m));
	}
	return 1;
}

struct udp_opts {
	const char *host; /* connect to host:port; NULL: none */
	lua_Integer port, lport;
	const char *intf;
	bool ipv6;
};

/* udpcon(host, port [, op]) | udpcon(localport [, op]) | udpcon([op]) */
static int parse_udpcon(lua_State *L, struct udp_opts *o)
{
	int optidx = 1;
	memset(o, 0, sizeof(*o));
	if (lua_type(L, 1) == LUA_TSTRING) {
		o->host = lua_tostring(L, 1);
		o->port = luaL_checkinteger(L, 2);
		optidx = 3;
		if (!*o->host) { /* "" means: bind to port */
			o->lport = o->port;
			o->host = NULL;
		} else {
			luaL_argcheck(L, o->port > 0 && o->port < 65536, 2, "port out of range");
		}
	} else if (lua_type(L, 1) == LUA_TNUMBER) {
		o->lport = luaL_checkinteger(L, 1);
		optidx = 2;
	}
	if (lua_istable(L, optidx)) {
		if (lua_getfield(L, optidx, "intf") == LUA_TSTRING)
			o->intf = lua_tostring(L, -1);
		lua_pop(L, 1);
		lua_getfield(L, optidx, "ipv6");
		o->ipv6 = lua_toboolean(L, -1);
		lua_pop(L, 1);
		if (lua_getfield(L, optidx, "port") == LUA_TNUMBER)
			o->lport = lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	luaL_argcheck(L, o->lport >= 0 && o->lport < 65536, 1, "local port out of range");
	return optidx;
}

static int udpcon_fail(lua_State *L, int fd, const char *what, int err)
{
	if (fd >= 0)
		close(fd);
	return cs__fail_why(L, what, strerror(err));
}

/* Runs on the loop thread; a hostname was already resolved by the caller
 * when that caller is a pool thread (l_udpcon_any). */
static int l_udpcon(lua_State *L)
{
	struct udp_opts o;
	parse_udpcon(L, &o);
	cs_vm *vm = cs__vm(L);
	cs_sock *cur = cs__current(L);
	if (vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (cur && cur->conn)
		return cs__fail(L, "incorrectuse");
	struct addrinfo *peer = NULL;
	if (o.host) {
		int gai = resolve(o.host, (int)o.port, o.ipv6, &peer);
		if (gai)
			return cs__fail_why(L, "cannotresolve", gai_strerror(gai));
	}
	int family = peer ? peer->ai_family : o.ipv6 ? AF_INET6 : AF_INET;
	int fd = -1;
	if (!peer && o.lport && vm->listen.open) {
		/* a server socket: the daemon's, shared with the other workers
		 * and kept across reloads */
		struct addrinfo *la;
		const char *intf = o.intf ? o.intf : family == AF_INET6 ? "::" : "0.0.0.0";
		if (resolve(intf, (int)o.lport, family == AF_INET6, &la) != 0)
			return udpcon_fail(L, -1, "bind", EADDRNOTAVAIL);
		struct cs_listen_req req = {.type = SOCK_DGRAM, .addr = la->ai_addr, .addrlen = la->ai_addrlen,
					    .any_addr = !o.intf};
		bool shared;
		fd = vm->listen.open(vm->listen.ctx, &req, &shared);
		freeaddrinfo(la);
		if (fd < 0)
			return udpcon_fail(L, -1, "bind", -fd);
	} else if ((fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		freeaddrinfo(peer);
		return udpcon_fail(L, -1, "socket", errno);
	}
	if ((o.lport || o.intf) && (peer || !o.lport || !vm->listen.open)) {
		struct addrinfo *la;
		const char *intf = o.intf ? o.intf : family == AF_INET6 ? "::" : "0.0.0.0";
		if (resolve(intf, (int)o.lport, family == AF_INET6, &la) != 0) {
			freeaddrinfo(peer);
			return udpcon_fail(L, fd, "bind", EADDRNOTAVAIL);
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int r = bind(fd, la->ai_addr, la->ai_addrlen);
		int err = errno;
		freeaddrinfo(la);
		if (r < 0) {
			freeaddrinfo(peer);
			return udpcon_fail(L, fd, "bind", err);
		}
	}
	if (peer) {
		int r = connect(fd, peer->ai_addr, peer->ai_addrlen);
		int err = errno;
		freeaddrinfo(peer);
		if (r < 0)
			return udpcon_fail(L, fd, "cannotconnect", err);
	}
	cs_conn *c;
	int r = cs_conn_open(vm->loop, fd, NULL, &c);
	if (r < 0)
		return udpcon_fail(L, -1, "socket", -r);
	if (cur) {
		/* inside ba.socket.event: the cosocket becomes this socket */
		cur->conn = c;
		cur->had_conn = true;
		cur->kind = CS_SOCK_UDP;
		cur->mode = 's';
		cur->ipv6 = family == AF_INET6;
		cs_conn_set_udata(c, cur);
		cs__sock_count(cur, 1);
		lua_rawgeti(L, LUA_REGISTRYINDEX, cur->self_ref);
		return 1;
	}
	cs_sock *s = cs__push_sock(L, vm, CS_SOCK_UDP, c);
	s->ipv6 = family == AF_INET6;
	return 1;
}

/* A pool thread resolves a host name itself, with the lock released, then
 * has the loop thread make the socket. */
int cs__udpcon_any(lua_State *L)
{
	if (!cs__self)
		return l_udpcon(L);
	if (lua_type(L, 1) == LUA_TSTRING && *lua_tostring(L, 1)) {
		struct udp_opts o;
		parse_udpcon(L, &o);
		struct addrinfo *res;
		if (resolve(o.host, (int)o.port, o.ipv6, &res) != 0)
			return cs__fail(L, "cannotresolve");
		char addr[INET6_ADDRSTRLEN];
		bool v6;
		cs__addr_string(res->ai_addr, addr, sizeof(addr), &v6);
		freeaddrinfo(res);
		lua_pushstring(L, addr);
		lua_replace(L, 1);
	}
	return cs__on_loop(L, l_udpcon);
}
