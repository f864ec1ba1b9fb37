/*
 * cmd_ws.c - "cosockd-bench ws": WebSocket echo round trips (RFC 6455).
 *
 * Every connection first upgrades: a GET with a random Sec-WebSocket-Key,
 * and a 101 whose Sec-WebSocket-Accept must be the key's SHA-1 answer.
 * Then it sends messages of --size bytes, each one frame (binary, or text
 * with --text), masked with a fresh mask per frame as the RFC has clients
 * do, and checks every echo byte for byte: the same kind, the same
 * length, the same bytes. The echo may come as one frame or as a
 * fragmented message (FIN=0 and continuations) and in any pieces the
 * socket gives; a server's ping is answered with a pong between frames.
 * Up to --pipeline messages may be in flight per connection: closed loop
 * keeps that many going; with --rate the loop is open and messages leave
 * on the schedule of pace.h. A message's latency runs from its start (its
 * intended start in open loop) to the last byte of its echo.
 *
 * A frame is not kept in memory masked: the bytes still to send are masked
 * into the worker's scratch buffer as they go out (again, after a partial
 * send), so a connection holds no buffer of its own. The masks come from a
 * per-connection xorshift generator seeded from getrandom(): fresh for
 * every frame, without a system call per message on the load side.
 *
 * Once the window is over, every connection that is up sends a Close
 * (1000) after the frame it is writing and waits, up to CLOSE_WAIT_NS for
 * all of them, for the server's Close; nothing in that phase is counted.
 *
 * The connections, threads, clock and report are load.c's; wss:// speaks
 * TLS through it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>

#include "http.h"
#include "load.h"
#include "wsproto.h"

#define HEAD_MAX 1024
#define CLOSE_WAIT_NS (1000 * 1000 * 1000ull)
#define DEFAULT_SIZE 64

struct ws_ctx {
	const char *url;
	const char *host; /* "A.B.C.D:PORT", for Host: */
	const char *path;
	uint64_t size;
	int text;
	const unsigned char *msg; /* the message, size bytes */
};

enum ws_state {
	WS_NEW,     /* connected; the upgrade is not sent yet */
	WS_UPGRADE, /* the upgrade request is going out, then its response in */
	WS_OPEN,
	WS_DONE,    /* finish(): closed in good order, or given up on */
};

enum ws_out {
	OUT_NONE,
	OUT_DATA,
	OUT_PONG,
	OUT_CLOSE,
};

struct ws_conn {
	struct cs__conn base;
	enum ws_state state;
	int blocked;      /* send said EAGAIN; wait for EPOLLOUT */
	uint64_t rng;     /* the mask generator */
	char key[25];     /* Sec-WebSocket-Key */
	size_t req_wpos;  /* upgrade request bytes written */
	int req_sent;
	size_t hlen;      /* response head bytes read */
	/* the frame being written */
	enum ws_out out;
	unsigned char ohead[CS__WS_HEAD_MAX];
	size_t ohlen;
	unsigned char omask[4];
	uint64_t olen, wpos; /* payload bytes; head + payload bytes written */
	/* a pong owed: its payload waits in pong_q, goes out from pong_tx */
	int pong_due;
	size_t pong_q_len, pong_tx_len;
	unsigned char pong_q[CS__WS_CONTROL_MAX], pong_tx[CS__WS_CONTROL_MAX];
	/* finish() */
	int closing, close_sent;
	/* the frame being read */
	struct cs__ws_reader rd;
	struct cs__ws_frame f;
	int in_frame;
	int msg_open;     /* an echo has begun and its last frame not ended */
	uint64_t left, off; /* payload bytes to come, and read so far */
	uint64_t rpos;    /* bytes of the current echo checked */
	unsigned char ctl[CS__WS_CONTROL_MAX];
	char head[HEAD_MAX];
};

static const unsigned char close_1000[2] = {0x03, 0xe8};

static uint32_t next_mask(struct ws_conn *e)
{
	/* xorshift64* (Vigna); the state is never 0 */
	e->rng ^= e->rng >> 12;
	e->rng ^= e->rng << 25;
	e->rng ^= e->rng >> 27;
	return (uint32_t)((e->rng * 0x2545F4914F6CDD1Dull) >> 32);
}

static int gone(const struct ws_conn *e)
{
	return e->base.fd < 0 || e->state == WS_DONE;
}

/* The connection failed: counted and closed while the run lasts; in
 * finish() only given up on. */
static void ws_fail(struct cs__worker *w, struct ws_conn *e, enum cs__err kind, const char *why)
{
	if (e->closing)
		e->state = WS_DONE;
	else
		cs__conn_fail(w, &e->base, kind, why);
}

static void ws_fail_errno(struct cs__worker *w, struct ws_conn *e, int err)
{
	if (e->closing)
		e->state = WS_DONE;
	else
		cs__conn_fail_errno(w, &e->base, err);
}

/* ---- writing ---- */

/* Build the upgrade request into buf (the worker's scratch); its length. */
static size_t upgrade_request(const struct ws_ctx *x, const struct ws_conn *e, char *buf,
			      size_t len)
{
	int n = snprintf(buf, len,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\nUser-Agent: cosockd-bench\r\n\r\n",
			 x->path, x->host, e->key);
	return n < 0 ? 0 : (size_t)n;
}

/* Write the rest of the upgrade request. 1: all out, 0: blocked, -1: failed. */
static int send_upgrade(struct cs__worker *w, struct ws_conn *e)
{
	char *buf = (char *)w->scratch;
	size_t len = upgrade_request(w->cfg->ctx, e, buf, w->cfg->scratch);

	while (e->req_wpos < len) {
		ssize_t n = cs__conn_send(&e->base, buf + e->req_wpos, len - e->req_wpos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				e->blocked = 1;
				return 0;
			}
			ws_fail_errno(w, e, errno);
			return -1;
		}
		e->req_wpos += (size_t)n;
	}
	e->req_sent = 1;
	return 1;
}

static void frame_start(struct ws_conn *e, enum ws_out kind, int opcode, uint64_t len)
{
	uint32_t m = next_mask(e);

	memcpy(e->omask, &m, 4);
	e->out = kind;
	e->olen = len;
	e->wpos = 0;
	e->ohlen = cs__ws_head(e->ohead, 1, opcode, len, e->omask);
}

/* Write the rest of the current frame, masking its payload into the
 * scratch buffer as it goes. 1: all out, 0: blocked, -1: failed. */
static int frame_send(struct cs__worker *w, struct ws_conn *e)
{
	const struct ws_ctx *x = w->cfg->ctx;
	const unsigned char *payload = e->out == OUT_DATA ? x->msg
				       : e->out == OUT_PONG ? e->pong_tx : close_1000;
	uint64_t total = e->ohlen + e->olen;
	unsigned char *buf = w->scratch;

	while (e->wpos < total) {
		size_t n = 0;
		uint64_t p = e->wpos;
		if (p < e->ohlen) {
			n = e->ohlen - (size_t)p;
			memcpy(buf, e->ohead + p, n);
			p = e->ohlen;
		}
		size_t k = w->cfg->scratch - n;
		if (k > total - p)
			k = (size_t)(total - p);
		cs__ws_mask(buf + n, payload + (p - e->ohlen), k, e->omask, p - e->ohlen);
		n += k;
		ssize_t sent = cs__conn_send(&e->base, buf, n);
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				e->blocked = 1;
				return 0;
			}
			ws_fail_errno(w, e, errno);
			return -1;
		}
		e->wpos += (uint64_t)sent;
	}
	return 1;
}

/* Write what is due: the frame under way, then an owed pong, then (in
 * finish()) the Close, or else every message the pacing allows now. */
static void ws_send(struct cs__worker *w, struct ws_conn *e, uint64_t now)
{
	const struct ws_ctx *x = w->cfg->ctx;

	while (!e->blocked && !gone(e)) {
		if (e->out == OUT_NONE) {
			if (e->close_sent) {
				return; /* nothing may follow a Close */
			} else if (e->pong_due) {
				memcpy(e->pong_tx, e->pong_q, e->pong_q_len);
				e->pong_tx_len = e->pong_q_len;
				e->pong_due = 0;
				frame_start(e, OUT_PONG, CS__WS_PONG, e->pong_tx_len);
			} else if (e->closing) {
				frame_start(e, OUT_CLOSE, CS__WS_CLOSE, sizeof(close_1000));
			} else if (cs__pace_take(&w->pace, &e->base.flight, now)) {
				frame_start(e, OUT_DATA, x->text ? CS__WS_TEXT : CS__WS_BINARY, x->size);
			} else {
				return;
			}
		}
		if (frame_send(w, e) <= 0)
			return;
		if (e->out == OUT_CLOSE)
			e->close_sent = 1;
		e->out = OUT_NONE;
		now = cs__now_ns();
	}
}

/* ---- reading ---- */

/* A control frame's payload is in e->ctl. Returns 0, or -1 when the
 * connection is done with (failed, or closed in good order). */
static int control_frame(struct cs__worker *w, struct ws_conn *e)
{
	size_t len = (size_t)e->f.len;
	char why[64];

	switch (e->f.opcode) {
	case CS__WS_PING:
		memcpy(e->pong_q, e->ctl, len);
		e->pong_q_len = len;
		e->pong_due = 1; /* only the latest ping needs its pong */
		return 0;
	case CS__WS_CLOSE:
		if (e->closing) {
			e->state = WS_DONE;
			return -1;
		}
		snprintf(why, sizeof(why), "the server sent Close %u",
			 len >= 2 ? (unsigned)e->ctl[0] << 8 | e->ctl[1] : 1005u);
		ws_fail(w, e, CS__ERR_EOF, why);
		return -1;
	default: /* an unsolicited pong */
		return 0;
	}
}

/* A head has been read: check it against what an echo may be. Returns 0,
 * or -1 when the connection failed. */
static int frame_begin(struct cs__worker *w, struct ws_conn *e)
{
	const struct ws_ctx *x = w->cfg->ctx;
	const struct cs__ws_frame *f = &e->f;
	const char *why = cs__ws_check(f, 0);

	if (why) {
		ws_fail(w, e, CS__ERR_BAD, why);
		return -1;
	}
	e->in_frame = 1;
	e->left = f->len;
	e->off = 0;
	if (f->opcode >= CS__WS_CLOSE)
		return 0;
	if ((f->opcode == CS__WS_CONT) != e->msg_open) {
		ws_fail(w, e, CS__ERR_BAD, e->msg_open ? "a new message inside a fragmented one"
						       : "a continuation frame with no message");
		return -1;
	}
	if (!e->msg_open) {
		if (!e->base.flight.count) {
			ws_fail(w, e, CS__ERR_MISMATCH, "a message with none outstanding");
			return -1;
		}
		if (f->opcode != (x->text ? CS__WS_TEXT : CS__WS_BINARY)) {
			ws_fail(w, e, CS__ERR_MISMATCH,
				x->text ? "a binary echo of a text message" : "a text echo of a binary message");
			return -1;
		}
		e->msg_open = 1;
		e->rpos = 0;
	}
	if (f->len > x->size - e->rpos) {
		ws_fail(w, e, CS__ERR_MISMATCH, "an echo longer than the message");
		return -1;
	}
	return 0;
}

/* The frame being read has all its payload. Returns 0, or -1 when the
 * connection is done with. */
static int frame_end(struct cs__worker *w, struct ws_conn *e)
{
	const struct ws_ctx *x = w->cfg->ctx;

	e->in_frame = 0;
	if (e->f.opcode >= CS__WS_CLOSE)
		return control_frame(w, e);
	if (!e->f.fin)
		return 0;
	e->msg_open = 0;
	if (e->rpos != x->size) {
		ws_fail(w, e, CS__ERR_MISMATCH, "an echo shorter than the message");
		return -1;
	}
	uint64_t t0 = cs__flight_done(&e->base.flight);
	cs__worker_answered(w, cs__now_ns(), t0, x->size);
	return 0;
}

/* Take n bytes of frames. Returns 0, or -1 when the connection is done
 * with. */
static int ws_frames(struct cs__worker *w, struct ws_conn *e, const unsigned char *p, size_t n)
{
	const struct ws_ctx *x = w->cfg->ctx;
	size_t i = 0;

	while (i < n || (e->in_frame && !e->left)) {
		if (!e->in_frame) {
			int done;
			long k = cs__ws_read_head(&e->rd, p + i, n - i, &e->f, &done);
			if (k < 0) {
				ws_fail(w, e, CS__ERR_BAD, "a frame length over 2^63");
				return -1;
			}
			i += (size_t)k;
			if (!done)
				return 0;
			if (frame_begin(w, e) < 0)
				return -1;
			continue;
		}
		size_t k = n - i < e->left ? n - i : (size_t)e->left;
		if (e->f.opcode >= CS__WS_CLOSE) {
			memcpy(e->ctl + e->off, p + i, k);
		} else if (memcmp(p + i, x->msg + e->rpos, k) != 0) {
			ws_fail(w, e, CS__ERR_MISMATCH, "echo differs from what was sent");
			return -1;
		} else {
			e->rpos += k;
		}
		i += k;
		e->off += k;
		e->left -= k;
		if (!e->left && frame_end(w, e) < 0)
			return -1;
	}
	return 0;
}

/* The upgrade's response head is complete (end bytes of hlen read): check
 * it, then take what came after it as frames. Returns 0, or -1 when the
 * connection failed. */
static int upgrade_done(struct cs__worker *w, struct ws_conn *e, size_t end)
{
	char want[CS__WS_ACCEPT_LEN + 1], why[64];
	const char *v;
	size_t vlen;

	if (end < 12 || memcmp(e->head, "HTTP/1.1 ", 9) != 0) {
		ws_fail(w, e, CS__ERR_BAD, "bad status line");
		return -1;
	}
	if (memcmp(e->head + 9, "101", 3) != 0) {
		snprintf(why, sizeof(why), "status %.3s to the upgrade", e->head + 9);
		ws_fail(w, e, CS__ERR_STATUS, why);
		return -1;
	}
	v = cs__http_header(e->head, end, "Upgrade", &vlen);
	if (!v || !cs__http_has_token(v, vlen, "websocket")) {
		ws_fail(w, e, CS__ERR_BAD, "101 without Upgrade: websocket");
		return -1;
	}
	v = cs__http_header(e->head, end, "Connection", &vlen);
	if (!v || !cs__http_has_token(v, vlen, "upgrade")) {
		ws_fail(w, e, CS__ERR_BAD, "101 without Connection: Upgrade");
		return -1;
	}
	v = cs__http_header(e->head, end, "Sec-WebSocket-Accept", &vlen);
	if (cs__ws_accept(e->key, strlen(e->key), want) < 0) {
		ws_fail(w, e, CS__ERR_OTHER, "SHA-1 failed");
		return -1;
	}
	if (!v || vlen != CS__WS_ACCEPT_LEN || memcmp(v, want, vlen) != 0) {
		ws_fail(w, e, CS__ERR_BAD, v ? "wrong Sec-WebSocket-Accept" : "no Sec-WebSocket-Accept");
		return -1;
	}
	if (cs__http_header(e->head, end, "Sec-WebSocket-Extensions", &vlen)) {
		ws_fail(w, e, CS__ERR_UNSUPPORTED, "an extension none was offered");
		return -1;
	}
	e->state = WS_OPEN;
	return ws_frames(w, e, (const unsigned char *)e->head + end, e->hlen - end);
}

/* Read until the socket is empty. Returns 0, or -1 when the connection is
 * done with. */
static int ws_recv(struct cs__worker *w, struct ws_conn *e)
{
	for (;;) {
		unsigned char *buf = w->scratch;
		size_t want = w->cfg->scratch;

		if (e->state == WS_UPGRADE) {
			buf = (unsigned char *)e->head + e->hlen;
			want = HEAD_MAX - e->hlen;
		}
		ssize_t n = cs__conn_recv(&e->base, buf, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			ws_fail_errno(w, e, errno);
			return -1;
		}
		if (n == 0) {
			ws_fail(w, e, CS__ERR_EOF, "connection closed by server");
			return -1;
		}
		if (e->state == WS_OPEN) {
			if (ws_frames(w, e, buf, (size_t)n) < 0)
				return -1;
			continue;
		}
		if (e->state != WS_UPGRADE || !e->req_sent) {
			ws_fail(w, e, CS__ERR_BAD, "bytes before the upgrade request");
			return -1;
		}
		size_t from = e->hlen > 3 ? e->hlen - 3 : 0; /* a CRLFCRLF may straddle */
		e->hlen += (size_t)n;
		size_t end = cs__http_head_end(e->head + from, e->hlen - from);
		if (!end) {
			if (e->hlen == HEAD_MAX) {
				ws_fail(w, e, CS__ERR_BAD, "upgrade response head too large");
				return -1;
			}
			continue;
		}
		if (upgrade_done(w, e, from + end) < 0)
			return -1;
	}
}

/* ---- the scenario ---- */

/* Start the upgrade: a fresh key and mask generator. */
static void upgrade_start(struct cs__worker *w, struct ws_conn *e)
{
	unsigned char rnd[24];
	size_t got = 0;

	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0 && errno != EINTR)
			cs__fail("getrandom: %s", strerror(errno));
		if (n > 0)
			got += (size_t)n;
	}
	cs__ws_base64(rnd, 16, e->key);
	memcpy(&e->rng, rnd + 16, 8);
	e->rng |= 1;
	e->state = WS_UPGRADE;
	send_upgrade(w, e);
}

static void ws_offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	struct ws_conn *e = (struct ws_conn *)c;

	if (e->state == WS_NEW)
		upgrade_start(w, e);
	else if (e->state == WS_OPEN)
		ws_send(w, e, now);
}

static void ws_event(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	struct ws_conn *e = (struct ws_conn *)c;

	if (gone(e))
		return;
	if (events & EPOLLOUT)
		e->blocked = 0;
	if (e->state == WS_UPGRADE && !e->req_sent && send_upgrade(w, e) < 0)
		return;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && ws_recv(w, e) < 0)
		return;
	/* Pongs owed and room to write: send even if the pace says no. */
	if (e->state == WS_OPEN)
		ws_send(w, e, cs__now_ns());
}

static struct ws_conn *conn_at(struct cs__worker *w, size_t i)
{
	return (struct ws_conn *)(w->conns + i * w->cfg->sc->conn_size);
}

/* The window is over: Close every open connection and wait (bounded) for
 * the servers' Closes. */
static void ws_finish(struct cs__worker *w)
{
	struct epoll_event events[64];
	uint64_t deadline = cs__now_ns() + CLOSE_WAIT_NS;

	for (size_t i = 0; i < w->nconns; i++) {
		struct ws_conn *e = conn_at(w, i);
		e->closing = 1;
		if (gone(e) || e->base.connecting || e->state != WS_OPEN)
			e->state = WS_DONE;
		else
			ws_send(w, e, cs__now_ns());
	}
	for (;;) {
		uint64_t now = cs__now_ns();
		size_t open = 0;
		for (size_t i = 0; i < w->nconns; i++)
			open += !gone(conn_at(w, i));
		if (!open || now >= deadline)
			return;
		uint64_t left = deadline - now;
		struct timespec ts = {.tv_sec = (time_t)(left / CS__NS_PER_SEC),
				      .tv_nsec = (long)(left % CS__NS_PER_SEC)};
		int n = epoll_pwait2(w->epfd, events, 64, &ts, NULL);
		if (n < 0 && errno != EINTR)
			return;
		for (int i = 0; i < n; i++)
			ws_event(w, events[i].data.ptr, events[i].events);
	}
}

static void ws_describe(FILE *f, const struct cs__load_cfg *cfg)
{
	const struct ws_ctx *x = cfg->ctx;

	fprintf(f, "%llu conns, %llu B %s messages, pipeline %u", (unsigned long long)cfg->conns,
		(unsigned long long)x->size, x->text ? "text" : "binary", cfg->depth);
}

static void ws_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	const struct ws_ctx *x = cfg->ctx;

	cs__json_str(j, "path", x->path);
	cs__json_u64(j, "size", x->size);
	cs__json_str(j, "opcode", x->text ? "text" : "binary");
	cs__json_u64(j, "pipeline", cfg->depth);
	/* every echo is compared with its message, byte for byte */
	cs__json_str(j, "verify", "bytes");
}

static const struct cs__scenario ws_scenario = {
	.conn_size = sizeof(struct ws_conn),
	.latency = 1,
	.offer = ws_offer,
	.event = ws_event,
	.describe = ws_describe,
	.params = ws_params,
	.finish = ws_finish,
};

static const char usage[] =
	"usage: cosockd-bench ws --url ws://A.B.C.D:PORT[/PATH] --conns N [--size BYTES (64)]\n"
	"  [--text] [--pipeline D (1)] [--rate MESSAGES_PER_S] [--tls-ca FILE (wss://)]\n"
	CS__LOAD_USAGE
	"Each connection upgrades (RFC 6455), then sends masked frames of --size bytes\n"
	"and checks every echo byte for byte. --connections = --conns, --server-pid = --pid.\n";

enum { OPT_URL = CS__OPT_SCENARIO, OPT_SIZE, OPT_TEXT, OPT_PIPELINE };

/* Split ws://HOST:PORT/PATH (or wss://) into cfg and x. */
static void parse_url(struct cs__load_cfg *cfg, struct ws_ctx *x, const char *url)
{
	const char *rest;
	static char host[64];

	if (!strncmp(url, "ws://", 5)) {
		rest = url + 5;
	} else if (!strncmp(url, "wss://", 6)) {
		rest = url + 6;
		cfg->tls = 1;
	} else {
		cs__fail_usage("--url: want ws://A.B.C.D:PORT/PATH or wss://..., got '%s'", url);
	}
	const char *slash = strchr(rest, '/');
	size_t hlen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (hlen == 0 || hlen >= sizeof(host))
		cs__fail_usage("--url: want ws://A.B.C.D:PORT/PATH, got '%s'", url);
	memcpy(host, rest, hlen);
	host[hlen] = '\0';
	cs__parse_target("--url", host, &cfg->target);
	x->host = host;
	x->path = slash ? slash : "/";
	if (strpbrk(x->path, " \r\n#") || strlen(x->path) > 2048)
		cs__fail_usage("--url: the path must have no blanks or '#', got '%s'", x->path);
	x->url = url;
	cfg->target_str = url;
}

int cs__cmd_ws(int argc, char **argv)
{
	static const struct option opts[] = {
		CS__LOAD_OPTIONS,
		CS__RATE_OPTION,
		{"tls-ca", required_argument, NULL, CS__OPT_TLS_CA},
		{"conns", required_argument, NULL, CS__OPT_CONNS},
		{"connections", required_argument, NULL, CS__OPT_CONNS},
		{"server-pid", required_argument, NULL, CS__OPT_PID},
		{"url", required_argument, NULL, OPT_URL},
		{"size", required_argument, NULL, OPT_SIZE},
		{"text", no_argument, NULL, OPT_TEXT},
		{"pipeline", required_argument, NULL, OPT_PIPELINE},
		{NULL, 0, NULL, 0},
	};
	struct cs__load_cfg cfg;
	struct ws_ctx x = {.size = DEFAULT_SIZE};
	int o;

	cs__load_defaults(&cfg, "ws", "--conns");
	cfg.depth = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == CS__OPT_TARGET)
			cs__fail_usage("ws: give the server as --url ws://A.B.C.D:PORT/PATH");
		if (cs__load_option(&cfg, o, optarg, usage))
			continue;
		switch (o) {
		case OPT_URL: parse_url(&cfg, &x, optarg); break;
		case OPT_SIZE: x.size = cs__parse_u64("--size", optarg, 1, 1u << 30); break;
		case OPT_TEXT: x.text = 1; break;
		case OPT_PIPELINE:
			cfg.depth = (uint32_t)cs__parse_u64("--pipeline", optarg, 1, 1024);
			break;
		default: exit(2); /* getopt said why */
		}
	}
	if (!cfg.target_str)
		cs__fail_usage("ws: --url is required (try --help)");
	if (cfg.tls_ca && strncmp(x.url, "wss://", 6) != 0)
		cs__fail_usage("ws: --tls-ca is for a wss:// URL");
	cs__load_check(&cfg, argc, argv);

	unsigned char *msg = malloc(x.size);
	if (!msg)
		cs__fail("out of memory for a %llu B message", (unsigned long long)x.size);
	cs__fill_pattern(msg, x.size); /* printable ASCII: valid UTF-8 for --text */
	x.msg = msg;
	cfg.sc = &ws_scenario;
	cfg.ctx = &x;
	int status = cs__load_run(&cfg, argc, argv);
	free(msg);
	return status;
}
