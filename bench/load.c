/*
 * load.c - the run skeleton of the load scenarios (see load.h): options,
 * connections, worker loops, the clock, and merging the results.
 *
 * A worker's loop wakes on socket events, on its pacing schedule's next
 * slot (open loop), and at least every POLL_NS to publish progress and to
 * notice the end of the run; epoll_pwait2() keeps the schedule to the
 * nanosecond rather than the millisecond. Reconnects are deferred to the
 * top of the loop, so that events still queued for a closed fd can never
 * be taken for events of its successor.
 *
 * A connection being set up inside the loop goes: connect() started
 * (connecting), TCP up (the first EPOLLOUT), and with --tls a handshake
 * stepped on every event (handshaking) until it is done; then the
 * scenario gets it through offer().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load.h"

#define MAX_EVENTS 256
#define POLL_NS (100 * 1000 * 1000ull)
#define CONNECT_TIMEOUT_MS 5000

static const char *const err_names[CS__ERR_KINDS] = {
	[CS__ERR_CONNECT] = "connect",
	[CS__ERR_RESET] = "reset",
	[CS__ERR_EOF] = "eof",
	[CS__ERR_TIMEOUT] = "timeout",
	[CS__ERR_MISMATCH] = "mismatch",
	[CS__ERR_BAD] = "bad-response",
	[CS__ERR_UNSUPPORTED] = "unsupported-response",
	[CS__ERR_STATUS] = "http-status",
	[CS__ERR_TLS] = "tls",
	[CS__ERR_OTHER] = "other",
};

const char *cs__err_name(enum cs__err kind)
{
	return err_names[kind];
}

enum cs__err cs__err_of_errno(int err)
{
	switch (err) {
	case ECONNRESET:
	case EPIPE:
		return CS__ERR_RESET;
	case ETIMEDOUT:
		return CS__ERR_TIMEOUT;
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return CS__ERR_CONNECT;
	case EPROTO: /* tls.c's */
		return CS__ERR_TLS;
	default:
		return CS__ERR_OTHER;
	}
}

/* ---- options ---- */

void cs__load_defaults(struct cs__load_cfg *cfg, const char *mode, const char *conns_opt)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = mode;
	cfg->conns_opt = conns_opt;
	cfg->duration = 5;
	cfg->warmup = 1;
	cfg->threads = 1;
	cfg->scratch = CS__SCRATCH_SIZE;
}

int cs__load_option(struct cs__load_cfg *cfg, int o, const char *arg, const char *usage)
{
	switch (o) {
	case CS__OPT_TARGET:
		cs__parse_target("--target", arg, &cfg->target);
		cfg->target_str = arg;
		return 1;
	case CS__OPT_DURATION:
		cfg->duration = cs__parse_secs("--duration", arg);
		if (!(cfg->duration > 0))
			cs__fail_usage("--duration: want seconds > 0, got '%s'", arg);
		return 1;
	case CS__OPT_CONNS:
		cfg->conns = cs__parse_u64(cfg->conns_opt, arg, 1, 1000000);
		return 1;
	case CS__OPT_RATE:
		cfg->rate = (double)cs__parse_u64("--rate", arg, 1, 1000000000);
		return 1;
	case CS__OPT_WARMUP: cfg->warmup = cs__parse_secs("--warmup", arg); return 1;
	case CS__OPT_THREADS: cfg->threads = cs__parse_u64("--threads", arg, 1, 256); return 1;
	case CS__OPT_PID: cfg->pid = (pid_t)cs__parse_u64("--pid", arg, 1, 1u << 30); return 1;
	case CS__OPT_JSON: cfg->json = arg; return 1;
	case CS__OPT_TLS: cfg->tls = 1; return 1;
	case CS__OPT_TLS_CA: cfg->tls = 1; cfg->tls_ca = arg; return 1;
	case CS__OPT_HELP:
		fputs(usage, stdout);
		exit(0);
	default:
		return 0;
	}
}

void cs__load_check(struct cs__load_cfg *cfg, int argc, char **argv)
{
	if (optind != argc)
		cs__fail_usage("%s: unexpected argument '%s' (try --help)", cfg->mode, argv[optind]);
	if (!cfg->target_str)
		cs__fail_usage("%s: --target is required (try --help)", cfg->mode);
	if (!cfg->conns)
		cs__fail_usage("%s: %s is required (try --help)", cfg->mode, cfg->conns_opt);
	if (cfg->threads > cfg->conns)
		cfg->threads = cfg->conns;
}

/* ---- worker side ---- */

static struct cs__conn *conn_at(const struct cs__worker *w, size_t i)
{
	return (struct cs__conn *)(w->conns + i * w->cfg->sc->conn_size);
}

static int in_window(const struct cs__worker *w, uint64_t now)
{
	return now >= w->cfg->t_measure && now < w->cfg->t_end;
}

void cs__worker_answered(struct cs__worker *w, uint64_t now, uint64_t t0, uint64_t bytes)
{
	uint64_t us = (now - t0 + 500) / 1000;

	cs__live_ops(w->live, 1, us, 1);
	if (!in_window(w, now))
		return;
	w->ops++;
	w->bytes += bytes;
	cs__hist_record(&w->hist, us);
}

void cs__worker_moved(struct cs__worker *w, uint64_t now, uint64_t bytes)
{
	cs__live_ops(w->live, bytes, 0, 0);
	if (!in_window(w, now))
		return;
	w->ops += bytes;
	w->bytes += bytes;
}

void cs__worker_error(struct cs__worker *w, enum cs__err kind, const char *why)
{
	uint64_t total = 0;

	for (int k = 0; k < CS__ERR_KINDS; k++)
		total += w->errors[k];
	if (!total)
		snprintf(w->first_error, sizeof(w->first_error), "%s: %s",
			 cs__err_name(kind), why);
	w->errors[kind]++;
	cs__live_error(w->live);
}

static void conn_close(struct cs__worker *w, struct cs__conn *c)
{
	if (c->tls) {
		cs__tls_free(c->tls);
		c->tls = NULL;
	}
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->connecting = c->handshaking = 0;
	w->alive--;
}

void cs__conn_fail(struct cs__worker *w, struct cs__conn *c, enum cs__err kind,
		   const char *why)
{
	cs__worker_error(w, kind, why);
	conn_close(w, c);
}

void cs__conn_fail_errno(struct cs__worker *w, struct cs__conn *c, int err)
{
	cs__conn_fail(w, c, cs__err_of_errno(err), err == EPROTO ? cs__tls_why() : strerror(err));
}

void cs__conn_reconnect(struct cs__worker *w, struct cs__conn *c)
{
	if (c->tls && w->cfg->tls_resume) {
		struct WOLFSSL_SESSION *s = cs__tls_session(c->tls);
		if (s) {
			cs__tls_session_free(c->resume);
			c->resume = s;
		}
	}
	conn_close(w, c);
	c->connecting = 1; /* closed, and to be connected again */
	w->redo[w->nredo++] = c;
}

ssize_t cs__conn_recv(struct cs__conn *c, void *buf, size_t len)
{
	if (c->tls)
		return cs__tls_recv(c->tls, buf, len);
	return recv(c->fd, buf, len, 0);
}

ssize_t cs__conn_send(struct cs__conn *c, const void *buf, size_t len)
{
	if (c->tls)
		return cs__tls_send(c->tls, buf, len);
	return send(c->fd, buf, len, MSG_NOSIGNAL);
}

void cs__conn_shutdown(struct cs__conn *c)
{
	if (c->tls)
		cs__tls_close_notify(c->tls);
	shutdown(c->fd, SHUT_WR);
}

/* Start the deferred reconnects (see the top). */
static void start_reconnects(struct cs__worker *w)
{
	while (w->nredo) {
		struct cs__conn *c = w->redo[--w->nredo];
		c->t_open = cs__now_ns();
		int fd = cs__connect_start(&w->cfg->target, c->index);
		if (fd < 0) {
			cs__worker_error(w, CS__ERR_CONNECT, strerror(-fd));
			c->connecting = 0;
			continue;
		}
		struct epoll_event ev = {
			.events = EPOLLIN | EPOLLOUT | EPOLLET,
			.data.ptr = c,
		};
		c->fd = fd;
		w->alive++;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			cs__conn_fail_errno(w, c, errno);
			continue;
		}
		if (c->flight.t) { /* what was in flight died with the old one */
			c->flight.head = c->flight.count = 0;
		}
	}
}

static void offer(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	if (c->fd >= 0 && !c->connecting)
		w->cfg->sc->offer(w, c, now);
}

/* A handshake is done: count it (and whether it resumed a session). */
static void handshaken(struct cs__worker *w, struct cs__conn *c, uint64_t now)
{
	if (!w->negotiated[0])
		cs__tls_describe(c->tls, w->negotiated, sizeof(w->negotiated));
	if (!in_window(w, now))
		return;
	w->handshakes++;
	w->resumed += (uint64_t)cs__tls_resumed(c->tls);
}

/* One step of a reconnect's handshake; offer() once it is done. */
static void handshake_step(struct cs__worker *w, struct cs__conn *c)
{
	int r = cs__tls_handshake(c->tls);

	if (r < 0) {
		cs__conn_fail_errno(w, c, errno);
		return;
	}
	if (r == 0)
		return; /* the next event goes on */
	uint64_t now = cs__now_ns();
	handshaken(w, c, now);
	c->connecting = c->handshaking = 0;
	offer(w, c, now);
}

/* A reconnect finished (writable) or failed. */
static void connected(struct cs__worker *w, struct cs__conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		cs__conn_fail(w, c, CS__ERR_CONNECT, strerror(err));
		return;
	}
	if (w->cfg->tls) {
		c->tls = cs__tls_new(w->cfg->tls_ctx, c->fd, c->resume);
		if (!c->tls) {
			cs__conn_fail(w, c, CS__ERR_OTHER, "out of memory for a TLS session");
			return;
		}
		c->handshaking = 1;
		handshake_step(w, c);
		return;
	}
	c->connecting = 0;
	offer(w, c, cs__now_ns());
}

static void dispatch(struct cs__worker *w, struct cs__conn *c, uint32_t events)
{
	if (c->fd < 0)
		return; /* closed earlier in this batch */
	if (c->handshaking) {
		handshake_step(w, c);
		return;
	}
	if (c->connecting) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			connected(w, c);
		return;
	}
	w->cfg->sc->event(w, c, events);
}

static struct timespec ns_to_ts(uint64_t ns)
{
	return (struct timespec){
		.tv_sec = (time_t)(ns / CS__NS_PER_SEC),
		.tv_nsec = (long)(ns % CS__NS_PER_SEC),
	};
}

static void *worker_main(void *arg)
{
	struct cs__worker *w = arg;
	const struct cs__load_cfg *cfg = w->cfg;
	struct epoll_event events[MAX_EVENTS];

	for (size_t i = 0; i < w->nconns; i++)
		offer(w, conn_at(w, i), cs__now_ns());
	for (;;) {
		uint64_t now = cs__now_ns();
		int64_t turn;

		start_reconnects(w);
		if (now >= cfg->t_end || !w->alive)
			break;
		while ((turn = cs__pace_due(&w->pace, now)) >= 0)
			offer(w, conn_at(w, (size_t)turn), now);
		cs__live_publish(w->live, now);

		uint64_t wake = cs__pace_wake(&w->pace);
		if (wake > now + POLL_NS)
			wake = now + POLL_NS;
		if (wake > cfg->t_end)
			wake = cfg->t_end;
		struct timespec ts = ns_to_ts(wake > now ? wake - now : 0);
		int n = epoll_pwait2(w->epfd, events, MAX_EVENTS, &ts, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			cs__worker_error(w, CS__ERR_OTHER, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++)
			dispatch(w, events[i].data.ptr, events[i].events);
	}
	if (cfg->sc->finish)
		cfg->sc->finish(w);
	if (cfg->tls)
		cs__tls_thread_end();
	return NULL;
}

/* ---- main thread ---- */

static struct cs__worker *workers_new(const struct cs__load_cfg *cfg, struct cs__live *lives)
{
	struct cs__worker *ws = calloc(cfg->threads, sizeof(*ws));
	size_t per = (cfg->conns + cfg->threads - 1) / cfg->threads;

	if (!ws)
		cs__fail("out of memory");
	for (uint64_t t = 0; t < cfg->threads; t++) {
		struct cs__worker *w = &ws[t];
		w->cfg = cfg;
		w->live = &lives[t];
		w->conns = calloc(per, cfg->sc->conn_size);
		w->redo = calloc(per, sizeof(*w->redo));
		w->scratch = malloc(cfg->scratch);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (!w->conns || !w->redo || !w->scratch || w->epfd < 0)
			cs__fail("cannot set up thread %llu: %s", (unsigned long long)t,
				 strerror(errno));
		cs__hist_reset(&w->hist);
	}
	return ws;
}

static void workers_free(const struct cs__load_cfg *cfg, struct cs__worker *ws)
{
	for (uint64_t t = 0; t < cfg->threads; t++) {
		for (size_t i = 0; i < ws[t].nconns; i++) {
			struct cs__conn *c = conn_at(&ws[t], i);
			if (c->tls)
				cs__tls_free(c->tls);
			cs__tls_session_free(c->resume);
			if (c->fd >= 0)
				close(c->fd);
			cs__flight_free(&c->flight);
		}
		close(ws[t].epfd);
		free(ws[t].conns);
		free(ws[t].redo);
		free(ws[t].scratch);
	}
	free(ws);
}

/* A churn scenario's connection: not opened now but first thing in the
 * worker's loop, as a reconnect. */
static void defer_conn(struct cs__worker *w, uint64_t i)
{
	struct cs__conn *c = conn_at(w, w->nconns++);

	c->fd = -1;
	c->index = i;
	c->connecting = 1;
	if (w->cfg->depth && cs__flight_init(&c->flight, w->cfg->depth, (uint32_t)(w->nconns - 1)) < 0)
		cs__fail("out of memory");
	w->redo[w->nredo++] = c;
}

/* The handshake of a connection opened before the clock starts: blocking,
 * bounded by the socket's timeouts. */
static void first_handshake(const struct cs__load_cfg *cfg, struct cs__worker *w,
			    struct cs__conn *c)
{
	c->tls = cs__tls_new(cfg->tls_ctx, c->fd, NULL);
	if (!c->tls)
		cs__fail("out of memory for a TLS session");
	int r = cs__tls_handshake(c->tls);
	if (r <= 0)
		cs__fail("TLS handshake with %s (connection %llu): %s", cfg->target_str,
			 (unsigned long long)c->index,
			 r == 0 ? "timed out" : errno == EPROTO ? cs__tls_why() : strerror(errno));
	if (!w->negotiated[0])
		cs__tls_describe(c->tls, w->negotiated, sizeof(w->negotiated));
}

/* Open every connection (blocking, before the clock starts; with --tls,
 * handshake included) and hand them to the workers round-robin. */
static void open_conns(const struct cs__load_cfg *cfg, struct cs__worker *ws)
{
	for (uint64_t i = 0; i < cfg->conns; i++) {
		struct cs__worker *w = &ws[i % cfg->threads];
		if (cfg->sc->churn) {
			defer_conn(w, i);
			continue;
		}
		int fd = cs__connect(&cfg->target, i, CONNECT_TIMEOUT_MS);
		if (fd < 0)
			cs__fail("cannot connect to %s (connection %llu): %s", cfg->target_str,
				 (unsigned long long)i, strerror(-fd));
		struct cs__conn *c = conn_at(w, w->nconns);
		c->fd = fd;
		c->index = i;
		if (cfg->tls)
			first_handshake(cfg, w, c);
		int err = cs__set_nonblock(fd);
		if (err)
			cs__fail("fcntl: %s", strerror(-err));
		if (cfg->depth && cs__flight_init(&c->flight, cfg->depth, (uint32_t)w->nconns) < 0)
			cs__fail("out of memory");
		struct epoll_event ev = {
			.events = EPOLLIN | EPOLLOUT | EPOLLET,
			.data.ptr = c,
		};
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			cs__fail("epoll_ctl: %s", strerror(errno));
		w->nconns++;
		w->alive++;
	}
}

/* Each worker's schedule: every connection sends every conns/rate seconds;
 * worker t's turns are offset by t/rate so the workers interleave. */
static void pace_workers(const struct cs__load_cfg *cfg, struct cs__worker *ws)
{
	double interval = cfg->rate > 0 ? (double)cfg->conns * 1e9 / cfg->rate : 0;

	for (uint64_t t = 0; t < cfg->threads; t++) {
		uint64_t offset = cfg->rate > 0 ? (uint64_t)((double)t * 1e9 / cfg->rate) : 0;
		cs__pace_init(&ws[t].pace, cfg->t_start + offset, interval, ws[t].nconns);
	}
}

/* Sleep until t, showing progress once a second meanwhile. */
static void sleep_showing(uint64_t t, struct cs__progress *p, const struct cs__live *lives,
			  size_t n)
{
	for (;;) {
		uint64_t next = p->t_last + CS__NS_PER_SEC;
		if (!cs__progress_enabled() || next >= t)
			break;
		cs__sleep_until(next);
		cs__progress_show(p, lives, n, next);
	}
	cs__sleep_until(t);
}

/* Runs in the main thread while the workers work: progress, and the CPU
 * time of the server and of this process over the window. */
static void watch(const struct cs__load_cfg *cfg, const struct cs__live *lives,
		  struct cs__load_result *r)
{
	struct cs__progress p = {
		.t_start = cfg->t_start,
		.t_measure = cfg->t_measure,
		.t_last = cfg->t_start,
		.has_latency = cfg->sc->latency,
		.ops_are_bytes = !cfg->sc->latency,
	};
	struct cs__usage s0, s1;
	int ok = 1;

	sleep_showing(cfg->t_measure, &p, lives, cfg->threads);
	uint64_t c0 = cs__self_cpu_ns();
	if (cfg->pid)
		ok = cs__server_usage(cfg->pid, &s0) == 0;
	sleep_showing(cfg->t_end, &p, lives, cfg->threads);
	uint64_t c1 = cs__self_cpu_ns();
	if (cfg->pid && ok)
		ok = cs__server_usage(cfg->pid, &s1) == 0;
	cs__progress_end();
	r->load_cpu_ns = c1 - c0;
	if (cfg->pid && ok && s1.cpu_ns >= s0.cpu_ns)
		r->server_cpu_ns = s1.cpu_ns - s0.cpu_ns;
}

static void merge(const struct cs__load_cfg *cfg, const struct cs__worker *ws,
		  struct cs__load_result *r)
{
	cs__hist_reset(&r->hist);
	for (uint64_t t = 0; t < cfg->threads; t++) {
		const struct cs__worker *w = &ws[t];
		r->ops += w->ops;
		r->bytes += w->bytes;
		for (int k = 0; k < CS__ERR_KINDS; k++) {
			if (w->errors[k] && !r->errors)
				memcpy(r->first_error, w->first_error, sizeof(r->first_error));
			r->errors_by_kind[k] += w->errors[k];
			r->errors += w->errors[k];
		}
		r->conns_open += w->alive;
		r->handshakes += w->handshakes;
		r->resumed += w->resumed;
		if (!r->negotiated[0])
			memcpy(r->negotiated, w->negotiated, sizeof(r->negotiated));
		cs__hist_merge(&r->hist, &w->hist);
	}
}

int cs__load_run(struct cs__load_cfg *cfg, int argc, char **argv)
{
	struct cs__load_result *r = calloc(1, sizeof(*r));
	struct cs__live *lives = calloc(cfg->threads, sizeof(*lives));
	struct cs__usage u;

	if (!r || !lives)
		cs__fail("out of memory");
	r->server_cpu_ns = -1;
	if (cfg->pid && cs__server_usage(cfg->pid, &u) < 0)
		cs__fail("--pid %d: no such process", (int)cfg->pid);
	if (cfg->tls)
		cfg->tls_ctx = cs__tls_ctx_new(cfg->tls_ca);
	uint64_t nofile = cs__raise_nofile();
	if (cfg->conns + 16 > nofile)
		cs__fail("%s %llu needs more fds than RLIMIT_NOFILE %llu", cfg->conns_opt,
			 (unsigned long long)cfg->conns, (unsigned long long)nofile);

	struct cs__worker *ws = workers_new(cfg, lives);
	open_conns(cfg, ws);
	cfg->t_start = cs__now_ns();
	cfg->t_measure = cfg->t_start + (uint64_t)(cfg->warmup * CS__NS_PER_SEC);
	cfg->t_end = cfg->t_measure + (uint64_t)(cfg->duration * CS__NS_PER_SEC);
	pace_workers(cfg, ws);
	for (uint64_t t = 0; t < cfg->threads; t++)
		cs__live_init(&lives[t], cfg->t_start);
	for (uint64_t t = 0; t < cfg->threads; t++)
		if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0)
			cs__fail("pthread_create failed");
	watch(cfg, lives, r);
	for (uint64_t t = 0; t < cfg->threads; t++)
		pthread_join(ws[t].tid, NULL);
	merge(cfg, ws, r);
	workers_free(cfg, ws);
	free(lives);
	if (cfg->tls_ctx)
		cs__tls_ctx_free(cfg->tls_ctx);

	cs__load_report(cfg, r, argc, argv);
	int status = 0;
	if (r->errors) {
		fprintf(stderr, "cosockd-bench: %llu error%s (first: %s)\n",
			(unsigned long long)r->errors, r->errors == 1 ? "" : "s", r->first_error);
		status = 1;
	} else if (!r->ops) {
		fprintf(stderr, "cosockd-bench: nothing completed in %.3g s\n", cfg->duration);
		status = 1;
	}
	free(r);
	return status;
}
