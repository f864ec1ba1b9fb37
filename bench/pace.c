/*
 * pace.c - closed- and open-loop request timing (see pace.h for the
 * contract and the shape of the schedule).
 */
#include <stdlib.h>

#include "pace.h"

void cs__pace_init(struct cs__pace *p, uint64_t start, double conn_interval_ns,
		   uint64_t n)
{
	p->start = start;
	p->n = n ? n : 1;
	p->gap = conn_interval_ns / (double)p->n;
	p->visited = 0;
}

int cs__flight_init(struct cs__flight *f, uint32_t depth, uint32_t turn)
{
	f->t = calloc(depth, sizeof(*f->t));
	f->head = f->count = 0;
	f->cap = depth;
	f->turn = turn;
	f->started = 0;
	return f->t ? 0 : -1;
}

void cs__flight_free(struct cs__flight *f)
{
	free(f->t);
	f->t = NULL;
}

/* When slot k is due. */
static uint64_t slot_time(const struct cs__pace *p, uint64_t k)
{
	return p->start + (uint64_t)((double)k * p->gap);
}

int cs__pace_take(const struct cs__pace *p, struct cs__flight *f, uint64_t now)
{
	uint64_t t = now;

	if (f->count == f->cap)
		return 0;
	if (p->gap > 0) {
		t = slot_time(p, f->turn + f->started * p->n);
		if (t > now)
			return 0;
	}
	f->t[(f->head + f->count) % f->cap] = t;
	f->count++;
	f->started++;
	return 1;
}

uint64_t cs__flight_done(struct cs__flight *f)
{
	uint64_t t = f->t[f->head];

	f->head = (f->head + 1) % f->cap;
	f->count--;
	return t;
}

/* How many slots are due by now: those with slot_time <= now. */
static uint64_t slots_due(const struct cs__pace *p, uint64_t now)
{
	if (now < p->start)
		return 0;
	uint64_t k = (uint64_t)((double)(now - p->start) / p->gap) + 1;
	/* Floating point may land one off either way: settle it exactly. */
	while (k > 0 && slot_time(p, k - 1) > now)
		k--;
	while (slot_time(p, k) <= now)
		k++;
	return k;
}

int64_t cs__pace_due(struct cs__pace *p, uint64_t now)
{
	if (p->gap <= 0)
		return -1;
	uint64_t due = slots_due(p, now);
	if (due > p->visited + p->n)
		p->visited = due - p->n; /* one offer each is enough */
	if (p->visited >= due)
		return -1;
	return (int64_t)(p->visited++ % p->n);
}

uint64_t cs__pace_wake(const struct cs__pace *p)
{
	if (p->gap <= 0)
		return UINT64_MAX;
	return slot_time(p, p->visited);
}
