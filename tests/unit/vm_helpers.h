/*
 * vm_helpers.h - a loop (backend from CS_TEST_BACKEND) with a Lua VM on
 * top, the log records it produced, and bounded ways to run Lua and drive
 * the loop. For the luabind tests; header-only like helpers.h.
 */
#ifndef CS_TEST_VM_HELPERS_H
#define CS_TEST_VM_HELPERS_H

#include <stdio.h>

#include "helpers.h"
#include "luabind.h"

#define T_MAXLOG 256
#define T_LOGLEN 4096

struct t_record {
	int prio;
	char line[T_LOGLEN];
};

static struct t_record t_log[T_MAXLOG];
static int t_nlog;
static cs_loop *t_vloop;
static cs_vm *t_vm;

static inline void t_log_cb(int prio, const char *line)
{
	cr_assert_lt(t_nlog, T_MAXLOG, "too many log records");
	t_log[t_nlog].prio = prio;
	snprintf(t_log[t_nlog].line, T_LOGLEN, "%s", line);
	t_nlog++;
}

static inline const char *t_last_log(void) { return t_nlog ? t_log[t_nlog - 1].line : "(no log)"; }

/* The first record containing needle, or NULL. */
static inline const struct t_record *t_find_log(const char *needle)
{
	for (int i = 0; i < t_nlog; i++)
		if (strstr(t_log[i].line, needle))
			return &t_log[i];
	return NULL;
}

static inline void t_vm_setup(void)
{
	t_nlog = 0;
	t_vloop = t_loop_create(NULL, &cs_vm_conn_ops, NULL);
	struct cs_vm_config cfg = {.loop = t_vloop, .log = t_log_cb};
	cr_assert_eq(cs_vm_create(&cfg, &t_vm), 0);
}

static inline void t_vm_teardown(void)
{
	if (t_vm)
		cs_vm_destroy(t_vm);
	if (t_vloop)
		cs_loop_destroy(t_vloop);
	t_vm = NULL;
	t_vloop = NULL;
}

/* Run a chunk named "=test" (so error positions read "test:LINE:"). */
static inline int t_lua_run(const char *src)
{
	static char *argv[] = {"test.lua"};
	return cs_vm_run_chunk(t_vm, src, strlen(src), "=test", 1, argv, 0);
}

/* Run a chunk that must succeed; its assert()s are the test's. */
#define T_LUA(src)                                                                                 \
	do {                                                                                       \
		int t_n_ = t_nlog;                                                                 \
		int t_r_ = t_lua_run(src);                                                         \
		cr_assert_eq(t_r_, 0, "Lua chunk failed: %s", t_nlog > t_n_ ? t_last_log() : "?");  \
	} while (0)

/* Drive loop and VM until nothing can happen any more, as the daemon does,
 * for at most max_iter turns of at most 50 ms. Returns whether it went idle. */
static inline bool t_vm_drive(int max_iter)
{
	for (int i = 0; i < max_iter; i++) {
		bool more = cs_vm_run_ready(t_vm);
		if (!more && !cs_vm_busy(t_vm))
			return true;
		t_poll(t_vloop, more ? 0 : 50);
	}
	return false;
}

#endif
