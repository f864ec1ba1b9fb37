/*
 * test_pool.c - dispatch/pool.c: work() off the loop thread, done() on it,
 * FIFO start order, destroy with jobs still queued.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"
#include "pool.h"

static void no_recv(cs_conn *c, const char *d, ssize_t n) {}
static void no_accept(cs_conn *c, int fd) {}
static void no_connect(cs_conn *c, int err) {}
static void no_drain(cs_conn *c) {}
static void no_release(cs_loop *l, uintptr_t cookie) {}
static const struct cs_conn_ops ops = {
	.recv = no_recv, .accept = no_accept, .connect = no_connect,
	.drain = no_drain, .release = no_release,
};

static cs_loop *loop;
static pthread_t loop_thread;

static void setup(void)
{
	loop = t_loop_create(NULL, &ops, NULL);
	loop_thread = pthread_self();
}

static void teardown(void)
{
	if (loop)
		cs_loop_destroy(loop);
}

TestSuite(pool, .init = setup, .fini = teardown, .timeout = 30);

#define NJOBS 64

struct tjob {
	cs_job job;
	int index;
	atomic_bool worked;
	bool work_on_loop_thread;
	int done_calls;
	bool done_off_loop_thread;
	bool done_before_work;
};

static struct tjob jobs[NJOBS];
static int ndone;

/* Start order, written by pool threads. */
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static int started[NJOBS];
static int nstarted;

/* A gate the first job of a test may wait on. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open = true, gate_reached;

static void work(cs_job *j)
{
	struct tjob *t = (struct tjob *)j;
	pthread_mutex_lock(&order_lock);
	started[nstarted++] = t->index;
	pthread_mutex_unlock(&order_lock);
	if (pthread_equal(pthread_self(), loop_thread))
		t->work_on_loop_thread = true;
	if (t->index == 0) {
		pthread_mutex_lock(&gate_lock);
		gate_reached = true;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
		pthread_mutex_unlock(&gate_lock);
	}
	atomic_store(&t->worked, true);
}

static void done(cs_job *j)
{
	struct tjob *t = (struct tjob *)j;
	t->done_calls++;
	if (!pthread_equal(pthread_self(), loop_thread))
		t->done_off_loop_thread = true;
	if (!atomic_load(&t->worked))
		t->done_before_work = true;
	ndone++;
}

static void init_jobs(void)
{
	ndone = nstarted = 0;
	for (int i = 0; i < NJOBS; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].index = i;
		jobs[i].job.work = work;
		jobs[i].job.done = done;
	}
}

static void expect_each_done_once_after_work(void)
{
	for (int i = 0; i < NJOBS; i++) {
		cr_expect_eq(jobs[i].done_calls, 1, "job %d: done ran %d times", i, jobs[i].done_calls);
		cr_expect_not(jobs[i].work_on_loop_thread, "job %d: work ran on the loop thread", i);
		cr_expect_not(jobs[i].done_off_loop_thread, "job %d: done ran off the loop thread", i);
		cr_expect_not(jobs[i].done_before_work, "job %d: done ran before work", i);
	}
}

Test(pool, work_runs_off_the_loop_thread_and_done_on_it)
{
	cs_pool *pool;
	cr_assert_eq(cs_pool_create(loop, 4, &pool), 0);
	init_jobs();
	for (int i = 0; i < NJOBS; i++)
		cs_pool_submit(pool, &jobs[i].job);
	cr_assert(T_POLL_UNTIL(loop, ndone == NJOBS, T_DEADLINE_MS), "%d of %d done", ndone, NJOBS);
	t_poll_for(loop, 20);
	expect_each_done_once_after_work();
	cr_expect_eq(cs_pool_pending(pool), 0);
	cs_pool_destroy(pool);
}

Test(pool, done_never_runs_outside_cs_loop_poll)
{
	cs_pool *pool;
	cr_assert_eq(cs_pool_create(loop, 2, &pool), 0);
	init_jobs();
	cs_pool_submit(pool, &jobs[1].job);
	for (uint64_t end = t_now_ms() + T_DEADLINE_MS; !atomic_load(&jobs[1].worked) && t_now_ms() < end;)
		sched_yield();
	cr_assert(atomic_load(&jobs[1].worked));
	cr_expect_eq(jobs[1].done_calls, 0);
	cr_assert(T_POLL_UNTIL(loop, jobs[1].done_calls == 1, T_DEADLINE_MS));
	cr_expect_eq(cs_pool_pending(pool), 0);
	cs_pool_destroy(pool);
}

Test(pool, one_thread_starts_jobs_in_submission_order)
{
	cs_pool *pool;
	cr_assert_eq(cs_pool_create(loop, 1, &pool), 0);
	init_jobs();
	for (int i = 0; i < NJOBS; i++)
		cs_pool_submit(pool, &jobs[i].job);
	cr_assert(T_POLL_UNTIL(loop, ndone == NJOBS, T_DEADLINE_MS));
	pthread_mutex_lock(&order_lock);
	for (int i = 0; i < NJOBS; i++)
		cr_expect_eq(started[i], i, "start #%d was job %d", i, started[i]);
	pthread_mutex_unlock(&order_lock);
	cs_pool_destroy(pool);
}

/* Use-after-free detector for the destroyed pool. glibc hands a block just
 * freed by this thread back to the next malloc of its size class, so
 * zeroed blocks of every small size taken right after cs_pool_destroy()
 * are very likely to include the pool's memory. Whatever writes them
 * later still used the freed pool. (Under ASan the access itself fails.) */
enum { PROBE_MIN = 32, PROBE_MAX = 1024, PROBE_STEP = 16 };
static unsigned char *probes[(PROBE_MAX - PROBE_MIN) / PROBE_STEP + 1];

static size_t probe_size(int i) { return PROBE_MIN + (size_t)i * PROBE_STEP; }

static void take_back_freed_memory(void)
{
	for (int i = 0; i < (int)(sizeof(probes) / sizeof(probes[0])); i++) {
		/* Not calloc (glibc's skips the cache), and not malloc+memset,
		 * which the compiler turns into calloc. */
		probes[i] = malloc(probe_size(i));
		if (probes[i])
			explicit_bzero(probes[i], probe_size(i));
	}
}

static void expect_freed_memory_untouched(void)
{
	for (int i = 0; i < (int)(sizeof(probes) / sizeof(probes[0])); i++) {
		size_t k = 0;
		while (probes[i] && k < probe_size(i) && probes[i][k] == 0)
			k++;
		cr_expect(!probes[i] || k == probe_size(i),
			  "memory freed by cs_pool_destroy() was written while done() callbacks ran "
			  "(%zu-byte block, offset %zu)", probe_size(i), k);
		free(probes[i]);
		probes[i] = NULL;
	}
}

static void *open_gate_soon(void *arg)
{
	/* The main thread is about to block in cs_pool_destroy(); give it a
	 * moment to get there so that it finds jobs still queued. The
	 * assertions hold either way; the delay only picks the harder case. */
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	return NULL;
}

Test(pool, destroy_finishes_queued_jobs_and_their_done_still_runs)
{
	cs_pool *pool;
	cr_assert_eq(cs_pool_create(loop, 1, &pool), 0);
	init_jobs();
	gate_open = false;
	gate_reached = false;
	for (int i = 0; i < NJOBS; i++)
		cs_pool_submit(pool, &jobs[i].job);
	/* Job 0 holds the only thread; the other jobs are queued. */
	pthread_mutex_lock(&gate_lock);
	while (!gate_reached)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
	cr_expect_eq(cs_pool_pending(pool), NJOBS);

	pthread_t opener;
	cr_assert_eq(pthread_create(&opener, NULL, open_gate_soon, NULL), 0);
	cs_pool_destroy(pool);
	pthread_join(opener, NULL);
	take_back_freed_memory();
	for (int i = 0; i < NJOBS; i++)
		cr_expect(atomic_load(&jobs[i].worked), "queued job %d was dropped by destroy", i);
	cr_expect_eq(ndone, 0, "done() waits for the loop");

	cr_assert(T_POLL_UNTIL(loop, ndone == NJOBS, T_DEADLINE_MS), "%d of %d done", ndone, NJOBS);
	expect_each_done_once_after_work();
	expect_freed_memory_untouched();
}

Test(pool, destroy_of_an_idle_pool_returns)
{
	cs_pool *pool;
	cr_assert_eq(cs_pool_create(loop, 3, &pool), 0);
	cs_pool_destroy(pool);
}
