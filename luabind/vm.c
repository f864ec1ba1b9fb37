/*
 * vm.c - the Lua state of a worker and the cosocket scheduler: starting
 * coroutines, the ready queue, resuming, and what happens when a coroutine
 * ends, fails or yields by itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

static const char VM_KEY = 'v';

cs_vm *cs__vm(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
	cs_vm *vm = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return vm;
}

static void log_oneline(cs_vm *vm, int prio, const char *text);

void cs__log(cs_vm *vm, int prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (strchr(line, '\n'))
		log_oneline(vm, prio, line);
	else
		vm->log(prio, line);
}

/* Tracebacks are multi-line; a log record is one line. */
static void log_oneline(cs_vm *vm, int prio, const char *text)
{
	size_t n = strlen(text);
	char *flat = malloc(n * 3 + 1); /* each newline becomes " | " */
	if (!flat) {
		vm->log(prio, text);
		return;
	}
	char *o = flat;
	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			*o++ = ' ';
			*o++ = '|';
			*o++ = ' ';
			while (p[1] == '\t' || p[1] == ' ')
				p++;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
	vm->log(prio, flat);
	free(flat);
}

void cs__report(cs_vm *vm, lua_State *co, const char *what)
{
	const char *msg = lua_tostring(co, -1);
	if (!msg)
		msg = luaL_typename(co, -1);
	luaL_traceback(co, co, msg, 0);
	lua_pushfstring(co, "%s: %s", what, lua_tostring(co, -1));
	log_oneline(vm, CS_LOG_ERR, lua_tostring(co, -1));
	lua_pop(co, 3);
}

int cs__fail(lua_State *L, const char *msg)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	return 2;
}

int cs__fail_why(lua_State *L, const char *msg, const char *why)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	lua_pushstring(L, why);
	return 3;
}

/* ---- scheduling ------------------------------------------------------ */

static void link_cosocket(cs_vm *vm, cs_sock *s)
{
	s->prev = NULL;
	s->next = vm->cosockets;
	if (vm->cosockets)
		vm->cosockets->prev = s;
	vm->cosockets = s;
}

static void unlink_cosocket(cs_vm *vm, cs_sock *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else if (vm->cosockets == s)
		vm->cosockets = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

static bool waits_on_world(enum cs_wait w)
{
	return w != CS_WAIT_NONE && w != CS_WAIT_READY && w != CS_WAIT_DISABLED;
}

int cs__wait(lua_State *L, cs_sock *sock, enum cs_wait w)
{
	sock->wait = (uint8_t)w;
	if (waits_on_world(w))
		sock->vm->waiting++;
	return lua_yield(L, 0);
}

void cs__wake(cs_sock *sock, int nvals)
{
	cs_vm *vm = sock->vm;
	if (waits_on_world(sock->wait))
		vm->waiting--;
	cs_lthread *t = sock->blocker;
	if (t) {
		sock->blocker = NULL;
		if (!sock->co)
			cs__unpin(sock); /* a blocking connect pinned it */
		if (vm->caller == t) {
			/* still inside the call that parked it: that call returns
			 * the results itself */
			sock->wait = CS_WAIT_READY;
			sock->nresume = nvals;
			t->parked = false;
			return;
		}
		sock->wait = CS_WAIT_NONE;
		cs__unpark(t);
		return;
	}
	sock->wait = CS_WAIT_READY;
	sock->nresume = nvals;
	sock->ready_next = NULL;
	if (vm->ready_tail)
		vm->ready_tail->ready_next = sock;
	else
		vm->ready_head = sock;
	vm->ready_tail = sock;
}

bool cs__resume(cs_sock *sock, lua_State *from, int nargs)
{
	cs_vm *vm = sock->vm;
	lua_State *co = sock->co;
	int nres = 0;
	sock->wait = CS_WAIT_NONE;
	int status = lua_resume(co, from, nargs, &nres);
	if (status == LUA_YIELD) {
		if (sock->wait != CS_WAIT_NONE)
			return true; /* waits inside one of our calls */
		lua_pop(co, nres);
		cs__log(vm, CS_LOG_ERR, "Cosocket: Invalid yield: coroutine.yield() is not allowed in a cosocket; socket closed");
	} else if (status != LUA_OK) {
		cs__report(vm, co, "Cosocket");
		lua_resetthread(co); /* run pending __close handlers */
	}
	cs__sock_finished(sock);
	return false;
}

bool cs__start(lua_State *L, int sockidx, cs_sock *sock, int nargs)
{
	cs_vm *vm = sock->vm;
	sockidx = lua_absindex(L, sockidx);
	lua_State *co = lua_newthread(L);
	lua_setiuservalue(L, sockidx, 1); /* the socket keeps its coroutine alive */
	*(cs_sock **)lua_getextraspace(co) = sock;
	sock->co = co;
	sock->wait = CS_WAIT_NONE;
	lua_xmove(L, co, nargs + 1);
	lua_pushvalue(L, sockidx);
	sock->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	link_cosocket(vm, sock);
	return cs__resume(sock, L, nargs);
}

/* Let go of the coroutine: the socket object may now be collected once the
 * script drops it. */
void cs__release_coroutine(cs_sock *sock)
{
	cs_vm *vm = sock->vm;
	if (sock->co) {
		*(cs_sock **)lua_getextraspace(sock->co) = NULL;
		unlink_cosocket(vm, sock);
	}
	if (sock->self_ref != LUA_NOREF) {
		luaL_unref(vm->L, LUA_REGISTRYINDEX, sock->self_ref);
		sock->self_ref = LUA_NOREF;
	}
	sock->co = NULL;
}

/* The socket object is being collected: its coroutine may already be gone,
 * so only our own bookkeeping is undone. */
void cs__forget_coroutine(cs_sock *sock)
{
	if (sock->co)
		unlink_cosocket(sock->vm, sock);
	sock->co = NULL;
	sock->self_ref = LUA_NOREF;
}

/* A disabled cosocket holds no reference to itself (BA-API §1.5). */
void cs__unpin(cs_sock *sock)
{
	if (sock->self_ref != LUA_NOREF) {
		luaL_unref(sock->vm->L, LUA_REGISTRYINDEX, sock->self_ref);
		sock->self_ref = LUA_NOREF;
	}
}

void cs__pin(lua_State *L, int idx, cs_sock *sock)
{
	if (sock->self_ref == LUA_NOREF) {
		lua_pushvalue(L, idx);
		sock->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
}

bool cs_vm_run_ready(cs_vm *vm)
{
	cs_sock *s = vm->ready_head;
	vm->ready_head = vm->ready_tail = NULL;
	while (s) {
		cs_sock *next = s->ready_next;
		s->ready_next = NULL;
		if (s->wait == CS_WAIT_READY && s->co)
			cs__resume(s, NULL, s->nresume);
		s = next;
	}
	return vm->ready_head != NULL;
}

bool cs_vm_busy(cs_vm *vm)
{
	struct cs_loop_stats st;
	cs_loop_stats(vm->loop, &st);
	return vm->ready_head || vm->waiting || vm->timers || vm->resolving || vm->jobs || st.timers;
}

void cs_vm_shutdown(cs_vm *vm)
{
	if (vm->shutting_down)
		return;
	vm->shutting_down = true;
	cs__sock_shutdown_all(vm);
	cs__threads_shutdown(vm);
}

void cs_vm_drain(cs_vm *vm)
{
	if (vm->draining || vm->shutting_down)
		return;
	vm->draining = true;
	cs__sock_drain_all(vm);
	cs__http_drain_all(vm);
}

unsigned cs_vm_connections(const cs_vm *vm)
{
	unsigned n = vm->socks_by_kind[CS_SOCK_TCP];
	if (vm->draining) /* queued ones a listener still accepts count too */
		for (const cs_sock *s = vm->cosockets; s; s = s->next)
			if (s->kind == CS_SOCK_LISTEN && s->conn)
				n += s->drain_accepts;
	return n;
}

bool cs_vm_exit_requested(const cs_vm *vm, int *code)
{
	if (vm->exit_requested)
		*code = vm->exit_code;
	return vm->exit_requested;
}

const char *cs_vm_lua_release(void) { return LUA_RELEASE; }

/* ---- running scripts ------------------------------------------------- */

static int msgh(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (!msg)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	luaL_traceback(L, L, msg, 1);
	return 1;
}

static void set_arg(lua_State *L, int argc, char **argv, int script_index)
{
	int nargs = argc - script_index - 1;
	lua_createtable(L, nargs > 0 ? nargs : 0, script_index + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script_index);
	}
	lua_setglobal(L, "arg");
}

static int run_loaded(cs_vm *vm, int status, int argc, char **argv, int script_index)
{
	lua_State *L = vm->L;
	if (status != LUA_OK) {
		log_oneline(vm, CS_LOG_ERR, lua_tostring(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	set_arg(L, argc, argv, script_index);
	int nargs = argc - script_index - 1;
	luaL_checkstack(L, nargs + 2, "too many arguments");
	for (int i = script_index + 1; i < argc; i++)
		lua_pushstring(L, argv[i]);
	lua_pushcfunction(L, msgh);
	lua_insert(L, -(nargs + 2));
	status = lua_pcall(L, nargs, 0, -(nargs + 2));
	if (status != LUA_OK) {
		log_oneline(vm, CS_LOG_ERR, lua_tostring(L, -1));
		lua_pop(L, 2);
		return -1;
	}
	lua_pop(L, 1);
	return 0;
}

int cs_vm_run_file(cs_vm *vm, const char *path, int argc, char **argv, int script_index)
{
	int status = luaL_loadfile(vm->L, path);
	return run_loaded(vm, status, argc, argv, script_index);
}

int cs_vm_run_chunk(cs_vm *vm, const char *chunk, size_t len, const char *name,
		    int argc, char **argv, int script_index)
{
	int status = luaL_loadbuffer(vm->L, chunk, len, name);
	return run_loaded(vm, status, argc, argv, script_index);
}

static int preload_loader(lua_State *L)
{
	size_t len = (size_t)lua_tointeger(L, lua_upvalueindex(2));
	const char *chunk = lua_touserdata(L, lua_upvalueindex(1));
	const char *name = luaL_checkstring(L, 1);
	lua_pushfstring(L, "=%s", name);
	if (luaL_loadbuffer(L, chunk, len, lua_tostring(L, -1)) != LUA_OK)
		return lua_error(L);
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	return 1;
}

void cs_vm_preload(cs_vm *vm, const char *name, const char *chunk, size_t len)
{
	lua_State *L = vm->L;
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushlightuserdata(L, (void *)chunk);
	lua_pushinteger(L, (lua_Integer)len);
	lua_pushcclosure(L, preload_loader, 2);
	lua_setfield(L, -2, name);
	lua_pop(L, 1);
}

/* ---- trace, tracep, cosockd.* ---------------------------------------- */

/* "<function> <line>: " of the caller, as the original product prints. */
static void push_where(lua_State *L, luaL_Buffer *b)
{
	lua_Debug ar;
	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "nSl", &ar)) {
		const char *name = ar.name ? ar.name : (*ar.what == 'm' ? "main" : "?");
		lua_pushfstring(L, "%s %d: ", name, ar.currentline);
		luaL_addvalue(b);
	}
}

static void trace_values(lua_State *L, int first, bool where, int prio)
{
	luaL_Buffer b;
	int top = lua_gettop(L);
	luaL_buffinit(L, &b);
	if (where)
		push_where(L, &b);
	for (int i = first; i <= top; i++) {
		if (i > first)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	log_oneline(cs__vm(L), prio, lua_tostring(L, -1));
	lua_pop(L, 1);
}

static int l_trace(lua_State *L)
{
	trace_values(L, 1, true, CS_LOG_INFO);
	return 0;
}

/* tracep([showfuncline,] prio, ...): prio 0 is the most important; it maps
 * onto the log's error..debug range. */
static int l_tracep(lua_State *L)
{
	int i = 1;
	bool where = false;
	if (lua_type(L, 1) == LUA_TBOOLEAN) {
		where = lua_toboolean(L, 1);
		i = 2;
	}
	lua_Integer prio = luaL_checkinteger(L, i);
	int level = prio <= 0 ? CS_LOG_ERR : prio == 1 ? CS_LOG_WARNING : prio == 2 ? CS_LOG_NOTICE
					  : prio <= 5 ? CS_LOG_INFO : CS_LOG_DEBUG;
	trace_values(L, i + 1, where, level);
	return 0;
}

static int l_exit(lua_State *L)
{
	cs_vm *vm = cs__vm(L);
	vm->exit_requested = true;
	vm->exit_code = (int)luaL_optinteger(L, 1, 0);
	cs_loop_wake(vm->loop); /* when called from a pool thread */
	return 0;
}

static int l_print(lua_State *L)
{
	trace_values(L, 1, false, CS_LOG_INFO);
	return 0;
}

int cs_vm_create(const struct cs_vm_config *cfg, cs_vm **out)
{
	cs_vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -1;
	vm->loop = cfg->loop;
	vm->log = cfg->log;
	vm->max_threads = cfg->threads;
	vm->reuseport = cfg->workers > 0;
	if (cfg->listen)
		vm->listen = *cfg->listen;
	vm->L = luaL_newstate();
	if (!vm->L || (cfg->state_dir && !(vm->state_dir = strdup(cfg->state_dir)))) {
		if (vm->L)
			lua_close(vm->L);
		free(vm);
		return -1;
	}
	if (cs_pool_create(vm->loop, cfg->resolver_threads ? cfg->resolver_threads : 2, &vm->resolver) < 0) {
		lua_close(vm->L);
		free(vm);
		return -1;
	}
	cs__vm_lock_init(vm);
	lua_State *L = vm->L;
	*(cs_sock **)lua_getextraspace(L) = NULL;
	lua_pushlightuserdata(L, vm);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &VM_KEY);
	luaL_openlibs(L);

	lua_register(L, "trace", l_trace);
	lua_register(L, "tracep", l_tracep);
	lua_register(L, "print", l_print);
	lua_newtable(L);
	lua_pushcfunction(L, l_exit);
	lua_setfield(L, -2, "exit");
	lua_pushstring(L, COSOCKD_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushinteger(L, cfg->workers ? cfg->worker : 1);
	lua_setfield(L, -2, "worker");
	lua_pushinteger(L, cfg->workers ? cfg->workers : 1);
	lua_setfield(L, -2, "workers");
	cs__open_http(L);
	lua_setglobal(L, "cosockd");

	luaL_requiref(L, "ba", cs__open_ba, 1);
	lua_pop(L, 1);
	cs_loop_set_udata(vm->loop, vm);
	*out = vm;
	return 0;
}

void cs_vm_destroy(cs_vm *vm)
{
	if (vm->lthreads) {
		cs_vm_shutdown(vm);
		cs__threads_stop(vm);
		if (vm->live_threads) {
			/* A job would not stop. Keep the lock, so it never runs
			 * Lua again, and leave the VM to the exiting process. */
			cs_loop_set_wait_hooks(vm->loop, NULL, NULL, NULL);
			cs_loop_set_udata(vm->loop, NULL);
			return;
		}
	}
	vm->closing = true;
	cs_loop_set_udata(vm->loop, NULL);
	lua_close(vm->L); /* __gc closes every socket still open */
	cs__threads_free(vm);
	cs__rng_free(vm);
	cs__io_free(vm);
	free(vm->tls_buf);
	free(vm->dgram_buf);
	cs_pool_destroy(vm->resolver);
	cs_loop_set_wait_hooks(vm->loop, NULL, NULL, NULL);
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}
