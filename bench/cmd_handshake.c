/*
 * cmd_handshake.c - "cosockd-bench handshake": TLS handshakes per second.
 *
 * --conns loops run side by side, closed loop, each over and over:
 * connect, full TLS handshake, with --request one HTTP/1.1 GET and its
 * response, then an orderly close. An op is one such connection; its
 * latency runs from the start of connect() to the end of the handshake
 * (with --request, to the last byte of the response).
 *
 * The close is not timed but is waited for, so the server has done its
 * part before the loop's next connection: close_notify and a FIN go out,
 * and the loop reads until the server ends the stream. Reading also takes
 * in the session tickets a TLS 1.3 server sends after its handshake, so
 * --resume can offer the last connection's session on the next one; how
 * many handshakes did resume is reported ("tls": {"resumed"}).
 *
 * A response that is not 2xx counts as an "http-status" error and the loop
 * goes on; one that is malformed or unframed (no Content-Length), or a
 * failed connection or handshake, ends that loop with its error counted,
 * as in the other scenarios. The connections, TLS sessions, threads,
 * clock and report are load.c's.
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
#define DEFAULT_LOOPS 50

struct hs_ctx {
	int request;      /* one GET per connection */
	const char *path;
	char *req;        /* the request, the same every time */
	size_t req_len;
};

enum hs_state {
	HS_WAIT,    /* connecting and shaking hands (load.c) */
	HS_SENDING, /* --request: writing it */
	HS_HEAD,    /* reading the response head */
	HS_BODY,    /* reading its body */
	HS_CLOSING, /* close_notify and FIN sent; reading to the end */
};

struct hs_conn {
	struct cs__conn base;
	enum hs_state state;
	size_t wpos;        /* request bytes written */
	size_t hlen;        /* bytes in head */
	uint64_t body_left; /* HS_BODY */
	uint64_t body;      /* body bytes read */
	char head[HEAD_MAX];
};

/* Read until the server ends the stream, then start the next connection.
 * A reset instead of an orderly end is no error here: the connection's
 * work is done and counted. */
static void hs_drain(struct cs__worker *w, struct hs_conn *h)
{
	for (;;) {
		ssize_t n = cs__conn_recv(&h->base, w->scratch, w->cfg->scratch);
		if (n > 0)
			continue; /* tickets are taken in by wolfSSL; the rest is dropped */
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		h->state = HS_WAIT;
		cs__conn_reconnect(w, &h->base);
		return;
	}
}

static void hs_close(struct cs__worker *w, struct hs_conn *h)
{
	cs__conn_shutdown(&h->base);
	h->state = HS_CLOSING;
	hs_drain(w, h);
}

/* The response head is complete at end (of hlen bytes read). Returns 1
 * when the response is complete too, 0 when its body is to come, -1 when
 * the connection failed or is being closed. */
static int hs_head(struct cs__worker *w, struct hs_conn *h, size_t end)
{
	const char *v;
	size_t vlen;
	uint64_t len;

	if (end < 12 || memcmp(h->head, "HTTP/1.", 7) != 0 || h->head[8] != ' ') {
		cs__conn_fail(w, &h->base, CS__ERR_BAD, "bad status line");
		return -1;
	}
	if (h->head[9] != '2') {
		char why[48];
		snprintf(why, sizeof(why), "status %.3s", h->head + 9);
		cs__worker_error(w, CS__ERR_STATUS, why);
		hs_close(w, h);
		return -1;
	}
	if (cs__http_header(h->head, end, "Transfer-Encoding", &vlen) ||
	    !(v = cs__http_header(h->head, end, "Content-Length", &vlen))) {
		cs__conn_fail(w, &h->base, CS__ERR_UNSUPPORTED, "not framed by Content-Length");
		return -1;
	}
	if (cs__http_length(v, vlen, &len) < 0) {
		cs__conn_fail(w, &h->base, CS__ERR_BAD, "bad Content-Length");
		return -1;
	}
	h->body = h->hlen - end;
	if (h->body > len) {
		cs__conn_fail(w, &h->base, CS__ERR_BAD, "bytes after the response");
		return -1;
	}
	h->body_left = len - h->body;
	h->state = HS_BODY;
	return h->body_left == 0;
}

/* Read the response until the socket is empty or the response complete. */
static void hs_recv(struct cs__worker *w, struct hs_conn *h)
{
	for (;;) {
		char *buf = (char *)w->scratch;
		size_t want = w->cfg->scratch;

		if (h->state == HS_HEAD) {
			buf = h->head + h->hlen;
			want = HEAD_MAX - h->hlen;
		} else if (h->body_left < want) {
			want = (size_t)h->body_left;
		}
		ssize_t n = cs__conn_recv(&h->base, buf, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				cs__conn_fail_errno(w, &h->base, errno);
			return;
		}
		if (n == 0) {
			cs__conn_fail(w, &h->base, CS__ERR_EOF, "closed before the response ended");
			return;
		}
		int done;
		if (h->state == HS_HEAD) {
			size_t from = h->hlen > 3 ? h->hlen - 3 : 0; /* CRLFCRLF may straddle */
			h->hlen += (size_t)n;
			size_t end = cs__http_head_end(h->head + from, h->hlen - from);
			if (!end) {
				if (h->hlen == HEAD_MAX) {
					cs__conn_fail(w, &h->base, CS__ERR_BAD, "response head too large");
					return;
				}
				continue;
			}
			done = hs_head(w, h, from + end);
			if (done < 0)
				return;
		} else {
			h->body_left -= (uint64_t)n;
			h->body += (uint64_t)n;
			done = h->body_left == 0;
		}
		if (done) {
			cs__worker_answered(w, cs__now_ns(), h->base.t_open, h->body);
			hs_close(w, h);
			return;
		}
	}
}

/* Write the rest of the request; then read the response. */
static void hs_send(struct cs__worker *w, struct hs_conn *h)
{
	const struct hs_ctx *x = w->cfg->ctx;

	while (h->wpos < x->req_len) {
		ssize_t n = cs__conn_send(&h->base, x->req + h->wpos, x->req_len - h->wpos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				cs__conn_fail_errno(w, &h->base, errno);
			return;
		}
		h->wpos += (size_t)n;
	}
	h->state = HS_HEAD;
	h->hlen = 0;
	hs_recv(w, h); /* whatever came meanwhile had its edge already */
}

/* The connection is up and its handshake done. */
static void hs_offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	const struct hs_ctx *x = w->cfg->ctx;
	struct hs_conn *h = (struct hs_conn *)c;

	if (h->state != HS_WAIT)
		return;
	if (!x->request) {
		cs__worker_answered(w, now, c->t_open, 0);
		hs_close(w, h);
		return;
	}
	h->state = HS_SENDING;
	h->wpos = 0;
	hs_send(w, h);
}

static void hs_event(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	struct hs_conn *h = (struct hs_conn *)c;

	switch (h->state) {
	case HS_SENDING: /* until the request is out, only room to write matters */
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			hs_send(w, h);
		break;
	case HS_HEAD:
	case HS_BODY:
		hs_recv(w, h);
		break;
	case HS_CLOSING:
		hs_drain(w, h);
		break;
	case HS_WAIT:
		break;
	}
}

static void hs_describe(FILE *f, const struct cs__load_cfg *cfg)
{
	const struct hs_ctx *x = cfg->ctx;

	fprintf(f, "connect + TLS handshake%s%s, %llu loops%s", x->request ? " + GET " : "",
		x->request ? x->path : "", (unsigned long long)cfg->conns,
		cfg->tls_resume ? ", resuming sessions" : "");
}

static void hs_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	const struct hs_ctx *x = cfg->ctx;

	cs__json_u64(j, "resume", (uint64_t)cfg->tls_resume);
	cs__json_u64(j, "request", (uint64_t)x->request);
	cs__json_str(j, "path", x->path);
}

static const struct cs__scenario hs_scenario = {
	.conn_size = sizeof(struct hs_conn),
	.latency = 1,
	.churn = 1,
	.offer = hs_offer,
	.event = hs_event,
	.describe = hs_describe,
	.params = hs_params,
};

static const char usage[] =
	"usage: cosockd-bench handshake --target A.B.C.D:PORT [--conns N (50)] [--resume]\n"
	"  [--request] [--path / (implies --request)]\n"
	CS__TLS_USAGE CS__LOAD_USAGE
	"N loops of: connect, TLS handshake (--tls is implied), [one GET,] close.\n"
	"--resume offers each loop's last session (ticket) on its next connection.\n";

enum { OPT_RESUME = CS__OPT_SCENARIO, OPT_REQUEST, OPT_PATH };

int cs__cmd_handshake(int argc, char **argv)
{
	static const struct option opts[] = {
		CS__LOAD_OPTIONS,
		CS__TLS_OPTIONS,
		{"conns", required_argument, NULL, CS__OPT_CONNS},
		{"resume", no_argument, NULL, OPT_RESUME},
		{"request", no_argument, NULL, OPT_REQUEST},
		{"path", required_argument, NULL, OPT_PATH},
		{NULL, 0, NULL, 0},
	};
	struct cs__load_cfg cfg;
	struct hs_ctx x = {.path = "/"};
	int o;

	cs__load_defaults(&cfg, "handshake", "--conns");
	cfg.conns = DEFAULT_LOOPS;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cs__load_option(&cfg, o, optarg, usage))
			continue;
		switch (o) {
		case OPT_RESUME: cfg.tls_resume = 1; break;
		case OPT_REQUEST: x.request = 1; break;
		case OPT_PATH:
			if (optarg[0] != '/' || strpbrk(optarg, " \r\n") || strlen(optarg) > 2048)
				cs__fail_usage("--path: want /PATH with no blanks, got '%s'", optarg);
			x.path = optarg;
			x.request = 1;
			break;
		default: exit(2); /* getopt said why */
		}
	}
	cs__load_check(&cfg, argc, argv);
	cfg.tls = 1; /* --tls is implied */

	int len = asprintf(&x.req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cosockd-bench\r\n\r\n",
			   x.path, cfg.target_str);
	if (len < 0)
		cs__fail("out of memory");
	x.req_len = (size_t)len;
	cfg.sc = &hs_scenario;
	cfg.ctx = &x;
	int status = cs__load_run(&cfg, argc, argv);
	free(x.req);
	return status;
}
