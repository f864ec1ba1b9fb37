/*
 * cmd_bulk.c - "cosockd-bench bulk": one-way throughput through a proxy.
 *
 *   --direction up    every stream writes the byte pattern as fast as the
 *                     socket takes it (the proxy forwards to `serve sink`)
 *   --direction down  every stream reads as fast as it can (the proxy
 *                     forwards from `serve source`); --verify checks that
 *                     the bytes are the pattern, in order, none lost
 *                     (up, a sink has nothing to check: --verify is a no-op)
 *
 * Ops are bytes: those written (up) or read (down) inside the window. The
 * pattern repeats every CS__PATTERN_PERIOD bytes, so one buffer of
 * --chunk + CS__PATTERN_PERIOD bytes holds every window of it a write or a
 * check needs, whatever a stream's offset.
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

struct bulk_ctx {
	int up;
	int verify;
	uint64_t chunk;
	const unsigned char *pattern; /* chunk + CS__PATTERN_PERIOD bytes */
};

struct bulk_conn {
	struct cs__conn base;
	uint64_t pos; /* stream bytes moved so far */
	int blocked;  /* up: send said EAGAIN */
};

static const unsigned char *pattern_at(const struct bulk_ctx *x, uint64_t pos)
{
	return x->pattern + pos % CS__PATTERN_PERIOD;
}

static void bulk_write(struct cs__worker *w, struct bulk_conn *b)
{
	const struct bulk_ctx *x = w->cfg->ctx;

	while (!b->blocked) {
		ssize_t n = send(b->base.fd, pattern_at(x, b->pos), x->chunk, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				b->blocked = 1;
			else
				cs__conn_fail_errno(w, &b->base, errno);
			return;
		}
		b->pos += (uint64_t)n;
		cs__worker_moved(w, cs__now_ns(), (uint64_t)n);
	}
}

/* Read until the socket is empty. Down, every byte is the stream's; up,
 * nothing may come but the end. */
static void bulk_read(struct cs__worker *w, struct bulk_conn *b)
{
	const struct bulk_ctx *x = w->cfg->ctx;
	size_t want = x->up ? w->cfg->scratch : x->chunk;

	for (;;) {
		ssize_t n = recv(b->base.fd, w->scratch, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				cs__conn_fail_errno(w, &b->base, errno);
			return;
		}
		if (n == 0) {
			cs__conn_fail(w, &b->base, CS__ERR_EOF, "stream closed by server");
			return;
		}
		if (x->up) {
			cs__conn_fail(w, &b->base, CS__ERR_MISMATCH, "bytes from a sink");
			return;
		}
		if (x->verify && memcmp(w->scratch, pattern_at(x, b->pos), (size_t)n) != 0) {
			cs__conn_fail(w, &b->base, CS__ERR_MISMATCH, "bytes differ from the pattern");
			return;
		}
		b->pos += (uint64_t)n;
		cs__worker_moved(w, cs__now_ns(), (uint64_t)n);
	}
}

static void bulk_offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	const struct bulk_ctx *x = w->cfg->ctx;

	if (x->up)
		bulk_write(w, (struct bulk_conn *)c);
}

static void bulk_event(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	struct bulk_conn *b = (struct bulk_conn *)c;
	const struct bulk_ctx *x = w->cfg->ctx;

	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		bulk_read(w, b);
	if (c->fd >= 0 && x->up && (events & EPOLLOUT)) {
		b->blocked = 0;
		bulk_write(w, b);
	}
}

static void bulk_describe(FILE *f, const struct cs__load_cfg *cfg)
{
	const struct bulk_ctx *x = cfg->ctx;

	fprintf(f, "%llu stream%s %s, %llu B chunks%s", (unsigned long long)cfg->conns,
		cfg->conns == 1 ? "" : "s", x->up ? "up" : "down",
		(unsigned long long)x->chunk, x->verify && !x->up ? ", verified" : "");
}

static void bulk_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	const struct bulk_ctx *x = cfg->ctx;

	cs__json_str(j, "direction", x->up ? "up" : "down");
	cs__json_u64(j, "chunk", x->chunk);
	cs__json_u64(j, "verify", (uint64_t)x->verify);
}

static const struct cs__scenario bulk_scenario = {
	.conn_size = sizeof(struct bulk_conn),
	.latency = 0,
	.offer = bulk_offer,
	.event = bulk_event,
	.describe = bulk_describe,
	.params = bulk_params,
};

static const char usage[] =
	"usage: cosockd-bench bulk --target A.B.C.D:PORT --streams N --direction up|down\n"
	"  [--chunk BYTES (65536)] [--verify]\n" CS__LOAD_USAGE;

enum { OPT_DIRECTION = CS__OPT_SCENARIO, OPT_CHUNK, OPT_VERIFY };

int cs__cmd_bulk(int argc, char **argv)
{
	static const struct option opts[] = {
		CS__LOAD_OPTIONS,
		{"streams", required_argument, NULL, CS__OPT_CONNS},
		{"direction", required_argument, NULL, OPT_DIRECTION},
		{"chunk", required_argument, NULL, OPT_CHUNK},
		{"verify", no_argument, NULL, OPT_VERIFY},
		{NULL, 0, NULL, 0},
	};
	struct cs__load_cfg cfg;
	struct bulk_ctx x = {.up = -1, .chunk = 65536};
	int o;

	cs__load_defaults(&cfg, "bulk", "--streams");
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cs__load_option(&cfg, o, optarg, usage))
			continue;
		switch (o) {
		case OPT_DIRECTION:
			if (strcmp(optarg, "up") && strcmp(optarg, "down"))
				cs__fail_usage("--direction: want up or down, got '%s'", optarg);
			x.up = !strcmp(optarg, "up");
			break;
		case OPT_CHUNK: x.chunk = cs__parse_u64("--chunk", optarg, 1, 16u << 20); break;
		case OPT_VERIFY: x.verify = 1; break;
		default: exit(2); /* getopt said why */
		}
	}
	cs__load_check(&cfg, argc, argv);
	if (x.up < 0)
		cs__fail_usage("bulk: --direction is required (try --help)");

	unsigned char *pattern = malloc(x.chunk + CS__PATTERN_PERIOD);
	if (!pattern)
		cs__fail("out of memory for a %llu B chunk", (unsigned long long)x.chunk);
	cs__fill_pattern(pattern, x.chunk + CS__PATTERN_PERIOD);
	x.pattern = pattern;
	if (x.chunk > cfg.scratch)
		cfg.scratch = x.chunk;
	cfg.sc = &bulk_scenario;
	cfg.ctx = &x;
	int status = cs__load_run(&cfg, argc, argv);
	free(pattern);
	return status;
}
