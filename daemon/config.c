/*
 * config.c - reads the configuration file (config.h) and compiles scripts
 * for `cosockd --check`.
 *
 * The file runs as a Lua chunk whose _ENV is an empty proxy table: reads
 * fall through to the assigned settings, then to a small library table;
 * every assignment goes through a C __newindex that refuses unknown names
 * and checks the value at once, so the error carries the line that set it.
 * `scripts` is a table the chunk may still change after assigning it, so it
 * is checked, and its paths resolved, once the chunk has finished.
 *
 * The chunk runs in its own lua_State under an allocator capped at
 * MEM_LIMIT and a count hook that stops it after INSN_LIMIT instructions:
 * a runaway file fails with a message instead of hanging or exhausting the
 * master. Error positions come from the chunk name "=" (Lua then writes
 * ":LINE: message"), so the file name in messages is never truncated to
 * LUA_IDSIZE.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dispatch.h"

#define MEM_LIMIT ((size_t)16 << 20) /* bytes the configuration's Lua state may hold */
#define INSN_STEP 10000		     /* instructions between two count hooks */
#define INSN_LIMIT 20000000ul	     /* instructions the configuration may run */
#define CONF_SIZE_LIMIT ((size_t)1 << 20)
#define SCRIPT_SIZE_LIMIT ((size_t)256 << 20)
#define MAX_PROBLEMS 20 /* a file with more stops being evaluated */

/* One evaluation of one configuration file. */
struct sandbox {
	struct cs_config *out;
	const char *file;
	const char *datadir; /* may be NULL */
	char *confdir;	     /* absolute */
	const char *chunk;
	size_t chunk_len;
	size_t used, limit;  /* allocator accounting; limit is SIZE_MAX when off */
	bool mem_hit;	     /* the cap refused an allocation */
	unsigned long ticks; /* count hooks so far */
	bool insn_hit;	     /* the instruction budget ran out */
	int scripts_line;    /* where `scripts` was last assigned; 0: never */
	void (*report)(const char *line, void *arg);
	void *report_arg;
	unsigned problems; /* reported so far */
};

static void config_reset(struct cs_config *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = -1;
	c->shutdown_grace_ms = -1;
	c->reload_grace_ms = -1;
}

void cs_config_free(struct cs_config *cfg)
{
	free(cfg->path);
	free(cfg->state_dir);
	for (unsigned i = 0; cfg->scripts && i < cfg->nscripts; i++) {
		struct cs_config_script *s = &cfg->scripts[i];
		free(s->path);
		for (int j = 0; s->argv && j < s->argc; j++)
			free(s->argv[j]);
		free(s->argv);
	}
	free(cfg->scripts);
	config_reset(cfg);
}

/* ---- files and paths ---------------------------------------------------- */

/* Read all of path into a fresh NUL-terminated buffer of at most limit
 * bytes. Returns 0, or -1 with the reason in msg. */
static int read_all(const char *path, size_t limit, char **buf, size_t *len, char *msg, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(msg, n, "cannot open: %s", strerror(errno));
		return -1;
	}
	size_t cap = 4096, used = 0;
	char *b = malloc(cap);
	for (;;) {
		if (!b) {
			snprintf(msg, n, "out of memory");
			break;
		}
		if (used + 1 == cap) {
			if (cap > limit) {
				snprintf(msg, n, "too large (more than %zu bytes)", limit);
				break;
			}
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				snprintf(msg, n, "out of memory");
				break;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, b + used, cap - 1 - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(msg, n, "cannot read: %s", strerror(errno));
			break;
		}
		if (r == 0) {
			if (used > limit) {
				snprintf(msg, n, "too large (more than %zu bytes)", limit);
				break;
			}
			close(fd);
			b[used] = '\0';
			*buf = b;
			*len = used;
			return 0;
		}
		used += (size_t)r;
	}
	close(fd);
	free(b);
	return -1;
}

/* Where the Lua text of a file starts: after a UTF-8 byte order mark, and
 * at the newline ending a first line that starts with '#' (so line numbers
 * stay right), as luaL_loadfile does. */
static size_t chunk_start(const char *b, size_t len)
{
	size_t i = 0;
	if (len >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3))
		i = 3;
	if (i < len && b[i] == '#') {
		while (i < len && b[i] != '\n')
			i++;
		if (i + 1 < len && b[i + 1] == LUA_SIGNATURE[0])
			i++; /* a binary chunk after the '#' line */
	}
	return i;
}

/* dir + "/" + name without "./" in front of name, freshly allocated. */
static char *path_join(const char *dir, const char *name)
{
	while (name[0] == '.' && name[1] == '/') {
		name += 2;
		while (*name == '/')
			name++;
	}
	size_t dl = strlen(dir);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	size_t total = dl + !slash + strlen(name) + 1;
	char *p = malloc(total);
	if (p)
		snprintf(p, total, "%s%s%s", dir, slash ? "" : "/", name);
	return p;
}

/* The absolute directory of file (not resolving symbolic links), freshly
 * allocated; NULL when out of memory or the working directory is gone. */
static char *dir_of(const char *file)
{
	const char *slash = strrchr(file, '/');
	char *dir;
	if (!slash)
		dir = strdup(".");
	else if (slash == file)
		dir = strdup("/");
	else
		dir = strndup(file, (size_t)(slash - file));
	if (!dir || dir[0] == '/')
		return dir;
	char *cwd = getcwd(NULL, 0);
	char *abs = NULL;
	if (cwd)
		abs = strcmp(dir, ".") ? path_join(cwd, dir) : strdup(cwd);
	free(cwd);
	free(dir);
	return abs;
}

/* Check that path is a regular file we can open for reading. Returns 0, or
 * -1 with the reason in msg. */
static int check_script_file(const char *path, char *msg, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(msg, n, "cannot open: %s", strerror(errno));
		return -1;
	}
	struct stat st;
	int r = fstat(fd, &st);
	int e = errno;
	close(fd);
	if (r < 0) {
		snprintf(msg, n, "cannot stat: %s", strerror(e));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(msg, n, "not a regular file");
		return -1;
	}
	return 0;
}

/* Resolve a script name from the configuration: absolute as given, else the
 * first of confdir/name and datadir/name that exists. Returns the path,
 * freshly allocated, or NULL with a message in msg. */
static char *resolve_script(const struct sandbox *sb, const char *name, char *msg, size_t n)
{
	char why[256];
	if (name[0] == '/') {
		if (check_script_file(name, why, sizeof(why)) < 0) {
			snprintf(msg, n, "script '%s': %s", name, why);
			return NULL;
		}
		char *p = strdup(name);
		if (!p)
			snprintf(msg, n, "out of memory");
		return p;
	}
	const char *dirs[2] = {sb->confdir, sb->datadir};
	for (int i = 0; i < 2; i++) {
		if (!dirs[i] || !dirs[i][0])
			continue;
		char *p = path_join(dirs[i], name);
		if (!p) {
			snprintf(msg, n, "out of memory");
			return NULL;
		}
		struct stat st;
		if (stat(p, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
			free(p);
			continue;
		}
		if (check_script_file(p, why, sizeof(why)) == 0)
			return p;
		snprintf(msg, n, "script '%s' (%s): %s", name, p, why);
		free(p);
		return NULL;
	}
	if (sb->datadir && sb->datadir[0])
		snprintf(msg, n, "script '%s' not found in %s or %s", name, sb->confdir, sb->datadir);
	else
		snprintf(msg, n, "script '%s' not found in %s", name, sb->confdir);
	return NULL;
}

/* ---- messages ----------------------------------------------------------- */

/* A short, one-line description of the Lua value at idx for messages:
 * 5, 0.5, "auto", true, nil, a table. */
static void describe(lua_State *L, int idx, char *buf, size_t n, char quote)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		snprintf(buf, n, "nil");
		break;
	case LUA_TBOOLEAN:
		snprintf(buf, n, "%s", lua_toboolean(L, idx) ? "true" : "false");
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			snprintf(buf, n, "%lld", (long long)lua_tointeger(L, idx));
		else
			snprintf(buf, n, "%.14g", (double)lua_tonumber(L, idx));
		break;
	case LUA_TSTRING: {
		size_t len, o = 0;
		const char *s = lua_tolstring(L, idx, &len);
		if (n < 8) {
			snprintf(buf, n, "?");
			break;
		}
		size_t i;
		buf[o++] = quote;
		for (i = 0; i < len && i < 60 && o + 5 < n; i++)
			buf[o++] = isprint((unsigned char)s[i]) ? s[i] : '?';
		if (i < len) {
			memcpy(buf + o, "...", 3);
			o += 3;
		}
		buf[o++] = quote;
		buf[o] = '\0';
		break;
	}
	default:
		snprintf(buf, n, "a %s", luaL_typename(L, idx));
		break;
	}
}

static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

/* Put "FILE:LINE: message" or "FILE: message" into err from a Lua message
 * that may start with ":LINE: " (chunk name "="), on one line. */
static void format_err(char *err, size_t n, const char *file, const char *msg)
{
	if (!n)
		return;
	if (msg[0] == ':' && (isdigit((unsigned char)msg[1]) || msg[1] == ' '))
		snprintf(err, n, "%s%s", file, msg);
	else
		snprintf(err, n, "%s: %s", file, msg);
	one_line(err);
}

/* Count and pass on one problem line. */
static void emit(struct sandbox *sb, const char *line)
{
	sb->problems++;
	if (sb->report)
		sb->report(line, sb->report_arg);
}

/* Report one problem of the file, at line (0: none). */
static void problem(struct sandbox *sb, int line, const char *msg)
{
	char buf[1024];
	if (line > 0) {
		snprintf(buf, sizeof(buf), "%s:%d: %s", sb->file, line, msg);
		one_line(buf);
	} else {
		format_err(buf, sizeof(buf), sb->file, msg);
	}
	emit(sb, buf);
}

/* The line of the configuration that is running (the caller of the C
 * function running now); 0 when unknown. */
static int current_line(lua_State *L)
{
	lua_Debug ar;
	if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "l", &ar))
		return 0;
	return ar.currentline > 0 ? ar.currentline : 0;
}

/* ---- settings ----------------------------------------------------------- */

struct setting;
typedef int (*check_fn)(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			size_t n);

struct setting {
	const char *name;
	check_fn check;
	long min, max;
	size_t off; /* of the long field in struct cs_config, for integer and seconds */
	const char *expected;
};

static int fail(lua_State *L, int idx, const struct setting *s, char *msg, size_t n)
{
	char got[96];
	describe(L, idx, got, sizeof(got), '"');
	snprintf(msg, n, "%s must be %s, got %s", s->name, s->expected, got);
	return -1;
}

static long *field(struct sandbox *sb, const struct setting *s)
{
	return (long *)((char *)sb->out + s->off);
}

/* An integer (or a float with an integral value) within [min, max]. */
static bool int_in(lua_State *L, int idx, long min, long max, long *v)
{
	int isnum = 0;
	if (lua_type(L, idx) != LUA_TNUMBER)
		return false;
	lua_Integer i = lua_tointegerx(L, idx, &isnum);
	if (!isnum || i < min || i > max)
		return false;
	*v = (long)i;
	return true;
}

static bool str_is(lua_State *L, int idx, const char *want)
{
	size_t len;
	if (lua_type(L, idx) != LUA_TSTRING)
		return false;
	const char *s = lua_tolstring(L, idx, &len);
	return len == strlen(want) && !memcmp(s, want, len);
}

static int check_workers(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			 size_t n)
{
	long v;
	if (lua_isnil(L, idx))
		sb->out->workers = 0;
	else if (str_is(L, idx, "auto"))
		sb->out->workers = -1;
	else if (int_in(L, idx, s->min, s->max, &v))
		sb->out->workers = v;
	else
		return fail(L, idx, s, msg, n);
	return 0;
}

static int check_backend(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			 size_t n)
{
	if (lua_isnil(L, idx))
		sb->out->backend = -1;
	else if (str_is(L, idx, "auto"))
		sb->out->backend = CS_BACKEND_AUTO;
	else if (str_is(L, idx, "uring"))
		sb->out->backend = CS_BACKEND_URING;
	else if (str_is(L, idx, "epoll"))
		sb->out->backend = CS_BACKEND_EPOLL;
	else
		return fail(L, idx, s, msg, n);
	return 0;
}

static int check_count(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
		       size_t n)
{
	long v;
	if (lua_isnil(L, idx))
		*field(sb, s) = 0;
	else if (int_in(L, idx, s->min, s->max, &v))
		*field(sb, s) = v;
	else
		return fail(L, idx, s, msg, n);
	return 0;
}

static int check_seconds(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			 size_t n)
{
	if (lua_isnil(L, idx)) {
		*field(sb, s) = -1;
		return 0;
	}
	double d = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : NAN;
	if (!(d >= (double)s->min && d <= (double)s->max))
		return fail(L, idx, s, msg, n);
	*field(sb, s) = (long)(d * 1000.0 + 0.5); /* d >= 0 */
	return 0;
}

/* A relative state_dir is taken next to the configuration file, like the
 * scripts: the daemon's working directory is no place to keep state. */
static int check_state_dir(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			   size_t n)
{
	size_t len;
	if (lua_isnil(L, idx)) {
		free(sb->out->state_dir);
		sb->out->state_dir = NULL;
		return 0;
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		return fail(L, idx, s, msg, n);
	const char *v = lua_tolstring(L, idx, &len);
	if (!len || strlen(v) != len)
		return fail(L, idx, s, msg, n);
	char *p = v[0] == '/' ? strdup(v) : path_join(sb->confdir, v);
	if (!p) {
		snprintf(msg, n, "out of memory");
		return -1;
	}
	free(sb->out->state_dir);
	sb->out->state_dir = p;
	return 0;
}

/* Only the type here: the list is checked once the chunk has finished. */
static int check_scripts(lua_State *L, int idx, const struct setting *s, struct sandbox *sb, char *msg,
			 size_t n)
{
	if (lua_isnil(L, idx) || lua_istable(L, idx))
		return 0;
	return fail(L, idx, s, msg, n);
}

static const struct setting settings[] = {
    {"workers", check_workers, 1, 1024, 0, "\"auto\" or 1-1024"},
    {"backend", check_backend, 0, 0, 0, "\"auto\", \"uring\" or \"epoll\""},
    {"max_connections", check_count, 1, 4194304, offsetof(struct cs_config, max_conns),
     "an integer 1-4194304"},
    {"threads", check_count, 1, 1024, offsetof(struct cs_config, threads), "an integer 1-1024"},
    {"state_dir", check_state_dir, 0, 0, 0, "a directory path (a non-empty string)"},
    {"shutdown_grace", check_seconds, 0, 3600, offsetof(struct cs_config, shutdown_grace_ms),
     "a number of seconds 0-3600"},
    {"reload_grace", check_seconds, 0, 86400, offsetof(struct cs_config, reload_grace_ms),
     "a number of seconds 0-86400"},
    {"scripts", check_scripts, 0, 0, 0, "a list of scripts (a table)"},
};

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (!strcmp(settings[i].name, name))
			return &settings[i];
	return NULL;
}

/* ---- the sandbox -------------------------------------------------------- */

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct sandbox *sb = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		sb->used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > sb->limit - sb->used) {
		sb->mem_hit = true;
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (p)
		sb->used = sb->used - old + nsize;
	return p;
}

/* Once the budget is spent, fire on every instruction: a pcall inside the
 * configuration may catch one error, but the code around it fails next. */
static void insn_hook(lua_State *L, lua_Debug *ar)
{
	void *ud;
	lua_getallocf(L, &ud);
	struct sandbox *sb = ud;
	if (!sb->insn_hit && ++sb->ticks < INSN_LIMIT / INSN_STEP)
		return;
	if (!sb->insn_hit) {
		sb->insn_hit = true;
		lua_sethook(L, insn_hook, LUA_MASKCOUNT, 1);
	}
	luaL_error(L, "instruction limit");
}

/* _ENV.__index(env, key): an assigned setting, else the library table. */
static int env_index(lua_State *L)
{
	lua_settop(L, 2);
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	lua_rawget(L, lua_upvalueindex(2));
	return 1;
}

/* _ENV.__newindex(env, key, value): a known setting with a valid value;
 * anything else is reported with its line, and the file goes on so that
 * one run finds every bad setting. The value is kept all the same, so
 * reading it back does not cause errors of its own. */
static int env_newindex(lua_State *L)
{
	struct sandbox *sb = lua_touserdata(L, lua_upvalueindex(2));
	char msg[256], what[128];
	lua_settop(L, 3);
	const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
	const struct setting *s = name ? find_setting(name) : NULL;
	if (name && (!strcmp(name, "confdir") || !strcmp(name, "datadir"))) {
		snprintf(msg, sizeof(msg), "'%s' is read-only", name);
		problem(sb, current_line(L), msg);
		lua_settop(L, 0);
	} else if (!s) {
		describe(L, 2, what, sizeof(what), '\'');
		snprintf(msg, sizeof(msg), "unknown setting %s", what);
		problem(sb, current_line(L), msg);
	} else if (s->check(L, 3, s, sb, msg, sizeof(msg)) < 0) {
		problem(sb, current_line(L), msg);
	} else if (!strcmp(s->name, "scripts")) {
		sb->scripts_line = current_line(L);
	}
	if (sb->problems >= MAX_PROBLEMS)
		return luaL_error(L, "too many problems; stopped reading the file");
	if (lua_gettop(L) == 3)
		lua_rawset(L, lua_upvalueindex(1));
	return 0;
}

/* Push the library table the configuration sees. */
static void push_library(lua_State *L, const struct sandbox *sb)
{
	static const char *const base_names[] = {"tostring", "tonumber", "type",  "pairs",  "ipairs",
						 "next",     "select",	 "error", "assert", "pcall"};
	static const struct {
		const char *name;
		lua_CFunction open;
	} libs[] = {
	    {"string", luaopen_string},
	    {"table", luaopen_table},
	    {"math", luaopen_math},
	    {"utf8", luaopen_utf8},
	};

	lua_newtable(L);
	int lib = lua_gettop(L);
	luaL_requiref(L, "_G", luaopen_base, 0);
	for (size_t i = 0; i < sizeof(base_names) / sizeof(base_names[0]); i++) {
		lua_getfield(L, -1, base_names[i]);
		lua_setfield(L, lib, base_names[i]);
	}
	lua_pop(L, 1);
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		luaL_requiref(L, libs[i].name, libs[i].open, 0);
		lua_setfield(L, lib, libs[i].name);
	}
	luaL_requiref(L, "os", luaopen_os, 0);
	lua_createtable(L, 0, 1);
	lua_getfield(L, -2, "getenv");
	lua_setfield(L, -2, "getenv");
	lua_setfield(L, lib, "os");
	lua_pop(L, 1);
	lua_pushstring(L, sb->confdir);
	lua_setfield(L, lib, "confdir");
	if (sb->datadir) {
		lua_pushstring(L, sb->datadir);
		lua_setfield(L, lib, "datadir");
	}
}

/* Count the entries of the table at idx, all of which must have the keys
 * 1, 2, ...; -1 with a message naming what when one does not. */
static lua_Integer list_len(lua_State *L, int idx, const char *what, char *msg, size_t n)
{
	lua_Integer count = 0;
	char key[96];
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
			describe(L, -1, key, sizeof(key), '"');
			lua_pop(L, 1);
			snprintf(msg, n, "%s must be a list, but has the key %s", what, key);
			return -1;
		}
		count++;
	}
	return count;
}

static void *must(lua_State *L, void *p)
{
	if (!p)
		luaL_error(L, "out of memory");
	return p;
}

/* Check one `scripts` entry, at the top of the stack, and fill s. Returns 0,
 * or -1 with the problem in msg. Leaves the stack as it found it. */
static int collect_script(lua_State *L, struct sandbox *sb, lua_Integer i, struct cs_config_script *s,
			  char *msg, size_t n)
{
	char got[96], what[64];
	int e = lua_gettop(L);
	lua_Integer m = 1;
	size_t len;
	if (lua_istable(L, e)) {
		snprintf(what, sizeof(what), "scripts[%lld]", (long long)i);
		m = list_len(L, e, what, msg, n);
		if (m < 0)
			return -1;
		lua_rawgeti(L, e, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			describe(L, -1, got, sizeof(got), '"');
			snprintf(msg, n, "scripts[%lld][1] must be the script's path (a string), got %s",
				 (long long)i, got);
			goto fail;
		}
	} else if (lua_type(L, e) == LUA_TSTRING) {
		lua_pushvalue(L, e);
	} else {
		describe(L, e, got, sizeof(got), '"');
		snprintf(msg, n, "scripts[%lld] must be a path or {path, arg...}, got %s", (long long)i, got);
		return -1;
	}
	const char *name = lua_tolstring(L, -1, &len);
	if (!len || strlen(name) != len) {
		snprintf(msg, n, "scripts[%lld]: the path must be a non-empty string without NUL bytes",
			 (long long)i);
		goto fail;
	}
	for (lua_Integer j = 2; j <= m; j++) {
		int t = lua_rawgeti(L, e, j);
		if (t != LUA_TSTRING && t != LUA_TNUMBER) {
			describe(L, -1, got, sizeof(got), '"');
			snprintf(msg, n, "scripts[%lld][%lld] must be a string or a number, got %s",
				 (long long)i, (long long)j, got);
			goto fail;
		}
		const char *a = lua_tolstring(L, -1, &len);
		if (strlen(a) != len) {
			snprintf(msg, n, "scripts[%lld][%lld] contains a NUL byte", (long long)i,
				 (long long)j);
			goto fail;
		}
		lua_pop(L, 1);
	}
	if (m > INT32_MAX - 1) {
		snprintf(msg, n, "scripts[%lld] has too many arguments", (long long)i);
		goto fail;
	}
	s->path = resolve_script(sb, name, msg, n);
	if (!s->path)
		goto fail;
	s->argv = must(L, calloc((size_t)m + 1, sizeof(char *)));
	s->argc = (int)m;
	s->argv[0] = must(L, strdup(s->path));
	for (lua_Integer j = 2; j <= m; j++) {
		lua_rawgeti(L, e, j);
		s->argv[j - 1] = must(L, strdup(lua_tostring(L, -1)));
		lua_pop(L, 1);
	}
	lua_settop(L, e);
	return 0;
fail:
	lua_settop(L, e);
	return -1;
}

/* The `scripts` list, at idx: non-empty, no holes, every entry valid; each
 * bad entry is a problem of its own. */
static void collect_scripts(lua_State *L, struct sandbox *sb, int idx)
{
	char msg[1024];
	int line = sb->scripts_line;
	if (lua_isnil(L, idx)) {
		problem(sb, 0, "scripts is required: a list of the Lua scripts to run");
		return;
	}
	if (!lua_istable(L, idx))
		return; /* reported where it was assigned */
	lua_Integer n = list_len(L, idx, "scripts", msg, sizeof(msg));
	if (n < 0) {
		problem(sb, line, msg);
		return;
	}
	if (n == 0) {
		problem(sb, line, "scripts must not be empty");
		return;
	}
	if ((unsigned long long)n > UINT32_MAX / 2) {
		problem(sb, line, "scripts has too many entries");
		return;
	}
	sb->out->scripts = must(L, calloc((size_t)n, sizeof(*sb->out->scripts)));
	sb->out->nscripts = (unsigned)n;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, i);
		if (collect_script(L, sb, i, &sb->out->scripts[i - 1], msg, sizeof(msg)) < 0)
			problem(sb, line, msg);
		lua_pop(L, 1);
		if (sb->problems >= MAX_PROBLEMS)
			break;
	}
}

/* lua_pcall'd: build the sandbox, run the chunk bounded, collect scripts. */
static int sb_run(lua_State *L)
{
	struct sandbox *sb = lua_touserdata(L, 1);
	lua_newtable(L);     /* 2: the settings assigned */
	push_library(L, sb); /* 3 */
	lua_newtable(L);     /* 4: _ENV */
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_pushcclosure(L, env_index, 2);
	lua_setfield(L, -2, "__index");
	lua_pushvalue(L, 2);
	lua_pushlightuserdata(L, sb);
	lua_pushcclosure(L, env_newindex, 2);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, 4);

	sb->limit = MEM_LIMIT;
	if (luaL_loadbufferx(L, sb->chunk, sb->chunk_len, "=", "t") != LUA_OK)
		return lua_error(L);
	lua_pushvalue(L, 4);
	lua_setupvalue(L, -2, 1);
	lua_sethook(L, insn_hook, LUA_MASKCOUNT, INSN_STEP);
	lua_call(L, 0, 0);
	lua_sethook(L, NULL, 0, 0);
	sb->limit = SIZE_MAX;

	lua_getfield(L, 2, "scripts");
	collect_scripts(L, sb, lua_gettop(L));
	return 0;
}

int cs_config_load_report(const char *file, const char *datadir, struct cs_config *out,
			  void (*report)(const char *line, void *arg), void *arg)
{
	char msg[512];
	char *buf = NULL;
	size_t len;

	config_reset(out);
	struct sandbox sb = {
	    .out = out,
	    .file = file,
	    .datadir = datadir,
	    .limit = SIZE_MAX,
	    .report = report,
	    .report_arg = arg,
	};
	if (read_all(file, CONF_SIZE_LIMIT, &buf, &len, msg, sizeof(msg)) < 0) {
		problem(&sb, 0, msg);
		return (int)sb.problems;
	}
	size_t start = chunk_start(buf, len);
	sb.chunk = buf + start;
	sb.chunk_len = len - start;
	out->path = strdup(file);
	sb.confdir = dir_of(file);
	lua_State *L = NULL;
	if (!out->path || !sb.confdir) {
		problem(&sb, 0, sb.confdir ? "out of memory" : "cannot find its directory");
		goto done;
	}
	L = lua_newstate(sb_alloc, &sb);
	if (!L) {
		problem(&sb, 0, "out of memory");
		goto done;
	}
	lua_pushcfunction(L, sb_run);
	lua_pushlightuserdata(L, &sb);
	int status = lua_pcall(L, 1, 0, 0);
	lua_sethook(L, NULL, 0, 0);
	sb.limit = SIZE_MAX;
	if (sb.insn_hit) {
		problem(&sb, 0, "the configuration did not finish (instruction limit)");
	} else if (status == LUA_ERRMEM) {
		problem(&sb, 0,
			sb.mem_hit ? "the configuration needs too much memory (limit 16 MiB)"
				   : "out of memory");
	} else if (status != LUA_OK) {
		const char *m = lua_tostring(L, -1);
		if (!m) {
			snprintf(msg, sizeof(msg), "error object is a %s value", luaL_typename(L, -1));
			m = msg;
		}
		char line[1024];
		format_err(line, sizeof(line), file, m); /* m carries its own ":LINE: " */
		emit(&sb, line);
	}
done:
	if (L)
		lua_close(L);
	free(buf);
	free(sb.confdir);
	if (sb.problems)
		cs_config_free(out);
	return (int)sb.problems;
}

struct first_line {
	char *err;
	size_t len;
	bool seen;
};

static void keep_first(const char *line, void *arg)
{
	struct first_line *f = arg;
	if (!f->seen && f->len)
		snprintf(f->err, f->len, "%s", line);
	f->seen = true;
}

int cs_config_load(const char *file, const char *datadir, struct cs_config *out, char *err, size_t errlen)
{
	struct first_line f = {err, errlen, false};
	if (errlen)
		err[0] = '\0';
	return cs_config_load_report(file, datadir, out, keep_first, &f) ? -1 : 0;
}

/* ---- compiling scripts -------------------------------------------------- */

int cs_config_compile_script(const char *path, char *err, size_t errlen)
{
	char msg[512];
	char *buf;
	size_t len;
	if (read_all(path, SCRIPT_SIZE_LIMIT, &buf, &len, msg, sizeof(msg)) < 0) {
		format_err(err, errlen, path, msg);
		return -1;
	}
	int ret = -1;
	lua_State *L = luaL_newstate();
	if (!L) {
		format_err(err, errlen, path, "out of memory");
	} else {
		size_t start = chunk_start(buf, len);
		if (luaL_loadbufferx(L, buf + start, len - start, "=", NULL) == LUA_OK) {
			ret = 0;
		} else {
			const char *m = lua_tostring(L, -1);
			format_err(err, errlen, path, m ? m : "cannot compile");
		}
		lua_close(L);
	}
	free(buf);
	return ret;
}

int cs_config_compile(const struct cs_config *cfg, void (*report)(const char *line, void *arg), void *arg)
{
	char line[1024];
	int failed = 0;
	for (unsigned i = 0; i < cfg->nscripts; i++) {
		if (cs_config_compile_script(cfg->scripts[i].path, line, sizeof(line)) < 0) {
			failed++;
			if (report)
				report(line, arg);
		}
	}
	return failed;
}
