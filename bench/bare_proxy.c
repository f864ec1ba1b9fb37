/*
 * bare_proxy.c - cs-bare-proxy, the bare-C reference that cosockd's proxy
 * app is measured against.
 *
 *   cs-bare-proxy --listen ADDR:PORT --upstream ADDR:PORT
 *
 * A plain single-threaded, edge-triggered epoll TCP relay, written the way
 * a careful person would write one by hand and nothing more. Every accepted
 * connection gets a non-blocking connect to the upstream and one fixed
 * BUF_SIZE ring buffer per direction. A side is not read while the buffer
 * towards its peer is full, so a slow reader slows its writer through TCP
 * flow control and memory stays at two buffers per connection. An EOF is
 * passed on as shutdown(SHUT_WR) once the buffer it ends has drained; the
 * pair is closed when both directions have ended, or at the first error.
 *
 * Each socket remembers whether its last read or write stopped at EAGAIN;
 * an edge clears that, so no syscall is spent on a socket known to be
 * empty or full. Prints "listening on ADDR:PORT" (the real port for port
 * 0) on stdout and runs until killed. IPv4 only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bare_util.h"

#define BUF_SIZE (64 * 1024) /* a power of two: ring offsets wrap by mask */
#define MAX_EVENTS 256

/* Bytes on their way from one side to the other. */
struct ring {
	size_t head, len; /* first byte, bytes held */
	char data[BUF_SIZE];
};

/* One end of a relayed connection. */
struct side {
	struct pair *pair;
	int fd;
	int readable, writable; /* no EAGAIN seen since the last edge */
	int eof;                /* read returned 0 */
	int shut;               /* we sent our FIN (shutdown SHUT_WR) */
	struct ring out;        /* bytes to write to this side */
};

struct pair {
	struct side client, upstream;
	int connecting;    /* the upstream connect is under way */
	int closed;        /* fds closed; freed after the event batch */
	struct pair *next; /* in the list of closed pairs */
};

static struct sockaddr_in upstream_addr;
static struct pair *closed_pairs; /* to free once the batch is done */

/* Close both fds. Later events of the same batch may still name the
 * pair, so it is only freed once the batch is done (free_closed). */
static void pair_close(struct pair *p)
{
	close(p->client.fd); /* also leaves the epoll set */
	if (p->upstream.fd >= 0)
		close(p->upstream.fd);
	p->closed = 1;
	p->next = closed_pairs;
	closed_pairs = p;
}

static void free_closed(void)
{
	while (closed_pairs) {
		struct pair *p = closed_pairs;
		closed_pairs = p->next;
		free(p);
	}
}

/* The ring's free space (for reading into) or its bytes (for writing
 * from) as at most two iovecs; returns how many. */
static int ring_iov(struct ring *r, int space, struct iovec iov[2])
{
	size_t start = space ? (r->head + r->len) & (BUF_SIZE - 1) : r->head;
	size_t total = space ? BUF_SIZE - r->len : r->len;
	size_t first = BUF_SIZE - start < total ? BUF_SIZE - start : total;

	iov[0] = (struct iovec){r->data + start, first};
	iov[1] = (struct iovec){r->data, total - first};
	return total > first ? 2 : 1;
}

/* Read from src into the ring towards dst. 1: progress; 0: none (empty
 * socket, full ring, or EOF already seen); -1: error. */
static int pump_in(struct side *src, struct side *dst)
{
	struct iovec iov[2];

	if (!src->readable || src->eof || dst->out.len == BUF_SIZE)
		return 0;
	ssize_t n = readv(src->fd, iov, ring_iov(&dst->out, 1, iov));
	if (n < 0) {
		if (errno == EAGAIN)
			src->readable = 0;
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
	if (n == 0)
		src->eof = 1;
	dst->out.len += (size_t)n;
	return 1;
}

/* Write the ring out to dst; pass on the FIN once it has drained. Same
 * results as pump_in. */
static int pump_out(struct side *src, struct side *dst)
{
	struct iovec iov[2];

	if (!dst->out.len) {
		if (src->eof && !dst->shut) {
			dst->shut = 1;
			shutdown(dst->fd, SHUT_WR);
		}
		return 0;
	}
	if (!dst->writable)
		return 0;
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)ring_iov(&dst->out, 0, iov)};
	ssize_t n = sendmsg(dst->fd, &msg, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EAGAIN)
			dst->writable = 0;
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
	dst->out.head = (dst->out.head + (size_t)n) & (BUF_SIZE - 1);
	dst->out.len -= (size_t)n;
	return 1;
}

/* Move bytes both ways until nothing moves. Returns 0, or -1 when the pair
 * is done (both directions ended) or failed. */
static int pair_pump(struct pair *p)
{
	struct side *c = &p->client, *u = &p->upstream;

	for (;;) {
		/* Nothing goes to or comes from the upstream before it is
		 * connected; the client is read meanwhile, up to a ring. */
		int a = pump_in(c, u), b = p->connecting ? 0 : pump_out(c, u);
		int d = p->connecting ? 0 : pump_in(u, c), e = pump_out(u, c);
		if (a < 0 || b < 0 || d < 0 || e < 0)
			return -1;
		if (!(a | b | d | e))
			break;
	}
	return c->shut && u->shut ? -1 : 0;
}

/* The upstream connect finished (EPOLLOUT) or failed. */
static int upstream_connected(struct pair *p)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(p->upstream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
		return -1;
	p->connecting = 0;
	return 0;
}

static void side_event(struct side *s, uint32_t events)
{
	struct pair *p = s->pair;

	if (p->closed)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		s->readable = 1;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->writable = 1;
	if (s == &p->upstream && p->connecting) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (upstream_connected(p) < 0) {
			pair_close(p);
			return;
		}
	}
	if (pair_pump(p) < 0)
		pair_close(p);
}

static int watch(int epfd, struct side *s)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = s};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

/* A new client: connect to the upstream (non-blocking) and relay. */
static void pair_open(int epfd, int cfd)
{
	int one = 1;
	struct pair *p = calloc(1, sizeof(*p));

	if (!p) {
		close(cfd);
		return;
	}
	p->client = (struct side){.pair = p, .fd = cfd};
	p->upstream = (struct side){.pair = p, .fd = -1};
	p->connecting = 1;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ufd < 0)
		goto fail;
	p->upstream.fd = ufd;
	setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(ufd, (struct sockaddr *)&upstream_addr, sizeof(upstream_addr)) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	if (watch(epfd, &p->client) < 0 || watch(epfd, &p->upstream) < 0)
		goto fail;
	return;
fail:
	pair_close(p); /* freed after the batch, with the others */
}

/* Accept everything that is waiting (edge-triggered listener). */
static void accept_all(int epfd, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("cs-bare-proxy: accept4");
			return; /* EMFILE and such: the next edge retries */
		}
		pair_open(epfd, fd);
	}
}

static void run(int epfd, int lfd)
{
	static struct epoll_event events[MAX_EVENTS];

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			cs__bare_die("cs-bare-proxy", "epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct side *s = events[i].data.ptr;
			if (!s)
				accept_all(epfd, lfd);
			else
				side_event(s, events[i].events);
		}
		free_closed();
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: cs-bare-proxy --listen ADDR:PORT --upstream ADDR:PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;

	if (argc != 5 || strcmp(argv[1], "--listen") || strcmp(argv[3], "--upstream"))
		usage();
	if (cs__bare_parse_addr(argv[2], &sa) < 0 ||
	    cs__bare_parse_addr(argv[4], &upstream_addr) < 0) {
		fprintf(stderr, "cs-bare-proxy: bad address\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	cs__bare_raise_nofile();
	int lfd = cs__bare_listen("cs-bare-proxy", &sa);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		cs__bare_die("cs-bare-proxy", "epoll");
	printf("listening on %s:%u\n", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
	fflush(stdout);
	run(epfd, lfd);
	return 0;
}
