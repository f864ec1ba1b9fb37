/*
 * tls_sock.c - TLS under a socket object: the handshake driven by the
 * loop, reads that decrypt, writes that encrypt, and the TLS methods
 * (certificate, cipher, trusted, isresumed, relsession, upgrade, alpn).
 *
 * Ciphertext moves only through dispatch/: what the conn receives is fed
 * to the session, and what the session produces is queued on the conn as a
 * malloc'd buffer (CS_COOKIE_MEM) that release frees. So TLS works the
 * same on both backends and never blocks the loop thread.
 *
 * Rules:
 *  - A handshake, once started, drives itself from the conn's receive
 *    callback whether or not anyone reads; it ends by waking whoever waits
 *    (a connect, an upgrade or a reader) or, on failure, by closing the
 *    socket. The server handshake starts at accept.
 *  - Every handshake has a deadline (the SharkSSL object's
 *    handshake_timeout): past it the socket closes with
 *    nil, "sslhandshake", "timeout".
 *  - Writes made before the handshake completed are held (counted as
 *    queued) and encrypted once it completes; writers wait on them as on a
 *    full queue.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "internal.h"
#include "tls.h"

#define TLS_RECORD_MAX 16384

enum hs_waiter { HS_NONE, HS_CONNECT, HS_UPGRADE };

struct cs_sock_tls {
	cs_tls *session;        /* NULL on a listener, or before connecting */
	cs_tls_ctx *ctx;
	uint32_t handshake_ms;
	uint64_t deadline;      /* loop time the handshake must finish by */
	uint64_t read_due;      /* loop time a waiting read times out; 0: never */
	int port;               /* connect: the peer's port (session cache key) */
	char *alpn;
	char *pending;          /* plaintext written during the handshake */
	size_t pending_len;
	uint8_t waiter;         /* enum hs_waiter */
	const char *err;        /* what closed the socket, for the next read */
	const char *why;
};

static struct cs_sock_tls *tls_new(struct cs_shark *sh, const char *alpn)
{
	struct cs_sock_tls *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	if (alpn && !(x->alpn = strdup(alpn))) {
		free(x);
		return NULL;
	}
	x->ctx = sh->ctx;
	cs_tls_ctx_ref(x->ctx);
	x->handshake_ms = sh->handshake_ms;
	return x;
}

void cs__tls_free(cs_sock *s)
{
	struct cs_sock_tls *x = s->tls;
	if (!x)
		return;
	s->tls = NULL;
	cs_tls_free(x->session);
	cs_tls_ctx_unref(x->ctx);
	free(x->alpn);
	free(x->pending);
	free(x);
}

bool cs__tls_handshaking(const cs_sock *s)
{
	return s->tls && s->tls->session && !cs_tls_handshake_done(s->tls->session);
}

size_t cs__tls_pending(const cs_sock *s) { return s->tls ? s->tls->pending_len : 0; }

/* Queue what the session produced. 0 or -errno. */
static int flush(cs_sock *s)
{
	size_t len;
	char *buf = cs_tls_take_output(s->tls->session, &len);
	if (!buf)
		return 0;
	if (!s->conn) {
		free(buf);
		return -EPIPE;
	}
	int r = cs_conn_send(s->conn, buf, len, CS_COOKIE_MEM(buf));
	if (r <= 0)
		free(buf);
	return r < 0 ? r : 0;
}

/* ---- the handshake ----------------------------------------------------- */

/* Milliseconds from now to the loop time due (0 when past). */
static uint64_t until(cs_sock *s, uint64_t due)
{
	uint64_t now = cs_loop_now(s->vm->loop);
	return due > now ? due - now : 0;
}


/* Advance the handshake with what arrived. 1: complete; 0: waiting for
 * the peer (the receive is armed); < 0: a cs_tls status, failed. */
static int hs_step(cs_sock *s)
{
	cs_tls *t = s->tls->session;
	for (;;) {
		int r = cs_tls_handshake(t);
		if (flush(s) < 0 && r == CS_TLS_WANT_READ)
			r = CS_TLS_E_HANDSHAKE;
		if (r == CS_TLS_OK)
			return 1;
		if (r != CS_TLS_WANT_READ)
			return r;
		const char *data;
		ssize_t n = cs_conn_recv(s->conn, &data);
		if (n == -EAGAIN)
			return 0;
		if (n > 0) {
			if (cs_tls_feed(t, data, (size_t)n) < 0)
				return CS_TLS_E_NOMEM;
		} else {
			cs_tls_feed_eof(t);
		}
	}
}

/* The handshake failed: wake whoever waits for it with nil, err, why and
 * close the socket (sending the alert wolfSSL queued). */
static void hs_failed(cs_sock *s, int status, const char *why)
{
	struct cs_sock_tls *x = s->tls;
	const char *err = cs_tls_errstr(status);
	char peer[80] = "?";
	if (s->conn)
		cs__fd_endpoint(cs_conn_fd(s->conn), true, peer, sizeof(peer));
	cs__log(s->vm, CS_LOG_INFO, "tls: handshake with %s failed: %s%s%s", peer, err, why ? ", " : "",
		why ? why : "");
	x->err = err;
	x->why = why;
	x->waiter = HS_NONE;
	cs_timer_stop(s->vm->loop, &s->timer);
	if (s->wait == CS_WAIT_HANDSHAKE || s->wait == CS_WAIT_READ) {
		lua_State *W = cs__waiter(s);
		lua_pushnil(W);
		lua_pushstring(W, err);
		if (why)
			lua_pushstring(W, why);
		else
			lua_pushnil(W);
		x->err = NULL; /* this waiter is told; a later read says closed */
		cs__wake(s, 3);
	}
	cs__sock_close(s, err, true);
}

/* The handshake completed: encrypt what was written meanwhile, then wake
 * whoever waited for it. */
static void hs_finished(cs_sock *s)
{
	struct cs_sock_tls *x = s->tls;
	cs_timer_stop(s->vm->loop, &s->timer);
	if (s->wait == CS_WAIT_READ && x->read_due)
		cs_timer_start(s->vm->loop, &s->timer, until(s, x->read_due));
	if (x->pending) {
		char *p = x->pending;
		size_t len = x->pending_len;
		x->pending = NULL;
		x->pending_len = 0;
		ssize_t n = cs_tls_write(x->session, p, len);
		free(p);
		if (n < 0 || flush(s) < 0) {
			hs_failed(s, (int)(n < 0 ? n : CS_TLS_E_CRYPTO), NULL);
			return;
		}
	}
	uint8_t waiter = x->waiter;
	x->waiter = HS_NONE;
	if (s->wait == CS_WAIT_HANDSHAKE) {
		cs_timer_stop(s->vm->loop, &s->timer);
		lua_State *W = cs__waiter(s);
		if (waiter == HS_CONNECT)
			cs__push_self(W, s);
		else
			lua_pushboolean(W, 1);
		cs__wake(s, 1);
	} else if (s->wait == CS_WAIT_READ) {
		cs__wake_reader(s, cs__read_now);
	} else if (s->http) {
		cs__http_received(s, NULL, -EAGAIN);
	}
}

/* Drive the handshake and settle its outcome. */
static void hs_drive(cs_sock *s)
{
	int r = hs_step(s);
	if (r == 1)
		hs_finished(s);
	else if (r < 0)
		hs_failed(s, r, NULL);
}

/* Create the session and start the handshake; waiter says who is told. */
static int hs_begin(cs_sock *s, const char *host, int port, uint8_t waiter)
{
	struct cs_sock_tls *x = s->tls;
	x->session = cs_tls_new(x->ctx, host, port, x->alpn);
	if (!x->session)
		return -ENOMEM;
	/* TLS writes whole records and flights: Nagle would only hold a
	 * flight's tail (or a reply after a session ticket) for a delayed ACK */
	int one = 1;
	setsockopt(cs_conn_fd(s->conn), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	x->waiter = waiter;
	cs_timer_start(s->vm->loop, &s->timer, x->handshake_ms);
	x->deadline = s->timer.due; /* from the clock read afresh */
	return 0;
}

bool cs__tls_timer(cs_sock *s)
{
	if (!cs__tls_handshaking(s))
		return false;
	if (cs_loop_now(s->vm->loop) < s->tls->deadline) {
		/* a read's own timeout: it fails, the deadline stays */
		if (s->wait == CS_WAIT_READ) {
			lua_State *W = cs__waiter(s);
			lua_pushnil(W);
			lua_pushstring(W, "timeout");
			cs__wake(s, 2);
		}
		cs_timer_start(s->vm->loop, &s->timer, until(s, s->tls->deadline));
		return true;
	}
	hs_failed(s, CS_TLS_E_HANDSHAKE, "timeout");
	return true;
}

void cs__tls_arm_read(cs_sock *s, int64_t ms)
{
	struct cs_sock_tls *x = s->tls;
	x->read_due = 0;
	if (!cs__tls_handshaking(s)) {
		if (ms >= 0)
			cs_timer_start(s->vm->loop, &s->timer, (uint64_t)ms);
		return;
	}
	uint64_t left = until(s, x->deadline), arm = ms >= 0 && (uint64_t)ms < left ? (uint64_t)ms : left;
	cs_timer_start(s->vm->loop, &s->timer, arm);
	if (ms >= 0) /* the timer read the clock afresh: count from there */
		x->read_due = s->timer.due - arm + (uint64_t)ms;
}

int cs__tls_listen(lua_State *L, cs_sock *s, struct cs_shark *sh)
{
	if (!(s->tls = tls_new(sh, NULL)))
		return luaL_error(L, "out of memory");
	return 0;
}

void cs__tls_accepted(cs_sock *s, cs_sock *ls)
{
	struct cs_shark sh = {.ctx = ls->tls->ctx, .handshake_ms = ls->tls->handshake_ms};
	if (!(s->tls = tls_new(&sh, NULL)) || hs_begin(s, NULL, 0, HS_NONE) < 0) {
		cs__log(s->vm, CS_LOG_WARNING, "tls: accept: out of memory, connection closed");
		cs__sock_close(s, "malloc", false);
		return;
	}
	hs_drive(s);
}

int cs__tls_prepare_connect(cs_sock *s, struct cs_shark *sh, int port, const char *alpn)
{
	cs__tls_free(s);
	if (!(s->tls = tls_new(sh, alpn ? alpn : sh->alpn)))
		return -ENOMEM;
	s->tls->port = port;
	return 0;
}

void cs__tls_connected(cs_sock *s)
{
	/* the connect's waiter now waits for the handshake */
	if (hs_begin(s, s->host, s->tls->port, HS_CONNECT) < 0) {
		hs_failed(s, CS_TLS_E_NOMEM, NULL);
		return;
	}
	s->wait = CS_WAIT_HANDSHAKE;
	hs_drive(s);
}

/* ---- blocking handshake (top-level code, before the loop has the fd) --- */

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r;
	while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	return r;
}

static int send_all_blocking(int fd, const char *buf, size_t len, int timeout_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, timeout_ms) <= 0)
				return -1;
		} else if (n < 0 && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

int cs__tls_connect_blocking(cs_sock *s, int fd, int timeout_ms)
{
	struct cs_sock_tls *x = s->tls;
	if (!(x->session = cs_tls_new(x->ctx, s->host, x->port, x->alpn)))
		return CS_TLS_E_NOMEM;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char buf[TLS_RECORD_MAX];
	for (;;) {
		int r = cs_tls_handshake(x->session);
		size_t len;
		char *out = cs_tls_take_output(x->session, &len);
		int sent = out ? send_all_blocking(fd, out, len, timeout_ms) : 0;
		free(out);
		if (r == CS_TLS_OK)
			return sent < 0 ? CS_TLS_E_HANDSHAKE : 0;
		if (r != CS_TLS_WANT_READ || sent < 0)
			return r == CS_TLS_WANT_READ ? CS_TLS_E_HANDSHAKE : r;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (cs_tls_feed(x->session, buf, (size_t)n) < 0)
				return CS_TLS_E_NOMEM;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			cs_tls_feed_eof(x->session);
		} else if (errno == EAGAIN && wait_fd(fd, POLLIN, timeout_ms) <= 0) {
			return CS_TLS_E_HANDSHAKE;
		}
	}
}

/* ---- reading and writing ------------------------------------------------ */

ssize_t cs__tls_pull(cs_sock *s, const char **data, const char **err, const char **why)
{
	cs_tls *t = s->tls->session;
	if (!t) { /* the session ended (a failed handshake closed the socket) */
		*err = "socketclosed", *why = NULL;
		return -EPIPE;
	}
	if (!cs_tls_handshake_done(t))
		return -EAGAIN; /* the handshake's receive is armed; hs_finished reads */
	if (!s->vm->tls_buf && !(s->vm->tls_buf = malloc(TLS_RECORD_MAX))) {
		*err = "malloc", *why = NULL;
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = cs_tls_read(t, s->vm->tls_buf, TLS_RECORD_MAX);
		flush(s);
		if (n > 0) {
			*data = s->vm->tls_buf;
			return n;
		}
		if (n == CS_TLS_WANT_READ) {
			const char *in;
			ssize_t m = cs_conn_recv(s->conn, &in);
			if (m == -EAGAIN)
				return -EAGAIN;
			if (m > 0) {
				if (cs_tls_feed(t, in, (size_t)m) < 0) {
					*err = "malloc", *why = NULL;
					return -ENOMEM;
				}
			} else {
				cs_tls_feed_eof(t);
			}
			continue;
		}
		if (n == CS_TLS_CLOSED) {
			*err = "sslclosenotify", *why = "eof";
			return 0;
		}
		*err = n == CS_TLS_EOF ? "socketreadfailed" : cs_tls_errstr((int)n);
		*why = n == CS_TLS_EOF ? "truncated" : NULL;
		return -EIO;
	}
}

int cs__tls_fill(lua_State *L, cs_sock *s)
{
	const char *data, *err, *why;
	ssize_t n = cs__tls_pull(s, &data, &err, &why);
	if (n > 0) {
		lua_pushlstring(L, data, (size_t)n);
		return 1;
	}
	if (n == -EAGAIN)
		return 0;
	return cs__read_failed(L, s, n == 0, err, why);
}

void cs__tls_received(cs_sock *s, const char *data, ssize_t n)
{
	struct cs_sock_tls *x = s->tls;
	if (!x->session)
		return;
	if (n > 0) {
		if (cs_tls_feed(x->session, data, (size_t)n) < 0) {
			hs_failed(s, CS_TLS_E_NOMEM, NULL);
			return;
		}
	} else {
		cs_tls_feed_eof(x->session);
	}
	if (!cs_tls_handshake_done(x->session))
		hs_drive(s);
	else if (s->wait == CS_WAIT_READ)
		cs__wake_reader(s, cs__read_now);
	else if (s->http)
		cs__http_received(s, NULL, -EAGAIN);
}

int cs__tls_send(cs_sock *s, const char *data, size_t len)
{
	struct cs_sock_tls *x = s->tls;
	if (!cs_tls_handshake_done(x->session)) {
		char *p = realloc(x->pending, x->pending_len + len);
		if (!p)
			return -ENOMEM;
		memcpy(p + x->pending_len, data, len);
		x->pending = p;
		x->pending_len += len;
		return 1;
	}
	if (cs_tls_write(x->session, data, len) < 0)
		return -EIO;
	int r = flush(s);
	return r < 0 ? r : 1;
}

void cs__tls_closing(cs_sock *s, bool graceful)
{
	struct cs_sock_tls *x = s->tls;
	if (!x || !x->session)
		return;
	if (graceful) {
		if (cs_tls_handshake_done(x->session))
			cs_tls_close_notify(x->session);
		flush(s); /* close_notify, or the alert of a failed handshake */
	}
	cs_tls_free(x->session);
	x->session = NULL;
	free(x->pending);
	x->pending = NULL;
	x->pending_len = 0;
}

int cs__tls_take_error(lua_State *L, cs_sock *s)
{
	if (!s->tls || !s->tls->err)
		return 0;
	const char *e = s->tls->err, *why = s->tls->why;
	s->tls->err = s->tls->why = NULL;
	return why ? cs__fail_why(L, e, why) : cs__fail(L, e);
}

bool cs__tls_failed(const cs_sock *s) { return s->tls && s->tls->err; }

/* ---- methods ------------------------------------------------------------ */

static cs_tls *session_of(lua_State *L, cs_sock **sp)
{
	cs_sock *s = cs__check_sock(L, 1);
	if (sp)
		*sp = s;
	return s->tls && s->tls->session && cs_tls_handshake_done(s->tls->session) ? s->tls->session : NULL;
}

static void set_str(lua_State *L, const char *key, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, key);
}

static void push_dn(lua_State *L, const struct cs_tls_dn *dn)
{
	lua_createtable(L, 0, 6);
	set_str(L, "countryname", dn->country);
	set_str(L, "province", dn->province);
	set_str(L, "locality", dn->locality);
	set_str(L, "organization", dn->organization);
	set_str(L, "unit", dn->unit);
	set_str(L, "commonname", dn->common);
}

/* sock:certificate() -> certTable, trustedCA | nil, "sslnotenabled" */
static int m_certificate(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	struct cs_tls_peer_cert *pc;
	if (!t)
		return cs__fail(L, "sslnotenabled");
	if (!(pc = malloc(sizeof(*pc))))
		return cs__fail(L, "malloc");
	if (cs_tls_peer_cert(t, pc) < 0) {
		free(pc);
		return cs__fail(L, "cert");
	}
	lua_createtable(L, 0, 5);
	push_dn(L, &pc->subject);
	lua_setfield(L, -2, "subject");
	push_dn(L, &pc->issuer);
	lua_setfield(L, -2, "issuer");
	set_str(L, "tzfrom", pc->not_before);
	set_str(L, "tzto", pc->not_after);
	lua_createtable(L, (int)pc->nsan, 0);
	for (unsigned i = 0; i < pc->nsan; i++) {
		lua_pushstring(L, pc->san[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "san");
	free(pc);
	lua_pushboolean(L, (cs_tls_trust(t, NULL) & CS_TLS_TRUST_CA) != 0);
	return 2;
}

static int m_cipher(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	if (!t)
		return cs__fail(L, "sslnotenabled");
	lua_pushstring(L, cs_tls_cipher(t));
	lua_pushstring(L, cs_tls_version(t));
	return 2;
}

/* sock:trusted([name]) -> true | nil, "certcn"|"cert"|"cn"|"none", reason */
static int m_trusted(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	const char *name = luaL_optstring(L, 2, NULL);
	if (!t)
		return cs__fail(L, "sslnotenabled");
	unsigned bits = cs_tls_trust(t, name);
	if (bits == (CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	static const char *const passed[] = {"none", "cert", "cn", "certcn"};
	lua_pushnil(L);
	lua_pushstring(L, passed[bits & 3]);
	lua_pushstring(L, cs_tls_trust_reason(t, name));
	return 3;
}

static int m_isresumed(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	lua_pushboolean(L, t && cs_tls_resumed(t));
	return 1;
}

static int m_relsession(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	lua_pushboolean(L, t && cs_tls_forget_session(t));
	return 1;
}

static int m_alpn(lua_State *L)
{
	cs_tls *t = session_of(L, NULL);
	const char *p = t ? cs_tls_alpn(t) : NULL;
	if (!p)
		return cs__fail(L, t ? "none" : "sslnotenabled");
	lua_pushstring(L, p);
	return 1;
}

/* sock:upgrade(sharkssl [, alpn]): STARTTLS as a client. */
static int m_upgrade(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	struct cs_shark *sh = cs__to_shark(L, 2);
	const char *alpn = luaL_optstring(L, 3, NULL);
	if (!sh)
		return luaL_argerror(L, 2, "SharkSSL object expected");
	if (sh->server)
		return luaL_error(L, "Invalid op: upgrade: the SharkSSL object is a server object");
	if (!s->conn || s->tls || s->kind != CS_SOCK_TCP) {
		lua_pushboolean(L, 0);
		return 1;
	}
	cs_sock *cur = cs__current(L);
	cs_lthread *t = cs__caller(L, s->vm);
	if (cur != s && !t)
		return luaL_error(L, "Invalid op: upgrade: call it from the socket's own cosocket or a ba.thread job");
	if (s->vm->shutting_down)
		return cs__fail(L, "sysshutdown");
	if (s->wait == CS_WAIT_READ || s->blocker)
		return luaL_error(L, "Invalid op: upgrade while a read waits on the socket");
	char peer[80];
	int port = cs__fd_endpoint(cs_conn_fd(s->conn), true, peer, sizeof(peer));
	if (!(s->tls = tls_new(sh, alpn ? alpn : sh->alpn)) || hs_begin(s, s->host, port > 0 ? port : 0, HS_UPGRADE) < 0) {
		cs__tls_free(s);
		return cs__fail(L, "malloc");
	}
	if (t)
		cs__park(L, s, CS_WAIT_HANDSHAKE);
	else
		s->wait = CS_WAIT_HANDSHAKE, s->vm->waiting++;
	hs_drive(s);
	if (s->wait == CS_WAIT_READY) /* settled at once: the results are on L */
		return cs__settled_now(s, t != NULL);
	return t ? 0 : lua_yield(L, 0);
}

void cs__tls_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"certificate", m_certificate}, {"cipher", m_cipher},	  {"trusted", m_trusted},
		{"isresumed", m_isresumed},	{"relsession", m_relsession}, {"upgrade", m_upgrade},
		{"alpn", m_alpn},		{NULL, NULL},
	};
	cs__setfuncs_on_loop(L, methods);
}
