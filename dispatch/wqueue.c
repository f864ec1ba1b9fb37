/*
 * wqueue.c - the per-conn FIFO write queue: a ring of (pointer, length,
 * cookie) entries that a backend gathers into one sendmsg. Entries point at
 * caller memory; nothing is copied. Finished entries go back to the owner
 * through ops->release in the order they were queued.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

int cs__wq_push(struct cs__wqueue *q, const char *data, size_t len, uintptr_t cookie)
{
	if (q->count == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 4;
		struct cs__wentry *ring = malloc(cap * sizeof(*ring));
		if (!ring)
			return -ENOMEM;
		for (uint32_t k = 0; k < q->count; k++)
			ring[k] = q->ring[(q->head + k) % q->cap];
		free(q->ring);
		q->ring = ring;
		q->cap = cap;
		q->head = 0;
	}
	q->ring[(q->head + q->count) % q->cap] = (struct cs__wentry){data, len, cookie};
	q->count++;
	q->bytes += len;
	return 0;
}

int cs__wq_iov(const struct cs__wqueue *q, struct iovec *iov, int max)
{
	int n = 0;
	for (uint32_t k = 0; k < q->count && n < max; k++, n++) {
		const struct cs__wentry *e = &q->ring[(q->head + k) % q->cap];
		size_t skip = k == 0 ? q->sent : 0;
		iov[n].iov_base = (void *)(e->data + skip);
		iov[n].iov_len = e->len - skip;
	}
	return n;
}

/* Pop the head entry and hand its cookie back. */
static void pop_head(cs_loop *loop, struct cs__wqueue *q)
{
	uintptr_t cookie = q->ring[q->head].cookie;
	q->head = (q->head + 1) % q->cap;
	q->count--;
	q->sent = 0;
	loop->ops->release(loop, cookie);
}

void cs__wq_clear(cs_loop *loop, struct cs__wqueue *q)
{
	while (q->count)
		pop_head(loop, q);
	q->bytes = 0;
}

void cs__wq_sent(cs_loop *loop, cs_conn *c, size_t n)
{
	struct cs__wqueue *q = &c->wq;
	loop->stats.bytes_out += n;
	q->bytes -= n;
	while (n) {
		struct cs__wentry *e = &q->ring[q->head];
		size_t left = e->len - q->sent;
		if (n < left) {
			q->sent += n;
			break;
		}
		n -= left;
		pop_head(loop, q);
	}
	if (q->count)
		return;
	cs__shutdown_if_asked(c);
	if (c->flags & CS__LINGER)
		cs__linger_done(loop, c);
	else if (!(c->flags & CS__CLOSING))
		loop->ops->drain(c);
}

void cs__wq_failed(cs_loop *loop, cs_conn *c, int err)
{
	if (c->err == 0)
		c->err = err;
	cs__wq_clear(loop, &c->wq);
	if (c->flags & CS__LINGER)
		cs__linger_done(loop, c);
	else if (!(c->flags & CS__CLOSING))
		loop->ops->drain(c);
}
