/*
 * json.c - ba.json.encode, ba.json.decode and ba.json.null over yajl.
 *
 * Decoding builds Lua values straight from yajl's callbacks (no tree in
 * between); JSON null becomes ba.json.null, a unique light userdata, so
 * arrays keep their length. Encoding writes a table with keys 1..n and no
 * others as an array, any other table as an object (string or number
 * keys), and the empty table as {}. Errors in the data are returned as
 * nil, message; wrong argument types raise.
 */
#include <math.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "internal.h"

#define MAX_DEPTH 256

static const char NULL_KEY = 'n'; /* &NULL_KEY is ba.json.null */

/* ---- decode ------------------------------------------------------------- */

struct frame {
	bool array;
	lua_Integer next; /* array: index of the next element */
};

struct decoder {
	lua_State *L;
	int depth;
	const char *err; /* set by a callback that stops the parse */
	struct frame frames[MAX_DEPTH];
};

/* A value is on top of the stack: store it in the open container, or leave
 * it as the result at depth 0. Below a map's value sits its key. */
static int store(struct decoder *d)
{
	lua_State *L = d->L;
	if (d->depth == 0)
		return 1;
	struct frame *f = &d->frames[d->depth - 1];
	if (f->array)
		lua_rawseti(L, -2, f->next++);
	else
		lua_rawset(L, -3);
	return 1;
}

static int room(struct decoder *d)
{
	if (!lua_checkstack(d->L, 4)) {
		d->err = "too deeply nested";
		return 0;
	}
	return 1;
}

static int on_null(void *ctx)
{
	struct decoder *d = ctx;
	lua_pushlightuserdata(d->L, (void *)&NULL_KEY);
	return room(d) && store(d);
}

static int on_boolean(void *ctx, int v)
{
	struct decoder *d = ctx;
	lua_pushboolean(d->L, v);
	return room(d) && store(d);
}

/* Integers stay integers when they fit; everything else is a float. */
static int on_number(void *ctx, const char *s, size_t n)
{
	struct decoder *d = ctx;
	char buf[64];
	if (n >= sizeof(buf)) {
		d->err = "number too long";
		return 0;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	if (lua_stringtonumber(d->L, buf) == 0) {
		d->err = "bad number";
		return 0;
	}
	return room(d) && store(d);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
	struct decoder *d = ctx;
	lua_pushlstring(d->L, (const char *)s, n);
	return room(d) && store(d);
}

static int open_container(struct decoder *d, bool array)
{
	if (d->depth == MAX_DEPTH || !room(d)) {
		d->err = "too deeply nested";
		return 0;
	}
	lua_newtable(d->L);
	d->frames[d->depth].array = array;
	d->frames[d->depth].next = 1;
	d->depth++;
	return 1;
}

static int on_start_map(void *ctx)
{
	return open_container(ctx, false);
}
static int on_start_array(void *ctx)
{
	return open_container(ctx, true);
}

static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
	struct decoder *d = ctx;
	lua_pushlstring(d->L, (const char *)s, n);
	return room(d);
}

static int on_end(void *ctx)
{
	struct decoder *d = ctx;
	d->depth--;
	return store(d);
}

static const yajl_callbacks decode_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

/* ba.json.decode(text) -> value | nil, message */
static int l_decode(lua_State *L)
{
	size_t n;
	const unsigned char *text = (const unsigned char *)luaL_checklstring(L, 1, &n);
	lua_settop(L, 1);
	struct decoder *d = lua_newuserdatauv(L, sizeof(*d), 0); /* 2: freed by the GC */
	d->L = L;
	d->depth = 0;
	d->err = NULL;
	yajl_handle h = yajl_alloc(&decode_callbacks, NULL, d);
	if (!h)
		return luaL_error(L, "ba.json.decode: out of memory");
	yajl_status st = yajl_parse(h, text, n);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st != yajl_status_ok) {
		lua_settop(L, 2);
		lua_pushnil(L);
		if (d->err) {
			lua_pushstring(L, d->err);
		} else {
			unsigned char *msg = yajl_get_error(h, 0, text, n);
			size_t len = strlen((const char *)msg);
			while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
				len--;
			lua_pushlstring(L, (const char *)msg, len);
			yajl_free_error(h, msg);
		}
		yajl_free(h);
		return 2;
	}
	yajl_free(h);
	if (lua_gettop(L) != 3)
		return luaL_error(L, "ba.json.decode: internal error (stack %d)", lua_gettop(L));
	return 1;
}

/* ---- encode ------------------------------------------------------------- */

static const char *encode_value(lua_State *L, yajl_gen g, int idx, int depth);

/* Keys 1..n and nothing else (n >= 1). */
static bool is_array(lua_State *L, int idx, lua_Integer *len)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		if (!lua_isinteger(L, -2)) {
			lua_pop(L, 2);
			return false;
		}
		lua_Integer k = lua_tointeger(L, -2);
		if (k < 1 || k > n) {
			lua_pop(L, 2);
			return false;
		}
		count++;
	}
	*len = n;
	return n > 0 && count == n;
}

static const char *encode_table(lua_State *L, yajl_gen g, int idx, int depth)
{
	if (depth >= MAX_DEPTH)
		return "nested too deeply (a table that contains itself?)";
	if (!lua_checkstack(L, 4))
		return "nested too deeply";
	lua_Integer n;
	if (is_array(L, idx, &n)) {
		yajl_gen_array_open(g);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, i);
			const char *err = encode_value(L, g, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
			if (err)
				return err;
		}
		yajl_gen_array_close(g);
		return NULL;
	}
	yajl_gen_map_open(g);
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		size_t kn;
		const char *k;
		int kt = lua_type(L, -2);
		if (kt == LUA_TSTRING) {
			k = lua_tolstring(L, -2, &kn);
		} else if (kt == LUA_TNUMBER) {
			lua_pushvalue(L, -2);
			k = lua_tolstring(L, -1, &kn); /* converts the copy only */
			lua_insert(L, -2);	       /* key, keystr, value */
		} else {
			lua_pop(L, 2);
			return "object keys must be strings or numbers";
		}
		yajl_gen_string(g, (const unsigned char *)k, kn);
		const char *err = encode_value(L, g, lua_gettop(L), depth + 1);
		if (kt == LUA_TNUMBER)
			lua_remove(L, -2);
		if (err) {
			lua_pop(L, 2);
			return err;
		}
	}
	yajl_gen_map_close(g);
	return NULL;
}

static const char *encode_value(lua_State *L, yajl_gen g, int idx, int depth)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		yajl_gen_null(g);
		return NULL;
	case LUA_TBOOLEAN:
		yajl_gen_bool(g, lua_toboolean(L, idx));
		return NULL;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			yajl_gen_integer(g, (long long)lua_tointeger(L, idx));
		} else {
			double v = lua_tonumber(L, idx);
			if (!isfinite(v))
				return "NaN and infinity have no JSON form";
			char buf[40];
			int len = snprintf(buf, sizeof(buf), "%.17g", v);
			yajl_gen_number(g, buf, (size_t)len);
		}
		return NULL;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		if (yajl_gen_string(g, (const unsigned char *)s, n) == yajl_gen_invalid_string)
			return "string is not valid UTF-8";
		return NULL;
	}
	case LUA_TTABLE:
		return encode_table(L, g, idx, depth);
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &NULL_KEY) {
			yajl_gen_null(g);
			return NULL;
		}
		/* fall through */
	default:
		return lua_pushfstring(L, "cannot encode a %s", luaL_typename(L, idx));
	}
}

/* ba.json.encode(value) -> text | nil, message */
static int l_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	lua_settop(L, 1);
	yajl_gen g = yajl_gen_alloc(NULL);
	if (!g)
		return luaL_error(L, "ba.json.encode: out of memory");
	yajl_gen_config(g, yajl_gen_validate_utf8, 1);
	const char *err = encode_value(L, g, 1, 0);
	if (err) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		yajl_gen_free(g);
		return 2;
	}
	const unsigned char *buf;
	size_t len;
	yajl_gen_get_buf(g, &buf, &len);
	lua_pushlstring(L, (const char *)buf, len);
	yajl_gen_free(g);
	return 1;
}

static const luaL_Reg json_funcs[] = {
    {"encode", l_encode},
    {"decode", l_decode},
    {NULL, NULL},
};

int cs__open_json(lua_State *L)
{
	luaL_newlib(L, json_funcs);
	lua_pushlightuserdata(L, (void *)&NULL_KEY);
	lua_setfield(L, -2, "null");
	return 1;
}
