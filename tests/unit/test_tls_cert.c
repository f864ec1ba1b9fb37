/*
 * test_tls_cert.c - tls/tls_cert.c: certificates and keys (parse errors,
 * PKCS#8 and encrypted keys), contexts and their certificates, generating
 * a self-signed certificate, trusted CAs, verification, the trust bits and
 * reasons, SNI, and the peer certificate's fields. Sessions run client
 * against server in memory, as in test_tls.c.
 *
 * The key and certificate variants (PKCS#8, encrypted, expired) are made
 * at test time with wolfCrypt, which the tls library links already: no
 * fixtures on disk, no external tools.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/ec.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/pem.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include "tls.h"
#include "tls_pair.h"

static void setup(void)
{
	cr_assert_eq(cs_tls_global_init(), 0);
}

TestSuite(tls_cert, .init = setup, .timeout = 60);

/* ---- helpers ----------------------------------------------------------- */

/* A self-signed certificate and its key, as PEM. */
struct pem {
	char *cert, *key;
};

static struct pem self_signed(const char *cn, unsigned days)
{
	struct pem p = {0};
	cr_assert_eq(cs_tls_make_self_signed(cn, days, &p.cert, &p.key), 0, "make_self_signed(%s)", cn);
	cr_assert_not_null(p.cert);
	cr_assert_not_null(p.key);
	return p;
}

static void pem_free(struct pem *p)
{
	free(p->cert);
	free(p->key);
	p->cert = p->key = NULL;
}

static cs_tls_cert *cert_of(const struct pem *p)
{
	const char *err = NULL;
	cs_tls_cert *c = cs_tls_cert_new(p->cert, strlen(p->cert), p->key, strlen(p->key), NULL, &err);
	cr_assert_not_null(c, "cs_tls_cert_new: %s", err ? err : "(no err)");
	return c;
}

/* cs_tls_cert_new's verdict: NULL on success, else *err. */
static const char *cert_err(const char *cert, const char *key, const char *password)
{
	const char *err = "(unset)";
	cs_tls_cert *c = cs_tls_cert_new(cert, strlen(cert), key, strlen(key), password, &err);
	if (c) {
		cs_tls_cert_free(c);
		return NULL;
	}
	cr_assert_not_null(err, "cs_tls_cert_new failed and left *err NULL");
	return err;
}

static cs_tls_ctx *server_ctx_of(const struct pem *certs, unsigned n)
{
	struct cs_tls_ctx_opts o = {.server = true};
	cs_tls_ctx *ctx = cs_tls_ctx_new(&o);
	cr_assert_not_null(ctx);
	for (unsigned i = 0; i < n; i++) {
		cs_tls_cert *c = cert_of(&certs[i]);
		cr_assert_eq(cs_tls_ctx_add_cert(ctx, c), 0);
		cs_tls_cert_free(c);
	}
	cr_assert_eq(cs_tls_ctx_certs(ctx), n);
	return ctx;
}

static cs_tls_ctx *client_ctx(bool verify, const char *ca_pem)
{
	struct cs_tls_ctx_opts o = {.server = false, .verify = verify};
	cs_tls_ctx *ctx = cs_tls_ctx_new(&o);
	cr_assert_not_null(ctx);
	if (ca_pem)
		cr_assert_eq(cs_tls_ctx_add_ca_pem(ctx, ca_pem, strlen(ca_pem)), 1);
	return ctx;
}

/* A client session for host on cctx against a server session on sctx. */
struct pair {
	cs_tls *c, *s;
	struct hs r;
};

static struct pair connect_to(cs_tls_ctx *cctx, cs_tls_ctx *sctx, const char *host)
{
	struct pair p;
	p.c = cs_tls_new(cctx, host, 443, NULL);
	p.s = cs_tls_new(sctx, NULL, 0, NULL);
	cr_assert_not_null(p.c);
	cr_assert_not_null(p.s);
	p.r = handshake(p.c, p.s);
	return p;
}

static struct pair connect_ok(cs_tls_ctx *cctx, cs_tls_ctx *sctx, const char *host)
{
	struct pair p = connect_to(cctx, sctx, host);
	cr_assert_eq(p.r.c, CS_TLS_OK, "client handshake (host %s): %s", host ? host : "NULL", st(p.r.c));
	cr_assert_eq(p.r.s, CS_TLS_OK, "server handshake (host %s): %s", host ? host : "NULL", st(p.r.s));
	return p;
}

static void pair_free(struct pair *p)
{
	cs_tls_free(p->c);
	cs_tls_free(p->s);
}

/* The common name of the certificate the client got. */
static void peer_cn(cs_tls *c, char *buf, size_t len)
{
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(c, &pc), 0);
	snprintf(buf, len, "%s", pc.subject.common);
}

/* ---- making key and certificate variants with wolfCrypt ---------------- */

static char *der_to_pem(const unsigned char *der, size_t len, int type)
{
	size_t cap = len * 2 + 256;
	char *pem = malloc(cap + 1);
	cr_assert_not_null(pem);
	int n = wc_DerToPem(der, (word32)len, (unsigned char *)pem, (word32)cap, type);
	cr_assert_gt(n, 0, "wc_DerToPem: %d", n);
	pem[n] = '\0';
	return pem;
}

/* The traditional ("EC PRIVATE KEY") DER of an unencrypted key PEM. */
static int key_der(const char *key_pem, unsigned char *der, int cap)
{
	int n = wc_KeyPemToDer((const unsigned char *)key_pem, (int)strlen(key_pem), der, cap, NULL);
	cr_assert_gt(n, 0, "wc_KeyPemToDer: %d", n);
	return n;
}

/* The key as unencrypted PKCS#8 ("PRIVATE KEY"). */
static char *key_pkcs8(const char *key_pem)
{
	unsigned char der[512], out[1024];
	int n = key_der(key_pem, der, sizeof(der));
	ecc_key k;
	word32 idx = 0, outlen = sizeof(out);
	cr_assert_eq(wc_ecc_init(&k), 0);
	cr_assert_eq(wc_EccPrivateKeyDecode(der, &idx, &k, (word32)n), 0);
	int m = wc_EccKeyToPKCS8(&k, out, &outlen);
	cr_assert_gt(m, 0, "wc_EccKeyToPKCS8: %d", m);
	wc_ecc_free(&k);
	char *pem = der_to_pem(out, (size_t)m, PKCS8_PRIVATEKEY_TYPE);
	cr_assert(strstr(pem, "-----BEGIN PRIVATE KEY-----"), "%s", pem);
	return pem;
}

/* The key as encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2 with
 * AES-256-CBC, as `openssl pkcs8 -topk8` writes by default). */
static char *key_pkcs8_encrypted(const char *key_pem, const char *password)
{
	unsigned char der[512], out[2048];
	int n = key_der(key_pem, der, sizeof(der));
	WC_RNG rng;
	cr_assert_eq(wc_InitRng(&rng), 0);
	word32 outlen = sizeof(out);
	int m = wc_CreateEncryptedPKCS8Key(der, (word32)n, out, &outlen, password, (int)strlen(password), PKCS5,
					   PBES2, AES256CBCb, NULL, 0, 2048, &rng, NULL);
	cr_assert_gt(m, 0, "wc_CreateEncryptedPKCS8Key: %d", m);
	wc_FreeRng(&rng);
	char *pem = der_to_pem(out, (size_t)m, PKCS8_ENC_PRIVATEKEY_TYPE);
	cr_assert(strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----"), "%s", pem);
	return pem;
}

/* The key as a traditional encrypted PEM ("Proc-Type: 4,ENCRYPTED" and
 * "DEK-Info: AES-256-CBC,..." headers, as `openssl ec -aes256` writes). */
static char *key_traditional_encrypted(const char *key_pem, const char *password)
{
	unsigned char der[512];
	int n = key_der(key_pem, der, sizeof(der));
	WOLFSSL_EC_KEY *ec = wolfSSL_EC_KEY_new();
	cr_assert_not_null(ec);
	cr_assert_eq(wolfSSL_EC_KEY_LoadDer(ec, der, n), WOLFSSL_SUCCESS);
	unsigned char *pem = NULL;
	int plen = 0;
	cr_assert_eq(wolfSSL_PEM_write_mem_ECPrivateKey(ec, wolfSSL_EVP_aes_256_cbc(), (unsigned char *)password,
							 (int)strlen(password), &pem, &plen),
		     WOLFSSL_SUCCESS);
	wolfSSL_EC_KEY_free(ec);
	char *s = malloc((size_t)plen + 1);
	cr_assert_not_null(s);
	memcpy(s, pem, (size_t)plen);
	s[plen] = '\0';
	wolfSSL_OPENSSL_free(pem);
	cr_assert(strstr(s, "ENCRYPTED") && strstr(s, "DEK-Info:"), "%s", s);
	return s;
}

/* "YYMMDDHHMMSSZ" for now + secs. */
static void utc_time(time_t secs_from_now, char out[14])
{
	time_t t = time(NULL) + secs_from_now;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 14, "%y%m%d%H%M%SZ", &tm);
}

/* A certificate time, "YYMMDDHHMMSSZ" (UTCTime) or "YYYYMMDDHHMMSSZ"
 * (GeneralizedTime), as seconds since the epoch; -1 when it is neither. */
static time_t cert_time(const char *s)
{
	size_t n = strlen(s);
	if ((n != 13 && n != 15) || s[n - 1] != 'Z')
		return (time_t)-1;
	for (size_t i = 0; i < n - 1; i++)
		if (s[i] < '0' || s[i] > '9')
			return (time_t)-1;
#define D2(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))
	struct tm tm = {0};
	int year = n == 13 ? D2(s) : D2(s) * 100 + D2(s + 2);
	if (n == 13)
		year += year < 50 ? 2000 : 1900;
	const char *r = s + (n == 13 ? 2 : 4);
	tm.tm_year = year - 1900;
	tm.tm_mon = D2(r) - 1;
	tm.tm_mday = D2(r + 2);
	tm.tm_hour = D2(r + 4);
	tm.tm_min = D2(r + 6);
	tm.tm_sec = D2(r + 8);
#undef D2
	return timegm(&tm);
}

/* A self-signed ECDSA certificate for common name cn and the one DNS
 * alternative name san, valid from now + from to now + to (seconds): made
 * here so that the dates can lie outside "now" and the names differ. */
static struct pem dated_cert_san(const char *cn, const char *san, time_t from, time_t to)
{
	struct pem p = {0};
	WC_RNG rng;
	ecc_key key;
	Cert *cert = calloc(1, sizeof(*cert));
	unsigned char der[4096];
	cr_assert_not_null(cert);
	cr_assert_eq(wc_InitRng(&rng), 0);
	cr_assert_eq(wc_ecc_init(&key), 0);
	cr_assert_eq(wc_ecc_make_key(&rng, 32, &key), 0);
	cr_assert_eq(wc_InitCert(cert), 0);
	snprintf(cert->subject.commonName, sizeof(cert->subject.commonName), "%s", cn);
	cert->sigType = CTC_SHA256wECDSA;
	/* SEQUENCE { [2] dNSName san } */
	size_t sanlen = strlen(san);
	cr_assert_lt(sanlen, 100);
	cert->altNames[0] = 0x30;
	cert->altNames[1] = (unsigned char)(sanlen + 2);
	cert->altNames[2] = 0x82;
	cert->altNames[3] = (unsigned char)sanlen;
	memcpy(cert->altNames + 4, san, sanlen);
	cert->altNamesSz = (int)sanlen + 4;
	/* UTCTime TLVs */
	char b[14], a[14];
	utc_time(from, b);
	utc_time(to, a);
	cert->beforeDate[0] = cert->afterDate[0] = 0x17;
	cert->beforeDate[1] = cert->afterDate[1] = 13;
	memcpy(cert->beforeDate + 2, b, 13);
	memcpy(cert->afterDate + 2, a, 13);
	cert->beforeDateSz = cert->afterDateSz = 15;
	int n = wc_MakeCert(cert, der, sizeof(der), NULL, &key, &rng);
	cr_assert_gt(n, 0, "wc_MakeCert: %d", n);
	n = wc_SignCert(cert->bodySz, cert->sigType, der, sizeof(der), NULL, &key, &rng);
	cr_assert_gt(n, 0, "wc_SignCert: %d", n);
	p.cert = der_to_pem(der, (size_t)n, CERT_TYPE);
	n = wc_EccKeyToDer(&key, der, sizeof(der));
	cr_assert_gt(n, 0);
	p.key = der_to_pem(der, (size_t)n, ECC_PRIVATEKEY_TYPE);
	wc_ecc_free(&key);
	wc_FreeRng(&rng);
	free(cert);
	return p;
}

static struct pem dated_cert(const char *cn, time_t from, time_t to)
{
	return dated_cert_san(cn, cn, from, to);
}

/* ---- self-signed certificates ------------------------------------------ */

Test(tls_cert, make_self_signed_writes_a_cert_and_key_that_parse)
{
	struct pem p = self_signed("unit.example", 30);
	cr_assert(strstr(p.cert, "-----BEGIN CERTIFICATE-----") == p.cert, "%s", p.cert);
	cr_assert(strstr(p.cert, "-----END CERTIFICATE-----"));
	cr_assert(strstr(p.key, "-----BEGIN ") == p.key, "%s", p.key);
	cr_assert(strstr(p.key, "PRIVATE KEY-----"));
	cr_assert_null(strstr(p.key, "ENCRYPTED"), "the key is not encrypted");
	cs_tls_cert *c = cert_of(&p);
	cr_assert_str_eq(cs_tls_cert_name(c), "unit.example");
	cs_tls_cert_free(c);
	pem_free(&p);
}

Test(tls_cert, make_self_signed_makes_a_new_key_each_time)
{
	struct pem a = self_signed("same.example", 30), b = self_signed("same.example", 30);
	cr_assert_str_neq(a.key, b.key);
	cr_assert_str_neq(a.cert, b.cert);
	pem_free(&a);
	pem_free(&b);
}

Test(tls_cert, make_self_signed_is_valid_for_days_days)
{
	struct pem p = self_signed("localhost", 365);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
	/* Days only: the string's shape is peer_cert_fields' business. */
	time_t from = cert_time(pc.not_before), to = cert_time(pc.not_after), now = time(NULL);
	cr_assert_neq(from, (time_t)-1, "not_before \"%s\"", pc.not_before);
	cr_assert_neq(to, (time_t)-1, "not_after \"%s\"", pc.not_after);
	cr_assert_leq(from, now + 60, "not_before %s is in the future", pc.not_before);
	cr_assert(to > now + 364 * 86400 && to < now + 366 * 86400, "not_after %s is not 365 days from now",
		  pc.not_after);
	cr_assert(cs_tls_trust(s.c, NULL) & CS_TLS_TRUST_DATES);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

/* ---- cs_tls_cert_new --------------------------------------------------- */

Test(tls_cert, cert_new_rejects_a_bad_cert)
{
	struct pem p = self_signed("localhost", 30);
	cr_assert_str_eq(cert_err("this is not a certificate", p.key, NULL), "pem_cert_parse_error");
	cr_assert_str_eq(cert_err("", p.key, NULL), "pem_cert_parse_error");
	/* The key where the certificate should be. */
	cr_assert_str_eq(cert_err(p.key, p.key, NULL), "pem_cert_parse_error");
	/* A certificate whose body is damaged. */
	char *broken = strdup(p.cert);
	char *body = strchr(broken, '\n') + 1;
	memset(body + 20, 'A', 40);
	cr_assert_str_eq(cert_err(broken, p.key, NULL), "pem_cert_parse_error");
	/* Cut short. */
	broken[strlen(broken) / 2] = '\0';
	cr_assert_str_eq(cert_err(broken, p.key, NULL), "pem_cert_parse_error");
	free(broken);
	pem_free(&p);
}

Test(tls_cert, cert_new_rejects_a_bad_key)
{
	struct pem p = self_signed("localhost", 30);
	cr_assert_str_eq(cert_err(p.cert, "this is not a key", NULL), "pem_key_parse_error");
	cr_assert_str_eq(cert_err(p.cert, "", NULL), "pem_key_parse_error");
	/* The certificate where the key should be. */
	cr_assert_str_eq(cert_err(p.cert, p.cert, NULL), "pem_key_parse_error");
	/* A key whose body is damaged. */
	char *broken = strdup(p.key);
	char *body = strchr(broken, '\n') + 1;
	memset(body + 8, '!', 20);
	cr_assert_str_eq(cert_err(p.cert, broken, NULL), "pem_key_parse_error");
	free(broken);
	pem_free(&p);
}

Test(tls_cert, cert_new_rejects_the_key_of_another_cert)
{
	struct pem a = self_signed("a.example", 30), b = self_signed("b.example", 30);
	cr_assert_str_eq(cert_err(a.cert, b.key, NULL), "key_cert_mismatch");
	cr_assert_str_eq(cert_err(b.cert, a.key, NULL), "key_cert_mismatch");
	cr_assert_null(cert_err(a.cert, a.key, NULL));
	pem_free(&a);
	pem_free(&b);
}

Test(tls_cert, cert_new_reads_only_len_bytes)
{
	struct pem p = self_signed("localhost", 30);
	size_t cl = strlen(p.cert), kl = strlen(p.key);
	/* No terminating NUL, and junk right behind. */
	char *cert = malloc(cl + 64), *key = malloc(kl + 64);
	memcpy(cert, p.cert, cl);
	memset(cert + cl, 'Z', 64);
	memcpy(key, p.key, kl);
	memset(key + kl, 'Z', 64);
	const char *err = NULL;
	cs_tls_cert *c = cs_tls_cert_new(cert, cl, key, kl, NULL, &err);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(cs_tls_cert_name(c), "localhost");
	cs_tls_cert_free(c);
	/* Short by the certificate's last line: a cut-off PEM. */
	c = cs_tls_cert_new(cert, cl - 30, key, kl, NULL, &err);
	cr_assert_null(c);
	cr_assert_str_eq(err, "pem_cert_parse_error");
	free(cert);
	free(key);
	pem_free(&p);
}

Test(tls_cert, cert_new_takes_a_pkcs8_key)
{
	struct pem p = self_signed("localhost", 30);
	char *k8 = key_pkcs8(p.key);
	cr_assert_null(cert_err(p.cert, k8, NULL), "PKCS#8 key refused: %s", cert_err(p.cert, k8, NULL));
	struct pem other = self_signed("other.example", 30);
	cr_assert_str_eq(cert_err(other.cert, k8, NULL), "key_cert_mismatch");
	free(k8);
	pem_free(&other);
	pem_free(&p);
}

Test(tls_cert, cert_new_takes_an_encrypted_pkcs8_key_with_its_password)
{
	struct pem p = self_signed("localhost", 30);
	char *enc = key_pkcs8_encrypted(p.key, "s3cret pass");
	const char *e = cert_err(p.cert, enc, "s3cret pass");
	cr_assert_null(e, "encrypted PKCS#8 key with the right password: %s", e);
	cr_assert_str_eq(cert_err(p.cert, enc, "wrong pass"), "pem_key_parse_error");
	cr_assert_str_eq(cert_err(p.cert, enc, NULL), "pem_key_parse_error");
	cr_assert_str_eq(cert_err(p.cert, enc, ""), "pem_key_parse_error");
	free(enc);
	pem_free(&p);
}

Test(tls_cert, cert_new_takes_an_encrypted_traditional_key_with_its_password)
{
	struct pem p = self_signed("localhost", 30);
	char *enc = key_traditional_encrypted(p.key, "s3cret pass");
	const char *e = cert_err(p.cert, enc, "s3cret pass");
	cr_assert_null(e, "encrypted EC key with the right password: %s", e);
	cr_assert_str_eq(cert_err(p.cert, enc, "wrong pass"), "pem_key_parse_error");
	cr_assert_str_eq(cert_err(p.cert, enc, NULL), "pem_key_parse_error");
	free(enc);
	pem_free(&p);
}

Test(tls_cert, a_password_on_a_plain_key_is_ignored)
{
	struct pem p = self_signed("localhost", 30);
	const char *e = cert_err(p.cert, p.key, "unused");
	cr_assert_null(e, "%s", e);
	pem_free(&p);
}

Test(tls_cert, an_encrypted_key_serves_a_handshake)
{
	struct pem p = self_signed("localhost", 30);
	char *enc = key_pkcs8_encrypted(p.key, "pw");
	const char *err = NULL;
	cs_tls_cert *c = cs_tls_cert_new(p.cert, strlen(p.cert), enc, strlen(enc), "pw", &err);
	cr_assert_not_null(c, "%s", err);
	struct cs_tls_ctx_opts so = {.server = true};
	cs_tls_ctx *sctx = cs_tls_ctx_new(&so);
	cr_assert_eq(cs_tls_ctx_add_cert(sctx, c), 0);
	cs_tls_cert_free(c);
	cs_tls_ctx *cctx = client_ctx(true, p.cert);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	free(enc);
	pem_free(&p);
}

Test(tls_cert, a_chain_is_named_by_its_leaf)
{
	struct pem leaf = self_signed("leaf.example", 30), other = self_signed("other.example", 30);
	size_t n = strlen(leaf.cert) + strlen(other.cert) + 1;
	char *chain = malloc(n);
	snprintf(chain, n, "%s%s", leaf.cert, other.cert);
	const char *err = NULL;
	cs_tls_cert *c = cs_tls_cert_new(chain, strlen(chain), leaf.key, strlen(leaf.key), NULL, &err);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(cs_tls_cert_name(c), "leaf.example");
	cs_tls_cert_free(c);
	free(chain);
	pem_free(&leaf);
	pem_free(&other);
}

/* ---- contexts ---------------------------------------------------------- */

Test(tls_cert, contexts_have_a_role_and_count_their_certs)
{
	struct cs_tls_ctx_opts so = {.server = true, .alpn = "http/1.1"}, co = {.server = false, .verify = true};
	cs_tls_ctx *s = cs_tls_ctx_new(&so), *c = cs_tls_ctx_new(&co);
	cr_assert_not_null(s);
	cr_assert_not_null(c);
	cr_assert(cs_tls_ctx_is_server(s));
	cr_assert_not(cs_tls_ctx_is_server(c));
	cr_assert_eq(cs_tls_ctx_certs(s), 0);
	cr_assert_eq(cs_tls_ctx_certs(c), 0);
	struct pem a = self_signed("a.example", 30), b = self_signed("b.example", 30);
	cs_tls_cert *ca = cert_of(&a), *cb = cert_of(&b);
	cr_assert_eq(cs_tls_ctx_add_cert(s, ca), 0);
	cr_assert_eq(cs_tls_ctx_certs(s), 1);
	cr_assert_eq(cs_tls_ctx_add_cert(s, cb), 0);
	cr_assert_eq(cs_tls_ctx_certs(s), 2);
	/* A client may hold one too (to present when asked). */
	cr_assert_eq(cs_tls_ctx_add_cert(c, ca), 0);
	cr_assert_eq(cs_tls_ctx_certs(c), 1);
	/* The same cert object may go into several contexts. */
	cs_tls_ctx *s2 = cs_tls_ctx_new(&so);
	cr_assert_eq(cs_tls_ctx_add_cert(s2, ca), 0);
	cs_tls_cert_free(ca);
	cs_tls_cert_free(cb);
	cs_tls_ctx_unref(s);
	cs_tls_ctx_unref(s2);
	cs_tls_ctx_unref(c);
	pem_free(&a);
	pem_free(&b);
}

Test(tls_cert, a_context_copies_the_cert)
{
	struct pem p = self_signed("localhost", 30);
	struct cs_tls_ctx_opts so = {.server = true};
	cs_tls_ctx *sctx = cs_tls_ctx_new(&so);
	cs_tls_cert *c = cert_of(&p);
	cr_assert_eq(cs_tls_ctx_add_cert(sctx, c), 0);
	cs_tls_cert_free(c); /* the context keeps its own copy */
	cs_tls_ctx *cctx = client_ctx(true, p.cert);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, add_ca_pem_counts_what_it_added)
{
	struct pem a = self_signed("a.example", 30), b = self_signed("b.example", 30);
	cs_tls_ctx *c = client_ctx(false, NULL);
	cr_assert_eq(cs_tls_ctx_add_ca_pem(c, a.cert, strlen(a.cert)), 1);
	size_t n = strlen(a.cert) + strlen(b.cert) + 64;
	char *two = malloc(n);
	snprintf(two, n, "# a bundle\n%s\n%s", a.cert, b.cert);
	cs_tls_ctx *c2 = client_ctx(false, NULL);
	cr_assert_eq(cs_tls_ctx_add_ca_pem(c2, two, strlen(two)), 2);
	cs_tls_ctx *c3 = client_ctx(false, NULL);
	cr_assert_eq(cs_tls_ctx_add_ca_pem(c3, "not pem at all", 14), -1);
	cr_assert_eq(cs_tls_ctx_add_ca_pem(c3, "", 0), -1);
	/* A key is not a certificate. */
	cr_assert_eq(cs_tls_ctx_add_ca_pem(c3, a.key, strlen(a.key)), -1);
	free(two);
	cs_tls_ctx_unref(c);
	cs_tls_ctx_unref(c2);
	cs_tls_ctx_unref(c3);
	pem_free(&a);
	pem_free(&b);
}

Test(tls_cert, ca_bundle_trusts_each_of_its_certs)
{
	struct pem a = self_signed("a.example", 30), b = self_signed("b.example", 30);
	size_t n = strlen(a.cert) + strlen(b.cert) + 1;
	char *two = malloc(n);
	snprintf(two, n, "%s%s", a.cert, b.cert);
	struct cs_tls_ctx_opts co = {.server = false, .verify = true};
	cs_tls_ctx *cctx = cs_tls_ctx_new(&co);
	cr_assert_eq(cs_tls_ctx_add_ca_pem(cctx, two, strlen(two)), 2);
	cs_tls_ctx *sa = server_ctx_of(&a, 1), *sb = server_ctx_of(&b, 1);
	struct pair p = connect_ok(cctx, sa, "a.example");
	pair_free(&p);
	p = connect_ok(cctx, sb, "b.example");
	pair_free(&p);
	free(two);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sa);
	cs_tls_ctx_unref(sb);
	pem_free(&a);
	pem_free(&b);
}

static bool have_system_cas(void)
{
	DIR *d = opendir("/etc/ssl/certs");
	if (!d)
		return false;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strstr(e->d_name, ".pem") || strstr(e->d_name, ".crt"))
			n++;
	closedir(d);
	return n > 0;
}

Test(tls_cert, system_cas_load_and_do_not_trust_a_self_signed_cert)
{
	if (!have_system_cas())
		cr_skip_test("no CA certificates in /etc/ssl/certs");
	struct cs_tls_ctx_opts co = {.server = false};
	cs_tls_ctx *cctx = cs_tls_ctx_new(&co);
	cr_assert_eq(cs_tls_ctx_add_system_ca(cctx), 0);
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	cr_assert_not(cs_tls_trust(s.c, NULL) & CS_TLS_TRUST_CA);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

/* ---- verification ------------------------------------------------------ */

Test(tls_cert, verify_without_the_ca_is_not_trusted)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(true, NULL);
	struct pair s = connect_to(cctx, sctx, "localhost");
	cr_assert_eq(s.r.c, CS_TLS_E_NOTTRUSTED, "%s", st(s.r.c));
	cr_assert_str_eq(cs_tls_errstr(s.r.c), "sslnottrusted");
	cr_assert_not(cs_tls_handshake_done(s.c));
	cr_assert(failed(cs_tls_handshake(s.c)), "the session is dead after the failure");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, a_client_that_does_not_trust_the_server_alerts_it)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(true, NULL);
	struct pair s = connect_to(cctx, sctx, "localhost");
	cr_assert_eq(s.r.c, CS_TLS_E_NOTTRUSTED, "%s", st(s.r.c));
	/* The client's alert reached the server: a fatal alert from its peer. */
	cr_assert_eq(s.r.s, CS_TLS_E_ALERT, "server: %s", st(s.r.s));
	cr_assert_str_eq(cs_tls_errstr(s.r.s), "sslalertrecv");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, verify_with_the_cert_as_ca_succeeds)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(true, p.cert);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	cr_assert_eq(cs_tls_trust(s.c, NULL), CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES);
	cr_assert_null(cs_tls_trust_reason(s.c, NULL), "%s", cs_tls_trust_reason(s.c, NULL));
	cr_assert_eq(cs_tls_write(s.c, "ok", 2), 2);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, verify_checks_the_name)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(true, p.cert);
	struct pair s = connect_to(cctx, sctx, "other.example");
	cr_assert_eq(s.r.c, CS_TLS_E_NOTTRUSTED, "host other.example, cert for localhost: %s", st(s.r.c));
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, verify_checks_the_dates)
{
	struct pem p = dated_cert("localhost", -10 * 86400, -86400); /* expired yesterday */
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(true, NULL);
	/* The expired cert is its own CA: wolfSSL may refuse to load it, and
	 * then it is no CA at all; either way the peer is not trusted. */
	cs_tls_ctx_add_ca_pem(cctx, p.cert, strlen(p.cert));
	struct pair s = connect_to(cctx, sctx, "localhost");
	cr_assert_eq(s.r.c, CS_TLS_E_NOTTRUSTED, "expired cert: %s", st(s.r.c));
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, a_server_does_not_verify_clients)
{
	/* verify is a client option; a server context with it set still
	 * serves a client that has no certificate. */
	struct pem p = self_signed("localhost", 30);
	struct cs_tls_ctx_opts so = {.server = true, .verify = true};
	cs_tls_ctx *sctx = cs_tls_ctx_new(&so);
	cs_tls_cert *c = cert_of(&p);
	cr_assert_eq(cs_tls_ctx_add_cert(sctx, c), 0);
	cs_tls_cert_free(c);
	cs_tls_ctx *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

/* ---- trust bits -------------------------------------------------------- */

Test(tls_cert, trust_bits_without_the_ca)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	unsigned t = cs_tls_trust(s.c, NULL);
	cr_assert_not(t & CS_TLS_TRUST_CA, "CA bit set with no CA added (bits %u)", t);
	cr_assert(t & CS_TLS_TRUST_NAME, "NAME bit clear for localhost (bits %u)", t);
	cr_assert(t & CS_TLS_TRUST_DATES, "DATES bit clear (bits %u)", t);
	const char *why = cs_tls_trust_reason(s.c, NULL);
	cr_assert_not_null(why);
	cr_assert_gt(strlen(why), 0);

	t = cs_tls_trust(s.c, "other.example");
	cr_assert_eq(t, CS_TLS_TRUST_DATES, "bits %u for the wrong name and no CA", t);
	cr_assert_not_null(cs_tls_trust_reason(s.c, "other.example"));
	cr_assert_eq(cs_tls_trust(s.c, "localhost"), CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, trust_bits_with_the_ca)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, p.cert);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	cr_assert_eq(cs_tls_trust(s.c, NULL), CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES, "bits %u",
		     cs_tls_trust(s.c, NULL));
	cr_assert_null(cs_tls_trust_reason(s.c, NULL));
	cr_assert_eq(cs_tls_trust(s.c, "localhost"), CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES);
	unsigned t = cs_tls_trust(s.c, "other.example");
	cr_assert_eq(t, CS_TLS_TRUST_CA | CS_TLS_TRUST_DATES, "bits %u for the wrong name", t);
	const char *why = cs_tls_trust_reason(s.c, "other.example");
	cr_assert_not_null(why);
	cr_assert_gt(strlen(why), 0);
	/* Case does not matter in DNS names. */
	cr_assert(cs_tls_trust(s.c, "LocalHost") & CS_TLS_TRUST_NAME);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, trust_reason_uses_the_documented_wording)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL), *cctx_ca = client_ctx(false, p.cert);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	cr_assert_str_eq(cs_tls_trust_reason(s.c, NULL), "unknown CA");
	pair_free(&s);
	s = connect_ok(cctx_ca, sctx, "localhost");
	cr_assert_str_eq(cs_tls_trust_reason(s.c, "other.example"), "name mismatch");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(cctx_ca);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);

	p = dated_cert("localhost", -10 * 86400, -86400);
	sctx = server_ctx_of(&p, 1);
	cctx = client_ctx(false, NULL);
	cs_tls_ctx_add_ca_pem(cctx, p.cert, strlen(p.cert));
	s = connect_ok(cctx, sctx, "localhost");
	unsigned t = cs_tls_trust(s.c, NULL);
	const char *why = cs_tls_trust_reason(s.c, NULL);
	cr_assert_not_null(why);
	/* With the CA accepted, the first failed check is the dates. */
	if (t & CS_TLS_TRUST_CA)
		cr_assert_str_eq(why, "expired");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, trust_dates_of_an_expired_and_a_future_cert)
{
	struct pem old = dated_cert("localhost", -10 * 86400, -86400);
	struct pem future = dated_cert("localhost", 86400, 10 * 86400);
	struct pem *certs[2] = {&old, &future};
	for (int i = 0; i < 2; i++) {
		cs_tls_ctx *sctx = server_ctx_of(certs[i], 1), *cctx = client_ctx(false, NULL);
		struct pair s = connect_ok(cctx, sctx, "localhost");
		unsigned t = cs_tls_trust(s.c, NULL);
		cr_assert_not(t & CS_TLS_TRUST_DATES, "%s cert: DATES bit set (bits %u)", i ? "future" : "expired",
			      t);
		cr_assert(t & CS_TLS_TRUST_NAME, "%s cert: NAME bit clear (bits %u)", i ? "future" : "expired", t);
		cr_assert_not_null(cs_tls_trust_reason(s.c, NULL));
		struct cs_tls_peer_cert pc;
		cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
		time_t now = time(NULL);
		if (i == 0)
			cr_assert(cert_time(pc.not_after) < now, "not_after %s", pc.not_after);
		else
			cr_assert(cert_time(pc.not_before) > now, "not_before %s", pc.not_before);
		pair_free(&s);
		cs_tls_ctx_unref(cctx);
		cs_tls_ctx_unref(sctx);
	}
	pem_free(&old);
	pem_free(&future);
}

Test(tls_cert, trust_for_a_name_when_the_session_has_no_host)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, p.cert);
	struct pair s = connect_ok(cctx, sctx, NULL);
	cr_assert_null(cs_tls_host(s.c));
	cr_assert_eq(cs_tls_trust(s.c, "localhost"), CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES);
	cr_assert_eq(cs_tls_trust(s.c, "other.example"), CS_TLS_TRUST_CA | CS_TLS_TRUST_DATES);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, a_server_sees_no_client_certificate)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(s.s, &pc), -1);
	cr_assert_eq(cs_tls_trust(s.s, "localhost"), 0);
	cr_assert_eq(cs_tls_trust(s.s, NULL), 0);
	cr_assert_not_null(cs_tls_trust_reason(s.s, NULL), "no certificate: a check failed");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, no_peer_cert_before_the_handshake)
{
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *cctx = client_ctx(false, NULL);
	cs_tls *c = cs_tls_new(cctx, "localhost", 443, NULL);
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(c, &pc), -1);
	cr_assert_eq(cs_tls_trust(c, NULL), 0);
	cs_tls_free(c);
	cs_tls_ctx_unref(cctx);
	pem_free(&p);
}

/* ---- the peer's certificate -------------------------------------------- */

static bool utc_shaped(const char *s)
{
	if (strlen(s) != 13 || s[12] != 'Z')
		return false;
	for (int i = 0; i < 12; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

Test(tls_cert, peer_cert_fields)
{
	struct pem p = self_signed("peer.example", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "peer.example");
	struct cs_tls_peer_cert pc;
	memset(&pc, 0x5a, sizeof(pc)); /* every field must be written */
	cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
	cr_assert_str_eq(pc.subject.common, "peer.example");
	/* Self-signed: the issuer is the subject. */
	cr_assert_str_eq(pc.issuer.common, "peer.example");
	cr_assert_str_eq(pc.issuer.organization, pc.subject.organization);
	cr_assert_str_eq(pc.issuer.country, pc.subject.country);
	const struct cs_tls_dn *dns[2] = {&pc.subject, &pc.issuer};
	for (int i = 0; i < 2; i++) {
		cr_assert_lt(strnlen(dns[i]->country, sizeof(dns[i]->country)), sizeof(dns[i]->country));
		cr_assert_lt(strnlen(dns[i]->province, sizeof(dns[i]->province)), sizeof(dns[i]->province));
		cr_assert_lt(strnlen(dns[i]->locality, sizeof(dns[i]->locality)), sizeof(dns[i]->locality));
		cr_assert_lt(strnlen(dns[i]->organization, sizeof(dns[i]->organization)),
			     sizeof(dns[i]->organization));
		cr_assert_lt(strnlen(dns[i]->unit, sizeof(dns[i]->unit)), sizeof(dns[i]->unit));
		cr_assert_lt(strnlen(dns[i]->common, sizeof(dns[i]->common)), sizeof(dns[i]->common));
	}
	/* The shape of these strings is checked by
	 * make_self_signed_writes_utctime_dates and
	 * peer_cert_dates_are_the_certificates_own_text. */
	cr_assert_neq(cert_time(pc.not_before), (time_t)-1, "not_before \"%.31s\"", pc.not_before);
	cr_assert_neq(cert_time(pc.not_after), (time_t)-1, "not_after \"%.31s\"", pc.not_after);
	cr_assert_lt(cert_time(pc.not_before), cert_time(pc.not_after));
	cr_assert_leq(pc.nsan, 16);
	bool found = pc.nsan == 0; /* tls.h does not promise a SAN */
	for (unsigned i = 0; i < pc.nsan; i++) {
		cr_assert_lt(strnlen(pc.san[i], sizeof(pc.san[i])), sizeof(pc.san[i]));
		if (!strcmp(pc.san[i], "peer.example"))
			found = true;
	}
	cr_assert(found, "%u SANs and none is the common name", pc.nsan);
	/* Asking twice gives the same answer. */
	struct cs_tls_peer_cert again;
	cr_assert_eq(cs_tls_peer_cert(s.c, &again), 0);
	cr_assert_str_eq(again.subject.common, pc.subject.common);
	cr_assert_eq(again.nsan, pc.nsan);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, make_self_signed_writes_utctime_dates)
{
	/* tls.h gives cs_tls_peer_cert's dates as "YYMMDDHHMMSSZ as in the
	 * certificate": that holds for a certificate from
	 * cs_tls_make_self_signed only if it encodes its dates as UTCTime,
	 * which RFC 5280 (4.1.2.5) requires for dates before 2050. */
	struct pem p = self_signed("localhost", 30);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
	cr_assert(utc_shaped(pc.not_before), "not_before \"%.31s\" is not YYMMDDHHMMSSZ", pc.not_before);
	cr_assert(utc_shaped(pc.not_after), "not_after \"%.31s\" is not YYMMDDHHMMSSZ", pc.not_after);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, peer_cert_dates_are_the_certificates_own_text)
{
	/* A certificate with UTCTime dates (as RFC 5280 wants before 2050)
	 * gives them back character for character. */
	char b[14], a[14];
	struct pem p = dated_cert("localhost", -7200, 7 * 86400);
	utc_time(-7200, b);
	utc_time(7 * 86400, a);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "localhost");
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
	/* The clock may tick between making the strings and the cert. */
	cr_assert(utc_shaped(pc.not_before), "not_before \"%.31s\"", pc.not_before);
	cr_assert(utc_shaped(pc.not_after), "not_after \"%.31s\"", pc.not_after);
	cr_assert_leq(labs((long)(cert_time(pc.not_before) - cert_time(b))), 2, "%s vs %s", pc.not_before, b);
	cr_assert_leq(labs((long)(cert_time(pc.not_after) - cert_time(a))), 2, "%s vs %s", pc.not_after, a);
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

Test(tls_cert, peer_cert_lists_the_dns_alt_names)
{
	struct pem p = dated_cert_san("cn.example", "alt.example", -3600, 86400);
	cs_tls_ctx *sctx = server_ctx_of(&p, 1), *cctx = client_ctx(false, p.cert);
	struct pair s = connect_ok(cctx, sctx, "alt.example");
	struct cs_tls_peer_cert pc;
	cr_assert_eq(cs_tls_peer_cert(s.c, &pc), 0);
	cr_assert_str_eq(pc.subject.common, "cn.example");
	cr_assert_eq(pc.nsan, 1);
	cr_assert_str_eq(pc.san[0], "alt.example");
	/* The name check goes by the alternative name. */
	cr_assert(cs_tls_trust(s.c, NULL) & CS_TLS_TRUST_NAME, "bits %u", cs_tls_trust(s.c, NULL));
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&p);
}

/* ---- SNI --------------------------------------------------------------- */

Test(tls_cert, sni_picks_the_matching_cert)
{
	struct pem certs[2] = {self_signed("alpha.example", 30), self_signed("beta.example", 30)};
	cs_tls_ctx *sctx = server_ctx_of(certs, 2), *cctx = client_ctx(false, NULL);
	static const struct {
		const char *host, *want;
	} cases[] = {
		{"beta.example", "beta.example"},
		{"alpha.example", "alpha.example"},
		{"BETA.example", "beta.example"},	  /* names are case-blind */
		{"gamma.example", "alpha.example"}, /* no match: the default (first) */
		{NULL, "alpha.example"},		  /* no SNI: the default */
		{"beta.example", "beta.example"},	  /* again, after the others */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pair s = connect_ok(cctx, sctx, cases[i].host);
		char cn[256];
		peer_cn(s.c, cn, sizeof(cn));
		cr_assert_str_eq(cn, cases[i].want, "host %s got the cert for %s", cases[i].host, cn);
		pair_free(&s);
	}
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&certs[0]);
	pem_free(&certs[1]);
}

Test(tls_cert, sni_cert_verifies_with_its_own_key)
{
	/* The SNI-chosen cert must be served with its own key: a verifying
	 * client that trusts both completes each handshake. */
	struct pem certs[3] = {self_signed("alpha.example", 30), self_signed("beta.example", 30),
			       self_signed("gamma.example", 30)};
	cs_tls_ctx *sctx = server_ctx_of(certs, 3);
	struct cs_tls_ctx_opts co = {.server = false, .verify = true};
	cs_tls_ctx *cctx = cs_tls_ctx_new(&co);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(cs_tls_ctx_add_ca_pem(cctx, certs[i].cert, strlen(certs[i].cert)), 1);
	const char *hosts[] = {"gamma.example", "beta.example", "alpha.example"};
	for (int i = 0; i < 3; i++) {
		struct pair s = connect_ok(cctx, sctx, hosts[i]);
		char cn[256];
		peer_cn(s.c, cn, sizeof(cn));
		cr_assert_str_eq(cn, hosts[i]);
		cr_assert_eq(cs_tls_trust(s.c, NULL), CS_TLS_TRUST_CA | CS_TLS_TRUST_NAME | CS_TLS_TRUST_DATES);
		pair_free(&s);
	}
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	for (int i = 0; i < 3; i++)
		pem_free(&certs[i]);
}

Test(tls_cert, sni_matches_a_dns_alt_name)
{
	/* "one of their names": the second cert answers to its DNS
	 * alternative name, which is not its common name. */
	struct pem first = self_signed("first.example", 30);
	struct pem second = dated_cert_san("second.example", "san-only.example", -3600, 86400);
	struct pem certs[2] = {first, second};
	cs_tls_ctx *sctx = server_ctx_of(certs, 2), *cctx = client_ctx(false, NULL);
	struct pair s = connect_ok(cctx, sctx, "san-only.example");
	char cn[256];
	peer_cn(s.c, cn, sizeof(cn));
	cr_assert_str_eq(cn, "second.example");
	pair_free(&s);
	cs_tls_ctx_unref(cctx);
	cs_tls_ctx_unref(sctx);
	pem_free(&first);
	pem_free(&second);
}
