/*
 * cmd_echo.c - "cosockd-bench echo": round trips against an echo server.
 *
 * Every connection sends messages of --size bytes and checks that each
 * comes back intact. Up to --pipeline messages may be in flight per
 * connection: closed loop keeps that many going; with --rate the loop is
 * open and messages leave on the schedule of pace.h, at most --pipeline
 * outstanding. A message's latency runs from its start (its intended start
 * in open loop) to the last byte of its echo, in microseconds.
 *
 * Sending and receiving overlap: a message larger than the socket buffers
 * is echoed while it is still being sent, and we read those echoes as they
 * come or both sides would stall on full buffers. Since every message is
 * the same, the echoed stream must be the message repeated: byte p of it
 * is msg[p % size].
 *
 * The connections, threads, clock and report are load.c's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "load.h"

struct echo_ctx {
	uint64_t size;
	const unsigned char *msg; /* the message, size bytes */
};

struct echo_conn {
	struct cs__conn base;
	int writing;     /* a message is partly written */
	int blocked;     /* send said EAGAIN; wait for EPOLLOUT */
	uint64_t wpos;   /* bytes of that message written */
	uint64_t rpos;   /* bytes of the oldest outstanding message echoed */
	uint64_t unread; /* bytes sent whose echo has not come back */
};

/* Write the rest of the current message. 1: all written; 0: the socket is
 * full (EPOLLOUT will come); -1: the connection failed. */
static int echo_send(struct cs__worker *w, struct echo_conn *e)
{
	const struct echo_ctx *x = w->cfg->ctx;

	while (e->wpos < x->size) {
		ssize_t n = send(e->base.fd, x->msg + e->wpos, x->size - e->wpos, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				e->blocked = 1;
				return 0;
			}
			cs__conn_fail_errno(w, &e->base, errno);
			return -1;
		}
		e->wpos += (uint64_t)n;
		e->unread += (uint64_t)n;
	}
	return 1;
}

/* Start (and write) every message the pacing allows now. */
static void echo_offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	struct echo_conn *e = (struct echo_conn *)c;

	while (!e->blocked) {
		if (!e->writing) {
			if (!cs__pace_take(&w->pace, &c->flight, now))
				return;
			e->writing = 1;
			e->wpos = 0;
		}
		if (echo_send(w, e) <= 0)
			return;
		e->writing = 0;
		now = cs__now_ns();
	}
}

/* Check n echoed bytes against the message, completing messages as their
 * last byte arrives. Returns 0, or -1 when they differ. */
static int echo_check(struct cs__worker *w, struct echo_conn *e, const unsigned char *p,
		      size_t n)
{
	const struct echo_ctx *x = w->cfg->ctx;

	while (n) {
		size_t k = x->size - e->rpos;
		if (k > n)
			k = n;
		if (memcmp(p, x->msg + e->rpos, k) != 0)
			return -1;
		p += k;
		n -= k;
		e->rpos += k;
		if (e->rpos == x->size) {
			uint64_t t0 = cs__flight_done(&e->base.flight);
			cs__worker_answered(w, cs__now_ns(), t0, x->size);
			e->rpos = 0;
		}
	}
	return 0;
}

/* Read echoes until the socket is empty. Returns 0, or -1 when the
 * connection failed. */
static int echo_recv(struct cs__worker *w, struct echo_conn *e)
{
	for (;;) {
		ssize_t n = recv(e->base.fd, w->scratch, w->cfg->scratch, 0);
		if (n == 0) {
			cs__conn_fail(w, &e->base, CS__ERR_EOF, "connection closed by server");
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			cs__conn_fail_errno(w, &e->base, errno);
			return -1;
		}
		if ((uint64_t)n > e->unread) {
			cs__conn_fail(w, &e->base, CS__ERR_MISMATCH, "more bytes echoed than sent");
			return -1;
		}
		e->unread -= (uint64_t)n;
		if (echo_check(w, e, w->scratch, (size_t)n) < 0) {
			cs__conn_fail(w, &e->base, CS__ERR_MISMATCH, "echo differs from what was sent");
			return -1;
		}
	}
}

static void echo_event(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	struct echo_conn *e = (struct echo_conn *)c;

	if (events & EPOLLOUT)
		e->blocked = 0;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && echo_recv(w, e) < 0)
		return;
	echo_offer(w, c, cs__now_ns());
}

static void echo_describe(FILE *f, const struct cs__load_cfg *cfg)
{
	const struct echo_ctx *x = cfg->ctx;

	fprintf(f, "%llu conns, %llu B messages, pipeline %u", (unsigned long long)cfg->conns,
		(unsigned long long)x->size, cfg->depth);
}

static void echo_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	const struct echo_ctx *x = cfg->ctx;

	cs__json_u64(j, "size", x->size);
	cs__json_u64(j, "pipeline", cfg->depth);
}

static const struct cs__scenario echo_scenario = {
	.conn_size = sizeof(struct echo_conn),
	.latency = 1,
	.offer = echo_offer,
	.event = echo_event,
	.describe = echo_describe,
	.params = echo_params,
};

static const char usage[] =
	"usage: cosockd-bench echo --target A.B.C.D:PORT --conns N --size BYTES\n"
	"  [--pipeline D (1)] [--rate REQUESTS_PER_S]\n" CS__LOAD_USAGE;

enum { OPT_SIZE = CS__OPT_SCENARIO, OPT_PIPELINE };

int cs__cmd_echo(int argc, char **argv)
{
	static const struct option opts[] = {
		CS__LOAD_OPTIONS,
		CS__RATE_OPTION,
		{"conns", required_argument, NULL, CS__OPT_CONNS},
		{"size", required_argument, NULL, OPT_SIZE},
		{"pipeline", required_argument, NULL, OPT_PIPELINE},
		{NULL, 0, NULL, 0},
	};
	struct cs__load_cfg cfg;
	struct echo_ctx x = {0};
	int o;

	cs__load_defaults(&cfg, "echo", "--conns");
	cfg.depth = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cs__load_option(&cfg, o, optarg, usage))
			continue;
		switch (o) {
		case OPT_SIZE: x.size = cs__parse_u64("--size", optarg, 1, 1u << 30); break;
		case OPT_PIPELINE:
			cfg.depth = (uint32_t)cs__parse_u64("--pipeline", optarg, 1, 1024);
			break;
		default: exit(2); /* getopt said why */
		}
	}
	cs__load_check(&cfg, argc, argv);
	if (!x.size)
		cs__fail_usage("echo: --size is required (try --help)");

	unsigned char *msg = malloc(x.size);
	if (!msg)
		cs__fail("out of memory for a %llu B message", (unsigned long long)x.size);
	cs__fill_pattern(msg, x.size);
	x.msg = msg;
	cfg.sc = &echo_scenario;
	cfg.ctx = &x;
	int status = cs__load_run(&cfg, argc, argv);
	free(msg);
	return status;
}
