/*
 * hist.h - a log-linear latency histogram in the manner of HdrHistogram.
 *
 * Values are unsigned integers (cosockd-bench records microseconds). Values
 * below 2^CS__HIST_SUB_BITS are counted exactly; above, every power-of-two
 * range is cut into 2^(CS__HIST_SUB_BITS-1) equal buckets, so a reported
 * value is within 1/128 (0.8%) of the true one. The whole uint64_t range is
 * covered; recording is a few shifts and never allocates. min, max and the
 * mean are kept exactly on the side.
 */
#ifndef CS_BENCH_HIST_H
#define CS_BENCH_HIST_H

#include <stdint.h>

#define CS__HIST_SUB_BITS 8
#define CS__HIST_HALF (1u << (CS__HIST_SUB_BITS - 1))
#define CS__HIST_BUCKETS ((64 - CS__HIST_SUB_BITS + 2) * CS__HIST_HALF)

struct cs__hist {
	uint64_t count;
	uint64_t min, max;
	double sum; /* for the mean */
	uint64_t buckets[CS__HIST_BUCKETS];
};

/* Empty h (it is plain memory: no fini needed). */
void cs__hist_reset(struct cs__hist *h);

/* Count one value. */
void cs__hist_record(struct cs__hist *h, uint64_t v);

/* Add every count of src into dst. */
void cs__hist_merge(struct cs__hist *dst, const struct cs__hist *src);

/* The value at percentile p (0..100): the highest value equivalent to the
 * bucket holding it (as HdrHistogram reports), capped by the exact max.
 * Returns 0 for an empty histogram. */
uint64_t cs__hist_percentile(const struct cs__hist *h, double p);

/* Mean of the recorded values, 0 when empty. */
double cs__hist_mean(const struct cs__hist *h);

/* Bucket mapping, exposed for testing: index of v, and the lowest and
 * highest value that map to bucket i. */
unsigned cs__hist_index(uint64_t v);
uint64_t cs__hist_low(unsigned i);
uint64_t cs__hist_high(unsigned i);

#endif
