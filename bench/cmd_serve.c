/*
 * cmd_serve.c - "cosockd-bench serve KIND": the backends a proxy under test
 * forwards to, so that a whole benchmark needs nothing but this binary.
 *
 *   serve http   --listen ADDR:PORT [--body BYTES (128)] [--threads N]
 *   serve sink   --listen ADDR:PORT [--threads N]   read and discard
 *   serve source --listen ADDR:PORT [--threads N] [--chunk BYTES (65536)]
 *                                                   write the pattern forever
 *   serve echo   --listen ADDR:PORT [--threads N]
 *   serve ws     --listen ADDR:PORT [--threads N]   WebSocket echo, any path
 *
 * Once listening it prints "listening on ADDR:PORT" (the real port when
 * PORT is 0) on stdout, and runs until SIGTERM or SIGINT, then exits 0.
 * Each thread has its own listener (SO_REUSEPORT when there are several,
 * so the kernel spreads the connections) and its own edge-triggered epoll
 * loop; the main thread only waits for the signal. The HTTP responder is
 * in serve_http.c, the WebSocket echo server in serve_ws.c; the three
 * plain kinds are here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "serve.h"

#define MAX_EVENTS 256
#define ECHO_PENDING_MAX SERVE_SCRATCH

/* ---- sink: read and discard ---- */

/* Read until EAGAIN, throwing the bytes away. 0, or -1 at EOF or error. */
static int drain(int fd, unsigned char *scratch)
{
	for (;;) {
		ssize_t n = read(fd, scratch, SERVE_SCRATCH);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN ? 0 : -1;
	}
}

static int sink_service(struct serve_conn *c, uint32_t events, unsigned char *scratch)
{
	return drain(c->fd, scratch);
}

/* ---- source: write the pattern forever ---- */

struct source_conn {
	struct serve_conn base;
	uint64_t pos; /* stream bytes written */
};

static unsigned char *pattern; /* chunk + CS__PATTERN_PERIOD bytes */
static size_t chunk;

static int source_setup(const struct serve_opts *o)
{
	chunk = (size_t)o->chunk;
	pattern = malloc(chunk + CS__PATTERN_PERIOD);
	if (!pattern)
		return -1;
	cs__fill_pattern(pattern, chunk + CS__PATTERN_PERIOD);
	return 0;
}

static int source_service(struct serve_conn *c, uint32_t events, unsigned char *scratch)
{
	struct source_conn *s = (struct source_conn *)c;

	/* The client sends nothing; reading tells us when it is gone. */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && drain(c->fd, scratch) < 0)
		return -1;
	for (;;) {
		ssize_t n = send(c->fd, pattern + s->pos % CS__PATTERN_PERIOD, chunk, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		s->pos += (uint64_t)n;
	}
}

/* ---- echo ---- */

/* The unsent tail of an echo is kept (at most one read's worth) and the
 * connection is not read until it is written. */
struct echo_conn {
	struct serve_conn base;
	unsigned char *pending; /* NULL when none */
	size_t pend_off, pend_len;
};

/* Write buf[0, len); keep what the socket does not take. 1: all written,
 * 0: the rest is pending, -1: error. */
static int echo_write(struct echo_conn *e, const unsigned char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(e->base.fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			if (!e->pending && !(e->pending = malloc(ECHO_PENDING_MAX)))
				return -1;
			memmove(e->pending, buf + off, len - off);
			e->pend_off = 0;
			e->pend_len = len - off;
			return 0;
		}
		off += (size_t)n;
	}
	return 1;
}

static int echo_service(struct serve_conn *c, uint32_t events, unsigned char *scratch)
{
	struct echo_conn *e = (struct echo_conn *)c;

	if (e->pending) {
		int r = echo_write(e, e->pending + e->pend_off, e->pend_len);
		if (r <= 0)
			return r;
		free(e->pending);
		e->pending = NULL;
	}
	for (;;) {
		ssize_t n = read(c->fd, scratch, SERVE_SCRATCH);
		if (n == 0)
			return -1; /* everything read has been echoed */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		int r = echo_write(e, scratch, (size_t)n);
		if (r <= 0)
			return r;
	}
}

static void echo_fini(struct serve_conn *c)
{
	free(((struct echo_conn *)c)->pending);
}

static const struct serve_kind kinds[] = {
	{.name = "sink", .conn_size = sizeof(struct serve_conn), .service = sink_service},
	{.name = "source", .conn_size = sizeof(struct source_conn), .setup = source_setup,
	 .service = source_service},
	{.name = "echo", .conn_size = sizeof(struct echo_conn), .service = echo_service,
	 .fini = echo_fini},
};

/* ---- the loop ---- */

struct serve_thread {
	pthread_t tid;
	const struct serve_kind *kind;
	int lfd, epfd;
	unsigned char *scratch;
	struct serve_conn *conns; /* open connections */
};

static void conn_close(struct serve_thread *t, struct serve_conn *c)
{
	close(c->fd); /* also leaves the epoll set */
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (t->kind->fini)
		t->kind->fini(c);
	free(c);
}

/* Accept all that is waiting (the listener is edge-triggered). */
static void accept_all(struct serve_thread *t)
{
	int one = 1;

	for (;;) {
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				fprintf(stderr, "cosockd-bench serve: accept: %s\n", strerror(errno));
			return; /* EMFILE and such: the next edge retries */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct serve_conn *c = calloc(1, t->kind->conn_size);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->next = t->conns;
		if (t->conns)
			t->conns->prev = c;
		t->conns = c;
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(t, c);
	}
}

static void *serve_main(void *arg)
{
	struct serve_thread *t = arg;
	struct epoll_event events[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(t->epfd, events, MAX_EVENTS, -1);
		for (int i = 0; i < n; i++) {
			struct serve_conn *c = events[i].data.ptr;
			if (!c)
				accept_all(t);
			else if (t->kind->service(c, events[i].events, t->scratch) < 0)
				conn_close(t, c);
		}
		if (n < 0 && errno != EINTR)
			cs__fail("serve: epoll_wait: %s", strerror(errno));
	}
	return NULL;
}

/* A listener on sa; with reuseport, one of several on the same port.
 * Returns the fd or -errno. */
static int listen_on(const struct sockaddr_in *sa, int reuseport)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void thread_setup(struct serve_thread *t, const struct serve_kind *kind,
			 struct sockaddr_in *sa, int reuseport)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
	socklen_t len = sizeof(*sa);

	t->kind = kind;
	t->lfd = listen_on(sa, reuseport);
	if (t->lfd < 0)
		cs__fail("serve: cannot listen on %s:%u: %s", inet_ntoa(sa->sin_addr),
			 ntohs(sa->sin_port), strerror(-t->lfd));
	getsockname(t->lfd, (struct sockaddr *)sa, &len); /* port 0: the real one */
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->scratch = malloc(SERVE_SCRATCH);
	if (t->epfd < 0 || !t->scratch || epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &ev) < 0)
		cs__fail("serve: cannot set up a thread: %s", strerror(errno));
}

static const char usage[] =
	"usage: cosockd-bench serve http|sink|source|echo|ws --listen A.B.C.D:PORT\n"
	"  [--threads N (1)] [--body BYTES (128), http] [--chunk BYTES (65536), source]\n";

static const struct serve_kind *find_kind(const char *name)
{
	if (!strcmp(name, cs__serve_http.name))
		return &cs__serve_http;
	if (!strcmp(name, cs__serve_ws.name))
		return &cs__serve_ws;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(name, kinds[i].name))
			return &kinds[i];
	return NULL;
}

int cs__cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"threads", required_argument, NULL, 'T'},
		{"body", required_argument, NULL, 'b'},
		{"chunk", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct serve_opts so = {.body = 128, .chunk = 65536};
	struct sockaddr_in sa;
	const char *listen_str = NULL;
	uint64_t threads = 1;
	int o;

	if (argc >= 2 && !strcmp(argv[1], "--help")) {
		fputs(usage, stdout);
		return 0;
	}
	const struct serve_kind *kind = argc >= 2 ? find_kind(argv[1]) : NULL;
	if (!kind)
		cs__fail_usage("serve: want http, sink, source, echo or ws, got '%s' (try --help)",
			       argc >= 2 ? argv[1] : "");
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			cs__parse_listen("--listen", optarg, &sa);
			listen_str = optarg;
			break;
		case 'T': threads = cs__parse_u64("--threads", optarg, 1, 256); break;
		case 'b': so.body = cs__parse_u64("--body", optarg, 0, 64u << 20); break;
		case 'c': so.chunk = cs__parse_u64("--chunk", optarg, 1, 16u << 20); break;
		case 'h': fputs(usage, stdout); return 0;
		default: return 2; /* getopt said why */
		}
		if ((o == 'b' && kind != &cs__serve_http) || (o == 'c' && strcmp(kind->name, "source")))
			cs__fail_usage("serve %s: --%s is not one of its options", kind->name,
				       o == 'b' ? "body" : "chunk");
	}
	if (optind != argc)
		cs__fail_usage("serve: unexpected argument '%s'", argv[optind]);
	if (!listen_str)
		cs__fail_usage("serve: --listen is required (try --help)");
	if (kind->setup && kind->setup(&so) < 0)
		cs__fail("serve: out of memory");

	/* Only the main thread takes the stop signals. */
	sigset_t stop;
	int sig;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	cs__raise_nofile();

	struct serve_thread *ts = calloc(threads, sizeof(*ts));
	if (!ts)
		cs__fail("serve: out of memory");
	for (uint64_t i = 0; i < threads; i++)
		thread_setup(&ts[i], kind, &sa, threads > 1);
	printf("listening on %s:%u\n", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
	fflush(stdout);
	for (uint64_t i = 0; i < threads; i++)
		if (pthread_create(&ts[i].tid, NULL, serve_main, &ts[i]) != 0)
			cs__fail("serve: pthread_create failed");
	while (sigwait(&stop, &sig) != 0)
		;
	return 0; /* exit() ends the serving threads with the process */
}
