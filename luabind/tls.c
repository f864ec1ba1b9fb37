/*
 * tls.c - the original product's TLS objects over tls/ (BA-API.md §10),
 * and ba.tls, their clearly named equivalents for new code:
 *
 *   ba.create.sharkcert([io,] cert, key [, password]) -> cert | nil, err
 *   ba.create.certstore() -> store;  store:addcert(pem | io, name)
 *   ba.create.sharkssl([store | pem], [op]) -> SharkSSL; :addcert(cert)
 *   ba.sharkclient() -> the shared client object (system CA store)
 *   ba.tls.server{cert=, key=, password=, alpn=, handshake_timeout=}
 *   ba.tls.client{ca=, verify=, alpn=, cachesize=, handshake_timeout=}
 *
 * A SharkSSL object owns one reference to its cs_tls_ctx; every socket
 * using it takes another, so collecting the object never pulls a context
 * from under a live connection. Nothing here touches dispatch/, so these
 * run on whichever thread holds the VM lock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tls.h"

#define CERT_MT "SharkCert"
#define STORE_MT "SharkCertStore"
#define DEFAULT_HANDSHAKE_MS 10000
#define SHARKCLIENT_KEY "cosockd.sharkclient"

struct cs_certstore {
	char *pem;
	size_t len;
	unsigned count;
};

struct cs_shark *cs__to_shark(lua_State *L, int idx) { return luaL_testudata(L, idx, CS_SHARK_MT); }

/* PEM text as given, or the contents of the file it names. */
static char *pem_or_file(lua_State *L, const char *s, size_t slen, size_t *len, const char **err)
{
	if (memmem(s, slen, "-----BEGIN", 10)) {
		char *p = malloc(slen + 1);
		if (!p) {
			*err = "malloc";
			return NULL;
		}
		memcpy(p, s, slen);
		p[slen] = '\0';
		*len = slen;
		return p;
	}
	return cs__io_read(L, 0, s, len, err);
}

static void free_secret(char *p, size_t len)
{
	if (p)
		explicit_bzero(p, len);
	free(p);
}

/* ---- certificates ------------------------------------------------------ */

static int push_cert(lua_State *L, const char *cert, size_t clen, const char *key, size_t klen, const char *pw)
{
	const char *err;
	cs_tls_cert *c = cs_tls_cert_new(cert, clen, key, klen, pw, &err);
	if (!c)
		return cs__fail(L, err);
	cs_tls_cert **ud = lua_newuserdatauv(L, sizeof(*ud), 0);
	*ud = c;
	luaL_setmetatable(L, CERT_MT);
	return 1;
}

/* ba.create.sharkcert([io,] cert, key [, password]) */
static int l_sharkcert(lua_State *L)
{
	int a = cs__is_io(L, 1) ? 2 : 1;
	size_t clen, klen;
	const char *cert = luaL_checklstring(L, a, &clen), *key = luaL_checklstring(L, a + 1, &klen);
	const char *pw = luaL_optstring(L, a + 2, NULL);
	if (a == 1)
		return push_cert(L, cert, clen, key, klen, pw);
	const char *err;
	char *cbuf = cs__io_read(L, 1, cert, &clen, &err), *kbuf = NULL;
	if (!cbuf)
		return cs__fail_why(L, err, cert);
	if (!(kbuf = cs__io_read(L, 1, key, &klen, &err))) {
		free(cbuf);
		return cs__fail_why(L, err, key);
	}
	int n = push_cert(L, cbuf, clen, kbuf, klen, pw);
	free(cbuf);
	free_secret(kbuf, klen);
	return n;
}

static cs_tls_cert *check_cert(lua_State *L, int idx)
{
	return *(cs_tls_cert **)luaL_checkudata(L, idx, CERT_MT);
}

static int cert_gc(lua_State *L)
{
	cs_tls_cert **ud = luaL_checkudata(L, 1, CERT_MT);
	cs_tls_cert_free(*ud);
	*ud = NULL;
	return 0;
}

static int cert_tostring(lua_State *L)
{
	cs_tls_cert *c = check_cert(L, 1);
	lua_pushfstring(L, "SharkCert: %s", c ? cs_tls_cert_name(c) : "(freed)");
	return 1;
}

/* ---- certificate stores ------------------------------------------------ */

static int l_certstore(lua_State *L)
{
	struct cs_certstore *st = lua_newuserdatauv(L, sizeof(*st), 0);
	memset(st, 0, sizeof(*st));
	luaL_setmetatable(L, STORE_MT);
	return 1;
}

/* Count the certificates in pem that wolfSSL accepts as CAs; -1: none. */
static int check_ca_pem(const char *pem, size_t len)
{
	cs_tls_ctx *probe = cs_tls_ctx_new(&(struct cs_tls_ctx_opts){0});
	int n = probe ? cs_tls_ctx_add_ca_pem(probe, pem, len) : -1;
	cs_tls_ctx_unref(probe);
	return n;
}

/* store:addcert(pem) or store:addcert(io, name) -> count | nil, err */
static int store_addcert(lua_State *L)
{
	struct cs_certstore *st = luaL_checkudata(L, 1, STORE_MT);
	size_t len;
	const char *err = NULL;
	char *pem;
	if (cs__is_io(L, 2)) {
		pem = cs__io_read(L, 2, luaL_checkstring(L, 3), &len, &err);
	} else {
		const char *s = luaL_checklstring(L, 2, &len);
		pem = pem_or_file(L, s, len, &len, &err);
	}
	if (!pem)
		return cs__fail(L, err);
	int n = check_ca_pem(pem, len);
	if (n < 0) {
		free(pem);
		return cs__fail(L, "pem_cert_parse_error");
	}
	char *all = realloc(st->pem, st->len + len + 2);
	if (!all) {
		free(pem);
		return cs__fail(L, "malloc");
	}
	memcpy(all + st->len, pem, len);
	st->len += len;
	all[st->len++] = '\n';
	all[st->len] = '\0';
	st->pem = all;
	st->count += (unsigned)n;
	free(pem);
	lua_pushinteger(L, n);
	return 1;
}

static int store_gc(lua_State *L)
{
	struct cs_certstore *st = luaL_checkudata(L, 1, STORE_MT);
	free(st->pem);
	st->pem = NULL;
	st->len = 0;
	return 0;
}

/* ---- SharkSSL objects --------------------------------------------------- */

struct shark_opts {
	struct cs_tls_ctx_opts ctx;
	lua_Integer handshake_ms;
	const char *alpn; /* client default */
};

/* The option table at idx (0: none); role < 0 reads op.server, otherwise
 * it is the role (1 server, 0 client). */
static void read_shark_opts(lua_State *L, int idx, int role, struct shark_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->handshake_ms = DEFAULT_HANDSHAKE_MS;
	o->ctx.server = role > 0;
	if (idx == 0 || lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_getfield(L, idx, "server");
	if (role < 0)
		o->ctx.server = lua_toboolean(L, -1);
	lua_getfield(L, idx, "verify");
	o->ctx.verify = lua_toboolean(L, -1);
	if (lua_getfield(L, idx, "cachesize") == LUA_TNUMBER)
		o->ctx.cache_size = (uint32_t)luaL_checkinteger(L, -1);
	if (lua_getfield(L, idx, "handshake_timeout") == LUA_TNUMBER)
		o->handshake_ms = luaL_checkinteger(L, -1);
	if (lua_getfield(L, idx, "alpn") == LUA_TSTRING) {
		if (o->ctx.server)
			o->ctx.alpn = lua_tostring(L, -1);
		else
			o->alpn = lua_tostring(L, -1);
	}
	lua_pop(L, 5); /* the option table stays an argument: strings stay valid */
	luaL_argcheck(L, o->handshake_ms > 0 && o->handshake_ms <= 3600000, idx,
		      "handshake_timeout must be 1..3600000 ms");
}

/* Push a new SharkSSL object for o; raises on out of memory. */
static struct cs_shark *push_shark(lua_State *L, const struct shark_opts *o)
{
	struct cs_shark *sh = lua_newuserdatauv(L, sizeof(*sh), 0);
	memset(sh, 0, sizeof(*sh));
	luaL_setmetatable(L, CS_SHARK_MT);
	sh->server = o->ctx.server;
	sh->handshake_ms = (uint32_t)o->handshake_ms;
	if (o->alpn && !(sh->alpn = strdup(o->alpn)))
		luaL_error(L, "out of memory");
	if (!(sh->ctx = cs_tls_ctx_new(&o->ctx)))
		luaL_error(L, "out of memory");
	return sh;
}

/* ba.create.sharkssl([store | pem], [op]) */
static int l_sharkssl(lua_State *L)
{
	lua_settop(L, 2);
	struct shark_opts o;
	read_shark_opts(L, 2, -1, &o);
	struct cs_shark *sh = push_shark(L, &o);
	struct cs_certstore *st = luaL_testudata(L, 1, STORE_MT);
	size_t len;
	if (st && st->pem) {
		cs_tls_ctx_add_ca_pem(sh->ctx, st->pem, st->len);
	} else if (lua_type(L, 1) == LUA_TSTRING) {
		const char *pem = lua_tolstring(L, 1, &len);
		if (cs_tls_ctx_add_ca_pem(sh->ctx, pem, len) < 0)
			return cs__fail(L, "pem_cert_parse_error");
	} else if (!st && !lua_isnoneornil(L, 1)) {
		return luaL_argerror(L, 1, "certificate store or PEM text expected");
	}
	return 1;
}

static struct cs_shark *check_shark(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, CS_SHARK_MT);
}

/* shark:addcert(cert) -> true | false */
static int shark_addcert(lua_State *L)
{
	struct cs_shark *sh = check_shark(L, 1);
	cs_tls_cert *c = check_cert(L, 2);
	lua_pushboolean(L, c && cs_tls_ctx_add_cert(sh->ctx, c) == 0);
	return 1;
}

static int shark_gc(lua_State *L)
{
	struct cs_shark *sh = check_shark(L, 1);
	cs_tls_ctx_unref(sh->ctx);
	sh->ctx = NULL;
	free(sh->alpn);
	sh->alpn = NULL;
	return 0;
}

static int shark_tostring(lua_State *L)
{
	struct cs_shark *sh = check_shark(L, 1);
	lua_pushfstring(L, "SharkSSL: %s, %d certificate(s)", sh->server ? "server" : "client",
			sh->ctx ? (int)cs_tls_ctx_certs(sh->ctx) : 0);
	return 1;
}

/* ba.sharkclient(): made once per VM, trusting the system's CAs. */
static int l_sharkclient(lua_State *L)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, SHARKCLIENT_KEY) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	struct shark_opts o;
	read_shark_opts(L, 0, 0, &o);
	o.ctx.cache_size = 40;
	struct cs_shark *sh = push_shark(L, &o);
	if (cs_tls_ctx_add_system_ca(sh->ctx) < 0)
		cs__log(cs__vm(L), CS_LOG_WARNING, "tls: cannot load the system CA store; no server will be trusted");
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, SHARKCLIENT_KEY);
	return 1;
}

/* ---- ba.tls ------------------------------------------------------------- */

/* A string field of the table at 1, or NULL. */
static const char *opt_string(lua_State *L, const char *key, size_t *len)
{
	const char *s = NULL;
	if (lua_getfield(L, 1, key) == LUA_TSTRING)
		s = lua_tolstring(L, -1, len);
	else if (!lua_isnil(L, -1))
		luaL_error(L, "ba.tls: '%s' must be a string", key);
	lua_pop(L, 1); /* still referenced by the table */
	return s;
}

/* ba.tls.server{cert=, key=, password=, alpn=, handshake_timeout=} */
static int l_tls_server(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	size_t cl = 0, kl = 0, clen = 0, klen = 0;
	const char *cert = opt_string(L, "cert", &cl), *key = opt_string(L, "key", &kl);
	const char *pw = opt_string(L, "password", NULL);
	if (!cert || !key)
		return luaL_error(L, "ba.tls.server: 'cert' and 'key' are required (PEM text or file names)");
	struct shark_opts o;
	read_shark_opts(L, 1, 1, &o);
	const char *err;
	char *cbuf = pem_or_file(L, cert, cl, &clen, &err);
	if (!cbuf)
		return cs__fail_why(L, err, cert);
	char *kbuf = pem_or_file(L, key, kl, &klen, &err);
	if (!kbuf) {
		free(cbuf);
		return cs__fail_why(L, err, key);
	}
	cs_tls_cert *c = cs_tls_cert_new(cbuf, clen, kbuf, klen, pw, &err);
	free(cbuf);
	free_secret(kbuf, klen);
	if (!c)
		return cs__fail(L, err);
	struct cs_shark *sh = push_shark(L, &o);
	int r = cs_tls_ctx_add_cert(sh->ctx, c);
	cs_tls_cert_free(c);
	if (r < 0)
		return cs__fail(L, "malloc");
	return 1;
}

/* ba.tls.client{ca=, verify=, alpn=, cachesize=, handshake_timeout=}
 * ca: nil = the system's CAs; false = none; a certstore; PEM or a file. */
static int l_tls_client(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	struct shark_opts o;
	read_shark_opts(L, 1, 0, &o);
	int ca = lua_getfield(L, 1, "ca"); /* at 2 */
	struct cs_shark *sh = push_shark(L, &o);
	if (ca == LUA_TNIL) {
		if (cs_tls_ctx_add_system_ca(sh->ctx) < 0)
			return cs__fail(L, "cannot load the system CA store");
	} else if (ca == LUA_TSTRING) {
		size_t len;
		const char *s = lua_tolstring(L, 2, &len), *err;
		char *pem = pem_or_file(L, s, len, &len, &err);
		if (!pem)
			return cs__fail_why(L, err, s);
		int n = cs_tls_ctx_add_ca_pem(sh->ctx, pem, len);
		free(pem);
		if (n < 0)
			return cs__fail(L, "pem_cert_parse_error");
	} else if (luaL_testudata(L, 2, STORE_MT)) {
		struct cs_certstore *st = lua_touserdata(L, 2);
		if (st->pem)
			cs_tls_ctx_add_ca_pem(sh->ctx, st->pem, st->len);
	} else if (!(ca == LUA_TBOOLEAN && !lua_toboolean(L, 2))) {
		return luaL_error(L, "ba.tls.client: 'ca' must be PEM text, a file name, a certstore or false");
	}
	return 1;
}

void cs__open_tls(lua_State *L)
{
	static const luaL_Reg shark_methods[] = {{"addcert", shark_addcert}, {NULL, NULL}};
	static const luaL_Reg store_methods[] = {{"addcert", store_addcert}, {NULL, NULL}};
	static const luaL_Reg create[] = {
		{"sharkssl", l_sharkssl}, {"sharkcert", l_sharkcert}, {"certstore", l_certstore}, {NULL, NULL},
	};
	static const luaL_Reg tls[] = {{"server", l_tls_server}, {"client", l_tls_client}, {NULL, NULL}};

	luaL_newmetatable(L, CS_SHARK_MT);
	luaL_newlib(L, shark_methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, shark_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, shark_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	luaL_newmetatable(L, STORE_MT);
	luaL_newlib(L, store_methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, store_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	luaL_newmetatable(L, CERT_MT);
	lua_pushcfunction(L, cert_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, cert_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	/* ba.create may hold other constructors later: extend, do not replace */
	if (lua_getfield(L, -1, "create") != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "create");
	}
	luaL_setfuncs(L, create, 0);
	lua_pop(L, 1);
	luaL_newlib(L, tls);
	lua_setfield(L, -2, "tls");
	lua_pushcfunction(L, l_sharkclient);
	lua_setfield(L, -2, "sharkclient");
}
