/*
 * tls.h - TLS as a transport under a socket, over wolfSSL.
 *
 * A session never touches a file descriptor. The owner feeds it the
 * ciphertext its connection received (cs_tls_feed) and takes the ciphertext
 * the session produced (cs_tls_take_output) to queue on the connection. So
 * TLS behaves the same on either dispatcher backend, a handshake never
 * blocks anything, and whichever thread holds a session may drive it (one
 * at a time).
 *
 * Two objects:
 *  - cs_tls_ctx: a role (client or server), certificates, trusted CAs,
 *    options, and a client's session cache. Reference counted: the Lua
 *    object that made it and every session using it hold a reference.
 *  - cs_tls: one session on one connection.
 *
 * Calls that drive a session return a status: CS_TLS_OK (or a byte count),
 * CS_TLS_WANT_READ (feed more ciphertext, then call again), or one of the
 * negative errors below, after which the session is dead. Whatever the
 * result, take the output afterwards: an error may leave an alert to send.
 *
 * Knows nothing of Lua or of the dispatcher.
 */
#ifndef CS_TLS_H
#define CS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct cs_tls_ctx cs_tls_ctx;
typedef struct cs_tls cs_tls;

enum cs_tls_status {
	CS_TLS_OK = 0,
	CS_TLS_WANT_READ = -1,   /* needs more ciphertext from the peer */
	CS_TLS_CLOSED = -2,      /* the peer sent close_notify */
	CS_TLS_EOF = -3,         /* the stream ended without close_notify */
	CS_TLS_E_HANDSHAKE = -4, /* the handshake failed */
	CS_TLS_E_ALERT = -5,     /* the peer sent a fatal alert */
	CS_TLS_E_CRYPTO = -6,    /* a record failed to decrypt or verify */
	CS_TLS_E_NOTTRUSTED = -7,/* verification was required and failed */
	CS_TLS_E_NOMEM = -8,
};

/* The original product's error string for a negative status:
 * "sslhandshake", "sslalertrecv", "sslcryptoerr", "sslnottrusted",
 * "sslclosenotify", "socketreadfailed" (CS_TLS_EOF), "malloc". */
const char *cs_tls_errstr(int status);

/* Initialise wolfSSL once per process (idempotent, not thread-safe: call it
 * before starting threads). 0 or -1. */
int cs_tls_global_init(void);

/* ---- contexts ---------------------------------------------------------- */

struct cs_tls_ctx_opts {
	bool server;
	bool verify;           /* client: fail the handshake with
				  CS_TLS_E_NOTTRUSTED unless the peer is
				  trusted (CA, name, dates) */
	uint32_t cache_size;   /* client: sessions kept for resumption; 0 = 8 */
	const char *alpn;      /* server: protocols it accepts, comma-separated,
				  in order of preference; NULL: no ALPN */
};

/* NULL on out of memory. The new context holds one reference. */
cs_tls_ctx *cs_tls_ctx_new(const struct cs_tls_ctx_opts *o);
void cs_tls_ctx_ref(cs_tls_ctx *ctx);
void cs_tls_ctx_unref(cs_tls_ctx *ctx);
bool cs_tls_ctx_is_server(const cs_tls_ctx *ctx);
/* Certificates added so far. */
unsigned cs_tls_ctx_certs(const cs_tls_ctx *ctx);

/* A certificate chain (leaf first) and its private key, parsed once. Made
 * from PEM text; the key may be encrypted with password (NULL: none). On
 * failure returns NULL and sets *err to "pem_cert_parse_error",
 * "pem_key_parse_error", "key_cert_mismatch" or "malloc". */
typedef struct cs_tls_cert cs_tls_cert;
cs_tls_cert *cs_tls_cert_new(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			     const char *password, const char **err);
void cs_tls_cert_free(cs_tls_cert *cert);
/* The leaf's subject common name (for logs), or "". */
const char *cs_tls_cert_name(const cs_tls_cert *cert);

/* Add cert to a context (the context copies it). A server's first one is
 * its default; later ones are chosen by SNI when the client's server name
 * matches one of their names. A client presents its first one when the
 * server asks for a certificate. 0, CS_TLS_E_NOMEM, or CS_TLS_E_HANDSHAKE
 * when wolfSSL refused it. */
int cs_tls_ctx_add_cert(cs_tls_ctx *ctx, const cs_tls_cert *cert);

/* Trust the CA certificates in pem (one or many). Returns how many were
 * added, or -1 when none parsed. */
int cs_tls_ctx_add_ca_pem(cs_tls_ctx *ctx, const char *pem, size_t len);
/* Trust the system's CA store (/etc/ssl/certs). Returns 0 or -1. */
int cs_tls_ctx_add_system_ca(cs_tls_ctx *ctx);

/* Write a new self-signed ECDSA P-256 certificate for common name cn, valid
 * for days days, as PEM into *cert_pem and *key_pem (malloc'd, the caller
 * frees). 0 or -1. */
int cs_tls_make_self_signed(const char *cn, unsigned days, char **cert_pem, char **key_pem);

/* ---- sessions ---------------------------------------------------------- */

/* A session in ctx's role. host (client: the name sent as SNI, the default
 * name for cs_tls_trusted(), and with port the key under which the session
 * is cached for resumption; may be NULL) and alpn (client: protocols to
 * offer, comma-separated; may be NULL). NULL on out of memory. */
cs_tls *cs_tls_new(cs_tls_ctx *ctx, const char *host, int port, const char *alpn);
/* Free the session. A client session that completed its handshake is
 * remembered for resumption first, unless cs_tls_forget_session() ran. */
void cs_tls_free(cs_tls *t);

/* Copy len bytes of ciphertext in. 0 or CS_TLS_E_NOMEM. */
int cs_tls_feed(cs_tls *t, const void *data, size_t len);
/* The stream from the peer ended: a read that needs more gets CS_TLS_EOF. */
void cs_tls_feed_eof(cs_tls *t);
/* Ciphertext fed and not yet consumed. */
size_t cs_tls_buffered(const cs_tls *t);

/* Advance the handshake: CS_TLS_OK once it is complete, CS_TLS_WANT_READ,
 * or an error. */
int cs_tls_handshake(cs_tls *t);
bool cs_tls_handshake_done(const cs_tls *t);

/* Decrypt at most len bytes of application data (at most one record):
 * > 0 bytes; CS_TLS_WANT_READ; CS_TLS_CLOSED; CS_TLS_EOF; or an error.
 * Runs the handshake first if it is not complete. */
ssize_t cs_tls_read(cs_tls *t, void *buf, size_t len);

/* Encrypt len bytes into the output (the handshake must be complete):
 * len, or an error. */
ssize_t cs_tls_write(cs_tls *t, const void *data, size_t len);

/* Queue a close_notify alert (once). */
void cs_tls_close_notify(cs_tls *t);

/* Bytes of ciphertext waiting to be sent. */
size_t cs_tls_output_len(const cs_tls *t);
/* Take the waiting ciphertext: a malloc'd buffer the caller frees, its
 * length in *len; NULL when there is none. */
char *cs_tls_take_output(cs_tls *t, size_t *len);

/* ---- what the peer and the handshake said ------------------------------ */

/* The negotiated suite in IANA form without the "TLS_" prefix, e.g.
 * "ECDHE_RSA_WITH_AES_128_GCM_SHA256" or "AES_128_GCM_SHA256". */
const char *cs_tls_cipher(const cs_tls *t);
const char *cs_tls_version(const cs_tls *t);
/* The ALPN protocol agreed on, or NULL. */
const char *cs_tls_alpn(const cs_tls *t);
bool cs_tls_resumed(const cs_tls *t);
/* The host given to cs_tls_new(), or NULL. */
const char *cs_tls_host(const cs_tls *t);
/* Drop this session from the context's cache (and do not cache it on
 * free). Returns true when there was something to drop or not store. */
bool cs_tls_forget_session(cs_tls *t);

/* Which checks the peer's certificate passed. */
enum {
	CS_TLS_TRUST_CA = 1,    /* its chain ends in a CA we trust */
	CS_TLS_TRUST_NAME = 2,  /* it is issued for the name asked about */
	CS_TLS_TRUST_DATES = 4, /* it is inside its validity period */
};
/* The CS_TLS_TRUST_* bits for name (NULL: the session's host); 0 when the
 * peer sent no certificate. */
unsigned cs_tls_trust(const cs_tls *t, const char *name);
/* A short reason for the first failed check ("unknown CA", "expired",
 * "name mismatch", ...), or NULL when all passed. */
const char *cs_tls_trust_reason(const cs_tls *t, const char *name);

/* One field set of a certificate name. Strings are "" when absent. */
struct cs_tls_dn {
	char country[8], province[64], locality[64], organization[128], unit[128], common[256];
};
struct cs_tls_peer_cert {
	struct cs_tls_dn subject, issuer;
	char not_before[32], not_after[32]; /* "YYMMDDHHMMSSZ" as in the certificate */
	unsigned nsan;
	char san[16][256];                  /* DNS subject alternative names */
};
/* Fill pc with the peer's leaf certificate. 0, or -1 when there is none. */
int cs_tls_peer_cert(const cs_tls *t, struct cs_tls_peer_cert *pc);

#endif
