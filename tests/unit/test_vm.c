/*
 * test_vm.c - luabind/vm.c: running chunks (the arg table, errors), the
 * trace/tracep/print log records, cosockd.exit().
 */
#include "vm_helpers.h"

TestSuite(vm, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

static int run_with_args(const char *src, int argc, char **argv, int script_index)
{
	return cs_vm_run_chunk(t_vm, src, strlen(src), "=test", argc, argv, script_index);
}

/* The one record src logs, checked for prio and text. */
static void expect_record(const char *src, int prio, const char *line)
{
	int before = t_nlog;
	T_LUA(src);
	cr_assert_eq(t_nlog, before + 1, "%s: %d records", src, t_nlog - before);
	cr_expect_eq(t_log[before].prio, prio, "%s: prio %d", src, t_log[before].prio);
	cr_expect_str_eq(t_log[before].line, line, "%s", src);
}

/* ---- arg ----------------------------------------------------------------- */

Test(vm, script_arguments_fill_arg_and_the_chunk_varargs)
{
	char *argv[] = {"cosockd", "script.lua", "a", "b"};
	int r = run_with_args("assert(arg[-1] == 'cosockd', tostring(arg[-1]))\n"
			      "assert(arg[0] == 'script.lua', tostring(arg[0]))\n"
			      "assert(arg[1] == 'a' and arg[2] == 'b')\n"
			      "assert(#arg == 2, #arg)\n"
			      "assert(select('#', ...) == 2)\n"
			      "local x, y = ...\n"
			      "assert(x == 'a' and y == 'b')\n",
			      4, argv, 1);
	cr_expect_eq(r, 0, "%s", t_last_log());
}

Test(vm, script_without_arguments_gets_an_arg_table_with_only_the_script)
{
	char *argv[] = {"only.lua"};
	int r = run_with_args("assert(arg[0] == 'only.lua')\n"
			      "assert(#arg == 0 and arg[-1] == nil)\n"
			      "assert(select('#', ...) == 0)\n",
			      1, argv, 0);
	cr_expect_eq(r, 0, "%s", t_last_log());
}

/* ---- trace, tracep, print ---------------------------------------------- */

Test(vm, trace_prefixes_function_and_line_and_separates_with_tabs)
{
	expect_record("local function foo()\n"
		      "  trace('a', 2, nil, true)\n"
		      "end\n"
		      "foo()\n",
		      CS_LOG_INFO, "foo 2: a\t2\tnil\ttrue");
}

Test(vm, trace_from_the_main_chunk_names_main)
{
	expect_record("\n\ntrace('x')", CS_LOG_INFO, "main 3: x");
}

Test(vm, trace_uses_tostring)
{
	expect_record("local function f()\n"
		      "  trace(setmetatable({}, {__tostring = function() return 'obj' end}))\n"
		      "end\n"
		      "f()\n",
		      CS_LOG_INFO, "f 2: obj");
}

Test(vm, tracep_maps_priorities_and_has_no_prefix_by_default)
{
	expect_record("tracep(0, 'e', 1)", CS_LOG_ERR, "e\t1");
	expect_record("tracep(1, 'w')", CS_LOG_WARNING, "w");
	expect_record("tracep(2, 'n')", CS_LOG_NOTICE, "n");
	expect_record("tracep(5, 'i')", CS_LOG_INFO, "i");
	expect_record("tracep(6, 'd')", CS_LOG_DEBUG, "d");
}

Test(vm, tracep_with_showfuncline_prefixes)
{
	expect_record("local function g()\n"
		      "  tracep(true, 3, 'x', 'y')\n"
		      "end\n"
		      "g()\n",
		      CS_LOG_INFO, "g 2: x\ty");
	expect_record("tracep(false, 0, 'z')", CS_LOG_ERR, "z");
}

Test(vm, print_logs_tab_separated_values_without_prefix)
{
	expect_record("print('a', 1, 2.5, false)", CS_LOG_INFO, "a\t1\t2.5\tfalse");
}

Test(vm, multi_line_text_becomes_one_record)
{
	expect_record("print('l1\\nl2\\n\\tl3')", CS_LOG_INFO, "l1 | l2 | l3");
}

Test(vm, a_lone_newline_becomes_one_record)
{
	/* Run under ASan: log_oneline() sizes its buffer 2n+1 for n bytes. */
	expect_record("print('\\n')", CS_LOG_INFO, " | ");
}

/* ---- cosockd.exit ------------------------------------------------------- */

Test(vm, exit_with_a_code_is_reported)
{
	int code = -1;
	cr_expect_not(cs_vm_exit_requested(t_vm, &code));
	T_LUA("cosockd.exit(3)");
	cr_assert(cs_vm_exit_requested(t_vm, &code));
	cr_expect_eq(code, 3);
}

Test(vm, exit_without_a_code_means_zero)
{
	int code = -1;
	T_LUA("cosockd.exit()");
	cr_assert(cs_vm_exit_requested(t_vm, &code));
	cr_expect_eq(code, 0);
}

Test(vm, exit_does_not_stop_the_chunk)
{
	T_LUA("cosockd.exit(1); after_exit = true");
	T_LUA("assert(after_exit)");
}

/* ---- errors ------------------------------------------------------------- */

Test(vm, runtime_error_returns_minus_one_and_logs_a_one_line_traceback)
{
	int before = t_nlog;
	int r = t_lua_run("local function boom()\n"
			  "  error('kaboom')\n"
			  "end\n"
			  "boom()\n");
	cr_assert_eq(r, -1);
	cr_assert_eq(t_nlog, before + 1);
	const struct t_record *rec = &t_log[before];
	cr_expect_eq(rec->prio, CS_LOG_ERR);
	cr_expect_not_null(strstr(rec->line, "test:2: kaboom"), "%s", rec->line);
	cr_expect_not_null(strstr(rec->line, "stack traceback:"), "%s", rec->line);
	cr_expect_not_null(strstr(rec->line, "boom"), "%s", rec->line);
	cr_expect_null(strchr(rec->line, '\n'), "newline in the record: %s", rec->line);
}

Test(vm, syntax_error_returns_minus_one_and_logs_one_line)
{
	int before = t_nlog;
	cr_assert_eq(t_lua_run("local x = = 1"), -1);
	cr_assert_eq(t_nlog, before + 1);
	cr_expect_eq(t_log[before].prio, CS_LOG_ERR);
	cr_expect_not_null(strstr(t_log[before].line, "test:1:"), "%s", t_log[before].line);
	cr_expect_null(strchr(t_log[before].line, '\n'));
}

Test(vm, non_string_error_is_described)
{
	cr_assert_eq(t_lua_run("error({})"), -1);
	cr_expect_not_null(t_find_log("error object is a table value"), "%s", t_last_log());
}

Test(vm, state_survives_a_failed_chunk)
{
	T_LUA("kept = 42");
	cr_assert_eq(t_lua_run("error('x')"), -1);
	T_LUA("assert(kept == 42)");
}

Test(vm, lua_release_is_5_4)
{
	cr_expect_eq(strncmp(cs_vm_lua_release(), "Lua 5.4", 7), 0, "%s", cs_vm_lua_release());
}
