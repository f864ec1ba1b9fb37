/*
 * timer.c - ba.timer(fn): a callback run on the loop thread after an
 * interval, re-armed when it returns true, or written coroutine-style with
 * coroutine.yield(true) (BA-API.md §11.2).
 *
 * The object's user values: 1 the function, 2 the coroutine a yielding
 * callback continues in, 3 the error that ended the timer.
 */
#include <string.h>

#include "internal.h"

struct lua_timer {
	cs_vm *vm;
	cs_timer t;
	lua_Integer interval;
	int keep_ref; /* registry ref when set(ms, true) keeps the timer alive */
	bool armed, failed;
};

/* Registry key of the weak table that finds a timer object from C. */
static const char TIMERS_KEY = 't';

static struct lua_timer *check_timer(lua_State *L)
{
	return luaL_checkudata(L, 1, CS_TIMER_MT);
}

static void disarm(struct lua_timer *lt)
{
	if (lt->armed) {
		cs_timer_stop(lt->vm->loop, &lt->t);
		lt->armed = false;
		lt->vm->timers--;
	}
}

static void arm(struct lua_timer *lt, lua_Integer ms)
{
	if (!lt->armed)
		lt->vm->timers++;
	lt->armed = true;
	cs_timer_start(lt->vm->loop, &lt->t, ms > 0 ? (uint64_t)ms : 0);
}

static void drop_keep(struct lua_timer *lt)
{
	if (lt->keep_ref != LUA_NOREF) {
		luaL_unref(lt->vm->L, LUA_REGISTRYINDEX, lt->keep_ref);
		lt->keep_ref = LUA_NOREF;
	}
}

/* Run the callback once, the timer object at idx of L. Returns whether it
 * asked to run again. */
static bool run_callback(lua_State *L, int idx, struct lua_timer *lt)
{
	idx = lua_absindex(L, idx);
	lua_State *co = NULL;
	if (lua_getiuservalue(L, idx, 2) == LUA_TTHREAD)
		co = lua_tothread(L, -1);
	lua_pop(L, 1);
	if (!co) {
		co = lua_newthread(L);
		lua_setiuservalue(L, idx, 2);
		lua_getiuservalue(L, idx, 1);
		lua_xmove(L, co, 1);
	}
	int nres = 0;
	int status = lua_resume(co, L, 0, &nres);
	bool again = false;
	if (status == LUA_OK || status == LUA_YIELD) {
		again = nres > 0 && lua_toboolean(co, -nres);
		lua_pop(co, nres);
		if (status == LUA_OK) {
			lua_pushnil(L);
			lua_setiuservalue(L, idx, 2);
		}
		return again;
	}
	cs__report(lt->vm, co, "Timer callback failed");
	lt->failed = true;
	lua_pushfstring(L, "Timer callback failed");
	lua_setiuservalue(L, idx, 3);
	lua_pushnil(L);
	lua_setiuservalue(L, idx, 2);
	drop_keep(lt);
	return false;
}

static void timer_fired(cs_timer *t)
{
	struct lua_timer *lt = (struct lua_timer *)((char *)t - offsetof(struct lua_timer, t));
	cs_vm *vm = lt->vm;
	lua_State *L = vm->L;
	lt->armed = false;
	vm->timers--;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &TIMERS_KEY);
	if (lua_rawgetp(L, -1, lt) != LUA_TUSERDATA) {
		lua_pop(L, 2); /* being collected: its __gc is due */
		return;
	}
	if (run_callback(L, -1, lt))
		arm(lt, lt->interval);
	else if (!lt->armed)
		drop_keep(lt);
	lua_pop(L, 2);
}

static int raise_if_failed(lua_State *L, struct lua_timer *lt)
{
	if (!lt->failed)
		return 0;
	lua_getiuservalue(L, 1, 3);
	return lua_error(L);
}

/* timer:set(ms [, keepref [, runnow]]) */
static int t_set(lua_State *L)
{
	struct lua_timer *lt = check_timer(L);
	raise_if_failed(L, lt);
	lua_Integer ms = luaL_checkinteger(L, 2);
	lt->interval = ms;
	if (lua_toboolean(L, 3) && lt->keep_ref == LUA_NOREF) {
		lua_pushvalue(L, 1);
		lt->keep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	if (lua_toboolean(L, 4) && !run_callback(L, 1, lt)) {
		drop_keep(lt);
		lua_pushboolean(L, 0);
		return 1;
	}
	arm(lt, ms);
	lua_pushboolean(L, 1);
	return 1;
}

/* timer:reset([ms]) */
static int t_reset(lua_State *L)
{
	struct lua_timer *lt = check_timer(L);
	raise_if_failed(L, lt);
	if (!lua_isnoneornil(L, 2))
		lt->interval = luaL_checkinteger(L, 2);
	arm(lt, lt->interval);
	lua_pushboolean(L, 1);
	return 1;
}

static int t_cancel(lua_State *L)
{
	struct lua_timer *lt = check_timer(L);
	raise_if_failed(L, lt);
	bool was = lt->armed;
	disarm(lt);
	drop_keep(lt);
	if (!was)
		return 0;
	lua_pushboolean(L, 1);
	return 1;
}

static int t_gc(lua_State *L)
{
	struct lua_timer *lt = check_timer(L);
	disarm(lt);
	return 0;
}

static int t_tostring(lua_State *L)
{
	struct lua_timer *lt = check_timer(L);
	lua_pushfstring(L, "[Timer %p %s]", (void *)lt, lt->armed ? "armed" : "idle");
	return 1;
}

/* ba.timer(fn) */
static int l_timer(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	struct lua_timer *lt = lua_newuserdatauv(L, sizeof(*lt), 3);
	memset(lt, 0, sizeof(*lt));
	lt->vm = cs__vm(L);
	lt->keep_ref = LUA_NOREF;
	cs_timer_init(&lt->t, timer_fired);
	luaL_setmetatable(L, CS_TIMER_MT);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &TIMERS_KEY);
	lua_pushvalue(L, -2);
	lua_rawsetp(L, -2, lt);
	lua_pop(L, 1);
	return 1;
}

static const luaL_Reg timer_methods[] = {
	{"set", t_set}, {"reset", t_reset}, {"cancel", t_cancel}, {NULL, NULL},
};

int cs__open_timer(lua_State *L)
{
	/* weak-valued: finding a timer from C must not keep it alive */
	lua_newtable(L);
	lua_newtable(L);
	lua_pushstring(L, "v");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &TIMERS_KEY);

	luaL_newmetatable(L, CS_TIMER_MT);
	lua_pushcfunction(L, t_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, t_tostring);
	lua_setfield(L, -2, "__tostring");
	luaL_newlibtable(L, timer_methods);
	cs__setfuncs_on_loop(L, timer_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_timer);
	return 1;
}
