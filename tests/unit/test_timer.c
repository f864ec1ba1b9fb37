/*
 * test_timer.c - luabind/timer.c: ba.timer(fn) as BA-API.md §11.2 has it,
 * driven like the daemon drives it (cs_loop_poll + cs_vm_run_ready until
 * cs_vm_busy() is false), with a bounded number of turns.
 */
#include "vm_helpers.h"

TestSuite(timer, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

#define DRIVE() cr_assert(t_vm_drive(200), "the VM is still busy after 200 turns")

Test(timer, set_fires_once_after_the_interval)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1; at = ba.clock() end)\n"
	      "t0 = ba.clock()\n"
	      "assert(t:set(40) == true)\n");
	DRIVE();
	T_LUA("assert(n == 1, 'fired ' .. n .. ' times')\n"
	      "assert(at - t0 >= 35 and at - t0 < 2000, 'fired after ' .. (at - t0) .. ' ms')\n");
}

Test(timer, interval_counts_from_the_set_call)
{
	/* Lua work on the loop thread before set() must not shorten the wait. */
	T_LUA("local c = os.clock()\n"
	      "while os.clock() - c < 0.2 do end\n"
	      "t = ba.timer(function() at = ba.clock() end)\n"
	      "t0 = ba.clock()\n"
	      "t:set(100)\n");
	DRIVE();
	T_LUA("assert(at, 'never fired')\n"
	      "assert(at - t0 >= 95, 'a 100 ms timer fired after ' .. (at - t0) .. ' ms')\n");
}

Test(timer, unreferenced_timer_is_collected_and_never_fires)
{
	T_LUA("n = 0\n"
	      "ba.timer(function() n = n + 1 end):set(20)\n"
	      "collectgarbage(); collectgarbage()\n");
	DRIVE();
	T_LUA("assert(n == 0, 'a collected timer fired')");
}

Test(timer, keepref_keeps_an_unreferenced_timer_alive)
{
	T_LUA("n = 0\n"
	      "ba.timer(function() n = n + 1 end):set(20, true)\n"
	      "collectgarbage(); collectgarbage()\n");
	DRIVE();
	T_LUA("assert(n == 1, 'fired ' .. n .. ' times')");
}

Test(timer, keepref_is_dropped_once_the_timer_stops)
{
	T_LUA("weak = setmetatable({}, {__mode = 'v'})\n"
	      "weak[1] = ba.timer(function() end)\n"
	      "weak[1]:set(10, true)\n"
	      "collectgarbage(); collectgarbage()\n"
	      "assert(weak[1], 'collected while armed with keepref')\n");
	DRIVE();
	T_LUA("collectgarbage(); collectgarbage()\n"
	      "assert(weak[1] == nil, 'still referenced after it stopped')\n");
}

Test(timer, reset_rearms_with_a_new_interval)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1; at = ba.clock() end)\n"
	      "t:set(60000)\n"
	      "t0 = ba.clock()\n"
	      "assert(t:reset(20) == true)\n");
	DRIVE();
	T_LUA("assert(n == 1)\n"
	      "assert(at - t0 < 5000, 'kept the old interval')\n");
}

Test(timer, reset_without_interval_reuses_the_last_one)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1; at = ba.clock() end)\n"
	      "t:set(30)\n");
	DRIVE();
	T_LUA("assert(n == 1)\n"
	      "t0 = ba.clock()\n"
	      "assert(t:reset() == true)\n");
	DRIVE();
	T_LUA("assert(n == 2)\n"
	      "assert(at - t0 >= 25, 'reset() fired after ' .. (at - t0) .. ' ms')\n");
}

Test(timer, cancel_stops_an_armed_timer)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1 end)\n"
	      "t:set(20)\n"
	      "assert(t:cancel() == true)\n"
	      "assert(t:cancel() == nil, 'second cancel of an idle timer')\n");
	DRIVE();
	T_LUA("assert(n == 0)");
}

Test(timer, returning_true_rearms_with_the_same_interval)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1; return n < 5 end)\n"
	      "t:set(5)\n");
	DRIVE();
	T_LUA("assert(n == 5, 'fired ' .. n .. ' times')");
}

Test(timer, yield_true_rearms_and_resumes_where_it_left_off)
{
	T_LUA("steps = {}\n"
	      "t = ba.timer(function()\n"
	      "  local x = 1\n"
	      "  steps[#steps + 1] = x\n"
	      "  coroutine.yield(true)\n"
	      "  x = x + 1\n"
	      "  steps[#steps + 1] = x\n"
	      "  coroutine.yield(true)\n"
	      "  x = x + 1\n"
	      "  steps[#steps + 1] = x\n"
	      "end)\n"
	      "t:set(5)\n");
	DRIVE();
	T_LUA("assert(#steps == 3, 'ran ' .. #steps .. ' times')\n"
	      "assert(steps[1] == 1 and steps[2] == 2 and steps[3] == 3, 'state lost')\n");
}

Test(timer, plain_yield_pauses_until_the_next_set)
{
	T_LUA("steps = {}\n"
	      "t = ba.timer(function()\n"
	      "  steps[#steps + 1] = 'a'\n"
	      "  coroutine.yield()\n"
	      "  steps[#steps + 1] = 'b'\n"
	      "end)\n"
	      "t:set(5)\n");
	DRIVE(); /* paused: nothing keeps the VM busy */
	T_LUA("assert(table.concat(steps) == 'a', table.concat(steps))\n"
	      "t:set(5)\n");
	DRIVE();
	T_LUA("assert(table.concat(steps) == 'ab', 'resumed at ' .. table.concat(steps))\n"
	      "t:set(5)\n");
	DRIVE();
	T_LUA("assert(table.concat(steps) == 'aba', 'a finished callback starts over')");
}

Test(timer, runnow_that_does_not_continue_returns_false_and_stays_idle)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1 end)\n"
	      "assert(t:set(10, false, true) == false)\n"
	      "assert(n == 1, 'runnow did not run the callback')\n");
	DRIVE();
	T_LUA("assert(n == 1, 'armed although the callback did not continue')");
}

Test(timer, runnow_that_continues_returns_true_and_arms)
{
	T_LUA("n = 0\n"
	      "t = ba.timer(function() n = n + 1; return n < 3 end)\n"
	      "assert(t:set(10, false, true) == true)\n"
	      "assert(n == 1)\n");
	DRIVE();
	T_LUA("assert(n == 3, 'fired ' .. n .. ' times')");
}

Test(timer, failing_callback_is_logged_and_poisons_the_timer)
{
	T_LUA("t = ba.timer(function() error('boom') end)\n"
	      "t:set(5)\n");
	DRIVE();
	const struct t_record *r = t_find_log("Timer callback failed");
	cr_assert_not_null(r, "no 'Timer callback failed' record; last: %s", t_last_log());
	cr_expect_eq(r->prio, CS_LOG_ERR);
	cr_expect_not_null(strstr(r->line, "boom"), "%s", r->line);
	cr_expect_null(strchr(r->line, '\n'), "one line per record");
	T_LUA("for _, m in ipairs({'set', 'reset', 'cancel'}) do\n"
	      "  local ok, e = pcall(t[m], t, 10)\n"
	      "  assert(not ok, m .. ' did not raise')\n"
	      "  assert(tostring(e):find('Timer callback failed', 1, true), m .. ': ' .. tostring(e))\n"
	      "end\n");
	DRIVE();
}

Test(timer, failing_callback_does_not_stop_other_timers)
{
	T_LUA("n = 0\n"
	      "bad = ba.timer(function() error('boom') end)\n"
	      "good = ba.timer(function() n = n + 1; return n < 3 end)\n"
	      "bad:set(5); good:set(10)\n");
	DRIVE();
	T_LUA("assert(n == 3)");
}
