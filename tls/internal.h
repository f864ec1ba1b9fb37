/*
 * internal.h - what tls.c (sessions) and tls_cert.c (certificates, trust)
 * share. Nothing here is thread-safe: a context and its sessions are used
 * by one thread at a time (in cosockd, whoever holds the VM lock).
 */
#ifndef CS_TLS_INTERNAL_H
#define CS_TLS_INTERNAL_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "tls.h"

struct cs_tls_cert {
	char *chain_pem;     /* leaf first, as given */
	size_t chain_len;
	unsigned char *key_der; /* decrypted private key */
	size_t key_len;
	char name[256];      /* leaf subject CN */
	char **names;        /* CN and DNS SANs, for SNI */
	unsigned nnames;
};

struct cs_tls_cached {
	char *key;           /* "host:port" */
	WOLFSSL_SESSION *session;
};

struct cs_tls_ctx {
	WOLFSSL_CTX *ssl_ctx;
	unsigned refs;
	bool server, verify;
	char *alpn;          /* server: accepted protocols */
	cs_tls_cert **certs; /* server: [0] is loaded into ssl_ctx */
	unsigned ncerts;
	struct cs_tls_cached *cache; /* client: ring of resumable sessions */
	uint32_t cache_size, cache_next;
};

struct cs_tls {
	cs_tls_ctx *ctx;
	WOLFSSL *ssl;
	char *host;
	int port;
	/* ciphertext in: [in_off, in_len) of in */
	char *in;
	size_t in_off, in_len, in_cap;
	/* ciphertext out */
	char *out;
	size_t out_len, out_cap;
	bool eof, done, failed, closing, forget;
	bool read_any;         /* application data was read (so were any tickets) */
	int verify_err;      /* first certificate error wolfSSL reported */
	char alpn[64];       /* the protocol agreed on, "" when none */
};

/* tls_cert.c */
/* The verify callback every context installs: records what failed and,
 * unless the context requires verification, lets the handshake go on. */
int cs__tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store);
/* SNI: switch the session to the certificate whose names match. */
int cs__tls_sni_cb(WOLFSSL *ssl, int *alert, void *arg);
/* Load cert into ssl_ctx (ssl == NULL) or into one session. 0 or -1. */
int cs__tls_load_cert(WOLFSSL_CTX *ssl_ctx, WOLFSSL *ssl, const cs_tls_cert *cert);

#endif
