/*
 * codec.c - the small ba.* helpers socket code leans on: random numbers from
 * wolfSSL's DRBG (ba.rnd, ba.rnds, ba.rndbs, ba.rndseed) and text encodings
 * (ba.b64encode, ba.b64decode, ba.b64urlencode, ba.urlencode).
 *
 * Bad arguments raise; a b64 string that does not decode returns nil.
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- random ------------------------------------------------------------- */

/* One DRBG per VM, created on first use; calls are serialised by the VM
 * lock. */
static WC_RNG *vm_rng(lua_State *L)
{
	cs_vm *vm = cs__vm(L);
	if (!vm->rng) {
		WC_RNG *rng = malloc(sizeof(*rng));
		if (!rng || wc_InitRng(rng) != 0) {
			free(rng);
			luaL_error(L, "random: cannot initialise wolfSSL's RNG");
		}
		vm->rng = rng;
	}
	return vm->rng;
}

void cs__rng_free(cs_vm *vm)
{
	if (vm->rng) {
		wc_FreeRng(vm->rng);
		free(vm->rng);
		vm->rng = NULL;
	}
}

static void random_bytes(lua_State *L, void *buf, size_t len)
{
	if (wc_RNG_GenerateBlock(vm_rng(L), buf, (word32)len) != 0)
		luaL_error(L, "random: wolfSSL's RNG failed");
}

static uint64_t random_u64(lua_State *L)
{
	uint64_t v;
	random_bytes(L, &v, sizeof(v));
	return v;
}

/* Uniform in [0, n) without modulo bias; n > 0. */
static uint64_t random_below(lua_State *L, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t v;
	do
		v = random_u64(L);
	while (v >= limit);
	return v % n;
}

/* ba.rnd() -> [0, 2^31); ba.rnd(m) -> [1, m]; ba.rnd(l, u) -> [l, u] */
static int l_rnd(lua_State *L)
{
	lua_Integer lo, hi;
	switch (lua_gettop(L)) {
	case 0:
		lo = 0;
		hi = 0x7fffffff;
		break;
	case 1:
		lo = 1;
		hi = luaL_checkinteger(L, 1);
		break;
	default:
		lo = luaL_checkinteger(L, 1);
		hi = luaL_checkinteger(L, 2);
		break;
	}
	luaL_argcheck(L, lo <= hi, lua_gettop(L), "interval is empty");
	uint64_t span = (uint64_t)hi - (uint64_t)lo;
	uint64_t v = span == UINT64_MAX ? random_u64(L) : random_below(L, span + 1);
	lua_pushinteger(L, (lua_Integer)((uint64_t)lo + v));
	return 1;
}

/* ba.rnds(n): a random integer n*4 bits wide, with the original's odd
 * table: 4 -> 32 bits and 8 -> 64 bits; anything else gives 0. */
static int l_rnds(lua_State *L)
{
	static const unsigned bits[] = {0, 4, 8, 12, 32, 20, 24, 28, 64};
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned w = n >= 1 && n <= 8 ? bits[n] : 0;
	uint64_t v = w ? random_u64(L) : 0;
	if (w && w < 64)
		v &= (UINT64_C(1) << w) - 1;
	lua_pushinteger(L, (lua_Integer)v);
	return 1;
}

/* ba.rndbs(n) -> n random bytes */
static int l_rndbs(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n >= 0 && n <= (1 << 24), 1, "length out of range (0..16 MiB)");
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, (size_t)n);
	random_bytes(L, p, (size_t)n);
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/* ba.rndseed(x): the DRBG seeds itself from the kernel; a script's seed is
 * accepted and ignored, so sequences are never predictable. */
static int l_rndseed(lua_State *L)
{
	(void)L;
	return 0;
}

/* ---- base64 -------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_encode(lua_State *L, const char *alphabet, bool pad)
{
	size_t n;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	char *o = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4);
	size_t k = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		o[k++] = alphabet[v >> 18];
		o[k++] = alphabet[(v >> 12) & 63];
		o[k++] = alphabet[(v >> 6) & 63];
		o[k++] = alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		o[k++] = alphabet[v >> 18];
		o[k++] = alphabet[(v >> 12) & 63];
		if (i + 1 < n)
			o[k++] = alphabet[(v >> 6) & 63];
		else if (pad)
			o[k++] = '=';
		if (pad)
			o[k++] = '=';
	}
	luaL_pushresultsize(&b, k);
	return 1;
}

static int l_b64encode(lua_State *L)
{
	return b64_encode(L, B64, true);
}
static int l_b64urlencode(lua_State *L)
{
	return b64_encode(L, B64URL, false);
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* ba.b64decode(s): standard or URL alphabet, padding optional, white space
 * ignored. nil when s is not base64. */
static int l_b64decode(lua_State *L)
{
	size_t n;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	char *o = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
	size_t k = 0;
	uint32_t acc = 0;
	int bits = 0, pads = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pads++;
			continue;
		}
		int v = b64_value(c);
		if (v < 0 || pads)
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[k++] = (char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (bits >= 6 || pads > 2 || acc != 0)
		goto bad;
	luaL_pushresultsize(&b, k);
	return 1;
bad:
	luaL_pushresultsize(&b, 0);
	lua_pushnil(L);
	return 1;
}

/* ---- urlencode ------------------------------------------------------------ */

static void add_escaped(luaL_Buffer *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~') {
			luaL_addchar(b, (char)c);
		} else {
			luaL_addchar(b, '%');
			luaL_addchar(b, hex[c >> 4]);
			luaL_addchar(b, hex[c & 15]);
		}
	}
}

/* Push "escaped(key)=escaped(tostring(value))" for the pair at -2, -1. */
static void push_pair(lua_State *L)
{
	luaL_Buffer b;
	size_t kn, vn;
	lua_pushvalue(L, -2);
	const char *k = luaL_tolstring(L, -1, &kn);
	const char *v = luaL_tolstring(L, -3, &vn);
	luaL_buffinit(L, &b);
	add_escaped(&b, k, kn);
	luaL_addchar(&b, '=');
	add_escaped(&b, v, vn);
	luaL_pushresult(&b);
	lua_replace(L, -4); /* over the key copy; drop the two tostrings */
	lua_pop(L, 2);
}

/* ba.urlencode(string) -> RFC 3986 percent-encoding (only unreserved
 * characters stay); ba.urlencode(table) -> "k=v&k2=v2", pairs sorted. */
static int l_urlencode(lua_State *L)
{
	if (lua_type(L, 1) != LUA_TTABLE) {
		size_t n;
		const char *s = luaL_checklstring(L, 1, &n);
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		add_escaped(&b, s, n);
		luaL_pushresult(&b);
		return 1;
	}
	lua_settop(L, 1);
	lua_newtable(L); /* 2: the encoded pairs */
	int n = 0;
	for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
		int kt = lua_type(L, -2);
		if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
			return luaL_error(L, "ba.urlencode: keys must be strings or numbers");
		push_pair(L);
		lua_rawseti(L, 2, ++n);
	}
	lua_getglobal(L, "table");
	lua_getfield(L, -1, "sort");
	lua_pushvalue(L, 2);
	lua_call(L, 1, 0);
	lua_getfield(L, -1, "concat");
	lua_pushvalue(L, 2);
	lua_pushliteral(L, "&");
	lua_call(L, 2, 1);
	return 1;
}

static const luaL_Reg codec_funcs[] = {
    {"rnd", l_rnd},
    {"rnds", l_rnds},
    {"rndbs", l_rndbs},
    {"rndseed", l_rndseed},
    {"b64encode", l_b64encode},
    {"b64decode", l_b64decode},
    {"b64urlencode", l_b64urlencode},
    {"urlencode", l_urlencode},
    {NULL, NULL},
};

void cs__open_codec(lua_State *L)
{
	luaL_setfuncs(L, codec_funcs, 0);
}
