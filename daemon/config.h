/*
 * config.h - the configuration file (/etc/cosockd/cosockd.lua): which
 * scripts every worker runs, and the settings the command line also has.
 *
 * The file is Lua, evaluated by the master in a throw-away sandbox: it sees
 * string, table, math, utf8, os.getenv and a few base functions, plus the
 * read-only strings `confdir` (the file's directory) and `datadir`. Setting
 * any global that is not a known setting is an error, so a typo cannot go
 * unnoticed. The evaluation is bounded in instructions and memory, so a
 * broken file fails with a message instead of hanging the service.
 *
 * Settings a file leaves out are "not set" here (see each field), so the
 * caller can tell them from values and let the command line override both.
 */
#ifndef CS_CONFIG_H
#define CS_CONFIG_H

#include <stddef.h>

/* One entry of `scripts`. argv[0] is the resolved path (absolute when the
 * file named a relative one), argv[1..argc-1] its arguments; argv[argc] is
 * NULL. */
struct cs_config_script {
	char *path;
	int argc;
	char **argv;
};

struct cs_config {
	char *path;			  /* the file read, as given */
	long workers;			  /* 0: not set; -1: "auto"; else 1..1024 */
	int backend;			  /* -1: not set; else an enum cs_backend */
	long max_conns;			  /* 0: not set; else 1..4194304 */
	long threads;			  /* 0: not set; else 1..1024 */
	char *state_dir;		  /* NULL: not set */
	long shutdown_grace_ms;		  /* -1: not set; else 0..3600000 */
	long reload_grace_ms;		  /* -1: not set; else 0..86400000 */
	struct cs_config_script *scripts; /* at least one after a successful load */
	unsigned nscripts;
};

/* Read and check FILE. Relative script paths resolve next to FILE, then in
 * datadir (may be NULL: next to FILE only); every script must exist and be
 * a readable regular file; a relative state_dir is taken next to FILE.
 * *out need not be initialised. Returns 0 with *out filled (release it
 * with cs_config_free), or -1 with *out empty (cs_config_free is still
 * safe) and the first problem in err, one line: "FILE:LINE: message" when
 * the problem has a line in FILE (a problem with a script entry has the
 * line that assigned `scripts`: for a table written over several lines,
 * the line of its closing brace), else "FILE: message". */
int cs_config_load(const char *file, const char *datadir, struct cs_config *out, char *err, size_t errlen);

/* As cs_config_load, but finds every problem it can in one pass (each bad
 * setting, each bad script entry; a syntax or runtime error ends the pass)
 * and passes each to report(line, arg), one line as above, no newline.
 * Returns the number of problems: 0 when *out was loaded. */
int cs_config_load_report(const char *file, const char *datadir, struct cs_config *out,
			  void (*report)(const char *line, void *arg), void *arg);

/* Compile, without running, every script of cfg, each in a fresh bare Lua
 * state. Returns the number of scripts that failed; each failure is one
 * line ("PATH:LINE: message" or "PATH: message", no newline) passed to
 * report(line, arg). */
int cs_config_compile(const struct cs_config *cfg, void (*report)(const char *line, void *arg), void *arg);

/* Compile, without running, the one script at path (for `--check
 * SCRIPT.lua`). Returns 0, or -1 with one line in err as above. */
int cs_config_compile_script(const char *path, char *err, size_t errlen);

/* Release what cs_config_load put into cfg and reset it to "nothing set".
 * Safe on a zeroed struct, after a failed load and twice in a row. */
void cs_config_free(struct cs_config *cfg);

#endif
