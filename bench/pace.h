/*
 * pace.h - when a request may start, and from when its latency counts:
 * closed and open loop for every request/response scenario (echo, rr).
 *
 * Closed loop (rate 0): a connection starts a request whenever it has fewer
 * than `depth` outstanding; each is timed from the moment it starts.
 *
 * Open loop (rate > 0), with coordinated-omission correction: every
 * connection has a schedule of intended send times. A worker's n
 * connections take turns on one evenly spaced schedule: slot k is due at
 * start + k * gap and belongs to connection k % n, so each connection sends
 * every n * gap, shifted by its own phase. A request is timed from its slot,
 * not from when it could actually go out: a connection still busy when its
 * slot comes sends as soon as it can, and the wait counts as latency, as a
 * user of the server would have seen it.
 *
 * The contract, for a scenario whose responses come back in order:
 *   - to start a request on a connection, call cs__pace_take(); it returns
 *     1 and records the request's timing when the connection may start one
 *     now (fewer than depth outstanding and, in open loop, its next slot
 *     has come), 0 otherwise;
 *   - when a response is complete, cs__flight_done() returns the time the
 *     oldest outstanding request is timed from;
 *   - in open loop the worker loop asks cs__pace_due() for the connections
 *     whose slots have come since it last asked, offers each of them a
 *     start, and sleeps no later than cs__pace_wake().
 * A connection that had to skip its turn (busy) is offered again whenever
 * one of its responses completes, and the scenario calls cs__pace_take()
 * then: it catches up on every slot that has passed.
 */
#ifndef CS_BENCH_PACE_H
#define CS_BENCH_PACE_H

#include <stdint.h>

/* A worker's schedule. Read-only once set up, except for `visited`. */
struct cs__pace {
	uint64_t start;   /* slot 0, CLOCK_MONOTONIC ns */
	double gap;       /* ns between consecutive slots; 0 = closed loop */
	uint64_t n;       /* connections taking turns */
	uint64_t visited; /* slots cs__pace_due() has handed out */
};

/* One connection's requests in flight, oldest first, each with the time
 * it is timed from. */
struct cs__flight {
	uint64_t *t;       /* ring of cap start times */
	uint32_t head, count, cap;
	uint32_t turn;     /* the connection's place in the schedule, < n */
	uint64_t started;  /* requests started: the next is slot turn + started * n */
};

/* Schedule n connections starting at start. conn_interval_ns is the time
 * between one connection's requests; 0 means closed loop. */
void cs__pace_init(struct cs__pace *p, uint64_t start, double conn_interval_ns,
		   uint64_t n);

/* Room for depth requests in flight (depth >= 1); turn as above.
 * Returns 0, or -1 when out of memory. */
int cs__flight_init(struct cs__flight *f, uint32_t depth, uint32_t turn);
void cs__flight_free(struct cs__flight *f);

/* May the connection start a request at now? See the contract above. */
int cs__pace_take(const struct cs__pace *p, struct cs__flight *f, uint64_t now);

/* The oldest request is answered: the time it is timed from. The caller
 * knows one is outstanding (f->count > 0). */
uint64_t cs__flight_done(struct cs__flight *f);

/* The turn (connection index) of the next slot due by now that has not
 * been handed out yet, or -1. At most n are handed out per call sequence
 * however far behind the worker is: one offer per connection catches it
 * up on every slot it missed. */
int64_t cs__pace_due(struct cs__pace *p, uint64_t now);

/* When the next slot not yet handed out is due; UINT64_MAX in closed
 * loop. */
uint64_t cs__pace_wake(const struct cs__pace *p);

#endif
