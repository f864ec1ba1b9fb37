/*
 * hist.c - log-linear histogram (see hist.h for the bucket layout).
 *
 * Index math: for v >= 2^SUB_BITS let k be its top bit and
 * shift = k - SUB_BITS + 1; then v >> shift lies in [HALF, 2*HALF) and
 * index = shift * HALF + (v >> shift). Indexes below 2*HALF are the exact
 * values 0..2^SUB_BITS-1, and each next octave follows contiguously.
 */
#include <string.h>

#include "hist.h"

void cs__hist_reset(struct cs__hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned cs__hist_index(uint64_t v)
{
	if (v < (1u << CS__HIST_SUB_BITS))
		return (unsigned)v;
	unsigned k = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = k - CS__HIST_SUB_BITS + 1;
	return shift * CS__HIST_HALF + (unsigned)(v >> shift);
}

uint64_t cs__hist_low(unsigned i)
{
	if (i < (1u << CS__HIST_SUB_BITS))
		return i;
	unsigned shift = i / CS__HIST_HALF - 1;
	uint64_t sub = i - shift * CS__HIST_HALF;
	return sub << shift;
}

uint64_t cs__hist_high(unsigned i)
{
	if (i < (1u << CS__HIST_SUB_BITS))
		return i;
	unsigned shift = i / CS__HIST_HALF - 1;
	return cs__hist_low(i) + ((1ull << shift) - 1);
}

void cs__hist_record(struct cs__hist *h, uint64_t v)
{
	h->buckets[cs__hist_index(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void cs__hist_merge(struct cs__hist *dst, const struct cs__hist *src)
{
	if (!src->count)
		return;
	for (unsigned i = 0; i < CS__HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t cs__hist_percentile(const struct cs__hist *h, double p)
{
	if (!h->count)
		return 0;
	if (p >= 100.0)
		return h->max;
	/* The rank of the value we want, 1-based: ceil(p% of count). */
	double want = (p / 100.0) * (double)h->count;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < CS__HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = cs__hist_high(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

double cs__hist_mean(const struct cs__hist *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}
