/*
 * thread.c - the VM lock and the Lua thread pools: ba.thread.run,
 * ba.thread.create, ba.thread.configure and ba.sleep, plus the two ways a
 * pool thread gets the loop thread to act for it (cs__on_loop, parking).
 *
 * A pool thread takes a job (a Lua function), runs it in a coroutine of its
 * own under vm->lock, and waits on its condition variable with that same
 * lock, so every wait releases the VM at once and nothing else is needed to
 * guard the job queues, which are only touched under the lock.
 * Pools start threads on demand, up to their limit, and keep them.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define CS_THREAD_MT "_BATHREAD"
#define DEFAULT_THREADS 8
#define MAX_THREADS 1024
#define STOP_GRACE_MS 5000
#define JOB_HOOK_COUNT 1000

__thread cs_lthread *cs__self;

struct lua_job {
	struct lua_job *next;
	int fn_ref;
};

struct cs_lpool {
	cs_vm *vm;
	pthread_cond_t cond; /* jobs queued, or stopping; with vm->lock */
	struct lua_job *head, *tail;
	unsigned queued, nthreads, idle, max;
	bool stopping;
	struct cs_lpool *next; /* vm->pools */
};

/* ---- the lock around the loop's wait ---------------------------------- */

static void loop_waits(void *arg)
{
	pthread_mutex_unlock(&((cs_vm *)arg)->lock);
}

/* The loop thread wants the lock back: when a pool job holds it, the job's
 * hook (job_hook) sees lock_wanted and steps aside within a few thousand
 * instructions, so a job that computes never freezes the dispatcher. */
static void loop_wakes(void *arg)
{
	cs_vm *vm = arg;
	if (pthread_mutex_trylock(&vm->lock) == 0)
		return;
	atomic_store(&vm->lock_wanted, true);
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->lock_wanted, false);
}

/* Runs every JOB_HOOK_COUNT instructions of a job (and of coroutines it
 * creates, which inherit the hook). */
static void job_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	cs_lthread *t = cs__self;
	if (!t)
		return;
	cs_vm *vm = t->vm;
	if (atomic_load(&vm->lock_wanted)) {
		pthread_mutex_unlock(&vm->lock);
		while (atomic_load(&vm->lock_wanted))
			sched_yield();
		pthread_mutex_lock(&vm->lock);
	}
	if (vm->threads_stopping)
		luaL_error(L, "sysshutdown: job stopped, the server is exiting");
}

static void cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* ---- calls on the loop thread ----------------------------------------- */

struct loop_call {
	cs_post post;
	cs_lthread *t;
	lua_State *L;
	lua_CFunction f;
};

static void run_call(cs_post *p)
{
	struct loop_call *call = (struct loop_call *)p;
	cs_lthread *t = call->t;
	lua_State *L = call->L;
	cs_vm *vm = t->vm;
	int nargs = lua_gettop(L);
	lua_pushcfunction(L, call->f);
	lua_insert(L, 1);
	t->parked = false;
	t->wl = L;
	cs_lthread *outer = vm->caller;
	vm->caller = t;
	t->status = lua_pcall(L, nargs, LUA_MULTRET, 0);
	vm->caller = outer;
	if (t->status != LUA_OK || !t->parked)
		cs__unpark(t);
}

int cs__on_loop(lua_State *L, lua_CFunction f)
{
	cs_lthread *t = cs__self;
	if (!t)
		return f(L);
	cs_vm *vm = t->vm;
	struct loop_call call = {.post.run = run_call, .t = t, .L = L, .f = f};
	t->woken = false;
	cs_loop_post(vm->loop, &call.post);
	while (!t->woken)
		pthread_cond_wait(&t->cond, &vm->lock);
	if (t->status != LUA_OK)
		return lua_error(L);
	return lua_gettop(L);
}

static int on_loop_trampoline(lua_State *L)
{
	lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(1));
	return cs__self ? cs__on_loop(L, f) : f(L);
}

void cs__setfuncs_on_loop(lua_State *L, const luaL_Reg *l)
{
	for (; l->name; l++) {
		lua_pushcfunction(L, l->func);
		lua_pushcclosure(L, on_loop_trampoline, 1);
		lua_setfield(L, -2, l->name);
	}
}

int cs__park(lua_State *L, cs_sock *s, enum cs_wait w)
{
	cs_lthread *t = cs__caller(L, s->vm);
	s->blocker = t;
	s->wait = (uint8_t)w;
	s->vm->waiting++;
	t->blocked_on = s;
	t->parked = true;
	return 0;
}

int cs__park_writer(lua_State *L, cs_sock *s)
{
	cs_lthread *t = cs__caller(L, s->vm);
	t->bnext = NULL;
	cs_lthread **pp = &s->bwriters;
	while (*pp)
		pp = &(*pp)->bnext;
	*pp = t;
	t->write_on = s;
	t->parked = true;
	return 0;
}

void cs__unpark(cs_lthread *t)
{
	t->blocked_on = NULL;
	t->write_on = NULL;
	t->woken = true;
	pthread_cond_signal(&t->cond);
}

/* ---- pool threads ------------------------------------------------------ */

static void run_job(cs_lthread *t, struct lua_job *job)
{
	cs_vm *vm = t->vm;
	lua_State *co = lua_newthread(t->base);
	lua_rawgeti(co, LUA_REGISTRYINDEX, job->fn_ref);
	luaL_unref(co, LUA_REGISTRYINDEX, job->fn_ref);
	free(job);
	int nres = 0;
	t->job = co;
	lua_sethook(co, job_hook, LUA_MASKCOUNT, JOB_HOOK_COUNT);
	int status = lua_resume(co, NULL, 0, &nres);
	t->job = NULL;
	if (status == LUA_YIELD)
		cs__log(vm, CS_LOG_ERR,
			"Thread: Invalid yield: coroutine.yield() at the top of a ba.thread job; job ended");
	else if (status != LUA_OK)
		cs__report(vm, co, "Thread");
	lua_resetthread(co); /* runs pending __close handlers */
	lua_settop(t->base, 0);
}

static void *lthread_main(void *arg)
{
	cs_lthread *t = arg;
	cs_vm *vm = t->vm;
	struct cs_lpool *pool = t->pool;
	cs__self = t;
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		pool->idle++;
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &vm->lock);
		pool->idle--;
		struct lua_job *job = pool->head;
		if (!job)
			break;
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		run_job(t, job);
		if (--vm->jobs == 0)
			cs_loop_wake(vm->loop); /* the loop may be waiting for idleness */
	}
	t->exited = true;
	vm->live_threads--;
	cs_loop_wake(vm->loop);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static int start_thread(struct cs_lpool *pool)
{
	cs_vm *vm = pool->vm;
	cs_lthread *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->pool = pool;
	cond_init(&t->cond);
	t->base = lua_newthread(vm->L);
	t->base_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
	int r = pthread_create(&t->tid, NULL, lthread_main, t);
	if (r) {
		luaL_unref(vm->L, LUA_REGISTRYINDEX, t->base_ref);
		pthread_cond_destroy(&t->cond);
		free(t);
		return -r;
	}
	t->next = vm->lthreads;
	vm->lthreads = t;
	vm->live_threads++;
	pool->nthreads++;
	return 0;
}

struct cs_lpool *cs__pool_new(cs_vm *vm, unsigned max)
{
	struct cs_lpool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->vm = vm;
	pool->max = max;
	cond_init(&pool->cond);
	pool->next = vm->pools;
	vm->pools = pool;
	return pool;
}

int cs__pool_submit(lua_State *L, struct cs_lpool *pool)
{
	cs_vm *vm = pool->vm;
	if (pool->stopping || vm->shutting_down) {
		lua_pop(L, 1);
		return -ESHUTDOWN;
	}
	struct lua_job *job = malloc(sizeof(*job));
	if (!job) {
		lua_pop(L, 1);
		return -ENOMEM;
	}
	job->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	job->next = NULL;
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	vm->jobs++;
	if (pool->idle < pool->queued && pool->nthreads < pool->max) {
		int r = start_thread(pool);
		if (r < 0 && pool->nthreads == 0)
			cs__log(vm, CS_LOG_ERR, "ba.thread: cannot start a thread: %s; the job waits",
				strerror(-r));
	}
	pthread_cond_signal(&pool->cond);
	return (int)(pool->queued + pool->nthreads - pool->idle);
}

static int push_submitted(lua_State *L, int r)
{
	if (r < 0)
		return luaL_error(L, "ba.thread.run: %s",
				  r == -ESHUTDOWN ? "the server is shutting down" : strerror(-r));
	lua_pushinteger(L, r);
	return 1;
}

/* ba.thread.run(fn) -> jobs pending */
static int l_run(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	lua_settop(L, 1);
	cs_vm *vm = cs__vm(L);
	return push_submitted(L, cs__pool_submit(L, vm->threads));
}

/* ba.thread.configure(n): raise the default pool's thread limit. */
static int l_configure(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n > 0 && n <= MAX_THREADS, 1, "thread count out of range (1..1024)");
	cs_vm *vm = cs__vm(L);
	if ((unsigned)n > vm->threads->max)
		vm->threads->max = (unsigned)n;
	lua_pushinteger(L, vm->threads->max);
	return 1;
}

/* ba.thread.create() -> a pool of one thread with :run(fn). Such pools live
 * as long as the server: a job may still be queued when the script drops
 * the object. */
static int l_create(lua_State *L)
{
	cs_vm *vm = cs__vm(L);
	struct cs_lpool **ud = lua_newuserdatauv(L, sizeof(*ud), 0);
	*ud = cs__pool_new(vm, 1);
	if (!*ud)
		return luaL_error(L, "ba.thread.create: out of memory");
	luaL_setmetatable(L, CS_THREAD_MT);
	lua_pushvalue(L, -1);
	luaL_ref(L, LUA_REGISTRYINDEX); /* lives until the VM closes */
	return 1;
}

static int p_run(lua_State *L)
{
	struct cs_lpool **ud = luaL_checkudata(L, 1, CS_THREAD_MT);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	return push_submitted(L, cs__pool_submit(L, *ud));
}

static int p_tostring(lua_State *L)
{
	struct cs_lpool **ud = luaL_checkudata(L, 1, CS_THREAD_MT);
	lua_pushfstring(L, "[Thread pool %p: %d queued]", (void *)*ud, (int)(*ud)->queued);
	return 1;
}

/* ---- ba.sleep ----------------------------------------------------------- */

/* ba.sleep(ms): a pool thread sleeps with the VM lock released; a cosocket
 * waits on a timer; anything else on the loop thread is refused, since it
 * would stop every connection. */
static int l_sleep(lua_State *L)
{
	lua_Integer ms = luaL_checkinteger(L, 1);
	if (ms < 0)
		ms = 0;
	cs_lthread *t = cs__self;
	if (!t) {
		cs_sock *s = cs__current(L);
		if (!s)
			return luaL_error(L,
					  "ba.sleep: not allowed on the dispatcher thread outside a cosocket "
					  "(timer or top-level code); use ba.timer or ba.thread.run");
		return cs__sock_sleep(L, s, ms);
	}
	cs_vm *vm = t->vm;
	if (vm->threads_stopping || vm->shutting_down)
		return 0;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	t->woken = false;
	t->sleeping = true;
	while (!t->woken && pthread_cond_timedwait(&t->cond, &vm->lock, &until) != ETIMEDOUT)
		;
	t->sleeping = false;
	return 0;
}

/* ---- stopping ------------------------------------------------------------ */

static void drop_jobs(cs_vm *vm, struct cs_lpool *pool)
{
	unsigned dropped = 0;
	pool->stopping = true;
	while (pool->head) {
		struct lua_job *job = pool->head;
		pool->head = job->next;
		luaL_unref(vm->L, LUA_REGISTRYINDEX, job->fn_ref);
		free(job);
		dropped++;
		vm->jobs--;
	}
	pool->tail = NULL;
	pool->queued = 0;
	if (dropped)
		cs__log(vm, CS_LOG_WARNING, "ba.thread: %u queued job%s dropped at shutdown", dropped,
			dropped == 1 ? "" : "s");
	pthread_cond_broadcast(&pool->cond);
}

/* Wake every sleeping pool thread: shutdown interrupts ba.sleep. */
void cs__threads_shutdown(cs_vm *vm)
{
	for (cs_lthread *t = vm->lthreads; t; t = t->next) {
		if (t->sleeping) {
			t->woken = true;
			pthread_cond_signal(&t->cond);
		}
	}
}

void cs__threads_stop(cs_vm *vm)
{
	vm->threads_stopping = true;
	cs__threads_shutdown(vm);
	for (struct cs_lpool *pool = vm->pools; pool; pool = pool->next)
		drop_jobs(vm, pool);
	/* A job that keeps computing is stopped by job_hook; blocked ones
	 * were woken by the shutdown. */
	/* Jobs still running finish; their calls to the loop keep working. */
	uint64_t deadline = cs_loop_now(vm->loop) + STOP_GRACE_MS;
	while (vm->live_threads && cs_loop_now(vm->loop) < deadline)
		cs_loop_poll(vm->loop, 10);
	if (vm->live_threads) {
		cs__log(vm, CS_LOG_ERR, "ba.thread: %u job%s still running after %d ms; leaving %s behind",
			vm->live_threads, vm->live_threads == 1 ? "" : "s", STOP_GRACE_MS,
			vm->live_threads == 1 ? "it" : "them");
		return;
	}
	while (vm->lthreads) {
		cs_lthread *t = vm->lthreads;
		vm->lthreads = t->next;
		pthread_mutex_unlock(&vm->lock);
		pthread_join(t->tid, NULL);
		pthread_mutex_lock(&vm->lock);
		luaL_unref(vm->L, LUA_REGISTRYINDEX, t->base_ref);
		pthread_cond_destroy(&t->cond);
		free(t);
	}
}

void cs__threads_free(cs_vm *vm)
{
	while (vm->pools) {
		struct cs_lpool *pool = vm->pools;
		vm->pools = pool->next;
		while (pool->head) {
			struct lua_job *job = pool->head;
			pool->head = job->next;
			free(job);
		}
		pthread_cond_destroy(&pool->cond);
		free(pool);
	}
	vm->threads = NULL;
}

/* ---- registration ------------------------------------------------------- */

static int p_gc(lua_State *L)
{
	(void)L; /* pools are anchored until the VM closes; see l_create */
	return 0;
}

static const luaL_Reg thread_lib[] = {
    {"run", l_run},
    {"create", l_create},
    {"configure", l_configure},
    {NULL, NULL},
};

static const luaL_Reg pool_methods[] = {
    {"run", p_run},
    {NULL, NULL},
};

static const luaL_Reg pool_meta[] = {
    {"__index", NULL},
    {"__tostring", p_tostring},
    {"__gc", p_gc},
    {NULL, NULL},
};

int cs__open_thread(lua_State *L)
{
	cs_vm *vm = cs__vm(L);
	vm->threads = cs__pool_new(vm, vm->max_threads ? vm->max_threads : DEFAULT_THREADS);
	if (!vm->threads)
		return luaL_error(L, "ba.thread: out of memory");
	luaL_newmetatable(L, CS_THREAD_MT);
	luaL_setfuncs(L, pool_meta, 0);
	luaL_newlib(L, pool_methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_sleep);
	lua_setfield(L, -2, "sleep"); /* into ba, which is on top */
	luaL_newlib(L, thread_lib);
	return 1;
}

void cs__vm_lock_init(cs_vm *vm)
{
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_lock(&vm->lock);
	cs_loop_set_wait_hooks(vm->loop, loop_waits, loop_wakes, vm);
}
