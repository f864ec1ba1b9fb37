/*
 * tls.c - TLS sessions over memory buffers: contexts, the wolfSSL I/O
 * callbacks, handshake, read and write, and the client session cache.
 *
 * wolfSSL asks for ciphertext through recv_cb and hands it out through
 * send_cb; neither makes a syscall. recv_cb serves what cs_tls_feed()
 * stored and says "want read" when that runs out; send_cb appends to the
 * output buffer, which always takes everything, so wolfSSL never has to
 * retry a write.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfio.h>

#include "internal.h"

#define DEFAULT_CACHE_SIZE 8

const char *cs_tls_errstr(int status)
{
	switch (status) {
	case CS_TLS_CLOSED:
		return "sslclosenotify";
	case CS_TLS_EOF:
		return "socketreadfailed";
	case CS_TLS_E_ALERT:
		return "sslalertrecv";
	case CS_TLS_E_CRYPTO:
		return "sslcryptoerr";
	case CS_TLS_E_NOTTRUSTED:
		return "sslnottrusted";
	case CS_TLS_E_NOMEM:
		return "malloc";
	default:
		return "sslhandshake";
	}
}

int cs_tls_global_init(void)
{
	static bool done;
	if (done)
		return 0;
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return -1;
	done = true;
	return 0;
}

/* ---- I/O callbacks ----------------------------------------------------- */

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	(void)ssl;
	cs_tls *t = arg;
	size_t avail = t->in_len - t->in_off;
	if (avail == 0) {
		if (t->eof)
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		return WOLFSSL_CBIO_ERR_WANT_READ;
	}
	size_t n = avail < (size_t)sz ? avail : (size_t)sz;
	memcpy(buf, t->in + t->in_off, n);
	t->in_off += n;
	if (t->in_off == t->in_len) {
		/* an idle session keeps no input buffer */
		free(t->in);
		t->in = NULL;
		t->in_off = t->in_len = t->in_cap = 0;
	}
	return (int)n;
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	(void)ssl;
	cs_tls *t = arg;
	size_t need = t->out_len + (size_t)sz;
	if (need > t->out_cap) {
		size_t cap = t->out_cap ? t->out_cap : 1024;
		while (cap < need)
			cap *= 2;
		char *p = realloc(t->out, cap);
		if (!p)
			return WOLFSSL_CBIO_ERR_GENERAL;
		t->out = p;
		t->out_cap = cap;
	}
	memcpy(t->out + t->out_len, buf, (size_t)sz);
	t->out_len = need;
	return sz;
}

/* ---- contexts ---------------------------------------------------------- */

/* Server ALPN: the first of our protocols, in our order, that the client
 * offers (in is the client's length-prefixed list). */
static int alpn_select_cb(WOLFSSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
			  unsigned int inlen, void *arg)
{
	(void)ssl;
	const char *p = ((cs_tls_ctx *)arg)->alpn;
	while (p && *p) {
		size_t n = strcspn(p, ",");
		for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
			if (in[i] == n && i + 1 + n <= inlen && !memcmp(in + i + 1, p, n)) {
				*out = in + i + 1;
				*outlen = (unsigned char)n;
				return 0; /* SSL_TLSEXT_ERR_OK */
			}
		}
		p += n + (p[n] == ',');
	}
	return 3; /* SSL_TLSEXT_ERR_NOACK: go on without ALPN */
}

cs_tls_ctx *cs_tls_ctx_new(const struct cs_tls_ctx_opts *o)
{
	if (cs_tls_global_init() < 0)
		return NULL;
	cs_tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->refs = 1;
	ctx->server = o->server;
	ctx->verify = o->verify && !o->server;
	ctx->ssl_ctx = wolfSSL_CTX_new(o->server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
	if (!ctx->ssl_ctx)
		goto fail;
	wolfSSL_CTX_SetMinVersion(ctx->ssl_ctx, WOLFSSL_TLSV1_2);
	wolfSSL_CTX_SetIORecv(ctx->ssl_ctx, recv_cb);
	wolfSSL_CTX_SetIOSend(ctx->ssl_ctx, send_cb);
	if (o->server) {
		/* no client certificates are asked for */
		wolfSSL_CTX_set_verify(ctx->ssl_ctx, WOLFSSL_VERIFY_NONE, NULL);
		wolfSSL_CTX_set_servername_callback(ctx->ssl_ctx, cs__tls_sni_cb);
		wolfSSL_CTX_set_servername_arg(ctx->ssl_ctx, ctx);
		if (o->alpn && !(ctx->alpn = strdup(o->alpn)))
			goto fail;
		if (ctx->alpn)
			wolfSSL_CTX_set_alpn_select_cb(ctx->ssl_ctx, alpn_select_cb, ctx);
	} else {
		/* Always verify, so that cs_tls_trust() can say what passed;
		 * the callback decides whether a failure ends the handshake. */
		wolfSSL_CTX_set_verify(ctx->ssl_ctx, WOLFSSL_VERIFY_PEER, cs__tls_verify_cb);
		wolfSSL_CTX_UseSessionTicket(ctx->ssl_ctx);
		ctx->cache_size = o->cache_size ? o->cache_size : DEFAULT_CACHE_SIZE;
		ctx->cache = calloc(ctx->cache_size, sizeof(*ctx->cache));
		if (!ctx->cache)
			goto fail;
	}
	return ctx;
fail:
	cs_tls_ctx_unref(ctx);
	return NULL;
}

void cs_tls_ctx_ref(cs_tls_ctx *ctx)
{
	ctx->refs++;
}

void cs_tls_ctx_unref(cs_tls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	for (uint32_t i = 0; ctx->cache && i < ctx->cache_size; i++) {
		free(ctx->cache[i].key);
		if (ctx->cache[i].session)
			wolfSSL_SESSION_free(ctx->cache[i].session);
	}
	free(ctx->cache);
	for (unsigned i = 0; i < ctx->ncerts; i++)
		cs_tls_cert_free(ctx->certs[i]);
	free(ctx->certs);
	free(ctx->alpn);
	if (ctx->ssl_ctx)
		wolfSSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

bool cs_tls_ctx_is_server(const cs_tls_ctx *ctx) { return ctx->server; }
unsigned cs_tls_ctx_certs(const cs_tls_ctx *ctx) { return ctx->ncerts; }

/* ---- the client session cache ------------------------------------------ */

static struct cs_tls_cached *cache_find(cs_tls_ctx *ctx, const char *key)
{
	for (uint32_t i = 0; i < ctx->cache_size; i++)
		if (ctx->cache[i].key && !strcmp(ctx->cache[i].key, key))
			return &ctx->cache[i];
	return NULL;
}

static void cache_drop(struct cs_tls_cached *e)
{
	free(e->key);
	if (e->session)
		wolfSSL_SESSION_free(e->session);
	e->key = NULL;
	e->session = NULL;
}

static bool cache_key(const cs_tls *t, char *buf, size_t len)
{
	return t->host && (size_t)snprintf(buf, len, "%s:%d", t->host, t->port) < len;
}

/* Remember t's session under host:port, replacing what was there. */
static void cache_store(cs_tls *t)
{
	char key[300];
	cs_tls_ctx *ctx = t->ctx;
	if (ctx->server || !t->done || t->failed || t->forget || !cache_key(t, key, sizeof(key)))
		return;
	/* A resumed TLS 1.3 session closed before its new ticket was read
	 * would be stored with the old ticket and new secrets, and the next
	 * resumption would fail its binder: keep the session we had. */
	if (wolfSSL_session_reused(t->ssl) && !t->read_any)
		return;
	WOLFSSL_SESSION *s = wolfSSL_get1_session(t->ssl);
	if (!s)
		return;
	if (!wolfSSL_SESSION_is_resumable(s)) {
		wolfSSL_SESSION_free(s);
		return;
	}
	struct cs_tls_cached *e = cache_find(ctx, key);
	if (!e) {
		e = &ctx->cache[ctx->cache_next];
		ctx->cache_next = (ctx->cache_next + 1) % ctx->cache_size;
		cache_drop(e);
		if (!(e->key = strdup(key))) {
			wolfSSL_SESSION_free(s);
			return;
		}
	} else if (e->session) {
		wolfSSL_SESSION_free(e->session);
	}
	e->session = s;
}

bool cs_tls_forget_session(cs_tls *t)
{
	char key[300];
	bool had = !t->forget && t->done && !t->ctx->server;
	t->forget = true;
	if (!t->ctx->server && cache_key(t, key, sizeof(key))) {
		struct cs_tls_cached *e = cache_find(t->ctx, key);
		if (e) {
			cache_drop(e);
			had = true;
		}
	}
	return had;
}

/* ---- sessions ---------------------------------------------------------- */

static bool is_ip_literal(const char *host)
{
	return strspn(host, "0123456789.") == strlen(host) || strchr(host, ':');
}

/* "h2,http/1.1" as wolfSSL wants it: a writable copy. */
static int use_alpn(WOLFSSL *ssl, const char *list)
{
	char *copy = strdup(list);
	if (!copy)
		return -1;
	int r = wolfSSL_UseALPN(ssl, copy, (unsigned)strlen(copy), WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
	free(copy);
	return r == WOLFSSL_SUCCESS ? 0 : -1;
}

cs_tls *cs_tls_new(cs_tls_ctx *ctx, const char *host, int port, const char *alpn)
{
	cs_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ctx = ctx;
	cs_tls_ctx_ref(ctx);
	t->port = port;
	if (host && *host && !(t->host = strdup(host)))
		goto fail;
	if (!(t->ssl = wolfSSL_new(ctx->ssl_ctx)))
		goto fail;
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	if (ctx->server) {
		if (ctx->alpn && use_alpn(t->ssl, ctx->alpn) < 0)
			goto fail;
		return t;
	}
	if (t->host && !is_ip_literal(t->host) &&
	    wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, t->host, (unsigned short)strlen(t->host)) != WOLFSSL_SUCCESS)
		goto fail;
	if (ctx->verify && t->host && wolfSSL_check_domain_name(t->ssl, t->host) != WOLFSSL_SUCCESS)
		goto fail;
	if (alpn && *alpn && use_alpn(t->ssl, alpn) < 0)
		goto fail;
	char key[300];
	if (cache_key(t, key, sizeof(key))) {
		struct cs_tls_cached *e = cache_find(ctx, key);
		if (e && e->session)
			wolfSSL_set_session(t->ssl, e->session);
	}
	return t;
fail:
	cs_tls_free(t);
	return NULL;
}

void cs_tls_free(cs_tls *t)
{
	if (!t)
		return;
	if (t->ssl) {
		cache_store(t);
		wolfSSL_free(t->ssl);
	}
	cs_tls_ctx_unref(t->ctx);
	free(t->host);
	free(t->in);
	free(t->out);
	free(t);
}

int cs_tls_feed(cs_tls *t, const void *data, size_t len)
{
	if (t->in_off > 0 && t->in_off == t->in_len)
		t->in_off = t->in_len = 0;
	if (t->in_len + len > t->in_cap) {
		if (t->in_off > 0) {
			memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
			t->in_len -= t->in_off;
			t->in_off = 0;
		}
		if (t->in_len + len > t->in_cap) {
			size_t cap = t->in_len + len;
			char *p = realloc(t->in, cap);
			if (!p)
				return CS_TLS_E_NOMEM;
			t->in = p;
			t->in_cap = cap;
		}
	}
	memcpy(t->in + t->in_len, data, len);
	t->in_len += len;
	return 0;
}

void cs_tls_feed_eof(cs_tls *t) { t->eof = true; }
size_t cs_tls_buffered(const cs_tls *t) { return t->in_len - t->in_off; }
bool cs_tls_handshake_done(const cs_tls *t) { return t->done; }

/* Turn wolfSSL's verdict on a failed call into a status. */
static int map_error(cs_tls *t, int ret)
{
	int err = wolfSSL_get_error(t->ssl, ret);
	if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
		if (!t->eof)
			return CS_TLS_WANT_READ;
		err = SOCKET_PEER_CLOSED_E;
	}
	int status;
	switch (err) {
	case WOLFSSL_ERROR_ZERO_RETURN:
	case ZERO_RETURN:
		return CS_TLS_CLOSED;
	case SOCKET_PEER_CLOSED_E:
	case SOCKET_ERROR_E:
		status = t->done ? CS_TLS_EOF : CS_TLS_E_HANDSHAKE;
		break;
	case FATAL_ERROR:
		status = CS_TLS_E_ALERT;
		break;
	case MEMORY_ERROR:
	case MEMORY_E:
		status = CS_TLS_E_NOMEM;
		break;
	case VERIFY_MAC_ERROR:
	case DECRYPT_ERROR:
		status = t->done ? CS_TLS_E_CRYPTO : CS_TLS_E_HANDSHAKE;
		break;
	default:
		if (t->ctx->verify && !t->done && t->verify_err)
			status = CS_TLS_E_NOTTRUSTED;
		else if (t->ctx->verify && !t->done &&
			 (err == DOMAIN_NAME_MISMATCH || err == VERIFY_CERT_ERROR))
			status = CS_TLS_E_NOTTRUSTED;
		else
			status = t->done ? CS_TLS_E_CRYPTO : CS_TLS_E_HANDSHAKE;
	}
	t->failed = true;
	return status;
}

int cs_tls_handshake(cs_tls *t)
{
	if (t->done)
		return CS_TLS_OK;
	if (t->failed)
		return CS_TLS_E_HANDSHAKE;
	int r = wolfSSL_negotiate(t->ssl);
	if (r == WOLFSSL_SUCCESS) {
		t->done = true;
		char *name = NULL;
		unsigned short len = 0;
		if (wolfSSL_ALPN_GetProtocol(t->ssl, &name, &len) == WOLFSSL_SUCCESS && name &&
		    len < sizeof(t->alpn)) {
			memcpy(t->alpn, name, len);
			t->alpn[len] = '\0';
		}
		return CS_TLS_OK;
	}
	return map_error(t, r);
}

ssize_t cs_tls_read(cs_tls *t, void *buf, size_t len)
{
	if (t->failed)
		return CS_TLS_E_CRYPTO;
	if (!t->done) {
		int r = cs_tls_handshake(t);
		if (r != CS_TLS_OK)
			return r;
	}
	if (len > INT32_MAX)
		len = INT32_MAX;
	int n = wolfSSL_read(t->ssl, buf, (int)len);
	if (n > 0) {
		t->read_any = true;
		return n;
	}
	return map_error(t, n);
}

ssize_t cs_tls_write(cs_tls *t, const void *data, size_t len)
{
	if (!t->done || t->failed || t->closing)
		return CS_TLS_E_CRYPTO;
	size_t done = 0;
	while (done < len) {
		size_t chunk = len - done > (1u << 30) ? 1u << 30 : len - done;
		int n = wolfSSL_write(t->ssl, (const char *)data + done, (int)chunk);
		if (n <= 0)
			return map_error(t, n);
		done += (size_t)n;
	}
	return (ssize_t)len;
}

void cs_tls_close_notify(cs_tls *t)
{
	if (t->closing || !t->done || t->failed)
		return;
	t->closing = true;
	wolfSSL_shutdown(t->ssl);
}

size_t cs_tls_output_len(const cs_tls *t) { return t->out_len; }

char *cs_tls_take_output(cs_tls *t, size_t *len)
{
	if (t->out_len == 0) {
		*len = 0;
		return NULL;
	}
	char *p = t->out;
	*len = t->out_len;
	t->out = NULL;
	t->out_len = t->out_cap = 0;
	return p;
}

/* ---- what the handshake agreed on -------------------------------------- */

const char *cs_tls_cipher(const cs_tls *t)
{
	if (!t->done)
		return NULL;
	int suite = wolfSSL_get_current_cipher_suite(t->ssl);
	const char *name = wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(suite >> 8), (unsigned char)suite);
	if (!name || !*name || !strcmp(name, "None"))
		name = wolfSSL_CIPHER_get_name(wolfSSL_get_current_cipher(t->ssl));
	if (name && !strncmp(name, "TLS_", 4))
		name += 4;
	return name;
}

const char *cs_tls_version(const cs_tls *t) { return t->done ? wolfSSL_get_version(t->ssl) : NULL; }
bool cs_tls_resumed(const cs_tls *t) { return t->done && wolfSSL_session_reused(t->ssl); }
const char *cs_tls_host(const cs_tls *t) { return t->host; }

const char *cs_tls_alpn(const cs_tls *t) { return t->alpn[0] ? t->alpn : NULL; }
