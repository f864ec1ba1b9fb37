/*
 * ba.c - the `ba` table: ba.socket (socket.c), ba.timer (timer.c),
 * ba.clock, and the byte-order helpers ba.socket.n2h/h2n/fn2h/fh2n.
 */
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Whether size bytes from 1-based off fit in len bytes (no overflow). */
static bool fits(lua_Integer off, lua_Integer size, size_t len)
{
	return off >= 1 && (lua_Unsigned)off <= len && (lua_Unsigned)size <= len - (size_t)(off - 1);
}

static uint64_t load_be(const unsigned char *p, lua_Integer size)
{
	uint64_t v = 0;
	for (lua_Integer i = 0; i < size; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Push the low size bytes of v, most significant first. */
static void push_be(lua_State *L, uint64_t v, lua_Integer size)
{
	char buf[8];
	for (lua_Integer i = size - 1; i >= 0; i--, v >>= 8)
		buf[i] = (char)(v & 0xff);
	lua_pushlstring(L, buf, (size_t)size);
}

/* ba.socket.n2h(size, str [, offset=1]): big-endian unsigned integer. */
static int l_n2h(lua_State *L)
{
	lua_Integer size = luaL_checkinteger(L, 1);
	size_t len;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 2, &len);
	lua_Integer off = luaL_optinteger(L, 3, 1);
	if (size < 1 || size > 8)
		return luaL_error(L, "Invalid size");
	if (!fits(off, size, len))
		return luaL_error(L, "Invalid offset");
	lua_pushinteger(L, (lua_Integer)load_be(s + off - 1, size));
	return 1;
}

/* ba.socket.h2n(size, int): size-byte big-endian string. */
static int l_h2n(lua_State *L)
{
	lua_Integer size = luaL_checkinteger(L, 1);
	lua_Unsigned v = (lua_Unsigned)luaL_checkinteger(L, 2);
	if (size < 1 || size > 8)
		return luaL_error(L, "Invalid size");
	push_be(L, v, size);
	return 1;
}

/* ba.socket.fn2h(4|8, str [, offset]): big-endian IEEE float or double. */
static int l_fn2h(lua_State *L)
{
	lua_Integer size = luaL_checkinteger(L, 1);
	size_t len;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 2, &len);
	lua_Integer off = luaL_optinteger(L, 3, 1);
	if (size != 4 && size != 8)
		return luaL_error(L, "Invalid size");
	if (!fits(off, size, len))
		return luaL_error(L, "Invalid offset");
	uint64_t v = load_be(s + off - 1, size);
	if (size == 4) {
		uint32_t u = (uint32_t)v;
		float f;
		memcpy(&f, &u, 4);
		lua_pushnumber(L, f);
	} else {
		double d;
		memcpy(&d, &v, 8);
		lua_pushnumber(L, d);
	}
	return 1;
}

/* ba.socket.fh2n(4|8, number) */
static int l_fh2n(lua_State *L)
{
	lua_Integer size = luaL_checkinteger(L, 1);
	lua_Number n = luaL_checknumber(L, 2);
	uint64_t v;
	if (size == 4) {
		float f = (float)n;
		uint32_t u;
		memcpy(&u, &f, 4);
		v = u;
	} else if (size == 8) {
		memcpy(&v, &n, 8);
	} else {
		return luaL_error(L, "Invalid size");
	}
	push_be(L, v, size);
	return 1;
}

/* ba.clock(): monotonic milliseconds. */
static int l_clock(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	return 1;
}

static const luaL_Reg codec_funcs[] = {
	{"n2h", l_n2h}, {"h2n", l_h2n}, {"fn2h", l_fn2h}, {"fh2n", l_fh2n}, {NULL, NULL},
};

int cs__open_ba(lua_State *L)
{
	lua_newtable(L);
	cs__open_socket(L);
	luaL_setfuncs(L, codec_funcs, 0);
	cs__open_httpc(L); /* ba.socket.http2sock, require"httpc" */
	lua_setfield(L, -2, "socket");
	cs__open_timer(L);
	lua_setfield(L, -2, "timer");
	cs__open_thread(L);
	lua_setfield(L, -2, "thread");
	cs__open_json(L);
	lua_setfield(L, -2, "json");
	cs__open_bytearray(L);
	lua_setfield(L, -2, "bytearray");
	cs__open_codec(L);
	cs__open_tls(L);
	cs__open_io(L);
	lua_pushcfunction(L, l_clock);
	lua_setfield(L, -2, "clock");
	lua_pushstring(L, COSOCKD_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
