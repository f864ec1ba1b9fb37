/*
 * test_hist.c - bench/hist.c, cosockd-bench's latency histogram: bucket
 * mapping, percentiles on known data (within the promised 1/128), the edge
 * cases (empty, one value, the top of uint64_t) and merging.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../bench/hist.h"

static struct cs__hist *h;

static void setup(void)
{
	h = malloc(sizeof(*h));
	cs__hist_reset(h);
}

static void teardown(void)
{
	free(h);
}

TestSuite(hist, .init = setup, .fini = teardown, .timeout = 30);

/* v is reported as r: never below, and above by at most 1/128 of v. */
static void expect_close(uint64_t r, uint64_t v, const char *what)
{
	cr_expect(r >= v && r - v <= v / 128, "%s: got %llu, want %llu within 1/128", what,
		  (unsigned long long)r, (unsigned long long)v);
}

Test(hist, every_value_maps_into_a_bucket_that_holds_it)
{
	uint64_t probes[] = {0, 1, 255, 256, 257, 1000, 65535, 65536, 1ull << 40,
			     (1ull << 40) + 12345, UINT64_MAX - 1, UINT64_MAX};

	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		uint64_t v = probes[i];
		unsigned b = cs__hist_index(v);
		cr_assert_lt(b, CS__HIST_BUCKETS, "index of %llu", (unsigned long long)v);
		cr_expect_leq(cs__hist_low(b), v);
		cr_expect_geq(cs__hist_high(b), v);
	}
	/* Buckets follow each other with no gap and no overlap. */
	for (unsigned b = 1; b < cs__hist_index(UINT64_MAX); b++)
		cr_assert_eq(cs__hist_low(b), cs__hist_high(b - 1) + 1, "bucket %u", b);
}

Test(hist, uniform_1_to_10000)
{
	for (uint64_t v = 1; v <= 10000; v++)
		cs__hist_record(h, v);
	cr_expect_eq(h->count, 10000);
	cr_expect_eq(h->min, 1);
	cr_expect_eq(cs__hist_percentile(h, 100), 10000);
	cr_expect_eq(h->max, 10000);
	expect_close(cs__hist_percentile(h, 50), 5000, "p50");
	expect_close(cs__hist_percentile(h, 90), 9000, "p90");
	expect_close(cs__hist_percentile(h, 99), 9900, "p99");
	expect_close(cs__hist_percentile(h, 99.9), 9990, "p99.9");
	cr_expect_float_eq(cs__hist_mean(h), 5000.5, 1e-9);
	/* Below 256 values are exact. */
	cr_expect_eq(cs__hist_percentile(h, 1), 100);
}

Test(hist, percentiles_never_exceed_the_max)
{
	cs__hist_record(h, 1000);
	cs__hist_record(h, 1001);
	cr_expect_eq(cs__hist_percentile(h, 99.9), 1001);
	cr_expect_leq(cs__hist_percentile(h, 50), 1001);
}

Test(hist, a_single_value)
{
	cs__hist_record(h, 777);
	cr_expect_eq(h->count, 1);
	cr_expect_eq(h->min, 777);
	cr_expect_eq(h->max, 777);
	cr_expect_eq(cs__hist_percentile(h, 0), 777);
	cr_expect_eq(cs__hist_percentile(h, 50), 777);
	cr_expect_eq(cs__hist_percentile(h, 99.9), 777);
	cr_expect_float_eq(cs__hist_mean(h), 777.0, 1e-9);
}

Test(hist, empty)
{
	cr_expect_eq(h->count, 0);
	cr_expect_eq(cs__hist_percentile(h, 50), 0);
	cr_expect_eq(cs__hist_percentile(h, 100), 0);
	cr_expect_float_eq(cs__hist_mean(h), 0.0, 1e-12);
}

Test(hist, huge_values)
{
	cs__hist_record(h, UINT64_MAX);
	cs__hist_record(h, 1ull << 62);
	cs__hist_record(h, 3);
	cr_expect_eq(h->max, UINT64_MAX);
	cr_expect_eq(h->min, 3);
	cr_expect_eq(cs__hist_percentile(h, 100), UINT64_MAX);
	cr_expect_eq(cs__hist_percentile(h, 99), UINT64_MAX);
	cr_expect_eq(cs__hist_percentile(h, 10), 3);
	expect_close(cs__hist_percentile(h, 50), 1ull << 62, "p50");
}

Test(hist, merge_equals_recording_everything_in_one)
{
	struct cs__hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	cs__hist_reset(a);
	cs__hist_reset(b);

	for (uint64_t v = 1; v <= 10000; v++) {
		cs__hist_record(v % 3 ? a : b, v * 7);
		cs__hist_record(h, v * 7);
	}
	struct cs__hist *empty = malloc(sizeof(*empty));
	cs__hist_reset(empty);
	cs__hist_merge(a, empty); /* merging nothing changes nothing */
	cs__hist_merge(empty, b); /* into an empty one: a copy */
	cs__hist_merge(a, empty);

	cr_expect_eq(a->count, h->count);
	cr_expect_eq(a->min, h->min);
	cr_expect_eq(a->max, h->max);
	cr_expect_float_eq(cs__hist_mean(a), cs__hist_mean(h), 1e-9);
	double ps[] = {1, 50, 90, 99, 99.9, 100};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		cr_expect_eq(cs__hist_percentile(a, ps[i]), cs__hist_percentile(h, ps[i]),
			     "p%g", ps[i]);
	free(a);
	free(b);
	free(empty);
}
