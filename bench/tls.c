/*
 * tls.c - the client side of TLS for cosockd-bench (see tls.h).
 *
 * wolfSSL reads and writes the socket itself (its default fd-based I/O);
 * a call that needs the socket ready returns WANT_READ or WANT_WRITE and
 * is simply made again after the next event: every socket is in the
 * worker's epoll set for both directions, edge-triggered, and wolfSSL only
 * gives up after recv() or send() said EAGAIN, so an edge always follows.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "tls.h"

static __thread char last_why[160];

const char *cs__tls_why(void)
{
	return last_why;
}

/* Record why a call failed; returns -1 with errno EPROTO. */
static int tls_fail(const char *what, int err)
{
	char text[WOLFSSL_MAX_ERROR_SZ];

	wolfSSL_ERR_error_string_n((unsigned long)err, text, sizeof(text));
	snprintf(last_why, sizeof(last_why), "%s: %s", what, text);
	errno = EPROTO;
	return -1;
}

/* What a failed call (ret <= 0) means, the recv()/send() way: 0 for the
 * end of the stream (only when eof_ok), else -1 with errno set. sock_err
 * is errno right after the call, for wolfSSL's "socket error". */
static int tls_result(struct WOLFSSL *ssl, int ret, int sock_err, const char *what, int eof_ok)
{
	int err = wolfSSL_get_error(ssl, ret);

	switch (err) {
	case WOLFSSL_ERROR_WANT_READ:
	case WOLFSSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case WOLFSSL_ERROR_ZERO_RETURN: /* close_notify */
	case SOCKET_PEER_CLOSED_E:      /* EOF without one */
		if (eof_ok)
			return 0;
		snprintf(last_why, sizeof(last_why), "%s: connection closed by the server", what);
		errno = EPROTO;
		return -1;
	case SOCKET_ERROR_E:
		errno = sock_err == ECONNRESET || sock_err == EPIPE || sock_err == ETIMEDOUT ?
			sock_err : ECONNRESET;
		return -1;
	default:
		return tls_fail(what, err);
	}
}

/* The groups offered, in order of preference: X25519 first, as browsers
 * and curl do (its key share is the one sent), then the NIST curves. */
static int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};

struct WOLFSSL_CTX *cs__tls_ctx_new(const char *ca_file)
{
	WOLFSSL_CTX *ctx;

	if (ca_file) { /* a plain reason when it cannot be read */
		FILE *f = fopen(ca_file, "r");
		if (!f)
			cs__fail_usage("--tls-ca %s: %s", ca_file, strerror(errno));
		fclose(f);
	}
	/* wolfSSL's own send() may not pass MSG_NOSIGNAL. */
	signal(SIGPIPE, SIG_IGN);
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		cs__fail("wolfSSL_Init failed");
	ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (!ctx)
		cs__fail("wolfSSL_CTX_new failed");
	if (wolfSSL_CTX_set_groups(ctx, groups, sizeof(groups) / sizeof(groups[0])) !=
	    WOLFSSL_SUCCESS)
		cs__fail("wolfSSL_CTX_set_groups failed");
	if (!ca_file) {
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
		return ctx;
	}
	int ret = wolfSSL_CTX_load_verify_locations(ctx, ca_file, NULL);
	if (ret != WOLFSSL_SUCCESS) {
		cs__tls_ctx_free(ctx); /* leave nothing behind on the way out */
		cs__fail_usage("--tls-ca %s: no PEM certificate wolfSSL can load (error %d)",
			       ca_file, ret);
	}
	wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
	return ctx;
}

void cs__tls_ctx_free(struct WOLFSSL_CTX *ctx)
{
	wolfSSL_CTX_free(ctx);
	wolfSSL_Cleanup();
}

void cs__tls_thread_end(void)
{
	wc_ecc_fp_free();
}

struct WOLFSSL *cs__tls_new(struct WOLFSSL_CTX *ctx, int fd, struct WOLFSSL_SESSION *resume)
{
	WOLFSSL *ssl = wolfSSL_new(ctx);

	if (!ssl)
		return NULL;
	if (wolfSSL_set_fd(ssl, fd) != WOLFSSL_SUCCESS) {
		wolfSSL_free(ssl);
		return NULL;
	}
	/* A session the server will not resume is not an error: the
	 * handshake is then a full one, and cs__tls_resumed() says so. */
	if (resume)
		wolfSSL_set_session(ssl, resume);
	return ssl;
}

void cs__tls_free(struct WOLFSSL *ssl)
{
	wolfSSL_free(ssl);
}

int cs__tls_handshake(struct WOLFSSL *ssl)
{
	int ret = wolfSSL_connect(ssl);
	int sock_err = errno;

	if (ret == WOLFSSL_SUCCESS)
		return 1;
	if (tls_result(ssl, ret, sock_err, "TLS handshake", 0) < 0 && errno == EAGAIN)
		return 0;
	return -1;
}

ssize_t cs__tls_recv(struct WOLFSSL *ssl, void *buf, size_t len)
{
	int ret = wolfSSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	int sock_err = errno;

	if (ret > 0)
		return ret;
	return tls_result(ssl, ret, sock_err, "TLS read", 1);
}

ssize_t cs__tls_send(struct WOLFSSL *ssl, const void *buf, size_t len)
{
	int ret = wolfSSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	int sock_err = errno;

	if (ret > 0)
		return ret;
	return tls_result(ssl, ret, sock_err, "TLS write", 0);
}

void cs__tls_close_notify(struct WOLFSSL *ssl)
{
	/* The first call sends it; waiting for the server's is the caller's
	 * business (reading until the end of the stream). */
	wolfSSL_shutdown(ssl);
}

int cs__tls_resumed(struct WOLFSSL *ssl)
{
	return wolfSSL_session_reused(ssl) != 0;
}

struct WOLFSSL_SESSION *cs__tls_session(struct WOLFSSL *ssl)
{
	return wolfSSL_get1_session(ssl);
}

void cs__tls_session_free(struct WOLFSSL_SESSION *s)
{
	if (s)
		wolfSSL_SESSION_free(s);
}

void cs__tls_describe(struct WOLFSSL *ssl, char *buf, size_t len)
{
	const char *curve = wolfSSL_get_curve_name(ssl);
	int suite = wolfSSL_get_current_cipher_suite(ssl);
	/* The IANA name, as the servers' own logs and docs spell it. */
	const char *cipher = wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8),
								     (unsigned char)suite);

	snprintf(buf, len, "%s %s%s%s", wolfSSL_get_version(ssl), cipher ? cipher : "?",
		 curve ? " " : "", curve ? curve : "");
}
