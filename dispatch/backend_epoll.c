/*
 * backend_epoll.c - the readiness backend: edge-triggered epoll, with the
 * syscall performed when the fd is ready and the owner has asked.
 *
 * Each fd is registered once for IN|OUT|RDHUP with EPOLLET. An edge only
 * records that the fd may be readable or writable (CS__READABLE,
 * CS__WRITABLE); the flag is cleared when a syscall says EAGAIN. Nothing is
 * read before the owner asks, so an idle or unread socket keeps its data in
 * the kernel and costs no buffer here: received bytes go to one scratch
 * buffer per loop, which the owner copies before its next dispatcher call.
 * A listener stopped by cs_conn_accept_stop() leaves the epoll set, so the
 * connections that other processes will take do not wake this loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

#define MAX_EVENTS 1024
#define WAKE_TAG UINT64_MAX

struct epoll_state {
	int epfd;
	struct epoll_event events[MAX_EVENTS];
	char scratch[CS_RECV_CHUNK];
};

static struct epoll_state *state(cs_loop *loop) { return loop->backend_data; }

static int ep_init(cs_loop *loop)
{
	struct epoll_state *st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (st->epfd < 0) {
		int err = -errno;
		free(st);
		return err;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
	if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
		int err = -errno;
		close(st->epfd);
		free(st);
		return err;
	}
	loop->backend_data = st;
	return 0;
}

static void ep_fini(cs_loop *loop)
{
	struct epoll_state *st = state(loop);
	close(st->epfd);
	free(st);
	loop->backend_data = NULL;
}

static int ep_add(cs_loop *loop, cs_conn *c)
{
	struct epoll_event ev = {.data.u64 = cs__tag(loop, c)};
	ev.events = (c->flags & CS__LISTENER) ? EPOLLIN | EPOLLET
					       : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	/* Assume ready until a syscall says EAGAIN: a connected socket's
	 * first edge may already have passed, and a wrong guess costs one
	 * syscall. */
	c->flags |= CS__READABLE | ((c->flags & CS__LISTENER) ? 0 : CS__WRITABLE);
	if (epoll_ctl(state(loop)->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		return -errno;
	return 0;
}

/* accept4 once; -EAGAIN clears readiness. Transient per-connection failures
 * (the peer gave up before we accepted) are skipped. */
static int try_accept(cs_conn *c)
{
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		int err = errno;
		if (err == EINTR || err == ECONNABORTED || err == EPROTO)
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK)
			c->flags &= ~CS__READABLE;
		return -err;
	}
}

static int ep_accept(cs_loop *loop, cs_conn *c)
{
	if (c->flags & CS__ACCEPT_STOPPED) {
		/* Nothing was taken ahead; a deferred answer is void now. */
		c->flags &= ~CS__WANT_ACCEPT;
		return -ESHUTDOWN;
	}
	if (c->flags & CS__READABLE) {
		int fd = try_accept(c);
		if (fd != -EAGAIN)
			return fd;
	}
	c->flags |= CS__WANT_ACCEPT;
	return -EAGAIN;
}

static void ep_accept_cancel(cs_loop *loop, cs_conn *c) {}

/* Leave the epoll set, so that connections queued for the processes that
 * share the socket neither wake this loop nor get accepted here. */
static void ep_accept_stop(cs_loop *loop, cs_conn *c)
{
	epoll_ctl(state(loop)->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	c->flags &= ~CS__READABLE;
	if (c->flags & CS__WANT_ACCEPT)
		cs__accept_shutdown_later(loop, c);
}

static ssize_t try_recv(cs_loop *loop, cs_conn *c, const char **data)
{
	char *buf = state(loop)->scratch;
	for (;;) {
		ssize_t n = recv(c->fd, buf, CS_RECV_CHUNK, 0);
		if (n >= 0) {
			/* A short read drained the socket: the next arrival is a
			 * new edge, so skip the recv that would say EAGAIN. Not
			 * once the end was reported: that edge will not repeat. */
			if (n > 0 && n < CS_RECV_CHUNK && !(c->flags & CS__HUP))
				c->flags &= ~CS__READABLE;
			*data = buf;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			c->flags &= ~CS__READABLE;
		return -errno;
	}
}

static ssize_t ep_recv(cs_loop *loop, cs_conn *c, const char **data)
{
	if (c->flags & CS__READABLE) {
		ssize_t n = try_recv(loop, c, data);
		if (n != -EAGAIN)
			return n;
	}
	c->flags |= CS__WANT_RECV;
	return -EAGAIN;
}

static void ep_recv_cancel(cs_loop *loop, cs_conn *c) {}

/* The owner just read EAGAIN: the next datagram makes a new edge. */
static int ep_poll(cs_loop *loop, cs_conn *c)
{
	c->flags &= ~CS__READABLE;
	return 0;
}

/* Send while the kernel takes bytes. cs__wq_sent() may end a lingering
 * conn, so the conn is looked up again by tag after each step. */
static void ep_flush(cs_loop *loop, cs_conn *c)
{
	uint64_t tag = cs__tag(loop, c);
	struct iovec iov[CS__IOV_MAX];
	while (c && c->wq.count && (c->flags & CS__WRITABLE)) {
		struct msghdr msg = {.msg_iov = iov};
		msg.msg_iovlen = (size_t)cs__wq_iov(&c->wq, iov, CS__IOV_MAX);
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				c->flags &= ~CS__WRITABLE;
			else
				cs__wq_failed(loop, c, -errno);
			return;
		}
		cs__wq_sent(loop, c, (size_t)n);
		c = cs__conn_by_tag(loop, tag);
	}
}

static int ep_connect(cs_loop *loop, cs_conn *c, const struct sockaddr *sa, socklen_t len)
{
	int r;
	do
		r = connect(c->fd, sa, len);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	c->flags |= CS__CONNECTING;
	c->flags &= ~CS__WRITABLE;
	return -EINPROGRESS;
}

static void ep_close(cs_loop *loop, cs_conn *c)
{
	/* close() leaves the epoll set only with the last reference to the
	 * socket. We never dup our fds, but a listening socket may be shared
	 * (a master, systemd, a new generation of workers): leave explicitly,
	 * or its connections would keep waking this loop. */
	if ((c->flags & (CS__LISTENER | CS__ACCEPT_STOPPED)) == CS__LISTENER)
		epoll_ctl(state(loop)->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	cs__conn_free(loop, c);
}

/* One readiness edge: record it, then perform whatever the owner waits for.
 * Each owner callback may close the conn, so the tag is checked after it. */
static void handle_event(cs_loop *loop, uint64_t tag, uint32_t ev)
{
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (!c || (c->flags & CS__ACCEPT_STOPPED))
		return; /* a stopped listener's event of this batch, from before the stop */
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CS__READABLE;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CS__HUP;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->flags |= CS__WRITABLE;

	if ((c->flags & CS__CONNECTING) && (c->flags & CS__WRITABLE)) {
		int err = 0;
		socklen_t sl = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
			err = errno;
		cs__notify_connect(loop, c, -err);
		if (!(c = cs__conn_by_tag(loop, tag)))
			return;
	}
	if ((c->flags & CS__WANT_ACCEPT) && (c->flags & CS__READABLE)) {
		int fd = try_accept(c);
		if (fd != -EAGAIN)
			cs__notify_accept(loop, c, fd);
		return; /* listeners do nothing else */
	}
	if ((c->flags & CS__WANT_POLL) && (c->flags & CS__READABLE)) {
		cs__notify_readable(loop, c);
		if (!(c = cs__conn_by_tag(loop, tag)))
			return;
	}
	if ((c->flags & CS__WANT_RECV) && (c->flags & CS__READABLE)) {
		const char *data;
		ssize_t n = try_recv(loop, c, &data);
		if (n != -EAGAIN) {
			cs__notify_recv(loop, c, data, n);
			if (!(c = cs__conn_by_tag(loop, tag)))
				return;
		}
	}
	if (c->wq.count && (c->flags & CS__WRITABLE))
		ep_flush(loop, c);
}

static void drain_wake(cs_loop *loop)
{
	uint64_t v;
	while (read(loop->wake_fd, &v, sizeof(v)) > 0)
		;
	cs__run_posts(loop);
}

static int ep_wait(cs_loop *loop, int timeout_ms)
{
	struct epoll_state *st = state(loop);
	cs__wait_begin(loop);
	int n = epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
	cs__wait_end(loop);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint64_t tag = st->events[i].data.u64;
		if (tag == WAKE_TAG)
			drain_wake(loop);
		else
			handle_event(loop, tag, st->events[i].events);
	}
	return n;
}


const struct cs__backend cs__backend_epoll = {
	.name = "epoll",
	.init = ep_init,
	.fini = ep_fini,
	.add = ep_add,
	.accept = ep_accept,
	.accept_cancel = ep_accept_cancel,
	.accept_stop = ep_accept_stop,
	.recv = ep_recv,
	.recv_cancel = ep_recv_cancel,
	.flush = ep_flush,
	.poll = ep_poll,
	.connect = ep_connect,
	.close = ep_close,
	.wait = ep_wait,
};
