/*
 * test_http.c - ws/http.c: request and response heads (syntax, limits,
 * versions, framing and smuggling cases, keep-alive, Upgrade, Expect),
 * the chunked decoder, URLs, percent-decoding and query strings.
 *
 * Every head is parsed whole and as every one of its prefixes, each copy
 * ending right before an unreadable page (guard.h): a valid head must be
 * "incomplete" until its last byte, and a refused one must stay refused
 * with the same code once refused. The chunked decoder is fed whole and
 * one byte at a time, and must decode the same either way.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "http.h"

TestSuite(http, .timeout = 60);

static struct cs_http_request req;
static struct cs_http_response resp;

/* Prefixes are checked one by one up to this length, sampled beyond it. */
#define PREFIX_ALL 4096

static int parse_in(struct guard *g, bool request, const char *s, size_t len,
		    const struct cs_http_limits *lim)
{
	guard_place(g, s, len);
	if (request)
		return cs_http_parse_request((const char *)g->p, len, lim, &req);
	return cs_http_parse_response((const char *)g->p, len, lim, &resp);
}

static int parse_at(bool request, const char *s, size_t len, const struct cs_http_limits *lim)
{
	struct guard g;
	int r;

	guard_alloc(&g, len);
	r = parse_in(&g, request, s, len, lim);
	guard_free(&g);
	return r;
}

/* The result for s[0..len) after checking that every prefix agrees with it:
 * -2 before a head ends, the same length after, the same error once refused. */
static int check_prefixes(bool request, const char *s, size_t len, const struct cs_http_limits *lim)
{
	int whole = parse_at(request, s, len, lim);
	int refused = 0;
	size_t step = len > PREFIX_ALL ? len / 512 : 1;
	struct guard g;

	guard_alloc(&g, len);
	for (size_t k = 0; k < len; k += step) {
		int r = parse_in(&g, request, s, k, lim);

		if (whole > 0) {
			if (k < (size_t)whole)
				cr_assert_eq(r, CS_HTTP_PARTIAL, "prefix %zu of %zu gave %d, want -2", k, len, r);
			else
				cr_assert_eq(r, whole, "prefix %zu gave %d, want %d", k, r, whole);
		} else if (refused) {
			cr_assert_eq(r, refused, "prefix %zu gave %d after %d", k, r, refused);
		} else if (r != CS_HTTP_PARTIAL) {
			cr_assert_eq(r, whole, "prefix %zu refused with %d, whole with %d", k, r, whole);
			refused = r;
		}
	}
	guard_free(&g);
	/* Leave req/resp as the whole input filled them, pointing into a
	 * guarded copy that lives until the next call. */
	static struct guard last;

	if (last.map)
		guard_free(&last);
	guard_put(&last, s, len);
	if (request)
		return cs_http_parse_request((const char *)last.p, len, lim, &req);
	return cs_http_parse_response((const char *)last.p, len, lim, &resp);
}

static int req_n(const char *s, size_t len, const struct cs_http_limits *lim)
{
	return check_prefixes(true, s, len, lim);
}

static int req_s(const char *s)
{
	return req_n(s, strlen(s), NULL);
}

static int resp_s(const char *s)
{
	return check_prefixes(false, s, strlen(s), NULL);
}

static bool span_is(const char *p, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(p, want, n) == 0;
}

#define SPAN_EQ(p, n, want) cr_expect(span_is(p, n, want), "got \"%.*s\", want \"%s\"", (int)(n), p, want)

/* ---- request heads ------------------------------------------------------- */

Test(http, request_head_fields)
{
	const char *s = "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Pad:   v  w \t\r\n"
			"Empty:\r\n\r\nBODY";
	int r = req_s(s);

	cr_assert_eq(r, (int)(strstr(s, "BODY") - s));
	SPAN_EQ(req.method, req.method_len, "GET");
	SPAN_EQ(req.target, req.target_len, "/a/b?c=d");
	cr_expect_eq(req.minor_version, 1);
	cr_assert_eq(req.num_headers, 3);
	SPAN_EQ(req.headers[0].name, req.headers[0].name_len, "Host");
	SPAN_EQ(req.headers[0].value, req.headers[0].value_len, "example.com");
	SPAN_EQ(req.headers[1].value, req.headers[1].value_len, "v  w");
	SPAN_EQ(req.headers[2].name, req.headers[2].name_len, "Empty");
	cr_expect_eq(req.headers[2].value_len, 0);
	cr_expect_eq(req.framing.content_length, -1);
	cr_expect(!req.framing.chunked);
	cr_expect(req.framing.keep_alive);
	cr_expect(!req.framing.upgrade);
	cr_expect(!req.framing.expect_continue);
}

Test(http, request_without_headers_bare_lf_and_leading_empty_lines)
{
	cr_expect_eq(req_s("GET / HTTP/1.1\r\n\r\n"), 18);
	cr_expect_eq(req.num_headers, 0);
	cr_expect_eq(req_s("GET / HTTP/1.1\nHost: h\n\n"), 24);
	cr_expect_eq(req.num_headers, 1);
	SPAN_EQ(req.headers[0].value, req.headers[0].value_len, "h");
	/* Empty lines before the request line are skipped and counted. */
	cr_expect_eq(req_s("\r\n\n\r\nGET / HTTP/1.1\r\n\r\n"), 23);
	SPAN_EQ(req.method, req.method_len, "GET");
	/* An empty input, or empty lines only, is not finished. */
	cr_expect_eq(req_s(""), CS_HTTP_PARTIAL);
	cr_expect_eq(req_s("\r\n\r\n"), CS_HTTP_PARTIAL);
}

Test(http, pipelined_requests_parse_one_after_the_other)
{
	const char *s = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nA: b\r\n\r\n";
	int r = req_s(s);

	cr_assert_eq(r, 19);
	SPAN_EQ(req.target, req.target_len, "/1");
	cr_assert_eq(req_s(s + r), 25);
	SPAN_EQ(req.target, req.target_len, "/2");
}

Test(http, methods_and_targets_as_sent)
{
	cr_expect_gt(req_s("M-SEARCH * HTTP/1.1\r\n\r\n"), 0);
	SPAN_EQ(req.target, req.target_len, "*");
	cr_expect_gt(req_s("CONNECT example.com:443 HTTP/1.1\r\n\r\n"), 0);
	SPAN_EQ(req.target, req.target_len, "example.com:443");
	cr_expect_gt(req_s("OPTIONS http://h/p?q HTTP/1.1\r\n\r\n"), 0);
	/* Raw UTF-8 in the target is passed on, undecoded. */
	cr_expect_gt(req_s("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 0);
	SPAN_EQ(req.target, req.target_len, "/caf\xc3\xa9");
}

struct refusal {
	const char *in;
	size_t len; /* 0: strlen */
	int want;
};

static void expect_refusals(const struct refusal *t, size_t n, bool request)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].in);
		int r = check_prefixes(request, t[i].in, len, NULL);

		cr_expect_eq(r, t[i].want, "case %zu (%.*s): got %d, want %d", i, (int)len, t[i].in, r,
			     t[i].want);
	}
}

Test(http, malformed_request_lines_are_refused)
{
	static const struct refusal t[] = {
		{"GET  / HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /  HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1 \r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{" GET / HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / \r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / http/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1x\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/11\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.10\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/a.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET\t/ HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /\tHTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /a\tb HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"G(T / HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GE\x01T / HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /a\x7f HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET /a\0b HTTP/1.1\r\n\r\n", 21, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\rX\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"\r\r\nGET / HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
	};

	expect_refusals(t, sizeof(t) / sizeof(t[0]), true);
}

Test(http, malformed_header_lines_are_refused)
{
	static const struct refusal t[] = {
		{"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nX Y: h\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nHost\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\n: h\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 26, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA\x7f: b\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\r\n", 0, CS_HTTP_E_MALFORMED},
		{"GET / HTTP/1.1\r\n\x80: b\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
	};

	expect_refusals(t, sizeof(t) / sizeof(t[0]), true);
	/* A tab and obs-text inside a value are fine. */
	cr_expect_gt(req_s("GET / HTTP/1.1\r\nA: b\tc \xff\r\n\r\n"), 0);
	SPAN_EQ(req.headers[0].value, req.headers[0].value_len, "b\tc \xff");
}

Test(http, versions)
{
	cr_expect_gt(req_s("GET / HTTP/1.0\r\n\r\n"), 0);
	cr_expect_eq(req.minor_version, 0);
	cr_expect_gt(req_s("GET / HTTP/1.1\r\n\r\n"), 0);
	cr_expect_eq(req.minor_version, 1);
	cr_expect_eq(req_s("GET / HTTP/2.0\r\n\r\n"), CS_HTTP_E_VERSION);
	cr_expect_eq(req_s("GET / HTTP/0.9\r\n\r\n"), CS_HTTP_E_VERSION);
	cr_expect_eq(req_s("GET / HTTP/1.2\r\n\r\n"), CS_HTTP_E_VERSION);
	cr_expect_eq(req_s("GET / HTTP/3.0\r\n\r\n"), CS_HTTP_E_VERSION);
	cr_expect_eq(resp_s("HTTP/2.0 200 OK\r\n\r\n"), CS_HTTP_E_VERSION);
	cr_expect_eq(resp_s("HTTP/1.0 200 OK\r\n\r\n"), 19);
	cr_expect_eq(resp.minor_version, 0);
}

/* ---- limits ---------------------------------------------------------------- */

/* "GET /xxx... HTTP/1.1" with a request line of exactly n bytes. */
static char *request_line_of(size_t n, const char *rest)
{
	size_t rest_len = strlen(rest);
	char *s = malloc(n + rest_len + 1);

	cr_assert(s && n >= 15);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'x', n - 14);
	memcpy(s + n - 9, " HTTP/1.1", 9);
	memcpy(s + n, rest, rest_len + 1);
	return s;
}

Test(http, request_line_limit_applies_even_before_the_line_ends)
{
	struct cs_http_limits lim = {.max_line = 100};
	char *ok = request_line_of(100, "\r\n\r\n");
	char *over = request_line_of(101, "\r\n\r\n");

	cr_expect_eq(req_n(ok, strlen(ok), &lim), 104);
	cr_expect_eq(req_n(over, strlen(over), &lim), CS_HTTP_E_LINE_TOO_LONG);
	/* Unfinished: 100 bytes and a CR may still be fine, 101 bytes are not. */
	cr_expect_eq(parse_at(true, ok, 101, &lim), CS_HTTP_PARTIAL);
	cr_expect_eq(parse_at(true, over, 101, &lim), CS_HTTP_E_LINE_TOO_LONG);
	/* A slow sender trickling a long line is refused at byte 101. */
	{
		char *longer = request_line_of(1000, "");

		cr_expect_eq(parse_at(true, longer, 100, &lim), CS_HTTP_PARTIAL);
		cr_expect_eq(parse_at(true, longer, 101, &lim), CS_HTTP_E_LINE_TOO_LONG);
		free(longer);
	}
	free(ok);
	free(over);

	/* The default is 8192. */
	ok = request_line_of(8192, "\r\n\r\n");
	over = request_line_of(8193, "\r\n\r\n");
	cr_expect_eq(req_n(ok, strlen(ok), NULL), 8196);
	cr_expect_eq(req_n(over, strlen(over), NULL), CS_HTTP_E_LINE_TOO_LONG);
	free(ok);
	free(over);
}

/* A request with n header lines "H<i>: v" and nothing else. */
static char *request_with_headers(unsigned n, size_t *len)
{
	size_t cap = 32 + (size_t)n * 16;
	char *s = malloc(cap);
	size_t o = 0;

	cr_assert(s);
	o += (size_t)snprintf(s + o, cap - o, "GET / HTTP/1.1\r\n");
	for (unsigned i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "H%u: v\r\n", i);
	o += (size_t)snprintf(s + o, cap - o, "\r\n");
	*len = o;
	return s;
}

Test(http, header_count_limit)
{
	struct cs_http_limits lim = {.max_headers = 5};
	size_t len;
	char *s = request_with_headers(5, &len);

	cr_expect_eq(req_n(s, len, &lim), (int)len);
	cr_expect_eq(req.num_headers, 5);
	free(s);

	s = request_with_headers(6, &len);
	cr_expect_eq(req_n(s, len, &lim), CS_HTTP_E_TOO_MANY_HEADERS);
	/* Refused as soon as a sixth line starts, before it ends... */
	size_t sixth = (size_t)(strstr(s, "H5:") - s);
	cr_expect_eq(parse_at(true, s, sixth, &lim), CS_HTTP_PARTIAL);
	cr_expect_eq(parse_at(true, s, sixth + 1, &lim), CS_HTTP_E_TOO_MANY_HEADERS);
	free(s);
	/* ...but a CR there may still start the blank line. */
	s = request_with_headers(5, &len);
	cr_expect_eq(parse_at(true, s, len - 1, &lim), CS_HTTP_PARTIAL);
	free(s);

	/* Defaults: 100; more than CS_HTTP_MAX_HEADERS asked gives that many. */
	s = request_with_headers(100, &len);
	cr_expect_eq(req_n(s, len, NULL), (int)len);
	free(s);
	s = request_with_headers(101, &len);
	cr_expect_eq(req_n(s, len, NULL), CS_HTTP_E_TOO_MANY_HEADERS);
	free(s);
	lim.max_headers = 100000;
	s = request_with_headers(CS_HTTP_MAX_HEADERS, &len);
	cr_expect_eq(req_n(s, len, &lim), (int)len);
	cr_expect_eq(req.num_headers, CS_HTTP_MAX_HEADERS);
	free(s);
	s = request_with_headers(CS_HTTP_MAX_HEADERS + 1, &len);
	cr_expect_eq(req_n(s, len, &lim), CS_HTTP_E_TOO_MANY_HEADERS);
	free(s);
}

/* A request whose head is exactly n bytes: one header padded to fit. */
static char *head_of(size_t n, const char *tail, size_t *len)
{
	static const char start[] = "GET / HTTP/1.1\r\nX: ";
	size_t tl = strlen(tail);
	char *s = malloc(n + tl + 1);

	cr_assert(s && n >= sizeof(start) - 1 + 4);
	memcpy(s, start, sizeof(start) - 1);
	memset(s + sizeof(start) - 1, 'a', n - (sizeof(start) - 1) - 4);
	memcpy(s + n - 4, "\r\n\r\n", 4);
	memcpy(s + n, tail, tl + 1);
	*len = n + tl;
	return s;
}

Test(http, head_size_limit_applies_even_before_the_head_ends)
{
	struct cs_http_limits lim = {.max_head = 200};
	size_t len;
	char *s = head_of(200, "", &len);

	cr_expect_eq(req_n(s, len, &lim), 200);
	free(s);
	s = head_of(201, "", &len);
	cr_expect_eq(req_n(s, len, &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	/* 200 bytes without the head's end cannot become a head of 200. */
	cr_expect_eq(parse_at(true, s, 199, &lim), CS_HTTP_PARTIAL);
	cr_expect_eq(parse_at(true, s, 200, &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	free(s);

	/* Empty lines before the request line count. */
	char pre[256];
	memset(pre, 0, sizeof(pre));
	for (int i = 0; i < 100; i++)
		memcpy(pre + 2 * i, "\r\n", 2);
	cr_expect_eq(parse_at(true, pre, 200, &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	cr_expect_eq(parse_at(true, pre, 199, &lim), CS_HTTP_PARTIAL);

	/* The default is 65536. */
	s = head_of(65536, "", &len);
	cr_expect_eq(req_n(s, len, NULL), 65536);
	free(s);
	s = head_of(65537, "", &len);
	cr_expect_eq(req_n(s, len, NULL), CS_HTTP_E_HEAD_TOO_LARGE);
	cr_expect_eq(parse_at(true, s, 65536, NULL), CS_HTTP_E_HEAD_TOO_LARGE);
	free(s);
}

Test(http, limits_broken_together_keep_their_first_answer)
{
	/* Found by fuzz_http: a start line that grows past max_line after
	 * the input already passed max_head stays "head too large". */
	struct cs_http_limits lim = {.max_line = 20, .max_head = 16};
	const char *s = "GETb=m /x HTlb=%TP/o1";

	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	/* And the other way round: the line limit first. */
	lim = (struct cs_http_limits){.max_line = 10, .max_head = 16};
	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_LINE_TOO_LONG);
	/* Empty lines first push the start line towards max_head. */
	lim = (struct cs_http_limits){.max_line = 10, .max_head = 20};
	s = "\r\n\r\n\r\n\r\n\r\n\r\nGET /abcdefgh HTTP/1.1\r\n\r\n";
	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	/* A CR just after max_line bytes may still end the line. */
	lim = (struct cs_http_limits){.max_line = 14, .max_head = 17};
	s = "GET / HTTP/1.1\rX";
	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_LINE_TOO_LONG);
	cr_expect_eq(parse_at(true, s, 15, &lim), CS_HTTP_PARTIAL);
	/* The header count against the head size: a header line starting
	 * where the head already reached max_head. */
	lim = (struct cs_http_limits){.max_head = 22, .max_headers = 1};
	s = "GET / HTTP/1.1\r\nA: b\r\nX";
	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_HEAD_TOO_LARGE);
	lim.max_head = 26;
	cr_expect_eq(req_n(s, strlen(s), &lim), CS_HTTP_E_TOO_MANY_HEADERS);
}

Test(http, error_statuses)
{
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_MALFORMED), 400);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_LINE_TOO_LONG), 414);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_HEAD_TOO_LARGE), 431);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_TOO_MANY_HEADERS), 431);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_VERSION), 505);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_FRAMING), 400);
	cr_expect_eq(cs_http_error_status(CS_HTTP_E_NOT_IMPLEMENTED), 501);
	cr_expect_eq(cs_http_error_status(-99), 400);
}

/* ---- framing ----------------------------------------------------------------- */

static int with_headers(const char *version, const char *headers)
{
	char s[1024];

	snprintf(s, sizeof(s), "POST /p HTTP/%s\r\n%s\r\n", version, headers);
	return req_s(s);
}

Test(http, content_length)
{
	cr_expect_gt(with_headers("1.1", "Content-Length: 42\r\n"), 0);
	cr_expect_eq(req.framing.content_length, 42);
	cr_expect_gt(with_headers("1.1", "content-LENGTH:   0  \r\n"), 0);
	cr_expect_eq(req.framing.content_length, 0);
	cr_expect_gt(with_headers("1.1", "Content-Length: 007\r\n"), 0);
	cr_expect_eq(req.framing.content_length, 7);
	cr_expect_gt(with_headers("1.1", "Content-Length: 5\r\nContent-Length: 5\r\n"), 0);
	cr_expect_eq(req.framing.content_length, 5);
	cr_expect_gt(with_headers("1.1", "Content-Length: 9223372036854775807\r\n"), 0);
	cr_expect_eq(req.framing.content_length, INT64_MAX);

	cr_expect_eq(with_headers("1.1", "Content-Length: 5\r\nContent-Length: 6\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 5, 5\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: +5\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: -1\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 0x10\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 1 2\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length:\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 9223372036854775808\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 99999999999999999999999\r\n"),
		     CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length : 5\r\n"), CS_HTTP_E_MALFORMED);
}

Test(http, transfer_encoding_and_smuggling)
{
	cr_expect_gt(with_headers("1.1", "Transfer-Encoding: chunked\r\n"), 0);
	cr_expect(req.framing.chunked);
	cr_expect_eq(req.framing.content_length, -1);
	cr_expect_gt(with_headers("1.1", "transfer-encoding:  Chunked \r\n"), 0);
	cr_expect(req.framing.chunked);

	/* Codings we do not implement. */
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: gzip, chunked\r\n"),
		     CS_HTTP_E_NOT_IMPLEMENTED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: gzip\r\n"), CS_HTTP_E_NOT_IMPLEMENTED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: chunked, gzip\r\n"),
		     CS_HTTP_E_NOT_IMPLEMENTED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: identity\r\n"), CS_HTTP_E_NOT_IMPLEMENTED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: chunked;x=1\r\n"),
		     CS_HTTP_E_NOT_IMPLEMENTED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: xchunked\r\n"), CS_HTTP_E_NOT_IMPLEMENTED);

	/* Both framings, chunked twice, an empty coding, TE in HTTP/1.0. */
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
		     CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
		     CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n"),
		     CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: chunked, chunked\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
		     CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding:\r\n"), CS_HTTP_E_FRAMING);
	cr_expect_eq(with_headers("1.0", "Transfer-Encoding: chunked\r\n"), CS_HTTP_E_FRAMING);

	/* Name tricks: blanks or controls around the name are refused. */
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding : chunked\r\n"), CS_HTTP_E_MALFORMED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding\x0b: chunked\r\n"), CS_HTTP_E_MALFORMED);
	cr_expect_eq(with_headers("1.1", "X: y\r\n Transfer-Encoding: chunked\r\n"), CS_HTTP_E_MALFORMED);
	cr_expect_eq(with_headers("1.1", "Transfer-Encoding: \x01" "chunked\r\n"), CS_HTTP_E_MALFORMED);
}

Test(http, keep_alive_rules)
{
	cr_expect_gt(with_headers("1.1", ""), 0);
	cr_expect(req.framing.keep_alive);
	cr_expect_gt(with_headers("1.1", "Connection: close\r\n"), 0);
	cr_expect(!req.framing.keep_alive);
	cr_expect_gt(with_headers("1.1", "Connection: keep-alive, CLOSE\r\n"), 0);
	cr_expect(!req.framing.keep_alive);
	cr_expect_gt(with_headers("1.1", "Connection: keep-alive\r\nConnection: close\r\n"), 0);
	cr_expect(!req.framing.keep_alive);
	cr_expect_gt(with_headers("1.1", "Connection: closed\r\n"), 0);
	cr_expect(req.framing.keep_alive);
	cr_expect_gt(with_headers("1.0", ""), 0);
	cr_expect(!req.framing.keep_alive);
	cr_expect_gt(with_headers("1.0", "Connection: Keep-Alive\r\n"), 0);
	cr_expect(req.framing.keep_alive);
	cr_expect_gt(with_headers("1.0", "Connection: keep-alive, close\r\n"), 0);
	cr_expect(!req.framing.keep_alive);
}

Test(http, upgrade_and_expect)
{
	cr_expect_gt(with_headers("1.1", "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"), 0);
	cr_expect(req.framing.upgrade);
	cr_expect(req.framing.keep_alive);
	cr_expect_gt(with_headers("1.1", "Connection: upgrade\r\n"), 0);
	cr_expect(req.framing.upgrade);
	cr_expect_gt(with_headers("1.1", "Connection: upgrades\r\nUpgrade: websocket\r\n"), 0);
	cr_expect(!req.framing.upgrade);
	cr_expect_gt(with_headers("1.1", "Upgrade: websocket\r\n"), 0);
	cr_expect(!req.framing.upgrade);

	cr_expect_gt(with_headers("1.1", "Expect: 100-continue\r\nContent-Length: 3\r\n"), 0);
	cr_expect(req.framing.expect_continue);
	cr_expect_gt(with_headers("1.1", "Expect:  100-Continue \r\n"), 0);
	cr_expect(req.framing.expect_continue);
	cr_expect_gt(with_headers("1.1", "Expect: 100-continue-ish\r\n"), 0);
	cr_expect(!req.framing.expect_continue);
	cr_expect_gt(with_headers("1.1", ""), 0);
	cr_expect(!req.framing.expect_continue);
}

/* ---- response heads ----------------------------------------------------------- */

Test(http, response_heads)
{
	cr_assert_eq(resp_s("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), 38);
	cr_expect_eq(resp.status, 200);
	cr_expect_eq(resp.minor_version, 1);
	SPAN_EQ(resp.reason, resp.reason_len, "OK");
	cr_expect_eq(resp.framing.content_length, 3);
	cr_expect(resp.framing.keep_alive);

	cr_expect_gt(resp_s("HTTP/1.1 404 Not  Found \t\r\n\r\n"), 0);
	SPAN_EQ(resp.reason, resp.reason_len, "Not  Found \t");
	cr_expect_gt(resp_s("HTTP/1.1 204\r\n\r\n"), 0);
	cr_expect_eq(resp.status, 204);
	cr_expect_eq(resp.reason_len, 0);
	cr_expect_gt(resp_s("HTTP/1.1 101 \r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
	cr_expect_eq(resp.status, 101);
	cr_expect_eq(resp.reason_len, 0);
	cr_expect(resp.framing.upgrade);
	cr_expect_gt(resp_s("HTTP/1.1 999 x\r\n\r\n"), 0);
	cr_expect_gt(resp_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
	cr_expect(resp.framing.chunked);
	cr_expect_gt(resp_s("HTTP/1.0 200 OK\r\n\r\n"), 0);
	cr_expect(!resp.framing.keep_alive);
	cr_expect_gt(resp_s("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), 0);
	cr_expect(resp.framing.keep_alive);
	cr_expect_gt(resp_s("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), 0);
	cr_expect(!resp.framing.keep_alive);
	cr_expect_gt(resp_s("HTTP/1.1 200 OK\r\nExpect: 100-continue\r\n\r\n"), 0);
	cr_expect(!resp.framing.expect_continue);

	static const struct refusal t[] = {
		{"HTTP/1.1 099 x\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 20 OK\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 2000 OK\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1  200 OK\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 2x0 OK\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 200 O\x01K\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"http/1.1 200 OK\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, CS_HTTP_E_FRAMING},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
		 CS_HTTP_E_FRAMING},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\n", 0, CS_HTTP_E_NOT_IMPLEMENTED},
		{"HTTP/0.9 200 OK\r\n\r\n", 0, CS_HTTP_E_VERSION},
	};
	expect_refusals(t, sizeof(t) / sizeof(t[0]), false);
}

Test(http, status_line_limit)
{
	struct cs_http_limits lim = {.max_line = 20};
	const char *ok = "HTTP/1.1 200 abcdefg\r\n\r\n";
	const char *over = "HTTP/1.1 200 abcdefgh\r\n\r\n";

	cr_expect_eq(check_prefixes(false, ok, strlen(ok), &lim), 24);
	cr_expect_eq(check_prefixes(false, over, strlen(over), &lim), CS_HTTP_E_LINE_TOO_LONG);
}

/* ---- header lookups ------------------------------------------------------------- */

Test(http, find_header_and_has_token)
{
	cr_assert_gt(req_s("GET / HTTP/1.1\r\nHost: a\r\nX-Y: 1\r\nx-y: 2\r\n\r\n"), 0);
	const struct cs_http_header *h = cs_http_find_header(req.headers, req.num_headers, "X-y");

	cr_assert_not_null(h);
	SPAN_EQ(h->value, h->value_len, "1");
	cr_expect_null(cs_http_find_header(req.headers, req.num_headers, "X"));
	cr_expect_null(cs_http_find_header(req.headers, req.num_headers, "X-Y-Z"));
	cr_expect_null(cs_http_find_header(req.headers, 0, "Host"));

	const char *v = "keep-alive, Upgrade";
	cr_expect(cs_http_has_token(v, strlen(v), "upgrade"));
	cr_expect(cs_http_has_token(v, strlen(v), "KEEP-ALIVE"));
	cr_expect(!cs_http_has_token(v, strlen(v), "keep"));
	cr_expect(!cs_http_has_token(v, strlen(v), "alive, Upgrade"));
	v = " ,\t a ,, b\t,";
	cr_expect(cs_http_has_token(v, strlen(v), "a"));
	cr_expect(cs_http_has_token(v, strlen(v), "b"));
	cr_expect(!cs_http_has_token(v, strlen(v), ""));
	cr_expect(!cs_http_has_token("", 0, "a"));
	/* Only len bytes count. */
	cr_expect(!cs_http_has_token("abc", 2, "abc"));
}

/* ---- chunked ------------------------------------------------------------------- */

struct decoded {
	char body[8192];
	size_t body_len;
	char rest[256];
	size_t rest_len;
	size_t end; /* where the body ended in the input */
};

/* Feed s[0..len) to a decoder in pieces of step bytes (0: all at once),
 * each piece copied before a guard page. Returns the last result. */
static ssize_t decode(const char *s, size_t len, size_t step, uint64_t max_body, struct decoded *out)
{
	struct cs_http_chunked d;
	ssize_t r = CS_HTTP_PARTIAL;
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	cs_http_chunked_init(&d, max_body);
	if (step == 0)
		step = len ? len : 1;
	while (pos < len && r == CS_HTTP_PARTIAL) {
		size_t n = len - pos < step ? len - pos : step;
		struct guard g;
		char *buf = (char *)guard_put(&g, s + pos, n);
		size_t got = n;

		r = cs_http_decode_chunked(&d, buf, &got);
		cr_assert_leq(got, n);
		cr_assert_leq(got + (r > 0 ? (size_t)r : 0), n);
		cr_assert_leq(out->body_len + got, sizeof(out->body));
		memcpy(out->body + out->body_len, buf, got);
		out->body_len += got;
		if (r >= 0) {
			cr_assert_leq((size_t)r, sizeof(out->rest));
			memcpy(out->rest, buf + got, (size_t)r);
			out->rest_len = (size_t)r;
			/* The rest is what followed the body in this piece. */
			cr_assert(memcmp(out->rest, s + pos + n - (size_t)r, (size_t)r) == 0);
			out->end = pos + n - (size_t)r;
		}
		if (r < 0 && r != CS_HTTP_PARTIAL) {
			/* Refused for good: the same answer again. */
			size_t again = n;

			cr_assert_eq(cs_http_decode_chunked(&d, buf, &again), r);
			cr_assert_eq(again, 0);
		}
		pos += n;
		guard_free(&g);
	}
	return r;
}

/* Decode s whole and one byte at a time; both must agree. */
static ssize_t decode_both(const char *s, size_t len, uint64_t max_body, struct decoded *out)
{
	static struct decoded bytewise;
	ssize_t whole = decode(s, len, 0, max_body, out);
	ssize_t byte = decode(s, len, 1, max_body, &bytewise);

	if (whole >= 0) {
		/* One at a time, the body ends with the piece that ends it. */
		cr_assert_eq(byte, 0);
		cr_assert_eq(bytewise.end, out->end);
	} else {
		cr_assert_eq(byte, whole, "bytewise %zd, whole %zd", byte, whole);
	}
	/* A refusal drops what its own call decoded, so only bodies that
	 * were not refused must agree. */
	if (whole >= 0 || whole == CS_HTTP_PARTIAL) {
		cr_assert_eq(bytewise.body_len, out->body_len);
		cr_assert(memcmp(bytewise.body, out->body, out->body_len) == 0);
	}
	return whole;
}

#define BODY_EQ(d, want)                                                                      \
	cr_expect((d).body_len == strlen(want) && memcmp((d).body, want, (d).body_len) == 0,     \
		  "body \"%.*s\", want \"%s\"", (int)(d).body_len, (d).body, want)

Test(http, chunked_bodies)
{
	static struct decoded d;
	const char *s;

	s = "5\r\nhello\r\n0\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "hello");

	s = "a\r\n0123456789\r\nA\r\nabcdefghij\r\n1\r\n!\r\n0\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "0123456789abcdefghij!");

	s = "5;name=value;x\r\nhello\r\n3 \t;q=\"a b\"\r\nabc\r\n0;last\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "helloabc");

	s = "3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: two words\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "abc");

	s = "0000000000000000000000000003\r\nabc\r\n0\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "abc");

	s = "0\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	cr_expect_eq(d.body_len, 0);

	/* Body bytes that look like framing are data. */
	s = "7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), 0);
	BODY_EQ(d, "0\r\n\r\n\r\n");
}

Test(http, chunked_leaves_the_next_message_after_the_body)
{
	static struct decoded d;
	const char *s = "4\r\nbody\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
	const char *next = strstr(s, "GET");

	cr_expect_eq(decode(s, strlen(s), 0, 0, &d), (ssize_t)strlen(next));
	BODY_EQ(d, "body");
	cr_expect(d.rest_len == strlen(next) && memcmp(d.rest, next, d.rest_len) == 0);

	/* Fed a byte at a time, the body ends with its last byte. */
	cr_expect_eq(decode(s, (size_t)(next - s), 1, 0, &d), 0);
	BODY_EQ(d, "body");
	cr_expect_eq(d.end, (size_t)(next - s));
}

Test(http, chunked_refusals)
{
	static struct decoded d;
	static const struct refusal t[] = {
		{"g\r\nabc\r\n", 0, CS_HTTP_E_MALFORMED},
		{"\r\n", 0, CS_HTTP_E_MALFORMED},
		{";ext\r\n", 0, CS_HTTP_E_MALFORMED},
		{" 5\r\nhello\r\n0\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"-5\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"+5\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"0x5\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5 5\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5\nhello\r\n0\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5\r\nhelloX\r\n0\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5\r\nhello\n0\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5\r\nhello\rX", 0, CS_HTTP_E_MALFORMED},
		{"5\r\nhello0\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5;a\x01\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"5;a\rb\r\nhello\r\n", 0, CS_HTTP_E_MALFORMED},
		{"0\r\nX: y\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"0\r\nX: \x01\r\n\r\n", 0, CS_HTTP_E_MALFORMED},
		{"0\r\n\n", 0, CS_HTTP_E_MALFORMED},
		{"4000000000000001\r\n", 0, CS_HTTP_E_MALFORMED},
		{"10000000000000000\r\n", 0, CS_HTTP_E_MALFORMED},
		{"ffffffffffffffffffff\r\n", 0, CS_HTTP_E_MALFORMED},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ssize_t r = decode_both(t[i].in, strlen(t[i].in), 0, &d);

		cr_expect_eq(r, t[i].want, "case %zu: got %zd, want %d", i, r, t[i].want);
	}
	/* 2^62 itself is a size (it only waits for its data). */
	const char *s = "4000000000000000\r\nab";
	cr_expect_eq(decode_both(s, strlen(s), 0, &d), CS_HTTP_PARTIAL);
	BODY_EQ(d, "ab");
}

Test(http, chunked_line_length_limit)
{
	static struct decoded d;
	static char s[5000];
	size_t n;

	/* A size line of exactly 4096 bytes, CRLF included, is fine. */
	memcpy(s, "3;", 2);
	memset(s + 2, 'e', 4092);
	memcpy(s + 4094, "\r\nabc\r\n0\r\n\r\n", 12);
	n = 4106;
	cr_expect_eq(decode_both(s, n, 0, &d), 0);
	BODY_EQ(d, "abc");
	/* One more byte of extension is not. */
	memcpy(s, "3;", 2);
	memset(s + 2, 'e', 4093);
	memcpy(s + 4095, "\r\nabc\r\n0\r\n\r\n", 12);
	cr_expect_eq(decode_both(s, 4107, 0, &d), CS_HTTP_E_MALFORMED);
	/* Nor a trailer line over 4 KiB, even before it ends. */
	memcpy(s, "0\r\nX: ", 6);
	memset(s + 6, 'v', 4200);
	cr_expect_eq(decode_both(s, 4206, 0, &d), CS_HTTP_E_MALFORMED);
}

Test(http, chunked_max_body)
{
	static struct decoded d;
	const char *s = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";

	cr_expect_eq(decode_both(s, strlen(s), 5, &d), 0);
	BODY_EQ(d, "abcde");
	cr_expect_eq(decode_both(s, strlen(s), 4, &d), CS_HTTP_E_FRAMING);
	/* Refused at the size line, before any of the data arrives. */
	s = "6\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 5, &d), CS_HTTP_E_FRAMING);
	s = "4000000000000000\r\n";
	cr_expect_eq(decode_both(s, strlen(s), 1, &d), CS_HTTP_E_FRAMING);
}

Test(http, chunked_keeps_no_consumed_input)
{
	struct cs_http_chunked dec;
	char buf[64];
	size_t len;

	cs_http_chunked_init(&dec, 0);
	memcpy(buf, "5\r\nhe", 5);
	len = 5;
	cr_assert_eq(cs_http_decode_chunked(&dec, buf, &len), CS_HTTP_PARTIAL);
	cr_assert_eq(len, 2);
	cr_assert(memcmp(buf, "he", 2) == 0);
	cr_expect_eq(dec.remaining, 3);
	cr_expect_eq(dec.total, 2);
	memcpy(buf, "llo\r\n0\r\n\r\nNEXT", 14);
	len = 14;
	cr_assert_eq(cs_http_decode_chunked(&dec, buf, &len), 4);
	cr_assert_eq(len, 3);
	cr_assert(memcmp(buf, "lloNEXT", 7) == 0);
	cr_expect_eq(dec.total, 5);
}

/* ---- URLs ----------------------------------------------------------------------- */

Test(http, url_parts)
{
	struct cs_url u;
	const char *s;

	s = "http://example.com";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.scheme, u.scheme_len, "http");
	SPAN_EQ(u.host, u.host_len, "example.com");
	cr_expect_eq(u.port, 80);
	cr_expect(!u.tls && !u.websocket);
	cr_expect_null(u.user);
	cr_expect_null(u.password);
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/");

	s = "https://example.com:8443/a/b?x=1&y#frag";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_expect_eq(u.port, 8443);
	cr_expect(u.tls && !u.websocket);
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/a/b?x=1&y");

	s = "HTTPS://h";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_expect_eq(u.port, 443);
	s = "ws://h/chat";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_expect(u.websocket && !u.tls);
	cr_expect_eq(u.port, 80);
	s = "WsS://h";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_expect(u.websocket && u.tls);
	cr_expect_eq(u.port, 443);

	s = "http://user:p%40ss@host:81/x";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.user, u.user_len, "user");
	SPAN_EQ(u.password, u.password_len, "p%40ss");
	SPAN_EQ(u.host, u.host_len, "host");
	cr_expect_eq(u.port, 81);
	s = "http://user@host";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.user, u.user_len, "user");
	cr_expect_null(u.password);
	s = "http://user:@host";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_assert_not_null(u.password);
	cr_expect_eq(u.password_len, 0);
	s = "http://a@b@c/p@q";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.user, u.user_len, "a@b");
	SPAN_EQ(u.host, u.host_len, "c");
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/p@q");

	s = "http://[::1]:8080/x";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.host, u.host_len, "::1");
	cr_expect_eq(u.port, 8080);
	s = "https://[2001:db8::1]";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.host, u.host_len, "2001:db8::1");
	cr_expect_eq(u.port, 443);
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/");
	s = "http://[::ffff:127.0.0.1]/";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.host, u.host_len, "::ffff:127.0.0.1");

	s = "http://h:65535?q=1";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	cr_expect_eq(u.port, 65535);
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "?q=1");
	s = "http://h#frag";
	cr_assert_eq(cs_url_parse(s, strlen(s), &u), 0);
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/");
	/* Only len bytes count. */
	s = "http://host/path";
	cr_assert_eq(cs_url_parse(s, 11, &u), 0);
	SPAN_EQ(u.host, u.host_len, "host");
	SPAN_EQ(u.path_and_query, u.path_and_query_len, "/");
}

Test(http, bad_urls)
{
	static const char *const bad[] = {
		"ftp://h/", "http:/h", "http//h", "://h", "http://", "http:///p", "http://:80/",
		"http://h:0/", "http://h:65536/", "http://h:99999999999999999999/", "http://h:/",
		"http://h:8a/", "http://h:-1/", "http://h /", "http://h/ a", "http://h/\x01",
		"http://h/\x7f", "http://h\t/", "http://[::1]x/", "http://[]/", "http://[1.2.3.4]/",
		"http://[::1", "http://[::g]/", "http://h:80:81/", "http://u@/", "http", "",
		"httpx://h", "http:", "http://h\\x/",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cs_url u;
		struct guard g;
		size_t len = strlen(bad[i]);
		const char *p = (const char *)guard_put(&g, bad[i], len);

		cr_expect_eq(cs_url_parse(p, len, &u), -1, "\"%s\" was accepted", bad[i]);
		guard_free(&g);
	}
}

/* ---- query strings ---------------------------------------------------------------- */

static void expect_unescape(const char *in, bool plus, const char *want, size_t want_len)
{
	char out[128];
	struct guard g;
	size_t len = strlen(in);
	char *src = (char *)guard_put(&g, in, len);
	size_t n = cs_http_unescape(out, src, len, plus);

	cr_expect(n == want_len && memcmp(out, want, n) == 0, "\"%s\" gave \"%.*s\"", in, (int)n, out);
	/* In place gives the same. */
	n = cs_http_unescape(src, src, len, plus);
	cr_expect(n == want_len && memcmp(src, want, n) == 0, "\"%s\" in place", in);
	guard_free(&g);
}

Test(http, unescape)
{
	expect_unescape("a%20b", false, "a b", 3);
	expect_unescape("a+b", true, "a b", 3);
	expect_unescape("a+b", false, "a+b", 3);
	expect_unescape("%4a%4A%2b", true, "JJ+", 3);
	expect_unescape("100%", false, "100%", 4);
	expect_unescape("%2", false, "%2", 2);
	expect_unescape("%zz%g1", false, "%zz%g1", 6);
	expect_unescape("%%41", false, "%A", 2);
	expect_unescape("x%00y", false, "x\0y", 3);
	expect_unescape("%e2%82%AC", false, "\xe2\x82\xac", 3);
	expect_unescape("", false, "", 0);
}

struct pair {
	const char *name, *value;
};

static void expect_params(const char *s, const struct pair *want, size_t n)
{
	size_t pos = 0, i = 0, nl, vl;
	const char *name, *value;
	struct guard g;
	size_t len = strlen(s);
	const char *p = (const char *)guard_put(&g, s, len);

	while (cs_http_next_param(p, len, &pos, &name, &nl, &value, &vl)) {
		cr_assert_lt(i, n, "\"%s\": more pairs than %zu", s, n);
		SPAN_EQ(name, nl, want[i].name);
		SPAN_EQ(value, vl, want[i].value);
		cr_assert_leq(pos, len);
		i++;
	}
	cr_expect_eq(i, n, "\"%s\": %zu pairs, want %zu", s, i, n);
	guard_free(&g);
}

Test(http, next_param)
{
	const struct pair a[] = {{"a", "1"}, {"b", "2"}};
	expect_params("a=1&b=2", a, 2);
	expect_params("a=1;b=2", a, 2);
	expect_params("&&a=1&&b=2&", a, 2);
	const struct pair b[] = {{"a", ""}, {"", "x"}, {"c", "=d"}, {"e+f", "%20"}};
	expect_params("a&=x&c==d&e+f=%20", b, 4);
	expect_params("", NULL, 0);
	expect_params("&;&", NULL, 0);
	const struct pair c[] = {{"k", ""}};
	expect_params("k=", c, 1);
}
