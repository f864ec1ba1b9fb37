/*
 * httpc.c - the C half of require"httpc" (BA-API.md §9) and
 * ba.socket.http2sock (§2.7).
 *
 * The client itself is Lua (httpc.lua, embedded in the binary): it speaks
 * HTTP/1.1 over ba.socket, so it runs wherever sockets do. This file hands
 * it what is better done in C - the zero-copy parsers of ws/http.h, the
 * WebSocket accept key, which context the caller runs in, and moving a
 * connection off a cosocket - as a private table passed to the chunk when
 * it loads (scripts never see it). http2sock asks the module for the
 * finished request's socket and puts the WebSocket layer under it.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "internal.h"
#include "wsframe.h"

/* The embedded module (scripts/embed.py). */
extern const char app_httpc[];
extern const size_t app_httpc_len;

#define DECHUNK_MT "cosockd.httpc.dechunk"
/* Upvalue of http2sock and of the loader: the private table. */
#define PRIV_UPVALUE lua_upvalueindex(1)

/* ---- URLs and query strings ------------------------------------------ */

static void set_lstring(lua_State *L, const char *key, const char *s, size_t len)
{
	lua_pushlstring(L, s, len);
	lua_setfield(L, -2, key);
}

/* Push s[0..len) percent-decoded. */
static void push_unescaped(lua_State *L, const char *s, size_t len, bool plus_is_space)
{
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, len ? len : 1);
	size_t n = cs_http_unescape(p, s, len, plus_is_space);
	luaL_pushresultsize(&b, n);
}

/* parseurl(url) -> {scheme, host, port, tls, websocket, path, user,
 * password} | nil. user and password come percent-decoded. */
static int p_parseurl(lua_State *L)
{
	size_t len;
	const char *url = luaL_checklstring(L, 1, &len);
	struct cs_url u;
	if (cs_url_parse(url, len, &u) < 0)
		return 0;
	lua_createtable(L, 0, 9);
	char scheme[8];
	size_t i;
	for (i = 0; i < u.scheme_len && i < sizeof(scheme) - 1; i++)
		scheme[i] = (char)(u.scheme[i] | 0x20);
	set_lstring(L, "scheme", scheme, i);
	set_lstring(L, "host", u.host, u.host_len);
	lua_pushinteger(L, u.port);
	lua_setfield(L, -2, "port");
	lua_pushboolean(L, u.tls);
	lua_setfield(L, -2, "tls");
	lua_pushboolean(L, u.websocket);
	lua_setfield(L, -2, "websocket");
	if (u.path_and_query_len && u.path_and_query[0] == '?') {
		/* "http://host?q": the path is "/" */
		lua_pushliteral(L, "/");
		lua_pushlstring(L, u.path_and_query, u.path_and_query_len);
		lua_concat(L, 2);
		lua_setfield(L, -2, "path");
	} else {
		set_lstring(L, "path", u.path_and_query, u.path_and_query_len);
	}
	if (u.user) {
		push_unescaped(L, u.user, u.user_len, false);
		lua_setfield(L, -2, "user");
		push_unescaped(L, u.password ? u.password : "", u.password_len, false);
		lua_setfield(L, -2, "password");
	}
	return 1;
}

/* parsequery(q) -> table: name -> value, or -> {v1, v2, ...} for a name
 * given more than once; '+' reads as a space. */
static int p_parsequery(lua_State *L)
{
	size_t len, pos = 0, nl, vl;
	const char *q = luaL_optlstring(L, 1, "", &len), *n, *v;
	if (len && *q == '?') {
		q++;
		len--;
	}
	lua_newtable(L);
	while (cs_http_next_param(q, len, &pos, &n, &nl, &v, &vl)) {
		push_unescaped(L, n, nl, true);
		push_unescaped(L, v, vl, true);
		lua_pushvalue(L, -2);
		int t = lua_rawget(L, -4);
		if (t == LUA_TNIL) {
			lua_pop(L, 1);
			lua_rawset(L, -3);
			continue;
		}
		if (t == LUA_TSTRING) { /* second value: make a list */
			lua_createtable(L, 2, 0);
			lua_insert(L, -2);
			lua_rawseti(L, -2, 1);
			lua_pushvalue(L, -3);
			lua_pushvalue(L, -2);
			lua_rawset(L, -6);
		}
		lua_insert(L, -2); /* name, list, value */
		lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
		lua_pop(L, 2);
	}
	return 1;
}

/* ---- responses --------------------------------------------------------- */

/* parseresponse(buf) ->
 *   nothing: the head is not complete yet;
 *   false: it is not a valid response head (or is over 64 KiB);
 *   status, headLength, {name1, value1, name2, value2, ...},
 *   contentLength (-1: none), chunked, keepAlive, reason. */
static int p_parseresponse(lua_State *L)
{
	size_t len;
	const char *buf = luaL_checklstring(L, 1, &len);
	struct cs_http_response *r = malloc(sizeof(*r));
	if (!r)
		return luaL_error(L, "httpc: out of memory");
	struct cs_http_limits lim = {.max_headers = CS_HTTP_MAX_HEADERS};
	int n = cs_http_parse_response(buf, len, &lim, r);
	if (n == CS_HTTP_PARTIAL) {
		free(r);
		return 0;
	}
	if (n < 0) {
		free(r);
		lua_pushboolean(L, 0);
		return 1;
	}
	/* nothing below raises before r is freed: the stack has room */
	lua_pushinteger(L, r->status);
	lua_pushinteger(L, n);
	lua_createtable(L, (int)r->num_headers * 2, 0);
	for (unsigned i = 0; i < r->num_headers; i++) {
		lua_pushlstring(L, r->headers[i].name, r->headers[i].name_len);
		lua_rawseti(L, -2, 2 * i + 1);
		lua_pushlstring(L, r->headers[i].value, r->headers[i].value_len);
		lua_rawseti(L, -2, 2 * i + 2);
	}
	lua_pushinteger(L, r->framing.content_length);
	lua_pushboolean(L, r->framing.chunked);
	lua_pushboolean(L, r->framing.keep_alive);
	lua_pushlstring(L, r->reason, r->reason_len);
	free(r);
	return 7;
}

/* dechunker() -> a decoder for one chunked body */
static int p_dechunker(lua_State *L)
{
	struct cs_http_chunked *d = lua_newuserdatauv(L, sizeof(*d), 0);
	cs_http_chunked_init(d, 0);
	luaL_setmetatable(L, DECHUNK_MT);
	return 1;
}

/* dechunk(decoder, bytes) -> body bytes, nil (more to come) |
 * body bytes, rest after the body (the end) | false: malformed. */
static int p_dechunk(lua_State *L)
{
	struct cs_http_chunked *d = luaL_checkudata(L, 1, DECHUNK_MT);
	size_t len;
	const char *in = luaL_checklstring(L, 2, &len);
	char *buf = lua_newuserdatauv(L, len ? len : 1, 0); /* scratch */
	memcpy(buf, in, len);
	size_t n = len;
	ssize_t r = cs_http_decode_chunked(d, buf, &n);
	if (r == CS_HTTP_PARTIAL) {
		lua_pushlstring(L, buf, n);
		lua_pushnil(L);
		return 2;
	}
	if (r < 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_pushlstring(L, buf, n);
	lua_pushlstring(L, buf + n, (size_t)r);
	return 2;
}

/* ---- WebSocket and sockets --------------------------------------------- */

/* acceptkey(key) -> the Sec-WebSocket-Accept a server must answer with */
static int p_acceptkey(lua_State *L)
{
	size_t len;
	const char *key = luaL_checklstring(L, 1, &len);
	char out[29];
	if (cs_ws_accept_key(key, len, out) < 0)
		return 0;
	lua_pushstring(L, out);
	return 1;
}

/* context() -> "thread" (a pool thread: ba.thread job or page; calls
 * block), "cosocket" (calls yield) or "main" (the dispatcher thread
 * outside a cosocket: top-level code, timers; nothing may wait). */
static int p_context(lua_State *L)
{
	lua_pushstring(L, cs__self ? "thread" : cs__current(L) ? "cosocket" : "main");
	return 1;
}

/* detach(sock) -> a new socket object that is no cosocket, holding the
 * connection sock (the running cosocket's own socket) had; sock is left
 * closed, free to connect again. For http2sock, whose result is always a
 * socket that waits for sock:event(). */
static int p_detach(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	if (!s->conn || s->kind != CS_SOCK_TCP)
		return cs__fail(L, "invalidsocketcon");
	cs__sock_move(L, s);
	return 1;
}

/* On the loop thread, with (sock, leftover) as the only values: put the
 * client WebSocket layer under sock -> sock | nil, "malloc". */
static int ws_attach(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	size_t len;
	const char *left = luaL_checklstring(L, 2, &len);
	if (cs__ws_attach(s, false, left, len, 0) < 0)
		return cs__fail(L, "malloc");
	lua_settop(L, 1);
	return 1;
}

/* take()'s results are on top: sock, leftover, websocket | nil, err. */
static int http2sock_done(lua_State *L, int status, lua_KContext ctx)
{
	(void)status, (void)ctx;
	if (lua_isnil(L, -3)) {
		lua_settop(L, 3);
		return 2;
	}
	bool ws = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (!ws)
		return 2;
	lua_remove(L, 1); /* only sock, leftover stay */
	return cs__on_loop(L, ws_attach);
}

/* sethost(sock, host): the name a TLS upgrade of sock sends (SNI) and
 * checks, when sock was connected to a proxy instead of host. */
static int p_sethost(lua_State *L)
{
	cs_sock *s = cs__check_sock(L, 1);
	char *host = strdup(luaL_checkstring(L, 2));
	if (!host)
		return luaL_error(L, "httpc: out of memory");
	free(s->host);
	s->host = host;
	return 0;
}

/* ba.socket.http2sock(h | {raw = h}) -> sock [, leftover] | nil, err.
 * The module's take() (which may wait for the response head, so it is
 * called yieldably) checks the request and detaches its socket; a
 * WebSocket gets its frame layer here, fed the bytes already read. */
static int l_http2sock(lua_State *L)
{
	lua_settop(L, 1);
	if (lua_getfield(L, PRIV_UPVALUE, "take") != LUA_TFUNCTION) {
		/* the module never loaded: no httpc object can exist */
		return cs__fail(L, "invalidsocketcon");
	}
	lua_pushvalue(L, 1);
	lua_callk(L, 1, 3, 0, http2sock_done);
	return http2sock_done(L, LUA_OK, 0);
}

/* ---- opening ------------------------------------------------------------ */

/* package.preload.httpc: run the embedded chunk with the private table. */
static int load_httpc(lua_State *L)
{
	if (luaL_loadbuffer(L, app_httpc, app_httpc_len, "=httpc") != LUA_OK)
		return lua_error(L);
	lua_pushvalue(L, PRIV_UPVALUE);
	lua_call(L, 1, 1);
	return 1;
}

void cs__open_httpc(lua_State *L)
{
	static const luaL_Reg priv[] = {
	    {"parseurl", p_parseurl},
	    {"parsequery", p_parsequery},
	    {"parseresponse", p_parseresponse},
	    {"dechunker", p_dechunker},
	    {"dechunk", p_dechunk},
	    {"acceptkey", p_acceptkey},
	    {"context", p_context},
	    {NULL, NULL},
	};
	static const luaL_Reg priv_on_loop[] = {
	    {"detach", p_detach},
	    {"sethost", p_sethost},
	    {NULL, NULL},
	};
	luaL_newmetatable(L, DECHUNK_MT);
	lua_pop(L, 1);

	lua_createtable(L, 0, 10);
	luaL_setfuncs(L, priv, 0);
	cs__setfuncs_on_loop(L, priv_on_loop);

	lua_pushvalue(L, -1);
	lua_pushcclosure(L, l_http2sock, 1);
	lua_setfield(L, -3, "http2sock"); /* into ba.socket, below */

	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushvalue(L, -2);
	lua_pushcclosure(L, load_httpc, 1);
	lua_setfield(L, -2, "httpc");
	lua_pop(L, 2);
}
