/*
 * tls_pair.h - what the tls/ unit tests share: a client and a server
 * session talking to each other in memory, with no socket between them.
 */
#ifndef CS_TEST_TLS_PAIR_H
#define CS_TEST_TLS_PAIR_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "tls.h"

/* Rounds of "each side runs, then its output goes across" before a
 * handshake counts as stuck. */
#define MAX_ROUNDS 20

static inline const char *st(long s)
{
	static char buf[32];
	switch (s) {
	case CS_TLS_OK:
		return "OK";
	case CS_TLS_WANT_READ:
		return "WANT_READ";
	case CS_TLS_CLOSED:
		return "CLOSED";
	case CS_TLS_EOF:
		return "EOF";
	case CS_TLS_E_HANDSHAKE:
		return "E_HANDSHAKE";
	case CS_TLS_E_ALERT:
		return "E_ALERT";
	case CS_TLS_E_CRYPTO:
		return "E_CRYPTO";
	case CS_TLS_E_NOTTRUSTED:
		return "E_NOTTRUSTED";
	case CS_TLS_E_NOMEM:
		return "E_NOMEM";
	}
	snprintf(buf, sizeof(buf), "%ld", s);
	return buf;
}

/* A terminal failure: negative and not "feed me more". */
static inline bool failed(long s)
{
	return s < 0 && s != CS_TLS_WANT_READ;
}

/* Move everything from has produced into to; the byte count. */
static inline size_t pump(cs_tls *from, cs_tls *to)
{
	size_t len = 12345;
	size_t waiting = cs_tls_output_len(from);
	char *p = cs_tls_take_output(from, &len);
	if (!p) {
		cr_assert_eq(waiting, 0, "output_len said %zu but take_output gave nothing", waiting);
		return 0;
	}
	cr_assert_eq(len, waiting, "take_output gave %zu bytes, output_len said %zu", len, waiting);
	cr_assert_gt(len, 0);
	cr_assert_eq(cs_tls_output_len(from), 0, "take_output leaves nothing waiting");
	cr_assert_eq(cs_tls_feed(to, p, len), 0);
	free(p);
	return len;
}

struct hs {
	int c, s;
};

/* Run both handshakes, carrying each side's output across, until both
 * are done, one failed, or nothing moves. After a failure the failing
 * side's output (an alert, maybe) has been carried across and the other
 * side has run once more on it. */
static inline struct hs handshake(cs_tls *c, cs_tls *s)
{
	struct hs r = {CS_TLS_WANT_READ, CS_TLS_WANT_READ};
	for (int round = 0; round < MAX_ROUNDS; round++) {
		size_t moved = 0;
		if (r.c == CS_TLS_WANT_READ)
			r.c = cs_tls_handshake(c);
		moved += pump(c, s);
		if (r.s == CS_TLS_WANT_READ)
			r.s = cs_tls_handshake(s);
		moved += pump(s, c);
		if (failed(r.c) && r.s == CS_TLS_WANT_READ) {
			r.s = cs_tls_handshake(s);
			pump(s, c);
		}
		if (failed(r.s) && r.c == CS_TLS_WANT_READ) {
			r.c = cs_tls_handshake(c);
			pump(c, s);
		}
		if (r.c != CS_TLS_WANT_READ && r.s != CS_TLS_WANT_READ)
			break;
		if (failed(r.c) || failed(r.s) || !moved)
			break;
	}
	return r;
}

#endif
