/*
 * socket.c - ba.socket and the socket object (metatable "_BASOCK") in
 * cosocket mode, over dispatch/.
 *
 * I/O failures come back as nil plus the original product's error string;
 * misuse raises a Lua error that starts with "Invalid op:". See
 * docs/API.md for where cosockd departs from BA-API.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "wsframe.h"
#include "tls.h"

/* A cosocket writer waits when the queue was busy and now holds more. */
#define WRITE_YIELD_BYTES 1400
#define DEFAULT_QUEUE_LIMIT 16384
#define DEFAULT_CONNECT_MS 1000

static void sock_timer_fired(cs_timer *t);

static cs_sock *check_sock(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, CS_SOCK_MT);
}

cs_sock *cs__check_sock(lua_State *L, int idx) { return check_sock(L, idx); }

cs_sock *cs__push_sock(lua_State *L, cs_vm *vm, enum cs_kind kind, cs_conn *conn)
{
	cs_sock *s = lua_newuserdatauv(L, sizeof(*s), 1);
	memset(s, 0, sizeof(*s));
	s->vm = vm;
	s->kind = (uint8_t)kind;
	s->self_ref = LUA_NOREF;
	s->queue_limit = DEFAULT_QUEUE_LIMIT;
	s->maxsize = 8192;
	s->id = ++vm->next_id;
	cs_timer_init(&s->timer, sock_timer_fired);
	luaL_setmetatable(L, CS_SOCK_MT);
	vm->total_socks++;
	if (conn) {
		s->conn = conn;
		s->had_conn = true;
		cs_conn_set_udata(conn, s);
		cs__sock_count(s, 1);
	}
	return s;
}

static void push_self(lua_State *L, cs_sock *s)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->self_ref);
}

void cs__push_self(lua_State *L, cs_sock *s) { push_self(L, s); }

static void stop_timer(cs_sock *s)
{
	cs_timer_stop(s->vm->loop, &s->timer);
}

/* Withdraw the receive request of a read that is being abandoned. */
static void cancel_read(cs_sock *s)
{
	if (!s->conn)
		return;
	if (s->kind == CS_SOCK_UDP)
		cs_conn_poll_cancel(s->conn);
	else if (!cs__tls_handshaking(s)) /* the handshake needs its receive */
		cs_conn_recv_cancel(s->conn);
}

/* Wake s with nil, err (its wait is over for a reason other than data). */
static void wake_fail(cs_sock *s, const char *err)
{
	stop_timer(s);
	lua_State *W = cs__waiter(s);
	lua_pushnil(W);
	lua_pushstring(W, err);
	cs__wake(s, 2);
}

static void remove_writer(cs_sock *target, cs_sock *w)
{
	for (cs_sock **pp = &target->writers; *pp; pp = &(*pp)->wnext) {
		if (*pp == w) {
			*pp = w->wnext;
			if (target->writers_tail == w) {
				target->writers_tail = NULL;
				for (cs_sock *t = target->writers; t; t = t->wnext)
					target->writers_tail = t;
			}
			break;
		}
	}
	w->wnext = NULL;
	w->write_target = NULL;
}

/* Resume every cosocket and pool thread waiting on s's queue: with true,
 * or nil, err. */
static void wake_writers(cs_sock *s, const char *err)
{
	cs_lthread *t = s->bwriters;
	s->bwriters = NULL;
	while (t) {
		cs_lthread *next = t->bnext;
		t->bnext = NULL;
		if (err) {
			lua_pushnil(t->wl);
			lua_pushstring(t->wl, err);
		} else {
			lua_pushboolean(t->wl, 1);
		}
		cs__unpark(t);
		t = next;
	}
	cs_sock *w = s->writers;
	s->writers = s->writers_tail = NULL;
	while (w) {
		cs_sock *next = w->wnext;
		w->wnext = NULL;
		w->write_target = NULL;
		if (err) {
			wake_fail(w, err);
		} else {
			lua_pushboolean(w->co, 1);
			cs__wake(w, 1);
		}
		w = next;
	}
}

/* End whatever s's own coroutine waits for on s itself, with nil, err. */
static void cancel_own_wait(cs_sock *s, const char *err)
{
	switch (s->wait) {
	case CS_WAIT_READ:
	case CS_WAIT_ACCEPT:
	case CS_WAIT_CONNECT:
	case CS_WAIT_SLEEP:
	case CS_WAIT_HANDSHAKE:
		if (s->resolve) {
			s->resolve->sock = NULL;
			s->resolve = NULL;
			s->vm->resolving--;
		}
		wake_fail(s, err);
		break;
	case CS_WAIT_WRITE:
		if (s->write_target)
			remove_writer(s->write_target, s);
		wake_fail(s, err);
		break;
	case CS_WAIT_DISABLED:
		/* closed from outside while suspended; shutdown leaves it be */
		if (!s->vm->shutting_down || s->conn)
			wake_fail(s, err);
		break;
	default:
		break;
	}
}

static void free_addrs(cs_sock *s)
{
	if (s->addrs)
		freeaddrinfo(s->addrs);
	s->addrs = s->next_addr = NULL;
	free(s->intf);
	s->intf = NULL;
}

bool cs__sock_close(cs_sock *s, const char *err, bool graceful)
{
	if (!s->conn)
		return false;
	if (s->http)
		cs__http_closing(s);
	cs__ws_closing(s, graceful);
	cs__tls_closing(s, graceful);
	cs_conn *c = s->conn;
	s->conn = NULL;
	s->rx_paused = false;
	cs__sock_count(s, -1);
	if (s->kind == CS_SOCK_LISTEN && !s->shared_listener)
		shutdown(cs_conn_fd(c), SHUT_RDWR); /* refuse at once, even while
						     * io_uring cancels the accept */
	cs_conn_close(c, graceful);
	free_addrs(s);
	if ((s->co || s->blocker) && s->wait != CS_WAIT_WRITE)
		cancel_own_wait(s, err);
	wake_writers(s, err);
	return true;
}

void cs__sock_finished(cs_sock *s)
{
	stop_timer(s);
	if (s->write_target)
		remove_writer(s->write_target, s);
	if (s->resolve) {
		s->resolve->sock = NULL;
		s->resolve = NULL;
		s->vm->resolving--;
	}
	if (s->wait != CS_WAIT_NONE && s->wait != CS_WAIT_READY && s->wait != CS_WAIT_DISABLED)
		s->vm->waiting--;
	s->wait = CS_WAIT_NONE;
	cs__sock_close(s, "socketclosed", true);
	cs__release_coroutine(s);
}

/* Connections the kernel completed and queued on a listening socket. */
static uint32_t accept_queue(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state != TCP_LISTEN)
		return 0;
	return ti.tcpi_unacked; /* a listener's accept backlog */
}

void cs__sock_drain_all(cs_vm *vm)
{
	for (cs_sock *s = vm->cosockets; s; s = s->next) {
		if (s->kind != CS_SOCK_LISTEN || !s->conn)
			continue;
		/* A socket shared with a new generation keeps its queue for
		 * it; one nobody else holds would reset its queue on close, so
		 * its queued connections are accepted first. */
		uint32_t queued = s->shared_listener ? 0 : accept_queue(cs_conn_fd(s->conn));
		if (queued)
			s->drain_accepts = queued;
		else
			cs_conn_accept_stop(s->conn); /* a waiting accept hears back */
	}
}

void cs__sock_shutdown_all(cs_vm *vm)
{
	for (cs_sock *s = vm->cosockets; s; s = s->next) {
		if (s->kind == CS_SOCK_LISTEN && s->conn) {
			cs__sock_close(s, "sysshutdown", false);
			continue;
		}
		if (s->wait == CS_WAIT_READ)
			cancel_read(s);
		if (s->wait != CS_WAIT_DISABLED)
			cancel_own_wait(s, "sysshutdown");
	}
	for (cs_lthread *t = vm->lthreads; t; t = t->next) {
		cs_sock *s = t->blocked_on;
		if (s) {
			if (s->wait == CS_WAIT_READ)
				cancel_read(s);
			cancel_own_wait(s, "sysshutdown");
		}
		if (t->write_on)
			wake_writers(t->write_on, "sysshutdown");
	}
}

/* ---- dispatcher callbacks ------------------------------------------- */

/* The stream ended (n == 0) or failed (n < 0). A halfclose socket keeps
 * its sending side after a clean end; any other socket is closed. Pushes
 * read's results onto L and returns their count. */
int cs__read_failed(lua_State *L, cs_sock *s, bool clean, const char *err, const char *why)
{
	s->dead_read = true;
	if (clean && s->halfclose) {
		s->eof = true;
	} else {
		s->wait = CS_WAIT_NONE; /* our own results follow, not close's */
		cs__sock_close(s, err, clean);
	}
	lua_pushnil(L);
	lua_pushstring(L, err);
	if (why) {
		lua_pushstring(L, why);
		return 3;
	}
	return 2;
}

static int read_ended(lua_State *L, cs_sock *s, ssize_t n)
{
	return cs__read_failed(L, s, n == 0, "socketreadfailed", n == 0 ? "eof" : NULL);
}

void cs__wake_reader(cs_sock *s, int (*fill)(lua_State *L, cs_sock *s))
{
	lua_State *W = cs__waiter(s);
	s->vm->waiting--;
	s->wait = CS_WAIT_NONE; /* a close inside fill must not wake us */
	int nvals = fill(W, s);
	s->wait = CS_WAIT_READ; /* counted again, and ended by cs__wake */
	s->vm->waiting++;
	if (nvals) {
		stop_timer(s);
		cs__wake(s, nvals);
	}
}

static void on_recv(cs_conn *c, const char *data, ssize_t n)
{
	cs_sock *s = cs_conn_udata(c);
	if (s && s->tls) {
		cs__tls_received(s, data, n);
		return;
	}
	if (s && s->ws) {
		cs__ws_received(s, data, n);
		return;
	}
	if (s && s->http) {
		cs__http_received(s, data, n);
		return;
	}
	if (!s || s->wait != CS_WAIT_READ)
		return;
	lua_State *W = cs__waiter(s);
	if (n > 0) {
		stop_timer(s);
		lua_pushlstring(W, data, (size_t)n);
		cs__wake(s, 1);
		return;
	}
	stop_timer(s);
	s->vm->waiting--;
	int nvals = read_ended(W, s, n);
	s->wait = CS_WAIT_READ; /* counted again by cs__wake */
	s->vm->waiting++;
	cs__wake(s, nvals);
}

/* One accept of a draining listener that nobody else holds is done. */
static void drain_accepted(cs_sock *ls)
{
	if (ls->drain_accepts && --ls->drain_accepts == 0 && ls->conn)
		cs_conn_accept_stop(ls->conn);
}

static void deliver_accepted(cs_sock *ls, int fd)
{
	drain_accepted(ls);
	cs_conn *c;
	int r = cs_conn_open(ls->vm->loop, fd, NULL, &c);
	if (r < 0) {
		cs__log(ls->vm, CS_LOG_WARNING, "accept: connection dropped: %s", strerror(-r));
		return;
	}
	stop_timer(ls);
	cs_sock *s = cs__push_sock(ls->co, ls->vm, CS_SOCK_TCP, c);
	if (ls->tls)
		cs__tls_accepted(s, ls);
	cs__wake(ls, 1);
}

/* accept() failed for a reason that may pass (EMFILE, ENFILE, ENOMEM):
 * wait a little and try again rather than ending the accept loop. */
static void accept_later(cs_sock *ls, int err)
{
	cs__log(ls->vm, CS_LOG_WARNING, "accept: %s; retrying in 100 ms", strerror(-err));
	cs_timer_start(ls->vm->loop, &ls->timer, 100);
}

/* A drained listener closes, and its waiting accept gets
 * nil,"sysshutdown". The socket itself stays open in the processes that
 * share it, with what its queue holds. */
static void accept_stopped(cs_sock *ls)
{
	ls->dead_read = true;
	cs__sock_close(ls, "sysshutdown", false);
}

static void on_accept(cs_conn *c, int fd)
{
	cs_sock *ls = cs_conn_udata(c);
	if (!ls || ls->wait != CS_WAIT_ACCEPT) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd >= 0)
		deliver_accepted(ls, fd);
	else if (fd == -ESHUTDOWN)
		accept_stopped(ls);
	else
		accept_later(ls, fd);
}

static int connect_next(cs_sock *s);
static void connect_finish(cs_sock *s, int r);

static void on_connect(cs_conn *c, int err)
{
	cs_sock *s = cs_conn_udata(c);
	if (!s || s->wait != CS_WAIT_CONNECT)
		return;
	stop_timer(s);
	if (err == 0) {
		connect_finish(s, 0);
		return;
	}
	s->conn = NULL;
	cs__sock_count(s, -1);
	cs_conn_close(c, false);
	connect_finish(s, connect_next(s));
}

static void on_drain(cs_conn *c)
{
	cs_sock *s = cs_conn_udata(c);
	if (!s)
		return;
	wake_writers(s, cs_conn_error(c) ? "socketwritefailed" : NULL);
	if (s->http && !cs_conn_error(c))
		cs__http_drained(s);
}

static void on_readable(cs_conn *c)
{
	cs_sock *s = cs_conn_udata(c);
	if (s)
		cs__udp_readable(s);
}

static void on_release(cs_loop *loop, uintptr_t cookie)
{
	if (cookie & 1) {
		free((void *)(cookie & ~(uintptr_t)1));
		return;
	}
	cs_vm *vm = cs_loop_udata(loop);
	if (vm && !vm->closing)
		luaL_unref(vm->L, LUA_REGISTRYINDEX, (int)(cookie >> 1));
}

const struct cs_conn_ops cs_vm_conn_ops = {
	.recv = on_recv,
	.accept = on_accept,
	.connect = on_connect,
	.drain = on_drain,
	.release = on_release,
	.readable = on_readable,
};

static void sock_timer_fired(cs_timer *t)
{
	cs_sock *s = (cs_sock *)((char *)t - offsetof(cs_sock, timer));
	if (s->tls && cs__tls_timer(s))
		return;
	if (s->http) {
		cs__http_timer(s);
		return;
	}
	switch (s->wait) {
	case CS_WAIT_READ:
		cancel_read(s);
		/* fall through */
	case CS_WAIT_SLEEP:
		wake_fail(s, "timeout");
		break;
	case CS_WAIT_CONNECT: {
		cs_conn *c = s->conn;
		s->conn = NULL;
		cs__sock_count(s, -1);
		cs_conn_close(c, false);
		int r = connect_next(s);
		connect_finish(s, r == -ECONNREFUSED && !s->next_addr ? -ETIMEDOUT : r);
		break;
	}
	case CS_WAIT_ACCEPT: {
		int fd = cs_conn_accept(s->conn);
		if (fd >= 0)
			deliver_accepted(s, fd);
		else if (fd == -ESHUTDOWN)
			accept_stopped(s);
		else if (fd != -EAGAIN)
			accept_later(s, fd);
		break;
	}
	default:
		break;
	}
}

/* ---- connect --------------------------------------------------------- */

/* Try the remaining addresses. 1: in progress; 0: connected; -errno:
 * nothing left (-ETIMEDOUT when the last try timed out). */
static int connect_next(cs_sock *s)
{
	int last = -ECONNREFUSED;
	while (s->next_addr) {
		struct addrinfo *ai = s->next_addr;
		s->next_addr = ai->ai_next;
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		if (s->intf) {
			struct addrinfo *la = NULL;
			if (cs__resolve_now(s->intf, 0, ai->ai_family == AF_INET6, true, &la) == 0) {
				if (bind(fd, la->ai_addr, la->ai_addrlen) < 0)
					last = -errno;
				freeaddrinfo(la);
			}
		}
		cs_conn *c;
		int r = cs_conn_open(s->vm->loop, fd, s, &c);
		if (r < 0) {
			last = r;
			continue;
		}
		s->conn = c;
		cs__sock_count(s, 1);
		r = cs_conn_connect(c, ai->ai_addr, ai->ai_addrlen);
		if (r == 0)
			return 0;
		if (r == -EINPROGRESS) {
			cs_timer_start(s->vm->loop, &s->timer, s->connect_ms);
			return 1;
		}
		last = r;
		s->conn = NULL;
		cs__sock_count(s, -1);
		cs_conn_close(c, false);
	}
	return last;
}

/* Hand the connect outcome r (see connect_next) to the waiting coroutine. */
static void connect_finish(cs_sock *s, int r)
{
	if (r == 1)
		return;
	if (r == 0) {
		s->had_conn = true;
		if (s->conn) { /* counted by its kind so far */
			s->vm->socks_by_kind[s->kind]--;
			s->vm->socks_by_kind[CS_SOCK_TCP]++;
		}
		s->kind = CS_SOCK_TCP;
		if (s->co)
			s->mode = 's'; /* promoted in place: a cosocket */
		free_addrs(s);
		if (s->tls) {
			cs__tls_connected(s); /* the handshake ends the wait */
			return;
		}
		push_self(cs__waiter(s), s);
		cs__wake(s, 1);
		return;
	}
	free_addrs(s);
	wake_fail(s, r == -ETIMEDOUT ? "timeout" : "cannotconnect");
}

void cs__connect_resolved(cs_sock *s, struct addrinfo *res, int gai_err)
{
	if (!res) {
		stop_timer(s);
		cs__wake(s, cs__fail_why(cs__waiter(s), "cannotresolve", gai_strerror(gai_err)));
		return;
	}
	s->addrs = s->next_addr = res;
	connect_finish(s, connect_next(s));
}

struct conn_opts {
	const char *intf;
	bool ipv6;
	lua_Integer timeout;
	struct cs_shark *shark; /* TLS */
	const char *alpn;
};

static void read_opts(lua_State *L, int idx, struct conn_opts *o)
{
	o->intf = NULL;
	o->ipv6 = false;
	o->timeout = DEFAULT_CONNECT_MS;
	o->shark = NULL;
	o->alpn = NULL;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	if (lua_getfield(L, idx, "shark") != LUA_TNIL && !(o->shark = cs__to_shark(L, -1)))
		luaL_error(L, "option 'shark': SharkSSL object expected, got %s", luaL_typename(L, -1));
	lua_pop(L, 1);
	if (lua_getfield(L, idx, "alpn") == LUA_TSTRING)
		o->alpn = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (lua_getfield(L, idx, "intf") == LUA_TSTRING)
		o->intf = lua_tostring(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, idx, "ipv6");
	o->ipv6 = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (lua_getfield(L, idx, "timeout") == LUA_TNUMBER && lua_isinteger(L, -1))
		o->timeout = lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (o->timeout <= 0)
		o->timeout = DEFAULT_CONNECT_MS;
	/* intf stays valid: the option table is an argument of the call */
}

/* Connect from outside a cosocket: blocks the calling thread. */
static int connect_blocking(lua_State *L, const char *host, int port, const struct conn_opts *o)
{
	struct addrinfo *res;
	int gai = cs__resolve_now(host, port, o->ipv6, false, &res);
	if (gai)
		return cs__fail_why(L, "cannotresolve", gai_strerror(gai));
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (r < 0 && errno == EINPROGRESS) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int err = 0;
			socklen_t sl = sizeof(err);
			if (poll(&p, 1, (int)o->timeout) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err == 0)
				r = 0;
		}
		if (r < 0) {
			close(fd);
			continue;
		}
		freeaddrinfo(res);
		cs_vm *vm = cs__vm(L);
		cs_sock *s = cs__push_sock(L, vm, CS_SOCK_TCP, NULL);
		if (o->shark) {
			if (!(s->host = strdup(host))) {
				close(fd);
				return cs__fail(L, "malloc");
			}
			int st = cs__tls_prepare_connect(s, o->shark, port, o->alpn) < 0
					 ? CS_TLS_E_NOMEM
					 : cs__tls_connect_blocking(s, fd, (int)o->timeout);
			if (st < 0) {
				close(fd);
				return cs__fail(L, cs_tls_errstr(st));
			}
		}
		cs_conn *c;
		if (cs_conn_open(vm->loop, fd, s, &c) < 0)
			return cs__fail(L, "malloc");
		s->conn = c;
		s->had_conn = true;
		cs__sock_count(s, 1);
		return 1;
	}
	freeaddrinfo(res);
	return cs__fail(L, "cannotconnect");
}

/* ba.socket.connect(host, port [, op]) */
static int l_connect(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	lua_Integer port = luaL_checkinteger(L, 2);
	luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
	struct conn_opts o;
	read_opts(L, 3, &o);
	if (o.shark && o.shark->server)
		return luaL_error(L, "Invalid op: connect: the SharkSSL object is a server object");
	cs_vm *vm = cs__vm(L);
	cs_sock *s = cs__current(L);
	cs_lthread *t = cs__caller(L, vm);
	if (!s && !t)
		return connect_blocking(L, host, (int)port, &o);
	if (vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (!s) {
		/* A pool thread: a new socket, and the thread waits (VM lock
		 * released) while the loop resolves and connects. */
		s = cs__push_sock(L, vm, CS_SOCK_NONE, NULL);
		cs__pin(L, -1, s);
		s->blocker = t;
		t->blocked_on = s;
	} else if (s->conn) {
		return cs__fail(L, "incorrectuse");
	}
	free(s->host);
	if (!(s->host = strdup(host)))
		return cs__fail(L, "malloc");
	if (!o.shark)
		cs__tls_free(s);
	else if (cs__tls_prepare_connect(s, o.shark, (int)port, o.alpn) < 0)
		return cs__fail(L, "malloc");
	s->connect_ms = (uint32_t)o.timeout;
	s->ipv6 = o.ipv6;
	free_addrs(s);
	/* Mark the wait before starting: numeric hosts may finish at once, and
	 * their result is then pushed onto this very stack. */
	s->wait = CS_WAIT_CONNECT;
	vm->waiting++;
	if ((o.intf && !(s->intf = strdup(o.intf))) || cs__resolve_start(s, host, (int)port, o.ipv6) < 0) {
		s->wait = CS_WAIT_NONE;
		vm->waiting--;
		if (t) {
			s->blocker = NULL;
			t->blocked_on = NULL;
			cs__unpin(s);
		}
		return cs__fail(L, "malloc");
	}
	if (t && s->wait != CS_WAIT_READY) {
		t->parked = true;
		return 0;
	}
	if (s->wait == CS_WAIT_READY) /* finished synchronously */
		return cs__settled_now(s, t != NULL);
	return lua_yield(L, 0);
}

int cs__settled_now(cs_sock *s, bool pool_thread)
{
	cs_vm *vm = s->vm;
	s->wait = CS_WAIT_NONE;
	if (pool_thread)
		return s->nresume;
	/* take s back out of the ready queue (it is the last entry) */
	cs_sock **pp = &vm->ready_head;
	cs_sock *prev = NULL;
	while (*pp && *pp != s) {
		prev = *pp;
		pp = &(*pp)->ready_next;
	}
	if (*pp) {
		*pp = s->ready_next;
		if (vm->ready_tail == s)
			vm->ready_tail = prev;
	}
	return s->nresume;
}

/* ---- bind, accept, event --------------------------------------------- */

/* ba.socket.bind(port [, op]) */
static int l_bind(lua_State *L)
{
	lua_Integer port = luaL_checkinteger(L, 1);
	luaL_argcheck(L, port >= 0 && port < 65536, 1, "port out of range");
	struct conn_opts o;
	read_opts(L, 2, &o);
	cs_vm *vm = cs__vm(L);
	if (o.shark && !o.shark->server)
		return luaL_error(L, "Invalid op: bind: the SharkSSL object is not a server object (use {server=true})");
	if (o.shark && cs_tls_ctx_certs(o.shark->ctx) == 0)
		return luaL_error(L, "Invalid op: bind: the SharkSSL server object has no certificate (call :addcert)");
	const char *fdname = NULL;
	if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "fdname") != LUA_TNIL) {
		fdname = luaL_checkstring(L, -1); /* kept alive by the option table */
		lua_pop(L, 1);
	}
	cs_sock *cur = cs__current(L);
	if (cur && cur->conn)
		return cs__fail(L, "incorrectuse");
	if (vm->draining || vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	int fd;
	bool shared;
	int r = cs__bind_listener(vm, o.intf, (int)port, o.ipv6, fdname, &fd, &shared);
	if (r < 0)
		return cs__fail_why(L, "bind", strerror(-r));
	if (vm->reuseport && port == 0 && !fdname)
		cs__log(vm, CS_LOG_WARNING, "bind: port 0 under --workers: each worker listens on a port of its own");
	cs_conn *c;
	if ((r = cs_conn_open(vm->loop, fd, NULL, &c)) < 0)
		return cs__fail(L, "bind");
	cs_sock *ls = cur;
	if (cur) {
		/* promote the socket-less cosocket in place */
		cur->conn = c;
		cur->had_conn = true;
		cur->kind = CS_SOCK_LISTEN;
		cur->mode = 'r';
		cs_conn_set_udata(c, cur);
		cs__sock_count(cur, 1);
		push_self(L, cur);
	} else {
		ls = cs__push_sock(L, vm, CS_SOCK_LISTEN, c);
	}
	ls->shared_listener = shared;
	if (o.shark)
		cs__tls_listen(L, ls, o.shark);
	return 1;
}

static int m_accept(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	if (s->kind != CS_SOCK_LISTEN)
		return luaL_error(L, "Invalid op: accept on a socket that is not listening");
	if (cs__current(L) != s)
		return luaL_error(L, "Invalid op: accept outside the listen socket's own cosocket (call sock:event first)");
	if (s->vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (!s->conn) {
		if (s->dead_read)
			return luaL_error(L, "Invalid op: accept: Socket closed");
		s->dead_read = true;
		return cs__fail(L, "socketclosed");
	}
	int fd = cs_conn_accept(s->conn);
	if (fd >= 0) {
		drain_accepted(s);
		cs_conn *c;
		if (cs_conn_open(s->vm->loop, fd, NULL, &c) == 0) {
			cs_sock *n = cs__push_sock(L, s->vm, CS_SOCK_TCP, c);
			if (s->tls)
				cs__tls_accepted(n, s);
			return 1;
		}
	} else if (fd == -ESHUTDOWN) {
		accept_stopped(s);
		return cs__fail(L, "sysshutdown");
	} else if (fd != -EAGAIN) {
		accept_later(s, fd);
	}
	return cs__wait(L, s, CS_WAIT_ACCEPT);
}

/* sock:event(fn [, mode] [, ...]) */
/* Raise for a socket the HTTP server reads (handed back by sock2req). */
static void check_not_http(lua_State *L, const cs_sock *s)
{
	if (s->http)
		luaL_error(L, "Invalid op: the socket belongs to the HTTP server (sock2req)");
}

static int m_event(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	check_not_http(L, s);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	char mode = 'r';
	int first_extra = 3;
	if (lua_type(L, 3) == LUA_TSTRING || lua_isnil(L, 3)) {
		const char *m = lua_tostring(L, 3);
		if (m && *m == 's')
			mode = 's';
		first_extra = 4;
	}
	int top = lua_gettop(L);
	int nextra = top >= first_extra ? top - first_extra + 1 : 0;
	cs_sock *cur = cs__current(L);
	if (s->co) {
		if (cur != s)
			return luaL_error(L, "Already in async/cosocket mode");
		/* From its own cosocket: the connection moves to a new object
		 * with a new coroutine; this object is left closed. */
		cs_sock *n = cs__sock_move(L, s);
		lua_replace(L, 1);
		s = n;
	} else if (!s->conn && !cs__tls_failed(s)) {
		return cs__fail(L, "invalidsocketcon");
	}
	s->mode = s->kind == CS_SOCK_LISTEN ? 'r' : mode;
	/* arrange fn, sock, extras on top */
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 1);
	for (int i = 0; i < nextra; i++)
		lua_pushvalue(L, first_extra + i);
	if (cs__start(L, 1, s, 1 + nextra)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	return cs__fail(L, "failed");
}

int cs__sock_send_owned(cs_sock *s, void *buf, size_t len)
{
	if (!s->conn || len == 0) {
		free(buf);
		return s->conn ? 0 : -EPIPE;
	}
	if (s->tls) {
		int r = cs__tls_send(s, buf, len);
		free(buf);
		return r < 0 ? r : 0;
	}
	int r = cs_conn_send(s->conn, buf, len, CS_COOKIE_MEM(buf));
	if (r <= 0)
		free(buf);
	return r < 0 ? r : 0;
}

cs_sock *cs__sock_move(lua_State *L, cs_sock *s)
{
	cs_sock *n = cs__push_sock(L, s->vm, (enum cs_kind)s->kind, NULL);
	n->conn = s->conn;
	n->had_conn = true;
	n->ipv6 = s->ipv6;
	n->halfclose = s->halfclose;
	n->eof = s->eof;
	n->shared_listener = s->shared_listener;
	n->queue_limit = s->queue_limit;
	n->maxsize = s->maxsize;
	n->tls = s->tls;
	n->ws = s->ws;
	n->host = s->host;
	s->tls = NULL;
	s->ws = NULL;
	s->host = NULL;
	if (n->conn)
		cs_conn_set_udata(n->conn, n);
	s->conn = NULL; /* the count of active sockets stays: the conn lives on */
	return n;
}

/* ba.socket.event(fn, ...) */
static int l_event(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	int nextra = lua_gettop(L) - 1;
	cs_sock *s = cs__push_sock(L, cs__vm(L), CS_SOCK_NONE, NULL);
	int sidx = lua_gettop(L);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, sidx);
	for (int i = 0; i < nextra; i++)
		lua_pushvalue(L, 2 + i);
	if (cs__start(L, sidx, s, 1 + nextra)) {
		lua_pushvalue(L, sidx);
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

/* ---- read, write ------------------------------------------------------ */

/* What a read gets without waiting: the data (1 value), the end of the
 * stream (read_ended()'s values), or 0 when the caller must wait. */
int cs__read_now(lua_State *L, cs_sock *s)
{
	if (s->ws)
		return cs__ws_fill(L, s);
	if (s->tls)
		return cs__tls_fill(L, s);
	const char *data;
	ssize_t n = cs_conn_recv(s->conn, &data);
	if (n > 0) {
		lua_pushlstring(L, data, (size_t)n);
		return 1;
	}
	return n == -EAGAIN ? 0 : read_ended(L, s, n);
}

/* A blocking read: only a pool thread may wait, with the VM lock released.
 * A timeout of 0 or less waits for ever (the original product ignores
 * blocking timeouts under 50 ms). */
static int read_blocking(lua_State *L, cs_sock *s, lua_Integer ms)
{
	cs_vm *vm = s->vm;
	if (!cs__caller(L, vm))
		return luaL_error(L, "Invalid op: read: a blocking read would stop the dispatcher; "
				     "read in a cosocket (sock:event) or on a ba.thread job");
	if (s->blocker)
		return luaL_error(L, "Invalid op: read: another thread is reading this socket");
	if (vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (!s->conn) {
		int nerr = cs__tls_take_error(L, s);
		if (nerr)
			return nerr;
		if (s->had_conn && ms <= 0 && s->dead_read)
			return luaL_error(L, "Invalid op: read: Socket closed");
		s->dead_read = true;
		return cs__fail(L, s->had_conn ? "socketclosed" : "invalidsocketcon");
	}
	if (s->eof)
		return cs__fail(L, "socketreadfailed");
	int nvals = cs__read_now(L, s);
	if (nvals)
		return nvals;
	if (s->tls)
		cs__tls_arm_read(s, ms > 0 ? ms : -1);
	else if (ms > 0)
		cs_timer_start(vm->loop, &s->timer, (uint64_t)ms);
	return cs__park(L, s, CS_WAIT_READ);
}

static int m_read(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	check_not_http(L, s);
	if (s->kind == CS_SOCK_LISTEN)
		return luaL_error(L, "Invalid op: read on listen socket");
	if (s->kind == CS_SOCK_UDP)
		return cs__udp_read(L, s);
	lua_Integer ms = -1;
	if (lua_type(L, 2) == LUA_TNUMBER)
		ms = lua_tointeger(L, 2);
	cs_sock *cur = cs__current(L);
	if (!s->co)
		return read_blocking(L, s, ms);
	if (cur != s)
		return luaL_error(L, "Invalid op: read when socket is in cosocket mode");
	if (s->vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (!s->conn) {
		int nerr = cs__tls_take_error(L, s);
		if (nerr)
			return nerr;
		if (s->had_conn) {
			if (ms < 0 && s->dead_read)
				return luaL_error(L, "Invalid op: read: Socket closed");
			s->dead_read = true;
			return cs__fail(L, "socketclosed");
		}
		if (ms < 0)
			return luaL_error(L, "Invalid op: read on an unconnected cosocket needs a timeout");
		cs_timer_start(s->vm->loop, &s->timer, (uint64_t)ms);
		return cs__wait(L, s, CS_WAIT_SLEEP);
	}
	if (s->rx_paused)
		return cs__fail(L, "incorrectuse");
	if (s->eof) {
		if (ms < 0)
			return luaL_error(L, "Invalid op: read: the peer closed its side");
		return cs__fail(L, "socketreadfailed");
	}
	int nvals = cs__read_now(L, s);
	if (nvals)
		return nvals;
	if (s->tls)
		cs__tls_arm_read(s, ms);
	else if (ms >= 0)
		cs_timer_start(s->vm->loop, &s->timer, (uint64_t)ms);
	return cs__wait(L, s, CS_WAIT_READ);
}

/* The bytes write(data [, i [, j]]) sends: data (or tostring(data), pushed
 * and then at *vidx) cut as string.sub would. When i > j: pushes false,
 * write's result, and returns NULL. */
static const char *write_window(lua_State *L, size_t *lenp, int *vidxp)
{
	lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
	size_t len;
	int vidx = 2;
	if (lua_type(L, 2) != LUA_TSTRING) {
		lua_settop(L, 4);
		luaL_tolstring(L, 2, NULL); /* any value is written as tostring() shows it */
		vidx = 5;
	}
	const char *data = lua_tolstring(L, vidx, &len);
	if (i < 0)
		i = (lua_Integer)len + i + 1 > 0 ? (lua_Integer)len + i + 1 : 1;
	else if (i == 0)
		i = 1;
	if (j < 0)
		j = (lua_Integer)len + j + 1;
	else if (j > (lua_Integer)len)
		j = (lua_Integer)len;
	*vidxp = vidx;
	if (i > j) {
		lua_pushboolean(L, 0);
		return NULL;
	}
	*lenp = (size_t)(j - i + 1);
	return data + i - 1;
}

/* A WebSocket write's frame type from its trailing boolean (write(data,
 * isText) or write(data, i, j, isText)), which is then dropped. */
static uint8_t ws_opcode(lua_State *L)
{
	int at = lua_type(L, 3) == LUA_TBOOLEAN ? 3 : lua_type(L, 5) == LUA_TBOOLEAN ? 5 : 0;
	if (!at)
		return CS_WS_OP_BINARY;
	uint8_t op = lua_toboolean(L, at) ? CS_WS_OP_TEXT : CS_WS_OP_BINARY;
	lua_settop(L, at - 1);
	return op;
}

/* Queue len bytes at data; frame, when set, is their malloc'd home
 * (a WebSocket frame) and is taken over. 0 or -errno. */
static int queue_bytes(lua_State *L, cs_sock *s, const char *data, size_t len, int vidx, uint8_t *frame)
{
	if (frame) {
		int r = cs_conn_send(s->conn, data, len, CS_COOKIE_MEM(frame));
		if (r <= 0)
			free(frame);
		return r < 0 ? r : 0;
	}
	lua_pushvalue(L, vidx);
	int ref = luaL_ref(L, LUA_REGISTRYINDEX);
	int r = cs_conn_send(s->conn, data, len, CS_COOKIE_REF(ref));
	if (r <= 0)
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
	return r < 0 ? r : 0;
}

/* sock:write(data [, i [, j]]); on a WebSocket also a trailing isText */
static int m_write(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	check_not_http(L, s);
	if (s->kind == CS_SOCK_LISTEN)
		return luaL_error(L, "Invalid op: write on listen socket");
	uint8_t opcode = s->ws ? ws_opcode(L) : 0;
	size_t len;
	int vidx;
	const char *data = write_window(L, &len, &vidx);
	if (!data) {
		if (!s->ws)
			return 1; /* false */
		lua_pop(L, 1);
		data = ""; /* an empty message is a frame like any other */
		len = 0;
	}
	if (s->kind == CS_SOCK_UDP)
		return cs__udp_write(L, s, data, len);
	if (!s->conn)
		return cs__fail(L, s->had_conn ? "socketclosed" : "socketwritefailed");
	if (cs_conn_error(s->conn))
		return cs__fail(L, "socketwritefailed");
	cs_sock *cur = cs__current(L);
	cs_lthread *t = cs__caller(L, s->vm);
	/* Blocking sockets and "r" cosockets write as if send() blocked: the
	 * writer waits until the kernel has every byte. */
	bool blocking = s->mode != 's';
	size_t before = cs_conn_queued(s->conn) + cs__tls_pending(s);
	if (!cur && !(t && blocking) && before >= s->queue_limit) {
		/* a writer that cannot wait: the queue is full */
		lua_pushnil(L);
		lua_pushinteger(L, (lua_Integer)before);
		return 2;
	}
	uint8_t *frame = NULL;
	if (s->ws) {
		if (cs__ws_close_sent(s))
			return cs__fail(L, "socketclosed");
		uint64_t max = cs__ws_max_frame(s);
		if (len > max) {
			char limit[24];
			snprintf(limit, sizeof(limit), "0x%llX", (unsigned long long)max);
			return luaL_error(L, "Max len %s", limit);
		}
		frame = cs__ws_frame(s, opcode, data, len, &len);
		if (!frame)
			return cs__fail(L, "malloc");
		data = (const char *)frame;
	}
	if (s->tls) {
		/* encrypted (or held during the handshake) and queued whole */
		int r = cs__tls_send(s, data, len);
		free(frame);
		if (r < 0)
			return cs__fail(L, "socketwritefailed");
	} else {
		if (!cur && !(t && blocking)) {
			/* A writer that cannot wait queues only what the kernel
			 * refuses now (seed 003, "Cosockets flow control"). */
			ssize_t n = cs_conn_try_send(s->conn, data, len);
			if (n < 0) {
				free(frame);
				return cs__fail(L, "socketwritefailed");
			}
			data += n;
			len -= (size_t)n;
		}
		if (len == 0) {
			free(frame);
		} else if (queue_bytes(L, s, data, len, vidx, frame) < 0) {
			return cs__fail(L, "socketwritefailed");
		}
	}
	size_t after = s->conn ? cs_conn_queued(s->conn) + cs__tls_pending(s) : 0;
	if (blocking && (cur || t)) {
		if (after == 0) {
			lua_pushboolean(L, 1);
			return 1;
		}
		if (t)
			return cs__park_writer(L, s);
	}
	if (cur && ((blocking && after > 0) || (before > 0 && after > WRITE_YIELD_BYTES))) {
		cur->write_target = s;
		cur->wnext = NULL;
		if (s->writers_tail)
			s->writers_tail->wnext = cur;
		else
			s->writers = cur;
		s->writers_tail = cur;
		return cs__wait(L, cur, CS_WAIT_WRITE);
	}
	lua_pushboolean(L, 1);
	lua_pushinteger(L, (lua_Integer)after);
	return 2;
}

static int sleep_done(lua_State *L, int status, lua_KContext ctx)
{
	(void)L, (void)status, (void)ctx;
	return 0;
}

int cs__sock_sleep(lua_State *L, cs_sock *s, lua_Integer ms)
{
	if (s->vm->shutting_down)
		return 0;
	cs_timer_start(s->vm->loop, &s->timer, (uint64_t)ms);
	s->wait = CS_WAIT_SLEEP;
	s->vm->waiting++;
	return lua_yieldk(L, 0, 0, sleep_done);
}

/* sock:write() as registered. On a pool thread the bytes the kernel takes
 * at once are sent from here (a non-blocking send, with the VM lock keeping
 * the loop out of the conn); only what must be queued, or waited for, goes
 * through the loop thread. */
static int m_write_any(lua_State *L)
{
	if (!cs__self)
		return m_write(L);
	cs_sock *s = check_sock(L, 1);
	if (s->kind != CS_SOCK_TCP || !s->conn || cs_conn_error(s->conn) || s->tls || s->ws || s->http)
		return cs__on_loop(L, m_write);
	int top = lua_gettop(L);
	size_t len;
	int vidx;
	const char *data = write_window(L, &len, &vidx);
	if (!data)
		return 1; /* false */
	ssize_t n = cs_conn_try_send(s->conn, data, len);
	if (n == (ssize_t)len) {
		lua_pushboolean(L, 1);
		if (s->mode != 's')
			return 1;
		lua_pushinteger(L, 0);
		return 2;
	}
	if (n > 0) {
		lua_pushlstring(L, data + n, len - (size_t)n);
		lua_replace(L, 2);
		lua_settop(L, 2);
	} else {
		lua_settop(L, top);
	}
	return cs__on_loop(L, m_write);
}

/* ---- close, disable, enable ------------------------------------------- */

static int m_close(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	bool closed = cs__sock_close(s, "socketclosed", true);
	if (!closed && !s->had_conn && s->co && cs__current(L) != s && s->wait == CS_WAIT_SLEEP) {
		s->had_conn = true; /* a socket-less cosocket: closing ends its sleep */
		wake_fail(s, "socketclosed");
		closed = true;
	}
	lua_pushboolean(L, closed);
	return 1;
}

struct deferred_close {
	cs_post post;
	cs_conn *conn;
};

static void run_deferred_close(cs_post *p)
{
	struct deferred_close *d = (struct deferred_close *)p;
	cs_conn_close(d->conn, true);
	free(d);
}

/* A socket collected on a pool thread: its conn is closed by the loop. */
static void close_from_pool_thread(cs_sock *s)
{
	cs_conn *c = s->conn;
	s->conn = NULL;
	cs__sock_count(s, -1);
	cs_conn_set_udata(c, NULL);
	struct deferred_close *d = malloc(sizeof(*d));
	if (!d) {
		cs__log(s->vm, CS_LOG_ERR, "socket collected on a pool thread: out of memory, fd %d left open",
			cs_conn_fd(c));
		return;
	}
	d->post.run = run_deferred_close;
	d->conn = c;
	cs_loop_post(s->vm->loop, &d->post);
}

static int m_gc(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	stop_timer(s);
	if (cs__self && s->conn)
		close_from_pool_thread(s);
	if (s->resolve) {
		s->resolve->sock = NULL;
		s->resolve = NULL;
		s->vm->resolving--;
	}
	if (s->vm->closing) {
		if (s->conn)
			cs_conn_close(s->conn, false);
		s->conn = NULL;
		free_addrs(s);
		cs__tls_free(s);
		cs__ws_free(s);
		cs__http_free(s);
		free(s->host);
		s->host = NULL;
		return 0;
	}
	cs__sock_close(s, "socketclosed", true);
	free_addrs(s);
	cs__tls_free(s);
	cs__ws_free(s);
	free(s->host);
	s->host = NULL;
	cs__forget_coroutine(s);
	return 0;
}

static int m_disable(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	if (!s->co)
		return luaL_error(L, "Sock not async");
	if (cs__current(L) == s)
		return cs__wait(L, s, CS_WAIT_DISABLED);
	if (s->wait == CS_WAIT_READ && !cs_timer_armed(&s->timer) && s->conn) {
		cancel_read(s);
		s->rx_paused = true;
		s->wait = CS_WAIT_NONE;
		s->vm->waiting--;
		lua_pushboolean(L, 1);
		return 1;
	}
	return cs__fail(L, "incorrectuse");
}

static int m_enable(lua_State *L)
{
	cs_sock *s = check_sock(L, 1);
	if (!s->co)
		return luaL_error(L, "Sock not async");
	if (s->wait == CS_WAIT_DISABLED) {
		if (s->had_conn && !s->conn) {
			lua_pushnil(s->co);
			lua_pushstring(s->co, "socketclosed");
			cs__resume(s, L, 2);
			return cs__fail(L, "socketclosed");
		}
		int n = lua_gettop(L) - 1;
		lua_xmove(L, s->co, n);
		lua_pushboolean(L, cs__resume(s, L, n));
		return 1;
	}
	if (s->rx_paused) {
		s->rx_paused = false;
		if (!s->conn)
			return cs__fail(L, "socketclosed");
		s->wait = CS_WAIT_READ;
		s->vm->waiting++;
		cs__wake_reader(s, cs__read_now);
		lua_pushboolean(L, 1);
		return 1;
	}
	return 0;
}

/* ---- library functions ------------------------------------------------ */

static int l_getsock(lua_State *L)
{
	cs_sock *s = cs__current(L);
	if (!s || s->self_ref == LUA_NOREF)
		lua_pushnil(L);
	else
		push_self(L, s);
	return 1;
}

static int l_stat(lua_State *L)
{
	cs_vm *vm = cs__vm(L);
	lua_pushinteger(L, vm->total_socks);
	lua_pushinteger(L, vm->active_socks);
	return 2;
}

/* ba.socket.toip(name [, ipv6]): resolves on the calling thread. */
static int l_toip(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	struct addrinfo *res;
	if (cs__resolve_now(name, 0, lua_toboolean(L, 2), false, &res) != 0)
		return cs__fail(L, "cannotresolve");
	char buf[INET6_ADDRSTRLEN];
	bool v6;
	cs__addr_string(res->ai_addr, buf, sizeof(buf), &v6);
	freeaddrinfo(res);
	lua_pushstring(L, buf);
	return 1;
}

static const luaL_Reg sock_methods[] = {
	{"event", m_event},	{"accept", m_accept},	{"read", m_read},
	{"close", m_close},	{"disable", m_disable},	{"enable", m_enable},
	{NULL, NULL},
};

/* __gc runs on whichever thread collects; see close_from_pool_thread(). */
static const luaL_Reg sock_meta[] = {
	{"__index", NULL}, {"__gc", m_gc}, {"__tostring", cs__sock_tostring}, {NULL, NULL},
};

static const luaL_Reg sock_meta_on_loop[] = {
	{"__close", m_close}, {NULL, NULL},
};

static const luaL_Reg socket_lib[] = {
	{"connect", l_connect}, {"bind", l_bind},   {"event", l_event},
	{"getsock", l_getsock}, {"stat", l_stat},   {"toip", l_toip},
	{NULL, NULL},
};

int cs__open_socket(lua_State *L)
{
	luaL_newmetatable(L, CS_SOCK_MT);
	luaL_setfuncs(L, sock_meta, 0);
	cs__setfuncs_on_loop(L, sock_meta_on_loop);
	luaL_newlibtable(L, sock_methods);
	cs__setfuncs_on_loop(L, sock_methods);
	cs__sock_query_methods(L);
	cs__tls_methods(L);
	cs__ws_methods(L);
	lua_pushcfunction(L, m_write_any);
	lua_setfield(L, -2, "write");
	lua_pushcfunction(L, cs__udp_sendto); /* syscalls only: any thread */
	lua_setfield(L, -2, "sendto");
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newlibtable(L, socket_lib);
	cs__setfuncs_on_loop(L, socket_lib);
	lua_pushcfunction(L, cs__udpcon_any);
	lua_setfield(L, -2, "udpcon");
	cs__open_http_socket(L);
	return 1;
}
