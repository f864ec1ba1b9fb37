/*
 * fuzz_http.c - libFuzzer target for ws/http.c: the request and response
 * head parsers (with default and with input-chosen tight limits), the
 * chunked decoder (in two pieces split at an input-chosen point, and one
 * byte at a time), URLs, percent-decoding and query strings.
 *
 * Beyond not crashing (ASan/UBSan catch reads past the input: every
 * parser gets an exact-size heap copy), it checks what the contracts
 * promise: results in range, spans inside the input, prefixes agreeing
 * with the whole, and the chunked decoder giving the same body however
 * its input is split. A broken invariant aborts.
 *
 * Input: byte 0 picks the limits, byte 1 the split point; the rest is the
 * message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(cond)                                                                         \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                            \
		}                                                                           \
	} while (0)

static struct cs_http_request req;
static struct cs_http_response resp;

static char *copy(const uint8_t *p, size_t n)
{
	char *c = malloc(n ? n : 1);

	CHECK(c);
	if (n)
		memcpy(c, p, n);
	return c;
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && p + n <= buf + len;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool known_error(int r)
{
	return r == CS_HTTP_E_MALFORMED || r == CS_HTTP_E_LINE_TOO_LONG ||
	       r == CS_HTTP_E_HEAD_TOO_LARGE || r == CS_HTTP_E_TOO_MANY_HEADERS ||
	       r == CS_HTTP_E_VERSION || r == CS_HTTP_E_FRAMING || r == CS_HTTP_E_NOT_IMPLEMENTED;
}

static int parse(bool request, const char *buf, size_t len, const struct cs_http_limits *lim)
{
	if (request)
		return cs_http_parse_request(buf, len, lim, &req);
	return cs_http_parse_response(buf, len, lim, &resp);
}

static void check_headers(const struct cs_http_header *h, unsigned n, const char *buf, size_t r)
{
	for (unsigned i = 0; i < n; i++) {
		CHECK(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf, r));
		CHECK(inside(h[i].value, h[i].value_len, buf, r));
		if (h[i].value_len) {
			CHECK(!is_blank(h[i].value[0]));
			CHECK(!is_blank(h[i].value[h[i].value_len - 1]));
		}
		CHECK(!memchr(h[i].name, ':', h[i].name_len));
	}
}

static void check_framing(const struct cs_http_framing *f)
{
	CHECK(f->content_length >= -1);
	CHECK(!(f->chunked && f->content_length >= 0));
}

/* A prefix of k bytes must agree with the whole's result. */
static void check_prefix(bool request, const char *buf, size_t k, int whole,
			 const struct cs_http_limits *lim)
{
	char *c = copy((const uint8_t *)buf, k);
	int r = parse(request, c, k, lim);

	if (whole > 0)
		CHECK(k < (size_t)whole ? r == CS_HTTP_PARTIAL : r == whole);
	else if (whole == CS_HTTP_PARTIAL)
		CHECK(r == CS_HTTP_PARTIAL);
	else
		CHECK(r == CS_HTTP_PARTIAL || r == whole);
	free(c);
}

static void head(bool request, const uint8_t *data, size_t len, const struct cs_http_limits *lim,
		 size_t split)
{
	char *buf = copy(data, len);
	int r = parse(request, buf, len, lim);
	unsigned max_headers = lim && lim->max_headers ? lim->max_headers : 100;
	size_t max_head = lim && lim->max_head ? lim->max_head : 65536;

	if (max_headers > CS_HTTP_MAX_HEADERS)
		max_headers = CS_HTTP_MAX_HEADERS;
	CHECK(r == CS_HTTP_PARTIAL || known_error(r) || (r > 0 && (size_t)r <= len));
	if (r > 0) {
		CHECK((size_t)r <= max_head);
		CHECK(buf[r - 1] == '\n');
		if (request) {
			CHECK(req.num_headers <= max_headers);
			CHECK(req.method_len > 0 && inside(req.method, req.method_len, buf, (size_t)r));
			CHECK(req.target_len > 0 && inside(req.target, req.target_len, buf, (size_t)r));
			CHECK(req.minor_version == 0 || req.minor_version == 1);
			check_headers(req.headers, req.num_headers, buf, (size_t)r);
			check_framing(&req.framing);
		} else {
			CHECK(resp.num_headers <= max_headers);
			CHECK(resp.status >= 100 && resp.status <= 999);
			CHECK(resp.minor_version == 0 || resp.minor_version == 1);
			CHECK(inside(resp.reason, resp.reason_len, buf, (size_t)r));
			check_headers(resp.headers, resp.num_headers, buf, (size_t)r);
			check_framing(&resp.framing);
			CHECK(!resp.framing.expect_continue);
		}
	}
	if (len) {
		check_prefix(request, buf, split % len, r, lim);
		check_prefix(request, buf, len - 1, r, lim);
	}
	free(buf);
}

/* ---- chunked ------------------------------------------------------------------ */

struct body {
	char *p;
	size_t len;
	ssize_t result;
	size_t end; /* input offset where the body ended */
};

/* Decode data[0..len) in pieces of step bytes, each an exact-size copy. */
static void decode(const uint8_t *data, size_t len, size_t step, uint64_t max_body, struct body *b)
{
	struct cs_http_chunked d;
	size_t pos = 0;

	b->p = malloc(len ? len : 1);
	CHECK(b->p);
	b->len = 0;
	b->result = CS_HTTP_PARTIAL;
	b->end = 0;
	cs_http_chunked_init(&d, max_body);
	while (pos < len && b->result == CS_HTTP_PARTIAL) {
		size_t n = len - pos < step ? len - pos : step;
		char *c = copy(data + pos, n);
		size_t got = n;
		ssize_t r = cs_http_decode_chunked(&d, c, &got);

		CHECK(got <= n);
		CHECK(r == CS_HTTP_PARTIAL || r == CS_HTTP_E_MALFORMED || r == CS_HTTP_E_FRAMING ||
		      (r >= 0 && got + (size_t)r <= n));
		if (r >= 0) {
			/* What is left is the input after the body, unchanged. */
			CHECK(memcmp(c + got, data + pos + n - (size_t)r, (size_t)r) == 0);
			b->end = pos + n - (size_t)r;
		}
		if (r < 0 && r != CS_HTTP_PARTIAL) {
			size_t again = n;

			CHECK(got == 0);
			CHECK(cs_http_decode_chunked(&d, c, &again) == r && again == 0);
		}
		memcpy(b->p + b->len, c, got);
		b->len += got;
		if (r >= 0 || r == CS_HTTP_PARTIAL)
			CHECK(d.total == b->len);
		if (max_body)
			CHECK(d.total <= max_body);
		b->result = r;
		free(c);
		pos += n;
	}
}

static void chunked(const uint8_t *data, size_t len, size_t split, uint64_t max_body)
{
	struct body two, one;

	if (len == 0)
		return;
	decode(data, len, split % len + 1, max_body, &two);
	decode(data, len, 1, max_body, &one);
	if (two.result >= 0) {
		CHECK(one.result == 0);
		CHECK(one.end == two.end);
	} else {
		CHECK(one.result == two.result);
	}
	if (two.result >= 0 || two.result == CS_HTTP_PARTIAL)
		CHECK(one.len == two.len && memcmp(one.p, two.p, one.len) == 0);
	free(two.p);
	free(one.p);
}

/* ---- URLs and query strings ------------------------------------------------------ */

static void url(const uint8_t *data, size_t len)
{
	char *buf = copy(data, len);
	struct cs_url u;

	if (cs_url_parse(buf, len, &u) == 0) {
		CHECK(u.host_len > 0 && inside(u.host, u.host_len, buf, len));
		CHECK(inside(u.scheme, u.scheme_len, buf, len));
		CHECK(u.port >= 1 && u.port <= 65535);
		CHECK(!u.user || inside(u.user, u.user_len, buf, len));
		CHECK(!u.password || (u.user && inside(u.password, u.password_len, buf, len)));
		CHECK(u.path_and_query_len > 0);
		CHECK((u.path_and_query_len == 1 && u.path_and_query[0] == '/') ||
		      inside(u.path_and_query, u.path_and_query_len, buf, len));
		CHECK(u.path_and_query[0] == '/' || u.path_and_query[0] == '?');
		CHECK(u.scheme_len >= 2);
		/* http ws | https wss */
		CHECK(u.tls == (u.scheme_len == 5 || u.scheme_len == 3));
		CHECK(u.port != 443 || u.tls || u.scheme + u.scheme_len + 3 < u.host);
		CHECK(u.websocket == (u.scheme[0] == 'w' || u.scheme[0] == 'W'));
	}
	free(buf);
}

static void query(const uint8_t *data, size_t len)
{
	char *buf = copy(data, len);
	char *out = malloc(len ? len : 1);
	size_t n1, n2, pos = 0, nl, vl, pairs = 0, last = 0;
	const char *name, *value;

	CHECK(out);
	n1 = cs_http_unescape(out, buf, len, true);
	CHECK(n1 <= len);
	n2 = cs_http_unescape(buf, buf, len, true);
	CHECK(n1 == n2 && memcmp(out, buf, n1) == 0);
	free(buf);

	buf = copy(data, len);
	while (cs_http_next_param(buf, len, &pos, &name, &nl, &value, &vl)) {
		CHECK(++pairs <= len);
		CHECK(pos <= len && pos > last);
		last = pos;
		CHECK(inside(name, nl, buf, len) && inside(value, vl, buf, len));
		CHECK(name + nl <= value);
		CHECK(!memchr(name, '=', nl) && !memchr(name, '&', nl) && !memchr(name, ';', nl));
		CHECK(!memchr(value, '&', vl) && !memchr(value, ';', vl));
	}
	free(buf);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cs_http_limits tight;
	uint8_t sel, split;

	if (size < 2)
		return 0;
	sel = data[0];
	split = data[1];
	data += 2;
	size -= 2;

	tight.max_line = 8 + (size_t)(sel & 0x0F) * 4;
	tight.max_head = 16 + (size_t)(sel >> 4) * 16;
	tight.max_headers = 1 + (sel & 0x07);

	head(true, data, size, NULL, split);
	head(true, data, size, &tight, split);
	head(false, data, size, NULL, split);
	head(false, data, size, &tight, split);
	chunked(data, size, split, 0);
	chunked(data, size, split, sel);
	url(data, size);
	query(data, size);
	return 0;
}
