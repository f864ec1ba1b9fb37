/*
 * internal.h - what the generic loop (loop.c, wqueue.c) and its backends
 * (backend_uring.c, backend_epoll.c) share. Nothing outside dispatch/
 * includes this file.
 *
 * Ownership rules:
 *  - loop.c owns the slot table, timers, posts and the write queue data
 *    structure; a backend owns how bytes move and may keep private state in
 *    the conn's backend fields and in loop->backend_data.
 *  - A backend calls owner callbacks only through the cs__notify_* helpers,
 *    which drop them for conns that are closing.
 *  - A conn is freed only by cs__conn_free(), which a backend calls once
 *    nothing in the kernel refers to the conn any more.
 */
#ifndef CS_DISPATCH_INTERNAL_H
#define CS_DISPATCH_INTERNAL_H

#include <pthread.h>
#include <sys/uio.h>

#include "dispatch.h"

/* Conn flags. */
enum {
	CS__LISTENER = 1u << 0,    /* listen()ing socket */
	CS__CONNECTING = 1u << 1,  /* connect in progress */
	CS__CLOSING = 1u << 2,     /* owner let go; no owner callbacks */
	CS__LINGER = 1u << 3,      /* closing, flushing the write queue first */
	CS__WANT_RECV = 1u << 4,   /* owner waits for ops->recv */
	CS__WANT_ACCEPT = 1u << 5, /* owner waits for ops->accept */
	CS__SENDING = 1u << 6,     /* a send is in flight (io_uring) */
	CS__READABLE = 1u << 7,    /* epoll: may have data/EOF/conn to take */
	CS__WRITABLE = 1u << 8,    /* epoll: send buffer may have room */
	CS__RECV_ARMED = 1u << 9,  /* io_uring: multishot recv/accept active */
	CS__RECV_DONE = 1u << 10,  /* io_uring: stream ended; err says how */
	CS__FREED = 1u << 11,      /* slot is on the free list */
	CS__SHUT_WR = 1u << 12,    /* send FIN when the write queue empties */
	CS__HUP = 1u << 13,        /* epoll: the peer's end (or an error) was reported */
	CS__WANT_POLL = 1u << 14,  /* owner waits for ops->readable */
	CS__ACCEPT_STOPPED = 1u << 15, /* listener: takes nothing more from the kernel */
};

/* One queued write: a window of caller memory plus the caller's cookie. */
struct cs__wentry {
	const char *data;
	size_t len;
	uintptr_t cookie;
};

/* FIFO of write entries: a ring that grows by doubling, allocated on first
 * use so that idle conns carry none. */
struct cs__wqueue {
	struct cs__wentry *ring;
	uint32_t head, count, cap;
	size_t sent;  /* bytes of ring[head] already sent */
	size_t bytes; /* bytes queued, not yet sent */
};

struct cs_conn {
	cs_loop *loop;
	int fd;
	uint32_t gen;   /* bumped when the slot is freed; tags completions */
	uint32_t flags;
	int err;        /* sticky -errno from send or the stream's end status */
	void *udata;
	struct cs__wqueue wq;
	/* Bounds a graceful close; on a listener (which never lingers) it
	 * carries the deferred -ESHUTDOWN answer of a stopped accept. */
	cs_timer timer;

	/* io_uring backend */
	uint16_t inflight; /* SQEs submitted and not yet completed */
	int32_t stash_head, stash_tail; /* received buffers nobody asked for */

	uint32_t next_free; /* free list link, valid while CS__FREED */
};

struct cs__backend {
	const char *name;
	/* Set up; -errno when this backend cannot run here. */
	int (*init)(cs_loop *loop);
	void (*fini)(cs_loop *loop);
	/* A new fd entered the loop. */
	int (*add)(cs_loop *loop, cs_conn *c);
	/* Public contract of cs_conn_accept / _cancel. */
	int (*accept)(cs_loop *loop, cs_conn *c);
	void (*accept_cancel)(cs_loop *loop, cs_conn *c);
	/* CS__ACCEPT_STOPPED was just set: take no more connections from the
	 * kernel, and see that a pending accept (CS__WANT_ACCEPT) is answered
	 * later (cs__accept_shutdown_later() when nothing else will). */
	void (*accept_stop)(cs_loop *loop, cs_conn *c);
	/* Public contract of cs_conn_recv / _cancel. */
	ssize_t (*recv)(cs_loop *loop, cs_conn *c, const char **data);
	void (*recv_cancel)(cs_loop *loop, cs_conn *c);
	/* Bytes went into an idle queue: start sending. The backend calls
	 * cs__wq_sent() / cs__wq_failed() as the kernel takes them, possibly
	 * before returning. */
	void (*flush)(cs_loop *loop, cs_conn *c);
	/* The owner waits for readability (CS__WANT_POLL is set). */
	int (*poll)(cs_loop *loop, cs_conn *c);
	/* Public contract of cs_conn_connect. */
	int (*connect)(cs_loop *loop, cs_conn *c, const struct sockaddr *sa, socklen_t len);
	/* Tear down: cancel what is in flight, close fd, and call
	 * cs__conn_free() (now or from a later completion). */
	void (*close)(cs_loop *loop, cs_conn *c);
	/* Wait up to timeout_ms for completions and handle them. Returns the
	 * number handled or -errno. */
	int (*wait)(cs_loop *loop, int timeout_ms);
};

extern const struct cs__backend cs__backend_uring;
extern const struct cs__backend cs__backend_epoll;

struct cs_loop {
	const struct cs__backend *be;
	void *backend_data;
	const struct cs_conn_ops *ops;
	void *udata;
	struct cs_loop_config cfg;

	cs_conn *slots;     /* cfg.max_conns entries, touched lazily */
	uint32_t slots_used;
	uint32_t free_head; /* free list of recycled slots, UINT32_MAX = none */
	uint32_t fresh;     /* slots never used yet start here */

	cs_timer **heap;    /* min-heap on due */
	uint32_t nheap, heap_cap;
	uint64_t now;
	cs_timer *expired;  /* due timers of the batch being fired */

	pthread_mutex_t post_lock;
	cs_post *post_head, *post_tail;
	int wake_fd;        /* eventfd, read by the backend */

	void (*wait_before)(void *arg), (*wait_after)(void *arg);
	void *wait_arg;

	struct cs_loop_stats stats;
};

/* A backend brackets the syscall in which it may sleep with these. */
static inline void cs__wait_begin(cs_loop *loop)
{
	if (loop->wait_before)
		loop->wait_before(loop->wait_arg);
}

static inline void cs__wait_end(cs_loop *loop)
{
	if (loop->wait_after)
		loop->wait_after(loop->wait_arg);
}

/* Completion tags: slot index + generation, so late completions for a
 * reused slot are recognised and dropped. The top byte is free for the
 * backend (operation kind). */
static inline uint64_t cs__tag(const cs_loop *loop, const cs_conn *c)
{
	return ((uint64_t)(c->gen & 0xffffffu) << 32) | (uint32_t)(c - loop->slots);
}

/* The live conn a tag names, or NULL when the slot has moved on. */
cs_conn *cs__conn_by_tag(cs_loop *loop, uint64_t tag);

/* Return the slot to the free list (after the fd is closed). Releases any
 * entries left in the write queue. */
void cs__conn_free(cs_loop *loop, cs_conn *c);

/* Owner notifications; each is a no-op for closing conns. */
void cs__notify_recv(cs_loop *loop, cs_conn *c, const char *data, ssize_t n);
void cs__notify_accept(cs_loop *loop, cs_conn *c, int fd);
void cs__notify_connect(cs_loop *loop, cs_conn *c, int err);
void cs__notify_readable(cs_loop *loop, cs_conn *c);

/* Answer the listener's pending accept with -ESHUTDOWN from the next
 * cs_loop_poll() (unless the owner cancels, accepts again or closes first).
 * For a stopped listener that takes nothing more from the kernel. */
void cs__accept_shutdown_later(cs_loop *loop, cs_conn *c);

/* The write queue emptied: send a FIN that cs_conn_shutdown_write() asked for. */
void cs__shutdown_if_asked(cs_conn *c);

/* A lingering (gracefully closing) conn flushed or failed: close it now. */
void cs__linger_done(cs_loop *loop, cs_conn *c);

/* Run posted work (the backend calls it after reading wake_fd). */
void cs__run_posts(cs_loop *loop);

/* Write queue (wqueue.c). */
/* Fill at most max iovecs from the head of the queue; returns the count. */
int cs__wq_iov(const struct cs__wqueue *q, struct iovec *iov, int max);
/* n bytes from the head were sent: release finished entries, and when the
 * queue is empty tell the owner (or finish a graceful close). */
void cs__wq_sent(cs_loop *loop, cs_conn *c, size_t n);
/* Sending failed with err: record it, release every entry, tell the owner
 * (or finish a close). */
void cs__wq_failed(cs_loop *loop, cs_conn *c, int err);
/* Release every entry without sending. */
void cs__wq_clear(cs_loop *loop, struct cs__wqueue *q);
int cs__wq_push(struct cs__wqueue *q, const char *data, size_t len, uintptr_t cookie);

#define CS__IOV_MAX 64

#endif
