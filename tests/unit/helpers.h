/*
 * helpers.h - what the unit tests share: the backend named by
 * CS_TEST_BACKEND, loop creation that skips when the kernel refuses
 * io_uring, a monotonic clock and bounded "drive the loop until" helpers.
 * Header-only: tests/meson.build builds one executable per test file.
 */
#ifndef CS_TEST_HELPERS_H
#define CS_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dispatch.h"

/* Upper bound for anything a test waits for. */
#define T_DEADLINE_MS 10000

static inline uint64_t t_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline enum cs_backend t_backend(void)
{
	const char *b = getenv("CS_TEST_BACKEND");
	if (!b || !*b || !strcmp(b, "epoll"))
		return CS_BACKEND_EPOLL;
	if (!strcmp(b, "uring") || !strcmp(b, "io_uring"))
		return CS_BACKEND_URING;
	cr_assert_fail("CS_TEST_BACKEND=%s: expected uring or epoll", b);
	return CS_BACKEND_EPOLL;
}

static inline const char *t_backend_name(void)
{
	return t_backend() == CS_BACKEND_URING ? "io_uring" : "epoll";
}

/* Whether the kernel lets this process set up an io_uring at all (as
 * liburing's test/helpers.h decides between skip and failure). */
static inline bool t_uring_allowed(void)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	long fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		return !(errno == ENOSYS || errno == EPERM || errno == EACCES);
	close((int)fd);
	return true;
}

/* A loop on the backend under test; cfg may be NULL. Skips the test when
 * io_uring is wanted and the kernel forbids it; any other failure fails. */
static inline cs_loop *t_loop_create(struct cs_loop_config *cfg, const struct cs_conn_ops *ops,
				     void *udata)
{
	struct cs_loop_config dflt = {0};
	if (!cfg)
		cfg = &dflt;
	cfg->backend = t_backend();
	if (cfg->backend == CS_BACKEND_URING && !t_uring_allowed())
		cr_skip_test("io_uring is not available here");
	cs_loop *loop = NULL;
	int r = cs_loop_create(cfg, ops, udata, &loop);
	cr_assert_eq(r, 0, "cs_loop_create(%s): %s", t_backend_name(), strerror(-r));
	cr_assert_str_eq(cs_loop_backend(loop), t_backend_name());
	return loop;
}

/* Poll once, failing the test when the backend reports an error. */
static inline int t_poll(cs_loop *loop, int timeout_ms)
{
	int r = cs_loop_poll(loop, timeout_ms);
	cr_assert_geq(r, 0, "cs_loop_poll: %s", strerror(-r));
	return r;
}

/* Drive loop until cond holds or ms pass; evaluates to cond. */
#define T_POLL_UNTIL(loop, cond, ms)                                                               \
	({                                                                                         \
		uint64_t t_end_ = t_now_ms() + (ms);                                               \
		while (!(cond) && t_now_ms() < t_end_)                                             \
			t_poll((loop), 10);                                                        \
		(bool)(cond);                                                                      \
	})

/* Drive loop for ms, whatever happens (to give a wrong callback its chance). */
static inline void t_poll_for(cs_loop *loop, int ms)
{
	uint64_t end = t_now_ms() + (uint64_t)ms, now;
	while ((now = t_now_ms()) < end)
		t_poll(loop, (int)(end - now));
}

#endif
