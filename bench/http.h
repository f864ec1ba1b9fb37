/*
 * http.h - the little HTTP/1.1 scanning that both sides of the benchmark
 * need: `serve http` reading requests and `rr` reading responses. Only
 * what a benchmark must get right - where a head ends, a header's value,
 * Content-Length, a "close" token, chunked framing - and all of it on
 * bytes already in a buffer: nothing here reads, allocates or keeps
 * pointers.
 */
#ifndef CS_BENCH_HTTP_H
#define CS_BENCH_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Offset just past the first CRLFCRLF in buf[0, len), or 0 when the head
 * is not complete yet. */
size_t cs__http_head_end(const char *buf, size_t len);

/* The value of header name (case-insensitive) in head[0, len), a complete
 * head: leading and trailing blanks trimmed, *vlen set. NULL when absent.
 * The first line (request or status line) is never taken for a header. */
const char *cs__http_header(const char *head, size_t len, const char *name, size_t *vlen);

/* Does the comma-separated list v[0, vlen) hold token (case-insensitive)? */
int cs__http_has_token(const char *v, size_t vlen, const char *token);

/* A Content-Length value: 0 and *out set, or -1 when it is not a plain
 * decimal number below 2^62. */
int cs__http_length(const char *v, size_t vlen, uint64_t *out);

/* An incremental decoder of a chunked body's framing (sizes, CRLFs, the
 * trailer); the data itself is only counted. Zero it to start. */
struct cs__chunked {
	int state;
	uint64_t left; /* data bytes left in the current chunk */
	uint64_t data; /* data bytes seen so far */
	int digits;    /* hex digits of the current size */
};

/* Feed n bytes. Returns how many were consumed - fewer than n only when
 * the body ended inside them (*done is set then) - or -1 when the framing
 * is malformed. */
ssize_t cs__chunked_feed(struct cs__chunked *ck, const char *p, size_t n, int *done);

#endif
