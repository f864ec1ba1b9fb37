/*
 * test_loop.c - dispatch/loop.c: loop life cycle, the timer heap,
 * cross-thread posts and wake-ups, the connection slot table.
 * Runs against the backend named by CS_TEST_BACKEND.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "helpers.h"
#include "internal.h" /* slot generations and completion tags */

static void no_recv(cs_conn *c, const char *d, ssize_t n) { cr_assert_fail("unexpected recv"); }
static void no_accept(cs_conn *c, int fd) { cr_assert_fail("unexpected accept"); }
static void no_connect(cs_conn *c, int err) { cr_assert_fail("unexpected connect"); }
static void no_drain(cs_conn *c) {}
static void no_release(cs_loop *l, uintptr_t cookie) {}

static const struct cs_conn_ops ops = {
	.recv = no_recv, .accept = no_accept, .connect = no_connect,
	.drain = no_drain, .release = no_release,
};

static cs_loop *loop;

static void setup(void) { loop = t_loop_create(NULL, &ops, NULL); }
static void teardown(void)
{
	if (loop)
		cs_loop_destroy(loop);
	loop = NULL;
}

TestSuite(loop, .init = setup, .fini = teardown, .timeout = 30);

/* ---- life cycle -------------------------------------------------------- */

Test(loop, create_reports_backend_and_empty_stats)
{
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_str_eq(cs_loop_backend(loop), t_backend_name());
	cr_expect_eq(st.conns, 0);
	cr_expect_eq(st.timers, 0);
	cr_expect_eq(st.max_conns, 262144, "default max_conns");
	cr_expect_null(cs_loop_udata(loop));
}

Test(loop, poll_with_nothing_to_do_times_out)
{
	uint64_t t0 = t_now_ms();
	cr_expect_eq(t_poll(loop, 30), 0);
	uint64_t took = t_now_ms() - t0;
	cr_expect_geq(took, 25, "poll returned after %llu ms", (unsigned long long)took);
	cr_expect_geq(cs_loop_now(loop), t0 + 25, "cs_loop_now() is read again after the wait");
}

/* The wait hooks bracket the sleeping syscall: a timer callback runs after
 * the "after" hook, never between the two. */
static int hook_before, hook_after;
static bool hook_inside;

static void on_wait_before(void *arg)
{
	cr_assert_eq(arg, &hook_before);
	cr_assert(!hook_inside, "before() twice without after()");
	hook_inside = true;
	hook_before++;
}

static void on_wait_after(void *arg)
{
	cr_assert(hook_inside, "after() without before()");
	hook_inside = false;
	hook_after++;
}

static bool hook_timer_saw_inside;
static void hook_timer_fired(cs_timer *t)
{
	(void)t;
	hook_timer_saw_inside = hook_inside;
}

Test(loop, wait_hooks_bracket_every_wait_and_no_callback)
{
	cs_loop_set_wait_hooks(loop, on_wait_before, on_wait_after, &hook_before);
	cs_timer t;
	cs_timer_init(&t, hook_timer_fired);
	cr_assert_eq(cs_timer_start(loop, &t, 20), 0);
	uint64_t t0 = t_now_ms();
	while (t_now_ms() - t0 < 200 && cs_timer_armed(&t))
		t_poll(loop, 50);
	cr_assert(!cs_timer_armed(&t), "the timer did not fire");
	cr_expect_geq(hook_before, 1);
	cr_expect_eq(hook_before, hook_after);
	cr_expect(!hook_inside);
	cr_expect(!hook_timer_saw_inside, "a callback ran between before() and after()");
	cs_loop_set_wait_hooks(loop, NULL, NULL, NULL);
	t_poll(loop, 0);
	cr_expect_eq(hook_before, hook_after);
}

Test(loop, destroy_closes_open_conns)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cs_conn *c;
	cr_assert_eq(cs_conn_open(loop, sv[0], NULL, &c), 0);
	cs_loop_destroy(loop);
	loop = NULL;
	char b;
	cr_expect_eq(read(sv[1], &b, 1), 0, "peer sees EOF once the loop is gone");
	close(sv[1]);
}

/* ---- timers ------------------------------------------------------------ */

struct ttimer {
	cs_timer t;
	int fired;
	int order;        /* position in the firing sequence */
	uint64_t fired_at; /* cs_loop_now() when it fired */
	int rearm;        /* re-arm itself this many more times */
	uint64_t rearm_ms;
};

static int fire_seq;

static void on_fire(cs_timer *t)
{
	struct ttimer *x = (struct ttimer *)t;
	x->fired++;
	x->order = fire_seq++;
	x->fired_at = cs_loop_now(loop);
	cr_expect_not(cs_timer_armed(t), "a firing timer is no longer armed");
	if (x->rearm > 0) {
		x->rearm--;
		cr_assert_eq(cs_timer_start(loop, t, x->rearm_ms), 0);
	}
}

#define NTIMERS 400

static struct ttimer timers[NTIMERS];

/* Arm NTIMERS timers with pseudo-random deadlines in [0, 150) ms. */
static void arm_random(unsigned seed)
{
	srand(seed);
	for (int i = 0; i < NTIMERS; i++) {
		memset(&timers[i], 0, sizeof(timers[i]));
		cs_timer_init(&timers[i].t, on_fire);
		cr_assert_eq(cs_timer_start(loop, &timers[i].t, (uint64_t)(rand() % 150)), 0);
		cr_assert(cs_timer_armed(&timers[i].t));
	}
}

/* Every timer that fired did so once, not early, and in deadline order. */
static void expect_fired_in_order(const bool *stopped)
{
	static struct ttimer *by_order[NTIMERS];
	int n = 0;
	memset(by_order, 0, sizeof(by_order));
	for (int i = 0; i < NTIMERS; i++) {
		if (stopped && stopped[i]) {
			cr_expect_eq(timers[i].fired, 0, "stopped timer %d fired", i);
			continue;
		}
		cr_assert_eq(timers[i].fired, 1, "timer %d fired %d times", i, timers[i].fired);
		cr_expect_geq(timers[i].fired_at, timers[i].t.due, "timer %d fired early", i);
		by_order[timers[i].order] = &timers[i];
		n++;
	}
	for (int k = 1; k < n; k++)
		cr_expect_leq(by_order[k - 1]->t.due, by_order[k]->t.due,
			      "firing #%d (due %llu) after one due %llu", k,
			      (unsigned long long)by_order[k]->t.due,
			      (unsigned long long)by_order[k - 1]->t.due);
}

Test(loop, timers_fire_in_deadline_order)
{
	fire_seq = 0;
	arm_random(12345);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, NTIMERS);
	cr_assert(T_POLL_UNTIL(loop, fire_seq == NTIMERS, T_DEADLINE_MS), "%d of %d fired", fire_seq,
		  NTIMERS);
	expect_fired_in_order(NULL);
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, 0);
}

Test(loop, stopped_timers_never_fire_and_the_rest_keep_order)
{
	static bool stopped[NTIMERS];
	int nstopped = 0;
	fire_seq = 0;
	arm_random(777);
	/* Stop every third one, which takes entries from all over the heap,
	 * then also the one at the root. */
	for (int i = 0; i < NTIMERS; i++) {
		stopped[i] = i % 3 == 0;
		if (stopped[i]) {
			cs_timer_stop(loop, &timers[i].t);
			cr_assert_not(cs_timer_armed(&timers[i].t));
			nstopped++;
		}
	}
	int root = -1;
	for (int i = 0; i < NTIMERS; i++)
		if (!stopped[i] && (root < 0 || timers[i].t.due < timers[root].t.due))
			root = i;
	cs_timer_stop(loop, &timers[root].t);
	stopped[root] = true;
	nstopped++;

	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, (uint32_t)(NTIMERS - nstopped));
	cr_assert(T_POLL_UNTIL(loop, fire_seq == NTIMERS - nstopped, T_DEADLINE_MS));
	t_poll_for(loop, 20);
	cr_expect_eq(fire_seq, NTIMERS - nstopped);
	expect_fired_in_order(stopped);
}

Test(loop, stop_of_an_unarmed_timer_is_a_no_op)
{
	struct ttimer a = {0}, b = {0};
	cs_timer_init(&a.t, on_fire);
	cs_timer_init(&b.t, on_fire);
	cr_assert_eq(cs_timer_start(loop, &b.t, 5), 0);
	cs_timer_stop(loop, &a.t);
	cs_timer_stop(loop, &a.t);
	cr_assert(T_POLL_UNTIL(loop, b.fired == 1, T_DEADLINE_MS));
	cs_timer_stop(loop, &b.t); /* after it fired */
	cr_expect_eq(a.fired, 0);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, 0);
}

Test(loop, start_of_an_armed_timer_moves_its_deadline)
{
	struct ttimer a = {0};
	cs_timer_init(&a.t, on_fire);
	cr_assert_eq(cs_timer_start(loop, &a.t, 60000), 0);
	cr_assert_eq(cs_timer_start(loop, &a.t, 1), 0);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, 1, "re-arming does not add a second heap entry");
	cr_assert(T_POLL_UNTIL(loop, a.fired == 1, 2000), "timer kept its old deadline");
	t_poll_for(loop, 20);
	cr_expect_eq(a.fired, 1);
}

Test(loop, timer_rearmed_from_its_callback_fires_again)
{
	struct ttimer a = {0};
	cs_timer_init(&a.t, on_fire);
	a.rearm = 4;
	a.rearm_ms = 2;
	cr_assert_eq(cs_timer_start(loop, &a.t, 2), 0);
	cr_assert(T_POLL_UNTIL(loop, a.fired == 5, T_DEADLINE_MS), "fired %d times", a.fired);
	t_poll_for(loop, 20);
	cr_expect_eq(a.fired, 5);
	cr_expect_not(cs_timer_armed(&a.t));
}

struct tpost {
	cs_post p;
	int runs;
	bool wrong_thread;
	int seq; /* order among the posts of one producer */
	int producer;
};

static pthread_t loop_thread;
static int total_runs;

static void run_post(cs_post *p)
{
	struct tpost *x = (struct tpost *)p;
	x->runs++;
	if (!pthread_equal(pthread_self(), loop_thread))
		x->wrong_thread = true;
	total_runs++;
}

Test(loop, zero_interval_timer_does_not_starve_posts_or_other_timers)
{
	struct ttimer z = {0}, later = {0};
	cs_timer_init(&z.t, on_fire);
	cs_timer_init(&later.t, on_fire);
	z.rearm = 1000000; /* re-arms itself for "now", forever */
	z.rearm_ms = 0;
	struct tpost post = {.p.run = run_post};
	loop_thread = pthread_self();
	total_runs = 0;
	cr_assert_eq(cs_timer_start(loop, &z.t, 0), 0);
	cr_assert_eq(cs_timer_start(loop, &later.t, 20), 0);
	cs_loop_post(loop, &post.p);
	cr_assert(T_POLL_UNTIL(loop, later.fired && post.runs, 2000),
		  "later timer fired %d, post ran %d, zero timer fired %d times", later.fired,
		  post.runs, z.fired);
	cr_expect_gt(z.fired, 0);
	cs_timer_stop(loop, &z.t);
}

/* Two timers due in the same poll; whichever fires first stops the other. */
static struct ttimer *rivals[2];

static void stop_rival(cs_timer *t)
{
	on_fire(t);
	cs_timer_stop(loop, &rivals[(struct ttimer *)t == rivals[0] ? 1 : 0]->t);
}

Test(loop, timer_stopped_by_a_callback_of_the_same_poll_does_not_fire)
{
	struct ttimer a = {0}, b = {0};
	rivals[0] = &a;
	rivals[1] = &b;
	cs_timer_init(&a.t, stop_rival);
	cs_timer_init(&b.t, stop_rival);
	cr_assert_eq(cs_timer_start(loop, &a.t, 0), 0);
	cr_assert_eq(cs_timer_start(loop, &b.t, 0), 0);
	t_poll(loop, 0);
	t_poll_for(loop, 20);
	cr_expect_eq(a.fired + b.fired, 1, "a fired %d, b fired %d", a.fired, b.fired);
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	cr_expect_eq(st.timers, 0);
}

/* loop.c run_timers(): "Timers re-armed by their own callback for "now"
 * wait for the next poll". */
Test(loop, zero_interval_timer_fires_once_per_poll)
{
	struct ttimer z = {0}, idle[8];
	memset(idle, 0, sizeof(idle));
	for (int i = 0; i < 8; i++) {
		cs_timer_init(&idle[i].t, on_fire);
		cr_assert_eq(cs_timer_start(loop, &idle[i].t, 60000), 0);
	}
	cs_timer_init(&z.t, on_fire);
	z.rearm = 1000000;
	z.rearm_ms = 0;
	cr_assert_eq(cs_timer_start(loop, &z.t, 0), 0);
	t_poll(loop, 0);
	cr_expect_eq(z.fired, 1, "one poll fired the zero-interval timer %d times", z.fired);
	t_poll(loop, 0);
	cr_expect_eq(z.fired, 2, "two polls fired the zero-interval timer %d times", z.fired);
}

/* ---- posts and wake-ups ------------------------------------------------ */

#define NPRODUCERS 8
#define NPOSTS 2000

static struct tpost posts[NPRODUCERS][NPOSTS];
static int last_seq[NPRODUCERS];
static bool out_of_order;

static void run_ordered_post(cs_post *p)
{
	struct tpost *x = (struct tpost *)p;
	if (x->seq != last_seq[x->producer] + 1)
		out_of_order = true;
	last_seq[x->producer] = x->seq;
	run_post(p);
}

static void *producer(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (int j = 0; j < NPOSTS; j++)
		cs_loop_post(loop, &posts[id][j].p);
	return NULL;
}

Test(loop, posts_from_many_threads_run_once_each_on_the_loop_thread)
{
	loop_thread = pthread_self();
	total_runs = 0;
	for (int i = 0; i < NPRODUCERS; i++) {
		last_seq[i] = -1;
		for (int j = 0; j < NPOSTS; j++)
			posts[i][j] = (struct tpost){.p.run = run_ordered_post, .seq = j, .producer = i};
	}
	pthread_t th[NPRODUCERS];
	for (int i = 0; i < NPRODUCERS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i), 0);
	bool all = T_POLL_UNTIL(loop, total_runs == NPRODUCERS * NPOSTS, T_DEADLINE_MS);
	for (int i = 0; i < NPRODUCERS; i++)
		pthread_join(th[i], NULL);
	cr_assert(all, "%d of %d posts ran", total_runs, NPRODUCERS * NPOSTS);
	t_poll_for(loop, 20);
	cr_expect_eq(total_runs, NPRODUCERS * NPOSTS, "a post ran twice");
	for (int i = 0; i < NPRODUCERS; i++)
		for (int j = 0; j < NPOSTS; j++) {
			cr_assert_eq(posts[i][j].runs, 1, "post %d/%d ran %d times", i, j,
				     posts[i][j].runs);
			cr_assert_not(posts[i][j].wrong_thread, "post %d/%d ran off the loop thread", i, j);
		}
	cr_expect_not(out_of_order, "posts of one thread ran out of order");
}

Test(loop, post_from_the_loop_thread_runs_on_next_poll)
{
	struct tpost p = {.p.run = run_post};
	loop_thread = pthread_self();
	total_runs = 0;
	cs_loop_post(loop, &p.p);
	cr_expect_eq(p.runs, 0, "a post never runs inside cs_loop_post()");
	uint64_t t0 = t_now_ms();
	t_poll(loop, 5000);
	cr_expect_eq(p.runs, 1);
	cr_expect_lt(t_now_ms() - t0, 2500, "the post did not wake the poll");
}

static void *waker(void *arg)
{
	cs_loop_wake(arg);
	return NULL;
}

Test(loop, wake_from_another_thread_ends_a_sleeping_poll)
{
	pthread_t th;
	uint64_t t0 = t_now_ms();
	cr_assert_eq(pthread_create(&th, NULL, waker, loop), 0);
	t_poll(loop, 5000);
	uint64_t took = t_now_ms() - t0;
	pthread_join(th, NULL);
	cr_expect_lt(took, 2500, "poll slept %llu ms despite cs_loop_wake()", (unsigned long long)took);
}

Test(loop, wakes_coalesce_and_do_not_keep_the_loop_awake)
{
	for (int i = 0; i < 100; i++)
		cs_loop_wake(loop);
	t_poll(loop, 1000);
	uint64_t t0 = t_now_ms();
	t_poll(loop, 50);
	cr_expect_geq(t_now_ms() - t0, 40, "an old wake-up ended a later poll early");
}

/* ---- slots ------------------------------------------------------------- */

/* Put one end of a fresh socketpair under the loop; *peer gets the other. */
static cs_conn *open_pair(int *peer)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cs_conn *c;
	int r = cs_conn_open(loop, sv[0], NULL, &c);
	cr_assert_eq(r, 0, "cs_conn_open: %s", strerror(-r));
	*peer = sv[1];
	return c;
}

static uint32_t conns_in_use(void)
{
	struct cs_loop_stats st;
	cs_loop_stats(loop, &st);
	return st.conns;
}

Test(loop, closed_slot_is_reused_with_a_new_generation)
{
	int peer;
	cs_conn *a = open_pair(&peer);
	uint32_t id = cs_conn_id(a);
	uint64_t tag = cs__tag(loop, a);
	uint32_t gen = a->gen;
	cr_expect_eq(conns_in_use(), 1);
	cs_conn_close(a, false);
	close(peer);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS));

	cs_conn *b = open_pair(&peer);
	cr_expect_eq(cs_conn_id(b), id, "the free slot is reused");
	cr_expect_neq(b->gen, gen, "the generation moved on");
	cr_expect_null(cs__conn_by_tag(loop, tag), "a stale tag names no conn");
	cr_expect_eq(cs__conn_by_tag(loop, cs__tag(loop, b)), b);
	cs_conn_close(b, false);
	close(peer);
}

Test(loop, many_open_close_rounds_reuse_ids_and_return_to_zero)
{
	enum { ROUNDS = 300, PER_ROUND = 8 };
	for (int r = 0; r < ROUNDS; r++) {
		cs_conn *c[PER_ROUND];
		int peer[PER_ROUND];
		for (int k = 0; k < PER_ROUND; k++) {
			c[k] = open_pair(&peer[k]);
			cr_assert_lt(cs_conn_id(c[k]), PER_ROUND, "round %d: id %u not reused", r,
				     cs_conn_id(c[k]));
		}
		cr_assert_eq(conns_in_use(), PER_ROUND);
		for (int k = 0; k < PER_ROUND; k++) {
			cs_conn_close(c[k], k % 2 == 0);
			close(peer[k]);
		}
		cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 0, T_DEADLINE_MS), "round %d", r);
	}
}

Test(loop, open_beyond_max_conns_fails_with_enfile_and_closes_fd)
{
	cs_loop_destroy(loop);
	struct cs_loop_config cfg = {.max_conns = 4};
	loop = t_loop_create(&cfg, &ops, NULL);
	cs_conn *c[4];
	int peer[4];
	for (int k = 0; k < 4; k++)
		c[k] = open_pair(&peer[k]);

	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cs_conn *extra = NULL;
	cr_expect_eq(cs_conn_open(loop, sv[0], NULL, &extra), -ENFILE);
	cr_expect_eq(fcntl(sv[0], F_GETFD), -1, "the loop owns the fd also on failure");
	char b;
	cr_expect_eq(read(sv[1], &b, 1), 0, "peer of the refused fd sees EOF");
	close(sv[1]);

	cs_conn_close(c[1], false);
	close(peer[1]);
	cr_assert(T_POLL_UNTIL(loop, conns_in_use() == 3, T_DEADLINE_MS));
	c[1] = open_pair(&peer[1]);
	cr_expect_eq(cs_conn_id(c[1]), 1u);
	for (int k = 0; k < 4; k++)
		close(peer[k]);
}
