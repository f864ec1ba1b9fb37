/*
 * tls_cert.c - certificates and trust: parsing a certificate and its key,
 * server certificates chosen by SNI, trusted CAs, the verify callback that
 * records what failed, the checks behind sock:trusted(), the peer's
 * certificate fields, and generating a self-signed certificate.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include "internal.h"

#define MAX_CERT_NAMES 32

/* ---- certificate objects ----------------------------------------------- */

static void read_dn_field(WOLFSSL_X509_NAME *name, int nid, char *buf, size_t len)
{
	buf[0] = '\0';
	if (name && wolfSSL_X509_NAME_get_text_by_NID(name, nid, buf, (int)len) < 0)
		buf[0] = '\0';
}

/* The leaf's CN and DNS alternative names, for SNI. */
static int collect_names(cs_tls_cert *c, WOLFSSL_X509 *x)
{
	read_dn_field(wolfSSL_X509_get_subject_name(x), NID_commonName, c->name, sizeof(c->name));
	c->names = calloc(MAX_CERT_NAMES, sizeof(char *));
	if (!c->names)
		return -1;
	if (c->name[0] && !(c->names[c->nnames++] = strdup(c->name)))
		return -1;
	for (char *san; c->nnames < MAX_CERT_NAMES && (san = wolfSSL_X509_get_next_altname(x));)
		if (!(c->names[c->nnames++] = strdup(san)))
			return -1;
	return 0;
}

/* Whether c's key really belongs to its certificate: wolfSSL's own check
 * passes some mismatched ECC pairs, so shake hands with ourselves in
 * memory; the client checks the server's CertificateVerify signature
 * against the certificate's public key. */
static bool key_signs_for(const cs_tls_cert *c)
{
	cs_tls_ctx *sctx = cs_tls_ctx_new(&(struct cs_tls_ctx_opts){.server = true});
	cs_tls_ctx *cctx = cs_tls_ctx_new(&(struct cs_tls_ctx_opts){0});
	cs_tls *srv = NULL, *cli = NULL;
	bool ok = false;
	if (!sctx || !cctx || cs__tls_load_cert(sctx->ssl_ctx, NULL, c) < 0)
		goto out;
	if (!(srv = cs_tls_new(sctx, NULL, 0, NULL)) || !(cli = cs_tls_new(cctx, NULL, 0, NULL)))
		goto out;
	for (int round = 0; round < 8; round++) {
		int rc = cs_tls_handshake(cli), rs = cs_tls_handshake(srv);
		if (rc < CS_TLS_WANT_READ || rs < CS_TLS_WANT_READ)
			break;
		if (rc == CS_TLS_OK && rs == CS_TLS_OK) {
			ok = true;
			break;
		}
		size_t len;
		char *out;
		if ((out = cs_tls_take_output(cli, &len)))
			cs_tls_feed(srv, out, len);
		free(out);
		if ((out = cs_tls_take_output(srv, &len)))
			cs_tls_feed(cli, out, len);
		free(out);
	}
out:
	cs_tls_free(srv);
	cs_tls_free(cli);
	cs_tls_ctx_unref(sctx);
	cs_tls_ctx_unref(cctx);
	return ok;
}

cs_tls_cert *cs_tls_cert_new(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
			     const char *password, const char **err)
{
	*err = "malloc";
	if (cs_tls_global_init() < 0)
		return NULL;
	cs_tls_cert *c = calloc(1, sizeof(*c));
	WOLFSSL_CTX *probe = wolfSSL_CTX_new(wolfSSLv23_server_method());
	WOLFSSL_X509 *leaf = NULL;
	if (!c || !probe)
		goto fail;
	*err = "pem_cert_parse_error";
	leaf = wolfSSL_X509_load_certificate_buffer((const unsigned char *)cert_pem, (int)cert_len,
						    WOLFSSL_FILETYPE_PEM);
	if (!leaf || wolfSSL_CTX_use_certificate_chain_buffer(probe, (const unsigned char *)cert_pem,
							      (long)cert_len) != WOLFSSL_SUCCESS)
		goto fail;
	*err = "malloc";
	if (!(c->chain_pem = malloc(cert_len)) || !(c->key_der = malloc(key_len + 1)))
		goto fail;
	memcpy(c->chain_pem, cert_pem, cert_len);
	c->chain_len = cert_len;
	*err = "pem_key_parse_error";
	int n = wc_KeyPemToDer((const unsigned char *)key_pem, (int)key_len, c->key_der, (int)key_len, password);
	if (n <= 0)
		goto fail;
	c->key_len = (size_t)n;
	if (wolfSSL_CTX_use_PrivateKey_buffer(probe, c->key_der, (long)c->key_len, WOLFSSL_FILETYPE_ASN1) !=
	    WOLFSSL_SUCCESS)
		goto fail;
	*err = "key_cert_mismatch";
	if (wolfSSL_CTX_check_private_key(probe) != WOLFSSL_SUCCESS || !key_signs_for(c))
		goto fail;
	*err = "malloc";
	if (collect_names(c, leaf) < 0)
		goto fail;
	wolfSSL_X509_free(leaf);
	wolfSSL_CTX_free(probe);
	*err = NULL;
	return c;
fail:
	if (leaf)
		wolfSSL_X509_free(leaf);
	if (probe)
		wolfSSL_CTX_free(probe);
	cs_tls_cert_free(c);
	return NULL;
}

void cs_tls_cert_free(cs_tls_cert *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nnames; i++)
		free(c->names[i]);
	free(c->names);
	free(c->chain_pem);
	if (c->key_der)
		explicit_bzero(c->key_der, c->key_len);
	free(c->key_der);
	free(c);
}

const char *cs_tls_cert_name(const cs_tls_cert *c) { return c->name; }

static cs_tls_cert *cert_dup(const cs_tls_cert *src)
{
	cs_tls_cert *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	memcpy(c->name, src->name, sizeof(c->name));
	c->chain_pem = malloc(src->chain_len);
	c->key_der = malloc(src->key_len);
	c->names = calloc(MAX_CERT_NAMES, sizeof(char *));
	if (!c->chain_pem || !c->key_der || !c->names)
		goto fail;
	memcpy(c->chain_pem, src->chain_pem, src->chain_len);
	c->chain_len = src->chain_len;
	memcpy(c->key_der, src->key_der, src->key_len);
	c->key_len = src->key_len;
	for (; c->nnames < src->nnames; c->nnames++)
		if (!(c->names[c->nnames] = strdup(src->names[c->nnames])))
			goto fail;
	return c;
fail:
	cs_tls_cert_free(c);
	return NULL;
}

int cs__tls_load_cert(WOLFSSL_CTX *ssl_ctx, WOLFSSL *ssl, const cs_tls_cert *c)
{
	const unsigned char *pem = (const unsigned char *)c->chain_pem;
	if (ssl)
		return wolfSSL_use_certificate_chain_buffer(ssl, pem, (long)c->chain_len) == WOLFSSL_SUCCESS &&
				       wolfSSL_use_PrivateKey_buffer(ssl, c->key_der, (long)c->key_len,
								     WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS
			       ? 0
			       : -1;
	return wolfSSL_CTX_use_certificate_chain_buffer(ssl_ctx, pem, (long)c->chain_len) == WOLFSSL_SUCCESS &&
			       wolfSSL_CTX_use_PrivateKey_buffer(ssl_ctx, c->key_der, (long)c->key_len,
								 WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS
		       ? 0
		       : -1;
}

int cs_tls_ctx_add_cert(cs_tls_ctx *ctx, const cs_tls_cert *cert)
{
	cs_tls_cert **certs = realloc(ctx->certs, (ctx->ncerts + 1) * sizeof(*certs));
	if (!certs)
		return CS_TLS_E_NOMEM;
	ctx->certs = certs;
	cs_tls_cert *c = cert_dup(cert);
	if (!c)
		return CS_TLS_E_NOMEM;
	if (ctx->ncerts == 0 && cs__tls_load_cert(ctx->ssl_ctx, NULL, c) < 0) {
		cs_tls_cert_free(c);
		return CS_TLS_E_HANDSHAKE;
	}
	ctx->certs[ctx->ncerts++] = c;
	return 0;
}

/* "*.example.com" matches one leftmost label; otherwise case-blind equal. */
static bool name_matches(const char *pattern, const char *host)
{
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = strchr(host, '.');
		return dot && dot != host && !strcasecmp(pattern + 1, dot);
	}
	return !strcasecmp(pattern, host);
}

int cs__tls_sni_cb(WOLFSSL *ssl, int *alert, void *arg)
{
	(void)alert;
	cs_tls_ctx *ctx = arg;
	const char *host = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
	if (!host || ctx->ncerts < 2)
		return 0;
	for (unsigned i = 0; i < ctx->ncerts; i++) {
		const cs_tls_cert *c = ctx->certs[i];
		for (unsigned j = 0; j < c->nnames; j++) {
			if (name_matches(c->names[j], host)) {
				/* certs[0] is the context's own already */
				if (i > 0)
					cs__tls_load_cert(NULL, ssl, c);
				return 0;
			}
		}
	}
	return 0;
}

/* ---- trusted CAs ------------------------------------------------------- */

int cs_tls_ctx_add_ca_pem(cs_tls_ctx *ctx, const char *pem, size_t len)
{
	int count = 0;
	for (const char *p = pem, *end = pem + len; (p = memmem(p, (size_t)(end - p), "-----BEGIN CERTIFICATE-----", 27));
	     p += 27)
		count++;
	if (count == 0 ||
	    wolfSSL_CTX_load_verify_buffer(ctx->ssl_ctx, (const unsigned char *)pem, (long)len, WOLFSSL_FILETYPE_PEM) !=
		    WOLFSSL_SUCCESS)
		return -1;
	return count;
}

int cs_tls_ctx_add_system_ca(cs_tls_ctx *ctx)
{
	return wolfSSL_CTX_load_system_CA_certs(ctx->ssl_ctx) == WOLFSSL_SUCCESS ? 0 : -1;
}

int cs__tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	WOLFSSL *ssl = wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
	cs_tls *t = ssl ? wolfSSL_GetIOReadCtx(ssl) : NULL;
	if (!t)
		return preverify;
	if (!preverify && !t->verify_err) {
		int err = wolfSSL_X509_STORE_CTX_get_error(store);
		t->verify_err = err ? err : -1;
	}
	return t->ctx->verify ? preverify : 1;
}

/* ---- the peer's certificate -------------------------------------------- */

static WOLFSSL_X509 *peer_leaf(const cs_tls *t)
{
	if (!t->done)
		return NULL;
	WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
	if (!chain || wolfSSL_get_chain_count(chain) < 1)
		return NULL;
	return wolfSSL_get_chain_X509(chain, 0);
}

static bool is_ip(const char *s)
{
	return strspn(s, "0123456789.") == strlen(s) || strchr(s, ':');
}

/* An ASN.1 UTCTime or GeneralizedTime as seconds since the epoch. */
static bool asn1_time(const WOLFSSL_ASN1_TIME *at, time_t *out)
{
	if (!at)
		return false;
	const char *s = (const char *)at->data;
	int len = at->length, i = 0, year;
	struct tm tm = {0};
	for (int k = 0; k < len && k < 14; k++)
		if (!isdigit((unsigned char)s[k]) && !(k == len - 1 && s[k] == 'Z'))
			return false;
	if (len >= 15) { /* YYYYMMDDHHMMSSZ */
		year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
		i = 4;
	} else if (len >= 13) { /* YYMMDDHHMMSSZ */
		year = (s[0] - '0') * 10 + (s[1] - '0');
		year += year < 50 ? 2000 : 1900;
		i = 2;
	} else {
		return false;
	}
#define TWO(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))
	tm.tm_year = year - 1900;
	tm.tm_mon = TWO(s + i) - 1;
	tm.tm_mday = TWO(s + i + 2);
	tm.tm_hour = TWO(s + i + 4);
	tm.tm_min = TWO(s + i + 6);
	tm.tm_sec = TWO(s + i + 8);
#undef TWO
	*out = timegm(&tm);
	return true;
}

/* The verify callback sees wolfSSL's own codes or, in builds with the
 * OpenSSL layer (Debian's), X509_V_ERR_* ones: accept both. */
static bool date_error(int err)
{
	/* wolfSSL reports its date errors as the "error in notBefore/notAfter
	 * field" codes, 13 and 14 */
	return err == ASN_AFTER_DATE_E || err == ASN_BEFORE_DATE_E || err == X509_V_ERR_CERT_HAS_EXPIRED ||
	       err == X509_V_ERR_CERT_NOT_YET_VALID || err == 13 || err == 14;
}

static bool unknown_ca_error(int err)
{
	return err == ASN_NO_SIGNER_E || err == ASN_SELF_SIGNED_E || err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
	       err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
	       err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	       err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

/* Errors that leave the chain itself trusted. */
static bool chain_error(int err)
{
	return err && !date_error(err) && err != DOMAIN_NAME_MISMATCH && err != 62 /* X509_V_ERR_HOSTNAME_MISMATCH */;
}

/* How the peer's certificate fares on the dates. */
enum dates { DATES_NO_CERT, DATES_OK, DATES_NOT_YET, DATES_EXPIRED, DATES_UNREADABLE };

static unsigned trust_bits(const cs_tls *t, const char *name, enum dates *dates)
{
	WOLFSSL_X509 *x = peer_leaf(t);
	*dates = DATES_NO_CERT;
	if (!x)
		return 0;
	unsigned bits = 0;
	if (!chain_error(t->verify_err))
		bits |= CS_TLS_TRUST_CA;
	if (!name)
		name = t->host;
	if (name && *name) {
		int ok = is_ip(name) ? wolfSSL_X509_check_ip_asc(x, name, 0)
				     : wolfSSL_X509_check_host(x, name, strlen(name), 0, NULL);
		if (ok == WOLFSSL_SUCCESS)
			bits |= CS_TLS_TRUST_NAME;
	}
	time_t from, to, now = time(NULL);
	*dates = DATES_UNREADABLE;
	if (asn1_time(wolfSSL_X509_get_notBefore(x), &from) && asn1_time(wolfSSL_X509_get_notAfter(x), &to)) {
		*dates = now < from ? DATES_NOT_YET : now > to ? DATES_EXPIRED : DATES_OK;
		if (*dates == DATES_OK)
			bits |= CS_TLS_TRUST_DATES;
	}
	wolfSSL_X509_free(x);
	return bits;
}

unsigned cs_tls_trust(const cs_tls *t, const char *name)
{
	enum dates dates;
	return trust_bits(t, name, &dates);
}

const char *cs_tls_trust_reason(const cs_tls *t, const char *name)
{
	enum dates dates;
	unsigned bits = trust_bits(t, name, &dates);
	if (!t->done)
		return "no handshake";
	if (dates == DATES_NO_CERT)
		return "no certificate";
	if (!(bits & CS_TLS_TRUST_CA))
		return unknown_ca_error(t->verify_err) ? "unknown CA" : "untrusted chain";
	if (!(bits & CS_TLS_TRUST_DATES))
		return dates == DATES_NOT_YET ? "not yet valid" : dates == DATES_EXPIRED ? "expired" : "unreadable dates";
	if (!(bits & CS_TLS_TRUST_NAME))
		return "name mismatch";
	return NULL;
}

static void read_dn(WOLFSSL_X509_NAME *n, struct cs_tls_dn *dn)
{
	read_dn_field(n, NID_countryName, dn->country, sizeof(dn->country));
	read_dn_field(n, NID_stateOrProvinceName, dn->province, sizeof(dn->province));
	read_dn_field(n, NID_localityName, dn->locality, sizeof(dn->locality));
	read_dn_field(n, NID_organizationName, dn->organization, sizeof(dn->organization));
	read_dn_field(n, NID_organizationalUnitName, dn->unit, sizeof(dn->unit));
	read_dn_field(n, NID_commonName, dn->common, sizeof(dn->common));
}

/* As SharkSSL shows dates: UTCTime, "YYMMDDHHMMSSZ"; a GeneralizedTime
 * loses its century when UTCTime can hold the year (1950-2049). */
static void copy_time(const WOLFSSL_ASN1_TIME *at, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!at || at->length <= 0 || (size_t)at->length >= len)
		return;
	const char *d = (const char *)at->data;
	size_t n = (size_t)at->length;
	if (n == 15 && (!strncmp(d, "19", 2) ? d[2] >= '5' : !strncmp(d, "20", 2) && d[2] < '5')) {
		d += 2;
		n -= 2;
	}
	memcpy(buf, d, n);
	buf[n] = '\0';
}

int cs_tls_peer_cert(const cs_tls *t, struct cs_tls_peer_cert *pc)
{
	WOLFSSL_X509 *x = peer_leaf(t);
	if (!x)
		return -1;
	memset(pc, 0, sizeof(*pc));
	read_dn(wolfSSL_X509_get_subject_name(x), &pc->subject);
	read_dn(wolfSSL_X509_get_issuer_name(x), &pc->issuer);
	copy_time(wolfSSL_X509_get_notBefore(x), pc->not_before, sizeof(pc->not_before));
	copy_time(wolfSSL_X509_get_notAfter(x), pc->not_after, sizeof(pc->not_after));
	for (char *san; pc->nsan < 16 && (san = wolfSSL_X509_get_next_altname(x));) {
		strncpy(pc->san[pc->nsan], san, sizeof(pc->san[0]) - 1);
		pc->nsan++;
	}
	wolfSSL_X509_free(x);
	return 0;
}

/* ---- a self-signed certificate ----------------------------------------- */

/* GeneralNames for cn, plus 127.0.0.1 and ::1 when cn is "localhost". */
static int alt_names(const char *cn, unsigned char *out, size_t cap)
{
	static const unsigned char loopback[] = {0x87, 4, 127, 0, 0, 1, 0x87, 16, 0, 0, 0, 0, 0, 0, 0, 0,
						 0, 0, 0, 0, 0, 0, 0, 1};
	size_t cnlen = strlen(cn);
	bool local = !strcmp(cn, "localhost");
	size_t body = 2 + cnlen + (local ? sizeof(loopback) : 0);
	if (cnlen > 120 || body > 127 || body + 2 > cap)
		return -1;
	size_t n = 0;
	out[n++] = 0x30; /* SEQUENCE */
	out[n++] = (unsigned char)body;
	out[n++] = 0x82; /* [2] dNSName */
	out[n++] = (unsigned char)cnlen;
	memcpy(out + n, cn, cnlen);
	n += cnlen;
	if (local) {
		memcpy(out + n, loopback, sizeof(loopback));
		n += sizeof(loopback);
	}
	return (int)n;
}

static char *der_to_pem(const unsigned char *der, int len, int type)
{
	int cap = len * 2 + 128;
	char *pem = malloc((size_t)cap + 1);
	if (!pem)
		return NULL;
	int n = wc_DerToPem(der, (unsigned)len, (unsigned char *)pem, (unsigned)cap, type);
	if (n <= 0) {
		free(pem);
		return NULL;
	}
	pem[n] = '\0';
	return pem;
}

int cs_tls_make_self_signed(const char *cn, unsigned days, char **cert_pem, char **key_pem)
{
	WC_RNG rng;
	ecc_key key;
	Cert *cert = calloc(1, sizeof(*cert));
	unsigned char *der = malloc(4096);
	int ret = -1;
	*cert_pem = *key_pem = NULL;
	if (!cert || !der || wc_InitRng(&rng) != 0) {
		free(cert);
		free(der);
		return -1;
	}
	if (wc_ecc_init(&key) != 0)
		goto out_rng;
	if (wc_ecc_make_key(&rng, 32, &key) != 0 || wc_InitCert(cert) != 0)
		goto out;
	strncpy(cert->subject.commonName, cn, CTC_NAME_SIZE - 1);
	strncpy(cert->subject.org, "cosockd", CTC_NAME_SIZE - 1);
	cert->daysValid = (int)days;
	/* UTCTime dates, as RFC 5280 4.1.2.5 wants before 2050 (wolfSSL would
	 * write GeneralizedTime); valid from a day ago, for clock skew */
	time_t now = time(NULL), from = now - 86400, to = now + (time_t)days * 86400;
	struct tm tm;
	cert->beforeDate[0] = cert->afterDate[0] = 0x17;
	cert->beforeDate[1] = cert->afterDate[1] = 13;
	strftime((char *)cert->beforeDate + 2, 14, "%y%m%d%H%M%SZ", gmtime_r(&from, &tm));
	strftime((char *)cert->afterDate + 2, 14, "%y%m%d%H%M%SZ", gmtime_r(&to, &tm));
	cert->beforeDateSz = cert->afterDateSz = 15;
	cert->sigType = CTC_SHA256wECDSA;
	cert->isCA = 0;
	int an = alt_names(cn, cert->altNames, sizeof(cert->altNames));
	if (an > 0)
		cert->altNamesSz = an;
	int n = wc_MakeCert(cert, der, 4096, NULL, &key, &rng);
	if (n <= 0 || (n = wc_SignCert(cert->bodySz, cert->sigType, der, 4096, NULL, &key, &rng)) <= 0)
		goto out;
	if (!(*cert_pem = der_to_pem(der, n, CERT_TYPE)))
		goto out;
	n = wc_EccKeyToDer(&key, der, 4096);
	if (n <= 0 || !(*key_pem = der_to_pem(der, n, ECC_PRIVATEKEY_TYPE)))
		goto out;
	ret = 0;
out:
	wc_ecc_free(&key);
out_rng:
	wc_FreeRng(&rng);
	if (ret < 0) {
		free(*cert_pem);
		free(*key_pem);
		*cert_pem = *key_pem = NULL;
	}
	explicit_bzero(der, 4096);
	free(der);
	free(cert);
	return ret;
}
