/*
 * ws_sock.c - WebSocket framing under a socket object (BA-API.md §6):
 * reads that return frames, writes that send them, ping, the close
 * handshake, and the methods websocket(), ping() and maxframe().
 *
 * The layer sits above TLS and plain TCP alike: received bytes come from
 * cs__tls_pull() or the conn, go into the socket's own buffer, and
 * ws/wsframe.h's receiver cuts frames out of it, unmasking in place. What
 * is sent is one malloc'd frame per write (header and payload together,
 * masked for a client), queued like TLS ciphertext (CS_COOKIE_MEM), so a
 * frame is never split by another writer's bytes.
 *
 * Rules (the original product's, with the departures docs/API.md lists):
 *  - Pings are answered while reading, as the original product does; a
 *    socket nobody reads does not answer them.
 *  - A close from the peer, or a violation we detect, sends our Close
 *    (1000, or the violation's code) and ends reading: every later read
 *    returns nil, "socketclosed", code. The OS socket stays open until
 *    close() or the end of the cosocket.
 *  - A read waits for a frame of up to 64 KiB to arrive whole and
 *    returns it in one piece, so with the default limit (0xFFFF) a script
 *    always gets whole frames; larger frames (a raised limit) and
 *    fragmented messages come in the fragment form as they arrive. At
 *    most the frame limit (capped at 64 KiB) plus 64 KiB is read ahead,
 *    so a client cannot make us buffer more.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"
#include "wsframe.h"

#define WS_READ_AHEAD 65536u  /* read ahead at most this much beyond a frame */
#define WS_WHOLE_FRAME 65536u /* frames up to this size are returned whole */

struct cs_sock_ws {
	struct cs_ws_rx rx;
	bool server;
	bool close_sent;
	bool ended;            /* a close arrived or a violation was found */
	uint16_t end_code;
	uint8_t *buf;          /* received, not yet parsed: buf[off..len) */
	size_t off, len, cap;
	ssize_t eof;           /* 1: still open; 0: end of stream; < 0: -errno */
	const char *err, *why; /* TLS: what ended the stream */
};

/* ---- random masks --------------------------------------------------- */

static void mask_key(uint8_t key[4])
{
	static __thread uint8_t pool[256];
	static __thread size_t left;
	if (left < 4) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
			/* never short for 256 bytes once the pool is seeded */
			for (size_t i = 0; i < sizeof(pool); i++)
				pool[i] = (uint8_t)rand();
		}
		left = sizeof(pool);
	}
	left -= 4;
	memcpy(key, pool + left, 4);
}

/* ---- sending -------------------------------------------------------- */

uint8_t *cs__ws_frame(cs_sock *s, uint8_t opcode, const void *data, size_t len, size_t *frame_len)
{
	uint8_t hdr[CS_WS_MAX_HEADER], key[4];
	bool client = !s->ws->server;
	if (client)
		mask_key(key);
	size_t h = cs_ws_header(hdr, opcode, true, len, client ? key : NULL);
	uint8_t *f = malloc(h + len + 1);
	if (!f)
		return NULL;
	memcpy(f, hdr, h);
	if (len)
		memcpy(f + h, data, len);
	if (client)
		cs_ws_mask(f + h, len, key, 0);
	*frame_len = h + len;
	return f;
}

static int send_control(cs_sock *s, uint8_t opcode, const void *data, size_t len)
{
	size_t flen;
	uint8_t *f = cs__ws_frame(s, opcode, data, len, &flen);
	return f ? cs__sock_send_owned(s, f, flen) : -ENOMEM;
}

static void send_close(cs_sock *s, uint16_t code)
{
	struct cs_sock_ws *x = s->ws;
	if (x->close_sent || !s->conn)
		return;
	x->close_sent = true;
	uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
	send_control(s, CS_WS_OP_CLOSE, payload, 2);
}

void cs__ws_closing(cs_sock *s, bool graceful)
{
	if (s->ws && graceful)
		send_close(s, CS_WS_CLOSE_NORMAL);
}

/* ---- receiving ------------------------------------------------------ */

/* Append n received bytes. false: out of memory. */
static bool append(struct cs_sock_ws *x, const char *data, size_t n)
{
	if (x->off == x->len)
		x->off = x->len = 0;
	if (x->len + n > x->cap) {
		if (x->off) {
			memmove(x->buf, x->buf + x->off, x->len - x->off);
			x->len -= x->off;
			x->off = 0;
		}
		if (x->len + n > x->cap) {
			size_t cap = x->cap ? x->cap : 4096;
			while (cap < x->len + n)
				cap *= 2;
			uint8_t *b = realloc(x->buf, cap);
			if (!b)
				return false;
			x->buf = b;
			x->cap = cap;
		}
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	return true;
}

/* Bring in what already arrived, up to the read-ahead bound. Returns 1
 * when something came, 0 when nothing is there yet (a receive is armed
 * when nothing at all is buffered), or -1 when the stream ended (x->eof). */
static int take_input(cs_sock *s)
{
	struct cs_sock_ws *x = s->ws;
	int got = 0;
	uint64_t bound = (x->rx.max_frame < WS_READ_AHEAD ? x->rx.max_frame : WS_READ_AHEAD) + WS_READ_AHEAD;
	while (x->eof > 0 && x->len - x->off < bound) {
		const char *data;
		ssize_t n;
		if (s->tls)
			n = cs__tls_pull(s, &data, &x->err, &x->why);
		else
			n = cs_conn_recv(s->conn, &data);
		if (n == -EAGAIN)
			break;
		if (n <= 0) {
			x->eof = n;
			break;
		}
		if (!append(x, data, (size_t)n)) {
			x->eof = -ENOMEM;
			x->err = "malloc";
			break;
		}
		got = 1;
	}
	if (got)
		return 1;
	return x->eof > 0 ? 0 : -1;
}

static int push_end(lua_State *L, struct cs_sock_ws *x)
{
	lua_pushnil(L);
	lua_pushliteral(L, "socketclosed");
	lua_pushinteger(L, x->end_code);
	return 3;
}

static int end_reading(lua_State *L, cs_sock *s, uint16_t send_code, uint16_t report_code)
{
	struct cs_sock_ws *x = s->ws;
	x->ended = true;
	x->end_code = report_code;
	send_close(s, send_code);
	return push_end(L, x);
}

/* Push the read results for one DATA event; 0 to skip an empty piece. */
static int push_data(lua_State *L, const struct cs_ws_event *ev)
{
	bool whole = ev->frame_start && ev->frame_end && ev->fin && ev->message_done == ev->len;
	if (ev->len == 0 && !whole && !(ev->frame_end && ev->fin))
		return 0;
	lua_pushlstring(L, (const char *)ev->data, ev->len);
	lua_pushboolean(L, ev->text);
	if (whole)
		return 2;
	/* The fragment form. frameLen equals bytesRead exactly when the
	 * message is complete; before that it is larger (by one when more
	 * frames follow, their size not yet known). */
	uint64_t left = ev->frame_len - ev->frame_done;
	lua_pushinteger(L, (lua_Integer)ev->message_done);
	lua_pushinteger(L, (lua_Integer)(ev->message_done + left + (ev->fin ? 0 : 1)));
	return 4;
}

/* The size of the frame starting at p (header included), 0 while its
 * header is incomplete. */
static uint64_t frame_size(const uint8_t *p, size_t n)
{
	if (n < 2)
		return 0;
	uint64_t len = p[1] & 0x7f;
	size_t h = 2 + ((p[1] & 0x80) ? 4 : 0);
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h += 2;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		len = 0;
		for (int i = 2; i < 10; i++)
			len = len << 8 | p[i];
		h += 8;
	}
	return h + len;
}

/* The next frame has not all arrived, and is small enough to wait for
 * whole (WS_WHOLE_FRAME): a read then returns it in one piece. */
static bool frame_incomplete(const struct cs_sock_ws *x)
{
	if (x->rx.in_frame || x->rx.hdr_len || x->eof <= 0)
		return false;
	size_t avail = x->len - x->off;
	uint64_t need = frame_size(x->buf + x->off, avail);
	return need == 0 || (need > avail && need <= WS_WHOLE_FRAME + CS_WS_MAX_HEADER);
}

int cs__ws_fill(lua_State *L, cs_sock *s)
{
	struct cs_sock_ws *x = s->ws;
	if (x->ended)
		return push_end(L, x);
	for (;;) {
		while (frame_incomplete(x)) {
			int r = take_input(s);
			if (r == 0)
				return 0;
			if (r < 0)
				break; /* parse what is left, then report the end */
		}
		while (x->off < x->len) {
			struct cs_ws_event ev;
			x->off += cs_ws_rx_feed(&x->rx, x->buf + x->off, x->len - x->off, &ev);
			int n;
			switch (ev.type) {
			case CS_WS_EV_DATA:
				if ((n = push_data(L, &ev)))
					return n;
				break;
			case CS_WS_EV_PING:
				/* a peer that pings without reading gets no pong
				 * once our queue is full (RFC 6455 lets us skip
				 * all but the latest) */
				if (cs_conn_queued(s->conn) + cs__tls_pending(s) < s->queue_limit)
					send_control(s, CS_WS_OP_PONG, ev.data, ev.len);
				break;
			case CS_WS_EV_CLOSE:
				return end_reading(L, s, CS_WS_CLOSE_NORMAL,
						   ev.code == CS_WS_CLOSE_NO_STATUS ? CS_WS_CLOSE_NORMAL : ev.code);
			case CS_WS_EV_ERROR:
				cs__log(s->vm, CS_LOG_INFO, "websocket: closing with %u (peer broke the protocol)",
					(unsigned)ev.code);
				return end_reading(L, s, ev.code, ev.code);
			default: /* NONE, PONG */
				break;
			}
		}
		int r = take_input(s);
		if (r == 0)
			return 0;
		if (r < 0) {
			if (x->err)
				return cs__read_failed(L, s, x->eof == 0, x->err, x->why);
			return cs__read_failed(L, s, x->eof == 0, "socketreadfailed",
					       x->eof == 0 ? "eof" : NULL);
		}
	}
}

void cs__ws_received(cs_sock *s, const char *data, ssize_t n)
{
	struct cs_sock_ws *x = s->ws;
	if (n > 0) {
		if (!append(x, data, (size_t)n)) {
			x->eof = -ENOMEM;
			x->err = "malloc";
		}
	} else if (x->eof > 0) {
		x->eof = n;
	}
	if (s->wait == CS_WAIT_READ)
		cs__wake_reader(s, cs__read_now);
}

/* ---- attaching ------------------------------------------------------- */

int cs__ws_attach(cs_sock *s, bool server, const char *pending, size_t len, uint64_t max_frame)
{
	struct cs_sock_ws *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	cs_ws_rx_init(&x->rx, server, max_frame ? max_frame : CS_WS_DEFAULT_MAX_FRAME);
	x->server = server;
	x->eof = 1;
	if (len && !append(x, pending, len)) {
		free(x);
		return -ENOMEM;
	}
	s->ws = x;
	return 0;
}

void cs__ws_free(cs_sock *s)
{
	if (s->ws) {
		free(s->ws->buf);
		free(s->ws);
		s->ws = NULL;
	}
}

/* ---- methods ---------------------------------------------------------- */

uint64_t cs__ws_max_frame(const cs_sock *s) { return s->ws->rx.max_frame; }

bool cs__ws_close_sent(const cs_sock *s) { return s->ws->close_sent; }

/* sock:ping([payload = "BAS"]) */
static int m_ping(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	if (!s->ws)
		return luaL_error(L, "Not WS");
	size_t len;
	const char *p = luaL_optlstring(L, 2, "BAS", &len);
	luaL_argcheck(L, len <= CS_WS_MAX_CONTROL, 2, "a ping carries at most 125 bytes");
	if (!s->conn || s->ws->close_sent)
		return cs__fail(L, "socketclosed");
	if (send_control(s, CS_WS_OP_PING, p, len) < 0)
		return cs__fail(L, "socketwritefailed");
	lua_pushboolean(L, 1);
	return 1;
}

/* sock:maxframe([n]) -> the previous limit on received frame payloads */
static int m_maxframe(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	if (!s->ws)
		return luaL_error(L, "Not WS");
	lua_Integer old = (lua_Integer)s->ws->rx.max_frame;
	if (!lua_isnoneornil(L, 2)) {
		lua_Integer n = luaL_checkinteger(L, 2);
		luaL_argcheck(L, n >= 125 && n <= ((lua_Integer)1 << 40), 2,
			      "frame limit out of range (125 .. 2^40)");
		s->ws->rx.max_frame = (uint64_t)n;
	}
	lua_pushinteger(L, old);
	return 1;
}

static int m_websocket(lua_State *L)
{
	lua_pushboolean(L, cs__check_sock(L, 1)->ws != NULL);
	return 1;
}

void cs__ws_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"ping", m_ping}, {"maxframe", m_maxframe}, {"websocket", m_websocket}, {NULL, NULL},
	};
	cs__setfuncs_on_loop(L, methods);
}
