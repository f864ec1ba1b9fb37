/*
 * serve_ws.c - `cosockd-bench serve ws`: a bare-C WebSocket echo server,
 * the reference the `ws` scenario measures other servers against and a
 * target for testing it that needs nothing but this binary.
 *
 * Any GET with a valid RFC 6455 upgrade (any path) gets its 101; anything
 * else that is a complete head gets a 400 (426 for a version other than
 * 13) and the connection is closed; a head over HS_MAX bytes is closed
 * on. Then every client frame is echoed as it arrives: its head is
 * written back unmasked as soon as it is read, and its payload unmasked
 * a read at a time, so a frame of any size streams through a fixed
 * buffer; fragments stay fragments. Pings are answered with pongs, a Close
 * with a Close carrying the same code, after which the connection is
 * closed. A protocol error (RSV bits, reserved opcodes, unmasked or
 * oversized control frames, continuation out of place) is answered with
 * Close 1002. Text frames are not checked for UTF-8: this is the cheapest
 * correct echo, not a validating endpoint.
 *
 * Memory per connection is bounded: input is read into the upper half of
 * the thread's scratch buffer and the echo built in the lower half; what
 * the socket does not take is kept (at most one read's echo) and the
 * connection is not read again until it is written. An echo is never
 * longer than what it answers, save the one head or control frame that
 * began in an earlier read, hence the slack below.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "serve.h"
#include "wsproto.h"

#define HS_MAX 4096
#define HALF (SERVE_SCRATCH / 2)
#define SLACK 256 /* > a head and a control frame carried over, plus a Close */
#define READ_MAX (HALF - SLACK)

struct ws_conn {
	struct serve_conn base;
	int open;        /* the handshake is done */
	int close_after; /* close once what is pending is written */
	unsigned char *pending; /* unwritten output, NULL when none */
	size_t pend_off, pend_len;
	/* the frame being read */
	struct cs__ws_reader rd;
	struct cs__ws_frame f;
	int in_frame;    /* its head is read; payload to come */
	int in_message;  /* a fragmented data message is open */
	uint64_t left, off; /* payload bytes to come, and read so far */
	unsigned char ctl[CS__WS_CONTROL_MAX];
	/* the handshake */
	size_t hlen;
	char head[HS_MAX];
};

/* Write buf[0, len); keep what the socket does not take. 1: all written,
 * 0: the rest is pending, -1: error. */
static int ws_write(struct ws_conn *w, const unsigned char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(w->base.fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			if (!w->pending && !(w->pending = malloc(HALF)))
				return -1;
			memmove(w->pending, buf + off, len - off);
			w->pend_off = 0;
			w->pend_len = len - off;
			return 0;
		}
		off += (size_t)n;
	}
	return 1;
}

/* Append a Close frame with code (0: none) to out; its length. */
static size_t close_frame(unsigned char *out, unsigned code)
{
	size_t n = cs__ws_head(out, 1, CS__WS_CLOSE, code ? 2 : 0, NULL);

	if (code) {
		out[n++] = (unsigned char)(code >> 8);
		out[n++] = (unsigned char)code;
	}
	return n;
}

/* A control frame's payload (in w->ctl, unmasked) is complete: answer it
 * into out. Returns the bytes written there. */
static size_t control_done(struct ws_conn *w, unsigned char *out)
{
	size_t n = 0, len = (size_t)w->f.len;

	if (w->f.opcode == CS__WS_PING) {
		n = cs__ws_head(out, 1, CS__WS_PONG, len, NULL);
		memcpy(out + n, w->ctl, len);
		n += len;
	} else if (w->f.opcode == CS__WS_CLOSE) {
		n = cs__ws_head(out, 1, CS__WS_CLOSE, len >= 2 ? 2 : 0, NULL);
		if (len >= 2) {
			memcpy(out + n, w->ctl, 2);
			n += 2;
		}
		w->close_after = 1;
	}
	return n;
}

/* A head is complete: check it and start the frame. Returns the bytes of
 * echo written to out, or -1 for a protocol error. */
static long frame_begin(struct ws_conn *w, unsigned char *out)
{
	const struct cs__ws_frame *f = &w->f;

	if (cs__ws_check(f, 1))
		return -1;
	w->in_frame = 1;
	w->left = f->len;
	w->off = 0;
	if (f->opcode >= CS__WS_CLOSE)
		return 0;
	if ((f->opcode == CS__WS_CONT) != w->in_message)
		return -1; /* a continuation with nothing to continue, or the reverse */
	w->in_message = !f->fin;
	return (long)cs__ws_head(out, f->fin, f->opcode, f->len, NULL);
}

/* Echo the frames in in[0, n) into out; returns the echo's length. Stops
 * early (and sets close_after) at a Close or a protocol error. */
static size_t ws_frames(struct ws_conn *w, const unsigned char *in, size_t n, unsigned char *out)
{
	size_t i = 0, o = 0;

	while ((i < n || (w->in_frame && !w->left)) && !w->close_after) {
		if (!w->in_frame) {
			int done;
			long k = cs__ws_read_head(&w->rd, in + i, n - i, &w->f, &done);
			if (k < 0)
				goto protocol_error;
			i += (size_t)k;
			if (!done)
				break;
			long h = frame_begin(w, out + o);
			if (h < 0)
				goto protocol_error;
			o += (size_t)h;
			continue;
		}
		size_t k = n - i < w->left ? n - i : (size_t)w->left;
		if (w->f.opcode >= CS__WS_CLOSE) {
			cs__ws_mask(w->ctl + w->off, in + i, k, w->f.mask, w->off);
		} else {
			cs__ws_mask(out + o, in + i, k, w->f.mask, w->off);
			o += k;
		}
		i += k;
		w->off += k;
		w->left -= k;
		if (w->left)
			break;
		w->in_frame = 0;
		if (w->f.opcode >= CS__WS_CLOSE)
			o += control_done(w, out + o);
	}
	return o;

protocol_error:
	w->close_after = 1;
	return o + close_frame(out + o, 1002);
}

/* Does the comma-separated header name hold token? */
static int header_has(const char *head, size_t hlen, const char *name, const char *token)
{
	size_t vlen;
	const char *v = cs__http_header(head, hlen, name, &vlen);

	return v && cs__http_has_token(v, vlen, token);
}

/* The handshake's head (hlen bytes) is complete: the response into out.
 * Returns its length; sets close_after unless it is a 101. */
static size_t handshake(struct ws_conn *w, size_t hlen, char *out)
{
	static const char bad[] =
		"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	static const char version[] =
		"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
		"Content-Length: 0\r\nConnection: close\r\n\r\n";
	const char *eol = memchr(w->head, '\r', hlen);
	const char *key, *v;
	size_t klen, vlen;
	char accept[CS__WS_ACCEPT_LEN + 1];

	w->close_after = 1;
	if (!eol || eol - w->head < 14 || memcmp(w->head, "GET /", 5) != 0 ||
	    memcmp(eol - 9, " HTTP/1.1", 9) != 0 || !header_has(w->head, hlen, "Upgrade", "websocket") ||
	    !header_has(w->head, hlen, "Connection", "upgrade") ||
	    !(key = cs__http_header(w->head, hlen, "Sec-WebSocket-Key", &klen)) || klen != 24 ||
	    !(v = cs__http_header(w->head, hlen, "Sec-WebSocket-Version", &vlen))) {
		memcpy(out, bad, sizeof(bad) - 1);
		return sizeof(bad) - 1;
	}
	if (vlen != 2 || memcmp(v, "13", 2) != 0) {
		memcpy(out, version, sizeof(version) - 1);
		return sizeof(version) - 1;
	}
	if (cs__ws_accept(key, klen, accept) < 0) {
		memcpy(out, bad, sizeof(bad) - 1);
		return sizeof(bad) - 1;
	}
	w->close_after = 0;
	w->open = 1;
	return (size_t)snprintf(out, HALF,
				"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
				"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				accept);
}

/* Read the handshake. Returns what ws_service() should: 0 to wait for
 * more, -1 to close; 1 when the connection is open and its first frames
 * (bytes after the head) are echoed. */
static int ws_handshake(struct ws_conn *w, unsigned char *scratch)
{
	for (;;) {
		ssize_t n = read(w->base.fd, w->head + w->hlen, HS_MAX - w->hlen);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		size_t from = w->hlen > 3 ? w->hlen - 3 : 0; /* a CRLFCRLF may straddle */
		w->hlen += (size_t)n;
		size_t end = cs__http_head_end(w->head + from, w->hlen - from);
		if (!end) {
			if (w->hlen == HS_MAX)
				return -1; /* a head larger than the buffer */
			continue;
		}
		end += from;
		size_t o = handshake(w, end, (char *)scratch);
		if (w->open && w->hlen > end) {
			/* frames that came with the head: through the upper half */
			memcpy(scratch + HALF, w->head + end, w->hlen - end);
			o += ws_frames(w, scratch + HALF, w->hlen - end, scratch + o);
		}
		int r = ws_write(w, scratch, o);
		if (r < 0 || (r > 0 && w->close_after))
			return -1;
		return r > 0 ? 1 : 0;
	}
}

static int ws_service(struct serve_conn *c, uint32_t events, unsigned char *scratch)
{
	struct ws_conn *w = (struct ws_conn *)c;

	(void)events;
	if (w->pending) {
		int r = ws_write(w, w->pending + w->pend_off, w->pend_len);
		if (r <= 0)
			return r;
		free(w->pending);
		w->pending = NULL;
	}
	if (w->close_after)
		return -1; /* its last words are out */
	if (!w->open) {
		int r = ws_handshake(w, scratch);
		if (r <= 0)
			return r;
	}
	for (;;) {
		ssize_t n = read(c->fd, scratch + HALF, READ_MAX);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		size_t o = ws_frames(w, scratch + HALF, (size_t)n, scratch);
		int r = ws_write(w, scratch, o);
		if (r <= 0)
			return r;
		if (w->close_after)
			return -1;
	}
}

static void ws_fini(struct serve_conn *c)
{
	free(((struct ws_conn *)c)->pending);
}

const struct serve_kind cs__serve_ws = {
	.name = "ws",
	.conn_size = sizeof(struct ws_conn),
	.service = ws_service,
	.fini = ws_fini,
};
