/*
 * backend_uring.c - the completion backend: io_uring with multishot
 * receive into one shared provided-buffer ring, one SENDMSG in flight per
 * conn, CONNECT, polled listeners, and a multishot poll on the loop's
 * eventfd.
 *
 * Receive: the kernel picks a buffer from the shared ring only when bytes
 * arrive, so idle sockets hold none. A chunk the owner waits for is handed
 * to ops->recv and goes back to the ring right after; a chunk nobody asked
 * for is stashed on the conn and the multishot is cancelled, so an unread
 * conn keeps at most what already arrived and TCP flow control does the
 * rest. "What already arrived" can be one kernel wake-up's worth: a 6.x
 * kernel loops a multishot recv up to 32 times per wake-up, so a backlogged
 * socket may stash ~33 chunks before the cancel lands. A conn that found
 * the ring empty (-ENOBUFS) waits on a starved list and is re-armed as
 * buffers come back.
 *
 * Every SQE carries cs__tag() of its conn with the operation kind in the
 * top byte; completions for a slot that moved on are dropped (their buffers
 * still go back). c->inflight counts requests the kernel still holds (a
 * multishot counts once, until its final CQE); cancel requests are not
 * counted and their CQEs are ignored. A closed conn keeps its fd open until
 * inflight drops to zero, since fd numbers are reused at once.
 *
 * Accept: see the head of the accept section; nothing is taken from the
 * kernel before the owner asks.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define UR_SQ_ENTRIES 4096u
#define UR_CQ_ENTRIES (4 * UR_SQ_ENTRIES)
#define UR_BGID 0	   /* our one provided-buffer group */
#define UR_MAX_BUFS 32768u /* buffer ids are 16 bits, ring entries <= 2^15 */
#define UR_EXT_POOL 64u	   /* spare send/connect contexts kept for reuse */

/* Operation kind, in the top byte of user_data. */
enum ur_op {
	UR_WAKE = 1,
	UR_RECV,
	UR_ACCEPT,
	UR_SEND,
	UR_CONNECT,
	UR_POLL,
	UR_CANCEL, /* completions ignored, not counted in inflight */
};
#define UR_OP_SHIFT 56

/* Backend-private conn flags, above the ones internal.h defines. loop.c
 * clears them with the rest (memset on open, CS__FREED on free). */
enum {
	UR_STARVED = 1u << 24,	 /* on the starved list, waiting for buffers */
	UR_CANCELING = 1u << 25, /* a cancel for the multishot is submitted */
	UR_CLOSED = 1u << 26,	 /* close op ran; fd closes when inflight == 0 */
	UR_POLLING = 1u << 27,	 /* a one-shot POLLIN is in flight */
};

/* What a conn needs only while a send or connect is in flight: the kernel
 * reads the msghdr, iovecs and sockaddr until the CQE arrives. */
struct ur_ext {
	struct msghdr msg;
	struct iovec iov[CS__IOV_MAX];
	struct sockaddr_storage addr;
	struct ur_ext *next_free;
};

struct ur_state {
	struct io_uring ring;
	bool started; /* ring enabled and registered from the loop thread */

	/* Provided receive buffers. */
	struct io_uring_buf_ring *br;
	size_t br_size;
	char *bufs; /* nbufs * CS_RECV_CHUNK */
	uint32_t nbufs, mask;
	uint32_t bufs_out; /* taken by the kernel and not yet returned */
	int32_t *buf_next; /* stash links */
	uint32_t *buf_len; /* bytes in a stashed buffer */
	uint16_t *handed;  /* handed out by recv(); returned on next wait() */
	uint32_t nhanded;

	/* Conns whose multishot recv ended with -ENOBUFS, by tag. */
	uint64_t *starved;
	uint32_t starved_head, nstarved, starved_cap;

	/* Send/connect contexts by slot, and a small pool of spare ones. */
	struct ur_ext **ext;
	struct ur_ext *ext_free;
	uint32_t nfree_ext;
};

static inline struct ur_state *state(cs_loop *loop)
{
	return loop->backend_data;
}

static inline uint32_t slot_of(cs_loop *loop, cs_conn *c)
{
	return (uint32_t)(c - loop->slots);
}

static inline uint64_t udata(cs_loop *loop, cs_conn *c, enum ur_op op)
{
	return cs__tag(loop, c) | (uint64_t)op << UR_OP_SHIFT;
}

static inline char *buf_at(struct ur_state *u, uint32_t bid)
{
	return u->bufs + (size_t)bid * CS_RECV_CHUNK;
}

/* ---- ring plumbing ------------------------------------------------------- */

/* With SINGLE_ISSUER the ring is created disabled, so that the thread that
 * first waits on it (the loop thread, which may not be the one that created
 * the loop) becomes its submitter. Also register the ring fd there: the
 * registration is per thread. */
static int ur_start(struct ur_state *u)
{
	if (u->started)
		return 0;
	if (u->ring.flags & IORING_SETUP_R_DISABLED) {
		/* io_uring_enable_rings() is declared but not exported by
		 * liburing 2.3, so make the call it would make. */
		if (syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) <
		    0)
			return -errno;
	}
	u->started = true;
	(void)io_uring_register_ring_fd(&u->ring); /* optional speed-up */
	return 0;
}

/* An SQE, submitting what is queued when the SQ is full. NULL only when the
 * kernel refuses the submission. */
static struct io_uring_sqe *ur_sqe(cs_loop *loop)
{
	struct ur_state *u = state(loop);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (sqe)
		return sqe;
	if (ur_start(u) < 0)
		return NULL;
	io_uring_submit(&u->ring);
	return io_uring_get_sqe(&u->ring);
}

/* Ask the kernel to end the conn's multishot (recv or accept) early. */
static void cancel_multishot(cs_loop *loop, cs_conn *c, enum ur_op op)
{
	if (!(c->flags & CS__RECV_ARMED) || (c->flags & UR_CANCELING))
		return;
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, udata(loop, c, op), 0);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_CANCEL));
	c->flags |= UR_CANCELING;
}

/* ---- provided buffers ---------------------------------------------------- */

static void buf_recycle(struct ur_state *u, uint32_t bid)
{
	io_uring_buf_ring_add(u->br, buf_at(u, bid), CS_RECV_CHUNK, (unsigned short)bid, (int)u->mask, 0);
	io_uring_buf_ring_advance(u->br, 1);
	u->bufs_out--;
}

static void stash_push(struct ur_state *u, cs_conn *c, uint32_t bid, uint32_t len)
{
	u->buf_len[bid] = len;
	u->buf_next[bid] = -1;
	if (c->stash_tail >= 0)
		u->buf_next[c->stash_tail] = (int32_t)bid;
	else
		c->stash_head = (int32_t)bid;
	c->stash_tail = (int32_t)bid;
}

static uint32_t stash_pop(struct ur_state *u, cs_conn *c)
{
	uint32_t bid = (uint32_t)c->stash_head;
	c->stash_head = u->buf_next[bid];
	if (c->stash_head < 0)
		c->stash_tail = -1;
	return bid;
}

static void stash_release(struct ur_state *u, cs_conn *c)
{
	while (c->stash_head >= 0)
		buf_recycle(u, stash_pop(u, c));
}

/* Buffers handed out by recv() were copied by now (contract: valid until
 * the next cs_loop_poll()). */
static void recycle_handed(struct ur_state *u)
{
	for (uint32_t i = 0; i < u->nhanded; i++)
		buf_recycle(u, u->handed[i]);
	u->nhanded = 0;
}

/* ---- send/connect contexts ----------------------------------------------- */

static struct ur_ext *ext_get(cs_loop *loop, cs_conn *c)
{
	struct ur_state *u = state(loop);
	struct ur_ext **slot = &u->ext[slot_of(loop, c)];
	if (*slot)
		return *slot;
	struct ur_ext *x = u->ext_free;
	if (x) {
		u->ext_free = x->next_free;
		u->nfree_ext--;
	} else if (!(x = malloc(sizeof(*x)))) {
		return NULL;
	}
	*slot = x;
	return x;
}

/* Drop the conn's context unless the kernel may still read it. */
static void ext_put(cs_loop *loop, cs_conn *c, bool force)
{
	struct ur_state *u = state(loop);
	struct ur_ext **slot = &u->ext[slot_of(loop, c)];
	struct ur_ext *x = *slot;
	if (!x || (!force && (c->flags & (CS__SENDING | CS__CONNECTING))))
		return;
	*slot = NULL;
	if (u->nfree_ext < UR_EXT_POOL) {
		x->next_free = u->ext_free;
		u->ext_free = x;
		u->nfree_ext++;
	} else {
		free(x);
	}
}

/* ---- close --------------------------------------------------------------- */

static void finish_close(cs_loop *loop, cs_conn *c)
{
	close(c->fd);
	stash_release(state(loop), c);
	ext_put(loop, c, true);
	cs__conn_free(loop, c);
}

static void maybe_finish_close(cs_loop *loop, cs_conn *c)
{
	if ((c->flags & UR_CLOSED) && c->inflight == 0)
		finish_close(loop, c);
}

/* The conn is CLOSING; the owner is gone. Idempotent: cs_loop_destroy()
 * calls it again for conns still waiting for their cancellations. */
static void ur_close(cs_loop *loop, cs_conn *c)
{
	if (c->flags & UR_CLOSED)
		return;
	c->flags |= UR_CLOSED;
	c->flags &= ~(CS__LINGER | CS__WANT_RECV | CS__WANT_ACCEPT);
	stash_release(state(loop), c);
	if (c->inflight == 0) {
		finish_close(loop, c);
		return;
	}
	/* Everything in flight on this fd ends with a CQE (-ECANCELED or
	 * its natural result); the last one closes the fd. */
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return; /* the ops still finish on their own, only later */
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_CANCEL));
	c->flags |= UR_CANCELING;
}

/* ---- receive ------------------------------------------------------------- */

static int arm_recv(cs_loop *loop, cs_conn *c)
{
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = UR_BGID;
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_RECV));
	c->inflight++;
	c->flags |= CS__RECV_ARMED;
	return 0;
}

/* Re-arm for an owner that waits; if that fails it still gets its answer. */
static void rearm_recv(cs_loop *loop, cs_conn *c)
{
	int r = arm_recv(loop, c);
	if (r < 0)
		cs__notify_recv(loop, c, NULL, r);
}

static bool recv_idle_and_wanted(const cs_conn *c)
{
	return (c->flags & CS__WANT_RECV) && c->stash_head < 0 &&
	       !(c->flags & (CS__CLOSING | CS__RECV_ARMED | CS__RECV_DONE | UR_STARVED));
}

static void starve(struct ur_state *u, cs_loop *loop, cs_conn *c)
{
	if (c->flags & UR_STARVED)
		return;
	if (u->nstarved == u->starved_cap) {
		if (u->starved_head) { /* compact before growing */
			memmove(u->starved, u->starved + u->starved_head,
				(u->nstarved - u->starved_head) * sizeof(*u->starved));
			u->nstarved -= u->starved_head;
			u->starved_head = 0;
		}
		if (u->nstarved == u->starved_cap) {
			uint32_t cap = u->starved_cap ? 2 * u->starved_cap : 64;
			uint64_t *s = realloc(u->starved, cap * sizeof(*s));
			if (!s) {
				cs__notify_recv(loop, c, NULL, -ENOBUFS);
				return;
			}
			u->starved = s;
			u->starved_cap = cap;
		}
	}
	u->starved[u->nstarved++] = cs__tag(loop, c);
	c->flags |= UR_STARVED;
}

/* Buffers came back: re-arm starved conns, about one per free buffer, so
 * that a nearly empty ring does not bounce every conn through -ENOBUFS. */
static void feed_starved(cs_loop *loop, struct ur_state *u)
{
	uint32_t avail = u->nbufs - u->bufs_out;
	while (avail && u->starved_head < u->nstarved) {
		cs_conn *c = cs__conn_by_tag(loop, u->starved[u->starved_head++]);
		if (!c || !(c->flags & UR_STARVED))
			continue;
		c->flags &= ~UR_STARVED;
		if (recv_idle_and_wanted(c)) {
			rearm_recv(loop, c);
			avail--;
		}
	}
	if (u->starved_head == u->nstarved)
		u->starved_head = u->nstarved = 0;
}

static ssize_t ur_recv(cs_loop *loop, cs_conn *c, const char **data)
{
	struct ur_state *u = state(loop);
	if (c->stash_head >= 0) {
		uint32_t bid = stash_pop(u, c);
		u->handed[u->nhanded++] = (uint16_t)bid;
		*data = buf_at(u, bid);
		return (ssize_t)u->buf_len[bid];
	}
	if (c->flags & CS__RECV_DONE)
		return c->err < 0 ? c->err : 0;
	c->flags |= CS__WANT_RECV;
	if (!(c->flags & (CS__RECV_ARMED | UR_STARVED))) {
		int r = arm_recv(loop, c);
		if (r < 0) {
			c->flags &= ~CS__WANT_RECV;
			return r;
		}
	}
	return -EAGAIN;
}

/* Later data is stashed by on_recv(), which also stops the multishot. */
static void ur_recv_cancel(cs_loop *loop, cs_conn *c)
{
}

/* Give a waiting owner the oldest stashed chunk, or the end of stream. */
static void deliver_recv(cs_loop *loop, struct ur_state *u, cs_conn *c)
{
	if (!(c->flags & CS__WANT_RECV))
		return;
	if (c->stash_head >= 0) {
		uint32_t bid = stash_pop(u, c);
		cs__notify_recv(loop, c, buf_at(u, bid), (ssize_t)u->buf_len[bid]);
		buf_recycle(u, bid);
	} else if (c->flags & CS__RECV_DONE) {
		cs__notify_recv(loop, c, NULL, c->err < 0 ? c->err : 0);
	}
}

static void on_recv(cs_loop *loop, struct ur_state *u, uint64_t tag, int res, uint32_t cflags, int bid)
{
	bool more = cflags & IORING_CQE_F_MORE;
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (bid >= 0 && (!c || res <= 0)) {
		buf_recycle(u, (uint32_t)bid);
		bid = -1;
	}
	if (!c)
		return;
	if (!more) {
		c->inflight--;
		c->flags &= ~(CS__RECV_ARMED | UR_CANCELING);
	}
	if (c->flags & CS__CLOSING) {
		/* Nobody will read: drop the bytes and stop receiving. */
		if (bid >= 0)
			buf_recycle(u, (uint32_t)bid);
		if (more)
			cancel_multishot(loop, c, UR_RECV);
		else
			maybe_finish_close(loop, c);
		return;
	}

	if (res > 0 && bid >= 0) {
		stash_push(u, c, (uint32_t)bid, (uint32_t)res);
		if (!(c->flags & CS__WANT_RECV) && more)
			cancel_multishot(loop, c, UR_RECV); /* let TCP hold the rest */
	} else if (res == -ENOBUFS) {
		if (!more && (c->flags & CS__WANT_RECV))
			starve(u, loop, c);
	} else if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
		/* our own cancel, or nothing final: re-armed below if wanted */
	} else if (!more) {
		/* 0: end of stream; < 0: the connection failed. The first
		 * error sticks (a send may have failed first). */
		c->flags |= CS__RECV_DONE;
		if (res < 0 && c->err == 0)
			c->err = res;
		else if (res > 0 && c->err == 0)
			c->err = -EIO; /* data without a buffer: cannot happen */
	}

	deliver_recv(loop, u, c);
	if (cs__conn_by_tag(loop, tag) != c)
		return; /* the owner closed it and it is gone */
	if (recv_idle_and_wanted(c))
		rearm_recv(loop, c);
}

/* ---- accept -------------------------------------------------------------- */

/*
 * A listener is polled (one-shot POLLIN) and accepted with accept4(2), one
 * connection per owner's request. Not io_uring's multishot accept: its wait
 * on the socket is exclusive (the kernel wakes one accept request per
 * connection), so with a socket that several processes share (a master's
 * workers; the two generations of a reload) a wake-up that lands on a
 * request being cancelled, or on a ring being torn down, leaves the
 * connection queued with nobody woken for it. And it accepts ahead of the
 * owner, holding connections that a process which stops accepting must
 * then still serve. A poll wakes every waiter, the kernel's queue keeps
 * what no owner asked for, and the price is one syscall per connection.
 */

static int arm_accept_poll(cs_loop *loop, cs_conn *c)
{
	if (c->flags & UR_POLLING)
		return 0;
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, c->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_ACCEPT));
	c->inflight++;
	c->flags |= UR_POLLING;
	return 0;
}

/* One connection from the kernel's queue: its fd, -EAGAIN, or the
 * listener's error. Failures of one connection attempt are skipped. */
static int take_one(cs_conn *c)
{
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int ur_accept(cs_loop *loop, cs_conn *c)
{
	if (c->flags & CS__ACCEPT_STOPPED) {
		c->flags &= ~CS__WANT_ACCEPT;
		return -ESHUTDOWN;
	}
	int fd = take_one(c);
	if (fd != -EAGAIN) {
		c->flags &= ~CS__WANT_ACCEPT;
		return fd;
	}
	int r = arm_accept_poll(loop, c);
	if (r < 0) {
		c->flags &= ~CS__WANT_ACCEPT;
		return r;
	}
	c->flags |= CS__WANT_ACCEPT;
	return -EAGAIN;
}

/* The poll stays armed; its wake-up finds nobody waiting and takes
 * nothing. */
static void ur_accept_cancel(cs_loop *loop, cs_conn *c)
{
}

/* Nothing was taken ahead: end the poll, whose completion answers a
 * waiting owner with -ESHUTDOWN. */
static void ur_accept_stop(cs_loop *loop, cs_conn *c)
{
	struct io_uring_sqe *sqe = (c->flags & UR_POLLING) ? ur_sqe(loop) : NULL;
	if (sqe) {
		io_uring_prep_cancel64(sqe, udata(loop, c, UR_ACCEPT), 0);
		io_uring_sqe_set_data64(sqe, udata(loop, c, UR_CANCEL));
		c->flags |= UR_CANCELING;
	} else if (c->flags & CS__WANT_ACCEPT) {
		cs__accept_shutdown_later(loop, c); /* a poll left armed answers nobody */
	}
}

static void on_accept_poll(cs_loop *loop, uint64_t tag, int res)
{
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (!c)
		return;
	c->inflight--;
	c->flags &= ~(UR_POLLING | UR_CANCELING);
	if (c->flags & UR_CLOSED) {
		maybe_finish_close(loop, c);
		return;
	}
	if (!(c->flags & CS__WANT_ACCEPT))
		return; /* the next accept call polls again */
	if (c->flags & CS__ACCEPT_STOPPED) {
		cs__notify_accept(loop, c, -ESHUTDOWN);
		return;
	}
	(void)res; /* readable, or an error accept4 reports */
	int fd = take_one(c);
	if (fd == -EAGAIN) { /* another waiter took it */
		int r = arm_accept_poll(loop, c);
		if (r < 0)
			cs__notify_accept(loop, c, r);
		return;
	}
	cs__notify_accept(loop, c, fd);
}

/* ---- send ---------------------------------------------------------------- */

/* Gather the head of the queue into one SENDMSG. */
static void send_next(cs_loop *loop, cs_conn *c)
{
	struct ur_ext *x = ext_get(loop, c);
	struct io_uring_sqe *sqe = x ? ur_sqe(loop) : NULL;
	if (!sqe) {
		ext_put(loop, c, false);
		cs__wq_failed(loop, c, x ? -EBUSY : -ENOMEM);
		return;
	}
	memset(&x->msg, 0, sizeof(x->msg));
	x->msg.msg_iov = x->iov;
	x->msg.msg_iovlen = (size_t)cs__wq_iov(&c->wq, x->iov, CS__IOV_MAX);
	io_uring_prep_sendmsg(sqe, c->fd, &x->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_SEND));
	c->inflight++;
	c->flags |= CS__SENDING;
}

static void ur_flush(cs_loop *loop, cs_conn *c)
{
	/* A connecting conn starts sending when the connect completes. */
	if ((c->flags & (CS__SENDING | CS__CONNECTING | UR_CLOSED)) || !c->wq.count)
		return;
	send_next(loop, c);
}

static void on_send(cs_loop *loop, uint64_t tag, int res)
{
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (!c)
		return;
	c->inflight--;
	c->flags &= ~CS__SENDING;
	if (c->flags & UR_CLOSED) {
		maybe_finish_close(loop, c); /* cs__conn_free releases the queue */
		return;
	}
	/* Either call may run drain (which may send or close) or end a
	 * lingering close (which frees the conn when nothing else is in
	 * flight): look the conn up again afterwards. */
	if (res > 0)
		cs__wq_sent(loop, c, (size_t)res);
	else
		cs__wq_failed(loop, c, res ? res : -EPIPE);
	if (cs__conn_by_tag(loop, tag) != c || (c->flags & UR_CLOSED))
		return;
	if (!(c->flags & CS__SENDING) && c->wq.count)
		send_next(loop, c); /* partly sent: the rest */
	if (cs__conn_by_tag(loop, tag) == c)
		ext_put(loop, c, false);
}

/* ---- connect ------------------------------------------------------------- */

static int ur_connect(cs_loop *loop, cs_conn *c, const struct sockaddr *sa, socklen_t len)
{
	if (len > sizeof(struct sockaddr_storage))
		return -EINVAL;
	struct ur_ext *x = ext_get(loop, c);
	if (!x)
		return -ENOMEM;
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe) {
		ext_put(loop, c, false);
		return -EBUSY;
	}
	memcpy(&x->addr, sa, len);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&x->addr, len);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_CONNECT));
	c->inflight++;
	c->flags |= CS__CONNECTING;
	return -EINPROGRESS;
}

/* ---- readiness (datagram sockets) ----------------------------------------- */

static int ur_poll(cs_loop *loop, cs_conn *c)
{
	if (c->flags & UR_POLLING)
		return 0; /* the one in flight answers */
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, c->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, udata(loop, c, UR_POLL));
	c->inflight++;
	c->flags |= UR_POLLING;
	return 0;
}

static void on_poll(cs_loop *loop, uint64_t tag, int res)
{
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (!c)
		return;
	c->inflight--;
	c->flags &= ~UR_POLLING;
	if (c->flags & UR_CLOSED) {
		maybe_finish_close(loop, c);
		return;
	}
	(void)res; /* readable, or an error the owner's read will report */
	cs__notify_readable(loop, c);
}

static void on_connect(cs_loop *loop, uint64_t tag, int res)
{
	cs_conn *c = cs__conn_by_tag(loop, tag);
	if (!c)
		return;
	c->inflight--;
	if (c->flags & UR_CLOSED) {
		c->flags &= ~CS__CONNECTING;
		maybe_finish_close(loop, c);
		return;
	}
	int err = res < 0 ? res : 0;
	cs__notify_connect(loop, c, err); /* clears CS__CONNECTING */
	if (cs__conn_by_tag(loop, tag) != c || (c->flags & UR_CLOSED))
		return;
	/* Bytes queued while connecting (also by a lingering close). */
	if (c->wq.count && !(c->flags & CS__SENDING)) {
		if (err)
			cs__wq_failed(loop, c, err);
		else
			send_next(loop, c);
		if (cs__conn_by_tag(loop, tag) != c)
			return;
	}
	ext_put(loop, c, false);
}

/* ---- wake-ups ------------------------------------------------------------ */

static int arm_wake(cs_loop *loop)
{
	struct io_uring_sqe *sqe = ur_sqe(loop);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, loop->wake_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)UR_WAKE << UR_OP_SHIFT);
	return 0;
}

/* Drain the eventfd before running posts: a post queued after the read
 * writes the eventfd again and so produces another CQE. */
static void on_wake(cs_loop *loop, uint32_t cflags)
{
	uint64_t v;
	ssize_t r = read(loop->wake_fd, &v, sizeof(v));
	(void)r;
	cs__run_posts(loop);
	if (!(cflags & IORING_CQE_F_MORE))
		arm_wake(loop);
}


/* ---- the wait ------------------------------------------------------------ */

static void handle_cqe(cs_loop *loop, struct ur_state *u, uint64_t data, int res, uint32_t cflags)
{
	int bid = -1;
	if (cflags & IORING_CQE_F_BUFFER) {
		bid = (int)(cflags >> IORING_CQE_BUFFER_SHIFT);
		u->bufs_out++;
	}
	uint64_t tag = data & ((1ull << UR_OP_SHIFT) - 1);
	enum ur_op op = (enum ur_op)(data >> UR_OP_SHIFT);
	if (op == UR_RECV) {
		on_recv(loop, u, tag, res, cflags, bid);
		return;
	}
	if (bid >= 0) /* only receives select buffers; be safe anyway */
		buf_recycle(u, (uint32_t)bid);
	switch (op) {
	case UR_ACCEPT:
		on_accept_poll(loop, tag, res);
		break;
	case UR_SEND:
		on_send(loop, tag, res);
		break;
	case UR_CONNECT:
		on_connect(loop, tag, res);
		break;
	case UR_POLL:
		on_poll(loop, tag, res);
		break;
	case UR_WAKE:
		on_wake(loop, cflags);
		break;
	default: /* UR_CANCEL: the cancelled request reports for itself */
		break;
	}
}

static int ur_wait(cs_loop *loop, int timeout_ms)
{
	struct ur_state *u = state(loop);
	int r = ur_start(u);
	if (r < 0)
		return r;
	recycle_handed(u);
	feed_starved(loop, u);

	cs__wait_begin(loop);
	if (timeout_ms == 0) {
		r = io_uring_submit_and_get_events(&u->ring);
	} else if (timeout_ms < 0) {
		r = io_uring_submit_and_wait(&u->ring, 1);
	} else {
		struct __kernel_timespec ts = {
		    .tv_sec = timeout_ms / 1000,
		    .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};
		struct io_uring_cqe *cqe;
		r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	}
	cs__wait_end(loop);
	/* -ETIME: timed out; -EINTR: a signal; -EBUSY/-EAGAIN: the CQ is
	 * backed up or the kernel is short of memory, reaping helps. */
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
		return r;

	unsigned head, n = 0;
	struct io_uring_cqe *cqe;
	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		handle_cqe(loop, u, cqe->user_data, cqe->res, cqe->flags);
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	feed_starved(loop, u);
	return (int)n;
}

/* ---- setup --------------------------------------------------------------- */

static int ur_add(cs_loop *loop, cs_conn *c)
{
	return 0;
}

static void free_state(struct ur_state *u, bool ring_up)
{
	if (ring_up)
		io_uring_queue_exit(&u->ring); /* also drops the buffer ring */
	if (u->br)
		munmap(u->br, u->br_size);
	if (u->bufs)
		munmap(u->bufs, (size_t)u->nbufs * CS_RECV_CHUNK);
	while (u->ext_free) {
		struct ur_ext *x = u->ext_free;
		u->ext_free = x->next_free;
		free(x);
	}
	free(u->ext);
	free(u->buf_next);
	free(u->buf_len);
	free(u->handed);
	free(u->starved);
	free(u);
}

/* Newest flags first; the kernel says -EINVAL to flags it does not know. */
static int setup_ring(struct ur_state *u)
{
	static const unsigned flag_sets[] = {
	    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
	    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	int r = -EINVAL;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = UR_CQ_ENTRIES;
		r = io_uring_queue_init_params(UR_SQ_ENTRIES, &u->ring, &p);
		if (r == 0) {
			/* Timed waits without a timeout SQE, no lost CQEs. */
			if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
				io_uring_queue_exit(&u->ring);
				return -EOPNOTSUPP;
			}
			return 0;
		}
		if (r != -EINVAL)
			return r;
	}
	return r;
}

/* The opcodes we use. Multishot recv has no probe bit of its own; it came
 * in 6.0 together with IORING_OP_SEND_ZC, which stands in for it (multishot
 * accept and buffer rings are 5.19; the buffer ring is registered below). */
static int check_ops(struct io_uring *ring)
{
	static const int need[] = {
	    IORING_OP_RECV,	IORING_OP_ACCEPT,	IORING_OP_SENDMSG, IORING_OP_CONNECT,
	    IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL, IORING_OP_SEND_ZC,
	};
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	if (!probe)
		return -EOPNOTSUPP;
	int r = 0;
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!io_uring_opcode_supported(probe, need[i]))
			r = -EOPNOTSUPP;
	io_uring_free_probe(probe);
	return r;
}

static int setup_buffers(struct ur_state *u)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	u->br_size = (u->nbufs * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
	void *br = mmap(NULL, u->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	u->br = br;
	void *bufs = mmap(NULL, (size_t)u->nbufs * CS_RECV_CHUNK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED)
		return -errno;
	u->bufs = bufs;
	u->buf_next = malloc(u->nbufs * sizeof(*u->buf_next));
	u->buf_len = malloc(u->nbufs * sizeof(*u->buf_len));
	u->handed = malloc(u->nbufs * sizeof(*u->handed));
	if (!u->buf_next || !u->buf_len || !u->handed)
		return -ENOMEM;

	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	reg.ring_entries = u->nbufs;
	reg.bgid = UR_BGID;
	int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (r < 0)
		return r;
	io_uring_buf_ring_init(u->br);
	for (uint32_t i = 0; i < u->nbufs; i++)
		io_uring_buf_ring_add(u->br, buf_at(u, i), CS_RECV_CHUNK, (unsigned short)i, (int)u->mask,
				      (int)i);
	io_uring_buf_ring_advance(u->br, (int)u->nbufs);
	return 0;
}

static int ur_init(cs_loop *loop)
{
	uint32_t nbufs = loop->cfg.recv_buffers;
	if (nbufs == 0 || nbufs > UR_MAX_BUFS || (nbufs & (nbufs - 1)))
		return -EINVAL;
	struct ur_state *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->nbufs = nbufs;
	u->mask = nbufs - 1;

	int r = setup_ring(u);
	if (r < 0) {
		free_state(u, false);
		return r;
	}
	/* One pointer per slot: calloc'ed pages stay untouched until used. */
	u->ext = calloc(loop->cfg.max_conns, sizeof(*u->ext));
	if (!u->ext)
		r = -ENOMEM;
	if (r == 0)
		r = check_ops(&u->ring);
	if (r == 0)
		r = setup_buffers(u);
	if (r < 0) {
		free_state(u, true);
		return r;
	}
	loop->backend_data = u;
	r = arm_wake(loop);
	if (r < 0) {
		loop->backend_data = NULL;
		free_state(u, true);
		return r;
	}
	return 0;
}

/* cs_loop_destroy() closed every conn and reaped what it could; conns whose
 * cancellations did not complete are torn down once the ring is gone. */
static void ur_fini(cs_loop *loop)
{
	struct ur_state *u = state(loop);
	io_uring_queue_exit(&u->ring);
	for (uint32_t i = 0; i < loop->fresh; i++) {
		cs_conn *c = &loop->slots[i];
		if (c->flags & CS__FREED)
			continue;
		c->inflight = 0;
		c->flags |= CS__CLOSING | UR_CLOSED;
		finish_close(loop, c);
	}
	free_state(u, false);
	loop->backend_data = NULL;
}

const struct cs__backend cs__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .add = ur_add,
    .accept = ur_accept,
    .accept_cancel = ur_accept_cancel,
    .accept_stop = ur_accept_stop,
    .recv = ur_recv,
    .recv_cancel = ur_recv_cancel,
    .flush = ur_flush,
    .poll = ur_poll,
    .connect = ur_connect,
    .close = ur_close,
    .wait = ur_wait,
};
