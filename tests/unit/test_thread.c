/*
 * test_thread.c - luabind/thread.c: ba.thread pools, the VM lock shared
 * with the loop's wait, ba.sleep in each context, and stopping jobs when
 * the VM goes away.
 */
#include "vm_helpers.h"

TestSuite(thread, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

/* Drive until the chunk's global `done` is true (at most ~5 s). */
static void drive_until_done(void)
{
	for (int i = 0; i < 500; i++) {
		if (t_lua_run("if not done then error('not yet') end") == 0)
			return;
		t_nlog--; /* the "not yet" record */
		cs_vm_run_ready(t_vm);
		t_poll(t_vloop, 10);
	}
	cr_assert_fail("the job did not finish");
}

Test(thread, run_executes_the_job_on_a_pool_thread_in_a_coroutine)
{
	T_LUA("done = false\n"
	      "n = ba.thread.run(function()\n"
	      "  inco = coroutine.isyieldable()\n"
	      "  nosock = ba.socket.getsock() == nil\n"
	      "  done = true\n"
	      "end)");
	drive_until_done();
	T_LUA("assert(math.type(n) == 'integer' and n >= 1, n)\n"
	      "assert(inco, 'not in a coroutine')\n"
	      "assert(nosock, 'getsock() on a pool thread')");
}

Test(thread, a_dedicated_pool_runs_jobs_in_order_and_survives_errors)
{
	T_LUA("order = {}\n"
	      "local p = ba.thread.create()\n"
	      "p:run(function() order[#order+1] = 1; error('job one fails') end)\n"
	      "p:run(function() order[#order+1] = 2 end)\n"
	      "p:run(function() order[#order+1] = 3; done = true end)");
	drive_until_done();
	T_LUA("assert(table.concat(order, ',') == '1,2,3', table.concat(order, ','))");
	const struct t_record *r = t_find_log("job one fails");
	cr_assert(r, "the job's error was not logged");
	cr_expect_eq(r->prio, CS_LOG_ERR);
	cr_expect(strstr(r->line, "Thread: ") == r->line, "%s", r->line);
	cr_expect(strstr(r->line, "stack traceback"), "%s", r->line);
}

Test(thread, configure_raises_the_limit_and_rejects_nonsense)
{
	T_LUA("assert(ba.thread.configure(20) == 20)\n"
	      "assert(ba.thread.configure(3) == 20, 'configure shrank the pool')\n"
	      "assert(not pcall(ba.thread.configure, 0))\n"
	      "assert(not pcall(ba.thread.configure, 5000))");
}

Test(thread, sleep_on_a_pool_thread_leaves_the_loop_running)
{
	T_LUA("ticks = 0\n"
	      "local t = ba.timer(function() ticks = ticks + 1 return true end)\n"
	      "t:set(10, true)\n"
	      "ba.thread.run(function()\n"
	      "  local t0 = ba.clock()\n"
	      "  ba.sleep(200)\n"
	      "  slept = ba.clock() - t0\n"
	      "  t:cancel()\n"
	      "  done = true\n"
	      "end)");
	drive_until_done();
	T_LUA("assert(slept >= 195, slept)\n"
	      "assert(ticks >= 8, 'the loop stood still while the job slept: ' .. ticks)");
}

Test(thread, sleep_outside_cosockets_and_pool_threads_raises)
{
	T_LUA("local ok, e = pcall(ba.sleep, 1)\n"
	      "assert(not ok and e:find('dispatcher thread', 1, true), e)\n"
	      "ba.timer(function()\n"
	      "  local ok2, e2 = pcall(ba.sleep, 1)\n"
	      "  timer_ok, timer_err = ok2, e2\n"
	      "  done = true\n"
	      "end):set(1, true)");
	drive_until_done();
	T_LUA("assert(not timer_ok and timer_err:find('dispatcher thread', 1, true), timer_err)");
}

Test(thread, sleep_in_a_cosocket_suspends_only_that_coroutine)
{
	T_LUA("ticks = 0\n"
	      "local t = ba.timer(function() ticks = ticks + 1 return true end)\n"
	      "t:set(10, true)\n"
	      "ba.socket.event(function()\n"
	      "  local t0 = ba.clock()\n"
	      "  nvals = select('#', ba.sleep(150))\n"
	      "  slept = ba.clock() - t0\n"
	      "  t:cancel()\n"
	      "  done = true\n"
	      "end)");
	drive_until_done();
	T_LUA("assert(slept >= 145, slept)\n"
	      "assert(nvals == 0, nvals)\n"
	      "assert(ticks >= 6, ticks)");
}

Test(thread, the_vm_is_busy_while_a_job_runs)
{
	T_LUA("ba.thread.run(function() ba.sleep(100) done = true end)");
	cr_expect(cs_vm_busy(t_vm), "a running job does not keep the worker busy");
	cr_assert(t_vm_drive(200), "the worker did not go idle after the job");
	T_LUA("assert(done)");
}

Test(thread, a_computing_job_steps_aside_when_the_loop_wants_the_lock)
{
	T_LUA("ticks = 0\n"
	      "local t = ba.timer(function() ticks = ticks + 1 return true end)\n"
	      "t:set(5, true)\n"
	      "ba.thread.run(function()\n"
	      "  local t0, x = ba.clock(), 0\n"
	      "  while ba.clock() - t0 < 300 do x = x + 1 end\n"
	      "  t:cancel()\n"
	      "  done = true\n"
	      "end)");
	drive_until_done();
	T_LUA("assert(ticks >= 10, 'the loop was starved by a computing job: ' .. ticks)");
}

Test(thread, destroying_the_vm_stops_a_job_that_never_ends)
{
	T_LUA("ba.thread.run(function() started = true while true do end end)");
	for (int i = 0; i < 100; i++) {
		cs_vm_run_ready(t_vm);
		t_poll(t_vloop, 10);
		if (t_lua_run("assert(started)") == 0)
			break;
		t_nlog--;
	}
	cs_vm_destroy(t_vm);
	t_vm = NULL;
	cr_expect(t_find_log("sysshutdown: job stopped"), "the endless job was not stopped: %s",
		  t_last_log());
}
