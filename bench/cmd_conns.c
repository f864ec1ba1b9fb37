/*
 * cmd_conns.c - "cosockd-bench conns": open and hold N connections and
 * measure what they cost the server in resident memory.
 *
 * One process may hold only RLIMIT_NOFILE fds (20000 here), so the
 * connections are opened by child processes holding at most
 * CHILD_MAX_CONNS each. Connection i is bound to source address
 * 127.0.0.(2 + i % 253), so the ephemeral port range is not the limit
 * either. Each child connects its share one after another, and right after
 * connecting does one 1-byte echo round trip, which proves the server has
 * accepted the connection and serves it.
 *
 * The parent reads the server's VmRSS (--pid) before the children start and
 * again once every child reports all its connections established and
 * echoed; (after - before) / N is the cost of an idle connection. It then
 * holds them for --hold seconds and releases the children, which prove
 * every connection still live with one more echo round trip (all of a
 * child's in flight at once, within VERIFY_MS): those are "verified", any
 * other was dropped meanwhile. Then everything is closed.
 *
 * Parent and children talk over pipes: each child writes fixed-size
 * reports on its own pipe (smaller than PIPE_BUF, so atomic); the parent
 * holds the write end of one "release" pipe, and closing it tells all
 * children to finish (also when the parent dies).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "progress.h"

#define CHILD_MAX_CONNS 9000
#define CONNECT_TIMEOUT_MS 10000
#define VERIFY_MS 10000

struct conns_cfg {
	struct sockaddr_in target;
	const char *target_str;
	uint64_t count;
	double rate; /* connections per second, 0 = as fast as possible */
	double hold;
	pid_t pid;   /* server to measure, 0 = none */
	const char *json;
};

/* What a child tells the parent, once when its connections are up (or it
 * failed) and once more when it has been released. */
struct child_report {
	int32_t ok;
	uint64_t held;     /* connections established and echoed */
	uint64_t verified; /* second report: echoed again after the hold */
	uint64_t dropped;  /* second report: not */
	char msg[200];    /* why it failed */
};

struct child {
	pid_t pid;
	int report_fd;   /* read end of the child's report pipe */
	uint64_t first;  /* global index of its first connection */
	uint64_t n;      /* connections it opens */
};

/* ---- child side ---- */

static void child_report(int fd, const struct child_report *r)
{
	ssize_t n;

	do
		n = write(fd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
}

static void child_fail(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void child_fail(int fd, const char *fmt, ...)
{
	struct child_report r = {0};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r.msg, sizeof(r.msg), fmt, ap);
	va_end(ap);
	child_report(fd, &r);
	_exit(1);
}

/* One 1-byte round trip on a blocking socket (timeouts set by
 * cs__connect). Returns 0 or -errno; -EPROTO when the echo is wrong. */
static int ping(int fd)
{
	char out = 'x', in = 0;
	ssize_t n;

	do
		n = send(fd, &out, 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return n < 0 ? -errno : -EIO;
	do
		n = recv(fd, &in, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	if (n == 0)
		return -ECONNRESET;
	return in == out ? 0 : -EPROTO;
}

/* One more 1-byte round trip on each of fds[0, n), all sent before any is
 * read, and every read bounded by one deadline VERIFY_MS away. Returns how
 * many came back right. */
static uint64_t verify_all(const int *fds, uint64_t n)
{
	uint64_t deadline = cs__now_ns() + VERIFY_MS * 1000000ull, ok = 0;
	unsigned char *sent = calloc(n ? n : 1, 1);
	const char out = 'v';

	if (!sent)
		return 0;
	for (uint64_t k = 0; k < n; k++) {
		ssize_t w;
		do
			w = send(fds[k], &out, 1, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		sent[k] = w == 1;
	}
	for (uint64_t k = 0; k < n; k++) {
		uint64_t now = cs__now_ns();
		uint64_t left_us = now < deadline ? (deadline - now) / 1000 : 0;
		struct timeval tv = {
			.tv_sec = (time_t)(left_us / 1000000),
			.tv_usec = left_us % 1000000 ? (suseconds_t)(left_us % 1000000) : 1000,
		};
		char in = 0;
		ssize_t r;

		if (!sent[k])
			continue;
		setsockopt(fds[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		do
			r = recv(fds[k], &in, 1, 0);
		while (r < 0 && errno == EINTR);
		ok += r == 1 && in == out;
	}
	free(sent);
	return ok;
}

static void child_run(const struct conns_cfg *cfg, const struct child *me,
		      double rate, uint64_t t0, int report_fd, int release_fd)
{
	struct child_report r = {.ok = 1};
	int *fds = malloc(me->n * sizeof(*fds));
	char b;

	cs__raise_nofile();
	if (!fds)
		child_fail(report_fd, "out of memory");
	for (uint64_t k = 0; k < me->n; k++) {
		uint64_t i = me->first + k;
		if (rate > 0)
			cs__sleep_until(t0 + (uint64_t)((double)k * 1e9 / rate));
		int fd = cs__connect(&cfg->target, i, CONNECT_TIMEOUT_MS);
		if (fd < 0)
			child_fail(report_fd, "cannot connect to %s (connection %llu from %s): %s",
				   cfg->target_str, (unsigned long long)i,
				   cs__source_name(&cfg->target, i), strerror(-fd));
		int err = ping(fd);
		if (err)
			child_fail(report_fd, "no echo on connection %llu to %s: %s",
				   (unsigned long long)i, cfg->target_str,
				   err == -EPROTO ? "wrong byte" : strerror(-err));
		fds[k] = fd;
	}
	r.held = me->n;
	child_report(report_fd, &r);

	/* Hold until the parent closes the release pipe (or dies). */
	while (read(release_fd, &b, 1) < 0 && errno == EINTR)
		;
	r.verified = verify_all(fds, me->n);
	r.dropped = me->n - r.verified;
	for (uint64_t k = 0; k < me->n; k++)
		close(fds[k]);
	child_report(report_fd, &r);
	_exit(0);
}

/* ---- parent side ---- */

/* Read one report; a child that died without writing counts as failed. */
static void read_report(struct child *c, struct child_report *r)
{
	ssize_t n;

	do
		n = read(c->report_fd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*r)) {
		memset(r, 0, sizeof(*r));
		snprintf(r->msg, sizeof(r->msg), "child process %d died", (int)c->pid);
	}
}

/* Fork the children; each gets an even share of the connections. Returns
 * the write end of the release pipe. */
static int spawn_children(const struct conns_cfg *cfg, struct child *kids,
			  size_t nkids, uint64_t t0)
{
	int rel[2];
	uint64_t first = 0;

	if (pipe(rel) < 0)
		cs__fail("pipe: %s", strerror(errno));
	fflush(NULL); /* children must not repeat buffered output */
	for (size_t k = 0; k < nkids; k++) {
		int rep[2];
		struct child *c = &kids[k];

		c->first = first;
		c->n = cfg->count / nkids + (k < cfg->count % nkids);
		first += c->n;
		if (pipe(rep) < 0)
			cs__fail("pipe: %s", strerror(errno));
		c->pid = fork();
		if (c->pid < 0)
			cs__fail("fork: %s", strerror(errno));
		if (c->pid == 0) {
			close(rel[1]);
			close(rep[0]);
			for (size_t o = 0; o < k; o++)
				close(kids[o].report_fd);
			child_run(cfg, c, cfg->rate / (double)nkids, t0, rep[1], rel[0]);
		}
		close(rep[1]);
		c->report_fd = rep[0];
	}
	close(rel[0]);
	return rel[1];
}

/* Wait for every child; returns the number that did not exit 0. */
static size_t reap_children(struct child *kids, size_t nkids)
{
	size_t bad = 0;

	for (size_t k = 0; k < nkids; k++) {
		int st;
		while (waitpid(kids[k].pid, &st, 0) < 0 && errno == EINTR)
			;
		bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		close(kids[k].report_fd);
	}
	return bad;
}

/* Hold for s seconds, showing progress once a second meanwhile. */
static void hold(double s, uint64_t held)
{
	uint64_t t0 = cs__now_ns(), end = t0 + (uint64_t)(s * 1e9);

	for (uint64_t t = t0 + CS__NS_PER_SEC; cs__progress_enabled() && t < end;
	     t += CS__NS_PER_SEC) {
		cs__sleep_until(t);
		cs__progress_line("  holding %llu connections: %.0fs of %.3gs",
				  (unsigned long long)held, (double)(t - t0) / 1e9, s);
	}
	cs__sleep_until(end);
	cs__progress_end();
}

struct conns_result {
	size_t procs;
	uint64_t held, verified, dropped;
	double open_s;                  /* time to establish and echo all */
	struct cs__usage before, after; /* of the server, when --pid */
};

static double per_conn(const struct conns_result *r)
{
	if (!r->before.procs || !r->after.procs || !r->held)
		return 0.0 / 0.0;
	return (double)(r->after.rss - r->before.rss) / (double)r->held;
}

static void print_result(const struct conns_cfg *cfg, const struct conns_result *r)
{
	printf("conns %s: %llu held by %zu process%s, opened and echoed in %.2f s "
	       "(%.0f/s), held %.3g s, then %llu verified live by an echo, %llu dropped\n",
	       cfg->target_str, (unsigned long long)r->held, r->procs,
	       r->procs == 1 ? "" : "es", r->open_s,
	       r->open_s > 0 ? (double)r->held / r->open_s : 0.0, cfg->hold,
	       (unsigned long long)r->verified, (unsigned long long)r->dropped);
	if (cfg->pid)
		printf("  server pid %d (%u process%s): RSS %.1f MiB -> %.1f MiB, "
		       "%.0f B per connection; fds %lld -> %lld\n",
		       (int)cfg->pid, r->after.procs, r->after.procs == 1 ? "" : "es",
		       (double)r->before.rss / 1048576.0,
		       (double)r->after.rss / 1048576.0, per_conn(r),
		       (long long)r->before.fds, (long long)r->after.fds);
	cs__print_env(stdout);
}

static void write_json(const struct conns_cfg *cfg, const struct conns_result *r,
		       int argc, char **argv)
{
	struct cs__json j;
	int err = cs__json_open(&j, cfg->json);

	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
	cs__json_begin(&j, NULL);
	cs__json_str(&j, "mode", "conns");
	cs__json_env(&j, argc, argv);
	cs__json_begin(&j, "params");
	cs__json_str(&j, "target", cfg->target_str);
	cs__json_u64(&j, "count", cfg->count);
	cs__json_num(&j, "rate_per_s", cfg->rate);
	cs__json_num(&j, "hold_s", cfg->hold);
	cs__json_i64(&j, "pid", cfg->pid);
	cs__json_end(&j);
	cs__json_begin(&j, "results");
	cs__json_u64(&j, "held", r->held);
	cs__json_u64(&j, "verified", r->verified);
	cs__json_u64(&j, "dropped", r->dropped);
	cs__json_u64(&j, "processes", r->procs);
	cs__json_num(&j, "open_s", r->open_s);
	if (cfg->pid) {
		cs__json_u64(&j, "server_processes", r->after.procs);
		cs__json_i64(&j, "rss_before_bytes", r->before.rss);
		cs__json_i64(&j, "rss_after_bytes", r->after.rss);
		cs__json_num(&j, "rss_per_conn_bytes", per_conn(r));
		cs__json_i64(&j, "fds_before", r->before.fds);
		cs__json_i64(&j, "fds_after", r->after.fds);
	}
	cs__json_end(&j);
	cs__json_end(&j);
	err = cs__json_close(&j);
	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
}

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: cosockd-bench conns --target A.B.C.D:PORT --count N [--rate PER_SEC]\n"
		"                           [--hold SEC] [--pid SERVER_PID] [--json FILE]\n");
	exit(status);
}

static void parse_args(struct conns_cfg *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, 't'},
		{"count", required_argument, NULL, 'n'},
		{"rate", required_argument, NULL, 'r'},
		{"hold", required_argument, NULL, 'H'},
		{"pid", required_argument, NULL, 'p'},
		{"json", required_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int o;

	memset(cfg, 0, sizeof(*cfg));
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			cs__parse_target("--target", optarg, &cfg->target);
			cfg->target_str = optarg;
			break;
		case 'n': cfg->count = cs__parse_u64("--count", optarg, 1, 10000000); break;
		case 'r': cfg->rate = (double)cs__parse_u64("--rate", optarg, 1, 100000000); break;
		case 'H': cfg->hold = cs__parse_secs("--hold", optarg); break;
		case 'p': cfg->pid = (pid_t)cs__parse_u64("--pid", optarg, 1, 1u << 30); break;
		case 'j': cfg->json = optarg; break;
		case 'h': usage(0); break;
		default: exit(2); /* getopt said why */
		}
	}
	if (optind != argc)
		cs__fail_usage("conns: unexpected argument '%s' (try --help)", argv[optind]);
	if (!cfg->target_str || !cfg->count)
		cs__fail_usage("conns: --target and --count are required (try --help)");
}

/* Connections per child: CHILD_MAX_CONNS, or less when the fd limit (the
 * children raise theirs to the hard limit) would not allow it. */
static uint64_t child_capacity(void)
{
	uint64_t nofile = cs__raise_nofile();
	uint64_t cap = CHILD_MAX_CONNS;

	if (nofile < 64 + 1)
		cs__fail("RLIMIT_NOFILE %llu is too low", (unsigned long long)nofile);
	if (cap > nofile - 64)
		cap = nofile - 64;
	return cap;
}

int cs__cmd_conns(int argc, char **argv)
{
	struct conns_cfg cfg;
	struct conns_result r = {0};
	struct child_report rep;
	char first_err[sizeof(rep.msg)] = "";

	parse_args(&cfg, argc, argv);
	uint64_t cap = child_capacity();
	r.procs = (size_t)((cfg.count + cap - 1) / cap);
	struct child *kids = calloc(r.procs, sizeof(*kids));
	if (!kids)
		cs__fail("out of memory");
	if (cfg.pid && cs__server_usage(cfg.pid, &r.before) < 0)
		cs__fail("--pid %d: no such process", (int)cfg.pid);

	uint64_t t0 = cs__now_ns();
	int release = spawn_children(&cfg, kids, r.procs, t0);
	for (size_t k = 0; k < r.procs; k++) {
		read_report(&kids[k], &rep);
		r.held += rep.held;
		if (!rep.ok && !first_err[0])
			memcpy(first_err, rep.msg, sizeof(first_err));
	}
	r.open_s = (double)(cs__now_ns() - t0) / 1e9;
	if (!first_err[0] && cfg.pid && cs__server_usage(cfg.pid, &r.after) < 0)
		snprintf(first_err, sizeof(first_err), "server pid %d is gone",
			 (int)cfg.pid);
	if (!first_err[0])
		hold(cfg.hold, r.held);

	close(release);
	for (size_t k = 0; k < r.procs && !first_err[0]; k++) {
		read_report(&kids[k], &rep);
		r.verified += rep.verified;
		r.dropped += rep.dropped;
		if (!rep.ok)
			memcpy(first_err, rep.msg, sizeof(first_err));
	}
	if (reap_children(kids, r.procs) && !first_err[0])
		snprintf(first_err, sizeof(first_err), "a child process failed");
	free(kids);
	if (first_err[0])
		cs__fail("%s", first_err);

	print_result(&cfg, &r);
	if (cfg.json)
		write_json(&cfg, &r, argc, argv);
	if (r.dropped)
		cs__fail("%llu of %llu connections were dropped by the server while held "
			 "(no echo after the hold)",
			 (unsigned long long)r.dropped, (unsigned long long)r.held);
	return 0;
}
