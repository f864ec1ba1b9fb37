/*
 * loop.c - the backend-independent half of the dispatcher: backend choice,
 * the connection slot table, the timer heap, cross-thread posts and the
 * public conn calls that only forward to the backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define NO_SLOT UINT32_MAX

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int try_backend(cs_loop *loop, const struct cs__backend *be)
{
	loop->be = be;
	int r = be->init(loop);
	if (r < 0)
		loop->be = NULL;
	return r;
}

int cs_loop_create(const struct cs_loop_config *cfg, const struct cs_conn_ops *ops,
		   void *udata, cs_loop **out)
{
	cs_loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->cfg = *cfg;
	if (!loop->cfg.max_conns)
		loop->cfg.max_conns = 262144;
	if (!loop->cfg.recv_buffers)
		loop->cfg.recv_buffers = 1024;
	if (!loop->cfg.linger_ms)
		loop->cfg.linger_ms = 5000;
	loop->ops = ops;
	loop->udata = udata;
	loop->free_head = NO_SLOT;
	loop->now = monotonic_ms();
	loop->stats.max_conns = loop->cfg.max_conns;
	pthread_mutex_init(&loop->post_lock, NULL);

	/* calloc of this size is fresh mmap()ed memory: slots cost nothing
	 * until a connection first touches them. */
	loop->slots = calloc(loop->cfg.max_conns, sizeof(cs_conn));
	loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int r = -ENOMEM;
	if (!loop->slots || loop->wake_fd < 0) {
		if (loop->wake_fd < 0)
			r = -errno;
		goto fail;
	}

	switch (cfg->backend) {
	case CS_BACKEND_URING:
		r = try_backend(loop, &cs__backend_uring);
		break;
	case CS_BACKEND_EPOLL:
		r = try_backend(loop, &cs__backend_epoll);
		break;
	default:
		r = try_backend(loop, &cs__backend_uring);
		if (r < 0)
			r = try_backend(loop, &cs__backend_epoll);
	}
	if (r < 0)
		goto fail;
	*out = loop;
	return 0;
fail:
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	free(loop->slots);
	pthread_mutex_destroy(&loop->post_lock);
	free(loop);
	return r;
}

void cs_loop_destroy(cs_loop *loop)
{
	for (uint32_t i = 0; i < loop->fresh; i++) {
		cs_conn *c = &loop->slots[i];
		if (c->flags & CS__FREED)
			continue;
		c->flags |= CS__CLOSING;
		c->udata = NULL;
		if (cs_timer_armed(&c->timer))
			cs_timer_stop(loop, &c->timer);
		loop->be->close(loop, c);
	}
	/* Let the backend collect the cancellations it just asked for. */
	for (int spins = 0; loop->slots_used && spins < 100; spins++)
		if (loop->be->wait(loop, 10) < 0)
			break;
	loop->be->fini(loop);
	close(loop->wake_fd);
	free(loop->heap);
	free(loop->slots);
	pthread_mutex_destroy(&loop->post_lock);
	free(loop);
}

const char *cs_loop_backend(const cs_loop *loop) { return loop->be->name; }
void *cs_loop_udata(const cs_loop *loop) { return loop->udata; }
void cs_loop_set_udata(cs_loop *loop, void *udata) { loop->udata = udata; }

void cs_loop_set_wait_hooks(cs_loop *loop, void (*before)(void *arg), void (*after)(void *arg), void *arg)
{
	loop->wait_before = before;
	loop->wait_after = after;
	loop->wait_arg = arg;
}
uint64_t cs_loop_now(const cs_loop *loop) { return loop->now; }
void cs_loop_update_time(cs_loop *loop) { loop->now = monotonic_ms(); }

void cs_loop_stats(const cs_loop *loop, struct cs_loop_stats *st)
{
	*st = loop->stats;
	st->conns = loop->slots_used;
	st->timers = loop->nheap;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_place(cs_loop *loop, uint32_t i, cs_timer *t)
{
	loop->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(cs_loop *loop, uint32_t i)
{
	cs_timer *t = loop->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (loop->heap[parent]->due <= t->due)
			break;
		heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_place(loop, i, t);
}

static void heap_down(cs_loop *loop, uint32_t i)
{
	cs_timer *t = loop->heap[i];
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= loop->nheap)
			break;
		if (child + 1 < loop->nheap && loop->heap[child + 1]->due < loop->heap[child]->due)
			child++;
		if (t->due <= loop->heap[child]->due)
			break;
		heap_place(loop, i, loop->heap[child]);
		i = child;
	}
	heap_place(loop, i, t);
}

void cs_timer_init(cs_timer *t, void (*fire)(cs_timer *t))
{
	t->due = 0;
	t->slot = 0;
	t->expired = false;
	t->next_expired = NULL;
	t->prev_expired = NULL;
	t->fire = fire;
}

int cs_timer_start(cs_loop *loop, cs_timer *t, uint64_t ms)
{
	if (cs_timer_armed(t))
		cs_timer_stop(loop, t);
	if (loop->nheap == loop->heap_cap) {
		uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		cs_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
		if (!heap)
			return -ENOMEM;
		loop->heap = heap;
		loop->heap_cap = cap;
	}
	loop->now = monotonic_ms();
	t->due = loop->now + ms;
	loop->heap[loop->nheap] = t;
	heap_up(loop, loop->nheap++);
	return 0;
}

void cs_timer_stop(cs_loop *loop, cs_timer *t)
{
	if (t->expired) { /* taken back before its turn to fire */
		t->expired = false;
		*t->prev_expired = t->next_expired;
		if (t->next_expired)
			t->next_expired->prev_expired = t->prev_expired;
		return;
	}
	if (t->slot == 0)
		return;
	uint32_t i = t->slot - 1;
	t->slot = 0;
	cs_timer *last = loop->heap[--loop->nheap];
	if (i == loop->nheap)
		return;
	heap_place(loop, i, last);
	heap_up(loop, i);
	heap_down(loop, last->slot - 1);
}

/* Fire what is due. Everything due is taken off the heap first, so a timer
 * re-armed by a callback for "now" waits for the next poll and a zero
 * interval cannot starve I/O; a callback may still stop or re-arm any timer
 * of the batch before its turn. */
static int run_timers(cs_loop *loop)
{
	cs_timer **tail = &loop->expired;
	while (loop->nheap && loop->heap[0]->due <= loop->now) {
		cs_timer *t = loop->heap[0];
		cs_timer_stop(loop, t);
		t->expired = true;
		t->next_expired = NULL;
		t->prev_expired = tail;
		*tail = t;
		tail = &t->next_expired;
	}
	int ran = 0;
	while (loop->expired) {
		cs_timer *t = loop->expired;
		cs_timer_stop(loop, t); /* unlinks it from the batch */
		t->fire(t);
		ran++;
	}
	return ran;
}

/* ---- posts ----------------------------------------------------------------- */

void cs_loop_wake(cs_loop *loop)
{
	uint64_t one = 1;
	ssize_t r = write(loop->wake_fd, &one, sizeof(one));
	(void)r; /* EAGAIN: the counter is saturated, a wake-up is pending anyway */
}

void cs_loop_post(cs_loop *loop, cs_post *p)
{
	p->next = NULL;
	pthread_mutex_lock(&loop->post_lock);
	bool was_empty = loop->post_head == NULL;
	if (was_empty)
		loop->post_head = p;
	else
		loop->post_tail->next = p;
	loop->post_tail = p;
	pthread_mutex_unlock(&loop->post_lock);
	if (was_empty)
		cs_loop_wake(loop);
}

void cs__run_posts(cs_loop *loop)
{
	pthread_mutex_lock(&loop->post_lock);
	cs_post *p = loop->post_head;
	loop->post_head = loop->post_tail = NULL;
	pthread_mutex_unlock(&loop->post_lock);
	while (p) {
		cs_post *next = p->next;
		p->run(p);
		p = next;
	}
}

int cs_loop_poll(cs_loop *loop, int timeout_ms)
{
	if (loop->nheap) {
		uint64_t due = loop->heap[0]->due;
		int until = due <= loop->now ? 0 : (int)(due - loop->now > INT32_MAX ? INT32_MAX : due - loop->now);
		if (timeout_ms < 0 || until < timeout_ms)
			timeout_ms = until;
	}
	int n = loop->be->wait(loop, timeout_ms);
	loop->now = monotonic_ms();
	if (n < 0)
		return n;
	return n + run_timers(loop);
}

/* ---- slots ----------------------------------------------------------------- */

cs_conn *cs__conn_by_tag(cs_loop *loop, uint64_t tag)
{
	uint32_t i = (uint32_t)tag;
	if (i >= loop->fresh)
		return NULL;
	cs_conn *c = &loop->slots[i];
	if ((c->flags & CS__FREED) || (c->gen & 0xffffffu) != ((tag >> 32) & 0xffffffu))
		return NULL;
	return c;
}

int cs_conn_open(cs_loop *loop, int fd, void *udata, cs_conn **out)
{
	uint32_t i;
	if (loop->free_head != NO_SLOT) {
		i = loop->free_head;
		loop->free_head = loop->slots[i].next_free;
	} else if (loop->fresh < loop->cfg.max_conns) {
		i = loop->fresh++;
	} else {
		close(fd);
		return -ENFILE;
	}
	cs_conn *c = &loop->slots[i];
	uint32_t gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->loop = loop;
	c->fd = fd;
	c->udata = udata;
	c->stash_head = c->stash_tail = -1;
	loop->slots_used++;

	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	int listening = 0;
	socklen_t sl = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &sl) == 0 && listening)
		c->flags |= CS__LISTENER;

	int r = loop->be->add(loop, c);
	if (r < 0) {
		close(fd);
		cs__conn_free(loop, c);
		return r;
	}
	*out = c;
	return 0;
}

void cs__conn_free(cs_loop *loop, cs_conn *c)
{
	if (cs_timer_armed(&c->timer))
		cs_timer_stop(loop, &c->timer);
	cs__wq_clear(loop, &c->wq);
	free(c->wq.ring);
	c->wq.ring = NULL;
	c->udata = NULL;
	c->gen++;
	c->flags = CS__FREED;
	c->fd = -1;
	c->next_free = loop->free_head;
	loop->free_head = (uint32_t)(c - loop->slots);
	loop->slots_used--;
}

void *cs_conn_udata(const cs_conn *c) { return c->udata; }
void cs_conn_set_udata(cs_conn *c, void *udata) { c->udata = udata; }
int cs_conn_fd(const cs_conn *c) { return c->fd; }
size_t cs_conn_queued(const cs_conn *c) { return c->wq.bytes; }
int cs_conn_error(const cs_conn *c) { return c->err < 0 ? c->err : 0; }

static inline cs_loop *loop_of(const cs_conn *c) { return c->loop; }

uint32_t cs_conn_id(const cs_conn *c) { return (uint32_t)(c - loop_of(c)->slots); }
cs_loop *cs_conn_loop(const cs_conn *c) { return loop_of(c); }

/* ---- owner notifications --------------------------------------------- */

void cs__notify_recv(cs_loop *loop, cs_conn *c, const char *data, ssize_t n)
{
	if (!(c->flags & CS__WANT_RECV) || (c->flags & CS__CLOSING))
		return;
	c->flags &= ~CS__WANT_RECV;
	if (n > 0)
		loop->stats.bytes_in += (uint64_t)n;
	loop->ops->recv(c, data, n);
}

void cs__notify_accept(cs_loop *loop, cs_conn *c, int fd)
{
	if (!(c->flags & CS__WANT_ACCEPT) || (c->flags & CS__CLOSING)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	c->flags &= ~CS__WANT_ACCEPT;
	if (fd >= 0)
		loop->stats.accepted++;
	loop->ops->accept(c, fd);
}

void cs__notify_connect(cs_loop *loop, cs_conn *c, int err)
{
	c->flags &= ~CS__CONNECTING;
	if (c->flags & CS__CLOSING)
		return;
	loop->ops->connect(c, err);
}

void cs__notify_readable(cs_loop *loop, cs_conn *c)
{
	if (!(c->flags & CS__WANT_POLL) || (c->flags & CS__CLOSING))
		return;
	c->flags &= ~CS__WANT_POLL;
	loop->ops->readable(c);
}

/* ---- public conn calls -------------------------------------------------- */

int cs_conn_poll_readable(cs_conn *c)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & (CS__LISTENER | CS__CLOSING))
		return -EINVAL;
	c->flags |= CS__WANT_POLL;
	int r = loop->be->poll(loop, c);
	if (r < 0)
		c->flags &= ~CS__WANT_POLL;
	return r;
}

void cs_conn_poll_cancel(cs_conn *c) { c->flags &= ~CS__WANT_POLL; }

int cs_conn_accept(cs_conn *c)
{
	cs_loop *loop = loop_of(c);
	if (!(c->flags & CS__LISTENER))
		return -EINVAL;
	int fd = loop->be->accept(loop, c);
	if (fd >= 0)
		loop->stats.accepted++;
	return fd;
}

void cs_conn_accept_cancel(cs_conn *c)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & CS__WANT_ACCEPT) {
		c->flags &= ~CS__WANT_ACCEPT;
		loop->be->accept_cancel(loop, c);
	}
}

void cs_conn_accept_stop(cs_conn *c)
{
	cs_loop *loop = loop_of(c);
	if (!(c->flags & CS__LISTENER) || (c->flags & (CS__CLOSING | CS__ACCEPT_STOPPED)))
		return;
	c->flags |= CS__ACCEPT_STOPPED;
	loop->be->accept_stop(loop, c);
}

static void accept_shutdown_fire(cs_timer *t)
{
	cs_conn *c = (cs_conn *)((char *)t - offsetof(cs_conn, timer));
	cs__notify_accept(loop_of(c), c, -ESHUTDOWN);
}

void cs__accept_shutdown_later(cs_loop *loop, cs_conn *c)
{
	cs_timer_init(&c->timer, accept_shutdown_fire);
	/* Due at once: cs_loop_poll() then neither sleeps nor skips it.
	 * Only a failure to grow the heap answers now, rather than never. */
	if (cs_timer_start(loop, &c->timer, 0) < 0)
		cs__notify_accept(loop, c, -ESHUTDOWN);
}

ssize_t cs_conn_recv(cs_conn *c, const char **data)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & (CS__LISTENER | CS__CLOSING))
		return -EINVAL;
	ssize_t n = loop->be->recv(loop, c, data);
	if (n > 0)
		loop->stats.bytes_in += (uint64_t)n;
	return n;
}

void cs_conn_recv_cancel(cs_conn *c)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & CS__WANT_RECV) {
		c->flags &= ~CS__WANT_RECV;
		loop->be->recv_cancel(loop, c);
	}
}

int cs_conn_send(cs_conn *c, const void *data, size_t len, uintptr_t cookie)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & (CS__LISTENER | CS__CLOSING))
		return -EINVAL;
	if (c->err < 0)
		return c->err;
	if (len == 0)
		return 0;
	int r = cs__wq_push(&c->wq, data, len, cookie);
	if (r < 0)
		return r;
	if (c->wq.count == 1 && !(c->flags & CS__SENDING))
		loop->be->flush(loop, c);
	return 1;
}

ssize_t cs_conn_try_send(cs_conn *c, const void *data, size_t len)
{
	if (c->flags & (CS__LISTENER | CS__CLOSING))
		return -EINVAL;
	if (c->err < 0)
		return c->err;
	if (c->wq.count || (c->flags & (CS__SENDING | CS__CONNECTING)) || len == 0)
		return 0;
	ssize_t n;
	do
		n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		c->loop->stats.bytes_out += (uint64_t)n;
		return n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	c->err = -errno;
	return c->err;
}

int cs_conn_connect(cs_conn *c, const struct sockaddr *sa, socklen_t len)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & (CS__LISTENER | CS__CLOSING | CS__CONNECTING))
		return -EINVAL;
	return loop->be->connect(loop, c, sa, len);
}

void cs__shutdown_if_asked(cs_conn *c)
{
	if ((c->flags & CS__SHUT_WR) && c->wq.count == 0) {
		c->flags &= ~CS__SHUT_WR;
		shutdown(c->fd, SHUT_WR);
	}
}

int cs_conn_shutdown_write(cs_conn *c)
{
	if (c->flags & (CS__LISTENER | CS__CLOSING))
		return -EINVAL;
	c->flags |= CS__SHUT_WR;
	cs__shutdown_if_asked(c);
	return 0;
}

static void linger_expired(cs_timer *t)
{
	cs_conn *c = (cs_conn *)((char *)t - offsetof(cs_conn, timer));
	cs_loop *loop = loop_of(c);
	c->flags &= ~CS__LINGER;
	loop->be->close(loop, c);
}

void cs_conn_close(cs_conn *c, bool graceful)
{
	cs_loop *loop = loop_of(c);
	if (c->flags & CS__CLOSING)
		return;
	c->flags |= CS__CLOSING;
	c->flags &= ~(CS__WANT_RECV | CS__WANT_ACCEPT);
	c->udata = NULL;
	if ((c->flags & CS__LISTENER) && cs_timer_armed(&c->timer))
		cs_timer_stop(loop, &c->timer); /* a deferred accept answer */
	if (graceful && c->wq.bytes && c->err == 0 && !(c->flags & CS__LISTENER)) {
		c->flags |= CS__LINGER;
		cs_timer_init(&c->timer, linger_expired);
		cs_timer_start(loop, &c->timer, loop->cfg.linger_ms);
		return;
	}
	loop->be->close(loop, c);
}

void cs__linger_done(cs_loop *loop, cs_conn *c)
{
	c->flags &= ~CS__LINGER;
	cs_timer_stop(loop, &c->timer);
	loop->be->close(loop, c);
}
