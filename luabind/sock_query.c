/*
 * sock_query.c - the socket object's small queries and options: state,
 * owner, peername, sockname, __tostring, queuelen, maxsize, setoption and
 * shutdown. Each answers from the socket's own fields or one syscall on
 * its fd; none waits.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

static const char *state_name(const cs_sock *s)
{
	if (s->had_conn && !s->conn)
		return "terminated";
	if (s->rx_paused)
		return "disabled";
	switch (s->wait) {
	case CS_WAIT_READ:
	case CS_WAIT_SLEEP:
		return "read";
	case CS_WAIT_ACCEPT:
		return "accept";
	case CS_WAIT_CONNECT:
		return "connect";
	case CS_WAIT_HANDSHAKE:
		return "upgrade";
	case CS_WAIT_WRITE:
		return "write";
	case CS_WAIT_DISABLED:
		return "disabled";
	default:
		return s->co ? "exec" : "notcon";
	}
}

static int m_state(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	lua_pushstring(L, state_name(s));
	lua_pushboolean(L, s->conn != NULL);
	return 2;
}

static int m_owner(lua_State *L)
{
	lua_pushboolean(L, cs__current(L) == cs__check_sock(L, 1));
	return 1;
}

static int push_name(lua_State *L, cs_sock *s, bool peer)
{
	if (!s->conn)
		return cs__fail(L, "invalidsocketcon");
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int r = peer ? getpeername(cs_conn_fd(s->conn), (struct sockaddr *)&ss, &sl)
		     : getsockname(cs_conn_fd(s->conn), (struct sockaddr *)&ss, &sl);
	if (r < 0)
		return cs__fail(L, "invalidsocketcon");
	char buf[INET6_ADDRSTRLEN];
	bool v6;
	int port = cs__addr_string((struct sockaddr *)&ss, buf, sizeof(buf), &v6);
	lua_pushstring(L, buf);
	lua_pushinteger(L, port);
	lua_pushboolean(L, v6);
	return 3;
}

static int m_peername(lua_State *L) { return push_name(L, cs__check_sock(L, 1), true); }
static int m_sockname(lua_State *L) { return push_name(L, cs__check_sock(L, 1), false); }

int cs__sock_tostring(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	char local[INET6_ADDRSTRLEN + 8] = "-", peer[INET6_ADDRSTRLEN + 8] = "-";
	if (s->conn) {
		cs__fd_endpoint(cs_conn_fd(s->conn), false, local, sizeof(local));
		cs__fd_endpoint(cs_conn_fd(s->conn), true, peer, sizeof(peer));
	}
	lua_pushfstring(L, "[Sock %p S:%s {%s -> %s}]", (void *)s, state_name(s), local, peer);
	return 1;
}

static int m_queuelen(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	lua_pushinteger(L, (lua_Integer)s->queue_limit);
	if (!lua_isnoneornil(L, 2)) {
		lua_Integer n = luaL_checkinteger(L, 2);
		s->queue_limit = n < 0 ? 0 : (size_t)n;
	}
	return 1;
}

static int m_maxsize(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	lua_Integer n = luaL_checkinteger(L, 2);
	bool ok = n > 256 && n <= 8192;
	if (ok)
		s->maxsize = (uint32_t)n;
	lua_pushboolean(L, ok);
	return 1;
}

static int m_setoption(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	const char *name = luaL_checkstring(L, 2);
	int on = lua_toboolean(L, 3);
	if (!s->conn)
		return cs__fail(L, "invalidsocketcon");
	int fd = cs_conn_fd(s->conn), r;
	if (!strcmp(name, "tcp-nodelay")) {
		r = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	} else if (!strcmp(name, "keepalive")) {
		r = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
		int idle = (int)luaL_optinteger(L, 4, 0), intv = (int)luaL_optinteger(L, 5, 0);
		if (r == 0 && on && idle > 0 && intv > 0) {
			r = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
			if (r == 0)
				r = setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intv, sizeof(intv));
		}
	} else if (!strcmp(name, "halfclose")) {
		s->halfclose = on;
		r = 0;
	} else if (!cs__udp_setoption(L, s, name, &r)) {
		return luaL_error(L, "Unknown option '%s'", name);
	}
	if (r < 0) {
		int e = errno;
		lua_pushnil(L);
		lua_pushstring(L, strerror(e));
		lua_pushinteger(L, e);
		return 3;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* sock:shutdown(): cosockd extension; FIN after the queued bytes. */
static int m_shutdown(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	if (!s->conn)
		return cs__fail(L, s->had_conn ? "socketclosed" : "invalidsocketcon");
	if (s->kind != CS_SOCK_TCP || cs_conn_shutdown_write(s->conn) < 0)
		return cs__fail(L, "incorrectuse");
	lua_pushboolean(L, 1);
	return 1;
}

void cs__sock_query_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"state", m_state},	  {"owner", m_owner},	      {"peername", m_peername},
		{"sockname", m_sockname}, {"queuelen", m_queuelen}, {"maxsize", m_maxsize},
		{"setoption", m_setoption}, {"shutdown", m_shutdown}, {NULL, NULL},
	};
	cs__setfuncs_on_loop(L, methods);
}
