/*
 * bare_echo.c - cs-bare-echo, the bare-C reference that cosockd's echo app is
 * measured against.
 *
 *   cs-bare-echo --listen ADDR:PORT
 *
 * A plain single-threaded, edge-triggered epoll echo server, written the way
 * a careful person would write one by hand and nothing more: non-blocking
 * accept4(), one shared 16 KiB read buffer, write() straight back, and a
 * per-connection pending buffer (allocated only while a write is short) that
 * is flushed on EPOLLOUT. While a connection has pending bytes it is not
 * read, so a client that does not read its echo is slowed by TCP flow
 * control instead of growing our memory.
 *
 * Runs until killed. IPv4 only.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bare_util.h"

#define READ_SIZE (16 * 1024)
#define MAX_EVENTS 256

/* One accepted connection. Idle, it is just these few bytes. */
struct conn {
	int fd;
	char *pending;   /* unsent echo bytes, NULL when none */
	size_t pend_off; /* first unsent byte in pending */
	size_t pend_len; /* bytes in pending */
};

/* The listener is told apart from connections by this epoll tag. */
#define LISTENER_TAG NULL

static void die(const char *what)
{
	cs__bare_die("cs-bare-echo", what);
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* also removes it from the epoll set */
	free(c->pending);
	free(c);
}

/* Switch EPOLLOUT interest on or off; EPOLLIN stays on throughout. */
static int conn_watch_out(int epfd, struct conn *c, int on)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLET | (on ? EPOLLOUT : 0),
		.data.ptr = c,
	};
	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Keep the unsent tail of an echo until the socket is writable again. */
static int conn_keep(struct conn *c, const char *data, size_t len)
{
	c->pending = malloc(len);
	if (!c->pending)
		return -1;
	memcpy(c->pending, data, len);
	c->pend_off = 0;
	c->pend_len = len;
	return 0;
}

/* Try to send the pending bytes. Returns 1 when all are sent, 0 when some
 * remain (wait for EPOLLOUT), -1 on a socket error. */
static int conn_flush(struct conn *c)
{
	while (c->pend_off < c->pend_len) {
		ssize_t n = write(c->fd, c->pending + c->pend_off,
				  c->pend_len - c->pend_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		c->pend_off += (size_t)n;
	}
	free(c->pending);
	c->pending = NULL;
	return 1;
}

/* Echo one chunk. Returns 1 when fully written, 0 when the tail was kept as
 * pending, -1 on error. */
static int conn_echo(struct conn *c, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(c->fd, buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			return conn_keep(c, buf + off, len - off) < 0 ? -1 : 0;
		}
		off += (size_t)n;
	}
	return 1;
}

/* Service a connection after an edge. With edge-triggered epoll we must
 * drain the socket until EAGAIN, unless a short write makes us stop reading
 * (then EPOLLOUT brings us back here, and we resume reading). */
static void conn_service(int epfd, struct conn *c, char *buf)
{
	if (c->pending) {
		int r = conn_flush(c);
		if (r < 0)
			goto fail;
		if (r == 0)
			return; /* still blocked; EPOLLOUT is on */
		if (conn_watch_out(epfd, c, 0) < 0)
			goto fail;
	}
	for (;;) {
		ssize_t n = read(c->fd, buf, READ_SIZE);
		if (n == 0)
			goto fail; /* EOF */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			goto fail;
		}
		int r = conn_echo(c, buf, (size_t)n);
		if (r < 0)
			goto fail;
		if (r == 0) {
			if (conn_watch_out(epfd, c, 1) < 0)
				goto fail;
			return;
		}
	}
fail:
	conn_close(c);
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
				perror("cs-bare-echo: accept4");
			/* EMFILE and friends: the connection stays queued;
			 * the next edge retries. */
			return;
		}
		/* Echo replies are small and latency-bound: do not let Nagle
		 * hold them back. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		struct conn *c = calloc(1, sizeof(*c));
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			perror("cs-bare-echo: epoll_ctl");
			conn_close(c);
		}
	}
}

static void run(int epfd, int lfd)
{
	static struct epoll_event events[MAX_EVENTS];
	static char buf[READ_SIZE];

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (c == LISTENER_TAG)
				accept_all(epfd, lfd);
			else
				conn_service(epfd, c, buf);
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: cs-bare-echo --listen ADDR:PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;

	if (argc != 3 || strcmp(argv[1], "--listen") != 0)
		usage();
	if (cs__bare_parse_addr(argv[2], &sa) < 0) {
		fprintf(stderr, "cs-bare-echo: bad address '%s'\n", argv[2]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a peer reset must not kill us */
	cs__bare_raise_nofile();

	int lfd = cs__bare_listen("cs-bare-echo", &sa);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET,
				 .data.ptr = LISTENER_TAG};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	run(epfd, lfd);
	return 0;
}
