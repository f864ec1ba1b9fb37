/*
 * progress.h - the live progress line, once a second on stderr while a run
 * lasts, and only when stderr is a terminal (so logs and pipes stay clean).
 *
 * Every worker thread owns one struct cs__live and is its only writer: it
 * bumps the counters with relaxed atomic stores (a plain load, add and store
 * on the hot path, no lock prefix) and, about once a second, publishes the
 * p99 of the latencies it saw since the last time. The main thread reads
 * them with relaxed loads: figures may be a moment stale, never torn.
 */
#ifndef CS_BENCH_PROGRESS_H
#define CS_BENCH_PROGRESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

struct cs__live {
	/* Written by the worker, read by the progress line. */
	_Atomic uint64_t ops;    /* since the run started, warmup included */
	_Atomic uint64_t errors;
	_Atomic uint64_t p99_us; /* over the last published interval */
	/* The worker's own. */
	uint64_t next_publish;
	struct cs__hist tick; /* latencies since the last publish */
};

/* Is stderr a terminal? (Asked once.) */
int cs__progress_enabled(void);

/* Worker side: set up, count, and publish (at most once a second; cheap
 * to call often). All do nothing when progress is disabled. */
void cs__live_init(struct cs__live *l, uint64_t now);
void cs__live_ops(struct cs__live *l, uint64_t ops, uint64_t latency_us, int has_latency);
void cs__live_error(struct cs__live *l);
void cs__live_publish(struct cs__live *l, uint64_t now);

/* Reader side, for the load scenarios: state kept between lines. */
struct cs__progress {
	uint64_t t_start;   /* the run's start, ns */
	uint64_t t_measure; /* end of the warmup */
	uint64_t t_last, ops_last;
	int has_latency;    /* show p99 */
	int ops_are_bytes;  /* show GB/s rather than ops/s */
};

/* Print a line summing n workers' figures at time now. */
void cs__progress_show(struct cs__progress *p, const struct cs__live *lives,
		       size_t n, uint64_t now);

/* Print any one line (after "\r", clearing the rest of the terminal
 * line), for scenarios of their own shape. */
void cs__progress_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* End the progress line, if one was printed, so what follows starts on a
 * fresh line. */
void cs__progress_end(void);

#endif
