/*
 * test_tls.c - tls/tls.c, sessions: a client and a server session driven
 * against each other entirely in memory (each side's cs_tls_take_output()
 * fed to the other's cs_tls_feed(), no sockets). The TLS 1.3 handshake,
 * records both ways (one record per read), a byte at a time, reading
 * before the handshake is done, close_notify and EOF, broken input and
 * the error strings, ALPN, resumption from the client context's cache, and
 * the context's references.
 *
 * Certificates, contexts, trust and SNI are in test_tls_cert.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "tls_pair.h"

/* The most plaintext one TLS record carries. */
#define REC_MAX 16384
static char *g_cert, *g_key; /* a fresh self-signed "localhost" per test */

static void setup(void)
{
	cr_assert_eq(cs_tls_global_init(), 0);
	cr_assert_eq(cs_tls_global_init(), 0, "cs_tls_global_init is idempotent");
	cr_assert_eq(cs_tls_make_self_signed("localhost", 30, &g_cert, &g_key), 0);
	cr_assert_not_null(g_cert);
	cr_assert_not_null(g_key);
}

static void teardown(void)
{
	free(g_cert);
	free(g_key);
	g_cert = g_key = NULL;
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ----------------------------------------------------------- */

static cs_tls_ctx *server_ctx_with(const char *cert, const char *key, const char *alpn)
{
	struct cs_tls_ctx_opts o = {.server = true, .alpn = alpn};
	cs_tls_ctx *ctx = cs_tls_ctx_new(&o);
	cr_assert_not_null(ctx);
	const char *err = NULL;
	cs_tls_cert *c = cs_tls_cert_new(cert, strlen(cert), key, strlen(key), NULL, &err);
	cr_assert_not_null(c, "cs_tls_cert_new: %s", err ? err : "(no err)");
	cr_assert_eq(cs_tls_ctx_add_cert(ctx, c), 0);
	cs_tls_cert_free(c);
	return ctx;
}

static cs_tls_ctx *server_ctx(const char *alpn)
{
	return server_ctx_with(g_cert, g_key, alpn);
}

static cs_tls_ctx *client_ctx(uint32_t cache_size)
{
	struct cs_tls_ctx_opts o = {.server = false, .verify = false, .cache_size = cache_size};
	cs_tls_ctx *ctx = cs_tls_ctx_new(&o);
	cr_assert_not_null(ctx);
	return ctx;
}

static void handshake_ok(cs_tls *c, cs_tls *s)
{
	struct hs r = handshake(c, s);
	cr_assert_eq(r.c, CS_TLS_OK, "client handshake: %s", st(r.c));
	cr_assert_eq(r.s, CS_TLS_OK, "server handshake: %s", st(r.s));
	cr_assert(cs_tls_handshake_done(c));
	cr_assert(cs_tls_handshake_done(s));
}

struct pair {
	cs_tls_ctx *cctx, *sctx;
	cs_tls *c, *s;
};

/* Sessions on the given contexts (which the pair then owns). */
static void pair_new(struct pair *p, cs_tls_ctx *cctx, cs_tls_ctx *sctx, const char *host, int port,
		     const char *alpn)
{
	p->cctx = cctx;
	p->sctx = sctx;
	p->c = cs_tls_new(cctx, host, port, alpn);
	p->s = cs_tls_new(sctx, NULL, 0, NULL);
	cr_assert_not_null(p->c);
	cr_assert_not_null(p->s);
}

static void pair_connect(struct pair *p)
{
	pair_new(p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	handshake_ok(p->c, p->s);
}

static void pair_free(struct pair *p)
{
	cs_tls_free(p->c);
	cs_tls_free(p->s);
	cs_tls_ctx_unref(p->cctx);
	cs_tls_ctx_unref(p->sctx);
	memset(p, 0, sizeof(*p));
}

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *b = malloc(len ? len : 1);
	cr_assert_not_null(b);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (unsigned char)x;
	}
	return b;
}

/* from writes len bytes; their ciphertext goes to to chunk bytes at a
 * time, and to reads after each chunk until it wants more, with a buffer
 * bigger than any record. Checks every read is at most one record and
 * the bytes arrive complete and in order. Returns the number of reads. */
static unsigned transfer(cs_tls *from, cs_tls *to, const unsigned char *data, size_t len, size_t chunk)
{
	cr_assert_eq(cs_tls_write(from, data, len), (ssize_t)len);
	size_t clen = 0;
	char *cipher = cs_tls_take_output(from, &clen);
	cr_assert_not_null(cipher);
	cr_assert_gt(clen, len, "ciphertext (%zu) must be longer than the plaintext (%zu)", clen, len);
	size_t cap = len + 4 * REC_MAX;
	unsigned char *got = malloc(cap);
	cr_assert_not_null(got);
	size_t have = 0;
	unsigned reads = 0;
	for (size_t off = 0; off < clen; off += chunk) {
		size_t n = clen - off < chunk ? clen - off : chunk;
		cr_assert_eq(cs_tls_feed(to, cipher + off, n), 0);
		for (;;) {
			ssize_t r = cs_tls_read(to, got + have, cap - have);
			if (r == CS_TLS_WANT_READ)
				break;
			cr_assert_gt(r, 0, "read after %zu of %zu bytes: %s", have, len, st(r));
			cr_assert_leq(r, REC_MAX, "a read returned %zd bytes: more than one record", r);
			have += (size_t)r;
			reads++;
			cr_assert_leq(have, len, "read %zu bytes, only %zu were sent", have, len);
		}
	}
	cr_assert_eq(have, len, "read %zu of %zu bytes", have, len);
	cr_assert_eq(memcmp(got, data, len), 0, "the bytes read differ from the bytes written");
	cr_assert_eq(cs_tls_buffered(to), 0);
	free(got);
	free(cipher);
	return reads;
}

static void transfer_str(cs_tls *from, cs_tls *to, const char *s)
{
	transfer(from, to, (const unsigned char *)s, strlen(s), 1 << 20);
}

/* ---- the handshake ----------------------------------------------------- */

Test(tls, full_handshake_is_tls13_with_a_self_signed_cert)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	cr_assert_not(cs_tls_handshake_done(p.c));
	cr_assert_not(cs_tls_handshake_done(p.s));
	cr_assert_eq(cs_tls_output_len(p.c), 0, "nothing is produced before the first call");

	/* The server has nothing to go on yet. */
	cr_assert_eq(cs_tls_handshake(p.s), CS_TLS_WANT_READ);
	cr_assert_eq(cs_tls_output_len(p.s), 0);
	/* The client's first call produces a ClientHello (a handshake record). */
	cr_assert_eq(cs_tls_handshake(p.c), CS_TLS_WANT_READ);
	cr_assert_gt(cs_tls_output_len(p.c), 5);
	size_t len;
	char *hello = cs_tls_take_output(p.c, &len);
	cr_assert_not_null(hello);
	cr_assert_eq((unsigned char)hello[0], 22, "a ClientHello is a handshake record (22), got %u",
		     (unsigned char)hello[0]);
	cr_assert_eq(cs_tls_feed(p.s, hello, len), 0);
	cr_assert_eq(cs_tls_buffered(p.s), len);
	free(hello);

	handshake_ok(p.c, p.s);
	cr_assert_eq(cs_tls_handshake(p.c), CS_TLS_OK, "handshake is OK again once done");
	cr_assert_eq(cs_tls_handshake(p.s), CS_TLS_OK);

	cr_assert_not_null(cs_tls_version(p.c));
	cr_assert_str_eq(cs_tls_version(p.c), "TLSv1.3");
	cr_assert_str_eq(cs_tls_version(p.s), "TLSv1.3");
	cr_assert_not(cs_tls_resumed(p.c));
	cr_assert_not(cs_tls_resumed(p.s));
	cr_assert_null(cs_tls_alpn(p.c));
	cr_assert_null(cs_tls_alpn(p.s));
	cr_assert_str_eq(cs_tls_host(p.c), "localhost");
	cr_assert_null(cs_tls_host(p.s));

	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(p.c, &pc), 0);
	cr_assert_str_eq(pc.subject.common, "localhost");
	pair_free(&p);
}

Test(tls, cipher_is_named_without_the_tls_prefix)
{
	struct pair p;
	pair_connect(&p);
	for (int i = 0; i < 2; i++) {
		const char *c = cs_tls_cipher(i ? p.s : p.c);
		cr_assert_not_null(c);
		cr_assert_gt(strlen(c), 0);
		cr_assert_neq(strncmp(c, "TLS_", 4), 0, "cipher \"%s\" keeps the TLS_ prefix", c);
		cr_assert_str_neq(c, "None");
		/* TLS 1.3 suites: AES_128_GCM_SHA256, AES_256_GCM_SHA384,
		 * CHACHA20_POLY1305_SHA256, ... */
		cr_assert(strstr(c, "SHA") != NULL, "cipher \"%s\" does not look like an IANA suite name", c);
	}
	cr_assert_str_eq(cs_tls_cipher(p.c), cs_tls_cipher(p.s), "both sides agree on the suite");
	pair_free(&p);
}

Test(tls, handshake_and_data_one_byte_at_a_time)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	int rc = CS_TLS_WANT_READ, rs = CS_TLS_WANT_READ;
	cs_tls *side[2] = {p.c, p.s};
	int *res[2] = {&rc, &rs};
	rc = cs_tls_handshake(p.c);
	cr_assert_eq(rc, CS_TLS_WANT_READ);
	for (int round = 0; round < MAX_ROUNDS && (rc != CS_TLS_OK || rs != CS_TLS_OK); round++) {
		for (int k = 0; k < 2; k++) {
			cs_tls *from = side[k], *to = side[!k];
			size_t len;
			char *out = cs_tls_take_output(from, &len);
			for (size_t i = 0; out && i < len; i++) {
				cr_assert_eq(cs_tls_feed(to, out + i, 1), 0);
				int r = cs_tls_handshake(to);
				cr_assert(r == CS_TLS_OK || r == CS_TLS_WANT_READ, "byte %zu of %zu (%s): %s", i,
					  len, k ? "server to client" : "client to server", st(r));
				*res[!k] = r;
			}
			free(out);
		}
	}
	cr_assert_eq(rc, CS_TLS_OK, "client: %s", st(rc));
	cr_assert_eq(rs, CS_TLS_OK, "server: %s", st(rs));

	/* A record a byte at a time: nothing until its last byte. */
	static const char msg[] = "one byte at a time";
	cr_assert_eq(cs_tls_write(p.c, msg, strlen(msg)), (ssize_t)strlen(msg));
	size_t len;
	char *out = cs_tls_take_output(p.c, &len);
	cr_assert_not_null(out);
	char buf[256];
	for (size_t i = 0; i < len; i++) {
		cr_assert_eq(cs_tls_feed(p.s, out + i, 1), 0);
		ssize_t r = cs_tls_read(p.s, buf, sizeof(buf));
		if (i + 1 < len) {
			cr_assert_eq(r, CS_TLS_WANT_READ, "byte %zu of %zu: %s", i, len, st(r));
		} else {
			cr_assert_eq(r, (ssize_t)strlen(msg), "last byte: %s", st(r));
			cr_assert_eq(memcmp(buf, msg, strlen(msg)), 0);
		}
	}
	free(out);

	/* And the other way, with the server's session tickets in front. */
	unsigned char *data = pattern(3000, 7);
	transfer(p.s, p.c, data, 3000, 1);
	free(data);
	pair_free(&p);
}

Test(tls, read_before_the_handshake_is_done_runs_it)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	char buf[64];

	/* The client's read starts the handshake: a ClientHello comes out. */
	cr_assert_eq(cs_tls_read(p.c, buf, sizeof(buf)), CS_TLS_WANT_READ);
	cr_assert_gt(cs_tls_output_len(p.c), 0, "cs_tls_read did not start the handshake");
	pump(p.c, p.s);
	/* The server's read answers it. */
	cr_assert_eq(cs_tls_read(p.s, buf, sizeof(buf)), CS_TLS_WANT_READ);
	cr_assert_gt(cs_tls_output_len(p.s), 0, "cs_tls_read did not run the server's handshake");
	cr_assert_not(cs_tls_handshake_done(p.s));
	pump(p.s, p.c);
	/* The client finishes through a read too, and then may write. */
	cr_assert_eq(cs_tls_read(p.c, buf, sizeof(buf)), CS_TLS_WANT_READ);
	cr_assert(cs_tls_handshake_done(p.c), "the client's read did not finish its handshake");
	cr_assert_eq(cs_tls_write(p.c, "ping", 4), 4);
	pump(p.c, p.s);
	/* The server's read completes the handshake and returns the data
	 * that came behind the client's Finished. */
	ssize_t r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, 4, "server read: %s", st(r));
	cr_assert_eq(memcmp(buf, "ping", 4), 0);
	cr_assert(cs_tls_handshake_done(p.s));
	cr_assert_eq(cs_tls_handshake(p.s), CS_TLS_OK);
	pair_free(&p);
}

Test(tls, write_before_the_handshake_is_an_error)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	ssize_t r = cs_tls_write(p.c, "early", 5);
	cr_assert_lt(r, 0, "write before the handshake returned %zd", r);
	cr_assert_neq(r, CS_TLS_WANT_READ);
	pair_free(&p);
}

/* ---- application data -------------------------------------------------- */

Test(tls, data_both_ways)
{
	struct pair p;
	pair_connect(&p);
	transfer_str(p.c, p.s, "GET / HTTP/1.0\r\n\r\n");
	transfer_str(p.s, p.c, "HTTP/1.0 200 OK\r\n\r\nhello");
	transfer_str(p.c, p.s, "x");
	for (int i = 0; i < 20; i++) {
		unsigned char *d = pattern(100 + (size_t)i * 997, (unsigned)i);
		transfer(i % 2 ? p.c : p.s, i % 2 ? p.s : p.c, d, 100 + (size_t)i * 997, 1 << 20);
		free(d);
	}
	pair_free(&p);
}

Test(tls, one_mebibyte_each_way_comes_in_records)
{
	struct pair p;
	pair_connect(&p);
	size_t len = 1 << 20;
	unsigned char *data = pattern(len, 42);
	/* All of the ciphertext at once, then in odd-sized pieces that split
	 * records and headers. */
	unsigned reads = transfer(p.c, p.s, data, len, len * 2);
	cr_assert_geq(reads, len / REC_MAX, "%u reads for 1 MiB: some returned more than a record", reads);
	reads = transfer(p.s, p.c, data, len, 7919);
	cr_assert_geq(reads, len / REC_MAX);
	reads = transfer(p.c, p.s, data, len, 5);
	cr_assert_geq(reads, len / REC_MAX);
	free(data);
	pair_free(&p);
}

Test(tls, a_read_returns_at_most_one_record)
{
	struct pair p;
	pair_connect(&p);
	/* Two writes, two records, arriving together. */
	cr_assert_eq(cs_tls_write(p.c, "first", 5), 5);
	size_t one = cs_tls_output_len(p.c);
	cr_assert_gt(one, 5);
	cr_assert_eq(cs_tls_write(p.c, "second!", 7), 7);
	size_t both = cs_tls_output_len(p.c);
	cr_assert_gt(both, one, "output_len grows with each write");
	pump(p.c, p.s);
	cr_assert_eq(cs_tls_buffered(p.s), both);

	char buf[256];
	ssize_t r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, 5, "first read: %s", st(r));
	cr_assert_eq(memcmp(buf, "first", 5), 0);
	cr_assert_eq(cs_tls_buffered(p.s), both - one, "the second record is still buffered");
	r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, 7, "second read: %s", st(r));
	cr_assert_eq(memcmp(buf, "second!", 7), 0);
	cr_assert_eq(cs_tls_buffered(p.s), 0);
	cr_assert_eq(cs_tls_read(p.s, buf, sizeof(buf)), CS_TLS_WANT_READ);
	pair_free(&p);
}

Test(tls, a_short_read_leaves_the_rest_of_the_record)
{
	struct pair p;
	pair_connect(&p);
	unsigned char *data = pattern(1000, 3);
	cr_assert_eq(cs_tls_write(p.s, data, 1000), 1000);
	pump(p.s, p.c);
	unsigned char buf[2000];
	ssize_t r = cs_tls_read(p.c, buf, 100);
	cr_assert_eq(r, 100, "read 100: %s", st(r));
	r = cs_tls_read(p.c, buf + 100, 1);
	cr_assert_eq(r, 1, "read 1: %s", st(r));
	r = cs_tls_read(p.c, buf + 101, sizeof(buf) - 101);
	cr_assert_eq(r, 899, "rest: %s", st(r));
	cr_assert_eq(memcmp(buf, data, 1000), 0);
	cr_assert_eq(cs_tls_read(p.c, buf, sizeof(buf)), CS_TLS_WANT_READ);
	free(data);
	pair_free(&p);
}

Test(tls, output_is_taken_once)
{
	struct pair p;
	pair_connect(&p);
	size_t len = 99;
	cr_assert_eq(cs_tls_output_len(p.c), 0);
	cr_assert_null(cs_tls_take_output(p.c, &len));
	cr_assert_eq(len, 0, "take_output with nothing waiting sets *len to %zu", len);
	cr_assert_eq(cs_tls_write(p.c, "abc", 3), 3);
	size_t waiting = cs_tls_output_len(p.c);
	char *out = cs_tls_take_output(p.c, &len);
	cr_assert_not_null(out);
	cr_assert_eq(len, waiting);
	cr_assert_eq(cs_tls_output_len(p.c), 0);
	cr_assert_null(cs_tls_take_output(p.c, &len));
	free(out);
	pair_free(&p);
}

/* ---- the end of the stream --------------------------------------------- */

Test(tls, close_notify_reads_as_closed)
{
	struct pair p;
	pair_connect(&p);
	transfer_str(p.s, p.c, "bye soon");
	cr_assert_eq(cs_tls_write(p.c, "last words", 10), 10);
	cs_tls_close_notify(p.c);
	size_t once = cs_tls_output_len(p.c);
	cs_tls_close_notify(p.c);
	cr_assert_eq(cs_tls_output_len(p.c), once, "a second close_notify queued another alert");
	pump(p.c, p.s);

	char buf[64];
	ssize_t r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, 10, "data before the close_notify: %s", st(r));
	cr_assert_eq(memcmp(buf, "last words", 10), 0);
	r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, CS_TLS_CLOSED, "after close_notify: %s", st(r));
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_CLOSED), "sslclosenotify");
	/* Still closed on a second look, and EOF after it changes nothing. */
	cs_tls_feed_eof(p.s);
	r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert(r == CS_TLS_CLOSED || failed(r), "read after CLOSED: %s", st(r));
	pair_free(&p);
}

Test(tls, close_notify_after_data_one_byte_at_a_time)
{
	struct pair p;
	pair_connect(&p);
	cs_tls_close_notify(p.s);
	size_t len;
	char *out = cs_tls_take_output(p.s, &len);
	cr_assert_not_null(out, "close_notify queued nothing");
	char buf[16];
	ssize_t r = CS_TLS_WANT_READ;
	for (size_t i = 0; i < len; i++) {
		cr_assert_eq(r, CS_TLS_WANT_READ, "byte %zu of %zu: %s", i, len, st(r));
		cs_tls_feed(p.c, out + i, 1);
		r = cs_tls_read(p.c, buf, sizeof(buf));
	}
	/* The server's session tickets came first; then the alert. */
	cr_assert_eq(r, CS_TLS_CLOSED, "%s", st(r));
	free(out);
	pair_free(&p);
}

Test(tls, eof_without_close_notify_reads_as_eof)
{
	struct pair p;
	pair_connect(&p);
	cr_assert_eq(cs_tls_write(p.s, "tail", 4), 4);
	pump(p.s, p.c);
	cs_tls_feed_eof(p.c);
	char buf[64];
	ssize_t r = cs_tls_read(p.c, buf, sizeof(buf));
	cr_assert_eq(r, 4, "data before the EOF: %s", st(r));
	cr_assert_eq(memcmp(buf, "tail", 4), 0);
	r = cs_tls_read(p.c, buf, sizeof(buf));
	cr_assert_eq(r, CS_TLS_EOF, "after feed_eof: %s", st(r));
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_EOF), "socketreadfailed");
	pair_free(&p);
}

Test(tls, eof_inside_a_record_reads_as_eof)
{
	struct pair p;
	pair_connect(&p);
	transfer_str(p.s, p.c, "tickets first");
	cr_assert_eq(cs_tls_write(p.s, "truncated", 9), 9);
	size_t len;
	char *out = cs_tls_take_output(p.s, &len);
	cr_assert_gt(len, 3);
	cs_tls_feed(p.c, out, len - 3);
	free(out);
	char buf[64];
	cr_assert_eq(cs_tls_read(p.c, buf, sizeof(buf)), CS_TLS_WANT_READ);
	cs_tls_feed_eof(p.c);
	ssize_t r = cs_tls_read(p.c, buf, sizeof(buf));
	cr_assert_eq(r, CS_TLS_EOF, "%s", st(r));
	pair_free(&p);
}

Test(tls, eof_during_the_handshake_ends_it)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	cr_assert_eq(cs_tls_handshake(p.c), CS_TLS_WANT_READ);
	cs_tls_feed_eof(p.c);
	int r = cs_tls_handshake(p.c);
	/* tls.h does not say which error; it must not wait for more. */
	cr_assert(failed(r), "handshake after EOF: %s", st(r));
	cr_assert_not(cs_tls_handshake_done(p.c));
	pair_free(&p);
}

/* ---- broken input ------------------------------------------------------ */

Test(tls, garbage_to_a_server_fails_the_handshake)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	cr_assert_eq(cs_tls_feed(p.s, garbage, strlen(garbage)), 0);
	int r = cs_tls_handshake(p.s);
	cr_assert_eq(r, CS_TLS_E_HANDSHAKE, "%s", st(r));
	cr_assert_str_eq(cs_tls_errstr(r), "sslhandshake");
	cr_assert_not(cs_tls_handshake_done(p.s));
	/* Whatever it queued (an alert, maybe) can be taken. */
	size_t len;
	free(cs_tls_take_output(p.s, &len));
	/* The session is dead: a good ClientHello does not revive it. */
	cr_assert_eq(cs_tls_handshake(p.c), CS_TLS_WANT_READ);
	pump(p.c, p.s);
	r = cs_tls_handshake(p.s);
	cr_assert(failed(r), "handshake after the failure: %s", st(r));
	char buf[16];
	ssize_t rr = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert(failed(rr), "read after the failure: %s", st(rr));
	pair_free(&p);
}

Test(tls, random_bytes_to_a_client_fail_its_handshake)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(NULL), "localhost", 443, NULL);
	cr_assert_eq(cs_tls_handshake(p.c), CS_TLS_WANT_READ);
	unsigned char *junk = pattern(600, 99);
	junk[0] = 22; /* a handshake record header with a wild length */
	junk[1] = 3;
	junk[2] = 3;
	junk[3] = 0x01;
	junk[4] = 0x00;
	cs_tls_feed(p.c, junk, 600);
	int r = cs_tls_handshake(p.c);
	cr_assert_eq(r, CS_TLS_E_HANDSHAKE, "%s", st(r));
	free(junk);
	pair_free(&p);
}

Test(tls, a_tampered_record_is_a_crypto_error_and_the_peer_gets_an_alert)
{
	struct pair p;
	pair_connect(&p);
	transfer_str(p.s, p.c, "tickets first");
	cr_assert_eq(cs_tls_write(p.c, "secret message", 14), 14);
	size_t len;
	char *out = cs_tls_take_output(p.c, &len);
	cr_assert_not_null(out);
	out[len - 1] ^= 0x01; /* the AEAD tag */
	cs_tls_feed(p.s, out, len);
	free(out);
	char buf[64];
	ssize_t r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert_eq(r, CS_TLS_E_CRYPTO, "%s", st(r));
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_CRYPTO), "sslcryptoerr");
	r = cs_tls_read(p.s, buf, sizeof(buf));
	cr_assert(failed(r), "read after the failure: %s", st(r));
	r = cs_tls_write(p.s, "x", 1);
	cr_assert(failed(r), "write after the failure: %zd", r);

	/* The server left an alert (bad_record_mac) to send: the client reads
	 * it as a fatal alert from its peer. */
	cr_assert_gt(cs_tls_output_len(p.s), 0, "the failed session left no alert to send");
	pump(p.s, p.c);
	r = cs_tls_read(p.c, buf, sizeof(buf));
	cr_assert_eq(r, CS_TLS_E_ALERT, "%s", st(r));
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_ALERT), "sslalertrecv");
	pair_free(&p);
}

Test(tls, error_strings)
{
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_CLOSED), "sslclosenotify");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_EOF), "socketreadfailed");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_HANDSHAKE), "sslhandshake");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_ALERT), "sslalertrecv");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_CRYPTO), "sslcryptoerr");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_NOTTRUSTED), "sslnottrusted");
	cr_assert_str_eq(cs_tls_errstr(CS_TLS_E_NOMEM), "malloc");
}

/* ---- ALPN -------------------------------------------------------------- */

static void alpn_case(const char *server_accepts, const char *client_offers, const char *want)
{
	struct pair p;
	pair_new(&p, client_ctx(0), server_ctx(server_accepts), "localhost", 443, client_offers);
	handshake_ok(p.c, p.s);
	const char *c = cs_tls_alpn(p.c), *s = cs_tls_alpn(p.s);
	if (!want) {
		cr_assert_null(c, "server %s, client %s: client agreed on \"%s\"", server_accepts, client_offers, c);
		cr_assert_null(s, "server %s, client %s: server agreed on \"%s\"", server_accepts, client_offers, s);
	} else {
		cr_assert_not_null(c, "server %s, client %s: client has no ALPN", server_accepts, client_offers);
		cr_assert_not_null(s, "server %s, client %s: server has no ALPN", server_accepts, client_offers);
		cr_assert_str_eq(c, want, "server %s, client %s: client agreed on \"%s\", not \"%s\"", server_accepts,
				 client_offers, c, want);
		cr_assert_str_eq(s, want, "server %s, client %s: server agreed on \"%s\", not \"%s\"", server_accepts,
				 client_offers, s, want);
	}
	pair_free(&p);
}

Test(tls, alpn_agrees_on_the_protocol_both_accept)
{
	alpn_case("http/1.1", "h2,http/1.1", "http/1.1");
	alpn_case("http/1.1", "http/1.1", "http/1.1");
	alpn_case("h2,http/1.1", "h2", "h2");
}

Test(tls, alpn_follows_the_servers_order_of_preference)
{
	/* tls.h: the server's list is "in order of preference". */
	alpn_case("h2,http/1.1", "http/1.1,h2", "h2");
	alpn_case("http/1.1,h2", "h2,http/1.1", "http/1.1");
}

Test(tls, no_alpn_unless_both_sides_use_it)
{
	alpn_case(NULL, "h2,http/1.1", NULL);
	alpn_case("http/1.1", NULL, NULL);
	alpn_case(NULL, NULL, NULL);
}

/* ---- resumption -------------------------------------------------------- */

/* A full session on cctx/sctx for host:port that exchanges data both ways
 * (so the client has read the server's TLS 1.3 tickets), then is freed.
 * Returns whether it was resumed; forget runs cs_tls_forget_session()
 * before the free and *forgot gets its result. */
static bool session_on(cs_tls_ctx *cctx, cs_tls_ctx *sctx, const char *host, int port, bool forget, bool *forgot)
{
	cs_tls *c = cs_tls_new(cctx, host, port, NULL);
	cs_tls *s = cs_tls_new(sctx, NULL, 0, NULL);
	cr_assert_not_null(c);
	cr_assert_not_null(s);
	handshake_ok(c, s);
	bool resumed = cs_tls_resumed(c);
	cr_assert_eq(cs_tls_resumed(s), resumed, "client says resumed=%d, server %d", resumed, cs_tls_resumed(s));
	transfer_str(c, s, "ping");
	transfer_str(s, c, "pong");
	cr_assert_not_null(cs_tls_cipher(c));
	if (forget) {
		bool f = cs_tls_forget_session(c);
		if (forgot)
			*forgot = f;
	}
	cs_tls_free(c);
	cs_tls_free(s);
	return resumed;
}

Test(tls, a_second_session_to_the_same_host_and_port_resumes)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, false, NULL), "the first session was resumed");
	cr_assert(session_on(cctx, sctx, "localhost", 8443, false, NULL), "the second session was not resumed");
	cr_assert(session_on(cctx, sctx, "localhost", 8443, false, NULL), "the third session was not resumed");
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, forget_session_stops_resumption)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	bool forgot = false;
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, true, &forgot));
	cr_assert(forgot, "forget_session on a completed session had nothing to drop or not store");
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, false, NULL),
		      "resumed a session that was forgotten");
	/* That one was stored; forgetting a resumed one drops the entry. */
	cr_assert(session_on(cctx, sctx, "localhost", 8443, true, &forgot));
	cr_assert(forgot);
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, forget_session_on_a_fresh_session)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	/* Nothing cached, no handshake: nothing to drop or not store. */
	cs_tls *c = cs_tls_new(cctx, "localhost", 8443, NULL);
	cr_assert_not(cs_tls_forget_session(c));
	cs_tls_free(c);
	/* A cached session is dropped by a new session's forget. */
	session_on(cctx, sctx, "localhost", 8443, false, NULL);
	c = cs_tls_new(cctx, "localhost", 8443, NULL);
	cr_assert(cs_tls_forget_session(c), "the cached session for localhost:8443 was not dropped");
	cs_tls_free(c);
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, the_cache_is_keyed_by_host_and_port)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	session_on(cctx, sctx, "localhost", 8443, false, NULL);
	cr_assert_not(session_on(cctx, sctx, "localhost", 9443, false, NULL), "resumed on another port");
	cr_assert_not(session_on(cctx, sctx, "127.0.0.1", 8443, false, NULL), "resumed for another host");
	cr_assert(session_on(cctx, sctx, "localhost", 8443, false, NULL));
	cr_assert(session_on(cctx, sctx, "localhost", 9443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, no_resumption_without_a_host)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	session_on(cctx, sctx, NULL, 8443, false, NULL);
	cr_assert_not(session_on(cctx, sctx, NULL, 8443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, the_cache_keeps_cache_size_sessions)
{
	cs_tls_ctx *cctx = client_ctx(1), *sctx = server_ctx(NULL);
	session_on(cctx, sctx, "localhost", 1, false, NULL);
	session_on(cctx, sctx, "localhost", 2, false, NULL); /* pushes out :1 */
	cr_assert_not(session_on(cctx, sctx, "localhost", 1, false, NULL), "cache_size 1 kept two sessions");
	cs_tls_ctx_unref(cctx);

	/* The default (0 = 8) keeps several. */
	cctx = client_ctx(0);
	for (int port = 1; port <= 4; port++)
		session_on(cctx, sctx, "localhost", port, false, NULL);
	for (int port = 1; port <= 4; port++)
		cr_assert(session_on(cctx, sctx, "localhost", port, false, NULL), "port %d was not resumed", port);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

Test(tls, a_ticket_from_another_server_falls_back_to_a_full_handshake)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx1 = server_ctx(NULL), *sctx2 = server_ctx(NULL);
	session_on(cctx, sctx1, "localhost", 8443, false, NULL);
	cr_assert_not(session_on(cctx, sctx2, "localhost", 8443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx1);
	cs_tls_ctx_unref(sctx2);
}

Test(tls, a_session_freed_before_its_handshake_is_not_cached)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	cs_tls *c = cs_tls_new(cctx, "localhost", 8443, NULL);
	cr_assert_eq(cs_tls_handshake(c), CS_TLS_WANT_READ);
	cs_tls_free(c);
	cr_assert_not(session_on(cctx, sctx, "localhost", 8443, false, NULL));
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}

/* ---- contexts and their references ------------------------------------- */

Test(tls, sessions_keep_their_context_alive)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx("http/1.1");
	cs_tls *c = cs_tls_new(cctx, "localhost", 443, "http/1.1");
	cs_tls *s = cs_tls_new(sctx, NULL, 0, NULL);
	cr_assert_not_null(c);
	cr_assert_not_null(s);
	/* The creators let go; the sessions still hold references. */
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	handshake_ok(c, s);
	cr_assert_str_eq(cs_tls_alpn(s), "http/1.1");
	unsigned char *d = pattern(50000, 1);
	transfer(c, s, d, 50000, 1 << 20);
	transfer(s, c, d, 50000, 1 << 20);
	free(d);
	cs_tls_close_notify(c);
	pump(c, s);
	char buf[8];
	cr_assert_eq(cs_tls_read(s, buf, sizeof(buf)), CS_TLS_CLOSED);
	/* The client's free stores its session in the context it keeps. */
	cs_tls_free(c);
	cs_tls_free(s);
}

Test(tls, extra_references_are_counted)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	cs_tls_ctx_ref(cctx);
	cs_tls_ctx_ref(sctx);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	/* Still one reference each. */
	cr_assert_not(cs_tls_ctx_is_server(cctx));
	cr_assert(cs_tls_ctx_is_server(sctx));
	struct pair p;
	pair_new(&p, cctx, sctx, "localhost", 443, NULL);
	handshake_ok(p.c, p.s);
	pair_free(&p);
}

Test(tls, a_context_serves_many_sessions_at_once)
{
	cs_tls_ctx *cctx = client_ctx(0), *sctx = server_ctx(NULL);
	enum { N = 6 };
	cs_tls *c[N], *s[N];
	for (int i = 0; i < N; i++) {
		c[i] = cs_tls_new(cctx, "localhost", 1000 + i, NULL);
		s[i] = cs_tls_new(sctx, NULL, 0, NULL);
		cr_assert_not_null(c[i]);
		cr_assert_not_null(s[i]);
	}
	/* Interleaved: each pair one step at a time. */
	for (int round = 0; round < MAX_ROUNDS; round++) {
		for (int i = 0; i < N; i++) {
			cs_tls_handshake(c[i]);
			pump(c[i], s[i]);
			cs_tls_handshake(s[i]);
			pump(s[i], c[i]);
		}
	}
	for (int i = 0; i < N; i++) {
		cr_assert(cs_tls_handshake_done(c[i]) && cs_tls_handshake_done(s[i]), "pair %d", i);
		char msg[32];
		snprintf(msg, sizeof(msg), "session %d", i);
		transfer_str(c[i], s[i], msg);
	}
	for (int i = 0; i < N; i++) {
		cs_tls_free(c[i]);
		cs_tls_free(s[i]);
	}
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
}
