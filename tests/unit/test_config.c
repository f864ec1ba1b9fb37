/*
 * test_config.c - daemon/config.c: every setting at and beyond its bounds,
 * unknown and read-only names, the sandbox's library, the scripts list
 * (resolution next to the file, then in the data directory; arguments;
 * holes and bad entries), the instruction and memory bounds, error lines,
 * compiling scripts without running them, and cs_config_free after
 * failures.
 *
 * Each test gets a fresh directory with conf/ (the configuration's
 * directory) and data/ (the data directory).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dispatch.h"

static char dir[64];
static char conf_file[128];
static char conf_dir[96];
static char data_dir[96];

static void setup(void)
{
	strcpy(dir, "/tmp/cs-config-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(conf_dir, sizeof(conf_dir), "%s/conf", dir);
	snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
	snprintf(conf_file, sizeof(conf_file), "%s/cosockd.lua", conf_dir);
	cr_assert_eq(mkdir(conf_dir, 0755), 0);
	cr_assert_eq(mkdir(data_dir, 0755), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 60);

/* A path below the test directory, in one of a few rotating buffers. */
static const char *at(const char *fmt, ...)
{
	static char bufs[8][320];
	static unsigned next;
	char rel[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	char *b = bufs[next++ % 8];
	snprintf(b, 320, "%s/%s", dir, rel);
	return b;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Load text as conf/cosockd.lua with data/ as the data directory. */
static int load(const char *text, struct cs_config *c, char *err, size_t n)
{
	write_file(conf_file, text);
	err[0] = '\0';
	return cs_config_load(conf_file, data_dir, c, err, n);
}

/* text (with "scripts" appended) must load; a.lua exists next to it. */
static void load_ok(const char *text, struct cs_config *c)
{
	char buf[4096], err[512];
	write_file(at("conf/a.lua"), "return 1\n");
	snprintf(buf, sizeof(buf), "%s\nscripts = {\"a.lua\"}\n", text);
	int r = load(buf, c, err, sizeof(err));
	cr_assert_eq(r, 0, "%s: %s", text, err);
}

/* text must fail with exactly "conf/cosockd.lua<want>". */
static void load_fails(const char *text, const char *want)
{
	struct cs_config c;
	char err[512], full[512];
	write_file(at("conf/a.lua"), "return 1\n");
	int r = load(text, &c, err, sizeof(err));
	snprintf(full, sizeof(full), "%s%s", conf_file, want);
	cr_assert_eq(r, -1, "%s: loaded", text);
	cr_expect_str_eq(err, full, "for: %s", text);
	cr_expect_null(c.scripts);
	cr_expect_eq(c.nscripts, 0);
	cr_expect_null(c.path);
	cs_config_free(&c);
}

Test(config, nothing_set_but_scripts)
{
	struct cs_config c;
	load_ok("", &c);
	cr_expect_str_eq(c.path, conf_file);
	cr_expect_eq(c.workers, 0);
	cr_expect_eq(c.backend, -1);
	cr_expect_eq(c.max_conns, 0);
	cr_expect_eq(c.threads, 0);
	cr_expect_null(c.state_dir);
	cr_expect_eq(c.shutdown_grace_ms, -1);
	cr_expect_eq(c.reload_grace_ms, -1);
	cr_assert_eq(c.nscripts, 1);
	cr_expect_str_eq(c.scripts[0].path, at("conf/a.lua"));
	cr_assert_eq(c.scripts[0].argc, 1);
	cr_expect_str_eq(c.scripts[0].argv[0], at("conf/a.lua"));
	cr_expect_null(c.scripts[0].argv[1]);
	cs_config_free(&c);
	cr_expect_null(c.path);
	cr_expect_eq(c.nscripts, 0);
	cs_config_free(&c); /* twice is fine */
}

Test(config, workers_bounds)
{
	struct cs_config c;
	load_ok("workers = 1", &c);
	cr_expect_eq(c.workers, 1);
	cs_config_free(&c);
	load_ok("workers = 1024", &c);
	cr_expect_eq(c.workers, 1024);
	cs_config_free(&c);
	load_ok("workers = 8.0", &c);
	cr_expect_eq(c.workers, 8);
	cs_config_free(&c);
	load_ok("workers = 'auto'", &c);
	cr_expect_eq(c.workers, -1);
	cs_config_free(&c);
	load_ok("workers = 4 workers = nil", &c);
	cr_expect_eq(c.workers, 0);
	cs_config_free(&c);

	load_fails("workers = 0", ":1: workers must be \"auto\" or 1-1024, got 0");
	load_fails("\nworkers = 1025", ":2: workers must be \"auto\" or 1-1024, got 1025");
	load_fails("workers = 2.5", ":1: workers must be \"auto\" or 1-1024, got 2.5");
	load_fails("workers = '4'", ":1: workers must be \"auto\" or 1-1024, got \"4\"");
	load_fails("workers = 'AUTO'", ":1: workers must be \"auto\" or 1-1024, got \"AUTO\"");
	load_fails("workers = true", ":1: workers must be \"auto\" or 1-1024, got true");
	load_fails("workers = {}", ":1: workers must be \"auto\" or 1-1024, got a table");
}

Test(config, backend_values)
{
	static const struct {
		const char *text;
		int want;
	} ok[] = {
	    {"backend = 'auto'", CS_BACKEND_AUTO},
	    {"backend = 'uring'", CS_BACKEND_URING},
	    {"backend = 'epoll'", CS_BACKEND_EPOLL},
	    {"backend = 'epoll' backend = nil", -1},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct cs_config c;
		load_ok(ok[i].text, &c);
		cr_expect_eq(c.backend, ok[i].want, "%s", ok[i].text);
		cs_config_free(&c);
	}
	load_fails("backend = 'io_uring'",
		   ":1: backend must be \"auto\", \"uring\" or \"epoll\", got \"io_uring\"");
	load_fails("backend = 1", ":1: backend must be \"auto\", \"uring\" or \"epoll\", got 1");
}

Test(config, counts_bounds)
{
	struct cs_config c;
	load_ok("max_connections = 1 threads = 1", &c);
	cr_expect_eq(c.max_conns, 1);
	cr_expect_eq(c.threads, 1);
	cs_config_free(&c);
	load_ok("max_connections = 4194304 threads = 1024", &c);
	cr_expect_eq(c.max_conns, 4194304);
	cr_expect_eq(c.threads, 1024);
	cs_config_free(&c);
	/* settings read back: a value may be computed from another */
	load_ok("threads = 4\nmax_connections = threads * 1000", &c);
	cr_expect_eq(c.max_conns, 4000);
	cs_config_free(&c);

	load_fails("max_connections = 0", ":1: max_connections must be an integer 1-4194304, got 0");
	load_fails("max_connections = 4194305",
		   ":1: max_connections must be an integer 1-4194304, got 4194305");
	load_fails("max_connections = 1.5", ":1: max_connections must be an integer 1-4194304, got 1.5");
	load_fails("threads = 0", ":1: threads must be an integer 1-1024, got 0");
	load_fails("threads = 1025", ":1: threads must be an integer 1-1024, got 1025");
	load_fails("threads = '8'", ":1: threads must be an integer 1-1024, got \"8\"");
}

Test(config, grace_bounds)
{
	struct cs_config c;
	load_ok("shutdown_grace = 0 reload_grace = 0", &c);
	cr_expect_eq(c.shutdown_grace_ms, 0);
	cr_expect_eq(c.reload_grace_ms, 0);
	cs_config_free(&c);
	load_ok("shutdown_grace = 3600 reload_grace = 86400", &c);
	cr_expect_eq(c.shutdown_grace_ms, 3600000);
	cr_expect_eq(c.reload_grace_ms, 86400000);
	cs_config_free(&c);
	load_ok("shutdown_grace = 0.25 reload_grace = 1.5", &c);
	cr_expect_eq(c.shutdown_grace_ms, 250);
	cr_expect_eq(c.reload_grace_ms, 1500);
	cs_config_free(&c);

	load_fails("shutdown_grace = -1", ":1: shutdown_grace must be a number of seconds 0-3600, got -1");
	load_fails("shutdown_grace = 3600.5",
		   ":1: shutdown_grace must be a number of seconds 0-3600, got 3600.5");
	load_fails("shutdown_grace = '5'",
		   ":1: shutdown_grace must be a number of seconds 0-3600, got \"5\"");
	load_fails("reload_grace = 86401", ":1: reload_grace must be a number of seconds 0-86400, got 86401");
	load_fails("reload_grace = -0.5", ":1: reload_grace must be a number of seconds 0-86400, got -0.5");
	load_fails("reload_grace = 0/0", ":1: reload_grace must be a number of seconds 0-86400, got -nan");
}

Test(config, state_dir)
{
	struct cs_config c;
	load_ok("state_dir = '/var/lib/x'", &c);
	cr_expect_str_eq(c.state_dir, "/var/lib/x");
	cs_config_free(&c);
	load_ok("state_dir = 'state'", &c);
	cr_expect_str_eq(c.state_dir, at("conf/state"));
	cs_config_free(&c);
	load_ok("state_dir = '/x' state_dir = nil", &c);
	cr_expect_null(c.state_dir);
	cs_config_free(&c);

	load_fails("state_dir = ''", ":1: state_dir must be a directory path (a non-empty string), got \"\"");
	load_fails("state_dir = 5", ":1: state_dir must be a directory path (a non-empty string), got 5");
	/* a strdup'ed state_dir is released when a later line fails */
	load_fails("state_dir = '/x'\nthreads = 0", ":2: threads must be an integer 1-1024, got 0");
}

Test(config, unknown_and_read_only)
{
	load_fails("workrs = 4", ":1: unknown setting 'workrs'");
	load_fails("local x = 1\n\nfunction helper() end", ":3: unknown setting 'helper'");
	load_fails("string = nil", ":1: unknown setting 'string'");
	load_fails("_ENV[1] = 2", ":1: unknown setting 1");
	load_fails("confdir = '/tmp'", ":1: 'confdir' is read-only");
	load_fails("datadir = '/tmp'", ":1: 'datadir' is read-only");

	/* locals are free, and may shadow anything */
	struct cs_config c;
	load_ok("local workrs = 4\nlocal confdir = 'x'\nlocal function f() return 2 end\nworkers = f()", &c);
	cr_expect_eq(c.workers, 2);
	cs_config_free(&c);
}

Test(config, sandbox_library)
{
	struct cs_config c;
	char text[2048];
	cr_assert_eq(setenv("CS_TEST_CONFIG_DIR", "/srv/state", 1), 0);
	snprintf(text, sizeof(text),
		 "for _, name in ipairs{'io', 'require', 'load', 'loadfile', 'dofile', 'print',\n"
		 "  'package', 'debug', 'coroutine', 'setmetatable', 'getmetatable', 'rawset',\n"
		 "  'rawget', 'collectgarbage', 'xpcall', '_G', 'arg', 'cosockd', 'ba'} do\n"
		 "  assert(_ENV[name] == nil, name .. ' is visible')\n"
		 "end\n"
		 "assert(os.execute == nil and os.exit == nil and os.remove == nil, 'os')\n"
		 "assert(string.format('%%d', 3) == '3' and table.concat({1, 2}, ',') == '1,2')\n"
		 "assert(math.max(1, 2) == 2 and utf8.char(65) == 'A' and tostring(1) == '1')\n"
		 "assert(tonumber('7') == 7 and type(1) == 'number' and select('#', 1, 2) == 2)\n"
		 "assert(pcall(error, 'x') == false and next({}) == nil)\n"
		 "for _ in pairs({1}) do end\n"
		 "assert(confdir == '%s', confdir)\n"
		 "assert(datadir == '%s', datadir)\n"
		 "assert(getmetatable == nil and (''):rep(2) == '')\n"
		 "state_dir = os.getenv('CS_TEST_CONFIG_DIR')\n",
		 conf_dir, data_dir);
	load_ok(text, &c);
	cr_expect_str_eq(c.state_dir, "/srv/state");
	cs_config_free(&c);

	load_fails("print('hi')", ":1: attempt to call a nil value (global 'print')");
	load_fails("\nos.execute('true')", ":2: attempt to call a nil value (field 'execute')");
	load_fails("require('os')", ":1: attempt to call a nil value (global 'require')");
	load_fails("io.open('/etc/passwd')", ":1: attempt to index a nil value (global 'io')");
	load_fails("load('x = 1')()", ":1: attempt to call a nil value (global 'load')");
	load_fails("dofile('/dev/null')", ":1: attempt to call a nil value (global 'dofile')");
}

Test(config, script_resolution_order)
{
	struct cs_config c;
	char err[512];
	write_file(at("conf/both.lua"), "");
	write_file(at("data/both.lua"), "");
	write_file(at("data/only_data.lua"), "");
	cr_assert_eq(mkdir(at("other"), 0755), 0);
	write_file(at("other/abs.lua"), "");
	char text[1024];
	snprintf(text, sizeof(text), "scripts = {'both.lua', 'only_data.lua', '%s', './both.lua'}",
		 at("other/abs.lua"));
	cr_assert_eq(load(text, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nscripts, 4);
	cr_expect_str_eq(c.scripts[0].path, at("conf/both.lua"));
	cr_expect_str_eq(c.scripts[1].path, at("data/only_data.lua"));
	cr_expect_str_eq(c.scripts[2].path, at("other/abs.lua"));
	cr_expect_str_eq(c.scripts[3].path, at("conf/both.lua"));
	for (int i = 0; i < 4; i++)
		cr_expect_str_eq(c.scripts[i].argv[0], c.scripts[i].path);
	cs_config_free(&c);

	/* without a data directory, only next to the file */
	write_file(conf_file, "scripts = {'only_data.lua'}");
	cr_assert_eq(cs_config_load(conf_file, NULL, &c, err, sizeof(err)), -1);
	char want[512];
	snprintf(want, sizeof(want), "%s:1: script 'only_data.lua' not found in %s", conf_file, conf_dir);
	cr_expect_str_eq(err, want);
	cs_config_free(&c);
}

Test(config, script_errors)
{
	char want[512];
	snprintf(want, sizeof(want), ":1: script 'nope.lua' not found in %s or %s", conf_dir, data_dir);
	load_fails("scripts = {'a.lua', 'nope.lua'}", want);
	load_fails("scripts = {'/nonexistent/x.lua'}",
		   ":1: script '/nonexistent/x.lua': cannot open: No such file or directory");
	cr_assert_eq(mkdir(at("conf/sub.lua"), 0755), 0);
	snprintf(want, sizeof(want), ":1: script 'sub.lua' (%s): not a regular file", at("conf/sub.lua"));
	load_fails("scripts = {'sub.lua'}", want);
	/* a directory next to the file is not skipped for one in datadir */
	write_file(at("data/sub.lua"), "");
	load_fails("scripts = {'sub.lua'}", want);
	if (geteuid() != 0) {
		write_file(at("conf/secret.lua"), "");
		cr_assert_eq(chmod(at("conf/secret.lua"), 0), 0);
		snprintf(want, sizeof(want), ":1: script 'secret.lua' (%s): cannot open: Permission denied",
			 at("conf/secret.lua"));
		load_fails("scripts = {'secret.lua'}", want);
	}
}

Test(config, scripts_list_shape)
{
	load_fails("workers = 2", ": scripts is required: a list of the Lua scripts to run");
	load_fails("scripts = {}", ":1: scripts must not be empty");
	load_fails("scripts = 'a.lua'", ":1: scripts must be a list of scripts (a table), got \"a.lua\"");
	load_fails("scripts = {'a.lua', nil, 'a.lua'}",
		   ":1: scripts[2] must be a path or {path, arg...}, got nil");
	load_fails("scripts = {'a.lua', 5}", ":1: scripts[2] must be a path or {path, arg...}, got 5");
	load_fails("scripts = {x = 'a.lua'}", ":1: scripts must be a list, but has the key \"x\"");
	load_fails("scripts = {[0] = 'a.lua'}", ":1: scripts must be a list, but has the key 0");
	load_fails("scripts = {{}}", ":1: scripts[1][1] must be the script's path (a string), got nil");
	load_fails("scripts = {{[2] = 'x'}}",
		   ":1: scripts[1][1] must be the script's path (a string), got nil");
	load_fails("scripts = {{'a.lua', {}}}",
		   ":1: scripts[1][2] must be a string or a number, got a table");
	load_fails("scripts = {{'a.lua', 'x', nil, 'y'}}",
		   ":1: scripts[1][3] must be a string or a number, got nil");
	load_fails("scripts = {{'a.lua', k = 1}}", ":1: scripts[1] must be a list, but has the key \"k\"");
	load_fails("scripts = {''}", ":1: scripts[1]: the path must be a non-empty string without NUL bytes");

	/* the list may be built after it is assigned */
	struct cs_config c;
	char err[512];
	write_file(at("conf/a.lua"), "");
	cr_assert_eq(
	    load("scripts = {}\nscripts[1] = 'a.lua'\ntable.insert(scripts, 'a.lua')", &c, err, sizeof(err)),
	    0, "%s", err);
	cr_expect_eq(c.nscripts, 2);
	cs_config_free(&c);
}

Test(config, script_args)
{
	struct cs_config c;
	char err[512];
	write_file(at("conf/a.lua"), "");
	write_file(at("data/b.lua"), "");
	cr_assert_eq(load("scripts = {{'a.lua', 'x', 3, 1.5, ''}, 'b.lua', {'b.lua'}}", &c, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(c.nscripts, 3);
	struct cs_config_script *s = &c.scripts[0];
	cr_assert_eq(s->argc, 5);
	cr_expect_str_eq(s->argv[0], at("conf/a.lua"));
	cr_expect_str_eq(s->argv[1], "x");
	cr_expect_str_eq(s->argv[2], "3");
	cr_expect_str_eq(s->argv[3], "1.5");
	cr_expect_str_eq(s->argv[4], "");
	cr_expect_null(s->argv[5]);
	cr_expect_eq(c.scripts[1].argc, 1);
	cr_expect_str_eq(c.scripts[1].argv[0], at("data/b.lua"));
	cr_expect_null(c.scripts[1].argv[1]);
	cr_expect_eq(c.scripts[2].argc, 1);
	cr_expect_str_eq(c.scripts[2].path, at("data/b.lua"));
	cs_config_free(&c);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(config, infinite_loop_stops)
{
	double t0 = now_s();
	load_fails("while true do end", ": the configuration did not finish (instruction limit)");
	/* a pcall inside the file cannot swallow the limit */
	load_fails("workers = 2\nwhile true do pcall(function() while true do end end) end",
		   ": the configuration did not finish (instruction limit)");
	load_fails("local function f() return f() end f()",
		   ": the configuration did not finish (instruction limit)");
	cr_expect_lt(now_s() - t0, 20.0, "the instruction limit took %.1f s", now_s() - t0);
}

Test(config, memory_bomb_stops)
{
	load_fails("local t = {} for i = 1, 1e9 do t[i] = i end",
		   ": the configuration needs too much memory (limit 16 MiB)");
	load_fails("local s = string.rep('x', 1 << 30)",
		   ": the configuration needs too much memory (limit 16 MiB)");
	load_fails("local t = {} for i = 1, 1e9 do t[i] = tostring(i) .. 'padding-padding' end",
		   ": the configuration needs too much memory (limit 16 MiB)");
	/* garbage that the collector reclaims is fine */
	struct cs_config c;
	load_ok("for i = 1, 200000 do local s = {i, tostring(i)} end", &c);
	cs_config_free(&c);
}

Test(config, syntax_and_runtime_errors)
{
	load_fails("workers = 4\nthreads = = 2\n", ":2: unexpected symbol near '='");
	load_fails("\n\nerror('boom')", ":3: boom");
	load_fails("error('multi\\nline')", ":1: multi line");
	load_fails("error({})", ": error object is a table value");
	load_fails("error(42)", ": 42");
	load_fails("error('plain', 0)", ": plain");
	load_fails("local x = nil + 1", ":1: attempt to perform arithmetic on a nil value");
	/* a configuration is text, never a precompiled chunk */
	load_fails("\x1bLua", ": attempt to load a binary chunk (mode is 't')");
}

Test(config, file_errors)
{
	struct cs_config c;
	char err[512], want[512];
	const char *missing = at("conf/missing.lua");
	cr_assert_eq(cs_config_load(missing, data_dir, &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", missing);
	cr_expect_str_eq(err, want);
	cr_expect_null(c.path);
	cs_config_free(&c);

	cr_assert_eq(cs_config_load(conf_dir, data_dir, &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", conf_dir);
	cr_expect_str_eq(err, want);
	cs_config_free(&c);

	/* a short buffer gets a truncated, terminated message */
	char small[8];
	memset(small, 'z', sizeof(small));
	cr_assert_eq(cs_config_load(missing, data_dir, &c, small, sizeof(small)), -1);
	cr_expect_eq(strlen(small), 7);
	cr_expect_eq(memcmp(small, missing, 7), 0);
	cs_config_free(&c);
}

Test(config, relative_file_resolves_absolute)
{
	struct cs_config c;
	char err[512];
	write_file(conf_file, "assert(confdir:sub(1, 1) == '/')\nscripts = {'a.lua'}");
	write_file(at("conf/a.lua"), "");
	cr_assert_eq(chdir(dir), 0);
	cr_assert_eq(cs_config_load("conf/cosockd.lua", "data", &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.path, "conf/cosockd.lua");
	cr_expect_str_eq(c.scripts[0].path, at("conf/a.lua"));
	cs_config_free(&c);
	cr_assert_eq(chdir(conf_dir), 0);
	cr_assert_eq(cs_config_load("cosockd.lua", NULL, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.scripts[0].path, at("conf/a.lua"));
	cs_config_free(&c);
}

Test(config, shebang_and_bom_keep_lines)
{
	load_fails("#!/usr/sbin/cosockd -c\nworkers = 1\nthreads = 0",
		   ":3: threads must be an integer 1-1024, got 0");
	load_fails("\xEF\xBB\xBFworkers = 1\nthreads = 0", ":2: threads must be an integer 1-1024, got 0");
}

struct reports {
	int n;
	char lines[4][512];
};

static void collect(const char *line, void *arg)
{
	struct reports *r = arg;
	if (r->n < 4)
		snprintf(r->lines[r->n], sizeof(r->lines[0]), "%s", line);
	r->n++;
}

Test(config, compile_reports_bad_scripts)
{
	struct cs_config c;
	char err[512], want[512];
	/* good.lua would exit the process if it ran: compiling must not run it */
	write_file(at("conf/good.lua"), "#!/usr/sbin/cosockd\nos.exit(3)\nlocal x = ...\n");
	write_file(at("conf/bad.lua"), "local a = 1\nlocal b = = 2\n");
	write_file(at("data/bad2.lua"), "#!/usr/sbin/cosockd\n\nlocal x = = 1\n");
	cr_assert_eq(load("scripts = {'good.lua', 'bad.lua', {'bad2.lua', 'x'}}", &c, err, sizeof(err)), 0,
		     "%s", err);
	struct reports r = {0};
	cr_expect_eq(cs_config_compile(&c, collect, &r), 2);
	cr_assert_eq(r.n, 2);
	snprintf(want, sizeof(want), "%s:2: unexpected symbol near '='", at("conf/bad.lua"));
	cr_expect_str_eq(r.lines[0], want);
	snprintf(want, sizeof(want), "%s:3: unexpected symbol near '='", at("data/bad2.lua"));
	cr_expect_str_eq(r.lines[1], want);

	/* a script gone between load and compile */
	cr_assert_eq(unlink(at("conf/good.lua")), 0);
	r.n = 0;
	cr_expect_eq(cs_config_compile(&c, collect, &r), 3);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", at("conf/good.lua"));
	cr_expect_str_eq(r.lines[0], want);
	cs_config_free(&c);

	/* an empty configuration compiles nothing */
	cr_expect_eq(cs_config_compile(&c, collect, &r), 0);
}

Test(config, compile_one_script)
{
	char err[512], want[512];
	write_file(at("one.lua"), "\xEF\xBB\xBF"
				  "local t = {\n1,\n2\n");
	cr_assert_eq(cs_config_compile_script(at("one.lua"), err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:4: '}' expected (to close '{' at line 1) near <eof>", at("one.lua"));
	cr_expect_str_eq(err, want);
	write_file(at("two.lua"), "return ...\n");
	cr_expect_eq(cs_config_compile_script(at("two.lua"), err, sizeof(err)), 0);
	cr_assert_eq(cs_config_compile_script(at("none.lua"), err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", at("none.lua"));
	cr_expect_str_eq(err, want);
}

Test(config, free_is_safe)
{
	struct cs_config c;
	memset(&c, 0, sizeof(c));
	cs_config_free(&c);
	cr_expect_eq(c.backend, -1);
	cr_expect_eq(c.shutdown_grace_ms, -1);
	/* a failure after scripts were partly resolved leaves nothing behind */
	char err[512];
	write_file(at("conf/a.lua"), "");
	memset(&c, 0xa5, sizeof(c)); /* need not be initialised */
	cr_assert_eq(load("state_dir = '/s'\nscripts = {{'a.lua', 'x'}, 'a.lua', 'missing.lua'}", &c, err,
			  sizeof(err)),
		     -1);
	cr_expect_null(c.scripts);
	cr_expect_eq(c.nscripts, 0);
	cr_expect_null(c.state_dir);
	cr_expect_null(c.path);
	cs_config_free(&c);
	cs_config_free(&c);
}

/* The repository's default configuration loads as documented and its
 * script compiles. */
Test(config, packaged_configuration)
{
	struct cs_config c;
	char err[512];
	const char *file = CS_SOURCE_DIR "/packaging/cosockd.lua";
	cr_assert_eq(cs_config_load(file, data_dir, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.workers, 1);
	cr_expect_eq(c.backend, CS_BACKEND_AUTO);
	cr_expect_eq(c.max_conns, 262144);
	cr_expect_eq(c.threads, 8);
	cr_expect_null(c.state_dir);
	cr_expect_eq(c.shutdown_grace_ms, 5000);
	cr_expect_eq(c.reload_grace_ms, 30000);
	cr_assert_eq(c.nscripts, 1);
	cr_expect_str_eq(c.scripts[0].path, CS_SOURCE_DIR "/packaging/default.lua");
	cr_expect_eq(c.scripts[0].argc, 1);
	struct reports r = {0};
	cr_expect_eq(cs_config_compile(&c, collect, &r), 0, "%s", r.lines[0]);
	cs_config_free(&c);
}

struct lines {
	int n;
	char line[32][512];
};

static void keep_line(const char *line, void *arg)
{
	struct lines *l = arg;
	cr_expect_null(strchr(line, '\n'), "a problem spans lines: %s", line);
	if (l->n < 32)
		snprintf(l->line[l->n], sizeof(l->line[0]), "%s", line);
	l->n++;
}

/* Load text reporting every problem into *l; returns what load returned. */
static int load_all(const char *text, struct lines *l)
{
	struct cs_config c;
	write_file(conf_file, text);
	memset(l, 0, sizeof(*l));
	int r = cs_config_load_report(conf_file, data_dir, &c, keep_line, l);
	cr_expect_eq(r, l->n);
	if (r) {
		cr_expect_null(c.scripts);
		cr_expect_null(c.path);
	}
	cs_config_free(&c);
	return r;
}

static void expect_line(const struct lines *l, int i, const char *want)
{
	char full[512];
	snprintf(full, sizeof(full), "%s%s", conf_file, want);
	cr_assert_lt(i, l->n, "want line %d (%s), got %d lines", i, want, l->n);
	cr_expect_str_eq(l->line[i], full);
}

Test(config, every_problem_reported)
{
	struct lines l;
	char want[512];
	write_file(at("conf/a.lua"), "");
	/* bad values, an unknown name, a read-only one and two bad scripts */
	cr_expect_eq(load_all("-- test\nworkers = 0\nbackend = 'fast'\nworkrs = 2\nconfdir = 'x'\n"
			      "scripts = {'a.lua', 'nope.lua', 7}\n",
			      &l),
		     6);
	cr_assert_eq(l.n, 6);
	expect_line(&l, 0, ":2: workers must be \"auto\" or 1-1024, got 0");
	expect_line(&l, 1, ":3: backend must be \"auto\", \"uring\" or \"epoll\", got \"fast\"");
	expect_line(&l, 2, ":4: unknown setting 'workrs'");
	expect_line(&l, 3, ":5: 'confdir' is read-only");
	snprintf(want, sizeof(want), ":6: script 'nope.lua' not found in %s or %s", conf_dir, data_dir);
	expect_line(&l, 4, want);
	expect_line(&l, 5, ":6: scripts[3] must be a path or {path, arg...}, got 7");

	/* a value read back after a bad assignment is what was written, so it
	 * causes no error of its own; confdir keeps its value */
	snprintf(want, sizeof(want),
		 "threads = 'x'\nassert(threads == 'x')\nconfdir = 1\nassert(confdir == '%s')\n"
		 "scripts = {'a.lua'}",
		 conf_dir);
	cr_expect_eq(load_all(want, &l), 2);

	/* a runtime error ends the pass after what came before it */
	cr_expect_eq(load_all("threads = 0\nerror('stop here')\nworkers = 0", &l), 2);
	expect_line(&l, 0, ":1: threads must be an integer 1-1024, got 0");
	expect_line(&l, 1, ":2: stop here");

	/* a syntax error is the only problem: nothing ran */
	cr_expect_eq(load_all("threads = 0\nworkers = = 1", &l), 1);
	expect_line(&l, 0, ":2: unexpected symbol near '='");

	/* no more than 20, then the file stops */
	cr_expect_eq(load_all("for i = 1, 100 do x = i end", &l), 21);
	expect_line(&l, 19, ":1: unknown setting 'x'");
	expect_line(&l, 20, ":1: too many problems; stopped reading the file");

	/* a good file: nothing reported */
	cr_expect_eq(load_all("scripts = {'a.lua'}", &l), 0);
	cr_expect_eq(l.n, 0);
	/* cs_config_load keeps the first problem */
	struct cs_config c;
	char err[512];
	cr_expect_eq(load("workers = 0\nthreads = 0", &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:1: workers must be \"auto\" or 1-1024, got 0", conf_file);
	cr_expect_str_eq(err, want);
}

/* Problems with script entries carry the line that assigned `scripts`. */
Test(config, scripts_line)
{
	struct lines l;
	char want[512];
	cr_expect_eq(load_all("workers = 1\n\nscripts = {}\nscripts[1] = 'nope.lua'\n", &l), 1);
	snprintf(want, sizeof(want), ":3: script 'nope.lua' not found in %s or %s", conf_dir, data_dir);
	expect_line(&l, 0, want);
	cr_expect_eq(load_all("scripts = {\n  'a.lua',\n  'nope.lua',\n}\n", &l), 2);
	/* Lua puts a table constructor's assignment on its closing line */
	snprintf(want, sizeof(want), ":4: script 'nope.lua' not found in %s or %s", conf_dir, data_dir);
	expect_line(&l, 1, want);
}
