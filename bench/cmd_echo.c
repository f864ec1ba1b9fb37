/*
 * cmd_echo.c - "cosockd-bench echo": closed-loop round trips against an
 * echo server.
 *
 * Every connection sends one message of --size bytes, waits until the whole
 * echo is back (and matches what was sent), and sends the next at once. The
 * connections are split over --threads threads, each with its own
 * edge-triggered epoll loop and its own histogram; nothing is shared while
 * the run lasts. A round trip counts when its echo completes inside the
 * measured window [start + warmup, start + warmup + duration); its latency
 * is from the first byte written to the last byte read, in microseconds.
 *
 * With --pid, the main thread (idle while the workers run) also reads the
 * server's CPU time at both ends of the window, giving its CPU cost per
 * round trip; the load generator's own CPU time is read likewise, to show
 * whether the load side was the limit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "hist.h"

#define SCRATCH_SIZE (64 * 1024)
#define MAX_EVENTS 256
#define CONNECT_TIMEOUT_MS 5000

struct echo_cfg {
	struct sockaddr_in target;
	const char *target_str;
	uint64_t conns;
	uint64_t size;
	double duration, warmup;
	uint64_t threads;
	pid_t pid; /* server whose CPU time to measure, 0 = none */
	const char *json;
	/* Set by the main thread before the workers start. */
	const unsigned char *msg; /* the message, size bytes */
	uint64_t t_measure;       /* window start, ns */
	uint64_t t_end;           /* window end, ns */
};

/* A connection's progress through the current message. Sending and
 * receiving overlap: a message larger than the socket buffers is echoed
 * while it is still being sent, and we must read those echoes as they come
 * or both sides would stall on full buffers. */
struct echo_conn {
	int fd;
	size_t sent;  /* bytes of the current message written */
	size_t recvd; /* bytes of its echo read (and checked) */
	uint64_t t0;  /* when the current message's first byte went out */
};

struct echo_worker {
	pthread_t tid;
	const struct echo_cfg *cfg;
	struct echo_conn *conns;
	size_t nconns, alive;
	int epfd;
	unsigned char *scratch;
	uint64_t round_trips; /* inside the window */
	uint64_t errors;
	char first_error[128];
	struct cs__hist hist;
};

/* Count an error, remembering the first one's text. */
static void worker_error(struct echo_worker *w, const char *why)
{
	if (!w->errors++)
		snprintf(w->first_error, sizeof(w->first_error), "%s", why);
}

/* Drop a connection after an error; the run goes on without it. */
static void conn_error(struct echo_worker *w, struct echo_conn *c, const char *why)
{
	worker_error(w, why);
	close(c->fd);
	c->fd = -1;
	w->alive--;
}

/* A whole echo is back: count it if inside the window, then start the
 * next message. */
static void round_trip_done(struct echo_worker *w, struct echo_conn *c)
{
	uint64_t now = cs__now_ns();

	if (now >= w->cfg->t_measure && now < w->cfg->t_end) {
		w->round_trips++;
		cs__hist_record(&w->hist, (now - c->t0 + 500) / 1000);
	}
	c->t0 = now;
	c->sent = 0;
	c->recvd = 0;
}

/* Write what is left of the message. Returns 1 when it is all written,
 * 0 on EAGAIN (an EPOLLOUT edge will follow), -1 after an error. */
static int conn_send(struct echo_worker *w, struct echo_conn *c)
{
	size_t size = w->cfg->size;

	while (c->sent < size) {
		ssize_t n = send(c->fd, w->cfg->msg + c->sent, size - c->sent,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			conn_error(w, c, strerror(errno));
			return -1;
		}
		c->sent += (size_t)n;
	}
	return 1;
}

/* Read the echo, never past the end of the message, checking every byte.
 * Returns 1 when it is complete, 0 on EAGAIN (an EPOLLIN edge will follow),
 * -1 after an error. */
static int conn_recv(struct echo_worker *w, struct echo_conn *c)
{
	size_t size = w->cfg->size;

	while (c->recvd < size) {
		size_t want = size - c->recvd;
		if (want > SCRATCH_SIZE)
			want = SCRATCH_SIZE;
		ssize_t n = recv(c->fd, w->scratch, want, 0);
		if (n == 0) {
			conn_error(w, c, "connection closed by server");
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			conn_error(w, c, strerror(errno));
			return -1;
		}
		if (n > (ssize_t)(c->sent - c->recvd) ||
		    memcmp(w->scratch, w->cfg->msg + c->recvd, (size_t)n) != 0) {
			conn_error(w, c, "echo differs from what was sent");
			return -1;
		}
		c->recvd += (size_t)n;
	}
	return 1;
}

/* Move a connection as far as its socket allows. readable says whether the
 * edge that woke us reported EPOLLIN. Once a message is fully sent we do
 * not read until an EPOLLIN edge says its echo has arrived: for small
 * messages that saves a read() per round trip that would say EAGAIN. */
static void conn_drive(struct echo_worker *w, struct echo_conn *c, int readable)
{
	for (;;) {
		if (c->sent < w->cfg->size) {
			int r = conn_send(w, c);
			if (r < 0)
				return;
			if (r == 0)
				readable = 1; /* blocked: drain echoes meanwhile */
		}
		if (!readable)
			return;
		int r = conn_recv(w, c);
		if (r <= 0)
			return;
		round_trip_done(w, c);
		readable = 0;
	}
}

static void *worker_main(void *arg)
{
	struct echo_worker *w = arg;
	struct epoll_event events[MAX_EVENTS];
	const struct echo_cfg *cfg = w->cfg;

	/* Kick off: every connection sends its first message. */
	for (size_t i = 0; i < w->nconns; i++) {
		w->conns[i].t0 = cs__now_ns();
		conn_drive(w, &w->conns[i], 0);
	}
	for (;;) {
		uint64_t now = cs__now_ns();
		if (now >= cfg->t_end || !w->alive)
			break;
		uint64_t left_ms = (cfg->t_end - now) / 1000000 + 1;
		int n = epoll_wait(w->epfd, events, MAX_EVENTS,
				   left_ms < 100 ? (int)left_ms : 100);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			worker_error(w, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct echo_conn *c = events[i].data.ptr;
			uint32_t ev = events[i].events;
			int readable = !!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP));
			/* An EPOLLOUT edge matters only while the message is
			 * not fully written; otherwise it costs no syscall. */
			if (c->fd < 0)
				continue;
			if (readable || ((ev & EPOLLOUT) && c->sent < cfg->size))
				conn_drive(w, c, readable);
		}
	}
	return NULL;
}

/* Open every connection (in the main thread, before the clock starts) and
 * hand them to the workers round-robin. */
static void open_conns(struct echo_cfg *cfg, struct echo_worker *ws)
{
	for (uint64_t i = 0; i < cfg->conns; i++) {
		struct echo_worker *w = &ws[i % cfg->threads];
		int fd = cs__connect(&cfg->target, i, CONNECT_TIMEOUT_MS);
		if (fd < 0)
			cs__fail("cannot connect to %s (connection %llu): %s",
				 cfg->target_str, (unsigned long long)i,
				 strerror(-fd));
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		struct echo_conn *c = &w->conns[w->nconns++];
		c->fd = fd;
		struct epoll_event ev = {
			.events = EPOLLIN | EPOLLOUT | EPOLLET,
			.data.ptr = c,
		};
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			cs__fail("epoll_ctl: %s", strerror(errno));
		w->alive++;
	}
}

static struct echo_worker *workers_new(const struct echo_cfg *cfg)
{
	struct echo_worker *ws = calloc(cfg->threads, sizeof(*ws));
	size_t per = (cfg->conns + cfg->threads - 1) / cfg->threads;

	if (!ws)
		cs__fail("out of memory");
	for (uint64_t t = 0; t < cfg->threads; t++) {
		struct echo_worker *w = &ws[t];
		w->cfg = cfg;
		w->conns = calloc(per, sizeof(*w->conns));
		w->scratch = malloc(SCRATCH_SIZE);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (!w->conns || !w->scratch || w->epfd < 0)
			cs__fail("cannot set up thread %llu: %s",
				 (unsigned long long)t, strerror(errno));
		cs__hist_reset(&w->hist);
	}
	return ws;
}

static void workers_free(struct echo_cfg *cfg, struct echo_worker *ws)
{
	for (uint64_t t = 0; t < cfg->threads; t++) {
		for (size_t i = 0; i < ws[t].nconns; i++)
			if (ws[t].conns[i].fd >= 0)
				close(ws[t].conns[i].fd);
		close(ws[t].epfd);
		free(ws[t].conns);
		free(ws[t].scratch);
	}
	free(ws);
}

/* Results summed over all workers. */
struct echo_result {
	uint64_t round_trips, errors;
	char first_error[128];
	struct cs__hist hist;
	int64_t server_cpu_ns; /* in the window; -1 unknown */
	uint64_t load_cpu_ns;  /* ours, in the window */
};

static double server_us_per_rt(const struct echo_result *r)
{
	if (r->server_cpu_ns < 0 || !r->round_trips)
		return 0.0 / 0.0;
	return (double)r->server_cpu_ns / 1e3 / (double)r->round_trips;
}

static void print_result(const struct echo_cfg *cfg, const struct echo_result *r)
{
	const struct cs__hist *h = &r->hist;

	printf("echo %s: %llu conns, %llu B messages, %.3g s (+%.3g s warmup), "
	       "%llu thread%s\n",
	       cfg->target_str, (unsigned long long)cfg->conns,
	       (unsigned long long)cfg->size, cfg->duration, cfg->warmup,
	       (unsigned long long)cfg->threads, cfg->threads == 1 ? "" : "s");
	printf("  round trips  %llu (%.1f/s)\n", (unsigned long long)r->round_trips,
	       (double)r->round_trips / cfg->duration);
	printf("  latency us   min %llu  mean %.1f  p50 %llu  p90 %llu  p99 %llu  "
	       "p99.9 %llu  max %llu\n",
	       (unsigned long long)(h->count ? h->min : 0), cs__hist_mean(h),
	       (unsigned long long)cs__hist_percentile(h, 50),
	       (unsigned long long)cs__hist_percentile(h, 90),
	       (unsigned long long)cs__hist_percentile(h, 99),
	       (unsigned long long)cs__hist_percentile(h, 99.9),
	       (unsigned long long)h->max);
	if (r->errors)
		printf("  errors       %llu (first: %s)\n",
		       (unsigned long long)r->errors, r->first_error);
	else
		printf("  errors       0\n");
	if (r->server_cpu_ns >= 0)
		printf("  server CPU   %.2f s (%.0f%% of a CPU), %.2f us per round trip\n",
		       (double)r->server_cpu_ns / 1e9,
		       100.0 * (double)r->server_cpu_ns / 1e9 / cfg->duration,
		       server_us_per_rt(r));
	printf("  load CPU     %.2f s (%.0f%% of a CPU over %llu thread%s)\n",
	       (double)r->load_cpu_ns / 1e9,
	       100.0 * (double)r->load_cpu_ns / 1e9 / cfg->duration,
	       (unsigned long long)cfg->threads, cfg->threads == 1 ? "" : "s");
	cs__print_env(stdout);
}

static void write_json(const struct echo_cfg *cfg, const struct echo_result *r,
		       int argc, char **argv)
{
	struct cs__json j;
	const struct cs__hist *h = &r->hist;
	int err = cs__json_open(&j, cfg->json);

	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
	cs__json_begin(&j, NULL);
	cs__json_str(&j, "mode", "echo");
	cs__json_env(&j, argc, argv);
	cs__json_begin(&j, "params");
	cs__json_str(&j, "target", cfg->target_str);
	cs__json_u64(&j, "conns", cfg->conns);
	cs__json_u64(&j, "size", cfg->size);
	cs__json_num(&j, "duration_s", cfg->duration);
	cs__json_num(&j, "warmup_s", cfg->warmup);
	cs__json_u64(&j, "threads", cfg->threads);
	cs__json_i64(&j, "pid", cfg->pid);
	cs__json_end(&j);
	cs__json_begin(&j, "results");
	cs__json_u64(&j, "round_trips", r->round_trips);
	cs__json_num(&j, "round_trips_per_s", (double)r->round_trips / cfg->duration);
	cs__json_u64(&j, "errors", r->errors);
	if (r->errors)
		cs__json_str(&j, "first_error", r->first_error);
	if (r->server_cpu_ns >= 0) {
		cs__json_num(&j, "server_cpu_s", (double)r->server_cpu_ns / 1e9);
		cs__json_num(&j, "server_cpu_us_per_rt", server_us_per_rt(r));
	}
	cs__json_num(&j, "load_cpu_s", (double)r->load_cpu_ns / 1e9);
	cs__json_begin(&j, "latency_us");
	cs__json_u64(&j, "min", h->count ? h->min : 0);
	cs__json_num(&j, "mean", cs__hist_mean(h));
	cs__json_u64(&j, "p50", cs__hist_percentile(h, 50));
	cs__json_u64(&j, "p90", cs__hist_percentile(h, 90));
	cs__json_u64(&j, "p99", cs__hist_percentile(h, 99));
	cs__json_u64(&j, "p99_9", cs__hist_percentile(h, 99.9));
	cs__json_u64(&j, "max", h->max);
	cs__json_end(&j);
	cs__json_end(&j);
	cs__json_end(&j);
	err = cs__json_close(&j);
	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
}

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: cosockd-bench echo --target A.B.C.D:PORT --conns N --size BYTES\n"
		"                          --duration SEC [--warmup SEC] [--threads T]\n"
		"                          [--pid SERVER_PID] [--json FILE]\n");
	exit(status);
}

static void parse_args(struct echo_cfg *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, 't'},
		{"conns", required_argument, NULL, 'c'},
		{"size", required_argument, NULL, 's'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, 'w'},
		{"threads", required_argument, NULL, 'T'},
		{"pid", required_argument, NULL, 'p'},
		{"json", required_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int o;

	memset(cfg, 0, sizeof(*cfg));
	cfg->threads = 1;
	cfg->duration = -1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			cs__parse_target("--target", optarg, &cfg->target);
			cfg->target_str = optarg;
			break;
		case 'c': cfg->conns = cs__parse_u64("--conns", optarg, 1, 1000000); break;
		case 's': cfg->size = cs__parse_u64("--size", optarg, 1, 1u << 30); break;
		case 'd': cfg->duration = cs__parse_secs("--duration", optarg); break;
		case 'w': cfg->warmup = cs__parse_secs("--warmup", optarg); break;
		case 'T': cfg->threads = cs__parse_u64("--threads", optarg, 1, 256); break;
		case 'p': cfg->pid = (pid_t)cs__parse_u64("--pid", optarg, 1, 1u << 30); break;
		case 'j': cfg->json = optarg; break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc || !cfg->target_str || !cfg->conns || !cfg->size ||
	    !(cfg->duration > 0))
		usage(2);
	if (cfg->threads > cfg->conns)
		cfg->threads = cfg->conns;
}

/* Runs in the main thread while the workers work: CPU time of the server
 * and of this process over the measured window. */
static void measure_cpu(const struct echo_cfg *cfg, struct echo_result *r)
{
	struct cs__usage s0, s1;
	int ok = 1;

	cs__sleep_until(cfg->t_measure);
	uint64_t c0 = cs__self_cpu_ns();
	if (cfg->pid)
		ok = cs__server_usage(cfg->pid, &s0) == 0;
	cs__sleep_until(cfg->t_end);
	uint64_t c1 = cs__self_cpu_ns();
	if (cfg->pid && ok)
		ok = cs__server_usage(cfg->pid, &s1) == 0;
	r->load_cpu_ns = c1 - c0;
	if (cfg->pid && ok && s1.cpu_ns >= s0.cpu_ns)
		r->server_cpu_ns = s1.cpu_ns - s0.cpu_ns;
}

int cs__cmd_echo(int argc, char **argv)
{
	struct echo_cfg cfg;
	struct echo_result r = {.server_cpu_ns = -1};

	parse_args(&cfg, argc, argv);
	struct cs__usage u;
	if (cfg.pid && cs__server_usage(cfg.pid, &u) < 0)
		cs__fail("--pid %d: no such process", (int)cfg.pid);
	uint64_t nofile = cs__raise_nofile();
	if (cfg.conns + 16 > nofile)
		cs__fail("--conns %llu needs more fds than RLIMIT_NOFILE %llu",
			 (unsigned long long)cfg.conns, (unsigned long long)nofile);

	unsigned char *msg = malloc(cfg.size);
	if (!msg)
		cs__fail("out of memory for a %llu B message",
			 (unsigned long long)cfg.size);
	cs__fill_pattern(msg, cfg.size);
	cfg.msg = msg;

	struct echo_worker *ws = workers_new(&cfg);
	open_conns(&cfg, ws);
	cfg.t_measure = cs__now_ns() + (uint64_t)(cfg.warmup * CS__NS_PER_SEC);
	cfg.t_end = cfg.t_measure + (uint64_t)(cfg.duration * CS__NS_PER_SEC);
	for (uint64_t t = 0; t < cfg.threads; t++)
		if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0)
			cs__fail("pthread_create failed");
	measure_cpu(&cfg, &r);

	cs__hist_reset(&r.hist);
	for (uint64_t t = 0; t < cfg.threads; t++) {
		pthread_join(ws[t].tid, NULL);
		r.round_trips += ws[t].round_trips;
		if (ws[t].errors && !r.errors)
			memcpy(r.first_error, ws[t].first_error,
			       sizeof(r.first_error));
		r.errors += ws[t].errors;
		cs__hist_merge(&r.hist, &ws[t].hist);
	}
	print_result(&cfg, &r);
	if (cfg.json)
		write_json(&cfg, &r, argc, argv);
	workers_free(&cfg, ws);
	free(msg);

	if (r.errors)
		cs__fail("%llu connection error%s (first: %s)",
			 (unsigned long long)r.errors, r.errors == 1 ? "" : "s",
			 r.first_error);
	if (!r.round_trips)
		cs__fail("no round trip completed in %.3g s", cfg.duration);
	return 0;
}
