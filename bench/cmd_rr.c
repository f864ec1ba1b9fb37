/*
 * cmd_rr.c - "cosockd-bench rr": HTTP/1.1 request/response through a proxy
 * (or straight at a server).
 *
 * Every connection is kept alive and has one GET in flight at a time; closed
 * loop sends the next as soon as a response is complete, --rate paces the
 * requests as pace.h says. A request's latency runs from the start of its
 * write (its intended start in open loop) to the last byte of its response.
 *
 * Responses are framed by Content-Length or chunked encoding; anything else
 * (no length, another transfer coding, 1xx) is an "unsupported-response".
 * A response that is not 2xx counts as an "http-status" error, and the
 * connection goes on. "Connection: close", or the server closing an idle
 * connection, is honoured by connecting again, without counting an error.
 *
 * A connection's memory is bounded: the head is read into a fixed buffer
 * (a larger head is a "bad-response") and the body through the worker's
 * scratch buffer, never past the response's end when its length is known.
 *
 * --tls speaks HTTPS: each connection shakes hands once, before the clock
 * starts (or when it reconnects), then carries its requests; the skeleton
 * does the handshakes and cs__conn_send()/cs__conn_recv() the records.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "http.h"
#include "load.h"

#define HEAD_MAX 4096

struct rr_ctx {
	const char *path;
	char *req; /* the request, the same every time */
	size_t req_len;
};

enum rr_state {
	RR_IDLE,    /* no request outstanding */
	RR_SENDING, /* writing the request */
	RR_HEAD,    /* reading the response head */
	RR_BODY,    /* reading a Content-Length body */
	RR_CHUNKED, /* reading a chunked body */
};

struct rr_conn {
	struct cs__conn base;
	enum rr_state state;
	int blocked;          /* send said EAGAIN; wait for EPOLLOUT */
	int close_after;      /* the response said "Connection: close" */
	int status;           /* of the response being read */
	size_t wpos;          /* request bytes written */
	size_t hlen;          /* bytes in head */
	uint64_t body_left;   /* RR_BODY */
	uint64_t body;        /* body bytes read */
	struct cs__chunked ck; /* RR_CHUNKED */
	char head[HEAD_MAX];
};

/* Write the rest of the request; then the response is awaited. */
static void rr_send(struct cs__worker *w, struct rr_conn *r)
{
	const struct rr_ctx *x = w->cfg->ctx;

	while (r->wpos < x->req_len) {
		ssize_t n = cs__conn_send(&r->base, x->req + r->wpos, x->req_len - r->wpos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				r->blocked = 1;
			else
				cs__conn_fail_errno(w, &r->base, errno);
			return;
		}
		r->wpos += (size_t)n;
	}
	r->state = RR_HEAD;
	r->hlen = 0;
}

static void rr_offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	struct rr_conn *r = (struct rr_conn *)c;

	if (r->state != RR_IDLE || !cs__pace_take(&w->pace, &c->flight, now))
		return;
	r->state = RR_SENDING;
	r->wpos = 0;
	r->blocked = 0;
	rr_send(w, r);
}

/* The response is complete: count it, then go on (or reconnect). */
static void rr_done(struct cs__worker *w, struct rr_conn *r)
{
	uint64_t now = cs__now_ns();
	uint64_t t0 = cs__flight_done(&r->base.flight);

	if (r->status >= 200 && r->status < 300) {
		cs__worker_answered(w, now, t0, r->body);
	} else {
		char why[48];
		snprintf(why, sizeof(why), "status %d", r->status);
		cs__worker_error(w, CS__ERR_STATUS, why);
	}
	r->state = RR_IDLE;
	if (r->close_after)
		cs__conn_reconnect(w, &r->base);
	else
		rr_offer(w, &r->base, now);
}

/* Take n body bytes. Returns 1 when the response is complete, 0 when more
 * is to come, -1 when the connection failed. */
static int rr_body(struct cs__worker *w, struct rr_conn *r, const char *p, size_t n)
{
	if (r->state == RR_BODY) {
		if (n > r->body_left) {
			cs__conn_fail(w, &r->base, CS__ERR_BAD, "bytes after the response");
			return -1;
		}
		r->body_left -= n;
		r->body += n;
		return r->body_left == 0;
	}
	int done;
	ssize_t k = cs__chunked_feed(&r->ck, p, n, &done);
	if (k < 0 || (size_t)k < n) {
		cs__conn_fail(w, &r->base, CS__ERR_BAD,
			      k < 0 ? "bad chunked framing" : "bytes after the response");
		return -1;
	}
	r->body = r->ck.data;
	return done;
}

/* The status and framing of a complete head of hlen bytes. Returns 0, or
 * -1 when the connection failed. */
static int rr_head(struct cs__worker *w, struct rr_conn *r, size_t hlen)
{
	const char *v;
	size_t vlen;

	if (hlen < 12 || memcmp(r->head, "HTTP/1.", 7) != 0 || r->head[8] != ' ' ||
	    r->head[9] < '1' || r->head[9] > '5' || r->head[10] < '0' || r->head[10] > '9' ||
	    r->head[11] < '0' || r->head[11] > '9') {
		cs__conn_fail(w, &r->base, CS__ERR_BAD, "bad status line");
		return -1;
	}
	r->status = (r->head[9] - '0') * 100 + (r->head[10] - '0') * 10 + (r->head[11] - '0');
	r->body = 0;
	v = cs__http_header(r->head, hlen, "Connection", &vlen);
	r->close_after = v && cs__http_has_token(v, vlen, "close");
	if (r->status < 200) {
		cs__conn_fail(w, &r->base, CS__ERR_UNSUPPORTED, "1xx response");
		return -1;
	}
	if ((v = cs__http_header(r->head, hlen, "Transfer-Encoding", &vlen))) {
		if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0) {
			cs__conn_fail(w, &r->base, CS__ERR_UNSUPPORTED, "transfer coding");
			return -1;
		}
		memset(&r->ck, 0, sizeof(r->ck));
		r->state = RR_CHUNKED;
		return 0;
	}
	v = cs__http_header(r->head, hlen, "Content-Length", &vlen);
	if (r->status == 204 || r->status == 304) {
		r->body_left = 0;
	} else if (!v) {
		cs__conn_fail(w, &r->base, CS__ERR_UNSUPPORTED, "no Content-Length");
		return -1;
	} else if (cs__http_length(v, vlen, &r->body_left) < 0) {
		cs__conn_fail(w, &r->base, CS__ERR_BAD, "bad Content-Length");
		return -1;
	}
	r->state = RR_BODY;
	return 0;
}

/* n more bytes of the head have arrived. Returns 1 when the response is
 * complete, 0 when more is to come, -1 when the connection failed. */
static int rr_head_bytes(struct cs__worker *w, struct rr_conn *r, size_t n)
{
	size_t from = r->hlen > 3 ? r->hlen - 3 : 0; /* a CRLFCRLF may straddle */
	size_t end;

	r->hlen += n;
	end = cs__http_head_end(r->head + from, r->hlen - from);
	if (!end) {
		if (r->hlen == HEAD_MAX) {
			cs__conn_fail(w, &r->base, CS__ERR_BAD, "response head too large");
			return -1;
		}
		return 0;
	}
	end += from;
	if (rr_head(w, r, end) < 0)
		return -1;
	if (r->state == RR_BODY && !r->body_left && end == r->hlen)
		return 1;
	return rr_body(w, r, r->head + end, r->hlen - end);
}

/* Read until the socket is empty or the response is complete. */
static void rr_recv(struct cs__worker *w, struct rr_conn *r)
{
	for (;;) {
		char *buf = (char *)w->scratch;
		size_t want = w->cfg->scratch;

		if (r->state == RR_HEAD) {
			buf = r->head + r->hlen;
			want = HEAD_MAX - r->hlen;
		} else if (r->state == RR_BODY && r->body_left < want) {
			want = (size_t)r->body_left;
		}
		ssize_t n = cs__conn_recv(&r->base, buf, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				cs__conn_fail_errno(w, &r->base, errno);
			return;
		}
		if (n == 0) {
			if (r->state == RR_IDLE)
				cs__conn_reconnect(w, &r->base); /* closed while idle */
			else
				cs__conn_fail(w, &r->base, CS__ERR_EOF, "closed mid-response");
			return;
		}
		int done;
		if (r->state == RR_IDLE) {
			cs__conn_fail(w, &r->base, CS__ERR_BAD, "bytes with no request outstanding");
			return;
		} else if (r->state == RR_HEAD) {
			done = rr_head_bytes(w, r, (size_t)n);
		} else {
			done = rr_body(w, r, buf, (size_t)n);
		}
		if (done < 0)
			return;
		if (done) {
			/* The next response's bytes will come with an edge of
			 * their own: no read that would only say EAGAIN. */
			rr_done(w, r);
			return;
		}
	}
}

static void rr_event(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	struct rr_conn *r = (struct rr_conn *)c;

	if ((events & EPOLLOUT) && r->blocked) {
		r->blocked = 0;
		rr_send(w, r);
		if (c->fd < 0)
			return;
		events |= EPOLLIN; /* the response may have come meanwhile */
	}
	/* The response is read once the request is all out. */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && r->state != RR_SENDING)
		rr_recv(w, r);
}

static void rr_describe(FILE *f, const struct cs__load_cfg *cfg)
{
	const struct rr_ctx *x = cfg->ctx;

	fprintf(f, "GET %s, %llu conns%s", x->path, (unsigned long long)cfg->conns,
		cfg->tls ? ", TLS" : "");
}

static void rr_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	const struct rr_ctx *x = cfg->ctx;

	cs__json_str(j, "path", x->path);
}

static const struct cs__scenario rr_scenario = {
	.conn_size = sizeof(struct rr_conn),
	.latency = 1,
	.offer = rr_offer,
	.event = rr_event,
	.describe = rr_describe,
	.params = rr_params,
};

static const char usage[] =
	"usage: cosockd-bench rr --target A.B.C.D:PORT --conns N [--path /]\n"
	"  [--rate REQUESTS_PER_S]\n" CS__TLS_USAGE CS__LOAD_USAGE;

enum { OPT_PATH = CS__OPT_SCENARIO };

int cs__cmd_rr(int argc, char **argv)
{
	static const struct option opts[] = {
		CS__LOAD_OPTIONS,
		CS__RATE_OPTION,
		CS__TLS_OPTIONS,
		{"conns", required_argument, NULL, CS__OPT_CONNS},
		{"path", required_argument, NULL, OPT_PATH},
		{NULL, 0, NULL, 0},
	};
	struct cs__load_cfg cfg;
	struct rr_ctx x = {.path = "/"};
	int o;

	cs__load_defaults(&cfg, "rr", "--conns");
	cfg.depth = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cs__load_option(&cfg, o, optarg, usage))
			continue;
		if (o != OPT_PATH)
			exit(2); /* getopt said why */
		if (optarg[0] != '/' || strpbrk(optarg, " \r\n") || strlen(optarg) > 2048)
			cs__fail_usage("--path: want /PATH with no blanks, got '%s'", optarg);
		x.path = optarg;
	}
	cs__load_check(&cfg, argc, argv);

	int len = asprintf(&x.req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cosockd-bench\r\n\r\n",
			   x.path, cfg.target_str);
	if (len < 0)
		cs__fail("out of memory");
	x.req_len = (size_t)len;
	cfg.sc = &rr_scenario;
	cfg.ctx = &x;
	int status = cs__load_run(&cfg, argc, argv);
	free(x.req);
	return status;
}
