/*
 * progress.c - the live progress line (see progress.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "bench.h"
#include "progress.h"

#define PUBLISH_NS CS__NS_PER_SEC

static int enabled = -1; /* unknown yet */
static int printed;      /* a line is on the terminal */

int cs__progress_enabled(void)
{
	if (enabled < 0)
		enabled = isatty(STDERR_FILENO);
	return enabled;
}

/* The single writer's increment: no read-modify-write instruction needed. */
static void bump(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by,
			      memory_order_relaxed);
}

void cs__live_init(struct cs__live *l, uint64_t now)
{
	atomic_init(&l->ops, 0);
	atomic_init(&l->errors, 0);
	atomic_init(&l->p99_us, 0);
	l->next_publish = now + PUBLISH_NS;
	cs__hist_reset(&l->tick);
}

void cs__live_ops(struct cs__live *l, uint64_t ops, uint64_t latency_us, int has_latency)
{
	if (!cs__progress_enabled())
		return;
	bump(&l->ops, ops);
	if (has_latency)
		cs__hist_record(&l->tick, latency_us);
}

void cs__live_error(struct cs__live *l)
{
	if (cs__progress_enabled())
		bump(&l->errors, 1);
}

void cs__live_publish(struct cs__live *l, uint64_t now)
{
	if (!cs__progress_enabled() || now < l->next_publish)
		return;
	if (l->tick.count) {
		atomic_store_explicit(&l->p99_us, cs__hist_percentile(&l->tick, 99),
				      memory_order_relaxed);
		cs__hist_reset(&l->tick);
	}
	l->next_publish = now + PUBLISH_NS;
}

void cs__progress_line(const char *fmt, ...)
{
	va_list ap;

	if (!cs__progress_enabled())
		return;
	fputc('\r', stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\033[K", stderr); /* clear what a longer line left */
	fflush(stderr);
	printed = 1;
}

void cs__progress_end(void)
{
	if (printed)
		fputc('\n', stderr);
	printed = 0;
}

void cs__progress_show(struct cs__progress *p, const struct cs__live *lives,
		       size_t n, uint64_t now)
{
	uint64_t ops = 0, errors = 0, p99 = 0;
	char rate[48], lat[32] = "";

	if (!cs__progress_enabled())
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t q = atomic_load_explicit(&lives[i].p99_us, memory_order_relaxed);
		ops += atomic_load_explicit(&lives[i].ops, memory_order_relaxed);
		errors += atomic_load_explicit(&lives[i].errors, memory_order_relaxed);
		if (q > p99)
			p99 = q; /* the worst thread's: a bound on the merged p99 */
	}
	double secs = (double)(now - p->t_last) / 1e9;
	double per_s = secs > 0 ? (double)(ops - p->ops_last) / secs : 0;
	if (p->ops_are_bytes)
		snprintf(rate, sizeof(rate), "GB/s %.2f", per_s / 1e9);
	else
		snprintf(rate, sizeof(rate), "ops/s %.0f", per_s);
	if (p->has_latency)
		snprintf(lat, sizeof(lat), "  p99 %lluus", (unsigned long long)p99);
	cs__progress_line("  %4.1fs%s  %s%s  errors %llu",
			  (double)(now - p->t_start) / 1e9,
			  now < p->t_measure ? " (warmup)" : "", rate, lat,
			  (unsigned long long)errors);
	p->t_last = now;
	p->ops_last = ops;
}
