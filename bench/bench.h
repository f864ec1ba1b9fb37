/*
 * bench.h - what the cosockd-bench source files share: the subcommands,
 * option parsing helpers, socket and /proc helpers, and a tiny JSON writer.
 * The load scenarios' shared run skeleton is in load.h, their pacing in
 * pace.h, the live progress line in progress.h, HTTP scanning in http.h.
 *
 * Errors: helpers that can fail return 0 or -errno (sockets) or -1 (parsing,
 * /proc) and never exit; only the subcommands decide to give up, through
 * cs__fail(), which prints one line and exits 1, or cs__fail_usage() for a
 * bad command line (exit 2). The option parsers below are the one exception:
 * they stand for the command line and call cs__fail_usage() themselves.
 */
#ifndef CS_BENCH_H
#define CS_BENCH_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifndef COSOCKD_VERSION
#define COSOCKD_VERSION "dev"
#endif

#define CS__NS_PER_SEC 1000000000ull

/* A subcommand: argv[0] is the subcommand's name. Returns the exit status. */
int cs__cmd_echo(int argc, char **argv);
int cs__cmd_rr(int argc, char **argv);
int cs__cmd_handshake(int argc, char **argv);
int cs__cmd_bulk(int argc, char **argv);
int cs__cmd_conns(int argc, char **argv);
int cs__cmd_ws(int argc, char **argv);
int cs__cmd_serve(int argc, char **argv);

/* Print "cosockd-bench: <message>" on stderr and exit(1). */
void cs__fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The same for a bad command line: exit(2). */
void cs__fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Parsers for option values; on a malformed value they call
 * cs__fail_usage() naming the option. A target needs a port; a listen
 * address may have port 0 (any free port). */
void cs__parse_target(const char *opt, const char *s, struct sockaddr_in *sa);
void cs__parse_listen(const char *opt, const char *s, struct sockaddr_in *sa);
uint64_t cs__parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max);
double cs__parse_secs(const char *opt, const char *s);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t cs__now_ns(void);

/* Sleep until CLOCK_MONOTONIC reaches t (ns). */
void cs__sleep_until(uint64_t t);

/* CPU time (user + system) this process has used, in ns. */
uint64_t cs__self_cpu_ns(void);

/* Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft
 * limit. */
uint64_t cs__raise_nofile(void);

/* Open a blocking TCP connection to target, giving up after timeout_ms.
 * When target is on 127.0.0.0/8, the source address is
 * 127.0.0.(2 + index % 253), so that N connections use N/253 ephemeral
 * ports per address instead of N from one. Returns the fd or -errno. */
int cs__connect(const struct sockaddr_in *target, uint64_t index, int timeout_ms);

/* Start a non-blocking connection from the same source address as
 * cs__connect(); it completes (or fails: SO_ERROR) by the first EPOLLOUT.
 * Returns the fd or -errno. */
int cs__connect_start(const struct sockaddr_in *target, uint64_t index);

/* Make fd non-blocking; 0 or -errno. */
int cs__set_nonblock(int fd);

/* The source address cs__connect() uses for index, as text (static
 * buffer). */
const char *cs__source_name(const struct sockaddr_in *target, uint64_t index);

/* What a server uses, summed over the process pid and all its descendants
 * (a master process and its workers count as one server; pages shared
 * between them count once per process). -1 where a figure is unknown. */
struct cs__usage {
	int64_t rss;    /* VmRSS, bytes */
	int64_t cpu_ns; /* user + system CPU time, all threads (clock ticks) */
	int64_t fds;    /* open fds; -1 when /proc/PID/fd is not readable */
	unsigned procs; /* processes summed */
};

/* Fill u for pid's process tree. Returns 0, or -1 when pid is gone. */
int cs__server_usage(pid_t pid, struct cs__usage *u);

/* Fill out[len] with the byte pattern messages are made of: position i of
 * every message carries the same byte, so echoes can be checked cheaply. */
void cs__fill_pattern(unsigned char *out, size_t len);

/* The pattern repeats every CS__PATTERN_PERIOD bytes: byte i of an endless
 * stream of it is byte i % CS__PATTERN_PERIOD of any pattern buffer, so a
 * buffer of len + CS__PATTERN_PERIOD bytes serves every stream offset. */
#define CS__PATTERN_PERIOD 251

/*
 * JSON writer. Objects nest up to CS__JSON_DEPTH; keys are NULL inside
 * arrays and at the top level. Write errors are sticky and reported by
 * cs__json_close().
 */
#define CS__JSON_DEPTH 8

struct cs__json {
	FILE *f;
	int depth;
	int count[CS__JSON_DEPTH]; /* members written at each depth */
};

/* Open path for writing; 0 or -errno. */
int cs__json_open(struct cs__json *j, const char *path);
/* Flush and close; 0 or -errno. */
int cs__json_close(struct cs__json *j);
void cs__json_begin(struct cs__json *j, const char *key);
void cs__json_end(struct cs__json *j);
void cs__json_str(struct cs__json *j, const char *key, const char *val);
void cs__json_u64(struct cs__json *j, const char *key, uint64_t val);
void cs__json_i64(struct cs__json *j, const char *key, int64_t val);
void cs__json_num(struct cs__json *j, const char *key, double val);

/* Write the "env" object (kernel, CPUs, CPU model, RLIMIT_NOFILE) and the
 * "time" and "command" members shared by every subcommand. */
void cs__json_env(struct cs__json *j, int argc, char **argv);

/* One line describing the machine, for the human summaries. */
void cs__print_env(FILE *f);

#endif
