/*
 * bytearray.c - ba.bytearray: a fixed-size mutable byte buffer with a
 * movable view window, as BA-API.md §8 describes. Indexes are 1-based and
 * relative to the view; negative ones count from its end. Range errors
 * raise "ByteArray range error: ...".
 */
#include <string.h>

#include "internal.h"

#define CS_BYTEARRAY_MT "_BABYTEARRAY"

struct bytearray {
	size_t size;	    /* allocated bytes */
	size_t first, last; /* the view: bytes[first..last), 0-based */
	unsigned char bytes[];
};

static struct bytearray *check_ba(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, CS_BYTEARRAY_MT);
}

static size_t view_len(const struct bytearray *b)
{
	return b->last - b->first;
}

static struct bytearray *push_new(lua_State *L, size_t size)
{
	struct bytearray *b = lua_newuserdatauv(L, sizeof(*b) + size, 0);
	b->size = size;
	b->first = 0;
	b->last = size;
	luaL_setmetatable(L, CS_BYTEARRAY_MT);
	return b;
}

/* A 1-based, possibly negative index into a view of len bytes, as a
 * 0-based offset; raises when outside [1, len + extra]. */
static size_t view_index(lua_State *L, lua_Integer i, size_t len, size_t extra)
{
	if (i < 0)
		i = (lua_Integer)len + i + 1;
	if (i < 1 || (size_t)i > len + extra)
		luaL_error(L, "ByteArray range error: index scope");
	return (size_t)i - 1;
}

/* The bytes of a string or bytearray argument (its view). */
static const unsigned char *source_bytes(lua_State *L, int idx, size_t *len)
{
	if (lua_type(L, idx) == LUA_TSTRING)
		return (const unsigned char *)lua_tolstring(L, idx, len);
	struct bytearray *b = luaL_testudata(L, idx, CS_BYTEARRAY_MT);
	if (!b)
		luaL_typeerror(L, idx, "string or bytearray");
	*len = view_len(b);
	return b->bytes + b->first;
}

/* string.sub's reading of [i, j] over len bytes: 0-based start in *from,
 * the count returned (0 when empty). */
static size_t sub_range(lua_Integer i, lua_Integer j, size_t len, size_t *from)
{
	if (i < 0)
		i = (lua_Integer)len + i + 1;
	if (j < 0)
		j = (lua_Integer)len + j + 1;
	if (i < 1)
		i = 1;
	if (j > (lua_Integer)len)
		j = (lua_Integer)len;
	*from = (size_t)i - 1;
	return i > j ? 0 : (size_t)(j - i + 1);
}

/* ba.bytearray.create(size | string) */
static int l_create(lua_State *L)
{
	if (lua_type(L, 1) == LUA_TSTRING) {
		size_t n;
		const char *s = lua_tolstring(L, 1, &n);
		luaL_argcheck(L, n > 0, 1, "empty string");
		memcpy(push_new(L, n)->bytes, s, n);
		return 1;
	}
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n > 0 && n <= (lua_Integer)1 << 31, 1, "size must be 1..2^31");
	struct bytearray *b = push_new(L, (size_t)n);
	memset(b->bytes, 0, (size_t)n);
	return 1;
}

/* ba.bytearray.tostring(ba [, i [, j]]): a slice of the view */
static int l_tostring(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	size_t from;
	size_t n = sub_range(luaL_optinteger(L, 2, 1), luaL_optinteger(L, 3, -1), view_len(b), &from);
	lua_pushlstring(L, (const char *)b->bytes + b->first + from, n);
	return 1;
}

/* ba.bytearray.size(ba) -> allocated, viewStart, viewEnd (1-based) */
static int l_size(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	lua_pushinteger(L, (lua_Integer)b->size);
	lua_pushinteger(L, (lua_Integer)b->first + 1);
	lua_pushinteger(L, (lua_Integer)b->last);
	return 3;
}

/* ba.bytearray.setsize(ba, i, j): the view becomes bytes i..j of the
 * allocation (negative: from its end). */
static int l_setsize(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	lua_Integer i = luaL_checkinteger(L, 2), j = luaL_optinteger(L, 3, -1);
	size_t first = view_index(L, i, b->size, 0);
	size_t last = view_index(L, j, b->size, 0) + 1;
	if (first >= last)
		return luaL_error(L, "ByteArray range error: empty view");
	b->first = first;
	b->last = last;
	lua_pushvalue(L, 1);
	return 1;
}

/* ba.bytearray.copy(ba, ix, src [, srcStart [, srcEnd]]) -> bytes that did
 * not fit. Copies src[srcStart..srcEnd] to the view at ix, clamped to what
 * the source holds and the view can take (BA-API §8's compatible reading). */
static int l_copy(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	size_t vlen = view_len(b);
	size_t at = view_index(L, luaL_checkinteger(L, 2), vlen, 0);
	size_t slen;
	const unsigned char *src = source_bytes(L, 3, &slen);
	size_t from;
	size_t want = sub_range(luaL_optinteger(L, 4, 1), luaL_optinteger(L, 5, -1), slen, &from);
	size_t room = vlen - at;
	size_t n = want < room ? want : room;
	memmove(b->bytes + b->first + at, src + from, n);
	lua_pushinteger(L, (lua_Integer)(want - n));
	return 1;
}

/* ba.bytearray.n2h(ba, ix, size) -> big-endian integer of 1..8 bytes */
static int l_n2h(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	lua_Integer size = luaL_checkinteger(L, 3);
	luaL_argcheck(L, size >= 1 && size <= 8, 3, "size must be 1..8");
	size_t at = view_index(L, luaL_checkinteger(L, 2), view_len(b), 0);
	if (at + (size_t)size > view_len(b))
		return luaL_error(L, "ByteArray range error: index scope");
	uint64_t v = 0;
	for (lua_Integer k = 0; k < size; k++)
		v = v << 8 | b->bytes[b->first + at + (size_t)k];
	lua_pushinteger(L, (lua_Integer)v);
	return 1;
}

/* ba.bytearray.h2n(ba, ix, size, int): store big-endian */
static int l_h2n(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	lua_Integer size = luaL_checkinteger(L, 3);
	luaL_argcheck(L, size >= 1 && size <= 8, 3, "size must be 1..8");
	uint64_t v = (uint64_t)luaL_checkinteger(L, 4);
	size_t at = view_index(L, luaL_checkinteger(L, 2), view_len(b), 0);
	if (at + (size_t)size > view_len(b))
		return luaL_error(L, "ByteArray range error: index scope");
	for (lua_Integer k = size - 1; k >= 0; k--) {
		b->bytes[b->first + at + (size_t)k] = (unsigned char)v;
		v >>= 8;
	}
	lua_pushvalue(L, 1);
	return 1;
}

static const luaL_Reg bytearray_funcs[] = {
    {"create", l_create}, {"tostring", l_tostring}, {"size", l_size}, {"setsize", l_setsize},
    {"copy", l_copy},	  {"n2h", l_n2h},	    {"h2n", l_h2n},   {NULL, NULL},
};

/* ba[i]: a byte of the view; ba.name: the library function, as a method */
static int m_index(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	if (lua_type(L, 2) == LUA_TSTRING) {
		lua_pushvalue(L, lua_upvalueindex(1));
		lua_pushvalue(L, 2);
		lua_rawget(L, -2);
		return 1;
	}
	size_t at = view_index(L, luaL_checkinteger(L, 2), view_len(b), 0);
	lua_pushinteger(L, b->bytes[b->first + at]);
	return 1;
}

/* ba[i] = number | boolean | string | table of numbers | bytearray */
static int m_newindex(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	size_t vlen = view_len(b);
	size_t at = view_index(L, luaL_checkinteger(L, 2), vlen, 0);
	unsigned char *p = b->bytes + b->first + at;
	switch (lua_type(L, 3)) {
	case LUA_TNUMBER:
		*p = (unsigned char)luaL_checkinteger(L, 3);
		return 0;
	case LUA_TBOOLEAN:
		*p = lua_toboolean(L, 3) ? 1 : 0;
		return 0;
	case LUA_TTABLE: {
		lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
		if ((size_t)n > vlen - at)
			return luaL_error(L, "ByteArray range error: index scope");
		for (lua_Integer k = 1; k <= n; k++) {
			lua_rawgeti(L, 3, k);
			p[k - 1] = (unsigned char)luaL_checkinteger(L, -1);
			lua_pop(L, 1);
		}
		return 0;
	}
	default: {
		size_t n;
		const unsigned char *src = source_bytes(L, 3, &n);
		if (n > vlen - at)
			return luaL_error(L, "ByteArray range error: index scope");
		memmove(p, src, n);
		return 0;
	}
	}
}

static int m_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)view_len(check_ba(L, 1)));
	return 1;
}

static int m_tostring(lua_State *L)
{
	struct bytearray *b = check_ba(L, 1);
	lua_pushlstring(L, (const char *)b->bytes + b->first, view_len(b));
	return 1;
}

int cs__open_bytearray(lua_State *L)
{
	luaL_newlib(L, bytearray_funcs);
	luaL_newmetatable(L, CS_BYTEARRAY_MT);
	lua_pushvalue(L, -2);
	lua_pushcclosure(L, m_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, m_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushcfunction(L, m_len);
	lua_setfield(L, -2, "__len");
	lua_pushcfunction(L, m_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	return 1;
}

const void *cs__bytearray_view(lua_State *L, int idx, size_t *len)
{
	struct bytearray *b = luaL_testudata(L, idx, CS_BYTEARRAY_MT);
	if (!b)
		return NULL;
	*len = view_len(b);
	return b->bytes + b->first;
}
