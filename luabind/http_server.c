/*
 * http_server.c - cosockd.http{...}: the HTTP/1.1 server's connections,
 * from accept to the request a page runs, and back to keep-alive; plus
 * ba.socket.req2sock and ba.socket.sock2req, which take a connection away
 * from HTTP and give it back.
 *
 * A connection is an ordinary socket object with sock->http set and no
 * coroutine: the loop thread reads it (through TLS when the listener has
 * a SharkSSL object), parses heads and bodies with ws/http.h, and hands
 * each complete request to the server's pool as a job (http_page.c). It
 * reads nothing more until that job's response is done, so pipelined
 * requests are answered in order and a slow page holds back only its own
 * connection.
 *
 * Limits: a head over max_line/max_head/max_headers, a body over max_body,
 * and a head or body that does not arrive within header_timeout are
 * answered with 414/431/413/408 and the connection closes. An idle
 * keep-alive connection closes after keepalive ms, silently.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "wsframe.h"

#define DEFAULT_THREADS 8
#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_KEEPALIVE_MS 15000
#define DEFAULT_HEADER_MS 10000
#define DEFAULT_SEND_MS 30000
#define IDLE_BUFFER_MAX (16u << 10)

static void pump(struct cs_http_conn *h);

/* ---- sending ------------------------------------------------------- */

static int send_copy(cs_sock *s, const char *data, size_t len)
{
	char *b = malloc(len ? len : 1);
	if (!b)
		return -ENOMEM;
	memcpy(b, data, len);
	return cs__sock_send_owned(s, b, len);
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Status";
	}
}

/* Answer status with a small page and close (requests that never reach a
 * page: bad heads, limits, timeouts). */
static void refuse(struct cs_http_conn *h, int status)
{
	cs_sock *s = h->sock;
	char page[256], msg[512];
	int plen = snprintf(page, sizeof(page), "<html><body><h1>%d %s</h1></body></html>\n", status,
			    reason_phrase(status));
	int n = snprintf(msg, sizeof(msg),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
			 "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
			 status, reason_phrase(status), plen, page);
	char peer[80] = "?";
	if (s->conn)
		cs__fd_endpoint(cs_conn_fd(s->conn), true, peer, sizeof(peer));
	cs__log(s->vm, CS_LOG_INFO, "http: %s: %d %s; closing", peer, status, reason_phrase(status));
	send_copy(s, msg, (size_t)n);
	cs__sock_close(s, "socketclosed", true);
}

/* Head lines of the response, built when it is committed. */
static bool build_head(struct cs_http_exchange *ex, char **buf, size_t *len, size_t *cap, bool last)
{
	char line[160];
	int status = ex->status ? ex->status : 200;
	int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
	if (!cs__http_append(buf, len, cap, line, (size_t)n))
		return false;
	if (ex->rhead_len && !cs__http_append(buf, len, cap, ex->rhead, ex->rhead_len))
		return false;
	bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
	if (!bodiless && !ex->has_type) {
		static const char type[] = "Content-Type: text/html; charset=utf-8\r\n";
		if (!cs__http_append(buf, len, cap, type, sizeof(type) - 1))
			return false;
	}
	if (!bodiless) {
		if (ex->content_length < 0 && last && !ex->head_only)
			ex->content_length = (int64_t)ex->out_len;
		n = 0;
		if (ex->content_length >= 0) {
			n = snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)ex->content_length);
		} else if (ex->req.minor_version == 0) {
			ex->keep_alive = false; /* HTTP/1.0 has no chunks: the close ends the body */
		} else if (!ex->head_only) {
			ex->chunked = true;
			n = snprintf(line, sizeof(line), "Transfer-Encoding: chunked\r\n");
		}
		if (n && !cs__http_append(buf, len, cap, line, (size_t)n))
			return false;
	}
	const char *conn = !ex->keep_alive		? "Connection: close\r\n"
			   : ex->req.minor_version == 0 ? "Connection: keep-alive\r\n"
							: "";
	return cs__http_append(buf, len, cap, conn, strlen(conn)) && cs__http_append(buf, len, cap, "\r\n", 2);
}

int cs__http_send(struct cs_http_exchange *ex, bool last)
{
	struct cs_http_conn *h = ex->conn;
	if (!h || !h->sock->conn || ex->taken) {
		ex->dead = true;
		return -EPIPE;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	bool ok = true;
	if (!ex->committed) {
		ok = build_head(ex, &buf, &len, &cap, last);
		ex->committed = true;
	}
	bool body = !ex->head_only && ex->status != 204 && ex->status != 304;
	if (ok && body && ex->out_len) {
		if (ex->chunked) {
			char size[24];
			int n = snprintf(size, sizeof(size), "%zx\r\n", ex->out_len);
			ok = cs__http_append(&buf, &len, &cap, size, (size_t)n) &&
			     cs__http_append(&buf, &len, &cap, ex->out, ex->out_len) &&
			     cs__http_append(&buf, &len, &cap, "\r\n", 2);
		} else {
			ok = cs__http_append(&buf, &len, &cap, ex->out, ex->out_len);
		}
	}
	ex->out_len = 0;
	if (ok && last && ex->chunked && body && !ex->aborted)
		ok = cs__http_append(&buf, &len, &cap, "0\r\n\r\n", 5);
	if (!ok) {
		free(buf);
		cs__sock_close(h->sock, "malloc", false);
		return -ENOMEM;
	}
	return cs__sock_send_owned(h->sock, buf, len);
}

/* ---- the exchange type ------------------------------------------------ */

static void exchange_detach(struct cs_http_exchange *ex)
{
	if (ex->conn) {
		ex->conn->ex = NULL;
		ex->conn = NULL;
	}
}

static int exchange_gc(lua_State *L)
{
	struct cs_http_exchange *ex = luaL_checkudata(L, 1, CS_HTTP_EXCHANGE_MT);
	exchange_detach(ex);
	free(ex->head);
	free(ex->path);
	free(ex->user);
	free(ex->rhead);
	free(ex->out);
	ex->head = ex->path = ex->user = ex->rhead = ex->out = NULL;
	return 0;
}

struct cs_http_exchange *cs__http_check_exchange(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, CS_HTTP_EXCHANGE_MT);
}

/* ---- reading requests ---------------------------------------------------- */

static bool buf_append(struct cs_http_conn *h, const char *data, size_t n)
{
	return cs__http_append(&h->buf, &h->len, &h->cap, data, n);
}

/* Bring in what arrived. 1: bytes came; 0: none yet (a receive is armed);
 * -1: the stream ended or failed (h->eof). */
static int take_input(struct cs_http_conn *h)
{
	cs_sock *s = h->sock;
	if (h->eof <= 0)
		return -1;
	const char *data, *err, *why;
	ssize_t n = s->tls ? cs__tls_pull(s, &data, &err, &why) : cs_conn_recv(s->conn, &data);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0) {
		h->eof = n;
		return -1;
	}
	if (!buf_append(h, data, (size_t)n)) {
		h->eof = -ENOMEM;
		return -1;
	}
	return 1;
}

/* Wait for more input: an idle connection for keepalive ms, a request
 * that began until header_timeout after its first byte (a deadline, not
 * an idle time, so trickling bytes does not keep it alive). */
static void arm_timer(struct cs_http_conn *h)
{
	cs_sock *s = h->sock;
	cs_loop *loop = s->vm->loop;
	if (h->state == CS_HTTP_HEAD && h->len == 0) {
		h->started = 0;
		cs_timer_start(loop, &s->timer, h->srv->keepalive_ms);
		return;
	}
	cs_loop_update_time(loop);
	uint64_t now = cs_loop_now(loop);
	if (!h->started)
		h->started = now;
	uint64_t due = h->started + h->srv->header_ms;
	cs_timer_start(loop, &s->timer, due > now ? due - now : 1);
}

/* Copy the request out of the connection's buffer and give it to the
 * pool. body is at buf[body_off..body_off + body_len); the request used
 * buf[0..consumed). */
static void dispatch(struct cs_http_conn *h, size_t body_off, size_t body_len, size_t consumed)
{
	cs_sock *s = h->sock;
	cs_vm *vm = s->vm;
	lua_State *L = vm->L;
	cs_timer_stop(vm->loop, &s->timer);
	struct cs_http_exchange *ex = lua_newuserdatauv(L, sizeof(*ex), 0);
	memset(ex, 0, sizeof(*ex));
	luaL_setmetatable(L, CS_HTTP_EXCHANGE_MT);
	ex->srv = h->srv;
	ex->content_length = -1;
	ex->head = malloc(h->head_len + body_len + 1);
	if (!ex->head) {
		lua_pop(L, 1);
		refuse(h, 503);
		return;
	}
	memcpy(ex->head, h->buf, h->head_len);
	memcpy(ex->head + h->head_len, h->buf + body_off, body_len);
	ex->head[h->head_len + body_len] = 0;
	ex->head_len = h->head_len;
	ex->body_len = body_len;
	ex->consumed = consumed;
	if (cs_http_parse_request(ex->head, ex->head_len, &h->srv->limits, &ex->req) <= 0) {
		lua_pop(L, 1);
		refuse(h, 400);
		return;
	}
	ex->keep_alive = ex->req.framing.keep_alive && !vm->shutting_down && !vm->draining;
	ex->head_only = ex->req.method_len == 4 && !memcmp(ex->req.method, "HEAD", 4);
	ex->conn = h;
	h->ex = ex;
	h->state = CS_HTTP_RUN;
	lua_pushcclosure(L, cs__http_run, 1);
	int r = cs__pool_submit(L, h->srv->pool);
	if (r < 0) {
		exchange_detach(ex);
		refuse(h, 503);
	}
}

/* A head is complete: 1 (the state moved on), or -status. */
static int took_head(struct cs_http_conn *h, int head_len)
{
	struct cs_http_server *srv = h->srv;
	struct cs_http_framing f = srv->scratch->framing;
	h->head_len = (size_t)head_len;
	h->decoded = 0;
	h->is_chunked = f.chunked;
	if (f.content_length > 0 && (uint64_t)f.content_length > srv->max_body)
		return -413;
	bool body = f.chunked || f.content_length > 0;
	if (f.chunked) /* the decoder's 0 means no limit; ours means no body */
		cs_http_chunked_init(&h->chunked, srv->max_body ? srv->max_body : 1);
	if (!body) {
		dispatch(h, h->head_len, 0, h->head_len);
		return 1;
	}
	h->state = CS_HTTP_BODY;
	if (f.expect_continue && srv->scratch->minor_version == 1 && !h->continue_sent &&
	    h->len == h->head_len) {
		h->continue_sent = true;
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		send_copy(h->sock, cont, sizeof(cont) - 1);
	}
	h->body_want = f.chunked ? 0 : (size_t)f.content_length;
	return 1;
}

/* Progress on the body: 1 (dispatched), 0 (need more), or -status. */
static int took_body(struct cs_http_conn *h)
{
	if (!h->is_chunked) {
		size_t want = h->body_want;
		if (h->len - h->head_len < want)
			return 0;
		dispatch(h, h->head_len, want, h->head_len + want);
		return 1;
	}
	char *raw = h->buf + h->head_len + h->decoded;
	size_t n = h->len - h->head_len - h->decoded;
	ssize_t r = cs_http_decode_chunked(&h->chunked, raw, &n);
	if (r == CS_HTTP_PARTIAL) {
		h->decoded += n;
		h->len = h->head_len + h->decoded;
		return 0;
	}
	if (r == CS_HTTP_E_FRAMING)
		return -413; /* the decoder's only framing error: over max_body */
	if (r < 0)
		return -cs_http_error_status((int)r);
	if (h->decoded + n > h->srv->max_body)
		return -413;
	h->decoded += n;
	h->len = h->head_len + h->decoded + (size_t)r;
	dispatch(h, h->head_len, h->decoded, h->head_len + h->decoded);
	return 1;
}

/* Whether the head could have changed its verdict since the last parse:
 * a line ended in the new bytes, or a limit may be passed. Parsing only
 * then keeps a head sent a byte at a time from costing quadratic time. */
static bool head_worth_parsing(struct cs_http_conn *h)
{
	size_t from = h->parsed_len < h->len ? h->parsed_len : 0;
	if (h->len == 0 || h->len == h->parsed_len)
		return false;
	bool newline = memchr(h->buf + from, '\n', h->len - from) != NULL;
	if (newline)
		h->line_done = true;
	const struct cs_http_limits *lim = &h->srv->limits;
	return newline || h->len > lim->max_head || (!h->line_done && h->len > lim->max_line);
}

static void pump(struct cs_http_conn *h)
{
	cs_sock *s = h->sock;
	while (s->http == h && (h->state == CS_HTTP_HEAD || h->state == CS_HTTP_BODY)) {
		int r;
		if (h->state == CS_HTTP_HEAD) {
			r = head_worth_parsing(h) ? cs_http_parse_request(h->buf, h->len, &h->srv->limits,
									h->srv->scratch)
						  : CS_HTTP_PARTIAL;
			h->parsed_len = h->len;
			if (r > 0)
				r = took_head(h, r);
			else if (r == CS_HTTP_PARTIAL)
				r = 0;
			else
				r = -cs_http_error_status(r);
		} else {
			r = took_body(h);
		}
		if (r > 0)
			continue;
		if (r < 0) {
			refuse(h, -r);
			return;
		}
		int in = take_input(h);
		if (in > 0)
			continue;
		if (in < 0) {
			/* the peer went away: quietly between requests */
			if (h->len || h->state == CS_HTTP_BODY)
				cs__log(s->vm, CS_LOG_INFO, "http: connection ended inside a request");
			cs__sock_close(s, "socketclosed", h->eof == 0);
			return;
		}
		arm_timer(h);
		return;
	}
}

void cs__http_received(cs_sock *s, const char *data, ssize_t n)
{
	struct cs_http_conn *h = s->http;
	if (data && n > 0) {
		if (!buf_append(h, data, (size_t)n))
			h->eof = -ENOMEM;
	} else if (n != -EAGAIN && h->eof > 0) {
		h->eof = n;
	}
	if (h->state != CS_HTTP_RUN)
		pump(h);
}

void cs__http_timer(cs_sock *s)
{
	struct cs_http_conn *h = s->http;
	if (h->draining || (h->state == CS_HTTP_RUN && s->bwriters)) {
		/* the client stopped reading our answer */
		cs__log(s->vm, CS_LOG_INFO, "http: answer not read within %u ms; closing",
			(unsigned)h->srv->send_ms);
		cs__sock_close(s, "timeout", false);
		return;
	}
	if (h->state == CS_HTTP_RUN)
		return;
	if (h->state == CS_HTTP_HEAD && h->len == 0) {
		cs__sock_close(s, "timeout", true); /* idle keep-alive */
		return;
	}
	refuse(h, 408);
}

static void conn_free(cs_vm *vm, struct cs_http_conn *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else if (vm->http_conns == h)
		vm->http_conns = h->next;
	if (h->next)
		h->next->prev = h->prev;
	if (h->ex) {
		h->ex->conn = NULL;
		h->ex = NULL;
	}
	free(h->buf);
	free(h);
}

void cs__http_closing(cs_sock *s)
{
	struct cs_http_conn *h = s->http;
	s->http = NULL;
	cs_timer_stop(s->vm->loop, &s->timer);
	if (s->conn)
		cs_conn_recv_cancel(s->conn);
	int ref = h->sock_ref;
	conn_free(s->vm, h);
	if (!s->vm->closing)
		luaL_unref(s->vm->L, LUA_REGISTRYINDEX, ref);
}

void cs__http_drain_all(cs_vm *vm)
{
	struct cs_http_conn *next;
	for (struct cs_http_conn *h = vm->http_conns; h; h = next) {
		next = h->next;
		/* idle between requests; a connection that has not sent its
		 * first request yet gets one answer (with Connection: close) */
		if (h->served && h->state == CS_HTTP_HEAD && h->len == 0 && !h->ex)
			cs__sock_close(h->sock, "sysshutdown", true);
	}
}

void cs__http_free(cs_sock *s)
{
	if (s->http) {
		conn_free(s->vm, s->http);
		s->http = NULL;
	}
}

/* Make the socket at idx an HTTP connection of srv; pending bytes were
 * already received. 0 or -ENOMEM. */
static int attach(lua_State *L, int idx, struct cs_http_server *srv, const char *pending, size_t len)
{
	cs_sock *s = cs__check_sock(L, idx);
	if (!s->conn)
		return 0; /* closed already (a TLS handshake failed inside accept) */
	struct cs_http_conn *h = calloc(1, sizeof(*h));
	if (!h || (len && !buf_append(h, pending, len))) {
		free(h);
		return -ENOMEM;
	}
	h->srv = srv;
	h->sock = s;
	h->eof = 1;
	h->next = s->vm->http_conns;
	if (h->next)
		h->next->prev = h;
	s->vm->http_conns = h;
	lua_pushvalue(L, idx);
	h->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	s->http = h;
	if (!cs__tls_handshaking(s))
		pump(h);
	return 0;
}

/* The exchange ended on its pool thread: send what is left and go back to
 * reading (keep-alive) or close. Runs on the loop thread. */
int cs__http_finish(lua_State *L)
{
	struct cs_http_exchange *ex = cs__http_check_exchange(L, 1);
	struct cs_http_conn *h = ex->conn;
	ex->finished = true;
	if (!h || ex->taken)
		return 0;
	cs_sock *s = h->sock;
	cs__http_send(ex, true);
	if (s->http != h)
		return 0; /* sending failed and closed the connection */
	exchange_detach(ex);
	if (!s->conn)
		return 0;
	/* draining: a request taken before the drain began ends it too */
	if (!ex->keep_alive || h->eof <= 0 || s->vm->draining) {
		cs__sock_close(s, "socketclosed", true);
		return 0;
	}
	memmove(h->buf, h->buf + ex->consumed, h->len - ex->consumed);
	h->len -= ex->consumed;
	if (h->len == 0 && h->cap > IDLE_BUFFER_MAX) {
		free(h->buf); /* an idle connection keeps no large buffer */
		h->buf = NULL;
		h->cap = 0;
	}
	h->state = CS_HTTP_HEAD;
	h->continue_sent = false;
	h->started = 0;
	h->parsed_len = 0;
	h->line_done = false;
	h->served++;
	if (cs__http_backlogged(s)) {
		/* the client does not read: take no pipelined request until
		 * the answers drain (cs__http_drained), for send_timeout ms */
		h->draining = true;
		cs_timer_start(s->vm->loop, &s->timer, h->srv->send_ms);
		return 0;
	}
	pump(h);
	return 0;
}

void cs__http_drained(cs_sock *s)
{
	struct cs_http_conn *h = s->http;
	if (!h->draining)
		return;
	h->draining = false;
	cs_timer_stop(s->vm->loop, &s->timer);
	pump(h);
}

/* ---- req2sock, sock2req ----------------------------------------------- */

/* The exchange behind a request or response object (or the exchange
 * itself), for req2sock. */
static struct cs_http_exchange *exchange_of(lua_State *L, int idx)
{
	struct cs_http_exchange *own = luaL_testudata(L, idx, CS_HTTP_EXCHANGE_MT);
	if (own)
		return own;
	if (lua_type(L, idx) != LUA_TUSERDATA) {
		luaL_argerror(L, idx, "a request or response object");
		return NULL;
	}
	if (lua_getiuservalue(L, idx, 1) == LUA_TUSERDATA) {
		struct cs_http_exchange *ex = luaL_testudata(L, -1, CS_HTTP_EXCHANGE_MT);
		lua_pop(L, 1);
		if (ex)
			return ex;
	} else {
		lua_pop(L, 1);
	}
	luaL_argerror(L, idx, "a request or response object");
	return NULL;
}

/* ba.socket.req2sock(request [, raw]) */
static int l_req2sock(lua_State *L)
{
	struct cs_http_exchange *ex = exchange_of(L, 1);
	bool raw = lua_toboolean(L, 2);
	struct cs_http_conn *h = ex->conn;
	if (!h || ex->taken || !h->sock->conn)
		return cs__fail(L, "socketclosed");
	if (ex->committed)
		return luaL_error(L, "req2sock: the response was already sent");
	cs_sock *s = h->sock;
	const struct cs_http_header *key = cs_http_find_header(ex->req.headers, ex->req.num_headers,
							       "Sec-WebSocket-Key");
	const struct cs_http_header *ver = cs_http_find_header(ex->req.headers, ex->req.num_headers,
							       "Sec-WebSocket-Version");
	bool ws = !raw && key && ver;
	char accept[29];
	if (ws && cs_ws_accept_key(key->value, key->value_len, accept) < 0) {
		ex->status = 400;
		return cs__fail(L, "invalidresponse");
	}
	const char *pending = h->buf + ex->consumed;
	size_t npending = h->len - ex->consumed;
	if (ws) {
		char msg[200];
		int n = snprintf(msg, sizeof(msg),
				 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
				 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				 accept);
		if (send_copy(s, msg, (size_t)n) < 0 ||
		    cs__ws_attach(s, true, pending, npending, h->srv->ws_max_frame) < 0)
			return cs__fail(L, "malloc");
	} else {
		lua_pushlstring(L, pending, npending);
	}
	ex->taken = true;
	ex->committed = true;
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->sock_ref);
	exchange_detach(ex);
	/* the connection is no longer HTTP's */
	cs_timer_stop(s->vm->loop, &s->timer);
	int ref = h->sock_ref;
	s->http = NULL;
	conn_free(s->vm, h);
	luaL_unref(L, LUA_REGISTRYINDEX, ref);
	if (ws)
		return 1;
	if (!npending)
		return 1; /* sock (the empty string under it is dropped) */
	lua_insert(L, -2); /* sock, buffered */
	return 2;
}

/* ba.socket.sock2req(sock [, pushback]): back to the server the socket
 * last came from; only a socket that no coroutine owns. */
static int l_sock2req(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	size_t len = 0;
	const char *pushback = luaL_optlstring(L, 2, NULL, &len);
	if (!s->conn || s->kind != CS_SOCK_TCP || s->ws || s->http)
		return luaL_error(L, "sock2req: not a plain, connected TCP socket");
	if (s->co || s->blocker)
		return luaL_error(L, "sock2req: the socket belongs to a cosocket or a waiting thread");
	lua_getfield(L, LUA_REGISTRYINDEX, "cosockd.http.last");
	struct cs_http_server *srv = luaL_testudata(L, -1, CS_HTTP_SERVER_MT);
	if (!srv || srv->closed)
		return luaL_error(L, "sock2req: no HTTP server is running");
	if (attach(L, 1, srv, pushback, len) < 0)
		return luaL_error(L, "sock2req: out of memory");
	return 0;
}

/* ---- the server object -------------------------------------------------- */

static struct cs_http_server *check_server(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, CS_HTTP_SERVER_MT);
}

/* attach(sock): the accept loop's hand-off (upvalue 1: the server) */
static int l_attach(lua_State *L)
{
	struct cs_http_server *srv = lua_touserdata(L, lua_upvalueindex(1));
	if (srv->closed)
		return 0;
	if (attach(L, 1, srv, NULL, 0) < 0) {
		cs__log(srv->vm, CS_LOG_WARNING, "http: connection dropped: out of memory");
		cs__sock_close(cs__check_sock(L, 1), "malloc", false);
	}
	return 0;
}

/* srv:page(path, fn) */
static int s_page(lua_State *L)
{
	struct cs_http_server *srv = check_server(L, 1);
	const char *path = luaL_checkstring(L, 2);
	luaL_argcheck(L, path[0] == '/', 2, "a page path starts with /");
	if (!lua_isnil(L, 3))
		luaL_checktype(L, 3, LUA_TFUNCTION);
	lua_rawgeti(L, LUA_REGISTRYINDEX, srv->pages_ref);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_rawset(L, -3);
	return 0;
}

static int s_port(lua_State *L)
{
	lua_pushinteger(L, check_server(L, 1)->port);
	return 1;
}

static void free_strings(char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int s_close(lua_State *L)
{
	struct cs_http_server *srv = check_server(L, 1);
	if (srv->closed) {
		lua_pushboolean(L, 0);
		return 1;
	}
	srv->closed = true;
	lua_rawgeti(L, LUA_REGISTRYINDEX, srv->listener_ref);
	cs_sock *ls = luaL_testudata(L, -1, CS_SOCK_MT);
	if (ls)
		cs__sock_close(ls, "socketclosed", false);
	/* self_ref stays: connections and running pages still point here */
	lua_pushboolean(L, 1);
	return 1;
}

static int s_gc(lua_State *L)
{
	struct cs_http_server *srv = check_server(L, 1);
	free(srv->root);
	free_strings(srv->index, srv->nindex);
	free_strings(srv->protect, srv->nprotect);
	free(srv->realm);
	free(srv->scratch);
	srv->scratch = NULL;
	srv->root = srv->realm = NULL;
	srv->index = srv->protect = NULL;
	srv->nindex = srv->nprotect = 0;
	return 0;
}

/* ---- cosockd.http{...} ----------------------------------------------------- */

static lua_Integer opt_int(lua_State *L, const char *key, lua_Integer def, lua_Integer lo, lua_Integer hi)
{
	lua_getfield(L, 1, key);
	lua_Integer v = def;
	if (!lua_isnil(L, -1)) {
		int ok;
		v = lua_tointegerx(L, -1, &ok);
		if (!ok || v < lo || v > hi)
			luaL_error(L, "cosockd.http: option %s must be an integer in %I..%I", key, lo, hi);
	}
	lua_pop(L, 1);
	return v;
}

/* The strings of the list at key (or def when absent) into *out. */
static unsigned opt_list(lua_State *L, int t, const char *key, const char *const *def, char ***out)
{
	lua_getfield(L, t, key);
	unsigned n = 0;
	char **v = NULL;
	if (lua_isnil(L, -1)) {
		while (def && def[n])
			n++;
		v = calloc(n + 1, sizeof(*v));
		for (unsigned i = 0; v && i < n; i++)
			v[i] = strdup(def[i]);
	} else {
		if (lua_type(L, -1) == LUA_TSTRING) {
			lua_newtable(L);
			lua_insert(L, -2);
			lua_rawseti(L, -2, 1);
		}
		luaL_argexpected(L, lua_istable(L, -1), 1, "a list of strings");
		n = (unsigned)lua_rawlen(L, -1);
		v = calloc(n + 1, sizeof(*v));
		for (unsigned i = 0; v && i < n; i++) {
			lua_rawgeti(L, -1, i + 1);
			const char *s = lua_tostring(L, -1);
			if (!s)
				luaL_error(L, "cosockd.http: %s must list strings", key);
			v[i] = strdup(s);
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	*out = v;
	return n;
}

/* Runs the listener: bind, log, accept loop (a cosocket). */
static const char listener_chunk[] =
	"local port, intf, ipv6, shark, fdname, attach = ...\n"
	"local ls, err, why = ba.socket.bind(port, {intf = intf, ipv6 = ipv6, shark = shark, fdname = fdname})\n"
	"if not ls then return nil, err, why end\n"
	"ls:event(function(ls)\n"
	"  while true do\n"
	"    local s = ls:accept()\n"
	"    if not s then return end\n"
	"    attach(s)\n"
	"  end\n"
	"end)\n"
	"return ls\n";

static int l_http(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	cs_vm *vm = cs__vm(L);
	lua_Integer port = opt_int(L, "port", -1, 0, 65535);
	if (port < 0)
		return luaL_error(L, "cosockd.http: option port is required");
	struct cs_http_server *srv = lua_newuserdatauv(L, sizeof(*srv), 0); /* 2 */
	memset(srv, 0, sizeof(*srv));
	srv->self_ref = srv->pages_ref = srv->lsp_ref = srv->page_tables_ref = LUA_NOREF;
	srv->auth_ref = srv->listener_ref = LUA_NOREF;
	luaL_setmetatable(L, CS_HTTP_SERVER_MT);
	srv->vm = vm;
	srv->limits.max_line = (size_t)opt_int(L, "max_line", 8192, 64, 1 << 20);
	srv->limits.max_head = (size_t)opt_int(L, "max_head", 65536, 256, 16 << 20);
	srv->limits.max_headers = (unsigned)opt_int(L, "max_headers", 100, 1, CS_HTTP_MAX_HEADERS);
	srv->max_body = (uint64_t)opt_int(L, "max_body", DEFAULT_MAX_BODY, 0, (lua_Integer)1 << 40);
	srv->keepalive_ms = (uint32_t)opt_int(L, "keepalive", DEFAULT_KEEPALIVE_MS, 1, 86400000);
	srv->header_ms = (uint32_t)opt_int(L, "header_timeout", DEFAULT_HEADER_MS, 1, 86400000);
	srv->send_ms = (uint32_t)opt_int(L, "send_timeout", DEFAULT_SEND_MS, 1, 86400000);
	srv->ws_max_frame = (uint64_t)opt_int(L, "ws_max_frame", CS_WS_DEFAULT_MAX_FRAME, 125,
					      (lua_Integer)1 << 40);
	unsigned threads = (unsigned)opt_int(L, "threads", DEFAULT_THREADS, 1, 1024);
	static const char *const def_index[] = {"index.lsp", "index.html", NULL};
	srv->nindex = opt_list(L, 1, "index", def_index, &srv->index);
	lua_getfield(L, 1, "root");
	if (!lua_isnil(L, -1)) {
		const char *root = luaL_checkstring(L, -1);
		srv->root = realpath(root, NULL);
		if (!srv->root)
			return luaL_error(L, "cosockd.http: root %s: %s", root, strerror(errno));
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "auth");
	if (!lua_isnil(L, -1)) {
		luaL_argexpected(L, lua_istable(L, -1), 1, "auth must be a table");
		lua_getfield(L, -1, "realm");
		srv->realm = strdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : "cosockd");
		lua_pop(L, 1);
		srv->nprotect = opt_list(L, lua_gettop(L), "protect", NULL, &srv->protect);
		srv->auth_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	} else {
		lua_pop(L, 1);
	}
	srv->pool = cs__pool_new(vm, threads);
	srv->scratch = malloc(sizeof(*srv->scratch));
	if (!srv->pool || !srv->scratch)
		return luaL_error(L, "cosockd.http: out of memory");
	lua_newtable(L);
	srv->pages_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	srv->lsp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	srv->page_tables_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	/* the listener */
	if (luaL_loadbuffer(L, listener_chunk, sizeof(listener_chunk) - 1, "=cosockd.http") != LUA_OK)
		return lua_error(L);
	lua_pushinteger(L, port);
	lua_getfield(L, 1, "intf");
	lua_getfield(L, 1, "ipv6");
	lua_getfield(L, 1, "shark");
	lua_getfield(L, 1, "fdname");
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, l_attach, 1);
	lua_call(L, 6, 3);
	if (lua_isnil(L, -3))
		return 3; /* nil, "bind", why */
	lua_pop(L, 2);
	cs_sock *ls = cs__check_sock(L, -1);
	char name[80];
	srv->port = cs__fd_endpoint(cs_conn_fd(ls->conn), false, name, sizeof(name));
	srv->listener_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	cs__log(vm, CS_LOG_NOTICE, "http: listening on %s%s", name, srv->root ? "" : " (no root)");
	lua_pushvalue(L, 2);
	srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, 2);
	lua_setfield(L, LUA_REGISTRYINDEX, "cosockd.http.last");
	lua_pushvalue(L, 2);
	return 1;
}

void cs__http_exchange_type(lua_State *L)
{
	luaL_newmetatable(L, CS_HTTP_EXCHANGE_MT);
	lua_pushcfunction(L, exchange_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}

void cs__open_http(lua_State *L)
{
	static const luaL_Reg server_methods[] = {
		{"page", s_page}, {"port", s_port}, {"close", s_close}, {NULL, NULL},
	};
	luaL_newmetatable(L, CS_HTTP_SERVER_MT);
	lua_pushcfunction(L, s_gc);
	lua_setfield(L, -2, "__gc");
	lua_newtable(L);
	cs__setfuncs_on_loop(L, server_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	cs__http_exchange_type(L);
	cs__http_page_types(L);
	static const luaL_Reg fns[] = {{"http", l_http}, {NULL, NULL}};
	cs__setfuncs_on_loop(L, fns);
}

void cs__open_http_socket(lua_State *L)
{
	static const luaL_Reg fns[] = {{"req2sock", l_req2sock}, {"sock2req", l_sock2req}, {NULL, NULL}};
	cs__setfuncs_on_loop(L, fns);
}
