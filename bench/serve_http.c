/*
 * serve_http.c - `cosockd-bench serve http`: the backend the rr scenario's
 * proxy forwards to.
 *
 * HTTP/1.1 with keep-alive, safe under pipelining: every complete request
 * in the input buffer (up to its CRLFCRLF) gets one response, in order, and
 * a Content-Length request body is skipped. Every response is the same -
 * status 200, Content-Length, text/plain, --body bytes of the pattern - so
 * it is built once, and a connection only counts the responses it owes
 * and how much of the first one is written: no per-response memory at all.
 *
 * Memory per connection is bounded: requests are read into a fixed
 * HTTP_IN_MAX buffer, and a connection that owes OWED_MAX responses is not
 * read until they are written (the client is held back by TCP flow
 * control). A request line that is not HTTP/1.x, a head that does not fit
 * the buffer, a bad Content-Length or a chunked request body close the
 * connection. "Connection: close" (and HTTP/1.0 without keep-alive) closes
 * it after the response.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"
#include "http.h"
#include "serve.h"

#define HTTP_IN_MAX 8192
#define OWED_MAX 64
#define IOV_BATCH 16

struct http_conn {
	struct serve_conn base;
	uint32_t len;   /* bytes in in[] */
	uint32_t owed;  /* responses not yet fully written */
	uint64_t off;   /* bytes of the first owed one already written */
	uint64_t skip;  /* request body bytes still to discard */
	int closing;    /* close once what is owed is written */
	char in[HTTP_IN_MAX];
};

static char *response; /* the one response, head and body */
static size_t response_len;

static int http_setup(const struct serve_opts *o)
{
	char head[128];
	int hlen = snprintf(head, sizeof(head),
			    "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n"
			    "Content-Type: text/plain\r\n\r\n",
			    (unsigned long long)o->body);

	response_len = (size_t)hlen + o->body;
	response = malloc(response_len);
	if (!response)
		return -1;
	memcpy(response, head, (size_t)hlen);
	cs__fill_pattern((unsigned char *)response + hlen, o->body);
	return 0;
}

/* Write what is owed. 1: all written; 0: the socket is full; -1: error. */
static int http_flush(struct http_conn *h)
{
	while (h->owed) {
		struct iovec iov[IOV_BATCH];
		struct msghdr msg = {.msg_iov = iov};
		for (uint32_t k = 0; k < h->owed && k < IOV_BATCH; k++) {
			size_t skip = k ? 0 : (size_t)h->off;
			iov[k].iov_base = response + skip;
			iov[k].iov_len = response_len - skip;
			msg.msg_iovlen++;
		}
		ssize_t n = sendmsg(h->base.fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		uint64_t done = h->off + (uint64_t)n;
		h->owed -= (uint32_t)(done / response_len);
		h->off = done % response_len;
	}
	return 1;
}

/* "METHOD SP TARGET SP HTTP/1.x CRLF" at the start of a head. Returns 1
 * for HTTP/1.1, 0 for HTTP/1.0, -1 when it is not such a line. */
static int request_line(const char *p, size_t len)
{
	const char *eol = memchr(p, '\r', len);
	size_t i = 0, n;

	if (!eol)
		return -1;
	n = (size_t)(eol - p);
	while (i < n && i < 16 && p[i] >= 'A' && p[i] <= 'Z')
		i++;
	if (i == 0 || i == n || p[i] != ' ')
		return -1;
	size_t target = ++i;
	while (i < n && p[i] > ' ' && p[i] < 0x7f)
		i++;
	if (i == target || n - i != 9 || memcmp(p + i, " HTTP/1.", 8) != 0)
		return -1;
	if (p[n - 1] != '0' && p[n - 1] != '1')
		return -1;
	return p[n - 1] == '1';
}

/* One complete head of hlen bytes: owe its response. Returns 0, or -1 when
 * the request is bad. */
static int http_request(struct http_conn *h, size_t hlen)
{
	const char *v;
	size_t vlen;
	int v11 = request_line(h->in, hlen);

	if (v11 < 0 || cs__http_header(h->in, hlen, "Transfer-Encoding", &vlen))
		return -1;
	if ((v = cs__http_header(h->in, hlen, "Content-Length", &vlen)) &&
	    cs__http_length(v, vlen, &h->skip) < 0)
		return -1;
	v = cs__http_header(h->in, hlen, "Connection", &vlen);
	if (v11 ? v && cs__http_has_token(v, vlen, "close")
		: !v || !cs__http_has_token(v, vlen, "keep-alive"))
		h->closing = 1;
	h->owed++;
	return 0;
}

/* Take every complete request in the buffer (and skip bodies). Returns 0,
 * or -1 on bad input. */
static int http_parse(struct http_conn *h)
{
	size_t pos = 0;

	while (pos < h->len && !h->closing && h->owed < OWED_MAX) {
		if (h->skip) {
			size_t k = h->len - pos < h->skip ? h->len - pos : (size_t)h->skip;
			h->skip -= k;
			pos += k;
			continue;
		}
		size_t end = cs__http_head_end(h->in + pos, h->len - pos);
		if (!end)
			break;
		memmove(h->in, h->in + pos, h->len - pos); /* the head at in[0] */
		h->len -= (uint32_t)pos;
		pos = 0;
		if (http_request(h, end) < 0)
			return -1;
		pos = end;
	}
	if (h->closing)
		pos = h->len; /* nothing after a closing request matters */
	memmove(h->in, h->in + pos, h->len - pos);
	h->len -= (uint32_t)pos;
	if (h->len == HTTP_IN_MAX && !h->owed)
		return -1; /* a head larger than the buffer */
	return 0;
}

/* Write what is owed, take what is buffered, and only then read more: so
 * the buffer always has room for a read, and a client that pipelines
 * without reading meets a full socket instead of our memory. */
static int http_service(struct serve_conn *c, uint32_t events, unsigned char *scratch)
{
	struct http_conn *h = (struct http_conn *)c;

	for (;;) {
		int r = http_flush(h);
		if (r <= 0)
			return r; /* 0: an EPOLLOUT edge will bring us back */
		if (h->closing) {
			shutdown(c->fd, SHUT_WR);
			return -1;
		}
		if (http_parse(h) < 0)
			return -1;
		if (h->owed)
			continue;
		ssize_t n = read(c->fd, h->in + h->len, HTTP_IN_MAX - h->len);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		h->len += (uint32_t)n;
	}
}

const struct serve_kind cs__serve_http = {
	.name = "http",
	.conn_size = sizeof(struct http_conn),
	.setup = http_setup,
	.service = http_service,
};
